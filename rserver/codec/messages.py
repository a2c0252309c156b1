"""OPEN, NOTIFICATION, KEEPALIVE and ROUTE-REFRESH: framing and codec.

UPDATE bodies are decoded elsewhere (docs/codec.md); this module frames every
message type and decodes the four rare ones. It is pure Python and not on the
hot path, so it favours readability.

Input from a peer never raises anything but :class:`MessageError`, which
carries the NOTIFICATION (code, subcode, data) the session must send.
Encoding our own messages raises ``ValueError`` for values that do not fit
their fields (a programming or configuration error, not a peer's).

Representation choices:

* ``Open.bgp_id`` is an ``int`` (the 4-octet field as a big-endian unsigned
  number, RFC 4271 §4.2, RFC 6286); ``Open.bgp_id_str`` gives the dotted form.
* Capabilities are small frozen ``msgspec.Struct`` objects, kept in the order
  received. Unknown ones are kept byte-exact (:class:`UnknownCapability`).
"""
from __future__ import annotations

import ipaddress
import struct
from typing import Callable, ClassVar, Optional, Union

import msgspec

from .constants import (
    ADDPATH_BOTH, AS_TRANS, BGP_VERSION, CAP_ADD_PATH, CAP_ENHANCED_ROUTE_REFRESH,
    CAP_EXTENDED_MESSAGE, CAP_EXTENDED_NEXT_HOP, CAP_FOUR_OCTET_AS, CAP_FQDN,
    CAP_GRACEFUL_RESTART, CAP_LONG_LIVED_GR, CAP_MULTIPROTOCOL, CAP_ROLE,
    CAP_ROUTE_REFRESH, CEASE_ADMIN_RESET, CEASE_ADMIN_SHUTDOWN, ERR_CEASE, ERR_HEADER,
    ERR_OPEN, ERR_ROUTE_REFRESH, HDR_BAD_LENGTH, HDR_BAD_TYPE, HDR_NOT_SYNCHRONIZED,
    HEADER_LEN, MARKER, MAX_EXT_MSG_LEN, MAX_MSG_LEN, MIN_LEN_BY_TYPE, MSG_KEEPALIVE,
    MSG_NOTIFICATION, MSG_OPEN, MSG_ROUTE_REFRESH, MSG_UPDATE,
    OPEN_UNSPECIFIC, OPEN_UNSUPPORTED_OPT_PARAM, OPT_PARAM_CAPABILITIES,
    OPT_PARAM_EXTENDED_LENGTH, RR_BORR, RR_EORR, RR_INVALID_LENGTH, RR_NORMAL,
)

__all__ = [
    "MessageError", "split_message", "encode_header",
    "Capability", "MultiprotocolCap", "RouteRefreshCap", "ExtendedNextHopCap",
    "ExtendedMessageCap", "RoleCap", "GracefulRestartCap", "FourOctetASCap",
    "AddPathCap", "EnhancedRouteRefreshCap", "LongLivedGRCap", "FQDNCap",
    "UnknownCapability", "CAPABILITY_CLASSES", "decode_capabilities",
    "encode_capabilities",
    "Open", "decode_open", "encode_open",
    "Notification", "decode_notification", "encode_notification", "error_name",
    "Keepalive", "KEEPALIVE", "encode_keepalive",
    "RouteRefresh", "decode_route_refresh", "encode_route_refresh",
    "RawUpdate", "Message", "decode_message", "encode_message",
]

_U16 = struct.Struct("!H")
_OPEN_FIXED = struct.Struct("!BHHIB")     # version, my AS, hold time, BGP id, opt param len
_RR = struct.Struct("!HBB")               # AFI, subtype (reserved in RFC 2918), SAFI


# --- errors ---------------------------------------------------------------------------

