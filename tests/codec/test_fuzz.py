"""Bounded fuzzing of the UPDATE codec, on both backends.

Input from a peer never raises (problems are returned instead) and never makes the
decoder loop: every call consumes at most the buffer, whole messages only, and a
reader that feeds it a stream always progresses. The batch it returns is
self-consistent (record sizes, attribute indexes, blob offsets). Encoding a decoded
batch and decoding the result gives the same routes back.
"""
from __future__ import annotations

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rserver.codec.layout import (
    ACTION_RESET,
    AF_AS4_MERGED,
    ATTR_REC,
    ATTR_REC_SIZE,
    NO_ATTR,
    NO_OFF,
    CodecContext,
    EncodeError,
    UpdateBatch,
)

from .test_differential import (
    MARKER,
    REASON_CASES,
    attr,
    contexts,
    mutated,
    path_value,
    prefix_bytes,
    structured_mutation,
    update,
    valid_stream,
)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------
def message_lengths(buf: bytes, n: int):
    """Lengths of the first n messages of buf (their headers were accepted)."""
    out, pos = [], 0
    for _ in range(n):
        ln = (buf[pos + 16] << 8) | buf[pos + 17]
        out.append(ln)
        pos += ln
    return out


def check_batch(buf, ctx: CodecContext, b: UpdateBatch) -> None:
    buf = bytes(buf)
    assert isinstance(b, UpdateBatch)
    assert 0 <= b.consumed <= len(buf)
    assert b.consumed == sum(message_lengths(buf, b.messages))
    assert len(b.v4) % 13 == 0 and len(b.v6) % 25 == 0
    assert len(b.attr_index) % ATTR_REC_SIZE == 0
    n_sets = b.n_attrsets
    used = set()
    for col, rs, afi in ((b.v4, 13, 1), (b.v6, 25, 2)):
        for i in range(0, len(col), rs):
            idx, _pid, plen = struct.unpack_from("<IIB", col, i)
            assert plen <= (32 if afi == 1 else 128)
            if idx != NO_ATTR:
                assert idx < n_sets
                assert ATTR_REC.unpack_from(b.attr_index, idx * ATTR_REC_SIZE)[4] == afi
                used.add(idx)
            # host bits are zero
            addr = int.from_bytes(col[i + 9:i + rs], "big")
            width = 32 if afi == 1 else 128
            assert addr & ((1 << (width - plen)) - 1) == 0
    assert used == set(range(n_sets)), "every attribute set has prefixes"
    end = 0
    for k in range(n_sets):
        rec = ATTR_REC.unpack_from(b.attr_index, k * ATTR_REC_SIZE)
        off, ln = rec[0], rec[1]
        assert off == end
        end = off + ln
        for o, n in ((rec[15], rec[16]), (rec[17], rec[18]), (rec[19], rec[20])):
            assert o == NO_OFF or o + n <= ln
        assert rec[21] == NO_OFF or rec[21] + 4 <= ln
    assert end == len(b.attr_data)
    for afi, safi, pos in b.eor:
        assert (afi, safi) in ((1, 1), (2, 1))
        assert pos <= (len(b.v4) // 13 if afi == 1 else len(b.v6) // 25)
    for p in b.problems:
        assert p.msg <= b.messages
        assert isinstance(p.reason, str) and p.reason
    if b.error is not None:
        assert b.error.action == ACTION_RESET
        assert b.problems and b.problems[-1] == b.error
        assert b.error.msg == b.messages
    else:
        assert all(p.action != ACTION_RESET for p in b.problems)


def read_stream(backend, buf: bytes, ctx: CodecContext) -> int:
    """A session's reader over a whole stream: decode, drop what was consumed, skip one
    non-UPDATE message, stop on a reset or an incomplete message. Returns the number
    of decode calls (bounded by the number of messages + 1)."""
    pos = 0
    calls = 0
    while pos < len(buf):
        calls += 1
        assert calls <= len(buf) // 19 + 2, "the reader does not progress"
        view = buf[pos:]
        b = backend.decode_updates(view, ctx)
        check_batch(view, ctx, b)
        if b.error is not None:
            break
        pos += b.consumed
        if b.consumed:
            continue
        rest = buf[pos:]
        if len(rest) < 19 or rest[18] == 2:
            break           # incomplete (an UPDATE would have been consumed or rejected)
        ln = (rest[16] << 8) | rest[17]
        if ln > len(rest):
            break
        pos += ln           # another message type: the session parses it (messages.py)
    return calls


def decode_never_raises(backend, buf, ctx):
    b = backend.decode_updates(buf, ctx)
    check_batch(buf, ctx, b)
    return b


# ---------------------------------------------------------------------------------------
# hypothesis-driven fuzz
# ---------------------------------------------------------------------------------------
@FUZZ
@given(ctx=contexts, blob=st.binary(max_size=300))
def test_random_bytes(backend, ctx, blob):
    decode_never_raises(backend, blob, ctx)
    framed = MARKER + struct.pack("!HB", 19 + len(blob), 2) + blob
    decode_never_raises(backend, framed, ctx)
    read_stream(backend, framed * 2, ctx)


@FUZZ
@given(st.data())
def test_mutated_streams(backend, data):
    ctx = data.draw(contexts)
    buf = data.draw(valid_stream(ctx))
    bad = data.draw(mutated(buf))
    decode_never_raises(backend, bad, ctx)
    read_stream(backend, bad, ctx)


@FUZZ
@given(st.data())
def test_structured_mutations(backend, data):
    ctx = data.draw(contexts)
    msg = data.draw(valid_stream(ctx))
    bad = data.draw(structured_mutation(msg))
    decode_never_raises(backend, bad, ctx)


@FUZZ
@given(st.data())
def test_encode_decode_roundtrip(backend, data):
    """Routes decoded from a 4-octet session, encoded for any peer, decode to the same
    prefixes (attribute sets renumbered) and, for a 4-octet peer, the same blobs."""
    ctx = data.draw(contexts)
    b = backend.decode_updates(data.draw(valid_stream(ctx)), ctx)
    ectx = data.draw(contexts)
    dctx = CodecContext(as4=ectx.as4, addpath_rx=ectx.addpath_tx, max_msg=ectx.max_msg, ebgp=ctx.ebgp,
                        loopback_next_hop=ctx.loopback_next_hop)
    for afi, col, rs in ((1, b.v4, 13), (2, b.v6, 25)):
        try:
            wire = backend.encode_batch(b.attr_data, b.attr_index, col, afi, ectx)
        except EncodeError:
            continue
        back = backend.decode_updates(wire, dctx)
        assert back.error is None and back.consumed == len(wire)
        got = back.v4 if afi == 1 else back.v6
        assert len(got) == len(col)
        ap = bool(ectx.addpath_tx & afi)
        for i in range(0, len(col), rs):
            a_idx = struct.unpack_from("<I", col, i)[0]
            b_idx = struct.unpack_from("<I", got, i)[0]
            assert (a_idx == NO_ATTR) == (b_idx == NO_ATTR)
            # the path id travels only when ADD-PATH is used for that family
            assert got[i + 8:i + rs] == col[i + 8:i + rs]
            if ap:
                assert got[i + 4:i + 8] == col[i + 4:i + 8]
            if a_idx != NO_ATTR and ectx.as4:
                ra = ATTR_REC.unpack_from(b.attr_index, a_idx * ATTR_REC_SIZE)
                rb = ATTR_REC.unpack_from(back.attr_index, b_idx * ATTR_REC_SIZE)
                assert back.attr_data[rb[0]:rb[0] + rb[1]] == b.attr_data[ra[0]:ra[0] + ra[1]]
                # AF_AS4_MERGED tells how the original was received: not carried over
                assert (ra[2] & ~AF_AS4_MERGED, *ra[3:]) == (rb[2] & ~AF_AS4_MERGED, *rb[3:])


def test_reason_cases(backend):
    for reason, (ctx, msg) in REASON_CASES.items():
        b = decode_never_raises(backend, msg, ctx)
        assert reason in [p.reason for p in b.problems]


# ---------------------------------------------------------------------------------------
# seeded mutation fuzz over a corpus of valid UPDATEs
# ---------------------------------------------------------------------------------------
def _corpus(rnd: random.Random, n: int):
    """Valid UPDATEs (with their contexts) covering every attribute type."""
    out = []
    for i in range(n):
        as4 = i % 3 != 0
        ap = rnd.choice((0, 0, 3))
        ctx = CodecContext(as4=as4, addpath_rx=ap, ebgp=bool(i % 4))
        w = 4 if as4 else 2
        asn = (lambda: rnd.choice((rnd.randrange(1, 65536), rnd.randrange(65536, 1 << 32)))) if as4 \
            else (lambda: rnd.randrange(1, 65536))
        segs = [(rnd.choice((2, 2, 1, 3)), [asn() for _ in range(rnd.randrange(1, 5))])
                for _ in range(rnd.randrange(1, 3))]
        a = [attr(0x40, 1, bytes((rnd.randrange(3),))), attr(0x40, 2, path_value(segs, w))]
        pid = (lambda: rnd.randrange(1 << 32)) if ap else (lambda: None)
        nlri = b"".join(prefix_bytes(rnd.choice((8, 16, 22, 24, 24, 32)), rnd.randbytes(4), pid())
                        for _ in range(rnd.randrange(0, 4)))
        if nlri:
            a.append(attr(0x40, 3, bytes((rnd.randrange(1, 224), 0, 2, 1))))
        for t, f, val in ((4, 0x80, rnd.randbytes(4)), (5, 0x40, rnd.randbytes(4)), (6, 0x40, b""),
                          (7, 0xC0, rnd.randbytes(w) + rnd.randbytes(4)),
                          (8, 0xC0, b"\xff\xff\x02\x9a" + rnd.randbytes(4 * rnd.randrange(0, 5))),
                          (9, 0x80, rnd.randbytes(4)), (10, 0x80, rnd.randbytes(8)),
                          (16, 0xC0, rnd.randbytes(8)), (32, 0xC0, rnd.randbytes(12)),
                          (35, 0xC0, rnd.randbytes(4)), (99, 0xC0, rnd.randbytes(5)),
                          (17, 0xC0, path_value([(2, [rnd.randrange(65536, 1 << 32)])], 4)),
                          (18, 0xC0, rnd.randbytes(8))):
            if rnd.random() < 0.3:
                a.append(attr(f, t, val))
        if rnd.random() < 0.4:
            v6 = b"".join(prefix_bytes(rnd.choice((32, 48, 64)), rnd.randbytes(16), pid())
                          for _ in range(rnd.randrange(1, 4)))
            nhl = rnd.choice((16, 32))
            a.append(attr(0x80, 14, struct.pack("!HBB", 2, 1, nhl) + rnd.randbytes(nhl) + b"\0" + v6))
        if rnd.random() < 0.2:
            a.append(attr(0x80, 15, struct.pack("!HB", 2, 1)))
        a.sort(key=lambda x: x[1])
        wd = b"".join(prefix_bytes(24, rnd.randbytes(4), pid()) for _ in range(rnd.randrange(0, 2)))
        out.append((ctx, update(wd, b"".join(a), nlri)))
    out.append((CodecContext(), update()))
    return out


def _mutate(rnd: random.Random, msg: bytes) -> bytes:
    b = bytearray(msg)
    for _ in range(rnd.randrange(1, 4)):
        if not b:
            break
        op = rnd.randrange(6)
        i = rnd.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rnd.randrange(8)
        elif op == 1:
            b[rnd.randrange(16, len(b)) if len(b) > 16 else i] = rnd.randrange(256)
        elif op == 2:
            del b[i:i + rnd.randrange(1, 6)]
        elif op == 3:
            b[i:i] = rnd.randbytes(rnd.randrange(1, 6))
        elif op == 4:
            del b[i:]
        else:   # keep the message length field consistent with the new size
            j = rnd.randrange(19, len(b)) if len(b) > 19 else i
            b[j] = rnd.randrange(256)
            if len(b) >= 18:
                b[16:18] = struct.pack("!H", len(b) & 0xFFFF)
    return bytes(b)


def test_seeded_mutation_fuzz(backend):
    rnd = random.Random(20240607)
    corpus = _corpus(rnd, 200)
    for ctx, msg in corpus:
        b = decode_never_raises(backend, msg, ctx)
        assert b.error is None and b.consumed == len(msg)
    for _ in range(3000):
        ctx, msg = rnd.choice(corpus)
        bad = _mutate(rnd, msg)
        other = rnd.choice(corpus)[1]
        buf = bad if rnd.random() < 0.7 else (other + bad + other)
        decode_never_raises(backend, buf, ctx)
        read_stream(backend, buf, ctx)
