/* kmem._core: the compiled core of kmem (see kmem_core.h for the design). */
#include "kmem_core.h"

/* stat.c: perf kmem's statistics over EventBatch columns (kmem.trace.stat.KmemStat). */
extern PyTypeObject kmem_StatCoreType;

static PyMethodDef core_functions[] = {
    {"replay_feed", (PyCFunction)(void (*)(void))kmem_replay_feed, METH_FASTCALL,
     "replay_feed(replayer, kinds, cpus, keys, tails, kmalloc, errors): Replayer._feed_events'"
     " loop over one batch (NotImplemented for columns that are not bytes and lists)"},
    {"parse_lines", (PyCFunction)(void (*)(void))kmem_parse_lines, METH_FASTCALL,
     "parse_lines(lines, size, first_number, event_kinds, call_sites, tails, slow, null_ptr,"
     " max_line[, watch]): TraceParser._read_batch's inline loop over up to `size` lines"},
    {"perf_samples", (PyCFunction)(void (*)(void))kmem_perf_samples, METH_FASTCALL,
     "perf_samples(view, pos, end, id_at, layouts, decoders, site_names, page_site_names,"
     " starts, alloc, window, pending, max_time[, cache]): PerfData._sample's loop over"
     " the sample records from pos on, up to the first it leaves to Python"},
    {"perf_cache", (PyCFunction)(void (*)(void))kmem_perf_cache, METH_FASTCALL,
     "perf_cache(): the memo slots perf_samples keeps between the calls of one reader (its"
     " optional 14th argument)"},
    {"perf_batch", (PyCFunction)(void (*)(void))kmem_perf_batch, METH_FASTCALL,
     "perf_batch(samples[, times]): PerfData._batch's columns (NotImplemented for other"
     " lists)"},
    {"kallsyms_table", (PyCFunction)(void (*)(void))kmem_kallsyms_table, METH_FASTCALL,
     "kallsyms_table(data): KernelSymbols' (starts, name spans) of a kallsyms text"
     " (NotImplemented for an address that is not plain hex)"},
    {"slab_usage", (PyCFunction)(void (*)(void))kmem_slab_usage, METH_FASTCALL,
     "slab_usage(slabs): KmemCache.slab_usage()'s rows of a list of slabs or of a cache's"
     " map of pfn -> slab (NotImplemented for anything else)"},
    {"changed_stretches", (PyCFunction)(void (*)(void))kmem_changed_stretches, METH_FASTCALL,
     "changed_stretches(before, now, nr_stretches, shift): the stretches whose bytes differ"
     " (kmem.show.snapshot._changed_stretches; NotImplemented for anything else)"},
    {"walk_blocks", (PyCFunction)(void (*)(void))kmem_walk_blocks, METH_FASTCALL,
     "walk_blocks(state, owner, start, end, labels, owner_labels, index, names, base): a"
     " stretch's flat blocks (kmem.show.snapshot._walk_blocks; NotImplemented for anything"
     " else)"},
    {"count_event_lines", (PyCFunction)(void (*)(void))kmem_count_event_lines, METH_FASTCALL,
     "count_event_lines(chunk): a trace chunk's newlines less its \"\\n\\t\" and \"\\n\\n\" pairs"
     " (kmem.show.snapshot._count_lines; NotImplemented for what is no buffer of bytes)"},
    {"slab_rows", (PyCFunction)(void (*)(void))kmem_slab_rows, METH_FASTCALL,
     "slab_rows(rows, before, rows_now, total, page_size, chars, listed, max_bits): a cache"
     " entry's slab rows and counts (kmem.show.snapshot._slab_rows; NotImplemented for"
     " anything else)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "kmem._core",
    .m_methods = core_functions,
    .m_doc = "kmem's compiled hot paths, over the buffers of the pure-Python classes.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    if (PyType_Ready(&kmem_BuddyZoneType) < 0 || PyType_Ready(&kmem_SlabCacheCoreType) < 0 ||
        PyType_Ready(&kmem_KmallocCoreType) < 0 || kmem_array_layout_ok() < 0 ||
        kmem_arena_init() < 0 || kmem_pcp_init() < 0 ||
        PyType_Ready(&kmem_PcpCoreType) < 0)
        return NULL;
    if (PyType_Ready(&kmem_StatCoreType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&core_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "StatCore", (PyObject *)&kmem_StatCoreType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "BuddyZone", (PyObject *)&kmem_BuddyZoneType) < 0 ||
        PyModule_AddObjectRef(module, "SlabCacheCore", (PyObject *)&kmem_SlabCacheCoreType) < 0 ||
        PyModule_AddObjectRef(module, "KmallocCore", (PyObject *)&kmem_KmallocCoreType) < 0 ||
        PyModule_AddObjectRef(module, "ArenaCore", (PyObject *)&kmem_ArenaCoreType) < 0 ||
        PyModule_AddObjectRef(module, "PcpCore", (PyObject *)&kmem_PcpCoreType) < 0 ||
        PyModule_AddObjectRef(module, "SLAB_FAST_PATHS",
                              kmem_slab_fast_paths ? Py_True : Py_False) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
