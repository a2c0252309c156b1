"""The sans-IO FSM (rserver.session.fsm): no sockets, no sleeps, a fake clock."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from rserver.codec.constants import AS_TRANS, MSG_UPDATE
from rserver.codec.messages import AddPathCap, FourOctetASCap, MultiprotocolCap, Open, RouteRefreshCap
from rserver.session.collision import Direction
from rserver.session.fsm import (
    EVENT_TYPES, NO_NOTIFICATION_REASONS, AutomaticStart, AutomaticStartPassive, AutomaticStop,
    BGPHeaderErr, BGPOpen, BGPOpenMsgErr, CancelConnect, CloseConnection, Connect,
    ConnectRetryTimerExpires, DelayOpenTimerExpires, DeliverRouteRefresh, DeliverUpdate, Fsm,
    FsmConfig, HoldTimerExpires, IdleHoldTimerExpires, KeepAliveMsg, KeepaliveTimerExpires,
    ManualStart, ManualStartPassive, ManualStop, Note, NotifMsg, OpenCollisionDump, Reason,
    RouteRefreshMsg, SendKeepalive, SendNotification, SendOpen, SessionDown, SessionUp, State,
    StateChange, TcpConnectionConfirmed, TcpConnectionFails, TcpCrAcked, UpdateMsg, UpdateMsgErr,
)
from rserver.session.negotiate import LocalSettings, codec_context
from rserver.session.timers import IdleHoldBackoff, StartTimer, StopTimer, TimerName, Timers, jittered

TIMER_OF = {ConnectRetryTimerExpires: TimerName.CONNECT_RETRY, HoldTimerExpires: TimerName.HOLD,
            KeepaliveTimerExpires: TimerName.KEEPALIVE, DelayOpenTimerExpires: TimerName.DELAY_OPEN,
            IdleHoldTimerExpires: TimerName.IDLE_HOLD}
PEER_TIMERS = (TimerName.CONNECT_RETRY, TimerName.IDLE_HOLD)
LOCAL_ID = 2
SETTINGS = LocalSettings(local_as=4200000002, bgp_id=LOCAL_ID, peer_as=4200000001, hold_time=90)


def peer_open(bgp_id: int = 1, hold: int = 90, **kw) -> Open:
    caps = [MultiprotocolCap(1, 1), RouteRefreshCap(), FourOctetASCap(4200000001),
            AddPathCap(((1, 1, 1),))]
    return Open(kw.get("version", 4), kw.get("my_as", AS_TRANS), hold, bgp_id, kw.get("caps", caps))


class Harness:
    """An Fsm plus a Timers table and a fake clock; records every action."""

    def __init__(self, settings: LocalSettings = SETTINGS, seed: int = 0, **cfg):
        self.fsm = Fsm(settings, FsmConfig(**cfg), rng=random.Random(seed))
        self.timers = Timers()
        self.now = 0.0
        self.log: list = []

    def ev(self, event) -> list:
        if type(event) in TIMER_OF:      # an expiry injected by the test: the driver has fired it
            name = TIMER_OF[type(event)]
            conn = event.conn if event.conn is not None or name in PEER_TIMERS else self.fsm.conn
            self.timers.discard(name, conn)
        acts = self.fsm.handle(event, self.now)
        self.timers.apply(acts, self.now)
        self.log += acts
        return acts

    def advance(self, dt: float) -> list:
        """Move the clock, firing due timers in deadline order."""
        out, target = [], self.now + dt
        while (d := self.timers.next_deadline()) is not None and d <= target:
            self.now = d
            for name, conn in self.timers.expired(d):
                acts = self.fsm.timer_expired(name, conn, self.now)
                self.timers.apply(acts, self.now)
                out += acts
        self.now = target
        self.log += out
        return out

    @property
    def state(self) -> State:
        return self.fsm.state

    def up(self, conn=1, open_msg=None, inbound=True) -> list:
        """Drive to Established on ``conn``."""
        acts = []
        if self.state == State.IDLE:
            acts += self.ev(ManualStart())
        acts += self.ev(TcpConnectionConfirmed(conn=conn) if inbound else TcpCrAcked(conn=conn))
        acts += self.ev(BGPOpen(open=open_msg or peer_open(), conn=conn))
        acts += self.ev(KeepAliveMsg(conn=conn))
        assert self.state == State.ESTABLISHED
        return acts


def of(acts, cls) -> list:
    return [a for a in acts if isinstance(a, cls)]


def notifs(acts) -> list[tuple[int, int]]:
    return [(a.code, a.subcode) for a in of(acts, SendNotification)]


def transitions(acts) -> list[tuple[str, str]]:
    return [(str(a.old), str(a.new)) for a in of(acts, StateChange)]


def timer_starts(acts, name) -> list[float]:
    return [a.seconds for a in of(acts, StartTimer) if a.name == name]


def assert_notified_then_closed(acts, conn, code, subcode):
    kinds = [(type(a).__name__, a.conn) for a in acts]
    i = kinds.index(("SendNotification", conn))
    j = kinds.index(("CloseConnection", conn))
    assert i < j
    assert (acts[i].code, acts[i].subcode) == (code, subcode)


# --- names ---------------------------------------------------------------------------------------

def test_log_friendly_names():
    assert [str(s) for s in State] == ["idle", "connect", "active", "open sent", "open confirm", "established"]
    assert f"{State.OPEN_CONFIRM} -> {State.ESTABLISHED}" == "open confirm -> established"
    assert str(ManualStart()) == "manual start"
    assert str(TcpCrAcked(conn=1)) == "tcp connection acked"
    assert str(KeepAliveMsg()) == "keepalive message"
    assert str(BGPOpen()) == "open message"
    assert str(StateChange(old=State.OPEN_CONFIRM, new=State.ESTABLISHED, reason=Reason.KEEPALIVE_RECEIVED)) \
        == "fsm transition open confirm -> established (keepalive received)"
    assert ManualStart.number == 1 and TcpConnectionConfirmed.number == 17 and UpdateMsgErr.number == 28
    assert str(Reason.HOLD_TIMER_EXPIRED) == "hold timer expired"


# --- seed 000: the passive sequence ------------------------------------------------------------

def test_seed000_passive_sequence():
    s = LocalSettings(local_as=4200000002, bgp_id=2, peer_as=4200000001, hold_time=6)
    h = Harness(s)
    acts = h.ev(ManualStart())
    assert transitions(acts) == [("idle", "active")] and not of(acts, Connect)
    # seed 000: a second "manual start" is "unexpected admin fsm event manual start, ignoring" (warning)
    acts = h.ev(ManualStart())
    assert acts == [Note(level="warning", text="unexpected admin fsm event manual start, ignoring")]
    acts = h.ev(TcpConnectionConfirmed(conn="b5e74790"))
    assert of(acts, SendOpen) == [SendOpen(conn="b5e74790")]
    assert timer_starts(acts, TimerName.HOLD) == [240.0]
    assert transitions(acts) == [("active", "open sent")]
    acts = h.ev(BGPOpen(open=peer_open(hold=6), conn="b5e74790"))
    assert of(acts, SendKeepalive) == [SendKeepalive(conn="b5e74790")]
    assert timer_starts(acts, TimerName.HOLD) == [6.0] and timer_starts(acts, TimerName.KEEPALIVE) == [2.0]
    assert transitions(acts) == [("open sent", "open confirm")]
    acts = h.ev(KeepAliveMsg(conn="b5e74790"))
    assert transitions(acts) == [("open confirm", "established")]
    up = of(acts, SessionUp)[0]
    assert up.negotiated.peer_as == 4200000001 and up.direction is Direction.INBOUND
    assert codec_context(up.negotiated).as4
    h.ev(KeepAliveMsg(conn="b5e74790"))
    acts = h.ev(ManualStop())
    assert_notified_then_closed(acts, "b5e74790", 6, 2)
    assert transitions(acts) == [("established", "idle")]
    assert of(acts, SessionDown)[0].reason == Reason.ADMIN_DOWN
    assert not h.timers.running(TimerName.IDLE_HOLD) and len(h.timers) == 0   # admin down: stays down
    c = h.fsm.counters
    assert c.sent["open"] == 1 and c.sent["keepalive"] == 1 and c.sent["notification"] == 1
    assert c.received["open"] == 1 and c.received["keepalive"] == 2
    assert c.established_count == 1 and c.last_transition_reason == Reason.ADMIN_DOWN
    assert (c.last_notification_sent.code, c.last_notification_sent.subcode) == (6, 2)


# --- Idle ---------------------------------------------------------------------------------------

def test_idle_refuses_connections_with_cease_6_5():
    h = Harness(admin_down=True)
    acts = h.ev(AutomaticStart())
    assert h.state == State.IDLE and "administratively down" in of(acts, Note)[0].text
    acts = h.ev(TcpConnectionConfirmed(conn=9))
    assert_notified_then_closed(acts, 9, 6, 5)
    assert h.state == State.IDLE


@pytest.mark.parametrize("ev", [ManualStop(), AutomaticStop(), KeepAliveMsg(conn=1), UpdateMsg(conn=1),
                                NotifMsg(conn=1), TcpConnectionFails(conn=1), BGPOpen(open=peer_open(), conn=1),
                                HoldTimerExpires(), KeepaliveTimerExpires(), ConnectRetryTimerExpires(),
                                DelayOpenTimerExpires(), IdleHoldTimerExpires(), OpenCollisionDump(conn=1)])
def test_idle_ignores_everything_else(ev):
    h = Harness()
    acts = h.ev(ev)
    assert h.state == State.IDLE
    assert all(isinstance(a, (Note, StopTimer)) for a in acts)


def test_manual_start_passive_and_automatic_start():
    h = Harness(passive=False)
    h.ev(ManualStartPassive())
    assert h.state == State.ACTIVE and not of(h.log, Connect)
    h2 = Harness(passive=False)
    acts = h2.ev(AutomaticStart())
    assert h2.state == State.CONNECT and of(acts, Connect)
    h3 = Harness(passive=False)
    h3.ev(AutomaticStartPassive())
    assert h3.state == State.ACTIVE


# --- Connect / Active (active mode) -------------------------------------------------------------

def test_active_mode_connects_and_retries():
    h = Harness(passive=False, connect_retry_time=120)
    acts = h.ev(ManualStart())
    assert of(acts, Connect) and transitions(acts) == [("idle", "connect")]
    (cr,) = timer_starts(acts, TimerName.CONNECT_RETRY)
    assert 90.0 <= cr <= 120.0                              # jittered 0.75-1.0 (RFC 4271 §10)
    acts = h.ev(TcpConnectionFails(conn="attempt-1"))       # the outbound attempt failed
    assert transitions(acts) == [("connect", "active")]
    assert h.timers.running(TimerName.CONNECT_RETRY)
    acts = h.advance(120)
    assert of(acts, Connect) and transitions(acts) == [("active", "connect")]
    acts = h.ev(TcpCrAcked(conn=5))
    assert of(acts, SendOpen) == [SendOpen(conn=5)] and transitions(acts) == [("connect", "open sent")]
    assert of(acts, StopTimer) == [StopTimer(TimerName.CONNECT_RETRY)]
    assert h.fsm.direction is Direction.OUTBOUND


def test_connect_retry_configurable_without_jitter():
    h = Harness(passive=False, connect_retry_time=30, connect_retry_jitter=False)
    assert timer_starts(h.ev(ManualStart()), TimerName.CONNECT_RETRY) == [30.0]
    acts = h.advance(30)                                   # expires in Connect: retry
    assert of(acts, CancelConnect) and of(acts, Connect) and h.state == State.CONNECT
    assert timer_starts(acts, TimerName.CONNECT_RETRY) == [30.0]


def test_manual_stop_in_connect_cancels_the_attempt():
    h = Harness(passive=False)
    h.ev(ManualStart())
    acts = h.ev(ManualStop())
    assert of(acts, CancelConnect) and h.state == State.IDLE and not notifs(acts)
    assert len(h.timers) == 0


def test_inbound_connection_while_connecting():
    h = Harness(passive=False)
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn=1))
    assert h.state == State.OPEN_SENT and h.fsm.conn == 1
    acts = h.ev(TcpCrAcked(conn=2))                     # our attempt completes later: tracked
    assert h.fsm.second_conn == 2 and of(acts, SendOpen) == [SendOpen(conn=2)]
    assert h.timers.running(TimerName.HOLD, 2)


@given(st.integers(0, 2**32 - 1), st.lists(st.sampled_from(EVENT_TYPES), max_size=40))
@hsettings(max_examples=100, deadline=None)
def test_passive_mode_never_connects(seed, kinds):
    h = Harness(seed=seed)
    for i, kind in enumerate(kinds):
        ev = kind(conn=i % 3) if kind not in (BGPOpen,) else BGPOpen(open=peer_open(), conn=i % 3)
        h.ev(ev)
        h.advance(500)
    assert not of(h.log, Connect)


# --- OpenSent ------------------------------------------------------------------------------------

def opensent(**cfg) -> Harness:
    h = Harness(**cfg)
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn=1))
    assert h.state == State.OPEN_SENT
    return h


def test_opensent_hold_timer_is_240_and_expiry_sends_4_0():
    h = opensent()
    assert h.timers.deadline(TimerName.HOLD, 1) == 240.0
    acts = h.advance(240)
    assert_notified_then_closed(acts, 1, 4, 0)
    assert transitions(acts) == [("open sent", "idle")]
    assert of(acts, CloseConnection)[0].reason == Reason.HOLD_TIMER_EXPIRED
    (idle_hold,) = timer_starts(acts, TimerName.IDLE_HOLD)
    assert 3.75 <= idle_hold <= 5.0


@pytest.mark.parametrize("ev", [KeepAliveMsg(conn=1), UpdateMsg(conn=1), RouteRefreshMsg(conn=1),
                                UpdateMsgErr(conn=1)])
def test_opensent_unexpected_message_5_1(ev):
    h = opensent()
    acts = h.ev(ev)
    assert_notified_then_closed(acts, 1, 5, 1)
    assert h.state == State.IDLE and h.fsm.counters.last_transition_reason == Reason.UNEXPECTED_MESSAGE


def test_opensent_open_error():
    h = opensent()
    acts = h.ev(BGPOpen(open=peer_open(bgp_id=0), conn=1))
    assert_notified_then_closed(acts, 1, 2, 3)
    assert h.state == State.IDLE and h.fsm.counters.last_transition_reason == Reason.OPEN_REJECTED
    h = opensent()
    acts = h.ev(BGPOpen(open=peer_open(version=3), conn=1))
    assert of(acts, SendNotification)[0].data == b"\x00\x04"


def test_opensent_decode_errors():
    h = opensent()
    acts = h.ev(BGPOpenMsgErr(subcode=0, conn=1))
    assert_notified_then_closed(acts, 1, 2, 0)
    h = opensent()
    acts = h.ev(BGPHeaderErr(code=1, subcode=2, data=b"\x00\x05", conn=1))
    assert_notified_then_closed(acts, 1, 1, 2)
    assert of(acts, SendNotification)[0].data == b"\x00\x05"


def test_opensent_tcp_fails_goes_active():
    h = opensent()
    acts = h.ev(TcpConnectionFails(conn=1))
    assert transitions(acts) == [("open sent", "active")] and not notifs(acts)
    assert of(acts, CloseConnection)[0].reason == Reason.CONNECTION_LOST
    assert not h.timers.running(TimerName.CONNECT_RETRY)       # passive: nothing to retry


def test_opensent_notification_received():
    h = opensent()
    acts = h.ev(NotifMsg(code=6, subcode=2, conn=1))
    assert not notifs(acts) and h.state == State.IDLE             # never answer a NOTIFICATION
    c = h.fsm.counters
    assert c.last_transition_reason == Reason.NOTIFICATION_RECEIVED
    assert (c.last_notification_received.code, c.last_notification_received.subcode) == (6, 2)
    assert c.connect_retry_counter == 1
    h = opensent()
    h.ev(NotifMsg(code=2, subcode=1, data=b"\x00\x04", conn=1))   # NotifMsgVerErr: not counted
    assert h.fsm.counters.connect_retry_counter == 0


def test_opensent_manual_stop_and_collision_dump():
    h = opensent()
    assert_notified_then_closed(h.ev(ManualStop(subcode=4, data=b"\x03bye")), 1, 6, 4)
    assert h.fsm.counters.last_transition_reason == Reason.ADMIN_RESET
    h = opensent()
    assert_notified_then_closed(h.ev(OpenCollisionDump(conn=1)), 1, 6, 7)
    assert h.fsm.counters.last_transition_reason == Reason.COLLISION


# --- OpenConfirm --------------------------------------------------------------------------------

def openconfirm(hold=90, **cfg) -> Harness:
    h = opensent(**cfg)
    h.ev(BGPOpen(open=peer_open(hold=hold), conn=1))
    assert h.state == State.OPEN_CONFIRM
    return h


def test_openconfirm_timers_from_negotiated_hold():
    h = openconfirm(hold=30)
    assert h.timers.deadline(TimerName.HOLD, 1) == 30.0
    assert h.timers.deadline(TimerName.KEEPALIVE, 1) == 10.0
    acts = h.advance(10)
    assert of(acts, SendKeepalive) == [SendKeepalive(conn=1)] and timer_starts(acts, TimerName.KEEPALIVE) == [10.0]
    acts = h.advance(20)                                    # no KEEPALIVE from the peer
    assert_notified_then_closed(acts, 1, 4, 0)


def test_hold_time_zero_runs_no_timers():
    h = openconfirm(hold=0)
    assert not h.timers.running(TimerName.HOLD, 1) and not h.timers.running(TimerName.KEEPALIVE, 1)
    h.ev(KeepAliveMsg(conn=1))
    assert h.state == State.ESTABLISHED and len(h.timers) == 0
    assert h.advance(10_000) == []


def test_peer_hold_time_1_is_refused_2_6():
    h = opensent()
    assert_notified_then_closed(h.ev(BGPOpen(open=peer_open(hold=1), conn=1)), 1, 2, 6)


@pytest.mark.parametrize("ev", [BGPOpen(open=peer_open(), conn=1), UpdateMsg(conn=1), RouteRefreshMsg(conn=1),
                                UpdateMsgErr(conn=1)])
def test_openconfirm_unexpected_message_5_2(ev):
    h = openconfirm()
    assert_notified_then_closed(h.ev(ev), 1, 5, 2)
    assert h.state == State.IDLE


def test_openconfirm_failures():
    h = openconfirm()
    acts = h.ev(TcpConnectionFails(conn=1))
    assert transitions(acts) == [("open confirm", "idle")] and timer_starts(acts, TimerName.IDLE_HOLD)
    h = openconfirm()
    acts = h.ev(NotifMsg(code=6, subcode=3, conn=1))
    assert not notifs(acts) and h.state == State.IDLE
    h = openconfirm()
    assert_notified_then_closed(h.ev(ManualStop()), 1, 6, 2)
    assert not h.timers.running(TimerName.IDLE_HOLD)


# --- Established ------------------------------------------------------------------------------

def test_established_messages():
    h = Harness()
    h.up()
    acts = h.ev(UpdateMsg(payload="batch", count=3, conn=1))
    assert of(acts, DeliverUpdate) == [DeliverUpdate(payload="batch", count=3, conn=1)]
    assert timer_starts(acts, TimerName.HOLD) == [90.0]
    acts = h.ev(RouteRefreshMsg(payload=(1, 1), conn=1))
    assert of(acts, DeliverRouteRefresh) == [DeliverRouteRefresh(payload=(1, 1), conn=1)]
    assert h.fsm.counters.received["update"] == 3 and h.fsm.counters.received["route-refresh"] == 1


def test_established_route_refresh_not_negotiated_is_ignored():
    h = Harness()
    h.up(open_msg=peer_open(caps=[FourOctetASCap(4200000001)]))
    acts = h.ev(RouteRefreshMsg(conn=1))
    assert not of(acts, DeliverRouteRefresh) and h.state == State.ESTABLISHED


def test_established_open_is_5_3():
    h = Harness()
    h.up()
    acts = h.ev(BGPOpen(open=peer_open(), conn=1))
    assert_notified_then_closed(acts, 1, 5, 3)
    down = of(acts, SessionDown)[0]
    assert down.reason == Reason.UNEXPECTED_MESSAGE and (down.notification_sent.code,
                                                         down.notification_sent.subcode) == (5, 3)


def test_established_update_error_resets():
    h = Harness()
    h.up()
    acts = h.ev(UpdateMsgErr(code=3, subcode=11, data=b"x", conn=1))
    assert_notified_then_closed(acts, 1, 3, 11)
    assert of(acts, SessionDown)[0].reason == Reason.UPDATE_ERROR


def test_established_hold_and_keepalive():
    h = Harness()
    h.up()
    acts = h.advance(30)
    assert of(acts, SendKeepalive) and h.state == State.ESTABLISHED
    h.ev(KeepAliveMsg(conn=1))                               # at t=30: hold restarts to t=120
    acts = h.advance(89)
    assert h.state == State.ESTABLISHED and len(of(acts, SendKeepalive)) == 2
    acts = h.advance(1)
    assert_notified_then_closed(acts, 1, 4, 0)
    assert of(acts, SessionDown)[0].reason == Reason.HOLD_TIMER_EXPIRED


def test_note_sent_update_restarts_keepalive_timer():
    h = Harness()
    h.up()
    h.advance(20)
    acts = h.fsm.note_sent(MSG_UPDATE, now=h.now, count=2)
    h.timers.apply(acts, h.now)
    assert timer_starts(acts, TimerName.KEEPALIVE) == [30.0]
    assert h.timers.deadline(TimerName.KEEPALIVE, 1) == 50.0
    assert h.fsm.counters.sent["update"] == 2


def test_established_connection_lost_and_notification():
    h = Harness()
    h.up()
    acts = h.ev(TcpConnectionFails(conn=1))
    assert not notifs(acts) and of(acts, SessionDown)[0].reason == Reason.CONNECTION_LOST
    h = Harness()
    h.up()
    acts = h.ev(NotifMsg(code=6, subcode=4, conn=1))
    down = of(acts, SessionDown)[0]
    assert down.reason == Reason.NOTIFICATION_RECEIVED and down.notification_received.subcode == 4


def test_automatic_stop_max_prefix_restarts_later():
    h = Harness()
    h.up()
    acts = h.ev(AutomaticStop(subcode=1))
    assert_notified_then_closed(acts, 1, 6, 1)
    assert of(acts, SessionDown)[0].reason == Reason.MAX_PREFIX
    assert h.timers.running(TimerName.IDLE_HOLD)
    acts = h.advance(5)
    assert transitions(acts) == [("idle", "active")]
    assert of(acts, StateChange)[0].reason == Reason.IDLE_HOLD_EXPIRED


def test_manual_start_ignored_in_every_non_idle_state():
    h = Harness()
    for step in (lambda: h.ev(ManualStart()), lambda: h.ev(TcpConnectionConfirmed(conn=1)),
                 lambda: h.ev(BGPOpen(open=peer_open(), conn=1)), lambda: h.ev(KeepAliveMsg(conn=1))):
        step()
        acts = h.ev(ManualStart())
        assert acts == [Note(level="warning", text="unexpected admin fsm event manual start, ignoring")]


# --- idle hold back-off -------------------------------------------------------------------------

def test_idle_hold_backoff_doubles_with_jitter_and_caps():
    h = Harness(seed=42, idle_hold_time=5, idle_hold_max=300)
    delays = []
    h.ev(ManualStart())
    for _ in range(9):
        h.ev(TcpConnectionConfirmed(conn=1))
        acts = h.ev(KeepAliveMsg(conn=1))                    # 5/1 in OpenSent: a failure
        (d,) = timer_starts(acts, TimerName.IDLE_HOLD)
        delays.append(d)
        acts = h.advance(d)
        assert h.state == State.ACTIVE and transitions(acts) == [("idle", "active")]
    bases = [5, 10, 20, 40, 80, 160, 300, 300, 300]
    for d, base in zip(delays, bases):
        assert 0.75 * base <= d <= base
    # reproducible with the same seed
    h2 = Harness(seed=42)
    h2.ev(ManualStart())
    h2.ev(TcpConnectionConfirmed(conn=1))
    assert timer_starts(h2.ev(KeepAliveMsg(conn=1)), TimerName.IDLE_HOLD) == [delays[0]]


def test_idle_hold_resets_after_a_stable_session():
    h = Harness(idle_hold_stable=300)
    h.up()
    h.ev(TcpConnectionFails(conn=1))
    h.advance(5)
    h.up()
    h.ev(TcpConnectionFails(conn=1))                       # flapped quickly: back-off grows
    assert h.fsm.backoff.current == 20.0
    h.advance(10)
    h.up()
    h.ev(KeepAliveMsg(conn=1))
    h.now += 301                                           # stayed Established long enough
    acts = h.ev(TcpConnectionFails(conn=1))
    assert 3.75 <= timer_starts(acts, TimerName.IDLE_HOLD)[0] <= 5.0


def test_manual_start_resets_backoff_and_cuts_idle_hold():
    h = Harness()
    h.ev(ManualStart())
    for _ in range(3):
        h.ev(TcpConnectionConfirmed(conn=1))
        h.ev(UpdateMsg(conn=1))
        h.advance(1000)
    h.ev(TcpConnectionConfirmed(conn=1))
    h.ev(UpdateMsg(conn=1))
    assert h.state == State.IDLE and h.timers.running(TimerName.IDLE_HOLD)
    acts = h.ev(ManualStart())
    assert of(acts, StopTimer) == [StopTimer(TimerName.IDLE_HOLD)] and h.state == State.ACTIVE
    assert h.fsm.backoff.current == 5.0


def test_backoff_unit():
    b = IdleHoldBackoff(5, 300, 60, random.Random(1))
    ds = [b.next_delay() for _ in range(10)]
    assert all(0.75 * min(5 * 2 ** i, 300) <= d <= min(5 * 2 ** i, 300) for i, d in enumerate(ds))
    b.session_up(100.0)
    b.session_down(159.0)
    assert b.current == 300
    b.session_up(200.0)
    b.session_down(260.0)
    assert b.current == 5
    assert IdleHoldBackoff(0, 0).next_delay() == 0.0
    assert jittered(0, random.Random()) == 0.0


# --- DelayOpen ----------------------------------------------------------------------------------

def test_delay_open_expiry_sends_open():
    h = Harness(delay_open_time=5)
    h.ev(ManualStart())
    acts = h.ev(TcpConnectionConfirmed(conn=1))
    assert not of(acts, SendOpen) and timer_starts(acts, TimerName.DELAY_OPEN) == [5.0]
    assert h.state == State.ACTIVE
    acts = h.advance(5)
    assert of(acts, SendOpen) == [SendOpen(conn=1)] and transitions(acts) == [("active", "open sent")]
    assert timer_starts(acts, TimerName.HOLD) == [240.0]


def test_delay_open_peer_open_first():
    h = Harness(delay_open_time=5)
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn=1))
    acts = h.ev(BGPOpen(open=peer_open(), conn=1))         # Event 20
    kinds = [type(a) for a in acts]
    assert kinds.index(SendOpen) < kinds.index(SendKeepalive)
    assert StopTimer(TimerName.DELAY_OPEN, 1) in acts
    assert transitions(acts) == [("active", "open confirm")]


def test_delay_open_unexpected_message_is_5_0():
    h = Harness(delay_open_time=5)
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn=1))
    assert_notified_then_closed(h.ev(KeepAliveMsg(conn=1)), 1, 5, 0)


def test_delay_open_in_connect_and_tcp_failure():
    h = Harness(passive=False, delay_open_time=5)
    h.ev(ManualStart())
    h.ev(TcpCrAcked(conn=1))
    assert h.state == State.CONNECT and h.timers.running(TimerName.DELAY_OPEN, 1)
    acts = h.ev(TcpConnectionFails(conn=1))
    assert transitions(acts) == [("connect", "active")] and h.timers.running(TimerName.CONNECT_RETRY)
    assert not h.timers.running(TimerName.DELAY_OPEN, 1)


# --- stale timers and unknown connections ---------------------------------------------------------

def test_stale_timer_is_ignored():
    h = openconfirm()
    acts = h.ev(HoldTimerExpires(conn=99))
    assert h.state == State.OPEN_CONFIRM and "not running" in of(acts, Note)[0].text
    acts = h.ev(ConnectRetryTimerExpires())
    assert h.state == State.OPEN_CONFIRM and of(acts, Note)


def test_events_for_unknown_connections_are_ignored():
    h = openconfirm()
    acts = h.ev(KeepAliveMsg(conn=42))
    assert acts == [Note(level="debug", text="keepalive message for unknown connection 42, ignoring", conn=42)]
    acts = h.ev(NotifMsg(code=6, subcode=7, conn=42))
    assert of(acts, Note)[0].level == "warning" and h.state == State.OPEN_CONFIRM


# --- collisions in the FSM ---------------------------------------------------------------------

def test_seed001_collision_local_id_lower():
    """Seed 001: local id 1, remote id 2; the peer's connection arrives first, ours
    completes while in OpenConfirm. Ours (outbound) loses, with Cease 6/7, and the
    peer's NOTIFICATION on it is then ignored."""
    s = LocalSettings(local_as=4200000001, bgp_id=1, peer_as=4200000002, hold_time=6)
    h = Harness(s, passive=False)
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn="5a7be0d5"))
    peer = peer_open(bgp_id=2, hold=6, caps=[MultiprotocolCap(1, 1), FourOctetASCap(4200000002)])
    h.ev(BGPOpen(open=peer, conn="5a7be0d5"))
    assert h.state == State.OPEN_CONFIRM
    acts = h.ev(TcpCrAcked(conn="3f6bbac8"))
    assert of(acts, SendOpen) == [SendOpen(conn="3f6bbac8")] and h.fsm.second_conn == "3f6bbac8"
    acts = h.ev(BGPOpen(open=peer, conn="3f6bbac8"))
    assert_notified_then_closed(acts, "3f6bbac8", 6, 7)
    note = [a.text for a in of(acts, Note) if "collision" in a.text][0]
    assert "local id 0.0.0.1 < remote id 0.0.0.2: keeping the inbound connection 5a7be0d5" in note
    assert h.state == State.OPEN_CONFIRM and h.fsm.conn == "5a7be0d5" and h.fsm.second_conn is None
    acts = h.ev(NotifMsg(code=6, subcode=7, conn="3f6bbac8"))
    (n,) = of(acts, Note)
    assert n.level == "warning" and "already-dropped connection 3f6bbac8" in n.text
    assert h.state == State.OPEN_CONFIRM
    acts = h.ev(KeepAliveMsg(conn="5a7be0d5"))
    assert h.state == State.ESTABLISHED and of(acts, SessionUp)[0].conn == "5a7be0d5"


