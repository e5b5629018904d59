/* The perf.data sample loop (kmem/trace/perf_data.py PerfData._sample is the reference).
 *
 * perf_samples(view, pos, end, id_at, layouts, decoders, site_names, page_site_names,
 *              starts, alloc, window, pending, max_time[, cache]) -> (pos, samples, max_time)
 * reads the PERF_RECORD_SAMPLE records from byte `pos` of the buffer `view` on, appending each
 * kmem event's ordering-queue tuple (time, cpu, kind, call site, key, tail) to the list
 * `pending`, exactly as PerfData._sample builds it, and stops at the first record it does not
 * read itself: any other record type, a sample of an event without a fast decoder, a memo miss
 * (a tail or a call site not seen before, a call chain's symbol not yet known to be a page
 * allocator function or not), and any doubt at all about the
 * record's bytes (a size below 8 or past `end`, a field, call chain or raw payload not wholly
 * inside the record). That record is then read by the Python loop, which raises the errors of
 * a damaged file itself: this loop never raises for the file's bytes, and reads only what lies
 * inside [pos, end) of the buffer. It returns where it stopped, the samples it read (inside or
 * outside the time window: the counters PerfData.samples and .lines), and the largest time of
 * the events it queued.
 *
 * `layouts` maps a sample id to (time, cpu, ip, fixed_end, callchain) of its _Layout (offsets
 * from the record's start, -1 for absent), the id read at offset `id_at`; with `id_at` -1 it
 * holds one layout, every sample's (its key unused); `decoders` maps a tracepoint id to (kind,
 * slab, key_offset, site_offset, tail_start, memo) of each _Decoder that is `fast`; `starts`
 * and `alloc` are KernelSymbols' _starts and _alloc (None, None without symbols): a page
 * event's call chain is walked here, as PerfData._page_site walks it; `window` is (start,
 * stop) in ns, 0 for an open side. The memo dicts are the reader's own: only entries found in them are
 * used (and cached here by their bytes: the reader never changes an entry once made), so every
 * event read here is the one the Python loop would build.
 *
 * With a 14th argument, a perf_cache() capsule, the memo slots (the tails, call sites and
 * page call sites last found in those dicts) outlive the call: the reader calls this once per
 * round, and slots made anew each time cost a bytes object and a dict lookup per distinct tail
 * and site of every round. The slots hold the dicts they are of, so a dict's identity is never
 * another's while a slot names it.
 *
 * perf_batch(samples[, times]) -> (kinds, cpus, times, sites, keys, tails) | NotImplemented
 * PerfData._batch's columns of a list of ordering-queue tuples (LOST records, kind -1, left
 * out), with the TIME text perf script prints (each "" when `times` is false); NotImplemented
 * for a list it does not expect.
 */
#include "kmem_core.h"

#include <string.h>

enum { MAX_DECODERS = 64, TAIL_SLOTS = 512, SITE_SLOTS = 1024,
       MM_PAGE_ALLOC = 6, PERF_RECORD_SAMPLE = 9 };

typedef struct {
    long id;
    int kind, slab;
    Py_ssize_t key_offset, site_offset, tail_start;
    PyObject *memo; /* borrowed: the decoders dict holds it for the call */
} Decoder;

typedef struct {
    PyObject *key;   /* strong: bytes */
    PyObject *value; /* strong */
    PyObject *dict;  /* strong (kept alive, so its identity is not reused), for identity */
} BytesSlot;

typedef struct {
    uint64_t address;
    PyObject *value; /* strong; NULL: empty slot */
} SiteSlot;

typedef struct {
    BytesSlot tails[TAIL_SLOTS];
    SiteSlot sites[SITE_SLOTS];
    SiteSlot page_sites[SITE_SLOTS];
    PyObject *site_dict, *page_site_dict; /* strong: the dicts the site slots are of */
} Cache;

static inline uint64_t
read_u64(const unsigned char *p)
{
    uint64_t value;
    memcpy(&value, p, 8);
    return value; /* (little-endian: perf_data.py refuses big-endian files in the header) */
}

static inline uint32_t
read_u32(const unsigned char *p)
{
    uint32_t value;
    memcpy(&value, p, 4);
    return value;
}

static inline uint64_t
mix(const unsigned char *s, Py_ssize_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = (h ^ read_u64(s + i)) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    uint64_t last = 0;
    memcpy(&last, s + i, (size_t)(n - i));
    h = (h ^ last) * 0x100000001b3ULL;
    return h ^ (h >> 32);
}

