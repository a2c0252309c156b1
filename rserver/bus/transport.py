"""The session-worker <-> RIB bus over ZeroMQ (docs/rib.md, "Bus").

Sockets: the RIB binds one ROUTER (``ipc://RUN_DIR/rib.sock`` by default, or ``tcp://HOST:PORT``
with CURVE: a server keypair plus an allow list of client public keys, checked by a ZAP
authenticator); every session worker connects one DEALER whose routing id is its worker
identity. Both directions use that socket pair: the ROUTER addresses a worker by identity.

A message is multipart: a msgpack header (a Struct from bus/messages.py, tagged) and zero or
more binary frames (sent with ``copy=False``; pyzmq copies only frames below its copy
threshold). The receiving side decodes the header against the union of what the other side may
send, checks the frame count and sizes, and that the sender owns the peer it speaks for; anything
else is logged and dropped, never raised.

Reliable streams (ARCHITECTURE principle 6; ZeroMQ silently loses what is queued when a process
dies or closes with linger):

* route batches of one peer (worker -> RIB, ``RouteSender`` -> ``RouteReceiver``) and export
  batches to one worker (RIB -> worker, ``ExportSender`` -> ``ExportReceiver``) carry
  ``(epoch, seq)``; seq starts at 1 in each epoch, a sender takes a new, larger epoch
  (``time.time_ns()``) when it is created and whenever it resyncs;
* the receiver delivers strictly in order and acknowledges cumulatively (every ``ack_every``
  batches or ``ack_delay`` seconds); a batch beyond the expected seq is a gap: it is dropped and
  a ``Resend(from_seq=expected)`` goes back (go-back-N, at most once per ``resend_retry``);
  a seq below the expected one is a duplicate: dropped, answered with an Ack;
* the sender keeps unacked batches (bounded by ``max_retained`` bytes), answers Resend by
  retransmitting from ``from_seq``, and when that batch is no longer kept it starts a new epoch,
  sends ``Resync`` and calls ``on_resync`` (the session layer re-fetches the peer's table:
  ROUTE-REFRESH, or a session reset); ``Probe`` (sent when acks stop coming) reveals a lost
  tail batch, which has no successor to show the gap;
* flow control: ``paused`` is set when unacked bytes reach ``high_water`` (``on_pause``), cleared
  below ``low_water`` (``on_resume``): the worker stops reading that peer's TCP socket meanwhile;
* closing is explicit: ``aclose()`` probes and waits (bounded) until every batch is acked, then
  closes the socket with a short linger.

asyncio integration: the socket's ZMQ_FD is watched with ``loop.add_reader``. That fd is
edge-triggered, so a wake-up drains until EAGAIN (with a budget, then yields and continues), and
every send schedules a drain as well, since a send can consume the edge of pending input.
"""
from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import msgspec
import zmq

from ..codec.layout import ATTR_REC_SIZE, REC4_SIZE, REC6_SIZE
from ..log import get_logger
from .messages import (
    EXPORT_STREAM, Ack, ExportBatch, Probe, Resend, Resync, RibQuery, RibToWorker, RouteBatch, WorkerToRib,
)

__all__ = [
    "default_endpoint", "CurveServer", "CurveClient", "curve_keypair",
    "StreamSender", "RouteSender", "ExportSender", "StreamReceiver", "RouteReceiver", "ExportReceiver",
    "BatchView", "ExportView",
    "RibBus", "WorkerBus", "BusStats",
]

_enc = msgspec.msgpack.Encoder()
_to_rib = msgspec.msgpack.Decoder(WorkerToRib)
_to_worker = msgspec.msgpack.Decoder(RibToWorker)

ZAP_DOMAIN = "rserver"
DRAIN_BUDGET = 256          # messages handled per wake-up before yielding to the loop


def default_endpoint(run_dir: str) -> str:
    return f"ipc://{run_dir.rstrip('/')}/rib.sock"


def curve_keypair() -> tuple[bytes, bytes]:
    """A new CURVE (public, secret) keypair, z85-encoded."""
    return zmq.curve_keypair()


@dataclass
class CurveServer:
    """The RIB's CURVE settings for tcp://: its keypair and the workers' allowed public keys."""

    public_key: bytes
    secret_key: bytes
    allowed_clients: set = field(default_factory=set)     # z85 public keys


@dataclass
class CurveClient:
    """A worker's CURVE settings: its keypair and the RIB's public key."""

    public_key: bytes
    secret_key: bytes
    server_key: bytes


