"""UPDATE codec throughput on a realistic full table, both backends (bench/README.md).

    python -m pytest bench/test_codec_bench.py --benchmark-only -p no:cacheprovider

decode: decode_updates(table.wire, CodecContext()) — the whole table's UPDATE stream in one call.
encode: encode_batch(attr_data, attr_index, records, afi, CodecContext()) of the decoded batch —
        the whole table back into UPDATE messages in one call.
"""
from __future__ import annotations

import pytest

from bench.memory import maxrss_mb, reset_peak, rss_mb

try:
    from rserver.codec import BACKENDS
    from rserver.codec.layout import CodecContext
    _IMPORT_ERROR = None
except ImportError as e:  # the codec is being written; say so instead of erroring
    BACKENDS, _IMPORT_ERROR = {}, e

# rounds per backend: the pure one is slow (≈ seconds per round on 1M prefixes)
ROUNDS = {"pure": 3, "cython": 5}
WARMUP = {"pure": 0, "cython": 1}
FAMILIES = {"ipv4": (1, "v4", 13), "ipv6": (2, "v6", 25)}

_decoded: dict = {}     # (backend, family) -> UpdateBatch, shared by the encode benchmarks


def _backend(name):
    if _IMPORT_ERROR is not None:
        pytest.skip(f"rserver.codec cannot be imported yet: {_IMPORT_ERROR}")
    mod = BACKENDS[name]
    if mod is None:
        pytest.fail("the compiled codec rserver.codec._cupdate is not built "
                    "(pip install -e . --no-build-isolation builds it)")
    return mod


def _strip_idx(col: bytes, size: int) -> bytes:
    """A prefix column without its attr_idx field (compare prefixes across batches)."""
    mv = memoryview(col)
    return b"".join(mv[i + 4:i + size] for i in range(0, len(col), size))


def _run(benchmark, record_result, backend, op, family, n, fn, *args):
    benchmark.group = f"{op} {family}"
    benchmark.extra_info.update(backend=backend, operation=op, family=family, prefixes=n)
    reset_peak()
    before = rss_mb()
    result = benchmark.pedantic(fn, args=args, rounds=ROUNDS[backend], iterations=1,
                                warmup_rounds=WARMUP[backend])
    peak = maxrss_mb()
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(prefixes_per_s=n / mean, peak_rss_mb=round(peak, 1),
                                op_rss_mb=round(peak - before, 1))
    record_result(backend=backend, operation=op, family=family, prefixes=n, mean_s=mean,
                  peak_mb=peak, delta_mb=peak - before)
    print(f"\n{backend} {op} {family}: {n / mean:,.0f} prefixes/s, mean {mean:.4f} s, "
          f"peak RSS {peak:.1f} MB (+{peak - before:.1f} MB over the {before:.1f} MB before)")
    return result


def _decode(mod, family, table):
    key = (mod.__name__, family)
    if key not in _decoded:
        _decoded[key] = mod.decode_updates(table.wire, CodecContext())
    return _decoded[key]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("backend", ["cython", "pure"])
def test_decode(benchmark, record_result, tables, backend, family):
    mod = _backend(backend)
    t = tables[family]
    afi, col, size = FAMILIES[family]
    batch = _run(benchmark, record_result, backend, "decode", family, t.n_prefixes,
                 mod.decode_updates, t.wire, CodecContext())
    assert batch.error is None and batch.problems == []
    assert batch.consumed == len(t.wire) and batch.messages == t.n_messages
    assert len(getattr(batch, col)) == t.n_prefixes * size
    benchmark.extra_info["attrsets"] = batch.n_attrsets
    _decoded[(mod.__name__, family)] = batch


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("backend", ["cython", "pure"])
def test_encode(benchmark, record_result, tables, backend, family):
    mod = _backend(backend)
    t = tables[family]
    afi, col, size = FAMILIES[family]
    batch = _decode(mod, family, t)
    records = getattr(batch, col)
    ctx = CodecContext()
    out = _run(benchmark, record_result, backend, "encode", family, t.n_prefixes,
               mod.encode_batch, batch.attr_data, batch.attr_index, records, afi, ctx)
    # what was encoded decodes back to the same prefixes, in the same order
    back = mod.decode_updates(out, ctx)
    assert back.error is None and back.problems == []
    assert back.consumed == len(out)
    assert _strip_idx(getattr(back, col), size) == _strip_idx(records, size)
    benchmark.extra_info.update(messages=back.messages, bytes=len(out),
                                same_bytes_as_input=out == t.wire)