def test_collision_local_id_higher_switches_to_our_connection():
    h = Harness(passive=False)           # local id 2
    h.ev(ManualStart())
    h.ev(TcpConnectionConfirmed(conn="in"))
    h.ev(BGPOpen(open=peer_open(bgp_id=1), conn="in"))
    h.ev(TcpCrAcked(conn="out"))
    acts = h.ev(BGPOpen(open=peer_open(bgp_id=1), conn="out"))
    assert_notified_then_closed(acts, "in", 6, 7)
    assert h.fsm.conn == "out" and h.fsm.direction is Direction.OUTBOUND
    assert of(acts, SendKeepalive) == [SendKeepalive(conn="out")]
    assert h.timers.running(TimerName.KEEPALIVE, "out") and not h.timers.running(TimerName.KEEPALIVE, "in")
    assert not h.timers.running(TimerName.HOLD, "in")
    h.ev(KeepAliveMsg(conn="out"))
    assert h.state == State.ESTABLISHED


@pytest.mark.parametrize("remote_id,main_dir,keep_main", [
    (1, "in", False), (3, "in", True), (1, "out", True), (3, "out", False)])
def test_collision_in_opensent_both_orders_and_directions(remote_id, main_dir, keep_main):
    """The second connection's OPEN arrives while the first is still in OpenSent."""
    h = Harness(passive=False)
    h.ev(ManualStart())
    first, second = (TcpConnectionConfirmed, TcpCrAcked)
    if main_dir == "out":
        first, second = second, first
    h.ev(first(conn="A"))
    h.ev(second(conn="B"))
    acts = h.ev(BGPOpen(open=peer_open(bgp_id=remote_id), conn="B"))
    loser = "B" if keep_main else "A"
    assert_notified_then_closed(acts, loser, 6, 7)
    assert h.fsm.conn == ("A" if keep_main else "B")
    assert h.state == (State.OPEN_SENT if keep_main else State.OPEN_CONFIRM)


