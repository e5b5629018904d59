"""Events a trace lost, and where: never silent about them.

A trace that lost events misleads every number read from it: an object allocated in a lost
stretch and freed later is a free of an unknown pointer; one allocated before and freed in it
stays outstanding. Where the losses are told:

- ftrace's ``trace`` file header: ``# entries-in-buffer/entries-written: A/B`` (B - A events were
  overwritten in the ring buffer: the oldest ones, before each CPU's ``##### CPU N buffer started
  ####`` marker);
- per-CPU markers in ``trace_pipe`` and ``trace`` reads while tracing: ``CPU:N [LOST M EVENTS]``
  (or ``CPU:N [LOST EVENTS]`` when the kernel could not count them; kernel/trace/trace.c), and
  trace-cmd report's ``CPU:N [M EVENTS DROPPED]``;
- perf.data's PERF_RECORD_LOST records (the ring buffer of a CPU was full: count, CPU, time) and
  PERF_RECORD_LOST_SAMPLES (perf record adds one per event at the end, counting the same losses
  per event: they are reported, not added again to the LOST records' total).

watch_lines() passes trace text through unchanged while it notes these lines (a prefix test per
line; LostWatch is its reading of one line, for readers that skip the lines it cannot care
about: kmem.trace.parse's compiled loop); LostEvents holds what was found and says it in text
and JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

_ENTRIES: Final = re.compile(r"#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)")
_STARTED: Final = re.compile(r"#+\s*CPU\s+(\d+)\s+buffer started")
_LOST: Final = re.compile(r"CPU:(\d+)\s+\[(?:LOST\s+(\d+)\s+EVENTS|LOST EVENTS|(\d+)\s+EVENTS"
                          r" DROPPED)\]")
_TIME: Final = re.compile(r"\s(\d+\.\d+):\s")


@dataclass(frozen=True, slots=True)
class LostStretch:
    """One place a trace lost events: the CPU, the count (-1: not counted), the time of the
    first event after the gap (-1.0 if none followed), and what told it."""

    cpu: int
    count: int
    time: float
    what: str  # "LOST marker", "buffer started", "PERF_RECORD_LOST", "PERF_RECORD_LOST_SAMPLES"

    def to_json(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "count": self.count, "time": self.time, "what": self.what}


@dataclass(slots=True)
class LostEvents:
    """What a trace lost. ``total`` is the number of lost events known (-1 parts excluded)."""

    entries_in_buffer: int = -1  # ftrace header; -1 when the trace has none
    entries_written: int = -1
    stretches: list[LostStretch] = field(default_factory=list)
    per_event: dict[str, int] = field(default_factory=dict)  # perf LOST_SAMPLES, by event
    uncounted: int = 0  # markers that say events were lost but not how many

    @property
    def overwritten(self) -> int:
        """Events ftrace's ring buffer overwrote (entries-written - entries-in-buffer)."""
        if self.entries_written < 0:
            return 0
        return max(self.entries_written - self.entries_in_buffer, 0)

    @property
    def total(self) -> int:
        marked = sum(s.count for s in self.stretches
                     if s.count > 0 and s.what in ("LOST marker", "PERF_RECORD_LOST"))
        if not marked and self.per_event:
            marked = sum(self.per_event.values())
        return self.overwritten + marked

    @property
    def any(self) -> bool:
        return self.total > 0 or self.uncounted > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "uncounted_gaps": self.uncounted,
            "entries_in_buffer": self.entries_in_buffer,
            "entries_written": self.entries_written,
            "overwritten": self.overwritten,
            "per_event": dict(self.per_event),
            "stretches": [s.to_json() for s in self.stretches],
        }

    def describe(self, events: int, unknown_frees: int = -1, free_only_pages: int = -1,
                 limit: int = 10) -> str:
        """A few lines for the report: how many were lost, where, and what that does to it."""
        if not self.any:
            return ""
        total = self.total
        share = f" ({100 * total / (total + events):.1f}% of {total + events})" if total else ""
        out = [f"LOST EVENTS: {total}{share} events were lost while recording"
               + (f", plus {self.uncounted} gaps of unknown size" if self.uncounted else "")
               + "."]
        if self.overwritten:
            out.append(f"  ftrace ring buffer overwrote the oldest {self.overwritten} of"
                       f" {self.entries_written} events written (entries-in-buffer"
                       f" {self.entries_in_buffer}): a larger buffer_size_kb keeps them")
        for stretch in self.stretches[:limit]:
            count = "?" if stretch.count < 0 else str(stretch.count)
            time = "the end" if stretch.time < 0 else f"{stretch.time:.6f}"
            if stretch.what == "buffer started":
                out.append(f"  CPU {stretch.cpu}: kept events start at {time} (older ones"
                           " overwritten)")
            else:
                out.append(f"  CPU {stretch.cpu}: {count} lost before {time} ({stretch.what})")
        if len(self.stretches) > limit:
            out.append(f"  ... {len(self.stretches) - limit} more (--json lists them all)")
        for name, lost_samples in sorted(self.per_event.items()):
            out.append(f"  {name}: {lost_samples} samples lost")
        effects = []
        if unknown_frees > 0:
            effects.append(f"{unknown_frees} slab frees of pointers never seen allocated")
        if free_only_pages > 0:
            effects.append(f"{free_only_pages} page frees of pages never seen allocated")
        if effects:
            out.append("  This explains " + " and ".join(effects) + " (their allocations were"
                       " among the lost events); allocations freed in lost stretches stay"
                       " outstanding.")
        else:
            out.append("  Frees of objects allocated in lost stretches count as frees of"
                       " unknown pointers; allocations freed there stay outstanding.")
        return "\n".join(out) + "\n"


