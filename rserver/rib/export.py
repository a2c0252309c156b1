"""Export to route-server clients (RFC 7947), inside the RIB process (docs/export.md).

The Loc-RIB keeps, per prefix, the best path and the best path from another peer than the
best's source ("second"). What client ``m`` is sent for a prefix is ``best`` unless ``best``
came from ``m``, then ``second`` (RFC 7947 §2.3.2.1 path-hiding mitigation), nothing when that
is absent. Attributes are the interned canonical blobs, unchanged (RFC 7947 §2.2: no RS AS
prepended unless the client asks for it, NEXT_HOP, MED, communities untouched; unknown
optional transitive attributes are already byte-exact with Partial set in the blob).

Update groups ("encode once, send many"): clients of one address family with the same
export handling - same AS4 capability, ADD-PATH send or not, maximum message size and
prepend setting - form a :class:`Group`. A Loc-RIB change column is split once per group
(``export_split``): the records every member sees go, per set of excluded members (the old
and new source of the prefix), into one encoded stream written to every other member; the
few members for which the change differs (the sources themselves) get their own encoding.
Clients with ADD-PATH send get every path but their own (path id = source peer and its path
id, ``addpath_map``) straight from the Adj-RIB-In changes.

A client is *live* (its group's stream reaches it) or *catching up*: right after its session
came up (the initial table, then End-of-RIB), after a ROUTE-REFRESH (BoRR, table, EoRR with
enhanced route refresh, RFC 7313), or while it is blocked - its worker's export stream is
above its high watermark, or the worker told us (Xoff) that the client's TCP queue is. While
not live, the Loc-RIB changes are remembered as prefixes to revisit (the Loc-RIB change
columns are kept by reference and reduced to distinct prefixes when they grow past the table
size, so memory is bounded by the table, not by churn); once unblocked the client is sent the
current state of those prefixes, in chunks, and rejoins the live stream. A slow client never
holds up its group and never makes the RIB queue its updates.

The Adj-RIB-Out of a client is not stored: it is what the rule above gives over the Loc-RIB
(``adj_rib_out``), or for ADD-PATH clients every other peer's Adj-RIB-In.
"""
from __future__ import annotations

import asyncio
import struct
from collections import deque
from typing import Any, Callable, Iterable, Optional

import msgspec

from ..bus.messages import SessionUp
from ..codec import encode_batch, encode_eor
from ..codec.layout import (
    ADDPATH_V4, ADDPATH_V6, ATTR_REC_SIZE, NO_ATTR, REC4_SIZE, REC6_SIZE, CodecContext,
)
from ..codec.messages import RouteRefresh, encode_route_refresh
from ..codec.update_py import prepend_as_path
from ..codec.layout import ATTR_REC
from ..log import get_logger
from .bestpath import PeerRef, candidate_from_attr_rec, rank

try:                                    # the compiled kernels; the reference only if not built
    from ._tables import addpath_map, export_split, lookup_best, select_for, unique_prefixes

    def gather(attrs: Any, records: bytes, afi: int):
        return attrs.gather(records, afi)
except ImportError:                     # pragma: no cover - setup.sh fails without the build
    from .export_py import addpath_map, export_split, gather, lookup_best, select_for, unique_prefixes

__all__ = ["Exporter", "Client", "Group", "count_messages", "prepend_sets", "CHUNK"]

NONE = 0xFFFFFFFF
AP_BIT = {1: ADDPATH_V4, 2: ADDPATH_V6}
LOCCHG_SIZE = {1: 53, 2: 65}
BEST_SIZE = {1: 29, 2: 41}
REC_SIZE = {1: REC4_SIZE, 2: REC6_SIZE}
CHUNK = 50_000                  # prefixes per catch-up step (the loop serves others in between)
AP_BACKLOG_MAX = 4_000_000      # ADD-PATH records kept for a blocked client before it is reset
_HDR = struct.Struct("!16xHB")
_REC_HEAD = struct.Struct("<II")      # a prefix record's attr_idx, path_id (and a CHG's new, path_id)
_U32 = struct.Struct("<I")


