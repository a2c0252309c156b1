"""Configuration reload: the pure classification (rserver/supervisor/reload.py) for every
field, and ``rserver reload`` / the control command / SIGHUP against a real ``rserver run``
on loopback, with scripted BGP peers (tests/supervisor/test_main.py's BgpPeer) connecting
from 127.0.1.x. Every wait is bounded; every process is stopped by PID."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from rserver.config import MaxPrefix, loads
from rserver.supervisor.reload import (
    GLOBAL_LISTEN, GLOBAL_LIVE, GLOBAL_REFUSED, GLOBAL_RESET_ALL, NEIGHBOR_LIVE, NEIGHBOR_RESET, diff,
)
from tests.control.helpers import Ctl, read_notification, wait_status
from tests.procs import alive, children, free_port, kill_pid, worker_children
from tests.supervisor.test_main import BOUND, BgpPeer, wait_for

PEERS = ["127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4", "127.0.1.5"]


# --- the pure part: diff() ---------------------------------------------------------------------

BASE = """
[global]
local_as = 64500
router_id = "192.0.2.1"
listen = ["127.0.0.1"]
port = 1179
run_dir = "/tmp/rserver-reload-unit"

[[neighbor]]
address = "127.0.1.1"
as = 64501

[[neighbor]]
address = "127.0.1.2"
as = 64502
"""

# a different, valid value for every neighbor field
OTHER = dict(
    asn=64999, passive=False, hold_time=30, add_path="both", add_path_send_max=2, role="none",
    role_strict=True, ipv4=False, ipv6=False, graceful_restart=False, md5_password="s3cret",
    ttl_security=True, prepend_rs_as=True, name="renamed", description="a description",
    group="g", connect_retry=30, delay_open=5, collision_in_established=True,
    max_prefix=MaxPrefix(ipv4=100), error_wait_time=20.0,
)


def _cfg():
    return loads(BASE, "unit.toml")


def _with_neighbor(cfg, i: int, **changes):
    ns = list(cfg.neighbors)
    ns[i] = msgspec.structs.replace(ns[i], **changes)
    return msgspec.structs.replace(cfg, neighbors=tuple(ns))


def _with_global(cfg, **changes):
    return msgspec.structs.replace(cfg, global_=msgspec.structs.replace(cfg.global_, **changes))


def test_every_field_is_classified_once():
    from rserver.config import GlobalConfig, NeighborConfig
    nf = set(NeighborConfig.__struct_fields__) - {"address", "enabled"}
    assert nf == set(NEIGHBOR_RESET) | set(NEIGHBOR_LIVE)
    assert not set(NEIGHBOR_RESET) & set(NEIGHBOR_LIVE)
    assert set(OTHER) == nf
    groups = [GLOBAL_RESET_ALL, GLOBAL_LISTEN, GLOBAL_LIVE, GLOBAL_REFUSED]
    assert set(GlobalConfig.__struct_fields__) == set().union(*groups)
    assert sum(len(g) for g in groups) == len(GlobalConfig.__struct_fields__)
    for why in [*NEIGHBOR_RESET.values(), *NEIGHBOR_LIVE.values()]:
        assert len(why) > 10                        # a reason, not a placeholder


@pytest.mark.parametrize("field", sorted(NEIGHBOR_RESET))
def test_reset_fields_reset_only_that_neighbor(field):
    old = _cfg()
    plan = diff(old, _with_neighbor(old, 0, **{field: OTHER[field]}))
    assert plan.ok and not plan.added and not plan.removed
    (c,) = plan.changed
    assert c.address == "127.0.1.1" and c.fields == (field,) and c.reset is True and c.admin is None
    assert plan.reset == ("127.0.1.1",)
    assert [n.address for n in plan.unchanged] == ["127.0.1.2"]


@pytest.mark.parametrize("field", sorted(NEIGHBOR_LIVE))
def test_live_fields_do_not_reset(field):
    old = _cfg()
    plan = diff(old, _with_neighbor(old, 1, **{field: OTHER[field]}))
    (c,) = plan.changed
    assert c.address == "127.0.1.2" and c.fields == (field,) and c.reset is False
    assert plan.reset == () and len(plan.unchanged) == 1


def test_enabled_is_admin_down_or_up_without_reset():
    old = _cfg()
    off = _with_neighbor(old, 0, enabled=False)
    (c,) = diff(old, off).changed
    assert (c.fields, c.reset, c.admin) == (("enabled",), False, "down")
    (c,) = diff(off, old).changed
    assert (c.fields, c.reset, c.admin) == (("enabled",), False, "up")
    # with a reset field too: a reset (the new session starts only if enabled)
    (c,) = diff(old, _with_neighbor(old, 0, enabled=False, hold_time=30)).changed
    assert set(c.fields) == {"enabled", "hold_time"} and c.reset and c.admin == "down"


def test_added_removed_unchanged_by_address():
    old = _cfg()
    new = loads(BASE.replace('"127.0.1.2"', '"127.0.1.3"'), "unit.toml")
    plan = diff(old, new)
    assert [n.address for n in plan.added] == ["127.0.1.3"]
    assert [n.address for n in plan.removed] == ["127.0.1.2"]
    assert [n.address for n in plan.unchanged] == ["127.0.1.1"] and plan.changed == ()
    same = diff(old, _cfg())
    assert same.ok and not (same.added or same.removed or same.changed or same.global_changed)
    assert len(same.unchanged) == 2


@pytest.mark.parametrize("field,value", [("local_as", 65000), ("router_id", "192.0.2.9"),
                                         ("loopback_next_hop", True)])
def test_local_as_or_router_id_resets_every_session(field, value):
    old = _cfg()
    plan = diff(old, _with_global(_with_neighbor(old, 1, description="x"), **{field: value}))
    assert plan.ok and plan.reset_all and plan.global_changed == (field,)
    assert set(plan.reset) == {"127.0.1.1", "127.0.1.2"}


def test_listen_and_port_rebind_only():
    old = _cfg()
    plan = diff(old, _with_global(old, listen=("127.0.0.1", "::1")))
    assert plan.ok and not plan.reset_all and plan.reset == ()
    assert plan.listen_added == (("::1", 1179),) and plan.listen_removed == ()
    plan = diff(old, _with_global(old, port=1180))
    assert plan.listen_added == (("127.0.0.1", 1180),)
    assert plan.listen_removed == (("127.0.0.1", 1179),)
    assert len(plan.unchanged) == 2


@pytest.mark.parametrize("field", sorted(GLOBAL_LIVE))
def test_log_settings_are_live(field):
    old = _cfg()
    value = {"log_level": "debug", "log_format": "json"}[field]
    plan = diff(old, _with_global(old, **{field: value}))
    assert plan.ok and plan.global_changed == (field,) and not plan.reset_all and plan.reset == ()


@pytest.mark.parametrize("field,value", [("run_dir", "/elsewhere"), ("session_workers", 4)])
def test_run_dir_and_session_workers_are_refused(field, value):
    old = _cfg()
    plan = diff(old, _with_global(_with_neighbor(old, 0, hold_time=30), **{field: value}))
    assert not plan.ok
    assert f"{field} cannot change while running" in plan.refusals[0]
    assert "restart the server" in plan.refusals[0]
    assert plan.changed == () and plan.added == ()        # nothing to apply


# --- a real server -----------------------------------------------------------------------------

def _config_text(tmp_path: Path, port: int, neighbors: list[tuple[str, int, str]],
                 extra_global: str = "", session_workers: int = 0) -> str:
    text = f"""
