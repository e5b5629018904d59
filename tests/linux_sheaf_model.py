"""A deliberately plain model of one SLUB cache with sheaves, as Linux 6.18 and 7.0 run it.

Written from the rules of mm/slub.c (6.18.2 and 7.0.0: alloc_from_pcs,
__pcs_replace_empty_main, free_to_pcs, __pcs_replace_full_main, __pcs_install_empty_sheaf,
barn_*, refill_sheaf, sheaf_flush_main, sheaf_flush_unused, build_detached_freelist,
__kfree_rcu_sheaf, rcu_free_sheaf, pcs_flush_all, barn_shrink; for 7.0 also ___slab_alloc,
refill_objects, get_partial_node_bulk and __slab_free), with plain lists, string states and
linear searches. It shares no code with kmem. Objects are (slab serial, index) pairs; a sheaf's
own memory is not modelled beyond counting sheaves allocated and freed.

Below the sheaves, 6.18 keeps the 6.17 SLUB (cpu slab, cpu partial stack, node partial list)
with kmem's documented simplifications (every discarded slab counts free_slab; shrink discards
empty node partial slabs without reordering the list).

pfmemalloc slabs (slabs on pages from the memory reserves): while ``reserves`` is set, every new
slab is one. 7.0 ("slab: handle pfmemalloc slabs properly with sheaves") frees their objects to
the slab, never to a sheaf, and flushes an rcu sheaf holding one after the grace period; 6.18
treats them as any slab. On the allocation side, an allocation has the ``rights`` to the reserves
(gfp_pfmemalloc_allowed: __GFP_MEMALLOC) or not; pfmemalloc_match lets only one with them take
objects from a pfmemalloc slab in the slow paths. 7.0 refills every sheaf with __GFP_NOMEMALLOC
(never the rights: a refill passes over every pfmemalloc partial slab), and its one-object path
(get_from_partial_node) takes the first partial slab the allocation may use; 6.18 refills with
the allocation's own flags, through the 6.17 slow path.

NUMA (``nr_nodes`` > 1): cpu c is on node ``cpu_node[c]`` (contiguous runs); each node has its
own partial list (``nodes[n]``) and barn (``barns_full[n]``, ``barns_empty[n]``; a CPU uses its
node's); memory is ample, so a new slab is on the node asked for, or the allocating CPU's. A
free of an object of another node than the freeing CPU's skips the sheaves (slab_free's
slab_nid == numa_mem_id condition) and goes to its slab; kfree_rcu of one does not batch
(kfree_rcu_sheaf), the object waits for the grace period on its own. kmem_cache_alloc_node:
the sheaves serve only the local node and only when main's top object is on it; otherwise the
slab path for that node: the node's partial list, then (unless __GFP_THISNODE) the zonelist's
nodes with more than min_partial partial slabs, then a new slab; 6.18 also deactivates a cpu
slab of another node (alloc_node_mismatch) and passes cpu partial slabs of other nodes back to
their lists. A 7.0 refill takes the local node's partial slabs, then new local slabs.
"""

from __future__ import annotations

from collections import Counter

MAX_FULL = 10
MAX_EMPTY = 10
BATCH = 32

Obj = tuple[int, int]


class Slab:
    def __init__(self, serial: int, objects: int, node: int = 0) -> None:
        self.serial = serial
        self.node = node
        self.objects = objects
        self.free = list(range(objects - 1, -1, -1))  # the end is the freelist head
        self.remote: list[int] = []
        self.where = "none"  # none, cpu, cpu_partial, partial
        self.cpu = -1
        self.pfmemalloc = False


class Sheaf:
    def __init__(self) -> None:
        self.objects: list[Obj] = []  # the end is the top


