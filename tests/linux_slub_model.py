"""A deliberately plain model of SLUB's list rules (Linux 6.18 mm/slub.c), to check kmem against.

Written from mm/slub.c's functions, one Python method per kernel function and named after it,
with Python lists read head first (as a list_head is walked through ->next) and linear searches:
slow and obvious, sharing no code with kmem. Its pages come from a page allocator model (the
buddy model of tests/linux_buddy_model.py), so slab addresses can be compared, not only shapes.

State, per CPU c and for the one node (struct kmem_cache_cpu, struct kmem_cache_node):

    cpu_slab[c]       c->slab, the cpu slab (frozen); None when there is none
    cpu_freelist[c]   c->freelist, the lockless freelist of the cpu slab (object indices)
    cpu_partial[c]    the c->partial chain, head first; every slab on it remembers in ``slabs``
                      the chain's length when it was pushed (put_cpu_partial)
    node_partial      n->partial, head first
    full              n->full (debug caches only)

A slab (struct slab): ``freelist`` (slab->freelist, head first), ``inuse`` (slab->inuse: the
objects not on slab->freelist, so a cpu slab counts its cpu_freelist objects as in use),
``frozen`` (it is a cpu slab), ``on_node_partial`` (the SL_partial / PG_workingset flag).

Limits (kmem_cache_open, set_cpu_partial, slub_set_cpu_partial), computed here from the slab
size, not taken from kmem: min_partial = ilog2(size) / 2 clamped to [MIN_PARTIAL 5, MAX_PARTIAL
10]; cpu_partial = 0 for a debug cache (kmem_cache_has_cpu_partial is false), else 6 if size >=
PAGE_SIZE, 24 if >= 1024, 52 if >= 256, else 120; cpu_partial_slabs =
DIV_ROUND_UP(cpu_partial * 2, objects per slab).

Counters: the CONFIG_SLUB_STATS items each kernel function stat()s, named as the
/sys/kernel/slab/<cache>/ files.

NUMA (``nr_nodes`` > 1, ``pages`` a NodePages): each node has its own partial list
(``nodes[n]``; ``node_partial`` is node 0's) and its own zone; cpu c is on node
``cpu_node[c]``; a slab's node is the zone its pages came from (slab_nid). new_slab asks the
allocating CPU's node (or the one requested) first, then the others in zonelist order unless
__GFP_THISNODE; get_partial searches the requested (or local) node, then get_any_partial the
zonelist's nodes with more than min_partial partial slabs (remote_node_defrag_ratio taken as
always letting it search); node_match for a requested node: a cpu slab of another node is
deactivated (alloc_node_mismatch), cpu partial slabs of other nodes go to their nodes' lists.
A free is node-blind in 6.17 (do_slab_free); __slab_free works on the slab's node.

Not modelled (kmem does not simulate them either): pfmemalloc, preemption and
cmpxchg retries, 6.18's opt-in sheaves (no cache here has a sheaf_capacity), freelist
randomisation, SLAB_TYPESAFE_BY_RCU's deferred free. flush_all() runs every CPU's flush work in
parallel in Linux; the model flushes CPU 0, 1, ... in turn.
"""

from __future__ import annotations

from typing import Protocol

MIN_PARTIAL = 5
MAX_PARTIAL = 10
SHRINK_PROMOTE_MAX = 32

STAT_ITEMS = (
    "alloc_fastpath", "alloc_slowpath", "free_fastpath", "free_slowpath", "free_frozen",
    "free_add_partial", "free_remove_partial", "alloc_from_partial", "alloc_slab",
    "alloc_refill", "alloc_node_mismatch", "free_slab", "cpuslab_flush", "deactivate_full",
    "deactivate_empty", "deactivate_to_head", "deactivate_to_tail", "deactivate_remote_frees",
    "deactivate_bypass", "order_fallback", "cpu_partial_alloc", "cpu_partial_free",
    "cpu_partial_node", "cpu_partial_drain",
)


class PageAllocator(Protocol):
    def alloc_pages(self, order: int) -> int | None: ...

    def free_pages(self, pfn: int, order: int) -> None: ...


THISNODE = 1 << 21  # __GFP_THISNODE