@dataclass
class BusStats:
    delivered: int = 0
    duplicates: int = 0
    gaps: int = 0
    resends_sent: int = 0       # Resend requests sent (receiver) / batches retransmitted (sender)
    dropped: int = 0            # malformed or unexpected messages dropped
    stale: int = 0              # messages of an older epoch
    resyncs: int = 0


class _Allow:
    """ZAP credentials provider: the allow list of client keys."""

    def __init__(self, keys: Iterable[bytes], log):
        self.keys = {k if isinstance(k, bytes) else k.encode() for k in keys}
        self.log = log

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys
        if not ok:
            self.log.warning("bus: CURVE client key refused", client_key=key.decode("ascii", "replace"))
        return ok


# --- the socket wrapper ------------------------------------------------------------------------

class _Endpoint:
    def __init__(self, sock: zmq.Socket, log, ctx: zmq.Context, own_ctx: bool):
        self.sock = sock
        self.log = log
        self.ctx = ctx
        self._own_ctx = own_ctx
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._drain_scheduled = False
        self._closed = False
        self.stats = BusStats()

    @staticmethod
    def _tune(sock: zmq.Socket, heartbeat_ms: int) -> None:
        # our own watermarks bound what is in flight: ZeroMQ must neither drop nor block
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        if heartbeat_ms:
            sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_ms * 3)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.getsockopt(zmq.FD), self._on_readable)
        self._schedule_drain()

    def _on_readable(self) -> None:
        self._drain()

    def _schedule_drain(self) -> None:
        if not self._drain_scheduled and self._loop is not None and not self._closed:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        sock = self.sock
        for _ in range(DRAIN_BUDGET):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            except zmq.ZMQError as e:
                self.log.error("bus: receive failed", error=str(e))
                return
            try:
                self._dispatch(parts)
            except Exception:       # a bug in a handler must not stop the bus
                self.stats.dropped += 1
                self.log.exception("bus: handling a message failed")
        self._schedule_drain()      # more may be pending: continue after other callbacks ran

    def _dispatch(self, parts: list) -> None:
        raise NotImplementedError

    def _send_parts(self, parts: Sequence[Any]) -> bool:
        if self._closed:
            return False
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as e:
            self.log.warning("bus: send failed", error=str(e))
            return False
        finally:
            self._schedule_drain()      # a send may have eaten the fd's edge for pending input
        return True

    def _close_socket(self, linger_ms: int) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            try:
                self._loop.remove_reader(self.sock.getsockopt(zmq.FD))
            except Exception:
                pass
        self.sock.close(linger=linger_ms)
        if self._own_ctx:
            self.ctx.term()


# --- reliable streams: sender ------------------------------------------------------------------

class _Entry:
    __slots__ = ("seq", "parts", "nbytes")

    def __init__(self, seq: int, parts: list, nbytes: int):
        self.seq = seq
        self.parts = parts
        self.nbytes = nbytes


