"""Pure-Python reference model of the Loc-RIB (ext/_rib.pyx ``LocRib``, rserver.rib._tables).

Same API and byte-identical ``update`` output; the decision is ``bestpath.select_best``
itself, so the compiled decision is checked against the reference process. Used by the
tests, never at run time. ``dump_best`` returns the same *set* of records as the compiled
module, in dict order (compare sorted). Layouts (little-endian)::

    path triple      peer u32 · path_id u32 · attr u32        (12 bytes; all 0xFF = none)
    update() output  plen u8 · addr 4/16 · new_best · new_second · old_best · old_second
                     (LOCCHG4_SIZE 53, LOCCHG6_SIZE 65), one per prefix whose
                     (best, second) changed, in order of the prefix's first change
    dump_best()      plen u8 · addr 4/16 · best · second       (BEST4_SIZE 29, BEST6_SIZE 41)

best = select_best over all candidates of the prefix; second = select_best over the
candidates whose peer index differs from the best's (RFC 7947 §2.3.2.1: what the best's
source peer is given). Candidates are kept per prefix in a list with swap-with-last
removal, exactly like the compiled vectors, so "first in candidate order" tie-breaks
(only reachable when two peer indices share bgp_id, address and peer id) agree too.
"""
from __future__ import annotations

import struct
from typing import Optional

from rserver.codec.layout import ATTR_REC, NO_ATTR
from rserver.rib.bestpath import DEFAULT_LOCAL_PREF, PeerRef, candidate_from_attr_rec, select_best

LOCCHG4_SIZE = 53
LOCCHG6_SIZE = 65
BEST4_SIZE = 29
BEST6_SIZE = 41
NO_PEER = 0xFFFFFFFF
MAX_PEERS = 1 << 20
_TRIPLE = struct.Struct("<III")
_NONE = _TRIPLE.pack(NO_PEER, 0xFFFFFFFF, NO_ATTR)

Path = tuple  # (peer_idx, path_id, attr_id)


def _pack(p: Optional[Path]) -> bytes:
    return _NONE if p is None else _TRIPLE.pack(*p)


