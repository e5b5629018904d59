/* perf kmem's statistics accumulated in C (kmem/trace/stat.py KmemStat is the reference,
 * statement for statement: _slab_alloc, _slab_free, _page_alloc_event, _page_free_event).
 *
 * A StatCore reads EventBatch columns (kinds, cpus, call_sites, keys, tails: the columns the
 * text parser and the perf.data reader both produce, kmem.trace.events) and keeps perf kmem's
 * tables in C hash tables, without a Python object per event. Python keeps what needs Python:
 * it names a traced call site the way perf prints it (and asks site_order for its address),
 * and names the cache of an allocation (kmalloc size classes), each once per distinct call
 * site or tail, through the callbacks given to the constructor; everything else is counted
 * here. export() gives the tables back as the very dicts and lists KmemStat keeps, in the same
 * insertion order, and KmemStat then goes on in Python (its summaries, or more events).
 *
 * feed(kinds, cpus, call_sites, keys, tails) -> the number of events it accounted. An event
 * this file does not handle (a key or a tail field of a type the readers never produce, a
 * value beyond 64-bit arithmetic, a free of a pointer whose cache was never named) stops the
 * batch *before* any of its state changes: the caller then exports and lets the Python code
 * account the rest, which gives exactly what it would have given alone. Columns of different
 * lengths give 0 (the Python code raises for them). A callback's exception propagates with the
 * state changed exactly as far as the Python code would have changed it before that call.
 *
 * Tables: rows live in an array in insertion order (Python dicts keep that order, and tied
 * rows of a sorted table keep it), with an open-addressing index of (hash, row) beside it;
 * a removed row (live pages, --live callers) is marked dead and the array compacted when the
 * dead rows are the majority. Not thread-safe (KmemStat is not).
 */
#include "kmem_core.h"

#include <stddef.h>
#include <string.h>

/* Event kinds (kmem/trace/events.py). */
enum {
    KMALLOC_NODE = 1, KMEM_CACHE_ALLOC_NODE = 3, KMEM_CACHE_FREE = 5, MM_PAGE_ALLOC = 6,
    MM_PAGE_FREE = 7,
};
enum { MAX_PAGE_ORDER = 11, MAX_MIGRATE_TYPES = 6, TAIL_SLOTS = 1024 };

/* Every value that enters a sum is at most 2^40 in magnitude, and feeding stops (for Python to
 * go on) before the sum of all magnitudes passes 2^62: no counter can overflow. */
#define VALUE_LIMIT ((int64_t)1 << 40)
#define MAGNITUDE_LIMIT ((int64_t)1 << 62)

/* -- tables ------------------------------------------------------------------------------- */

typedef struct {
    uint64_t hash;
    PyObject *str; /* a str key (strong), or NULL: the key is k[] */
    int64_t k[3];
    int64_t dead;
} Head; /* the start of every row */

typedef struct {
    uint64_t hash;
    int64_t row; /* -1 empty, -2 removed */
} Slot;

typedef struct {
    Slot *slots;
    size_t mask, filled; /* filled: rows and removed slots */
    char *rows;
    size_t row_size, nrows, cap, dead;
} Table;

#define ROW(t, i, type) ((type *)(void *)((t)->rows + (size_t)(i) * (t)->row_size))

static uint64_t
int_hash(const int64_t k[3])
{
    uint64_t h = (uint64_t)k[0] * 0x9e3779b97f4a7c15ULL;
    h ^= (h >> 31) ^ ((uint64_t)k[1] * 0xc2b2ae3d27d4eb4fULL);
    h ^= (h >> 29) ^ ((uint64_t)k[2] * 0x165667b19e3779f9ULL);
    return h ^ (h >> 32);
}

static int
str_equal(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return n == PyUnicode_GET_LENGTH(b) && kind == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * (size_t)kind) == 0;
}

static int
table_init(Table *t, size_t row_size)
{
    memset(t, 0, sizeof *t);
    t->row_size = row_size;
    t->mask = 63;
    t->slots = PyMem_Malloc(64 * sizeof(Slot));
    if (t->slots == NULL)
        return -1;
    for (size_t i = 0; i < 64; i++)
        t->slots[i].row = -1;
    return 0;
}

static void
table_free(Table *t)
{
    for (size_t i = 0; i < t->nrows; i++)
        Py_XDECREF(ROW(t, i, Head)->str);
    PyMem_Free(t->slots);
    PyMem_Free(t->rows);
    t->slots = NULL;
    t->rows = NULL;
    t->nrows = 0;
}

/* A str key's characters packed into k[] (a row of a str-keyed table keeps them there, its
 * k[] otherwise unused): k[0] the length + 1 and k[1..2] the bytes, for an ASCII str of at most
 * 16 characters (a traced pointer's hex digits), else all zero. Two packed keys are equal
 * exactly when their strs are, and a packed key never equals an unpacked one (whose str, not
 * ASCII or longer, cannot equal an ASCII str of 16 characters or fewer): table_find compares
 * the packed keys in the row it has loaded anyway, instead of loading the row's str object
 * too (a cache miss per lookup of the 161,000-pointer table of a 1M-event trace). */
