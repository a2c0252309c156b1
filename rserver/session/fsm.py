"""The BGP finite state machine (RFC 4271 §8), sans-IO.

:class:`Fsm` is a pure object: ``fsm.handle(event, now)`` takes one event and
returns the actions the caller must carry out, in order. It never touches a
socket, a loop or a clock of its own; ``now`` (seconds, any monotonic origin) is
passed with each event, or read from an injected ``clock`` callable. Timers are
actions too (:class:`~rserver.session.timers.StartTimer` / ``StopTimer``); the
driver feeds their expiry back (``fsm.timer_expired(name, conn, now)``, or keep
deadlines in a :class:`~rserver.session.timers.Timers` table).

One Fsm per configured peer. Connections are named by opaque ids (``conn``)
chosen by the driver and carried by every connection event and action. The Fsm
runs one connection (``fsm.conn``) through the states; a second connection to
the same peer is tracked "until an OPEN message is received" (RFC 4271 §8.2.2)
and then resolved per RFC 4271 §6.8 (``rserver.session.collision``); the loser
gets Cease 6/7. Events for a connection the Fsm does not know -- typically one
it already dropped, seed 001 line 42 -- are ignored with a :class:`Note`.

Choices (each also noted where it is implemented):

* Passive mode (``FsmConfig.passive``, the IXP default) never emits
  :class:`Connect`: the ConnectRetryTimer is not started at all, whereas RFC 4271
  §8.2.2 would start it and connect out when it expires.
* Unexpected messages always get a NOTIFICATION before the close, with the
  RFC 6608 §3 subcodes: 5/1 in OpenSent (anything but OPEN/NOTIFICATION), 5/2 in
  OpenConfirm (OPEN, UPDATE, ROUTE-REFRESH), 5/3 in Established (OPEN). In
  Connect/Active (a DelayOpen connection, nothing sent yet) it is 5/0
  "Unspecified Error"; RFC 4271 would close without NOTIFICATION.
  A NOTIFICATION received is never answered (RFC 4271 §6: the sender closes).
* In Connect, a failed outbound connection goes to Active with the
  ConnectRetryTimer still running (common practice, also the ExaBGP FSM page;
  RFC 4271 §8.2.2 goes to Idle), so a peer that is down is retried every
  ConnectRetryTime while we keep listening.
* SendNOTIFICATIONwithoutOPEN (§8.1.2) defaults to true.
* Peer oscillation damping (§8.1.1 DampPeerOscillations) is always on: after an
  error the Fsm stays Idle for an IdleHold time that doubles per failure (5 s ...
  300 s by default, jittered 0.75-1.0 as RFC 4271 §10 recommends) and resets once
  a session stayed Established for ``idle_hold_stable`` seconds; then it restarts
  itself (AutomaticStart, passive when configured). ManualStop stays down.
* If the running connection fails while a second one is being tracked, the Fsm
  continues with the second one (OpenSent) instead of dropping both; this is what
  makes a collision converge when the peer dumps our connection first.
* Hold timer restarts on every KEEPALIVE, UPDATE and ROUTE-REFRESH received.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Callable, ClassVar, Hashable, Optional, Union

import msgspec

from rserver.codec.constants import (
    CEASE_ADMIN_RESET, CEASE_ADMIN_SHUTDOWN, CEASE_COLLISION, CEASE_CONFIG_CHANGE,
    CEASE_CONNECTION_REJECTED, CEASE_HARD_RESET, CEASE_MAX_PREFIX, CEASE_OUT_OF_RESOURCES,
    CEASE_PEER_DECONFIGURED, ERR_CEASE, ERR_FSM, ERR_HOLD_TIMER, ERR_OPEN, FSM_UNEXPECTED_IN_ESTABLISHED,
    FSM_UNEXPECTED_IN_OPENCONFIRM, FSM_UNEXPECTED_IN_OPENSENT, FSM_UNSPECIFIED, MSG_KEEPALIVE, MSG_NAMES,
    MSG_NOTIFICATION, MSG_OPEN, MSG_ROUTE_REFRESH, MSG_UPDATE, OPEN_UNSUPPORTED_VERSION,
)

from .collision import ConnectionInfo, Direction, DroppedConnections, resolve_collision
from .negotiate import LocalSettings, Negotiated, OpenError, process_open
from .timers import (
    DEFAULT_CONNECT_RETRY, DEFAULT_OPEN_HOLD, JITTER_RANGE, PER_CONNECTION, PER_PEER, IdleHoldBackoff,
    StartTimer, StopTimer, TimerName, jittered,
)

__all__ = [
    "State", "Reason", "FsmConfig", "Fsm", "Counters", "NotificationRecord", "Direction",
    # events
    "Event", "ManualStart", "ManualStop", "AutomaticStart", "ManualStartPassive",
    "AutomaticStartPassive", "AutomaticStop", "ConnectRetryTimerExpires", "HoldTimerExpires",
    "KeepaliveTimerExpires", "DelayOpenTimerExpires", "IdleHoldTimerExpires", "TcpCrAcked",
    "TcpConnectionConfirmed", "TcpConnectionFails", "BGPOpen", "BGPHeaderErr", "BGPOpenMsgErr",
    "OpenCollisionDump", "NotifMsg", "KeepAliveMsg", "UpdateMsg", "UpdateMsgErr", "RouteRefreshMsg",
    "EVENT_TYPES",
    # actions
    "Action", "Connect", "CancelConnect", "SendOpen", "SendKeepalive", "SendNotification",
    "CloseConnection", "StartTimer", "StopTimer", "SessionUp", "SessionDown", "DeliverUpdate",
    "DeliverRouteRefresh", "StateChange", "Note",
]


# --- states and reasons ---------------------------------------------------------------------

class State(IntEnum):
    """RFC 4271 §8.2.2 states, numbered as the BGP MIB's bgpPeerState (RFC 4273) and
    BMP. ``str()``/``format()`` give the log form: "open confirm"."""

    IDLE = 1
    CONNECT = 2
    ACTIVE = 3
    OPEN_SENT = 4
    OPEN_CONFIRM = 5
    ESTABLISHED = 6

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")

    def __str__(self) -> str:
        return self.label

    def __format__(self, spec: str) -> str:
        return format(self.label, spec)


class Reason(StrEnum):
    """Why a transition happened; a fixed vocabulary for logs, counters and BMP."""

    ADMIN_START = "admin start"
    AUTO_START = "automatic start"
    IDLE_HOLD_EXPIRED = "idle hold timer expired"
    CONNECT_RETRY_EXPIRED = "connect retry timer expired"
    DELAY_OPEN_EXPIRED = "delay open timer expired"
    CONNECTION_UP = "connection established"
    OPEN_RECEIVED = "open received"
    KEEPALIVE_RECEIVED = "keepalive received"
    # the ways down
    ADMIN_DOWN = "admin down"                    # Cease 6/2
    ADMIN_RESET = "admin reset"                  # Cease 6/4
    PEER_DECONFIGURED = "peer de-configured"     # Cease 6/3
    CONFIG_CHANGE = "configuration change"       # Cease 6/6
    MAX_PREFIX = "max-prefix"                    # Cease 6/1
    OUT_OF_RESOURCES = "out of resources"        # Cease 6/8
    HARD_RESET = "hard reset"                    # Cease 6/9 (RFC 8538)
    AUTO_STOP = "automatic stop"                 # AutomaticStop with another Cease subcode
    COLLISION = "collision"                      # Cease 6/7, either way
    CONNECTION_REJECTED = "connection rejected"  # Cease 6/5: a connection we refused
    HOLD_TIMER_EXPIRED = "hold timer expired"    # 4/0 sent
    NOTIFICATION_RECEIVED = "notification received"
    NOTIFICATION_SENT = "notification sent"      # any other NOTIFICATION we sent
    OPEN_REJECTED = "open rejected"              # 2/x sent (the peer's OPEN was unacceptable)
    UNEXPECTED_MESSAGE = "unexpected message"    # 5/x sent (RFC 6608)
    HEADER_ERROR = "message header error"        # 1/x sent
    UPDATE_ERROR = "update error"                # 3/x sent (session reset, RFC 7606)
    CONNECTION_FAILED = "connection failed"      # our outbound connection attempt failed
    CONNECTION_LOST = "connection lost"          # an open TCP connection failed


_CEASE_REASONS = {
    CEASE_MAX_PREFIX: Reason.MAX_PREFIX, CEASE_ADMIN_SHUTDOWN: Reason.ADMIN_DOWN,
    CEASE_PEER_DECONFIGURED: Reason.PEER_DECONFIGURED, CEASE_ADMIN_RESET: Reason.ADMIN_RESET,
    CEASE_CONNECTION_REJECTED: Reason.CONNECTION_REJECTED, CEASE_CONFIG_CHANGE: Reason.CONFIG_CHANGE,
    CEASE_COLLISION: Reason.COLLISION, CEASE_OUT_OF_RESOURCES: Reason.OUT_OF_RESOURCES,
    CEASE_HARD_RESET: Reason.HARD_RESET,
}

#: closes that need no NOTIFICATION from us: the peer is gone, or it notified us
NO_NOTIFICATION_REASONS = frozenset({Reason.CONNECTION_LOST, Reason.CONNECTION_FAILED,
                                     Reason.NOTIFICATION_RECEIVED})


# --- events (RFC 4271 §8.1) ------------------------------------------------------------------

class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of all events. ``number`` is the RFC 4271 §8.1 event number (BMP peer
    down reason 2 carries it; 0 for events RFC 4271 does not number), ``label``
    the log form ("manual start"). ``conn`` names the connection (None: the
    running one)."""

    number: ClassVar[int] = 0
    label: ClassVar[str] = "event"
    conn: Optional[Any] = None

    def __str__(self) -> str:
        return self.label


