"""show rib queries (rserver/rib/query.py) on real Cython tables: routes of a few peers go
through the codec (encode_announce -> decode_updates), AttrTable.intern_batch,
AdjRibIn.apply and LocRib.update, exactly as in the RIB process."""
from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import pytest

from rserver.bus.messages import RibQuery, RibQueryReply
from rserver.codec.attrs import build_blob
from rserver.codec.layout import CodecContext
from rserver.codec.records import pack_prefixes
from rserver.codec.update_py import decode_updates, encode_announce, encode_withdraw
from rserver.rib import locrib_py
from rserver.rib.query import PrefixIndex, QueryError, answer_query, handle_query

_tables = pytest.importorskip("rserver.rib._tables")

CTX = CodecContext()


class FakeExporter:
    def __init__(self):
        self.out = {}

    def adj_rib_out(self, peer_id, afi):
        return self.out.get((peer_id, afi))


class FakeRib:
    """What handle_query reads of the RIB process, holding real tables."""

    route_events = None

    def __init__(self, LocRib=None):
        LocRib = LocRib or _tables.LocRib
        self.attrs = _tables.AttrTable()
        self.locrib = {1: LocRib(1, self.attrs), 2: LocRib(2, self.attrs)}
        self.peers = {}
        self.index = PrefixIndex()
        self.exporter = FakeExporter()
        self.sent = []
        self.bus = SimpleNamespace(send=lambda ident, msg: self.sent.append((ident, msg)))

    def add_peer(self, peer_id, address, asn, name=""):
        a = ipaddress.ip_address(address)
        p = SimpleNamespace(peer_id=peer_id, address=address, asn=asn, bgp_id=int(ipaddress.IPv4Address(f"10.255.0.{peer_id}")),
                            up=True, name=name or address,
                            tables={1: _tables.AdjRibIn(1, self.attrs), 2: _tables.AdjRibIn(2, self.attrs)})
        self.peers[peer_id] = p
        for lr in self.locrib.values():
            lr.set_peer(peer_id, p.bgp_id, a.packed)
        return p

    def _feed(self, peer_id, afi, msgs):
        batch = decode_updates(msgs, CTX)
        assert not batch.problems, batch.problems
        idmap = self.attrs.intern_batch(batch.attr_data, batch.attr_index)
        chg = self.peers[peer_id].tables[afi].apply(batch.v4 if afi == 1 else batch.v6, idmap)
        out = self.locrib[afi].update(peer_id, chg)
        self.index.note(afi, out)
        if self.route_events is not None:           # as RibProcess._feed
            self.route_events.note(afi, out)
        self.attrs.collect()

    def announce(self, peer_id, prefixes, **attrs):
        afi = 1 if ":" not in prefixes[0] else 2
        attrs.setdefault("next_hop", f"192.0.2.{peer_id}" if afi == 1 else f"2001:db8:ffff::{peer_id}")
        if afi == 2:
            attrs.setdefault("afi", 2)
        blob = build_blob(**attrs)
        self._feed(peer_id, afi, encode_announce(blob, afi, pack_prefixes(afi, prefixes), CTX))
        return blob

    def withdraw(self, peer_id, prefixes):
        afi = 1 if ":" not in prefixes[0] else 2
        self._feed(peer_id, afi, encode_withdraw(afi, pack_prefixes(afi, prefixes), CTX))


@pytest.fixture(params=["cython", "pure"])
def rib(request):
    """The fake RIB with the compiled Loc-RIB, or with the pure reference model."""
    r = FakeRib(None if request.param == "cython" else locrib_py.LocRib)
    r.add_peer(1, "10.0.0.1", 64501, "alpha")
    r.add_peer(2, "10.0.0.2", 64502, "bravo")
    r.add_peer(3, "10.0.0.3", 64503, "charlie")
    r.announce(1, ["10.0.0.0/8", "10.1.0.0/16"], as_path=[64501, 64510], med=10,
               communities=[(65000, 1)], large_communities=[(65000, 1, 2)],
               ext_communities=[bytes([0, 2, 0xFD, 0xE8, 0, 0, 0, 100])], otc=64501)
    r.announce(2, ["10.1.0.0/16", "10.1.2.0/24"], as_path=[64502], origin=2)
    r.announce(3, ["10.1.0.0/16"], as_path=[64503, 1, 2], atomic_aggregate=True,
               aggregator=(64503, "192.0.2.99"), unknown=[(0xC0, 99, b"xy")])
    r.announce(1, ["2001:db8::/32"], as_path=[64501])
    return r


