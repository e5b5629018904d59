/* The replay loop (kmem/trace/replay.py Replayer._feed_events is the reference, statement for
 * statement): one batch of trace events through kmem's allocators without returning to Python
 * per event.
 *
 * The loop reads the replayer's own tables (live objects, free slots, cache calls, kmalloc
 * calls, pending pages, replayed pages) and calls the same functions the Python loop calls: a
 * cache's alloc and free, kmalloc, the buddy allocator's alloc_pages and free_pages (the
 * compiled ones are C functions, so the common event never runs Python code). The page layer
 * (_decide_page, _page_alloc, _page_free) and a free of nothing (_free_of_nothing) run here
 * too, their counters kept in C for the batch and added to the replayer's when it ends, even
 * when an error stops it (nothing in Python reads them in between). The replayer's Python
 * methods take everything rare (a cache seen for the first time, a failed allocation, an
 * allocation of a live pointer or of NULL). KmemError from a slab allocation goes to _failed,
 * as the Python loop's `except KmemError` does, OutOfMemoryError and InvalidArgumentError from
 * alloc_pages count as _page_alloc counts them; any other error stops the batch and propagates.
 */
#include "kmem_core.h"

/* Event kinds (kmem/trace/events.py). */
enum {
    KMALLOC_NODE = 1, KMEM_CACHE_ALLOC_NODE = 3, KMEM_CACHE_FREE = 5, MM_PAGE_ALLOC = 6,
    MM_PAGE_FREE = 7, MM_PAGE_FREE_BATCHED = 8,
};

/* The counters the C loop keeps for a batch: the replayer's attribute, or its page_counts
 * entry, each adds to (flush_counters). */
enum {
    NULL_FREES, UNKNOWN_FREES, KERNEL_SHEAF_EVENTS, KMEM_OOM, TOO_LARGE, PAGE_ALLOCS,
    PAGE_FREES, PAGE_UNKNOWN_FREES, PAGE_MISSED_FREES, PAGE_TRACED_FAILURES,
    PAGE_ORDER_MISMATCHES, PAGE_BATCHED_DUPLICATES, PAGE_SLAB_SKIPPED, NR_COUNTERS
};
static const char *const counter_names[NR_COUNTERS] = {
    "null_frees", "unknown_frees", "kernel_sheaf_events", "kmem_oom", "too_large", "allocs",
    "frees", "unknown_frees", "missed_frees", "traced_failures", "order_mismatches",
    "batched_duplicates", "slab_page_events_skipped",
};
enum { FIRST_PAGE_COUNTER = PAGE_ALLOCS };

typedef struct {
    PyObject *replayer;
    PyObject *live, *frees, *cache_calls, *kmalloc_calls, *pending;
    PyObject *pages, *slab_pfns, *kernel_sheaves, *oom_ptrs, *page_counts;
    PyObject *kmalloc, *alloc_pages, *free_pages;
    PyObject *kmem_error, *oom_error, *invalid_error;
    PyObject *null_ptr, *highuser, *one, *zero;
    long nr_cpus;
    int do_slab, do_page, dedup;
    long long page_layer_pages, page_layer_peak;
    Py_ssize_t counts[NR_COUNTERS];
} Feed;

static PyObject *
call_method(Feed *f, const char *name, PyObject *a, PyObject *b)
{
    return PyObject_CallMethod(f->replayer, name, b ? "OO" : "O", a, b);
}

/* -- the slab layer ----------------------------------------------------------------------- */

/* Replayer._free_of_nothing: a free of a pointer with no live object. */
static int
free_of_nothing(Feed *f, PyObject *key)
{
    int null = PyObject_RichCompareBool(key, f->null_ptr, Py_EQ);
    if (null < 0)
        return -1;
    if (null) {
        f->counts[NULL_FREES]++;
        return 0;
    }
    int found = PySet_Contains(f->kernel_sheaves, key);
    if (found < 0)
        return -1;
    if (found) { /* the kernel freeing one of its own sheaves */
        f->counts[KERNEL_SHEAF_EVENTS]++;
        return PySet_Discard(f->kernel_sheaves, key) < 0 ? -1 : 0;
    }
    found = PySet_Discard(f->oom_ptrs, key);
    if (found < 0)
        return -1;
    if (!found)
        f->counts[UNKNOWN_FREES]++;
    return 0;
}

