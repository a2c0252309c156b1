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

import pytest

from bench.tablegen import generate_v4
from rserver.lab.speaker import Speaker
from tests.procs import RunningServer, children, comm, member_config

pytestmark = pytest.mark.slow

N = 1_000_000


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def _worker_of(sup: int, address: str) -> int:
    # one worker per neighbor, forked in neighbor order: rserver-w<i> serves 127.0.1.<i+1>
    name = f"rserver-w{int(address.rsplit('.', 1)[1]) - 1}"
    found = [k for k in children(sup) if comm(k) == name]
    assert found, f"no worker {name} under {sup}"
    return found[0]


def test_slow_client_does_not_hold_up_others_and_catches_up(tmp_path):
    cfg, port = member_config(tmp_path, (1, 2, 3), defaults="hold_time = 240\nmax_prefix = { ipv4 = 1000000 }")
    table = generate_v4(N, seed=5, peer_as=64501)

    async def scenario(p):
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

    with RunningServer(cfg, tmp_path / "rserver.log") as p:
        rss = asyncio.run(asyncio.wait_for(scenario(p), 180))
        # what member 3 was not sent is ~30 MB of UPDATEs; its worker holds at most its queue
        # watermark (8 MiB) plus what was in flight, on top of a ~30 MB interpreter
        assert rss < 80, f"stalled client's worker grew to {rss:.0f} MB"
        text = (tmp_path / "rserver.log").read_text()
        assert "the RIB holds this client's updates" in text and "the RIB resumes this client" in text
