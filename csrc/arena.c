/* kmem._core.ArenaCore: the compiled fast paths of kmem.arena.Arena.
 *
 * An arena keeps every word of its state in its mapped buffer (kmem/arena/arena.py's
 * docstring has the layout); this object holds a buffer export of that mapping and nothing
 * else of its own but a small cache of which directory slot each kmalloc class uses (slots
 * are never reused, so the cache cannot go stale). It reads the header itself and checks
 * every section lies inside the buffer; every index it reads from the buffer (a list link, a
 * freelist index, an owner, an undo-log record) is bounds-checked before use, so a corrupt
 * arena makes the fast path give up (undoing what it did) and hand the call to the pure
 * method, never read or write outside the mapping.
 *
 * Locking: the robust process-shared pthread mutex in the header (only arenas created with
 * lock="mutex" run here; flock arenas always take the pure path). It is tried first without
 * releasing the GIL, then waited for with the GIL released. EOWNERDEAD (the holder died) is
 * handled as the pure code does: roll the undo log back, pthread_mutex_consistent, go on.
 *
 * Every store goes through the undo log exactly as Arena._store does: the (word, old value)
 * record, a release fence, the log length, a release fence, then the word; a finished
 * operation bumps the generation and empties the log (the commit). The fences keep the
 * compiler (and weakly ordered CPUs) from letting the word be written before its record.
 */
#include "kmem_core.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
    H_MAGIC, H_VERSION, H_PAGE_SIZE, H_NR_PAGES, H_MAX_ORDER, H_NR_CACHES, H_LOG_CAPACITY,
    H_SIZE, H_DATA, H_COLUMNS, H_HEADS, H_COUNTERS, H_CACHES, H_LOG, H_LOCK_KIND, H_CHECKSUM,
    D_LOG_COUNT, D_GENERATION, D_RECOVERIES, D_HOLDER,
};
#define MUTEX_WORD 24
#define HEADER_WORDS 32
#define FORMAT_VERSION 1
#define LOCK_MUTEX 1
enum { C_STATE, C_NEXT, C_PREV, C_OWNER, C_INUSE, C_FREELIST, C_FRESH, NR_COLUMNS };
enum { K_FREE = 1, K_ALLOC = 2, K_LARGE = 3, K_SLAB = 4 };
enum { N_NONEMPTY, N_ALLOCATIONS, N_FREES, N_FAILURES, N_SPLITS, N_MERGES, N_KMALLOCS,
       N_KFREES, NR_COUNTERS };
enum { S_IN_USE = 0, S_NAME = 1, S_OBJECT_SIZE = 5, S_STRIDE, S_ORDER, S_OBJECTS, S_NR_SLABS,
       S_ACTIVE, S_ALLOCS, S_FREES, S_KMALLOC, SLOT_WORDS = 16 };
#define NAME_WORDS 4
#define NR_PURE 8
#define KSLOTS 64

/* "KMEMAREN" read as a little-endian int64. */
static const int64_t MAGIC = 0x4E4552414D454D4BLL;

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int has_view;
    int64_t *w;
    int64_t nwords;
    int64_t page_size, page_shift, nr_pages, max_order, nr_caches, nr_heads, log_cap, log;
    int64_t data_word, limit;
    int64_t col[NR_COLUMNS];
    int64_t heads_next, heads_prev, counters, ne, caches;
    int fast;      /* a mutex arena: the fast paths run */
    int bad;       /* this operation met an index outside the buffer: undo it, go pure */
    int32_t kslot[KSLOTS];
    /* alloc_pages, free_pages, alloc, free, kmalloc, kfree, cache_alloc, cache_free */
    PyObject *pure[NR_PURE];
} ArenaCore;

static pid_t cached_pid;

static void
after_fork_child(void)
{
    cached_pid = getpid();
}

/* -- words, the undo log, the lock ------------------------------------------------------- */

static inline int64_t
rd(ArenaCore *a, int64_t i)
{
    if ((uint64_t)i >= (uint64_t)a->nwords) {
        a->bad = 1;
        return 0;
    }
    return a->w[i];
}

