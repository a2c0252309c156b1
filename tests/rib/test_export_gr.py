"""Graceful restart through the real processes (RFC 4724 helper, issue 4 item 3): a member
that negotiated graceful restart and loses its TCP session without a NOTIFICATION keeps its
routes at the other members (stale) until it comes back; its End-of-RIB then sweeps what
it did not announce again, and the other members see exactly that withdrawal. A member
without graceful restart that drops is withdrawn at once."""
from __future__ import annotations

import asyncio

import pytest

from rserver.lab.speaker import Speaker
from tests.procs import RunningServer, member_config

pytestmark = pytest.mark.slow


def test_graceful_restart_keeps_routes_until_end_of_rib(tmp_path):
    cfg, port = member_config(tmp_path, (1, 2, 3), global_extra="loopback_next_hop = true",
                              defaults="hold_time = 240\nerror_wait_time = 0.2")

    def mk(i, gr):
        return Speaker(f"127.0.1.{i}", 64500 + i, f"10.0.0.{i}", "127.0.0.1", port, hold_time=240,
                       graceful_restart=gr, ipv6=False)

    async def connect(s):
        for _ in range(50):
            try:
                await s.connect(timeout=5)
                await s.wait_eor(1, timeout=10)
                return s
            except Exception:
                await s.close()
                await asyncio.sleep(0.2)
                s = mk(int(s.local_addr.rsplit(".", 1)[1]), s.graceful_restart)
        raise AssertionError("no session")

    async def scenario():
        a = await connect(mk(1, 120))           # graceful restart, restart time 120 s
        b = await connect(mk(2, None))           # no graceful restart
        c = await connect(mk(3, None))           # the observer
        await a.announce(["10.1.0.0/16", "10.2.0.0/16"])
        await b.announce(["10.3.0.0/16"])
        want = {"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"}
        await c.wait_for(lambda: {k[1] for k in c.routes()} == want, 10, "three routes")

        a._abort()                               # TCP gone, no NOTIFICATION: a restart
        b._abort()                               # same, but b has no graceful restart
        await c.wait_for(lambda: {k[1] for k in c.routes()} == {"10.1.0.0/16", "10.2.0.0/16"}, 10,
                         "b's route withdrawn, a's kept")
        await asyncio.sleep(1.0)                 # a's stay (stale), nothing else moves
        assert {k[1] for k in c.routes()} == {"10.1.0.0/16", "10.2.0.0/16"}

        a2 = await connect(mk(1, 120))           # a comes back, re-announces one of the two
        await a2.announce(["10.1.0.0/16"])
        await asyncio.sleep(0.5)
        assert {k[1] for k in c.routes()} == {"10.1.0.0/16", "10.2.0.0/16"}   # until End-of-RIB
        await a2.send_eor(1)
        await c.wait_for(lambda: {k[1] for k in c.routes()} == {"10.1.0.0/16"}, 10, "stale route swept")
        for s in (a2, c):
            await s.close()

    with RunningServer(cfg, tmp_path / "rserver.log"):
        asyncio.run(asyncio.wait_for(scenario(), 120))
