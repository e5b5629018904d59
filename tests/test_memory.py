"""Allocated blocks are real bytes: anonymous, file-backed (persistent) or shared memory."""

from __future__ import annotations

from multiprocessing import shared_memory
from pathlib import Path

import pytest

from kmem import (
    BackingError,
    BuddyAllocator,
    HostMemoryError,
    InvalidArgumentError,
    InvalidTypeError,
    MemoryBusyError,
    MemoryClosedError,
    PhysicalMemory,
)


def test_view_is_exactly_the_block_and_writes_reach_memory() -> None:
    buddy = BuddyAllocator(64 * 4096)
    address = buddy.alloc(5000)  # order 1: 8192 bytes
    view = buddy.view(address)
    assert len(view) == 8192
    view[:] = b"x" * 8192
    other = buddy.alloc(4096)
    assert bytes(buddy.view(other)) == bytes(4096)  # untouched memory is zero
    assert bytes(buddy.memory.view(address, 8192)) == b"x" * 8192
    view.release()


def test_file_backed_memory_persists(tmp_path: Path) -> None:
    path = tmp_path / "phys.img"
    buddy = BuddyAllocator(16 * 4096, backing=str(path))
    address = buddy.alloc(4096)
    with buddy.view(address) as view:
        view[:11] = b"persistent!"
    buddy.memory.flush()
    buddy.memory.close()
    assert path.stat().st_size == 16 * 4096
    reopened = PhysicalMemory(16 * 4096, backing=path)
    assert bytes(reopened.view(address, 11)) == b"persistent!"
    reopened.close()


def test_shared_memory_backing_is_seen_by_another_mapping() -> None:
    segment = shared_memory.SharedMemory(create=True, size=32 * 4096)
    try:
        buddy = BuddyAllocator(memory=PhysicalMemory(32 * 4096, backing=segment))
        address = buddy.alloc(8192)
        with buddy.view(address) as view:
            view[:6] = b"shared"
        peer = shared_memory.SharedMemory(name=segment.name)
        assert peer.buf is not None
        assert bytes(peer.buf[address : address + 6]) == b"shared"
        peer.close()
        buddy.memory.close()
    finally:
        segment.close()
        segment.unlink()


def test_shared_memory_too_small_is_refused() -> None:
    segment = shared_memory.SharedMemory(create=True, size=4096)
    try:
        with pytest.raises(InvalidArgumentError, match="holds"):
            PhysicalMemory(8 * 4096, backing=segment)
    finally:
        segment.close()
        segment.unlink()


def test_partial_last_page_is_not_memory() -> None:
    memory = PhysicalMemory(3 * 4096 + 100)
    assert memory.nr_pages == 3
    assert memory.size == 3 * 4096
    with pytest.raises(InvalidArgumentError, match="outside memory"):
        memory.view(3 * 4096, 1)


@pytest.mark.parametrize("bad", [1.5, None, "0", float("nan"), True, False, [0]])
def test_view_of_a_bad_address_or_length_is_a_type_error(bad: object) -> None:
    memory = PhysicalMemory(1 << 16)
    with pytest.raises(InvalidTypeError, match="address must be an int"):
        memory.view(bad, 16)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="length must be an int"):
        memory.view(0, bad)  # type: ignore[arg-type]


def test_view_of_a_negative_length_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="outside memory"):
        PhysicalMemory(1 << 16).view(100, -10)


def test_close_with_live_views_changes_nothing_then_closes_once_released() -> None:
    memory = PhysicalMemory(1 << 16)
    memory.view(0, 4)[:] = b"kmem"
    view = memory.view(0, 16)
    with pytest.raises(MemoryBusyError, match="views of its bytes are still alive"):
        memory.close()
    assert not memory.closed
    assert bytes(memory.view(0, 4)) == b"kmem"  # still open, every byte as it was
    view.release()
    memory.close()
    assert memory.closed
    memory.close()  # a second close does nothing
    with pytest.raises(MemoryClosedError):
        memory.view(0, 4)
    with pytest.raises(MemoryClosedError):
        memory.flush()


def test_allocators_refuse_to_allocate_on_closed_memory() -> None:
    memory = PhysicalMemory(1 << 20)
    buddy = BuddyAllocator(memory=memory)
    memory.close()
    with pytest.raises(MemoryClosedError):
        buddy.alloc_pages(0)
    assert buddy.nr_free_pages == 256


@pytest.mark.parametrize("where", ["dir", "/dev/null", "/proc/version", "missing folder"])
def test_a_backing_that_cannot_hold_memory_is_a_backing_error(tmp_path: Path,
                                                              where: str) -> None:
    path = {"dir": str(tmp_path), "missing folder": str(tmp_path / "no" / "x.img")}.get(
        where, where)
    with pytest.raises(BackingError, match="backing file"):
        PhysicalMemory(1 << 16, backing=path)
    assert sorted(tmp_path.iterdir()) == []  # nothing created on the way


