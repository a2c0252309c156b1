"""show rib end to end: the CLI -> control socket -> ControlServer -> RibClient (ZeroMQ DEALER)
-> RibBus (ROUTER) -> answer_query on real Cython tables, and back.

The first tests run the control server and a RIB bus in a thread of this process (its own
asyncio loop), the RIB side being the fake RIB of tests/rib/test_query.py with real tables; the
last one runs the real supervisor (``python -m rserver run`` machinery) with its RIB process,
once rserver/rib/process.py answers RibQuery."""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
import time
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from rserver.bus.messages import RibQuery
from rserver.bus.transport import RibBus
from rserver.cli import cli
from rserver.config import loads
from rserver.control.server import ControlServer
from rserver.rib.query import answer_query
from tests.control.helpers import Ctl

_tables = pytest.importorskip("rserver.rib._tables")

from tests.rib.test_query import FakeRib  # noqa: E402

CFG = """
[global]
local_as = 64500
router_id = "127.0.0.1"
[[neighbor]]
address = "127.0.1.1"
as = 64501
name = "alpha"
[[neighbor]]
address = "127.0.1.2"
as = 64502
name = "bravo"
[[neighbor]]
address = "127.0.1.3"
as = 64503
name = "charlie"
"""


class Backend:
    def __init__(self, endpoint: str):
        self.config = loads(CFG, "t.toml")
        self.peer_state: dict = {}
        self.shutting_down = False
        self.rib = SimpleNamespace(endpoint=endpoint)

    async def status(self, address=None, timeout=2.0):
        return []

    def admin(self, address, op, reason=""):
        return False


def _rib_tables() -> FakeRib:
    r = FakeRib()
    r.add_peer(1, "127.0.1.1", 64501, "alpha")
    r.add_peer(2, "127.0.1.2", 64502, "bravo")
    r.announce(1, ["10.0.0.0/8", "10.1.0.0/16"], as_path=[64501, 64510], med=10, communities=[(65000, 1)])
    r.announce(2, ["10.1.0.0/16", "10.1.2.0/24"], as_path=[64502])
    r.announce(1, ["2001:db8::/32"], as_path=[64501])
    return r


class Served:
    """A ControlServer and a RibBus answering queries from ``rib``, on a thread's loop."""

    def __init__(self, tmp_path, rib: FakeRib, *, answer: bool = True, **server_kw):
        self.sock = tmp_path / "rserver.sock"
        self.endpoint = f"ipc://{tmp_path}/rib.sock"
        self.rib = rib
        self.answer = answer
        self.server_kw = server_kw
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop_ev: asyncio.Event | None = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        assert self.ready.wait(10), "server thread did not start"

    def _on_message(self, identity, msg):
        if isinstance(msg, RibQuery) and self.answer:
            answer_query(self.rib, identity, msg)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self):
        self.stop_ev = asyncio.Event()
        bus = RibBus(self.endpoint, on_batch=lambda v: None, on_message=self._on_message)
        self.rib.bus = bus
        bus.start()
        self.server = ControlServer(Backend(self.endpoint), self.sock, **self.server_kw)
        await self.server.start()
        self.ready.set()
        await self.stop_ev.wait()
        await self.server.close()
        await bus.aclose(timeout=0.2)

    def close(self):
        self.loop.call_soon_threadsafe(self.stop_ev.set)
        self.t.join(10)


@pytest.fixture
def served(tmp_path):
    started = []

    def start(rib=None, **kw):
        s = Served(tmp_path, rib or _rib_tables(), **kw)
        started.append(s)
        return s
    yield start
    for s in started:
        s.close()


def cli_run(*args):
    return CliRunner().invoke(cli, list(args))


