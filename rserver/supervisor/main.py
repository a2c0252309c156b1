"""The supervisor: the parent process of rserver (docs/sessions.md).

It binds the listening sockets (the dispatcher), forks the session worker processes from a
parent that has already imported everything (so their code pages are shared), hands every
accepted connection to the worker that owns the source address, restarts a worker that
dies (exponential back-off), and on SIGTERM/SIGINT stops everything in order: every worker
is told to Shutdown (each Established peer gets Cease 6/2), stragglers are killed after a
bound, every child is reaped by PID, the listeners are closed and the run directory's
files are removed.

Process model
-------------
- one worker per neighbor by default; with ``session_workers = N`` at most N workers, the
  neighbors spread round-robin in config order;
- each worker has its own SOCK_SEQPACKET channel (bus/channel.py); after fork the child
  closes every other channel end and the listeners, the parent closes the worker's end;
- ``worker_main(chan, log_format, log_level)`` runs in the child; the child never returns
  into the parent's code (``os._exit``).
- the RIB process (docs/rib-process.md) is forked *before* the workers, with the same fork
  discipline (it closes the listeners, the control socket, the pid-file lock and every
  worker channel it inherits), restarted with the same back-off when it dies (the workers are
  then told ``RibRestarted``: they re-announce their Established sessions and re-fetch the
  routes), and stopped *last* on SIGTERM (after the workers, so their final batches land).
  Its endpoint is ``[bus]`` of the config (default ipc://RUN_DIR/rib.sock); for tcp:// it
  gets a ``CurveServer`` (the RIB's keypair, the client key allowed) and workers get the
  client keypair and the RIB's public key in ``PeerAdd.bus_curve``, the control socket's RIB
  client a ``CurveClient`` (``rib.curve_client``).
  Workers learn its endpoint and their peer ids from ``PeerAdd``. It always runs, except
  for tests of the process machinery that pass ``rib=False``.

Reload (``reload()``: the control command ``reload`` and SIGHUP; docs/control.md) re-reads
the configuration file and applies ``reload.diff(old, new)``, all or nothing: added
neighbors get a new worker (or, at the ``session_workers`` cap, the least-loaded one) and a
new peer id; removed ones get ``PeerRemove`` (Cease 6/3) and a worker left without neighbors
is told ``Shutdown`` and not restarted; changed ones get ``PeerChange`` (reset or not) and
``PeerAdmin`` for ``enabled``; a new ``local_as`` / ``router_id`` / ``loopback_next_hop``
re-adds every neighbor
(``PeerRemove`` Cease 6/6 + ``PeerAdd`` with the new global settings); listeners are
re-bound for ``listen`` / ``port``.
"""
from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..bus import channel
from ..bus.messages import (
    Connection, PeerAdd, PeerAdmin, PeerChange, PeerEvent, PeerRemove, PeerStatusReply, RibRestarted,
    Shutdown, ShutdownDone, StatusRequest, WorkerReady,
)
from ..codec.constants import CEASE_CONFIG_CHANGE, CEASE_PEER_DECONFIGURED
from ..config import Config, ConfigError, NeighborConfig, load
from ..control.server import SOCKET_NAME, ControlServer
from ..log import Log, get_logger
from ..session.sockopts import normalize_addr
from .dispatcher import Dispatcher
from .reload import ReloadPlan, diff

__all__ = ["Supervisor", "WorkerMain", "assign_workers", "Backoff", "PID_FILE", "CONTROL_SOCKET",
           "ReloadError"]

WorkerMain = Callable[..., None]

PID_FILE = "rserver.pid"
CONTROL_SOCKET = SOCKET_NAME    # run_dir/rserver.sock (docs/control.md)
SHUTDOWN_TIMEOUT = 5.0          # seconds to wait for ShutdownDone from every worker
REAP_TIMEOUT = 5.0              # seconds to wait for a killed child to be reaped
RETIRE_TIMEOUT = 10.0           # seconds a worker left without neighbors (reload) gets to exit
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
BACKOFF_STABLE = 60.0           # a worker that ran this long resets its back-off


def assign_workers(neighbors: tuple[NeighborConfig, ...] | list[NeighborConfig],
                   session_workers: int) -> list[list[NeighborConfig]]:
    """Spread neighbors over worker processes: one each by default (``session_workers`` 0),
    else at most ``session_workers`` processes, round-robin in config order."""
    neighbors = list(neighbors)
    if not neighbors:
        return []
    if session_workers <= 0 or session_workers >= len(neighbors):
        return [[n] for n in neighbors]
    groups: list[list[NeighborConfig]] = [[] for _ in range(session_workers)]
    for i, n in enumerate(neighbors):
        groups[i % session_workers].append(n)
    return groups