/* The value of the bytes [s, s+n) in the bytes-keyed `dict` (borrowed), NULL if absent;
 * *failed on an error. */
static PyObject *
bytes_lookup(BytesSlot *slots, PyObject *dict, const unsigned char *s, Py_ssize_t n,
             int *failed)
{
    BytesSlot *slot = &slots[(mix(s, n) ^ (uintptr_t)dict) & (TAIL_SLOTS - 1)];
    if (slot->dict == dict && slot->key != NULL && PyBytes_GET_SIZE(slot->key) == n &&
        memcmp(PyBytes_AS_STRING(slot->key), s, (size_t)n) == 0)
        return slot->value;
    PyObject *key = PyBytes_FromStringAndSize((const char *)s, n);
    if (key == NULL) {
        *failed = 1;
        return NULL;
    }
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred())
            *failed = 1;
        return NULL;
    }
    Py_XSETREF(slot->key, key);
    Py_XSETREF(slot->value, Py_NewRef(value));
    Py_XSETREF(slot->dict, Py_NewRef(dict));
    return value;
}

/* The value of the int `address` in `dict` (borrowed), NULL if absent; *failed on an error. */
static PyObject *
site_lookup(SiteSlot *slots, PyObject *dict, uint64_t address, int *failed)
{
    SiteSlot *slot = &slots[(address ^ (address >> 17)) & (SITE_SLOTS - 1)];
    if (slot->value != NULL && slot->address == address)
        return slot->value;
    PyObject *key = PyLong_FromUnsignedLongLong(address);
    if (key == NULL) {
        *failed = 1;
        return NULL;
    }
    PyObject *value = PyDict_GetItemWithError(dict, key);
    Py_DECREF(key);
    if (value == NULL) {
        if (PyErr_Occurred())
            *failed = 1;
        return NULL;
    }
    slot->address = address;
    Py_XSETREF(slot->value, Py_NewRef(value));
    return value;
}

static void
sites_clear(SiteSlot *slots)
{
    for (int i = 0; i < SITE_SLOTS; i++)
        Py_CLEAR(slots[i].value);
}

static void
cache_clear(Cache *c)
{
    for (int i = 0; i < TAIL_SLOTS; i++) {
        Py_CLEAR(c->tails[i].key);
        Py_CLEAR(c->tails[i].value);
        Py_CLEAR(c->tails[i].dict);
    }
    sites_clear(c->sites);
    sites_clear(c->page_sites);
    Py_CLEAR(c->site_dict);
    Py_CLEAR(c->page_site_dict);
}

/* The site slots of `cache` made for `dict` (emptied when they were of another dict). */
static void
cache_sites_for(Cache *c, SiteSlot *slots, PyObject **of, PyObject *dict)
{
    if (*of != dict) {
        sites_clear(slots);
        Py_XSETREF(*of, Py_NewRef(dict));
    }
}

static const char CACHE_NAME[] = "kmem._core.perf_cache";

static void
cache_destroy(PyObject *capsule)
{
    Cache *c = PyCapsule_GetPointer(capsule, CACHE_NAME);
    if (c != NULL) {
        cache_clear(c);
        PyMem_Free(c);
    }
}

/* perf_cache() -> a capsule of the memo slots perf_samples keeps from one call to the next
 * of one reader (without it, each call, one per FINISHED_ROUND, began with none). */
PyObject *
kmem_perf_cache(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 0) {
        PyErr_SetString(PyExc_TypeError, "perf_cache takes no arguments");
        return NULL;
    }
    Cache *c = PyMem_Calloc(1, sizeof(Cache));
    if (c == NULL)
        return PyErr_NoMemory();
    PyObject *capsule = PyCapsule_New(c, CACHE_NAME, cache_destroy);
    if (capsule == NULL)
        PyMem_Free(c);
    return capsule;
}