class StreamSender:
    """The sending half of one reliable stream (see the module docstring)."""

    def __init__(self, stream_id: int, transmit: Callable[[list], bool], *, log,
                 high_water: int = 16 << 20, low_water: int = 4 << 20,
                 max_retained: Optional[int] = None,
                 on_pause: Optional[Callable[[], None]] = None,
                 on_resume: Optional[Callable[[], None]] = None,
                 on_resync: Optional[Callable[[str], None]] = None,
                 probe_interval: float = 0.5):
        if not 0 <= low_water < high_water:
            raise ValueError("need 0 <= low_water < high_water")
        self.stream_id = stream_id
        self._transmit = transmit
        self.log = log
        self.high_water = high_water
        self.low_water = low_water
        self.max_retained = max_retained if max_retained is not None else 4 * high_water
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.on_resync = on_resync
        self.probe_interval = probe_interval
        self.epoch = time.time_ns()
        self.last_seq = 0           # last seq sent in this epoch
        self.acked = 0              # cumulative ack received in this epoch
        self._kept: collections.deque[_Entry] = collections.deque()
        self.unacked_bytes = 0      # bytes of the kept (unacked) batches
        self.paused = False
        self.drop_hook: Optional[Callable[[int], bool]] = None     # tests: "lose" seq in transit
        self.stats = BusStats()
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._resume_waiters: list[asyncio.Future] = []
        self._probe_handle: Optional[asyncio.TimerHandle] = None
        self._probe_acked = -1
        self._probe_backoff = probe_interval
        self.closed = False

    # subclasses build the header
    def _header(self, seq: int, meta: Any) -> Any:
        raise NotImplementedError

    def _send_batch(self, meta: Any, frames: Sequence[Any], nbytes: int) -> int:
        if self.closed:
            raise RuntimeError("stream sender is closed")
        seq = self.last_seq + 1
        self.last_seq = seq
        parts = [_enc.encode(self._header(seq, meta)), *frames]
        e = _Entry(seq, parts, nbytes)
        self._kept.append(e)
        self.unacked_bytes += nbytes
        if self.drop_hook is None or not self.drop_hook(seq):
            self._transmit(parts)
        self._trim()
        if not self.paused and self.unacked_bytes >= self.high_water:
            self.paused = True
            self.log.debug("bus: stream paused", stream=self.stream_id, unacked=self.unacked_bytes)
            if self.on_pause is not None:
                self.on_pause()
        self._arm_probe()
        return seq

    def _trim(self) -> None:
        # hard memory bound: forget the oldest unacked batches (a Resend for them -> resync)
        while self.unacked_bytes > self.max_retained and len(self._kept) > 1:
            e = self._kept.popleft()
            self.unacked_bytes -= e.nbytes
            self.log.warning("bus: unacked batch dropped from the resend buffer", stream=self.stream_id, seq=e.seq)

    @property
    def dropped_upto(self) -> int:
        """Highest seq no longer kept for resending (acked or dropped)."""
        return self._kept[0].seq - 1 if self._kept else self.last_seq

    async def writable(self) -> None:
        """Wait until the stream is not paused."""
        while self.paused and not self.closed:
            fut = asyncio.get_running_loop().create_future()
            self._resume_waiters.append(fut)
            await fut

    # -- messages from the receiver
    def handle_ack(self, epoch: int, seq: int) -> None:
        if epoch != self.epoch:
            self.stats.stale += 1
            return
        if seq > self.last_seq:
            self.log.warning("bus: ack beyond what was sent", stream=self.stream_id, seq=seq, last=self.last_seq)
            return
        if seq <= self.acked:
            return
        self.acked = seq
        kept = self._kept
        while kept and kept[0].seq <= seq:
            self.unacked_bytes -= kept.popleft().nbytes
        if self.paused and self.unacked_bytes < self.low_water:
            self._resume()
        if self._waiters:
            still = []
            for want, fut in self._waiters:
                if seq >= want:
                    if not fut.done():
                        fut.set_result(True)
                else:
                    still.append((want, fut))
            self._waiters = still

    def _resume(self) -> None:
        self.paused = False
        self.log.debug("bus: stream resumed", stream=self.stream_id, unacked=self.unacked_bytes)
        if self.on_resume is not None:
            self.on_resume()
        waiters, self._resume_waiters = self._resume_waiters, []
        for f in waiters:
            if not f.done():
                f.set_result(None)

    def handle_resend(self, epoch: int, from_seq: int) -> None:
        if epoch != self.epoch:
            self.stats.stale += 1
            return
        if from_seq > self.last_seq or from_seq < 1:
            self.log.warning("bus: resend request out of range", stream=self.stream_id,
                             from_seq=from_seq, last=self.last_seq)
            return
        if from_seq <= self.dropped_upto:
            # acked already (the receiver lost its state) or dropped from the buffer
            self.resync(f"resend from {from_seq} impossible, kept from {self.dropped_upto + 1}")
            return
        self.retransmit(from_seq)

    def retransmit(self, from_seq: int) -> int:
        """Send the kept batches from ``from_seq`` on again; returns how many."""
        n = 0
        for e in self._kept:
            if e.seq >= from_seq:
                self._transmit(e.parts)
                n += 1
        self.stats.resends_sent += n
        self.log.debug("bus: retransmitted", stream=self.stream_id, from_seq=from_seq, batches=n)
        return n

    def resync(self, reason: str = "") -> None:
        """Start a new epoch: forget what is kept, tell the receiver, ask the owner to resend all."""
        self.stats.resyncs += 1
        self.epoch = max(time.time_ns(), self.epoch + 1)
        self.last_seq = self.acked = 0
        self._kept.clear()
        self.unacked_bytes = 0
        self.log.warning("bus: stream resync", stream=self.stream_id, epoch=self.epoch, reason=reason)
        self._transmit([_enc.encode(Resync(self.stream_id, self.epoch, reason))])
        for _want, fut in self._waiters:
            if not fut.done():
                fut.set_result(False)
        self._waiters = []
        if self.paused:
            self._resume()
        if self.on_resync is not None:
            self.on_resync(reason)

    # -- probing for a lost tail / stalled acks
    def probe(self) -> None:
        self._transmit([_enc.encode(Probe(self.stream_id, self.epoch, self.last_seq))])

    def _arm_probe(self) -> None:
        if self._probe_handle is None and not self.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._probe_handle = loop.call_later(self._probe_backoff, self._probe_tick)

    def _probe_tick(self) -> None:
        self._probe_handle = None
        if self.closed or self.acked >= self.last_seq:
            self._probe_backoff = self.probe_interval
            return
        if self.acked == self._probe_acked:       # no progress since the last tick
            self.probe()
            self._probe_backoff = min(self._probe_backoff * 2, 5.0)
        else:
            self._probe_backoff = self.probe_interval
        self._probe_acked = self.acked
        self._arm_probe()

    async def wait_acked(self, timeout: float) -> bool:
        """Wait until everything sent so far is acked (probing at once); False on timeout/resync."""
        if self.acked >= self.last_seq:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((self.last_seq, fut))
        self.probe()
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            self.log.warning("bus: stream closed with unacked batches", stream=self.stream_id,
                             acked=self.acked, last=self.last_seq)
            return False

    def close(self) -> None:
        self.closed = True
        if self._probe_handle is not None:
            self._probe_handle.cancel()
            self._probe_handle = None
        for f in self._resume_waiters:
            if not f.done():
                f.set_result(None)
        self._resume_waiters = []


