"""The command line: ``rserver run --check`` and what a bad configuration does (nothing)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rserver.cli import cli

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.toml"


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(body)
    return p


GOOD = """
[global]
local_as = 64500
router_id = "127.0.0.1"
listen = ["127.0.0.1"]
port = 1179
run_dir = "{run}"
session_workers = 2

[[neighbor]]
address = "127.0.1.1"
as = 64501

[[neighbor]]
address = "127.0.1.2"
as = 64502

[[neighbor]]
address = "127.0.1.3"
as = 64503
"""


def test_check_good_config_prints_summary(tmp_path):
    p = _write(tmp_path, GOOD.format(run=tmp_path / "run"))
    r = CliRunner().invoke(cli, ["run", "-c", str(p), "--check"])
    assert r.exit_code == 0, r.output
    line = r.output.strip()
    assert "\n" not in line
    assert "AS64500" in line and "3 neighbor(s)" in line and "2 session worker process(es)" in line
    assert not (tmp_path / "run").exists()          # --check starts nothing


def test_check_quickstart_as_a_module():
    r = subprocess.run([sys.executable, "-m", "rserver", "run", "-c", str(QUICKSTART), "--check"],
                       capture_output=True, text=True, timeout=30, env=_env(), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout and "2 neighbor(s)" in r.stdout


@pytest.mark.parametrize("body, field, expect", [
    ('[global]\nlocal_as = 64500\nrouter_id = "127.0.0.1"\n[[neighbor]]\naddress = "127.0.1.1"\nas = "x"\n',
     "neighbor[0].as", "int"),
    ('[global]\nlocal_as = 64500\nrouter_id = "300.0.0.1"\n', "global.router_id", "dotted-quad"),
    ('[global]\nlocal_as = 64500\nrouter_id = "127.0.0.1"\n[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nhold_time = 2\n',
     "neighbor[0].hold_time", "0 or 3..65535"),
    ('[global]\nlocal_as = 64500\nrouter_id = "127.0.0.1"\nbogus = 1\n', "global", "unknown field"),
    ("not toml [", "", "not valid TOML"),
])
def test_check_bad_config_exits_2_naming_the_field(tmp_path, body, field, expect):
    p = _write(tmp_path, body)
    r = CliRunner().invoke(cli, ["run", "-c", str(p), "--check"])
    assert r.exit_code == 2
    assert r.stdout == ""
    err = r.stderr
    assert str(p) in err and field in err and expect in err
    assert "Traceback" not in err


def test_bad_config_without_check_starts_nothing(tmp_path):
    run = tmp_path / "run"
    p = _write(tmp_path, GOOD.format(run=run).replace('as = 64503', 'as = 0'))
    r = subprocess.run([sys.executable, "-m", "rserver", "run", "-c", str(p)],
                       capture_output=True, text=True, timeout=30, env=_env(), cwd=ROOT)
    assert r.returncode == 2
    assert "neighbor[2].as" in r.stderr
    assert not run.exists()


def test_missing_file_exits_2(tmp_path):
    r = CliRunner().invoke(cli, ["run", "-c", str(tmp_path / "nope.toml"), "--check"])
    assert r.exit_code == 2 and "cannot read" in r.stderr


def test_help_lists_run():
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0 and "run" in r.output
    r = CliRunner().invoke(cli, ["run", "--help"])
    assert "--check" in r.output and "--log-format" in r.output


# --- the control verbs against a running server (real supervisor and workers) ----------------

def test_control_verbs_against_a_running_server(tmp_path, supervisor):
    import json
    import signal

    from tests.control.helpers import read_notification
    from tests.supervisor.test_main import PEERS, BgpPeer, make_config, wait_for

    pytest.importorskip("rserver.session.worker")
    cfg = make_config(tmp_path, 2)
    sup = supervisor(cfg, worker_main=None)
    sup.workers(2)
    sock = str(sup.run_dir / "rserver.sock")
    wait_for(lambda: os.path.exists(sock), "the control socket")

    def cli_ok(*args) -> str:
        r = CliRunner().invoke(cli, list(args))
        assert r.exit_code == 0, (args, r.output, r.stderr)
        return r.stdout

    a = BgpPeer(PEERS[0], sup.port, 64501)
    mon = None
    try:
        a.establish()
        def established():
            d = json.loads(cli_ok("show", "summary", "-j", "-s", sock))
            return d if d["neighbors"][0]["state"] == "established" else None
        d = wait_for(established, "show summary -j: established")
        assert [n["address"] for n in d["neighbors"]] == PEERS[:2]
        assert d["neighbors"][1]["state"] in ("active", "idle", "connect")

        table = cli_ok("show", "summary", "-c", cfg.source).splitlines()   # -c: run_dir's socket
        assert table[0].split() == ["Neighbor", "AS", "Name", "State/Up-Down", "Reason", "MsgRcvd",
                                    "MsgSent", "PfxRcvd", "Accepted", "Exported"]
        assert table[1].startswith(PEERS[0]) and "established" in table[1] and " 64501 " in table[1]
        assert table[2].startswith(PEERS[1])
        assert len({len(table[0]) >= len(x) for x in table}) == 1      # aligned columns

        n = json.loads(cli_ok("show", "neighbor", PEERS[0], "-j", "-s", sock))
        assert n["address"] == PEERS[0] and n["state"] == "established" and n["hold_time"] == 90
        assert n["negotiated"] is not None
        text = cli_ok("show", "neighbor", PEERS[0], "-s", sock)
        assert f"BGP neighbor {PEERS[0]}, remote AS 64501" in text
        assert "Negotiated capabilities" in text and "Last notification sent: none" in text

        metrics = cli_ok("show", "metrics", "-s", sock)
        lab = f'neighbor="{PEERS[0]}",name="{PEERS[0]}",peer_as="64501"'
        assert f"rserver_neighbor_state{{{lab}}} 6\n" in metrics
        assert f'rserver_neighbor_messages_received_total{{{lab},type="open"}} 1\n' in metrics
        mj = json.loads(cli_ok("show", "metrics", "-j", "-s", sock))
        assert mj["content_type"].startswith("text/plain") and f"rserver_neighbor_state{{{lab}}} 6\n" in mj["text"]

        mon = subprocess.Popen([sys.executable, "-m", "rserver", "monitor", "-j", "-s", sock],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
        wait_for(lambda: f"control client monitoring  client_pid={mon.pid}" in sup.log(),
                 "the monitor subprocess to subscribe")

        out = json.loads(cli_ok("neighbor", PEERS[0], "down", "--reason", "maintenance", "-j", "-s", sock))
        assert out["op"] == "down" and out["reason"] == "maintenance" and "6/2" in out["done"]
        assert read_notification(a.sock)[:2] == (6, 2)
        line = json.loads(mon.stdout.readline())
        assert line["event"] == "peer-state" and line["data"]["address"] == PEERS[0]
        assert line["data"]["old_state"] == "established" and line["data"]["new_state"] == "idle"
        assert line["data"]["reason"] == "admin down"
        a.close()
        wait_for(lambda: "maintenance" in cli_ok("show", "neighbor", PEERS[0], "-s", sock),
                 "the shutdown communication in show neighbor")
        assert "up" in cli_ok("neighbor", PEERS[0], "up", "-s", sock)

        mon.send_signal(signal.SIGINT)                  # Ctrl-C
        mon.wait(10)
        assert "Traceback" not in mon.stderr.read()

        r = CliRunner().invoke(cli, ["show", "neighbor", "nobody", "-s", sock])
        assert r.exit_code == 1 and "nobody" in r.stderr and "unknown-neighbor" in r.stderr
        r = CliRunner().invoke(cli, ["neighbor", "nobody", "down", "-s", sock])
        assert r.exit_code == 1 and "nobody" in r.stderr
    finally:
        a.close()
        if mon is not None and mon.poll() is None:
            mon.kill()
            mon.wait(5)
    assert sup.stop() == 0
    r = CliRunner().invoke(cli, ["show", "summary", "-s", sock])
    assert r.exit_code == 1 and sock in r.stderr and "not running" in r.stderr


def test_control_verbs_without_a_server(tmp_path):
    missing = str(tmp_path / "none.sock")
    for args in (["show", "summary"], ["show", "neighbor", "x"], ["neighbor", "x", "up"], ["monitor"]):
        r = CliRunner().invoke(cli, args + ["-s", missing])
        assert r.exit_code == 1, args
        assert missing in r.stderr and "not running" in r.stderr and "Traceback" not in r.stderr
    p = _write(tmp_path, GOOD.format(run=tmp_path / "run"))
    r = CliRunner().invoke(cli, ["show", "summary", "-c", str(p)])
    assert r.exit_code == 1 and str(tmp_path / "run" / "rserver.sock") in r.stderr
