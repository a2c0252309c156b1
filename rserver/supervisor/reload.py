"""Configuration reload: what changes between two configurations, and what that means for
the running sessions (sans-IO: no sockets, no processes; the supervisor applies the plan).

``diff(old, new)`` compares two validated configurations and returns a ``ReloadPlan``:

* neighbors are identified by **address** (a changed ``name`` is an ordinary change);
* ``added`` / ``removed`` neighbors (removed ones get Cease 6/3 "peer de-configured");
* ``changed`` neighbors, each with the fields that changed and whether the session must be
  reset (Cease 6/6 "other configuration change", then a new session with the new settings)
  or the new settings apply without touching the session;
* ``unchanged`` neighbors;
* global changes: ``local_as`` / ``router_id`` reset every session (they are in every
  OPEN); ``listen`` / ``port`` re-bind the listeners only; ``log_level`` / ``log_format`` apply
  live; ``run_dir`` / ``session_workers`` cannot change while running: ``refusals`` is then
  non-empty and nothing at all may be applied;
* [bus] (``Config.bus``: the RIB endpoint and its CURVE keys, key file contents included)
  cannot change while running either: a refusal.

The classification follows what operators of BIRD and OpenBGPD expect: anything that is
negotiated in the OPEN or that shapes the transport needs a new session; local policy that
the session does not carry applies live.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import BusConfig, Config, GlobalConfig, NeighborConfig

__all__ = [
    "NEIGHBOR_RESET", "NEIGHBOR_LIVE", "GLOBAL_RESET_ALL", "GLOBAL_LISTEN", "GLOBAL_LIVE",
    "GLOBAL_REFUSED", "BUS_REFUSED", "NeighborChange", "ReloadPlan", "diff",
]

# --- neighbor fields --------------------------------------------------------------------------
# field -> why a change of it resets the session (Cease 6/6, then a new session)
NEIGHBOR_RESET: dict[str, str] = {
    "asn": "the peer AS is checked against the OPEN (RFC 4271 §6.2); the session was accepted "
           "for the old AS",
    "passive": "decides who opens the TCP connection; the FSM's start mode only changes with a "
               "new start",
    "hold_time": "our hold time is sent in the OPEN and the negotiated value is fixed for the "
                 "session's life (RFC 4271 §4.2)",
    "add_path": "ADD-PATH is a capability in the OPEN (RFC 7911); it changes the NLRI encoding",
    "add_path_send_max": "how many paths the client is sent: its exports must be rebuilt from "
                         "scratch, which a new session does cleanly",
    "role": "the BGP Role capability is in the OPEN (RFC 9234)",
    "role_strict": "strict mode decides whether the OPEN is accepted (RFC 9234 §4.2)",
    "ipv4": "the MP-BGP families are capabilities in the OPEN (RFC 4760)",
    "ipv6": "the MP-BGP families are capabilities in the OPEN (RFC 4760)",
    "graceful_restart": "the Graceful Restart capability is in the OPEN (RFC 4724)",
    "md5_password": "the TCP MD5 key signs every segment of the connection (RFC 2385); the "
                    "old connection cannot switch keys",
    "ttl_security": "GTSM sets the TTL of the connection's packets (RFC 5082); applied when a "
                    "connection is made",
    "prepend_rs_as": "changes the AS_PATH of everything the client was sent (RFC 7947 "
                     "§2.2.2): its exports must be re-sent",
}

# field -> why a change of it applies without touching the session
NEIGHBOR_LIVE: dict[str, str] = {
    "name": "a label for logs and the control socket; not on the wire",
    "description": "a label; not on the wire",
    "group": "only where settings were inherited from; the resolved settings are compared "
             "field by field",
    "connect_retry": "a local timer: the next connection attempt uses the new value",
    "delay_open": "a local timer: the next connection uses the new value",
    "collision_in_established": "local collision policy: applies to the next collision",
    "error_wait_time": "a local timer (the Idle wait after an error): the next error uses the "
                       "new value",
    "max_prefix": "local limits: the RIB is told the new limits at once (a new SessionUp) and "
                  "counts against them from now",
}

# ``enabled`` is neither: true -> false takes the neighbor down (Cease 6/2 Administrative
# Shutdown, it stays down), false -> true brings it up (ManualStart)
NEIGHBOR_ADMIN = "enabled"

# --- global fields ----------------------------------------------------------------------------
GLOBAL_RESET_ALL: dict[str, str] = {
    "local_as": "our AS is in every OPEN: every session resets",
    "router_id": "our BGP identifier is in every OPEN: every session resets",
    "loopback_next_hop": "decides whether routes already received were treated as withdrawn "
                         "(127/8 next hops); it is fixed in each session's codec context, and "
                         "only a new session has every route re-sent and judged again",
}
GLOBAL_LISTEN: dict[str, str] = {
    "listen": "the listeners are re-bound (removed ones closed, added ones opened); "
              "established sessions are not touched",
    "port": "the listeners are re-bound on the new port; established sessions are not touched",
}
GLOBAL_LIVE: dict[str, str] = {
    "log_level": "applies to the supervisor at once; workers and the RIB process take it when "
                 "they are next started",
    "log_format": "applies to the supervisor at once; workers and the RIB process take it when "
                  "they are next started",
}
GLOBAL_REFUSED: dict[str, str] = {
    "run_dir": "run_dir cannot change while running (it holds the pid file, the control socket "
               "and the RIB endpoint); restart the server",
    "session_workers": "session_workers cannot change while running (the process layout is "
                       "fixed at start); restart the server",
}

# [bus] (Config.bus): the RIB binds it and every worker is connected to it; nothing of it can
# change under running processes
_BUS_WHY = ("the RIB process binds the bus and every worker is connected to it with these "
            "settings; restart the server")
BUS_REFUSED: dict[str, str] = {
    "endpoint": f"bus.endpoint cannot change while running ({_BUS_WHY})",
    "server_key_file": f"bus.server_key_file cannot change while running ({_BUS_WHY})",
    "client_key_file": f"bus.client_key_file cannot change while running ({_BUS_WHY})",
    "server_public": f"the RIB's CURVE keypair (bus.server_key_file) changed ({_BUS_WHY})",
    "server_secret": f"the RIB's CURVE keypair (bus.server_key_file) changed ({_BUS_WHY})",
    "client_public": f"the workers' CURVE keypair (bus.client_key_file) changed ({_BUS_WHY})",
    "client_secret": f"the workers' CURVE keypair (bus.client_key_file) changed ({_BUS_WHY})",
}
_BUS_SHOWN = ("endpoint", "server_key_file", "client_key_file")     # never print the keys

_NEIGHBOR_FIELDS = tuple(NeighborConfig.__struct_fields__)
_GLOBAL_FIELDS = tuple(GlobalConfig.__struct_fields__)
_BUS_FIELDS = tuple(BusConfig.__struct_fields__)
# every field is classified exactly once (checked by the tests too)
assert set(_NEIGHBOR_FIELDS) == set(NEIGHBOR_RESET) | set(NEIGHBOR_LIVE) | {NEIGHBOR_ADMIN, "address"}
assert set(_GLOBAL_FIELDS) == (set(GLOBAL_RESET_ALL) | set(GLOBAL_LISTEN) | set(GLOBAL_LIVE)
                               | set(GLOBAL_REFUSED))
assert set(_BUS_FIELDS) == set(BUS_REFUSED)
assert set(Config.__struct_fields__) == {"source", "global_", "neighbors", "bus"}


@dataclass(frozen=True)
class NeighborChange:
    """One neighbor present in both configurations whose settings differ."""

    old: NeighborConfig
    new: NeighborConfig
    fields: tuple[str, ...]             # the changed fields, in NeighborConfig order
    reset: bool                         # the session must restart (Cease 6/6)
    admin: Optional[str] = None         # "down" (enabled true -> false) / "up" (false -> true)

    @property
    def address(self) -> str:
        return self.new.address


@dataclass(frozen=True)
class ReloadPlan:
    added: tuple[NeighborConfig, ...] = ()
    removed: tuple[NeighborConfig, ...] = ()
    changed: tuple[NeighborChange, ...] = ()
    unchanged: tuple[NeighborConfig, ...] = ()
    global_changed: tuple[str, ...] = ()            # GlobalConfig fields that differ
    reset_all: bool = False                         # local_as / router_id changed
    listen_added: tuple[tuple[str, int], ...] = ()  # (address, port) listeners to open
    listen_removed: tuple[tuple[str, int], ...] = ()
    refusals: tuple[str, ...] = field(default=())   # non-empty: apply nothing

    @property
    def ok(self) -> bool:
        return not self.refusals

    @property
    def reset(self) -> tuple[str, ...]:
        """Addresses whose session is reset (Cease 6/6 and a new session)."""
        if self.reset_all:
            return tuple(c.address for c in self.changed) + tuple(n.address for n in self.unchanged)
        return tuple(c.address for c in self.changed if c.reset)


def classify(old: NeighborConfig, new: NeighborConfig) -> Optional[NeighborChange]:
    """The change of one neighbor (same address), or None when nothing differs."""
    fields = tuple(f for f in _NEIGHBOR_FIELDS if getattr(old, f) != getattr(new, f))
    if not fields:
        return None
    reset = any(f in NEIGHBOR_RESET for f in fields)
    admin = None
    if NEIGHBOR_ADMIN in fields:
        admin = "up" if new.enabled else "down"
    return NeighborChange(old=old, new=new, fields=fields, reset=reset, admin=admin)


def _listeners(g: GlobalConfig) -> list[tuple[str, int]]:
    return list(dict.fromkeys((a, g.port) for a in g.listen))


def _bus_refusals(bo: BusConfig, bn: BusConfig) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for f in _BUS_FIELDS:
        if getattr(bo, f) == getattr(bn, f) or BUS_REFUSED[f] in seen:
            continue
        seen.add(BUS_REFUSED[f])
        if f in _BUS_SHOWN:
            out.append(f"bus.{f}: {BUS_REFUSED[f]} (running {getattr(bo, f)!r}, file says {getattr(bn, f)!r})")
        else:
            out.append(f"bus: {BUS_REFUSED[f]}")
    return tuple(out)


def diff(old: Config, new: Config) -> ReloadPlan:
    """What applying ``new`` over the running ``old`` means (see the module docstring)."""
    go, gn = old.global_, new.global_
    global_changed = tuple(f for f in _GLOBAL_FIELDS if getattr(go, f) != getattr(gn, f))
    refusals = tuple(f"global.{f}: {GLOBAL_REFUSED[f]} (running {getattr(go, f)!r}, file says "
                     f"{getattr(gn, f)!r})" for f in global_changed if f in GLOBAL_REFUSED)
    refusals += _bus_refusals(old.bus, new.bus)
    if refusals:
        return ReloadPlan(global_changed=global_changed, refusals=refusals)

    old_by = {n.address: n for n in old.neighbors}
    new_by = {n.address: n for n in new.neighbors}
    added = tuple(n for n in new.neighbors if n.address not in old_by)
    removed = tuple(n for n in old.neighbors if n.address not in new_by)
    changed: list[NeighborChange] = []
    unchanged: list[NeighborConfig] = []
    for n in new.neighbors:
        o = old_by.get(n.address)
        if o is None:
            continue
        c = classify(o, n)
        if c is None:
            unchanged.append(n)
        else:
            changed.append(c)
    lo, ln = _listeners(go), _listeners(gn)
    return ReloadPlan(
        added=added, removed=removed, changed=tuple(changed), unchanged=tuple(unchanged),
        global_changed=global_changed,
        reset_all=any(f in GLOBAL_RESET_ALL for f in global_changed),
        listen_added=tuple(x for x in ln if x not in lo),
        listen_removed=tuple(x for x in lo if x not in ln),
    )
