"""A fleet of lab speakers spread over a few forked worker processes.

Each worker runs one asyncio loop with several ``Speaker``s. The parent talks to the
workers through a pipe each (commands: ``go``, ``stop``) and reads their progress from
shared memory (``multiprocessing.RawArray``: state, received count, End-of-RIB, when the
announcers finished writing), so sampling costs the workers nothing.

Used by ``bench/fulltable.py``: announcers (``wire`` set: pre-encoded UPDATE streams, sent on
``go`` and followed by an IPv4 End-of-RIB, and an IPv6 one with ``ipv6``) and receive-only clients (``keep="count"``).
Workers are forked after the tables are loaded, so the wire bytes are shared copy-on-write.
Every worker is stopped by PID (``stop``).
"""
from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Optional

from .speaker import Speaker

__all__ = ["SpeakerSpec", "Fleet", "ST_IDLE", "ST_UP", "ST_FAILED", "ST_CLOSED"]

ST_IDLE, ST_UP, ST_FAILED, ST_CLOSED = 0, 1, -1, 2


@dataclass
class SpeakerSpec:
    name: str
    local_addr: str
    local_as: int
    peer_addr: str
    peer_port: int
    keep: str = "count"             # clients: "count"; announcers: "none"
    wire: Optional[bytes] = None    # announcers: the UPDATE stream sent on go()
    hold_time: int = 90
    router_id: Optional[str] = None
    ipv6: bool = False
    coalesce: float = 0.025         # receive batching (Speaker.coalesce)


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0.0
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fleet:
    def __init__(self, specs: list[SpeakerSpec], workers: int = 3, poll: float = 0.05):
        self.specs = specs
        self.n = len(specs)
        self.nworkers = max(1, min(workers, self.n))
        self.poll = poll
        ctx = mp.get_context("fork")
        self._ctx = ctx
        self.state = ctx.RawArray("i", self.n)
        self.counts = ctx.RawArray("q", self.n)
        self.counts6 = ctx.RawArray("q", self.n)      # IPv6 routes held (specs with ipv6)
        self.eor = ctx.RawArray("b", self.n)
        self.sent_at = ctx.RawArray("d", self.n)      # time.monotonic() when the wire was written
        self.updates = ctx.RawArray("q", self.n)
        self.procs: list = []
        self.pipes: list = []
        self.errors: list[str] = []
        # speakers spread round-robin, so announcers and clients mix over the workers
        self.assign = [list(range(w, self.n, self.nworkers)) for w in range(self.nworkers)]

    # --- parent side ----------------------------------------------------------------------
    def start(self) -> None:
        for w, idxs in enumerate(self.assign):
            parent, child = self._ctx.Pipe()
            p = self._ctx.Process(target=_worker_main, name=f"lab-fleet-{w}",
                                  args=(self, idxs, child), daemon=True)
            p.start()
            child.close()
            self.procs.append(p)
            self.pipes.append(parent)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def _drain_msgs(self) -> None:
        for c in self.pipes:
            try:
                while c.poll():
                    kind, *rest = c.recv()
                    if kind == "error":
                        self.errors.append(rest[0])
            except (EOFError, OSError):
                pass

    def states(self) -> list[int]:
        self._drain_msgs()
        return list(self.state)

    def wait_established(self, timeout: float, on_tick=None) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.states()
            if all(s == ST_UP for s in st):
                return True
            if any(s == ST_FAILED for s in st):
                return False
            if any(not p.is_alive() for p in self.procs):
                return False
            if on_tick is not None:
                on_tick(st)
            time.sleep(0.05)
        return False

    def go(self) -> None:
        for c in self.pipes:
            c.send(("go",))

    def cpu_seconds(self) -> float:
        return sum(_proc_cpu(pid) for pid in self.pids())

    def stop(self, timeout: float = 5.0) -> None:
        for c in self.pipes:
            try:
                c.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        end = time.monotonic() + timeout
        for p in self.procs:
            p.join(max(0.1, end - time.monotonic()))
        for p in self.procs:
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.join(2)
        self._drain_msgs()
        for c in self.pipes:
            c.close()