static int
ssize_item(PyObject *tuple, Py_ssize_t index, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(PyTuple_GET_ITEM(tuple, index));
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The decoders dict as a C table; -1 on an error (a malformed entry: TypeError). */
static int
read_decoders(PyObject *dict, Decoder *out, int *count)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    *count = 0;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (*count == MAX_DECODERS)
            break; /* (the rest go the Python way) */
        Decoder *d = &out[*count];
        Py_ssize_t kind, slab;
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 6 ||
            !PyDict_CheckExact(PyTuple_GET_ITEM(value, 5))) {
            PyErr_SetString(PyExc_TypeError, "perf_samples: bad decoder entry");
            return -1;
        }
        d->id = PyLong_AsLong(key);
        if ((d->id == -1 && PyErr_Occurred()) || ssize_item(value, 0, &kind) < 0 ||
            ssize_item(value, 1, &slab) < 0 || ssize_item(value, 2, &d->key_offset) < 0 ||
            ssize_item(value, 3, &d->site_offset) < 0 ||
            ssize_item(value, 4, &d->tail_start) < 0)
            return -1;
        if (d->key_offset < 0 || d->tail_start < 0 || (slab && d->site_offset < 0)) {
            PyErr_SetString(PyExc_ValueError, "perf_samples: bad decoder offsets");
            return -1;
        }
        d->kind = (int)kind;
        d->slab = slab != 0;
        d->memo = PyTuple_GET_ITEM(value, 5);
        (*count)++;
    }
    return 0;
}

/* An ASCII text as a str (no UTF-8 decoding: the text is made here, digits only). */
static PyObject *
ascii_text(const char *text, Py_ssize_t n)
{
    PyObject *str = PyUnicode_New(n, 127);
    if (str != NULL)
        memcpy(PyUnicode_DATA(str), text, (size_t)n);
    return str;
}

/* A slab pointer as PerfData._sample spells it: f"0x{value:x}", "0" for NULL. (By hand:
 * snprintf was a tenth of the loop's time.) */
static PyObject *
pointer_text(uint64_t value)
{
    if (value == 0)
        return PyUnicode_FromStringAndSize("0", 1);
    char text[18];
    int n = 2;
    for (int shift = 60; shift >= 0; shift -= 4)
        if (value >> shift || n > 2)
            text[n++] = "0123456789abcdef"[value >> shift & 15];
    text[0] = '0';
    text[1] = 'x';
    return ascii_text(text, n);
}

typedef struct {
    uint64_t id;
    Py_ssize_t time, cpu, ip, fixed_end;
    int callchain;
} Layout;

enum { MAX_LAYOUTS = 256 };

/* The layouts dict (sample id -> (time, cpu, ip, fixed_end, callchain)) as a C table; -1 on
 * an error. */
static int
read_layouts(PyObject *dict, Layout *out, int *count)
{
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    *count = 0;
    while (PyDict_Next(dict, &pos, &key, &value)) {
        if (*count == MAX_LAYOUTS)
            break; /* (samples of the other ids go the Python way) */
        Layout *l = &out[*count];
        if (!PyTuple_Check(value) || PyTuple_GET_SIZE(value) != 5) {
            PyErr_SetString(PyExc_TypeError, "perf_samples: bad layout entry");
            return -1;
        }
        l->id = PyLong_AsUnsignedLongLong(key);
        int callchain = PyObject_IsTrue(PyTuple_GET_ITEM(value, 4));
        if (PyErr_Occurred() || ssize_item(value, 0, &l->time) < 0 ||
            ssize_item(value, 1, &l->cpu) < 0 || ssize_item(value, 2, &l->ip) < 0 ||
            ssize_item(value, 3, &l->fixed_end) < 0 || callchain < 0)
            return -1;
        l->callchain = callchain;
        (*count)++;
    }
    return 0;
}

typedef struct {
    PyObject *site_names, *page_site_names;
    const uint64_t *starts;      /* KernelSymbols._starts; NULL: no symbols */
    const unsigned char *alloc;  /* KernelSymbols._alloc: 0 not decided, 1 no, 2 yes */
    Py_ssize_t nr_symbols;
    uint64_t window_start, window_stop;
} Tables;

enum { CALLCHAIN_DEPTH = 16 };
static const uint64_t PERF_CONTEXT_MAX = (uint64_t)-4095;

/* KernelSymbols._index: the symbol holding `address`, -1 before the first or at or past the
 * last (whose end is unknown). */
static Py_ssize_t
symbol_index(const Tables *t, uint64_t address)
{
    Py_ssize_t low = 0, high = t->nr_symbols; /* the first start above address: bisect_right */
    while (low < high) {
        Py_ssize_t mid = low + (high - low) / 2;
        if (t->starts[mid] <= address)
            low = mid + 1;
        else
            high = mid;
    }
    Py_ssize_t index = low - 1;
    return index < 0 || index + 1 >= t->nr_symbols ? -1 : index;
}

