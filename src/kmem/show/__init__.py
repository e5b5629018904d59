"""What shows kmem to people: the scenario language, explanations, pictures and the page.

Owns: ``scenario`` (the scenario language and its runner), ``explain`` (a buddy step in words),
``memory_map`` (memory as a coloured terminal map), ``demo`` (the seed example, step by step),
``workload`` (the built-in slab workload of slabinfo/slabtop), ``snapshot`` (the JSON frames
the page and the plots draw), ``html_page`` and ``web/`` (the self-contained replay page),
``plot`` (matplotlib pictures; matplotlib is imported only here) and ``sweep_report`` (a
sweep's rankings, heat map and timelines as an HTML page and PNGs).

May import: kmem.trace, kmem.slab, kmem.page and kmem.errors. Nothing above it (kmem.cli).
"""
