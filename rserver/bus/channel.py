"""The supervisor <-> session-worker channel: a unix SOCK_SEQPACKET socket pair.

One packet is one msgpack-encoded message from bus/messages.py; an accepted TCP connection
travels as an SCM_RIGHTS file descriptor attached to its ``Connection`` message. Packets
keep their boundaries, so no framing of our own is needed.
"""
from __future__ import annotations

import socket
from typing import Any, Optional, Sequence

import msgspec

from .messages import Connection, SupervisorToWorker, WorkerToSupervisor

__all__ = ["channel_pair", "send", "recv", "to_worker_decoder", "to_supervisor_decoder", "ChannelError"]

MAX_PACKET = 1 << 20        # a PeerAdd with a big config fits easily
_enc = msgspec.msgpack.Encoder()
to_worker_decoder = msgspec.msgpack.Decoder(SupervisorToWorker)
to_supervisor_decoder = msgspec.msgpack.Decoder(WorkerToSupervisor)


class ChannelError(ValueError):
    """A packet that is not a valid message (a bug on the other side): logged and dropped."""


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """A (supervisor end, worker end) pair. After fork each side must close the other's end,
    or it will never see EOF when its partner goes away."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(chan: socket.socket, msg: Any, fds: Sequence[int] = ()) -> None:
    data = _enc.encode(msg)
    if fds:
        socket.send_fds(chan, [data], list(fds))
    else:
        chan.send(data)


def recv(chan: socket.socket, decoder: msgspec.msgpack.Decoder) -> Optional[tuple[Any, Optional[socket.socket]]]:
    """Receive one message, and the connection attached to it if it is a ``Connection``.

    None means the other side closed the channel. A malformed packet raises ChannelError
    after closing any descriptors it carried, so a bad packet never leaks an fd.
    """
    data, fds, _flags, _addr = socket.recv_fds(chan, MAX_PACKET, 4)
    if not data and not fds:
        return None
    try:
        msg = decoder.decode(data)
        want = 1 if isinstance(msg, Connection) else 0
        if len(fds) != want:
            raise ChannelError(f"{type(msg).__name__} with {len(fds)} file descriptors, expected {want}")
    except (msgspec.DecodeError, ChannelError) as e:
        for fd in fds:
            socket.close(fd)
        raise ChannelError(f"bad packet on the worker channel: {e}") from None
    if not fds:
        return msg, None
    sock = socket.socket(fileno=fds[0])
    sock.setblocking(False)
    return msg, sock
