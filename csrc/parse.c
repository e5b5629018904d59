/* The trace parser's inline loop (kmem/trace/parse.py TraceParser._read_batch is the
 * reference; rules L1-L3, H1-H3, F1-F5 and I1-I7 of its docstring: this file implements
 * I1-I7, the slow path in Python everything else).
 *
 * One batch of lines: each line the inline rules accept is read here, from the str's own
 * bytes, with one dict lookup of its tail and one of its call site in the parser's memo
 * tables; every other line — any doubt at all, a non-ASCII line, a memo miss — goes to the
 * parser's _slow_event, exactly as the Python loop sends it there. Accepting a subset of what
 * the Python loop accepts, and reading it identically, is what keeps the two equal: a line
 * both could read gives the slow path's own event either way.
 *
 * parse_lines(lines, size, first_number, event_kinds, memo_call_sites, memo_tails, slow,
 *             null_ptr, max_line[, watch]) -> (kinds, cpus, times, sites, keys, tails,
 *                                             skipped, error)
 * reads up to `size` lines of the iterator `lines`; `error` is the exception that stopped it
 * (from `slow`, `watch` or the iterator) or None, and the columns hold the events before it.
 *
 * `watch` (None, or TraceParser's LineWatch.see: kmem/trace/parse.py, WATCH_*) is shown a line
 * before it is read, unless the line is one it does nothing to: one the inline rules read,
 * starting with no tab and no "CPU:", with no token t[2]..t[5] starting with "kmem:mm_page_",
 * while its last answer did not ask for the next line (WATCH_NEXT; the first line of a call
 * is always shown: the answer before it was given to an earlier call). A line it drops
 * (WATCH_DROP) goes to `slow` as an empty line: no event, but numbered and counted as a
 * blank line is, so the lines after it keep their numbers in the file.
 */
#include "kmem_core.h"

#include <string.h>

enum { KMEM_CACHE_FREE = 5, MAX_CPUS = 8192, NR_TOKENS = 7, WATCH_DROP = 1, WATCH_NEXT = 2 };

/* ASCII whitespace as str.split() sees it (the line is ASCII: rule I1): space, \t-\r and
 * 0x1c-0x1f. A table, not three comparisons: split7 asks it of the ~100 bytes of every line's
 * head, and the comparisons were the loop's largest cost (perf annotate). */
