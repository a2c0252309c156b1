"""The RIB process (rserver/rib/process.py) as a real forked process, driven by WorkerBus
fake workers: tablegen tables arrive and the Adj-RIB-In counts match, SessionDown clears,
max-prefix is reported once per crossing, a killed worker's new epoch supersedes the old.

Every process is stopped by PID; every test is bounded (asyncio.wait_for).
"""
from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from rserver.bus.messages import (
    MaxPrefixExceeded, RibPeerStatus, RibStatusRequest, SessionDown, SessionUp,
)
from rserver.bus.transport import WorkerBus
from rserver.config import MaxPrefix
from tests.procs import alive, kill_pid

pytest.importorskip("rserver.rib._tables")


def run(coro, timeout: float = 40.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(cond, timeout: float = 10.0, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(step)
    return True


def chunks(wire: bytes, per: int = 200) -> list:
    """Decode a tablegen UPDATE stream into batches of ``per`` messages."""
    from rserver.codec import decode_updates
    from rserver.codec.layout import CodecContext
    out, pos, ctx = [], 0, CodecContext()
    while pos < len(wire):
        end, k = pos, 0
        while end < len(wire) and k < per:
            end += int.from_bytes(wire[end + 16:end + 18], "big")
            k += 1
        b = decode_updates(wire[pos:end], ctx)
        assert b.error is None and b.consumed == end - pos
        out.append(b)
        pos = end
    return out


@pytest.fixture(scope="module")
def tables():
    from bench.tablegen import generate_v4, generate_v6
    return chunks(generate_v4(n=20000, cache=False).wire), chunks(generate_v6(n=3000, cache=False).wire)


def start_rib(tmp_path) -> tuple[int, str]:
    endpoint = f"ipc://{tmp_path}/rib.sock"
    log = open(tmp_path / "rib.log", "a", buffering=1)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(log.fileno(), 2)
            from rserver.log import configure
            from rserver.rib import process
            asyncio.events._set_running_loop(None)
            configure("human", "debug", stream=log)
            process.configure = lambda *a, **k: None       # keep the log file
            process.rib_main(endpoint, "human", "debug")
            code = 0
        finally:
            os._exit(code)
    log.close()
    return pid, endpoint


def stop(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 5
        while time.monotonic() < end:
            p, _ = os.waitpid(pid, os.WNOHANG)
            if p:
                return
            time.sleep(0.02)
        kill_pid(pid)
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class Fake:
    """A fake session worker: a WorkerBus that collects what the RIB sends back."""

    def __init__(self, endpoint: str, identity: bytes = b"w0"):
        self.got: list = []
        self.bus = WorkerBus(endpoint, identity, on_message=self.got.append)
        self.bus.start()
        self._rid = 0

    def up(self, peer_id: int, mp: MaxPrefix | None = None) -> None:
        self.bus.send(SessionUp(peer_id=peer_id, address=f"192.0.2.{peer_id}", asn=64500 + peer_id,
                                bgp_id=peer_id, families=[(1, 1), (2, 1)], max_prefix=mp))

    async def stats(self, peer_id: int) -> dict:
        self._rid += 1
        rid = self._rid
        self.bus.send(RibStatusRequest(peer_id, rid))
        ok = await until(lambda: any(type(m) is RibPeerStatus and m.request_id == rid for m in self.got), 5)
        assert ok, "no RibPeerStatus"
        return [m for m in self.got if type(m) is RibPeerStatus and m.request_id == rid][0].stats


def test_tables_arrive_counts_match_and_session_down_clears(tmp_path, tables):
    v4, v6 = tables
    pid, endpoint = start_rib(tmp_path)

    async def main():
        w = Fake(endpoint)
        try:
            w.up(1)
            w.up(2)
            s1, s2 = w.bus.route_sender(1), w.bus.route_sender(2)
            for b in v4:
                s1.send(b)
            for b in v6:
                s1.send(b)
            for b in v4[: len(v4) // 2]:
                s2.send(b)
            assert await s1.wait_acked(10) and await s2.wait_acked(10)
            st1 = await w.stats(1)
            assert st1["prefixes"] == {"ipv4": 20000, "ipv6": 3000}
            assert st1["batches"] == len(v4) + len(v6)
            assert st1["updates"] == sum(b.messages for b in v4 + v6)
            assert st1["attr_sets"] > 0
            st2 = await w.stats(2)
            n2 = sum(len(b.v4) // 13 for b in v4[: len(v4) // 2])
            assert st2["prefixes"] == {"ipv4": n2, "ipv6": 0}
            w.bus.send(SessionDown(1, "test"))
            st1 = await w.stats(1)
            assert st1["prefixes"] == {"ipv4": 0, "ipv6": 0} and st1["up"] is False
            assert (await w.stats(2))["prefixes"]["ipv4"] == n2       # the other peer untouched
            assert await w.stats(99) == {}                             # unknown peer: empty
        finally:
            await w.bus.aclose(1)

    try:
        run(main())
        assert alive(pid)
    finally:
        stop(pid)
    assert "Traceback" not in (tmp_path / "rib.log").read_text()


def test_max_prefix_once_per_crossing_and_warning(tmp_path, tables):
    v4, v6 = tables
    pid, endpoint = start_rib(tmp_path)

    async def main():
        w = Fake(endpoint)
        try:
            w.up(1, MaxPrefix(ipv4=1000, ipv6=5000, action="shutdown", warn_percent=50))
            s = w.bus.route_sender(1)
            for b in v4:                               # 20000 v4 > 1000: reported once
                s.send(b)
            for b in v6:                               # 3000 v6 < 5000 but >= 50 %: a warning only
                s.send(b)
            assert await s.wait_acked(10)
            await w.stats(1)
            mp = [m for m in w.got if type(m) is MaxPrefixExceeded]
            assert len(mp) == 1
            assert (mp[0].peer_id, mp[0].afi, mp[0].limit) == (1, 1, 1000) and mp[0].count > 1000
        finally:
            await w.bus.aclose(1)

    try:
        run(main())
    finally:
        stop(pid)
    log = (tmp_path / "rib.log").read_text()
    assert "ipv4 prefixes exceed the limit 1000" in log
    assert "ipv6 prefixes reach 50% of the limit 5000" in log
    assert "ipv6 prefixes exceed" not in log


def _fork_worker(endpoint: str, batches: list, ready) -> int:
    """A fake worker process (identity w0) that announces peer 1, sends ``batches``, creates
    the file ``ready`` once they are acked, then idles."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        asyncio.events._set_running_loop(None)

        async def child():
            w = Fake(endpoint)
            w.up(1)
            s = w.bus.route_sender(1)
            for b in batches:
                s.send(b)
            if await s.wait_acked(10):
                ready.touch()
            await asyncio.sleep(60)

        asyncio.run(child())
        code = 0
    finally:
        os._exit(code)


def test_killed_worker_new_epoch_supersedes_old_routes(tmp_path, tables):
    v4, v6 = tables
    pid, endpoint = start_rib(tmp_path)
    ready = tmp_path / "worker-ready"
    wpid = _fork_worker(endpoint, v4, ready)

    async def main():
        w = None
        try:
            assert await until(ready.exists, 15), "the forked worker's table was not acked"
            probe = Fake(endpoint, b"probe")              # does not own peer 1: no answer
            probe.bus.send(RibStatusRequest(1, 1))
            await asyncio.sleep(0.2)
            assert probe.got == []
            await probe.bus.aclose(0.2)
        finally:
            os.kill(wpid, signal.SIGKILL)
            os.waitpid(wpid, 0)
        # the restarted worker (same identity) sends only the v6 table: the v4 routes of the
        # dead epoch are gone once the new epoch starts
        w = Fake(endpoint)
        try:
            st = await w.stats(1)
            assert st["prefixes"]["ipv4"] == 20000             # the old epoch's state is kept ...
            w.up(1)
            s = w.bus.route_sender(1)
            for b in v6:
                s.send(b)
            assert await s.wait_acked(10)
            st = await w.stats(1)
            assert st["prefixes"] == {"ipv4": 0, "ipv6": 3000}  # ... until the new epoch
            assert st["sessions"] == 2
        finally:
            await w.bus.aclose(1)

    try:
        run(main())
    finally:
        if alive(wpid):
            kill_pid(wpid)
        stop(pid)
    log = (tmp_path / "rib.log").read_text()
    assert "route(s) of the old one withdrawn" in log


def test_rib_killed_is_restarted_and_workers_refetch(tmp_path):
    """The real supervisor: SIGKILL of the RIB process -> restarted with back-off, the worker
    re-announces its Established peer and sends it a ROUTE-REFRESH; SIGTERM leaves nothing."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.procs import children, free_port
    from tests.session.test_max_prefix import Speaker, table_v4, wait_for

    port = free_port()
    conf = tmp_path / "rserver.toml"
    conf.write_text(f"""
[global]
local_as = 64500
router_id = "127.0.0.1"
listen = ["127.0.0.1"]
port = {port}
run_dir = "{tmp_path / 'run'}"

[[neighbor]]
address = "127.0.1.1"
as = 64501
ipv6 = false
""")
    log = tmp_path / "rserver.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(conf), "--log-level", "info"],
                                stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ),
                                cwd=str(Path(__file__).parents[2]))
    seen: set[int] = set()

    def rib_pid():
        for k in children(proc.pid):
            try:
                if Path(f"/proc/{k}/comm").read_text().strip() == "rserver-rib":
                    return k
            except OSError:
                pass
        return None

    p = Speaker("127.0.1.1", port, 64501, rr=True)
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, "the RIB and one worker")
        seen.update(children(proc.pid))
        old = rib_pid()
        assert old is not None
        p.establish()
        p.send(table_v4(50, 64501))
        wait_for(lambda: "rib: session up" in log.read_text(), "the RIB to see the session")
        time.sleep(0.3)
        os.kill(old, signal.SIGKILL)
        new = wait_for(lambda: (rib_pid() not in (None, old)) and rib_pid(), "a new RIB process")
        seen.add(new)
        end = time.monotonic() + 15
        got = None
        while time.monotonic() < end:
            m = p.read_msg(end - time.monotonic())
            if m is None or m[0] in (3, 5):
                got = m
                break
        assert got is not None and got[0] == 5, f"expected a ROUTE-REFRESH, got {got}"
        p.send(table_v4(50, 64501))
        wait_for(lambda: log.read_text().count("rib: session up") >= 2, "the session re-announced")
        assert "rib process exited (killed by signal 9)" in log.read_text()
        assert p.still_up(0.5)
    finally:
        p.close()
        seen.update(children(proc.pid))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                kill_pid(proc.pid)
                proc.wait(5)
        left = [k for k in seen if alive(k)]
        for k in left:
            kill_pid(k)
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert not left


def test_graceful_session_down_keeps_stale_until_end_of_rib(tmp_path, tables):
    from rserver.codec.layout import UpdateBatch
    v4, _v6 = tables
    pid, endpoint = start_rib(tmp_path)

    async def main():
        w = Fake(endpoint)
        try:
            w.up(1)
            s = w.bus.route_sender(1)
            for b in v4:
                s.send(b)
            assert await s.wait_acked(10)
            w.bus.send(SessionDown(1, "hold timer expired", graceful=True))
            st = await w.stats(1)
            assert st["prefixes"]["ipv4"] == 20000 and st["stale"]["ipv4"] == 20000
            assert st["graceful_restart_pending"] is True
            # the new session re-announces half the table, then End-of-RIB sweeps the rest
            w.up(1)
            s = w.bus.route_sender(1)
            half = v4[: len(v4) // 2]
            n_half = sum(len(b.v4) // 13 for b in half)
            for b in half:
                s.send(b)
            assert await s.wait_acked(10)
            st = await w.stats(1)
            assert st["prefixes"]["ipv4"] == 20000 and st["stale"]["ipv4"] == 20000 - n_half
            s.send(UpdateBatch(consumed=0, messages=1, attr_data=b"", attr_index=b"", v4=b"", v6=b"",
                               eor=[(1, 1, 0)], problems=[]))
            assert await s.wait_acked(10)
            st = await w.stats(1)
            assert st["prefixes"]["ipv4"] == n_half and st["stale"]["ipv4"] == 0
            assert st["graceful_restart_pending"] is False
        finally:
            await w.bus.aclose(1)

    try:
        run(main())
    finally:
        stop(pid)
    assert "end-of-rib" in (tmp_path / "rib.log").read_text()


def test_worker_stops_reading_while_the_rib_is_behind(tmp_path):
    """The real worker with small watermarks and a RIB that does not drain at first: the
    route stream pauses, the worker stops reading the peer (status reading_paused, not every
    prefix read) and the session stays Established; once the RIB drains, reading resumes and
    the whole table arrives."""
    import socket as so
    import threading

    from bench.tablegen import generate_v4
    from rserver.bus import channel
    from rserver.bus.messages import PeerAdd, PeerStatusReply, StatusRequest
    from tests.session.test_worker import Child, Peer, gconf, nconf

    endpoint = f"ipc://{tmp_path}/rib.sock"
    go = tmp_path / "go"
    wire = generate_v4(n=60000, cache=False).wire
    rib_pid = os.fork()
    if rib_pid == 0:
        code = 1
        try:
            asyncio.events._set_running_loop(None)
            from rserver.rib.process import RibProcess

            async def slow_rib():
                rib = RibProcess(endpoint)           # bound, not draining
                while not go.exists():
                    await asyncio.sleep(0.05)
                rib.start()
                await asyncio.sleep(30)
            asyncio.run(slow_rib())
            code = 0
        finally:
            os._exit(code)

    class SmallWatermarks(Child):
        def __init__(self):
            self.sup, wrk = channel.channel_pair()
            self.pid = os.fork()
            if self.pid == 0:
                code = 0
                try:
                    self.sup.close()
                    asyncio.events._set_running_loop(None)
                    from rserver.session.worker import Worker
                    asyncio.run(Worker(wrk, bus_options={"high_water": 64 << 10, "low_water": 16 << 10}).run())
                except BaseException:
                    code = 1
                finally:
                    os._exit(code)
            wrk.close()
            self.sup.settimeout(10)
            self.status = None
            self.events = []

    lst = so.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(8)
    lst.settimeout(10)
    child = SmallWatermarks()
    peer = None

    def status() -> dict:
        child.send(StatusRequest(request_id=int(time.monotonic() * 1000) % 100000))
        return child.recv(PeerStatusReply).peers[0]

    try:
        child.send(PeerAdd(neighbor=nconf("127.0.1.61"), global_=gconf(), peer_id=1,
                           rib_endpoint=endpoint, worker_index=0))
        child.wait_state("active")
        peer = Peer("127.0.1.61", lst)
        peer.handover(child)
        peer.establish(hold=90)
        child.wait_state("established")
        sender = threading.Thread(target=lambda: peer.sock.sendall(wire), daemon=True)
        sender.start()
        end = time.monotonic() + 10
        while not status()["reading_paused"]:
            assert time.monotonic() < end, "the worker never paused reading"
            time.sleep(0.05)
        time.sleep(0.5)
        st = status()
        assert st["reading_paused"] and st["prefixes_received"] < 60000
        assert st["state"] == "established"
        go.touch()                                   # the RIB drains and acks: reading resumes
        end = time.monotonic() + 20
        while True:
            st = status()
            if st["prefixes_received"] == 60000 and not st["reading_paused"]:
                break
            assert time.monotonic() < end, f"not resumed: {st['prefixes_received']} prefixes"
            time.sleep(0.1)
        sender.join(5)
        assert st["state"] == "established"
    finally:
        if peer is not None:
            peer.close()
        lst.close()
        child.sup.close()
        kill_pid(child.pid)
        stop(rib_pid)
