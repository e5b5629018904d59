"""Scenarios: small readable files that drive the allocators step by step, for teaching.

The language, one command a line, ``#`` starts a comment, sizes are bytes with an optional
K/M/G/T suffix (powers of 1024; "21K", "1.5M", "100")::

    memory 256K page 4K [max_order N] [cpus N] [policy slub|slab] [kernel 6.17|6.18|7.0]
                              the machine; must come first (default: 256K, 4K pages, SLUB
                              of 6.18: kernel 7.0 gives every cache sheaves)
    alloc NAME SIZE           buddy allocation of SIZE bytes, rounded up to 2**order pages
    pages NAME ORDER          buddy allocation of 2**ORDER pages
    cache CACHE SIZE [align N] [sheaves N]
                              a slab cache of SIZE-byte objects (kmem_cache_create), with
                              per-CPU sheaves of N objects (6.18's sheaf_capacity)
    obj NAME CACHE [cpu N]    an object from a cache (kmem_cache_alloc)
    kmalloc NAME SIZE [cpu N] kmalloc(SIZE)
    free NAME                 free whatever NAME is: buddy block, object or kmalloc memory
    kfree NAME                the same, as Linux names it for kmalloc memory
    shrink CACHE              give the cache's empty slabs back (kmem_cache_shrink)
    destroy CACHE             kmem_cache_destroy: the cache must have no live object
    palloc NAME ORDER [cpu N] [gfp FLAGS]    2**ORDER pages from the page machine, through
                              the CPU's per-CPU lists (kmem.show.scenario_machine)
    pfree NAME [cpu N]        free them onto the CPU's pcp list
    zone                      the machine's zone: free pages per migratetype, pageblock types
    pcp [cpu N]               the machine's per-CPU lists
    drain                     drain every pcp back to the buddy lists

Names are letters, digits, "_", "-" and "."; a name is live from its allocation to its free.
Every mistake is a KmemError whose message starts with ``SOURCE:LINE:`` — syntax errors are
ScenarioSyntaxError, name errors ScenarioNameError, and an allocator's own error (out of
memory, ...) keeps its class, with the line prepended. A failing line changes nothing.

Running (kmem.show.scenario_run): ``ScenarioRun(scenario)`` builds the allocators;
``run.execute(action)`` performs one line and returns a ``StepResult`` (what happened, in words,
and the blocks to highlight); ``run_all(scenario)`` yields (result, run) after each line so
callers can take snapshots. This module holds the language and the records a run produces.

The seed example (``BUILTIN["seed"]``, the default everywhere) is the classic textbook one: a
256 KB segment; a 21 KB request rounds up to 32 KB and splits 256 -> 128 (A_L, A_R) -> 64
(B_L, B_R) -> 32 (C_L, C_R), C_L is allocated; freeing it coalesces C_L+C_R, then B_R, then A_R,
back to 256 KB. Then a 3 KB TCB cache and a 7 KB PCB cache get an object each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmem.errors import KmemError
from kmem.page.size import parse_size as parse_size  # (its home is the page layer)
from kmem.show.explain import Step
from kmem.slab.sheaves import DEFAULT_KERNEL, KERNELS


class ScenarioSyntaxError(KmemError, ValueError):
    """A scenario line is malformed: unknown command, missing or bad argument."""


class ScenarioNameError(KmemError, KeyError):
    """A scenario line names an allocation or cache that does not exist, or reuses a live name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


SEED_SCENARIO = """\
# The seed example: a 256 KB segment of 4 KB pages.
memory 256K page 4K
# 21 KB rounds up to 32 KB: split 256 -> 128 (A_L, A_R) -> 64 (B_L, B_R) -> 32 (C_L, C_R).
alloc C_L 21K
# Freeing C_L coalesces it with C_R, then B_R, then A_R: one 256 KB block again.
free C_L
# Slab caches: 3 KB thread control blocks, 7 KB process control blocks.
cache tcb 3K
cache pcb 7K
obj t1 tcb
obj p1 pcb
free t1
free p1
"""

