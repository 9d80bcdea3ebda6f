#!/usr/bin/env bash
# Produce every stored result of the study (hours on a 2-core CPU): the single runs, in priority order, then
# the methods.yaml search and its export. Each step skips what is already in analysis/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
for group in baseline rigl_level ours algorithm layers schedule regularizer; do
  python analysis/run_study.py --groups "$group"
done
python analysis/run_searches.py
