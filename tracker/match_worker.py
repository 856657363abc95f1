"""Where the live service runs its engine (the matcher and what reads its answers: stop events,
predictions, operations signals; `tracker.core.engine`): in a process of its own, or a thread.

    Pipeline.process ──pings──▶ MatcherProcess ══pipe══▶ child process: Engine.step
                     ◀──step───                ◀═══════

Each batch's `Step` holds its pings' matches, the revisions of older answers that settled
differently (`tracker.core.settle`), the stop events detected, new predictions and, every few
seconds, the operations assessment.

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
from typing import Any, BinaryIO, Protocol

from tracker.core.engine import Engine, EngineConfig, Step
from tracker.core.model import Match, Ping
from tracker.core.network import Network
from tracker.core.predict import Prediction
from tracker.core.stop_events import StopEvent

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 5.0

# Pings, matches, stop events and predictions cross the pipe as plain tuples of their fields:
# several times cheaper to pickle than the dataclasses.
_ping_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Ping)))
_match_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Match)))
_event_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(StopEvent)))
_prediction_fields = operator.attrgetter(*(f.name for f in dataclasses.fields(Prediction)))


class BatchMatcher(Protocol):
    """What the pipeline needs of its engine: a batch of pings in, a `Step` out."""

    config: EngineConfig

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Step: ...


class MatcherCrashedError(RuntimeError):
    """The matcher's process died twice on one batch (or could not be started)."""


class InThreadMatcher:
    """The engine in a worker thread of the service's process."""

    def __init__(
        self, network: Network, config: EngineConfig, history: Sequence[StopEvent] = ()
    ) -> None:
        self.config = config
        self.engine = Engine(network, config, history)

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Step:
        return await asyncio.to_thread(self.engine.step, pings, now_s)


def _encode_step(step: Step) -> tuple[Any, ...]:
    """A `Step` as plain tuples, for the pipe (the assessment and scores as they are)."""
    return (
        [_match_fields(m) for m in step.matches],
        [_match_fields(m) for m in step.revised],
        [_match_fields(m) for m in step.late_matched],
        [_event_fields(e) for e in step.stop_events],
        {v: [_prediction_fields(p) for p in made] for v, made in step.predictions.items()},
        step.assessment,
        step.accuracy,
    )


def _decode_step(encoded: tuple[Any, ...]) -> Step:
    matches, revised, late_matched, events, predictions, assessment, accuracy = encoded
    return Step(
        [Match(*m) for m in matches],
        [Match(*m) for m in revised],
        [Match(*m) for m in late_matched],
        [StopEvent(*e) for e in events],
        {v: [Prediction(*p) for p in made] for v, made in predictions.items()},
        assessment,
        accuracy,
    )


class MatcherProcess:
    """The engine in a child process (see the module docstring). Use as a context manager, or
    `start()` and `close()`; `match_batch` is called by one task at a time.

    The child is `python -m tracker.match_worker`, so that it imports the engine and nothing
    else of the service. Requests and answers are pickles on its stdin and stdout: first the
    network, the config and the stop events to learn from, then per batch (ping rows, now_s) →
    ("ok", the step as tuples) or ("error", traceback); None asks it to finish.
    """

    def __init__(
        self, network: Network, config: EngineConfig, history: Sequence[StopEvent] = ()
    ) -> None:
        self.config = config
        self.restarts = 0  # children started after the first one died
        self._network = network
        self._history = [_event_fields(e) for e in history]
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

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Step:
        rows = [_ping_fields(p) for p in pings]
        return _decode_step(await asyncio.to_thread(self._call, rows, now_s))

    def _call(self, rows: list[tuple[Any, ...]], now_s: float) -> tuple[Any, ...]:
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
                result: tuple[Any, ...] = payload
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
            ready = self._ask(process, (self._network, self.config, self._history))
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
    """The child process: build the engine, then answer batches until told to stop or the
    parent is gone (its end of the pipe closes)."""
    network, config, history = pickle.load(requests)
    engine = Engine(network, config, [StopEvent(*e) for e in history])
    del network, history

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
            reply: tuple[str, Any] = ("ok", _encode_step(engine.step([Ping(*r) for r in rows],
                                                                     now_s)))  # fmt: skip
        except Exception:
            reply = ("error", traceback.format_exc())
        answer(reply)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    answers_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break the pipe
    with contextlib.suppress(BrokenPipeError):  # the parent is gone
        serve(sys.stdin.buffer, answers_out)
