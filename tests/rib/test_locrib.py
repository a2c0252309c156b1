"""Loc-RIB: the compiled LocRib (ext/_rib.pyx -> rserver.rib._tables) and the pure reference
model (rserver/rib/locrib_py.py, which decides with bestpath.select_best) must agree byte
for byte. Golden cases (one per decision step) run on both; a hypothesis test drives both
from the real AttrTable/AdjRibIn and checks every best against bestpath.select_best."""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rserver.codec.layout import AF_GSHUT, AF_LOCAL_PREF, AF_MED, ATTR_REC, NO_ATTR, NO_OFF
from rserver.rib import locrib_py
from rserver.rib.bestpath import PeerRef, candidate_from_attr_rec, select_best

try:
    from rserver.rib import _tables
except ImportError:  # pragma: no cover
    _tables = None

TRIPLE = struct.Struct("<III")


def _cy():
    if _tables is None:
        pytest.fail("rserver.rib._tables is not built (python setup.py build_ext --inplace)")
    return _tables


@pytest.fixture(params=["pure", "cython"])
def LR(request):
    if request.param == "pure":
        return locrib_py.LocRib
    return _cy().LocRib


# --- helpers ---------------------------------------------------------------------------
_nonce = [0]


def aset(lp=None, gshut=False, path_len=1, origin=0, first_as=65001, med=None, afi=1, tag=b""):
    """(ATTR_REC with off/len to fill, blob) of one attribute set with these decision fields."""
    flags = (AF_LOCAL_PREF if lp is not None else 0) | (AF_GSHUT if gshut else 0) | (AF_MED if med is not None else 0)
    _nonce[0] += 1
    blob = struct.pack("<IIHBIII", flags, lp or 0, path_len, origin, first_as, med or 0, _nonce[0]) + tag
    return (flags, origin, afi, path_len, first_as, med or 0, lp or 0), blob


def batch(sets):
    data, idx = b"", b""
    for (flags, origin, afi, path_len, first_as, med, lp), blob in sets:
        idx += ATTR_REC.pack(len(data), len(blob), flags, origin, afi, path_len, first_as, first_as,
                             med, lp, b"\xc0\x00\x02\x01", b"", 4, 0, 0, NO_OFF, 0, NO_OFF, 0,
                             NO_OFF, 0, NO_OFF)
        data += blob
    return data, idx


def intern(at, *sets):
    idmap = at.intern_batch(*batch(sets))
    return list(struct.unpack(f"<{len(sets)}I", idmap))


def chg(new, plen, addr, path_id=0, old=NO_ATTR):
    return struct.pack("<IIB", new, path_id, plen) + bytes(addr) + struct.pack("<I", old)


def parse_out(buf, afi=1):
    alen = 4 if afi == 1 else 16
    size = 1 + alen + 48
    assert len(buf) % size == 0
    out = []
    for i in range(0, len(buf), size):
        r = buf[i:i + size]
        paths = []
        for k in range(4):
            p = TRIPLE.unpack_from(r, 1 + alen + 12 * k)
            paths.append(None if p[2] == NO_ATTR else p)
        out.append(((r[0], r[1:1 + alen]), *paths))
    return out


P1 = (24, bytes([10, 0, 0, 0]))
P2 = (24, bytes([10, 0, 1, 0]))


def setup(LR, sets, peers=((1, 0x0A000001, b"\x0a\x00\x00\x01"), (2, 0x0A000002, b"\x0a\x00\x00\x02")), **opts):
    at = _cy().AttrTable()
    ids = intern(at, *sets)
    lr = LR(1, at, **opts)
    for idx, bgp_id, addr in peers:
        lr.set_peer(idx, bgp_id, addr)
    return at, ids, lr


def announce(lr, peer, aid, prefix=P1, path_id=0):
    return parse_out(lr.update(peer, chg(aid, prefix[0], prefix[1], path_id)))


def withdraw(lr, peer, prefix=P1, path_id=0):
    return parse_out(lr.update(peer, chg(NO_ATTR, prefix[0], prefix[1], path_id)))


def winner(LR, a, b, **opts):
    """Peer 1 announces set a, peer 2 set b (peer 1 has the lower BGP id and address)."""
    at, (ia, ib), lr = setup(LR, [a, b], **opts)
    announce(lr, 1, ia)
    announce(lr, 2, ib)
    best, second = lr.best(P1)
    assert second is not None and second[0] != best[0]
    return best[0]


