"""Reports on slab caches: /proc/slabinfo text, a slabtop-like table, counters, fragmentation.

- ``format_slabinfo(rows)``: /proc/slabinfo version 2.1, byte for byte as mm/slab_common.c
  prints it (header, then ``"%-17s %6lu %6lu %6u %4u %4d"`` + tunables + slabdata per cache).
- ``slabtop_rows(allocator)`` / ``slabtop_table(...)``: what slabtop(1) shows per cache
  (OBJS, ACTIVE, USE %, OBJ SIZE in K, SLABS, OBJ/SLAB, CACHE SIZE in K, NAME), sorted like
  slabtop's default (number of objects, descending), as rows and as a rich Table.
- ``procps_slabtop(rows, sort)``: procps-ng ``slabtop -o``'s text byte for byte (its summary,
  heading and ``"%6u %6u %3u%% %7.2fK %6u %8u %9luK %-23s"`` lines, every cache, sorted by a
  procps -s letter), with ``parse_slabinfo(text)`` to read a saved /proc/slabinfo.
- ``counters_table(...)``: the SLUB stat counters per cache (fast/slow paths, new and
  discarded slabs, cpu partial traffic).
- ``sysfs_attributes(cache)``: the cache's /sys/kernel/slab/<cache>/ files and values.
- ``fragmentation_rows(...)``: internal fragmentation of the kmalloc caches: bytes requested
  vs bytes allocated (sums over all kmalloc calls, as perf kmem reports them) and the share
  wasted, plus the unused slots of every cache's slabs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from rich.table import Table

from kmem.errors import InvalidArgumentError
from kmem.slab.cache import KmemCache
from kmem.slab.flags import (
    SLAB_CACHE_DMA,
    SLAB_HWCACHE_ALIGN,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TYPESAFE_BY_RCU,
)
from kmem.slab.sheaves import STAT_FILES
from kmem.slab.stats import STAT_NAMES, CacheStats, SlabInfo

if TYPE_CHECKING:
    from kmem.slab.allocator import SlabAllocator

SLABINFO_HEADER = (
    "slabinfo - version: 2.1\n"
    "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
    " : tunables <limit> <batchcount> <sharedfactor>"
    " : slabdata <active_slabs> <num_slabs> <sharedavail>\n"
)


def format_slabinfo_line(row: SlabInfo) -> str:
    """One cache's line of /proc/slabinfo (mm/slab_common.c cache_show)."""
    return (
        f"{row.name:<17s} {row.active_objs:6d} {row.num_objs:6d} {row.objsize:6d}"
        f" {row.objperslab:4d} {row.pagesperslab:4d}"
        f" : tunables {row.limit:4d} {row.batchcount:4d} {row.sharedfactor:4d}"
        f" : slabdata {row.active_slabs:6d} {row.num_slabs:6d} {row.sharedavail:6d}\n"
    )


def format_slabinfo(rows: Iterable[SlabInfo]) -> str:
    """The whole /proc/slabinfo text for these caches, in the given order."""
    return SLABINFO_HEADER + "".join(format_slabinfo_line(row) for row in rows)


@dataclass(frozen=True, slots=True)
class SlabtopRow:
    """One line of slabtop."""

    objs: int
    active: int
    use_percent: int
    obj_size_kib: float
    slabs: int
    obj_per_slab: int
    cache_size_kib: int
    name: str


def slabtop_row(info: SlabInfo, page_size: int = 4096) -> SlabtopRow:
    """slabtop's numbers from a slabinfo row (procps slabtop: use = 100 * active / objs)."""
    use = 100 * info.active_objs // info.num_objs if info.num_objs else 0
    return SlabtopRow(
        objs=info.num_objs,
        active=info.active_objs,
        use_percent=use,
        obj_size_kib=info.objsize / 1024,
        slabs=info.num_slabs,
        obj_per_slab=info.objperslab,
        cache_size_kib=info.num_slabs * info.pagesperslab * page_size // 1024,
        name=info.name,
    )