def q(rib, **kw):
    if "for_" in kw:
        kw["for"] = kw.pop("for_")
    if "in_" in kw:
        kw["in"] = kw.pop("in_")
    return handle_query(rib, kw)


def prefixes(res):
    return [r["prefix"] for r in res["routes"]]


# --- Loc-RIB view ----------------------------------------------------------------------------

def test_exact_prefix_best_second_and_attributes(rib):
    res = q(rib, prefix="10.1.0.0/16")
    assert res["count"] == 1 and not res["truncated"] and res["table"] == "loc-rib"
    (route,) = res["routes"]
    assert route["prefix"] == "10.1.0.0/16" and route["afi"] == 4
    paths = route["paths"]
    assert [p["neighbor"] for p in paths][:2] == ["10.0.0.2", "10.0.0.1"]
    best, second, third = paths
    assert best["best"] and not best["second"]                   # shortest AS_PATH
    assert second["second"] and not second["best"]               # best not from 10.0.0.2
    assert not third["best"] and not third["second"]
    assert best["neighbor_name"] == "bravo" and best["peer_as"] == 64502
    assert best["origin"] == "INCOMPLETE" and best["as_path"] == "64502"
    assert best["next_hop"] == "192.0.2.2" and best["med"] is None and best["local_pref"] is None
    assert second["as_path"] == "64501 64510" and second["med"] == 10 and second["origin"] == "IGP"
    assert second["communities"] == ["65000:1"] and second["large_communities"] == ["65000:1:2"]
    assert second["ext_communities"] == ["rt 65000:100"] and second["otc"] == 64501
    assert third["atomic_aggregate"] is True
    assert third["aggregator"] == {"asn": 64503, "address": "192.0.2.99"}
    assert third["unknown"] == [99]
    assert all(p["stale"] is False and p["path_id"] == 0 for p in paths)
    assert "explain" not in best


def test_detail_explains_the_decision(rib):
    (route,) = q(rib, prefix="10.1.0.0/16", detail=True)["routes"]
    why = {p["neighbor"]: p["explain"] for p in route["paths"]}
    assert why["10.0.0.2"] == "best"
    assert why["10.0.0.3"].startswith("step 2 shortest AS_PATH")
    assert why["10.0.0.1"].startswith("step 2 shortest AS_PATH")
    assert "second best" in why["10.0.0.1"] and "10.0.0.2" in why["10.0.0.1"]
    # ranked best first: the 2-AS path before the 3-AS path
    assert [p["neighbor"] for p in route["paths"]] == ["10.0.0.2", "10.0.0.1", "10.0.0.3"]


def test_exact_absent_and_bare_address(rib):
    assert q(rib, prefix="10.9.0.0/16")["routes"] == []
    assert q(rib, prefix="10.1.2.3")["routes"] == []             # a host prefix /32


def test_longer_and_shorter(rib):
    assert prefixes(q(rib, prefix="10.0.0.0/8", match="longer")) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, prefix="10.1.0.0/16", match="longer")) == ["10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, prefix="10.2.0.0/16", match="longer")) == []
    assert prefixes(q(rib, prefix="0.0.0.0/0", match="longer")) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, prefix="10.1.2.0/24", match="shorter")) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, prefix="10.1.2.128/25", match="shorter")) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, prefix="11.0.0.0/8", match="shorter")) == []
    assert prefixes(q(rib, prefix="2001:db8:1::/48", match="shorter")) == ["2001:db8::/32"]


def test_for_ip_longest_match(rib):
    assert prefixes(q(rib, for_="10.1.2.3")) == ["10.1.2.0/24"]
    assert prefixes(q(rib, for_="10.1.3.3")) == ["10.1.0.0/16"]
    assert prefixes(q(rib, for_="10.200.0.1")) == ["10.0.0.0/8"]
    assert prefixes(q(rib, for_="11.0.0.1")) == []
    assert prefixes(q(rib, for_="2001:db8::5")) == ["2001:db8::/32"]


