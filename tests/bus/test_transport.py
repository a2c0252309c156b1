"""The worker <-> RIB bus over real ZeroMQ sockets (ipc:// in tmp_path, tcp://127.0.0.1).

Every test is bounded in time: ``run`` wraps it in ``asyncio.wait_for``.
"""
from __future__ import annotations

import asyncio
import os
import random
import signal
import time

import msgspec
import pytest
import zmq

from rserver.bus.messages import (
    Ack, ExportBatch, MaxPrefixExceeded, RouteBatch, SessionDown, SessionUp, Xoff,
)
from rserver.bus.transport import (
    BatchView, CurveClient, CurveServer, RibBus, WorkerBus, curve_keypair,
)
from rserver.codec.layout import ATTR_REC_SIZE, REC4_SIZE, REC6_SIZE, UpdateBatch


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(cond, timeout: float = 5.0, step: float = 0.005) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(step)
    return True


def make_batch(rng: random.Random, n_sets: int, n4: int, n6: int, eor=()) -> UpdateBatch:
    return UpdateBatch(
        consumed=0, messages=n_sets,
        attr_data=rng.randbytes(n_sets * 40),
        attr_index=rng.randbytes(n_sets * ATTR_REC_SIZE),
        v4=rng.randbytes(n4 * REC4_SIZE),
        v6=rng.randbytes(n6 * REC6_SIZE),
        eor=list(eor), problems=[],
    )


def batches(n: int, seed: int = 1, big_every: int = 10) -> list[UpdateBatch]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if big_every and i % big_every == 0:      # frames above pyzmq's copy threshold (zero-copy path)
            out.append(make_batch(rng, 1500, 6000, 500))
        else:
            out.append(make_batch(rng, rng.randrange(0, 20), rng.randrange(0, 60), rng.randrange(0, 10),
                                  eor=[(1, 1, 5)] if i == n - 1 else ()))
    return out


def ipc(tmp_path) -> str:
    return f"ipc://{tmp_path}/rib.sock"


class Collector:
    def __init__(self):
        self.views: list[BatchView] = []
        self.epochs: list[tuple[int, int, bool]] = []
        self.messages: list = []

    def on_batch(self, v: BatchView) -> None:
        self.views.append(v)

    def on_stream(self, peer_id, epoch, resync) -> None:
        self.epochs.append((peer_id, epoch, resync))

    def on_message(self, identity, msg) -> None:
        self.messages.append((identity, msg))


def rib_bus(endpoint, col: Collector, **kw) -> RibBus:
    return RibBus(endpoint, on_batch=col.on_batch, on_stream=col.on_stream, on_message=col.on_message, **kw)


def assert_same(view: BatchView, b: UpdateBatch) -> None:
    assert isinstance(view.v4, memoryview)
    assert bytes(view.attr_data) == b.attr_data
    assert bytes(view.attr_index) == b.attr_index
    assert bytes(view.v4) == b.v4
    assert bytes(view.v6) == b.v6
    assert view.n_attrsets == len(b.attr_index) // ATTR_REC_SIZE
    assert list(map(tuple, view.eor)) == list(b.eor)


# --- in-order delivery --------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_in_order_delivery_exact_bytes(tmp_path, transport):
    sent = batches(200)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path) if transport == "ipc" else "tcp://127.0.0.1:*", col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(7, high_water=64 << 20, low_water=1 << 20)
        acks = []
        for b in sent:
            s.send(b)
            await asyncio.sleep(0)
            acks.append(s.acked)
        assert await s.wait_acked(5)
        assert s.acked == s.last_seq == 200 and s.unacked_bytes == 0
        assert acks == sorted(acks)             # acks only advance
        assert [v.seq for v in col.views] == list(range(1, 201))
        assert all(v.peer_id == 7 and v.epoch == s.epoch for v in col.views)
        for v, b in zip(col.views, sent):
            assert_same(v, b)
        assert col.epochs == [(7, s.epoch, False)]
        assert rib.stats.gaps == rib.stats.duplicates == rib.stats.dropped == 0
        assert await w.aclose() is True
        await rib.aclose()

    run(main())


