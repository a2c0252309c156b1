"""OPEN / NOTIFICATION / KEEPALIVE / ROUTE-REFRESH codec (rserver/codec/messages.py).

Every byte string below was assembled by hand from the RFC figure named in the
test's comment (or copied from seed 000), not produced by the encoder.
"""
from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rserver.codec import messages as m
from rserver.codec.constants import ROLE_RS
from rserver.codec.messages import (
    AddPathCap, EnhancedRouteRefreshCap, ExtendedMessageCap, ExtendedNextHopCap, FourOctetASCap,
    FQDNCap, GracefulRestartCap, Keepalive, LongLivedGRCap, MessageError, MultiprotocolCap,
    Notification, Open, RawUpdate, RoleCap, RouteRefresh, RouteRefreshCap, UnknownCapability,
)

M = b"\xff" * 16


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def raises(code: int, subcode: int, data: bytes | None = None):
    """Context manager asserting a MessageError with exactly this triple."""
    class _Ctx:
        def __enter__(self):
            self._cm = pytest.raises(MessageError)
            self.info = self._cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            ok = self._cm.__exit__(*exc)
            err = self.info.value
            assert (err.code, err.subcode) == (code, subcode), str(err)
            if data is not None:
                assert err.data == data
            return ok
    return _Ctx()


def open_msg(body: bytes) -> bytes:
    return M + struct.pack("!HB", 19 + len(body), 1) + body


# --- golden vectors -------------------------------------------------------------------

# Seed 000 ("sending open message msg with header"): RFC 4271 §4.1 header (marker,
# length 0x33 = 51, type 1), §4.2 OPEN (version 4, My AS 0x5ba0 = 23456 = AS_TRANS,
# hold 6, BGP id 0.0.0.2, opt len 0x16 = 22), one RFC 5492 §4 Capabilities parameter
# (type 2, len 0x14 = 20) holding: RFC 4760 §8 MP (01 04 | AFI 1, res 0, SAFI 1),
# RFC 2918 §2 route refresh (02 00), RFC 6793 §3 4-octet AS (41 04 | 0xfa56ea02 =
# 4200000002), RFC 7911 §4 ADD-PATH (45 04 | AFI 1, SAFI 1, send/receive 1 = receive).
SEED_OPEN_LOCAL = M + h("0033 01 04 5ba0 0006 00000002 16 02 14 "
                        "01 04 0001 00 01  02 00  41 04 fa56ea02  45 04 0001 01 01")
# The peer's OPEN from the same seed ("recv open message msg"): identical but BGP id 1
# and AS4 4200000001 = 0xfa56ea01.
SEED_OPEN_PEER = M + h("0033 01 04 5ba0 0006 00000001 16 02 14 "
                       "01 04 0001 00 01  02 00  41 04 fa56ea01  45 04 0001 01 01")


def test_golden_seed_open_decodes():
    msg, used = m.decode_message(SEED_OPEN_LOCAL)
    assert used == 51
    assert isinstance(msg, Open)
    assert (msg.version, msg.my_as, msg.hold_time, msg.bgp_id) == (4, 23456, 6, 2)
    assert msg.bgp_id_str == "0.0.0.2"
    assert msg.capabilities == [
        MultiprotocolCap(1, 1), RouteRefreshCap(), FourOctetASCap(4200000002),
        AddPathCap(((1, 1, 1),)),
    ]
    assert msg.asn == 4200000002
    assert msg.find(AddPathCap)[0].mode(1, 1) == 1          # receive only
    assert msg.find(AddPathCap)[0].mode(2, 1) == 0


def test_golden_seed_open_reencodes_identically():
    msg, _ = m.decode_message(SEED_OPEN_LOCAL)
    assert m.encode_open(msg) == SEED_OPEN_LOCAL
    # and built from scratch
    built = Open(4, 23456, 6, 2, [MultiprotocolCap(1, 1), RouteRefreshCap(),
                                  FourOctetASCap(4200000002), AddPathCap(((1, 1, 1),))])
    assert built.encode() == SEED_OPEN_LOCAL


