"""Pure-Python UPDATE codec: the readable reference backend (docs/codec.md).

The Cython twin (ext/_cupdate.pyx) must produce byte-identical results, so every
decision this module takes is written down, either in docs/codec.md or in the
section "Clarifications (pure backend)" appended to it. The decisions are
repeated here as numbered comments ``[Cn]`` next to the code that implements them:

[C1]  Reset rollback. A message that ends in a session reset contributes nothing
      (no records, no attribute sets, no EoR, none of its other problems); the
      reset Problem is appended to ``problems`` and also returned as ``error``.
[C2]  Check order inside one UPDATE: header (marker, length, type, UPDATE min
      length, completeness) -> Withdrawn Routes Length -> Total Path Attribute
      Length -> Withdrawn Routes field -> path attributes in wire order (per
      attribute: framing, duplicate, unrecognised well-known, then the
      attribute's own checks: flags, length, value) -> NLRI field -> missing
      well-known attributes -> (something announced and no treat-as-withdraw so
      far) AS4 reconciliation: AGGREGATOR/AS4_AGGREGATOR first, then AS4_PATH.
      The first session-reset condition met ends the message.
[C3]  Malformed MP_REACH_NLRI / MP_UNREACH_NLRI (value too short, next-hop length,
      NLRI overrun, prefix too long) reset with 3/9 "Optional Attribute Error"
      (RFC 4760 §7); an MP attribute present twice resets with 3/1 (RFC 7606 §3 g).
[C4]  An attribute whose header or length overruns the attribute section is
      treat-as-withdraw 3/1 (RFC 7606 §4, the Total Attribute Length locates the
      NLRI) unless its type code can be read and is 14 or 15: then the MP NLRI
      cannot be located and it is a session reset 3/1 (RFC 7606 §2 last para).
[C5]  From an external peer (ctx.ebgp) LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST
      are always dropped (RFC 7606 §7.5, §7.9, §7.10 "attribute discard"; RFC
      4271 §5.1.5). Well-formed ones silently; a malformed length records an
      ACTION_DISCARD problem. No flags check is made on them.
[C6]  EXTENDED_COMMUNITIES of length 0 is malformed (RFC 7606 §7.14 "non-zero
      multiple of 8"), like COMMUNITIES, CLUSTER_LIST and LARGE_COMMUNITY.
[C7]  NEXT_HOP is ignored entirely (no checks, not in any set) when the NLRI
      field is empty (RFC 4760 §3). The martian check also applies to a 4-byte
      IPv4 next hop received in MP_REACH_NLRI (attr = 14 in the problem). With
      ctx.loopback_next_hop (lab setups on loopback) 127/8 is not martian; 0.0.0.0,
      224/4 and 240/4 still are.
[C8]  Flags: only the Optional and Transitive bits are compared (RFC 7606 §3 c).
      A conflict is treat-as-withdraw 3/4 for every known attribute that is
      processed at all (not for the ones ignored by [C5], [C7] or [C11]); the
      attribute's value checks are then skipped, except for MP_REACH/MP_UNREACH,
      whose structure and NLRI are still checked and parsed (they are needed to
      withdraw, and can still reset); only their next-hop martian check is skipped.
[C9]  Problem conventions. data: the whole attribute as received (flags, type,
      length, value) for attribute problems; bytes([type]) for a missing one;
      the bytes from the attribute's start to the section end for an overrun;
      the 2 length bytes for 1/2; empty otherwise. attr: the type code (0 when
      not about one attribute). Problems that correspond to no NOTIFICATION
      (ACTION_IGNORE) carry code 0, subcode 0.
[C10] AS 0 (RFC 7607): in AS_PATH treat-as-withdraw 3/11; in AGGREGATOR or
      AS4_AGGREGATOR attribute discard 3/9; in AS4_PATH the AS4_PATH is
      malformed (discard 3/11).
[C11] AS4_PATH / AS4_AGGREGATOR from a 4-octet peer: ACTION_IGNORE
      "as4-from-new-speaker", no other check. From a 2-octet peer: AS4_PATH is
      malformed per RFC 6793 §6 (length odd or < 6, zero or overrunning segment,
      unknown segment type, AS 0) -> discard 3/11; its AS_CONFED_* segments are
      removed (RFC 6793 §6) with one ACTION_DISCARD "as4-path-confed" problem,
      and an AS4_PATH left empty counts as absent. AS4_AGGREGATOR length != 8
      -> discard 3/5.
[C12] AS4 reconciliation (2-octet peer, RFC 6793 §4.2.3), after discards:
      a) AS4_AGGREGATOR with an AGGREGATOR whose AS != AS_TRANS: ignore both AS4
         attributes (IGNORE "as4-aggregator-mismatch", attr 18, data = the
         AS4_AGGREGATOR).
      b) AS4_AGGREGATOR with AGGREGATOR(AS_TRANS): AGGREGATOR takes the AS4 values
         (Partial bit of the AGGREGATOR kept).
      c) AS4_AGGREGATOR alone: taken as if AGGREGATOR(AS_TRANS) were present
         (IGNORE "as4-aggregator-alone"); the AGGREGATOR gets the AS4_AGGREGATOR's
         Partial bit.
      d) AS4_PATH: counts per RFC 4271 §9.1.2.2 / RFC 5065 (SEQUENCE members 1
         each, AS_SET 1, confed 0). AS_PATH count < AS4_PATH count -> IGNORE
         "as4-path-longer", AS_PATH kept. Otherwise walk AS_PATH from the start
         taking need = n2 - n4 hops: confed segments are taken whole at no cost
         while walking (leading, or adjacent to a taken segment); with need == 0
         the walk stops at the first non-confed segment; an AS_SET costs 1 and is
         taken whole; an AS_SEQUENCE is taken whole or cut to its first `need`
         members. If any AS_CONFED_* segment remains in the part not taken, the
         merge would drop/split a confederation segment (seed 002): IGNORE
         "as4-merge-confed", AS_PATH kept. Else result = taken + AS4_PATH, where
         a taken AS_SEQUENCE directly followed by an AS4_PATH AS_SEQUENCE is
         joined into one segment when the sum is <= 255 members; AF_AS4_MERGED.
[C13] A message can yield at most two attribute sets: one for the NLRI field
      (IPv4, NEXT_HOP attribute) then one for MP_REACH_NLRI (its AFI). A
      MP_REACH_NLRI with no NLRI makes no set. A MP_REACH/MP_UNREACH for another
      AFI/SAFI is ignored with IGNORE "mp-unsupported-family" after reading AFI
      and SAFI (value shorter than 3 bytes is malformed, [C3]).
[C14] EoR is recorded for IPv4/IPv6 unicast only (an empty MP_UNREACH_NLRI for
      another family is just "mp-unsupported-family").
[C15] "Announced" means at least one prefix in the NLRI field or in a supported
      MP_REACH_NLRI; only then are missing ORIGIN / AS_PATH / NEXT_HOP (NEXT_HOP
      only with a non-empty NLRI field) reported, one problem per missing type in
      type order, reason "attr-missing".
[C16] ATTR_REC.path_len saturates at 65535. first_as / origin_as come from the
      final (merged) path. nh for IPv4 holds the 4 bytes then 12 zero bytes.
[C17] Encoder: MP_UNREACH_NLRI in withdrawals always uses flags 0x90 (extended
      length); encode_eor uses 0x80 with a 1-byte length (29-byte message). For
      2-octet peers the AS4_PATH is omitted if it would be empty (all segments
      confed), and the Extended Length bit of rewritten attributes follows the
      canonical rule (set iff value > 255 bytes). encode_announce for afi 2 (or an
      IPv4 set with mp_off != NO_OFF) raises ValueError if the blob has no
      MP_REACH_NLRI or one of another AFI.
"""
from __future__ import annotations

import struct
from typing import Optional

from .constants import (
    AS_SEQUENCE,
    AS_TRANS,
    HEADER_LEN,
    MARKER,
)
from .layout import (
    ACTION_DISCARD,
    ACTION_IGNORE,
    ACTION_RESET,
    ACTION_WITHDRAW,
    AF_AGGREGATOR,
    AF_AS4_MERGED,
    AF_AS_SET,
    AF_ATOMIC_AGGREGATE,
    AF_BLACKHOLE,
    AF_CLUSTER_LIST,
    AF_COMMUNITIES,
    AF_CONFED,
    AF_EXT_COMMUNITIES,
    AF_GSHUT,
    AF_LARGE_COMMUNITIES,
    AF_LOCAL_PREF,
    AF_MED,
    AF_ORIGINATOR_ID,
    AF_OTC,
    AF_UNKNOWN,
    ATTR_REC,
    ATTR_REC_SIZE,
    NO_ATTR,
    NO_OFF,
    CodecContext,
    EncodeError,
    Problem,
    UpdateBatch,
)

__all__ = [
    "decode_updates", "encode_announce", "encode_withdraw", "encode_batch", "encode_eor",
    "REASONS", "REASON_TABLE", "prepend_as_path",
]

