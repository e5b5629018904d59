"""SLUB_DEBUG for kmem's caches: red zones, poisoning and caller tracking in the real bytes.

A cache created with SLAB_RED_ZONE, SLAB_POISON or SLAB_STORE_USER lays its object slots out as
kmem.slab.geometry computes (Linux mm/slub.c calculate_sizes):

    | left red zone | object (object_size) | right red zone .. inuse | free ptr | tracks |
      red_left_pad    poisoned while free      to ``inuse``            offset    2 x 32 B

The object's address is the first byte after the left red zone. Patterns (include/linux/poison.h):
red zones hold 0xbb while the object is free (SLUB_RED_INACTIVE) and 0xcc while it is allocated
(SLUB_RED_ACTIVE); a poisoned free object holds 0x6b (POISON_FREE) with a last byte of 0xa5
(POISON_END). Checks, as Linux's check_object():

    allocation   the red zones must be inactive and the poison intact: a write to a free
                 object (use after free) or past it is caught here
    free         the red zones must be active: an overflow or underflow of the object is caught

On a mismatch the debugger restores the pattern (Linux "restores" too) and raises a
SlabCorruptionError naming the cache, the object, the region and the first bad byte; the
allocation or free does not happen, so the caller may retry.

SLAB_STORE_USER keeps, for each object, the last allocating and the last freeing caller in its
two track records (Linux: struct track), in the object's own bytes: caller id (u64, an index
into the allocator's table of caller names, "file:line function" of the first frame outside
kmem), cpu (u32), pid (u32) and a sequence number (u64) instead of jiffies.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from kmem.errors import KmemError
from kmem.slab.flags import SLAB_OBJECT_POISON, SLAB_RED_ZONE, SLAB_STORE_USER
from kmem.slab.geometry import POINTER_SIZE, TRACK_SIZE, CacheGeometry

if TYPE_CHECKING:
    from kmem.page.memory import PhysicalMemory
    from kmem.slab.slabs import Slab

SLUB_RED_INACTIVE: Final = 0xBB
SLUB_RED_ACTIVE: Final = 0xCC
POISON_FREE: Final = 0x6B
POISON_END: Final = 0xA5

_TRACK: Final = struct.Struct("<QIIQ")  # caller id, cpu, pid, sequence (24 of 32 bytes)
_KMEM_DIR: Final = os.path.dirname(os.path.abspath(__file__))


class SlabCorruptionError(KmemError):
    """A debug check found an object's red zone or poison overwritten."""


class RedZoneError(SlabCorruptionError):
    """A red zone around an object was overwritten (an overflow or underflow)."""


class PoisonError(SlabCorruptionError):
    """A free, poisoned object was written to (a use after free)."""


@dataclass(frozen=True, slots=True)
class Track:
    """The last allocation or free of an object: who, on which CPU, when (a sequence number)."""

    caller: str
    cpu: int
    pid: int
    sequence: int


