"""Process-level settings for training: CPU threads, handing freed heap memory back, and memory readings.

A search worker trains many trials in one long-lived process. A finished trial's trainer is a cycle of
references that lives until Python's collector runs, and glibc's malloc keeps the heap memory freed by every
step's large buffers (the [masked tokens x vocabulary] logits and their gradient), so without help a worker's
resident memory creeps up trial after trial. A trial collects garbage and trims the heap (``trim_heap``:
``malloc_trim``) before it starts, and trims again at every evaluation. Forcing large buffers into their own
mappings (a fixed mmap threshold) was measured too: less memory, but every step ~1.8x slower (page faults on
every fresh mapping), so it is not done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from pathlib import Path

import torch


def trim_heap() -> bool:
    """Return free heap memory to the system (glibc ``malloc_trim``; a no-op elsewhere); cheap enough to call
    at every evaluation, not at every step."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        return False


def set_threads(n: int | None) -> None:
    """Intra-op threads for this process (None: leave torch's default)."""
    if n:
        torch.set_num_threads(max(1, int(n)))


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (e.g. VmRSS, VmHWM) in MB; None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """Resident memory of this process now, MB (0 where /proc is missing)."""
    return _status_mb("VmRSS") or 0.0


def reset_peak_rss() -> bool:
    """Start a new peak-memory window for this process (Linux: VmHWM reset through /proc/self/clear_refs), so
    that a reused worker's peak is its current trial's, not its whole life's. Returns whether it applied."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process since the last ``reset_peak_rss`` (or its start), MB."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # lifetime peak where /proc is missing
    return kb / 1024 if sys.platform.startswith("linux") else kb / 2**20
