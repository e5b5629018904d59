"""The arena layer: kmem's buddy allocator, slab caches and kmalloc with all of their state
inside a file or shared memory segment, shared by processes and reopened intact.

Owns: ``arena`` (Arena, ArenaCache: the layout, the lock, the undo log, the allocators over
the mapped words, check()) and ``errors`` (what opening or using an arena refuses).

May import: kmem.slab, kmem.page and kmem.errors. Nothing above it.
"""
