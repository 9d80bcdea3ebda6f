"""Regenerate every table and figure of analysis/STUDY.md from the stored results in analysis/results/.

    python analysis/make_study.py

Reads only ``analysis/results/`` (``study_runs.jsonl`` from ``run_frontier.py --study``, ``fair_runs.jsonl``
from run_fair.py, ``runs.jsonl`` from run_study.py, ``search_*/`` from run_searches.py); never
trains. Writes the figures to ``analysis/figures/`` and replaces each table of STUDY.md between its
``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers (the prose around them is left alone).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import fair
import frontier_study

from sparsesearch.results import plots
from sparsesearch.results.format import params_text
from sparsesearch.results.pareto import front

RESULTS = HERE / "results"
FIGURES = HERE / "figures"
STUDY = HERE / "STUDY.md"
BASE_CONFIG = "rigl_erk_0.8"  # the configuration the one-at-a-time ablations vary


def load_runs(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    # the same configuration and seed may have been run twice (e.g. a restarted study): keep the last
    df = df.drop_duplicates(["config", "seed"], keep="last").reset_index(drop=True)
    dense = df[df["config"] == "dense"].set_index("seed")
    df["speedup"] = [
        dense["net_time_s"].get(s, math.nan) / t if st == "reached" else math.nan
        for s, t, st in zip(df["seed"], df["net_time_s"], df["status"])
    ]
    df["flop_speedup"] = [
        dense["net_flops"].get(s, math.nan) / f if st == "reached" else math.nan
        for s, f, st in zip(df["seed"], df["net_flops"], df["status"])
    ]
    df["step_speedup"] = [
        dense["steps_to_target"].get(s, math.nan) / n if st == "reached" else math.nan
        for s, n, st in zip(df["seed"], df["steps_to_target"], df["status"])
    ]
    df["ms_per_step"] = 1000 * df["train_time_s"] / df["steps"]
    # Net time with the step time each method costs when measured side by side with dense in one process
    # (benchmarks/sparsity_overhead.py -> results/overhead.json): the FLOP speedup divided by the method's
    # bookkeeping overhead. Immune to the load other processes put on this shared machine during the runs.
    df["method"] = [r["sparsity"]["method"] for r in df["spec"]]
    overhead_file = path.parent / "overhead.json"
    if overhead_file.is_file():
        ratio = {m: v["amortised_vs_dense"] for m, v in json.loads(overhead_file.read_text())["methods"].items()}
        df["est_speedup"] = [f / ratio.get(m, math.nan) for f, m in zip(df["flop_speedup"], df["method"])]
    else:
        df["est_speedup"] = math.nan
    return df


def _ms(x: pd.Series, fmt: str = ".2f") -> str:
    x = x.dropna()
    if x.empty:
        return "–"
    if len(x) == 1:
        return f"{x.iloc[0]:{fmt}}"
    return f"{x.mean():{fmt}} ± {x.std(ddof=1):{fmt}}"


def summary(df: pd.DataFrame, configs: list[str]) -> pd.DataFrame:
    out = []
    for c in configs:
        g = df[df["config"] == c]
        if g.empty:
            continue
        ok = g[g["status"] == "reached"]
        out.append(
            {
                "config": c,
                "seeds": len(g),
                "reached": len(ok),
                "sparsity": g["avg_sparsity"].mean(),
                "steps": _ms(ok["steps_to_target"], ".0f"),
                "time": _ms(ok["time_to_target_s"], ".1f"),
                "ms_step": _ms(g["ms_per_step"], ".0f"),
                "flop_ratio": _ms(ok["flop_ratio"], ".3f"),
                "net_time": _ms(ok["net_time_s"], ".1f"),
                "speedup": _ms(ok["speedup"]),
                "flop_speedup": _ms(ok["flop_speedup"]),
                "est_speedup": _ms(ok["est_speedup"]),
                "min_est_speedup": ok["est_speedup"].min(),
                "mean_est_speedup": ok["est_speedup"].mean(),
                "min_flop_speedup": ok["flop_speedup"].min(),
                "min_speedup": ok["speedup"].min(),
                "mean_flop_speedup": ok["flop_speedup"].mean(),
                "mean_speedup": ok["speedup"].mean(),
            }
        )
    return pd.DataFrame(out)


def md_table(s: pd.DataFrame) -> str:
    head = [
        "configuration",
        "seeds reached",
        "sparsity",
        "steps to target",
        "wall time to target (s)",
        "ms/step",
        "FLOP ratio",
        "net time (s)",
        "speedup: measured net time",
        "speedup: net FLOPs",
        "speedup: net time at side-by-side step cost",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in s.iterrows():
        lines.append(
            f"| `{r['config']}` | {r['reached']}/{r['seeds']} | {r['sparsity']:.2f} | {r['steps']} | "
            f"{r['time']} | {r['ms_step']} | {r['flop_ratio']} | {r['net_time']} | {r['speedup']} | "
            f"{r['flop_speedup']} | {r['est_speedup']} |"
        )
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fig_levels(df: pd.DataFrame, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120, sharey=True)
    for ax, col, title in (
        (axes[0], "est_speedup", "net time (side-by-side step cost; x: measured)"),
        (axes[1], "flop_speedup", "net FLOPs (deterministic)"),
    ):
        for dist, color in (("uniform", "#1f77b4"), ("erk", "#ff7f0e")):
            levels, means, sds = [], [], []
            for lv in (0.5, 0.7, 0.8, 0.9):
                g = df[(df["config"] == f"rigl_{dist}_{lv}") & (df["status"] == "reached")][col].dropna()
                if len(g):
                    levels.append(100 * lv)
                    means.append(g.mean())
                    sds.append(g.std(ddof=1) if len(g) > 1 else 0.0)
                    ax.scatter([100 * lv] * len(g), g, color=color, s=10, alpha=0.5)
                    if col == "est_speedup":
                        measured = df[(df["config"] == f"rigl_{dist}_{lv}") & (df["status"] == "reached")]
                        ax.scatter(
                            [100 * lv + (1 if dist == "erk" else -1)] * len(measured),
                            measured["speedup"],
                            color=color,
                            marker="x",
                            s=14,
                            alpha=0.6,
                        )
            ax.errorbar(levels, means, yerr=sds, marker="o", capsize=4, color=color, label=f"RigL, {dist}")
        ax.axhline(1.0, color="#d62728", ls="--", lw=1)
        ax.axhline(2.0, color="#d62728", ls=":", lw=1)
        ax.annotate("dense", (50, 1.0), xytext=(0, 3), textcoords="offset points", color="#d62728", fontsize=8)
        ax.annotate("2x (the goal)", (50, 2.0), xytext=(0, 3), textcoords="offset points", color="#d62728", fontsize=8)
        ax.set_title(f"speedup over dense in {title}", fontsize=10)
        ax.set_xlabel("sparsity of the sparsifiable weights (%)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("dense / RigL, same seed (mean ± sd, dots: seeds)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_compare(s: pd.DataFrame, path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(s) + 2.4), dpi=120)
    y = list(range(len(s)))[::-1]
    bars = (
        ("flop_speedup", "#1f77b4", 0.27, "net FLOPs"),
        ("est_speedup", "#2ca02c", 0.0, "net time at side-by-side step cost"),
        ("speedup", "#ff7f0e", -0.27, "measured net time"),
    )
    for col, color, off, label in bars:
        means = [r[f"mean_{col}"] for _, r in s.iterrows()]
        ax.barh([v + off for v in y], means, height=0.25, color=color, label=f"speedup in {label} (mean)")
        ax.scatter(
            [r[f"min_{col}"] for _, r in s.iterrows()],
            [v + off for v in y],
            color="black",
            s=8,
            zorder=3,
            label="worst seed" if col == "speedup" else None,
        )
    ax.set_yticks(y)
    ax.set_yticklabels([f"{c} ({r}/{n})" for c, r, n in zip(s["config"], s["reached"], s["seeds"])], fontsize=8)
    ax.axvline(1.0, color="#d62728", ls="--", lw=1)
    ax.axvline(2.0, color="#d62728", ls=":", lw=1)
    ax.set_xlabel("speedup over dense at the same target loss (dense / configuration, same seed)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_curves(df: pd.DataFrame, configs: list[str], path: Path, target: float) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(configs):
        for j, (_, r) in enumerate(df[df["config"] == c].iterrows()):
            h = pd.DataFrame(r["history"])
            ax.plot(
                h["flops"] * 1e-12,
                h["eval_loss"],
                color="#d62728" if c == "dense" else cmap(i),
                lw=1.2,
                alpha=0.8,
                ls="--" if c == "dense" else "-",
                label=c if j == 0 else None,
            )
    ax.axhline(target, color="black", lw=0.8, ls=":")
    ax.annotate(f"target {target:.3f}", (0, target), xytext=(2, 3), textcoords="offset points", fontsize=8)
    ax.set_ylim(target - 0.15, target + 1.2)
    ax.set_xlabel("cumulative training FLOPs actually needed (TFLOP)")
    ax.set_ylabel("held-out MLM loss")
    ax.set_title("Loss against compute, every seed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fig_density(path_json: Path, path: Path) -> None:
    """Per-layer densities over a flop_rigl run (the diagnostic run stored by hand, see its 'command')."""
    plt = _plt()
    d = json.loads(path_json.read_text())
    steps = [h["step"] for h in d["history"]]
    names = list(d["history"][0]["layer_density"])
    groups = {
        "embed_proj": "#9467bd",
        "query": "#1f77b4",
        "key": "#17becf",
        "value": "#2ca02c",
        "attention.output": "#bcbd22",
        "intermediate": "#ff7f0e",
        "output.dense": "#d62728",
        "head_transform": "#8c564b",
    }
    fig, ax = plt.subplots(figsize=(8, 4.6), dpi=120)
    seen = set()
    for n in names:
        key = next(k for k in groups if k in n)
        label = {
            "attention.output": "attn_out",
            "intermediate": "ffn_in",
            "output.dense": "ffn_out",
            "query": "attn q",
            "key": "attn k",
            "value": "attn v",
        }.get(key, key)
        ax.plot(
            steps,
            [h["layer_density"][n] for h in d["history"]],
            color=groups[key],
            ls="-" if ".layer.1." not in n else "--",
            label=None if label in seen else label,
        )
        seen.add(label)
    ax.set_xlabel("step")
    ax.set_ylabel("density of the layer (1 = dense)")
    ax.set_title(
        "flop_rigl at 80% sparsity: where the weights go (solid: block 0 and head, dashed: block 1)", fontsize=9
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def search_section(name: str, results: Path, figures: Path) -> tuple[str, Path | None]:
    d = results / f"search_{name}"
    if not (d / "trials.csv").is_file():
        return f"(no stored results for the {name} search)", None
    t = pd.read_csv(d / "trials.csv")
    t["reference"] = t["reference"].astype(bool)
    params = [c for c in t.columns if "." in c]
    t.attrs["params"] = params
    fr = front(t)
    fig = figures / f"search_{name}_pareto.png"
    plots.pareto_png(t, fr, fig, title=f"{name} search: sparsity vs. net time to the target")
    counts = t["status"].value_counts()
    ref = t[t["reference"]].iloc[0]
    lines = [
        f"{len(t)} trials ("
        + ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items())
        + f"); dense reference {ref['net_time_s']:.1f} s net time, {ref['net_flops']:.3g} net FLOPs.",
        "",
        "| trial | method | sparsity | net time (s) | speedup | net FLOPs | FLOP speedup | parameters |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in fr.iterrows():
        p = params_text(r, params, short=True)
        lines.append(
            f"| {r['trial']} | {r['method']} | {r['avg_sparsity']:.3f} | {r['net_time_s']:.1f} | "
            f"{r['speedup']:.2f}x | {r['net_flops']:.3g} | {r['flop_speedup']:.2f}x | {p} |"
        )
    best = t[(t["status"] == "reached") & ~t["reference"]].sort_values("net_flops").head(1)
    if len(best):
        b = best.iloc[0]
        lines += [
            "",
            f"Fewest net FLOPs: trial {b['trial']} ({b['method']}, sparsity {b['avg_sparsity']:.3f}): "
            f"{b['flop_speedup']:.2f}x fewer than dense.",
        ]
    per = []
    for m, g in t.groupby("method"):
        ok = g[g["status"] == "reached"]
        per.append(
            f"{m}: {len(ok)}/{len(g)} reached"
            + (f", best {ok['flop_speedup'].max():.2f}x FLOPs, {ok['speedup'].max():.2f}x net time" if len(ok) else "")
        )
    lines += ["", "Per method: " + "; ".join(per) + "."]
    imp_file = d / "importances.json"
    if imp_file.is_file():
        imp = json.loads(imp_file.read_text())
        if imp["importances"]:
            lines += [
                "",
                "Parameter importances (fANOVA on the Optuna study; "
                + imp["note"].split(" (")[0]
                + "): "
                + ", ".join(f"`{k}` {v:.2f}" for k, v in imp["importances"].items())
                + ".",
            ]
    return "\n".join(lines), fig


def replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(?:.*?\n)?(<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"STUDY.md has no block {name!r} (<!-- BEGIN {name} --> ... <!-- END {name} -->)")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text)


GROUPS = {
    "table_levels": ["dense"] + [f"rigl_{d}_{lv}" for d in ("uniform", "erk") for lv in (0.5, 0.7, 0.8, 0.9)],
    "table_ablations": [
        BASE_CONFIG,
        "layers_embed_proj_dense",
        "schedule_every_50",
        "regularizer_l2",
        "algorithm_set",
        "algorithm_snfs",
        "algorithm_gmp",
        "algorithm_topkast",
    ],
    "table_ours": [BASE_CONFIG, "ours_flop_rigl_0.8", "ours_grow_0.8", "best_rigl", "best_flop_rigl", "best_grow"],
}


def fair_sections(text: str, df: pd.DataFrame, figures: Path) -> str:
    """The fair comparison's tables (every target of the ladder; every configuration at the objective) and
    figure."""
    sparse = list(dict.fromkeys(df.loc[~df["dense"], "config"]))
    text = replace_block(text, "fair_ladder", fair.ladder_table(df, sparse))
    text = replace_block(text, "fair_configs", fair.config_table(df, 1000))
    fair.figure(df, sparse, figures / "fair.png")
    seeds = sorted(df["seed"].unique())
    steps = [h[-1]["step"] for h in df["history"]]
    return replace_block(
        text,
        "fair_setup",
        f"{len(df)} runs, seeds {', '.join(map(str, seeds))}; runs trained {min(steps)} to {max(steps)} steps; "
        f"precision `{df.iloc[0]['spec']['train']['precision']}` "
        f"on `{df.iloc[0]['device']}`; torch {df.iloc[0]['torch']}, {df.iloc[0]['threads']} threads.",
    )


def study_sections(text: str, df: pd.DataFrame, figures: Path, fair_results: Path) -> str:
    """Part A (study v3): its blocks from frontier_study, and a first look on seed 0 alone while seeds run."""
    for name, body in frontier_study.sections(df, figures, 3, fair_results).items():
        text = replace_block(text, name, body)
    first = frontier_study.sections(df[df["seed"] == 0], None, 1, fair_results)
    return replace_block(text, "v3_seed0", first["v3_front"])


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--figures", type=Path, default=FIGURES)
    p.add_argument("--study", type=Path, default=STUDY)
    args = p.parse_args(argv)
    figures = args.figures
    figures.mkdir(parents=True, exist_ok=True)
    df = load_runs(args.results / "runs.jsonl")
    target = float(df["target_loss"].iloc[0])
    text = args.study.read_text()
    tables = {}
    for name, configs in GROUPS.items():
        s = summary(df, configs)
        tables[name] = s
        text = replace_block(text, name, md_table(s))
    fig_levels(df, figures / "rigl_levels.png")
    fig_compare(
        tables["table_ablations"],
        figures / "ablations.png",
        f"One change at a time from {BASE_CONFIG} (seeds reached in brackets)",
    )
    fig_compare(tables["table_ours"], figures / "ours.png", "Our methods against RigL")
    fig_curves(
        df,
        ["dense", BASE_CONFIG, "best_rigl", "ours_flop_rigl_0.8", "ours_grow_0.8"],
        figures / "loss_vs_flops.png",
        target,
    )
    density_file = args.results / "flop_rigl_layer_density.json"
    if density_file.is_file():
        fig_density(density_file, figures / "flop_rigl_density.png")
    for name in ("rigl", "methods"):
        body, _ = search_section(name, args.results, figures)
        text = replace_block(text, f"search_{name}", body)
    study_file = args.results / "study_runs.jsonl"
    if study_file.is_file():
        text = study_sections(text, frontier_study.load(study_file), figures, args.results / "fair_runs.jsonl")
    fair_file = args.results / "fair_runs.jsonl"
    if fair_file.is_file():
        text = fair_sections(text, fair.load(fair_file), figures)
    env = df.iloc[0]
    text = replace_block(
        text,
        "setup",
        (
            f"{df['seed'].nunique()} seeds ({', '.join(map(str, sorted(df['seed'].unique())))}), {len(df)} runs; "
            f"target loss {target:.4f}; torch {env['torch']}, {env['threads']} CPU threads, host `{env['host']}`."
        ),
    )
    args.study.write_text(text)
    print(f"wrote {args.study} and {len(list(figures.glob('*.png')))} figures in {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
