"""The page layer: physical memory, its page metadata, and the page allocator.

Owns: ``memory`` (page frames on real bytes: anonymous, file or shared memory), ``mem_map``
(per-frame metadata in flat columns), ``buddy`` (the buddy system of one zone: alloc_pages,
free_pages, split and merge), ``fragmentation`` (Linux's unusable and extfrag indices),
``gfp`` (the GFP flags every allocation carries) and ``size`` (sizes as people write them: 64M).

May import: kmem.errors and the standard library. Nothing above it (no slab, trace, show or
cli module), and never the ``kmem`` package's re-exports.
"""
