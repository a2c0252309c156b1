"""A small, fast asyncio BGP speaker for the lab, the tests and the benchmarks.

It plays an IXP member (a route-server client) against rserver, BIRD or another
``Speaker``: OPEN exchange with the usual capabilities, KEEPALIVE and hold timers,
sending pre-encoded UPDATE streams (``send_raw``) or UPDATEs built through
``rserver.codec`` (``announce`` / ``withdraw`` / ``send_eor``), ROUTE-REFRESH, and a
received table.

Receive path: bytes accumulate in a ``bytearray``; for each read, runs of UPDATEs are
decoded with one ``rserver.codec.decode_updates`` call (as rserver's own sessions do).
What is kept depends on ``keep``:

* ``"full"``: a dict ``(afi, "prefix/len", path_id) -> canonical attribute blob``;
  ``routes()`` and ``route_attrs()`` read it (``rserver.codec.attrs.AttrSet``).
* ``"count"``: no Python object per prefix: one ``rserver.rib._tables.AdjRibIn`` per
  AFI over an ``AttrTable`` (each batch's sets interned, its records applied);
  ``count(afi)`` is the number of paths held (distinct prefixes without ADD-PATH).
* ``"none"``: UPDATEs are decoded (checked) and dropped (an announcer that does not care
  what it receives); only ``updates_received`` / EoR are tracked.

Not a full BGP implementation: no collision handling, no graceful-restart helper
logic beyond advertising the capability, and errors in what it receives end the
session with the codec's NOTIFICATION. Every wait is bounded.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import time
from typing import Callable, Iterable, Optional, Sequence, Union

from rserver.codec import decode_updates, encode_announce, encode_eor, encode_withdraw
from rserver.codec.attrs import AttrSet, build_blob
from rserver.codec.constants import (
    ADDPATH_RECEIVE, ADDPATH_SEND, AS_TRANS, MAX_EXT_MSG_LEN, MAX_MSG_LEN, MSG_KEEPALIVE,
    MSG_NOTIFICATION, MSG_OPEN, MSG_ROUTE_REFRESH, MSG_UPDATE,
)
from rserver.codec.layout import (
    ADDPATH_V4, ADDPATH_V6, ATTR_REC, ATTR_REC_SIZE, NO_ATTR, REC4, REC6, CodecContext,
)
from rserver.codec.messages import (
    KEEPALIVE, AddPathCap, EnhancedRouteRefreshCap, ExtendedMessageCap, FourOctetASCap,
    GracefulRestartCap, MessageError, MultiprotocolCap, Notification, Open,
    RouteRefresh, RouteRefreshCap, decode_message, encode_notification, encode_open,
    encode_route_refresh, split_message,
)
from rserver.codec.records import pack_prefixes, prefix_str

try:  # only to count withdrawals in count mode without a Python loop per record
    import numpy as _np
except ImportError:  # pragma: no cover
    _np = None

__all__ = ["Speaker", "BGPSessionError"]

_PLACEHOLDER_REC = ATTR_REC.pack(0, 4, 0, 0, 1, 0, 0, 0, 0, 0, b"", b"", 0, 0, 0,
                                 0xFFFFFFFF, 0, 0xFFFFFFFF, 0, 0xFFFFFFFF, 0, 0xFFFFFFFF)

_AFI_BIT = {1: ADDPATH_V4, 2: ADDPATH_V6}
_U16 = struct.Struct("!H")


class BGPSessionError(Exception):
    """The session failed: a NOTIFICATION received or sent, a timeout, or the connection lost.

    ``notification`` is (code, subcode, data) when a NOTIFICATION was involved; ``sent`` is
    True when we sent it."""

    def __init__(self, msg: str, notification: Optional[tuple[int, int, bytes]] = None,
                 sent: bool = False):
        super().__init__(msg)
        self.notification = notification
        self.sent = sent


class _Proto(asyncio.Protocol):
    def __init__(self, sp: "Speaker"):
        self.sp = sp

    def connection_made(self, transport):
        self.sp._transport = transport
        self.sp._start_session()      # before any data can arrive: the peer's OPEN may be first

    def data_received(self, data):
        self.sp._data(data)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.sp._lost(exc)

    def pause_writing(self):
        self.sp._paused = True

    def resume_writing(self):
        self.sp._paused = False
        w = self.sp._resume
        if w is not None and not w.done():
            w.set_result(None)


def _afis_of(flag: Union[bool, Iterable[int]], enabled: Sequence[int]) -> set[int]:
    if flag is True:
        return set(enabled)
    if not flag:
        return set()
    return set(flag) & set(enabled)


class Speaker:
    """One BGP session, active (``connect``) or passive (``listen`` then ``connect``).

    ``add_path_rx`` / ``add_path_tx``: True (every enabled family) or an iterable of AFIs;
    rx means we advertise Receive (path ids in what we get), tx means Send.
    ``keep``: "full", "count" or "none" (module doc). ``local_port``: the port a passive
    speaker listens on (0: any, see ``listen()``'s result) or an active one binds (0: any).
    """

    def __init__(self, local_addr: str, local_as: int, router_id: str, peer_addr: str,
                 peer_port: int = 179, *, peer_as: Optional[int] = None, hold_time: int = 90,
                 as4: bool = True, ipv4: bool = True, ipv6: bool = True,
                 add_path_rx: Union[bool, Iterable[int]] = False,
                 add_path_tx: Union[bool, Iterable[int]] = False,
                 extended_message: bool = True, route_refresh: bool = True,
                 enhanced_refresh: bool = False, graceful_restart: Optional[int] = None,
                 passive: bool = False, keep: str = "full", local_port: int = 0,
                 name: Optional[str] = None, coalesce: float = 0.0):
        if keep not in ("full", "count", "none"):
            raise ValueError("keep must be 'full', 'count' or 'none'")
        if not as4 and local_as > 0xFFFF:
            raise ValueError("a 2-octet speaker needs an AS <= 65535")
        self.local_addr, self.local_as, self.router_id = local_addr, local_as, router_id
        self.peer_addr, self.peer_port, self.peer_as = peer_addr, peer_port, peer_as
        self.hold_time, self.as4 = hold_time, as4
        self.afis = [a for a, on in ((1, ipv4), (2, ipv6)) if on]
        self.add_path_rx = _afis_of(add_path_rx, self.afis)
        self.add_path_tx = _afis_of(add_path_tx, self.afis)
        self.extended_message, self.route_refresh = extended_message, route_refresh
        self.enhanced_refresh, self.graceful_restart = enhanced_refresh, graceful_restart
        self.passive, self.keep, self.local_port = passive, keep, local_port
        self.name = name or f"{local_addr}/AS{local_as}"
        # receive batching: once Established, reads are decoded at most every `coalesce`
        # seconds (or when 256 KiB are buffered): fewer, larger decode_updates calls
        self.coalesce = coalesce
        self._pending: Optional[asyncio.TimerHandle] = None

        self.state = "idle"
        self.ctx: Optional[CodecContext] = None
        self.peer_open: Optional[Open] = None
        self.negotiated_hold = 0
        self.last_notification: Optional[tuple[int, int, bytes]] = None
        self.error: Optional[BGPSessionError] = None
        self._transport: Optional[asyncio.Transport] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._accepted: Optional[asyncio.Future] = None
        self._buf = bytearray()
        self._paused = False
        self._resume: Optional[asyncio.Future] = None
        self._changed = asyncio.Event()
        self._open_rx: Optional[asyncio.Future] = None
        self._ka_handle: Optional[asyncio.TimerHandle] = None
        self._last_rx = 0.0
        self._loop: Optional[asyncio.AbstractEventLoop] = None

        # what was received
        self.updates_received = 0
        self.withdrawals = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.problems = 0
        self.eor_received: set[int] = set()
        self.borr_received: set[int] = set()
        self.eorr_received: set[int] = set()
        self.refresh_requests: list[tuple[int, int]] = []   # (afi, safi) of subtype-0 requests
        self.keepalives_received = 0
        self.established_at: Optional[float] = None
        self.last_update_at: Optional[float] = None
        self._routes: dict[tuple[int, str, int], bytes] = {}
        self._attrs = None
        self._tables: dict = {}
        if keep == "count":
            from rserver.rib._tables import AdjRibIn, AttrTable
            self._attrs = AttrTable()
            self._tables = {afi: AdjRibIn(afi, self._attrs) for afi in (1, 2)}
            # one placeholder attribute set (an empty ATTR_REC and blob), kept forever
            self._placeholder = self._attrs.intern_batch(b"\x40\x01\x01\x00", _PLACEHOLDER_REC)
        self.count_withdrawals = True      # keep="count": count withdrawn prefixes (costs a pass)

    # --- OPEN -----------------------------------------------------------------------------
    def _open(self) -> bytes:
        caps: list = [MultiprotocolCap(afi, 1) for afi in self.afis]
        if self.route_refresh:
            caps.append(RouteRefreshCap())
        if self.enhanced_refresh:
            caps.append(EnhancedRouteRefreshCap())
        if self.extended_message:
            caps.append(ExtendedMessageCap())
        if self.graceful_restart is not None:
            caps.append(GracefulRestartCap(0, self.graceful_restart,
                                           tuple((afi, 1, 0) for afi in self.afis)))
        if self.as4:
            caps.append(FourOctetASCap(self.local_as))
        fams = []
        for afi in self.afis:
            mode = (ADDPATH_RECEIVE if afi in self.add_path_rx else 0) | \
                   (ADDPATH_SEND if afi in self.add_path_tx else 0)
            if mode:
                fams.append((afi, 1, mode))
        if fams:
            caps.append(AddPathCap(tuple(fams)))
        my_as = self.local_as if self.local_as <= 0xFFFF else AS_TRANS
        rid = int(ipaddress.IPv4Address(self.router_id))
        return encode_open(Open(my_as=my_as, hold_time=self.hold_time, bgp_id=rid, capabilities=caps))

    def _negotiate(self, o: Open) -> None:
        if self.peer_as is not None and o.asn != self.peer_as:
            raise MessageError(2, 2, _U16.pack(min(o.my_as, 0xFFFF)), f"peer AS {o.asn}, expected {self.peer_as}")
        if o.hold_time in (1, 2):
            raise MessageError(2, 6, b"", f"hold time {o.hold_time}")
        as4 = self.as4 and bool(o.find(FourOctetASCap))
        ext = self.extended_message and bool(o.find(ExtendedMessageCap))
        rx = tx = 0
        for cap in o.find(AddPathCap):
            for afi in self.afis:
                m = cap.mode(afi, 1)
                if afi in self.add_path_rx and m & ADDPATH_SEND:
                    rx |= _AFI_BIT[afi]
                if afi in self.add_path_tx and m & ADDPATH_RECEIVE:
                    tx |= _AFI_BIT[afi]
        self.ctx = CodecContext(as4=as4, addpath_rx=rx, addpath_tx=tx,
                                max_msg=MAX_EXT_MSG_LEN if ext else MAX_MSG_LEN, ebgp=True,
                                loopback_next_hop=True)     # lab peers live on 127.0.1.N
        self.negotiated_hold = min(self.hold_time, o.hold_time)
        self.peer_open = o

    # --- connection -------------------------------------------------------------------------
    async def listen(self) -> int:
        """Passive: start listening on (local_addr, local_port); return the port."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._accepted = loop.create_future()

        def factory():
            return _Accept(self)

        self._server = await loop.create_server(factory, self.local_addr, self.local_port,
                                                reuse_address=True)
        self.local_port = self._server.sockets[0].getsockname()[1]
        return self.local_port

    async def connect(self, timeout: float = 10.0) -> "Speaker":
        """Open the session (active: connect from local_addr; passive: accept one connection
        from peer_addr), exchange OPENs and KEEPALIVEs. Raises BGPSessionError."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        try:
            await asyncio.wait_for(self._connect(loop), timeout)
        except asyncio.TimeoutError:
            self._abort()
            raise BGPSessionError(f"{self.name}: session to {self.peer_addr} not established "
                                  f"within {timeout:g}s (state {self.state})") from None
        except BGPSessionError:
            self._abort()
            raise
        return self

    async def _connect(self, loop) -> None:
        self._open_rx = loop.create_future()
        if self.passive:
            if self._server is None:
                await self.listen()
            await self._accepted
            self._server.close()
            self._server = None
        else:
            fam = socket.AF_INET6 if ":" in self.peer_addr else socket.AF_INET
            sock = socket.socket(fam, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.local_addr, self.local_port))
                await loop.sock_connect(sock, (self.peer_addr, self.peer_port))
            except OSError as e:
                sock.close()
                raise BGPSessionError(f"{self.name}: connect to {self.peer_addr}:{self.peer_port}: {e}") from e
            await loop.create_connection(lambda: _Proto(self), sock=sock)
        await self._open_rx

    def _start_session(self) -> None:
        tr = self._transport
        s = tr.get_extra_info("socket")
        if s is not None:
            try:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        tr.set_write_buffer_limits(high=1 << 20)
        self.state = "opensent"
        self._last_rx = time.monotonic()
        self._write(self._open())
        self._arm_timer()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self.bytes_sent += len(data)

    # --- timers -----------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        hold = self.negotiated_hold if self.state == "established" else max(self.hold_time, 4)
        if self.state == "established" and hold == 0:
            return
        interval = max(0.3, hold / 3.0)
        self._ka_handle = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._ka_handle = None
        if self.state in ("closed", "idle"):
            return
        hold = self.negotiated_hold if self.state == "established" else 240
        if hold and time.monotonic() - self._last_rx > hold:
            self._fail_send(4, 0, b"", "hold timer expired")
            return
        if self.state in ("openconfirm", "established"):
            self._write(KEEPALIVE)
        self._arm_timer()

    # --- receive ------------------------------------------------------------------------------
    def _data(self, data: bytes) -> None:
        self._last_rx = time.monotonic()
        self.bytes_received += len(data)
        buf = self._buf
        buf += data
        if self.coalesce and self.state == "established":
            # keep reading (the socket never fills), but decode what arrived at most every
            # `coalesce` seconds: one decode_updates call over a large buffer instead of one
            # per 256 KiB read (pausing the transport instead capped a client at ~10 MB/s)
            if self._pending is None:
                self._pending = self._loop.call_later(self.coalesce, self._process)
            return
        self._process()

    def _process(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        buf = self._buf
        ctx = self.ctx
        max_msg = ctx.max_msg if ctx is not None else MAX_MSG_LEN
        changed = False
        while buf and self.state != "closed":
            try:
                framed = split_message(buf, max_msg)
            except MessageError as e:
                self._fail_send(e.code, e.subcode, e.data, str(e))
                return
            if framed is None:
                break
            mtype, length = framed
            if mtype == MSG_UPDATE:
                if self.state != "established":
                    self._fail_send(5, 1 if self.state == "opensent" else 2, b"", "UPDATE before Established")
                    return
                self._updates(buf)
                changed = True
                continue
            try:
                msg, n = decode_message(buf, max_msg)
            except MessageError as e:
                self._fail_send(e.code, e.subcode, e.data, str(e))
                return
            del buf[:n]
            if mtype == MSG_NOTIFICATION:
                self._notified(msg)
                return
            if mtype == MSG_OPEN:
                if self.state != "opensent":
                    self._fail_send(5, 2 if self.state == "openconfirm" else 3, b"", "unexpected OPEN")
                    return
                try:
                    self._negotiate(msg)
                except MessageError as e:
                    self._fail_send(e.code, e.subcode, e.data, str(e))
                    return
                self.state = "openconfirm"
                self._write(KEEPALIVE)
            elif mtype == MSG_KEEPALIVE:
                self.keepalives_received += 1
                if self.state == "openconfirm":
                    self.state = "established"
                    self.established_at = time.monotonic()
                    if self._ka_handle is not None:
                        self._ka_handle.cancel()
                    self._arm_timer()
                    if self._open_rx is not None and not self._open_rx.done():
                        self._open_rx.set_result(None)
                elif self.state != "established":
                    self._fail_send(5, 1, b"", "KEEPALIVE in OpenSent")
                    return
            elif mtype == MSG_ROUTE_REFRESH:
                rr: RouteRefresh = msg
                if rr.subtype == 1:
                    self.borr_received.add(rr.afi)
                elif rr.subtype == 2:
                    self.eorr_received.add(rr.afi)
                elif rr.subtype == 0:
                    self.refresh_requests.append((rr.afi, rr.safi))
            changed = True
        if changed:
            self._changed.set()

    def _updates(self, buf: bytearray) -> None:
        batch = decode_updates(buf, self.ctx)
        if batch.consumed:
            del buf[:batch.consumed]
        self.updates_received += batch.messages
        self.last_update_at = time.monotonic()
        if batch.problems:
            self.problems += len(batch.problems)
        if self.keep == "count":
            self._apply_count(batch)
        elif self.keep == "full":
            self._apply_full(batch)
        for afi, _safi, _pos in batch.eor:
            self.eor_received.add(afi)
        err = batch.error
        if err is not None:
            self._fail_send(err.code, err.subcode, err.data, f"UPDATE error {err.reason}")
        elif not batch.consumed:
            self._fail_send(1, 2, bytes(buf[16:18]), "undecodable UPDATE")

    def _apply_count(self, batch) -> None:
        # only which prefixes are held matters here: every attribute set maps to one interned
        # placeholder (no per-set interning; the benchmark's clients must stay cheap)
        n = len(batch.attr_index) // ATTR_REC_SIZE
        idmap = self._placeholder * n
        for afi, col, size in ((1, batch.v4, 13), (2, batch.v6, 25)):
            if col:
                if _np is not None and self.count_withdrawals:
                    a = _np.frombuffer(col, dtype=_np.uint8).reshape(-1, size)[:, :4]
                    self.withdrawals += int((a == 0xFF).all(axis=1).sum())
                self._tables[afi].apply(col, idmap)

    def _apply_full(self, batch) -> None:
        idx = batch.attr_index
        data = batch.attr_data
        blobs = []
        for i in range(len(idx) // ATTR_REC_SIZE):
            off, ln = ATTR_REC.unpack_from(idx, i * ATTR_REC_SIZE)[:2]
            blobs.append(bytes(data[off:off + ln]))
        routes = self._routes
        for afi, col, st in ((1, batch.v4, REC4), (2, batch.v6, REC6)):
            if not col:
                continue
            for aidx, pid, plen, addr in st.iter_unpack(col):
                key = (afi, prefix_str(afi, plen, addr), pid)
                if aidx == NO_ATTR:
                    self.withdrawals += 1
                    routes.pop(key, None)
                else:
                    routes[key] = blobs[aidx]

    def _notified(self, n: Notification) -> None:
        self.last_notification = (n.code, n.subcode, bytes(n.data))
        self._close_with(BGPSessionError(
            f"{self.name}: NOTIFICATION received from {self.peer_addr}: {n.code}/{n.subcode} {n.describe()}",
            self.last_notification))

    def _fail_send(self, code: int, subcode: int, data: bytes, why: str) -> None:
        self._write(encode_notification(Notification(code, subcode, bytes(data))))
        self._close_with(BGPSessionError(f"{self.name}: sent NOTIFICATION {code}/{subcode}: {why}",
                                         (code, subcode, bytes(data)), sent=True))

    def _close_with(self, err: Optional[BGPSessionError]) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        if err is not None and self.error is None:
            self.error = err
        for h in (self._ka_handle, self._pending):
            if h is not None:
                h.cancel()
        self._ka_handle = self._pending = None
        if self._transport is not None:
            self._transport.close()
        for f in (self._open_rx, self._resume, self._accepted):
            if f is not None and not f.done():
                f.set_exception(err or BGPSessionError(f"{self.name}: closed"))
                f.exception()      # retrieved: no "never retrieved" warning
        self._changed.set()

    def _lost(self, exc) -> None:
        if self.state != "closed":
            self._close_with(BGPSessionError(f"{self.name}: connection to {self.peer_addr} lost"
                                             + (f": {exc}" if exc else "")))

    def _abort(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._transport is not None:
            self._transport.abort()
        self._close_with(None)

    # --- send ------------------------------------------------------------------------------
    @property
    def established(self) -> bool:
        return self.state == "established"

    def _check_up(self) -> None:
        if self.state != "established":
            raise self.error or BGPSessionError(f"{self.name}: session not established ({self.state})")

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        while self._paused and self.state != "closed":
            self._resume = self._loop.create_future()
            await self._resume
        if self.state == "closed" and self.error is not None:
            raise self.error

    async def send_raw(self, data: bytes) -> None:
        """Write pre-encoded messages (complete UPDATEs with headers), with backpressure."""
        self._check_up()
        self._write(data)
        await self.drain()

    def _blob(self, attrs, afi: int) -> bytes:
        if isinstance(attrs, (bytes, bytearray)):
            return bytes(attrs)
        kw = dict(attrs or {})
        kw.setdefault("as_path", [self.local_as])
        if "next_hop" not in kw:
            kw["next_hop"] = self.local_addr if afi == 1 else "2001:db8::1"
        if afi == 2:
            kw.setdefault("afi", 2)
        return build_blob(**kw)

    async def announce(self, prefixes: Iterable, attrs=None, path_ids: Optional[Sequence[int]] = None) -> None:
        """Announce prefixes (strings or ipaddress networks; both families may be mixed)
        with one attribute set: ``attrs`` is a canonical blob or build_blob's keyword
        arguments (default AS_PATH [local_as], NEXT_HOP local_addr for IPv4, an
        MP_REACH_NLRI with next hop 2001:db8::1 for IPv6)."""
        self._check_up()
        out = []
        for afi, pfx, pids in self._split(prefixes, path_ids):
            recs = pack_prefixes(afi, pfx, pids, attr_idx=0)
            out.append(encode_announce(self._blob(attrs, afi), afi, recs, self.ctx))
        await self.send_raw(b"".join(out))

    async def withdraw(self, prefixes: Iterable, path_ids: Optional[Sequence[int]] = None) -> None:
        self._check_up()
        out = []
        for afi, pfx, pids in self._split(prefixes, path_ids):
            out.append(encode_withdraw(afi, pack_prefixes(afi, pfx, pids), self.ctx))
        await self.send_raw(b"".join(out))

    @staticmethod
    def _split(prefixes, path_ids):
        by: dict[int, tuple[list, list]] = {}
        for i, p in enumerate(prefixes):
            net = ipaddress.ip_network(p, strict=False) if isinstance(p, str) else p
            afi = 1 if net.version == 4 else 2
            lst = by.setdefault(afi, ([], []))
            lst[0].append(net)
            lst[1].append(path_ids[i] if path_ids is not None else 0)
        return [(afi, v[0], v[1] if path_ids is not None else None) for afi, v in sorted(by.items())]

    async def send_eor(self, afi: int = 1) -> None:
        await self.send_raw(encode_eor(afi, 1))

    async def send_route_refresh(self, afi: int = 1, subtype: int = 0) -> None:
        await self.send_raw(encode_route_refresh(RouteRefresh(afi, 1, subtype)))

    def send_keepalive(self) -> None:
        self._write(KEEPALIVE)

    # --- received table --------------------------------------------------------------------
    def routes(self, afi: Optional[int] = None) -> dict:
        """keep="full": {(afi, prefix, path_id): blob}, optionally one family."""
        if self.keep != "full":
            raise RuntimeError("routes() needs keep='full'")
        if afi is None:
            return dict(self._routes)
        return {k: v for k, v in self._routes.items() if k[0] == afi}

    def route_attrs(self, prefix: str, path_id: int = 0, afi: Optional[int] = None) -> Optional[AttrSet]:
        """The decoded attributes of one received route (keep="full"), None when absent."""
        net = ipaddress.ip_network(prefix, strict=False)
        afi = afi or (1 if net.version == 4 else 2)
        blob = self._routes.get((afi, str(net), path_id))
        return AttrSet.from_blob(blob) if blob is not None else None

    def count(self, afi: int = 1) -> int:
        """Paths held for a family (distinct prefixes unless ADD-PATH is received)."""
        if self.keep == "count":
            return len(self._tables[afi])
        if self.keep == "full":
            return sum(1 for k in self._routes if k[0] == afi)
        return 0

    def count_prefixes(self, afi: int = 1) -> int:
        """Distinct prefixes of a family, path ids ignored."""
        if self.keep == "count":
            return self._tables[afi].count_prefixes()
        return len({k[1] for k in self._routes if k[0] == afi})

    # --- waiting ---------------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
        """Wait until ``predicate()`` is true (re-checked after each received read).
        Raises BGPSessionError if the session ends first, TimeoutError after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if self.state == "closed":
                raise self.error or BGPSessionError(f"{self.name}: closed")
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timed out after {timeout:g}s waiting for "
                                   f"{what or getattr(predicate, '__name__', 'a condition')}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
            except asyncio.TimeoutError:
                pass

    async def wait_count(self, afi: int, n: int, timeout: float = 10.0) -> int:
        return await self.wait_for(lambda: self.count(afi) >= n and self.count(afi), timeout,
                                   f"{n} AFI {afi} routes (have {self.count(afi)})")

    async def wait_eor(self, afi: int = 1, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: afi in self.eor_received, timeout, f"End-of-RIB AFI {afi}")

    # --- close -----------------------------------------------------------------------------
    async def close(self, message: str = "", timeout: float = 2.0) -> None:
        """Send Cease 6/2 (with an RFC 9003 message if given) and close the connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.state in ("openconfirm", "established", "opensent"):
            self._write(Notification.shutdown(message).encode())
            tr = self._transport
            self._close_with(None)
            if tr is not None:
                end = time.monotonic() + timeout
                while tr.get_write_buffer_size() and time.monotonic() < end:
                    await asyncio.sleep(0.01)
        else:
            self._abort()
        await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"<Speaker {self.name} -> {self.peer_addr}:{self.peer_port} {self.state}>"


class _Accept(_Proto):
    """A passive speaker's incoming connection: the first one from peer_addr is kept."""

    def connection_made(self, transport):
        sp = self.sp
        peer = transport.get_extra_info("peername")
        acc = sp._accepted
        if (peer is None or ipaddress.ip_address(peer[0]) != ipaddress.ip_address(sp.peer_addr)
                or acc is None or acc.done() or sp._transport is not None):
            transport.abort()
            self.sp = _Dead()
            return
        sp._transport = transport
        sp._start_session()
        acc.set_result(None)


class _Dead:
    """Sink for a rejected connection's callbacks."""

    def _data(self, data):
        pass

    def _lost(self, exc):
        pass

    _paused = False
    _resume = None