/* The free function of a live entry (free slot, address): _frees[slot], borrowed. */
static PyObject *
free_of(Feed *f, PyObject *entry)
{
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: a live entry is (free slot, address)");
        return NULL;
    }
    Py_ssize_t slot = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 0));
    if (slot == -1 && PyErr_Occurred())
        return NULL;
    if (slot < 0 || slot >= PyList_GET_SIZE(f->frees)) {
        PyErr_SetString(PyExc_IndexError, "replay_feed: a live entry's free slot is unknown");
        return NULL;
    }
    return PyList_GET_ITEM(f->frees, slot);
}

/* (free slot, address): a new live entry. Two ints: untracked by the garbage collector, as
 * its first pass over a tuple of ints would leave it (no reference cycle can go through). */
static PyObject *
live_entry(PyObject *slot, PyObject *address)
{
    PyObject *entry = PyTuple_Pack(2, slot, address);
    if (entry != NULL && PyLong_CheckExact(slot) && PyLong_CheckExact(address))
        PyObject_GC_UnTrack(entry);
    return entry;
}

/* One slab event; 0 to go on, -1 on an error that stops the batch. */
static int
slab_event(Feed *f, int kind, PyObject *cpu, PyObject *key, PyObject *tail)
{
    if (kind > KMEM_CACHE_ALLOC_NODE) { /* kfree, kmem_cache_free */
        PyObject *entry = PyDict_GetItemWithError(f->live, key);
        if (entry == NULL)
            return PyErr_Occurred() ? -1 : free_of_nothing(f, key);
        Py_INCREF(entry);
        if (PyDict_DelItem(f->live, key) < 0) {
            Py_DECREF(entry);
            return -1;
        }
        PyObject *free = free_of(f, entry);
        PyObject *r = NULL;
        if (free != NULL) {
            PyObject *args[2] = {PyTuple_GET_ITEM(entry, 1), cpu};
            r = PyObject_Vectorcall(free, args, 2, NULL);
        }
        Py_DECREF(entry);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    int is_live = PyDict_Contains(f->live, key);
    if (is_live < 0)
        return -1;
    if (is_live || PyObject_RichCompareBool(key, f->null_ptr, Py_EQ) == 1) {
        PyObject *odd = call_method(f, "_odd_alloc", key, cpu);
        if (odd == NULL)
            return -1;
        int skip = PyObject_IsTrue(odd);
        Py_DECREF(odd);
        if (skip)
            return skip < 0 ? -1 : 0;
    }
    PyObject *entry = NULL, *info = NULL;
    if (kind > KMALLOC_NODE) { /* kmem_cache_alloc(_node) */
        /* by (name, gfp_flags text): the cache's alloc, free slot and the gfp value */
        PyObject *request = PyTuple_Pack(2, PyTuple_GET_ITEM(tail, 0), PyTuple_GET_ITEM(tail, 3));
        if (request == NULL)
            return -1;
        PyObject *cache = PyDict_GetItemWithError(f->cache_calls, request);
        Py_DECREF(request);
        if (cache != NULL)
            Py_INCREF(cache);
        else if (!PyErr_Occurred())
            cache = PyObject_CallMethod(f->replayer, "_cache_for", "OOO",
                                        PyTuple_GET_ITEM(tail, 0), PyTuple_GET_ITEM(tail, 2),
                                        PyTuple_GET_ITEM(tail, 3));
        if (cache != NULL && (!PyTuple_Check(cache) || PyTuple_GET_SIZE(cache) != 3)) {
            PyErr_SetString(PyExc_TypeError, "replay_feed: cache calls are 3-tuples");
            Py_CLEAR(cache);
        }
        if (cache != NULL) {
            PyObject *args[2] = {cpu, PyTuple_GET_ITEM(cache, 2)};
            PyObject *address = PyObject_Vectorcall(PyTuple_GET_ITEM(cache, 0), args, 2, NULL);
            if (address != NULL) {
                entry = live_entry(PyTuple_GET_ITEM(cache, 1), address);
                Py_DECREF(address);
            }
            Py_DECREF(cache);
        }
    } else { /* kmalloc(_node) */
        PyObject *size = PyTuple_GET_ITEM(tail, 1), *gfp_text = PyTuple_GET_ITEM(tail, 3);
        PyObject *request = PyTuple_Pack(2, size, gfp_text);
        if (request == NULL)
            return -1;
        info = PyDict_GetItemWithError(f->kmalloc_calls, request);
        Py_DECREF(request);
        PyObject *address = NULL;
        if (info != NULL) {
            Py_INCREF(info);
            if (!PyTuple_Check(info) || PyTuple_GET_SIZE(info) != 3) {
                PyErr_SetString(PyExc_TypeError, "replay_feed: kmalloc calls are 3-tuples");
            } else {
                PyObject *args[3] = {size, PyTuple_GET_ITEM(info, 0), cpu};
                address = PyObject_Vectorcall(f->kmalloc, args, 3, NULL);
            }
        } else if (!PyErr_Occurred()) {
            PyObject *first = PyObject_CallMethod(f->replayer, "_first_kmalloc", "OOO", size,
                                                  gfp_text, cpu);
            if (first != NULL) {
                if (PyTuple_Check(first) && PyTuple_GET_SIZE(first) == 2 &&
                    PyTuple_Check(PyTuple_GET_ITEM(first, 0)) &&
                    PyTuple_GET_SIZE(PyTuple_GET_ITEM(first, 0)) == 3) {
                    info = Py_NewRef(PyTuple_GET_ITEM(first, 0));
                    address = Py_NewRef(PyTuple_GET_ITEM(first, 1));
                } else {
                    PyErr_SetString(PyExc_TypeError, "replay_feed: _first_kmalloc's result");
                }
                Py_DECREF(first);
            }
        }
        if (address != NULL) {
            entry = live_entry(PyTuple_GET_ITEM(info, 2), address);
            Py_DECREF(address);
        }
    }
    if (entry == NULL) {
        Py_XDECREF(info);
        if (!PyErr_ExceptionMatches(f->kmem_error))
            return -1;
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL)
            PyException_SetTraceback(value, traceback);
        PyObject *r = call_method(f, "_failed", key, value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(traceback);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    int stored = PyDict_SetItem(f->live, key, entry);
    Py_DECREF(entry);
    if (stored < 0 || info == NULL)
        return stored;
    /* kmalloc: kmem's bytes_alloc for (bytes_req, gfp) against the traced one */
    int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(info, 1), PyTuple_GET_ITEM(tail, 2),
                                        Py_EQ);
    int status = 0;
    if (same < 0)
        status = -1;
    else if (!same) {
        PyObject *r = call_method(f, "_mismatch", tail, PyTuple_GET_ITEM(info, 1));
        status = r ? 0 : -1;
        Py_XDECREF(r);
    }
    Py_DECREF(info);
    return status;
}

/* -- the page layer ----------------------------------------------------------------------- */

/* The order of a page kmem holds (its _pages entry's, which alloc_pages accepted). */
static int
held_order(PyObject *order, int *shift)
{
    long value = PyLong_AsLong(order);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (value < 0 || value > 62) {
        PyErr_SetString(PyExc_ValueError, "replay_feed: a replayed page's order is out of range");
        return -1;
    }
    *shift = (int)value;
    return 0;
}

/* A _pages entry (kmem pfn, order): its order, and buddy.free_pages(*entry). */
static int
free_held(Feed *f, PyObject *own)
{
    int shift;
    if (!PyTuple_Check(own) || PyTuple_GET_SIZE(own) != 2) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: a page entry is (pfn, order)");
        return -1;
    }
    PyObject *args[2] = {PyTuple_GET_ITEM(own, 0), PyTuple_GET_ITEM(own, 1)};
    PyObject *r = PyObject_Vectorcall(f->free_pages, args, 2, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    if (held_order(PyTuple_GET_ITEM(own, 1), &shift) < 0)
        return -1;
    f->page_layer_pages -= 1LL << shift;
    return 0;
}

/* Replayer._page_alloc: mm_page_alloc of the traced pfn (-1: the kernel's allocation failed). */
static int
page_alloc(Feed *f, PyObject *pfn, PyObject *order)
{
    int failed = PyObject_RichCompareBool(pfn, f->zero, Py_LT);
    if (failed < 0)
        return -1;
    if (failed) {
        f->counts[PAGE_TRACED_FAILURES]++;
        return 0;
    }
    PyObject *old = PyDict_GetItemWithError(f->pages, pfn);
    if (old != NULL) {
        Py_INCREF(old);
        int status = PyDict_DelItem(f->pages, pfn);
        if (status == 0) {
            f->counts[PAGE_MISSED_FREES]++;
            status = free_held(f, old);
        }
        Py_DECREF(old);
        if (status < 0)
            return -1;
    } else if (PyErr_Occurred()) {
        return -1;
    }
    PyObject *own = PyObject_Vectorcall(f->alloc_pages, &order, 1, NULL);
    if (own == NULL) {
        if (PyErr_ExceptionMatches(f->oom_error)) {
            PyErr_Clear();
            f->counts[KMEM_OOM]++;
            return 0;
        }
        if (PyErr_ExceptionMatches(f->invalid_error)) { /* an order above --max-order */
            PyErr_Clear();
            f->counts[TOO_LARGE]++;
            return 0;
        }
        return -1;
    }
    PyObject *entry = PyTuple_Pack(2, own, order);
    Py_DECREF(own);
    int shift;
    if (entry == NULL || PyDict_SetItem(f->pages, pfn, entry) < 0 ||
        held_order(order, &shift) < 0) {
        Py_XDECREF(entry);
        return -1;
    }
    Py_DECREF(entry);
    f->counts[PAGE_ALLOCS]++;
    f->page_layer_pages += 1LL << shift;
    if (f->page_layer_pages > f->page_layer_peak)
        f->page_layer_peak = f->page_layer_pages;
    return 0;
}

/* Replayer._page_free: mm_page_free or mm_page_free_batched (kind) of the traced pfn. */
static int
page_free(Feed *f, int kind, PyObject *pfn, PyObject *order)
{
    PyObject *own = PyDict_GetItemWithError(f->pages, pfn);
    if (own == NULL) {
        if (PyErr_Occurred())
            return -1;
        int found = PySet_Discard(f->slab_pfns, pfn);
        if (found < 0)
            return -1;
        if (found)
            f->counts[PAGE_SLAB_SKIPPED]++;
        else if (kind == MM_PAGE_FREE_BATCHED)
            f->counts[PAGE_BATCHED_DUPLICATES]++;
        else
            f->counts[PAGE_UNKNOWN_FREES]++;
        return 0;
    }
    Py_INCREF(own);
    int status = PyDict_DelItem(f->pages, pfn);
    if (status == 0 && (!PyTuple_Check(own) || PyTuple_GET_SIZE(own) != 2)) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: a page entry is (pfn, order)");
        status = -1;
    }
    if (status == 0) {
        int other = PyObject_RichCompareBool(PyTuple_GET_ITEM(own, 1), order, Py_NE);
        if (other < 0)
            status = -1;
        else if (other && kind == MM_PAGE_FREE)
            f->counts[PAGE_ORDER_MISMATCHES]++;
    }
    if (status == 0 && (status = free_held(f, own)) == 0)
        f->counts[PAGE_FREES]++;
    Py_DECREF(own);
    return status;
}

