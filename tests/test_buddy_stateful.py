"""Hypothesis drives random alloc/free/size runs; every invariant is checked after each step."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from kmem import BuddyAllocator, InvalidArgumentError, OutOfMemoryError
from linux_buddy_model import LinuxBuddyModel


class BuddyMachine(RuleBasedStateMachine):
    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.buddy = BuddyAllocator(4096, max_order=0)  # replaced in setup
        self.model = LinuxBuddyModel(1, 0)

    @initialize(
        nr_pages=st.integers(1, 300),
        max_order=st.integers(0, 10),
        page_shift=st.sampled_from([4, 12, 16]),
    )
    def setup(self, nr_pages: int, max_order: int, page_shift: int) -> None:
        self.buddy = BuddyAllocator(nr_pages << page_shift, page_size=1 << page_shift,
                                    max_order=max_order)
        self.model = LinuxBuddyModel(nr_pages, max_order)

    @rule(target=blocks, order=st.integers(0, 10))
    def alloc_pages(self, order: int) -> tuple[int, int] | None:
        order = min(order, self.buddy.max_order, self.buddy.nr_pages.bit_length() - 1)
        expected = self.model.alloc_pages(order)
        if expected is None:
            try:
                self.buddy.alloc_pages(order)
            except OutOfMemoryError:
                return None
            raise AssertionError("kmem allocated where Linux's rules fail")
        assert self.buddy.alloc_pages(order) == expected
        return (expected, order)

    @rule(target=blocks, size=st.integers(1, 1 << 22))
    def alloc_bytes(self, size: int) -> tuple[int, int] | None:
        order = ((size - 1) >> self.buddy.page_shift).bit_length()
        if order > min(self.buddy.max_order, self.buddy.nr_pages.bit_length() - 1):
            with pytest.raises(InvalidArgumentError):
                self.buddy.alloc(size)
            return None
        expected = self.model.alloc_pages(order)
        if expected is None:
            try:
                self.buddy.alloc(size)
            except OutOfMemoryError:
                return None
            raise AssertionError("kmem allocated where Linux's rules fail")
        assert self.buddy.alloc(size) == expected << self.buddy.page_shift
        return (expected, order)

    @rule(block=consumes(blocks))
    def free(self, block: tuple[int, int] | None) -> None:
        if block is None:
            return
        pfn, order = block
        if pfn & 1:
            self.buddy.free_pages(pfn, order)
        else:
            self.buddy.free(pfn << self.buddy.page_shift)
        self.model.free_pages(pfn, order)

    @invariant()
    def same_as_linux_and_consistent(self) -> None:
        assert self.buddy.nr_free == self.model.nr_free
        for order in range(self.buddy.max_order + 1):
            assert self.buddy.free_blocks(order) == self.model.free_lists[order]
        self.buddy.check()


BuddyMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
TestBuddyMachine = BuddyMachine.TestCase
