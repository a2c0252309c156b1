"""Shared by the control-socket tests: a raw line client and a NOTIFICATION reader for the
scripted BGP peers of tests/supervisor/test_main.py (whose helpers are reused)."""
from __future__ import annotations

import json
import socket
import time

import pytest

from tests.supervisor.test_main import BOUND

__all__ = ["Ctl", "read_notification", "wait_status"]


class Ctl:
    """A raw control-socket client: send lines, read JSON lines; every read bounded."""

    def __init__(self, path, timeout: float = BOUND):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = b""
        self.ids = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> dict:
        while b"\n" not in self.buf:
            b = self.sock.recv(65536)
            if not b:
                raise EOFError(self.buf)
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, cmd: str, **args) -> dict:
        """The whole reply (ok or not)."""
        self.ids += 1
        self.send(json.dumps({"v": 1, "id": self.ids, "cmd": cmd, "args": args}).encode() + b"\n")
        r = self.line()
        assert r["id"] == self.ids and r["v"] == 1, r
        return r

    def data(self, cmd: str, **args):
        r = self.call(cmd, **args)
        assert r["ok"] is True, r
        return r["data"]

    def close(self) -> None:
        self.sock.close()


def read_notification(sock: socket.socket, timeout: float = BOUND) -> tuple[int, int, bytes]:
    """Read BGP messages from ``sock`` until a NOTIFICATION: (code, subcode, data)."""
    sock.settimeout(timeout)
    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        while len(buf) >= 19 and len(buf) >= int.from_bytes(buf[16:18], "big"):
            n = int.from_bytes(buf[16:18], "big")
            if buf[18] == 3:
                return buf[19], buf[20], buf[21:n]
            buf = buf[n:]
        b = sock.recv(4096)
        if not b:
            pytest.fail(f"connection closed without a NOTIFICATION ({buf!r})")
        buf += b
    pytest.fail("no NOTIFICATION in time")


def wait_status(ctl: Ctl, neighbor: str, pred, what: str, timeout: float = BOUND) -> dict:
    """Poll ``neighbor`` until ``pred(status)``."""
    end = time.monotonic() + timeout
    while True:
        r = ctl.call("neighbor", neighbor=neighbor)
        if r["ok"] and pred(r["data"]):
            return r["data"]
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}; last reply {r}")
        time.sleep(0.05)
