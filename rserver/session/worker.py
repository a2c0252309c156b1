"""The session worker process: runs PeerRunners for the neighbors the supervisor gives it.

The supervisor forks the worker and calls :func:`worker_main` with its end of the
channel (rserver.bus.channel, a SOCK_SEQPACKET socket). The worker runs its own
asyncio loop and returns when told ``Shutdown`` or when the channel closes.

Supervisor -> worker (rserver.bus.messages):

* ``PeerAdd``: create a PeerRunner and start it (a disabled neighbor stays Idle);
* ``Connection`` (an accepted TCP connection attached as an fd): handed to the
  runner owning ``peer_addr``; unknown address: closed and logged;
* ``PeerAdmin``: up / down (Cease 6/2) / clear (Cease 6/4) / refresh (ROUTE-REFRESH),
  with the RFC 9003 shutdown text;
* ``PeerChange``: ``reset`` -> Cease 6/6 and a new runner with the new settings;
  otherwise (reload: rserver/supervisor/reload.py NEIGHBOR_LIVE) the name, the
  connect-retry / delay-open timers and the collision policy apply at once, new
  max-prefix limits are sent to the RIB with a new SessionUp for an Established
  peer, and the OPEN settings are replaced for the next session;
* ``PeerRemove``: Cease ``subcode`` (6/3 de-configured) with the reason, then forget;
* ``StatusRequest``: answered with ``PeerStatusReply`` (PeerRunner.status() dicts);
* ``Shutdown``: every peer with a session gets Cease 6/2 with the reason, the
  connections get at most ``SHUTDOWN_FLUSH`` (2 s) to flush and close, then
  ``ShutdownDone`` is sent and worker_main returns.

RIB bus (docs/rib-process.md): a ``PeerAdd`` carrying ``rib_endpoint`` makes the worker
connect a ``WorkerBus`` (identity ``w<worker_index>``, stable across restarts so the RIB's
ROUTER hands the identity over). Per Established peer a ``RouteSender`` carries the decoded
batches (``on_routes``); while it is paused (unacked bytes above the high watermark) the
peer's TCP socket is not read. ``SessionUp`` (negotiated families, AS4, ADD-PATH, GR, the
neighbor's max-prefix settings) goes to the RIB on Established, ``SessionDown`` (graceful when
GR was negotiated and the session did not end by our own NOTIFICATION) on leaving it.
``MaxPrefixExceeded`` from the RIB is handed to the runner (Cease 6/1 per the action). A
resync of a peer's stream (the RIB lost its state) re-sends SessionUp and asks the peer
again (ROUTE-REFRESH, else Cease 6/4 and a new session); ``RibRestarted`` from the
supervisor does the same for every Established peer.

Worker -> supervisor: ``WorkerReady`` at start, ``PeerEvent`` on every FSM state
change, ``PeerStatusReply``, ``ShutdownDone``.

A bad packet (``ChannelError``) or a failure while handling one message is logged
and the worker carries on; it never dies of a message.

Signals (decision): the supervisor orchestrates shutdown, so **SIGINT is ignored**
(a Ctrl-C in a terminal reaches the whole process group; the supervisor turns it
into ``Shutdown`` messages) and **SIGTERM is treated like ``Shutdown``** ("session
worker terminated"): a worker killed on its own still sends Cease 6/2 to its peers
before exiting, and answers ``ShutdownDone`` if the channel is still there. A
second SIGTERM or Shutdown during shutdown changes nothing.

Channel writes are blocking sends of small packets (a SEQPACKET socket buffer
holds hundreds of them); the supervisor reads its end continuously.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from typing import Any, Optional

import msgspec

from rserver.bus import channel
from rserver.bus import messages as bm
from rserver.bus.messages import (
    ClientReset, Connection, MaxPrefixExceeded, PeerAdd, PeerAdmin, PeerChange, PeerEvent, PeerRemove, PeerStatusReply,
    RibPeerStatus, RibRestarted, Shutdown, ShutdownDone, StatusRequest, WorkerReady,
)
from rserver.codec.constants import CEASE_ADMIN_SHUTDOWN, CEASE_CONFIG_CHANGE
from rserver.log import configure, get_logger
from rserver.memtune import start_trimmer, tune_malloc

from .fsm import State, StateChange
from .peer import PeerRunner, local_settings
from .sockopts import normalize_addr

__all__ = ["worker_main", "Worker", "SHUTDOWN_FLUSH"]

SHUTDOWN_FLUSH = 2.0     # seconds the connections get to flush their last NOTIFICATION


def worker_main(chan: socket.socket, log_format: str = "human", log_level: str = "info") -> None:
    """The session worker process body: returns on ``Shutdown`` or when ``chan`` closes."""
    # a child forked from inside the supervisor's running loop inherits its "running
    # loop" marker (Python < 3.12 does not reset it at fork): clear it
    asyncio.events._set_running_loop(None)
    try:
        asyncio.set_event_loop(None)
    except Exception:  # pragma: no cover
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    configure(log_format, log_level)
    tune_malloc()                   # large short-lived buffers: see rserver/memtune.py
    asyncio.run(Worker(chan).run())


class Worker:
    """The message loop of one session worker."""

    def __init__(self, chan: socket.socket, *, bus_options: Optional[dict] = None, **runner_options: Any):
        self.chan = chan
        self.bus_options = dict(bus_options or {})      # RouteSender kw (high_water, low_water...)
        # unacknowledged route data per peer on its way to the RIB: what the RIB may have queued
        # for each peer at most (docs/rib-process.md); 4 MiB is ~70k prefixes, enough to keep
        # the pipe full, and bounds the RIB's input memory with many peers sending at once
        self.bus_options.setdefault("high_water", 4 << 20)
        self.bus_options.setdefault("low_water", 1 << 20)
        self.peers: dict[str, PeerRunner] = {}
        self.log = get_logger("worker", pid=os.getpid())
        self.runner_options = runner_options
        self._done: Optional[asyncio.Event] = None
        self._shutting = False
        self._chan_open = True
        self._tasks: set[asyncio.Task] = set()
        self._retiring: set[asyncio.Task] = set()      # removed/replaced runners flushing their Cease
        self.bus: Any = None                            # WorkerBus once a PeerAdd names the RIB
        self.peer_ids: dict[str, int] = {}              # address -> peer id on the RIB bus
        self._by_id: dict[int, PeerRunner] = {}
        self.senders: dict[int, Any] = {}               # peer id -> RouteSender (Established peers)
        self._gr_negotiated: dict[int, bool] = {}       # peer id -> GR negotiated in its session
        self.rib_status: dict[int, dict] = {}           # last RibPeerStatus per peer id
        self._xoff: set[int] = set()                    # peers whose export queue is above high water
        self._xon_handle: Optional[asyncio.TimerHandle] = None
        self.export_high_water = int(self.bus_options.pop("export_high_water", 8 << 20))
        self.export_low_water = int(self.bus_options.pop("export_low_water", 2 << 20))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self.chan.setblocking(True)
        loop.add_reader(self.chan.fileno(), self._readable)
        try:
            loop.add_signal_handler(signal.SIGTERM, self._sigterm)
        except (ValueError, RuntimeError):  # not the main thread (tests): no signal handling
            pass
        self.log.info("session worker started")
        trimmer = start_trimmer()
        self._send(WorkerReady(pid=os.getpid(), peers=sorted(self.peers)))
        try:
            await self._done.wait()
        finally:
            if self._chan_open:
                loop.remove_reader(self.chan.fileno())
            try:
                loop.remove_signal_handler(signal.SIGTERM)
            except (ValueError, RuntimeError):
                pass
            for r in self.peers.values():
                r.close()
            for t in list(self._tasks):
                t.cancel()
            if trimmer is not None:
                trimmer.cancel()
            if self.bus is not None:
                try:
                    await self.bus.aclose(timeout=1.0)
                except Exception:
                    self.log.exception("closing the RIB bus failed")
                self.bus = None
            self.log.info("session worker stopped")

    # -- channel ---------------------------------------------------------------------------

    def _send(self, msg: Any) -> bool:
        if not self._chan_open:
            return False
        try:
            channel.send(self.chan, msg)
            return True
        except OSError as e:
            self.log.warning(f"cannot send {type(msg).__name__} to the supervisor: {e}")
            return False

    def _readable(self) -> None:
        try:
            res = channel.recv(self.chan, channel.to_worker_decoder)
        except channel.ChannelError as e:
            self.log.error(f"dropping bad message from the supervisor: {e}")
            return
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.log.error(f"reading the supervisor channel failed: {e}")
            res = None
        if res is None:
            self._chan_open = False
            asyncio.get_running_loop().remove_reader(self.chan.fileno())
            self.log.warning("supervisor channel closed: shutting down")
            self._begin_shutdown("route server shutting down", reply=False)
            return
        msg, sock = res
        try:
            self.handle(msg, sock)
        except Exception:
            self.log.exception(f"handling {type(msg).__name__} failed")
            if sock is not None:
                sock.close()

    def _sigterm(self) -> None:
        self.log.info("SIGTERM received: shutting down as if told to")
        self._begin_shutdown("session worker terminated", reply=True)

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, msg: Any, sock: Optional[socket.socket] = None) -> None:
        kind = type(msg)
        if kind is Connection:
            self._connection(msg, sock)
        elif kind is PeerAdd:
            self._peer_add(msg)
        elif kind is PeerAdmin:
            self._peer_admin(msg)
        elif kind is StatusRequest:
            self._status(msg)
        elif kind is PeerRemove:
            self._peer_remove(msg)
        elif kind is PeerChange:
            self._peer_change(msg)
        elif kind is Shutdown:
            self._begin_shutdown(msg.reason, reply=True)
        elif kind is RibRestarted:
            self._rib_restarted(msg)
        else:
            self.log.warning(f"unexpected message {kind.__name__} from the supervisor, dropped")
            if sock is not None:
                sock.close()

    def _runner(self, address: str) -> Optional[PeerRunner]:
        try:
            return self.peers.get(normalize_addr(address))
        except ValueError:
            return None

    def _connection(self, msg: Connection, sock: Optional[socket.socket]) -> None:
        assert sock is not None
        r = self._runner(msg.peer_addr)
        if r is None or self._shutting:
            why = "shutting down" if self._shutting else "no such neighbor in this worker"
            self.log.warning(f"connection from {msg.peer_addr}:{msg.peer_port} closed: {why}",
                             neighbor=msg.peer_addr)
            sock.close()
            return
        r.accept(sock, msg)

    def _new_runner(self, neighbor, global_) -> PeerRunner:
        return PeerRunner(neighbor, global_, on_state=self._on_state, on_routes=self._on_routes,
                          on_session=self._on_session, on_refresh=self._on_refresh, **self.runner_options)

    # -- the RIB bus ---------------------------------------------------------------------------

    def _connect_rib(self, endpoint: str, index: int,
                     curve: Optional[tuple[bytes, bytes, bytes]] = None) -> None:
        """``curve``: (client public, client secret, RIB public) for a tcp:// bus (PeerAdd.bus_curve)."""
        if self.bus is not None or not endpoint:
            return
        from rserver.bus.transport import CurveClient, WorkerBus
        cc = CurveClient(curve[0], curve[1], curve[2]) if curve else None
        self.bus = WorkerBus(endpoint, f"w{index}".encode(), on_message=self._on_rib, on_export=self._on_export,
                             curve=cc)
        self.bus.start()
        self.log.info("connected to the RIB", endpoint=endpoint, identity=f"w{index}", curve=cc is not None)

    def _on_session(self, r: PeerRunner, up: bool, a: Any) -> None:
        pid = self.peer_ids.get(r.address, 0)
        if self.bus is None or not pid:
            return
        if up:
            self._session_up(r, pid)
            return
        s = self.senders.pop(pid, None)
        if s is not None:
            s.close()
        self._xoff.discard(pid)
        if r.reading_paused:
            r.reading_paused = False
        # graceful (RFC 4724 helper) when GR was negotiated and the session did not end by a
        # NOTIFICATION (a Cease of ours, e.g. max-prefix or admin, withdraws the routes)
        graceful = False
        gr_ok = bool(r.last_session_down is not None and self._gr_negotiated.get(pid))
        if gr_ok:
            lsd = r.last_session_down or {}
            graceful = not lsd.get("notification_sent") and not lsd.get("notification_received")
        self._gr_negotiated.pop(pid, None)
        self.bus.send(bm.SessionDown(pid, str(getattr(a, "reason", "")), graceful))

    def _session_up(self, r: PeerRunner, pid: int) -> None:
        neg = r.negotiated
        if neg is None:
            return
        ctx = r.ctx
        gr = neg.graceful_restart
        self._gr_negotiated[pid] = gr is not None
        self.bus.send(bm.SessionUp(
            peer_id=pid, address=r.address, asn=neg.peer_as, bgp_id=neg.peer_id, as4=neg.as4,
            addpath_rx=ctx.addpath_rx if ctx else 0, addpath_tx=ctx.addpath_tx if ctx else 0,
            families=[tuple(f) for f in neg.families], max_msg=ctx.max_msg if ctx else 4096,
            gr_restart_time=gr.restart_time if gr else 0,
            gr_families=[(af, sf) for af, sf, _f in gr.forwarding] if gr else [],
            route_refresh=neg.route_refresh, max_prefix=r.neighbor.max_prefix,
            enhanced_refresh=neg.enhanced_route_refresh, add_path_send_max=r.neighbor.add_path_send_max,
            prepend_as=r.global_.local_as if r.neighbor.prepend_rs_as else 0, name=r.name))
        self._xoff.discard(pid)
        if pid not in self.senders:
            self.senders[pid] = self.bus.route_sender(
                pid, **self.bus_options, on_pause=r.pause_reading, on_resume=r.resume_reading,
                on_resync=lambda reason, r=r, pid=pid: self._resync(r, pid, reason))

    def _resync(self, r: PeerRunner, pid: int, reason: str) -> None:
        """The RIB lost (part of) this peer's routes: announce the session again, fetch them again."""
        if not r.established or self.bus is None:
            return
        self.log.warning(f"RIB resync ({reason}): asking the peer for its routes again",
                         neighbor=r.address, neighbor_name=r.name)
        self._session_up(r, pid)
        if not r.refresh():
            r.clear("route server internal resync")

    def _rib_restarted(self, msg: RibRestarted) -> None:
        if self.bus is None:
            return
        for addr, r in self.peers.items():
            pid = self.peer_ids.get(addr, 0)
            s = self.senders.get(pid)
            if pid and r.established and s is not None:
                s.resync("rib restarted")        # new epoch + on_resync -> SessionUp + refresh

    # -- exports from the RIB -------------------------------------------------------------------

    def _on_export(self, view: Any) -> None:
        """Encoded UPDATEs for some of our peers: queued on each one's bulk lane, as-is."""
        h = view.header
        frames = view.frames
        for pid in h.peer_ids:
            r = self._by_id.get(pid)
            if r is None:
                continue
            count = h.messages
            for f in frames:
                if not r.send_updates(f, count):
                    break
                count = 0
            if pid not in self._xoff and r.export_backlog() > self.export_high_water:
                # flow control (docs/export.md): the RIB stops sending to this client
                # and remembers what changed; resumed below the low watermark
                self._xoff.add(pid)
                self.bus.send(bm.Xoff(pid))
                self.log.info(f"export queue above {self.export_high_water >> 20} MiB: the RIB holds this "
                              "client's updates until it drains", neighbor=r.address, neighbor_name=r.name)
                self._arm_xon()

    def _arm_xon(self) -> None:
        if self._xon_handle is None:
            self._xon_handle = asyncio.get_running_loop().call_later(0.02, self._check_xon)

    def _check_xon(self) -> None:
        self._xon_handle = None
        for pid in list(self._xoff):
            r = self._by_id.get(pid)
            if r is None or not r.established or r.export_backlog() <= self.export_low_water:
                self._xoff.discard(pid)
                if self.bus is not None:
                    self.bus.send(bm.Xon(pid))
                if r is not None:
                    self.log.info("export queue drained: the RIB resumes this client", neighbor=r.address,
                                  neighbor_name=r.name)
        if self._xoff:
            self._arm_xon()

    def _on_refresh(self, r: PeerRunner, rr: Any) -> None:
        pid = self.peer_ids.get(r.address, 0)
        if self.bus is None or not pid or getattr(rr, "subtype", 0) != 0:
            return          # BoRR/EoRR from the peer frame its own re-sent routes: nothing to do
        self.bus.send(bm.RouteRefreshRequest(pid, rr.afi, rr.safi))

    def _on_rib(self, msg: Any) -> None:
        try:
            if type(msg) is MaxPrefixExceeded:
                r = self._by_id.get(msg.peer_id)
                if r is None:
                    self.log.warning("max-prefix for an unknown peer id, dropped", peer_id=msg.peer_id)
                    return
                r.max_prefix_exceeded(msg.afi, msg.limit, msg.count)
            elif type(msg) is RibPeerStatus:
                self.rib_status[msg.peer_id] = msg.stats
            elif type(msg) is ClientReset:
                r = self._by_id.get(msg.peer_id)
                if r is not None and r.established:
                    r.clear(msg.reason)
            else:
                self.log.debug(f"RIB message {type(msg).__name__} ignored")
        except Exception:
            self.log.exception(f"handling {type(msg).__name__} from the RIB failed")

    def _peer_add(self, msg: PeerAdd) -> None:
        addr = normalize_addr(msg.neighbor.address)
        if addr in self.peers:
            self.log.warning(f"neighbor {addr} added twice, ignoring the second PeerAdd", neighbor=addr)
            return
        if self._shutting:
            return
        if msg.rib_endpoint and msg.peer_id > 0:
            self._connect_rib(msg.rib_endpoint, msg.worker_index, msg.bus_curve)
            self.peer_ids[addr] = msg.peer_id
            # a restarted worker: whatever the dead one had announced for this peer is gone
            # with its TCP session (a no-op for a peer the RIB does not know)
            self.bus.send(bm.SessionDown(msg.peer_id, "session worker started", False))
        r = self._new_runner(msg.neighbor, msg.global_)
        self.peers[addr] = r
        if msg.peer_id > 0:
            self._by_id[msg.peer_id] = r
        r.start()

    def _peer_admin(self, msg: PeerAdmin) -> None:
        r = self._runner(msg.address)
        if r is None:
            self.log.warning(f"admin {msg.op} for unknown neighbor {msg.address}", neighbor=msg.address)
            return
        self.log.info(f"admin {msg.op}" + (f': "{msg.reason}"' if msg.reason else ""),
                      neighbor=r.address, neighbor_name=r.name, fsm_state=str(r.fsm.state))
        if msg.op == "up":
            r.up()
        elif msg.op == "down":
            r.down(msg.reason)
        elif msg.op == "clear":
            r.clear(msg.reason)
        elif msg.op == "refresh":
            r.refresh()

    def _peer_remove(self, msg: PeerRemove) -> None:
        addr = normalize_addr(msg.address)
        r = self.peers.pop(addr, None)
        if r is None:
            self.log.warning(f"remove of unknown neighbor {msg.address}", neighbor=msg.address)
            return
        r.stop(msg.subcode, msg.reason)
        pid = self.peer_ids.pop(addr, 0)
        self._by_id.pop(pid, None)
        self._retire(r)

    def _peer_change(self, msg: PeerChange) -> None:
        addr = normalize_addr(msg.neighbor.address)
        r = self.peers.get(addr)
        if r is None:
            self.log.warning(f"change for unknown neighbor {addr}", neighbor=addr)
            return
        if not msg.reset:
            # reload without a reset (rserver/supervisor/reload.py NEIGHBOR_LIVE): labels,
            # local timers and collision policy, max-prefix limits; the OPEN settings are
            # replaced too, for the next session
            old, new = r.neighbor, msg.neighbor
            r.neighbor = new
            r.settings = local_settings(new, r.global_)
            r.fsm.settings = r.settings
            if new.name != r.name:
                r.name = new.name
                r.log = r.log.bind(neighbor_name=new.name)
            r.fsm.config = msgspec.structs.replace(
                r.fsm.config, connect_retry_time=float(new.connect_retry),
                delay_open_time=float(new.delay_open),
                collision_detect_established=new.collision_in_established,
                idle_hold_time=float(getattr(new, "error_wait_time", r.fsm.config.idle_hold_time)))
            pid = self.peer_ids.get(addr, 0)
            if new.max_prefix != old.max_prefix and r.established and self.bus is not None and pid:
                self._session_up(r, pid)                 # the RIB takes the new limits now
            self.log.info("neighbor settings changed without a session reset",
                          neighbor=addr, neighbor_name=r.name, fsm_state=str(r.fsm.state))
            return
        r.stop(CEASE_CONFIG_CHANGE, "configuration change")
        self._retire(r)
        new = self._new_runner(msg.neighbor, r.global_)
        self.peers[addr] = new
        pid = self.peer_ids.get(addr, 0)
        if pid:
            self._by_id[pid] = new
        new.start()

    def _retire(self, r: PeerRunner) -> None:
        async def retire():
            await r.wait_closed(SHUTDOWN_FLUSH)
            r.close()
        t = asyncio.get_running_loop().create_task(retire())
        self._tasks.add(t)
        self._retiring.add(t)
        t.add_done_callback(self._tasks.discard)
        t.add_done_callback(self._retiring.discard)

    def _status(self, msg: StatusRequest) -> None:
        if msg.address is None:
            peers = [r.status() for _, r in sorted(self.peers.items())]
        else:
            r = self._runner(msg.address)
            peers = [r.status()] if r is not None else []
        self._send(PeerStatusReply(request_id=msg.request_id, peers=peers))

    # -- callbacks from the runners -----------------------------------------------------------

    def _on_state(self, r: PeerRunner, ch: StateChange) -> None:
        self._send(PeerEvent(address=r.address, name=r.name, old_state=str(ch.old), new_state=str(ch.new),
                             reason=str(ch.reason), time=time.time()))

    def _on_routes(self, r: PeerRunner, batch: Any) -> None:
        # to the RIB (the runner has counted them); without a RIB process they are dropped
        s = self.senders.get(self.peer_ids.get(r.address, 0))
        if s is not None and (batch.attr_index or batch.v4 or batch.v6 or batch.eor):
            s.send(batch)

    # -- shutdown -------------------------------------------------------------------------------

    def _begin_shutdown(self, reason: str, reply: bool) -> None:
        if self._shutting:
            return
        self._shutting = True
        t = asyncio.get_running_loop().create_task(self._shutdown(reason, reply))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _shutdown(self, reason: str, reply: bool) -> None:
        self.log.info(f'shutdown requested: "{reason}"; stopping {len(self.peers)} peer(s)')
        runners = list(self.peers.values())
        for r in runners:
            if r.fsm.state != State.IDLE:
                r.stop(CEASE_ADMIN_SHUTDOWN, reason)
        flushing = [asyncio.ensure_future(r.wait_closed(SHUTDOWN_FLUSH)) for r in runners]
        flushing += list(self._retiring)                # a removed peer's Cease 6/3 must go out too
        if flushing:
            await asyncio.wait(flushing, timeout=SHUTDOWN_FLUSH + 0.5)
        for r in runners:
            r.close()
        if reply:
            self._send(ShutdownDone(pid=os.getpid()))
        assert self._done is not None
        self._done.set()
