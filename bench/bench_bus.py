"""Throughput of the worker -> RIB bus (rserver/bus/transport.py) over ipc://.

The 1M-prefix IPv4 table of bench/tablegen.py is decoded once with rserver.codec.decode_updates
in chunks of ``--chunk`` UPDATE messages (one RouteBatch each); a forked sender process (a
WorkerBus + RouteSender, as a session worker would run it) pushes every batch to a receiver
(a RibBus, as the RIB would run it) and waits for the final ack. Reported: prefixes/s from the
first send to the last ack, and the CPU seconds (user + system, all threads including ZeroMQ's
I/O thread) of each process over the same interval. Target: >= 10 M prefixes/s (ARCHITECTURE.md).

    python -m bench.bench_bus [--n 1000000] [--chunk 2000] [--runs 3]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import struct
import sys
import tempfile
import time


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_batches(n: int, chunk: int):
    from bench.tablegen import generate_v4
    from rserver.codec import BACKEND_NAME, decode_updates
    from rserver.codec.layout import CodecContext

    t = generate_v4(n=n)
    wire = memoryview(t.wire)
    ctx = CodecContext()
    out = []
    pos, end_all = 0, len(wire)
    t0 = time.perf_counter()
    while pos < end_all:
        end, k = pos, 0
        while end < end_all and k < chunk:
            end += (wire[end + 16] << 8) | wire[end + 17]
            k += 1
        b = decode_updates(wire[pos:end], ctx)
        if b.error is not None or b.consumed != end - pos:
            raise SystemExit(f"decode failed at {pos}: {b.error}")
        out.append(b)
        pos = end
    dt = time.perf_counter() - t0
    return out, t, BACKEND_NAME, dt


def _sender(endpoint: str, batches, wfd: int) -> None:
    from rserver.bus.transport import WorkerBus

    async def main():
        w = WorkerBus(endpoint, b"bench-worker")
        w.start()
        s = w.route_sender(1)
        await asyncio.sleep(0.2)                # let the connection come up
        c0, t0 = _cpu(), time.perf_counter()
        for b in batches:
            if s.paused:
                await s.writable()
            s.send(b)
        ok = await s.wait_acked(60)
        t1, c1 = time.perf_counter(), _cpu()
        await w.aclose()
        return ok, t1 - t0, c1 - c0

    ok, elapsed, cpu = asyncio.run(main())
    os.write(wfd, struct.pack("<?dd", ok, elapsed, cpu))


def one_run(endpoint: str, batches, total: int) -> dict:
    from rserver.bus.transport import RibBus

    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            _sender(endpoint, batches, wfd)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)

    async def main():
        state = {"n": 0, "first": None, "last": None, "c0": None, "batches": 0}
        done = asyncio.get_running_loop().create_future()

        def on_batch(v):
            if state["first"] is None:
                state["first"] = time.perf_counter()
                state["c0"] = _cpu()
            state["n"] += v.n_v4 + v.n_v6
            state["batches"] += 1
            if state["n"] >= total and not done.done():
                state["last"] = time.perf_counter()
                state["c1"] = _cpu()
                done.set_result(None)

        rib = RibBus(endpoint, on_batch=on_batch)
        rib.start()
        await asyncio.wait_for(done, 120)
        # wait for the sender's verdict (it needs our final ack, so keep the loop running)
        loop = asyncio.get_running_loop()
        data = await loop.run_in_executor(None, os.read, r, 64)
        await rib.aclose()
        return state, data

    state, data = asyncio.run(main())
    os.close(r)
    os.waitpid(pid, 0)
    ok, elapsed, cpu = struct.unpack("<?dd", data)
    return {
        "ok": ok, "prefixes": state["n"], "batches": state["batches"], "elapsed": elapsed,
        "rate": state["n"] / elapsed, "sender_cpu": cpu,
        "receiver_cpu": state["c1"] - state["c0"], "receiver_span": state["last"] - state["first"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="IPv4 prefixes in the table")
    ap.add_argument("--chunk", type=int, default=2000, help="UPDATE messages per batch")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)

    batches, t, backend, dec = load_batches(a.n, a.chunk)
    total = sum(len(b.v4) // 13 + len(b.v6) // 25 for b in batches)
    nbytes = sum(len(b.attr_data) + len(b.attr_index) + len(b.v4) + len(b.v6) for b in batches)
    print(f"table: {total} prefixes, {t.n_attrsets} attribute sets, {t.n_messages} UPDATEs -> "
          f"{len(batches)} batches of {a.chunk} UPDATEs, {nbytes / 1e6:.1f} MB of columns "
          f"(decoded by the {backend} codec in {dec:.2f} s)")
    results = []
    with tempfile.TemporaryDirectory(prefix="rsbus") as d:
        for i in range(a.runs):
            res = one_run(f"ipc://{d}/rib{i}.sock", batches, total)
            results.append(res)
            print(f"run {i + 1}: {res['prefixes']} prefixes in {res['elapsed'] * 1000:.0f} ms "
                  f"= {res['rate'] / 1e6:.1f} M prefixes/s ({nbytes / res['elapsed'] / 1e6:.0f} MB/s); "
                  f"CPU s: sender {res['sender_cpu']:.3f}, receiver {res['receiver_cpu']:.3f}; "
                  f"all acked: {res['ok']}")
    med = statistics.median(r["rate"] for r in results)
    print(f"median: {med / 1e6:.1f} M prefixes/s (target >= 10 M/s)")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
