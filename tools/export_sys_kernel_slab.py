#!/usr/bin/env python3
"""Export every real cache of /sys/kernel/slab (not the symlink aliases) as a JSON test fixture.

Run as root on a Linux machine:  python3 tools/export_sys_kernel_slab.py tests/fixtures/NAME.json
For each cache it records the inputs of the geometry rules (object_size, the flag files, whether
a constructor is set, usersize) and the numbers the kernel computed (slab_size, align,
objs_per_slab, order, min_partial, cpu_partial), plus its aliases (symlinks pointing at it).
The machine's kernel release, CPU count and page size go in the header, with the cache names in
/proc/slabinfo's order (newest cache first: Linux adds each new cache at the head of its list).
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

SYS_SLAB = Path("/sys/kernel/slab")
NUMBERS = (
    "object_size", "slab_size", "align", "objs_per_slab", "order", "min_partial",
    "cpu_partial", "usersize", "sheaf_capacity",
)
FLAG_FILES = (
    "sanity_checks", "red_zone", "poison", "store_user", "trace", "reclaim_account",
    "hwcache_align", "cache_dma", "destroy_by_rcu",
)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def export() -> dict[str, object]:
    aliases: dict[str, list[str]] = {}
    real: list[Path] = []
    for entry in sorted(SYS_SLAB.iterdir()):
        if entry.is_symlink():
            aliases.setdefault(os.readlink(entry).rsplit("/", 1)[-1], []).append(entry.name)
        else:
            real.append(entry)
    caches = []
    for directory in real:
        cache: dict[str, object] = {"name": directory.name}
        for number in NUMBERS:
            text = _read(directory / number)
            cache[number] = int(text) if text else None
        for flag in FLAG_FILES:
            cache[flag] = _read(directory / flag) == "1"
        cache["ctor"] = _read(directory / "ctor") != ""
        cache["aliases"] = sorted(aliases.get(directory.name, []))
        caches.append(cache)
    slabinfo_names = [
        line.split()[0]
        for line in Path("/proc/slabinfo").read_text().splitlines()[2:]
        if line.strip()
    ]
    return {
        "kernel": platform.release(),
        "nr_cpus": os.cpu_count(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "slabinfo_names": slabinfo_names,
        "caches": caches,
    }


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "-"
    text = json.dumps(export(), indent=0, separators=(",", ":")) + "\n"
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