/* PerfData._page_site's walk of a call chain (_first_outside_allocator): 1 with *site the
 * page call site of the first frame outside the page allocator (NULL: none among the first
 * CALLCHAIN_DEPTH frames, the sample's IP decides), 0 for the Python loop (a symbol whether
 * allocator or not is not yet decided, or a site name not yet made), -1 with *failed. */
static int
chain_site(Cache *cache, const Tables *t, const unsigned char *chain, uint64_t count,
           PyObject **site, int *failed)
{
    int frames = 0;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t ip = read_u64(chain + 8 * i);
        if (ip >= PERF_CONTEXT_MAX)
            continue;
        if (++frames > CALLCHAIN_DEPTH)
            break;
        Py_ssize_t index = symbol_index(t, ip);
        if (index >= 0) {
            if (t->alloc[index] == 0)
                return 0;
            if (t->alloc[index] == 2)
                continue;
        }
        *site = site_lookup(cache->page_sites, t->page_site_names, ip, failed);
        return *site == NULL ? (*failed ? -1 : 0) : 1;
    }
    *site = NULL;
    return 1;
}

/* One sample record of `size` bytes at `rec`: 1 queued (*out a new tuple), 2 read but not
 * queued (outside the time window), 0 for the Python loop, -1 on an error. */
static int
read_sample(Cache *cache, const Layout *l, const Decoder *decoders, int nr_decoders,
            const Tables *t, const unsigned char *rec, Py_ssize_t size, PyObject **out,
            uint64_t *time_out)
{
    Py_ssize_t fixed[] = {l->time, l->cpu, l->ip};
    for (int i = 0; i < 3; i++) /* (each 8 bytes: _FIXED_FIELDS) */
        if (fixed[i] >= 0 && (fixed[i] < 8 || fixed[i] > size - 8))
            return 0;
    if (l->fixed_end < 8 || l->fixed_end > size)
        return 0;
    uint64_t time = l->time >= 0 ? read_u64(rec + l->time) : 0;
    if (time && ((t->window_start && time < t->window_start) ||
                 (t->window_stop && time > t->window_stop)))
        return 2;
    long cpu = l->cpu >= 0 ? (long)read_u32(rec + l->cpu) : -1;
    Py_ssize_t raw_at = l->fixed_end, chain_at = -1;
    uint64_t chain_count = 0;
    if (l->callchain) {
        if (raw_at > size - 8)
            return 0;
        chain_at = raw_at;
        chain_count = read_u64(rec + chain_at);
        if (chain_count > (uint64_t)(size - chain_at - 8) / 8)
            return 0;
        raw_at += 8 + 8 * (Py_ssize_t)chain_count;
    }
    if (raw_at > size - 6)
        return 0;
    uint32_t raw_size = read_u32(rec + raw_at);
    unsigned event_id = (unsigned)rec[raw_at + 4] | (unsigned)rec[raw_at + 5] << 8;
    Py_ssize_t start = raw_at + 4;
    if (raw_size < 8 || raw_size > (uint64_t)(size - start))
        return 0;
    const Decoder *d = NULL;
    for (int i = 0; i < nr_decoders; i++)
        if (decoders[i].id == (long)event_id) {
            d = &decoders[i];
            break;
        }
    if (d == NULL || d->tail_start > (Py_ssize_t)raw_size ||
        d->key_offset > (Py_ssize_t)raw_size - 8 ||
        (d->slab && d->site_offset > (Py_ssize_t)raw_size - 8))
        return 0;
    const unsigned char *raw = rec + start;
    int failed = 0;
    PyObject *tail = bytes_lookup(cache->tails, d->memo, raw + d->tail_start,
                                  (Py_ssize_t)raw_size - d->tail_start, &failed);
    if (tail == NULL)
        return failed ? -1 : 0;
    uint64_t value = read_u64(raw + d->key_offset);
    PyObject *site;
    if (d->slab) {
        site = site_lookup(cache->sites, t->site_names, read_u64(raw + d->site_offset),
                           &failed);
        /* (an empty name is looked up again by the Python loop's `or`: it goes there) */
        if (site == NULL || PyUnicode_GET_LENGTH(site) == 0)
            return failed ? -1 : 0;
    } else {
        site = NULL; /* "" */
        if (chain_at >= 0 && t->starts != NULL) {
            int found = chain_site(cache, t, rec + chain_at + 8, chain_count, &site, &failed);
            if (found <= 0)
                return failed ? -1 : 0;
        }
        if (site == NULL && l->ip >= 0) {
            site = site_lookup(cache->page_sites, t->page_site_names, read_u64(rec + l->ip),
                               &failed);
            if (site == NULL)
                return failed ? -1 : 0;
        }
    }
    PyObject *key;
    if (d->slab)
        key = pointer_text(value);
    else if (value == UINT64_MAX || (value == 0 && d->kind == MM_PAGE_ALLOC))
        key = PyLong_FromLong(-1); /* a failed allocation */
    else
        key = PyLong_FromUnsignedLongLong(value);
    if (key == NULL)
        return -1;
    PyObject *items[6] = {PyLong_FromUnsignedLongLong(time), PyLong_FromLong(cpu),
                          PyLong_FromLong(d->kind),
                          site != NULL ? Py_NewRef(site) : PyUnicode_FromStringAndSize("", 0),
                          key, Py_NewRef(tail)};
    PyObject *sample = PyTuple_New(6);
    int ok = sample != NULL;
    for (int i = 0; i < 6; i++) {
        ok = ok && items[i] != NULL;
        if (sample != NULL && items[i] != NULL)
            PyTuple_SET_ITEM(sample, i, items[i]);
        else
            Py_XDECREF(items[i]);
    }
    if (!ok) {
        Py_XDECREF(sample);
        return -1;
    }
    /* (untracked by the cyclic GC: its items are ints, strs and a memo's tail of ints and
     * strs, so no cycle can pass through it; tracked, the queue's hundreds of thousands of
     * tuples were traversed at every collection the allocations trigger) */
    PyObject_GC_UnTrack(sample);
    *out = sample;
    *time_out = time;
    return 1;
}

