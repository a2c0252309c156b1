"""Real BGP daemons (BIRD 2, GoBGP) and rserver itself as processes on loopback.

Each daemon gets its own directory with its config, control socket, pid file and log,
binds only its own 127.0.1.N address (BIRD: ``strict bind``; GoBGP: ``local-address-list``)
and is stopped by PID (SIGTERM, then SIGKILL after a bound) by ``stop()``, which the
fixtures call at teardown even when the test failed. Every wait is a bounded poll.

rserver listens on 127.0.0.1:PORT; it connects out to a neighbor's address on the same
PORT (the session layer's default remote port is global.port), so every daemon listens on
127.0.1.N:PORT too. No privileged port is needed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from tests.procs import alive as pid_alive, children, free_port, worker_children  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parents[2]
RS_ADDR = "127.0.0.1"
RS_AS = 64500
STOP_BOUND = 5.0


# --- generic helpers ---------------------------------------------------------------------------

def find_binary(name: str) -> Optional[str]:
    """The daemon's path; /usr/sbin is searched too (not on a normal user's PATH)."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


def require_binary(name: str, package: str) -> str:
    """The binary, or skip (locally) / fail (in CI, env CI=true: absence is a failure)."""
    b = find_binary(name)
    if b is None:
        msg = f"{name} is not installed (Debian package {package}; scripts/setup.sh installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + " -- required in CI")
        pytest.skip(msg)
    return b


def wait_until(pred: Callable[[], object], what: str, timeout: float = 20.0,
               interval: float = 0.2, diag: Optional[Callable[[], str]] = None):
    """Poll ``pred`` until it returns something true (returned) or fail after ``timeout``."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            extra = ""
            if diag is not None:
                try:
                    extra = "\n" + diag()
                except Exception as e:  # noqa: BLE001 - diagnostics only
                    extra = f"\n(diagnostics failed: {e})"
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}{extra}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, bound: float = STOP_BOUND) -> Optional[int]:
    """SIGTERM, then SIGKILL after ``bound``; always reaped. The exit code (None: killed)."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(bound)
        return None


class Daemon:
    name = "daemon"

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / f"{self.name}.log"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def _spawn(self, argv: list[str]) -> None:
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir)
        finally:
            out.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        if self.proc is None:
            return None
        return stop_process(self.proc)


# --- BIRD 2 --------------------------------------------------------------------------------------

