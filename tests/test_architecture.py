"""The layering of docs/ARCHITECTURE.md holds: imports point down the pipeline, never up, never in a circle, and
the pure layers stay free of torch and Ray."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparsesearch"

# Bottom to top: a module may import from its own layer and the layers below it.
LAYERS = [
    "spec",
    "definitions",
    "experiment",
    "model",
    "data",
    "sparsity",
    "checks",
    "training",
    "results",
    "search",
    "api",
    "render",
    "cli",
]


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Project modules each module imports (at any depth of the file, type-checking blocks included)."""
    out: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                names = [f"{target}.{a.name}" for a in node.names]
                for name in [target, *names]:
                    if name.startswith("sparsesearch") and _exists(name):
                        found.add(name)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("sparsesearch")}
        out[mod] = found - {mod}
    return out


def _exists(name: str) -> bool:
    rel = Path(*name.split("."))
    return (PACKAGE.parent / rel).with_suffix(".py").is_file() or (PACKAGE.parent / rel / "__init__.py").is_file()


def _layer(mod: str) -> int:
    parts = mod.split(".")
    if len(parts) == 1:  # the package itself: its public functions sit on top
        return len(LAYERS)
    return LAYERS.index(parts[1])


def test_every_module_has_a_layer():
    for mod in _imports():
        assert mod == "sparsesearch" or mod.split(".")[1] in LAYERS, f"{mod}: add it to a layer in LAYERS"


def test_imports_point_down_the_pipeline():
    upward = [
        (m, t)
        for m, targets in _imports().items()
        for t in targets
        if _layer(t) > _layer(m) and not (m == "sparsesearch" or t == "sparsesearch")
    ]
    assert not upward, "upward imports: " + ", ".join(f"{m} -> {t}" for m, t in upward)


def test_no_import_cycle():
    graph = {m: {t for t in ts if t in _imports_cache()} for m, ts in _imports_cache().items()}
    state: dict[str, int] = {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(t) :], t]))
            if t not in state:
                visit(t, [*trail, t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


_CACHE: dict[str, set[str]] = {}


def _imports_cache() -> dict[str, set[str]]:
    if not _CACHE:
        # A package's __init__ that only documents its modules is not an edge of the graph.
        _CACHE.update({m: {t for t in ts} for m, ts in _imports().items()})
    return _CACHE


@pytest.mark.parametrize(
    "module",
    [
        "sparsesearch.spec",
        "sparsesearch.experiment",
        "sparsesearch.model.flops",
        "sparsesearch.sparsity.distributions",
        "sparsesearch.results.report",
        "sparsesearch.results.summary",
    ],
)
def test_pure_layers_import_neither_torch_nor_ray(module):
    code = f"import sys, {module}; sys.exit(1 if {{'torch', 'ray'}} & set(sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, f"{module} imports torch or ray"