def test_collision_with_established_default_keeps_existing():
    h = Harness(passive=False)
    h.up(conn="in", open_msg=peer_open(bgp_id=1))
    h.ev(TcpCrAcked(conn="out"))
    acts = h.ev(BGPOpen(open=peer_open(bgp_id=1), conn="out"))
    assert_notified_then_closed(acts, "out", 6, 7)
    assert h.state == State.ESTABLISHED and not of(acts, SessionDown)


def test_collision_with_established_when_configured():
    h = Harness(passive=False, collision_detect_established=True)
    h.up(conn="in", open_msg=peer_open(bgp_id=1))
    h.ev(TcpCrAcked(conn="out"))
    acts = h.ev(BGPOpen(open=peer_open(bgp_id=1), conn="out"))      # local 2 > remote 1: ours wins
    assert_notified_then_closed(acts, "in", 6, 7)
    assert of(acts, SessionDown)[0].reason == Reason.COLLISION
    assert transitions(acts) == [("established", "open confirm")] and h.fsm.conn == "out"


def test_peer_dumps_our_connection_first_we_continue_with_the_other():
    h = Harness(passive=False)
    h.ev(ManualStart())
    h.ev(TcpCrAcked(conn="out"))
    h.ev(BGPOpen(open=peer_open(bgp_id=3), conn="out"))
    h.ev(TcpConnectionConfirmed(conn="in"))                        # tracked
    acts = h.ev(NotifMsg(code=6, subcode=7, conn="out"))           # the peer resolved first
    assert h.fsm.conn == "in" and h.state == State.OPEN_SENT and not notifs(acts)
    assert transitions(acts) == [("open confirm", "open sent")]
    h.ev(BGPOpen(open=peer_open(bgp_id=3), conn="in"))
    h.ev(KeepAliveMsg(conn="in"))
    assert h.state == State.ESTABLISHED


