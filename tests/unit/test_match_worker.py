"""The matcher in its own process (`tracker.match_worker`): the same answers as in-process, and
a child that never outlives the service nor takes it down with it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from simulator.day import SimConfig, simulate
from tests.processes import alive
from tracker.core.engine import CHUNK_PINGS, Engine, EngineConfig
from tracker.core.matcher import Matcher, MatcherConfig
from tracker.core.model import Ping, Reason, State
from tracker.core.network import Network
from tracker.demo import BUNDLED_FEED
from tracker.gtfs.load import load_network
from tracker.match_worker import InThreadMatcher, MatcherProcess

DAY = dt.date(2019, 1, 1)  # a Tuesday of the bundled feed


@pytest.fixture(scope="module")
def network() -> Network:
    return load_network(BUNDLED_FEED)


@pytest.fixture(scope="module")
def batches(network: Network) -> list[tuple[list[Ping], float]]:
    """Simulated pings of a quarter of an hour of the morning, in batches of 200, each with a
    clock a minute after its newest ping."""
    pings = [
        s.ping
        for s in simulate(network, np.random.default_rng(3), DAY, start_s=8 * 3600,
                          end_s=8 * 3600 + 900, config=SimConfig(interval_s=20.0))
    ][:2000]  # fmt: skip
    chunks = [pings[i : i + 200] for i in range(0, len(pings), 200)]
    return [(chunk, max(p.timestamp for p in chunk) + 60.0) for chunk in chunks]


@pytest.fixture
async def process(network: Network) -> AsyncIterator[MatcherProcess]:
    async with MatcherProcess(network, EngineConfig()) as worker:
        yield worker


def wait_until_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


async def test_the_process_answers_as_the_matcher_does_in_process(
    network: Network, batches: list[tuple[list[Ping], float]], process: MatcherProcess
) -> None:
    in_process = Matcher(network, MatcherConfig())
    in_thread = InThreadMatcher(network, EngineConfig())
    states: set[State] = set()
    for pings, now_s in batches:
        expected = in_process.match_batch(pings, now=now_s)
        assert (await process.match_batch(pings, now_s)).matches == expected
        assert (await in_thread.match_batch(pings, now_s)).matches == expected
        states.update(m.state for m in expected)
    assert State.IN_SERVICE in states  # the comparison covers matched pings, not just rejects
    assert process.restarts == 0


async def test_a_big_batch_is_matched_in_chunks_with_the_same_answers(
    network: Network, batches: list[tuple[list[Ping], float]]
) -> None:
    pings = [p for chunk, _ in batches for p in chunk]
    now_s = batches[-1][1]
    assert len(pings) > 3 * CHUNK_PINGS
    at_once = Matcher(network, MatcherConfig()).match_batch(pings, now=now_s)
    assert Engine(network, EngineConfig()).step(pings, now_s).matches == at_once


async def test_bad_pings_come_back_rejected_with_their_reason(process: MatcherProcess) -> None:
    now_s = 1_546_329_600.0
    step = await process.match_batch(
        [Ping("bus-1", now_s, 91.0, 36.8), Ping("bus-2", float("nan"), -1.28, 36.8)], now_s
    )
    assert (step.revised, step.stop_events, step.predictions) == ([], [], {})
    assert [(m.vehicle_id, m.state, m.reason) for m in step.matches] == [
        ("bus-1", State.REJECTED, Reason.BAD_COORDINATES),
        ("bus-2", State.REJECTED, Reason.BAD_TIMESTAMP),
    ]


async def test_a_killed_process_is_replaced_and_the_batch_still_answered(
    network: Network, batches: list[tuple[list[Ping], float]], process: MatcherProcess
) -> None:
    pings, now_s = batches[0]
    first = process.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_until_gone(first)
    answers = await process.match_batch(pings, now_s)
    # A new child, with no memory of the vehicles: as a fresh matcher answers.
    assert answers.matches == Matcher(network, MatcherConfig()).match_batch(pings, now=now_s)
    assert process.restarts == 1
    assert process.pid not in (None, first)


async def test_a_failing_batch_raises_and_the_process_lives_on(
    batches: list[tuple[list[Ping], float]], process: MatcherProcess
) -> None:
    pid = process.pid
    with pytest.raises(RuntimeError, match="the matcher failed on a batch"):
        await process.match_batch([Ping("bus-1", "not a time", 0.0, 0.0)], 0.0)  # type: ignore[arg-type]
    pings, now_s = batches[0]
    assert len((await process.match_batch(pings, now_s)).matches) == len(pings)
    assert (process.pid, process.restarts) == (pid, 0)


async def test_closing_stops_the_process(network: Network) -> None:
    worker = MatcherProcess(network, EngineConfig())
    worker.start()
    pid = worker.pid
    assert pid is not None
    assert alive(pid)
    worker.close()
    assert not alive(pid)
    assert worker.pid is None


def test_the_process_ends_when_the_service_is_killed() -> None:
    """SIGKILL leaves the service no time to stop its child: the child sees its stdin close."""
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from tracker.core.engine import EngineConfig
        from tracker.gtfs.load import load_network
        from tracker.match_worker import MatcherProcess
        worker = MatcherProcess(load_network(Path({str(BUNDLED_FEED)!r})), EngineConfig())
        worker.start()
        print(worker.pid, flush=True)
        time.sleep(600)
        """
    )
    service = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None
        child = int(service.stdout.readline())
        assert alive(child)
        service.kill()
        service.wait()
        assert wait_until_gone(child)
    finally:
        service.kill()
