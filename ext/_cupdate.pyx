# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled UPDATE codec: the twin of rserver/codec/update_py.py (docs/codec.md).

Same API and byte-identical results as the pure-Python reference. The decoder
walks the receive buffer through a raw pointer and writes prefix records,
canonical attribute blobs and ATTR_REC records straight into growing C
buffers that become ``bytes`` once per batch: no Python object is created per
prefix or per attribute set; Problems (Python objects) exist only on the
error path.
"""
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport realloc, free
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize

from rserver.codec.layout import Problem, UpdateBatch, EncodeError

ctypedef unsigned char uchar

cdef uint32_t NO_ATTR = 0xFFFFFFFF
cdef uint32_t NO_OFF = 0xFFFFFFFF

# ---- action / error numbers (layout.py, constants.py) ---------------------------------
cdef enum:
    ACT_IGNORE = 0
    ACT_DISCARD = 1
    ACT_WITHDRAW = 2
    ACT_RESET = 3

cdef enum:
    AF_MED = 1 << 0
    AF_LOCAL_PREF = 1 << 1
    AF_ATOMIC_AGGREGATE = 1 << 2
    AF_AGGREGATOR = 1 << 3
    AF_COMMUNITIES = 1 << 4
    AF_LARGE_COMMUNITIES = 1 << 5
    AF_EXT_COMMUNITIES = 1 << 6
    AF_GSHUT = 1 << 7
    AF_AS_SET = 1 << 8
    AF_CONFED = 1 << 9
    AF_OTC = 1 << 10
    AF_UNKNOWN = 1 << 11
    AF_ORIGINATOR_ID = 1 << 12
    AF_CLUSTER_LIST = 1 << 13
    AF_AS4_MERGED = 1 << 14
    AF_BLACKHOLE = 1 << 15

cdef enum:
    T_ORIGIN = 1
    T_AS_PATH = 2
    T_NEXT_HOP = 3
    T_MED = 4
    T_LOCAL_PREF = 5
    T_ATOMIC_AGGREGATE = 6
    T_AGGREGATOR = 7
    T_COMMUNITIES = 8
    T_ORIGINATOR_ID = 9
    T_CLUSTER_LIST = 10
    T_MP_REACH = 14
    T_MP_UNREACH = 15
    T_EXT_COMMUNITIES = 16
    T_AS4_PATH = 17
    T_AS4_AGGREGATOR = 18
    T_LARGE_COMMUNITY = 32
    T_OTC = 35

cdef enum:
    AS_TRANS = 23456

cdef packed struct AttrRec:
    uint32_t off
    uint32_t len
    uint32_t flags
    uint8_t origin
    uint8_t afi
    uint16_t path_len
    uint32_t first_as
    uint32_t origin_as
    uint32_t med
    uint32_t local_pref
    uint8_t nh[16]
    uint8_t nh_ll[16]
    uint8_t nh_len
    uint8_t pad1
    uint16_t pad2
    uint32_t aspath_off
    uint32_t aspath_len
    uint32_t comm_off
    uint32_t comm_len
    uint32_t lcomm_off
    uint32_t lcomm_len
    uint32_t mp_off

cdef union _Endian:
    uint32_t u
    uint8_t b[4]

cdef _Endian _e
_e.u = 1
if _e.b[0] != 1:  # pragma: no cover - records are little-endian; we write them natively
    raise ImportError("rserver.codec._cupdate supports little-endian hosts only")
if sizeof(AttrRec) != 96:  # pragma: no cover
    raise ImportError("ATTR_REC layout mismatch")

# ---- byte helpers ------------------------------------------------------------------------
cdef inline uint32_t be16(const uchar* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]

cdef inline uint32_t be32(const uchar* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]

cdef inline void put16(uchar* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 8) & 0xFF
    p[1] = v & 0xFF

cdef inline void put32(uchar* p, uint32_t v) noexcept nogil:
    p[0] = (v >> 24) & 0xFF
    p[1] = (v >> 16) & 0xFF
    p[2] = (v >> 8) & 0xFF
    p[3] = v & 0xFF

cdef inline void putle32(uchar* p, uint32_t v) noexcept nogil:
    memcpy(p, &v, 4)           # little-endian host (checked at import); any alignment

cdef inline uint32_t getle32(const uchar* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v

# ---- growing output buffers ----------------------------------------------------------
# Each buffer is a bytes object grown in place (realloc, which moves pages rather than
# copying them for large blocks) and shrunk to its length at the end: the result columns
# become ``bytes`` without a final copy.
cdef extern from "Python.h":
    ctypedef struct PyObject
    PyObject* PyBytes_FromStringAndSize_raw "PyBytes_FromStringAndSize" (const char* v, Py_ssize_t n) except NULL
    int _PyBytes_Resize(PyObject** b, Py_ssize_t n) except -1
    char* PyBytes_AS_STRING_raw "PyBytes_AS_STRING" (PyObject* b) noexcept
    void Py_XDECREF_raw "Py_XDECREF" (PyObject* o) noexcept

cdef struct OutBuf:
    uchar* p
    Py_ssize_t n
    Py_ssize_t cap
    PyObject* obj

cdef int ob_grow(OutBuf* b, Py_ssize_t need) except -1:
    cdef Py_ssize_t nc = b.cap * 2 if b.cap else 65536
    while nc < b.n + need:
        nc *= 2
    if b.obj == NULL:
        b.obj = PyBytes_FromStringAndSize_raw(NULL, nc)
    else:
        _PyBytes_Resize(&b.obj, nc)
    b.p = <uchar*>PyBytes_AS_STRING_raw(b.obj)
    b.cap = nc
    return 0

cdef inline int ob_reserve(OutBuf* b, Py_ssize_t need) except -1:
    if b.n + need > b.cap:
        return ob_grow(b, need)
    return 0

cdef inline void ob_free(OutBuf* b) noexcept:
    Py_XDECREF_raw(b.obj)
    b.obj = NULL
    b.p = NULL
    b.n = 0
    b.cap = 0

cdef bytes ob_bytes(OutBuf* b):
    """The buffer's content as bytes; the buffer is left empty."""
    cdef bytes r
    if b.n == 0 or b.obj == NULL:
        return b""
    _PyBytes_Resize(&b.obj, b.n)
    r = <bytes>b.obj           # takes a new reference ...
    ob_free(b)                 # ... and this drops the buffer's own
    return r

cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil

# ---- reasons (update_py.REASONS) ---------------------------------------------------------
R_HEADER_MARKER = "header-marker"
R_HEADER_LENGTH = "header-length"
R_UPDATE_SHORT = "update-short"
R_WITHDRAWN_LENGTH = "withdrawn-length"
R_ATTR_LENGTH_TOTAL = "attr-length-total"
R_WITHDRAWN_PREFIX = "withdrawn-prefix"
R_NLRI_PREFIX = "nlri-prefix"
R_ATTR_OVERRUN_MP = "attr-overrun-mp"
R_WELL_KNOWN_UNRECOGNIZED = "attr-unrecognized-well-known"
R_MP_DUPLICATE = "mp-duplicate"
R_MP_REACH_MALFORMED = "mp-reach-malformed"
R_MP_UNREACH_MALFORMED = "mp-unreach-malformed"
R_MP_NEXTHOP_LENGTH = "mp-nexthop-length"
R_ATTR_OVERRUN = "attr-overrun"
R_ATTR_FLAGS = "attr-flags"
R_ATTR_MISSING = "attr-missing"
R_ORIGIN_LENGTH = "origin-length"
R_ORIGIN_VALUE = "origin-value"
R_AS_PATH_MALFORMED = "as-path-malformed"
R_AS_PATH_AS0 = "as-path-as0"
R_NEXTHOP_LENGTH = "nexthop-length"
R_NEXTHOP_MARTIAN = "nexthop-martian"
R_MED_LENGTH = "med-length"
R_LOCAL_PREF_LENGTH = "local-pref-length"
R_COMMUNITIES_LENGTH = "communities-length"
R_EXT_COMMUNITIES_LENGTH = "ext-communities-length"
R_LARGE_COMMUNITIES_LENGTH = "large-communities-length"
R_ORIGINATOR_ID_LENGTH = "originator-id-length"
R_CLUSTER_LIST_LENGTH = "cluster-list-length"
R_OTC_LENGTH = "otc-length"
R_ATTR_DUPLICATE = "attr-duplicate"
R_ATOMIC_AGGREGATE_LENGTH = "atomic-aggregate-length"
R_AGGREGATOR_LENGTH = "aggregator-length"
R_AGGREGATOR_AS0 = "aggregator-as0"
R_AS4_PATH_MALFORMED = "as4-path-malformed"
R_AS4_PATH_CONFED = "as4-path-confed"
R_AS4_AGGREGATOR_LENGTH = "as4-aggregator-length"
R_AS4_AGGREGATOR_AS0 = "as4-aggregator-as0"
R_AS4_FROM_NEW_SPEAKER = "as4-from-new-speaker"
R_AS4_AGGREGATOR_MISMATCH = "as4-aggregator-mismatch"
R_AS4_AGGREGATOR_ALONE = "as4-aggregator-alone"
R_AS4_PATH_LONGER = "as4-path-longer"
R_AS4_MERGE_CONFED = "as4-merge-confed"
R_MP_UNSUPPORTED_FAMILY = "mp-unsupported-family"

