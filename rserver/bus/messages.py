"""Every message that crosses a process boundary, as msgspec Structs (one module, like
OpenBGPD's imsg list in bgpd.h).

Two channels exist today:
- supervisor <-> session worker: a unix SOCK_SEQPACKET pair per worker (channel.py); one
  packet = one msgpack-encoded message, with accepted TCP connections attached as SCM_RIGHTS
  file descriptors to ``Connection`` messages;
- session workers <-> RIB process: ZeroMQ (coming with the RIB; route data travels as the
  codec's packed columns, never as one object per prefix).

Each Struct is tagged with its class name, so a receiver decodes the union and dispatches on
type; an unexpected type from a sender is logged and dropped, never fatal.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import msgspec

from ..config import GlobalConfig, NeighborConfig

__all__ = [
    "Connection", "PeerAdd", "PeerRemove", "PeerChange", "PeerAdmin", "Shutdown", "StatusRequest",
    "WorkerReady", "PeerEvent", "PeerStatusReply", "ShutdownDone",
    "SupervisorToWorker", "WorkerToSupervisor",
]


class _Msg(msgspec.Struct, tag=True, frozen=True):
    pass


# --- supervisor -> worker -------------------------------------------------------------------

class Connection(_Msg):
    """An accepted TCP connection from ``peer_addr``; the fd travels with the packet."""

    peer_addr: str
    peer_port: int
    local_addr: str
    local_port: int
    accepted_at: float


class PeerAdd(_Msg):
    """Start running a neighbor (at worker start, and on reload for an added neighbor)."""

    neighbor: NeighborConfig
    global_: GlobalConfig


class PeerRemove(_Msg):
    """Stop a neighbor: Cease with ``subcode`` (6/3 peer de-configured on reload), then forget it."""

    address: str
    subcode: int = 3
    reason: str = ""


class PeerChange(_Msg):
    """New settings for a running neighbor; ``reset`` says whether the session must restart."""

    neighbor: NeighborConfig
    reset: bool


class PeerAdmin(_Msg):
    """Operator action: up (enable), down (disable, Cease 6/2), clear (reset, Cease 6/4), refresh."""

    address: str
    op: Literal["up", "down", "clear", "refresh"]
    reason: str = ""        # RFC 9003 shutdown communication text for down/clear


class StatusRequest(_Msg):
    """Ask for the status of one neighbor (address) or all (None)."""

    request_id: int
    address: Optional[str] = None


class Shutdown(_Msg):
    """Orderly stop: every Established peer gets Cease 6/2 with ``reason``, then the worker exits."""

    reason: str = "route server shutting down"


SupervisorToWorker = Union[Connection, PeerAdd, PeerRemove, PeerChange, PeerAdmin, StatusRequest, Shutdown]


# --- worker -> supervisor -------------------------------------------------------------------

class WorkerReady(_Msg):
    pid: int
    peers: list[str]


class PeerEvent(_Msg):
    """A state change, for logs and the control socket's monitor stream (seed 004's JSON idea)."""

    address: str
    name: str
    old_state: str
    new_state: str
    reason: str
    time: float


class PeerStatusReply(_Msg):
    """Status of neighbors as plain JSON-able dicts (the FSM's status())."""

    request_id: int
    peers: list[dict]


class ShutdownDone(_Msg):
    pid: int


WorkerToSupervisor = Union[WorkerReady, PeerEvent, PeerStatusReply, ShutdownDone]
