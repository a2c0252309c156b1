"""Configuration: TOML validated into msgspec Structs.

A file has four sections (see configs/quickstart.toml and configs/ixp-example.toml):

    [global]            local AS, router id, listen addresses/port, run directory, logging, workers,
                        loopback_next_hop
    [defaults]          neighbor settings every neighbor inherits
    [groups.NAME]       neighbor settings a group of neighbors inherits (overrides defaults)
    [[neighbor]]        one table per neighbor (overrides its group)

Resolution order for a neighbor setting: the neighbor's own value, then its group's, then
[defaults], then the built-in default below. Errors name the file, the field path
(``neighbor[3].max_prefix.ipv4``) and what was expected; a bad file raises ConfigError and
nothing is started from it.

``global.loopback_next_hop`` (bool, default false): accept IPv4 next hops in 127.0.0.0/8
(NEXT_HOP and 4-byte MP_REACH_NLRI next hops), which are otherwise martian and
treat-as-withdraw 3/8 (RFC 4271 §6.3; CodecContext.loopback_next_hop, docs/codec.md).
For labs and tests on loopback, where members announce 127.0.1.N as their next hop;
never enable it in production. 0.0.0.0, 224/4 and 240/4 stay martian.

An optional fifth section, ``[bus]``, places the session-worker <-> RIB bus (docs/rib.md, "Bus"):

    [bus]
    endpoint = "tcp://127.0.0.1:5555"                  # default: ipc://RUN_DIR/rib.sock
    server_key_file = "/etc/rserver/bus-server.key"    # the RIB's CURVE keypair
    client_key_file = "/etc/rserver/bus-client.key"    # the workers' (and control client's)

``endpoint`` is ``ipc://PATH`` or ``tcp://HOST:PORT`` (HOST an IP address or a name, PORT
1..65535; the RIB binds it, workers connect to it). A tcp:// endpoint requires both key files:
the RIB is a CURVE server that admits only the client key, workers and the control socket's
RIB client connect with the client keypair, so the bus is authenticated and encrypted. An
ipc:// endpoint is protected by the run directory's permissions and takes no keys: key files
with an ipc:// (or the default) endpoint are an error, not silently ignored. A key file is
the ZPL certificate format of ``zmq.auth`` / czmq (``rserver bus-keygen DIR`` writes both):

    curve
        public-key = "<40 z85 characters>"
        secret-key = "<40 z85 characters>"

Both keys must be present and belong together; a relative path is relative to the
configuration file's directory. The files are read and checked when the configuration is
loaded (``run --check`` included): a missing, unreadable or malformed file is a ConfigError.
A [bus] change cannot be applied by reload (restart the server).
"""
from __future__ import annotations

import ipaddress
import re
import tomllib
import typing
from pathlib import Path
from typing import Literal, Optional, Union

import msgspec

__all__ = [
    "ConfigError", "Config", "GlobalConfig", "NeighborConfig", "MaxPrefix", "BusConfig",
    "load", "loads", "read_key_file", "write_key_file",
]


class ConfigError(ValueError):
    """A configuration problem: ``file: field: what was expected``."""

    def __init__(self, file: str, field: str, message: str):
        self.file = file
        self.field = field
        self.message = message
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {message}")


# --- schema as written in the file -------------------------------------------------------

