"""The control socket server, run by the supervisor's asyncio loop (docs/control.md).

``run_dir/rserver.sock``, mode 0660, newline-delimited JSON (protocol.py). Every client has
its own reader task and is served one request at a time; replies are written without ever
waiting for the client (``transport.write``, never ``drain``): when a client's unsent output
exceeds ``max_output`` bytes it is dropped, so a slow, stuck or vanished client — a monitor
that does not read included — never blocks the supervisor or the other clients. Status
collection from the workers is bounded by ``status_timeout``, every request by
``request_timeout``. A bad request gets an error reply, never an exception out of here.

The ``backend`` is the Supervisor; what is used of it: ``config``, ``peer_state``,
``shutting_down``, ``await status(address, timeout)``, ``admin(address, op, reason)`` and
``reload()`` (returns the reply data or raises supervisor.main.ReloadError); ``rib.endpoint``
for ``rib`` (show rib: a RibClient DEALER on the RIB process's bus, made at the first query;
the reply is bounded by routes and bytes). ``summary`` and ``neighbor`` also ask the RIB
(``{"kind": "peers"}``: accepted / exported counts), in parallel with the workers; a RIB that
does not answer leaves those columns null, never fails the command. ``monitor`` with
``routes``: one RIB route subscription per such client, renewed every ROUTE_RENEW seconds,
its ``RouteEvents`` relayed as lines (same output bound), unsubscribed when it goes away.
"""
from __future__ import annotations

import asyncio
import ipaddress
import itertools
import os
import time
import socket
import stat
from pathlib import Path
from typing import Any, Optional

from .. import __version__
from ..bus.messages import PeerEvent
from ..log import Log, get_logger
from ..session.sockopts import normalize_addr
from . import metrics
from .protocol import (
    MAX_LINE, PROTOCOL_VERSION, Error, Event, MonitorArgs, NeighborAdminArgs, NeighborArgs,
    PeerStateEvent, ProtocolError, Reply, RibArgs, decode_request, encode,
)

__all__ = ["ControlServer", "SOCKET_NAME", "SOCKET_MODE", "MAX_OUTPUT", "MAX_CLIENTS"]

SOCKET_NAME = "rserver.sock"
SOCKET_MODE = 0o660
MAX_OUTPUT = 1 << 20            # bytes of unsent output per client before it is dropped
MAX_CLIENTS = 128               # concurrent connections; more are told "busy" and closed
STATUS_TIMEOUT = 2.0            # seconds to wait for the workers' status replies
REQUEST_TIMEOUT = 5.0           # seconds for any one request
SHUTDOWN_TEXT_MAX = 255         # RFC 9003 §2: the length octet
RIB_TIMEOUT = 4.0               # seconds for the RIB process to answer a summary / monitor query
RIB_QUERY_TIMEOUT = 12.0        # a show rib query: the first one needing the prefix trie builds it
                                # (~3 µs per prefix, ~3 s for a full table; docs/control.md)
RIB_LIMIT_MAX = 100000          # routes per rib reply (the reply is also bounded in bytes)
ROUTE_RENEW = 2.0               # seconds between renewals of a monitor's route subscription
ROUTE_RENEW_TIMEOUT = 10.0      # seconds a renewal may wait for the RIB (busy with a table load)
ROUTE_LEASE = 30.0              # the RIB forgets a subscription not renewed for this long
ROUTE_RATE = 2000               # route events per second per monitor (more: "dropped" counts)
_FAMS = ("ipv4", "ipv6")


def _done_text(op: str, reason: str) -> str:
    said = f' with shutdown communication "{reason}"' if reason else ""
    return {
        "up": "enabled (ManualStart): the session is being started",
        "down": f"disabled (ManualStop): Cease 6/2 Administrative Shutdown{said} if a session was up; "
                "the neighbor stays down until 'up'",
        "clear": f"reset: Cease 6/4 Administrative Reset{said} if a session was up, then started again",
        "refresh": "ROUTE-REFRESH requested for every negotiated family",
    }[op]


def _total(counts: Any) -> Optional[int]:
    return sum(counts.values()) if isinstance(counts, dict) else None