class Backoff:
    """Restart delay: 1 s doubling to 60 s; reset once a worker has run for 60 s."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX,
                 stable: float = BACKOFF_STABLE):
        self.initial = initial
        self.maximum = maximum
        self.stable = stable
        self._next = initial

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.stable:
            self._next = self.initial
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay


class ReloadError(Exception):
    """A reload that was refused; nothing of the new configuration was applied."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code            # "config-error", "reload-refused", "shutting-down"
        self.message = message


class _Worker:
    """The supervisor's view of one worker process slot."""

    def __init__(self, index: int, neighbors: list[NeighborConfig]):
        self.index = index
        self.neighbors = neighbors
        self.pid: Optional[int] = None
        self.chan: Optional[socket.socket] = None
        self.started_at = 0.0
        self.backoff = Backoff()
        self.restart_handle: Optional[asyncio.TimerHandle] = None
        self.shutdown_done = False
        self.restarts = 0
        self.retiring = False                        # reload left it no neighbor: stopping for good
        self.removed: set[str] = set()               # neighbors removed from it by a reload

    @property
    def addresses(self) -> list[str]:
        return [n.address for n in self.neighbors]

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def close_chan(self) -> None:
        if self.chan is not None:
            self.chan.close()
            self.chan = None


def _default_worker_main() -> WorkerMain:
    from ..session.worker import worker_main  # imported before any fork: shared pages
    return worker_main


def _default_rib_main() -> Callable[..., None]:
    from ..rib.process import rib_main        # imported before any fork: shared pages
    return rib_main


class _RibSlot:
    """The supervisor's view of the RIB process."""

    def __init__(self, endpoint: str, backoff: Backoff, curve_server: Any = None, curve_client: Any = None):
        self.endpoint = endpoint
        # tcp:// bus ([bus] in the config): the RIB's CurveServer, and the CurveClient the
        # control socket's RIB client connects with (None for ipc://)
        self.curve_server = curve_server
        self.curve_client = curve_client
        self.pid: Optional[int] = None
        self.started_at = 0.0
        self.backoff = backoff
        self.restart_handle: Optional[asyncio.TimerHandle] = None
        self.restarts = 0




def _rib_slot(config: Config, backoff: Backoff) -> _RibSlot:
    """The RIB's endpoint and CURVE settings from [bus] (config.py; docs/rib.md "Bus")."""
    from ..bus.transport import CurveClient, CurveServer
    bus = config.bus
    endpoint = bus.endpoint_for(config.global_.run_dir)
    if not bus.curve:
        return _RibSlot(endpoint, backoff)
    return _RibSlot(endpoint, backoff,
                    curve_server=CurveServer(bus.server_public, bus.server_secret, {bus.client_public}),
                    curve_client=CurveClient(bus.client_public, bus.client_secret, bus.server_public))