static inline void
st(ArenaCore *a, int64_t i, int64_t value)
{
    int64_t *w = a->w;
    int64_t n = w[D_LOG_COUNT];
    if (a->bad || (uint64_t)i >= (uint64_t)a->nwords || (uint64_t)n >= (uint64_t)a->log_cap) {
        a->bad = 1;
        return;
    }
    int64_t record = a->log + 2 * n;
    w[record] = i;
    w[record + 1] = w[i];
    __atomic_thread_fence(__ATOMIC_RELEASE);
    w[D_LOG_COUNT] = n + 1;
    __atomic_thread_fence(__ATOMIC_RELEASE);
    w[i] = value;
}

/* The word of `column` for list node `node` (a page, or a head ~k), or -1 (bad). */
static inline int64_t
slot_of(ArenaCore *a, int column, int64_t node)
{
    if (node >= 0) {
        if (node >= a->nr_pages) {
            a->bad = 1;
            return -1;
        }
        return a->col[column] + node;
    }
    int64_t k = ~node;
    if (k >= a->nr_heads || (column != C_NEXT && column != C_PREV)) {
        a->bad = 1;
        return -1;
    }
    return (column == C_NEXT ? a->heads_next : a->heads_prev) + k;
}

static inline int64_t
get(ArenaCore *a, int column, int64_t node)
{
    return rd(a, slot_of(a, column, node));
}

static inline void
set(ArenaCore *a, int column, int64_t node, int64_t value)
{
    st(a, slot_of(a, column, node), value);
}

static inline void
add(ArenaCore *a, int64_t index, int64_t delta)
{
    st(a, index, rd(a, index) + delta);
}

/* Is the undo log well formed (a length in range, every record naming a word)? */
static int
log_ok(ArenaCore *a)
{
    int64_t n = a->w[D_LOG_COUNT];
    if (n < 0 || n > a->log_cap)
        return 0;
    for (int64_t k = 0; k < n; k++)
        if ((uint64_t)a->w[a->log + 2 * k] >= (uint64_t)a->nwords)
            return 0;
    return 1;
}

static void
roll_back(ArenaCore *a)
{
    int64_t *w = a->w;
    for (int64_t k = w[D_LOG_COUNT] - 1; k >= 0; k--)
        w[w[a->log + 2 * k]] = w[a->log + 2 * k + 1];
    __atomic_thread_fence(__ATOMIC_RELEASE);
    w[D_LOG_COUNT] = 0;
}

static inline pthread_mutex_t *
mutex_of(ArenaCore *a)
{
    return (pthread_mutex_t *)(a->w + MUTEX_WORD);
}

/* Take the arena lock; 0, or -1 when the pure path must take the call (lock not held). */
static int
lock(ArenaCore *a)
{
    pthread_mutex_t *m = mutex_of(a);
    int r = pthread_mutex_trylock(m);
    if (r == EBUSY) {
        Py_BEGIN_ALLOW_THREADS
        r = pthread_mutex_lock(m);
        Py_END_ALLOW_THREADS
    }
    if (r == EOWNERDEAD) {
        pthread_mutex_consistent(m);  /* the undo log below repairs what the dead left */
        r = 0;
    }
    if (r != 0)
        return -1;
    if (a->w[D_LOG_COUNT]) {
        if (!log_ok(a)) {  /* the pure path reports the corrupt log */
            pthread_mutex_unlock(m);
            return -1;
        }
        roll_back(a);
        a->w[D_RECOVERIES]++;
    }
    a->w[D_HOLDER] = cached_pid;
    a->bad = 0;
    return 0;
}

/* End the operation: commit it (1), or, if it met a bad index, undo it (0: go pure). */
static int
finish(ArenaCore *a)
{
    int ok = !a->bad;
    if (!ok)
        roll_back(a);
    else if (a->w[D_LOG_COUNT]) {
        a->w[D_GENERATION]++;
        __atomic_thread_fence(__ATOMIC_RELEASE);
        a->w[D_LOG_COUNT] = 0;
    }
    pthread_mutex_unlock(mutex_of(a));
    return ok;
}

static void
unlock(ArenaCore *a)
{
    pthread_mutex_unlock(mutex_of(a));
}

/* -- lists and the buddy allocator (Arena._rmqueue, Arena._free_one) ------------------------ */

