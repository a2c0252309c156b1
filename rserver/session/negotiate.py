"""OPEN validation and capability negotiation, as pure functions.

:func:`process_open` takes the peer's decoded OPEN (``rserver.codec.messages.Open``:
``version``, ``my_as`` -- the 2-octet field --, ``hold_time``, ``bgp_id`` as an
int, ``capabilities`` as typed objects) and our :class:`LocalSettings`, and returns
either a :class:`Negotiated` (what both sides agreed on) or an :class:`OpenError`
(the NOTIFICATION to send). :func:`build_open` makes our own OPEN from the same
settings, and :func:`codec_context` the codec's ``CodecContext``.

Checks, in this order (the first failure is reported):

1. Version not 4: 2/1, data = 2-octet largest supported version (4) (RFC 4271 §6.2;
   the RFC asks for "the largest locally-supported version number less than the
   version the remote BGP peer bid" -- for a bid below 4 there is none, and we
   still send 4, the only version we speak).
2. Peer AS (RFC 4271 §6.2 "Bad Peer AS", RFC 6793, RFC 7607), 2/2 for all of:
   AS 0 in My AS or in the 4-octet AS capability (RFC 7607 §2); My AS = AS_TRANS
   without the 4-octet AS capability; a 4-octet AS capability that contradicts a
   My AS other than AS_TRANS (e.g. capability 65001, My AS 65002); the capability
   carrying AS_TRANS itself; and the effective AS differing from the configured
   one. Quagga answers the two AS_TRANS cases with Cease 6/5 "Connection
   Rejected" (seed 002); we send 2/2 because RFC 4271 §6.2 says "All errors
   detected while processing the OPEN message MUST be indicated by sending the
   NOTIFICATION message with the Error Code OPEN Message Error" and "If the
   Autonomous System field of the OPEN message is unacceptable, then the Error
   Subcode MUST be set to Bad Peer AS", whereas Connection Rejected (RFC 4486 §4)
   is for refusing a connection as such ("e.g., the peer is not configured
   locally"), not for an OPEN whose AS fields are inconsistent.
3. BGP Identifier (RFC 4271 §6.2 as updated by RFC 6286 §2.2): 0 is 2/3; equal to
   ours is 2/3 only for an internal peer (same AS). RFC 6286 §2.2 makes the
   identifier unique only within an AS, so an external peer (every route server
   client) may share our identifier.
4. Hold time (RFC 4271 §4.2, §6.2): 1 or 2 is 2/6 ("MUST reject"); we also refuse
   (the RFC allows "MAY reject any proposed Hold Time") a value below
   ``min_hold_time`` other than 0, and 0 when ``accept_zero_hold`` is false.
5. BGP Role (RFC 9234 §4.2), only when we have a role: a peer role that does not
   pair with ours (Provider-Customer, Customer-Provider, RS-RS-Client,
   RS-Client-RS, Peer-Peer) is 2/11 Role Mismatch; so are several Role
   capabilities with different values; a missing Role capability is 2/11 only in
   strict mode.
"""
from __future__ import annotations

import struct
from typing import Any, Optional, Protocol, Sequence, Union

import msgspec

from rserver.codec.constants import (
    ADDPATH_BOTH, ADDPATH_RECEIVE, ADDPATH_SEND, AFI_IPV4, AFI_IPV6, AS_TRANS, BGP_VERSION,
    CAP_ADD_PATH, CAP_ENHANCED_ROUTE_REFRESH, CAP_EXTENDED_MESSAGE, CAP_FOUR_OCTET_AS,
    CAP_GRACEFUL_RESTART, CAP_MULTIPROTOCOL, CAP_ROLE, CAP_ROUTE_REFRESH, ERR_OPEN,
    MAX_EXT_MSG_LEN, MAX_MSG_LEN, OPEN_BAD_BGP_ID, OPEN_BAD_PEER_AS, OPEN_ROLE_MISMATCH,
    OPEN_UNACCEPTABLE_HOLD_TIME, OPEN_UNSUPPORTED_VERSION, ROLE_CUSTOMER, ROLE_PEER,
    ROLE_PROVIDER, ROLE_RS, ROLE_RS_CLIENT, SAFI_UNICAST,
)
from rserver.codec.layout import ADDPATH_V4, ADDPATH_V6, CodecContext
from rserver.codec.messages import (
    AddPathCap, EnhancedRouteRefreshCap, ExtendedMessageCap, FourOctetASCap, GracefulRestartCap,
    MultiprotocolCap, Open, RoleCap, RouteRefreshCap,
)