# --- golden: one per decision step -----------------------------------------------------
def test_step1_local_pref(LR):
    assert winner(LR, aset(), aset(lp=200)) == 2
    assert winner(LR, aset(lp=50), aset()) == 2                     # default 100
    assert winner(LR, aset(lp=50), aset(), default_local_pref=40) == 1
    assert winner(LR, aset(lp=300, gshut=True), aset(lp=1)) == 2    # GSHUT = 0 (RFC 8326)
    assert winner(LR, aset(gshut=True, path_len=1), aset(path_len=9)) == 2


def test_step2_as_path_length(LR):
    assert winner(LR, aset(path_len=3), aset(path_len=2)) == 2
    assert winner(LR, aset(path_len=2, origin=2), aset(path_len=3)) == 1


def test_step3_origin(LR):
    assert winner(LR, aset(origin=1), aset(origin=0)) == 2
    assert winner(LR, aset(origin=1, med=99), aset(origin=2, med=0), always_compare_med=True) == 1


def test_step4_med_same_neighbour_as(LR):
    assert winner(LR, aset(first_as=1, med=20), aset(first_as=1, med=10)) == 2
    # different neighbour ASes: not compared -> step 7 (peer 1 lower BGP id)
    assert winner(LR, aset(first_as=1, med=20), aset(first_as=2, med=10)) == 1
    assert winner(LR, aset(first_as=1, med=20), aset(first_as=2, med=10), always_compare_med=True) == 2
    # missing MED = 0 (RFC), or worst
    assert winner(LR, aset(first_as=1), aset(first_as=1, med=5)) == 1
    assert winner(LR, aset(first_as=1), aset(first_as=1, med=5), missing_med_worst=True) == 2
    # unknown neighbour AS (0) is never MED-compared
    assert winner(LR, aset(first_as=0, med=20), aset(first_as=0, med=10)) == 1


def test_step4_set_elimination_not_pairwise(LR):
    # bestpath docstring: A=(AS1, MED 10, id 3), B=(AS1, MED 20, id 1), C=(AS2, id 2) -> C
    peers = ((1, 3, b"\x0a\x00\x00\x03"), (2, 1, b"\x0a\x00\x00\x01"), (3, 2, b"\x0a\x00\x00\x02"))
    at, (a, b, c), lr = setup(LR, [aset(first_as=1, med=10), aset(first_as=1, med=20), aset(first_as=2)], peers)
    for order in ([(1, a), (2, b), (3, c)], [(3, c), (2, b), (1, a)]):
        for peer, aid in order:
            announce(lr, peer, aid)
        assert lr.best(P1)[0] == (3, 0, c)
        assert lr.best(P1)[1] == (1, 0, a)      # second: best of {A, B}
        for peer, _ in order:
            withdraw(lr, peer)
        assert len(lr) == 0


def test_step7_bgp_id(LR):
    peers = ((1, 9, b"\x0a\x00\x00\x01"), (2, 3, b"\x0a\x00\x00\x02"))
    at, (a, b), lr = setup(LR, [aset(), aset()], peers)
    announce(lr, 1, a)
    announce(lr, 2, b)
    assert lr.best(P1) == ((2, 0, b), (1, 0, a))


def test_step8_peer_address_v4_before_v6(LR):
    peers = ((1, 7, b"\x0a\x00\x00\x09"), (2, 7, b"\x0a\x00\x00\x02"), (3, 7, b"\x00" * 16))
    at, (a, b, c), lr = setup(LR, [aset(), aset(), aset()], peers)
    announce(lr, 3, c)
    announce(lr, 1, a)
    assert lr.best(P1)[0] == (1, 0, a)          # IPv4 before IPv6, even ::
    announce(lr, 2, b)
    assert lr.best(P1) == ((2, 0, b), (1, 0, a))


def test_step9_peer_id_then_path_id(LR):
    peers = ((1, 7, b"\x0a\x00\x00\x01"), (2, 7, b"\x0a\x00\x00\x01"))
    at, (a, b), lr = setup(LR, [aset(), aset()], peers)
    lr.set_peer(1, 7, b"\x0a\x00\x00\x01", peer_id=50)
    lr.set_peer(2, 7, b"\x0a\x00\x00\x01", peer_id=40)
    announce(lr, 1, a)
    announce(lr, 2, b, path_id=9)
    announce(lr, 2, b, path_id=3)
    assert lr.best(P1) == ((2, 3, b), (1, 0, a))