/* Replayer._decide_page: a waiting mm_page_alloc (pfn, order), the kernel's slab page if a
 * slab allocation followed it. */
static int
decide_page(Feed *f, PyObject *page, int slab_alloc_follows)
{
    if (!PyTuple_Check(page) || PyTuple_GET_SIZE(page) != 2) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: a pending page is (pfn, order)");
        return -1;
    }
    if (!slab_alloc_follows)
        return page_alloc(f, PyTuple_GET_ITEM(page, 0), PyTuple_GET_ITEM(page, 1));
    if (PySet_Add(f->slab_pfns, PyTuple_GET_ITEM(page, 0)) < 0)
        return -1;
    f->counts[PAGE_SLAB_SKIPPED]++;
    return 0;
}

static int
page_event(Feed *f, int kind, PyObject *cpu, PyObject *key, PyObject *tail)
{
    if (kind == MM_PAGE_ALLOC) {
        PyObject *order = PyTuple_GET_ITEM(tail, 1);
        int maybe_slab = 0;
        if (f->dedup) {
            int one = PyObject_RichCompareBool(PyTuple_GET_ITEM(tail, 2), f->one, Py_EQ);
            int user = one ? 0 : PySequence_Contains(PyTuple_GET_ITEM(tail, 0), f->highuser);
            if (one < 0 || user < 0)
                return -1;
            maybe_slab = !one && !user;
        }
        if (maybe_slab) { /* the next event on this CPU decides */
            PyObject *page = PyTuple_Pack(2, key, order);
            int stored = page ? PyDict_SetItem(f->pending, cpu, page) : -1;
            Py_XDECREF(page);
            return stored;
        }
        return page_alloc(f, key, order);
    }
    if (kind <= MM_PAGE_FREE_BATCHED)
        return page_free(f, kind, key, PyTuple_GET_ITEM(tail, 1));
    return 0; /* pcp refills and drains: only counted */
}