static void
list_del(ArenaCore *a, int64_t node)
{
    int64_t before = get(a, C_PREV, node), after = get(a, C_NEXT, node);
    if (a->bad)
        return;
    set(a, C_NEXT, before, after);
    set(a, C_PREV, after, before);
}

static void
list_add(ArenaCore *a, int64_t head, int64_t node)
{
    int64_t first = get(a, C_NEXT, head);
    if (a->bad)
        return;
    set(a, C_NEXT, node, first);
    set(a, C_PREV, node, head);
    set(a, C_PREV, first, node);
    set(a, C_NEXT, head, node);
}

static void
list_add_tail(ArenaCore *a, int64_t head, int64_t node)
{
    int64_t last = get(a, C_PREV, head);
    if (a->bad)
        return;
    set(a, C_PREV, node, last);
    set(a, C_NEXT, node, head);
    set(a, C_NEXT, last, node);
    set(a, C_PREV, head, node);
}

/* Can an order-`order` block be taken (some list at or above it is not empty)? */
static inline int
can_take(ArenaCore *a, int order)
{
    return ((uint64_t)a->w[a->ne] >> order) != 0;
}

/* __rmqueue_smallest + expand, for a caller that checked can_take(). */
static int64_t
rmqueue(ArenaCore *a, int order, int kind)
{
    int64_t cnt = a->counters, ne = a->ne;
    uint64_t avail = (uint64_t)rd(a, ne) >> order;
    if (!avail) {
        a->bad = 1;
        return -1;
    }
    int high = order + __builtin_ctzll(avail);
    if (high > a->max_order) {
        a->bad = 1;
        return -1;
    }
    int64_t pfn = get(a, C_NEXT, ~(int64_t)high);
    if (a->bad || pfn < 0 || pfn >= a->nr_pages) {
        a->bad = 1;
        return -1;
    }
    list_del(a, pfn);
    add(a, cnt + high, -1);
    if (rd(a, cnt + high) == 0)
        st(a, ne, rd(a, ne) ^ ((int64_t)1 << high));
    if (high > order) {
        add(a, ne + N_SPLITS, high - order);
        st(a, ne, rd(a, ne) | (((int64_t)1 << high) - ((int64_t)1 << order)));
    }
    int64_t size = (int64_t)1 << high;
    while (high > order) {
        high--;
        size >>= 1;
        int64_t upper = pfn + size;
        list_add(a, ~(int64_t)high, upper);
        set(a, C_STATE, upper, K_FREE << 8 | high);
        add(a, cnt + high, 1);
    }
    set(a, C_STATE, pfn, (int64_t)kind << 8 | order);
    add(a, ne + N_ALLOCATIONS, 1);
    return a->bad ? -1 : pfn;
}

/* __free_one_page for a block checked to be allocated at `order`. */
static void
free_one(ArenaCore *a, int64_t pfn, int order)
{
    int64_t state = a->col[C_STATE], cnt = a->counters, ne = a->ne;
    set(a, C_STATE, pfn, 0);
    add(a, ne + N_FREES, 1);
    int first_order = order;
    while (order < a->max_order && !a->bad) {
        int64_t buddy = pfn ^ ((int64_t)1 << order);
        if (buddy >= a->nr_pages || rd(a, state + buddy) != (K_FREE << 8 | order))
            break;
        list_del(a, buddy);
        add(a, cnt + order, -1);
        if (rd(a, cnt + order) == 0)
            st(a, ne, rd(a, ne) ^ ((int64_t)1 << order));
        set(a, C_STATE, buddy, 0);
        pfn &= buddy;
        order++;
    }
    if (order > first_order)
        add(a, ne + N_MERGES, order - first_order);
    int64_t parent_buddy = (pfn & ~((int64_t)1 << order)) ^ ((int64_t)2 << order);
    if (order < a->max_order - 1 && parent_buddy < a->nr_pages &&
        rd(a, state + parent_buddy) == (K_FREE << 8 | (order + 1)))
        list_add_tail(a, ~(int64_t)order, pfn);
    else
        list_add(a, ~(int64_t)order, pfn);
    set(a, C_STATE, pfn, K_FREE << 8 | order);
    add(a, cnt + order, 1);
    if (!(rd(a, ne) & ((int64_t)1 << order)))
        st(a, ne, rd(a, ne) | ((int64_t)1 << order));
}

