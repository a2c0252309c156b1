"""``show rib``: read-only queries of the RIB process's tables (docs/control.md, "rib").

Pure: :func:`handle_query` reads the tables of a RIB process object and returns a JSON-able
dict; nothing here sends or blocks. :func:`answer_query` is the RIB process's branch for a
``RibQuery`` (the try/except and the ``RibQueryReply``).

What it reads of ``rib`` (the RIB process object):

* ``rib.attrs`` (AttrTable), ``rib.locrib`` (dict afi 1|2 -> LocRib, peer index == peer id),
* ``rib.peers`` (dict peer_id -> RibPeer: ``peer_id, address, asn, bgp_id, up, name,
  tables[afi]`` (AdjRibIn)),
* ``rib.exporter.adj_rib_out(peer_id, afi) -> bytes | None`` (prefix records with global
  attr ids: what that client was sent; None: not an export client),
* ``rib.index``: a :class:`PrefixIndex` the RIB keeps informed (``note`` / ``reset``).

The prefix index
----------------
Exact-prefix queries use ``LocRib.best`` / ``candidates`` (a hash probe). Longest match
(``for IP``) and covering / covered queries (``match`` shorter / longer) need a trie:
:class:`PrefixIndex` holds one pytricia trie per AFI with every Loc-RIB prefix. It stays off
the ingest path: ``note(afi, locchg)`` (called once per ``LocRib.update`` call, with its
output column) only appends a reference to the bytes, O(1). The trie is brought up to date
at the next query that needs it: each pending LOCCHG record whose new best is none removes
its prefix, one whose old best is none adds it (about 1-2 µs per pending record). While
nobody queries, the pending list would grow without bound, so once it holds more records
than the Loc-RIB had prefixes at the last sync (at least ``MIN_PENDING``) it is dropped and
the trie is rebuilt from ``LocRib.dump_best()`` at the next query instead (about 3 µs per prefix: some 3 s for
a 1 M-prefix table, once; the RIB does nothing else meanwhile). The first trie query of a
family always builds it that way (the index costs nothing until somebody asks).
Memory: the trie takes about 160 bytes per prefix once built (160 MB for 1 M prefixes).

Costs of the other queries (all in the RIB process, which handles nothing else meanwhile):
``--in NEIGHBOR`` walks that neighbor's Adj-RIB-In dump (under 1 µs per entry; a bounded heap
picks the first ``limit`` prefixes),
``--out NEIGHBOR`` the client's Adj-RIB-Out, a whole-table listing walks the trie in order
and stops at ``limit``; ``match longer`` of a short prefix lists the covered prefixes
(pytricia builds that list in full). Per route shown: an attribute blob decode, plus the
decision's explanation with ``detail``. The reply is bounded by ``limit`` routes and by
``max_bytes`` of JSON (``truncated`` is then true).
"""
from __future__ import annotations

import heapq
import ipaddress
import socket
import struct
from typing import Any, Iterator, Optional

import msgspec

from ..codec.attrs import AttrSet
from ..codec.layout import ATTR_REC
from .bestpath import ORIGIN_NAMES, PeerRef, candidate_from_attr_rec, explain, rank

__all__ = ["PrefixIndex", "handle_query", "answer_query", "QueryError", "QUERY_FIELDS",
           "handle_peers", "handle_subscription", "RouteEventSource", "EVENT_RATE",
           "DEFAULT_LIMIT", "MAX_LIMIT", "DEFAULT_MAX_BYTES", "MIN_PENDING"]

NO = 0xFFFFFFFF
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100000
DEFAULT_MAX_BYTES = 16 << 20        # JSON bytes of routes per reply (the control server asks less)
MIN_PENDING = 1 << 16               # pending LOCCHG records always allowed before a rebuild
QUERY_FIELDS = ("afi", "prefix", "for", "match", "in", "out", "detail", "limit", "max_bytes")

_ALEN = {1: 4, 2: 16}
_MAXLEN = {1: 32, 2: 128}
_AFI_OF = {4: 1, 6: 2}
_AFI_NUM = {1: 4, 2: 6}
# LOCCHG: plen · addr · new_best(peer, path_id, attr) · new_second · old_best · old_second
_LOCCHG = {1: struct.Struct("<B4sIII12xIII12x"), 2: struct.Struct("<B16sIII12xIII12x")}
# dump_best: plen · addr · best · second
_BEST = {1: struct.Struct("<B4s24x"), 2: struct.Struct("<B16s24x")}
# prefix records: attr u32 · path_id u32 · plen u8 · addr
_REC = {1: struct.Struct("<IIB4s"), 2: struct.Struct("<IIB16s")}
_json = msgspec.json.Encoder()


class QueryError(ValueError):
    """A query the RIB cannot answer; ``code`` is a control-protocol error code
    (``bad-args`` or ``unknown-neighbor``)."""

    def __init__(self, message: str, code: str = "bad-args"):
        super().__init__(message)
        self.code = code


# --- the prefix index ------------------------------------------------------------------------

