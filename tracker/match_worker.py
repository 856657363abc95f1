"""Where the live service runs the matcher: in a process of its own, or in a thread.

    Pipeline.process ──pings──▶ MatcherProcess ══pipe══▶ child process: Matcher.match_batch
                     ◀─answers─                ◀═══════                  and Matcher.settle

Each batch's answers are its pings' matches and the revisions of older answers that settled
differently (`tracker.core.settle`).

The matcher is pure Python and numpy, so in the service's own process it shares one interpreter
lock with the MQTT network thread and the event loop (websockets, HTTP, the store writer): while
it computes a batch, they wait. `MatcherProcess` (the default, `Settings.matcher_process`) runs
it in a child process instead, which holds the only `Matcher` and every vehicle's state; the
service sends each micro-batch's pings down a pipe and gets the answers back. On a 2-core
machine this is what lets the tracker take 5,000 pings/s (docs/live.md). `InThreadMatcher` runs
it in a worker thread of the service (for small deployments and tests: no second process).

The child ignores Ctrl-C (the terminal sends it to the whole process group; the parent stops
the child in order) and ends by itself when the parent is gone (its stdin closes), so it never
outlives the service. If it dies (killed, out of memory), a new one is started and the batch is
sent again; the new one has lost the vehicles' state only: each vehicle is matched afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import operator
import os
import pickle
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any, BinaryIO, NamedTuple, Protocol

from tracker.core.matcher import Matcher, MatcherConfig
from tracker.core.model import Match, Ping
from tracker.core.network import Network

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0
# The matcher prepares a whole call's candidates at once (tens of kB per ping on a feed of
# overlapping routes): a big micro-batch is matched in calls of at most this many pings, which
# bounds that memory and gives the same answers (a vehicle's pings stay in order).
CHUNK_PINGS = 500

# Pings and matches cross the pipe as plain tuples of their fields: several times cheaper to
# pickle than the dataclasses.
_ping_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Ping)))
_match_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Match)))


class Answers(NamedTuple):
    """A batch's answers: one match per ping, and the revisions of older answers."""

    matches: list[Match]
    revised: list[Match]


class BatchMatcher(Protocol):
    """What the pipeline needs of a matcher: a batch of pings in, one answer per ping out, and
    the older answers that settled differently."""

    config: MatcherConfig

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Answers: ...


class MatcherCrashedError(RuntimeError):
    """The matcher's process died twice on one batch (or could not be started)."""


class InThreadMatcher:
    """The matcher in a worker thread of the service's process."""

    def __init__(self, network: Network, config: MatcherConfig) -> None:
        self.config = config
        self._matcher = Matcher(network, config)

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Answers:
        return await asyncio.to_thread(answer_batch, self._matcher, pings, now_s)


def answer_batch(matcher: Matcher, pings: Sequence[Ping], now_s: float) -> Answers:
    """`matcher.match_batch`, `CHUNK_PINGS` pings at a time, then `matcher.settle`."""
    matches = [
        match
        for start in range(0, len(pings), CHUNK_PINGS)
        for match in matcher.match_batch(pings[start : start + CHUNK_PINGS], now=now_s)
    ]
    return Answers(matches, matcher.settle(now_s))


class MatcherProcess:
    """The matcher in a child process (see the module docstring). Use as a context manager, or
    `start()` and `close()`; `match_batch` is called by one task at a time.

    The child is `python -m tracker.match_worker`, so that it imports the matcher and nothing
    else of the service. Requests and answers are pickles on its stdin and stdout: first the
    network and the config, then per batch (ping rows, now_s) → ("ok", (match rows, revised
    match rows)) or ("error", traceback); None asks it to finish.
    """

    def __init__(self, network: Network, config: MatcherConfig) -> None:
        self.config = config
        self.restarts = 0  # children started after the first one died
        self._network = network
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def __aenter__(self) -> MatcherProcess:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def start(self) -> None:
        """Start the child and wait until its matcher is built."""
        with self._lock:
            self._start()

    def close(self) -> None:
        """Ask the child to finish, and stop it if it does not."""
        with self._lock:
            self._stop()

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Answers:
        rows = [_ping_fields(p) for p in pings]
        matches, revised = await asyncio.to_thread(self._call, rows, now_s)
        return Answers([Match(*a) for a in matches], [Match(*a) for a in revised])

    def _call(self, rows: list[tuple[Any, ...]], now_s: float) -> tuple[list[Any], list[Any]]:
        """One batch through the child; a dead child is replaced once and the batch resent."""
        with self._lock:
            for attempt in (1, 2):
                if self._process is None or self._process.poll() is not None:
                    self._stop()
                    self.restarts += 1
                    log.error("the matcher's process is gone; starting a new one (its "
                              "vehicles are matched afresh)")  # fmt: skip
                    self._start()
                assert self._process is not None
                try:
                    status, payload = self._ask(self._process, (rows, now_s))
                except (EOFError, OSError, pickle.UnpicklingError) as e:
                    log.error("the matcher's process died during a batch (attempt %d): %s",
                              attempt, e or type(e).__name__)  # fmt: skip
                    self._stop()
                    continue
                if status == "error":  # a bug in the matcher: the child lives on
                    raise RuntimeError(f"the matcher failed on a batch:\n{payload}")
                result: tuple[list[Any], list[Any]] = payload
                return result
            raise MatcherCrashedError("the matcher's process died twice on one batch")

    @staticmethod
    def _ask(process: subprocess.Popen[bytes], request: object) -> Any:
        assert process.stdin is not None
        assert process.stdout is not None
        pickle.dump(request, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.flush()
        return pickle.load(process.stdout)

    def _start(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker.match_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            ready = self._ask(process, (self._network, self.config))
        except (EOFError, OSError, pickle.UnpicklingError):
            process.kill()
            process.wait()
            raise MatcherCrashedError(
                f"the matcher's process exited at start (exit code {process.returncode})"
            ) from None
        assert ready == "ready", ready
        self._process = process
        log.info("matcher running in process %d", process.pid)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            pickle.dump(None, process.stdin)
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child process: build the matcher, then answer batches until told to stop or the
    parent is gone (its end of the pipe closes)."""
    network, config = pickle.load(requests)
    matcher = Matcher(network, config)
    del network

    def answer(reply: object) -> None:
        pickle.dump(reply, answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()

    answer("ready")
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return  # the parent is gone
        if request is None:
            return
        rows, now_s = request
        try:
            matches, revised = answer_batch(matcher, [Ping(*r) for r in rows], now_s)
            reply: tuple[str, Any] = (
                "ok", ([_match_fields(m) for m in matches], [_match_fields(m) for m in revised])
            )  # fmt: skip
        except Exception:
            reply = ("error", traceback.format_exc())
        answer(reply)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    answers_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break the pipe
    with contextlib.suppress(BrokenPipeError):  # the parent is gone
        serve(sys.stdin.buffer, answers_out)
