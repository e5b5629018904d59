"""Physical memory: a contiguous run of page frames, backed by real bytes.

The bytes live in one buffer that the allocators never copy: an anonymous mmap by default
(MAP_NORESERVE, so a 64 GiB machine costs nothing until its pages are touched), a file (the
contents persist) or a ``multiprocessing.shared_memory`` segment (other processes see them).
Page frame ``pfn`` starts at byte address ``pfn * page_size``.

Bad input raises a specific KmemError with nothing changed: a backing that cannot hold the
memory (a directory, a device, /proc/..., a missing folder) is a BackingError, and no file is
left created or grown; a size beyond the address space a HostMemoryError. close() either
closes everything or, while views of the bytes are alive, nothing (MemoryBusyError); once
closed, view() and the allocators built on the memory raise MemoryClosedError.
"""

from __future__ import annotations

import mmap
import os
import stat
import sys
import types
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeAlias, TypeGuard

from kmem.errors import InvalidArgumentError, InvalidTypeError, int_argument
from kmem.page.errors import BackingError, HostMemoryError, MemoryBusyError, MemoryClosedError

# Python's mmap module does not export MAP_NORESERVE; this is its value on Linux.
_MAP_NORESERVE: Final = getattr(mmap, "MAP_NORESERVE", 0x4000)

# x86-64 and arm64 give a process 47 bits of user address space: no mapping is larger.
MAX_MEMORY_BYTES: Final = 1 << 47

if TYPE_CHECKING:
    # (imported only where a segment is made: multiprocessing is a tenth of kmem stat's start)
    from multiprocessing import shared_memory

    Backing: TypeAlias = str | os.PathLike[str] | shared_memory.SharedMemory | None