def test_whole_table_and_afi(rib):
    assert prefixes(q(rib)) == ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32"]
    assert prefixes(q(rib, afi=6)) == ["2001:db8::/32"]
    assert q(rib, afi=4)["count"] == 3


def test_index_follows_changes_incrementally(rib):
    assert prefixes(q(rib, for_="10.1.2.3")) == ["10.1.2.0/24"]
    assert rib.index.rebuilds[1] == 1
    rib.withdraw(2, ["10.1.2.0/24"])
    rib.announce(3, ["10.2.0.0/16"], as_path=[64503])
    rib.withdraw(1, ["10.1.0.0/16"])                # 10.1.0.0/16 stays (two other paths)
    assert rib.index.pending(1) == 3
    assert prefixes(q(rib, for_="10.1.2.3")) == ["10.1.0.0/16"]
    assert prefixes(q(rib, prefix="10.0.0.0/8", match="longer")) == ["10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16"]
    assert rib.index.rebuilds[1] == 1 and rib.index.applied[1] == 3 and rib.index.pending(1) == 0
    (route,) = q(rib, prefix="10.1.0.0/16")["routes"]
    assert [p["neighbor"] for p in route["paths"]] == ["10.0.0.2", "10.0.0.3"]
    assert route["paths"][1]["second"]


def test_index_rebuilds_when_pending_outgrows_the_table(rib):
    rib.index = PrefixIndex(min_pending=1)
    assert q(rib, prefix="10.0.0.0/8", match="longer")["count"] == 3     # built: 3 prefixes
    rib.announce(2, [f"10.3.{i}.0/24" for i in range(5)], as_path=[64502])
    assert rib.index.pending(1) == 0                    # 5 > 3 pending: dropped, rebuild marked
    assert q(rib, prefix="10.3.0.0/16", match="longer")["count"] == 5
    assert rib.index.rebuilds[1] == 2
    rib.index.reset(1)
    assert q(rib, for_="10.3.4.1")["routes"][0]["prefix"] == "10.3.4.0/24"
    assert rib.index.rebuilds[1] == 3


def test_stale_flag(rib):
    rib.peers[1].tables[1].mark_stale()
    (route,) = q(rib, prefix="10.1.0.0/16")["routes"]
    stale = {p["neighbor"]: p["stale"] for p in route["paths"]}
    assert stale == {"10.0.0.1": True, "10.0.0.2": False, "10.0.0.3": False}


def test_add_path_ids(rib):
    rib.add_peer(4, "10.0.0.4", 64504, "delta")
    blob = build_blob(as_path=[64504], next_hop="192.0.2.4")
    ctx = CodecContext(addpath_rx=1)
    for pid in (7, 8):
        batch = decode_updates(encode_announce(blob, 1, pack_prefixes(1, ["10.9.0.0/16"], [pid]),
                                               CodecContext(addpath_tx=1)), ctx)
        idmap = rib.attrs.intern_batch(batch.attr_data, batch.attr_index)
        chg = rib.peers[4].tables[1].apply(batch.v4, idmap)
        rib.index.note(1, rib.locrib[1].update(4, chg))
    (route,) = q(rib, prefix="10.9.0.0/16")["routes"]
    assert sorted(p["path_id"] for p in route["paths"]) == [7, 8]
    assert route["paths"][0]["best"] and route["paths"][0]["path_id"] == 7
    assert not any(p["second"] for p in route["paths"])          # no path from another peer
    (route,) = q(rib, prefix="10.9.0.0/16", in_="delta")["routes"]
    assert [p["path_id"] for p in route["paths"]] == [7, 8]


# --- Adj-RIB-In / Adj-RIB-Out ----------------------------------------------------------------

