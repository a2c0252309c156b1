"""Process and port helpers shared by the tests that start real processes.

Every test that starts a process stops it by PID (DEVELOPERS.md); these read /proc so
they work for grandchildren too and never mistake a zombie for a live process.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``addr`` a moment ago."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()   # after "pid (comm) ": state, ppid, ...


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    f = _stat_fields(pid)
    return f is not None and f[0] != "Z"


def children(pid: int) -> list[int]:
    """Live (non-zombie) child PIDs of ``pid``."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat_fields(int(d))
            if f is not None and int(f[1]) == pid and f[0] != "Z":
                out.append(int(d))
    return sorted(out)


def kill_pid(pid: int) -> None:
    """SIGTERM, then SIGKILL after a bound; reap it if it is our child."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        if not alive(pid):
            break
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def comm(pid: int) -> str:
    """The process name (rserver names its children "rserver-w<i>" and "rserver-rib")."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def worker_children(pid: int) -> list[int]:
    """The session-worker children of a supervisor (not its RIB process)."""
    return [k for k in children(pid) if comm(k).startswith("rserver-w")]
