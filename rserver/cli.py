"""The ``rserver`` command line (click).

    rserver run -c FILE [--check] [--log-format human|json] [--log-level LEVEL]
    rserver show summary [-j]                 \
    rserver show neighbor X [-j]               |  over the control socket (docs/control.md):
    rserver show rib [PREFIX | for IP] [--longer|--shorter] [--detail] [--in|--out X] [-4|-6] [-j]
    rserver neighbor X up|down|clear|refresh   |  -s/--socket PATH, or -c FILE (its run_dir),
            [--reason TEXT] [-j]               |  default ./run/rserver.sock, then
    rserver monitor [--routes [PREFIX]] [-j]   |  /run/rserver/rserver.sock
    rserver reload [-j]                       /

``run`` stays in the foreground until SIGTERM/SIGINT (docs/sessions.md). ``--check`` only
validates the configuration: exit 0 with a one-line summary, or exit 2 with the error
(``file: field: expectation``) on stderr. A bad configuration never starts anything.
The control verbs exit 0 on success, 1 when the server is not running (the message names
the socket) or answers with an error (unknown neighbor, a refused reload, ...).
"""
from __future__ import annotations

import datetime
import sys
from typing import Any, Callable, Optional

import click

from .config import Config, ConfigError, load

__all__ = ["main", "cli", "summary", "EXIT_CONFIG", "format_summary", "format_neighbor", "format_event",
           "fmt_duration", "format_reload", "format_rib"]

EXIT_CONFIG = 2


def summary(cfg: Config) -> str:
    """One line describing a loaded configuration."""
    g = cfg.global_
    workers = g.session_workers or len(cfg.neighbors)
    workers = min(workers, len(cfg.neighbors))
    listen = ", ".join(f"[{a}]:{g.port}" if ":" in a else f"{a}:{g.port}" for a in g.listen)
    return (f"{cfg.source}: ok: AS{g.local_as} router-id {g.router_id}, listen {listen}, "
            f"{len(cfg.neighbors)} neighbor(s), {workers} session worker process(es)")


def _load_or_exit(path: str) -> Config:
    try:
        return load(path)
    except ConfigError as e:
        click.echo(f"rserver: configuration error: {e}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rserver", prog_name="rserver")
def cli() -> None:
    """rserver: a BGP route server for Internet Exchange Points."""


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="Configuration file (TOML).")
@click.option("--check", is_flag=True, help="Validate the configuration and exit (0: valid, 2: invalid).")
@click.option("--log-format", type=click.Choice(["human", "json"]), default=None,
              help="Log line format (default: the config's global.log_format).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Log level (default: the config's global.log_level).")
def run(config_path: str, check: bool, log_format: Optional[str], log_level: Optional[str]) -> None:
    """Run the route server in the foreground until SIGTERM or SIGINT."""
    cfg = _load_or_exit(config_path)
    if check:
        click.echo(summary(cfg))
        return
    from .log import configure
    from .supervisor.main import Supervisor

    fmt = log_format or cfg.global_.log_format
    level = log_level or cfg.global_.log_level
    configure(fmt, level)
    sup = Supervisor(cfg, log_format=log_format, log_level=log_level)   # None: the file (reload follows it)
    sys.exit(sup.run())


# --- control socket verbs ----------------------------------------------------------------------

def _socket_options(f: Callable) -> Callable:
    f = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="Configuration file: use its run_dir/rserver.sock.")(f)
    f = click.option("-s", "--socket", "socket_path", type=click.Path(), default=None,
                     help="Control socket (default: ./run/rserver.sock, then /run/rserver/rserver.sock).")(f)
    return f


_json_option = click.option("-j", "--json", "as_json", is_flag=True,
                            help="Print the reply's data as JSON (docs/control.md).")


def _connect(socket_path: Optional[str], config_path: Optional[str]):
    from .control.client import ControlClient, ControlError, find_socket
    run_dir = _load_or_exit(config_path).global_.run_dir if config_path and not socket_path else None
    path = find_socket(socket_path, run_dir)
    try:
        return ControlClient(path)
    except ControlError as e:
        click.echo(f"rserver: {e.message}", err=True)
        sys.exit(1)


def _call(socket_path: Optional[str], config_path: Optional[str], cmd: str, args: Optional[dict] = None) -> Any:
    from .control.client import ControlError
    with _connect(socket_path, config_path) as c:
        try:
            return c.request(cmd, args)
        except ControlError as e:
            click.echo(f"rserver: {e.message}" + ("" if e.code in ("not-running",) else f" ({e.code})"), err=True)
            sys.exit(1)