class PrefixIndex:
    """Per-AFI trie of the Loc-RIB's prefixes, updated lazily (module docstring)."""

    def __init__(self, min_pending: int = MIN_PENDING):
        self.min_pending = min_pending
        self._trie: dict[int, Any] = {1: None, 2: None}
        self._pending: dict[int, list] = {1: [], 2: []}
        self._npending = {1: 0, 2: 0}           # LOCCHG records in _pending
        self._rebuild = {1: True, 2: True}
        self._allow = {1: min_pending, 2: min_pending}     # pending records before a rebuild
        self.rebuilds = {1: 0, 2: 0}            # statistics, for tests and status
        self.applied = {1: 0, 2: 0}

    def note(self, afi: int, locchg: bytes) -> None:
        """The output of one ``LocRib.update`` of ``afi``: keep the reference (O(1))."""
        if self._rebuild[afi] or not locchg:
            return
        pend = self._pending[afi]
        pend.append(locchg)
        self._npending[afi] += len(locchg) // _LOCCHG[afi].size
        if self._npending[afi] > self._allow[afi]:     # (len() of a pytricia trie is O(n))
            self.reset(afi)

    def reset(self, afi: int) -> None:
        """Forget the pending changes: rebuild from ``dump_best()`` at the next query."""
        self._pending[afi] = []
        self._npending[afi] = 0
        self._rebuild[afi] = True
        self._trie[afi] = None

    def pending(self, afi: int) -> int:
        return self._npending[afi]

    def trie(self, afi: int, locrib: Any):
        """The up-to-date trie of ``afi`` (keys ``(addr bytes, plen)``), syncing it first."""
        import pytricia
        if self._rebuild[afi] or self._trie[afi] is None:
            t = pytricia.PyTricia(_MAXLEN[afi], socket.AF_INET if afi == 1 else socket.AF_INET6, True)
            if locrib is not None:
                for plen, addr in _BEST[afi].iter_unpack(locrib.dump_best()):
                    t.insert((addr, plen), None)
            self._trie[afi] = t
            self._rebuild[afi] = False
            self._pending[afi] = []
            self._npending[afi] = 0
            self.rebuilds[afi] += 1
            self._allow[afi] = max(self.min_pending, len(locrib) if locrib is not None else 0)
            return t
        t = self._trie[afi]
        st = _LOCCHG[afi]
        for buf in self._pending[afi]:
            for plen, addr, _np, _nq, new_attr, _op, _oq, old_attr in st.iter_unpack(buf):
                if new_attr == NO:
                    if old_attr != NO:
                        try:
                            t.delete((addr, plen))
                        except KeyError:
                            pass
                elif old_attr == NO:
                    t.insert((addr, plen), None)
        self.applied[afi] += self._npending[afi]
        self._pending[afi] = []
        self._npending[afi] = 0
        self._allow[afi] = max(self.min_pending, len(locrib) if locrib is not None else 0)
        return t


# --- query parsing ---------------------------------------------------------------------------

class _Q:
    __slots__ = ("afis", "net", "ip", "match", "peer", "direction", "detail", "limit", "max_bytes")


def _neighbor(rib: Any, key: Any, field: str):
    if not isinstance(key, str) or not key:
        raise QueryError(f"{field}: a neighbor address or name is required, not {key!r}")
    try:
        addr = ipaddress.ip_address(key)
    except ValueError:
        addr = None
    for p in rib.peers.values():
        if addr is not None:
            try:
                if ipaddress.ip_address(p.address) == addr:
                    return p
            except ValueError:
                pass
        elif getattr(p, "name", "") == key:
            return p
    raise QueryError(f"{field}: no neighbor with address or name {key!r} known to the RIB",
                     "unknown-neighbor")


