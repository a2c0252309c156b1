"""Max-prefix end to end: ``python -m rserver run`` (supervisor + RIB process + real session
workers) and scripted BGP peers on loopback announcing more prefixes than their limit.

One rserver (with its RIB process) runs four neighbors, one per action:
  127.0.1.1  ipv4 limit 100, shutdown: NOTIFICATION 6/1 with data 0001 01 00000064, stays
             down (connections refused) until ``neighbor up`` over the control socket;
  127.0.1.2  ipv4 limit 100, restart: the same NOTIFICATION, then the session comes back by
             itself (restart_after is in minutes, fractions allowed: 0.0167 is one second);
  127.0.1.3  ipv4 limit 100, warn: the session stays Established, a warning is logged;
  127.0.1.4  ipv4 limit 1000 / ipv6 limit 50, shutdown: 500 IPv4 prefixes are fine, 51 IPv6
             prefixes are not: data 0002 01 00000032 (the families are counted apart).
Every process is stopped by PID; every wait is bounded.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.procs import alive, children, free_port, kill_pid, wait_until

pytest.importorskip("rserver.rib._tables")

BOUND = 15.0
A, B, C, D = "127.0.1.1", "127.0.1.2", "127.0.1.3", "127.0.1.4"


def wait_for(pred, what: str, timeout: float = BOUND):
    return wait_until(pred, what, timeout)


def _open_msg(asn: int, bgp_id: str, v6: bool, rr: bool = False) -> bytes:
    caps = bytes([2, 6, 1, 4, 0, 1, 0, 1])
    if rr:
        caps += bytes([2, 2, 2, 0])                  # ROUTE-REFRESH (RFC 2918)
    if v6:
        caps += bytes([2, 6, 1, 4, 0, 2, 0, 1])
    caps += bytes([2, 6, 65, 4]) + asn.to_bytes(4, "big")
    body = (bytes([4]) + (asn if asn < 65536 else 23456).to_bytes(2, "big") + (90).to_bytes(2, "big")
            + socket.inet_aton(bgp_id) + bytes([len(caps)]) + caps)
    return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes([1]) + body


KEEPALIVE = b"\xff" * 16 + (19).to_bytes(2, "big") + bytes([4])


class Speaker:
    """A scripted BGP peer: establishes, sends a table, reads what comes back."""

    def __init__(self, src: str, port: int, asn: int, v6: bool = False, rr: bool = False):
        self.src, self.port, self.asn, self.v6, self.rr = src, port, asn, v6, rr
        self.sock: socket.socket | None = None
        self.buf = b""

    def try_establish(self) -> bool:
        self.close()
        s = socket.socket()
        s.settimeout(3.0)
        try:
            s.bind((self.src, 0))
            s.connect(("127.0.0.1", self.port))
            s.sendall(_open_msg(self.asn, self.src, self.v6, self.rr) + KEEPALIVE)
            self.sock, self.buf = s, b""
            got = []
            while 4 not in got:
                m = self.read_msg(3.0)
                if m is None or m[0] == 3:
                    raise EOFError(f"closed or NOTIFICATION after {got}")
                got.append(m[0])
            return True
        except (OSError, EOFError):
            s.close()
            self.sock = None
            return False

    def establish(self, timeout: float = BOUND) -> None:
        wait_for(self.try_establish, f"a BGP session from {self.src}", timeout)

    def read_msg(self, timeout: float):
        """The next message as (type, body), or None on EOF/timeout."""
        assert self.sock is not None
        end = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 19:
                n = int.from_bytes(self.buf[16:18], "big")
                if len(self.buf) >= n:
                    m = (self.buf[18], self.buf[19:n])
                    self.buf = self.buf[n:]
                    return m
            left = end - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                b = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return None
            if not b:
                return None
            self.buf += b

    def notification(self, timeout: float = BOUND):
        """Skip KEEPALIVEs/UPDATEs until a NOTIFICATION: (code, subcode, data) or None."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            m = self.read_msg(end - time.monotonic())
            if m is None:
                return None
            if m[0] == 3:
                return m[1][0], m[1][1], bytes(m[1][2:])
        return None

    def still_up(self, seconds: float) -> bool:
        """No NOTIFICATION and no EOF for ``seconds`` (keepalives are fine)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = self.read_msg(end - time.monotonic())
            if m is None:
                return time.monotonic() >= end - 0.05 and self.sock is not None and self._open()
            if m[0] == 3:
                return False
        return True

    def _open(self) -> bool:
        self.sock.setblocking(False)
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture(scope="module")
def rserver(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("maxpfx")
    port = free_port()
    conf = tmp / "rserver.toml"
    conf.write_text(f"""
[global]
local_as = 64500
router_id = "127.0.0.1"
listen = ["127.0.0.1"]
port = {port}
run_dir = "{tmp / 'run'}"

