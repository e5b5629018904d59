/* The replay loop (kmem/trace/replay.py Replayer._feed is the reference, statement for
 * statement): one batch of trace events through kmem's allocators without returning to Python
 * per event.
 *
 * The loop reads the replayer's own dicts (live objects, cache calls, kmalloc calls, pending
 * pages) and calls the same functions the Python loop calls: a cache's alloc and free, kmalloc
 * (the compiled ones are C functions, so the common event never runs Python code), and the
 * replayer's Python methods for everything rare (a cache seen for the first time, a failed
 * allocation, a free of nothing, page events). KmemError from an allocation goes to _failed, as
 * the Python loop's `except KmemError` does; any other error stops the batch and propagates.
 */
#include "kmem_core.h"

/* Event kinds (kmem/trace/events.py). */
enum {
    KMALLOC_NODE = 1, KMEM_CACHE_ALLOC_NODE = 3, KMEM_CACHE_FREE = 5, MM_PAGE_ALLOC = 6,
    MM_PAGE_FREE_BATCHED = 8,
};

typedef struct {
    PyObject *replayer;
    PyObject *live, *cache_calls, *kmalloc_calls, *pending;
    PyObject *kmalloc, *kmem_error, *null_ptr, *highuser, *one;
    long nr_cpus;
    int do_slab, do_page, dedup;
} Feed;

static PyObject *
call_method(Feed *f, const char *name, PyObject *a, PyObject *b)
{
    return PyObject_CallMethod(f->replayer, name, b ? "OO" : "O", a, b);
}

/* One slab event; 0 to go on, -1 on an error that stops the batch. */
static int
slab_event(Feed *f, int kind, PyObject *cpu, PyObject *key, PyObject *tail)
{
    if (kind > KMEM_CACHE_ALLOC_NODE) { /* kfree, kmem_cache_free */
        PyObject *entry = PyDict_GetItemWithError(f->live, key);
        if (entry == NULL) {
            if (PyErr_Occurred())
                return -1;
            PyObject *r = call_method(f, "_free_of_nothing", key, NULL);
            Py_XDECREF(r);
            return r ? 0 : -1;
        }
        Py_INCREF(entry);
        if (PyDict_DelItem(f->live, key) < 0) {
            Py_DECREF(entry);
            return -1;
        }
        PyObject *args[2] = {PyTuple_GET_ITEM(entry, 1), cpu};
        PyObject *r = PyObject_Vectorcall(PyTuple_GET_ITEM(entry, 0), args, 2, NULL);
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
        /* by (name, gfp_flags text): the cache's alloc, free and the gfp value */
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
        if (cache != NULL) {
            PyObject *args[2] = {cpu, PyTuple_GET_ITEM(cache, 2)};
            PyObject *address = PyObject_Vectorcall(PyTuple_GET_ITEM(cache, 0), args, 2, NULL);
            if (address != NULL) {
                entry = PyTuple_Pack(2, PyTuple_GET_ITEM(cache, 1), address);
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
            PyObject *args[3] = {size, PyTuple_GET_ITEM(info, 0), cpu};
            address = PyObject_Vectorcall(f->kmalloc, args, 3, NULL);
        } else if (!PyErr_Occurred()) {
            PyObject *first = PyObject_CallMethod(f->replayer, "_first_kmalloc", "OOO", size,
                                                  gfp_text, cpu);
            if (first != NULL) {
                info = PyTuple_GET_ITEM(first, 0);
                address = PyTuple_GET_ITEM(first, 1);
                Py_INCREF(info);
                Py_INCREF(address);
                Py_DECREF(first);
            }
        }
        if (address != NULL) {
            entry = PyTuple_Pack(2, PyTuple_GET_ITEM(info, 2), address);
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

static int
page_event(Feed *f, int kind, PyObject *cpu, PyObject *key, PyObject *tail)
{
    PyObject *r;
    if (kind == MM_PAGE_ALLOC) {
        PyObject *order = PyTuple_GET_ITEM(tail, 1);
        int maybe_slab = 0;
        if (f->dedup) {
            int one = PyObject_RichCompareBool(PyTuple_GET_ITEM(tail, 2), f->one, Py_EQ);
            int user = PySequence_Contains(PyTuple_GET_ITEM(tail, 0), f->highuser);
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
        r = PyObject_CallMethod(f->replayer, "_page_alloc", "OO", key, order);
    } else if (kind <= MM_PAGE_FREE_BATCHED) {
        r = PyObject_CallMethod(f->replayer, "_page_free", "iOO", kind, key,
                                PyTuple_GET_ITEM(tail, 1));
    } else {
        return 0; /* pcp refills and drains: only counted */
    }
    Py_XDECREF(r);
    return r ? 0 : -1;
}

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

/* replay_feed(replayer, kinds, cpus, keys, tails, kmalloc, kmem_error): the batch's events. */
PyObject *
kmem_replay_feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "replay_feed takes 7 arguments");
        return NULL;
    }
    Feed f = {.replayer = args[0], .kmalloc = args[5], .kmem_error = args[6]};
    PyObject *kinds = args[1], *cpus = args[2], *keys = args[3], *tails = args[4];
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
    f.live = PyObject_GetAttrString(f.replayer, "_live");
    f.cache_calls = PyObject_GetAttrString(f.replayer, "_cache_calls");
    f.kmalloc_calls = PyObject_GetAttrString(f.replayer, "_kmalloc_calls");
    f.pending = PyObject_GetAttrString(f.replayer, "_pending");
    f.null_ptr = PyUnicode_FromString("0");
    f.highuser = PyUnicode_FromString("HIGHUSER");
    f.one = PyLong_FromLong(1);
    PyObject *result = NULL;
    if (!f.live || !f.cache_calls || !f.kmalloc_calls || !f.pending || !f.null_ptr ||
        !f.highuser || !f.one)
        goto done;
    if (!PyDict_CheckExact(f.live) || !PyDict_CheckExact(f.cache_calls) ||
        !PyDict_CheckExact(f.kmalloc_calls) || !PyDict_CheckExact(f.pending)) {
        PyErr_SetString(PyExc_TypeError, "replay_feed: the replayer's tables are dicts");
        goto done;
    }
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
        int status = 0;
        if (PyDict_GET_SIZE(f.pending)) {
            PyObject *page = PyDict_GetItemWithError(f.pending, cpu);
            if (page != NULL) {
                Py_INCREF(page);
                status = PyDict_DelItem(f.pending, cpu);
                if (status == 0) {
                    PyObject *r = call_method(&f, "_decide_page", page,
                                              kind <= KMEM_CACHE_ALLOC_NODE ? Py_True : Py_False);
                    status = r ? 0 : -1;
                    Py_XDECREF(r);
                }
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
        if (status < 0)
            goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(f.live);
    Py_XDECREF(f.cache_calls);
    Py_XDECREF(f.kmalloc_calls);
    Py_XDECREF(f.pending);
    Py_XDECREF(f.null_ptr);
    Py_XDECREF(f.highuser);
    Py_XDECREF(f.one);
    return result;
}