class LocRib:
    """Loc-RIB of one AFI: (plen, addr) -> candidate list, best and second best."""

    def __init__(self, afi: int, attrs, *, always_compare_med: bool = False,
                 missing_med_worst: bool = False, default_local_pref: int = DEFAULT_LOCAL_PREF) -> None:
        if afi not in (1, 2):
            raise ValueError(f"afi must be 1 or 2, not {afi}")
        if attrs is None:
            raise TypeError("attrs must be an AttrTable")
        self.afi = afi
        self.attrs = attrs
        self.always_compare_med = bool(always_compare_med)
        self.missing_med_worst = bool(missing_med_worst)
        self.default_local_pref = default_local_pref
        self._alen = 4 if afi == 1 else 16
        self._maxlen = 32 if afi == 1 else 128
        self._cs = 13 + self._alen
        # (plen, addr) -> [candidates list of [peer, path_id, attr], best Path|None, second]
        self._t: dict[tuple, list] = {}
        self._peers: dict[int, list] = {}       # idx -> [bgp_id, addr, peer_id, ncand]

    # --- peers -------------------------------------------------------------------------
    def set_peer(self, idx: int, bgp_id: int, addr, peer_id: Optional[int] = None) -> None:
        addr = bytes(addr)
        pid = idx if peer_id is None else peer_id
        if not 0 <= idx < MAX_PEERS:
            raise ValueError(f"peer index {idx} >= {MAX_PEERS}")
        if len(addr) not in (4, 16):
            raise ValueError("peer address must be 4 or 16 bytes")
        p = self._peers.get(idx)
        if p is not None and p[3] and (p[0], p[1], p[2]) != (bgp_id, addr, pid):
            raise ValueError(f"peer {idx} holds {p[3]} candidates: its decision fields cannot change")
        self._peers[idx] = [bgp_id, addr, pid, p[3] if p else 0]

    def remove_peer(self, idx: int) -> None:
        p = self._peers.get(idx)
        if p is not None:
            if p[3]:
                raise ValueError(f"peer {idx} holds {p[3]} candidates")
            del self._peers[idx]

    def peer(self, idx: int):
        p = self._peers.get(idx)
        return None if p is None else tuple(p)

    # --- decision ------------------------------------------------------------------------
    def _cand(self, path: list):
        peer, path_id, aid = path
        f = ATTR_REC.unpack(self.attrs.rec(aid))      # no cache: ids are reused after collect()
        bgp_id, addr, pid, _ = self._peers[peer]
        return candidate_from_attr_rec(f, PeerRef(pid, bgp_id, addr), path_id=path_id,
                                       default_local_pref=self.default_local_pref)

    def _decide(self, cands: list) -> tuple:
        if not cands:
            return None, None
        cs = [self._cand(c) for c in cands]
        opts = dict(always_compare_med=self.always_compare_med, missing_med_worst=self.missing_med_worst)
        b = select_best(cs, **opts)
        others = [i for i, c in enumerate(cands) if c[0] != cands[b][0]]
        s = select_best(cs, among=others, **opts) if others else None
        return tuple(cands[b]), (None if s is None else tuple(cands[s]))

    # --- update ---------------------------------------------------------------------------
    def update(self, peer_idx: int, changes) -> bytes:
        changes = bytes(changes)
        cs, alen = self._cs, self._alen
        if len(changes) % cs:
            raise ValueError(f"changes length {len(changes)} is not a multiple of {cs}")
        if peer_idx not in self._peers:
            raise ValueError(f"peer {peer_idx} is not registered (set_peer)")
        recs = [changes[i:i + cs] for i in range(0, len(changes), cs)]
        for i, r in enumerate(recs):
            if r[8] > self._maxlen:
                raise ValueError(f"change {i}: prefix length {r[8]} > {self._maxlen}")
            aid = struct.unpack_from("<I", r)[0]
            if aid != NO_ATTR and aid not in self.attrs:
                raise ValueError(f"change {i}: attr id {aid} is not live")
        pinfo = self._peers[peer_idx]
        dirty: dict[tuple, tuple] = {}
        for r in recs:
            aid, path_id = struct.unpack_from("<II", r)
            key = (r[8], r[9:9 + alen])
            ent = self._t.get(key)
            if ent is None:
                if aid == NO_ATTR:
                    continue
                ent = self._t[key] = [[], None, None]
            cands = ent[0]
            j = next((k for k, c in enumerate(cands) if c[0] == peer_idx and c[1] == path_id), None)
            if aid == NO_ATTR and j is None:
                continue
            if key not in dirty:
                dirty[key] = (ent[1], ent[2])
            if aid == NO_ATTR:
                last = cands.pop()
                if j < len(cands):
                    cands[j] = last
                pinfo[3] -= 1
            elif j is not None:
                cands[j][2] = aid
            else:
                cands.append([peer_idx, path_id, aid])
                pinfo[3] += 1
        out = []
        for key, (ob, os_) in dirty.items():
            ent = self._t[key]
            ent[1], ent[2] = self._decide(ent[0])
            if not ent[0]:
                del self._t[key]
            if (ent[1], ent[2]) != (ob, os_):
                out.append(bytes([key[0]]) + key[1] + _pack(ent[1]) + _pack(ent[2]) + _pack(ob) + _pack(os_))
        return b"".join(out)

    # --- queries --------------------------------------------------------------------------
    def _key(self, key) -> tuple:
        if isinstance(key, tuple):
            plen, addr = key
            addr = bytes(addr)
            if len(addr) != self._alen:
                raise ValueError(f"address must be {self._alen} bytes")
        else:
            kb = bytes(key)
            if len(kb) != 9 + self._alen:
                raise ValueError(f"a prefix record is {9 + self._alen} bytes, not {len(kb)}")
            plen, addr = kb[8], kb[9:]
        if plen > self._maxlen:
            raise ValueError(f"prefix length {plen} > {self._maxlen}")
        return (plen, addr)

    def best(self, key) -> tuple:
        ent = self._t.get(self._key(key))
        return (None, None) if ent is None else (ent[1], ent[2])

    def candidates(self, key) -> list:
        ent = self._t.get(self._key(key))
        return [] if ent is None else [tuple(c) for c in ent[0]]

    def dump_best(self) -> bytes:
        return b"".join(bytes([k[0]]) + k[1] + _pack(e[1]) + _pack(e[2]) for k, e in self._t.items())

    def __len__(self) -> int:
        return len(self._t)

    def n_candidates(self) -> int:
        return sum(len(e[0]) for e in self._t.values())

    def memory_bytes(self) -> int:      # not comparable with the compiled table
        return 0
