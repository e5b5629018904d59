"""Arena: a buddy allocator, slab caches and kmalloc whose whole state lives in their memory.

Every word of allocator state is a little-endian int64 inside the backing buffer (a file or a
``multiprocessing.shared_memory`` segment), so every process that maps the buffer sees one
allocator, and a file reopened later finds its allocations, free lists and caches intact.

Layout (word = 8 bytes; ``W[i]`` is word i of the buffer)::

    words 0..14   the static header: magic, format version, page size, nr_pages, max_order,
                  cache slots, undo-log capacity, buffer size, data offset, where each
                  section starts, the lock kind; word 15 is the CRC-32 of words 0..14
    words 16..19  the dynamic header: undo-log length, generation, recoveries, last holder pid
    words 24..31  the robust process-shared pthread mutex (a "mutex" arena)
    columns       seven columns of nr_pages words (the mem_map): state, next, prev, owner,
                  inuse, freelist, fresh
    heads         next and prev of every list head: free lists 0..max_order, then each
                  cache's partial-slab list
    counters      nr_free per order, the non-empty-list mask, event counts
    caches        the cache directory: per slot, its name, object size, geometry, counters
    undo log      (word index, old value) pairs
    pages         from the data offset (a page boundary) to the end: the memory handed out

Addresses are byte offsets from the first data page, so page frame ``pfn`` is address
``pfn * page_size``, as in an in-process BuddyAllocator of ``nr_pages`` pages.

The buddy allocator follows kmem.page.buddy exactly (boot order, __rmqueue_smallest + expand,
__free_one_page with buddy_merge_likely), so an arena and a BuddyAllocator of the same pages
hand out the same addresses. A page's state word is ``kind << 8 | order`` on a block's first
frame (kinds: free, allocated by alloc(), a large kmalloc, a slab) and 0 on the others. List
links are node indexes: pages are 0..nr_pages-1, list head k is ``~k``.

Slab caches (SLUB-like, simplified): a slab is a naturally aligned buddy block of the cache's
order (kmem.slab.geometry.calculate_order); each of its pages records its cache in ``owner``;
the first page keeps ``inuse``, ``freelist`` (the index of the first free object, whose first
word holds the next index, -1 ending the list) and ``fresh`` (objects at or past it were never
used, so a new slab needs no initialisation). A slab with free objects is on its cache's
partial list; a full slab is on no list; a slab whose last object is freed goes back to the
buddy allocator. kmalloc uses the caches kmalloc-8 .. kmalloc-(2 * page_size), created on first
use; larger requests take pages directly (Linux's kmalloc_large).

Many processes: every operation runs under a lock the kernel releases when its holder dies,
chosen at create and recorded in the header. "mutex" (the default with the compiled core): a
robust process-shared pthread mutex in the header's words 24..31; the compiled core
(csrc/arena.c) takes it directly, the pure path through libc (ctypes); a locker that gets
EOWNERDEAD rolls the undo log back and marks the mutex consistent. "flock" (the default
without the core): an flock on the backing file (for a segment, its /dev/shm file); flock
arenas always run the pure path. A thread lock orders the Python paths of one process's
threads. A process that forked with an arena open takes its own flock descriptor on first use
(a flock belongs to an open file description, which fork shares).

The compiled core keeps no state: it reads the same words, takes the same lock, writes through
the same undo log, and hands anything but the common valid case (a bad argument, an exhausted
arena, a bad free, a kmalloc cache not made yet, a corrupt word) to the pure method, which
raises the error it always raises; tests/test_arena_lockstep.py compares the two byte for
byte.

Crash consistency (all-or-nothing operations): every store of an operation goes through the
undo log: first the (word, old value) record, then the log length, then the word. A finished
operation sets the log length back to 0 (its commit). A holder killed in the middle leaves a
non-empty log; the next lock holder (or Arena.open) replays it backwards, restoring every old
value, which is idempotent, so a crash during recovery is recovered again. Stores happen in
program order and a SIGKILLed process's stores are all in the shared page cache, so other
processes always find the log at least as new as the words it covers. (Power loss is out of
scope: that would need msync ordering.)

Invariants (check() verifies them all): every frame lies in exactly one block; free blocks are
on the list of their order, counted by nr_free and the non-empty mask, with no two free
buddies; every slab page names a live cache; each slab's inuse, freelist and fresh agree; a
slab is on its cache's partial list exactly when it is not full; the caches' counters sum
their slabs; the undo log is empty between operations.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import mmap
import os
import threading
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Final

from kmem._compiled import core
from kmem.arena.errors import (
    ArenaBusyError,
    ArenaClosedError,
    ArenaCorruptError,
    ArenaError,
    ArenaExistsError,
    ArenaTruncatedError,
    ArenaVersionError,
    CacheMismatchError,
    NotAnArenaError,
)
from kmem.errors import (
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    InvalidTypeError,
    KmemError,
    OutOfMemoryError,
    WrongOrderError,
    int_argument,
)
from kmem.page.buddy import size_order
from kmem.page.mem_map import boot_blocks
from kmem.page.memory import check_page_size
from kmem.page.order import MAX_PAGE_ORDER
from kmem.page.vmstat import buddyinfo_line
from kmem.slab.geometry import calculate_order
from kmem.slab.kmalloc_sizes import KMALLOC_INFO_SIZES, KMALLOC_SIZE_INDEX

if TYPE_CHECKING:
    from kmem._core import ArenaCore

MAGIC: Final = int.from_bytes(b"KMEMAREN", "little", signed=True)
FORMAT_VERSION: Final = 1
DEFAULT_CACHES: Final = 64
DEFAULT_LOG_CAPACITY: Final = 2048
CACHE_NAME_BYTES: Final = 32

# The static header, word by word.
H_MAGIC, H_VERSION, H_PAGE_SIZE, H_NR_PAGES, H_MAX_ORDER, H_NR_CACHES, H_LOG_CAPACITY = range(7)
H_SIZE, H_DATA, H_COLUMNS, H_HEADS, H_COUNTERS, H_CACHES, H_LOG = range(7, 14)
H_LOCK_KIND: Final = 14  # LOCK_FLOCK or LOCK_MUTEX, chosen at create
H_CHECKSUM: Final = 15
STATIC_WORDS: Final = 15
# The dynamic header.
D_LOG_COUNT: Final = 16
D_GENERATION: Final = 17
D_RECOVERIES: Final = 18
D_HOLDER: Final = 19
MUTEX_WORD: Final = 24  # the robust process-shared pthread mutex: words 24..31 (64 bytes)
MUTEX_BYTES: Final = 64
HEADER_WORDS: Final = 32
HEADER_BYTES: Final = HEADER_WORDS * 8

# The mem_map columns, in layout order.
C_STATE, C_NEXT, C_PREV, C_OWNER, C_INUSE, C_FREELIST, C_FRESH = range(7)
NR_COLUMNS: Final = 7

# Page kinds (state = kind << 8 | order on a block's first frame, 0 on the others).
K_FREE: Final = 1
K_ALLOC: Final = 2
K_LARGE: Final = 3
K_SLAB: Final = 4
KIND_NAMES: Final = {K_FREE: "free", K_ALLOC: "allocated", K_LARGE: "kmalloc", K_SLAB: "slab"}

# Counters after nr_free[0..max_order].
(N_NONEMPTY, N_ALLOCATIONS, N_FREES, N_FAILURES, N_SPLITS, N_MERGES, N_KMALLOCS,
 N_KFREES) = range(8)
NR_COUNTERS: Final = 8

# A cache slot, word by word (the name takes words 1..4).
S_IN_USE, S_NAME = 0, 1
S_OBJECT_SIZE, S_STRIDE, S_ORDER, S_OBJECTS, S_NR_SLABS, S_ACTIVE = range(5, 11)
S_ALLOCS, S_FREES, S_KMALLOC = range(11, 14)
SLOT_WORDS: Final = 16

_WORD: Final = 8
LOCK_FLOCK: Final = 0
LOCK_MUTEX: Final = 1
LOCK_NAMES: Final = {"flock": LOCK_FLOCK, "mutex": LOCK_MUTEX}
# Segments this process (or its parent before a fork) created: their resource tracker entry
# is the creator's, so attach() must leave it alone.
_CREATED_HERE: set[str] = set()


@dataclass(frozen=True)
class ArenaLayout:
    """Where each section of an arena of these parameters lies (word indexes, data in bytes)."""

    size: int
    page_size: int
    nr_pages: int
    max_order: int
    nr_caches: int
    log_capacity: int
    columns: int
    heads: int
    counters: int
    caches: int
    log: int
    data: int

    @property
    def nr_heads(self) -> int:
        return self.max_order + 1 + self.nr_caches

    @staticmethod
    def compute(size: int, page_size: int, max_order: int, nr_caches: int,
                log_capacity: int) -> ArenaLayout:
        """The layout of a buffer of ``size`` bytes: as many pages as fit after the metadata."""
        fixed = HEADER_WORDS + 2 * (max_order + 1 + nr_caches) + (max_order + 1 + NR_COUNTERS)
        fixed += nr_caches * SLOT_WORDS + 2 * log_capacity
        # Each page costs page_size bytes plus its column words; the metadata is rounded up to
        # a page, so try the estimate and step down until it fits.
        nr_pages = max((size - fixed * _WORD) // (page_size + NR_COLUMNS * _WORD), 0)
        while True:
            meta_words = fixed + NR_COLUMNS * nr_pages
            data = -(-meta_words * _WORD // page_size) * page_size
            if data + nr_pages * page_size <= size or nr_pages == 0:
                break
            nr_pages -= 1
        columns = HEADER_WORDS
        heads = columns + NR_COLUMNS * nr_pages
        counters = heads + 2 * (max_order + 1 + nr_caches)
        caches = counters + max_order + 1 + NR_COUNTERS
        log = caches + nr_caches * SLOT_WORDS
        return ArenaLayout(size, page_size, nr_pages, max_order, nr_caches, log_capacity,
                           columns, heads, counters, caches, log, data)


@dataclass(frozen=True)
class ArenaStats:
    """An arena's numbers: pages, free blocks per order, event counts."""

    nr_pages: int
    nr_free_pages: int
    nr_free: tuple[int, ...]
    allocations: int
    frees: int
    failures: int
    splits: int
    merges: int
    kmallocs: int
    kfrees: int
    caches: int
    generation: int
    recoveries: int


