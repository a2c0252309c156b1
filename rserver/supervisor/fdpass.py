"""Handing accepted TCP connections from the supervisor to a session worker.

The supervisor owns the listening sockets (ARCHITECTURE.md); a connection accepted there is
passed to the worker that owns the peer's address over a unix SOCK_SEQPACKET socket pair,
as an SCM_RIGHTS ancillary message. Each packet carries one fd and a small msgspec header,
so message boundaries need no framing of our own.
"""
from __future__ import annotations

import socket
from typing import Optional

import msgspec

__all__ = ["Handoff", "channel_pair", "send_connection", "recv_connection"]

_MAX_HEADER = 4096


class Handoff(msgspec.Struct, frozen=True):
    """What the worker needs to know about a passed connection."""

    peer_addr: str          # the remote address (the neighbor)
    peer_port: int
    local_addr: str
    local_port: int
    accepted_at: float      # supervisor's time.time() when accept() returned


_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder(Handoff)


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A (supervisor end, worker end) pair; the worker end is inherited across fork."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_connection(chan: socket.socket, conn: socket.socket, info: Handoff) -> None:
    """Pass ``conn`` to the other end of ``chan``. The caller closes its copy afterwards."""
    socket.send_fds(chan, [_enc.encode(info)], [conn.fileno()])


def recv_connection(chan: socket.socket) -> Optional[tuple[socket.socket, Handoff]]:
    """Receive one passed connection; None when the supervisor closed the channel.

    A packet without exactly one fd, or with an undecodable header, is a bug on the other
    side: any fds received are closed and ValueError is raised (never a leaked descriptor).
    """
    data, fds, _flags, _addr = socket.recv_fds(chan, _MAX_HEADER, 4)
    if not data and not fds:
        return None
    try:
        if len(fds) != 1:
            raise ValueError(f"expected one file descriptor in a handoff, got {len(fds)}")
        info = _dec.decode(data)
    except (ValueError, msgspec.DecodeError) as e:
        for fd in fds:
            socket.close(fd)
        raise ValueError(f"bad connection handoff: {e}") from None
    sock = socket.socket(fileno=fds[0])
    sock.setblocking(False)
    return sock, info