def slabtop_rows(allocator: SlabAllocator, *, sort: str = "objs",
                 include_empty: bool = False) -> list[SlabtopRow]:
    """slabtop rows of every cache, sorted by ``sort`` (a SlabtopRow field), largest first."""
    page_size = allocator.buddy.page_size
    rows = [slabtop_row(cache.slabinfo(), page_size) for cache in allocator.cache_list()]
    if not include_empty:
        rows = [row for row in rows if row.objs]
    reverse = sort != "name"
    rows.sort(key=lambda row: getattr(row, sort), reverse=reverse)
    return rows


def slabtop_summary(rows: Sequence[SlabtopRow]) -> str:
    """slabtop's header lines: objects, slabs, caches and sizes in use."""
    objs = sum(r.objs for r in rows)
    active = sum(r.active for r in rows)
    slabs = sum(r.slabs for r in rows)
    size = sum(r.cache_size_kib for r in rows)
    active_size = sum(r.active * r.obj_size_kib for r in rows)
    active_slabs = sum(1 for r in rows if r.active)
    return (
        f" Active / Total Objects (% used)    : {active} / {objs}"
        f" ({100 * active / objs if objs else 0:.1f}%)\n"
        f" Active / Total Slabs (% used)      : {slabs} / {slabs} (100.0%)\n"
        f" Active / Total Caches (% used)     : {active_slabs} / {len(rows)}"
        f" ({100 * active_slabs / len(rows) if rows else 0:.1f}%)\n"
        f" Active / Total Size (% used)       : {active_size:.2f}K / {size:.2f}K"
        f" ({100 * active_size / size if size else 0:.1f}%)"
    )


def slabtop_table(rows: Sequence[SlabtopRow], title: str = "slabtop") -> Table:
    """A rich Table of slabtop rows."""
    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for column in ("OBJS", "ACTIVE", "USE", "OBJ SIZE", "SLABS", "OBJ/SLAB", "CACHE SIZE"):
        table.add_column(column, justify="right")
    table.add_column("NAME", justify="left", no_wrap=True)
    for row in rows:
        table.add_row(
            str(row.objs), str(row.active), f"{row.use_percent}%", f"{row.obj_size_kib:.2f}K",
            str(row.slabs), str(row.obj_per_slab), f"{row.cache_size_kib}K", row.name,
        )
    return table


COUNTER_COLUMNS = (
    ("alloc_fastpath", "alloc fast"),
    ("alloc_slowpath", "alloc slow"),
    ("free_fastpath", "free fast"),
    ("free_slowpath", "free slow"),
    ("alloc_slab", "new slabs"),
    ("free_slab", "freed slabs"),
)


def counters_table(stats: Iterable[CacheStats], title: str = "slab counters",
                   limit: int | None = None) -> Table:
    """A rich Table of the per-cache counters of the busiest caches (most allocations first).

    "partial c/n" is the number of slabs on the CPUs' partial lists and on the node's.
    """
    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("NAME", no_wrap=True)
    for _, label in COUNTER_COLUMNS:
        table.add_column(label, justify="right")
    table.add_column("partial c/n", justify="right")
    busy = [s for s in stats if s.alloc_fastpath or s.alloc_slowpath or s.slabs]
    busy.sort(key=lambda s: s.alloc_fastpath + s.alloc_slowpath, reverse=True)
    for stat in busy[:limit]:
        table.add_row(stat.name, *(str(getattr(stat, key)) for key, _ in COUNTER_COLUMNS),
                      f"{stat.cpu_partial_slabs}/{stat.partial_slabs}")
    return table


@dataclass(frozen=True, slots=True)
class FragmentationRow:
    """Internal fragmentation of one cache."""

    name: str
    bytes_requested: int  # kmalloc: sum of request sizes since boot
    bytes_allocated: int  # kmalloc: sum of object sizes handed out for them
    wasted_percent: float  # 100 * (1 - requested / allocated)
    slots: int  # object slots in the cache's slabs now
    used_slots: int  # of which allocated
    slab_bytes: int  # bytes of the cache's slabs
    object_bytes: int  # used_slots * object_size: bytes the objects occupy


