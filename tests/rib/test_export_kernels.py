"""Export kernels (ext/_rib.pyx "Export kernels" -> rserver.rib._tables, pure twin
rserver/rib/export_py.py): golden cases written from the rules, and hypothesis tests that
drive real tables (compiled AttrTable/AdjRibIn/LocRib and the pure models side by side),
check compiled == pure byte for byte, and check the real spec of export_split: applying
``general`` + ``special`` to a per-member table reproduces, for every member and prefix,
what that member must be sent (RFC 7947 §2.3.2.1: the best unless it is its own path, then
the second best)."""
from __future__ import annotations

import random
import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rserver.codec import BACKENDS
from rserver.codec.layout import ADDPATH_V4, ADDPATH_V6, ATTR_REC, NO_ATTR, NO_OFF, CodecContext
from rserver.rib import export_py, locrib_py, tables_py

try:
    from rserver.rib import _tables
except ImportError:  # pragma: no cover
    _tables = None

NONE = 0xFFFFFFFF
T = struct.Struct("<III")
NONE_T = (NONE, NONE, NONE)


def _cy():
    if _tables is None:
        pytest.fail("rserver.rib._tables is not built (python setup.py build_ext --inplace)")
    return _tables


def backend(name):
    if name == "pure":
        return SimpleNamespace(
            name="pure", AttrTable=tables_py.AttrTable, AdjRibIn=tables_py.AdjRibIn,
            LocRib=locrib_py.LocRib, export_split=export_py.export_split,
            select_for=export_py.select_for, lookup_best=export_py.lookup_best,
            gather=export_py.gather, addpath_map=export_py.addpath_map)
    m = _cy()
    return SimpleNamespace(
        name="cython", AttrTable=m.AttrTable, AdjRibIn=m.AdjRibIn, LocRib=m.LocRib,
        export_split=m.export_split, select_for=m.select_for, lookup_best=m.lookup_best,
        gather=lambda at, recs, afi: at.gather(recs, afi), addpath_map=m.addpath_map)


@pytest.fixture(params=["pure", "cython"])
def K(request):
    return backend(request.param)


# --- helpers ---------------------------------------------------------------------------
def alen_of(afi):
    return 4 if afi == 1 else 16


def pfx(i, afi=1):
    """(plen, addr) of test prefix i."""
    if afi == 1:
        return 24, bytes([10, (i >> 8) & 0xFF, i & 0xFF, 0])
    return 48, bytes([0x20, 0x01, 0x0D, 0xB8, (i >> 8) & 0xFF, i & 0xFF]) + bytes(10)


def rec(attr, key, path_id=0):
    plen, addr = key
    return struct.pack("<IIB", attr, path_id, plen) + addr


def locchg(key, nb=None, ns=None, ob=None, os_=None):
    plen, addr = key
    return bytes([plen]) + addr + b"".join(T.pack(*(t or NONE_T)) for t in (nb, ns, ob, os_))


def bestrec(key, b=None, s=None):
    plen, addr = key
    return bytes([plen]) + addr + T.pack(*(b or NONE_T)) + T.pack(*(s or NONE_T))


def bitmap(members):
    n = (max(members) >> 3) + 1 if members else 0
    b = bytearray(n)
    for m in members:
        b[m >> 3] |= 1 << (m & 7)
    return bytes(b)


def parse_recs(buf, afi=1):
    rs = 9 + alen_of(afi)
    assert len(buf) % rs == 0
    return [(struct.unpack_from("<I", buf, i)[0], struct.unpack_from("<I", buf, i + 4)[0],
             (buf[i + 8], buf[i + 9:i + rs])) for i in range(0, len(buf), rs)]


_nonce = [0]


def attr_sets(n, afi=1, seed=0):
    """(attr_data, attr_index) of n attribute sets with varied decision fields."""
    rng = random.Random(seed)
    data, idx = b"", b""
    for i in range(n):
        _nonce[0] += 1
        lp = rng.choice([None, 100, 200])
        med = rng.choice([None, 0, 10])
        path_len = rng.randrange(1, 4)
        origin = rng.randrange(2)
        fas = 65000 + rng.randrange(3)
        flags = (2 if lp is not None else 0) | (1 if med is not None else 0)
        blob = struct.pack("<IIHBIII", flags, lp or 0, path_len, origin, fas, med or 0, i) + b"x" * (i % 5)
        idx += ATTR_REC.pack(len(data), len(blob), flags, origin, afi, path_len, fas, fas,
                             med or 0, lp or 0, b"\xc0\x00\x02\x01", b"", 4, 0, 0, NO_OFF, 0, NO_OFF,
                             0, NO_OFF, 0, NO_OFF)
        data += blob
    return data, idx