static int
pack_str(PyObject *str, int64_t k[3])
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(str);
    k[0] = k[1] = k[2] = 0;
    if (!PyUnicode_IS_ASCII(str) || n > 16)
        return 0;
    k[0] = n + 1;
    memcpy(&k[1], PyUnicode_1BYTE_DATA(str), (size_t)n);
    return 1;
}

/* The row of the key (a str, or k[] when str is NULL), or -1. */
static int64_t
table_find(const Table *t, uint64_t hash, PyObject *str, const int64_t *k)
{
    int64_t packed[3];
    int compare_packed = 0;
    if (str != NULL && pack_str(str, packed)) {
        compare_packed = 1;
        k = packed;
    }
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const Slot *slot = &t->slots[i];
        if (slot->row == -1)
            return -1;
        if (slot->row >= 0 && slot->hash == hash) {
            const Head *head = ROW(t, slot->row, Head);
            if (str != NULL && !compare_packed ? str_equal(head->str, str)
                : head->k[0] == k[0] && head->k[1] == k[1] && head->k[2] == k[2])
                return slot->row;
        }
    }
}

static void
index_row(Table *t, uint64_t hash, int64_t row)
{
    size_t i = hash & t->mask;
    while (t->slots[i].row >= 0)
        i = (i + 1) & t->mask;
    if (t->slots[i].row == -1)
        t->filled++;
    t->slots[i].hash = hash;
    t->slots[i].row = row;
}

/* Rebuild the index with room for the live rows (after dropping the dead ones). */
static int
table_rebuild(Table *t)
{
    size_t live = t->nrows - t->dead;
    if (t->dead) {
        size_t to = 0;
        for (size_t from = 0; from < t->nrows; from++) {
            Head *head = ROW(t, from, Head);
            if (head->dead)
                continue;
            if (to != from)
                memcpy(ROW(t, to, char), head, t->row_size);
            to++;
        }
        t->nrows = to;
        t->dead = 0;
    }
    size_t size = 64;
    while (size < live * 2 + 2)
        size *= 2;
    Slot *slots = PyMem_Malloc(size * sizeof(Slot));
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < size; i++)
        slots[i].row = -1;
    PyMem_Free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    t->filled = 0;
    for (size_t i = 0; i < t->nrows; i++)
        index_row(t, ROW(t, i, Head)->hash, (int64_t)i);
    return 0;
}

/* A new zeroed row for a key that is not in the table (str: a new reference is taken); its
 * number, or -1 (MemoryError). */
static int64_t
table_add(Table *t, uint64_t hash, PyObject *str, const int64_t *k)
{
    if ((t->filled + 1) * 4 > (t->mask + 1) * 3 && table_rebuild(t) < 0)
        return -1;
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        char *rows = PyMem_Realloc(t->rows, cap * t->row_size);
        if (rows == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->rows = rows;
        t->cap = cap;
    }
    int64_t row = (int64_t)t->nrows++;
    Head *head = ROW(t, row, Head);
    memset(head, 0, t->row_size);
    head->hash = hash;
    head->str = Py_XNewRef(str);
    if (str != NULL)
        pack_str(str, head->k);
    else if (k != NULL)
        memcpy(head->k, k, sizeof head->k);
    index_row(t, hash, row);
    return row;
}

/* Remove a row (its key stays referenced until the array is compacted). */
static int
table_remove(Table *t, int64_t row)
{
    Head *head = ROW(t, row, Head);
    for (size_t i = head->hash & t->mask;; i = (i + 1) & t->mask)
        if (t->slots[i].row == row) {
            t->slots[i].row = -2;
            break;
        }
    head->dead = 1;
    Py_CLEAR(head->str);
    t->dead++;
    if (t->dead > 1024 && t->dead * 2 > t->nrows)
        return table_rebuild(t);
    return 0;
}

/* -- rows ---------------------------------------------------------------------------------- */

typedef struct { /* a slab pointer: _alloc_stat, _alloc_site, _alloc_cache */
    Head head;
    int64_t hit, bytes_req, bytes_alloc, last_alloc, alloc_cpu, pingpong, caller, cache;
} PtrRow;

typedef struct { /* a traced call site (its caller row), a page call site, a gfp text */
    Head head;
    int64_t value;
} NameRow;

typedef struct { /* _live */
    Head head; /* k: pfn */
    int64_t order, gfp, migratetype, site, nr_alloc, alloc_bytes;
} LiveRow;

typedef struct { /* _page_alloc (k: pfn, order, migratetype) and _page_caller (k: site...) */
    Head head;
    int64_t gfp, nr_alloc, alloc_bytes, nr_free, free_bytes, site;
} PageRow;

typedef struct {
    int64_t hit, bytes_req, bytes_alloc, pingpong;
} Counts; /* _caller_stat and _cache_stat rows, by the index Python gave */

typedef struct {
    PyObject *tail; /* strong */
    int64_t kmalloc, cache;
} TailSlot;