PyObject *
kmem_perf_samples(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 13 && nargs != 14) {
        PyErr_SetString(PyExc_TypeError, "perf_samples takes 13 or 14 arguments");
        return NULL;
    }
    Cache *kept = NULL; /* the 14th: a perf_cache() capsule, kept between calls */
    if (nargs == 14 && (kept = PyCapsule_GetPointer(args[13], CACHE_NAME)) == NULL)
        return NULL;
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]), end = PyLong_AsSsize_t(args[2]);
    Py_ssize_t id_at = PyLong_AsSsize_t(args[3]);
    PyObject *layout_dict = args[4], *decoder_dict = args[5], *window = args[10];
    PyObject *pending = args[11];
    Tables t = {.site_names = args[6], .page_site_names = args[7]};
    /* (times are u64: the largest so far is -1 before the first, else a u64) */
    int have_max = PyObject_RichCompareBool(args[12], Py_False, Py_GE); /* >= 0 */
    uint64_t max_time = have_max > 0 ? PyLong_AsUnsignedLongLong(args[12]) : 0;
    if (PyErr_Occurred() || have_max < 0)
        return NULL;
    if (!PyDict_Check(layout_dict) || !PyDict_Check(decoder_dict)
        || !PyDict_CheckExact(t.site_names) || !PyDict_CheckExact(t.page_site_names) ||
        (args[8] == Py_None) != (args[9] == Py_None) || !PyList_Check(pending) ||
        !PyTuple_Check(window) || PyTuple_GET_SIZE(window) != 2) {
        PyErr_SetString(PyExc_TypeError, "perf_samples: bad arguments");
        return NULL;
    }
    Layout layouts[MAX_LAYOUTS];
    int nr_layouts;
    if (read_layouts(layout_dict, layouts, &nr_layouts) < 0)
        return NULL;
    if (id_at < 0 && nr_layouts != 1) {
        PyErr_SetString(PyExc_ValueError, "perf_samples: one layout without a sample id");
        return NULL;
    }
    t.window_start = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(window, 0));
    t.window_stop = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(window, 1));
    if (PyErr_Occurred())
        return NULL;
    Decoder decoders[MAX_DECODERS];
    int nr_decoders;
    if (read_decoders(decoder_dict, decoders, &nr_decoders) < 0)
        return NULL;
    Py_buffer view, starts = {0}, alloc = {0};
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (args[8] != Py_None) { /* the symbols: KernelSymbols._starts (u64s) and ._alloc */
        if (PyObject_GetBuffer(args[8], &starts, PyBUF_FORMAT) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (PyObject_GetBuffer(args[9], &alloc, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&starts);
            PyBuffer_Release(&view);
            return NULL;
        }
        if (starts.itemsize != 8 || starts.format == NULL || strcmp(starts.format, "Q") != 0
            || alloc.len != starts.len / 8) {
            PyBuffer_Release(&alloc);
            PyBuffer_Release(&starts);
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_TypeError, "perf_samples: bad symbol table");
            return NULL;
        }
        t.starts = starts.buf;
        t.alloc = alloc.buf;
        t.nr_symbols = starts.len / 8;
    }
    Cache *cache = NULL;
    if (pos < 0 || end > view.len || pos > end)
        PyErr_SetString(PyExc_ValueError, "perf_samples: pos and end outside the buffer");
    else if ((cache = kept != NULL ? kept : PyMem_Calloc(1, sizeof(Cache))) == NULL)
        PyErr_NoMemory();
    if (cache == NULL) {
        if (t.starts != NULL) {
            PyBuffer_Release(&alloc);
            PyBuffer_Release(&starts);
        }
        PyBuffer_Release(&view);
        return NULL;
    }
    cache_sites_for(cache, cache->sites, &cache->site_dict, t.site_names);
    cache_sites_for(cache, cache->page_sites, &cache->page_site_dict, t.page_site_names);
    const unsigned char *buffer = view.buf;
    Py_ssize_t samples = 0;
    int status = 0;
    while (end - pos >= 8) {
        const unsigned char *rec = buffer + pos;
        uint32_t type = read_u32(rec);
        Py_ssize_t size = (Py_ssize_t)rec[6] | (Py_ssize_t)rec[7] << 8;
        if (type != PERF_RECORD_SAMPLE || size < 8 || size > end - pos)
            break;
        const Layout *l = &layouts[0];
        if (id_at >= 0) { /* the layout of the sample's id (PerfData._batches' by_id) */
            if (id_at < 8 || id_at > size - 8)
                break;
            uint64_t id = read_u64(rec + id_at);
            l = NULL;
            for (int i = 0; i < nr_layouts; i++)
                if (layouts[i].id == id) {
                    l = &layouts[i];
                    break;
                }
            if (l == NULL)
                break;
        }
        PyObject *sample = NULL;
        uint64_t time = 0;
        status = read_sample(cache, l, decoders, nr_decoders, &t, rec, size, &sample, &time);
        if (status <= 0)
            break;
        if (status == 1) {
            int appended = PyList_Append(pending, sample);
            Py_DECREF(sample);
            if (appended < 0) {
                status = -1;
                break;
            }
            if (!have_max || time > max_time) {
                max_time = time;
                have_max = 1;
            }
        }
        samples++;
        pos += size;
    }
    if (cache != kept) {
        cache_clear(cache);
        PyMem_Free(cache);
    }
    if (t.starts != NULL) {
        PyBuffer_Release(&alloc);
        PyBuffer_Release(&starts);
    }
    PyBuffer_Release(&view);
    if (status < 0)
        return NULL;
    if (!have_max)
        return Py_BuildValue("(nni)", pos, samples, -1);
    return Py_BuildValue("(nnK)", pos, samples, (unsigned long long)max_time);
}