/* -- slabs (Arena._slab_alloc, Arena._slab_free) -------------------------------------------- */

static inline int64_t
cache_word(ArenaCore *a, int64_t slot, int field)
{
    return rd(a, a->caches + slot * SLOT_WORDS + field);
}

/* A live slot's geometry, or 0 (bad) when it does not fit this arena. */
static int
geometry(ArenaCore *a, int64_t slot, int64_t *order, int64_t *objects, int64_t *stride)
{
    if (slot < 0 || slot >= a->nr_caches || !cache_word(a, slot, S_IN_USE))
        return 0;
    *order = cache_word(a, slot, S_ORDER);
    *objects = cache_word(a, slot, S_OBJECTS);
    *stride = cache_word(a, slot, S_STRIDE);
    if (*order < 0 || *order > a->limit || *stride < 8 || *stride % 8 || *objects < 1 ||
        *objects > (a->page_size << *order) / *stride)
        return 0;
    return !a->bad;
}

/* 1: the cache needs no new slab or one can be taken; 0: out of memory (go pure). */
static int
slab_can_alloc(ArenaCore *a, int64_t slot, int64_t order)
{
    int64_t head = ~(a->max_order + 1 + slot);
    return get(a, C_NEXT, head) >= 0 || can_take(a, (int)order);
}

static int64_t
slab_alloc(ArenaCore *a, int64_t slot, int64_t order, int64_t objects, int64_t stride)
{
    int64_t base = a->caches + slot * SLOT_WORDS;
    int64_t head = ~(a->max_order + 1 + slot);
    int64_t slab = get(a, C_NEXT, head);
    if (slab < 0) {
        slab = rmqueue(a, (int)order, K_SLAB);
        if (slab < 0)
            return -1;
        for (int64_t pfn = slab; pfn < slab + ((int64_t)1 << order); pfn++)
            set(a, C_OWNER, pfn, slot + 1);
        set(a, C_INUSE, slab, 0);
        set(a, C_FREELIST, slab, -1);
        set(a, C_FRESH, slab, 0);
        list_add(a, head, slab);
        add(a, base + S_NR_SLABS, 1);
    }
    if (slab >= a->nr_pages) {
        a->bad = 1;
        return -1;
    }
    int64_t first = get(a, C_FREELIST, slab), index;
    int64_t slab_address = slab << a->page_shift;
    if (first >= 0) {
        if (first >= objects) {
            a->bad = 1;
            return -1;
        }
        index = first;
        set(a, C_FREELIST, slab, rd(a, a->data_word + (slab_address + first * stride) / 8));
    } else {
        index = get(a, C_FRESH, slab);
        if (index < 0 || index >= objects) {
            a->bad = 1;
            return -1;
        }
        set(a, C_FRESH, slab, index + 1);
    }
    int64_t inuse = get(a, C_INUSE, slab) + 1;
    set(a, C_INUSE, slab, inuse);
    if (inuse == objects)
        list_del(a, slab);
    add(a, base + S_ACTIVE, 1);
    add(a, base + S_ALLOCS, 1);
    return a->bad ? -1 : slab_address + index * stride;
}

/* Free `address` in cache `slot`; 0 when it is not a live object of it (go pure: the pure
 * path raises the error), 1 when freed. */
