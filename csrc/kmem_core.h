/* kmem's compiled core: shared declarations.
 *
 * The core runs kmem's hot paths over buffers that the Python classes own (the mem_map
 * columns, the counters): it never keeps state of its own that Python cannot see. Each fast
 * path handles only the common, valid case; anything else (a bad argument, an exhausted
 * list, a bad free) is handed, before any state changes, to the pure-Python method it stands
 * in for, which raises the same error with the same message (or, for an __index__ type,
 * converts the argument and comes back). So the pure code is the one reference for every
 * rule and every error, and the core only has to reproduce the state changes of the common
 * path exactly. The lockstep tests (tests/test_core_lockstep.py) check that they agree.
 *
 * Locking: a core object that guards state carries one lock (PyThread_type_lock). Python slow
 * paths take it through the object's acquire/release and context-manager methods, which also
 * mark it held; a fast path waits for it (with the GIL released) only while it is held, and
 * otherwise runs without lock operations, atomic under the GIL (kmem_fast_lock; a
 * free-threaded build takes the lock on every fast path). Callbacks into Python always run with the lock released. This
 * keeps the operations atomic under the GIL and stays correct on a free-threaded build.
 */
#ifndef KMEM_CORE_H
#define KMEM_CORE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* The mem_map's frame states (kmem/page/mem_map.py). */
#define KMEM_FREE 0x40
#define KMEM_ALLOCATED 0x80
#define KMEM_RESERVED 0x20
#define KMEM_BEYOND 0xFF
#define KMEM_ORDER_MASK 0x1F
#define KMEM_KIND_MASK 0xE0

extern PyTypeObject kmem_BuddyZoneType;
extern PyTypeObject kmem_SlabCacheCoreType;
extern PyTypeObject kmem_KmallocCoreType;
extern PyTypeObject kmem_ArenaCoreType;
extern PyTypeObject kmem_PcpCoreType;

/* pcp.c: interns the attribute names PcpCore's fast paths read. */
int kmem_pcp_init(void);

/* arena.c: readies ArenaCore and the pid cache its lock records. */
int kmem_arena_init(void);

/* slab.c: checks array.array's layout once; the slab fast paths run only if it matched. */
int kmem_array_layout_ok(void);
extern int kmem_slab_fast_paths;

/* replay.c, parse.c */
PyObject *kmem_parse_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_replay_feed(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* perf_data.c */
PyObject *kmem_perf_samples(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_perf_cache(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_perf_batch(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_kallsyms_table(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* slab.c */
PyObject *kmem_slab_usage(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
/* frames.c */
PyObject *kmem_changed_stretches(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_walk_blocks(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_count_event_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
PyObject *kmem_slab_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* Take and drop a core lock (NULL: the object is not thread-safe). */
static inline void kmem_lock(PyThread_type_lock lock)
{
    if (lock != NULL && !PyThread_acquire_lock(lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static inline void kmem_unlock(PyThread_type_lock lock)
{
    if (lock != NULL)
        PyThread_release_lock(lock);
}

/* A fast path's share of the lock. Under the GIL a fast path runs to its end without releasing
 * the GIL or running Python code, so no other thread can interleave with it: it needs the lock
 * only while a Python path holds it (`held`, which the object's acquire sets and its release
 * clears), and then waits for it. That keeps the uncontended fast path free of lock operations
 * (two atomic operations a call, a third of a SLUB pair). A free-threaded build always takes
 * the lock. Returns whether it took it, for kmem_fast_unlock. */
static inline int kmem_fast_lock(PyThread_type_lock lock, int held)
{
#ifdef Py_GIL_DISABLED
    (void)held;
    kmem_lock(lock);
    return lock != NULL;
#else
    if (lock == NULL || !held)
        return 0;
    kmem_lock(lock);
    return 1;
#endif
}

static inline void kmem_fast_unlock(PyThread_type_lock lock, int locked)
{
    if (locked)
        PyThread_release_lock(lock);
}

/* A writable, C-contiguous buffer of items of `itemsize` bytes, or an exception. */
int kmem_get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *what);

#endif
