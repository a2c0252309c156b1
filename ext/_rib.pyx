# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The RIB's hot tables (docs/rib.md, "Tables"): AttrTable and AdjRibIn.

Built as ``rserver.rib._tables``; ``rserver/rib/tables_py.py`` is the readable
pure-Python reference with the same API and byte-identical results (tests run
both). All per-prefix and per-attribute-set work is C over packed buffers: no
Python object is created per prefix or per attribute set.

AttrTable
---------
Interns canonical attribute blobs (docs/codec.md) to dense u32 ids.

* ``intern_batch(attr_data, attr_index) -> idmap``: one hash lookup per
  ATTR_REC (per attribute set, never per prefix). ``idmap`` is a packed
  little-endian u32 array: ``idmap[i]`` is the global id of the batch's set i.
* ``blob(id) -> bytes``; ``rec(id) -> bytes``: the 96-byte ATTR_REC of the
  first batch that interned the blob, with ``off = 0`` and ``len = len(blob)``,
  i.e. relative to ``blob(id)`` (the other offsets in ATTR_REC are already
  relative to the blob).
* Reference counts: an AdjRibIn entry holds one reference to its attr id
  (incref on insert, decref on replace / delete / clear / sweep).
  ``incref(id)`` / ``decref(id)`` are there for any other holder (export
  queues ...).
* Freeing rule: **ids are only ever freed by ``collect()``**. An id created by
  ``intern_batch`` starts at refcount 0 and is put on the pending list; an id
  whose count drops to 0 is put on the pending list too. ``collect()`` frees
  every pending id whose count is still 0 and returns how many it freed. Freed
  ids are reused before new ones are minted, the lowest id of the last
  collect() first (a canonical order, so the reference model and this module
  hand out the same ids). The RIB calls it once per batch,
  after every AdjRibIn.apply of that batch and after the Loc-RIB / export have
  consumed the Changes (which name old ids), so an id never dies in the middle
  of a batch (e.g. a batch that withdraws the last user of a set and then
  re-announces another prefix with it). Nothing leaks: a set interned by a batch
  whose prefixes were all withdrawals is freed by the next ``collect()``.
* ``__len__`` = live ids (pending ones included), ``pending()``,
  ``refcount(id)``, ``lookup(blob) -> id | None``, ``memory_bytes()``.

AdjRibIn(afi, attrs)
--------------------
Open-addressing hash table (linear probing, power-of-two capacity, grown at
70 % load, backward-shift deletion, no tombstones) of malloc'd fixed-size
entries keyed by (path_id, plen, addr) -> (attr id, stale bit). Entry layout:
attr u32 (0xFFFFFFFF = empty slot), path_id u32, plen u8, flags u8, pad 2,
addr 4/16 bytes: 16 bytes per slot for IPv4, 28 for IPv6.

``apply(records, idmap) -> changes`` walks the prefix records (layout.py:
``<IIB`` + addr; attr_idx indexes idmap, NO_ATTR = withdrawal) in order:

* announce of an absent key: insert, change (new=id, old=NO_ATTR);
* announce of a present key with another id: replace, change (new, old);
  with the same id: no change (a stale entry only loses its stale bit);
* withdrawal of a present key: delete, change (new=NO_ATTR, old);
  of an absent key: no change.

Input is validated before anything is modified (record length, plen, attr_idx
< number of sets, every idmap id live) so a ValueError leaves the table as it
was.

Changes layout (packed, one record per effective change, in input order for
``apply``, in table order for ``clear`` / ``sweep_stale``)::

    offset size  field
    0      4     new    u32 LE: global attr id now, NO_ATTR when the key is gone
    4      4     path_id
    8      1     plen
    9      4/16  addr
    13/25  4     old    u32 LE: global attr id before, NO_ATTR when the key was absent

i.e. a prefix record carrying the *global* attr id, followed by the old id:
CHG4_SIZE = 17, CHG6_SIZE = 29. new == NO_ATTR: removal; old == NO_ATTR: new
prefix; both set: replacement.

``dump()`` returns every entry as a prefix record whose attr_idx is the global
attr id (table order). ``clear()`` withdraws everything (changes), releases the
references and shrinks the table. ``mark_stale()`` sets the stale bit on every
entry (returns the count); a re-announcement clears it; ``sweep_stale()``
removes the entries still stale (changes). ``lookup(record)`` takes a prefix
record (attr_idx ignored) and returns the attr id or None. ``__len__`` counts
entries (paths), ``count_prefixes()`` distinct (plen, addr) ignoring path ids.

LocRib(afi, attrs, *, always_compare_med=False, missing_med_worst=False, default_local_pref=100)
-----------------------------------------------------------------------------------------------
Per prefix (plen, addr): the candidates (peer index, path id, attr id), the best and the
second best (the best among candidates from a peer other than the best's: what the best's
source peer is sent, RFC 7947 §2.3.2.1). The decision is exactly
``rserver.rib.bestpath.select_best`` (steps 1-4, 7-9, set elimination for MED); the
reference model is ``rserver/rib/locrib_py.py``. ``set_peer(idx, bgp_id, addr,
peer_id=None)`` registers a source peer (steps 7-9). ``update(idx, changes)`` consumes
that peer's AdjRibIn Changes and returns, per prefix whose (best, second) changed, in order
of the prefix's first change (several changes of a prefix coalesced)::

    offset   size  field
    0        1     plen
    1        4/16  addr
    5/17     12    new best     peer u32 · path_id u32 · attr u32 (all 0xFF = none)
    17/29    12    new second
    29/41    12    old best
    41/53    12    old second

LOCCHG4_SIZE = 53, LOCCHG6_SIZE = 65; new best none = the prefix has no candidate left.
``dump_best()``: ``plen · addr · best · second`` per prefix (BEST4_SIZE 29, BEST6_SIZE 41).
See the class docstring for the rest of the API and docs/rib.md for the design.

Export kernels (RFC 7947 route server export)
---------------------------------------------
Pure twin: ``rserver/rib/export_py.py`` (byte-identical; ``gather`` / ``lookup_best`` take the
table as first argument there). C loops over the packed columns, no Python object per record
(dicts / bytes are built per distinct output key only). Peer idx = the LocRib peer index; a
*member bitmap* is bytes-like, bit ``idx & 7`` of byte ``idx >> 3`` set = member (an idx
beyond its length is not). NO_PEER = NONE = 0xFFFFFFFF. Output prefix records carry path_id 0
unless said otherwise. ``recv(m, best, second) := best if best.peer != m else second`` (what
client m is sent, RFC 7947 §2.3.2.1); a none triple is all 0xFF (attr NO_ATTR, peer NONE).

* ``export_split(locchg, afi, members) -> (general, special)``: per LOCCHG record (ob/os old
  best/second, nb/ns new), E = the members among {ob.peer, nb.peer}; its key is (NONE, NONE),
  (x, NONE) or (min, max). If ob.attr != nb.attr, ``general[key]`` gets
  ``record(nb.attr, plen, addr)`` (NO_ATTR when the prefix is gone): what every member not
  in E sees. For each m in E, if recv(m, ob, os).attr != recv(m, nb, ns).attr,
  ``special[m]`` gets ``record(recv(m, nb, ns).attr)``. Dicts of bytes (no empty value),
  records in input order, keys in order of first appearance. Two passes (count per key in
  a small C hash map, then one bytes per key written through a C cursor).
* ``select_for(best_col, afi, client, withdraw_none=False) -> bytes``: per BEST record,
  t = recv(client, best, second): ``record(t.attr)`` if present, else ``record(NO_ATTR)``
  with withdraw_none, else nothing. client = NONE: no exclusion.
* ``LocRib.lookup_best(keys) -> bytes`` (and ``lookup_best(locrib, keys)``): one BEST record
  per prefix record of ``keys`` (attr_idx, path_id ignored), in input order, best/second
  all 0xFF when the prefix is absent (software-pipelined probes).
* ``AttrTable.gather(records, afi) -> (attr_data, attr_index, local_records)``: records
  with global attr ids (each (path_id, plen, addr) at most once) reordered for
  ``rserver.codec.encode_batch``: withdrawals first (input order), then the announcements
  grouped by id in order of first appearance (stable), attr_idx rewritten to the dense
  local index; attr_data = the blobs in local order, attr_index = their ATTR_RECs with
  ``off`` rebased into attr_data. An id that is not live -> ValueError before anything.
  Per-id scratch (generation mark + local index) lives in the AttrTable: O(records + ids).
* ``addpath_map(records, afi, src_idx, changes=False) -> (bytes, max_pid)``: prefix records
  (AdjRibIn.dump() format) or Changes (``changes=True``) -> prefix records with the (new)
  attr id and ``path_id = (pid & 0xFFF) << 20 | (src_idx & 0xFFFFF)``; max_pid = the largest
  input path id (0 for no input; the caller warns when >= 4096).

All validate afi and column lengths (ValueError).
"""
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport malloc, realloc, free, calloc, qsort
from libc.stdint cimport uint8_t, uint16_t, int32_t, uint32_t, uint64_t
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

ctypedef unsigned char uchar

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static inline uint64_t rs_mix64(uint64_t x) {
        x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27; x *= 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return x;
    }
    static inline uint32_t rs_ld32(const unsigned char* p) { uint32_t v; memcpy(&v, p, 4); return v; }
    static inline uint64_t rs_ld64(const unsigned char* p) { uint64_t v; memcpy(&v, p, 8); return v; }
    static inline void rs_st32(unsigned char* p, uint32_t v) { memcpy(p, &v, 4); }
    static inline uint64_t rs_hash_bytes(const unsigned char* p, size_t n) {
        uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
        while (n >= 8) {
            uint64_t w; memcpy(&w, p, 8);
            h = (h ^ w) * 0xbf58476d1ce4e5b9ULL; h ^= h >> 29;
            p += 8; n -= 8;
        }
        if (n) {
            uint64_t w = 0; memcpy(&w, p, n);
            h = (h ^ w) * 0x94d049bb133111ebULL; h ^= h >> 32;
        }
        return rs_mix64(h);
    }
    /* key hash of a prefix: path_id, plen, 4 or 16 address bytes */
    static inline uint64_t rs_key_hash(uint32_t path_id, uint32_t plen, const unsigned char* a, int alen) {
        uint64_t c = ((uint64_t)path_id << 8) | plen;
        if (alen == 4)
            return rs_mix64((((uint64_t)rs_ld32(a)) << 32 | plen) ^ ((uint64_t)path_id * 0x9E3779B97F4A7C15ULL));
        return rs_mix64(rs_ld64(a) ^ rs_mix64(rs_ld64(a + 8) ^ c));
    }
    static inline int rs_key_eq(const unsigned char* e, uint32_t path_id, uint32_t plen, const unsigned char* a, int alen) {
        if (rs_ld32(e + 4) != path_id || e[8] != plen) return 0;
        if (alen == 4) return rs_ld32(e + 12) == rs_ld32(a);
        return rs_ld64(e + 12) == rs_ld64(a) && rs_ld64(e + 20) == rs_ld64(a + 8);
    }
    #define rs_prefetch(p) __builtin_prefetch((p), 1, 1)
    #include <stdlib.h>
    #include <sys/mman.h>
    /* Big tables are 2 MB aligned and asked to live on transparent huge pages: random
       probes over tens of MB otherwise pay a TLB miss each (THP "madvise" mode). */
    static void* rs_table_alloc(size_t n) {
        void* p = NULL;
        if (n < (2u << 20)) return malloc(n);
        if (posix_memalign(&p, 2u << 20, n)) return NULL;
    #ifdef MADV_HUGEPAGE
        madvise(p, n, MADV_HUGEPAGE);
    #endif
        return p;
    }
    """
    uint64_t rs_mix64(uint64_t x) nogil
    uint32_t rs_ld32(const uchar* p) nogil
    uint64_t rs_ld64(const uchar* p) nogil
    void rs_st32(uchar* p, uint32_t v) nogil
    uint64_t rs_hash_bytes(const uchar* p, size_t n) nogil
    uint64_t rs_key_hash(uint32_t path_id, uint32_t plen, const uchar* a, int alen) nogil
    int rs_key_eq(const uchar* e, uint32_t path_id, uint32_t plen, const uchar* a, int alen) nogil
    void rs_prefetch(const void* p) nogil
    void* rs_table_alloc(size_t n) nogil

cdef union _Endian:
    uint32_t u
    uint8_t b[4]

cdef _Endian _e
_e.u = 1
if _e.b[0] != 1:  # pragma: no cover - records are little-endian; we read them natively
    raise ImportError("rserver.rib._tables supports little-endian hosts only")

NO_ATTR = 0xFFFFFFFF
ATTR_REC_SIZE = 96
CHG4_SIZE = 17
CHG6_SIZE = 29

cdef enum:
    C_NO_ATTR = 0xFFFFFFFF
    REC_SIZE = 96          # ATTR_REC
    F_PENDING = 1          # AttrTable slot flag: on the pending list
    E_STALE = 1            # AdjRibIn entry flag
    E_HEAD = 12            # AdjRibIn entry bytes before the address
    TAB_MIN = 16           # smallest AdjRibIn capacity
    PF_DIST = 16           # prefetch distance (records / sets ahead), a power of two