def test_in_neighbor(rib):
    res = q(rib, in_="10.0.0.1")
    assert res["table"] == "adj-rib-in" and res["neighbor"] == "10.0.0.1"
    assert prefixes(res) == ["10.0.0.0/8", "10.1.0.0/16", "2001:db8::/32"]
    by = {r["prefix"]: r["paths"][0] for r in res["routes"]}
    assert by["10.0.0.0/8"]["best"] and not by["10.1.0.0/16"]["best"] and by["10.1.0.0/16"]["second"]
    assert all(r["paths"][0]["neighbor"] == "10.0.0.1" for r in res["routes"])
    assert prefixes(q(rib, in_="alpha", prefix="10.0.0.0/8", match="longer")) == ["10.0.0.0/8", "10.1.0.0/16"]
    assert prefixes(q(rib, in_="alpha", for_="10.1.9.9")) == ["10.1.0.0/16"]
    assert prefixes(q(rib, in_="alpha", prefix="10.1.0.0/16")) == ["10.1.0.0/16"]
    assert prefixes(q(rib, in_="bravo", prefix="10.1.2.0/24", match="shorter")) == ["10.1.0.0/16", "10.1.2.0/24"]
    assert prefixes(q(rib, in_="alpha", afi=6)) == ["2001:db8::/32"]
    rib.peers[1].tables[1].mark_stale()
    assert q(rib, in_="alpha", prefix="10.0.0.0/8", detail=True)["routes"][0]["paths"][0]["stale"] is True


def test_out_neighbor(rib):
    # what the lead's exporter would hold: bravo (peer 2) was sent peer 1's path for 10.1.0.0/16
    aid = rib.locrib[1].best((16, bytes([10, 1, 0, 0])))[1][2]
    rib.exporter.out[(2, 1)] = pack_prefixes(1, ["10.1.0.0/16"], attr_idx=aid)
    res = q(rib, out="bravo")
    assert res["table"] == "adj-rib-out" and prefixes(res) == ["10.1.0.0/16"]
    p = res["routes"][0]["paths"][0]
    assert p["neighbor"] == "10.0.0.1" and p["second"] and not p["best"] and p["as_path"] == "64501 64510"
    with pytest.raises(QueryError, match="out: neighbor 10.0.0.3 is not an export client of IPv4 or IPv6") as e:
        q(rib, out="charlie")
    assert e.value.code == "unknown-neighbor"
    with pytest.raises(QueryError, match="not an export client of IPv6"):
        q(rib, out="bravo", afi=6)


# --- limits, errors, the RIB process branch ------------------------------------------------

def test_truncation(rib):
    res = q(rib, limit=2)
    assert res["count"] == 2 and res["truncated"] and prefixes(res) == ["10.0.0.0/8", "10.1.0.0/16"]
    res = q(rib, limit=4)
    assert res["count"] == 4 and not res["truncated"]
    res = q(rib, max_bytes=1024)
    assert res["truncated"] and 1 <= res["count"] < 4
    rib.announce(2, [f"10.4.{i}.0/24" for i in range(50)], as_path=[64502])
    res = q(rib, in_="bravo", limit=10)
    assert res["truncated"] and prefixes(res) == ["10.1.0.0/16", "10.1.2.0/24"] + [f"10.4.{i}.0/24" for i in range(8)]


@pytest.mark.parametrize("query, field", [
    ({"prefix": "10.0.0.300/8"}, "prefix:"),
    ({"prefix": "10.0.0.1/8"}, "prefix:"),              # host bits set
    ({"prefix": 10}, "prefix:"),
    ({"for": "x"}, "for:"),
    ({"for": "10.0.0.0/8"}, "for:"),
    ({"afi": 5}, "afi:"),
    ({"afi": "4"}, "afi:"),
    ({"afi": 6, "prefix": "10.0.0.0/8"}, "prefix: 10.0.0.0/8 is IPv4 but afi is 6"),
    ({"prefix": "10.0.0.0/8", "for": "10.0.0.1"}, "prefix and for"),
    ({"match": "longer"}, "match:"),
    ({"prefix": "10.0.0.0/8", "match": "sideways"}, "match:"),
    ({"in": "10.0.0.1", "out": "10.0.0.2"}, "in and out"),
    ({"limit": 0}, "limit:"),
    ({"limit": 100001}, "limit:"),
    ({"detail": "yes"}, "detail:"),
    ({"bogus": 1}, "unknown field"),
])
def test_bad_queries(rib, query, field):
    with pytest.raises(QueryError, match=field) as e:
        handle_query(rib, query)
    assert e.value.code == "bad-args"
    assert isinstance(e.value, ValueError)