class RouteSender(StreamSender):
    """Worker side: the route-batch stream of one peer (stream id = peer_id)."""

    def _header(self, seq: int, meta: Any) -> RouteBatch:
        messages, n_attrsets, n_v4, n_v6, attr_bytes, eor = meta
        return RouteBatch(self.stream_id, self.epoch, seq, messages, n_attrsets, n_v4, n_v6, attr_bytes, eor)

    def send(self, batch: Any) -> int:
        """Send an UpdateBatch (or anything with its attr_data/attr_index/v4/v6/messages/eor);
        returns its seq. The caller checks ``paused`` (or awaits ``writable()``) before reading
        more from the peer; sending while paused still works (the memory bound is max_retained)."""
        a, ai, v4, v6 = batch.attr_data, batch.attr_index, batch.v4, batch.v6
        la, lai, l4, l6 = len(a), len(ai), len(v4), len(v6)
        if lai % ATTR_REC_SIZE or l4 % REC4_SIZE or l6 % REC6_SIZE:
            raise ValueError("batch columns are not whole records")
        meta = (batch.messages, lai // ATTR_REC_SIZE, l4 // REC4_SIZE, l6 // REC6_SIZE, la, list(batch.eor))
        return self._send_batch(meta, (a, ai, v4, v6), la + lai + l4 + l6)


class ExportSender(StreamSender):
    """RIB side: the export stream to one worker (stream id EXPORT_STREAM)."""

    def _header(self, seq: int, meta: Any) -> ExportBatch:
        peer_ids, afi, group_id, messages, n_frames, nbytes = meta
        return ExportBatch(self.epoch, seq, peer_ids, afi, group_id, messages, n_frames, nbytes)

    def send(self, peer_ids: Sequence[int], afi: int, frames: Sequence[Any], *,
             group_id: int = 0, messages: int = 0) -> int:
        nbytes = sum(len(memoryview(f)) for f in frames)
        return self._send_batch((list(peer_ids), afi, group_id, messages, len(frames), nbytes), frames, nbytes)


# --- reliable streams: receiver ----------------------------------------------------------------

class BatchView:
    """A received RouteBatch: the UpdateBatch columns as zero-copy memoryviews of the frames."""

    __slots__ = ("peer_id", "epoch", "seq", "messages", "n_attrsets", "n_v4", "n_v6", "eor",
                 "attr_data", "attr_index", "v4", "v6", "nbytes", "_frames")

    def __init__(self, h: RouteBatch, frames: list):
        self.peer_id = h.peer_id
        self.epoch = h.epoch
        self.seq = h.seq
        self.messages = h.messages
        self.n_attrsets = h.n_attrsets
        self.n_v4 = h.n_v4
        self.n_v6 = h.n_v6
        self.eor = h.eor
        self._frames = frames
        self.attr_data, self.attr_index, self.v4, self.v6 = (f.buffer for f in frames)
        self.nbytes = sum(len(f.buffer) for f in frames)

    def __repr__(self) -> str:
        return (f"BatchView(peer_id={self.peer_id}, epoch={self.epoch}, seq={self.seq}, "
                f"v4={self.n_v4}, v6={self.n_v6}, attrsets={self.n_attrsets})")


class ExportView:
    """A received ExportBatch: the header and its frames as memoryviews of UPDATE bytes."""

    __slots__ = ("header", "frames", "_frames")

    def __init__(self, h: ExportBatch, frames: list):
        self.header = h
        self._frames = frames
        self.frames = [f.buffer for f in frames]


def _check_route_frames(h: RouteBatch, frames: list) -> Optional[str]:
    if len(frames) != 4:
        return f"{len(frames)} frames, expected 4"
    want = (h.attr_bytes, h.n_attrsets * ATTR_REC_SIZE, h.n_v4 * REC4_SIZE, h.n_v6 * REC6_SIZE)
    got = tuple(len(f) for f in frames)
    if want != got:
        return f"frame sizes {got} do not match the header {want}"
    return None


def _check_export_frames(h: ExportBatch, frames: list) -> Optional[str]:
    if len(frames) != h.n_frames:
        return f"{len(frames)} frames, expected {h.n_frames}"
    n = sum(len(f) for f in frames)
    if n != h.nbytes:
        return f"{n} bytes of frames, header says {h.nbytes}"
    return None


class _StreamState:
    __slots__ = ("epoch", "expected", "unacked", "ack_handle", "resend_from", "resend_at", "reply")

    def __init__(self, epoch: int, reply: Callable[[Any], None]):
        self.epoch = epoch
        self.expected = 1
        self.unacked = 0
        self.ack_handle: Optional[asyncio.TimerHandle] = None
        self.resend_from = 0
        self.resend_at = 0.0
        self.reply = reply


class StreamReceiver:
    """The receiving half of reliable streams, one state per stream id.

    ``deliver(view)`` is called once per batch, in seq order; ``on_stream(stream_id, epoch,
    resync)`` when a stream starts a new epoch (a restarted sender, or a resync: what the old
    epoch carried is superseded)."""

    def __init__(self, deliver: Callable[[Any], None], *, log, stats: BusStats,
                 on_stream: Optional[Callable[[int, int, bool], None]] = None,
                 ack_every: int = 8, ack_delay: float = 0.005, resend_retry: float = 0.2):
        self.deliver = deliver
        self.on_stream = on_stream
        self.log = log
        self.stats = stats
        self.ack_every = ack_every
        self.ack_delay = ack_delay
        self.resend_retry = resend_retry
        self.streams: dict[int, _StreamState] = {}

    def state(self, sid: int) -> Optional[_StreamState]:
        return self.streams.get(sid)

    def _new_epoch(self, sid: int, epoch: int, reply, resync: bool) -> _StreamState:
        old = self.streams.get(sid)
        if old is not None and old.ack_handle is not None:
            old.ack_handle.cancel()
        st = self.streams[sid] = _StreamState(epoch, reply)
        if resync:
            self.stats.resyncs += 1
        self.log.info("bus: stream epoch", stream=sid, epoch=epoch, resync=resync,
                      previous=old.epoch if old else None)
        if self.on_stream is not None:
            try:
                self.on_stream(sid, epoch, resync)
            except Exception:
                self.log.exception("bus: on_stream callback failed", stream=sid)
        return st

    def _current(self, sid: int, epoch: int, reply, resync: bool = False) -> Optional[_StreamState]:
        st = self.streams.get(sid)
        if st is None or epoch > st.epoch:
            return self._new_epoch(sid, epoch, reply, resync)
        if epoch < st.epoch:
            self.stats.stale += 1
            self.log.debug("bus: message of an older epoch dropped", stream=sid, epoch=epoch, current=st.epoch)
            return None
        st.reply = reply
        return st

    def handle_batch(self, sid: int, epoch: int, seq: int, reply, make_view: Callable[[], Any]) -> None:
        st = self._current(sid, epoch, reply)
        if st is None:
            return
        if seq < st.expected:
            self.stats.duplicates += 1
            self._ack_now(sid, st)
            return
        if seq > st.expected:
            self.stats.gaps += 1
            self._request_resend(sid, st, force=False)
            return
        st.expected = seq + 1
        st.resend_from = 0
        self.stats.delivered += 1
        try:
            self.deliver(make_view())
        except Exception:
            self.log.exception("bus: delivering a batch failed", stream=sid, seq=seq)
        st.unacked += 1
        if st.unacked >= self.ack_every:
            self._ack_now(sid, st)
        elif st.ack_handle is None:
            st.ack_handle = asyncio.get_running_loop().call_later(self.ack_delay, self._ack_now, sid, st)

    def handle_probe(self, sid: int, epoch: int, last_seq: int, reply) -> None:
        st = self._current(sid, epoch, reply)
        if st is None:
            return
        self._ack_now(sid, st)
        if st.expected <= last_seq:
            self._request_resend(sid, st, force=True)

    def handle_resync(self, sid: int, epoch: int, reply) -> None:
        st = self.streams.get(sid)
        if st is not None and epoch <= st.epoch:
            self.stats.stale += 1
            return
        self._new_epoch(sid, epoch, reply, resync=True)

    def _ack_now(self, sid: int, st: _StreamState) -> None:
        if st.ack_handle is not None:
            st.ack_handle.cancel()
            st.ack_handle = None
        st.unacked = 0
        if self.streams.get(sid) is st:
            st.reply(Ack(sid, st.epoch, st.expected - 1))

    def _request_resend(self, sid: int, st: _StreamState, force: bool) -> None:
        now = time.monotonic()
        if not force and st.resend_from == st.expected and now - st.resend_at < self.resend_retry:
            return
        st.resend_from = st.expected
        st.resend_at = now
        self.stats.resends_sent += 1
        self.log.info("bus: gap, resend requested", stream=sid, epoch=st.epoch, from_seq=st.expected)
        st.reply(Resend(sid, st.epoch, st.expected))

    def forget(self, sid: int) -> None:
        st = self.streams.pop(sid, None)
        if st is not None and st.ack_handle is not None:
            st.ack_handle.cancel()


# RouteReceiver: the RIB's StreamReceiver for route batches (stream id = peer_id)
RouteReceiver = StreamReceiver
ExportReceiver = StreamReceiver


# --- the RIB end -------------------------------------------------------------------------------

class RibBus(_Endpoint):
    """The RIB's ROUTER. ``on_batch(view: BatchView)`` gets each peer's route batches in order;
    ``on_message(identity, msg)`` gets SessionUp/SessionDown/Xoff/Xon; ``on_stream(peer_id,
    epoch, resync)`` a peer stream's new epoch; ``on_export_paused(identity, paused)`` the
    export flow control of a worker."""

    def __init__(self, endpoint: str, *, on_batch: Callable[[BatchView], None],
                 on_message: Optional[Callable[[bytes, Any], None]] = None,
                 on_stream: Optional[Callable[[int, int, bool], None]] = None,
                 on_export_paused: Optional[Callable[[bytes, bool], None]] = None,
                 curve: Optional[CurveServer] = None, ctx: Optional[zmq.Context] = None,
                 ack_every: int = 8, ack_delay: float = 0.005, heartbeat_ms: int = 1000,
                 export_high_water: int = 16 << 20, export_low_water: int = 4 << 20):
        own = ctx is None
        ctx = ctx or zmq.Context()
        log = get_logger("bus", side="rib")
        sock = ctx.socket(zmq.ROUTER)
        super().__init__(sock, log, ctx, own)
        self._tune(sock, heartbeat_ms)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)     # unknown identity: an error, not silence
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)      # a restarted worker takes its identity over
        self.auth = None
        if curve is not None:
            from zmq.auth.thread import ThreadAuthenticator
            self.auth = ThreadAuthenticator(ctx)
            self.auth.start()
            self.auth.configure_curve_callback(ZAP_DOMAIN, _Allow(curve.allowed_clients, log))
            sock.curve_server = True
            sock.curve_publickey = curve.public_key
            sock.curve_secretkey = curve.secret_key
            sock.zap_domain = ZAP_DOMAIN.encode()
        elif endpoint.startswith("tcp://"):
            log.warning("bus: tcp endpoint without CURVE", endpoint=endpoint)
        sock.bind(endpoint)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.on_batch = on_batch
        self.on_message = on_message
        self.on_export_paused = on_export_paused
        self.receiver = RouteReceiver(on_batch, log=log, stats=self.stats, on_stream=on_stream,
                                      ack_every=ack_every, ack_delay=ack_delay)
        self.owners: dict[int, bytes] = {}          # peer_id -> worker identity
        self.exports: dict[bytes, ExportSender] = {}
        self._export_wm = (export_high_water, export_low_water)
        self._replies: dict[bytes, Callable[[Any], None]] = {}

    # -- ownership of peers by workers
    def assign(self, peer_id: int, identity: bytes) -> None:
        """Say which worker speaks for ``peer_id`` (else the first one to do so owns it)."""
        self.owners[peer_id] = identity

    def release(self, peer_id: int) -> None:
        self.owners.pop(peer_id, None)
        self.receiver.forget(peer_id)

    def _owns(self, identity: bytes, peer_id: int) -> bool:
        if not isinstance(peer_id, int) or peer_id <= 0:
            return False
        owner = self.owners.get(peer_id)
        if owner is None:
            self.owners[peer_id] = identity
            return True
        return owner == identity

    # -- sending to workers
    def send(self, identity: bytes, msg: Any) -> bool:
        """A control message (MaxPrefixExceeded, Resync request, Xoff/Xon...) to one worker."""
        return self._send_parts([identity, _enc.encode(msg)])

    def _reply_to(self, identity: bytes) -> Callable[[Any], None]:
        f = self._replies.get(identity)
        if f is None:
            if len(self._replies) > 4096:
                self._replies.clear()
            f = self._replies[identity] = lambda msg: self._send_parts([identity, _enc.encode(msg)])
        return f

    def export_sender(self, identity: bytes) -> ExportSender:
        s = self.exports.get(identity)
        if s is None:
            hw, lw = self._export_wm
            cb = self.on_export_paused
            s = ExportSender(EXPORT_STREAM, lambda parts: self._send_parts([identity, *parts]),
                             log=self.log.bind(worker=identity.decode("ascii", "replace")),
                             high_water=hw, low_water=lw,
                             on_pause=(lambda: cb(identity, True)) if cb else None,
                             on_resume=(lambda: cb(identity, False)) if cb else None)
            self.exports[identity] = s
        return s

    def export(self, identity: bytes, peer_ids: Sequence[int], afi: int, frames: Sequence[Any], **kw) -> int:
        """Send encoded UPDATE bytes for ``peer_ids`` (all on worker ``identity``); returns the seq."""
        return self.export_sender(identity).send(peer_ids, afi, frames, **kw)

    # -- receiving
    def _drop(self, identity: bytes, why: str, **kw) -> None:
        self.stats.dropped += 1
        self.log.warning("bus: message dropped", worker=identity.decode("ascii", "replace"), reason=why, **kw)

    def _dispatch(self, parts: list) -> None:
        if len(parts) < 2:
            self.stats.dropped += 1
            self.log.warning("bus: message without header dropped", frames=len(parts))
            return
        identity = parts[0].bytes
        try:
            msg = _to_rib.decode(parts[1].buffer)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self._drop(identity, f"bad header: {e}")
            return
        frames = parts[2:]
        if isinstance(msg, RouteBatch):
            err = _check_route_frames(msg, frames)
            if err:
                self._drop(identity, err, peer_id=msg.peer_id, seq=msg.seq)
                return
            if not self._owns(identity, msg.peer_id):
                self._drop(identity, "peer not owned by this worker", peer_id=msg.peer_id)
                return
            self.receiver.handle_batch(msg.peer_id, msg.epoch, msg.seq, self._reply_to(identity),
                                       lambda: BatchView(msg, frames))
            return
        if frames:
            self._drop(identity, f"{type(msg).__name__} with {len(frames)} extra frames")
            return
        if isinstance(msg, (Ack, Resend)) or (isinstance(msg, (Probe, Resync)) and msg.peer_id == EXPORT_STREAM):
            # about the export stream to this worker
            if msg.peer_id != EXPORT_STREAM:
                self._drop(identity, f"{type(msg).__name__} for stream {msg.peer_id}")
                return
            s = self.exports.get(identity)
            if s is None:
                self._drop(identity, f"{type(msg).__name__} for an export stream never started")
            elif isinstance(msg, Ack):
                s.handle_ack(msg.epoch, msg.seq)
            elif isinstance(msg, Resend):
                s.handle_resend(msg.epoch, msg.from_seq)
            elif isinstance(msg, Resync):
                s.resync(msg.reason or "requested by worker")
            else:
                self._drop(identity, "probe on the export stream")
            return
        if isinstance(msg, RibQuery):
            # a read-only query (show rib, from the control socket's DEALER): not tied to a
            # peer, no ownership check; the RIB answers bus.send(identity, RibQueryReply(...))
            if self.on_message is not None:
                self.on_message(identity, msg)
            return
        if not self._owns(identity, msg.peer_id):
            self._drop(identity, "peer not owned by this worker", peer_id=msg.peer_id, type=type(msg).__name__)
            return
        if isinstance(msg, Probe):
            self.receiver.handle_probe(msg.peer_id, msg.epoch, msg.last_seq, self._reply_to(identity))
        elif isinstance(msg, Resync):
            self.receiver.handle_resync(msg.peer_id, msg.epoch, self._reply_to(identity))
        elif self.on_message is not None:
            self.on_message(identity, msg)

    async def aclose(self, timeout: float = 2.0, linger_ms: int = 200) -> bool:
        ok = True
        if self.exports:
            # concurrently: a worker that is already gone must not add its timeout to the others'
            res = await asyncio.gather(*(s.wait_acked(timeout) for s in self.exports.values()))
            ok = all(res)
        for s in self.exports.values():
            s.close()
        for sid in list(self.receiver.streams):
            self.receiver.forget(sid)
        if self.auth is not None:
            self.auth.stop()            # before the context terminates: it owns a ZAP socket
            self.auth = None
        self._close_socket(linger_ms)
        return ok


