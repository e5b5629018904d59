"""The trace layer: reading real Linux kmem traces, perf kmem's statistics, and replay.

Owns: ``events`` (the event tuple and batch layouts), ``source`` (plain, gzip, xz or standard
input), ``parse`` (the streaming line parser), ``pipeline`` (the parser in a second process),
``stat`` (perf kmem stat's statistics), ``replay`` (a trace through kmem's own allocators),
``report`` (perf-layout text, JSON and rich tables of stat and replay results), ``sweep_spec``
(sweep specs: traces × replay parameters, checked) and ``sweep`` (a sweep's runs on a process
pool or a Dask cluster, its results table and output folder).

May import: kmem.slab, kmem.page and kmem.errors. Nothing above it (no scenario, picture or
command module).
"""
