"""Cache geometry: how Linux 6.x SLUB lays out the objects of a cache in its slabs.

What: `calculate_geometry()` is a pure function from the arguments of kmem_cache_create()
(object size, alignment, flags, constructor, usercopy region, free pointer offset) and the
machine (number of CPUs, page size) to a frozen `CacheGeometry`: the same numbers as
/sys/kernel/slab/<cache>/ shows (slab_size, align, objs_per_slab, order, min_partial,
cpu_partial) plus the layout inside each object slot (inuse, free pointer offset, left red zone).

It follows mm/slub.c and mm/slab_common.c step by step, each step a named helper:
- `calculate_alignment`: SLAB_HWCACHE_ALIGN asks for the cache line, halved while the object
  fits in half of it; at least 8 bytes, a multiple of 8. kmalloc caches also get the largest
  power of two dividing their size (create_boot_cache).
- `_calculate_sizes`: the object rounded to 8; red zone right of the object; the free pointer
  inside the object (in the middle, so an overflow of a small write does not hit it) unless the
  object must stay intact while free (poison, ctor, RCU without freeptr_offset, tiny red-zoned
  objects), in which case it goes after the object; then the debug tracking, the left red zone,
  and the whole slot rounded to the alignment.
- `calculate_order`: the smallest order that holds min_objects objects (from the number of
  CPUs), then the first order up to slub_max_order (3) that wastes at most 1/16, 1/8, 1/4, 1/2
  of the slab; else the order of one object.
- `calculate_min_partial` and `calculate_cpu_partial`: the partial-list limits.

Invariants of every result: align is a multiple of 8; size % align == 0;
object_size <= inuse <= size; objs_per_slab == (page_size << order) // size >= 1;
min_order <= order; min_objs_per_slab >= 1; 5 <= min_partial <= 10.

Why a pure function: the SLAB engineer's caches, the merge rules and the tests all need the
same numbers without creating a cache, and a frozen result can be shared by aliases.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmem.errors import InvalidArgumentError, InvalidTypeError
from kmem.page.memory import check_page_size
from kmem.page.order import MAX_PAGE_ORDER, get_order
from kmem.slab.errors import SlabPageSizeError
from kmem.slab.flags import (
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CREATE_MASK,
    SLAB_DEBUG_FLAGS,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_OBJECT_POISON,
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
)

CACHE_LINE_SIZE = 64  # x86-64 L1_CACHE_BYTES, what cache_line_size() returns
ARCH_SLAB_MINALIGN = 8  # arch_slab_minalign() = __alignof__(unsigned long long)
POINTER_SIZE = 8  # sizeof(void *): the free pointer, a red zone word
TRACK_SIZE = 32  # sizeof(struct track) with CONFIG_STACKDEPOT on 64-bit
ORIG_SIZE_SIZE = 4  # sizeof(unsigned int): the kmalloc request size kept after the tracks
SLUB_MAX_ORDER = 3  # PAGE_ALLOC_COSTLY_ORDER, the default slub_max_order
MAX_OBJS_PER_PAGE = 32767  # the slab's objects counter is 15 bits
MIN_PARTIAL = 5
MAX_PARTIAL = 10
KMALLOC_MAX_SIZE_ORDER = MAX_PAGE_ORDER  # KMALLOC_MAX_SIZE = PAGE_SIZE << MAX_PAGE_ORDER


@dataclass(frozen=True, slots=True)
class CacheGeometry:
    """The layout of one cache, with /sys/kernel/slab's names where it has them.

    object_size: bytes the user asked for; size: bytes of one object slot (sysfs slab_size);
    align: alignment of every slot; inuse: bytes of a slot used by the object and its right red
    zone (the metadata starts there); offset: where the free pointer sits inside a slot;
    red_left_pad: bytes of red zone before the object (a slot starts with it); order: pages per
    slab = 1 << order; objs_per_slab: objects in a slab of that order; min_order and
    min_objs_per_slab: the fallback slab when the preferred order cannot be had (get_order(size));
    min_partial: partial slabs a node keeps before discarding empty ones; cpu_partial: objects
    (cpu_partial_slabs: slabs) a CPU's partial list may hold; flags: the cache's final flags.
    """

    object_size: int
    size: int
    align: int
    inuse: int
    offset: int
    red_left_pad: int
    order: int
    min_order: int
    objs_per_slab: int
    min_objs_per_slab: int
    min_partial: int
    cpu_partial: int
    cpu_partial_slabs: int
    flags: int
    page_size: int = 4096
    useroffset: int = 0
    usersize: int = 0
    has_ctor: bool = False

    @property
    def slab_size(self) -> int:
        """sysfs name of `size`: bytes of one object slot."""
        return self.size

    @property
    def pages_per_slab(self) -> int:
        """Pages of one slab of the preferred order (/proc/slabinfo pagesperslab)."""
        return 1 << self.order

    @property
    def slab_bytes(self) -> int:
        """Bytes of one slab of the preferred order."""
        return self.page_size << self.order

    @property
    def wasted_per_slab(self) -> int:
        """Bytes at the end of a preferred-order slab that hold no object slot."""
        return (self.page_size << self.order) - self.objs_per_slab * self.size

    @property
    def is_debug(self) -> bool:
        """True when any SLUB_DEBUG flag is set (no cpu partial list, no merging)."""
        return bool(self.flags & SLAB_DEBUG_FLAGS)


def _check_int(name: str, value: object, minimum: int) -> int:
    """Return value if it is an int (not a bool) >= minimum, else raise a specific error."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be >= {minimum}, not {value}")
    return value


