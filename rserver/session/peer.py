"""The asyncio shell around one neighbor's sans-IO FSM.

:class:`PeerRunner` owns one :class:`~rserver.session.fsm.Fsm` and carries out
the actions it returns; it decides nothing about the protocol itself:

* timers: ``StartTimer``/``StopTimer`` become ``loop.call_at`` handles; an expiry
  is fed back with ``fsm.timer_expired`` (the FSM ignores a stale one);
* connections: up to two at a time during a collision. Inbound ones arrive with
  :meth:`PeerRunner.accept` (a socket handed over by the supervisor); outbound
  ones are opened on the FSM's ``Connect`` (local address bound, TCP MD5 and GTSM
  set before ``connect``), abandoned on ``CancelConnect``;
* messages: ``SendOpen`` (our OPEN from ``negotiate.build_open``), keepalives and
  NOTIFICATIONs are written on the connection the action names;
* the session: on ``SessionUp`` the negotiated ``CodecContext`` is given to the
  connection (UPDATE decoding starts), decoded batches go to ``on_routes(peer,
  batch)``, prefixes received/withdrawn and End-of-RIB markers are counted;
* every FSM event and transition is logged in the seed daemon's words
  ("received fsm event keepalive message", "fsm transition open confirm ->
  established") with neighbor, neighbor_name, fsm_state, conn_id, direction and
  event fields; every transition is also reported to ``on_state(peer, change)``.

Events are processed one at a time: an event raised while the actions of another
are being carried out is queued and handled right after (no re-entry into the
Fsm).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import time
from collections import deque
from typing import Any, Callable, Optional

import msgspec

from rserver.codec.constants import (
    ADDPATH_BOTH, ADDPATH_RECEIVE, ADDPATH_SEND, AFI_IPV4, AFI_IPV6, CEASE_ADMIN_RESET,
    CEASE_ADMIN_SHUTDOWN, CEASE_MAX_PREFIX, ERR_CEASE, MSG_UPDATE, ROLE_RS, SAFI_UNICAST,
)
from rserver.codec.layout import REC4_SIZE, REC6_SIZE, CodecContext
from rserver.codec.messages import Notification, RouteRefresh, error_name
from rserver.config import GlobalConfig, NeighborConfig
from rserver.log import Log, get_logger

from .collision import Direction
from .connection import Connection, new_conn_id
from .fsm import (
    CancelConnect, CloseConnection, Connect, DeliverRouteRefresh, DeliverUpdate, Event, Fsm,
    FsmConfig, ManualStart, ManualStop, Note, NotifMsg, NotificationRecord, SendKeepalive, SendNotification,
    SendOpen, SessionDown, SessionUp, State, StateChange, TcpConnectionFails, TcpConnectionConfirmed,
    TcpCrAcked, ConnectRetryTimerExpires, DelayOpenTimerExpires, HoldTimerExpires,
    IdleHoldTimerExpires, KeepaliveTimerExpires,
)
from .negotiate import LocalSettings, Negotiated, build_open, codec_context
from .sockopts import normalize_addr, set_gtsm, set_md5
from .timers import StartTimer, StopTimer, TimerName

__all__ = ["PeerRunner", "local_settings", "fsm_config", "shutdown_data", "notification_dict"]

_ADDPATH_MODES = {"off": 0, "receive": ADDPATH_RECEIVE, "send": ADDPATH_SEND, "both": ADDPATH_BOTH}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_FAMILY_NAMES = {(AFI_IPV4, SAFI_UNICAST): "ipv4 unicast", (AFI_IPV6, SAFI_UNICAST): "ipv6 unicast"}

_TIMER_EVENTS = {TimerName.CONNECT_RETRY: ConnectRetryTimerExpires, TimerName.HOLD: HoldTimerExpires,
                 TimerName.KEEPALIVE: KeepaliveTimerExpires, TimerName.DELAY_OPEN: DelayOpenTimerExpires,
                 TimerName.IDLE_HOLD: IdleHoldTimerExpires}

StateCallback = Callable[["PeerRunner", StateChange], None]
RoutesCallback = Callable[["PeerRunner", Any], None]
SessionCallback = Callable[["PeerRunner", bool, Any], None]   # (runner, up, SessionUp/SessionDown action)


def local_settings(neighbor: NeighborConfig, global_: GlobalConfig) -> LocalSettings:
    """Our OPEN and what we accept, from the configuration: local AS and router id
    from [global]; MP IPv4/IPv6 unicast as enabled for the neighbor; route refresh,
    enhanced route refresh, 4-octet AS, extended message always; ADD-PATH per
    ``add_path``; graceful restart (helper) per ``graceful_restart``; BGP Role RS
    per ``role``."""
    families = []
    if neighbor.ipv4:
        families.append((AFI_IPV4, SAFI_UNICAST))
    if neighbor.ipv6:
        families.append((AFI_IPV6, SAFI_UNICAST))
    mode = _ADDPATH_MODES.get(neighbor.add_path, 0)
    addpath = tuple((a, s, mode) for a, s in families) if mode else ()
    return LocalSettings(
        local_as=global_.local_as, bgp_id=int(ipaddress.IPv4Address(global_.router_id)),
        peer_as=neighbor.asn, hold_time=neighbor.hold_time, families=tuple(families),
        route_refresh=True, enhanced_route_refresh=True, extended_message=True,
        addpath=addpath, graceful_restart=neighbor.graceful_restart,
        role=ROLE_RS if neighbor.role == "rs" else None, role_strict=neighbor.role_strict,
    )


def fsm_config(neighbor: NeighborConfig, **overrides: Any) -> FsmConfig:
    """FSM attributes from the configuration (``overrides`` for tests and tuning)."""
    kw: dict[str, Any] = dict(
        passive=neighbor.passive, connect_retry_time=float(neighbor.connect_retry),
        delay_open_time=float(neighbor.delay_open),
        collision_detect_established=neighbor.collision_in_established,
        admin_down=not neighbor.enabled, idle_hold_time=float(neighbor.error_wait_time),
    )
    kw.update(overrides)
    return FsmConfig(**kw)


def shutdown_data(subcode: int, reason: str) -> bytes:
    """NOTIFICATION data for Cease ``subcode``: an RFC 9003 Shutdown Communication
    for 6/2 and 6/4, nothing for the others."""
    if subcode in (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET) and reason:
        return Notification.shutdown(reason, subcode).data
    return b""


def notification_dict(rec: Optional[NotificationRecord], wall: Callable[[float], float]) -> Optional[dict]:
    if rec is None:
        return None
    n = Notification(rec.code, rec.subcode, rec.data)
    return {"code": rec.code, "subcode": rec.subcode, "name": error_name(rec.code, rec.subcode),
            "data": bytes(rec.data).hex(), "shutdown_message": n.shutdown_message,
            "time": wall(rec.at)}


class PeerRunner:
    """One configured neighbor: its Fsm, timers, connections and counters."""

    def __init__(self, neighbor: NeighborConfig, global_: GlobalConfig, *,
                 on_state: Optional[StateCallback] = None,
                 on_routes: Optional[RoutesCallback] = None,
                 on_session: Optional[SessionCallback] = None,
                 on_refresh: Optional[Callable[["PeerRunner", Any], None]] = None,
                 max_prefix_restart: Optional[float] = None,
                 local_addr: Optional[str] = None, remote_port: Optional[int] = None,
                 config: Optional[FsmConfig] = None, rng: Optional[random.Random] = None,
                 log: Optional[Log] = None):
        self.neighbor = neighbor
        self.global_ = global_
        self.address = normalize_addr(neighbor.address)
        self.name = neighbor.name
        self.on_state = on_state
        self.on_routes = on_routes
        self.on_session = on_session
        self.on_refresh = on_refresh        # a ROUTE-REFRESH from the peer: re-send our exports
        # seconds before a max-prefix "restart" starts the session again; None: the
        # neighbor's max_prefix.restart_after minutes (tests pass a fraction of a second)
        self.max_prefix_restart = max_prefix_restart
        self.max_prefix_state: Optional[dict] = None     # why and when max-prefix took it down
        self._mp_restart_handle: Optional[asyncio.TimerHandle] = None
        self.reading_paused = False
        self.local_addr = local_addr if local_addr is not None else _default_local(global_, self.address)
        self.remote_port = remote_port if remote_port is not None else global_.port
        self.settings = local_settings(neighbor, global_)
        self.fsm = Fsm(self.settings, config or fsm_config(neighbor), rng=rng)
        self.log = (log or get_logger("session")).bind(neighbor=self.address, neighbor_name=self.name)
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.conns: dict[str, Connection] = {}
        self.ctx: Optional[CodecContext] = None
        self.negotiated: Optional[Negotiated] = None
        self.session_conn: Optional[str] = None
        self.prefixes_received = 0
        self.prefixes_withdrawn = 0
        self.updates_received = 0
        self.update_problems = 0
        self.eor: list[str] = []
        self.route_refresh_received = 0
        self.down_since: Optional[float] = None
        self.last_session_down: Optional[dict] = None
        self._timers: dict[tuple[TimerName, Optional[str]], asyncio.TimerHandle] = {}
        self._connect_task: Optional[asyncio.Task] = None
        self._connect_id: Optional[str] = None
        self._tasks: set[asyncio.Task] = set()
        self._pending: deque[Event] = deque()
        self._busy = False
        self._stopped = False
        self._all_conns: list[Connection] = []      # every Connection not yet gone (for wait_closed)

    # -- lifecycle and admin ---------------------------------------------------------------

    def start(self) -> None:
        """Attach to the running loop and start the peer (ManualStart) unless it is
        configured disabled."""
        self.loop = asyncio.get_running_loop()
        self.down_since = self.loop.time()
        self.log.info("starting peer state machine", fsm_state=str(self.fsm.state),
                      passive=self.fsm.config.passive, peer_as=self.neighbor.asn,
                      hold_time=self.settings.hold_time)
        if self.neighbor.enabled:
            self.event(ManualStart())
        else:
            self.log.info("peer is administratively disabled in the configuration", fsm_state=str(self.fsm.state))

    def up(self) -> None:
        """Enable the peer (ManualStart)."""
        self._forget_max_prefix()
        self.event(ManualStart())

    def down(self, reason: str = "") -> None:
        """Disable the peer: Cease 6/2 Administrative Shutdown with the RFC 9003 text."""
        self.stop(CEASE_ADMIN_SHUTDOWN, reason)

    def clear(self, reason: str = "") -> None:
        """Reset the session: Cease 6/4 Administrative Reset (RFC 9003 text), then start again."""
        self.stop(CEASE_ADMIN_RESET, reason)
        self._forget_max_prefix()
        self.event(ManualStart())

    # -- max-prefix (RFC 4486 §4) ------------------------------------------------------------

    def max_prefix_exceeded(self, afi: int, limit: int, count: int) -> None:
        """The RIB counted more than ``limit`` prefixes of ``afi``: act per the neighbor's
        ``max_prefix.action``. shutdown: Cease 6/1 (data AFI, SAFI, limit) and stay down until
        an operator ``up``/``clear``; restart: the same, then start again after
        ``restart_after`` minutes; warn: log only."""
        mp = self.neighbor.max_prefix
        action = mp.action if mp is not None else "shutdown"
        fam = _FAMILY_NAMES.get((afi, SAFI_UNICAST), f"afi {afi}")
        text = f"max-prefix exceeded: {count} {fam} prefixes, limit {limit}"
        if action == "warn":
            self.log.warning(f"{text} (action warn: session kept)", fsm_state=str(self.fsm.state))
            return
        if self.fsm.state != State.ESTABLISHED:
            self.log.info(f"{text}: session no longer established, nothing to do", fsm_state=str(self.fsm.state))
            return
        now = time.time()
        delay = None
        if action == "restart":
            delay = (self.max_prefix_restart if self.max_prefix_restart is not None
                     else float(mp.restart_after) * 60.0)
        self.max_prefix_state = {"reason": "max-prefix", "action": action, "afi": afi, "limit": limit,
                                 "count": count, "time": now,
                                 "restart_at": now + delay if delay is not None else None}
        self.log.warning(f"{text}: sending Cease 6/1, "
                         + (f"restarting in {delay:g}s" if delay is not None else "staying down until 'neighbor up'"),
                         fsm_state=str(self.fsm.state))
        data = struct.pack("!HBI", afi, SAFI_UNICAST, limit & 0xFFFFFFFF)
        self.event(ManualStop(subcode=CEASE_MAX_PREFIX, data=data))
        if delay is not None:
            if self._mp_restart_handle is not None:
                self._mp_restart_handle.cancel()
            self._mp_restart_handle = self._loop().call_later(delay, self._max_prefix_restart)

    def _max_prefix_restart(self) -> None:
        self._mp_restart_handle = None
        if self._stopped:
            return
        self.log.info("max-prefix restart time over: starting the session again", fsm_state=str(self.fsm.state))
        self.max_prefix_state = None
        self.event(ManualStart())

    def _forget_max_prefix(self) -> None:
        if self._mp_restart_handle is not None:
            self._mp_restart_handle.cancel()
            self._mp_restart_handle = None
        self.max_prefix_state = None

    # -- backpressure: stop reading the peer while the RIB is behind ---------------------------

    def pause_reading(self) -> None:
        """Stop reading the session's TCP socket (the route stream to the RIB is above its high
        watermark). Our keepalives are still written; the peer's sit unread in the socket, so
        our hold timer may expire if the RIB stays stuck longer than the hold time (the usual
        BGP trade-off, as in BIRD/OpenBGPD: docs/rib-process.md)."""
        c = self.conns.get(self.session_conn or "")
        self.reading_paused = True
        if c is not None and c.transport is not None and not c.transport.is_closing():
            try:
                c.transport.pause_reading()
            except (RuntimeError, AttributeError):
                pass
        self.log.debug("reading paused: the RIB is behind", fsm_state=str(self.fsm.state))

    def resume_reading(self) -> None:
        c = self.conns.get(self.session_conn or "")
        self.reading_paused = False
        if c is not None and c.transport is not None and not c.transport.is_closing():
            try:
                c.transport.resume_reading()
            except (RuntimeError, AttributeError):
                pass
        self.log.debug("reading resumed", fsm_state=str(self.fsm.state))

    def stop(self, subcode: int = CEASE_ADMIN_SHUTDOWN, reason: str = "") -> None:
        """ManualStop with Cease ``subcode``; the peer stays down until ``up()``."""
        self.log.info(f"stopping peer: {error_name(ERR_CEASE, subcode)}"
                      + (f' "{reason}"' if reason else ""), fsm_state=str(self.fsm.state))
        self.event(ManualStop(subcode=subcode, data=shutdown_data(subcode, reason)))

    def refresh(self) -> bool:
        """Ask the peer to re-send its routes (ROUTE-REFRESH per negotiated family)."""
        neg, conn = self.negotiated, self.conns.get(self.session_conn or "")
        if self.fsm.state != State.ESTABLISHED or neg is None or conn is None:
            self.log.warning("route refresh requested but the session is not established",
                             fsm_state=str(self.fsm.state))
            return False
        if not neg.route_refresh:
            self.log.warning("route refresh requested but the peer did not advertise the capability",
                             **self._fields(conn))
            return False
        for afi, safi in neg.families:
            conn.send_route_refresh(RouteRefresh(afi, safi))
            self.fsm.note_sent(5, self._now())
        self.log.info("route refresh sent", **self._fields(conn))
        return True

    def close(self) -> None:
        """Forget everything without any NOTIFICATION (the worker is going away hard)."""
        self._stopped = True
        if self._mp_restart_handle is not None:
            self._mp_restart_handle.cancel()
            self._mp_restart_handle = None
        for h in self._timers.values():
            h.cancel()
        self._timers.clear()
        if self._connect_task is not None:
            self._connect_task.cancel()
        for c in list(self.conns.values()):
            c.abort()
        self.conns.clear()

    async def wait_closed(self, timeout: float = 2.0) -> bool:
        """Wait (at most ``timeout`` s) until every connection has flushed and closed;
        abort the ones that did not. True when all closed in time."""
        futs = [c.closed_future for c in self._closing() if c.closed_future is not None]
        if not futs:
            return True
        done, pending = await asyncio.wait(futs, timeout=timeout)
        for c in self._closing():
            if not c.lost:
                c.abort()
        return not pending

    def _track(self, c: Connection) -> None:
        self._all_conns = [x for x in self._all_conns if not x.lost]
        self._all_conns.append(c)

    def _closing(self) -> list[Connection]:
        return [c for c in self._all_conns if not c.lost]

    @property
    def established(self) -> bool:
        return self.fsm.state == State.ESTABLISHED

    # -- connections -----------------------------------------------------------------------

    def accept(self, sock: socket.socket, info: Any = None) -> Connection:
        """Take over an accepted TCP connection (the runner owns ``sock`` from now on)."""
        self._loop()
        sock.setblocking(False)
        if self.neighbor.ttl_security:
            try:
                set_gtsm(sock)
            except OSError as e:
                self.log.warning(f"cannot set GTSM on the accepted connection: {e}")
        proto = Connection(self._sink, Direction.INBOUND)
        try:
            peer = sock.getpeername()
            local = sock.getsockname()
            where = f"{normalize_addr(peer[0])}:{peer[1]}"
            conn_txt = f"({normalize_addr(local[0])}:{local[1]}, {where})"
        except OSError:
            where = conn_txt = "?"
        self.log.info(f"accepted inbound connection from {where}", fsm_state=str(self.fsm.state),
                      conn_id=proto.conn_id, direction=str(Direction.INBOUND), connection=conn_txt)
        self._track(proto)
        self._spawn(self._attach(proto, sock))
        return proto

    async def _attach(self, proto: Connection, sock: socket.socket) -> None:
        loop = self._loop()
        try:
            await loop.connect_accepted_socket(lambda: proto, sock=sock)
        except OSError as e:
            self.log.warning(f"accepted connection unusable: {e}", conn_id=proto.conn_id)
            sock.close()

    def _connect(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        self._connect_id = new_conn_id()
        self._connect_task = self._spawn(self._connect_out(self._connect_id))

    async def _connect_out(self, conn_id: str) -> None:
        loop = self._loop()
        family = socket.AF_INET6 if ":" in self.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        target = (self.address, self.remote_port)
        try:
            if self.local_addr:
                sock.bind((self.local_addr, 0))
            if self.neighbor.md5_password:
                set_md5(sock, self.address, self.neighbor.md5_password)
            if self.neighbor.ttl_security:
                set_gtsm(sock)
            self.log.debug(f"connecting to {self.address}:{self.remote_port}"
                           + (f" from {self.local_addr}" if self.local_addr else ""),
                           fsm_state=str(self.fsm.state), conn_id=conn_id, direction="outbound")
            await loop.sock_connect(sock, target)
            proto = Connection(self._sink, Direction.OUTBOUND, conn_id)
            self._track(proto)
            await loop.create_connection(lambda: proto, sock=sock)
        except asyncio.CancelledError:
            sock.close()
            raise
        except OSError as e:
            sock.close()
            if self._connect_id != conn_id:
                return
            self._connect_id = None
            self.log.info(f"outbound connection to {self.address}:{self.remote_port} failed: {e}",
                          fsm_state=str(self.fsm.state), conn_id=conn_id, direction="outbound")
            self.event(TcpConnectionFails(conn=conn_id))
            return
        if self._connect_id == conn_id:
            self._connect_id = None

    def _cancel_connect(self) -> None:
        if self._connect_task is not None and not self._connect_task.done():
            self._connect_task.cancel()
        self._connect_task = None
        self._connect_id = None

    def _sink(self, conn: Connection, ev: Event) -> None:
        """Events from a Connection."""
        if isinstance(ev, (TcpConnectionConfirmed, TcpCrAcked)):
            self.conns[conn.conn_id] = conn
            if isinstance(ev, TcpCrAcked):
                self.log.info(f"outbound connection to {conn.remote} established",
                              fsm_state=str(self.fsm.state), conn_id=conn.conn_id, direction="outbound",
                              connection=f"({conn.local}, {conn.remote})")
        elif isinstance(ev, TcpConnectionFails):
            self.conns.pop(conn.conn_id, None)
            self.log.info(f"connection dropped (peer: {conn.remote}, conn_id: {conn.conn_id})",
                          fsm_state=str(self.fsm.state), conn_id=conn.conn_id, direction=str(conn.direction))
        self.event(ev)

    # -- the FSM ---------------------------------------------------------------------------

    def event(self, ev: Event) -> None:
        """Feed one event to the Fsm and carry out its actions (queued if we are busy)."""
        if self._stopped:
            return
        self._pending.append(ev)
        if self._busy:
            return
        self._busy = True
        try:
            while self._pending:
                e = self._pending.popleft()
                conn = self.conns.get(e.conn) if isinstance(e.conn, str) else None
                if self.log.isEnabledFor(logging.DEBUG):
                    self.log.debug(f"received fsm event {e}", event=str(e), **self._fields(conn, e.conn))
                if type(e) is NotifMsg:
                    n = Notification(e.code, e.subcode, e.data)
                    self.log.warning(f"received notification: {n.describe()}", message="notification",
                                     code=e.code, subcode=e.subcode, data=bytes(e.data).hex() or None,
                                     **self._fields(conn, e.conn))
                self._execute(self.fsm.handle(e, self._now()))
        finally:
            self._busy = False

    def _fire(self, name: TimerName, conn: Optional[str]) -> None:
        self._timers.pop((name, conn), None)
        if self._stopped:
            return
        self.event(_TIMER_EVENTS[name](conn=conn))

    def _execute(self, actions: list) -> None:
        for a in actions:
            kind = type(a)
            if kind is StartTimer:
                key = (a.name, a.conn)
                h = self._timers.pop(key, None)
                if h is not None:
                    h.cancel()
                loop = self._loop()
                self._timers[key] = loop.call_at(loop.time() + a.seconds, self._fire, a.name, a.conn)
            elif kind is StopTimer:
                h = self._timers.pop((a.name, a.conn), None)
                if h is not None:
                    h.cancel()
            elif kind is SendKeepalive:
                c = self.conns.get(a.conn)
                if c is not None:
                    c.send_keepalive()
                    if self.log.isEnabledFor(logging.DEBUG):
                        self.log.debug("sending keepalive", message="keepalive", **self._fields(c))
            elif kind is DeliverUpdate:
                self._deliver(a)
            elif kind is SendOpen:
                c = self.conns.get(a.conn)
                if c is not None:
                    msg = build_open(self.settings)
                    c.send_open(msg)
                    self.log.debug("sending open message", message="open", message_contents=_describe_open(msg),
                                   **self._fields(c))
            elif kind is SendNotification:
                c = self.conns.get(a.conn)
                n = Notification(a.code, a.subcode, a.data)
                if c is not None:
                    c.send_notification(n)
                self.log.warning(f"sending notification: {n.describe()}", message="notification",
                                 code=a.code, subcode=a.subcode, data=bytes(a.data).hex() or None,
                                 **self._fields(c, a.conn))
            elif kind is CloseConnection:
                c = self.conns.pop(a.conn, None)
                if c is not None:
                    self.log.info(f"dropping bgp connection for peer {c.remote} (conn_id: {c.conn_id}): {a.reason}",
                                  reason=str(a.reason), **self._fields(c))
                    c.close()
            elif kind is StateChange:
                self._state_change(a)
            elif kind is Note:
                c = self.conns.get(a.conn) if isinstance(a.conn, str) else None
                self.log.log(_LEVELS.get(a.level, logging.INFO), a.text, **self._fields(c, a.conn))
            elif kind is SessionUp:
                self._session_up(a)
            elif kind is SessionDown:
                self._session_down(a)
            elif kind is Connect:
                self._connect()
            elif kind is CancelConnect:
                self._cancel_connect()
            elif kind is DeliverRouteRefresh:
                self.route_refresh_received += 1
                rr = a.payload
                self.log.info(f"route refresh received for afi {getattr(rr, 'afi', '?')} "
                              f"safi {getattr(rr, 'safi', '?')} subtype {getattr(rr, 'subtype', 0)}",
                              **self._fields(self.conns.get(a.conn)))
                if self.on_refresh is not None:
                    try:
                        self.on_refresh(self, rr)
                    except Exception:
                        self.log.exception("route refresh callback failed")
            else:  # pragma: no cover
                self.log.debug(f"unhandled fsm action {a!r}")

    def _state_change(self, a: StateChange) -> None:
        c = self.conns.get(a.conn) if isinstance(a.conn, str) else None
        level = logging.INFO
        self.log.log(level, f"fsm transition {a.old} -> {a.new}", reason=str(a.reason),
                     **self._fields(c, a.conn, state=a.old))
        if self.on_state is not None:
            try:
                self.on_state(self, a)
            except Exception:  # a callback bug must not take the session down
                self.log.exception("state change callback failed")

    def _session_up(self, a: SessionUp) -> None:
        neg = a.negotiated
        self.negotiated = neg
        self.ctx = codec_context(neg, loopback_next_hop=self.global_.loopback_next_hop)
        self.session_conn = a.conn
        self.down_since = None
        self.eor = []
        c = self.conns.get(a.conn)
        if c is not None:
            c.ctx = self.ctx
            c.on_bulk_written(self._bulk_written)
        self.log.info(f"session established with AS{neg.peer_as} (id {_dotted(neg.peer_id)}), "
                      f"hold time {neg.hold_time}s, keepalive {neg.keepalive_time:g}s",
                      **self._fields(c, a.conn, state=State.ESTABLISHED))
        self.reading_paused = False
        if self.on_session is not None:
            try:
                self.on_session(self, True, a)
            except Exception:
                self.log.exception("session callback failed")

    def _session_down(self, a: SessionDown) -> None:
        wall = self._wall
        self.last_session_down = {
            "reason": str(a.reason), "time": wall(self._now()),
            "notification_sent": notification_dict(a.notification_sent, wall),
            "notification_received": notification_dict(a.notification_received, wall),
        }
        self.negotiated = None
        self.ctx = None
        self.session_conn = None
        self.down_since = self._now()
        text = f"session down: {a.reason}"
        for label, rec in (("sent", a.notification_sent), ("received", a.notification_received)):
            if rec is not None:
                text += f"; notification {label}: {Notification(rec.code, rec.subcode, rec.data).describe()}"
        self.log.info(text, reason=str(a.reason), fsm_state=str(self.fsm.state))
        if self.on_session is not None:
            try:
                self.on_session(self, False, a)
            except Exception:
                self.log.exception("session callback failed")

    def _deliver(self, a: DeliverUpdate) -> None:
        batch = a.payload
        self.updates_received += a.count
        if batch is None:
            return
        v4, v6 = batch.v4, batch.v6
        # withdrawals have attr_idx NO_ATTR (0xFFFFFFFF, little-endian at offset 0): its
        # top byte is 0xFF, which no real index within one batch reaches -- counted
        # with one C-level slice, not a loop per prefix
        w4 = v4[3::REC4_SIZE].count(0xFF) if v4 else 0
        w6 = v6[3::REC6_SIZE].count(0xFF) if v6 else 0
        n4, n6 = len(v4) // REC4_SIZE, len(v6) // REC6_SIZE
        self.prefixes_withdrawn += w4 + w6
        self.prefixes_received += n4 + n6 - w4 - w6
        if batch.problems:
            self.update_problems += len(batch.problems)
            if self.log.isEnabledFor(logging.INFO):
                first = batch.problems[0]
                self.log.info(f"{len(batch.problems)} problem(s) in received updates, first: "
                              f"{first.reason} ({first.code}/{first.subcode})",
                              **self._fields(self.conns.get(a.conn)))
        for afi, safi, _pos in batch.eor:
            fam = _FAMILY_NAMES.get((afi, safi), f"afi {afi} safi {safi}")
            if fam not in self.eor:
                self.eor.append(fam)
            self.log.info(f"end-of-rib received for {fam}", **self._fields(self.conns.get(a.conn)))
        if self.on_routes is not None:
            try:
                self.on_routes(self, batch)
            except Exception:
                self.log.exception("route callback failed")

    def _bulk_written(self, count: int) -> None:
        self._execute(self.fsm.note_sent(MSG_UPDATE, self._now(), count))

    def export_backlog(self) -> int:
        """Bytes of our UPDATE output queued for the peer and not yet taken by the socket."""
        c = self.conns.get(self.session_conn or "")
        if c is None or self.fsm.state != State.ESTABLISHED:
            return 0
        return c.bulk_pending

    def send_updates(self, data: bytes, count: int) -> bool:
        """Queue ``count`` encoded UPDATEs for the peer (bulk lane, behind nothing
        but earlier UPDATEs; keepalives overtake them)."""
        c = self.conns.get(self.session_conn or "")
        if c is None or self.fsm.state != State.ESTABLISHED:
            return False
        c.send_bulk(data, count)
        return True

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        """A JSON-able snapshot for "show neighbor"."""
        f = self.fsm
        c = f.counters
        now = self._now()
        wall = self._wall
        neg = self.negotiated
        sess = self.conns.get(self.session_conn or "") if self.session_conn else None
        main = self.conns.get(f.conn) if isinstance(f.conn, str) else None
        return {
            "address": self.address, "name": self.name, "peer_as": self.neighbor.asn,
            "description": self.neighbor.description,
            "state": str(f.state), "admin_up": f.admin_up, "passive": f.config.passive,
            "last_transition_reason": str(c.last_transition_reason) if c.last_transition_reason else None,
            "last_transition_time": wall(c.last_transition_time) if c.last_transition_time is not None else None,
            "last_down_reason": str(c.last_down_reason) if c.last_down_reason else None,
            "uptime": (now - c.established_since) if c.established_since is not None else None,
            "downtime": (now - self.down_since) if self.down_since is not None and c.established_since is None else None,
            "established_count": c.established_count,
            "connect_retry_counter": c.connect_retry_counter,
            "messages_sent": dict(c.sent), "messages_received": dict(c.received),
            "last_notification_sent": notification_dict(c.last_notification_sent, wall),
            "last_notification_received": notification_dict(c.last_notification_received, wall),
            "last_session_down": self.last_session_down,
            "hold_time": neg.hold_time if neg else None,
            "keepalive_time": neg.keepalive_time if neg else None,
            "configured_hold_time": self.settings.hold_time,
            "negotiated": msgspec.to_builtins(neg) if neg else None,
            "connection": _conn_status(sess or main),
            "second_connection": _conn_status(self.conns.get(f.second_conn)) if isinstance(f.second_conn, str) else None,
            "prefixes_received": self.prefixes_received,
            "prefixes_withdrawn": self.prefixes_withdrawn,
            "updates_received": self.updates_received,
            "update_problems": self.update_problems,
            "end_of_rib": list(self.eor),
            "route_refresh_received": self.route_refresh_received,
            "idle_hold_next": f.backoff.current,
            "max_prefix": dict(self.max_prefix_state) if self.max_prefix_state else None,
            "down_reason": "max-prefix" if self.max_prefix_state and f.state != State.ESTABLISHED else None,
            "reading_paused": self.reading_paused,
        }

    # -- helpers ---------------------------------------------------------------------------

    def _loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return self.loop

    def _now(self) -> float:
        return self._loop().time()

    def _wall(self, t: float) -> float:
        return time.time() - (self._now() - t)

    def _spawn(self, coro) -> asyncio.Task:
        t = self._loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _fields(self, c: Optional[Connection], conn_id: Any = None, state: Any = None) -> dict:
        st = state if state is not None else self.fsm.state
        if c is not None:
            return {"fsm_state": str(st), "conn_id": c.conn_id, "direction": str(c.direction)}
        return {"fsm_state": str(st), "conn_id": conn_id if isinstance(conn_id, str) else None}

    def __repr__(self) -> str:
        return f"<PeerRunner {self.name} {self.address} {self.fsm.state}>"


def _default_local(global_: GlobalConfig, peer: str) -> Optional[str]:
    """The address to bind outbound connections to: the one listen address of the
    peer's family, if it is not a wildcard."""
    v6 = ":" in peer
    cands = [a for a in global_.listen if (":" in a) == v6]
    if len(cands) == 1 and not ipaddress.ip_address(cands[0]).is_unspecified:
        return cands[0]
    return None


def _dotted(i: int) -> str:
    return str(ipaddress.IPv4Address(i & 0xFFFFFFFF))


def _describe_open(o: Any) -> str:
    caps = ", ".join(type(c).__name__.removesuffix("Cap") for c in o.capabilities)
    return f"Open [ version: {o.version}, asn: {o.my_as}, hold_time: {o.hold_time}, id: {_dotted(o.bgp_id)}, caps: [{caps}] ]"


def _conn_status(c: Optional[Connection]) -> Optional[dict]:
    if c is None:
        return None
    return {"conn_id": c.conn_id, "direction": str(c.direction), "local": c.local, "remote": c.remote,
            "bytes_in": c.bytes_in, "bytes_out": c.bytes_out, "bulk_pending": c.bulk_pending,
            "write_buffer": c.write_buffer_size}