# Optional/Transitive bits of each known attribute (0 = unknown): also the canonical flags
cdef uint8_t EXPECTED[256]
memset(EXPECTED, 0, 256)
for _t, _f in ((1, 0x40), (2, 0x40), (3, 0x40), (4, 0x80), (5, 0x40), (6, 0x40), (7, 0xC0),
               (8, 0xC0), (9, 0x80), (10, 0x80), (14, 0x80), (15, 0x80), (16, 0xC0), (17, 0xC0),
               (18, 0xC0), (32, 0xC0), (35, 0xC0)):
    EXPECTED[_t] = _f

cdef const uchar* MARKER16 = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"

# ---- prefixes --------------------------------------------------------------------------
cdef Py_ssize_t check_prefixes(const uchar* p, Py_ssize_t n, int afi, bint addpath) noexcept nogil:
    """Number of NLRI entries in p[0:n], or -1 when syntactically bad (RFC 7606 §5.3)."""
    cdef unsigned int maxbits = 32 if afi == 1 else 128
    cdef Py_ssize_t i = 0, k = 0
    cdef unsigned int plen
    while i < n:
        if addpath:
            if n - i < 5:
                return -1
            i += 4
        plen = p[i]
        if plen > maxbits:
            return -1
        i += 1 + ((plen + 7) >> 3)
        if i > n:
            return -1
        k += 1
    return k


# MASK4[plen]: the network-order netmask of an IPv4 prefix length as a raw (host) u32;
# MASK6[plen][0..1]: the same for IPv6 as two raw u64
cdef uint32_t MASK4[33]
cdef uint64_t MASK6[129][2]

cdef void _init_masks() noexcept:
    cdef int plen, k, bits
    cdef uchar m[16]
    for plen in range(129):
        for k in range(16):
            bits = plen - 8 * k
            m[k] = 0xFF if bits >= 8 else (0 if bits <= 0 else <uchar>(0xFF00 >> bits))
        memcpy(&MASK6[plen][0], m, 16)
        if plen <= 32:
            memcpy(&MASK4[plen], m, 4)

_init_masks()

cdef inline uint32_t load32(const uchar* p) noexcept nogil:
    cdef uint32_t x
    memcpy(&x, p, 4)
    return x

cdef inline uint64_t load64(const uchar* p) noexcept nogil:
    cdef uint64_t x
    memcpy(&x, p, 8)
    return x

cdef inline void store32(uchar* p, uint32_t x) noexcept nogil:
    memcpy(p, &x, 4)

cdef inline void store64(uchar* p, uint64_t x) noexcept nogil:
    memcpy(p, &x, 8)


cdef int parse_prefixes(OutBuf* col, const uchar* p, Py_ssize_t n, int afi, bint addpath,
                        uint32_t attr_idx) except -2:
    """Append one prefix record per NLRI entry of p[0:n] (host bits zeroed). Returns the
    number of records, or -1 when the field is syntactically bad (records already
    appended stay: the caller rolls the message back)."""
    cdef int rs = 13 if afi == 1 else 25
    cdef unsigned int maxbits = 32 if afi == 1 else 128
    cdef Py_ssize_t i = 0, k = 0, left
    cdef unsigned int plen, nb
    cdef uint32_t pid = 0
    cdef uchar* r
    cdef uchar tmp[16]
    if n <= 0:
        return 0
    ob_reserve(col, n * rs)          # every entry takes at least one byte
    r = col.p + col.n
    while i < n:
        if addpath:
            if n - i < 5:
                col.n += k * rs
                return -1
            pid = be32(p + i)
            i += 4
        plen = p[i]
        nb = (plen + 7) >> 3
        left = n - i - 1
        if plen > maxbits or <Py_ssize_t>nb > left:
            col.n += k * rs
            return -1
        store32(r, attr_idx)
        store32(r + 4, pid)
        r[8] = <uchar>plen
        if afi == 1:
            if left >= 4:
                store32(r + 9, load32(p + i + 1) & MASK4[plen])
            else:
                store32(tmp, 0)
                memcpy(tmp, p + i + 1, nb)
                store32(r + 9, load32(tmp) & MASK4[plen])
        else:
            if left >= 16:
                store64(r + 9, load64(p + i + 1) & MASK6[plen][0])
                store64(r + 17, load64(p + i + 9) & MASK6[plen][1])
            else:
                memset(tmp, 0, 16)
                memcpy(tmp, p + i + 1, nb)
                store64(r + 9, load64(tmp) & MASK6[plen][0])
                store64(r + 17, load64(tmp + 8) & MASK6[plen][1])
        i += 1 + nb
        r += rs
        k += 1
    col.n += k * rs
    return k


# ---- AS paths ----------------------------------------------------------------------------
cdef int check_path(const uchar* v, Py_ssize_t n, int width) noexcept nogil:
    """0 good; 1 malformed (segment type, zero length, overrun); 2 AS 0 (RFC 7607)."""
    cdef Py_ssize_t q = 0
    cdef unsigned int t, sl, k
    while q < n:
        if n - q < 2:
            return 1
        t = v[q]
        sl = v[q + 1]
        if t < 1 or t > 4 or sl == 0:
            return 1
        q += 2 + width * sl
        if q > n:
            return 1
    q = 0
    while q < n:
        sl = v[q + 1]
        q += 2
        for k in range(sl):
            if width == 4:
                if v[q] == 0 and v[q + 1] == 0 and v[q + 2] == 0 and v[q + 3] == 0:
                    return 2
                q += 4
            else:
                if v[q] == 0 and v[q + 1] == 0:
                    return 2
                q += 2
    return 0


cdef int scan_path4(const uchar* v, Py_ssize_t n, PathInfo* pi) noexcept nogil:
    """check_path(v, n, 4) and path_info() in one pass: 0 good (pi filled), 1 malformed,
    2 AS 0 (a structural error anywhere wins over AS 0, as in check_path)."""
    cdef Py_ssize_t q = 0
    cdef unsigned int t = 0, sl, k
    cdef uint32_t plen = 0, flags = 0, first = 0, zero = 1
    while q < n:
        if n - q < 2:
            return 1
        t = v[q]
        sl = v[q + 1]
        if t < 1 or t > 4 or sl == 0 or q + 2 + 4 * <Py_ssize_t>sl > n:
            return 1
        if t == 2:
            plen += sl
            if q == 0:
                first = be32(v + 2)
        elif t == 1:
            plen += 1
            flags |= AF_AS_SET
        else:
            flags |= AF_CONFED
        for k in range(sl):
            zero &= load32(v + q + 2 + 4 * k) != 0
        q += 2 + 4 * sl
    if not zero:
        return 2
    pi.path_len = plen if plen <= 0xFFFF else 0xFFFF
    pi.first_as = first
    pi.origin_as = be32(v + n - 4) if t == 2 else 0
    pi.flags = flags
    return 0


cdef Py_ssize_t widen_path(const uchar* v, Py_ssize_t n, uchar* o) noexcept nogil:
    """A validated 2-octet path re-encoded with 4-octet AS numbers into o; returns its length."""
    cdef Py_ssize_t q = 0, w = 0
    cdef unsigned int sl, k
    while q < n:
        sl = v[q + 1]
        o[w] = v[q]
        o[w + 1] = <uchar>sl
        q += 2
        w += 2
        for k in range(sl):
            o[w] = 0
            o[w + 1] = 0
            o[w + 2] = v[q]
            o[w + 3] = v[q + 1]
            q += 2
            w += 4
    return w


cdef struct PathInfo:
    uint32_t path_len
    uint32_t first_as
    uint32_t origin_as
    uint32_t flags


cdef void path_info(const uchar* v, Py_ssize_t n, PathInfo* pi) noexcept nogil:
    """path_len / first_as / origin_as / AF_AS_SET|AF_CONFED of a 4-octet path ([C16])."""
    cdef Py_ssize_t q = 0
    cdef unsigned int t = 0, sl
    cdef uint32_t plen = 0
    pi.first_as = 0
    pi.origin_as = 0
    pi.flags = 0
    while q < n:
        t = v[q]
        sl = v[q + 1]
        if t == 2:
            plen += sl
            if q == 0:
                pi.first_as = be32(v + 2)
        elif t == 1:
            plen += 1
            pi.flags |= AF_AS_SET
        else:
            pi.flags |= AF_CONFED
        q += 2 + 4 * sl
    if t == 2:
        pi.origin_as = be32(v + n - 4)
    pi.path_len = plen if plen <= 0xFFFF else 0xFFFF


cdef inline uint32_t path_count(const uchar* v, Py_ssize_t n) noexcept nogil:
    """AS count for route selection (RFC 4271 §9.1.2.2 a, RFC 5065 §5.3)."""
    cdef Py_ssize_t q = 0
    cdef unsigned int t, sl
    cdef uint32_t c = 0
    while q < n:
        t = v[q]
        sl = v[q + 1]
        if t == 2:
            c += sl
        elif t == 1:
            c += 1
        q += 2 + 4 * sl
    return c


