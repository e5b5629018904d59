"""``json_text(value)``: exactly ``json.dumps(value, indent=2)``, several times faster.

Why: with an indent, the standard library's json encoder leaves its C accelerator and walks the
document with nested Python generators (``_iterencode_dict``/``_iterencode_list``); on kmem
stat's tables (hundreds of thousands of small row dicts) that was two thirds of
``kmem stat --json``. Here one function per container appends to a list of strings, and the
scalars go through the same C helpers json uses (``encode_basestring_ascii``, ``int.__repr__``,
``float.__repr__``), so the text is the same byte for byte: same escapes, same key
conversions (int, float, bool and None keys become strings as json converts them), ``NaN`` and
``Infinity`` as json writes them. Anything else (an object json would hand to ``default``, a
circular reference) is left to ``json.dumps`` itself, so its errors are json's.
"""

from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

_INFINITY = float("inf")


class _NotPlain(Exception):
    """A value json_text leaves to json.dumps (json's own error or conversion)."""


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == _INFINITY:
        return "Infinity"
    if value == -_INFINITY:
        return "-Infinity"
    return float.__repr__(value)


def _scalar(value: object) -> str | None:
    """The JSON text of a str, int, float, bool or None; None for a container or other."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    return None


def _key(key: object) -> str:
    """A dict key as json converts it: a string, or an int, float, bool or None spelled out."""
    if isinstance(key, str):
        return encode_basestring_ascii(key)
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return '"' + int.__repr__(key) + '"'
    if isinstance(key, float):
        return '"' + _float(key) + '"'
    raise _NotPlain


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _null(value: None) -> str:
    return "null"


# The scalar types by exact class (the common case, one dict lookup); subclasses (an IntEnum, a
# str subclass) go through _scalar's isinstance checks.
_EXACT: dict[type, Any] = {str: encode_basestring_ascii, int: int.__repr__, float: _float,
                           bool: _bool, type(None): _null}


def _write(value: object, out: list[str], level: int) -> None:
    text = _scalar(value)
    if text is not None:
        out.append(text)
    elif isinstance(value, dict):
        _write_dict(value, out, level)
    elif isinstance(value, (list, tuple)):
        _write_list(value, out, level)
    else:
        raise _NotPlain


_SCALAR_TYPES = frozenset(_EXACT)
_FLAT_ENCODERS: dict[int, Any] = {}


def _flat_encoder(level: int) -> Any:
    """json's C encoder, whose item separator carries the newline and indent of ``level``."""
    encoder = _FLAT_ENCODERS.get(level)
    if encoder is None:
        separator = ",\n" + "  " * level
        if c_make_encoder is None:  # (a Python built without _json: the same text, slower)
            encoder = json.JSONEncoder(separators=(separator, ": ")).encode
        else:  # (made once: JSONEncoder.encode would build it again for every row)
            chunks = c_make_encoder(None, None, encode_basestring_ascii, None, ": ", separator,
                                    False, False, True)
            encoder = lambda row: "".join(chunks(row, 0))  # noqa: E731
        _FLAT_ENCODERS[level] = encoder
    return encoder


def _write_dict(value: dict[Any, Any], out: list[str], level: int) -> None:
    if not value:
        out.append("{}")
        return
    inner = "\n" + "  " * (level + 1)
    if _SCALAR_TYPES.issuperset(map(type, value.values())):
        # A dict of scalars (a table row): json's C encoder writes it with no indent, its item
        # separator carrying the newline, and the braces get theirs here. (No string it
        # writes holds a raw newline: json escapes them.)
        text = _flat_encoder(level + 1)(value)
        out.append("{" + inner + text[1:-1] + "\n" + "  " * level + "}")
        return
    exact = _EXACT.get
    separator = "{" + inner
    for key, item in value.items():
        name = encode_basestring_ascii(key) if key.__class__ is str else _key(key)
        scalar = exact(item.__class__)
        if scalar is not None:
            out.append(separator + name + ": " + scalar(item))
        else:
            out.append(separator + name + ": ")
            _write(item, out, level + 1)
        separator = "," + inner
    out.append("\n" + "  " * level + "}")


def _write_list(value: list[Any] | tuple[Any, ...], out: list[str], level: int) -> None:
    if not value:
        out.append("[]")
        return
    inner = "\n" + "  " * (level + 1)
    exact = _EXACT.get
    separator = "[" + inner
    for item in value:
        scalar = exact(item.__class__)
        if scalar is not None:
            out.append(separator + scalar(item))
        else:
            out.append(separator)
            _write(item, out, level + 1)
        separator = "," + inner
    out.append("\n" + "  " * level + "]")


def json_text(value: object) -> str:
    """``json.dumps(value, indent=2)``, the same text."""
    out: list[str] = []
    try:
        _write(value, out, 0)
    except (_NotPlain, RecursionError):
        return json.dumps(value, indent=2)
    return "".join(out)