class MessageError(Exception):
    """A peer sent something that requires NOTIFICATION (code, subcode, data)."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = ""):
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.reason = reason
        super().__init__(f"{error_name(code, subcode)}"
                         + (f": {reason}" if reason else "")
                         + (f" (data {self.data.hex()})" if self.data else ""))

    def notification(self) -> "Notification":
        """The NOTIFICATION to send for this error."""
        return Notification(self.code, self.subcode, self.data)


def _open_error(reason: str) -> MessageError:
    # RFC 4271 §6.2: "All errors detected while processing the OPEN message MUST be
    # indicated by sending the NOTIFICATION message with the Error Code OPEN Message
    # Error." Malformed optional parameters and capabilities have no dedicated
    # subcode (RFC 4271, RFC 5492, RFC 9072 name none), so they get 0 "Unspecific"
    # (RFC 4271 erratum 4493, IANA registry), as BIRD does. Quagga sends Cease 6/0
    # for capability length errors (seed 002); we follow the RFC instead.
    return MessageError(ERR_OPEN, OPEN_UNSPECIFIC, b"", reason)


# --- header and framing (RFC 4271 §4.1, §6.1; RFC 8654 §4, §6) ---------------------------

def split_message(buf, max_len: int = MAX_MSG_LEN) -> Optional[tuple[int, int]]:
    """Validate the header of the first message in ``buf``.

    Returns ``(type, length)`` where ``length`` is the whole message's length
    (header included), or ``None`` while fewer than ``length`` bytes (or fewer than
    the 19 header bytes) are buffered. ``max_len`` is 4096, or 65535 once extended
    messages are negotiated (RFC 8654 §6); OPEN and KEEPALIVE stay limited to 4096
    whatever was negotiated (RFC 8654 §4: the capability "applies to all messages
    except for OPEN and KEEPALIVE messages"; §6 likewise).

    Raises MessageError (RFC 4271 §6.1): marker not all ones 1/1 (no data); length
    < 19 or > the limit, or below the type's minimum, or a KEEPALIVE not exactly 19
    bytes: 1/2 with the 2-byte length field as data; unknown type: 1/3 with the
    1-byte type field as data. Lengths are checked before the type, in the order of
    RFC 4271 §6.1.
    """
    if len(buf) < HEADER_LEN:
        return None
    if bytes(buf[:16]) != MARKER:
        raise MessageError(ERR_HEADER, HDR_NOT_SYNCHRONIZED, b"", "marker is not all ones")
    raw_len = bytes(buf[16:18])
    length = _U16.unpack(raw_len)[0]
    mtype = buf[18]
    if length < HEADER_LEN or length > max_len:
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH, raw_len, f"length {length}")
    if mtype not in MIN_LEN_BY_TYPE:
        raise MessageError(ERR_HEADER, HDR_BAD_TYPE, bytes((mtype,)), f"type {mtype}")
    if length < MIN_LEN_BY_TYPE[mtype]:
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH, raw_len,
                           f"length {length} for type {mtype}")
    if mtype == MSG_KEEPALIVE and length != HEADER_LEN:
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH, raw_len, f"KEEPALIVE length {length}")
    if mtype == MSG_OPEN and length > MAX_MSG_LEN:      # RFC 8654 §4, §6
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH, raw_len, f"OPEN length {length}")
    if len(buf) < length:
        return None
    return mtype, length


def encode_header(mtype: int, body_len: int) -> bytes:
    """The 19-byte header for a message of ``mtype`` with a ``body_len``-byte body."""
    length = HEADER_LEN + body_len
    if body_len < 0 or length > MAX_EXT_MSG_LEN or not 0 <= mtype <= 255:
        raise ValueError(f"cannot frame type {mtype} with a {body_len}-byte body")
    return MARKER + _U16.pack(length) + bytes((mtype,))


# --- capabilities (RFC 5492 §4 and the RFC of each capability) ---------------------------

class Capability(msgspec.Struct, frozen=True, tag=True):
    """Base of every capability: ``code`` plus an encoded value of 0..255 bytes."""

    code: ClassVar[int]

    def value(self) -> bytes:
        """The Capability Value field."""
        return b""

    @classmethod
    def from_value(cls, value: bytes) -> "Capability":
        """Decode a Capability Value; raises MessageError 2/0 when malformed."""
        if value:
            raise _open_error(f"capability {cls.code}: length {len(value)}, expected 0")
        return cls()

    def encode(self) -> bytes:
        """Code, length, value (RFC 5492 §4)."""
        v = self.value()
        if len(v) > 255:
            raise ValueError(f"capability {self.code}: value of {len(v)} bytes exceeds 255")
        return bytes((self.code, len(v))) + v


def _need_len(cls: type, value: bytes, ok: Callable[[int], bool], expected: str) -> None:
    if not ok(len(value)):
        raise _open_error(f"capability {cls.code}: length {len(value)}, expected {expected}")


def _pack(fmt: str, *vals: int) -> bytes:
    try:
        return struct.pack(fmt, *vals)
    except struct.error as exc:
        raise ValueError(f"value out of range: {vals}") from exc


class MultiprotocolCap(Capability, frozen=True):
    """RFC 4760 §8: AFI (2), reserved (1, sent 0 and ignored), SAFI (1)."""

    code: ClassVar[int] = CAP_MULTIPROTOCOL
    afi: int
    safi: int

    def value(self) -> bytes:
        return _pack("!HBB", self.afi, 0, self.safi)

    @classmethod
    def from_value(cls, value: bytes) -> "MultiprotocolCap":
        _need_len(cls, value, lambda n: n == 4, "4")
        afi, _reserved, safi = struct.unpack("!HBB", value)
        return cls(afi, safi)


class RouteRefreshCap(Capability, frozen=True):
    """RFC 2918 §2: no value."""

    code: ClassVar[int] = CAP_ROUTE_REFRESH


class ExtendedNextHopCap(Capability, frozen=True):
    """RFC 8950 §4: (NLRI AFI (2), NLRI SAFI (2), Nexthop AFI (2)) tuples."""

    code: ClassVar[int] = CAP_EXTENDED_NEXT_HOP
    families: tuple[tuple[int, int, int], ...] = ()

    def value(self) -> bytes:
        return b"".join(_pack("!HHH", *f) for f in self.families)

    @classmethod
    def from_value(cls, value: bytes) -> "ExtendedNextHopCap":
        _need_len(cls, value, lambda n: n % 6 == 0, "a multiple of 6")
        return cls(tuple(struct.iter_unpack("!HHH", value)))


class ExtendedMessageCap(Capability, frozen=True):
    """RFC 8654 §3: no value."""

    code: ClassVar[int] = CAP_EXTENDED_MESSAGE


class RoleCap(Capability, frozen=True):
    """RFC 9234 §4.1: one octet, the sender's role (ROLE_* constants)."""

    code: ClassVar[int] = CAP_ROLE
    role: int

    def value(self) -> bytes:
        return _pack("!B", self.role)

    @classmethod
    def from_value(cls, value: bytes) -> "RoleCap":
        _need_len(cls, value, lambda n: n == 1, "1")
        return cls(value[0])


class GracefulRestartCap(Capability, frozen=True):
    """RFC 4724 §3 (N bit: RFC 8538).

    ``restart_flags`` is the 4-bit field (R = 0x8, N = 0x4), ``restart_time`` the
    12-bit time in seconds, ``families`` (AFI, SAFI, AFI flags) tuples whose flags
    byte carries the Forwarding State bit 0x80.
    """

    code: ClassVar[int] = CAP_GRACEFUL_RESTART
    FLAG_RESTART: ClassVar[int] = 0x8
    FLAG_NOTIFICATION: ClassVar[int] = 0x4
    AF_FORWARDING: ClassVar[int] = 0x80

    restart_flags: int = 0
    restart_time: int = 0
    families: tuple[tuple[int, int, int], ...] = ()

    @property
    def restarting(self) -> bool:
        return bool(self.restart_flags & self.FLAG_RESTART)

    @property
    def notification(self) -> bool:
        return bool(self.restart_flags & self.FLAG_NOTIFICATION)

    def value(self) -> bytes:
        if not (0 <= self.restart_flags <= 0xF and 0 <= self.restart_time <= 0xFFF):
            raise ValueError("graceful restart flags are 4 bits, restart time 12 bits")
        head = _pack("!H", (self.restart_flags << 12) | self.restart_time)
        return head + b"".join(_pack("!HBB", *f) for f in self.families)

    @classmethod
    def from_value(cls, value: bytes) -> "GracefulRestartCap":
        _need_len(cls, value, lambda n: n >= 2 and (n - 2) % 4 == 0, "2 + 4n")
        head = _U16.unpack(value[:2])[0]
        return cls(head >> 12, head & 0xFFF, tuple(struct.iter_unpack("!HBB", value[2:])))


class FourOctetASCap(Capability, frozen=True):
    """RFC 6793 §3: the speaker's 4-octet AS number."""

    code: ClassVar[int] = CAP_FOUR_OCTET_AS
    asn: int

    def value(self) -> bytes:
        return _pack("!I", self.asn)

    @classmethod
    def from_value(cls, value: bytes) -> "FourOctetASCap":
        _need_len(cls, value, lambda n: n == 4, "4")
        return cls(struct.unpack("!I", value)[0])


class AddPathCap(Capability, frozen=True):
    """RFC 7911 §4: (AFI (2), SAFI (1), Send/Receive (1)) tuples.

    Send/Receive values other than 1..3 are kept as received; RFC 7911 §4 leaves
    them to negotiation (the session layer ignores such a family).
    """

    code: ClassVar[int] = CAP_ADD_PATH
    families: tuple[tuple[int, int, int], ...] = ()

    def value(self) -> bytes:
        return b"".join(_pack("!HBB", *f) for f in self.families)

    @classmethod
    def from_value(cls, value: bytes) -> "AddPathCap":
        _need_len(cls, value, lambda n: n % 4 == 0, "a multiple of 4")
        return cls(tuple(struct.iter_unpack("!HBB", value)))

    def mode(self, afi: int, safi: int) -> int:
        """The Send/Receive value advertised for (afi, safi), 0 when absent."""
        for a, s, sr in self.families:
            if (a, s) == (afi, safi):
                return sr & ADDPATH_BOTH
        return 0


class EnhancedRouteRefreshCap(Capability, frozen=True):
    """RFC 7313 §3.1: no value."""

    code: ClassVar[int] = CAP_ENHANCED_ROUTE_REFRESH


class LongLivedGRCap(Capability, frozen=True):
    """RFC 9494 §3: (AFI (2), SAFI (1), flags (1), long-lived stale time (3)) tuples."""

    code: ClassVar[int] = CAP_LONG_LIVED_GR
    families: tuple[tuple[int, int, int, int], ...] = ()

    def value(self) -> bytes:
        out = []
        for afi, safi, flags, stale in self.families:
            if not 0 <= stale <= 0xFFFFFF:
                raise ValueError(f"LLGR stale time {stale} exceeds 24 bits")
            out.append(_pack("!HBB", afi, safi, flags) + stale.to_bytes(3, "big"))
        return b"".join(out)

    @classmethod
    def from_value(cls, value: bytes) -> "LongLivedGRCap":
        _need_len(cls, value, lambda n: n % 7 == 0, "a multiple of 7")
        fams = []
        for i in range(0, len(value), 7):
            afi, safi, flags = struct.unpack_from("!HBB", value, i)
            fams.append((afi, safi, flags, int.from_bytes(value[i + 4:i + 7], "big")))
        return cls(tuple(fams))


class FQDNCap(Capability, frozen=True):
    """draft-walton-bgp-hostname-capability: length-prefixed hostname and domain.

    Names that are not valid UTF-8 are kept as :class:`UnknownCapability` (so they
    are never mangled); a structure that overruns the value is a 2/0 error.
    """

    code: ClassVar[int] = CAP_FQDN
    hostname: str = ""
    domain: str = ""

    def value(self) -> bytes:
        h, d = self.hostname.encode(), self.domain.encode()
        if len(h) > 255 or len(d) > 255:
            raise ValueError("FQDN hostname and domain are limited to 255 bytes each")
        return bytes((len(h),)) + h + bytes((len(d),)) + d

    @classmethod
    def from_value(cls, value: bytes) -> Capability:
        bad = _open_error(f"capability {cls.code}: malformed hostname/domain")
        if not value or 1 + value[0] >= len(value):
            raise bad
        hlen = value[0]
        dlen = value[1 + hlen]
        if 2 + hlen + dlen != len(value):
            raise bad
        try:
            host = value[1:1 + hlen].decode("utf-8")
            dom = value[2 + hlen:].decode("utf-8")
        except UnicodeDecodeError:
            return UnknownCapability(cls.code, value)
        return cls(host, dom)


class UnknownCapability(Capability, frozen=True):
    """Any capability we do not interpret (e.g. Cisco's pre-standard route refresh,
    code 128), kept byte-exact and re-emitted identically (RFC 5492 §4)."""

    code: int                 # type: ignore[misc]  # an instance field here
    data: bytes = b""

    def value(self) -> bytes:
        return self.data


CAPABILITY_CLASSES: dict[int, type[Capability]] = {
    c.code: c for c in (
        MultiprotocolCap, RouteRefreshCap, ExtendedNextHopCap, ExtendedMessageCap,
        RoleCap, GracefulRestartCap, FourOctetASCap, AddPathCap,
        EnhancedRouteRefreshCap, LongLivedGRCap, FQDNCap,
    )
}


def decode_capabilities(data: bytes) -> list[Capability]:
    """Decode the value of one Capabilities optional parameter (RFC 5492 §4).

    A capability whose length overruns the parameter, or whose value is malformed
    for its code, is OPEN Message Error 2/0 (see ``_open_error``).
    """
    caps: list[Capability] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 2:
            raise _open_error("truncated capability header")
        code, clen = data[pos], data[pos + 1]
        if pos + 2 + clen > end:
            raise _open_error(f"capability {code}: length {clen} overruns the parameter")
        value = bytes(data[pos + 2:pos + 2 + clen])
        cls = CAPABILITY_CLASSES.get(code)
        caps.append(cls.from_value(value) if cls else UnknownCapability(code, value))
        pos += 2 + clen
    return caps


def encode_capabilities(caps) -> bytes:
    """Concatenate the encoded capabilities (code, length, value each)."""
    return b"".join(c.encode() for c in caps)


# --- OPEN (RFC 4271 §4.2, RFC 5492, RFC 9072) --------------------------------------------

class Open(msgspec.Struct):
    """An OPEN message.

    ``my_as`` is the 2-octet My Autonomous System field (AS_TRANS for 4-octet
    speakers, RFC 6793 §4.1); ``asn`` is the speaker's real AS. ``bgp_id`` is an
    int (see module docstring). The version is not checked here: that is the
    session layer's job (RFC 4271 §6.2, 2/1).
    """

    version: int = BGP_VERSION
    my_as: int = AS_TRANS
    hold_time: int = 90
    bgp_id: int = 0
    capabilities: list[Capability] = msgspec.field(default_factory=list)

    @property
    def asn(self) -> int:
        """The 4-octet AS capability's AS (the first one) if present, else My AS."""
        for c in self.capabilities:
            if isinstance(c, FourOctetASCap):
                return c.asn
        return self.my_as

    @property
    def bgp_id_str(self) -> str:
        return str(ipaddress.IPv4Address(self.bgp_id & 0xFFFFFFFF))

    def find(self, cls: type) -> list:
        """All capabilities of class ``cls``, in the order received."""
        return [c for c in self.capabilities if isinstance(c, cls)]

    def encode(self) -> bytes:
        return encode_open(self)


def decode_open(body) -> Open:
    """Decode an OPEN body (the bytes after the 19-byte header).

    Optional parameters (RFC 4271 §4.2): the classic form (1-octet lengths) or the
    extended form of RFC 9072 §2, recognised when Non-Ext OP Len is non-zero and
    the next octet (Non-Ext OP Type) is 255; Non-Ext OP Len is then ignored (RFC
    9072 §2, §3). Capabilities may be spread over several Capabilities parameters
    (RFC 5492 §4); they are concatenated in order.

    Errors: a parameter type other than 2 (including 255 anywhere but the Non-Ext
    OP Type position, RFC 9072 §3) is 2/4 Unsupported Optional Parameter (RFC 4271
    §6.2), data = that parameter as received; any length inconsistency (parameters
    overrunning or not filling the message, truncated parameter header, capability
    overrun or wrong length for its code) is 2/0 (``_open_error``).
    """
    body = bytes(body)
    if len(body) < _OPEN_FIXED.size:
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH,
                           _U16.pack(min(HEADER_LEN + len(body), 0xFFFF)), "OPEN too short")
    version, my_as, hold, bgp_id, opt_len = _OPEN_FIXED.unpack_from(body)
    rest = body[_OPEN_FIXED.size:]
    extended = opt_len != 0 and len(rest) >= 1 and rest[0] == OPT_PARAM_EXTENDED_LENGTH
    if extended:                                        # RFC 9072 §2
        if len(rest) < 3:
            raise _open_error("truncated extended optional parameters length")
        params = rest[3:]
        if _U16.unpack(rest[1:3])[0] != len(params):
            raise _open_error("extended optional parameters length does not match the message")
        hlen = 3
    else:
        params = rest
        if opt_len != len(params):
            raise _open_error(f"optional parameters length {opt_len} does not match the message")
        hlen = 2
    caps: list[Capability] = []
    pos = 0
    while pos < len(params):
        if len(params) - pos < hlen:
            raise _open_error("truncated optional parameter header")
        ptype = params[pos]
        plen = _U16.unpack(params[pos + 1:pos + 3])[0] if extended else params[pos + 1]
        if pos + hlen + plen > len(params):
            raise _open_error(f"optional parameter {ptype}: length {plen} overruns the message")
        if ptype != OPT_PARAM_CAPABILITIES:
            raise MessageError(ERR_OPEN, OPEN_UNSUPPORTED_OPT_PARAM,
                               params[pos:pos + hlen + plen], f"optional parameter type {ptype}")
        caps.extend(decode_capabilities(params[pos + hlen:pos + hlen + plen]))
        pos += hlen + plen
    return Open(version, my_as, hold, bgp_id, caps)


