"""What this interpreter on this machine can do at best: the floors under kmem's speed targets.

kmem's hot paths are plain Python (no compiled core). These figures time the least Python that
could do each job, with none of what kmem must also do (argument checks, counters, nr_free, the
merge-likely rule, poisoning, statistics), to tell a target this machine cannot reach from code
that could be faster:

- the costs every operation pays: a loop iteration, a call, a threading.Lock acquire+release,
  a subscript of array('i') (what the mem_map is made of, for 13 bytes a page) against a list;
- a minimal SLUB-like alloc+free pair: pop an index off the cpu slab's freelist, mark it, and
  back [issue 3: a cache alloc+free pair <= 0.4 us; kmalloc+kfree adds a size-class lookup];
- a minimal buddy alloc (take the head of an array-linked free list, no split) and free (one
  buddy check, no merge, push at the head), alone and plus one lock acquire+release, and on
  list links instead of arrays [issue 2: <= 1 us an operation on a mixed workload, thread-safe,
  with <= 16 bytes of metadata a page; two lists of links take 16 bytes a page by themselves].

Each is a median of several rounds; shared machines are noisy.
"""

from __future__ import annotations

import statistics
import threading
import time
from array import array
from collections.abc import Callable

ROUNDS = 5
N = 300_000


def _ns_per_iteration(work: Callable[[int], None], n: int = N) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        work(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / n * 1e9


def _empty_loop(n: int) -> None:
    for _ in range(n):
        pass


def _calls(n: int) -> None:
    def nothing(value: int) -> int:
        return value

    for _ in range(n):
        nothing(1)


def _lock_pairs(n: int) -> None:
    lock = threading.Lock()
    acquire, release = lock.acquire, lock.release
    for _ in range(n):
        acquire()
        release()


def _array_reads(n: int) -> None:
    links = array("i", range(4096))
    for i in range(n):
        links[i & 4095]


def _list_reads(n: int) -> None:
    links = list(range(4096))
    for i in range(n):
        links[i & 4095]


class _MinimalSlab:
    """Only what a SLUB fast path must touch: a freelist, a used mark, an address."""

    __slots__ = ("base", "freelist", "used")

    def __init__(self, base: int, objects: int) -> None:
        self.base = base
        self.freelist = list(range(objects))
        self.used = bytearray(objects)


class _MinimalCache:
    def __init__(self) -> None:
        slab = _MinimalSlab(1 << 20, 64)
        self.size = 64
        self.cpu_slab = {0: slab}
        self.slab_of_pfn = {slab.base >> 12: slab}

    def alloc(self, cpu: int) -> int:
        slab = self.cpu_slab[cpu]
        index = slab.freelist.pop()
        slab.used[index] = 1
        return slab.base + index * self.size

    def free(self, address: int, cpu: int) -> None:
        slab = self.slab_of_pfn[address >> 12]
        index = (address - slab.base) // self.size
        slab.used[index] = 0
        slab.freelist.append(index)


def _slab_pairs(n: int) -> None:
    cache = _MinimalCache()
    alloc, free = cache.alloc, cache.free
    for _ in range(n):
        free(alloc(0), 0)


class _MinimalBuddy:
    """Order-0 free list linked through array('i') columns (or lists), list head at index -1."""

    def __init__(self, nr_pages: int, lists: bool) -> None:
        self.state = bytearray(nr_pages)
        column = [0] if lists else array("i", [0])
        self.next = column * (nr_pages + 1)
        self.prev = column * (nr_pages + 1)
        self.next[-1] = self.prev[-1] = -1
        for pfn in range(0, nr_pages, 2):  # every other page free: no buddy is ever free
            self.free_pages(pfn)

    def alloc_pages(self) -> int:
        nxt, prv = self.next, self.prev
        pfn = nxt[-1]
        after = nxt[pfn]
        nxt[-1] = after
        prv[after] = -1
        self.state[pfn] = 0x80
        return pfn

    def free_pages(self, pfn: int) -> None:
        state = self.state
        state[pfn] = 0
        if state[pfn ^ 1] == 0x40:  # the buddy check; never true here
            raise AssertionError
        nxt, prv = self.next, self.prev
        first = nxt[-1]
        nxt[pfn] = first
        prv[pfn] = -1
        prv[first] = pfn
        nxt[-1] = pfn
        state[pfn] = 0x40


def _buddy_ops(lists: bool) -> Callable[[int], None]:
    def work(n: int) -> None:
        buddy = _MinimalBuddy(2 * 4096, lists)
        alloc, free = buddy.alloc_pages, buddy.free_pages
        for _ in range(n // 2):
            free(alloc())

    return work


def run() -> dict[str, object]:
    loop = _ns_per_iteration(_empty_loop)
    slab_pair = _ns_per_iteration(_slab_pairs) - loop
    lock = _ns_per_iteration(_lock_pairs) - loop
    # _buddy_ops runs n // 2 iterations of two operations: per operation, half a loop.
    buddy_unlocked = _ns_per_iteration(_buddy_ops(lists=False)) - loop / 2
    buddy_locked = buddy_unlocked + lock
    buddy_lists_locked = _ns_per_iteration(_buddy_ops(lists=True)) - loop / 2 + lock
    return {
        "empty loop iteration (ns)": round(loop, 1),
        "call of a one-argument function (ns)": round(_ns_per_iteration(_calls) - loop, 1),
        "threading.Lock acquire+release (ns)": round(lock, 1),
        "array('i') subscript (ns)": round(_ns_per_iteration(_array_reads) - loop, 1),
        "list subscript (ns)": round(_ns_per_iteration(_list_reads) - loop, 1),
        "minimal SLUB alloc+free pair, no lock (ns; issue 3 target 400 locked)":
            round(slab_pair, 1),
        "minimal buddy op, no split/merge, no lock (ns)": round(buddy_unlocked, 1),
        "the same plus the zone lock's acquire+release (ns; issue 2 target 1000)":
            round(buddy_locked, 1),
        "the same on list links (16 bytes a page for links alone), locked (ns)":
            round(buddy_lists_locked, 1),
    }


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<70} {value}")
