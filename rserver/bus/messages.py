"""Every message that crosses a process boundary, as msgspec Structs (one module, like
OpenBGPD's imsg list in bgpd.h).

Two channels exist today:
- supervisor <-> session worker: a unix SOCK_SEQPACKET pair per worker (channel.py); one
  packet = one msgpack-encoded message, with accepted TCP connections attached as SCM_RIGHTS
  file descriptors to ``Connection`` messages;
- session workers <-> RIB process: ZeroMQ DEALER -> ROUTER (bus/transport.py); one message =
  a msgpack header (a Struct below) + binary frames sent without copying (route data travels
  as the codec's packed columns, never as one object per prefix).

Each Struct is tagged with its class name, so a receiver decodes the union and dispatches on
type; an unexpected type from a sender is logged and dropped, never fatal.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import msgspec

from ..config import GlobalConfig, MaxPrefix, NeighborConfig

__all__ = [
    "Connection", "PeerAdd", "PeerRemove", "PeerChange", "PeerAdmin", "Shutdown", "StatusRequest",
    "WorkerReady", "PeerEvent", "PeerStatusReply", "ShutdownDone",
    "SupervisorToWorker", "WorkerToSupervisor",
    "EXPORT_STREAM", "SessionUp", "SessionDown", "RouteBatch", "Ack", "Resend", "Resync", "Probe",
    "ExportBatch", "Xoff", "Xon", "MaxPrefixExceeded", "WorkerToRib", "RibToWorker",
    "RibRestarted", "RibStatusRequest", "RibPeerStatus", "RouteRefreshRequest", "RibQuery", "RibQueryReply",
    "ClientReset",
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
    peer_id: int = 0                # the neighbor's id on the RIB bus (>= 1; 0: no RIB)
    rib_endpoint: str = ""          # where the RIB process listens ("" : no RIB process)
    worker_index: int = 0           # the worker's slot: its bus identity is b"w<index>"
    # tcp:// bus with CURVE ([bus] in the config): (client public, client secret, RIB public),
    # z85; None for ipc://
    bus_curve: Optional[tuple[bytes, bytes, bytes]] = None


class RibRestarted(_Msg):
    """The RIB process was restarted: re-announce every Established peer (SessionUp) and
    resync its route stream (the RIB asks the peer again: ROUTE-REFRESH, else a reset)."""

    rib_endpoint: str = ""


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


SupervisorToWorker = Union[Connection, PeerAdd, PeerRemove, PeerChange, PeerAdmin, StatusRequest, Shutdown,
                           RibRestarted]


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


# --- session worker <-> RIB (ZeroMQ, bus/transport.py) ---------------------------------------
#
# Reliable streams: route batches of one peer (worker -> RIB, stream id = peer_id) and export
# batches to one worker (RIB -> worker, stream id = EXPORT_STREAM) carry (epoch, seq). ``seq``
# starts at 1 in every epoch; a sender starts a new epoch (strictly larger, from time_ns) when
# its process starts and whenever it must resync. Ack / Resend / Probe / Resync refer to a
# stream by its id in ``peer_id``; the direction tells which stream (an Ack arriving at a
# worker is for its route stream, an Ack arriving at the RIB for its export stream).

EXPORT_STREAM = 0
"""Stream id of the RIB -> worker export stream in Ack/Resend/Probe/Resync (peer ids start at 1)."""


class SessionUp(_Msg):
    """worker -> RIB: a session reached Established, with what was negotiated."""

    peer_id: int
    address: str
    asn: int
    bgp_id: int                             # the peer's BGP identifier as u32
    as4: bool = True
    addpath_rx: int = 0                     # ADDPATH_* bits (codec/layout.py)
    addpath_tx: int = 0
    families: list[tuple[int, int]] = []    # negotiated (afi, safi)
    max_msg: int = 4096                     # 65535 with extended messages
    gr_restart_time: int = 0                # RFC 4724 restart time the peer advertised, 0 = none
    gr_families: list[tuple[int, int]] = []  # families whose forwarding state the peer preserves
    route_refresh: bool = True              # the peer can be asked to resend (resync by refresh)
    max_prefix: Optional[MaxPrefix] = None  # the neighbor's limits (None: no limit)
    # export handling of this client (docs/export.md): what decides its update group
    enhanced_refresh: bool = False          # RFC 7313 negotiated: BoRR/EoRR around a re-sent table
    add_path_send_max: int = 0              # with addpath_tx: 0 = every path, N = the best N
    prepend_as: int = 0                     # AS prepended to exported AS_PATHs (0: none, RFC 7947 §2.2.2)
    name: str = ""                          # the neighbor's configured name (show rib, logs)


class SessionDown(_Msg):
    """worker -> RIB: a session left Established. ``graceful``: keep its routes as stale
    (RFC 4724 helper) instead of withdrawing them at once."""

    peer_id: int
    reason: str = ""
    graceful: bool = False


class RouteBatch(_Msg):
    """worker -> RIB: one decoded UpdateBatch of a peer; four frames follow, in this order:
    attr_data, attr_index (ATTR_REC records), v4 records, v6 records. The counts let the
    receiver check the frames before it touches them."""

    peer_id: int
    epoch: int
    seq: int
    messages: int                           # UPDATE messages the batch came from
    n_attrsets: int                         # len(attr_index) // ATTR_REC_SIZE
    n_v4: int                               # len(v4) // REC4_SIZE
    n_v6: int                               # len(v6) // REC6_SIZE
    attr_bytes: int                         # len(attr_data)
    eor: list[tuple[int, int, int]] = []    # End-of-RIB markers, as in UpdateBatch.eor


class Ack(_Msg):
    """Cumulative: every batch of the stream up to ``seq`` (in ``epoch``) has been delivered."""

    peer_id: int
    epoch: int
    seq: int


class Resend(_Msg):
    """Receiver -> sender: a gap; send again from ``from_seq`` on."""

    peer_id: int
    epoch: int
    from_seq: int


class Resync(_Msg):
    """Sender -> receiver: the stream restarts at ``epoch`` (seq 1); what the old epochs carried
    is superseded and the full state follows (the RIB marks the peer's routes stale until
    End-of-RIB). Receiver -> sender (``epoch`` = the receiver's current one, or 0): please do so."""

    peer_id: int
    epoch: int = 0
    reason: str = ""


class Probe(_Msg):
    """Sender -> receiver when acks stop coming: ``last_seq`` is the last batch sent. The receiver
    answers with an Ack, and a Resend if it misses the tail (a lost last batch has no
    successor to reveal the gap)."""

    peer_id: int
    epoch: int
    last_seq: int


class ExportBatch(_Msg):
    """RIB -> worker: encoded UPDATE messages to write, as-is, to every listed peer; ``n_frames``
    frames of UPDATE bytes follow (each a run of whole messages). One stream per worker."""

    epoch: int
    seq: int
    peer_ids: list[int]                     # the members of the update group on that worker
    afi: int
    group_id: int = 0
    messages: int = 0
    n_frames: int = 1
    nbytes: int = 0                         # total length of the frames


class RouteRefreshRequest(_Msg):
    """worker -> RIB: the client ``peer_id`` sent a ROUTE-REFRESH (RFC 2918) for (afi, safi):
    re-send its table, framed by BoRR/EoRR when enhanced route refresh was negotiated (RFC 7313)."""

    peer_id: int
    afi: int
    safi: int = 1


class Xoff(_Msg):
    """worker -> RIB: the export queue of ``peer_id`` is above its high watermark; stop
    producing for its update group."""

    peer_id: int


class Xon(_Msg):
    """worker -> RIB: the export queue of ``peer_id`` fell below its low watermark."""

    peer_id: int


class MaxPrefixExceeded(_Msg):
    """RIB -> worker: ``peer_id`` sent more than its limit; the worker sends Cease 6/1 (RFC 4486)."""

    peer_id: int
    afi: int
    limit: int
    count: int


class ClientReset(_Msg):
    """RIB -> worker: the client ``peer_id`` must get a new session (Cease 6/4 with ``reason``):
    its export could not be kept (e.g. an ADD-PATH client blocked past the RIB's bound)."""

    peer_id: int
    reason: str = ""


class RibStatusRequest(_Msg):
    """worker -> RIB: the RIB's statistics for ``peer_id`` (a peer the worker owns)."""

    peer_id: int
    request_id: int = 0


class RibPeerStatus(_Msg):
    """RIB -> worker: the answer to RibStatusRequest; ``stats`` is a JSON-able dict
    (empty when the RIB does not know the peer)."""

    peer_id: int
    request_id: int = 0
    stats: dict = {}


class RibQuery(_Msg):
    """supervisor (control socket) -> RIB: a read-only query (show rib); ``query`` is a
    JSON-able dict documented in docs/control.md. Not tied to a peer: answered to the sender."""

    request_id: int
    query: dict = {}


class RibQueryReply(_Msg):
    """RIB -> supervisor: the answer to RibQuery; ``error`` non-empty when it failed."""

    request_id: int
    result: dict = {}
    error: str = ""


WorkerToRib = Union[SessionUp, SessionDown, RouteBatch, Ack, Resend, Resync, Probe, Xoff, Xon,
                    RibStatusRequest, RouteRefreshRequest, RibQuery]
RibToWorker = Union[ExportBatch, Ack, Resend, Resync, Probe, MaxPrefixExceeded, Xoff, Xon, RibPeerStatus,
                    RibQueryReply, ClientReset]


class RouteEvents(_Msg):
    """RIB -> control server (the ``ctl-<pid>`` DEALER): Loc-RIB best-path changes for the
    route subscription ``sub_id`` (a RibQuery ``{"kind": "subscribe"}``; docs/control.md,
    "monitor"). ``events``: JSON-able dicts (``"event": "route"`` or ``"dropped"``);
    ``dropped``: events of this subscription dropped by the rate limit so far."""

    sub_id: int
    events: list = []
    dropped: int = 0


RibToControl = Union[RibQueryReply, RouteEvents]