cdef int merge_as4(const uchar* a, Py_ssize_t an, const uchar* b, Py_ssize_t bn,
                   uchar* o, Py_ssize_t* on) noexcept nogil:
    """RFC 6793 §4.2.3 reconstruction ([C12] d) of 4-octet AS_PATH a with the
    (confed-free, non-empty) AS4_PATH b into o. 0 merged; 1 AS4_PATH longer; 2 the
    merge would drop or split a confederation segment."""
    cdef uint32_t n2 = path_count(a, an), n4 = path_count(b, bn)
    cdef uint32_t need
    cdef Py_ssize_t q = 0, w = 0, last_seg = -1
    cdef unsigned int t, sl, take
    if n2 < n4:
        return 1
    need = n2 - n4
    while q < an:
        t = a[q]
        sl = a[q + 1]
        if t == 3 or t == 4:
            memcpy(o + w, a + q, 2 + 4 * sl)
            last_seg = w
            w += 2 + 4 * sl
            q += 2 + 4 * sl
            continue
        if need == 0:
            break
        if t == 1:
            memcpy(o + w, a + q, 2 + 4 * sl)
            last_seg = w
            w += 2 + 4 * sl
            q += 2 + 4 * sl
            need -= 1
        elif sl <= need:
            memcpy(o + w, a + q, 2 + 4 * sl)
            last_seg = w
            w += 2 + 4 * sl
            q += 2 + 4 * sl
            need -= sl
        else:
            take = need
            o[w] = <uchar>t
            o[w + 1] = <uchar>take
            memcpy(o + w + 2, a + q + 2, 4 * take)
            last_seg = w
            w += 2 + 4 * take
            q += 2 + 4 * sl
            need = 0
            break
    # anything confed left in the part not taken?
    while q < an:
        t = a[q]
        sl = a[q + 1]
        if t == 3 or t == 4:
            return 2
        q += 2 + 4 * sl
    if last_seg >= 0 and o[last_seg] == 2 and b[0] == 2 and <unsigned int>o[last_seg + 1] + b[1] <= 255:
        o[last_seg + 1] = <uchar>(o[last_seg + 1] + b[1])
        memcpy(o + w, b + 2, bn - 2)
        w += bn - 2
    else:
        memcpy(o + w, b, bn)
        w += bn
    on[0] = w
    return 0


cdef inline bint martian4(const uchar* nh, bint loopback_ok) noexcept nogil:
    """0.0.0.0, 127/8, 224/4, 240/4 incl. 255.255.255.255 (RFC 4271 §6.3); 127/8 is not
    one with `loopback_ok` (CodecContext.loopback_next_hop, labs on loopback)."""
    return ((nh[0] == 127 and not loopback_ok) or nh[0] >= 224
            or (nh[0] == 0 and nh[1] == 0 and nh[2] == 0 and nh[3] == 0))


cdef inline uchar* put_tlv(uchar* o, uint8_t flags, uint8_t t, const uchar* v, Py_ssize_t n) noexcept nogil:
    """One attribute; Extended Length exactly when the value is longer than 255."""
    if n > 255:
        o[0] = flags | 0x10
        o[1] = t
        o[2] = <uchar>(n >> 8)
        o[3] = <uchar>(n & 0xFF)
        o += 4
    else:
        o[0] = flags & 0xEF
        o[1] = t
        o[2] = <uchar>n
        o += 3
    if n:
        memcpy(o, v, n)
    return o + n


cdef inline uchar* put_prefix(uchar* o, const uchar* rec, bint addpath) noexcept nogil:
    """<path id?, length, prefix bytes> of one prefix record (RFC 4271 §4.3, RFC 7911 §3)."""
    cdef unsigned int plen = rec[8]
    cdef unsigned int nb = (plen + 7) >> 3
    if addpath:
        put32(o, getle32(rec + 4))
        o += 4
    o[0] = <uchar>plen
    memcpy(o + 1, rec + 9, nb)
    return o + 1 + nb

# ---- the decoder ---------------------------------------------------------------------------
cdef inline void bm_set(uint64_t* bm, unsigned int t) noexcept nogil:
    bm[t >> 6] |= (<uint64_t>1) << (t & 63)

cdef inline bint bm_has(const uint64_t* bm, unsigned int t) noexcept nogil:
    return (bm[t >> 6] >> (t & 63)) & 1

