"""Parsing a trace file in a child process while this process replays it: one streaming pass
on two CPUs.

Parsing and replaying cost about the same per event, and each uses one CPU in CPython. A
ParserProcess runs a TraceParser over the file in a forked child, which sends the events
through a pipe as the EventBatches of TraceParser.parse_batches (marshalled columns: one tail
tuple per distinct tail, so a batch costs little to send and to receive); this process
unmarshals them and replays. The child reads ahead by at most a few batches (the pipe's buffer,
enlarged to 1 MiB where Linux allows), so memory stays bounded, and the events arrive in trace
order, exactly as TraceParser yields them.

    parser = ParserProcess("trace.txt.xz", skip_bad=True)
    result = Replayer().run_batches(parser.batches(), parser=parser)
    parser.lines, parser.bad_lines, parser.bad_examples   # TraceParser's counters, at the end

``parse()`` yields the same events as tuples.

The child reads the text as every command reads it (kmem.trace.perf_data.text_batches): the
lost-event header and markers noted (``lost``, a LostEvents, sent with the counters), plain
perf script's call chains taken out and their page call sites attached.

Errors travel too: a malformed line's TraceFormatError (or a broken file's TraceFileError) is
raised here at the same point of the stream as a TraceParser would raise it, after the events
before it. Closing the iterator early stops the child. The counters (lines, bad_lines,
bad_examples, other_events, events, lost) are filled in when the child has read the whole trace. A
ParserProcess reads its trace once; ``start()`` starts the child before batches() or parse() (do it
before starting threads, such as a progress bar's).

The child is a fork: it holds copies of this process's file descriptors, so a FIFO this process
itself writes to would never reach end of file for it (a writer in another process is fine:
``kmem replay <(xzcat trace.xz)``). The child closes its copy of the pipe's reading end, so
that it ends on its next write if this process dies.

Only files are read this way (a child cannot share the parent's standard input safely), and it
needs the fork start method (Linux): ``available()`` says whether it can run here.
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
import pickle
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

from kmem.errors import InvalidArgumentError, KmemError
from kmem.trace.events import EVENT_NAMES, EventBatch, TraceEvent, batch_events
from kmem.trace.lost import LostEvents
from kmem.trace.parse import TraceFormatError, TraceParser
from kmem.trace.perf_data import text_batches
from kmem.trace.source import TraceFileError, open_trace

# Event batches travel marshalled (columns of bytes, str, int and shared tail tuples: a third
# cheaper than pickle both ways, and both ends are the same Python); the last message, which
# may hold exceptions, is pickled. A pickle (protocol >= 2) starts with the PROTO opcode, which
# no marshalled tuple does.
_PICKLE_PROTO: Final = pickle.PROTO[0]
# The pipe's buffer (Linux's default is 64 KiB, less than a batch): room for a few batches, so
# that neither process waits for the other when one of them is briefly slower.
_PIPE_BUFFER: Final = 1 << 20
# How long close() waits for a child stopped early to end by itself before terminating it.
_CLOSE_GRACE: Final = 2.0


def available() -> bool:
    """Whether a ParserProcess can run here: the fork start method, and more than one CPU."""
    return "fork" in multiprocessing.get_all_start_methods() and (os.cpu_count() or 1) > 1


class ParserProcess:
    """A TraceParser run in a child process over the trace file at ``path``."""

    def __init__(self, path: str | os.PathLike[str], *, skip_bad: bool = False) -> None:
        self.path: Final = os.fspath(path)
        self.skip_bad: Final = skip_bad
        self.bytes_read = 0  # of the file (compressed bytes, as stored), for a progress bar
        # TraceParser's counters, filled in from the child's at the end of the trace.
        self.lines = 0
        self.bad_lines = 0
        self.bad_examples: list[TraceFormatError] = []
        self.other_events: dict[str, int] = {}
        self.events: dict[str, int] = dict.fromkeys(EVENT_NAMES, 0)
        self.lost = LostEvents()  # what the trace's header and markers tell of lost events
        self._child: BaseProcess | None = None
        self._finished = False  # the child sent its last message ("done" or "error")
        self._receive: Connection | None = None

    def start(self) -> None:
        """Open the trace and start the child (parse() does it if not done yet). Start it
        before this process starts threads (a progress bar's): a fork copies only the calling
        thread, and a lock another thread held at that moment would stay held in the child."""
        if self._child is not None:
            return
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - the child reads it; closed below
        except OSError as error:
            raise TraceFileError(f"cannot open trace {self.path!r}: {error.strerror}") from error
        with raw:
            context = multiprocessing.get_context("fork")
            self._receive, send = context.Pipe(duplex=False)
            _enlarge(send)
            self._child = context.Process(
                target=_child, args=(raw, self.skip_bad, send, self._receive), daemon=True)
            self._child.start()
            send.close()  # the child's end: the pipe reports EOF if the child dies

    def close(self) -> None:
        """Stop the child if it runs (parse() does this when it ends or is closed)."""
        if self._receive is not None:
            self._receive.close()
        child = self._child
        if child is not None and child.pid is not None:
            # A child that sent its last message ends by itself (it may still be flushing, as
            # coverage's data in the tests: a terminate then would leave that half written).
            # One stopped early ends on its next write to the closed pipe; the grace covers a
            # child stuck reading a FIFO whose writer is silent.
            child.join(None if self._finished else _CLOSE_GRACE)
            if child.is_alive():
                child.terminate()
                child.join()

    def parse(self, progress: Callable[[int], object] | None = None
              ) -> Generator[TraceEvent, None, None]:
        """Yield the trace's events in order; ``progress(bytes_read)`` after each batch."""
        for batch in self.batches(progress):
            yield from batch_events(batch)

    def batches(self, progress: Callable[[int], object] | None = None
                ) -> Generator[EventBatch, None, None]:
        """Yield the trace's events as EventBatches (TraceParser.parse_batches' batches), in
        order; ``progress(bytes_read)`` after each batch."""
        if self._receive is not None and self._receive.closed:
            raise InvalidArgumentError(f"this ParserProcess has read {self.path!r} already:"
                                       " make a new one to read it again")
        self.start()
        child, receive = self._child, self._receive
        assert child is not None and receive is not None
        try:
            unmarshal = marshal.loads
            while True:
                try:
                    blob = receive.recv_bytes()
                except EOFError:
                    child.join()
                    raise TraceFileError(
                        f"the parser process of {self.path!r} stopped without a word"
                        f" (exit code {child.exitcode})") from None
                if blob[0] != _PICKLE_PROTO:  # a marshalled (bytes read, columns) batch
                    self.bytes_read, columns = unmarshal(blob)
                    if progress is not None:
                        progress(self.bytes_read)
                    yield EventBatch._make(columns)
                    continue
                message = pickle.loads(blob)
                self._finished = True
                if message[0] == "done":
                    self._take_counters(message[1])
                    return
                else:  # "error": what the child's TraceParser raised, at this point
                    self._take_counters(message[2])
                    raise message[1]
        finally:
            self.close()  # (the caller may have stopped early)

    def _take_counters(self, counters: dict[str, Any]) -> None:
        for name, value in counters.items():
            setattr(self, name, value)


def _enlarge(connection: Connection) -> None:
    """Give the pipe _PIPE_BUFFER bytes of buffer where the system allows (Linux, up to
    /proc/sys/fs/pipe-max-size); elsewhere it keeps its size, which is only slower."""
    try:
        import fcntl  # (Unix only: imported here, where a fork is known to exist)

        fcntl.fcntl(connection.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BUFFER)
    except (OSError, AttributeError):  # (AttributeError: a system without F_SETPIPE_SZ)
        pass


def _counters(parser: TraceParser, lost: LostEvents) -> dict[str, Any]:
    return {"lines": parser.lines, "bad_lines": parser.bad_lines,
            "bad_examples": parser.bad_examples, "other_events": parser.other_events,
            "events": parser.events, "lost": lost}


def _child(raw: Any, skip_bad: bool, send: Connection, receive: Connection) -> None:
    """The child: parse, and send (bytes read, batch) marshalled, then ("done", counters) or
    ("error", exception, counters) pickled."""
    # Its copy of the parent's end, closed: if the parent dies, a write fails (EPIPE) and the
    # child ends, instead of waiting forever on a pipe it holds both ends of.
    receive.close()
    position = raw.tell if raw.seekable() else lambda: 0  # (a pipe or a FIFO has none)
    parser = TraceParser(skip_bad=skip_bad)
    lost = LostEvents()
    dump_batch = marshal.dumps
    failure: list[KmemError] = []
    try:
        # The batch of the events before an error goes first (parse_batches yields it before
        # raising), so the parent raises it where a TraceParser would: after them. (Caught
        # outside open_trace's block, which names the file in the error.)
        try:
            with open_trace(raw) as lines:  # (read as every command reads text: text_batches)
                for batch in text_batches(parser, lines, lost):
                    send.send_bytes(dump_batch((position(), tuple(batch))))
        except KmemError as error:
            failure.append(error)
        message: tuple[Any, ...] = (
            ("error", failure[0], _counters(parser, lost)) if failure
            else ("done", _counters(parser, lost)))
    except Exception as error:  # a bug: say so in the parent rather than hang or vanish
        message = ("error", TraceFileError(f"the parser process failed: {error!r}"),
                   _counters(parser, lost))
    try:
        send.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
    except OSError:
        pass  # the parent stopped reading (it closed the iterator early, or died)
    finally:
        send.close()


__all__ = ["ParserProcess", "available"]
