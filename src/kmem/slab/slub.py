"""The SLUB policy (Linux 6.x mm/slub.c): cpu slabs, cpu partial lists, node partial lists.

State of a cache, per simulated CPU c and per NUMA node (one unless the allocator has
nr_nodes > 1: kmem.slab.numa):

    _cpu_slab[c]      the cpu slab (frozen): allocations and same-CPU frees take its freelist
                      (Linux: c->freelist); other CPUs' frees land in its ``remote`` list
                      (Linux: slab->freelist while frozen), taken over when the freelist runs dry
    _cpu_partial[c]   a stack of partial slabs (the end is the head, Linux: c->partial chain):
                      a full slab that gets a free object goes here (put_cpu_partial); when it
                      already holds cpu_partial_slabs slabs, they all go to the node list first
    _nodes[n]         node n's partial list, an OrderedDict used as a list (head first) with
                      O(1) removal (Linux: get_node(s, n)->partial); _node_partial is node 0's.
                      A slab is only ever on its own node's list (slab_nid).

Full slabs are on no list (Linux tracks them only with debugging).

Allocation (slab_alloc_node / ___slab_alloc): the cpu slab's freelist (ALLOC_FASTPATH); else
its remote frees (ALLOC_REFILL); else the cpu slab is full and dropped (DEACTIVATE_BYPASS) and
the head of the cpu partial stack becomes the cpu slab (CPU_PARTIAL_ALLOC); else the node list
head (ALLOC_FROM_PARTIAL), with more node slabs moved to the cpu partial stack until more than
cpu_partial_slabs / 2 were moved (CPU_PARTIAL_NODE); else a new slab (ALLOC_SLAB), of the
minimum order if the preferred one cannot be had (ORDER_FALLBACK).

Free (do_slab_free / __slab_free): to the cpu slab of the freeing CPU, a push on its freelist
(FREE_FASTPATH); else FREE_SLOWPATH: into another CPU's cpu slab (FREE_FROZEN); a full slab goes
to the freeing CPU's partial stack (CPU_PARTIAL_FREE, with CPU_PARTIAL_DRAIN first if full);
a slab on the node list that becomes empty is discarded when the node already holds
min_partial partial slabs (FREE_REMOVE_PARTIAL, FREE_SLAB), else it stays. Slabs on a cpu
partial stack stay there even when empty until the stack is drained, where empty ones beyond
min_partial are discarded.

Nodes: alloc_node (kmem_cache_alloc_node) takes the fast path only from a cpu slab of the
node asked for (node_match); the slow path then deactivates a cpu slab of another node, passes
cpu partial slabs of other nodes back to their lists and searches that node's list, then the
others (get_partial, get_any_partial); a new slab comes from that node's pages, or another's
unless __GFP_THISNODE. A free is node-blind, as 6.17's do_slab_free.

Debug caches (SLAB_RED_ZONE/POISON/STORE_USER, cpu_partial 0) take Linux's debug path: no cpu
slab; each allocation takes one object from the node list head or a new slab, full slabs go to
a full list, and every allocation and free is checked (kmem.slab.debug).

Invariants (``check()``): a slab is on exactly one list and its ``where``/``cpu`` say which;
remote frees only on cpu slabs; a slab on the node or cpu partial lists has a free object
(node: or is empty and kept below min_partial; cpu partial: may be empty); a slab on no list or
the full list has none free (a cpu slab may be anything); every page maps to its slab.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from kmem.page.gfp import __GFP_THISNODE, GFP_KERNEL
from kmem.slab.cache import KmemCache, check_gfp
from kmem.slab.numa import NUMA_NO_NODE
from kmem.slab.slabs import ON_CPU, ON_CPU_PARTIAL, ON_FULL, ON_NODE_PARTIAL, ON_NONE, Slab
from kmem.slab.stats import (
    ALLOC_FROM_PARTIAL,
    ALLOC_NODE_MISMATCH,
    ALLOC_REFILL,
    ALLOC_SLAB,
    ALLOC_SLOWPATH,
    CPU_PARTIAL_ALLOC,
    CPU_PARTIAL_DRAIN,
    CPU_PARTIAL_FREE,
    CPU_PARTIAL_NODE,
    CPUSLAB_FLUSH,
    DEACTIVATE_BYPASS,
    DEACTIVATE_EMPTY,
    DEACTIVATE_FULL,
    DEACTIVATE_REMOTE_FREES,
    DEACTIVATE_TO_HEAD,
    DEACTIVATE_TO_TAIL,
    FREE_ADD_PARTIAL,
    FREE_FROZEN,
    FREE_REMOVE_PARTIAL,
    FREE_SLOWPATH,
)

if TYPE_CHECKING:
    from kmem.slab.debug import SlabDebugger

_GFP_THISNODE: Final = __GFP_THISNODE  # (two underscores would be mangled in a class)
SHRINK_PROMOTE_MAX: Final = 32  # kmem_cache_shrink sorts slabs with up to this many free objects


class SlubCache(KmemCache):
    """A cache under the SLUB policy."""

    policy = "slub"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cpu_slab: dict[int, Slab | None] = dict.fromkeys(range(self.nr_cpus))
        self._cpu_partial: list[list[Slab]] = [[] for _ in range(self.nr_cpus)]
        # Every node's partial list (n->partial of get_node(s, nid)); _node_partial is node 0's
        self._nodes: list[OrderedDict[Slab, None]] = [OrderedDict()
                                                      for _ in range(self.nr_nodes)]
        self._node_partial = self._nodes[0]
        self._full: OrderedDict[Slab, None] = OrderedDict()  # debug caches only
        if type(self).alloc is SlubCache.alloc and type(self).free is SlubCache.free:
            # The core also takes _free_slowpath's pushes that change no list, counting them
            # in this _stat list as it does.
            self._use_compiled_core("slub", cpu_slab=self._cpu_slab, slow_free=(
                self._stat, FREE_SLOWPATH, FREE_FROZEN, ON_CPU, ON_CPU_PARTIAL, ON_NODE_PARTIAL))

    # -- allocation ----------------------------------------------------------------------------

    # The fast paths exist twice, with and without the cache lock (thread_safe=False): one
    # call level less and a bound acquire/release instead of `with` halve their cost.

    def alloc(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        """Allocate an object on ``cpu``; return its address (slab_alloc_node)."""
        # Not a gfp_t (a bool, 2**100, ...)? GFP_KERNEL itself, the default, is one at once.
        if gfp is not GFP_KERNEL and (gfp.__class__ is not int or gfp >> 32):
            check_gfp(gfp)
        self._lock_acquire()
        try:
            try:  # the fast path: pop the cpu slab's freelist
                if cpu.__class__ is not int:  # (1.0 and True would find cpu 1's slab)
                    raise TypeError
                slab = self._cpu_slab[cpu]
                index = slab.freelist.pop()  # type: ignore[union-attr]
            except (KeyError, TypeError, AttributeError, IndexError):
                # no cpu slab (None), an empty freelist, or a bad cpu
                return self._alloc_slowpath(cpu, gfp)
            slab.used[index] = 1  # type: ignore[union-attr]
            self._fast[0] += 1
            return slab.base + index * self.size  # type: ignore[union-attr]
        finally:
            self._lock_release()

    def _alloc_unlocked(self, cpu: int = 0, gfp: int = GFP_KERNEL) -> int:
        if gfp is not GFP_KERNEL and (gfp.__class__ is not int or gfp >> 32):
            check_gfp(gfp)
        try:
            if cpu.__class__ is not int:
                raise TypeError
            slab = self._cpu_slab[cpu]
            index = slab.freelist.pop()  # type: ignore[union-attr]
        except (KeyError, TypeError, AttributeError, IndexError):
            return self._alloc_slowpath(cpu, gfp)
        slab.used[index] = 1  # type: ignore[union-attr]
        self._fast[0] += 1
        return slab.base + index * self.size  # type: ignore[union-attr]

    def alloc_node(self, cpu: int = 0, gfp: int = GFP_KERNEL, node: int = NUMA_NO_NODE) -> int:
        """kmem_cache_alloc_node: an object on ``node`` (NUMA_NO_NODE: anywhere, as alloc)."""
        node = self._check_node(node)
        if node == NUMA_NO_NODE or self.nr_nodes == 1:  # (one node: every slab is node 0's)
            return self.alloc(cpu, gfp)
        check_gfp(gfp)
        with self._lock:
            return self._alloc_node_unlocked(cpu, gfp, node)

    def _alloc_node_unlocked(self, cpu: int, gfp: int, node: int) -> int:
        """slab_alloc_node for a node: the fast path only on a cpu slab of that node."""
        if cpu.__class__ is not int or cpu not in self._cpu_slab:
            cpu = self._plain_cpu(cpu)
        if self.destroyed:
            raise self._bad_free(0)
        slab = self._cpu_slab[cpu]
        if slab is not None and slab.freelist and slab.node == node:  # node_match
            self._fast[0] += 1
            return self._take(slab)
        return self._alloc_slowpath(cpu, gfp, node)

    def _take(self, slab: Slab) -> int:
        index = slab.freelist.pop()
        slab.used[index] = 1
        return slab.base + index * self.size

    def _freeze(self, slab: Slab, cpu: int) -> None:
        slab.where = ON_CPU
        slab.cpu = cpu
        self._cpu_slab[cpu] = slab

    def _alloc_slowpath(self, cpu: int, gfp: int = GFP_KERNEL, node: int = NUMA_NO_NODE) -> int:
        """___slab_alloc: refill from remote frees, cpu partial, node partial, or a new slab.

        pfmemalloc_match: an allocation without the right to the memory reserves
        (gfp_pfmemalloc_allowed) takes no object from a pfmemalloc slab here: such a cpu slab is
        deactivated, such cpu partial slabs go to the node list, node partial ones are passed
        over, and a new one gives this one object and is not kept as the cpu slab. (The fast
        path does not look, as in Linux: a pfmemalloc cpu slab's freelist serves anyone.)

        node_match: an allocation for a ``node`` deactivates a cpu slab of another node
        (ALLOC_NODE_MISMATCH), passes over cpu partial slabs of other nodes (to their node
        lists) and looks for partial slabs on that node first (get_partial).
        """
        if cpu.__class__ is not int or cpu not in self._cpu_slab:
            # (an IntEnum cpu missed the fast path: the whole alloc again, as its int)
            return self._alloc_unlocked(self._plain_cpu(cpu), gfp)
        if self.destroyed:
            raise self._bad_free(0)
        stat = self._stat
        stat[ALLOC_SLOWPATH] += 1
        slab = self._cpu_slab[cpu]
        if slab is not None:
            if node >= 0 and slab.node != node:
                stat[ALLOC_NODE_MISMATCH] += 1
                self._cpu_slab[cpu] = None
                self._deactivate_slab(slab, cpu)
            elif slab.pfmemalloc and not self._reserve_rights(gfp):
                self._cpu_slab[cpu] = None
                self._deactivate_slab(slab, cpu)
            elif slab.remote:  # get_freelist: objects other CPUs freed into this cpu slab
                slab.freelist, slab.remote = slab.remote, slab.freelist
                stat[ALLOC_REFILL] += 1
                return self._take(slab)
            else:  # The cpu slab is full: unfreeze it onto no list.
                slab.where = ON_NONE
                slab.cpu = -1
                self._cpu_slab[cpu] = None
                stat[DEACTIVATE_BYPASS] += 1
        partial = self._cpu_partial[cpu]
        while partial:
            slab = partial.pop()
            if (slab.pfmemalloc and not self._reserve_rights(gfp)) or (
                    node >= 0 and slab.node != node):
                self._put_partials([slab], cpu)  # __put_partials of this one slab
                continue
            self._freeze(slab, cpu)
            stat[CPU_PARTIAL_ALLOC] += 1
            return self._take(slab)
        chosen = self._get_partial(cpu, gfp, node)
        if chosen is not None:
            self._freeze(chosen, cpu)
            return self._take(chosen)
        slab = self._new_slab(gfp, cpu, node)
        stat[ALLOC_SLAB] += 1
        if slab.pfmemalloc and not self._reserve_rights(gfp):
            # "we don't make further mismatched allocations easier": one object, then the
            # slab is deactivated instead of loaded
            slab.cpu = cpu
            address = self._take(slab)
            self._deactivate_slab(slab, cpu)
            return address
        self._freeze(slab, cpu)
        return self._take(slab)

    def _get_partial(self, cpu: int, gfp: int, node: int) -> Slab | None:
        """get_partial: the requested node's list (NUMA_NO_NODE: the CPU's), then, unless a
        node was asked for with __GFP_THISNODE, get_any_partial."""
        # (a slab can be pfmemalloc only on a page source with reserves: else no rights
        # are asked for)
        if self.nr_nodes == 1:
            if not self._node_partial:
                return None
            return self._get_partial_node(
                cpu, self._page_is_pfmemalloc is None or self._reserve_rights(gfp))
        rights = self._page_is_pfmemalloc is None or self._reserve_rights(gfp)
        search = self._cpu_node[cpu] if node < 0 else node
        if self._nodes[search]:
            chosen = self._get_partial_node(cpu, rights, search)
            if chosen is not None or (node >= 0 and gfp & _GFP_THISNODE):
                return chosen
        elif node >= 0 and gfp & _GFP_THISNODE:
            return None
        return self._get_any_partial(cpu, rights)

    def _get_any_partial(self, cpu: int, rights: bool) -> Slab | None:
        """get_any_partial: the nodes of the CPU's zonelist (itself first) that hold more than
        min_partial partial slabs, in order. Linux first skips the whole search when
        get_cycles() % 1024 > remote_node_defrag_ratio (1000 by default: 23 times in 1024);
        kmem always searches, the deterministic 1001-in-1024 case."""
        assert self._numa is not None
        for candidate in self._numa.zonelist[self._cpu_node[cpu]]:
            if len(self._nodes[candidate]) > self.min_partial:
                chosen = self._get_partial_node(cpu, rights, candidate)
                if chosen is not None:
                    return chosen
        return None

    def _get_partial_node(self, cpu: int, rights: bool = True, nid: int = 0) -> Slab | None:
        """get_partial_node on node ``nid``: the first slab the allocation may use
        (pfmemalloc_match), and a few more for the cpu's partial stack; None when no slab
        matches."""
        node = self._nodes[nid]
        if rights or not any(slab.pfmemalloc for slab in node):
            chosen, _ = node.popitem(last=False)
            self._stat[ALLOC_FROM_PARTIAL] += 1
            limit = self.cpu_partial_slabs
            # (0 only for debug caches, which have their own path, and 7.0's, another class)
            if limit:  # pragma: no branch
                moved = 0
                while node:
                    slab, _ = node.popitem(last=False)
                    self._put_cpu_partial(slab, cpu, drain=False)
                    self._stat[CPU_PARTIAL_NODE] += 1
                    moved += 1
                    if moved > limit // 2:
                        break
            return chosen
        found: Slab | None = None
        moved = 0
        limit = self.cpu_partial_slabs
        for slab in list(node):  # the list walk, passing over pfmemalloc slabs
            if slab.pfmemalloc:
                continue
            del node[slab]
            if found is None:
                found = slab
                self._stat[ALLOC_FROM_PARTIAL] += 1
            else:
                self._put_cpu_partial(slab, cpu, drain=False)
                self._stat[CPU_PARTIAL_NODE] += 1
                moved += 1
            if not limit or moved > limit // 2:
                break
        return found

    # -- free ----------------------------------------------------------------------------------

    def free(self, address: int, cpu: int = 0) -> None:
        """Free the object at ``address`` on ``cpu`` (do_slab_free)."""
        self._lock_acquire()
        try:
            try:  # find the slab and check that address is one of its allocated objects
                cpu_slab = self._cpu_slab[cpu]
                slab = self._slab_of_pfn[address >> self._page_shift]
                size = self.size
                offset = address - slab.base  # >= 0: no colour nor red zone in fast caches
                index = offset // size
                if index * size != offset or slab.used[index] != 1 or cpu.__class__ is not int or (
                    address.__class__ is not int  # (False would free address 0)
                ):
                    return self._free_other(address, cpu)
            except (KeyError, TypeError, IndexError):  # (an InvalidTypeError lands here too)
                return self._free_other(address, cpu)
            slab.used[index] = 0
            if slab is cpu_slab:  # the fast path: push on this CPU's cpu slab freelist
                slab.freelist.append(index)
                self._fast[1] += 1
                return
            self._free_slowpath(slab, index, cpu)
        finally:
            self._lock_release()

    def _free_unlocked(self, address: int, cpu: int = 0) -> None:
        try:
            cpu_slab = self._cpu_slab[cpu]
            slab = self._slab_of_pfn[address >> self._page_shift]
            size = self.size
            offset = address - slab.base
            index = offset // size
            if index * size != offset or slab.used[index] != 1 or cpu.__class__ is not int or (
                address.__class__ is not int
            ):
                return self._free_other(address, cpu)
        except (KeyError, TypeError, IndexError):
            return self._free_other(address, cpu)
        slab.used[index] = 0
        if slab is cpu_slab:
            slab.freelist.append(index)
            self._fast[1] += 1
            return
        self._free_slowpath(slab, index, cpu)

    def _free_slowpath(self, slab: Slab, index: int, cpu: int) -> None:
        """__slab_free: a slab that is not this CPU's cpu slab."""
        stat = self._stat
        stat[FREE_SLOWPATH] += 1
        where = slab.where
        if where == ON_CPU_PARTIAL:  # it has free objects already: it stays where it is
            slab.freelist.append(index)
            return
        if where == ON_CPU:  # another CPU's cpu slab
            slab.remote.append(index)
            stat[FREE_FROZEN] += 1
            return
        freelist = slab.freelist
        was_full = not freelist
        freelist.append(index)
        empty = len(freelist) == slab.objects
        node = self._nodes[slab.node]  # get_node(s, slab_nid(slab))
        if self.cpu_partial:
            if was_full:
                self._put_cpu_partial(slab, cpu, drain=True)
                stat[CPU_PARTIAL_FREE] += 1
                return
            if slab.where != ON_NODE_PARTIAL:
                # (defensive: a slab with free objects that is no cpu slab and on no cpu
                # partial stack -- both returned above -- is on the node list)
                return  # pragma: no cover
        elif was_full:
            # No cpu partial lists (debug caches, cpu_partial 0): back to the node list.
            self._full.pop(slab, None)
            if empty and len(node) >= self.min_partial:
                self._discard_slab(slab, cpu=cpu)
                return
            node[slab] = None
            slab.where = ON_NODE_PARTIAL
            stat[FREE_ADD_PARTIAL] += 1
            return
        if empty and len(node) >= self.min_partial and slab.where == ON_NODE_PARTIAL:
            del node[slab]
            stat[FREE_REMOVE_PARTIAL] += 1
            self._discard_slab(slab, cpu=cpu)

    def _put_cpu_partial(self, slab: Slab, cpu: int, *, drain: bool) -> None:
        """put_cpu_partial: push onto the cpu's stack, draining a full stack to the node first."""
        partial = self._cpu_partial[cpu]
        if drain and len(partial) >= self.cpu_partial_slabs:
            self._put_partials(partial, cpu)
            self._stat[CPU_PARTIAL_DRAIN] += 1
        partial.append(slab)
        slab.where = ON_CPU_PARTIAL
        slab.cpu = cpu

    def _put_partials(self, partial: list[Slab], cpu: int) -> None:
        """__put_partials on ``cpu``: the stack, head first, to the node list tail; empty
        extras discarded (DEACTIVATE_EMPTY), last found first: Linux stacks them on a singly
        linked list. Each slab goes to its own node's list."""
        nodes = self._nodes
        discard = []
        while partial:
            slab = partial.pop()
            node = nodes[slab.node]
            if len(slab.freelist) == slab.objects and len(node) >= self.min_partial:
                discard.append(slab)
            else:
                node[slab] = None
                slab.where = ON_NODE_PARTIAL
                slab.cpu = -1
                self._stat[FREE_ADD_PARTIAL] += 1
        for slab in reversed(discard):
            slab.where = ON_NONE
            slab.cpu = -1
            self._stat[DEACTIVATE_EMPTY] += 1
            self._discard_slab(slab, cpu=cpu)

    # -- flushing and shrinking ----------------------------------------------------------------

    def _deactivate_slab(self, slab: Slab, cpu: int) -> None:
        """deactivate_slab on ``cpu``: a cpu slab goes back, remote frees merged after the
        cpu's freelist."""
        stat = self._stat
        if slab.remote:
            stat[DEACTIVATE_REMOTE_FREES] += 1
            head = False
            merged = array("I", slab.remote)
            merged.extend(slab.freelist)  # the cpu's freelist stays in front (popped first)
            slab.freelist = merged
            slab.remote = array("I")
        else:
            head = True
        slab.cpu = -1
        node = self._nodes[slab.node]
        if len(slab.freelist) == slab.objects and len(node) >= self.min_partial:
            stat[DEACTIVATE_EMPTY] += 1
            slab.where = ON_NONE
            self._discard_slab(slab, cpu=cpu)
        elif slab.freelist:
            node[slab] = None
            if head:
                node.move_to_end(slab, last=False)
            slab.where = ON_NODE_PARTIAL
            stat[DEACTIVATE_TO_HEAD if head else DEACTIVATE_TO_TAIL] += 1
        else:
            slab.where = ON_NONE
            stat[DEACTIVATE_FULL] += 1

    def flush_cpu(self, cpu: int) -> None:
        """flush_slab + put_partials_cpu: the CPU's cpu slab and partial stack go to the node."""
        if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            cpu = self._plain_cpu(cpu)
        with self._lock:
            self._flush_cpu(cpu)

    def _flush_cpu(self, cpu: int) -> None:
        slab = self._cpu_slab[cpu]
        if slab is not None:
            self._cpu_slab[cpu] = None
            self._deactivate_slab(slab, cpu)  # (flush_all runs each CPU's flush on that CPU)
            self._stat[CPUSLAB_FLUSH] += 1
        self._put_partials(self._cpu_partial[cpu], cpu)

    def shrink(self) -> int:
        """kmem_cache_shrink: flush every CPU, then __kmem_cache_do_shrink: discard every empty
        node partial slab and sort the others, fewest free objects first; return how many
        slabs were discarded.

        Linux moves each slab with 1..SHRINK_PROMOTE_MAX free objects to the head of a bucket
        per free count (so a bucket holds its slabs in reverse list order), splices the
        buckets back in front of the slabs with more free objects, fullest bucket first, and
        frees the empty slabs last found first, without a FREE_SLAB count.
        """
        with self._lock:
            return self._shrink()

    def _shrink(self) -> int:
        for cpu in range(self.nr_cpus):
            self._flush_cpu(cpu)
        return sum(self._shrink_node(node) for node in self._nodes)

    def _shrink_node(self, node: OrderedDict[Slab, None]) -> int:
        """__kmem_cache_do_shrink of one node's list."""
        discard = []
        promote: list[list[Slab]] = [[] for _ in range(SHRINK_PROMOTE_MAX)]
        for slab in list(node):
            free = len(slab.freelist)
            if free == slab.objects:
                del node[slab]
                slab.where = ON_NONE
                discard.append(slab)
            elif free <= SHRINK_PROMOTE_MAX:
                promote[free - 1].append(slab)
        for bucket in reversed(promote):
            for slab in bucket:
                node.move_to_end(slab, last=False)
        for slab in reversed(discard):
            self._discard_slab(slab, counted=False)
        self._changes += len(discard)  # (uncounted discards: change_count must still move)
        return len(discard)

    # -- reports and invariants ----------------------------------------------------------------

    def _lists(self) -> Iterator[tuple[int, int, Slab]]:
        for cpu in range(self.nr_cpus):
            slab = self._cpu_slab[cpu]
            if slab is not None:
                yield ON_CPU, cpu, slab
            for slab in reversed(self._cpu_partial[cpu]):
                yield ON_CPU_PARTIAL, cpu, slab
        for node in self._nodes:
            for slab in node:
                yield ON_NODE_PARTIAL, -1, slab
        for slab in self._full:
            yield ON_FULL, -1, slab

    def _active_objs(self) -> int:
        """SLUB counts every object as active except those free on node partial slabs."""
        total = sum(s.objects for s in self._slabs())
        return total - sum(len(s.freelist) for node in self._nodes for s in node)

    def _check_lists(self) -> None:
        seen: set[int] = set()
        for where, cpu, slab in self._lists():
            name = f"{self.name}: slab at pfn {slab.pfn:#x}"
            if id(slab) in seen:
                raise AssertionError(f"{name} is on two lists")
            seen.add(id(slab))
            if slab.where != where or slab.cpu != cpu:
                raise AssertionError(f"{name}: where={slab.where} cpu={slab.cpu}, on {where}")
            if self._slab_of_pfn.get(slab.pfn) is not slab:
                raise AssertionError(f"{name}: on a list but not in the cache")
            if where == ON_CPU_PARTIAL and not slab.freelist:
                raise AssertionError(f"{name}: full slab on a cpu partial list")
            if where == ON_NODE_PARTIAL and not slab.freelist:
                raise AssertionError(f"{name}: full slab on the node partial list")
            if where == ON_FULL and slab.freelist:
                raise AssertionError(f"{name}: slab with free objects on the full list")
        self._check_nodes()
        for cpu in range(self.nr_cpus):
            if len(self._cpu_partial[cpu]) > max(self.cpu_partial_slabs, 0) + (
                self.cpu_partial_slabs // 2 + 1
            ):
                raise AssertionError(f"{self.name}: cpu {cpu} partial stack overflows")
        for slab in self._slabs():
            if id(slab) not in seen:
                if slab.where != ON_NONE:
                    raise AssertionError(f"{self.name}: slab {slab.pfn:#x} lost from its list")
                if slab.freelist or slab.remote:
                    raise AssertionError(
                        f"{self.name}: slab {slab.pfn:#x} with free objects is on no list")
        if self.cpu_partial == 0 and any(self._cpu_partial):
            raise AssertionError(f"{self.name}: cpu partial slabs without cpu_partial")