def _fls(value: int) -> int:
    """Linux fls(): 1-based index of the most significant set bit, 0 for 0."""
    return value.bit_length()


def calculate_alignment(flags: int, align: int, size: int, *, is_kmalloc: bool = False) -> int:
    """The alignment of a cache's object slots (_calculate_alignment), its arguments checked
    as calculate_geometry checks them: InvalidTypeError/InvalidArgumentError for a flag word,
    alignment or size that is no int of its range."""
    _check_int("flags", flags, 0)
    _check_int("align", align, 0)
    _check_int("size", size, 1)
    if not isinstance(is_kmalloc, bool):
        raise InvalidTypeError(f"is_kmalloc must be a bool, not {type(is_kmalloc).__name__}")
    return _calculate_alignment(flags, align, size, is_kmalloc=is_kmalloc)


def _calculate_alignment(flags: int, align: int, size: int, *, is_kmalloc: bool = False) -> int:
    """The alignment of a cache's object slots (mm/slab_common.c calculate_alignment).

    kmalloc caches first get the largest power of two dividing their size, as
    create_boot_cache() does, so kmalloc-96 is 32-aligned and kmalloc-4k 4096-aligned.
    """
    if is_kmalloc or flags & SLAB_KMALLOC:
        align = max(align, size & -size)
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, ARCH_SLAB_MINALIGN)
    return (align + POINTER_SIZE - 1) & -POINTER_SIZE


def calculate_order(
    size: int,
    *,
    nr_cpus: int = 1,
    page_size: int = 4096,
    min_objects: int = 0,
    min_order: int = 0,
    max_order: int = SLUB_MAX_ORDER,
    nr_cpu_ids: int | None = None,
) -> int:
    """The preferred slab order for slots of ``size`` bytes (_calculate_order), its arguments
    checked: InvalidTypeError/InvalidArgumentError for one that is no int of its range (a
    page size no power of two of 16 bytes or more, an order above MAX_PAGE_ORDER)."""
    _check_int("size", size, 1)
    _check_int("nr_cpus", nr_cpus, 1)
    check_page_size(page_size)
    _check_int("min_objects", min_objects, 0)
    for name, order in (("min_order", min_order), ("max_order", max_order)):
        if _check_int(name, order, 0) > MAX_PAGE_ORDER:
            raise InvalidArgumentError(f"{name} must be <= {MAX_PAGE_ORDER}, not {order}")
    if nr_cpu_ids is not None:
        _check_int("nr_cpu_ids", nr_cpu_ids, nr_cpus)
    return _calculate_order(size, nr_cpus=nr_cpus, page_size=page_size,
                            min_objects=min_objects, min_order=min_order,
                            max_order=max_order, nr_cpu_ids=nr_cpu_ids)


