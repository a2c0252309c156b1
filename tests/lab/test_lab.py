"""`rserver lab` end to end: a real server and members on loopback, then `rserver lab --stop`.

Every process is checked by PID (and by session id: the server's workers and RIB process,
the members' fleet workers) and stopped in a finally clause.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


from rserver.lab.lab import alive, session_pids, stop

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _rserver(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "rserver", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def test_lab_start_query_stop(tmp_path):
    run_dir = tmp_path / "lab"
    port = _free_port()
    state = {}
    try:
        r = _rserver("lab", "--members", "3", "--prefixes", "2000", "--run-dir", str(run_dir),
                     "--port", str(port))
        assert r.returncode == 0, r.stdout + r.stderr
        state = json.loads((run_dir / "lab.json").read_text())
        assert alive(state["server_pid"]) and alive(state["members_pid"])
        out = r.stdout
        assert "converged in" in out and "sessions Established: 3/3" in out
        assert f"rserver show summary -c {run_dir / 'lab.toml'}" in out
        assert "rserver lab --stop" in out
        assert "members hold the full table" in r.stderr          # the progress bars

        # the server keeps running: the CLI finds it through the lab's config file
        s = _rserver("show", "summary", "-j", "-c", str(run_dir / "lab.toml"), timeout=30)
        assert s.returncode == 0, s.stderr
        rows = json.loads(s.stdout)["neighbors"]
        assert sorted(n["name"] for n in rows) == ["member-1", "member-2", "member-3"]
        assert all(n["state"].lower() == "established" for n in rows), rows
        assert all(n["prefixes_received"] == 2000 + 400 for n in rows), rows     # IPv4 + IPv6

        # a route of member-1 (its own address as next hop, its AS first)
        n = _rserver("show", "neighbor", "member-1", "-s", str(run_dir / "rserver.sock"), timeout=30)
        assert n.returncode == 0 and "remote AS 64501" in n.stdout

        # a second lab in the same run dir is refused
        again = _rserver("lab", "--members", "3", "--prefixes", "2000", "--run-dir", str(run_dir),
                         "--port", str(port), timeout=60)
        assert again.returncode != 0 and "already running" in again.stderr

        st = _rserver("lab", "--stop", "--run-dir", str(run_dir), timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        assert "stopped" in st.stdout
        for key in ("server_pid", "members_pid"):
            pid = state[key]
            assert not alive(pid), f"{key} {pid} still running"
            assert session_pids(pid) == [], f"processes left in the session of {key}"
        assert not (run_dir / "lab.json").exists()
        again = _rserver("lab", "--stop", "--run-dir", str(run_dir), timeout=30)
        assert again.returncode == 1 and "no lab running" in again.stdout
    finally:
        if state:
            stop(run_dir, out=open(os.devnull, "w"))
            for key in ("server_pid", "members_pid"):
                assert not session_pids(state[key])


def test_lab_refuses_a_busy_port(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        r = _rserver("lab", "--members", "2", "--prefixes", "100", "--run-dir", str(tmp_path / "lab"),
                     "--port", str(s.getsockname()[1]), timeout=60)
        assert r.returncode == 2 and "in use" in r.stderr
        assert not (tmp_path / "lab" / "lab.json").exists()
    finally:
        s.close()
