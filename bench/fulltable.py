"""End-to-end full-table benchmark: route server convergence, memory and CPU.

Scenarios (IPv4 unicast, tables from bench/tablegen.py, next hop 192.0.2.1):

* (a) one announcer sends a full table (1,000,000 prefixes) to the route server;
  10 receive-only clients must each receive every prefix.
* (b) 10 announcers send 100,000 prefixes each (distinct generated tables: seed k+1,
  announcer k's AS first in every AS_PATH); 10 clients must each receive the union of them
  (the tables of different seeds overlap on a few thousand prefixes: the expected count is
  the exact union, computed before the run, and printed).

Targets: ``rserver`` (``python -m rserver run -c FILE`` with a temporary config and run_dir)
and ``bird`` (BIRD 2 as a route server, one ``protocol bgp`` per speaker with ``rs client``),
each on 127.0.0.1 and a free port; every speaker has its own 127.0.1.N address. The
speakers (rserver.lab.speaker, clients in count mode: no Python object per prefix) run in a
few forked worker processes (rserver.lab.fleet).

Timing: the target is started, every session is brought up, then t0 = the announcers start
writing; done when every client holds the expected number of prefixes. The clients' counts
are sampled every 0.1 s, the target's PSS (sum over all its processes, from
/proc/PID/smaps_rollup) and RSS every 0.2 s; peaks are reported. CPU seconds (utime + stime) of the target's
processes and of the benchmark's own processes are measured from t0 to done.

    python -m bench.fulltable [--scenario a|b|all] [--target rserver|bird|all]
                              [--prefixes N] [--clients 10] [--timeout 300]

Exit status 1 when a run did not converge within the timeout (how far each client got is
printed). Loopback only; every process started is stopped by PID.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:          # python bench/fulltable.py works too
    sys.path.insert(0, str(REPO))

from rserver.lab.procinfo import comm, cpu_seconds, descendants, memory_mb, stat_fields  # noqa: E402
from rserver.lab.fleet import ST_FAILED, ST_UP, Fleet, SpeakerSpec  # noqa: E402

RS_ADDR = "127.0.0.1"
RS_AS = 64500
NEXT_HOP = "192.0.2.1"


def free_port(addr: str = RS_ADDR) -> int:
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def find_binary(name: str) -> Optional[str]:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/local/sbin"
    return shutil.which(name, path=path)


def _stop(proc: subprocess.Popen, bound: float = 10.0) -> None:
    """SIGTERM by PID, SIGKILL after a bound; reaped."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(bound)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(bound)


# --- workload ------------------------------------------------------------------------------
@dataclass
class Peer:
    name: str
    address: str
    asn: int
    role: str                 # "announcer" | "client"
    wire: Optional[bytes] = None
    n_prefixes: int = 0


@dataclass
class Workload:
    scenario: str
    peers: list[Peer]
    expected: int             # prefixes each client must hold
    table_prefixes: int       # prefixes announced in total (with overlaps)
    note: str = ""

    @property
    def clients(self) -> list[Peer]:
        return [p for p in self.peers if p.role == "client"]

    @property
    def announcers(self) -> list[Peer]:
        return [p for p in self.peers if p.role == "announcer"]


def _union_count(wires: list[bytes]) -> int:
    """Distinct IPv4 prefixes over several UPDATE streams (rserver's Cython Adj-RIB-In)."""
    from rserver.codec import decode_updates
    from rserver.codec.layout import CodecContext
    from rserver.rib._tables import AdjRibIn, AttrTable
    attrs = AttrTable()
    rib = AdjRibIn(1, attrs)
    ctx = CodecContext()
    for w in wires:
        mv = memoryview(w)
        pos = 0
        while pos < len(w):
            b = decode_updates(mv[pos:pos + (8 << 20) + 4096], ctx)
            if b.error is not None or not b.consumed:
                raise RuntimeError(f"table does not decode: {b.error}")
            rib.apply(b.v4, attrs.intern_batch(b.attr_data, b.attr_index))
            pos += b.consumed
    return len(rib)


