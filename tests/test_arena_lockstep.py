"""The arena on the compiled core (csrc/arena.c) and on the pure one, in lockstep.

Hypothesis drives two arenas of the same size, one with kmem._core's fast paths and one with
the core hidden, through the same random calls, bad ones included (foreign and stale
addresses, double frees, wrong types, huge sizes); every result, every error (class and
message) and every byte of the two buffers (but the mutexes, whose private words differ) must
agree after each step. A second test corrupts a live arena's words at random and checks that
the compiled paths neither crash nor touch memory outside the buffer (tools/fuzz.sh runs both
under ASan and UBSan) and fail the way the pure paths do.
"""

from __future__ import annotations

import contextlib
import functools
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import kmem.arena.arena as arena_module
from core_twins import FUZZ_EXAMPLES, needs_compiled, outcome
from kmem import Arena, ArenaCache
from kmem.arena.arena import D_HOLDER, HEADER_WORDS, MUTEX_BYTES, MUTEX_WORD

pytestmark = [needs_compiled, pytest.mark.fuzz]


@contextlib.contextmanager
def _pure() -> Iterator[None]:
    saved = arena_module.core  # type: ignore[attr-defined]
    arena_module.core = None  # type: ignore[attr-defined]
    try:
        yield
    finally:
        arena_module.core = saved  # type: ignore[attr-defined]


def _bytes(arena: Arena) -> bytes:
    """The buffer but the last holder's pid (check() takes the lock on one side only) and the
    mutex."""
    data = bytearray(arena._bytes)
    data[D_HOLDER * 8 : D_HOLDER * 8 + 8] = bytes(8)
    data[MUTEX_WORD * 8 : MUTEX_WORD * 8 + MUTEX_BYTES] = bytes(MUTEX_BYTES)
    return bytes(data)


ADDRESS = st.one_of(st.integers(-10, 1 << 22), st.sampled_from([1.5, True, "x", None, 1 << 70]))
SIZE = st.one_of(st.integers(-2, 1 << 16), st.sampled_from([0, 2.0, "8", 1 << 70]))