def fragmentation_rows(allocator: SlabAllocator) -> list[FragmentationRow]:
    """Per cache with slabs or kmalloc traffic: requested vs allocated, slabs vs objects."""
    rows = []
    page_size = allocator.buddy.page_size
    for cache in allocator.cache_list():
        stat = cache.stats()
        if not (stat.slabs or stat.bytes_allocated):
            continue
        slab_bytes = sum(page_size << order for _, order in cache.slab_extents())
        rows.append(FragmentationRow(
            name=cache.name,
            bytes_requested=stat.bytes_requested,
            bytes_allocated=stat.bytes_allocated,
            wasted_percent=100 * stat.internal_fragmentation,
            slots=stat.total_objects,
            used_slots=stat.objects,
            slab_bytes=slab_bytes,
            object_bytes=stat.objects * cache.object_size,
        ))
    requested, allocated = allocator.large_kmalloc_bytes
    if allocated:  # some large kmalloc since boot
        pages = allocator.large_kmalloc_pages
        rows.append(FragmentationRow(
            name="kmalloc_large", bytes_requested=requested, bytes_allocated=allocated,
            wasted_percent=100 * (1 - requested / allocated),
            slots=0, used_slots=0, slab_bytes=pages * page_size, object_bytes=0,
        ))
    return rows


def fragmentation_table(rows: Sequence[FragmentationRow],
                        title: str = "internal fragmentation") -> Table:
    """A rich Table of fragmentation rows."""
    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("NAME", no_wrap=True)
    for column in ("requested", "allocated", "wasted", "slots used", "slab bytes",
                   "object bytes"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row.name, str(row.bytes_requested), str(row.bytes_allocated),
                      f"{row.wasted_percent:.1f}%", f"{row.used_slots}/{row.slots}",
                      str(row.slab_bytes), str(row.object_bytes))
    return table


def merged_cache_lines(allocator: SlabAllocator) -> list[str]:
    """One line per cache that others were merged into: its sysfs name and every alias, as
    /sys/kernel/slab shows them (a directory named like ':0000064' and a symlink per name)."""
    return [
        f"{cache.sysfs_name}: {cache.name} <- {', '.join(cache.aliases)}"
        for cache in allocator.cache_list() if cache.aliases
    ]


def sysfs_attributes(cache: KmemCache) -> dict[str, int | str]:
    """A cache as /sys/kernel/slab/<cache>/ shows it: geometry, flags (0/1), aliases, slab
    counts and (as with CONFIG_SLUB_STATS, totals only) the stat counters.

    ``objects`` is the allocated objects (those held in sheaves included, as Linux counts
    them) and ``total_objects`` the slots of all slabs; ``partial`` the node partial slabs;
    ``cpu_slabs`` the cpu slabs plus cpu partial slabs. The files are those of the cache's
    kernel: 6.18 adds ``sheaf_capacity`` and the sheaf and barn counters, 7.0 has no cpu slab
    counters (cpu_partial and cpu_slabs read 0).
    """
    stats = cache.stats()
    flags = cache.flags
    attributes: dict[str, int | str] = {
        "aliases": len(cache.aliases),
        "align": cache.align,
        "cache_dma": int(bool(flags & SLAB_CACHE_DMA)),
        "cpu_partial": cache.cpu_partial,
        "cpu_slabs": stats.cpu_slabs + stats.cpu_partial_slabs,
        "ctor": getattr(cache.ctor, "__name__", "ctor") if cache.ctor else "",
        "destroy_by_rcu": int(bool(flags & SLAB_TYPESAFE_BY_RCU)),
        "hwcache_align": int(bool(flags & SLAB_HWCACHE_ALIGN)),
        "min_partial": cache.min_partial,
        "object_size": cache.object_size,
        "objects": stats.objects,
        "objs_per_slab": cache.objs_per_slab,
        "order": cache.order,
        "partial": stats.partial_slabs,
        "poison": int(bool(flags & SLAB_POISON)),
        "reclaim_account": int(bool(flags & SLAB_RECLAIM_ACCOUNT)),
        "red_zone": int(bool(flags & SLAB_RED_ZONE)),
        "slab_size": cache.slab_size,
        "slabs": stats.slabs,
        "store_user": int(bool(flags & SLAB_STORE_USER)),
        "total_objects": stats.total_objects,
        "usersize": cache.usersize,
    }
    kernel = cache.kernel if cache.policy == "slub" else "6.17"
    if kernel != "6.17":
        attributes["sheaf_capacity"] = cache.sheaf_capacity
    for name in STAT_FILES[kernel] if kernel != "6.17" else STAT_NAMES:
        attributes[name] = getattr(stats, name)
    return dict(sorted(attributes.items()))


