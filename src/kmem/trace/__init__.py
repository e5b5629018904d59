"""Reading and analysing real Linux kmem traces: parse, statistics (kmem stat), replay.

Modules: events (the event tuple layout), source (plain/gz/xz/stdin), parse (the streaming line
parser), pipeline (the parser in a second process), stat (perf kmem's statistics), replay (the
trace through kmem's own allocators), report (perf-layout text, JSON, rich tables, the plot).
"""

from kmem.trace.events import EVENT_NAMES, TraceEvent, event_name, event_time, pointer_value
from kmem.trace.parse import TraceFormatError, TraceParser, parse_trace
from kmem.trace.pipeline import ParserProcess
from kmem.trace.replay import Replayer, ReplayResult, ReplaySnapshot
from kmem.trace.source import TraceFileError, open_trace
from kmem.trace.stat import KmemStat, PageSummary, SlabSummary

__all__ = [
    "EVENT_NAMES",
    "KmemStat",
    "PageSummary",
    "ParserProcess",
    "ReplayResult",
    "ReplaySnapshot",
    "Replayer",
    "SlabSummary",
    "TraceEvent",
    "TraceFileError",
    "TraceFormatError",
    "TraceParser",
    "event_name",
    "event_time",
    "open_trace",
    "parse_trace",
    "pointer_value",
]
