"""Every error kmem raises is a KmemError, so callers can catch the family or one member.

An error is raised before any state changes: the allocator is left exactly as it was.
"""

from __future__ import annotations


class KmemError(Exception):
    """Base class of every error kmem raises on bad input or exhausted memory."""


class OutOfMemoryError(KmemError, MemoryError):
    """No free block is large enough (Linux: the allocation fails, the caller gets NULL)."""


class InvalidArgumentError(KmemError, ValueError):
    """An argument is out of range or malformed (order, size, page size, ...)."""


class InvalidTypeError(KmemError, TypeError):
    """An argument has the wrong type (a float order, a string size, ...)."""


class InvalidFreeError(KmemError, ValueError):
    """A free of an address or pfn that is not the start of an allocated block or object."""


class DoubleFreeError(InvalidFreeError):
    """A free of a block or object that is already free."""


class WrongOrderError(InvalidFreeError):
    """free_pages() was given an order other than the one the block was allocated with."""


def int_argument(value: object, what: str) -> int:
    """``value`` as an int, for an argument named ``what``: anything with ``__index__`` (an int,
    a numpy integer) but a bool, else an InvalidTypeError naming its type (or nan, whose type
    would not say what is wrong with it)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        shown = "nan" if isinstance(value, float) and value != value else type(value).__name__
        raise InvalidTypeError(f"{what} must be an int, not {shown}")
    return value.__index__()  # type: ignore[no-any-return]


def output_file_errno(path: str) -> int:
    """Why no file could be written at ``path``, as the errno that opening it for writing would
    raise (EISDIR: a folder or a name ending in a separator, ENOENT: no such folder, EACCES:
    not allowed), or 0: checked before long work, or before a tool (perf) that would move a
    folder aside to write its file there."""
    import errno
    import os

    if not path or path.endswith(os.sep) or os.path.isdir(path):
        return errno.EISDIR
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return errno.ENOENT
    if not os.access(folder, os.W_OK | os.X_OK) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        return errno.EACCES
    return 0
