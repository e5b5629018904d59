/* The buddy allocator's hot paths (kmem/page/buddy.py is the reference: same lists, same
 * order of operations, same counters).
 *
 * Buffers (owned by BuddyAllocator and its MemMap):
 *   state[pfn]       uint8: FREE|order, ALLOCATED|order, RESERVED, 0 (a tail), BEYOND (padding
 *                    up to a whole max-order block, so a buddy lookup needs no bounds check)
 *   next[], prev[]   int32 links of the circular free lists; the last nr_orders entries are the
 *                    list heads. A link is a pfn (>= 0) or a head, ~order (< 0), which indexes
 *                    from the end as a Python negative index does: idx(v) = v + (v < 0) * len.
 *   counters[]       int64: nr_free[0..max_order], then the non-empty mask, allocations, frees,
 *                    failures, splits, merges.
 *
 * Worked example (64 frames, order 3 from a fresh zone): list 6 holds [0-63]; take it, split
 * keeping the lower half each time: [32-63] to the head of list 5, [16-31] to list 4, [8-15] to
 * list 3; return pfn 0. Freeing pfn 0 at order 3 finds buddy 8 free at order 3, merges to
 * [0-15], then 16, then 32: [0-63] goes back on list 6.
 */
#include "kmem_core.h"

typedef struct {
    PyObject_HEAD
    Py_buffer state_view, next_view, prev_view, counters_view;
    uint8_t *state;
    int32_t *next;
    int32_t *prev;
    int64_t *counters;
    Py_ssize_t state_len;   /* padded length of state */
    Py_ssize_t links_len;   /* nr_pages + nr_orders */
    Py_ssize_t nr_pages;
    int max_order;
    int alloc_order_limit;  /* the largest order this memory can ever hold */
    int merge_likely_below; /* buddy_merge_likely looks at the parent's buddy below this */
    int page_shift;
    /* counters[] offsets after nr_free[] */
    int i_nonempty, i_allocations, i_frees, i_splits, i_merges;
    PyThread_type_lock lock; /* the zone lock; NULL for thread_safe=False fast paths */
    PyThread_type_lock own_lock;
    int held; /* a Python path holds the lock (acquire) */
    /* the pure-Python methods the fast paths stand in for: bad input and errors go there */
    PyObject *pure_alloc_pages, *pure_free_pages, *pure_alloc, *pure_free;
} BuddyZone;

static inline Py_ssize_t
link_index(const BuddyZone *z, int32_t v)
{
    return (Py_ssize_t)v + ((v >> 31) & z->links_len);
}

/* __rmqueue_smallest at exactly `order`, or past an empty list: the smallest larger block,
 * split by expand(). Returns the pfn, or -1 when no block of `order` or larger is free (nothing
 * changed). Called with the lock held. */
static Py_ssize_t
rmqueue(BuddyZone *z, int order)
{
    int32_t *nxt = z->next, *prv = z->prev;
    int64_t *counters = z->counters;
    int32_t head = ~order;
    int32_t pfn = nxt[link_index(z, head)];
    if (pfn >= 0) { /* the fast path: list `order` has a block */
        int32_t after = nxt[pfn];
        nxt[link_index(z, head)] = after;
        prv[link_index(z, after)] = head;
        counters[order] -= 1;
        if (after < 0)
            counters[z->i_nonempty] ^= (int64_t)1 << order;
        return pfn;
    }
    uint64_t avail = (uint64_t)counters[z->i_nonempty] >> order;
    if (avail == 0)
        return -1;
    int high = order + __builtin_ctzll(avail);
    head = ~high;
    pfn = nxt[link_index(z, head)];
    int32_t after = nxt[pfn];
    nxt[link_index(z, head)] = after;
    prv[link_index(z, after)] = head;
    counters[high] -= 1;
    if (after < 0)
        counters[z->i_nonempty] ^= (int64_t)1 << high;
    /* expand(): each upper half to the head of the next lower list */
    counters[z->i_splits] += high - order;
    counters[z->i_nonempty] |= ((int64_t)1 << high) - ((int64_t)1 << order);
    int32_t size = (int32_t)1 << high;
    while (high > order) {
        high -= 1;
        head += 1;
        size >>= 1;
        int32_t upper = pfn + size;
        Py_ssize_t h = link_index(z, head);
        int32_t first = nxt[h];
        nxt[upper] = first;
        prv[upper] = head;
        prv[link_index(z, first)] = upper;
        nxt[h] = upper;
        z->state[upper] = (uint8_t)(KMEM_FREE + high);
        counters[high] += 1;
    }
    return pfn;
}

