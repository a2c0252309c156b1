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
    "ConfigError", "Config", "GlobalConfig", "NeighborConfig", "MaxPrefix",
    "load", "loads",
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


class FileSchema(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    global_: GlobalSection = msgspec.field(name="global")
    defaults: NeighborSettings = NeighborSettings()
    groups: dict[str, NeighborSettings] = msgspec.field(default_factory=dict)
    neighbor: list[NeighborEntry] = msgspec.field(default_factory=list)


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


class Config(msgspec.Struct, frozen=True):
    source: str
    global_: GlobalConfig
    neighbors: tuple[NeighborConfig, ...]

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


def loads(text: str, source: str = "<config>") -> Config:
    """Parse and validate a configuration given as TOML text."""
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
    return loads(text, str(p))