def _is_shared_memory(backing: object) -> TypeGuard[shared_memory.SharedMemory]:
    """Whether ``backing`` is a SharedMemory segment (there is none before its module is
    imported, so this never imports it)."""
    module = sys.modules.get("multiprocessing.shared_memory")
    return module is not None and isinstance(backing, module.SharedMemory)


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
        if size > MAX_MEMORY_BYTES:
            raise HostMemoryError(
                f"memory of {size} bytes is larger than the {MAX_MEMORY_BYTES} bytes (128 TiB)"
                " of address space a process can map"
            )
        self.page_size: Final = page_size
        self.page_shift: Final = page_size.bit_length() - 1
        self.nr_pages: Final = size >> self.page_shift
        # A partial last page is not memory anyone can allocate: drop it, as the kernel does.
        self.size: Final = self.nr_pages << self.page_shift
        self._mmap: mmap.mmap | None = None
        self._shm: shared_memory.SharedMemory | None = None
        self.closed = False
        # What to tell when the memory closes: the allocators built on it (weakly held).
        self._on_close: list[weakref.WeakMethod[Callable[[], None]]] = []
        self.backing_kind: str
        if backing is None:
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE
            try:
                self._mmap = mmap.mmap(-1, self.size, flags=flags)
            except OSError as error:
                raise HostMemoryError(
                    f"cannot map {self.size} bytes of anonymous memory: {error.strerror}"
                ) from None
            self._buffer = memoryview(self._mmap)
            self.backing_kind = "anonymous"
        elif _is_shared_memory(backing):
            buffer = backing.buf
            if buffer is None:
                raise BackingError(f"shared memory segment {backing.name!r} is closed")
            if backing.size < self.size:
                raise BackingError(
                    f"shared memory segment {backing.name!r} holds {backing.size} bytes,"
                    f" {self.size} needed"
                )
            self._shm = backing
            self._buffer = buffer[: self.size]
            self.backing_kind = f"shared_memory:{backing.name}"
        elif isinstance(backing, str | os.PathLike):
            path = os.fspath(backing)
            if not isinstance(path, str):
                raise InvalidTypeError(f"backing path must be a str, not {type(path).__name__}")
            self._mmap = _map_file(path, self.size)
            self._buffer = memoryview(self._mmap)
            self.backing_kind = f"file:{path}"
        else:
            raise InvalidTypeError(
                "backing must be None, a file path or a SharedMemory,"
                f" not {type(backing).__name__}"
            )

    def view(self, address: int, length: int) -> memoryview:
        """The bytes ``[address, address + length)``, without a copy."""
        if address.__class__ is not int or length.__class__ is not int:
            address = int_argument(address, "address")
            length = int_argument(length, "length")
        if length < 0 or not 0 <= address <= address + length <= self.size:
            raise InvalidArgumentError(
                f"range [{address:#x}, {address + length:#x}) lies outside memory"
                f" [0, {self.size:#x})"
            )
        try:
            return self._buffer[address : address + length]
        except ValueError:  # a released buffer: the memory was closed
            raise self._closed_error("read") from None

    def _closed_error(self, what: str) -> MemoryClosedError:
        return MemoryClosedError(f"cannot {what}: the physical memory was closed")

    def on_close(self, callback: Callable[[], None]) -> None:
        """Call the bound method ``callback`` when the memory closes (the allocators on it
        switch to refusing every change); held weakly, so it does not keep its object alive."""
        # (a builtin's bound method, e.g. list.append, has __self__ but no weak reference)
        if not isinstance(callback, types.MethodType):
            raise InvalidTypeError(
                f"callback must be a bound method, not {type(callback).__name__}")
        self._on_close.append(weakref.WeakMethod(callback))

    def flush(self) -> None:
        """Write a file-backed memory's dirty pages to the file."""
        if self.closed:
            raise self._closed_error("flush")
        if self._mmap is not None:
            self._mmap.flush()

    def close(self) -> None:
        """Release the mapping (views taken from it must be released first).

        All or nothing: while a view of the bytes is alive, MemoryBusyError and the memory
        stays open exactly as it was. Closing a closed memory does nothing.
        """
        if self.closed:
            return
        busy = MemoryBusyError(
            "cannot close the physical memory: views of its bytes are still alive"
            " (release them first)"
        )
        try:
            self._buffer.release()
        except BufferError:  # pragma: no cover (only a buffer of the private _buffer itself)
            raise busy from None  # nothing released
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # slices of the view keep the mapping exported: undo
                self._buffer = memoryview(self._mmap)
                raise busy from None
            self._mmap = None
        self.closed = True
        for ref in self._on_close:
            callback = ref()
            if callback is not None:
                callback()
        self._on_close.clear()


def _map_file(path: str, size: int) -> mmap.mmap:
    """A shared mapping of ``size`` bytes of the regular file at ``path``, created or grown as
    needed; on any failure a BackingError, with the file removed or shrunk back."""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise BackingError(f"backing file {path!r}: folder {folder!r} does not exist")
    try:
        existing = os.stat(path)
    except FileNotFoundError:
        existing = None
    except OSError as error:
        raise BackingError(f"backing file {path!r}: {error.strerror}") from None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        kind = "a directory" if stat.S_ISDIR(existing.st_mode) else "not a regular file"
        raise BackingError(f"backing file {path!r} is {kind}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise BackingError(f"backing file {path!r}: {error.strerror}") from None
    original = None if existing is None else existing.st_size
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # pragma: no cover (replaced since the stat above)
            raise BackingError(f"backing file {path!r} is not a regular file")
        if info.st_size < size:
            os.ftruncate(fd, size)
            if os.fstat(fd).st_size < size:  # /proc and /sys files ignore the truncate
                raise BackingError(f"backing file {path!r} cannot grow to {size} bytes")
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    except BaseException as error:
        # Leave the file as it was found: removed if it was created, else at its old size.
        if original is None:
            os.unlink(path)
        elif os.fstat(fd).st_size != original:
            os.ftruncate(fd, original)
        if isinstance(error, BackingError) or not isinstance(error, OSError | ValueError):
            raise
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise BackingError(f"backing file {path!r} cannot be mapped: {reason}") from None
    finally:
        os.close(fd)
