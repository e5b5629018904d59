"""Counters kept in a buffer, read and written as attributes (the page machine's hot fields).

Design: the zone, pcp and machine fields that an order-0 allocation or free touches (free
pages, watermarks, pcp count/high/batch, the machine's allocation count, ...) live in
``array('q')`` buffers the page machine owns, one block of int64 values per zone and per pcp.
The compiled core (csrc/pcp.c) reads and writes those buffers directly; the pure code reads and
writes the same values through these descriptors (``zone.free_pages``) or, on its hot paths,
by index (``self._values[FREE_PAGES]``). Both paths therefore change the same memory: nothing is
copied between them, and there is no second state to keep in step.

An owner class declares ``_values`` (a memoryview of 'q' over its block, or an array('q')) and
its fields as ``Counter(index)`` / ``Flag(index)`` class attributes.
"""

from __future__ import annotations

from typing import Protocol, overload


class HasValues(Protocol):
    @property
    def _values(self) -> memoryview: ...


class BufferField:
    """A field at ``index`` of the owner's ``_values``; named after its attribute."""

    __slots__ = ("index", "name")

    def __init__(self, index: int) -> None:
        self.index = index
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name


class Counter(BufferField):
    """An int64 at ``index`` of the owner's ``_values``, as an int attribute."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Counter: ...
    @overload
    def __get__(self, obj: HasValues, owner: type | None = None) -> int: ...
    def __get__(self, obj: HasValues | None, owner: type | None = None) -> int | Counter:
        if obj is None:
            return self
        value: int = obj._values[self.index]
        return value

    def __set__(self, obj: HasValues, value: int) -> None:
        obj._values[self.index] = value


class Flag(BufferField):
    """A 0/1 at ``index`` of the owner's ``_values``, as a bool attribute."""

    __slots__ = ()

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Flag: ...
    @overload
    def __get__(self, obj: HasValues, owner: type | None = None) -> bool: ...
    def __get__(self, obj: HasValues | None, owner: type | None = None) -> bool | Flag:
        if obj is None:
            return self
        return obj._values[self.index] != 0

    def __set__(self, obj: HasValues, value: bool) -> None:
        obj._values[self.index] = 1 if value else 0


def field_names(cls: type) -> tuple[str, ...]:
    """The names of cls's buffer-backed fields, in index order."""
    found = [(v.index, v.name) for klass in reversed(cls.__mro__) for v in vars(klass).values()
             if isinstance(v, BufferField)]
    return tuple(name for _, name in sorted(found))
