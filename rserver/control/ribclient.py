"""The control server's line to the RIB process (``show rib``; docs/control.md, "rib").

A ZeroMQ DEALER with identity ``b"ctl-<pid>"`` connected to the RIB's ROUTER (the same
endpoint the session workers use, ``ipc://RUN_DIR/rib.sock``), driven by the supervisor's
asyncio loop (the bus's ``_Endpoint``: ZMQ_FD watched with ``add_reader``). ``await
query(dict, timeout)`` sends a ``RibQuery`` with a fresh request id and waits for the
``RibQueryReply`` with that id; the RIB answers queries in order, one at a time. A reply that
comes after its timeout is dropped. Nothing blocks: sends are non-blocking (``SNDHWM`` 0),
and a RIB that is down or restarting simply does not answer (``RibQueryError("unavailable",
"rib process not answering ...")``); the DEALER reconnects by itself when the RIB is back.
"""
from __future__ import annotations

import asyncio
import itertools
import os
from typing import Optional

import msgspec
import zmq

from ..bus.messages import RibQuery, RibQueryReply, RibToWorker
from ..bus.transport import _Endpoint
from ..log import get_logger

__all__ = ["RibClient", "RibQueryError"]

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(RibToWorker)


class RibQueryError(Exception):
    """The RIB did not answer (``code`` "unavailable") or answered with an error (``code``
    from its reply: "bad-args", "unknown-neighbor", "internal")."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class RibClient(_Endpoint):
    def __init__(self, endpoint: str, *, identity: Optional[bytes] = None, ctx: Optional[zmq.Context] = None,
                 heartbeat_ms: int = 1000):
        own = ctx is None
        ctx = ctx or zmq.Context()
        self.identity = identity or f"ctl-{os.getpid()}".encode()
        log = get_logger("control", side="rib-client")
        sock = ctx.socket(zmq.DEALER)
        super().__init__(sock, log, ctx, own)
        self._tune(sock, heartbeat_ms)
        sock.setsockopt(zmq.ROUTING_ID, self.identity)
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

    def _dispatch(self, parts: list) -> None:
        if not parts:
            return
        try:
            msg = _dec.decode(parts[0].buffer)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.stats.dropped += 1
            self.log.warning("rib client: bad reply dropped", error=str(e))
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