# -- procps slabtop -o -----------------------------------------------------------------------

# procps slabtop's -s keys -> (the SlabInfo number it sorts on, ascending?). procps sorts on
# the caches' /proc/slabinfo numbers: b objects per slab, c cache size (num_slabs *
# pagesperslab * page size), l slabs, v active slabs, p pages per slab, u the use percent.
PROCPS_SORT_KEYS: Final = {
    "a": "active objects", "b": "objects per slab", "c": "cache size", "l": "slabs",
    "v": "active slabs", "n": "name", "o": "objects (the default)", "p": "pages per slab",
    "s": "object size", "u": "cache utilization",
}
_INT_MAX: Final = 2**31 - 1
_UINT_MASK: Final = 2**32 - 1


def _float32(value: float) -> float:
    """``value`` rounded to a C float (procps computes the use percent in float)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def procps_use_percent(active_objs: int, num_objs: int) -> int:
    """procps' use column: ``(unsigned)(100 * ((float)active / num))``, in single precision
    as C computes it (57 of 100 objects is 57%, where double precision would truncate
    56.99999... to 56)."""
    if not num_objs:
        return 0
    ratio = _float32(_float32(active_objs) / _float32(num_objs))
    return int(_float32(100 * ratio))


def _procps_sort_value(row: SlabInfo, key: str, page_size: int) -> int:
    """A numeric sort key's value (procps_sorted orders by name itself)."""
    return {
        "o": row.num_objs, "a": row.active_objs, "s": row.objsize, "b": row.objperslab,
        "p": row.pagesperslab, "l": row.num_slabs, "v": row.active_slabs,
        "c": row.num_slabs * row.pagesperslab * page_size,
        "u": procps_use_percent(row.active_objs, row.num_objs),
    }[key]


def procps_sorted(rows: Iterable[SlabInfo], key: str = "o", page_size: int = 4096
                  ) -> list[SlabInfo]:
    """The caches in slabtop's order for sort key ``key`` (one of PROCPS_SORT_KEYS): largest
    first, names in ascending byte order (slabtop under LC_ALL=C); ties keep /proc/slabinfo's
    order (glibc's qsort_r is a stable merge sort at these sizes)."""
    if key not in PROCPS_SORT_KEYS:
        raise InvalidArgumentError(
            f"unknown slabtop sort key {key!r} (expected one of {', '.join(PROCPS_SORT_KEYS)})")
    if key == "n":
        return sorted(rows, key=lambda row: row.name.encode())
    return sorted(rows, key=lambda row: _procps_sort_value(row, key, page_size), reverse=True)


def _percent(part: int, whole: int) -> str:
    """printf("%.1f", 100.0 * part / whole): 0 / 0 is a NaN, which glibc prints "-nan"."""
    if whole == 0:
        return "-nan" if part == 0 else "inf"
    return f"{100.0 * part / whole:.1f}"


