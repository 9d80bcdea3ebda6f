"""Reliability under faults: a search survives the death of a cluster node, and stops cleanly, resumable, when its
storage fills up or turns read-only (tests/test_search.py: a killed trial worker, an interrupted driver)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from helpers import ROOT, _command, _env, search_spec_file, trial_results, wait_for

from sparsesearch.spec import spec_from_dict

pytestmark = pytest.mark.slow  # every test here starts Ray


@pytest.fixture
def ray_tmpdir(monkeypatch) -> Path:
    """A Ray temp folder of this test's own, apart from any other Ray on the machine (short: Ray's Unix socket
    paths inside it must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _uninterrupted(raw: dict, config: dict) -> list[dict]:
    """The evaluations of ``config`` trained in one go, in this process (no Ray, no checkpoint)."""
    from sparsesearch.data.batches import prepare_data
    from sparsesearch.experiment import trial_spec
    from sparsesearch.training.trainer import Trainer

    spec = trial_spec(raw, config)
    rows = Trainer(spec, prepare_data(spec.data, spec.model), raw["target"]["loss"]).run()
    return [r for r in rows if r["step"] > 0]  # trials report no step 0 (nothing trained yet)


def _recorded(exp: Path) -> dict[str, list[dict]]:
    """Each trial's evaluations as sparsesearch reads them. Ray logs a report before it registers the report's
    checkpoint, so a trial whose node dies in between repeats the evaluations since its previous checkpoint; the
    reader keeps the run the trial continued (tests/test_results.py), which is what these tests check."""
    from sparsesearch.results.table import load_history

    history = load_history(exp)
    return {str(tid): rows.to_dict("records") for tid, rows in history.groupby("trial_id", sort=False)}


