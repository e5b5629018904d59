"""Where the committed fixtures are, recorded on a real 2-CPU Linux 6.18 machine, and how to
read the sysfs one: the tests share these instead of each spelling out the paths."""

from __future__ import annotations

from pathlib import Path

from kmem.slab.flags import (
    SLAB_CACHE_DMA,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_HWCACHE_ALIGN,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TRACE,
    SLAB_TYPESAFE_BY_RCU,
)

FIXTURES = Path(__file__).parent / "fixtures"
SYS_KERNEL_SLAB = FIXTURES / "sys_kernel_slab_6.18_2cpu.json"
KMALLOC_TRACE_PAIRS = FIXTURES / "kmalloc_trace_pairs_6.18.txt"

TRACES = FIXTURES / "traces"
LS_TRACE = TRACES / "kmem-6.18-ls.txt.xz"
DD_TRACE = TRACES / "kmem-6.18-dd-first15000.txt.xz"
SHEAF_TRACE = TRACES / "kmem-6.18-sheaves-python-ls.txt.xz"  # with alloc_empty_sheaf events
PERF_SCRIPT = TRACES / "perf" / "script.txt.xz"
OLD_KERNELS = TRACES / "old-kernels.txt"
TRACE_CMD = TRACES / "trace-cmd-report.txt"
SWEEP_TRACES = TRACES / "sweep"  # three small recordings: tar, find and gzip (4,000 events each)

# /sys/kernel/slab/<cache>/<file> holding 1 when the cache has that SLAB_* flag.
SYSFS_FLAG_FILES = {
    "sanity_checks": SLAB_CONSISTENCY_CHECKS,
    "red_zone": SLAB_RED_ZONE,
    "poison": SLAB_POISON,
    "store_user": SLAB_STORE_USER,
    "trace": SLAB_TRACE,
    "reclaim_account": SLAB_RECLAIM_ACCOUNT,
    "hwcache_align": SLAB_HWCACHE_ALIGN,
    "cache_dma": SLAB_CACHE_DMA,
    "destroy_by_rcu": SLAB_TYPESAFE_BY_RCU,
}

# /proc outputs of the page allocator (see fixtures/README.md): the reference machine's, and a
# live recording of a second machine of the same kind, both with min_free_kbytes 67584, 2 CPUs.
ZONEINFO = FIXTURES / "proc_zoneinfo_6.18_2cpu.txt"
ZONEINFO_LIVE = FIXTURES / "proc_zoneinfo_6.18_2cpu_live.txt"
BUDDYINFO = FIXTURES / "proc_buddyinfo_6.18_2cpu.txt"
PAGETYPEINFO = FIXTURES / "proc_pagetypeinfo_6.18_2cpu.txt"
ZONEINFO_MIN_FREE_KBYTES = 67584
ZONEINFO_CPUS = 2
