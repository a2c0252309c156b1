"""``rserver lab``: a route server and simulated IXP members on loopback, in one command.

    rserver lab [--members 4] [--prefixes 50000] [--run-dir ./lab] [--port 1179]
                [--ipv6/--no-ipv6] [--foreground/--detach]
    rserver lab --stop [--run-dir ./lab]

What it does:

1. writes ``RUN_DIR/lab.toml`` (AS64500, router id 127.0.0.1, listening on 127.0.0.1 only,
   ``loopback_next_hop = true``; members ``member-K`` at 127.0.1.K, AS 64500+K), validates it
   with ``rserver.config`` and starts ``rserver run -c RUN_DIR/lab.toml`` in its own session
   (stdout/stderr to ``RUN_DIR/rserver.log``; the server writes ``RUN_DIR/rserver.pid``), then
   waits for its control socket;
2. builds one synthetic table per member (``bench/tablegen.py``: disjoint shares of one draw,
   the member's AS first in every AS_PATH, its own address 127.0.1.K as the IPv4 next hop
   (as on a peering LAN; accepted because of ``loopback_next_hop``) and 2001:db8:1::K as the
   IPv6 one; IPv6 tables are a fifth of the IPv4 size) and forks the members process, in its
   own session too (``RUN_DIR/members.log``): a ``rserver.lab.fleet.Fleet`` of ``Speaker``s,
   every member announcing its table and receiving everyone else's;
3. draws progress bars on stderr until every member holds the full expected table (the
   others' prefixes) or the timeout passes, prints a summary on stdout and the commands to
   try next, and returns leaving both running (``--foreground``: stays until Ctrl-C, then
   stops them).

``RUN_DIR/lab.json`` records the two process ids. ``--stop`` sends SIGTERM to each (the
members first: they close with a Cease), waits, falls back to SIGKILL, then SIGKILLs any
process still in either's session (the server's workers and RIB process, the fleet's
workers). Exit status: 0 converged (or stopped); 1 a lab already runs in RUN_DIR, the
server or the members failed, or the timeout passed (the processes are then stopped);
2 bad arguments or a port in use. Loopback only.
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TextIO

from .procinfo import alive, memory_mb, session_pids

__all__ = ["LabError", "lab_config", "start", "stop", "running", "main"]

RS_ADDR = "127.0.0.1"
RS_AS = 64500
STATE = "lab.json"
CONFIG = "lab.toml"
CLK = os.sysconf("SC_CLK_TCK")


class LabError(Exception):
    """Reported as ``rserver lab: MESSAGE`` with exit status ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class Member:
    name: str
    address: str
    asn: int
    next_hop6: str
    n4: int = 0
    n6: int = 0
    wire: bytes = b""
    sample: str = ""


# --- processes ------------------------------------------------------------------------------
def _term(pid: int, sid: int, bound: float) -> str:
    """SIGTERM one process (if still in its session), wait, SIGKILL after ``bound``."""
    if not alive(pid, sid):
        return "not running"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "not running"
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if not alive(pid, sid):
            return "stopped"
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    end = time.monotonic() + 5
    while alive(pid, sid) and time.monotonic() < end:
        time.sleep(0.05)
    return "killed (SIGTERM not honoured in time)"


def _sweep(sid: int) -> int:
    """SIGKILL every process left in session ``sid``, one PID at a time."""
    n = 0
    for p in session_pids(sid):
        try:
            os.kill(p, signal.SIGKILL)
            n += 1
        except ProcessLookupError:
            pass
    end = time.monotonic() + 5
    while session_pids(sid) and time.monotonic() < end:
        time.sleep(0.05)
    return n


def read_state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / STATE).read_text())
    except (OSError, ValueError):
        return {}


def running(run_dir: Path) -> dict:
    """The recorded lab state when its server or members process still runs, else {}."""
    st = read_state(run_dir)
    for k in ("server_pid", "members_pid"):
        pid = st.get(k)
        if pid and alive(pid, pid):          # each leads its own session
            return st
    return {}