@dataclass(frozen=True)
class ArenaSlabInfo:
    """One arena cache's line of slabinfo."""

    name: str
    active_objs: int
    num_objs: int
    objsize: int
    objperslab: int
    pagesperslab: int
    active_slabs: int
    num_slabs: int


def kmalloc_class(size: int, page_size: int) -> int:
    """The kmalloc class size for ``size`` bytes, or 0 when it goes to pages (kmalloc_large)."""
    if size <= 192:
        return KMALLOC_INFO_SIZES[KMALLOC_SIZE_INDEX[(size - 1) // 8]]
    if size > 2 * page_size:
        return 0
    return 1 << (size - 1).bit_length()


def slab_order(stride: int, page_size: int, largest_order: int) -> int:
    """A cache's slab order: Linux's calculate_order, capped at the arena's largest block but
    never below one object's order; -1 when one object does not fit in the largest block."""
    page_shift = page_size.bit_length() - 1
    least = ((stride - 1) >> page_shift).bit_length()
    if least > largest_order:
        return -1
    return max(least, min(calculate_order(stride, page_size=page_size), largest_order))


def kmalloc_name(class_size: int) -> str:
    """Linux's name of the kmalloc cache of this class size (kmalloc-96, kmalloc-8k)."""
    if class_size >= 1024 and not class_size & 1023:
        return f"kmalloc-{class_size >> 10}k"
    return f"kmalloc-{class_size}"


def _header_checksum(words: memoryview) -> int:
    return zlib.crc32(words[:STATIC_WORDS].tobytes())


class Arena:
    """A buddy allocator, slab caches and kmalloc kept entirely in a file or shared memory.

    Build one with Arena.create / Arena.open (a file) or Arena.create_shared / Arena.attach (a
    multiprocessing.shared_memory segment); see the module docstring for the design.
    """

    def __init__(self, buffer: mmap.mmap, lock_path: str, source: str,
                 shm: shared_memory.SharedMemory | None) -> None:
        # Use the constructors: this one takes a mapped, validated buffer.
        self._mmap = buffer
        self._shm = shm
        self._source = source
        self._lock_path = lock_path
        self._bytes = memoryview(buffer)
        self._words = self._bytes.cast("q")
        words = self._words
        self.page_size: Final = words[H_PAGE_SIZE]
        self.page_shift: Final = self.page_size.bit_length() - 1
        self.nr_pages: Final = words[H_NR_PAGES]
        self.max_order: Final = words[H_MAX_ORDER]
        self.nr_caches: Final = words[H_NR_CACHES]
        self.size: Final = words[H_SIZE]
        self._log_capacity: Final = words[H_LOG_CAPACITY]
        self._data: Final = words[H_DATA]
        self._data_word: Final = self._data // _WORD
        columns = words[H_COLUMNS]
        self._col: Final = [columns + c * self.nr_pages for c in range(NR_COLUMNS)]
        self._heads_next: Final = words[H_HEADS]
        self._heads_prev: Final = self._heads_next + self.max_order + 1 + self.nr_caches
        self._counters: Final = words[H_COUNTERS]
        self._nonempty: Final = self._counters + self.max_order + 1
        self._caches: Final = words[H_CACHES]
        self._log: Final = words[H_LOG]
        self._alloc_order_limit: Final = min(self.max_order, self.nr_pages.bit_length() - 1)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._pid = os.getpid()
        self._lock_fd = os.open(lock_path, os.O_RDWR)
        self.lock_kind: Final = "mutex" if words[H_LOCK_KIND] == LOCK_MUTEX else "flock"
        # The mutex's address, as a ctypes object exporting the mapping (dropped at close).
        self._mutex: ctypes.c_char | None = None
        if self.lock_kind == "mutex":
            self._mutex = ctypes.c_char.from_buffer(buffer, MUTEX_WORD * _WORD)
        self._closed = False
        # The compiled core's fast paths (kmem._core.ArenaCore), for mutex arenas.
        self._core: ArenaCore | None = None
        if self.lock_kind == "mutex" and core is not None and hasattr(core, "ArenaCore"):
            self._use_compiled_core(core)
        self._views: list[tuple[int, memoryview, weakref.ref[ctypes.Array[ctypes.c_ubyte]]]] = []
        self._views_pruned_at = 16

    def _use_compiled_core(self, compiled: ModuleType) -> None:
        """Run alloc_pages, free_pages, alloc, free, kmalloc, kfree and the caches' alloc and
        free in the compiled core, over this arena's mapping. Whatever its fast paths do not
        handle goes to the pure methods below, which raise the errors they always raise."""
        arena_core = compiled.ArenaCore(
            self._mmap,
            pure_alloc_pages=Arena.alloc_pages.__get__(self),
            pure_free_pages=Arena.free_pages.__get__(self),
            pure_alloc=Arena.alloc.__get__(self), pure_free=Arena.free.__get__(self),
            pure_kmalloc=Arena.kmalloc.__get__(self), pure_kfree=Arena.kfree.__get__(self),
            pure_cache_alloc=self._cache_alloc, pure_cache_free=self._cache_free,
        )
        self._core = arena_core
        self.alloc_pages = arena_core.alloc_pages  # type: ignore[method-assign]
        self.free_pages = arena_core.free_pages  # type: ignore[method-assign]
        self.alloc = arena_core.alloc  # type: ignore[method-assign]
        self.free = arena_core.free  # type: ignore[method-assign]
        self.kmalloc = arena_core.kmalloc  # type: ignore[method-assign]
        self.kfree = arena_core.kfree  # type: ignore[method-assign]

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str], size: int, *, page_size: int = 4096,
               max_order: int = MAX_PAGE_ORDER, nr_caches: int = DEFAULT_CACHES,
               lock: str | None = None) -> Arena:
        """A new arena in a new file of ``size`` bytes (the file must not exist).

        ``lock`` is "mutex" (a robust process-shared pthread mutex in the header, the default
        with the compiled core) or "flock" (an flock on the file, the pure default).
        """
        layout = _new_layout(size, page_size, max_order, nr_caches)
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise ArenaExistsError(f"{path}: file exists (open it with Arena.open)") from None
        except OSError as error:
            raise ArenaError(f"{path}: {error.strerror}") from None
        try:
            os.ftruncate(fd, layout.size)
            buffer = mmap.mmap(fd, layout.size)
        except OSError as error:
            os.close(fd)
            os.unlink(path)
            raise ArenaError(f"{path}: {error.strerror}") from None
        os.close(fd)
        _format(buffer, layout, _lock_kind(lock))
        return cls(buffer, path, path, None)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Arena:
        """Reopen the arena in ``path``, rolling back an operation a crashed holder left."""
        path = os.fspath(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as error:
            raise ArenaError(f"{path}: {error.strerror}") from None
        try:
            length = os.fstat(fd).st_size
            if length < HEADER_BYTES:
                with os.fdopen(os.dup(fd), "rb") as file:
                    start = file.read(8)
                if length < 8 or start != MAGIC.to_bytes(8, "little", signed=True):
                    raise NotAnArenaError(f"{path}: not a kmem arena (no arena magic)")
                raise ArenaTruncatedError(
                    f"{path}: truncated: {length} bytes, shorter than an arena header"
                )
            buffer = mmap.mmap(fd, length)
        finally:
            os.close(fd)
        try:
            _validate(buffer, length, path)
        except KmemError:
            buffer.close()
            raise
        arena = cls(buffer, path, path, None)
        arena._recover_now()
        return arena

    @classmethod
    def create_shared(cls, name: str, size: int, *, page_size: int = 4096,
                      max_order: int = MAX_PAGE_ORDER,
                      nr_caches: int = DEFAULT_CACHES, lock: str | None = None) -> Arena:
        """A new arena in a new shared memory segment ``name`` (unlink() it when done)."""
        layout = _new_layout(size, page_size, max_order, nr_caches)
        try:
            shm = shared_memory.SharedMemory(name, create=True, size=layout.size)
        except FileExistsError:
            raise ArenaExistsError(f"shared memory {name!r} exists (attach to it)") from None
        _CREATED_HERE.add(shm.name)
        buffer = _map_segment(shm)
        _format(buffer, layout, _lock_kind(lock))
        return cls(buffer, _segment_path(shm), f"shm:{shm.name}", shm)

    @classmethod
    def attach(cls, name: str) -> Arena:
        """The arena in the existing shared memory segment ``name``."""
        try:
            shm = shared_memory.SharedMemory(name)
        except FileNotFoundError:
            raise ArenaError(f"shared memory {name!r} does not exist") from None
        # Python 3.11's resource tracker would unlink the segment when this process exits:
        # the segment belongs to its creator.
        if shm.name not in _CREATED_HERE:
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
        buffer = _map_segment(shm)
        source = f"shm:{shm.name}"
        try:
            if len(buffer) < HEADER_BYTES:
                raise NotAnArenaError(f"{source}: not a kmem arena (too small)")
            _validate(buffer, len(buffer), source)
        except KmemError:
            buffer.close()
            shm.close()
            raise
        arena = cls(buffer, _segment_path(shm), source, shm)
        arena._recover_now()
        return arena

    def unlink(self) -> None:
        """Remove the shared memory segment (or file) once every process is done with it."""
        if self._shm is not None:
            self._shm.unlink()
        else:
            os.unlink(self._lock_path)

    @property
    def source(self) -> str:
        """The file path, or ``shm:NAME`` for a shared memory segment."""
        return self._source

    # -- the lock and the undo log ------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[memoryview]:
        """Hold the arena lock for one operation; commit it on success, undo it on error."""
        if self._closed:
            raise ArenaClosedError(f"{self._source}: the arena is closed")
        self._thread_lock.acquire()
        outer = self._depth == 0
        try:
            if outer:
                if self._pid != os.getpid():
                    # A forked child: its flock must be on its own open file description.
                    self._lock_fd = os.open(self._lock_path, os.O_RDWR)
                    self._pid = os.getpid()
                if self._mutex is not None:
                    # The robust mutex: EOWNERDEAD means its holder died; the log below
                    # is then rolled back and the mutex marked consistent again.
                    _pthread().lock(self._mutex)
                else:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._depth += 1
            words = self._words
            try:
                if outer:
                    if words[D_LOG_COUNT]:
                        self._roll_back()
                        words[D_RECOVERIES] += 1
                    words[D_HOLDER] = self._pid
                yield words
            except BaseException:
                if outer:
                    self._roll_back()
                raise
            finally:
                self._depth -= 1
                if outer:
                    if words[D_LOG_COUNT]:
                        words[D_GENERATION] += 1
                        words[D_LOG_COUNT] = 0  # the commit
                    if self._mutex is not None:
                        _pthread().unlock(self._mutex)
                    else:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _store(self, index: int, value: int) -> None:
        """Write word ``index``, recording its old value in the undo log first."""
        words = self._words
        count = words[D_LOG_COUNT]
        if count >= self._log_capacity:
            raise ArenaError("operation too large for the arena's undo log")
        record = self._log + 2 * count
        words[record] = index
        words[record + 1] = words[index]
        words[D_LOG_COUNT] = count + 1
        words[index] = value

    def _roll_back(self) -> None:
        words = self._words
        count = words[D_LOG_COUNT]
        if not 0 <= count <= self._log_capacity:
            raise ArenaCorruptError(f"{self._source}: undo log length {count} is corrupt")
        records = range(self._log + 2 * (count - 1), self._log - 1, -2)
        for record in records:  # all checked before any is applied
            if not 0 <= words[record] < len(words):
                raise ArenaCorruptError(f"{self._source}: undo log names word {words[record]}")
        for record in records:
            words[words[record]] = words[record + 1]
        words[D_LOG_COUNT] = 0

    def _recover_now(self) -> None:
        with self._locked():
            pass

    # -- the mem_map and the lists ------------------------------------------------------------

    def _slot(self, column: int, node: int) -> int:
        """The word of ``column`` for list node ``node`` (a page, or a head ~k for next/prev)."""
        if node >= 0:
            return self._col[column] + node
        return (self._heads_next if column == C_NEXT else self._heads_prev) + ~node

    def _get(self, column: int, node: int) -> int:
        return self._words[self._slot(column, node)]

    def _set(self, column: int, node: int, value: int) -> None:
        self._store(self._slot(column, node), value)

    def _list_del(self, node: int) -> None:
        before = self._get(C_PREV, node)
        after = self._get(C_NEXT, node)
        self._set(C_NEXT, before, after)
        self._set(C_PREV, after, before)

    def _list_add(self, head: int, node: int) -> None:
        first = self._get(C_NEXT, head)
        self._set(C_NEXT, node, first)
        self._set(C_PREV, node, head)
        self._set(C_PREV, first, node)
        self._set(C_NEXT, head, node)

    def _list_add_tail(self, head: int, node: int) -> None:
        last = self._get(C_PREV, head)
        self._set(C_PREV, node, last)
        self._set(C_NEXT, node, head)
        self._set(C_NEXT, last, node)
        self._set(C_PREV, head, node)

    def _entries(self, head: int) -> list[int]:
        out = []
        node = self._get(C_NEXT, head)
        while node != head:
            out.append(node)
            node = self._get(C_NEXT, node)
            if len(out) > self.nr_pages:
                raise ArenaCorruptError(f"{self._source}: list {~head} is circular")
        return out

    def _add_counter(self, index: int, delta: int) -> None:
        self._store(index, self._words[index] + delta)

    def _state(self, pfn: int) -> int:
        return self._words[self._col[C_STATE] + pfn]

    # -- the buddy allocator (kmem.page.buddy's rules) -----------------------------------------

    def _rmqueue(self, order: int, kind: int) -> int:
        words = self._words
        counters = self._counters
        avail = words[self._nonempty] >> order
        if not avail:
            words[counters + self.max_order + 1 + N_FAILURES] += 1  # a statistic, not undone
            raise OutOfMemoryError(
                f"no free block of order {order} or larger ({self._nr_free_pages()} pages"
                f" free, largest block order {self._largest_free_order()})"
            )
        high = order + (avail & -avail).bit_length() - 1
        pfn = self._get(C_NEXT, ~high)
        self._list_del(pfn)
        self._add_counter(counters + high, -1)
        if words[counters + high] == 0:
            self._store(self._nonempty, words[self._nonempty] ^ (1 << high))
        if high > order:
            self._add_counter(self._nonempty + N_SPLITS, high - order)
            self._store(self._nonempty, words[self._nonempty] | ((1 << high) - (1 << order)))
        size = 1 << high
        while high > order:  # expand(): each upper half to the head of its list
            high -= 1
            size >>= 1
            upper = pfn + size
            self._list_add(~high, upper)
            self._set(C_STATE, upper, K_FREE << 8 | high)
            self._add_counter(counters + high, 1)
        self._set(C_STATE, pfn, kind << 8 | order)
        self._add_counter(self._nonempty + N_ALLOCATIONS, 1)
        return pfn

    def _free_one(self, pfn: int, order: int) -> None:
        """__free_one_page for a block already checked to be allocated at ``order``."""
        words = self._words
        state = self._col[C_STATE]
        counters = self._counters
        self._set(C_STATE, pfn, 0)
        self._add_counter(self._nonempty + N_FREES, 1)
        first_order = order
        while order < self.max_order:
            buddy = pfn ^ (1 << order)
            if buddy >= self.nr_pages or words[state + buddy] != K_FREE << 8 | order:
                break
            self._list_del(buddy)
            self._add_counter(counters + order, -1)
            if words[counters + order] == 0:
                self._store(self._nonempty, words[self._nonempty] ^ (1 << order))
            self._set(C_STATE, buddy, 0)
            pfn &= buddy
            order += 1
        if order > first_order:
            self._add_counter(self._nonempty + N_MERGES, order - first_order)
        parent_buddy = (pfn & ~(1 << order)) ^ (2 << order)
        if order < self.max_order - 1 and parent_buddy < self.nr_pages and (
            words[state + parent_buddy] == K_FREE << 8 | (order + 1)
        ):
            self._list_add_tail(~order, pfn)
        else:
            self._list_add(~order, pfn)
        self._set(C_STATE, pfn, K_FREE << 8 | order)
        self._add_counter(counters + order, 1)
        if not words[self._nonempty] & (1 << order):
            self._store(self._nonempty, words[self._nonempty] | (1 << order))

    def alloc_pages(self, order: int = 0) -> int:
        """Allocate 2**order contiguous pages; return the first page's pfn."""
        order = self._check_alloc_order(order)
        with self._locked():
            return self._rmqueue(order, K_ALLOC)

    def alloc(self, size: int) -> int:
        """Allocate at least ``size`` bytes, rounded up to 2**order pages; return the address."""
        return self.alloc_pages(self._size_order(size)) << self.page_shift

    def free_pages(self, pfn: int, order: int) -> None:
        """Free the order-``order`` block at ``pfn`` that alloc_pages(order) returned."""
        pfn = int_argument(pfn, "pfn")
        order = int_argument(order, "order")
        with self._locked():
            if not 0 <= pfn < self.nr_pages or self._state(pfn) != K_ALLOC << 8 | order:
                raise self._bad_free(pfn, order)
            self._free_one(pfn, order)

    def free(self, address: int) -> None:
        """Free the block that alloc() returned at ``address``."""
        pfn = self._page_of(address)
        with self._locked():
            state = self._state(pfn)
            if state >> 8 != K_ALLOC:
                raise self._bad_free(pfn, None)
            self._free_one(pfn, state & 0xFF)

    # -- kmalloc and the slab caches ------------------------------------------------------------

    def kmalloc(self, size: int) -> int:
        """Allocate ``size`` bytes from the kmalloc caches (or pages above 2 pages)."""
        size = int_argument(size, "size")
        if size <= 0:
            raise InvalidArgumentError(f"kmalloc size must be positive, got {size}")
        class_size = kmalloc_class(size, self.page_size)
        if class_size and slab_order(class_size, self.page_size, self._alloc_order_limit) < 0:
            class_size = 0  # a class larger than this arena's largest block: pages, or refused
        if not class_size:
            order = self._size_order(size)
            with self._locked():
                pfn = self._rmqueue(order, K_LARGE)
                self._add_counter(self._nonempty + N_KMALLOCS, 1)
                return pfn << self.page_shift
        with self._locked():
            slot = self._find_cache(kmalloc_name(class_size))
            if slot < 0:
                slot = self._new_cache(kmalloc_name(class_size), class_size, kmalloc=True)
            address = self._slab_alloc(slot)
            self._add_counter(self._nonempty + N_KMALLOCS, 1)
            return address

    def kfree(self, address: int) -> None:
        """Free what kmalloc() returned at ``address``."""
        address = int_argument(address, "address")
        if not 0 <= address < self.nr_pages << self.page_shift:
            raise self._bad_address(address)
        pfn = address >> self.page_shift
        with self._locked():
            owner = self._get(C_OWNER, pfn)
            if owner:
                self._slab_free(owner - 1, address)
            else:
                state = self._state(pfn)
                if address & (self.page_size - 1):
                    raise self._bad_address(address)
                if state >> 8 == K_ALLOC:
                    raise InvalidFreeError(
                        f"address {address:#x} was allocated by alloc(): free it with free()"
                    )
                if state >> 8 != K_LARGE:
                    raise self._bad_free(pfn, None)
                self._free_one(pfn, state & 0xFF)
            self._add_counter(self._nonempty + N_KFREES, 1)

    def cache(self, name: str, size: int) -> ArenaCache:
        """The slab cache ``name`` of ``size``-byte objects, created if the arena has none."""
        if not isinstance(name, str):
            raise InvalidTypeError(f"cache name must be a str, not {type(name).__name__}")
        encoded = name.encode()
        if not encoded or len(encoded) > CACHE_NAME_BYTES or b"\0" in encoded:
            raise InvalidArgumentError(
                f"cache name must be 1..{CACHE_NAME_BYTES} bytes of UTF-8 without NUL,"
                f" got {name!r}"
            )
        size = int_argument(size, "size")
        if not 0 < size <= self.page_size << min(3, self._alloc_order_limit):
            raise InvalidArgumentError(
                f"object size must be in 1..{self.page_size << min(3, self._alloc_order_limit)},"
                f" got {size}"
            )
        with self._locked():
            slot = self._find_cache(name)
            if slot >= 0:
                base = self._caches + slot * SLOT_WORDS
                if self._words[base + S_KMALLOC]:
                    raise CacheMismatchError(f"cache {name!r} is a kmalloc cache")
                if self._words[base + S_OBJECT_SIZE] != size:
                    raise CacheMismatchError(
                        f"cache {name!r} exists with {self._words[base + S_OBJECT_SIZE]}-byte"
                        f" objects, not {size}"
                    )
            else:
                slot = self._new_cache(name, size, kmalloc=False)
        return ArenaCache(self, slot, name, size)

    def _cache_alloc(self, slot: int) -> int:
        with self._locked():
            self._check_slot(slot)
            return self._slab_alloc(slot)

    def _cache_free(self, slot: int, address: int) -> None:
        address = int_argument(address, "address")
        if not 0 <= address < self.nr_pages << self.page_shift:
            raise self._bad_address(address)
        with self._locked():
            self._check_slot(slot)
            owner = self._get(C_OWNER, address >> self.page_shift)
            if owner != slot + 1:
                if owner:
                    raise InvalidFreeError(
                        f"address {address:#x} belongs to cache {self._cache_name(owner - 1)!r},"
                        f" not {self._cache_name(slot)!r}"
                    )
                raise InvalidFreeError(
                    f"address {address:#x} is not an object of cache {self._cache_name(slot)!r}"
                )
            self._slab_free(slot, address)

    def _check_slot(self, slot: object) -> None:
        if type(slot) is not int or not 0 <= slot < self.nr_caches or (
            not self._words[self._caches + slot * SLOT_WORDS + S_IN_USE]
        ):
            raise ArenaError(f"no cache in slot {slot!r} of the arena")

    def caches(self) -> list[str]:
        """The names of the arena's caches, kmalloc caches included, in creation order."""
        with self._locked():
            return [self._cache_name(slot) for slot in self._live_slots()]

    def _live_slots(self) -> list[int]:
        return [slot for slot in range(self.nr_caches)
                if self._words[self._caches + slot * SLOT_WORDS + S_IN_USE]]

    def _cache_name(self, slot: int) -> str:
        base = self._caches + slot * SLOT_WORDS + S_NAME
        raw = self._words[base : base + CACHE_NAME_BYTES // _WORD].tobytes()
        return raw.rstrip(b"\0").decode(errors="replace")

    def _find_cache(self, name: str) -> int:
        for slot in self._live_slots():
            if self._cache_name(slot) == name:
                return slot
        return -1

    def _new_cache(self, name: str, size: int, *, kmalloc: bool) -> int:
        free_slots = [slot for slot in range(self.nr_caches)
                      if not self._words[self._caches + slot * SLOT_WORDS + S_IN_USE]]
        if not free_slots:
            raise ArenaError(f"the arena's {self.nr_caches} cache slots are all in use")
        slot = free_slots[0]
        stride = max(8, -(-size // 8) * 8)  # room for the free pointer, word aligned
        order = slab_order(stride, self.page_size, self._alloc_order_limit)
        objects = (self.page_size << order) // stride
        base = self._caches + slot * SLOT_WORDS
        raw = name.encode().ljust(CACHE_NAME_BYTES, b"\0")
        for i in range(CACHE_NAME_BYTES // _WORD):
            chunk = raw[i * _WORD : (i + 1) * _WORD]
            self._store(base + S_NAME + i, int.from_bytes(chunk, "little", signed=True))
        for field, value in ((S_OBJECT_SIZE, size), (S_STRIDE, stride), (S_ORDER, order),
                             (S_OBJECTS, objects), (S_KMALLOC, int(kmalloc))):
            self._store(base + field, value)
        for field in (S_NR_SLABS, S_ACTIVE, S_ALLOCS, S_FREES):
            self._store(base + field, 0)
        head = ~(self.max_order + 1 + slot)
        self._set(C_NEXT, head, head)
        self._set(C_PREV, head, head)
        self._store(base + S_IN_USE, 1)
        return slot

    def _slab_alloc(self, slot: int) -> int:
        words = self._words
        base = self._caches + slot * SLOT_WORDS
        order, objects, stride = (words[base + S_ORDER], words[base + S_OBJECTS],
                                  words[base + S_STRIDE])
        head = ~(self.max_order + 1 + slot)
        slab = self._get(C_NEXT, head)
        if slab < 0:  # no partial slab: a new one from the buddy allocator
            slab = self._rmqueue(order, K_SLAB)
            for pfn in range(slab, slab + (1 << order)):
                self._set(C_OWNER, pfn, slot + 1)
            self._set(C_INUSE, slab, 0)
            self._set(C_FREELIST, slab, -1)
            self._set(C_FRESH, slab, 0)
            self._list_add(head, slab)
            self._add_counter(base + S_NR_SLABS, 1)
        first = self._get(C_FREELIST, slab)
        slab_address = slab << self.page_shift
        if first >= 0:
            index = first
            self._set(C_FREELIST, slab, words[self._data_word + (slab_address + first * stride
                                                                 ) // _WORD])
        else:
            index = self._get(C_FRESH, slab)
            self._set(C_FRESH, slab, index + 1)
        inuse = self._get(C_INUSE, slab) + 1
        self._set(C_INUSE, slab, inuse)
        if inuse == objects:
            self._list_del(slab)
        self._add_counter(base + S_ACTIVE, 1)
        self._add_counter(base + S_ALLOCS, 1)
        return slab_address + index * stride

    def _object_index(self, slot: int, address: int) -> tuple[int, int]:
        """The slab and object index of ``address`` in cache ``slot``'s slab, or raise."""
        words = self._words
        base = self._caches + slot * SLOT_WORDS
        order, objects, stride = (words[base + S_ORDER], words[base + S_OBJECTS],
                                  words[base + S_STRIDE])
        slab = (address >> self.page_shift) & ~((1 << order) - 1)
        offset = address - (slab << self.page_shift)
        index = offset // stride
        if offset % stride or index >= objects:
            raise InvalidFreeError(
                f"address {address:#x} is not the start of an object of cache"
                f" {self._cache_name(slot)!r} ({stride}-byte slots from"
                f" {slab << self.page_shift:#x})"
            )
        if index >= self._get(C_FRESH, slab) or index in self._freelist(slab, stride, objects):
            raise DoubleFreeError(
                f"object {address:#x} of cache {self._cache_name(slot)!r} is already free"
            )
        return slab, index

    def _freelist(self, slab: int, stride: int, objects: int) -> list[int]:
        out: list[int] = []
        index = self._get(C_FREELIST, slab)
        slab_word = self._data_word + (slab << self.page_shift) // _WORD
        while index >= 0:
            if index >= objects or len(out) > objects:
                raise ArenaCorruptError(f"{self._source}: slab {slab:#x}: freelist is corrupt")
            out.append(index)
            index = self._words[slab_word + index * stride // _WORD]
        return out

    def _slab_free(self, slot: int, address: int) -> None:
        words = self._words
        base = self._caches + slot * SLOT_WORDS
        order, objects = words[base + S_ORDER], words[base + S_OBJECTS]
        slab, index = self._object_index(slot, address)
        inuse = self._get(C_INUSE, slab)
        self._store(self._data_word + address // _WORD, self._get(C_FREELIST, slab))
        self._set(C_FREELIST, slab, index)
        self._set(C_INUSE, slab, inuse - 1)
        self._add_counter(base + S_ACTIVE, -1)
        self._add_counter(base + S_FREES, 1)
        head = ~(self.max_order + 1 + slot)
        if inuse - 1 == 0:  # empty: back to the buddy allocator
            if inuse != objects:
                self._list_del(slab)
            for pfn in range(slab, slab + (1 << order)):
                self._set(C_OWNER, pfn, 0)
            self._add_counter(base + S_NR_SLABS, -1)
            self._free_one(slab, order)
        elif inuse == objects:  # was full: back on the partial list
            self._list_add(head, slab)

    # -- views ---------------------------------------------------------------------------------

    def view(self, address: int) -> memoryview:
        """A writable memoryview of exactly the block or object at ``address``.

        close() releases the views it handed out; a view something else still exports (a
        NumPy array over it) makes close() raise ArenaBusyError naming it.
        """
        address = int_argument(address, "address")
        if not 0 <= address < self.nr_pages << self.page_shift:
            raise self._bad_address(address)
        pfn = address >> self.page_shift
        with self._locked():
            owner = self._get(C_OWNER, pfn)
            if owner:
                self._object_index(owner - 1, address)
                length = self._words[self._caches + (owner - 1) * SLOT_WORDS + S_OBJECT_SIZE]
            else:
                state = self._state(pfn)
                if address & (self.page_size - 1):
                    raise self._bad_address(address)
                if state >> 8 not in (K_ALLOC, K_LARGE):
                    raise self._bad_free(pfn, None)
                length = self.page_size << (state & 0xFF)
        # Each view exports the mapping through its own small ctypes array, so that close()
        # can tell, by a weak reference, which views something else (a NumPy array made
        # from one) still holds.
        exporter = (ctypes.c_ubyte * length).from_buffer(self._mmap, self._data + address)
        raw = memoryview(exporter)
        view = raw.cast("B")
        raw.release()
        with self._thread_lock:
            self._views.append((address, view, weakref.ref(exporter)))
            if len(self._views) >= self._views_pruned_at:
                self._views = [entry for entry in self._views if entry[2]() is not None]
                self._views_pruned_at = max(16, 2 * len(self._views))
        return view

    def close(self) -> None:
        """Unmap the arena; every later call raises ArenaClosedError. Idempotent."""
        if self._closed:
            return
        with self._thread_lock:
            for _, view, _ in self._views:
                view.release()
            held = sorted({address for address, _, alive in self._views if alive() is not None})
            self._views = [entry for entry in self._views if entry[2]() is not None]
            if held:
                listed = ", ".join(f"{address:#x}" for address in held)
                raise ArenaBusyError(
                    f"{self._source}: the views of {listed} are still exported (a NumPy array"
                    " or a slice made from them): drop those, then close again"
                )
            self._views = []
            self._mutex = None
            if self._core is not None:
                self._core.release()
            self._words.release()
            self._bytes.release()
            try:
                self._mmap.close()
            except BufferError:
                # Something exports the mapping other than the views (a buffer taken from
                # the arena's own memory by other means): stay open and say so.
                self._bytes = memoryview(self._mmap)
                self._words = self._bytes.cast("q")
                if self.lock_kind == "mutex":
                    self._mutex = ctypes.c_char.from_buffer(self._mmap, MUTEX_WORD * _WORD)
                raise ArenaBusyError(
                    f"{self._source}: the mapping is still exported: drop what holds it,"
                    " then close again"
                ) from None
            if self._shm is not None:
                self._shm.close()
            os.close(self._lock_fd)
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<Arena {self._source} closed>"
        return f"<Arena {self._source} {self.nr_pages} pages of {self.page_size}>"

    # -- queries -------------------------------------------------------------------------------

    @property
    def nr_free(self) -> tuple[int, ...]:
        """Free blocks per order, 0..max_order."""
        with self._locked() as words:
            return tuple(words[self._counters : self._counters + self.max_order + 1])

    def _nr_free_pages(self) -> int:
        words = self._words
        return sum(words[self._counters + o] << o for o in range(self.max_order + 1))

    def _largest_free_order(self) -> int:
        return self._words[self._nonempty].bit_length() - 1

    @property
    def nr_free_pages(self) -> int:
        with self._locked():
            return self._nr_free_pages()

    def stats(self) -> ArenaStats:
        """The arena's counters, read under the lock."""
        with self._locked() as words:
            events = self._nonempty
            return ArenaStats(
                nr_pages=self.nr_pages, nr_free_pages=self._nr_free_pages(),
                nr_free=tuple(words[self._counters : self._counters + self.max_order + 1]),
                allocations=words[events + N_ALLOCATIONS], frees=words[events + N_FREES],
                failures=words[events + N_FAILURES], splits=words[events + N_SPLITS],
                merges=words[events + N_MERGES], kmallocs=words[events + N_KMALLOCS],
                kfrees=words[events + N_KFREES], caches=len(self._live_slots()),
                generation=words[D_GENERATION], recoveries=words[D_RECOVERIES],
            )

    def buddyinfo(self) -> str:
        """The arena's line of /proc/buddyinfo."""
        return buddyinfo_line(0, "Arena", self.nr_free)

    def slabinfo_rows(self) -> list[ArenaSlabInfo]:
        with self._locked() as words:
            rows = []
            for slot in self._live_slots():
                base = self._caches + slot * SLOT_WORDS
                slabs = words[base + S_NR_SLABS]
                objects = words[base + S_OBJECTS]
                rows.append(ArenaSlabInfo(
                    self._cache_name(slot), words[base + S_ACTIVE], slabs * objects,
                    words[base + S_STRIDE], objects, 1 << words[base + S_ORDER], slabs, slabs,
                ))
            return rows

    def slabinfo(self) -> str:
        """The arena's caches as /proc/slabinfo (version 2.1) lines."""
        from kmem.slab.report import format_slabinfo
        from kmem.slab.stats import SlabInfo

        return format_slabinfo(
            SlabInfo(row.name, row.active_objs, row.num_objs, row.objsize, row.objperslab,
                     row.pagesperslab, 0, 0, 0, row.active_slabs, row.num_slabs, 0)
            for row in self.slabinfo_rows()
        )

    def header(self) -> dict[str, int | str]:
        """The header fields, by name (what ``kmem arena info`` prints)."""
        with self._locked() as words:
            return {
                "source": self._source, "format_version": words[H_VERSION],
                "size": self.size, "page_size": self.page_size, "nr_pages": self.nr_pages,
                "max_order": self.max_order, "cache_slots": self.nr_caches,
                "undo_log_capacity": self._log_capacity, "data_offset": self._data,
                "lock": self.lock_kind,
                "generation": words[D_GENERATION], "recoveries": words[D_RECOVERIES],
                "last_holder_pid": words[D_HOLDER],
            }

    def blocks(self) -> list[tuple[int, int, str]]:
        """Every block, in address order: (pfn, order, kind)."""
        with self._locked():
            out = []
            pfn = 0
            while pfn < self.nr_pages:
                state = self._state(pfn)
                if state == 0:
                    raise ArenaCorruptError(f"{self._source}: pfn {pfn:#x} starts no block")
                out.append((pfn, state & 0xFF, KIND_NAMES.get(state >> 8, "?")))
                pfn += 1 << (state & 0xFF)
            return out

    # -- errors ---------------------------------------------------------------------------------

    def _size_order(self, size: object) -> int:
        return size_order(size, self.page_shift, self.max_order, self._alloc_order_limit,
                          self.nr_pages)

    def _check_alloc_order(self, order: object) -> int:
        order = int_argument(order, "order")
        if not 0 <= order <= self.max_order:
            raise InvalidArgumentError(f"order must be in 0..{self.max_order}, got {order}")
        if order > self._alloc_order_limit:
            raise InvalidArgumentError(
                f"order {order} is {1 << order} pages, more than the {self.nr_pages} pages of"
                " memory"
            )
        return order

    def _page_of(self, address: object) -> int:
        address = int_argument(address, "address")
        pfn = address >> self.page_shift
        if address & (self.page_size - 1) or not 0 <= pfn < self.nr_pages:
            raise self._bad_address(address)
        return pfn

    def _bad_address(self, address: int) -> InvalidFreeError:
        size = self.nr_pages << self.page_shift
        if not 0 <= address < size:
            return InvalidFreeError(f"address {address:#x} lies outside memory [0, {size:#x})")
        return InvalidFreeError(
            f"address {address:#x} is not page aligned (page size {self.page_size})"
        )

    def _block_at(self, pfn: int) -> tuple[int, int, int]:
        """(first pfn, order, kind) of the block holding ``pfn``."""
        for order in range(self.max_order + 1):
            first = pfn & ~((1 << order) - 1)
            state = self._state(first)
            if state and state & 0xFF >= order and first + (1 << (state & 0xFF)) > pfn:
                return first, state & 0xFF, state >> 8
        raise ArenaCorruptError(f"{self._source}: pfn {pfn:#x} lies in no block")

    def _bad_free(self, pfn: int, order: int | None) -> KmemError:
        if not 0 <= pfn < self.nr_pages:
            return InvalidFreeError(f"pfn {pfn:#x} lies outside memory [0, {self.nr_pages:#x})")
        if order is not None and not 0 <= order <= self.max_order:
            return InvalidArgumentError(f"order must be in 0..{self.max_order}, got {order}")
        first, block_order, kind = self._block_at(pfn)
        if kind == K_ALLOC and first == pfn:
            return WrongOrderError(
                f"pfn {pfn:#x} was allocated at order {block_order}, freed at order {order}"
            )
        if kind == K_FREE:
            return DoubleFreeError(
                f"pfn {pfn:#x} is already free (inside the free order-{block_order} block"
                f" at pfn {first:#x})"
            )
        if kind == K_SLAB:
            owner = self._get(C_OWNER, pfn)
            return InvalidFreeError(
                f"pfn {pfn:#x} is a slab page of cache {self._cache_name(owner - 1)!r}:"
                " free its objects with kfree() or the cache's free()"
            )
        if kind == K_LARGE and first == pfn:
            return InvalidFreeError(
                f"pfn {pfn:#x} was allocated by kmalloc(): free it with kfree()"
            )
        return InvalidFreeError(
            f"pfn {pfn:#x} is not the start of an allocated block (it lies inside the"
            f" order-{block_order} block allocated at pfn {first:#x})"
        )

    # -- check ----------------------------------------------------------------------------------

    def check(self) -> None:
        """Verify every invariant (module docstring); raise ArenaCorruptError on the first
        broken one."""
        with self._locked() as words:
            _Checker(self, words).run()


class ArenaCache:
    """A slab cache kept in an arena, found again by name (``arena.cache(name, size)``)."""

    def __init__(self, arena: Arena, slot: int, name: str, object_size: int) -> None:
        self.arena: Final = arena
        self.name: Final = name
        self.object_size: Final = object_size
        self.slot: Final = slot
        arena_core = arena._core
        if arena_core is not None:  # the compiled fast paths, bound to this slot
            self.alloc = functools.partial(arena_core.cache_alloc, slot)  # type: ignore[method-assign]
            self.free = functools.partial(arena_core.cache_free, slot)  # type: ignore[method-assign]

    def alloc(self) -> int:
        """Allocate one object; return its address."""
        return self.arena._cache_alloc(self.slot)

    def free(self, address: int) -> None:
        """Free an object this cache allocated."""
        self.arena._cache_free(self.slot, address)

    def __repr__(self) -> str:
        return f"<ArenaCache {self.name} {self.object_size} bytes>"


class _Checker:
    """check(): every invariant of the module docstring, reading the words directly."""

    def __init__(self, arena: Arena, words: memoryview) -> None:
        self.arena = arena
        self.words = words

    def fail(self, message: str) -> None:
        raise ArenaCorruptError(f"{self.arena.source}: check: {message}")

    def run(self) -> None:
        arena, words = self.arena, self.words
        if words[D_LOG_COUNT]:
            self.fail("the undo log is not empty between operations")
        listed = self._free_lists()
        slabs: dict[int, list[int]] = {}
        pfn = 0
        while pfn < arena.nr_pages:
            state = arena._state(pfn)
            kind, order = state >> 8, state & 0xFF
            if kind not in KIND_NAMES or order > arena.max_order:
                self.fail(f"pfn {pfn:#x}: state {state:#x} starts no block")
            if pfn & ((1 << order) - 1) or pfn + (1 << order) > arena.nr_pages:
                self.fail(f"pfn {pfn:#x}: order-{order} block misaligned or past the end")
            for inner in range(pfn + 1, pfn + (1 << order)):
                if arena._state(inner):
                    self.fail(f"pfn {inner:#x} inside the block at {pfn:#x} has a state")
            owners = {arena._get(C_OWNER, p) for p in range(pfn, pfn + (1 << order))}
            if kind == K_FREE and listed.pop(pfn, None) != order:
                self.fail(f"free block at pfn {pfn:#x} is not on free list {order}")
            if kind == K_SLAB:
                if len(owners) != 1 or 0 in owners:
                    self.fail(f"slab at pfn {pfn:#x}: pages name different caches")
                slabs.setdefault(owners.pop() - 1, []).append(pfn)
            elif owners != {0}:
                self.fail(f"pfn {pfn:#x}: a {KIND_NAMES[kind]} block with a cache owner")
            pfn += 1 << order
        if listed:
            self.fail(f"free lists hold pfns that start no free block: {sorted(listed)[:5]}")
        self._caches(slabs)

    def _free_lists(self) -> dict[int, int]:
        arena, words = self.arena, self.words
        listed: dict[int, int] = {}
        nonempty = 0
        for order in range(arena.max_order + 1):
            head = ~order
            previous = head
            count = 0
            for pfn in arena._entries(head):
                if arena._get(C_PREV, pfn) != previous:
                    self.fail(f"free list {order}: prev of pfn {pfn:#x} is wrong")
                if not 0 <= pfn < arena.nr_pages or arena._state(pfn) != K_FREE << 8 | order:
                    self.fail(f"free list {order}: pfn {pfn:#x} is not a free order-{order} block")
                buddy = pfn ^ (1 << order)
                if order < arena.max_order and buddy < arena.nr_pages and (
                    arena._state(buddy) == K_FREE << 8 | order
                ):
                    self.fail(f"free buddies {pfn:#x} and {buddy:#x} of order {order} unmerged")
                if pfn in listed:
                    self.fail(f"pfn {pfn:#x} is on two free lists")
                listed[pfn] = order
                previous = pfn
                count += 1
            if arena._get(C_PREV, head) != previous:
                self.fail(f"free list {order}: the head's prev is wrong")
            if words[arena._counters + order] != count:
                self.fail(f"nr_free[{order}] is {words[arena._counters + order]}, list has {count}")
            nonempty |= (count > 0) << order
        if words[arena._nonempty] != nonempty:
            self.fail(f"non-empty mask {words[arena._nonempty]:#x}, lists say {nonempty:#x}")
        return listed

    def _caches(self, slabs: dict[int, list[int]]) -> None:
        arena, words = self.arena, self.words
        live = set(arena._live_slots())
        if set(slabs) - live:
            self.fail(f"slabs of cache slots that are not in use: {sorted(set(slabs) - live)}")
        for slot in live:
            base = arena._caches + slot * SLOT_WORDS
            name = arena._cache_name(slot)
            order, objects, stride = (words[base + S_ORDER], words[base + S_OBJECTS],
                                      words[base + S_STRIDE])
            if stride < 8 or stride % 8 or objects != (arena.page_size << order) // stride:
                self.fail(f"cache {name!r}: geometry is inconsistent")
            partial = arena._entries(~(arena.max_order + 1 + slot))
            active = 0
            for slab in slabs.get(slot, []):
                if arena._state(slab) & 0xFF != order:
                    self.fail(f"cache {name!r}: slab {slab:#x} has the wrong order")
                inuse, fresh = arena._get(C_INUSE, slab), arena._get(C_FRESH, slab)
                if not 0 < inuse <= fresh <= objects:
                    self.fail(f"cache {name!r}: slab {slab:#x} inuse {inuse} fresh {fresh}")
                freelist = arena._freelist(slab, stride, objects)
                if len(set(freelist)) != len(freelist) or len(freelist) != fresh - inuse or (
                    any(index >= fresh for index in freelist)
                ):
                    self.fail(f"cache {name!r}: slab {slab:#x} freelist disagrees with inuse")
                if (slab in partial) != (inuse < objects):
                    self.fail(f"cache {name!r}: slab {slab:#x} partial list membership wrong")
                active += inuse
            if set(partial) - set(slabs.get(slot, [])):
                self.fail(f"cache {name!r}: partial list holds a non-slab")
            if words[base + S_NR_SLABS] != len(slabs.get(slot, [])):
                self.fail(f"cache {name!r}: nr_slabs {words[base + S_NR_SLABS]} is wrong")
            if words[base + S_ACTIVE] != active:
                self.fail(f"cache {name!r}: active objects {words[base + S_ACTIVE]} != {active}")


def _new_layout(size: object, page_size: object, max_order: object,
                nr_caches: object) -> ArenaLayout:
    size = int_argument(size, "size")
    page_size = check_page_size(page_size)
    if page_size < 64:
        raise InvalidArgumentError(f"an arena's page size must be at least 64, got {page_size}")
    max_order = int_argument(max_order, "max_order")
    if not 0 <= max_order <= 30:
        raise InvalidArgumentError(f"max_order must be in 0..30, got {max_order}")
    nr_caches = int_argument(nr_caches, "nr_caches")
    if not 1 <= nr_caches <= 4096:
        raise InvalidArgumentError(f"nr_caches must be in 1..4096, got {nr_caches}")
    size -= size % page_size
    layout = ArenaLayout.compute(size, page_size, max_order, nr_caches, DEFAULT_LOG_CAPACITY)
    if layout.nr_pages < 1:
        raise InvalidArgumentError(
            f"an arena of {size} bytes has no room for a page after its metadata"
            f" ({layout.data} bytes)"
        )
    return layout


def _format(buffer: mmap.mmap, layout: ArenaLayout, lock_kind: int) -> None:
    """Write a new arena's metadata; the magic goes last, so a crash leaves no arena."""
    view = memoryview(buffer)
    words = view.cast("q")
    try:
        header = [0] * STATIC_WORDS
        header[H_VERSION] = FORMAT_VERSION
        header[H_PAGE_SIZE] = layout.page_size
        header[H_NR_PAGES] = layout.nr_pages
        header[H_MAX_ORDER] = layout.max_order
        header[H_NR_CACHES] = layout.nr_caches
        header[H_LOG_CAPACITY] = layout.log_capacity
        header[H_SIZE] = layout.size
        header[H_DATA] = layout.data
        header[H_COLUMNS] = layout.columns
        header[H_HEADS] = layout.heads
        header[H_COUNTERS] = layout.counters
        header[H_CACHES] = layout.caches
        header[H_LOG] = layout.log
        header[H_LOCK_KIND] = lock_kind
        if lock_kind == LOCK_MUTEX:
            _pthread().init(buffer)
        for index, value in enumerate(header):
            if index != H_MAGIC:
                words[index] = value
        heads_next, heads_prev = layout.heads, layout.heads + layout.nr_heads
        for k in range(layout.nr_heads):
            words[heads_next + k] = ~k
            words[heads_prev + k] = ~k
        state, nxt, prv = (layout.columns + c * layout.nr_pages for c in (C_STATE, C_NEXT,
                                                                             C_PREV))
        nonempty = layout.counters + layout.max_order + 1
        for pfn, order in boot_blocks(0, layout.nr_pages, layout.max_order):
            last = words[heads_prev + order]  # list_add_tail, as BuddyAllocator boots
            words[prv + pfn] = last
            words[nxt + pfn] = ~order
            if last < 0:
                words[heads_next + ~last] = pfn
            else:
                words[nxt + last] = pfn
            words[heads_prev + order] = pfn
            words[state + pfn] = K_FREE << 8 | order
            words[layout.counters + order] += 1
            words[nonempty] |= 1 << order
        header[H_MAGIC] = MAGIC
        words[H_CHECKSUM] = zlib.crc32(
            b"".join(value.to_bytes(8, "little", signed=True) for value in header)
        )
        words[H_MAGIC] = MAGIC
    finally:
        words.release()
        view.release()


def _validate(buffer: mmap.mmap, length: int, source: str) -> None:
    """Refuse what is not an intact arena of this format, before anything writes to it."""
    view = memoryview(buffer)
    words = view[: HEADER_BYTES].cast("q")
    try:
        if words[H_MAGIC] != MAGIC:
            raise NotAnArenaError(f"{source}: not a kmem arena (no arena magic)")
        if _header_checksum(words) != words[H_CHECKSUM]:
            raise ArenaCorruptError(f"{source}: corrupt header (checksum mismatch)")
        if words[H_VERSION] != FORMAT_VERSION:
            raise ArenaVersionError(
                f"{source}: arena format version {words[H_VERSION]}, this kmem reads"
                f" version {FORMAT_VERSION}"
            )
        size = words[H_SIZE]
        if length < size:
            raise ArenaTruncatedError(
                f"{source}: truncated: {length} bytes, the header says {size}"
            )
        try:
            page_size = check_page_size(words[H_PAGE_SIZE])
            expected = ArenaLayout.compute(size, page_size, words[H_MAX_ORDER],
                                           words[H_NR_CACHES], words[H_LOG_CAPACITY])
        except (KmemError, OverflowError, ValueError):
            expected = None
        if words[H_LOCK_KIND] not in LOCK_NAMES.values():
            raise ArenaCorruptError(f"{source}: corrupt header (lock kind {words[H_LOCK_KIND]})")
        if expected is None or not 0 <= words[H_MAX_ORDER] <= 30 or (
            words[H_NR_CACHES] < 1
        ) or (expected.nr_pages, expected.data, expected.columns, expected.heads,
              expected.counters, expected.caches, expected.log) != tuple(
            words[field] for field in (H_NR_PAGES, H_DATA, H_COLUMNS, H_HEADS, H_COUNTERS,
                                       H_CACHES, H_LOG)
        ):
            raise ArenaCorruptError(f"{source}: corrupt header (layout disagrees with size)")
    finally:
        words.release()
        view.release()


def _map_segment(shm: shared_memory.SharedMemory) -> mmap.mmap:
    """A mapping of the segment of our own (SharedMemory's own buffer cannot be closed while
    we export views of it, and closing must stay ours to decide)."""
    fd = os.open(_segment_path(shm), os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _segment_path(shm: shared_memory.SharedMemory) -> str:
    return str(Path("/dev/shm") / shm.name.lstrip("/"))


def _lock_kind(lock: str | None) -> int:
    if lock is None:
        from kmem._compiled import core

        return LOCK_MUTEX if core is not None else LOCK_FLOCK
    if lock not in LOCK_NAMES:
        raise InvalidArgumentError(f"lock must be 'mutex' or 'flock', got {lock!r}")
    return LOCK_NAMES[lock]


class _Pthread:
    """The robust process-shared mutex through libc (the pure path's way to the mutex the
    compiled core takes directly)."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._lock = libc.pthread_mutex_lock
        self._unlock = libc.pthread_mutex_unlock
        self._consistent = libc.pthread_mutex_consistent
        self._libc = libc
        for function in (self._lock, self._unlock, self._consistent):
            function.argtypes = [ctypes.c_void_p]
            function.restype = ctypes.c_int

    def init(self, buffer: mmap.mmap) -> None:
        libc = self._libc
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes on glibc
        mutex = ctypes.c_char.from_buffer(buffer, MUTEX_WORD * _WORD)
        try:
            for call in (libc.pthread_mutexattr_init(attr),
                         libc.pthread_mutexattr_setpshared(attr, 1),  # PTHREAD_PROCESS_SHARED
                         libc.pthread_mutexattr_setrobust(attr, 1),  # PTHREAD_MUTEX_ROBUST
                         libc.pthread_mutex_init(ctypes.byref(mutex), attr),
                         libc.pthread_mutexattr_destroy(attr)):
                if call:
                    raise ArenaError(f"cannot make the arena's mutex: {os.strerror(call)}")
        finally:
            del mutex

    def lock(self, mutex: ctypes.c_char) -> None:
        result = self._lock(ctypes.byref(mutex))
        if result == errno.EOWNERDEAD:
            # The holder died: this thread now holds the mutex; the caller rolls back the
            # undo log, and the mutex is usable again.
            self._consistent(ctypes.byref(mutex))
        elif result:
            raise ArenaError(f"cannot take the arena's mutex: {os.strerror(result)}")

    def unlock(self, mutex: ctypes.c_char) -> None:
        self._unlock(ctypes.byref(mutex))


_PTHREAD: list[_Pthread] = []


def _pthread() -> _Pthread:
    if not _PTHREAD:
        _PTHREAD.append(_Pthread())
    return _PTHREAD[0]
