"""Random scenario lines, good and bad: the runner keeps every allocator consistent.

After each line the buddy allocator and the slab layer pass check(); a line that fails raises
a KmemError naming its line and leaves allocator state and live names exactly as they were;
the names the runner holds are exactly those allocated and not yet freed.
"""

from __future__ import annotations

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kmem.errors import KmemError
from kmem.show.scenario import parse
from kmem.show.scenario_run import ScenarioRun
from kmem.show.snapshot import LabelTable, buddy_frame, cache_frames

NAMES = [f"n{i}" for i in range(6)]
CACHES = ["tcb", "pcb"]


class ScenarioMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run = ScenarioRun(parse("memory 128K\n", "m"))
        self.live: set[str] = set()
        self.line = 1

    def _state(self) -> tuple[object, ...]:
        buddy = self.run.buddy
        slab_objects = (
            {n: [o.address for o in objs] for n, objs in self.run.slab.live_objects().items()}
            if self.run.slab is not None else {}
        )
        return (buddy.nr_free, bytes(buddy.mem_map.state), dict(self.run.names), slab_objects)

    def _execute(self, text: str) -> None:
        self.line += 1
        action = parse("\n" * (self.line - 1) + text + "\n", "m").actions[0]
        before = self._state()
        try:
            result = self.run.execute(action)
        except KmemError as error:
            assert str(error).startswith(f"m:{self.line}: "), str(error)
            assert self._state() == before
            return
        verb = text.split()[0]
        name = text.split()[1]
        if verb in ("free", "kfree"):
            self.live.discard(name)
        elif verb not in ("cache", "shrink", "destroy"):
            self.live.add(name)
        assert result.line == self.line

    @rule(name=st.sampled_from(NAMES), size=st.sampled_from(["1", "4K", "5K", "64K", "200K"]))
    def alloc(self, name: str, size: str) -> None:
        self._execute(f"alloc {name} {size}")

    @rule(name=st.sampled_from(NAMES), order=st.integers(0, 6))
    def pages(self, name: str, order: int) -> None:
        self._execute(f"pages {name} {order}")

    @rule(cache=st.sampled_from(CACHES), size=st.sampled_from(["3K", "7K", "100"]))
    def cache(self, cache: str, size: str) -> None:
        self._execute(f"cache {cache} {size}")

    @rule(name=st.sampled_from(NAMES), cache=st.sampled_from(CACHES))
    def obj(self, name: str, cache: str) -> None:
        self._execute(f"obj {name} {cache}")

    @rule(name=st.sampled_from(NAMES), size=st.sampled_from(["8", "100", "3000", "9000"]))
    def kmalloc(self, name: str, size: str) -> None:
        self._execute(f"kmalloc {name} {size}")

    @rule(name=st.sampled_from(NAMES), verb=st.sampled_from(["free", "kfree"]))
    def free(self, name: str, verb: str) -> None:
        self._execute(f"{verb} {name}")

    @rule(cache=st.sampled_from(CACHES), verb=st.sampled_from(["shrink", "destroy"]))
    def shrink_or_destroy(self, cache: str, verb: str) -> None:
        self._execute(f"{verb} {cache}")

    @invariant()
    def consistent(self) -> None:
        self.run.buddy.check()
        if self.run.slab is not None:
            self.run.slab.check()
        assert set(self.run.names) == self.live

    @invariant()
    def snapshot_agrees(self) -> None:
        # The page's snapshot accounts for every page and every named object.
        frame = buddy_frame(self.run.buddy, LabelTable(), self.run.block_labels())
        blocks = frame["blocks"]
        used = sum(1 << blocks[i + 1] for i in range(0, len(blocks), 3) if blocks[i + 2])
        assert used == frame["used_pages"] == self.run.buddy.nr_pages - frame["free_pages"]
        objects = sum(c["active_objs"] for c in cache_frames(self.run.slab))
        assert objects == sum(1 for a in self.run.names.values() if a.cache is not None)


TestScenarioMachine = ScenarioMachine.TestCase
TestScenarioMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