# --- second best, withdrawals, coalescing ------------------------------------------------
def test_second_best_is_from_another_peer(LR):
    at, (good, good2, bad), lr = setup(LR, [aset(path_len=1), aset(path_len=2), aset(path_len=5)])
    announce(lr, 1, good, path_id=1)
    announce(lr, 1, good2, path_id=2)
    assert lr.best(P1) == ((1, 1, good), None)          # no other peer: no second
    out = announce(lr, 2, bad)
    assert out == [(P1, (1, 1, good), (2, 0, bad), (1, 1, good), None)]
    assert sorted(lr.candidates(P1)) == [(1, 1, good), (1, 2, good2), (2, 0, bad)]


def test_withdraw_promotes_second_and_last_removal_withdraws(LR):
    at, (a, b), lr = setup(LR, [aset(path_len=1), aset(path_len=2)])
    assert announce(lr, 1, a) == [(P1, (1, 0, a), None, None, None)]
    assert announce(lr, 2, b) == [(P1, (1, 0, a), (2, 0, b), (1, 0, a), None)]
    assert withdraw(lr, 1) == [(P1, (2, 0, b), None, (1, 0, a), (2, 0, b))]
    assert withdraw(lr, 1) == []                         # unknown path: nothing
    assert len(lr) == 1
    assert withdraw(lr, 2) == [(P1, None, None, (2, 0, b), None)]
    assert len(lr) == 0 and lr.best(P1) == (None, None) and lr.candidates(P1) == []
    assert lr.dump_best() == b""


def test_unchanged_pair_is_not_reported(LR):
    at, (a, b, c), lr = setup(LR, [aset(path_len=1), aset(path_len=2), aset(path_len=3)],
                              peers=((1, 1, b"\x01\x00\x00\x01"), (2, 2, b"\x01\x00\x00\x02"),
                                     (3, 3, b"\x01\x00\x00\x03")))
    announce(lr, 1, a)
    announce(lr, 2, b)
    assert announce(lr, 3, c) == []                      # neither best nor second changes
    assert withdraw(lr, 3) == []
    assert lr.peer(3)[3] == 0 and lr.peer(1)[3] == 1


def test_replace_and_coalesce(LR):
    at, (a, b, c), lr = setup(LR, [aset(path_len=1), aset(path_len=2), aset(path_len=3)])
    announce(lr, 2, b)
    changes = (chg(c, *P1) + chg(a, *P2) + chg(a, *P1, old=c) + chg(NO_ATTR, *P2, old=a))
    out = parse_out(lr.update(1, changes))
    # P1 once (coalesced), P2 appeared and vanished in the same update: no change
    assert out == [(P1, (1, 0, a), (2, 0, b), (2, 0, b), None)]
    assert len(lr) == 1 and lr.candidates(P2) == []
    # a prefix record works as a key too
    assert lr.best(struct.pack("<IIB", 7, 0, 24) + P1[1]) == lr.best(P1)


def test_ipv6(LR):
    at = _cy().AttrTable()
    a, b = intern(at, aset(afi=2, path_len=2), aset(afi=2, path_len=1))
    lr = LR(2, at)
    lr.set_peer(0, 1, b"\x20\x01" + b"\x00" * 14)
    lr.set_peer(1, 2, b"\x0a\x00\x00\x01")
    p = (48, bytes.fromhex("20010db8000100000000000000000000"))
    out = lr.update(0, chg(a, *p) + chg(b, *p, path_id=4))
    assert len(out) == 65
    assert parse_out(out, 2) == [(p, (0, 4, b), None, None, None)]
    assert parse_out(lr.update(1, chg(a, *p)), 2) == [(p, (0, 4, b), (1, 0, a), (0, 4, b), None)]
    assert len(lr.dump_best()) == 41