PEERS = {i: (0x0A000000 + i, bytes([10, 0, 0, i])) for i in range(1, 9)}


class World:
    """One backend's AttrTable + per-peer AdjRibIn + LocRib, fed the same batches."""

    def __init__(self, K, afi, npeers, nsets, seed=0):
        self.K, self.afi = K, afi
        self.at = K.AttrTable()
        self.idmap = self.at.intern_batch(*attr_sets(nsets, afi, seed))
        self.ids = list(struct.unpack(f"<{nsets}I", self.idmap))
        self.lr = K.LocRib(afi, self.at)
        self.adj = {}
        for p in range(1, npeers + 1):
            self.lr.set_peer(p, *PEERS[p])
            self.adj[p] = K.AdjRibIn(afi, self.at)

    def batch(self, peer, ops):
        """ops: [(prefix i, path_id, set index or None)] -> (changes, locchg)."""
        recs = b"".join(rec(NO_ATTR if s is None else s, pfx(i, self.afi), pid) for i, pid, s in ops)
        ch = self.adj[peer].apply(recs, self.idmap)
        out = self.lr.update(peer, ch)
        return ch, out


# --- export_split: golden --------------------------------------------------------------
K1 = pfx(1)


def test_split_best_moves_between_members(K):
    # members {1, 2, 3}; best moves from peer 1 (attr 10) to peer 2 (attr 20)
    before_b, before_s = (1, 0, 10), (2, 0, 20)
    after_b, after_s = (2, 0, 20), (1, 0, 11)     # peer 1 changed its path to a worse one
    g, s = K.export_split(locchg(K1, after_b, after_s, before_b, before_s), 1, bitmap({1, 2, 3}))
    assert g == {(1, 2): rec(20, K1)}
    # peer 1 had the second (20) before: now the best is peer 2's 20 -> no change for 1
    # peer 2 had the best (10) before; now its own path is best -> it gets the second (11)
    assert s == {2: rec(11, K1)}


def test_split_best_moves_special_for_both(K):
    # best moves from peer 1 to peer 2, peer 3's path second before and after
    ob, os_ = (1, 0, 10), (3, 0, 30)
    nb, ns = (2, 0, 20), (3, 0, 30)
    g, s = K.export_split(locchg(K1, nb, ns, ob, os_), 1, bitmap({1, 2, 3}))
    assert g == {(1, 2): rec(20, K1)}
    # 1 had the second (30), now the new best (20); 2 had the best (10), now the second (30)
    assert s == {1: rec(20, K1), 2: rec(30, K1)}
    # peer 1's old best becomes the second: 2 is now sent 1's path, 1 is sent 2's
    g, s = K.export_split(locchg(K1, nb, ob, ob, os_), 1, bitmap({1, 2, 3}))
    assert g == {(1, 2): rec(20, K1)}
    assert s == {1: rec(20, K1)}


def test_split_first_announcement_from_non_member(K):
    g, s = K.export_split(locchg(K1, (7, 0, 5)), 1, bitmap({1, 2}))
    assert g == {(NONE, NONE): rec(5, K1)}
    assert s == {}


def test_split_first_announcement_from_member(K):
    g, s = K.export_split(locchg(K1, (2, 0, 5)), 1, bitmap({1, 2}))
    assert g == {(2, NONE): rec(5, K1)}
    assert s == {}          # 2 has nothing before and after (its own path only)


def test_split_withdraw_last_path(K):
    g, s = K.export_split(locchg(K1, None, None, (2, 0, 5), None), 1, bitmap({1, 2}))
    assert g == {(2, NONE): rec(NO_ATTR, K1)}
    assert s == {}