class SheafModel:
    def __init__(self, kernel: str, nr_cpus: int, objects_per_slab: int, min_partial: int,
                 cpu_partial_slabs: int, capacity: int, nr_nodes: int = 1) -> None:
        assert kernel in ("6.18", "7.0") and capacity > 0
        self.kernel = kernel
        self.nr_cpus = nr_cpus
        self.nr_nodes = nr_nodes
        self.cpu_node = [cpu * nr_nodes // nr_cpus for cpu in range(nr_cpus)]
        self.per_slab = objects_per_slab
        self.min_partial = min_partial
        self.cpu_partial_slabs = cpu_partial_slabs if kernel == "6.18" else 0
        self.capacity = capacity
        self.slabs: dict[int, Slab] = {}
        self.serials = 0
        self.nodes: list[list[Slab]] = [[] for _ in range(nr_nodes)]  # index 0 is the head
        self.partial = self.nodes[0]
        self.cpu_slab: list[Slab | None] = [None] * nr_cpus
        self.cpu_partial: list[list[Slab]] = [[] for _ in range(nr_cpus)]  # the end is the head
        self.state: dict[Obj, str] = {}  # allocated objects: user, sheaf or rcu
        self.stat: Counter[str] = Counter()
        self.main = [self.new_sheaf() for _ in range(nr_cpus)]
        self.spare: list[Sheaf | None] = [None] * nr_cpus
        self.rcu_free: list[Sheaf | None] = [None] * nr_cpus
        self.barns_full: list[list[Sheaf]] = [[] for _ in range(nr_nodes)]  # 0 is the head
        self.barns_empty: list[list[Sheaf]] = [[] for _ in range(nr_nodes)]
        self.rcu_queue: list[tuple[str, object, int, bool]] = []
        self.reserves = False  # new slabs come from the memory reserves: pfmemalloc

    @property
    def barn_full(self) -> list[Sheaf]:
        return self.barns_full[0]

    @property
    def barn_empty(self) -> list[Sheaf]:
        return self.barns_empty[0]

    def zonelist(self, node: int) -> list[int]:
        return [node, *range(node + 1, self.nr_nodes), *range(node)]

    def local(self, cpu: int) -> int:
        return self.cpu_node[cpu]

    # -- sheaf memory ------------------------------------------------------------------------

    def new_sheaf(self) -> Sheaf:
        self.stat["sheaf_alloc"] += 1
        return Sheaf()

    def free_sheaf(self, sheaf: Sheaf) -> None:
        assert not sheaf.objects
        self.stat["sheaf_free"] += 1

    # -- slabs -------------------------------------------------------------------------------

    def new_slab(self, node: int = 0) -> Slab:
        slab = Slab(self.serials, self.per_slab, node)
        slab.pfmemalloc = self.reserves
        self.serials += 1
        self.slabs[slab.serial] = slab
        self.stat["alloc_slab"] += 1
        return slab

    def discard(self, slab: Slab) -> None:
        assert len(slab.free) == slab.objects and not slab.remote
        self.stat["free_slab"] += 1
        del self.slabs[slab.serial]
        slab.where = "gone"

    def take(self, slab: Slab) -> Obj:
        return (slab.serial, slab.free.pop())

    # 6.18: the 6.17 SLUB under the sheaves

    def freeze(self, slab: Slab, cpu: int) -> None:
        slab.where = "cpu"
        slab.cpu = cpu
        self.cpu_slab[cpu] = slab

    def put_partials(self, cpu: int) -> None:
        stack = self.cpu_partial[cpu]
        doomed = []
        while stack:
            slab = stack.pop()
            if len(slab.free) == slab.objects and len(self.nodes[slab.node]) >= self.min_partial:
                doomed.append(slab)
            else:
                self.nodes[slab.node].append(slab)
                slab.where = "partial"
                slab.cpu = -1
                self.stat["free_add_partial"] += 1
        for slab in doomed:
            slab.where = "none"
            slab.cpu = -1
            self.discard(slab)

    def put_cpu_partial(self, slab: Slab, cpu: int, drain: bool) -> None:
        if drain and len(self.cpu_partial[cpu]) >= self.cpu_partial_slabs:
            self.put_partials(cpu)
            self.stat["cpu_partial_drain"] += 1
        self.cpu_partial[cpu].append(slab)
        slab.where = "cpu_partial"
        slab.cpu = cpu

    def slub_alloc_617(self, cpu: int, rights: bool = False, node: int = -1,
                       thisnode: bool = False) -> Obj:
        """``rights``: the allocation may use the memory reserves (__GFP_MEMALLOC); without
        them the slow path takes nothing from a pfmemalloc slab (pfmemalloc_match)."""
        slab = self.cpu_slab[cpu]
        if slab is not None and slab.free and (node == -1 or slab.node == node):
            self.stat["alloc_fastpath"] += 1  # (the fast path does not look at pfmemalloc)
            return self.take(slab)
        self.stat["alloc_slowpath"] += 1
        if slab is not None and node != -1 and slab.node != node:
            self.stat["alloc_node_mismatch"] += 1
            self.cpu_slab[cpu] = None
            self.deactivate_617(slab)
        elif slab is not None:
            if slab.pfmemalloc and not rights:
                self.cpu_slab[cpu] = None
                self.deactivate_617(slab)
            elif slab.remote:
                slab.free, slab.remote = slab.remote, []
                self.stat["alloc_refill"] += 1
                return self.take(slab)
            else:
                slab.where = "none"
                slab.cpu = -1
                self.cpu_slab[cpu] = None
                self.stat["deactivate_bypass"] += 1
        while self.cpu_partial[cpu]:
            slab = self.cpu_partial[cpu].pop()
            if (slab.pfmemalloc and not rights) or (node != -1 and slab.node != node):
                # back to its node's list, one slab
                home = self.nodes[slab.node]
                if len(slab.free) == slab.objects and len(home) >= self.min_partial:
                    slab.where = "none"
                    slab.cpu = -1
                    self.discard(slab)
                else:
                    home.append(slab)
                    slab.where = "partial"
                    slab.cpu = -1
                    self.stat["free_add_partial"] += 1
                continue
            self.stat["cpu_partial_alloc"] += 1
            self.freeze(slab, cpu)
            return self.take(slab)
        search = self.local(cpu) if node == -1 else node
        candidates = [search]
        if not (node != -1 and thisnode):  # get_any_partial
            candidates += [n for n in self.zonelist(self.local(cpu))
                           if len(self.nodes[n]) > self.min_partial]
        for nid in candidates:
            partial = self.nodes[nid]
            usable = [s for s in partial if rights or not s.pfmemalloc]
            if not usable:
                continue
            slab = usable[0]
            partial.remove(slab)
            self.stat["alloc_from_partial"] += 1
            for moved, other in enumerate(usable[1:] if self.cpu_partial_slabs else [], 1):
                partial.remove(other)
                self.put_cpu_partial(other, cpu, drain=False)
                self.stat["cpu_partial_node"] += 1
                if moved > self.cpu_partial_slabs // 2:
                    break
            self.freeze(slab, cpu)
            return self.take(slab)
        slab = self.new_slab(search)
        if slab.pfmemalloc and not rights:  # one object; the slab is not kept as cpu slab
            obj = self.take(slab)
            self.deactivate_617(slab)
            return obj
        self.freeze(slab, cpu)
        return self.take(slab)

    def slab_free_617(self, slab: Slab, indices: list[int], cpu: int) -> None:
        """do_slab_free of a detached freelist (indices in push order)."""
        if slab is self.cpu_slab[cpu]:
            slab.free.extend(indices)
            self.stat["free_fastpath"] += len(indices)
            return
        self.stat["free_slowpath"] += 1
        if slab.where == "cpu_partial":
            slab.free.extend(indices)
            return
        if slab.where == "cpu":
            slab.remote.extend(indices)
            self.stat["free_frozen"] += 1
            return
        was_full = not slab.free
        slab.free.extend(indices)
        if was_full:
            self.put_cpu_partial(slab, cpu, drain=True)
            self.stat["cpu_partial_free"] += 1
            return
        if slab.where != "partial":
            return
        home = self.nodes[slab.node]
        if len(slab.free) == slab.objects and len(home) >= self.min_partial:
            home.remove(slab)
            self.stat["free_remove_partial"] += 1
            slab.where = "none"
            self.discard(slab)

    def flush_cpu_slab_617(self, cpu: int) -> None:
        slab = self.cpu_slab[cpu]
        if slab is not None:
            self.cpu_slab[cpu] = None
            self.deactivate_617(slab)
            self.stat["cpuslab_flush"] += 1
        self.put_partials(cpu)

    def deactivate_617(self, slab: Slab) -> None:
        if slab.remote:
            self.stat["deactivate_remote_frees"] += 1
            slab.free = slab.remote + slab.free
            slab.remote = []
            head = False
        else:
            head = True
        slab.cpu = -1
        home = self.nodes[slab.node]
        if len(slab.free) == slab.objects and len(home) >= self.min_partial:
            self.stat["deactivate_empty"] += 1
            slab.where = "none"
            self.discard(slab)
        elif slab.free:
            if head:
                home.insert(0, slab)
            else:
                home.append(slab)
            slab.where = "partial"
            self.stat["deactivate_to_head" if head else "deactivate_to_tail"] += 1
        else:
            slab.where = "none"
            self.stat["deactivate_full"] += 1

    # 7.0: the node partial list only

    def slab_alloc_70(self, rights: bool = False, cpu: int = 0, node: int = -1,
                      thisnode: bool = False) -> Obj:
        self.stat["alloc_slowpath"] += 1
        search = self.local(cpu) if node == -1 else node
        candidates = [search]
        if not (node != -1 and thisnode):
            candidates += [n for n in self.zonelist(self.local(cpu))
                           if len(self.nodes[n]) > self.min_partial]
        for nid in candidates:
            usable = [s for s in self.nodes[nid] if rights or not s.pfmemalloc]
            if usable:
                slab = usable[0]
                obj = self.take(slab)
                if not slab.free:
                    self.nodes[nid].remove(slab)
                    slab.where = "none"
                return obj
        slab = self.new_slab(search)
        obj = self.take(slab)
        if slab.free:
            self.nodes[slab.node].insert(0, slab)
            slab.where = "partial"
        return obj

    def slab_free_70(self, slab: Slab, indices: list[int]) -> None:
        """__slab_free of a detached freelist, no cpu partial lists."""
        was_full = not slab.free
        slab.free.extend(indices)
        empty = len(slab.free) == slab.objects
        if not empty and not was_full:
            return
        home = self.nodes[slab.node]
        if empty and len(home) >= self.min_partial:
            if not was_full:
                home.remove(slab)
                self.stat["free_remove_partial"] += 1
            slab.where = "none"
            self.discard(slab)
            return
        if was_full:
            home.append(slab)
            slab.where = "partial"
            self.stat["free_add_partial"] += 1

    def refill_objects_70(self, count: int, cpu: int = 0) -> list[Obj]:
        """refill_sheaf's refill_objects, always with __GFP_NOMEMALLOC: no rights, so
        get_partial_node_bulk skips every pfmemalloc partial slab. The local node's list."""
        got: list[Obj] = []
        private: list[Slab] = []  # index 0 is the private list's head
        total = 0
        partial = self.nodes[self.local(cpu)]
        for slab in list(partial):
            if slab.pfmemalloc:
                continue
            partial.remove(slab)
            slab.where = "none"
            private.insert(0, slab)
            total += len(slab.free)
            if total >= count:
                break
        while private and len(got) < count:
            slab = private.pop(0)
            whole = list(reversed(slab.free))  # the freelist from its head
            slab.free = []
            while whole and len(got) < count:
                got.append((slab.serial, whole.pop(0)))
            if whole:
                self.slab_free_70(slab, list(reversed(whole)))
        for slab in private:
            if len(slab.free) == slab.objects and len(partial) >= self.min_partial:
                self.discard(slab)
            else:
                partial.insert(0, slab)
                slab.where = "partial"
        while len(got) < count:
            slab = self.new_slab(self.local(cpu))
            while slab.free and len(got) < count:
                got.append(self.take(slab))
            if slab.free:
                self.nodes[slab.node].insert(0, slab)
                slab.where = "partial"
        return got

    # -- the kernel-specific slab side ---------------------------------------------------------

    def alloc_from_slabs(self, cpu: int, rights: bool = False, node: int = -1,
                         thisnode: bool = False) -> Obj:
        if self.kernel == "6.18":
            return self.slub_alloc_617(cpu, rights, node, thisnode)
        return self.slab_alloc_70(rights, cpu, node, thisnode)

    def bulk_alloc(self, count: int, cpu: int, rights: bool = False) -> list[Obj]:
        if self.kernel == "6.18":  # the refill keeps the allocation's flags
            return [self.slub_alloc_617(cpu, rights) for _ in range(count)]
        return self.refill_objects_70(count, cpu)

    def free_group(self, serial: int, indices: list[int], cpu: int) -> None:
        slab = self.slabs[serial]
        for index in indices:
            del self.state[(serial, index)]
        if self.kernel == "6.18":
            self.slab_free_617(slab, indices, cpu)
        else:
            self.slab_free_70(slab, indices)

    def bulk_free(self, objects: list[Obj], cpu: int) -> None:
        """__kmem_cache_free_bulk with build_detached_freelist's 3-credit look-ahead."""
        p = list(objects)
        size = len(p)
        while size:
            size -= 1
            first = p[size]
            group = [first[1]]
            same = size
            credits = 3
            while size:
                size -= 1
                if p[size][0] == first[0]:
                    group.append(p[size][1])
                    same -= 1
                    p[size], p[same] = p[same], p[size]
                    continue
                credits -= 1
                if credits == 0:
                    break
            size = same
            self.free_group(first[0], group, cpu)

    # -- sheaf helpers -------------------------------------------------------------------------

    def refill(self, sheaf: Sheaf, cpu: int, rights: bool = False) -> None:
        want = self.capacity - len(sheaf.objects)
        got = self.bulk_alloc(want, cpu, rights)
        for obj in got:
            self.state[obj] = "sheaf"
        sheaf.objects.extend(got)
        self.stat["sheaf_refill"] += len(got)

    def flush_unused(self, sheaf: Sheaf, cpu: int) -> None:
        if sheaf.objects:
            self.stat["sheaf_flush"] += len(sheaf.objects)
            objects = sheaf.objects
            sheaf.objects = []
            self.bulk_free(objects, cpu)

    def flush_main(self, cpu: int) -> bool:
        main = self.main[cpu]
        done = False
        while main.objects:
            batch = main.objects[-BATCH:]
            main.objects = main.objects[:-BATCH]
            self.bulk_free(batch, cpu)
            self.stat["sheaf_flush"] += len(batch)
            done = True
        return done

    # -- allocation ----------------------------------------------------------------------------

    def alloc(self, cpu: int, can_block: bool = True, rights: bool = False) -> Obj:
        if not self.main[cpu].objects and not self.replace_empty_main(cpu, can_block, rights):
            obj = self.alloc_from_slabs(cpu, rights)
            self.state[obj] = "user"
            return obj
        obj = self.main[cpu].objects.pop()
        self.state[obj] = "user"
        self.stat["sheaf_alloc_fast"] += 1
        return obj

    def alloc_node(self, cpu: int, node: int, thisnode: bool = False) -> Obj:
        """kmem_cache_alloc_node (GFP_KERNEL, maybe __GFP_THISNODE)."""
        if node == -1:
            return self.alloc(cpu)
        if node == self.local(cpu) and (self.main[cpu].objects
                                        or self.replace_empty_main(cpu, True)):
            top = self.main[cpu].objects[-1]
            if self.slabs[top[0]].node == node:
                self.main[cpu].objects.pop()
                self.state[top] = "user"
                self.stat["sheaf_alloc_fast"] += 1
                return top
        obj = self.alloc_from_slabs(cpu, False, node, thisnode)
        self.state[obj] = "user"
        return obj

    def replace_empty_main(self, cpu: int, can_block: bool, rights: bool = False) -> bool:
        barn_full = self.barns_full[self.local(cpu)]
        barn_empty = self.barns_empty[self.local(cpu)]
        spare = self.spare[cpu]
        if spare is not None and spare.objects:
            self.main[cpu], self.spare[cpu] = spare, self.main[cpu]
            return True
        if barn_full:
            full = barn_full.pop(0)
            barn_empty.insert(0, self.main[cpu])
            self.main[cpu] = full
            self.stat["barn_get"] += 1
            return True
        self.stat["barn_get_fail"] += 1
        if not can_block:
            return False
        if spare is not None:
            empty: Sheaf | None = spare
            self.spare[cpu] = None
        elif barn_empty:
            empty = barn_empty.pop(0)
        else:
            empty = None
        if empty is None:
            empty = self.new_sheaf()
        self.refill(empty, cpu, rights)  # memory is ample in the lockstep tests: refills succeed
        full = empty
        if not self.main[cpu].objects:
            if self.kernel == "7.0" and self.spare[cpu] is None:
                self.spare[cpu] = self.main[cpu]
            else:
                barn_empty.insert(0, self.main[cpu])
            self.main[cpu] = full
        elif self.spare[cpu] is None:
            self.spare[cpu] = full
        elif not self.spare[cpu].objects:  # type: ignore[union-attr]
            barn_empty.insert(0, self.spare[cpu])  # type: ignore[arg-type]
            self.spare[cpu] = full
        else:
            barn_full.insert(0, full)
            self.stat["barn_put"] += 1
        return True

    # -- free ----------------------------------------------------------------------------------

    def free(self, obj: Obj, cpu: int) -> None:
        assert self.state[obj] == "user"
        if self.slabs[obj[0]].node != self.local(cpu):  # slab_free: remote, to the slab
            del self.state[obj]
            self.free_one_to_slab(obj, cpu)
            return
        if self.kernel == "7.0" and self.slabs[obj[0]].pfmemalloc:  # never into a sheaf
            del self.state[obj]
            self.free_one_to_slab(obj, cpu)
            return
        if len(self.main[cpu].objects) == self.capacity and not self.replace_full_main(cpu):
            del self.state[obj]
            self.free_one_to_slab(obj, cpu)
            return
        self.state[obj] = "sheaf"
        self.main[cpu].objects.append(obj)
        self.stat["sheaf_free_fast"] += 1

    def free_one_to_slab(self, obj: Obj, cpu: int) -> None:
        slab = self.slabs[obj[0]]
        if self.kernel == "6.18":
            self.slab_free_617(slab, [obj[1]], cpu)
        else:
            self.slab_free_70(slab, [obj[1]])
            self.stat["free_slowpath"] += 1

    def replace_full_main(self, cpu: int) -> bool:
        barn_full = self.barns_full[self.local(cpu)]
        barn_empty = self.barns_empty[self.local(cpu)]
        cap = self.capacity
        spare = self.spare[cpu]
        if spare is None:
            if barn_empty:
                self.spare[cpu] = self.main[cpu]
                self.main[cpu] = barn_empty.pop(0)
                return True
            empty = self.new_sheaf()  # GFP_NOWAIT: succeeds with ample memory
            self.install_empty(cpu, empty)
            return True
        if len(spare.objects) < cap:
            self.main[cpu], self.spare[cpu] = spare, self.main[cpu]
            return True
        if len(barn_full) >= MAX_FULL:
            self.stat["barn_put_fail"] += 1
            self.spare[cpu] = None
            self.flush_unused(spare, cpu)
            self.install_empty(cpu, spare)
            return True
        if barn_empty:
            barn_full.insert(0, self.main[cpu])
            self.main[cpu] = barn_empty.pop(0)
            self.stat["barn_put"] += 1
            return True
        empty = self.new_sheaf()
        self.install_empty(cpu, empty)
        return True

    def install_empty(self, cpu: int, empty: Sheaf) -> None:
        barn_full = self.barns_full[self.local(cpu)]
        barn_empty = self.barns_empty[self.local(cpu)]
        cap = self.capacity
        spare = self.spare[cpu]
        if spare is None:
            self.spare[cpu] = self.main[cpu]
            self.main[cpu] = empty
        elif len(self.main[cpu].objects) < cap:
            barn_empty.insert(0, empty)
        elif len(spare.objects) < cap:
            self.main[cpu], self.spare[cpu] = spare, self.main[cpu]
            barn_empty.insert(0, empty)
        else:
            barn_full.insert(0, self.main[cpu])
            self.stat["barn_put"] += 1
            self.main[cpu] = empty

    # -- kfree_rcu -----------------------------------------------------------------------------

    def kfree_rcu(self, obj: Obj, cpu: int) -> None:
        assert self.state[obj] == "user"
        if self.slabs[obj[0]].node != self.local(cpu):  # kfree_rcu_sheaf: local objects only
            self.state[obj] = "rcu"
            self.rcu_queue.append(("object", obj, cpu, False))
            return
        barn_empty = self.barns_empty[self.local(cpu)]
        if self.rcu_free[cpu] is None:
            spare = self.spare[cpu]
            if spare is not None and not spare.objects:
                self.rcu_free[cpu] = spare
                self.spare[cpu] = None
            elif barn_empty:
                self.rcu_free[cpu] = barn_empty.pop(0)
            else:
                self.rcu_free[cpu] = self.new_sheaf()
        sheaf = self.rcu_free[cpu]
        assert sheaf is not None
        sheaf.objects.append(obj)
        self.state[obj] = "sheaf"
        if len(sheaf.objects) == self.capacity:
            self.rcu_free[cpu] = None
            self.rcu_queue.append(("sheaf", sheaf, cpu, True))
        self.stat["free_rcu_sheaf"] += 1

    def synchronize_rcu(self) -> None:
        queue, self.rcu_queue = self.rcu_queue, []
        for kind, sheaf, cpu, to_barn in queue:
            if kind == "object":  # an object on its own: freed on its CPU
                assert isinstance(sheaf, tuple)
                self.state[sheaf] = "user"
                self.free(sheaf, cpu)
                continue
            barn_full = self.barns_full[self.local(cpu)]
            barn_empty = self.barns_empty[self.local(cpu)]
            assert isinstance(sheaf, Sheaf)
            if not to_barn:
                self.flush_unused(sheaf, cpu)
                self.free_sheaf(sheaf)
                continue
            if self.kernel == "7.0" and any(self.slabs[o[0]].pfmemalloc for o in sheaf.objects):
                self.stat["barn_put_fail"] += 1  # a reserve object in it: flushed, freed
                self.flush_unused(sheaf, cpu)
                self.free_sheaf(sheaf)
                continue
            if sheaf.objects and len(barn_full) < MAX_FULL:
                self.stat["barn_put"] += 1
                barn_full.insert(0, sheaf)
                continue
            if sheaf.objects:
                self.stat["barn_put_fail"] += 1
                self.flush_unused(sheaf, cpu)
            if len(barn_empty) < MAX_EMPTY:
                barn_empty.insert(0, sheaf)
            else:
                self.free_sheaf(sheaf)

    # -- flushing and shrinking ------------------------------------------------------------------

    def pcs_flush_all(self, cpu: int) -> None:
        spare, self.spare[cpu] = self.spare[cpu], None
        rcu, self.rcu_free[cpu] = self.rcu_free[cpu], None
        if spare is not None:
            self.flush_unused(spare, cpu)
            self.free_sheaf(spare)
        if rcu is not None:
            self.rcu_queue.append(("sheaf", rcu, cpu, False))
        self.flush_main(cpu)

    def flush_cpu(self, cpu: int) -> None:
        self.pcs_flush_all(cpu)
        if self.kernel == "6.18":
            self.flush_cpu_slab_617(cpu)

    def shrink(self) -> int:
        for cpu in range(self.nr_cpus):
            self.flush_cpu(cpu)
        for nid in range(self.nr_nodes):  # barn_shrink, node by node
            full = self.barns_full[nid][:]
            empty = self.barns_empty[nid][:]
            self.barns_full[nid].clear()
            self.barns_empty[nid].clear()
            for sheaf in full:
                self.flush_unused(sheaf, 0)
                self.free_sheaf(sheaf)
            for sheaf in empty:
                self.free_sheaf(sheaf)
        gone = 0
        for partial in self.nodes:
            for slab in [s for s in partial if len(s.free) == s.objects]:
                partial.remove(slab)
                slab.where = "none"
                self.discard(slab)
                gone += 1
        return gone

    # -- the invariant: every object in exactly one place ------------------------------------

    def places(self) -> Counter[Obj]:
        count: Counter[Obj] = Counter()
        for slab in self.slabs.values():
            for index in slab.free + slab.remote:
                count[(slab.serial, index)] += 1
        for sheaf in self.all_sheaves():
            for obj in sheaf.objects:
                count[obj] += 1
        for obj, state in self.state.items():
            if state in ("user", "rcu"):
                count[obj] += 1
        return count

    def all_sheaves(self) -> list[Sheaf]:
        out = [*self.main, *(s for b in self.barns_full for s in b),
               *(s for b in self.barns_empty for s in b)]
        out += [s for s in self.spare + self.rcu_free if s is not None]
        out += [s for kind, s, _, _ in self.rcu_queue if kind == "sheaf"]  # type: ignore[misc]
        return out

    def check(self) -> None:
        count = self.places()
        every = {(s.serial, i) for s in self.slabs.values() for i in range(s.objects)}
        assert set(count) == every, "an object is nowhere or in a slab that does not exist"
        assert all(n == 1 for n in count.values()), "an object is in two places"
        sheaf_held = sum(len(s.objects) for s in self.all_sheaves())
        assert sheaf_held == sum(1 for v in self.state.values() if v == "sheaf")