def _json(data: Any) -> None:
    import msgspec
    click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())


def fmt_duration(secs: Optional[float]) -> str:
    """bgpctl style: HH:MM:SS under a day, then 1d02h03m, then 2w3d04h."""
    if secs is None:
        return "-"
    s = int(secs)
    if s < 86400:
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if s < 7 * 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h{s % 3600 // 60:02d}m"
    return f"{s // 604800}w{s % 604800 // 86400}d{s % 86400 // 3600:02d}h"


def _n(v: Any) -> str:
    return "-" if v is None else str(v)


def _fam_total(v: Any) -> Optional[int]:
    return sum(x for x in v.values() if isinstance(x, int)) if isinstance(v, dict) else None


def format_summary(data: dict) -> str:
    head = ("Neighbor", "AS", "Name", "State/Up-Down", "Reason", "MsgRcvd", "MsgSent", "PfxRcvd",
            "Accepted", "Exported")
    rows = []
    for r in data.get("neighbors", []):
        state = r.get("state") or "?"
        t = r.get("uptime") if r.get("uptime") is not None else r.get("downtime")
        updown = f"{state} {fmt_duration(t)}" if t is not None else state
        if r.get("admin_up") is False:
            updown += " (admin down)"
        rows.append((r["address"], str(r.get("peer_as", "")), r.get("name") or "-", updown,
                     r.get("last_transition_reason") or "-", _n(r.get("messages_received")),
                     _n(r.get("messages_sent")), _n(r.get("prefixes_received")),
                     _n(_fam_total(r.get("accepted"))), _n(_fam_total(r.get("exported")))))
    widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
    right = {1, 5, 6, 7, 8, 9}
    out = []
    for row in [head] + rows:
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    rib = data.get("rib")
    if isinstance(rib, dict) and rib.get("status") not in (None, "ok"):
        out.append(f"(RIB {rib.get('status')}: accepted/exported unknown: {rib.get('message') or '-'})")
    return "\n".join(out)


def _when(t: Optional[float]) -> str:
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _notification(n: Optional[dict]) -> str:
    if not n:
        return "none"
    text = f"{n.get('code')}/{n.get('subcode')} {n.get('name', '')} at {_when(n.get('time'))}"
    if n.get("shutdown_message"):
        text += f'\n    shutdown communication: "{n["shutdown_message"]}"'
    elif n.get("data"):
        text += f"\n    data: {n['data']}"
    return text


def _rib_counts(d: dict) -> str:
    def fam(v: Any) -> str:
        return "-" if not isinstance(v, dict) else f"ipv4 {_n(v.get('ipv4'))} ipv6 {_n(v.get('ipv6'))}"
    text = f"accepted (Adj-RIB-In) {fam(d.get('accepted'))}, exported (Adj-RIB-Out) {fam(d.get('exported'))}"
    st = d.get("rib_status")
    if isinstance(st, dict) and st.get("status") not in (None, "ok"):
        text += f" (RIB {st.get('status')})"
    return text


def format_neighbor(d: dict) -> str:
    lines = [f"BGP neighbor {d.get('address')}, remote AS {d.get('peer_as')}"
             + (f", name {d['name']}" if d.get("name") else "")]
    if d.get("description"):
        lines.append(f"  Description: {d['description']}")
    lines.append(f"  State: {d.get('state')}" + ("" if d.get("admin_up", True) else " (administratively down)")
                 + (", passive" if d.get("passive") else ""))
    if d.get("uptime") is not None:
        lines.append(f"  Up for {fmt_duration(d['uptime'])}")
    elif d.get("downtime") is not None:
        lines.append(f"  Down for {fmt_duration(d['downtime'])}")
    lines.append(f"  Last transition: {d.get('last_transition_reason') or '-'} at {_when(d.get('last_transition_time'))}")
    if d.get("last_down_reason"):
        lines.append(f"  Last session down: {d['last_down_reason']}")
    lines.append(f"  Established {d.get('established_count', 0)} time(s), connect retries "
                 f"{d.get('connect_retry_counter', 0)}")
    conn = d.get("connection")
    if conn:
        lines.append("  Connection: " + ", ".join(f"{k} {v}" for k, v in conn.items() if v is not None))
    lines += ["", "  Timers:",
              f"    hold time {_n(d.get('hold_time'))} (configured {_n(d.get('configured_hold_time'))}), "
              f"keepalive {_n(d.get('keepalive_time'))}"]
    neg = d.get("negotiated")
    lines += ["", "  Negotiated capabilities:"]
    if neg:
        for k, v in neg.items():
            if k in ("peer_id", "local_id") and isinstance(v, int):
                v = ".".join(str(v >> s & 255) for s in (24, 16, 8, 0))
            lines.append(f"    {k}: {v}")
    else:
        lines.append("    none (no session)")
    lines += ["", "  Messages:            sent  received"]
    sent, rcvd = d.get("messages_sent") or {}, d.get("messages_received") or {}
    for k in list(dict.fromkeys(list(sent) + list(rcvd))):
        lines.append(f"    {k:<15} {sent.get(k, 0):>8}  {rcvd.get(k, 0):>8}")
    lines.append(f"    {'total':<15} {sum(sent.values()):>8}  {sum(rcvd.values()):>8}")
    lines += ["", "  Routes:",
              f"    prefixes received {_n(d.get('prefixes_received'))}, withdrawn "
              f"{_n(d.get('prefixes_withdrawn'))}, updates {_n(d.get('updates_received'))}, "
              f"update problems {_n(d.get('update_problems'))}",
              f"    end-of-rib {d.get('end_of_rib') or '-'}, route refresh received "
              f"{_n(d.get('route_refresh_received'))}",
              "    " + _rib_counts(d),
              "", "  Last notification sent: " + _notification(d.get("last_notification_sent")),
              "  Last notification received: " + _notification(d.get("last_notification_received"))]
    return "\n".join(lines)


def format_event(e: dict) -> str:
    d = e.get("data") or {}
    kind = e.get("event")
    if kind == "route":
        b = d.get("best") or {}
        text = f"{_when(d.get('time'))} route {d.get('action')} {d.get('prefix')}"
        if b:
            text += (f" via {b.get('neighbor')} AS path {b.get('as_path') or '(empty)'}"
                     f" next hop {b.get('next_hop') or '-'}")
        if d.get("previous_neighbor") and d.get("action") != "announce":
            text += f" (was {d['previous_neighbor']})"
        return text
    if kind == "dropped":
        return (f"{_when(d.get('time'))} dropped {d.get('count')} route event(s) "
                f"(rate limit {d.get('rate', '?')}/s)")
    if kind == "rib":
        return f"{_when(d.get('time'))} rib {d.get('status')}: {d.get('message') or ''}".rstrip()
    name = f" ({d['name']})" if d.get("name") else ""
    return (f"{_when(d.get('time'))} {d.get('address')}{name} {d.get('old_state')} -> "
            f"{d.get('new_state')}" + (f" ({d['reason']})" if d.get("reason") else ""))


@cli.group()
def show() -> None:
    """Show the running server's state (over the control socket)."""


@show.command("summary")
@_socket_options
@_json_option
def show_summary(socket_path: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """One line per neighbor: state, up/down time, last reason, message and prefix counts."""
    data = _call(socket_path, config_path, "summary")
    _json(data) if as_json else click.echo(format_summary(data))


@show.command("neighbor")
@click.argument("neighbor")
@_socket_options
@_json_option
def show_neighbor(neighbor: str, socket_path: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """Everything about one neighbor (by address or name)."""
    data = _call(socket_path, config_path, "neighbor", {"neighbor": neighbor})
    _json(data) if as_json else click.echo(format_neighbor(data))


@show.command("metrics")
@_socket_options
@_json_option
def show_metrics(socket_path: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """Prometheus text exposition of every neighbor's state and counters."""
    data = _call(socket_path, config_path, "metrics")
    _json(data) if as_json else click.echo(data["text"], nl=False)


_ORIGIN_CODE = {"IGP": "i", "EGP": "e", "INCOMPLETE": "?"}


def _flags(p: dict) -> str:
    return ("s" if p.get("stale") else " ") + "*" + (">" if p.get("best") else "2" if p.get("second") else " ")


def format_rib(d: dict, detail: bool = False) -> str:
    """show rib as text: a bgpctl-like table, or with ``detail`` every attribute per path."""
    out: list[str] = []
    table = d.get("table", "loc-rib")
    if table != "loc-rib":
        out.append(f"{table} of {d.get('neighbor')}")
    routes = d.get("routes") or []
    if not detail:
        out.append("flags: * valid, > best, 2 second best (sent to the best's neighbor), s stale; "
                   "origin: i IGP, e EGP, ? incomplete")
        head = ("flags", "prefix", "nexthop", "neighbor", "MED", "LP", "AS path / origin")
        rows = []
        for r in routes:
            for p in r.get("paths", []):
                path = p.get("as_path") or ""
                rows.append((_flags(p), r["prefix"], p.get("next_hop") or "-", p.get("neighbor") or "-",
                             _n(p.get("med")), _n(p.get("local_pref")),
                             (path + " " if path else "") + _ORIGIN_CODE.get(p.get("origin") or "", "-")))
        if rows:
            widths = [max(len(x[i]) for x in [head] + rows) for i in range(len(head))]
            for row in [head] + rows:
                out.append("  ".join(c.rjust(w) if i in (4, 5) else c.ljust(w)
                                     for i, (c, w) in enumerate(zip(row, widths))).rstrip())
    else:
        for r in routes:
            out.append(f"{r['prefix']} (IPv{r.get('afi')}), {len(r.get('paths', []))} path(s)")
            for p in r.get("paths", []):
                name = p.get("neighbor_name")
                who = p.get("neighbor") or "unknown source"
                if name and name != who:
                    who += f" ({name})"
                out.append(f"  {_flags(p).strip() or '*'} from {who}"
                           + (f" AS{p['peer_as']}" if p.get("peer_as") is not None else "")
                           + f", path id {p.get('path_id', 0)}" + (", stale" if p.get("stale") else ""))
                if p.get("explain"):
                    out.append(f"      decision: {p['explain']}")
                out.append(f"      origin {p.get('origin') or '-'}, AS path {p.get('as_path') or '(empty)'}")
                nh = p.get("next_hop") or "-"
                if p.get("next_hop_ll"):
                    nh += f" (link-local {p['next_hop_ll']})"
                out.append(f"      next hop {nh}, MED {_n(p.get('med'))}, local pref {_n(p.get('local_pref'))}")
                for key, label in (("communities", "communities"), ("large_communities", "large communities"),
                                   ("ext_communities", "ext communities"), ("cluster_list", "cluster list")):
                    if p.get(key):
                        out.append(f"      {label} {' '.join(map(str, p[key]))}")
                extra = []
                if p.get("atomic_aggregate"):
                    extra.append("atomic-aggregate")
                if p.get("aggregator"):
                    extra.append(f"aggregator AS{p['aggregator'].get('asn')} {p['aggregator'].get('address')}")
                if p.get("otc") is not None:
                    extra.append(f"OTC {p['otc']}")
                if p.get("originator_id"):
                    extra.append(f"originator id {p['originator_id']}")
                if p.get("unknown"):
                    extra.append("unknown attribute type(s) " + ",".join(map(str, p["unknown"])))
                if extra:
                    out.append("      " + ", ".join(extra))
            out.append("")
    if d.get("note"):
        out.append(str(d["note"]))
    if not routes:
        out.append("no routes")
    elif d.get("truncated"):
        out.append(f"... truncated after {d.get('count', len(routes))} prefix(es): narrow the query "
                   "or raise --limit")
    return "\n".join(out).rstrip("\n")


@show.command("rib")
@click.argument("what", nargs=-1)
@click.option("--longer", "match", flag_value="longer", help="The prefix and every more specific one.")
@click.option("--shorter", "match", flag_value="shorter", help="The prefix and every less specific one.")
@click.option("--detail", is_flag=True, help="Every attribute per path, and why it is (not) the best.")
@click.option("--in", "in_", metavar="NEIGHBOR", default=None, help="What NEIGHBOR sent us (its Adj-RIB-In).")
@click.option("--out", "out", metavar="NEIGHBOR", default=None, help="What NEIGHBOR was sent (its Adj-RIB-Out).")
@click.option("-4", "afi", flag_value=4, type=int, help="IPv4 only.")
@click.option("-6", "afi", flag_value=6, type=int, help="IPv6 only.")
@click.option("--limit", type=click.IntRange(1, 100000), default=1000, show_default=True,
              help="At most this many prefixes.")
@_socket_options
@_json_option
def show_rib(what: tuple, match: Optional[str], detail: bool, in_: Optional[str], out: Optional[str],
             afi: Optional[int], limit: int, socket_path: Optional[str], config_path: Optional[str],
             as_json: bool) -> None:
    """Routes: show rib [PREFIX | for IP] [--longer|--shorter] [--detail] [--in|--out NEIGHBOR].

    Without PREFIX: the whole Loc-RIB (or the neighbor's table), up to --limit prefixes.
    'for IP' is the longest match of an address."""
    args: dict = {"detail": detail, "limit": limit}
    words = list(what)
    if words and words[0] == "for":
        if len(words) != 2:
            raise click.UsageError("'for' takes one address: show rib for IP")
        args["for"] = words[1]
    elif len(words) == 1:
        args["prefix"] = words[0]
    elif words:
        raise click.UsageError("give one PREFIX, or 'for IP'")
    if match:
        if "prefix" not in args:
            raise click.UsageError(f"--{match} needs a PREFIX")
        args["match"] = match
    if in_ is not None and out is not None:
        raise click.UsageError("--in and --out exclude each other")
    if in_ is not None:
        args["in"] = in_
    if out is not None:
        args["out"] = out
    if afi is not None:
        args["afi"] = afi
    data = _call(socket_path, config_path, "rib", args)
    _json(data) if as_json else click.echo(format_rib(data, detail))


@cli.command("neighbor")
@click.argument("neighbor")
@click.argument("op", type=click.Choice(["up", "down", "clear", "refresh"]))
@click.option("--reason", default="", help="Shutdown communication (RFC 9003) sent with down/clear.")
@_socket_options
@_json_option
def neighbor_cmd(neighbor: str, op: str, reason: str, socket_path: Optional[str],
                 config_path: Optional[str], as_json: bool) -> None:
    """Enable (up), disable (down: Cease 6/2), reset (clear: Cease 6/4) or refresh a neighbor."""
    data = _call(socket_path, config_path, "neighbor-admin", {"neighbor": neighbor, "op": op, "reason": reason})
    _json(data) if as_json else click.echo(f"{data['address']} {data['op']}: {data['done']}")


@cli.command()
@click.argument("prefix", required=False)
@click.option("--routes", is_flag=True,
              help="Also print Loc-RIB best-path changes (of prefixes within PREFIX, if given).")
@_socket_options
@_json_option
def monitor(prefix: Optional[str], routes: bool, socket_path: Optional[str], config_path: Optional[str],
            as_json: bool) -> None:
    """Print every neighbor state change as it happens (with --routes also every best-path
    change, rate-limited), until Ctrl-C."""
    import msgspec
    from .control.client import ControlError
    if prefix is not None and not routes:
        raise click.UsageError("PREFIX filters route events: it needs --routes")
    args = {"routes": True, "prefix": prefix} if routes else None
    with _connect(socket_path, config_path) as c:
        try:
            for ev in c.monitor(args):
                click.echo(msgspec.json.encode(ev).decode() if as_json else format_event(ev))
        except KeyboardInterrupt:
            pass
        except ControlError as e:
            click.echo(f"rserver: {e.message}", err=True)
            sys.exit(1)


def format_reload(d: dict) -> str:
    """The reload reply as aligned text: one line per neighbor touched, then the rest."""
    rows: list[tuple[str, str, str]] = []
    changed = {c["neighbor"]: c for c in d.get("changed", [])}
    g = d.get("global") or {}
    for a in d.get("added", []):
        rows.append(("added", a, "new session (waits for the peer if passive)"))
    for a in d.get("removed", []):
        rows.append(("removed", a, "Cease 6/3 peer de-configured"))
    for a in d.get("reset", []):
        c = changed.get(a)
        why = ", ".join(c["fields"]) if c else ", ".join(x for x in g.get("changed", [])
                                                         if x in ("local_as", "router_id"))
        rows.append(("reset", a, f"Cease 6/6 other configuration change ({why})"))
    for a, c in changed.items():
        if c.get("reset"):
            continue
        what = "applied without a reset"
        if c.get("admin") == "down":
            what = "disabled: Cease 6/2 administrative shutdown"
        elif c.get("admin") == "up":
            what = "enabled: session started"
        rows.append(("changed", a, f"{', '.join(c['fields'])}: {what}"))
    rows.append(("unchanged", str(d.get("unchanged", 0)), "neighbor(s)"))
    if g.get("changed"):
        rows.append(("global", ", ".join(g["changed"]), ""))
    if g.get("listeners_opened"):
        rows.append(("listening", ", ".join(g["listeners_opened"]), ""))
    if g.get("listeners_closed"):
        rows.append(("closed", ", ".join(g["listeners_closed"]), ""))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out = [f"reloaded {d.get('config', '')}"]
    out += [f"  {k:<{w0}}  {v:<{w1}}  {t}".rstrip() for k, v, t in rows]
    return "\n".join(out)


@cli.command("reload")
@_socket_options
@_json_option
def reload_cmd(socket_path: Optional[str], config_path: Optional[str], as_json: bool) -> None:
    """Re-read the configuration file the server was started with and apply the difference.

    Exit 1, with nothing applied, when the file does not validate or changes a setting that
    cannot change while running (run_dir, session_workers)."""
    data = _call(socket_path, config_path, "reload")
    _json(data) if as_json else click.echo(format_reload(data))


@cli.command("bus-keygen")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace existing key files.")
def bus_keygen(directory: str, force: bool) -> None:
    """Write the CURVE keypairs of a tcp:// RIB bus: DIRECTORY/bus-server.key (the RIB's) and
    DIRECTORY/bus-client.key (the workers' and the control client's), mode 0600.

    Use them in the configuration's [bus] section (server_key_file, client_key_file).
    Exit 1 if a file exists already (unless --force) or cannot be written."""
    import os
    from pathlib import Path

    import zmq

    from .config import write_key_file

    d = Path(directory)
    paths = [d / "bus-server.key", d / "bus-client.key"]
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        existing = [str(p) for p in paths if p.exists()]
        if existing and not force:
            click.echo(f"rserver: {', '.join(existing)} exists already (--force replaces it)", err=True)
            sys.exit(1)
        for p in paths:
            if p.exists():
                os.unlink(p)
            public, secret = zmq.curve_keypair()
            write_key_file(p, public, secret)
    except OSError as e:
        click.echo(f"rserver: cannot write the key files in {d}: {e.strerror or e}", err=True)
        sys.exit(1)
    click.echo(f"wrote {paths[0]} and {paths[1]} (mode 0600); in the configuration:\n"
               f"[bus]\n"
               f'endpoint = "tcp://HOST:PORT"\n'
               f'server_key_file = "{paths[0].resolve()}"\n'
               f'client_key_file = "{paths[1].resolve()}"')


@cli.command("lab")
@click.option("--members", type=click.IntRange(1, 250), default=4, show_default=True,
              help="Simulated members (127.0.1.1 .. 127.0.1.N, AS64501 ..).")
@click.option("--prefixes", type=click.IntRange(1, 2_000_000), default=50_000, show_default=True,
              help="IPv4 prefixes each member announces (IPv6: a fifth of that).")
@click.option("--run-dir", default="./lab", show_default=True, type=click.Path(file_okay=False),
              help="Where lab.toml, the control socket, the pid files and the logs go.")
@click.option("--port", type=click.IntRange(1, 65535), default=1179, show_default=True,
              help="The route server's port on 127.0.0.1.")
@click.option("--ipv6/--no-ipv6", default=True, show_default=True, help="Members announce IPv6 too.")
@click.option("--foreground/--detach", default=False, show_default=True,
              help="Stay until Ctrl-C and stop the lab then, or return leaving it running.")
@click.option("--stop", "stop_", is_flag=True, help="Stop the lab running in --run-dir (by PID).")
def lab_cmd(members: int, prefixes: int, run_dir: str, port: int, ipv6: bool, foreground: bool,
            stop_: bool) -> None:
    """Start the route server on loopback with simulated members announcing a synthetic table.

    Shows progress while it converges, prints a summary and leaves the server and the
    members running for the other commands (rserver show ... -c RUN_DIR/lab.toml)."""
    from pathlib import Path
    from .lab.lab import LabError, start, stop
    try:
        if stop_:
            sys.exit(stop(Path(run_dir).resolve()))
        sys.exit(start(members=members, prefixes=prefixes, run_dir=run_dir, port=port, ipv6=ipv6,
                       foreground=foreground))
    except LabError as e:
        click.echo(f"rserver lab: {e}", err=True)
        sys.exit(e.code)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point (``rserver = "rserver.cli:main"``)."""
    cli.main(args=argv, prog_name="rserver")


if __name__ == "__main__":
    main()