/* Take and mark an allocated block; -1 when none (the caller hands over to Python). */
static inline Py_ssize_t
alloc_block(BuddyZone *z, int order)
{
    Py_ssize_t pfn = rmqueue(z, order);
    if (pfn >= 0) {
        z->state[pfn] = (uint8_t)(KMEM_ALLOCATED + order);
        z->counters[z->i_allocations] += 1;
    }
    return pfn;
}

/* __free_one_page for an allocated block whose state was checked; called with the lock. */
static void
free_block(BuddyZone *z, Py_ssize_t pfn, int order)
{
    uint8_t *state = z->state;
    int32_t *nxt = z->next, *prv = z->prev;
    int64_t *counters = z->counters;
    state[pfn] = 0;
    counters[z->i_frees] += 1;
    if (order < z->max_order && state[pfn ^ ((Py_ssize_t)1 << order)] == KMEM_FREE + order) {
        int first_order = order;
        while (order < z->max_order) {
            Py_ssize_t buddy = pfn ^ ((Py_ssize_t)1 << order);
            if (state[buddy] != KMEM_FREE + order)
                break;
            int32_t before = prv[buddy], after = nxt[buddy];
            nxt[link_index(z, before)] = after;
            prv[link_index(z, after)] = before;
            counters[order] -= 1;
            if (after == before)
                counters[z->i_nonempty] ^= (int64_t)1 << order;
            state[buddy] = 0;
            pfn &= buddy;
            order += 1;
        }
        counters[z->i_merges] += order - first_order;
    }
    int32_t head = ~order;
    Py_ssize_t h = link_index(z, head);
    if (order < z->merge_likely_below &&
        state[(pfn & ~((Py_ssize_t)1 << order)) ^ ((Py_ssize_t)2 << order)] ==
            KMEM_FREE + order + 1) {
        int32_t last = prv[h]; /* buddy_merge_likely: to the tail */
        prv[pfn] = last;
        nxt[pfn] = head;
        nxt[link_index(z, last)] = (int32_t)pfn;
        prv[h] = (int32_t)pfn;
    } else {
        int32_t first = nxt[h];
        nxt[pfn] = first;
        prv[pfn] = head;
        prv[link_index(z, first)] = (int32_t)pfn;
        nxt[h] = (int32_t)pfn;
    }
    state[pfn] = (uint8_t)(KMEM_FREE + order);
    counters[order] += 1;
    counters[z->i_nonempty] |= (int64_t)1 << order;
}

/* A small exact int in [lo, hi], or -1 (then the pure method takes the call). */
static inline long
small_int(PyObject *obj, long lo, long hi)
{
    if (!PyLong_CheckExact(obj))
        return -1;
    int overflow;
    long value = PyLong_AsLongAndOverflow(obj, &overflow);
    if (overflow || value < lo || value > hi)
        return -1;
    return value;
}

static PyObject *
zone_alloc_pages(BuddyZone *z, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    long order = kwnames ? -1 : nargs == 0 ? 0 :
                 nargs == 1 ? small_int(args[0], 0, z->alloc_order_limit) : -1;
    if (order >= 0) {
        int locked = kmem_fast_lock(z->lock, z->held);
        Py_ssize_t pfn = alloc_block(z, (int)order);
        kmem_fast_unlock(z->lock, locked);
        if (pfn >= 0)
            return PyLong_FromSsize_t(pfn);
    }
    return PyObject_Vectorcall(z->pure_alloc_pages, args, (size_t)nargs, kwnames);
}

static PyObject *
zone_alloc(BuddyZone *z, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && nargs == 1 && PyLong_CheckExact(args[0])) {
        int overflow;
        long long size = PyLong_AsLongLongAndOverflow(args[0], &overflow);
        if (!overflow && size > 0) {
            unsigned long long pages = (unsigned long long)(size - 1) >> z->page_shift;
            int order = pages ? 64 - __builtin_clzll(pages) : 0;
            if (order <= z->alloc_order_limit) {
                int locked = kmem_fast_lock(z->lock, z->held);
                Py_ssize_t pfn = alloc_block(z, order);
                kmem_fast_unlock(z->lock, locked);
                if (pfn >= 0)
                    return PyLong_FromSsize_t(pfn << z->page_shift);
            }
        }
    }
    return PyObject_Vectorcall(z->pure_alloc, args, (size_t)nargs, kwnames);
}

