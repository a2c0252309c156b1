"""rserver.codec.records: prefix-record and ATTR_REC helpers (layout.py)."""
from __future__ import annotations

import ipaddress

import pytest

from rserver.codec.layout import NO_ATTR, REC4, REC6, CodecContext
from rserver.codec.records import (AttrRecord, attr_blob, attr_record, iter_records,
                                   pack_prefixes, prefix_str, record_count)
from rserver.codec.attrs import build_blob


def test_pack_prefixes_layout():
    r = pack_prefixes(1, ["10.0.0.0/8", ipaddress.ip_network("192.0.2.0/24")], path_ids=[1, 2], attr_idx=7)
    # attr_idx LE u32, path_id LE u32, plen, address (layout.py)
    assert r == (b"\x07\x00\x00\x00" b"\x01\x00\x00\x00" b"\x08" b"\x0a\x00\x00\x00"
                 b"\x07\x00\x00\x00" b"\x02\x00\x00\x00" b"\x18" b"\xc0\x00\x02\x00")
    r6 = pack_prefixes(2, ["2001:db8::1/32"])                     # host bits zeroed
    assert r6 == REC6.pack(NO_ATTR, 0, 32, bytes.fromhex("20010db8") + bytes(12))
    with pytest.raises(ValueError):
        pack_prefixes(1, ["2001:db8::/32"])


def test_iter_records_and_prefix_str():
    data = pack_prefixes(1, ["10.0.0.0/8", "0.0.0.0/0"], path_ids=[5, 6]) + REC4.pack(3, 0, 32, b"\x01\x02\x03\x04")
    assert list(iter_records(1, data)) == [(NO_ATTR, 5, "10.0.0.0/8"), (NO_ATTR, 6, "0.0.0.0/0"),
                                           (3, 0, "1.2.3.4/32")]
    assert record_count(1, data) == 3
    assert prefix_str(2, 48, bytes.fromhex("20010db80001") + bytes(10)) == "2001:db8:1::/48"


def test_attr_record_from_batch(backend):
    ctx = CodecContext()
    bl = build_blob(as_path=[65001, 65002], next_hop="192.0.2.1", communities=[(1, 2)])
    b = backend.decode_updates(backend.encode_announce(bl, 1, pack_prefixes(1, ["10.0.0.0/24"]), ctx), ctx)
    r = attr_record(b, 0)
    assert isinstance(r, AttrRecord)
    assert (r.off, r.len, r.afi, r.path_len, r.first_as, r.origin_as) == (0, len(bl), 1, 2, 65001, 65002)
    assert r.nh[:4] == b"\xc0\x00\x02\x01" and r.nh_len == 4 and r.pad1 == 0
    assert bl[r.comm_off:r.comm_off + r.comm_len] == b"\x00\x01\x00\x02"
    assert attr_blob(b, 0) == bl
    assert attr_record(b.attr_index, 0) == r
    with pytest.raises(IndexError):
        attr_record(b, 1)
    assert list(iter_records(1, b.v4)) == [(0, 0, "10.0.0.0/24")]