/* A time as perf script prints it: seconds, microseconds truncated, and the colon
 * ("501.914888:"), written by hand (snprintf was most of this function's time). */
static PyObject *
time_text(uint64_t ns)
{
    char text[32];
    char *end = text + sizeof text;
    char *p = end;
    *--p = ':';
    uint64_t micros = ns / 1000 % 1000000;
    for (int i = 0; i < 6; i++, micros /= 10)
        *--p = (char)('0' + micros % 10);
    *--p = '.';
    uint64_t seconds = ns / 1000000000;
    do {
        *--p = (char)('0' + seconds % 10);
        seconds /= 10;
    } while (seconds);
    return ascii_text(p, end - p);
}

PyObject *
kmem_perf_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "perf_batch takes a list and whether to make times");
        return NULL;
    }
    PyObject *samples = args[0];
    int with_times = nargs < 2 ? 1 : PyObject_IsTrue(args[1]);
    if (with_times < 0)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(samples), kept = 0;
    /* (each time converted once: a time of 2**30 ns or more is an int of several digits,
     * which PyLong_AsUnsignedLongLong reads through _PyLong_AsByteArray) */
    uint64_t *times = PyMem_Malloc((size_t)(n > 0 ? n : 1) * sizeof *times);
    if (times == NULL)
        return PyErr_NoMemory();
    /* What the loop below reads, checked first: a list it does not expect is the Python
     * way's, before anything is made. */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PyList_GET_ITEM(samples, i);
        if (!PyTuple_CheckExact(s) || PyTuple_GET_SIZE(s) != 6 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(s, 0)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(s, 2))) {
            PyMem_Free(times);
            Py_RETURN_NOTIMPLEMENTED;
        }
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(s, 2));
        if (kind == -1 && PyErr_Occurred()) {
            PyMem_Free(times);
            return NULL;
        }
        if (kind < 0)
            continue; /* a LOST record */
        if (kind > 255) {
            PyMem_Free(times);
            Py_RETURN_NOTIMPLEMENTED;
        }
        unsigned long long ns = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(s, 0));
        if (ns == (unsigned long long)-1 && PyErr_Occurred()) {
            PyMem_Free(times);
            if (!PyErr_ExceptionMatches(PyExc_OverflowError))
                return NULL;
            PyErr_Clear(); /* (a time that is no u64: the Python way's) */
            Py_RETURN_NOTIMPLEMENTED;
        }
        times[kept++] = ns;
    }
    PyObject *kinds = PyBytes_FromStringAndSize(NULL, kept);
    PyObject *cols[5];
    int ok = kinds != NULL;
    for (int c = 0; c < 5; c++) {
        cols[c] = PyList_New(kept);
        ok = ok && cols[c] != NULL;
    }
    for (Py_ssize_t i = 0, at = 0; ok && i < n; i++) {
        PyObject *s = PyList_GET_ITEM(samples, i);
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(s, 2)); /* (checked above) */
        if (kind < 0)
            continue;
        PyObject *time = with_times ? time_text(times[at]) : PyUnicode_New(0, 0);
        if (time == NULL) {
            ok = 0;
            break;
        }
        PyBytes_AS_STRING(kinds)[at] = (char)kind;
        PyList_SET_ITEM(cols[0], at, Py_NewRef(PyTuple_GET_ITEM(s, 1)));
        PyList_SET_ITEM(cols[1], at, time);
        PyList_SET_ITEM(cols[2], at, Py_NewRef(PyTuple_GET_ITEM(s, 3)));
        PyList_SET_ITEM(cols[3], at, Py_NewRef(PyTuple_GET_ITEM(s, 4)));
        PyList_SET_ITEM(cols[4], at, Py_NewRef(PyTuple_GET_ITEM(s, 5)));
        at++;
    }
    PyMem_Free(times);
    if (!ok) {
        Py_XDECREF(kinds);
        for (int c = 0; c < 5; c++)
            Py_XDECREF(cols[c]);
        return NULL;
    }
    return Py_BuildValue("(NNNNNN)", kinds, cols[0], cols[1], cols[2], cols[3], cols[4]);
}