SEED_BUDDY_SCENARIO = SEED_SCENARIO.split("# Slab caches")[0]

BUILTIN: dict[str, str] = {"seed": SEED_SCENARIO, "seed-buddy": SEED_BUDDY_SCENARIO}

_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")

# verb -> (positional argument kinds, allowed options)
_GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "memory": (("size",), ("page", "max_order", "cpus", "policy", "kernel")),
    "alloc": (("name", "size"), ()),
    "pages": (("name", "int"), ()),
    "cache": (("name", "size"), ("align", "sheaves")),
    "obj": (("name", "name"), ("cpu",)),
    "kmalloc": (("name", "size"), ("cpu",)),
    "free": (("name",), ()),
    "kfree": (("name",), ()),
    "shrink": (("name",), ()),
    "destroy": (("name",), ()),
    # the page machine's verbs (kmem.show.scenario_machine)
    "palloc": (("name", "int"), ("cpu", "gfp")),
    "pfree": (("name",), ("cpu",)),
    "zone": ((), ()),
    "pcp": ((), ("cpu",)),
    "drain": ((), ()),
}
_OPTION_KINDS = {"page": "size", "max_order": "int", "cpus": "int", "policy": "word",
                 "align": "size", "cpu": "int", "kernel": "word", "sheaves": "int",
                 "gfp": "word"}