def stop(run_dir: Path, out: TextIO = sys.stdout, bound: float = 15.0) -> int:
    """Stop the lab of ``run_dir`` by PID. 0 when something was stopped, 1 when none ran."""
    st = read_state(run_dir)
    if not st or not any(alive(st.get(k), st.get(k)) or (st.get(k) and session_pids(st[k]))
                         for k in ("members_pid", "server_pid")):
        print(f"rserver lab: no lab running in {run_dir}", file=out)
        return 1
    for key, what in (("members_pid", "members"), ("server_pid", "rserver")):
        pid = st.get(key)
        if not pid:
            continue
        how = _term(pid, pid, bound)
        left = _sweep(pid)
        extra = f", {left} leftover process(es) killed" if left else ""
        print(f"{what} (pid {pid}): {how}{extra}", file=out)
    try:
        (run_dir / STATE).unlink()
    except OSError:
        pass
    print(f"lab in {run_dir} stopped", file=out)
    return 0


# --- configuration --------------------------------------------------------------------------
def lab_config(run_dir: Path, port: int, members: list[Member], ipv6: bool, max_prefix: int,
               max_prefix6: int) -> str:
    text = f"""# rserver lab: written by `rserver lab`; loopback only
[global]
local_as = {RS_AS}
router_id = "{RS_ADDR}"
listen = ["{RS_ADDR}"]
port = {port}
run_dir = "{run_dir}"
log_format = "human"
log_level = "info"
# members announce their own 127.0.1.N as next hop: lab on loopback only, never in production
loopback_next_hop = true

[defaults]
passive = true
hold_time = 90
ipv6 = {"true" if ipv6 else "false"}
max_prefix = {{ ipv4 = {max_prefix}, ipv6 = {max_prefix6}, action = "shutdown" }}
"""
    for m in members:
        text += (f'\n[[neighbor]]\nname = "{m.name}"\naddress = "{m.address}"\nas = {m.asn}\n'
                 f'description = "simulated member {m.name[7:]}"\n')
    return text


def _tablegen():
    """bench/tablegen.py of this source tree (the lab needs the repository checkout)."""
    try:
        from bench import tablegen  # type: ignore[import-not-found]
        if hasattr(tablegen, "generate_split"):
            return tablegen
    except ImportError:
        pass
    path = Path(__file__).resolve().parents[2] / "bench" / "tablegen.py"
    if not path.exists():
        raise LabError(f"the table generator is missing ({path}): rserver lab runs from a source checkout")
    spec = importlib.util.spec_from_file_location("rserver_lab_tablegen", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod         # dataclasses look the module up while it executes
    spec.loader.exec_module(mod)
    return mod


def _tables(mems: list[Member], n4: int, n6: int, cache_dir: Path, err: TextIO, shown: str) -> bool:
    """Fill each member's wire (IPv4 then IPv6 UPDATEs) and sample prefix; the tables are
    kept in ``cache_dir`` (one pair of files per parameter set). True when read from there."""
    import hashlib
    tg = _tablegen()
    key = {"gen": getattr(tg, "GEN_VERSION", 0), "lab": 1, "members": len(mems), "n4": n4, "n6": n6}
    stem = cache_dir / ("t-" + hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12])
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        blob = stem.with_suffix(".bin").read_bytes()
        if meta["key"] == key and meta["sha1"] == hashlib.sha1(blob).hexdigest():
            for m, (lo, hi, sample) in zip(mems, meta["members"]):
                m.wire, m.sample = blob[lo:hi], sample
            return True
    except (OSError, ValueError, KeyError, TypeError):
        pass
    print(f"building the synthetic tables ({len(mems)} x {n4:,} IPv4" + (f" + {n6:,} IPv6" if n6 else "")
          + f" prefixes; kept in {shown} for the next run) ...", file=err, flush=True)
    tabs4 = tg.generate_split(1, n4, [(m.asn, m.address) for m in mems], seed=1)
    tabs6 = tg.generate_split(2, n6, [(m.asn, m.next_hop6) for m in mems], seed=1) if n6 else [None] * len(mems)
    spans, pos = [], 0
    for m, a, b in zip(mems, tabs4, tabs6):
        m.wire = a.wire + (b.wire if b is not None else b"")
        m.sample = a.params["sample"]
        spans.append((pos, pos + len(m.wire), m.sample))
        pos += len(m.wire)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob("t-*"):
            old.unlink()
        blob = b"".join(m.wire for m in mems)
        stem.with_suffix(".bin").write_bytes(blob)
        stem.with_suffix(".json").write_text(json.dumps(
            {"key": key, "sha1": hashlib.sha1(blob).hexdigest(), "members": spans}))
    except OSError:
        pass
    return False


