"""The control server in-process, on a fake backend: bounded output (a monitor client that
does not read is dropped, the others are served), the client cap, shutdown removes the
socket, a worker that does not answer gives "unavailable" instead of a hang."""
from __future__ import annotations

import asyncio
import json
import socket
import time

from rserver.bus.messages import PeerEvent
from rserver.config import loads
from rserver.control.client import ControlClient, ControlError
from rserver.control.server import ControlServer

CFG = """
[global]
local_as = 64500
router_id = "127.0.0.1"
[[neighbor]]
address = "127.0.1.1"
as = 64501
name = "alpha"
"""


class Backend:
    def __init__(self, answer: bool = True):
        self.config = loads(CFG, "t.toml")
        self.peer_state: dict = {}
        self.shutting_down = False
        self.answer = answer
        self.admins: list = []

    async def status(self, address=None, timeout=2.0):
        if not self.answer:
            await asyncio.sleep(timeout)
            return []
        return [{"address": "127.0.1.1", "name": "alpha", "state": "established", "admin_up": True,
                 "uptime": 5.0, "downtime": None, "last_transition_reason": "keepalive received",
                 "last_transition_time": time.time(), "prefixes_received": 7,
                 "messages_received": {"open": 1, "keepalive": 2}, "messages_sent": {"open": 1}}]

    def admin(self, address, op, reason=""):
        self.admins.append((address, op, reason))
        return True


async def _line(reader) -> dict:
    return json.loads(await asyncio.wait_for(reader.readline(), 10))


async def _req(reader, writer, rid, cmd, **args) -> dict:
    writer.write(json.dumps({"v": 1, "id": rid, "cmd": cmd, "args": args}).encode() + b"\n")
    return await _line(reader)


def test_monitor_client_not_reading_is_dropped(tmp_path):
    async def main():
        be = Backend()
        srv = ControlServer(be, tmp_path / "s.sock", max_output=4096)
        await srv.start()
        # the stuck client: tiny receive buffer, asks for monitor, never reads
        stuck = socket.socket(socket.AF_UNIX)
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stuck.connect(str(tmp_path / "s.sock"))
        stuck.sendall(b'{"v": 1, "id": 1, "cmd": "monitor"}\n')
        r, w = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        assert (await _req(r, w, 1, "monitor"))["ok"]
        for _ in range(100):
            await asyncio.sleep(0.01)
            if sum(c.monitoring for c in srv.clients) == 2:
                break
        assert sum(c.monitoring for c in srv.clients) == 2
        ev = PeerEvent(address="127.0.1.1", name="alpha", old_state="active", new_state="established",
                       reason="x" * 100, time=1.0)
        received = []

        async def consume():                               # the good client keeps reading
            while True:
                line = await r.readline()
                if not line:
                    return
                received.append(json.loads(line))
        reader_task = asyncio.create_task(consume())
        n = 0
        while len(srv.clients) == 2 and n < 100_000:      # until the stuck one is dropped
            srv.publish(ev)
            n += 1
            if n % 10 == 0:
                await asyncio.sleep(0.001)
        assert len(srv.clients) == 1 and n < 100_000
        assert not any(c.closed for c in srv.clients)
        # the good one got every event and still gets more
        srv.publish(ev)
        for _ in range(1000):
            if len(received) == n + 1:
                break
            await asyncio.sleep(0.01)
        assert len(received) == n + 1
        assert received[-1]["event"] == "peer-state" and received[-1]["data"]["new_state"] == "established"
        reader_task.cancel()
        r2, w2 = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        rep = await _req(r2, w2, 3, "summary")
        row = rep["data"]["neighbors"][0]
        assert row == {**row, "messages_received": 3, "messages_sent": 1, "prefixes_received": 7,
                       "name": "alpha", "peer_as": 64501, "status": "ok"}
        rep = await _req(r2, w2, 4, "neighbor-admin", neighbor="alpha", op="down", reason="bye")
        assert rep["ok"] and be.admins == [("127.0.1.1", "down", "bye")]
        w.close(), w2.close()
        stuck.close()
        await srv.close()
        assert not (tmp_path / "s.sock").exists()
    asyncio.run(main())


def test_unanswered_status_is_unavailable_and_client_cap(tmp_path):
    async def main():
        be = Backend(answer=False)
        be.peer_state["127.0.1.1"] = PeerEvent(address="127.0.1.1", name="alpha", old_state="idle",
                                               new_state="active", reason="admin start", time=1.0)
        srv = ControlServer(be, tmp_path / "s.sock", status_timeout=0.2, max_clients=2)
        await srv.start()
        r, w = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        rep = await _req(r, w, 1, "neighbor", neighbor="127.0.1.1")
        assert rep["error"]["code"] == "unavailable"
        rep = await _req(r, w, 2, "summary")       # falls back on the last PeerEvent
        row = rep["data"]["neighbors"][0]
        assert row["status"] == "unavailable" and row["state"] == "active" and row["messages_sent"] is None
        r2, w2 = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        assert (await _req(r2, w2, 1, "monitor"))["ok"]
        r3, w3 = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        rep = await _line(r3)
        assert rep["ok"] is False and rep["error"]["code"] == "busy"
        assert await r3.read() == b""
        be.shutting_down = True
        rep = await _req(r, w, 3, "summary")
        assert rep["error"]["code"] == "shutting-down"
        for x in (w, w2, w3):
            x.close()
        await srv.close()
    asyncio.run(main())


def test_client_errors(tmp_path):
    try:
        ControlClient(str(tmp_path / "nope.sock"))
        raise AssertionError("connected to nothing")
    except ControlError as e:
        assert e.code == "not-running" and str(tmp_path / "nope.sock") in e.message
    s = socket.socket(socket.AF_UNIX)                    # a stale socket file: refused
    s.bind(str(tmp_path / "stale.sock"))
    s.close()
    try:
        ControlClient(str(tmp_path / "stale.sock"))
        raise AssertionError("connected to a stale socket")
    except ControlError as e:
        assert e.code == "not-running" and "refused" in e.message
