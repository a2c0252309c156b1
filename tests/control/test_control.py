"""The control socket against a real supervisor process with real session workers on
loopback and scripted BGP peers (tests/supervisor/test_main.py's helpers). Every wait is
bounded; every process is stopped by PID (the ``supervisor`` fixture)."""
from __future__ import annotations

import json
import os
import socket
import stat

import pytest

from tests.control.helpers import Ctl, read_notification, wait_status
from tests.supervisor.test_main import PEERS, BgpPeer, make_config, wait_for, worker_children

pytest.importorskip("rserver.session.worker")


def _sock(sup):
    return sup.run_dir / "rserver.sock"


def _ctl(sup) -> Ctl:
    wait_for(lambda: _sock(sup).exists() and (sup.run_dir / "rserver.pid").exists(), "the control socket")
    return Ctl(_sock(sup))


def _events(mon: Ctl, until, what: str) -> list[dict]:
    """Monitor lines until ``until(event)`` (each read bounded by the socket timeout)."""
    got = []
    while True:
        try:
            e = mon.line()
        except (socket.timeout, EOFError):
            pytest.fail(f"monitor: no {what}; got {got}")
        assert e["v"] == 1 and e["event"] == "peer-state", e
        got.append(e["data"])
        if until(e["data"]):
            return got


def test_summary_mode_stale_socket_and_removal(tmp_path, supervisor):
    cfg = make_config(tmp_path, 2)
    run = tmp_path / "run"
    run.mkdir()
    stale = socket.socket(socket.AF_UNIX)            # a socket file left by a crashed run
    stale.bind(str(run / "rserver.sock"))
    stale.close()
    sup = supervisor(cfg, worker_main=None)
    sup.workers(2)
    ctl = _ctl(sup)
    assert stat.S_IMODE(os.stat(_sock(sup)).st_mode) == 0o660
    a = BgpPeer(PEERS[0], sup.port, 64501)
    try:
        a.establish()
        def rows():
            d = ctl.data("summary")
            r = {x["address"]: x for x in d["neighbors"]}
            return r if r[PEERS[0]]["state"] == "established" else None
        r = wait_for(rows, "summary to show the connected peer established")
        assert list(r) == PEERS[:2]                 # config order, one row each
        up = r[PEERS[0]]
        assert up["peer_as"] == 64501 and up["status"] == "ok" and up["uptime"] is not None
        assert up["messages_received"] >= 2 and up["messages_sent"] >= 2
        assert up["prefixes_received"] == 0
        assert up["last_transition_reason"]
        down = r[PEERS[1]]
        assert down["state"] in ("active", "idle", "connect") and down["uptime"] is None
        assert set(up) == set(down)
    finally:
        a.close()
        ctl.close()
    assert sup.stop() == 0
    assert not _sock(sup).exists()
    assert not (sup.run_dir / "rserver.pid").exists()
    assert "removing stale control socket" in sup.log()


def test_down_up_clear_with_monitor(tmp_path, supervisor):
    cfg = make_config(tmp_path, 1)
    sup = supervisor(cfg, worker_main=None)
    sup.workers(1)
    ctl = _ctl(sup)
    mon = Ctl(_sock(sup))
    assert mon.data("monitor") == {"events": ["peer-state"]}
    a = BgpPeer(PEERS[0], sup.port, 64501)
    try:
        a.establish()
        _events(mon, lambda e: e["new_state"] == "established" and e["address"] == PEERS[0], "established")

        r = ctl.data("neighbor-admin", neighbor=PEERS[0], op="down", reason="maintenance")
        assert r["op"] == "down" and r["address"] == PEERS[0] and "6/2" in r["done"]
        code, sub, data = read_notification(a.sock)
        assert (code, sub) == (6, 2)
        assert data == bytes([len("maintenance")]) + b"maintenance"     # RFC 9003
        ev = _events(mon, lambda e: e["new_state"] == "idle", "the change to idle")
        assert ev[-1]["old_state"] == "established" and ev[-1]["reason"] == "admin down"
        st = wait_status(ctl, PEERS[0], lambda s: s["state"] == "idle", "idle")
        assert st["admin_up"] is False and st["last_transition_reason"] == "admin down"
        assert st["last_notification_sent"]["shutdown_message"] == "maintenance"
        assert (st["last_notification_sent"]["code"], st["last_notification_sent"]["subcode"]) == (6, 2)
        a.close()

        assert ctl.data("neighbor-admin", neighbor=PEERS[0], op="up")["op"] == "up"
        a.establish()
        _events(mon, lambda e: e["new_state"] == "established", "re-established after up")
        wait_status(ctl, PEERS[0], lambda s: s["state"] == "established", "established again")

        ctl.data("neighbor-admin", neighbor=PEERS[0], op="clear", reason="reset please")
        code, sub, data = read_notification(a.sock)
        assert (code, sub) == (6, 4) and data[1:] == b"reset please"
        ev = _events(mon, lambda e: e["old_state"] == "established", "the reset")
        assert ev[-1]["reason"] == "admin reset"
        a.close()
        a.establish()                                # clear restarts the peer by itself
        _events(mon, lambda e: e["new_state"] == "established", "re-established after clear")

        r = ctl.call("neighbor-admin", neighbor="nobody", op="down")
        assert r["ok"] is False and r["error"]["code"] == "unknown-neighbor"
        r = ctl.call("neighbor", neighbor="192.0.2.1")
        assert r["ok"] is False and r["error"]["code"] == "unknown-neighbor"
    finally:
        a.close()
        ctl.close()
        mon.close()
    assert sup.stop() == 0