def test_second_connection_errors_leave_the_first_alone():
    for ev, code in [(KeepAliveMsg(conn=2), (5, 1)), (HoldTimerExpires(conn=2), (4, 0)),
                     (BGPOpen(open=peer_open(bgp_id=0), conn=2), (2, 3)),
                     (BGPHeaderErr(code=1, subcode=1, conn=2), (1, 1)), (OpenCollisionDump(conn=2), (6, 7))]:
        h = openconfirm()
        h.ev(TcpConnectionConfirmed(conn=2))
        acts = h.ev(ev)
        assert_notified_then_closed(acts, 2, *code)
        assert h.state == State.OPEN_CONFIRM and h.fsm.conn == 1 and h.fsm.second_conn is None
    h = openconfirm()
    h.ev(TcpConnectionConfirmed(conn=2))
    acts = h.ev(TcpConnectionFails(conn=2))
    assert not notifs(acts) and h.fsm.second_conn is None and h.state == State.OPEN_CONFIRM


def test_third_connection_rejected_and_stop_closes_both():
    h = openconfirm()
    h.ev(TcpConnectionConfirmed(conn=2))
    assert_notified_then_closed(h.ev(TcpConnectionConfirmed(conn=3)), 3, 6, 5)
    acts = h.ev(ManualStop())
    assert_notified_then_closed(acts, 1, 6, 2)
    assert_notified_then_closed(acts, 2, 6, 2)
    assert h.state == State.IDLE and len(h.timers) == 0


