"""A local search listens on this machine alone: every socket the driver and the Ray processes it starts listen on
is bound to a loopback address, never to 0.0.0.0, :: or the machine's own IP (Ray runs pickled code for
whoever reaches its ports)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from helpers import search_spec_file, start_cli, trial_results

pytestmark = [
    pytest.mark.slow,  # every test here starts Ray
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc (Linux only)"),
]


def _address(hex_address: str, v6: bool) -> tuple[str, int]:
    ip, port = hex_address.split(":")
    raw = bytes.fromhex(ip)
    # /proc/net prints addresses as host-order 32-bit words
    words = [struct.pack("<I", w) for w in struct.unpack(f">{len(raw) // 4}I", raw)]
    return socket.inet_ntop(socket.AF_INET6 if v6 else socket.AF_INET, b"".join(words)), int(port, 16)


def _listening_sockets(pid: int) -> dict[str, tuple[str, str, int]]:
    """inode -> (protocol, address, port) of the listening TCP and bound UDP sockets in ``pid``'s network
    namespace."""
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if proto.startswith("tcp") and f[3] != "0A":  # TCP_LISTEN; every UDP socket receives, so all count
                continue
            out[f[9]] = (proto, *_address(f[1], proto.endswith("6")))
    return out


def _process_tree(root: int) -> set[int]:
    """``root``, its descendants and every process of its session (Ray daemons are started as children; a
    daemon whose parent died is still in the session)."""
    parents, sessions = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(stat[1]), []).append(int(p))
            sessions[int(p)] = int(stat[3])
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += parents.get(p, [])
    return tree | {p for p, sid in sessions.items() if sid == root}


def _name(pid: int) -> str:
    """The program's file name and its first arguments (never the path: a long install path would push the
    program's name past any cut, as it did for gcs_server under a deep checkout)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    program, *args = [a.decode(errors="replace") for a in argv if a] or ["?"]
    return " ".join([os.path.basename(program), *args])[:120]


def _sockets_of(pids: set[int]) -> set[tuple[str, str, str, int]]:
    found = set()
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            table = _listening_sockets(pid)
        except OSError:  # exited meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in table:
                found.add((_name(pid), *table[link[8:-1]]))
    return found


def _kill_session(proc) -> None:
    """Kill the CLI and every process of its session (the trial workers have process groups of their own)."""
    for pid in sorted(_process_tree(proc.pid), reverse=True):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.fixture
def ray_tmpdir(monkeypatch):
    """A Ray temp folder of this test's own, apart from any other Ray on the machine (short: Ray's Unix socket
    paths inside it must stay under 108 bytes)."""
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_local_search_listens_on_loopback_only(tmp_path, tiny_raw, ray_tmpdir):
    """During a real local `sparsesearch run` (trials running), no socket of the driver or of any Ray process it
    started (GCS, raylet, agents, trial workers) listens on a non-loopback address."""
    spec = search_spec_file(tmp_path, tiny_raw, num_samples=1, max_concurrent=1)
    raw = yaml.safe_load(spec.read_text())
    raw["target"] = {"loss": 0.5}  # unreachable: the trial runs its whole budget, seconds to look at its sockets
    raw["train"].update(max_steps=200, eval_every=20)
    spec.write_text(yaml.safe_dump(raw))
    exp = tmp_path / "runs" / "net"
    proc = start_cli("run", str(spec), "--name", "net")
    seen: set[tuple[str, str, str, int]] = set()
    reported = False
    try:
        end = time.time() + 300
        # Scan at every poll, until a trial has reported twice and the GCS was seen: every Ray component is up
        # by then (on a loaded machine a scan can miss a process that is starting or between reads).
        while time.time() < end and proc.poll() is None:
            seen |= _sockets_of(_process_tree(proc.pid))
            reported = any(len(rows) >= 2 for rows in trial_results(exp).values())
            if reported and any("gcs_server" in name for name, *_ in seen):
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"gave up (exit code {proc.poll()}): trial reported twice: {reported}; "
                f"processes seen: {sorted({name[:40] for name, *_ in seen})}"
            )
    finally:
        _kill_session(proc)
    assert any("gcs_server" in name for name, *_ in seen), "the scan found Ray's GCS: it looked at the right tree"
    exposed = sorted(s for s in seen if not _is_loopback(s[2]))
    assert not exposed, "listening beyond loopback:\n" + "\n".join(
        f"  {p:<6} {a}:{n}  {who}" for who, p, a, n in exposed
    )