class ManualStart(Event, frozen=True):
    number: ClassVar[int] = 1
    label: ClassVar[str] = "manual start"


class ManualStop(Event, frozen=True):
    """Operator stop: Cease ``subcode`` (6/2 admin shutdown by default; 6/3
    de-configured, 6/4 reset, 6/6 config change, 6/1 max-prefix ...) with ``data``
    (e.g. an RFC 9003 shutdown communication). The peer stays down until the next
    ManualStart."""

    number: ClassVar[int] = 2
    label: ClassVar[str] = "manual stop"
    subcode: int = CEASE_ADMIN_SHUTDOWN
    data: bytes = b""


class AutomaticStart(Event, frozen=True):
    number: ClassVar[int] = 3
    label: ClassVar[str] = "automatic start"


class ManualStartPassive(Event, frozen=True):
    number: ClassVar[int] = 4
    label: ClassVar[str] = "manual start with passive tcp establishment"


class AutomaticStartPassive(Event, frozen=True):
    number: ClassVar[int] = 5
    label: ClassVar[str] = "automatic start with passive tcp establishment"


class AutomaticStop(Event, frozen=True):
    """System stop (e.g. max-prefix 6/1): like ManualStop, but the Fsm restarts
    itself after the idle-hold back-off when ``FsmConfig.auto_restart``."""

    number: ClassVar[int] = 8
    label: ClassVar[str] = "automatic stop"
    subcode: int = CEASE_MAX_PREFIX
    data: bytes = b""


class ConnectRetryTimerExpires(Event, frozen=True):
    number: ClassVar[int] = 9
    label: ClassVar[str] = "connect retry timer expires"


class HoldTimerExpires(Event, frozen=True):
    number: ClassVar[int] = 10
    label: ClassVar[str] = "hold timer expires"


class KeepaliveTimerExpires(Event, frozen=True):
    number: ClassVar[int] = 11
    label: ClassVar[str] = "keepalive timer expires"


class DelayOpenTimerExpires(Event, frozen=True):
    number: ClassVar[int] = 12
    label: ClassVar[str] = "delay open timer expires"


class IdleHoldTimerExpires(Event, frozen=True):
    number: ClassVar[int] = 13
    label: ClassVar[str] = "idle hold timer expires"


class TcpCrAcked(Event, frozen=True):
    """Our outbound connection ``conn`` is up (Event 16)."""

    number: ClassVar[int] = 16
    label: ClassVar[str] = "tcp connection acked"
    direction: ClassVar[Direction] = Direction.OUTBOUND


class TcpConnectionConfirmed(Event, frozen=True):
    """The peer connected to us; the connection is ``conn`` (Event 17)."""

    number: ClassVar[int] = 17
    label: ClassVar[str] = "tcp connection confirmed"
    direction: ClassVar[Direction] = Direction.INBOUND