[global]
local_as = 64500
router_id = "127.0.0.1"
listen = ["127.0.0.1"]
port = {port}
run_dir = "{tmp_path / 'run'}"
session_workers = {session_workers}
{extra_global}
"""
    for addr, asn, body in neighbors:
        text += f'\n[[neighbor]]\naddress = "{addr}"\nas = {asn}\n{body}\n'
    return text


class Server:
    """``python -m rserver run -c FILE`` in its own process; stopped by PID."""

    def __init__(self, tmp_path: Path, text: str):
        self.path = tmp_path / "rserver.toml"
        self.path.write_text(text)
        self.cfg = loads(text, str(self.path))
        self.port = self.cfg.global_.port
        self.run_dir = Path(self.cfg.global_.run_dir)
        self.sock_path = self.run_dir / "rserver.sock"
        self.log_path = tmp_path / "rserver.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(self.path)],
                                     stdout=self._log, stderr=self._log, cwd=str(tmp_path),
                                     env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
        self.pid = self.proc.pid
        self.seen: set[int] = set()
        wait_for(lambda: self.sock_path.exists() or self.proc.poll() is not None, "the control socket")
        assert self.proc.poll() is None, self.log()
        self.ctl = Ctl(self.sock_path)

    def write(self, text: str) -> None:
        self.path.write_text(text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def workers(self) -> list[int]:
        kids = worker_children(self.pid)
        self.seen.update(kids)
        return kids

    def status(self, addr: str) -> dict:
        return self.ctl.data("neighbor", neighbor=addr)

    def established(self, addr: str) -> dict:
        return wait_status(self.ctl, addr, lambda s: s["state"] == "established", f"{addr} established")

    def stop(self) -> int:
        self.seen.update(children(self.pid))
        self.ctl.close()
        os.kill(self.pid, signal.SIGTERM)
        try:
            return self.proc.wait(BOUND)
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        self.seen.update(children(self.pid))
        if self.proc.poll() is None:
            kill_pid(self.pid)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.seen:
            if alive(pid):
                kill_pid(pid)
        self._log.close()


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("rserver.session.worker")
    started: list[Server] = []
    peers: list[BgpPeer] = []

    def start(text: str) -> Server:
        s = Server(tmp_path, text)
        started.append(s)
        return s
    start.peers = peers
    yield start
    for p in peers:
        p.close()
    for s in started:
        s.ctl.close()
        s.cleanup()


def _peer(server, addr: str, port: int, asn: int) -> BgpPeer:
    p = BgpPeer(addr, port, asn)
    server.peers.append(p)
    p.establish()
    return p


def _cli(srv: Server, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rserver", *args, "-s", str(srv.sock_path)],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def test_reload_removes_changes_adds_and_leaves_the_rest_alone(tmp_path, server):
    port = free_port()
    neigh = [(PEERS[0], 64501, ""), (PEERS[1], 64502, ""), (PEERS[2], 64503, "")]
    srv = server(_config_text(tmp_path, port, neigh))
    wait_for(lambda: len(srv.workers()) == 3, "3 session workers")
    a = _peer(server, PEERS[0], port, 64501)
    b = _peer(server, PEERS[1], port, 64502)
    c = _peer(server, PEERS[2], port, 64503)
    for addr in PEERS[:3]:
        srv.established(addr)
    before_b = srv.status(PEERS[1])

    # A: hold_time changed (reset); B: unchanged; C: removed; D: added
    srv.write(_config_text(tmp_path, port, [(PEERS[0], 64501, "hold_time = 60"), (PEERS[1], 64502, ""),
                                            (PEERS[3], 64504, "")]))
    r = srv.ctl.data("reload")
    assert r["added"] == [PEERS[3]] and r["removed"] == [PEERS[2]] and r["reset"] == [PEERS[0]]
    assert r["changed"] == [{"neighbor": PEERS[0], "name": PEERS[0], "fields": ["hold_time"],
                             "reset": True, "admin": None}]
    assert r["unchanged"] == 1 and r["config"] == str(srv.path)
    assert r["global"]["changed"] == [] and r["global"]["listeners_opened"] == []

    assert read_notification(c.sock)[:2] == (6, 3)           # removed: peer de-configured
    assert read_notification(a.sock)[:2] == (6, 6)           # changed: other configuration change
    a.close()
    c.close()
    # the removed neighbor's worker stops for good (orderly) and is not restarted
    wait_for(lambda: "worker stopped (exit status 0): no neighbor left" in srv.log(), "C's worker to stop")
    wait_for(lambda: len(srv.workers()) == 3, "A, B and the new D worker")
    assert srv.ctl.call("neighbor", neighbor=PEERS[2])["error"]["code"] == "unknown-neighbor"
    # the unaffected session never noticed
    assert b.is_open()
    after_b = srv.status(PEERS[1])
    assert after_b["state"] == "established"
    assert after_b["established_count"] == before_b["established_count"] == 1
    assert after_b["uptime"] >= before_b["uptime"]
    assert after_b["last_notification_sent"] is None and after_b["last_notification_received"] is None
    # A comes back with the new hold time; D (added) can connect
    a2 = _peer(server, PEERS[0], port, 64501)
    st = srv.established(PEERS[0])
    assert st["configured_hold_time"] == 60 and st["established_count"] == 1   # a new runner
    d = _peer(server, PEERS[3], port, 64504)
    srv.established(PEERS[3])
    assert [x["address"] for x in srv.ctl.data("summary")["neighbors"]] == [PEERS[0], PEERS[1], PEERS[3]]
    assert b.is_open() and a2.is_open() and d.is_open()
    log = srv.log()
    assert f"reload: neighbor added  neighbor={PEERS[3]}" in log
    assert f"reload: neighbor removed (Cease 6/3 peer de-configured)  neighbor={PEERS[2]}" in log
    assert f"reload: session reset (Cease 6/6 other configuration change)  neighbor={PEERS[0]}" in log
    assert "configuration reloaded: 1 added, 1 removed, 1 reset, 1 changed, 1 unchanged" in log
    # the added neighbor got a new RIB peer id (4: never C's 3)
    assert f"reload: neighbor added  neighbor={PEERS[3]} peer_id=4" in log
    assert srv.stop() == 0


def test_bad_config_and_unchangeable_settings_are_refused(tmp_path, server):
    port = free_port()
    good = _config_text(tmp_path, port, [(PEERS[0], 64501, "")])
    srv = server(good)
    a = _peer(server, PEERS[0], port, 64501)
    before = srv.established(PEERS[0])

    srv.write(good.replace('as = 64501\n', 'as = 64501\nhold_time = 2\n'))
    r = srv.ctl.call("reload")
    assert r["ok"] is False and r["error"]["code"] == "config-error"
    assert r["error"]["message"].startswith(f"{srv.path}: neighbor[0].hold_time: expected 0 or 3..65535")
    cli = _cli(srv, "reload")
    assert cli.returncode == 1 and "neighbor[0].hold_time" in cli.stderr and "(config-error)" in cli.stderr

    srv.write(good.replace(str(tmp_path / "run"), str(tmp_path / "run2")) + "\n[[neighbor]]\n"
              'address = "127.0.1.2"\nas = 64502\n')
    r = srv.ctl.call("reload")
    assert r["ok"] is False and r["error"]["code"] == "reload-refused"
    assert "run_dir cannot change while running" in r["error"]["message"]
    assert "restart the server" in r["error"]["message"]

    srv.write(good.replace("session_workers = 0", "session_workers = 2"))
    r = srv.ctl.call("reload")
    assert r["ok"] is False and "session_workers cannot change while running" in r["error"]["message"]

    # nothing was applied: same session, same neighbors
    assert a.is_open()
    after = srv.status(PEERS[0])
    assert after["established_count"] == before["established_count"] and after["state"] == "established"
    assert [x["address"] for x in srv.ctl.data("summary")["neighbors"]] == [PEERS[0]]
    assert srv.ctl.call("neighbor", neighbor="127.0.1.2")["error"]["code"] == "unknown-neighbor"

    # the original file reloads fine: nothing changed; the CLI prints it aligned, or JSON
    srv.write(good)
    cli = _cli(srv, "reload")
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.startswith(f"reloaded {srv.path}") and "unchanged  1" in cli.stdout
    cli = _cli(srv, "reload", "-j")
    assert cli.returncode == 0 and msgspec.json.decode(cli.stdout)["unchanged"] == 1
    assert a.is_open()
    assert srv.stop() == 0


def test_sighup_reloads_new_port_live_limits_and_an_added_neighbor(tmp_path, server):
    port = free_port()
    srv = server(_config_text(tmp_path, port, [(PEERS[0], 64501, "")]))
    a = _peer(server, PEERS[0], port, 64501)
    before = srv.established(PEERS[0])
    wait_for(lambda: f"rib: session up  neighbor={PEERS[0]}" in srv.log(), "the RIB to see A up")
    rib_ups = srv.log().count(f"rib: session up  neighbor={PEERS[0]}")

    port2 = free_port()
    srv.write(_config_text(tmp_path, port2, [
        (PEERS[0], 64501, 'description = "member A"\n[neighbor.max_prefix]\nipv4 = 1000'),
        (PEERS[1], 64502, ""),
    ]))
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: "configuration reloaded: 1 added, 0 removed, 0 reset, 1 changed, 0 unchanged" in srv.log(),
             "the SIGHUP reload")
    log = srv.log()
    assert "SIGHUP received: reloading the configuration" in log
    assert f"listeners_closed=127.0.0.1:{port}" in log and f"listeners_opened=127.0.0.1:{port2}" in log
    assert f"reload: neighbor settings changed without a reset  neighbor={PEERS[0]}" in log
    # the new limit reached the RIB at once (a new SessionUp), the session was not touched
    wait_for(lambda: srv.log().count(f"rib: session up  neighbor={PEERS[0]}") > rib_ups,
             "the RIB to get A's new max-prefix")
    assert "max_prefix_v4=1000" in srv.log()
    assert a.is_open()
    st = srv.status(PEERS[0])
    assert st["established_count"] == before["established_count"] and st["description"] == "member A"
    # the added neighbor connects on the new port; the old port is closed
    b = _peer(server, PEERS[1], port2, 64502)
    srv.established(PEERS[1])
    import socket
    s = socket.socket()
    s.settimeout(BOUND)
    try:
        with pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.1", port))
    finally:
        s.close()
    # a bad file on SIGHUP: logged, nothing changes
    srv.write(_config_text(tmp_path, port2, [(PEERS[0], 64501, "hold_time = 1"), (PEERS[1], 64502, "")]))
    os.kill(srv.pid, signal.SIGHUP)
    wait_for(lambda: "reload refused" in srv.log(), "the refused SIGHUP reload")
    assert "neighbor[0].hold_time" in srv.log()
    assert a.is_open() and b.is_open()
    assert srv.stop() == 0


def test_capped_workers_take_added_neighbors_least_loaded_first(tmp_path, server):
    port = free_port()
    neigh = [(PEERS[0], 64501, ""), (PEERS[1], 64502, ""), (PEERS[2], 64503, "")]
    srv = server(_config_text(tmp_path, port, neigh, session_workers=2))
    wait_for(lambda: len(srv.workers()) == 2, "2 session workers")
    pids = set(srv.workers())
    # round-robin: worker 0 has A and C, worker 1 has B; remove B
    srv.write(_config_text(tmp_path, port, [neigh[0], neigh[2], (PEERS[3], 64504, "")], session_workers=2))
    r = srv.ctl.data("reload")
    assert r["removed"] == [PEERS[1]] and r["added"] == [PEERS[3]]
    # worker 1 lost its only neighbor and stops; the cap is not reached, so D gets a new worker
    wait_for(lambda: "no neighbor left" in srv.log() and len(srv.workers()) == 2, "the worker swap")
    assert len(set(srv.workers()) & pids) == 1
    srv.write(_config_text(tmp_path, port, [neigh[0], neigh[2], (PEERS[3], 64504, ""), (PEERS[4], 64505, "")],
                           session_workers=2))
    srv.ctl.data("reload")
    # at the cap: E goes to the least-loaded worker (D's), no new process
    assert len(srv.workers()) == 2
    assert f"reload: neighbor added  neighbor={PEERS[4]} peer_id=5 worker=2" in srv.log()
    e = _peer(server, PEERS[4], port, 64505)
    srv.established(PEERS[4])
    assert e.is_open()
    assert srv.stop() == 0


def test_enabled_false_takes_the_neighbor_down_and_true_brings_it_back(tmp_path, server):
    port = free_port()
    neigh = [(PEERS[0], 64501, ""), (PEERS[1], 64502, "")]
    srv = server(_config_text(tmp_path, port, neigh))
    a = _peer(server, PEERS[0], port, 64501)
    b = _peer(server, PEERS[1], port, 64502)
    srv.established(PEERS[0])
    before_b = srv.established(PEERS[1])
    srv.write(_config_text(tmp_path, port, [(PEERS[0], 64501, "enabled = false"), neigh[1]]))
    r = srv.ctl.data("reload")
    assert r["changed"] == [{"neighbor": PEERS[0], "name": PEERS[0], "fields": ["enabled"],
                             "reset": False, "admin": "down"}] and r["reset"] == []
    code, sub, data = read_notification(a.sock)
    assert (code, sub) == (6, 2) and data[1:] == b"disabled in the configuration"
    a.close()
    st = wait_status(srv.ctl, PEERS[0], lambda s: s["state"] == "idle", "A idle")
    assert st["admin_up"] is False
    srv.write(_config_text(tmp_path, port, neigh))
    r = srv.ctl.data("reload")
    assert r["changed"][0]["admin"] == "up" and r["changed"][0]["reset"] is False
    _peer(server, PEERS[0], port, 64501)
    srv.established(PEERS[0])
    assert b.is_open() and srv.status(PEERS[1])["established_count"] == before_b["established_count"]
    assert srv.stop() == 0


def test_router_id_change_resets_every_session_with_the_new_id(tmp_path, server):
    port = free_port()
    neigh = [(PEERS[0], 64501, ""), (PEERS[1], 64502, "")]
    text = _config_text(tmp_path, port, neigh)
    srv = server(text)
    a = _peer(server, PEERS[0], port, 64501)
    b = _peer(server, PEERS[1], port, 64502)
    for addr in PEERS[:2]:
        srv.established(addr)
    srv.write(text.replace('router_id = "127.0.0.1"', 'router_id = "192.0.2.7"'))
    r = srv.ctl.data("reload")
    assert r["reset"] == PEERS[:2] and r["global"]["changed"] == ["router_id"] and r["changed"] == []
    assert read_notification(a.sock)[:2] == (6, 6)
    assert read_notification(b.sock)[:2] == (6, 6)
    a.close()
    b.close()
    _peer(server, PEERS[0], port, 64501)
    st = srv.established(PEERS[0])
    assert st["negotiated"]["local_id"] == 0xC0000207          # 192.0.2.7 in the new OPEN
    assert srv.stop() == 0


def test_cli_formats_the_reply_aligned():
    from rserver.cli import format_reload
    text = format_reload({
        "config": "/etc/rs.toml", "added": ["127.0.1.4"], "removed": ["127.0.1.3"], "reset": ["127.0.1.1"],
        "changed": [{"neighbor": "127.0.1.1", "name": "a", "fields": ["hold_time"], "reset": True, "admin": None},
                    {"neighbor": "127.0.1.2", "name": "b", "fields": ["enabled"], "reset": False, "admin": "down"},
                    {"neighbor": "127.0.1.5", "name": "e", "fields": ["max_prefix"], "reset": False, "admin": None}],
        "unchanged": 2,
        "global": {"changed": ["port"], "listeners_opened": ["127.0.0.1:1180"], "listeners_closed": ["127.0.0.1:1179"],
                   "log_format": "human", "log_level": "info"}})
    assert text.splitlines() == [
        "reloaded /etc/rs.toml",
        "  added      127.0.1.4       new session (waits for the peer if passive)",
        "  removed    127.0.1.3       Cease 6/3 peer de-configured",
        "  reset      127.0.1.1       Cease 6/6 other configuration change (hold_time)",
        "  changed    127.0.1.2       enabled: disabled: Cease 6/2 administrative shutdown",
        "  changed    127.0.1.5       max_prefix: applied without a reset",
        "  unchanged  2               neighbor(s)",
        "  global     port",
        "  listening  127.0.0.1:1180",
        "  closed     127.0.0.1:1179",
    ]
