"""rserver against real BGP daemons (BIRD 2, GoBGP) on loopback.

rserver runs as ``python -m rserver run`` on a temporary config (hold time 9 s); the
daemons peer with it from 127.0.1.N. Covered: sessions in both directions (rserver passive
with the daemon active, rserver active with the daemon passive), staying up across several
keepalive intervals, Cease 6/2 on SIGTERM with nothing left behind, a connection from an
unconfigured address closed, a wrong AS answered with 2/2, and connection collisions with
both router-id orders.
"""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from .harness import RS_ADDR, RS_AS, pid_alive, wait_until

pytestmark = pytest.mark.interop

HOLD = 9
UP_TIMEOUT = 25.0


def _sent(rs, code: int, subcode: int, neighbor: str | None = None) -> list[dict]:
    return [r for r in rs.records()
            if str(r.get("msg", "")).startswith("sending notification")
            and r.get("code") == code and r.get("subcode") == subcode
            and (neighbor is None or r.get("neighbor") == neighbor)]


def _established(rs, neighbor: str) -> list[dict]:
    return [r for r in rs.records()
            if str(r.get("msg", "")).startswith("session established") and r.get("neighbor") == neighbor]


def _assert_stopped_clean(rs, code) -> None:
    assert code == 0, f"rserver exit status {code}\n{rs.log()[-4000:]}"
    assert not (rs.run_dir / "rserver.pid").exists()
    assert not list(rs.run_dir.glob("*")) if rs.run_dir.exists() else True


def test_sessions_both_directions_stay_up_and_cease_on_sigterm(lab):
    bird_in, bird_out, gobgp_in, gobgp_out = (lab.address() for _ in range(4))
    # "in": the daemon connects (rserver passive); "out": rserver connects (daemon passive)
    b1 = lab.bird(bird_in, 64501, [("rsrv", RS_ADDR, RS_AS, False)])
    b2 = lab.bird(bird_out, 64502, [("rsrv", RS_ADDR, RS_AS, True)])
    g1 = lab.gobgp(gobgp_in, 64503, [(RS_ADDR, RS_AS, False)])
    g2 = lab.gobgp(gobgp_out, 64504, [(RS_ADDR, RS_AS, True)])
    rs = lab.rserver([(bird_in, 64501, True, ""), (bird_out, 64502, False, ""),
                      (gobgp_in, 64503, True, ""), (gobgp_out, 64504, False, "")])
    workers = wait_until(lambda: len(rs.workers()) == 4 and rs.workers(), "4 session workers")

    def all_up():
        return (b1.state("rsrv") == "Established" and b2.state("rsrv") == "Established"
                and g1.state(RS_ADDR) == "established" and g2.state(RS_ADDR) == "established")
    wait_until(all_up, "all four sessions Established", timeout=UP_TIMEOUT, diag=lab.logs)

    since = {b: b.info("rsrv")["info"] for b in (b1, b2)}
    uptime = {g: g.neighbor(RS_ADDR)["timers"]["state"]["uptime"] for g in (g1, g2)}
    time.sleep(HOLD + 3)            # several keepalive intervals (3 s), more than one hold time
    assert all_up(), lab.logs()
    for b in (b1, b2):
        assert b.info("rsrv")["info"] == since[b], "BIRD session flapped"
    for g in (g1, g2):
        assert g.neighbor(RS_ADDR)["timers"]["state"]["uptime"] == uptime[g], "GoBGP session flapped"
    for addr in (bird_in, bird_out, gobgp_in, gobgp_out):
        assert len(_established(rs, addr)) == 1, f"{addr}: expected one session establishment"
    directions = {addr: _established(rs, addr)[0].get("direction") for addr in (bird_in, gobgp_in, bird_out, gobgp_out)}

    code = rs.stop()                # SIGTERM
    _assert_stopped_clean(rs, code)
    assert not any(pid_alive(w) for w in workers)
    for b in (b1, b2):
        wait_until(lambda: "Administrative shutdown" in b.info("rsrv")["last_error"],
                   "BIRD recording Cease 6/2", timeout=10, diag=lambda: b.show("rsrv"))
    for g in (g1, g2):
        wait_until(lambda: (6, 2) in g.notifications_received(RS_ADDR), "GoBGP logging Cease 6/2",
                   timeout=10, diag=g.log)
    # the direction each session took is the one configured
    assert directions[bird_in] in ("inbound", "in", "passive", None)
    assert directions[bird_out] in ("outbound", "out", "active", None)