class ArenaLockstep(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[Path] = []
        self.arenas: list[Arena] = []
        self.caches: list[list[ArenaCache]] = [[], []]
        self.addresses: list[int] = []

    @initialize(pages=st.integers(8, 160), max_order=st.integers(0, 10),
                page_size=st.sampled_from([64, 512, 4096]))
    def setup(self, pages: int, max_order: int, page_size: int) -> None:
        size = (pages + 24) * page_size + 40960
        for hide_core in (False, True):
            path = Path(f"/dev/shm/kmem-lockstep-{uuid.uuid4().hex}")
            self.paths.append(path)
            with _pure() if hide_core else contextlib.nullcontext():
                self.arenas.append(Arena.create(path, size=size, page_size=page_size,
                                                max_order=max_order, nr_caches=24,
                                                lock="mutex"))
        compiled, pure = self.arenas
        assert compiled._core is not None and pure._core is None

    def _both(self, call: Any) -> Any:
        results = [outcome(functools.partial(call, arena, side))
                   for side, arena in enumerate(self.arenas)]
        assert results[0] == results[1]
        kind, value = results[0]
        if kind == "ok" and isinstance(value, int) and not isinstance(value, bool):
            self.addresses.append(value)
        return results[0]

    @rule(size=SIZE)
    def alloc(self, size: Any) -> None:
        self._both(lambda arena, side: arena.alloc(size))

    @rule(order=st.one_of(st.integers(-1, 11), st.just(1.0)))
    def alloc_pages(self, order: Any) -> None:
        kind, pfn = self._both(lambda arena, side: arena.alloc_pages(order))
        if kind == "ok":
            self.addresses.append(pfn << self.arenas[0].page_shift)

    @rule(size=SIZE)
    def kmalloc(self, size: Any) -> None:
        self._both(lambda arena, side: arena.kmalloc(size))

    @rule(data=st.data(), size=st.sampled_from([8, 24, 40, 100, 600, 3000]))
    def cache_alloc(self, data: st.DataObject, size: int) -> None:
        name = f"c{size}"

        def call(arena: Arena, side: int) -> int:
            cache = arena.cache(name, size)
            self.caches[side].append(cache)
            return cache.alloc()

        self._both(call)

    def _address(self, data: st.DataObject) -> Any:
        use_known: bool = bool(self.addresses) and data.draw(st.booleans())
        if use_known:
            address = data.draw(st.sampled_from(self.addresses))
            return address + data.draw(st.sampled_from([0, 0, 0, 8, 40, 4096]))
        return data.draw(ADDRESS)

    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        address = self._address(data)
        self._both(lambda arena, side: arena.free(address))

    @rule(data=st.data())
    def kfree(self, data: st.DataObject) -> None:
        address = self._address(data)
        self._both(lambda arena, side: arena.kfree(address))

    @rule(data=st.data())
    def free_pages(self, data: st.DataObject) -> None:
        address = self._address(data)
        order = data.draw(st.integers(-1, 4))
        shift = self.arenas[0].page_shift

        def call(arena: Arena, side: int) -> None:
            pfn = address >> shift if isinstance(address, int) else address
            arena.free_pages(pfn, order)

        self._both(call)

    @rule(data=st.data())
    def cache_free(self, data: st.DataObject) -> None:
        if not self.caches[0]:
            return
        index = data.draw(st.integers(0, len(self.caches[0]) - 1))
        address = self._address(data)
        self._both(lambda arena, side: self.caches[side][index].free(address))

    @rule(data=st.data())
    def view(self, data: st.DataObject) -> None:
        address = self._address(data)
        self._both(lambda arena, side: len(arena.view(address)))

    @invariant()
    def agree(self) -> None:
        if not self.arenas:
            return
        compiled, pure = self.arenas
        assert _bytes(compiled) == _bytes(pure)
        compiled.check()

    def teardown(self) -> None:
        for arena in self.arenas:
            arena.close()
        for path in self.paths:
            path.unlink(missing_ok=True)


ArenaLockstep.TestCase.settings = settings(max_examples=FUZZ_EXAMPLES, stateful_step_count=50,
                                           deadline=None)
TestArenaLockstep = ArenaLockstep.TestCase


def _busy_arena(tmp_path: Path, name: str) -> tuple[Path, list[int]]:
    path = tmp_path / name
    with Arena.create(path, size=1 << 20, lock="mutex", nr_caches=8) as arena:
        rng = random.Random(7)
        cache = arena.cache("obj", 48)
        held = []
        for _ in range(200):
            choice = rng.randrange(3)
            held.append(arena.alloc(rng.randint(1, 9000)) if choice == 0 else
                        arena.kmalloc(rng.randint(1, 5000)) if choice == 1 else cache.alloc())
        return path, held


def _corrupt_call(arena: Arena, which: int, address: int) -> int | None:
    cache = ArenaCache(arena, 0, "obj", 48)
    if which == 0:
        arena.free(address)
    elif which == 1:
        arena.kfree(address)
    elif which == 4:
        cache.free(address)
    elif which == 2:
        return arena.alloc(address % 9000 + 1)
    elif which == 3:
        return arena.kmalloc(address % 5000 + 1)
    elif which == 5:
        return cache.alloc()
    else:
        return arena.alloc_pages(address % 4)
    return None


@given(damage=st.lists(st.tuples(st.integers(0, 1 << 17), st.integers(-(1 << 63), (1 << 63) - 1)),
                       min_size=1, max_size=6),
       calls=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 199)), min_size=1,
                      max_size=30))
