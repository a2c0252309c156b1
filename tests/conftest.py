"""Shared fixtures.

``backend`` parametrizes a test over both UPDATE codec backends. The compiled
one missing is a test failure, never a skip: CI must not quietly test only the
pure codec (docs/codec.md).
"""
from __future__ import annotations

import pytest

# fixtures that start a real supervisor (tests/supervisor/test_main.py) and a served control
# socket with a RIB (tests/control/test_show_rib.py), shared by the control and CLI tests
from tests.supervisor.test_main import supervisor  # noqa: E402,F401
from tests.control.test_show_rib import served  # noqa: E402,F401


@pytest.fixture(params=["pure", "cython"])
def backend(request):
    from rserver.codec import BACKENDS

    mod = BACKENDS[request.param]
    if mod is None:
        pytest.fail("the compiled codec rserver.codec._cupdate is not built (pip install -e . builds it)")
    return mod
