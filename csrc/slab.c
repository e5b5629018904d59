/* The slab caches' and kmalloc's hot paths (kmem/slab/slub.py, classic.py and kmalloc.py are
 * the reference).
 *
 * A cache's state stays in its Python objects: the per-CPU dict of cpu slabs (SLUB), the
 * partial list (classic, an OrderedDict), the dict from page to Slab, and per slab the
 * freelist (an array('I') used as a stack), the used marks (a bytearray) and the base address.
 * The core reads a Slab's fields at the offsets of its __slots__ (found once from the class's
 * member descriptors) and pops and pushes the freelist in place. array.array has no public C
 * API for that, so kmem_array_layout_ok() checks at import that the object is laid out as this
 * file expects (its size, items, capacity and export count, read back through the buffer
 * protocol); if it is not, the module says so (SLAB_FAST_PATHS is False) and the caches keep
 * their pure paths. A push beyond the array's capacity, or onto an array that a buffer export
 * pins, is left to the pure path, as is everything but the fast path itself:
 *
 *   SLUB alloc:    the cpu slab's freelist is not empty: pop it.
 *   SLUB free:     the object is in this CPU's cpu slab: push it; in another slab that
 *                  changes no list (another CPU's cpu slab, a cpu partial slab, a node
 *                  partial slab that does not become empty): __slab_free's push, counted.
 *   classic alloc: the first partial slab keeps a free object after this one: pop it.
 *   classic free:  the slab stays partial (it was not full and does not become empty): push,
 *                  and move the slab to the tail of the partial list (free_block's order).
 *   sheaf alloc:   (6.18 and 7.0, kmem/slab/slub_sheaves.py) the CPU's main sheaf is not
 *                  empty: pop its top object.
 *   sheaf free:    the main sheaf has room below the capacity: push the object on it.
 *   kmalloc:       1..KMALLOC_MAX_CACHE_SIZE bytes, a gfp_t: the alloc of the size's cache of
 *                  its family (kmalloc_type), and with __GFP_ZERO a memset of the object.
 *   kfree:         an address in a slab page: the owner's free.
 */
#include "kmem_core.h"

#include <structmember.h>
#include <limits.h>

typedef struct {
    PyObject_VAR_HEAD
    char *ob_item;
    Py_ssize_t allocated;
    const char *ob_descr; /* struct arraydescr, whose first member is the typecode */
    PyObject *weakreflist;
    Py_ssize_t ob_exports;
} kmem_array;

static PyTypeObject *array_type;
int kmem_slab_fast_paths;

/* Is `obj` an array('I') this file may pop and push in place? */
static inline int
is_index_array(PyObject *obj)
{
    return Py_TYPE(obj) == array_type && ((kmem_array *)obj)->ob_descr[0] == 'I';
}

int
kmem_array_layout_ok(void)
{
    PyObject *module = PyImport_ImportModule("array");
    if (module == NULL)
        return -1;
    PyObject *made = PyObject_CallMethod(module, "array", "s[iii]", "I", 7, 8, 9);
    Py_DECREF(module);
    if (made == NULL)
        return -1;
    kmem_array *a = (kmem_array *)made;
    int ok = Py_SIZE(made) == 3 && a->allocated >= 3 && a->ob_exports == 0 &&
             a->ob_descr != NULL && a->ob_descr[0] == 'I';
    if (ok) {
        uint32_t *items = (uint32_t *)a->ob_item;
        ok = items[0] == 7 && items[1] == 8 && items[2] == 9;
    }
    if (ok) {
        Py_buffer view;
        if (PyObject_GetBuffer(made, &view, PyBUF_SIMPLE) < 0) {
            Py_DECREF(made);
            return -1;
        }
        ok = view.buf == a->ob_item && view.len == 12 && a->ob_exports == 1;
        PyBuffer_Release(&view);
        ok = ok && a->ob_exports == 0;
    }
    if (ok)
        array_type = Py_TYPE(made);
    Py_DECREF(made);
    kmem_slab_fast_paths = ok;
    return 0;
}

/* The offset of a __slots__ member of `type`, or -1 with an exception. The member must be
 * one of `type`'s own layout (its class or a base): a member descriptor of another class
 * set as a class attribute would give an offset into another object's layout. */
static Py_ssize_t
slot_offset(PyObject *type, const char *name)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "slab_type must be a class");
        return -1;
    }
    PyObject *descr = PyObject_GetAttrString(type, name);
    if (descr == NULL)
        return -1;
    Py_ssize_t offset = -1;
    if (Py_TYPE(descr) == &PyMemberDescr_Type &&
        PyType_IsSubtype((PyTypeObject *)type, PyDescr_TYPE(descr))) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX)
            offset = member->offset;
    }
    Py_DECREF(descr);
    if (offset < 0)
        PyErr_Format(PyExc_TypeError, "%s is not a __slots__ member", name);
    return offset;
}

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

enum { SLUB = 0, CLASSIC = 1, SHEAF = 2 };
enum { USED_BY_USER = 1, SHEAF_HELD = 2 }; /* a slab's used marks (kmem/slab/sheaves.py) */

typedef struct {
    PyObject_HEAD
    int kind;
    PyObject *cpu_slab;    /* SLUB: {cpu: Slab | None}; sheaves: {cpu: main Sheaf (a list)} */
    PyObject *partial;     /* classic: OrderedDict of partial slabs, head first */
    PyObject *slab_of_pfn; /* {pfn: Slab} */
    PyObject *move_to_end; /* "move_to_end" */
    Py_ssize_t off_freelist, off_used, off_base, off_objects, off_pfmemalloc;
    long long size;
    int page_shift;
    long nr_cpus;
    Py_buffer fast_view;
    int64_t *fast; /* [alloc fast paths, free fast paths] */
    Py_buffer pcs_view;
    int64_t *pcs; /* sheaves: [allocations from sheaves, frees to sheaves, capacity] */
    PyThread_type_lock lock, own_lock;
    int held; /* a Python path holds the lock (acquire) */
    PyObject *pure_alloc, *pure_free;
    /* sheaves: the slab of the object last pushed onto (or popped from) a sheaf, so that
     * sheaf_pop of that object skips the slab_of_pfn lookup. Only a hint: it is used when the
     * popped address lies on one of its object slots marked SHEAF_HELD, which only a live slab
     * has (a slab is discarded empty, all its marks 0, and live slabs do not overlap). */
    PyObject *last_slab;
    /* SLUB's free slow path when no list changes (slow_free=): the cache's _stat list, the
     * indices of FREE_SLOWPATH and FREE_FROZEN in it, the ON_* values of Slab.where. */
    PyObject *stat;
    Py_ssize_t stat_slowpath, stat_frozen, off_where, off_remote;
    long on_cpu, on_cpu_partial, on_node_partial;
    /* sheaves with several NUMA nodes (cpu_node=): the node of each CPU, a list of ints, and
     * the offset of Slab.node; NULL with one node (every free is local) */
    PyObject *cpu_node;
    Py_ssize_t off_node;
} SlabCacheCore;

