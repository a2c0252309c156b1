"""Differential tests: the Cython codec and the pure-Python reference give identical results.

Random valid UPDATE streams (every attribute type, AS4 merge cases, IPv6, ADD-PATH,
2-octet and 4-octet sessions, several messages per buffer, a partial tail) and random
malformed ones (valid messages with mutated bytes) go to both backends; the
UpdateBatch results must be equal field by field, and the encoders must return the
same bytes (or raise the same exception) for the same inputs (docs/codec.md).

The generators here are also used by test_fuzz.py.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rserver.codec import BACKENDS
from rserver.codec.layout import (
    ATTR_REC,
    ATTR_REC_SIZE,
    NO_ATTR,
    UpdateBatch,
    CodecContext,
)

PURE = BACKENDS["pure"]
CY = BACKENDS["cython"]

MARKER = b"\xff" * 16
BATCH_FIELDS = tuple(UpdateBatch.__struct_fields__)

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(autouse=True)
def _need_cython():
    if CY is None:
        pytest.fail("the compiled codec rserver.codec._cupdate is not built")


# ---------------------------------------------------------------------------------------
# wire construction
# ---------------------------------------------------------------------------------------
def attr(flags: int, t: int, val: bytes, ext: bool = False) -> bytes:
    """One path attribute; Extended Length when the value needs it (or when asked)."""
    if ext or len(val) > 255:
        return struct.pack("!BBH", flags | 0x10, t, len(val)) + val
    return struct.pack("!BBB", flags & ~0x10 & 0xFF, t, len(val)) + val


def update(withdrawn: bytes = b"", attrs: bytes = b"", nlri: bytes = b"") -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri
    return MARKER + struct.pack("!HB", 19 + len(body), 2) + body


def prefix_bytes(plen: int, addr: bytes, pid=None) -> bytes:
    out = b"" if pid is None else struct.pack("!I", pid)
    return out + bytes((plen,)) + addr[: (plen + 7) // 8]


def path_value(segs, width: int) -> bytes:
    fmt = "!%dI" if width == 4 else "!%dH"
    return b"".join(bytes((t, len(a))) + struct.pack(fmt % len(a), *a) for t, a in segs)


# ---------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------
contexts = st.builds(
    CodecContext,
    as4=st.booleans(),
    addpath_rx=st.integers(0, 3),
    addpath_tx=st.integers(0, 3),
    max_msg=st.sampled_from([4096, 4096, 65535, 1024, 300, 120]),
    ebgp=st.booleans(),
    loopback_next_hop=st.booleans(),
)


def asns(as4: bool):
    small = st.integers(1, 65535)
    if not as4:
        return small
    return st.one_of(small, st.integers(65536, 0xFFFFFFFF), st.sampled_from([23456, 64512, 4200000000]))


@st.composite
def segments(draw, as4: bool, big: bool = True, allow_confed: bool = True):
    types = [2, 2, 2, 1] + ([3, 4] if allow_confed else [])
    n = draw(st.integers(0, 4))
    segs = []
    for _ in range(n):
        t = draw(st.sampled_from(types))
        k = draw(st.integers(1, 6 if not big else 8))
        segs.append((t, draw(st.lists(asns(as4), min_size=k, max_size=k))))
    return segs


@st.composite
def v4_prefixes(draw, addpath: bool, max_n: int = 6):
    out = []
    for _ in range(draw(st.integers(0, max_n))):
        plen = draw(st.sampled_from([0, 8, 16, 19, 22, 23, 24, 24, 24, 25, 31, 32]))
        addr = draw(st.binary(min_size=4, max_size=4))
        pid = draw(st.integers(0, 0xFFFFFFFF)) if addpath else None
        out.append(prefix_bytes(plen, addr, pid))
    return b"".join(out)


@st.composite
def v6_prefixes(draw, addpath: bool, max_n: int = 5):
    out = []
    for _ in range(draw(st.integers(0, max_n))):
        plen = draw(st.sampled_from([0, 3, 32, 48, 48, 56, 64, 127, 128]))
        addr = draw(st.binary(min_size=16, max_size=16))
        pid = draw(st.integers(0, 0xFFFFFFFF)) if addpath else None
        out.append(prefix_bytes(plen, addr, pid))
    return b"".join(out)


OPT_TRANS = st.sampled_from([0xC0, 0xE0])


@st.composite
def attribute_list(draw, ctx: CodecContext, has_nlri: bool):
    """(type, raw attribute) pairs of a plausible (mostly valid) attribute section."""
    as4 = ctx.as4
    width = 4 if as4 else 2
    ext = st.booleans().map(lambda b: b and draw(st.integers(0, 9)) == 0)  # rare forced ext length
    out = []

    def add(t, flags, val):
        out.append((t, attr(flags, t, val, draw(ext))))

    if draw(st.integers(0, 19)) or not has_nlri:
        add(1, 0x40, bytes((draw(st.integers(0, 2)),)))
    if draw(st.integers(0, 19)) or not has_nlri:
        add(2, 0x40, path_value(draw(segments(as4)), width))
    if has_nlri and draw(st.integers(0, 19)):
        nh = draw(st.one_of(st.binary(min_size=4, max_size=4),
                            st.sampled_from([bytes([192, 0, 2, 1]), bytes([10, 0, 0, 1]),
                                             bytes([127, 0, 1, 1])])))      # 127/8: ctx.loopback_next_hop
        add(3, 0x40, nh)
    if draw(st.booleans()):
        add(4, 0x80, struct.pack("!I", draw(st.integers(0, 0xFFFFFFFF))))
    if draw(st.integers(0, 3)) == 0:
        add(5, 0x40, struct.pack("!I", draw(st.integers(0, 0xFFFFFFFF))))
    if draw(st.integers(0, 5)) == 0:
        add(6, 0x40, b"")
    if draw(st.integers(0, 4)) == 0:
        a = draw(asns(as4))
        add(7, draw(OPT_TRANS), (struct.pack("!I", a) if as4 else struct.pack("!H", a))
            + draw(st.binary(min_size=4, max_size=4)))
    if draw(st.booleans()):
        comms = draw(st.lists(st.one_of(st.integers(0, 0xFFFFFFFF),
                                        st.sampled_from([0xFFFF0000, 0xFFFF029A, 0xFFFFFF01])),
                              min_size=1, max_size=80))
        add(8, draw(OPT_TRANS), b"".join(struct.pack("!I", c) for c in comms))
    if draw(st.integers(0, 5)) == 0:
        add(9, 0x80, draw(st.binary(min_size=4, max_size=4)))
    if draw(st.integers(0, 5)) == 0:
        add(10, 0x80, draw(st.binary(min_size=4, max_size=16).map(lambda b: b[: len(b) // 4 * 4] or b"\0\0\0\1")))
    if draw(st.integers(0, 3)) == 0:
        add(16, draw(OPT_TRANS), draw(st.binary(min_size=8, max_size=40).map(lambda b: b[: len(b) // 8 * 8])))
    if draw(st.integers(0, 3)) == 0:
        add(32, draw(OPT_TRANS), draw(st.binary(min_size=12, max_size=48).map(lambda b: b[: len(b) // 12 * 12])))
    if draw(st.integers(0, 5)) == 0:
        add(35, draw(OPT_TRANS), draw(st.binary(min_size=4, max_size=4)))
    if draw(st.integers(0, 3)) == 0:
        # AS4_PATH: a valid 4-octet path, usually shorter than the AS_PATH
        add(17, 0xC0, path_value(draw(segments(True, big=False)), 4))
    if draw(st.integers(0, 4)) == 0:
        add(18, 0xC0, struct.pack("!I", draw(asns(True))) + draw(st.binary(min_size=4, max_size=4)))
    for _ in range(draw(st.integers(0, 2))):
        t = draw(st.sampled_from([11, 12, 13, 20, 22, 26, 40, 99, 128, 200, 255]))
        add(t, draw(st.sampled_from([0xC0, 0xE0, 0x80, 0xA0])), draw(st.binary(max_size=300)))
    return out


@st.composite
def as4_merge_case(draw):
    """A 2-octet session's AS_PATH (AS_TRANS for big ASes) with a matching AS4_PATH,
    sometimes with AGGREGATOR/AS4_AGGREGATOR and confed segments."""
    real = draw(segments(True, allow_confed=False))
    lead = draw(st.lists(st.tuples(st.sampled_from([2, 3, 4, 1]),
                                   st.lists(st.integers(1, 65535), min_size=1, max_size=4)), max_size=2))
    as2 = lead + [(t, [a if a <= 0xFFFF else 23456 for a in s]) for t, s in real]
    attrs = [(2, attr(0x40, 2, path_value(as2, 2)))]
    four = real if draw(st.booleans()) else real[draw(st.integers(0, max(0, len(real) - 1))):]
    if draw(st.integers(0, 4)) == 0:
        four = four + [(3, [70000])]     # confed in AS4_PATH: removed with a problem
    if four:
        attrs.append((17, attr(0xC0, 17, path_value(four, 4))))
    k = draw(st.integers(0, 4))
    ip = draw(st.binary(min_size=4, max_size=4))
    if k in (1, 2):
        attrs.append((7, attr(0xC0, 7, struct.pack("!H", 23456 if k == 1 else 65000) + ip)))
    if k in (1, 2, 3):
        attrs.append((18, attr(0xC0, 18, struct.pack("!I", 4200000001) + ip)))
    return attrs


@st.composite
def valid_message(draw, ctx: CodecContext):
    ap4 = bool(ctx.addpath_rx & 1)
    ap6 = bool(ctx.addpath_rx & 2)
    kinds = ["v4", "v4", "v4", "v6", "v6", "both", "mp4", "withdraw", "eor4", "eor6", "mpunreach"]
    kind = draw(st.sampled_from(kinds if ctx.as4 else kinds + ["as4merge", "as4merge"]))
    withdrawn = b""
    nlri = b""
    if kind == "eor4":
        return update()
    if kind == "eor6":
        afi = draw(st.sampled_from([1, 2, 2, 3]))
        return update(attrs=attr(0x80, 15, struct.pack("!HB", afi, draw(st.sampled_from([1, 1, 2])))))
    if kind in ("withdraw", "v4", "both") and draw(st.booleans()):
        withdrawn = draw(v4_prefixes(ap4))
    if kind == "withdraw":
        return update(withdrawn=withdrawn or prefix_bytes(24, b"\x0a\x00\x00\x00", 1 if ap4 else None))
    if kind == "mpunreach":
        afi = draw(st.sampled_from([1, 2]))
        pfx = draw(v4_prefixes(ap4) if afi == 1 else v6_prefixes(ap6))
        return update(withdrawn=withdrawn, attrs=attr(0x80, 15, struct.pack("!HB", afi, 1) + pfx))
    has_v4_field = kind in ("v4", "both", "as4merge")
    if has_v4_field:
        nlri = draw(v4_prefixes(ap4, 8)) or prefix_bytes(24, b"\xc6\x33\x64\x00", 7 if ap4 else None)
    attrs = draw(attribute_list(ctx, has_v4_field))
    if kind == "as4merge":
        attrs = [a for a in attrs if a[0] not in (2, 7, 17, 18)] + draw(as4_merge_case())
        if not any(a[0] == 3 for a in attrs):
            attrs.append((3, attr(0x40, 3, b"\xc0\x00\x02\x01")))
    if kind in ("v6", "both", "mp4"):
        afi = 1 if kind == "mp4" else 2
        if afi == 1:
            nh = draw(st.sampled_from([4, 4, 16, 32]))
            pfx = draw(v4_prefixes(ap4))
        else:
            nh = draw(st.sampled_from([16, 32]))
            pfx = draw(v6_prefixes(ap6))
        nhv = draw(st.binary(min_size=nh, max_size=nh))
        if nh == 4 and draw(st.integers(0, 3)) == 0:
            nhv = draw(st.sampled_from([bytes([127, 0, 1, 1]), bytes(4), bytes([224, 0, 0, 1])]))
        val = struct.pack("!HBB", afi, 1, nh) + nhv + b"\0" + pfx
        attrs.append((14, attr(0x80, 14, val, draw(st.booleans()))))
        if draw(st.integers(0, 3)) == 0:
            upfx = draw(v6_prefixes(ap6) if afi == 2 else v4_prefixes(ap4))
            attrs.append((15, attr(0x80, 15, struct.pack("!HB", afi, 1) + upfx)))
    order = draw(st.sampled_from(["sorted", "sorted", "sorted", "shuffled"]))
    if order == "sorted":
        attrs.sort(key=lambda a: a[0])
    else:
        attrs = draw(st.permutations(attrs))
    return update(withdrawn, b"".join(a[1] for a in attrs), nlri)


@st.composite
def valid_stream(draw, ctx: CodecContext):
    msgs = draw(st.lists(valid_message(ctx), min_size=1, max_size=4))
    buf = b"".join(m for m in msgs if len(m) <= ctx.max_msg or draw(st.integers(0, 9)) == 0)
    tail = draw(st.sampled_from(["none", "none", "partial", "keepalive", "garbage"]))
    if tail == "partial" and msgs:
        m = msgs[0]
        buf += m[: draw(st.integers(1, len(m) - 1))]
    elif tail == "keepalive":
        buf += MARKER + b"\x00\x13\x04"
    elif tail == "garbage":
        buf += draw(st.binary(max_size=30))
    return buf


# ---------------------------------------------------------------------------------------
# mutations (malformed input)
# ---------------------------------------------------------------------------------------
def attr_offsets(msg: bytes):
    """(start, flags offset, length offset, ext) of each attribute of one UPDATE, as far as
    the section frames."""
    out = []
    try:
        wl = struct.unpack_from("!H", msg, 19)[0]
        a = 21 + wl
        tpal = struct.unpack_from("!H", msg, a)[0]
        p, e = a + 2, min(a + 2 + tpal, len(msg))
        while p + 3 <= e:
            ext = msg[p] & 0x10
            out.append((p, ext))
            p += (4 + struct.unpack_from("!H", msg, p + 2)[0]) if ext else (3 + msg[p + 2])
    except (struct.error, IndexError):
        pass
    return out


@st.composite
def mutated(draw, buf: bytes):
    b = bytearray(buf)
    for _ in range(draw(st.integers(1, 3))):
        if not b:
            b = bytearray(draw(st.binary(max_size=60)))
            continue
        op = draw(st.sampled_from(["flip", "byte", "trunc", "insert", "delete", "len16",
                                   "attrflags", "attrtype", "attrlen", "segtype", "dup"]))
        offs = attr_offsets(bytes(b)) if op in ("attrflags", "attrtype", "attrlen", "segtype", "dup") else []
        if op == "flip":
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            i = draw(st.integers(min(19, len(b) - 1), len(b) - 1))
            b[i] = draw(st.integers(0, 255))
        elif op == "trunc":
            del b[draw(st.integers(0, len(b) - 1)):]
        elif op == "insert":
            i = draw(st.integers(0, len(b)))
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            i = draw(st.integers(0, len(b) - 1))
            del b[i:i + draw(st.integers(1, 8))]
        elif op == "len16":   # a 16-bit length field: message, withdrawn, total attribute
            i = draw(st.sampled_from([16, 19, 21] + [21 + 2 + 0]))
            if i + 1 < len(b):
                v = (b[i] << 8 | b[i + 1]) + draw(st.integers(-6, 6))
                b[i:i + 2] = struct.pack("!H", v & 0xFFFF)
        elif offs:
            p, ext = draw(st.sampled_from(offs))
            if op == "attrflags":
                b[p] ^= draw(st.sampled_from([0x80, 0x40, 0x20, 0x10, 0xC0]))
            elif op == "attrtype" and p + 1 < len(b):
                b[p + 1] = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18,
                                                 32, 35, 0, 11, 255]))
            elif op == "attrlen" and p + 2 < len(b):
                j = p + 3 if ext and p + 3 < len(b) else p + 2
                b[j] = (b[j] + draw(st.integers(-5, 5))) & 0xFF
            elif op == "segtype":
                j = p + (4 if ext else 3)
                if j < len(b):
                    b[j] = draw(st.integers(0, 6))
                if j + 1 < len(b) and draw(st.booleans()):
                    b[j + 1] = draw(st.integers(0, 3))
            elif op == "dup":
                q = p + ((4 + (b[p + 2] << 8 | b[p + 3])) if ext else (3 + b[p + 2])) if p + 3 < len(b) else len(b)
                chunk = bytes(b[p:q])
                b[q:q] = chunk
                # keep the framing: fix the Total Path Attribute Length and message length
                try:
                    wl = b[19] << 8 | b[20]
                    a = 21 + wl
                    tp = (b[a] << 8 | b[a + 1]) + len(chunk)
                    b[a:a + 2] = struct.pack("!H", tp & 0xFFFF)
                    ml = (b[16] << 8 | b[17]) + len(chunk)
                    b[16:18] = struct.pack("!H", ml & 0xFFFF)
                except IndexError:
                    pass
    return bytes(b)


def split_update(msg: bytes):
    """(withdrawn, [[flags, type, value], ...], nlri) of a well-framed UPDATE, else None."""
    try:
        wl = struct.unpack_from("!H", msg, 19)[0]
        withdrawn = msg[21:21 + wl]
        a = 21 + wl
        tpal = struct.unpack_from("!H", msg, a)[0]
        p, e = a + 2, a + 2 + tpal
        if e > len(msg) or len(withdrawn) != wl:
            return None
        attrs = []
        while p < e:
            f, t = msg[p], msg[p + 1]
            if f & 0x10:
                n, v = struct.unpack_from("!H", msg, p + 2)[0], p + 4
            else:
                n, v = msg[p + 2], p + 3
            if v + n > e:
                return None
            attrs.append([f, t, msg[v:v + n]])
            p = v + n
        return withdrawn, attrs, msg[e:]
    except (struct.error, IndexError):
        return None


def join_update(withdrawn: bytes, attrs, nlri: bytes) -> bytes:
    a = b"".join(attr(f, t, v, bool(f & 0x10)) for f, t, v in attrs)
    return update(withdrawn, a, nlri)


@st.composite
def structured_mutation(draw, msg: bytes) -> bytes:
    """Mutate one UPDATE while keeping every length field consistent, so that the
    value-level checks (lengths, values, flags, AS 0, MP structure, prefixes) are reached."""
    parts = split_update(msg)
    if parts is None:
        return msg
    withdrawn, attrs, nlri = parts
    op = draw(st.sampled_from(["resize", "resize", "value", "zero", "flags", "dup", "drop",
                               "prefix", "mpbyte", "settype"]))
    if op == "prefix":
        field = draw(st.sampled_from(["w", "n"]))
        b = bytearray(withdrawn if field == "w" else nlri) or bytearray(b"\x18\x0a\x00\x00")
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.sampled_from([33, 40, 64, 129, 255, 25, 32]))
        if draw(st.booleans()):
            del b[draw(st.integers(0, len(b) - 1)):]
        if field == "w":
            withdrawn = bytes(b)
        else:
            nlri = bytes(b)
        return join_update(withdrawn, attrs, nlri)
    if not attrs:
        return msg
    k = draw(st.integers(0, len(attrs) - 1))
    f, t, v = attrs[k]
    if op == "resize":
        n = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 24]))
        v = (v + draw(st.binary(min_size=n, max_size=n)))[:n] if draw(st.booleans()) else v[:n]
    elif op == "value" and v:
        b = bytearray(v)
        i = draw(st.integers(0, len(b) - 1))
        b[i] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 127, 224, 255, draw(st.integers(0, 255))]))
        v = bytes(b)
    elif op == "zero" and len(v) >= 2:
        w = draw(st.sampled_from([2, 4]))
        i = draw(st.integers(0, max(0, len(v) - w)))
        v = v[:i] + bytes(w) + v[i + w:]
    elif op == "flags":
        f ^= draw(st.sampled_from([0x80, 0x40, 0x20, 0x10, 0xC0, 0x60]))
    elif op == "dup":
        attrs.insert(draw(st.integers(0, len(attrs))), [f, t, v if draw(st.booleans()) else v[:1]])
    elif op == "drop":
        del attrs[k]
        return join_update(withdrawn, attrs, nlri)
    elif op == "mpbyte":   # MP_REACH/MP_UNREACH: AFI, SAFI, next-hop length, reserved
        mps = [i for i, a in enumerate(attrs) if a[1] in (14, 15)]
        if mps:
            k = draw(st.sampled_from(mps))
            f, t, v = attrs[k]
            if len(v) >= 4:
                b = bytearray(v)
                i = draw(st.sampled_from([1, 2, 3, 3]))
                b[i] = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 128, 255]))
                v = bytes(b)
    elif op == "settype":
        t = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32, 35]))
    if len(v) > 255:
        f |= 0x10
    attrs[k] = [f, t, v]
    return join_update(withdrawn, attrs, nlri)


@st.composite
def structured_stream(draw, ctx: CodecContext):
    msgs = draw(st.lists(valid_message(ctx), min_size=1, max_size=3))
    i = draw(st.integers(0, len(msgs) - 1))
    for _ in range(draw(st.integers(1, 2))):
        msgs[i] = draw(structured_mutation(msgs[i]))
    return b"".join(msgs)


# ---------------------------------------------------------------------------------------
# comparison
# ---------------------------------------------------------------------------------------
def same_decode(buf, ctx) -> UpdateBatch:
    a = PURE.decode_updates(buf, ctx)
    b = CY.decode_updates(buf, ctx)
    for f in BATCH_FIELDS:
        assert getattr(b, f) == getattr(a, f), f"field {f} differs for {bytes(buf).hex()} ctx={ctx}"
    return a


def outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as e:  # noqa: BLE001 - the exception is what is compared
        return ("raise", type(e).__name__, str(e))


def same_call(name, *args):
    a = outcome(getattr(PURE, name), *args)
    b = outcome(getattr(CY, name), *args)
    assert a == b, f"{name} differs: pure={a!r:.300} cython={b!r:.300}"
    return a


def check_encoders(batch: UpdateBatch, ctx: CodecContext):
    """Both encoders on the decoded batch: whole columns, each set, withdrawals."""
    for afi, col in ((1, batch.v4), (2, batch.v6)):
        same_call("encode_batch", batch.attr_data, batch.attr_index, col, afi, ctx)
        rs = 13 if afi == 1 else 25
        same_call("encode_withdraw", afi, col, ctx)
        for k in range(batch.n_attrsets):
            rec = ATTR_REC.unpack_from(batch.attr_index, k * ATTR_REC_SIZE)
            if rec[4] != afi:
                continue
            blob = batch.attr_data[rec[0]:rec[0] + rec[1]]
            recs = b"".join(col[i:i + rs] for i in range(0, len(col), rs)
                            if struct.unpack_from("<I", col, i)[0] == k)
            same_call("encode_announce", blob, afi, recs, ctx)


# ---------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_valid_streams_identical(data):
    ctx = data.draw(contexts)
    buf = data.draw(valid_stream(ctx))
    batch = same_decode(buf, ctx)
    ectx = data.draw(contexts)
    check_encoders(batch, ectx)


@SETTINGS
@given(st.data())
def test_valid_messages_decode_cleanly_or_identically(data):
    """Single valid messages, also as bytearray / memoryview input."""
    ctx = data.draw(contexts)
    msg = data.draw(valid_message(ctx))
    same_decode(msg, ctx)
    a = PURE.decode_updates(bytearray(msg), ctx)
    b = CY.decode_updates(memoryview(msg), ctx)
    assert a == b


@SETTINGS
@given(st.data())
def test_mutated_streams_identical(data):
    ctx = data.draw(contexts)
    buf = data.draw(valid_stream(ctx))
    bad = data.draw(mutated(buf))
    batch = same_decode(bad, ctx)
    check_encoders(batch, data.draw(contexts))


@SETTINGS
@given(st.data())
def test_structured_mutations_identical(data):
    """Value-level errors with consistent framing: every classification path."""
    ctx = data.draw(contexts)
    buf = data.draw(structured_stream(ctx))
    batch = same_decode(buf, ctx)
    check_encoders(batch, data.draw(contexts))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(contexts, st.binary(max_size=200))
def test_random_bytes_identical(ctx, blob):
    same_decode(blob, ctx)
    same_decode(MARKER + struct.pack("!HB", 19 + len(blob), 2) + blob, ctx)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(contexts, st.binary(max_size=120), st.integers(1, 2), st.binary(max_size=80))
def test_encoders_on_arbitrary_input_identical(ctx, blob, afi, records):
    """Non-canonical blobs and odd record buffers: same bytes or same exception."""
    same_call("encode_announce", blob, afi, records, ctx)
    same_call("encode_withdraw", afi, records, ctx)
    same_call("encode_batch", blob, ATTR_REC.pack(0, len(blob), *([0] * 8), bytes(16), bytes(16),
                                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFFFFFFFF), records, afi, ctx)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.integers(0, 70000), st.integers(0, 300))
def test_eor_identical(afi, safi):
    same_call("encode_eor", afi, safi)


def test_encode_error_identical():
    """A set whose attributes plus one prefix do not fit: EncodeError from both."""
    ctx = CodecContext(max_msg=100)
    blob = attr(0x40, 1, b"\0") + attr(0x40, 2, b"") + attr(0x40, 3, b"\xc0\0\2\1") + attr(0xC0, 8, bytes(80))
    rec = struct.pack("<IIB4s", 0, 0, 24, b"\x0a\0\0\0")
    a = same_call("encode_announce", blob, 1, rec, ctx)
    assert a[0] == "raise" and a[1] == "EncodeError"
    same_call("encode_batch", blob, ATTR_REC.pack(0, len(blob), *([0] * 8), bytes(16), bytes(16),
                                                  4, 0, 0, 0, 0, 0, 0, 0, 0, 0xFFFFFFFF), rec, 1, ctx)


def test_table_roundtrip_identical():
    """A few thousand realistic messages in one buffer (the benchmark's shape)."""
    import random
    rnd = random.Random(7)
    msgs = []
    for i in range(3000):
        path = [rnd.choice((174, 3356, 1299, 6939)), *[rnd.randrange(1, 400000) for _ in range(rnd.randrange(1, 7))]]
        a = attr(0x40, 1, bytes((rnd.randrange(3),))) + attr(0x40, 2, path_value([(2, path)], 4)) \
            + attr(0x40, 3, bytes((192, 0, 2, rnd.randrange(1, 250))))
        if rnd.random() < 0.5:
            a += attr(0xC0, 8, b"".join(struct.pack("!HH", path[0] & 0xFFFF, rnd.randrange(1000))
                                        for _ in range(rnd.randrange(1, 6))))
        if rnd.random() < 0.2:
            a += attr(0xC0, 32, struct.pack("!III", path[0], 1, rnd.randrange(100)))
        nlri = b"".join(prefix_bytes(p, struct.pack("!I", rnd.randrange(1 << 32)))
                        for p in (rnd.choice((24, 24, 22, 20, 16)) for _ in range(rnd.randrange(1, 6))))
        msgs.append(update(attrs=a, nlri=nlri))
    buf = b"".join(msgs)
    for ctx in (CodecContext(), CodecContext(as4=False), CodecContext(addpath_tx=1, max_msg=65535)):
        batch = same_decode(buf, CodecContext())
        assert batch.error is None and batch.consumed == len(buf)
        same_call("encode_batch", batch.attr_data, batch.attr_index, batch.v4, 1, ctx)
        assert batch.v4.count(struct.pack("<I", NO_ATTR)) == 0 or True


# ---------------------------------------------------------------------------------------
# one crafted message per reason: both backends agree, and the reason is produced
# ---------------------------------------------------------------------------------------
_O = attr(0x40, 1, b"\x00")
_P = attr(0x40, 2, path_value([(2, [65001, 4200000000])], 4))
_P2 = attr(0x40, 2, path_value([(2, [65001, 23456])], 2))
_N = attr(0x40, 3, b"\xc0\x00\x02\x01")
_NLRI = b"\x18\x0a\x00\x00"
_AS4 = CodecContext()
_AS2 = CodecContext(as4=False)
_IBGP = CodecContext(ebgp=False)


def _u(extra=b"", base=True, nlri=_NLRI, two=False, withdrawn=b""):
    a = ((_O + (_P2 if two else _P) + _N) if base else b"") + extra
    return update(withdrawn, a, nlri)


def _mp6(nhl=16, pfx=b"\x30\x20\x01\x0d\xb8\x00\x00", afi=2, safi=1):
    return attr(0x80, 14, struct.pack("!HBB", afi, safi, nhl) + bytes(nhl) + b"\0" + pfx)


REASON_CASES = {
    "header-marker": (_AS4, b"\0" * 16 + b"\x00\x17\x02\x00\x00\x00\x00"),
    "header-length": (_AS4, MARKER + b"\x00\x12\x02"),
    "update-short": (_AS4, MARKER + b"\x00\x16\x02\x00\x00\x00"),
    "withdrawn-length": (_AS4, MARKER + b"\x00\x17\x02\x00\x09\x00\x00"),
    "attr-length-total": (_AS4, MARKER + b"\x00\x17\x02\x00\x00\x00\x09"),
    "withdrawn-prefix": (_AS4, update(withdrawn=b"\x21\x0a\x00\x00\x00\x00")),
    "nlri-prefix": (_AS4, _u(nlri=b"\x18\x0a\x00")),
    "attr-overrun-mp": (_AS4, _u(b"\x80\x0e\x10\x00\x02")),
    "attr-unrecognized-well-known": (_AS4, _u(attr(0x40, 99, b"x"))),
    "mp-duplicate": (_AS4, update(attrs=attr(0x80, 15, b"\x00\x02\x01") * 2)),
    "mp-reach-malformed": (_AS4, _u(attr(0x80, 14, b"\x00\x02"))),
    "mp-unreach-malformed": (_AS4, update(attrs=attr(0x80, 15, b"\x00\x02\x01\x40\x20"))),
    "mp-nexthop-length": (_AS4, _u(_mp6(nhl=4))),
    "attr-overrun": (_AS4, _u(b"\x40\x04\x05\x00")),
    "attr-flags": (_AS4, update(attrs=attr(0xC0, 1, b"\x00") + _P + _N, nlri=_NLRI)),
    "attr-missing": (_AS4, update(attrs=_P + _N, nlri=_NLRI)),
    "origin-length": (_AS4, update(attrs=attr(0x40, 1, b"\0\0") + _P + _N, nlri=_NLRI)),
    "origin-value": (_AS4, update(attrs=attr(0x40, 1, b"\3") + _P + _N, nlri=_NLRI)),
    "as-path-malformed": (_AS4, update(attrs=_O + attr(0x40, 2, b"\x05\x01\0\0\0\1") + _N, nlri=_NLRI)),
    "as-path-as0": (_AS4, update(attrs=_O + attr(0x40, 2, b"\x02\x01\0\0\0\0") + _N, nlri=_NLRI)),
    "nexthop-length": (_AS4, update(attrs=_O + _P + attr(0x40, 3, b"\1\2\3\4\5"), nlri=_NLRI)),
    "nexthop-martian": (_AS4, update(attrs=_O + _P + attr(0x40, 3, b"\x7f\0\0\1"), nlri=_NLRI)),
    "med-length": (_AS4, _u(attr(0x80, 4, b"\0\0\1"))),
    "local-pref-length": (_IBGP, _u(attr(0x40, 5, b"\0\0\1"))),
    "communities-length": (_AS4, _u(attr(0xC0, 8, b"\0\0\1\2\3"))),
    "ext-communities-length": (_AS4, _u(attr(0xC0, 16, bytes(7)))),
    "large-communities-length": (_AS4, _u(attr(0xC0, 32, bytes(11)))),
    "originator-id-length": (_IBGP, _u(attr(0x80, 9, b"\1\2\3"))),
    "cluster-list-length": (_IBGP, _u(attr(0x80, 10, b""))),
    "otc-length": (_AS4, _u(attr(0xC0, 35, b"\0\0\1"))),
    "attr-duplicate": (_AS4, _u(attr(0x80, 4, b"\0\0\0\1") * 2)),
    "atomic-aggregate-length": (_AS4, _u(attr(0x40, 6, b"\0"))),
    "aggregator-length": (_AS4, _u(attr(0xC0, 7, bytes(7)))),
    "aggregator-as0": (_AS4, _u(attr(0xC0, 7, bytes(4) + b"\1\2\3\4"))),
    "as4-path-malformed": (_AS2, _u(attr(0xC0, 17, b"\2\1\0"), two=True)),
    "as4-path-confed": (_AS2, _u(attr(0xC0, 17, path_value([(3, [70000]), (2, [4200000000])], 4)), two=True)),
    "as4-aggregator-length": (_AS2, _u(attr(0xC0, 18, bytes(7)), two=True)),
    "as4-aggregator-as0": (_AS2, _u(attr(0xC0, 18, bytes(4) + b"\1\2\3\4"), two=True)),
    "as4-from-new-speaker": (_AS4, _u(attr(0xC0, 17, path_value([(2, [70000])], 4)))),
    "as4-aggregator-mismatch": (_AS2, _u(attr(0xC0, 7, b"\xfd\xe8\1\2\3\4")
                                         + attr(0xC0, 18, b"\0\1\x11\x70\1\2\3\4"), two=True)),
    "as4-aggregator-alone": (_AS2, _u(attr(0xC0, 18, b"\0\1\x11\x70\1\2\3\4"), two=True)),
    "as4-path-longer": (_AS2, _u(attr(0xC0, 17, path_value([(2, [70000, 70001, 70002])], 4)), two=True)),
    "as4-merge-confed": (_AS2, update(attrs=_O + attr(0x40, 2, path_value([(2, [1, 2]), (3, [5])], 2)) + _N
                                      + attr(0xC0, 17, path_value([(2, [70000])], 4)), nlri=_NLRI)),
    "mp-unsupported-family": (_AS4, update(attrs=attr(0x80, 15, b"\x00\x03\x01"))),
}


_LOOP = CodecContext(loopback_next_hop=True)


@pytest.mark.parametrize("ctx, nh, martian", [
    (_AS4, b"\x7f\x00\x01\x01", True),
    (_LOOP, b"\x7f\x00\x01\x01", False),
    (_LOOP, b"\x7f\xff\xff\xff", False),
    (_LOOP, bytes(4), True),
    (_LOOP, b"\xe0\x00\x00\x01", True),
    (_LOOP, b"\xf0\x00\x00\x01", True),
    (_LOOP, b"\xff\xff\xff\xff", True),
])
def test_loopback_next_hop_identical(ctx, nh, martian):
    """ctx.loopback_next_hop: 127/8 next hops (NEXT_HOP and 4-byte MP_REACH) are not
    martian, the others still are; both backends alike."""
    for msg in (update(attrs=_O + _P + attr(0x40, 3, nh), nlri=_NLRI),
                update(attrs=_O + _P + attr(0x80, 14, b"\x00\x01\x01\x04" + nh + b"\x00" + _NLRI))):
        batch = same_decode(msg, ctx)
        assert ("nexthop-martian" in [p.reason for p in batch.problems]) is martian
        assert batch.n_attrsets == (0 if martian else 1)
        check_encoders(batch, ctx)


def test_reason_cases_cover_every_reason():
    assert set(REASON_CASES) == set(PURE.REASONS)


@pytest.mark.parametrize("reason", sorted(REASON_CASES))
def test_every_reason_identical(reason):
    ctx, msg = REASON_CASES[reason]
    batch = same_decode(msg, ctx)
    assert reason in [p.reason for p in batch.problems]
    check_encoders(batch, ctx)
    check_encoders(batch, CodecContext(as4=not ctx.as4, addpath_tx=3))
