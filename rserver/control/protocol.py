"""The control socket's wire schema (docs/control.md), as msgspec Structs.

One JSON object per line (``\\n``-terminated, UTF-8, at most ``MAX_LINE`` bytes with the
newline) in each direction. A request::

    {"v": 1, "id": 7, "cmd": "neighbor", "args": {"neighbor": "127.0.1.1"}}

is answered by exactly one reply with the same ``id``::

    {"v": 1, "id": 7, "ok": true, "data": {...}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "unknown-neighbor", "message": "..."}}

After a successful ``monitor`` reply the server sends only ``Event`` lines on that
connection (``{"v": 1, "event": "peer-state", "data": {...}}``; with ``{"routes": true}`` also
``"route"``, ``"dropped"`` and ``"rib"`` events) until the client goes away.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

import msgspec

__all__ = [
    "PROTOCOL_VERSION", "MAX_LINE", "COMMANDS", "ERROR_CODES", "Request", "Reply", "Error",
    "Event", "PeerStateEvent", "NoArgs", "MonitorArgs", "NeighborArgs", "NeighborAdminArgs", "RibArgs", "ARGS",
    "ProtocolError", "decode_request", "encode", "decode_reply_line",
]

PROTOCOL_VERSION = 1
MAX_LINE = 64 * 1024            # bytes per line, newline included; longer: "line-too-long"

# every error code a reply can carry (docs/control.md lists what each means)
ERROR_CODES = (
    "bad-json",             # the line is not valid UTF-8 JSON
    "bad-request",          # JSON, but not a request object (missing/ill-typed v, id, cmd, args)
    "bad-version",          # "v" is not a protocol version this server speaks
    "line-too-long",        # the line exceeds MAX_LINE bytes (the rest of it is skipped)
    "unknown-command",      # "cmd" names no command
    "bad-args",             # "args" does not fit the command (missing, unknown or ill-typed field)
    "unknown-neighbor",     # no configured neighbor has that address or name
    "unavailable",          # the worker owning the neighbor is not running or did not answer in time
    "not-established",      # refresh asked for a session that is not Established
    "shutting-down",        # the route server is stopping
    "config-error",         # reload: the configuration file does not validate (nothing applied)
    "reload-refused",       # reload: a setting that cannot change while running, or a listener
                            # that cannot be bound (nothing applied)
    "busy",                 # too many control clients connected at once (the connection is closed)
    "internal",             # a bug: the server caught an exception while handling the request
)


class ProtocolError(Exception):
    """A request that gets an error reply; ``id`` is the request's id when it was readable."""

    def __init__(self, code: str, message: str, id: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id


class _Struct(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Request(_Struct):
    v: int
    id: int
    cmd: str
    args: msgspec.Raw = msgspec.Raw(b"{}")


class Error(msgspec.Struct):
    code: str
    message: str


class Reply(msgspec.Struct, omit_defaults=True):
    """``ok`` true: ``data`` is present (possibly null); false: ``error`` is present."""

    v: int
    id: Optional[int]
    ok: bool
    data: Any = msgspec.UNSET
    error: Union[Error, msgspec.UnsetType] = msgspec.UNSET


class PeerStateEvent(msgspec.Struct):
    """A neighbor's FSM changed state (the supervisor's PeerEvent)."""

    address: str
    name: str
    old_state: str
    new_state: str
    reason: str
    time: float                 # unix time, seconds


class Event(msgspec.Struct):
    """A line of the monitor stream."""

    v: int
    event: Literal["peer-state"]
    data: PeerStateEvent


# --- command arguments ------------------------------------------------------------------------

class NoArgs(_Struct):
    pass


class NeighborArgs(_Struct):
    neighbor: str               # address or configured name


class NeighborAdminArgs(_Struct):
    neighbor: str
    op: Literal["up", "down", "clear", "refresh"]
    reason: str = ""            # RFC 9003 shutdown communication for down/clear (<= 255 bytes UTF-8)


class RibArgs(_Struct):
    """``rib`` (show rib): every field optional; docs/control.md, "rib"."""

    afi: Optional[int] = None           # 4 or 6; null: both
    prefix: Optional[str] = None        # "10.0.0.0/8" (a bare address is a host prefix)
    for_: Optional[str] = msgspec.field(default=None, name="for")   # longest match of an address
    match: Literal["exact", "longer", "shorter"] = "exact"          # with prefix
    in_: Optional[str] = msgspec.field(default=None, name="in")     # a neighbor's Adj-RIB-In
    out: Optional[str] = None           # a client's Adj-RIB-Out
    detail: bool = False                # explain the decision per path
    limit: int = 1000                   # routes (prefixes), 1..100000


class MonitorArgs(_Struct):
    """``monitor``: peer-state events always; ``routes`` adds Loc-RIB best-path changes
    (optionally only of prefixes within ``prefix``); docs/control.md, "monitor"."""

    routes: bool = False
    prefix: Optional[str] = None        # e.g. "10.0.0.0/8": that prefix and more specifics


ARGS: dict[str, type] = {
    "summary": NoArgs,
    "neighbor": NeighborArgs,
    "neighbor-admin": NeighborAdminArgs,
    "monitor": MonitorArgs,
    "metrics": NoArgs,
    "rib": RibArgs,
    "reload": NoArgs,
}
COMMANDS = tuple(ARGS)

_request_decoder = msgspec.json.Decoder(Request)
_args_decoders = {cmd: msgspec.json.Decoder(t) for cmd, t in ARGS.items()}
_encoder = msgspec.json.Encoder()


def decode_request(line: bytes) -> tuple[Request, Any]:
    """Parse one request line (without the newline): (request, args Struct), or raise
    ProtocolError with the right code."""
    try:
        req = _request_decoder.decode(line)
    except msgspec.ValidationError as e:
        rid = None
        try:                                    # keep the id when there is a readable one
            obj = msgspec.json.decode(line)
            if isinstance(obj, dict) and type(obj.get("id")) is int:
                rid = obj["id"]
                if type(obj.get("v")) is int and obj["v"] != PROTOCOL_VERSION:
                    raise ProtocolError("bad-version", f"protocol version {obj['v']} is not supported "
                                        f"(this server speaks {PROTOCOL_VERSION})", rid) from None
        except msgspec.DecodeError:
            pass
        raise ProtocolError("bad-request", f"not a request: {e}", rid) from None
    except msgspec.DecodeError as e:
        raise ProtocolError("bad-json", f"not JSON: {e}") from None
    if req.v != PROTOCOL_VERSION:
        raise ProtocolError("bad-version", f"protocol version {req.v} is not supported "
                            f"(this server speaks {PROTOCOL_VERSION})", req.id)
    dec = _args_decoders.get(req.cmd)
    if dec is None:
        raise ProtocolError("unknown-command", f"unknown command {req.cmd!r} "
                            f"(commands: {', '.join(COMMANDS)})", req.id)
    try:
        args = dec.decode(req.args)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise ProtocolError("bad-args", f"{req.cmd}: {e}", req.id) from None
    return req, args


def encode(msg: Any) -> bytes:
    """One line: the JSON encoding of ``msg`` plus the newline."""
    return _encoder.encode(msg) + b"\n"


def decode_reply_line(line: bytes) -> dict:
    """A reply or event line as a plain dict (the client side)."""
    obj = msgspec.json.decode(line)
    if not isinstance(obj, dict):
        raise ValueError("reply is not a JSON object")
    return obj