cdef const uchar[::1] as_view(obj):
    """A read-only view of any contiguous bytes-like object, without copying it."""
    cdef const uchar[::1] mv
    try:
        mv = obj
    except (TypeError, ValueError, BufferError):
        mv = bytes(obj)
    return mv

cdef inline const uchar* buf_ptr(const uchar[::1] mv) noexcept:
    return &mv[0] if mv.shape[0] else <const uchar*>b""


cdef int cmp_u32(const void* a, const void* b) noexcept nogil:
    cdef uint32_t x = (<const uint32_t*>a)[0], y = (<const uint32_t*>b)[0]
    return (x > y) - (x < y)


# ======================================================================================
# AttrTable
# ======================================================================================
cdef struct ASlot:
    uchar* mem          # malloc(96 + len): ATTR_REC (off=0, len) then the blob; NULL = free
    uint32_t len
    uint32_t hash       # low 32 bits of the blob hash
    uint32_t refs
    uint32_t flags      # F_PENDING


cdef struct GMark:          # AttrTable.gather() scratch, per id
    uint32_t stamp
    uint32_t local


cdef class AttrTable:
    """Interned attribute sets: canonical blob -> dense u32 id, with reference counts."""

    cdef ASlot* slots
    cdef uint32_t n_slots       # ids handed out so far (live + free)
    cdef uint32_t slots_cap
    cdef uint32_t n_live
    cdef uint32_t* ht           # open addressing: id + 1, 0 = empty
    cdef size_t ht_cap
    cdef size_t ht_mask
    cdef uint32_t* free_ids     # stack of freed ids (reused LIFO); slots_cap entries
    cdef uint32_t n_free
    cdef uint32_t* pend         # pending list (ids that may be at refcount 0); slots_cap entries
    cdef uint32_t n_pend
    cdef size_t blob_bytes      # sum of malloc'd 96 + len
    cdef GMark* g_mark          # gather(): per id, the call that saw it last and its local index
    cdef uint32_t g_cap
    cdef uint32_t g_gen

    def __cinit__(self):
        self.ht_cap = 1024
        self.ht_mask = self.ht_cap - 1
        self.ht = <uint32_t*>calloc(self.ht_cap, sizeof(uint32_t))
        if self.ht == NULL:
            raise MemoryError()

    def __dealloc__(self):
        cdef uint32_t i
        if self.slots != NULL:
            for i in range(self.n_slots):
                if self.slots[i].mem != NULL:
                    free(self.slots[i].mem)
            free(self.slots)
        free(self.ht)
        free(self.free_ids)
        free(self.pend)
        free(self.g_mark)

    # ---- C internals -----------------------------------------------------------------
    cdef inline bint live(self, uint32_t aid) noexcept nogil:
        return aid < self.n_slots and self.slots[aid].mem != NULL

    cdef inline int push_pending(self, uint32_t aid) noexcept nogil:
        # never overflows: an id is on the list at most once (F_PENDING) and
        # pend_cap == slots_cap >= n_slots
        if self.slots[aid].flags & F_PENDING:
            return 0
        self.pend[self.n_pend] = aid
        self.n_pend += 1
        self.slots[aid].flags |= F_PENDING
        return 0

    cdef inline int incref_c(self, uint32_t aid) noexcept nogil:
        self.slots[aid].refs += 1
        return 0

    cdef inline int decref_c(self, uint32_t aid) noexcept nogil:
        cdef ASlot* s = &self.slots[aid]
        s.refs -= 1
        if s.refs == 0:
            return self.push_pending(aid)
        return 0

    cdef uint32_t find(self, const uchar* b, uint32_t n, uint64_t h) noexcept nogil:
        cdef size_t i = h & self.ht_mask
        cdef uint32_t v, h32 = <uint32_t>h
        cdef ASlot* s
        while True:
            v = self.ht[i]
            if v == 0:
                return C_NO_ATTR
            s = &self.slots[v - 1]
            if s.hash == h32 and s.len == n and memcmp(s.mem + REC_SIZE, b, n) == 0:
                return v - 1
            i = (i + 1) & self.ht_mask

    cdef int ht_grow(self) except -1:
        cdef size_t nc = self.ht_cap * 2, i, j, nm = nc - 1
        cdef uint32_t* nt = <uint32_t*>calloc(nc, sizeof(uint32_t))
        cdef uint32_t v
        if nt == NULL:
            raise MemoryError()
        for i in range(self.ht_cap):
            v = self.ht[i]
            if v:
                j = self.slots[v - 1].hash & nm
                while nt[j]:
                    j = (j + 1) & nm
                nt[j] = v
        free(self.ht)
        self.ht = nt
        self.ht_cap = nc
        self.ht_mask = nm
        return 0

    cdef uint32_t add(self, const uchar* b, uint32_t n, uint64_t h, const uchar* rec) except? 0xFFFFFFFF:
        """A new id for blob b (not present); refcount 0, pending."""
        cdef uint32_t aid, nc
        cdef uint32_t* p
        cdef ASlot* ns
        cdef uchar* mem
        cdef size_t i
        if (<size_t>self.n_live + 1) * 10 > self.ht_cap * 7:
            self.ht_grow()
        if self.n_free == 0 and self.n_slots == self.slots_cap:
            if self.n_slots >= 0xFFFFFFF0u:
                raise OverflowError("attribute id space exhausted")
            nc = self.slots_cap * 2 if self.slots_cap else 1024
            ns = <ASlot*>realloc(self.slots, nc * sizeof(ASlot))
            if ns == NULL:
                raise MemoryError()
            self.slots = ns
            p = <uint32_t*>realloc(self.pend, nc * sizeof(uint32_t))
            if p == NULL:
                raise MemoryError()
            self.pend = p
            p = <uint32_t*>realloc(self.free_ids, nc * sizeof(uint32_t))
            if p == NULL:
                raise MemoryError()
            self.free_ids = p
            self.slots_cap = nc
        mem = <uchar*>malloc(REC_SIZE + n)
        if mem == NULL:
            raise MemoryError()
        memcpy(mem, rec, REC_SIZE)
        rs_st32(mem, 0)
        rs_st32(mem + 4, n)
        memcpy(mem + REC_SIZE, b, n)
        if self.n_free:
            self.n_free -= 1
            aid = self.free_ids[self.n_free]
        else:
            aid = self.n_slots
            self.n_slots += 1
        self.slots[aid].mem = mem
        self.slots[aid].len = n
        self.slots[aid].hash = <uint32_t>h
        self.slots[aid].refs = 0
        self.slots[aid].flags = 0
        self.n_live += 1
        self.blob_bytes += REC_SIZE + n
        i = h & self.ht_mask
        while self.ht[i]:
            i = (i + 1) & self.ht_mask
        self.ht[i] = aid + 1
        self.push_pending(aid)
        return aid

    cdef void free_id(self, uint32_t aid) noexcept nogil:
        cdef ASlot* s = &self.slots[aid]
        cdef size_t i = s.hash & self.ht_mask, j, k
        # locate its hash-table entry
        while self.ht[i] != aid + 1:
            i = (i + 1) & self.ht_mask
        # backward-shift deletion
        j = i
        while True:
            j = (j + 1) & self.ht_mask
            if self.ht[j] == 0:
                break
            k = self.slots[self.ht[j] - 1].hash & self.ht_mask
            if (i <= j and i < k and k <= j) or (i > j and (i < k or k <= j)):
                continue
            self.ht[i] = self.ht[j]
            i = j
        self.ht[i] = 0
        self.blob_bytes -= REC_SIZE + s.len
        free(s.mem)
        s.mem = NULL
        s.len = 0
        s.refs = 0
        s.flags = 0
        self.n_live -= 1
        self.free_ids[self.n_free] = aid      # free_ids has slots_cap room
        self.n_free += 1

    cdef int check(self, aid) except -1:
        if not isinstance(aid, int) or aid < 0 or aid >= self.n_slots or self.slots[<uint32_t>aid].mem == NULL:
            raise KeyError(aid)
        return 0

    # ---- Python API ------------------------------------------------------------------
    def intern_batch(self, attr_data, attr_index):
        """Intern every set of a decoded batch; return the packed u32 idmap."""
        cdef const uchar[::1] dmv = as_view(attr_data)
        cdef const uchar[::1] imv = as_view(attr_index)
        cdef const uchar* d = buf_ptr(dmv)
        cdef const uchar* ix = buf_ptr(imv)
        cdef Py_ssize_t nd = dmv.shape[0], ni = imv.shape[0], nsets, i
        cdef uint32_t off, ln, aid
        cdef uint64_t h, hq
        cdef uint64_t hr[PF_DIST]
        cdef bytes out
        cdef uchar* o
        if ni % REC_SIZE:
            raise ValueError(f"attr_index length {ni} is not a multiple of {REC_SIZE}")
        nsets = ni // REC_SIZE
        for i in range(nsets):
            off = rs_ld32(ix + i * REC_SIZE)
            ln = rs_ld32(ix + i * REC_SIZE + 4)
            if <uint64_t>off + ln > <uint64_t>nd:
                raise ValueError(f"attribute set {i}: blob [{off}:{off + ln}] outside attr_data ({nd} bytes)")
        out = PyBytes_FromStringAndSize(NULL, nsets * 4)
        o = <uchar*>PyBytes_AS_STRING(out)
        # hash set i + PF_DIST and prefetch its hash-table slot while set i is looked up
        # (the table may grow inside this loop: a stale prefetch is only a wasted hint)
        for i in range(min(nsets, PF_DIST)):
            hr[i] = rs_hash_bytes(d + rs_ld32(ix + i * REC_SIZE), rs_ld32(ix + i * REC_SIZE + 4))
            rs_prefetch(&self.ht[hr[i] & self.ht_mask])
        for i in range(nsets):
            off = rs_ld32(ix + i * REC_SIZE)
            ln = rs_ld32(ix + i * REC_SIZE + 4)
            h = hr[i & (PF_DIST - 1)]
            if i + PF_DIST < nsets:
                hq = rs_hash_bytes(d + rs_ld32(ix + (i + PF_DIST) * REC_SIZE),
                                   rs_ld32(ix + (i + PF_DIST) * REC_SIZE + 4))
                hr[(i + PF_DIST) & (PF_DIST - 1)] = hq
                rs_prefetch(&self.ht[hq & self.ht_mask])
            aid = self.find(d + off, ln, h)
            if aid == C_NO_ATTR:
                aid = self.add(d + off, ln, h, ix + i * REC_SIZE)
            rs_st32(o + 4 * i, aid)
        return out

    def lookup(self, blob):
        """The id of an interned blob, or None."""
        cdef const uchar[::1] mv = as_view(blob)
        cdef uint32_t n = mv.shape[0]
        cdef uint32_t aid = self.find(buf_ptr(mv), n, rs_hash_bytes(buf_ptr(mv), n))
        return None if aid == C_NO_ATTR else aid

    def blob(self, aid):
        self.check(aid)
        cdef ASlot* s = &self.slots[<uint32_t>aid]
        return PyBytes_FromStringAndSize(<char*>s.mem + REC_SIZE, s.len)

    def rec(self, aid):
        """The set's ATTR_REC, with off = 0 and len = len(blob): relative to blob(aid)."""
        self.check(aid)
        return PyBytes_FromStringAndSize(<char*>self.slots[<uint32_t>aid].mem, REC_SIZE)

    def refcount(self, aid):
        self.check(aid)
        return self.slots[<uint32_t>aid].refs

    def incref(self, aid):
        self.check(aid)
        self.incref_c(aid)

    def decref(self, aid):
        self.check(aid)
        if self.slots[<uint32_t>aid].refs == 0:
            raise ValueError(f"attribute id {aid}: reference count already 0")
        self.decref_c(aid)

    def collect(self):
        """Free every pending id whose reference count is 0; return how many."""
        cdef Py_ssize_t i
        cdef uint32_t aid, n = 0
        cdef ASlot* s
        # canonical order (independent of table iteration order): ascending ids are
        # visited from the highest down, so the free stack hands out the lowest first
        qsort(self.pend, self.n_pend, sizeof(uint32_t), cmp_u32)
        for i in range(<Py_ssize_t>self.n_pend - 1, -1, -1):
            aid = self.pend[i]
            s = &self.slots[aid]
            s.flags &= ~F_PENDING
            if s.mem != NULL and s.refs == 0:
                self.free_id(aid)
                n += 1
        self.n_pend = 0
        return n

    def pending(self):
        """How many ids are on the pending list (may be freed by collect())."""
        return self.n_pend

    def refcounts(self):
        """{id: refcount} of every live id (tests, show commands; not the hot path)."""
        cdef uint32_t i
        return {i: self.slots[i].refs for i in range(self.n_slots) if self.slots[i].mem != NULL}

    def __len__(self):
        return self.n_live

    def __contains__(self, aid):
        return isinstance(aid, int) and 0 <= aid < self.n_slots and self.slots[<uint32_t>aid].mem != NULL

    def memory_bytes(self):
        """malloc'd bytes: slot array, hash table, id lists, and every ATTR_REC + blob
        (requested sizes; the allocator adds ~16 bytes per blob)."""
        return (self.slots_cap * sizeof(ASlot) + self.ht_cap * 4 + self.slots_cap * 8
                + self.blob_bytes + <size_t>self.g_cap * 8)

    # ---- export ------------------------------------------------------------------------
    def gather(self, records, int afi):
        """(attr_data, attr_index, local_records) for rserver.codec.encode_batch from prefix
        records carrying global attr ids (module doc, "Export kernels")."""
        cdef const uchar[::1] mv = as_view(records)
        cdef const uchar* r = buf_ptr(mv)
        cdef Py_ssize_t n = mv.shape[0], nrec, i
        cdef int rs
        cdef uint32_t aid, k = 0, j, gen, c
        cdef size_t pos, wpos = 0, total = 0, off = 0
        cdef uint32_t* ids = NULL
        cdef uint32_t* cur = NULL
        cdef const uchar* p
        cdef uchar* q
        cdef uchar* o
        cdef uchar* d
        cdef uchar* ix
        cdef ASlot* s
        cdef GMark* gm
        cdef bytes out_rec, out_data, out_index
        if afi != 1 and afi != 2:
            raise ValueError(f"afi must be 1 or 2, not {afi}")
        rs = 13 if afi == 1 else 25
        if n % rs:
            raise ValueError(f"records length {n} is not a multiple of {rs}")
        nrec = n // rs
        for i in range(nrec):
            aid = rs_ld32(r + i * rs)
            if aid != C_NO_ATTR and not self.live(aid):
                raise ValueError(f"record {i}: attr id {aid} is not live")
        if self.g_cap < self.n_slots:
            free(self.g_mark)
            self.g_cap = 0
            self.g_mark = <GMark*>calloc(self.slots_cap, sizeof(GMark))
            if self.g_mark == NULL:
                raise MemoryError()
            self.g_cap = self.slots_cap
            self.g_gen = 0
        self.g_gen += 1
        if self.g_gen == 0:                     # wrapped: forget every old mark
            memset(self.g_mark, 0, <size_t>self.g_cap * sizeof(GMark))
            self.g_gen = 1
        gen = self.g_gen
        ids = <uint32_t*>malloc((nrec + 1) * 4)
        cur = <uint32_t*>malloc((nrec + 1) * 4)
        try:
            if ids == NULL or cur == NULL:
                raise MemoryError()
            # pass 1: local ids in order of first appearance, records per id (the mark and
            # slot of record i+16 prefetched)
            for i in range(nrec):
                if i + PF_DIST < nrec:
                    aid = rs_ld32(r + (i + PF_DIST) * rs)
                    if aid != C_NO_ATTR:
                        rs_prefetch(&self.g_mark[aid])
                        rs_prefetch(&self.slots[aid])
                aid = rs_ld32(r + i * rs)
                if aid == C_NO_ATTR:
                    wpos += 1
                    continue
                gm = &self.g_mark[aid]
                if gm.stamp != gen:
                    gm.stamp = gen
                    gm.local = k
                    ids[k] = aid
                    cur[k] = 0
                    total += self.slots[aid].len
                    k += 1
                cur[gm.local] += 1
            # start of each group (withdrawals first)
            pos = wpos
            for j in range(k):
                c = cur[j]
                cur[j] = pos
                pos += c
            # pass 2: place the records
            out_rec = PyBytes_FromStringAndSize(NULL, n)
            o = <uchar*>PyBytes_AS_STRING(out_rec)
            wpos = 0
            for i in range(nrec):
                p = r + i * rs
                if i + PF_DIST < nrec:
                    aid = rs_ld32(p + PF_DIST * rs)
                    if aid != C_NO_ATTR:
                        rs_prefetch(&self.g_mark[aid])
                    if i + PF_DIST // 2 < nrec:
                        aid = rs_ld32(p + (PF_DIST // 2) * rs)
                        if aid != C_NO_ATTR:
                            rs_prefetch(o + <size_t>cur[self.g_mark[aid].local] * rs)
                aid = rs_ld32(p)
                if aid == C_NO_ATTR:
                    q = o + wpos * rs
                    wpos += 1
                    memcpy(q, p, rs)
                else:
                    j = self.g_mark[aid].local
                    q = o + <size_t>cur[j] * rs
                    cur[j] += 1
                    memcpy(q, p, rs)
                    rs_st32(q, j)
            out_data = PyBytes_FromStringAndSize(NULL, total)
            out_index = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>k * REC_SIZE)
            d = <uchar*>PyBytes_AS_STRING(out_data)
            ix = <uchar*>PyBytes_AS_STRING(out_index)
            for j in range(k):
                if j + PF_DIST < k:
                    rs_prefetch(&self.slots[ids[j + PF_DIST]])
                if j + PF_DIST // 2 < k:
                    s = &self.slots[ids[j + PF_DIST // 2]]
                    rs_prefetch(s.mem)
                    rs_prefetch(s.mem + 64)
                    rs_prefetch(s.mem + 128)
                s = &self.slots[ids[j]]
                memcpy(d + off, s.mem + REC_SIZE, s.len)
                memcpy(ix + <size_t>j * REC_SIZE, s.mem, REC_SIZE)
                rs_st32(ix + <size_t>j * REC_SIZE, <uint32_t>off)
                off += s.len
        finally:
            free(ids)
            free(cur)
        return out_data, out_index, out_rec


# ======================================================================================
# AdjRibIn
# ======================================================================================
cdef struct Tab:
    uchar* e            # cap * stride bytes
    size_t cap
    size_t mask
    size_t count
    size_t grow_at
    int alen            # 4 or 16
    int stride          # 16 or 28


cdef int tab_init(Tab* t, int alen, size_t cap) except -1:
    t.alen = alen
    t.stride = E_HEAD + alen
    t.e = <uchar*>rs_table_alloc(cap * t.stride)
    if t.e == NULL:
        raise MemoryError()
    memset(t.e, 0xFF, cap * t.stride)
    t.cap = cap
    t.mask = cap - 1
    t.count = 0
    t.grow_at = cap * 7 // 10
    return 0


cdef inline size_t tab_probe(Tab* t, uint32_t path_id, uint32_t plen, const uchar* a, bint* found) noexcept nogil:
    """Index of the key's entry (found = 1) or of the empty slot where it goes."""
    return tab_probe_h(t, rs_key_hash(path_id, plen, a, t.alen), path_id, plen, a, found)


cdef inline size_t tab_probe_h(Tab* t, uint64_t h, uint32_t path_id, uint32_t plen, const uchar* a,
                               bint* found) noexcept nogil:
    cdef size_t i = h & t.mask
    cdef uchar* e
    while True:
        e = t.e + i * t.stride
        if rs_ld32(e) == C_NO_ATTR:
            found[0] = 0
            return i
        if rs_key_eq(e, path_id, plen, a, t.alen):
            found[0] = 1
            return i
        i = (i + 1) & t.mask


cdef int tab_resize(Tab* t, size_t nc) except -1:
    cdef Tab n
    cdef size_t i, j
    cdef uchar* e
    tab_init(&n, t.alen, nc)
    for i in range(t.cap):
        e = t.e + i * t.stride
        if rs_ld32(e) != C_NO_ATTR:
            j = rs_key_hash(rs_ld32(e + 4), e[8], e + E_HEAD, t.alen) & n.mask
            while rs_ld32(n.e + j * n.stride) != C_NO_ATTR:
                j = (j + 1) & n.mask
            memcpy(n.e + j * n.stride, e, t.stride)
    n.count = t.count
    free(t.e)
    t[0] = n
    return 0


cdef int tab_reserve(Tab* t, size_t n) except -1:
    cdef size_t nc = t.cap
    while n > nc * 7 // 10:
        nc *= 2
    if nc != t.cap:
        tab_resize(t, nc)
    return 0


cdef void tab_delete(Tab* t, size_t i) noexcept nogil:
    """Backward-shift deletion of the entry at index i."""
    cdef size_t j = i, k
    cdef uchar* e
    cdef int s = t.stride
    while True:
        j = (j + 1) & t.mask
        e = t.e + j * s
        if rs_ld32(e) == C_NO_ATTR:
            break
        k = rs_key_hash(rs_ld32(e + 4), e[8], e + E_HEAD, t.alen) & t.mask
        if (i <= j and i < k and k <= j) or (i > j and (i < k or k <= j)):
            continue
        memcpy(t.e + i * s, e, s)
        i = j
    memset(t.e + i * s, 0xFF, s)
    t.count -= 1


cdef class AdjRibIn:
    """One peer's routes of one address family: (path_id, plen, addr) -> attr id + stale bit."""

    cdef Tab t
    cdef readonly int afi
    cdef readonly AttrTable attrs
    cdef int rs                 # prefix record size (13 / 25)
    cdef int cs                 # change record size (17 / 29)
    cdef int maxlen             # 32 / 128
    cdef size_t n_stale
    cdef size_t n_pathid        # entries with a non-zero path id

    def __cinit__(self, int afi, AttrTable attrs not None):
        if afi not in (1, 2):
            raise ValueError(f"afi must be 1 or 2, not {afi}")
        self.afi = afi
        self.attrs = attrs
        self.rs = 13 if afi == 1 else 25
        self.cs = self.rs + 4
        self.maxlen = 32 if afi == 1 else 128
        tab_init(&self.t, 4 if afi == 1 else 16, TAB_MIN)

    def __dealloc__(self):
        # an AdjRibIn dropped without clear() still gives its references back
        cdef size_t i
        cdef uint32_t aid
        cdef AttrTable at = self.attrs
        if self.t.e == NULL:
            return
        if at is not None and at.slots != NULL:
            for i in range(self.t.cap):
                aid = rs_ld32(self.t.e + i * self.t.stride)
                if aid != C_NO_ATTR and at.live(aid) and at.slots[aid].refs:
                    at.decref_c(aid)
        free(self.t.e)
        self.t.e = NULL

    def apply(self, records, idmap):
        """Apply a packed prefix-record column; return the effective changes (module doc)."""
        cdef const uchar[::1] rmv = as_view(records)
        cdef const uchar[::1] mmv = as_view(idmap)
        cdef const uchar* r = buf_ptr(rmv)
        cdef const uchar* m = buf_ptr(mmv)
        cdef Py_ssize_t n = rmv.shape[0], nm = mmv.shape[0], nrec, nsets, i, k = 0
        cdef int rs = self.rs, cs = self.cs, alen = self.t.alen
        cdef uint32_t idx, aid, old, path_id, plen
        cdef size_t n_ann = 0, pos
        cdef bint found
        cdef const uchar* p
        cdef const uchar* q
        cdef uint64_t h, hq
        cdef uint64_t hr[PF_DIST]
        cdef uchar* e
        cdef uchar* o
        cdef bytes out
        cdef AttrTable at = self.attrs
        if n % rs:
            raise ValueError(f"records length {n} is not a multiple of {rs}")
        if nm % 4:
            raise ValueError(f"idmap length {nm} is not a multiple of 4")
        nrec = n // rs
        nsets = nm // 4
        for i in range(nsets):
            aid = rs_ld32(m + 4 * i)
            if not at.live(aid):
                raise ValueError(f"idmap[{i}] = {aid} is not a live attribute id")
        for i in range(nrec):
            p = r + i * rs
            idx = rs_ld32(p)
            if p[8] > self.maxlen:
                raise ValueError(f"record {i}: prefix length {p[8]} > {self.maxlen}")
            if idx != C_NO_ATTR:
                if idx >= nsets:
                    raise ValueError(f"record {i}: attr_idx {idx} >= {nsets} sets in idmap")
                n_ann += 1
        tab_reserve(&self.t, self.t.count + n_ann)
        if nrec == 0:
            return b""
        out = PyBytes_FromStringAndSize(NULL, nrec * cs)
        o = <uchar*>PyBytes_AS_STRING(out)
        # software pipelining: hash record i + PF_DIST and prefetch its home slot while
        # record i is processed (the table does not resize inside this loop)
        for i in range(min(nrec, PF_DIST)):
            p = r + i * rs
            hr[i] = rs_key_hash(rs_ld32(p + 4), p[8], p + 9, alen)
            rs_prefetch(self.t.e + (hr[i] & self.t.mask) * self.t.stride)
        for i in range(nrec):
            p = r + i * rs
            h = hr[i & (PF_DIST - 1)]
            if i + PF_DIST < nrec:
                q = p + PF_DIST * rs
                hq = rs_key_hash(rs_ld32(q + 4), q[8], q + 9, alen)
                hr[(i + PF_DIST) & (PF_DIST - 1)] = hq
                rs_prefetch(self.t.e + (hq & self.t.mask) * self.t.stride)
            idx = rs_ld32(p)
            path_id = rs_ld32(p + 4)
            plen = p[8]
            pos = tab_probe_h(&self.t, h, path_id, plen, p + 9, &found)
            e = self.t.e + pos * self.t.stride
            if idx != C_NO_ATTR:
                aid = rs_ld32(m + 4 * idx)
                if found:
                    if e[9] & E_STALE:
                        e[9] &= ~E_STALE
                        self.n_stale -= 1
                    old = rs_ld32(e)
                    if old == aid:
                        continue
                    rs_st32(e, aid)
                    at.slots[aid].refs += 1
                    at.decref_c(old)
                else:
                    rs_st32(e, aid)
                    memcpy(e + 4, p + 4, 5)       # path_id, plen
                    e[9] = 0
                    e[10] = 0
                    e[11] = 0
                    memcpy(e + E_HEAD, p + 9, alen)
                    self.t.count += 1
                    if path_id:
                        self.n_pathid += 1
                    at.slots[aid].refs += 1
                    old = C_NO_ATTR
            else:
                if not found:
                    continue
                aid = C_NO_ATTR
                old = rs_ld32(e)
                if e[9] & E_STALE:
                    self.n_stale -= 1
                if path_id:
                    self.n_pathid -= 1
                tab_delete(&self.t, pos)
                at.decref_c(old)
            rs_st32(o + k * cs, aid)
            memcpy(o + k * cs + 4, p + 4, rs - 4)
            rs_st32(o + k * cs + rs, old)
            k += 1
        if k == nrec:
            return out
        return out[:k * cs]

    cdef bytes entries_out(self, bint changes, bint stale_only):
        """Entries (all, or the stale ones) as change records or as prefix records."""
        cdef size_t i, k = 0, n = self.n_stale if stale_only else self.t.count
        cdef int sz = self.cs if changes else self.rs, rs = self.rs, alen = self.t.alen
        cdef uchar* e
        cdef uchar* o
        cdef bytes out
        if n == 0:
            return b""
        out = PyBytes_FromStringAndSize(NULL, n * sz)
        o = <uchar*>PyBytes_AS_STRING(out)
        for i in range(self.t.cap):
            e = self.t.e + i * self.t.stride
            if rs_ld32(e) == C_NO_ATTR or (stale_only and not (e[9] & E_STALE)):
                continue
            if changes:
                rs_st32(o, C_NO_ATTR)
                rs_st32(o + rs, rs_ld32(e))
            else:
                rs_st32(o, rs_ld32(e))
            memcpy(o + 4, e + 4, 5)
            memcpy(o + 9, e + E_HEAD, alen)
            o += sz
            k += 1
        assert k == n
        return out

    def dump(self):
        """Every entry as a prefix record whose attr_idx is the global attr id (table order)."""
        return self.entries_out(False, False)

    def clear(self):
        """Session down: withdraw everything; return the changes, release the references."""
        cdef bytes out = self.entries_out(True, False)
        cdef size_t i, nrec = self.t.count
        cdef AttrTable at = self.attrs
        for i in range(nrec):
            at.decref_c(rs_ld32(<const uchar*>PyBytes_AS_STRING(out) + i * self.cs + self.rs))
        free(self.t.e)
        self.t.e = NULL
        tab_init(&self.t, self.t.alen, TAB_MIN)
        self.n_stale = 0
        self.n_pathid = 0
        return out

    def mark_stale(self):
        """Graceful restart (RFC 4724 helper): mark every entry stale; return the count."""
        cdef size_t i
        cdef uchar* e
        for i in range(self.t.cap):
            e = self.t.e + i * self.t.stride
            if rs_ld32(e) != C_NO_ATTR:
                e[9] |= E_STALE
        self.n_stale = self.t.count
        return self.n_stale

    def sweep_stale(self):
        """Remove the entries still stale; return the changes (withdrawals)."""
        cdef bytes out = self.entries_out(True, True)
        cdef size_t i, pos, nrec = self.n_stale
        cdef const uchar* c = <const uchar*>PyBytes_AS_STRING(out)
        cdef const uchar* p
        cdef bint found
        cdef AttrTable at = self.attrs
        for i in range(nrec):
            p = c + i * self.cs
            pos = tab_probe(&self.t, rs_ld32(p + 4), p[8], p + 9, &found)
            if rs_ld32(p + 4):
                self.n_pathid -= 1
            tab_delete(&self.t, pos)
            at.decref_c(rs_ld32(p + self.rs))
        self.n_stale = 0
        return out

    def stale_count(self):
        return self.n_stale

    cdef const uchar* _entry(self, record) except? NULL:
        """The table entry of a prefix record's key (attr_idx ignored), NULL when absent."""
        cdef const uchar[::1] mv = as_view(record)
        cdef const uchar* p = buf_ptr(mv)
        cdef bint found
        cdef size_t pos
        if mv.shape[0] != self.rs:
            raise ValueError(f"a prefix record is {self.rs} bytes, not {mv.shape[0]}")
        pos = tab_probe(&self.t, rs_ld32(p + 4), p[8], p + 9, &found)
        return self.t.e + pos * self.t.stride if found else NULL

    def lookup(self, record):
        """The attr id stored for a prefix record's key (attr_idx ignored), or None."""
        cdef const uchar* e = self._entry(record)
        return rs_ld32(e) if e != NULL else None

    def is_stale(self, record):
        """True / False for a present key, None when absent."""
        cdef const uchar* e = self._entry(record)
        return bool(e[9] & E_STALE) if e != NULL else None

    def __len__(self):
        return self.t.count

    def count_prefixes(self):
        """Distinct (plen, addr) ignoring ADD-PATH path ids."""
        cdef Tab tmp
        cdef size_t i, pos
        cdef uchar* e
        cdef uchar* d
        cdef bint found
        if self.n_pathid == 0:
            return self.t.count
        tab_init(&tmp, self.t.alen, TAB_MIN)
        try:
            tab_reserve(&tmp, self.t.count)
            for i in range(self.t.cap):
                e = self.t.e + i * self.t.stride
                if rs_ld32(e) == C_NO_ATTR:
                    continue
                pos = tab_probe(&tmp, 0, e[8], e + E_HEAD, &found)
                if not found:
                    d = tmp.e + pos * tmp.stride
                    memcpy(d, e, tmp.stride)
                    rs_st32(d + 4, 0)
                    tmp.count += 1
            return tmp.count
        finally:
            free(tmp.e)

    def capacity(self):
        return self.t.cap

    def memory_bytes(self):
        """malloc'd bytes of the hash table (capacity x 16 / 28)."""
        return self.t.cap * self.t.stride


# ======================================================================================
# LocRib
# ======================================================================================
# Layouts (see the LocRib class docstring and docs/rib.md):
#   candidate / path triple: peer u32 · path_id u32 · attr u32 (12 bytes); "none" = all 0xFF
#   effective change: plen u8 · addr 4/16 · new best · new second · old best · old second
#   best record (dump_best): plen u8 · addr 4/16 · best · second
LOCCHG4_SIZE = 53
LOCCHG6_SIZE = 65
BEST4_SIZE = 29
BEST6_SIZE = 41
NO_PEER = 0xFFFFFFFF
MAX_PEERS = 1 << 20

cdef enum:
    C_NO_PEER = 0xFFFFFFFF
    C_MAX_PEERS = 1 << 20
    LR_MIN = 16


cdef struct Cand:           # 32 bytes; the decision fields are copied from the attr cache
    uint64_t k123           # steps 1-3 as one key, lowest best: (~pref) << 24 | path_len << 8 | origin
    uint32_t peer
    uint32_t path_id
    uint32_t attr
    uint32_t med            # MED, or the missing-MED value (0 / 0xFFFFFFFF)
    uint32_t first_as       # neighbour AS, 0 = unknown
    uint32_t pad


cdef struct DAttr:          # decision fields of one attr id, with the options applied
    uint64_t k123
    uint32_t med
    uint32_t first_as
    uint32_t refs           # candidates of this LocRib naming the id (cache valid while > 0)
    uint32_t pad


cdef extern from *:
    """
    #include <stdint.h>
    #include <stdlib.h>
    #include <sys/mman.h>
    /* LocRib index and entry arrays: big ones are their own 2 MB aligned mappings (huge
       pages asked for), unmapped when replaced, so growth leaves no heap fragments. */
    #define LR_MAP_MIN ((size_t)1 << 20)
    static void* lr_alloc(size_t n) {
        size_t al = (size_t)2 << 20, head, tail;
        char* q; uintptr_t s;
        if (n < LR_MAP_MIN) return malloc(n);
        q = (char*)mmap(NULL, n + al, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (q == (char*)MAP_FAILED) return NULL;
        s = ((uintptr_t)q + al - 1) & ~(uintptr_t)(al - 1);
        head = s - (uintptr_t)q;
        tail = al - head;
        if (head) munmap(q, head);
        if (tail) munmap((char*)s + n, tail);
    #ifdef MADV_HUGEPAGE
        madvise((void*)s, n, MADV_HUGEPAGE);
    #endif
        return (void*)s;
    }
    static void lr_free(void* p, size_t n) {
        if (p == NULL) return;
        if (n < LR_MAP_MIN) free(p); else munmap(p, n);
    }
    """
    void* lr_alloc(size_t n) nogil
    void lr_free(void* p, size_t n) nogil


cdef struct LEnt:           # dense prefix entry; stride 24 + alen: 28 bytes (IPv4), 40 (IPv6)
    uint32_t w0             # n == 1: the only candidate's peer · path_id · attr (its decision
    uint32_t w1             # fields stay in the attr cache); n >= 2: w0..w1 hold the CVec*
    uint32_t w2
    uint32_t n              # candidates (0 only transiently, inside update())
    uint32_t didx           # index in the running update's dirty list, NOT_DIRTY otherwise
    uint8_t plen
    uint8_t pad[3]
    uchar addr[16]          # only alen bytes exist (the stride ends there)


cdef struct CVec:           # malloc'd candidate vector of a prefix with n >= 2 candidates:
    int32_t best            # this 16-byte header, then Cand[cap] (cap: next power of two >= n)
    int32_t second          # indices into the Cand array (second -1 = none)
    uint32_t pad0
    uint32_t pad1


cdef enum:
    NOT_DIRTY = 0xFFFFFFFF
    PF_E = 11               # update(): entry prefetch distance (index: PF_DIST, vector: 4)
    IX_EMPTY = 0xFFFFFFFF   # entry part (low 32 bits) of an empty index slot


cdef struct Trip:
    uint32_t peer
    uint32_t path_id
    uint32_t attr


cdef struct Dirty:
    Trip ob                 # (best, second) before this update
    Trip os
    Trip nb                 # and after
    Trip ns
    uint32_t eidx           # the entry (entries only move in phase 3: an emptied prefix's
    uint8_t empty           # key, plen · addr, is then copied over ob/os, and found again)


cdef struct PeerInfo:
    uint32_t bgp_id
    uint32_t peer_id
    uint32_t rank           # dense rank of (bgp_id, addr len, addr, peer_id) among peers
    uint32_t ncand          # candidates this peer holds
    uint8_t alen            # 0 = not registered
    uchar addr[16]


cdef inline uint64_t lr_hash(uint32_t plen, const uchar* a, int alen) noexcept nogil:
    if alen == 4:
        return rs_mix64((<uint64_t>rs_ld32(a) << 8) | plen)
    return rs_mix64(rs_ld64(a) ^ rs_mix64(rs_ld64(a + 8) ^ plen))


cdef inline void put_trip(uchar* o, const Trip* c) noexcept nogil:
    rs_st32(o, c.peer)
    rs_st32(o + 4, c.path_id)
    rs_st32(o + 8, c.attr)


cdef inline CVec* ent_vec(const LEnt* e) noexcept nogil:
    cdef CVec* v
    memcpy(&v, &e.w0, sizeof(CVec*))
    return v


cdef inline void ent_set_vec(LEnt* e, CVec* v) noexcept nogil:
    memcpy(&e.w0, &v, sizeof(CVec*))


cdef inline Cand* vec_c(CVec* v) noexcept nogil:
    return <Cand*>(v + 1)


cdef inline size_t vec_bytes(uint32_t cap) noexcept nogil:
    return sizeof(CVec) + cap * sizeof(Cand)


cdef inline uint32_t vec_cap(uint32_t n) noexcept nogil:
    cdef uint32_t c = 2
    while c < n:
        c *= 2
    return c


cdef inline Trip ent_trip(const LEnt* e, bint second) noexcept nogil:
    """The best (second = 0) or the second best of an entry as a triple (none: all 0xFF)."""
    cdef Trip t
    cdef CVec* v
    cdef Cand* c
    cdef int32_t k
    t.peer = C_NO_PEER
    t.path_id = 0xFFFFFFFF
    t.attr = C_NO_ATTR
    if e.n == 1:
        if not second:
            t.peer = e.w0
            t.path_id = e.w1
            t.attr = e.w2
    elif e.n >= 2:
        v = ent_vec(e)
        k = v.second if second else v.best
        if k >= 0:
            c = vec_c(v) + k
            t.peer = c.peer
            t.path_id = c.path_id
            t.attr = c.attr
    return t


cdef inline bint trip_eq(const Trip* a, const Trip* b) noexcept nogil:
    return a.peer == b.peer and a.path_id == b.path_id and a.attr == b.attr


def _cand_tuple(uint32_t peer, uint32_t path_id, uint32_t attr):
    if attr == C_NO_ATTR:
        return None
    return (peer, path_id, attr)


cdef class LocRib:
    """Loc-RIB of one address family: (plen, addr) -> candidates, best and second best.

    ``LocRib(afi, attrs, *, always_compare_med=False, missing_med_worst=False,
    default_local_pref=100)``. ``set_peer(idx, bgp_id, addr, peer_id=None)`` registers
    the source peer of index ``idx`` (< 2**20; ``addr`` 4 or 16 bytes; ``peer_id``
    defaults to ``idx``) for decision steps 7-9; its fields cannot change while it holds
    candidates. ``update(idx, changes)`` consumes AdjRibIn Changes of that peer
    (``new u32 · path_id u32 · plen u8 · addr · old u32``; new = NO_ATTR removes the
    candidate (peer, path_id) if present, anything else inserts or replaces it; ``old``
    is not read) and returns the effective changes, one record per prefix whose
    (best, second) pair changed, in order of the prefix's first change in the input::

        plen u8 · addr 4/16 · new_best · new_second · old_best · old_second

    each a path triple ``peer u32 · path_id u32 · attr u32`` (LE), all 0xFF = none
    (LOCCHG4_SIZE 53, LOCCHG6_SIZE 65). Several changes of one prefix in one call are
    coalesced (old = before the call, new = after). best = bestpath.select_best over the
    candidates; second = select_best over the candidates whose peer index differs from
    the best's (what the best's source peer gets, RFC 7947 §2.3.2.1).

    ``best(key) -> (best, second)`` (each (peer, path_id, attr) or None), ``candidates(key)
    -> [(peer, path_id, attr), ...]``, where key is (plen, addr bytes) or a prefix
    record; ``dump_best()`` -> ``plen · addr · best · second`` per prefix (BEST4_SIZE 29,
    BEST6_SIZE 41, entry order, unspecified); ``len()`` = prefixes with a candidate;
    ``memory_bytes()``.

    Protocol: call update() with every Changes column of an AdjRibIn of the same
    AttrTable before ``AttrTable.collect()``: a candidate's attr id is kept alive by the
    AdjRibIn entry, not by the LocRib. The decision fields of an attr id are cached when
    its first candidate arrives (LocRib-local count 0 -> 1).
    """

    cdef readonly int afi
    cdef readonly AttrTable attrs
    cdef readonly bint always_compare_med
    cdef readonly bint missing_med_worst
    cdef readonly uint32_t default_local_pref
    cdef int alen, maxlen, rs_chg, out_size, best_size
    cdef uint64_t* ix               # index slots: hash tag (low 32 hash bits) << 32 | entry
    cdef size_t cap, mask, count    # index slots, cap - 1, prefixes (= entries)
    cdef uchar* ents                # dense entries (LEnt, stride es), compacted on delete
    cdef size_t ecap, es
    cdef DAttr* da
    cdef uint32_t da_cap
    cdef PeerInfo* peers
    cdef uint32_t peers_cap
    cdef uint32_t* scr             # decision scratch: 2 x scr_cap indices
    cdef uint32_t scr_cap
    cdef size_t n_cands
    cdef size_t cand_bytes         # malloc'd vectors in use
    cdef void* pool                # free list of capacity-2 vectors left by 2 -> 1 removals
    cdef size_t npool

    def __cinit__(self, int afi, AttrTable attrs not None, *, bint always_compare_med=False,
                  bint missing_med_worst=False, uint32_t default_local_pref=100):
        if afi not in (1, 2):
            raise ValueError(f"afi must be 1 or 2, not {afi}")
        self.afi = afi
        self.attrs = attrs
        self.always_compare_med = always_compare_med
        self.missing_med_worst = missing_med_worst
        self.default_local_pref = default_local_pref
        self.alen = 4 if afi == 1 else 16
        self.maxlen = 32 if afi == 1 else 128
        self.rs_chg = 13 + self.alen
        self.out_size = 1 + self.alen + 48
        self.best_size = 1 + self.alen + 24
        self.es = 24 + self.alen
        self.ix_init(LR_MIN)
        self.ents_grow(LR_MIN)

    def __dealloc__(self):
        cdef size_t i
        cdef void* v
        if self.ents != NULL:
            for i in range(self.count):
                if self.ent(i).n >= 2:
                    free(ent_vec(self.ent(i)))
            lr_free(self.ents, self.ecap * self.es)
        lr_free(self.ix, self.cap * sizeof(uint64_t))
        while self.pool != NULL:
            v = self.pool
            self.pool = (<void**>v)[0]
            free(v)
        free(self.da)
        free(self.peers)
        free(self.scr)

    # ---- index + dense entries ---------------------------------------------------------
    cdef inline LEnt* ent(self, size_t i) noexcept nogil:
        return <LEnt*>(self.ents + i * self.es)

    cdef int ix_init(self, size_t cap) except -1:
        cdef uint64_t* p = <uint64_t*>lr_alloc(cap * sizeof(uint64_t))
        if p == NULL:
            raise MemoryError()
        memset(p, 0xFF, cap * sizeof(uint64_t))
        self.ix = p
        self.cap = cap
        self.mask = cap - 1
        return 0

    cdef int ents_grow(self, size_t n) except -1:
        cdef size_t nc = self.ecap if self.ecap else LR_MIN
        cdef uchar* p
        while nc < n:
            nc *= 2
        if nc == self.ecap:
            return 0
        p = <uchar*>lr_alloc(nc * self.es)
        if p == NULL:
            raise MemoryError()
        if self.count:
            memcpy(p, self.ents, self.count * self.es)
        lr_free(self.ents, self.ecap * self.es)
        self.ents = p
        self.ecap = nc
        return 0

    cdef inline CVec* v2_alloc(self) noexcept nogil:
        """A capacity-2 vector: from the free list, else malloc'd (NULL: out of memory)."""
        cdef void* p = self.pool
        if p != NULL:
            self.pool = (<void**>p)[0]
            self.npool -= 1
        else:
            p = malloc(vec_bytes(2))
            if p == NULL:
                return NULL
        self.cand_bytes += vec_bytes(2)
        return <CVec*>p

    cdef inline void v2_free(self, CVec* v) noexcept nogil:
        """Keep a capacity-2 vector for the next 1 -> 2 insert (a 2 -> 1 removal, e.g. a
        session down, pays no free(): its next-chunk check is a cache miss per prefix)."""
        (<void**>v)[0] = self.pool
        self.pool = v
        self.npool += 1
        self.cand_bytes -= vec_bytes(2)

    cdef inline bint key_eq(self, const LEnt* e, uint32_t plen, const uchar* a) noexcept nogil:
        if e.plen != plen:
            return 0
        if self.alen == 4:
            return rs_ld32(e.addr) == rs_ld32(a)
        return rs_ld64(e.addr) == rs_ld64(a) and rs_ld64(e.addr + 8) == rs_ld64(a + 8)

    cdef inline size_t probe_h(self, uint64_t h, uint32_t plen, const uchar* a,
                               bint* found) noexcept nogil:
        """Index slot of the key (found) or the empty slot ending its probe sequence."""
        cdef uint32_t tag = <uint32_t>h
        cdef size_t i = tag & self.mask
        cdef uint64_t s
        while True:
            s = self.ix[i]
            if <uint32_t>s == IX_EMPTY:
                found[0] = 0
                return i
            if <uint32_t>(s >> 32) == tag and self.key_eq(self.ent(<uint32_t>s), plen, a):
                found[0] = 1
                return i
            i = (i + 1) & self.mask

    cdef inline size_t probe(self, uint32_t plen, const uchar* a, bint* found) noexcept nogil:
        return self.probe_h(lr_hash(plen, a, self.alen), plen, a, found)

    cdef inline uint32_t peek(self, uint64_t h) noexcept nogil:
        """Entry of the first index slot with h's tag (a prefetch hint: tags only)."""
        cdef uint32_t tag = <uint32_t>h
        cdef size_t i = tag & self.mask
        cdef uint64_t s
        while True:
            s = self.ix[i]
            if <uint32_t>s == IX_EMPTY or <uint32_t>(s >> 32) == tag:
                return <uint32_t>s
            i = (i + 1) & self.mask

    cdef int reserve(self, size_t n) except -1:
        """Index capacity for n prefixes (70 % load); rehashing reads the tags only."""
        cdef size_t nc = self.cap, i, j, oc = self.cap
        cdef uint64_t* old = self.ix
        while n > nc * 7 // 10:
            nc *= 2
        if nc == oc:
            return 0
        self.ix_init(nc)
        for i in range(oc):
            if <uint32_t>old[i] != IX_EMPTY:
                j = <uint32_t>(old[i] >> 32) & self.mask
                while <uint32_t>self.ix[j] != IX_EMPTY:
                    j = (j + 1) & self.mask
                self.ix[j] = old[i]
        lr_free(old, oc * sizeof(uint64_t))
        return 0

    cdef void ix_delete(self, size_t i) noexcept nogil:
        """Backward-shift deletion of index slot i (home slots from the tags)."""
        cdef size_t j = i, k
        cdef uint64_t s
        while True:
            j = (j + 1) & self.mask
            s = self.ix[j]
            if <uint32_t>s == IX_EMPTY:
                break
            k = <uint32_t>(s >> 32) & self.mask
            if (i <= j and i < k and k <= j) or (i > j and (i < k or k <= j)):
                continue
            self.ix[i] = s
            i = j
        self.ix[i] = 0xFFFFFFFFFFFFFFFFULL

    cdef void remove_key(self, uint32_t plen, const uchar* a) noexcept nogil:
        """Delete a prefix: its index slot, then the last entry moves into its hole."""
        cdef bint found
        cdef size_t pos = self.probe(plen, a, &found)
        cdef uint32_t x, last
        cdef uint64_t h
        cdef LEnt* e
        cdef LEnt* el
        if not found:
            return
        x = <uint32_t>self.ix[pos]
        e = self.ent(x)
        if e.n == 2:                            # (not reached: only emptied prefixes go)
            self.v2_free(ent_vec(e))
        elif e.n > 2:
            free(ent_vec(e))
            self.cand_bytes -= vec_bytes(vec_cap(e.n))
        self.ix_delete(pos)
        last = <uint32_t>(self.count - 1)
        if x != last:
            el = self.ent(last)
            h = lr_hash(el.plen, el.addr, self.alen)
            pos = <uint32_t>h & self.mask
            while <uint32_t>self.ix[pos] != last:
                pos = (pos + 1) & self.mask
            self.ix[pos] = (self.ix[pos] & 0xFFFFFFFF00000000ULL) | x
            memcpy(e, el, self.es)
        self.count -= 1

    # ---- attr cache ---------------------------------------------------------------------
    cdef int da_reserve(self, uint32_t n) except -1:
        cdef uint32_t nc = self.da_cap if self.da_cap else 1024
        cdef DAttr* d
        while nc < n:
            nc *= 2
        if nc == self.da_cap:
            return 0
        d = <DAttr*>realloc(self.da, nc * sizeof(DAttr))
        if d == NULL:
            raise MemoryError()
        memset(d + self.da_cap, 0, (nc - self.da_cap) * sizeof(DAttr))
        self.da = d
        self.da_cap = nc
        return 0

    cdef inline void attr_ref(self, uint32_t aid, Cand* c) noexcept nogil:
        """Take a reference to the cached decision fields of aid and copy them into c."""
        cdef const uchar* rec
        cdef uint32_t flags, pref = 0
        cdef DAttr* d = &self.da[aid]
        if d.refs == 0:
            rec = self.attrs.slots[aid].mem
            flags = rs_ld32(rec + 8)
            # ATTR_REC: flags @8, origin @12, path_len @14, first_as @16, med @24, local_pref @28
            if flags & 0x80:                    # AF_GSHUT: LOCAL_PREF 0 (RFC 8326 §4)
                pref = 0
            elif flags & 0x2:                   # AF_LOCAL_PREF
                pref = rs_ld32(rec + 28)
            else:
                pref = self.default_local_pref
            if flags & 0x1:                     # AF_MED
                d.med = rs_ld32(rec + 24)
            else:
                d.med = 0xFFFFFFFF if self.missing_med_worst else 0
            d.first_as = rs_ld32(rec + 16)
            d.k123 = ((<uint64_t>(<uint32_t>0xFFFFFFFF - pref)) << 24) | (<uint64_t>rec[14] << 8) | (<uint64_t>rec[15] << 16) | rec[12]
        d.refs += 1
        c.attr = aid
        c.k123 = d.k123
        c.med = d.med
        c.first_as = d.first_as

    cdef inline void attr_unref(self, uint32_t aid) noexcept nogil:
        self.da[aid].refs -= 1

    # ---- decision -------------------------------------------------------------------------
    cdef int scr_reserve(self, uint32_t n) except -1:
        cdef uint32_t nc = self.scr_cap if self.scr_cap else 64
        cdef uint32_t* p
        while nc < n:
            nc *= 2
        if nc == self.scr_cap:
            return 0
        p = <uint32_t*>realloc(self.scr, 2 * nc * sizeof(uint32_t))
        if p == NULL:
            raise MemoryError()
        self.scr = p
        self.scr_cap = nc
        return 0

    cdef int32_t select(self, const Cand* c, uint32_t n, uint32_t excl) noexcept nogil:
        """bestpath.select_best over the candidates whose peer != excl (-1 if none)."""
        cdef uint32_t* a = self.scr
        cdef uint32_t* b = self.scr + self.scr_cap
        cdef uint32_t k = 0, m = 0, i, j, v, fa, med
        cdef const PeerInfo* pr = self.peers
        cdef bint drop
        cdef uint64_t key, bkey = 0xFFFFFFFFFFFFFFFFULL
        # steps 1-3 (highest LOCAL_PREF/GSHUT, shortest AS_PATH, lowest ORIGIN): successive
        # eliminations on single fields = keep the minimum of the lexicographic key k123
        for i in range(n):
            if c[i].peer != excl:
                a[k] = i
                k += 1
                if c[i].k123 < bkey:
                    bkey = c[i].k123
        if k <= 1:
            return <int32_t>a[0] if k else -1
        for i in range(k):
            if c[a[i]].k123 == bkey:
                b[m] = a[i]
                m += 1
        if m == 1:
            return <int32_t>b[0]
        a, b = b, a
        k = m
        m = 0
        # step 4: lowest MED, set-based within neighbour-AS groups (or all: always-compare)
        if self.always_compare_med:
            v = 0xFFFFFFFF
            for i in range(k):
                if c[a[i]].med < v:
                    v = c[a[i]].med
            for i in range(k):
                if c[a[i]].med == v:
                    b[m] = a[i]
                    m += 1
        else:
            for i in range(k):
                fa = c[a[i]].first_as
                med = c[a[i]].med
                drop = 0
                if fa:
                    for j in range(k):
                        if c[a[j]].first_as == fa and c[a[j]].med < med:
                            drop = 1
                            break
                if not drop:
                    b[m] = a[i]
                    m += 1
        if m == 1:
            return <int32_t>b[0]
        # steps 7, 8, 9: lowest (BGP id, peer address (v4 first), peer id) = the peer's rank,
        # then lowest path id; the first in candidate order on a complete tie
        j = b[0]
        bkey = (<uint64_t>pr[c[j].peer].rank << 32) | c[j].path_id
        for i in range(1, m):
            key = (<uint64_t>pr[c[b[i]].peer].rank << 32) | c[b[i]].path_id
            if key < bkey:
                bkey = key
                j = b[i]
        return <int32_t>j

    cdef inline void decide(self, LEnt* e) noexcept nogil:
        """Re-decide a prefix with n >= 2 candidates (n == 1: best = it, no second)."""
        cdef CVec* v
        cdef Cand* c
        if e.n < 2:
            return
        v = ent_vec(e)
        c = vec_c(v)
        v.best = self.select(c, e.n, C_NO_PEER)
        v.second = self.select(c, e.n, c[v.best].peer)

    cdef inline void attr_fill(self, uint32_t aid, Cand* c) noexcept nogil:
        """Copy the cached decision fields of aid (refs > 0) into c."""
        cdef DAttr* d = &self.da[aid]
        c.attr = aid
        c.k123 = d.k123
        c.med = d.med
        c.first_as = d.first_as

    # ---- peers ----------------------------------------------------------------------------
    def set_peer(self, uint32_t idx, uint32_t bgp_id, addr, peer_id=None):
        """Register (or re-register) the source peer ``idx`` for decision steps 7-9."""
        cdef bytes ab = bytes(addr)
        cdef uint32_t pid = idx if peer_id is None else peer_id
        cdef uint32_t nc, i
        cdef PeerInfo* p
        if idx >= C_MAX_PEERS:
            raise ValueError(f"peer index {idx} >= {C_MAX_PEERS}")
        if len(ab) not in (4, 16):
            raise ValueError("peer address must be 4 or 16 bytes")
        if idx >= self.peers_cap:
            nc = self.peers_cap if self.peers_cap else 64
            while nc <= idx:
                nc *= 2
            p = <PeerInfo*>realloc(self.peers, nc * sizeof(PeerInfo))
            if p == NULL:
                raise MemoryError()
            memset(p + self.peers_cap, 0, (nc - self.peers_cap) * sizeof(PeerInfo))
            self.peers = p
            self.peers_cap = nc
        p = &self.peers[idx]
        if p.alen and p.ncand and (p.bgp_id != bgp_id or p.peer_id != pid or p.alen != len(ab)
                                   or memcmp(p.addr, <const uchar*>PyBytes_AS_STRING(ab), p.alen)):
            raise ValueError(f"peer {idx} holds {p.ncand} candidates: its decision fields cannot change")
        p.bgp_id = bgp_id
        p.peer_id = pid
        p.alen = len(ab)
        memset(p.addr, 0, 16)
        memcpy(p.addr, PyBytes_AS_STRING(ab), p.alen)
        self.rerank()

    def remove_peer(self, uint32_t idx):
        """Forget peer ``idx`` (it must hold no candidates)."""
        if idx < self.peers_cap and self.peers[idx].alen:
            if self.peers[idx].ncand:
                raise ValueError(f"peer {idx} holds {self.peers[idx].ncand} candidates")
            self.peers[idx].alen = 0
            self.rerank()

    def peer(self, uint32_t idx):
        """(bgp_id, addr, peer_id, candidates held) of a registered peer, or None."""
        if idx >= self.peers_cap or not self.peers[idx].alen:
            return None
        cdef PeerInfo* p = &self.peers[idx]
        return (p.bgp_id, PyBytes_FromStringAndSize(<char*>p.addr, p.alen), p.peer_id, p.ncand)

    cdef rerank(self):
        # the order of existing peers never changes when one is added/removed, so bests stand
        cdef uint32_t i
        keys = sorted((self.peers[i].bgp_id, self.peers[i].alen,
                       PyBytes_FromStringAndSize(<char*>self.peers[i].addr, self.peers[i].alen),
                       self.peers[i].peer_id, i)
                      for i in range(self.peers_cap) if self.peers[i].alen)
        rank = 0
        prev = None
        for k in keys:
            if prev is not None and k[:4] != prev:
                rank += 1
            self.peers[<uint32_t>k[4]].rank = rank
            prev = k[:4]

    # ---- update ---------------------------------------------------------------------------
    def reserve_prefixes(self, size_t n):
        """Size the prefix index and entries for n prefixes (e.g. before a full-table load)."""
        self.reserve(n)
        self.ents_grow(n)

    def update(self, uint32_t peer_idx, changes):
        """Apply one peer's AdjRibIn Changes; return the effective changes (class doc)."""
        cdef const uchar[::1] cmv = as_view(changes)
        cdef const uchar* r = buf_ptr(cmv)
        cdef Py_ssize_t n = cmv.shape[0], nrec, i, nd = 0, k = 0
        cdef int cs = self.rs_chg, alen = self.alen, osz = self.out_size
        cdef uint32_t aid, path_id, plen, j, nn, x
        cdef uint32_t maxa = 0
        cdef const uchar* p
        cdef const uchar* q
        cdef LEnt* e
        cdef CVec* v
        cdef CVec* nv
        cdef PeerInfo* pi
        cdef Dirty* d
        cdef size_t pos, m, vb
        cdef bint found, marks_clear = 0
        cdef Dirty* dl = NULL
        cdef Cand* cv
        cdef Cand tmp
        cdef uint64_t h, hq, k123
        cdef uint32_t med, fa
        cdef uint64_t hr[PF_DIST]
        cdef uint32_t er[PF_DIST]
        cdef AttrTable at = self.attrs
        cdef bytes out
        cdef uchar* o
        if n % cs:
            raise ValueError(f"changes length {n} is not a multiple of {cs}")
        if peer_idx >= self.peers_cap or not self.peers[peer_idx].alen:
            raise ValueError(f"peer {peer_idx} is not registered (set_peer)")
        nrec = n // cs
        for i in range(nrec):
            p = r + i * cs
            if p[8] > self.maxlen:
                raise ValueError(f"change {i}: prefix length {p[8]} > {self.maxlen}")
            aid = rs_ld32(p)
            if aid != C_NO_ATTR:
                if not at.live(aid):
                    raise ValueError(f"change {i}: attr id {aid} is not live")
                if aid >= maxa:
                    maxa = aid + 1
        if nrec == 0:
            return b""
        self.da_reserve(maxa)
        pi = &self.peers[peer_idx]
        dl = <Dirty*>malloc(nrec * sizeof(Dirty))
        if dl == NULL:
            raise MemoryError()
        try:
            # phase 1: apply each change to its prefix's candidates and re-decide the prefix
            # (entries do not move: emptied prefixes are deleted in phase 3; new ones are
            # appended). Software pipelining: index slot of change i+16 hashed and
            # prefetched (and its attr cache line), its entry at i+8 (tag match), the
            # candidate vector at i+4.
            for i in range(min(nrec, PF_DIST)):
                p = r + i * cs
                hr[i] = lr_hash(p[8], p + 9, alen)
                rs_prefetch(&self.ix[hr[i] & self.mask])
            for i in range(min(nrec, PF_E)):
                er[i] = self.peek(hr[i])
                if er[i] < self.count:
                    e = self.ent(er[i])
                    rs_prefetch(e)
                    rs_prefetch(<uchar*>e + self.es - 1)
            for i in range(nrec):
                p = r + i * cs
                h = hr[i & (PF_DIST - 1)]
                if i + PF_DIST < nrec:
                    q = p + PF_DIST * cs
                    hq = lr_hash(q[8], q + 9, alen)
                    hr[(i + PF_DIST) & (PF_DIST - 1)] = hq
                    rs_prefetch(&self.ix[hq & self.mask])
                    aid = rs_ld32(q)
                    if aid != C_NO_ATTR:
                        rs_prefetch(&self.da[aid])
                if i + PF_E < nrec:
                    x = self.peek(hr[(i + PF_E) & (PF_DIST - 1)])
                    er[(i + PF_E) & (PF_DIST - 1)] = x
                    if x < self.count:
                        e = self.ent(x)
                        rs_prefetch(e)
                        rs_prefetch(<uchar*>e + self.es - 1)
                if i + PF_DIST // 4 < nrec:
                    x = er[(i + PF_DIST // 4) & (PF_DIST - 1)]
                    if x < self.count:
                        e = self.ent(x)
                        if e.n == 1:            # (an insert copies its decision fields)
                            rs_prefetch(&self.da[e.w2])
                        elif e.n >= 2:
                            v = ent_vec(e)
                            vb = sizeof(CVec) + e.n * sizeof(Cand)
                            for m in range(0, vb, 64):
                                rs_prefetch(<uchar*>v + m)
                aid = rs_ld32(p)
                path_id = rs_ld32(p + 4)
                plen = p[8]
                pos = self.probe_h(h, plen, p + 9, &found)
                if not found:
                    if aid == C_NO_ATTR:
                        continue
                    if (self.count + 1) * 10 > self.cap * 7:
                        # grow here, not up front (most changes hit known prefixes); entry
                        # indices stand, the prefetched hints stay valid
                        self.reserve(self.count + 1)
                        pos = self.probe_h(h, plen, p + 9, &found)
                    if self.count == self.ecap:
                        self.ents_grow(self.count + 1)
                    x = <uint32_t>self.count
                    self.ix[pos] = ((h & 0xFFFFFFFFULL) << 32) | x
                    e = self.ent(x)
                    memset(e, 0, self.es)
                    e.didx = NOT_DIRTY
                    e.plen = plen
                    memcpy(e.addr, p + 9, alen)
                    self.count += 1
                else:
                    x = <uint32_t>self.ix[pos]
                    e = self.ent(x)
                # find the candidate (peer, path_id): j == nn when absent
                nn = e.n
                cv = NULL
                v = NULL
                if nn == 1:
                    j = 0 if (e.w0 == peer_idx and e.w1 == path_id) else 1
                elif nn >= 2:
                    v = ent_vec(e)
                    cv = vec_c(v)
                    j = 0
                    while j < nn and not (cv[j].peer == peer_idx and cv[j].path_id == path_id):
                        j += 1
                else:
                    j = 0
                if aid == C_NO_ATTR and j == nn:
                    continue                    # withdrawal of an unknown path
                if e.didx == NOT_DIRTY:
                    e.didx = <uint32_t>nd
                    d = &dl[nd]
                    d.ob = ent_trip(e, 0)
                    d.os = ent_trip(e, 1)
                    d.nb = d.ob
                    d.ns = d.os
                    d.empty = 0
                    d.eidx = x
                    nd += 1
                d = &dl[e.didx]
                if aid == C_NO_ATTR:            # remove (swap the last in)
                    pi.ncand -= 1
                    self.n_cands -= 1
                    if nn == 1:
                        self.attr_unref(e.w2)
                        e.n = 0
                    else:
                        nv = NULL
                        if nn == 3:             # capacity 4 -> a vector of 2
                            nv = self.v2_alloc()
                            if nv == NULL:
                                pi.ncand += 1
                                self.n_cands += 1
                                raise MemoryError()
                        self.attr_unref(cv[j].attr)
                        nn -= 1
                        cv[j] = cv[nn]
                        if nn == 1:             # back to the inline candidate
                            e.w0 = cv[0].peer
                            e.w1 = cv[0].path_id
                            e.w2 = cv[0].attr
                            self.v2_free(v)
                        elif nn == 2:
                            memcpy(nv, v, vec_bytes(2))
                            free(v)
                            self.cand_bytes -= vec_bytes(4)     # (v2_alloc counted nv)
                            ent_set_vec(e, nv)
                        elif (nn & (nn - 1)) == 0:      # shrink to n
                            v = <CVec*>realloc(v, vec_bytes(nn))
                            if v != NULL:
                                self.cand_bytes -= nn * sizeof(Cand)
                                ent_set_vec(e, v)
                        e.n = nn
                elif j < nn:                    # replace
                    if nn == 1:
                        if e.w2 == aid:
                            continue            # (AdjRibIn never sends this)
                        self.attr_unref(e.w2)
                        self.attr_ref(aid, &tmp)
                        e.w2 = aid
                        d.nb = ent_trip(e, 0)
                        continue
                    if cv[j].attr == aid:
                        continue
                    k123 = cv[j].k123
                    med = cv[j].med
                    fa = cv[j].first_as
                    self.attr_unref(cv[j].attr)
                    self.attr_ref(aid, &cv[j])
                    if cv[j].k123 == k123 and cv[j].med == med and cv[j].first_as == fa:
                        # same decision fields (e.g. only communities changed): the
                        # indices of best and second stand, only the attr id is new
                        d.nb = ent_trip(e, 0)
                        d.ns = ent_trip(e, 1)
                        continue
                else:                           # insert
                    if nn == 0:
                        self.attr_ref(aid, &tmp)
                        e.w0 = peer_idx
                        e.w1 = path_id
                        e.w2 = aid
                        e.n = 1
                        d.nb = ent_trip(e, 0)
                        d.ns = ent_trip(e, 1)
                        d.empty = 0
                        pi.ncand += 1
                        self.n_cands += 1
                        continue
                    if nn == 1:                 # inline candidate -> vector of 2
                        v = self.v2_alloc()
                        if v == NULL:
                            raise MemoryError()
                        cv = vec_c(v)
                        cv[0].peer = e.w0
                        cv[0].path_id = e.w1
                        cv[0].pad = 0
                        self.attr_fill(e.w2, &cv[0])
                        ent_set_vec(e, v)
                    elif nn == 2:               # capacity 2 -> 4
                        nv = <CVec*>malloc(vec_bytes(4))
                        if nv == NULL:
                            raise MemoryError()
                        memcpy(nv, v, vec_bytes(2))
                        free(v)
                        self.cand_bytes += vec_bytes(4) - vec_bytes(2)
                        v = nv
                        ent_set_vec(e, v)
                        cv = vec_c(v)
                    elif (nn & (nn - 1)) == 0:
                        v = <CVec*>realloc(v, vec_bytes(2 * nn))
                        if v == NULL:
                            raise MemoryError()
                        self.cand_bytes += nn * sizeof(Cand)
                        ent_set_vec(e, v)
                        cv = vec_c(v)
                    cv[nn].peer = peer_idx
                    cv[nn].path_id = path_id
                    cv[nn].pad = 0
                    self.attr_ref(aid, &cv[nn])
                    e.n = nn + 1
                    pi.ncand += 1
                    self.n_cands += 1
                    if e.n > self.scr_cap:
                        self.scr_reserve(e.n)
                self.decide(e)
                d.nb = ent_trip(e, 0)
                d.ns = ent_trip(e, 1)
                d.empty = e.n == 0
            # phase 2: emit the prefixes whose (best, second) changed (key from the entry,
            # prefetched 8 ahead), clear the dirty marks, keep the keys of emptied prefixes
            out = PyBytes_FromStringAndSize(NULL, nd * osz)
            o = <uchar*>PyBytes_AS_STRING(out)
            for i in range(min(nd, PF_DIST // 2)):
                rs_prefetch(self.ent(dl[i].eidx))
            for i in range(nd):
                if i + PF_DIST // 2 < nd:
                    e = self.ent(dl[i + PF_DIST // 2].eidx)
                    rs_prefetch(e)
                    rs_prefetch(<uchar*>e + self.es - 1)
                d = &dl[i]
                e = self.ent(d.eidx)
                e.didx = NOT_DIRTY
                if not (trip_eq(&d.nb, &d.ob) and trip_eq(&d.ns, &d.os)):
                    o[0] = e.plen
                    memcpy(o + 1, e.addr, alen)
                    put_trip(o + 1 + alen, &d.nb)
                    put_trip(o + 13 + alen, &d.ns)
                    put_trip(o + 25 + alen, &d.ob)
                    put_trip(o + 37 + alen, &d.os)
                    o += osz
                    k += 1
                if d.empty:
                    (<uchar*>d)[0] = e.plen
                    memcpy(<uchar*>d + 1, e.addr, alen)
            marks_clear = 1
            # phase 3: drop the prefixes left without candidates (entries move from here on:
            # the last fills the hole, so each is found again by its key)
            for i in range(nd):
                if dl[i].empty:
                    self.remove_key((<uchar*>&dl[i])[0], <uchar*>&dl[i] + 1)
        finally:
            if not marks_clear:
                for i in range(nd):
                    self.ent(dl[i].eidx).didx = NOT_DIRTY
            free(dl)
        if k == nd:
            return out
        return out[:k * osz]

    # ---- queries ----------------------------------------------------------------------------
    cdef LEnt* find_key(self, key) except? NULL:
        cdef bytes kb
        cdef uchar a[16]
        cdef uint32_t plen
        cdef size_t pos
        cdef bint found
        if isinstance(key, tuple):
            plen, addr = key
            kb = bytes(addr)
            if len(kb) != self.alen:
                raise ValueError(f"address must be {self.alen} bytes")
        else:
            kb = bytes(key)
            if len(kb) != 9 + self.alen:
                raise ValueError(f"a prefix record is {9 + self.alen} bytes, not {len(kb)}")
            plen = kb[8]
            kb = kb[9:]
        if plen > <uint32_t>self.maxlen:
            raise ValueError(f"prefix length {plen} > {self.maxlen}")
        memcpy(a, PyBytes_AS_STRING(kb), self.alen)
        pos = self.probe(plen, a, &found)
        if not found or self.ent(<uint32_t>self.ix[pos]).n == 0:
            return NULL
        return self.ent(<uint32_t>self.ix[pos])

    def best(self, key):
        """(best, second) of a prefix, each (peer, path_id, attr) or None.

        ``key`` is (plen, addr bytes) or a prefix record (attr_idx and path_id ignored)."""
        cdef LEnt* e = self.find_key(key)
        cdef Trip b, c
        if e == NULL:
            return (None, None)
        b = ent_trip(e, 0)
        c = ent_trip(e, 1)
        return (_cand_tuple(b.peer, b.path_id, b.attr), _cand_tuple(c.peer, c.path_id, c.attr))

    def candidates(self, key):
        """[(peer, path_id, attr), ...] of a prefix, in stored order; [] when absent."""
        cdef LEnt* e = self.find_key(key)
        cdef Cand* cv
        cdef uint32_t i
        if e == NULL:
            return []
        if e.n == 1:
            return [(e.w0, e.w1, e.w2)]
        cv = vec_c(ent_vec(e))
        return [(cv[i].peer, cv[i].path_id, cv[i].attr) for i in range(e.n)]

    def dump_best(self):
        """plen · addr · best · second for every prefix (entry order)."""
        cdef size_t i, bs = self.best_size
        cdef int alen = self.alen
        cdef bytes out = PyBytes_FromStringAndSize(NULL, self.count * bs)
        cdef uchar* o = <uchar*>PyBytes_AS_STRING(out)
        cdef LEnt* e
        cdef Trip b, c
        for i in range(self.count):
            e = self.ent(i)
            if i + 4 < self.count and self.ent(i + 4).n >= 2:
                rs_prefetch(ent_vec(self.ent(i + 4)))
            b = ent_trip(e, 0)
            c = ent_trip(e, 1)
            o[0] = e.plen
            memcpy(o + 1, e.addr, alen)
            put_trip(o + 1 + alen, &b)
            put_trip(o + 13 + alen, &c)
            o += bs
        return out

    def lookup_best(self, keys):
        """plen · addr · best · second (dump_best layout) for each prefix record of ``keys``
        (attr_idx and path_id ignored), in input order; best/second all 0xFF when absent."""
        cdef const uchar[::1] mv = as_view(keys)
        cdef const uchar* r = buf_ptr(mv)
        cdef Py_ssize_t n = mv.shape[0], nrec, i
        cdef int alen = self.alen, rs = 9 + self.alen, bs = self.best_size
        cdef const uchar* p
        cdef const uchar* q
        cdef uchar* o
        cdef LEnt* e
        cdef size_t pos, m, vb
        cdef uint32_t x
        cdef bint found
        cdef Trip b, c
        cdef uint64_t hr[PF_DIST]
        cdef LEnt* sr[PF_DIST]
        cdef bytes out
        if n % rs:
            raise ValueError(f"keys length {n} is not a multiple of {rs}")
        nrec = n // rs
        for i in range(nrec):
            if r[i * rs + 8] > self.maxlen:
                raise ValueError(f"key {i}: prefix length {r[i * rs + 8]} > {self.maxlen}")
        out = PyBytes_FromStringAndSize(NULL, nrec * bs)
        o = <uchar*>PyBytes_AS_STRING(out)
        # software pipelining: index slot of key i+16 hashed and prefetched, the entry of
        # key i+8 (tag match) prefetched, key i+4 probed and its candidate vector
        # prefetched, key i emitted
        for i in range(min(nrec, PF_DIST)):
            p = r + i * rs
            hr[i] = lr_hash(p[8], p + 9, alen)
            rs_prefetch(&self.ix[hr[i] & self.mask])
        for i in range(min(nrec, PF_DIST // 4)):
            p = r + i * rs
            pos = self.probe_h(hr[i], p[8], p + 9, &found)
            sr[i] = self.ent(<uint32_t>self.ix[pos]) if found else NULL
        for i in range(PF_DIST // 4, min(nrec, PF_DIST // 2)):
            x = self.peek(hr[i])
            if x < self.count:
                rs_prefetch(self.ent(x))
                rs_prefetch(<uchar*>self.ent(x) + self.es - 1)
        for i in range(nrec):
            p = r + i * rs
            if i + PF_DIST // 4 < nrec:
                q = p + (PF_DIST // 4) * rs
                pos = self.probe_h(hr[(i + PF_DIST // 4) & (PF_DIST - 1)], q[8], q + 9, &found)
                e = self.ent(<uint32_t>self.ix[pos]) if found else NULL
                sr[(i + PF_DIST // 4) & (PF_DIST - 1)] = e
                if e != NULL and e.n >= 2:
                    vb = sizeof(CVec) + e.n * sizeof(Cand)
                    if vb > 192:
                        vb = 192
                    for m in range(0, vb, 64):
                        rs_prefetch(<uchar*>ent_vec(e) + m)
            if i + PF_DIST // 2 < nrec:
                x = self.peek(hr[(i + PF_DIST // 2) & (PF_DIST - 1)])
                if x < self.count:
                    e = self.ent(x)
                    rs_prefetch(e)
                    rs_prefetch(<uchar*>e + self.es - 1)
            if i + PF_DIST < nrec:
                q = p + PF_DIST * rs
                hr[i & (PF_DIST - 1)] = lr_hash(q[8], q + 9, alen)
                rs_prefetch(&self.ix[hr[i & (PF_DIST - 1)] & self.mask])
            e = sr[i & (PF_DIST - 1)]
            o[0] = p[8]
            memcpy(o + 1, p + 9, alen)
            if e == NULL or e.n == 0:
                memset(o + 1 + alen, 0xFF, 24)
            else:
                b = ent_trip(e, 0)
                c = ent_trip(e, 1)
                put_trip(o + 1 + alen, &b)
                put_trip(o + 13 + alen, &c)
            o += bs
        return out

    def __len__(self):
        return self.count

    def n_candidates(self):
        return self.n_cands

    def capacity(self):
        return self.cap

    def memory_bytes(self):
        """malloc'd bytes: index, entries, candidate vectors, attr cache, peers, scratch."""
        return (self.cap * sizeof(uint64_t) + self.ecap * self.es + self.cand_bytes
                + self.npool * vec_bytes(2)
                + self.da_cap * sizeof(DAttr) + self.peers_cap * sizeof(PeerInfo)
                + self.scr_cap * 8)


# ======================================================================================
# Export kernels (module doc, "Export kernels"; pure twin rserver/rib/export_py.py)
# ======================================================================================
cdef inline void put_prefix(uchar* w, uint32_t attr, const uchar* key, int alen) noexcept nogil:
    """A prefix record (attr, path_id 0, plen, addr) from plen · addr at ``key``."""
    rs_st32(w, attr)
    rs_st32(w + 4, 0)
    w[8] = key[0]
    if alen == 4:
        rs_st32(w + 9, rs_ld32(key + 1))
    else:
        memcpy(w + 9, key + 1, 16)


cdef struct KEnt:
    uint64_t key
    size_t count
    uchar* w                # write cursor into the key's output bytes


cdef struct KMap:           # tiny insertion-ordered map u64 -> dense entry index
    uint32_t* ht            # entry index + 1, 0 = empty
    size_t mask
    KEnt* e
    size_t n
    size_t ecap


cdef int kmap_init(KMap* m) except -1:
    m.mask = 15
    m.ht = <uint32_t*>calloc(16, 4)
    m.ecap = 8
    m.e = <KEnt*>malloc(8 * sizeof(KEnt))
    m.n = 0
    if m.ht == NULL or m.e == NULL:
        raise MemoryError()
    return 0


cdef void kmap_free(KMap* m) noexcept nogil:
    free(m.ht)
    free(m.e)
    m.ht = NULL
    m.e = NULL


cdef inline size_t kmap_slot(KMap* m, uint64_t key) noexcept nogil:
    cdef size_t i = rs_mix64(key) & m.mask
    while m.ht[i] and m.e[m.ht[i] - 1].key != key:
        i = (i + 1) & m.mask
    return i


cdef Py_ssize_t kmap_get(KMap* m, uint64_t key) except -1:
    """Index of key's entry, created (count 0) when absent."""
    cdef size_t i = kmap_slot(m, key), j, nc
    cdef uint32_t* nh
    cdef KEnt* ne
    if m.ht[i]:
        return m.ht[i] - 1
    if m.n == m.ecap:
        ne = <KEnt*>realloc(m.e, 2 * m.ecap * sizeof(KEnt))
        if ne == NULL:
            raise MemoryError()
        m.e = ne
        m.ecap *= 2
    m.e[m.n].key = key
    m.e[m.n].count = 0
    m.e[m.n].w = NULL
    m.ht[i] = m.n + 1
    m.n += 1
    if 2 * m.n > m.mask:
        nc = 2 * (m.mask + 1)
        nh = <uint32_t*>calloc(nc, 4)
        if nh == NULL:
            raise MemoryError()
        free(m.ht)
        m.ht = nh
        m.mask = nc - 1
        for j in range(m.n):
            m.ht[kmap_slot(m, m.e[j].key)] = j + 1
    return m.n - 1


cdef inline bint is_member(const uchar* mb, size_t nmb, uint32_t idx) noexcept nogil:
    return (idx >> 3) < nmb and (mb[idx >> 3] >> (idx & 7)) & 1


def export_split(locchg, int afi, members):
    """Split LocRib.update output into what every member sees (``general``, keyed by the
    members among the old/new best's peers) and what those members see (``special``, keyed
    by member idx): two dicts of packed prefix records (module doc, "Export kernels")."""
    cdef const uchar[::1] mv = as_view(locchg)
    cdef const uchar[::1] bm = as_view(members)
    cdef const uchar* r = buf_ptr(mv)
    cdef const uchar* mb = buf_ptr(bm)
    cdef size_t nmb = bm.shape[0]
    cdef Py_ssize_t n = mv.shape[0], nrec, i, gi, si0, si1
    cdef int alen, osz, rs
    cdef const uchar* p
    cdef const uchar* t
    cdef uint32_t nbp, nba, nsa, obp, oba, osa, e1, e2, lo, hi, o, nn, m
    cdef uint64_t key, gkey_last = 0, skey_last = 0
    cdef Py_ssize_t gidx_last = -1, sidx_last = -1
    cdef int32_t* slot = NULL
    cdef KMap G, S
    cdef KEnt* e
    cdef bytes b
    cdef dict general = {}, special = {}
    cdef int k
    if afi != 1 and afi != 2:
        raise ValueError(f"afi must be 1 or 2, not {afi}")
    alen = 4 if afi == 1 else 16
    osz = 1 + alen + 48
    rs = 9 + alen
    if n % osz:
        raise ValueError(f"locchg length {n} is not a multiple of {osz}")
    nrec = n // osz
    if nrec == 0:
        return general, special
    G.ht = NULL
    G.e = NULL
    S.ht = NULL
    S.e = NULL
    slot = <int32_t*>malloc(nrec * 3 * sizeof(int32_t))
    try:
        if slot == NULL:
            raise MemoryError()
        kmap_init(&G)
        kmap_init(&S)
        # pass 1: the output key(s) of each record, counts per key
        for i in range(nrec):
            p = r + i * osz
            t = p + 1 + alen
            nbp = rs_ld32(t)
            nba = rs_ld32(t + 8)
            nsa = rs_ld32(t + 20)
            obp = rs_ld32(t + 24)
            oba = rs_ld32(t + 32)
            osa = rs_ld32(t + 44)
            e1 = obp if is_member(mb, nmb, obp) else C_NO_PEER
            e2 = nbp if is_member(mb, nmb, nbp) else C_NO_PEER
            if e1 == e2:
                e2 = C_NO_PEER
            lo = e1 if e1 < e2 else e2
            hi = e2 if e1 < e2 else e1
            gi = -1
            if oba != nba:
                key = (<uint64_t>lo << 32) | hi
                if gidx_last < 0 or key != gkey_last:
                    gidx_last = kmap_get(&G, key)
                    gkey_last = key
                gi = gidx_last
                G.e[gi].count += 1
            si0 = -1
            si1 = -1
            for k in range(2):
                m = lo if k == 0 else hi
                if m == C_NO_PEER:
                    continue
                o = oba if obp != m else osa
                nn = nba if nbp != m else nsa
                if o == nn:
                    continue
                key = m
                if sidx_last < 0 or key != skey_last:
                    sidx_last = kmap_get(&S, key)
                    skey_last = key
                S.e[sidx_last].count += 1
                if k == 0:
                    si0 = sidx_last
                else:
                    si1 = sidx_last
            slot[3 * i] = <int32_t>gi
            slot[3 * i + 1] = <int32_t>si0
            slot[3 * i + 2] = <int32_t>si1
        # one bytes object per key (in order of first appearance)
        for i in range(<Py_ssize_t>G.n):
            e = &G.e[i]
            b = PyBytes_FromStringAndSize(NULL, e.count * rs)
            e.w = <uchar*>PyBytes_AS_STRING(b)
            lo = <uint32_t>(e.key >> 32)
            hi = <uint32_t>e.key
            general[(lo, hi)] = b
        for i in range(<Py_ssize_t>S.n):
            e = &S.e[i]
            b = PyBytes_FromStringAndSize(NULL, e.count * rs)
            e.w = <uchar*>PyBytes_AS_STRING(b)
            special[<uint32_t>e.key] = b
        # pass 2: write the records
        for i in range(nrec):
            p = r + i * osz
            t = p + 1 + alen
            gi = slot[3 * i]
            if gi >= 0:
                e = &G.e[gi]
                put_prefix(e.w, rs_ld32(t + 8), p, alen)
                e.w += rs
            for k in range(2):
                gi = slot[3 * i + 1 + k]
                if gi < 0:
                    continue
                e = &S.e[gi]
                m = <uint32_t>e.key
                put_prefix(e.w, rs_ld32(t + 8) if rs_ld32(t) != m else rs_ld32(t + 20), p, alen)
                e.w += rs
    finally:
        free(slot)
        kmap_free(&G)
        kmap_free(&S)
    return general, special


def select_for(best_col, int afi, uint32_t client, bint withdraw_none=False):
    """Prefix records (path_id 0) of what ``client`` is sent from BEST records: the best
    unless it is the client's own, then the second; nothing (or a withdrawal with
    ``withdraw_none``) when that is none. client = NO_PEER: no exclusion."""
    cdef const uchar[::1] mv = as_view(best_col)
    cdef const uchar* r = buf_ptr(mv)
    cdef Py_ssize_t n = mv.shape[0], nrec, i, k = 0
    cdef int alen, bs, rs
    cdef const uchar* p
    cdef uint32_t a
    cdef uchar* o
    cdef bytes out
    if afi != 1 and afi != 2:
        raise ValueError(f"afi must be 1 or 2, not {afi}")
    alen = 4 if afi == 1 else 16
    bs = 1 + alen + 24
    rs = 9 + alen
    if n % bs:
        raise ValueError(f"best_col length {n} is not a multiple of {bs}")
    nrec = n // bs
    if withdraw_none:
        k = nrec
    else:
        for i in range(nrec):
            p = r + i * bs + 1 + alen
            a = rs_ld32(p + 8) if rs_ld32(p) != client else rs_ld32(p + 20)
            k += a != C_NO_ATTR
    out = PyBytes_FromStringAndSize(NULL, k * rs)
    o = <uchar*>PyBytes_AS_STRING(out)
    for i in range(nrec):
        p = r + i * bs
        a = rs_ld32(p + 9 + alen) if rs_ld32(p + 1 + alen) != client else rs_ld32(p + 21 + alen)
        if a != C_NO_ATTR or withdraw_none:
            put_prefix(o, a, p, alen)
            o += rs
    return out


def lookup_best(LocRib locrib not None, keys):
    """``locrib.lookup_best(keys)`` (the same call shape as the pure twin)."""
    return locrib.lookup_best(keys)


def addpath_map(records, int afi, uint32_t src_idx, bint changes=False):
    """(prefix records, max input path id): attr_idx = the (new) attr id, path_id =
    (pid & 0xFFF) << 20 | (src_idx & 0xFFFFF), for ADD-PATH send clients."""
    cdef const uchar[::1] mv = as_view(records)
    cdef const uchar* r = buf_ptr(mv)
    cdef Py_ssize_t n = mv.shape[0], nrec, i
    cdef int rs, isz
    cdef const uchar* p
    cdef uchar* o
    cdef uint32_t pid, maxp = 0, low = src_idx & 0xFFFFF
    cdef bytes out
    if afi != 1 and afi != 2:
        raise ValueError(f"afi must be 1 or 2, not {afi}")
    rs = 13 if afi == 1 else 25
    isz = rs + 4 if changes else rs
    if n % isz:
        raise ValueError(f"records length {n} is not a multiple of {isz}")
    nrec = n // isz
    out = PyBytes_FromStringAndSize(NULL, nrec * rs)
    o = <uchar*>PyBytes_AS_STRING(out)
    for i in range(nrec):
        p = r + i * isz
        pid = rs_ld32(p + 4)
        if pid > maxp:
            maxp = pid
        memcpy(o, p, rs)
        rs_st32(o + 4, ((pid & 0xFFF) << 20) | low)
        o += rs
    return out, maxp


def unique_prefixes(columns, int afi):
    """Distinct prefixes named by ``columns``, as prefix records (attr_idx NO_ATTR, path_id
    0, plen, addr), in order of first appearance. Each column is either a LocRib.update
    output (LOCCHG records) or a column of prefix records (given as ``("keys", bytes)``):
    what a blocked client must be sent the current state of (docs/export.md). A C hash set
    over (plen, addr): no Python object per prefix."""
    cdef int alen, rs_in, koff, krs
    cdef Py_ssize_t total = 0, n, i, k = 0
    cdef uint64_t cap, mask, h, j
    cdef uint32_t* tab = NULL
    cdef const uchar[::1] mv
    cdef const uchar* r
    cdef const uchar* key
    cdef uchar* o
    cdef uchar* base
    cdef bytes out
    if afi != 1 and afi != 2:
        raise ValueError(f"afi must be 1 or 2, not {afi}")
    alen = 4 if afi == 1 else 16
    krs = 9 + alen                              # a prefix record
    cols = []
    for c in columns:
        if isinstance(c, tuple):
            mv = as_view(c[1])
            if mv.shape[0] % krs:
                raise ValueError(f"key column length {mv.shape[0]} is not a multiple of {krs}")
            cols.append((mv, krs, 8))
            total += mv.shape[0] // krs
        else:
            mv = as_view(c)
            rs_in = 1 + alen + 48               # LOCCHG: plen, addr, four path triples
            if mv.shape[0] % rs_in:
                raise ValueError(f"locchg column length {mv.shape[0]} is not a multiple of {rs_in}")
            cols.append((mv, rs_in, 0))
            total += mv.shape[0] // rs_in
    cap = 16
    while cap < <uint64_t>(total * 2 + 1):
        cap <<= 1
    mask = cap - 1
    tab = <uint32_t*>calloc(cap, sizeof(uint32_t))      # 1 + output index; 0 = empty
    if tab == NULL:
        raise MemoryError()
    out = PyBytes_FromStringAndSize(NULL, total * krs)
    base = <uchar*>PyBytes_AS_STRING(out)
    try:
        for col in cols:
            mv = col[0]
            rs_in = col[1]
            koff = col[2]
            r = buf_ptr(mv)
            n = mv.shape[0] // rs_in
            for i in range(n):
                key = r + i * rs_in + koff          # plen, addr
                h = rs_key_hash(0, key[0], key + 1, alen)
                j = h & mask
                while tab[j]:
                    o = base + (tab[j] - 1) * krs
                    if o[8] == key[0] and memcmp(o + 9, key + 1, alen) == 0:
                        break
                    j = (j + 1) & mask
                if tab[j]:
                    continue
                tab[j] = <uint32_t>(k + 1)
                o = base + k * krs
                memset(o, 0xFF, 4)
                memset(o + 4, 0, 4)
                memcpy(o + 8, key, 1 + alen)
                k += 1
    finally:
        free(tab)
    return out[:k * krs]