class MaxPrefix(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    ipv4: Optional[int] = None               # limit on accepted IPv4 prefixes (None: no limit)
    ipv6: Optional[int] = None
    action: Literal["shutdown", "restart", "warn"] = "shutdown"
    restart_after: float = 15                # minutes (fractions allowed), for action = "restart"
    warn_percent: int = 90                   # log a warning when this share of the limit is reached


class NeighborSettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Settings a neighbor can inherit from [defaults] or its group: all optional here."""

    passive: Optional[bool] = None
    hold_time: Optional[int] = None
    connect_retry: Optional[int] = None
    delay_open: Optional[int] = None
    max_prefix: Optional[MaxPrefix] = None
    md5_password: Optional[str] = None
    ttl_security: Optional[bool] = None
    add_path: Optional[Literal["off", "receive", "send", "both"]] = None
    add_path_send_max: Optional[int] = None
    role: Optional[Literal["rs", "none"]] = None
    role_strict: Optional[bool] = None
    prepend_rs_as: Optional[bool] = None
    enabled: Optional[bool] = None
    ipv4: Optional[bool] = None
    ipv6: Optional[bool] = None
    graceful_restart: Optional[bool] = None
    collision_in_established: Optional[bool] = None
    error_wait_time: Optional[float] = None


class NeighborEntry(NeighborSettings, forbid_unknown_fields=True, frozen=True):
    address: str = ""
    asn: int = msgspec.field(default=0, name="as")
    name: Optional[str] = None
    description: str = ""
    group: Optional[str] = None


class GlobalSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    local_as: int
    router_id: str
    listen: list[str] = msgspec.field(default_factory=lambda: ["0.0.0.0", "::"])
    port: int = 179
    run_dir: str = "/run/rserver"
    log_format: Literal["human", "json"] = "human"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    session_workers: int = 0                 # 0: one worker process per neighbor
    loopback_next_hop: bool = False          # lab only: 127/8 next hops are not martian


class BusSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    endpoint: Optional[str] = None           # None: ipc://RUN_DIR/rib.sock
    server_key_file: Optional[str] = None    # tcp:// only: the RIB's CURVE keypair
    client_key_file: Optional[str] = None    # tcp:// only: the workers' CURVE keypair


class FileSchema(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    global_: GlobalSection = msgspec.field(name="global")
    defaults: NeighborSettings = NeighborSettings()
    groups: dict[str, NeighborSettings] = msgspec.field(default_factory=dict)
    neighbor: list[NeighborEntry] = msgspec.field(default_factory=list)
    bus: BusSection = BusSection()


# --- resolved configuration ----------------------------------------------------------------

# the built-in defaults: what an IXP route server does out of the box
BUILTIN = dict(
    passive=True,               # IXP members connect to the route server
    hold_time=90,               # RFC 4271 §10 suggests 90 s
    connect_retry=120,          # RFC 4271 §10
    delay_open=0,
    max_prefix=MaxPrefix(),
    md5_password="",
    ttl_security=False,
    add_path="off",
    add_path_send_max=0,        # 0: all paths
    role="rs",                  # RFC 9234: we are the route server
    role_strict=False,
    prepend_rs_as=False,        # RFC 7947 §2.2.2: the RS AS is not prepended
    enabled=True,
    ipv4=True,
    ipv6=True,
    graceful_restart=True,      # helper side (RFC 4724)
    collision_in_established=False,
    error_wait_time=5.0,        # seconds Idle after an error before restarting, doubling per
                                # failure up to 300 s (RFC 4271 §8.1.1; BIRD's "error wait time")
)


class GlobalConfig(msgspec.Struct, frozen=True):
    local_as: int
    router_id: str
    listen: tuple[str, ...]
    port: int
    run_dir: str
    log_format: str
    log_level: str
    session_workers: int
    loopback_next_hop: bool = False          # accept 127/8 next hops (labs on loopback only)


class NeighborConfig(msgspec.Struct, frozen=True):
    address: str
    asn: int
    name: str
    description: str
    group: Optional[str]
    passive: bool
    hold_time: int
    connect_retry: int
    delay_open: int
    max_prefix: MaxPrefix
    md5_password: str
    ttl_security: bool
    add_path: str
    add_path_send_max: int
    role: str
    role_strict: bool
    prepend_rs_as: bool
    enabled: bool
    ipv4: bool
    ipv6: bool
    graceful_restart: bool
    collision_in_established: bool
    error_wait_time: float = 5.0


class BusConfig(msgspec.Struct, frozen=True):
    """The resolved [bus]: ``endpoint`` ("" = the default ipc://RUN_DIR/rib.sock) and, for
    tcp://, the CURVE keys read from the key files (z85 bytes; empty for ipc://)."""

    endpoint: str = ""
    server_key_file: str = ""
    client_key_file: str = ""
    server_public: bytes = b""
    server_secret: bytes = b""
    client_public: bytes = b""
    client_secret: bytes = b""

    @property
    def curve(self) -> bool:
        return bool(self.server_public)

    def endpoint_for(self, run_dir: str) -> str:
        """The endpoint to bind / connect: the configured one, else ipc://RUN_DIR/rib.sock."""
        return self.endpoint or f"ipc://{run_dir.rstrip('/')}/rib.sock"

    def __repr__(self) -> str:          # never put secret keys in a log line or a traceback
        return (f"BusConfig(endpoint={self.endpoint!r}, server_key_file={self.server_key_file!r}, "
                f"client_key_file={self.client_key_file!r}, curve={self.curve})")


class Config(msgspec.Struct, frozen=True):
    source: str
    global_: GlobalConfig
    neighbors: tuple[NeighborConfig, ...]
    bus: BusConfig = BusConfig()

    def neighbor(self, key: str) -> Optional[NeighborConfig]:
        """A neighbor by address or name."""
        for n in self.neighbors:
            if n.address == key or n.name == key:
                return n
        try:
            canon = str(ipaddress.ip_address(key))
        except ValueError:
            return None
        return next((n for n in self.neighbors if n.address == canon), None)


# --- loading ---------------------------------------------------------------------------------

_PATH_RE = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _field_path(msg: str) -> tuple[str, str]:
    """Split a msgspec error 'Expected `int`, got `str` - at `$.neighbor[0].as`'."""
    m = _PATH_RE.search(msg)
    if not m:
        return "", msg
    path = m.group("path").lstrip(".")
    return path, msg[: m.start()]


def _choices(name: str) -> tuple[str, ...]:
    """The allowed values of a Literal-typed setting, for error messages."""
    for cls in (MaxPrefix, NeighborSettings, GlobalSection):
        hint = typing.get_type_hints(cls).get(name)
        while hint is not None and typing.get_origin(hint) is Union:
            hint = next((a for a in typing.get_args(hint) if a is not type(None)), None)
        if hint is not None and typing.get_origin(hint) is Literal:
            return typing.get_args(hint)
    return ()


def _check_range(file: str, field: str, value: int, lo: int, hi: int, what: str) -> None:
    if not (lo <= value <= hi):
        raise ConfigError(file, field, f"expected {what} ({lo}..{hi}), got {value}")


def _check_hold(file: str, field: str, value: int) -> None:
    # RFC 4271 §4.2: the hold time is 0 or at least 3 seconds
    if value != 0 and not (3 <= value <= 65535):
        raise ConfigError(file, field, f"expected 0 or 3..65535 seconds (RFC 4271 §4.2), got {value}")


def _resolve(file: str, i: int, entry: NeighborEntry, groups: dict[str, NeighborSettings],
             defaults: NeighborSettings) -> NeighborConfig:
    where = f"neighbor[{i}]"
    if not entry.address:
        raise ConfigError(file, f"{where}.address", "required: the neighbor's IP address")
    try:
        addr = ipaddress.ip_address(entry.address)
    except ValueError:
        raise ConfigError(file, f"{where}.address", f"expected an IPv4 or IPv6 address, got {entry.address!r}") from None
    if not entry.asn:
        raise ConfigError(file, f"{where}.as", "required: the neighbor's AS number (1..4294967295)")
    _check_range(file, f"{where}.as", entry.asn, 1, 0xFFFFFFFF, "an AS number")
    group: Optional[NeighborSettings] = None
    if entry.group is not None:
        group = groups.get(entry.group)
        if group is None:
            known = ", ".join(sorted(groups)) or "none defined"
            raise ConfigError(file, f"{where}.group", f"unknown group {entry.group!r} (groups: {known})")
    values = {}
    for key, builtin in BUILTIN.items():
        v = getattr(entry, key)
        if v is None and group is not None:
            v = getattr(group, key)
        if v is None:
            v = getattr(defaults, key)
        values[key] = builtin if v is None else v
    _check_hold(file, f"{where}.hold_time", values["hold_time"])
    _check_range(file, f"{where}.connect_retry", values["connect_retry"], 1, 65535, "seconds")
    _check_range(file, f"{where}.delay_open", values["delay_open"], 0, 240, "seconds")
    if not (0.1 <= values["error_wait_time"] <= 300):
        raise ConfigError(file, f"{where}.error_wait_time",
                          f"expected seconds (0.1..300), got {values['error_wait_time']}")
    mp: MaxPrefix = values["max_prefix"]
    for fam in ("ipv4", "ipv6"):
        lim = getattr(mp, fam)
        if lim is not None:
            _check_range(file, f"{where}.max_prefix.{fam}", lim, 1, 10_000_000, "a prefix count")
    _check_range(file, f"{where}.max_prefix.warn_percent", mp.warn_percent, 1, 100, "a percentage")
    if not (0.01 <= mp.restart_after <= 10080):
        raise ConfigError(file, f"{where}.max_prefix.restart_after",
                          f"expected minutes (0.01..10080), got {mp.restart_after}")
    if len(values["md5_password"]) > 80:
        # TCP_MD5SIG_MAXKEYLEN is 80 bytes (linux/tcp.h)
        raise ConfigError(file, f"{where}.md5_password", "at most 80 characters (TCP_MD5SIG_MAXKEYLEN)")
    if not (values["ipv4"] or values["ipv6"]):
        raise ConfigError(file, where, "at least one of ipv4 / ipv6 must be enabled")
    return NeighborConfig(
        address=str(addr), asn=entry.asn, name=entry.name or str(addr),
        description=entry.description, group=entry.group, **values,
    )


# --- [bus] -------------------------------------------------------------------------------------

_KEY_RE = re.compile(r'^\s*(public-key|secret-key)\s*=\s*"([^"]*)"\s*$', re.M)


def _z85_key(text: str) -> Optional[bytes]:
    from zmq.utils import z85
    if len(text) != 40:
        return None
    try:
        raw = z85.decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, KeyError, IndexError, TypeError):
        return None
    return text.encode("ascii") if len(raw) == 32 else None


def read_key_file(path: Union[str, Path]) -> tuple[bytes, bytes]:
    """The (public, secret) z85 CURVE keys of a key file (see the module docstring); raises
    ValueError with a reason when the file is unreadable or malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"cannot read {str(p)!r}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(p)!r} is not UTF-8 text") from None
    found: dict[str, str] = {}
    for m in _KEY_RE.finditer(text):
        if m.group(1) in found:
            raise ValueError(f"{str(p)!r}: {m.group(1)} given twice")
        found[m.group(1)] = m.group(2)
    keys = []
    for name in ("public-key", "secret-key"):
        if name not in found:
            raise ValueError(f"{str(p)!r}: no {name} (expected a CURVE keypair: public-key = \"...\" "
                             f"and secret-key = \"...\", as written by rserver bus-keygen)")
        k = _z85_key(found[name])
        if k is None:
            raise ValueError(f"{str(p)!r}: {name} is not a z85-encoded 32-byte CURVE key (40 characters)")
        keys.append(k)
    public, secret = keys
    import zmq
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{str(p)!r}: public-key does not belong to secret-key")
    return public, secret


def write_key_file(path: Union[str, Path], public: bytes, secret: bytes) -> None:
    """Write a CURVE keypair as a key file readable by read_key_file (and zmq.auth), mode 0600."""
    import datetime
    import os
    text = (f"#   ****  Generated on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC "
            f"by rserver bus-keygen  ****\n"
            "#   ZeroMQ CURVE **Secret** Certificate\n"
            "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
            "metadata\n"
            "curve\n"
            f'    public-key = "{public.decode("ascii")}"\n'
            f'    secret-key = "{secret.decode("ascii")}"\n')
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(str(path), 0o600)


_TCP_RE = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>[0-9]{1,5})$")
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _resolve_bus(file: str, b: BusSection, base_dir: Optional[Path]) -> BusConfig:
    endpoint = b.endpoint or ""
    if b.endpoint is not None:
        if endpoint.startswith("ipc://"):
            if len(endpoint) == len("ipc://"):
                raise ConfigError(file, "bus.endpoint", "expected ipc://PATH, got an empty path")
        elif endpoint.startswith("tcp://"):
            m = _TCP_RE.match(endpoint)
            if not m:
                raise ConfigError(file, "bus.endpoint", f"expected tcp://HOST:PORT, got {endpoint!r}")
            if m.group("v6") is not None:
                try:
                    ipaddress.IPv6Address(m.group("v6"))
                except ValueError:
                    raise ConfigError(file, "bus.endpoint", f"not an IPv6 address in {endpoint!r}") from None
            elif not _HOSTNAME_RE.match(m.group("host")):
                raise ConfigError(file, "bus.endpoint",
                                  f"expected an IP address or a host name (workers connect to it), "
                                  f"got {m.group('host')!r}")
            _check_range(file, "bus.endpoint", int(m.group("port")), 1, 65535, "a TCP port")
        else:
            raise ConfigError(file, "bus.endpoint", f"expected ipc://PATH or tcp://HOST:PORT, got {endpoint!r}")
    if not endpoint.startswith("tcp://"):
        for name in ("server_key_file", "client_key_file"):
            if getattr(b, name) is not None:
                raise ConfigError(file, f"bus.{name}",
                                  "CURVE keys are only used with a tcp:// endpoint (an ipc:// bus is "
                                  "protected by the run directory's permissions): remove it, or set "
                                  "bus.endpoint = \"tcp://HOST:PORT\"")
        return BusConfig(endpoint=endpoint)
    keys: dict[str, tuple[bytes, bytes]] = {}
    paths: dict[str, str] = {}
    for name in ("server_key_file", "client_key_file"):
        v = getattr(b, name)
        if not v:
            raise ConfigError(file, f"bus.{name}",
                              f"required with a tcp:// endpoint: the CURVE keypair file of "
                              f"{'the RIB' if name.startswith('server') else 'the workers'} "
                              f"(rserver bus-keygen DIR writes one)")
        p = Path(v)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        try:
            keys[name] = read_key_file(p)
        except ValueError as e:
            raise ConfigError(file, f"bus.{name}", str(e)) from None
        paths[name] = str(p)
    if keys["server_key_file"][0] == keys["client_key_file"][0]:
        raise ConfigError(file, "bus.client_key_file", "the same keypair as bus.server_key_file: use two keypairs")
    return BusConfig(endpoint=endpoint, server_key_file=paths["server_key_file"],
                     client_key_file=paths["client_key_file"],
                     server_public=keys["server_key_file"][0], server_secret=keys["server_key_file"][1],
                     client_public=keys["client_key_file"][0], client_secret=keys["client_key_file"][1])


def loads(text: str, source: str = "<config>", *, base_dir: Optional[Union[str, Path]] = None) -> Config:
    """Parse and validate a configuration given as TOML text (``base_dir``: where relative
    [bus] key file paths start, else the current directory)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from None
    try:
        schema = msgspec.convert(raw, FileSchema)
    except msgspec.ValidationError as e:
        field, msg = _field_path(str(e))
        field = field.replace("global_", "global")
        if msg.startswith("Object missing required field"):
            msg = msg.replace("Object missing required field", "missing required field")
        elif msg.startswith("Object contains unknown field"):
            msg = msg.replace("Object contains unknown field", "unknown field")
        elif msg.startswith("Invalid enum value"):
            allowed = _choices(field.rsplit(".", 1)[-1])
            if allowed:
                msg += f": expected one of {', '.join(repr(a) for a in allowed)}"
        raise ConfigError(source, field, msg) from None

    g = schema.global_
    _check_range(source, "global.local_as", g.local_as, 1, 0xFFFFFFFF, "an AS number")
    try:
        rid = ipaddress.IPv4Address(g.router_id)
    except ValueError:
        raise ConfigError(source, "global.router_id", f"expected a dotted-quad IPv4 address, got {g.router_id!r}") from None
    if int(rid) == 0:
        raise ConfigError(source, "global.router_id", "must not be 0.0.0.0 (RFC 6286 §2.1)")
    _check_range(source, "global.port", g.port, 1, 65535, "a TCP port")
    _check_range(source, "global.session_workers", g.session_workers, 0, 4096, "a process count")
    for j, a in enumerate(g.listen):
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise ConfigError(source, f"global.listen[{j}]", f"expected an IP address, got {a!r}") from None
    if not g.listen:
        raise ConfigError(source, "global.listen", "at least one address to listen on")

    neighbors = [_resolve(source, i, e, schema.groups, schema.defaults) for i, e in enumerate(schema.neighbor)]
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, n in enumerate(neighbors):
        if n.address in seen:
            raise ConfigError(source, f"neighbor[{i}].address", f"{n.address} is already neighbor[{seen[n.address]}]")
        seen[n.address] = i
        if n.name in names:
            raise ConfigError(source, f"neighbor[{i}].name", f"{n.name!r} is already neighbor[{names[n.name]}]")
        names[n.name] = i

    return Config(
        source=source,
        global_=GlobalConfig(
            local_as=g.local_as, router_id=str(rid), listen=tuple(g.listen), port=g.port,
            run_dir=g.run_dir, log_format=g.log_format, log_level=g.log_level,
            session_workers=g.session_workers, loopback_next_hop=g.loopback_next_hop,
        ),
        neighbors=tuple(neighbors),
        bus=_resolve_bus(source, schema.bus, Path(base_dir) if base_dir is not None else None),
    )


def load(path: Union[str, Path]) -> Config:
    """Read and validate a configuration file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(p), "", "not UTF-8 text") from None
    return loads(text, str(p), base_dir=p.parent)