static int
slab_free(ArenaCore *a, int64_t slot, int64_t address)
{
    int64_t order, objects, stride;
    if (!geometry(a, slot, &order, &objects, &stride))
        return 0;
    int64_t slab = (address >> a->page_shift) & ~(((int64_t)1 << order) - 1);
    int64_t offset = address - (slab << a->page_shift);
    int64_t index = offset / stride;
    if (offset % stride || index >= objects)
        return 0;
    int64_t fresh = get(a, C_FRESH, slab);
    if (index >= fresh)
        return 0;
    int64_t slab_word = a->data_word + (slab << a->page_shift) / 8;
    int64_t next = get(a, C_FREELIST, slab);
    for (int64_t steps = 0; next >= 0 && !a->bad; steps++) {
        if (next == index || next >= objects || steps > objects)
            return 0;  /* already free, or a corrupt freelist: the pure path says which */
        next = rd(a, slab_word + next * stride / 8);
    }
    if (a->bad)
        return 0;
    int64_t base = a->caches + slot * SLOT_WORDS;
    int64_t inuse = get(a, C_INUSE, slab);
    st(a, a->data_word + address / 8, get(a, C_FREELIST, slab));
    set(a, C_FREELIST, slab, index);
    set(a, C_INUSE, slab, inuse - 1);
    add(a, base + S_ACTIVE, -1);
    add(a, base + S_FREES, 1);
    if (inuse - 1 == 0) {
        if (inuse != objects)
            list_del(a, slab);
        for (int64_t pfn = slab; pfn < slab + ((int64_t)1 << order); pfn++)
            set(a, C_OWNER, pfn, 0);
        add(a, base + S_NR_SLABS, -1);
        free_one(a, slab, (int)order);
    } else if (inuse == objects) {
        list_add(a, ~(a->max_order + 1 + slot), slab);
    }
    return 1;
}

/* -- kmalloc classes (kmem.arena.arena.kmalloc_class, kmalloc_name) ------------------------- */

static const unsigned char size_index[24] = {
    3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
};

static inline int
bit_length(uint64_t value)
{
    return value ? 64 - __builtin_clzll(value) : 0;
}

/* The class index (1: 96, 2: 192, n: 2**n) of a kmalloc of `size`, or 0 for pages. */
static int
kmalloc_index(ArenaCore *a, int64_t size)
{
    int index;
    if (size <= 192)
        index = size_index[(size - 1) / 8];
    else if (size > 2 * a->page_size)
        return 0;
    else
        index = bit_length((uint64_t)(size - 1));
    int64_t class_size = index == 1 ? 96 : index == 2 ? 192 : (int64_t)1 << index;
    if (bit_length((uint64_t)((class_size - 1) >> a->page_shift)) > a->limit)
        return 0;  /* no slab of this arena holds one */
    return index;
}

/* The directory slot of kmalloc class `index`, or -1 when the cache does not exist yet. */
static int64_t
kmalloc_slot(ArenaCore *a, int index)
{
    if (a->kslot[index] >= 0)
        return a->kslot[index];
    int64_t class_size = index == 1 ? 96 : index == 2 ? 192 : (int64_t)1 << index;
    char name[8 * NAME_WORDS + 1];
    memset(name, 0, sizeof name);
    if (class_size >= 1024 && !(class_size & 1023))
        snprintf(name, sizeof name, "kmalloc-%lldk", (long long)(class_size >> 10));
    else
        snprintf(name, sizeof name, "kmalloc-%lld", (long long)class_size);
    for (int64_t slot = 0; slot < a->nr_caches; slot++) {
        int64_t base = a->caches + slot * SLOT_WORDS;
        if (a->w[base + S_IN_USE] && !memcmp(a->w + base + S_NAME, name, 8 * NAME_WORDS)) {
            a->kslot[index] = (int32_t)slot;
            return slot;
        }
    }
    return -1;
}

/* -- the methods ---------------------------------------------------------------------------- */

static inline int
exact_int(PyObject *obj, int64_t lo, int64_t hi, int64_t *out)
{
    if (!PyLong_CheckExact(obj))
        return 0;
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (overflow || value < lo || value > hi)
        return 0;
    *out = value;
    return 1;
}

#define PURE(which) \
    return PyObject_Vectorcall(a->pure[which], args, (size_t)nargs, kwnames)

static PyObject *
core_alloc_pages(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t order = 0;
    if (a->fast && !kwnames && nargs <= 1 &&
        (nargs == 0 || exact_int(args[0], 0, a->limit, &order)) && lock(a) == 0) {
        if (can_take(a, (int)order)) {
            int64_t pfn = rmqueue(a, (int)order, K_ALLOC);
            if (finish(a))
                return PyLong_FromLongLong(pfn);
        } else {
            unlock(a);
        }
    }
    PURE(0);
}

