"""The supervisor's listening sockets (the "dispatcher" of seed 000).

Binds every configured listen address, accepts connections, and hands each one to the
session worker that owns the remote address (fd passing, bus/channel.py). A connection from an address that
is not a configured neighbor is closed at once and logged with the address. TCP MD5 keys
are installed on the listening sockets per neighbor, because the kernel checks the SYN.
"""
from __future__ import annotations

import asyncio
import socket
import time
from typing import Callable, Optional

from ..log import Log, get_logger
from ..session.sockopts import normalize_addr, set_md5
from ..bus.messages import Connection

__all__ = ["Dispatcher", "bind_listener"]

# owner lookup: remote address -> a callable that takes the connection (or None: unknown)
Router = Callable[[str], Optional[Callable[[socket.socket, Connection], None]]]


def bind_listener(addr: str, port: int, backlog: int = 128) -> socket.socket:
    """A non-blocking listening TCP socket on ``addr``:``port``."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # one socket per family: "::" must not also take IPv4 (that is 0.0.0.0's job)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((addr, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Dispatcher:
    """Accept loop over one or more listening sockets."""

    def __init__(self, listen: list[tuple[str, int]], router: Router, log: Optional[Log] = None):
        self._listen = list(listen)
        self._router = router
        self._log = log or get_logger("dispatcher")
        self._socks: list[socket.socket] = []
        self._keys: dict[socket.socket, tuple[str, int]] = {}     # socket -> configured (addr, port)
        self._tasks: list[asyncio.Task] = []
        self._task_of: dict[socket.socket, asyncio.Task] = {}
        self._closing: set[socket.socket] = set()     # removed listeners whose accept is ending
        self._serving = False
        self._md5: dict[str, str] = {}
        self.accepted = 0
        self.rejected = 0

    @property
    def sockets(self) -> list[socket.socket]:
        """Every listening socket still open (a forked child closes its copies of them)."""
        return list(self._socks) + list(self._closing)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self._socks]

    def bind(self) -> None:
        """Bind every address now (so a config error surfaces before anything starts)."""
        try:
            for addr, port in self._listen:
                s = bind_listener(addr, port)
                self._socks.append(s)
                self._keys[s] = (addr, port)
                self._log.debug(f"listener bind: {addr}:{s.getsockname()[1]}", listen_address=f"{addr}:{port}")
        except OSError:
            self.close()
            raise
        for peer, key in self._md5.items():
            self._apply_md5(peer, key)

    def set_md5(self, peer_addr: str, key: str) -> None:
        """Install (key) or remove ("") the TCP MD5 key for a neighbor on every listener."""
        peer = normalize_addr(peer_addr)
        if key:
            self._md5[peer] = key
        else:
            self._md5.pop(peer, None)
        self._apply_md5(peer, key)

    def _apply_md5(self, peer: str, key: str) -> None:
        v4peer = ":" not in peer
        for s in self._socks:
            if s.family == socket.AF_INET and not v4peer:
                continue
            if s.family == socket.AF_INET6 and v4peer:
                continue    # IPV6_V6ONLY sockets never see IPv4 peers
            set_md5(s, peer, key)

    async def serve(self) -> None:
        """Run the accept loops until cancelled."""
        if not self._socks:
            self.bind()
        loop = asyncio.get_running_loop()
        self._tasks = [self._start_accept(s) for s in self._socks]
        for addr, port in self.addresses:
            self._log.info("dispatcher started", listen_address=f"{addr}:{port}")
        self._serving = True
        try:
            # until cancelled; listeners come and go on reload (add_listener / remove_listener)
            await loop.create_future()
        finally:
            self._serving = False
            for t in self._tasks:
                t.cancel()

    def _start_accept(self, s: socket.socket) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(self._accept_loop(s))
        self._task_of[s] = t
        return t

    def add_listener(self, addr: str, port: int) -> None:
        """Bind one more listener (reload); accepting at once if ``serve()`` is running.
        Raises OSError when it cannot be bound (nothing is changed then)."""
        s = bind_listener(addr, port)
        self._socks.append(s)
        self._keys[s] = (addr, port)
        self._listen.append((addr, port))
        for peer, key in self._md5.items():
            if (s.family == socket.AF_INET) == (":" not in peer):
                set_md5(s, peer, key)
        if self._serving:
            self._tasks.append(self._start_accept(s))
        self._log.info("listener opened", listen_address=f"{addr}:{s.getsockname()[1]}")

    def remove_listener(self, addr: str, port: int) -> bool:
        """Close the listener bound for (``addr``, ``port``) (reload); accepted connections
        are not affected. False if there is none."""
        for s, key in list(self._keys.items()):
            if key == (addr, port):
                t = self._task_of.pop(s, None)
                if t is not None:
                    t.cancel()
                    self._tasks = [x for x in self._tasks if x is not t]
                self._socks.remove(s)
                del self._keys[s]
                if (addr, port) in self._listen:
                    self._listen.remove((addr, port))
                if t is None or t.done():
                    s.close()
                else:
                    # close only once the cancelled accept has removed its reader: asyncio
                    # removes it by fd number, and a closed fd is soon reused (e.g. by a new
                    # worker's channel, whose reader would be removed instead)
                    self._closing.add(s)
                    t.add_done_callback(lambda _t, s=s: (self._closing.discard(s), s.close()))
                self._log.info("listener closed", listen_address=f"{addr}:{port}")
                return True
        return False

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        local = "%s:%d" % lsock.getsockname()[:2]
        while True:
            try:
                conn, raddr = await loop.sock_accept(lsock)
            except asyncio.CancelledError:
                raise
            except OSError as e:
                # EMFILE and friends: log, back off briefly, keep serving
                self._log.error(f"accept failed: {e}", listen_address=local)
                await asyncio.sleep(0.1)
                continue
            self._dispatch(conn, raddr, local)

    def _dispatch(self, conn: socket.socket, raddr: tuple, local: str) -> None:
        peer = normalize_addr(raddr[0])
        laddr = conn.getsockname()
        owner = self._router(peer)
        if owner is None:
            self.rejected += 1
            self._log.warning(f"connection from unknown address {peer} closed",
                              listen_address=local, peer=f"{peer}:{raddr[1]}")
            conn.close()
            return
        self.accepted += 1
        self._log.debug(f"accepted inbound connection from: {peer}:{raddr[1]}",
                        listen_address=local, peer=f"{peer}:{raddr[1]}", neighbor=peer)
        info = Connection(peer_addr=peer, peer_port=raddr[1], local_addr=normalize_addr(laddr[0]),
                          local_port=laddr[1], accepted_at=time.time())
        try:
            owner(conn, info)
        except OSError as e:
            self._log.error(f"handing connection from {peer} to its worker failed: {e}", neighbor=peer)
        finally:
            conn.close()   # the worker holds its own copy of the descriptor now

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for s in self._socks:
            s.close()
        for s in self._closing:
            s.close()
        self._closing = set()
        self._socks = []
        self._keys = {}
        self._task_of = {}
        if self._listen:
            self._log.info("dispatcher shutdown complete",
                           listen_address=",".join(f"{a}:{p}" for a, p in self._listen))
