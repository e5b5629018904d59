"""kmalloc: the general-purpose front end on the slab caches (Linux mm/slab_common.c, slub.c).

kmalloc(size) serves a request from the smallest kmalloc cache that holds it: kmalloc-8 ..
kmalloc-8k, with kmalloc-96 and kmalloc-192 in between (Linux's size_index table below 192
bytes, the next power of two above; kmem.slab.kmalloc_sizes has the rules and the boot list).
The GFP flags choose the family: __GFP_DMA -> dma-kmalloc-*, else __GFP_RECLAIMABLE ->
kmalloc-rcl-*, else __GFP_ACCOUNT -> kmalloc-cg-*, else kmalloc-* (include/linux/slab.h
kmalloc_type). Above KMALLOC_MAX_CACHE_SIZE
(8 KiB) the request goes to the buddy allocator (kmalloc_large): order get_order(size), every
page of the block marked with KMALLOC_LARGE_OWNER in mem_map.owner.

The lookup is one list index: per family a list of 8193 caches indexed by size, built at boot
from the size classes (computed once per process).

kfree(addr) finds the cache from the address alone: mem_map.owner[pfn] is the cache id of a slab
page (KmemCache.free does the rest), KMALLOC_LARGE_OWNER a large kmalloc block, 0 anything else
(an error). kfree(None) is a no-op (NULL), as is kfree(zero_size_ptr).

kmalloc(0) returns ``zero_size_ptr`` (Linux: ZERO_SIZE_PTR, 16): an address no object can have
(16 bytes past the end of memory here, since address 16 is real memory in kmem); ksize of it
is 0 and kfree ignores it.

Bytes requested vs allocated: a histogram counts the kmalloc calls per requested size and
family (one list increment per call, outside the cache lock: under heavy multi-threaded use a
count may be lost, never an object); each kmalloc cache sums its own sizes from it
(CacheStats.bytes_requested, bytes_allocated = calls x slab_size, Linux's bytes_alloc). Large
kmallocs are counted apart. The internal fragmentation reports use both.
"""

from __future__ import annotations

import threading
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, NoReturn