class NodePages:
    """One zone per node: separate page allocator models, node n's pfns offset by
    n * node_pages; alloc_pages_node walks the zonelist (the node, then those above it, then
    those below) unless __GFP_THISNODE."""

    def __init__(self, zones: list[PageAllocator], node_pages: int) -> None:
        self.zones = zones
        self.node_pages = node_pages

    def zonelist(self, node: int) -> list[int]:
        n = len(self.zones)
        return [node, *range(node + 1, n), *range(node)]

    def alloc_pages_node(self, order: int, node: int, gfp: int = 0) -> int | None:
        for nid in (self.zonelist(node)[:1] if gfp & THISNODE else self.zonelist(node)):
            pfn = self.zones[nid].alloc_pages(order)
            if pfn is not None:
                return pfn + nid * self.node_pages
        return None

    def alloc_pages(self, order: int) -> int | None:
        return self.alloc_pages_node(order, 0)

    def free_pages(self, pfn: int, order: int) -> None:
        nid = pfn // self.node_pages
        self.zones[nid].free_pages(pfn - nid * self.node_pages, order)

    def node_of(self, pfn: int) -> int:
        return pfn // self.node_pages


class ModelSlab:
    def __init__(self, pfn: int, order: int, objects: int, node: int = 0) -> None:
        self.pfn = pfn
        self.node = node  # slab_nid
        self.order = order
        self.objects = objects
        self.freelist = list(range(objects))  # a new slab's objects in address order
        self.inuse = 0
        self.frozen = False
        self.on_node_partial = False
        self.slabs = 0  # chain length when pushed on a cpu partial chain

    def __repr__(self) -> str:
        return f"ModelSlab(pfn={self.pfn}, inuse={self.inuse}/{self.objects})"


def ilog2(value: int) -> int:
    return value.bit_length() - 1