def test_split_same_attr_other_peer(K):
    # best moves from peer 1 to peer 3 with the same attr id: no general change
    g, s = K.export_split(locchg(K1, (3, 0, 7), (1, 0, 7), (1, 0, 7), (2, 0, 8)), 1, bitmap({1, 2, 3}))
    assert g == {}
    # 1: had its second 8, now 3's 7 (recv = best since best is 3's) -> 7
    # 3: had 1's 7 before, now its own best -> second 7: no change
    assert s == {1: rec(7, K1)}


def test_split_second_only_change(K):
    # only the second changes: the best's peer (member) sees it, nobody else
    g, s = K.export_split(locchg(K1, (1, 0, 7), (3, 0, 9), (1, 0, 7), (2, 0, 8)), 1, bitmap({1}))
    assert g == {}
    assert s == {1: rec(9, K1)}
    # best's peer not a member: nothing at all
    assert K.export_split(locchg(K1, (1, 0, 7), (3, 0, 9), (1, 0, 7), (2, 0, 8)), 1, bitmap({2})) == ({}, {})


def test_split_order_keys_and_ipv6(K):
    k2, k3 = pfx(2, 2), pfx(3, 2)
    k1 = pfx(1, 2)
    col = (locchg(k1, (9, 0, 1)) + locchg(k2, (1, 0, 2)) + locchg(k3, (9, 0, 3))
           + locchg(pfx(4, 2), (1, 0, 4), None, (1, 0, 3)))
    g, s = K.export_split(col, 2, bitmap({1}))
    assert g == {(NONE, NONE): rec(1, k1) + rec(3, k3), (1, NONE): rec(2, k2) + rec(4, pfx(4, 2))}
    assert s == {}
    with pytest.raises(ValueError):
        K.export_split(col[:-1], 2, b"")
    with pytest.raises(ValueError):
        K.export_split(col, 3, b"")
    assert K.export_split(b"", 1, b"") == ({}, {})


def test_split_member_beyond_bitmap(K):
    g, s = K.export_split(locchg(K1, (100, 0, 1)), 1, bitmap({1}))
    assert g == {(NONE, NONE): rec(1, K1)}


# --- select_for / lookup_best / addpath_map: golden -------------------------------------
def test_select_for(K):
    col = (bestrec(pfx(1), (1, 0, 10), (2, 0, 20)) + bestrec(pfx(2), (2, 0, 30))
           + bestrec(pfx(3), (3, 5, 40), (1, 0, 41)))
    assert K.select_for(col, 1, 1) == rec(20, pfx(1)) + rec(30, pfx(2)) + rec(40, pfx(3))
    assert K.select_for(col, 1, 2) == rec(10, pfx(1)) + rec(40, pfx(3))
    assert K.select_for(col, 1, 2, True) == rec(10, pfx(1)) + rec(NO_ATTR, pfx(2)) + rec(40, pfx(3))
    assert K.select_for(col, 1, NONE) == rec(10, pfx(1)) + rec(30, pfx(2)) + rec(40, pfx(3))
    assert K.select_for(b"", 1, 1) == b""
    with pytest.raises(ValueError):
        K.select_for(col + b"x", 1, 1)


def test_addpath_map(K):
    chg = rec(5, pfx(1), 3) + struct.pack("<I", NO_ATTR) + rec(NO_ATTR, pfx(2), 5000) + struct.pack("<I", 4)
    out, mx = K.addpath_map(chg, 1, 7, True)
    assert out == rec(5, pfx(1), (3 << 20) | 7) + rec(NO_ATTR, pfx(2), ((5000 & 0xFFF) << 20) | 7)
    assert mx == 5000
    out, mx = K.addpath_map(rec(1, pfx(9, 2), 2), 2, 0x123456)
    assert out == rec(1, pfx(9, 2), (2 << 20) | 0x23456) and mx == 2
    assert K.addpath_map(b"", 1, 1) == (b"", 0)
    with pytest.raises(ValueError):
        K.addpath_map(rec(1, pfx(1)), 1, 1, True)