typedef struct {
    PyObject_HEAD
    int64_t page_size;
    int live;
    PyObject *name_call_site, *name_cache, *page_call_site; /* the last may be None */
    Table ptrs, sites, page_sites, gfps, live_pages, page_allocs, page_callers;
    Counts *callers, *caches;
    size_t ncallers, ncaches, callers_cap, caches_cap;
    TailSlot *tail_cache;
    int64_t total_requested, total_allocated, total_freed, nr_allocs, nr_cross_allocs;
    int64_t unknown_frees, skipped_page_events, magnitude;
    int64_t nr_page_allocs, page_alloc_bytes, nr_page_frees, page_free_bytes;
    int64_t nr_page_nomatch, page_nomatch_bytes, nr_page_fails, page_fail_bytes;
    int64_t order_stats[MAX_PAGE_ORDER][MAX_MIGRATE_TYPES];
} StatCore;

static int
counts_room(Counts **rows, size_t *n, size_t *cap, int64_t index)
{
    if (index < 0 || index > (int64_t)*n) {
        PyErr_SetString(PyExc_SystemError, "StatCore: a callback gave a bad row index");
        return -1;
    }
    if ((size_t)index < *n)
        return 0;
    if (*n == *cap) {
        size_t grown = *cap ? *cap * 2 : 64;
        Counts *more = PyMem_Realloc(*rows, grown * sizeof(Counts));
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *rows = more;
        *cap = grown;
    }
    memset(&(*rows)[*n], 0, sizeof(Counts));
    (*n)++;
    return 0;
}

/* An exact int that fits in int64 (*value), or 0. */
static int
small_int(PyObject *obj, int64_t *value)
{
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *value = v;
    return 1;
}

static int64_t
magnitude(int64_t v)
{
    return v < 0 ? -v : v;
}

/* A callback's int result (a row index), or -1 with an exception. */
static int64_t
index_result(PyObject *result)
{
    if (result == NULL)
        return -1;
    int64_t index;
    int ok = small_int(result, &index) && index >= 0;
    Py_DECREF(result);
    if (!ok) {
        PyErr_SetString(PyExc_SystemError, "StatCore: a callback gave no row index");
        return -1;
    }
    return index;
}

/* -- slab ---------------------------------------------------------------------------------- */

/* 1 accounted, 0 not handled (nothing changed), -1 error. */
static int
slab_alloc(StatCore *s, int kind, PyObject *cpu_obj, PyObject *site, PyObject *key,
           PyObject *tail)
{
    int64_t cpu, bytes_req, bytes_alloc, node;
    if (!PyUnicode_CheckExact(site) || !PyUnicode_CheckExact(key) || !PyTuple_CheckExact(tail) ||
        PyTuple_GET_SIZE(tail) < 5 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(tail, 0)) ||
        !small_int(cpu_obj, &cpu) || !small_int(PyTuple_GET_ITEM(tail, 1), &bytes_req) ||
        !small_int(PyTuple_GET_ITEM(tail, 2), &bytes_alloc) ||
        !small_int(PyTuple_GET_ITEM(tail, 4), &node) || magnitude(bytes_req) > VALUE_LIMIT ||
        magnitude(bytes_alloc) > VALUE_LIMIT)
        return 0;
    int64_t added = magnitude(bytes_req) + magnitude(bytes_alloc);
    if (s->magnitude + added > MAGNITUDE_LIMIT)
        return 0;
    Py_hash_t site_hash = PyObject_Hash(site), key_hash = PyObject_Hash(key);
    if (site_hash == -1 || key_hash == -1)
        return -1;
    /* the call site's caller row (Python names it: perf_call_site, site_order) */
    int64_t found = table_find(&s->sites, (uint64_t)site_hash, site, NULL);
    int64_t caller;
    if (found >= 0) {
        caller = ROW(&s->sites, found, NameRow)->value;
    } else {
        caller = index_result(PyObject_CallOneArg(s->name_call_site, site));
        if (caller < 0 || counts_room(&s->callers, &s->ncallers, &s->callers_cap, caller) < 0)
            return -1;
        int64_t row = table_add(&s->sites, (uint64_t)site_hash, site, NULL);
        if (row < 0)
            return -1;
        ROW(&s->sites, row, NameRow)->value = caller;
    }
    s->magnitude += added;
    /* the pointer's row */
    int64_t row = table_find(&s->ptrs, (uint64_t)key_hash, key, NULL);
    if (row < 0) {
        if ((row = table_add(&s->ptrs, (uint64_t)key_hash, key, NULL)) < 0)
            return -1;
        PtrRow *p = ROW(&s->ptrs, row, PtrRow);
        p->hit = 1;
        p->bytes_req = bytes_req;
        p->bytes_alloc = p->last_alloc = bytes_alloc;
        p->alloc_cpu = cpu;
        p->cache = -1; /* (named below) */
    } else {
        PtrRow *p = ROW(&s->ptrs, row, PtrRow);
        p->hit++;
        p->bytes_req += bytes_req;
        p->bytes_alloc += bytes_alloc;
        p->last_alloc = bytes_alloc;
        p->alloc_cpu = cpu;
    }
    ROW(&s->ptrs, row, PtrRow)->caller = caller;
    /* the cache (Python names it: the traced name, or the kmalloc size class) */
    int64_t kmalloc = kind <= KMALLOC_NODE;
    TailSlot *slot = &s->tail_cache[((uintptr_t)tail >> 4 ^ (uintptr_t)kmalloc) & (TAIL_SLOTS - 1)];
    int64_t cache;
    if (slot->tail == tail && slot->kmalloc == kmalloc) {
        cache = slot->cache;
    } else {
        PyObject *kind_obj = PyLong_FromLong(kind);
        if (kind_obj == NULL)
            return -1;
        PyObject *args[2] = {kind_obj, tail};
        cache = index_result(PyObject_Vectorcall(s->name_cache, args, 2, NULL));
        Py_DECREF(kind_obj);
        if (cache < 0 || counts_room(&s->caches, &s->ncaches, &s->caches_cap, cache) < 0)
            return -1;
        Py_XSETREF(slot->tail, Py_NewRef(tail));
        slot->kmalloc = kmalloc;
        slot->cache = cache;
    }
    ROW(&s->ptrs, row, PtrRow)->cache = cache;
    Counts *c = &s->caches[cache];
    c->hit++;
    c->bytes_req += bytes_req;
    c->bytes_alloc += bytes_alloc;
    c = &s->callers[caller];
    c->hit++;
    c->bytes_req += bytes_req;
    c->bytes_alloc += bytes_alloc;
    s->total_requested += bytes_req;
    s->total_allocated += bytes_alloc;
    s->nr_allocs++;
    if (node != -1 && node != 0) /* (cpu_node is lambda cpu: 0 when a StatCore runs) */
        s->nr_cross_allocs++;
    return 1;
}