class LinuxSlubModel:
    def __init__(self, *, pages: PageAllocator, size: int, order: int, min_order: int,
                 nr_cpus: int, debug: bool, page_size: int = 4096,
                 red_left_pad: int = 0, nr_nodes: int = 1) -> None:
        self.pages = pages
        self.nr_nodes = nr_nodes
        self.cpu_node = [cpu * nr_nodes // nr_cpus for cpu in range(nr_cpus)]
        self.size = size
        self.order = order
        self.min_order = min_order
        self.page_size = page_size
        self.red_left_pad = red_left_pad
        self.debug = debug
        self.objects = (page_size << order) // size  # oo_objects(s->oo)
        self.min_partial = min(MAX_PARTIAL, max(MIN_PARTIAL, ilog2(size) // 2))
        if debug:
            self.cpu_partial = 0
        elif size >= page_size:
            self.cpu_partial = 6
        elif size >= 1024:
            self.cpu_partial = 24
        elif size >= 256:
            self.cpu_partial = 52
        else:
            self.cpu_partial = 120
        self.cpu_partial_slabs = -(-self.cpu_partial * 2 // self.objects)
        self.cpu_slab: list[ModelSlab | None] = [None] * nr_cpus
        self.cpu_freelist: list[list[int]] = [[] for _ in range(nr_cpus)]
        self.cpu_partial_chain: list[list[ModelSlab]] = [[] for _ in range(nr_cpus)]
        self.nodes: list[list[ModelSlab]] = [[] for _ in range(nr_nodes)]
        self.node_partial = self.nodes[0]
        self.full: list[ModelSlab] = []
        self.slabs: list[ModelSlab] = []  # every slab of the cache, for address lookups
        self.stat = dict.fromkeys(STAT_ITEMS, 0)
        # smp_processor_id() of the kernel code running now: each entry point sets it; every
        # discard_slab's pages go to __free_pages on it, recorded as (pfn, order, cpu)
        self.this_cpu = 0
        self.freed: list[tuple[int, int, int]] = []

    def has_cpu_partial(self) -> bool:  # kmem_cache_has_cpu_partial
        return not self.debug

    # -- addresses ------------------------------------------------------------------------------

    def address(self, slab: ModelSlab, index: int) -> int:
        return slab.pfn * self.page_size + self.red_left_pad + index * self.size

    def find(self, address: int) -> tuple[ModelSlab, int]:
        for slab in self.slabs:
            start = slab.pfn * self.page_size + self.red_left_pad
            if start <= address < start + slab.objects * self.size:
                assert (address - start) % self.size == 0
                return slab, (address - start) // self.size
        raise AssertionError(f"{address:#x} is in no slab of the model")

    # -- slabs: allocate_slab, discard_slab, list helpers -----------------------------------------

    def page_alloc(self, order: int, node: int, gfp: int) -> int | None:
        if self.nr_nodes == 1:
            return self.pages.alloc_pages(order)
        pages = self.pages
        assert isinstance(pages, NodePages)
        if node < 0:
            node = self.cpu_node[self.this_cpu]
        return pages.alloc_pages_node(order, node, gfp)

    def allocate_slab(self, node: int = -1, gfp: int = 0) -> ModelSlab | None:
        order = self.order
        pfn = self.page_alloc(order, node, gfp)
        if pfn is None:
            order = self.min_order  # s->min: Linux retries even when it is the same order
            pfn = self.page_alloc(order, node, gfp)
            if pfn is None:
                return None
            self.stat["order_fallback"] += 1
        nid = 0 if self.nr_nodes == 1 else self.pages.node_of(pfn)  # type: ignore[attr-defined]
        slab = ModelSlab(pfn, order, (self.page_size << order) // self.size, nid)
        self.slabs.append(slab)
        return slab

    def discard_slab(self, slab: ModelSlab) -> None:
        self.slabs.remove(slab)
        self.pages.free_pages(slab.pfn, slab.order)  # free_slab -> __free_pages, on this CPU
        self.freed.append((slab.pfn, slab.order, self.this_cpu))

    def add_partial(self, slab: ModelSlab, tail: bool) -> None:
        n = self.nodes[slab.node]
        if tail:
            n.append(slab)
        else:
            n.insert(0, slab)
        slab.on_node_partial = True

    def remove_partial(self, slab: ModelSlab) -> None:
        self.nodes[slab.node].remove(slab)
        slab.on_node_partial = False

    # -- allocation -----------------------------------------------------------------------------

    def node_match(self, slab: ModelSlab, node: int) -> bool:
        return node == -1 or slab.node == node

    def alloc(self, cpu: int, node: int = -1, gfp: int = 0) -> int | None:
        """slab_alloc_node: the address of the new object, None when no page can be had."""
        self.this_cpu = cpu
        slab = self.cpu_slab[cpu]
        if slab is not None and self.cpu_freelist[cpu] and self.node_match(slab, node):
            index = self.cpu_freelist[cpu].pop(0)
            self.stat["alloc_fastpath"] += 1
            return self.address(slab, index)
        return self.slab_alloc(cpu, node, gfp)

    def load_freelist(self, cpu: int, slab: ModelSlab, freelist: list[int]) -> int:
        self.cpu_slab[cpu] = slab
        self.cpu_freelist[cpu] = freelist[1:]
        return self.address(slab, freelist[0])

    def get_freelist(self, slab: ModelSlab) -> list[int]:
        freelist = slab.freelist
        slab.freelist = []
        slab.inuse = slab.objects
        slab.frozen = bool(freelist)
        return freelist

    def freeze_slab(self, slab: ModelSlab) -> list[int]:
        freelist = slab.freelist
        slab.freelist = []
        slab.inuse = slab.objects
        slab.frozen = True
        return freelist

    def slab_alloc(self, cpu: int, node: int = -1, gfp: int = 0) -> int | None:
        """___slab_alloc."""
        self.stat["alloc_slowpath"] += 1
        if self.debug:
            return self.debug_alloc(cpu, node, gfp)
        slab = self.cpu_slab[cpu]
        if slab is not None and not self.node_match(slab, node):
            self.stat["alloc_node_mismatch"] += 1
            freelist = self.cpu_freelist[cpu]
            self.cpu_slab[cpu] = None
            self.cpu_freelist[cpu] = []
            self.deactivate_slab(slab, freelist)
            slab = None
        if slab is not None:
            freelist = self.get_freelist(slab)
            if freelist:
                self.stat["alloc_refill"] += 1
                return self.load_freelist(cpu, slab, freelist)
            self.cpu_slab[cpu] = None
            self.stat["deactivate_bypass"] += 1
        # new_slab:
        while self.cpu_partial_chain[cpu]:
            slab = self.cpu_partial_chain[cpu].pop(0)
            if not self.node_match(slab, node):
                self.put_partials([slab])
                continue
            self.stat["cpu_partial_alloc"] += 1
            return self.load_freelist(cpu, slab, self.freeze_slab(slab))
        slab = self.get_partial(cpu, node, gfp)
        if slab is not None:
            return self.load_freelist(cpu, slab, self.freeze_slab(slab))
        slab = self.allocate_slab(node, gfp)
        if slab is None:
            return None
        self.stat["alloc_slab"] += 1
        freelist = slab.freelist
        slab.freelist = []
        slab.inuse = slab.objects
        slab.frozen = True
        return self.load_freelist(cpu, slab, freelist)

    def get_partial(self, cpu: int, node: int, gfp: int) -> ModelSlab | None:
        searchnode = self.cpu_node[cpu] if node == -1 else node
        slab = self.get_partial_node(cpu, searchnode)
        if slab is not None or (node != -1 and gfp & THISNODE):
            return slab
        return self.get_any_partial(cpu)

    def get_any_partial(self, cpu: int) -> ModelSlab | None:
        if self.nr_nodes == 1:
            return None  # (!CONFIG_NUMA)
        pages = self.pages
        assert isinstance(pages, NodePages)
        for nid in pages.zonelist(self.cpu_node[cpu]):
            if len(self.nodes[nid]) > self.min_partial:
                slab = self.get_partial_node(cpu, nid)
                if slab is not None:
                    return slab
        return None

    def get_partial_node(self, cpu: int, nid: int = 0) -> ModelSlab | None:
        partial = None
        partial_slabs = 0
        for slab in list(self.nodes[nid]):
            self.remove_partial(slab)
            if partial is None:
                partial = slab
                self.stat["alloc_from_partial"] += 1
            else:
                self.put_cpu_partial(slab, cpu, drain=False)
                self.stat["cpu_partial_node"] += 1
                partial_slabs += 1
            if not self.has_cpu_partial() or partial_slabs > self.cpu_partial_slabs // 2:
                break
        return partial

    def debug_alloc(self, cpu: int = 0, node: int = -1, gfp: int = 0) -> int | None:
        """The kmem_cache_debug() branches: alloc_single_from_partial / _from_new_slab."""
        searchnode = self.cpu_node[cpu] if node == -1 else node
        found = self.nodes[searchnode][0] if self.nodes[searchnode] else None
        if found is None and not (node != -1 and gfp & THISNODE) and self.nr_nodes > 1:
            for nid in self.pages.zonelist(self.cpu_node[cpu]):  # type: ignore[attr-defined]
                if len(self.nodes[nid]) > self.min_partial:
                    found = self.nodes[nid][0]
                    break
        if found is not None:
            slab = found
            index = slab.freelist.pop(0)
            slab.inuse += 1
            if slab.inuse == slab.objects:
                self.remove_partial(slab)
                self.full.insert(0, slab)
            return self.address(slab, index)  # no ALLOC_FROM_PARTIAL on this path
        new = self.allocate_slab(node, gfp)
        if new is None:
            return None
        slab = new
        self.stat["alloc_slab"] += 1
        index = slab.freelist.pop(0)
        slab.inuse = 1
        if slab.inuse == slab.objects:
            self.full.insert(0, slab)
        else:
            self.add_partial(slab, tail=False)
        return self.address(slab, index)

    # -- cpu partial chains ---------------------------------------------------------------------

    def put_cpu_partial(self, slab: ModelSlab, cpu: int, drain: bool) -> None:
        chain = self.cpu_partial_chain[cpu]
        to_put: list[ModelSlab] = []
        slabs = 0
        if chain:
            if drain and chain[0].slabs >= self.cpu_partial_slabs:
                to_put = chain
                self.cpu_partial_chain[cpu] = chain = []
            else:
                slabs = chain[0].slabs
        slabs += 1
        slab.slabs = slabs
        chain.insert(0, slab)
        if to_put:
            self.put_partials(to_put)
            self.stat["cpu_partial_drain"] += 1

    def put_partials(self, chain: list[ModelSlab]) -> None:
        """__put_partials: the chain, head first, to the node list's tail."""
        slab_to_discard: list[ModelSlab] = []
        for slab in chain:
            if slab.inuse == 0 and len(self.nodes[slab.node]) >= self.min_partial:
                slab_to_discard.insert(0, slab)  # pushed on a singly linked stack
            else:
                self.add_partial(slab, tail=True)
                self.stat["free_add_partial"] += 1
        for slab in slab_to_discard:
            self.stat["deactivate_empty"] += 1
            self.discard_slab(slab)
            self.stat["free_slab"] += 1

    # -- free -----------------------------------------------------------------------------------

    def free(self, address: int, cpu: int) -> None:
        """do_slab_free: the fast path onto this CPU's cpu slab, else __slab_free."""
        self.this_cpu = cpu
        slab, index = self.find(address)
        if slab is self.cpu_slab[cpu]:
            self.cpu_freelist[cpu].insert(0, index)
            self.stat["free_fastpath"] += 1
            return
        self.slab_free(slab, index, cpu)

    def slab_free(self, slab: ModelSlab, index: int, cpu: int) -> None:
        """__slab_free."""
        self.stat["free_slowpath"] += 1
        if self.debug:
            self.free_to_partial_list(slab, index)
            return
        prior = bool(slab.freelist)
        slab.freelist.insert(0, index)
        slab.inuse -= 1
        if slab.frozen:
            self.stat["free_frozen"] += 1
            return
        if not prior:  # it was full: onto this CPU's partial chain
            self.put_cpu_partial(slab, cpu, drain=True)
            self.stat["cpu_partial_free"] += 1
            return
        if slab.inuse or not slab.on_node_partial:
            return  # still in use, or on a cpu partial chain: not the node's business
        if len(self.nodes[slab.node]) >= self.min_partial:
            self.remove_partial(slab)
            self.stat["free_remove_partial"] += 1
            self.stat["free_slab"] += 1
            self.discard_slab(slab)

    def free_to_partial_list(self, slab: ModelSlab, index: int) -> None:
        prior = bool(slab.freelist)
        slab.freelist.insert(0, index)
        slab.inuse -= 1
        slab_free = slab.inuse == 0 and len(self.nodes[slab.node]) >= self.min_partial
        if not prior:  # was on the full list
            self.full.remove(slab)
            if not slab_free:
                self.add_partial(slab, tail=True)
                self.stat["free_add_partial"] += 1
        elif slab_free:
            self.remove_partial(slab)
            self.stat["free_remove_partial"] += 1
        if slab_free:
            self.stat["free_slab"] += 1
            self.discard_slab(slab)

    # -- flushing and shrinking -----------------------------------------------------------------

    def deactivate_slab(self, slab: ModelSlab, freelist: list[int]) -> None:
        tail = False
        if slab.freelist:
            self.stat["deactivate_remote_frees"] += 1
            tail = True
        slab.inuse -= len(freelist)
        slab.freelist = freelist + slab.freelist  # the cpu freelist spliced in front
        slab.frozen = False
        if slab.inuse == 0 and len(self.nodes[slab.node]) >= self.min_partial:
            self.stat["deactivate_empty"] += 1
            self.discard_slab(slab)
            self.stat["free_slab"] += 1
        elif slab.freelist:
            self.add_partial(slab, tail)
            self.stat["deactivate_to_tail" if tail else "deactivate_to_head"] += 1
        else:
            self.stat["deactivate_full"] += 1

    def flush_cpu(self, cpu: int) -> None:
        """flush_cpu_slab: flush_slab, then put_partials (flush_all queues it on ``cpu``)."""
        self.this_cpu = cpu
        slab = self.cpu_slab[cpu]
        if slab is not None:
            freelist = self.cpu_freelist[cpu]
            self.cpu_slab[cpu] = None
            self.cpu_freelist[cpu] = []
            self.deactivate_slab(slab, freelist)
            self.stat["cpuslab_flush"] += 1
        chain = self.cpu_partial_chain[cpu]
        self.cpu_partial_chain[cpu] = []
        if chain:
            self.put_partials(chain)

    def shrink(self, cpu: int = 0) -> None:
        """__kmem_cache_shrink on ``cpu``: flush_all (each CPU's flush on that CPU), then
        __kmem_cache_do_shrink."""
        for other in range(len(self.cpu_slab)):
            self.flush_cpu(other)
        self.this_cpu = cpu
        for n in self.nodes:  # for_each_kmem_cache_node
            discard: list[ModelSlab] = []
            promote: list[list[ModelSlab]] = [[] for _ in range(SHRINK_PROMOTE_MAX)]
            for slab in list(n):
                free = slab.objects - slab.inuse
                if free == slab.objects:
                    self.remove_partial(slab)
                    discard.insert(0, slab)  # list_move: to the head of the discard list
                elif free <= SHRINK_PROMOTE_MAX:
                    n.remove(slab)  # still counted in nr_partial: spliced back
                    promote[free - 1].insert(0, slab)
            for i in range(SHRINK_PROMOTE_MAX - 1, -1, -1):
                n[0:0] = promote[i]  # list_splice: to the head
            for slab in discard:
                self.discard_slab(slab)  # free_slab: no FREE_SLAB stat on this path

    # -- what a test compares -------------------------------------------------------------------

    def census(self) -> dict[str, int]:
        """The slab census CacheStats reports, from the model's own lists."""
        on_cpu = [s for s in self.cpu_slab if s is not None]
        cpu_partial = [s for chain in self.cpu_partial_chain for s in chain]
        allocated = 0
        empty = 0
        for slab in self.slabs:
            free = len(slab.freelist)
            if slab in on_cpu:
                free += len(self.cpu_freelist[self.cpu_slab.index(slab)])
            allocated += slab.objects - free
            empty += free == slab.objects
        return {
            "objects": allocated,
            "total_objects": sum(s.objects for s in self.slabs),
            "slabs": len(self.slabs),
            "partial_slabs": sum(len(n) for n in self.nodes),
            "cpu_slabs": len(on_cpu),
            "cpu_partial_slabs": len(cpu_partial),
            "full_slabs": len(self.slabs) - sum(len(n) for n in self.nodes) - len(on_cpu)
            - len(cpu_partial),
            "empty_slabs": empty,
        }