def build_workload(scenario: str, prefixes: Optional[int], n_clients: int, n_announcers: int = 10,
                   addr_base: int = 100, quiet: bool = False) -> Workload:
    from bench.tablegen import generate_v4
    addrs = (f"127.0.1.{addr_base + i}" for i in range(0, 250 - addr_base))
    peers: list[Peer] = []
    t = time.monotonic()
    if scenario == "a":
        n = prefixes or 1_000_000
        tab = generate_v4(n, seed=1, next_hop=NEXT_HOP, peer_as=6939)
        peers.append(Peer("announcer1", next(addrs), 6939, "announcer", tab.wire, n))
        expected, total, note = n, n, "1 announcer (AS6939, seed 1)"
    else:
        n = prefixes or 100_000
        wires = []
        for k in range(n_announcers):
            asn = 64601 + k
            tab = generate_v4(n, seed=k + 1, next_hop=NEXT_HOP, peer_as=asn)
            wires.append(tab.wire)
            peers.append(Peer(f"announcer{k + 1}", next(addrs), asn, "announcer", tab.wire, n))
        expected = _union_count(wires)
        total = n * n_announcers
        note = (f"{n_announcers} announcers x {n:,} (seeds 1..{n_announcers}); "
                f"union {expected:,} distinct, {total - expected:,} overlapping")
    for i in range(n_clients):
        peers.append(Peer(f"client{i + 1}", next(addrs), 4_200_000_101 + i, "client"))
    if not quiet:
        print(f"scenario {scenario}: {note}; tables ready in {time.monotonic() - t:.1f}s", file=sys.stderr)
    return Workload(scenario, peers, expected, total, note)


# --- targets ---------------------------------------------------------------------------------
class Target:
    name = "target"

    def __init__(self, workdir: Path, port: int, peers: list[Peer]):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.peers = port, peers
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.dir / f"{self.name}.log"

    def _spawn(self, argv, env=None) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir, env=env)

    def pids(self) -> list[int]:
        return descendants(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        kids = [p for p in self.pids() if p != self.proc.pid]
        _stop(self.proc)
        for k in kids:             # left behind: a failure anyway, but never leave them running
            f = stat_fields(k)
            if f is not None and f[0] != "Z":
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def version(self) -> str:
        return ""


def bird_config(port: int, peers: list[Peer], log: Path) -> str:
    """BIRD 2 as a route server. Next hop 192.0.2.1 is not on a connected network: BGP
    routes are resolved recursively (multihop sessions: ``gateway recursive``) through a
    separate IGP table holding one static route for 192.0.2.0/24, so the routes are valid,
    and ``rs client`` keeps the next hop and the AS_PATH unchanged towards the clients."""
    head = f"""router id {RS_ADDR};
log "{log}" {{ warning, error, fatal }};
ipv4 table igp4;
protocol device {{ }}
protocol static nexthops {{
    ipv4 {{ table igp4; }};
    route 192.0.2.0/24 blackhole;
}}
template bgp rsmember {{
    local {RS_ADDR} port {port} as {RS_AS};
    strict bind yes;
    multihop;
    passive on;
    rs client;
    hold time 90; keepalive time 30;
    ipv4 {{ import all; export all; gateway recursive; igp table igp4; }};
}}
"""
    body = "".join(f"protocol bgp {p.name} from rsmember {{ neighbor {p.address} as {p.asn}; }}\n"
                   for p in peers)
    return head + body


class BirdTarget(Target):
    name = "bird"

    def start(self) -> "BirdTarget":
        bird = find_binary("bird")
        if bird is None:
            raise RuntimeError("bird is not installed (Debian package bird2)")
        self.conf = self.dir / "bird.conf"
        self.sock = self.dir / "bird.ctl"
        self.conf.write_text(bird_config(self.port, self.peers, self.dir / "bird-events.log"))
        self._spawn([bird, "-f", "-c", str(self.conf), "-s", str(self.sock), "-P", str(self.dir / "bird.pid")])
        end = time.monotonic() + 10
        while time.monotonic() < end and self.alive() and not self.sock.exists():
            time.sleep(0.05)
        if not self.alive() or not self.sock.exists():
            raise RuntimeError(f"bird did not start:\n{self.log_tail()}")
        return self

    def version(self) -> str:
        b = find_binary("bird")
        try:
            r = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=5)
            return (r.stdout + r.stderr).strip().split("\n")[0]
        except (OSError, subprocess.TimeoutExpired):
            return "bird"