def test_lookup_best(K):
    w = World(K, 1, 3, 4)
    w.batch(1, [(1, 0, 0), (2, 0, 1)])
    w.batch(2, [(1, 0, 2)])
    keys = rec(0, pfx(3), 9) + rec(123, pfx(1), 4) + rec(0, pfx(2))
    out = K.lookup_best(w.lr, keys)
    b1, s1 = w.lr.best(pfx(1))
    b2, _ = w.lr.best(pfx(2))
    assert out == bestrec(pfx(3)) + bestrec(pfx(1), b1, s1) + bestrec(pfx(2), b2)
    assert {s1[0], b1[0]} == {1, 2}
    with pytest.raises(ValueError):
        K.lookup_best(w.lr, keys[:-1])


# --- gather -----------------------------------------------------------------------------
def test_gather_golden(K):
    at = K.AttrTable()
    data, idx = attr_sets(3)
    ids = list(struct.unpack("<3I", at.intern_batch(data, idx)))
    a, b, c = ids
    recs = (rec(b, pfx(1)) + rec(NO_ATTR, pfx(2)) + rec(a, pfx(3), 4) + rec(b, pfx(4))
            + rec(NO_ATTR, pfx(5)) + rec(a, pfx(6)))
    ad, ai, lr = K.gather(at, recs, 1)
    assert lr == (rec(NO_ATTR, pfx(2)) + rec(NO_ATTR, pfx(5)) + rec(0, pfx(1)) + rec(0, pfx(4))
                  + rec(1, pfx(3), 4) + rec(1, pfx(6)))
    assert ad == at.blob(b) + at.blob(a)
    ra, rb = bytearray(at.rec(a)), bytearray(at.rec(b))
    ra[0:4] = struct.pack("<I", len(at.blob(b)))
    assert ai == bytes(rb) + bytes(ra)
    assert K.gather(at, b"", 1) == (b"", b"", b"")
    assert K.gather(at, rec(NO_ATTR, pfx(1)), 1) == (b"", b"", rec(NO_ATTR, pfx(1)))
    with pytest.raises(ValueError):
        K.gather(at, rec(a, pfx(1)) + rec(c + 1000, pfx(2)), 1)
    with pytest.raises(ValueError):
        K.gather(at, recs[:-1], 1)


def test_gather_freed_id(K):
    at = K.AttrTable()
    (aid,) = struct.unpack("<I", at.intern_batch(*attr_sets(1)))
    assert at.collect() == 1
    with pytest.raises(ValueError):
        K.gather(at, rec(aid, pfx(1)), 1)


def _table(afi, n, seed):
    from bench.tablegen import generate_v4, generate_v6
    t = (generate_v4 if afi == 1 else generate_v6)(n, seed=seed, cache=False)
    b = BACKENDS["cython"].decode_updates(t.wire, CodecContext())
    assert b.error is None
    return b.attr_data, b.attr_index, (b.v4 if afi == 1 else b.v6)


_TABLES = {}


def real_table(afi):
    if afi not in _TABLES:
        _TABLES[afi] = _table(afi, 400, 3)
    return _TABLES[afi]


@pytest.mark.parametrize("codec", ["pure", "cython"])
@pytest.mark.parametrize("afi", [1, 2])
@pytest.mark.parametrize("addpath", [False, True])
def test_gather_encodes_and_decodes_back(codec, afi, addpath):
    enc = BACKENDS[codec]
    if enc is None:
        pytest.fail("codec backend missing")
    data, idx, recs = real_table(afi)
    rs = 9 + alen_of(afi)
    rng = random.Random(afi * 10 + addpath)
    for K in (backend("pure"), backend("cython")):
        at = K.AttrTable()
        adj = K.AdjRibIn(afi, at)
        adj.apply(recs, at.intern_batch(data, idx))
        dump = adj.dump()
        rows = [dump[i:i + rs] for i in range(0, len(dump), rs)]
        rows.sort()
        rng.shuffle(rows)
        sel = []
        for r in rows[:300]:
            r = bytearray(r)
            if rng.random() < 0.2:
                r[0:4] = struct.pack("<I", NO_ATTR)
            if addpath:
                r[4:8] = struct.pack("<I", rng.randrange(1, 1 << 32))
            sel.append(bytes(r))
        sel = b"".join(sel)
        ad, ai, lrec = K.gather(at, sel, afi)
        bit = ADDPATH_V4 if afi == 1 else ADDPATH_V6
        ctx = CodecContext(addpath_tx=bit if addpath else 0)
        wire = enc.encode_batch(ad, ai, lrec, afi, ctx)
        back = BACKENDS["cython"].decode_updates(wire, CodecContext(addpath_rx=bit if addpath else 0))
        assert back.error is None and not back.problems
        got = []
        col = back.v4 if afi == 1 else back.v6
        for a, pid, key in parse_recs(col, afi):
            if a == NO_ATTR:
                got.append((None, pid, key))
            else:
                off, ln = struct.unpack_from("<II", back.attr_index, a * 96)
                got.append((back.attr_data[off:off + ln], pid, key))
        want = []
        for a, pid, key in parse_recs(sel, afi):
            want.append((None if a == NO_ATTR else at.blob(a), pid if addpath else 0, key))
        assert sorted(got, key=repr) == sorted(want, key=repr)