def test_worker_node_death_resumes_its_trial_on_another_node_from_its_checkpoint(tmp_path, tiny_raw, ray_tmpdir):
    """A two-node Ray cluster on this machine, one trial per node; the worker node dies mid-trial (every Ray
    process of it SIGKILLed, as when a machine is lost). Its trial carries on on the head node from its last
    checkpoint in the shared storage (a node's death is a trial failure, retried within tune.max_failures), and
    every trial's record holds exactly the evaluations of an uninterrupted run: none lost, none repeated."""
    import ray
    from ray.cluster_utils import Cluster

    from sparsesearch.search.driver import run_search

    path = search_spec_file(tmp_path, tiny_raw, num_samples=1, max_concurrent=2, name="node_death")
    raw = yaml.safe_load(path.read_text())
    raw["target"] = {"loss": 0.5}  # unreachable: each trial trains its whole budget, long enough to lose a node
    # Steps enough past the kill window (40-120) that the trial cannot finish on the worker before the node's
    # processes are gone (with 200, a CI run once saw it finish there first).
    steps = 400
    raw["train"].update(max_steps=steps, eval_every=20)
    raw["search"]["asha"] = {"grace_period": steps}
    exp = tmp_path / "runs" / "node_death"
    killed: dict = {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        head = cluster.head_node.node_id
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        raw["tune"]["address"] = cluster.address

        def kill_worker_node_mid_trial():
            end = time.time() + 300
            while time.time() < end and not killed:
                for tid, rows in trial_results(exp).items():
                    if rows[-1]["node"] == worker.node_id and 40 <= rows[-1]["step"] <= 120:
                        killed.update(trial=tid)
                        cluster.remove_node(worker, allow_graceful=False)
                        return
                time.sleep(0.2)

        killer = threading.Thread(target=kill_worker_node_mid_trial, daemon=True)
        killer.start()
        run_search(path, raw, spec_from_dict(raw), log=lambda msg: None)
        killer.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert killed, "a trial ran on the worker node and the node died mid-trial"
    trials = _recorded(exp)
    assert len(trials) == 2, "every trial (1 sampled + the dense family) is there"
    configs = {tid: rows[0]["config"] for tid, rows in trial_results(exp).items()}
    for tid, rows in trials.items():
        expected = _uninterrupted(raw, configs[tid])
        assert [r["step"] for r in rows] == [r["step"] for r in expected], f"{tid}: each evaluation once"
        assert rows[-1]["step"] == steps
        assert [r["eval_loss"] for r in rows] == pytest.approx([r["eval_loss"] for r in expected], abs=1e-9)
        assert rows[-1]["flops"] == expected[-1]["flops"]
    nodes = [r["node"] for r in trials[killed["trial"]]]
    assert head in nodes, "the lost node's trial finished on the head node"
    moved = nodes.index(head)  # the trial may report once more between the scan and the kill
    assert moved >= 2 and set(nodes[:moved]) == {worker.node_id} and set(nodes[moved:]) == {head}, (
        "the lost node's trial began there and finished on the head node"
    )


# ----- storage that fills up or turns read-only mid-run -----------------------------------------------------------


class _PrivateFilesystem:
    """A 16 MiB tmpfs at ``path`` that only the commands built by ``command`` see (a user and mount namespace held
    open by a sleeping process: needs neither root nor any change to the machine); the test reaches it at
    ``root``."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs -o size=16m tmpfs '{path}' && echo ready && exec sleep 900"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.kill()
            why = (self.holder.communicate()[1].strip().splitlines() or ["failed"])[-1]
            pytest.skip(f"no private filesystem: unshare --user --mount: {why} (user namespaces not allowed here)")
        self.root = Path(f"/proc/{self.holder.pid}/root{path}")

    def command(self, *args: str) -> list[str]:
        # --preserve-credentials: an unprivileged user may not setgroups() in the namespace (it is denied there)
        return ["nsenter", f"--target={self.holder.pid}", "--user", "--mount", "--preserve-credentials", "--", *args]

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _fill(directory: Path) -> None:
    with open(directory / "filler", "wb") as f:
        try:
            while True:
                f.write(bytes(1 << 20))
                f.flush()
        except OSError:  # ENOSPC: full
            pass


@pytest.mark.parametrize("failure", ["full", "read-only"])
def test_search_stops_cleanly_when_storage_fails_and_resumes_once_it_works(tmp_path, tiny_raw, ray_tmpdir, failure):
    """The storage fills up (or turns read-only) while a trial runs: `sparsesearch run` stops at the trial's first
    failure, without retrying it against the broken storage, with one clear line that names the remedy and no
    traceback; once the storage works again, `sparsesearch resume` finishes the search from the checkpoints, every
    trial there with every evaluation reported once."""
    fs = _PrivateFilesystem(tmp_path / "store")
    try:
        path = search_spec_file(tmp_path, tiny_raw, num_samples=1, max_concurrent=1, storage=str(fs.path))
        raw = yaml.safe_load(path.read_text())
        raw["target"] = {"loss": 0.5}  # unreachable: each trial trains its whole budget
        raw["train"].update(max_steps=100, eval_every=20)
        raw["search"]["asha"] = {"grace_period": 100}
        path.write_text(yaml.safe_dump(raw))
        exp, seen = fs.path / "broken", fs.root / "broken"
        proc = subprocess.Popen(
            fs.command(*_command(("run", str(path), "--name", "broken"))),
            cwd=ROOT, env=_env(None), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert wait_for(lambda: any(rows[-1]["step"] >= 40 for rows in trial_results(seen).values()), 300)
            if failure == "full":
                _fill(fs.root)
            else:  # a read-only view over the storage: files open stay writable, nothing new can be written
                subprocess.run(fs.command("mount", "--bind", str(fs.path), str(fs.path)), check=True)
                subprocess.run(fs.command("mount", "-o", "remount,bind,ro", str(fs.path)), check=True)
            out, err = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode not in (0, None), out[-2000:] + err[-3000:]
        assert "Traceback" not in out + err, err[-3000:]
        assert f"sparsesearch resume {exp}" in err.strip().splitlines()[-1], err[-3000:]
        failures = [f.read_text().count("Failure #") for f in ray_tmpdir.rglob("error.txt")]
        # At most one failure, never a retry. None at all happens when the driver's own write fails first and
        # stops the search before the trial reports its error (a race seen once in CI).
        assert sum(failures) <= 1, f"the trial was retried against the broken storage: {failures}"
        if failure == "full":
            (fs.root / "filler").unlink()
        else:
            subprocess.run(fs.command("umount", str(fs.path)), check=True)
        res = subprocess.run(
            fs.command(*_command(("resume", str(exp)))), cwd=ROOT, env=_env(None), capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
        trials = _recorded(seen)
        assert len(trials) == 2, "every trial (1 sampled + the dense family) is there"
        for rows in trials.values():
            # ASHA, restored with the search, may still stop a trial after the resume: what matters is that every
            # evaluation a trial made is there exactly once, in order.
            steps = [r["step"] for r in rows]
            assert steps == list(range(20, 20 * len(steps) + 1, 20)), "each evaluation once, none lost"
    finally:
        fs.close()
