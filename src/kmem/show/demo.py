"""The seed example, step by step: one request splits a segment into buddies, its free coalesces.

A 256 KB segment serves a 21 KB request: 21 KB rounds up to 32 KB; the segment splits into
A_L/A_R (128 KB), A_L into B_L/B_R (64 KB), B_L into C_L/C_R (32 KB), and C_L is given out.
Freeing C_L coalesces it with C_R into B_L, B_L with B_R into A_L, A_L with A_R into the whole.

The allocator does a whole allocation in one call, so the demo runs the real BuddyAllocator and
then replays the steps it reports (kmem.show.explain) on a list of blocks, to draw memory after
every split and merge. The last picture of each phase is checked against the allocator's own
state, so the story cannot drift from what the allocator did.

Names: the buddies made by the k-th split are letter k (A, B, C, ...) with _L (lower, kept) and
_R (upper, put on a free list); a merged block takes back the name it had before it was split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kmem.errors import InvalidArgumentError
from kmem.page.buddy import BuddyAllocator
from kmem.page.memory import check_page_size
from kmem.page.order import get_order
from kmem.show.explain import Step, alloc_steps, format_size, free_steps


@dataclass(frozen=True, slots=True)
class DemoBlock:
    """A block in a picture: ``state`` is "free", "allocated", "splitting" or "merging".

    A splitting or merging block is on no free list: the allocator holds it mid-operation.
    """

    pfn: int
    order: int
    state: str
    name: str


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One step of the story, with the picture of memory after it."""

    title: str
    text: str
    blocks: tuple[DemoBlock, ...]
    highlight: tuple[str, ...]  # names of the blocks this step is about
    nr_free: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Demo:
    memory: int
    page_size: int
    request: int
    order: int
    steps: tuple[DemoStep, ...]


# record(title, text, highlighted names): appends a DemoStep with the current picture.
Recorder = Callable[[str, str, tuple[str, ...]], None]


def _nr_free(blocks: dict[int, DemoBlock], max_order: int) -> tuple[int, ...]:
    counts = [0] * (max_order + 1)
    for block in blocks.values():
        if block.state == "free":
            counts[block.order] += 1
    return tuple(counts)


def _segment_name(page_size: int, order: int) -> str:
    return f"{format_size(page_size << order)} segment"


def run_demo(memory: int = 256 * 1024, request: int = 21 * 1024, page_size: int = 4096) -> Demo:
    """Allocate ``request`` bytes from a fresh ``memory``-byte buddy allocator, then free them.

    ``memory`` must be a power-of-two number of pages (one segment, as in the seed example).
    """
    page_size = check_page_size(page_size)
    nr_pages = memory // page_size
    if memory <= 0 or nr_pages <= 0 or nr_pages & (nr_pages - 1) or memory % page_size:
        raise InvalidArgumentError(
            f"the demo segment must be a power-of-two number of pages; {memory} bytes is not"
        )
    max_order = nr_pages.bit_length() - 1
    buddy = BuddyAllocator(memory, page_size=page_size, max_order=max_order)
    if request <= 0:
        raise InvalidArgumentError(f"the request must be a positive size, got {request}")
    order = get_order(request, buddy.page_shift)
    if order > max_order:
        raise InvalidArgumentError(
            f"a {format_size(request)} request does not fit in a {format_size(memory)} segment"
        )
    whole = DemoBlock(0, max_order, "free", _segment_name(page_size, max_order))
    blocks = {0: whole}
    names: dict[tuple[int, int], str] = {(0, max_order): whole.name}
    steps = [
        DemoStep(
            "start",
            f"One free {whole.name}: {nr_pages} pages of {format_size(page_size)}, on free list"
            f" {max_order}.",
            (whole,),
            (whole.name,),
            _nr_free(blocks, max_order),
        )
    ]

    def record(title: str, text: str, highlight: tuple[str, ...]) -> None:
        ordered = tuple(blocks[pfn] for pfn in sorted(blocks))
        steps.append(DemoStep(title, text, ordered, highlight, _nr_free(blocks, max_order)))

    pfn, taken = alloc_steps(buddy, order, size=request)
    _replay_alloc(taken, blocks, names, record)
    _check_against(buddy, blocks)
    freed = free_steps(buddy, pfn, order)
    _replay_free(freed, blocks, names, record)
    _check_against(buddy, blocks)
    return Demo(memory, page_size, request, order, tuple(steps))


def _replay_alloc(steps: list[Step], blocks: dict[int, DemoBlock],
                  names: dict[tuple[int, int], str], record: Recorder) -> None:
    letter = 0
    for step in steps:
        if step.kind == "round":
            record("round", step.text[0].upper() + step.text[1:] + ".", ())
        elif step.kind == "take":
            block = blocks[step.pfn]
            blocks[step.pfn] = DemoBlock(step.pfn, step.order, "splitting", block.name)
        elif step.kind == "split":
            parent = blocks[step.pfn]
            half = step.order - 1
            upper = step.pfn + (1 << half)
            tag = chr(ord("A") + letter) if letter < 26 else f"S{letter}"
            letter += 1
            lower_name, upper_name = f"{tag}_L", f"{tag}_R"
            names[(step.pfn, half)] = lower_name
            names[(upper, half)] = upper_name
            blocks[step.pfn] = DemoBlock(step.pfn, half, "splitting", lower_name)
            blocks[upper] = DemoBlock(upper, half, "free", upper_name)
            record(
                "split",
                f"Split {parent.name} into two buddies {lower_name} and {upper_name}: "
                + step.text + ".",
                (lower_name, upper_name),
            )
        elif step.kind == "alloc":
            block = blocks[step.pfn]
            blocks[step.pfn] = DemoBlock(step.pfn, step.order, "allocated", block.name)
            record("allocate", f"{block.name} serves the request: " + step.text + ".",
                   (block.name,))


def _replay_free(steps: list[Step], blocks: dict[int, DemoBlock],
                 names: dict[tuple[int, int], str], record: Recorder) -> None:
    for step in steps:
        if step.kind == "free":
            block = blocks[step.pfn]
            blocks[step.pfn] = DemoBlock(step.pfn, step.order, "merging", block.name)
            record("free", f"Free {block.name}: " + step.text + ".", (block.name,))
        elif step.kind == "merge":
            half = step.order - 1
            lower, upper = blocks.pop(step.pfn), blocks.pop(step.pfn + (1 << half))
            name = names.get((step.pfn, step.order), f"[{step.pfn}+{1 << step.order}]")
            blocks[step.pfn] = DemoBlock(step.pfn, step.order, "merging", name)
            record(
                "coalesce",
                f"Coalesce {lower.name} with its buddy {upper.name} into {name}: "
                + step.text + ".",
                (name,),
            )
        elif step.kind == "place":
            block = blocks[step.pfn]
            blocks[step.pfn] = DemoBlock(step.pfn, step.order, "free", block.name)
            record("place", f"{block.name}: " + step.text + ".",
                   (block.name,))


def _check_against(buddy: BuddyAllocator, blocks: dict[int, DemoBlock]) -> None:
    """The replayed picture must be the allocator's real state, block for block."""
    for pfn, block in blocks.items():
        real = buddy.block_at(pfn)
        if (real.pfn, real.order, real.state) != (pfn, block.order, block.state):
            raise AssertionError(f"demo picture disagrees with the allocator at pfn {pfn}")
    if _nr_free(blocks, buddy.max_order) != buddy.nr_free:
        raise AssertionError("demo picture disagrees with the allocator's nr_free")
