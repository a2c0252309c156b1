"""Shared pieces of the benchmark suite: the tables, memory probes and the results table.

Sizes can be reduced for a quick run with RSERVER_BENCH_V4 / RSERVER_BENCH_V6 (prefix counts).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory import maxrss_mb
from bench.tablegen import generate_v4, generate_v6

N_V4 = int(os.environ.get("RSERVER_BENCH_V4", "1000000"))
N_V6 = int(os.environ.get("RSERVER_BENCH_V6", "220000"))
_ROOT = Path(__file__).resolve().parent.parent

_results_key = pytest.StashKey[list]()


# --- tables ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tables():
    """The IPv4 and IPv6 tables, generated once (in a child process, so that generating
    does not count in this process's peak RSS) and loaded from bench/data/."""
    subprocess.run(
        [sys.executable, "-m", "bench.tablegen", "--v4", str(N_V4), "--v6", str(N_V6)],
        cwd=_ROOT, check=True, capture_output=True,
    )
    return {"ipv4": generate_v4(N_V4), "ipv6": generate_v6(N_V6)}


# --- results --------------------------------------------------------------------------
def pytest_configure(config):
    config.stash[_results_key] = []


@pytest.fixture
def record_result(request):
    """record_result(backend, operation, family, prefixes, mean_s, peak_mb, delta_mb)"""
    def record(**row):
        request.config.stash[_results_key].append(row)
    return record


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = config.stash.get(_results_key, [])
    if not rows:
        return
    tr = terminalreporter
    tr.section("rserver codec throughput")
    head = f"{'backend':<8} {'operation':<9} {'family':<6} {'prefixes':>10} {'mean s':>9} " \
           f"{'prefixes/s':>12} {'peak RSS MB':>12} {'op +MB':>8}"
    tr.write_line(head)
    tr.write_line("-" * len(head))
    for r in rows:
        tr.write_line(
            f"{r['backend']:<8} {r['operation']:<9} {r['family']:<6} {r['prefixes']:>10,} "
            f"{r['mean_s']:>9.4f} {r['prefixes'] / r['mean_s']:>12,.0f} "
            f"{r['peak_mb']:>12.1f} {r['delta_mb']:>8.1f}")
    tr.write_line(f"largest peak RSS (ru_maxrss) during a benchmark: {max(r['peak_mb'] for r in rows):.1f} MB; "
                  "peak RSS = whole process during that benchmark (tables and decoded batches "
                  "included), op +MB = peak minus RSS just before it")
