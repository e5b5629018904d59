"""Allocated blocks are real bytes: anonymous, file-backed (persistent) or shared memory."""

from __future__ import annotations

from multiprocessing import shared_memory
from pathlib import Path

import pytest

from kmem import BuddyAllocator, InvalidArgumentError, PhysicalMemory


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
