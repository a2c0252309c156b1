"""One BGP TCP connection: framing, decoding and writing, as an asyncio Protocol.

The protocol turns received bytes into FSM events (rserver.session.fsm) and hands
them to its owner (the PeerRunner) through one callback; it never decides
anything about the session itself.

Receive path (the hot one). Bytes accumulate in a ``bytearray``. For each read:

* the head message's header is checked with ``messages.split_message``;
* if it is an UPDATE and the session's ``CodecContext`` is known, the whole run of
  consecutive complete UPDATEs in the buffer goes through **one**
  ``rserver.codec.decode_updates(buf, ctx)`` call (no Python loop per message or
  per prefix) and becomes one ``UpdateMsg(payload=batch, count=batch.messages)``;
  a session-reset problem becomes ``UpdateMsgErr`` (or ``BGPHeaderErr`` for a
  1/x found by the codec) after the messages decoded before it;
* any other message is decoded with ``messages.decode_message`` (OPEN, KEEPALIVE,
  NOTIFICATION, ROUTE-REFRESH are rare);
* a header error becomes ``BGPHeaderErr``, a malformed OPEN ``BGPOpenMsgErr``, an
  UPDATE received before the context exists (OpenSent/OpenConfirm) a bare
  ``UpdateMsg`` that the FSM answers with the RFC 6608 error. After an error event
  nothing more is parsed from this connection: the FSM closes it.

Write path. Two lanes:

* control messages (OPEN, KEEPALIVE, NOTIFICATION, ROUTE-REFRESH) are written to
  the transport directly, so they are never queued behind bulk output we produce;
  at most the transport's high watermark of bytes can be ahead of them;
* bulk output (UPDATEs) goes to our own queue and is fed to the transport only
  while its buffer is below the high watermark (``pause_writing`` /
  ``resume_writing``), in chunks of at most ``CHUNK`` bytes.

``close()`` drops the bulk queue, lets the transport flush what it holds (a
NOTIFICATION just written) and closes; a connection that does not drain within
``CLOSE_TIMEOUT`` seconds is aborted.
"""
from __future__ import annotations

import asyncio
import secrets
from collections import deque
from typing import Any, Callable, Optional

from rserver.codec import decode_updates
from rserver.codec.constants import ERR_HEADER, MAX_MSG_LEN, MSG_OPEN, MSG_UPDATE
from rserver.codec.layout import CodecContext
from rserver.codec.messages import (
    Keepalive, MessageError, Notification, Open, RouteRefresh, decode_message,
    encode_notification, encode_route_refresh, KEEPALIVE, split_message,
)

from .collision import Direction
from .fsm import (
    BGPHeaderErr, BGPOpen, BGPOpenMsgErr, Event, KeepAliveMsg, NotifMsg, RouteRefreshMsg,
    TcpConnectionConfirmed, TcpConnectionFails, TcpCrAcked, UpdateMsg, UpdateMsgErr,
)

__all__ = ["Connection", "new_conn_id", "HIGH_WATER", "LOW_WATER", "CHUNK", "CLOSE_TIMEOUT"]

HIGH_WATER = 256 * 1024       # transport write buffer: stop feeding bulk output above this
LOW_WATER = 64 * 1024         # ... and resume below this
CHUNK = 64 * 1024             # largest piece of bulk output handed to the transport at once
CLOSE_TIMEOUT = 5.0           # a closing connection that does not drain by then is aborted

EventSink = Callable[["Connection", Event], None]


def new_conn_id() -> str:
    """A connection id as in the seeds: 8 hex characters."""
    return secrets.token_hex(4)


