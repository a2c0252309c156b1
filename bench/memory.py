"""Memory probes for the benchmarks (Linux; ru_maxrss is in kB there)."""
from __future__ import annotations

import os
import resource


def maxrss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss, kB on Linux) in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def reset_peak() -> bool:
    """Reset the peak-RSS watermark (Linux: /proc/self/clear_refs "5"), so that ru_maxrss
    afterwards is the peak of what follows. False when the kernel does not allow it (then
    the figures are the process's peak so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