# --- hypothesis: compiled == pure, and the export_split property -----------------------
def recv_attr(lr, key, m):
    b, s = lr.best(key)
    t = b if (b is None or b[0] != m) else s
    return None if t is None else t[2]


ops_st = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 1), st.one_of(st.none(), st.integers(0, 5))),
                  min_size=1, max_size=10)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(afi=st.sampled_from([1, 2]), npeers=st.integers(2, 5),
       members=st.sets(st.integers(0, 6), max_size=5),
       batches=st.lists(st.tuples(st.integers(1, 5), ops_st), min_size=1, max_size=12))
def test_model_split(afi, npeers, members, batches):
    worlds = [World(backend("pure"), afi, npeers, 6), World(backend("cython"), afi, npeers, 6)]
    mb = bitmap(members)
    sim = {m: {} for m in members}            # member -> {key: attr}
    keys = [pfx(i, afi) for i in range(8)]
    for peer, ops in batches:
        peer = (peer - 1) % npeers + 1
        # at most one op per (prefix, path id) per batch keeps the ops meaningful; the
        # tables accept duplicates anyway
        outs = [w.batch(peer, ops) for w in worlds]
        assert outs[0] == outs[1]
        ch, lc = outs[0]
        splits = [w.K.export_split(lc, afi, mb) for w in worlds]
        assert splits[0] == splits[1]
        g, s = splits[1]
        assert all(v for v in g.values()) and all(v for v in s.values())
        aps = [w.K.addpath_map(ch, afi, peer, True) for w in worlds]
        assert aps[0] == aps[1]
        for m, tab in sim.items():
            for (a, b), col in g.items():
                if m in (a, b):
                    continue
                for attr, pid, key in parse_recs(col, afi):
                    assert pid == 0
                    if attr == NO_ATTR:
                        tab.pop(key, None)
                    else:
                        tab[key] = attr
            for attr, pid, key in parse_recs(s.get(m, b""), afi):
                if attr == NO_ATTR:
                    tab.pop(key, None)
                else:
                    tab[key] = attr
        lr = worlds[1].lr
        for m, tab in sim.items():
            for key in keys:
                assert tab.get(key) == recv_attr(lr, key, m), (m, key)
        # select_for over the full dump reproduces the same tables; lookup_best == dump
        dump = worlds[1].lr.dump_best()
        for w in worlds:
            lb = w.K.lookup_best(w.lr, b"".join(rec(0, k) for k in keys))
            assert lb == b"".join(bestrec(k, *w.lr.best(k)) for k in keys)
        for m, tab in sim.items():
            outs = [w.K.select_for(dump, afi, m) for w in worlds]
            assert outs[0] == outs[1]
            assert {key: a for a, _, key in parse_recs(outs[0], afi)} == tab
            wd = [w.K.select_for(dump, afi, m, True) for w in worlds]
            assert wd[0] == wd[1] and len(wd[0]) // (9 + alen_of(afi)) == len(lr)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(afi=st.sampled_from([1, 2]),
       rows=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.one_of(st.none(), st.integers(0, 7))),
                     max_size=40, unique_by=lambda r: (r[0], r[1])))