@dataclass(frozen=True, slots=True)
class Action:
    """One scenario line: ``verb`` with its parsed arguments and options."""

    line: int
    verb: str
    args: tuple[str | int, ...]
    options: tuple[tuple[str, str | int], ...]
    source: str

    def option(self, key: str, default: Any = None) -> Any:
        return dict(self.options).get(key, default)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A parsed scenario: the machine and the actions, in order."""

    name: str
    memory: int
    page_size: int
    max_order: int
    nr_cpus: int
    policy: str
    actions: tuple[Action, ...]
    text: str
    kernel: str = DEFAULT_KERNEL  # whose SLUB (kmem.slab.sheaves.KERNELS)


def _convert(kind: str, token: str) -> str | int:
    if kind == "size":
        return parse_size(token)
    if kind == "int":
        if not token.isdigit():
            raise ValueError(f"expected a whole number, got {token!r}")
        return int(token)
    if kind == "name" and not _NAME.match(token):
        raise ValueError(f"bad name {token!r} (letters, digits, _ - . only)")
    return token


def parse(text: str, source: str = "<scenario>") -> Scenario:
    """Parse a scenario; raise ScenarioSyntaxError naming ``source:line`` on the first mistake."""
    actions: list[Action] = []
    memory: Action | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, *rest = words
        where = f"{source}:{number}"
        if verb not in _GRAMMAR:
            raise ScenarioSyntaxError(
                f"{where}: unknown command {verb!r} (known: {', '.join(_GRAMMAR)})"
            )
        kinds, allowed = _GRAMMAR[verb]
        if len(rest) < len(kinds):
            usage = " ".join([verb, *(k.upper() for k in kinds)])
            raise ScenarioSyntaxError(f"{where}: {verb} needs {len(kinds)} argument(s): {usage}")
        try:
            args = tuple(_convert(kind, token) for kind, token in zip(kinds, rest, strict=False))
            options: list[tuple[str, str | int]] = []
            extra = rest[len(kinds):]
            while extra:
                key = extra[0]
                name, equals, value = key.partition("=")
                if key not in allowed and equals and name in allowed:
                    # (the form other tools use: say this one's, not only "unexpected")
                    raise ValueError(f"write option {key!r} as {name} {value or 'VALUE'},"
                                     " without '='")
                if key not in allowed:
                    raise ValueError(
                        f"unexpected {key!r}"
                        + (f" (options: {', '.join(allowed)})" if allowed else "")
                    )
                if len(extra) < 2:
                    raise ValueError(f"option {key!r} needs a value")
                options.append((key, _convert(_OPTION_KINDS[key], extra[1])))
                extra = extra[2:]
        except ValueError as error:
            raise ScenarioSyntaxError(f"{where}: {error}") from None
        action = Action(number, verb, args, tuple(options), raw.strip())
        if verb == "memory":
            if memory is not None or actions:
                raise ScenarioSyntaxError(f"{where}: 'memory' must be the first command, once")
            memory = action
        else:
            actions.append(action)
    page_size = 4096
    size = 256 * 1024
    max_order = 10
    nr_cpus = 2
    policy = "slub"
    kernel = DEFAULT_KERNEL
    if memory is not None:
        size = int(memory.args[0])
        page_size = int(memory.option("page", page_size))
        max_order = int(memory.option("max_order", max_order))
        nr_cpus = int(memory.option("cpus", nr_cpus))
        policy = str(memory.option("policy", policy))
        if policy not in ("slub", "slab"):
            raise ScenarioSyntaxError(
                f"{source}:{memory.line}: policy must be slub or slab, got {policy!r}"
            )
        kernel = str(memory.option("kernel", kernel))
        if kernel not in KERNELS:
            raise ScenarioSyntaxError(
                f"{source}:{memory.line}: kernel must be one of {', '.join(KERNELS)},"
                f" got {kernel!r}")
    return Scenario(source, size, page_size, max_order, nr_cpus, policy, tuple(actions), text,
                    kernel)


def load(spec: str | Path | None = None) -> Scenario:
    """A built-in scenario by name ("seed", the default) or a scenario file by path."""
    if spec is None:
        spec = "seed"
    if isinstance(spec, str) and spec in BUILTIN:
        return parse(BUILTIN[spec], spec)
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ScenarioNameError(
            f"cannot read scenario {str(spec)!r}: {error.strerror}"
            f" (built-in scenarios: {', '.join(BUILTIN)})"
        ) from None
    return parse(_scenario_text(data, path.name), path.name)


def _scenario_text(data: bytes, source: str) -> str:
    """A scenario file's bytes as text; binary or non-UTF-8 bytes are a ScenarioSyntaxError at
    their line (a scenario is a few lines a person wrote, so a bad byte is a wrong file, and a
    compressed trace given to ``kmem run`` is the usual one)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ScenarioSyntaxError(
            f"{source}:{line}: not a scenario: byte 0x{data[error.start]:02x} is not UTF-8 text"
            " (a kmem trace? kmem html and plot read those with --trace)") from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ScenarioSyntaxError(f"{source}:{line}: not a scenario: binary data (a NUL byte)")
    return text


@dataclass(frozen=True, slots=True)
class Allocation:
    """A live named allocation: what it is and where."""

    name: str
    kind: str  # "pages" (buddy), "obj" (slab object), "kmalloc"
    address: int
    size: int
    pfn: int
    order: int  # the buddy block's order (for objects and small kmalloc: their slab's)
    cache: str | None = None


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one scenario line did, for people (text, steps) and pictures (highlight)."""

    index: int
    line: int
    source: str
    verb: str
    name: str
    text: str
    steps: tuple[Step, ...]
    highlight: tuple[tuple[int, int], ...]  # (pfn, order) blocks this step touched
    address: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "line": self.line,
            "source": self.source,
            "verb": self.verb,
            "name": self.name,
            "text": self.text,
            "address": self.address,
            "highlight": [list(block) for block in self.highlight],
            "steps": [
                {"kind": s.kind, "pfn": s.pfn, "order": s.order, "text": s.text}
                for s in self.steps
            ],
        }


def at_line(error: KmemError, where: str) -> KmemError:
    """The error itself (its class and attributes, e.g. a CacheNotEmptyError's leaks, stay),
    its message prefixed with ``where`` ("FILE:LINE"). Changing ``args`` in place works for
    every exception class, whatever its constructor takes."""
    error.args = (f"{where}: {error}",)
    return error