class RServerTarget(Target):
    name = "rserver"

    def __init__(self, workdir: Path, port: int, peers: list[Peer], session_workers: int = 4,
                 max_prefix: int = 2_000_000):
        super().__init__(workdir, port, peers)
        self.session_workers = session_workers
        self.max_prefix = max_prefix

    def start(self) -> "RServerTarget":
        self.run_dir = self.dir / "run"
        self.conf = self.dir / "rserver.toml"
        text = f"""[global]
local_as = {RS_AS}
router_id = "{RS_ADDR}"
listen = ["{RS_ADDR}"]
port = {self.port}
run_dir = "{self.run_dir}"
log_level = "warning"
session_workers = {self.session_workers}

[defaults]
passive = true
hold_time = 90
ipv6 = false
max_prefix = {{ ipv4 = {self.max_prefix}, action = "warn" }}
"""
        for p in self.peers:
            text += f'\n[[neighbor]]\nname = "{p.name}"\naddress = "{p.address}"\nas = {p.asn}\n'
        self.conf.write_text(text)
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self._spawn([sys.executable, "-m", "rserver", "run", "-c", str(self.conf)], env=env)
        end = time.monotonic() + 20
        while time.monotonic() < end and self.alive() and not (self.run_dir / "rserver.pid").exists():
            time.sleep(0.05)
        if not self.alive():
            raise RuntimeError(f"rserver exited at start:\n{self.log_tail()}")
        return self

    def version(self) -> str:
        try:
            import rserver
            return f"rserver {getattr(rserver, '__version__', '')}".strip()
        except ImportError:
            return "rserver"


TARGETS = {"rserver": RServerTarget, "bird": BirdTarget}


# --- one run -----------------------------------------------------------------------------------
@dataclass
class Result:
    scenario: str
    target: str
    sessions: int
    clients: int
    expected: int
    delivered: int = 0
    converged: bool = False
    seconds: float = float("nan")
    up_seconds: float = float("nan")
    send_seconds: float = float("nan")
    peak_pss: float = 0.0
    peak_rss: float = 0.0
    target_cpu: float = 0.0
    bench_cpu: float = 0.0
    per_client: list = field(default_factory=list)
    error: str = ""
    version: str = ""
    bench_detail: str = ""
    pss_detail: str = ""

    @property
    def copies_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds == self.seconds and self.seconds > 0 else float("nan")

    @property
    def table_per_s(self) -> float:
        return self.expected / self.seconds if self.converged and self.seconds > 0 else float("nan")


class Progress:
    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def show(self, done: int, elapsed: float, pss: float, final: bool = False) -> None:
        if not self.enabled:
            return
        frac = done / self.total if self.total else 1.0
        width = 30
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        text = (f"{self.label} [{bar}] {100 * frac:5.1f}% {done:,}/{self.total:,} prefixes "
                f"{elapsed:6.1f}s PSS {pss:6.0f} MB")
        if self.tty:
            sys.stderr.write("\r" + text + ("\n" if final else ""))
            sys.stderr.flush()
        elif final or time.monotonic() - self.last_line >= 5:
            self.last_line = time.monotonic()
            print(text, file=sys.stderr)