def test_golden_seed_peer_open():
    msg, used = m.decode_message(SEED_OPEN_PEER)
    assert used == 51 and msg.bgp_id == 1 and msg.asn == 4200000001
    assert msg.my_as == 23456
    assert m.encode_open(msg) == SEED_OPEN_PEER


def test_golden_keepalive():
    # Seed 000 "sending keepalive message msg with header"; RFC 4271 §4.4: header only.
    assert m.encode_keepalive() == M + h("0013 04")
    assert len(m.KEEPALIVE) == 19
    msg, used = m.decode_message(M + h("0013 04"))
    assert msg == Keepalive() and used == 19


def test_golden_notification_with_shutdown_communication():
    # RFC 4271 §4.5 (code 6, subcode 2) + RFC 9003 §2 (length 0x0b, "maintenance");
    # total 19 + 2 + 1 + 11 = 33 = 0x21.
    wire = M + h("0021 03 06 02 0b") + b"maintenance"
    n = Notification.shutdown("maintenance")
    assert n.encode() == wire
    msg, used = m.decode_message(wire)
    assert used == 33 and msg == n
    assert msg.shutdown_message == "maintenance"
    assert msg.describe() == 'Cease/Administrative Shutdown: "maintenance"'


def test_golden_route_refresh():
    # RFC 2918 §3 / RFC 7313 §3.2: AFI 1, subtype 0, SAFI 1; length 23 = 0x17.
    wire = M + h("0017 05 0001 00 01")
    assert RouteRefresh(1, 1).encode() == wire
    msg, used = m.decode_message(wire)
    assert msg == RouteRefresh(1, 1, 0) and used == 23 and msg.known
    # BoRR for IPv6 unicast: AFI 2, subtype 1, SAFI 1.
    borr = M + h("0017 05 0002 01 01")
    assert m.decode_message(borr)[0] == RouteRefresh(2, 1, m.RR_BORR)
    assert RouteRefresh(2, 1, m.RR_EORR).encode() == M + h("0017 05 0002 02 01")


# --- capabilities: golden values and round trips ---------------------------------------

CAP_VECTORS = [
    # RFC 4760 §8: AFI 2 (IPv6), reserved, SAFI 1
    (MultiprotocolCap(2, 1), h("01 04 0002 00 01")),
    # RFC 2918 §2: empty
    (RouteRefreshCap(), h("02 00")),
    # RFC 8950 §4: NLRI AFI 1, NLRI SAFI 1, next hop AFI 2
    (ExtendedNextHopCap(((1, 1, 2),)), h("05 06 0001 0001 0002")),
    # RFC 8654 §3: empty
    (ExtendedMessageCap(), h("06 00")),
    # RFC 9234 §4.1: role 1 = route server
    (RoleCap(ROLE_RS), h("09 01 01")),
    # RFC 4724 §3: flags R (0x8) -> 0x8078 = R + 120 s; IPv4 unicast with F bit 0x80
    (GracefulRestartCap(0x8, 120, ((1, 1, 0x80),)), h("40 06 8078 0001 01 80")),
    # RFC 6793 §3: 4-octet AS 65536
    (FourOctetASCap(65536), h("41 04 00010000")),
    # RFC 7911 §4: IPv4 unicast send+receive (3), IPv6 unicast send (2)
    (AddPathCap(((1, 1, 3), (2, 1, 2))), h("45 08 0001 01 03 0002 01 02")),
    # RFC 7313 §3.1: empty
    (EnhancedRouteRefreshCap(), h("46 00")),
    # RFC 9494 §3: IPv6 unicast, flags 0x80 (F), stale time 3600 = 0x000e10
    (LongLivedGRCap(((2, 1, 0x80, 3600),)), h("47 07 0002 01 80 000e10")),
    # draft-walton-bgp-hostname-capability: len 3 "rs1", len 6 "ix.net"
    (FQDNCap("rs1", "ix.net"), h("49 0b 03") + b"rs1" + b"\x06ix.net"),
    # Cisco's pre-standard route refresh, code 128, kept as unknown
    (UnknownCapability(128, b""), h("80 00")),
    (UnknownCapability(200, b"\x01\x02\x03"), h("c8 03 010203")),
]