def test_cli_show_rib_json_text_detail(served):
    s = served()
    sock = str(s.sock)
    r = cli_run("show", "rib", "-j", "-s", sock)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [x["prefix"] for x in data["routes"]] == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32"]
    assert data["count"] == 4 and data["truncated"] is False and data["table"] == "loc-rib"
    best = data["routes"][1]["paths"][0]
    assert best["best"] and best["neighbor"] == "127.0.1.2" and best["neighbor_name"] == "bravo"

    r = cli_run("show", "rib", "-s", sock)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[1].split() == ["flags", "prefix", "nexthop", "neighbor", "MED", "LP", "AS", "path", "/", "origin"]
    assert lines[3].split() == ["*>", "10.1.0.0/16", "192.0.2.2", "127.0.1.2", "-", "-", "64502", "i"]
    assert lines[4].split() == ["*2", "10.1.0.0/16", "192.0.2.1", "127.0.1.1", "10", "-", "64501", "64510", "i"]

    r = cli_run("show", "rib", "10.1.0.0/16", "--detail", "-s", sock)
    assert r.exit_code == 0, r.output
    assert "*> from 127.0.1.2 (bravo) AS64502, path id 0" in r.stdout
    assert "decision: best" in r.stdout and "step 2 shortest AS_PATH" in r.stdout
    assert "communities 65000:1" in r.stdout

    r = cli_run("show", "rib", "for", "10.1.2.3", "-j", "-s", sock)
    assert [x["prefix"] for x in json.loads(r.stdout)["routes"]] == ["10.1.2.0/24"]
    r = cli_run("show", "rib", "10.0.0.0/8", "--longer", "-j", "-s", sock)
    assert json.loads(r.stdout)["count"] == 3
    r = cli_run("show", "rib", "--in", "alpha", "-4", "-j", "-s", sock)
    d = json.loads(r.stdout)
    assert d["table"] == "adj-rib-in" and [x["prefix"] for x in d["routes"]] == ["10.0.0.0/8", "10.1.0.0/16"]
    r = cli_run("show", "rib", "--limit", "1", "-s", sock)
    assert r.exit_code == 0 and "truncated after 1 prefix(es)" in r.stdout


def test_cli_show_rib_errors(served):
    s = served()
    sock = str(s.sock)
    r = cli_run("show", "rib", "10.0.0.300/8", "-s", sock)
    assert r.exit_code == 1
    assert "prefix: '10.0.0.300/8' is not a valid prefix" in r.stderr and "(bad-args)" in r.stderr
    r = cli_run("show", "rib", "for", "nope", "-s", sock)
    assert r.exit_code == 1 and "for: 'nope' is not a valid" in r.stderr
    r = cli_run("show", "rib", "--in", "zulu", "-s", sock)
    assert r.exit_code == 1 and "no neighbor with address or name 'zulu'" in r.stderr and "(unknown-neighbor)" in r.stderr
    r = cli_run("show", "rib", "--longer", "-s", sock)
    assert r.exit_code == 2                                         # usage: --longer needs a prefix
    # configured, but no session known to the RIB: nothing to show
    r = cli_run("show", "rib", "--in", "charlie", "-j", "-s", sock)
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["routes"] == [] and d["neighbor"] == "127.0.1.3" and "known to the RIB" in d["note"]


def test_protocol_errors_and_bounds(served):
    s = served(max_output=64 << 10)
    c = Ctl(s.sock)
    try:
        r = c.call("rib", limit=0)
        assert r["error"]["code"] == "bad-args" and "limit" in r["error"]["message"]
        r = c.call("rib", afi=5)
        assert r["error"]["code"] == "bad-args"
        r = c.call("rib", bogus=1)
        assert r["error"]["code"] == "bad-args"
        r = c.call("rib", match="sideways", prefix="10.0.0.0/8")
        assert r["error"]["code"] == "bad-args"
        # a reply bigger than the client's output allowance is cut to fit, not dropped
        rib = s.rib
        done = threading.Event()

        def grow():
            rib.announce(2, [f"10.{8 + i // 256}.{i % 256}.0/24" for i in range(2000)], as_path=[64502],
                         communities=[(65000, i) for i in range(20)])
            done.set()
        s.loop.call_soon_threadsafe(grow)
        assert done.wait(10)
        d = c.data("rib", limit=100000, detail=True)
        assert d["truncated"] is True and 0 < d["count"] < 2004
        assert len(json.dumps(d)) < 64 << 10
        assert c.data("rib", prefix="10.1.0.0/16")["count"] == 1      # the connection still serves
    finally:
        c.close()


def test_rib_not_answering_is_unavailable(served):
    s = served(answer=False)
    s.server.rib_query_timeout = 0.5
    c = Ctl(s.sock)
    try:
        t0 = time.monotonic()
        r = c.call("rib")
        assert r["ok"] is False and r["error"]["code"] == "unavailable"
        assert "rib process not answering" in r["error"]["message"]
        assert time.monotonic() - t0 < 3
        s.answer = True                       # a late reply is dropped, the next query is fine
        assert c.data("rib", prefix="10.0.0.0/8")["count"] == 1
    finally:
        c.close()


