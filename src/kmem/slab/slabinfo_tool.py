"""The report modes of Linux's ``tools/mm/slabinfo`` over a /sys/kernel/slab snapshot.

``slabinfo -r`` prints a report per cache (sizes, slabs, debug flags, memory and its losses,
then its kmem_cache ops, alloc/free tracking, NUMA spread and, with CONFIG_SLUB_STATS, the
fast/slow path counters); ``slabinfo -T`` prints totals over all caches. Both read every entry
of /sys/kernel/slab in directory order: each directory is a cache (its files are numbers the
tool reads with atol), each symlink an alias naming the cache it points to. Here a
SysfsSnapshot holds those entries, from a real directory (``snapshot_from_dir``), a JSON
snapshot of one (``snapshot_from_json``), or kmem's own allocator (``snapshot_from_allocator``),
and ``slabinfo_report`` / ``slabinfo_totals`` print what the tool prints, byte for byte: the
same C integer types (an ``unsigned int`` difference wraps, ``%ld`` prints an ``unsigned
long`` as signed), the same size strings (``store_size``: ``378.9M``), the same name sort (the
tool's exchange sort with strcasecmp), the same renaming of merged caches (``:0000192`` takes
its alias's name when one alias points at it; with several it keeps its sysfs name).
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from kmem.errors import InvalidArgumentError

if TYPE_CHECKING:
    from kmem.slab.allocator import SlabAllocator

# The files the tool reads in each cache directory (the stat counters only exist with
# CONFIG_SLUB_STATS; ops, alloc_calls and free_calls are optional texts).
NUMBER_FILES: Final = (
    "aliases", "align", "cache_dma", "cpu_slabs", "destroy_by_rcu", "hwcache_align",
    "object_size", "objects", "objects_partial", "objects_total", "objs_per_slab", "order",
    "partial", "poison", "reclaim_account", "red_zone", "sanity_checks", "slab_size", "slabs",
    "store_user", "trace", "alloc_fastpath", "alloc_slowpath", "free_fastpath",
    "free_slowpath", "free_frozen", "free_add_partial", "free_remove_partial",
    "alloc_from_partial", "alloc_slab", "alloc_refill", "free_slab", "cpuslab_flush",
    "deactivate_full", "deactivate_empty", "deactivate_to_head", "deactivate_to_tail",
    "deactivate_remote_frees", "order_fallback", "cmpxchg_double_cpu_fail",
    "cmpxchg_double_fail", "cpu_partial_alloc", "cpu_partial_free", "alloc_node_mismatch",
    "deactivate_bypass",
)
TEXT_FILES: Final = ("ops", "alloc_calls", "free_calls")
# Fields the tool declares int (printed %d) and unsigned int; the rest are unsigned long.
_INT_FIELDS: Final = frozenset({"aliases", "align", "cache_dma", "cpu_slabs", "destroy_by_rcu",
                                "order", "poison", "reclaim_account", "red_zone"})
_UINT_FIELDS: Final = frozenset({"hwcache_align", "object_size", "objs_per_slab",
                                 "sanity_checks", "slab_size", "store_user", "trace"})
_ATOL: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_MAX_NODES: Final = 1024


def _u32(value: int) -> int:
    return value & 0xFFFF_FFFF


def _s32(value: int) -> int:
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >> 31 else value


def _u64(value: int) -> int:
    return value & 0xFFFF_FFFF_FFFF_FFFF


def _s64(value: int) -> int:
    value = _u64(value)
    return value - (1 << 64) if value >> 63 else value


def _atol(text: str) -> int:
    match = _ATOL.match(text)
    return int(match.group(1)) if match else 0


@dataclass(frozen=True, slots=True)
class SysfsEntry:
    """One entry of /sys/kernel/slab: a cache directory (``files``: name -> text) or an alias
    symlink (``link``: the cache directory it names)."""

    name: str
    link: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SysfsSnapshot:
    """/sys/kernel/slab's entries in directory (readdir) order, and the page size."""

    entries: tuple[SysfsEntry, ...]
    page_size: int = 4096

    def to_json(self) -> dict[str, Any]:
        return {"page_size": self.page_size,
                "entries": [[e.name, e.link, None if e.link is not None else e.files]
                            for e in self.entries]}