# --- Timers helper ------------------------------------------------------------------------------

def test_timers_table():
    t = Timers()
    t.apply([StartTimer(TimerName.HOLD, 10, 1), StartTimer(TimerName.KEEPALIVE, 3, 1),
             StartTimer(TimerName.IDLE_HOLD, 3), SendKeepalive(conn=1)], now=100)
    assert t.next_deadline() == 103 and len(t) == 3
    assert t.running(TimerName.IDLE_HOLD) and t.deadline(TimerName.HOLD, 1) == 110
    assert t.expired(102) == []
    assert t.expired(103) == [(TimerName.KEEPALIVE, 1), (TimerName.IDLE_HOLD, None)]
    assert t.expired(103) == []
    t.apply([StopTimer(TimerName.HOLD, 1)], now=104)
    assert t.next_deadline() is None


# --- the state x event table (events on the running connection 1) -----------------------------

def _setup(state: str) -> Harness:
    if state == "idle":
        return Harness()
    if state == "connect":
        h = Harness(passive=False, connect_retry_jitter=False)
        h.ev(ManualStart())
        return h
    h = Harness()
    h.ev(ManualStart())
    if state == "active":
        return h
    h.ev(TcpConnectionConfirmed(conn=1))
    if state == "open sent":
        return h
    h.ev(BGPOpen(open=peer_open(), conn=1))
    if state == "open confirm":
        return h
    h.ev(KeepAliveMsg(conn=1))
    return h


