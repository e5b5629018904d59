"""The kernel symbol table of a kallsyms text: the compiled reading (csrc/perf_data.c
kallsyms_table) gives what the pure one (kmem.trace.perf_data._symbol_table) gives, and both
keep the symbol perf keeps at each address.

Marked fuzz: tools/fuzz.sh runs the differential test under AddressSanitizer with
KMEM_FUZZ_EXAMPLES examples.
"""

from __future__ import annotations

import lzma
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from kmem.trace.perf_data import KernelSymbols

KALLSYMS = Path(__file__).parent / "fixtures" / "traces" / "perf-data" / "kallsyms.txt.xz"


def _both(data: bytes) -> tuple[KernelSymbols, KernelSymbols]:
    return KernelSymbols(data), KernelSymbols(data, compiled=False)


def _model(data: bytes) -> dict[int, bytes]:
    """An independent reading of perf's rule for aliases (tools/perf/util/symbol.c
    choose_best_symbol): of the symbols at one address, a non-weak one over a weak one, then
    a global over a local, then the one with fewer leading underscores, then the longer
    name, else the first; only types T/W/D/B of either case, addresses read as u64 hex."""
    def rank(name: bytes, kind: bytes) -> tuple[int, int, int, int]:
        weak = kind in (b"W", b"w")
        return (not weak, kind.isupper() and not weak,
                -(len(name) - len(name.lstrip(b"_"))), len(name))

    best: dict[int, bytes] = {}
    ranks: dict[int, tuple[int, int, int, int]] = {}
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        fields = line.split()
        if len(fields) < 3 or fields[1] not in (b"T", b"t", b"W", b"w", b"D", b"d", b"B",
                                                b"b"):
            continue
        try:
            address = int(fields[0], 16)
        except ValueError:
            continue
        if not 0 <= address < 1 << 64:
            continue
        if address not in best or rank(fields[2], fields[1]) > ranks[address]:
            best[address], ranks[address] = fields[2], rank(fields[2], fields[1])
    return dict(sorted(best.items()))


def _table_of_model(data: bytes) -> tuple[list[int], list[str]]:
    model = _model(data)
    return list(model), [name.decode("utf-8", "replace") for name in model.values()]


def test_the_fixture_kallsyms_reads_alike_and_as_the_model() -> None:
    with lzma.open(KALLSYMS) as file:
        data = file.read()
    compiled, pure = _both(data)
    assert compiled.table() == pure.table() == _table_of_model(data)
    assert len(pure.table()[0]) > 500


def test_aliases_and_odd_lines() -> None:
    data = (b"ffffffff81000000 T _stext\r\nffffffff81000000 t alias\r"
            b"ffffffff81000100 W weak_one\nffffffff81000100 T strong\n"
            b"1ffffffff81000000 T too_wide\n"  # (no u64: skipped, as perf's hex2u64 cannot)
            b"ffffffff81000180 A absolute\n"   # (not a text or data symbol)
            b"ffffffff81000200\tT\t\xc3\xa9t\xc3\xa9\n"  # (UTF-8: its length counts in bytes)
            b"ffffffff81000200 T ete\n"
            b"ffffffff81000300 T end_marker\t[module]\n")
    for symbols in _both(data):
        assert symbols.table() == ([0xFFFFFFFF81000000, 0xFFFFFFFF81000100, 0xFFFFFFFF81000200,
                                    0xFFFFFFFF81000300],
                                   ["_stext", "strong", "\u00e9t\u00e9", "end_marker"])
        assert symbols.name(0xFFFFFFFF81000210) == "\u00e9t\u00e9+0x10"
        assert symbols.name(0xFFFFFFFF81000300) == "0xffffffff81000300"  # (its end unknown)


def test_an_address_of_another_spelling_is_read_as_int_reads_it() -> None:
    """int(x, 16) also takes 0x, signs and underscores: the compiled reading leaves such a
    text to the pure one, so they agree."""
    data = b"0xffffffff81000000 T prefixed\nffff_ffff_8100_0100 T underscored\n-10 T minus\n"
    compiled, pure = _both(data)
    assert compiled.table() == pure.table() == (
        [0xFFFFFFFF81000000, 0xFFFFFFFF81000100], ["prefixed", "underscored"])


def test_allocator_functions_are_decided_when_first_asked() -> None:
    symbols = KernelSymbols(b"1000 T __alloc_pages_noprof\n2000 T kmalloc_trace\n3000 T end\n")
    assert not any(symbols._alloc)
    assert symbols.is_alloc_func(0x1010) and not symbols.is_alloc_func(0x2000)
    assert not symbols.is_alloc_func(0x3000) and not symbols.is_alloc_func(0x10)
    assert list(symbols._alloc) == [2, 1, 0]


_ADDRESS = st.one_of(
    st.integers(0, (1 << 64) - 1).map(lambda value: f"{value:x}"),
    st.sampled_from(["ffffffff81000000", "ffffffff81000010", "0", "00000000000000000001",
                     "1" + "0" * 16, "0x10", "+10", "1_0", "-1", "g1", "", "\u00e9"]))
_KIND = st.sampled_from(["T", "t", "W", "w", "D", "d", "B", "b", "A", "r", "U", "TT", ""])
_NAME = st.one_of(st.sampled_from(["_stext", "__alloc_pages", "alloc_pages", "a", "\u00e9t\u00e9",
                                   "x\x00y", "kmalloc_trace"]),
                  st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), max_size=6))
_SPACE = st.sampled_from([" ", "\t", "  ", "\v", "\f", " \t"])
_END = st.sampled_from(["\n", "\r\n", "\r", "\n\n", "\t[mod]\n"])


@st.composite
def _kallsyms(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 12))):
        fields = [draw(_ADDRESS), draw(_KIND), draw(_NAME)][:draw(st.integers(1, 3))]
        lines.append(draw(_SPACE).join(fields) + draw(_END))
    text = "".join(lines).encode()
    if draw(st.booleans()) and text:  # (a byte that is no UTF-8)
        at = draw(st.integers(0, len(text) - 1))
        text = text[:at] + b"\xff" + text[at:]
    return text


@needs_compiled
@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES * 5, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(_kallsyms(), st.lists(st.integers(0, (1 << 64) - 1), max_size=4))
def test_the_compiled_table_is_the_pure_one(data: bytes, addresses: list[int]) -> None:
    compiled, pure = _both(data)
    assert compiled.table() == pure.table() == _table_of_model(data)
    starts = pure.table()[0]
    for address in [*addresses, *starts[:3], *(start + 1 for start in starts[:3])]:
        assert compiled.name(address) == pure.name(address)
        assert compiled.is_alloc_func(address) == pure.is_alloc_func(address)
