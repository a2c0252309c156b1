"""The RIB bus over tcp:// with CURVE, end to end ([bus] in the config; docs/rib.md "Bus").

``python -m rserver run`` (supervisor + RIB process + real session workers) with
``[bus] endpoint = "tcp://127.0.0.1:FREEPORT"`` and keys from ``rserver bus-keygen``:
two members (lab Speakers from 127.0.1.1 / 127.0.1.2) exchange routes, which only works if
the workers and the RIB talk over the encrypted bus; ``show rib`` over the control socket
(the control server's RIB client, also a CURVE client) answers; a DEALER with the right
client key gets a query answered, one with a wrong key gets nothing and the RIB logs the
refused key. Loopback only; every process is stopped by PID; every wait is bounded.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from rserver.bus.transport import CurveClient
from rserver.config import read_key_file
from tests.procs import alive, free_port, kill_pid, wait_until

pytest.importorskip("rserver.rib._tables")

BOUND = 20.0
A, B = "127.0.1.1", "127.0.1.2"


def _wait(pred, what: str, timeout: float = BOUND):
    return wait_until(pred, what, timeout)


def _run(*args: str, timeout: float = BOUND) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rserver", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def server(tmp_path: Path):
    keys = tmp_path / "keys"
    r = _run("bus-keygen", str(keys))
    assert r.returncode == 0, r.stderr
    for name in ("bus-server.key", "bus-client.key"):
        assert (keys / name).stat().st_mode & 0o777 == 0o600
    port, bus_port = free_port(), free_port()
    run_dir = tmp_path / "run"
    cfg = tmp_path / "rs.toml"
    cfg.write_text(f"""
[global]
local_as = 65000
router_id = "192.0.2.254"
listen = ["127.0.0.1"]
port = {port}
run_dir = "{run_dir}"
log_level = "info"

[bus]
endpoint = "tcp://127.0.0.1:{bus_port}"
server_key_file = "keys/bus-server.key"
client_key_file = "{keys / 'bus-client.key'}"

[[neighbor]]
address = "{A}"
as = 64501

[[neighbor]]
address = "{B}"
as = 64502
""")
    r = _run("run", "-c", str(cfg), "--check")
    assert r.returncode == 0, r.stderr
    log = open(tmp_path / "rserver.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(cfg)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: (run_dir / "rserver.sock").exists() or proc.poll() is not None, "the control socket")
        assert proc.poll() is None, Path(log.name).read_text()
        yield dict(port=port, bus=f"tcp://127.0.0.1:{bus_port}", keys=keys, run_dir=run_dir,
                   log=Path(log.name), proc=proc)
    finally:
        kill_pid(proc.pid)
        log.close()
    assert not alive(proc.pid)


async def _members(port: int):
    from rserver.lab.speaker import Speaker
    a = Speaker(A, 64501, A, "127.0.0.1", port, ipv6=False)
    b = Speaker(B, 64502, B, "127.0.0.1", port, ipv6=False)
    for sp in (a, b):       # the workers may still be starting: retry, bounded
        end = time.monotonic() + BOUND
        while True:
            try:
                await sp.connect(5)
                break
            except Exception:
                if time.monotonic() > end:
                    raise
                await asyncio.sleep(0.2)
    return a, b


def test_routes_cross_the_tcp_curve_bus(server):
    async def t():
        a, b = await _members(server["port"])
        try:
            await a.announce(["198.51.100.0/24", "203.0.113.0/24"],
                             attrs={"as_path": [64501], "next_hop": "192.0.2.1"})
            await b.announce(["192.0.2.128/25"], attrs={"as_path": [64502], "next_hop": "192.0.2.2"})
            await b.wait_count(1, 2, BOUND)         # A's routes reached B: worker -> RIB -> worker
            await a.wait_count(1, 1, BOUND)
            assert b.route_attrs("198.51.100.0/24").next_hop == "192.0.2.1"
            # the control socket's RIB client is a CURVE client too
            r = await asyncio.to_thread(_run, "show", "rib", "-s", str(server["run_dir"] / "rserver.sock"), "-j")
            assert r.returncode == 0, r.stdout + r.stderr
            prefixes = {x.get("prefix") for x in json.loads(r.stdout)["routes"]}
            assert {"198.51.100.0/24", "203.0.113.0/24", "192.0.2.128/25"} <= prefixes, r.stdout
        finally:
            await a.close()
            await b.close()

    asyncio.run(asyncio.wait_for(t(), 3 * BOUND))
    log = server["log"].read_text()
    assert "refused" not in log


def _query(endpoint: str, curve: CurveClient, timeout: float) -> tuple[str, object]:
    from rserver.control.ribclient import RibClient, RibQueryError

    async def t():
        c = RibClient(endpoint, identity=b"test-dealer", curve=curve)
        try:
            return "reply", await c.query({"afi": 1}, timeout)
        except RibQueryError as e:
            return e.code, e.message
        finally:
            c.close()
    return asyncio.run(asyncio.wait_for(t(), timeout + 5))


def test_only_the_configured_client_key_gets_through(server):
    spub, _ = read_key_file(server["keys"] / "bus-server.key")
    cpub, csec = read_key_file(server["keys"] / "bus-client.key")
    ok = _query(server["bus"], CurveClient(cpub, csec, spub), 10.0)
    assert ok[0] != "unavailable", ok                   # answered (a result or a query error)

    wpub, wsec = zmq.curve_keypair()                    # knows the server key, not allowed
    bad = _query(server["bus"], CurveClient(wpub, wsec, spub), 3.0)
    assert bad[0] == "unavailable", bad
    _wait(lambda: "CURVE client key refused" in server["log"].read_text()
          and wpub.decode() in server["log"].read_text(), "the RIB logging the refused key", 5.0)

    # a plain (no CURVE) DEALER does not get through either
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(server["bus"])
        import msgspec
        from rserver.bus.messages import RibQuery
        try:
            s.send(msgspec.msgpack.encode(RibQuery(1, {"afi": 1})), zmq.NOBLOCK)
        except zmq.Again:               # no connection completed: nothing can be sent at all
            pass
        assert s.poll(1500, zmq.POLLIN) == 0
        s.close()
    finally:
        ctx.term()
    assert server["proc"].poll() is None


def test_bus_keygen_refuses_to_overwrite(tmp_path):
    keys = tmp_path / "k"
    assert _run("bus-keygen", str(keys)).returncode == 0
    before = (keys / "bus-server.key").read_text()
    r = _run("bus-keygen", str(keys))
    assert r.returncode == 1 and "exists already" in r.stderr
    assert (keys / "bus-server.key").read_text() == before
    assert _run("bus-keygen", "--force", str(keys)).returncode == 0
    assert (keys / "bus-server.key").read_text() != before
    assert (keys / "bus-client.key").stat().st_mode & 0o777 == 0o600
    assert read_key_file(keys / "bus-server.key")[0] != read_key_file(keys / "bus-client.key")[0]