# ---------------------------------------------------------------------------------------
# Reason identifiers (stable, kebab-case). REASON_TABLE gives, for each, the action and
# NOTIFICATION code/subcode it is always reported with (the action of the three
# "ebgp-dropped" attribute length reasons depends on ctx.ebgp, see [C5]).
# ---------------------------------------------------------------------------------------
# session reset
R_HEADER_MARKER = "header-marker"                    # 1/1 marker not all ones
R_HEADER_LENGTH = "header-length"                    # 1/2 length < 19 or > ctx.max_msg
R_UPDATE_SHORT = "update-short"                      # 1/2 UPDATE shorter than 23
R_WITHDRAWN_LENGTH = "withdrawn-length"              # 3/1 Withdrawn Routes Length overruns
R_ATTR_LENGTH_TOTAL = "attr-length-total"            # 3/1 Total Path Attribute Length overruns
R_WITHDRAWN_PREFIX = "withdrawn-prefix"              # 3/10 bad prefix in Withdrawn Routes
R_NLRI_PREFIX = "nlri-prefix"                        # 3/10 bad prefix in the NLRI field
R_ATTR_OVERRUN_MP = "attr-overrun-mp"                # 3/1 MP_(UN)REACH overruns the section [C4]
R_WELL_KNOWN_UNRECOGNIZED = "attr-unrecognized-well-known"  # 3/2
R_MP_DUPLICATE = "mp-duplicate"                      # 3/1
R_MP_REACH_MALFORMED = "mp-reach-malformed"          # 3/9 [C3]
R_MP_UNREACH_MALFORMED = "mp-unreach-malformed"      # 3/9 [C3]
R_MP_NEXTHOP_LENGTH = "mp-nexthop-length"            # 3/9 [C3]
# treat-as-withdraw
R_ATTR_OVERRUN = "attr-overrun"                      # 3/1 [C4]
R_ATTR_FLAGS = "attr-flags"                          # 3/4
R_ATTR_MISSING = "attr-missing"                      # 3/3
R_ORIGIN_LENGTH = "origin-length"                    # 3/5
R_ORIGIN_VALUE = "origin-value"                      # 3/6
R_AS_PATH_MALFORMED = "as-path-malformed"            # 3/11
R_AS_PATH_AS0 = "as-path-as0"                        # 3/11
R_NEXTHOP_LENGTH = "nexthop-length"                  # 3/5
R_NEXTHOP_MARTIAN = "nexthop-martian"                # 3/8
R_MED_LENGTH = "med-length"                          # 3/5
R_LOCAL_PREF_LENGTH = "local-pref-length"            # 3/5 (discard from ebgp peers)
R_COMMUNITIES_LENGTH = "communities-length"          # 3/9
R_EXT_COMMUNITIES_LENGTH = "ext-communities-length"  # 3/9
R_LARGE_COMMUNITIES_LENGTH = "large-communities-length"  # 3/9
R_ORIGINATOR_ID_LENGTH = "originator-id-length"      # 3/5 (discard from ebgp peers)
R_CLUSTER_LIST_LENGTH = "cluster-list-length"        # 3/5 (discard from ebgp peers)
R_OTC_LENGTH = "otc-length"                          # 3/5
# attribute discard
R_ATTR_DUPLICATE = "attr-duplicate"                  # 3/1
R_ATOMIC_AGGREGATE_LENGTH = "atomic-aggregate-length"  # 3/5
R_AGGREGATOR_LENGTH = "aggregator-length"            # 3/5
R_AGGREGATOR_AS0 = "aggregator-as0"                  # 3/9
R_AS4_PATH_MALFORMED = "as4-path-malformed"          # 3/11
R_AS4_PATH_CONFED = "as4-path-confed"                # 3/11
R_AS4_AGGREGATOR_LENGTH = "as4-aggregator-length"    # 3/5
R_AS4_AGGREGATOR_AS0 = "as4-aggregator-as0"          # 3/9
# ignore (logged only), code 0 / subcode 0
R_AS4_FROM_NEW_SPEAKER = "as4-from-new-speaker"
R_AS4_AGGREGATOR_MISMATCH = "as4-aggregator-mismatch"
R_AS4_AGGREGATOR_ALONE = "as4-aggregator-alone"
R_AS4_PATH_LONGER = "as4-path-longer"
R_AS4_MERGE_CONFED = "as4-merge-confed"
R_MP_UNSUPPORTED_FAMILY = "mp-unsupported-family"

REASON_TABLE: dict[str, tuple[int, int, int]] = {
    R_HEADER_MARKER: (ACTION_RESET, 1, 1),
    R_HEADER_LENGTH: (ACTION_RESET, 1, 2),
    R_UPDATE_SHORT: (ACTION_RESET, 1, 2),
    R_WITHDRAWN_LENGTH: (ACTION_RESET, 3, 1),
    R_ATTR_LENGTH_TOTAL: (ACTION_RESET, 3, 1),
    R_WITHDRAWN_PREFIX: (ACTION_RESET, 3, 10),
    R_NLRI_PREFIX: (ACTION_RESET, 3, 10),
    R_ATTR_OVERRUN_MP: (ACTION_RESET, 3, 1),
    R_WELL_KNOWN_UNRECOGNIZED: (ACTION_RESET, 3, 2),
    R_MP_DUPLICATE: (ACTION_RESET, 3, 1),
    R_MP_REACH_MALFORMED: (ACTION_RESET, 3, 9),
    R_MP_UNREACH_MALFORMED: (ACTION_RESET, 3, 9),
    R_MP_NEXTHOP_LENGTH: (ACTION_RESET, 3, 9),
    R_ATTR_OVERRUN: (ACTION_WITHDRAW, 3, 1),
    R_ATTR_FLAGS: (ACTION_WITHDRAW, 3, 4),
    R_ATTR_MISSING: (ACTION_WITHDRAW, 3, 3),
    R_ORIGIN_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_ORIGIN_VALUE: (ACTION_WITHDRAW, 3, 6),
    R_AS_PATH_MALFORMED: (ACTION_WITHDRAW, 3, 11),
    R_AS_PATH_AS0: (ACTION_WITHDRAW, 3, 11),
    R_NEXTHOP_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_NEXTHOP_MARTIAN: (ACTION_WITHDRAW, 3, 8),
    R_MED_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_LOCAL_PREF_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_COMMUNITIES_LENGTH: (ACTION_WITHDRAW, 3, 9),
    R_EXT_COMMUNITIES_LENGTH: (ACTION_WITHDRAW, 3, 9),
    R_LARGE_COMMUNITIES_LENGTH: (ACTION_WITHDRAW, 3, 9),
    R_ORIGINATOR_ID_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_CLUSTER_LIST_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_OTC_LENGTH: (ACTION_WITHDRAW, 3, 5),
    R_ATTR_DUPLICATE: (ACTION_DISCARD, 3, 1),
    R_ATOMIC_AGGREGATE_LENGTH: (ACTION_DISCARD, 3, 5),
    R_AGGREGATOR_LENGTH: (ACTION_DISCARD, 3, 5),
    R_AGGREGATOR_AS0: (ACTION_DISCARD, 3, 9),
    R_AS4_PATH_MALFORMED: (ACTION_DISCARD, 3, 11),
    R_AS4_PATH_CONFED: (ACTION_DISCARD, 3, 11),
    R_AS4_AGGREGATOR_LENGTH: (ACTION_DISCARD, 3, 5),
    R_AS4_AGGREGATOR_AS0: (ACTION_DISCARD, 3, 9),
    R_AS4_FROM_NEW_SPEAKER: (ACTION_IGNORE, 0, 0),
    R_AS4_AGGREGATOR_MISMATCH: (ACTION_IGNORE, 0, 0),
    R_AS4_AGGREGATOR_ALONE: (ACTION_IGNORE, 0, 0),
    R_AS4_PATH_LONGER: (ACTION_IGNORE, 0, 0),
    R_AS4_MERGE_CONFED: (ACTION_IGNORE, 0, 0),
    R_MP_UNSUPPORTED_FAMILY: (ACTION_IGNORE, 0, 0),
}
REASONS: tuple[str, ...] = tuple(REASON_TABLE)

# Optional/Transitive bits each known attribute must carry (RFC 4271 §5, RFC 4760,
# RFC 1997, RFC 4456, RFC 4360, RFC 6793, RFC 8092, RFC 9234). Also the canonical flags.
EXPECTED_FLAGS = {
    1: 0x40, 2: 0x40, 3: 0x40, 4: 0x80, 5: 0x40, 6: 0x40, 7: 0xC0, 8: 0xC0, 9: 0x80,
    10: 0x80, 14: 0x80, 15: 0x80, 16: 0xC0, 17: 0xC0, 18: 0xC0, 32: 0xC0, 35: 0xC0,
}

_ORIGIN_TLV = (b"\x40\x01\x01\x00", b"\x40\x01\x01\x01", b"\x40\x01\x01\x02")
_ATOMIC_TLV = b"\x40\x06\x00"
_NH_HDR = b"\x40\x03\x04"
_ZERO12 = bytes(12)
_ZERO16 = bytes(16)
_NO_ATTR_B = struct.pack("<I", NO_ATTR)

_U32LE = struct.Struct("<I").pack
_U32BE = struct.Struct(">I")
_unpack_be32 = _U32BE.unpack_from
_pack_be32 = _U32BE.pack
_HDR = struct.Struct(">HB").pack          # message length, type (after the marker)
_U16BE = struct.Struct(">H").pack
_attr_rec_pack = ATTR_REC.pack
_attr_rec_unpack = ATTR_REC.unpack_from

# last-byte masks for a prefix length whose last octet is partial, by plen & 7
_LAST_MASK = (0xFF, 0x80, 0xC0, 0xE0, 0xF0, 0xF8, 0xFC, 0xFE)
_FAM_BIT = {1: 1, 2: 2}   # ADDPATH_V4 / ADDPATH_V6
# _MASKED[bits][byte]: the one-byte bytes of `byte` keeping its first `bits` bits
_MASKED = tuple(tuple(bytes((b & _LAST_MASK[k],)) for b in range(256)) for k in range(8))


def _tlv(flags: int, t: int, value: bytes) -> bytes:
    """One attribute, Extended Length set exactly when the value is longer than 255."""
    n = len(value)
    if n > 255:
        return bytes((flags | 0x10, t)) + _U16BE(n) + value
    return bytes((flags & 0xEF, t, n)) + value


# ---------------------------------------------------------------------------------------
# prefixes
# ---------------------------------------------------------------------------------------
def _prefix_table(width: int) -> tuple:
    """Per prefix length (index 0..255): None when longer than `width` bytes allow, else
    (octets on the wire including the length octet, zero padding up to `width`, and the
    masking table of the last octet, _MASKED[plen & 7], or None when it is whole)."""
    table = [None] * 256
    for plen in range(8 * width + 1):
        nb = (plen + 7) >> 3
        table[plen] = (1 + nb, bytes(width - nb), _MASKED[plen & 7] if plen & 7 else None)
    return tuple(table)