[[neighbor]]
address = "{A}"
as = 64501
ipv6 = false
max_prefix = {{ ipv4 = 100, action = "shutdown" }}

[[neighbor]]
address = "{B}"
as = 64502
ipv6 = false
max_prefix = {{ ipv4 = 100, action = "restart", restart_after = 0.0167 }}

[[neighbor]]
address = "{C}"
as = 64503
ipv6 = false
max_prefix = {{ ipv4 = 100, action = "warn" }}

[[neighbor]]
address = "{D}"
as = 64504
max_prefix = {{ ipv4 = 1000, ipv6 = 50, action = "shutdown" }}
""")
    log = tmp / "rserver.log"
    env = dict(os.environ)
    with open(log, "wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(conf), "--log-level", "info"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=str(Path(__file__).parents[2]))
    seen: set[int] = set()

    class R:
        pass
    r = R()
    r.proc, r.port, r.log_path, r.run_dir, r.seen = proc, port, log, tmp / "run", seen
    r.log = lambda: log.read_text(errors="replace")
    wait_for(lambda: (tmp / "run" / "rserver.sock").exists() and len(children(proc.pid)) == 5,
             "rserver with the RIB process and 4 workers")
    seen.update(children(proc.pid))
    yield r
    seen.update(children(proc.pid))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(BOUND)
        except subprocess.TimeoutExpired:
            kill_pid(proc.pid)
            proc.wait(5)
    leftovers = [p for p in seen if alive(p)]
    for p in leftovers:
        kill_pid(p)
    assert proc.returncode == 0, r.log()[-3000:]
    assert "rib process started" in r.log() and "Traceback" not in r.log()
    assert not leftovers, f"processes left behind: {leftovers}"


def control(r, cmd: str, **args):
    from rserver.control.client import ControlClient
    with ControlClient(str(r.run_dir / "rserver.sock"), timeout=5) as c:
        return c.request(cmd, args)


def table_v4(n: int, asn: int) -> bytes:
    from bench.tablegen import generate_v4
    return generate_v4(n=n, peer_as=asn, cache=False).wire


def table_v6(n: int, asn: int) -> bytes:
    from bench.tablegen import generate_v6
    return generate_v6(n=n, peer_as=asn, cache=False).wire


def test_shutdown_sends_cease_6_1_and_stays_down_until_neighbor_up(rserver):
    p = Speaker(A, rserver.port, 64501)
    try:
        p.establish()
        p.send(table_v4(101, 64501))
        assert p.notification() == (6, 1, bytes.fromhex("0001" "01" "00000064"))
        p.close()
        time.sleep(1.5)
        assert not p.try_establish(), "the session came back without an operator"
        st = control(rserver, "neighbor", neighbor=A)
        assert st["down_reason"] == "max-prefix" and st["max_prefix"]["action"] == "shutdown"
        assert st["max_prefix"]["limit"] == 100 and st["state"] == "idle"
        control(rserver, "neighbor-admin", neighbor=A, op="up")
        p.establish()
        assert control(rserver, "neighbor", neighbor=A)["down_reason"] is None
    finally:
        p.close()


def test_restart_comes_back_after_restart_after(rserver):
    p = Speaker(B, rserver.port, 64502)
    try:
        p.establish()
        p.send(table_v4(101, 64502))
        assert p.notification() == (6, 1, bytes.fromhex("0001" "01" "00000064"))
        t0 = time.monotonic()
        st = control(rserver, "neighbor", neighbor=B)
        assert st["max_prefix"]["action"] == "restart" and st["max_prefix"]["restart_at"] > time.time() - 1
        p.establish()                          # by itself, after ~1 s (test override)
        assert time.monotonic() - t0 > 0.5
        # the new session is counted from zero: 100 prefixes are within the limit
        p.send(table_v4(100, 64502))
        assert p.still_up(1.5)
    finally:
        p.close()


def test_warn_keeps_the_session_and_logs(rserver):
    p = Speaker(C, rserver.port, 64503)
    try:
        p.establish()
        p.send(table_v4(150, 64503))
        assert p.still_up(2.0)
        wait_for(lambda: "max-prefix exceeded: 150 ipv4 unicast prefixes, limit 100 (action warn" in rserver.log(),
                 "the worker's warning")
        assert "150 ipv4 prefixes exceed the limit 100 (action warn)" in rserver.log()
        assert control(rserver, "neighbor", neighbor=C)["state"] == "established"
    finally:
        p.close()


def test_ipv6_limit_counted_separately(rserver):
    p = Speaker(D, rserver.port, 64504, v6=True)
    try:
        p.establish()
        p.send(table_v4(500, 64504))
        assert p.still_up(1.0)
        p.send(table_v6(51, 64504))
        assert p.notification() == (6, 1, bytes.fromhex("0002" "01" "00000032"))
    finally:
        p.close()