@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
def test_corrupt_words_never_crash_the_compiled_paths(
    tmp_path_factory: pytest.TempPathFactory, damage: list[tuple[int, int]],
    calls: list[tuple[int, int]],
) -> None:
    """Words past the header overwritten at random (links, states, owners, the undo log):
    the fast paths stay inside the buffer, and fail as the pure paths do."""
    tmp = tmp_path_factory.mktemp("corrupt")
    path, held = _busy_arena(tmp, "a.bin")
    twin = tmp / "b.bin"
    data = bytearray(path.read_bytes())
    words = len(data) // 8
    for index, value in damage:
        index = HEADER_WORDS + index % (words - HEADER_WORDS)
        if MUTEX_WORD <= index < MUTEX_WORD + MUTEX_BYTES // 8:
            continue
        data[index * 8 : index * 8 + 8] = value.to_bytes(8, "little", signed=True)
    path.write_bytes(bytes(data))
    twin.write_bytes(bytes(data))
    compiled = Arena.open(path)
    with _pure():
        pure = Arena.open(twin)
    try:
        for which, pick in calls:
            address = held[pick]
            results = []
            results = [outcome(functools.partial(_corrupt_call, arena, which, address))
                       for arena in (compiled, pure)]
            # (the same error naming each its own file)
            assert repr(results[0]) == repr(results[1]).replace(str(twin), str(path))
    finally:
        compiled.close()
        pure.close()


def _valid_image() -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.bin"
        with Arena.create(path, size=256 << 10, lock="mutex", nr_caches=4,
                          page_size=1024) as arena:
            arena.cache("obj", 48).alloc()
            arena.kmalloc(100)
            arena.alloc(3000)
        return path.read_bytes()


_IMAGE = _valid_image() if arena_module.core is not None else b""  # type: ignore[attr-defined]


@given(damage=st.lists(st.tuples(st.integers(0, HEADER_WORDS - 1),
                                 st.one_of(st.integers(-(1 << 63), (1 << 63) - 1),
                                           st.integers(-64, 1 << 20))),
                       min_size=1, max_size=5),
       truncate=st.sampled_from([0, 0, 0, 8, 1024, 4096, 100000]),
       calls=st.lists(st.tuples(st.integers(0, 7), st.integers(-1, 1 << 20)), max_size=12))
@settings(max_examples=FUZZ_EXAMPLES * 4, deadline=None)
def test_the_compiled_header_reader_survives_any_header(
    damage: list[tuple[int, int]], truncate: int, calls: list[tuple[int, int]],
) -> None:
    """kmem._core.ArenaCore reads the header itself: fed corrupt or truncated headers
    directly (without Arena.open's checks in front), it refuses them with ValueError or runs
    its fast paths inside the buffer; every call it cannot make goes to the pure stand-in."""
    import mmap

    image = bytearray(_IMAGE[: len(_IMAGE) - truncate])
    for index, value in damage:
        if MUTEX_WORD <= index < MUTEX_WORD + MUTEX_BYTES // 8:
            continue  # the mutex is the kernel's and glibc's: not the reader's input
        image[index * 8 : index * 8 + 8] = value.to_bytes(8, "little", signed=True)
    buffer = mmap.mmap(-1, len(image))
    buffer[:] = bytes(image)
    pure_calls: list[str] = []

    def stand_in(name: str) -> Any:
        def call(*args: object) -> str:
            pure_calls.append(name)
            return "pure"
        return call

    names = ["alloc_pages", "free_pages", "alloc", "free", "kmalloc", "kfree", "cache_alloc",
             "cache_free"]
    try:
        fast = arena_module.core.ArenaCore(  # type: ignore[attr-defined,union-attr]
            buffer, **{f"pure_{name}": stand_in(name) for name in names})
    except ValueError as error:
        assert str(error).startswith("arena header: ")
    else:
        for which, value in calls:
            method = getattr(fast, names[which])
            result = method(value, value) if names[which] in ("free_pages", "cache_free") else (
                method(value))
            assert result is None or isinstance(result, (int, str))
        fast.release()
    buffer.close()