def encode_open(msg: Open) -> bytes:
    """The complete OPEN message, header included.

    All capabilities go in one Capabilities parameter (as the seed's peers do); the
    RFC 9072 extended encoding (Non-Ext OP Len = Non-Ext OP Type = 255) is used
    exactly when that parameter would exceed 255 bytes (RFC 9072 §2). No
    capabilities: no optional parameters at all.
    """
    caps = encode_capabilities(msg.capabilities)
    if not caps:
        params = b"\x00"
    elif 2 + len(caps) <= 255:
        params = bytes((2 + len(caps), OPT_PARAM_CAPABILITIES, len(caps))) + caps
    else:
        params = (bytes((255, OPT_PARAM_EXTENDED_LENGTH)) + _pack("!H", 3 + len(caps))
                  + bytes((OPT_PARAM_CAPABILITIES,)) + _pack("!H", len(caps)) + caps)
    try:
        fixed = struct.pack("!BHHI", msg.version, msg.my_as, msg.hold_time, msg.bgp_id)
    except struct.error as exc:
        raise ValueError(f"OPEN field out of range: {exc}") from exc
    body = fixed + params
    if HEADER_LEN + len(body) > MAX_MSG_LEN:            # RFC 8654 §4: OPEN stays <= 4096
        raise ValueError(f"OPEN of {HEADER_LEN + len(body)} bytes exceeds {MAX_MSG_LEN}")
    return encode_header(MSG_OPEN, len(body)) + body