from kmem.errors import InvalidArgumentError, InvalidTypeError, OutOfMemoryError
from kmem.page.errors import MemoryClosedError
from kmem.page.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
)
from kmem.page.order import get_order
from kmem.slab.cache import KmemCache, check_gfp
from kmem.slab.errors import InteriorPointerError, InvalidCpuError, NotAnObjectError
from kmem.slab.flags import (
    KMALLOC_NOT_NORMAL_BITS,
    SLAB_POISON,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.kmalloc_sizes import (
    KMALLOC_CGROUP,
    KMALLOC_CLASS_BY_SIZE,
    KMALLOC_DMA,
    KMALLOC_MAX_CACHE_SIZE,
    KMALLOC_NORMAL,
    KMALLOC_RECLAIM,
    RANDOM_KMALLOC_CACHES_NR,
    kmalloc_boot_caches,
    kmalloc_type,
    random_kmalloc_copy,
)
from kmem.slab.numa import NUMA_NO_NODE, check_one_node

if TYPE_CHECKING:
    from kmem.page.buddy import BuddyAllocator
    from kmem.slab.machine_pages import MachinePages
    from kmem.slab.numa import NodeLayout

# Names with two leading underscores would be mangled inside a class body: alias them.
_GFP_ZERO: Final = __GFP_ZERO
_GFP_COMP: Final = __GFP_COMP
# The bits the compiled kmalloc picks the family and the zeroing by (kmalloc_type's order).
_GFP_BITS: Final = (__GFP_DMA, __GFP_RECLAIMABLE, __GFP_ACCOUNT, __GFP_ZERO)
_NOT_PLAIN: Final = KMALLOC_NOT_NORMAL_BITS | __GFP_ZERO  # flags that leave the plain path

# The smallest request size each class serves (kmalloc-96: 65, kmalloc-8: 1).
_SMALLEST_OF_CLASS: Final[dict[int, int]] = {}
for _size in range(KMALLOC_MAX_CACHE_SIZE, 0, -1):
    _SMALLEST_OF_CLASS[KMALLOC_CLASS_BY_SIZE[_size]] = _size
del _size

KMALLOC_LARGE_OWNER: Final = 0xFFFFFFFF  # mem_map.owner of the pages of a large kmalloc
_LARGE_RUN: Final = array("I", [KMALLOC_LARGE_OWNER])  # * n: a run of n pages' owner entries
_NO_OWNER_RUN: Final = array("I", [0])
# __GFP_ZERO for a kmalloc cache object: copy a slice of this (cheaper than a new bytes(n)).
_ZEROS: Final = memoryview(bytes(KMALLOC_MAX_CACHE_SIZE))


class KmallocFrontEnd:
    """The kmalloc family of calls; SlabAllocator inherits them (see kmem.slab)."""

    buddy: BuddyAllocator
    pages: MachinePages | None  # a page machine behind the buddy's blocks, or None
    nr_cpus: int
    nr_nodes: int
    numa: NodeLayout | None  # several NUMA nodes (kmem.slab.numa), or None: one
    caches: dict[str, KmemCache]
    _by_id: dict[int, KmemCache]
    _frees_by_id: list[Callable[[int, int], None] | None]
    _lock: threading.RLock

    def _boot_kmalloc(self, create: Callable[[str, int, int], KmemCache],
                      random_seed: int | None = None) -> None:
        """Create the kmalloc caches in Linux's order and build the size lookup tables.

        ``random_seed`` (CONFIG_RANDOM_KMALLOC_CACHES: random_kmalloc_seed) adds the 15
        kmalloc-rnd-NN- copies of the normal family; a kmalloc then picks a copy by caller.
        """
        self._kmalloc_tables: list[list[KmemCache]] = []
        self.zero_size_ptr: int = self.buddy.memory.size + 16
        self._large_pages = 0
        self._large_requested = 0
        self._large_allocated = 0
        self.random_kmalloc_seed: int | None = random_seed
        copies = RANDOM_KMALLOC_CACHES_NR + 1 if random_seed is not None else 1
        # by_class[family] for the 4 families, then by_class[3 + copy] for the random copies
        by_class: list[dict[int, KmemCache]] = [{} for _ in range(3 + copies)]
        for spec in kmalloc_boot_caches(random_seed is not None):
            slot = spec.kmalloc_type if not spec.copy else 3 + spec.copy
            by_class[slot][spec.size] = create(spec.name, spec.size, spec.flags)
        classes = KMALLOC_CLASS_BY_SIZE
        # Per family (and copy), how many kmalloc calls asked for each size (the fragmentation
        # reports sum them per cache; one increment per call, in a buffer the compiled core
        # shares).
        self._kmalloc_requests: list[array[int]] = [array("q", [0]) * len(classes)
                                                    for _ in by_class]
        tables = []
        for slot, table in enumerate(by_class):
            tables.append([table[c] if c else table[8] for c in classes])
            for size, cache in table.items():
                cache.count_kmalloc_requests(self._kmalloc_requests[slot],
                                             range(_SMALLEST_OF_CLASS[size], size + 1))
        self._kmalloc_tables = tables[:4]
        # The normal family's copies: copy 0 is kmalloc-N itself.
        self._kmalloc_copies = [tables[KMALLOC_NORMAL], *tables[4:]]
        self._copy_requests = [self._kmalloc_requests[KMALLOC_NORMAL],
                               *self._kmalloc_requests[4:]]
        self._kmalloc_normal: list[KmemCache] = self._kmalloc_tables[KMALLOC_NORMAL]
        self._normal_requests = self._kmalloc_requests[KMALLOC_NORMAL]
        self._memory_size = self.buddy.memory.size
        self._owner = self.buddy.mem_map.owner
        self._page_shift = self.buddy.page_shift
        if random_seed is not None:
            self.kmalloc = self._kmalloc_random  # type: ignore[method-assign]

    def _use_compiled_kmalloc(self) -> None:
        """Run kmalloc and kfree in the compiled core (kmem._core.KmallocCore), when built.

        Its fast paths serve a kmalloc of a slab size with gfp_t flags, every family and
        __GFP_ZERO included (the zeroing done in C, or by _zero_object when C cannot), and the
        kfree of a slab object, through the caches' own alloc and free; the rest goes to the
        pure methods.
        """
        core = self.buddy.compiled_core
        if core is None or self.random_kmalloc_seed is not None:  # (copies chosen by caller)
            return
        cls = type(self)
        fast = core.KmallocCore(
            allocs=[[cache.alloc for cache in table] for table in self._kmalloc_tables],
            caches=[list(table) for table in self._kmalloc_tables],
            frees_by_id=self._frees_by_id, requests=self._kmalloc_requests[:4],
            owner=self._owner, page_shift=self._page_shift,
            families=(KMALLOC_NORMAL, KMALLOC_RECLAIM, KMALLOC_DMA, KMALLOC_CGROUP),
            gfp_bits=_GFP_BITS,
            gfp_kernel=GFP_KERNEL, memory=self.buddy.memory, zero_object=self._zero_object,
            pure_kmalloc=cls.kmalloc.__get__(self), pure_kfree=cls.kfree.__get__(self))
        self.kmalloc = fast.kmalloc  # type: ignore[method-assign]
        self.kfree = fast.kfree  # type: ignore[method-assign]

    def _zero_object(self, address: int, cache: KmemCache) -> None:
        """__GFP_ZERO on a kmalloc cache object: its object_size bytes set to 0."""
        self.buddy.memory.view(address, cache.object_size)[:] = _ZEROS[:cache.object_size]

    def _kmalloc_memory_closed(self) -> None:
        """The physical memory closed: kmalloc, kfree and their kin refuse, on either core."""

        def refuse(*args: object, **kwargs: object) -> NoReturn:
            raise MemoryClosedError("cannot kmalloc or kfree: the physical memory was closed")

        self.kmalloc = refuse  # type: ignore[method-assign]
        self.kfree = refuse  # type: ignore[method-assign]
        self.kmalloc_large = refuse  # type: ignore[method-assign]

    # -- kmalloc -------------------------------------------------------------------------------

    def kmalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int = 0, caller: int = 0) -> int:
        """Allocate ``size`` bytes; return the address. gfp picks the family and __GFP_ZERO;
        ``caller`` (the call site's address) picks a random kmalloc copy when those exist."""
        # (gfp >> 32 is 0 exactly for a gfp_t, 0..2**32-1; GFP_KERNEL, the default, is one)
        if size.__class__ is int and 0 < size <= KMALLOC_MAX_CACHE_SIZE and (
            gfp is GFP_KERNEL or (gfp.__class__ is int and not gfp >> 32)
        ):
            special = gfp & _NOT_PLAIN
            if not special:  # the common case: kmalloc-*, nothing to zero
                address = self._kmalloc_normal[size].alloc(cpu, gfp)
                self._normal_requests[size] += 1
                return address
            family = kmalloc_type(gfp)
            cache = self._kmalloc_tables[family][size]
            address = cache.alloc(cpu, gfp)
            self._kmalloc_requests[family][size] += 1
            if gfp & _GFP_ZERO:
                self._zero_object(address, cache)
            return address
        return self._kmalloc_other(size, gfp, cpu, caller)

    def _kmalloc_random(self, size: int, gfp: int = GFP_KERNEL, cpu: int = 0,
                        caller: int = 0) -> int:
        """kmalloc with CONFIG_RANDOM_KMALLOC_CACHES: the normal family's copy by caller."""
        if isinstance(caller, bool) or not isinstance(caller, int):
            raise InvalidTypeError(f"caller must be an int address, not {type(caller).__name__}")
        if size.__class__ is int and 0 < size <= KMALLOC_MAX_CACHE_SIZE and (
            gfp.__class__ is int and not gfp >> 32
        ):
            family = kmalloc_type(gfp)
            if family == KMALLOC_NORMAL:
                assert self.random_kmalloc_seed is not None
                copy = random_kmalloc_copy(caller, self.random_kmalloc_seed)
                cache = self._kmalloc_copies[copy][size]
                requests = self._copy_requests[copy]
            else:
                cache = self._kmalloc_tables[family][size]
                requests = self._kmalloc_requests[family]
            address = cache.alloc(cpu, gfp)
            requests[size] += 1
            if gfp & _GFP_ZERO:
                self._zero_object(address, cache)
            return address
        return self._kmalloc_other(size, gfp, cpu, caller)

    def _kmalloc_other(self, size: int, gfp: int, cpu: int, caller: int) -> int:
        """kmalloc off the slab fast path: 0, a large size, or arguments to check (every
        check the slab caches would make, made here too: the gfp flags, the size, the cpu)."""
        gfp = check_gfp(gfp)
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidTypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise InvalidArgumentError(f"kmalloc size must be >= 0, got {size}")
        self._check_cpu_arg(cpu)
        if size == 0:
            return self.zero_size_ptr
        if size <= KMALLOC_MAX_CACHE_SIZE:  # an int subclass (IntEnum, ...): as the int
            return self.kmalloc(int(size), gfp, cpu, caller)
        return self.kmalloc_large(int(size), gfp, int(cpu))

    def kmalloc_node(self, size: int, gfp: int = GFP_KERNEL, node: int = NUMA_NO_NODE,
                     cpu: int = 0, caller: int = 0) -> int:
        """kmalloc_node: ``size`` bytes from ``node`` (NUMA_NO_NODE, -1: as kmalloc). The
        cache's alloc_node serves it (a cpu slab or sheaf object only of that node); a large
        size takes pages on that node (kmalloc_large_node)."""
        node = self._check_node_arg(node)
        if node == NUMA_NO_NODE or self.numa is None:  # (one node: node 0 is everywhere)
            return self.kmalloc(size, gfp, cpu, caller)
        gfp = check_gfp(gfp)
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidTypeError(f"size must be an int, not {type(size).__name__}")
        if size < 0:
            raise InvalidArgumentError(f"kmalloc size must be >= 0, got {size}")
        self._check_cpu_arg(cpu)
        cpu = int(cpu)
        if size == 0:
            return self.zero_size_ptr
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(int(size), gfp, cpu, node)
        size = int(size)
        cache = self.kmalloc_cache_for(size, gfp, caller)
        assert cache is not None
        address = cache.alloc_node(cpu, gfp, node)
        family = kmalloc_type(gfp)
        if family == KMALLOC_NORMAL and self.random_kmalloc_seed is not None:
            self._copy_requests[random_kmalloc_copy(caller, self.random_kmalloc_seed)][
                size] += 1
        else:
            self._kmalloc_requests[family][size] += 1
        if gfp & _GFP_ZERO:
            self._zero_object(address, cache)
        return address

    def _check_node_arg(self, node: object) -> int:
        """Refuse a node= that is neither NUMA_NO_NODE nor a node of the allocator."""
        if self.numa is not None:
            return self.numa.check_node(node)
        return check_one_node(node)

    def _check_cpu_arg(self, cpu: object) -> None:
        """Refuse a cpu= that is no CPU of the allocator, as the caches do."""
        if cpu.__class__ is not int and (isinstance(cpu, bool) or not isinstance(cpu, int)):
            raise InvalidTypeError(f"cpu must be an int, not {type(cpu).__name__}")
        if not 0 <= cpu < self.nr_cpus:
            raise InvalidCpuError(f"cpu {cpu} is not in 0..{self.nr_cpus - 1}")

    def kmalloc_large(self, size: int, gfp: int = GFP_KERNEL, cpu: int = 0,
                      node: int = NUMA_NO_NODE) -> int:
        """Pages straight from the buddy allocator for ``size`` bytes (order get_order(size));
        on a page machine, allocated on ``cpu``; with several nodes, on ``node`` (NUMA_NO_NODE:
        the CPU's), falling back to the others unless __GFP_THISNODE."""
        kmalloc_type(check_gfp(gfp))  # bad gfp flags raise here, before any page is taken
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidTypeError(f"size must be an int, not {type(size).__name__}")
        if size <= 0:
            raise InvalidArgumentError(f"kmalloc_large size must be positive, got {size}")
        self._check_cpu_arg(cpu)
        cpu = int(cpu)  # (an int subclass names the CPU of its value)
        node = self._check_node_arg(node)
        buddy = self.buddy
        order = get_order(size, buddy.page_shift)
        if order > buddy.max_order:
            raise InvalidArgumentError(
                f"kmalloc of {size} bytes needs order {order}, above max_order {buddy.max_order}"
                f" (KMALLOC_MAX_SIZE {buddy.page_size << buddy.max_order})"
            )
        with self._lock:
            pages = self.pages
            numa = self.numa
            if numa is not None:
                pfn = numa.alloc_pages(order, gfp, numa.cpu_node[cpu] if node < 0 else node)
            elif pages is None:
                pfn = buddy.alloc_pages(order)  # OutOfMemoryError reaches the caller unchanged
            else:  # kmalloc_large_node: alloc_pages(gfp | __GFP_COMP) on a page machine
                pfn = pages.alloc_pages(order, gfp | _GFP_COMP, cpu)
            self._owner[pfn : pfn + (1 << order)] = _LARGE_RUN * (1 << order)
            self._large_pages += 1 << order
            self._large_requested += size
            self._large_allocated += buddy.page_size << order
        address = pfn << buddy.page_shift
        if gfp & _GFP_ZERO:
            buddy.memory.view(address, buddy.page_size << order)[:] = bytes(
                buddy.page_size << order)
        return address

    def kzalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int = 0, caller: int = 0) -> int:
        """kmalloc with the object zeroed (__GFP_ZERO)."""
        return self.kmalloc(size, check_gfp(gfp) | _GFP_ZERO, cpu, caller)

    def kcalloc(self, n: int, size: int, gfp: int = GFP_KERNEL, cpu: int = 0) -> int:
        """A zeroed array of ``n`` elements of ``size`` bytes; the product must not overflow."""
        kmalloc_type(check_gfp(gfp))
        for value, what in ((n, "n"), (size, "size")):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidTypeError(f"{what} must be an int, not {type(value).__name__}")
            if value < 0:
                raise InvalidArgumentError(f"kcalloc {what} must be >= 0, got {value}")
        total = n * size
        if total >= 1 << 64:
            raise InvalidArgumentError(f"kcalloc({n}, {size}) overflows size_t")
        return self.kmalloc(total, gfp | _GFP_ZERO, cpu)

    def kmalloc_cache_for(self, size: int, gfp: int = GFP_KERNEL, caller: int = 0
                          ) -> KmemCache | None:
        """The kmalloc cache that would serve ``size`` bytes, None above 8 KiB or for 0."""
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidTypeError(f"size must be an int, not {type(size).__name__}")
        family = kmalloc_type(check_gfp(gfp))
        if size < 0:
            raise InvalidArgumentError(f"kmalloc size must be >= 0, got {size}")
        if not 0 < size <= KMALLOC_MAX_CACHE_SIZE:
            return None
        if family == KMALLOC_NORMAL and self.random_kmalloc_seed is not None:
            if isinstance(caller, bool) or not isinstance(caller, int):
                raise InvalidTypeError(f"caller must be an int, not {type(caller).__name__}")
            return self._kmalloc_copies[random_kmalloc_copy(caller, self.random_kmalloc_seed)][
                size]
        return self._kmalloc_tables[family][size]

    # -- kfree, ksize, krealloc ----------------------------------------------------------------

    def kfree(self, address: int | None, cpu: int = 0) -> None:
        """Free kmalloc'd memory (or any slab object) by address; None is a no-op."""
        # The page's owner is the cache id (a negative address is the cache's to refuse); a
        # bool is no address (False is not address 0).
        try:
            cache = self._by_id.get(self._owner[address >> self._page_shift]) if (
                address.__class__ is int) else None
        except IndexError:
            cache = None
        if cache is not None:
            cache.free(address, cpu)  # type: ignore[arg-type]
            return
        self._check_cpu_arg(cpu)  # (a slab object's cache checks it itself)
        if address is None or address == self.zero_size_ptr:
            return
        self._kfree_other(address, int(cpu))

    def _cache_by_owner(self, address: object) -> KmemCache | None:
        """The cache whose slab page holds ``address`` (an int, not a bool: False is not
        address 0), or None; a negative address is the cache's to refuse."""
        if address.__class__ is not int:
            return None
        try:  # the page's owner is the cache id
            return self._by_id.get(self._owner[address >> self._page_shift])
        except IndexError:
            return None

    def _kfree_other(self, address: object, cpu: int = 0) -> None:
        """kfree of anything but a slab object: a large kmalloc block (free_large_kmalloc,
        on ``cpu`` on a page machine), or an error."""
        if address.__class__ is not int:
            raise InvalidTypeError(f"address must be an int or None, not {type(address).__name__}")
        if not 0 <= address < self._memory_size:
            raise NotAnObjectError(
                f"address {address:#x} lies outside memory [0, {self._memory_size:#x})")
        pfn = address >> self._page_shift
        owner = self._owner[pfn]
        if owner == KMALLOC_LARGE_OWNER:
            with self._lock:
                block = self.buddy.block_at(pfn)
                if block.pfn != pfn or address & (self.buddy.page_size - 1):
                    raise InteriorPointerError(
                        f"address {address:#x} lies inside the large kmalloc block at pfn"
                        f" {block.pfn:#x}, not at its start"
                    )
                self._owner[pfn : pfn + (1 << block.order)] = _NO_OWNER_RUN * (1 << block.order)
                if self.pages is None:
                    self.buddy.free_pages(pfn, block.order)
                else:
                    self.pages.free_pages(pfn, block.order, cpu)
                self._large_pages -= 1 << block.order
            return
        # A destroyed cache's pages lose their owner before it leaves _by_id: only a second
        # SlabAllocator on the same buddy allocator (unsupported: check() refuses it) owns one.
        if owner:  # pragma: no cover
            raise NotAnObjectError(f"address {address:#x} is in a slab of a destroyed cache")
        raise NotAnObjectError(
            f"address {address:#x} is neither a slab object nor a large kmalloc block"
            f" (page {pfn:#x} belongs to no cache)"
        )

    def ksize(self, address: int) -> int:
        """Bytes usable at ``address`` (Linux ksize): the object's size, or the large block's."""
        if address == self.zero_size_ptr:
            return 0
        cache = self.cache_of(address)
        if cache is not None:
            cache.view(address)  # raises unless an allocated object
            return _slab_ksize(cache)
        pfn = address >> self._page_shift
        block = self.buddy.block_at(pfn)
        if block.pfn != pfn or address & (self.buddy.page_size - 1):
            raise InteriorPointerError(f"address {address:#x} is not a large kmalloc block start")
        return self.buddy.page_size << block.order

    def cache_of(self, address: int) -> KmemCache | None:
        """The cache whose slab holds ``address``; None for a large kmalloc block.

        Raises NotAnObjectError for an address that is neither.
        """
        if isinstance(address, bool) or not isinstance(address, int):
            raise InvalidTypeError(f"address must be an int, not {type(address).__name__}")
        if not 0 <= address < self._memory_size:
            raise NotAnObjectError(
                f"address {address:#x} lies outside memory [0, {self._memory_size:#x})")
        owner = self._owner[address >> self._page_shift]
        if owner == KMALLOC_LARGE_OWNER:
            return None
        cache = self._by_id.get(owner)
        if cache is None:
            raise NotAnObjectError(f"address {address:#x} is not in a slab or kmalloc block")
        return cache

    def krealloc(self, address: int | None, new_size: int, gfp: int = GFP_KERNEL,
                 cpu: int = 0) -> int:
        """Resize: in place when the object already holds ``new_size`` bytes, else move.

        krealloc(None, n) is kmalloc(n); krealloc(p, 0) frees p and returns zero_size_ptr.
        """
        kmalloc_type(check_gfp(gfp))  # checks the flags before anything changes
        self._check_cpu_arg(cpu)
        if address is None or address == self.zero_size_ptr:
            return self.kmalloc(new_size, gfp, cpu)
        old = self.ksize(address)  # raises for a bad address, before anything changes
        if isinstance(new_size, bool) or not isinstance(new_size, int):
            raise InvalidTypeError(f"size must be an int, not {type(new_size).__name__}")
        if new_size < 0:
            raise InvalidArgumentError(f"krealloc size must be >= 0, got {new_size}")
        if new_size == 0:
            self.kfree(address, cpu)
            return self.zero_size_ptr
        if new_size <= old:
            if gfp & _GFP_ZERO and new_size < old:
                self.buddy.memory.view(address + new_size, old - new_size)[:] = bytes(
                    old - new_size)
            return address
        new = self.kmalloc(new_size, gfp, cpu)
        memory = self.buddy.memory
        memory.view(new, old)[:] = memory.view(address, old)
        self.kfree(address, cpu)
        return new

    # -- large kmalloc figures -----------------------------------------------------------------

    @property
    def large_kmalloc_pages(self) -> int:
        """Pages held by large kmalloc blocks now."""
        return self._large_pages

    @property
    def large_kmalloc_bytes(self) -> tuple[int, int]:
        """(bytes requested, bytes allocated) by large kmallocs since boot."""
        return self._large_requested, self._large_allocated


def _slab_ksize(cache: KmemCache) -> int:
    """Linux slab_ksize(): what of an object slot the caller may use."""
    if cache.flags & (SLAB_RED_ZONE | SLAB_POISON):
        return cache.object_size
    if cache.flags & (SLAB_TYPESAFE_BY_RCU | SLAB_STORE_USER):
        return cache.inuse
    return cache.size


__all__ = ["KMALLOC_LARGE_OWNER", "KmallocFrontEnd", "OutOfMemoryError"]