__all__ = [
    "OpenLike", "LocalSettings", "OpenError", "GracefulRestartInfo", "Negotiated",
    "check_open", "negotiate", "process_open", "build_open", "codec_context",
    "negotiate_hold_time", "ROLE_PAIRS", "ROLE_NAMES",
]

CAP_ROUTE_REFRESH_OLD = 128     # Cisco's pre-standard route refresh, same meaning as 2

ROLE_NAMES = {ROLE_PROVIDER: "provider", ROLE_RS: "rs", ROLE_RS_CLIENT: "rs-client",
              ROLE_CUSTOMER: "customer", ROLE_PEER: "peer"}
# RFC 9234 §4.2, Table 2: the allowed (local role, remote role) pairs
ROLE_PAIRS = frozenset({(ROLE_PROVIDER, ROLE_CUSTOMER), (ROLE_CUSTOMER, ROLE_PROVIDER),
                        (ROLE_RS, ROLE_RS_CLIENT), (ROLE_RS_CLIENT, ROLE_RS),
                        (ROLE_PEER, ROLE_PEER)})
_ADDPATH_BIT = {(AFI_IPV4, SAFI_UNICAST): ADDPATH_V4, (AFI_IPV6, SAFI_UNICAST): ADDPATH_V6}
Family = tuple[int, int]


class OpenLike(Protocol):
    """What this module reads from a decoded OPEN (rserver.codec.messages.Open).

    Capabilities are read by their ``code`` and attributes: MP (1) ``afi``,
    ``safi``; 4-octet AS (65) ``asn``; ADD-PATH (69) ``families`` of
    (afi, safi, send/receive); graceful restart (64) ``restart_flags``,
    ``restart_time``, ``families`` of (afi, safi, flags); role (9) ``role``.
    """

    version: int
    my_as: int
    hold_time: int
    bgp_id: int
    capabilities: Sequence[Any]


class LocalSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Our side of the OPEN exchange for one peer.

    ``peer_as`` None accepts any AS. ``addpath`` lists (afi, safi, mode) with mode
    ADDPATH_RECEIVE/SEND/BOTH (RFC 7911 §4). ``graceful_restart`` advertises the
    capability with no address family: we are a helper (receiving speaker) only,
    RFC 4724 §3/§4.2. ``role`` (ROLE_*) announces RFC 9234 BGP Role; a route server
    is ROLE_RS. ``ebgp`` is derived from the ASes when ``peer_as`` is known.
    """

    local_as: int
    bgp_id: int
    peer_as: Optional[int] = None
    hold_time: int = 90
    min_hold_time: int = 3
    accept_zero_hold: bool = True
    families: tuple[Family, ...] = ((AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST))
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    extended_message: bool = True
    addpath: tuple[tuple[int, int, int], ...] = ()
    graceful_restart: bool = True
    restart_time: int = 120
    role: Optional[int] = None
    role_strict: bool = False

    def __post_init__(self) -> None:
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 0xFFFF:
            raise ValueError(f"hold time {self.hold_time}: must be 0 or 3..65535 (RFC 4271 §4.2)")
        if not 0 < self.local_as <= 0xFFFFFFFF or self.local_as == AS_TRANS:
            raise ValueError(f"local AS {self.local_as} is not usable (RFC 6793, RFC 7607)")
        if not 0 < self.bgp_id <= 0xFFFFFFFF:
            raise ValueError("the BGP identifier must be a non-zero 32-bit number (RFC 6286)")

    def addpath_mode(self, family: Family) -> int:
        for afi, safi, mode in self.addpath:
            if (afi, safi) == family:
                return mode & ADDPATH_BOTH
        return 0


class OpenError(msgspec.Struct, frozen=True):
    """The NOTIFICATION to send for an unacceptable OPEN, and why (for the log)."""

    code: int
    subcode: int
    data: bytes = b""
    reason: str = ""


class GracefulRestartInfo(msgspec.Struct, frozen=True):
    """The peer's graceful-restart capability (RFC 4724 §3), as far as a helper
    needs it: how long to keep its routes, whether it says it restarted (R),
    whether it supports RFC 8538 (N), and per negotiated family whether it kept
    its forwarding state (F)."""

    restart_time: int
    restarting: bool
    notification: bool
    forwarding: tuple[tuple[int, int, bool], ...] = ()


class Negotiated(msgspec.Struct, frozen=True, kw_only=True):
    """What a session agreed on (both OPENs taken together)."""

    peer_as: int                 # the peer's real AS (4-octet capability if any)
    peer_id: int                 # its BGP Identifier
    local_as: int
    local_id: int
    ebgp: bool
    as4: bool                    # RFC 6793: both sent the 4-octet AS capability (we always do)
    families: tuple[Family, ...]
    route_refresh: bool          # RFC 2918 (either code 2 or Cisco's 128)
    enhanced_route_refresh: bool  # RFC 7313
    addpath_rx: tuple[Family, ...] = ()   # RFC 7911: path ids in what we receive
    addpath_tx: tuple[Family, ...] = ()   # RFC 7911: path ids in what we send
    graceful_restart: Optional[GracefulRestartInfo] = None   # RFC 4724, both advertised it
    extended_message: bool = False        # RFC 8654: both advertised it
    hold_time: int = 90                   # RFC 4271 §4.2: min of both; 0 = no keepalives
    keepalive_time: float = 30.0          # hold / 3 (RFC 4271 §4.4, §10); 0 when hold is 0
    local_role: Optional[int] = None      # RFC 9234
    peer_role: Optional[int] = None
    peer_capabilities: tuple[int, ...] = ()   # capability codes the peer sent, in order

    @property
    def max_message(self) -> int:
        return MAX_EXT_MSG_LEN if self.extended_message else MAX_MSG_LEN


# --- helpers ------------------------------------------------------------------------------

def _caps(open_msg: OpenLike, code: int) -> list[Any]:
    return [c for c in open_msg.capabilities if getattr(c, "code", None) == code]


def _fmt_as(asn: int) -> str:
    return f"AS{asn}"


def negotiate_hold_time(local: int, remote: int) -> tuple[int, float]:
    """(hold time, keepalive time): "the smaller of its configured Hold Time and
    the Hold Time received in the OPEN message" (RFC 4271 §4.2); keepalive one
    third of it (§4.4, §10); 0 means neither timer runs."""
    hold = min(local, remote)
    return hold, (hold / 3.0 if hold else 0.0)


def _peer_as(open_msg: OpenLike) -> Union[int, OpenError]:
    as4 = _caps(open_msg, CAP_FOUR_OCTET_AS)
    my_as = open_msg.my_as
    if my_as == 0:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"", "My AS is 0 (RFC 7607)")
    if not as4:
        if my_as == AS_TRANS:
            return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"",
                             f"My AS is AS_TRANS ({AS_TRANS}) but no 4-octet AS capability (RFC 6793)")
        return my_as
    values = {c.asn for c in as4}
    if len(values) > 1:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"",
                         f"several 4-octet AS capabilities with different ASes {sorted(values)}")
    asn = values.pop()
    if asn == 0:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"", "4-octet AS capability carries AS 0 (RFC 7607)")
    if asn == AS_TRANS:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"",
                         f"4-octet AS capability carries AS_TRANS ({AS_TRANS}) (RFC 6793)")
    if my_as != AS_TRANS and my_as != asn:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"",
                         f"My AS {my_as} contradicts the 4-octet AS capability {asn} (RFC 6793 §4.1: "
                         f"My AS is the AS itself when it fits in 2 octets, else AS_TRANS)")
    return asn


def check_open(open_msg: OpenLike, settings: LocalSettings) -> Optional[OpenError]:
    """The first problem with the peer's OPEN, or None (see the module docstring)."""
    if open_msg.version != BGP_VERSION:
        return OpenError(ERR_OPEN, OPEN_UNSUPPORTED_VERSION, struct.pack("!H", BGP_VERSION),
                         f"version {open_msg.version}, we support {BGP_VERSION}")
    peer_as = _peer_as(open_msg)
    if isinstance(peer_as, OpenError):
        return peer_as
    if settings.peer_as is not None and peer_as != settings.peer_as:
        return OpenError(ERR_OPEN, OPEN_BAD_PEER_AS, b"",
                         f"peer says {_fmt_as(peer_as)}, configured {_fmt_as(settings.peer_as)}")
    bgp_id = open_msg.bgp_id & 0xFFFFFFFF
    if bgp_id == 0:
        return OpenError(ERR_OPEN, OPEN_BAD_BGP_ID, b"", "BGP identifier 0.0.0.0")
    if bgp_id == settings.bgp_id and peer_as == settings.local_as:
        return OpenError(ERR_OPEN, OPEN_BAD_BGP_ID, b"",
                         "internal peer uses our own BGP identifier (RFC 6286 §2.2)")
    hold = open_msg.hold_time
    if hold in (1, 2):
        return OpenError(ERR_OPEN, OPEN_UNACCEPTABLE_HOLD_TIME, b"",
                         f"hold time {hold} (RFC 4271 §4.2: must be 0 or at least 3)")
    if hold == 0 and not settings.accept_zero_hold:
        return OpenError(ERR_OPEN, OPEN_UNACCEPTABLE_HOLD_TIME, b"",
                         "hold time 0 (no keepalives) is not accepted for this peer")
    if 0 < hold < settings.min_hold_time:
        return OpenError(ERR_OPEN, OPEN_UNACCEPTABLE_HOLD_TIME, b"",
                         f"hold time {hold} below the configured minimum {settings.min_hold_time}")
    if settings.role is not None:
        roles = {c.role for c in _caps(open_msg, CAP_ROLE)}
        local = settings.role
        if len(roles) > 1:      # RFC 9234 §4.2: several Role capabilities with different values
            return OpenError(ERR_OPEN, OPEN_ROLE_MISMATCH, b"",
                             f"several BGP Role capabilities {sorted(roles)}")
        if roles:
            remote = next(iter(roles))
            if (local, remote) not in ROLE_PAIRS:
                return OpenError(ERR_OPEN, OPEN_ROLE_MISMATCH, b"",
                                 f"local role {ROLE_NAMES.get(local, local)} does not pair with "
                                 f"peer role {ROLE_NAMES.get(remote, remote)} (RFC 9234 §4.2)")
        elif settings.role_strict:
            return OpenError(ERR_OPEN, OPEN_ROLE_MISMATCH, b"",
                             "strict BGP Role: the peer sent no Role capability (RFC 9234 §4.2)")
    return None