def test_real_codec_batches(tmp_path):
    from bench.tablegen import generate_v4
    from rserver.codec import decode_updates
    from rserver.codec.layout import CodecContext

    t = generate_v4(n=5000, cache=False)
    wire, ctx, sent = t.wire, CodecContext(), []
    pos = 0
    while pos < len(wire):          # chunks of ~100 messages
        end, k = pos, 0
        while end < len(wire) and k < 100:
            end += int.from_bytes(wire[end + 16:end + 18], "big")
            k += 1
        b = decode_updates(wire[pos:end], ctx)
        assert b.consumed == end - pos and b.error is None
        sent.append(b)
        pos = end

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(1)
        for b in sent:
            s.send(b)
        assert await s.wait_acked(5)
        assert sum(v.n_v4 for v in col.views) == 5000
        for v, b in zip(col.views, sent, strict=True):
            assert_same(v, b)
        await w.aclose()
        await rib.aclose()

    run(main())


# --- loss, gaps, duplicates ---------------------------------------------------------------------

def test_dropped_batch_is_resent(tmp_path):
    sent = batches(60, seed=2)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(1)
        lost = {5, 31}
        s.drop_hook = lambda seq: seq in lost and not lost.discard(seq)     # each lost once
        for b in sent:
            s.send(b)
        assert await s.wait_acked(5)
        assert [v.seq for v in col.views] == list(range(1, 61))
        for v, b in zip(col.views, sent):
            assert_same(v, b)
        assert rib.stats.gaps >= 1 and rib.stats.resends_sent >= 1
        assert s.stats.resends_sent >= 1 and s.stats.resyncs == 0
        await w.aclose()
        await rib.aclose()

    run(main())


def test_lost_tail_found_by_probe(tmp_path):
    sent = batches(10, seed=3)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(1, probe_interval=0.05)
        s.drop_hook = lambda seq: seq == 10 and s.stats.resends_sent == 0
        for b in sent:
            s.send(b)
        assert await until(lambda: s.acked == 10, 3)        # no wait_acked: the probe timer alone
        assert [v.seq for v in col.views] == list(range(1, 11))
        await w.aclose()
        await rib.aclose()

    run(main())


def test_duplicates_ignored(tmp_path):
    sent = batches(10, seed=4, big_every=0)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col, ack_every=1000, ack_delay=60)    # no acks: all kept
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(1, probe_interval=60)
        for b in sent:
            s.send(b)
        assert await until(lambda: len(col.views) == 10)
        assert s.retransmit(1) == 10
        assert s.retransmit(4) == 7
        assert await until(lambda: rib.stats.duplicates == 17)
        assert await until(lambda: s.acked == 10)            # a duplicate is answered with an ack
        assert [v.seq for v in col.views] == list(range(1, 11))
        await w.aclose()
        await rib.aclose()

    run(main())


def test_resend_impossible_falls_back_to_resync(tmp_path):
    sent = batches(10, seed=5, big_every=0)
    size = max(len(b.attr_data) + len(b.attr_index) + len(b.v4) + len(b.v6) for b in sent)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        resyncs = []
        s = w.route_sender(1, max_retained=2 * size, on_resync=resyncs.append)
        first_epoch = s.epoch
        s.drop_hook = lambda seq: seq == 2 and s.epoch == first_epoch
        for b in sent:
            s.send(b)
        assert await until(lambda: resyncs, 3)
        assert s.epoch > first_epoch and s.last_seq == 0
        assert await until(lambda: any(r for _p, _e, r in col.epochs))
        assert col.epochs[-1] == (1, s.epoch, True)
        # the session layer re-sends the table in the new epoch
        for b in sent[:3]:
            s.send(b)
        assert await s.wait_acked(3)
        new = [v for v in col.views if v.epoch == s.epoch]
        assert [v.seq for v in new] == [1, 2, 3]
        old = [v.seq for v in col.views if v.epoch == first_epoch]
        assert old == [1]
        await w.aclose()
        await rib.aclose()

    run(main())


# --- flow control -------------------------------------------------------------------------------

def test_pause_at_high_watermark_and_resume(tmp_path):
    rng = random.Random(6)
    b = make_batch(rng, 10, 100, 0)
    size = len(b.attr_data) + len(b.attr_index) + len(b.v4)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        events = []
        s = w.route_sender(1, high_water=10 * size, low_water=3 * size, probe_interval=0.05,
                           on_pause=lambda: events.append("pause"), on_resume=lambda: events.append("resume"))
        real_ack = rib.receiver._ack_now
        rib.receiver._ack_now = lambda sid, st: None          # the RIB stops acking
        n = 0
        while not s.paused and n < 100:
            s.send(b)
            n += 1
            await asyncio.sleep(0)
        assert s.paused and n == 10 and events == ["pause"]
        assert s.unacked_bytes >= s.high_water
        await asyncio.sleep(0.2)
        assert s.paused                                        # still no acks: still paused
        assert await until(lambda: len(col.views) == 10)
        rib.receiver._ack_now = real_ack                       # acks again (the probe asks for one)
        await asyncio.wait_for(s.writable(), 3)
        assert not s.paused and events == ["pause", "resume"]
        assert s.unacked_bytes < s.low_water
        await w.aclose()
        await rib.aclose()

    run(main())