def _port_free(port: int) -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((RS_ADDR, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --- progress ---------------------------------------------------------------------------------
def _bar(frac: float, width: int = 24) -> str:
    k = int(max(0.0, min(1.0, frac)) * width)
    return "[" + "#" * k + "." * (width - k) + "]"


class Progress:
    """Per-member bars (announced to the RS / received from it) and an overall one, redrawn
    in place on a terminal, a plain snapshot every few seconds otherwise."""

    def __init__(self, err: TextIO, members: list[Member], expected: list[int]):
        self.err, self.members, self.expected = err, members, expected
        self.tty = err.isatty()
        self.drawn = 0
        self.last = 0.0

    def lines(self, announced: list[Optional[int]], received: list[int], elapsed: float,
              pss: float) -> list[str]:
        w = max(len(m.name) for m in self.members)
        out = []
        for m, a, r, e in zip(self.members, announced, received, self.expected):
            total = m.n4 + m.n6
            a = a or 0
            out.append(f"{m.name:<{w}} announced {_bar(a / total if total else 1, 12)} {a:>9,}/{total:,}"
                       f"  received {_bar(r / e if e else 1)} {r:>10,}/{e:,}")
        done = sum(1 for r, e in zip(received, self.expected) if r >= e)
        n = len(self.members)
        out.append(f"{'all':<{w}} {_bar(done / n, 12 + 10 + 10)} {done}/{n} members hold the full table"
                   f"  {elapsed:6.1f}s  rserver PSS {pss:,.0f} MB")
        return out

    def show(self, lines: list[str], final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if self.drawn:
                self.err.write(f"\x1b[{self.drawn}F")
            self.err.write("".join(f"\x1b[2K{x}\n" for x in lines))
            self.drawn = len(lines)
            self.err.flush()
        elif final or now - self.last >= 3:
            self.last = now
            self.err.write("\n".join(lines) + "\n\n")
            self.err.flush()


# --- members process ------------------------------------------------------------------------------
def _members_main(fleet, ctl, log_path: Path, pids_path: Path) -> None:
    """The forked members process: own session, stdio to its log, runs the fleet until
    SIGTERM. ``ctl``: shared doubles [go time (monotonic), stopped]."""
    code = 0
    try:
        os.setsid()
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        nul = os.open(os.devnull, os.O_RDONLY)
        os.dup2(nul, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(nul)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        stopping = []

        def on_signal(signum, frame):
            stopping.append(signum)

        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, on_signal)
        try:                                 # `ps` shows it (and its fleet workers) by name
            with open("/proc/self/comm", "w") as f:
                f.write("rserver-lab")
        except OSError:
            pass
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} members process {os.getpid()}: "
              f"{fleet.n} speakers", flush=True)
        fleet.start()
        pids_path.write_text(" ".join(map(str, fleet.pids())) + "\n")
        ok = False
        end = time.monotonic() + 60
        while not stopping and time.monotonic() < end:
            ok = fleet.wait_established(0.5)
            if ok or any(s == -1 for s in fleet.states()):
                break
        if ok and not stopping:
            ctl[0] = time.monotonic()
            fleet.go()
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} every session up: tables sent", flush=True)
        else:
            print(f"sessions not established: {fleet.states()} {fleet.errors}", flush=True)
            code = 1
        while not stopping:
            time.sleep(0.2)
            fleet.states()                   # drains the workers' error reports
            for e in fleet.errors:
                print(e, flush=True)
            fleet.errors.clear()
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} stopping (signal {stopping[0]})", flush=True)
    except BaseException:  # noqa: BLE001 - logged, then exit
        traceback.print_exc()
        code = 1
    finally:
        try:
            fleet.stop()
        except BaseException:  # noqa: BLE001
            pass
        ctl[1] = 1
        os._exit(code)