def test_validation(LR):
    at, (a, b), lr = setup(LR, [aset(), aset()])
    with pytest.raises(ValueError):
        lr.update(9, chg(a, *P1))                       # unregistered peer
    with pytest.raises(ValueError):
        lr.update(1, chg(a, *P1)[:-1])                  # length
    with pytest.raises(ValueError):
        lr.update(1, chg(a, 33, P1[1]))                 # plen
    with pytest.raises(ValueError):
        lr.update(1, chg(a, *P1) + chg(999, *P2))       # dead attr id: nothing applied
    assert len(lr) == 0
    with pytest.raises(ValueError):
        lr.set_peer(3, 1, b"\x00" * 5)
    announce(lr, 1, a)
    lr.set_peer(1, 0x0A000001, b"\x0a\x00\x00\x01")     # same fields: fine
    with pytest.raises(ValueError):
        lr.set_peer(1, 5, b"\x0a\x00\x00\x01")          # holds candidates
    with pytest.raises(ValueError):
        lr.remove_peer(1)
    lr.remove_peer(2)
    assert lr.peer(2) is None


def test_many_candidates_no_cap():
    """60 peers on one prefix (IXP worst case), compiled vs model, with removals."""
    C = _cy()
    at = C.AttrTable()
    sets = [aset(path_len=1 + i % 4, origin=i % 2, first_as=i % 3, med=i % 5) for i in range(60)]
    ids = intern(at, *sets)
    lrs = [C.LocRib(1, at), locrib_py.LocRib(1, at)]
    for lr in lrs:
        for p in range(60):
            lr.set_peer(p, 1000 - p % 7, bytes([10, 0, p // 256, p % 256]))
    for p in range(60):
        outs = [lr.update(p, chg(ids[p], *P1)) for lr in lrs]
        assert outs[0] == outs[1]
    for p in range(0, 60, 3):
        outs = [lr.update(p, chg(NO_ATTR, *P1)) for lr in lrs]
        assert outs[0] == outs[1]
        assert lrs[0].candidates(P1) == lrs[1].candidates(P1)
    assert lrs[0].best(P1) == lrs[1].best(P1)
    assert lrs[0].memory_bytes() > 0


# --- model test --------------------------------------------------------------------------
def _reference(lr, at, key, peers, opts):
    cands = lr.candidates(key)
    if not cands:
        return (None, None)
    cs = [candidate_from_attr_rec(ATTR_REC.unpack(at.rec(a)), PeerRef(peers[p][2], peers[p][0], peers[p][1]),
                                  path_id=pid, default_local_pref=opts.get("default_local_pref", 100))
          for p, pid, a in cands]
    o = dict(always_compare_med=opts.get("always_compare_med", False),
             missing_med_worst=opts.get("missing_med_worst", False))
    b = select_best(cs, **o)
    among = [i for i, c in enumerate(cands) if c[0] != cands[b][0]]
    s = select_best(cs, among=among, **o) if among else None
    return (cands[b], None if s is None else cands[s])


attr_st = st.builds(
    aset,
    lp=st.sampled_from([None, 100, 200]),
    gshut=st.booleans(),
    path_len=st.integers(1, 2),
    origin=st.integers(0, 1),
    first_as=st.sampled_from([0, 1, 2]),
    med=st.sampled_from([None, 0, 5, 0xFFFFFFFF]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    afi=st.sampled_from([1, 2]),
    npeers=st.integers(3, 5),
    peer_ids=st.lists(st.tuples(st.integers(1, 2), st.sampled_from([4, 16]), st.integers(0, 2)),
                      min_size=5, max_size=5),
    opts=st.fixed_dictionaries({}, optional={"always_compare_med": st.booleans(),
                                             "missing_med_worst": st.booleans(),
                                             "default_local_pref": st.sampled_from([50, 100, 150])}),
    pool=st.lists(attr_st, min_size=1, max_size=6),
    steps=st.lists(st.tuples(
        st.integers(0, 4),                               # peer (mod npeers)
        st.booleans(),                                   # clear the peer's Adj-RIB-In instead
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(-2, 5)),
                 max_size=8),                            # (prefix, path id, set index or withdraw)
    ), max_size=25),
)
def test_model(afi, npeers, peer_ids, opts, pool, steps):
    C = _cy()
    at = C.AttrTable()
    alen = 4 if afi == 1 else 16
    prefixes = [(24, bytes([10, 0, 0]) + bytes(alen - 3)), (24, bytes([10, 0, 1]) + bytes(alen - 3)),
                (16, bytes([10, 0]) + bytes(alen - 2)), (0, bytes(alen)),
                (alen * 8, bytes([10, 0, 0, 1]) + bytes(alen - 4)), (8, bytes([11]) + bytes(alen - 1))]
    peers = {}
    for p in range(npeers):
        bgp, plen_a, last = peer_ids[p]
        peers[p + 1] = (bgp, bytes([10]) + bytes(plen_a - 2) + bytes([last]), p + 1)
    cy = C.LocRib(afi, at, **opts)
    model = locrib_py.LocRib(afi, at, **opts)
    for lr in (cy, model):
        for p, (bgp, addr, _) in peers.items():
            lr.set_peer(p, bgp, addr)
    adj = {p: C.AdjRibIn(afi, at) for p in peers}
    for peer, clear, recs in steps:
        peer = peer % npeers + 1
        if clear:
            changes = adj[peer].clear()
        else:
            data, index = batch([(r, blob) for (r, blob) in [(s[0][:2] + (afi,) + s[0][3:], s[1]) for s in pool]])
            idmap = at.intern_batch(data, index)
            col = b""
            for pi, path_id, si in recs:
                plen, addr = prefixes[pi]
                col += struct.pack("<IIB", NO_ATTR if si < 0 else si % len(pool), path_id, plen) + addr
            changes = adj[peer].apply(col, idmap)
        out_c = cy.update(peer, changes)
        out_m = model.update(peer, changes)
        assert out_c == out_m
        assert len(cy) == len(model)
        assert sorted(parse_rows(cy.dump_best(), alen)) == sorted(parse_rows(model.dump_best(), alen))
        for key in prefixes:
            assert cy.candidates(key) == model.candidates(key)
            assert cy.best(key) == model.best(key) == _reference(cy, at, key, peers, opts)
        at.collect()
        if len(pool) > 1 and recs and recs[0][2] == 5:
            pool = pool[1:] + [aset(path_len=recs[0][1] + 1)]   # new sets: freed ids get reused
    for p in peers:
        cy.update(p, adj[p].clear())
    assert len(cy) == 0 and cy.dump_best() == b""


def parse_rows(buf, alen):
    size = 1 + alen + 24
    return [buf[i:i + size] for i in range(0, len(buf), size)]


@pytest.mark.parametrize("afi", [1, 2])
def test_large_updates_match_model(afi):
    """Columns of thousands of changes (software pipelining, table growth mid-update,
    deletions of emptied prefixes), compiled vs model vs select_best."""
    import random
    C = _cy()
    rng = random.Random(afi)
    alen = 4 if afi == 1 else 16
    at = C.AttrTable()
    prefixes = [(rng.choice([16, 24, alen * 8]), bytes([10, rng.randrange(256), rng.randrange(256)]) + bytes(alen - 3))
                for _ in range(3000)]
    prefixes = sorted(set(prefixes))
    pool = [aset(afi=afi, lp=rng.choice([None, 200]), path_len=rng.randrange(1, 4), origin=rng.randrange(3),
                 first_as=rng.randrange(3), med=rng.choice([None, 0, 10])) for _ in range(40)]
    peers = {p: (rng.randrange(1, 4), bytes([10, 0, 0, p]), p) for p in range(1, 6)}
    cy, model = C.LocRib(afi, at), locrib_py.LocRib(afi, at)
    for lr in (cy, model):
        for p, (bgp, addr, _) in peers.items():
            lr.set_peer(p, bgp, addr)
    adj = {p: C.AdjRibIn(afi, at) for p in peers}
    fmt = "<IIB" + ("4s" if afi == 1 else "16s")
    for rnd in range(12):
        peer = rng.choice(list(peers))
        if rnd == 9:
            changes = adj[peer].clear()
        else:
            data, index = batch(pool)
            idmap = at.intern_batch(data, index)
            col = b"".join(struct.pack(fmt, NO_ATTR if rng.random() < 0.2 else rng.randrange(len(pool)),
                                       rng.choice([0, 0, 1]), *rng.choice(prefixes))
                           for _ in range(rng.randrange(500, 4000)))
            changes = adj[peer].apply(col, idmap)
        out_c, out_m = cy.update(peer, changes), model.update(peer, changes)
        assert out_c == out_m
        assert len(cy) == len(model) and cy.n_candidates() == model.n_candidates()
        assert sorted(parse_rows(cy.dump_best(), alen)) == sorted(parse_rows(model.dump_best(), alen))
        for key in prefixes[::7]:
            assert cy.candidates(key) == model.candidates(key)
            assert cy.best(key) == _reference(cy, at, key, peers, {})
        at.collect()