# --- NOTIFICATION (RFC 4271 §4.5) ---------------------------------------------------------

_ERROR_NAMES: dict[int, tuple[str, dict[int, str]]] = {
    1: ("Message Header Error", {             # RFC 4271 §4.5
        0: "Unspecific", 1: "Connection Not Synchronized", 2: "Bad Message Length",
        3: "Bad Message Type"}),
    2: ("OPEN Message Error", {               # RFC 4271 §4.5, RFC 5492 §5, RFC 9234 §4.2
        0: "Unspecific", 1: "Unsupported Version Number", 2: "Bad Peer AS",
        3: "Bad BGP Identifier", 4: "Unsupported Optional Parameter", 5: "Deprecated (5)",
        6: "Unacceptable Hold Time", 7: "Unsupported Capability", 8: "Deprecated (8)",
        9: "Deprecated (9)", 10: "Deprecated (10)", 11: "Role Mismatch"}),
    3: ("UPDATE Message Error", {             # RFC 4271 §4.5
        0: "Unspecific", 1: "Malformed Attribute List", 2: "Unrecognized Well-known Attribute",
        3: "Missing Well-known Attribute", 4: "Attribute Flags Error",
        5: "Attribute Length Error", 6: "Invalid ORIGIN Attribute", 7: "Deprecated (7)",
        8: "Invalid NEXT_HOP Attribute", 9: "Optional Attribute Error",
        10: "Invalid Network Field", 11: "Malformed AS_PATH"}),
    4: ("Hold Timer Expired", {}),            # RFC 4271 §4.5
    5: ("Finite State Machine Error", {       # RFC 6608 §3
        0: "Unspecified Error", 1: "Receive Unexpected Message in OpenSent State",
        2: "Receive Unexpected Message in OpenConfirm State",
        3: "Receive Unexpected Message in Established State"}),
    6: ("Cease", {                            # RFC 4486 §4, RFC 8538, RFC 9384
        0: "Unspecific", 1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown",
        3: "Peer De-configured", 4: "Administrative Reset", 5: "Connection Rejected",
        6: "Other Configuration Change", 7: "Connection Collision Resolution",
        8: "Out of Resources", 9: "Hard Reset", 10: "BFD Down"}),
    7: ("ROUTE-REFRESH Message Error", {      # RFC 7313 §5
        1: "Invalid Message Length"}),
    8: ("Send Hold Timer Expired", {}),       # RFC 9687
}

