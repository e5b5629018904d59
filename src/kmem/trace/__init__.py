"""Reading and analysing real Linux kmem traces: parse, statistics (kmem stat), replay.

Modules: events (the event tuple layout), source (plain/gz/xz/stdin), parse (the streaming line
parser), stat (perf kmem's statistics), replay (the trace through kmem's own allocators),
report (rich and text output).
"""