class LostWatch:
    """The per-line reading of watch_lines(), for a reader that shows it only the lines that
    can matter: ``see(line)`` notes what ``line`` tells and says whether the next line must be
    seen too, whatever it is (a marker waits for the time of the event after it); a line
    starting with neither "#" nor "CPU:" is a no-op while it says no. ``finish()`` at the
    end of the lines."""

    __slots__ = ("lost", "waiting")

    def __init__(self, lost: LostEvents) -> None:
        self.lost = lost
        self.waiting: list[tuple[int, int, str]] = []  # markers waiting for the next time

    def see(self, line: str) -> bool:
        """Note what ``line`` tells; whether the next line must be seen too."""
        lost, waiting = self.lost, self.waiting
        first = line[:1]
        if first == "#" or first == "C":
            if first == "#":
                match = _ENTRIES.match(line)
                if match:
                    lost.entries_in_buffer = int(match[1])
                    lost.entries_written = int(match[2])
                    return bool(waiting)
                match = _STARTED.match(line)
                if match:
                    waiting.append((int(match[1]), 0, "buffer started"))
            elif line.startswith("CPU:"):
                match = _LOST.match(line)
                if match:
                    count = match[2] or match[3]
                    if count is None:
                        lost.uncounted += 1
                    waiting.append((int(match[1]), int(count) if count else -1,
                                    "LOST marker"))
        elif waiting:
            match = _TIME.search(line)
            if match:
                time = float(match[1])
                lost.stretches.extend(LostStretch(cpu, count, time, what)
                                      for cpu, count, what in waiting)
                waiting.clear()
        return bool(waiting)

    def finish(self) -> None:
        """The end of the lines: markers still waiting had no event after them."""
        self.lost.stretches.extend(LostStretch(cpu, count, -1.0, what)
                                   for cpu, count, what in self.waiting)
        self.waiting.clear()


def watch_lines(lines: Iterable[str], lost: LostEvents) -> Iterator[str]:
    """``lines`` unchanged, noting in ``lost`` the header and markers that tell of lost events."""
    watch = LostWatch(lost)
    see = watch.see
    for line in lines:
        see(line)
        yield line
    watch.finish()


__all__ = ["LostEvents", "LostStretch", "LostWatch", "watch_lines"]
