"""A client that stops reading does not hold up the others and is caught up afterwards
(docs/export.md "Flow control and slow clients"), through the real processes.

Member 1 announces a 1M-prefix table (~30 MB of UPDATEs, well above the worker's 8 MiB per
client export queue watermark). Member 2 reads normally; member 3 stops reading its socket
before the table arrives. Member 2 must get the whole table while member 3 is stalled;
member 3's session worker must stay far below the size of what it was not sent (the RIB
holds the prefixes to revisit, not encoded updates); when member 3 reads again it ends up
with exactly the same table.
"""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time

import pytest

from bench.tablegen import generate_v4
from rserver.lab.speaker import Speaker
from tests.procs import children, free_port, kill_pid

pytestmark = pytest.mark.slow

N = 1_000_000


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def _worker_of(sup: int, address: str) -> int:
    # workers are forked in neighbor order: one per neighbor (comm rserver-w<i>)
    kids = sorted(children(sup))
    names = {}
    for k in kids:
        try:
            names[k] = open(f"/proc/{k}/comm").read().strip()
        except OSError:
            pass
    idx = int(address.rsplit(".", 1)[1]) - 1
    for k, n in names.items():
        if n == f"rserver-w{idx}":
            return k
    raise AssertionError(f"no worker for {address}: {names}")


def test_slow_client_does_not_hold_up_others_and_catches_up(tmp_path):
    port = free_port("127.0.0.1")
    cfg = tmp_path / "rs.toml"
    cfg.write_text(f'''[global]
local_as = 64500
router_id = "127.0.0.1"
listen = ["127.0.0.1"]
port = {port}
run_dir = "{tmp_path}/run"
[defaults]
hold_time = 240
max_prefix = {{ ipv4 = 1000000 }}
''' + "".join(f'''[[neighbor]]
address = "127.0.1.{i}"
as = {64500 + i}
''' for i in (1, 2, 3)))
    log = open(tmp_path / "rserver.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(cfg)], stdout=log,
                         stderr=subprocess.STDOUT)
    table = generate_v4(N, seed=5, peer_as=64501)

    async def scenario():
        deadline = time.monotonic() + 20
        while not (tmp_path / "run" / "rserver.sock").exists():
            assert p.poll() is None and time.monotonic() < deadline, "rserver did not start"
            await asyncio.sleep(0.05)
        sp = {}
        for i, keep in ((1, "none"), (2, "count"), (3, "count")):
            sp[i] = Speaker(f"127.0.1.{i}", 64500 + i, f"10.0.0.{i}", "127.0.0.1", port, hold_time=240, keep=keep)
            await sp[i].connect(timeout=10)
            await sp[i].wait_eor(1, timeout=10)
        slow = sp[3]
        slow._transport.pause_reading()             # member 3 stops reading its socket
        await sp[1].send_raw(table.wire)
        await sp[2].wait_count(1, N, timeout=60)     # member 2 is not held up
        await asyncio.sleep(1.0)
        w3 = _worker_of(p.pid, "127.0.1.3")
        rss_stalled = _rss_mb(w3)
        assert slow.count(1) < N
        slow._transport.resume_reading()
        await slow.wait_count(1, N, timeout=90)      # and it is caught up afterwards
        assert slow.count_prefixes(1) == sp[2].count_prefixes(1) == N
        for s in sp.values():
            await s.close()
        return rss_stalled

    try:
        rss = asyncio.run(asyncio.wait_for(scenario(), 180))
        # what member 3 was not sent is ~30 MB of UPDATEs; its worker holds at most its queue
        # watermark (8 MiB) plus what was in flight, on top of a ~30 MB interpreter
        assert rss < 80, f"stalled client's worker grew to {rss:.0f} MB"
        text = (tmp_path / "rserver.log").read_text()
        assert "the RIB holds this client's updates" in text and "the RIB resumes this client" in text
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            kill_pid(p.pid)
        log.close()
