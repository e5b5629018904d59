"""Physical memory: a contiguous run of page frames, backed by real bytes.

The bytes live in one buffer that the allocators never copy: an anonymous mmap by default
(MAP_NORESERVE, so a 64 GiB machine costs nothing until its pages are touched), a file (the
contents persist) or a ``multiprocessing.shared_memory`` segment (other processes see them).
Page frame ``pfn`` starts at byte address ``pfn * page_size``.
"""

from __future__ import annotations

import mmap
import os
from multiprocessing import shared_memory
from typing import Final

from kmem.errors import InvalidArgumentError, InvalidTypeError

# Python's mmap module does not export MAP_NORESERVE; this is its value on Linux.
_MAP_NORESERVE: Final = getattr(mmap, "MAP_NORESERVE", 0x4000)

Backing = str | os.PathLike[str] | shared_memory.SharedMemory | None


def check_page_size(page_size: object) -> int:
    """Return ``page_size`` if it is a power of two of at least 16 bytes, else raise."""
    if type(page_size) is not int:
        raise InvalidTypeError(f"page_size must be an int, not {type(page_size).__name__}")
    if page_size < 16 or page_size & (page_size - 1):
        raise InvalidArgumentError(f"page_size must be a power of two >= 16, got {page_size}")
    return page_size


class PhysicalMemory:
    """``nr_pages`` page frames of ``page_size`` bytes each, readable and writable.

    ``backing`` is None (anonymous memory), a file path (created or extended to ``size``) or a
    SharedMemory segment at least ``size`` bytes long.
    """

    def __init__(self, size: int, page_size: int = 4096, backing: Backing = None) -> None:
        page_size = check_page_size(page_size)
        if type(size) is not int:
            raise InvalidTypeError(f"memory size must be an int, not {type(size).__name__}")
        if size < page_size:
            raise InvalidArgumentError(
                f"memory size {size} is smaller than one page ({page_size} bytes)"
            )
        self.page_size: Final = page_size
        self.page_shift: Final = page_size.bit_length() - 1
        self.nr_pages: Final = size >> self.page_shift
        # A partial last page is not memory anyone can allocate: drop it, as the kernel does.
        self.size: Final = self.nr_pages << self.page_shift
        self._mmap: mmap.mmap | None = None
        self._shm: shared_memory.SharedMemory | None = None
        self.backing_kind: str
        if backing is None:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
            self._mmap = mmap.mmap(-1, self.size, flags=flags)
            self._buffer = memoryview(self._mmap)
            self.backing_kind = "anonymous"
        elif isinstance(backing, shared_memory.SharedMemory):
            if backing.size < self.size:
                raise InvalidArgumentError(
                    f"shared memory segment {backing.name!r} holds {backing.size} bytes,"
                    f" {self.size} needed"
                )
            self._shm = backing
            buffer = backing.buf
            assert buffer is not None  # None only after close()
            self._buffer = buffer[: self.size]
            self.backing_kind = f"shared_memory:{backing.name}"
        elif isinstance(backing, str | os.PathLike):
            fd = os.open(os.fspath(backing), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < self.size:
                    os.ftruncate(fd, self.size)
                self._mmap = mmap.mmap(fd, self.size, flags=mmap.MAP_SHARED)
            finally:
                os.close(fd)
            self._buffer = memoryview(self._mmap)
            self.backing_kind = f"file:{os.fspath(backing)}"
        else:
            raise InvalidTypeError(
                "backing must be None, a file path or a SharedMemory,"
                f" not {type(backing).__name__}"
            )

    def view(self, address: int, length: int) -> memoryview:
        """The bytes ``[address, address + length)``, without a copy."""
        if not 0 <= address <= address + length <= self.size:
            raise InvalidArgumentError(
                f"range [{address:#x}, {address + length:#x}) lies outside memory"
                f" [0, {self.size:#x})"
            )
        return self._buffer[address : address + length]

    def flush(self) -> None:
        """Write a file-backed memory's dirty pages to the file."""
        if self._mmap is not None:
            self._mmap.flush()

    def close(self) -> None:
        """Release the mapping (views taken from it must be released first)."""
        self._buffer.release()
        if self._mmap is not None:
            self._mmap.close()
            self._mmap = None