static PyObject *
core_alloc(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t size;
    if (a->fast && !kwnames && nargs == 1 && exact_int(args[0], 1, INT64_MAX / 2, &size)) {
        int order = bit_length((uint64_t)((size - 1) >> a->page_shift));
        if (order <= a->limit && lock(a) == 0) {
            if (can_take(a, order)) {
                int64_t pfn = rmqueue(a, order, K_ALLOC);
                if (finish(a))
                    return PyLong_FromLongLong(pfn << a->page_shift);
            } else {
                unlock(a);
            }
        }
    }
    PURE(2);
}

static PyObject *
core_free_pages(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t pfn, order;
    if (a->fast && !kwnames && nargs == 2 && exact_int(args[0], 0, a->nr_pages - 1, &pfn) &&
        exact_int(args[1], 0, a->max_order, &order) && lock(a) == 0) {
        if (a->w[a->col[C_STATE] + pfn] == (K_ALLOC << 8 | order)) {
            free_one(a, pfn, (int)order);
            if (finish(a))
                Py_RETURN_NONE;
        } else {
            unlock(a);
        }
    }
    PURE(1);
}

static PyObject *
core_free(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t address;
    if (a->fast && !kwnames && nargs == 1 &&
        exact_int(args[0], 0, (a->nr_pages << a->page_shift) - 1, &address) &&
        !(address & (a->page_size - 1)) && lock(a) == 0) {
        int64_t pfn = address >> a->page_shift;
        int64_t state = a->w[a->col[C_STATE] + pfn];
        if (state >> 8 == K_ALLOC && (state & 0xFF) <= a->max_order) {
            free_one(a, pfn, (int)(state & 0xFF));
            if (finish(a))
                Py_RETURN_NONE;
        } else {
            unlock(a);
        }
    }
    PURE(3);
}

static PyObject *
core_kmalloc(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t size;
    if (a->fast && !kwnames && nargs == 1 && exact_int(args[0], 1, INT64_MAX / 2, &size)) {
        int index = kmalloc_index(a, size);
        if (!index) {  /* kmalloc_large: pages */
            int order = bit_length((uint64_t)((size - 1) >> a->page_shift));
            if (order <= a->limit && lock(a) == 0) {
                if (can_take(a, order)) {
                    int64_t pfn = rmqueue(a, order, K_LARGE);
                    add(a, a->ne + N_KMALLOCS, 1);
                    if (finish(a))
                        return PyLong_FromLongLong(pfn << a->page_shift);
                } else {
                    unlock(a);
                }
            }
        } else if (lock(a) == 0) {
            int64_t slot = kmalloc_slot(a, index), order, objects, stride;
            if (slot >= 0 && geometry(a, slot, &order, &objects, &stride) &&
                slab_can_alloc(a, slot, order) && !a->bad) {
                int64_t address = slab_alloc(a, slot, order, objects, stride);
                add(a, a->ne + N_KMALLOCS, 1);
                if (finish(a))
                    return PyLong_FromLongLong(address);
            } else {
                a->bad = 0;
                unlock(a);
            }
        }
    }
    PURE(4);
}

static PyObject *
core_kfree(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t address;
    if (a->fast && !kwnames && nargs == 1 &&
        exact_int(args[0], 0, (a->nr_pages << a->page_shift) - 1, &address) && lock(a) == 0) {
        int64_t pfn = address >> a->page_shift;
        int64_t owner = a->w[a->col[C_OWNER] + pfn];
        int done = 0;
        if (owner)
            done = slab_free(a, owner - 1, address);
        else {
            int64_t state = a->w[a->col[C_STATE] + pfn];
            if (!(address & (a->page_size - 1)) && state >> 8 == K_LARGE &&
                (state & 0xFF) <= a->max_order) {
                free_one(a, pfn, (int)(state & 0xFF));
                done = 1;
            }
        }
        if (done) {
            add(a, a->ne + N_KFREES, 1);
            if (finish(a))
                Py_RETURN_NONE;
        } else {
            if (a->bad)
                roll_back(a);
            a->bad = 0;
            unlock(a);
        }
    }
    PURE(5);
}

