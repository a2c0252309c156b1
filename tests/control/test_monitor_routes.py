"""``monitor --routes`` and the RIB columns of ``show summary`` against a running server:
real supervisor, workers and RIB process, two members (rserver.lab.speaker.Speaker) on
127.0.1.1 / 127.0.1.2; a raw control-socket client and a ``rserver monitor --routes -j``
subprocess see the announce and the withdraw of a prefix one member sends; ``show summary
-j`` shows the accepted / exported counts."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("rserver.rib._tables")

from tests.supervisor.test_main import PEERS, Running, make_config, wait_for  # noqa: E402

BOUND = 10.0
PFX = "10.1.0.0/16"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rserver", *args], capture_output=True, text=True,
                          timeout=BOUND + 5)


class _Lines:
    """A subprocess's stdout lines, read by a thread (every wait bounded)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._t.start()

    def _read(self, proc):
        for line in proc.stdout:
            self.lines.append(line)


async def _route_event(reader: asyncio.StreamReader, pred, what: str) -> dict:
    end = time.monotonic() + BOUND
    seen = []
    while True:
        left = end - time.monotonic()
        if left <= 0:
            pytest.fail(f"no {what} on the monitor stream; got {seen}")
        try:
            line = await asyncio.wait_for(reader.readline(), left)
        except asyncio.TimeoutError:
            continue
        assert line, "the control server closed the monitor connection"
        ev = json.loads(line)
        seen.append(ev)
        if ev.get("event") == "route" and pred(ev["data"]):
            return ev


async def _members(port: int):
    from rserver.lab.speaker import Speaker
    a = Speaker(PEERS[0], 64501, PEERS[0], "127.0.0.1", port, ipv6=False)
    b = Speaker(PEERS[1], 64502, PEERS[1], "127.0.0.1", port, ipv6=False)
    for sp in (a, b):
        end = time.monotonic() + BOUND
        while True:
            try:
                await sp.connect(5)
                break
            except Exception:
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.2)
    return a, b


