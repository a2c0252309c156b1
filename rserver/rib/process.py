"""The RIB process, first increment: routes in, Adj-RIB-In per peer, max-prefix (docs/rib-process.md).

The supervisor forks it before the session workers; :func:`rib_main` runs an asyncio loop
around one :class:`~rserver.bus.transport.RibBus` (``ipc://RUN_DIR/rib.sock``):

* ``SessionUp``: the peer is registered (address, AS, BGP id, families, max-prefix limits);
* ``RouteBatch`` (a ``BatchView``): ``AttrTable.intern_batch`` once, ``AdjRibIn.apply`` for
  the v4 and v6 columns of the peer, End-of-RIB sweeps stale routes of that family, then
  ``attrs.collect()`` once per batch; per-prefix work stays in the Cython tables;
* max-prefix: after each apply, ``count_prefixes()`` above the family's limit sends
  ``MaxPrefixExceeded`` to the owning worker once per crossing (re-armed when the count
  falls back to the limit); crossing ``warn_percent`` of the limit logs a warning once;
* ``SessionDown``: the peer's tables are cleared, or with ``graceful`` marked stale and
  swept at End-of-RIB of the new session or after the restart time (RFC 4724 helper);
* a new epoch of a peer's route stream: a restarted worker (not a resync) supersedes what
  the old epoch brought (cleared, unless the peer is in graceful restart); a resync marks
  the peer's routes stale until End-of-RIB;
* a batch for a peer the RIB does not know (this RIB was restarted) is answered with
  ``Resync(peer_id)``: the worker re-announces the session and re-fetches the routes;
* ``RibStatusRequest``: answered with ``RibPeerStatus`` (the per-peer ``stats`` dict).

Nothing a worker sends can crash it: every handler is guarded, bad input is logged and dropped.
"""
from __future__ import annotations

import asyncio
import ipaddress
import signal
import time
from typing import Any, Optional

from ..bus.messages import (
    ClientReset, MaxPrefixExceeded, Resync, RibPeerStatus, RibQuery, RibStatusRequest, RouteRefreshRequest,
    SessionDown, SessionUp, Xoff, Xon,
)
from ..bus.transport import BatchView, RibBus
from ..config import MaxPrefix
from ..log import configure, get_logger
from ..memtune import start_trimmer, tune_malloc
from .tables_py import CHG4_SIZE, CHG6_SIZE

from .export import Exporter

try:                                    # the compiled tables; the reference only if not built
    from ._tables import AdjRibIn, AttrTable, LocRib
except ImportError:                     # pragma: no cover - setup.sh fails without the build
    from .tables_py import AdjRibIn, AttrTable
    from .locrib_py import LocRib

try:
    from .query import PrefixIndex, answer_query
except ImportError:                     # pragma: no cover - show rib not built yet
    PrefixIndex = None
    answer_query = None

__all__ = ["rib_main", "RibProcess", "RibPeer", "AFI_NAMES", "DEFAULT_STALE_TIME"]

AFI_NAMES = {1: "ipv4", 2: "ipv6"}
DEFAULT_STALE_TIME = 120.0      # seconds stale routes of a resynced stream wait for End-of-RIB


class RibPeer:
    """What the RIB keeps about one peer."""

    def __init__(self, up: SessionUp, identity: bytes, attrs: Any):
        self.peer_id = up.peer_id
        self.identity = identity
        self.tables = {1: AdjRibIn(1, attrs), 2: AdjRibIn(2, attrs)}
        self.exceeded = {1: False, 2: False}
        self.warned = {1: False, 2: False}
        self.stale_handle: Optional[asyncio.TimerHandle] = None
        self.gr_pending = False         # down gracefully: routes kept stale until EoR / timeout
        self.batches = 0
        self.updates = 0
        self.sessions = 0
        self.update_info(up)

    def update_info(self, up: SessionUp) -> None:
        self.up = True
        self.address = up.address
        self.name = up.name
        self.asn = up.asn
        self.bgp_id = up.bgp_id
        self.families = [tuple(f) for f in up.families]
        self.gr_restart_time = up.gr_restart_time
        self.route_refresh = up.route_refresh
        self.max_prefix: Optional[MaxPrefix] = up.max_prefix
        self.exceeded = {1: False, 2: False}
        self.warned = {1: False, 2: False}
        self.sessions += 1

    def limit(self, afi: int) -> Optional[int]:
        mp = self.max_prefix
        if mp is None:
            return None
        return mp.ipv4 if afi == 1 else mp.ipv6

    def stats(self) -> dict:
        t4, t6 = self.tables[1], self.tables[2]
        return {
            "peer_id": self.peer_id, "address": self.address, "asn": self.asn, "up": self.up,
            "prefixes": {"ipv4": t4.count_prefixes(), "ipv6": t6.count_prefixes()},
            "paths": {"ipv4": len(t4), "ipv6": len(t6)},
            "stale": {"ipv4": t4.stale_count(), "ipv6": t6.stale_count()},
            "batches": self.batches, "updates": self.updates, "sessions": self.sessions,
            "max_prefix": None if self.max_prefix is None else {
                "ipv4": self.max_prefix.ipv4, "ipv6": self.max_prefix.ipv6,
                "action": self.max_prefix.action, "warn_percent": self.max_prefix.warn_percent},
            "max_prefix_exceeded": [AFI_NAMES[a] for a, x in self.exceeded.items() if x],
            "graceful_restart_pending": self.gr_pending,
        }