@pytest.mark.parametrize("cap,wire", CAP_VECTORS, ids=lambda x: type(x).__name__)
def test_capability_vectors(cap, wire):
    assert cap.encode() == wire
    assert m.decode_capabilities(wire) == [cap]


def test_graceful_restart_flag_bits():
    # RFC 4724 §3 + RFC 8538: R = 0x8, N = 0x4 in the top nibble; time 12 bits.
    (cap,) = m.decode_capabilities(h("40 02 cfff"))
    assert cap == GracefulRestartCap(0xC, 0xFFF, ())
    assert cap.restarting and cap.notification
    (cap,) = m.decode_capabilities(h("40 02 0005"))
    assert not cap.restarting and not cap.notification and cap.restart_time == 5


def test_multiprotocol_reserved_byte_ignored():
    # RFC 4760 §8: reserved "SHOULD be set to 0 by the sender and ignored by the receiver"
    assert m.decode_capabilities(h("01 04 0001 7f 01")) == [MultiprotocolCap(1, 1)]


def test_unknown_capability_byte_exact():
    raw = h("80 00  c8 05 0102030405  fe 00")
    caps = m.decode_capabilities(raw)
    assert caps == [UnknownCapability(128, b""), UnknownCapability(200, h("0102030405")),
                    UnknownCapability(254, b"")]
    assert m.encode_capabilities(caps) == raw


def test_fqdn_not_utf8_kept_as_unknown():
    raw = h("49 04 01 ff 01 41")          # hostname 0xff (not UTF-8), domain "A"
    (cap,) = m.decode_capabilities(raw)
    assert cap == UnknownCapability(73, h("01 ff 01 41"))
    assert cap.encode() == raw


def test_open_asn_without_as4_capability():
    o = Open(4, 64500, 90, 0x0A000001, [MultiprotocolCap(1, 1)])
    assert o.asn == 64500
    assert o.bgp_id_str == "10.0.0.1"


def test_open_without_capabilities_has_no_optional_parameters():
    # RFC 4271 §4.2: Opt Parm Len 0, minimum OPEN is 29 bytes.
    wire = Open(4, 65001, 180, 0xC0000201, []).encode()
    assert wire == M + h("001d 01 04 fde9 00b4 c0000201 00")
    assert m.decode_message(wire)[0] == Open(4, 65001, 180, 0xC0000201, [])


def test_open_capabilities_over_several_parameters():
    # RFC 5492 §4: a speaker may put each capability in its own parameter.
    body = h("04 fde9 00b4 c0000201 10 02 06 01 04 0001 00 01 02 06 41 04 0000fde9")
    o = m.decode_open(body)
    assert o.capabilities == [MultiprotocolCap(1, 1), FourOctetASCap(65001)]
    assert o.asn == 65001
    # re-encoded in the one-parameter form
    one = h("04 fde9 00b4 c0000201 0e 02 0c 01 04 0001 00 01 41 04 0000fde9")
    assert o.encode() == open_msg(one)


def test_open_any_version_decodes():
    # Version checking (2/1) is the session layer's job; decoding must not fail.
    body = h("03 fde9 00b4 c0000201 00")
    assert m.decode_open(body).version == 3
    assert m.decode_open(h("ff 0000 0000 00000000 00")).version == 255


# --- RFC 9072 extended optional parameters ----------------------------------------------

# RFC 9072 §2 Figure 1: Non-Ext OP Len 0xff, Non-Ext OP Type 0xff, Extended Opt. Parm.
# Length 0x0009, then a parameter with a 2-octet length: type 2, length 0x0006, the
# 4-octet AS capability 41 04 fa56ea01. Body: 9 + 1 + 1 + 2 + 9 = 22.
EXT_OPEN_BODY = h("04 5ba0 00b4 c0000201 ff ff 0009 02 0006 41 04 fa56ea01")


def test_rfc9072_short_extended_open_accepted():
    # RFC 9072 §2: MUST accept the extended encoding even for <= 255 bytes.
    o = m.decode_open(EXT_OPEN_BODY)
    assert o.capabilities == [FourOctetASCap(4200000001)] and o.hold_time == 180


