"""The codec's data contract: packed record layouts and the typed results.

Both backends (pure Python ``rserver.codec.update_py`` and Cython
``rserver.codec._cupdate``) produce and consume exactly these layouts, so their
results can be compared byte for byte. Route data never becomes one Python
object per prefix on the hot path (ARCHITECTURE.md): an UPDATE stream decodes
into a few ``bytes`` columns plus one small record per attribute set.

Prefix records (fixed width, one per prefix):

    offset size  field
    0      4     attr_idx   little-endian u32: index into attr_index; NO_ATTR for a withdrawal
    4      4     path_id    little-endian u32: ADD-PATH path identifier, 0 when not negotiated
    8      1     plen       prefix length in bits
    9      4/16  addr       address in network byte order, host bits zeroed

IPv4 records are 13 bytes, IPv6 records 25 bytes.

Attribute-set records (ATTR_REC, one per decoded attribute set, see ATTR_FIELDS):
the canonical attribute blob sits at attr_data[off:off+len]; the other fields
are what decision and policy need, pre-parsed once per set.

The canonical blob (what the RIB interns and what export re-emits, RFC 7947
transparency) is defined in docs/codec.md.
"""
from __future__ import annotations

import struct
from typing import Optional

import msgspec

# --- prefix records -------------------------------------------------------------------
NO_ATTR = 0xFFFFFFFF
REC_HEAD = struct.Struct("<IIB")          # attr_idx, path_id, plen
REC4_SIZE = REC_HEAD.size + 4             # 13
REC6_SIZE = REC_HEAD.size + 16            # 25
REC4 = struct.Struct("<IIB4s")
REC6 = struct.Struct("<IIB16s")


def rec_size(afi: int) -> int:
    return REC4_SIZE if afi == 1 else REC6_SIZE


# --- attribute-set records ------------------------------------------------------------
ATTR_FIELDS = (
    "off",          # u32 offset of the canonical blob in attr_data
    "len",          # u32 length of the canonical blob
    "flags",        # u32 AF_* bits below
    "origin",       # u8  ORIGIN value (0 IGP, 1 EGP, 2 INCOMPLETE)
    "afi",          # u8  address family of the set's NLRI (1 or 2)
    "path_len",     # u16 AS_PATH length for the decision process: each AS_SEQUENCE
                    #     member counts 1, an AS_SET counts 1, confed segments 0 (RFC 4271 §9.1.2.2a, RFC 5065 §5.3)
    "first_as",     # u32 first AS of the path if it starts with an AS_SEQUENCE, else 0
    "origin_as",    # u32 last AS of the path if it ends with an AS_SEQUENCE, else 0
    "med",          # u32 MULTI_EXIT_DISC (valid when AF_MED)
    "local_pref",   # u32 LOCAL_PREF (valid when AF_LOCAL_PREF)
    "nh",           # 16s next hop: IPv4 in the first 4 bytes, or the IPv6 global address
    "nh_ll",        # 16s IPv6 link-local next hop (zeros when absent)
    "nh_len",       # u8  4, 16 or 32: length of the next hop as received
    "_pad1",        # u8
    "_pad2",        # u16
    "aspath_off",   # u32 offset of the AS_PATH attribute *value* within the blob (NO_OFF if absent)
    "aspath_len",   # u32 length of that value (4-octet AS numbers)
    "comm_off",     # u32 offset of the COMMUNITIES value within the blob (NO_OFF if absent)
    "comm_len",     # u32
    "lcomm_off",    # u32 offset of the LARGE_COMMUNITY value within the blob (NO_OFF if absent)
    "lcomm_len",    # u32
    "mp_off",       # u32 offset of the MP_REACH_NLRI attribute *header* within the blob (NO_OFF if absent)
)
ATTR_REC = struct.Struct("<IIIBBHIIII16s16sBBHIIIIIII")
ATTR_REC_SIZE = ATTR_REC.size   # 96
NO_OFF = 0xFFFFFFFF

