"""Hold-timer expiry and router-id collision resolution against real daemons (BIRD 2, GoBGP).

Hold timer: with hold time 9 s on both sides, a daemon frozen with SIGSTOP stops sending
KEEPALIVEs; rserver's hold timer expires within 9 s and it sends NOTIFICATION 4/0 and goes
down (``show neighbor -j``: last_notification_sent 4/0, last_down_reason "hold timer
expired"); on SIGCONT the daemon records the 4/0 it received.
"""
from __future__ import annotations

import os
import signal
import time

import pytest

from .harness import RS_ADDR, RS_AS, wait_until

pytestmark = pytest.mark.interop

HOLD = 9
UP_TIMEOUT = 25.0


def _start_daemon(lab, daemon: str, addr: str, passive: bool):
    if daemon == "bird":
        return lab.bird(addr, 64501, [("rsrv", RS_ADDR, RS_AS, passive)], hold=HOLD, keepalive=3)
    return lab.gobgp(addr, 64501, [(RS_ADDR, RS_AS, passive)], hold=HOLD, keepalive=3)


def _daemon_up(d, daemon: str) -> bool:
    return (d.state("rsrv") == "Established") if daemon == "bird" else (d.state(RS_ADDR) == "established")


def _notif(rec) -> tuple[int, int] | None:
    if not rec:
        return None
    return (rec.get("code"), rec.get("subcode"))


def _ka_times(rs, addr: str) -> tuple[list[float], list[float]]:
    """Times (epoch s, from the log) of the KEEPALIVEs rserver sent to / received from ``addr``."""
    from datetime import datetime
    sent, got = [], []
    for r in rs.records():
        if r.get("neighbor") != addr:
            continue
        m = str(r.get("msg", ""))
        if m == "sending keepalive" or m == "received fsm event keepalive message":
            t = datetime.fromisoformat(str(r["time"]).replace("Z", "+00:00")).timestamp()
            (sent if m == "sending keepalive" else got).append(t)
    return sent, got


def _wait_keepalive(rs, addr: str, received: bool, timeout: float = 5.0) -> None:
    n = len(_ka_times(rs, addr)[1 if received else 0])
    wait_until(lambda: len(_ka_times(rs, addr)[1 if received else 0]) > n,
               f"a keepalive {'received' if received else 'sent'}", timeout=timeout, interval=0.02)


def _freeze_at_phase(rs, addr: str, pid: int, after_sent: bool, gap: float = 1.0) -> None:
    """SIGSTOP ``pid`` right after a KEEPALIVE went one way (rserver sent one: ``after_sent``;
    else rserver received one) when the last one the other way is at least ``gap`` s older:
    then the frozen side's peer times out first by that margin, so that on SIGCONT the frozen
    side reads the peer's 4/0 before its own (overdue) hold timer could fire. (Used with
    ``after_sent`` only: rserver sent a KEEPALIVE, so the frozen daemon's hold timer is the later.)

    Both sides send KEEPALIVEs every 3 s (rserver and GoBGP without jitter), so the phase
    may never give that margin; then rserver's phase is moved: its worker is frozen for
    4.5 s right after it received a KEEPALIVE (its own keepalive timer fires on SIGCONT,
    1.5 s out of phase with the peer's; 4.5 s is well inside the peer's hold time of 9 s)."""
    worker = rs.workers()[0]
    for attempt in range(3):
        end = time.monotonic() + 4.0            # more than one keepalive period
        seen = len(_ka_times(rs, addr)[0 if after_sent else 1])
        while time.monotonic() < end:
            sent, got = _ka_times(rs, addr)
            this, other = (sent, got) if after_sent else (got, sent)
            if len(this) > seen:
                seen = len(this)
                if not other or this[-1] - other[-1] >= gap:
                    os.kill(pid, signal.SIGSTOP)
                    return
            time.sleep(0.02)
        _wait_keepalive(rs, addr, received=True)
        os.kill(worker, signal.SIGSTOP)
        try:
            time.sleep(4.5)
        finally:
            os.kill(worker, signal.SIGCONT)
    pytest.fail(f"no keepalive phase with a {gap}s margin after 3 attempts")


