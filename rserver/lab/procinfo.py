"""What /proc says about processes: the lab and the full-table benchmark measure and stop
the route server's processes by PID with these (Linux only)."""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["stat_fields", "alive", "session_pids", "children", "descendants", "cpu_seconds", "memory_mb", "comm"]

CLK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> Optional[list[str]]:
    """/proc/PID/stat fields after the command name (state first), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def alive(pid: Optional[int], sid: Optional[int] = None) -> bool:
    """The process exists, is not a zombie and (if ``sid``) is in that session."""
    if not pid:
        return False
    f = stat_fields(pid)
    if f is None or f[0] in ("Z", "X"):
        return False
    return sid is None or int(f[3]) == sid


def _live_stats():
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = stat_fields(int(d))
            if f is not None and f[0] not in ("Z", "X"):
                yield int(d), f


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (a detached process and what it forked)."""
    return sorted(p for p, f in _live_stats() if int(f[3]) == sid)


def children(pid: int) -> list[int]:
    """Live child PIDs of ``pid``, sorted."""
    return sorted(p for p, f in _live_stats() if int(f[1]) == pid)


def descendants(root: int) -> list[int]:
    """``root`` and every live descendant (by the ppid field)."""
    kids: dict[int, list[int]] = {}
    for p, f in _live_stats():
        kids.setdefault(int(f[1]), []).append(p)
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_seconds(pids: list[int], root: Optional[int] = None) -> dict[int, float]:
    """{pid: utime+stime seconds}; ``root`` also counts its reaped children (cutime+cstime)."""
    out = {}
    for p in pids:
        f = stat_fields(p)
        if f is None:
            continue
        t = int(f[11]) + int(f[12])
        if p == root:
            t += int(f[13]) + int(f[14])
        out[p] = t / CLK
    return out


def memory_mb(pids: list[int], per_pid: Optional[dict] = None) -> tuple[float, float]:
    """(PSS, RSS) in MB summed over ``pids`` (smaps_rollup); ``per_pid``, if given, gets each
    process's PSS in MB."""
    pss = rss = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        v = int(line.split()[1])
                        pss += v
                        if per_pid is not None:
                            per_pid[p] = v / 1024
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return pss / 1024, rss / 1024


def comm(pid: int, default: Optional[str] = None) -> str:
    """The process name; ``default`` (the pid as text if None) when it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return str(pid) if default is None else default
