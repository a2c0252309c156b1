"""The BGP decision process of a route server, as pure numbered steps.

RFC 4271 §9.1.2.2 ("Breaking Ties (Phase 2)") defines route selection as a
sequence of *eliminations* over the set of candidate routes for one
destination: each step removes from consideration every route that is not
tied for the best value of that step, and the first step that leaves one
route decides.  For a route server (RFC 7947) every peer is an external peer,
so the steps as applied here are:

    step 1  highest degree of preference = LOCAL_PREF (RFC 4271 §9.1.1,
            §5.1.5).  eBGP peers' LOCAL_PREF is discarded on receipt, so all
            routes carry the route server's default unless import policy set
            one.  A route tagged GRACEFUL_SHUTDOWN (65535:0, AF_GSHUT) is
            treated as LOCAL_PREF 0, i.e. lowest (RFC 8326 §4).
    step 2  shortest AS_PATH (§9.1.2.2 a).  ``path_len`` counts an AS_SET as 1
            (§9.1.2.2 a) and confederation segments as 0 (RFC 5065 §5.3); the
            codec pre-computes it, ``as_path_decision_length`` is the reference.
    step 3  lowest ORIGIN: IGP < EGP < INCOMPLETE (§9.1.2.2 b).
    step 4  lowest MULTI_EXIT_DISC, compared only among routes from the same
            neighbouring AS (§9.1.2.2 c), unless ``always_compare_med``.
    step 5  prefer eBGP over iBGP (§9.1.2.2 d): NOT APPLIED, every route server
            peer is eBGP (RFC 7947 §2), so the step never eliminates anything.
    step 6  lowest interior cost to NEXT_HOP (§9.1.2.2 e): NOT APPLIED, a route
            server does not forward traffic and has no IGP; RFC 7947 §2.2 keeps
            NEXT_HOP unchanged, so there is no cost to compare.
    step 7  lowest BGP Identifier of the advertising peer (§9.1.2.2 f).
            (RFC 4456 ORIGINATOR_ID substitution does not arise: no iBGP.)
    step 8  lowest peer address (§9.1.2.2 g): IPv4 before IPv6, then bytewise.
    step 9  (not in the RFC) lowest internal peer id, then lowest ADD-PATH path
            id: makes the result deterministic when one peer sends several
            paths (RFC 7911), which steps 7 and 8 cannot separate.

MED choices (step 4):

* A route without MULTI_EXIT_DISC counts as MED 0, "the lowest possible value",
  as RFC 4271 §9.1.2.2 c says.  ``missing_med_worst=True`` counts it as
  4294967295 instead (the option BIRD and OpenBGPD offer); an explicit MED of
  4294967295 then ties with a missing one.
* The neighbouring AS is the first AS of the AS_PATH (``first_as`` in ATTR_REC).
  When the path does not start with an AS_SEQUENCE (empty path, or it starts
  with an AS_SET) the codec reports 0: the neighbouring AS is unknown, and such
  a route's MED is compared with no other route (it survives step 4), unless
  ``always_compare_med``.

Set-based versus pairwise (MED non-transitivity).  Because MED is only
comparable within a neighbour-AS group, the pairwise relation "a is better
than b" is not transitive: with A = (AS1, MED 10, id 3), B = (AS1, MED 20, id 1),
C = (AS2, id 2) pairwise gives A > B (MED), B > C (id), C > A (id), a cycle, so
the outcome of sorting or of a running "best so far" scan depends on the input
order.  ``select_best`` therefore implements the RFC's set elimination (the
pseudo-code in §9.1.2.2 c removes route m when *any* route n still under
consideration from the same neighbour AS has a lower MED): B is removed, then C
beats A by BGP Identifier, whatever the order.  ``compare`` is the pairwise
relation; it equals ``select_best`` on two routes, and is a total order (safe to
sort with) only when ``always_compare_med`` is set.  ``rank`` is repeated
``select_best`` over the remaining routes, so ``rank(c)[1]`` is exactly "the
best route once the best is gone", which is what a route server exports to the
peer that sent the best route (it never reflects a route to its source;
per-client best paths, RFC 7947 §2.3.2.1).  With ADD-PATH a peer may own
several candidates: use ``select_best(c, among=...)`` to leave out all of them.

Everything here is pure: no I/O, no global mutable state.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Optional

import msgspec

from rserver.codec.constants import (
    AS_CONFED_SEQUENCE,
    AS_CONFED_SET,
    AS_SEQUENCE,
    AS_SET,
    ORIGIN_EGP,
    ORIGIN_IGP,
    ORIGIN_INCOMPLETE,
)
from rserver.codec.layout import AF_GSHUT, AF_LOCAL_PREF, AF_MED, ATTR_FIELDS

__all__ = [
    "Candidate",
    "DecisionOptions",
    "PeerRef",
    "Step",
    "STEPS",
    "SKIPPED_STEPS",
    "DEFAULT_LOCAL_PREF",
    "MED_MAX",
    "candidate_from_attr_rec",
    "as_path_decision_length",
    "select_best",
    "rank",
    "explain",
    "compare",
    "sort_key",
]

DEFAULT_LOCAL_PREF = 100     # the route server's default degree of preference
GSHUT_LOCAL_PREF = 0         # RFC 8326 §4: GRACEFUL_SHUTDOWN routes get LOCAL_PREF 0
MED_MAX = 0xFFFFFFFF         # value of a missing MED with missing_med_worst

ORIGIN_NAMES = {ORIGIN_IGP: "IGP", ORIGIN_EGP: "EGP", ORIGIN_INCOMPLETE: "INCOMPLETE"}


# --- inputs -------------------------------------------------------------------------------

class Candidate(msgspec.Struct, frozen=True, gc=False):
    """What the decision process needs to know about one route.

    Built once per (attribute set, peer) by ``candidate_from_attr_rec``.
    """

    local_pref: int         # LOCAL_PREF: received/set value, or the route server default
    gshut: bool             # carries GRACEFUL_SHUTDOWN 65535:0 -> compared as LOCAL_PREF 0
    path_len: int           # AS_PATH length for decision (AS_SET = 1, confed = 0)
    origin: int             # 0 IGP, 1 EGP, 2 INCOMPLETE
    neighbor_as: int        # first AS of the AS_PATH; 0 = unknown (never MED-compared)
    med: int                # MULTI_EXIT_DISC (meaningful when has_med)
    has_med: bool           # MULTI_EXIT_DISC present
    peer_bgp_id: int        # advertising peer's BGP Identifier, as u32
    peer_addr: bytes        # advertising peer's address: 4 or 16 bytes, network order
    peer_id: int            # rserver's internal peer id (final tie-break)
    path_id: int = 0        # ADD-PATH path identifier (final tie-break), 0 without ADD-PATH


class PeerRef(msgspec.Struct, frozen=True, gc=False):
    """The source peer fields ``candidate_from_attr_rec`` reads (any object with
    ``peer_id``, ``bgp_id`` and ``addr`` attributes will do)."""

    peer_id: int
    bgp_id: int             # u32 (RFC 6286: any non-zero 4-octet value, not necessarily an address)
    addr: bytes             # 4 or 16 bytes


class DecisionOptions(msgspec.Struct, frozen=True, gc=False):
    always_compare_med: bool = False    # compare MED across neighbour ASes too
    missing_med_worst: bool = False     # a missing MED counts as 4294967295 instead of 0


_OPTIONS = {
    (acm, mmw): DecisionOptions(acm, mmw) for acm in (False, True) for mmw in (False, True)
}

_F_FLAGS = ATTR_FIELDS.index("flags")
_F_ORIGIN = ATTR_FIELDS.index("origin")
_F_PATH_LEN = ATTR_FIELDS.index("path_len")
_F_FIRST_AS = ATTR_FIELDS.index("first_as")
_F_MED = ATTR_FIELDS.index("med")
_F_LOCAL_PREF = ATTR_FIELDS.index("local_pref")


def candidate_from_attr_rec(
    fields: Any,
    peer: Any,
    *,
    path_id: int = 0,
    default_local_pref: int = DEFAULT_LOCAL_PREF,
    local_pref: Optional[int] = None,
) -> Candidate:
    """Build a Candidate from an ATTR_REC and its source peer.

    ``fields`` is ``ATTR_REC.unpack(...)`` (a tuple in ATTR_FIELDS order) or a
    dict keyed by ATTR_FIELDS names.  ``path_len`` and ``first_as`` are used as
    the codec computed them.  LOCAL_PREF is, in order: ``local_pref`` (set by
    import policy), the received value when AF_LOCAL_PREF is set (only for a
    session where it is not discarded, RFC 4271 §5.1.5), else
    ``default_local_pref``.  ``peer`` needs ``peer_id``, ``bgp_id`` (int) and
    ``addr`` (bytes) attributes, e.g. a PeerRef.
    """
    if type(fields) is dict:
        fields = tuple(fields[name] for name in ATTR_FIELDS[: _F_LOCAL_PREF + 1])
    flags = fields[_F_FLAGS]
    if local_pref is None:
        local_pref = fields[_F_LOCAL_PREF] if flags & AF_LOCAL_PREF else default_local_pref
    has_med = bool(flags & AF_MED)
    return Candidate(
        local_pref,
        bool(flags & AF_GSHUT),
        fields[_F_PATH_LEN],
        fields[_F_ORIGIN],
        fields[_F_FIRST_AS],
        fields[_F_MED] if has_med else 0,
        has_med,
        peer.bgp_id,
        peer.addr,
        peer.peer_id,
        path_id,
    )


def as_path_decision_length(value: bytes, as4: bool = True) -> int:
    """Length of an AS_PATH attribute value for step 2, the reference for ATTR_REC.path_len.

    Each AS_SEQUENCE member counts 1; an AS_SET counts 1 however many members it
    has (RFC 4271 §9.1.2.2 a); AS_CONFED_SEQUENCE and AS_CONFED_SET count 0
    (RFC 5065 §5.3).  ``as4`` selects 4-octet (RFC 6793) or 2-octet AS numbers.
    Raises ValueError on a malformed value (overrun, unknown segment type).
    """
    width = 4 if as4 else 2
    n = 0
    pos = 0
    end = len(value)
    while pos < end:
        if pos + 2 > end:
            raise ValueError(f"AS_PATH segment header overruns the value at offset {pos}")
        seg_type = value[pos]
        count = value[pos + 1]
        pos += 2 + count * width
        if pos > end:
            raise ValueError("AS_PATH segment overruns the value")
        if seg_type == AS_SEQUENCE:
            n += count
        elif seg_type == AS_SET:
            n += 1
        elif seg_type in (AS_CONFED_SEQUENCE, AS_CONFED_SET):
            pass
        else:
            raise ValueError(f"unknown AS_PATH segment type {seg_type}")
    return n


# --- the steps ----------------------------------------------------------------------------
# Every step function takes (candidates, alive, options), where alive is the list of
# indices still under consideration (len >= 2), and returns the survivors (a non-empty
# sub-list, in the same order).  Every "why" function takes (candidates, loser, survivors,
# options) and tells why candidate `loser` did not survive the step.

def _pref(c: Candidate) -> int:
    return GSHUT_LOCAL_PREF if c.gshut else c.local_pref


def step1_local_pref(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 1, RFC 4271 §9.1.1 / §9.1.2.2 preamble: keep the highest degree of
    preference, i.e. LOCAL_PREF; GRACEFUL_SHUTDOWN counts as 0 (RFC 8326 §4)."""
    best = max(_pref(cands[i]) for i in alive)
    return [i for i in alive if _pref(cands[i]) == best]


