"""OPEN validation and capability negotiation (rserver.session.negotiate)."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from rserver.codec.constants import (
    ADDPATH_BOTH, ADDPATH_RECEIVE, ADDPATH_SEND, AS_TRANS, ROLE_CUSTOMER, ROLE_PEER,
    ROLE_PROVIDER, ROLE_RS, ROLE_RS_CLIENT,
)
from rserver.codec.layout import ADDPATH_V4, ADDPATH_V6, CodecContext
from rserver.codec.messages import (
    AddPathCap, EnhancedRouteRefreshCap, ExtendedMessageCap, FourOctetASCap, GracefulRestartCap,
    MultiprotocolCap, Open, RoleCap, RouteRefreshCap, UnknownCapability, decode_message, encode_open,
)
from rserver.session.negotiate import (
    LocalSettings, Negotiated, OpenError, build_open, check_open, codec_context, negotiate,
    negotiate_hold_time, process_open,
)

V4 = (1, 1)
V6 = (2, 1)

# seed 000: our side is AS 4200000002 / id 2, the peer AS 4200000001 / id 1
SEED_LOCAL = dict(local_as=4200000002, bgp_id=2, peer_as=4200000001, hold_time=6)


def seed_open(**kw) -> Open:
    """The OPEN r1 sent in seed 000."""
    caps = [MultiprotocolCap(1, 1), RouteRefreshCap(), FourOctetASCap(4200000001),
            AddPathCap(((1, 1, ADDPATH_RECEIVE),))]
    o = Open(version=4, my_as=AS_TRANS, hold_time=6, bgp_id=1, capabilities=caps)
    for k, v in kw.items():
        setattr(o, k, v)
    return o


def local(**kw) -> LocalSettings:
    return LocalSettings(**{**SEED_LOCAL, **kw})


def err(res) -> tuple[int, int]:
    assert isinstance(res, OpenError), res
    return res.code, res.subcode


# --- the seed 000 OPEN ------------------------------------------------------------------------

def test_seed000_open_negotiates():
    res = process_open(seed_open(), local())
    assert isinstance(res, Negotiated)
    assert res.peer_as == 4200000001 and res.peer_id == 1
    assert res.as4 and res.ebgp
    assert res.families == (V4,)            # we offer v4 + v6, the peer only v4
    assert res.route_refresh and not res.enhanced_route_refresh
    assert res.addpath_rx == () and res.addpath_tx == ()    # we configured no ADD-PATH
    assert res.hold_time == 6 and res.keepalive_time == 2.0
    assert not res.extended_message and res.graceful_restart is None
    assert res.peer_capabilities == (1, 2, 65, 69)
    assert codec_context(res) == CodecContext(as4=True, addpath_rx=0, addpath_tx=0, max_msg=4096, ebgp=True)


def test_codec_context_loopback_next_hop_propagates():
    """[global] loopback_next_hop is not negotiated: codec_context takes it as given, and a
    PeerRunner of a server with loopback_next_hop = true decodes with the flag."""
    from rserver.config import BUILTIN, GlobalConfig, NeighborConfig
    from rserver.session.fsm import SessionUp
    from rserver.session.peer import PeerRunner

    res = process_open(seed_open(), local())
    assert codec_context(res).loopback_next_hop is False
    on = codec_context(res, loopback_next_hop=True)
    assert on == CodecContext(as4=True, addpath_rx=0, addpath_tx=0, max_msg=4096, ebgp=True,
                              loopback_next_hop=True)
    for flag in (False, True):
        g = GlobalConfig(local_as=4200000002, router_id="0.0.0.2", listen=("127.0.0.1",), port=179,
                         run_dir="/tmp", log_format="human", log_level="info", session_workers=0,
                         loopback_next_hop=flag)
        n = NeighborConfig(address="127.0.1.1", asn=4200000001, name="r1", description="", group=None,
                           **BUILTIN)
        r = PeerRunner(n, g)
        r._session_up(SessionUp(conn="c1", negotiated=res))
        assert r.ctx == codec_context(res, loopback_next_hop=flag)
        assert r.ctx.loopback_next_hop is flag


def test_seed000_addpath_receive_means_we_may_send():
    # the peer can receive path ids for v4; if we can send them, we send them (RFC 7911 §4)
    res = process_open(seed_open(), local(addpath=((1, 1, ADDPATH_SEND),)))
    assert res.addpath_tx == (V4,) and res.addpath_rx == ()
    assert codec_context(res).addpath_tx == ADDPATH_V4
    # the peer does not send path ids, so our Receive does not matter
    res = process_open(seed_open(), local(addpath=((1, 1, ADDPATH_RECEIVE),)))
    assert res.addpath_tx == () and res.addpath_rx == ()


def test_build_open_reproduces_seed000_bytes():
    """Our OPEN for the seed's settings is byte for byte what the seed's router sent."""
    s = local(families=(V4,), addpath=((1, 1, ADDPATH_RECEIVE),), enhanced_route_refresh=False,
              extended_message=False, graceful_restart=False)
    seed = bytes([0xff] * 16 + [0, 0x33, 1, 4, 0x5b, 0xa0, 0, 6, 0, 0, 0, 2, 0x16, 2, 0x14, 1, 4, 0, 1, 0,
                                1, 2, 0, 0x41, 4, 0xfa, 0x56, 0xea, 2, 0x45, 4, 0, 1, 1, 1])
    assert encode_open(build_open(s)) == seed


def test_build_open_round_trips_and_negotiates_with_itself():
    a = LocalSettings(local_as=65001, bgp_id=0x0A000001, peer_as=65002, role=ROLE_RS,
                      addpath=((1, 1, ADDPATH_BOTH),))
    b = LocalSettings(local_as=65002, bgp_id=0x0A000002, peer_as=65001, role=ROLE_RS_CLIENT,
                      addpath=((1, 1, ADDPATH_RECEIVE),))
    open_a, _ = decode_message(encode_open(build_open(a)))
    assert open_a.my_as == 65001            # fits in 2 octets: the real AS, not AS_TRANS
    res = process_open(open_a, b)           # b receives a's OPEN
    assert isinstance(res, Negotiated)
    assert res.families == (V4, V6) and res.extended_message and res.enhanced_route_refresh
    assert res.addpath_rx == (V4,) and res.addpath_tx == ()
    assert res.peer_role == ROLE_RS and res.local_role == ROLE_RS_CLIENT
    assert res.graceful_restart is not None and res.graceful_restart.forwarding == ()
    assert codec_context(res).max_msg == 65535


def test_build_open_uses_as_trans_for_4_octet_as():
    o = build_open(local())
    assert o.my_as == AS_TRANS and o.asn == 4200000002


# --- checks, one by one ------------------------------------------------------------------------

@pytest.mark.parametrize("version", [0, 3, 5, 255])
def test_unsupported_version(version):
    res = process_open(seed_open(version=version), local())
    assert err(res) == (2, 1) and res.data == b"\x00\x04"


def test_peer_as_mismatch():
    assert err(process_open(seed_open(), local(peer_as=4200000009))) == (2, 2)


def test_any_peer_as_when_not_configured():
    assert isinstance(process_open(seed_open(), local(peer_as=None)), Negotiated)


def test_as_trans_without_capability_is_bad_peer_as():
    o = seed_open(capabilities=[MultiprotocolCap(1, 1)])
    res = process_open(o, local(peer_as=None))
    assert err(res) == (2, 2) and "AS_TRANS" in res.reason


def test_as4_capability_contradicting_2_octet_my_as():
    o = seed_open(my_as=65002, capabilities=[FourOctetASCap(65001)])
    assert err(process_open(o, local(peer_as=None))) == (2, 2)
    # a 4-octet AS with a My AS that is not AS_TRANS contradicts as well
    o = seed_open(my_as=65002, capabilities=[FourOctetASCap(4200000001)])
    assert err(process_open(o, local(peer_as=None))) == (2, 2)


def test_as4_capability_agreeing_with_my_as():
    o = seed_open(my_as=65001, capabilities=[FourOctetASCap(65001)])
    res = process_open(o, local(peer_as=65001))
    assert isinstance(res, Negotiated) and res.peer_as == 65001 and res.as4


def test_2_octet_peer_without_capability():
    o = seed_open(my_as=65001, capabilities=[])
    res = process_open(o, local(peer_as=65001))
    assert isinstance(res, Negotiated) and not res.as4 and res.peer_as == 65001
    assert codec_context(res).as4 is False


@pytest.mark.parametrize("my_as,caps", [(0, []), (AS_TRANS, [FourOctetASCap(0)]),
                                        (AS_TRANS, [FourOctetASCap(AS_TRANS)]),
                                        (AS_TRANS, [FourOctetASCap(1), FourOctetASCap(2)])])
def test_reserved_or_conflicting_as(my_as, caps):
    assert err(process_open(seed_open(my_as=my_as, capabilities=caps), local(peer_as=None))) == (2, 2)


def test_bgp_id_zero():
    assert err(process_open(seed_open(bgp_id=0), local())) == (2, 3)


def test_bgp_id_equal_to_ours_ebgp_allowed_ibgp_refused():
    # RFC 6286 §2.2: unique within an AS only
    assert isinstance(process_open(seed_open(bgp_id=2), local()), Negotiated)
    o = seed_open(bgp_id=2, capabilities=[FourOctetASCap(4200000002)])
    assert err(process_open(o, local(peer_as=4200000002))) == (2, 3)


@pytest.mark.parametrize("hold", [1, 2])
def test_hold_time_1_or_2_refused(hold):
    assert err(process_open(seed_open(hold_time=hold), local())) == (2, 6)


def test_hold_time_zero():
    res = process_open(seed_open(hold_time=0), local())
    assert res.hold_time == 0 and res.keepalive_time == 0
    assert err(process_open(seed_open(hold_time=0), local(accept_zero_hold=False))) == (2, 6)


def test_hold_time_below_configured_minimum():
    assert err(process_open(seed_open(hold_time=5), local(min_hold_time=10))) == (2, 6)
    assert isinstance(process_open(seed_open(hold_time=3), local()), Negotiated)


@pytest.mark.parametrize("ours,theirs,hold,ka", [(90, 30, 30, 10.0), (30, 90, 30, 10.0), (90, 0, 0, 0.0),
                                                 (0, 90, 0, 0.0), (90, 3, 3, 1.0), (240, 240, 240, 80.0)])
def test_hold_time_negotiation(ours, theirs, hold, ka):
    assert negotiate_hold_time(ours, theirs) == (hold, ka)
    res = process_open(seed_open(hold_time=theirs), local(hold_time=ours))
    assert (res.hold_time, res.keepalive_time) == (hold, ka)


# --- roles (RFC 9234 §4.2) ------------------------------------------------------------------------

ALLOWED = {(ROLE_PROVIDER, ROLE_CUSTOMER), (ROLE_CUSTOMER, ROLE_PROVIDER), (ROLE_RS, ROLE_RS_CLIENT),
           (ROLE_RS_CLIENT, ROLE_RS), (ROLE_PEER, ROLE_PEER)}


@pytest.mark.parametrize("ours,theirs", list(itertools.product(range(5), range(5))))
def test_role_pairs(ours, theirs):
    o = seed_open(capabilities=seed_open().capabilities + [RoleCap(theirs)])
    res = process_open(o, local(role=ours))
    if (ours, theirs) in ALLOWED:
        assert isinstance(res, Negotiated) and res.peer_role == theirs
    else:
        assert err(res) == (2, 11)


def test_role_missing():
    assert isinstance(process_open(seed_open(), local(role=ROLE_RS)), Negotiated)
    assert err(process_open(seed_open(), local(role=ROLE_RS, role_strict=True))) == (2, 11)


def test_role_conflicting_capabilities():
    o = seed_open(capabilities=[FourOctetASCap(4200000001), RoleCap(ROLE_RS_CLIENT), RoleCap(ROLE_PEER)])
    assert err(process_open(o, local(role=ROLE_RS))) == (2, 11)


def test_role_ignored_without_local_role():
    o = seed_open(capabilities=seed_open().capabilities + [RoleCap(ROLE_PROVIDER)])
    res = process_open(o, local())
    assert isinstance(res, Negotiated) and res.peer_role == ROLE_PROVIDER and res.local_role is None


# --- capabilities ---------------------------------------------------------------------------------

def test_no_multiprotocol_capability_implies_ipv4_unicast():
    o = seed_open(capabilities=[FourOctetASCap(4200000001)])
    assert process_open(o, local()).families == (V4,)
    assert process_open(o, local(families=(V6,))).families == ()


def test_multiprotocol_intersection():
    o = seed_open(capabilities=[FourOctetASCap(4200000001), MultiprotocolCap(2, 1), MultiprotocolCap(1, 2)])
    assert process_open(o, local()).families == (V6,)


@pytest.mark.parametrize("mine,theirs", list(itertools.product(range(4), range(4))))
def test_addpath_matrix(mine, theirs):
    o = seed_open(capabilities=[FourOctetASCap(4200000001), MultiprotocolCap(1, 1), MultiprotocolCap(2, 1),
                                AddPathCap(((2, 1, theirs),))])
    res = process_open(o, local(addpath=((2, 1, mine),)))
    assert (V6 in res.addpath_tx) == bool(mine & ADDPATH_SEND and theirs & ADDPATH_RECEIVE)
    assert (V6 in res.addpath_rx) == bool(mine & ADDPATH_RECEIVE and theirs & ADDPATH_SEND)
    ctx = codec_context(res)
    assert ctx.addpath_tx == (ADDPATH_V6 if V6 in res.addpath_tx else 0)
    assert ctx.addpath_rx == (ADDPATH_V6 if V6 in res.addpath_rx else 0)


def test_addpath_only_for_negotiated_families():
    o = seed_open(capabilities=[FourOctetASCap(4200000001), MultiprotocolCap(1, 1), AddPathCap(((2, 1, 3),))])
    res = process_open(o, local(addpath=((2, 1, 3),)))
    assert res.addpath_rx == () and res.addpath_tx == ()


def test_graceful_restart_helper():
    gr = GracefulRestartCap(0x8 | 0x4, 90, ((1, 1, 0x80), (2, 1, 0x00), (1, 2, 0x80)))
    o = seed_open(capabilities=[FourOctetASCap(4200000001), MultiprotocolCap(1, 1), MultiprotocolCap(2, 1), gr])
    info = process_open(o, local()).graceful_restart
    assert info.restart_time == 90 and info.restarting and info.notification
    assert info.forwarding == ((1, 1, True), (2, 1, False))     # (1, 2) was not negotiated
    assert process_open(o, local(graceful_restart=False)).graceful_restart is None


def test_extended_message_needs_both():
    o = seed_open(capabilities=seed_open().capabilities + [ExtendedMessageCap()])
    assert codec_context(process_open(o, local())).max_msg == 65535
    assert codec_context(process_open(o, local(extended_message=False))).max_msg == 4096
    assert codec_context(process_open(seed_open(), local())).max_msg == 4096


def test_route_refresh_variants():
    base = [FourOctetASCap(4200000001)]
    res = process_open(seed_open(capabilities=base + [UnknownCapability(128, b"")]), local())
    assert res.route_refresh                                  # Cisco's pre-standard code
    res = process_open(seed_open(capabilities=base + [RouteRefreshCap(), EnhancedRouteRefreshCap()]), local())
    assert res.route_refresh and res.enhanced_route_refresh
    res = process_open(seed_open(capabilities=base + [RouteRefreshCap()]), local(route_refresh=False))
    assert not res.route_refresh


def test_ibgp_context():
    o = seed_open(bgp_id=9, capabilities=[FourOctetASCap(4200000002)])
    res = process_open(o, local(peer_as=4200000002))
    assert not res.ebgp and codec_context(res).ebgp is False


def test_check_then_negotiate_agree_with_process_open():
    o = seed_open()
    assert check_open(o, local()) is None
    assert negotiate(o, local()) == process_open(o, local())


@pytest.mark.parametrize("kw", [dict(hold_time=1), dict(hold_time=2), dict(local_as=0),
                                dict(local_as=AS_TRANS), dict(bgp_id=0), dict(hold_time=70000)])
def test_local_settings_validation(kw):
    with pytest.raises(ValueError):
        local(**kw)


caps_strategy = st.lists(st.one_of(
    st.builds(MultiprotocolCap, st.integers(0, 3), st.integers(0, 3)),
    st.just(RouteRefreshCap()), st.just(ExtendedMessageCap()), st.just(EnhancedRouteRefreshCap()),
    st.builds(FourOctetASCap, st.integers(0, 2**32 - 1)),
    st.builds(RoleCap, st.integers(0, 255)),
    st.builds(AddPathCap, st.lists(st.tuples(st.integers(1, 2), st.just(1), st.integers(0, 255)),
                                   max_size=3).map(tuple)),
    st.builds(GracefulRestartCap, st.integers(0, 15), st.integers(0, 4095),
              st.lists(st.tuples(st.integers(1, 2), st.just(1), st.integers(0, 255)), max_size=3).map(tuple)),
), max_size=8)


@hsettings(max_examples=300, deadline=None)
@given(version=st.integers(0, 255), my_as=st.integers(0, 65535), hold=st.integers(0, 65535),
       bgp_id=st.integers(0, 2**32 - 1), caps=caps_strategy, role=st.sampled_from([None, 0, 1, 2, 3, 4]),
       strict=st.booleans())
def test_process_open_never_raises(version, my_as, hold, bgp_id, caps, role, strict):
    o = Open(version, my_as, hold, bgp_id, caps)
    res = process_open(o, local(peer_as=None, role=role, role_strict=strict))
    if isinstance(res, Negotiated):
        assert res.hold_time in (0,) or res.hold_time >= 3
        assert set(res.addpath_rx) <= set(res.families) and set(res.addpath_tx) <= set(res.families)
        codec_context(res)
    else:
        assert res.code == 2 and res.subcode in (1, 2, 3, 6, 11)