static int
slab_free(StatCore *s, PyObject *cpu_obj, PyObject *key)
{
    int64_t cpu;
    if (!PyUnicode_CheckExact(key) || !small_int(cpu_obj, &cpu))
        return 0;
    Py_hash_t key_hash = PyObject_Hash(key);
    if (key_hash == -1)
        return -1;
    int64_t row = table_find(&s->ptrs, (uint64_t)key_hash, key, NULL);
    if (row < 0) {
        s->unknown_frees++;
        return 1;
    }
    PtrRow *p = ROW(&s->ptrs, row, PtrRow);
    if (p->cache < 0 || s->magnitude + magnitude(p->last_alloc) > MAGNITUDE_LIMIT)
        return 0; /* (a pointer whose cache naming raised: Python's KeyError, in Python) */
    s->magnitude += magnitude(p->last_alloc);
    s->total_freed += p->last_alloc;
    if (cpu != p->alloc_cpu) {
        p->pingpong++;
        s->callers[p->caller].pingpong++;
        s->caches[p->cache].pingpong++;
    }
    p->alloc_cpu = -1;
    return 1;
}

/* -- page ---------------------------------------------------------------------------------- */

/* The row of a str in a name table (added with value -1 if new, after `seen(str)` if that
 * is not None: a new row only once it returned), or -1 on an error. */
static int64_t
name_row(Table *t, PyObject *str, PyObject *seen)
{
    Py_hash_t hash = PyObject_Hash(str);
    if (hash == -1)
        return -1;
    int64_t row = table_find(t, (uint64_t)hash, str, NULL);
    if (row >= 0)
        return row;
    if (seen != NULL && seen != Py_None) {
        PyObject *r = PyObject_CallOneArg(seen, str); /* (raised: asked again next time) */
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    if ((row = table_add(t, (uint64_t)hash, str, NULL)) >= 0)
        ROW(t, row, NameRow)->value = -1;
    return row;
}

static int
page_alloc(StatCore *s, PyObject *site, PyObject *key, PyObject *tail)
{
    int64_t pfn, order, migratetype;
    if (!PyTuple_CheckExact(tail) || PyTuple_GET_SIZE(tail) < 3 || !small_int(key, &pfn) ||
        !small_int(PyTuple_GET_ITEM(tail, 1), &order) ||
        !small_int(PyTuple_GET_ITEM(tail, 2), &migratetype) || !PyUnicode_CheckExact(site) ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(tail, 0)))
        return 0;
    PyObject *gfp = PyTuple_GET_ITEM(tail, 0);
    if (order < 0 || order >= MAX_PAGE_ORDER || migratetype < 0 ||
        migratetype >= MAX_MIGRATE_TYPES) {
        s->skipped_page_events++;
        return 1;
    }
    int64_t size = s->page_size << order;
    if (s->magnitude + size > MAGNITUDE_LIMIT)
        return 0;
    s->magnitude += size;
    s->nr_page_allocs++;
    s->page_alloc_bytes += size;
    if (pfn == -1) {
        s->nr_page_fails++;
        s->page_fail_bytes += size;
        return 1;
    }
    /* (a new call site: Python asks site_order for its address) */
    int64_t site_row = name_row(&s->page_sites, site, s->page_call_site);
    if (site_row < 0)
        return -1;
    int64_t gfp_row = name_row(&s->gfps, gfp, NULL);
    if (gfp_row < 0)
        return -1;
    ROW(&s->gfps, gfp_row, NameRow)->value = 1; /* _gfps.add(gfp) */
    int64_t k[3] = {pfn, 0, 0};
    uint64_t hash = int_hash(k);
    int64_t row = table_find(&s->live_pages, hash, NULL, k);
    if (row < 0) {
        if ((row = table_add(&s->live_pages, hash, NULL, k)) < 0)
            return -1;
        LiveRow *l = ROW(&s->live_pages, row, LiveRow);
        l->order = order;
        l->gfp = gfp_row;
        l->migratetype = migratetype;
        l->site = site_row;
        l->nr_alloc = 1;
        l->alloc_bytes = size;
    } else {
        LiveRow *l = ROW(&s->live_pages, row, LiveRow);
        l->site = site_row;
        l->nr_alloc++;
        l->alloc_bytes += size;
    }
    if (!s->live) {
        int64_t ka[3] = {pfn, order << 8 | migratetype, gfp_row};
        hash = int_hash(ka);
        row = table_find(&s->page_allocs, hash, NULL, ka);
        if (row < 0 && (row = table_add(&s->page_allocs, hash, NULL, ka)) < 0)
            return -1;
        PageRow *a = ROW(&s->page_allocs, row, PageRow);
        a->nr_alloc++;
        a->alloc_bytes += size;
        a->site = site_row;
    }
    int64_t kc[3] = {site_row, order << 8 | migratetype, gfp_row};
    hash = int_hash(kc);
    row = table_find(&s->page_callers, hash, NULL, kc);
    if (row < 0 && (row = table_add(&s->page_callers, hash, NULL, kc)) < 0)
        return -1;
    PageRow *c = ROW(&s->page_callers, row, PageRow);
    c->nr_alloc++;
    c->alloc_bytes += size;
    s->order_stats[order][migratetype]++;
    return 1;
}

