"""Pure-Python reference model of the RIB's hot tables (ext/_rib.pyx, rserver.rib._tables).

Same API, same ids, byte-identical ``apply`` changes; used by the tests, never at
run time. ``dump`` / ``clear`` / ``sweep_stale`` return the same *set* of records as
the compiled module but in dict order (the compiled one uses hash-table order): compare
them sorted. The layouts and rules are documented in ext/_rib.pyx and docs/rib.md.
"""
from __future__ import annotations

import struct

from rserver.codec.layout import ATTR_REC_SIZE, NO_ATTR

CHG4_SIZE = 17
CHG6_SIZE = 29
_U32 = struct.Struct("<I")


class AttrTable:
    """Interned attribute sets: canonical blob -> dense id, with reference counts."""

    def __init__(self) -> None:
        self._by_blob: dict[bytes, int] = {}
        self._blob: list = []       # id -> blob bytes, or None when free
        self._rec: list = []        # id -> ATTR_REC (off 0, len = len(blob))
        self._refs: list[int] = []
        self._free: list[int] = []  # stack, top = next id reused
        self._pending: list[int] = []
        self._pend_set: set[int] = set()

    # --- used by AdjRibIn ---------------------------------------------------------------
    def _push_pending(self, aid: int) -> None:
        if aid not in self._pend_set:
            self._pend_set.add(aid)
            self._pending.append(aid)

    def _incref(self, aid: int) -> None:
        self._refs[aid] += 1

    def _decref(self, aid: int) -> None:
        self._refs[aid] -= 1
        if self._refs[aid] == 0:
            self._push_pending(aid)

    def _live(self, aid: int) -> bool:
        return 0 <= aid < len(self._blob) and self._blob[aid] is not None

    def _check(self, aid) -> None:
        if not isinstance(aid, int) or not self._live(aid):
            raise KeyError(aid)

    # --- API ----------------------------------------------------------------------------
    def intern_batch(self, attr_data, attr_index) -> bytes:
        attr_data, attr_index = bytes(attr_data), bytes(attr_index)
        if len(attr_index) % ATTR_REC_SIZE:
            raise ValueError(f"attr_index length {len(attr_index)} is not a multiple of {ATTR_REC_SIZE}")
        recs = [attr_index[i:i + ATTR_REC_SIZE] for i in range(0, len(attr_index), ATTR_REC_SIZE)]
        spans = [struct.unpack_from("<II", r) for r in recs]
        for i, (off, ln) in enumerate(spans):
            if off + ln > len(attr_data):
                raise ValueError(f"attribute set {i}: blob outside attr_data")
        out = []
        for rec, (off, ln) in zip(recs, spans):
            blob = attr_data[off:off + ln]
            aid = self._by_blob.get(blob)
            if aid is None:
                if self._free:
                    aid = self._free.pop()
                else:
                    aid = len(self._blob)
                    self._blob.append(None)
                    self._rec.append(None)
                    self._refs.append(0)
                self._blob[aid] = blob
                self._rec[aid] = struct.pack("<II", 0, ln) + rec[8:]
                self._refs[aid] = 0
                self._by_blob[blob] = aid
                self._push_pending(aid)
            out.append(aid)
        return struct.pack(f"<{len(out)}I", *out)

    def lookup(self, blob):
        return self._by_blob.get(bytes(blob))

    def blob(self, aid) -> bytes:
        self._check(aid)
        return self._blob[aid]

    def rec(self, aid) -> bytes:
        self._check(aid)
        return self._rec[aid]

    def refcount(self, aid) -> int:
        self._check(aid)
        return self._refs[aid]

    def incref(self, aid) -> None:
        self._check(aid)
        self._incref(aid)

    def decref(self, aid) -> None:
        self._check(aid)
        if self._refs[aid] == 0:
            raise ValueError(f"attribute id {aid}: reference count already 0")
        self._decref(aid)

    def collect(self) -> int:
        n = 0
        for aid in sorted(self._pending, reverse=True):
            if self._blob[aid] is not None and self._refs[aid] == 0:
                del self._by_blob[self._blob[aid]]
                self._blob[aid] = None
                self._rec[aid] = None
                self._free.append(aid)
                n += 1
        self._pending.clear()
        self._pend_set.clear()
        return n

    def pending(self) -> int:
        return len(self._pending)

    def refcounts(self) -> dict[int, int]:
        return {i: r for i, r in enumerate(self._refs) if self._blob[i] is not None}

    def __len__(self) -> int:
        return len(self._by_blob)

    def __contains__(self, aid) -> bool:
        return isinstance(aid, int) and self._live(aid)

    def memory_bytes(self) -> int:      # not comparable with the compiled table
        return sum(len(b) + ATTR_REC_SIZE for b in self._blob if b is not None)