def test_unknown_neighbor(rib):
    with pytest.raises(QueryError, match="in: no neighbor with address or name 'zulu'") as e:
        q(rib, in_="zulu")
    assert e.value.code == "unknown-neighbor"
    with pytest.raises(QueryError, match="out: no neighbor"):
        q(rib, out="10.9.9.9")


def test_answer_query_replies(rib):
    answer_query(rib, b"ctl-1", RibQuery(5, {"prefix": "10.0.0.0/8"}))
    answer_query(rib, b"ctl-1", RibQuery(6, {"prefix": "nope"}))
    answer_query(rib, b"ctl-1", RibQuery(7, {"in": "zulu"}))
    (i1, ok), (_, bad), (_, unk) = rib.sent
    assert i1 == b"ctl-1" and isinstance(ok, RibQueryReply)
    assert ok.request_id == 5 and not ok.error and ok.result["count"] == 1
    assert bad.request_id == 6 and bad.error.startswith("prefix:") and bad.result == {"code": "bad-args"}
    assert unk.result == {"code": "unknown-neighbor"}


def test_empty_rib():
    r = FakeRib()
    assert handle_query(r, {}) == {"routes": [], "truncated": False, "count": 0, "table": "loc-rib"}
    assert handle_query(r, {"for": "10.0.0.1"})["routes"] == []
    assert handle_query(r, {"prefix": "::/0", "match": "longer"})["routes"] == []


# --- the peers query (show summary) ----------------------------------------------------------

class _Client:
    def __init__(self, afis=(1, 2), addpath=False):
        self.groups = {a: object() for a in afis}
        self.addpath = {1: addpath, 2: addpath}


class _CountingLocRib:
    """A Loc-RIB wrapper counting dump_best() calls."""

    def __init__(self, lr):
        self.lr = lr
        self.dumps = 0

    def dump_best(self):
        self.dumps += 1
        return self.lr.dump_best()

    def __len__(self):
        return len(self.lr)


def _with_clients(rib, clients):
    rib.exporter.clients = clients
    rib.exporter.status = lambda pid: ({"live": ["ipv4"], "prefixes_sent": 7, "updates_sent": 2,
                                        "eor_sent": ["ipv4"]} if pid in clients else None)


def _expected_out(rib, client, afi):
    """What client should be sent (RFC 7947 §2.3.2.1), from show rib's Loc-RIB view."""
    n = 0
    for r in handle_query(rib, {"afi": 4 if afi == 1 else 6, "limit": 1000})["routes"]:
        paths = r["paths"]
        best = next(p for p in paths if p["best"])
        if best["neighbor"] != rib.peers[client].address:
            n += 1
        elif any(p["second"] for p in paths):
            n += 1
    return n


def test_peers_counts_match_the_tables(rib):
    _with_clients(rib, {1: _Client(), 2: _Client(), 3: _Client(addpath=True)})
    counting = {a: _CountingLocRib(lr) for a, lr in rib.locrib.items()}
    real = rib.locrib
    rib.locrib = counting
    try:
        res = handle_query(rib, {"kind": "peers"})
    finally:
        rib.locrib = real
    assert counting[1].dumps == 1 and counting[2].dumps == 1      # once per family, reused
    by = {p["address"]: p for p in res["peers"]}
    assert [p["peer_id"] for p in res["peers"]] == [1, 2, 3]
    assert by["10.0.0.1"]["accepted"] == {"ipv4": 2, "ipv6": 1}
    assert by["10.0.0.2"]["accepted"] == {"ipv4": 2, "ipv6": 0}
    assert by["10.0.0.3"]["accepted"] == {"ipv4": 1, "ipv6": 0}
    assert by["10.0.0.1"]["paths"] == by["10.0.0.1"]["accepted"]
    assert by["10.0.0.1"]["stale"] == {"ipv4": 0, "ipv6": 0}
    # best/second: alpha is sent 10.1.0.0/16 and 10.1.2.0/24 (not its own 10.0.0.0/8)
    assert by["10.0.0.1"]["exported"] == {"ipv4": 2, "ipv6": 0}
    assert by["10.0.0.2"]["exported"] == {"ipv4": 2, "ipv6": 1}
    for pid in (1, 2):
        for afi in (1, 2):
            assert by[rib.peers[pid].address]["exported"][("ipv4", "ipv6")[afi - 1]] == _expected_out(rib, pid, afi)
    # ADD-PATH: every path of every other peer
    assert by["10.0.0.3"]["exported"] == {"ipv4": 4, "ipv6": 1}
    assert by["10.0.0.1"]["export"]["prefixes_sent"] == 7
    assert res["loc_rib"] == {"ipv4": 3, "ipv6": 1} and res["elapsed"] >= 0


