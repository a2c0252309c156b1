"""Model-based test of the route server through the real processes (issue 4 item 5).

A running rserver (supervisor, RIB process, one session worker per member) and four
members played by ``rserver.lab.speaker.Speaker`` on 127.0.1.1-4. Hypothesis drives random
announce / withdraw / ROUTE-REFRESH / session-down-and-up sequences; after every step each
member's received table must equal what a plain Python model of RFC 7947 says it should
hold: per prefix the best path among the other members' paths (the best overall unless it
is the member's own, then the best from another member, RFC 7947 §2.3.2.1), attributes
unchanged, nothing looped back, withdrawn when nothing is left.
"""
from __future__ import annotations

import asyncio
import os
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from rserver.lab.speaker import Speaker
from tests.procs import RunningServer, member_config

pytestmark = pytest.mark.slow

MEMBERS = (1, 2, 3, 4)
PREFIXES = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "192.0.2.0/24", "198.51.100.0/24",
            "2001:db8::/32", "2001:db8:1::/48"]
# attribute variants: AS_PATH length decides first (RFC 4271 §9.1.2.2 a); ORIGIN next
PATHS = [(), (65010,), (65010, 65011), (65012, 65013, 65014)]


def _asn(i: int) -> int:
    return 64500 + i


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    cfg, port = member_config(d, MEMBERS, global_extra="loopback_next_hop = true",
                              defaults="hold_time = 240\nerror_wait_time = 0.2")
    with RunningServer(cfg, d / "rserver.log"):
        yield port


def _blob_key(attrs):
    path = tuple(a for _t, seg in attrs.as_path for a in seg)
    return (path, attrs.origin, attrs.med, tuple(tuple(c) for c in attrs.communities), attrs.next_hop)


class RouteServerModel(RuleBasedStateMachine):
    port = 0

    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.speakers: dict[int, Speaker] = {}
        # the model: per member, prefix -> (as_path tail, origin, med, communities)
        self.adj_in: dict[int, dict[str, tuple]] = {i: {} for i in MEMBERS}

    def run(self, coro, timeout=20):
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    async def _connect(self, i: int) -> Speaker:
        last = None
        for _ in range(100):        # the server may still be in its error wait after a close
            s = Speaker(f"127.0.1.{i}", _asn(i), f"10.0.0.{i}", "127.0.0.1", self.port,
                        hold_time=240, keep="full")
            try:
                await s.connect(timeout=5)
                await s.wait_eor(1, timeout=10)
                return s
            except Exception as e:      # refused (6/5 in Idle) or not yet listening
                last = e
                await s.close()
                await asyncio.sleep(0.1)
        raise AssertionError(f"member {i} could not reconnect: {last}")

    @initialize()
    def connect_all(self):
        for i in MEMBERS:
            self.speakers[i] = self.run(self._connect(i))

    # -- the model ---------------------------------------------------------------------------
    def expected(self, m: int) -> dict:
        """What member m must hold: prefix -> attribute key (RFC 7947 + RFC 4271 decision)."""
        out = {}
        prefixes = {p for tbl in self.adj_in.values() for p in tbl}
        for p in prefixes:
            cands = [(len(tbl[p][0]) + 1, tbl[p][1], i) for i, tbl in self.adj_in.items() if p in tbl]
            # MED is only compared between paths from the same neighbour AS (every member has
            # its own AS here), then the lowest BGP identifier (10.0.0.i) wins
            best = min(cands)
            if best[2] == m:
                others = [c for c in cands if c[2] != m]
                if not others:
                    continue
                best = min(others)
            src = best[2]
            path, origin, med, comms = self.adj_in[src][p]
            nh = f"127.0.1.{src}" if ":" not in p else f"2001:db8::{src}"
            out[p] = ((_asn(src),) + path, origin, med, comms, nh)
        return out

    def received(self, m: int) -> dict:
        s = self.speakers[m]
        out = {}
        for (afi, p, _pid) in s.routes():
            a = s.route_attrs(p, afi=afi)
            out[p] = _blob_key(a)
        return out

    async def _settle(self):
        end = time.monotonic() + 10
        while True:
            if all(self.received(m) == self.expected(m) for m in MEMBERS):
                return
            if time.monotonic() > end:
                return
            await asyncio.sleep(0.05)

    # -- rules ---------------------------------------------------------------------------------
    @rule(m=st.sampled_from(MEMBERS), prefixes=st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=4, unique=True),
          path=st.sampled_from(PATHS), origin=st.integers(0, 2), med=st.none() | st.integers(0, 20),
          comm=st.booleans())
    def announce(self, m, prefixes, path, origin, med, comm):
        s = self.speakers[m]
        comms = ((65000, m),) if comm else ()
        v4 = [p for p in prefixes if ":" not in p]
        v6 = [p for p in prefixes if ":" in p]
        base = dict(as_path=[_asn(m), *path], origin=origin, med=med, communities=list(comms))
        if v4:
            self.run(s.announce(v4, attrs=dict(base, next_hop=f"127.0.1.{m}")))
        if v6:
            self.run(s.announce(v6, attrs=dict(base, next_hop=f"2001:db8::{m}", afi=2)))
        for p in prefixes:
            self.adj_in[m][p] = (tuple(path), origin, med, comms)

    @rule(m=st.sampled_from(MEMBERS), prefixes=st.lists(st.sampled_from(PREFIXES), min_size=1, max_size=3, unique=True))
    def withdraw(self, m, prefixes):
        self.run(self.speakers[m].withdraw(prefixes))
        for p in prefixes:
            self.adj_in[m].pop(p, None)

    @rule(m=st.sampled_from(MEMBERS))
    def session_down_and_up(self, m):
        self.run(self.speakers[m].close("model test"))
        self.adj_in[m] = {}
        self.speakers[m] = self.run(self._connect(m), timeout=30)

    @rule(m=st.sampled_from(MEMBERS))
    def refresh(self, m):
        s = self.speakers[m]
        self.run(s.send_route_refresh(1))
        self.run(s.send_route_refresh(2))

    @invariant()
    def tables_match(self):
        if not self.speakers:
            return
        self.run(self._settle(), timeout=15)
        for m in MEMBERS:
            got, want = self.received(m), self.expected(m)
            assert got == want, f"member {m}: received {got} but the RFC 7947 model says {want}"
            own = [p for p, a in got.items() if a[0] and a[0][0] == _asn(m)]
            assert not own, f"member {m} got its own routes back: {own}"

    def teardown(self):
        for s in self.speakers.values():
            try:
                self.run(s.close("example done"))
            except Exception:
                pass
        self.speakers.clear()
        # give the server the time to see every session down before the next example
        self.loop.run_until_complete(asyncio.sleep(0.3))
        self.loop.close()


def test_route_server_model(server):
    RouteServerModel.port = server
    from hypothesis.stateful import run_state_machine_as_test
    run_state_machine_as_test(RouteServerModel, settings=settings(
        max_examples=int(os.environ.get("RSERVER_MODEL_EXAMPLES", "8")), stateful_step_count=12,
        deadline=None, suppress_health_check=list(HealthCheck)))