def test_monitor_routes_and_summary_counts(tmp_path):
    cfg = make_config(tmp_path, 2)
    sup = Running(cfg, tmp_path, worker_main=None)
    mon = None
    try:
        sock = str(sup.run_dir / "rserver.sock")
        wait_for(lambda: os.path.exists(sock), "the control socket")
        wait_for(lambda: _cli("show", "rib", "-j", "-s", sock).returncode == 0, "the RIB to answer")

        # without members: the summary has the RIB columns, zero
        d = json.loads(_cli("show", "summary", "-j", "-s", sock).stdout)
        assert d["rib"]["status"] == "ok"
        assert d["neighbors"][0]["accepted"] == {"ipv4": 0, "ipv6": 0}

        mon = subprocess.Popen([sys.executable, "-m", "rserver", "monitor", "--routes", "10.0.0.0/8", "-j",
                                "-s", sock], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = _Lines(mon)
        wait_for(lambda: f"control client monitoring routes  client_pid={mon.pid}" in sup.log(),
                 "the monitor subprocess to subscribe")

        async def t():
            r, w = await asyncio.open_unix_connection(sock)
            w.write(b'{"v": 1, "id": 1, "cmd": "monitor", "args": {"routes": true}}\n')
            reply = json.loads(await asyncio.wait_for(r.readline(), BOUND))
            assert reply["ok"], reply
            assert reply["data"]["events"] == ["peer-state", "route", "dropped", "rib"]
            assert reply["data"]["routes"]["status"] == "ok" and reply["data"]["routes"]["prefix"] is None
            a, b = await _members(sup.port)
            try:
                await a.announce([PFX], attrs={"as_path": [64501, 64510], "next_hop": "192.0.2.1"})
                ev = await _route_event(r, lambda d: d["prefix"] == PFX, "announce event")
                e = ev["data"]
                assert e["action"] == "announce" and e["afi"] == 4 and e["previous_neighbor"] is None
                assert e["best"] == {"neighbor": PEERS[0], "as_path": "64501 64510", "next_hop": "192.0.2.1"}
                assert isinstance(e["time"], float)

                def counts():
                    p = _cli("show", "summary", "-j", "-s", sock)
                    if p.returncode:
                        return None
                    rows = {n["address"]: n for n in json.loads(p.stdout)["neighbors"]}
                    ok = (rows[PEERS[0]]["accepted"] == {"ipv4": 1, "ipv6": 0}
                          and rows[PEERS[1]]["exported"] == {"ipv4": 1, "ipv6": 0})
                    return rows if ok else None
                rows = await asyncio.to_thread(wait_for, counts, "show summary: accepted / exported")
                assert rows[PEERS[0]]["exported"] == {"ipv4": 0, "ipv6": 0}      # its own route
                assert rows[PEERS[1]]["accepted"] == {"ipv4": 0, "ipv6": 0}
                assert rows[PEERS[0]]["prefixes_received"] == 1
                text = (await asyncio.to_thread(_cli, "show", "summary", "-s", sock)).stdout.splitlines()
                assert text[0].split()[-3:] == ["PfxRcvd", "Accepted", "Exported"]
                assert text[1].split()[-3:] == ["1", "1", "0"] and text[2].split()[-3:] == ["0", "0", "1"]
                n = json.loads((await asyncio.to_thread(_cli, "show", "neighbor", PEERS[1], "-j", "-s", sock)).stdout)
                assert n["exported"] == {"ipv4": 1, "ipv6": 0} and n["rib"]["export"]["prefixes_sent"] >= 1

                await a.withdraw([PFX])
                ev = await _route_event(r, lambda d: d["prefix"] == PFX and d["action"] == "withdraw",
                                        "withdraw event")
                assert ev["data"]["best"] is None and ev["data"]["previous_neighbor"] == PEERS[0]
            finally:
                await a.close()
                await b.close()
                w.close()

        asyncio.run(asyncio.wait_for(t(), 4 * BOUND))

        def cli_saw():
            evs = [json.loads(x) for x in lines.lines if x.strip()]
            acts = [e["data"]["action"] for e in evs if e.get("event") == "route" and e["data"]["prefix"] == PFX]
            return acts if acts[:2] == ["announce", "withdraw"] else None
        wait_for(cli_saw, "the monitor subprocess to print the announce and the withdraw")
    finally:
        if mon is not None:
            mon.terminate()
            try:
                mon.wait(5)
            except subprocess.TimeoutExpired:
                mon.kill()
                mon.wait(5)
        assert sup.stop() == 0
        sup.cleanup()


# --- in-process: a RIB bus answering from real tables (tests/control/test_show_rib.py) -------



async def _ctl_line(reader) -> dict:
    return json.loads(await asyncio.wait_for(reader.readline(), BOUND))


def _on_loop(s, fn):
    """Run fn on the served loop (the RIB's tables and its flush timer live there)."""
    done = threading.Event()

    def run():
        try:
            fn()
        finally:
            done.set()
    s.loop.call_soon_threadsafe(run)
    assert done.wait(BOUND)


def test_summary_and_monitor_without_the_rib_then_resubscribed(served):
    s = served(answer=False)
    s.server.rib_timeout = 0.3
    s.server.route_renew = 0.2
    p = _cli("show", "summary", "-j", "-s", str(s.sock))
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["rib"]["status"] == "unavailable" and "not answering" in d["rib"]["message"]
    assert all(n["accepted"] is None and n["exported"] is None for n in d["neighbors"])
    text = _cli("show", "summary", "-s", str(s.sock)).stdout
    assert "(RIB unavailable: accepted/exported unknown" in text

    async def t():
        r, w = await asyncio.open_unix_connection(str(s.sock))
        w.write(b'{"v": 1, "id": 1, "cmd": "monitor", "args": {"routes": true, "prefix": "10.0.0.0/8"}}\n')
        reply = await _ctl_line(r)
        assert reply["ok"] and reply["data"]["routes"]["status"] == "unavailable"
        assert reply["data"]["routes"]["prefix"] == "10.0.0.0/8"
        s.answer = True                         # the RIB is back: the renewal subscribes
        ev = await _ctl_line(r)
        assert ev["event"] == "rib" and ev["data"]["status"] == "resubscribed", ev
        _on_loop(s, lambda: s.rib.announce(2, ["10.50.0.0/16", "192.0.2.0/24"], as_path=[64502]))
        ev = await _ctl_line(r)
        assert ev["event"] == "route" and ev["data"]["prefix"] == "10.50.0.0/16"   # filtered
        assert ev["data"]["best"]["neighbor"] == "127.0.1.2"
        w.close()
        end = time.monotonic() + BOUND              # the last route monitor left: unsubscribed
        while s.rib.route_events is not None and time.monotonic() < end:
            await asyncio.sleep(0.05)
        assert s.rib.route_events is None
    asyncio.run(asyncio.wait_for(t(), 4 * BOUND))

    d = json.loads(_cli("show", "summary", "-j", "-s", str(s.sock)).stdout)
    assert d["rib"]["status"] == "ok"
    rows = {n["address"]: n for n in d["neighbors"]}
    assert rows["127.0.1.1"]["accepted"] == {"ipv4": 2, "ipv6": 1}
    assert rows["127.0.1.3"]["accepted"] == {"ipv4": 0, "ipv6": 0}        # unknown to the RIB
    assert rows["127.0.1.1"]["exported"] == {"ipv4": 0, "ipv6": 0}        # not an export client


def test_monitor_client_not_reading_route_events_is_dropped(served):
    s = served(max_output=16384)
    import socket as _socket
    stuck = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    stuck.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, 4096)
    stuck.connect(str(s.sock))
    try:
        stuck.sendall(b'{"v": 1, "id": 1, "cmd": "monitor", "args": {"routes": true}}\n')
        stuck.settimeout(BOUND)
        assert json.loads(stuck.recv(4096).split(b"\n")[0])["ok"]
        wait_for(lambda: s.rib.route_events is not None and s.rib.route_events.subs, "the subscription")
        pfx = [f"10.{100 + i // 256}.{i % 256}.0/24" for i in range(3000)]
        _on_loop(s, lambda: s.rib.announce(1, pfx, as_path=[64501]))
        wait_for(lambda: not s.server.clients, "the non-reading monitor to be dropped")
        wait_for(lambda: s.rib.route_events is None, "the unsubscribe at the RIB")
        # the server still serves
        p = _cli("show", "summary", "-j", "-s", str(s.sock))
        assert p.returncode == 0 and json.loads(p.stdout)["rib"]["status"] == "ok"
    finally:
        stuck.close()
