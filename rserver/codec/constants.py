"""Numbers from the BGP RFCs that the codec and the session layer share.

Every constant carries the RFC section it comes from, so a reader can check it.
"""
from __future__ import annotations

# --- message header (RFC 4271 §4.1) -------------------------------------------------
MARKER = b"\xff" * 16
HEADER_LEN = 19
MIN_MSG_LEN = 19
MAX_MSG_LEN = 4096          # RFC 4271 §4.1
MAX_EXT_MSG_LEN = 65535     # RFC 8654 §4 (extended messages, when negotiated; never for OPEN/KEEPALIVE)

# message types (RFC 4271 §4.1, RFC 2918 §3)
MSG_OPEN = 1
MSG_UPDATE = 2
MSG_NOTIFICATION = 3
MSG_KEEPALIVE = 4
MSG_ROUTE_REFRESH = 5

MSG_NAMES = {
    MSG_OPEN: "open",
    MSG_UPDATE: "update",
    MSG_NOTIFICATION: "notification",
    MSG_KEEPALIVE: "keepalive",
    MSG_ROUTE_REFRESH: "route-refresh",
}

# minimum lengths per type (RFC 4271 §4.2-4.4, §6.1; RFC 2918 §3)
MIN_LEN_BY_TYPE = {
    MSG_OPEN: 29,
    MSG_UPDATE: 23,
    MSG_NOTIFICATION: 21,
    MSG_KEEPALIVE: 19,
    MSG_ROUTE_REFRESH: 23,
}

# --- address families (IANA; RFC 4760) ----------------------------------------------
AFI_IPV4 = 1
AFI_IPV6 = 2
SAFI_UNICAST = 1

# --- AS numbers (RFC 6793) ----------------------------------------------------------
AS_TRANS = 23456

# --- path attribute flags (RFC 4271 §4.3) -------------------------------------------
FLAG_OPTIONAL = 0x80
FLAG_TRANSITIVE = 0x40
FLAG_PARTIAL = 0x20
FLAG_EXTENDED_LENGTH = 0x10

# --- path attribute type codes ------------------------------------------------------
ATTR_ORIGIN = 1               # RFC 4271 §5.1.1
ATTR_AS_PATH = 2              # RFC 4271 §5.1.2
ATTR_NEXT_HOP = 3             # RFC 4271 §5.1.3
ATTR_MED = 4                  # RFC 4271 §5.1.4 (MULTI_EXIT_DISC)
ATTR_LOCAL_PREF = 5           # RFC 4271 §5.1.5
ATTR_ATOMIC_AGGREGATE = 6     # RFC 4271 §5.1.6
ATTR_AGGREGATOR = 7           # RFC 4271 §5.1.7
ATTR_COMMUNITIES = 8          # RFC 1997
ATTR_ORIGINATOR_ID = 9        # RFC 4456
ATTR_CLUSTER_LIST = 10        # RFC 4456
ATTR_MP_REACH_NLRI = 14       # RFC 4760
ATTR_MP_UNREACH_NLRI = 15     # RFC 4760
ATTR_EXT_COMMUNITIES = 16     # RFC 4360
ATTR_AS4_PATH = 17            # RFC 6793
ATTR_AS4_AGGREGATOR = 18      # RFC 6793
ATTR_LARGE_COMMUNITY = 32     # RFC 8092
ATTR_OTC = 35                 # RFC 9234 (Only to Customer)

ATTR_NAMES = {
    ATTR_ORIGIN: "ORIGIN",
    ATTR_AS_PATH: "AS_PATH",
    ATTR_NEXT_HOP: "NEXT_HOP",
    ATTR_MED: "MULTI_EXIT_DISC",
    ATTR_LOCAL_PREF: "LOCAL_PREF",
    ATTR_ATOMIC_AGGREGATE: "ATOMIC_AGGREGATE",
    ATTR_AGGREGATOR: "AGGREGATOR",
    ATTR_COMMUNITIES: "COMMUNITIES",
    ATTR_ORIGINATOR_ID: "ORIGINATOR_ID",
    ATTR_CLUSTER_LIST: "CLUSTER_LIST",
    ATTR_MP_REACH_NLRI: "MP_REACH_NLRI",
    ATTR_MP_UNREACH_NLRI: "MP_UNREACH_NLRI",
    ATTR_EXT_COMMUNITIES: "EXTENDED_COMMUNITIES",
    ATTR_AS4_PATH: "AS4_PATH",
    ATTR_AS4_AGGREGATOR: "AS4_AGGREGATOR",
    ATTR_LARGE_COMMUNITY: "LARGE_COMMUNITY",
    ATTR_OTC: "OTC",
}

# the attributes the codec knows; anything else is "unrecognized" (RFC 4271 §5)
KNOWN_ATTRS = frozenset(ATTR_NAMES)
# well-known attributes: an unrecognized one of these is error 3/2 (RFC 4271 §6.3)
WELL_KNOWN_ATTRS = frozenset({
    ATTR_ORIGIN, ATTR_AS_PATH, ATTR_NEXT_HOP, ATTR_LOCAL_PREF, ATTR_ATOMIC_AGGREGATE,
})

# ORIGIN values (RFC 4271 §5.1.1)
ORIGIN_IGP = 0
ORIGIN_EGP = 1
ORIGIN_INCOMPLETE = 2

# AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3)
AS_SET = 1
AS_SEQUENCE = 2
AS_CONFED_SEQUENCE = 3
AS_CONFED_SET = 4

# well-known communities
COMMUNITY_GRACEFUL_SHUTDOWN = 0xFFFF0000  # 65535:0, RFC 8326
COMMUNITY_NO_EXPORT = 0xFFFFFF01          # RFC 1997
COMMUNITY_NO_ADVERTISE = 0xFFFFFF02       # RFC 1997
COMMUNITY_BLACKHOLE = 0xFFFF029A          # 65535:666, RFC 7999

# --- OPEN (RFC 4271 §4.2, RFC 5492, RFC 9072) ---------------------------------------
BGP_VERSION = 4
OPT_PARAM_CAPABILITIES = 2          # RFC 5492 §4
OPT_PARAM_EXTENDED_LENGTH = 255     # RFC 9072 §2 (Non-Ext OP Type)

CAP_MULTIPROTOCOL = 1               # RFC 4760
CAP_ROUTE_REFRESH = 2               # RFC 2918
CAP_EXTENDED_NEXT_HOP = 5           # RFC 8950
CAP_EXTENDED_MESSAGE = 6            # RFC 8654
CAP_ROLE = 9                        # RFC 9234
CAP_GRACEFUL_RESTART = 64           # RFC 4724
CAP_FOUR_OCTET_AS = 65              # RFC 6793
CAP_ADD_PATH = 69                   # RFC 7911
CAP_ENHANCED_ROUTE_REFRESH = 70     # RFC 7313
CAP_LONG_LIVED_GR = 71              # RFC 9494
CAP_FQDN = 73                       # draft-walton-bgp-hostname-capability

# ADD-PATH send/receive field (RFC 7911 §4)
ADDPATH_RECEIVE = 1
ADDPATH_SEND = 2
ADDPATH_BOTH = 3

# BGP roles (RFC 9234 §4.1)
ROLE_PROVIDER = 0
ROLE_RS = 1
ROLE_RS_CLIENT = 2
ROLE_CUSTOMER = 3
ROLE_PEER = 4

# ROUTE-REFRESH subtypes (RFC 7313 §3.2)
RR_NORMAL = 0
RR_BORR = 1
RR_EORR = 2

# --- NOTIFICATION error codes and subcodes (RFC 4271 §4.5, §6) ----------------------
ERR_HEADER = 1
ERR_OPEN = 2
ERR_UPDATE = 3
ERR_HOLD_TIMER = 4
ERR_FSM = 5
ERR_CEASE = 6
ERR_ROUTE_REFRESH = 7         # RFC 7313 §5
ERR_SEND_HOLD_TIMER = 8       # RFC 9687 (Send Hold Timer Expired)

# 1/x message header errors (RFC 4271 §6.1)
HDR_NOT_SYNCHRONIZED = 1
HDR_BAD_LENGTH = 2
HDR_BAD_TYPE = 3

# 2/x OPEN message errors (RFC 4271 §6.2, RFC 5492, RFC 9234)
OPEN_UNSUPPORTED_VERSION = 1
OPEN_BAD_PEER_AS = 2
OPEN_BAD_BGP_ID = 3
OPEN_UNSUPPORTED_OPT_PARAM = 4
OPEN_UNACCEPTABLE_HOLD_TIME = 6
OPEN_UNSUPPORTED_CAPABILITY = 7     # RFC 5492 §5
OPEN_ROLE_MISMATCH = 11             # RFC 9234 §4.2
OPEN_UNSPECIFIC = 0                 # RFC 4271 erratum 4493 (IANA "Unspecific")

# 3/x UPDATE message errors (RFC 4271 §6.3)
UPD_MALFORMED_ATTR_LIST = 1
UPD_UNRECOGNIZED_WELL_KNOWN = 2
UPD_MISSING_WELL_KNOWN = 3
UPD_ATTR_FLAGS = 4
UPD_ATTR_LENGTH = 5
UPD_INVALID_ORIGIN = 6
UPD_INVALID_NEXT_HOP = 8
UPD_OPTIONAL_ATTR = 9
UPD_INVALID_NETWORK = 10
UPD_MALFORMED_AS_PATH = 11

# 5/x FSM errors (RFC 6608 §3)
FSM_UNSPECIFIED = 0
FSM_UNEXPECTED_IN_OPENSENT = 1
FSM_UNEXPECTED_IN_OPENCONFIRM = 2
FSM_UNEXPECTED_IN_ESTABLISHED = 3

# 6/x Cease subcodes (RFC 4486 §4, RFC 9003)
CEASE_MAX_PREFIX = 1
CEASE_ADMIN_SHUTDOWN = 2
CEASE_PEER_DECONFIGURED = 3
CEASE_ADMIN_RESET = 4
CEASE_CONNECTION_REJECTED = 5
CEASE_CONFIG_CHANGE = 6
CEASE_COLLISION = 7
CEASE_OUT_OF_RESOURCES = 8
CEASE_HARD_RESET = 9              # RFC 8538
CEASE_BFD_DOWN = 10               # RFC 9384

# 7/x ROUTE-REFRESH errors (RFC 7313 §5)
RR_INVALID_LENGTH = 1