def snapshot_from_dir(path: str | os.PathLike[str], page_size: int = 4096) -> SysfsSnapshot:
    """The entries of a /sys/kernel/slab directory (or a copy of one), in readdir order."""
    root = Path(path)
    try:
        names = os.listdir(root)  # readdir order, as the tool walks it
    except OSError as error:
        raise InvalidArgumentError(f"cannot read {str(root)!r}: {error.strerror}") from None
    entries = []
    for name in names:
        if name.startswith("."):
            continue
        entry = root / name
        if entry.is_symlink():
            entries.append(SysfsEntry(name, link=os.readlink(entry)))
            continue
        if not entry.is_dir():
            raise InvalidArgumentError(f"{str(entry)!r} is neither a cache directory nor an"
                                       " alias symlink")
        files = {}
        for file_name in (*NUMBER_FILES, *TEXT_FILES):
            try:
                files[file_name] = (entry / file_name).read_text(errors="replace")
            except OSError:
                continue  # (a file this kernel does not have reads as 0, as in the tool)
        entries.append(SysfsEntry(name, files=files))
    return SysfsSnapshot(tuple(entries), page_size)


def snapshot_from_json(path: str | os.PathLike[str]) -> SysfsSnapshot:
    """A snapshot saved as JSON (plain, gzip or xz): ``{"page_size": N, "entries": [[name,
    link, files], ...]}`` (a link's files are null, a directory's link is null)."""
    try:
        raw = Path(path).read_bytes()
        if raw.startswith(b"\xfd7zXZ\x00"):
            raw = lzma.decompress(raw)
        elif raw.startswith(b"\x1f\x8b"):
            raw = gzip.decompress(raw)
        document = json.loads(raw)
        entries = tuple(
            SysfsEntry(str(name), link=None if link is None else str(link),
                       files={} if files is None else {str(k): str(v) for k, v in files.items()})
            for name, link, files in document["entries"])
        page_size = int(document.get("page_size", 4096))
    except OSError as error:
        raise InvalidArgumentError(f"cannot read {str(path)!r}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError, lzma.LZMAError, EOFError,
            gzip.BadGzipFile) as error:
        raise InvalidArgumentError(
            f"{str(path)!r}: not a /sys/kernel/slab snapshot ({type(error).__name__}: {error})"
        ) from None
    return SysfsSnapshot(entries, page_size)


def load_snapshot(path: str | os.PathLike[str], page_size: int = 4096) -> SysfsSnapshot:
    """A directory (``/sys/kernel/slab`` or a copy) or a JSON snapshot file."""
    if Path(path).is_dir():
        return snapshot_from_dir(path, page_size)
    return snapshot_from_json(path)


def snapshot_from_allocator(allocator: SlabAllocator) -> SysfsSnapshot:
    """kmem's caches as /sys/kernel/slab would show them: a directory per cache (named by
    its sysfs name) with its sysfs files, and a symlink per name merged into it (Linux links
    every name of a merged cache, its own included, to a ``:0000192``-style directory). kmem
    has no directory order of its own: entries come in name order."""
    from kmem.slab.report import sysfs_attributes

    entries = []
    for cache in allocator.cache_list():
        files = {key: f"{value}\n" for key, value in sysfs_attributes(cache).items()}
        entries.append(SysfsEntry(cache.sysfs_name, files=files))
        if cache.sysfs_name != cache.name:
            entries.append(SysfsEntry(cache.name, link=cache.sysfs_name))
        entries += [SysfsEntry(alias, link=cache.sysfs_name) for alias in cache.aliases
                    if alias != cache.name]
    entries.sort(key=lambda entry: entry.name)
    return SysfsSnapshot(tuple(entries), allocator.buddy.page_size)


class _Slab:
    """A cache as the tool's ``struct slabinfo`` holds it."""

    def __init__(self, entry: SysfsEntry, tool: _Tool) -> None:
        self.name = entry.name
        self.refs = 0
        self.files = entry.files
        self.numbers: dict[str, int] = {}
        for file_name in NUMBER_FILES:
            text = entry.files.get(file_name, "").split("\n", 1)[0]  # fgets: the first line
            value = _atol(text)
            if file_name in _INT_FIELDS:
                value = _s32(value)
            elif file_name in _UINT_FIELDS:
                value = _u32(value)
            else:
                value = _u64(value)
            self.numbers[file_name] = value
        self.numa = tool.numa_list(entry.files.get("slabs", ""))
        self.numa_partial = tool.numa_list(entry.files.get("partial", ""))

    def __getattr__(self, name: str) -> int:
        try:
            return self.numbers[name]
        except KeyError:  # pragma: no cover - every name the tool reads is in NUMBER_FILES
            raise AttributeError(name) from None