def test_rfc9072_non_ext_len_ignored():
    # RFC 9072 §2/§3: Non-Ext OP Len is ignored once Non-Ext OP Type is 255, even when
    # it is not 255 itself.
    body = EXT_OPEN_BODY[:9] + b"\x01" + EXT_OPEN_BODY[10:]
    assert m.decode_open(body).capabilities == [FourOctetASCap(4200000001)]


def test_rfc9072_encoder_switches_at_255():
    # RFC 9072 §2: the classic form while the optional parameters fit 255 bytes
    # (2 + 253 for one Capabilities parameter), the extended form beyond.
    fits = Open(4, 1, 90, 1, [UnknownCapability(200, b"x" * 251)])   # caps = 253 bytes
    body = fits.encode()[19:]
    assert body[9] == 255 and body[10] == 2 and body[11] == 253
    assert m.decode_open(body) == fits
    big = Open(4, 1, 90, 1, [UnknownCapability(200, b"x" * 252)])    # caps = 254 bytes
    body = big.encode()[19:]
    assert body[9:11] == b"\xff\xff"
    assert struct.unpack("!H", body[11:13])[0] == 3 + 254
    assert body[13] == 2 and struct.unpack("!H", body[14:16])[0] == 254
    assert len(body) == 16 + 254
    assert m.decode_open(body) == big


def test_rfc9072_many_capabilities_round_trip():
    caps = [MultiprotocolCap(afi, safi) for afi in range(1, 30) for safi in (1, 2)]
    o = Open(4, 23456, 90, 7, caps + [FourOctetASCap(4200000009)])
    wire = o.encode()
    assert wire[19 + 9:19 + 11] == b"\xff\xff"
    msg, used = m.decode_message(wire)
    assert msg == o and used == len(wire) and msg.asn == 4200000009


# --- OPEN errors (RFC 4271 §6.2, RFC 5492, RFC 9072) -------------------------------------

FIXED = h("04 fde9 00b4 c0000201")


def test_open_unsupported_optional_parameter():
    # RFC 4271 §6.2: unrecognized parameter (type 1, deprecated authentication) -> 2/4,
    # data = the parameter as received.
    with raises(2, 4, h("01 02 aabb")):
        m.decode_open(FIXED + h("04 01 02 aabb"))


def test_open_type_255_inside_extended_form_is_unsupported():
    # RFC 9072 §3: 255 other than as Non-Ext OP Type is an unrecognized parameter.
    with raises(2, 4, h("ff 0000")):
        m.decode_open(FIXED + h("ff ff 0003 ff 0000"))


@pytest.mark.parametrize("params", [
    h("03 02 01"),                 # opt len 3 but only 2 bytes follow
    h("02 02 00 02 00"),           # opt len 2 but 4 bytes follow (a 2nd parameter past it)
    h("04 02 05 0200"),            # parameter length 5 overruns the parameters
    h("01 02"),                    # truncated parameter header
    h("05 02 03 02 00 41"),        # capability header truncated (1 byte left)
    h("04 02 02 41 04"),           # capability length 4 overruns the parameter
    h("05 ff 00"),                 # extended form, truncated Extended Opt. Parm. Length
    h("ff ff 0004 02 0000"),       # extended length 4 but 3 bytes follow
    h("ff ff 0003 02 0005"),       # extended param length 5 overruns
])
def test_open_malformed_parameters_are_2_0(params):
    # No dedicated subcode exists (RFC 4271 §6.2, RFC 5492, RFC 9072): 2/0, no data.
    with raises(2, 0, b""):
        m.decode_open(FIXED + params)