def test_unconfigured_address_is_closed(lab):
    member = lab.address()
    rs = lab.rserver([(member, 64501, True, "")])
    wait_until(lambda: rs.workers(), "the session worker")
    stranger = lab.address()
    c = socket.socket()
    c.settimeout(5)
    try:
        c.bind((stranger, 0))
        c.connect((RS_ADDR, rs.port))
        try:
            data = c.recv(4096)
        except ConnectionResetError:
            data = b""
        assert data == b""
    finally:
        c.close()
    wait_until(lambda: any(f"unknown address {stranger}" in str(r.get("msg")) for r in rs.records()),
               "rserver logging the stranger", timeout=5)
    _assert_stopped_clean(rs, rs.stop())


def test_wrong_peer_as_gets_open_error_2_2(lab):
    b_addr, g_addr = lab.address(), lab.address()
    # rserver expects AS 64501 / 64502; the daemons speak as AS 64999
    bird = lab.bird(b_addr, 64999, [("rsrv", RS_ADDR, RS_AS, False)])
    gobgp = lab.gobgp(g_addr, 64999, [(RS_ADDR, RS_AS, False)])
    rs = lab.rserver([(b_addr, 64501, True, ""), (g_addr, 64502, True, "")])
    wait_until(lambda: "Bad peer AS" in bird.info("rsrv")["last_error"],
               "BIRD recording 2/2 Bad Peer AS", timeout=UP_TIMEOUT, diag=lambda: bird.show("rsrv") + lab.logs())
    # GoBGP does not log the code of a NOTIFICATION that arrives in OpenConfirm: it records
    # "OPENCONFIRM -> IDLE reason=invalid-msg" (anything but KEEPALIVE after our OPEN)
    wait_until(lambda: gobgp.rejected_in_openconfirm(RS_ADDR), "GoBGP dropping the session after our OPEN",
               timeout=UP_TIMEOUT, diag=lab.logs)
    assert _sent(rs, 2, 2, b_addr) and _sent(rs, 2, 2, g_addr)
    assert bird.state("rsrv") != "Established" and gobgp.state(RS_ADDR) != "established"
    _assert_stopped_clean(rs, rs.stop())


# --- collisions ------------------------------------------------------------------------------------
#
# Two BGP speakers both active only collide when each one's connection is open before the
# other's OPEN has settled it; on loopback that window is a millisecond. To make it
# certain: rserver starts first (its connects are refused: the daemon is not there yet);
# its worker is then frozen (SIGSTOP) while the daemon starts and connects in (the
# supervisor queues that connection for the frozen worker; the daemon waits in OpenSent).
# On SIGCONT the worker's overdue connect-retry timer fires and it connects out while it
# also takes the queued inbound connection: two connections, one per direction.

def _tcp_established(local: str, remote: str) -> int:
    """ESTABLISHED TCP connections with ``local`` at this end and ``remote`` at the other, from
    /proc/net/tcp (on loopback each connection shows twice, once per end: count one end)."""
    def hexaddr(a: str) -> str:
        return "".join(f"{int(x):02X}" for x in reversed(a.split(".")))
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            la, ra, st = parts[1].split(":")[0], parts[2].split(":")[0], parts[3]
            if st == "01" and la == hexaddr(local) and ra == hexaddr(remote):
                n += 1
    return n