def test_a_failed_mapping_leaves_no_file_behind(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import mmap

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", fail)
    with pytest.raises(BackingError, match="Cannot allocate memory"):
        PhysicalMemory(1 << 16, backing=str(tmp_path / "new.img"))
    assert sorted(tmp_path.iterdir()) == []
    old = tmp_path / "old.img"
    old.write_bytes(b"x" * 100)
    with pytest.raises(BackingError):
        PhysicalMemory(1 << 16, backing=str(old))
    assert old.read_bytes() == b"x" * 100  # shrunk back to what it was


def test_a_size_beyond_the_address_space_is_a_host_memory_error() -> None:
    with pytest.raises(HostMemoryError, match="address space"):
        PhysicalMemory(2**100)
    with pytest.raises(InvalidTypeError):
        PhysicalMemory(True)


def test_a_closed_shared_memory_segment_is_a_backing_error() -> None:
    segment = shared_memory.SharedMemory(create=True, size=1 << 16)
    segment.close()
    try:
        with pytest.raises(BackingError, match="closed"):
            PhysicalMemory(1 << 16, backing=segment)
    finally:
        segment.unlink()


@pytest.mark.parametrize("size", ["64K", 65536.0, None])
def test_a_memory_size_that_is_not_an_int_is_a_type_error(size: object) -> None:
    with pytest.raises(InvalidTypeError, match="memory size must be an int"):
        PhysicalMemory(size)  # type: ignore[arg-type]


def test_a_memory_smaller_than_one_page_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="memory size 4095 is smaller than one page"
                                                   r" \(4096 bytes\)"):
        PhysicalMemory(4095)
    assert PhysicalMemory(4096).nr_pages == 1


def test_a_backing_path_of_bytes_is_a_type_error(tmp_path: Path) -> None:
    class BytesPath:
        def __fspath__(self) -> bytes:
            return bytes(tmp_path / "x.img")

    with pytest.raises(InvalidTypeError, match="backing path must be a str, not bytes"):
        PhysicalMemory(1 << 16, backing=BytesPath())  # type: ignore[arg-type]
    with pytest.raises(InvalidTypeError, match="backing must be None, a file path or a"):
        PhysicalMemory(1 << 16, backing=3)  # type: ignore[arg-type]
    assert sorted(tmp_path.iterdir()) == []


def test_a_backing_path_the_host_cannot_open_is_a_backing_error(tmp_path: Path) -> None:
    loop = tmp_path / "loop.img"
    loop.symlink_to(loop)  # stat fails: too many levels of symbolic links
    with pytest.raises(BackingError, match=r"loop\.img'.*symbolic links"):
        PhysicalMemory(1 << 16, backing=str(loop))
    dangling = tmp_path / "dangling.img"
    dangling.symlink_to(tmp_path / "no" / "such.img")  # open cannot create its target
    with pytest.raises(BackingError, match=r"dangling\.img'.*No such file or directory"):
        PhysicalMemory(1 << 16, backing=str(dangling))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.img", "loop.img"]


def test_anonymous_memory_the_host_cannot_map_is_a_host_memory_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mmap

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(mmap, "mmap", fail)
    with pytest.raises(HostMemoryError, match="cannot map 65536 bytes of anonymous memory:"
                                              " Cannot allocate memory"):
        PhysicalMemory(1 << 16)


def test_on_close_takes_only_a_bound_method_and_does_not_keep_its_object_alive() -> None:
    memory = PhysicalMemory(1 << 16)
    with pytest.raises(InvalidTypeError, match="callback must be a bound method, not function"):
        memory.on_close(lambda: None)
    with pytest.raises(InvalidTypeError, match="not builtin_function_or_method"):
        memory.on_close([None].clear)  # (bound, but a builtin's: no weak reference to it)
    assert memory._on_close == []  # (nothing registered by the refused calls)
    calls = []

    class Watcher:
        def closed(self) -> None:
            calls.append(self)

    kept, dropped = Watcher(), Watcher()
    memory.on_close(kept.closed)
    memory.on_close(dropped.closed)
    del dropped
    memory.close()
    assert calls == [kept]  # the dropped one was not kept alive to be called


def test_flush_of_a_shared_memory_backing_does_nothing_until_closed() -> None:
    segment = shared_memory.SharedMemory(create=True, size=1 << 16)
    try:
        memory = PhysicalMemory(1 << 16, backing=segment)
        memory.view(0, 4)[:] = b"kmem"
        memory.flush()  # nothing to write back: the segment is the memory
        assert segment.buf is not None and bytes(segment.buf[:4]) == b"kmem"
        memory.close()
        with pytest.raises(MemoryClosedError, match="cannot flush"):
            memory.flush()
    finally:
        segment.close()
        segment.unlink()


def test_a_host_without_meminfo_has_no_memory_available_to_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from kmem.page import mem_map

    def no_meminfo(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(mem_map, "open", no_meminfo, raising=False)
    assert mem_map.host_memory_available() is None
    assert BuddyAllocator(1 << 20).nr_free_pages == 256  # and memory is built without it
