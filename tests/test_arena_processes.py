"""Arena across real processes: workers hammering one arena, workers SIGKILLed at random
moments (while holding the lock too), and reopening after a crash.

Every worker writes its pid and a sequence number over every byte of each block or object it
holds and checks them before freeing it: an overlap, a block handed out twice or a lost write
shows up as a wrong pattern. KMEM_ARENA_OPS (default 20000 per worker) and KMEM_ARENA_KILLS
(default 12) size the runs; KMEM_ARENA_LONG=1 adds a run with ten times the kills.
"""

from __future__ import annotations

import fcntl
import json
import mmap
import multiprocessing
import os
import random
import signal
import struct
import time
import uuid
from pathlib import Path

import pytest

from kmem import Arena, ArenaCache, OutOfMemoryError
from kmem.arena.arena import D_HOLDER, D_LOG_COUNT, MUTEX_WORD

OPS = int(os.environ.get("KMEM_ARENA_OPS", "20000"))
KILLS = int(os.environ.get("KMEM_ARENA_KILLS", "12"))
WORKERS = 4
_FORK = multiprocessing.get_context("fork")


def _pattern(pid: int, seq: int, length: int) -> bytes:
    stamp = struct.pack("<qq", pid, seq)
    return (stamp * (length // 16 + 1))[:length]


def _open(where: str) -> Arena:
    return Arena.open(where) if where.startswith("/") else Arena.attach(where)


def _worker(where: str, seed: int, ops: int, result: str) -> None:
    """Random alloc/free/kmalloc/kfree/cache operations; exit 0 if every check held."""
    pid = os.getpid()
    rng = random.Random(seed)
    arena = _open(where)
    caches: list[ArenaCache] = [arena.cache("obj-600", 600), arena.cache("obj-40", 40)]
    held: list[tuple[str, int, int, int]] = []  # (how, address, length, seq)
    checks = failures = 0

    def release(entry: tuple[str, int, int, int]) -> None:
        nonlocal checks
        how, address, length, seq = entry
        if bytes(arena.view(address)) != _pattern(pid, seq, length):
            os._exit(3)  # somebody else wrote into a block this worker holds
        checks += 1
        if how == "alloc":
            arena.free(address)
        elif how == "kmalloc":
            arena.kfree(address)
        else:
            caches[int(how[-1])].free(address)

    for seq in range(ops):
        if held and (rng.random() < 0.45 or len(held) >= 48):
            release(held.pop(rng.randrange(len(held))))
            continue
        choice = rng.randrange(4)
        try:
            if choice == 0:
                how, address = "alloc", arena.alloc(rng.randint(1, 3 * 4096))
            elif choice == 1:
                how, address = "kmalloc", arena.kmalloc(rng.randint(16, 10000))
            else:
                how, address = f"cache{choice - 2}", caches[choice - 2].alloc()
        except OutOfMemoryError:
            failures += 1
            continue
        view = arena.view(address)
        view[:] = _pattern(pid, seq, len(view))
        held.append((how, address, len(view), seq))
        view.release()
    for entry in held:
        release(entry)
    Path(result).write_text(json.dumps({"ops": ops, "checks": checks, "oom": failures}))
    arena.close()
    os._exit(0)


def _start(where: str, seed: int, ops: int, result: Path) -> multiprocessing.process.BaseProcess:
    process = _FORK.Process(target=_worker, args=(where, seed, ops, str(result)))
    process.start()
    return process


def _booted_nr_free(arena: Arena, tmp: Path) -> tuple[int, ...]:
    with Arena.create(tmp / "fresh", size=arena.size, page_size=arena.page_size,
                      max_order=arena.max_order) as fresh:
        return fresh.nr_free


def _run_workers(arena: Arena, where: str, tmp: Path, ops: int) -> int:
    processes = [_start(where, seed, ops, tmp / f"r{seed}") for seed in range(WORKERS)]
    for process in processes:
        process.join()
    assert [process.exitcode for process in processes] == [0] * WORKERS
    results = [json.loads((tmp / f"r{seed}").read_text()) for seed in range(WORKERS)]
    return sum(result["checks"] for result in results)


@pytest.mark.parametrize("lock", ["mutex", "flock"])
def test_four_processes_share_one_arena(tmp_path: Path, lock: str) -> None:
    name = f"kmem-arena-{uuid.uuid4().hex[:12]}"
    arena = Arena.create_shared(name, size=8 << 20, lock=lock)
    try:
        checks = _run_workers(arena, name, tmp_path, OPS)
        print(f"arena shared test ({lock}): {WORKERS} x {OPS} operations, {checks} blocks"
              " checked before their free")
        assert checks > OPS  # each worker checked thousands of blocks
        arena.check()
        stats = arena.stats()
        assert stats.nr_free_pages == arena.nr_pages  # all memory is free again
        assert arena.nr_free == _booted_nr_free(arena, tmp_path)
        assert all(row.active_objs == 0 for row in arena.slabinfo_rows())
        assert stats.kmallocs == stats.kfrees > 0
    finally:
        arena.close()
        arena.unlink()


def _lock_holder(arena: Arena, lock_fd: int, header: mmap.mmap) -> int:
    """The pid holding the arena's lock now, or 0."""
    if arena.lock_kind == "mutex":
        # glibc keeps a robust mutex's owner thread id in its first word (the futex), with
        # the FUTEX_WAITERS and FUTEX_OWNER_DIED bits on top; a worker has one thread.
        return int(struct.unpack_from("<I", header, MUTEX_WORD * 8)[0]) & 0x3FFFFFFF
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
    except BlockingIOError:
        return int(struct.unpack_from("<q", header, D_HOLDER * 8)[0])
    return 0


def _kill_run(tmp_path: Path, kills: int, ops: int, lock: str) -> dict[str, int]:
    path = tmp_path / "heap.bin"
    arena = Arena.create(path, size=8 << 20, lock=lock)
    where = str(path)
    rng = random.Random(kills)
    lock_fd = os.open(path, os.O_RDWR)
    header = mmap.mmap(lock_fd, 4096)
    seed = 0
    running: dict[int, multiprocessing.process.BaseProcess] = {}
    for _ in range(WORKERS):
        process = _start(where, seed, ops, tmp_path / f"r{seed}")
        running[seed] = process
        seed += 1
    finished: dict[int, multiprocessing.process.BaseProcess] = {}
    killed = killed_holding = 0
    try:
        while killed < kills:
            time.sleep(rng.uniform(0.005, 0.08))
            # A worker that ran all its operations is replaced, so that there is always one
            # to kill (on a loaded machine this loop can sleep through whole workers' runs).
            for done_seed, process in list(running.items()):
                if not process.is_alive():
                    process.join()
                    assert process.exitcode == 0, (done_seed, process.exitcode)
                    finished[done_seed] = running.pop(done_seed)
                    running[seed] = _start(where, seed, ops, tmp_path / f"r{seed}")
                    seed += 1
            victim_pid = 0
            if rng.random() < 0.5:  # kill whoever holds the lock right now, if anyone
                victim_pid = _lock_holder(arena, lock_fd, header)
            live = {p.pid: s for s, p in running.items() if p.is_alive() and p.pid}
            if victim_pid not in live:
                if not live:
                    continue
                victim_pid = rng.choice(sorted(live))
            else:
                killed_holding += 1
            os.kill(victim_pid, signal.SIGKILL)
            running[live[victim_pid]].join()
            del running[live[victim_pid]]
            killed += 1
            running[seed] = _start(where, seed, ops, tmp_path / f"r{seed}")
            seed += 1
        for process in running.values():
            process.join()
        finished.update(running)
        exit_codes = {s: p.exitcode for s, p in finished.items()}
        assert set(exit_codes.values()) <= {0}, exit_codes
    finally:
        for process in running.values():
            if process.is_alive():
                process.kill()
                process.join()
        header.close()
        os.close(lock_fd)
    checks = sum(json.loads((tmp_path / f"r{s}").read_text())["checks"] for s in finished)
    arena.check()
    blocks = arena.blocks()
    slabinfo = arena.slabinfo()
    arena.close()
    with Arena.open(path) as reopened:  # a fresh process view of the crashed-on file
        reopened.check()
        assert reopened.blocks() == blocks
        assert reopened.slabinfo() == slabinfo
        recoveries = reopened.stats().recoveries
        # What the killed workers held is still allocated (nothing handed out twice, nothing
        # lost): at most 48 holdings each, plus the one being made.
        leaked = sum(1 for _, _, kind in blocks if kind in ("allocated", "kmalloc"))
        assert leaked <= killed * 49
        # Still fully usable: every remaining free page can be allocated and freed.
        fresh = [reopened.alloc_pages(0) for _ in range(reopened.nr_free_pages)]
        for pfn in fresh:
            reopened.free_pages(pfn, 0)
        reopened.check()
    return {"killed": killed, "killed_holding_lock": killed_holding,
            "rolled_back": recoveries, "survivor_checks": checks}


@pytest.mark.parametrize("lock", ["mutex", "flock"])
def test_workers_killed_at_random_leave_a_consistent_arena(tmp_path: Path, lock: str) -> None:
    counts = _kill_run(tmp_path, KILLS, max(OPS // 4, 2000), lock)
    print(f"arena kill test ({lock}): {counts}")
    assert counts["killed"] == KILLS
    assert counts["survivor_checks"] > 0


@pytest.mark.skipif(not os.environ.get("KMEM_ARENA_LONG"), reason="long: KMEM_ARENA_LONG=1")
@pytest.mark.parametrize("lock", ["mutex", "flock"])
def test_many_kills(tmp_path: Path, lock: str) -> None:
    counts = _kill_run(tmp_path, 10 * KILLS, OPS, lock)
    print(f"arena kill test ({lock}, long): {counts}")
    assert counts["killed"] == 10 * KILLS


def _die_mid_operation(path: str) -> None:
    arena = Arena.open(path)
    with arena._locked():  # an operation in progress, as a holder killed mid-way leaves it
        pfn = arena._rmqueue(0, 2)
        arena._slab_alloc(arena._find_cache("obj"))
        assert pfn >= 0 and arena._words[D_LOG_COUNT] > 0
        os.kill(os.getpid(), signal.SIGKILL)


def test_reopen_after_a_crash_mid_operation_rolls_it_back(tmp_path: Path) -> None:
    path = tmp_path / "heap.bin"
    with Arena.create(path, size=2 << 20) as arena:
        kept = arena.alloc(3 * 4096)
        arena.view(kept)[:4] = b"keep"
        obj = arena.cache("obj", 100).alloc()
        before = (arena.blocks(), arena.nr_free, arena.slabinfo())
    child = _FORK.Process(target=_die_mid_operation, args=(str(path),))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    with Arena.open(path) as arena:
        assert (arena.blocks(), arena.nr_free, arena.slabinfo()) == before
        assert arena.stats().recoveries == 1
        assert bytes(arena.view(kept)[:4]) == b"keep"
        arena.check()
        assert arena.cache("obj", 100).alloc() != obj


def test_a_survivor_rolls_back_what_a_killed_holder_left(tmp_path: Path) -> None:
    path = tmp_path / "heap.bin"
    arena = Arena.create(path, size=2 << 20)
    arena.cache("obj", 100)
    before = arena.blocks()
    child = _FORK.Process(target=_die_mid_operation, args=(str(path),))
    child.start()
    child.join()
    assert arena.blocks() == before  # the next lock holder, this process, undid it
    assert arena.stats().recoveries == 1
    arena.check()
    arena.close()


def test_the_compiled_path_recovers_from_a_dead_holder(tmp_path: Path) -> None:
    """The survivor's first call after the crash is a compiled fast path: it gets EOWNERDEAD
    from the robust mutex, rolls the log back, and allocates as if the crash never was."""
    crashed, twin = tmp_path / "crashed.bin", tmp_path / "twin.bin"
    arenas = [Arena.create(path, size=2 << 20, lock="mutex") for path in (crashed, twin)]
    for arena in arenas:
        arena.cache("obj", 100)
        arena.alloc(5000)
    child = _FORK.Process(target=_die_mid_operation, args=(str(crashed),))
    child.start()
    child.join()
    assert child.exitcode == -signal.SIGKILL
    pfns = [arena.alloc_pages(0) for arena in arenas]  # the first: compiled, EOWNERDEAD
    assert pfns[0] == pfns[1]
    assert arenas[0].blocks() == arenas[1].blocks()
    assert arenas[0].nr_free == arenas[1].nr_free
    assert arenas[0].stats().recoveries == 1
    for arena in arenas:
        arena.check()
        arena.close()
