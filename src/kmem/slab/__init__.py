"""The slab layer: object caches on slabs of buddy pages, and kmalloc on those caches.

Owns: ``flags`` (SLAB_* flags), ``geometry`` (a cache's layout as calculate_sizes and
calculate_order compute it), ``merge`` (find_mergeable), ``slabs`` (one slab's state),
``stats`` (counters and slabinfo records), ``errors``, ``debug`` (red zones, poison, caller
tracking), ``cache`` (what every cache shares), ``slub`` and ``classic`` (the two policies),
``kmalloc_sizes`` and ``kmalloc`` (the kmalloc front end), ``allocator`` (SlabAllocator: the
caches and kmalloc together) and ``report`` (/proc/slabinfo, slabtop and sysfs views).

May import: kmem.page and kmem.errors. Nothing above it.
"""
