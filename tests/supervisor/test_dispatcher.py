"""The dispatcher hands connections to the owning worker process by fd passing.

Real sockets on loopback only; the worker is a real forked process, stopped by PID.
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket

import pytest

from rserver.bus import channel
from rserver.supervisor.dispatcher import Dispatcher

PEER = "127.0.1.1"
STRANGER = "127.0.1.9"


def _worker(chan: socket.socket, other_end: socket.socket) -> None:
    # a stand-in session worker: greet each passed connection with what it was told.
    # It must close the supervisor's end it inherited across fork, or it never sees EOF.
    other_end.close()
    while True:
        got = channel.recv(chan, channel.to_worker_decoder)
        if got is None:
            return
        info, sock = got
        sock.setblocking(True)
        sock.sendall(f"pid={os.getpid()} peer={info.peer_addr} local={info.local_addr}\n".encode())
        sock.close()


@pytest.fixture
def worker():
    sup_end, wrk_end = channel.channel_pair()
    proc = multiprocessing.get_context("fork").Process(target=_worker, args=(wrk_end, sup_end), daemon=True)
    proc.start()
    wrk_end.close()
    yield proc, sup_end
    sup_end.close()
    proc.join(5)
    if proc.is_alive():
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
    assert not proc.is_alive()


def _client(src: str, port: int, md5: str = "", timeout: float = 2.0) -> bytes:
    from rserver.session.sockopts import set_md5
    c = socket.socket()
    c.settimeout(timeout)
    try:
        c.bind((src, 0))
        if md5:
            set_md5(c, "127.0.0.1", md5)
        c.connect(("127.0.0.1", port))
        chunks = []
        while True:
            b = c.recv(1024)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        c.close()


async def _run(disp: Dispatcher, fn):
    disp.bind()
    task = asyncio.create_task(disp.serve())
    try:
        port = disp.addresses[0][1]
        return await asyncio.get_running_loop().run_in_executor(None, fn, port)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        disp.close()


def test_connection_is_handed_to_owning_worker_process(worker):
    proc, chan = worker
    routes = {PEER: lambda conn, info: channel.send(chan, info, [conn.fileno()])}
    disp = Dispatcher([("127.0.0.1", 0)], routes.get)
    out = asyncio.run(_run(disp, lambda port: _client(PEER, port)))
    assert out == f"pid={proc.pid} peer={PEER} local=127.0.0.1\n".encode()
    assert disp.accepted == 1 and disp.rejected == 0


def test_unknown_address_is_closed_and_logged(worker, caplog):
    _proc, chan = worker
    routes = {PEER: lambda conn, info: channel.send(chan, info, [conn.fileno()])}
    disp = Dispatcher([("127.0.0.1", 0)], routes.get)
    with caplog.at_level(logging.WARNING, logger="rserver"):
        out = asyncio.run(_run(disp, lambda port: _client(STRANGER, port)))
    assert out == b""
    assert disp.rejected == 1 and disp.accepted == 0
    assert any(STRANGER in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_md5_key_on_listener(worker):
    proc, chan = worker
    routes = {PEER: lambda conn, info: channel.send(chan, info, [conn.fileno()])}
    disp = Dispatcher([("127.0.0.1", 0)], routes.get)
    disp.set_md5(PEER, "s3cret")
    out = asyncio.run(_run(disp, lambda port: _client(PEER, port, md5="s3cret")))
    assert out.startswith(f"pid={proc.pid} ".encode())
    # without the key the kernel drops the SYN: the connect never completes
    disp2 = Dispatcher([("127.0.0.1", 0)], routes.get)
    disp2.set_md5(PEER, "s3cret")
    with pytest.raises((socket.timeout, TimeoutError)):
        asyncio.run(_run(disp2, lambda port: _client(PEER, port, timeout=1.0)))
    assert disp2.accepted == 0


def test_bad_packets_are_rejected_without_leaking_fds():
    from rserver.bus.messages import Connection, Shutdown
    import gc
    gc.collect()        # objects an earlier test left behind must not close their fds mid-count
    a, b = channel.channel_pair()
    try:
        before = len(os.listdir("/proc/self/fd"))
        a.send(b"not msgpack")
        with pytest.raises(channel.ChannelError):
            channel.recv(b, channel.to_worker_decoder)
        r, w = os.pipe()
        # a Shutdown must carry no fd, a Connection exactly one
        channel.send(a, Shutdown(), [r])
        with pytest.raises(channel.ChannelError, match="expected 0"):
            channel.recv(b, channel.to_worker_decoder)
        channel.send(a, Connection("127.0.1.1", 1, "127.0.0.1", 2, 0.0), [r, w])
        with pytest.raises(channel.ChannelError, match="expected 1"):
            channel.recv(b, channel.to_worker_decoder)
        os.close(r)
        os.close(w)
        assert len(os.listdir("/proc/self/fd")) == before
        channel.send(a, Shutdown("bye"))
        msg, sock = channel.recv(b, channel.to_worker_decoder)
        assert msg == Shutdown("bye") and sock is None
        a.close()
        assert channel.recv(b, channel.to_worker_decoder) is None
    finally:
        a.close()
        b.close()


def test_bind_failure_releases_sockets():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        disp = Dispatcher([("127.0.0.1", 0), ("127.0.0.1", port)], lambda a: None)
        with pytest.raises(OSError):
            disp.bind()
        assert disp.sockets == []
    finally:
        blocker.close()