class Bird(Daemon):
    """``bird -f -c CONF -s SOCK -P PIDFILE``; state read with ``birdc -s SOCK``.

    ``peers``: (protocol name, neighbor address, neighbor AS, passive) tuples.
    """

    name = "bird"

    def __init__(self, workdir: Path, address: str, asn: int, port: int,
                 peers: list[tuple[str, str, int, bool]], router_id: Optional[str] = None,
                 hold: int = 9, keepalive: int = 3):
        super().__init__(workdir)
        self.address, self.asn, self.port = address, asn, port
        self.router_id = router_id or address
        self.sock = self.dir / "bird.ctl"
        self.conf = self.dir / "bird.conf"
        self.pidfile = self.dir / "bird.pid"
        protos = []
        for name, addr, peer_as, passive in peers:
            protos.append(f"""
protocol bgp {name} {{
    local {address} port {port} as {asn};
    neighbor {addr} port {port} as {peer_as};
    strict bind yes;        # listen on {address}:{port} only
    multihop;               # loopback is not a "directly connected" network to BIRD
    passive {'on' if passive else 'off'};
    hold time {hold}; keepalive time {keepalive};
    connect delay time 1; connect retry time 2; error wait time 1, 2;
    ipv4 {{ import all; export none; }};
}}
""")
        self.conf.write_text(f'router id {self.router_id};\nlog "{self.dir / "bird-events.log"}" all;\n'
                             f"protocol device {{}}\n" + "".join(protos))

    def start(self) -> "Bird":
        self._spawn([require_binary("bird", "bird2"), "-f", "-c", str(self.conf),
                     "-s", str(self.sock), "-P", str(self.pidfile)])
        wait_until(lambda: self.proc.poll() is not None or self._ready(), "bird control socket",
                   timeout=10, interval=0.1)
        if self.proc.poll() is not None:
            pytest.fail(f"bird exited at start ({self.proc.returncode}):\n{self.log()}")
        return self

    def _ready(self) -> bool:
        return self.sock.exists() and self.birdc("show status").returncode == 0

    def birdc(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run([require_binary("birdc", "bird2"), "-s", str(self.sock), *command.split()],
                              capture_output=True, text=True, timeout=10)

    def show(self, proto: str) -> str:
        return self.birdc(f"show protocols all {proto}").stdout

    def info(self, proto: str) -> dict:
        """``state`` (BGP state), ``last_error``, ``info`` (the Info column), ``raw``."""
        text = self.show(proto)
        out = {"raw": text, "state": "", "last_error": "", "info": ""}
        m = re.search(r"^\s*BGP state:\s+(\S+)", text, re.M)
        if m:
            out["state"] = m.group(1)
        m = re.search(r"^\s*Last error:\s+(.*)$", text, re.M)
        if m:
            out["last_error"] = m.group(1).strip()
        m = re.search(rf"^{re.escape(proto)}\s+BGP\s+\S+\s+\S+\s+\S+\s+(.*)$", text, re.M)
        if m:
            out["info"] = m.group(1).strip()
        return out

    def state(self, proto: str) -> str:
        return self.info(proto)["state"]

    def events(self) -> str:
        try:
            return (self.dir / "bird-events.log").read_text(errors="replace")
        except OSError:
            return ""


# --- GoBGP ---------------------------------------------------------------------------------------

GOBGP_STATES = {0: "unknown", 1: "idle", 2: "connect", 3: "active", 4: "opensent",
                5: "openconfirm", 6: "established"}


class Gobgp(Daemon):
    """``gobgpd -f CONF -t toml --api-hosts 127.0.0.1:API``; state via ``gobgp -p API -j``.

    ``peers``: (neighbor address, neighbor AS, passive) tuples. The log is plain text
    (``-p``); received NOTIFICATIONs are logged as ``msg="received notification" Code=C
    ... Subcode=S``.
    """

    name = "gobgp"

    def __init__(self, workdir: Path, address: str, asn: int, port: int,
                 peers: list[tuple[str, int, bool]], router_id: Optional[str] = None,
                 hold: int = 9, keepalive: int = 3):
        super().__init__(workdir)
        self.address, self.asn, self.port = address, asn, port
        self.router_id = router_id or address
        self.api_port = free_port()
        self.conf = self.dir / "gobgpd.toml"
        text = f"""[global.config]
  as = {asn}
  router-id = "{self.router_id}"
  port = {port}
  local-address-list = ["{address}"]
"""
        for addr, peer_as, passive in peers:
            text += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {peer_as}
  [neighbors.transport.config]
    local-address = "{address}"
    remote-port = {port}
    passive-mode = {'true' if passive else 'false'}
  [neighbors.timers.config]
    hold-time = {hold}
    keepalive-interval = {keepalive}
    connect-retry = 1
    idle-hold-time-after-reset = 1
"""
        self.conf.write_text(text)

    def start(self) -> "Gobgp":
        self._spawn([require_binary("gobgpd", "gobgpd"), "-f", str(self.conf), "-t", "toml",
                     "--api-hosts", f"127.0.0.1:{self.api_port}", "--pprof-disable", "-p", "-l", "debug"])
        wait_until(lambda: self.proc.poll() is not None or self._ready(), "gobgpd API",
                   timeout=10, interval=0.1)
        if self.proc.poll() is not None:
            pytest.fail(f"gobgpd exited at start ({self.proc.returncode}):\n{self.log()}")
        return self

    def _ready(self) -> bool:
        return self.cli("global").returncode == 0

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([require_binary("gobgp", "gobgpd"), "-p", str(self.api_port), *args],
                              capture_output=True, text=True, timeout=10)

    def neighbor(self, addr: str) -> dict:
        r = self.cli("-j", "neighbor", addr)
        if r.returncode != 0 or not r.stdout.strip():
            return {}
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {}

    def state(self, addr: str) -> str:
        st = self.neighbor(addr).get("state", {}).get("session_state", 0)
        return GOBGP_STATES.get(st, str(st))

    def notifications_received(self, addr: str) -> list[tuple[int, int]]:
        """(code, subcode) of every NOTIFICATION gobgpd logged as received from ``addr``."""
        out = []
        for line in self.log().splitlines():
            if 'msg="received notification"' in line and f"Key={addr}" in line:
                c = re.search(r"\bCode=(\d+)", line)
                s = re.search(r"\bSubcode=(\d+)", line)
                if c and s:
                    out.append((int(c.group(1)), int(s.group(1))))
        return out

    def rejected_in_openconfirm(self, addr: str) -> bool:
        """gobgpd (debug log) went OpenConfirm -> Idle on something other than a KEEPALIVE:
        what it records when it gets a NOTIFICATION (e.g. 2/2) right after the peer's OPEN."""
        return any('msg="state changed"' in line and f"Key={addr}" in line
                   and "old=BGP_FSM_OPENCONFIRM" in line and "new=BGP_FSM_IDLE" in line
                   for line in self.log().splitlines())


# --- rserver --------------------------------------------------------------------------------------

class RServer(Daemon):
    """``python -m rserver run -c CONF --log-format json --log-level debug`` as a subprocess.

    ``neighbors``: (address, AS, passive, extra TOML lines) tuples.
    """

    name = "rserver"

    def __init__(self, workdir: Path, port: int, neighbors: list[tuple[str, int, bool, str]],
                 router_id: str = RS_ADDR, hold: int = 9, session_workers: int = 0):
        super().__init__(workdir)
        self.port = port
        self.run_dir = self.dir / "run"
        self.conf = self.dir / "rserver.toml"
        text = f"""[global]
local_as = {RS_AS}
router_id = "{router_id}"
listen = ["{RS_ADDR}"]
port = {port}
run_dir = "{self.run_dir}"
session_workers = {session_workers}

[defaults]
hold_time = {hold}
connect_retry = 1
"""
        for addr, asn, passive, extra in neighbors:
            text += (f'\n[[neighbor]]\naddress = "{addr}"\nas = {asn}\n'
                     f'passive = {"true" if passive else "false"}\n{extra}\n')
        self.conf.write_text(text)

    def start(self) -> "RServer":
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        out = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rserver", "run", "-c", str(self.conf), "--log-format", "json", "--log-level", "debug"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.dir)
        finally:
            out.close()
        wait_until(lambda: self.proc.poll() is not None or (self.run_dir / "rserver.pid").exists(),
                   "rserver pid file", timeout=15, interval=0.1)
        if self.proc.poll() is not None:
            pytest.fail(f"rserver exited at start ({self.proc.returncode}):\n{self.log()}")
        return self

    def records(self) -> list[dict]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def show_neighbor(self, addr: str) -> dict:
        """``rserver show neighbor ADDR -j`` over the control socket ({} if it did not answer)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        try:
            r = subprocess.run([sys.executable, "-m", "rserver", "show", "neighbor", addr, "-j",
                                "-s", str(self.run_dir / "rserver.sock")],
                               capture_output=True, text=True, timeout=10, env=env)
        except subprocess.TimeoutExpired:
            return {}
        if r.returncode != 0 or not r.stdout.strip():
            return {}
        try:
            return json.loads(r.stdout)
        except ValueError:
            return {}

    def workers(self) -> list[int]:
        """The session workers (not the RIB process)."""
        return worker_children(self.proc.pid) if self.proc else []

    def stop(self) -> Optional[int]:
        """SIGTERM and wait (bounded); also kills any child left behind (a failure anyway)."""
        if self.proc is None:
            return None
        kids = children(self.proc.pid)
        code = stop_process(self.proc, bound=10.0)
        for k in kids:
            if pid_alive(k):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return code