class Supervisor:
    """Runs rserver's processes for one configuration; ``run()`` blocks until a signal."""

    def __init__(self, config: Config, worker_main: Optional[WorkerMain] = None,
                 log_format: Optional[str] = None, log_level: Optional[str] = None,
                 log: Optional[Log] = None, shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 backoff: Callable[[], Backoff] = Backoff, rib: bool = True,
                 rib_main: Optional[Callable[..., None]] = None):
        self.config = config
        self._worker_main = worker_main
        self._rib_main = rib_main
        self.log_format = log_format or config.global_.log_format
        self.log_level = log_level or config.global_.log_level
        self.log = log or get_logger("supervisor")
        self.shutdown_timeout = shutdown_timeout
        self.run_dir = Path(config.global_.run_dir)
        self.pid_file = self.run_dir / PID_FILE
        self.control_path = self.run_dir / CONTROL_SOCKET
        self.control: Optional[ControlServer] = None
        self.workers = [_Worker(i, ns) for i, ns in enumerate(
            assign_workers(config.neighbors, config.global_.session_workers))]
        self._backoff = backoff
        for w in self.workers:
            w.backoff = backoff()
        self._owner: dict[str, _Worker] = {n.address: w for w in self.workers for n in w.neighbors}
        # peer ids on the RIB bus: config order, from 1; a neighbor added by a reload gets the
        # next unused one (a removed neighbor's id is never reused)
        self.peer_ids: dict[str, int] = {n.address: i + 1 for i, n in enumerate(config.neighbors)}
        self._next_peer_id = len(config.neighbors) + 1
        self._next_worker_index = len(self.workers)
        # a --log-format / --log-level given on the command line wins over the file on reload
        self._log_format_fixed = log_format is not None
        self._log_level_fixed = log_level is not None
        self.rib: Optional[_RibSlot] = _rib_slot(config, backoff()) if rib else None
        self.dispatcher = Dispatcher([(a, config.global_.port) for a in config.global_.listen],
                                     self._route)
        self.peer_state: dict[str, PeerEvent] = {}      # latest PeerEvent per neighbor
        self._status_waiters: dict[int, tuple[asyncio.Future, set[int], list[dict]]] = {}
        self._request_ids = 0
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._stop_reason = ""
        self._shutting_down = False
        self._own_files: list[Path] = []
        self._created_run_dir = False
        self._pid_fd: Optional[int] = None

    # --- public -------------------------------------------------------------------------

    def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT, stop everything; the exit status."""
        if self._worker_main is None:
            self._worker_main = _default_worker_main()
        if self.rib is not None and self._rib_main is None:
            self._rib_main = _default_rib_main()
        return asyncio.run(self._main())

    def request_stop(self, reason: str = "route server shutting down") -> None:
        if self._stop is not None and not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def admin(self, address: str, op: str, reason: str = "") -> bool:
        """Send PeerAdmin to the worker owning ``address``; False if it is not running."""
        w = self._owner.get(normalize_addr(address))
        if w is None or w.chan is None or self._shutting_down:
            return False
        return self._send(w, PeerAdmin(address=address, op=op, reason=reason))

    def rib_pid(self) -> Optional[int]:
        return self.rib.pid if self.rib is not None else None

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid is not None]

    async def status(self, address: Optional[str] = None, timeout: float = 2.0) -> list[dict]:
        """Ask the workers for the status of one neighbor or all (for the control socket)."""
        loop = asyncio.get_running_loop()
        self._request_ids += 1
        rid = self._request_ids
        targets = [w for w in self.workers if w.chan is not None
                   and (address is None or address in w.addresses)]
        fut: asyncio.Future = loop.create_future()
        pending = {w.index for w in targets}
        peers: list[dict] = []
        if not pending:
            return peers
        self._status_waiters[rid] = (fut, pending, peers)
        for w in targets:
            self._send(w, StatusRequest(request_id=rid, address=address))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._status_waiters.pop(rid, None)
        return peers

    # --- reload -------------------------------------------------------------------------

    def reload(self) -> dict:
        """Re-read the configuration file the server was started with and apply the
        difference (rserver/supervisor/reload.py, docs/control.md "reload"). Returns the
        reply data; raises ReloadError (and applies nothing) for a file that does not
        validate, a setting that cannot change while running, or a listener that cannot be
        bound."""
        if self._shutting_down:
            raise ReloadError("shutting-down", "the route server is shutting down")
        source = self.config.source
        try:
            new = load(source)
        except ConfigError as e:
            raise ReloadError("config-error", str(e)) from None
        plan = diff(self.config, new)
        if not plan.ok:
            raise ReloadError("reload-refused", "; ".join(plan.refusals))
        self._rebind(plan)                               # may refuse: nothing applied yet
        old = self.config
        self.config = new
        self._apply_logging(new)
        for n in plan.removed:
            self._remove_neighbor(n)
        for n in old.neighbors:                          # keys changed / added / removed
            if n.md5_password and new.neighbor(n.address) is None:
                self.dispatcher.set_md5(n.address, "")
        for c in plan.changed:
            if c.old.md5_password != c.new.md5_password:
                self.dispatcher.set_md5(c.address, c.new.md5_password)
        for n in plan.added:
            if n.md5_password:
                self.dispatcher.set_md5(n.address, n.md5_password)
        if plan.reset_all:
            for n in new.neighbors:
                if n.address in self._owner:
                    self._readd_neighbor(n)
        else:
            for c in plan.changed:
                self._change_neighbor(c)
            for n in plan.unchanged:                     # equal values; keep the new objects
                self._replace_config(n)
        for n in plan.added:
            self._add_neighbor(n)
        result = self._reload_result(plan, new)
        for a in result["added"]:
            self.log.info("reload: neighbor added", neighbor=a, peer_id=self.peer_ids.get(a),
                          worker=self._owner[a].index if a in self._owner else None)
        for a in result["removed"]:
            self.log.info("reload: neighbor removed (Cease 6/3 peer de-configured)", neighbor=a)
        for a in result["reset"]:
            fields = next((c["fields"] for c in result["changed"] if c["neighbor"] == a), None)
            self.log.info("reload: session reset (Cease 6/6 other configuration change)", neighbor=a,
                          fields=",".join(fields or result["global"]["changed"]))
        for c in result["changed"]:
            if not c["reset"]:
                self.log.info("reload: neighbor settings changed without a reset", neighbor=c["neighbor"],
                              fields=",".join(c["fields"]), admin=c["admin"])
        g = result["global"]
        self.log.info(f"configuration reloaded: {len(result['added'])} added, {len(result['removed'])} removed, "
                      f"{len(result['reset'])} reset, {len(result['changed'])} changed, "
                      f"{result['unchanged']} unchanged", config=source,
                      global_changed=",".join(g["changed"]) or None,
                      listeners_opened=",".join(g["listeners_opened"]) or None,
                      listeners_closed=",".join(g["listeners_closed"]) or None)
        return result

    def _sighup(self) -> None:
        self.log.info("SIGHUP received: reloading the configuration", config=self.config.source)
        try:
            self.reload()
        except ReloadError as e:
            self.log.error(f"reload refused: {e.message}", code=e.code, config=self.config.source)
        except Exception:                                # noqa: BLE001 - never die of a reload
            self.log.exception("reload failed")

    @staticmethod
    def _fmt_listener(addr: str, port: int) -> str:
        return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

    def _rebind(self, plan: ReloadPlan) -> None:
        opened: list[tuple[str, int]] = []
        for addr, port in plan.listen_added:
            try:
                self.dispatcher.add_listener(addr, port)
            except OSError as e:
                for a, p in opened:
                    self.dispatcher.remove_listener(a, p)
                raise ReloadError("reload-refused", f"global.listen: cannot listen on "
                                  f"{self._fmt_listener(addr, port)}: {e.strerror or e}") from None
            opened.append((addr, port))
        for addr, port in plan.listen_removed:
            self.dispatcher.remove_listener(addr, port)

    def _apply_logging(self, new: Config) -> None:
        fmt = self.log_format if self._log_format_fixed else new.global_.log_format
        level = self.log_level if self._log_level_fixed else new.global_.log_level
        if (fmt, level) == (self.log_format, self.log_level):
            return
        import logging
        from ..log import ROOT, configure
        root = logging.getLogger(ROOT)
        h = next((h for h in root.handlers if getattr(h, "_rserver", False)), None)
        if fmt != self.log_format and isinstance(h, logging.StreamHandler):
            configure(fmt, level, stream=h.stream)
        else:                                            # level only: keep the handler
            root.setLevel(logging.getLevelName(level.upper()))
        self.log.info("log settings changed (the supervisor now; workers and the RIB process "
                      "when next started)", log_format=fmt, log_level=level)
        self.log_format, self.log_level = fmt, level

    def _endpoint(self) -> str:
        return self.rib.endpoint if self.rib is not None else ""

    def _bus_curve(self) -> Optional[tuple[bytes, bytes, bytes]]:
        c = self.rib.curve_client if self.rib is not None else None
        return (c.public_key, c.secret_key, c.server_key) if c is not None else None

    def _peer_add(self, w: _Worker, n: NeighborConfig) -> None:
        endpoint = self._endpoint()
        self._send(w, PeerAdd(neighbor=n, global_=self.config.global_,
                              peer_id=self.peer_ids.get(n.address, 0) if endpoint else 0,
                              rib_endpoint=endpoint, worker_index=w.index,
                              bus_curve=self._bus_curve() if endpoint else None))

    def _replace_config(self, n: NeighborConfig) -> Optional[_Worker]:
        w = self._owner.get(n.address)
        if w is not None:
            w.neighbors = [n if x.address == n.address else x for x in w.neighbors]
        return w

    def _remove_neighbor(self, n: NeighborConfig) -> None:
        w = self._owner.pop(n.address, None)
        self.peer_ids.pop(n.address, None)
        self.peer_state.pop(n.address, None)
        if w is None:
            return
        w.neighbors = [x for x in w.neighbors if x.address != n.address]
        w.removed.add(n.address)
        self._send(w, PeerRemove(address=n.address, subcode=CEASE_PEER_DECONFIGURED,
                                 reason="peer de-configured"))
        if w.neighbors:
            return
        w.retiring = True                                # no neighbor left: stop it for good
        if w.restart_handle is not None:
            w.restart_handle.cancel()
            w.restart_handle = None
        if w.pid is None:
            if w in self.workers:
                self.workers.remove(w)
            return
        self._send(w, Shutdown(reason="no neighbor left (configuration reload)"))
        self.log.info("stopping worker: no neighbor left", worker=w.index, pid=w.pid)
        pid = w.pid

        def backstop() -> None:                          # it did not exit in time
            if w.pid == pid and not self._shutting_down:
                self.log.warning("retired worker did not stop in time, killing it", worker=w.index, pid=pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._loop.call_later(RETIRE_TIMEOUT, backstop)

    def _change_neighbor(self, c) -> None:
        w = self._replace_config(c.new)
        if w is None:
            return
        if c.admin == "down":                            # Cease 6/2, and it stays down
            self._send(w, PeerAdmin(address=c.address, op="down", reason="disabled in the configuration"))
        self._send(w, PeerChange(neighbor=c.new, reset=c.reset))
        if c.admin == "up" and not c.reset:              # a reset starts it with the new settings
            self._send(w, PeerAdmin(address=c.address, op="up"))

    def _readd_neighbor(self, n: NeighborConfig) -> None:
        """local_as / router_id changed: the running session belongs to the old global
        settings; stop it (Cease 6/6) and start the neighbor afresh with the new ones, same
        peer id and worker."""
        w = self._replace_config(n)
        if w is None:
            return
        self._send(w, PeerRemove(address=n.address, subcode=CEASE_CONFIG_CHANGE,
                                 reason="other configuration change"))
        self._peer_add(w, n)

    def _add_neighbor(self, n: NeighborConfig) -> None:
        self.peer_ids[n.address] = self._next_peer_id
        self._next_peer_id += 1
        live = [w for w in self.workers if not w.retiring]
        cap = self.config.global_.session_workers
        if cap > 0 and len(live) >= cap:
            w = min(live, key=lambda x: (len(x.neighbors), x.index))     # the least loaded
            w.neighbors.append(n)
            self._owner[n.address] = w
            self._peer_add(w, n)                         # (a restarting worker gets it at start)
            return
        w = _Worker(self._next_worker_index, [n])
        self._next_worker_index += 1
        w.backoff = self._backoff()
        self.workers.append(w)
        self._owner[n.address] = w
        self._start_worker(w)

    def _reload_result(self, plan: ReloadPlan, new: Config) -> dict:
        return {
            "config": new.source,
            "added": [n.address for n in plan.added],
            "removed": [n.address for n in plan.removed],
            "reset": list(plan.reset),
            "changed": [{"neighbor": c.address, "name": c.new.name, "fields": list(c.fields),
                         "reset": c.reset or plan.reset_all, "admin": c.admin} for c in plan.changed],
            "unchanged": len(plan.unchanged),
            "global": {
                "changed": list(plan.global_changed),
                "listeners_opened": [self._fmt_listener(a, p) for a, p in plan.listen_added],
                "listeners_closed": [self._fmt_listener(a, p) for a, p in plan.listen_removed],
                "log_format": self.log_format, "log_level": self.log_level,
            },
        }

    # --- main ---------------------------------------------------------------------------

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        try:
            self._write_pid_file()
        except (OSError, RuntimeError) as e:
            self.log.error(f"cannot start: {e}")
            return 1
        try:
            self.dispatcher.bind()
        except OSError as e:
            self.log.error(f"cannot listen: {e}",
                           listen_address=",".join(f"{a}:{self.config.global_.port}"
                                                   for a in self.config.global_.listen))
            self._remove_files()
            return 1
        for n in self.config.neighbors:
            if n.md5_password:
                self.dispatcher.set_md5(n.address, n.md5_password)
        self.control = ControlServer(self, self.control_path, log=get_logger("control"))
        try:
            await self.control.start()
        except OSError as e:
            self.log.error(f"cannot create the control socket {self.control_path}: {e}")
            self.control = None
            self.dispatcher.close()
            self._remove_files()
            return 1
        self.register_run_file(self.control_path)

        for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
            loop.add_signal_handler(sig, self.request_stop, f"route server shutting down ({name})")
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)     # reload the configuration

        self.log.info("supervisor started", pid=os.getpid(), config=self.config.source,
                      neighbors=len(self.config.neighbors), workers=len(self.workers))
        if self.rib is not None:
            if self.rib.endpoint.startswith("ipc://"):
                self.register_run_file(Path(self.rib.endpoint[len("ipc://"):]))
            self._start_rib()
        for w in self.workers:
            self._start_worker(w)
        serve = loop.create_task(self.dispatcher.serve())
        poll = loop.create_task(self._poll_children())
        try:
            await self._stop.wait()
        finally:
            self._shutting_down = True
            serve.cancel()
            poll.cancel()
            for t in (serve, poll):
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            self.log.info(f"shutting down: {self._stop_reason or 'stop requested'}")
            await self._shutdown_workers(self._stop_reason or "route server shutting down")
            await self._stop_rib()                       # last: the workers' final batches land
            if self.control is not None:                 # after the workers: monitors see them go
                await self.control.close()
            self.dispatcher.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self._remove_files()
            self.log.info("supervisor stopped", pid=os.getpid())
        return 0

    # --- workers ------------------------------------------------------------------------

    def _start_worker(self, w: _Worker) -> None:
        w.restart_handle = None
        if self._shutting_down:
            return
        sup_end, wrk_end = channel.channel_pair()
        pid = self._fork_child(lambda: self._child_setup(w, sup_end),
                               lambda: self._worker_main(wrk_end, log_format=self.log_format,
                                                         log_level=self.log_level))
        wrk_end.close()
        sup_end.setblocking(False)
        w.pid = pid
        w.chan = sup_end
        w.started_at = time.monotonic()
        w.shutdown_done = False
        self._loop.add_reader(sup_end.fileno(), self._on_readable, w)
        self.log.info("worker started", worker=w.index, pid=pid, peers=",".join(w.addresses))
        for n in w.neighbors:
            self._peer_add(w, n)

    def _fork_child(self, setup: Callable[[], None], body: Callable[[], None]) -> int:
        """Fork; in the child run ``setup`` then ``body`` and exit with 0, or 1 after printing
        the traceback. The child never returns into the supervisor's code (``os._exit``).
        Returns the child's pid in the parent."""
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid != 0:
            return pid
        code = 0
        try:
            setup()
            body()
        except BaseException:                            # noqa: BLE001 - report, then exit
            code = 1
            try:
                import traceback
                traceback.print_exc()
            except BaseException:                         # noqa: BLE001
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:                         # noqa: BLE001
                pass
            os._exit(code)

    # --- the RIB process --------------------------------------------------------------------

    def _start_rib(self) -> None:
        rib = self.rib
        assert rib is not None
        rib.restart_handle = None
        if self._shutting_down:
            return
        pid = self._fork_child(lambda: self._child_setup(None, None, comm="rserver-rib"),
                               lambda: self._rib_main(rib.endpoint, log_format=self.log_format,
                                                      log_level=self.log_level,
                                                      **({"curve": rib.curve_server} if rib.curve_server else {})))
        rib.pid = pid
        rib.started_at = time.monotonic()
        self.log.info("rib process started", pid=pid, endpoint=rib.endpoint)
        if rib.restarts:
            for w in self.workers:                       # they re-announce and re-fetch
                if w.chan is not None:
                    self._send(w, RibRestarted(rib_endpoint=rib.endpoint))

    def _rib_exited(self, status: int) -> None:
        rib = self.rib
        assert rib is not None
        pid = rib.pid
        rib.pid = None
        ran = time.monotonic() - rib.started_at
        code = os.waitstatus_to_exitcode(status) if status else 0
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        if self._shutting_down:
            self.log.debug(f"rib process exited ({how})", pid=pid)
            return
        delay = rib.backoff.next_delay(ran)
        rib.restarts += 1
        self.log.warning(f"rib process exited ({how}) after {ran:.1f}s, restarting in {delay:g}s",
                         pid=pid, restart_in=delay)
        rib.restart_handle = self._loop.call_later(delay, self._start_rib)

    async def _stop_rib(self) -> None:
        rib = self.rib
        if rib is None:
            return
        if rib.restart_handle is not None:
            rib.restart_handle.cancel()
            rib.restart_handle = None
        if rib.pid is None:
            return
        try:
            os.kill(rib.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        end = time.monotonic() + self.shutdown_timeout
        killed = False
        while rib.pid is not None:
            try:
                pid, status = os.waitpid(rib.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = rib.pid, 0
            if pid:
                self._rib_exited(status)
                break
            if time.monotonic() > end:
                if killed:
                    self.log.error("rib process could not be reaped", pid=rib.pid)
                    rib.pid = None
                    break
                self.log.warning("rib process did not stop in time, killing it", pid=rib.pid)
                try:
                    os.kill(rib.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                killed = True
                end = time.monotonic() + REAP_TIMEOUT
            await asyncio.sleep(0.02)

    def _child_setup(self, me: Optional[_Worker], my_sup_end: Optional[socket.socket],
                     comm: Optional[str] = None) -> None:
        """In a freshly forked worker (or the RIB process: ``me`` None): drop everything that
        belongs to the supervisor."""
        signal.set_wakeup_fd(-1)
        try:                                             # "rserver-w3" in ps/top (comm)
            with open("/proc/self/comm", "w") as f:
                f.write(comm or f"rserver-w{me.index}")
        except OSError:
            pass
        # a terminal's Ctrl-C (SIGINT) and SIGHUP reach the whole process group: the workers
        # ignore them and stop when the supervisor says so (Shutdown)
        for sig in (signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for sig in (signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if my_sup_end is not None:
            my_sup_end.close()
        if self._pid_fd is not None:                     # the lock belongs to the supervisor
            os.close(self._pid_fd)
            self._pid_fd = None
        for s in self.dispatcher.sockets:
            s.close()
        if self.control is not None:
            self.control.close_in_child()
        for w in self.workers:
            if w is not me:
                w.close_chan()
        loop = self._loop
        # the parent loop's self-pipe is shared with the parent; never write to it from here
        for attr in ("_ssock", "_csock"):
            s = getattr(loop, attr, None)
            if isinstance(s, socket.socket):
                s.close()
        sel = getattr(loop, "_selector", None)
        ep = getattr(sel, "_selector", None)
        if ep is not None and hasattr(ep, "close"):
            ep.close()                       # the child's copy of the parent's epoll fd
        asyncio.set_event_loop(None)

    def _send(self, w: _Worker, msg: Any, fds: list[int] | tuple[int, ...] = ()) -> bool:
        if w.chan is None:
            return False
        try:
            channel.send(w.chan, msg, fds)
            return True
        except BlockingIOError:
            w.chan.settimeout(2.0)
            try:
                channel.send(w.chan, msg, fds)
                return True
            except OSError as e:
                self.log.error(f"worker channel full, message dropped: {e}", worker=w.index, pid=w.pid)
            finally:
                if w.chan is not None:
                    w.chan.setblocking(False)
        except OSError as e:
            self.log.warning(f"cannot reach worker: {e}", worker=w.index, pid=w.pid)
        return False

    def _on_readable(self, w: _Worker, draining: bool = False) -> None:
        chan = w.chan
        while chan is not None and chan is w.chan:
            try:
                got = channel.recv(chan, channel.to_supervisor_decoder)
            except BlockingIOError:
                return
            except channel.ChannelError as e:
                self.log.error(str(e), worker=w.index, pid=w.pid)
                continue
            except OSError as e:
                self.log.warning(f"worker channel error: {e}", worker=w.index, pid=w.pid)
                got = None
            if got is None:                              # the worker closed its end
                self._loop.remove_reader(chan.fileno())
                w.close_chan()
                if not draining:
                    self._reap()
                return
            msg, sock = got
            if sock is not None:                         # workers never send descriptors
                sock.close()
            self._handle(w, msg)

    def _handle(self, w: _Worker, msg: Any) -> None:
        if isinstance(msg, PeerEvent):
            if msg.address in w.removed and msg.address not in w.addresses:
                self.log.debug(f"removed peer {msg.old_state} -> {msg.new_state}", neighbor=msg.address,
                               reason=msg.reason or None, worker=w.index)
                return
            if msg.address not in w.addresses:
                self.log.warning("peer event for a peer this worker does not own, dropped",
                                 worker=w.index, neighbor=msg.address)
                return
            self.peer_state[msg.address] = msg
            if self.control is not None:
                self.control.publish(msg)
            self.log.info(f"peer {msg.old_state} -> {msg.new_state}", neighbor=msg.address,
                          neighbor_name=msg.name, fsm_state=msg.new_state, reason=msg.reason or None,
                          worker=w.index)
        elif isinstance(msg, WorkerReady):
            self.log.debug("worker ready", worker=w.index, pid=msg.pid, peers=",".join(msg.peers))
        elif isinstance(msg, PeerStatusReply):
            waiter = self._status_waiters.get(msg.request_id)
            if waiter is None:
                return
            fut, pending, peers = waiter
            peers.extend(msg.peers)
            pending.discard(w.index)
            if not pending and not fut.done():
                fut.set_result(None)
        elif isinstance(msg, ShutdownDone):
            w.shutdown_done = True
            self.log.debug("worker shutdown done", worker=w.index, pid=msg.pid)
        else:
            self.log.warning(f"unexpected message {type(msg).__name__} from worker, dropped",
                             worker=w.index, pid=w.pid)

    def _route(self, addr: str) -> Optional[Callable[[socket.socket, Connection], None]]:
        w = self._owner.get(normalize_addr(addr))
        if w is None:
            return None

        def hand_over(conn: socket.socket, info: Connection) -> None:
            if w.chan is None or self._shutting_down:
                raise OSError(errno.EAGAIN, "the owning worker is not running (restarting)")
            if not self._send(w, info, [conn.fileno()]):
                raise OSError(errno.EPIPE, "the owning worker did not take the connection")
        return hand_over

    def _reap(self) -> None:
        """Collect every exited worker (SIGCHLD, channel EOF or the periodic poll) and the RIB."""
        rib = self.rib
        if rib is not None and rib.pid is not None:
            try:
                pid, status = os.waitpid(rib.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = rib.pid, 0
            if pid:
                self._rib_exited(status)
        for w in list(self.workers):
            if w.pid is None:
                continue
            try:
                pid, status = os.waitpid(w.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = w.pid, 0
            if pid == 0:
                continue
            self._worker_exited(w, status)

    def _worker_exited(self, w: _Worker, status: int) -> None:
        pid = w.pid
        w.pid = None
        if w.chan is not None:
            self._on_readable(w, draining=True)         # what it sent before it went
        if w.chan is not None:
            try:
                self._loop.remove_reader(w.chan.fileno())
            except (ValueError, OSError):
                pass
            w.close_chan()
        ran = time.monotonic() - w.started_at
        code = os.waitstatus_to_exitcode(status) if status else 0
        how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        for a in w.addresses:
            ev = self.peer_state.get(a)
            if ev is not None and ev.new_state.lower() != "idle":
                self.peer_state[a] = PeerEvent(address=a, name=ev.name, old_state=ev.new_state,
                                               new_state="idle", reason="worker exited",
                                               time=time.time())
                if self.control is not None:
                    self.control.publish(self.peer_state[a])
        if self._shutting_down:
            self.log.debug(f"worker exited ({how})", worker=w.index, pid=pid)
            return
        if w.retiring:                                   # a reload left it no neighbor
            self.log.info(f"worker stopped ({how}): no neighbor left", worker=w.index, pid=pid)
            if w in self.workers:
                self.workers.remove(w)
            return
        delay = w.backoff.next_delay(ran)
        w.restarts += 1
        self.log.warning(f"worker exited ({how}) after {ran:.1f}s, restarting in {delay:g}s",
                         worker=w.index, pid=pid, peers=",".join(w.addresses), restart_in=delay)
        w.restart_handle = self._loop.call_later(delay, self._start_worker, w)

    async def _poll_children(self) -> None:
        # a backstop for a missed SIGCHLD (they coalesce)
        while True:
            await asyncio.sleep(1.0)
            self._reap()

    # --- shutdown -----------------------------------------------------------------------

    async def _shutdown_workers(self, reason: str) -> None:
        for w in self.workers:
            if w.restart_handle is not None:
                w.restart_handle.cancel()
                w.restart_handle = None
        live = [w for w in self.workers if w.pid is not None]
        for w in live:
            self._send(w, Shutdown(reason=reason))
        # each worker sends ShutdownDone and exits; wait (bounded) for every one to exit
        deadline = time.monotonic() + self.shutdown_timeout
        while time.monotonic() < deadline and any(w.pid is not None for w in live):
            self._reap()
            await asyncio.sleep(0.05)
        for w in self.workers:
            if w.pid is not None:
                self.log.warning("worker did not stop in time, killing it", worker=w.index, pid=w.pid)
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for w in self.workers:
            if w.pid is None:
                continue
            end = time.monotonic() + REAP_TIMEOUT
            while w.pid is not None:
                try:
                    pid, status = os.waitpid(w.pid, os.WNOHANG)
                except ChildProcessError:
                    pid, status = w.pid, 0
                if pid:
                    self._worker_exited(w, status)
                    break
                if time.monotonic() > end:
                    self.log.error("worker could not be reaped", worker=w.index, pid=w.pid)
                    w.pid = None
                    break
                await asyncio.sleep(0.02)
            w.close_chan()
        for w in self.workers:
            if w.chan is not None:
                try:
                    self._loop.remove_reader(w.chan.fileno())
                except (ValueError, OSError):
                    pass
                w.close_chan()

    # --- run directory ------------------------------------------------------------------

    def _write_pid_file(self) -> None:
        """Create run_dir/rserver.pid and hold an exclusive lock on it for our lifetime: a
        second rserver on the same run directory is refused; a file left by a dead one (no
        lock holder) is simply taken over."""
        if not self.run_dir.exists():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._created_run_dir = True
        fd = os.open(self.pid_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            self._created_run_dir = False
            raise RuntimeError(f"{self.pid_file}: rserver is already running as PID {other}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._pid_fd = fd
        self._own_files.append(self.pid_file)

    def register_run_file(self, path: Path) -> None:
        """A socket or other file in the run directory to remove at shutdown."""
        self._own_files.append(Path(path))

    def _remove_files(self) -> None:
        for p in self._own_files:
            try:
                if p == self.pid_file:
                    if p.read_text().strip() != str(os.getpid()):
                        continue                         # not ours any more
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                self.log.warning(f"cannot remove {p}: {e}")
        self._own_files = []
        if self._pid_fd is not None:
            os.close(self._pid_fd)                       # releases the lock
            self._pid_fd = None
        if self._created_run_dir:
            try:
                self.run_dir.rmdir()                     # only if empty
            except OSError:
                pass

