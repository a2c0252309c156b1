"""The session worker process (rserver.session.worker) driven through a real channel.

worker_main runs in a forked child; the test plays the supervisor (channel_pair, fd
passing) and a BGP peer (a plain blocking socket from 127.0.1.N). Every child is
joined by PID and killed if it has not exited within 10 s.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import time

import pytest

from rserver.bus import channel
from rserver.bus.messages import (
    Connection, PeerAdd, PeerAdmin, PeerEvent, PeerRemove, PeerStatusReply, Shutdown, ShutdownDone,
    StatusRequest, WorkerReady,
)
from rserver.codec.messages import FourOctetASCap, MultiprotocolCap, Open, RouteRefreshCap
from rserver.config import BUILTIN, GlobalConfig, NeighborConfig

MARKER = b"\xff" * 16
KEEPALIVE = MARKER + b"\x00\x13\x04"


def gconf() -> GlobalConfig:
    return GlobalConfig(local_as=65000, router_id="10.0.0.1", listen=("127.0.0.1",), port=179,
                        run_dir="/tmp", log_format="human", log_level="debug", session_workers=0)


def nconf(address: str, asn: int = 65001, **kw) -> NeighborConfig:
    values = dict(BUILTIN)
    values.update(kw)
    return NeighborConfig(address=address, asn=asn, name=f"peer-{address}", description="", group=None, **values)


def notification(code: int, subcode: int, data: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HBBB", 21 + len(data), 3, code, subcode) + data


class Child:
    """worker_main in a forked process."""

    def __init__(self):
        self.sup, wrk = channel.channel_pair()
        self.pid = os.fork()
        if self.pid == 0:      # the worker
            code = 0
            try:
                self.sup.close()
                from rserver.session.worker import worker_main
                worker_main(wrk, "human", "debug")
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        wrk.close()
        self.sup.settimeout(10)
        self.status: int | None = None
        self.events: list[PeerEvent] = []

    def send(self, msg, fds=()):
        channel.send(self.sup, msg, fds)

    def recv(self, kind, timeout: float = 10.0):
        """The next message of type ``kind`` (PeerEvents on the way are kept)."""
        end = time.monotonic() + timeout
        while True:
            self.sup.settimeout(max(0.01, end - time.monotonic()))
            res = channel.recv(self.sup, channel.to_supervisor_decoder)
            assert res is not None, "worker closed the channel"
            msg, _ = res
            if isinstance(msg, PeerEvent):
                self.events.append(msg)
            if isinstance(msg, kind):
                return msg

    def wait_state(self, state: str, timeout: float = 10.0) -> PeerEvent:
        end = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e.new_state == state:
                    return e
            self.recv(PeerEvent, max(0.01, end - time.monotonic()))

    def join(self, timeout: float = 10.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError("worker did not exit within the bound; killed")

    def cleanup(self):
        if self.status is None:
            try:
                self.join(0.5)
            except AssertionError:
                pass
        self.sup.close()


@pytest.fixture
def child():
    c = Child()
    try:
        yield c
    finally:
        c.cleanup()


class Peer:
    """A blocking BGP speaker from ``src``; connects to ``listener`` and the test hands
    the accepted socket to the worker, as the supervisor's dispatcher does."""

    def __init__(self, src: str, listener: socket.socket):
        self.sock = socket.create_connection(listener.getsockname(), timeout=10, source_address=(src, 0))
        self.accepted, self.raddr = listener.accept()

    def handover(self, child: Child):
        la = self.accepted.getsockname()
        child.send(Connection(peer_addr=self.raddr[0], peer_port=self.raddr[1], local_addr=la[0],
                              local_port=la[1], accepted_at=time.time()), [self.accepted.fileno()])
        self.accepted.close()

    def read(self) -> bytes:
        head = self._exact(19)
        return head + self._exact(struct.unpack("!H", head[16:18])[0] - 19)

    def read_type(self, mtype: int) -> bytes:
        while True:
            m = self.read()
            if m[18] == mtype:
                return m

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed by the worker")
            out += chunk
        return out

    def establish(self, asn: int = 65001, hold: int = 9):
        assert self.read()[18] == 1
        caps = [MultiprotocolCap(1, 1), RouteRefreshCap(), FourOctetASCap(asn)]
        self.sock.sendall(Open(4, asn, hold, 0x0A000063, caps).encode() + KEEPALIVE)
        assert self.read_type(4) == KEEPALIVE

    def eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def close(self):
        self.sock.close()


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(10)
    yield s
    s.close()


