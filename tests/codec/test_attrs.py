"""rserver.codec.attrs: AttrSet views and build_blob (docs/codec.md canonical blob)."""
from __future__ import annotations

import pytest

from rserver.codec.attrs import AttrSet, build_blob, format_as_path, iter_attributes
from rserver.codec.layout import CodecContext
from rserver.codec.records import attr_blob, pack_prefixes


def test_build_blob_golden_ipv4(backend):
    bl = build_blob(origin=0, as_path=[65001, 65002], next_hop="192.0.2.1", med=5,
                    communities=[(65001, 1), 0xFFFF029A])
    want = (b"\x40\x01\x01\x00"                                     # ORIGIN IGP
            + b"\x40\x02\x0a\x02\x02\x00\x00\xfd\xe9\x00\x00\xfd\xea"  # AS_SEQUENCE 65001 65002
            + b"\x40\x03\x04\xc0\x00\x02\x01"                        # NEXT_HOP
            + b"\x80\x04\x04\x00\x00\x00\x05"                        # MED
            + b"\xc0\x08\x08\xfd\xe9\x00\x01\xff\xff\x02\x9a")       # COMMUNITIES
    assert bl == want
    # a canonical blob survives a decode unchanged
    msgs = backend.encode_announce(bl, 1, pack_prefixes(1, ["10.0.0.0/24"]), CodecContext())
    assert attr_blob(backend.decode_updates(msgs, CodecContext()), 0) == bl


def test_build_blob_ipv6_and_rfc8950():
    bl = build_blob(as_path=[], next_hop="2001:db8::1", next_hop_ll="fe80::1")
    mp = [v for f, t, v in iter_attributes(bl) if t == 14][0]
    assert mp[:4] == b"\x00\x02\x01\x20" and mp[-1] == 0 and len(mp) == 37
    assert bl[bl.index(b"\x0e") - 1] == 0x90                       # always Extended Length
    bl1 = build_blob(as_path=[], next_hop="2001:db8::1", afi=1)
    assert [v for f, t, v in iter_attributes(bl1) if t == 14][0][:4] == b"\x00\x01\x01\x10"
    with pytest.raises(ValueError):
        build_blob(next_hop="192.0.2.1", afi=2)


def test_build_blob_extended_length_and_partial():
    comms = [(1, i) for i in range(70)]
    bl = build_blob(as_path=[1], next_hop="192.0.2.1", communities=comms, partial={8})
    f, t, v = [a for a in iter_attributes(bl) if a[1] == 8][0]
    assert f == 0xF0 and len(v) == 280                              # optional transitive, Partial, ext
    assert bl[bl.index(b"\xf0\x08"):][:4] == b"\xf0\x08\x01\x18"


def test_build_blob_unknown_rules():
    bl = build_blob(as_path=[1], next_hop="192.0.2.1", unknown=[(0xC0, 99, b"x")])
    assert bl.endswith(b"\xe0\x63\x01x")
    with pytest.raises(ValueError):
        build_blob(unknown=[(0x80, 99, b"x")])                      # non-transitive never relayed
    with pytest.raises(ValueError):
        build_blob(unknown=[(0xC0, 8, b"x")])                       # a known type
    with pytest.raises(ValueError):
        build_blob(as_path=[(2, [])])                               # empty segment


def test_attrset_from_blob_all_fields(backend):
    bl = build_blob(origin=2, as_path=[(2, [65001, 65002]), (1, [65003, 65004])],
                    next_hop="192.0.2.1", med=7, local_pref=200, atomic_aggregate=True,
                    aggregator=(400000, "198.51.100.1"), communities=[(65535, 0)],
                    large_communities=[(400000, 1, 2)], ext_communities=[b"\x00\x02" + bytes(6)],
                    originator_id="10.0.0.1", cluster_list=["10.0.0.2", "10.0.0.3"], otc=65001,
                    unknown=[(0xC0, 99, b"abc")], partial={7})
    s = AttrSet.from_blob(bl)
    assert s.origin == 2 and s.as_path == [(2, [65001, 65002]), (1, [65003, 65004])]
    assert s.next_hop == "192.0.2.1" and s.afi == 1 and s.next_hop_ll is None
    assert (s.med, s.local_pref, s.atomic_aggregate) == (7, 200, True)
    assert s.aggregator == (400000, "198.51.100.1")
    assert s.communities == [(65535, 0)] and s.large_communities == [(400000, 1, 2)]
    assert s.ext_communities == [b"\x00\x02" + bytes(6)]
    assert s.originator_id == "10.0.0.1" and s.cluster_list == ["10.0.0.2", "10.0.0.3"]
    assert s.otc == 65001 and s.unknown == [(0xE0, 99, b"abc")] and s.partial == {7}
    assert s.as_path_str() == "65001 65002 {65003,65004}"
    assert s.to_blob() == bl
    # the same set through the wire from an internal peer
    ibgp = CodecContext(ebgp=False)
    b = backend.decode_updates(backend.encode_announce(bl, 1, pack_prefixes(1, ["10.0.0.0/8"]), ibgp), ibgp)
    assert AttrSet.from_blob(attr_blob(b, 0)) == s


def test_attrset_ipv6(backend):
    bl = build_blob(as_path=[(3, [64512]), (2, [65001])], next_hop="2001:db8::1", next_hop_ll="fe80::1")
    s = AttrSet.from_blob(bl)
    assert (s.afi, s.next_hop, s.next_hop_ll) == (2, "2001:db8::1", "fe80::1")
    assert s.as_path_str() == "(64512) 65001"
    b = backend.decode_updates(backend.encode_announce(bl, 2, pack_prefixes(2, ["2001:db8::/32"]),
                                                       CodecContext()), CodecContext())
    assert AttrSet.from_blob(attr_blob(b, 0)).to_blob() == bl


def test_format_as_path():
    assert format_as_path([(2, [1, 2]), (1, [3, 4]), (3, [5, 6]), (4, [7])]) == "1 2 {3,4} (5 6) [7]"
    assert format_as_path([]) == ""


def test_iter_attributes_rejects_truncation():
    with pytest.raises(ValueError):
        list(iter_attributes(b"\x40\x01\x02\x00"))
    with pytest.raises(ValueError):
        list(iter_attributes(b"\x40\x01"))
