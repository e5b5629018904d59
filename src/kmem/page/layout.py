"""A machine's physical memory layout: which zones it has, where, and how many pages each manages.

Design: a MachineLayout is an immutable description, nothing more; kmem.page.machine boots a
PageMachine from it. Three ways to get one:

    MachineLayout.default()          one 1 GiB Normal zone at pfn 0 (what BuddyAllocator models)
    MachineLayout.from_sizes({...})  zones of the given sizes, stacked from pfn 0 in zone order
                                     (or each at its own start), all pages present and managed
    layout_from_zoneinfo(text)       the zones of a real /proc/zoneinfo: start_pfn, spanned,
                                     present and managed of each populated zone

Each zone spans [start_pfn, start_pfn + spanned). Which of those frames are holes or
reservations a zoneinfo does not say; kmem puts the managed pages at the top of the span (the
frames the buddy allocator gets at boot), the other present ones below them and the holes
lowest. On the reference machine that reproduces the DMA zone's free blocks exactly (its 3840
managed pages are pfns 256..4095).

Invariants (checked on construction, each with its own error): known zone names, each at most
once, in zone-type order; 0 <= managed <= present <= spanned; spans do not overlap; at least
one page managed; 4 KiB pages.

read_zoneinfo() parses every line of a /proc/zoneinfo (Linux 6.x) into ZoneinfoZone records,
keeping every value, so tests can hold kmem's computed watermarks and pcp sizes against the
kernel's own; a line it cannot read raises ZoneinfoFormatError naming its line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kmem.page.errors import (
    InvalidLayoutError,
    LayoutOverlapError,
    NoManagedPagesError,
    UnknownZoneError,
    ZoneinfoFormatError,
)
from kmem.page.migratetype import MAX_NR_ZONES, ZONE_NAMES

PAGE_SIZE: Final = 4096


@dataclass(frozen=True, slots=True)
class ZoneLayout:
    """One zone: its type name and its page counts (spanned >= present >= managed)."""

    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int

    @property
    def index(self) -> int:
        """The zone type (0 DMA, 1 DMA32, 2 Normal, 3 Movable, 4 Device)."""
        return ZONE_NAMES.index(self.name)

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.spanned

    @property
    def managed_start(self) -> int:
        """First managed pfn: the managed pages are the top of the span."""
        return self.end_pfn - self.managed

    @property
    def present_start(self) -> int:
        """First present pfn: the present pages are the top of the span too."""
        return self.end_pfn - self.present


@dataclass(frozen=True, slots=True)
class MachineLayout:
    """The zones of one node (node 0), in zone-type order; absent zone types are empty."""

    zones: tuple[ZoneLayout, ...]
    node: int = 0
    source: str = "layout"

    def __post_init__(self) -> None:
        _check_layout(self.zones)

    @classmethod
    def default(cls) -> MachineLayout:
        """One 1 GiB Normal zone from pfn 0: the machine of kmem's BuddyAllocator default."""
        pages = (1 << 30) // PAGE_SIZE
        return cls((ZoneLayout("Normal", 0, pages, pages, pages),), source="default")

    @classmethod
    def from_sizes(
        cls, sizes: Mapping[str, int | tuple[int, int]], *, source: str = "sizes"
    ) -> MachineLayout:
        """Zones of ``sizes[name]`` bytes, or ``(size, start)`` bytes, all present and managed.

        Without starts the zones are stacked from address 0 in zone-type order:
        ``{"DMA": 16 << 20, "DMA32": 2 << 30, "Normal": 2 << 30}``.
        """
        zones = []
        next_pfn = 0
        for name in sorted(sizes, key=_zone_order):
            value = sizes[name]
            size, start = value if isinstance(value, tuple) else (value, next_pfn * PAGE_SIZE)
            for what, number in (("size", size), ("start", start)):
                if isinstance(number, bool) or not isinstance(number, int):
                    raise InvalidLayoutError(f"zone {name}: {what} must be an int of bytes")
                if number % PAGE_SIZE or number < 0:
                    raise InvalidLayoutError(
                        f"zone {name}: {what} {number} is not a whole number of"
                        f" {PAGE_SIZE}-byte pages"
                    )
            pages = size // PAGE_SIZE
            zones.append(ZoneLayout(name, start // PAGE_SIZE, pages, pages, pages))
            next_pfn = start // PAGE_SIZE + pages
        return cls(tuple(zones), source=source)

    def zone(self, name: str) -> ZoneLayout | None:
        """The layout of zone ``name``, or None if the machine has no such zone."""
        _zone_order(name)
        return next((z for z in self.zones if z.name == name), None)

    def counts(self, what: str) -> list[int]:
        """``spanned``, ``present`` or ``managed`` of every zone type, 0 for absent ones."""
        out = [0] * MAX_NR_ZONES
        for z in self.zones:
            out[z.index] = getattr(z, what)
        return out

    @property
    def end_pfn(self) -> int:
        return max(z.end_pfn for z in self.zones)


def _zone_order(name: str) -> int:
    if name not in ZONE_NAMES:
        raise UnknownZoneError(
            f"unknown zone {name!r} (Linux's zones: {', '.join(ZONE_NAMES)})"
        )
    return ZONE_NAMES.index(name)


def _check_layout(zones: tuple[ZoneLayout, ...]) -> None:
    seen: set[str] = set()
    for z in zones:
        _zone_order(z.name)
        if z.name in seen:
            raise LayoutOverlapError(f"zone {z.name} is given twice")
        seen.add(z.name)
        values = (z.start_pfn, z.spanned, z.present, z.managed)
        if any(isinstance(v, bool) or not isinstance(v, int) for v in values):
            raise InvalidLayoutError(f"zone {z.name}: page counts must be ints")
        if z.start_pfn < 0 or not 0 <= z.managed <= z.present <= z.spanned:
            raise InvalidLayoutError(
                f"zone {z.name}: need start_pfn >= 0 and 0 <= managed ({z.managed})"
                f" <= present ({z.present}) <= spanned ({z.spanned})"
            )
        if z.name == "Device" and z.present:
            raise InvalidLayoutError("zone Device holds device memory, never pages to allocate")
    spans = sorted((z for z in zones if z.spanned), key=lambda z: z.index)
    for lower, upper in itertools.pairwise(spans):
        if upper.start_pfn < lower.end_pfn:
            raise LayoutOverlapError(
                f"zone {upper.name} [{upper.start_pfn:#x}, {upper.end_pfn:#x}) overlaps or"
                f" lies below zone {lower.name} [{lower.start_pfn:#x}, {lower.end_pfn:#x})"
            )
    if not any(z.managed for z in zones):
        raise NoManagedPagesError("the layout has no managed pages: nothing to allocate")


# -- /proc/zoneinfo -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pageset:
    """One CPU's pcp of a zone as /proc/zoneinfo prints it."""

    cpu: int
    count: int
    high: int
    batch: int
    high_min: int | None  # printed since 6.7
    high_max: int | None
    stat_threshold: int | None


@dataclass(slots=True)
class ZoneinfoZone:
    """Everything /proc/zoneinfo says about one zone."""

    node: int
    name: str
    line_number: int
    values: dict[str, int] = field(default_factory=dict)  # pages free, min, managed, ...
    protection: tuple[int, ...] = ()
    node_stats: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)  # zone and NUMA items
    pagesets: list[Pageset] = field(default_factory=list)
    node_unreclaimable: int | None = None
    start_pfn: int | None = None

    def __getitem__(self, key: str) -> int:
        return self.values[key]


_HEADER = re.compile(r"Node (\d+), zone +(\S+)$")
_VALUE = re.compile(r"(?:pages (free)|(boost|min|low|high|promo|spanned|present|managed|cma))"
                    r" +(\d+)$")
_STAT = re.compile(r"([a-z_0-9]+) +(\d+)$")
_PCP_FIELD = re.compile(r"(count|high|batch|high_min|high_max): +(-?\d+)$")
_VALUE_KEYS: Final = ("free", "boost", "min", "low", "high", "promo", "spanned", "present",
                      "managed", "cma")


class _ZoneinfoReader:
    """A line-by-line reader of /proc/zoneinfo; each method takes one kind of line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.zones: list[ZoneinfoZone] = []
        self.zone: ZoneinfoZone | None = None
        self.section = ""  # "node", "zone", "pagesets"
        self.cpu: dict[str, int] | None = None
        self.line_number = 0

    def fail(self, reason: str) -> ZoneinfoFormatError:
        return ZoneinfoFormatError(self.source, self.line_number, reason)

    def read(self, text: str) -> list[ZoneinfoZone]:
        for self.line_number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if stripped:
                self.take(stripped)
        self.finish_cpu()
        if not self.zones:
            self.line_number = max(self.line_number, 1)
            raise self.fail("no 'Node N, zone NAME' line: not a /proc/zoneinfo text")
        for zone in self.zones:
            self.check_zone(zone)
        return self.zones

    def take(self, line: str) -> None:
        header = _HEADER.match(line)
        if header:
            self.start_zone(int(header.group(1)), header.group(2))
            return
        if self.zone is None:
            raise self.fail(f"expected a 'Node N, zone NAME' line, got {line[:60]!r}")
        if line == "per-node stats":
            self.section = "node"
        elif line == "pagesets":
            self.finish_cpu()
            self.section = "pagesets"
        elif line.startswith("protection:"):
            self.take_protection(line)
        elif line.startswith("cpu:"):
            self.start_cpu(line)
        elif line.startswith("vm stats threshold:"):
            self.take_cpu_field("stat_threshold", line.split(":", 1)[1])
        elif line.startswith(("node_unreclaimable:", "start_pfn:")):
            self.take_zone_tail(line)
        else:
            self.take_value(line)

    def start_zone(self, node: int, name: str) -> None:
        self.finish_cpu()
        if name not in ZONE_NAMES:
            raise self.fail(f"unknown zone {name!r} (kmem knows {', '.join(ZONE_NAMES)})")
        if any(z.node == node and z.name == name for z in self.zones):
            raise self.fail(f"zone {name} of node {node} appears twice")
        self.zone = ZoneinfoZone(node, name, self.line_number)
        self.zones.append(self.zone)
        self.section = "zone"

    def take_value(self, line: str) -> None:
        assert self.zone is not None
        match = _VALUE.match(line)
        if match and self.section in ("zone", "node") and self.cpu is None:
            key = match.group(1) or match.group(2)
            if key == "free":
                self.section = "zone"
            self.zone.values[key] = int(match.group(3))
            return
        field_match = _PCP_FIELD.match(line)
        if field_match and self.section == "pagesets":
            self.take_cpu_field(field_match.group(1), field_match.group(2))
            return
        stat = _STAT.match(line)
        if stat and self.section in ("node", "zone"):
            table = self.zone.node_stats if self.section == "node" else self.zone.stats
            table[stat.group(1)] = int(stat.group(2))
            return
        raise self.fail(f"cannot read {line[:60]!r}")

    def take_protection(self, line: str) -> None:
        assert self.zone is not None
        match = re.fullmatch(r"protection: \(([-\d, ]*)\)", line)
        if not match:
            raise self.fail(f"cannot read the protection line {line[:60]!r}")
        try:
            self.zone.protection = tuple(int(v) for v in match.group(1).split(","))
        except ValueError:
            raise self.fail(f"cannot read the protection line {line[:60]!r}") from None

    def start_cpu(self, line: str) -> None:
        if self.section != "pagesets":
            raise self.fail("a 'cpu:' line outside 'pagesets'")
        self.finish_cpu()
        number = line.split(":", 1)[1].strip()
        if not number.isdigit():
            raise self.fail(f"cannot read the CPU number in {line!r}")
        self.cpu = {"cpu": int(number), "line": self.line_number}

    def take_cpu_field(self, key: str, text: str) -> None:
        if self.cpu is None:
            raise self.fail(f"a pageset '{key}' line before any 'cpu:' line")
        try:
            self.cpu[key] = int(text.strip())
        except ValueError:
            raise self.fail(f"cannot read the number in {key}: {text.strip()!r}") from None

    def finish_cpu(self) -> None:
        if self.cpu is None:
            return
        assert self.zone is not None
        cpu, self.cpu = self.cpu, None
        missing = [k for k in ("count", "high", "batch") if k not in cpu]
        if missing:  # (named at its 'cpu:' line: the line that ends it may be far below)
            raise ZoneinfoFormatError(
                self.source, cpu["line"],
                f"the pageset of cpu {cpu['cpu']} has no {', '.join(missing)}")
        self.zone.pagesets.append(Pageset(
            cpu["cpu"], cpu["count"], cpu["high"], cpu["batch"], cpu.get("high_min"),
            cpu.get("high_max"), cpu.get("stat_threshold")))

    def take_zone_tail(self, line: str) -> None:
        assert self.zone is not None
        self.finish_cpu()
        key, _, number = line.partition(":")
        if not number.strip().isdigit():
            raise self.fail(f"cannot read the number in {line!r}")
        if key == "start_pfn":
            self.zone.start_pfn = int(number)
        else:
            self.zone.node_unreclaimable = int(number)

    def check_zone(self, zone: ZoneinfoZone) -> None:
        self.line_number = zone.line_number
        missing = [k for k in ("spanned", "present", "managed") if k not in zone.values]
        if missing:
            raise self.fail(f"zone {zone.name} has no {', '.join(missing)} line")
        if zone.values["present"] and zone.start_pfn is None:
            raise self.fail(f"populated zone {zone.name} has no start_pfn line")


def read_zoneinfo(text: str, source: str = "zoneinfo") -> list[ZoneinfoZone]:
    """Every zone of a /proc/zoneinfo text, with every value it prints."""
    return _ZoneinfoReader(source).read(text)


def layout_from_zoneinfo(text: str, source: str = "zoneinfo") -> MachineLayout:
    """The layout of a real machine from its /proc/zoneinfo: each zone's start_pfn, spanned,
    present and managed (one node: kmem's machine models node 0 only)."""
    zones = read_zoneinfo(text, source)
    nodes = sorted({z.node for z in zones})
    if nodes != [0]:
        first = next(z for z in zones if z.node != 0)
        raise ZoneinfoFormatError(
            source, first.line_number,
            f"node {first.node}: kmem's machine has one node, node 0 (this file has nodes"
            f" {', '.join(map(str, nodes))})")
    layouts = []
    for z in zones:
        if not z["spanned"] and not z["present"]:
            continue
        start = z.start_pfn if z.start_pfn is not None else 0
        layouts.append(ZoneLayout(z.name, start, z["spanned"], z["present"], z["managed"]))
    try:
        return MachineLayout(tuple(layouts), source=source)
    except (InvalidLayoutError, LayoutOverlapError, NoManagedPagesError) as error:
        raise type(error)(f"{source}: {error}") from None


def read_layout_spec(spec: str) -> tuple[MachineLayout, str | None]:
    """The machine layout a --layout names, and the zoneinfo text it came from (None for
    sizes): a /proc/zoneinfo file (``-`` for standard input), or zone sizes
    ``DMA=16M,DMA32=2G,Normal=4G`` (a zone may give its start: ``Normal=1G@4G``). A file kmem
    cannot read, a zone given twice, a bad size, or a zoneinfo line it cannot parse is a
    KmemError naming it (``FILE:LINE: what is wrong``)."""
    import os
    import sys

    from kmem.page.size import parse_size

    if spec != "-" and "=" in spec and not os.path.exists(spec):
        sizes: dict[str, int | tuple[int, int]] = {}
        for part in spec.split(","):
            name, _, size = part.partition("=")
            name = name.strip()
            if name in sizes:
                raise InvalidLayoutError(f"layout {spec!r}: zone {name} given twice")
            amount, _, start = size.partition("@")
            try:
                sizes[name] = ((parse_size(amount.strip()), parse_size(start.strip()))
                               if start else parse_size(amount.strip()))
            except ValueError as error:
                raise InvalidLayoutError(f"layout {spec!r}: zone {name}: {error}") from None
        return MachineLayout.from_sizes(sizes, source=spec), None
    try:
        if spec == "-":
            text = sys.stdin.read()
        else:
            with open(spec, encoding="utf-8-sig", errors="replace") as file:
                text = file.read()
    except OSError as error:
        raise InvalidLayoutError(f"cannot read layout {spec!r}: {error.strerror}") from None
    source = "<stdin>" if spec == "-" else spec
    return layout_from_zoneinfo(text, source=source), text