/* A slab's base address, or -1. */
static inline long long
slab_base(SlabCacheCore *c, PyObject *slab)
{
    PyObject *base = SLOT(slab, c->off_base);
    if (base == NULL || !PyLong_CheckExact(base))
        return -1;
    return PyLong_AsLongLong(base);
}

/* Pop the top of a slab's freelist if more than `keep` indices are on it: the index, or -1. */
static inline long
pop_index(SlabCacheCore *c, PyObject *slab, Py_ssize_t keep, long long *address)
{
    PyObject *freelist = SLOT(slab, c->off_freelist);
    PyObject *used = SLOT(slab, c->off_used);
    if (freelist == NULL || used == NULL || !is_index_array(freelist) ||
        !PyByteArray_CheckExact(used))
        return -1;
    kmem_array *stack = (kmem_array *)freelist;
    Py_ssize_t n = Py_SIZE(freelist);
    long long base = slab_base(c, slab);
    if (n <= keep || stack->ob_exports || base < 0)
        return -1;
    uint32_t index = ((uint32_t *)stack->ob_item)[n - 1];
    if ((Py_ssize_t)index >= PyByteArray_GET_SIZE(used))
        return -1;
    Py_SET_SIZE(freelist, n - 1);
    PyByteArray_AS_STRING(used)[index] = 1;
    c->fast[0] += 1;
    *address = base + (long long)index * c->size;
    return (long)index;
}

/* Is `gfp` an exact int in 0..2**32-1 (a gfp_t)? Anything else goes to the pure path, which
 * raises the specific error. */