# --- a sender killed mid-stream, then restarted ------------------------------------------------

def _fork_sender(endpoint: str, identity: bytes, count: int, interval: float) -> int:
    """Fork a process that sends ``count`` batches (0: forever) of peer 1 and waits for the acks."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        asyncio.events._set_running_loop(None)       # the parent's loop is not ours

        async def child():
            w = WorkerBus(endpoint, identity)
            w.start()
            s = w.route_sender(1)
            rng = random.Random(os.getpid())
            i = 0
            while count == 0 or i < count:
                await s.writable()
                s.send(make_batch(rng, 5, 20, 2))
                i += 1
                await asyncio.sleep(interval)
            return 0 if await w.aclose(5) else 2

        code = asyncio.run(child())
    finally:
        os._exit(code)


def test_killed_sender_then_new_epoch_accepted(tmp_path):
    endpoint = ipc(tmp_path)

    async def main():
        col = Collector()
        rib = rib_bus(endpoint, col)
        rib.start()
        pid = _fork_sender(endpoint, b"w1", 0, 0.005)
        try:
            assert await until(lambda: len(col.views) >= 5, 5)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        first_epoch = col.views[0].epoch
        n_before = len(col.views)
        await asyncio.sleep(0.1)
        assert [v.seq for v in col.views] == list(range(1, len(col.views) + 1))
        # restarted with the same identity: a new, larger epoch; accepted from seq 1
        pid2 = _fork_sender(endpoint, b"w1", 10, 0)
        loop = asyncio.get_running_loop()
        _, status = await loop.run_in_executor(None, os.waitpid, pid2, 0)
        assert os.waitstatus_to_exitcode(status) == 0                    # all 10 acked
        new = [v for v in col.views[n_before:] if v.epoch != first_epoch]
        assert [v.seq for v in new] == list(range(1, 11))
        assert new[0].epoch > first_epoch
        assert [e[1] for e in col.epochs] == [first_epoch, new[0].epoch]
        await rib.aclose()

    run(main(), timeout=30)


# --- CURVE --------------------------------------------------------------------------------------

def test_curve_allowed_and_unknown_keys():
    srv_pub, srv_sec = curve_keypair()
    good_pub, good_sec = curve_keypair()
    bad_pub, bad_sec = curve_keypair()
    sent = batches(3, seed=7, big_every=0)

    async def main():
        col = Collector()
        rib = rib_bus("tcp://127.0.0.1:*", col,
                      curve=CurveServer(srv_pub, srv_sec, allowed_clients={good_pub}))
        rib.start()
        bad = WorkerBus(rib.endpoint, b"bad", curve=CurveClient(bad_pub, bad_sec, srv_pub))
        bad.start()
        sb = bad.route_sender(2)
        for b in sent:
            sb.send(b)
        good = WorkerBus(rib.endpoint, b"good", curve=CurveClient(good_pub, good_sec, srv_pub))
        good.start()
        sg = good.route_sender(1)
        for b in sent:
            sg.send(b)
        assert await sg.wait_acked(5)
        assert not await sb.wait_acked(1.0)                  # bounded wait: never gets through
        assert [(v.peer_id, v.seq) for v in col.views] == [(1, 1), (1, 2), (1, 3)]
        for v, b in zip(col.views, sent):
            assert_same(v, b)
        await bad.aclose(timeout=0.1)
        await good.aclose()
        await rib.aclose()

    run(main())


# --- malformed and unexpected messages ----------------------------------------------------------

def test_malformed_messages_dropped_receiver_keeps_working(tmp_path):
    enc = msgspec.msgpack.encode
    sent = batches(5, seed=8, big_every=0)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        s = w.route_sender(1)
        s.send(sent[0])
        assert await s.wait_acked(3)                         # peer 1 now belongs to w1

        ctx = zmq.Context()
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.ROUTING_ID, b"evil")
        raw.connect(rib.endpoint)
        hdr = RouteBatch(5, 1, 1, 1, 0, 1, 0, 0)
        bad = [
            [b"\xc1 not msgpack"],
            [enc({"type": "Nope", "peer_id": 5})],
            [enc(ExportBatch(1, 1, [5], 1))],                # RIB -> worker only
            [enc(Ack(5, 1, 1)), b"extra"],
            [enc(hdr), b"", b"", bytes(13)],                 # 3 frames, 4 expected
            [enc(hdr), b"", b"", bytes(12), b""],            # v4 frame of the wrong size
            [enc(hdr), b"x", b"", bytes(13), b""],                # attr_data size mismatch
            [enc(RouteBatch(1, 1, 1, 1, 0, 1, 0, 0)), b"", b"", bytes(13), b""],   # peer 1 is w1's
            [enc(SessionUp(1, "192.0.2.1", 65001, 1))],      # likewise
            [enc(SessionUp(0, "192.0.2.1", 65001, 1))],      # peer id 0
        ]
        for parts in bad:
            raw.send_multipart(parts)
        assert await until(lambda: rib.stats.dropped >= len(bad), 3)
        assert rib.stats.dropped == len(bad)
        # the RIB -> worker direction: garbage to w1 is dropped too
        rib._send_parts([b"w1", b"\xc1"])
        rib._send_parts([b"w1", enc(MaxPrefixExceeded(1, 1, 10, 11)), b"extra"])
        assert await until(lambda: w.stats.dropped == 2, 3)
        for b in sent[1:]:
            s.send(b)
        assert await s.wait_acked(3)
        assert [v.seq for v in col.views] == [1, 2, 3, 4, 5]
        assert all(v.peer_id == 1 for v in col.views)
        raw.close(0)
        ctx.term()
        await w.aclose()
        await rib.aclose()

    run(main())


# --- control messages and exports ---------------------------------------------------------------

def test_control_messages_and_export_stream(tmp_path):
    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col)
        rib.start()
        got_msgs, exports = [], []
        w = WorkerBus(rib.endpoint, b"w1", on_message=got_msgs.append, on_export=exports.append)
        w.start()
        up = SessionUp(3, "192.0.2.3", 65003, 0xC0000203, families=[(1, 1), (2, 1)], gr_restart_time=120)
        w.send(up)
        w.send(Xoff(3))
        w.send(SessionDown(3, "hold timer expired", graceful=True))
        assert await until(lambda: len(col.messages) == 3)
        assert col.messages == [(b"w1", up), (b"w1", Xoff(3)), (b"w1", SessionDown(3, "hold timer expired", True))]

        assert rib.send(b"w1", MaxPrefixExceeded(3, 1, 100, 101))
        assert await until(lambda: got_msgs)
        assert got_msgs == [MaxPrefixExceeded(3, 1, 100, 101)]

        big = random.Random(9).randbytes(200_000)
        for i in range(20):
            rib.export(b"w1", [3, 4], 1, [b"upd%d" % i, big], group_id=2, messages=2)
        es = rib.exports[b"w1"]
        assert await es.wait_acked(3)
        assert [e.header.seq for e in exports] == list(range(1, 21))
        assert all(bytes(e.frames[1]) == big and e.header.peer_ids == [3, 4] for e in exports)
        assert bytes(exports[7].frames[0]) == b"upd7"
        await w.aclose()
        await rib.aclose()

    run(main())


def test_ack_by_timer_and_resync_requested_by_rib(tmp_path):
    sent = batches(3, seed=10, big_every=0)

    async def main():
        col = Collector()
        rib = rib_bus(ipc(tmp_path), col, ack_every=1000, ack_delay=0.02)
        rib.start()
        w = WorkerBus(rib.endpoint, b"w1")
        w.start()
        resyncs = []
        s = w.route_sender(4, probe_interval=60, on_resync=resyncs.append)
        s.send(sent[0])
        t0 = time.monotonic()
        assert await until(lambda: s.acked == 1, 2)          # one batch: acked by the ack timer
        assert time.monotonic() - t0 >= 0.015
        # the RIB asks for a full resync of peer 4 (e.g. it lost the peer's state)
        old_epoch = s.epoch
        from rserver.bus.messages import Resync
        assert rib.send(b"w1", Resync(4, 0, "rib restarted"))
        assert await until(lambda: resyncs, 2)
        assert s.epoch > old_epoch and resyncs == ["rib restarted"]
        assert await until(lambda: col.epochs[-1] == (4, s.epoch, True), 2)
        for b in sent:
            s.send(b)
        assert await s.wait_acked(2)
        assert [(v.epoch == s.epoch, v.seq) for v in col.views] == [(False, 1), (True, 1), (True, 2), (True, 3)]
        await w.aclose()
        await rib.aclose()

    run(main())