# --- the command --------------------------------------------------------------------------------
def _fmt_cmd(run_dir_arg: str, conf: Path) -> str:
    rel = Path(run_dir_arg) / CONFIG
    return f"-c {rel}" if not Path(run_dir_arg).is_absolute() else f"-c {conf}"


def _summary_rows(data: dict) -> dict:
    return {r.get("address"): r for r in data.get("neighbors", [])}


def start(*, members: int = 4, prefixes: int = 50_000, run_dir: str = "./lab", port: int = 1179,
          ipv6: bool = True, foreground: bool = False, timeout: float = 600.0,
          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from rserver.config import ConfigError, load
    from rserver.control.client import ControlClient, ControlError
    from .fleet import ST_FAILED, Fleet, SpeakerSpec

    if not 1 <= members <= 250:
        raise LabError("--members: 1 to 250", 2)
    if not 1 <= prefixes <= 2_000_000:
        raise LabError("--prefixes: 1 to 2,000,000", 2)
    rd = Path(run_dir).resolve()
    st = running(rd)
    if st:
        raise LabError(f"a lab is already running in {run_dir} (rserver pid {st.get('server_pid')}, members "
                       f"pid {st.get('members_pid')}, port {st.get('port')}): query it, or "
                       f"`rserver lab --stop{'' if run_dir == './lab' else ' --run-dir ' + run_dir}` first")
    if not _port_free(port):
        raise LabError(f"{RS_ADDR}:{port} is in use (another route server?): choose another --port", 2)
    rd.mkdir(parents=True, exist_ok=True)
    for stale in ("members.pids", STATE):
        try:
            (rd / stale).unlink()
        except OSError:
            pass

    n6 = max(1, prefixes // 5) if ipv6 else 0
    mems = [Member(f"member-{k}", f"127.0.1.{k}", RS_AS + k, f"2001:db8:1::{k:x}", prefixes, n6)
            for k in range(1, members + 1)]
    print(f"rserver lab: {members} members x {prefixes:,} IPv4" + (f" + {n6:,} IPv6" if ipv6 else "")
          + f" prefixes, route server on {RS_ADDR}:{port}, run dir {run_dir}", file=err, flush=True)

    # 1. the tables, the configuration and the server
    t = time.monotonic()
    cached = _tables(mems, prefixes, n6, rd / "tables", err, f"{run_dir.rstrip('/')}/tables")
    t_tables = time.monotonic() - t
    t_begin = time.monotonic()
    conf = rd / CONFIG
    mp4 = max(1000, 2 * prefixes)
    conf.write_text(lab_config(rd, port, mems, ipv6, mp4, max(1000, 2 * n6)))
    try:
        load(str(conf))
    except ConfigError as e:
        raise LabError(f"the generated configuration does not validate: {e}")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(rd / "rserver.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "rserver", "run", "-c", str(conf)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=str(rd), env=env, start_new_session=True, close_fds=True)
    state = {"server_pid": proc.pid, "members_pid": None, "port": port, "config": str(conf),
             "started": time.time()}
    (rd / STATE).write_text(json.dumps(state))
    sock = rd / "rserver.sock"
    members_pid: Optional[int] = None

    def fail(msg: str) -> LabError:
        tail = ""
        try:
            tail = (rd / "rserver.log").read_text(errors="replace")[-1500:]
        except OSError:
            pass
        for name in ("members.log",):
            try:
                tail += f"\n--- {name} ---\n" + (rd / name).read_text(errors="replace")[-1500:]
            except OSError:
                pass
        stop(rd, out=err)
        return LabError(f"{msg}\n--- rserver.log (tail) ---\n{tail}")

    end = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise fail(f"rserver exited at start (status {proc.returncode})")
        try:
            with ControlClient(str(sock), timeout=2) as c:
                c.request("summary")
            break
        except (ControlError, OSError):
            pass
        if time.monotonic() > end:
            raise fail("rserver's control socket did not answer within 30 s")
        time.sleep(0.1)
    t_server = time.monotonic() - t_begin

    # 2. the members process
    total4, total6 = prefixes * members, n6 * members
    expected = [total4 - m.n4 + total6 - m.n6 for m in mems]
    specs = [SpeakerSpec(m.name, m.address, m.asn, RS_ADDR, port, keep="count", wire=m.wire, ipv6=ipv6)
             for m in mems]
    fleet = Fleet(specs, workers=min(2, members))
    import multiprocessing as mp
    ctl = mp.get_context("fork").RawArray("d", 2)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _members_main(fleet, ctl, rd / "members.log", rd / "members.pids")   # never returns
    members_pid = pid
    state["members_pid"] = pid
    (rd / STATE).write_text(json.dumps(state))
    for m in mems:       # the parent no longer needs the tables (the child has its copy)
        m.wire = b""

    # 3. progress until converged
    bars = Progress(err, mems, expected)
    announced: list[Optional[int]] = [0] * members
    states: dict = {}
    pss = peak = 0.0
    t_poll = t_mem = 0.0
    go_at = 0.0
    deadline = time.monotonic() + timeout
    error = ""
    client = None
    def poll_summary(client):
        """The server's per-member counts and states, through the control socket."""
        if client is None:
            client = ControlClient(str(sock), timeout=5)
        rows = _summary_rows(client.request("summary"))
        for i, m in enumerate(mems):
            r = rows.get(m.address) or {}
            announced[i] = r.get("prefixes_received") or 0
            states[m.name] = (r.get("state") or "?").capitalize()
        return client

    try:
        while True:
            now = time.monotonic()
            if ctl[0] and not go_at:
                go_at = ctl[0]
            if now - t_poll >= 0.25:
                t_poll = now
                try:
                    client = poll_summary(client)
                except (ControlError, OSError) as e:
                    client = None
                    if proc.poll() is not None:
                        error = f"rserver exited (status {proc.returncode}): {e}"
                        break
            if now - t_mem >= 0.5:
                t_mem = now
                pss = memory_mb(session_pids(proc.pid))[0]
                peak = max(peak, pss)
            received = [fleet.counts[i] + fleet.counts6[i] for i in range(members)]
            elapsed = now - go_at if go_at else 0.0
            bars.show(bars.lines(announced, received, elapsed, pss))
            if go_at and all(r >= e for r, e in zip(received, expected)):
                conv = time.monotonic() - go_at
                break
            if proc.poll() is not None:
                error = f"rserver exited (status {proc.returncode})"
                break
            if not alive(members_pid) or ctl[1]:
                error = "the members process exited"
                break
            if any(s == ST_FAILED for s in fleet.state):
                error = "a member's session failed: " + ", ".join(
                    m.name for m, s in zip(mems, fleet.state) if s == ST_FAILED)
                break
            if now > deadline:
                error = f"not converged within {timeout:g} s"
                break
            time.sleep(0.1)
        # final figures
        try:
            client = poll_summary(client)
        except (ControlError, OSError):
            pass
        pss = memory_mb(session_pids(proc.pid))[0]
        nproc = len(session_pids(proc.pid))
        received = [fleet.counts[i] + fleet.counts6[i] for i in range(members)]
        bars.show(bars.lines(announced, received, (time.monotonic() - go_at) if go_at else 0.0, pss),
                  final=True)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        if client is not None:
            client.close()
    if error:
        raise fail(error + "; " + ", ".join(f"{m.name} {r:,}/{e:,}" for m, r, e in
                                            zip(mems, received, expected)))

    # 4. the summary
    w = max(len(m.name) for m in mems)
    pr = print
    pr(f"\nrserver lab: {members} members on {RS_ADDR}:{port}, converged in {conv:.2f} s", file=out)
    head = f"  {'member':<{w}}  {'address':<11}  {'AS':>5}  {'session':<11}  {'announced':>10}  {'received':>10}"
    pr(head, file=out)
    for m, a, r in zip(mems, announced, received):
        pr(f"  {m.name:<{w}}  {m.address:<11}  {m.asn:>5}  {states.get(m.name) or '?':<11}  {a or 0:>10,}  {r:>10,}",
           file=out)
    established = sum(1 for m in mems if states.get(m.name) == "Established")
    delivered = sum(received)
    pr(f"  sessions Established: {established}/{members}; every member holds the other "
       f"{members - 1} members' {expected[0]:,} prefixes", file=out)
    pr(f"  {total4 + total6:,} prefixes announced, {delivered:,} delivered in {conv:.2f} s "
       f"({delivered / conv if conv > 0 else 0:,.0f} prefixes/s); rserver PSS {pss:,.0f} MB "
       f"({nproc} processes, peak {max(peak, pss):,.0f} MB)", file=out)
    pr(f"  (tables {'read from ' + run_dir + '/tables' if cached else 'built'} in {t_tables:.1f} s, "
       f"server up in {t_server:.1f} s)", file=out)
    ca = _fmt_cmd(run_dir, conf)
    ip = mems[0].sample.split("/")[0]
    ip = ip[:-1] + "1" if ip.endswith(".0") else ip
    stop_cmd = "rserver lab --stop" + ("" if run_dir == "./lab" else f" --run-dir {run_dir}")
    pr("\nThe route server and the members keep running. Try:", file=out)
    pr(f"  rserver show summary {ca}", file=out)
    pr(f"  rserver show rib for {ip} {ca}", file=out)
    pr(f"  rserver show neighbor member-1 {ca}", file=out)
    pr(f"  {stop_cmd}", file=out)
    rdo = run_dir.rstrip("/")
    pr(f"(or -s {rdo}/rserver.sock; logs: {rdo}/rserver.log, {rdo}/members.log)", file=out)
    out.flush()
    if foreground:
        pr("\n--foreground: Ctrl-C stops the lab", file=err)
        try:
            while alive(proc.pid) and alive(members_pid):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        return stop(rd, out=out)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m rserver.lab.lab``: the same as ``rserver lab`` (argparse, for scripts)."""
    import argparse
    ap = argparse.ArgumentParser(prog="rserver lab")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--prefixes", type=int, default=50_000)
    ap.add_argument("--run-dir", default="./lab")
    ap.add_argument("--port", type=int, default=1179)
    ap.add_argument("--no-ipv6", action="store_true")
    ap.add_argument("--foreground", action="store_true")
    ap.add_argument("--stop", action="store_true")
    a = ap.parse_args(argv)
    try:
        if a.stop:
            return stop(Path(a.run_dir).resolve())
        return start(members=a.members, prefixes=a.prefixes, run_dir=a.run_dir, port=a.port,
                     ipv6=not a.no_ipv6, foreground=a.foreground)
    except LabError as e:
        print(f"rserver lab: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