static inline int
is_gfp(PyObject *gfp)
{
    if (!PyLong_CheckExact(gfp))
        return 0;
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(gfp, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow && value >= 0 && value <= 0xFFFFFFFFLL;
}

static PyObject *allocated_object(SlabCacheCore *c, long long address, uint32_t *index);

/* The main sheaf of `cpu` (NULL: cpu 0), or NULL. */
static inline PyObject *
main_sheaf(SlabCacheCore *c, PyObject *cpu)
{
    PyObject *zero = cpu ? NULL : PyLong_FromLong(0); /* a cached small int */
    PyObject *main = PyDict_GetItemWithError(c->cpu_slab, cpu ? cpu : zero);
    Py_XDECREF(zero);
    return main != NULL && PyList_Check(main) ? main : NULL;
}

/* The index of `address` on the hinted slab (c->last_slab) when it is one of its object slots
 * and marked `mark`, else -1. A slot marked 1 or SHEAF_HELD lies on a live slab (a slab is
 * discarded empty, all its marks 0, and live slabs do not overlap), so the hint then names the
 * slab that slab_of_pfn would give. */
static inline long long
hinted_index(SlabCacheCore *c, long long address, char mark)
{
    PyObject *slab = c->last_slab;
    if (slab == NULL)
        return -1;
    PyObject *used = SLOT(slab, c->off_used);
    long long base = slab_base(c, slab);
    if (used == NULL || !PyByteArray_CheckExact(used) || base < 0 || address < base)
        return -1;
    long long offset = address - base;
    long long index = offset / c->size;
    if (index * c->size != offset || index >= PyByteArray_GET_SIZE(used) ||
        PyByteArray_AS_STRING(used)[index] != mark)
        return -1;
    return index;
}

/* Remember `slab` as the hint (a borrowed reference from slab_of_pfn). */
static inline void
set_hint(SlabCacheCore *c, PyObject *slab)
{
    if (slab != c->last_slab) {
        Py_INCREF(slab);
        Py_XSETREF(c->last_slab, slab);
    }
}

/* alloc_from_pcs: pop the main sheaf's top object, marked used by a user: the address (a new
 * reference), or NULL to take the pure path, which changed nothing yet. */
static PyObject *
sheaf_pop(SlabCacheCore *c, PyObject *cpu)
{
    PyObject *main = main_sheaf(c, cpu);
    Py_ssize_t n = main ? PyList_GET_SIZE(main) : 0;
    if (n == 0 || c->pcs[2] <= 0) /* (capacity 0: no sheaves, or the cache being destroyed) */
        return NULL;
    PyObject *top = PyList_GET_ITEM(main, n - 1);
    if (!PyLong_CheckExact(top))
        return NULL;
    long long address = PyLong_AsLongLong(top);
    if (address < 0)
        return NULL;
    long long index = hinted_index(c, address, SHEAF_HELD);
    PyObject *slab = c->last_slab;
    if (index < 0) { /* not the hinted slab's: look it up */
        PyObject *pfn = PyLong_FromLongLong(address >> c->page_shift);
        if (pfn == NULL)
            return NULL;
        slab = PyDict_GetItemWithError(c->slab_of_pfn, pfn);
        Py_DECREF(pfn);
        PyObject *used = slab ? SLOT(slab, c->off_used) : NULL;
        long long base = slab ? slab_base(c, slab) : -1;
        if (used == NULL || !PyByteArray_CheckExact(used) || base < 0 || address < base)
            return NULL;
        index = (address - base) / c->size;
        if (index >= PyByteArray_GET_SIZE(used))
            return NULL;
        set_hint(c, slab);
    }
    Py_SET_SIZE(main, n - 1); /* the list's reference to `top` is now ours */
    PyByteArray_AS_STRING(SLOT(slab, c->off_used))[index] = USED_BY_USER;
    c->pcs[0] += 1;
    return top;
}

/* free_to_pcs: push an object a user holds onto the main sheaf while it has room; 1 if done,
 * 0 to take the pure path (nothing changed), -1 on an error. The object's slab is the hinted
 * one when the address is a slot of it marked 1 (no slab_of_pfn lookup); the push appends in
 * place while the list has room allocated. */
static int
sheaf_push(SlabCacheCore *c, PyObject *address_obj, long long address, PyObject *cpu)
{
    PyObject *main = main_sheaf(c, cpu);
    if (main == NULL)
        return 0;
    Py_ssize_t n = PyList_GET_SIZE(main);
    if (n >= c->pcs[2])
        return 0;
    long long index = hinted_index(c, address, USED_BY_USER);
    PyObject *slab = c->last_slab;
    if (index < 0) {
        uint32_t found;
        slab = allocated_object(c, address, &found);
        if (slab == NULL)
            return 0;
        index = found;
    }
    /* slab_free: 7.0 frees an object of a pfmemalloc slab to the slab, not the sheaves; the
     * pure path knows the kernel and does what it says (rare: memory-reserve slabs only) */
    if (SLOT(slab, c->off_pfmemalloc) != Py_False)
        return 0;
    /* slab_free: an object of another node than the freeing CPU's (slab_nid(slab) !=
     * numa_mem_id()) skips the sheaves for its slab; the pure path takes it there */
    if (c->cpu_node != NULL) {
        long cpu_index = cpu ? PyLong_AsLong(cpu) : 0;
        PyObject *node = SLOT(slab, c->off_node);
        if (cpu_index < 0 || cpu_index >= PyList_GET_SIZE(c->cpu_node) || node == NULL ||
            !PyLong_CheckExact(node) ||
            PyLong_AsLong(node) != PyLong_AsLong(PyList_GET_ITEM(c->cpu_node, cpu_index)))
            return 0;
    }
    PyListObject *list = (PyListObject *)main;
    if (n < list->allocated) {
        Py_INCREF(address_obj);
        list->ob_item[n] = address_obj;
        Py_SET_SIZE(main, n + 1);
    } else if (PyList_Append(main, address_obj) < 0) {
        return -1;
    }
    PyByteArray_AS_STRING(SLOT(slab, c->off_used))[index] = SHEAF_HELD;
    set_hint(c, slab);
    c->pcs[1] += 1;
    return 1;
}

static PyObject *
cache_alloc(SlabCacheCore *c, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    /* alloc(cpu=0, gfp=GFP_KERNEL): the fast paths only check that gfp is a gfp_t */
    if (!kwnames && nargs <= 2 && (nargs == 0 || PyLong_CheckExact(args[0])) &&
        (nargs < 2 || is_gfp(args[1]))) {
        long long address = -1;
        int locked = kmem_fast_lock(c->lock, c->held);
        if (c->kind == SHEAF) {
            PyObject *popped = sheaf_pop(c, nargs ? args[0] : NULL);
            kmem_fast_unlock(c->lock, locked);
            if (popped != NULL)
                return popped;
            if (PyErr_Occurred())
                PyErr_Clear(); /* the pure path meets the same condition and reports it */
            return PyObject_Vectorcall(c->pure_alloc, args, (size_t)nargs, kwnames);
        }
        if (c->kind == SLUB) {
            PyObject *cpu = nargs ? args[0] : NULL;
            PyObject *slab = NULL;
            if (cpu == NULL) {
                PyObject *zero = PyLong_FromLong(0); /* a cached small int */
                slab = PyDict_GetItemWithError(c->cpu_slab, zero);
                Py_DECREF(zero);
            } else {
                slab = PyDict_GetItemWithError(c->cpu_slab, cpu);
            }
            if (slab != NULL && slab != Py_None)
                pop_index(c, slab, 0, &address);
        } else {
            long cpu = nargs ? PyLong_AsLong(args[0]) : 0;
            if (cpu >= 0 && cpu < c->nr_cpus && PyDict_GET_SIZE(c->partial) > 0) {
                PyObject *it = PyObject_GetIter(c->partial);
                PyObject *slab = it ? PyIter_Next(it) : NULL;
                Py_XDECREF(it);
                if (slab != NULL) {
                    pop_index(c, slab, 1, &address); /* the slab stays partial */
                    Py_DECREF(slab);
                }
            }
        }
        kmem_fast_unlock(c->lock, locked);
        if (PyErr_Occurred())
            PyErr_Clear(); /* the pure path meets the same condition and reports it */
        if (address >= 0)
            return PyLong_FromLongLong(address);
    }
    return PyObject_Vectorcall(c->pure_alloc, args, (size_t)nargs, kwnames);
}

/* The slab and index of the allocated object at `address`, or NULL. */
static PyObject *
allocated_object(SlabCacheCore *c, long long address, uint32_t *index)
{
    PyObject *pfn = PyLong_FromLongLong(address >> c->page_shift);
    if (pfn == NULL)
        return NULL;
    PyObject *slab = PyDict_GetItemWithError(c->slab_of_pfn, pfn);
    Py_DECREF(pfn);
    if (slab == NULL)
        return NULL;
    long long offset = address - slab_base(c, slab);
    PyObject *used = SLOT(slab, c->off_used);
    if (offset < 0 || offset % c->size || used == NULL || !PyByteArray_CheckExact(used))
        return NULL;
    long long i = offset / c->size;
    /* 1: held by a user (2 and 3 are objects in a sheaf or waiting for kfree_rcu) */
    if (i >= PyByteArray_GET_SIZE(used) || PyByteArray_AS_STRING(used)[i] != 1)
        return NULL;
    *index = (uint32_t)i;
    return slab;
}

/* Push `index` on the slab's freelist if there is room without a resize; 0 if not. */
static inline int
push_index(SlabCacheCore *c, PyObject *slab, uint32_t index, Py_ssize_t *size_after)
{
    PyObject *freelist = SLOT(slab, c->off_freelist);
    if (freelist == NULL || !is_index_array(freelist))
        return 0;
    kmem_array *stack = (kmem_array *)freelist;
    Py_ssize_t n = Py_SIZE(freelist);
    if (n >= stack->allocated || stack->ob_exports)
        return 0;
    *size_after = n + 1;
    return 1;
}

static inline void
do_push(SlabCacheCore *c, PyObject *slab, uint32_t index)
{
    PyObject *freelist = SLOT(slab, c->off_freelist);
    Py_ssize_t n = Py_SIZE(freelist);
    ((uint32_t *)((kmem_array *)freelist)->ob_item)[n] = index;
    Py_SET_SIZE(freelist, n + 1);
    PyByteArray_AS_STRING(SLOT(slab, c->off_used))[index] = 0;
    c->fast[1] += 1;
}

/* Add 1 to the exact int at stat[i]: the new value (a new reference), or NULL. */
static PyObject *
stat_plus_one(SlabCacheCore *c, Py_ssize_t i)
{
    PyObject *old = PyList_GET_ITEM(c->stat, i);
    if (!PyLong_CheckExact(old))
        return NULL;
    long long value = PyLong_AsLongLong(old);
    if (value == -1 && PyErr_Occurred())
        return NULL;
    return PyLong_FromLongLong(value + 1);
}

/* __slab_free (slub.py _free_slowpath) of an object the freeing CPU's cpu slab does not hold,
 * when the slab changes no list: on another CPU's cpu slab (a push on its remote frees,
 * FREE_FROZEN), on a cpu partial stack, or on the node partial list and not becoming empty
 * (a push on its freelist); FREE_SLOWPATH counted. 1 if done, 0 to take the pure path
 * (nothing changed). */
static int
slub_free_slowpath(SlabCacheCore *c, PyObject *slab, uint32_t index)
{
    PyObject *where_obj = SLOT(slab, c->off_where);
    PyObject *objects = SLOT(slab, c->off_objects);
    if (c->stat == NULL || where_obj == NULL || !PyLong_CheckExact(where_obj) ||
        objects == NULL || !PyLong_CheckExact(objects))
        return 0;
    long where = PyLong_AsLong(where_obj);
    int frozen = where == c->on_cpu;
    if (!frozen && where != c->on_cpu_partial && where != c->on_node_partial)
        return 0;
    PyObject *target = SLOT(slab, frozen ? c->off_remote : c->off_freelist);
    if (target == NULL || !is_index_array(target))
        return 0;
    kmem_array *stack = (kmem_array *)target;
    Py_ssize_t n = Py_SIZE(target);
    if (n >= stack->allocated || stack->ob_exports)
        return 0;
    /* node partial: a full slab would move, an empty one may be discarded */
    if (where == c->on_node_partial && (n == 0 || n + 1 >= PyLong_AsSsize_t(objects)))
        return 0;
    PyObject *slowpath = stat_plus_one(c, c->stat_slowpath);
    PyObject *frozen_count = frozen && slowpath ? stat_plus_one(c, c->stat_frozen) : NULL;
    if (slowpath == NULL || (frozen && frozen_count == NULL)) {
        Py_XDECREF(slowpath);
        Py_XDECREF(frozen_count);
        return 0;
    }
    ((uint32_t *)stack->ob_item)[n] = index;
    Py_SET_SIZE(target, n + 1);
    PyByteArray_AS_STRING(SLOT(slab, c->off_used))[index] = 0;
    PyList_SetItem(c->stat, c->stat_slowpath, slowpath); /* (steals; drops the old value) */
    if (frozen)
        PyList_SetItem(c->stat, c->stat_frozen, frozen_count);
    return 1;
}

static PyObject *
cache_free(SlabCacheCore *c, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && (nargs == 1 || nargs == 2) && PyLong_CheckExact(args[0]) &&
        (nargs == 1 || PyLong_CheckExact(args[1]))) {
        int overflow;
        long long address = PyLong_AsLongLongAndOverflow(args[0], &overflow);
        int done = 0;
        if (!overflow && address >= 0) {
            int locked = kmem_fast_lock(c->lock, c->held);
            uint32_t index;
            Py_ssize_t after;
            if (c->kind == SHEAF) {
                int pushed = sheaf_push(c, args[0], address, nargs == 2 ? args[1] : NULL);
                if (pushed < 0) {
                    kmem_fast_unlock(c->lock, locked);
                    return NULL;
                }
                done = pushed;
            } else if (c->kind == SLUB) {
                PyObject *cpu = nargs == 2 ? args[1] : NULL;
                PyObject *zero = cpu ? NULL : PyLong_FromLong(0);
                PyObject *cpu_slab = PyDict_GetItemWithError(c->cpu_slab, cpu ? cpu : zero);
                Py_XDECREF(zero);
                PyObject *slab = cpu_slab ? allocated_object(c, address, &index) : NULL;
                if (slab != NULL && slab == cpu_slab && push_index(c, slab, index, &after)) {
                    do_push(c, slab, index);
                    done = 1;
                } else if (slab != NULL && slab != cpu_slab) {
                    done = slub_free_slowpath(c, slab, index);
                }
            } else {
                long cpu = nargs == 2 ? PyLong_AsLong(args[1]) : 0;
                PyObject *slab = NULL;
                if (cpu >= 0 && cpu < c->nr_cpus)
                    slab = allocated_object(c, address, &index);
                PyObject *objects = slab ? SLOT(slab, c->off_objects) : NULL;
                if (objects != NULL && PyLong_CheckExact(objects) &&
                    push_index(c, slab, index, &after) && after > 1 &&
                    after != PyLong_AsSsize_t(objects)) {
                    Py_INCREF(slab);
                    do_push(c, slab, index);
                    /* free_block: the slab goes to the tail of the partial list */
                    PyObject *moved = PyObject_CallMethodOneArg(c->partial, c->move_to_end, slab);
                    Py_DECREF(slab);
                    if (moved == NULL) {
                        kmem_fast_unlock(c->lock, locked);
                        return NULL;
                    }
                    Py_DECREF(moved);
                    done = 1;
                }
            }
            kmem_fast_unlock(c->lock, locked);
        }
        if (PyErr_Occurred())
            PyErr_Clear();
        if (done)
            Py_RETURN_NONE;
    }
    return PyObject_Vectorcall(c->pure_free, args, (size_t)nargs, kwnames);
}

