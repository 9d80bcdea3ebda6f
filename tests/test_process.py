"""Process helpers: the per-trial memory numbers every trial reports."""

from __future__ import annotations

import sys

import pytest
import torch

from sparsesearch.search.process import peak_rss_mb, reset_peak_rss, rss_mb, trim_heap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_peak_memory_window_starts_anew_after_a_reset():
    trim_heap()
    assert reset_peak_rss()
    base = rss_mb()
    assert 0 < base <= peak_rss_mb() < base + 50
    big = torch.ones(40_000_000)  # 160 MB, touched
    assert peak_rss_mb() >= base + 140
    del big
    trim_heap()
    reset_peak_rss()  # a new trial in the same worker: the old peak is not its own
    assert peak_rss_mb() < base + 50