static const unsigned char SPACE[256] = {
    ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1,
    [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1, [' '] = 1,
};

static inline int
is_space(unsigned char c) { return SPACE[c]; }

static inline int
is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline int
is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static inline int
hex_value(unsigned char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* str.split(None, 6): six tokens and the rest (its leading whitespace skipped). 0 if fewer. */
static int
split7(const char *s, Py_ssize_t n, const char **start, Py_ssize_t *len)
{
    Py_ssize_t i = 0;
    for (int t = 0; t < NR_TOKENS; t++) {
        while (i < n && is_space((unsigned char)s[i]))
            i++;
        if (i == n)
            return 0;
        start[t] = s + i;
        if (t == NR_TOKENS - 1) {
            len[t] = n - i;
            return 1;
        }
        while (i < n && !is_space((unsigned char)s[i]))
            i++;
        len[t] = s + i - start[t];
    }
    return 1;
}

/* A CPU column "[ddd]" (rule I3: 0..8191 with at least three digits, as f"[{cpu:03d}]"). */
static long
cpu_column(const char *s, Py_ssize_t n)
{
    if ((n != 5 && n != 6) || s[0] != '[' || s[n - 1] != ']')
        return -1;
    long cpu = 0;
    for (Py_ssize_t i = 1; i < n - 1; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        cpu = cpu * 10 + (s[i] - '0');
    }
    if (n == 6 && (s[1] == '0' || cpu >= MAX_CPUS))
        return -1;
    return cpu;
}

/* Rule I4: 1-20 digits, ".", exactly six digits, ":". */
static int
inline_timestamp(const char *s, Py_ssize_t n)
{
    if (n < 9 || n > 28 || s[n - 8] != '.' || s[n - 1] != ':')
        return 0;
    for (Py_ssize_t i = 0; i < n - 1; i++)
        if (i != n - 8 && !is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* The lookups of one parse_lines call go through a small direct-mapped cache of the entries
 * found: a trace repeats a few hundred tails and call sites, and comparing the bytes with a
 * cached key (memcmp) costs a fraction of building a str and hashing it for the dict. Only
 * entries found in a dict are cached, and the parser never changes or removes an entry once a
 * lookup could have found it (_learn_tail removes only the entry it has just added, before any
 * lookup here; tables never evict), so a hit gives exactly what the dict would. */
enum { CACHE_SLOTS = 1024 };

typedef struct {
    PyObject *dict;  /* borrowed (alive for the call: the arguments hold it), for identity */
    PyObject *key;   /* strong: an ASCII str */
    PyObject *value; /* strong */
} CacheSlot;

typedef struct {
    PyObject *event_kinds, *call_sites, *tails, *null_ptr;
    CacheSlot *cache; /* CACHE_SLOTS slots */
} Memo;

static inline uint64_t
bytes_hash(const char *s, Py_ssize_t n, uintptr_t salt)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)n ^ ((uint64_t)salt * 0x9e3779b97f4a7c15ULL);
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, s + i, 8);
        h = (h ^ word) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    uint64_t last = 0;
    memcpy(&last, s + i, (size_t)(n - i));
    h = (h ^ last) * 0x100000001b3ULL;
    return h ^ (h >> 32);
}

/* A lookup of the bytes [s, s+n) (ASCII) in a str-keyed dict: the value (borrowed: the dict
 * holds it for the call), NULL if absent; *failed on an error. */
static PyObject *
lookup(Memo *m, PyObject *dict, const char *s, Py_ssize_t n, int *failed)
{
    CacheSlot *slot = &m->cache[bytes_hash(s, n, (uintptr_t)dict) & (CACHE_SLOTS - 1)];
    if (slot->dict == dict && PyUnicode_GET_LENGTH(slot->key) == n &&
        memcmp(PyUnicode_1BYTE_DATA(slot->key), s, (size_t)n) == 0)
        return slot->value;
    PyObject *key = PyUnicode_FromStringAndSize(s, n);
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
    slot->dict = dict;
    return value;
}

/* A pointer of rule I6 (page=): 0x and 1-16 hex digits, or 8 or 16 hex digits. */
static int
inline_pointer(const char *s, Py_ssize_t n)
{
    Py_ssize_t first = 0;
    if (n >= 3 && s[0] == '0' && s[1] == 'x') {
        if (n > 18)
            return 0;
        first = 2;
    } else if (n != 8 && n != 16) {
        return 0;
    }
    for (Py_ssize_t i = first; i < n; i++)
        if (!is_hex((unsigned char)s[i]))
            return 0;
    return 1;
}

static const char PAGE_EVENT[] = "kmem:mm_page_";
enum { PAGE_EVENT_LEN = sizeof PAGE_EVENT - 1 };

/* Whether a watch must see a line the inline rules read (split in `t`, ASCII): it starts with
 * a tab or "CPU:", or a token t[2]..t[5] starts with "kmem:mm_page_" (see parse_lines). */
static int
watched(const char *s, Py_ssize_t n, const char *const *t, const Py_ssize_t *len)
{
    if (s[0] == '\t' || (n >= 4 && memcmp(s, "CPU:", 4) == 0))
        return 1;
    for (int i = 2; i < 6; i++)
        if (len[i] >= PAGE_EVENT_LEN && memcmp(t[i], PAGE_EVENT, PAGE_EVENT_LEN) == 0)
            return 1;
    return 0;
}

/* The inline read of one line (rules I1-I6): 1 with the event's columns, 0 to go slow,
 * -1 on an error. The new references are returned in *time and *key. With `marked`, it is
 * set to whether a watch must see the line (watched()) when the line is read. */
static int
read_inline(Memo *m, PyObject *line, Py_ssize_t max_line, int *kind, long *cpu,
            PyObject **time, PyObject **site, PyObject **key, PyObject **tail, int *marked)
{
    if (!PyUnicode_IS_ASCII(line)) /* I1: other spaces and digits are the slow path's */
        return 0;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(line);
    Py_ssize_t n = PyUnicode_GET_LENGTH(line);
    const char *t[NR_TOKENS];
    Py_ssize_t len[NR_TOKENS];
    if (n > max_line || memchr(s, '\r', (size_t)n) != NULL || !split7(s, n, t, len) ||
        t[0][0] == '#') /* I1 */
        return 0;
    int failed = 0;
    PyObject *kind_obj = lookup(m, m->event_kinds, t[4], len[4], &failed); /* I2 */
    if (kind_obj == NULL)
        return failed ? -1 : 0;
    *kind = (int)PyLong_AsLong(kind_obj);
    *cpu = cpu_column(t[1], len[1]); /* I3 */
    if (*cpu < 0) {
        if (t[1][0] == '[' || (*cpu = cpu_column(t[2], len[2])) < 0)
            return 0;
    } else if (t[2][len[2] - 1] == ':') {
        return 0;
    }
    if (!inline_timestamp(t[3], len[3])) /* I4 */
        return 0;
    const char *rest = t[6];
    Py_ssize_t rest_len = len[6];
    PyObject *memo = PyList_GET_ITEM(m->tails, *kind);
    if (*kind <= KMEM_CACHE_FREE) { /* I5 */
        if (rest_len < 6 || memcmp(rest, "ptr=", 4) != 0)
            return 0;
        Py_ssize_t end = rest[5] == 'x' ? 22 : 20;
        if (rest_len < end)
            return 0;
        Py_ssize_t first_hex = end == 22 ? 6 : 4;
        if (end == 22 && rest[4] != '0')
            return 0;
        for (Py_ssize_t i = first_hex; i < end; i++)
            if (!is_hex((unsigned char)rest[i]))
                return 0;
        *tail = lookup(m, memo, rest + end, rest_len - end, &failed);
        if (*tail == NULL)
            return failed ? -1 : 0;
        *site = lookup(m, m->call_sites, t[5], len[5], &failed);
        if (*site == NULL)
            return failed ? -1 : 0;
        int null = 1;
        for (Py_ssize_t i = first_hex; i < end; i++)
            null &= rest[i] == '0';
        if (null)
            *key = Py_NewRef(m->null_ptr);
        else if ((*key = PyUnicode_FromStringAndSize(rest + 4, end - 4)) == NULL)
            return -1;
    } else { /* I6 */
        const char *space = memchr(rest, ' ', (size_t)rest_len);
        if (space == NULL || rest_len < 6 || memcmp(rest, "pfn=0x", 6) != 0 || len[5] < 5 ||
            memcmp(t[5], "page=", 5) != 0 || !inline_pointer(t[5] + 5, len[5] - 5))
            return 0;
        Py_ssize_t end = space - rest;
        if (end <= 6 || end - 6 > 16)
            return 0;
        unsigned long long pfn = 0;
        for (Py_ssize_t i = 6; i < end; i++) {
            if (!is_hex((unsigned char)rest[i]))
                return 0;
            pfn = pfn << 4 | (unsigned long long)hex_value((unsigned char)rest[i]);
        }
        PyObject *entry = lookup(m, memo, rest + end, rest_len - end, &failed);
        if (entry == NULL)
            return failed ? -1 : 0;
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2)
            return 0;
        *tail = PyTuple_GET_ITEM(entry, 0);
        *site = NULL; /* "" */
        *key = pfn ? PyLong_FromUnsignedLongLong(pfn) : Py_NewRef(PyTuple_GET_ITEM(entry, 1));
        if (*key == NULL)
            return -1;
    }
    if ((*time = PyUnicode_FromStringAndSize(t[3], len[3])) == NULL) {
        Py_CLEAR(*key);
        return -1;
    }
    if (marked != NULL)
        *marked = watched(s, n, t, len);
    return 1;
}

