"""The slab state machine of test_slab_stateful under 6.18 with sheaf caches and under 7.0
(sheaves for every cache, kmalloc caches whose sheaves are kmalloc objects, some of their own
cache), with kfree_rcu and random kmalloc caches: check() and the live objects after every
step, as little memory as lets the kernels boot (so sheaf allocations also run out)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import invariant, precondition, rule

from kmem import BuddyAllocator, OutOfMemoryError, SlabAllocator
from test_slab_stateful import CACHE_SPECS, SlabMachine


class SheafSlabMachine(SlabMachine):
    @precondition(lambda self: self.slab is None)
    @rule(kernel=st.sampled_from(["6.18", "7.0"]), cpus=st.integers(1, 3),
          pages=st.sampled_from([400, 1024]), thread_safe=st.booleans(),
          seed=st.one_of(st.none(), st.integers(0, (1 << 64) - 1)))
    def boot_kernel(self, kernel: str, cpus: int, pages: int, thread_safe: bool,
                    seed: int | None) -> None:
        self.slab = SlabAllocator(BuddyAllocator(pages * 4096), nr_cpus=cpus, kernel=kernel,
                                  thread_safe=thread_safe, random_kmalloc_seed=seed)

    @precondition(lambda self: False)
    @rule()
    def boot(self) -> None:
        raise AssertionError("replaced by boot_kernel")

    @precondition(lambda self: self.slab is not None)
    @rule(spec=st.sampled_from(CACHE_SPECS), capacity=st.sampled_from([0, 2, 32]))
    def create_sheaf_cache(self, spec: tuple[int, int], capacity: int) -> None:
        assert self.slab is not None
        size, flags = spec
        name = f"s{self.created}"
        self.created += 1
        try:
            self.slab.kmem_cache_create(name, size, flags=flags, sheaf_capacity=capacity)
        except OutOfMemoryError:
            assert name not in self.slab.caches
            return
        self.caches.append(name)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def kfree_rcu(self, data: st.DataObject) -> None:
        assert self.slab is not None
        address = data.draw(st.sampled_from(sorted(self.live)))
        cpu = data.draw(st.integers(0, self.slab.nr_cpus - 1))
        self.live.pop(address)
        self.slab.kfree_rcu(address, cpu)  # never fails: a sheaf it cannot get is done without

    @precondition(lambda self: self.slab is not None)
    @rule(size=st.integers(1, 8192), caller=st.integers(0, (1 << 64) - 1))
    def kmalloc_from(self, size: int, caller: int) -> None:
        assert self.slab is not None
        try:
            address = self.slab.kmalloc(size, caller=caller)
        except OutOfMemoryError:
            return
        self._stamp(address, self.slab.cache_of(address), size)

    @invariant()
    def consistent(self) -> None:
        if self.slab is None:
            return
        self.slab.check()
        memory = self.slab.buddy.memory
        from test_slab_stateful import STAMP

        for address, (_, size, serial) in self.live.items():
            if size >= 8:
                assert STAMP.unpack(memory.view(address, 8))[0] == serial, hex(address)
        # Users' objects are exactly the live ones; sheaves and kfree_rcu hold the others.
        mine = {a for a, (c, _, _) in self.live.items() if c is not None}
        users = {o.address for objs in self.slab.live_objects().values() for o in objs}
        assert mine <= users
        sheaf_memory = users - mine
        assert all(self.slab.cache_of(a).is_kmalloc for a in sheaf_memory)  # type: ignore[union-attr]


TestSheafSlabMachine = SheafSlabMachine.TestCase
TestSheafSlabMachine.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