class RibProcess:
    """The RIB's state and message handlers (no I/O of its own besides the bus)."""

    route_events: Any = None        # query.RouteEventSource while route subscriptions exist

    def __init__(self, endpoint: str, *, stale_time: float = DEFAULT_STALE_TIME, **bus_kw: Any):
        self.log = get_logger("rib")
        self.attrs = AttrTable()
        self.locrib = {1: LocRib(1, self.attrs), 2: LocRib(2, self.attrs)}
        self.index = PrefixIndex() if PrefixIndex is not None else None
        self.peers: dict[int, RibPeer] = {}
        self.stale_time = stale_time
        self.batches = 0
        self.dropped = 0
        self.started = time.time()
        self.bus = RibBus(endpoint, on_batch=self._guard(self.on_batch), on_message=self._guard(self.on_message),
                          on_stream=self._guard(self.on_stream),
                          on_export_paused=self._guard(self._export_paused), **bus_kw)
        self.endpoint = self.bus.endpoint
        self.exporter = Exporter(self.attrs, self.locrib, self.peers, emit=self._emit, blocked=self._blocked,
                                 reset=self._reset_client)
        self._collect_handle: Optional[asyncio.TimerHandle] = None

    # -- export plumbing
    def _emit(self, identity: bytes, peer_ids: list, afi: int, data: bytes, messages: int) -> None:
        self.bus.export(identity, peer_ids, afi, [data], messages=messages)

    def _blocked(self, identity: bytes) -> bool:
        s = self.bus.exports.get(identity)
        return s is not None and s.paused

    def _export_paused(self, identity: bytes, paused: bool) -> None:
        self.log.debug("rib: export stream " + ("paused" if paused else "resumed"),
                       worker=identity.decode("ascii", "replace"))
        self.exporter.worker_paused(identity, paused)

    def _reset_client(self, peer_id: int, reason: str) -> None:
        p = self.peers.get(peer_id)
        if p is not None:
            self.bus.send(p.identity, ClientReset(peer_id, reason))

    def _feed(self, p: "RibPeer", afi: int, chg: bytes) -> None:
        """Adj-RIB-In changes of ``p`` into the Loc-RIB, the prefix index and the exports."""
        if not chg:
            return
        out = self.locrib[afi].update(p.peer_id, chg)
        if out and self.index is not None:
            self.index.note(afi, out)
        if self.route_events is not None:       # only while a monitor --routes is subscribed
            self.route_events.note(afi, out)
        self.exporter.on_changes(afi, p.peer_id, chg, out)

    def _collect(self) -> None:
        """Free unused attribute sets, unless a client's catch-up holds a table snapshot
        (then retried shortly: ids must not be reused under it)."""
        if self.exporter.holds_ids():
            if self._collect_handle is None:
                try:
                    self._collect_handle = asyncio.get_running_loop().call_later(0.05, self._collect_later)
                except RuntimeError:
                    pass
            return
        self.attrs.collect()

    def _collect_later(self) -> None:
        self._collect_handle = None
        self._collect()

    # -- guards: a bug or bad input never stops the RIB
    def _guard(self, f):
        def g(*args):
            try:
                f(*args)
            except Exception:
                self.dropped += 1
                self.log.exception(f"rib: {f.__name__} failed, input dropped")
        return g

    def start(self) -> None:
        self.bus.start()
        self.log.info("rib started", endpoint=self.endpoint)

    async def aclose(self) -> None:
        for p in self.peers.values():
            if p.stale_handle is not None:
                p.stale_handle.cancel()
        await self.bus.aclose(timeout=0.5)

    # -- control messages
    def on_message(self, identity: bytes, msg: Any) -> None:
        kind = type(msg)
        if kind is SessionUp:
            self.session_up(identity, msg)
        elif kind is SessionDown:
            self.session_down(msg)
        elif kind is RibStatusRequest:
            p = self.peers.get(msg.peer_id)
            stats = p.stats() if p is not None else {}
            if stats:
                stats["attr_sets"] = len(self.attrs)
                stats["export"] = self.exporter.status(msg.peer_id)
            self.bus.send(identity, RibPeerStatus(msg.peer_id, msg.request_id, stats))
        elif kind is RouteRefreshRequest:
            ok = self.exporter.refresh(msg.peer_id, msg.afi)
            self.log.info("rib: route refresh requested by the client" + ("" if ok else ", not an export client"),
                          peer_id=msg.peer_id, afi=msg.afi)
        elif kind is Xoff or kind is Xon:
            self.exporter.set_xoff(msg.peer_id, kind is Xoff)
        elif kind is RibQuery:
            if answer_query is None:
                self.log.warning("rib: query received but show rib is not available")
            else:
                answer_query(self, identity, msg)
        else:
            self.dropped += 1
            self.log.warning(f"rib: unexpected {kind.__name__} dropped",
                             worker=identity.decode("ascii", "replace"))

    def session_up(self, identity: bytes, up: SessionUp) -> None:
        p = self.peers.get(up.peer_id)
        if p is None:
            p = self.peers[up.peer_id] = RibPeer(up, identity, self.attrs)
        else:
            p.identity = identity
            p.update_info(up)
        addr = ipaddress.ip_address(up.address).packed
        for afi, lr in self.locrib.items():
            try:
                lr.set_peer(up.peer_id, up.bgp_id & 0xFFFFFFFF, addr, up.peer_id)
            except ValueError:
                # the peer comes back with another BGP id while its stale routes are held:
                # they cannot be re-ranked in place, so they go now (the new session re-sends)
                self._feed(p, afi, p.tables[afi].clear())
                lr.set_peer(up.peer_id, up.bgp_id & 0xFFFFFFFF, addr, up.peer_id)
        self.exporter.client_up(up, identity)
        self.log.info("rib: session up", neighbor=up.address, peer_id=up.peer_id, peer_as=up.asn,
                      families=",".join(f"{a}/{s}" for a, s in p.families),
                      max_prefix_v4=p.limit(1), max_prefix_v6=p.limit(2),
                      stale=p.tables[1].stale_count() + p.tables[2].stale_count())

    def session_down(self, msg: SessionDown) -> None:
        p = self.peers.get(msg.peer_id)
        if p is None:
            self.log.debug("rib: session down for an unknown peer", peer_id=msg.peer_id)
            return
        p.up = False
        self.exporter.client_down(p.peer_id)
        if msg.graceful:
            n = p.tables[1].mark_stale() + p.tables[2].mark_stale()
            p.gr_pending = True
            wait = float(p.gr_restart_time or self.stale_time)
            self._arm_stale(p, wait)
            self.log.info(f"rib: session down gracefully, {n} route(s) kept stale for {wait:g}s",
                          neighbor=p.address, peer_id=p.peer_id, reason=msg.reason)
        else:
            n = self._clear(p)
            self.log.info(f"rib: session down, {n} route(s) withdrawn", neighbor=p.address,
                          peer_id=p.peer_id, reason=msg.reason)

    def _clear(self, p: RibPeer) -> int:
        n = 0
        for afi, size in ((1, CHG4_SIZE), (2, CHG6_SIZE)):
            chg = p.tables[afi].clear()
            n += len(chg) // size
            self._feed(p, afi, chg)
        p.gr_pending = False
        if p.stale_handle is not None:
            p.stale_handle.cancel()
            p.stale_handle = None
        p.exceeded = {1: False, 2: False}
        p.warned = {1: False, 2: False}
        self._collect()
        return n

    def _arm_stale(self, p: RibPeer, wait: float) -> None:
        if p.stale_handle is not None:
            p.stale_handle.cancel()
        p.stale_handle = asyncio.get_running_loop().call_later(wait, self._stale_timeout, p.peer_id)

    def _stale_timeout(self, peer_id: int) -> None:
        p = self.peers.get(peer_id)
        if p is None:
            return
        p.stale_handle = None
        p.gr_pending = False
        if not p.up:
            n = self._clear(p)
        else:
            n = self._sweep(p, 1) + self._sweep(p, 2)
            self._collect()
        self.log.info(f"rib: stale time over, {n} stale route(s) removed", neighbor=p.address, peer_id=peer_id)

    def _sweep(self, p: RibPeer, afi: int) -> int:
        t = p.tables[afi]
        if not t.stale_count():
            return 0
        chg = t.sweep_stale()
        self._feed(p, afi, chg)
        return len(chg) // (CHG4_SIZE if afi == 1 else CHG6_SIZE)

    def on_stream(self, peer_id: int, epoch: int, resync: bool) -> None:
        p = self.peers.get(peer_id)
        if p is None:
            return
        if resync or p.gr_pending:
            n = p.tables[1].mark_stale() + p.tables[2].mark_stale()
            self._arm_stale(p, float(p.gr_restart_time or self.stale_time))
            self.log.info(f"rib: stream {'resync' if resync else 'restart'}, {n} route(s) stale until End-of-RIB",
                          neighbor=p.address, peer_id=peer_id)
        else:
            n = self._clear(p)
            if n:
                self.log.info(f"rib: new stream epoch, {n} route(s) of the old one withdrawn",
                              neighbor=p.address, peer_id=peer_id)

    # -- route batches
    def on_batch(self, view: BatchView) -> None:
        p = self.peers.get(view.peer_id)
        if p is None:
            # e.g. this RIB was restarted: ask the owner for the session and its routes again
            self.dropped += 1
            owner = self.bus.owners.get(view.peer_id)
            self.log.warning("rib: batch for an unknown peer dropped, resync requested", peer_id=view.peer_id)
            if owner is not None:
                self.bus.send(owner, Resync(view.peer_id, view.epoch, "rib does not know the peer"))
            return
        self.batches += 1
        p.batches += 1
        p.updates += view.messages
        attrs = self.attrs
        idmap = attrs.intern_batch(view.attr_data, view.attr_index)
        eor_afis = {afi for afi, _safi, _pos in view.eor}
        for afi, col, n in ((1, view.v4, view.n_v4), (2, view.v6, view.n_v6)):
            if n:
                self._feed(p, afi, p.tables[afi].apply(col, idmap))
                self._check_limit(p, afi)
        for afi in eor_afis:
            if afi in p.tables:
                swept = self._sweep(p, afi)
                if swept:
                    self.log.info(f"rib: end-of-rib, {swept} stale route(s) removed",
                                  neighbor=p.address, peer_id=p.peer_id, afi=afi)
        if p.stale_handle is not None and not (p.tables[1].stale_count() or p.tables[2].stale_count()):
            p.stale_handle.cancel()
            p.stale_handle = None
            p.gr_pending = False
        self._collect()

    def _check_limit(self, p: RibPeer, afi: int) -> None:
        limit = p.limit(afi)
        if not limit:
            return
        # paths, not distinct prefixes: len() is O(1), while count_prefixes() rebuilds a table
        # when ADD-PATH path ids are present, too costly per batch; with ADD-PATH the limit
        # therefore bounds paths (as BIRD's import limit counts routes)
        count = len(p.tables[afi])
        mp = p.max_prefix
        warn_at = max(1, limit * mp.warn_percent // 100)
        if count >= warn_at and not p.warned[afi]:
            p.warned[afi] = True
            self.log.warning(f"max-prefix: {count} {AFI_NAMES[afi]} prefixes reach {mp.warn_percent}% "
                             f"of the limit {limit}", neighbor=p.address, peer_id=p.peer_id)
        elif count < warn_at:
            p.warned[afi] = False
        if count > limit:
            if not p.exceeded[afi]:
                p.exceeded[afi] = True
                self.log.warning(f"max-prefix: {count} {AFI_NAMES[afi]} prefixes exceed the limit {limit} "
                                 f"(action {mp.action})", neighbor=p.address, peer_id=p.peer_id)
                self.bus.send(p.identity, MaxPrefixExceeded(p.peer_id, afi, limit, count))
        else:
            p.exceeded[afi] = False

    def status(self) -> dict:
        return {"peers": {pid: p.stats() for pid, p in self.peers.items()}, "attr_sets": len(self.attrs),
                "batches": self.batches, "dropped": self.dropped + self.bus.stats.dropped}


def rib_main(endpoint: str, log_format: str = "human", log_level: str = "info", *,
             curve: Any = None, **kw: Any) -> None:
    """The RIB process body: serve ``endpoint`` until SIGTERM/SIGINT (or the supervisor dies).
    ``curve``: a bus.transport.CurveServer for a tcp:// endpoint ([bus] in the config)."""
    asyncio.events._set_running_loop(None)      # forked from inside the supervisor's loop
    try:
        asyncio.set_event_loop(None)
    except Exception:  # pragma: no cover
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    configure(log_format, log_level)
    tune_malloc()                       # large per-batch buffers: see rserver/memtune.py
    asyncio.run(_serve(endpoint, curve=curve, **kw))


async def _serve(endpoint: str, *, curve: Any = None, **kw: Any) -> None:
    import os
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    rib = RibProcess(endpoint, curve=curve, **kw)
    rib.start()
    trimmer = start_trimmer()
    parent = os.getppid()

    async def orphan_watch():
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        rib.log.warning("rib: the supervisor is gone, exiting")
        stop.set()
    watch = loop.create_task(orphan_watch())
    try:
        await stop.wait()
    finally:
        watch.cancel()
        if trimmer is not None:
            trimmer.cancel()
        await rib.aclose()
        rib.log.info("rib stopped", batches=rib.batches)
