"""The compiled codec must exist and be the one chosen by default."""
import os
import subprocess
import sys

from rserver import codec


def test_compiled_backend_built():
    assert codec.BACKENDS["cython"] is not None, "ext/_cupdate.pyx was not compiled"


def test_default_backend_is_compiled():
    if os.environ.get("RSERVER_CODEC") == "pure":
        assert codec.BACKEND_NAME == "pure"
    else:
        assert codec.BACKEND_NAME == "cython"


def test_env_forces_pure():
    out = subprocess.run(
        [sys.executable, "-c", "import rserver.codec as c; print(c.BACKEND_NAME)"],
        env={**os.environ, "RSERVER_CODEC": "pure"}, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "pure"


def test_env_rejects_unknown_backend():
    out = subprocess.run(
        [sys.executable, "-c", "import rserver.codec"],
        env={**os.environ, "RSERVER_CODEC": "fortran"}, capture_output=True, text=True,
    )
    assert out.returncode != 0
    assert "RSERVER_CODEC" in out.stderr