def _parse(rib: Any, query: Any) -> _Q:
    if not isinstance(query, dict):
        raise QueryError(f"query: an object is required, not {type(query).__name__}")
    unknown = sorted(set(query) - set(QUERY_FIELDS))
    if unknown:
        raise QueryError(f"query: unknown field(s) {', '.join(map(repr, unknown))} "
                         f"(fields: {', '.join(QUERY_FIELDS)})")
    q = _Q()
    afi = query.get("afi")
    if afi is None:
        q.afis = [1, 2]
    elif type(afi) is int and afi in _AFI_OF:
        q.afis = [_AFI_OF[afi]]
    else:
        raise QueryError(f"afi: must be 4, 6 or null, not {afi!r}")
    prefix, ip = query.get("prefix"), query.get("for")
    if prefix is not None and ip is not None:
        raise QueryError("prefix and for: give one or the other, not both")
    q.net = q.ip = None
    if prefix is not None:
        if not isinstance(prefix, str):
            raise QueryError(f"prefix: a string is required, not {prefix!r}")
        try:
            q.net = ipaddress.ip_network(prefix.strip(), strict=True)
        except ValueError as e:
            raise QueryError(f"prefix: {prefix!r} is not a valid prefix ({e})") from None
    if ip is not None:
        if not isinstance(ip, str):
            raise QueryError(f"for: an address string is required, not {ip!r}")
        try:
            q.ip = ipaddress.ip_address(ip.strip())
        except ValueError:
            raise QueryError(f"for: {ip!r} is not a valid IPv4 or IPv6 address") from None
    which = q.net if q.net is not None else q.ip
    if which is not None:
        fam = 1 if which.version == 4 else 2
        if afi is not None and fam != q.afis[0]:
            what = "prefix" if q.net is not None else "for"
            raise QueryError(f"{what}: {which} is IPv{which.version} but afi is {afi}")
        q.afis = [fam]
    match = query.get("match") or "exact"
    if match not in ("exact", "longer", "shorter"):
        raise QueryError(f"match: must be exact, longer or shorter, not {match!r}")
    if match != "exact" and q.net is None:
        raise QueryError(f"match: {match!r} needs a prefix")
    q.match = match
    i, o = query.get("in"), query.get("out")
    if i is not None and o is not None:
        raise QueryError("in and out: give one or the other, not both")
    q.peer, q.direction = None, None
    if i is not None:
        q.peer, q.direction = _neighbor(rib, i, "in"), "in"
    elif o is not None:
        q.peer, q.direction = _neighbor(rib, o, "out"), "out"
    detail = query.get("detail", False)
    if type(detail) is not bool:
        raise QueryError(f"detail: true or false, not {detail!r}")
    q.detail = detail
    limit = query.get("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit: an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    q.limit = limit
    mb = query.get("max_bytes")
    mb = DEFAULT_MAX_BYTES if mb is None else mb
    if type(mb) is not int or mb < 1024:
        raise QueryError(f"max_bytes: an integer >= 1024, not {mb!r}")
    q.max_bytes = mb
    return q


# --- prefix selection ------------------------------------------------------------------------

def _key(afi: int, net) -> tuple[int, bytes]:
    return net.prefixlen, net.network_address.packed


def _locrib_keys(rib: Any, q: _Q, afi: int) -> Iterator[tuple[int, bytes]]:
    """Loc-RIB prefixes matching q, in address order (plen, addr)."""
    lr = rib.locrib.get(afi)
    if lr is None:
        return
    if q.net is not None and q.match == "exact":
        k = _key(afi, q.net)
        if lr.candidates(k):
            yield k
        return
    t = rib.index.trie(afi, lr)
    if q.ip is not None:
        hit = t.get_key((q.ip.packed, _MAXLEN[afi]))
        if hit is not None:
            yield (hit[1], hit[0])
        return
    if q.net is None:
        for addr, plen in t:
            yield (plen, addr)
        return
    plen, addr = _key(afi, q.net)
    if q.match == "shorter":
        chain = []
        k = t.get_key((addr, plen))
        while k is not None:
            chain.append((k[1], k[0]))
            k = t.parent(k)
        yield from reversed(chain)
        return
    # longer: the prefix itself and every more specific one
    present = t.has_key((addr, plen))
    if not present:
        t.insert((addr, plen), None)
    try:
        kids = t.children((addr, plen))
    finally:
        if not present:
            t.delete((addr, plen))
    if present:
        yield (plen, addr)
    for a, p in sorted(kids, key=lambda x: (x[0], x[1])):
        yield (p, a)


def _matcher(q: _Q, afi: int):
    """A predicate (plen, addr) -> bool for q's prefix / address, or None (everything)."""
    bits = _MAXLEN[afi]

    def masked(plen: int, addr: bytes) -> int:
        return int.from_bytes(addr, "big") >> (bits - plen) if plen else 0
    if q.net is not None:
        qp, qa = _key(afi, q.net)
        if q.match == "exact":
            return lambda plen, addr: plen == qp and addr == qa
        if q.match == "longer":
            qm = masked(qp, qa)
            return lambda plen, addr: plen >= qp and masked(qp, addr) == qm
        qi = int.from_bytes(qa, "big")
        return lambda plen, addr: plen <= qp and masked(plen, addr) == (qi >> (bits - plen) if plen else 0)
    if q.ip is not None:
        qi = int.from_bytes(q.ip.packed, "big")
        return lambda plen, addr: masked(plen, addr) == (qi >> (bits - plen) if plen else 0)
    return None


def _records_by_prefix(q: _Q, afi: int, data: bytes) -> Iterator[tuple[tuple[int, bytes], list]]:
    """Matching prefix records grouped by prefix, in address order, each [(attr, path_id)...]
    by path id; for a longest-match query only the longest matching prefix. Stops after
    limit + 1 prefixes (the caller sees the truncation)."""
    match = _matcher(q, afi)
    recs = _REC[afi].iter_unpack(data)
    if match is None:
        rows = [(addr, plen, pid, attr) for attr, pid, plen, addr in recs]
    else:
        rows = [(addr, plen, pid, attr) for attr, pid, plen, addr in recs if match(plen, addr)]
    if q.ip is None and len(rows) > 4 * (q.limit + 1):
        # only the first limit + 1 prefixes are shown: a bounded heap instead of a full sort,
        # unless ADD-PATH paths crowd them out (fewer distinct prefixes than needed)
        first = heapq.nsmallest(q.limit + 1, rows)
        rows = first if len({(r[0], r[1]) for r in first}) == len(first) else sorted(rows)
    else:
        rows.sort()
    if q.ip is not None and rows:
        longest = max(r[1] for r in rows)
        rows = [r for r in rows if r[1] == longest]
    key = None
    group: list = []
    n = 0
    for addr, plen, pid, attr in rows:
        if (plen, addr) != key:
            if key is not None:
                yield key, group
                n += 1
                if n > q.limit:
                    return
            key, group = (plen, addr), []
        group.append((attr, pid))
    if key is not None:
        yield key, group


# --- formatting ------------------------------------------------------------------------------

def _prefix_str(afi: int, plen: int, addr: bytes) -> str:
    a = ipaddress.IPv4Address(addr) if afi == 1 else ipaddress.IPv6Address(addr)
    return f"{a}/{plen}"


_EXT_TYPES = {0x00: "as2", 0x40: "as2", 0x01: "ip4", 0x41: "ip4", 0x02: "as4", 0x42: "as4"}
_EXT_SUB = {0x02: "rt", 0x03: "soo"}


def _ext(e: bytes) -> str:
    t, s = e[0], e[1]
    kind, sub = _EXT_TYPES.get(t), _EXT_SUB.get(s)
    if kind is not None and sub is not None:
        if kind == "as2":
            return f"{sub} {int.from_bytes(e[2:4], 'big')}:{int.from_bytes(e[4:8], 'big')}"
        if kind == "ip4":
            return f"{sub} {ipaddress.IPv4Address(e[2:6])}:{int.from_bytes(e[6:8], 'big')}"
        return f"{sub} {int.from_bytes(e[2:6], 'big')}:{int.from_bytes(e[6:8], 'big')}"
    return "0x" + e.hex()


class _Ctx:
    """Per-query caches: decoded attribute sets, neighbors."""

    def __init__(self, rib: Any):
        self.rib = rib
        self.sets: dict[int, dict] = {}

    def attrs(self, aid: int) -> dict:
        d = self.sets.get(aid)
        if d is None:
            try:
                s = AttrSet.from_blob(self.rib.attrs.blob(aid))
            except Exception as e:              # noqa: BLE001 - show what we can
                d = {"origin": None, "as_path": "", "next_hop": None, "error": f"undecodable: {e}"}
            else:
                d = {
                    "origin": ORIGIN_NAMES.get(s.origin) if s.origin is not None else None,
                    "as_path": s.as_path_str(),
                    "next_hop": s.next_hop,
                    "med": s.med,
                    "local_pref": s.local_pref,
                    "communities": [f"{hi}:{lo}" for hi, lo in s.communities],
                    "large_communities": [f"{a}:{b}:{c}" for a, b, c in s.large_communities],
                    "ext_communities": [_ext(e) for e in s.ext_communities],
                    "atomic_aggregate": s.atomic_aggregate,
                    "aggregator": (None if s.aggregator is None
                                   else {"asn": s.aggregator[0], "address": s.aggregator[1]}),
                    "otc": s.otc,
                    "unknown": [t for _f, t, _v in s.unknown],
                }
                if s.next_hop_ll:
                    d["next_hop_ll"] = s.next_hop_ll
                if s.originator_id:
                    d["originator_id"] = s.originator_id
                if s.cluster_list:
                    d["cluster_list"] = list(s.cluster_list)
            d["attr_id"] = aid
            self.sets[aid] = d
        return d

    def path(self, afi: int, plen: int, addr: bytes, peer_id: Optional[int], path_id: int, aid: int,
             best: bool, second: bool) -> dict:
        p = self.rib.peers.get(peer_id) if peer_id is not None else None
        stale = False
        if p is not None:
            t = p.tables.get(afi) if isinstance(p.tables, dict) else p.tables[afi]
            if t is not None:
                stale = bool(t.is_stale(_REC[afi].pack(0, path_id, plen, addr)))
        out = {
            "best": best, "second": second,
            "neighbor": p.address if p is not None else None,
            "neighbor_name": (getattr(p, "name", "") or p.address) if p is not None else None,
            "peer_as": p.asn if p is not None else None,
            "path_id": path_id, "stale": stale,
        }
        out.update(self.attrs(aid))
        return out


def _explain_paths(rib: Any, lr: Any, cands: list, best, second) -> tuple[list[int], list[str]]:
    """(order best first, explanation per candidate) with the decision the LocRib applies."""
    objs = []
    for peer, path_id, aid in cands:
        info = lr.peer(peer)
        if info is not None:
            ref = PeerRef(info[2], info[0], info[1])
        else:                                   # pragma: no cover - a LocRib peer is registered
            ref = PeerRef(peer, 0, b"\0\0\0\0")
        objs.append(candidate_from_attr_rec(ATTR_REC.unpack(rib.attrs.rec(aid)), ref, path_id=path_id,
                                            default_local_pref=lr.default_local_pref))
    opts = {"always_compare_med": lr.always_compare_med, "missing_med_worst": lr.missing_med_worst}
    order = rank(objs, **opts)
    why = explain(objs, **opts)
    bi = next((i for i, c in enumerate(cands) if best is not None and tuple(c) == tuple(best)), None)
    if bi is not None and order[0] != bi:      # trust the table; should not happen
        order.remove(bi)
        order.insert(0, bi)
    if second is not None and bi is not None:
        si = next((i for i, c in enumerate(cands) if tuple(c) == tuple(second)), None)
        if si is not None:
            src = rib.peers.get(cands[bi][0])
            name = src.address if src is not None else f"peer {cands[bi][0]}"
            why[si] += (f"; second best: the best path not from {name}, what {name} is sent "
                        "(RFC 7947 §2.3.2.1)")
    return order, why


def _quick_order(cands: list, best, second) -> list[int]:
    """Without detail: best, second, then the others by peer id / path id (no ranking)."""
    def k(i):
        c = tuple(cands[i])
        return (0 if best is not None and c == tuple(best) else 1 if second is not None and c == tuple(second) else 2,
                c[0], c[1])
    return sorted(range(len(cands)), key=k)


def _locrib_route(ctx: _Ctx, q: _Q, afi: int, key: tuple[int, bytes]) -> Optional[dict]:
    rib = ctx.rib
    lr = rib.locrib[afi]
    cands = lr.candidates(key)
    if not cands:
        return None
    best, second = lr.best(key)
    plen, addr = key
    if q.detail:
        order, why = _explain_paths(rib, lr, cands, best, second)
    else:
        order, why = _quick_order(cands, best, second), None
    paths = []
    for i in order:
        peer, path_id, aid = cands[i]
        c = (peer, path_id, aid)
        p = ctx.path(afi, plen, addr, peer, path_id, aid, best is not None and c == tuple(best),
                     second is not None and c == tuple(second))
        if why is not None:
            p["explain"] = why[i]
        paths.append(p)
    return {"prefix": _prefix_str(afi, plen, addr), "afi": _AFI_NUM[afi], "paths": paths}


def _adj_route(ctx: _Ctx, q: _Q, afi: int, key: tuple[int, bytes], entries: list) -> dict:
    """A prefix of an Adj-RIB-In (--in) or Adj-RIB-Out (--out)."""
    rib = ctx.rib
    plen, addr = key
    lr = rib.locrib.get(afi) if getattr(rib, "locrib", None) else None
    best = second = None
    cands: list = []
    if lr is not None:
        best, second = lr.best(key)
        if q.direction == "out":
            cands = lr.candidates(key)
    paths = []
    for aid, path_id in entries:
        if q.direction == "in":
            src, src_path = q.peer.peer_id, path_id
        else:                       # the source of what was sent: the candidate with that set
            src = src_path = None
            for peer, pid, a in cands:
                if a == aid and peer != q.peer.peer_id:
                    src, src_path = peer, pid
                    break
        c = (src, src_path, aid)
        p = ctx.path(afi, plen, addr, src, path_id if q.direction == "in" else (src_path or 0), aid,
                     best is not None and c == tuple(best), second is not None and c == tuple(second))
        if q.direction == "out":
            p["path_id"] = path_id          # the path id on the client's session
            p["stale"] = False
        if q.detail:
            p["explain"] = ("best" if p["best"] else "second best" if p["second"]
                            else "not the Loc-RIB's best or second best" if src is not None
                            else "source not found in the Loc-RIB (attributes changed on export)")
        paths.append(p)
    paths.sort(key=lambda p: (not p["best"], not p["second"]))
    return {"prefix": _prefix_str(afi, plen, addr), "afi": _AFI_NUM[afi], "paths": paths}


# --- entry points ----------------------------------------------------------------------------

def handle_query(rib: Any, query: dict) -> dict:
    """Answer one ``show rib`` query (fields and reply: docs/control.md, "rib").

    Raises QueryError (a ValueError naming the field) for a bad query or an unknown neighbor.
    ``{"kind": "peers", ...}``: :func:`handle_peers`; no kind (or ``"rib"``): show rib.
    """
    if isinstance(query, dict) and "kind" in query:
        kind = query.get("kind")
        if kind == "peers":
            return handle_peers(rib, query)
        if kind != "rib":
            raise QueryError(f"kind: must be rib, peers, subscribe or unsubscribe, not {kind!r}")
        query = {k: v for k, v in query.items() if k != "kind"}
    q = _parse(rib, query)
    ctx = _Ctx(rib)
    routes: list[dict] = []
    size = 0
    truncated = False

    def add(r: Optional[dict]) -> bool:
        nonlocal size, truncated
        if r is None:
            return True
        if len(routes) >= q.limit:
            truncated = True
            return False
        n = len(_json.encode(r)) + 1
        if size + n > q.max_bytes:
            truncated = True
            return False
        routes.append(r)
        size += n
        return True

    outs: dict[int, bytes] = {}
    if q.direction == "out":
        exp = getattr(rib, "exporter", None)
        if exp is None:
            raise QueryError("out: the RIB does not export routes yet")
        for afi in q.afis:
            data = exp.adj_rib_out(q.peer.peer_id, afi)
            if data is not None:
                outs[afi] = data
        if not outs:
            fams = " or ".join(f"IPv{_AFI_NUM[a]}" for a in q.afis)
            raise QueryError(f"out: neighbor {q.peer.address} is not an export client of {fams}",
                             "unknown-neighbor")
    for afi in q.afis:
        if truncated:
            break
        if q.direction is None:
            if not getattr(rib, "locrib", None) or afi not in rib.locrib:
                continue
            for key in _locrib_keys(rib, q, afi):
                if not add(_locrib_route(ctx, q, afi, key)):
                    break
            continue
        if q.direction == "in":
            data = q.peer.tables[afi].dump()
        else:
            data = outs.get(afi, b"")
        for key, entries in _records_by_prefix(q, afi, data):
            if not add(_adj_route(ctx, q, afi, key, entries)):
                break
    out = {"routes": routes, "truncated": truncated, "count": len(routes)}
    if q.direction is not None:
        out["table"] = f"adj-rib-{q.direction}"
        out["neighbor"] = q.peer.address
    else:
        out["table"] = "loc-rib"
    return out


def answer_query(rib: Any, identity: bytes, msg: Any) -> None:
    """The RIB process's RibQuery branch: answer ``msg`` to ``identity`` with a RibQueryReply
    (``error`` set, and ``result = {"code": ...}``, when the query fails)."""
    from ..bus.messages import RibQueryReply
    try:
        kind = msg.query.get("kind") if isinstance(msg.query, dict) else None
        if kind in ("subscribe", "unsubscribe"):
            result = handle_subscription(rib, identity, msg.query)
        else:
            result = handle_query(rib, msg.query)
    except QueryError as e:
        reply = RibQueryReply(msg.request_id, {"code": e.code}, str(e))
    except Exception as e:                      # noqa: BLE001 - a bug must not stop the RIB
        log = getattr(rib, "log", None)
        if log is not None:
            log.exception("rib: show rib query failed")
        reply = RibQueryReply(msg.request_id, {"code": "internal"}, f"{type(e).__name__}: {e}")
    else:
        reply = RibQueryReply(msg.request_id, result, "")
    rib.bus.send(identity, reply)


# --- the peers query (show summary / show neighbor) ------------------------------------------

_FAM = {1: "ipv4", 2: "ipv6"}
_RECSIZE = {1: 13, 2: 25}           # prefix record: attr u32 · path_id u32 · plen u8 · addr


def handle_peers(rib: Any, query: dict) -> dict:
    """``{"kind": "peers"[, "neighbor": ADDRESS]}``: per peer the RIB knows, what it holds of it
    (Adj-RIB-In prefixes, paths, stale) and what it exports to it (the size of its
    Adj-RIB-Out, and the exporter's state). Costs (docs/control.md, "summary"): one
    ``dump_best()`` per family (only when a non-ADD-PATH client of it exists) reused for
    every client, then one ``select_for`` per client and family."""
    import time as _time
    from .export import select_for
    t0 = _time.perf_counter()
    unknown = sorted(set(query) - {"kind", "neighbor"})
    if unknown:
        raise QueryError(f"query: unknown field(s) {', '.join(map(repr, unknown))} (peers: kind, neighbor)")
    peers = list(rib.peers.values())
    if query.get("neighbor") is not None:
        peers = [_neighbor(rib, query["neighbor"], "neighbor")]
    exp = getattr(rib, "exporter", None)
    clients = getattr(exp, "clients", None) or {}
    best: dict[int, bytes] = {}

    def exported(pid: int, afi: int) -> int:
        c = clients.get(pid)
        if c is None or afi not in getattr(c, "groups", {}):
            return 0
        if c.addpath.get(afi):
            return sum(len(p.tables[afi]) for q_id, p in rib.peers.items() if q_id != pid)
        data = best.get(afi)
        if data is None:
            lr = rib.locrib.get(afi)
            data = best[afi] = lr.dump_best() if lr is not None else b""
        return len(select_for(data, afi, pid, False)) // _RECSIZE[afi]

    rows = []
    for p in sorted(peers, key=lambda p: p.peer_id):
        t = p.tables
        status = exp.status(p.peer_id) if exp is not None and hasattr(exp, "status") else None
        rows.append({
            "peer_id": p.peer_id, "address": p.address, "name": getattr(p, "name", ""),
            "asn": p.asn, "up": bool(getattr(p, "up", False)),
            "accepted": {_FAM[a]: t[a].count_prefixes() for a in (1, 2)},
            "paths": {_FAM[a]: len(t[a]) for a in (1, 2)},
            "stale": {_FAM[a]: t[a].stale_count() for a in (1, 2)},
            "exported": {_FAM[a]: exported(p.peer_id, a) for a in (1, 2)},
            "export": status,
        })
    loc = getattr(rib, "locrib", None) or {}
    return {"peers": rows, "loc_rib": {_FAM[a]: len(lr) for a, lr in loc.items()},
            "elapsed": round(_time.perf_counter() - t0, 6)}


# --- route events (monitor --routes) ----------------------------------------------------------

EVENT_RATE = 2000               # events per second per subscription (burst: one second's worth)
FLUSH_INTERVAL = 0.1            # seconds: events are sent in batches at most this often
DROPPED_INTERVAL = 1.0          # seconds between two "dropped" reports of a subscription
LEASE = 30.0                    # seconds a subscription lives without a renewal
SUB_FIELDS = ("kind", "sub_id", "prefix", "rate", "lease")


class _Sub:
    __slots__ = ("identity", "sub_id", "net", "rate", "tokens", "last", "events", "dropped",
                 "dropped_total", "last_dropped_report", "renewed", "lease", "filter")

    def __init__(self, identity: bytes, sub_id: int, net, rate: int, lease: float, now: float):
        self.identity = identity
        self.sub_id = sub_id
        self.rate = rate
        self.tokens = float(rate)
        self.last = now
        self.events: list = []
        self.dropped = 0                # not reported yet
        self.dropped_total = 0
        self.last_dropped_report = 0.0
        self.renewed = now
        self.lease = lease
        self.set_filter(net)

    def set_filter(self, net) -> None:
        self.net = net
        if net is None:
            self.filter = None
        else:
            afi = 1 if net.version == 4 else 2
            bits = _MAXLEN[afi]
            plen = net.prefixlen
            self.filter = (afi, plen, bits - plen, int(net.network_address) >> (bits - plen) if plen else 0)

    def matches(self, afi: int, plen: int, addr: bytes) -> bool:
        f = self.filter
        if f is None:
            return True
        fafi, fplen, shift, fnet = f
        return afi == fafi and plen >= fplen and (int.from_bytes(addr, "big") >> shift if fplen else 0) == fnet


class RouteEventSource:
    """Loc-RIB best-path changes for the ``monitor --routes`` subscribers (docs/control.md).

    The RIB process calls :meth:`note` with each ``LocRib.update`` output column, and only
    while a subscription exists (``rib.route_events`` is None otherwise: no cost at all).
    Per subscription a token bucket allows ``rate`` events per second (burst: ``rate``);
    events beyond it are counted and reported as one ``{"event": "dropped", "count": n}``
    per second. Events are queued and sent as ``RouteEvents`` messages every
    ``FLUSH_INTERVAL`` seconds (:meth:`flush`; scheduled on the running loop, if any)."""

    def __init__(self, rib: Any, clock=None, wall=None):
        import time as _time
        self.rib = rib
        self.clock = clock or _time.monotonic
        self.wall = wall or _time.time
        self.subs: dict[tuple[bytes, int], _Sub] = {}
        self._handle = None
        self.sent = 0

    # -- subscriptions
    def subscribe(self, identity: bytes, sub_id: int, net=None, rate: int = EVENT_RATE,
                  lease: float = LEASE) -> bool:
        """Add or renew; True when the subscription is new (e.g. this RIB restarted)."""
        now = self.clock()
        s = self.subs.get((identity, sub_id))
        if s is None:
            self.subs[(identity, sub_id)] = _Sub(identity, sub_id, net, rate, lease, now)
            created = True
        else:
            s.renewed, s.lease, s.rate = now, lease, rate
            s.set_filter(net)
            created = False
        self.expire(now)
        return created

    def unsubscribe(self, identity: bytes, sub_id: int) -> bool:
        return self.subs.pop((identity, sub_id), None) is not None

    def expire(self, now: Optional[float] = None) -> None:
        now = self.clock() if now is None else now
        for k, s in list(self.subs.items()):
            if now - s.renewed > s.lease:
                del self.subs[k]
        if not self.subs and getattr(self.rib, "route_events", None) is self:
            self.rib.route_events = None        # the last one expired: the hook is off again

    # -- events
    def note(self, afi: int, locchg: bytes) -> None:
        """One LocRib.update output column of ``afi``."""
        if not locchg or not self.subs:
            return
        now = self.clock()
        subs = list(self.subs.values())
        for s in subs:
            s.tokens = min(float(s.rate), s.tokens + (now - s.last) * s.rate)
            s.last = now
        peers = self.rib.peers
        attrs = self.rib.attrs
        cache: dict[int, tuple] = {}            # attr ids are only valid within this call
        wall = None
        anum = _AFI_NUM[afi]
        queued = False
        for plen, addr, np_, npid, nattr, op, opid, oattr in _LOCCHG[afi].iter_unpack(locchg):
            if nattr == NO:
                if oattr == NO:
                    continue
                action = "withdraw"
            elif oattr == NO:
                action = "announce"
            elif np_ == op and npid == opid and nattr == oattr:
                continue                        # only the second best changed
            else:
                action = "best-change"
            ev = None
            for s in subs:
                if s.filter is not None and not s.matches(afi, plen, addr):
                    continue
                if s.tokens < 1.0:
                    s.dropped += 1
                    s.dropped_total += 1
                    queued = True
                    continue
                s.tokens -= 1.0
                if ev is None:
                    if wall is None:
                        wall = self.wall()
                    best = None
                    if nattr != NO:
                        d = cache.get(nattr)
                        if d is None:
                            d = cache[nattr] = _event_attrs(attrs, nattr)
                        p = peers.get(np_)
                        best = {"neighbor": p.address if p is not None else None,
                                "as_path": d[0], "next_hop": d[1]}
                        if npid:
                            best["path_id"] = npid
                    prev = None
                    if oattr != NO:
                        p = peers.get(op)
                        prev = p.address if p is not None else None
                    ev = {"time": wall, "event": "route", "afi": anum,
                          "prefix": f"{ipaddress.ip_address(addr)}/{plen}", "action": action,
                          "best": best, "previous_neighbor": prev}
                s.events.append(ev)
                queued = True
        if queued:
            self._schedule(FLUSH_INTERVAL)

    def _schedule(self, delay: float) -> None:
        if self._handle is not None:
            return
        import asyncio
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return                              # no loop (tests): flush() is called by hand
        self._handle = loop.call_later(delay, self._flush_later)

    def _flush_later(self) -> None:
        self._handle = None
        try:
            self.flush()
        except Exception:                       # noqa: BLE001 - never stop the RIB
            log = getattr(self.rib, "log", None)
            if log is not None:
                log.exception("rib: route events flush failed")

    def flush(self) -> int:
        """Send what is queued; returns the number of RouteEvents messages sent."""
        from ..bus.messages import RouteEvents
        now = self.clock()
        self.expire(now)
        n = 0
        later = None
        for s in list(self.subs.values()):
            evs, s.events = s.events, []
            if s.dropped:
                wait = s.last_dropped_report + DROPPED_INTERVAL - now
                if wait <= 0:
                    evs.append({"time": self.wall(), "event": "dropped", "count": s.dropped,
                                "rate": s.rate})
                    s.dropped = 0
                    s.last_dropped_report = now
                else:
                    later = wait if later is None else min(later, wait)
            if evs:
                self.rib.bus.send(s.identity, RouteEvents(s.sub_id, evs, s.dropped_total))
                n += 1
                self.sent += len(evs)
        if later is not None:
            self._schedule(later)
        return n

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _event_attrs(attrs: Any, aid: int) -> tuple:
    try:
        s = AttrSet.from_blob(attrs.blob(aid))
        return s.as_path_str(), s.next_hop
    except Exception:                           # noqa: BLE001
        return None, None


def handle_subscription(rib: Any, identity: bytes, query: dict) -> dict:
    """``{"kind": "subscribe", "sub_id": N, "prefix": P|null, "rate": R, "lease": S}`` (also a
    renewal) or ``{"kind": "unsubscribe", "sub_id": N}`` from the control server."""
    unknown = sorted(set(query) - set(SUB_FIELDS))
    if unknown:
        raise QueryError(f"query: unknown field(s) {', '.join(map(repr, unknown))} "
                         f"(fields: {', '.join(SUB_FIELDS)})")
    sub_id = query.get("sub_id")
    if type(sub_id) is not int or sub_id < 0:
        raise QueryError(f"sub_id: a non-negative integer, not {sub_id!r}")
    src = getattr(rib, "route_events", None)
    if query.get("kind") == "unsubscribe":
        found = src.unsubscribe(identity, sub_id) if src is not None else False
        if src is not None and not src.subs:
            src.close()
            rib.route_events = None
        return {"sub_id": sub_id, "unsubscribed": found}
    prefix = query.get("prefix")
    net = None
    if prefix is not None:
        if not isinstance(prefix, str):
            raise QueryError(f"prefix: a string is required, not {prefix!r}")
        try:
            net = ipaddress.ip_network(prefix.strip(), strict=False)
        except ValueError as e:
            raise QueryError(f"prefix: {prefix!r} is not a valid prefix ({e})") from None
    rate = query.get("rate", EVENT_RATE)
    if type(rate) is not int or not 1 <= rate <= 100000:
        raise QueryError(f"rate: an integer from 1 to 100000, not {rate!r}")
    lease = query.get("lease", LEASE)
    if not isinstance(lease, (int, float)) or not 1 <= lease <= 3600:
        raise QueryError(f"lease: seconds from 1 to 3600, not {lease!r}")
    if src is None:
        src = RouteEventSource(rib)
    created = src.subscribe(identity, sub_id, net, rate, float(lease))
    rib.route_events = src
    return {"sub_id": sub_id, "created": created, "prefix": str(net) if net is not None else None,
            "rate": rate, "subscriptions": len(src.subs)}