@pytest.mark.parametrize("cap", [
    h("41 02 fde9"),               # 4-octet AS, length 2 (RFC 6793 §3 wants 4; seed 002)
    h("41 05 0000fde9 00"),        # 4-octet AS, length 5
    h("01 03 0001 00"),            # MP, length 3 (RFC 4760 §8 wants 4)
    h("01 05 0001 00 01 00"),      # MP, length 5
    h("02 01 00"),                 # route refresh with a value
    h("06 01 00"),                 # extended message with a value
    h("46 01 00"),                 # enhanced route refresh with a value
    h("09 00"),                    # role, empty
    h("09 02 0001"),               # role, length 2
    h("05 04 0001 0001"),          # extended next hop, not a multiple of 6
    h("40 01 80"),                 # graceful restart shorter than 2
    h("40 03 8078 00"),            # graceful restart, 2 + 1
    h("45 03 0001 01"),            # ADD-PATH, not a multiple of 4
    h("47 06 0001 01 80 0000"),    # LLGR, not a multiple of 7
    h("49 00"),                    # FQDN, empty
    h("49 02 05 41"),              # FQDN, hostname length overruns
    h("49 03 01 41 05"),           # FQDN, domain length overruns
    h("49 05 01 41 01 42 43"),     # FQDN, trailing byte
])
def test_capability_bad_length_is_2_0(cap):
    # RFC 4271 §6.2 (OPEN errors are OPEN Message Error) with subcode 0: we do not
    # follow Quagga's Cease 6/0 (seed 002).
    with raises(2, 0, b""):
        m.decode_open(FIXED + bytes((2 + len(cap), 2, len(cap))) + cap)


def test_decode_open_too_short_body():
    with raises(1, 2, h("0016")):
        m.decode_open(h("04 fde9"))   # 19 + 3 = 22 = 0x16


# --- framing (RFC 4271 §6.1, RFC 8654) ------------------------------------------------------

def test_split_incomplete():
    assert m.split_message(b"") is None
    assert m.split_message(SEED_OPEN_LOCAL[:18]) is None
    assert m.split_message(SEED_OPEN_LOCAL[:50]) is None
    assert m.split_message(SEED_OPEN_LOCAL) == (1, 51)
    assert m.split_message(bytearray(SEED_OPEN_LOCAL + b"\x00\x01")) == (1, 51)
    assert m.split_message(memoryview(m.KEEPALIVE)) == (4, 19)
    assert m.decode_message(SEED_OPEN_LOCAL[:50]) is None


def test_bad_marker():
    with raises(1, 1, b""):
        m.split_message(b"\xff" * 15 + b"\xfe" + h("0013 04"))


@pytest.mark.parametrize("length,max_len", [(18, 4096), (0, 4096), (4097, 4096), (65535, 4096)])
def test_bad_length(length, max_len):
    field = struct.pack("!H", length)
    with raises(1, 2, field):
        m.split_message(M + field + b"\x02" + b"\x00" * 40, max_len)


def test_length_checked_before_type():
    with raises(1, 2, h("0005")):
        m.split_message(M + h("0005 09"))


@pytest.mark.parametrize("mtype", [0, 6, 128, 255])
def test_bad_type(mtype):
    with raises(1, 3, bytes((mtype,))):
        m.split_message(M + h("0017") + bytes((mtype,)) + b"\x00" * 4)


@pytest.mark.parametrize("mtype,length", [
    (1, 28),    # OPEN minimum 29 (RFC 4271 §4.2)
    (2, 22),    # UPDATE minimum 23 (§4.3)
    (3, 20),    # NOTIFICATION minimum 21 (§4.5)
    (4, 20),    # KEEPALIVE exactly 19 (§4.4)
    (5, 22),    # ROUTE-REFRESH minimum 23 (RFC 2918 §3)
])
def test_below_type_minimum(mtype, length):
    field = struct.pack("!H", length)
    with raises(1, 2, field):
        m.split_message(M + field + bytes((mtype,)) + b"\x00" * 40, 65535)


def test_extended_messages_only_when_negotiated():
    # RFC 8654 §6: above 4096 only if the capability was advertised; UPDATE,
    # NOTIFICATION and ROUTE-REFRESH may then be up to 65535.
    upd = M + h("1388 02") + b"\x00" * (5000 - 19)
    with raises(1, 2, h("1388")):
        m.split_message(upd, 4096)
    assert m.split_message(upd, 65535) == (2, 5000)
    assert m.split_message(upd[:4999], 65535) is None
    note = M + h("1388 03 06 00") + b"\x00" * (5000 - 21)
    msg, used = m.decode_message(note, 65535)
    assert used == 5000 and msg.code == 6 and len(msg.data) == 4979


