"""The page machine's errors: each bad input it refuses has its own KmemError subclass.

As everywhere in kmem, an error is raised before anything changes: the machine, its zones and
its per-CPU lists are left exactly as they were.
"""

from __future__ import annotations

from kmem.errors import InvalidArgumentError, InvalidFreeError, KmemError


class UnknownZoneError(InvalidArgumentError):
    """A zone name that is not one of Linux's zone types (DMA, DMA32, Normal, Movable, Device),
    or a zone this machine does not have."""


class LayoutOverlapError(InvalidArgumentError):
    """Two zones of a machine layout cover the same page frames, or are out of order."""


class NoManagedPagesError(InvalidArgumentError):
    """A machine layout whose zones have no managed pages at all: nothing to allocate."""


class InvalidLayoutError(InvalidArgumentError):
    """A zone description that cannot be: managed > present > spanned, a negative start, ..."""


class ZoneinfoFormatError(InvalidArgumentError):
    """A /proc/zoneinfo text kmem cannot read; the message names the source and line."""

    def __init__(self, source: str, line_number: int, reason: str) -> None:
        super().__init__(f"{source}:{line_number}: {reason}")
        self.source = source
        self.line_number = line_number
        self.reason = reason

    def __reduce__(self) -> tuple[type[ZoneinfoFormatError], tuple[str, int, str]]:
        return (type(self), (self.source, self.line_number, self.reason))


class PfnNotInZoneError(InvalidFreeError):
    """A pfn that lies in no zone of the machine (a hole, or past the end)."""


class NoSuchCpuError(InvalidArgumentError):
    """A CPU number outside 0..nr_cpus-1."""


class NoMigratetypeError(InvalidArgumentError):
    """GFP flags that name no migratetype: __GFP_MOVABLE and __GFP_RECLAIMABLE together."""


class NoZoneForGfpError(InvalidArgumentError):
    """GFP zone modifiers Linux forbids (__GFP_DMA|__GFP_DMA32, ...), or that ask for a zone
    this machine has no managed pages in."""


class MemoryClosedError(KmemError):
    """The PhysicalMemory was closed: its bytes are gone, nothing can be allocated, freed or
    read any more (the allocators built on it refuse, with their state as it was)."""


class MemoryBusyError(KmemError):
    """PhysicalMemory.close() while views of its bytes are still alive: release them first.
    The memory stays open and usable, exactly as before the call."""


class BackingError(InvalidArgumentError):
    """A ``backing`` for PhysicalMemory that cannot hold the memory: a directory, a device,
    a file that cannot grow (/proc/...), a path whose folder does not exist."""


class HostMemoryError(InvalidArgumentError):
    """A memory size this host cannot hold: the page metadata it needs is more than the host
    has available (MemAvailable), or the mapping is larger than the address space."""
