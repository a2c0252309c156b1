"""Throughput and memory of the Loc-RIB (ext/_rib.pyx ``LocRib`` -> rserver.rib._tables).

    python -m bench.bench_locrib [--n 100000] [--peers 10] [--rounds 3] [--v6]

A generated table (bench/tablegen.py) is decoded once with the compiled codec; every peer
then gets its own copy of the attribute sets (the blob with a peer tag appended, and the
decision fields of the ATTR_REC permuted: AS path length +0..2, ORIGIN, MED present or not,
neighbour AS from a small set so that step 4 groups form, now and then a LOCAL_PREF), so
that each of the N peers announces the same prefixes with different attributes. Interning
and AdjRibIn.apply run untimed; timed are the LocRib.update calls:

* load: the N peers one after another (candidate lists grow 1 -> N; the decision runs
  over k candidates for the k-th peer), reported as (prefixes x peers) / s;
* re-announce: peer 0 sends the whole table again with other attributes (every prefix
  re-decided over N candidates);
* same fields: peer 0 again, other blobs with the same decision fields (e.g. only the
  communities changed): the decision is skipped, only the attr ids in (best, second) change;
* withdraw: peer 0 session down (AdjRibIn.clear() -> update), every prefix re-decided.

Memory: ``LocRib.memory_bytes()`` (malloc'd; tracemalloc cannot see it) and the RSS delta.
"""
from __future__ import annotations

import argparse
import gc
import random
import statistics
import struct
import sys
import time

from bench.memory import rss_mb
from bench.tablegen import generate_v4, generate_v6

_REC = struct.Struct("<IIIBBHIIII16s16sBBHIIIIIII")


def peer_sets(attr_data: bytes, attr_index: bytes, peer: int, seed: int = 7, variant: int = 0):
    """(attr_data, attr_index) of a copy of the batch's sets for one peer (see the doc)."""
    rng = random.Random(seed * 1000 + peer)
    data = bytearray()
    idx = bytearray()
    tag = bytes([0xE0, peer & 0xFF, seed & 0xFF, variant & 0xFF])
    for i in range(0, len(attr_index), 96):
        f = list(_REC.unpack_from(attr_index, i))
        off, ln = f[0], f[1]
        blob = attr_data[off:off + ln] + tag
        f[0], f[1] = len(data), len(blob)
        f[3] = rng.randrange(2)                         # origin
        f[5] = max(1, f[5] + rng.randrange(3))          # path_len
        f[6] = 64500 + rng.randrange(4)                 # first_as
        if rng.random() < 0.5:
            f[2] |= 1                                   # AF_MED
            f[8] = rng.randrange(3) * 10
        else:
            f[2] &= ~1
        if rng.random() < 0.05:
            f[2] |= 2                                   # AF_LOCAL_PREF
            f[9] = 200
        data += blob
        idx += _REC.pack(*f)
    return bytes(data), bytes(idx)


def run(afi: int, n: int, npeers: int, rounds: int, out=sys.stdout) -> dict:
    from rserver.codec import BACKENDS
    from rserver.codec.layout import CodecContext
    from rserver.rib._tables import AdjRibIn, AttrTable, LocRib

    codec = BACKENDS["cython"]
    table = generate_v4(n) if afi == 1 else generate_v6(n)
    b = codec.decode_updates(table.wire, CodecContext())
    records = b.v4 if afi == 1 else b.v6
    nrec = len(records) // (13 if afi == 1 else 25)
    sets = [peer_sets(b.attr_data, b.attr_index, p) for p in range(npeers)]
    sets2 = peer_sets(b.attr_data, b.attr_index, 0, seed=8)
    sets3 = peer_sets(b.attr_data, b.attr_index, 0, seed=8, variant=1)   # same decision fields
    print(f"{'ipv4' if afi == 1 else 'ipv6'}: {nrec:,} prefixes x {npeers} peers, "
          f"{b.n_attrsets:,} attribute sets per peer", file=out)
    rows: dict[str, list[float]] = {"load": [], "reannounce": [], "same": [], "withdraw": []}
    mem = {}
    gc.disable()
    try:
        for rnd in range(rounds):
            at = AttrTable()
            lr = LocRib(afi, at)
            adj = []
            chs = []
            for p in range(npeers):
                lr.set_peer(p, 0x0A000000 + p, bytes([10, 0, 0, p + 1]))
                rib = AdjRibIn(afi, at)
                idmap = at.intern_batch(*sets[p])
                chs.append(rib.apply(records, idmap))
                adj.append(rib)
            rss0 = rss_mb()
            t0 = time.perf_counter()
            nout = 0
            for p in range(npeers):
                nout += len(lr.update(p, chs[p]))
            t_load = time.perf_counter() - t0
            rss1 = rss_mb()
            assert len(lr) == nrec and lr.n_candidates() == nrec * npeers
            idmap = at.intern_batch(*sets2)
            ch = adj[0].apply(records, idmap)
            t0 = time.perf_counter()
            o2 = lr.update(0, ch)
            t_re = time.perf_counter() - t0
            idmap = at.intern_batch(*sets3)
            ch = adj[0].apply(records, idmap)
            t0 = time.perf_counter()
            o4 = lr.update(0, ch)
            t_same = time.perf_counter() - t0
            ch = adj[0].clear()
            t0 = time.perf_counter()
            o3 = lr.update(0, ch)
            t_wd = time.perf_counter() - t0
            if rnd == 0:
                mem = {"lr_mb": lr.memory_bytes() / 2**20, "rss_mb": rss1 - rss0,
                       "cap": lr.capacity(), "out_load": nout // (53 if afi == 1 else 65),
                       "out_re": len(o2) // (53 if afi == 1 else 65),
                       "out_wd": len(o3) // (53 if afi == 1 else 65)}
            rows["load"].append(t_load)
            rows["reannounce"].append(t_re)
            rows["withdraw"].append(t_wd)
            rows["same"].append(t_same)
            del lr, adj, chs, ch, o2, o3, o4, at
    finally:
        gc.enable()
    names = {"load": f"load {npeers} peers", "reannounce": f"re-announce 1 peer ({npeers} cands)",
             "same": "re-announce, same decision fields",
             "withdraw": f"withdraw 1 peer ({npeers} cands)"}
    units = {"load": nrec * npeers, "reannounce": nrec, "same": nrec, "withdraw": nrec}
    print(f"{'operation':<32} {'best s':>8} {'mean s':>8} {'cand. updates/s (best)':>24}", file=out)
    for k, v in rows.items():
        best = min(v)
        print(f"{names[k]:<32} {best:>8.4f} {statistics.mean(v):>8.4f} {units[k] / best:>24,.0f}",
              file=out)
    print(f"effective changes: load {mem['out_load']:,}, re-announce {mem['out_re']:,}, "
          f"withdraw {mem['out_wd']:,}", file=out)
    print(f"memory: LocRib {mem['lr_mb']:.1f} MB (capacity {mem['cap']:,} prefixes, "
          f"{nrec * npeers:,} candidates), RSS delta of the load {mem['rss_mb']:.1f} MB "
          f"(incl. the output columns)", file=out)
    return {"rows": rows, "mem": mem, "n": nrec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--peers", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--v6", action="store_true")
    a = ap.parse_args(argv)
    run(2 if a.v6 else 1, a.n, a.peers, a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