class _Client:
    __slots__ = ("reader", "writer", "transport", "monitoring", "closed", "peer", "route_sub",
                 "route_prefix", "rib_state")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.transport = writer.transport
        self.monitoring = False
        self.closed = False
        self.route_sub: Optional[int] = None        # the RIB route subscription (monitor --routes)
        self.route_prefix: Optional[str] = None
        self.rib_state = "ok"                       # of the subscription: ok, unavailable
        cred = None
        try:
            sock = writer.get_extra_info("socket")
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12) if sock else None
        except OSError:
            pass
        self.peer = int.from_bytes(cred[:4], "little") if cred else None   # the client's pid


class ControlServer:
    rib_client: Any = None          # RibClient, made at the first rib command (tests may set one)
    rib_timeout: float = RIB_TIMEOUT
    rib_query_timeout: float = RIB_QUERY_TIMEOUT

    def __init__(self, backend: Any, path: Path | str, *, log: Optional[Log] = None,
                 max_output: int = MAX_OUTPUT, max_clients: int = MAX_CLIENTS,
                 status_timeout: float = STATUS_TIMEOUT, request_timeout: float = REQUEST_TIMEOUT):
        self.backend = backend
        self.path = Path(path)
        self.log = log or get_logger("control")
        self.max_output = max_output
        self.max_clients = max_clients
        self.status_timeout = status_timeout
        self.request_timeout = request_timeout
        self.clients: set[_Client] = set()
        self._sock: Optional[socket.socket] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: set[asyncio.Task] = set()
        self._route_subs: dict[int, _Client] = {}   # sub_id -> monitor client with routes
        self._sub_ids = itertools.count(1)
        self._renew_task: Optional[asyncio.Task] = None
        self.route_renew = ROUTE_RENEW

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind ``path`` (replacing a stale socket file left by a crashed run: the caller
        holds the run directory's pid lock, so nothing live can own it), mode 0660, and serve."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(f"{self.path} exists and is not a socket; not replacing it")
            self.log.info(f"removing stale control socket {self.path}")
            os.unlink(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)                       # never world-accessible, not even briefly
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(self.path, SOCKET_MODE)
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE + 1)
        self.log.info("control socket listening", path=str(self.path))

    async def close(self) -> None:
        """Stop serving, drop every client, remove the socket file."""
        if self._server is not None:
            self._server.close()
        if self.rib_client is not None:
            self.rib_client.close()
            self.rib_client = None
        for c in list(self.clients):
            self._drop(c)
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as e:
                self.log.warning(f"cannot remove {self.path}: {e}")

    def close_in_child(self) -> None:
        """In a freshly forked worker: close our copies of the listening and client sockets
        (a worker holding them would keep a client's connection open after we close it)."""
        socks = [self._sock] + [getattr(c.transport, "_sock", None) for c in self.clients]
        for s in socks:
            if isinstance(s, socket.socket):
                s.close()           # the socket object, not just the fd: nothing closes it twice
        if self.rib_client is not None:
            self.rib_client.forget_in_child()   # the parent's ZeroMQ socket: leave it alone
            self.rib_client = None

    # --- monitor ----------------------------------------------------------------------------

    def publish(self, ev: PeerEvent) -> None:
        """A PeerEvent for every monitoring client (never blocks; a full client is dropped)."""
        if not any(c.monitoring for c in self.clients):
            return
        line = encode(Event(v=PROTOCOL_VERSION, event="peer-state", data=PeerStateEvent(
            address=ev.address, name=ev.name, old_state=ev.old_state, new_state=ev.new_state,
            reason=ev.reason, time=ev.time)))
        for c in list(self.clients):
            if c.monitoring:
                self._write(c, line)

    # --- connections ------------------------------------------------------------------------

    def _write(self, c: _Client, data: bytes) -> None:
        if c.closed or c.transport.is_closing():
            return
        c.transport.write(data)
        if c.transport.get_write_buffer_size() > self.max_output:
            self.log.warning(f"control client not reading ({c.transport.get_write_buffer_size()} bytes "
                             f"unsent, limit {self.max_output}): dropped", client_pid=c.peer)
            self._drop(c)

    def _drop(self, c: _Client) -> None:
        if not c.closed:
            c.closed = True
            c.transport.abort()
        self.clients.discard(c)
        self._forget_routes(c)

    def _reply(self, c: _Client, rid: Optional[int], data: Any = None, error: Optional[ProtocolError] = None) -> None:
        if error is None:
            msg = Reply(v=PROTOCOL_VERSION, id=rid, ok=True, data=data)
        else:
            msg = Reply(v=PROTOCOL_VERSION, id=rid, ok=False, error=Error(error.code, error.message))
        self._write(c, encode(msg))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        c = _Client(reader, writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if len(self.clients) >= self.max_clients:
                self._reply(c, None, error=ProtocolError("busy", f"too many control clients "
                                                         f"({self.max_clients}); try again"))
                c.transport.close()
                c.closed = True
                return
            self.clients.add(c)
            await self._read_loop(c)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:                               # noqa: BLE001 - never kill the loop
            self.log.exception("control client handler failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            if not c.closed:
                c.closed = True
                c.transport.close()
            self.clients.discard(c)
            self._forget_routes(c)

    async def _read_loop(self, c: _Client) -> None:
        buf = bytearray()
        skipping = False                                # inside an oversize line
        while not c.closed:
            chunk = await c.reader.read(65536)
            if not chunk:
                return
            if c.monitoring:                            # streaming: input is ignored
                continue
            buf += chunk
            while not c.closed and not c.monitoring:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) >= MAX_LINE:
                        if not skipping:
                            self._reply(c, None, error=ProtocolError(
                                "line-too-long", f"request line longer than {MAX_LINE} bytes"))
                        skipping = True
                        buf.clear()
                    break
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                if skipping:                            # the tail of an oversize line
                    skipping = False
                    continue
                if len(line) + 1 > MAX_LINE:
                    self._reply(c, None, error=ProtocolError(
                        "line-too-long", f"request line longer than {MAX_LINE} bytes"))
                    continue
                if not line.strip():
                    continue
                await self._request(c, line)
            if c.monitoring:
                buf.clear()

    async def _request(self, c: _Client, line: bytes) -> None:
        rid = None
        try:
            req, args = decode_request(line)
            rid = req.id
            if getattr(self.backend, "shutting_down", False):
                raise ProtocolError("shutting-down", "the route server is shutting down", rid)
            try:
                bound = self.request_timeout if req.cmd != "rib" else max(self.request_timeout,
                                                                            self.rib_query_timeout + 1.0)
                data = await asyncio.wait_for(self._dispatch(c, req.cmd, args), bound)
            except asyncio.TimeoutError:
                raise ProtocolError("unavailable", f"{req.cmd}: no answer within {bound:g}s", rid) from None
        except ProtocolError as e:
            self._reply(c, e.id if e.id is not None else rid, error=e)
            return
        except Exception as e:                          # noqa: BLE001
            self.log.exception("control request failed")
            self._reply(c, rid, error=ProtocolError("internal", f"{type(e).__name__}: {e}"))
            return
        self._reply(c, rid, data)
        if req.cmd == "monitor":
            c.monitoring = True
            self.log.debug("control client monitoring", client_pid=c.peer)

    # --- commands ---------------------------------------------------------------------------

    async def _dispatch(self, c: _Client, cmd: str, args: Any) -> Any:
        if cmd == "summary":
            return await self._summary()
        if cmd == "neighbor":
            return await self._neighbor(args)
        if cmd == "neighbor-admin":
            return self._neighbor_admin(args)
        if cmd == "monitor":
            return await self._monitor(c, args)
        if cmd == "rib":
            return await self._rib(args)
        if cmd == "reload":
            return self._reload()
        if cmd == "metrics":
            rows = (await self._summary(detail=True, rib=False))["neighbors"]
            return {"content_type": metrics.CONTENT_TYPE, "text": metrics.render(rows, __version__)}
        raise ProtocolError("unknown-command", f"unknown command {cmd!r}")   # not reached

    def _reload(self) -> dict:
        from ..supervisor.main import ReloadError
        self.log.info("control: reload requested")
        try:
            return self.backend.reload()
        except ReloadError as e:
            raise ProtocolError(e.code, e.message) from None

    def _find(self, key: str):
        n = self.backend.config.neighbor(key)
        if n is None:
            raise ProtocolError("unknown-neighbor", f"no neighbor with address or name {key!r}")
        return n

    async def _rib_peers(self, neighbor: Optional[str] = None) -> tuple[Optional[dict], dict]:
        """The RIB's per-peer counts ({"kind": "peers"}) by normalized address, and the state
        of the answer: ``{"status": "ok"|"unavailable"|"error", "message", "elapsed"}``.
        Never raises: the summary works without the RIB (e.g. while it restarts)."""
        from .ribclient import RibQueryError
        query: dict = {"kind": "peers"}
        if neighbor is not None:
            query["neighbor"] = neighbor
        try:
            client = self._rib_client()
            res = await client.query(query, timeout=min(self.rib_timeout, self.request_timeout * 0.8))
        except ProtocolError as e:
            return None, {"status": "unavailable", "message": e.message, "elapsed": None}
        except RibQueryError as e:
            if e.code == "unknown-neighbor":        # configured, but the RIB has no session of it
                return {}, {"status": "ok", "message": None, "elapsed": None}
            return None, {"status": "unavailable" if e.code == "unavailable" else "error",
                          "message": e.message, "elapsed": None}
        except Exception as e:                      # noqa: BLE001 - never fail the summary
            self.log.exception("control: rib peers query failed")
            return None, {"status": "error", "message": f"{type(e).__name__}: {e}", "elapsed": None}
        by_addr = {}
        for p in res.get("peers", []):
            try:
                by_addr[normalize_addr(p.get("address", ""))] = p
            except ValueError:
                pass
        return by_addr, {"status": "ok", "message": None, "elapsed": res.get("elapsed")}

    @staticmethod
    def _rib_fields(entry: Optional[dict], known: bool) -> dict:
        """The RIB columns of a row: null when the RIB did not answer, zeros when it answered
        but holds nothing of that neighbor (no session since the RIB started)."""
        if not known:
            return {"accepted": None, "exported": None, "stale": None, "export_live": None}
        if entry is None:
            zero = {f: 0 for f in _FAMS}
            return {"accepted": dict(zero), "exported": dict(zero), "stale": dict(zero), "export_live": None}
        exp = entry.get("export")
        return {"accepted": entry.get("accepted"), "exported": entry.get("exported"),
                "stale": entry.get("stale"), "export_live": exp.get("live") if exp else None}

    async def _summary(self, detail: bool = False, rib: bool = True) -> dict:
        if rib:
            peers, (rib_peers, rib_state) = await asyncio.gather(
                self.backend.status(None, timeout=self.status_timeout), self._rib_peers())
        else:
            peers = await self.backend.status(None, timeout=self.status_timeout)
        by_addr = {}
        for p in peers:
            try:
                by_addr[normalize_addr(p.get("address", ""))] = p
            except ValueError:
                pass
        rows = []
        for n in self.backend.config.neighbors:
            addr = normalize_addr(n.address)
            st = by_addr.get(addr)
            ev = self.backend.peer_state.get(n.address)
            if st is not None:
                rows.append({
                    "address": n.address, "name": n.name, "peer_as": n.asn,
                    "state": st.get("state"), "admin_up": st.get("admin_up"),
                    "uptime": st.get("uptime"), "downtime": st.get("downtime"),
                    "last_transition_reason": st.get("last_transition_reason"),
                    "last_transition_time": st.get("last_transition_time"),
                    "prefixes_received": st.get("prefixes_received"),
                    "messages_received": _total(st.get("messages_received")),
                    "messages_sent": _total(st.get("messages_sent")),
                    "status": "ok",
                })
                if detail:
                    rows[-1]["detail"] = st
            else:                                       # worker down or late: what we last heard
                rows.append({
                    "address": n.address, "name": n.name, "peer_as": n.asn,
                    "state": ev.new_state if ev is not None else "unknown", "admin_up": None,
                    "uptime": None, "downtime": None,
                    "last_transition_reason": ev.reason if ev is not None else None,
                    "last_transition_time": ev.time if ev is not None else None,
                    "prefixes_received": None, "messages_received": None, "messages_sent": None,
                    "status": "unavailable",
                })
            if rib:
                rows[-1].update(self._rib_fields(
                    rib_peers.get(addr) if rib_peers is not None else None, rib_peers is not None))
        if not rib:
            return {"neighbors": rows}
        return {"neighbors": rows, "rib": rib_state}

    async def _neighbor(self, args: NeighborArgs) -> dict:
        n = self._find(args.neighbor)
        peers, (rib_peers, rib_state) = await asyncio.gather(
            self.backend.status(n.address, timeout=self.status_timeout), self._rib_peers(n.address))
        if not peers:
            raise ProtocolError("unavailable", f"the worker of neighbor {n.address} is not running "
                                "or did not answer in time")
        d = dict(peers[0])
        entry = rib_peers.get(normalize_addr(n.address)) if rib_peers is not None else None
        d.update(self._rib_fields(entry, rib_peers is not None))
        d["rib"] = entry
        d["rib_status"] = rib_state
        return d

    def _neighbor_admin(self, args: NeighborAdminArgs) -> dict:
        n = self._find(args.neighbor)
        reason = args.reason
        if len(reason.encode()) > SHUTDOWN_TEXT_MAX:
            raise ProtocolError("bad-args", f"reason is {len(reason.encode())} bytes of UTF-8; "
                                f"RFC 9003 allows at most {SHUTDOWN_TEXT_MAX}")
        ev = self.backend.peer_state.get(n.address)
        state = ev.new_state if ev is not None else None
        if args.op == "refresh" and state != "established":
            raise ProtocolError("not-established", f"neighbor {n.address} is {state or 'not running'}: "
                                "route refresh needs an Established session")
        if not self.backend.admin(n.address, args.op, reason):
            raise ProtocolError("unavailable", f"the worker of neighbor {n.address} is not running")
        self.log.info(f"control: neighbor {args.op}" + (f' "{reason}"' if reason else ""),
                      neighbor=n.address, neighbor_name=n.name)
        return {"address": n.address, "name": n.name, "op": args.op, "reason": reason,
                "state": state, "done": _done_text(args.op, reason)}

    # --- rib (show rib) ---------------------------------------------------------------------

    def _rib_client(self):
        if self.rib_client is None:
            slot = getattr(self.backend, "rib", None)
            endpoint = getattr(slot, "endpoint", None)
            if not endpoint:
                raise ProtocolError("unavailable", "no RIB process runs (show rib needs one)")
            from .ribclient import RibClient
            self.rib_client = RibClient(endpoint, curve=getattr(slot, "curve_client", None))
        return self.rib_client

    async def _rib(self, args: RibArgs) -> dict:
        """Ask the RIB process (docs/control.md, "rib"). The reply is bounded by ``limit``
        routes and by bytes (``max_bytes``: what fits this client's output allowance), so a
        big table never makes the server drop the client or hold a huge reply."""
        from .ribclient import RibQueryError
        if not 1 <= args.limit <= RIB_LIMIT_MAX:
            raise ProtocolError("bad-args", f"rib: limit must be 1..{RIB_LIMIT_MAX}, not {args.limit}")
        if args.afi is not None and args.afi not in (4, 6):
            raise ProtocolError("bad-args", f"rib: afi must be 4 or 6, not {args.afi}")
        if args.in_ is not None and args.out is not None:
            raise ProtocolError("bad-args", "rib: in and out: give one or the other, not both")
        neighbor = None
        query: dict = {"afi": args.afi, "prefix": args.prefix, "for": args.for_, "match": args.match,
                       "detail": args.detail, "limit": args.limit,
                       "max_bytes": max(1024, self.max_output * 7 // 8 - 4096)}
        for field, key in (("in", args.in_), ("out", args.out)):
            if key is not None:
                neighbor = self._find(key)
                query[field] = neighbor.address
        client = self._rib_client()
        try:
            return await client.query(query, timeout=self.rib_query_timeout)
        except RibQueryError as e:
            if e.code == "unknown-neighbor" and neighbor is not None:
                # configured, but the RIB has no session of it (never Established since the
                # RIB started) or it is no export client: nothing to show
                return {"routes": [], "truncated": False, "count": 0,
                        "table": "adj-rib-in" if args.in_ is not None else "adj-rib-out",
                        "neighbor": neighbor.address, "note": e.message}
            code = e.code if e.code in ("bad-args", "unknown-neighbor", "unavailable") else "internal"
            raise ProtocolError(code, f"rib: {e.message}") from None

    # --- monitor --routes ---------------------------------------------------------------------

    async def _monitor(self, c: _Client, args: MonitorArgs) -> dict:
        if not args.routes:
            if args.prefix is not None:
                raise ProtocolError("bad-args", "monitor: prefix needs routes: true")
            return {"events": ["peer-state"]}
        prefix = None
        if args.prefix is not None:
            try:
                prefix = str(ipaddress.ip_network(args.prefix.strip(), strict=False))
            except ValueError as e:
                raise ProtocolError("bad-args", f"monitor: prefix {args.prefix!r} is not a prefix ({e})") from None
        if c.route_sub is not None:
            raise ProtocolError("bad-args", "monitor: this connection is already monitoring")
        sid = next(self._sub_ids)
        c.route_sub, c.route_prefix = sid, prefix
        self._route_subs[sid] = c
        ok, message = await self._subscribe(c, renew=False)
        if self._renew_task is None:
            self._renew_task = asyncio.get_running_loop().create_task(self._renew_routes())
            self._tasks.add(self._renew_task)
        self.log.info("control client monitoring routes", client_pid=c.peer, sub_id=sid,
                      prefix=prefix or "-", rib="ok" if ok else "unavailable")
        return {"events": ["peer-state", "route", "dropped", "rib"],
                "routes": {"sub_id": sid, "prefix": prefix, "rate": ROUTE_RATE,
                           "status": "ok" if ok else "unavailable", "message": message}}

    async def _subscribe(self, c: _Client, renew: bool) -> tuple[bool, Optional[str]]:
        """(Re)subscribe ``c`` at the RIB; on a renewal, tell the monitor when the RIB stopped
        answering or came back (a RIB that restarted lost the subscription: it is made again,
        route changes in between are not replayed)."""
        from .ribclient import RibQueryError
        sid = c.route_sub
        if sid is None:
            return False, None
        query = {"kind": "subscribe", "sub_id": sid, "prefix": c.route_prefix, "rate": ROUTE_RATE,
                 "lease": ROUTE_LEASE}
        try:
            client = self._rib_client()
            client.on_events = self._on_route_events
            res = await client.query(query, timeout=ROUTE_RENEW_TIMEOUT if renew else
                                     min(self.rib_timeout, self.request_timeout * 0.8))
        except (ProtocolError, RibQueryError) as e:
            message = e.message
            if renew and c.rib_state != "unavailable" and c.route_sub == sid:
                self._rib_event(c, "unavailable", f"route events interrupted: {message}")
            c.rib_state = "unavailable"
            return False, message
        if c.route_sub != sid:                          # the client went away meanwhile
            self._post_unsubscribe(sid)
            return False, None
        if renew and (c.rib_state != "ok" or res.get("created")):
            self._rib_event(c, "resubscribed", "the RIB process answers again (restarted: route "
                            "changes meanwhile are not replayed)" if res.get("created") else
                            "the RIB process answers again")
        c.rib_state = "ok"
        return True, None

    def _rib_event(self, c: _Client, status: str, message: str) -> None:
        if c.monitoring:
            self._write(c, encode({"v": PROTOCOL_VERSION, "event": "rib",
                                   "data": {"time": time.time(), "event": "rib", "status": status,
                                            "message": message}}))

    async def _renew_routes(self) -> None:
        try:
            while self._route_subs:
                await asyncio.sleep(self.route_renew)
                for sid, c in list(self._route_subs.items()):
                    if c.route_sub == sid:
                        await self._subscribe(c, renew=True)
        except asyncio.CancelledError:
            pass
        finally:
            self._renew_task = None
            self._tasks.discard(asyncio.current_task())

    def _on_route_events(self, msg: Any) -> None:
        """A RouteEvents from the RIB: relay to its monitor client (bounded by _write)."""
        c = self._route_subs.get(msg.sub_id)
        if c is None:
            self._post_unsubscribe(msg.sub_id)          # a subscription we no longer want
            return
        if not c.monitoring or not msg.events:
            return
        v = PROTOCOL_VERSION
        self._write(c, b"".join(encode({"v": v, "event": ev.get("event", "route"), "data": ev})
                                for ev in msg.events))

    def _post_unsubscribe(self, sid: int) -> None:
        if self.rib_client is not None:
            try:
                self.rib_client.post({"kind": "unsubscribe", "sub_id": sid})
            except Exception:                           # noqa: BLE001
                pass

    def _forget_routes(self, c: _Client) -> None:
        sid = c.route_sub
        if sid is None:
            return
        c.route_sub = None
        self._route_subs.pop(sid, None)
        self._post_unsubscribe(sid)
        if not self._route_subs and self._renew_task is not None:
            self._renew_task.cancel()