class _Tool:
    """The tool's globals and functions, one instance per run."""

    def __init__(self, snapshot: SysfsSnapshot, *, show_bytes: bool = False,
                 skip_zero: bool = True, pattern: str | None = None) -> None:
        self.page_size = snapshot.page_size
        self.show_bytes = show_bytes
        self.skip_zero = skip_zero
        self.highest_node = 0
        self.line = 0
        self.out: list[str] = []
        self.slabs: list[_Slab] = []
        self.aliases: list[tuple[str, str]] = []  # (name, the basename of its link)
        self.alias_slab: list[_Slab | None] = []
        self.alias_targets = 0
        try:  # the tool's slab-regexp: case-insensitive, anywhere in the name
            matcher = re.compile(pattern if pattern is not None else ".*", re.IGNORECASE)
        except re.error as error:
            raise InvalidArgumentError(f"invalid pattern {pattern!r}: {error}") from None
        for entry in snapshot.entries:
            if entry.name.startswith(".") or (
                    not entry.name.startswith(":") and not matcher.search(entry.name)):
                continue
            if entry.link is not None:
                self.aliases.append((entry.name, entry.link.rsplit("/", 1)[-1]))
            else:
                self.slabs.append(_Slab(entry, self))
                if entry.name.startswith(":"):
                    self.alias_targets += 1
        self.actual_slabs = len(self.slabs)

    def numa_list(self, text: str) -> dict[int, int]:
        """decode_numa_list of what follows the number in a ``slabs``/``partial`` file."""
        first = text.split("\n", 1)[0]
        match = re.match(r"[0-9]*", first.lstrip(" \t"))
        rest = first.lstrip(" \t")[match.end() if match else 0:].lstrip(" ")
        numa: dict[int, int] = {}
        position = 0
        while position < len(rest) and rest[position] == "N":
            position += 1
            digits = re.match(r"[0-9]*", rest[position:])
            node_text = digits.group(0) if digits else ""
            position += len(node_text)
            node = int(node_text) if node_text else 0
            if position < len(rest) and rest[position] == "=":
                position += 1
                digits = re.match(r"[0-9]*", rest[position:])
                count_text = digits.group(0) if digits else ""
                position += len(count_text)
                if node < _MAX_NODES:
                    numa[node] = _s32(int(count_text) if count_text else 0)
                self.highest_node = max(self.highest_node, node)
            while position < len(rest) and rest[position] == " ":
                position += 1
        return numa

    def store_size(self, value: int) -> str:
        """The tool's size string: 1234 -> "1.2K", 2345678 -> "2.3M" (with -B: the number)."""
        value = _u64(value)
        divisor, trailer = 1, ""
        if not self.show_bytes:
            if value > 1_000_000_000:
                divisor, trailer = 100_000_000, "G"
            elif value > 1_000_000:
                divisor, trailer = 100_000, "M"
            elif value > 1000:
                divisor, trailer = 100, "K"
        digits = str(_s64(value // divisor))
        if divisor != 1:  # a decimal point before the last digit
            digits = f"{digits[:-1]}.{digits[-1]}"
        return digits + trailer

    def slab_size(self, slab: _Slab) -> int:
        return _u64(slab.slabs * _s32(self.page_size << slab.order))

    # -- -r ------------------------------------------------------------------------------

    def link_slabs(self) -> None:
        self.alias_slab = []
        for name, ref in self.aliases:
            target = next((slab for slab in self.slabs if slab.name == ref), None)
            if target is None:
                raise InvalidArgumentError(f"unresolved alias {name} -> {ref}")
            target.refs += 1
            self.alias_slab.append(target)

    def find_one_alias(self, find: _Slab) -> str | None:
        best: str | None = None
        for (name, _), slab in zip(self.aliases, self.alias_slab, strict=True):
            if slab is find and (best is None or len(best) < len(name)):
                best = name
                if name.startswith("kmall"):
                    return best
        return best

    def rename_slabs(self, first_alias: bool) -> None:
        for slab in self.slabs:
            if not slab.name.startswith(":"):
                continue
            if slab.refs > 1 and not first_alias:
                continue
            alias = self.find_one_alias(slab)
            if alias is not None:
                slab.name = alias
            else:
                slab.name = "*"
                self.actual_slabs -= 1

    def sort_slabs(self, inverted: bool) -> None:
        """The tool's exchange sort by strcasecmp (C locale: ASCII case folding)."""
        slabs = self.slabs
        keys = [slab.name.encode().lower() for slab in slabs]
        for i in range(len(slabs)):
            for j in range(i + 1, len(slabs)):
                result = (keys[i] > keys[j]) - (keys[i] < keys[j])
                if inverted:
                    result = -result
                if result > 0:
                    slabs[i], slabs[j] = slabs[j], slabs[i]
                    keys[i], keys[j] = keys[j], keys[i]

    def print(self, text: str) -> None:
        self.out.append(text)

    def report(self, s: _Slab) -> None:
        if s.name == "*":
            return
        out = self.print
        out(f"\nSlabcache: {s.name:<15s}  Aliases: {s.aliases:2d} Order : {s.order:2d}"
            f" Objects: {s.objects}\n")
        if s.hwcache_align:
            out("** Hardware cacheline aligned\n")
        if s.cache_dma:
            out("** Memory is allocated in a special DMA zone\n")
        if s.destroy_by_rcu:
            out("** Slabs are destroyed via RCU\n")
        if s.reclaim_account:
            out("** Reclaim accounting active\n")
        slab_bytes = _s32(self.page_size << s.order)
        total = _u64(s.slabs * slab_bytes)
        used = _u64(s.objects * s.object_size)
        out("\nSizes (bytes)     Slabs              Debug                Memory\n")
        out("-" * 72 + "\n")
        out(f"Object : {_s32(s.object_size):7d}  Total  : {_s64(s.slabs):7d}   Sanity Checks :"
            f" {_onoff(s.sanity_checks)}  Total: {_s64(total):7d}\n")
        out(f"SlabObj: {_s32(s.slab_size):7d}  Full   :"
            f" {_s64(s.slabs - s.partial - s.cpu_slabs):7d}   Redzoning     :"
            f" {_onoff(s.red_zone)}  Used : {_s64(used):7d}\n")
        out(f"SlabSiz: {slab_bytes:7d}  Partial: {_s64(s.partial):7d}   Poisoning     :"
            f" {_onoff(s.poison)}  Loss : {_s64(total - used):7d}\n")
        out(f"Loss   : {_s32(s.slab_size - s.object_size):7d}  CpuSlab: {s.cpu_slabs:7d}  "
            f" Tracking      : {_onoff(s.store_user)}  Lalig:"
            f" {_s64(_u32(s.slab_size - s.object_size) * s.objects):7d}\n")
        padding = _u32(slab_bytes - s.objs_per_slab * s.slab_size)
        out(f"Align  : {s.align:7d}  Objects: {_s32(s.objs_per_slab):7d}   Tracing       :"
            f" {_onoff(s.trace)}  Lpadd: {_s64(padding * s.slabs):7d}\n")
        self.ops(s)
        self.show_tracking(s)
        self.slab_numa(s)
        self.slab_stats(s)

    def ops(self, s: _Slab) -> None:
        text = s.files.get("ops", "")[:4096]
        if text:
            self.print(f"\n{s.name}: kmem_cache operations\n" + "-" * 44 + "\n" + text)
        else:
            self.print(f"\n{s.name} has no kmem_cache operations\n")

    def show_tracking(self, s: _Slab) -> None:
        for title, dashes, file_name in (("allocation", 71, "alloc_calls"),
                                         ("freeing", 72, "free_calls")):
            self.print(f"\n{s.name}: Kernel object {title}\n" + "-" * dashes + "\n")
            self.print(s.files.get(file_name, "")[:4096] or "No Data\n")

    def slab_numa(self, s: _Slab) -> None:
        if not self.highest_node:
            self.print(f"\n{s.name}: No NUMA information available.\n")
            return
        if self.skip_zero and not s.slabs:
            return
        nodes = range(self.highest_node + 1)
        if not self.line:
            self.print(f"\n{'NUMA nodes':<21s}:" + "".join(f" {node:4d}" for node in nodes)
                       + "\n" + "-" * 22 + "-----" * len(nodes) + "\n")
        self.print(f"{'All slabs':<21s} "
                   + "".join(f" {self.store_size(s.numa.get(n, 0)):>4s}" for n in nodes) + "\n")
        self.print(f"{'Partial slabs':<21s} "
                   + "".join(f" {self.store_size(s.numa_partial.get(n, 0)):>4s}" for n in nodes)
                   + "\n")
        self.line += 1

    def slab_stats(self, s: _Slab) -> None:
        if not s.alloc_slab:
            return
        total_alloc = _u64(s.alloc_fastpath + s.alloc_slowpath)
        total_free = _u64(s.free_fastpath + s.free_slowpath)
        if not total_alloc:
            return

        def row(label: str, alloc: int, free: int) -> str:
            alloc, free = _u64(alloc), _u64(free)
            free_share = _u64(free * 100) // total_free if total_free else 0
            return (f"{label:<20s} {alloc:8d} {free:8d} {_u64(alloc * 100) // total_alloc:3d}"
                    f" {free_share:3d}\n")

        out = self.print
        out("\nSlab Perf Counter       Alloc     Free %Al %Fr\n" + "-" * 50 + "\n")
        out(row("Fastpath", s.alloc_fastpath, s.free_fastpath))
        out(row("Slowpath", total_alloc - s.alloc_fastpath, s.free_slowpath))
        out(row("Page Alloc", s.alloc_slab, s.free_slab))
        out(row("Add partial", s.deactivate_to_head + s.deactivate_to_tail, s.free_add_partial))
        out(row("Remove partial", s.alloc_from_partial, s.free_remove_partial))
        out(row("Cpu partial list", s.cpu_partial_alloc, s.cpu_partial_free))
        out(row("RemoteObj/SlabFrozen", s.deactivate_remote_frees, s.free_frozen))
        out(f"{'Total':<20s} {total_alloc:8d} {total_free:8d}\n\n")
        if s.cpuslab_flush:
            out(f"Flushes {s.cpuslab_flush:8d}\n")
        total = _u64(s.deactivate_full + s.deactivate_empty + s.deactivate_to_head
                     + s.deactivate_to_tail + s.deactivate_bypass)
        if total:
            out("\nSlab Deactivation             Occurrences %\n" + "-" * 49 + "\n")
            for label, value in (
                    ("Slab full", s.deactivate_full), ("Slab empty", s.deactivate_empty),
                    ("Moved to head of partial list", s.deactivate_to_head),
                    ("Moved to tail of partial list", s.deactivate_to_tail),
                    ("Deactivation bypass", s.deactivate_bypass),
                    ("Refilled from foreign frees", s.alloc_refill),
                    ("Node mismatch", s.alloc_node_mismatch)):
                out(f"{label:<29s} {value:7d}  {_u64(value * 100) // total:3d}%\n")
        if s.cmpxchg_double_fail or s.cmpxchg_double_cpu_fail:
            out("\nCmpxchg_double Looping\n------------------------\n")
            out(f"Locked Cmpxchg Double redos   {s.cmpxchg_double_fail}\n"
                f"Unlocked Cmpxchg Double redos {s.cmpxchg_double_cpu_fail}\n")

    # -- -T ------------------------------------------------------------------------------

    def totals(self) -> None:
        out = self.print
        big = 1 << 63
        counted = []
        for s in self.slabs:
            if not s.slabs or not s.objects:
                continue
            slab_bytes = self.slab_size(s)
            used = _u64(s.objects * s.object_size)
            counted.append({
                "objsize": s.object_size, "partial": s.partial, "slabs": s.slabs,
                "size": slab_bytes, "used": used, "waste": _u64(slab_bytes - used),
                "objwaste": _u32(s.slab_size - s.object_size), "objects": s.objects,
                "partobj": s.objects_partial,
                "ppart": min(100, _u64(s.partial * 100) // s.slabs),
                "ppartobj": min(100, _u64(s.objects_partial * 100) // s.objects),
                "memobj": s.slab_size,
            })
        total_objects = sum(c["objects"] for c in counted)
        if not total_objects:
            out("No objects\n")
            return
        used_slabs = len(counted)

        def low(key: str, start: int = big) -> int:
            return min([start, *(c[key] for c in counted)])

        def high(key: str) -> int:
            return max([0, *(c[key] for c in counted)])

        def total(key: str) -> int:
            return _u64(sum(c[key] for c in counted))

        total_objwaste = _u64(sum(c["objects"] * c["objwaste"] for c in counted))
        total_objsize = _u64(sum(c["objects"] * c["memobj"] for c in counted))
        size = self.store_size
        out("Slabcache Totals\n----------------\n")
        out(f"Slabcaches : {len(self.slabs):15d}   Aliases  : {len(self.aliases):11d}->"
            f"{self.alias_targets:<3d}  Active:    {used_slabs:3d}\n")
        out(f"Memory used: {size(total('size')):>15s}   # Loss   : {size(total('waste')):>15s}"
            f"   MRatio:{size(total('waste') * 100 // total('used')):>6s}%\n")
        out(f"# Objects  : {size(total_objects):>15s}   # PartObj:"
            f" {size(total('partobj')):>15s}   ORatio:"
            f"{size(total('partobj') * 100 // total_objects):>6s}%\n")
        out("\nPer Cache         Average              Min              Max            Total\n")
        out("-" * 76 + "\n")

        def line(label: str, values: Iterable[int], percent: bool = False) -> None:
            texts = [size(value) for value in values]
            if percent:
                out(f"{label:<9s}" + " ".join(f"{text:>15s}%" for text in texts) + "\n")
            else:
                out(f"{label:<10s}" + "  ".join(f"{text:>15s}" for text in texts) + "\n")

        line("#Objects", (total_objects // used_slabs, low("objects"), high("objects"),
                          total_objects))
        line("#Slabs", (total("slabs") // used_slabs, low("slabs"), high("slabs"),
                        total("slabs")))
        line("#PartSlab", (total("partial") // used_slabs, low("partial"), high("partial"),
                           total("partial")))
        line("%PartSlab", (total("ppart") // used_slabs, low("ppart", 100), high("ppart"),
                           total("partial") * 100 // total("slabs")), percent=True)
        line("PartObjs", (total("partobj") * 100 // total_objects, low("partobj"),
                          high("partobj"), total("partobj")))
        line("% PartObj", (total("ppartobj") // used_slabs, low("ppartobj", 100),
                           high("ppartobj"), total("partobj") * 100 // total_objects),
             percent=True)
        line("Memory", (total("size") // used_slabs, low("size"), high("size"), total("size")))
        line("Used", (total("used") // used_slabs, low("used"), high("used"), total("used")))
        line("Loss", (total("waste") // used_slabs, low("waste"), high("waste"),
                      total("waste")))
        out("\nPer Object        Average              Min              Max\n")
        out("-" * 59 + "\n")
        line("Memory", (total_objsize // total_objects, low("memobj"), high("memobj")))
        line("User", (total("used") // total_objects, low("objsize"), high("objsize")))
        line("Loss", (total_objwaste // total_objects, low("objwaste"), high("objwaste")))


def _onoff(flag: int) -> str:
    return "On " if flag else "Off"


def slabinfo_report(snapshot: SysfsSnapshot, *, lines: int = -1, first_alias: bool = False,
                    inverted: bool = False, skip_zero: bool = True,
                    pattern: str | None = None) -> str:
    """``slabinfo -r``: a report per cache, caches by name (strcasecmp), merged caches named
    as the tool names them; ``lines`` (``-N``) stops after that many caches; ``pattern`` (the
    tool's slab-regexp) keeps the caches and aliases whose name it matches, case-insensitively
    (``:``-named merged caches are always kept, as the tool keeps them)."""
    tool = _Tool(snapshot, skip_zero=skip_zero, pattern=pattern)
    tool.link_slabs()
    tool.rename_slabs(first_alias)
    tool.sort_slabs(inverted)
    remaining = lines
    for slab in tool.slabs:
        if remaining == 0:
            break
        if remaining != -1:
            remaining -= 1
        tool.report(slab)
    return "".join(tool.out)


def slabinfo_totals(snapshot: SysfsSnapshot, *, show_bytes: bool = False,
                    pattern: str | None = None) -> str:
    """``slabinfo -T``: totals and per-cache / per-object averages, minima and maxima over
    the caches that have slabs and objects (``show_bytes``: -B, sizes in bytes; ``pattern``
    as for slabinfo_report)."""
    tool = _Tool(snapshot, show_bytes=show_bytes, pattern=pattern)
    tool.totals()
    return "".join(tool.out)