def count_messages(data: bytes) -> int:
    """Number of BGP messages in a run of whole messages."""
    n = 0
    p = 0
    end = len(data)
    unpack = _HDR.unpack_from
    while p < end:
        p += unpack(data, p)[0]
        n += 1
    return n


def prepend_sets(attr_data: bytes, attr_index: bytes, asn: int) -> tuple[bytes, bytes]:
    """``gather`` output with ``asn`` prepended to every set's AS_PATH (per set, not per prefix)."""
    blobs = []
    recs = bytearray(attr_index)
    off = 0
    for i in range(0, len(attr_index), ATTR_REC_SIZE):
        o, ln = struct.unpack_from("<II", attr_index, i)
        b, mp_off = prepend_as_path(attr_data[o:o + ln], asn)
        struct.pack_into("<II", recs, i, off, len(b))
        struct.pack_into("<I", recs, i + ATTR_REC_SIZE - 4, mp_off)
        blobs.append(b)
        off += len(b)
    return b"".join(blobs), bytes(recs)


def _export_view(up: SessionUp) -> SessionUp:
    """The SessionUp fields export depends on (limits and names do not matter to it)."""
    return msgspec.structs.replace(up, max_prefix=None, name="")


class Group:
    """Clients of one family sharing one encoded stream."""

    __slots__ = ("key", "afi", "ctx", "prepend_as", "addpath", "best_n", "members", "live", "bitmap", "gid")

    def __init__(self, key: tuple, gid: int):
        afi, as4, addpath, max_msg, prepend_as, best_n = key
        self.key = key
        self.gid = gid
        self.afi = afi
        self.addpath = addpath
        self.best_n = best_n            # ADD-PATH "best N" (0: every path)
        self.prepend_as = prepend_as
        self.ctx = CodecContext(as4=as4, addpath_tx=AP_BIT[afi] if addpath else 0, max_msg=max_msg)
        self.members: set[int] = set()
        self.live: set[int] = set()
        self.bitmap = bytearray()

    def set_live(self, pid: int, live: bool) -> None:
        if live:
            self.live.add(pid)
        else:
            self.live.discard(pid)
        need = (pid >> 3) + 1
        if len(self.bitmap) < need:
            self.bitmap.extend(bytes(need - len(self.bitmap)))
        if live:
            self.bitmap[pid >> 3] |= 1 << (pid & 7)
        else:
            self.bitmap[pid >> 3] &= ~(1 << (pid & 7)) & 0xFF


class Client:
    """Export state of one Established client."""

    def __init__(self, up: SessionUp, identity: bytes):
        self.up = up
        self.peer_id = up.peer_id
        self.identity = identity
        self.address = up.address
        self.afis = sorted({afi for afi, safi in up.families if safi == 1 and afi in (1, 2)})
        self.addpath = {afi: bool(up.addpath_tx & AP_BIT[afi]) for afi in (1, 2)}
        self.enhanced_refresh = up.enhanced_refresh
        self.best_n = max(0, up.add_path_send_max)
        self.groups: dict[int, Group] = {}
        self.work: deque = deque()          # (afi, kind, data, pos) catch-up items
        self.dirty: dict[int, list] = {1: [], 2: []}     # Loc-RIB change columns (or key columns)
        self.dirty_bytes = {1: 0, 2: 0}
        self.backlog: dict[int, list] = {1: [], 2: []}   # ADD-PATH records while not live
        self.backlog_n = 0
        self.xoff = False
        self.scheduled = False
        self.closed = False
        self.prefixes_sent = 0
        self.updates_sent = 0
        self.eor_sent: set[int] = set()

    def key(self, afi: int, up: SessionUp) -> tuple:
        return (afi, up.as4, self.addpath[afi], up.max_msg, up.prepend_as,
                self.best_n if self.addpath[afi] else 0)


