"""ExaBGP API process for the interop tests (run by ExaBGP, never imported by pytest).

``python exabgp_api.py TABLE CMDS``: reads ExaBGP's JSON messages on stdin (``receive {
parsed; update; }``, ``neighbor-changes``) and keeps what the peer holds: after every
message TABLE is rewritten (atomically) as JSON ``{"state": "up"|"down"|..., "routes":
{"PREFIX": {"as_path", "next_hop", "med", "communities", "large_communities"}},
"updates": N, "errors": [...]}`` (errors: refused commands, unparsable messages). Lines
appended to CMDS are ExaBGP API commands (``withdraw route ...``), passed on to ExaBGP on
stdout (ExaBGP answers each with "done" or "error"). Exits when stdin closes (ExaBGP stopped) or after an hour.
"""
import json
import os
import sys
import threading
import time

table_path, cmds_path = sys.argv[1], sys.argv[2]
state = {"state": "", "routes": {}, "updates": 0, "errors": []}
lock = threading.Lock()


def dump():
    tmp = table_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, table_path)


def as_path(v):
    if isinstance(v, list):
        return [int(x) for x in v]
    if isinstance(v, dict):             # {"0": {"element": "as-sequence", "value": [...]}}
        out = []
        for k in sorted(v, key=int):
            out.extend(int(x) for x in v[k].get("value", []))
        return out
    return []


def handle(msg):
    if msg.get("type") == "state":
        state["state"] = msg.get("neighbor", {}).get("state", "")
        if state["state"] != "up":
            state["routes"].clear()
        return
    if msg.get("type") != "update":
        return
    upd = msg.get("neighbor", {}).get("message", {}).get("update", {})
    state["updates"] += 1
    a = upd.get("attribute", {})
    attrs = {
        "as_path": as_path(a.get("as-path", [])),
        "med": a.get("med"),
        "communities": [list(c) for c in a.get("community", [])],
        "large_communities": [list(c) for c in a.get("large-community", [])],
    }
    for fam, nhs in upd.get("announce", {}).items():
        for nh, nlris in nhs.items():
            for n in nlris:
                p = n["nlri"] if isinstance(n, dict) else n
                state["routes"][p] = dict(attrs, next_hop=nh, family=fam)
    for fam, nlris in upd.get("withdraw", {}).items():
        for n in nlris:
            p = n["nlri"] if isinstance(n, dict) else n
            state["routes"].pop(p, None)


def commands():
    done = 0
    end = time.monotonic() + 3600
    while time.monotonic() < end:
        try:
            with open(cmds_path) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        for line in lines[done:]:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        done = max(done, len(lines))
        time.sleep(0.1)


threading.Thread(target=commands, daemon=True).start()
dump()
for raw in sys.stdin:
    raw = raw.strip()
    if not raw or raw == "done":        # "done": ExaBGP's acknowledgement of one of our commands
        continue
    if not raw.startswith("{"):         # "error" (a refused command) or anything unexpected
        with lock:
            state["errors"].append(raw[:300])
            dump()
        continue
    with lock:
        try:
            handle(json.loads(raw))
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            state["errors"].append(f"{e!r}: {raw[:300]}")
        dump()