static int
append_steal(PyObject *list, PyObject *item)
{
    if (item == NULL)
        return -1;
    int status = PyList_Append(list, item);
    Py_DECREF(item);
    return status;
}

PyObject *
kmem_parse_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 && nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "parse_lines takes 9 or 10 arguments");
        return NULL;
    }
    PyObject *lines = args[0], *slow = args[6];
    PyObject *watch = nargs == 10 && args[9] != Py_None ? args[9] : NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    Py_ssize_t first = PyLong_AsSsize_t(args[2]);
    Py_ssize_t max_line = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred())
        return NULL;
    Memo m = {.event_kinds = args[3], .call_sites = args[4], .tails = args[5],
              .null_ptr = args[7]};
    if (!PyIter_Check(lines) || !PyDict_Check(m.event_kinds) || !PyDict_Check(m.call_sites) ||
        !PyList_Check(m.tails) || !PyUnicode_Check(m.null_ptr) ||
        (watch != NULL && !PyCallable_Check(watch))) {
        PyErr_SetString(PyExc_TypeError, "parse_lines: an iterator, dicts and a list expected");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(m.tails); i++)
        if (!PyDict_Check(PyList_GET_ITEM(m.tails, i))) {
            PyErr_SetString(PyExc_TypeError, "parse_lines: a memo table per event kind");
            return NULL;
        }
    PyObject *kinds = PyByteArray_FromStringAndSize(NULL, 0);
    PyObject *cpus = PyList_New(0), *times = PyList_New(0), *sites = PyList_New(0);
    PyObject *keys = PyList_New(0), *tails = PyList_New(0);
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *result = NULL, *error = Py_NewRef(Py_None);
    Py_ssize_t events = 0, skipped = 0;
    m.cache = PyMem_Calloc(CACHE_SLOTS, sizeof(CacheSlot));
    if (m.cache == NULL)
        PyErr_NoMemory();
    if (!kinds || !cpus || !times || !sites || !keys || !tails || !empty || !m.cache)
        goto done;
    /* The watch's last answer asked for the next line: the first line of a batch is always
     * shown (the answer before it was the last call's). */
    int watch_next = 1;
    while (events + skipped < size) {
        PyObject *line = PyIter_Next(lines);
        if (line == NULL)
            break;
        int kind, marked = 0;
        long cpu;
        PyObject *time = NULL, *site = NULL, *key = NULL, *tail = NULL;
        int got = PyUnicode_Check(line) ? read_inline(&m, line, max_line, &kind, &cpu, &time,
                                                      &site, &key, &tail,
                                                      watch ? &marked : NULL) : 0;
        if (got < 0) {
            Py_DECREF(line);
            break;
        }
        if (watch != NULL && (watch_next || got == 0 || marked)) {
            PyObject *answer = PyObject_CallOneArg(watch, line);
            long flags = answer == NULL ? -1 : PyLong_AsLong(answer);
            Py_XDECREF(answer);
            if (flags == -1 && PyErr_Occurred()) {
                if (got == 1) {
                    Py_DECREF(time);
                    Py_DECREF(key);
                }
                Py_DECREF(line);
                break;
            }
            watch_next = (flags & WATCH_NEXT) != 0;
            if (flags & WATCH_DROP) { /* read as a blank line (see parse_lines) */
                if (got == 1) {
                    Py_DECREF(time);
                    Py_DECREF(key);
                }
                Py_SETREF(line, Py_NewRef(empty));
                got = 0;
            }
        }
        if (got == 0) { /* the slow path: it reads the line, or says what is wrong with it */
            PyObject *number = PyLong_FromSsize_t(first + events + skipped + 1);
            PyObject *call[2] = {number, line};
            PyObject *event = number ? PyObject_Vectorcall(slow, call, 2, NULL) : NULL;
            Py_XDECREF(number);
            if (event == NULL) {
                Py_DECREF(line);
                break;
            }
            if (event == Py_None) {
                Py_DECREF(event);
                Py_DECREF(line);
                skipped++;
                continue;
            }
            if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) != 13) {
                Py_DECREF(event);
                Py_DECREF(line);
                PyErr_SetString(PyExc_TypeError, "_slow_event must give an event tuple");
                break;
            }
            kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(event, 0));
            cpu = PyLong_AsLong(PyTuple_GET_ITEM(event, 1));
            time = Py_NewRef(PyTuple_GET_ITEM(event, 2));
            site = PyTuple_GET_ITEM(event, 3);
            if (kind <= KMEM_CACHE_FREE) {
                key = Py_NewRef(PyTuple_GET_ITEM(event, 4));
                tail = PyTuple_GetSlice(event, 5, 13);
            } else {
                key = Py_NewRef(PyTuple_GET_ITEM(event, 10));
                tail = PyTuple_Pack(3, PyTuple_GET_ITEM(event, 8), PyTuple_GET_ITEM(event, 11),
                                    PyTuple_GET_ITEM(event, 12));
            }
            int ok = tail != NULL && append_steal(sites, Py_NewRef(site)) == 0 &&
                     append_steal(tails, tail) == 0;
            Py_DECREF(event);
            if (!ok || PyErr_Occurred()) {
                Py_XDECREF(time);
                Py_XDECREF(key);
                Py_DECREF(line);
                break;
            }
        } else {
            if (append_steal(sites, Py_NewRef(site ? site : empty)) < 0 ||
                append_steal(tails, Py_NewRef(tail)) < 0) {
                Py_DECREF(time);
                Py_DECREF(key);
                Py_DECREF(line);
                break;
            }
        }
        Py_DECREF(line);
        char kind_byte = (char)kind;
        if (PyByteArray_Resize(kinds, events + 1) < 0 ||
            (PyByteArray_AS_STRING(kinds)[events] = kind_byte, 0) ||
            append_steal(cpus, PyLong_FromLong(cpu)) < 0 || append_steal(times, time) < 0 ||
            append_steal(keys, key) < 0)
            break;
        events++;
    }
    if (PyErr_Occurred()) { /* the error that stopped the batch, for the caller to sort */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL)
            PyException_SetTraceback(value, traceback);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        Py_SETREF(error, value);
    }
    result = Py_BuildValue("(OOOOOOnO)", kinds, cpus, times, sites, keys, tails, skipped,
                           error);
done:
    Py_XDECREF(kinds);
    Py_XDECREF(cpus);
    Py_XDECREF(times);
    Py_XDECREF(sites);
    Py_XDECREF(keys);
    Py_XDECREF(tails);
    Py_XDECREF(empty);
    if (m.cache != NULL) {
        for (Py_ssize_t i = 0; i < CACHE_SLOTS; i++) {
            Py_XDECREF(m.cache[i].key);
            Py_XDECREF(m.cache[i].value);
        }
        PyMem_Free(m.cache);
    }
    Py_XDECREF(error);
    return result;
}