static PyObject *
cache_acquire(SlabCacheCore *c, PyObject *Py_UNUSED(ignored))
{
    kmem_lock(c->own_lock);
    c->held = 1;
    Py_RETURN_TRUE;
}

static PyObject *
cache_release(SlabCacheCore *c, PyObject *Py_UNUSED(ignored))
{
    c->held = 0;
    PyThread_release_lock(c->own_lock);
    Py_RETURN_NONE;
}

static PyObject *
cache_exit(SlabCacheCore *c, PyObject *const *args, Py_ssize_t nargs)
{
    c->held = 0;
    PyThread_release_lock(c->own_lock);
    Py_RETURN_FALSE;
}

static int
cache_traverse(SlabCacheCore *c, visitproc visit, void *arg)
{
    Py_VISIT(c->cpu_slab);
    Py_VISIT(c->partial);
    Py_VISIT(c->slab_of_pfn);
    Py_VISIT(c->pure_alloc);
    Py_VISIT(c->pure_free);
    Py_VISIT(c->last_slab);
    Py_VISIT(c->stat);
    Py_VISIT(c->cpu_node);
    return 0;
}

static int
cache_clear(SlabCacheCore *c)
{
    Py_CLEAR(c->cpu_slab);
    Py_CLEAR(c->partial);
    Py_CLEAR(c->slab_of_pfn);
    Py_CLEAR(c->pure_alloc);
    Py_CLEAR(c->pure_free);
    Py_CLEAR(c->last_slab);
    Py_CLEAR(c->stat);
    Py_CLEAR(c->cpu_node);
    return 0;
}

