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


# --- [bus] ------------------------------------------------------------------------------------

def _keys(tmp_path):
    import zmq
    for name in ("server", "client"):
        pub, sec = zmq.curve_keypair()
        config.write_key_file(tmp_path / f"{name}.key", pub, sec)
    return tmp_path / "server.key", tmp_path / "client.key"


def test_bus_defaults_to_ipc_in_the_run_dir():
    cfg = config.loads(BASE)
    assert cfg.bus.endpoint == "" and not cfg.bus.curve
    assert cfg.bus.endpoint_for("/run/rs/") == "ipc:///run/rs/rib.sock"
    cfg = config.loads(BASE + '[bus]\nendpoint = "ipc:///tmp/x/rib.sock"\n')
    assert cfg.bus.endpoint_for("/run/rs") == "ipc:///tmp/x/rib.sock" and not cfg.bus.curve


def test_bus_tcp_reads_both_keypairs(tmp_path):
    import zmq
    s, c = _keys(tmp_path)
    cfg_file = tmp_path / "rs.toml"
    cfg_file.write_text(BASE + f'[bus]\nendpoint = "tcp://127.0.0.1:5555"\nserver_key_file = "server.key"\n'
                        f'client_key_file = "{c}"\n')
    cfg = config.load(cfg_file)                 # a relative key path: next to the config file
    b = cfg.bus
    assert b.endpoint == "tcp://127.0.0.1:5555" and b.curve
    assert b.server_key_file == str(s) and b.client_key_file == str(c)
    assert zmq.curve_public(b.server_secret) == b.server_public
    assert zmq.curve_public(b.client_secret) == b.client_public != b.server_public
    # the secret keys never show in a repr (logs, tracebacks)
    assert b.server_secret.decode() not in repr(cfg) and b.client_secret.decode() not in repr(cfg)
    # zmq.auth reads the same files
    import zmq.auth
    assert zmq.auth.load_certificate(str(s)) == (b.server_public, b.server_secret)


@pytest.mark.parametrize("missing", ["server_key_file", "client_key_file"])
def test_bus_tcp_without_a_key_file_names_the_field(tmp_path, missing):
    s, c = _keys(tmp_path)
    lines = {"server_key_file": f'server_key_file = "{s}"', "client_key_file": f'client_key_file = "{c}"'}
    del lines[missing]
    with pytest.raises(config.ConfigError) as e:
        config.loads(BASE + '[bus]\nendpoint = "tcp://127.0.0.1:5555"\n' + "\n".join(lines.values()) + "\n",
                     "rs.toml")
    assert e.value.field == f"bus.{missing}"
    assert str(e.value).startswith(f"rs.toml: bus.{missing}: required with a tcp:// endpoint")


def test_bus_key_file_unreadable_or_malformed(tmp_path):
    s, c = _keys(tmp_path)
    head = BASE + '[bus]\nendpoint = "tcp://127.0.0.1:5555"\n'

    def err(server_path) -> config.ConfigError:
        with pytest.raises(config.ConfigError) as e:
            config.loads(head + f'server_key_file = "{server_path}"\nclient_key_file = "{c}"\n', "rs.toml")
        assert e.value.field == "bus.server_key_file"
        return e.value

    assert "cannot read" in str(err(tmp_path / "nope.key"))
    bad = tmp_path / "bad.key"
    bad.write_text("curve\n    public-key = \"short\"\n    secret-key = \"short\"\n")
    assert "not a z85-encoded 32-byte CURVE key" in str(err(bad))
    bad.write_text("just some text\n")
    assert "no public-key" in str(err(bad))
    # a public key of another pair
    other = s.read_text().replace(config.read_key_file(s)[0].decode(), config.read_key_file(c)[0].decode())
    bad.write_text(other)
    assert "does not belong" in str(err(bad))
    # the same keypair for both sides
    with pytest.raises(config.ConfigError) as e:
        config.loads(head + f'server_key_file = "{s}"\nclient_key_file = "{s}"\n')
    assert e.value.field == "bus.client_key_file"


@pytest.mark.parametrize("body, field, words", [
    ('endpoint = "udp://127.0.0.1:5"', "bus.endpoint", "expected ipc://PATH or tcp://HOST:PORT"),
    ('endpoint = "tcp://127.0.0.1"', "bus.endpoint", "expected tcp://HOST:PORT"),
    ('endpoint = "tcp://*:5555"', "bus.endpoint", "workers connect to it"),
    ('endpoint = "tcp://127.0.0.1:0"', "bus.endpoint", "a TCP port"),
    ('endpoint = "ipc://"', "bus.endpoint", "empty path"),
    ('server_key_file = "/etc/k"', "bus.server_key_file", "only used with a tcp:// endpoint"),
    ('endpoint = "ipc:///tmp/r.sock"\nclient_key_file = "/etc/k"', "bus.client_key_file", "only used with a tcp://"),
    ('port = 1', "bus", "unknown field `port`"),
])
def test_bus_errors(body, field, words):
    with pytest.raises(config.ConfigError) as e:
        config.loads(BASE + "[bus]\n" + body + "\n", "rs.toml")
    assert e.value.field == field
    assert words in str(e.value)


def test_bus_tcp_ipv6_and_host_names(tmp_path):
    s, c = _keys(tmp_path)
    for ep in ("tcp://[::1]:5555", "tcp://rib.example.net:5555"):
        cfg = config.loads(BASE + f'[bus]\nendpoint = "{ep}"\nserver_key_file = "{s}"\nclient_key_file = "{c}"\n')
        assert cfg.bus.endpoint == ep


def test_check_reports_a_bad_key_file_and_starts_nothing(tmp_path):
    import subprocess
    import sys
    cfg = tmp_path / "rs.toml"
    cfg.write_text(BASE + f'run_dir = "{tmp_path / "run"}"\n[[neighbor]]\naddress = "127.0.1.1"\nas = 64501\n'
                   '[bus]\nendpoint = "tcp://127.0.0.1:5555"\nclient_key_file = "c.key"\n')
    for args in (["--check"], []):
        r = subprocess.run([sys.executable, "-m", "rserver", "run", "-c", str(cfg), *args],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, r.stderr
        assert "bus.server_key_file" in r.stderr
    assert not (tmp_path / "run").exists()
