"""Throughput of the export kernels (ext/_rib.pyx "Export kernels" -> rserver.rib._tables).

    python -m bench.bench_export [--n 1000000] [--peers 2] [--rounds 5] [--v6] [--pure]

A generated table (bench/tablegen.py) is decoded once with the compiled codec and loaded
from N peers (each its own copy of the attribute sets, bench/bench_locrib.peer_sets) into a
compiled LocRib (untimed). Timed, best / mean of the rounds, over columns of ~n records:

* export_split: the LocRib.update output of the last peer's load (every prefix's second
  changes) with members {} (1 key), {0, 1} (keys (0, 1) and specials), all peers;
* select_for: dump_best() for client 0 (its own best excluded), and with withdraw_none;
* lookup_best: every prefix of the table as keys, in message order and shuffled;
* gather: peer 0's AdjRibIn.dump() (n records over the table's attribute sets, ~3 per id);
* addpath_map: peer 0's Changes column.

``--pure`` also times the pure twins (rserver/rib/export_py.py) on a 20k-record slice.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time

from bench.bench_locrib import peer_sets
from bench.tablegen import generate_v4, generate_v6


def timeit(fn, rounds):
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.mean(ts)


def run(afi: int, n: int, npeers: int, rounds: int, pure: bool = False, out=sys.stdout) -> dict:
    from rserver.codec import BACKENDS
    from rserver.codec.layout import CodecContext
    from rserver.rib import _tables as T

    codec = BACKENDS["cython"]
    table = generate_v4(n) if afi == 1 else generate_v6(n)
    b = codec.decode_updates(table.wire, CodecContext())
    records = b.v4 if afi == 1 else b.v6
    rs = 13 if afi == 1 else 25
    nrec = len(records) // rs
    at = T.AttrTable()
    lr = T.LocRib(afi, at)
    lr.reserve_prefixes(nrec)
    adj, chs, lc = [], [], b""
    for p in range(npeers):
        lr.set_peer(p, 0x0A000000 + p, bytes([10, 0, 0, p + 1]))
        rib = T.AdjRibIn(afi, at)
        ch = rib.apply(records, at.intern_batch(*peer_sets(b.attr_data, b.attr_index, p)))
        lc = lr.update(p, ch)
        adj.append(rib)
        chs.append(ch)
    osz = 1 + (4 if afi == 1 else 16) + 48
    dump = lr.dump_best()
    dumpin = adj[0].dump()
    rows = [records[i:i + rs] for i in range(0, len(records), rs)]
    random.Random(1).shuffle(rows)
    shuffled = b"".join(rows)
    del rows
    allm = bytes([0xFF]) * ((npeers >> 3) + 1)
    print(f"{'ipv4' if afi == 1 else 'ipv6'}: {nrec:,} prefixes x {npeers} peers, "
          f"{b.n_attrsets:,} attribute sets per peer; LOCCHG column {len(lc) // osz:,} records, "
          f"gather input {len(dumpin) // rs:,} records over {len(at) // npeers:,} ids", file=out)
    cases = [
        ("export_split, members {} (1 key)", len(lc) // osz, lambda: T.export_split(lc, afi, b"")),
        ("export_split, members {0,1}", len(lc) // osz, lambda: T.export_split(lc, afi, b"\x03")),
        ("export_split, all peers members", len(lc) // osz, lambda: T.export_split(lc, afi, allm)),
        ("select_for client 0", nrec, lambda: T.select_for(dump, afi, 0)),
        ("select_for client 0, withdraw_none", nrec, lambda: T.select_for(dump, afi, 0, True)),
        ("lookup_best (message order)", nrec, lambda: lr.lookup_best(records)),
        ("lookup_best (shuffled)", nrec, lambda: lr.lookup_best(shuffled)),
        ("gather (AdjRibIn.dump)", nrec, lambda: at.gather(dumpin, afi)),
        ("addpath_map (Changes)", nrec, lambda: T.addpath_map(chs[0], afi, 5, True)),
    ]
    res = {}
    print(f"{'kernel':<40} {'records':>10} {'best s':>8} {'mean s':>8} {'records/s (best)':>18}", file=out)
    gc.disable()
    try:
        for name, k, fn in cases:
            fn()
            best, mean = timeit(fn, rounds)
            res[name] = k / best
            print(f"{name:<40} {k:>10,} {best:>8.4f} {mean:>8.4f} {k / best:>18,.0f}", file=out)
    finally:
        gc.enable()
    if pure:
        from rserver.rib import export_py as P
        m = 20_000
        lcs, ds, keys, dis = lc[:m * osz], dump[:m * (osz - 24)], records[:m * rs], dumpin[:m * rs]
        pc = [("pure export_split {0,1}", len(lcs) // osz, lambda: P.export_split(lcs, afi, b"\x03")),
              ("pure select_for", len(ds) // (osz - 24), lambda: P.select_for(ds, afi, 0)),
              ("pure lookup_best", len(keys) // rs, lambda: P.lookup_best(lr, keys)),
              ("pure gather", len(dis) // rs, lambda: P.gather(at, dis, afi))]
        for name, k, fn in pc:
            best, mean = timeit(fn, 1)
            print(f"{name:<40} {k:>10,} {best:>8.4f} {mean:>8.4f} {k / best:>18,.0f}", file=out)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--peers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--v6", action="store_true")
    ap.add_argument("--pure", action="store_true")
    a = ap.parse_args(argv)
    run(2 if a.v6 else 1, a.n, a.peers, a.rounds, a.pure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
