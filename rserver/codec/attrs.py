"""Readable views of canonical attribute blobs (docs/codec.md, "The canonical attribute blob").

Not on the hot path: the RIB and policy use the pre-parsed ATTR_REC fields; this module
is for ``show`` commands, tests, the benchmark's table generator and locally originated
routes (``build_blob``).
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from .constants import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    ATTR_AGGREGATOR,
    ATTR_AS_PATH,
    ATTR_ATOMIC_AGGREGATE,
    ATTR_CLUSTER_LIST,
    ATTR_COMMUNITIES,
    ATTR_EXT_COMMUNITIES,
    ATTR_LARGE_COMMUNITY,
    ATTR_LOCAL_PREF,
    ATTR_MED,
    ATTR_MP_REACH_NLRI,
    ATTR_NEXT_HOP,
    ATTR_ORIGIN,
    ATTR_ORIGINATOR_ID,
    ATTR_OTC,
    KNOWN_ATTRS,
)

__all__ = ["AttrSet", "build_blob", "iter_attributes", "format_as_path"]

# canonical Optional/Transitive flags of the known attributes (docs/codec.md rule 2)
_CANON_FLAGS = {
    ATTR_ORIGIN: 0x40, ATTR_AS_PATH: 0x40, ATTR_NEXT_HOP: 0x40, ATTR_MED: 0x80,
    ATTR_LOCAL_PREF: 0x40, ATTR_ATOMIC_AGGREGATE: 0x40, ATTR_AGGREGATOR: 0xC0,
    ATTR_COMMUNITIES: 0xC0, ATTR_ORIGINATOR_ID: 0x80, ATTR_CLUSTER_LIST: 0x80,
    ATTR_MP_REACH_NLRI: 0x80, ATTR_EXT_COMMUNITIES: 0xC0, ATTR_LARGE_COMMUNITY: 0xC0,
    ATTR_OTC: 0xC0,
}
_SEG_NAMES = {AS_SET: "set", AS_SEQUENCE: "seq", AS_CONFED_SEQUENCE: "confed-seq",
              AS_CONFED_SET: "confed-set"}


def iter_attributes(blob: bytes):
    """Yield (flags, type, value) for each attribute of a blob (or any attribute list)."""
    blob = bytes(blob)
    p, n = 0, len(blob)
    while p < n:
        if n - p < 3:
            raise ValueError("truncated attribute header")
        f, t = blob[p], blob[p + 1]
        if f & 0x10:
            if n - p < 4:
                raise ValueError("truncated attribute header")
            vl, hl = (blob[p + 2] << 8) | blob[p + 3], 4
        else:
            vl, hl = blob[p + 2], 3
        if p + hl + vl > n:
            raise ValueError("attribute overruns the blob")
        yield f, t, blob[p + hl:p + hl + vl]
        p += hl + vl


def _segments(v: bytes) -> list[tuple[int, list[int]]]:
    out = []
    q = 0
    while q < len(v):
        t, n = v[q], v[q + 1]
        out.append((t, list(struct.unpack_from(">%dI" % n, v, q + 2))))
        q += 2 + 4 * n
    return out


def format_as_path(segments: Sequence[tuple[int, Sequence[int]]]) -> str:
    """'65001 65002 {65003,65004} (65010 65011) [65012]': sets in braces, confed
    sequences in parentheses, confed sets in brackets."""
    words = []
    for t, asns in segments:
        if t == AS_SEQUENCE:
            words.extend(str(a) for a in asns)
        elif t == AS_SET:
            words.append("{" + ",".join(str(a) for a in asns) + "}")
        elif t == AS_CONFED_SEQUENCE:
            words.append("(" + " ".join(str(a) for a in asns) + ")")
        else:
            words.append("[" + ",".join(str(a) for a in asns) + "]")
    return " ".join(words)


@dataclass
class AttrSet:
    """One attribute set, decoded from a canonical blob."""

    origin: Optional[int] = None
    as_path: list = field(default_factory=list)          # [(segment_type, [asn, ...]), ...]
    next_hop: Optional[str] = None                       # NEXT_HOP, or MP_REACH global next hop
    next_hop_ll: Optional[str] = None                    # IPv6 link-local (32-byte next hop)
    afi: Optional[int] = None                            # 1 or 2 (from NEXT_HOP / MP_REACH_NLRI)
    med: Optional[int] = None
    local_pref: Optional[int] = None
    atomic_aggregate: bool = False
    aggregator: Optional[tuple] = None                   # (asn, "192.0.2.1")
    communities: list = field(default_factory=list)      # [(hi, lo), ...]
    large_communities: list = field(default_factory=list)  # [(a, b, c), ...]
    ext_communities: list = field(default_factory=list)  # [8-byte bytes, ...]
    originator_id: Optional[str] = None
    cluster_list: list = field(default_factory=list)     # ["192.0.2.1", ...]
    otc: Optional[int] = None
    unknown: list = field(default_factory=list)          # [(flags, type, value), ...]
    partial: frozenset = frozenset()                     # known types whose Partial bit is set

    @classmethod
    def from_blob(cls, blob) -> "AttrSet":
        s = cls()
        partial = set()
        for f, t, v in iter_attributes(blob):
            if t in KNOWN_ATTRS and t in _CANON_FLAGS and f & 0x20 and _CANON_FLAGS[t] == 0xC0:
                partial.add(t)
            if t == ATTR_ORIGIN:
                s.origin = v[0]
            elif t == ATTR_AS_PATH:
                s.as_path = _segments(v)
            elif t == ATTR_NEXT_HOP:
                s.next_hop = str(ipaddress.IPv4Address(v))
                s.afi = 1
            elif t == ATTR_MED:
                s.med = struct.unpack(">I", v)[0]
            elif t == ATTR_LOCAL_PREF:
                s.local_pref = struct.unpack(">I", v)[0]
            elif t == ATTR_ATOMIC_AGGREGATE:
                s.atomic_aggregate = True
            elif t == ATTR_AGGREGATOR:
                if len(v) == 8:
                    s.aggregator = (struct.unpack(">I", v[:4])[0], str(ipaddress.IPv4Address(v[4:])))
                else:
                    s.aggregator = (struct.unpack(">H", v[:2])[0], str(ipaddress.IPv4Address(v[2:])))
            elif t == ATTR_COMMUNITIES:
                s.communities = [struct.unpack_from(">HH", v, i) for i in range(0, len(v), 4)]
            elif t == ATTR_ORIGINATOR_ID:
                s.originator_id = str(ipaddress.IPv4Address(v))
            elif t == ATTR_CLUSTER_LIST:
                s.cluster_list = [str(ipaddress.IPv4Address(v[i:i + 4])) for i in range(0, len(v), 4)]
            elif t == ATTR_MP_REACH_NLRI:
                s.afi = (v[0] << 8) | v[1]
                nhl = v[3]
                nh = v[4:4 + nhl]
                if nhl == 4:
                    s.next_hop = str(ipaddress.IPv4Address(nh))
                else:
                    s.next_hop = str(ipaddress.IPv6Address(nh[:16]))
                    if nhl == 32:
                        s.next_hop_ll = str(ipaddress.IPv6Address(nh[16:]))
            elif t == ATTR_EXT_COMMUNITIES:
                s.ext_communities = [v[i:i + 8] for i in range(0, len(v), 8)]
            elif t == ATTR_LARGE_COMMUNITY:
                s.large_communities = [struct.unpack_from(">III", v, i) for i in range(0, len(v), 12)]
            elif t == ATTR_OTC:
                s.otc = struct.unpack(">I", v)[0]
            else:
                s.unknown.append((f, t, v))
        s.partial = frozenset(partial)
        return s

    def as_path_str(self) -> str:
        return format_as_path(self.as_path)

    def to_blob(self) -> bytes:
        """The canonical blob of these fields (inverse of from_blob)."""
        return build_blob(
            origin=self.origin, as_path=self.as_path, next_hop=self.next_hop,
            next_hop_ll=self.next_hop_ll, afi=self.afi, med=self.med,
            local_pref=self.local_pref, atomic_aggregate=self.atomic_aggregate,
            aggregator=self.aggregator, communities=self.communities,
            large_communities=self.large_communities, ext_communities=self.ext_communities,
            originator_id=self.originator_id, cluster_list=self.cluster_list, otc=self.otc,
            unknown=self.unknown, partial=self.partial)


def _tlv(flags: int, t: int, value: bytes) -> bytes:
    n = len(value)
    if n > 255:
        return bytes((flags | 0x10, t)) + struct.pack(">H", n) + value
    return bytes((flags & 0xEF, t, n)) + value


def _ip4(x) -> bytes:
    return ipaddress.IPv4Address(x).packed if not isinstance(x, bytes) else x


def build_blob(
    *,
    origin: Optional[int] = 0,
    as_path: Iterable = (),
    next_hop=None,
    next_hop_ll=None,
    afi: Optional[int] = None,
    med: Optional[int] = None,
    local_pref: Optional[int] = None,
    atomic_aggregate: bool = False,
    aggregator: Optional[tuple] = None,
    communities: Iterable = (),
    large_communities: Iterable = (),
    ext_communities: Iterable = (),
    originator_id=None,
    cluster_list: Iterable = (),
    otc: Optional[int] = None,
    unknown: Iterable = (),
    partial: Iterable[int] = (),
) -> bytes:
    """Construct a canonical attribute blob (docs/codec.md) from fields.

    as_path: [(segment_type, [asn, ...]), ...] or a flat list of ASNs (one AS_SEQUENCE).
    next_hop: IPv4 -> NEXT_HOP attribute (IPv4 set); IPv6 -> MP_REACH_NLRI (afi 2, or afi 1
    for an RFC 8950 IPv4 set), with next_hop_ll for a 32-byte next hop. communities:
    (hi, lo) pairs or 32-bit ints. unknown: (flags, type, value) of optional transitive
    attributes (written with flags 0xE0). partial: type codes of known optional
    transitive attributes whose Partial bit is set.
    """
    partial = frozenset(partial)
    parts: dict[int, bytes] = {}

    def ot(t: int) -> int:   # canonical flags incl. the Partial bit for optional transitive
        f = _CANON_FLAGS[t]
        return f | 0x20 if (f == 0xC0 and t in partial) else f

    if origin is not None:
        if origin not in (0, 1, 2):
            raise ValueError("origin must be 0, 1 or 2")
        parts[ATTR_ORIGIN] = bytes((0x40, ATTR_ORIGIN, 1, origin))
    segs = list(as_path)
    if segs and isinstance(segs[0], int):
        segs = [(AS_SEQUENCE, segs)]
    pv = b""
    for t, asns in segs:
        asns = list(asns)
        if t not in _SEG_NAMES or not 1 <= len(asns) <= 255:
            raise ValueError(f"bad AS_PATH segment {t} with {len(asns)} AS numbers")
        pv += bytes((t, len(asns))) + struct.pack(">%dI" % len(asns), *asns)
    if origin is not None or segs:
        parts[ATTR_AS_PATH] = _tlv(0x40, ATTR_AS_PATH, pv)
    if next_hop is not None:
        nh = ipaddress.ip_address(next_hop) if not isinstance(next_hop, bytes) else (
            ipaddress.IPv4Address(next_hop) if len(next_hop) == 4 else ipaddress.IPv6Address(next_hop))
        if nh.version == 4 and next_hop_ll is None and afi in (None, 1):
            parts[ATTR_NEXT_HOP] = bytes((0x40, ATTR_NEXT_HOP, 4)) + nh.packed
        else:
            fam = afi if afi is not None else 2
            nhb = nh.packed
            if next_hop_ll is not None:
                nhb += ipaddress.IPv6Address(next_hop_ll).packed
            if nh.version == 4 and fam != 1:
                raise ValueError("an IPv4 next hop needs afi 1")
            parts[ATTR_MP_REACH_NLRI] = (b"\x90\x0e" + struct.pack(">H", 5 + len(nhb))
                                         + struct.pack(">HBB", fam, 1, len(nhb)) + nhb + b"\x00")
    if med is not None:
        parts[ATTR_MED] = b"\x80\x04\x04" + struct.pack(">I", med)
    if local_pref is not None:
        parts[ATTR_LOCAL_PREF] = b"\x40\x05\x04" + struct.pack(">I", local_pref)
    if atomic_aggregate:
        parts[ATTR_ATOMIC_AGGREGATE] = b"\x40\x06\x00"
    if aggregator is not None:
        asn, ip = aggregator
        parts[ATTR_AGGREGATOR] = bytes((ot(ATTR_AGGREGATOR), ATTR_AGGREGATOR, 8)) + struct.pack(">I", asn) + _ip4(ip)
    comms = [((c >> 16, c & 0xFFFF) if isinstance(c, int) else tuple(c)) for c in communities]
    if comms:
        parts[ATTR_COMMUNITIES] = _tlv(ot(ATTR_COMMUNITIES), ATTR_COMMUNITIES,
                                       b"".join(struct.pack(">HH", hi, lo) for hi, lo in comms))
    if originator_id is not None:
        parts[ATTR_ORIGINATOR_ID] = b"\x80\x09\x04" + _ip4(originator_id)
    cl = [_ip4(c) for c in cluster_list]
    if cl:
        parts[ATTR_CLUSTER_LIST] = _tlv(0x80, ATTR_CLUSTER_LIST, b"".join(cl))
    ext = [bytes(e) for e in ext_communities]
    if ext:
        if any(len(e) != 8 for e in ext):
            raise ValueError("extended communities are 8 bytes each")
        parts[ATTR_EXT_COMMUNITIES] = _tlv(ot(ATTR_EXT_COMMUNITIES), ATTR_EXT_COMMUNITIES, b"".join(ext))
    lc = list(large_communities)
    if lc:
        parts[ATTR_LARGE_COMMUNITY] = _tlv(ot(ATTR_LARGE_COMMUNITY), ATTR_LARGE_COMMUNITY,
                                           b"".join(struct.pack(">III", *c) for c in lc))
    if otc is not None:
        parts[ATTR_OTC] = bytes((ot(ATTR_OTC), ATTR_OTC, 4)) + struct.pack(">I", otc)
    for f, t, v in unknown:
        if t in KNOWN_ATTRS:
            raise ValueError(f"attribute type {t} is not an unknown attribute")
        if (f & 0xC0) != 0xC0:
            raise ValueError("only optional transitive unknown attributes appear in a canonical blob")
        if t in parts:
            raise ValueError(f"attribute type {t} given twice")
        parts[t] = _tlv(0xE0, t, bytes(v))
    return b"".join(parts[t] for t in sorted(parts))
