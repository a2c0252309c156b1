"""rserver.lab.speaker.Speaker, speaker to speaker on loopback (127.0.1.x).

One passive speaker listens on its own 127.0.1.N address, one active speaker connects to it
from another; each test runs its own event loop, bounded by asyncio timeouts.
"""
from __future__ import annotations

import asyncio
import itertools


from rserver.codec import decode_updates
from rserver.codec.layout import CodecContext
from rserver.lab.speaker import BGPSessionError, Speaker

_addr = itertools.count(200)


def _pair_addrs():
    a, b = next(_addr), next(_addr)
    assert b < 250
    return f"127.0.1.{a}", f"127.0.1.{b}"


async def _pair(pkw=None, akw=None, timeout=5.0):
    pa, aa = _pair_addrs()
    pkw, akw = dict(pkw or {}), dict(akw or {})
    p = Speaker(pa, pkw.pop("local_as", 64501), pa, aa, 0, passive=True, **pkw)
    port = await p.listen()
    a = Speaker(aa, akw.pop("local_as", 64502), aa, pa, port, **akw)
    await asyncio.gather(p.connect(timeout), a.connect(timeout))
    return p, a


def run(coro, timeout=15.0):
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


def test_session_up_and_negotiation():
    async def t():
        p, a = await _pair({"hold_time": 30}, {"hold_time": 9, "add_path_rx": True})
        try:
            assert p.established and a.established
            assert a.negotiated_hold == p.negotiated_hold == 9
            assert a.ctx.as4 and a.ctx.max_msg == 65535
            assert a.ctx.addpath_rx == 0          # the passive one did not offer Send
            assert a.peer_open.asn == 64501 and p.peer_open.asn == 64502
        finally:
            await a.close("bye")
        await p.wait_for(lambda: p.state == "closed", 3)
        assert p.last_notification[:2] == (6, 2)
        assert b"bye" in p.last_notification[2]
    run(t())


def test_wrong_peer_as_is_refused():
    async def t():
        pa, aa = _pair_addrs()
        p = Speaker(pa, 64501, pa, aa, 0, passive=True)
        port = await p.listen()
        a = Speaker(aa, 64502, aa, pa, port, peer_as=65000)
        res = await asyncio.gather(p.connect(5), a.connect(5), return_exceptions=True)
        assert isinstance(res[1], BGPSessionError) and res[1].sent
        assert isinstance(res[0], BGPSessionError)
        assert p.last_notification[:2] == (2, 2)
    run(t())


def test_announce_withdraw_eor_refresh():
    async def t():
        p, a = await _pair({"enhanced_refresh": True}, {"enhanced_refresh": True})
        try:
            await a.announce(["198.51.100.0/24", "203.0.113.0/25"],
                             attrs={"as_path": [64502, 65010], "next_hop": "192.0.2.7", "med": 50,
                                    "communities": [(64500, 1)], "large_communities": [(64500, 1, 2)]})
            await a.announce(["2001:db8:1::/48"], attrs={"as_path": [64502], "next_hop": "2001:db8::7"})
            await a.send_eor(1)
            await a.send_eor(2)
            await p.wait_for(lambda: {1, 2} <= p.eor_received, 5)
            assert p.count(1) == 2 and p.count(2) == 1
            r = p.route_attrs("198.51.100.0/24")
            assert r.as_path == [(2, [64502, 65010])] and r.next_hop == "192.0.2.7"
            assert r.med == 50 and r.communities == [(64500, 1)] and r.large_communities == [(64500, 1, 2)]
            assert p.route_attrs("2001:db8:1::/48").next_hop == "2001:db8::7"
            await a.withdraw(["203.0.113.0/25", "2001:db8:1::/48"])
            await p.wait_for(lambda: p.count(1) == 1 and p.count(2) == 0, 5)
            assert p.withdrawals == 2
            assert set(p.routes(1)) == {(1, "198.51.100.0/24", 0)}
            # route refresh request, then an enhanced refresh cycle back
            await a.send_route_refresh(1)
            await p.wait_for(lambda: p.refresh_requests, 5)
            assert p.refresh_requests == [(1, 1)]
            await p.send_route_refresh(1, 1)
            await p.announce(["192.0.2.0/24"], attrs={"as_path": [64501], "next_hop": "192.0.2.1"})
            await p.send_route_refresh(1, 2)
            await a.wait_for(lambda: 1 in a.eorr_received, 5)
            assert a.borr_received == {1} and a.count(1) == 1
        finally:
            await a.close()
            await p.close()
    run(t())


def test_two_octet_as_mode():
    async def t():
        p, a = await _pair({}, {"as4": False, "local_as": 65002})
        try:
            assert not a.ctx.as4 and not p.ctx.as4
            assert p.peer_open.asn == 65002
            # 4-octet AS in the path: sent as AS_TRANS + AS4_PATH, merged back on receive
            await a.announce(["198.51.100.0/24"], attrs={"as_path": [65002, 4200000001], "next_hop": "192.0.2.9"})
            await p.wait_count(1, 1, 5)
            assert p.route_attrs("198.51.100.0/24").as_path == [(2, [65002, 4200000001])]
        finally:
            await a.close()
            await p.close()
    run(t())


def test_add_path():
    async def t():
        p, a = await _pair({"add_path_rx": True}, {"add_path_tx": True})
        try:
            assert p.ctx.addpath_rx == 3 and a.ctx.addpath_tx == 3     # IPv4 and IPv6
            assert a.ctx.addpath_rx == 0 and p.ctx.addpath_tx == 0
            await a.announce(["198.51.100.0/24"], attrs={"as_path": [64502, 1], "next_hop": "192.0.2.1"},
                             path_ids=[1])
            await a.announce(["198.51.100.0/24"], attrs={"as_path": [64502, 2], "next_hop": "192.0.2.2"},
                             path_ids=[2])
            await p.wait_count(1, 2, 5)
            assert p.route_attrs("198.51.100.0/24", 2).next_hop == "192.0.2.2"
            assert p.count_prefixes(1) == 1
            await a.withdraw(["198.51.100.0/24"], path_ids=[1])
            await p.wait_for(lambda: p.count(1) == 1, 5)
            assert set(p.routes()) == {(1, "198.51.100.0/24", 2)}
        finally:
            await a.close()
            await p.close()
    run(t())


def test_count_mode_tablegen():
    from bench.tablegen import generate_v4
    t10k = generate_v4(10_000, seed=1)
    ref = decode_updates(t10k.wire, CodecContext())
    assert ref.consumed == len(t10k.wire)

    async def t():
        p, a = await _pair({"keep": "count", "coalesce": 0.01}, {"keep": "none"})
        try:
            await a.send_raw(t10k.wire)
            await a.send_eor(1)
            await p.wait_eor(1, 10)
            assert p.count(1) == 10_000 and p.count_prefixes(1) == 10_000
            assert p.updates_received == t10k.n_messages + 1
            # withdraw 100 of them again, counted without per-prefix objects
            await a.send_raw(_withdraw_first(ref.v4, 100))
            await p.wait_for(lambda: p.count(1) == 9_900, 5)
            assert p.withdrawals == 100
        finally:
            await a.close()
            await p.close()
    run(t())


def _withdraw_first(v4: bytes, n: int) -> bytes:
    from rserver.codec import encode_withdraw
    return encode_withdraw(1, v4[:13 * n], CodecContext())