# --- the real supervisor and RIB process ---------------------------------------------------------

def _rib_answers_queries() -> bool:
    from rserver.rib import process
    return "RibQuery" in inspect.getsource(process)


def test_show_rib_against_the_running_server(tmp_path):
    if not _rib_answers_queries():
        pytest.skip("rserver/rib/process.py does not answer RibQuery yet (the lead wires answer_query)")
    from tests.supervisor.test_main import Running, make_config, wait_for
    cfg = make_config(tmp_path, 2)
    sup = Running(cfg, tmp_path, worker_main=None)
    try:
        sock = str(sup.run_dir / "rserver.sock")
        wait_for(lambda: os.path.exists(sock), "the control socket")
        end = time.monotonic() + 10
        while True:                                 # the RIB process may still be starting
            r = cli_run("show", "rib", "-j", "-s", sock)
            if r.exit_code == 0 or time.monotonic() > end:
                break
            time.sleep(0.2)
        assert r.exit_code == 0, (r.output, r.stderr)
        d = json.loads(r.stdout)
        assert d["routes"] == [] and d["count"] == 0 and d["truncated"] is False
        r = cli_run("show", "rib", "10.0.0.0/33", "-s", sock)
        assert r.exit_code == 1 and "prefix:" in r.stderr and "(bad-args)" in r.stderr
        r = cli_run("show", "rib", "--in", "127.0.1.1", "-j", "-s", sock)
        assert r.exit_code == 0 and json.loads(r.stdout)["routes"] == []

        # two members announce 10.1.0.0/16; the shorter AS_PATH (127.0.1.2's) is the best
        from rserver.codec.attrs import build_blob
        from rserver.codec.layout import CodecContext
        from rserver.codec.records import pack_prefixes
        from rserver.codec.update_py import encode_announce
        from tests.supervisor.test_main import PEERS, BgpPeer
        peers = [BgpPeer(PEERS[0], sup.port, 64501), BgpPeer(PEERS[1], sup.port, 64502)]
        for bp, path, nh in zip(peers, ([64501, 64510], [64502]), ("192.0.2.1", "192.0.2.2")):
            bp.establish()
            blob = build_blob(origin=0, as_path=path, next_hop=nh, communities=[(65000, 7)])
            bp.sock.sendall(encode_announce(blob, 1, pack_prefixes(1, ["10.1.0.0/16"]), CodecContext()))

        def two_paths():
            r = cli_run("show", "rib", "10.1.0.0/16", "-j", "-s", sock)
            d = json.loads(r.stdout) if r.exit_code == 0 else {"routes": []}
            return d if d["routes"] and len(d["routes"][0]["paths"]) == 2 else None
        d = wait_for(two_paths, "both paths of 10.1.0.0/16 in show rib")
        best, second = d["routes"][0]["paths"]
        assert best["best"] and best["neighbor"] == PEERS[1] and best["as_path"] == "64502"
        assert second["second"] and second["neighbor"] == PEERS[0] and second["communities"] == ["65000:7"]
        text = cli_run("show", "rib", "for", "10.1.2.3", "--detail", "-s", sock).stdout
        assert f"from {PEERS[1]}" in text and "decision: best" in text and "step 2 shortest AS_PATH" in text
        d = json.loads(cli_run("show", "rib", "--in", PEERS[0], "-j", "-s", sock).stdout)
        assert [r["prefix"] for r in d["routes"]] == ["10.1.0.0/16"] and d["routes"][0]["paths"][0]["second"]
        def sent():                         # what 127.0.1.2 was sent: 127.0.1.1's path
            r = cli_run("show", "rib", "--out", PEERS[1], "-j", "-s", sock)
            assert r.exit_code == 0, (r.output, r.stderr)
            d = json.loads(r.stdout)
            return d if d["routes"] else None
        out = wait_for(sent, "show rib --out 127.0.1.2")
        assert out["table"] == "adj-rib-out" and out["routes"][0]["prefix"] == "10.1.0.0/16"
        p = out["routes"][0]["paths"][0]
        assert p["as_path"] == "64501 64510" and p["neighbor"] == PEERS[0] and p["second"]
        for bp in peers:
            bp.sock.close()
    finally:
        assert sup.stop() == 0
        sup.cleanup()
