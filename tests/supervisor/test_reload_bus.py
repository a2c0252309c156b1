"""Reload and [bus]: the RIB bus (endpoint, key files, key contents) cannot change while
running; a change is refused with "restart the server" and nothing is applied."""
from __future__ import annotations

import msgspec
import zmq

from rserver.config import BusConfig, Config, loads, write_key_file
from rserver.supervisor.reload import BUS_REFUSED, diff

BASE = """
[global]
local_as = 64500
router_id = "192.0.2.1"
listen = ["127.0.0.1"]
[[neighbor]]
address = "127.0.1.1"
as = 64501
"""


def _keys(d, *names):
    out = []
    for n in names:
        pub, sec = zmq.curve_keypair()
        write_key_file(d / n, pub, sec)
        out.append(d / n)
    return out


def _tcp(endpoint, s, c, extra=""):
    return loads(BASE + extra + f'[bus]\nendpoint = "{endpoint}"\nserver_key_file = "{s}"\nclient_key_file = "{c}"\n')


def test_every_bus_field_is_classified():
    assert set(BusConfig.__struct_fields__) == set(BUS_REFUSED)
    assert "bus" in Config.__struct_fields__
    for why in BUS_REFUSED.values():
        assert "restart the server" in why


def test_unchanged_bus_reloads():
    old = loads(BASE)
    plan = diff(old, loads(BASE + '[[neighbor]]\naddress = "127.0.1.2"\nas = 64502\n'))
    assert plan.ok and len(plan.added) == 1


def test_bus_endpoint_change_is_refused(tmp_path):
    s, c = _keys(tmp_path, "s.key", "c.key")
    old = loads(BASE)
    for new in (loads(BASE + '[bus]\nendpoint = "ipc:///tmp/other.sock"\n'), _tcp("tcp://127.0.0.1:5555", s, c)):
        plan = diff(old, msgspec.structs.replace(new, neighbors=()))
        assert not plan.ok
        assert plan.refusals[0].startswith("bus.endpoint: bus.endpoint cannot change while running")
        assert "restart the server" in plan.refusals[0]
        assert plan.removed == () and plan.changed == ()        # nothing to apply
    # and back from tcp to ipc
    assert not diff(_tcp("tcp://127.0.0.1:5555", s, c), old).ok


def test_rotated_keys_are_refused_and_never_printed(tmp_path):
    s, c, c2 = _keys(tmp_path, "s.key", "c.key", "c2.key")
    old = _tcp("tcp://127.0.0.1:5555", s, c)
    assert diff(old, _tcp("tcp://127.0.0.1:5555", s, c)).ok            # same files, same keys
    new = _tcp("tcp://127.0.0.1:5555", s, c2)
    plan = diff(old, new)
    assert not plan.ok
    text = "; ".join(plan.refusals)
    assert "bus.client_key_file" in text and "the workers' CURVE keypair" in text
    for k in (old.bus.client_secret, new.bus.client_secret, old.bus.client_public, new.bus.client_public):
        assert k.decode() not in text
    # the same path with new contents (keys rotated in place) is refused too
    c.unlink()
    write_key_file(c, *zmq.curve_keypair())
    plan = diff(old, _tcp("tcp://127.0.0.1:5555", s, c))
    assert not plan.ok and plan.refusals == ("bus: " + BUS_REFUSED["client_public"],)