def negotiate(open_msg: OpenLike, settings: LocalSettings) -> Negotiated:
    """What the two OPENs agree on. Call only for an OPEN that passed check_open."""
    peer_as = _peer_as(open_msg)
    if isinstance(peer_as, OpenError):
        raise ValueError(peer_as.reason)
    codes = tuple(getattr(c, "code", -1) for c in open_msg.capabilities)
    ours = tuple(dict.fromkeys(settings.families))
    mp = _caps(open_msg, CAP_MULTIPROTOCOL)
    # A peer without any Multiprotocol capability speaks plain BGP-4 (RFC 4271),
    # i.e. IPv4 unicast only (RFC 4760 §8: the capability is how MP support is learnt).
    theirs = {(c.afi, c.safi) for c in mp} if mp else {(AFI_IPV4, SAFI_UNICAST)}
    families = tuple(f for f in ours if f in theirs)

    rr = settings.route_refresh and (CAP_ROUTE_REFRESH in codes or CAP_ROUTE_REFRESH_OLD in codes)
    err = settings.enhanced_route_refresh and CAP_ENHANCED_ROUTE_REFRESH in codes

    # ADD-PATH (RFC 7911 §4): we send path ids for a family when we advertised Send
    # and the peer advertised Receive; we receive them when we advertised Receive
    # and the peer advertised Send.
    peer_ap: dict[Family, int] = {}
    for cap in _caps(open_msg, CAP_ADD_PATH):
        for afi, safi, mode in cap.families:
            peer_ap[(afi, safi)] = mode & ADDPATH_BOTH
    rx, tx = [], []
    for fam in families:
        mine, peer = settings.addpath_mode(fam), peer_ap.get(fam, 0)
        if mine & ADDPATH_SEND and peer & ADDPATH_RECEIVE:
            tx.append(fam)
        if mine & ADDPATH_RECEIVE and peer & ADDPATH_SEND:
            rx.append(fam)

    gr = None
    gr_caps = _caps(open_msg, CAP_GRACEFUL_RESTART)
    if settings.graceful_restart and gr_caps:
        cap = gr_caps[0]
        fwd = tuple((afi, safi, bool(flags & 0x80)) for afi, safi, flags in cap.families
                    if (afi, safi) in families)
        gr = GracefulRestartInfo(restart_time=cap.restart_time,
                                 restarting=bool(cap.restart_flags & 0x8),
                                 notification=bool(cap.restart_flags & 0x4), forwarding=fwd)

    roles = _caps(open_msg, CAP_ROLE)
    hold, keepalive = negotiate_hold_time(settings.hold_time, open_msg.hold_time)
    return Negotiated(
        peer_as=peer_as, peer_id=open_msg.bgp_id & 0xFFFFFFFF, local_as=settings.local_as,
        local_id=settings.bgp_id, ebgp=peer_as != settings.local_as,
        as4=bool(_caps(open_msg, CAP_FOUR_OCTET_AS)), families=families,
        route_refresh=rr, enhanced_route_refresh=err,
        addpath_rx=tuple(rx), addpath_tx=tuple(tx), graceful_restart=gr,
        extended_message=settings.extended_message and CAP_EXTENDED_MESSAGE in codes,
        hold_time=hold, keepalive_time=keepalive, local_role=settings.role,
        peer_role=roles[0].role if roles else None, peer_capabilities=codes,
    )


