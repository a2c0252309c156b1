"""Prometheus exposition of the neighbors' status: the renderer, and the control command."""
from __future__ import annotations

import asyncio
import re

from rserver.bus.messages import PeerEvent
from rserver.control.metrics import render
from rserver.control.server import ControlServer
from tests.control.test_server import Backend, _req

ROW_UP = {
    "address": "127.0.1.1", "name": 'al"pha', "peer_as": 64501, "state": "established",
    "admin_up": True, "uptime": 12.5, "status": "ok",
    "detail": {"established_count": 3, "messages_received": {"update": 10, "keepalive": 4},
               "messages_sent": {"update": 2}, "prefixes_received": 30, "prefixes_withdrawn": 5,
               "update_problems": 1},
}
ROW_GONE = {"address": "::1", "name": "beta", "peer_as": 64502, "state": "active", "admin_up": None,
            "uptime": None, "status": "unavailable"}

SAMPLE = re.compile(r'^([a-z_]+)\{([^}]*)\} (\S+)$')


def _samples(text: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out[(m.group(1), m.group(2))] = m.group(3)
    return out


def test_render_states_counters_and_escaping():
    text = render([ROW_UP, ROW_GONE], version="0.1.0")
    s = _samples(text)
    up = 'neighbor="127.0.1.1",name="al\\"pha",peer_as="64501"'
    gone = 'neighbor="::1",name="beta",peer_as="64502"'
    assert s[("rserver_neighbor_state", up)] == "6"
    assert s[("rserver_neighbor_state", gone)] == "3"          # RFC 4273: active = 3
    assert s[("rserver_neighbor_up", up)] == "1" and s[("rserver_neighbor_up", gone)] == "0"
    assert s[("rserver_neighbor_uptime_seconds", up)] == "12.5"
    assert ("rserver_neighbor_uptime_seconds", gone) not in s
    assert s[("rserver_neighbor_messages_received_total", up + ',type="update"')] == "10"
    assert s[("rserver_neighbor_messages_sent_total", up + ',type="update"')] == "2"
    assert s[("rserver_neighbor_prefixes_withdrawn_total", up)] == "5"
    assert s[("rserver_neighbor_status_available", gone)] == "0"
    # an unavailable worker gives only what is known: no counters are invented
    assert not any(k[1] == gone and k[0].endswith("_total") for k in s)
    assert s[("rserver_build_info", 'version="0.1.0"')] == "1"
    # every family declares its type once, before its samples
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert len(types) == len(set(types))
    assert dict(types)["rserver_neighbor_messages_received_total"] == "counter"


def test_metrics_command_on_the_control_socket(tmp_path):
    async def main():
        be = Backend()
        srv = ControlServer(be, tmp_path / "s.sock", status_timeout=1.0)
        await srv.start()
        r, w = await asyncio.open_unix_connection(str(tmp_path / "s.sock"))
        try:
            rep = await _req(r, w, 1, "metrics")
            assert rep["ok"], rep
            assert rep["data"]["content_type"].startswith("text/plain; version=0.0.4")
            s = _samples(rep["data"]["text"])
            lab = 'neighbor="127.0.1.1",name="alpha",peer_as="64501"'
            assert s[("rserver_neighbor_state", lab)] == "6"
            assert s[("rserver_neighbor_messages_received_total", lab + ',type="keepalive"')] == "2"
            be.answer = False                           # worker silent: state from the last event only
            be.peer_state["127.0.1.1"] = PeerEvent(address="127.0.1.1", name="alpha", old_state="established",
                                                   new_state="idle", reason="worker exited", time=1.0)
            srv.status_timeout = 0.2
            s = _samples((await _req(r, w, 2, "metrics"))["data"]["text"])
            assert s[("rserver_neighbor_state", lab)] == "1"
            assert s[("rserver_neighbor_status_available", lab)] == "0"
        finally:
            w.close()
            await srv.close()
    asyncio.run(main())