def run_one(wl: Workload, target_name: str, *, timeout: float = 300, workers: int = 3,
            session_workers: int = 4, sample: float = 0.1, mem_every: float = 0.2,
            progress: bool = True,
            keep_dir: bool = False) -> Result:
    clients = wl.clients
    res = Result(wl.scenario, target_name, len(wl.peers), len(clients), wl.expected)
    tmp = Path(tempfile.mkdtemp(prefix=f"fulltable-{target_name}-"))
    port = free_port()
    kw = {"session_workers": session_workers} if target_name == "rserver" else {}
    target = TARGETS[target_name](tmp / target_name, port, wl.peers, **kw)
    res.version = target.version()
    specs = [SpeakerSpec(p.name, p.address, p.asn, RS_ADDR, port,
                         keep="count" if p.role == "client" else "none", wire=p.wire)
             for p in wl.peers]
    fleet = Fleet(specs, workers=workers)
    client_idx = [i for i, p in enumerate(wl.peers) if p.role == "client"]
    ann_idx = [i for i, p in enumerate(wl.peers) if p.role == "announcer"]
    bar = Progress(wl.expected * len(clients), f"({wl.scenario}) {target_name:7s}", progress)
    try:
        target.start()
        t_start = time.monotonic()
        fleet.start()
        ok = fleet.wait_established(60)
        res.up_seconds = time.monotonic() - t_start
        if not ok:
            st = fleet.states()
            down = [wl.peers[i].name for i, s in enumerate(st) if s != ST_UP]
            res.error = f"sessions not established: {', '.join(down)}; " + "; ".join(fleet.errors[:3])
            return res
        time.sleep(0.3)        # let the initial (empty) exchanges and EoRs settle
        base = list(fleet.counts)
        tpids = target.pids()
        root = target.proc.pid
        cpu0 = cpu_seconds(tpids, root)
        w0 = {pid: cpu_seconds([pid]).get(pid, 0.0) for pid in fleet.pids()}
        m0 = sum(os.times()[:2])
        b0 = sum(w0.values()) + m0
        pids_refresh = time.monotonic()
        t0 = time.monotonic()
        fleet.go()
        deadline = t0 + timeout
        mem_at, pss = 0.0, 0.0
        while True:
            now = time.monotonic()
            if now - pids_refresh > 1.0:
                tpids = target.pids()
                pids_refresh = now
            if now - mem_at >= mem_every:       # smaps_rollup walks page tables: not free
                mem_at = now
                per: dict[int, float] = {}
                pss, rss = memory_mb(tpids, per)
                if pss > res.peak_pss:       # the breakdown at the moment of the peak
                    res.pss_detail = " ".join(f"{comm(p)}={v:.0f}" for p, v in sorted(per.items()))
                res.peak_pss = max(res.peak_pss, pss)
                res.peak_rss = max(res.peak_rss, rss)
            counts = [fleet.counts[i] for i in client_idx]
            delivered = sum(min(c, wl.expected) for c in counts)
            bar.show(delivered, now - t0, pss)
            if all(c >= wl.expected for c in counts):
                res.seconds = now - t0
                res.converged = True
                break
            if now > deadline:
                res.seconds = now - t0
                res.error = f"timeout after {timeout:g}s"
                break
            st = fleet.states()
            if any(st[i] == ST_FAILED for i in range(len(st))) or not target.alive():
                res.seconds = now - t0
                res.error = ("target exited; " if not target.alive() else "") + "; ".join(fleet.errors[:3])
                break
            time.sleep(sample)
        cpu1 = cpu_seconds(target.pids() or tpids, root)
        res.target_cpu = sum(cpu1.values()) - sum(v for p, v in cpu0.items() if p in cpu1)
        w1 = {pid: cpu_seconds([pid]).get(pid, 0.0) for pid in fleet.pids()}
        m1 = sum(os.times()[:2])
        res.bench_cpu = sum(w1.values()) + m1 - b0
        res.bench_detail = ("workers " + " ".join(f"{w1[p] - w0.get(p, 0):.1f}" for p in w1)
                            + f" s, sampler {m1 - m0:.1f} s")
        counts = [fleet.counts[i] for i in client_idx]
        res.per_client = counts
        res.delivered = sum(min(c, wl.expected) for c in counts)
        sent = [fleet.sent_at[i] for i in ann_idx]
        if all(sent):
            res.send_seconds = max(sent) - t0
        bar.show(res.delivered, res.seconds, res.peak_pss, final=True)
        if any(b for b in base if b):
            res.error += f" (clients held {base} before t0)"
        return res
    except Exception as e:  # noqa: BLE001 - reported in the table
        res.error = f"{type(e).__name__}: {e}"
        return res
    finally:
        fleet.stop()
        target.stop()
        if res.error and not res.converged:
            res.error += f"\n--- {target_name} log tail ---\n{target.log_tail(1500)}"
        if not keep_dir and not res.error:
            shutil.rmtree(tmp, ignore_errors=True)
        elif res.error:
            res.error += f"\n(work dir kept: {tmp})"


# --- report --------------------------------------------------------------------------------------
def _f(x: float, fmt: str) -> str:
    return "-" if x != x else format(x, fmt)