def _why1(cands, loser, survivors, opts):
    c = cands[loser]
    best = _pref(cands[survivors[0]])
    mine = f"0 (GRACEFUL_SHUTDOWN, was {c.local_pref})" if c.gshut else str(c.local_pref)
    return f"step 1 highest LOCAL_PREF: {mine} < {best}"


def step2_as_path(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 2, RFC 4271 §9.1.2.2 a: keep the shortest AS_PATH (AS_SET counts 1,
    confederation segments 0, RFC 5065 §5.3)."""
    best = min(cands[i].path_len for i in alive)
    return [i for i in alive if cands[i].path_len == best]


def _why2(cands, loser, survivors, opts):
    return f"step 2 shortest AS_PATH: {cands[loser].path_len} > {cands[survivors[0]].path_len}"


def step3_origin(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 3, RFC 4271 §9.1.2.2 b: keep the lowest ORIGIN (IGP < EGP < INCOMPLETE)."""
    best = min(cands[i].origin for i in alive)
    return [i for i in alive if cands[i].origin == best]


def _origin_name(v: int) -> str:
    return ORIGIN_NAMES.get(v, str(v))


def _why3(cands, loser, survivors, opts):
    return (f"step 3 lowest ORIGIN: {_origin_name(cands[loser].origin)} > "
            f"{_origin_name(cands[survivors[0]].origin)}")


def _med(c: Candidate, missing: int) -> int:
    return c.med if c.has_med else missing


def step4_med(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 4, RFC 4271 §9.1.2.2 c: remove every route for which a route still
    under consideration from the same neighbouring AS has a lower MED.

    Set-based, as the RFC's pseudo-code: each neighbour-AS group keeps its
    lowest MED; groups are not compared with each other.  neighbor_as 0
    (unknown) forms no group.  With always_compare_med all routes form one
    group.  A missing MED is 0 (RFC), or MED_MAX with missing_med_worst.
    """
    missing = MED_MAX if opts.missing_med_worst else 0
    if opts.always_compare_med:
        best = min(_med(cands[i], missing) for i in alive)
        return [i for i in alive if _med(cands[i], missing) == best]
    group_best: dict[int, int] = {}
    for i in alive:
        c = cands[i]
        asn = c.neighbor_as
        if asn:
            m = _med(c, missing)
            b = group_best.get(asn)
            if b is None or m < b:
                group_best[asn] = m
    if len(group_best) == len(alive):       # every route alone in its group
        return alive
    out = []
    for i in alive:
        c = cands[i]
        if not c.neighbor_as or _med(c, missing) == group_best[c.neighbor_as]:
            out.append(i)
    return out


def _med_text(c: Candidate, missing: int) -> str:
    return str(c.med) if c.has_med else f"{missing} (missing)"


def _why4(cands, loser, survivors, opts):
    missing = MED_MAX if opts.missing_med_worst else 0
    c = cands[loser]
    if opts.always_compare_med:
        peers = survivors
        scope = "(always-compare)"
    else:
        peers = [i for i in survivors if cands[i].neighbor_as == c.neighbor_as]
        scope = f"from neighbour AS {c.neighbor_as}"
    winner = min(peers, key=lambda i: _med(cands[i], missing))
    return f"step 4 lowest MED {scope}: {_med_text(c, missing)} > {_med_text(cands[winner], missing)}"


def step5_ebgp_over_ibgp(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 5, RFC 4271 §9.1.2.2 d (prefer routes learned via eBGP): every route
    server session is eBGP (RFC 7947 §2), so nothing is ever removed.  Not applied."""
    return alive


def step6_igp_cost(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 6, RFC 4271 §9.1.2.2 e (lowest interior cost to NEXT_HOP): a route
    server has no IGP and passes NEXT_HOP through (RFC 7947 §2.2).  Not applied."""
    return alive


def step7_bgp_id(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 7, RFC 4271 §9.1.2.2 f: keep the route from the peer with the lowest
    BGP Identifier."""
    best = min(cands[i].peer_bgp_id for i in alive)
    return [i for i in alive if cands[i].peer_bgp_id == best]


def _bgp_id_text(v: int) -> str:
    return str(ipaddress.IPv4Address(v & 0xFFFFFFFF))


def _why7(cands, loser, survivors, opts):
    return (f"step 7 lowest BGP identifier: {_bgp_id_text(cands[loser].peer_bgp_id)} > "
            f"{_bgp_id_text(cands[survivors[0]].peer_bgp_id)}")


def _addr_key(c: Candidate) -> tuple[int, bytes]:
    return (len(c.peer_addr), c.peer_addr)


def step8_peer_addr(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 8, RFC 4271 §9.1.2.2 g: keep the route from the lowest peer address;
    IPv4 (4 bytes) sorts before IPv6 (16 bytes), then bytewise (network order)."""
    best = min(_addr_key(cands[i]) for i in alive)
    return [i for i in alive if _addr_key(cands[i]) == best]


def _addr_text(a: bytes) -> str:
    try:
        return str(ipaddress.ip_address(a))
    except ValueError:
        return a.hex()


def _why8(cands, loser, survivors, opts):
    a, b = cands[loser].peer_addr, cands[survivors[0]].peer_addr
    note = " (IPv4 before IPv6)" if len(a) != len(b) else ""
    return f"step 8 lowest peer address: {_addr_text(a)} > {_addr_text(b)}{note}"


def step9_tiebreak(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> list[int]:
    """Step 9, not in RFC 4271: lowest internal peer id, then lowest ADD-PATH path
    id (RFC 7911), so that several paths from one peer are ordered deterministically."""
    best = min((cands[i].peer_id, cands[i].path_id) for i in alive)
    return [i for i in alive if (cands[i].peer_id, cands[i].path_id) == best]


def _why9(cands, loser, survivors, opts):
    c, w = cands[loser], cands[survivors[0]]
    if c.peer_id != w.peer_id:
        return f"step 9 lowest peer id: {c.peer_id} > {w.peer_id}"
    return f"step 9 lowest path id: {c.path_id} > {w.path_id}"


StepFn = Callable[[Sequence[Candidate], list, DecisionOptions], list]


class Step(NamedTuple):
    number: int
    name: str
    rfc: str
    keep: StepFn
    why: Optional[Callable[..., str]]


STEPS: tuple[Step, ...] = (
    Step(1, "highest LOCAL_PREF", "RFC 4271 §9.1.1, RFC 8326 §4", step1_local_pref, _why1),
    Step(2, "shortest AS_PATH", "RFC 4271 §9.1.2.2 a, RFC 5065 §5.3", step2_as_path, _why2),
    Step(3, "lowest ORIGIN", "RFC 4271 §9.1.2.2 b", step3_origin, _why3),
    Step(4, "lowest MED", "RFC 4271 §9.1.2.2 c", step4_med, _why4),
    Step(7, "lowest BGP identifier", "RFC 4271 §9.1.2.2 f", step7_bgp_id, _why7),
    Step(8, "lowest peer address", "RFC 4271 §9.1.2.2 g", step8_peer_addr, _why8),
    Step(9, "lowest peer id / path id", "(deterministic tie-break)", step9_tiebreak, _why9),
)
"""The steps applied, in order."""

SKIPPED_STEPS: tuple[Step, ...] = (
    Step(5, "eBGP over iBGP", "RFC 4271 §9.1.2.2 d; RFC 7947 §2: all peers eBGP", step5_ebgp_over_ibgp, None),
    Step(6, "lowest IGP cost", "RFC 4271 §9.1.2.2 e; RFC 7947 §2.2: no IGP", step6_igp_cost, None),
)
"""RFC steps that cannot eliminate anything on a route server; documented, not run."""


# --- the process --------------------------------------------------------------------------

def _alive(n: int, among: Optional[Iterable[int]]) -> list[int]:
    if among is None:
        alive = list(range(n))
    else:
        alive = sorted(set(among))
        if alive and (alive[0] < 0 or alive[-1] >= n):
            raise IndexError("among: candidate index out of range")
    if not alive:
        raise ValueError("no candidates")
    return alive


def _select(cands: Sequence[Candidate], alive: list[int], opts: DecisionOptions) -> int:
    for step in STEPS:
        if len(alive) == 1:
            break
        alive = step.keep(cands, alive, opts)
    # several left only when candidates repeat (peer_id, path_id): take the first
    return alive[0]


def select_best(
    candidates: Sequence[Candidate],
    *,
    among: Optional[Iterable[int]] = None,
    always_compare_med: bool = False,
    missing_med_worst: bool = False,
) -> int:
    """Index of the best route, by RFC 4271 §9.1.2.2 set elimination.

    ``among`` restricts the choice to those indices (e.g. all candidates not
    from the client being exported to); the result is still an index into
    ``candidates``.  The result does not depend on the order of the candidates
    as long as no two share (peer_id, path_id).  Raises ValueError when there is
    nothing to choose from.
    """
    alive = _alive(len(candidates), among)
    if len(alive) == 1:
        return alive[0]
    return _select(candidates, alive, _OPTIONS[always_compare_med, missing_med_worst])


def rank(
    candidates: Sequence[Candidate],
    *,
    always_compare_med: bool = False,
    missing_med_worst: bool = False,
) -> list[int]:
    """All candidate indices, best first: rank[k] is select_best over the
    candidates not in rank[:k] (so rank[1] is the best once the best is gone)."""
    opts = _OPTIONS[always_compare_med, missing_med_worst]
    n = len(candidates)
    if always_compare_med:
        # the steps are then a lexicographic total order: a sort gives the same result
        missing = MED_MAX if missing_med_worst else 0
        return sorted(range(n), key=lambda i: sort_key(candidates[i], missing))
    remaining = list(range(n))
    out = []
    while len(remaining) > 1:
        best = _select(candidates, remaining, opts)
        out.append(best)
        remaining.remove(best)
    out.extend(remaining)
    return out


def explain(
    candidates: Sequence[Candidate],
    *,
    among: Optional[Iterable[int]] = None,
    always_compare_med: bool = False,
    missing_med_worst: bool = False,
) -> list[str]:
    """One line per candidate (in input order) for "show rib --detail": "best"
    for the selected route, else the numbered step that eliminated it and why,
    e.g. "step 2 shortest AS_PATH: 3 > 2"; "not considered" outside ``among``."""
    opts = _OPTIONS[always_compare_med, missing_med_worst]
    alive = _alive(len(candidates), among)
    out = ["not considered"] * len(candidates)
    for step in STEPS:
        if len(alive) == 1:
            break
        survivors = step.keep(candidates, alive, opts)
        if len(survivors) != len(alive):
            kept = set(survivors)
            for i in alive:
                if i not in kept:
                    out[i] = step.why(candidates, i, survivors, opts)
        alive = survivors
    out[alive[0]] = "best"
    for i in alive[1:]:
        out[i] = "step 9 duplicate of the best route (same peer id and path id)"
    return out


def compare(
    a: Candidate,
    b: Candidate,
    always_compare_med: bool = False,
    missing_med_worst: bool = False,
) -> int:
    """Pairwise preference: -1 if ``a`` is preferred, 1 if ``b``, 0 if no step
    separates them.  Equals select_best on [a, b].  Without always_compare_med
    it is NOT transitive (see the module docstring): never sort with it then;
    use rank().  With always_compare_med it is a total order consistent with
    rank (``functools.cmp_to_key(compare)`` sorts best first)."""
    opts = _OPTIONS[always_compare_med, missing_med_worst]
    pair = (a, b)
    alive = [0, 1]
    for step in STEPS:
        alive = step.keep(pair, alive, opts)
        if len(alive) == 1:
            return -1 if alive[0] == 0 else 1
    return 0


def sort_key(c: Candidate, missing_med: int = 0) -> tuple:
    """Lexicographic key, smallest = best, valid when MED is always compared
    (``missing_med`` is 0, or MED_MAX for missing_med_worst).  Steps 1-4, 7-9."""
    return (
        -_pref(c),
        c.path_len,
        c.origin,
        c.med if c.has_med else missing_med,
        c.peer_bgp_id,
        len(c.peer_addr),
        c.peer_addr,
        c.peer_id,
        c.path_id,
    )