static int
page_free(StatCore *s, PyObject *key, PyObject *tail)
{
    int64_t pfn, order;
    if (!PyTuple_CheckExact(tail) || PyTuple_GET_SIZE(tail) < 3 || !small_int(key, &pfn) ||
        !small_int(PyTuple_GET_ITEM(tail, 1), &order))
        return 0;
    if (order < 0 || order >= MAX_PAGE_ORDER) {
        s->skipped_page_events++;
        return 1;
    }
    int64_t size = s->page_size << order;
    if (s->magnitude + size > MAGNITUDE_LIMIT)
        return 0;
    s->magnitude += size;
    s->nr_page_frees++;
    s->page_free_bytes += size;
    int64_t k[3] = {pfn, 0, 0};
    int64_t row = table_find(&s->live_pages, int_hash(k), NULL, k);
    if (row < 0) {
        s->nr_page_nomatch++;
        s->page_nomatch_bytes += size;
        return 1;
    }
    LiveRow l = *ROW(&s->live_pages, row, LiveRow);
    if (table_remove(&s->live_pages, row) < 0)
        return -1;
    if (s->live) {
        s->order_stats[order][l.migratetype]--;
    } else {
        int64_t ka[3] = {pfn, order << 8 | l.migratetype, l.gfp};
        row = table_find(&s->page_allocs, int_hash(ka), NULL, ka);
        if (row >= 0) {
            PageRow *a = ROW(&s->page_allocs, row, PageRow);
            a->nr_free++;
            a->free_bytes += size;
        }
    }
    int64_t kc[3] = {l.site, order << 8 | l.migratetype, l.gfp};
    row = table_find(&s->page_callers, int_hash(kc), NULL, kc);
    if (row >= 0) {
        PageRow *c = ROW(&s->page_callers, row, PageRow);
        c->nr_free++;
        c->free_bytes += size;
        if (s->live) {
            c->nr_alloc--;
            c->alloc_bytes -= size;
            if (c->nr_alloc == 0 && table_remove(&s->page_callers, row) < 0)
                return -1;
        }
    }
    return 1;
}

/* -- the type ------------------------------------------------------------------------------ */

/* The pointer table's index is megabytes (161,000 pointers on a 1M-event trace: 8 MB of
 * slots) and a slab event's first probe into it was a cache miss, most of a lookup's time
 * (perf annotate). feed() therefore asks, PREFETCH_AHEAD events early, for the first slot of
 * that event's pointer: its str's hash (computed once and kept by the str, as PyObject_Hash
 * would when the event is read) and a prefetch, which changes no state. */
enum { PREFETCH_AHEAD = 8 };

static void
prefetch_pointer(StatCore *s, PyObject *kinds, PyObject *keys, Py_ssize_t i)
{
    int kind = (unsigned char)(PyBytes_Check(kinds) ? PyBytes_AS_STRING(kinds)[i]
                                                    : PyByteArray_AS_STRING(kinds)[i]);
    PyObject *key = PyList_GET_ITEM(keys, i);
    if (kind > KMEM_CACHE_FREE || !PyUnicode_CheckExact(key))
        return;
    Py_hash_t hash = PyObject_Hash(key); /* (a str's hash cannot fail) */
    __builtin_prefetch(&s->ptrs.slots[(uint64_t)hash & s->ptrs.mask]);
}