def format_results(results: list[Result]) -> str:
    hdr = ("scenario", "target", "sessions", "delivered", "conv s", "copies/s", "table pfx/s",
           "peak PSS MB", "peak RSS MB", "target CPU s", "bench CPU s", "ok")
    rows = []
    for r in results:
        rows.append((r.scenario, r.target, str(r.sessions), f"{r.delivered:,}/{r.expected * r.clients:,}",
                     _f(r.seconds, ".2f"), _f(r.copies_per_s, ",.0f"), _f(r.table_per_s, ",.0f"),
                     _f(r.peak_pss, ".0f"), _f(r.peak_rss, ".0f"), _f(r.target_cpu, ".1f"),
                     _f(r.bench_cpu, ".1f"), "yes" if r.converged else "NO"))
    w = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(hdr)]
    line = lambda cells: "| " + " | ".join(c.rjust(w[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    out = [line(hdr), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [line(r) for r in rows]
    ratios = []
    for sc in sorted({r.scenario for r in results}):
        rs = next((r for r in results if r.scenario == sc and r.target == "rserver"), None)
        bd = next((r for r in results if r.scenario == sc and r.target == "bird"), None)
        if rs and bd and bd.converged:
            t = f"{rs.seconds / bd.seconds:.2f}x" if rs.converged else "n/a (rserver did not converge)"
            ratios.append(f"({sc}) rserver/BIRD: time {t} (target <= 0.5x), "
                          f"PSS {rs.peak_pss / bd.peak_pss:.2f}x, RSS {rs.peak_rss / bd.peak_rss:.2f}x "
                          f"(target <= 2x), CPU {rs.target_cpu / max(bd.target_cpu, 1e-9):.2f}x")
    if ratios:
        out.append("")
        out += ratios
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=("a", "b", "all"), default="all")
    ap.add_argument("--target", choices=("rserver", "bird", "all"), default="all")
    ap.add_argument("--prefixes", type=int, default=None,
                    help="prefixes per announcer (default: 1,000,000 in (a), 100,000 in (b))")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--announcers", type=int, default=10, help="announcers in scenario (b)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per run, from t0")
    ap.add_argument("--workers", type=int, default=3, help="benchmark speaker processes")
    ap.add_argument("--session-workers", type=int, default=4, help="rserver's session_workers")
    ap.add_argument("--addr-base", type=int, default=100, help="speakers use 127.0.1.BASE and up")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    scenarios = ["a", "b"] if args.scenario == "all" else [args.scenario]
    targets = ["rserver", "bird"] if args.target == "all" else [args.target]
    if "bird" in targets and find_binary("bird") is None:
        print("bird not found (Debian package bird2): skipping the BIRD runs", file=sys.stderr)
        targets.remove("bird")
        if not targets:
            return 2
    results: list[Result] = []
    for sc in scenarios:
        wl = build_workload(sc, args.prefixes, args.clients, args.announcers, args.addr_base)
        for tg in targets:
            r = run_one(wl, tg, timeout=args.timeout, workers=args.workers,
                        session_workers=args.session_workers, progress=not args.no_progress)
            results.append(r)
            if not r.converged:
                print(f"({sc}) {tg}: did NOT converge: {r.error.splitlines()[0] if r.error else ''}",
                      file=sys.stderr)
                print(f"  per client (of {r.expected:,}): " +
                      ", ".join(f"{p.name}={c:,}" for p, c in zip(wl.clients, r.per_client)), file=sys.stderr)
                if r.error:
                    print("  " + "\n  ".join(r.error.splitlines()[1:]), file=sys.stderr)
            elif r.error:
                print(f"({sc}) {tg}: note: {r.error}", file=sys.stderr)
    print()
    print(f"full-table benchmark ({os.cpu_count()} CPUs; "
          f"{', '.join(sorted({r.version for r in results if r.version}))})")
    print(format_results(results))
    for r in results:
        if r.converged and r.send_seconds == r.send_seconds:
            print(f"({r.scenario}) {r.target}: sessions up in {r.up_seconds:.1f}s; announcers' tables written to their sockets "
                  f"at t0+{r.send_seconds:.2f}s; bench CPU: {r.bench_detail}; "
                  f"PSS MB at the peak: {r.pss_detail}")
    return 0 if all(r.converged for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