# --- the worker end ----------------------------------------------------------------------------

class WorkerBus(_Endpoint):
    """A session worker's DEALER. ``route_sender(peer_id)`` makes a peer's RouteSender;
    ``on_export(view: ExportView)`` gets export batches in order; ``on_message(msg)`` gets
    MaxPrefixExceeded / Xoff / Xon."""

    def __init__(self, endpoint: str, identity: bytes, *,
                 on_export: Optional[Callable[[ExportView], None]] = None,
                 on_message: Optional[Callable[[Any], None]] = None,
                 curve: Optional[CurveClient] = None, ctx: Optional[zmq.Context] = None,
                 ack_every: int = 8, ack_delay: float = 0.005, heartbeat_ms: int = 1000):
        own = ctx is None
        ctx = ctx or zmq.Context()
        log = get_logger("bus", side="worker", worker=identity.decode("ascii", "replace"))
        sock = ctx.socket(zmq.DEALER)
        super().__init__(sock, log, ctx, own)
        self._tune(sock, heartbeat_ms)
        sock.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            sock.curve_publickey = curve.public_key
            sock.curve_secretkey = curve.secret_key
            sock.curve_serverkey = curve.server_key
        sock.connect(endpoint)
        self.identity = identity
        self.on_message = on_message
        self.senders: dict[int, RouteSender] = {}
        self.receiver = ExportReceiver(on_export or (lambda v: None), log=log, stats=self.stats,
                                       ack_every=ack_every, ack_delay=ack_delay)
        self._reply = lambda msg: self._send_parts([_enc.encode(msg)])

    def route_sender(self, peer_id: int, **kw) -> RouteSender:
        """The RouteSender of ``peer_id`` (a new stream epoch); kw: high_water, low_water,
        max_retained, on_pause, on_resume, on_resync, probe_interval."""
        if peer_id <= 0:
            raise ValueError("peer ids start at 1")
        old = self.senders.get(peer_id)
        if old is not None:
            old.close()
        s = RouteSender(peer_id, self._send_parts, log=self.log.bind(peer_id=peer_id), **kw)
        self.senders[peer_id] = s
        return s

    def send(self, msg: Any) -> bool:
        """A control message to the RIB: SessionUp, SessionDown, Xoff, Xon."""
        return self._send_parts([_enc.encode(msg)])

    def _drop(self, why: str, **kw) -> None:
        self.stats.dropped += 1
        self.log.warning("bus: message dropped", reason=why, **kw)

    def _dispatch(self, parts: list) -> None:
        if not parts:
            return
        try:
            msg = _to_worker.decode(parts[0].buffer)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self._drop(f"bad header: {e}")
            return
        frames = parts[1:]
        if isinstance(msg, ExportBatch):
            err = _check_export_frames(msg, frames)
            if err:
                self._drop(err, seq=msg.seq)
                return
            self.receiver.handle_batch(EXPORT_STREAM, msg.epoch, msg.seq, self._reply,
                                       lambda: ExportView(msg, frames))
            return
        if frames:
            self._drop(f"{type(msg).__name__} with {len(frames)} extra frames")
            return
        if isinstance(msg, (Probe,)) or (isinstance(msg, Resync) and msg.peer_id == EXPORT_STREAM and msg.epoch):
            if msg.peer_id != EXPORT_STREAM:
                self._drop("probe for a route stream")
            elif isinstance(msg, Probe):
                self.receiver.handle_probe(EXPORT_STREAM, msg.epoch, msg.last_seq, self._reply)
            else:
                self.receiver.handle_resync(EXPORT_STREAM, msg.epoch, self._reply)
            return
        if isinstance(msg, (Ack, Resend, Resync)):
            s = self.senders.get(msg.peer_id)
            if s is None:
                self._drop(f"{type(msg).__name__} for an unknown peer", peer_id=msg.peer_id)
            elif isinstance(msg, Ack):
                s.handle_ack(msg.epoch, msg.seq)
            elif isinstance(msg, Resend):
                s.handle_resend(msg.epoch, msg.from_seq)
            else:
                s.resync(msg.reason or "requested by the RIB")
            return
        if self.on_message is not None:
            self.on_message(msg)

    async def aclose(self, timeout: float = 2.0, linger_ms: int = 200) -> bool:
        """Wait (bounded) for every route stream's final ack, then close. True if all acked."""
        ok = True
        if self.senders:
            res = await asyncio.gather(*(s.wait_acked(timeout) for s in self.senders.values()))
            ok = all(res)
        for s in self.senders.values():
            s.close()
        for sid in list(self.receiver.streams):
            self.receiver.forget(sid)
        self._close_socket(linger_ms)
        return ok
