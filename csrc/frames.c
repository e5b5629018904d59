/* The page builder's per-frame reads of the buddy allocator (kmem/show/snapshot.py's
 * _BuddyFrames): which stretches of the mem_map changed, and the flat blocks of a stretch.
 * A long trace's page takes hundreds or thousands of frames, and in Python these two were a
 * third of a frame's cost. Each returns NotImplemented for what it does not know, before
 * reading anything: the pure twin (_changed_stretches_pure, _walk_blocks_pure) then does the
 * work and raises what it raises. */
#include "kmem_core.h"

/* The block codes of kmem/show/snapshot.py (FREE_CODE, ALLOCATED_CODE, RESERVED_CODE); a
 * label's code is `base` + its number in the label table. */
enum { FREE_CODE = 0, ALLOCATED_CODE = 1, RESERVED_CODE = 2 };

static int
read_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyErr_Clear();
        return -1;
    }
    if (view->itemsize != itemsize) {
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* changed_stretches(before, now, nr_stretches, shift): the indices, ascending, of the
 * stretches (1 << shift bytes each, the last one maybe cut short by the end) whose bytes
 * differ between the two buffers of bytes. NotImplemented unless both have the same length
 * and every stretch starts inside them. */
PyObject *
kmem_changed_stretches(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyLong_CheckExact(args[2]) || !PyLong_CheckExact(args[3]))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t nr = PyLong_AsSsize_t(args[2]), shift = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_buffer before, now;
    if (read_buffer(args[0], &before, 1) < 0)
        Py_RETURN_NOTIMPLEMENTED;
    if (read_buffer(args[1], &now, 1) < 0) {
        PyBuffer_Release(&before);
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t len = now.len;
    PyObject *out = NULL;
    if (before.len != len || nr < 0 || nr > len || shift < 0 || shift > 40 ||
        (nr && ((nr - 1) << shift) >= len)) {
        out = Py_NewRef(Py_NotImplemented);
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto done;
    const char *a = before.buf, *b = now.buf;
    for (Py_ssize_t index = 0; index < nr; index++) {
        Py_ssize_t start = index << shift, end = (index + 1) << shift;
        if (end > len)
            end = len;
        if (memcmp(a + start, b + start, (size_t)(end - start)) == 0)
            continue;
        PyObject *number = PyLong_FromSsize_t(index);
        if (number == NULL || PyList_Append(out, number) < 0) {
            Py_XDECREF(number);
            Py_CLEAR(out);
            goto done;
        }
        Py_DECREF(number);
    }
done:
    PyBuffer_Release(&before);
    PyBuffer_Release(&now);
    return out;
}

static int
append3(PyObject *out, Py_ssize_t pfn, long order, long code)
{
    PyObject *items[3] = {PyLong_FromSsize_t(pfn), PyLong_FromLong(order),
                          PyLong_FromLong(code)};
    int status = 0;
    for (int i = 0; i < 3; i++)
        if (items[i] == NULL || (status == 0 && PyList_Append(out, items[i]) < 0))
            status = -1;
    for (int i = 0; i < 3; i++)
        Py_XDECREF(items[i]);
    return status;
}

/* walk_blocks(state, owner, start, end, labels, owner_labels, index, names, base): the flat
 * [pfn, order, code, ...] of the blocks from pfn `start` to `end`, as _walk_blocks_pure says
 * them: a reserved frame at a time, else a block, free when its state has the FREE bit; an
 * allocated block is labelled by `labels` (dict pfn -> str), else by `owner_labels` (dict
 * owner -> str) of its first page's `owner` entry (an array of 4-byte items, or None), and an
 * empty or missing label is ALLOCATED_CODE. A label not in `index` (dict str -> number) is
 * added to it and to `names` (list), as LabelTable.code() does. NotImplemented for a walk
 * off the end of either buffer or a label that is not a str: the labels added by then are
 * those the pure twin adds first on the same walk. */
PyObject *
kmem_walk_blocks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9 || !PyLong_CheckExact(args[2]) || !PyLong_CheckExact(args[3]) ||
        !PyLong_CheckExact(args[8]) || !PyDict_CheckExact(args[4]) ||
        !PyDict_CheckExact(args[5]) || !PyDict_CheckExact(args[6]) ||
        !PyList_CheckExact(args[7]))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t pfn = PyLong_AsSsize_t(args[2]), end = PyLong_AsSsize_t(args[3]);
    long base = PyLong_AsLong(args[8]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *labels = args[4], *owner_labels = args[5], *index = args[6], *names = args[7];
    Py_buffer state, owner;
    int has_owner = args[1] != Py_None;
    if (read_buffer(args[0], &state, 1) < 0)
        Py_RETURN_NOTIMPLEMENTED;
    if (has_owner && read_buffer(args[1], &owner, 4) < 0) {
        PyBuffer_Release(&state);
        Py_RETURN_NOTIMPLEMENTED;
    }
    const unsigned char *kinds = state.buf;
    const uint32_t *owners = has_owner ? owner.buf : NULL;
    Py_ssize_t nr_owners = has_owner ? owner.len / 4 : 0;
    int by_pfn = PyDict_GET_SIZE(labels) > 0;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        goto done;
    while (pfn < end) {
        if (pfn < 0 || pfn >= state.len)
            goto not_implemented;
        unsigned char kind = kinds[pfn];
        if (kind == KMEM_RESERVED) {
            if (append3(out, pfn, 0, RESERVED_CODE) < 0)
                goto error;
            pfn += 1;
            continue;
        }
        long order = kind & KMEM_ORDER_MASK, code = FREE_CODE;
        if (!(kind & KMEM_FREE)) {
            PyObject *label = NULL;  /* borrowed */
            if (by_pfn) {
                PyObject *key = PyLong_FromSsize_t(pfn);
                if (key == NULL)
                    goto error;
                label = PyDict_GetItemWithError(labels, key);
                Py_DECREF(key);
                if (label == NULL && PyErr_Occurred())
                    goto error;
                if (label == Py_None)  /* (as no label: the owner's is taken) */
                    label = NULL;
            }
            if (label == NULL && has_owner) {
                if (pfn >= nr_owners)
                    goto not_implemented;
                PyObject *key = PyLong_FromUnsignedLong(owners[pfn]);
                if (key == NULL)
                    goto error;
                label = PyDict_GetItemWithError(owner_labels, key);
                Py_DECREF(key);
                if (label == NULL && PyErr_Occurred())
                    goto error;
            }
            code = ALLOCATED_CODE;
            if (label != NULL && label != Py_None) {
                if (!PyUnicode_CheckExact(label))
                    goto not_implemented;
                if (PyUnicode_GET_LENGTH(label)) {
                    PyObject *number = PyDict_GetItemWithError(index, label);
                    if (number == NULL) {
                        if (PyErr_Occurred())
                            goto error;
                        number = PyLong_FromSsize_t(PyList_GET_SIZE(names));
                        if (number == NULL || PyDict_SetItem(index, label, number) < 0 ||
                            PyList_Append(names, label) < 0) {
                            Py_XDECREF(number);
                            goto error;
                        }
                        Py_DECREF(number);  /* (borrowed from here on: the dict holds it) */
                    }
                    long value = PyLong_AsLong(number);
                    if (value == -1 && PyErr_Occurred())
                        goto error;
                    code = base + value;
                }
            }
        }
        if (append3(out, pfn, order, code) < 0)
            goto error;
        pfn += (Py_ssize_t)1 << order;
    }
    goto done;
not_implemented:
    Py_SETREF(out, Py_NewRef(Py_NotImplemented));
    goto done;
error:
    Py_CLEAR(out);
done:
    PyBuffer_Release(&state);
    if (has_owner)
        PyBuffer_Release(&owner);
    return out;
}

/* slab_rows(rows, before, rows_now, total, page_size, chars, listed, max_bits): a cache
 * entry's slab rows and counts from its slab_usage() `rows`, as _slab_rows_pure makes them:
 * (slabs, objects in use, full slabs, empty slabs). Each of the first `listed` rows is the
 * list `before` (dict row -> list) holds for it, else [pfn, inuse, total, base (the first
 * page's address, pfn * page_size, when no object is in use)] and, when total <= max_bits,
 * its used bytes through the 256-byte table `chars`, padded with "0" to `total`; each is put
 * in `rows_now` (dict, or None). NotImplemented for anything else (a row that is no 4-tuple
 * of an int count, used that is not bytes, a character that is not ASCII), before any
 * change: the pure twin then does the work and raises what it raises. */
PyObject *
kmem_slab_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !(args[2] == Py_None || PyDict_CheckExact(args[2])) || !PyLong_CheckExact(args[3]) ||
        !PyBytes_CheckExact(args[5]) || PyBytes_GET_SIZE(args[5]) != 256 ||
        !PyLong_CheckExact(args[6]) || !PyLong_CheckExact(args[7]))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *rows = args[0], *before = args[1], *rows_now = args[2], *total = args[3];
    PyObject *page_size = args[4];
    const unsigned char *chars = (const unsigned char *)PyBytes_AS_STRING(args[5]);
    Py_ssize_t objects = PyLong_AsSsize_t(total), listed = PyLong_AsSsize_t(args[6]),
               max_bits = PyLong_AsSsize_t(args[7]);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t n = PyList_GET_SIZE(rows), active = 0, full = 0, empty = 0;
    if (listed < 0)
        listed = 0;
    if (listed > n)
        listed = n;
    int ascii = 1;  /* (a table of ASCII only: no used string can hold anything else) */
    for (int b = 0; b < 256; b++)
        ascii &= chars[b] < 128;
    for (Py_ssize_t i = 0; i < n; i++) {  /* checked first: nothing made for nothing */
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 4 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(row, 1)))
            Py_RETURN_NOTIMPLEMENTED;
        Py_ssize_t inuse = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, 1));
        if (inuse == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            Py_RETURN_NOTIMPLEMENTED;
        }
        if (i < listed && (!PyBytes_CheckExact(PyTuple_GET_ITEM(row, 3)) ||
                           !PyLong_CheckExact(PyTuple_GET_ITEM(row, 0)) ||
                           !PyLong_CheckExact(PyTuple_GET_ITEM(row, 2))))
            Py_RETURN_NOTIMPLEMENTED;  /* (so a listed row hashes, as the pure twin's does) */
        if (!ascii && i < listed && objects <= max_bits) {
            PyObject *used = PyTuple_GET_ITEM(row, 3);
            const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(used);
            for (Py_ssize_t j = 0; j < PyBytes_GET_SIZE(used); j++)
                if (chars[bytes[j]] >= 128)
                    Py_RETURN_NOTIMPLEMENTED;
        }
        active += inuse;
        full += inuse == objects;
        empty += inuse == 0;
    }
    PyObject *slabs = PyList_New(listed);
    if (slabs == NULL)
        return NULL;
    int by_row = PyDict_GET_SIZE(before) > 0;
    for (Py_ssize_t i = 0; i < listed; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        PyObject *entry = by_row ? PyDict_GetItemWithError(before, row) : NULL;
        if (entry != NULL) {
            Py_INCREF(entry);
        } else {
            if (PyErr_Occurred())
                goto error;
            PyObject *pfn = PyTuple_GET_ITEM(row, 0), *inuse = PyTuple_GET_ITEM(row, 1);
            PyObject *base = PyLong_AsSsize_t(inuse) != 0  /* (checked: it fits) */
                                 ? Py_NewRef(PyTuple_GET_ITEM(row, 2))
                                 : PyNumber_Multiply(pfn, page_size);
            if (base == NULL)
                goto error;
            entry = PyList_New(0);
            if (entry == NULL || PyList_Append(entry, pfn) < 0 ||
                PyList_Append(entry, inuse) < 0 || PyList_Append(entry, total) < 0 ||
                PyList_Append(entry, base) < 0) {
                Py_DECREF(base);
                Py_XDECREF(entry);
                goto error;
            }
            Py_DECREF(base);
            if (objects <= max_bits) {
                PyObject *used = PyTuple_GET_ITEM(row, 3);
                Py_ssize_t size = PyBytes_GET_SIZE(used);
                Py_ssize_t length = size < objects ? objects : size;
                PyObject *text = PyUnicode_New(length, 127);
                if (text == NULL) {
                    Py_DECREF(entry);
                    goto error;
                }
                Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
                const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(used);
                for (Py_ssize_t j = 0; j < size; j++)
                    out[j] = chars[bytes[j]];
                for (Py_ssize_t j = size; j < length; j++)
                    out[j] = '0';
                int failed = PyList_Append(entry, text) < 0;
                Py_DECREF(text);
                if (failed) {
                    Py_DECREF(entry);
                    goto error;
                }
            }
        }
        if (rows_now != Py_None && PyDict_SetItem(rows_now, row, entry) < 0) {
            Py_DECREF(entry);
            goto error;
        }
        PyList_SET_ITEM(slabs, i, entry);
    }
    return Py_BuildValue("(Nnnn)", slabs, active, full, empty);