def test_worker_session_status_and_shutdown(child, listener):
    ready = child.recv(WorkerReady)
    assert ready.pid == child.pid
    child.send(PeerAdd(neighbor=nconf("127.0.1.51"), global_=gconf()))
    child.wait_state("active")
    peer = Peer("127.0.1.51", listener)
    try:
        peer.handover(child)
        peer.establish()
        ev = child.wait_state("established")
        assert ev.address == "127.0.1.51" and ev.name == "peer-127.0.1.51" and ev.old_state == "open confirm"

        # a bad packet and a connection nobody owns: logged, the worker carries on
        child.sup.send(b"\x93garbage")
        stranger = Peer("127.0.1.52", listener)
        stranger.handover(child)
        assert stranger.eof()
        stranger.close()

        child.send(StatusRequest(request_id=7))
        reply = child.recv(PeerStatusReply)
        assert reply.request_id == 7 and len(reply.peers) == 1
        st = reply.peers[0]
        assert st["address"] == "127.0.1.51" and st["state"] == "established"
        assert st["hold_time"] == 9 and st["established_count"] == 1
        assert st["messages_received"]["open"] == 1 and st["messages_sent"]["keepalive"] >= 1
        assert st["negotiated"]["peer_as"] == 65001
        child.send(StatusRequest(request_id=8, address="192.0.2.99"))
        assert child.recv(PeerStatusReply).peers == []

        child.send(Shutdown(reason="planned maintenance"))
        text = b"planned maintenance"
        assert peer.read_type(3) == notification(6, 2, bytes((len(text),)) + text)
        assert peer.eof()
        assert child.recv(ShutdownDone).pid == child.pid
        assert child.join(10) == 0
        assert any(e.new_state == "idle" and e.reason == "admin down" for e in child.events)
    finally:
        peer.close()


def test_worker_admin_down_up_and_remove(child, listener):
    child.recv(WorkerReady)
    child.send(PeerAdd(neighbor=nconf("127.0.1.53"), global_=gconf()))
    peer = Peer("127.0.1.53", listener)
    try:
        peer.handover(child)
        peer.establish()
        child.wait_state("established")
        child.send(PeerAdmin(address="127.0.1.53", op="down", reason="bye"))
        assert peer.read_type(3) == notification(6, 2, b"\x03bye")
        child.send(StatusRequest(request_id=1, address="127.0.1.53"))
        st = child.recv(PeerStatusReply).peers[0]
        assert st["state"] == "idle" and st["admin_up"] is False
        assert st["last_notification_sent"]["shutdown_message"] == "bye"
        child.events.clear()
        child.send(PeerAdmin(address="127.0.1.53", op="up"))
        child.wait_state("active")
        child.send(PeerRemove(address="127.0.1.53", reason="gone"))
        child.send(StatusRequest(request_id=2))
        assert child.recv(PeerStatusReply).peers == []
    finally:
        peer.close()
    child.sup.close()           # the supervisor goes away: the worker exits on its own
    assert child.join(10) == 0


def test_worker_sigterm_is_an_orderly_shutdown(child, listener):
    child.recv(WorkerReady)
    child.send(PeerAdd(neighbor=nconf("127.0.1.54"), global_=gconf()))
    peer = Peer("127.0.1.54", listener)
    try:
        peer.handover(child)
        peer.establish()
        child.wait_state("established")
        os.kill(child.pid, signal.SIGTERM)
        text = b"session worker terminated"
        assert peer.read_type(3) == notification(6, 2, bytes((len(text),)) + text)
        child.recv(ShutdownDone)
        assert child.join(10) == 0
    finally:
        peer.close()