_PLEN4 = _prefix_table(4)
_PLEN6 = _prefix_table(16)
_ZERO4 = bytes(4)


def _parse_prefixes(buf: bytes, p: int, e: int, afi: int, addpath: bool) -> Optional[list]:
    """Parse <len, prefix> (each preceded by a 4-byte path id when `addpath`, RFC 7911
    §3) from buf[p:e] into record tails: path_id (LE u32), plen, address with the host
    bits zeroed, i.e. struct "<IB4s" / "<IB16s" (REC4 / REC6 minus attr_idx). None when bad:
    a prefix length above 32/128, or the field overruns (RFC 4271 §4.3, RFC 7606 §5.3)."""
    tails = []
    append = tails.append
    table = _PLEN4 if afi == 1 else _PLEN6
    if not addpath:                   # the common case, kept tight: path id 0
        while p < e:
            info = table[buf[p]]
            if info is None:          # prefix length too long
                return None
            size, pad, mask = info
            q = p + size
            if q > e:
                return None
            if mask is None:          # whole octets: length octet + address as received
                append(_ZERO4 + buf[p:q] + pad)
            else:                     # zero the host bits of the last, partial octet
                append(_ZERO4 + buf[p:q - 1] + mask[buf[q - 1]] + pad)
            p = q
        return tails
    while p < e:
        if e - p < 5:
            return None
        pid = buf[p:p + 4][::-1]      # path id: network order -> little-endian
        p += 4
        info = table[buf[p]]
        if info is None:
            return None
        size, pad, mask = info
        q = p + size
        if q > e:
            return None
        if mask is None:
            append(pid + buf[p:q] + pad)
        else:
            append(pid + buf[p:q - 1] + mask[buf[q - 1]] + pad)
        p = q
    return tails


# ---------------------------------------------------------------------------------------
# AS paths
# ---------------------------------------------------------------------------------------
def _segments4(v: bytes) -> list:
    """A validated 4-octet AS path value as [(type, (asn, ...)), ...]."""
    out = []
    q, n = 0, len(v)
    while q < n:
        t, sl = v[q], v[q + 1]
        out.append((t, struct.unpack_from(">%dI" % sl, v, q + 2)))
        q += 2 + 4 * sl
    return out


def _encode_segments4(segs) -> bytes:
    return b"".join(bytes((t, len(a))) + struct.pack(">%dI" % len(a), *a) for t, a in segs)


def _check_path(v: bytes, width: int) -> Optional[str]:
    """Structure of an AS path value of `width`-octet AS numbers (RFC 7606 §7.2,
    RFC 6793 §6): known segment types, no zero-length segment, no overrun, no
    underrun. Returns None when good, else "malformed"; "as0" when well formed but
    carrying AS 0 (RFC 7607)."""
    q, n = 0, len(v)
    while q < n:
        if n - q < 2:
            return "malformed"
        t, sl = v[q], v[q + 1]
        if t < 1 or t > 4 or sl == 0:
            return "malformed"
        q += 2 + width * sl
        if q > n:
            return "malformed"
    zero = b"\0" * width
    if zero in v:   # fast reject; then the exact, aligned check
        q = 0
        fmt = ">%dI" if width == 4 else ">%dH"
        while q < n:
            sl = v[q + 1]
            if 0 in struct.unpack_from(fmt % sl, v, q + 2):
                return "as0"
            q += 2 + width * sl
    return None


def _widen(v: bytes) -> bytes:
    """A validated 2-octet AS path value re-encoded with 4-octet AS numbers."""
    out = []
    q, n = 0, len(v)
    while q < n:
        t, sl = v[q], v[q + 1]
        out.append(bytes((t, sl)))
        out.append(struct.pack(">%dI" % sl, *struct.unpack_from(">%dH" % sl, v, q + 2)))
        q += 2 + 2 * sl
    return b"".join(out)


def _scan_path4(v: bytes):
    """Validate a 4-octet AS path value like _check_path and, when good, return
    (path_len, first_as, origin_as, AF_AS_SET|AF_CONFED bits); else the string
    "malformed" or "as0". path_len saturates at 65535 [C16]."""
    q, n = 0, len(v)
    plen = first = flags = 0
    t = 0
    while q < n:
        if n - q < 2:
            return "malformed"
        t, sl = v[q], v[q + 1]
        e = q + 2 + 4 * sl
        if sl == 0 or e > n:
            return "malformed"
        if t == 2:
            plen += sl
            if q == 0:
                first = _unpack_be32(v, 2)[0]
        elif t == 1:
            plen += 1
            flags |= AF_AS_SET
        elif t == 3 or t == 4:
            flags |= AF_CONFED
        else:
            return "malformed"
        q = e
    if b"\0\0\0\0" in v and _check_path(v, 4) == "as0":
        return "as0"
    return (plen if plen < 0xFFFF else 0xFFFF, first,
            _unpack_be32(v, n - 4)[0] if t == 2 else 0, flags)


def _count(segs) -> int:
    """AS count for route selection: RFC 4271 §9.1.2.2 a, RFC 5065 §5.3."""
    c = 0
    for t, a in segs:
        if t == 2:
            c += len(a)
        elif t == 1:
            c += 1
    return c


def _merge_as4(as_segs: list, as4_segs: list) -> tuple[Optional[list], Optional[str]]:
    """RFC 6793 §4.2.3 reconstruction, see [C12] d. Returns (segments, None) or
    (None, reason) when the AS4_PATH is to be ignored."""
    n2, n4 = _count(as_segs), _count(as4_segs)
    if n2 < n4:
        return None, R_AS4_PATH_LONGER
    need = n2 - n4
    taken = []
    i, n = 0, len(as_segs)
    while i < n:
        t, a = as_segs[i]
        if t == 3 or t == 4:          # confed: no cost, taken whole
            taken.append((t, a))
            i += 1
            continue
        if need == 0:
            break
        if t == 1:                    # AS_SET: counts one, taken whole
            taken.append((t, a))
            need -= 1
            i += 1
        elif len(a) <= need:          # AS_SEQUENCE taken whole
            taken.append((t, a))
            need -= len(a)
            i += 1
        else:                         # AS_SEQUENCE cut: its tail is replaced
            taken.append((t, a[:need]))
            need = 0
            i += 1                    # the remainder is a plain sequence: no confed in it
            break
    for t, _a in as_segs[i:]:
        if t == 3 or t == 4:
            return None, R_AS4_MERGE_CONFED
    if taken and as4_segs and taken[-1][0] == 2 and as4_segs[0][0] == 2 \
            and len(taken[-1][1]) + len(as4_segs[0][1]) <= 255:
        joined = (2, tuple(taken[-1][1]) + tuple(as4_segs[0][1]))
        return taken[:-1] + [joined] + list(as4_segs[1:]), None
    return taken + list(as4_segs), None


# ---------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------
def _is_martian4(nh: bytes, loopback_ok: bool = False) -> bool:
    """0.0.0.0, 127/8, 224/4 multicast, 240/4 reserved incl. 255.255.255.255 (RFC 4271 §6.3).
    With `loopback_ok` (CodecContext.loopback_next_hop, labs on loopback) 127/8 is not one."""
    a = nh[0]
    return (a == 127 and not loopback_ok) or a >= 224 or nh == b"\0\0\0\0"


def _aligned_find(v: bytes, pat: bytes, step: int) -> bool:
    i = v.find(pat)
    while i >= 0:
        if i % step == 0:
            return True
        i = v.find(pat, i + 1)
    return False


# per-type handling codes in _Decoder.expect (besides the expected O/T flags 0x40/0x80/0xC0)
_UNKNOWN = 0       # not a recognised attribute
_IGNORED = 1       # recognised, but this session drops it before any check ([C5], [C11])

# Attributes whose canonical form is their value as received with canonical flags
# (ORIGIN, MED, LOCAL_PREF, ATOMIC_AGGREGATE, COMMUNITIES, ORIGINATOR_ID, CLUSTER_LIST,
# EXTENDED_COMMUNITIES, LARGE_COMMUNITY, OTC and unrecognised optional transitive ones)
# are noted in a `kept` bit mask during the walk and rebuilt by _common() when needed.