static void
cache_dealloc(SlabCacheCore *c)
{
    PyObject_GC_UnTrack(c);
    cache_clear(c);
    Py_CLEAR(c->move_to_end);
    if (c->fast)
        PyBuffer_Release(&c->fast_view);
    if (c->pcs)
        PyBuffer_Release(&c->pcs_view);
    if (c->own_lock)
        PyThread_free_lock(c->own_lock);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int
cache_init(SlabCacheCore *c, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"kind", "slab_type", "cpu_slab", "partial", "slab_of_pfn",
                               "size", "page_shift", "nr_cpus", "fast", "thread_safe",
                               "pure_alloc", "pure_free", "pcs", "slow_free", "cpu_node",
                               NULL};
    /* every argument but cpu_node is required: checked below (a format string cannot put
     * optional keyword-only arguments after required ones) */
    const char *kind = NULL;
    PyObject *slab_type = NULL, *cpu_slab = NULL, *partial = NULL, *slab_of_pfn = NULL;
    PyObject *fast = NULL, *pa = NULL, *pf = NULL, *pcs = NULL;
    PyObject *slow_free = NULL, *cpu_node = NULL;
    long long size = LLONG_MIN;
    int page_shift = INT_MIN, thread_safe = INT_MIN;
    long nr_cpus = LONG_MIN;
    if (c->fast != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a SlabCacheCore is initialised once");
        return -1;
    }
    /* A failed init may have set the slow free's stat list: kept, an init without slow_free
     * would run the slow free anyway (it runs whenever c->stat is set), on that list and with
     * the failed init's member offsets. */
    Py_CLEAR(c->stat);
    if (!kmem_slab_fast_paths) {
        PyErr_SetString(PyExc_RuntimeError, "array.array is not laid out as the core expects");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$sOOOOLilOpOOOOO", keywords, &kind,
                                     &slab_type, &cpu_slab, &partial, &slab_of_pfn, &size,
                                     &page_shift, &nr_cpus, &fast, &thread_safe, &pa, &pf, &pcs,
                                     &slow_free, &cpu_node))
        return -1;
    if (kind == NULL || slab_type == NULL || cpu_slab == NULL || partial == NULL ||
        slab_of_pfn == NULL || fast == NULL || pa == NULL || pf == NULL || pcs == NULL ||
        slow_free == NULL || size == LLONG_MIN || page_shift == INT_MIN ||
        thread_safe == INT_MIN || nr_cpus == LONG_MIN) {
        PyErr_SetString(PyExc_TypeError, "SlabCacheCore() takes every keyword argument but"
                                         " cpu_node");
        return -1;
    }
    Py_CLEAR(c->cpu_node);
    if (cpu_node != NULL && cpu_node != Py_None) {
        if (!PyList_CheckExact(cpu_node) || strcmp(kind, "sheaf") != 0) {
            PyErr_SetString(PyExc_ValueError, "cpu_node is a list, for kind 'sheaf'");
            return -1;
        }
        if ((c->off_node = slot_offset(slab_type, "node")) < 0)
            return -1;
        c->cpu_node = Py_NewRef(cpu_node);
    }
    if (strcmp(kind, "slub") == 0)
        c->kind = SLUB;
    else if (strcmp(kind, "classic") == 0)
        c->kind = CLASSIC;
    else if (strcmp(kind, "sheaf") == 0)
        c->kind = SHEAF;
    else {
        PyErr_SetString(PyExc_ValueError, "kind is 'slub', 'classic' or 'sheaf'");
        return -1;
    }
    if (pcs == Py_None)
        pcs = NULL;
    if ((c->kind == SHEAF) != (pcs != NULL)) {
        PyErr_SetString(PyExc_ValueError, "pcs is given for kind 'sheaf' only, and needed there");
        return -1;
    }
    if (!PyDict_Check(slab_of_pfn) || (c->kind != CLASSIC && !PyDict_Check(cpu_slab)) ||
        (c->kind == CLASSIC && !PyDict_Check(partial)) || size < 1 || page_shift < 0 ||
        page_shift > 40 || nr_cpus < 1) {
        PyErr_SetString(PyExc_ValueError, "SlabCacheCore: bad lists or geometry");
        return -1;
    }
    if (slow_free != NULL && slow_free != Py_None) {
        /* (stat list, FREE_SLOWPATH, FREE_FROZEN, ON_CPU, ON_CPU_PARTIAL, ON_NODE_PARTIAL) */
        PyObject *stat;
        if (strcmp(kind, "slub") != 0 ||
            !PyArg_ParseTuple(slow_free, "O!nnlll;slow_free: (stat, 2 indices, 3 ON_ values)",
                              &PyList_Type, &stat, &c->stat_slowpath, &c->stat_frozen,
                              &c->on_cpu, &c->on_cpu_partial, &c->on_node_partial)) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "slow_free is for kind 'slub'");
            return -1;
        }
        if (c->stat_slowpath < 0 || c->stat_slowpath >= PyList_GET_SIZE(stat) ||
            c->stat_frozen < 0 || c->stat_frozen >= PyList_GET_SIZE(stat)) {
            PyErr_SetString(PyExc_ValueError, "slow_free: a counter index out of range");
            return -1;
        }
        if ((c->off_where = slot_offset(slab_type, "where")) < 0 ||
            (c->off_remote = slot_offset(slab_type, "remote")) < 0)
            return -1;
        c->stat = Py_NewRef(stat);
    }
    if ((c->off_freelist = slot_offset(slab_type, "freelist")) < 0 ||
        (c->off_used = slot_offset(slab_type, "used")) < 0 ||
        (c->off_base = slot_offset(slab_type, "base")) < 0 ||
        (c->off_objects = slot_offset(slab_type, "objects")) < 0 ||
        (c->off_pfmemalloc = slot_offset(slab_type, "pfmemalloc")) < 0)
        return -1;
    if (kmem_get_buffer(fast, &c->fast_view, 8, "fast") < 0)
        return -1;
    c->fast = c->fast_view.buf;
    if (c->fast_view.len < 16) {
        PyErr_SetString(PyExc_ValueError, "fast: two counters expected");
        return -1;
    }
    if (pcs != NULL) {
        if (kmem_get_buffer(pcs, &c->pcs_view, 8, "pcs") < 0)
            return -1;
        c->pcs = c->pcs_view.buf;
        if (c->pcs_view.len < 24) {
            PyErr_SetString(PyExc_ValueError, "pcs: two counters and the capacity expected");
            return -1;
        }
    }
    c->move_to_end = PyUnicode_InternFromString("move_to_end");
    c->own_lock = PyThread_allocate_lock();
    if (c->move_to_end == NULL || c->own_lock == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->lock = thread_safe ? c->own_lock : NULL;
    c->size = size;
    c->page_shift = page_shift;
    c->nr_cpus = nr_cpus;
    Py_INCREF(cpu_slab);
    c->cpu_slab = cpu_slab;
    Py_INCREF(partial);
    c->partial = partial;
    Py_INCREF(slab_of_pfn);
    c->slab_of_pfn = slab_of_pfn;
    Py_INCREF(pa);
    c->pure_alloc = pa;
    Py_INCREF(pf);
    c->pure_free = pf;
    return 0;
}

static PyMethodDef cache_methods[] = {
    {"alloc", (PyCFunction)(void (*)(void))cache_alloc, METH_FASTCALL | METH_KEYWORDS,
     "alloc(cpu=0) -> address, as the cache's alloc"},
    {"free", (PyCFunction)(void (*)(void))cache_free, METH_FASTCALL | METH_KEYWORDS,
     "free(address, cpu=0), as the cache's free"},
    {"acquire", (PyCFunction)cache_acquire, METH_NOARGS, "take the cache lock"},
    {"release", (PyCFunction)cache_release, METH_NOARGS, "drop the cache lock"},
    {"__enter__", (PyCFunction)cache_acquire, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))cache_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

PyTypeObject kmem_SlabCacheCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.SlabCacheCore",
    .tp_doc = "The compiled fast paths of one slab cache, over its own lists and slabs.",
    .tp_basicsize = sizeof(SlabCacheCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)cache_init,
    .tp_dealloc = (destructor)cache_dealloc,
    .tp_traverse = (traverseproc)cache_traverse,
    .tp_clear = (inquiry)cache_clear,
    .tp_methods = cache_methods,
};

/* -- kmalloc ------------------------------------------------------------------------------ */

/* The kmalloc families, in the order of the tables KmallocFrontEnd passes (its kmalloc_type
 * values: KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_DMA, KMALLOC_CGROUP). */
enum { NR_FAMILIES = 4 };

