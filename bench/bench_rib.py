"""Throughput and memory of the RIB's hot tables (ext/_rib.pyx -> rserver.rib._tables).

    python -m bench.bench_rib [--v4 1000000] [--v6 0] [--rounds 5]

Decodes a generated full table (bench/tablegen.py) with the compiled codec once, then per
round, on fresh tables: AttrTable.intern_batch + AdjRibIn.apply (the full-table load), a
second peer loading the same table into the same AttrTable (every set already interned),
the same batch re-applied (route refresh: no changes), then clear() and collect(). Prints
the best and the mean of the rounds. Memory: ``memory_bytes()`` of the tables (tracemalloc
cannot see malloc'd C memory) and the process RSS delta of the first round's load.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time

from bench.memory import rss_mb
from bench.tablegen import generate_v4, generate_v6


def _t(fn, *a):
    t0 = time.perf_counter()
    r = fn(*a)
    return time.perf_counter() - t0, r


def _spans(attr_index):
    import struct
    for i in range(0, len(attr_index), 96):
        yield struct.unpack_from("<II", attr_index, i)


def run(afi: int, n: int, rounds: int, out=sys.stdout) -> dict:
    from rserver.codec import BACKENDS
    from rserver.codec.layout import CodecContext
    from rserver.rib._tables import AdjRibIn, AttrTable

    codec = BACKENDS["cython"]
    table = generate_v4(n) if afi == 1 else generate_v6(n)
    b = codec.decode_updates(table.wire, CodecContext())
    records = b.v4 if afi == 1 else b.v6
    nrec = len(records) // (13 if afi == 1 else 25)
    fam = "ipv4" if afi == 1 else "ipv6"
    print(f"{fam}: {nrec:,} prefixes, {b.n_attrsets:,} attribute sets "
          f"({len(set(b.attr_data[o:o + l] for o, l in _spans(b.attr_index))):,} distinct)", file=out)
    rows: dict[str, list[float]] = {k: [] for k in
                                    ("intern", "apply", "load", "intern2", "apply2", "refresh",
                                     "clear", "collect")}
    mem = {}
    gc.disable()
    try:
        for rnd in range(rounds):
            rss0 = rss_mb()
            at = AttrTable()
            rib = AdjRibIn(afi, at)
            ti, idmap = _t(at.intern_batch, b.attr_data, b.attr_index)
            ta, ch = _t(rib.apply, records, idmap)
            at.collect()
            rss1 = rss_mb()
            assert len(rib) == nrec and len(ch) == nrec * (17 if afi == 1 else 29)
            if rnd == 0:
                mem = {"attr_mb": at.memory_bytes() / 2**20, "rib_mb": rib.memory_bytes() / 2**20,
                       "rss_mb": rss1 - rss0, "changes_mb": len(ch) / 2**20, "sets": len(at),
                       "capacity": rib.capacity()}
            del ch
            nsets = len(at)
            rib2 = AdjRibIn(afi, at)
            ti2, idmap2 = _t(at.intern_batch, b.attr_data, b.attr_index)
            ta2, _ = _t(rib2.apply, records, idmap2)
            tr, ch = _t(rib.apply, records, idmap)
            assert ch == b""
            tc, ch = _t(rib.clear)
            tc2, _ = _t(rib2.clear)
            del ch
            tg, freed = _t(at.collect)
            assert freed == nsets and len(at) == 0
            for k, v in (("intern", ti), ("apply", ta), ("load", ti + ta), ("intern2", ti2),
                         ("apply2", ta2), ("refresh", tr), ("clear", tc), ("collect", tg)):
                rows[k].append(v)
            del rib, rib2, at
    finally:
        gc.enable()
    names = {
        "intern": "intern_batch (new sets)",
        "apply": "apply (all new prefixes)",
        "load": "intern_batch + apply",
        "intern2": "intern_batch (all known)",
        "apply2": "apply, 2nd peer",
        "refresh": "apply again (0 changes)",
        "clear": "clear() (withdraw all)",
        "collect": "collect() after clears",
    }
    print(f"{'operation':<26} {'best s':>8} {'mean s':>8} {'prefixes/s (best)':>18}", file=out)
    for k, v in rows.items():
        best = min(v)
        print(f"{names[k]:<26} {best:>8.4f} {statistics.mean(v):>8.4f} {nrec / best:>18,.0f}",
              file=out)
    print(f"memory: AttrTable {mem['attr_mb']:.1f} MB ({mem['sets']:,} sets), "
          f"AdjRibIn {mem['rib_mb']:.1f} MB (capacity {mem['capacity']:,}), "
          f"RSS delta of the load {mem['rss_mb']:.1f} MB (incl. the {mem['changes_mb']:.1f} MB "
          f"changes column and the idmap)", file=out)
    return {"rows": rows, "mem": mem, "n": nrec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--v4", type=int, default=1_000_000)
    ap.add_argument("--v6", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    if a.v4:
        run(1, a.v4, a.rounds)
    if a.v6:
        run(2, a.v6, a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
