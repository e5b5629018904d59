"""count_kinds (kmem.trace.events), the events-by-kind counter every reader runs on each batch,
against a plain count of one event at a time."""

from __future__ import annotations

import random

import pytest

from kmem.trace.events import EVENT_NAMES, count_kinds


def _reference(counts: list[int], kinds: bytes) -> list[int]:
    out = list(counts)
    for kind in kinds:
        out[kind] += 1  # (IndexError for a kind beyond the list, as the code has always raised)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_counts_equal_a_count_per_event(seed: int) -> None:
    rng = random.Random(seed)
    present = rng.sample(range(len(EVENT_NAMES)), rng.randint(1, len(EVENT_NAMES)))
    kinds = bytes(rng.choice(present) for _ in range(rng.randint(0, 3000)))
    start = [rng.randint(0, 5) for _ in EVENT_NAMES]
    counts = list(start)
    count_kinds(counts, kinds if seed % 2 else bytearray(kinds))
    assert counts == _reference(start, kinds)


def test_a_longer_counts_list_counts_kinds_beyond_the_names() -> None:
    counts = [0] * (len(EVENT_NAMES) + 4)
    count_kinds(counts, bytes([0, 13, 13, 2]))
    assert counts == _reference([0] * (len(EVENT_NAMES) + 4), bytes([0, 13, 13, 2]))


def test_an_unknown_kind_raises_before_counting_past_the_list() -> None:
    counts = [0] * len(EVENT_NAMES)
    with pytest.raises(IndexError):
        count_kinds(counts, bytes([1, 200]))
    with pytest.raises(IndexError):
        _reference([0] * len(EVENT_NAMES), bytes([1, 200]))