typedef struct {
    PyObject_HEAD
    PyObject *allocs;      /* per family a list: size -> the alloc of its kmalloc cache */
    PyObject *caches;      /* per family a list: size -> the cache (object_size, __GFP_ZERO) */
    PyObject *frees_by_id; /* list: cache id -> the cache's free, or None */
    Py_buffer requests_view[NR_FAMILIES], owner_view;
    int64_t *requests[NR_FAMILIES]; /* per family, kmalloc calls per requested size */
    uint32_t *owner;       /* mem_map.owner */
    Py_ssize_t nr_pages, max_size;
    unsigned long long not_normal, gfp_dma, gfp_reclaimable, gfp_zero;
    int family_of[NR_FAMILIES]; /* index of normal, reclaim, dma, cgroup in the tables */
    int page_shift;
    PyObject *zero, *gfp_kernel;
    PyObject *memory;      /* the PhysicalMemory: its _buffer, read at each zeroing */
    PyObject *buffer_name, *object_size_name;
    PyObject *zero_object; /* KmallocFrontEnd._zero_object(address, cache): the reference */
    PyObject *pure_kmalloc, *pure_kfree;
} KmallocCore;

/* __GFP_ZERO: the object's object_size bytes set to 0, in place through the memory's buffer;
 * whatever that cannot do (a closed memory, an odd attribute) goes to _zero_object, which
 * does the same or raises what the pure kmalloc raises. 0, or -1 with an exception. */
static int
zero_object(KmallocCore *k, PyObject *cache, PyObject *address_obj)
{
    long long address = PyLong_AsLongLong(address_obj);
    PyObject *size_obj = address < 0 ? NULL : PyObject_GetAttr(cache, k->object_size_name);
    long long n = size_obj != NULL && PyLong_CheckExact(size_obj) ?
        PyLong_AsLongLong(size_obj) : -1;
    Py_XDECREF(size_obj);
    PyObject *buffer = n >= 0 ? PyObject_GetAttr(k->memory, k->buffer_name) : NULL;
    if (buffer != NULL) {
        Py_buffer view;
        int got = PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE) == 0;
        Py_DECREF(buffer);
        if (got) {
            int inside = n <= view.len && address <= view.len - n;
            if (inside)
                memset((char *)view.buf + address, 0, (size_t)n);
            PyBuffer_Release(&view);
            if (inside)
                return 0;
        }
    }
    PyErr_Clear();
    PyObject *done = PyObject_CallFunctionObjArgs(k->zero_object, address_obj, cache, NULL);
    Py_XDECREF(done);
    return done ? 0 : -1;
}

static PyObject *
kmalloc_kmalloc(KmallocCore *k, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && nargs >= 1 && nargs <= 3 && PyLong_CheckExact(args[0])) {
        int overflow;
        long long size = PyLong_AsLongLongAndOverflow(args[0], &overflow);
        unsigned long long gfp = 0;
        int plain = !overflow && size > 0 && size <= k->max_size;
        if (plain && nargs >= 2) {
            long long value = PyLong_CheckExact(args[1]) ?
                PyLong_AsLongLongAndOverflow(args[1], &overflow) : -1;
            plain = !overflow && value >= 0 && value <= 0xFFFFFFFFLL;
            gfp = (unsigned long long)value;
        } else if (plain) {
            gfp = PyLong_AsUnsignedLongLong(k->gfp_kernel); /* checked at init */
        }
        if (plain) {
            /* kmalloc_type */
            int family = !(gfp & k->not_normal) ? k->family_of[0] :
                         gfp & k->gfp_dma ? k->family_of[2] :
                         gfp & k->gfp_reclaimable ? k->family_of[1] : k->family_of[3];
            PyObject *alloc = PyList_GET_ITEM(PyList_GET_ITEM(k->allocs, family), size);
            PyObject *call[2] = {nargs == 3 ? args[2] : k->zero,
                                 nargs >= 2 ? args[1] : k->gfp_kernel};
            PyObject *address = PyObject_Vectorcall(alloc, call, 2, NULL);
            if (address == NULL)
                return NULL;
            k->requests[family][size] += 1;
            if (gfp & k->gfp_zero) {
                PyObject *cache = PyList_GET_ITEM(PyList_GET_ITEM(k->caches, family), size);
                if (zero_object(k, cache, address) < 0)
                    Py_CLEAR(address);
            }
            return address;
        }
    }
    return PyObject_Vectorcall(k->pure_kmalloc, args, (size_t)nargs, kwnames);
}

static PyObject *
kmalloc_kfree(KmallocCore *k, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (!kwnames && (nargs == 1 || nargs == 2) && PyLong_CheckExact(args[0])) {
        int overflow;
        long long address = PyLong_AsLongLongAndOverflow(args[0], &overflow);
        if (!overflow && address >= 0 && (address >> k->page_shift) < k->nr_pages) {
            uint32_t id = k->owner[address >> k->page_shift];
            if (id < (uint32_t)PyList_GET_SIZE(k->frees_by_id)) {
                PyObject *free = PyList_GET_ITEM(k->frees_by_id, id);
                if (free != Py_None) {
                    PyObject *call[2] = {args[0], nargs == 2 ? args[1] : k->zero};
                    return PyObject_Vectorcall(free, call, 2, NULL);
                }
            }
        }
    }
    return PyObject_Vectorcall(k->pure_kfree, args, (size_t)nargs, kwnames);
}

static int
kmalloc_traverse(KmallocCore *k, visitproc visit, void *arg)
{
    Py_VISIT(k->allocs);
    Py_VISIT(k->caches);
    Py_VISIT(k->frees_by_id);
    Py_VISIT(k->memory);
    Py_VISIT(k->zero_object);
    Py_VISIT(k->pure_kmalloc);
    Py_VISIT(k->pure_kfree);
    return 0;
}

static int
kmalloc_clear(KmallocCore *k)
{
    Py_CLEAR(k->allocs);
    Py_CLEAR(k->caches);
    Py_CLEAR(k->frees_by_id);
    Py_CLEAR(k->memory);
    Py_CLEAR(k->zero_object);
    Py_CLEAR(k->pure_kmalloc);
    Py_CLEAR(k->pure_kfree);
    return 0;
}

static void
kmalloc_dealloc(KmallocCore *k)
{
    PyObject_GC_UnTrack(k);
    kmalloc_clear(k);
    Py_CLEAR(k->zero);
    Py_CLEAR(k->gfp_kernel);
    Py_CLEAR(k->buffer_name);
    Py_CLEAR(k->object_size_name);
    for (int i = 0; i < NR_FAMILIES; i++)
        if (k->requests[i])
            PyBuffer_Release(&k->requests_view[i]);
    if (k->owner)
        PyBuffer_Release(&k->owner_view);
    Py_TYPE(k)->tp_free((PyObject *)k);
}

/* A list of NR_FAMILIES lists of `size` items each. */
static int
family_tables(PyObject *tables, Py_ssize_t size)
{
    if (!PyList_CheckExact(tables) || PyList_GET_SIZE(tables) != NR_FAMILIES)
        return 0;
    for (int i = 0; i < NR_FAMILIES; i++) {
        PyObject *table = PyList_GET_ITEM(tables, i);
        if (!PyList_CheckExact(table) || PyList_GET_SIZE(table) != size)
            return 0;
    }
    return 1;
}

/* A failed init lets go of the request arrays it took: held, their owners could never be
 * resized ("cannot resize an array that is exporting buffers"), and a second init would take
 * them again over the first views. */
