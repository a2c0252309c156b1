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
"""
from libc.string cimport memcpy, memset, memcmp
from libc.stdlib cimport malloc, realloc, free, calloc, qsort
from libc.stdint cimport uint8_t, uint32_t, uint64_t
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
                + self.blob_bytes)


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

    def lookup(self, record):
        """The attr id stored for a prefix record's key (attr_idx ignored), or None."""
        cdef const uchar[::1] mv = as_view(record)
        cdef const uchar* p = buf_ptr(mv)
        cdef bint found
        cdef size_t pos
        if mv.shape[0] != self.rs:
            raise ValueError(f"a prefix record is {self.rs} bytes, not {mv.shape[0]}")
        pos = tab_probe(&self.t, rs_ld32(p + 4), p[8], p + 9, &found)
        return rs_ld32(self.t.e + pos * self.t.stride) if found else None

    def is_stale(self, record):
        """True / False for a present key, None when absent."""
        cdef const uchar[::1] mv = as_view(record)
        cdef const uchar* p = buf_ptr(mv)
        cdef bint found
        cdef size_t pos
        if mv.shape[0] != self.rs:
            raise ValueError(f"a prefix record is {self.rs} bytes, not {mv.shape[0]}")
        pos = tab_probe(&self.t, rs_ld32(p + 4), p[8], p + 9, &found)
        return bool(self.t.e[pos * self.t.stride + 9] & E_STALE) if found else None

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