class Connection(asyncio.Protocol):
    """One TCP connection of a peer. ``sink(conn, event)`` receives every FSM event
    for it, in order; ``conn.conn_id`` is the id the FSM knows it by."""

    def __init__(self, sink: EventSink, direction: Direction, conn_id: Optional[str] = None):
        self.sink = sink
        self.direction = Direction(direction)
        self.conn_id = conn_id or new_conn_id()
        self.transport: Optional[asyncio.Transport] = None
        self.ctx: Optional[CodecContext] = None       # set once the session is Established
        self.local: str = ""
        self.remote: str = ""
        self.closed = False          # close() was called or the connection is gone
        self.lost = False            # connection_lost ran
        self.bytes_in = 0
        self.bytes_out = 0
        self._buf = bytearray()
        self._dead = False           # an error event was raised: parse nothing more
        self._bulk: deque[tuple[memoryview, int]] = deque()
        self._bulk_bytes = 0
        self._paused = False
        self._on_bulk_written: Optional[Callable[[int], None]] = None
        self._abort_handle: Optional[asyncio.TimerHandle] = None
        self.closed_future: Optional[asyncio.Future] = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.closed_future = asyncio.get_running_loop().create_future()
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        sock = transport.get_extra_info("socket")
        try:
            la, ra = sock.getsockname(), sock.getpeername()
            self.local, self.remote = f"{la[0]}:{la[1]}", f"{ra[0]}:{ra[1]}"
        except (OSError, AttributeError):
            pass
        ev = TcpConnectionConfirmed if self.direction is Direction.INBOUND else TcpCrAcked
        self.sink(self, ev(conn=self.conn_id))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost = True
        self._bulk.clear()
        self._bulk_bytes = 0
        if self._abort_handle is not None:
            self._abort_handle.cancel()
            self._abort_handle = None
        if self.closed_future is not None and not self.closed_future.done():
            self.closed_future.set_result(None)
        if not self.closed:
            self.closed = True
            self.sink(self, TcpConnectionFails(conn=self.conn_id))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def eof_received(self) -> Optional[bool]:
        return False        # close our side too; connection_lost follows

    def data_received(self, data: bytes) -> None:
        if self._dead or self.closed:
            return
        self.bytes_in += len(data)
        buf = self._buf
        buf += data
        while buf and not self._dead and not self.closed:
            ctx = self.ctx
            try:
                framed = split_message(buf, ctx.max_msg if ctx is not None else MAX_MSG_LEN)
            except MessageError as e:
                self._error(BGPHeaderErr(code=e.code, subcode=e.subcode, data=e.data, conn=self.conn_id))
                return
            if framed is None:
                return
            mtype, length = framed
            if mtype == MSG_UPDATE:
                if ctx is None:
                    # before Established: the FSM answers with RFC 6608 5/1 or 5/2
                    del buf[:length]
                    self.sink(self, UpdateMsg(payload=None, count=1, conn=self.conn_id))
                    continue
                self._updates(buf, ctx)
                continue
            try:
                res = decode_message(buf, ctx.max_msg if ctx is not None else MAX_MSG_LEN)
            except MessageError as e:
                if mtype == MSG_OPEN:
                    self._error(BGPOpenMsgErr(code=e.code, subcode=e.subcode, data=e.data, conn=self.conn_id))
                else:
                    self._error(BGPHeaderErr(code=e.code, subcode=e.subcode, data=e.data, conn=self.conn_id)
                                if e.code == ERR_HEADER else
                                _other_error(e, self.conn_id))
                return
            assert res is not None
            msg, n = res
            del buf[:n]
            self.sink(self, _event_for(msg, self.conn_id))

    def _updates(self, buf: bytearray, ctx: CodecContext) -> None:
        batch = decode_updates(buf, ctx)
        if batch.consumed:
            del buf[:batch.consumed]
        if batch.messages:
            self.sink(self, UpdateMsg(payload=batch, count=batch.messages, conn=self.conn_id))
        err = batch.error
        if err is not None:
            if err.code == ERR_HEADER:
                self._error(BGPHeaderErr(code=err.code, subcode=err.subcode, data=err.data, conn=self.conn_id))
            else:
                self._error(UpdateMsgErr(code=err.code, subcode=err.subcode, data=err.data, conn=self.conn_id))
        elif not batch.consumed:        # cannot happen after split_message; never spin
            self._error(BGPHeaderErr(code=ERR_HEADER, subcode=2, data=bytes(buf[16:18]), conn=self.conn_id))

    def _error(self, ev: Event) -> None:
        self._dead = True
        self._buf.clear()
        self.sink(self, ev)

    # -- writing ---------------------------------------------------------------------------

    def _write(self, data: bytes) -> bool:
        if self.transport is None or self.closed or self.transport.is_closing():
            return False
        self.transport.write(data)
        self.bytes_out += len(data)
        return True

    def send_open(self, msg: Open) -> bool:
        return self._write(msg.encode())

    def send_keepalive(self) -> bool:
        return self._write(KEEPALIVE)

    def send_notification(self, n: Notification) -> bool:
        max_len = self.ctx.max_msg if self.ctx is not None else MAX_MSG_LEN
        return self._write(encode_notification(n, max_len))

    def send_route_refresh(self, rr: RouteRefresh) -> bool:
        return self._write(encode_route_refresh(rr))

    def send_bulk(self, data: bytes, count: int = 1) -> None:
        """Queue ``count`` complete messages (``data``) behind our other bulk output."""
        if self.closed or not data:
            return
        self._bulk.append((memoryview(data), count))
        self._bulk_bytes += len(data)
        self._pump()

    def on_bulk_written(self, cb: Optional[Callable[[int], None]]) -> None:
        """``cb(count)`` is called when the last byte of queued messages reaches the
        transport (the FSM's note_sent: sending an UPDATE restarts the KeepaliveTimer)."""
        self._on_bulk_written = cb

    @property
    def bulk_pending(self) -> int:
        """Bytes of bulk output still in our own queue (not yet given to the transport)."""
        return self._bulk_bytes

    @property
    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _pump(self) -> None:
        t = self.transport
        if t is None or self.closed or t.is_closing():
            return
        while self._bulk and not self._paused:
            mv, count = self._bulk[0]
            piece, rest = mv[:CHUNK], mv[CHUNK:]
            t.write(piece)          # may call pause_writing() synchronously
            self.bytes_out += len(piece)
            self._bulk_bytes -= len(piece)
            if len(rest):
                self._bulk[0] = (rest, count)
            else:
                self._bulk.popleft()
                if self._on_bulk_written is not None and count:
                    self._on_bulk_written(count)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, drop queued bulk output, flush the transport and close it."""
        if self.closed:
            return
        self.closed = True
        self._dead = True
        self._bulk.clear()
        self._bulk_bytes = 0
        t = self.transport
        if t is None:
            return
        if not t.is_closing():
            t.close()
        loop = asyncio.get_running_loop()
        self._abort_handle = loop.call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        self.closed = True
        self._dead = True
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<Connection {self.conn_id} {self.direction} {self.local} <-> {self.remote}>"


def _other_error(e: MessageError, conn: str) -> Event:
    # ROUTE-REFRESH 7/1 (RFC 7313 §5) and anything else that is neither a header nor an
    # OPEN error: BGPHeaderErr is the FSM's generic "send (code, subcode, data) and close",
    # valid in every state (UpdateMsgErr would become 5/x before Established)
    return BGPHeaderErr(code=e.code, subcode=e.subcode, data=e.data, conn=conn)


def _event_for(msg: Any, conn: str) -> Event:
    if isinstance(msg, Keepalive):
        return KeepAliveMsg(conn=conn)
    if isinstance(msg, Open):
        return BGPOpen(open=msg, conn=conn)
    if isinstance(msg, Notification):
        return NotifMsg(code=msg.code, subcode=msg.subcode, data=msg.data, conn=conn)
    if isinstance(msg, RouteRefresh):
        return RouteRefreshMsg(payload=msg, conn=conn)
    raise AssertionError(f"unexpected message {type(msg).__name__}")  # pragma: no cover
