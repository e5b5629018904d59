"""The arena's errors: each way an arena file or segment can be refused has its own class.

Opening never writes to what it refuses: the file or segment is left exactly as it was.
"""

from __future__ import annotations

from kmem.errors import KmemError


class ArenaError(KmemError):
    """Base class of the errors only an arena raises."""


class NotAnArenaError(ArenaError):
    """The file or segment does not start with the arena magic: it is something else."""


class ArenaVersionError(ArenaError):
    """An arena of a format version this kmem does not read."""


class ArenaTruncatedError(ArenaError):
    """The file or segment is shorter than the size its header records."""


class ArenaCorruptError(ArenaError):
    """The header's checksum or layout is wrong, or check() found a broken invariant."""


class ArenaClosedError(ArenaError):
    """An operation on an arena (or one of its caches) after close()."""


class ArenaBusyError(ArenaError):
    """close() while memoryviews the arena handed out are still exported (a NumPy array over
    one, say); the message lists their addresses and the arena stays open."""


class ArenaExistsError(ArenaError):
    """create() of a file or segment that already exists."""


class CacheMismatchError(ArenaError):
    """cache(name, size) of an existing cache with another object size, or of a kmalloc name."""