static PyObject *
StatCore_feed(StatCore *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "feed(kinds, cpus, call_sites, keys, tails)");
        return NULL;
    }
    PyObject *kinds = args[0], *cpus = args[1], *sites = args[2], *keys = args[3],
             *tails = args[4];
    if (!(PyBytes_Check(kinds) || PyByteArray_Check(kinds)) || !PyList_Check(cpus) ||
        !PyList_Check(sites) || !PyList_Check(keys) || !PyList_Check(tails))
        return PyLong_FromLong(0);
    Py_ssize_t n = PyBytes_Check(kinds) ? PyBytes_GET_SIZE(kinds) : PyByteArray_GET_SIZE(kinds);
    if (PyList_GET_SIZE(cpus) != n || PyList_GET_SIZE(sites) != n ||
        PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(tails) != n)
        return PyLong_FromLong(0);
    Py_ssize_t i = 0;
    for (; i < n; i++) {
        /* (re-read each time: a callback may have resized a bytearray or a list) */
        if ((PyByteArray_Check(kinds) && PyByteArray_GET_SIZE(kinds) != n) ||
            PyList_GET_SIZE(cpus) != n || PyList_GET_SIZE(sites) != n ||
            PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(tails) != n)
            break;
        int kind = (unsigned char)(PyBytes_Check(kinds) ? PyBytes_AS_STRING(kinds)[i]
                                                        : PyByteArray_AS_STRING(kinds)[i]);
        PyObject *cpu = PyList_GET_ITEM(cpus, i), *site = PyList_GET_ITEM(sites, i);
        PyObject *key = PyList_GET_ITEM(keys, i), *tail = PyList_GET_ITEM(tails, i);
        if (i + PREFETCH_AHEAD < n)
            prefetch_pointer(s, kinds, keys, i + PREFETCH_AHEAD);
        int done;
        if (kind <= KMEM_CACHE_ALLOC_NODE) {
            Py_INCREF(cpu); /* (held over the callbacks) */
            Py_INCREF(site);
            Py_INCREF(key);
            Py_INCREF(tail);
            done = slab_alloc(s, kind, cpu, site, key, tail);
            Py_DECREF(cpu);
            Py_DECREF(site);
            Py_DECREF(key);
            Py_DECREF(tail);
        } else if (kind <= KMEM_CACHE_FREE) {
            done = PyTuple_CheckExact(tail) ? slab_free(s, cpu, key) : 0;
        } else if (kind == MM_PAGE_ALLOC) {
            Py_INCREF(site);
            Py_INCREF(key);
            Py_INCREF(tail);
            done = page_alloc(s, site, key, tail);
            Py_DECREF(site);
            Py_DECREF(key);
            Py_DECREF(tail);
        } else if (kind == MM_PAGE_FREE) {
            done = page_free(s, key, tail);
        } else { /* perf kmem reads no other event (its tail as EventBatch holds one) */
            done = PyTuple_CheckExact(tail) && PyTuple_GET_SIZE(tail) >= 3;
        }
        if (done < 0)
            return NULL;
        if (done == 0)
            break;
    }
    return PyLong_FromSsize_t(i);
}

