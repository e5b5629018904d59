"""The kernel symbol table of a kallsyms text: the compiled reading (csrc/perf_data.c
kallsyms_table) gives what the pure one (kmem.trace.perf_data._symbol_table) gives, and both
keep the symbol perf keeps at each address.

Marked fuzz: tools/fuzz.sh runs the differential test under AddressSanitizer with
KMEM_FUZZ_EXAMPLES examples.
"""

from __future__ import annotations

import lzma
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_twins import FUZZ_EXAMPLES, needs_compiled
from kmem.trace.perf_data import KernelSymbols, _plain_ascii_text
from kmem.trace.source import MAX_LINE_BYTES, TraceFileError, open_trace

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


def _through_open_trace(path: Path) -> bytes:
    """What KernelSymbols.from_file read before its shortcut: the text open_trace gives."""
    with open_trace(path) as lines:
        return lines.read().encode("utf-8", "surrogatepass")


_LONG = MAX_LINE_BYTES  # (a line open_trace cuts is longer than this)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(_kallsyms(), st.sampled_from([b"", b"\xef\xbb\xbf", b"\x1f\x8b", b"\x7fELF", b"BZh",
                                     b"x\x00"]),
       st.one_of(st.none(), st.integers(_LONG // 2 - 2, _LONG + 2)), st.booleans())
def test_the_shortcut_of_a_plain_kallsyms_reads_what_open_trace_reads(
        tmp_path: Path, data: bytes, head: bytes, long_line: int | None, at_end: bool) -> None:
    """_plain_ascii_text gives a file's bytes only when open_trace would give the same (no
    decoding, no BOM, no compression, no binary, no line cut), and KernelSymbols.from_file
    reads the same table either way."""
    if long_line is not None:  # (a line about as long as open_trace allows, first or last)
        line = b"ffffffff81000000 T " + b"n" * long_line
        data = data + line if at_end else line + b"\n" + data
    path = tmp_path / "kallsyms"
    path.write_bytes(head + data)
    plain = _plain_ascii_text(path)
    try:
        text = _through_open_trace(path)
    except (TraceFileError, OSError, EOFError, lzma.LZMAError, zlib.error):
        assert plain is None  # (and from_file says why, as before)
        with pytest.raises(TraceFileError):
            KernelSymbols.from_file(path)
        return
    if plain is not None:
        assert plain == text
    symbols = KernelSymbols.from_file(path)
    assert symbols.table() == KernelSymbols(text).table()
    if head == b"" and long_line is None and data.isascii():
        assert plain is not None  # (the shortcut is taken for what a kallsyms is)


def test_the_shortcut_leaves_standard_input_and_pipes_to_open_trace(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert _plain_ascii_text("-") is None
    assert _plain_ascii_text(tmp_path / "missing") is None
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # (so that opening it to read returns)
    try:
        assert _plain_ascii_text(fifo) is None
    finally:
        os.close(writer)
