"""Pure-Python reference twin of the export kernels (ext/_rib.pyx, "Export kernels";
compiled as module functions / methods of rserver.rib._tables).

Same names, same arguments (``gather`` and ``lookup_best`` take the table first, since the
compiled ones are methods: ``attrs.gather(records, afi)`` / ``locrib.lookup_best(keys)``,
the latter also as ``_tables.lookup_best(locrib, keys)``), byte-identical results. Used by
the tests, never at run time. Layouts (little-endian)::

    prefix record  attr_idx u32 · path_id u32 · plen u8 · addr 4/16      (13 / 25 bytes)
    CHG record     new u32 · path_id u32 · plen u8 · addr · old u32      (17 / 29 bytes)
    path triple    peer u32 · path_id u32 · attr u32 (all 0xFF = none)
    LOCCHG         plen u8 · addr · new_best · new_second · old_best · old_second (53 / 65)
    BEST           plen u8 · addr · best · second                          (29 / 41)

A member bitmap: bit (idx & 7) of byte (idx >> 3) set = peer idx is a member.
"""
from __future__ import annotations

import struct

from rserver.codec.layout import ATTR_REC_SIZE, NO_ATTR

NO_PEER = 0xFFFFFFFF
_U32 = struct.Struct("<I")
_T = struct.Struct("<III")
_HEAD = struct.Struct("<II")


def _alen(afi: int) -> int:
    if afi not in (1, 2):
        raise ValueError(f"afi must be 1 or 2, not {afi}")
    return 4 if afi == 1 else 16


def _is_member(members: bytes, idx: int) -> bool:
    return (idx >> 3) < len(members) and bool((members[idx >> 3] >> (idx & 7)) & 1)


def _rec(attr: int, key: bytes) -> bytes:
    """Prefix record (attr, path_id 0) from ``plen · addr``."""
    return _HEAD.pack(attr, 0) + key


def recv(m: int, best: tuple, second: tuple) -> tuple:
    """What client m is sent (RFC 7947 §2.3.2.1): the best unless it is m's own path."""
    return best if best[0] != m else second


def export_split(locchg, afi: int, members) -> tuple[dict, dict]:
    alen = _alen(afi)
    locchg, members = bytes(locchg), bytes(members)
    osz = 1 + alen + 48
    if len(locchg) % osz:
        raise ValueError(f"locchg length {len(locchg)} is not a multiple of {osz}")
    general: dict[tuple, list] = {}
    special: dict[int, list] = {}
    for i in range(0, len(locchg), osz):
        key = locchg[i:i + 1 + alen]
        o = i + 1 + alen
        nb, ns, ob, os_ = (_T.unpack_from(locchg, o + 12 * k) for k in range(4))
        e = sorted({p for p in (ob[0], nb[0]) if p != NO_PEER and _is_member(members, p)})
        gkey = (e + [NO_PEER, NO_PEER])[:2]
        gkey = (gkey[0], gkey[1])
        if ob[2] != nb[2]:
            general.setdefault(gkey, []).append(_rec(nb[2], key))
        for m in e:
            old, new = recv(m, ob, os_)[2], recv(m, nb, ns)[2]
            if old != new:
                special.setdefault(m, []).append(_rec(new, key))
    return ({k: b"".join(v) for k, v in general.items()},
            {k: b"".join(v) for k, v in special.items()})


def select_for(best_col, afi: int, client: int, withdraw_none: bool = False) -> bytes:
    alen = _alen(afi)
    best_col = bytes(best_col)
    bs = 1 + alen + 24
    if len(best_col) % bs:
        raise ValueError(f"best_col length {len(best_col)} is not a multiple of {bs}")
    out = []
    for i in range(0, len(best_col), bs):
        key = best_col[i:i + 1 + alen]
        b = _T.unpack_from(best_col, i + 1 + alen)
        s = _T.unpack_from(best_col, i + 13 + alen)
        t = recv(client, b, s)
        if t[2] != NO_ATTR or withdraw_none:
            out.append(_rec(t[2], key))
    return b"".join(out)


def lookup_best(locrib, keys) -> bytes:
    """BEST records of the prefix records ``keys`` in input order (model's ``best(key)``)."""
    alen = _alen(locrib.afi)
    keys = bytes(keys)
    rs = 9 + alen
    if len(keys) % rs:
        raise ValueError(f"keys length {len(keys)} is not a multiple of {rs}")
    none = _T.pack(NO_PEER, 0xFFFFFFFF, NO_ATTR)
    out = []
    for i in range(0, len(keys), rs):
        b, s = locrib.best(keys[i:i + rs])
        out.append(keys[i + 8:i + rs] + (none if b is None else _T.pack(*b))
                   + (none if s is None else _T.pack(*s)))
    return b"".join(out)


def gather(attrs, records, afi: int) -> tuple[bytes, bytes, bytes]:
    """(attr_data, attr_index, local_records) for rserver.codec.encode_batch."""
    alen = _alen(afi)
    records = bytes(records)
    rs = 9 + alen
    if len(records) % rs:
        raise ValueError(f"records length {len(records)} is not a multiple of {rs}")
    recs = [records[i:i + rs] for i in range(0, len(records), rs)]
    for i, r in enumerate(recs):
        aid = _U32.unpack_from(r)[0]
        if aid != NO_ATTR and aid not in attrs:
            raise ValueError(f"record {i}: attr id {aid} is not live")
    wd = [r for r in recs if _U32.unpack_from(r)[0] == NO_ATTR]
    groups: dict[int, list] = {}
    for r in recs:
        aid = _U32.unpack_from(r)[0]
        if aid != NO_ATTR:
            groups.setdefault(aid, []).append(r)
    data, index, out = [], [], list(wd)
    off = 0
    for local, (aid, rl) in enumerate(groups.items()):
        blob = attrs.blob(aid)
        index.append(_U32.pack(off) + attrs.rec(aid)[4:ATTR_REC_SIZE])
        data.append(blob)
        off += len(blob)
        out.extend(_U32.pack(local) + r[4:] for r in rl)
    return b"".join(data), b"".join(index), b"".join(out)


def addpath_map(records, afi: int, src_idx: int, changes: bool = False) -> tuple[bytes, int]:
    alen = _alen(afi)
    records = bytes(records)
    rs = 9 + alen
    isz = rs + 4 if changes else rs
    if len(records) % isz:
        raise ValueError(f"records length {len(records)} is not a multiple of {isz}")
    out = []
    maxp = 0
    for i in range(0, len(records), isz):
        attr, pid = _HEAD.unpack_from(records, i)
        maxp = max(maxp, pid)
        out.append(_HEAD.pack(attr, ((pid & 0xFFF) << 20) | (src_idx & 0xFFFFF))
                   + records[i + 8:i + rs])
    return b"".join(out), maxp


def unique_prefixes(columns, afi: int) -> bytes:
    """Distinct prefixes named by LOCCHG columns or ("keys", prefix records) columns, as
    prefix records (NO_ATTR, path id 0), in order of first appearance."""
    alen = _alen(afi)
    seen: dict[bytes, None] = {}
    for c in columns:
        if isinstance(c, tuple):
            col, rs, off = bytes(c[1]), 9 + alen, 8
        else:
            col, rs, off = bytes(c), 1 + alen + 48, 0
        if len(col) % rs:
            raise ValueError(f"column length {len(col)} is not a multiple of {rs}")
        for i in range(0, len(col), rs):
            seen.setdefault(col[i + off:i + off + 1 + alen], None)
    return b"".join(b"\xff\xff\xff\xff\x00\x00\x00\x00" + k for k in seen)
