"""Scenarios: small readable files that drive the allocators step by step, for teaching.

The language, one command a line, ``#`` starts a comment, sizes are bytes with an optional
K/M/G/T suffix (powers of 1024; "21K", "1.5M", "100")::

    memory 256K page 4K [max_order N] [cpus N] [policy slub|slab]
                              the machine; must come first (default: 256K, 4K pages)
    alloc NAME SIZE           buddy allocation of SIZE bytes, rounded up to 2**order pages
    pages NAME ORDER          buddy allocation of 2**ORDER pages
    cache CACHE SIZE [align N]    a slab cache of SIZE-byte objects (kmem_cache_create)
    obj NAME CACHE [cpu N]    an object from a cache (kmem_cache_alloc)
    kmalloc NAME SIZE [cpu N] kmalloc(SIZE)
    free NAME                 free whatever NAME is: buddy block, object or kmalloc memory
    kfree NAME                the same, as Linux names it for kmalloc memory
    shrink CACHE              give the cache's empty slabs back (kmem_cache_shrink)
    destroy CACHE             kmem_cache_destroy: the cache must have no live object

Names are letters, digits, "_", "-" and "."; a name is live from its allocation to its free.
Every mistake is a KmemError whose message starts with ``SOURCE:LINE:`` — syntax errors are
ScenarioSyntaxError, name errors ScenarioNameError, and an allocator's own error (out of
memory, ...) keeps its class, with the line prepended. A failing line changes nothing.

Running: ``ScenarioRun(scenario)`` builds the allocators; ``run.execute(action)`` performs one
line and returns a ``StepResult`` (what happened, in words, and the blocks to highlight);
``run_all(scenario)`` yields (result, run) after each line so callers can take snapshots.

The seed example (``BUILTIN["seed"]``, the default everywhere) is the classic textbook one: a
256 KB segment; a 21 KB request rounds up to 32 KB and splits 256 -> 128 (A_L, A_R) -> 64
(B_L, B_R) -> 32 (C_L, C_R), C_L is allocated; freeing it coalesces C_L+C_R, then B_R, then A_R,
back to 256 KB. Then a 3 KB TCB cache and a 7 KB PCB cache get an object each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from kmem.buddy import BuddyAllocator, get_order
from kmem.errors import InvalidArgumentError, KmemError
from kmem.explain import (
    Step,
    alloc_steps,
    clause,
    describe_alloc,
    describe_free,
    format_size,
    free_steps,
    sentence,
)
from kmem.slab import SlabAllocator
from kmem.slab_cache import KmemCache


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
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\Z", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

# verb -> (positional argument kinds, allowed options)
_GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "memory": (("size",), ("page", "max_order", "cpus", "policy")),
    "alloc": (("name", "size"), ()),
    "pages": (("name", "int"), ()),
    "cache": (("name", "size"), ("align",)),
    "obj": (("name", "name"), ("cpu",)),
    "kmalloc": (("name", "size"), ("cpu",)),
    "free": (("name",), ()),
    "kfree": (("name",), ()),
    "shrink": (("name",), ()),
    "destroy": (("name",), ()),
}
_OPTION_KINDS = {"page": "size", "max_order": "int", "cpus": "int", "policy": "word",
                 "align": "size", "cpu": "int"}


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


def parse_size(token: str) -> int:
    """Bytes from "21K", "1.5M", "4096", "512MiB" (K, M, G, T: powers of 1024).

    Bad text raises InvalidArgumentError (a ValueError).
    """
    match = _SIZE.match(token)
    if not match:
        raise InvalidArgumentError(f"bad size {token!r} (expected e.g. 100, 21K, 1.5M)")
    # Exact arithmetic: a float rounds sizes above 2**53 bytes, and digits past its precision
    # ("1.00000000000000001" would be 1).
    try:
        value = Fraction(match.group(1)) * _UNITS[match.group(2).upper()]
    except ValueError:  # (more digits than Python converts: sys.get_int_max_str_digits())
        raise InvalidArgumentError(f"bad size {token[:40]!r}... (too many digits)") from None
    if value.denominator != 1 or value <= 0:
        raise InvalidArgumentError(f"size {token!r} is not a positive whole number of bytes")
    return value.numerator


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
    return Scenario(source, size, page_size, max_order, nr_cpus, policy, tuple(actions), text)


def load(spec: str | Path | None = None) -> Scenario:
    """A built-in scenario by name ("seed", the default) or a scenario file by path."""
    if spec is None:
        spec = "seed"
    if isinstance(spec, str) and spec in BUILTIN:
        return parse(BUILTIN[spec], spec)
    path = Path(spec)
    try:
        text = path.read_text()
    except OSError as error:
        raise ScenarioNameError(
            f"cannot read scenario {str(spec)!r}: {error.strerror}"
            f" (built-in scenarios: {', '.join(BUILTIN)})"
        ) from None
    return parse(text, path.name)


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


@dataclass
class ScenarioRun:
    """The allocators of a scenario and its live names; ``execute`` performs one action."""

    scenario: Scenario
    buddy: BuddyAllocator = field(init=False)
    slab: SlabAllocator | None = field(init=False, default=None)
    names: dict[str, Allocation] = field(init=False, default_factory=dict)
    caches: dict[str, KmemCache] = field(init=False, default_factory=dict)
    lines: dict[str, int] = field(init=False, default_factory=dict)  # name -> line allocated
    # (id of the cache, slab pfn) -> named objects in that slab: every object a scenario
    # allocates has a name, so this counts a slab's objects in O(1) (live_objects() is O(n)).
    # Keyed by the cache object, not a name: merged caches share one cache under two names.
    _slab_use: dict[tuple[int, int], int] = field(init=False, default_factory=dict)
    _object_cache: dict[str, KmemCache] = field(init=False, default_factory=dict)
    executed: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        sc = self.scenario
        where = f"{sc.name}:1"
        try:
            self.buddy = BuddyAllocator(sc.memory, sc.page_size, sc.max_order)
        except KmemError as error:
            raise _at_line(error, where) from None

    # -- labels for pictures ---------------------------------------------------------------

    def block_labels(self) -> dict[int, str]:
        """{first pfn of an allocated block: label}: scenario names, slab caches, kmalloc."""
        labels: dict[int, str] = {}
        if self.slab is not None:
            labels.update(slab_page_labels(self.slab.slab_pages()))
        for alloc in self.names.values():
            if alloc.kind == "pages":
                labels[alloc.pfn] = alloc.name
            elif alloc.kind == "kmalloc" and alloc.cache is None:
                labels[alloc.pfn] = f"kmalloc:{alloc.name}"
        return labels

    # -- actions ---------------------------------------------------------------------------

    def execute(self, action: Action) -> StepResult:
        where = f"{self.scenario.name}:{action.line}"
        handler = getattr(self, f"_do_{action.verb}")
        try:
            result: StepResult = handler(action)
        except (ScenarioNameError, ScenarioSyntaxError):
            raise
        except KmemError as error:
            raise _at_line(error, where) from None
        self.executed += 1
        return result

    def _result(self, action: Action, name: str, steps: list[Step],
                highlight: list[tuple[int, int]], address: int | None = None,
                text: str | None = None) -> StepResult:
        return StepResult(
            self.executed, action.line, action.source, action.verb, name,
            text if text is not None else sentence(steps), tuple(steps), tuple(highlight),
            address,
        )

    def _new_name(self, action: Action) -> str:
        name = str(action.args[0])
        if name in self.names:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is already allocated"
                f" (line {self.lines[name]}); free it first or pick another name"
            )
        return name

    def _do_alloc(self, action: Action) -> StepResult:
        name = self._new_name(action)
        size = int(action.args[1])
        order = get_order(size, self.buddy.page_shift)
        if order > self.buddy.max_order:
            self.buddy.alloc(size)  # raises the allocator's own clear error
        pfn, steps = alloc_steps(self.buddy, order, size=size)
        return self._remember(action, Allocation(name, "pages", pfn << self.buddy.page_shift,
                                                 size, pfn, order), steps)

    def _do_pages(self, action: Action) -> StepResult:
        name = self._new_name(action)
        order = int(action.args[1])
        pfn, steps = alloc_steps(self.buddy, order)
        size = self.buddy.page_size << order
        return self._remember(action, Allocation(name, "pages", pfn << self.buddy.page_shift,
                                                 size, pfn, order), steps)

    def _remember(self, action: Action, alloc: Allocation, steps: list[Step]) -> StepResult:
        self.names[alloc.name] = alloc
        self.lines[alloc.name] = action.line
        text = f"{alloc.name}: {sentence(steps)}" if steps else f"{alloc.name} allocated."
        return self._result(action, alloc.name, steps, [(alloc.pfn, alloc.order)],
                            alloc.address, text)

    def _lookup(self, action: Action, name: str) -> Allocation:
        alloc = self.names.get(name)
        if alloc is None:
            known = ", ".join(sorted(self.names)) or "none"
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: {name!r} is not allocated"
                f" (live names: {known})"
            )
        return alloc

    def _do_free(self, action: Action) -> StepResult:
        name = str(action.args[0])
        alloc = self._lookup(action, name)
        if alloc.kind == "pages":
            steps = free_steps(self.buddy, alloc.pfn, alloc.order)
            highlight = [(s.pfn, s.order) for s in steps if s.kind == "place"]
            del self.names[name]
            return self._result(action, name, steps, highlight, alloc.address,
                                f"{name}: {sentence(steps)}")
        return self._slab_free(action, alloc)

    _do_kfree = _do_free

    # -- slab layer (needs kmem.slab) -------------------------------------------------------

    def _ensure_slab(self) -> SlabAllocator:
        """The slab layer, created on the first line that needs it (buddy-only scenarios never
        pay for its boot-time kmalloc caches)."""
        if self.slab is None:
            self.slab = SlabAllocator(self.buddy, nr_cpus=self.scenario.nr_cpus,
                                      policy=self.scenario.policy)
        return self.slab

    def _do_cache(self, action: Action) -> StepResult:
        slab = self._ensure_slab()
        name = str(action.args[0])
        if name in self.caches:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: cache {name!r} already exists"
            )
        size = int(action.args[1])
        cache = slab.kmem_cache_create(name, size, align=int(action.option("align", 0)))
        self.caches[name] = cache
        merged = ""
        if cache.name != name:
            merged = (f" merged into the existing cache {cache.name} (same slot size and"
                      " flags: Linux lets both names share one cache);")
        text = (
            f"cache {name}:{merged} {format_size(size)} objects in {cache.slab_size}-byte slots,"
            f" {cache.objs_per_slab} per slab of"
            f" {format_size(self.buddy.page_size << cache.order)} (order {cache.order});"
            " no slab yet: the first allocation takes pages from the buddy allocator."
        )
        return self._result(action, name, [], [], None, text)

    def _slab_alloc(self, action: Action, name: str, kind: str, size: int,
                    cache: KmemCache | None, do_alloc: Callable[[], int],
                    label: str | None = None) -> StepResult:
        """An object or kmalloc memory; ``label`` names the cache in the text (default: its
        name)."""
        before = self.buddy.nr_free
        address = int(do_alloc())
        pfn = address >> self.buddy.page_shift
        block = self.buddy.block_at(pfn)
        cache_name = None if cache is None else cache.name
        alloc = Allocation(name, kind, address, size, block.pfn, block.order, cache_name)
        self.names[name] = alloc
        self.lines[name] = action.line
        if cache is not None:
            self._object_cache[name] = cache
            key = (id(cache), block.pfn)
            self._slab_use[key] = self._slab_use.get(key, 0) + 1
        steps: list[Step] = []
        if self.buddy.nr_free != before:
            steps = describe_alloc(self.buddy, before, block.pfn, block.order)
        cache_name = label or cache_name
        if cache_name is None:
            text = (f"{name}: {format_size(size)} is too big for the kmalloc caches: "
                    f"{clause(steps)} straight from the buddy allocator.")
        elif steps:
            index = self._object_index(cache, block.pfn, address)
            text = (f"{name}: cache {cache_name} has no free object, so it takes a new slab "
                    f"of order {block.order} from the buddy allocator: {clause(steps)}; "
                    f"object {index} of the new slab, at {address:#x}.")
        else:
            index = self._object_index(cache, block.pfn, address)
            text = (f"{name}: cache {cache_name} has a free object in its slab at pfn "
                    f"{block.pfn}: object {index}, at {address:#x}; no pages from the buddy "
                    "allocator.")
        return self._result(action, name, steps, [(block.pfn, block.order)], address, text)

    def _object_index(self, cache: KmemCache | None, slab_pfn: int, address: int) -> int:
        """The object's index in its slab. Object i starts at slab start + offset + i * slot,
        where the offset (a classic slab's colour, a debug cache's left red zone) is smaller
        than a slot, so floor division by the slot size gives i exactly, in O(1)."""
        assert cache is not None
        return (address - (slab_pfn << self.buddy.page_shift)) // cache.slab_size

    def _do_obj(self, action: Action) -> StepResult:
        name = self._new_name(action)
        cache_name = str(action.args[1])
        cache = self._cache_named(action, cache_name)
        cpu = int(action.option("cpu", 0))
        label = cache_name if cache.name == cache_name else (
            f"{cache_name} (merged into {cache.name})")
        return self._slab_alloc(action, name, "obj", int(cache.object_size), cache,
                                lambda: cache.alloc(cpu=cpu), label)

    def _do_kmalloc(self, action: Action) -> StepResult:
        slab = self._ensure_slab()
        name = self._new_name(action)
        size = int(action.args[1])
        cpu = int(action.option("cpu", 0))
        cache = slab.kmalloc_cache_for(size)  # None: a large kmalloc, pages from the buddy
        return self._slab_alloc(action, name, "kmalloc", size, cache,
                                lambda: slab.kmalloc(size, cpu=cpu))

    def _cache_named(self, action: Action, name: str) -> KmemCache:
        cache = self.caches.get(name)
        if cache is None:
            raise ScenarioNameError(
                f"{self.scenario.name}:{action.line}: no cache {name!r}"
                f" (caches: {', '.join(self.caches) or 'none'})"
            )
        return cache

    def _release_text(self, before: list[tuple[int, str]]) -> tuple[str, list[Step],
                                                                   list[tuple[int, int]]]:
        """Which slabs went back to the buddy allocator, and the free blocks they ended in."""
        if not before:
            return "it holds no slab, so no page goes back to the buddy allocator", [], []
        after = set(self._ensure_slab().slab_pages())
        gone = [pfn for pfn, name in before if (pfn, name) not in after]
        if not gone:
            return "no slab was empty: nothing goes back to the buddy allocator", [], []
        steps: list[Step] = []
        ends: list[tuple[int, int]] = []
        for pfn in gone:
            block = self.buddy.block_at(pfn)
            if (block.pfn, block.order) not in ends:
                ends.append((block.pfn, block.order))
        for pfn, order in ends:
            steps.append(Step("place", pfn, order,
                              f"now part of the free {format_size(self.buddy.page_size << order)}"
                              f" block [pfn {pfn}-{pfn + (1 << order) - 1}] on free list {order}"))
        slabs = ", ".join(f"pfn {pfn}" for pfn in gone)
        return (f"{len(gone)} empty slab(s) ({slabs}) go back to the buddy allocator, "
                f"merging with free buddies: {clause(steps)}"), steps, ends

    def _do_shrink(self, action: Action) -> StepResult:
        name = str(action.args[0])
        cache = self._cache_named(action, name)
        before = [(pfn, n) for pfn, n in self._ensure_slab().slab_pages() if n == cache.name]
        cache.shrink()
        text, steps, ends = self._release_text(before)
        return self._result(action, name, steps, ends, None, f"shrink {name}: {text}.")

    def _do_destroy(self, action: Action) -> StepResult:
        name = str(action.args[0])
        cache = self._cache_named(action, name)
        slab = self._ensure_slab()
        before = [(pfn, n) for pfn, n in slab.slab_pages() if n == cache.name]
        # CacheNotEmptyError, with nothing changed, while objects live.
        slab.kmem_cache_destroy(cache)
        del self.caches[name]
        if not cache.destroyed:  # merged: only this name goes (Linux drops a reference)
            return self._result(action, name, [], [], None,
                                f"destroy {name}: only the name goes; the cache it shares"
                                f" ({cache.name}) lives on for its other users.")
        text, steps, ends = self._release_text(before)
        return self._result(action, name, steps, ends, None,
                            f"destroy {name}: the cache is gone; {text}.")

    def _slab_free(self, action: Action, alloc: Allocation) -> StepResult:
        cache = self._object_cache.get(alloc.name)
        if alloc.kind == "obj" and cache is not None:
            cache.free(alloc.address)  # the cache it came from, whatever names it has now
        else:
            self._ensure_slab().kfree(alloc.address)
        del self.names[alloc.name]
        left = 0
        if cache is not None:
            del self._object_cache[alloc.name]
            key = (id(cache), alloc.pfn)
            left = self._slab_use[key] = self._slab_use[key] - 1
            if not left:
                del self._slab_use[key]
        block = self.buddy.block_at(alloc.pfn)
        released = block.state == "free"  # the slab (or large kmalloc) went back to the buddy
        steps = describe_free(self.buddy, alloc.pfn, alloc.order) if released else []
        if alloc.cache is None:
            text = f"{alloc.name}: large kmalloc memory goes back to the buddy allocator: "
            text += clause(steps) + "."
        elif released:
            text = (f"{alloc.name}: object at {alloc.address:#x} back to cache {alloc.cache};"
                    f" its slab is empty and the cache gives it back: {clause(steps)}.")
        else:
            state = (f"still holds {left} object{'s' if left != 1 else ''}" if left else
                     "is empty now, but the cache keeps it (and its pages) for later")
            text = (f"{alloc.name}: object at {alloc.address:#x} back to cache {alloc.cache};"
                    f" its slab at pfn {alloc.pfn} {state}.")
        highlight = [(s.pfn, s.order) for s in steps if s.kind == "place"] or [
            (alloc.pfn, alloc.order)]
        return self._result(action, alloc.name, steps, highlight, alloc.address, text)


def slab_page_labels(slab_pages: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Label every slab's first page (``SlabAllocator.slab_pages()``) with its cache:
    "slab:NAME"."""
    return {int(pfn): f"slab:{name}" for pfn, name in slab_pages}


def _at_line(error: KmemError, where: str) -> KmemError:
    """The error itself (its class and attributes, e.g. a CacheNotEmptyError's leaks, stay),
    its message prefixed with ``where`` ("FILE:LINE"). Changing ``args`` in place works for
    every exception class, whatever its constructor takes."""
    error.args = (f"{where}: {error}",)
    return error


def run_all(scenario: Scenario) -> Iterator[tuple[StepResult, ScenarioRun]]:
    """Execute every action; yield (result, run) after each, so callers can look at the state."""
    run = ScenarioRun(scenario)
    for action in scenario.actions:
        yield run.execute(action), run
