"""Late pings (tracker.core.late) through the engine: a phone back in coverage sends its live
position first, then the positions it buffered while out of coverage."""

from __future__ import annotations

import dataclasses

from tests.unit.test_matcher import WEEKDAY, drive
from tracker.core.engine import Engine, EngineConfig
from tracker.core.late import LateConfig
from tracker.core.model import Ping, Reason, State
from tracker.core.network import Network

QUIET_S = 10.0


def engine_of(network: Network, **late: int) -> Engine:
    return Engine(network, EngineConfig(late=LateConfig(quiet_s=QUIET_S, **late)))


def test_buffered_pings_after_the_live_one_are_held_then_matched_with_hindsight(
    two_directions: Network,
) -> None:
    engine = engine_of(two_directions)
    pings = drive(two_directions, "B_N_0600", WEEKDAY, every_s=10.0)
    assert len(pings) > 12
    before, buffered, newest = pings[:3], pings[3:-1], pings[-1]
    for ping in [*before, newest]:  # live: the phone's last position before and after the gap
        step = engine.step([ping], ping.timestamp + 1.0)
        assert step.matches[0].trip_id == "B_N_0600"
    now_s = newest.timestamp + 2.0
    events_before = engine.detector.progress("bus1")

    # the buffer comes at once: answered `late` now, the live state untouched
    step = engine.step(buffered, now_s)
    assert [m.reason for m in step.matches] == [Reason.LATE] * len(buffered)
    assert all(m.state is State.NOT_MATCHED for m in step.matches)
    assert [m.timestamp for m in step.matches] == [p.timestamp for p in buffered]
    assert step.late_matched == []
    assert step.stop_events == []
    assert engine.matcher.states["bus1"].last_timestamp == newest.timestamp
    assert engine.detector.progress("bus1") == events_before
    assert engine.late.held == len(buffered)

    # a copy of a held one is a duplicate; nothing is matched before the stretch is quiet
    again = engine.step([buffered[0]], now_s + QUIET_S / 2)
    assert again.matches[0].reason is Reason.DUPLICATE
    assert engine.step([], now_s + QUIET_S - 0.5).late_matched == []

    done = engine.step([], now_s + QUIET_S)
    assert [m.timestamp for m in done.late_matched] == [p.timestamp for p in buffered]
    assert all(m.trip_id == "B_N_0600" for m in done.late_matched)
    # as a bus that reported them in time: waiting at the first stop, then in service
    states = [m.state for m in done.late_matched]
    assert set(states) <= {State.LAYOVER, State.IN_SERVICE}
    assert states.count(State.IN_SERVICE) >= 0.9 * len(states)
    assert engine.late.held == 0
    assert engine.late.stats.matched == len(buffered)
    # the live filter goes on from its newest ping
    after = engine.step([dataclasses.replace(newest, timestamp=newest.timestamp + 5)], now_s + 11)
    assert after.matches[0].state is not State.REJECTED


def test_late_pings_mixed_in_one_batch_and_the_bounds(two_directions: Network) -> None:
    pings = drive(two_directions, "B_N_0600", WEEKDAY, every_s=10.0)
    engine = engine_of(two_directions, max_held_pings=2, pings_per_step=1)
    now_s = pings[-1].timestamp + 1.0
    bad = dataclasses.replace(pings[1], lat=95.0)
    step = engine.step([pings[5], pings[6], pings[2], bad, pings[3], pings[4]], now_s)
    reasons = [m.reason for m in step.matches]
    # in order; older than the batch's own newest is late too; a bad one is rejected as such
    assert reasons[:2] == [None, None]
    assert reasons[2:] == [Reason.LATE, Reason.BAD_COORDINATES, Reason.LATE, Reason.LATE]
    assert step.matches[3].state is State.REJECTED
    assert "too many late pings" in (step.matches[5].detail or "")
    assert engine.late.stats.not_held == 1
    assert engine.late.held == 2
    # another vehicle's stretch: each step matches about `pings_per_step`, whole stretches
    other = drive(two_directions, "B_N_0600", WEEKDAY, every_s=10.0, vehicle="bus2")
    engine = engine_of(two_directions, pings_per_step=1)
    engine.step([pings[6], other[6]], now_s)
    engine.step([pings[2], pings[3], other[2]], now_s)
    first = engine.step([], now_s + QUIET_S)
    second = engine.step([], now_s + QUIET_S)
    assert {len(first.late_matched), len(second.late_matched)} == {1, 2}
    assert engine.late.held == 0


def test_a_full_stretch_is_matched_without_waiting(two_directions: Network) -> None:
    pings = drive(two_directions, "B_N_0600", WEEKDAY, every_s=10.0)
    engine = engine_of(two_directions, max_stretch_pings=3)
    now_s = pings[-1].timestamp + 1.0
    engine.step([pings[-1]], now_s)
    assert len(engine.step(pings[:2], now_s).late_matched) == 0
    assert len(engine.step(pings[2:4], now_s).late_matched) == 4


def test_a_vehicle_the_engine_does_not_know_is_matched_live(two_directions: Network) -> None:
    engine = engine_of(two_directions)
    ping = drive(two_directions, "B_N_0600", WEEKDAY, every_s=10.0)[4]
    step = engine.step([Ping(ping.vehicle_id, ping.timestamp, ping.lat, ping.lon)], ping.timestamp)
    assert step.matches[0].reason is not Reason.LATE