def _notifications(rs, addr: str, code: int, subcode: int) -> list[dict]:
    """Records of a NOTIFICATION code/subcode sent or received on any connection to ``addr``."""
    return [r for r in rs.records() if r.get("neighbor") == addr and r.get("code") == code
            and r.get("subcode") == subcode and "notification" in str(r.get("msg", "")).lower()]


@pytest.mark.parametrize("daemon", ["bird", "gobgp"])
@pytest.mark.parametrize("rs_id, higher", [("127.0.0.1", "daemon"), ("127.255.255.254", "rserver")])
def test_collision_leaves_exactly_one_session(lab, daemon, rs_id, higher):
    addr = lab.address()
    rs = lab.rserver([(addr, 64501, False, "")], router_id=rs_id)
    worker = wait_until(lambda: rs.workers(), "the session worker")[0]
    wait_until(lambda: any(str(r.get("msg", "")).startswith("outbound connection to") for r in rs.records()),
               "rserver's first (refused) connect", timeout=10, diag=rs.log)
    os.kill(worker, signal.SIGSTOP)
    try:
        if daemon == "bird":
            d = lab.bird(addr, 64501, [("rsrv", RS_ADDR, RS_AS, False)])
            wait_until(lambda: d.state("rsrv") == "OpenSent", "BIRD in OpenSent", timeout=10,
                       interval=0.05, diag=lambda: d.show("rsrv"))
        else:
            d = lab.gobgp(addr, 64501, [(RS_ADDR, RS_AS, False)])
            wait_until(lambda: d.state(RS_ADDR) == "opensent", "GoBGP in OpenSent", timeout=10,
                       interval=0.05, diag=d.log)
        time.sleep(1.5)             # the worker's connect-retry timer (1 s) is now overdue
    finally:
        os.kill(worker, signal.SIGCONT)

    def up():
        return ((d.state("rsrv") == "Established") if daemon == "bird"
                else (d.state(RS_ADDR) == "established")) and _tcp_established(RS_ADDR, addr) == 1
    wait_until(up, "exactly one connection, Established on both sides", timeout=UP_TIMEOUT, diag=lab.logs)
    # the collision really happened: rserver had a connection in each direction at once
    assert any("second connection" in str(r.get("msg", "")) for r in rs.records() if r.get("neighbor") == addr), \
        "no collision was provoked\n" + lab.logs()
    settled = len(_established(rs, addr))
    time.sleep(4)                   # it stays up: the collision loser did not take it down
    assert up(), lab.logs()
    assert len(_established(rs, addr)) == settled, "the session flapped after the collision"

    sent67 = [r for r in _notifications(rs, addr, 6, 7) if str(r.get("msg", "")).startswith("sending")]
    got67 = [r for r in _notifications(rs, addr, 6, 7) if not str(r.get("msg", "")).startswith("sending")]
    # a genuine collision: rserver's second connection came while the first was not yet
    # Established (else it is a connection to an Established session, which the side that
    # has it Established may simply close)
    genuine = any("second connection" in str(r.get("msg", "")) and "is established" not in str(r.get("msg", ""))
                  for r in rs.records() if r.get("neighbor") == addr)
    if daemon == "bird" and genuine:
        # BIRD resolves every collision it sees with 6/7; so does rserver
        assert sent67 or got67, "no Cease 6/7 (connection collision resolution) exchanged\n" + lab.logs()
    # when rserver decided by BGP identifier (neither connection Established yet), RFC 4271
    # §6.8: it closes the connection opened by the lower identifier. (If one connection had
    # already reached Established, that one is kept whatever the identifiers say.)
    loser = "outbound" if higher == "daemon" else "inbound"
    for r in rs.records():
        m = str(r.get("msg", ""))
        if r.get("neighbor") == addr and m.startswith("collision resolution") and "is established" not in m:
            assert r.get("direction") == loser, f"closed the {r.get('direction')} connection: {m}"
    _assert_stopped_clean(rs, rs.stop())