def test_open_and_keepalive_never_extended():
    # RFC 8654 §4: the capability "applies to all messages except for OPEN and KEEPALIVE".
    big_open = M + h("1001 01") + b"\x00" * (4097 - 19)
    with raises(1, 2, h("1001")):
        m.split_message(big_open, 65535)
    with raises(1, 2, h("0014")):
        m.split_message(M + h("0014 04 00"), 65535)


def test_encode_header():
    assert m.encode_header(4, 0) == m.KEEPALIVE
    assert m.encode_header(2, 65535 - 19)[16:18] == b"\xff\xff"
    with pytest.raises(ValueError):
        m.encode_header(2, 65535 - 18)


# --- NOTIFICATION (RFC 4271 §4.5, RFC 9003) ---------------------------------------------------

@pytest.mark.parametrize("code,sub,name", [
    (6, 2, "Cease/Administrative Shutdown"),                     # RFC 4486 §4
    (6, 4, "Cease/Administrative Reset"),
    (6, 7, "Cease/Connection Collision Resolution"),
    (6, 9, "Cease/Hard Reset"),                                  # RFC 8538
    (3, 11, "UPDATE Message Error/Malformed AS_PATH"),           # RFC 4271 §4.5
    (3, 1, "UPDATE Message Error/Malformed Attribute List"),
    (2, 11, "OPEN Message Error/Role Mismatch"),                 # RFC 9234
    (2, 7, "OPEN Message Error/Unsupported Capability"),         # RFC 5492
    (2, 0, "OPEN Message Error/Unspecific"),
    (1, 2, "Message Header Error/Bad Message Length"),
    (5, 1, "Finite State Machine Error/Receive Unexpected Message in OpenSent State"),  # RFC 6608
    (5, 3, "Finite State Machine Error/Receive Unexpected Message in Established State"),
    (4, 0, "Hold Timer Expired"),
    (7, 1, "ROUTE-REFRESH Message Error/Invalid Message Length"),  # RFC 7313 §5
    (8, 0, "Send Hold Timer Expired"),                           # RFC 9687
    (6, 99, "Cease/subcode 99"),
    (42, 1, "Error 42/subcode 1"),
])
def test_describe(code, sub, name):
    assert Notification(code, sub).describe() == name
    assert m.error_name(code, sub) == name


def test_notification_round_trip():
    # RFC 4271 §4.5: code, subcode, data. 3/11 with a 2-byte data field.
    wire = M + h("0017 03 03 0b abcd")
    msg, used = m.decode_message(wire)
    assert msg == Notification(3, 11, h("abcd")) and used == 23
    assert m.encode_notification(msg) == wire
    assert m.encode_message(msg) == wire


def test_notification_minimum():
    msg, _ = m.decode_message(M + h("0015 03 04 00"))
    assert msg == Notification(4, 0, b"") and msg.describe() == "Hold Timer Expired"


@pytest.mark.parametrize("n", [
    Notification(6, 2, h("05") + b"abc"),          # length beyond the data
    Notification(6, 2, h("02 c0 80")),             # overlong (non-shortest) UTF-8
    Notification(6, 2, h("02 ff fe")),             # invalid UTF-8
    Notification(6, 2, b""),                        # no communication
    Notification(6, 3, h("02") + b"hi"),            # subcode 3 carries none
    Notification(2, 2, h("02") + b"hi"),            # not a Cease
])
def test_shutdown_message_malformed_is_none(n):
    assert n.shutdown_message is None
    assert n.describe() == m.error_name(n.code, n.subcode)
    assert m.decode_notification(n.encode()[19:]) == n


def test_shutdown_message_variants():
    assert Notification(6, 4, h("02") + b"hi").shutdown_message == "hi"
    assert Notification(6, 2, h("00")).shutdown_message == ""
    assert Notification(6, 2, h("02") + b"hi" + b"zz").shutdown_message == "hi"
    assert Notification(6, 2, h("04") + "ü!".encode() + b"x").shutdown_message == "ü!x"