def test_protocol_abuse_never_hurts_the_server(tmp_path, supervisor):
    cfg = make_config(tmp_path, 1)
    sup = supervisor(cfg, worker_main=None)
    sup.workers(1)
    ctl = _ctl(sup)
    try:
        def err(line: bytes) -> dict:
            ctl.send(line)
            r = ctl.line()
            assert r["v"] == 1 and r["ok"] is False, r
            return r
        assert err(b"this is not json\n")["error"]["code"] == "bad-json"
        assert err(b"[1, 2]\n")["error"]["code"] == "bad-request"
        r = err(b'{"v": 1, "id": 5}\n')               # no cmd: the id is still answered
        assert r["id"] == 5 and r["error"]["code"] == "bad-request" and "cmd" in r["error"]["message"]
        assert err(b'{"v": 2, "id": 6, "cmd": "summary"}\n')["error"]["code"] == "bad-version"
        r = err(b'{"v": 1, "id": 7, "cmd": "reboot"}\n')
        assert r["id"] == 7 and r["error"]["code"] == "unknown-command"
        r = err(b'{"v": 1, "id": 8, "cmd": "neighbor", "args": {"neighbor": 12}}\n')
        assert r["id"] == 8 and r["error"]["code"] == "bad-args"
        r = err(b'{"v": 1, "id": 9, "cmd": "neighbor-admin", "args": {"neighbor": "x", "op": "explode"}}\n')
        assert r["error"]["code"] == "bad-args"
        r = err(b'{"v": 1, "id": 10, "cmd": "summary", "args": {"extra": 1}}\n')
        assert r["error"]["code"] == "bad-args"
        r = ctl.call("neighbor-admin", neighbor=PEERS[0], op="down", reason="x" * 300)
        assert r["error"]["code"] == "bad-args"
        r = ctl.call("neighbor-admin", neighbor=PEERS[0], op="refresh")
        assert r["error"]["code"] == "not-established"
        # a huge line (200 KiB, no newline for a long while): one error, then the
        # connection keeps working
        ctl.send(b'{"v": 1, "id": 11, "cmd": "summary", "pad": "' + b"x" * 200_000 + b'"}\n')
        assert err(b"")["error"]["code"] == "line-too-long"
        assert ctl.data("summary")["neighbors"][0]["address"] == PEERS[0]

        # 50 clients at once, each with a request in flight
        clients = [Ctl(_sock(sup)) for _ in range(50)]
        for i, c in enumerate(clients):
            c.send(json.dumps({"v": 1, "id": i, "cmd": "summary"}).encode() + b"\n")
        for i, c in enumerate(clients):
            r = c.line()
            assert r["ok"] and r["id"] == i and len(r["data"]["neighbors"]) == 1
            c.close()

        # a client that sends half a line and vanishes, and one that closes mid-request
        half = Ctl(_sock(sup))
        half.send(b'{"v": 1, "id": 1, "cm')
        half.close()
        gone = Ctl(_sock(sup))
        gone.send(b'{"v": 1, "id": 1, "cmd": "summary"}\n')
        gone.close()
        assert ctl.data("summary")["neighbors"][0]["address"] == PEERS[0]
    finally:
        ctl.close()
    assert sup.stop() == 0
    assert not _sock(sup).exists()


def test_monitor_client_that_never_reads_does_not_block(tmp_path, supervisor):
    cfg = make_config(tmp_path, 1)
    sup = supervisor(cfg, worker_main=None)
    sup.workers(1)
    ctl = _ctl(sup)
    stuck = Ctl(_sock(sup))
    stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.send(b'{"v": 1, "id": 1, "cmd": "monitor"}\n')     # ... and never reads again
    watcher = Ctl(_sock(sup))
    assert watcher.data("monitor") == {"events": ["peer-state"]}
    a = BgpPeer(PEERS[0], sup.port, 64501)
    try:
        # events flow (sessions up and reset over and over); the other clients are served
        for i in range(5):
            a.establish()
            _events(watcher, lambda e: e["new_state"] == "established", f"established #{i}")
            ctl.data("neighbor-admin", neighbor=PEERS[0], op="clear")
            read_notification(a.sock)
            a.close()
            _events(watcher, lambda e: e["old_state"] == "established", f"reset #{i}")
            assert ctl.data("summary")["neighbors"][0]["address"] == PEERS[0]
    finally:
        a.close()
        ctl.close()
        stuck.close()
        watcher.close()
    assert sup.stop() == 0


def _unix_inodes(path) -> set[str]:
    """Inodes of the unix sockets bound to ``path`` (the listener and accepted connections)."""
    out = set()
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            p = line.split()
            if len(p) >= 8 and p[7] == str(path):
                out.add(p[6])
    return out


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def test_workers_hold_no_control_socket(tmp_path, supervisor):
    import signal
    cfg = make_config(tmp_path, 1)
    sup = supervisor(cfg, worker_main=None)
    [old] = sup.workers(1)
    ctl = _ctl(sup)
    mon = Ctl(_sock(sup))
    try:
        assert mon.data("monitor")
        assert ctl.data("summary")
        os.kill(old, signal.SIGKILL)                 # restarted while two clients are connected
        new = wait_for(lambda: [k for k in worker_children(sup.pid) if k != old] or None, "the new worker")
        sup.seen.update(new)
        ev = _events(mon, lambda e: e["reason"] == "worker exited" or e["new_state"] == "active", "events")
        assert ev
        ours = _unix_inodes(_sock(sup))
        assert len(ours) >= 3                        # listener + 2 accepted
        assert ours <= _socket_inodes(sup.pid)
        for k in new:
            assert not (ours & _socket_inodes(k))
        assert ctl.data("summary")["neighbors"][0]["address"] == PEERS[0]
    finally:
        ctl.close()
        mon.close()
    assert sup.stop() == 0
