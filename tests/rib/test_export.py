"""The export side of the RIB (rserver/rib/export.py) on real tables, without processes.

A small harness plays the RIB process: Adj-RIB-In per peer -> Loc-RIB -> Exporter, and
decodes what each client is sent with the codec, so every assertion is about the UPDATE
bytes a client would receive.
"""
from __future__ import annotations

import ipaddress

import msgspec
import pytest

from rserver.bus.messages import SessionUp
from rserver.config import MaxPrefix
from rserver.codec import decode_updates
from rserver.codec.attrs import AttrSet, build_blob
from rserver.codec.constants import AS_TRANS
from rserver.codec.layout import ADDPATH_V4, ATTR_REC_SIZE, REC4_SIZE, CodecContext
from rserver.codec.records import pack_prefixes
from rserver.rib._tables import AdjRibIn, AttrTable, LocRib
from rserver.rib.export import Exporter, count_messages, prepend_sets


class _Peer:
    def __init__(self, pid, attrs):
        self.peer_id = pid
        self.tables = {1: AdjRibIn(1, attrs), 2: AdjRibIn(2, attrs)}


class Rib:
    """What rserver/rib/process.py does with a batch, minus the bus."""

    def __init__(self):
        self.attrs = AttrTable()
        self.locrib = {1: LocRib(1, self.attrs), 2: LocRib(2, self.attrs)}
        self.peers: dict[int, _Peer] = {}
        self.sent: list[tuple[bytes, list, int, bytes, int]] = []
        self.blocked_workers: set[bytes] = set()
        self.resets: list[int] = []
        self.ex = Exporter(self.attrs, self.locrib, self.peers, emit=self._emit,
                           blocked=lambda i: i in self.blocked_workers,
                           reset=lambda pid, why: self.resets.append(pid))
        self.ctx: dict[int, CodecContext] = {}
        self.got: dict[int, dict] = {}       # client -> {(prefix, path_id): AttrSet}
        self.log: dict[int, list] = {}       # client -> ["update"/"eor"/"borr"/"eorr"...]

    def _emit(self, identity, pids, afi, data, msgs):
        self.sent.append((identity, list(pids), afi, data, msgs))
        for pid in pids:
            self._receive(pid, data)

    def _receive(self, pid, data):
        ctx = self.ctx[pid]
        tbl = self.got.setdefault(pid, {})
        log = self.log.setdefault(pid, [])
        buf = bytes(data)
        while buf:
            n = int.from_bytes(buf[16:18], "big")
            msg, buf = buf[:n], buf[n:]
            if msg[18] == 5:
                log.append({1: "borr", 2: "eorr"}.get(msg[21], "refresh"))
                continue
            b = decode_updates(msg, ctx)
            assert not b.problems, b.problems
            if b.eor:
                log.append("eor")
            for afi, col in ((1, b.v4), (2, b.v6)):
                rs = 13 if afi == 1 else 25
                for i in range(0, len(col), rs):
                    idx = int.from_bytes(col[i:i + 4], "little")
                    path_id = int.from_bytes(col[i + 4:i + 8], "little")
                    plen = col[i + 8]
                    addr = col[i + 9:i + rs]
                    net = ipaddress.ip_network((addr, plen))
                    key = (str(net), path_id)
                    if idx == 0xFFFFFFFF:
                        tbl.pop(key, None)
                    else:
                        r = b.attr_index[idx * ATTR_REC_SIZE: (idx + 1) * ATTR_REC_SIZE]
                        off, ln = int.from_bytes(r[0:4], "little"), int.from_bytes(r[4:8], "little")
                        tbl[key] = AttrSet.from_blob(b.attr_data[off:off + ln])
            if b.v4 or b.v6:
                log.append("update")

    def up(self, pid, *, as4=True, addpath=False, prepend_as=0, enhanced=False, identity=None, max_msg=4096,
           best_n=0):
        if pid not in self.peers:
            self.peers[pid] = _Peer(pid, self.attrs)
        for lr in self.locrib.values():
            lr.set_peer(pid, 0x0A000000 + pid, bytes([127, 0, 1, pid]), pid)
        self.ctx[pid] = CodecContext(as4=as4, addpath_rx=ADDPATH_V4 if addpath else 0, max_msg=max_msg,
                                     loopback_next_hop=True)
        self.got[pid] = {}
        self.log[pid] = []
        up = SessionUp(peer_id=pid, address=f"127.0.1.{pid}", asn=64500 + pid, bgp_id=0x0A000000 + pid,
                       as4=as4, addpath_tx=ADDPATH_V4 if addpath else 0, families=[(1, 1)], max_msg=max_msg,
                       enhanced_refresh=enhanced, prepend_as=prepend_as, add_path_send_max=best_n)
        self.ex.client_up(up, identity or f"w{pid}".encode())
        self.ex.pump_all()

    def down(self, pid):
        self.ex.client_down(pid)
        self.feed(pid, self.peers[pid].tables[1].clear())

    def feed(self, pid, chg):
        out = self.locrib[1].update(pid, chg) if chg else b""
        self.ex.on_changes(1, pid, chg, out)
        self.ex.pump_all()

    def announce(self, pid, prefixes, path=(), med=None, asn=None):
        blob = build_blob(as_path=[asn or 64500 + pid, *path], next_hop=f"127.0.1.{pid}", med=med)
        recs = pack_prefixes(1, [ipaddress.ip_network(p) for p in prefixes], attr_idx=0)
        idmap = self.attrs.intern_batch(blob, _attr_rec(blob))
        self.feed(pid, self.peers[pid].tables[1].apply(recs, idmap))
        self.attrs.collect()

    def withdraw(self, pid, prefixes):
        recs = pack_prefixes(1, [ipaddress.ip_network(p) for p in prefixes])
        self.feed(pid, self.peers[pid].tables[1].apply(recs, b""))
        self.attrs.collect()

    def table(self, pid):
        return {k[0] if k[1] == 0 else k: v.as_path for k, v in self.got[pid].items()}