class TcpConnectionFails(Event, frozen=True):
    """Connection ``conn`` failed or was closed by the peer, or (with a ``conn``
    the Fsm never saw) our outbound attempt failed (Event 18)."""

    number: ClassVar[int] = 18
    label: ClassVar[str] = "tcp connection fails"


class BGPOpen(Event, frozen=True):
    """A decoded OPEN (``rserver.codec.messages.Open``) arrived (Events 19/20)."""

    number: ClassVar[int] = 19
    label: ClassVar[str] = "open message"
    open: Any = None


class BGPHeaderErr(Event, frozen=True):
    """A message header was bad; (code, subcode, data) is the NOTIFICATION to send."""

    number: ClassVar[int] = 21
    label: ClassVar[str] = "bgp header error"
    code: int = 1
    subcode: int = 0
    data: bytes = b""


class BGPOpenMsgErr(Event, frozen=True):
    """An OPEN could not be decoded (e.g. malformed capability, 2/0)."""

    number: ClassVar[int] = 22
    label: ClassVar[str] = "open message error"
    code: int = ERR_OPEN
    subcode: int = 0
    data: bytes = b""


class OpenCollisionDump(Event, frozen=True):
    """Drop connection ``conn`` as the loser of a collision (Cease 6/7)."""

    number: ClassVar[int] = 23
    label: ClassVar[str] = "open collision dump"


class NotifMsg(Event, frozen=True):
    """A NOTIFICATION arrived (Event 25; 2/1 is Event 24, NotifMsgVerErr)."""

    number: ClassVar[int] = 25
    label: ClassVar[str] = "notification message"
    code: int = 0
    subcode: int = 0
    data: bytes = b""


class KeepAliveMsg(Event, frozen=True):
    number: ClassVar[int] = 26
    label: ClassVar[str] = "keepalive message"


class UpdateMsg(Event, frozen=True):
    """``count`` UPDATE messages arrived (a decoded batch is ``payload``)."""

    number: ClassVar[int] = 27
    label: ClassVar[str] = "update message"
    payload: Any = None
    count: int = 1


class UpdateMsgErr(Event, frozen=True):
    """An UPDATE needs a session reset (RFC 7606 §2): send (code, subcode, data)."""

    number: ClassVar[int] = 28
    label: ClassVar[str] = "update message error"
    code: int = 3
    subcode: int = 1
    data: bytes = b""


class RouteRefreshMsg(Event, frozen=True):
    """A ROUTE-REFRESH (RFC 2918, RFC 7313) arrived; RFC 4271 gives it no number."""

    label: ClassVar[str] = "route refresh message"
    payload: Any = None


# RFC 4271 §8.1 names, for readers coming from the RFC
ManualStart_with_PassiveTcpEstablishment = ManualStartPassive
AutomaticStart_with_PassiveTcpEstablishment = AutomaticStartPassive
ConnectRetryTimer_Expires = ConnectRetryTimerExpires
HoldTimer_Expires = HoldTimerExpires
KeepaliveTimer_Expires = KeepaliveTimerExpires
DelayOpenTimer_Expires = DelayOpenTimerExpires
IdleHoldTimer_Expires = IdleHoldTimerExpires
Tcp_CR_Acked = TcpCrAcked

EVENT_TYPES: tuple[type[Event], ...] = (
    ManualStart, ManualStop, AutomaticStart, ManualStartPassive, AutomaticStartPassive,
    AutomaticStop, ConnectRetryTimerExpires, HoldTimerExpires, KeepaliveTimerExpires,
    DelayOpenTimerExpires, IdleHoldTimerExpires, TcpCrAcked, TcpConnectionConfirmed,
    TcpConnectionFails, BGPOpen, BGPHeaderErr, BGPOpenMsgErr, OpenCollisionDump, NotifMsg,
    KeepAliveMsg, UpdateMsg, UpdateMsgErr, RouteRefreshMsg,
)

_TIMER_EVENTS: dict[type[Event], TimerName] = {
    ConnectRetryTimerExpires: TimerName.CONNECT_RETRY, HoldTimerExpires: TimerName.HOLD,
    KeepaliveTimerExpires: TimerName.KEEPALIVE, DelayOpenTimerExpires: TimerName.DELAY_OPEN,
    IdleHoldTimerExpires: TimerName.IDLE_HOLD,
}
_EVENT_FOR_TIMER = {v: k for k, v in _TIMER_EVENTS.items()}
_PEER_TIMERS = PER_PEER
_CONN_TIMERS = PER_CONNECTION
_ADMIN_EVENTS = (ManualStart, ManualStartPassive, AutomaticStart, AutomaticStartPassive,
                 ManualStop, AutomaticStop)
_NEW_CONN_EVENTS = (TcpCrAcked, TcpConnectionConfirmed)
_RECEIVED_TYPE = {BGPOpen: MSG_OPEN, BGPOpenMsgErr: MSG_OPEN, KeepAliveMsg: MSG_KEEPALIVE,
                  UpdateMsg: MSG_UPDATE, UpdateMsgErr: MSG_UPDATE, NotifMsg: MSG_NOTIFICATION,
                  RouteRefreshMsg: MSG_ROUTE_REFRESH}


# --- actions ----------------------------------------------------------------------------------

class Action(msgspec.Struct, frozen=True, kw_only=True):
    """Base of all actions; ``conn`` is the connection it applies to."""

    conn: Optional[Any] = None


class Connect(Action, frozen=True):
    """Open an outbound TCP connection to the peer; report it with TcpCrAcked or
    TcpConnectionFails, using a connection id of your choice."""


class CancelConnect(Action, frozen=True):
    """Abandon the outbound connection attempt in progress, if any."""


class SendOpen(Action, frozen=True):
    """Send our OPEN (``negotiate.build_open(settings)``) on ``conn``."""


class SendKeepalive(Action, frozen=True):
    pass


class SendNotification(Action, frozen=True):
    code: int
    subcode: int = 0
    data: bytes = b""


class CloseConnection(Action, frozen=True):
    """Close ``conn`` (after flushing what was queued on it, e.g. a NOTIFICATION)."""

    reason: Reason


class SessionUp(Action, frozen=True):
    negotiated: Negotiated
    direction: Optional[Direction] = None


class SessionDown(Action, frozen=True):
    reason: Reason
    notification_sent: Optional["NotificationRecord"] = None
    notification_received: Optional["NotificationRecord"] = None


class DeliverUpdate(Action, frozen=True):
    payload: Any = None
    count: int = 1