def test_model_gather(afi, rows):
    res = []
    for K in (backend("pure"), backend("cython")):
        at = K.AttrTable()
        ids = list(struct.unpack("<8I", at.intern_batch(*attr_sets(8, afi))))
        recs = b"".join(rec(NO_ATTR if s is None else ids[s], pfx(i, afi), pid) for i, pid, s in rows)
        res.append(K.gather(at, recs, afi))
        ad, ai, lrec = res[-1]
        blob_of = {}
        for j in range(len(ai) // 96):
            off, ln = struct.unpack_from("<II", ai, j * 96)
            blob_of[j] = ad[off:off + ln]
        got = {(pid, key): (None if a == NO_ATTR else blob_of[a]) for a, pid, key in parse_recs(lrec, afi)}
        assert got == {(pid, pfx(i, afi)): (None if s is None else at.blob(ids[s])) for i, pid, s in rows}
        # structure: withdrawals first, then local ids 0..k-1 ascending, blobs in place
        loc = [a for a, _, _ in parse_recs(lrec, afi)]
        nw = sum(1 for a in loc if a == NO_ATTR)
        assert loc[:nw] == [NO_ATTR] * nw and loc[nw:] == sorted(loc[nw:])
        k = len(ai) // 96
        assert set(loc[nw:]) == set(range(k))
        assert sorted((pid, key) for _, pid, key in parse_recs(lrec, afi)) == sorted(
            (pid, pfx(i, afi)) for i, pid, _ in rows)
        for j in range(k):
            off, ln = struct.unpack_from("<II", ai, j * 96)
            blob = ad[off:off + ln]
            aid = at.lookup(blob)
            assert aid is not None and ai[j * 96 + 4:j * 96 + 96] == at.rec(aid)[4:]
    assert res[0] == res[1]


trip_st = st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(0, 3), st.integers(0, 6)))


@settings(max_examples=80, deadline=None)
@given(afi=st.sampled_from([1, 2]), members=st.sets(st.integers(0, 45), max_size=30),
       rows=st.lists(st.tuples(trip_st, trip_st, trip_st, trip_st), max_size=60),
       client=st.one_of(st.just(NONE), st.integers(0, 41)), wn=st.booleans())
def test_synthetic_columns(afi, members, rows, client, wn):
    """Arbitrary LOCCHG / BEST columns (many keys: the C key map grows): compiled == pure."""
    P, C = backend("pure"), backend("cython")
    col = b"".join(locchg(pfx(i, afi), *r) for i, r in enumerate(rows))
    mb = bitmap(members)
    assert C.export_split(col, afi, mb) == P.export_split(col, afi, mb)
    best = b"".join(bestrec(pfx(i, afi), r[0], r[1]) for i, r in enumerate(rows))
    assert C.select_for(best, afi, client, wn) == P.select_for(best, afi, client, wn)
    recs = b"".join(rec(i, pfx(i, afi), (r[0] or (0, 0))[0] * 1000) for i, r in enumerate(rows))
    assert C.addpath_map(recs, afi, client, False) == P.addpath_map(recs, afi, client, False)


@pytest.mark.parametrize("afi", [1, 2])
def test_unique_prefixes_both_backends(afi):
    """Distinct prefixes of LOCCHG and key columns, first appearance first, identical twins."""
    import random
    from rserver.rib import _tables
    from rserver.rib import export_py
    alen = 4 if afi == 1 else 16
    rng = random.Random(afi)
    keys = [bytes([rng.choice((8, 16, 24))]) + bytes(rng.randrange(4) for _ in range(alen)) for _ in range(300)]
    triple = b"\xff" * 12
    locchg = [b"".join(k + triple * 3 + b"\x01" * 12 for k in rng.sample(keys, 100)) for _ in range(3)]
    keycol = ("keys", b"".join(b"\x00" * 8 + k for k in rng.sample(keys, 50)))
    cols = locchg + [keycol, b""]
    want = list(dict.fromkeys(
        [col[i:i + 1 + alen] for col in locchg for i in range(0, len(col), 1 + alen + 48)]
        + [keycol[1][i + 8:i + 9 + alen] for i in range(0, len(keycol[1]), 9 + alen)]))
    for mod in (_tables, export_py):
        out = mod.unique_prefixes(cols, afi)
        rs = 9 + alen
        got = [out[i + 8:i + rs] for i in range(0, len(out), rs)]
        assert got == want
        assert all(out[i:i + 8] == b"\xff" * 4 + b"\x00" * 4 for i in range(0, len(out), rs))
    with pytest.raises(ValueError):
        _tables.unique_prefixes([b"\x00" * 5], afi)