/* -- the batch ---------------------------------------------------------------------------- */

static int
get_flag(PyObject *obj, const char *name, int *flag)
{
    PyObject *value = PyObject_GetAttrString(obj, name);
    if (value == NULL)
        return -1;
    *flag = PyObject_IsTrue(value);
    Py_DECREF(value);
    return *flag < 0 ? -1 : 0;
}

static int
get_long_long(PyObject *obj, const char *name, long long *number)
{
    PyObject *value = PyObject_GetAttrString(obj, name);
    if (value == NULL)
        return -1;
    *number = PyLong_AsLongLong(value);
    Py_DECREF(value);
    return *number == -1 && PyErr_Occurred() ? -1 : 0;
}

static int
set_long_long(PyObject *obj, const char *name, long long number)
{
    PyObject *value = PyLong_FromLongLong(number);
    int status = value ? PyObject_SetAttrString(obj, name, value) : -1;
    Py_XDECREF(value);
    return status;
}

/* The batch's counters added to the replayer's (its error, if one stopped the batch, kept). */
static int
flush_counters(Feed *f, int page_layer_read)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    int status = 0;
    for (int i = 0; i < NR_COUNTERS && status == 0; i++) {
        if (f->counts[i] == 0)
            continue;
        PyObject *old = i < FIRST_PAGE_COUNTER
            ? PyObject_GetAttrString(f->replayer, counter_names[i])
            : Py_XNewRef(PyDict_GetItemString(f->page_counts, counter_names[i]));
        PyObject *delta = PyLong_FromSsize_t(f->counts[i]);
        PyObject *sum = old && delta ? PyNumber_Add(old, delta) : NULL;
        if (sum == NULL)
            status = -1;
        else if (i < FIRST_PAGE_COUNTER)
            status = PyObject_SetAttrString(f->replayer, counter_names[i], sum);
        else
            status = PyDict_SetItemString(f->page_counts, counter_names[i], sum);
        if (old == NULL && !PyErr_Occurred())
            PyErr_Format(PyExc_KeyError, "replay_feed: no page count %s", counter_names[i]);
        Py_XDECREF(old);
        Py_XDECREF(delta);
        Py_XDECREF(sum);
        f->counts[i] = 0;
    }
    if (status == 0 && page_layer_read &&
        (set_long_long(f->replayer, "page_layer_pages", f->page_layer_pages) < 0 ||
         set_long_long(f->replayer, "page_layer_peak", f->page_layer_peak) < 0))
        status = -1;
    if (type != NULL) { /* the batch's own error comes first */
        if (status < 0)
            PyErr_Clear();
        PyErr_Restore(type, value, traceback);
        return -1;
    }
    return status;
}