class AdjRibIn:
    """One peer's routes of one AFI: (path_id, plen, addr) -> [attr id, stale]."""

    def __init__(self, afi: int, attrs: AttrTable) -> None:
        if afi not in (1, 2):
            raise ValueError(f"afi must be 1 or 2, not {afi}")
        if attrs is None:
            raise TypeError("attrs must be an AttrTable")
        self.afi = afi
        self.attrs = attrs
        self._rs = 13 if afi == 1 else 25
        self._maxlen = 32 if afi == 1 else 128
        self._t: dict[bytes, list] = {}     # key = record[4:] (path_id, plen, addr)

    def _chg(self, new: int, key: bytes, old: int) -> bytes:
        return _U32.pack(new) + key + _U32.pack(old)

    def apply(self, records, idmap) -> bytes:
        records, idmap = bytes(records), bytes(idmap)
        rs = self._rs
        if len(records) % rs:
            raise ValueError(f"records length {len(records)} is not a multiple of {rs}")
        if len(idmap) % 4:
            raise ValueError(f"idmap length {len(idmap)} is not a multiple of 4")
        ids = struct.unpack(f"<{len(idmap) // 4}I", idmap)
        for i, aid in enumerate(ids):
            if not self.attrs._live(aid):
                raise ValueError(f"idmap[{i}] = {aid} is not a live attribute id")
        recs = [records[i:i + rs] for i in range(0, len(records), rs)]
        for i, r in enumerate(recs):
            idx = _U32.unpack_from(r)[0]
            if r[8] > self._maxlen:
                raise ValueError(f"record {i}: prefix length {r[8]} > {self._maxlen}")
            if idx != NO_ATTR and idx >= len(ids):
                raise ValueError(f"record {i}: attr_idx {idx} >= {len(ids)} sets in idmap")
        out = []
        for r in recs:
            idx = _U32.unpack_from(r)[0]
            key = r[4:]
            ent = self._t.get(key)
            if idx != NO_ATTR:
                aid = ids[idx]
                if ent is not None:
                    ent[1] = False
                    old = ent[0]
                    if old == aid:
                        continue
                    ent[0] = aid
                    self.attrs._incref(aid)
                    self.attrs._decref(old)
                else:
                    self._t[key] = [aid, False]
                    self.attrs._incref(aid)
                    old = NO_ATTR
                out.append(self._chg(aid, key, old))
            elif ent is not None:
                del self._t[key]
                self.attrs._decref(ent[0])
                out.append(self._chg(NO_ATTR, key, ent[0]))
        return b"".join(out)

    def dump(self) -> bytes:
        return b"".join(_U32.pack(e[0]) + k for k, e in self._t.items())

    def clear(self) -> bytes:
        out = b"".join(self._chg(NO_ATTR, k, e[0]) for k, e in self._t.items())
        for e in self._t.values():
            self.attrs._decref(e[0])
        self._t.clear()
        return out

    def mark_stale(self) -> int:
        for e in self._t.values():
            e[1] = True
        return len(self._t)

    def sweep_stale(self) -> bytes:
        gone = [(k, e) for k, e in self._t.items() if e[1]]
        for k, e in gone:
            del self._t[k]
            self.attrs._decref(e[0])
        return b"".join(self._chg(NO_ATTR, k, e[0]) for k, e in gone)

    def stale_count(self) -> int:
        return sum(1 for e in self._t.values() if e[1])

    def _key(self, record) -> bytes:
        record = bytes(record)
        if len(record) != self._rs:
            raise ValueError(f"a prefix record is {self._rs} bytes, not {len(record)}")
        return record[4:]

    def lookup(self, record):
        e = self._t.get(self._key(record))
        return None if e is None else e[0]

    def is_stale(self, record):
        e = self._t.get(self._key(record))
        return None if e is None else e[1]

    def __len__(self) -> int:
        return len(self._t)

    def count_prefixes(self) -> int:
        return len({k[4:] for k in self._t})