static PyObject *
core_cache_alloc(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t slot, order, objects, stride;
    if (a->fast && !kwnames && nargs == 1 && exact_int(args[0], 0, a->nr_caches - 1, &slot) &&
        lock(a) == 0) {
        if (geometry(a, slot, &order, &objects, &stride) && slab_can_alloc(a, slot, order) &&
            !a->bad) {
            int64_t address = slab_alloc(a, slot, order, objects, stride);
            if (finish(a))
                return PyLong_FromLongLong(address);
        } else {
            a->bad = 0;
            unlock(a);
        }
    }
    PURE(6);
}

static PyObject *
core_cache_free(ArenaCore *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    int64_t slot, address;
    if (a->fast && !kwnames && nargs == 2 && exact_int(args[0], 0, a->nr_caches - 1, &slot) &&
        exact_int(args[1], 0, (a->nr_pages << a->page_shift) - 1, &address) && lock(a) == 0) {
        if (a->w[a->col[C_OWNER] + (address >> a->page_shift)] == slot + 1 &&
            slab_free(a, slot, address)) {
            if (finish(a))
                Py_RETURN_NONE;
        } else {
            if (a->bad)
                roll_back(a);
            a->bad = 0;
            unlock(a);
        }
    }
    PURE(7);
}

/* -- construction: read and check the header ------------------------------------------------ */

static int
header_error(const char *what)
{
    PyErr_Format(PyExc_ValueError, "arena header: %s", what);
    return -1;
}

/* Does [start, start + count * width) lie inside the buffer's words? */
static int
inside(ArenaCore *a, int64_t start, int64_t count, int64_t width)
{
    if (start < HEADER_WORDS || count < 0 || width < 0 || start > a->nwords)
        return 0;
    if (width && count > (a->nwords - start) / width)
        return 0;
    return 1;
}

static int
read_header(ArenaCore *a)
{
    int64_t *w = a->w;
    if (a->nwords < HEADER_WORDS)
        return header_error("shorter than a header");
    if (w[H_MAGIC] != MAGIC || w[H_VERSION] != FORMAT_VERSION)
        return header_error("not an arena of this format");
    int64_t page_size = w[H_PAGE_SIZE];
    if (page_size < 64 || page_size > ((int64_t)1 << 30) || (page_size & (page_size - 1)))
        return header_error("bad page size");
    a->page_size = page_size;
    a->page_shift = bit_length((uint64_t)page_size) - 1;
    a->nr_pages = w[H_NR_PAGES];
    a->max_order = w[H_MAX_ORDER];
    a->nr_caches = w[H_NR_CACHES];
    a->log_cap = w[H_LOG_CAPACITY];
    if (a->nr_pages < 1 || a->nr_pages > a->nwords || a->max_order < 0 || a->max_order > 30 ||
        a->nr_caches < 1 || a->nr_caches > 4096 || a->log_cap < 1 || a->log_cap > a->nwords)
        return header_error("counts out of range");
    a->nr_heads = a->max_order + 1 + a->nr_caches;
    int64_t columns = w[H_COLUMNS];
    if (!inside(a, columns, a->nr_pages, NR_COLUMNS) ||
        !inside(a, w[H_HEADS], a->nr_heads, 2) ||
        !inside(a, w[H_COUNTERS], a->max_order + 1 + NR_COUNTERS, 1) ||
        !inside(a, w[H_CACHES], a->nr_caches, SLOT_WORDS) || !inside(a, w[H_LOG], a->log_cap, 2))
        return header_error("a section lies outside the buffer");
    int64_t data = w[H_DATA];
    if (data < 0 || data % page_size || data / 8 > a->nwords ||
        a->nr_pages > (a->nwords - data / 8) / (page_size / 8))
        return header_error("the pages lie outside the buffer");
    for (int c = 0; c < NR_COLUMNS; c++)
        a->col[c] = columns + c * a->nr_pages;
    a->heads_next = w[H_HEADS];
    a->heads_prev = w[H_HEADS] + a->nr_heads;
    a->counters = w[H_COUNTERS];
    a->ne = a->counters + a->max_order + 1;
    a->caches = w[H_CACHES];
    a->log = w[H_LOG];
    a->data_word = data / 8;
    a->limit = a->max_order < bit_length((uint64_t)a->nr_pages) - 1
                   ? a->max_order : bit_length((uint64_t)a->nr_pages) - 1;
    a->fast = w[H_LOCK_KIND] == LOCK_MUTEX;
    return 0;
}