static int
kmalloc_init_failed(KmallocCore *k)
{
    for (int i = 0; i < NR_FAMILIES; i++)
        if (k->requests[i]) {
            PyBuffer_Release(&k->requests_view[i]);
            k->requests[i] = NULL;
        }
    return -1;
}

static int
kmalloc_init(KmallocCore *k, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"allocs", "caches", "frees_by_id", "requests", "owner",
                               "page_shift", "families", "gfp_bits", "gfp_kernel", "memory",
                               "zero_object", "pure_kmalloc", "pure_kfree", NULL};
    PyObject *allocs, *caches, *frees, *requests, *owner, *gfp_kernel, *memory, *zo, *pk, *pf;
    int page_shift, families[NR_FAMILIES];
    unsigned long long dma, reclaimable, account, zero;
    if (k->owner != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a KmallocCore is initialised once");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOOi(iiii)(KKKK)OOOOO", keywords,
                                     &allocs, &caches, &frees, &requests, &owner, &page_shift,
                                     &families[0], &families[1], &families[2], &families[3],
                                     &dma, &reclaimable, &account, &zero, &gfp_kernel, &memory,
                                     &zo, &pk, &pf))
        return -1;
    Py_ssize_t tables = PyList_CheckExact(allocs) && PyList_GET_SIZE(allocs) == NR_FAMILIES &&
        PyList_CheckExact(PyList_GET_ITEM(allocs, 0)) ?
        PyList_GET_SIZE(PyList_GET_ITEM(allocs, 0)) : 0;
    int seen = 0;
    for (int i = 0; i < NR_FAMILIES; i++)
        if (families[i] >= 0 && families[i] < NR_FAMILIES)
            seen |= 1 << families[i];
    if (tables < 2 || !family_tables(allocs, tables) || !family_tables(caches, tables) ||
        !PyList_CheckExact(frees) || !PyList_CheckExact(requests) ||
        PyList_GET_SIZE(requests) != NR_FAMILIES || page_shift < 0 || page_shift > 40 ||
        seen != (1 << NR_FAMILIES) - 1) {
        PyErr_SetString(PyExc_ValueError, "KmallocCore: allocs and caches are one list per"
                        " family, frees_by_id a list, families a permutation");
        return -1;
    }
    int overflow;
    long long kernel = PyLong_CheckExact(gfp_kernel) ?
        PyLong_AsLongLongAndOverflow(gfp_kernel, &overflow) : -1;
    if (kernel < 0 || kernel > 0xFFFFFFFFLL || overflow) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "KmallocCore: gfp_kernel is a gfp_t int");
        return -1;
    }
    k->max_size = tables - 1;
    for (int i = 0; i < NR_FAMILIES; i++) {
        if (kmem_get_buffer(PyList_GET_ITEM(requests, i), &k->requests_view[i], 8,
                            "requests") < 0)
            return kmalloc_init_failed(k);
        k->requests[i] = k->requests_view[i].buf;
        if (k->requests_view[i].len / 8 <= k->max_size) {
            PyErr_SetString(PyExc_ValueError, "KmallocCore: a request count per size expected");
            return kmalloc_init_failed(k);
        }
    }
    if (kmem_get_buffer(owner, &k->owner_view, 4, "owner") < 0)
        return kmalloc_init_failed(k);
    k->owner = k->owner_view.buf;
    k->nr_pages = k->owner_view.len / 4;
    k->page_shift = page_shift;
    for (int i = 0; i < NR_FAMILIES; i++)
        k->family_of[i] = families[i];
    k->not_normal = dma | reclaimable | account;
    k->gfp_dma = dma;
    k->gfp_reclaimable = reclaimable;
    k->gfp_zero = zero;
    k->zero = PyLong_FromLong(0);
    k->buffer_name = PyUnicode_InternFromString("_buffer");
    k->object_size_name = PyUnicode_InternFromString("object_size");
    if (k->zero == NULL || k->buffer_name == NULL || k->object_size_name == NULL)
        return -1;
    k->gfp_kernel = Py_NewRef(gfp_kernel);
    k->allocs = Py_NewRef(allocs);
    k->caches = Py_NewRef(caches);
    k->frees_by_id = Py_NewRef(frees);
    k->memory = Py_NewRef(memory);
    k->zero_object = Py_NewRef(zo);
    k->pure_kmalloc = Py_NewRef(pk);
    k->pure_kfree = Py_NewRef(pf);
    return 0;
}

static PyMethodDef kmalloc_methods[] = {
    {"kmalloc", (PyCFunction)(void (*)(void))kmalloc_kmalloc, METH_FASTCALL | METH_KEYWORDS,
     "kmalloc(size, gfp=GFP_KERNEL, cpu=0) -> address, as SlabAllocator.kmalloc"},
    {"kfree", (PyCFunction)(void (*)(void))kmalloc_kfree, METH_FASTCALL | METH_KEYWORDS,
     "kfree(address, cpu=0), as SlabAllocator.kfree"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject kmem_KmallocCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kmem._core.KmallocCore",
    .tp_doc = "The compiled kmalloc and kfree of one SlabAllocator.",
    .tp_basicsize = sizeof(KmallocCore),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)kmalloc_init,
    .tp_dealloc = (destructor)kmalloc_dealloc,
    .tp_traverse = (traverseproc)kmalloc_traverse,
    .tp_clear = (inquiry)kmalloc_clear,
    .tp_methods = kmalloc_methods,
};

/* -- slab_usage ------------------------------------------------------------------------------ */

/* KmemCache.slab_usage()'s rows: (pfn, objects a user holds, base, used as bytes) of each slab
 * of `slabs`: a list of Slab, as _slabs() gives them, or the cache's map of pfn -> Slab
 * (_slab_of_pfn, every page of a slab), whose slabs it takes once each by ascending pfn as
 * _slabs() does. A page builder reads every changed cache this way each frame, and the rows
 * (and the set and sort of the map) cost more in Python than the bytes they copy.
 * NotImplemented for anything but a list or dict of slabs with those slots set and `used` a
 * bytearray: the Python comprehension then does the work and raises what it raises. */

static PyTypeObject *usage_slab_type;
static Py_ssize_t usage_off_pfn, usage_off_base, usage_off_used;

/* Is `slab` a Slab this reads (its type's slot offsets learnt on the way, when `first`; else
 * it must be of the type learnt)? */
static int
usage_slab_ok(PyObject *slab, int first)
{
    if (!first && Py_TYPE(slab) != usage_slab_type)
        return 0;
    if (Py_TYPE(slab) != usage_slab_type) {
        PyObject *type = (PyObject *)Py_TYPE(slab);
        Py_ssize_t pfn = slot_offset(type, "pfn"), base = slot_offset(type, "base"),
                   used = slot_offset(type, "used");
        if (pfn < 0 || base < 0 || used < 0) {
            PyErr_Clear();
            return 0;
        }
        /* (held: a type freed and another made at its address would read wrong offsets) */
        Py_XSETREF(usage_slab_type, (PyTypeObject *)Py_NewRef(type));
        usage_off_pfn = pfn;
        usage_off_base = base;
        usage_off_used = used;
    }
    return SLOT(slab, usage_off_pfn) != NULL && SLOT(slab, usage_off_base) != NULL &&
           SLOT(slab, usage_off_used) != NULL &&
           PyByteArray_CheckExact(SLOT(slab, usage_off_used));
}