static PyObject *
zone_free_pages(BuddyZone *z, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && nargs == 2) {
        long pfn = small_int(args[0], 0, (long)z->state_len - 1);
        long order = small_int(args[1], 0, 31);
        if (pfn >= 0 && order >= 0) {
            int locked = kmem_fast_lock(z->lock, z->held);
            if (z->state[pfn] == KMEM_ALLOCATED + order) {
                free_block(z, pfn, (int)order);
                kmem_fast_unlock(z->lock, locked);
                Py_RETURN_NONE;
            }
            kmem_fast_unlock(z->lock, locked);
        }
    }
    return PyObject_Vectorcall(z->pure_free_pages, args, (size_t)nargs, kwnames);
}

static PyObject *
zone_free(BuddyZone *z, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && nargs == 1 && PyLong_CheckExact(args[0])) {
        int overflow;
        long long address = PyLong_AsLongLongAndOverflow(args[0], &overflow);
        long long page_mask = ((long long)1 << z->page_shift) - 1;
        if (!overflow && address >= 0 && !(address & page_mask) &&
            (address >> z->page_shift) < z->nr_pages) {
            Py_ssize_t pfn = (Py_ssize_t)(address >> z->page_shift);
            int locked = kmem_fast_lock(z->lock, z->held);
            uint8_t kind = z->state[pfn];
            if ((kind & KMEM_KIND_MASK) == KMEM_ALLOCATED) {
                free_block(z, pfn, kind & KMEM_ORDER_MASK);
                kmem_fast_unlock(z->lock, locked);
                Py_RETURN_NONE;
            }
            kmem_fast_unlock(z->lock, locked);
        }
    }
    return PyObject_Vectorcall(z->pure_free, args, (size_t)nargs, kwnames);
}

/* The zone lock, for the Python paths that read or change several fields at once. */
static PyObject *
zone_acquire(BuddyZone *z, PyObject *Py_UNUSED(ignored))
{
    kmem_lock(z->own_lock);
    z->held = 1;
    Py_RETURN_TRUE;
}

static PyObject *
zone_release(BuddyZone *z, PyObject *Py_UNUSED(ignored))
{
    z->held = 0;
    PyThread_release_lock(z->own_lock);
    Py_RETURN_NONE;
}

static PyObject *
zone_exit(BuddyZone *z, PyObject *const *args, Py_ssize_t nargs)
{
    z->held = 0;
    PyThread_release_lock(z->own_lock);
    Py_RETURN_FALSE;
}

static int
zone_traverse(BuddyZone *z, visitproc visit, void *arg)
{
    Py_VISIT(z->pure_alloc_pages);
    Py_VISIT(z->pure_free_pages);
    Py_VISIT(z->pure_alloc);
    Py_VISIT(z->pure_free);
    return 0;
}

static int
zone_clear(BuddyZone *z)
{
    Py_CLEAR(z->pure_alloc_pages);
    Py_CLEAR(z->pure_free_pages);
    Py_CLEAR(z->pure_alloc);
    Py_CLEAR(z->pure_free);
    return 0;
}

static void
zone_dealloc(BuddyZone *z)
{
    PyObject_GC_UnTrack(z);
    zone_clear(z);
    if (z->state)
        PyBuffer_Release(&z->state_view);
    if (z->next)
        PyBuffer_Release(&z->next_view);
    if (z->prev)
        PyBuffer_Release(&z->prev_view);
    if (z->counters)
        PyBuffer_Release(&z->counters_view);
    if (z->own_lock)
        PyThread_free_lock(z->own_lock);
    Py_TYPE(z)->tp_free((PyObject *)z);
}

int
kmem_get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: items of %zd bytes expected, not %zd", what,
                     itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static int