_EV = {
    "manual start": ManualStart(), "manual stop": ManualStop(), "automatic stop": AutomaticStop(subcode=1),
    "connect retry": ConnectRetryTimerExpires(), "hold": HoldTimerExpires(conn=1),
    "keepalive timer": KeepaliveTimerExpires(conn=1), "delay open": DelayOpenTimerExpires(conn=1),
    "idle hold": IdleHoldTimerExpires(), "tcp acked": TcpCrAcked(conn=1),
    "tcp confirmed": TcpConnectionConfirmed(conn=1), "tcp fails": TcpConnectionFails(conn=1),
    "open": BGPOpen(open=peer_open(), conn=1), "header err": BGPHeaderErr(code=1, subcode=3, conn=1),
    "open err": BGPOpenMsgErr(subcode=0, conn=1), "dump": OpenCollisionDump(conn=1),
    "notification": NotifMsg(code=6, subcode=2, conn=1), "keepalive": KeepAliveMsg(conn=1),
    "update": UpdateMsg(conn=1), "update err": UpdateMsgErr(code=3, subcode=1, conn=1),
    "route refresh": RouteRefreshMsg(conn=1),
}
I, C, A, OS, OC, E = "idle", "connect", "active", "open sent", "open confirm", "established"
# (state, event) -> (next state, NOTIFICATION sent or None); unlisted pairs keep the state, send nothing
_TABLE = {
    (I, "manual start"): (A, None), (I, "tcp acked"): (I, (6, 5)), (I, "tcp confirmed"): (I, (6, 5)),
    (C, "manual stop"): (I, None), (C, "automatic stop"): (I, None), (C, "connect retry"): (C, None),
    (C, "tcp acked"): (OS, None), (C, "tcp confirmed"): (OS, None), (C, "tcp fails"): (A, None),
    (A, "manual stop"): (I, None), (A, "automatic stop"): (I, None),
    (A, "tcp acked"): (OS, None), (A, "tcp confirmed"): (OS, None),
    (OS, "manual stop"): (I, (6, 2)), (OS, "automatic stop"): (I, (6, 1)), (OS, "hold"): (I, (4, 0)),
    (OS, "tcp fails"): (A, None), (OS, "open"): (OC, None), (OS, "header err"): (I, (1, 3)),
    (OS, "open err"): (I, (2, 0)), (OS, "dump"): (I, (6, 7)), (OS, "notification"): (I, None),
    (OS, "keepalive"): (I, (5, 1)), (OS, "update"): (I, (5, 1)), (OS, "update err"): (I, (5, 1)),
    (OS, "route refresh"): (I, (5, 1)),
    (OC, "manual stop"): (I, (6, 2)), (OC, "automatic stop"): (I, (6, 1)), (OC, "hold"): (I, (4, 0)),
    (OC, "tcp fails"): (I, None), (OC, "open"): (I, (5, 2)), (OC, "header err"): (I, (1, 3)),
    (OC, "open err"): (I, (2, 0)), (OC, "dump"): (I, (6, 7)), (OC, "notification"): (I, None),
    (OC, "keepalive"): (E, None), (OC, "update"): (I, (5, 2)), (OC, "update err"): (I, (5, 2)),
    (OC, "route refresh"): (I, (5, 2)),
    (E, "manual stop"): (I, (6, 2)), (E, "automatic stop"): (I, (6, 1)), (E, "hold"): (I, (4, 0)),
    (E, "tcp fails"): (I, None), (E, "open"): (I, (5, 3)), (E, "header err"): (I, (1, 3)),
    (E, "open err"): (I, (2, 0)), (E, "dump"): (I, (6, 7)), (E, "notification"): (I, None),
    (E, "update err"): (I, (3, 1)),
}