@pytest.mark.parametrize("daemon", ["bird", "gobgp"])
def test_hold_timer_expiry_sends_and_receives_4_0(lab, daemon):
    addr = lab.address()
    d = _start_daemon(lab, daemon, addr, passive=False)
    rs = lab.rserver([(addr, 64501, True, "")], hold=HOLD)
    wait_until(lambda: _daemon_up(d, daemon) and rs.show_neighbor(addr).get("state") == "established",
               "session Established on both sides", timeout=UP_TIMEOUT, diag=lab.logs)

    # 1. the daemon is frozen: rserver's hold timer (9 s) expires, it sends 4/0
    _freeze_at_phase(rs, addr, d.pid, after_sent=True)
    t0 = time.monotonic()
    try:
        wait_until(lambda: any(str(r.get("msg", "")).startswith("sending notification") and r.get("code") == 4
                               and r.get("subcode") == 0 and r.get("neighbor") == addr for r in rs.records()),
                   "rserver sending NOTIFICATION 4/0 (Hold Timer Expired)", timeout=HOLD + 4, interval=0.05,
                   diag=lambda: rs.log()[-3000:])
        elapsed = time.monotonic() - t0
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert elapsed <= HOLD + 1, f"hold timer expired only after {elapsed:.1f}s"
    st = rs.show_neighbor(addr)
    assert _notif(st.get("last_notification_sent")) == (4, 0), st
    assert st.get("state") != "established", st
    assert st.get("last_down_reason") == "hold timer expired", st
    # the transition to Idle said so; by now the idle-hold back-off may have moved it on
    assert any(str(r.get("msg", "")).startswith("fsm transition established -> idle")
               and r.get("reason") == "hold timer expired" and r.get("neighbor") == addr for r in rs.records())
    assert st.get("last_transition_reason") in ("hold timer expired", "idle hold timer expired",
                                                "connect retry timer expired", "connection established"), st
    # the daemon, running again, reads the Hold Timer Expired NOTIFICATION
    if daemon == "bird":
        wait_until(lambda: "Received: Hold timer expired" in d.info("rsrv")["last_error"],
                   "BIRD recording the received 4/0", timeout=10, diag=lambda: d.show("rsrv") + d.events()[-3000:])
    else:
        wait_until(lambda: (4, 0) in d.notifications_received(RS_ADDR), "GoBGP logging the received 4/0",
                   timeout=10, diag=lambda: d.log()[-4000:])


# --- collision resolved by BGP identifier ---------------------------------------------------------
#
# To make rserver decide by BGP identifier (RFC 4271 §6.8) both connections must have
# delivered the daemon's OPEN before either reached Established. The choreography:
#   1. the daemon (active) starts and is frozen (SIGSTOP); rserver (active, DelayOpen 30 s so
#      it sends no OPEN of its own on a fresh connection) starts: its outbound connection
#      completes at the TCP level into the frozen daemon's listen backlog;
#   2. rserver's session worker is frozen; the daemon resumes: it accepts rserver's connection
#      and sends its OPEN there, and its own connect retry opens a second connection to
#      rserver's listener (the supervisor hands it to the frozen worker) with its OPEN;
#   3. the daemon is frozen again (so it cannot answer rserver's OPEN with a KEEPALIVE before
#      rserver has read the second OPEN), the worker resumes with two connections to the peer
#      and an OPEN queued on each and decides by BGP identifier; then the daemon resumes.
# BIRD only: GoBGP runs one connection per peer -- once it has accepted rserver's connection
# it stops its connect loop ("stop connect loop" in its log) and closes any other connection
# it accepts without sending an OPEN, so rserver never holds two OPENs from it.
# If step 2 does not yield two connections within a bound (the daemon may not connect out
# once it has accepted one), the whole choreography is run again (at most twice more).

def _rs_tcp(addr: str) -> int:
    from .test_rserver import _tcp_established
    return _tcp_established(RS_ADDR, addr)


def _collision_records(rs, addr: str) -> list[dict]:
    return [r for r in rs.records() if r.get("neighbor") == addr
            and str(r.get("msg", "")).startswith("collision resolution")]