zone_init(BuddyZone *z, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"state", "next", "prev", "counters", "nr_pages", "max_order",
                               "alloc_order_limit", "page_shift", "thread_safe",
                               "pure_alloc_pages", "pure_free_pages", "pure_alloc",
                               "pure_free", NULL};
    PyObject *state, *next, *prev, *counters, *pa, *pf, *a, *f;
    Py_ssize_t nr_pages;
    int max_order, limit, page_shift, thread_safe;
    if (z->state != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a BuddyZone is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOniiipOOOO", keywords, &state, &next,
                                     &prev, &counters, &nr_pages, &max_order, &limit,
                                     &page_shift, &thread_safe, &pa, &pf, &a, &f))
        return -1;
    if (max_order < 0 || max_order > 30 || limit < 0 || limit > max_order || nr_pages < 1 ||
        page_shift < 0 || page_shift > 40) {
        PyErr_SetString(PyExc_ValueError, "BuddyZone: geometry out of range");
        return -1;
    }
    if (kmem_get_buffer(state, &z->state_view, 1, "state") < 0)
        return -1;
    z->state = z->state_view.buf;
    if (kmem_get_buffer(next, &z->next_view, 4, "next") < 0 ||
        (z->next = z->next_view.buf, 0) ||
        kmem_get_buffer(prev, &z->prev_view, 4, "prev") < 0 ||
        (z->prev = z->prev_view.buf, 0) ||
        kmem_get_buffer(counters, &z->counters_view, 8, "counters") < 0)
        return -1;
    z->counters = z->counters_view.buf;
    int nr_orders = max_order + 1;
    z->state_len = z->state_view.len;
    z->links_len = z->next_view.len / 4;
    Py_ssize_t top = (Py_ssize_t)1 << max_order;
    if (z->links_len != nr_pages + nr_orders || z->prev_view.len != z->next_view.len ||
        z->state_len < nr_pages || z->state_len % top || z->counters_view.len / 8 < nr_orders + 6) {
        PyErr_SetString(PyExc_ValueError, "BuddyZone: buffers do not match the geometry");
        return -1;
    }
    z->nr_pages = nr_pages;
    z->max_order = max_order;
    z->alloc_order_limit = limit;
    z->merge_likely_below = max_order - 1;
    z->page_shift = page_shift;
    z->i_nonempty = nr_orders;
    z->i_allocations = nr_orders + 1;
    z->i_frees = nr_orders + 2;
    z->i_splits = nr_orders + 4;
    z->i_merges = nr_orders + 5;
    z->own_lock = PyThread_allocate_lock();
    if (z->own_lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    z->lock = thread_safe ? z->own_lock : NULL;
    Py_INCREF(pa);
    z->pure_alloc_pages = pa;
    Py_INCREF(pf);
    z->pure_free_pages = pf;
    Py_INCREF(a);
    z->pure_alloc = a;
    Py_INCREF(f);
    z->pure_free = f;
    return 0;
}

static PyMethodDef zone_methods[] = {
    {"alloc_pages", (PyCFunction)(void (*)(void))zone_alloc_pages,
     METH_FASTCALL | METH_KEYWORDS, "alloc_pages(order=0) -> pfn, as BuddyAllocator.alloc_pages"},
    {"free_pages", (PyCFunction)(void (*)(void))zone_free_pages,
     METH_FASTCALL | METH_KEYWORDS, "free_pages(pfn, order), as BuddyAllocator.free_pages"},
    {"alloc", (PyCFunction)(void (*)(void))zone_alloc, METH_FASTCALL | METH_KEYWORDS,
     "alloc(size) -> address, as BuddyAllocator.alloc"},
    {"free", (PyCFunction)(void (*)(void))zone_free, METH_FASTCALL | METH_KEYWORDS,
     "free(address), as BuddyAllocator.free"},
    {"acquire", (PyCFunction)zone_acquire, METH_NOARGS, "take the zone lock"},
    {"release", (PyCFunction)zone_release, METH_NOARGS, "drop the zone lock"},
    {"__enter__", (PyCFunction)zone_acquire, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))zone_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject kmem_BuddyZoneType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.BuddyZone",
    .tp_doc = "The compiled hot paths of one BuddyAllocator, over its own buffers.",
    .tp_basicsize = sizeof(BuddyZone),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)zone_init,
    .tp_dealloc = (destructor)zone_dealloc,
    .tp_traverse = (traverseproc)zone_traverse,
    .tp_clear = (inquiry)zone_clear,
    .tp_methods = zone_methods,
};