def test_peers_not_a_client_one_neighbor_and_errors(rib):
    _with_clients(rib, {2: _Client(afis=(1,))})
    res = handle_query(rib, {"kind": "peers"})
    by = {p["address"]: p for p in res["peers"]}
    assert by["10.0.0.1"]["exported"] == {"ipv4": 0, "ipv6": 0} and by["10.0.0.1"]["export"] is None
    assert by["10.0.0.2"]["exported"] == {"ipv4": 2, "ipv6": 0}            # not an IPv6 client
    one = handle_query(rib, {"kind": "peers", "neighbor": "bravo"})
    assert [p["address"] for p in one["peers"]] == ["10.0.0.2"]
    with pytest.raises(QueryError) as e:
        handle_query(rib, {"kind": "peers", "neighbor": "10.9.9.9"})
    assert e.value.code == "unknown-neighbor"
    with pytest.raises(QueryError):
        handle_query(rib, {"kind": "peers", "limit": 3})
    with pytest.raises(QueryError):
        handle_query(rib, {"kind": "nope"})
    assert handle_query(rib, {"kind": "rib", "prefix": "10.1.0.0/16"})["count"] == 1


def test_peers_after_a_stale_mark(rib):
    rib.peers[1].tables[1].mark_stale()
    by = {p["address"]: p for p in handle_query(rib, {"kind": "peers"})["peers"]}
    assert by["10.0.0.1"]["stale"] == {"ipv4": 2, "ipv6": 0}


# --- route events (monitor --routes) ---------------------------------------------------------

from rserver.bus.messages import RouteEvents  # noqa: E402
from rserver.rib.query import RouteEventSource  # noqa: E402


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _subscribe(rib, sub_id, identity=b"ctl-1", **kw):
    rib.sent.clear()
    answer_query(rib, identity, RibQuery(10 + sub_id, {"kind": "subscribe", "sub_id": sub_id, **kw}))
    (ident, reply), = rib.sent
    rib.sent.clear()
    assert ident == identity and not reply.error, reply
    return reply.result


def _events(rib):
    rib.route_events.flush()
    out = [(ident, m) for ident, m in rib.sent if isinstance(m, RouteEvents)]
    rib.sent.clear()
    return out


def test_route_events_formats(rib):
    clock = _Clock()
    rib.route_events = RouteEventSource(rib, clock=clock, wall=lambda: 1763872099.5)
    r = _subscribe(rib, 5)
    assert r["created"] is True and r["subscriptions"] == 1
    assert _subscribe(rib, 5)["created"] is False                  # a renewal
    rib.announce(2, ["10.9.0.0/16"], as_path=[64502])
    (ident, m), = _events(rib)
    assert ident == b"ctl-1" and m.sub_id == 5 and m.dropped == 0
    assert m.events == [{"time": 1763872099.5, "event": "route", "afi": 4, "prefix": "10.9.0.0/16",
                         "action": "announce", "best": {"neighbor": "10.0.0.2", "as_path": "64502",
                                                        "next_hop": "192.0.2.2"},
                         "previous_neighbor": None}]
    rib.announce(3, ["10.9.0.0/16"], as_path=[64503, 1])          # only a second best: no event
    assert _events(rib) == []
    rib.withdraw(2, ["10.9.0.0/16"])                               # best moves to charlie
    (_, m), = _events(rib)
    (ev,) = m.events
    assert ev["action"] == "best-change" and ev["best"]["neighbor"] == "10.0.0.3"
    assert ev["best"]["as_path"] == "64503 1" and ev["previous_neighbor"] == "10.0.0.2"
    rib.withdraw(3, ["10.9.0.0/16"])
    (_, m), = _events(rib)
    assert [(e["action"], e["best"], e["previous_neighbor"]) for e in m.events] == [("withdraw", None, "10.0.0.3")]
    rib.announce(1, ["2001:db8:1::/48"], as_path=[64501])
    (_, m), = _events(rib)
    assert m.events[0]["afi"] == 6 and m.events[0]["prefix"] == "2001:db8:1::/48"
    assert m.events[0]["best"]["next_hop"] == "2001:db8:ffff::1"