@pytest.mark.parametrize("state", [I, C, A, OS, OC, E])
@pytest.mark.parametrize("event", list(_EV))
def test_state_event_table(state, event):
    h = _setup(state)
    assert str(h.state) == state
    acts = h.ev(_EV[event])
    new, notif = _TABLE.get((state, event), (state, None))
    assert str(h.state) == new
    assert notifs(acts) == ([notif] if notif else [])
    if notif:
        assert_notified_then_closed(acts, 1, *notif)
    if (event == "keepalive timer" and state in (OC, E)):
        assert of(acts, SendKeepalive)


# --- random events: invariants ------------------------------------------------------------------

OPENS = [peer_open(bgp_id=1), peer_open(bgp_id=3), peer_open(bgp_id=1, hold=0), peer_open(bgp_id=0),
         peer_open(bgp_id=3, hold=2), peer_open(version=3)]
CONNS = [None, 1, 2, 3]


@st.composite
def any_event(draw):
    kind = draw(st.sampled_from(EVENT_TYPES))
    conn = draw(st.sampled_from(CONNS))
    if kind is BGPOpen:
        return BGPOpen(open=draw(st.sampled_from(OPENS)), conn=conn)
    if kind is NotifMsg:
        return NotifMsg(code=draw(st.integers(1, 7)), subcode=draw(st.integers(0, 11)), conn=conn)
    if kind in (ManualStop, AutomaticStop):
        return kind(subcode=draw(st.integers(0, 10)))
    return kind(conn=conn)