class Exporter:
    """Every client's export, driven by the RIB process.

    ``emit(identity, peer_ids, afi, data, messages)`` hands encoded UPDATE bytes to the bus;
    ``blocked(identity)`` says whether that worker's export stream is above its high
    watermark; ``reset(peer_id, reason)`` asks the worker to reset a client's session."""

    def __init__(self, attrs: Any, locrib: dict, peers: dict, *,
                 emit: Callable[[bytes, list, int, bytes, int], None],
                 blocked: Callable[[bytes], bool] = lambda identity: False,
                 reset: Optional[Callable[[int, str], None]] = None,
                 chunk: int = CHUNK):
        self.attrs = attrs
        self.locrib = locrib
        self.peers = peers                  # peer_id -> RibPeer (Adj-RIB-In for ADD-PATH dumps)
        self.emit_fn = emit
        self.blocked = blocked
        self.reset_fn = reset
        self.chunk = chunk
        self.dirty_min = 1024          # remembered changes are reduced past 2 x max(table, this)
        self.clients: dict[int, Client] = {}
        self.groups: dict[tuple, Group] = {}
        self._gid = 0
        self.log = get_logger("export")
        self.stats = {"batches": 0, "bytes": 0, "messages": 0, "encodes": 0}

    # -- clients ----------------------------------------------------------------------------

    def client_up(self, up: SessionUp, identity: bytes) -> Client:
        """A session reached Established: the client gets its table, then End-of-RIB.
        The same session announced again (e.g. new max-prefix limits on reload) changes nothing."""
        old = self.clients.get(up.peer_id)
        if old is not None and old.identity == identity and _export_view(old.up) == _export_view(up):
            old.up = up
            return old
        self.client_down(up.peer_id)
        c = Client(up, identity)
        self.clients[c.peer_id] = c
        for afi in c.afis:
            key = c.key(afi, up)
            g = self.groups.get(key)
            if g is None:
                self._gid += 1
                g = self.groups[key] = Group(key, self._gid)
            g.members.add(c.peer_id)
            c.groups[afi] = g
            self._queue_table(c, afi)
            c.work.append((afi, "raw", encode_eor(afi, 1), "eor"))
        self._schedule(c)
        return c

    def client_down(self, peer_id: int) -> None:
        c = self.clients.pop(peer_id, None)
        if c is None:
            return
        c.closed = True
        for afi, g in c.groups.items():
            g.members.discard(peer_id)
            g.set_live(peer_id, False)
            if not g.members:
                self.groups.pop(g.key, None)

    def refresh(self, peer_id: int, afi: int) -> bool:
        """ROUTE-REFRESH from a client (RFC 2918): re-send its table of ``afi``, between BoRR
        and EoRR when enhanced route refresh was negotiated (RFC 7313 §4)."""
        c = self.clients.get(peer_id)
        if c is None or afi not in c.groups:
            return False
        self._leave(c, afi)
        if c.enhanced_refresh:
            c.work.append((afi, "raw", encode_route_refresh(RouteRefresh(afi, 1, 1)), "borr"))
        self._queue_table(c, afi)
        if c.enhanced_refresh:
            c.work.append((afi, "raw", encode_route_refresh(RouteRefresh(afi, 1, 2)), "eorr"))
        self._schedule(c)
        return True

    def set_xoff(self, peer_id: int, xoff: bool) -> None:
        c = self.clients.get(peer_id)
        if c is None or c.xoff == xoff:
            return
        c.xoff = xoff
        if xoff:
            for afi in c.groups:
                self._leave(c, afi)
        else:
            self._schedule(c)

    def worker_paused(self, identity: bytes, paused: bool) -> None:
        for c in self.clients.values():
            if c.identity != identity:
                continue
            if paused:
                for afi in c.groups:
                    self._leave(c, afi)
            else:
                self._schedule(c)

    def _queue_table(self, c: Client, afi: int) -> None:
        if c.addpath[afi]:
            c.backlog[afi].clear()
            c.work.append((afi, "bestn-dump" if c.best_n else "addpath-dump", None, 0))
        else:
            c.dirty[afi].clear()
            c.dirty_bytes[afi] = 0
            c.work.append((afi, "dump", None, 0))

    def _leave(self, c: Client, afi: int) -> None:
        g = c.groups.get(afi)
        if g is not None and c.peer_id in g.live:
            g.set_live(c.peer_id, False)

    def _is_blocked(self, c: Client) -> bool:
        return c.xoff or self.blocked(c.identity)

    # -- changes from the Loc-RIB -------------------------------------------------------------

    def on_changes(self, afi: int, src: int, chg: bytes, locchg: bytes) -> None:
        """One peer's Adj-RIB-In changes ``chg`` and the Loc-RIB's resulting ``locchg``."""
        for g in list(self.groups.values()):
            if g.afi != afi:
                continue
            if g.addpath and g.best_n:
                if chg:
                    self._best_n_changes(g, src, chg)
                continue
            if g.addpath:
                if not chg:
                    continue
                recs, max_pid = addpath_map(chg, afi, src, True)
                if max_pid >= 4096:
                    self.log.warning("ADD-PATH: path ids >= 4096 from a peer are folded (collisions possible)",
                                     peer_id=src, max_path_id=max_pid)
                if not recs:
                    continue
                targets = [m for m in g.live if m != src]
                if targets:
                    self._send(targets, g, recs)
                for m in g.members - g.live:
                    self._note_backlog(m, afi, recs, src)
                continue
            if not locchg:
                continue
            if g.live:
                general, special = export_split(locchg, afi, bytes(g.bitmap))
                for (a, b), recs in general.items():
                    targets = [m for m in g.live if m != a and m != b]
                    if targets:
                        self._send(targets, g, recs)
                for m, recs in special.items():
                    if m in g.live:
                        self._send([m], g, recs)
            for m in g.members - g.live:
                self._note_dirty(m, afi, locchg)

    # -- ADD-PATH best N (a Python path per changed prefix: only for clients that ask for it) --

    def _ranked(self, afi: int, cands: list) -> list:
        """Candidates ``(peer, path_id, attr)`` best first, by the decision process."""
        if len(cands) < 2:
            return list(cands)
        lr = self.locrib[afi]
        objs = []
        for peer, pid, aid in cands:
            info = lr.peer(peer)
            ref = PeerRef(info[2], info[0], info[1]) if info is not None else PeerRef(peer, 0, b"\0\0\0\0")
            objs.append(candidate_from_attr_rec(ATTR_REC.unpack(self.attrs.rec(aid)), ref, path_id=pid,
                                                default_local_pref=lr.default_local_pref))
        order = rank(objs, always_compare_med=lr.always_compare_med, missing_med_worst=lr.missing_med_worst)
        return [cands[i] for i in order]

    @staticmethod
    def _top(ranked: list, m: int, n: int) -> dict:
        """The best ``n`` paths client ``m`` may receive: out path id -> attr id."""
        out = {}
        for peer, pid, aid in ranked:
            if peer != m:
                out[((pid & 0xFFF) << 20) | (peer & 0xFFFFF)] = aid
                if len(out) == n:
                    break
        return out

    @staticmethod
    def _diff_records(old: dict, new: dict, key: bytes) -> list:
        pack = _REC_HEAD.pack
        recs = [pack(NO_ATTR, opid) + key for opid in old if opid not in new]
        recs += [pack(aid, opid) + key for opid, aid in new.items() if old.get(opid) != aid]
        return recs

    def _best_n_changes(self, g: Group, src: int, chg: bytes) -> None:
        """One source's Adj-RIB-In changes for a best-N group: per changed prefix, each
        member's best N before (the candidates with the change undone) and after."""
        afi = g.afi
        rs = 17 if afi == 1 else 29
        by_key: dict[bytes, list] = {}
        for i in range(0, len(chg), rs):
            new, pid = _REC_HEAD.unpack_from(chg, i)
            by_key.setdefault(chg[i + 8:i + rs - 4], []).append((pid, new, _U32.unpack_from(chg, i + rs - 4)[0]))
        lr = self.locrib[afi]
        out: dict[int, list] = {}
        for key, changes in by_key.items():
            cur = lr.candidates((key[0], key[1:]))
            old = list(cur)
            for pid, new, was in reversed(changes):
                old = [c for c in old if not (c[0] == src and c[1] == pid)]
                if was != NO_ATTR:
                    old.append((src, pid, was))
            new_r, old_r = self._ranked(afi, cur), self._ranked(afi, old)
            for m in g.members:
                if m == src and not any(c[0] != src for c in cur + old):
                    continue
                recs = self._diff_records(self._top(old_r, m, g.best_n), self._top(new_r, m, g.best_n), key)
                if recs:
                    out.setdefault(m, []).extend(recs)
        for m, recs in out.items():
            data = b"".join(recs)
            if m in g.live:
                self._send([m], g, data)
            else:
                self._note_backlog(m, afi, data, -1)

    def _best_n_records(self, c: "Client", afi: int, keys: Iterable[bytes], n: int) -> bytes:
        """Current best-N announcements of client ``c`` for prefix keys (plen + addr)."""
        lr = self.locrib[afi]
        recs = []
        for key in keys:
            top = self._top(self._ranked(afi, lr.candidates((key[0], key[1:]))), c.peer_id, n)
            recs += self._diff_records({}, top, key)
        return b"".join(recs)

    def _note_dirty(self, m: int, afi: int, locchg: bytes) -> None:
        c = self.clients.get(m)
        if c is None:
            return
        c.dirty[afi].append(locchg)
        c.dirty_bytes[afi] += len(locchg)
        table = max(len(self.locrib[afi]), self.dirty_min)
        if c.dirty_bytes[afi] // LOCCHG_SIZE[afi] > 2 * table:
            keys = self._dirty_keys(c, afi)         # bounded: distinct prefixes only
            c.dirty[afi] = [("keys", keys)]
            c.dirty_bytes[afi] = 0

    def _note_backlog(self, m: int, afi: int, recs: bytes, src: int) -> None:
        c = self.clients.get(m)
        if c is None or m == src:
            return
        c.backlog[afi].append(recs)
        c.backlog_n += len(recs) // REC_SIZE[afi]
        if c.backlog_n > AP_BACKLOG_MAX:
            self.log.warning("export: ADD-PATH client blocked too long, resetting its session",
                             neighbor=c.address, peer_id=m)
            c.backlog = {1: [], 2: []}
            c.backlog_n = 0
            if self.reset_fn is not None:
                self.reset_fn(m, "route server export backlog exceeded")

    def _resolve_backlog(self, c: Client, afi: int) -> bytes:
        """The ADD-PATH changes a blocked client missed, reduced to one record per path with
        the path's *current* attributes (attr ids kept across collect() are not trusted)."""
        rs = REC_SIZE[afi]
        last: dict[bytes, None] = {}
        for col in c.backlog[afi]:
            for i in range(0, len(col), rs):
                last.pop(col[i + 4:i + rs], None)
                last[col[i + 4:i + rs]] = None
        out = []
        pack = _REC_HEAD.pack
        g = c.groups.get(afi)
        best_n = g.best_n if g is not None else 0
        tops: dict[bytes, dict] = {}
        for k in last:
            pid_out = int.from_bytes(k[:4], "little")
            src, in_pid = pid_out & 0xFFFFF, pid_out >> 20
            aid = None
            if best_n:
                top = tops.get(k[4:])
                if top is None:
                    key = k[4:]
                    top = tops[key] = self._top(self._ranked(afi, self.locrib[afi].candidates((key[0], key[1:]))),
                                                c.peer_id, best_n)
                aid = top.get(pid_out)
            else:
                p = self.peers.get(src)
                if p is not None and src != c.peer_id:
                    aid = p.tables[afi].lookup(pack(0, in_pid) + k[4:])
            out.append(pack(NO_ATTR if aid is None else aid, pid_out) + k[4:])
        return b"".join(out)

    def holds_ids(self) -> bool:
        """True while a catch-up holds attr ids of a table snapshot between steps: the RIB
        then defers AttrTable.collect() so none of them is freed and reused meanwhile."""
        return any(item[1] in ("best", "records", "bestn") for c in self.clients.values() for item in c.work)

    def _dirty_keys(self, c: Client, afi: int) -> bytes:
        """Distinct prefixes (as prefix records, attr ignored) named by the remembered changes
        (a C hash set: no Python object per prefix)."""
        return unique_prefixes(c.dirty[afi], afi)

    # -- encoding and sending -------------------------------------------------------------------

    def _encode(self, g: Group, recs: bytes) -> bytes:
        attr_data, attr_index, local = gather(self.attrs, recs, g.afi)
        if g.prepend_as:
            attr_data, attr_index = prepend_sets(attr_data, attr_index, g.prepend_as)
        self.stats["encodes"] += 1
        return encode_batch(attr_data, attr_index, local, g.afi, g.ctx)

    def _send(self, targets: Iterable[int], g: Group, recs: bytes) -> None:
        data = self._encode(g, recs)
        if not data:
            return
        n = len(recs) // REC_SIZE[g.afi]
        self._emit(targets, g.afi, data, n)

    def _emit(self, targets: Iterable[int], afi: int, data: bytes, prefixes: int = 0) -> None:
        msgs = count_messages(data)
        by_worker: dict[bytes, list] = {}
        for m in targets:
            c = self.clients.get(m)
            if c is None:
                continue
            by_worker.setdefault(c.identity, []).append(m)
            c.prefixes_sent += prefixes
            c.updates_sent += msgs
        for identity, pids in by_worker.items():
            self.emit_fn(identity, pids, afi, data, msgs)
            self.stats["batches"] += 1
            self.stats["bytes"] += len(data)
            self.stats["messages"] += msgs

    # -- catching up ------------------------------------------------------------------------------

    def _schedule(self, c: Client) -> None:
        if c.scheduled or c.closed:
            return
        c.scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self._pump, c.peer_id)
        except RuntimeError:            # no loop (unit tests drive pump_all())
            c.scheduled = False

    def pump_all(self) -> None:
        """Run every client's catch-up to completion (tests without an event loop)."""
        for _ in range(1_000_000):
            busy = False
            for pid in list(self.clients):
                c = self.clients.get(pid)
                if c is not None and not self._is_blocked(c) and (c.work or self._has_pending(c)):
                    self._step(c)
                    busy = True
            if not busy:
                return

    def _pump(self, peer_id: int) -> None:
        c = self.clients.get(peer_id)
        if c is None:
            return
        c.scheduled = False
        if c.closed or self._is_blocked(c):
            return                          # resumed by xon / the worker's stream draining
        try:
            more = self._step(c)
        except Exception:
            self.log.exception("export: catch-up step failed", neighbor=c.address, peer_id=peer_id)
            return
        if more:
            self._schedule(c)

    def _has_pending(self, c: Client) -> bool:
        return any(c.dirty[a] or c.backlog[a] for a in (1, 2))

    def _step(self, c: Client) -> bool:
        """One chunk of catch-up work; True if more remains. Joins the live stream when done."""
        budget = self.chunk
        while budget > 0 and not self._is_blocked(c):
            if not c.work:
                if not self._has_pending(c):
                    for afi, g in c.groups.items():
                        if c.peer_id not in g.live:
                            g.set_live(c.peer_id, True)
                    return False
                for afi in (1, 2):
                    if c.dirty[afi]:
                        keys = self._dirty_keys(c, afi)
                        c.dirty[afi] = []
                        c.dirty_bytes[afi] = 0
                        c.work.append((afi, "keys", keys, 0))
                    if c.backlog[afi]:
                        c.work.append((afi, "records", self._resolve_backlog(c, afi), 0))
                        c.backlog[afi] = []
                c.backlog_n = 0
                continue
            afi, kind, data, pos = c.work.popleft()
            g = c.groups.get(afi)
            if g is None:
                continue
            if kind == "raw":
                self._emit([c.peer_id], afi, data)
                if pos == "eor":
                    c.eor_sent.add(afi)
                continue
            if kind == "dump":
                data = self.locrib[afi].dump_best()
                kind = "best"
            elif kind == "addpath-dump":
                parts = []
                for pid, p in self.peers.items():
                    if pid != c.peer_id:
                        recs, _ = addpath_map(p.tables[afi].dump(), afi, pid, False)
                        parts.append(recs)
                data = b"".join(parts)
                kind = "records"
            if kind == "bestn-dump":
                data = self.locrib[afi].dump_best()
                kind = "bestn"
            if kind == "bestn":
                size = BEST_SIZE[afi]
                end = min(len(data), pos + budget * size)
                kl = 5 if afi == 1 else 17
                recs = self._best_n_records(c, afi, (data[i:i + kl] for i in range(pos, end, size)), c.best_n)
                if recs:
                    self._send([c.peer_id], g, recs)
                budget -= (end - pos) // size
                if end < len(data):
                    c.work.appendleft((afi, kind, data, end))
                continue
            size = BEST_SIZE[afi] if kind == "best" else REC_SIZE[afi]
            end = min(len(data), pos + budget * size)
            piece = data[pos:end]
            if kind == "best":
                recs = select_for(piece, afi, c.peer_id, False)
            elif kind == "keys":
                # the current state of this chunk of remembered prefixes, looked up now (no
                # attr id is held between chunks): announce, or withdraw when nothing is left
                recs = select_for(lookup_best(self.locrib[afi], piece), afi, c.peer_id, True)
            else:
                recs = piece
            if recs:
                self._send([c.peer_id], g, recs)
            budget -= (end - pos) // size
            if end < len(data):
                c.work.appendleft((afi, kind, data, end))
        return bool(c.work) or self._has_pending(c) or any(c.peer_id not in g.live for g in c.groups.values())

    # -- queries ---------------------------------------------------------------------------------

    def adj_rib_out(self, peer_id: int, afi: int) -> Optional[bytes]:
        """What ``peer_id`` has been sent for ``afi`` (once caught up), as prefix records
        carrying global attr ids; None when it is not an export client of that family."""
        c = self.clients.get(peer_id)
        if c is None or afi not in c.groups:
            return None
        if c.addpath[afi] and c.best_n:
            kl = 5 if afi == 1 else 17
            dump = self.locrib[afi].dump_best()
            return self._best_n_records(c, afi, (dump[i:i + kl] for i in range(0, len(dump), BEST_SIZE[afi])),
                                        c.best_n)
        if c.addpath[afi]:
            parts = []
            for pid, p in self.peers.items():
                if pid != peer_id:
                    parts.append(addpath_map(p.tables[afi].dump(), afi, pid, False)[0])
            return b"".join(parts)
        return select_for(self.locrib[afi].dump_best(), afi, peer_id, False)

    def status(self, peer_id: int) -> Optional[dict]:
        c = self.clients.get(peer_id)
        if c is None:
            return None
        return {
            "families": ["ipv4" if a == 1 else "ipv6" for a in c.afis],
            "groups": {("ipv4" if a == 1 else "ipv6"): g.gid for a, g in c.groups.items()},
            "live": [("ipv4" if a == 1 else "ipv6") for a, g in c.groups.items() if c.peer_id in g.live],
            "xoff": c.xoff, "prefixes_sent": c.prefixes_sent, "updates_sent": c.updates_sent,
            "eor_sent": sorted("ipv4" if a == 1 else "ipv6" for a in c.eor_sent),
        }
