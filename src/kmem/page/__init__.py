"""The page layer: physical memory, its page metadata, and the page allocator.

Owns: ``memory`` (page frames on real bytes: anonymous, file or shared memory), ``mem_map``
(per-frame metadata in flat columns, and the list primitives), ``buddy`` (the buddy system of
one zone: alloc_pages, free_pages, split and merge), ``fragmentation`` (Linux's unusable and
extfrag indices), ``gfp`` (the GFP flags every allocation carries), ``size`` (sizes as people
write them: 64M), and the page machine of Linux 6.18: ``layout`` (zones of a machine, from sizes
or a /proc/zoneinfo), ``migratetype`` (migratetypes, pageblocks, zone types,
gfp_migratetype/gfp_zone), ``watermarks`` (min_free_kbytes, watermarks, lowmem_reserve, pcp
sizes, alloc flags), ``zone`` (free lists per order and migratetype, fallback, highatomic),
``pcp`` (per-CPU page lists), ``machine`` (PageMachine: alloc_pages/free_pages through zonelist,
watermarks and pcp), ``vmstat`` (/proc/buddyinfo, pagetypeinfo, zoneinfo) and ``errors`` (its
error classes).

May import: kmem.errors and the standard library. Nothing above it (no slab, trace, show or
cli module), and never the ``kmem`` package's re-exports.
"""