def test_route_events_prefix_filter_and_unsubscribe(rib):
    rib.route_events = RouteEventSource(rib, clock=_Clock())
    _subscribe(rib, 1, prefix="10.8.0.0/14")
    _subscribe(rib, 2, identity=b"ctl-2")
    rib.announce(2, ["10.9.1.0/24", "10.20.0.0/16", "10.8.0.0/14", "10.0.0.0/7"])
    got = {(ident, m.sub_id): [e["prefix"] for e in m.events] for ident, m in _events(rib)}
    assert got == {(b"ctl-1", 1): ["10.9.1.0/24", "10.8.0.0/14"],
                   (b"ctl-2", 2): ["10.9.1.0/24", "10.20.0.0/16", "10.8.0.0/14", "10.0.0.0/7"]}
    rib.sent.clear()
    answer_query(rib, b"ctl-1", RibQuery(99, {"kind": "unsubscribe", "sub_id": 1}))
    assert rib.sent[0][1].result == {"sub_id": 1, "unsubscribed": True}
    assert rib.route_events is not None
    answer_query(rib, b"ctl-2", RibQuery(99, {"kind": "unsubscribe", "sub_id": 2}))
    assert rib.route_events is None                                # the hook is off again
    rib.sent.clear()
    rib.announce(2, ["10.9.2.0/24"])
    assert rib.sent == []


def test_route_events_rate_limit_and_dropped_report(rib):
    clock = _Clock()
    rib.route_events = RouteEventSource(rib, clock=clock)
    _subscribe(rib, 1, rate=10)
    pfx = [f"10.{200 + i // 250}.{i % 250}.0/24" for i in range(50)]
    rib.announce(2, pfx)
    (_, m), = _events(rib)
    routes = [e for e in m.events if e["event"] == "route"]
    dropped = [e for e in m.events if e["event"] == "dropped"]
    assert len(routes) == 10 and [e["prefix"] for e in routes] == pfx[:10]
    assert [(d["count"], d["rate"]) for d in dropped] == [(40, 10)] and m.dropped == 40
    rib.withdraw(2, pfx)                                   # same instant: no token left
    assert _events(rib) == []                              # one dropped report per second
    clock.t += 1.5
    (_, m), = _events(rib)
    assert [(e["event"], e["count"]) for e in m.events] == [("dropped", 50)] and m.dropped == 90
    rib.announce(2, ["10.99.0.0/16"])                      # tokens refilled (at most rate)
    (_, m), = _events(rib)
    assert [e["prefix"] for e in m.events] == ["10.99.0.0/16"]


def test_route_events_lease_and_bad_subscriptions(rib):
    clock = _Clock()
    rib.route_events = RouteEventSource(rib, clock=clock)
    _subscribe(rib, 1, lease=5)
    clock.t += 6
    rib.announce(2, ["10.77.0.0/16"])
    assert _events(rib) == []                                      # expired, nothing sent
    assert rib.route_events is None                                # the hook is off again
    for bad in ({"sub_id": -1}, {"sub_id": 1, "prefix": "10.0.0.0/33"}, {"sub_id": 1, "rate": 0},
                {"sub_id": 1, "lease": 0}, {"sub_id": 1, "x": 1}):
        rib.sent.clear()
        answer_query(rib, b"ctl-1", RibQuery(1, {"kind": "subscribe", **bad}))
        assert rib.sent[0][1].error and rib.sent[0][1].result == {"code": "bad-args"}, bad