def caller_name() -> str:
    """``file:line function`` of the first stack frame outside the kmem package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_KMEM_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:  # pragma: no cover - kmem is always called from some outside frame
        return "?"
    code = frame.f_code
    return f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"


class SlabDebugger:
    """Debug patterns and checks for one cache's objects (one per debug cache)."""

    def __init__(self, geometry: CacheGeometry, memory: PhysicalMemory,
                 callers: list[str]) -> None:
        self.geometry: Final = geometry
        self._memory: Final = memory
        self._callers: Final = callers  # shared by the allocator: caller id - 1 -> name
        self._caller_ids: dict[str, int] = {name: i + 1 for i, name in enumerate(callers)}
        self.red_zone: Final = bool(geometry.flags & SLAB_RED_ZONE)
        self.poison: Final = bool(geometry.flags & SLAB_OBJECT_POISON)
        self.store_user: Final = bool(geometry.flags & SLAB_STORE_USER)
        self.object_size: Final = geometry.object_size
        self.inuse: Final = geometry.inuse
        self.left: Final = geometry.red_left_pad
        # Tracks follow the free pointer when it sits after the object, else the object.
        info_end = geometry.offset + POINTER_SIZE if geometry.offset >= geometry.inuse else (
            geometry.inuse)
        self.track_offset: Final = info_end
        self._sequence = 0
        self._poison_bytes: Final = bytes([POISON_FREE]) * (geometry.object_size - 1) + bytes(
            [POISON_END])

    # -- patterns ----------------------------------------------------------------------------

    # Red zones (only touched when SLAB_RED_ZONE is set): calculate_sizes always gives both
    # sides at least a pointer's bytes then, so neither side is ever empty here.
    def _set_red_zones(self, address: int, value: int) -> None:
        memory = self._memory
        memory.view(address - self.left, self.left)[:] = bytes([value]) * self.left
        right = self.inuse - self.object_size
        memory.view(address + self.object_size, right)[:] = bytes([value]) * right

    def init_free(self, address: int) -> None:
        """Pattern of a free object: inactive red zones, poisoned body (Linux: init_object)."""
        if self.red_zone:
            self._set_red_zones(address, SLUB_RED_INACTIVE)
        if self.poison:
            self._memory.view(address, self.object_size)[:] = self._poison_bytes

    def _bad_region(self, address: int, value: int) -> tuple[str, int] | None:
        """The first region around the object that does not hold ``value``, and its offset."""
        memory = self._memory
        bad = _first_not(memory.view(address - self.left, self.left), value)
        if bad >= 0:
            return "left red zone", bad - self.left
        right = self.inuse - self.object_size
        bad = _first_not(memory.view(address + self.object_size, right), value)
        if bad >= 0:
            return "right red zone", self.object_size + bad
        return None

    def _check_poison(self, address: int) -> int:
        """Offset of the first byte of a free object that lost its poison, or -1."""
        body = self._memory.view(address, self.object_size)
        if body == self._poison_bytes:
            return -1
        return next(i for i in range(self.object_size) if body[i] != self._poison_bytes[i])

    # -- hooks the caches call ---------------------------------------------------------------

    def on_alloc(self, cache_name: str, address: int, cpu: int) -> None:
        """Check the free object at ``address``, then mark it allocated."""
        if self.red_zone:
            self._check_red_zones(cache_name, address, SLUB_RED_INACTIVE, "free object",
                                  "restored")
        if self.poison:
            bad_byte = self._check_poison(address)
            if bad_byte >= 0:
                self.init_free(address)
                raise PoisonError(
                    f"{cache_name}: free object {address:#x} written to after free at offset"
                    f" {bad_byte} (poison restored)"
                )
        if self.red_zone:
            self._set_red_zones(address, SLUB_RED_ACTIVE)
        if self.store_user:
            self._store_track(address, 0, cpu)

    def check_free(self, cache_name: str, address: int) -> None:
        """Before a free: the red zones of the allocated object must be intact."""
        if self.red_zone:
            self._check_red_zones(cache_name, address, SLUB_RED_ACTIVE, "object",
                                  "restored; the object was not freed")

    def _check_red_zones(self, cache_name: str, address: int, value: int, what: str,
                         note: str) -> None:
        """Raise RedZoneError (after restoring ``value``) if a red zone lost ``value``."""
        bad = self._bad_region(address, value)
        if bad is not None:
            self._set_red_zones(address, value)
            raise RedZoneError(
                f"{cache_name}: {what} {address:#x}: {bad[0]} overwritten at object"
                f" offset {bad[1]} ({note})"
            )

    def on_free(self, address: int, cpu: int) -> None:
        """After check_free: poison the object, mark its red zones inactive, record the caller."""
        self.init_free(address)
        if self.store_user:
            self._store_track(address, 1, cpu)

    # -- tracking ----------------------------------------------------------------------------

    def _store_track(self, address: int, which: int, cpu: int) -> None:
        name = caller_name()
        caller_id = self._caller_ids.get(name)
        if caller_id is None:
            self._callers.append(name)
            caller_id = self._caller_ids[name] = len(self._callers)
        self._sequence += 1
        at = address + self.track_offset + which * TRACK_SIZE
        _TRACK.pack_into(self._memory.view(at, _TRACK.size), 0, caller_id, cpu, os.getpid(),
                         self._sequence)

    def track(self, address: int, which: int) -> Track | None:
        """The alloc (``which`` 0) or free (1) record of the object at ``address``, if any."""
        if not self.store_user:
            return None
        at = address + self.track_offset + which * TRACK_SIZE
        caller_id, cpu, pid, sequence = _TRACK.unpack_from(self._memory.view(at, _TRACK.size))
        if not caller_id or caller_id > len(self._callers):
            return None
        return Track(self._callers[caller_id - 1], cpu, pid, sequence)

    # -- invariants --------------------------------------------------------------------------

    def check_slab(self, slab: Slab, size: int) -> None:
        """Every free object holds the free pattern, every used one active red zones."""
        for index in range(slab.objects):
            address = slab.base + index * size
            if slab.used[index]:
                if self.red_zone and self._bad_region(address, SLUB_RED_ACTIVE) is not None:
                    raise AssertionError(f"object {address:#x}: red zone overwritten")
            else:
                if self.red_zone and self._bad_region(address, SLUB_RED_INACTIVE) is not None:
                    raise AssertionError(f"free object {address:#x}: red zone overwritten")
                if self.poison and self._check_poison(address) >= 0:
                    raise AssertionError(f"free object {address:#x}: poison overwritten")


def _first_not(view: memoryview, value: int) -> int:
    """Index of the first byte of ``view`` that is not ``value``, or -1."""
    data = bytes(view)
    stripped = data.lstrip(bytes([value]))
    return -1 if not stripped else len(data) - len(stripped)
