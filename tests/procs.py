"""Process and port helpers shared by the tests that start real processes.

Every test that starts a process stops it by PID (DEVELOPERS.md); these read /proc so
they work for grandchildren too and never mistake a zombie for a live process.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from rserver.lab import procinfo


def free_port(addr: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``addr`` a moment ago."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    return procinfo.alive(pid)


def children(pid: int) -> list[int]:
    """Live (non-zombie) child PIDs of ``pid``."""
    return procinfo.children(pid)


def kill_pid(pid: int) -> None:
    """SIGTERM, then SIGKILL after a bound; reap it if it is our child."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        end = time.monotonic() + grace
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.02)
        if not alive(pid):
            break
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def comm(pid: int) -> str:
    """The process name (rserver names its children "rserver-w<i>" and "rserver-rib")."""
    return procinfo.comm(pid, default="")


def worker_children(pid: int) -> list[int]:
    """The session-worker children of a supervisor (not its RIB process)."""
    return [k for k in children(pid) if comm(k).startswith("rserver-w")]


def wait_until(pred, what: str, timeout: float):
    """Poll ``pred`` every 50 ms until it is true (its value is returned); fail the test
    after ``timeout`` seconds, naming ``what`` was awaited."""
    import pytest
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def member_config(tmp_path: Path, members, *, global_extra: str = "", defaults: str = "") -> tuple[Path, int]:
    """A route-server config on 127.0.0.1 (free port, run dir in tmp_path) with one
    neighbor per ``members`` index i: 127.0.1.i, AS 64500 + i. Returns (path, port)."""
    port = free_port("127.0.0.1")
    text = (f'[global]\nlocal_as = 64500\nrouter_id = "127.0.0.1"\nlisten = ["127.0.0.1"]\n'
            f'port = {port}\nrun_dir = "{tmp_path / "run"}"\n{global_extra}\n[defaults]\n{defaults}\n')
    for i in members:
        text += f'\n[[neighbor]]\naddress = "127.0.1.{i}"\nas = {64500 + i}\n'
    path = tmp_path / "rs.toml"
    path.write_text(text)
    return path, port


class RunningServer:
    """``python -m rserver run -c CONFIG`` for the length of a ``with`` block: started, its
    control socket awaited, then SIGTERM and a bounded wait (SIGKILL by PID after that)."""

    def __init__(self, config: Path, log: Path, start_timeout: float = 20.0):
        self.config, self.log_path, self.start_timeout = config, log, start_timeout
        self.proc = None

    def __enter__(self) -> "RunningServer":
        import subprocess
        import sys
        import tomllib
        run_dir = Path(tomllib.loads(self.config.read_text())["global"]["run_dir"])
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(self.config)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: (run_dir / "rserver.sock").exists() or self.proc.poll() is not None,
                       "the control socket", self.start_timeout)
            if self.proc.poll() is not None:
                import pytest
                pytest.fail("rserver exited at start:\n" + self.log_path.read_text()[-3000:])
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log_path.read_text()

    def __exit__(self, *exc) -> None:
        import subprocess
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                kill_pid(self.proc.pid)
        self._log.close()