class DeliverRouteRefresh(Action, frozen=True):
    payload: Any = None


class StateChange(Action, frozen=True):
    old: State
    new: State
    reason: Reason

    def __str__(self) -> str:
        return f"fsm transition {self.old} -> {self.new} ({self.reason})"


class Note(Action, frozen=True):
    """Something worth logging that is not a state change; ``level`` is "debug",
    "info" or "warning"."""

    level: str
    text: str


class NotificationRecord(msgspec.Struct, frozen=True):
    code: int
    subcode: int
    data: bytes
    at: float


# --- configuration and counters -----------------------------------------------------------------

class FsmConfig(msgspec.Struct, frozen=True, kw_only=True):
    """FSM attributes (RFC 4271 §8.1.1, §8.1.2) and timer values (seconds).

    ``delay_open_time`` 0 disables DelayOpen. ``collision_detect_established`` is
    CollisionDetectEstablishedState. ``admin_down`` starts the peer shut down
    (AutomaticStart is then ignored until a ManualStart).
    """

    passive: bool = True
    connect_retry_time: float = DEFAULT_CONNECT_RETRY
    connect_retry_jitter: bool = True
    open_hold_time: float = DEFAULT_OPEN_HOLD
    delay_open_time: float = 0.0
    keepalive_jitter: bool = False
    idle_hold_time: float = 5.0
    idle_hold_max: float = 300.0
    idle_hold_stable: float = 300.0
    jitter: tuple[float, float] = JITTER_RANGE
    auto_restart: bool = True
    collision_detect_established: bool = False
    send_notification_without_open: bool = True
    admin_down: bool = False


@dataclass
class Counters:
    """Per-session statistics (message names as in ``constants.MSG_NAMES``)."""

    sent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MSG_NAMES.values(), 0))
    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MSG_NAMES.values(), 0))
    established_count: int = 0
    established_since: Optional[float] = None
    last_transition_time: Optional[float] = None
    last_transition_reason: Optional[Reason] = None
    last_down_reason: Optional[Reason] = None
    last_notification_sent: Optional[NotificationRecord] = None
    last_notification_received: Optional[NotificationRecord] = None
    connect_retry_counter: int = 0


class _Tracked(msgspec.Struct):
    """A second connection, tracked until its OPEN arrives (RFC 4271 §8.2.2)."""

    conn: Any
    direction: Direction


# --- the machine ------------------------------------------------------------------------------