static int
core_init(ArenaCore *a, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"buffer", "pure_alloc_pages", "pure_free_pages", "pure_alloc",
                               "pure_free", "pure_kmalloc", "pure_kfree", "pure_cache_alloc",
                               "pure_cache_free", NULL};
    PyObject *buffer, *pure[NR_PURE];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O$OOOOOOOO", keywords, &buffer, &pure[0],
                                     &pure[1], &pure[2], &pure[3], &pure[4], &pure[5],
                                     &pure[6], &pure[7]))
        return -1;
    if (a->has_view) {
        PyErr_SetString(PyExc_TypeError, "ArenaCore is initialised once");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &a->view, PyBUF_WRITABLE | PyBUF_SIMPLE) < 0)
        return -1;
    a->has_view = 1;
    if (((uintptr_t)a->view.buf & 7) || a->view.len % 8) {
        PyErr_SetString(PyExc_ValueError, "arena buffer: not whole aligned words");
        return -1;
    }
    a->w = a->view.buf;
    a->nwords = a->view.len / 8;
    for (int k = 0; k < KSLOTS; k++)
        a->kslot[k] = -1;
    if (read_header(a) < 0)
        return -1;
    for (int k = 0; k < NR_PURE; k++) {
        Py_INCREF(pure[k]);
        Py_XSETREF(a->pure[k], pure[k]);
    }
    return 0;
}

static PyObject *
core_release(ArenaCore *a, PyObject *unused)
{
    a->fast = 0;  /* every later call goes to the pure methods (which say "closed") */
    a->w = NULL;
    a->nwords = 0;
    if (a->has_view) {
        a->has_view = 0;
        PyBuffer_Release(&a->view);
    }
    Py_RETURN_NONE;
}

static int
core_traverse(ArenaCore *a, visitproc visit, void *arg)
{
    for (int k = 0; k < NR_PURE; k++)
        Py_VISIT(a->pure[k]);
    return 0;
}

static int
core_clear(ArenaCore *a)
{
    for (int k = 0; k < NR_PURE; k++)
        Py_CLEAR(a->pure[k]);
    return 0;
}

static void
core_dealloc(ArenaCore *a)
{
    PyObject_GC_UnTrack(a);
    core_clear(a);
    if (a->has_view)
        PyBuffer_Release(&a->view);
    Py_TYPE(a)->tp_free((PyObject *)a);
}

static PyObject *
core_get_fast(ArenaCore *a, void *closure)
{
    return PyBool_FromLong(a->fast);
}

static PyGetSetDef core_getset[] = {
    {"fast", (getter)core_get_fast, NULL, "do the fast paths run (a mutex arena, open)?", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

#define FAST(name, doc) \
    {#name, (PyCFunction)(void (*)(void))core_##name, METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef core_methods[] = {
    FAST(alloc_pages, "alloc_pages(order=0) -> pfn, as Arena.alloc_pages"),
    FAST(free_pages, "free_pages(pfn, order), as Arena.free_pages"),
    FAST(alloc, "alloc(size) -> address, as Arena.alloc"),
    FAST(free, "free(address), as Arena.free"),
    FAST(kmalloc, "kmalloc(size) -> address, as Arena.kmalloc"),
    FAST(kfree, "kfree(address), as Arena.kfree"),
    FAST(cache_alloc, "cache_alloc(slot) -> address, as ArenaCache.alloc"),
    FAST(cache_free, "cache_free(slot, address), as ArenaCache.free"),
    {"release", (PyCFunction)core_release, METH_NOARGS,
     "drop the buffer export; later calls go to the pure methods"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject kmem_ArenaCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.ArenaCore",
    .tp_doc = "The compiled fast paths of one Arena, over its mapped buffer.",
    .tp_basicsize = sizeof(ArenaCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)core_init,
    .tp_dealloc = (destructor)core_dealloc,
    .tp_traverse = (traverseproc)core_traverse,
    .tp_clear = (inquiry)core_clear,
    .tp_methods = core_methods,
    .tp_getset = core_getset,
};

int
kmem_arena_init(void)
{
    cached_pid = getpid();
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
        return -1;
    }
    return PyType_Ready(&kmem_ArenaCoreType);
}
