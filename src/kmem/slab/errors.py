"""The errors of the slab layer: what a bad free, a bad cpu or a bad destroy raises.

Every one is raised before any state changes: the cache is left exactly as it was.
"""

from __future__ import annotations

from kmem.errors import DoubleFreeError, InvalidArgumentError, InvalidFreeError, KmemError
from kmem.slab.stats import LiveObject


class NotAnObjectError(InvalidFreeError):
    """The address is not in any slab of the cache (or of any cache, for kfree)."""


class InteriorPointerError(InvalidFreeError):
    """The address lies inside an object (or its padding), not at an object's start."""


class WrongCacheError(InvalidFreeError):
    """The object belongs to another cache than the one it was freed to."""


class ObjectDoubleFreeError(DoubleFreeError):
    """The object is already free (a second free, or an object never handed out)."""


class InvalidCpuError(InvalidArgumentError):
    """The cpu= argument is not one of the allocator's simulated CPUs."""



class CacheNotEmptyError(KmemError):
    """kmem_cache_destroy() of a cache that still has allocated objects (Linux: a BUG report).

    ``leaks`` lists every live object; the cache is left as it was.
    """

    def __init__(self, message: str, leaks: tuple[LiveObject, ...]) -> None:
        super().__init__(message)
        self.leaks = leaks


class CacheDestroyedError(KmemError):
    """The cache was destroyed: it cannot allocate or free any more."""


class FreeToDestroyedCacheError(CacheDestroyedError, NotAnObjectError):
    """A free to a destroyed cache: its address is no object any more, as kfree reports it
    (a NotAnObjectError too)."""


class KmallocCacheDestroyError(InvalidArgumentError):
    """kmem_cache_destroy() of a kmalloc cache: kmalloc serves its sizes from it."""


class InvalidGfpError(InvalidArgumentError):
    """GFP flags that are not a gfp_t: an int in 0..2**32-1."""


class SlabPageSizeError(InvalidArgumentError):
    """A page size SLUB cannot lay slabs out in: a page of 256 KiB or more holds more than
    MAX_OBJS_PER_PAGE (32767) objects of kmalloc-8, and Linux fails to create that cache."""


class ConstructorReentryError(KmemError):
    """A cache's constructor called back into its own cache (alloc, free, a report) while the
    cache was building a slab for it: it would deadlock on the cache lock, or corrupt it."""
