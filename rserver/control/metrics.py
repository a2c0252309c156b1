"""Prometheus text exposition (format 0.0.4) of the neighbors' status.

Pure: takes the per-neighbor status dicts the control server already collects for
``summary`` (PeerRunner.status() from the workers, or the supervisor's last known event when a
worker did not answer) and renders them. Metric names follow Prometheus conventions
(``_total`` counters, ``_seconds`` units); states are numbered as the BGP MIB's bgpPeerState
(RFC 4273): idle 1, connect 2, active 3, opensent 4, openconfirm 5, established 6.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

__all__ = ["render", "STATE_NUMBERS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4"

STATE_NUMBERS = {
    "idle": 1, "connect": 2, "active": 3, "open sent": 4, "open confirm": 5, "established": 6,
}

# (name, type, help)
_FAMILIES = (
    ("rserver_neighbor_state", "gauge", "BGP FSM state (RFC 4273 bgpPeerState: 1 idle .. 6 established; 0 unknown)."),
    ("rserver_neighbor_up", "gauge", "1 when the session is Established."),
    ("rserver_neighbor_admin_up", "gauge", "1 when the neighbor is administratively enabled."),
    ("rserver_neighbor_uptime_seconds", "gauge", "Seconds since the session became Established."),
    ("rserver_neighbor_established_total", "counter", "Times the session reached Established."),
    ("rserver_neighbor_messages_received_total", "counter", "BGP messages received, by type."),
    ("rserver_neighbor_messages_sent_total", "counter", "BGP messages sent, by type."),
    ("rserver_neighbor_prefixes_received_total", "counter", "Prefixes announced by the neighbor (announcements, not table size)."),
    ("rserver_neighbor_prefixes_withdrawn_total", "counter", "Prefixes withdrawn by the neighbor (including treat-as-withdraw)."),
    ("rserver_neighbor_update_problems_total", "counter", "Problems found in the neighbor's UPDATEs (RFC 7606 actions)."),
    ("rserver_neighbor_status_available", "gauge", "1 when the neighbor's worker answered the status request."),
)


def _escape(v: str) -> str:
    # label values: backslash, double quote and newline are escaped (exposition format)
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, Any]]) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs) + "}"


def _num(v: Any) -> Optional[str]:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(round(v, 3))
    return None


def render(rows: list[dict[str, Any]], version: str = "") -> str:
    """The exposition text for the ``summary`` rows (each optionally carrying ``detail``:
    the worker's full status dict)."""
    samples: dict[str, list[str]] = {name: [] for name, _t, _h in _FAMILIES}

    def add(name: str, labels: list[tuple[str, Any]], value: Any) -> None:
        s = _num(value)
        if s is not None:
            samples[name].append(f"{name}{_labels(labels)} {s}")

    for r in rows:
        base = [("neighbor", r["address"]), ("name", r["name"]), ("peer_as", r["peer_as"])]
        d = r.get("detail") or {}
        state = r.get("state") or ""
        add("rserver_neighbor_state", base, STATE_NUMBERS.get(state, 0))
        add("rserver_neighbor_up", base, state == "established")
        add("rserver_neighbor_admin_up", base, r.get("admin_up"))
        add("rserver_neighbor_uptime_seconds", base, r.get("uptime") if state == "established" else None)
        add("rserver_neighbor_established_total", base, d.get("established_count"))
        for direction in ("received", "sent"):
            per_type = d.get(f"messages_{direction}") or {}
            for mtype in sorted(per_type):
                add(f"rserver_neighbor_messages_{direction}_total", base + [("type", mtype)], per_type[mtype])
        add("rserver_neighbor_prefixes_received_total", base, d.get("prefixes_received"))
        add("rserver_neighbor_prefixes_withdrawn_total", base, d.get("prefixes_withdrawn"))
        add("rserver_neighbor_update_problems_total", base, d.get("update_problems"))
        add("rserver_neighbor_status_available", base, r.get("status") == "ok")

    out = []
    if version:
        out += ["# HELP rserver_build_info rserver version.", "# TYPE rserver_build_info gauge",
                f'rserver_build_info{{version="{_escape(version)}"}} 1']
    for name, typ, help_ in _FAMILIES:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {typ}")
        out.extend(samples[name])
    return "\n".join(out) + "\n"