def test_shutdown_constructor_limits():
    # RFC 9003 §3: SHOULD NOT exceed 128 bytes unless the peer supports RFC 9003;
    # §2: never more than 255 (1-byte length). Cut on a character boundary.
    n = Notification.shutdown("é" * 300)                  # 2 bytes per character
    assert n.data[0] == 128 and n.shutdown_message == "é" * 64
    n = Notification.shutdown("é" * 300, limit=255)
    assert n.data[0] == 254 and n.shutdown_message == "é" * 127
    n = Notification.shutdown("bye", subcode=4)
    assert (n.code, n.subcode, n.data) == (6, 4, b"\x03bye")
    assert Notification.shutdown() == Notification(6, 2, b"")
    with pytest.raises(ValueError):
        Notification.shutdown("x", subcode=3)
    with pytest.raises(ValueError):
        Notification.shutdown("x", limit=256)


def test_notification_encode_truncates_data_to_max_len():
    n = Notification(7, 1, b"\x00" * 5000)
    assert len(n.encode()) == 4096
    assert len(m.encode_notification(n, 65535)) == 5021


def test_message_error_to_notification():
    try:
        m.split_message(M + h("0012 04"))
    except MessageError as e:
        assert e.notification() == Notification(1, 2, h("0012"))
        assert "Bad Message Length" in str(e)
    else:
        pytest.fail("no MessageError")


# --- ROUTE-REFRESH errors (RFC 7313 §5) ---------------------------------------------------------

@pytest.mark.parametrize("subtype", [0, 1, 2])
def test_route_refresh_bad_length(subtype):
    # RFC 7313 §5: body not 4 bytes -> 7/1, data = the complete message (we apply it to
    # subtype 0 too: longer would mean ORF, RFC 5291, which we never advertise).
    wire = M + h("0018 05 0001") + bytes((subtype,)) + h("01 00")
    with raises(7, 1, wire):
        m.decode_message(wire)


@pytest.mark.parametrize("subtype", [3, 128, 255])
def test_route_refresh_unknown_subtype_returned_unknown(subtype):
    # RFC 7313 §5: other subtypes MUST be ignored (whatever their length): returned
    # with known False for the session to log and drop.
    for tail in (b"", b"\x00\x00"):
        body = h("0001") + bytes((subtype,)) + h("01") + tail
        wire = M + struct.pack("!H", 19 + len(body)) + b"\x05" + body
        msg, used = m.decode_message(wire)
        assert msg == RouteRefresh(1, 1, subtype) and not msg.known and used == len(wire)


# --- decode_message ----------------------------------------------------------------------------

def test_decode_stream():
    upd = M + h("0017 02 0000 0000")          # RFC 4271 §4.3 / RFC 4724 §2: IPv4 EoR
    buf = bytearray(m.KEEPALIVE + upd + SEED_OPEN_PEER + SEED_OPEN_LOCAL[:30])
    out = []
    while (res := m.decode_message(buf)) is not None:
        msg, used = res
        out.append(msg)
        del buf[:used]
    assert out[0] == Keepalive()
    assert out[1] == RawUpdate(upd) and out[1].body == h("0000 0000")
    assert isinstance(out[2], Open) and out[2].asn == 4200000001
    assert len(out) == 3 and bytes(buf) == SEED_OPEN_LOCAL[:30]
    assert m.encode_message(out[1]) == upd and m.encode_message(out[0]) == m.KEEPALIVE


def test_encode_open_rejects_out_of_range():
    with pytest.raises(ValueError):
        Open(4, 70000, 90, 1, []).encode()
    with pytest.raises(ValueError):
        Open(4, 1, 90, 1 << 32, []).encode()
    with pytest.raises(ValueError):
        Open(4, 1, 90, 1, [UnknownCapability(200, b"x" * 256)]).encode()
    with pytest.raises(ValueError):                      # RFC 8654 §4: OPEN <= 4096
        Open(4, 1, 90, 1, [UnknownCapability(200, b"x" * 255)] * 16).encode()
    with pytest.raises(ValueError):
        GracefulRestartCap(0x10, 1).encode()
    with pytest.raises(ValueError):
        LongLivedGRCap(((1, 1, 0, 1 << 24),)).encode()


# --- properties --------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
name = st.text(st.characters(codec="utf-8"), max_size=30)
short_name = st.text(st.characters(codec="utf-8"), max_size=10)
fams3 = st.lists(st.tuples(u16, u8, u8), max_size=5).map(tuple)
known = set(m.CAPABILITY_CLASSES)