/* replay_feed(replayer, kinds, cpus, keys, tails, kmalloc, errors): the batch's events;
 * errors is (KmemError, OutOfMemoryError, InvalidArgumentError). */
PyObject *
kmem_replay_feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "replay_feed takes 7 arguments");
        return NULL;
    }
    Feed f = {.replayer = args[0], .kmalloc = args[5]};
    PyObject *kinds = args[1], *cpus = args[2], *keys = args[3], *tails = args[4];
    PyObject *errors = args[6];
    if (!PyTuple_Check(errors) || PyTuple_GET_SIZE(errors) != 3) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: errors is a 3-tuple of classes");
        return NULL;
    }
    f.kmem_error = PyTuple_GET_ITEM(errors, 0);
    f.oom_error = PyTuple_GET_ITEM(errors, 1);
    f.invalid_error = PyTuple_GET_ITEM(errors, 2);
    if (!PyBytes_Check(kinds) || !PyList_CheckExact(cpus) || !PyList_CheckExact(keys) ||
        !PyList_CheckExact(tails))
        Py_RETURN_NOTIMPLEMENTED; /* other column types: the Python loop takes the batch */
    if (PyList_GET_SIZE(cpus) != PyBytes_GET_SIZE(kinds) ||
        PyList_GET_SIZE(keys) != PyBytes_GET_SIZE(kinds) ||
        PyList_GET_SIZE(tails) != PyBytes_GET_SIZE(kinds)) {
        PyErr_SetString(PyExc_ValueError, "replay_feed: columns of one batch expected");
        return NULL;
    }
    PyObject *nr_cpus = PyObject_GetAttrString(f.replayer, "nr_cpus");
    if (nr_cpus == NULL)
        return NULL;
    f.nr_cpus = PyLong_AsLong(nr_cpus);
    Py_DECREF(nr_cpus);
    if (f.nr_cpus < 1) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "replay_feed: nr_cpus must be positive");
        return NULL;
    }
    if (get_flag(f.replayer, "_do_slab", &f.do_slab) < 0 ||
        get_flag(f.replayer, "_do_page", &f.do_page) < 0 ||
        get_flag(f.replayer, "_dedup_slab_pages", &f.dedup) < 0)
        return NULL;
    PyObject *result = NULL, *buddy = NULL;
    int page_layer_read = 0;
    f.live = PyObject_GetAttrString(f.replayer, "_live");
    f.frees = PyObject_GetAttrString(f.replayer, "_frees");
    f.cache_calls = PyObject_GetAttrString(f.replayer, "_cache_calls");
    f.kmalloc_calls = PyObject_GetAttrString(f.replayer, "_kmalloc_calls");
    f.pending = PyObject_GetAttrString(f.replayer, "_pending");
    f.pages = PyObject_GetAttrString(f.replayer, "_pages");
    f.slab_pfns = PyObject_GetAttrString(f.replayer, "_slab_pfns");
    f.kernel_sheaves = PyObject_GetAttrString(f.replayer, "_kernel_sheaves");
    f.oom_ptrs = PyObject_GetAttrString(f.replayer, "_oom_ptrs");
    f.page_counts = PyObject_GetAttrString(f.replayer, "page_counts");
    buddy = PyObject_GetAttrString(f.replayer, "buddy");
    if (buddy != NULL) {
        f.alloc_pages = PyObject_GetAttrString(buddy, "alloc_pages");
        f.free_pages = PyObject_GetAttrString(buddy, "free_pages");
    }
    f.null_ptr = PyUnicode_FromString("0");
    f.highuser = PyUnicode_FromString("HIGHUSER");
    f.one = PyLong_FromLong(1);
    f.zero = PyLong_FromLong(0);
    if (!f.live || !f.frees || !f.cache_calls || !f.kmalloc_calls || !f.pending || !f.pages ||
        !f.slab_pfns || !f.kernel_sheaves || !f.oom_ptrs || !f.page_counts || !f.alloc_pages ||
        !f.free_pages || !f.null_ptr || !f.highuser || !f.one || !f.zero)
        goto done;
    if (!PyDict_CheckExact(f.live) || !PyList_CheckExact(f.frees) ||
        !PyDict_CheckExact(f.cache_calls) || !PyDict_CheckExact(f.kmalloc_calls) ||
        !PyDict_CheckExact(f.pending) || !PyDict_CheckExact(f.pages) ||
        !PyDict_CheckExact(f.page_counts) || !PyAnySet_CheckExact(f.slab_pfns) ||
        !PyAnySet_CheckExact(f.kernel_sheaves) || !PyAnySet_CheckExact(f.oom_ptrs) ||
        !PySet_Check(f.slab_pfns) || !PySet_Check(f.kernel_sheaves) ||
        !PySet_Check(f.oom_ptrs)) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: the replayer's tables are dicts, a"
                        " list and sets");
        goto done;
    }
    if (get_long_long(f.replayer, "page_layer_pages", &f.page_layer_pages) < 0 ||
        get_long_long(f.replayer, "page_layer_peak", &f.page_layer_peak) < 0)
        goto done;
    page_layer_read = 1;
    const unsigned char *kind_of = (const unsigned char *)PyBytes_AS_STRING(kinds);
    Py_ssize_t n = PyBytes_GET_SIZE(kinds);
    for (Py_ssize_t i = 0; i < n; i++) {
        int kind = kind_of[i];
        PyObject *cpu = PyList_GET_ITEM(cpus, i);
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *tail = PyList_GET_ITEM(tails, i);
        if (!PyTuple_Check(tail) || PyTuple_GET_SIZE(tail) < 3 || !PyLong_Check(cpu) ||
            (kind <= KMEM_CACHE_FREE && PyTuple_GET_SIZE(tail) < 4)) {
            PyErr_SetString(PyExc_ValueError, "replay_feed: an event's tail is too short");
            goto done;
        }
        Py_INCREF(cpu);
        Py_INCREF(key);
        Py_INCREF(tail);
        int status = 0;
        if (PyDict_GET_SIZE(f.pending)) {
            PyObject *page = PyDict_GetItemWithError(f.pending, cpu);
            if (page != NULL) {
                Py_INCREF(page);
                status = PyDict_DelItem(f.pending, cpu);
                if (status == 0)
                    status = decide_page(&f, page, kind <= KMEM_CACHE_ALLOC_NODE);
                Py_DECREF(page);
            } else if (PyErr_Occurred()) {
                status = -1;
            }
        }
        if (status == 0 && kind <= KMEM_CACHE_FREE) {
            if (f.do_slab) {
                long c = PyLong_AsLong(cpu);
                if (c == -1 && PyErr_Occurred()) {
                    status = -1;
                } else {
                    if (c >= f.nr_cpus) {
                        Py_DECREF(cpu);
                        cpu = PyLong_FromLong(c % f.nr_cpus);
                    }
                    status = cpu ? slab_event(&f, kind, cpu, key, tail) : -1;
                }
            }
        } else if (status == 0 && f.do_page) {
            status = page_event(&f, kind, cpu, key, tail);
        }
        Py_XDECREF(cpu);
        Py_DECREF(key);
        Py_DECREF(tail);
        if (status < 0)
            goto done;
    }
    result = Py_NewRef(Py_None);
done:
    if (flush_counters(&f, page_layer_read) < 0)
        Py_CLEAR(result);
    Py_XDECREF(buddy);
    Py_XDECREF(f.live);
    Py_XDECREF(f.frees);
    Py_XDECREF(f.cache_calls);
    Py_XDECREF(f.kmalloc_calls);
    Py_XDECREF(f.pending);
    Py_XDECREF(f.pages);
    Py_XDECREF(f.slab_pfns);
    Py_XDECREF(f.kernel_sheaves);
    Py_XDECREF(f.oom_ptrs);
    Py_XDECREF(f.page_counts);
    Py_XDECREF(f.alloc_pages);
    Py_XDECREF(f.free_pages);
    Py_XDECREF(f.null_ptr);
    Py_XDECREF(f.highuser);
    Py_XDECREF(f.one);
    Py_XDECREF(f.zero);
    return result;
}