def procps_summary(rows: Iterable[SlabInfo]) -> str:
    """procps slabtop's five summary lines (newline-terminated) for these /proc/slabinfo rows.

    As procps' library computes them: objects and slabs are sums over all caches; active
    caches are those with objects, of all caches; the size is objects times object size
    (active objects for the active size), not the slabs' pages; the average object is the total
    size divided by the objects (integer division); the minimum and maximum object sizes run
    over every cache, empty ones too. Counters are C unsigned ints where procps has them.
    """
    objs = active = slabs = active_slabs = caches = active_caches = 0
    total_size = active_size = 0
    min_size, max_size = _INT_MAX, 0
    for row in rows:
        min_size = min(min_size, row.objsize)
        max_size = max(max_size, row.objsize)
        if row.num_objs:
            active_caches += 1
        objs += row.num_objs
        active += row.active_objs
        total_size += row.num_objs * row.objsize
        active_size += row.active_objs * row.objsize
        slabs += row.num_slabs
        active_slabs += row.active_slabs
        caches += 1
    objs &= _UINT_MASK
    active &= _UINT_MASK
    slabs &= _UINT_MASK
    active_slabs &= _UINT_MASK
    average = (total_size // objs) & _UINT_MASK if objs else 0
    size_percent = _percent(active_size, total_size)
    lines = [
        f" {'Active / Total Objects (% used)':<35s}: {active} / {objs}"
        f" ({_percent(active, objs)}%)",
        f" {'Active / Total Slabs (% used)':<35s}: {active_slabs} / {slabs}"
        f" ({_percent(active_slabs, slabs)}%)",
        f" {'Active / Total Caches (% used)':<35s}: {active_caches} / {caches}"
        f" ({_percent(active_caches, caches)}%)",
        f" {'Active / Total Size (% used)':<35s}: {active_size / 1024.0:.2f}K /"
        f" {total_size / 1024.0:.2f}K ({size_percent}%)",
        f" {'Minimum / Average / Maximum Object':<35s}: {min_size / 1024.0:.2f}K /"
        f" {average / 1024.0:.2f}K / {max_size / 1024.0:.2f}K",
    ]
    return "\n".join(lines) + "\n"


def procps_slabtop(rows: Sequence[SlabInfo], sort: str = "o", page_size: int = 4096) -> str:
    """The text of procps-ng's ``slabtop -o`` (4.0) for these /proc/slabinfo rows, byte for
    byte: the five summary lines (procps_summary), a blank line, the heading padded to 78
    columns, and one line per cache, empty caches included, sorted by ``sort``
    (procps_sorted): ``"%6u %6u %3u%% %7.2fK %6u %8u %9luK %-23s"``."""
    lines = [procps_summary(rows),
             f"{'  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME':<78s}"]
    for row in procps_sorted(rows, sort, page_size):
        cache_kib = row.num_slabs * row.pagesperslab * page_size // 1024
        lines.append(
            f"{row.num_objs:6d} {row.active_objs:6d}"
            f" {procps_use_percent(row.active_objs, row.num_objs):3d}%"
            f" {row.objsize / 1024.0:7.2f}K {row.num_slabs:6d} {row.objperslab:8d}"
            f" {cache_kib:9d}K {row.name:<23s}")
    return "\n".join(lines) + "\n"


def parse_slabinfo(text: str, source: str = "slabinfo") -> list[SlabInfo]:
    """The cache lines of a /proc/slabinfo text (version 2.x), in order; a line kmem cannot
    read is an InvalidArgumentError naming ``source`` and the line number."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("slabinfo - version: 2."):
        raise InvalidArgumentError(
            f"{source}:1: not a /proc/slabinfo text (expected 'slabinfo - version: 2.x')")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip() or line.startswith("#"):
            continue
        head, _, rest = line.partition(" : tunables ")
        tunables, _, slabdata = rest.partition(" : slabdata ")
        fields = head.split()
        try:
            numbers = [int(field) for field in fields[1:6]]
            limits = [int(field) for field in tunables.split()[:3]]
            slab_numbers = [int(field) for field in slabdata.split()[:3]]
        except ValueError:
            numbers = []
        if len(fields) != 6 or len(numbers) != 5 or len(limits) != 3 or len(slab_numbers) != 3:
            raise InvalidArgumentError(f"{source}:{number}: not a slabinfo cache line: {line!r}")
        rows.append(SlabInfo(fields[0], *numbers, *limits, *slab_numbers))
    return rows