def capabilities(name):
    return st.one_of(
        st.builds(MultiprotocolCap, u16, u8),
        st.just(RouteRefreshCap()),
        st.builds(ExtendedNextHopCap, st.lists(st.tuples(u16, u16, u16), max_size=5).map(tuple)),
        st.just(ExtendedMessageCap()),
        st.builds(RoleCap, u8),
        st.builds(GracefulRestartCap, st.integers(0, 0xF), st.integers(0, 0xFFF), fams3),
        st.builds(FourOctetASCap, u32),
        st.builds(AddPathCap, fams3),
        st.just(EnhancedRouteRefreshCap()),
        st.builds(LongLivedGRCap, st.lists(st.tuples(u16, u8, u8, st.integers(0, 0xFFFFFF)),
                                           max_size=5).map(tuple)),
        st.builds(FQDNCap, name, name),
        st.builds(UnknownCapability, u8.filter(lambda c: c not in known), st.binary(max_size=40)),
    )


capability = capabilities(name)


@settings(max_examples=300, deadline=None)
@given(capability)
def test_capability_round_trip(cap):
    wire = cap.encode()
    assert wire[0] == cap.code and wire[1] == len(wire) - 2
    assert m.decode_capabilities(wire) == [cap]


@settings(max_examples=300, deadline=None)
@given(st.builds(Open, u8, u16, u16, u32, st.lists(capabilities(short_name), max_size=20)))
def test_open_round_trip(o):
    wire = o.encode()
    msg, used = m.decode_message(wire)
    assert msg == o and used == len(wire)
    assert m.encode_open(msg) == wire
    as4 = [c.asn for c in o.capabilities if isinstance(c, FourOctetASCap)]
    assert msg.asn == (as4[0] if as4 else o.my_as)


@settings(max_examples=300, deadline=None)
@given(st.builds(Notification, u8, u8, st.binary(max_size=300)))
def test_notification_round_trip_property(n):
    msg, _ = m.decode_message(n.encode())
    assert msg == n
    assert isinstance(n.describe(), str)        # never raises, whatever the data
    sm = n.shutdown_message
    assert sm is None or isinstance(sm, str)


# --- fuzz: bytes from a peer raise nothing but MessageError -------------------------------------

GOLDEN = [
    SEED_OPEN_LOCAL, SEED_OPEN_PEER, m.KEEPALIVE, M + h("0017 05 0001 00 01"),
    M + h("0021 03 06 02 0b") + b"maintenance", open_msg(EXT_OPEN_BODY),
    Open(4, 1, 2, 3, [c for c, _ in CAP_VECTORS]).encode(),
]


def _decode_all(buf: bytes, max_len: int) -> None:
    try:
        res = m.decode_message(buf, max_len)
    except MessageError as e:
        assert 1 <= e.code <= 7 and isinstance(e.data, bytes)
        return
    if res is not None:
        msg, used = res
        assert 19 <= used <= len(buf)
        if isinstance(msg, Notification):
            msg.describe()
            _ = msg.shutdown_message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300),
                 st.binary(max_size=300).map(lambda b: M + b)),
       st.sampled_from([4096, 65535]))
def test_fuzz_random_bytes(buf, max_len):
    _decode_all(buf, max_len)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GOLDEN),
       st.lists(st.tuples(st.integers(0, 400), u8), min_size=1, max_size=6),
       st.integers(0, 400), st.booleans(), st.sampled_from([4096, 65535]))
def test_fuzz_mutated_messages(msg, flips, cut, fix_length, max_len):
    buf = bytearray(msg)
    for pos, val in flips:
        if pos < len(buf):
            buf[pos] = val
    del buf[max(cut, 19):]
    if fix_length and len(buf) >= 19:                  # keep the header consistent so
        buf[16:18] = struct.pack("!H", len(buf))        # the body parsers get exercised
        buf[:16] = M
    _decode_all(bytes(buf), max_len)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_open_body_and_capabilities(body):
    for fn in (m.decode_open, m.decode_capabilities, m.decode_notification):
        try:
            fn(body)
        except MessageError:
            pass