# RFC 9003 §2: Cease subcodes that may carry a Shutdown Communication
_SHUTDOWN_SUBCODES = (CEASE_ADMIN_SHUTDOWN, CEASE_ADMIN_RESET)
SHUTDOWN_MAX = 255        # RFC 9003 §2, §3: the most a Shutdown Communication may hold
SHUTDOWN_SAFE_MAX = 128   # RFC 9003 §3: SHOULD NOT exceed this unless the peer supports RFC 9003


def error_name(code: int, subcode: int) -> str:
    """'Cease/Administrative Shutdown'; codes without subcodes (4, 8) alone when 0."""
    entry = _ERROR_NAMES.get(code)
    if entry is None:
        return f"Error {code}/subcode {subcode}"
    name, subs = entry
    if not subs and subcode == 0:
        return name
    return f"{name}/{subs.get(subcode, f'subcode {subcode}')}"


def _utf8_prefix(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, cut to at most ``limit`` bytes on a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


class Notification(msgspec.Struct, frozen=True):
    """A NOTIFICATION: error code, subcode and data (RFC 4271 §4.5)."""

    code: int
    subcode: int = 0
    data: bytes = b""

    @classmethod
    def shutdown(cls, message: str = "", subcode: int = CEASE_ADMIN_SHUTDOWN,
                 limit: int = SHUTDOWN_SAFE_MAX) -> "Notification":
        """Cease 6/2 (or 6/4) with an RFC 9003 Shutdown Communication: 1-byte length
        then UTF-8, cut on a character boundary to ``limit`` bytes: 128 by default
        (RFC 9003 §3, when the peer's support is unknown), at most 255 (§2). No
        message: no data."""
        if subcode not in _SHUTDOWN_SUBCODES:
            raise ValueError("a Shutdown Communication goes with Cease 6/2 or 6/4 (RFC 9003 §2)")
        if not 0 <= limit <= SHUTDOWN_MAX:
            raise ValueError(f"Shutdown Communication limit {limit} exceeds {SHUTDOWN_MAX}")
        if not message:
            return cls(ERR_CEASE, subcode, b"")
        raw = _utf8_prefix(message, limit)
        return cls(ERR_CEASE, subcode, bytes((len(raw),)) + raw)

    @property
    def shutdown_message(self) -> Optional[str]:
        """The RFC 9003 Shutdown Communication, or None when absent or malformed.

        Malformed (length beyond the data, or not UTF-8: RFC 9003 §2 forbids
        interpreting invalid UTF-8, §4 suggests a hex dump) yields None;
        the raw bytes stay in ``data`` for a hex dump. Bytes after the communication
        are ignored. Never raises.
        """
        if self.code != ERR_CEASE or self.subcode not in _SHUTDOWN_SUBCODES or not self.data:
            return None
        n = self.data[0]
        if 1 + n > len(self.data):
            return None
        try:
            return bytes(self.data[1:1 + n]).decode("utf-8")
        except UnicodeDecodeError:
            return None

    def describe(self) -> str:
        """Human text: names of code and subcode, plus the shutdown message if any."""
        text = error_name(self.code, self.subcode)
        msg = self.shutdown_message
        if msg:
            text += f': "{msg}"'
        return text

    def encode(self, max_len: int = MAX_MSG_LEN) -> bytes:
        return encode_notification(self, max_len)


def decode_notification(body) -> Notification:
    """Decode a NOTIFICATION body. Never raises for the data (RFC 4271 §6.4: a
    NOTIFICATION is not answered); a body shorter than 2 bytes cannot come through
    ``split_message`` (1/2), and is decoded with the missing bytes as 0."""
    body = bytes(body)
    code = body[0] if len(body) > 0 else 0
    sub = body[1] if len(body) > 1 else 0
    return Notification(code, sub, body[2:])


def encode_notification(n: Notification, max_len: int = MAX_MSG_LEN) -> bytes:
    """The complete NOTIFICATION. Data that would exceed ``max_len`` is truncated
    (it is diagnostic only; e.g. an RFC 7313 §5 7/1 echoes a whole message)."""
    if not (0 <= n.code <= 255 and 0 <= n.subcode <= 255):
        raise ValueError(f"NOTIFICATION code/subcode out of range: {n.code}/{n.subcode}")
    data = bytes(n.data)[:max(0, max_len - HEADER_LEN - 2)]
    body = bytes((n.code, n.subcode)) + data
    return encode_header(MSG_NOTIFICATION, len(body)) + body


# --- KEEPALIVE (RFC 4271 §4.4) ------------------------------------------------------------

class Keepalive(msgspec.Struct, frozen=True):
    """A KEEPALIVE: the header alone."""

    def encode(self) -> bytes:
        return KEEPALIVE


KEEPALIVE = MARKER + _U16.pack(HEADER_LEN) + bytes((MSG_KEEPALIVE,))


def encode_keepalive() -> bytes:
    """The 19-byte KEEPALIVE (RFC 4271 §4.4)."""
    return KEEPALIVE


# --- ROUTE-REFRESH (RFC 2918 §3, RFC 7313 §3.2, §5) ---------------------------------------

_RR_SUBTYPES = (RR_NORMAL, RR_BORR, RR_EORR)


class RouteRefresh(msgspec.Struct, frozen=True):
    """ROUTE-REFRESH: AFI, SAFI and the RFC 7313 Message Subtype (0 request,
    1 BoRR, 2 EoRR). A message with another subtype decodes with ``known`` False:
    RFC 7313 §5 says it MUST be ignored (and SHOULD be logged)."""

    afi: int
    safi: int
    subtype: int = RR_NORMAL

    @property
    def known(self) -> bool:
        return self.subtype in _RR_SUBTYPES

    def encode(self) -> bytes:
        return encode_route_refresh(self)


def decode_route_refresh(message) -> RouteRefresh:
    """Decode a complete ROUTE-REFRESH message (header included: the error data
    needs it).

    RFC 7313 §5: a subtype 1 or 2 message whose body is not 4 bytes is 7/1 with
    the complete message as data. We apply the same to subtype 0: a longer body
    would carry ORF entries (RFC 5291), which we never advertise. Unknown subtypes
    are returned (``known`` False) whatever their length, as they are ignored.
    A message shorter than 23 bytes cannot get past ``split_message`` (1/2)."""
    message = bytes(message)
    body = message[HEADER_LEN:]
    if len(body) < _RR.size:
        raise MessageError(ERR_HEADER, HDR_BAD_LENGTH, message[16:18], "ROUTE-REFRESH too short")
    afi, subtype, safi = _RR.unpack_from(body)
    rr = RouteRefresh(afi, safi, subtype)
    if rr.known and len(body) != _RR.size:
        raise MessageError(ERR_ROUTE_REFRESH, RR_INVALID_LENGTH, message,
                           f"ROUTE-REFRESH body of {len(body)} bytes")
    return rr


def encode_route_refresh(rr: RouteRefresh) -> bytes:
    body = _pack("!HBB", rr.afi, rr.subtype, rr.safi)
    return encode_header(MSG_ROUTE_REFRESH, len(body)) + body


# --- any message ------------------------------------------------------------------------

class RawUpdate(msgspec.Struct, frozen=True):
    """An UPDATE, left for ``rserver.codec.decode_updates``: the whole message."""

    message: bytes

    @property
    def body(self) -> bytes:
        return self.message[HEADER_LEN:]


Message = Union[Open, Notification, Keepalive, RouteRefresh, RawUpdate]


def decode_message(buf, max_len: int = MAX_MSG_LEN) -> Optional[tuple[Message, int]]:
    """Decode the first message in ``buf``: ``(message, bytes consumed)``, or None
    when it is not complete yet. Raises only MessageError."""
    framed = split_message(buf, max_len)
    if framed is None:
        return None
    mtype, length = framed
    raw = bytes(buf[:length])
    body = raw[HEADER_LEN:]
    msg: Message
    if mtype == MSG_OPEN:
        msg = decode_open(body)
    elif mtype == MSG_UPDATE:
        msg = RawUpdate(raw)
    elif mtype == MSG_NOTIFICATION:
        msg = decode_notification(body)
    elif mtype == MSG_KEEPALIVE:
        msg = Keepalive()
    else:
        msg = decode_route_refresh(raw)
    return msg, length


def encode_message(msg: Message) -> bytes:
    """Encode any message of this module (a RawUpdate is returned as is)."""
    if isinstance(msg, RawUpdate):
        return msg.message
    return msg.encode()
