"""Connection collision resolution (RFC 4271 §6.8, RFC 6286 §2.3), as pure functions.

Two TCP connections to the same peer can exist when both sides connect at once
(seed 001), or when a peer reconnects while an older connection still lingers.
Only one may survive. The FSM (``rserver.session.fsm``) tracks a second
connection until its OPEN arrives and then asks :func:`resolve_collision` which
one to keep; the loser gets NOTIFICATION Cease 6/7 "Connection Collision
Resolution" (RFC 4486 §4) and is closed.

The rule (RFC 4271 §6.8): compare the two BGP Identifiers "as 4-octet unsigned
integers"; "If the value of the local BGP Identifier is less than the remote one,
the local system closes the BGP connection that already exists (the one that is
already in the OpenConfirm state), and accepts the BGP connection initiated by
the remote system" -- i.e. the connection *initiated by the side with the higher
identifier* survives. In Established, "unless allowed via configuration, a
connection collision with an existing BGP connection that is in the Established
state causes closing of the newly created connection."

Seed 001 logged "local system wins with higher RID (1 > 2)" while keeping the
right connection: the explanation here is built from the comparison actually
made, so it cannot say anything else than what was decided.
"""
from __future__ import annotations

import ipaddress
from collections import OrderedDict
from enum import StrEnum
from typing import TYPE_CHECKING, Hashable, Optional

import msgspec

from rserver.codec.constants import CEASE_COLLISION, ERR_CEASE

if TYPE_CHECKING:  # pragma: no cover
    from .fsm import State

__all__ = ["Direction", "ConnectionInfo", "CollisionDecision", "resolve_collision",
           "DroppedConnections", "format_id"]

_ESTABLISHED = 6   # fsm.State.ESTABLISHED (RFC 4273 bgpPeerState numbering; State is an IntEnum)


class Direction(StrEnum):
    """Who initiated a TCP connection."""

    INBOUND = "inbound"     # the peer connected to us
    OUTBOUND = "outbound"   # we connected to the peer

    @property
    def initiator(self) -> str:
        return "initiated by the peer" if self is Direction.INBOUND else "initiated by us"


class ConnectionInfo(msgspec.Struct, frozen=True):
    """One of the two colliding connections: its id, direction and FSM state."""

    conn: Hashable
    direction: Direction
    state: "State | int"


class CollisionDecision(msgspec.Struct, frozen=True):
    """Which connection survives, and a truthful account of why.

    ``close`` gets NOTIFICATION (code, subcode) = Cease 6/7, then is closed.
    ``rule`` is one of "bgp-id" (RFC 4271 §6.8), "as-number" (RFC 6286 §2.3,
    identical identifiers), "established" (existing Established connection kept),
    "same-direction" (both connections initiated by the same side: the newer one
    is kept) or "tie" (nothing tells them apart: the existing one is kept).
    """

    keep: Hashable
    close: Hashable
    keep_direction: Direction
    close_direction: Direction
    rule: str
    explanation: str
    code: int = ERR_CEASE
    subcode: int = CEASE_COLLISION


def format_id(bgp_id: int) -> str:
    """A BGP Identifier in dotted-quad form."""
    return str(ipaddress.IPv4Address(bgp_id & 0xFFFFFFFF))


def _decide(keep: ConnectionInfo, close: ConnectionInfo, rule: str, why: str) -> CollisionDecision:
    text = (f"{why}: keeping the {keep.direction} connection {keep.conn} "
            f"({keep.direction.initiator}), closing the {close.direction} connection "
            f"{close.conn} ({close.direction.initiator}) with Cease 6/7")
    return CollisionDecision(keep.conn, close.conn, keep.direction, close.direction, rule, text)


def resolve_collision(local_id: int, remote_id: int, existing: ConnectionInfo,
                      new: ConnectionInfo, *, established_resolution: bool = False,
                      local_as: Optional[int] = None,
                      remote_as: Optional[int] = None) -> CollisionDecision:
    """Decide which of two connections to the same peer survives.

    ``existing`` is the connection the FSM was already running (any state),
    ``new`` the one whose OPEN just arrived. ``remote_id`` is the BGP Identifier
    from that OPEN. ``established_resolution`` is RFC 4271's
    CollisionDetectEstablishedState attribute (§8.1.1): when false, an existing
    Established connection always wins.
    """
    existing = ConnectionInfo(existing.conn, Direction(existing.direction), existing.state)
    new = ConnectionInfo(new.conn, Direction(new.direction), new.state)
    if existing.state == _ESTABLISHED and not established_resolution:
        return _decide(existing, new, "established",
                       f"existing connection {existing.conn} is established and collision "
                       f"detection in Established is off (RFC 4271 §6.8)")
    if existing.direction == new.direction:
        # RFC 4271 §6.8 only separates connections by who initiated them. Two from
        # the same side mean that side gave up the older one (a peer has one
        # connection attempt to us at a time), so the newer one is kept.
        return _decide(new, existing, "same-direction",
                       f"both connections are {new.direction}, so the BGP identifiers cannot "
                       f"choose between them; the newer one replaces the older")
    inbound, outbound = (new, existing) if new.direction is Direction.INBOUND else (existing, new)
    lid, rid = local_id & 0xFFFFFFFF, remote_id & 0xFFFFFFFF
    if lid < rid:
        return _decide(inbound, outbound, "bgp-id",
                       f"local id {format_id(lid)} < remote id {format_id(rid)}")
    if lid > rid:
        return _decide(outbound, inbound, "bgp-id",
                       f"local id {format_id(lid)} > remote id {format_id(rid)}")
    # Identical identifiers are legal between different ASes (RFC 6286 §2.2); then
    # "the connection initiated by the BGP speaker with the larger AS number is
    # preserved" (RFC 6286 §2.3).
    same = f"local id = remote id {format_id(lid)}"
    if local_as is not None and remote_as is not None and local_as != remote_as:
        if local_as > remote_as:
            return _decide(outbound, inbound, "as-number",
                           f"{same}, local AS {local_as} > remote AS {remote_as} (RFC 6286 §2.3)")
        return _decide(inbound, outbound, "as-number",
                       f"{same}, local AS {local_as} < remote AS {remote_as} (RFC 6286 §2.3)")
    return _decide(existing, new, "tie", f"{same} and the AS numbers do not differ")


class DroppedConnections:
    """The last few connections the session dropped, and why.

    A NOTIFICATION (or anything else) that arrives on one of them after it was
    dropped -- seed 001: the collision loser's NOTIFICATION is read after we
    closed it -- is ignored, and this says why ("connection 7 was dropped:
    collision ...") instead of a bare "unknown connection".
    """

    def __init__(self, size: int = 8):
        self._size = size
        self._why: OrderedDict[Hashable, str] = OrderedDict()

    def add(self, conn: Hashable, why: str) -> None:
        if conn is None:
            return
        self._why[conn] = why
        self._why.move_to_end(conn)
        while len(self._why) > self._size:
            self._why.popitem(last=False)

    def discard(self, conn: Hashable) -> None:
        self._why.pop(conn, None)

    def why(self, conn: Hashable) -> Optional[str]:
        return self._why.get(conn)

    def __contains__(self, conn: Hashable) -> bool:
        return conn in self._why
