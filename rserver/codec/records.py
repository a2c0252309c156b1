"""Helpers around the packed prefix-record and ATTR_REC layouts (layout.py).

Not for the hot path: tests, the CLI, logging and tools use these to build and read
the columns the codec produces and consumes.
"""
from __future__ import annotations

import ipaddress
from collections import namedtuple
from typing import Iterable, Iterator, Optional, Sequence, Union

from .layout import ATTR_FIELDS, ATTR_REC, ATTR_REC_SIZE, NO_ATTR, REC4, REC6, rec_size

__all__ = ["pack_prefixes", "iter_records", "prefix_str", "attr_record", "attr_blob",
           "AttrRecord", "record_count"]

Prefix = Union[str, ipaddress.IPv4Network, ipaddress.IPv6Network]

# namedtuple field names cannot start with "_": the padding fields become pad1/pad2
AttrRecord = namedtuple("AttrRecord", [f.lstrip("_") for f in ATTR_FIELDS])


def _network(afi: int, p: Prefix):
    net = ipaddress.ip_network(p, strict=False) if not isinstance(
        p, (ipaddress.IPv4Network, ipaddress.IPv6Network)) else p
    if net.version != (4 if afi == 1 else 6):
        raise ValueError(f"{p} is not an AFI {afi} prefix")
    return net


def pack_prefixes(afi: int, prefixes: Iterable[Prefix], path_ids: Optional[Sequence[int]] = None,
                  attr_idx: int = NO_ATTR) -> bytes:
    """Prefix records for `prefixes` ("10.0.0.0/8" or ipaddress networks; host bits
    are zeroed), with optional per-prefix path ids and one attr_idx for all."""
    st = REC4 if afi == 1 else REC6
    out = []
    for i, p in enumerate(prefixes):
        net = _network(afi, p)
        pid = path_ids[i] if path_ids is not None else 0
        out.append(st.pack(attr_idx, pid, net.prefixlen, net.network_address.packed))
    return b"".join(out)


def prefix_str(afi: int, plen: int, addr: bytes) -> str:
    """'10.0.0.0/8' / '2001:db8::/32' from a record's address bytes."""
    if afi == 1:
        return f"{ipaddress.IPv4Address(bytes(addr[:4]))}/{plen}"
    return f"{ipaddress.IPv6Address(bytes(addr[:16]))}/{plen}"


def record_count(afi: int, data: bytes) -> int:
    return len(data) // rec_size(afi)


def iter_records(afi: int, data: bytes) -> Iterator[tuple[int, int, str]]:
    """Yield (attr_idx, path_id, prefix_str) for each record of a column."""
    st = REC4 if afi == 1 else REC6
    for idx, pid, plen, addr in st.iter_unpack(bytes(data)):
        yield idx, pid, prefix_str(afi, plen, addr)


def attr_record(batch, i: int) -> AttrRecord:
    """ATTR_REC number `i` of an UpdateBatch (or of an attr_index bytes object)."""
    index = batch.attr_index if hasattr(batch, "attr_index") else batch
    if not 0 <= i < len(index) // ATTR_REC_SIZE:
        raise IndexError(f"attribute set {i} out of range")
    return AttrRecord(*ATTR_REC.unpack_from(index, i * ATTR_REC_SIZE))


def attr_blob(batch, i: int) -> bytes:
    """The canonical blob of attribute set `i` of an UpdateBatch."""
    r = attr_record(batch, i)
    return bytes(batch.attr_data[r.off:r.off + r.len])
