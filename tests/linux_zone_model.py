"""A deliberately plain model of Linux 6.18's zoned page allocator, to check kmem's PageMachine.

Written from the kernel's rules (mm/page_alloc.c, mm/vmstat.c, as summarised in the project's
notes on 6.18), with Python lists, dicts and linear searches: slow and obvious, sharing no code
with kmem. Free lists are lists of pfns, head first; a pcp list likewise; every block is an
entry of ``blocks`` (pfn -> [kind, order, zone index]); pageblock types live in a dict.
Only what kmem models is modelled: one node, no reclaim, no compaction, no CMA, no isolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, ISOLATE = 0, 1, 2, 3, 4
FALLBACK = {UNMOVABLE: [RECLAIMABLE, MOVABLE], MOVABLE: [RECLAIMABLE, UNMOVABLE],
            RECLAIMABLE: [UNMOVABLE, MOVABLE]}
MAX_ORDER = 10
PB_ORDER = 9
PB_PAGES = 512
ZONE_TYPES = ["DMA", "DMA32", "Normal", "Movable", "Device"]
RATIO = [256, 256, 32, 0, 0]

# gfp bits (include/linux/gfp_types.h)
G_DMA, G_HIGHMEM, G_DMA32, G_MOVABLE, G_RECLAIMABLE = 1, 2, 4, 8, 16
G_HIGH, G_DIRECT_RECLAIM, G_KSWAPD_RECLAIM, G_MEMALLOC, G_NOMEMALLOC = (
    32, 1 << 10, 1 << 11, 1 << 17, 1 << 19)
# alloc flags (mm/internal.h)
A_MIN, A_LOW, A_HIGH, A_NO_WMARK, A_OOM = 0, 1, 2, 4, 8
A_NON_BLOCK, A_MIN_RESERVE, A_CPUSET, A_NOFRAG, A_HIGHATOMIC, A_KSWAPD = (
    0x10, 0x20, 0x40, 0x100, 0x200, 0x800)
A_RESERVES = A_NON_BLOCK | A_MIN_RESERVE | A_HIGHATOMIC | A_OOM


def pindex(mt: int, order: int) -> int:
    if order > 3:
        return 12 + (1 if mt == MOVABLE else 0)
    return 3 * order + mt


def pindex_order(i: int) -> int:
    return 9 if i >= 12 else i // 3


@dataclass
class Pcp:
    cpu: int
    lists: list[list[int]] = field(default_factory=lambda: [[] for _ in range(14)])
    count: int = 0
    high: int = 0
    high_min: int = 0
    high_max: int = 0
    batch: int = 1
    flags: int = 0  # bit 0 PREV_FREE_HIGH_ORDER, bit 1 FREE_HIGH_BATCH
    alloc_factor: int = 0
    free_count: int = 0


@dataclass
class ModelZone:
    index: int
    start: int
    end: int
    present_start: int
    managed_start: int
    managed: int
    present: int
    spanned: int
    free: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (mt, order) -> pfns
    wmark: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    boost: int = 0
    reserve: list[int] = field(default_factory=lambda: [0] * 5)
    below_high: bool = False
    boosted: bool = False
    reserved_highatomic: int = 0
    pcps: list[Pcp] = field(default_factory=list)

    def lst(self, mt: int, order: int) -> list[int]:
        return self.free.setdefault((mt, order), [])

    def nr_free(self, order: int) -> int:
        return sum(len(self.lst(mt, order)) for mt in range(5))

    def free_pages(self) -> int:
        return sum(len(self.lst(mt, o)) << o for mt in range(5) for o in range(11) if mt != 4)

    def free_highatomic(self) -> int:
        return sum(len(self.lst(HIGHATOMIC, o)) << o for o in range(11))


class LinuxZoneModel:
    """zones: (name, start_pfn, spanned, present, managed) tuples."""

    def __init__(self, zones: list[tuple[str, int, int, int, int]], nr_cpus: int,
                 min_free_kbytes: int | None = None, pcp_batch: int | None = None,
                 cache_slice: int = 16 << 20) -> None:
        self.nr_cpus = nr_cpus
        self.zones: list[ModelZone] = []
        given = {name: rest for name, *rest in zones}
        for i, name in enumerate(ZONE_TYPES):
            start, spanned, present, managed = given.get(name, (0, 0, 0, 0))
            self.zones.append(ModelZone(i, start, start + spanned, start + spanned - present,
                                        start + spanned - managed, managed, present, spanned))
        self.pb_type: dict[int, int] = {}  # pageblock number -> mt (missing: MOVABLE)
        self.blocks: dict[int, tuple[str, int, int]] = {}  # pfn -> (kind F/P/A, order, zone)
        self.alloc_type: dict[int, int] = {}
        self.events = [{"zone_locked": 0, "drain": 0, "extfrag": 0} for _ in range(nr_cpus)]
        self.cpu = 0
        self.boot()
        counts = [z.managed for z in self.zones]
        if min_free_kbytes is None:
            min_free_kbytes = self.kernel_min_free_kbytes(counts)
        self.min_free_kbytes = min_free_kbytes
        self.set_watermarks(counts, min_free_kbytes)
        for z in self.zones:
            z.reserve = self.lowmem_reserve(counts)[z.index]
            z.pcps = [Pcp(cpu) for cpu in range(nr_cpus)]
            if z.present:
                b = self.batchsize(z.managed) if pcp_batch is None else pcp_batch
                for p in z.pcps:
                    p.batch = b
                    p.high_min = max(z.wmark[1] // nr_cpus, b * 4)
                    p.high_max = max(z.managed // 8 // nr_cpus, b * 4)
                    p.flags = 2 if cache_slice // 4096 > 3 * b else 0

    # -- boot and formulas ------------------------------------------------------------

    def boot(self) -> None:
        for z in self.zones:
            pfn = z.managed_start
            while pfn < z.end:
                order = MAX_ORDER
                while order and (pfn % (1 << order) or pfn + (1 << order) > z.end):
                    order -= 1
                self.put_free(z, pfn, order, MOVABLE, tail=True)
                pfn += 1 << order

    def kernel_min_free_kbytes(self, managed: list[int]) -> int:
        lowmem_kb = sum(managed[:3]) * 4
        kb = min(max(math.isqrt(lowmem_kb * 16), 128), 262144)
        high = self.marks(managed, kb)
        nr_zones = sum(1 for z in self.zones[:3] if z.present)
        rec = 512 * nr_zones * 2 + 512 * nr_zones * 9
        buffer = sum(max(0, managed[i] - high[i][2]) for i in range(3))
        rec = min(rec, buffer // 20) * 4
        return max(kb, rec)

    @staticmethod
    def marks(managed: list[int], min_free_kbytes: int) -> list[list[int]]:
        pages_min = min_free_kbytes // 4
        lowmem = sum(m for i, m in enumerate(managed) if i != 3)
        out = []
        for i, m in enumerate(managed):
            tmp = pages_min * m // lowmem if lowmem else 0
            wmin = min(max(m // 1024, 32), 128) if i == 3 else tmp
            gap = max(tmp // 4, m * 10 // 10000)
            out.append([wmin, wmin + gap, wmin + 2 * gap, wmin + 3 * gap])
        return out

    def set_watermarks(self, managed: list[int], kb: int) -> None:
        for z, w in zip(self.zones, self.marks(managed, kb), strict=True):
            z.wmark = w

    @staticmethod
    def lowmem_reserve(managed: list[int]) -> list[list[int]]:
        rows = []
        for i in range(5):
            row = [0] * 5
            for j in range(i + 1, 5):
                if RATIO[i] and managed[i]:
                    row[j] = sum(managed[i + 1 : j + 1]) // RATIO[i]
            rows.append(row)
        return rows

    @staticmethod
    def batchsize(managed: int) -> int:
        b = max(min(managed // 1024, 256) // 4, 1)
        b = b + b // 2
        p = 1
        while p * 2 <= b:
            p *= 2
        return max(p - 1, 1)

    # -- pageblocks and lists -------------------------------------------------------------

    def ptype(self, pfn: int) -> int:
        return self.pb_type.get(pfn // PB_PAGES, MOVABLE)

    def set_ptype(self, pfn: int, order: int, mt: int) -> None:
        for k in range(max(1, 1 << (order - PB_ORDER)) if order >= PB_ORDER else 1):
            self.pb_type[pfn // PB_PAGES + k] = mt

    def zone_of(self, pfn: int) -> ModelZone:
        return next(z for z in self.zones if z.start <= pfn < z.end)

    def put_free(self, z: ModelZone, pfn: int, order: int, mt: int, tail: bool) -> None:
        if tail:
            z.lst(mt, order).append(pfn)
        else:
            z.lst(mt, order).insert(0, pfn)
        self.blocks[pfn] = ("F", order, z.index)

    def take_free(self, z: ModelZone, pfn: int, order: int, mt: int) -> None:
        z.lst(mt, order).remove(pfn)
        del self.blocks[pfn]

    def is_free_block(self, z: ModelZone, pfn: int, order: int) -> bool:
        b = self.blocks.get(pfn)
        return z.start <= pfn < z.end and b is not None and b[0] == "F" and b[1] == order

    # -- buddy allocation -------------------------------------------------------------------

    def split(self, z: ModelZone, pfn: int, low: int, high: int, mt: int) -> None:
        while high > low:
            high -= 1
            self.put_free(z, pfn + (1 << high), high, mt, tail=False)

    def smallest(self, z: ModelZone, order: int, mt: int) -> int | None:
        for o in range(order, MAX_ORDER + 1):
            if z.lst(mt, o):
                pfn = z.lst(mt, o)[0]
                self.take_free(z, pfn, o, mt)
                self.split(z, pfn, order, o, mt)
                self.events[self.cpu]["zone_locked"] += 1
                return pfn
        return None

    def block_counts(self, z: ModelZone, pfn: int) -> tuple[int, int, int] | None:
        start = pfn - pfn % PB_PAGES
        if not (z.start <= start and start + PB_PAGES - 1 < z.end):
            return None
        free = movable = 0
        p = start
        while p < start + PB_PAGES:
            b = self.blocks.get(p)
            if b is None:
                p += 1
                continue
            if b[0] == "F":
                free += 1 << b[1]
            elif b[0] == "A" and self.alloc_type.get(p) == MOVABLE:
                movable += 1 << b[1]
            p += 1 << b[1]
        return start, free, movable

    def move_block_free_pages(self, z: ModelZone, start: int, old: int, new: int) -> None:
        p = start
        while p < start + PB_PAGES:
            b = self.blocks.get(p)
            if b is not None and b[0] == "F":
                z.lst(old, b[1]).remove(p)
                z.lst(new, b[1]).append(p)
                p += 1 << b[1]
            else:
                p += 1

    def boost_watermark(self, z: ModelZone) -> bool:
        if z.managed < 4 * PB_PAGES:
            return False
        top = z.wmark[2] * 15000 // 10000
        if not top:
            return False
        z.boost = min(z.boost + PB_PAGES, max(PB_PAGES, top))
        return True

    def claim(self, z: ModelZone, order: int, mt: int, flags: int) -> int | None:
        lowest = PB_ORDER if (order < PB_ORDER and flags & A_NOFRAG) else order
        for o in range(MAX_ORDER, lowest - 1, -1):
            if o < 4 and mt == MOVABLE:
                break  # not worth claiming a pageblock for: stop
            if not z.nr_free(o):
                continue
            fb = next((f for f in FALLBACK[mt] if z.lst(f, o)), None)
            if fb is None:
                continue
            pfn = z.lst(fb, o)[0]
            page: int | None
            if o >= PB_ORDER:
                self.take_free(z, pfn, o, fb)
                self.set_ptype(pfn, o, mt)
                self.split(z, pfn, order, o, mt)
                page = pfn
            else:
                if self.boost_watermark(z) and flags & A_KSWAPD:
                    z.boosted = True
                counted = self.block_counts(z, pfn)
                page = None
                if counted is not None:
                    start, free, movable = counted
                    if mt == MOVABLE:
                        alike = movable
                    elif fb == MOVABLE:
                        alike = PB_PAGES - free - movable
                    else:
                        alike = 0
                    if free + alike >= PB_PAGES // 2:
                        self.move_block_free_pages(z, start, fb, mt)
                        self.pb_type[start // PB_PAGES] = mt
                        page = self.smallest(z, order, mt)
            if page is not None:
                self.events[self.cpu]["extfrag"] += 1
                return page
        return None

    def steal(self, z: ModelZone, order: int, mt: int) -> int | None:
        for o in range(order, MAX_ORDER + 1):
            fb = next((f for f in FALLBACK[mt] if z.lst(f, o)), None)
            if fb is None:
                continue
            pfn = z.lst(fb, o)[0]
            self.take_free(z, pfn, o, fb)
            self.split(z, pfn, order, o, fb)
            self.events[self.cpu]["extfrag"] += 1
            return pfn
        return None

    def rmqueue_one(self, z: ModelZone, order: int, mt: int, flags: int, mode: list[str]
                    ) -> int | None:
        if mode[0] == "normal":
            p = self.smallest(z, order, mt)
            if p is not None:
                return p
        if mode[0] in ("normal", "claim"):
            p = self.claim(z, order, mt, flags)
            if p is not None:
                mode[0] = "normal"
                return p
        if not flags & A_NOFRAG:
            p = self.steal(z, order, mt)
            if p is not None:
                mode[0] = "steal"
                return p
        return None

    # -- freeing ------------------------------------------------------------------------------

    def free_to_buddy(self, z: ModelZone, pfn: int, order: int, mt: int) -> None:
        self.blocks.pop(pfn, None)
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if not self.is_free_block(z, buddy, order):
                break
            bmt = mt if order < PB_ORDER else self.ptype(buddy)
            if bmt != mt and (mt >= 3 or bmt >= 3):
                break
            self.take_free(z, buddy, order, bmt)
            if bmt != mt:
                self.set_ptype(buddy, order, mt)
            pfn = min(pfn, buddy)
            order += 1
        tail = False
        if order < MAX_ORDER - 1:
            parent_buddy = (pfn - pfn % (2 << order)) ^ (2 << order)
            tail = self.is_free_block(z, parent_buddy, order + 1)
        self.put_free(z, pfn, order, mt, tail)

    def free_direct(self, z: ModelZone, pfn: int, order: int) -> None:
        piece = min(order, PB_ORDER)
        for p in range(pfn, pfn + (1 << order), 1 << piece):
            self.free_to_buddy(z, p, piece, self.ptype(p))

    # -- watermarks -----------------------------------------------------------------------------

    def watermark_ok(self, z: ModelZone, order: int, mark: int, highest: int, flags: int) -> bool:
        free = z.free_pages() - ((1 << order) - 1)
        if not flags & A_RESERVES:
            free -= z.free_highatomic()
        floor = mark
        if flags & A_RESERVES:
            if flags & A_MIN_RESERVE:
                floor -= floor // 2
                if flags & A_NON_BLOCK:
                    floor -= floor // 4
            if flags & A_OOM:
                floor -= floor // 2
        if free <= floor + z.reserve[highest]:
            return False
        if order == 0:
            return True
        for o in range(order, MAX_ORDER + 1):
            if any(z.lst(mt, o) for mt in (0, 1, 2)):
                return True
            if flags & (A_HIGHATOMIC | A_OOM) and z.lst(HIGHATOMIC, o):
                return True
        return False

    def watermark_fast(self, z: ModelZone, order: int, mark: int, highest: int, flags: int
                       ) -> bool:
        if self.watermark_ok(z, order, mark, highest, flags):
            return True
        if order == 0 and flags & A_MIN_RESERVE and z.boost and flags & 3 == A_MIN:
            return self.watermark_ok(z, order, z.wmark[0], highest, flags)
        return False

    # -- pcp ---------------------------------------------------------------------------------------

    def pcp_alloc_count(self, z: ModelZone, p: Pcp, order: int) -> int:
        p.high = min(max(p.high, p.high_min), p.high_max)
        if p.high < p.batch:
            return 1
        n = p.batch if order else p.batch << p.alloc_factor
        if p.high_min != p.high_max and not z.below_high:
            p.high = min(p.high + n, p.high_max)
        if order == 0:
            room = max(p.high - p.count - p.batch, p.batch)
            if n <= room and p.alloc_factor < 5:
                p.alloc_factor += 1
            n = min(n, room)
        if n > 1:
            n = max(n >> order, 2)
        return n

    def pcp_alloc(self, z: ModelZone, p: Pcp, order: int, mt: int, flags: int) -> int | None:
        p.free_count //= 2
        lst = p.lists[pindex(mt, order)]
        if not lst:
            n = self.pcp_alloc_count(z, p, order)
            mode = ["normal"]
            for _ in range(n):
                page = self.rmqueue_one(z, order, mt, flags, mode)
                if page is None:
                    break
                lst.append(page)
                self.blocks[page] = ("P", order, z.index)
                p.count += 1 << order
            if not lst:
                return None
        page = lst.pop(0)
        p.count -= 1 << order
        return page

    def pcp_high_for_free(self, z: ModelZone, p: Pcp, free_high: bool) -> int:
        p.high = min(max(p.high, p.high_min), p.high_max)
        high = p.high
        if high == 0:
            return 0
        if free_high:
            p.high = max(high - (p.batch << 5), p.high_min)
            return 0
        if p.high_min == p.high_max:
            return high
        if z.below_high:
            p.high = max(high - max(p.free_count, p.batch), p.high_min)
            return max(p.count, p.high_min)
        if p.count >= high and p.high < p.free_count + p.batch:
            p.high = min(max(p.free_count + p.batch, p.high_min), p.high_max)
        return high

    def drain_count(self, p: Pcp, high: int, free_high: bool) -> int:
        if free_high:
            return min(p.count, p.batch << 5)
        if high < p.batch:
            return 1
        return min(max(p.free_count, p.batch), high - p.batch)

    def pcp_drain(self, z: ModelZone, p: Pcp, count: int, start: int) -> None:
        count = min(count, p.count)
        i = start - 1
        while count > 0:
            i = (i + 1) % 14
            while not p.lists[i]:
                i = (i + 1) % 14
            order = pindex_order(i)
            while count > 0 and p.lists[i]:
                page = p.lists[i].pop()
                count -= 1 << order
                p.count -= 1 << order
                self.free_to_buddy(z, page, order, self.ptype(page))
                self.events[p.cpu]["drain"] += 1

    def pcp_free(self, z: ModelZone, p: Pcp, pfn: int, order: int, mt: int) -> None:
        p.alloc_factor //= 2
        i = pindex(mt, order)
        p.lists[i].insert(0, pfn)
        self.blocks[pfn] = ("P", order, z.index)
        p.count += 1 << order
        free_high = False
        if 1 <= order <= 3:
            free_high = (p.free_count >= p.batch + p.high_min // 2 and bool(p.flags & 1)
                         and (not p.flags & 2 or p.count >= p.batch))
            p.flags |= 1
        else:
            p.flags &= ~1
        if p.free_count < p.batch << 5:
            p.free_count += 1 << order
        high = self.pcp_high_for_free(z, p, free_high)
        if p.count < high:
            return
        self.pcp_drain(z, p, self.drain_count(p, high, free_high), i)
        if z.below_high and self.watermark_ok(z, 0, z.wmark[2] + z.boost, 3, 0):
            z.below_high = False

    # -- the allocator's entry points -------------------------------------------------------------

    def zonelist(self, highest: int) -> list[ModelZone]:
        return [z for z in reversed(self.zones) if z.managed and z.index <= highest]

    def highest_zone(self, gfp: int) -> int:
        if gfp & G_DMA:
            return 0
        if gfp & G_DMA32:
            return 1
        if gfp & G_MOVABLE and gfp & G_HIGHMEM:
            return 3
        return 2

    def try_zones(self, order: int, mt: int, flags: int, highest: int, cpu: int) -> int | None:
        while True:
            for z in self.zonelist(highest):
                ok = False
                if not z.below_high:
                    ok = self.watermark_fast(z, order, z.wmark[2] + z.boost, highest, flags)
                    if not ok:
                        z.below_high = True
                if not ok:
                    mark = z.wmark[flags & 3] + z.boost
                    ok = self.watermark_fast(z, order, mark, highest, flags) or bool(
                        flags & A_NO_WMARK)
                if not ok:
                    continue
                page = None
                if order <= 3 or order == 9:
                    page = self.pcp_alloc(z, z.pcps[cpu], order, mt, flags)
                if page is None:
                    if flags & A_HIGHATOMIC:
                        page = self.smallest(z, order, HIGHATOMIC)
                    if page is None:
                        page = self.rmqueue_one(z, order, mt, flags, ["normal"])
                        if page is None and flags & (A_OOM | A_NON_BLOCK):
                            page = self.smallest(z, order, HIGHATOMIC)
                if flags & A_KSWAPD and z.boosted:
                    z.boosted = False
                    z.boost = 0
                if page is None:
                    continue
                if flags & A_HIGHATOMIC:
                    self.reserve_highatomic(z, page, order)
                return page
            if not flags & A_NOFRAG:
                return None
            flags &= ~A_NOFRAG

    def reserve_highatomic(self, z: ModelZone, pfn: int, order: int) -> None:
        if z.managed // 100 < PB_PAGES:
            return
        limit = -(-(z.managed // 100) // PB_PAGES) * PB_PAGES
        mt = self.ptype(pfn)
        if z.reserved_highatomic >= limit or mt >= 3:
            return
        if order < PB_ORDER:
            counted = self.block_counts(z, pfn)
            if counted is None:
                return
            self.move_block_free_pages(z, counted[0], mt, HIGHATOMIC)
            self.pb_type[counted[0] // PB_PAGES] = HIGHATOMIC
            z.reserved_highatomic += PB_PAGES
        else:
            self.set_ptype(pfn, order, HIGHATOMIC)
            z.reserved_highatomic += 1 << order

    def unreserve_highatomic(self, z: ModelZone, mt: int) -> bool:
        if z.reserved_highatomic <= PB_PAGES:
            return False
        for o in range(MAX_ORDER + 1):
            if not z.lst(HIGHATOMIC, o):
                continue
            pfn = z.lst(HIGHATOMIC, o)[0]
            z.reserved_highatomic -= min(max(PB_PAGES, 1 << o), z.reserved_highatomic)
            if o < PB_ORDER:
                counted = self.block_counts(z, pfn)
                if counted is None:
                    continue
                self.move_block_free_pages(z, counted[0], HIGHATOMIC, mt)
                self.pb_type[counted[0] // PB_PAGES] = mt
            else:
                z.lst(HIGHATOMIC, o).remove(pfn)
                z.lst(mt, o).append(pfn)
                self.set_ptype(pfn, o, mt)
            return True
        return False

    def drain_all(self) -> None:
        for z in self.zones:
            for p in z.pcps:
                while p.count:
                    self.pcp_drain(z, p, min(p.count, p.batch << 5), 0)

    def alloc(self, order: int, gfp: int, cpu: int) -> int | None:
        mt = (gfp & (G_MOVABLE | G_RECLAIMABLE)) >> 3
        highest = self.highest_zone(gfp)
        zl = self.zonelist(highest)
        self.cpu = cpu
        flags = A_LOW | (gfp & G_KSWAPD_RECLAIM)
        if zl and zl[0].index == 2:
            flags |= A_NOFRAG
        page = self.try_zones(order, mt, flags, highest, cpu)
        if page is None:
            flags = A_MIN | A_CPUSET | (gfp & (G_HIGH | G_KSWAPD_RECLAIM))
            if not gfp & G_DIRECT_RECLAIM:
                if not gfp & G_NOMEMALLOC:
                    flags |= A_NON_BLOCK
                    if order > 0 and flags & A_MIN_RESERVE:
                        flags |= A_HIGHATOMIC
                if flags & A_MIN_RESERVE:
                    flags &= ~A_CPUSET
            page = self.try_zones(order, mt, flags, highest, cpu)
            if page is None and gfp & G_MEMALLOC and not gfp & G_NOMEMALLOC:
                flags = A_NO_WMARK | (flags & A_KSWAPD)
                page = self.try_zones(order, mt, flags, highest, cpu)
            if page is None and gfp & G_DIRECT_RECLAIM:
                for z in zl:
                    if self.unreserve_highatomic(z, mt):
                        break
                self.drain_all()
                page = self.try_zones(order, mt, flags, highest, cpu)
        if page is None:
            return None
        self.blocks[page] = ("A", order, self.zone_of(page).index)
        self.alloc_type[page] = mt
        return page

    def free(self, pfn: int, order: int, cpu: int) -> None:
        z = self.zone_of(pfn)
        assert self.blocks[pfn] == ("A", order, z.index)
        del self.blocks[pfn]
        self.alloc_type.pop(pfn, None)
        self.cpu = cpu
        if not (order <= 3 or order == 9):
            self.free_direct(z, pfn, order)
            return
        mt = self.ptype(pfn)
        if mt == HIGHATOMIC:
            mt = MOVABLE
        self.pcp_free(z, z.pcps[cpu], pfn, order, mt)

    def tick(self) -> None:
        for z in self.zones:
            if not z.present:
                continue
            for p in z.pcps:
                if p.high > p.high_min:
                    p.high = max(p.count - (p.batch << 5), p.high - p.high // 8, p.high_min)
                if p.count - p.high > 0:
                    self.pcp_drain(z, p, p.count - p.high, 0)