error:
    Py_DECREF(slabs);
    return NULL;
}

/* count_event_lines(chunk): chunk.count(b"\n") - chunk.count(b"\n\t") - chunk.count(b"\n\n")
 * of a bytes-like chunk of a trace (kmem html counts a long trace's lines before replaying
 * it: three passes of bytes.count over a 50 MB file were a tenth of the page's cost). One
 * memchr pass: a run of k newlines counts k less k / 2 (count's pairs do not overlap), less
 * one more when a tab follows the run. NotImplemented for anything that is no buffer. */
PyObject *
kmem_count_event_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1)
        Py_RETURN_NOTIMPLEMENTED;
    Py_buffer view;
    if (read_buffer(args[0], &view, 1) < 0)
        Py_RETURN_NOTIMPLEMENTED;
    const char *at = view.buf, *end = at + view.len;
    long long lines = 0;
    while (at < end) {
        const char *newline = memchr(at, '\n', (size_t)(end - at));
        if (newline == NULL)
            break;
        const char *run = newline;
        while (run < end && *run == '\n')
            run++;
        long long k = run - newline;
        lines += k - k / 2;
        if (run < end && *run == '\t')
            lines -= 1;
        at = run;
    }
    PyBuffer_Release(&view);
    return PyLong_FromLongLong(lines);
}