def _attr_rec(blob):
    """The ATTR_REC of a canonical blob, as the decoder produces it."""
    from rserver.codec import encode_announce
    msg = encode_announce(blob, 1, pack_prefixes(1, [ipaddress.ip_network("192.0.2.0/24")], attr_idx=0),
                          CodecContext())
    b = decode_updates(msg, CodecContext(loopback_next_hop=True))
    assert b.attr_data == blob
    return b.attr_index


def seq(*asns):
    return [(2, list(asns))]


@pytest.fixture
def rib():
    return Rib()


def test_rfc7947_best_second_and_never_back(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.announce(1, ["10.0.0.0/8"])
    assert rib.table(1) == {}                               # never sent back to its source
    assert rib.table(2) == {"10.0.0.0/8": seq(64501)}
    assert rib.table(3) == {"10.0.0.0/8": seq(64501)}
    rib.announce(2, ["10.0.0.0/8"], path=(65000,))          # longer: 1 stays best
    assert rib.table(1) == {"10.0.0.0/8": seq(64502, 65000)}  # the source of the best gets the second
    assert rib.table(2) == {"10.0.0.0/8": seq(64501)}
    assert rib.table(3) == {"10.0.0.0/8": seq(64501)}
    rib.withdraw(1, ["10.0.0.0/8"])
    assert rib.table(1) == {"10.0.0.0/8": seq(64502, 65000)}
    assert rib.table(2) == {}                               # its own path is all that is left
    assert rib.table(3) == {"10.0.0.0/8": seq(64502, 65000)}
    rib.withdraw(2, ["10.0.0.0/8"])
    assert rib.table(1) == rib.table(2) == rib.table(3) == {}


def test_attributes_pass_unchanged(rib):
    rib.up(1)
    rib.up(2)
    blob = build_blob(as_path=[64501, 65001], next_hop="127.0.1.1", med=7, communities=[(65000, 1)],
                      large_communities=[(64501, 1, 2)], unknown=[(0xC0, 99, b"\x01\x02")])
    idmap = rib.attrs.intern_batch(blob, _attr_rec(blob))
    rib.feed(1, rib.peers[1].tables[1].apply(pack_prefixes(1, [ipaddress.ip_network("10.0.0.0/8")], attr_idx=0), idmap))
    a = rib.got[2][("10.0.0.0/8", 0)]
    assert a.as_path == seq(64501, 65001) and a.next_hop == "127.0.1.1" and a.med == 7
    assert a.communities == [(65000, 1)] and a.large_communities == [(64501, 1, 2)]
    assert a.unknown == [(0xE0, 99, b"\x01\x02")]              # optional transitive: Partial set


def test_initial_table_then_end_of_rib(rib):
    rib.up(1)
    rib.announce(1, ["10.0.0.0/8", "10.1.0.0/16"])
    rib.up(2)
    assert rib.table(2) == {"10.0.0.0/8": seq(64501), "10.1.0.0/16": seq(64501)}
    assert rib.log[2] == ["update", "eor"]
    assert rib.log[1] == ["eor"]                               # an empty table: End-of-RIB alone


def test_source_down_withdraws_from_everyone(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.announce(1, ["10.0.0.0/8"])
    rib.down(1)
    assert rib.table(2) == rib.table(3) == {}


def test_update_group_encodes_once_for_members_on_one_worker(rib):
    rib.up(1)
    rib.up(2, identity=b"w9")
    rib.up(3, identity=b"w9")
    rib.sent.clear()
    encodes = rib.ex.stats["encodes"]
    rib.announce(1, ["10.0.0.0/8"])
    assert rib.ex.stats["encodes"] == encodes + 1
    assert [(s[0], sorted(s[1])) for s in rib.sent] == [(b"w9", [2, 3])]


def test_prepend_rs_as_only_for_that_client(rib):
    rib.up(1)
    rib.up(2, prepend_as=64500)
    rib.up(3)
    rib.announce(1, ["10.0.0.0/8"])
    assert rib.table(2) == {"10.0.0.0/8": seq(64500, 64501)}
    assert rib.table(3) == {"10.0.0.0/8": seq(64501)}


def test_prepend_blob_grows_segment_and_keeps_mp_reach():
    blob = build_blob(as_path=[64501], next_hop="2001:db8::1", afi=2)
    rec = bytearray(ATTR_REC_SIZE)
    rec[4:8] = len(blob).to_bytes(4, "little")
    data, index = prepend_sets(blob, bytes(rec), 64500)
    a = AttrSet.from_blob(data)
    assert a.as_path == seq(64500, 64501) and a.next_hop == "2001:db8::1"
    assert int.from_bytes(index[4:8], "little") == len(data)
    mp = int.from_bytes(index[92:96], "little")
    assert data[mp + 1] == 14


def test_two_octet_client_gets_as_trans_and_as4_path(rib):
    rib.up(1)
    rib.up(2, as4=False)
    rib.announce(1, ["10.0.0.0/8"], path=(4200000000,))
    # decoded with as4=False the codec merges AS_PATH and AS4_PATH back (RFC 6793 §4.2.3)
    assert rib.table(2) == {"10.0.0.0/8": seq(64501, 4200000000)}
    msg = [s for s in rib.sent if 2 in s[1]][-1][3]
    assert AS_TRANS.to_bytes(2, "big") in msg and b"\xc0\x11" in msg      # AS4_PATH present


def test_add_path_client_gets_every_path_but_its_own(rib):
    for pid in (1, 2):
        rib.up(pid)
    rib.up(3, addpath=True)
    rib.announce(1, ["10.0.0.0/8"])
    rib.announce(2, ["10.0.0.0/8"], path=(65000,))
    rib.announce(3, ["10.0.0.0/8"])
    got = {k: v.as_path for k, v in rib.got[3].items()}
    assert got == {("10.0.0.0/8", 1): seq(64501), ("10.0.0.0/8", 2): seq(64502, 65000)}
    rib.withdraw(1, ["10.0.0.0/8"])
    assert {k: v.as_path for k, v in rib.got[3].items()} == {("10.0.0.0/8", 2): seq(64502, 65000)}


def _paths(rib, pid):
    return {k: v.as_path for k, v in rib.got[pid].items()}


def test_add_path_best_n(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.announce(1, ["10.0.0.0/8"])
    rib.announce(2, ["10.0.0.0/8"], path=(65000,))
    rib.announce(3, ["10.0.0.0/8"], path=(65000, 65001))
    rib.up(4, addpath=True, best_n=2)                        # initial table: the best two
    assert _paths(rib, 4) == {("10.0.0.0/8", 1): seq(64501), ("10.0.0.0/8", 2): seq(64502, 65000)}
    rib.withdraw(1, ["10.0.0.0/8"])                          # the third moves up
    assert _paths(rib, 4) == {("10.0.0.0/8", 2): seq(64502, 65000), ("10.0.0.0/8", 3): seq(64503, 65000, 65001)}
    rib.announce(3, ["10.0.0.0/8"])                          # 3 becomes the best: same two paths
    assert _paths(rib, 4) == {("10.0.0.0/8", 2): seq(64502, 65000), ("10.0.0.0/8", 3): seq(64503)}
    rib.announce(4, ["10.0.0.0/8"])                          # its own path is never among them
    assert set(_paths(rib, 4)) == {("10.0.0.0/8", 2), ("10.0.0.0/8", 3)}
    listed = rib.ex.adj_rib_out(4, 1)
    assert len(listed) == 2 * REC4_SIZE


def test_add_path_best_n_blocked_client_catches_up(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.up(4, addpath=True, best_n=1)
    rib.announce(1, ["10.0.0.0/8"], path=(65000,))
    assert _paths(rib, 4) == {("10.0.0.0/8", 1): seq(64501, 65000)}
    rib.ex.set_xoff(4, True)
    rib.announce(2, ["10.0.0.0/8"])                          # better: replaces 1 in the best 1
    rib.announce(3, ["10.1.0.0/16"])
    assert _paths(rib, 4) == {("10.0.0.0/8", 1): seq(64501, 65000)}
    rib.ex.set_xoff(4, False)
    rib.ex.pump_all()
    assert _paths(rib, 4) == {("10.0.0.0/8", 2): seq(64502), ("10.1.0.0/16", 3): seq(64503)}


def test_slow_client_catches_up_with_the_current_state(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.announce(1, ["10.0.0.0/8", "10.1.0.0/16"])
    rib.ex.set_xoff(3, True)                                # its worker says its TCP queue is full
    rib.withdraw(1, ["10.0.0.0/8"])
    rib.announce(2, ["10.2.0.0/16"])
    rib.announce(1, ["10.1.0.0/16"], path=(65001,))
    assert rib.table(3) == {"10.0.0.0/8": seq(64501), "10.1.0.0/16": seq(64501)}   # nothing meanwhile
    assert rib.table(2) == {"10.1.0.0/16": seq(64501, 65001)}                        # others not held up
    rib.ex.set_xoff(3, False)
    rib.ex.pump_all()
    assert rib.table(3) == {"10.1.0.0/16": seq(64501, 65001), "10.2.0.0/16": seq(64502)}
    rib.announce(2, ["10.3.0.0/16"])                        # live again
    assert "10.3.0.0/16" in rib.table(3)


def test_blocked_worker_stream_pauses_its_clients(rib):
    rib.up(1)
    rib.up(2)
    rib.blocked_workers.add(b"w2")
    rib.ex.worker_paused(b"w2", True)
    rib.announce(1, ["10.0.0.0/8"])
    assert rib.table(2) == {}
    rib.blocked_workers.clear()
    rib.ex.worker_paused(b"w2", False)
    rib.ex.pump_all()
    assert rib.table(2) == {"10.0.0.0/8": seq(64501)}


def test_dirty_prefixes_are_bounded_by_the_table(rib):
    rib.up(1)
    rib.up(2)
    rib.ex.dirty_min = 4
    rib.ex.set_xoff(2, True)
    for i in range(40):                                     # churn on one prefix
        rib.announce(1, ["10.0.0.0/8"], med=i)
    c = rib.ex.clients[2]
    held = sum(len(x) if isinstance(x, bytes) else len(x[1]) for x in c.dirty[1])
    assert held <= 2 * 4 * 53 + 53                          # reduced to distinct prefixes on the way
    rib.ex.set_xoff(2, False)
    rib.ex.pump_all()
    assert rib.got[2][("10.0.0.0/8", 0)].med == 39


def test_route_refresh_enhanced_has_borr_and_eorr(rib):
    rib.up(1)
    rib.up(2, enhanced=True)
    rib.announce(1, ["10.0.0.0/8"])
    rib.log[2].clear()
    assert rib.ex.refresh(2, 1)
    rib.ex.pump_all()
    assert rib.log[2] == ["borr", "update", "eorr"]
    assert rib.table(2) == {"10.0.0.0/8": seq(64501)}


def test_route_refresh_plain_resends(rib):
    rib.up(1)
    rib.up(2)
    rib.announce(1, ["10.0.0.0/8"])
    rib.got[2].clear()
    rib.log[2].clear()
    assert rib.ex.refresh(2, 1)
    rib.ex.pump_all()
    assert rib.log[2] == ["update"] and rib.table(2) == {"10.0.0.0/8": seq(64501)}
    assert not rib.ex.refresh(99, 1)


def test_adj_rib_out_matches_what_was_sent(rib):
    for pid in (1, 2, 3):
        rib.up(pid)
    rib.announce(1, ["10.0.0.0/8", "10.1.0.0/16"])
    rib.announce(2, ["10.0.0.0/8"], path=(65000,))
    for pid in (1, 2, 3):
        out = rib.ex.adj_rib_out(pid, 1)
        listed = {str(ipaddress.ip_network((bytes(addr), plen))) for plen, _pid, addr in
                  ((r[8], 0, r[9:13]) for r in (out[i:i + REC4_SIZE] for i in range(0, len(out), REC4_SIZE)))}
        assert listed == set(rib.table(pid))
    assert rib.ex.adj_rib_out(99, 1) is None


def test_catch_up_in_chunks(rib):
    rib.ex.chunk = 3
    rib.up(1)
    rib.announce(1, [f"10.{i}.0.0/16" for i in range(10)])
    rib.up(2)
    assert len(rib.table(2)) == 10 and rib.log[2][-1] == "eor"
    assert rib.log[2].count("update") >= 4


def test_same_session_announced_again_changes_nothing(rib):
    rib.up(1)
    rib.announce(1, ["10.0.0.0/8"])
    rib.up(2)
    c = rib.ex.clients[2]
    rib.sent.clear()
    up = msgspec.structs.replace(c.up, max_prefix=MaxPrefix(ipv4=10))     # e.g. reload: new limits
    assert rib.ex.client_up(up, c.identity) is c
    rib.ex.pump_all()
    assert rib.sent == []
    up2 = msgspec.structs.replace(c.up, max_msg=65535)                    # a new session: new table
    assert rib.ex.client_up(up2, c.identity) is not c
    rib.ex.pump_all()
    assert [s[1] for s in rib.sent] == [[2], [2]]                         # the table, End-of-RIB


def test_count_messages():
    from rserver.codec import encode_eor
    assert count_messages(encode_eor(1, 1) * 3 + encode_eor(2, 1)) == 4
    assert count_messages(b"") == 0
