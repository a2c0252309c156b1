"""The benchmark table generator (bench/tablegen.py) on small tables.

The wire is checked with a small parser written here (not rserver's codec, and not the
generator's own bookkeeping), so these tests say what is really in the bytes.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import struct
from collections import Counter
from pathlib import Path

import pytest

from bench.tablegen import generate_v4, generate_v6

N4 = 20_000
N6 = 6_000
NH4 = "192.0.2.1"
NH6 = "2001:db8::1"

MARTIANS4 = [ipaddress.ip_network(s) for s in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
MARTIANS6 = [ipaddress.ip_network(s) for s in (
    "::/8", "2001::/23", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "ff00::/8",
)]


# --- an independent parser ----------------------------------------------------------------
class Parsed:
    def __init__(self):
        self.prefixes = []       # (plen, address bytes padded to 4/16)
        self.sets = []           # one per run of messages with the same attributes:
        #                          dict(key=canonical attribute bytes, n=prefixes, attrs={code: value})
        self.msg_lens = []


def _nlri(buf: bytes, width: int, out: list):
    i = 0
    while i < len(buf):
        plen = buf[i]
        assert plen <= 8 * width, f"prefix length {plen}"
        nb = (plen + 7) // 8
        raw = buf[i + 1:i + 1 + nb]
        assert len(raw) == nb, "prefix overruns the NLRI"
        if plen % 8:
            assert raw[-1] & (0xFF >> (plen % 8)) == 0, "host bits set"
        out.append((plen, raw + bytes(width - nb)))
        i += 1 + nb


def parse(wire: bytes, max_msg: int = 4096) -> Parsed:
    p = Parsed()
    pos = 0
    last_key = None
    while pos < len(wire):
        assert wire[pos:pos + 16] == b"\xff" * 16, f"bad marker at {pos}"
        length, typ = struct.unpack_from(">HB", wire, pos + 16)
        assert typ == 2, "not an UPDATE"
        assert 23 <= length <= max_msg, f"message length {length}"
        assert pos + length <= len(wire), "truncated message"
        p.msg_lens.append(length)
        msg = wire[pos + 19:pos + length]
        pos += length
        (wlen,) = struct.unpack_from(">H", msg, 0)
        assert wlen == 0, "unexpected withdrawals"
        (alen,) = struct.unpack_from(">H", msg, 2)
        assert 4 + alen <= len(msg)
        attrs_raw = msg[4:4 + alen]
        nlri_field = msg[4 + alen:]
        attrs = {}
        key = []
        i = 0
        before = len(p.prefixes)
        last_code = 0
        while i < len(attrs_raw):
            flags, code = attrs_raw[i], attrs_raw[i + 1]
            if flags & 0x10:
                (vlen,) = struct.unpack_from(">H", attrs_raw, i + 2)
                hl = 4
            else:
                vlen = attrs_raw[i + 2]
                hl = 3
            value = attrs_raw[i + hl:i + hl + vlen]
            assert len(value) == vlen, "attribute overruns"
            assert code > last_code, "attributes not in type-code order / duplicated"
            last_code = code
            if code == 14:
                afi, safi, nhl = struct.unpack_from(">HBB", value, 0)
                assert (afi, safi, nhl) == (2, 1, 16)
                assert flags == 0x90
                assert value[4 + nhl] == 0
                fixed = value[:5 + nhl]
                _nlri(value[5 + nhl:], 16, p.prefixes)
                key.append(struct.pack(">BBH", 0x90, 14, len(fixed)) + fixed)
                attrs[code] = fixed
            else:
                assert bool(flags & 0x10) == (vlen > 255), "Extended Length bit not minimal"
                key.append(attrs_raw[i:i + hl + vlen])
                attrs[code] = value
            i += hl + vlen
        _nlri(nlri_field, 4, p.prefixes)
        n = len(p.prefixes) - before
        assert n > 0, "UPDATE without prefixes"
        k = b"".join(key)
        if k == last_key:
            p.sets[-1]["n"] += n
        else:
            p.sets.append({"key": k, "n": n, "attrs": attrs})
            last_key = k
    return p


def path_len(value: bytes, as4: bool = True) -> int:
    """RFC 4271 §9.1.2.2 a: each AS_SEQUENCE member counts 1, an AS_SET counts 1."""
    w = 4 if as4 else 2
    i = n = 0
    while i < len(value):
        typ, cnt = value[i], value[i + 1]
        assert typ in (1, 2) and cnt > 0
        n += cnt if typ == 2 else 1
        i += 2 + w * cnt
    assert i == len(value)
    return n


def path_asns(value: bytes, as4: bool = True) -> list[int]:
    w, f = (4, ">I") if as4 else (2, ">H")
    i, out = 0, []
    while i < len(value):
        cnt = value[i + 1]
        out.extend(struct.unpack_from(f">{cnt}{f[1]}", value, i + 2))
        i += 2 + w * cnt
    return out


@pytest.fixture(scope="module")
def t4():
    return generate_v4(N4, seed=7, next_hop=NH4, cache=False)


@pytest.fixture(scope="module")
def t6():
    return generate_v6(N6, seed=7, next_hop=NH6, cache=False)


@pytest.fixture(scope="module")
def p4(t4):
    return parse(t4.wire)


@pytest.fixture(scope="module")
def p6(t6):
    return parse(t6.wire)


# --- determinism ------------------------------------------------------------------------
def test_deterministic(t4, t6):
    assert generate_v4(N4, seed=7, next_hop=NH4, cache=False).wire == t4.wire
    assert generate_v6(N6, seed=7, next_hop=NH6, cache=False).wire == t6.wire


def test_seed_changes_table(t4, t6):
    assert generate_v4(N4, seed=8, next_hop=NH4, cache=False).wire != t4.wire
    assert generate_v6(N6, seed=8, next_hop=NH6, cache=False).wire != t6.wire


def test_cache_round_trip(tmp_path):
    a = generate_v4(3_000, seed=3, cache=True, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("v4_*.bin"))) == 1
    b = generate_v4(3_000, seed=3, cache=True, cache_dir=tmp_path)
    assert (b.wire, b.n_prefixes, b.n_attrsets, b.n_messages, b.stats) == \
        (a.wire, a.n_prefixes, a.n_attrsets, a.n_messages, a.stats)
    c = generate_v4(3_000, seed=3, cache=False)
    assert c.wire == a.wire


# --- well-formed messages ---------------------------------------------------------------
def test_counts_match_wire(t4, p4, t6, p6):
    for t, p in ((t4, p4), (t6, p6)):
        assert len(p.prefixes) == t.n_prefixes
        assert len(p.msg_lens) == t.n_messages
        assert len(p.sets) == t.n_attrsets
        assert max(p.msg_lens) <= 4096
        # messages are packed: a set split over messages fills all but its last one
        assert t.n_messages >= t.n_attrsets


@pytest.mark.parametrize("gen", [generate_v4, generate_v6])
def test_split_sets_fill_messages(gen):
    # with 512-byte messages (a test setting) the larger sets span several UPDATEs, each full one packed
    # until the next prefix would not fit
    t = gen(10_000, seed=2, max_msg=512, cache=False)
    p = parse(t.wire, max_msg=512)
    assert len(p.prefixes) == t.n_prefixes and len(p.sets) == t.n_attrsets
    assert t.n_messages > t.n_attrsets
    assert max(p.msg_lens) <= 512
    longest = 4 if gen is generate_v4 else 7       # a /24 is 1 + 3 bytes, a /48 1 + 6
    full = [n for n in p.msg_lens if n > 512 - longest]
    assert len(full) >= t.n_messages - t.n_attrsets


def test_next_hops(p4, p6):
    nh4 = ipaddress.ip_address(NH4).packed
    nh6 = ipaddress.ip_address(NH6).packed
    for s in p4.sets:
        assert s["attrs"][3] == nh4
        assert 14 not in s["attrs"]
    for s in p6.sets:
        assert 3 not in s["attrs"]
        assert s["attrs"][14][4:20] == nh6


def test_no_duplicates(p4, p6):
    for p in (p4, p6):
        assert len(set(p.prefixes)) == len(p.prefixes)


def test_no_martians(p4, p6):
    for p, martians, ctor in ((p4, MARTIANS4, ipaddress.IPv4Network),
                              (p6, MARTIANS6, ipaddress.IPv6Network)):
        for plen, addr in p.prefixes:
            net = ctor((addr, plen))
            assert not any(net.overlaps(m) for m in martians), net
            if ctor is ipaddress.IPv6Network:
                assert net.subnet_of(ipaddress.IPv6Network("2000::/3")) or net.prefixlen < 3


# --- the shape of the table ------------------------------------------------------------
def test_v4_prefix_lengths(p4):
    h = Counter(pl for pl, _ in p4.prefixes)
    n = len(p4.prefixes)
    assert 0.55 <= h[24] / n <= 0.65
    assert min(h) >= 8 and max(h) == 24
    for common in (16, 20, 22, 23):
        assert h[common] / n >= 0.01, f"/{common} too rare"
    assert h[22] > h[20] > h[16]


def test_v6_prefix_lengths(p6):
    h = Counter(pl for pl, _ in p6.prefixes)
    n = len(p6.prefixes)
    assert 0.45 <= h[48] / n <= 0.65
    assert h[32] / n >= 0.08
    assert min(h) >= 16 and max(h) == 48


@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_attribute_model(fam, p4, p6):
    p = p4 if fam == "v4" else p6
    sets = p.sets
    n = len(sets)
    mean_path = sum(path_len(s["attrs"][2]) for s in sets) / n
    assert 3.0 <= mean_path <= 5.0
    lens = Counter(path_len(s["attrs"][2]) for s in sets)
    assert min(lens) == 1 and max(lens) >= 8
    assert 2.0 <= len(p.prefixes) / n <= 4.0
    share = lambda code: sum(code in s["attrs"] for s in sets) / n  # noqa: E731
    assert 0.40 <= share(8) <= 0.60                 # COMMUNITIES
    assert 0.05 <= share(32) <= 0.15                # LARGE_COMMUNITY
    assert 0.20 <= share(4) <= 0.40                 # MED
    assert 0.005 <= share(7) <= 0.10                # AGGREGATOR
    assert 0.0 < share(6) <= 0.05                   # ATOMIC_AGGREGATE
    origins = Counter(s["attrs"][1][0] for s in sets)
    assert origins[0] / n >= 0.8 and set(origins) <= {0, 1, 2}
    for s in sets:
        c = s["attrs"].get(8)
        if c is not None:
            assert 4 <= len(c) <= 24 and len(c) % 4 == 0
        lc = s["attrs"].get(32)
        if lc is not None:
            assert len(lc) % 12 == 0 and len(lc) > 0
        assert 17 not in s["attrs"] and 18 not in s["attrs"]   # 4-octet encoding: no AS4_*
        if 7 in s["attrs"]:
            assert len(s["attrs"][7]) == 8
    asns = [a for s in sets for a in path_asns(s["attrs"][2])]
    four = sum(a > 0xFFFF for a in asns) / len(asns)
    assert 0.1 <= four <= 0.5, "expected a mix of 2- and 4-octet AS numbers"
    assert 0 not in asns and 23456 not in asns
    assert all(path_asns(s["attrs"][2])[0] == 6939 for s in sets)   # the peer's AS first
    # occasional AS_SET (the small table may hold only a handful)
    with_set = sum(any(s["attrs"][2][i] == 1 for i in _segment_starts(s["attrs"][2])) for s in sets)
    assert with_set >= 1


def _segment_starts(value: bytes, w: int = 4):
    i = 0
    while i < len(value):
        yield i
        i += 2 + w * value[i + 1]


def test_attribute_sets_distinct(p4, p6):
    for p in (p4, p6):
        keys = [s["key"] for s in p.sets]
        assert len(set(keys)) == len(keys)


def test_stats_agree_with_wire(t4, p4):
    s = t4.stats
    assert sum(s["plen_hist"].values()) == t4.n_prefixes
    assert s["plen_hist"]["24"] == sum(1 for pl, _ in p4.prefixes if pl == 24)
    mean_path = sum(path_len(x["attrs"][2]) for x in p4.sets) / len(p4.sets)
    assert abs(s["mean_path_len"] - mean_path) < 1e-9
    assert abs(s["share_communities"] - sum(8 in x["attrs"] for x in p4.sets) / len(p4.sets)) < 1e-9


def test_two_octet_encoding():
    t = generate_v4(3_000, seed=5, as4=False, cache=False)
    p = parse(t.wire)
    assert len(p.prefixes) == t.n_prefixes
    as4_path_seen = 0
    for s in p.sets:
        a = s["attrs"]
        two = path_asns(a[2], as4=False)
        if 17 in a:
            as4_path_seen += 1
            four = path_asns(a[17], as4=True)
            assert len(four) == len(two)
            assert [x if x <= 0xFFFF else 23456 for x in four] == two
        else:
            assert 23456 not in two
        if 7 in a:
            assert len(a[7]) == 6
            if 18 in a:
                assert struct.unpack(">H", a[7][:2])[0] == 23456
    assert as4_path_seen > 0


def test_cli(tmp_path, capsys):
    from bench.tablegen import main
    out = tmp_path / "t.bin"
    assert main(["--v4", "2000", "--v6", "500", "--no-cache", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "IPv4 table: 2,000 prefixes" in text and "IPv6 table: 500 prefixes" in text
    assert "/24" in text and "/48" in text
    p = parse(out.read_bytes())
    assert len(p.prefixes) == 2_500


# --- rserver's codec reads the table ------------------------------------------------------
_PURE_SRC = Path(importlib.util.find_spec("rserver").origin).parent / "codec" / "update_py.py"


def _backend(name):
    if not _PURE_SRC.exists():  # rserver.codec itself cannot be imported without it
        pytest.skip("rserver/codec/update_py.py (the pure codec) does not exist yet")
    from rserver.codec import BACKENDS
    mod = BACKENDS[name]
    if mod is None:
        pytest.fail("the compiled codec rserver.codec._cupdate is not built (pip install -e . builds it)")
    return mod


def _canonical_keys(p: Parsed) -> set:
    return {s["key"] for s in p.sets}


@pytest.mark.parametrize("name", ["pure", "cython"])
@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_codec_decodes_table(name, fam, t4, p4, t6, p6):
    mod = _backend(name)
    from rserver.codec.layout import ATTR_REC, ATTR_REC_SIZE, REC4, REC6, CodecContext
    t, p = (t4, p4) if fam == "v4" else (t6, p6)
    b = mod.decode_updates(t.wire, CodecContext())
    assert b.error is None
    assert b.problems == []
    assert b.consumed == len(t.wire)
    assert b.messages == t.n_messages
    rec, col, other = (REC4, b.v4, b.v6) if fam == "v4" else (REC6, b.v6, b.v4)
    assert other == b""
    assert len(col) == t.n_prefixes * rec.size
    width = 4 if fam == "v4" else 16
    got = sorted((plen, addr[:width]) for _, _, plen, addr in rec.iter_unpack(col))
    assert got == sorted(p.prefixes)
    # the generator writes canonical attributes (docs/codec.md), so the codec keeps them as is
    assert t.n_attrsets <= b.n_attrsets <= t.n_messages
    blobs = set()
    for r in ATTR_REC.iter_unpack(b.attr_index):
        off, ln = r[0], r[1]
        blobs.add(b.attr_data[off:off + ln])
    assert len(b.attr_index) == b.n_attrsets * ATTR_REC_SIZE
    assert blobs == _canonical_keys(p)


@pytest.mark.parametrize("name", ["pure", "cython"])
@pytest.mark.parametrize("fam", ["v4", "v6"])
def test_codec_re_encodes_table_byte_for_byte(name, fam, t4, t6):
    """The table is canonical and greedily packed, as rserver's encoder packs: decode then
    encode_batch gives back the very same bytes (RFC 7947 transparency)."""
    mod = _backend(name)
    from rserver.codec.layout import CodecContext
    t, afi = (t4, 1) if fam == "v4" else (t6, 2)
    b = mod.decode_updates(t.wire, CodecContext())
    out = mod.encode_batch(b.attr_data, b.attr_index, getattr(b, fam), afi, CodecContext())
    assert out == t.wire