cdef inline bytes mkbytes(const uchar* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(<const char*>p, n)


cdef class _Decoder:
    """Output columns and scratch space of one decode_updates call."""
    cdef OutBuf v4, v6, ad, ai
    cdef OutBuf s_path, s_as4, s_merge       # scratch: widened AS_PATH, AS4_PATH, merged
    cdef list problems
    cdef list eor
    cdef uint32_t n_sets
    cdef bint as4, ap4, ap6, ebgp, lo_nh
    # per-message canonical parts: flags (without Extended Length), value pointer, length
    cdef uint8_t cflag[256]
    cdef const uchar* cptr[256]
    cdef Py_ssize_t clen[256]
    cdef uchar aggr_buf[8]

    def __cinit__(self):
        self.problems = []
        self.eor = []
        self.n_sets = 0

    def __dealloc__(self):
        ob_free(&self.v4)
        ob_free(&self.v6)
        ob_free(&self.ad)
        ob_free(&self.ai)
        ob_free(&self.s_path)
        ob_free(&self.s_as4)
        ob_free(&self.s_merge)

    cdef inline int prob(self, int act, int code, int sub, const uchar* d, Py_ssize_t dn,
                         int attr, Py_ssize_t mi, str reason) except -1:
        self.problems.append(Problem(act, code, sub, mkbytes(d, dn), attr, mi, reason))
        return 0

    cdef int add_set(self, const uint64_t* bm, int afi, uint32_t aflags, uint8_t origin,
                     PathInfo* pi, uint32_t med, uint32_t lp, const uchar* nh, int nhl,
                     int mp_afi, const uchar* sec, Py_ssize_t secn) except -1:
        """Write one canonical blob (ascending type codes) into attr_data and its ATTR_REC
        into attr_index. Type 14 in bm means an MP_REACH_NLRI built from nh/nhl/mp_afi.
        When `sec` is given, the attribute section sec[0:secn] is already exactly that
        blob (canonical flags, ascending types, nothing dropped): it is copied whole."""
        cdef Py_ssize_t need = 64 + nhl
        cdef unsigned int w, t
        cdef uint64_t x
        cdef uchar* o
        cdef uchar* start
        cdef uint32_t aspath_off = NO_OFF, aspath_len = 0, comm_off = NO_OFF, comm_len = 0
        cdef uint32_t lcomm_off = NO_OFF, lcomm_len = 0, mp_off = NO_OFF
        cdef Py_ssize_t hl
        if sec != NULL:
            ob_reserve(&self.ad, secn)
            start = self.ad.p + self.ad.n
            memcpy(start, sec, secn)
            o = start + secn
            if bm_has(bm, T_AS_PATH):
                aspath_off = <uint32_t>(self.cptr[T_AS_PATH] - sec)
                aspath_len = <uint32_t>self.clen[T_AS_PATH]
            if bm_has(bm, T_COMMUNITIES):
                comm_off = <uint32_t>(self.cptr[T_COMMUNITIES] - sec)
                comm_len = <uint32_t>self.clen[T_COMMUNITIES]
            if bm_has(bm, T_LARGE_COMMUNITY):
                lcomm_off = <uint32_t>(self.cptr[T_LARGE_COMMUNITY] - sec)
                lcomm_len = <uint32_t>self.clen[T_LARGE_COMMUNITY]
            return self.write_rec(start, o, afi, aflags, origin, pi, med, lp, nh, nhl,
                                  aspath_off, aspath_len, comm_off, comm_len, lcomm_off,
                                  lcomm_len, mp_off)
        for w in range(4):
            x = bm[w]
            while x:
                t = (w << 6) | <unsigned int>__builtin_ctzll(x)
                x &= x - 1
                need += 4 + self.clen[t]
        ob_reserve(&self.ad, need)
        start = self.ad.p + self.ad.n
        o = start
        for w in range(4):
            x = bm[w]
            while x:
                t = (w << 6) | <unsigned int>__builtin_ctzll(x)
                x &= x - 1
                if t == T_MP_REACH:
                    mp_off = <uint32_t>(o - start)
                    o[0] = 0x90
                    o[1] = 14
                    put16(o + 2, 5 + nhl)
                    o[4] = 0
                    o[5] = <uchar>mp_afi
                    o[6] = 1
                    o[7] = <uchar>nhl
                    memcpy(o + 8, nh, nhl)
                    o[8 + nhl] = 0
                    o += 9 + nhl
                    continue
                hl = 4 if self.clen[t] > 255 else 3
                if t == T_AS_PATH:
                    aspath_off = <uint32_t>(o - start + hl)
                    aspath_len = <uint32_t>self.clen[t]
                elif t == T_COMMUNITIES:
                    comm_off = <uint32_t>(o - start + hl)
                    comm_len = <uint32_t>self.clen[t]
                elif t == T_LARGE_COMMUNITY:
                    lcomm_off = <uint32_t>(o - start + hl)
                    lcomm_len = <uint32_t>self.clen[t]
                o = put_tlv(o, self.cflag[t], <uint8_t>t, self.cptr[t], self.clen[t])
        return self.write_rec(start, o, afi, aflags, origin, pi, med, lp, nh, nhl,
                              aspath_off, aspath_len, comm_off, comm_len, lcomm_off,
                              lcomm_len, mp_off)

    cdef int write_rec(self, uchar* start, uchar* o, int afi, uint32_t aflags, uint8_t origin,
                       PathInfo* pi, uint32_t med, uint32_t lp, const uchar* nh, int nhl,
                       uint32_t aspath_off, uint32_t aspath_len, uint32_t comm_off,
                       uint32_t comm_len, uint32_t lcomm_off, uint32_t lcomm_len,
                       uint32_t mp_off) except -1:
        """The ATTR_REC of the blob just written at start[0:o-start]; commits both."""
        cdef AttrRec* r
        ob_reserve(&self.ai, 96)
        r = <AttrRec*>(self.ai.p + self.ai.n)
        memset(r, 0, 96)
        r.off = <uint32_t>self.ad.n
        r.len = <uint32_t>(o - start)
        r.flags = aflags
        r.origin = origin
        r.afi = <uint8_t>afi
        r.path_len = <uint16_t>pi.path_len
        r.first_as = pi.first_as
        r.origin_as = pi.origin_as
        r.med = med
        r.local_pref = lp
        if nhl == 32:
            memcpy(r.nh, nh, 16)
            memcpy(r.nh_ll, nh + 16, 16)
        else:
            memcpy(r.nh, nh, nhl)
        r.nh_len = <uint8_t>nhl
        r.aspath_off = aspath_off
        r.aspath_len = aspath_len
        r.comm_off = comm_off
        r.comm_len = comm_len
        r.lcomm_off = lcomm_off
        r.lcomm_len = lcomm_len
        r.mp_off = mp_off
        self.ad.n += o - start
        self.ai.n += 96
        self.n_sets += 1
        return 0

    cdef object message(self, const uchar* buf, Py_ssize_t start, Py_ssize_t end, Py_ssize_t mi):
        """Decode one UPDATE buf[start:end]. Returns the reset Problem, or None. On a
        reset the caller rolls the columns back ([C1])."""
        cdef bint as4 = self.as4, ebgp = self.ebgp, taw = False
        cdef Py_ssize_t p, wl, wstart, wend, tpal, astart, aend, left, v, ve, a0, alen
        cdef bint nlri_present
        cdef unsigned int flags, t, tc, exp
        cdef bint flags_bad
        cdef uint64_t seen[4]
        cdef uint64_t common[4]
        cdef uint64_t bm[4]
        cdef Py_ssize_t k
        cdef uint32_t aflags = 0, med = 0, lp = 0, asn, idx
        cdef uint8_t origin = 0
        cdef const uchar* nh4 = NULL
        cdef const uchar* aspath = NULL
        cdef Py_ssize_t aspath_n = 0
        cdef int bad
        # AGGREGATOR / AS4_AGGREGATOR / AS4_PATH (2-octet peers)
        cdef bint has_aggr = False, has_as4_aggr = False, has_as4_path = False
        cdef uint8_t aggr_partial = 0, as4_aggr_partial = 0
        cdef uint32_t aggr_as = 0, as4_aggr_as = 0
        cdef const uchar* aggr_ip = NULL
        cdef const uchar* as4_aggr_ip = NULL
        cdef Py_ssize_t as4_aggr_a0 = 0, as4_aggr_ve = 0, as4p_a0 = 0, as4p_ve = 0
        cdef Py_ssize_t q, w, sl
        cdef bint dropped
        # MP attributes
        cdef bint has_mp_reach = False, has_mp_unreach = False
        cdef int mp_afi = 0, mpu_afi = 0, nhl = 0
        cdef const uchar* mp_nh = NULL
        cdef Py_ssize_t mp_ns = 0, mp_ve = 0, mp_count = 0, mpu_count = 0, mpu_a0 = 0, mpu_ve = 0
        cdef OutBuf* col
        cdef bint announced
        cdef Py_ssize_t n_count = 0
        cdef PathInfo pi
        cdef int mr
        cdef Py_ssize_t mn
        cdef bint verb = as4            # the section may be the IPv4 set's blob as is
        cdef int last_t = -1
        cdef unsigned int cf
        cdef bint pi_ok = False

        memset(seen, 0, sizeof(seen))
        memset(common, 0, sizeof(common))

        p = start + 19
        wl = be16(buf + p)
        wstart = p + 2
        wend = wstart + wl
        if wend + 2 > end:
            return Problem(ACT_RESET, 3, 1, b"", 0, mi, R_WITHDRAWN_LENGTH)
        tpal = be16(buf + wend)
        astart = wend + 2
        aend = astart + tpal
        if aend > end:
            return Problem(ACT_RESET, 3, 1, b"", 0, mi, R_ATTR_LENGTH_TOTAL)
        nlri_present = aend < end

        # 1. Withdrawn Routes (IPv4), straight into the column
        if wl:
            if parse_prefixes(&self.v4, buf + wstart, wl, 1, self.ap4, NO_ATTR) < 0:
                return Problem(ACT_RESET, 3, 10, b"", 0, mi, R_WITHDRAWN_PREFIX)

        # 2. path attributes, in wire order
        p = astart
        while p < aend:
            left = aend - p
            if left < 3 or ((buf[p] & 0x10) and left < 4):
                tc = buf[p + 1] if left >= 2 else 0
                if tc == 14 or tc == 15:
                    return Problem(ACT_RESET, 3, 1, mkbytes(buf + p, aend - p), tc, mi, R_ATTR_OVERRUN_MP)
                self.prob(ACT_WITHDRAW, 3, 1, buf + p, aend - p, tc, mi, R_ATTR_OVERRUN)
                taw = True
                break
            flags = buf[p]
            t = buf[p + 1]
            if flags & 0x10:
                alen = be16(buf + p + 2)
                v = p + 4
            else:
                alen = buf[p + 2]
                v = p + 3
            ve = v + alen
            if ve > aend:
                if t == 14 or t == 15:
                    return Problem(ACT_RESET, 3, 1, mkbytes(buf + p, aend - p), t, mi, R_ATTR_OVERRUN_MP)
                self.prob(ACT_WITHDRAW, 3, 1, buf + p, aend - p, t, mi, R_ATTR_OVERRUN)
                taw = True
                break
            a0 = p
            p = ve
            if verb:
                # canonical flags of this attribute, and strictly ascending type codes
                exp = EXPECTED[t]
                if exp == 0:
                    cf = 0xE0
                elif exp == 0xC0:
                    cf = 0xC0 | (flags & 0x20)
                else:
                    cf = exp
                if alen > 255:
                    cf |= 0x10
                if flags != cf or <int>t <= last_t:
                    verb = False
                last_t = t

            if bm_has(seen, t):
                if t == 14 or t == 15:
                    return Problem(ACT_RESET, 3, 1, mkbytes(buf + a0, ve - a0), t, mi, R_MP_DUPLICATE)
                self.prob(ACT_DISCARD, 3, 1, buf + a0, ve - a0, t, mi, R_ATTR_DUPLICATE)
                continue
            bm_set(seen, t)

            exp = EXPECTED[t]
            if exp == 0:
                if not (flags & 0x80):
                    return Problem(ACT_RESET, 3, 2, mkbytes(buf + a0, ve - a0), t, mi, R_WELL_KNOWN_UNRECOGNIZED)
                if flags & 0x40:
                    bm_set(common, t)
                    self.cflag[t] = 0xE0
                    self.cptr[t] = buf + v
                    self.clen[t] = alen
                    aflags |= AF_UNKNOWN
                continue

            if t == T_NEXT_HOP and not nlri_present:
                continue
            if ebgp and (t == 5 or t == 9 or t == 10):
                if (alen != 4) if t != 10 else (alen == 0 or (alen & 3)):
                    self.prob(ACT_DISCARD, 3, 5, buf + a0, ve - a0, t, mi,
                              R_LOCAL_PREF_LENGTH if t == 5 else (
                                  R_ORIGINATOR_ID_LENGTH if t == 9 else R_CLUSTER_LIST_LENGTH))
                continue
            if as4 and (t == 17 or t == 18):
                self.prob(ACT_IGNORE, 0, 0, buf + a0, ve - a0, t, mi, R_AS4_FROM_NEW_SPEAKER)
                continue

            flags_bad = (flags & 0xC0) != exp
            if flags_bad:
                self.prob(ACT_WITHDRAW, 3, 4, buf + a0, ve - a0, t, mi, R_ATTR_FLAGS)
                taw = True
                if t != 14 and t != 15:
                    continue

            if t == T_ORIGIN:
                if alen != 1:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_ORIGIN_LENGTH)
                    taw = True
                elif buf[v] > 2:
                    self.prob(ACT_WITHDRAW, 3, 6, buf + a0, ve - a0, t, mi, R_ORIGIN_VALUE)
                    taw = True
                else:
                    origin = buf[v]
                    bm_set(common, 1)
                    self.cflag[1] = 0x40
                    self.cptr[1] = buf + v
                    self.clen[1] = 1
            elif t == T_AS_PATH:
                if as4:
                    bad = scan_path4(buf + v, alen, &pi)
                    pi_ok = bad == 0
                else:
                    bad = check_path(buf + v, alen, 2)
                if bad == 0:
                    if as4:
                        aspath = buf + v
                        aspath_n = alen
                    else:
                        self.s_path.n = 0
                        ob_reserve(&self.s_path, 2 * alen + 8)
                        aspath_n = widen_path(buf + v, alen, self.s_path.p)
                        aspath = self.s_path.p
                elif bad == 2:
                    self.prob(ACT_WITHDRAW, 3, 11, buf + a0, ve - a0, t, mi, R_AS_PATH_AS0)
                    taw = True
                else:
                    self.prob(ACT_WITHDRAW, 3, 11, buf + a0, ve - a0, t, mi, R_AS_PATH_MALFORMED)
                    taw = True
            elif t == T_NEXT_HOP:
                if alen != 4:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_NEXTHOP_LENGTH)
                    taw = True
                elif martian4(buf + v, self.lo_nh):
                    self.prob(ACT_WITHDRAW, 3, 8, buf + a0, ve - a0, t, mi, R_NEXTHOP_MARTIAN)
                    taw = True
                else:
                    nh4 = buf + v
            elif t == T_MED:
                if alen != 4:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_MED_LENGTH)
                    taw = True
                else:
                    med = be32(buf + v)
                    bm_set(common, 4)
                    self.cflag[4] = 0x80
                    self.cptr[4] = buf + v
                    self.clen[4] = 4
                    aflags |= AF_MED
            elif t == T_LOCAL_PREF:
                if alen != 4:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_LOCAL_PREF_LENGTH)
                    taw = True
                else:
                    lp = be32(buf + v)
                    bm_set(common, 5)
                    self.cflag[5] = 0x40
                    self.cptr[5] = buf + v
                    self.clen[5] = 4
                    aflags |= AF_LOCAL_PREF
            elif t == T_ATOMIC_AGGREGATE:
                if alen != 0:
                    self.prob(ACT_DISCARD, 3, 5, buf + a0, ve - a0, t, mi, R_ATOMIC_AGGREGATE_LENGTH)
                else:
                    bm_set(common, 6)
                    self.cflag[6] = 0x40
                    self.cptr[6] = buf + v
                    self.clen[6] = 0
                    aflags |= AF_ATOMIC_AGGREGATE
            elif t == T_AGGREGATOR:
                if alen != (8 if as4 else 6):
                    self.prob(ACT_DISCARD, 3, 5, buf + a0, ve - a0, t, mi, R_AGGREGATOR_LENGTH)
                else:
                    asn = be32(buf + v) if as4 else be16(buf + v)
                    if asn == 0:
                        self.prob(ACT_DISCARD, 3, 9, buf + a0, ve - a0, t, mi, R_AGGREGATOR_AS0)
                    else:
                        has_aggr = True
                        aggr_partial = flags & 0x20
                        aggr_as = asn
                        aggr_ip = buf + ve - 4
            elif t == T_COMMUNITIES:
                if alen == 0 or (alen & 3):
                    self.prob(ACT_WITHDRAW, 3, 9, buf + a0, ve - a0, t, mi, R_COMMUNITIES_LENGTH)
                    taw = True
                else:
                    bm_set(common, 8)
                    self.cflag[8] = 0xC0 | (flags & 0x20)
                    self.cptr[8] = buf + v
                    self.clen[8] = alen
                    aflags |= AF_COMMUNITIES
                    k = 0
                    while k < alen:
                        if buf[v + k] == 0xFF and buf[v + k + 1] == 0xFF:
                            asn = be16(buf + v + k + 2)
                            if asn == 0:
                                aflags |= AF_GSHUT
                            elif asn == 666:
                                aflags |= AF_BLACKHOLE
                        k += 4
            elif t == T_ORIGINATOR_ID:
                if alen != 4:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_ORIGINATOR_ID_LENGTH)
                    taw = True
                else:
                    bm_set(common, 9)
                    self.cflag[9] = 0x80
                    self.cptr[9] = buf + v
                    self.clen[9] = 4
                    aflags |= AF_ORIGINATOR_ID
            elif t == T_CLUSTER_LIST:
                if alen == 0 or (alen & 3):
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_CLUSTER_LIST_LENGTH)
                    taw = True
                else:
                    bm_set(common, 10)
                    self.cflag[10] = 0x80
                    self.cptr[10] = buf + v
                    self.clen[10] = alen
                    aflags |= AF_CLUSTER_LIST
            elif t == T_MP_REACH:
                if alen < 3:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_REACH_MALFORMED)
                mp_afi = be16(buf + v)
                if buf[v + 2] != 1 or (mp_afi != 1 and mp_afi != 2):
                    self.prob(ACT_IGNORE, 0, 0, buf + a0, ve - a0, t, mi, R_MP_UNSUPPORTED_FAMILY)
                    continue
                if alen < 5:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_REACH_MALFORMED)
                nhl = buf[v + 3]
                if not (nhl == 16 or nhl == 32 or (nhl == 4 and mp_afi == 1)):
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_NEXTHOP_LENGTH)
                mp_ns = v + 5 + nhl
                if mp_ns > ve:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_REACH_MALFORMED)
                mp_count = check_prefixes(buf + mp_ns, ve - mp_ns, mp_afi,
                                          self.ap4 if mp_afi == 1 else self.ap6)
                if mp_count < 0:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_REACH_MALFORMED)
                mp_nh = buf + v + 4
                if nhl == 4 and not flags_bad and mp_count and martian4(mp_nh, self.lo_nh):
                    self.prob(ACT_WITHDRAW, 3, 8, buf + a0, ve - a0, t, mi, R_NEXTHOP_MARTIAN)
                    taw = True
                has_mp_reach = True
                mp_ve = ve
            elif t == T_MP_UNREACH:
                if alen < 3:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_UNREACH_MALFORMED)
                mpu_afi = be16(buf + v)
                if buf[v + 2] != 1 or (mpu_afi != 1 and mpu_afi != 2):
                    self.prob(ACT_IGNORE, 0, 0, buf + a0, ve - a0, t, mi, R_MP_UNSUPPORTED_FAMILY)
                    continue
                # straight into the column: only the Withdrawn Routes precede it there
                col = &self.v4 if mpu_afi == 1 else &self.v6
                mpu_count = parse_prefixes(col, buf + v + 3, alen - 3, mpu_afi,
                                           self.ap4 if mpu_afi == 1 else self.ap6, NO_ATTR)
                if mpu_count < 0:
                    return Problem(ACT_RESET, 3, 9, mkbytes(buf + a0, ve - a0), t, mi, R_MP_UNREACH_MALFORMED)
                has_mp_unreach = True
                mpu_a0 = a0
                mpu_ve = ve
            elif t == T_EXT_COMMUNITIES:
                if alen == 0 or (alen & 7):
                    self.prob(ACT_WITHDRAW, 3, 9, buf + a0, ve - a0, t, mi, R_EXT_COMMUNITIES_LENGTH)
                    taw = True
                else:
                    bm_set(common, 16)
                    self.cflag[16] = 0xC0 | (flags & 0x20)
                    self.cptr[16] = buf + v
                    self.clen[16] = alen
                    aflags |= AF_EXT_COMMUNITIES
            elif t == T_AS4_PATH:
                if (alen & 1) or alen < 6:
                    bad = 1
                else:
                    bad = check_path(buf + v, alen, 4)
                if bad:
                    self.prob(ACT_DISCARD, 3, 11, buf + a0, ve - a0, t, mi, R_AS4_PATH_MALFORMED)
                else:
                    # keep the AS_SET / AS_SEQUENCE segments (RFC 6793 §6)
                    self.s_as4.n = 0
                    ob_reserve(&self.s_as4, alen)
                    q = v
                    w = 0
                    dropped = False
                    while q < ve:
                        sl = 2 + 4 * buf[q + 1]
                        if buf[q] <= 2:
                            memcpy(self.s_as4.p + w, buf + q, sl)
                            w += sl
                        else:
                            dropped = True
                        q += sl
                    if dropped:
                        self.prob(ACT_DISCARD, 3, 11, buf + a0, ve - a0, t, mi, R_AS4_PATH_CONFED)
                    if w:
                        has_as4_path = True
                        self.s_as4.n = w
                        as4p_a0 = a0
                        as4p_ve = ve
            elif t == T_AS4_AGGREGATOR:
                if alen != 8:
                    self.prob(ACT_DISCARD, 3, 5, buf + a0, ve - a0, t, mi, R_AS4_AGGREGATOR_LENGTH)
                else:
                    asn = be32(buf + v)
                    if asn == 0:
                        self.prob(ACT_DISCARD, 3, 9, buf + a0, ve - a0, t, mi, R_AS4_AGGREGATOR_AS0)
                    else:
                        has_as4_aggr = True
                        as4_aggr_partial = flags & 0x20
                        as4_aggr_as = asn
                        as4_aggr_ip = buf + v + 4
                        as4_aggr_a0 = a0
                        as4_aggr_ve = ve
            elif t == T_LARGE_COMMUNITY:
                if alen == 0 or alen % 12:
                    self.prob(ACT_WITHDRAW, 3, 9, buf + a0, ve - a0, t, mi, R_LARGE_COMMUNITIES_LENGTH)
                    taw = True
                else:
                    bm_set(common, 32)
                    self.cflag[32] = 0xC0 | (flags & 0x20)
                    self.cptr[32] = buf + v
                    self.clen[32] = alen
                    aflags |= AF_LARGE_COMMUNITIES
            elif t == T_OTC:
                if alen != 4:
                    self.prob(ACT_WITHDRAW, 3, 5, buf + a0, ve - a0, t, mi, R_OTC_LENGTH)
                    taw = True
                else:
                    bm_set(common, 35)
                    self.cflag[35] = 0xC0 | (flags & 0x20)
                    self.cptr[35] = buf + v
                    self.clen[35] = 4
                    aflags |= AF_OTC

        # 3. missing well-known attributes [C15] (reported after the NLRI field parse in
        #    the reference; identical since an NLRI-field error drops the message's problems)
        announced = nlri_present or (has_mp_reach and mp_count > 0)
        if announced:
            if not bm_has(seen, 1):
                self.prob(ACT_WITHDRAW, 3, 3, b"\x01", 1, 1, mi, R_ATTR_MISSING)
                taw = True
            if not bm_has(seen, 2):
                self.prob(ACT_WITHDRAW, 3, 3, b"\x02", 1, 2, mi, R_ATTR_MISSING)
                taw = True
            if nlri_present and not bm_has(seen, 3):
                self.prob(ACT_WITHDRAW, 3, 3, b"\x03", 1, 3, mi, R_ATTR_MISSING)
                taw = True

        # 4. NLRI field (IPv4): first set of this message, or withdrawals
        idx = NO_ATTR if taw else self.n_sets
        if nlri_present:
            n_count = parse_prefixes(&self.v4, buf + aend, end - aend, 1, self.ap4, idx)
            if n_count < 0:
                return Problem(ACT_RESET, 3, 10, b"", 0, mi, R_NLRI_PREFIX)

        if announced:
            if taw:
                if has_mp_reach and mp_count:
                    col = &self.v4 if mp_afi == 1 else &self.v6
                    parse_prefixes(col, buf + mp_ns, mp_ve - mp_ns, mp_afi,
                                   self.ap4 if mp_afi == 1 else self.ap6, NO_ATTR)
            else:
                # AS4 reconciliation for 2-octet peers [C12]
                if not as4 and (has_as4_aggr or has_as4_path):
                    if has_as4_aggr:
                        if has_aggr and aggr_as != AS_TRANS:
                            self.prob(ACT_IGNORE, 0, 0, buf + as4_aggr_a0, as4_aggr_ve - as4_aggr_a0,
                                      18, mi, R_AS4_AGGREGATOR_MISMATCH)
                            has_as4_path = False
                        elif not has_aggr:
                            self.prob(ACT_IGNORE, 0, 0, buf + as4_aggr_a0, as4_aggr_ve - as4_aggr_a0,
                                      18, mi, R_AS4_AGGREGATOR_ALONE)
                            has_aggr = True
                            aggr_partial = as4_aggr_partial
                            aggr_as = as4_aggr_as
                            aggr_ip = as4_aggr_ip
                        else:
                            aggr_as = as4_aggr_as
                            aggr_ip = as4_aggr_ip
                    if has_as4_path:
                        self.s_merge.n = 0
                        ob_reserve(&self.s_merge, aspath_n + self.s_as4.n + 8)
                        mr = merge_as4(aspath, aspath_n, self.s_as4.p, self.s_as4.n,
                                       self.s_merge.p, &mn)
                        if mr:
                            self.prob(ACT_IGNORE, 0, 0, buf + as4p_a0, as4p_ve - as4p_a0, 17, mi,
                                      R_AS4_PATH_LONGER if mr == 1 else R_AS4_MERGE_CONFED)
                        else:
                            aspath = self.s_merge.p
                            aspath_n = mn
                            aflags |= AF_AS4_MERGED
                bm_set(common, 2)
                self.cflag[2] = 0x40
                self.cptr[2] = aspath
                self.clen[2] = aspath_n
                if has_aggr:
                    put32(self.aggr_buf, aggr_as)
                    memcpy(self.aggr_buf + 4, aggr_ip, 4)
                    bm_set(common, 7)
                    self.cflag[7] = 0xC0 | aggr_partial
                    self.cptr[7] = self.aggr_buf
                    self.clen[7] = 8
                    aflags |= AF_AGGREGATOR
                if not pi_ok:
                    path_info(aspath, aspath_n, &pi)
                aflags |= pi.flags
                if n_count:
                    memcpy(bm, common, sizeof(bm))
                    bm_set(bm, 3)
                    self.cflag[3] = 0x40
                    self.cptr[3] = nh4
                    self.clen[3] = 4
                    if verb and bm[0] == seen[0] and bm[1] == seen[1] and bm[2] == seen[2] \
                            and bm[3] == seen[3]:
                        self.add_set(bm, 1, aflags, origin, &pi, med, lp, nh4, 4, 0,
                                     buf + astart, tpal)
                    else:
                        self.add_set(bm, 1, aflags, origin, &pi, med, lp, nh4, 4, 0, NULL, 0)
                if has_mp_reach and mp_count:
                    memcpy(bm, common, sizeof(bm))
                    if nhl == 4:
                        bm_set(bm, 3)
                        self.cflag[3] = 0x40
                        self.cptr[3] = mp_nh
                        self.clen[3] = 4
                    else:
                        bm_set(bm, 14)
                        self.clen[14] = 5 + nhl
                    col = &self.v4 if mp_afi == 1 else &self.v6
                    parse_prefixes(col, buf + mp_ns, mp_ve - mp_ns, mp_afi,
                                   self.ap4 if mp_afi == 1 else self.ap6, self.n_sets)
                    self.add_set(bm, mp_afi, aflags, origin, &pi, med, lp, mp_nh, nhl, mp_afi,
                                 NULL, 0)

        # End-of-RIB (RFC 4724 §2) [C14]
        if wl == 0 and not nlri_present:
            if tpal == 0:
                self.eor.append((1, 1, self.v4.n // 13))
            elif has_mp_unreach and mpu_count == 0 and mpu_a0 == astart and mpu_ve == aend:
                self.eor.append((mpu_afi, 1, self.v4.n // 13 if mpu_afi == 1 else self.v6.n // 25))
        return None


cdef const uchar[::1] as_view(obj):
    """A read-only view of any contiguous bytes-like object, without copying it."""
    cdef const uchar[::1] mv
    try:
        mv = obj
    except (TypeError, ValueError, BufferError):
        mv = bytes(obj)
    return mv


def decode_updates(buf, ctx):
    """Decode consecutive UPDATE messages from the start of `buf` (docs/codec.md)."""
    cdef const uchar[::1] mv
    cdef const uchar* p = NULL
    cdef Py_ssize_t n, pos = 0, mi = 0, length
    cdef long long max_msg = ctx.max_msg
    cdef _Decoder dec = _Decoder()
    cdef Py_ssize_t s_v4, s_v6, s_ad, s_ai, s_pr
    cdef uint32_t s_sets
    cdef object error = None
    mv = as_view(buf)
    n = mv.shape[0]
    if n:
        p = &mv[0]
    dec.as4 = bool(ctx.as4)
    dec.ap4 = bool(ctx.addpath_rx & 1)
    dec.ap6 = bool(ctx.addpath_rx & 2)
    dec.ebgp = bool(ctx.ebgp)
    dec.lo_nh = bool(ctx.loopback_next_hop)
    while n - pos >= 19:
        if memcmp(p + pos, MARKER16, 16) != 0:
            error = Problem(ACT_RESET, 1, 1, b"", 0, mi, R_HEADER_MARKER)
            break
        length = be16(p + pos + 16)
        if length < 19 or length > max_msg:
            error = Problem(ACT_RESET, 1, 2, mkbytes(p + pos + 16, 2), 0, mi, R_HEADER_LENGTH)
            break
        if p[pos + 18] != 2:
            break
        if length < 23:
            error = Problem(ACT_RESET, 1, 2, mkbytes(p + pos + 16, 2), 0, mi, R_UPDATE_SHORT)
            break
        if n - pos < length:
            break
        s_v4 = dec.v4.n
        s_v6 = dec.v6.n
        s_ad = dec.ad.n
        s_ai = dec.ai.n
        s_sets = dec.n_sets
        s_pr = len(dec.problems)
        error = dec.message(p, pos, pos + length, mi)
        if error is not None:
            dec.v4.n = s_v4
            dec.v6.n = s_v6
            dec.ad.n = s_ad
            dec.ai.n = s_ai
            dec.n_sets = s_sets
            del dec.problems[s_pr:]
            break
        pos += length
        mi += 1
    if error is not None:
        dec.problems.append(error)
    return UpdateBatch(pos, mi, ob_bytes(&dec.ad), ob_bytes(&dec.ai), ob_bytes(&dec.v4),
                       ob_bytes(&dec.v6), dec.eor, dec.problems, error)


# ---- encoding ----------------------------------------------------------------------------
# Well-formed input (canonical blobs, records of the layout) is encoded here. Anything
# else (a blob whose attributes do not frame, a prefix length beyond 32/128, a partial
# record, an attr_idx or mp_off that does not match the data, an unknown AFI) is handed to
# the reference implementation, so that even garbage gives the identical result.
import rserver.codec.update_py as _pure

cdef enum:
    ENC_OK = 0
    ENC_FALLBACK = 1

cdef int walk_blob(const uchar* b, Py_ssize_t n, uint32_t* mp_off) noexcept nogil:
    """Check that blob b[0:n] is a clean sequence of attributes; find the first
    MP_REACH_NLRI header. ENC_OK or ENC_FALLBACK."""
    cdef Py_ssize_t p = 0, vl
    mp_off[0] = NO_OFF
    while p < n:
        if n - p < 3:
            return ENC_FALLBACK
        if b[p] & 0x10:
            if n - p < 4:
                return ENC_FALLBACK
            vl = 4 + be16(b + p + 2)
        else:
            vl = 3 + b[p + 2]
        if b[p + 1] == 14 and mp_off[0] == NO_OFF:
            mp_off[0] = <uint32_t>p
        p += vl
    return ENC_OK if p == n else ENC_FALLBACK


cdef inline Py_ssize_t msg_room(Py_ssize_t room, Py_ssize_t left, bint addpath, int asz) noexcept nogil:
    """Bytes to reserve for one message's prefixes: its room, or what the remaining
    records can take at most, whichever is smaller."""
    cdef Py_ssize_t most = left * ((5 if addpath else 1) + asz)
    if room < 0:
        return 0
    return room if room < most else most


cdef str EMSG_TAIL = ": one prefix does not fit in the message size"


cdef class _Encoder:
    cdef OutBuf out
    cdef OutBuf conv        # a blob rewritten for a 2-octet peer
    cdef OutBuf tmp         # its parts before ordering
    cdef uint32_t* pt       # part type / offset / length
    cdef Py_ssize_t* po
    cdef Py_ssize_t* pl
    cdef Py_ssize_t pcap
    cdef bint as4
    cdef int addpath_tx
    cdef long long max_msg

    def __cinit__(self, ctx):
        self.as4 = bool(ctx.as4)
        self.addpath_tx = ctx.addpath_tx & 3
        self.max_msg = ctx.max_msg
        self.pt = NULL
        self.po = NULL
        self.pl = NULL
        self.pcap = 0

    def __dealloc__(self):
        ob_free(&self.out)
        ob_free(&self.conv)
        ob_free(&self.tmp)
        free(self.pt)
        free(self.po)
        free(self.pl)

    cdef int parts_reserve(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t nc
        if need <= self.pcap:
            return 0
        nc = need * 2 + 16
        self.pt = <uint32_t*>realloc(self.pt, nc * sizeof(uint32_t))
        self.po = <Py_ssize_t*>realloc(self.po, nc * sizeof(Py_ssize_t))
        self.pl = <Py_ssize_t*>realloc(self.pl, nc * sizeof(Py_ssize_t))
        if self.pt == NULL or self.po == NULL or self.pl == NULL:
            raise MemoryError()
        self.pcap = nc
        return 0

    cdef int to_as2(self, const uchar* b, Py_ssize_t n, uint32_t* mp_off) except -1:
        """Rewrite a canonical blob for a peer without 4-octet AS (RFC 6793 §4.2.2) into
        self.conv: 2-octet AS_PATH with AS_TRANS (+ AS4_PATH of the non-confed segments
        when any AS was replaced and it is not empty), AGGREGATOR with AS_TRANS
        (+ AS4_AGGREGATOR); stable order by type code."""
        cdef Py_ssize_t p = 0, hl, vl, q, np = 0, nas, v2, a4, i, j, k
        cdef const uchar* v
        cdef uchar* o
        cdef uint32_t asn, t
        cdef unsigned int sl, st
        cdef bint replaced
        cdef uint8_t fl
        self.parts_reserve(n // 3 + 4)
        self.tmp.n = 0
        ob_reserve(&self.tmp, 2 * n + 64)
        o = self.tmp.p
        while p < n:
            fl = b[p]
            t = b[p + 1]
            if fl & 0x10:
                hl = 4
                vl = be16(b + p + 2)
            else:
                hl = 3
                vl = b[p + 2]
            v = b + p + hl
            if t == 2:
                # segments must frame exactly
                q = 0
                nas = 0
                a4 = 0
                replaced = False
                while q < vl:
                    if vl - q < 2:
                        return ENC_FALLBACK
                    st = v[q]
                    sl = v[q + 1]
                    if q + 2 + 4 * sl > vl:
                        return ENC_FALLBACK
                    if st <= 2:
                        a4 += 2 + 4 * sl
                    for k in range(sl):
                        if be32(v + q + 2 + 4 * k) > 0xFFFF:
                            replaced = True
                    nas += sl
                    q += 2 + 4 * sl
                v2 = vl - 2 * nas
                self.pt[np] = 2
                self.po[np] = o - self.tmp.p
                if v2 > 255:
                    o[0] = (fl & 0xE0) | 0x10
                    o[1] = 2
                    put16(o + 2, v2)
                    o += 4
                else:
                    o[0] = fl & 0xE0
                    o[1] = 2
                    o[2] = <uchar>v2
                    o += 3
                q = 0
                while q < vl:
                    sl = v[q + 1]
                    o[0] = v[q]
                    o[1] = <uchar>sl
                    o += 2
                    for k in range(sl):
                        asn = be32(v + q + 2 + 4 * k)
                        put16(o, asn if asn <= 0xFFFF else AS_TRANS)
                        o += 2
                    q += 2 + 4 * sl
                self.pl[np] = (o - self.tmp.p) - self.po[np]
                np += 1
                if replaced and a4:
                    self.pt[np] = 17
                    self.po[np] = o - self.tmp.p
                    if a4 > 255:
                        o[0] = 0xD0
                        o[1] = 17
                        put16(o + 2, a4)
                        o += 4
                    else:
                        o[0] = 0xC0
                        o[1] = 17
                        o[2] = <uchar>a4
                        o += 3
                    q = 0
                    while q < vl:
                        sl = v[q + 1]
                        if v[q] <= 2:
                            memcpy(o, v + q, 2 + 4 * sl)
                            o += 2 + 4 * sl
                        q += 2 + 4 * sl
                    self.pl[np] = (o - self.tmp.p) - self.po[np]
                    np += 1
            elif t == 7 and vl == 8:
                asn = be32(v)
                self.pt[np] = 7
                self.po[np] = o - self.tmp.p
                self.pl[np] = 9
                o[0] = fl & 0xE0
                o[1] = 7
                o[2] = 6
                put16(o + 3, asn if asn <= 0xFFFF else AS_TRANS)
                memcpy(o + 5, v + 4, 4)
                o += 9
                np += 1
                if asn > 0xFFFF:
                    self.pt[np] = 18
                    self.po[np] = o - self.tmp.p
                    self.pl[np] = 11
                    o[0] = 0xC0
                    o[1] = 18
                    o[2] = 8
                    memcpy(o + 3, v, 8)
                    o += 11
                    np += 1
            else:
                self.pt[np] = t
                self.po[np] = o - self.tmp.p
                self.pl[np] = hl + vl
                memcpy(o, b + p, hl + vl)
                o += hl + vl
                np += 1
            p += hl + vl
        self.tmp.n = o - self.tmp.p
        # stable insertion sort by type code
        for i in range(1, np):
            t = self.pt[i]
            q = self.po[i]
            k = self.pl[i]
            j = i - 1
            while j >= 0 and self.pt[j] > t:
                self.pt[j + 1] = self.pt[j]
                self.po[j + 1] = self.po[j]
                self.pl[j + 1] = self.pl[j]
                j -= 1
            self.pt[j + 1] = t
            self.po[j + 1] = q
            self.pl[j + 1] = k
        self.conv.n = 0
        ob_reserve(&self.conv, self.tmp.n)
        mp_off[0] = NO_OFF
        for i in range(np):
            if self.pt[i] == 14 and mp_off[0] == NO_OFF:
                mp_off[0] = <uint32_t>self.conv.n
            memcpy(self.conv.p + self.conv.n, self.tmp.p + self.po[i], self.pl[i])
            self.conv.n += self.pl[i]
        return ENC_OK

    cdef int announce(self, const uchar* blob, Py_ssize_t blen, uint32_t mp_off, int afi,
                      const uchar* recs, Py_ssize_t nbytes) except -1:
        """UPDATEs for one attribute set (docs/codec.md); ENC_FALLBACK on odd input."""
        cdef int rs = 13 if afi == 1 else 25
        cdef unsigned int maxbits = 32 if afi == 1 else 128
        cdef bint addpath
        cdef Py_ssize_t nrec, i, used, room, fixed, hl, vl, before, after_off, after_n
        cdef long long lroom
        cdef const uchar* rec
        cdef uchar* m
        cdef uchar* o
        cdef unsigned int plen, le
        cdef uint8_t f
        if nbytes == 0:
            return ENC_OK
        if afi != 1 and afi != 2:
            return ENC_FALLBACK
        if nbytes % rs:
            return ENC_FALLBACK
        nrec = nbytes // rs
        if not self.as4:
            if self.to_as2(blob, blen, &mp_off) == ENC_FALLBACK:
                return ENC_FALLBACK
            blob = self.conv.p
            blen = self.conv.n
        addpath = (self.addpath_tx & afi) != 0
        i = 0
        if afi == 1 and mp_off == NO_OFF:
            # IPv4 prefixes in the NLRI field
            lroom = self.max_msg - 23 - blen
            room = <Py_ssize_t>lroom if lroom < 0x7FFFFFFF else 0x7FFFFFFF
            while i < nrec:
                ob_reserve(&self.out, 23 + blen + msg_room(room, nrec - i, addpath, 4))
                m = self.out.p + self.out.n
                memcpy(m, MARKER16, 16)
                m[18] = 2
                m[19] = 0
                m[20] = 0
                put16(m + 21, blen)
                memcpy(m + 23, blob, blen)
                o = m + 23 + blen
                used = 0
                while i < nrec:
                    rec = recs + i * 13
                    plen = rec[8]
                    if plen > 32:
                        return ENC_FALLBACK
                    le = (5 if addpath else 1) + ((plen + 7) >> 3)
                    if used + le > room:
                        break
                    o = put_prefix(o, rec, addpath)
                    used += le
                    i += 1
                if used == 0:
                    raise EncodeError("attributes plus one IPv4 prefix" + EMSG_TAIL)
                put16(m + 16, 23 + blen + used)
                self.out.n += 23 + blen + used
            return ENC_OK
        if mp_off == NO_OFF:
            raise ValueError("encode_announce: IPv6 prefixes need a blob with MP_REACH_NLRI")
        f = blob[mp_off]
        if f & 0x10:
            hl = 4
            vl = be16(blob + mp_off + 2)
        else:
            hl = 3
            vl = blob[mp_off + 2]
        if vl < 2 or <int>be16(blob + mp_off + hl) != afi:
            raise ValueError("encode_announce: the blob's MP_REACH_NLRI is for another AFI")
        before = mp_off
        after_off = mp_off + hl + vl
        after_n = blen - after_off
        fixed = before + 4 + vl + after_n
        lroom = self.max_msg - 23 - fixed
        if lroom > 0xFFFF - vl:
            lroom = 0xFFFF - vl
        room = <Py_ssize_t>lroom
        while i < nrec:
            ob_reserve(&self.out, 23 + fixed + msg_room(room, nrec - i, addpath, rs - 9))
            m = self.out.p + self.out.n
            memcpy(m, MARKER16, 16)
            m[18] = 2
            m[19] = 0
            m[20] = 0
            memcpy(m + 23, blob, before)
            o = m + 23 + before
            o[0] = f | 0x10
            o[1] = 14
            memcpy(o + 4, blob + mp_off + hl, vl)
            o += 4 + vl
            used = 0
            while i < nrec:
                rec = recs + i * rs
                plen = rec[8]
                if plen > maxbits:
                    return ENC_FALLBACK
                le = (5 if addpath else 1) + ((plen + 7) >> 3)
                if used + le > room:
                    break
                o = put_prefix(o, rec, addpath)
                used += le
                i += 1
            if used == 0:
                raise EncodeError("attributes plus one prefix in MP_REACH_NLRI" + EMSG_TAIL)
            put16(m + 23 + before + 2, vl + used)
            memcpy(o, blob + after_off, after_n)
            put16(m + 21, fixed + used)
            put16(m + 16, 23 + fixed + used)
            self.out.n += 23 + fixed + used
        return ENC_OK

    cdef int withdraw(self, int afi, const uchar* recs, Py_ssize_t nbytes) except -1:
        cdef int rs = 13 if afi == 1 else 25
        cdef unsigned int maxbits = 32 if afi == 1 else 128
        cdef bint addpath
        cdef Py_ssize_t nrec, i = 0, used, room
        cdef long long lroom
        cdef const uchar* rec
        cdef uchar* m
        cdef uchar* o
        cdef unsigned int plen, le
        if nbytes == 0:
            return ENC_OK
        if afi != 1 and afi != 2:
            return ENC_FALLBACK
        if nbytes % rs:
            return ENC_FALLBACK
        nrec = nbytes // rs
        addpath = (self.addpath_tx & afi) != 0
        if afi == 1:
            lroom = self.max_msg - 23
        else:
            lroom = self.max_msg - 30
            if lroom > 0xFFFF - 3:
                lroom = 0xFFFF - 3
        room = <Py_ssize_t>lroom if lroom < 0x7FFFFFFF else 0x7FFFFFFF
        while i < nrec:
            ob_reserve(&self.out, 30 + msg_room(room, nrec - i, addpath, rs - 9))
            m = self.out.p + self.out.n
            memcpy(m, MARKER16, 16)
            m[18] = 2
            o = m + (21 if afi == 1 else 30)
            used = 0
            while i < nrec:
                rec = recs + i * rs
                plen = rec[8]
                if plen > maxbits:
                    return ENC_FALLBACK
                le = (5 if addpath else 1) + ((plen + 7) >> 3)
                if used + le > room:
                    break
                o = put_prefix(o, rec, addpath)
                used += le
                i += 1
            if used == 0:
                raise EncodeError(("one IPv4 withdrawal" if afi == 1 else "one IPv6 withdrawal") + EMSG_TAIL)
            if afi == 1:
                put16(m + 19, used)
                o[0] = 0
                o[1] = 0
                put16(m + 16, 23 + used)
                self.out.n += 23 + used
            else:
                m[19] = 0
                m[20] = 0
                put16(m + 21, 7 + used)
                m[23] = 0x90
                m[24] = 0x0F
                put16(m + 25, 3 + used)
                m[27] = 0
                m[28] = 2
                m[29] = 1
                put16(m + 16, 30 + used)
                self.out.n += 30 + used
        return ENC_OK


cdef inline bint _plain_ctx(ctx):
    """A context this module encodes for itself: a message size BGP can carry (RFC 8654
    §4: at most 65535). Anything else is left to the reference (which raises)."""
    return ctx.max_msg <= 65535 and isinstance(ctx.addpath_tx, int)


cdef inline const uchar* buf_ptr(const uchar[::1] mv) noexcept:
    return &mv[0] if mv.shape[0] else <const uchar*>b""


def encode_announce(blob, afi, records, ctx):
    """UPDATE messages announcing `records` (prefix-record layout, attr_idx ignored)
    with the attributes of the canonical `blob`."""
    cdef const uchar[::1] bmv = as_view(blob)
    cdef const uchar[::1] rmv = as_view(records)
    cdef _Encoder enc
    cdef uint32_t mp_off
    cdef const uchar* b = buf_ptr(bmv)
    if not isinstance(afi, int) or not _plain_ctx(ctx) \
            or walk_blob(b, bmv.shape[0], &mp_off) == ENC_FALLBACK:
        return _pure.encode_announce(blob, afi, records, ctx)
    if rmv.shape[0] == 0:
        return b""
    enc = _Encoder(ctx)
    if enc.announce(b, bmv.shape[0], mp_off, afi, buf_ptr(rmv), rmv.shape[0]) == ENC_FALLBACK:
        return _pure.encode_announce(blob, afi, records, ctx)
    return ob_bytes(&enc.out)


def encode_withdraw(afi, records, ctx):
    """UPDATE messages withdrawing `records`: IPv4 in Withdrawn Routes, IPv6 in
    MP_UNREACH_NLRI (flags 0x90)."""
    cdef const uchar[::1] rmv = as_view(records)
    cdef _Encoder enc
    if rmv.shape[0] == 0:
        return b""
    if not isinstance(afi, int) or (afi != 1 and afi != 2) or not _plain_ctx(ctx):
        return _pure.encode_withdraw(afi, records, ctx)
    enc = _Encoder(ctx)
    if enc.withdraw(afi, buf_ptr(rmv), rmv.shape[0]) == ENC_FALLBACK:
        return _pure.encode_withdraw(afi, records, ctx)
    return ob_bytes(&enc.out)


def encode_batch(attr_data, attr_index, records, afi, ctx):
    """Encode each run of consecutive records with the same attr_idx: announcements
    of that set (its blob from attr_data/attr_index), or withdrawals for NO_ATTR."""
    cdef const uchar[::1] dmv = as_view(attr_data)
    cdef const uchar[::1] imv = as_view(attr_index)
    cdef const uchar[::1] rmv = as_view(records)
    cdef const uchar* d = buf_ptr(dmv)
    cdef const uchar* ix = buf_ptr(imv)
    cdef const uchar* r = buf_ptr(rmv)
    cdef Py_ssize_t nd = dmv.shape[0], ni = imv.shape[0], n = rmv.shape[0]
    cdef Py_ssize_t i = 0, j, rs
    cdef uint32_t key, off, ln, mp_off, mp_found
    cdef const AttrRec* ar
    cdef _Encoder enc
    cdef int afi_c
    if n == 0:
        return b""
    if not isinstance(afi, int) or (afi != 1 and afi != 2) or not _plain_ctx(ctx):
        return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
    afi_c = afi
    rs = 13 if afi_c == 1 else 25
    if n % rs:
        return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
    enc = _Encoder(ctx)
    while i < n:
        key = getle32(r + i)
        j = i + rs
        while j < n and getle32(r + j) == key:
            j += rs
        if key == NO_ATTR:
            if enc.withdraw(afi_c, r + i, j - i) == ENC_FALLBACK:
                return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
        else:
            if (<Py_ssize_t>key + 1) * 96 > ni:
                return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
            ar = <const AttrRec*>(ix + <Py_ssize_t>key * 96)
            off = ar.off
            ln = ar.len
            mp_off = ar.mp_off
            if <Py_ssize_t>off + ln > nd or walk_blob(d + off, ln, &mp_found) == ENC_FALLBACK \
                    or mp_found != mp_off:
                return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
            if enc.announce(d + off, ln, mp_off, afi_c, r + i, j - i) == ENC_FALLBACK:
                return _pure.encode_batch(attr_data, attr_index, records, afi, ctx)
        i = j
    return ob_bytes(&enc.out)


def encode_eor(afi, safi):
    """End-of-RIB marker (RFC 4724 §2)."""
    if afi == 1 and safi == 1:
        return b"\xff" * 16 + b"\x00\x17\x02\x00\x00\x00\x00"
    return _pure.encode_eor(afi, safi)