# --- worker side -------------------------------------------------------------------------
def _worker_main(fleet: Fleet, idxs: list[int], conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prof_dir = os.environ.get("RSERVER_LAB_PROFILE")     # debugging: a cProfile dump per worker
    try:
        if prof_dir:
            import cProfile
            cProfile.runctx("asyncio.run(_worker(fleet, idxs, conn))", globals(), locals(),
                            os.path.join(prof_dir, f"fleet-{os.getpid()}.prof"))
        else:
            asyncio.run(_worker(fleet, idxs, conn))
    except Exception:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", f"worker {os.getpid()}: {traceback.format_exc()}"))
        except OSError:
            pass
        os._exit(1)
    os._exit(0)


async def _worker(fleet: Fleet, idxs: list[int], conn) -> None:
    loop = asyncio.get_running_loop()
    speakers: dict[int, Speaker] = {}
    stop = asyncio.Event()
    go = asyncio.Event()

    def on_cmd():
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            stop.set()
            return
        if msg[0] == "go":
            go.set()
        elif msg[0] == "stop":
            stop.set()

    loop.add_reader(conn.fileno(), on_cmd)

    def report(i: int, text: str) -> None:
        try:
            conn.send(("error", text))
        except OSError:
            pass

    async def bring_up(i: int) -> None:
        s = fleet.specs[i]
        end = time.monotonic() + 60
        while not stop.is_set():
            sp = Speaker(s.local_addr, s.local_as, s.router_id or s.local_addr, s.peer_addr, s.peer_port,
                         hold_time=s.hold_time, ipv4=True, ipv6=s.ipv6, keep=s.keep, name=s.name, coalesce=s.coalesce)
            try:
                await sp.connect(10)
                speakers[i] = sp
                fleet.state[i] = ST_UP
                return
            except Exception as e:  # noqa: BLE001 - retried until the target listens
                if time.monotonic() > end:
                    fleet.state[i] = ST_FAILED
                    report(i, f"{s.name}: {e}")
                    return
                await asyncio.sleep(0.2)

    async def send(i: int) -> None:
        sp = speakers.get(i)
        s = fleet.specs[i]
        if sp is None or s.wire is None:
            return
        try:
            await sp.send_raw(s.wire)
            await sp.send_eor(1)
            if s.ipv6:
                await sp.send_eor(2)
            fleet.sent_at[i] = time.monotonic()
        except Exception as e:  # noqa: BLE001
            fleet.state[i] = ST_FAILED
            report(i, f"{s.name}: sending: {e}")

    async def poller() -> None:
        while not stop.is_set():
            for i, sp in speakers.items():
                fleet.counts[i] = sp.count(1)
                if 2 in sp.afis:
                    fleet.counts6[i] = sp.count(2)
                fleet.updates[i] = sp.updates_received
                if 1 in sp.eor_received:
                    fleet.eor[i] = 1
                if sp.state == "closed" and fleet.state[i] == ST_UP:
                    fleet.state[i] = ST_FAILED
                    report(i, str(sp.error))
            await asyncio.sleep(fleet.poll)

    ups = [asyncio.create_task(bring_up(i)) for i in idxs]
    ptask = asyncio.create_task(poller())
    gtask = asyncio.create_task(go.wait())
    stask = asyncio.create_task(stop.wait())
    await asyncio.wait([gtask, stask], return_when=asyncio.FIRST_COMPLETED)
    if go.is_set() and not stop.is_set():
        await asyncio.gather(*ups)
        sends = [asyncio.create_task(send(i)) for i in idxs]
        await stop.wait()
        for t in sends:
            t.cancel()
    for t in ups:
        t.cancel()
    for i, sp in speakers.items():
        fleet.counts[i] = sp.count(1)
        try:
            await asyncio.wait_for(sp.close("lab fleet stopping"), 2)
        except Exception:  # noqa: BLE001
            pass
        fleet.state[i] = ST_CLOSED
    ptask.cancel()
    gtask.cancel()
    loop.remove_reader(conn.fileno())