def _try_collision(lab, daemon: str, rs_id: str):
    """One run of the choreography: (daemon, rserver, addr) or None if the precondition
    (two connections with OPENs at once) was not reached; whatever started is stopped then."""
    addr = lab.address()
    d = _start_daemon(lab, daemon, addr, passive=False)
    os.kill(d.pid, signal.SIGSTOP)
    worker = None
    try:
        rs = lab.rserver([(addr, 64501, False, "delay_open = 30")], router_id=rs_id, hold=HOLD)
        wait_until(lambda: _rs_tcp(addr) == 1 and any(
                       str(r.get("msg", "")).startswith(f"outbound connection to {addr}")
                       and "established" in str(r.get("msg", "")) for r in rs.records()),
                   "rserver's outbound connection into the frozen daemon's backlog", timeout=15,
                   diag=rs.log)
        worker = rs.workers()[0]
        os.kill(worker, signal.SIGSTOP)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    try:
        end = time.monotonic() + 6.0
        while time.monotonic() < end and _rs_tcp(addr) < 2:
            time.sleep(0.05)
        two = _rs_tcp(addr) == 2
        time.sleep(0.5)                 # the daemon's OPEN on its own connection
        # freeze the daemon again, so that it cannot answer rserver's OPEN with a KEEPALIVE
        # (and take that connection to Established) before the worker reads the second OPEN
        os.kill(d.pid, signal.SIGSTOP)
    finally:
        os.kill(worker, signal.SIGCONT)
    try:
        if two:
            wait_until(lambda: _collision_records(rs, addr), "rserver resolving the collision",
                       timeout=10, interval=0.05, diag=rs.log)
    finally:
        os.kill(d.pid, signal.SIGCONT)
    if two:
        return d, rs, addr
    rs.stop()
    d.stop()
    return None


@pytest.mark.parametrize("daemon", ["bird"])
@pytest.mark.parametrize("rs_id, higher", [("127.0.0.1", "daemon"), ("127.255.0.1", "rserver")])
def test_collision_resolved_by_router_id(lab, daemon, rs_id, higher):
    got = None
    for _ in range(3):
        got = _try_collision(lab, daemon, rs_id)
        if got is not None:
            break
    if got is None:
        pytest.fail(f"precondition never reached in 3 runs: {daemon} did not open its own connection "
                    f"while rserver's outbound one was up\n" + lab.logs())
    d, rs, addr = got
    recs = wait_until(lambda: _collision_records(rs, addr), "rserver resolving the collision", timeout=10,
                      diag=rs.log)
    assert len(recs) == 1, recs
    msg = str(recs[0]["msg"])
    # the survivor is the connection initiated by the side with the higher BGP identifier
    if higher == "daemon":
        assert f"local id {rs_id} < remote id {addr}: keeping the inbound connection" in msg, msg
        keep, lose = "inbound", "outbound"
    else:
        assert f"local id {rs_id} > remote id {addr}: keeping the outbound connection" in msg, msg
        keep, lose = "outbound", "inbound"
    assert f"closing the {lose} connection" in msg and "with Cease 6/7" in msg, msg
    assert recs[0].get("direction") == lose, recs[0]
    sent67 = [r for r in rs.records() if r.get("neighbor") == addr and r.get("code") == 6
              and r.get("subcode") == 7 and str(r.get("msg", "")).startswith("sending notification")]
    assert len(sent67) == 1 and sent67[0].get("direction") == lose, sent67 or rs.log()[-4000:]

    kept = [r for r in rs.records() if r.get("neighbor") == addr and r.get("direction") == keep
            and str(r.get("msg", "")).startswith("sending keepalive")]
    assert kept, "rserver did not continue on the kept connection\n" + rs.log()[-4000:]
    kept_id = kept[0].get("conn_id")

    def up():
        return (_daemon_up(d, daemon) and _rs_tcp(addr) == 1
                and rs.show_neighbor(addr).get("state") == "established")
    wait_until(up, "exactly one connection, Established on both sides", timeout=UP_TIMEOUT, diag=lab.logs)
    est = [r for r in rs.records() if r.get("neighbor") == addr
           and str(r.get("msg", "")).startswith("session established")]
    if est[0].get("conn_id") != kept_id:
        # BIRD sees the collision too; when rserver's Cease 6/7 on BIRD's incoming connection
        # arrives before BIRD has resolved it itself, BIRD restarts the protocol and closes the
        # connection rserver kept with Cease 6/0 ("Received: Connection collision resolution"
        # in its log); the session then comes up on a fresh connection.
        reset = [r for r in rs.records() if r.get("conn_id") == kept_id
                 and str(r.get("msg", "")).startswith("received notification")]
        assert reset, f"the kept connection {kept_id} neither came up nor was reset by {daemon}\n" + lab.logs()
    else:
        assert est[0].get("direction") == keep, est
    n = len(est)
    time.sleep(3)                       # stable: exactly one session, no flap
    assert up(), lab.logs()
    st = rs.show_neighbor(addr)
    assert len([r for r in rs.records() if r.get("neighbor") == addr
                and str(r.get("msg", "")).startswith("session established")]) == n == st.get("established_count"), st