class Fsm:
    """One peer's BGP FSM. See the module docstring.

    ``settings`` describe our OPEN and what we accept (rserver.session.negotiate);
    ``rng`` drives the jitter (inject a seeded ``random.Random`` in tests);
    ``clock`` is used when ``handle`` is called without ``now``.
    """

    def __init__(self, settings: LocalSettings, config: FsmConfig = FsmConfig(), *,
                 rng: Optional[random.Random] = None,
                 clock: Optional[Callable[[], float]] = None):
        self.settings = settings
        self.config = config
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.state = State.IDLE
        self.conn: Optional[Hashable] = None          # the connection being run
        self.direction: Optional[Direction] = None
        self.negotiated: Optional[Negotiated] = None
        self.peer_open: Any = None
        self.admin_up = not config.admin_down
        self.counters = Counters()
        self.backoff = IdleHoldBackoff(config.idle_hold_time, config.idle_hold_max,
                                       config.idle_hold_stable, self.rng, config.jitter)
        self.dropped = DroppedConnections()
        self._second: Optional[_Tracked] = None
        self._connecting = False                     # an outbound attempt is in flight
        self._passive = config.passive
        self._opened = False                          # our OPEN went out on self.conn
        self._timers: set[tuple[TimerName, Optional[Hashable]]] = set()
        self._session_sent: Optional[NotificationRecord] = None
        self._session_received: Optional[NotificationRecord] = None
        self._out: list[Action] = []
        self._now = 0.0

    # -- public API ---------------------------------------------------------------------------

    @property
    def second_conn(self) -> Optional[Hashable]:
        """The connection tracked for collision detection, if any."""
        return self._second.conn if self._second else None

    def timer_running(self, name: TimerName, conn: Optional[Hashable] = None) -> bool:
        if name in _CONN_TIMERS and conn is None:
            conn = self.conn
        return (name, conn) in self._timers

    def handle(self, event: Event, now: Optional[float] = None) -> list[Action]:
        """Process one event at time ``now``; return the actions to carry out."""
        if now is None:
            if self.clock is None:
                raise ValueError("pass now= or give the Fsm a clock")
            now = self.clock()
        self._now = now
        self._out = []
        self._dispatch(event)
        return self._out

    def timer_expired(self, name: TimerName, conn: Optional[Hashable] = None,
                      now: Optional[float] = None) -> list[Action]:
        """Feed the expiry of a timer started by a StartTimer action."""
        return self.handle(_EVENT_FOR_TIMER[TimerName(name)](conn=conn), now)

    def note_sent(self, msg_type: int, now: Optional[float] = None, count: int = 1) -> list[Action]:
        """Tell the Fsm that the driver sent ``count`` messages of ``msg_type``
        itself (UPDATEs, ROUTE-REFRESHes). Sending a KEEPALIVE or UPDATE restarts
        the KeepaliveTimer (RFC 4271 §8.2.2, Established)."""
        if now is None:
            now = self.clock() if self.clock else self._now
        self._now = now
        self._out = []
        name = MSG_NAMES.get(msg_type, str(msg_type))
        self.counters.sent[name] = self.counters.sent.get(name, 0) + count
        if (msg_type in (MSG_UPDATE, MSG_KEEPALIVE) and self.state == State.ESTABLISHED
                and self.negotiated is not None and self.negotiated.hold_time):
            self._start_keepalive()
        return self._out

    def status(self) -> dict[str, Any]:
        """A snapshot for "show neighbor"."""
        c = self.counters
        return {
            "state": str(self.state), "conn": self.conn,
            "direction": str(self.direction) if self.direction else None,
            "second_conn": self.second_conn, "admin_up": self.admin_up,
            "passive": self._passive, "negotiated": self.negotiated,
            "sent": dict(c.sent), "received": dict(c.received),
            "established_count": c.established_count, "established_since": c.established_since,
            "last_transition_time": c.last_transition_time,
            "last_transition_reason": str(c.last_transition_reason) if c.last_transition_reason else None,
            "last_down_reason": str(c.last_down_reason) if c.last_down_reason else None,
            "last_notification_sent": c.last_notification_sent,
            "last_notification_received": c.last_notification_received,
            "connect_retry_counter": c.connect_retry_counter,
            "idle_hold_next": self.backoff.current,
        }

    # -- small helpers ---------------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _note(self, level: str, text: str, conn: Optional[Hashable] = None) -> None:
        self._emit(Note(level=level, text=text, conn=conn))

    def _start_timer(self, name: TimerName, seconds: float, conn: Optional[Hashable] = None) -> None:
        self._timers.add((name, conn))
        self._emit(StartTimer(name, float(seconds), conn))

    def _stop_timer(self, name: TimerName, conn: Optional[Hashable] = None) -> None:
        if (name, conn) in self._timers:
            self._timers.discard((name, conn))
            self._emit(StopTimer(name, conn))

    def _stop_conn_timers(self, conn: Optional[Hashable]) -> None:
        for name in _CONN_TIMERS:
            self._stop_timer(name, conn)

    def _jit(self, seconds: float) -> float:
        return jittered(seconds, self.rng, *self.config.jitter)

    def _start_connect_retry(self) -> None:
        t = self.config.connect_retry_time
        self._start_timer(TimerName.CONNECT_RETRY, self._jit(t) if self.config.connect_retry_jitter else t)

    def _start_keepalive(self) -> None:
        assert self.negotiated is not None
        t = self.negotiated.keepalive_time
        self._start_timer(TimerName.KEEPALIVE, self._jit(t) if self.config.keepalive_jitter else t, self.conn)

    def _restart_hold(self) -> None:
        if self.negotiated is not None and self.negotiated.hold_time:
            self._start_timer(TimerName.HOLD, self.negotiated.hold_time, self.conn)

    def _count_sent(self, msg_type: int) -> None:
        name = MSG_NAMES[msg_type]
        self.counters.sent[name] += 1

    def _send_open(self, conn: Hashable) -> None:
        self._count_sent(MSG_OPEN)
        self._emit(SendOpen(conn=conn))

    def _send_keepalive(self, conn: Hashable) -> None:
        self._count_sent(MSG_KEEPALIVE)
        self._emit(SendKeepalive(conn=conn))

    def _send_notification(self, conn: Hashable, code: int, subcode: int, data: bytes = b"") -> None:
        self._count_sent(MSG_NOTIFICATION)
        rec = NotificationRecord(code, subcode, bytes(data), self._now)
        self.counters.last_notification_sent = rec
        if conn == self.conn:
            self._session_sent = rec
        self._emit(SendNotification(code=code, subcode=subcode, data=bytes(data), conn=conn))

    def _close(self, conn: Hashable, reason: Reason, why: str = "") -> None:
        self._emit(CloseConnection(conn=conn, reason=reason))
        self.dropped.add(conn, why or str(reason))

    def _may_notify(self, opened: bool) -> bool:
        """RFC 4271 §8.1.2 SendNOTIFICATIONwithoutOPEN."""
        return opened or self.config.send_notification_without_open

    def _set_state(self, new: State, reason: Reason) -> None:
        old = self.state
        if old == new:
            return
        self.state = new
        c = self.counters
        c.last_transition_time = self._now
        c.last_transition_reason = reason
        self._emit(StateChange(old=old, new=new, reason=reason, conn=self.conn))
        if old == State.ESTABLISHED:
            c.last_down_reason = reason
            c.established_since = None
            self.backoff.session_down(self._now)
            self._emit(SessionDown(reason=reason, notification_sent=self._session_sent,
                                   notification_received=self._session_received))
        if new == State.ESTABLISHED:
            self._session_sent = self._session_received = None
            c.established_count += 1
            c.established_since = self._now
            self.backoff.session_up(self._now)

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self, ev: Event) -> None:
        kind = type(ev)
        msg_type = _RECEIVED_TYPE.get(kind)
        if msg_type is not None:
            name = MSG_NAMES[msg_type]
            self.counters.received[name] += getattr(ev, "count", 1)
            if kind is NotifMsg:
                self.counters.last_notification_received = NotificationRecord(
                    ev.code, ev.subcode, bytes(ev.data), self._now)

        if kind in _TIMER_EVENTS:
            name = _TIMER_EVENTS[kind]
            conn = ev.conn
            if name in _CONN_TIMERS and conn is None:
                conn = self.conn
            if (name, conn) not in self._timers:
                self._note("debug", f"{ev} for a timer that is not running (stale), ignoring", conn)
                return
            self._timers.discard((name, conn))
            if name in _CONN_TIMERS and self._second is not None and conn == self._second.conn:
                self._second_event(ev)
            elif name in _PEER_TIMERS or conn == self.conn:
                self._main_event(ev)
            else:  # pragma: no cover - timers of closed connections are stopped on close
                self._note("debug", f"{ev} for connection {conn} that is gone, ignoring", conn)
            return

        if isinstance(ev, _ADMIN_EVENTS):
            self._admin_event(ev)
            return

        conn = ev.conn if ev.conn is not None else self.conn
        if conn is not None and conn == self.conn:
            self._main_event(ev)
        elif conn is not None and self._second is not None and conn == self._second.conn:
            self._second_event(ev)
        elif isinstance(ev, _NEW_CONN_EVENTS) and conn is not None:
            self._new_connection(ev, conn)
        elif isinstance(ev, TcpConnectionFails) and self._connecting:
            self._outbound_failed(ev)
        else:
            self._unknown_connection(ev, conn)

    def _unknown_connection(self, ev: Event, conn: Optional[Hashable]) -> None:
        if conn is None:
            self._note("debug", f"{ev} with no connection in state {self.state}, ignoring")
            return
        why = self.dropped.why(conn)
        level = "warning" if isinstance(ev, NotifMsg) else "debug"
        if why is not None:
            self._note(level, f"{ev} for already-dropped connection {conn} ({why}), ignoring", conn)
        else:
            self._note(level, f"{ev} for unknown connection {conn}, ignoring", conn)

    # -- admin events -----------------------------------------------------------------------------

    def _admin_event(self, ev: Event) -> None:
        manual = isinstance(ev, (ManualStart, ManualStartPassive, ManualStop))
        if isinstance(ev, (ManualStop, AutomaticStop)):
            self._stop(ev, manual)
            return
        if self.state != State.IDLE:
            # seed 000: "unexpected admin fsm event manual start, ignoring" (warning)
            self._note("warning" if manual else "debug", f"unexpected admin fsm event {ev}, ignoring")
            return
        if manual:
            self.admin_up = True
            self.backoff.reset()
        elif not self.admin_up:
            self._note("info", f"{ev} ignored: the peer is administratively down")
            return
        passive = self.config.passive or isinstance(ev, (ManualStartPassive, AutomaticStartPassive))
        self._start(passive, Reason.ADMIN_START if manual else Reason.AUTO_START)

    def _start(self, passive: bool, reason: Reason) -> None:
        """Idle + Start (RFC 4271 §8.2.2 Idle state, Events 1, 3, 4, 5)."""
        self._stop_timer(TimerName.IDLE_HOLD)
        self._passive = passive
        self.counters.connect_retry_counter = 0
        if passive:
            # Passive mode never connects out (IXP default). RFC 4271 starts the
            # ConnectRetryTimer here and connects when it expires; we do not.
            self._set_state(State.ACTIVE, reason)
        else:
            self._start_connect_retry()
            self._connecting = True
            self._emit(Connect())
            self._set_state(State.CONNECT, reason)

    def _stop(self, ev: Union[ManualStop, AutomaticStop], manual: bool) -> None:
        reason = _CEASE_REASONS.get(ev.subcode, Reason.AUTO_STOP if not manual else Reason.ADMIN_DOWN)
        if manual:
            self.admin_up = False
        if self.state == State.IDLE:
            if manual:
                self._stop_timer(TimerName.IDLE_HOLD)   # no automatic restart any more
            self._note("debug", f"{ev} in state idle: nothing to stop")
            return
        if self._second is not None:
            sec, self._second = self._second, None
            self._send_notification(sec.conn, ERR_CEASE, ev.subcode, ev.data)
            self._stop_conn_timers(sec.conn)
            self._close(sec.conn, reason)
        notify = (ERR_CEASE, ev.subcode, ev.data) if self.conn is not None else None
        self._release(reason, notify)
        if manual:
            self.counters.connect_retry_counter = 0
        else:
            self.counters.connect_retry_counter += 1
        self._set_state(State.IDLE, reason)
        if not manual:
            self._schedule_restart()

    # -- common procedures -----------------------------------------------------------------------

    def _release(self, reason: Reason, notify: Optional[tuple[int, int, bytes]]) -> None:
        """Send ``notify`` on the running connection (if any), close it, stop timers:
        RFC 4271's "releases all BGP resources ... drops the TCP connection"."""
        conn = self.conn
        if conn is not None:
            if notify is not None and self._may_notify(self._opened):
                self._send_notification(conn, *notify)
            self._stop_conn_timers(conn)
            self._close(conn, reason)
        self._stop_timer(TimerName.CONNECT_RETRY)
        if self._connecting:
            self._connecting = False
            self._emit(CancelConnect())
        self.conn = None
        self.direction = None
        self.negotiated = None
        self.peer_open = None
        self._opened = False

    def _schedule_restart(self) -> None:
        """Peer oscillation damping (RFC 4271 §8.1.1): restart after the back-off."""
        if self.admin_up and self.config.auto_restart:
            self._start_timer(TimerName.IDLE_HOLD, self.backoff.next_delay())

    def _fail(self, reason: Reason, notify: Optional[tuple[int, int, bytes]] = None,
              count: bool = True) -> None:
        """The running connection is finished because of an error (or a collision)."""
        if self._second is not None:
            self._drop_main_keep_second(reason, notify)
            return
        self._release(reason, notify)
        if count:
            self.counters.connect_retry_counter += 1
        self._set_state(State.IDLE, reason)
        self._schedule_restart()

    def _drop_main_keep_second(self, reason: Reason, notify: Optional[tuple[int, int, bytes]]) -> None:
        """Close the running connection and carry on with the tracked one (OpenSent)."""
        old = self.conn
        if old is not None:
            if notify is not None and self._may_notify(self._opened):
                self._send_notification(old, *notify)
            self._stop_conn_timers(old)
            self._close(old, reason)
        sec, self._second = self._second, None
        assert sec is not None
        self._stop_timer(TimerName.CONNECT_RETRY)
        self.conn, self.direction = sec.conn, sec.direction
        self.negotiated = None
        self.peer_open = None
        self._opened = True
        self._note("info", f"connection {old} closed ({reason}); continuing with the {sec.direction} "
                           f"connection {sec.conn} that was tracked for collision detection", sec.conn)
        self._set_state(State.OPEN_SENT, reason)

    def _unexpected(self, ev: Event) -> None:
        """RFC 6608 §3: a message that is not allowed in the current state."""
        sub = {State.OPEN_SENT: FSM_UNEXPECTED_IN_OPENSENT,
               State.OPEN_CONFIRM: FSM_UNEXPECTED_IN_OPENCONFIRM,
               State.ESTABLISHED: FSM_UNEXPECTED_IN_ESTABLISHED}.get(self.state, FSM_UNSPECIFIED)
        self._note("warning", f"unexpected {ev} in state {self.state}: sending FSM error 5/{sub}", self.conn)
        self._fail(Reason.UNEXPECTED_MESSAGE, (ERR_FSM, sub, b""))

    # -- connections ----------------------------------------------------------------------------

    def _new_connection(self, ev: Event, conn: Hashable) -> None:
        direction = ev.direction  # type: ignore[attr-defined]
        if isinstance(ev, TcpCrAcked):
            self._connecting = False
        self.dropped.discard(conn)
        if self.state == State.IDLE:
            # RFC 4271 §8.2.2: Idle "refuses all incoming BGP connections"; RFC 4486 §4:
            # a connection we accepted and refuse SHOULD get Cease 6/5.
            why = "administratively down" if not self.admin_up else "idle (restart back-off)"
            self._note("info", f"refusing {direction} connection {conn}: peer is {why}", conn)
            if self._may_notify(False):
                self._send_notification(conn, ERR_CEASE, CEASE_CONNECTION_REJECTED)
            self._close(conn, Reason.CONNECTION_REJECTED)
            return
        if self.conn is None:      # Connect or Active, no connection yet
            self.conn, self.direction = conn, direction
            self._stop_timer(TimerName.CONNECT_RETRY)
            if self.config.delay_open_time > 0:
                self._opened = False
                self._start_timer(TimerName.DELAY_OPEN, self.config.delay_open_time, conn)
                self._note("debug", f"{direction} connection {conn} up; delaying our OPEN", conn)
                return
            self._opened = True
            self._send_open(conn)
            self._start_timer(TimerName.HOLD, self.config.open_hold_time, conn)
            self._set_state(State.OPEN_SENT, Reason.CONNECTION_UP)
            return
        if self._second is None:
            # RFC 4271 §8.2.2: "a second TCP session may be in progress. This second TCP
            # session is tracked per Call Collision processing (Section 6.8) until an
            # OPEN message is received."
            self._second = _Tracked(conn, direction)
            self._note("info", f"second connection {conn} ({direction}) while {self.direction} "
                               f"connection {self.conn} is {self.state}: tracking it until its OPEN "
                               f"(collision detection)", conn)
            self._send_open(conn)
            self._start_timer(TimerName.HOLD, self.config.open_hold_time, conn)
            return
        self._note("warning", f"third connection {conn} ({direction}) to the peer: rejecting it", conn)
        self._send_notification(conn, ERR_CEASE, CEASE_CONNECTION_REJECTED)
        self._close(conn, Reason.CONNECTION_REJECTED)

    def _outbound_failed(self, ev: TcpConnectionFails) -> None:
        self._connecting = False
        if ev.conn is not None:
            self.dropped.add(ev.conn, "outbound connection attempt failed")
        if self.state == State.CONNECT and self.conn is None:
            # RFC 4271 goes to Idle here; we go to Active and keep the ConnectRetryTimer
            # running, so the peer is retried every ConnectRetryTime (see module docstring).
            if not self.timer_running(TimerName.CONNECT_RETRY):
                self._start_connect_retry()
            self._set_state(State.ACTIVE, Reason.CONNECTION_FAILED)
        else:
            self._note("debug", f"outbound connection attempt failed in state {self.state}")

    # -- events on the running connection --------------------------------------------------------

    def _main_event(self, ev: Event) -> None:  # noqa: C901 - one place for the whole table
        st = self.state
        if isinstance(ev, ConnectRetryTimerExpires):
            if st in (State.CONNECT, State.ACTIVE) and self.conn is None:
                if self._connecting:
                    self._emit(CancelConnect())
                self._start_connect_retry()
                self._connecting = True
                self._emit(Connect())
                self._set_state(State.CONNECT, Reason.CONNECT_RETRY_EXPIRED)
            else:
                self._note("debug", f"{ev} in state {st}, ignoring")
        elif isinstance(ev, IdleHoldTimerExpires):
            if st == State.IDLE and self.admin_up:
                self._start(self._passive or self.config.passive, Reason.IDLE_HOLD_EXPIRED)
            else:
                self._note("debug", f"{ev} in state {st} (admin up: {self.admin_up}), ignoring")
        elif isinstance(ev, DelayOpenTimerExpires):
            if st in (State.CONNECT, State.ACTIVE):
                self._opened = True
                self._send_open(self.conn)
                self._start_timer(TimerName.HOLD, self.config.open_hold_time, self.conn)
                self._set_state(State.OPEN_SENT, Reason.DELAY_OPEN_EXPIRED)
        elif isinstance(ev, HoldTimerExpires):
            self._note("warning", f"hold timer expired in state {st}", self.conn)
            self._fail(Reason.HOLD_TIMER_EXPIRED, (ERR_HOLD_TIMER, 0, b""))
        elif isinstance(ev, KeepaliveTimerExpires):
            if st in (State.OPEN_CONFIRM, State.ESTABLISHED):
                self._send_keepalive(self.conn)
                self._start_keepalive()
        elif isinstance(ev, _NEW_CONN_EVENTS):
            self._note("debug", f"{ev} for connection {self.conn} that is already running, ignoring")
        elif isinstance(ev, TcpConnectionFails):
            self._main_tcp_fails()
        elif isinstance(ev, OpenCollisionDump):
            self._fail(Reason.COLLISION, (ERR_CEASE, CEASE_COLLISION, b""))
        elif isinstance(ev, NotifMsg):
            self._session_received = self.counters.last_notification_received
            # NotifMsgVerErr (Event 24, 2/1) does not count against the peer (RFC 4271 §8.2.2)
            ver_err = (ev.code, ev.subcode) == (ERR_OPEN, OPEN_UNSUPPORTED_VERSION)
            self._note("info", f"notification received: {ev.code}/{ev.subcode}", self.conn)
            if ev.code == ERR_CEASE and ev.subcode in (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET):
                # the peer's operator closed the session on purpose (RFC 4486 §4): not an
                # oscillation to damp, so the back-off starts over (one error wait time)
                self.backoff.reset()
            self._fail(Reason.NOTIFICATION_RECEIVED, None, count=not ver_err)
        elif isinstance(ev, BGPHeaderErr):
            self._fail(Reason.HEADER_ERROR, (ev.code, ev.subcode, ev.data))
        elif isinstance(ev, BGPOpenMsgErr):
            self._fail(Reason.OPEN_REJECTED, (ev.code, ev.subcode, ev.data))
        elif isinstance(ev, BGPOpen):
            if st in (State.CONNECT, State.ACTIVE, State.OPEN_SENT):
                self._main_open(ev)
            else:
                self._unexpected(ev)       # 5/2 in OpenConfirm, 5/3 in Established
        elif isinstance(ev, KeepAliveMsg):
            if st == State.OPEN_CONFIRM:
                self._restart_hold()
                if self._connecting and not self.config.collision_detect_established:
                    # an outbound connection completing now would only be dumped with 6/7
                    self._connecting = False
                    self._emit(CancelConnect())
                self._set_state(State.ESTABLISHED, Reason.KEEPALIVE_RECEIVED)
                assert self.negotiated is not None
                self._emit(SessionUp(negotiated=self.negotiated, direction=self.direction, conn=self.conn))
            elif st == State.ESTABLISHED:
                self._restart_hold()
            else:
                self._unexpected(ev)
        elif isinstance(ev, UpdateMsg):
            if st == State.ESTABLISHED:
                self._restart_hold()
                self._emit(DeliverUpdate(payload=ev.payload, count=ev.count, conn=self.conn))
            else:
                self._unexpected(ev)
        elif isinstance(ev, RouteRefreshMsg):
            if st == State.ESTABLISHED:
                self._restart_hold()
                if self.negotiated is not None and self.negotiated.route_refresh:
                    self._emit(DeliverRouteRefresh(payload=ev.payload, conn=self.conn))
                else:
                    # RFC 2918 §4 has a speaker ignore a ROUTE-REFRESH it did not negotiate
                    self._note("warning", "route refresh received but not negotiated, ignoring", self.conn)
            else:
                self._unexpected(ev)
        elif isinstance(ev, UpdateMsgErr):
            if st == State.ESTABLISHED:
                self._note("warning", f"update error {ev.code}/{ev.subcode}: resetting the session", self.conn)
                self._fail(Reason.UPDATE_ERROR, (ev.code, ev.subcode, ev.data))
            else:
                self._unexpected(ev)       # an UPDATE before Established
        else:  # pragma: no cover - every event type is handled above
            self._note("debug", f"{ev} ignored in state {st}")

    def _main_tcp_fails(self) -> None:
        st = self.state
        if self._second is not None:
            self._drop_main_keep_second(Reason.CONNECTION_LOST, None)
            return
        if st == State.OPEN_SENT or (st == State.CONNECT and not self._opened):
            # RFC 4271 §8.2.2 OpenSent (and Connect with DelayOpen running): close,
            # restart the ConnectRetryTimer, keep listening, go to Active.
            self._release(Reason.CONNECTION_LOST, None)
            self.counters.connect_retry_counter += 1
            if not self._passive:
                self._start_connect_retry()
            self._set_state(State.ACTIVE, Reason.CONNECTION_LOST)
            return
        self._fail(Reason.CONNECTION_LOST, None)

    def _main_open(self, ev: BGPOpen) -> None:
        res = process_open(ev.open, self.settings)
        if isinstance(res, OpenError):
            self._note("warning", f"rejecting OPEN: {res.reason} (NOTIFICATION {res.code}/{res.subcode})",
                       self.conn)
            self._fail(Reason.OPEN_REJECTED, (res.code, res.subcode, res.data))
            return
        if not self._opened:       # Event 20: OPEN while DelayOpenTimer runs
            self._stop_timer(TimerName.DELAY_OPEN, self.conn)
            self._opened = True
            self._send_open(self.conn)
        self._accept_open(res, ev.open, Reason.OPEN_RECEIVED)

    def _accept_open(self, neg: Negotiated, open_msg: Any, reason: Reason) -> None:
        """OPEN accepted on the running connection: KEEPALIVE, timers, OpenConfirm."""
        self._stop_timer(TimerName.CONNECT_RETRY)
        self.negotiated = neg
        self.peer_open = open_msg
        self._send_keepalive(self.conn)
        if neg.hold_time:
            self._start_keepalive()
            self._start_timer(TimerName.HOLD, neg.hold_time, self.conn)
        else:
            # RFC 4271 §8.2.2: a zero hold time starts neither Hold nor Keepalive timer
            self._stop_timer(TimerName.HOLD, self.conn)
        self._set_state(State.OPEN_CONFIRM, reason)

    # -- events on the tracked second connection ----------------------------------------------------

    def _drop_second(self, reason: Reason, notify: Optional[tuple[int, int, bytes]], why: str = "") -> None:
        sec, self._second = self._second, None
        assert sec is not None
        if notify is not None:
            self._send_notification(sec.conn, *notify)
        self._stop_conn_timers(sec.conn)
        self._close(sec.conn, reason, why)

    def _second_event(self, ev: Event) -> None:
        sec = self._second
        assert sec is not None
        if isinstance(ev, BGPOpen):
            res = process_open(ev.open, self.settings)
            if isinstance(res, OpenError):
                self._note("warning", f"rejecting OPEN on second connection {sec.conn}: {res.reason}", sec.conn)
                self._drop_second(Reason.OPEN_REJECTED, (res.code, res.subcode, res.data))
                return
            self._collision(res, ev.open)
        elif isinstance(ev, (KeepAliveMsg, UpdateMsg, UpdateMsgErr, RouteRefreshMsg)):
            # the second connection is in OpenSent: RFC 6608 5/1
            self._drop_second(Reason.UNEXPECTED_MESSAGE, (ERR_FSM, FSM_UNEXPECTED_IN_OPENSENT, b""))
        elif isinstance(ev, (BGPHeaderErr, BGPOpenMsgErr)):
            self._drop_second(Reason.HEADER_ERROR if isinstance(ev, BGPHeaderErr) else Reason.OPEN_REJECTED,
                              (ev.code, ev.subcode, ev.data))
        elif isinstance(ev, NotifMsg):
            self._drop_second(Reason.NOTIFICATION_RECEIVED, None)
        elif isinstance(ev, TcpConnectionFails):
            self._drop_second(Reason.CONNECTION_LOST, None)
        elif isinstance(ev, HoldTimerExpires):
            self._drop_second(Reason.HOLD_TIMER_EXPIRED, (ERR_HOLD_TIMER, 0, b""))
        elif isinstance(ev, OpenCollisionDump):
            self._drop_second(Reason.COLLISION, (ERR_CEASE, CEASE_COLLISION, b""))
        else:
            self._note("debug", f"{ev} on tracked connection {sec.conn}, ignoring", sec.conn)

    def _collision(self, neg: Negotiated, open_msg: Any) -> None:
        """RFC 4271 §6.8: the tracked connection's OPEN arrived; keep one connection."""
        sec = self._second
        assert sec is not None and self.direction is not None
        decision = resolve_collision(
            self.settings.bgp_id, neg.peer_id,
            ConnectionInfo(self.conn, self.direction, self.state),
            ConnectionInfo(sec.conn, sec.direction, State.OPEN_SENT),
            established_resolution=self.config.collision_detect_established,
            local_as=self.settings.local_as, remote_as=neg.peer_as)
        self._note("info", f"collision resolution: {decision.explanation}", decision.close)
        if decision.keep == self.conn:
            self._drop_second(Reason.COLLISION, (decision.code, decision.subcode, b""),
                              why=f"collision: {decision.explanation}")
            return
        # the tracked connection wins: dump the running one, continue with the winner
        old = self.conn
        if self._may_notify(self._opened):
            self._send_notification(old, decision.code, decision.subcode)
        self._stop_conn_timers(old)
        self._close(old, Reason.COLLISION, why=f"collision: {decision.explanation}")
        self._second = None
        self.conn, self.direction = sec.conn, sec.direction
        self._opened = True
        self._accept_open(neg, open_msg, Reason.COLLISION)
