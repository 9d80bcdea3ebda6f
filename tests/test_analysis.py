"""The study's analysis regenerates every table and figure of STUDY.md from the stored results alone."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANALYSIS = ROOT / "analysis"


def test_make_study_regenerates_every_figure_and_table_from_stored_results(tmp_path):
    study = tmp_path / "STUDY.md"
    shutil.copy(ANALYSIS / "STUDY.md", study)
    figures = tmp_path / "figures"
    proc = subprocess.run(
        [
            sys.executable,
            str(ANALYSIS / "make_study.py"),
            "--study",
            str(study),
            "--figures",
            str(figures),
            "--results",
            str(ANALYSIS / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = study.read_text()
    # every figure STUDY.md shows is one the script wrote
    shown = re.findall(r"!\[[^\]]*\]\(figures/([^)]+)\)", text)
    assert shown and all((figures / name).stat().st_size > 10_000 for name in shown)
    # and the tables are what the committed STUDY.md holds: it is up to date with the stored results
    blocks = lambda t: re.findall(r"<!-- BEGIN (\w+) -->\n(.*?)<!-- END", t, re.S)  # noqa: E731
    assert blocks(text) == blocks((ANALYSIS / "STUDY.md").read_text())
    assert all(body.strip() for _, body in blocks(text))
