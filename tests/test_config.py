"""Configuration loading: inheritance, and errors that name the file and the field."""
from pathlib import Path

import pytest

from rserver import config

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[global]
local_as = 64500
router_id = "192.0.2.1"
listen = ["127.0.0.1"]
"""


def test_quickstart_config_is_valid():
    cfg = config.load(ROOT / "configs" / "quickstart.toml")
    assert cfg.global_.local_as == 64500
    assert [n.name for n in cfg.neighbors] == ["member-a", "member-b"]
    a = cfg.neighbor("member-a")
    assert a is cfg.neighbor("127.0.1.1")
    assert a.max_prefix.ipv4 == 100000 and a.passive is True


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_every_bundled_config_is_valid(path):
    cfg = config.load(path)
    assert cfg.neighbors


def test_inheritance_neighbor_over_group_over_defaults_over_builtin():
    cfg = config.loads(BASE + """
[defaults]
hold_time = 60
ttl_security = true
[groups.big]
hold_time = 30
max_prefix = { ipv4 = 500 }
[[neighbor]]
address = "127.0.1.1"
as = 64501
group = "big"
[[neighbor]]
address = "127.0.1.2"
as = 64502
group = "big"
hold_time = 9
[[neighbor]]
address = "127.0.1.3"
as = 64503
""")
    a, b, c = cfg.neighbors
    assert (a.hold_time, b.hold_time, c.hold_time) == (30, 9, 60)
    assert a.ttl_security and c.ttl_security
    assert a.max_prefix.ipv4 == 500 and c.max_prefix.ipv4 is None
    assert c.prepend_rs_as is False and c.passive is True   # built-in RS defaults
    assert a.name == "127.0.1.1"


@pytest.mark.parametrize("body,field,words", [
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = "x"', "neighbor[0].as", "Expected `int`"),
    ('[[neighbor]]\naddress = "127.0.1.300"\nas = 1', "neighbor[0].address", "IPv4 or IPv6"),
    ('[[neighbor]]\naddress = "127.0.1.1"', "neighbor[0].as", "required"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nhold_time = 2', "neighbor[0].hold_time", "RFC 4271"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\ngroup = "nope"', "neighbor[0].group", "unknown group"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nmax_prefix = { ipv4 = 0 }', "neighbor[0].max_prefix.ipv4", "prefix count"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nmax_prefix = { action = "explode" }', "neighbor[0].max_prefix.action",
     "expected one of 'shutdown', 'restart', 'warn'"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nholdtime = 5', "neighbor[0]", "unknown field `holdtime`"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\nmax_prefix = { restart_after = 0 }',
     "neighbor[0].max_prefix.restart_after", "expected minutes (0.01..10080)"),
    ('[[neighbor]]\naddress = "127.0.1.1"\nas = 1\n[[neighbor]]\naddress = "127.0.1.1"\nas = 2',
     "neighbor[1].address", "already neighbor[0]"),
])
def test_errors_name_file_field_and_expectation(body, field, words):
    with pytest.raises(config.ConfigError) as exc:
        config.loads(BASE + body, "rs.toml")
    assert exc.value.file == "rs.toml"
    assert exc.value.field == field
    assert words in exc.value.message
    assert str(exc.value).startswith(f"rs.toml: {field}: ")


def test_restart_after_takes_fractional_minutes():
    cfg = config.loads(BASE + '[[neighbor]]\naddress = "127.0.1.1"\nas = 1\n'
                       'max_prefix = { ipv4 = 10, action = "restart", restart_after = 0.5 }', "a.toml")
    assert cfg.neighbors[0].max_prefix.restart_after == 0.5


def test_global_errors():
    with pytest.raises(config.ConfigError) as exc:
        config.loads('[global]\nlocal_as = 1\nrouter_id = "0.0.0.0"\n', "a.toml")
    assert exc.value.field == "global.router_id"
    with pytest.raises(config.ConfigError) as exc:
        config.loads('[global]\nrouter_id = "1.1.1.1"\n', "a.toml")
    assert exc.value.field == "global" and "local_as" in exc.value.message
    with pytest.raises(config.ConfigError) as exc:
        config.loads("[global\n", "a.toml")
    assert "not valid TOML" in exc.value.message


def test_unreadable_file(tmp_path):
    with pytest.raises(config.ConfigError) as exc:
        config.load(tmp_path / "missing.toml")
    assert "cannot read" in str(exc.value)


def test_loopback_next_hop_global_setting():
    assert config.loads(BASE).global_.loopback_next_hop is False           # default: off
    assert config.loads(BASE + "loopback_next_hop = true\n").global_.loopback_next_hop is True
    assert config.load(ROOT / "configs" / "quickstart.toml").global_.loopback_next_hop is True
    assert config.load(ROOT / "configs" / "ixp-example.toml").global_.loopback_next_hop is False
    # the last GlobalConfig field, with a default: existing constructors keep working
    assert config.GlobalConfig.__struct_fields__[-1] == "loopback_next_hop"
    g = config.GlobalConfig(local_as=1, router_id="192.0.2.1", listen=("127.0.0.1",), port=179,
                            run_dir="/run/rserver", log_format="human", log_level="info",
                            session_workers=0)
    assert g.loopback_next_hop is False
    with pytest.raises(config.ConfigError) as exc:
        config.loads(BASE + 'loopback_next_hop = "yes"\n', "a.toml")
    assert exc.value.field == "global.loopback_next_hop"