/* A list of n Python ints. */
static PyObject *
int_list(const int64_t *values, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromLongLong(values[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static int
set_steal(PyObject *dict, PyObject *key, PyObject *value)
{
    int status = key != NULL && value != NULL ? PyDict_SetItem(dict, key, value) : -1;
    Py_XDECREF(key);
    Py_XDECREF(value);
    return status;
}

/* The str of a name table's row (borrowed). */
static PyObject *
row_str(Table *t, int64_t row)
{
    return ROW(t, row, Head)->str;
}

static PyObject *
export_slab(StatCore *s, PyObject *caller_names, PyObject *cache_names, PyObject *out[5])
{
    PyObject *alloc_stat = out[0] = PyDict_New(), *alloc_site = out[1] = PyDict_New();
    PyObject *alloc_cache = out[2] = PyDict_New(), *caller_stat = out[3] = PyDict_New();
    PyObject *cache_stat = out[4] = PyDict_New();
    if (!alloc_stat || !alloc_site || !alloc_cache || !caller_stat || !cache_stat)
        return NULL;
    for (size_t i = 0; i < s->ptrs.nrows; i++) {
        PtrRow *p = ROW(&s->ptrs, i, PtrRow);
        int64_t values[6] = {p->hit, p->bytes_req, p->bytes_alloc, p->last_alloc,
                             p->alloc_cpu, p->pingpong};
        if (set_steal(alloc_stat, Py_NewRef(p->head.str), int_list(values, 6)) < 0 ||
            PyDict_SetItem(alloc_site, p->head.str,
                           PyList_GET_ITEM(caller_names, p->caller)) < 0 ||
            (p->cache >= 0 && PyDict_SetItem(alloc_cache, p->head.str,
                                             PyList_GET_ITEM(cache_names, p->cache)) < 0))
            return NULL;
    }
    struct { Counts *rows; size_t n; PyObject *names, *dict; } tables[2] = {
        {s->callers, s->ncallers, caller_names, caller_stat},
        {s->caches, s->ncaches, cache_names, cache_stat}};
    for (int t = 0; t < 2; t++)
        for (size_t i = 0; i < tables[t].n; i++) {
            Counts *c = &tables[t].rows[i];
            if (c->hit == 0)
                continue; /* (named by a callback, but the event stopped before counting) */
            int64_t values[4] = {c->hit, c->bytes_req, c->bytes_alloc, c->pingpong};
            if (set_steal(tables[t].dict, Py_NewRef(PyList_GET_ITEM(tables[t].names, i)),
                          int_list(values, 4)) < 0)
                return NULL;
        }
    return Py_None;
}

static PyObject *
export_page(StatCore *s, PyObject *out[5])
{
    PyObject *live = out[0] = PyDict_New(), *page_alloc = out[1] = PyDict_New();
    PyObject *page_caller = out[2] = PyDict_New(), *gfps = out[3] = PySet_New(NULL);
    PyObject *order_stats = out[4] = PyList_New(MAX_PAGE_ORDER);
    if (!live || !page_alloc || !page_caller || !gfps || !order_stats)
        return NULL;
    for (int order = 0; order < MAX_PAGE_ORDER; order++) {
        PyObject *row = int_list(s->order_stats[order], MAX_MIGRATE_TYPES);
        if (row == NULL)
            return NULL;
        PyList_SET_ITEM(order_stats, order, row);
    }
    for (size_t i = 0; i < s->gfps.nrows; i++)
        if (ROW(&s->gfps, i, NameRow)->value == 1 &&
            PySet_Add(gfps, row_str(&s->gfps, (int64_t)i)) < 0)
            return NULL;
    for (size_t i = 0; i < s->live_pages.nrows; i++) {
        LiveRow *l = ROW(&s->live_pages, i, LiveRow);
        if (l->head.dead)
            continue;
        PyObject *row = Py_BuildValue("[LOLOLL]", (long long)l->order,
                                      row_str(&s->gfps, l->gfp), (long long)l->migratetype,
                                      row_str(&s->page_sites, l->site),
                                      (long long)l->nr_alloc, (long long)l->alloc_bytes);
        if (set_steal(live, PyLong_FromLongLong(l->head.k[0]), row) < 0)
            return NULL;
    }
    for (size_t i = 0; i < s->page_allocs.nrows; i++) {
        PageRow *a = ROW(&s->page_allocs, i, PageRow);
        const int64_t *k = a->head.k;
        PyObject *key = Py_BuildValue("(LLLO)", (long long)k[0], (long long)(k[1] >> 8),
                                      (long long)(k[1] & 0xff), row_str(&s->gfps, k[2]));
        PyObject *row = Py_BuildValue("[LLLLO]", (long long)a->nr_alloc,
                                      (long long)a->alloc_bytes, (long long)a->nr_free,
                                      (long long)a->free_bytes, row_str(&s->page_sites, a->site));
        if (set_steal(page_alloc, key, row) < 0)
            return NULL;
    }
    for (size_t i = 0; i < s->page_callers.nrows; i++) {
        PageRow *c = ROW(&s->page_callers, i, PageRow);
        if (c->head.dead)
            continue;
        const int64_t *k = c->head.k;
        PyObject *key = Py_BuildValue("(OLLO)", row_str(&s->page_sites, k[0]),
                                      (long long)(k[1] >> 8), (long long)(k[1] & 0xff),
                                      row_str(&s->gfps, k[2]));
        int64_t values[4] = {c->nr_alloc, c->alloc_bytes, c->nr_free, c->free_bytes};
        if (set_steal(page_caller, key, int_list(values, 4)) < 0)
            return NULL;
    }
    return Py_None;
}

/* The counters, in _to_python's order. */
static PyObject *
counter_list(StatCore *s)
{
    int64_t counters[15] = {
        s->total_requested, s->total_allocated, s->total_freed, s->nr_allocs,
        s->nr_cross_allocs, s->unknown_frees, s->skipped_page_events,
        s->nr_page_allocs, s->page_alloc_bytes, s->nr_page_frees, s->page_free_bytes,
        s->nr_page_nomatch, s->page_nomatch_bytes, s->nr_page_fails, s->page_fail_bytes};
    return int_list(counters, 15);
}

static PyObject *
order_stat_lists(StatCore *s)
{
    PyObject *order_stats = PyList_New(MAX_PAGE_ORDER);
    for (int order = 0; order_stats != NULL && order < MAX_PAGE_ORDER; order++) {
        PyObject *row = int_list(s->order_stats[order], MAX_MIGRATE_TYPES);
        if (row == NULL)
            Py_CLEAR(order_stats);
        else
            PyList_SET_ITEM(order_stats, order, row);
    }
    return order_stats;
}

/* numbers() -> (the counters, order_stats): what a summary without its tables shows. */
static PyObject *
StatCore_numbers(StatCore *s, PyObject *unused)
{
    PyObject *counters = counter_list(s), *order_stats = order_stat_lists(s);
    if (counters == NULL || order_stats == NULL) {
        Py_XDECREF(counters);
        Py_XDECREF(order_stats);
        return NULL;
    }
    return Py_BuildValue("(NN)", counters, order_stats);
}

static PyObject *
StatCore_export(StatCore *s, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
        PyList_GET_SIZE(args[0]) < (Py_ssize_t)s->ncallers ||
        PyList_GET_SIZE(args[1]) < (Py_ssize_t)s->ncaches) {
        PyErr_SetString(PyExc_TypeError, "export(caller_names, cache_names): the name lists");
        return NULL;
    }
    PyObject *slab[5] = {NULL}, *page[5] = {NULL}, *result = NULL;
    if (export_slab(s, args[0], args[1], slab) != NULL && export_page(s, page) != NULL) {
        PyObject *numbers = counter_list(s);
        if (numbers != NULL)
            result = Py_BuildValue("(OOOOOOOOOON)", slab[0], slab[1], slab[2], slab[3],
                                   slab[4], page[0], page[1], page[2], page[3], page[4],
                                   numbers);
    }
    for (int i = 0; i < 5; i++) {
        Py_XDECREF(slab[i]);
        Py_XDECREF(page[i]);
    }
    return result;
}

static int
StatCore_init(StatCore *s, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"page_size", "live", "name_call_site", "name_cache",
                            "page_call_site", NULL};
    long long page_size;
    int live;
    PyObject *name_call_site, *name_cache, *page_call_site;
    if (s->tail_cache != NULL) {
        PyErr_SetString(PyExc_TypeError, "StatCore is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$LpOOO", names, &page_size, &live,
                                     &name_call_site, &name_cache, &page_call_site))
        return -1;
    if (page_size < 1 || page_size > ((long long)1 << 29)) {
        PyErr_SetString(PyExc_ValueError, "StatCore: page_size out of its range");
        return -1;
    }
    s->page_size = page_size;
    s->live = live;
    s->name_call_site = Py_NewRef(name_call_site);
    s->name_cache = Py_NewRef(name_cache);
    s->page_call_site = Py_NewRef(page_call_site);
    s->tail_cache = PyMem_Calloc(TAIL_SLOTS, sizeof(TailSlot));
    if (s->tail_cache == NULL || table_init(&s->ptrs, sizeof(PtrRow)) < 0 ||
        table_init(&s->sites, sizeof(NameRow)) < 0 ||
        table_init(&s->page_sites, sizeof(NameRow)) < 0 ||
        table_init(&s->gfps, sizeof(NameRow)) < 0 ||
        table_init(&s->live_pages, sizeof(LiveRow)) < 0 ||
        table_init(&s->page_allocs, sizeof(PageRow)) < 0 ||
        table_init(&s->page_callers, sizeof(PageRow)) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static int
StatCore_traverse(StatCore *s, visitproc visit, void *arg)
{
    Py_VISIT(s->name_call_site);
    Py_VISIT(s->name_cache);
    Py_VISIT(s->page_call_site);
    if (s->tail_cache != NULL)
        for (int i = 0; i < TAIL_SLOTS; i++)
            Py_VISIT(s->tail_cache[i].tail);
    return 0;
}

static int
StatCore_clear(StatCore *s)
{
    Py_CLEAR(s->name_call_site);
    Py_CLEAR(s->name_cache);
    Py_CLEAR(s->page_call_site);
    if (s->tail_cache != NULL)
        for (int i = 0; i < TAIL_SLOTS; i++)
            Py_CLEAR(s->tail_cache[i].tail);
    return 0;
}

static void
StatCore_dealloc(StatCore *s)
{
    PyObject_GC_UnTrack(s);
    StatCore_clear(s);
    Table *tables[] = {&s->ptrs, &s->sites, &s->page_sites, &s->gfps, &s->live_pages,
                       &s->page_allocs, &s->page_callers};
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        table_free(tables[i]);
    PyMem_Free(s->callers);
    PyMem_Free(s->caches);
    PyMem_Free(s->tail_cache);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
StatCore_counter(StatCore *s, void *which)
{
    return PyLong_FromLongLong(which ? s->skipped_page_events : s->unknown_frees);
}

static PyGetSetDef StatCore_getset[] = {
    {"unknown_frees", (getter)StatCore_counter, NULL, "slab frees of unknown pointers", NULL},
    {"skipped_page_events", (getter)StatCore_counter, NULL,
     "page events beyond perf's tables", (void *)1},
    {NULL},
};

static PyMethodDef StatCore_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))StatCore_feed, METH_FASTCALL,
     "feed(kinds, cpus, call_sites, keys, tails) -> the number of events accounted"},
    {"numbers", (PyCFunction)StatCore_numbers, METH_NOARGS,
     "numbers() -> (the counters, order_stats), the tables left in C"},
    {"export", (PyCFunction)(void (*)(void))StatCore_export, METH_FASTCALL,
     "export(caller_names, cache_names) -> KmemStat's tables and counters"},
    {NULL},
};

PyTypeObject kmem_StatCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.StatCore",
    .tp_doc = "perf kmem's statistics over EventBatch columns (kmem.trace.stat.KmemStat)",
    .tp_basicsize = sizeof(StatCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)StatCore_init,
    .tp_dealloc = (destructor)StatCore_dealloc,
    .tp_traverse = (traverseproc)StatCore_traverse,
    .tp_clear = (inquiry)StatCore_clear,
    .tp_methods = StatCore_methods,
    .tp_getset = StatCore_getset,
};