class SlubDebugCache(SlubCache):
    """A SLUB cache with debug flags: Linux's alloc_single_from_partial / free_to_partial_list.

    No cpu slab: every allocation takes one object from the head of the node partial list (or
    a new slab, added at the head when it keeps free objects), under the node lock; full slabs
    move to the full list; every object is checked on allocation and free. pfmemalloc_match
    holds here too: an allocation without the right to the reserves passes over pfmemalloc
    partial slabs (get_partial_node); a new slab serves it whatever it is
    (alloc_single_from_new_slab does not look).
    """

    # The plain locked wrappers around this class's own paths (SlubCache inlines its fast path).
    alloc = KmemCache.alloc
    free = KmemCache.free

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        assert self._debug is not None
        self._debugger: Final[SlabDebugger] = self._debug

    def alloc_node(self, cpu: int = 0, gfp: int = GFP_KERNEL, node: int = NUMA_NO_NODE) -> int:
        node = self._check_node(node)
        if node == NUMA_NO_NODE or self.nr_nodes == 1:
            return self.alloc(cpu, gfp)
        with self._lock:
            return self._alloc_unlocked(cpu, gfp, node)

    def _alloc_unlocked(self, cpu: int = 0, gfp: int = GFP_KERNEL,
                        node: int = NUMA_NO_NODE) -> int:
        if gfp.__class__ is not int or gfp >> 32:
            check_gfp(gfp)
        if cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            cpu = self._plain_cpu(cpu)
        if self.destroyed:
            raise self._bad_free(0)
        stat = self._stat
        stat[ALLOC_SLOWPATH] += 1
        slab = self._debug_partial(cpu, gfp, node)
        new = slab is None
        if slab is None:
            slab = self._new_slab(gfp, cpu, node)
            stat[ALLOC_SLAB] += 1
        address = slab.base + slab.freelist[-1] * self.size
        try:
            self._debugger.on_alloc(self.name, address, cpu)
        except BaseException:
            if new:  # pragma: no cover -- only an interrupt: a new slab's objects are freshly
                self._discard_slab(slab, cpu=cpu)  # poisoned and red-zoned (ctor: no poison)
            raise
        self._take(slab)  # (no ALLOC_FROM_PARTIAL: Linux counts it only off the debug path)
        partial = self._nodes[slab.node]
        if not slab.freelist:
            partial.pop(slab, None)
            self._full[slab] = None
            slab.where = ON_FULL
        elif new:
            partial[slab] = None
            partial.move_to_end(slab, last=False)
            slab.where = ON_NODE_PARTIAL
        return address

    def _debug_partial(self, cpu: int, gfp: int, node: int) -> Slab | None:
        """get_partial for alloc_single_from_partial: the first slab pfmemalloc_match lets
        this allocation use on the requested (or the CPU's) node, then on the zonelist's
        nodes holding more than min_partial slabs (get_any_partial), unless __GFP_THISNODE
        pins a requested node."""
        search = self._cpu_node[cpu] if node < 0 else node
        candidates = [search]
        if self._numa is not None and not (node >= 0 and gfp & _GFP_THISNODE):
            candidates += [n for n in self._numa.zonelist[self._cpu_node[cpu]]
                           if len(self._nodes[n]) > self.min_partial]
        for nid in candidates:
            partial = self._nodes[nid]
            if partial:
                slab: Slab | None = next(iter(partial))
                if slab.pfmemalloc and not self._reserve_rights(gfp):  # type: ignore[union-attr]
                    slab = next((s for s in partial if not s.pfmemalloc), None)
                if slab is not None:
                    return slab
        return None

    def _free_unlocked(self, address: int, cpu: int = 0) -> None:
        if self.destroyed or cpu.__class__ is not int or not 0 <= cpu < self.nr_cpus:
            return self._free_other(address, cpu)
        slab, index = self._slab_of(address)
        self._debugger.check_free(self.name, address)
        slab.used[index] = 0
        self._debugger.on_free(address, cpu)
        self._free_slowpath(slab, index, cpu)

    def track(self, address: int) -> tuple[object, object]:
        """(last alloc, last free) Track records of the object at ``address`` (STORE_USER)."""
        with self._lock:
            slab = self._slab_of_pfn.get(address >> self._page_shift) if (
                address.__class__ is int and address >= 0) else None
            offset = address - slab.base if slab is not None else -1
            if slab is None or offset < 0 or offset % self.size or (
                    offset // self.size >= slab.objects):
                raise self._bad_free(address)  # not an object's start: the specific error
        return self._debugger.track(address, 0), self._debugger.track(address, 1)
