"""The control server's line to the RIB process (``show rib``; docs/control.md, "rib").

A ZeroMQ DEALER with identity ``b"ctl-<pid>"`` connected to the RIB's ROUTER (the same
endpoint the session workers use, ``ipc://RUN_DIR/rib.sock`` by default; for a tcp:// bus it
connects with the workers' CURVE keypair, ``curve=CurveClient(...)``), driven by the supervisor's
asyncio loop (the bus's ``_Endpoint``: ZMQ_FD watched with ``add_reader``). ``await
query(dict, timeout)`` sends a ``RibQuery`` with a fresh request id and waits for the
``RibQueryReply`` with that id; the RIB answers queries in order, one at a time. A reply that
comes after its timeout is dropped. Nothing blocks: sends are non-blocking (``SNDHWM`` 0),
and a RIB that is down or restarting simply does not answer (``RibQueryError("unavailable",
"rib process not answering ...")``); the DEALER reconnects by itself when the RIB is back.
``RouteEvents`` the RIB pushes for a route subscription (``monitor --routes``) go to
``on_events``; ``post(query)`` sends without waiting (an unsubscribe).
"""
from __future__ import annotations

import asyncio
import itertools
import os
from typing import Callable, Optional

import msgspec
import zmq

from ..bus.messages import RibQuery, RibQueryReply, RibToControl, RouteEvents
from ..bus.transport import CurveClient, _Endpoint
from ..log import get_logger

__all__ = ["RibClient", "RibQueryError"]

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(RibToControl)


class RibQueryError(Exception):
    """The RIB did not answer (``code`` "unavailable") or answered with an error (``code``
    from its reply: "bad-args", "unknown-neighbor", "internal")."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RibClient(_Endpoint):
    on_events: Optional[Callable[[RouteEvents], None]] = None    # RouteEvents pushed by the RIB
    def __init__(self, endpoint: str, *, identity: Optional[bytes] = None, ctx: Optional[zmq.Context] = None,
                 heartbeat_ms: int = 1000, curve: Optional[CurveClient] = None):
        own = ctx is None
        ctx = ctx or zmq.Context()
        self.identity = identity or f"ctl-{os.getpid()}".encode()
        log = get_logger("control", side="rib-client")
        sock = ctx.socket(zmq.DEALER)
        super().__init__(sock, log, ctx, own)
        self._tune(sock, heartbeat_ms)
        sock.setsockopt(zmq.ROUTING_ID, self.identity)
        if curve is not None:
            sock.curve_publickey = curve.public_key
            sock.curve_secretkey = curve.secret_key
            sock.curve_serverkey = curve.server_key
        sock.connect(endpoint)
        self.endpoint = endpoint
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}

    async def query(self, query: dict, timeout: float = 5.0) -> dict:
        """Send ``query`` to the RIB and return its result dict; raises RibQueryError."""
        if self._loop is None:
            self.start()
        rid = next(self._ids)
        fut = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            if not self._send_parts([_enc.encode(RibQuery(rid, query))]):
                raise RibQueryError("unavailable", "rib process not answering: cannot send the query")
            try:
                reply: RibQueryReply = await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise RibQueryError("unavailable", f"rib process not answering (no reply within {timeout:g}s)") from None
        finally:
            self._waiting.pop(rid, None)
        if reply.error:
            code = reply.result.get("code") if isinstance(reply.result, dict) else None
            raise RibQueryError(str(code or "internal"), reply.error)
        return reply.result

    def post(self, query: dict) -> bool:
        """Send ``query`` without waiting for the answer (which is then dropped): e.g. an
        unsubscribe while the client goes away. False when it could not be sent."""
        if self._loop is None:
            try:
                self.start()
            except RuntimeError:
                return False
        return bool(self._send_parts([_enc.encode(RibQuery(next(self._ids), query))]))

    def _dispatch(self, parts: list) -> None:
        if not parts:
            return
        try:
            msg = _dec.decode(parts[0].buffer)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.stats.dropped += 1
            self.log.warning("rib client: bad reply dropped", error=str(e))
            return
        if isinstance(msg, RouteEvents):           # a route subscription's events (monitor)
            cb = self.on_events
            if cb is not None:
                try:
                    cb(msg)
                except Exception:                   # noqa: BLE001 - never break the reader
                    self.log.exception("rib client: route events handler failed")
            return
        if not isinstance(msg, RibQueryReply):
            self.stats.dropped += 1
            self.log.debug(f"rib client: unexpected {type(msg).__name__} dropped")
            return
        fut = self._waiting.get(msg.request_id)
        if fut is not None and not fut.done():
            fut.set_result(msg)
        # else: the answer to a query that timed out

    def close(self) -> None:
        for f in self._waiting.values():
            if not f.done():
                f.cancel()
        self._waiting.clear()
        self._close_socket(0)

    def forget_in_child(self) -> None:
        """In a forked child: never touch the parent's ZeroMQ objects (no close, no term)."""
        self._closed = True
        self._loop = None
        _LEFT_IN_CHILD.append(self)        # kept referenced: no __del__ in the child


_LEFT_IN_CHILD: list = []
