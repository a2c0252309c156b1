"""The harness itself: BIRD peers with GoBGP directly, without rserver.

This proves the fixtures (configs, start, state reading, NOTIFICATION detection, stop by
PID) work independently of rserver, so an interop failure elsewhere is rserver's.
"""
from __future__ import annotations

import pytest

from .harness import pid_alive, wait_until

pytestmark = pytest.mark.interop


def test_bird_active_gobgp_passive(lab):
    b_addr, g_addr = lab.address(), lab.address()
    bird = lab.bird(b_addr, 64601, [("gobgp", g_addr, 64602, False)])
    gobgp = lab.gobgp(g_addr, 64602, [(b_addr, 64601, True)])
    wait_until(lambda: bird.state("gobgp") == "Established" and gobgp.state(b_addr) == "established",
               "BIRD <-> GoBGP established", diag=lab.logs)
    # an administrative shutdown from BIRD is seen by GoBGP as Cease 6/2
    assert bird.birdc("disable gobgp").returncode == 0
    wait_until(lambda: (6, 2) in gobgp.notifications_received(b_addr), "GoBGP logging Cease 6/2",
               diag=lab.logs)
    pids = [bird.pid, gobgp.pid]
    lab.teardown()
    assert not any(pid_alive(p) for p in pids)


def test_gobgp_active_bird_passive(lab):
    b_addr, g_addr = lab.address(), lab.address()
    bird = lab.bird(b_addr, 64601, [("gobgp", g_addr, 64602, True)])
    gobgp = lab.gobgp(g_addr, 64602, [(b_addr, 64601, False)])
    wait_until(lambda: bird.state("gobgp") == "Established" and gobgp.state(b_addr) == "established",
               "GoBGP -> BIRD established", diag=lab.logs)
    # an administrative shutdown from GoBGP shows in BIRD as "Received: Administrative shutdown"
    assert gobgp.cli("neighbor", b_addr, "disable").returncode == 0
    wait_until(lambda: "Administrative shutdown" in bird.info("gobgp")["last_error"],
               "BIRD recording the Cease", diag=lambda: bird.show("gobgp"))