typedef struct {
    Py_ssize_t pfn;
    PyObject *slab;
} PfnSlab;

static int
by_pfn(const void *a, const void *b)
{
    const PfnSlab *x = a, *y = b;
    if (x->pfn != y->pfn)
        return x->pfn < y->pfn ? -1 : 1;
    /* (the pages of one slab side by side, to be taken once) */
    return x->slab == y->slab ? 0 : (uintptr_t)x->slab < (uintptr_t)y->slab ? -1 : 1;
}

/* The map's slabs once each by ascending pfn (a new list), NotImplemented, or NULL. */
static PyObject *
slabs_of_map(PyObject *map)
{
    Py_ssize_t n = PyDict_GET_SIZE(map), pos = 0, i = 0, kept = 0;
    PfnSlab *items = PyMem_Malloc(sizeof(PfnSlab) * (size_t)(n ? n : 1));
    if (items == NULL)
        return PyErr_NoMemory();
    PyObject *key, *slab;
    while (PyDict_Next(map, &pos, &key, &slab)) {
        PyObject *pfn;
        if (i >= n || !usage_slab_ok(slab, i == 0) ||
            !PyLong_CheckExact(pfn = SLOT(slab, usage_off_pfn))) {
            PyMem_Free(items);
            Py_RETURN_NOTIMPLEMENTED;
        }
        Py_ssize_t value = PyLong_AsSsize_t(pfn);
        if (value == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyMem_Free(items);
            Py_RETURN_NOTIMPLEMENTED;
        }
        if (i && items[i - 1].slab == slab)
            continue;  /* (a slab's pages go in the map one after another: taken once here) */
        items[i].pfn = value;
        items[i].slab = slab;
        i++;
    }
    n = i;
    int sorted = 1;
    for (i = 1; i < n && sorted; i++)
        sorted = by_pfn(&items[i - 1], &items[i]) < 0;
    if (!sorted)
        qsort(items, (size_t)n, sizeof(PfnSlab), by_pfn);
    for (i = 0; i < n; i++)
        if (i == 0 || items[i].slab != items[kept - 1].slab)
            items[kept++] = items[i];
    PyObject *slabs = PyList_New(kept);
    if (slabs != NULL)
        for (i = 0; i < kept; i++)
            PyList_SET_ITEM(slabs, i, Py_NewRef(items[i].slab));
    PyMem_Free(items);
    return slabs;
}

/* The row of `previous` (from *seen on, rows by ascending pfn) equal to the one `slab` would
 * make now (its used bytes, their `users`), or NULL. A previous row that is no such row
 * stops the search for good (*nr_previous = 0). */
static PyObject *
previous_row(PyObject *previous, Py_ssize_t *seen, Py_ssize_t *nr_previous, PyObject *slab,
             const char *bytes, Py_ssize_t size, Py_ssize_t users)
{
    PyObject *pfn = SLOT(slab, usage_off_pfn), *base = SLOT(slab, usage_off_base);
    if (*nr_previous == 0 || !PyLong_CheckExact(pfn) || !PyLong_CheckExact(base))
        return NULL;
    Py_ssize_t value = PyLong_AsSsize_t(pfn);
    if (value == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    while (*seen < *nr_previous) {
        PyObject *row = PyList_GET_ITEM(previous, *seen);
        Py_ssize_t before;
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 4 ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(row, 0)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(row, 1)) ||
            !PyLong_CheckExact(PyTuple_GET_ITEM(row, 2)) ||
            !PyBytes_CheckExact(PyTuple_GET_ITEM(row, 3)) ||
            ((before = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, 0))) == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            *nr_previous = 0;
            return NULL;
        }
        if (before < value) {
            (*seen)++;
            continue;
        }
        if (before > value)
            return NULL;
        PyObject *used = PyTuple_GET_ITEM(row, 3);
        Py_ssize_t count = PyLong_AsSsize_t(PyTuple_GET_ITEM(row, 1));
        if (count == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return NULL;
        }
        /* (exact ints compare without running Python code) */
        if (count != users || PyBytes_GET_SIZE(used) != size ||
            memcmp(PyBytes_AS_STRING(used), bytes, (size_t)size) != 0 ||
            PyObject_RichCompareBool(PyTuple_GET_ITEM(row, 2), base, Py_EQ) != 1)
            return NULL;
        return row;
    }
    return NULL;
}

PyObject *
kmem_slab_usage(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !(PyList_CheckExact(args[0]) || PyDict_CheckExact(args[0])))
        Py_RETURN_NOTIMPLEMENTED;
    /* (the rows this gave last time, by ascending pfn: a row that would be made again equal
     * is that very tuple, so comparing the rows with those, as the page builder does, and
     * hashing them are cheap, and nothing is allocated for a slab that did not change) */
    PyObject *previous = nargs == 2 && PyList_CheckExact(args[1]) ? args[1] : NULL;
    Py_ssize_t seen = 0, nr_previous = previous ? PyList_GET_SIZE(previous) : 0;
    PyObject *slabs;
    if (PyDict_CheckExact(args[0])) {
        slabs = slabs_of_map(args[0]);
        if (slabs == NULL || slabs == Py_NotImplemented)
            return slabs;
    } else {
        slabs = Py_NewRef(args[0]);
    }
    Py_ssize_t n = PyList_GET_SIZE(slabs);
    PyObject *rows = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {  /* checked first: nothing made for nothing */
        if (!usage_slab_ok(PyList_GET_ITEM(slabs, i), i == 0)) {
            Py_DECREF(slabs);
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    rows = PyList_New(n);
    if (rows == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *slab = PyList_GET_ITEM(slabs, i);
        PyObject *used = SLOT(slab, usage_off_used);
        const char *bytes = PyByteArray_AS_STRING(used);
        Py_ssize_t size = PyByteArray_GET_SIZE(used), users = 0;
        for (Py_ssize_t j = 0; j < size; j++)
            users += bytes[j] == 1;
        PyObject *same = previous_row(previous, &seen, &nr_previous, slab, bytes, size, users);
        if (same != NULL) {
            PyList_SET_ITEM(rows, i, Py_NewRef(same));
            continue;
        }
        PyObject *count = PyLong_FromSsize_t(users);
        PyObject *copy = PyBytes_FromStringAndSize(bytes, size);
        PyObject *row = count && copy ? PyTuple_Pack(4, SLOT(slab, usage_off_pfn), count,
                                                     SLOT(slab, usage_off_base), copy) : NULL;
        Py_XDECREF(count);
        Py_XDECREF(copy);
        if (row == NULL) {
            Py_CLEAR(rows);
            goto done;
        }
        PyList_SET_ITEM(rows, i, row);
    }
done:
    Py_DECREF(slabs);
    return rows;
}
