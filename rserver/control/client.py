"""A blocking client for the control socket (what the CLI uses; docs/control.md)."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Iterator, Optional

from .protocol import MAX_LINE, PROTOCOL_VERSION, decode_reply_line

__all__ = ["ControlClient", "ControlError", "NotRunning", "DEFAULT_SOCKETS", "find_socket"]

DEFAULT_SOCKETS = ("./run/rserver.sock", "/run/rserver/rserver.sock")
REPLY_MAX = 64 * 1024 * 1024     # a reply line this long is a broken server


class ControlError(Exception):
    """An error reply (``code`` from protocol.ERROR_CODES) or a broken connection."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class NotRunning(ControlError):
    """Nothing listens on the socket (missing file, connection refused)."""

    def __init__(self, path: str, why: str):
        super().__init__("not-running", f"not running: cannot connect to {path}: {why}")
        self.path = path


def find_socket(socket_path: Optional[str] = None, run_dir: Optional[str] = None) -> str:
    """The socket to use: ``socket_path``; else ``run_dir/rserver.sock``; else the first of
    DEFAULT_SOCKETS that exists (the first one if none does, for the error message)."""
    if socket_path:
        return socket_path
    if run_dir:
        return str(Path(run_dir) / "rserver.sock")
    for p in DEFAULT_SOCKETS:
        if os.path.exists(p):
            return p
    return DEFAULT_SOCKETS[0]


class ControlClient:
    def __init__(self, path: str, timeout: Optional[float] = 15.0):
        self.path = path
        self.timeout = timeout
        self._ids = 0
        self._buf = b""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(path)
        except FileNotFoundError:
            s.close()
            raise NotRunning(path, "no such socket file") from None
        except ConnectionRefusedError:
            s.close()
            raise NotRunning(path, "connection refused (stale socket?)") from None
        except PermissionError:
            s.close()
            raise ControlError("permission", f"cannot connect to {path}: permission denied "
                               "(the socket is mode 0660: be its owner or in its group)") from None
        except OSError as e:
            s.close()
            raise NotRunning(path, e.strerror or str(e)) from None
        self.sock = s

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> dict:
        while b"\n" not in self._buf:
            try:
                b = self.sock.recv(65536)
            except socket.timeout:
                raise ControlError("timeout", f"no reply from {self.path} within {self.timeout:g}s") from None
            except OSError as e:
                raise ControlError("disconnected", f"{self.path}: {e}") from None
            if not b:
                raise ControlError("disconnected", f"{self.path}: the server closed the connection")
            self._buf += b
            if len(self._buf) > REPLY_MAX:
                raise ControlError("disconnected", f"{self.path}: reply too long")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return decode_reply_line(line)
        except ValueError as e:
            raise ControlError("bad-reply", f"{self.path}: unreadable reply: {e}") from None

    def send_raw(self, line: bytes) -> None:
        self.sock.sendall(line)

    def request(self, cmd: str, args: Optional[dict] = None) -> Any:
        """Send one request and return the reply's ``data``; an error reply raises ControlError."""
        import msgspec
        self._ids += 1
        rid = self._ids
        if len(msgspec.json.encode(args or {})) > MAX_LINE - 100:
            raise ControlError("line-too-long", "request too long")
        self.sock.sendall(msgspec.json.encode({"v": PROTOCOL_VERSION, "id": rid, "cmd": cmd,
                                               "args": args or {}}) + b"\n")
        while True:
            r = self._line()
            if r.get("id") == rid or r.get("id") is None:
                break
        if r.get("ok"):
            return r.get("data")
        err = r.get("error") or {}
        raise ControlError(str(err.get("code", "?")), str(err.get("message", "error")))

    def monitor(self, args: Optional[dict] = None) -> Iterator[dict]:
        """Switch to streaming and yield each event line (dicts with "event" and "data");
        ``args`` e.g. ``{"routes": true, "prefix": "10.0.0.0/8"}`` (docs/control.md)."""
        self.request("monitor", args)
        self.sock.settimeout(None)
        self.timeout = None
        while True:
            yield self._line()