# Fast path tables (_Decoder.fast). _FAST_HEAD: the first 6 bytes of a canonical attribute
# section, ORIGIN (flags 0x40, length 1, value 0..2) then the AS_PATH's flags (0x40) and type
# -> the ORIGIN value.
_FAST_HEAD = {bytes((0x40, 1, 1, o, 0x40, 2)): o for o in range(3)}
# _ONE_SEQ[value length]: for 2 + 4n (n = 1..63) a struct reading a one-segment path as
# (segment type, segment length, first AS, last AS) (n = 1: the first AS only); else None.
_ONE_SEQ = tuple(
    struct.Struct(">BBI" if n == 1 else ">BBI%dxI" % (4 * n - 8)) if n and 2 + 4 * n == ln else None
    for ln in range(256) for n in ((ln - 2) // 4,))

# flags, type and (2-byte) length of a canonical MP_REACH_NLRI without NLRI, by next-hop length
_MP_CANON_HDR = {16: b"\x90\x0e\x00\x15", 32: b"\x90\x0e\x00\x25"}


class _Decoder:
    """Output columns of one decode_updates call, and the per-message decoder."""

    __slots__ = ("as4", "ap4", "ap6", "ebgp", "lo_nh", "expect", "canon", "v4", "v6", "attr_data",
                 "attr_index", "n_sets", "eor", "problems")

    def __init__(self, ctx: CodecContext):
        self.as4 = bool(ctx.as4)
        self.ap4 = bool(ctx.addpath_rx & 1)
        self.ap6 = bool(ctx.addpath_rx & 2)
        self.ebgp = bool(ctx.ebgp)
        self.lo_nh = bool(ctx.loopback_next_hop)     # 127/8 next hops accepted (not martian)
        expect = [_UNKNOWN] * 256
        for t, f in EXPECTED_FLAGS.items():
            expect[t] = f
        if self.ebgp:
            expect[5] = expect[9] = expect[10] = _IGNORED
        if self.as4:
            expect[17] = expect[18] = _IGNORED
        self.expect = expect
        # fast path (see fast()): the canonical flags byte of each type it accepts, -1 for
        # the others: MP_UNREACH_NLRI and what this session drops ([C5], [C11]) go to the
        # general path. Unrecognised types are accepted when optional transitive (0xE0).
        canon = [f if f > _IGNORED else 0xE0 if f == _UNKNOWN else -1 for f in expect]
        canon[1] = canon[2] = canon[3] = canon[15] = -1   # (1..3: fast()'s prologue)
        self.canon = canon if self.as4 else None     # 2-octet peers: general path only
        self.v4 = bytearray()
        self.v6 = bytearray()
        self.attr_data = bytearray()
        self.attr_index = bytearray()
        self.n_sets = 0
        self.eor: list = []
        self.problems: list = []

    # -- fast path: the common, well-formed UPDATE -----------------------------------------
    def fast(self, buf: bytes, start: int, end: int) -> bool:
        """Decode buf[start:end] (header included, already checked) if it is a plain, clean
        announcement, and return True; else return False having changed nothing, and the
        caller runs the general path (message()), which finds and classifies every problem.

        An optimisation, not a rule: what it accepts is exactly the general path's
        `verbatim` case without any problem, and it produces the same records. Accepted
        (4-octet AS sessions only, see __init__):
        * path attributes in strictly ascending type order (so no duplicate), each with
          its canonical flags byte (Extended Length iff the value is longer than 255,
          Partial clear), a well-formed value, none that this session drops. ORIGIN and
          AS_PATH are required, so they are the first two attributes (type 0 and an
          AS_PATH longer than 255 bytes are left to the general path), and with an NLRI
          field NEXT_HOP is required: it is the third;
        * either an IPv4 NLRI field and no MP attribute (the blob is the attribute
          section as received), or no NLRI field and an MP_REACH_NLRI for IPv4/IPv6
          unicast with a 16- or 32-byte next hop and at least one prefix (the blob is the
          section with the MP_REACH_NLRI replaced by its canonical form, as _splice()
          would build it);
        * any well-formed Withdrawn Routes field."""
        p = start + HEADER_LEN
        wl = (buf[p] << 8) | buf[p + 1]
        wend = p + 2 + wl
        if wend + 2 > end:
            return False
        astart = wend + 2
        aend = astart + ((buf[wend] << 8) | buf[wend + 1])
        if aend > end or aend - astart < 7:
            return False
        nlri_present = aend < end

        # ORIGIN then the AS_PATH header (canonical flags, 1-byte length): one lookup
        origin = _FAST_HEAD.get(buf[astart:astart + 6])
        if origin is None:
            return False
        alen = buf[astart + 6]
        v = astart + 7
        p = v + alen
        if p > aend:
            return False
        aspath_off = 7                         # value offsets are relative to astart
        aspath_len = alen
        # AS_PATH: the usual single AS_SEQUENCE without AS 0 read with one unpack (what
        # _scan_path4 would give); any other path through _scan_path4
        seq = _ONE_SEQ[alen]
        r = seq.unpack_from(buf, v) if seq is not None else None
        if r is not None and r[0] == 2 and 4 * r[1] + 2 == alen \
                and buf.find(b"\0\0\0\0", v, p) < 0:
            path_len, first_as, origin_as, aflags = r[1], r[2], r[-1], 0
        else:
            pinfo = _scan_path4(buf[v:p])
            if pinfo.__class__ is str:
                return False
            path_len, first_as, origin_as, aflags = pinfo

        # NEXT_HOP: required with an NLRI field, ignored without one ([C7]: general path)
        nh4 = None
        if nlri_present:
            if not buf.startswith(b"\x40\x03\x04", p, aend - 4):
                return False
            nh4 = buf[p + 3:p + 7]
            a = nh4[0]
            if (a == 127 and not self.lo_nh) or a >= 224 or nh4 == b"\0\0\0\0":     # martian
                return False
            p += 7

        # the other attributes
        canon = self.canon
        mp = None              # (attribute start, end, value start) of MP_REACH_NLRI
        med = lp = 0
        comm_off = lcomm_off = NO_OFF
        comm_len = lcomm_len = 0
        last = 3               # type code of the previous attribute (1..3 were handled)
        while p < aend:
            if aend - p < 3:
                return False
            flags = buf[p]
            t = buf[p + 1]
            if t <= last:
                return False
            last = t
            c = canon[t]
            if flags == c:
                alen = buf[p + 2]
                v = p + 3
            elif flags == c | 0x10 and aend - p >= 4:   # (never true for c == -1)
                alen = (buf[p + 2] << 8) | buf[p + 3]
                v = p + 4
                if alen <= 255 and t != 14:             # non-canonical Extended Length
                    return False
            else:
                return False
            p = v + alen
            if p > aend:
                return False
            # the checks of message(); anything they would flag -> general path
            if t == 8:      # COMMUNITIES
                if alen == 0 or alen & 3:
                    return False
                aflags |= AF_COMMUNITIES
                if buf.find(b"\xff\xff", v, p) >= 0:
                    val = buf[v:p]
                    if _aligned_find(val, b"\xff\xff\x00\x00", 4):
                        aflags |= AF_GSHUT
                    if _aligned_find(val, b"\xff\xff\x02\x9a", 4):
                        aflags |= AF_BLACKHOLE
                comm_off = v - astart
                comm_len = alen
            elif t == 4:    # MULTI_EXIT_DISC
                if alen != 4:
                    return False
                med = _unpack_be32(buf, v)[0]
                aflags |= AF_MED
            elif t == 14:   # MP_REACH_NLRI: IPv4/IPv6 unicast, 16/32-byte next hop
                if nlri_present or alen < 5 or buf[v] != 0 or buf[v + 2] != 1:
                    return False
                afi = buf[v + 1]
                nhl = buf[v + 3]
                if (afi != 1 and afi != 2) or (nhl != 16 and nhl != 32) or v + 5 + nhl > p:
                    return False
                mp = (v - (4 if flags & 0x10 else 3), p, v)
            elif t == 32:   # LARGE_COMMUNITY
                if alen == 0 or alen % 12:
                    return False
                aflags |= AF_LARGE_COMMUNITIES
                lcomm_off = v - astart
                lcomm_len = alen
            elif t == 6:    # ATOMIC_AGGREGATE
                if alen != 0:
                    return False
                aflags |= AF_ATOMIC_AGGREGATE
            elif t == 7:    # AGGREGATOR
                if alen != 8 or buf.startswith(b"\0\0\0\0", v):
                    return False
                aflags |= AF_AGGREGATOR
            elif t == 5:    # LOCAL_PREF (internal peers only: canon[5] is -1 for eBGP)
                if alen != 4:
                    return False
                lp = _unpack_be32(buf, v)[0]
                aflags |= AF_LOCAL_PREF
            elif t == 16:   # EXTENDED_COMMUNITIES
                if alen == 0 or alen & 7:
                    return False
                aflags |= AF_EXT_COMMUNITIES
            elif t == 9:    # ORIGINATOR_ID (internal peers only)
                if alen != 4:
                    return False
                aflags |= AF_ORIGINATOR_ID
            elif t == 10:   # CLUSTER_LIST (internal peers only)
                if alen == 0 or alen & 3:
                    return False
                aflags |= AF_CLUSTER_LIST
            elif t == 35:   # OTC
                if alen != 4:
                    return False
                aflags |= AF_OTC
            else:           # unrecognised optional transitive (canon[t] == 0xE0)
                aflags |= AF_UNKNOWN

        # the prefixes: NLRI field, or MP_REACH_NLRI's NLRI (nothing announced -> general)
        if nlri_present:
            afi = 1
            tails = _parse_prefixes(buf, aend, end, 1, self.ap4)
        elif mp is not None:
            v = mp[2]
            afi = buf[v + 1]
            tails = _parse_prefixes(buf, v + 5 + buf[v + 3], mp[1], afi,
                                    self.ap4 if afi == 1 else self.ap6)
        else:
            return False
        if not tails:
            return False
        w_tails = None
        if wl:
            w_tails = _parse_prefixes(buf, start + HEADER_LEN + 2, wend, 1, self.ap4)
            if w_tails is None:
                return False

        # ---- accepted: emit, in the general path's order (withdrawals, then the set) ----
        if w_tails:
            self.v4 += _NO_ATTR_B + _NO_ATTR_B.join(w_tails)
        idx = self.n_sets
        self.n_sets = idx + 1
        if mp is None:
            blob = buf[astart:aend]
            self.attr_index += _attr_rec_pack(
                len(self.attr_data), len(blob), aflags, origin, 1, path_len, first_as,
                origin_as, med, lp, nh4 + _ZERO12, _ZERO16, 4, 0, 0, aspath_off, aspath_len,
                comm_off, comm_len, lcomm_off, lcomm_len, NO_OFF)
            col = self.v4
        else:
            a0, ve, v = mp
            nhl = buf[v + 3]
            hop = v + 4 + nhl           # end of the next hop
            # the canonical MP_REACH_NLRI (see message()): flags 0x90, then the value's
            # AFI, SAFI, next-hop length and next hop as received (checked above), a zero
            # reserved octet and no NLRI
            blob = b"".join((buf[astart:a0], _MP_CANON_HDR[nhl], buf[v:hop], b"\0",
                             buf[ve:aend]))
            if lcomm_off != NO_OFF:     # after the MP_REACH_NLRI (type 32 > 14): it moved
                lcomm_off += 9 + nhl - (ve - a0)
            self.attr_index += _attr_rec_pack(
                len(self.attr_data), len(blob), aflags, origin, afi, path_len, first_as,
                origin_as, med, lp, buf[v + 4:v + 20], buf[v + 20:hop] if nhl == 32 else _ZERO16,
                nhl, 0, 0, aspath_off, aspath_len, comm_off, comm_len, lcomm_off, lcomm_len,
                a0 - astart)
            col = self.v4 if afi == 1 else self.v6
        self.attr_data += blob
        idxb = _U32LE(idx)
        col += idxb + idxb.join(tails)
        return True

    # -- one UPDATE message: buf[start:end] (header included). Returns a reset Problem or None.
    def message(self, buf: bytes, start: int, end: int, mi: int) -> Optional[Problem]:
        as4 = self.as4
        probs: list = []
        taw = False

        p = start + HEADER_LEN
        wl = (buf[p] << 8) | buf[p + 1]
        wstart = p + 2
        wend = wstart + wl
        if wend + 2 > end:
            return Problem(ACTION_RESET, 3, 1, b"", 0, mi, R_WITHDRAWN_LENGTH)
        tpal = (buf[wend] << 8) | buf[wend + 1]
        astart = wend + 2
        aend = astart + tpal
        if aend > end:
            return Problem(ACTION_RESET, 3, 1, b"", 0, mi, R_ATTR_LENGTH_TOTAL)
        nlri_present = aend < end

        # 1. Withdrawn Routes (IPv4)
        w_tails = None
        if wl:
            w_tails = _parse_prefixes(buf, wstart, wend, 1, self.ap4)
            if w_tails is None:
                return Problem(ACTION_RESET, 3, 10, b"", 0, mi, R_WITHDRAWN_PREFIX)

        # 2. path attributes, in wire order
        expect = self.expect
        seen = 0               # bit t set: type t met (first occurrence is the one used)
        kept = 0               # bit t set: generic attribute t goes into the sets as received
        aflags = 0             # AF_* bits of the common attributes
        origin = 0
        aspath = None          # AS_PATH value, 4-octet AS numbers, validated
        pinfo = None           # (path_len, first_as, origin_as, AF bits) of a 4-octet AS_PATH
        med = lp = 0
        aggr = None            # (Partial bit, asn, ip4)
        nh4 = None             # NEXT_HOP value (4 bytes), only with a non-empty NLRI field
        as4_path = None        # (segments, raw attribute) from a 2-octet peer
        as4_aggr = None        # (Partial bit, asn, ip4, raw attribute) from a 2-octet peer
        mp_reach = None        # (afi, next hop bytes, record tails)
        mp_unreach = None      # (afi, record tails, attribute start, attribute end)
        # Verbatim blobs (an optimisation, not a rule): when every attribute other than the MP
        # ones is kept exactly as received (canonical flags, ascending types, nothing
        # dropped), a set's blob is the attribute section itself, without the MP attributes
        # (mp_spans) and with a canonical MP_REACH_NLRI put in at `split` for an MP set.
        # Value offsets (relative to astart) are noted here.
        verbatim = True
        max_t = -1
        split = aend           # start of the first non-MP attribute of type > 14
        mp_spans = []          # (start, end) of the MP attributes, in wire order
        aspath_off = comm_off = lcomm_off = NO_OFF
        comm_len = lcomm_len = 0
        p = astart
        while p < aend:
            # framing [C4]
            flags = buf[p]
            if flags & 0x10:
                v = p + 4
                if v <= aend:
                    alen = (buf[p + 2] << 8) | buf[p + 3]
            else:
                v = p + 3
                if v <= aend:
                    alen = buf[p + 2]
            if v > aend or v + alen > aend:
                pr = _overrun(buf, p, aend, mi)
                if pr.action == ACTION_RESET:
                    return pr
                probs.append(pr)
                taw = True
                break
            t = buf[p + 1]
            ve = v + alen
            a0 = p
            p = ve

            # duplicates (RFC 7606 §3 g)
            bit = 1 << t
            if seen & bit:
                if t == 14 or t == 15:
                    return Problem(ACTION_RESET, 3, 1, buf[a0:ve], t, mi, R_MP_DUPLICATE)
                probs.append(Problem(ACTION_DISCARD, 3, 1, buf[a0:ve], t, mi, R_ATTR_DUPLICATE))
                verbatim = False
                continue
            seen |= bit
            if t != 14 and t != 15:         # (`verbatim` bookkeeping)
                if t < max_t:
                    verbatim = False        # not in ascending order
                elif t > 14 and max_t < 14:
                    split = a0
                max_t = t

            exp = expect[t]
            if exp < 2:
                if exp == _UNKNOWN:
                    # unrecognised attribute (RFC 4271 §5, §6.3)
                    if not flags & 0x80:
                        return Problem(ACTION_RESET, 3, 2, buf[a0:ve], t, mi, R_WELL_KNOWN_UNRECOGNIZED)
                    if flags & 0x40:    # optional transitive: relayed with flags 0xE0
                        kept |= bit
                        aflags |= AF_UNKNOWN
                        if flags != (0xF0 if alen > 255 else 0xE0):
                            verbatim = False
                    else:               # optional non-transitive: quietly ignored
                        verbatim = False
                    continue
                # known, dropped by this session before any check [C5] [C11]
                verbatim = False
                if t >= 17:
                    probs.append(Problem(ACTION_IGNORE, 0, 0, buf[a0:ve], t, mi, R_AS4_FROM_NEW_SPEAKER))
                elif (alen != 4) if t != 10 else (alen == 0 or alen & 3):
                    r = R_LOCAL_PREF_LENGTH if t == 5 else (
                        R_ORIGINATOR_ID_LENGTH if t == 9 else R_CLUSTER_LIST_LENGTH)
                    probs.append(Problem(ACTION_DISCARD, 3, 5, buf[a0:ve], t, mi, r))
                continue

            if (flags & 0xC0) != exp and (t != 3 or nlri_present):   # [C8]
                probs.append(Problem(ACTION_WITHDRAW, 3, 4, buf[a0:ve], t, mi, R_ATTR_FLAGS))
                taw = True
                verbatim = False
                if t != 14 and t != 15:
                    continue

            if t == 1:      # ORIGIN
                if alen != 1:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_ORIGIN_LENGTH))
                    taw = True
                elif buf[v] > 2:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 6, buf[a0:ve], t, mi, R_ORIGIN_VALUE))
                    taw = True
                else:
                    origin = buf[v]
                    kept |= bit
                    if flags != 0x40:
                        verbatim = False
            elif t == 2:    # AS_PATH
                val = buf[v:ve]
                if as4:
                    if alen >= 6 and val[0] == 2 and 2 + 4 * val[1] == alen and b"\0\0\0\0" not in val:
                        # the common case, one AS_SEQUENCE without AS 0: what _scan_path4 gives
                        pinfo = (val[1], _unpack_be32(val, 2)[0], _unpack_be32(val, alen - 4)[0], 0)
                        bad = None
                    else:
                        pinfo = _scan_path4(val)
                        bad = pinfo if pinfo.__class__ is str else None
                else:
                    bad = _check_path(val, 2)
                if bad is None:
                    if as4:
                        aspath = val
                        aspath_off = v - astart
                        if flags != (0x50 if alen > 255 else 0x40):
                            verbatim = False
                    else:
                        aspath = _widen(val)
                        verbatim = False
                elif bad == "as0":
                    probs.append(Problem(ACTION_WITHDRAW, 3, 11, buf[a0:ve], t, mi, R_AS_PATH_AS0))
                    taw = True
                else:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 11, buf[a0:ve], t, mi, R_AS_PATH_MALFORMED))
                    taw = True
            elif t == 3:    # NEXT_HOP
                if not nlri_present:     # [C7] ignored without IPv4 NLRI field
                    verbatim = False
                elif alen != 4:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_NEXTHOP_LENGTH))
                    taw = True
                else:
                    nh4 = buf[v:ve]
                    a = nh4[0]
                    if (a == 127 and not self.lo_nh) or a >= 224 or (a == 0 and nh4 == b"\0\0\0\0"):
                        probs.append(Problem(ACTION_WITHDRAW, 3, 8, buf[a0:ve], t, mi, R_NEXTHOP_MARTIAN))
                        taw = True
                    elif flags != 0x40:
                        verbatim = False
            elif t == 4:    # MULTI_EXIT_DISC
                if alen != 4:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_MED_LENGTH))
                    taw = True
                else:
                    med = _unpack_be32(buf, v)[0]
                    kept |= bit
                    aflags |= AF_MED
                    if flags != 0x80:
                        verbatim = False
            elif t == 8:    # COMMUNITIES (RFC 1997, RFC 7606 §7.8)
                if alen == 0 or alen & 3:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 9, buf[a0:ve], t, mi, R_COMMUNITIES_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_COMMUNITIES
                    if buf.find(b"\xff\xff", v, ve) >= 0:
                        val = buf[v:ve]
                        if _aligned_find(val, b"\xff\xff\x00\x00", 4):
                            aflags |= AF_GSHUT
                        if _aligned_find(val, b"\xff\xff\x02\x9a", 4):
                            aflags |= AF_BLACKHOLE
                    if (flags & 0xDF) != (0xD0 if alen > 255 else 0xC0):
                        verbatim = False
                    comm_off, comm_len = v - astart, alen
            elif t == 5:    # LOCAL_PREF (internal peers only here)
                if alen != 4:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_LOCAL_PREF_LENGTH))
                    taw = True
                else:
                    lp = _unpack_be32(buf, v)[0]
                    kept |= bit
                    aflags |= AF_LOCAL_PREF
                    if flags != 0x40:
                        verbatim = False
            elif t == 6:    # ATOMIC_AGGREGATE
                if alen != 0:
                    probs.append(Problem(ACTION_DISCARD, 3, 5, buf[a0:ve], t, mi, R_ATOMIC_AGGREGATE_LENGTH))
                    verbatim = False
                else:
                    kept |= bit
                    aflags |= AF_ATOMIC_AGGREGATE
                    if flags != 0x40:
                        verbatim = False
            elif t == 7:    # AGGREGATOR
                if alen != (8 if as4 else 6):
                    probs.append(Problem(ACTION_DISCARD, 3, 5, buf[a0:ve], t, mi, R_AGGREGATOR_LENGTH))
                    verbatim = False
                else:
                    asn = _unpack_be32(buf, v)[0] if as4 else (buf[v] << 8) | buf[v + 1]
                    if asn == 0:
                        probs.append(Problem(ACTION_DISCARD, 3, 9, buf[a0:ve], t, mi, R_AGGREGATOR_AS0))
                        verbatim = False
                    else:
                        aggr = (flags & 0x20, asn, buf[ve - 4:ve])
                        if not as4 or (flags & 0xDF) != 0xC0:
                            verbatim = False
            elif t == 9:    # ORIGINATOR_ID (internal peers only here)
                if alen != 4:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_ORIGINATOR_ID_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_ORIGINATOR_ID
                    if flags != 0x80:
                        verbatim = False
            elif t == 10:   # CLUSTER_LIST (internal peers only here)
                if alen == 0 or alen & 3:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_CLUSTER_LIST_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_CLUSTER_LIST
                    if flags != (0x90 if alen > 255 else 0x80):
                        verbatim = False
            elif t == 14:   # MP_REACH_NLRI (RFC 4760 §3)
                mp_spans.append((a0, ve))
                if alen < 3:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_REACH_MALFORMED)
                afi = (buf[v] << 8) | buf[v + 1]
                if buf[v + 2] != 1 or (afi != 1 and afi != 2):
                    probs.append(Problem(ACTION_IGNORE, 0, 0, buf[a0:ve], t, mi, R_MP_UNSUPPORTED_FAMILY))
                    continue
                if alen < 5:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_REACH_MALFORMED)
                nhl = buf[v + 3]
                if not (nhl == 16 or nhl == 32 or (nhl == 4 and afi == 1)):
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_NEXTHOP_LENGTH)
                ns = v + 5 + nhl        # after the next hop and the reserved octet
                if ns > ve:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_REACH_MALFORMED)
                tails = _parse_prefixes(buf, ns, ve, afi, self.ap4 if afi == 1 else self.ap6)
                if tails is None:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_REACH_MALFORMED)
                nh = buf[v + 4:v + 4 + nhl]
                if nhl == 4 and (flags & 0xC0) == 0x80 and tails and _is_martian4(nh, self.lo_nh):   # [C7] [C8]
                    probs.append(Problem(ACTION_WITHDRAW, 3, 8, buf[a0:ve], t, mi, R_NEXTHOP_MARTIAN))
                    taw = True
                mp_reach = (afi, nh, tails)
            elif t == 15:   # MP_UNREACH_NLRI (RFC 4760 §4)
                mp_spans.append((a0, ve))
                if alen < 3:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_UNREACH_MALFORMED)
                afi = (buf[v] << 8) | buf[v + 1]
                if buf[v + 2] != 1 or (afi != 1 and afi != 2):
                    probs.append(Problem(ACTION_IGNORE, 0, 0, buf[a0:ve], t, mi, R_MP_UNSUPPORTED_FAMILY))
                    continue
                tails = _parse_prefixes(buf, v + 3, ve, afi, self.ap4 if afi == 1 else self.ap6)
                if tails is None:
                    return Problem(ACTION_RESET, 3, 9, buf[a0:ve], t, mi, R_MP_UNREACH_MALFORMED)
                mp_unreach = (afi, tails, a0, ve)
            elif t == 16:   # EXTENDED_COMMUNITIES (RFC 4360, RFC 7606 §7.14)
                if alen == 0 or alen & 7:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 9, buf[a0:ve], t, mi, R_EXT_COMMUNITIES_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_EXT_COMMUNITIES
                    if (flags & 0xDF) != (0xD0 if alen > 255 else 0xC0):
                        verbatim = False
            elif t == 17:   # AS4_PATH from a 2-octet peer [C11]
                verbatim = False
                val = buf[v:ve]
                bad = "malformed" if (alen & 1 or alen < 6) else _check_path(val, 4)
                if bad is not None:
                    probs.append(Problem(ACTION_DISCARD, 3, 11, buf[a0:ve], t, mi, R_AS4_PATH_MALFORMED))
                else:
                    segs = _segments4(val)
                    kept_segs = [s for s in segs if s[0] <= 2]
                    if len(kept_segs) != len(segs):
                        probs.append(Problem(ACTION_DISCARD, 3, 11, buf[a0:ve], t, mi, R_AS4_PATH_CONFED))
                    if kept_segs:
                        as4_path = (kept_segs, buf[a0:ve])
            elif t == 18:   # AS4_AGGREGATOR from a 2-octet peer [C11]
                verbatim = False
                if alen != 8:
                    probs.append(Problem(ACTION_DISCARD, 3, 5, buf[a0:ve], t, mi, R_AS4_AGGREGATOR_LENGTH))
                else:
                    asn = _unpack_be32(buf, v)[0]
                    if asn == 0:
                        probs.append(Problem(ACTION_DISCARD, 3, 9, buf[a0:ve], t, mi, R_AS4_AGGREGATOR_AS0))
                    else:
                        as4_aggr = (flags & 0x20, asn, buf[v + 4:ve], buf[a0:ve])
            elif t == 32:   # LARGE_COMMUNITY (RFC 8092 §6)
                if alen == 0 or alen % 12:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 9, buf[a0:ve], t, mi, R_LARGE_COMMUNITIES_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_LARGE_COMMUNITIES
                    if (flags & 0xDF) != (0xD0 if alen > 255 else 0xC0):
                        verbatim = False
                    lcomm_off, lcomm_len = v - astart, alen
            elif t == 35:   # OTC (RFC 9234 §5)
                if alen != 4:
                    probs.append(Problem(ACTION_WITHDRAW, 3, 5, buf[a0:ve], t, mi, R_OTC_LENGTH))
                    taw = True
                else:
                    kept |= bit
                    aflags |= AF_OTC
                    if (flags & 0xDF) != 0xC0:
                        verbatim = False

        # 3. NLRI field (IPv4)
        n_tails = None
        if nlri_present:
            n_tails = _parse_prefixes(buf, aend, end, 1, self.ap4)
            if n_tails is None:
                return Problem(ACTION_RESET, 3, 10, b"", 0, mi, R_NLRI_PREFIX)

        # ---- no session reset from here on: commit ----
        mp_tails = mp_reach[2] if mp_reach is not None else None
        announced = bool(n_tails) or bool(mp_tails)
        if announced:   # [C15]
            if not seen & 2:
                probs.append(Problem(ACTION_WITHDRAW, 3, 3, b"\x01", 1, mi, R_ATTR_MISSING))
                taw = True
            if not seen & 4:
                probs.append(Problem(ACTION_WITHDRAW, 3, 3, b"\x02", 2, mi, R_ATTR_MISSING))
                taw = True
            if n_tails and not seen & 8:
                probs.append(Problem(ACTION_WITHDRAW, 3, 3, b"\x03", 3, mi, R_ATTR_MISSING))
                taw = True

        if w_tails:
            self.v4 += _NO_ATTR_B + _NO_ATTR_B.join(w_tails)
        if mp_unreach is not None and mp_unreach[1]:
            col = self.v4 if mp_unreach[0] == 1 else self.v6
            col += _NO_ATTR_B + _NO_ATTR_B.join(mp_unreach[1])

        if announced:
            if taw:
                if n_tails:
                    self.v4 += _NO_ATTR_B + _NO_ATTR_B.join(n_tails)
                if mp_tails:
                    col = self.v4 if mp_reach[0] == 1 else self.v6
                    col += _NO_ATTR_B + _NO_ATTR_B.join(mp_tails)
            else:
                # AS4 reconciliation for 2-octet peers [C12]
                if as4_aggr is not None:
                    if aggr is not None and aggr[1] != AS_TRANS:
                        probs.append(Problem(ACTION_IGNORE, 0, 0, as4_aggr[3], 18, mi,
                                             R_AS4_AGGREGATOR_MISMATCH))
                        as4_path = None
                    elif aggr is None:
                        probs.append(Problem(ACTION_IGNORE, 0, 0, as4_aggr[3], 18, mi,
                                             R_AS4_AGGREGATOR_ALONE))
                        aggr = (as4_aggr[0], as4_aggr[1], as4_aggr[2])
                    else:
                        aggr = (aggr[0], as4_aggr[1], as4_aggr[2])
                if as4_path is not None:
                    merged, why = _merge_as4(_segments4(aspath), as4_path[0])
                    if merged is None:
                        probs.append(Problem(ACTION_IGNORE, 0, 0, as4_path[1], 17, mi, why))
                    else:
                        aspath = _encode_segments4(merged)
                        aflags |= AF_AS4_MERGED
                if not as4:
                    pinfo = _scan_path4(aspath)
                path_len, first_as, origin_as, pflags = pinfo
                aflags |= pflags
                if aggr is not None:
                    aflags |= AF_AGGREGATOR
                common = None
                if n_tails:
                    if verbatim and not mp_spans:     # the section is the blob: _emit, inlined
                        idx = self.n_sets
                        self.n_sets = idx + 1
                        self.attr_index += _attr_rec_pack(
                            len(self.attr_data), tpal, aflags, origin, 1, path_len, first_as,
                            origin_as, med, lp, nh4 + _ZERO12, _ZERO16, 4, 0, 0, aspath_off,
                            len(aspath), comm_off, comm_len, lcomm_off, lcomm_len, NO_OFF)
                        self.attr_data += buf[astart:aend]
                        idxb = _U32LE(idx)
                        self.v4 += idxb + idxb.join(n_tails)
                    else:
                        common = _common(buf, astart, aend, kept, aspath, aggr)
                        self._assemble(common, _NH_HDR + nh4, 3, 1, aflags, origin,
                                       path_len, first_as, origin_as, med, lp, nh4 + _ZERO12,
                                       _ZERO16, 4, n_tails)
                if mp_tails:
                    afi, nh, _t = mp_reach
                    nhl = len(nh)
                    if common is None and not (verbatim and not nlri_present and nhl != 4):
                        common = _common(buf, astart, aend, kept, aspath, aggr)
                    if nhl == 4:     # IPv4 via MP_REACH with an IPv4 next hop: a NEXT_HOP set
                        self._assemble(common, _NH_HDR + nh, 3, 1, aflags, origin,
                                       path_len, first_as, origin_as, med, lp, nh + _ZERO12,
                                       _ZERO16, 4, mp_tails)
                    else:
                        mp_tlv = b"\x90\x0e" + _U16BE(5 + nhl) + bytes((0, afi, 1, nhl)) + nh + b"\x00"
                        nhg, nhll = nh[:16], (nh[16:] if nhl == 32 else _ZERO16)
                        if verbatim and not nlri_present:   # splice: see `verbatim`
                            bl, offs = _splice(buf, astart, aend, mp_spans, split, mp_tlv,
                                               (aspath_off, comm_off, lcomm_off))
                            self._emit(bl, offs[0], len(aspath), offs[1], comm_len, offs[2],
                                       lcomm_len, offs[3], afi, aflags, origin, path_len,
                                       first_as, origin_as, med, lp, nhg, nhll, nhl, mp_tails)
                        else:
                            self._assemble(common, mp_tlv, 14, afi, aflags, origin,
                                           path_len, first_as, origin_as, med, lp, nhg,
                                           nhll, nhl, mp_tails)

        # End-of-RIB (RFC 4724 §2) [C14]
        if wl == 0 and not nlri_present:
            if tpal == 0:
                self.eor.append((1, 1, len(self.v4) // 13))
            elif (mp_unreach is not None and not mp_unreach[1]
                    and mp_unreach[2] == astart and mp_unreach[3] == aend):
                afi = mp_unreach[0]
                self.eor.append((afi, 1, len(self.v4) // 13 if afi == 1 else len(self.v6) // 25))

        if probs:
            self.problems.extend(probs)
        return None

    def _assemble(self, common: dict, fam_tlv: bytes, fam_type: int, afi: int, aflags: int,
                  origin: int, path_len: int, first_as: int, origin_as: int, med: int,
                  lp: int, nh: bytes, nh_ll: bytes, nh_len: int, tails: list) -> None:
        """Build one canonical blob: the common attributes plus the family's NEXT_HOP or
        MP_REACH_NLRI, in ascending type-code order; then emit it."""
        parts = dict(common)
        parts[fam_type] = fam_tlv
        aspath_off = comm_off = lcomm_off = mp_off = NO_OFF
        aspath_len = comm_len = lcomm_len = 0
        chunks = []
        off = 0
        for t in sorted(parts):
            tlv = parts[t]
            chunks.append(tlv)
            if t == 2 or t == 8 or t == 32 or t == 14:
                hl = 4 if tlv[0] & 0x10 else 3
                if t == 2:
                    aspath_off, aspath_len = off + hl, len(tlv) - hl
                elif t == 8:
                    comm_off, comm_len = off + hl, len(tlv) - hl
                elif t == 32:
                    lcomm_off, lcomm_len = off + hl, len(tlv) - hl
                else:
                    mp_off = off
            off += len(tlv)
        self._emit(b"".join(chunks), aspath_off, aspath_len, comm_off, comm_len, lcomm_off,
                   lcomm_len, mp_off, afi, aflags, origin, path_len, first_as, origin_as, med,
                   lp, nh, nh_ll, nh_len, tails)

    def _emit(self, blob: bytes, aspath_off: int, aspath_len: int, comm_off: int, comm_len: int,
              lcomm_off: int, lcomm_len: int, mp_off: int, afi: int, aflags: int, origin: int,
              path_len: int, first_as: int, origin_as: int, med: int, lp: int, nh: bytes,
              nh_ll: bytes, nh_len: int, tails: list) -> None:
        """Append one attribute set (blob + ATTR_REC) and its prefix records."""
        idx = self.n_sets
        self.n_sets = idx + 1
        self.attr_index += _attr_rec_pack(
            len(self.attr_data), len(blob), aflags, origin, afi, path_len, first_as, origin_as,
            med, lp, nh, nh_ll, nh_len, 0, 0, aspath_off, aspath_len, comm_off, comm_len,
            lcomm_off, lcomm_len, mp_off)
        self.attr_data += blob
        idxb = _U32LE(idx)
        col = self.v4 if afi == 1 else self.v6
        col += idxb + idxb.join(tails)


def _splice(buf: bytes, astart: int, aend: int, spans: list, split: int, mp_tlv: bytes,
            offs: tuple) -> tuple[bytes, tuple]:
    """Verbatim blob of an MP set: the attribute section without the MP attributes at
    `spans`, with `mp_tlv` put in at `split`. Also maps the value offsets `offs`
    (relative to astart, or NO_OFF) into the blob, and adds the MP_REACH_NLRI offset."""
    out = []
    p = astart
    size = 0                   # bytes in `out` so far
    mp_off = -1
    for s, e in spans + [(aend, aend)]:
        if mp_off < 0 and split <= s:
            out.append(buf[p:split])
            mp_off = size + split - p
            out.append(mp_tlv)
            size = mp_off + len(mp_tlv)
            p = split
        out.append(buf[p:s])
        size += s - p
        p = e
    mapped = []
    for off in offs:
        if off != NO_OFF:
            pos = astart + off
            for s, e in spans:
                if e <= pos:
                    off -= e - s
            if pos >= split:
                off += len(mp_tlv)
        mapped.append(off)
    mapped.append(mp_off)
    return b"".join(out), tuple(mapped)


def _overrun(buf: bytes, p: int, aend: int, mi: int) -> Problem:
    """[C4] the attribute at p does not fit in the attribute section (RFC 7606 §4)."""
    tc = buf[p + 1] if aend - p >= 2 else 0
    if tc == 14 or tc == 15:
        return Problem(ACTION_RESET, 3, 1, buf[p:aend], tc, mi, R_ATTR_OVERRUN_MP)
    return Problem(ACTION_WITHDRAW, 3, 1, buf[p:aend], tc, mi, R_ATTR_OVERRUN)


def _common(buf: bytes, astart: int, aend: int, kept: int, aspath: bytes, aggr) -> dict:
    """Canonical TLVs of the family-independent attributes: the first occurrence of each
    generic attribute whose bit is in `kept` (flags canonicalised, value as received),
    plus the AS_PATH (4-octet, possibly merged) and AGGREGATOR (8-byte form)."""
    parts = {2: _tlv(0x40, 2, aspath)}
    if aggr is not None:
        parts[7] = bytes((0xC0 | aggr[0], 7, 8)) + _pack_be32(aggr[1]) + aggr[2]
    p = astart
    while p < aend and kept:
        flags, t = buf[p], buf[p + 1]
        if flags & 0x10:
            alen, v = (buf[p + 2] << 8) | buf[p + 3], p + 4
        else:
            alen, v = buf[p + 2], p + 3
        p = v + alen
        bit = 1 << t
        if kept & bit:
            kept &= ~bit                      # later duplicates are not used
            exp = EXPECTED_FLAGS.get(t)
            if exp is None:                   # unrecognised optional transitive
                f = 0xE0
            elif exp == 0xC0:                 # optional transitive: Partial as received
                f = 0xC0 | (flags & 0x20)
            else:
                f = exp
            parts[t] = _tlv(f, t, buf[v:p])
    return parts


def decode_updates(buf, ctx: CodecContext) -> UpdateBatch:
    """Decode consecutive UPDATE messages from the start of `buf` (docs/codec.md)."""
    if not isinstance(buf, bytes):
        buf = bytes(buf)
    dec = _Decoder(ctx)
    fast = dec.fast if dec.canon is not None else None
    max_msg = ctx.max_msg
    n = len(buf)
    pos = 0
    mi = 0
    error = None
    while n - pos >= HEADER_LEN:
        if not buf.startswith(MARKER, pos):
            error = Problem(ACTION_RESET, 1, 1, b"", 0, mi, R_HEADER_MARKER)
            break
        length = (buf[pos + 16] << 8) | buf[pos + 17]
        if length < HEADER_LEN or length > max_msg:
            error = Problem(ACTION_RESET, 1, 2, buf[pos + 16:pos + 18], 0, mi, R_HEADER_LENGTH)
            break
        if buf[pos + 18] != 2:
            break           # not an UPDATE: the caller parses it (or reports 1/3)
        if length < 23:
            error = Problem(ACTION_RESET, 1, 2, buf[pos + 16:pos + 18], 0, mi, R_UPDATE_SHORT)
            break
        if n - pos < length:
            break           # incomplete message
        # the fast path takes the common clean message; anything else, the general path
        if fast is None or not fast(buf, pos, pos + length):
            error = dec.message(buf, pos, pos + length, mi)
            if error is not None:
                break
        pos += length
        mi += 1
    if error is not None:   # [C1]
        dec.problems.append(error)
    return UpdateBatch(
        consumed=pos, messages=mi, attr_data=bytes(dec.attr_data),
        attr_index=bytes(dec.attr_index), v4=bytes(dec.v4), v6=bytes(dec.v6),
        eor=dec.eor, problems=dec.problems, error=error)


# ---------------------------------------------------------------------------------------
# encoding
# ---------------------------------------------------------------------------------------
def _walk(blob: bytes):
    """Yield (type, start, header_len, value_len) for each attribute of a blob."""
    p, n = 0, len(blob)
    while p + 3 <= n:
        f, t = blob[p], blob[p + 1]
        if f & 0x10:
            vl, hl = (blob[p + 2] << 8) | blob[p + 3], 4
        else:
            vl, hl = blob[p + 2], 3
        yield t, p, hl, vl
        p += hl + vl


def _find_mp(blob: bytes) -> int:
    for t, p, _hl, _vl in _walk(blob):
        if t == 14:
            return p
    return NO_OFF


def _to_as2(blob: bytes) -> tuple[bytes, int]:
    """Rewrite a canonical blob for a peer without 4-octet AS (RFC 6793 §4.2.2):
    2-octet AS_PATH with AS_TRANS (+ AS4_PATH), AGGREGATOR with AS_TRANS
    (+ AS4_AGGREGATOR). Returns the new blob and its MP_REACH_NLRI offset."""
    parts = []
    for t, p, hl, vl in _walk(blob):
        raw = blob[p:p + hl + vl]
        if t == 2:
            val = raw[hl:]
            segs = _segments4(val)
            replaced = False
            out = []
            for st, asns in segs:
                if any(a > 0xFFFF for a in asns):
                    replaced = True
                    asns = [a if a <= 0xFFFF else AS_TRANS for a in asns]
                out.append(bytes((st, len(asns))) + struct.pack(">%dH" % len(asns), *asns))
            parts.append((2, _tlv(raw[0] & 0xE0, 2, b"".join(out))))
            if replaced:
                as4 = b"".join(bytes((st, len(asns))) + struct.pack(">%dI" % len(asns), *asns)
                               for st, asns in segs if st <= 2)
                if as4:
                    parts.append((17, _tlv(0xC0, 17, as4)))
        elif t == 7 and vl == 8:
            val = raw[hl:]
            asn = _unpack_be32(val)[0]
            fl = raw[0] & 0xE0
            if asn > 0xFFFF:
                parts.append((7, bytes((fl, 7, 6)) + _U16BE(AS_TRANS) + val[4:]))
                parts.append((18, b"\xc0\x12\x08" + val))
            else:
                parts.append((7, bytes((fl, 7, 6)) + _U16BE(asn) + val[4:]))
        else:
            parts.append((t, raw))
    parts.sort(key=lambda x: x[0])   # stable: keeps any equal types in place
    mp_off = NO_OFF
    off = 0
    for t, raw in parts:
        if t == 14:
            mp_off = off
        off += len(raw)
    return b"".join(raw for _t, raw in parts), mp_off


def prepend_as_path(blob: bytes, asn: int) -> tuple[bytes, int]:
    """A canonical blob with ``asn`` prepended to its AS_PATH (RFC 4271 §5.1.2; 4-octet
    ASes, like every canonical blob), for route-server clients that ask for the RS AS
    (RFC 7947 §2.2.2). Every other attribute is kept byte for byte. Returns the new blob and
    its MP_REACH_NLRI offset (as ``_to_as2`` does)."""
    blob = bytes(blob)
    a = asn.to_bytes(4, "big")
    parts = []
    done = False
    for t, p, hl, vl in _walk(blob):
        if not done and t >= 2:
            v = blob[p + hl:p + hl + vl] if t == 2 else b""
            if v and v[0] == AS_SEQUENCE and v[1] < 255:
                v = bytes((AS_SEQUENCE, v[1] + 1)) + a + v[2:]      # grow the first sequence
            else:
                v = bytes((AS_SEQUENCE, 1)) + a + v                  # a new leading segment
            parts.append(_tlv(blob[p] & 0xE0 if t == 2 else 0x40, 2, v))
            done = True
            if t == 2:
                continue
        parts.append(blob[p:p + hl + vl])
    if not done:
        parts.append(_tlv(0x40, 2, bytes((AS_SEQUENCE, 1)) + a))
    out = b"".join(parts)
    return out, _find_mp(out)


def _nlri_entries(afi: int, records: bytes, addpath: bool) -> list:
    """<path id?, len, prefix> encodings of packed prefix records, in order."""
    rs = 13 if afi == 1 else 25
    out = []
    append = out.append
    if addpath:
        for o in range(0, len(records), rs):
            # the record's path id is little-endian at o+4..o+8: reversed slice = network order
            append(records[o + 7:o + 3:-1] + records[o + 8:o + 9 + ((records[o + 8] + 7) >> 3)])
    else:
        for o in range(0, len(records), rs):
            append(records[o + 8:o + 9 + ((records[o + 8] + 7) >> 3)])
    return out


def _pack_runs(entries: list, room: int, what: str) -> list:
    """Split entries into consecutive runs of total length <= room (next-fit keeps the
    order and gives the fewest messages)."""
    runs = []
    cur = []
    size = 0
    for e in entries:
        le = len(e)
        if size + le > room:
            if not cur:
                raise EncodeError(f"{what}: one prefix does not fit in the message size")
            runs.append(cur)
            cur = []
            size = 0
            if le > room:
                raise EncodeError(f"{what}: one prefix does not fit in the message size")
        cur.append(e)
        size += le
    if cur:
        runs.append(cur)
    return runs


def _encode_announce(blob: bytes, mp_off: int, afi: int, records: bytes, ctx: CodecContext) -> bytes:
    if not records:
        return b""
    if not ctx.as4:
        blob, mp_off = _to_as2(blob)
    entries = _nlri_entries(afi, records, bool(ctx.addpath_tx & _FAM_BIT[afi]))
    max_msg = ctx.max_msg
    out = []
    if afi == 1 and mp_off == NO_OFF:
        # IPv4 prefixes in the NLRI field
        room = max_msg - 23 - len(blob)
        head = _U16BE(len(blob))
        for run in _pack_runs(entries, room, "attributes plus one IPv4 prefix"):
            nlri = b"".join(run)
            out.append(MARKER + _HDR(23 + len(blob) + len(nlri), 2) + b"\x00\x00" + head + blob + nlri)
        return b"".join(out)
    if mp_off == NO_OFF:
        raise ValueError("encode_announce: IPv6 prefixes need a blob with MP_REACH_NLRI")
    f = blob[mp_off]
    if f & 0x10:
        hl, vl = 4, (blob[mp_off + 2] << 8) | blob[mp_off + 3]
    else:
        hl, vl = 3, blob[mp_off + 2]
    mpval = blob[mp_off + hl:mp_off + hl + vl]
    if len(mpval) < 2 or ((mpval[0] << 8) | mpval[1]) != afi:
        raise ValueError("encode_announce: the blob's MP_REACH_NLRI is for another AFI")
    before = blob[:mp_off]
    after = blob[mp_off + hl + vl:]
    fl = bytes((f | 0x10, 14))
    fixed = len(before) + 4 + vl + len(after)
    room = min(max_msg - 23 - fixed, 0xFFFF - vl)
    for run in _pack_runs(entries, room, "attributes plus one prefix in MP_REACH_NLRI"):
        nlri = b"".join(run)
        attrs_len = fixed + len(nlri)
        out.append(MARKER + _HDR(23 + attrs_len, 2) + b"\x00\x00" + _U16BE(attrs_len) + before
                   + fl + _U16BE(vl + len(nlri)) + mpval + nlri + after)
    return b"".join(out)


def encode_announce(blob, afi: int, records, ctx: CodecContext) -> bytes:
    """UPDATE messages announcing `records` (prefix-record layout, attr_idx ignored)
    with the attributes of the canonical `blob`."""
    blob = bytes(blob)
    records = bytes(records)
    return _encode_announce(blob, _find_mp(blob), afi, records, ctx)


def encode_withdraw(afi: int, records, ctx: CodecContext) -> bytes:
    """UPDATE messages withdrawing `records`: IPv4 in Withdrawn Routes, IPv6 in
    MP_UNREACH_NLRI (flags 0x90, [C17])."""
    records = bytes(records)
    if not records:
        return b""
    entries = _nlri_entries(afi, records, bool(ctx.addpath_tx & _FAM_BIT[afi]))
    out = []
    if afi == 1:
        for run in _pack_runs(entries, ctx.max_msg - 23, "one IPv4 withdrawal"):
            w = b"".join(run)
            out.append(MARKER + _HDR(23 + len(w), 2) + _U16BE(len(w)) + w + b"\x00\x00")
    else:
        room = min(ctx.max_msg - 23 - 7, 0xFFFF - 3)
        for run in _pack_runs(entries, room, "one IPv6 withdrawal"):
            w = b"".join(run)
            out.append(MARKER + _HDR(30 + len(w), 2) + b"\x00\x00" + _U16BE(7 + len(w))
                       + b"\x90\x0f" + _U16BE(3 + len(w)) + b"\x00\x02\x01" + w)
    return b"".join(out)


def encode_batch(attr_data, attr_index, records, afi: int, ctx: CodecContext) -> bytes:
    """Encode each run of consecutive records with the same attr_idx: announcements
    of that set (its blob from attr_data/attr_index), or withdrawals for NO_ATTR."""
    attr_data = bytes(attr_data)
    attr_index = bytes(attr_index)
    records = bytes(records)
    rs = 13 if afi == 1 else 25
    n = len(records)
    out = []
    i = 0
    while i < n:
        key = records[i:i + 4]
        j = i + rs
        while j < n and records[j:j + 4] == key:
            j += rs
        run = records[i:j]
        idx = struct.unpack("<I", key)[0]
        if idx == NO_ATTR:
            out.append(encode_withdraw(afi, run, ctx))
        else:
            rec = _attr_rec_unpack(attr_index, idx * ATTR_REC_SIZE)
            off, ln, mp_off = rec[0], rec[1], rec[21]
            out.append(_encode_announce(attr_data[off:off + ln], mp_off, afi, run, ctx))
        i = j
    return b"".join(out)


def encode_eor(afi: int, safi: int) -> bytes:
    """End-of-RIB marker (RFC 4724 §2): empty UPDATE for IPv4 unicast, else an UPDATE
    whose only attribute is an empty MP_UNREACH_NLRI (flags 0x80, [C17])."""
    if afi == 1 and safi == 1:
        return MARKER + _HDR(23, 2) + b"\x00\x00\x00\x00"
    return MARKER + _HDR(29, 2) + b"\x00\x00\x00\x06\x80\x0f\x03" + _U16BE(afi) + bytes((safi,))