def process_open(open_msg: OpenLike, settings: LocalSettings) -> Union[Negotiated, OpenError]:
    """check_open, then negotiate: the Negotiated result or the OpenError to send."""
    err = check_open(open_msg, settings)
    return err if err is not None else negotiate(open_msg, settings)


def codec_context(neg: Negotiated, *, loopback_next_hop: bool = False) -> CodecContext:
    """The codec's view of a negotiated session (rserver/codec/layout.py).

    ``loopback_next_hop`` is not negotiated: it is the server's [global] setting of that
    name (labs on loopback: 127/8 next hops are not martian)."""
    def bits(fams: Sequence[Family]) -> int:
        out = 0
        for f in fams:
            out |= _ADDPATH_BIT.get(f, 0)
        return out
    return CodecContext(as4=neg.as4, addpath_rx=bits(neg.addpath_rx), addpath_tx=bits(neg.addpath_tx),
                        max_msg=neg.max_message, ebgp=neg.ebgp, loopback_next_hop=bool(loopback_next_hop))


def build_open(settings: LocalSettings) -> Open:
    """Our OPEN for these settings.

    My AS is our AS when it fits in 2 octets, else AS_TRANS (RFC 6793 §4.1); the
    4-octet AS capability is always sent. Capability order follows seed 000's peers
    (MP, route refresh, 4-octet AS, ADD-PATH), then the others.
    """
    caps: list = [MultiprotocolCap(afi, safi) for afi, safi in dict.fromkeys(settings.families)]
    if settings.route_refresh:
        caps.append(RouteRefreshCap())
    caps.append(FourOctetASCap(settings.local_as))
    addpath = tuple((a, s, md) for a, s, md in settings.addpath if md & ADDPATH_BOTH)
    if addpath:
        caps.append(AddPathCap(addpath))
    if settings.enhanced_route_refresh:
        caps.append(EnhancedRouteRefreshCap())
    if settings.extended_message:
        caps.append(ExtendedMessageCap())
    if settings.graceful_restart:
        # helper only: no address family, restart flags 0 (RFC 4724 §3)
        caps.append(GracefulRestartCap(0, settings.restart_time, ()))
    if settings.role is not None:
        caps.append(RoleCap(settings.role))
    my_as = settings.local_as if settings.local_as <= 0xFFFF else AS_TRANS
    return Open(BGP_VERSION, my_as, settings.hold_time, settings.bgp_id, caps)
