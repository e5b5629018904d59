"""kmem: kernel memory allocation as Linux does it, on real bytes.

Layers, bottom up, each a package that imports only the ones below it: kmem.page (physical
memory, page metadata, the buddy page allocator), kmem.slab (slab caches, their policies,
kmalloc), kmem.trace (real kmem traces: parse, statistics, replay), kmem.show (scenarios,
explanations, pictures, the replay page) and kmem.cli (the ``kmem`` command).

This module is the one public re-export point: ``from kmem import BuddyAllocator``. Names are
loaded on first use (PEP 562), so importing kmem, or starting the ``kmem`` command, costs only
what is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from kmem._compiled import core_backend as core_backend
    from kmem.arena.arena import (
        Arena as Arena,
        ArenaCache as ArenaCache,
        ArenaSlabInfo as ArenaSlabInfo,
        ArenaStats as ArenaStats,
    )
    from kmem.arena.errors import (
        ArenaBusyError as ArenaBusyError,
        ArenaClosedError as ArenaClosedError,
        ArenaCorruptError as ArenaCorruptError,
        ArenaError as ArenaError,
        ArenaExistsError as ArenaExistsError,
        ArenaTruncatedError as ArenaTruncatedError,
        ArenaVersionError as ArenaVersionError,
        CacheMismatchError as CacheMismatchError,
        NotAnArenaError as NotAnArenaError,
    )
    from kmem.errors import (
        DoubleFreeError as DoubleFreeError,
        InvalidArgumentError as InvalidArgumentError,
        InvalidFreeError as InvalidFreeError,
        InvalidTypeError as InvalidTypeError,
        KmemError as KmemError,
        OutOfMemoryError as OutOfMemoryError,
        WrongOrderError as WrongOrderError,
    )
    from kmem.page.buddy import (
        Block as Block,
        BuddyAllocator as BuddyAllocator,
        BuddyStats as BuddyStats,
    )
    from kmem.page.errors import (
        BackingError as BackingError,
        HostMemoryError as HostMemoryError,
        InvalidLayoutError as InvalidLayoutError,
        LayoutOverlapError as LayoutOverlapError,
        MemoryBusyError as MemoryBusyError,
        MemoryClosedError as MemoryClosedError,
        NoManagedPagesError as NoManagedPagesError,
        NoMigratetypeError as NoMigratetypeError,
        NoSuchCpuError as NoSuchCpuError,
        NoZoneForGfpError as NoZoneForGfpError,
        PfnNotInZoneError as PfnNotInZoneError,
        UnknownZoneError as UnknownZoneError,
        ZoneinfoFormatError as ZoneinfoFormatError,
    )
    from kmem.page.fragmentation import (
        FragmentationReport as FragmentationReport,
        extfrag_index as extfrag_index,
        unusable_index as unusable_index,
    )
    from kmem.page.gfp import (
        __GFP_ACCOUNT as __GFP_ACCOUNT,
        __GFP_DMA as __GFP_DMA,
        __GFP_RECLAIMABLE as __GFP_RECLAIMABLE,
        __GFP_THISNODE as __GFP_THISNODE,
        __GFP_ZERO as __GFP_ZERO,
        GFP_ATOMIC as GFP_ATOMIC,
        GFP_DMA as GFP_DMA,
        GFP_KERNEL as GFP_KERNEL,
        GFP_KERNEL_ACCOUNT as GFP_KERNEL_ACCOUNT,
        GFP_NOFS as GFP_NOFS,
        GFP_NOWAIT as GFP_NOWAIT,
        UnknownGfpFlagError as UnknownGfpFlagError,
        parse_gfp_flags as parse_gfp_flags,
    )
    from kmem.page.layout import (
        MachineLayout as MachineLayout,
        ZoneLayout as ZoneLayout,
        layout_from_zoneinfo as layout_from_zoneinfo,
        read_zoneinfo as read_zoneinfo,
    )
    from kmem.page.machine import (
        CpuEvents as CpuEvents,
        PageMachine as PageMachine,
    )
    from kmem.page.mem_map import (
        MemMap as MemMap,
    )
    from kmem.page.memory import (
        PhysicalMemory as PhysicalMemory,
    )
    from kmem.page.order import MAX_PAGE_ORDER as MAX_PAGE_ORDER, get_order as get_order
    from kmem.show.explain import (
        Step as Step,
        alloc_steps as alloc_steps,
        free_steps as free_steps,
    )
    from kmem.show.scenario import (
        Scenario as Scenario,
        ScenarioNameError as ScenarioNameError,
        ScenarioSyntaxError as ScenarioSyntaxError,
    )
    from kmem.show.scenario_run import ScenarioRun as ScenarioRun
    from kmem.show.sweep_report import (
        SweepReportError as SweepReportError,
        write_sweep_report as write_sweep_report,
    )
    from kmem.slab.allocator import (
        CacheExistsError as CacheExistsError,
        SlabAllocator as SlabAllocator,
    )
    from kmem.slab.cache import (
        KmemCache as KmemCache,
    )
    from kmem.slab.debug import (
        PoisonError as PoisonError,
        RedZoneError as RedZoneError,
        SlabCorruptionError as SlabCorruptionError,
    )
    from kmem.slab.errors import (
        CacheDestroyedError as CacheDestroyedError,
        CacheNotEmptyError as CacheNotEmptyError,
        ConstructorReentryError as ConstructorReentryError,
        FreeToDestroyedCacheError as FreeToDestroyedCacheError,
        InteriorPointerError as InteriorPointerError,
        InvalidCpuError as InvalidCpuError,
        InvalidGfpError as InvalidGfpError,
        KmallocCacheDestroyError as KmallocCacheDestroyError,
        NotAnObjectError as NotAnObjectError,
        ObjectDoubleFreeError as ObjectDoubleFreeError,
        SlabPageSizeError as SlabPageSizeError,
        WrongCacheError as WrongCacheError,
    )
    from kmem.slab.flags import (
        SLAB_ACCOUNT as SLAB_ACCOUNT,
        SLAB_CACHE_DMA as SLAB_CACHE_DMA,
        SLAB_CACHE_DMA32 as SLAB_CACHE_DMA32,
        SLAB_CONSISTENCY_CHECKS as SLAB_CONSISTENCY_CHECKS,
        SLAB_HWCACHE_ALIGN as SLAB_HWCACHE_ALIGN,
        SLAB_NO_MERGE as SLAB_NO_MERGE,
        SLAB_POISON as SLAB_POISON,
        SLAB_RECLAIM_ACCOUNT as SLAB_RECLAIM_ACCOUNT,
        SLAB_RED_ZONE as SLAB_RED_ZONE,
        SLAB_STORE_USER as SLAB_STORE_USER,
        SLAB_TYPESAFE_BY_RCU as SLAB_TYPESAFE_BY_RCU,
        UnknownSlabFlagError as UnknownSlabFlagError,
        parse_slab_flags as parse_slab_flags,
    )
    from kmem.slab.geometry import (
        CacheGeometry as CacheGeometry,
        calculate_geometry as calculate_geometry,
    )
    from kmem.slab.kmalloc import (
        KMALLOC_LARGE_OWNER as KMALLOC_LARGE_OWNER,
    )
    from kmem.slab.kmalloc_sizes import (
        KMALLOC_MAX_CACHE_SIZE as KMALLOC_MAX_CACHE_SIZE,
        KMALLOC_MIN_SIZE as KMALLOC_MIN_SIZE,
        KMALLOC_SIZES as KMALLOC_SIZES,
        kmalloc_bytes_alloc as kmalloc_bytes_alloc,
        kmalloc_cache_name as kmalloc_cache_name,
        kmalloc_index as kmalloc_index,
        kmalloc_size_class as kmalloc_size_class,
    )
    from kmem.slab.merge import (
        find_mergeable as find_mergeable,
        slab_alias_name as slab_alias_name,
        slab_unmergeable as slab_unmergeable,
    )
    from kmem.slab.numa import (
        NUMA_NO_NODE as NUMA_NO_NODE,
        InvalidNodeError as InvalidNodeError,
        NodeLayoutError as NodeLayoutError,
    )
    from kmem.slab.sheaves import (
        KERNELS as KERNELS,
        SheafCapacityError as SheafCapacityError,
        UnknownKernelError as UnknownKernelError,
        calculate_sheaf_capacity as calculate_sheaf_capacity,
    )
    from kmem.slab.stats import (
        CacheStats as CacheStats,
        LiveObject as LiveObject,
        SlabInfo as SlabInfo,
    )
    from kmem.trace.leaks import (
        LeakReport as LeakReport,
        LeakTracker as LeakTracker,
        find_leaks as find_leaks,
    )
    from kmem.trace.lost import (
        LostEvents as LostEvents,
    )
    from kmem.trace.parse import (
        TraceFormatError as TraceFormatError,
        TraceParser as TraceParser,
    )
    from kmem.trace.perf_data import (
        PerfData as PerfData,
        PerfDataError as PerfDataError,
        TraceInput as TraceInput,
    )
    from kmem.trace.rates import (
        SlabRates as SlabRates,
        slab_rates as slab_rates,
    )
    from kmem.trace.record import (
        RecordError as RecordError,
        record_perf as record_perf,
        record_tracefs as record_tracefs,
    )
    from kmem.trace.replay import (
        Replayer as Replayer,
        ReplayResult as ReplayResult,
        ReplaySnapshot as ReplaySnapshot,
    )
    from kmem.trace.source import (
        TraceFileError as TraceFileError,
        open_trace as open_trace,
    )
    from kmem.trace.stat import (
        KmemStat as KmemStat,
    )
    from kmem.trace.sweep import (
        SweepOptionError as SweepOptionError,
        SweepResult as SweepResult,
        sweep as sweep,
    )
    from kmem.trace.sweep_spec import (
        SweepSpec as SweepSpec,
        SweepSpecError as SweepSpecError,
        load_sweep_spec as load_sweep_spec,
    )

# Every public name -> the module that defines it.
_EXPORTS: Final[dict[str, str]] = {
    "core_backend": "kmem._compiled",
    "DoubleFreeError": "kmem.errors",
    "InvalidArgumentError": "kmem.errors",
    "InvalidFreeError": "kmem.errors",
    "InvalidTypeError": "kmem.errors",
    "KmemError": "kmem.errors",
    "OutOfMemoryError": "kmem.errors",
    "WrongOrderError": "kmem.errors",
    "Arena": "kmem.arena.arena",
    "ArenaCache": "kmem.arena.arena",
    "ArenaStats": "kmem.arena.arena",
    "ArenaSlabInfo": "kmem.arena.arena",
    "ArenaBusyError": "kmem.arena.errors",
    "ArenaClosedError": "kmem.arena.errors",
    "ArenaCorruptError": "kmem.arena.errors",
    "ArenaError": "kmem.arena.errors",
    "ArenaExistsError": "kmem.arena.errors",
    "ArenaTruncatedError": "kmem.arena.errors",
    "ArenaVersionError": "kmem.arena.errors",
    "CacheMismatchError": "kmem.arena.errors",
    "NotAnArenaError": "kmem.arena.errors",
    "PhysicalMemory": "kmem.page.memory",
    "MemMap": "kmem.page.mem_map",
    "PageMachine": "kmem.page.machine",
    "CpuEvents": "kmem.page.machine",
    "MachineLayout": "kmem.page.layout",
    "ZoneLayout": "kmem.page.layout",
    "layout_from_zoneinfo": "kmem.page.layout",
    "read_zoneinfo": "kmem.page.layout",
    "BackingError": "kmem.page.errors",
    "HostMemoryError": "kmem.page.errors",
    "MemoryBusyError": "kmem.page.errors",
    "MemoryClosedError": "kmem.page.errors",
    "InvalidLayoutError": "kmem.page.errors",
    "LayoutOverlapError": "kmem.page.errors",
    "NoManagedPagesError": "kmem.page.errors",
    "NoMigratetypeError": "kmem.page.errors",
    "NoSuchCpuError": "kmem.page.errors",
    "NoZoneForGfpError": "kmem.page.errors",
    "PfnNotInZoneError": "kmem.page.errors",
    "UnknownZoneError": "kmem.page.errors",
    "ZoneinfoFormatError": "kmem.page.errors",
    "Block": "kmem.page.buddy",
    "BuddyAllocator": "kmem.page.buddy",
    "BuddyStats": "kmem.page.buddy",
    "MAX_PAGE_ORDER": "kmem.page.order",
    "get_order": "kmem.page.order",
    "FragmentationReport": "kmem.page.fragmentation",
    "extfrag_index": "kmem.page.fragmentation",
    "unusable_index": "kmem.page.fragmentation",
    "GFP_ATOMIC": "kmem.page.gfp",
    "GFP_DMA": "kmem.page.gfp",
    "GFP_KERNEL": "kmem.page.gfp",
    "GFP_KERNEL_ACCOUNT": "kmem.page.gfp",
    "GFP_NOFS": "kmem.page.gfp",
    "GFP_NOWAIT": "kmem.page.gfp",
    "UnknownGfpFlagError": "kmem.page.gfp",
    "__GFP_ACCOUNT": "kmem.page.gfp",
    "__GFP_DMA": "kmem.page.gfp",
    "__GFP_RECLAIMABLE": "kmem.page.gfp",
    "__GFP_THISNODE": "kmem.page.gfp",
    "__GFP_ZERO": "kmem.page.gfp",
    "parse_gfp_flags": "kmem.page.gfp",
    "SLAB_ACCOUNT": "kmem.slab.flags",
    "SLAB_CACHE_DMA": "kmem.slab.flags",
    "SLAB_CACHE_DMA32": "kmem.slab.flags",
    "SLAB_CONSISTENCY_CHECKS": "kmem.slab.flags",
    "SLAB_HWCACHE_ALIGN": "kmem.slab.flags",
    "SLAB_NO_MERGE": "kmem.slab.flags",
    "SLAB_POISON": "kmem.slab.flags",
    "SLAB_RECLAIM_ACCOUNT": "kmem.slab.flags",
    "SLAB_RED_ZONE": "kmem.slab.flags",
    "SLAB_STORE_USER": "kmem.slab.flags",
    "SLAB_TYPESAFE_BY_RCU": "kmem.slab.flags",
    "UnknownSlabFlagError": "kmem.slab.flags",
    "parse_slab_flags": "kmem.slab.flags",
    "CacheGeometry": "kmem.slab.geometry",
    "calculate_geometry": "kmem.slab.geometry",
    "find_mergeable": "kmem.slab.merge",
    "slab_alias_name": "kmem.slab.merge",
    "slab_unmergeable": "kmem.slab.merge",
    "KMALLOC_MAX_CACHE_SIZE": "kmem.slab.kmalloc_sizes",
    "KMALLOC_MIN_SIZE": "kmem.slab.kmalloc_sizes",
    "KMALLOC_SIZES": "kmem.slab.kmalloc_sizes",
    "kmalloc_bytes_alloc": "kmem.slab.kmalloc_sizes",
    "kmalloc_cache_name": "kmem.slab.kmalloc_sizes",
    "kmalloc_index": "kmem.slab.kmalloc_sizes",
    "kmalloc_size_class": "kmem.slab.kmalloc_sizes",
    "NUMA_NO_NODE": "kmem.slab.numa",
    "InvalidNodeError": "kmem.slab.numa",
    "NodeLayoutError": "kmem.slab.numa",
    "KERNELS": "kmem.slab.sheaves",
    "SheafCapacityError": "kmem.slab.sheaves",
    "UnknownKernelError": "kmem.slab.sheaves",
    "calculate_sheaf_capacity": "kmem.slab.sheaves",
    "CacheStats": "kmem.slab.stats",
    "LiveObject": "kmem.slab.stats",
    "SlabInfo": "kmem.slab.stats",
    "CacheDestroyedError": "kmem.slab.errors",
    "CacheNotEmptyError": "kmem.slab.errors",
    "ConstructorReentryError": "kmem.slab.errors",
    "FreeToDestroyedCacheError": "kmem.slab.errors",
    "InvalidGfpError": "kmem.slab.errors",
    "KmallocCacheDestroyError": "kmem.slab.errors",
    "SlabPageSizeError": "kmem.slab.errors",
    "InteriorPointerError": "kmem.slab.errors",
    "InvalidCpuError": "kmem.slab.errors",
    "NotAnObjectError": "kmem.slab.errors",
    "ObjectDoubleFreeError": "kmem.slab.errors",
    "WrongCacheError": "kmem.slab.errors",
    "PoisonError": "kmem.slab.debug",
    "RedZoneError": "kmem.slab.debug",
    "SlabCorruptionError": "kmem.slab.debug",
    "KmemCache": "kmem.slab.cache",
    "KMALLOC_LARGE_OWNER": "kmem.slab.kmalloc",
    "CacheExistsError": "kmem.slab.allocator",
    "SlabAllocator": "kmem.slab.allocator",
    "TraceFileError": "kmem.trace.source",
    "open_trace": "kmem.trace.source",
    "TraceFormatError": "kmem.trace.parse",
    "TraceParser": "kmem.trace.parse",
    "LostEvents": "kmem.trace.lost",
    "PerfData": "kmem.trace.perf_data",
    "PerfDataError": "kmem.trace.perf_data",
    "TraceInput": "kmem.trace.perf_data",
    "RecordError": "kmem.trace.record",
    "record_perf": "kmem.trace.record",
    "record_tracefs": "kmem.trace.record",
    "KmemStat": "kmem.trace.stat",
    "LeakReport": "kmem.trace.leaks",
    "LeakTracker": "kmem.trace.leaks",
    "find_leaks": "kmem.trace.leaks",
    "SlabRates": "kmem.trace.rates",
    "slab_rates": "kmem.trace.rates",
    "ReplayResult": "kmem.trace.replay",
    "ReplaySnapshot": "kmem.trace.replay",
    "Replayer": "kmem.trace.replay",
    "SweepOptionError": "kmem.trace.sweep",
    "SweepResult": "kmem.trace.sweep",
    "sweep": "kmem.trace.sweep",
    "SweepSpec": "kmem.trace.sweep_spec",
    "SweepSpecError": "kmem.trace.sweep_spec",
    "load_sweep_spec": "kmem.trace.sweep_spec",
    "Step": "kmem.show.explain",
    "alloc_steps": "kmem.show.explain",
    "free_steps": "kmem.show.explain",
    "Scenario": "kmem.show.scenario",
    "ScenarioNameError": "kmem.show.scenario",
    "ScenarioRun": "kmem.show.scenario_run",
    "ScenarioSyntaxError": "kmem.show.scenario",
    "SweepReportError": "kmem.show.sweep_report",
    "write_sweep_report": "kmem.show.sweep_report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