@st.composite
def session_round(draw):
    """A connection that tries to go all the way to Established (and send an UPDATE);
    several rounds on different connections make collisions."""
    conn = draw(st.sampled_from([1, 2, 3]))
    opener = draw(st.sampled_from([TcpConnectionConfirmed, TcpCrAcked]))
    open_msg = draw(st.sampled_from(OPENS[:3]))
    target = draw(st.sampled_from([None, conn]))
    return [opener(conn=conn), BGPOpen(open=open_msg, conn=conn), KeepAliveMsg(conn=target),
            UpdateMsg(conn=target)]


# session rounds interleaved with arbitrary events, so that the deep states are explored too
scenarios = st.lists(st.one_of(session_round(), session_round(), any_event().map(lambda e: [e])),
                     min_size=1, max_size=25).map(lambda rounds: [e for r in rounds for e in r])
DELAYS = st.sampled_from([0.0, 0.0, 0.0, 0.0, 1.0, 10.0, 60.0, 300.0])


def check_invariants(fsm: Fsm, acts: list, passive: bool) -> None:
    running = fsm._timers
    for name, conn in running:
        if name == TimerName.KEEPALIVE:
            assert fsm.state in (State.OPEN_CONFIRM, State.ESTABLISHED) and conn == fsm.conn
    if fsm.state == State.IDLE:
        assert fsm.conn is None and fsm.second_conn is None
        assert not any(n in (TimerName.HOLD, TimerName.KEEPALIVE, TimerName.CONNECT_RETRY) for n, _ in running)
    if fsm.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
        assert fsm.conn is not None
    assert (fsm.negotiated is not None) == (fsm.state in (State.OPEN_CONFIRM, State.ESTABLISHED))
    if fsm.second_conn is not None:
        assert fsm.second_conn != fsm.conn
    notified = set()
    for a in acts:
        if isinstance(a, SendNotification):
            notified.add(a.conn)
        if isinstance(a, CloseConnection) and a.reason not in NO_NOTIFICATION_REASONS:
            assert a.conn in notified, f"error close of {a.conn} ({a.reason}) without NOTIFICATION: {acts}"
        if passive:
            assert not isinstance(a, Connect)


@hsettings(max_examples=400, deadline=None)
@given(evs=scenarios, data=st.data(), passive=st.booleans(), delay_open=st.sampled_from([0.0, 5.0]),
       coll_est=st.booleans(), seed=st.integers(0, 1000))
def test_random_events_keep_invariants(evs, data, passive, delay_open, coll_est, seed):
    h = Harness(seed=seed, passive=passive, delay_open_time=delay_open, collision_detect_established=coll_est)
    ups = downs = 0

    def check(acts):
        nonlocal ups, downs
        check_invariants(h.fsm, acts, passive)
        ups += len(of(acts, SessionUp))
        downs += len(of(acts, SessionDown))
        assert ups - downs == (1 if h.state == State.ESTABLISHED else 0)

    for ev in [ManualStart()] + evs:
        check(h.ev(ev))
        check(h.advance(data.draw(DELAYS)))
    # every running timer in the FSM is known to the driver's table, and vice versa
    assert {(n, c) for n, c in h.fsm._timers} == set(h.timers._deadlines)