def _calculate_order(
    size: int,
    *,
    nr_cpus: int = 1,
    page_size: int = 4096,
    min_objects: int = 0,
    min_order: int = 0,
    max_order: int = SLUB_MAX_ORDER,
    nr_cpu_ids: int | None = None,
) -> int:
    """The preferred slab order for slots of `size` bytes (mm/slub.c calculate_order).

    min_objects is the slub_min_objects boot parameter (0: derive it from the CPUs present,
    4 * (fls(nr_cpus) + 1); one CPU present counts as nr_cpu_ids, as Linux distrusts it);
    min_order and max_order are slub_min_order and slub_max_order.
    """
    page_shift = page_size.bit_length() - 1
    if not min_objects:
        cpus = nr_cpus
        if cpus <= 1:
            cpus = nr_cpu_ids if nr_cpu_ids is not None else nr_cpus
        min_objects = 4 * (_fls(cpus) + 1)
    max_objects = max((page_size << max_order) // size, 1)
    min_objects = min(min_objects, max_objects)
    first_order = max(min_order, get_order(min_objects * size, page_shift))
    if (page_size << first_order) // size > MAX_OBJS_PER_PAGE:
        order = get_order(size * MAX_OBJS_PER_PAGE, page_shift) - 1
        if order < 0:  # Linux: calculate_order returns -1, kmem_cache_open fails
            raise SlabPageSizeError(
                f"objects of {size} bytes: one {page_size}-byte page holds {page_size // size},"
                f" more than MAX_OBJS_PER_PAGE ({MAX_OBJS_PER_PAGE}); no slab order fits"
            )
        return order
    fraction = 16
    while fraction > 1:
        # Larger orders never waste a larger fraction, so the first order that fits is best.
        for order in range(first_order, max_order + 1):
            slab_bytes = page_size << order
            if slab_bytes % size <= slab_bytes // fraction:
                return order
        fraction //= 2
    order = get_order(size, page_shift)
    if order <= MAX_PAGE_ORDER:
        return order
    raise InvalidArgumentError(
        f"objects of {size} bytes do not fit in a slab of order <= {MAX_PAGE_ORDER}"
    )


def calculate_min_partial(size: int) -> int:
    """Partial slabs a node keeps (mm/slub.c: ilog2(size) / 2 clamped to [5, 10])."""
    return min(max((size.bit_length() - 1) // 2, MIN_PARTIAL), MAX_PARTIAL)


def calculate_cpu_partial(size: int, flags: int, page_size: int = 4096) -> int:
    """Objects a CPU's partial list may hold (mm/slub.c set_cpu_partial); 0 for debug caches."""
    if flags & SLAB_DEBUG_FLAGS:
        return 0
    if size >= page_size:
        return 6
    if size >= 1024:
        return 24
    if size >= 256:
        return 52
    return 120


def _calculate_sizes(
    object_size: int,
    align: int,
    flags: int,
    has_ctor: bool,
    freeptr_offset: int | None,
) -> tuple[int, int, int, int, int]:
    """Slot layout (mm/slub.c calculate_sizes): (size, inuse, offset, red_left_pad, flags)."""
    size = (object_size + POINTER_SIZE - 1) & -POINTER_SIZE
    # Poisoning the object itself is only safe when nothing may still read it while free.
    if flags & SLAB_POISON and not flags & SLAB_TYPESAFE_BY_RCU and not has_ctor:
        flags |= SLAB_OBJECT_POISON
    else:
        flags &= ~SLAB_OBJECT_POISON
    if flags & SLAB_RED_ZONE and size == object_size:
        size += POINTER_SIZE  # room for the right red zone when rounding left none
    inuse = size
    orig_size_kept = bool(flags & SLAB_STORE_USER and flags & SLAB_KMALLOC)
    rcu = bool(flags & SLAB_TYPESAFE_BY_RCU)
    if (
        (rcu and freeptr_offset is None)
        or flags & SLAB_POISON
        or has_ctor
        or (flags & SLAB_RED_ZONE and (object_size < POINTER_SIZE or orig_size_kept))
    ):
        # The object's bytes must survive while free: keep the free pointer after it.
        offset = size
        size += POINTER_SIZE
    elif rcu and freeptr_offset is not None:
        offset = freeptr_offset
    else:
        offset = (object_size // 2) & -POINTER_SIZE
    if flags & SLAB_STORE_USER:
        size += 2 * TRACK_SIZE
        if flags & SLAB_KMALLOC:
            size += ORIG_SIZE_SIZE
    red_left_pad = 0
    if flags & SLAB_RED_ZONE:
        size += POINTER_SIZE
        red_left_pad = (POINTER_SIZE + align - 1) // align * align
        size += red_left_pad
    size = (size + align - 1) // align * align
    return size, inuse, offset, red_left_pad, flags


def calculate_geometry(
    object_size: int,
    *,
    align: int = 0,
    flags: int = 0,
    has_ctor: bool = False,
    nr_cpus: int = 1,
    page_size: int = 4096,
    useroffset: int = 0,
    usersize: int = 0,
    freeptr_offset: int | None = None,
    is_kmalloc: bool = False,
    min_objects: int = 0,
    max_order: int = SLUB_MAX_ORDER,
    nr_cpu_ids: int | None = None,
) -> CacheGeometry:
    """The geometry Linux 6.x SLUB gives a cache created with these arguments.

    >>> g = calculate_geometry(96, is_kmalloc=True, nr_cpus=2)
    >>> (g.size, g.align, g.objs_per_slab, g.order, g.min_partial, g.cpu_partial)
    (96, 32, 42, 0, 5, 120)

    nr_cpus is the number of CPUs present; min_objects and max_order are the slub_min_objects
    and slub_max_order boot parameters (0 for min_objects: derived from nr_cpus, or from
    nr_cpu_ids when only one CPU is present, as Linux does).

    Raises InvalidTypeError/InvalidArgumentError for arguments kmem_cache_create() refuses;
    where Linux only warns and drops a bad usercopy region, this raises instead.
    """
    # Linux pages are 4 KiB or more; smaller simulated pages (any power of two >= 16, as
    # PhysicalMemory allows) follow the same rules scaled down.
    check_page_size(page_size)
    _check_int("object_size", object_size, 1)
    max_size = page_size << KMALLOC_MAX_SIZE_ORDER
    if object_size > max_size:
        raise InvalidArgumentError(
            f"object_size {object_size} is above KMALLOC_MAX_SIZE ({max_size})"
        )
    _check_int("align", align, 0)
    if align and align & (align - 1):
        raise InvalidArgumentError(f"align must be 0 or a power of two, not {align}")
    _check_int("flags", flags, 0)
    unknown = flags & ~SLAB_CREATE_MASK
    if unknown:
        raise InvalidArgumentError(f"unknown slab flags {unknown:#x} in {flags:#x}")
    if flags & SLAB_CACHE_DMA and flags & SLAB_CACHE_DMA32:
        raise InvalidArgumentError("SLAB_CACHE_DMA and SLAB_CACHE_DMA32 exclude each other")
    if not isinstance(has_ctor, bool):
        raise InvalidTypeError(f"has_ctor must be a bool, not {type(has_ctor).__name__}")
    if not isinstance(is_kmalloc, bool):
        raise InvalidTypeError(f"is_kmalloc must be a bool, not {type(is_kmalloc).__name__}")
    _check_int("nr_cpus", nr_cpus, 1)
    _check_int("min_objects", min_objects, 0)
    _check_int("max_order", max_order, 0)
    if nr_cpu_ids is not None:
        _check_int("nr_cpu_ids", nr_cpu_ids, nr_cpus)
    if max_order > MAX_PAGE_ORDER:
        raise InvalidArgumentError(f"max_order must be <= {MAX_PAGE_ORDER}, not {max_order}")
    _check_usercopy(object_size, useroffset, usersize)
    if freeptr_offset is not None:
        _check_freeptr_offset(object_size, flags, freeptr_offset)
    if is_kmalloc:
        flags |= SLAB_KMALLOC
    # (the bodies: every argument they take was checked above)
    final_align = _calculate_alignment(flags, align, object_size)
    size, inuse, offset, red_left_pad, flags = _calculate_sizes(
        object_size, final_align, flags, has_ctor, freeptr_offset
    )
    page_shift = page_size.bit_length() - 1
    order = _calculate_order(
        size,
        nr_cpus=nr_cpus,
        page_size=page_size,
        min_objects=min_objects,
        max_order=max_order,
        nr_cpu_ids=nr_cpu_ids,
    )
    min_order = get_order(size, page_shift)
    objs_per_slab = (page_size << order) // size
    cpu_partial = calculate_cpu_partial(size, flags, page_size)
    return CacheGeometry(
        object_size=object_size,
        size=size,
        align=final_align,
        inuse=inuse,
        offset=offset,
        red_left_pad=red_left_pad,
        order=order,
        min_order=min_order,
        objs_per_slab=objs_per_slab,
        min_objs_per_slab=(page_size << min_order) // size,
        min_partial=calculate_min_partial(size),
        cpu_partial=cpu_partial,
        cpu_partial_slabs=-(-2 * cpu_partial // objs_per_slab),
        flags=flags,
        page_size=page_size,
        useroffset=useroffset,
        usersize=usersize,
        has_ctor=has_ctor,
    )


def _check_usercopy(object_size: int, useroffset: int, usersize: int) -> None:
    """The usercopy window must lie inside the object (Linux warns and drops it; we refuse)."""
    _check_int("useroffset", useroffset, 0)
    _check_int("usersize", usersize, 0)
    if usersize == 0 and useroffset:
        raise InvalidArgumentError(f"useroffset {useroffset} given without a usersize")
    if usersize > object_size or useroffset > object_size - usersize:
        raise InvalidArgumentError(
            f"usercopy region [{useroffset}, {useroffset + usersize}) is outside the "
            f"{object_size}-byte object"
        )


def _check_freeptr_offset(object_size: int, flags: int, freeptr_offset: int) -> None:
    """freeptr_offset: only for SLAB_TYPESAFE_BY_RCU, word aligned, inside the object."""
    _check_int("freeptr_offset", freeptr_offset, 0)
    if not flags & SLAB_TYPESAFE_BY_RCU:
        raise InvalidArgumentError("freeptr_offset is only allowed with SLAB_TYPESAFE_BY_RCU")
    if freeptr_offset % POINTER_SIZE:
        raise InvalidArgumentError(
            f"freeptr_offset {freeptr_offset} is not a multiple of {POINTER_SIZE}"
        )
    if freeptr_offset >= object_size:
        raise InvalidArgumentError(
            f"freeptr_offset {freeptr_offset} is outside the {object_size}-byte object"
        )


__all__ = [
    "CACHE_LINE_SIZE",
    "CacheGeometry",
    "calculate_alignment",
    "calculate_cpu_partial",
    "calculate_geometry",
    "calculate_min_partial",
    "calculate_order",
]
