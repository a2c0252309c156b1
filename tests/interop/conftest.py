"""Fixtures for the interop suite: real daemons on loopback, stopped by PID at teardown.

``lab`` hands out fresh loopback addresses (127.0.1.N), a port, a directory per process,
and starts BIRD, GoBGP or rserver; whatever it started is stopped (SIGTERM, then SIGKILL
after a bound) when the test ends, pass or fail, and its log is printed on failure.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from .harness import Bird, Gobgp, RServer, free_port

_addresses = itertools.count(10)


class Lab:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.port = free_port()
        self.procs: list = []

    def address(self) -> str:
        n = next(_addresses)
        assert n < 250, "out of 127.0.1.N test addresses"
        return f"127.0.1.{n}"

    def bird(self, address: str, asn: int, peers, **kw) -> Bird:
        d = Bird(self.tmp / f"bird-{address}", address, asn, self.port, peers, **kw)
        self.procs.append(d)
        return d.start()

    def gobgp(self, address: str, asn: int, peers, **kw) -> Gobgp:
        d = Gobgp(self.tmp / f"gobgp-{address}", address, asn, self.port, peers, **kw)
        self.procs.append(d)
        return d.start()

    def rserver(self, neighbors, **kw) -> RServer:
        d = RServer(self.tmp / f"rserver-{len(self.procs)}", self.port, neighbors, **kw)
        self.procs.append(d)
        return d.start()

    def teardown(self) -> None:
        # rserver first (so the daemons see its Cease, not a dead socket), then the daemons
        for d in sorted(self.procs, key=lambda d: not isinstance(d, RServer)):
            d.stop()

    def logs(self) -> str:
        return "\n".join(f"----- {d.name} {d.dir.name} -----\n{d.log()[-6000:]}" for d in self.procs)


@pytest.fixture
def lab(tmp_path, request):
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.teardown()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(lab.logs())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
