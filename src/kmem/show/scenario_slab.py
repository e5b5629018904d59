"""The slab verbs of a scenario run: cache, obj, kmalloc, shrink, destroy and their frees.

``SlabVerbs`` is the half of kmem.show.scenario_run.ScenarioRun that drives the slab layer;
the run's own class holds the state (the allocators, the live names) and the buddy verbs. The
slab layer is booted on the first line that needs it, so buddy-only scenarios never pay for its
kmalloc caches. Every text says what the slab allocator did and whether pages came from, or
went back to, the buddy allocator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from kmem.page.buddy import BuddyAllocator
from kmem.show.explain import Step, clause, describe_alloc, describe_free, format_size
from kmem.show.scenario import Action, Allocation, Scenario, ScenarioNameError, StepResult
from kmem.slab.allocator import SlabAllocator
from kmem.slab.cache import KmemCache
from kmem.slab.slub_sheaves import PercpuSheavesCache


class SlabVerbs:
    """The slab verbs; mixed into ScenarioRun, whose state they read and change."""

    scenario: Scenario
    buddy: BuddyAllocator
    slab: SlabAllocator | None
    names: dict[str, Allocation]
    caches: dict[str, KmemCache]
    lines: dict[str, int]
    _slab_use: dict[tuple[int, int], int]
    _object_cache: dict[str, KmemCache]

    def _new_name(self, action: Action) -> str:
        raise NotImplementedError

    def _result(self, action: Action, name: str, steps: list[Step],
                highlight: list[tuple[int, int]], address: int | None = None,
                text: str | None = None) -> StepResult:
        raise NotImplementedError

    def _ensure_slab(self) -> SlabAllocator:
        """The slab layer, created on the first line that needs it (buddy-only scenarios never
        pay for its boot-time kmalloc caches)."""
        if self.slab is None:
            self.slab = SlabAllocator(self.buddy, nr_cpus=self.scenario.nr_cpus,
                                      policy=self.scenario.policy, kernel=self.scenario.kernel)
        return self.slab

    def _do_cache(self, action: Action) -> StepResult:
        slab = self._ensure_slab()
        name = str(action.args[0])
        if name in self.caches:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: cache {name!r} already exists"
            )
        size = int(action.args[1])
        cache = slab.kmem_cache_create(name, size, align=int(action.option("align", 0)),
                                       sheaf_capacity=int(action.option("sheaves", 0)))
        self.caches[name] = cache
        merged = ""
        if cache.name != name:
            merged = (f" merged into the existing cache {cache.name} (same slot size and"
                      " flags: Linux lets both names share one cache);")
        text = (
            f"cache {name}:{merged} {format_size(size)} objects in {cache.slab_size}-byte slots,"
            f" {cache.objs_per_slab} per slab of"
            f" {format_size(self.buddy.page_size << cache.order)} (order {cache.order});"
            " no slab yet: the first allocation takes pages from the buddy allocator."
        )
        if cache.sheaf_capacity:
            text += (f" Each CPU has a main sheaf of up to {cache.sheaf_capacity} objects in"
                     " front of the slabs (and a barn of spare sheaves): an allocation pops it,"
                     " a free pushes onto it.")
        return self._result(action, name, [], [], None, text)

    def _slab_alloc(self, action: Action, name: str, kind: str, size: int,
                    cache: KmemCache | None, do_alloc: Callable[[], int],
                    label: str | None = None) -> StepResult:
        """An object or kmalloc memory; ``label`` names the cache in the text (default: its
        name)."""
        before = self.buddy.nr_free
        in_sheaves = sheaf_places(cache)
        refills = _refills(cache)
        address = int(do_alloc())
        pfn = address >> self.buddy.page_shift
        block = self.buddy.block_at(pfn)
        cache_name = None if cache is None else cache.name
        alloc = Allocation(name, kind, address, size, block.pfn, block.order, cache_name)
        self.names[name] = alloc
        self.lines[name] = action.line
        if cache is not None:
            self._object_cache[name] = cache
            key = (id(cache), block.pfn)
            self._slab_use[key] = self._slab_use.get(key, 0) + 1
        steps: list[Step] = []
        if self.buddy.nr_free != before:
            steps = describe_alloc(self.buddy, before, block.pfn, block.order)
        cache_name = label or cache_name
        place = in_sheaves.get(address)
        refilled = _refills(cache) - refills
        if cache_name is not None and place is not None:
            text = (f"{name}: {place} of cache {cache_name} held a free object: it pops"
                    f" {address:#x} (its slab at pfn {block.pfn} already counted it as"
                    " allocated); no slab is touched, no pages from the buddy allocator.")
        elif cache_name is not None and refilled:
            text = (f"{name}: the main sheaf of cache {cache_name} was empty: it is refilled"
                    f" with {refilled} objects from the slabs"
                    + (f" ({clause(steps)})" if steps else "")
                    + f", and the allocation pops {address:#x}.")
        elif cache_name is None:
            text = (f"{name}: {format_size(size)} is too big for the kmalloc caches: "
                    f"{clause(steps)} straight from the buddy allocator.")
        elif steps:
            index = self._object_index(cache, block.pfn, address)
            text = (f"{name}: cache {cache_name} has no free object, so it takes a new slab "
                    f"of order {block.order} from the buddy allocator: {clause(steps)}; "
                    f"object {index} of the new slab, at {address:#x}.")
        else:
            index = self._object_index(cache, block.pfn, address)
            text = (f"{name}: cache {cache_name} has a free object in its slab at pfn "
                    f"{block.pfn}: object {index}, at {address:#x}; no pages from the buddy "
                    "allocator.")
        return self._result(action, name, steps, [(block.pfn, block.order)], address, text)

    def _object_index(self, cache: KmemCache | None, slab_pfn: int, address: int) -> int:
        """The object's index in its slab. Object i starts at slab start + offset + i * slot,
        where the offset (a classic slab's colour, a debug cache's left red zone) is smaller
        than a slot, so floor division by the slot size gives i exactly, in O(1)."""
        assert cache is not None
        return (address - (slab_pfn << self.buddy.page_shift)) // cache.slab_size

    def _do_obj(self, action: Action) -> StepResult:
        name = self._new_name(action)
        cache_name = str(action.args[1])
        cache = self._cache_named(action, cache_name)
        cpu = int(action.option("cpu", 0))
        label = cache_name if cache.name == cache_name else (
            f"{cache_name} (merged into {cache.name})")
        return self._slab_alloc(action, name, "obj", int(cache.object_size), cache,
                                lambda: cache.alloc(cpu=cpu), label)

    def _do_kmalloc(self, action: Action) -> StepResult:
        slab = self._ensure_slab()
        name = self._new_name(action)
        size = int(action.args[1])
        cpu = int(action.option("cpu", 0))
        cache = slab.kmalloc_cache_for(size)  # None: a large kmalloc, pages from the buddy
        return self._slab_alloc(action, name, "kmalloc", size, cache,
                                lambda: slab.kmalloc(size, cpu=cpu))

    def _cache_named(self, action: Action, name: str) -> KmemCache:
        cache = self.caches.get(name)
        if cache is None:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: no cache {name!r}"
                f" (caches: {', '.join(self.caches) or 'none'})"
            )
        return cache

    def _release_text(self, before: list[tuple[int, str]]) -> tuple[str, list[Step],
                                                                   list[tuple[int, int]]]:
        """Which slabs went back to the buddy allocator, and the free blocks they ended in."""
        if not before:
            return "it holds no slab, so no page goes back to the buddy allocator", [], []
        after = set(self._ensure_slab().slab_pages())
        gone = [pfn for pfn, name in before if (pfn, name) not in after]
        if not gone:
            return "no slab was empty: nothing goes back to the buddy allocator", [], []
        steps: list[Step] = []
        ends: list[tuple[int, int]] = []
        for pfn in gone:
            block = self.buddy.block_at(pfn)
            if (block.pfn, block.order) not in ends:
                ends.append((block.pfn, block.order))
        for pfn, order in ends:
            steps.append(Step("place", pfn, order,
                              f"now part of the free {format_size(self.buddy.page_size << order)}"
                              f" block [pfn {pfn}-{pfn + (1 << order) - 1}] on free list {order}"))
        slabs = ", ".join(f"pfn {pfn}" for pfn in gone)
        return (f"{len(gone)} empty slab(s) ({slabs}) go back to the buddy allocator, "
                f"merging with free buddies: {clause(steps)}"), steps, ends

    def _do_shrink(self, action: Action) -> StepResult:
        name = str(action.args[0])
        cache = self._cache_named(action, name)
        before = [(pfn, n) for pfn, n in self._ensure_slab().slab_pages() if n == cache.name]
        cache.shrink()
        text, steps, ends = self._release_text(before)
        return self._result(action, name, steps, ends, None, f"shrink {name}: {text}.")

    def _do_destroy(self, action: Action) -> StepResult:
        name = str(action.args[0])
        cache = self._cache_named(action, name)
        slab = self._ensure_slab()
        before = [(pfn, n) for pfn, n in slab.slab_pages() if n == cache.name]
        # CacheNotEmptyError, with nothing changed, while objects live.
        slab.kmem_cache_destroy(cache)
        del self.caches[name]
        if not cache.destroyed:  # merged: only this name goes (Linux drops a reference)
            return self._result(action, name, [], [], None,
                                f"destroy {name}: only the name goes; the cache it shares"
                                f" ({cache.name}) lives on for its other users.")
        text, steps, ends = self._release_text(before)
        return self._result(action, name, steps, ends, None,
                            f"destroy {name}: the cache is gone; {text}.")

    def _slab_free(self, action: Action, alloc: Allocation) -> StepResult:
        cache = self._object_cache.get(alloc.name)
        if alloc.kind == "obj" and cache is not None:
            cache.free(alloc.address)  # the cache it came from, whatever names it has now
        else:
            self._ensure_slab().kfree(alloc.address)
        del self.names[alloc.name]
        left = 0
        if cache is not None:
            del self._object_cache[alloc.name]
            key = (id(cache), alloc.pfn)
            left = self._slab_use[key] = self._slab_use[key] - 1
            if not left:
                del self._slab_use[key]
        block = self.buddy.block_at(alloc.pfn)
        released = block.state == "free"  # the slab (or large kmalloc) went back to the buddy
        steps = describe_free(self.buddy, alloc.pfn, alloc.order) if released else []
        place = sheaf_places(cache).get(alloc.address)
        if place is not None:
            text = (f"{alloc.name}: object at {alloc.address:#x} goes onto {place} of cache"
                    f" {alloc.cache}, not back to its slab: the slab at pfn {alloc.pfn} still"
                    " counts it as allocated until the sheaf is flushed.")
        elif alloc.cache is None:
            text = f"{alloc.name}: large kmalloc memory goes back to the buddy allocator: "
            text += clause(steps) + "."
        elif released:
            text = (f"{alloc.name}: object at {alloc.address:#x} back to cache {alloc.cache};"
                    f" its slab is empty and the cache gives it back: {clause(steps)}.")
        else:
            state = (f"still holds {left} object{'s' if left != 1 else ''}" if left else
                     "is empty now, but the cache keeps it (and its pages) for later")
            text = (f"{alloc.name}: object at {alloc.address:#x} back to cache {alloc.cache};"
                    f" its slab at pfn {alloc.pfn} {state}.")
        highlight = [(s.pfn, s.order) for s in steps if s.kind == "place"] or [
            (alloc.pfn, alloc.order)]
        return self._result(action, alloc.name, steps, highlight, alloc.address, text)


def sheaf_places(cache: KmemCache | None) -> dict[int, str]:
    """Address -> where it waits ("main sheaf of CPU 0", "barn") of every object in a sheaf of
    ``cache`` (none for a cache without sheaves)."""
    if not isinstance(cache, PercpuSheavesCache):
        return {}
    names = {"main": "the main sheaf of CPU {}", "spare": "the spare sheaf of CPU {}",
             "rcu_free": "the rcu_free sheaf of CPU {}", "barn_full": "the barn",
             "barn_empty": "the barn", "rcu_waiting": "a sheaf waiting for RCU"}
    return {address: names[place].format(cpu) for place, cpu, sheaf in cache.sheaves()
            for address in sheaf}


def _refills(cache: KmemCache | None) -> int:
    return cache.stats().sheaf_refill if isinstance(cache, PercpuSheavesCache) else 0


def slab_page_labels(slab_pages: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Label every slab's first page (``SlabAllocator.slab_pages()``) with its cache:
    "slab:NAME"."""
    return {int(pfn): f"slab:{name}" for pfn, name in slab_pages}