# AF_* flag bits in ATTR_REC.flags
AF_MED = 1 << 0
AF_LOCAL_PREF = 1 << 1
AF_ATOMIC_AGGREGATE = 1 << 2
AF_AGGREGATOR = 1 << 3
AF_COMMUNITIES = 1 << 4
AF_LARGE_COMMUNITIES = 1 << 5
AF_EXT_COMMUNITIES = 1 << 6
AF_GSHUT = 1 << 7          # COMMUNITIES contains GRACEFUL_SHUTDOWN 65535:0 (RFC 8326)
AF_AS_SET = 1 << 8         # AS_PATH has an AS_SET segment
AF_CONFED = 1 << 9         # AS_PATH has an AS_CONFED_* segment
AF_OTC = 1 << 10           # OTC attribute present (RFC 9234)
AF_UNKNOWN = 1 << 11       # blob carries unrecognized optional transitive attributes
AF_ORIGINATOR_ID = 1 << 12
AF_CLUSTER_LIST = 1 << 13
AF_AS4_MERGED = 1 << 14    # AS_PATH was reconstructed from AS_PATH + AS4_PATH (RFC 6793 §4.2.3)
AF_BLACKHOLE = 1 << 15     # COMMUNITIES contains BLACKHOLE 65535:666 (RFC 7999)

# --- codec context ----------------------------------------------------------------------
ADDPATH_V4 = 1     # bit in addpath_rx / addpath_tx: IPv4 unicast
ADDPATH_V6 = 2     # bit in addpath_rx / addpath_tx: IPv6 unicast


class CodecContext(msgspec.Struct, frozen=True):
    """What a session negotiated, as far as the wire format is concerned."""

    as4: bool = True            # 4-octet AS numbers negotiated (RFC 6793)
    addpath_rx: int = 0         # ADDPATH_* bits: path ids present in what we receive (RFC 7911)
    addpath_tx: int = 0         # ADDPATH_* bits: path ids present in what we send
    max_msg: int = 4096         # 65535 when extended messages are negotiated (RFC 8654)
    ebgp: bool = True           # LOCAL_PREF from an external peer is discarded (RFC 4271 §5.1.5, RFC 7606 §7.5)
    loopback_next_hop: bool = False   # lab/test only: accept 127/8 IPv4 next hops (not martian)


# --- problems and results ---------------------------------------------------------------
# What to do about a problem found in an UPDATE (RFC 7606 §2)
ACTION_IGNORE = 0      # logged only (e.g. AS4_PATH from a 4-octet peer, RFC 6793 §4.2.1)
ACTION_DISCARD = 1     # "attribute discard": the attribute is dropped, the routes stand
ACTION_WITHDRAW = 2    # "treat-as-withdraw": the message's NLRI become withdrawals
ACTION_RESET = 3       # "session reset": send NOTIFICATION(code, subcode, data) and close

ACTION_NAMES = {
    ACTION_IGNORE: "ignore",
    ACTION_DISCARD: "attribute-discard",
    ACTION_WITHDRAW: "treat-as-withdraw",
    ACTION_RESET: "session-reset",
}


class Problem(msgspec.Struct, frozen=True):
    """One problem found while decoding; identical between the two backends."""

    action: int         # ACTION_*
    code: int           # NOTIFICATION error code this corresponds to (RFC 4271 §4.5)
    subcode: int        # NOTIFICATION error subcode
    data: bytes         # NOTIFICATION data (for resets), or the offending attribute
    attr: int           # path attribute type code involved, 0 if none
    msg: int            # index of the UPDATE message within this batch
    reason: str         # stable kebab-case identifier, e.g. "nexthop-martian"


class UpdateBatch(msgspec.Struct):
    """The result of decoding a run of UPDATE messages from one peer."""

    consumed: int                       # bytes of input consumed (whole messages only)
    messages: int                       # UPDATE messages decoded
    attr_data: bytes                    # concatenated canonical attribute blobs
    attr_index: bytes                   # ATTR_REC records, one per attribute set
    v4: bytes                           # IPv4 prefix records, in message order
    v6: bytes                           # IPv6 prefix records, in message order
    eor: list[tuple[int, int, int]]     # End-of-RIB (afi, safi, record position in that afi's column)
    problems: list[Problem]             # everything that was not a clean decode
    error: Optional[Problem] = None     # a session-reset problem: decoding stopped at message `consumed`

    @property
    def n_attrsets(self) -> int:
        return len(self.attr_index) // ATTR_REC_SIZE


class EncodeError(ValueError):
    """The attributes of one set cannot fit any UPDATE within the peer's message size."""
