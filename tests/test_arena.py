"""Arena in one process: the API, reopening, bad input, views and close, and a stateful test
of one arena against an in-process BuddyAllocator plus a plain slab model (tests/arena_model.py):
the same addresses and the same nr_free after every step."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from arena_model import ArenaModel
from kmem import (
    Arena,
    ArenaBusyError,
    ArenaClosedError,
    ArenaCorruptError,
    ArenaExistsError,
    ArenaTruncatedError,
    ArenaVersionError,
    BuddyAllocator,
    CacheMismatchError,
    DoubleFreeError,
    InvalidArgumentError,
    InvalidFreeError,
    KmemError,
    NotAnArenaError,
    OutOfMemoryError,
    WrongOrderError,
)
from kmem.arena.arena import H_CHECKSUM, H_VERSION, MAGIC


def _snapshot(arena: Arena) -> tuple[object, ...]:
    return (arena.blocks(), arena.nr_free, arena.slabinfo(), arena.stats())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_issue_example_reopens_intact(tmp_path: Path) -> None:
    path = tmp_path / "heap.bin"
    with Arena.create(path, size=8 << 20) as arena:
        a = arena.alloc(21 * 1024)
        assert len(arena.view(a)) == 32 * 1024  # rounded as the buddy rounds
        arena.view(a)[:5] = b"hello"
        p = arena.kmalloc(100)
        arena.kfree(p)
        inode = arena.cache("inode", 600)
        obj = inode.alloc()
        arena.view(obj)[:3] = b"ino"
        before = _snapshot(arena)
    with Arena.open(path) as arena:
        assert bytes(arena.view(a)[:5]) == b"hello"
        assert bytes(arena.view(obj)[:3]) == b"ino"
        assert _snapshot(arena)[:3] == before[:3]
        inode = arena.cache("inode", 600)  # found again by name
        assert inode.alloc() != obj  # the live object is not handed out again
        arena.check()


def test_addresses_equal_an_in_process_buddy_allocator(tmp_path: Path) -> None:
    with Arena.create(tmp_path / "a", size=1 << 20, max_order=5) as arena:
        buddy = BuddyAllocator(arena.nr_pages * arena.page_size, max_order=arena.max_order)
        assert arena.nr_free == buddy.nr_free
        held = []
        for size in (4096, 9000, 100, 70000, 4096, 30000):
            held.append(arena.alloc(size))
            assert held[-1] == buddy.alloc(size)
            assert arena.nr_free == buddy.nr_free
        for address in held[::2]:
            arena.free(address)
            buddy.free(address)
            assert arena.nr_free == buddy.nr_free


def test_kmalloc_uses_linux_classes_and_pages_above_two_pages(tmp_path: Path) -> None:
    with Arena.create(tmp_path / "a", size=4 << 20) as arena:
        small = arena.kmalloc(100)
        large = arena.kmalloc(3 * 4096)
        assert len(arena.view(small)) == 128
        assert len(arena.view(large)) == 4 * 4096
        assert [row.name for row in arena.slabinfo_rows()] == ["kmalloc-128"]
        with pytest.raises(InvalidFreeError, match="kmalloc"):
            arena.free(large)
        with pytest.raises(InvalidFreeError, match="slab page"):
            arena.free(small & ~4095)
        arena.kfree(large)
        arena.kfree(small)
        with pytest.raises(DoubleFreeError):
            arena.kfree(small)
        block = arena.alloc(4096)
        with pytest.raises(InvalidFreeError, match="alloc"):
            arena.kfree(block)
        arena.check()


def test_bad_frees_raise_the_buddy_errors_and_change_nothing(tmp_path: Path) -> None:
    with Arena.create(tmp_path / "a", size=1 << 20) as arena:
        block = arena.alloc(8192)
        other = arena.alloc_pages(0)
        cache = arena.cache("thing", 40)
        obj = cache.alloc()
        before = _snapshot(arena)
        cases: list[tuple[type[KmemError], object]] = [
            (InvalidFreeError, lambda: arena.free(block + 4096)),
            (InvalidFreeError, lambda: arena.free(block + 1)),
            (InvalidFreeError, lambda: arena.free(1 << 40)),
            (WrongOrderError, lambda: arena.free_pages(block >> 12, 0)),
            (InvalidFreeError, lambda: cache.free(obj + 8)),
            (InvalidFreeError, lambda: cache.free(other << 12)),
            (InvalidFreeError, lambda: arena.view(block + 4096)),
            (InvalidArgumentError, lambda: arena.alloc(0)),
            (InvalidArgumentError, lambda: arena.alloc_pages(11)),
            (InvalidArgumentError, lambda: arena.cache("", 8)),
            (CacheMismatchError, lambda: arena.cache("thing", 41)),
        ]
        for error, call in cases:
            with pytest.raises(error):
                call()  # type: ignore[operator]
            assert _snapshot(arena) == before
        arena.free(block)
        with pytest.raises(DoubleFreeError):
            arena.free(block)
        second = cache.alloc()
        cache.free(obj)
        after = _snapshot(arena)
        for call in (lambda: cache.free(obj), lambda: arena.kfree(obj),
                     lambda: cache.free(second + 40)):  # a slot never handed out
            with pytest.raises(DoubleFreeError):
                call()
            assert _snapshot(arena) == after


def test_out_of_memory_changes_nothing_but_the_failure_count(tmp_path: Path) -> None:
    with Arena.create(tmp_path / "a", size=256 << 10, max_order=3) as arena:
        while True:
            try:
                arena.alloc_pages(3)
            except OutOfMemoryError:
                break
        blocks = arena.blocks()
        with pytest.raises(OutOfMemoryError):
            arena.alloc_pages(3)
        assert arena.blocks() == blocks
        assert arena.stats().failures == 2
        arena.check()


@pytest.mark.parametrize(
    ("damage", "error", "message"),
    [
        (lambda b: b"PK\x03\x04" + b[4:], NotAnArenaError, "not a kmem arena"),
        (lambda b: b[:100], ArenaTruncatedError, "truncated"),
        (lambda b: b[: len(b) // 2], ArenaTruncatedError, "truncated"),
        (lambda b: b[:24] + b"\x01" + b[25:], ArenaCorruptError, "checksum"),
        (lambda b: b"", NotAnArenaError, "not a kmem arena"),
    ],
)
def test_bad_files_are_refused_untouched(tmp_path: Path, damage: object, error: type,
                                         message: str) -> None:
    path = tmp_path / "a"
    Arena.create(path, size=1 << 20).close()
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    digest = _digest(path)
    with pytest.raises(error, match=message):
        Arena.open(path)
    assert _digest(path) == digest


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    import zlib

    path = tmp_path / "a"
    Arena.create(path, size=1 << 20).close()
    data = bytearray(path.read_bytes())
    data[H_VERSION * 8 : H_VERSION * 8 + 8] = (2).to_bytes(8, "little")
    crc = zlib.crc32(bytes(data[: 15 * 8]))
    data[H_CHECKSUM * 8 : H_CHECKSUM * 8 + 8] = crc.to_bytes(8, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ArenaVersionError, match="version 2"):
        Arena.open(path)


def test_a_plain_file_is_not_an_arena(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 1000)
    with pytest.raises(NotAnArenaError):
        Arena.open(path)
    assert path.read_text() == "hello " * 1000
    with pytest.raises(ArenaExistsError):
        Arena.create(path, size=1 << 20)


def test_close_releases_views_and_use_after_close_is_clear(tmp_path: Path) -> None:
    arena = Arena.create(tmp_path / "a", size=1 << 20)
    view = arena.view(arena.alloc(4096))
    cache = arena.cache("c", 64)
    arena.close()
    with pytest.raises(ValueError, match="released"):
        view[0]
    for call in (lambda: arena.alloc(1), lambda: arena.stats(), cache.alloc, arena.check):
        with pytest.raises(ArenaClosedError, match="closed"):
            call()
    arena.close()  # idempotent


def test_close_names_views_still_exported(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    arena = Arena.create(tmp_path / "a", size=1 << 20)
    address = arena.alloc(4096)
    array = numpy.frombuffer(arena.view(address), dtype=numpy.uint32)
    array[:] = 7
    with pytest.raises(ArenaBusyError, match=f"{address:#x}"):
        arena.close()
    assert not arena.closed
    del array
    arena.close()
    with Arena.open(tmp_path / "a") as again:
        assert numpy.frombuffer(again.view(address), dtype=numpy.uint32)[5] == 7


def test_numpy_over_a_view_sees_the_arena_bytes(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    with Arena.create(tmp_path / "a", size=1 << 20) as arena:
        address = arena.alloc(1000 * 8)
        values = numpy.frombuffer(arena.view(address), dtype=numpy.float64)[:1000]
        values[:] = numpy.arange(1000)
        assert bytes(arena.view(address)[8:16]) == numpy.float64(1).tobytes()
        del values


def test_shared_memory_arena_attach_sees_one_allocator() -> None:
    name = f"kmem-test-{uuid.uuid4().hex[:12]}"
    arena = Arena.create_shared(name, size=1 << 20)
    try:
        other = Arena.attach(name)
        first = arena.alloc(4096)
        second = other.alloc(4096)
        assert first != second
        other.view(second)[:2] = b"hi"
        assert bytes(arena.view(second)[:2]) == b"hi"
        assert arena.nr_free == other.nr_free
        other.close()
    finally:
        arena.close()
        arena.unlink()
    assert not os.path.exists(f"/dev/shm/{name}")


def test_a_forked_child_uses_its_own_lock(tmp_path: Path) -> None:
    arena = Arena.create(tmp_path / "a", size=1 << 20)
    pid = os.fork()
    if pid == 0:  # the child: the inherited arena works and sees the parent's allocator
        code = 0
        try:
            arena.view(arena.alloc(4096))[:1] = b"c"
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [kind for _, _, kind in arena.blocks()].count("allocated") == 1
    arena.check()
    arena.close()


def test_magic_is_written_last_so_a_half_made_file_is_no_arena() -> None:
    assert MAGIC.to_bytes(8, "little", signed=True) == b"KMEMAREN"


class ArenaMachine(RuleBasedStateMachine):
    """One arena driven beside an in-process BuddyAllocator and the plain slab model."""

    def __init__(self) -> None:
        super().__init__()
        self.path = Path(f"/dev/shm/kmem-stateful-{uuid.uuid4().hex}")
        self.arena: Arena | None = None
        self.model: ArenaModel | None = None
        self.blocks: list[int] = []
        self.kmallocs: list[int] = []
        self.objects: list[tuple[str, int]] = []

    @initialize(pages=st.integers(1, 200), max_order=st.integers(0, 10),
                page_size=st.sampled_from([64, 256, 4096]))
    def setup(self, pages: int, max_order: int, page_size: int) -> None:
        arena = Arena.create(self.path, size=(pages + 24) * page_size + 65536,
                             page_size=page_size, max_order=max_order, nr_caches=32)
        self.arena = arena
        self.model = ArenaModel(arena.nr_pages, page_size, max_order)

    @rule(size=st.integers(1, 1 << 16))
    def alloc(self, size: int) -> None:
        assert self.arena is not None and self.model is not None
        try:
            expected: int | None = self.model.buddy.alloc(size)
        except OutOfMemoryError:
            expected = None
        except InvalidArgumentError:
            with pytest.raises(InvalidArgumentError):
                self.arena.alloc(size)
            return
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.arena.alloc(size)
        else:
            assert self.arena.alloc(size) == expected
            self.blocks.append(expected)

    @precondition(lambda self: self.blocks)
    @rule(index=st.integers(0, 1 << 30))
    def free(self, index: int) -> None:
        assert self.arena is not None and self.model is not None
        address = self.blocks.pop(index % len(self.blocks))
        self.arena.free(address)
        self.model.buddy.free(address)

    @rule(name=st.sampled_from(["a", "b"]), size=st.sampled_from([8, 24, 100, 600]))
    def cache_alloc(self, name: str, size: int) -> None:
        assert self.arena is not None and self.model is not None
        name = f"{name}-{size}"
        if size > self.arena.page_size << min(3, self.model.limit):
            return
        cache = self.model.cache(name, size)
        expected = self.model.cache_alloc(cache)
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.arena.cache(name, size).alloc()
            return
        assert self.arena.cache(name, size).alloc() == expected
        self.objects.append((name, expected))

    @precondition(lambda self: self.objects)
    @rule(index=st.integers(0, 1 << 30))
    def cache_free(self, index: int) -> None:
        assert self.arena is not None and self.model is not None
        name, address = self.objects.pop(index % len(self.objects))
        cache = self.model.caches[name]
        self.model.cache_free(cache, address)
        self.arena.cache(name, cache.object_size).free(address)

    @rule(size=st.integers(1, 3 << 12))
    def kmalloc(self, size: int) -> None:
        assert self.arena is not None and self.model is not None
        known = set(self.model.caches)
        cache = self.model.kmalloc_cache(size)
        if cache is None:
            try:
                expected: int | None = self.model.buddy.alloc(size)
            except OutOfMemoryError:
                expected = None
            except InvalidArgumentError:
                with pytest.raises(InvalidArgumentError):
                    self.arena.kmalloc(size)
                return
        else:
            expected = self.model.cache_alloc(cache)
        if expected is None:
            with pytest.raises(OutOfMemoryError):
                self.arena.kmalloc(size)
            # All or nothing: the kmalloc cache this call would have created is not kept.
            for name in set(self.model.caches) - known:
                del self.model.caches[name]
            return
        assert self.arena.kmalloc(size) == expected
        self.kmallocs.append(expected)
        if cache is None:
            self.model.large.add(expected)

    @precondition(lambda self: self.kmallocs)
    @rule(index=st.integers(0, 1 << 30))
    def kfree(self, index: int) -> None:
        assert self.arena is not None and self.model is not None
        address = self.kmallocs.pop(index % len(self.kmallocs))
        self.arena.kfree(address)
        if address in self.model.large:
            self.model.large.discard(address)
            self.model.buddy.free(address)
            return
        owner = next(c for c in self.model.caches.values()
                     if any(s.pfn <= address // self.arena.page_size < s.pfn + (1 << c.order)
                            for s in c.slabs.values()))
        self.model.cache_free(owner, address)

    @rule()
    def reopen(self) -> None:
        assert self.arena is not None
        self.arena.close()
        self.arena = Arena.open(self.path)

    @invariant()
    def agrees(self) -> None:
        if self.arena is None or self.model is None:
            return
        assert self.arena.nr_free == self.model.buddy.nr_free
        active = {row.name: row.active_objs for row in self.arena.slabinfo_rows()}
        assert active == {name: n for name, n in self.model.active().items()
                          if name in active} and set(active) == set(self.model.caches)
        self.arena.check()

    def teardown(self) -> None:
        if self.arena is not None:
            self.arena.close()
        self.path.unlink(missing_ok=True)


ArenaMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40,
                                          deadline=None)
test_arena_agrees_with_the_in_process_allocators = ArenaMachine.TestCase


def test_cli_info_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kmem.cli.main import main

    path = tmp_path / "heap.bin"
    with Arena.create(path, size=2 << 20) as arena:
        arena.cache("inode", 600).alloc()
        arena.alloc(5000)
        buddyinfo = arena.buddyinfo()
    assert main(["arena", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "format_version     1" in out and buddyinfo in out
    assert "inode                  1     13    600" in out
    assert main(["arena", "check", str(path)]) == 0
    assert "consistent" in capsys.readouterr().out


def test_cli_refuses_bad_arenas_with_status_2(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from kmem.cli.main import main

    path = tmp_path / "heap.bin"
    Arena.create(path, size=2 << 20).close()
    data = bytearray(path.read_bytes())
    data[50] ^= 1  # inside the static header
    path.write_bytes(bytes(data))
    assert main(["arena", "check", str(path)]) == 2
    assert capsys.readouterr().err == f"kmem arena: {path}: corrupt header (checksum mismatch)\n"
    assert main(["arena", "info", f"kmem-none-{uuid.uuid4().hex[:8]}"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_check_names_a_broken_invariant(tmp_path: Path) -> None:
    from kmem.arena.arena import C_STATE

    path = tmp_path / "heap.bin"
    with Arena.create(path, size=2 << 20) as arena:
        pfn = arena.alloc_pages(0)
        state_word = arena._col[C_STATE] + pfn
    with path.open("r+b") as file:  # forge: the allocated page claims to be free
        file.seek(state_word * 8)
        file.write((1 << 8).to_bytes(8, "little"))
    with Arena.open(path) as arena, pytest.raises(ArenaCorruptError, match="check: free buddies"):
        arena.check()


@pytest.mark.parametrize("lock", ["mutex", "flock"])
def test_threads_of_one_process_share_an_arena(tmp_path: Path, lock: str) -> None:
    import threading

    arena = Arena.create(tmp_path / "a", size=4 << 20, lock=lock)
    cache = arena.cache("obj", 72)
    errors: list[str] = []

    def work(seed: int) -> None:
        import random

        rng = random.Random(seed)
        held: list[tuple[str, int, bytes]] = []
        for seq in range(1500):
            if held and rng.random() < 0.5:
                how, address, stamp = held.pop(rng.randrange(len(held)))
                if bytes(arena.view(address)[:8]) != stamp:
                    errors.append(f"{how} {address:#x} overwritten")
                {"alloc": arena.free, "kmalloc": arena.kfree, "cache": cache.free}[how](address)
                continue
            how = rng.choice(["alloc", "kmalloc", "cache"])
            address = (arena.alloc(rng.randint(1, 9000)) if how == "alloc" else
                       arena.kmalloc(rng.randint(8, 3000)) if how == "kmalloc" else cache.alloc())
            stamp = (seed << 32 | seq).to_bytes(8, "little")
            arena.view(address)[:8] = stamp
            held.append((how, address, stamp))
        for how, address, _ in held:
            {"alloc": arena.free, "kmalloc": arena.kfree, "cache": cache.free}[how](address)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    arena.check()
    assert arena.nr_free_pages == arena.nr_pages
    arena.close()


def test_cli_reads_a_shared_memory_arena_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from kmem.cli.main import main

    name = f"kmem-cli-{uuid.uuid4().hex[:10]}"
    arena = Arena.create_shared(name, size=1 << 20)
    try:
        arena.kmalloc(3000)
        assert main(["arena", "check", name]) == 0
        assert capsys.readouterr().out.startswith(f"shm:{name}: consistent")
        assert main(["arena", "info", name]) == 0
        assert "kmalloc-4k             1" in capsys.readouterr().out
    finally:
        arena.close()
        arena.unlink()