/* kallsyms_table(data) -> (starts, spans) | NotImplemented
 * KernelSymbols' table of a kallsyms text (perf_data.py _symbol_table is the reference): the
 * addresses of the text and data symbols (a u64 each, ascending, one per address) and, for
 * each, where the name perf keeps at that address lies in `data` (a u64 offset and a u64
 * length). Lines split at \n, \r and \r\n, fields at ASCII whitespace (bytes.split()), as the
 * reference splits them. NotImplemented for an address field that is not plain hex digits (the
 * reference reads it with int(x, 16), whose signs, prefixes and underscores stay there). */

typedef struct {
    uint64_t address;
    Py_ssize_t offset, length, order; /* order: the line's rank, for a stable sort */
    char kind;
} Symbol;

static int
symbol_cmp(const void *a, const void *b)
{
    const Symbol *x = a, *y = b;
    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int
is_field_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static Py_ssize_t
leading_underscores(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;
    while (i < n && s[i] == '_')
        i++;
    return i;
}

/* Whether `s` wins over `old` at one address (the reference's _better: non-weak, then
 * global, then fewer leading underscores, then the longer name; else the first seen). */
static int
symbol_better(const unsigned char *data, const Symbol *s, const Symbol *old)
{
    int weak = s->kind == 'W' || s->kind == 'w';
    int old_weak = old->kind == 'W' || old->kind == 'w';
    if (weak != old_weak)
        return old_weak;
    int upper = s->kind >= 'A' && s->kind <= 'Z' && !weak;
    int old_upper = old->kind >= 'A' && old->kind <= 'Z' && !old_weak;
    if (upper != old_upper)
        return upper;
    Py_ssize_t u = leading_underscores(data + s->offset, s->length);
    Py_ssize_t old_u = leading_underscores(data + old->offset, old->length);
    if (u != old_u)
        return u < old_u;
    return s->length > old->length;
}

PyObject *
kmem_kallsyms_table(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "kallsyms_table takes bytes");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t capacity = 1024, count = 0;
    Symbol *symbols = PyMem_Malloc((size_t)capacity * sizeof(Symbol));
    if (symbols == NULL)
        return PyErr_NoMemory();
    Py_ssize_t pos = 0;
    while (pos < size) {
        Py_ssize_t line_end = pos;
        while (line_end < size && data[line_end] != '\n' && data[line_end] != '\r')
            line_end++;
        Py_ssize_t next = line_end;
        if (next < size)
            next += data[next] == '\r' && next + 1 < size && data[next + 1] == '\n' ? 2 : 1;
        /* the line's first three fields */
        Py_ssize_t start[3], stop[3];
        int fields = 0;
        Py_ssize_t at = pos;
        while (fields < 3) {
            while (at < line_end && is_field_space(data[at]))
                at++;
            if (at == line_end)
                break;
            start[fields] = at;
            while (at < line_end && !is_field_space(data[at]))
                at++;
            stop[fields++] = at;
        }
        pos = next;
        if (fields < 3 || stop[1] - start[1] != 1 || strchr("TtWwDdBb", data[start[1]]) == NULL
            || data[start[1]] == '\0')
            continue;
        uint64_t address = 0;
        int overflow = 0;
        for (Py_ssize_t i = start[0]; i < stop[0]; i++) {
            unsigned char c = data[i];
            unsigned digit;
            if (c >= '0' && c <= '9')
                digit = c - '0';
            else if (c >= 'a' && c <= 'f')
                digit = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                digit = c - 'A' + 10;
            else {
                PyMem_Free(symbols);
                Py_RETURN_NOTIMPLEMENTED;
            }
            if (address >> 60)
                overflow = 1;
            address = address << 4 | digit;
        }
        if (overflow)
            continue; /* (no u64: the reference skips it too) */
        if (count == capacity) {
            capacity *= 2;
            Symbol *grown = PyMem_Realloc(symbols, (size_t)capacity * sizeof(Symbol));
            if (grown == NULL) {
                PyMem_Free(symbols);
                return PyErr_NoMemory();
            }
            symbols = grown;
        }
        symbols[count] = (Symbol){.address = address, .offset = start[2],
                                  .length = stop[2] - start[2], .order = count,
                                  .kind = (char)data[start[1]]};
        count++;
    }
    /* (a kallsyms is in address order already: then the stable sort would change nothing,
     * and its comparisons were a fifth of this function) */
    Py_ssize_t sorted = 1;
    while (sorted < count && symbols[sorted - 1].address <= symbols[sorted].address)
        sorted++;
    if (sorted < count)
        qsort(symbols, (size_t)count, sizeof(Symbol), symbol_cmp);
    Py_ssize_t kept = 0; /* one per address, the best of its group, in place */
    for (Py_ssize_t i = 0; i < count; i++) {
        if (kept > 0 && symbols[kept - 1].address == symbols[i].address) {
            if (symbol_better(data, &symbols[i], &symbols[kept - 1]))
                symbols[kept - 1] = symbols[i];
        } else {
            symbols[kept++] = symbols[i];
        }
    }
    PyObject *starts = PyBytes_FromStringAndSize(NULL, kept * 8);
    PyObject *spans = PyBytes_FromStringAndSize(NULL, kept * 16);
    if (starts == NULL || spans == NULL) {
        Py_XDECREF(starts);
        Py_XDECREF(spans);
        PyMem_Free(symbols);
        return NULL;
    }
    unsigned char *s = (unsigned char *)PyBytes_AS_STRING(starts);
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(spans);
    for (Py_ssize_t i = 0; i < kept; i++) {
        uint64_t span[2] = {(uint64_t)symbols[i].offset, (uint64_t)symbols[i].length};
        memcpy(s + 8 * i, &symbols[i].address, 8);
        memcpy(p + 16 * i, span, 16);
    }
    PyMem_Free(symbols);
    return Py_BuildValue("(NN)", starts, spans);
}
