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
