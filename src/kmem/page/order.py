"""Block orders: how many pages a block of 2**order frames is, and the largest order.

Kept apart from the buddy allocator so that a layer needing only the arithmetic (kmalloc's size
classes, a trace's statistics) does not import the allocator and what it brings.
"""

from __future__ import annotations

from typing import Final

MAX_PAGE_ORDER: Final = 10  # Linux's default MAX_PAGE_ORDER (4 MiB blocks of 4 KiB pages)


def get_order(size: int, page_shift: int = 12) -> int:
    """The order of the smallest block of ``2**page_shift``-byte pages that holds ``size`` bytes.

    Linux's get_order(): get_order(1) == get_order(4096) == 0, get_order(4097) == 1.
    """
    return ((size - 1) >> page_shift).bit_length()


__all__ = ["MAX_PAGE_ORDER", "get_order"]
