"""bench/fulltable.py in a tiny form against BIRD 2 as a route server (loopback only).

Skipped only when bird is not installed. Every client must hold every expected prefix; the
BIRD configuration the benchmark uses must relay the announcers' next hop (192.0.2.1) and
AS_PATH unchanged.
"""
from __future__ import annotations

import asyncio
import pytest

from bench.fulltable import BirdTarget, Peer, build_workload, find_binary, free_port, run_one
from rserver.lab.speaker import Speaker

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _need_bird():
    if find_binary("bird") is None:
        pytest.skip("bird is not installed (Debian package bird2)")


def test_scenario_a_tiny():
    wl = build_workload("a", 5000, 2, addr_base=150, quiet=True)
    r = run_one(wl, "bird", timeout=30, workers=2, progress=False)
    assert r.converged, r.error
    assert r.per_client == [5000, 5000]
    assert r.delivered == 10_000
    assert r.peak_pss > 0 and r.target_cpu >= 0 and r.bench_cpu >= 0   # tiny: CPU may round to 0


def test_scenario_b_tiny():
    wl = build_workload("b", 2000, 2, n_announcers=3, addr_base=160, quiet=True)
    assert len(wl.announcers) == 3 and 5500 < wl.expected <= 6000
    r = run_one(wl, "bird", timeout=30, workers=2, progress=False)
    assert r.converged, r.error
    assert r.per_client == [wl.expected] * 2


def test_bird_config_is_transparent(tmp_path):
    """The announcer's next hop and AS_PATH reach the client unchanged (rs client)."""
    ann = Peer("announcer1", "127.0.1.170", 64601, "announcer")
    cli = Peer("client1", "127.0.1.171", 4_200_000_101, "client")
    port = free_port()
    target = BirdTarget(tmp_path / "bird", port, [ann, cli])

    async def t():
        a = Speaker(ann.address, ann.asn, ann.address, "127.0.0.1", port, ipv6=False)
        c = Speaker(cli.address, cli.asn, cli.address, "127.0.0.1", port, ipv6=False)
        await asyncio.gather(a.connect(10), c.connect(10))
        try:
            await a.announce(["198.51.100.0/24", "93.184.216.0/24"],
                             attrs={"as_path": [64601, 65010], "next_hop": "192.0.2.1", "med": 7})
            await c.wait_count(1, 2, 10)
            r = c.route_attrs("93.184.216.0/24")
            assert r.next_hop == "192.0.2.1"
            assert r.as_path == [(2, [64601, 65010])]
            assert r.med == 7
        finally:
            await a.close()
            await c.close()

    target.start()
    try:
        asyncio.run(asyncio.wait_for(t(), 30))
    finally:
        target.stop()
