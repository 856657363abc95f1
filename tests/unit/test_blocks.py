"""One bus per block over the fleet (tracker.core.blocks) and settled answers (tracker.core.settle).

The tiny feed `two_directions_feed` has two blocks on one street: "blk1" leaves northbound at
06:00, 06:24, ... and southbound at 06:12, 06:36, ...; "blk2" the other way round. A bus of
blk1 ten minutes late leaves northbound at 06:10, which by schedule alone is blk2's 06:12 trip
two minutes early: only blk2's own bus, on time, tells them apart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests import feeds
from tests.unit.test_matcher import WEEKDAY, drive, network_of
from tracker.core.blocks import NO_BLOCK
from tracker.core.filter import Hypothesis
from tracker.core.matcher import Matcher, _rounds
from tracker.core.model import Match, Ping
from tracker.core.network import Network
from tracker.core.settle import Recent, SettleWindow
from tracker.core.tables import BlockConfig, MatcherConfig

LATE_S = 600.0


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return network_of(feeds.two_directions_feed, tmp_path)


def block_of(network: Network, trip_id: str | None) -> str | None:
    return None if trip_id is None else network.trips[network.trip_index[trip_id]].block_id


def late_bus(network: Network, vehicle: str = "late") -> list[Ping]:
    """blk1's bus, 10 minutes late on its 06:00 northbound and 06:12 southbound trips."""
    return drive(network, "B_N_0600", WEEKDAY, vehicle=vehicle, delay_s=LATE_S) + drive(
        network, "B_S_0612", WEEKDAY, vehicle=vehicle, delay_s=LATE_S
    )


def on_time_bus(network: Network, vehicle: str = "on_time") -> list[Ping]:
    """blk2's bus on time: 06:00 southbound, 06:12 northbound, 06:24 southbound."""
    return [
        p
        for trip_id in ("B_S_0600", "B_N_0612", "B_S_0624")
        for p in drive(network, trip_id, WEEKDAY, vehicle=vehicle)
    ]


def replay(matcher: Matcher, pings: list[Ping]) -> list[Match]:
    """`pings` in time order, one batch per moment (as the live service receives them)."""
    pings = sorted(pings, key=lambda p: p.timestamp)
    now = max(p.timestamp for p in pings) + 60
    return [m for p in pings for m in matcher.match_batch([p], now=now)]


def share_on(network: Network, matches: list[Match], vehicle: str, block: str) -> float:
    mine = [m for m in matches if m.vehicle_id == vehicle and m.trip_id is not None]
    return sum(block_of(network, m.trip_id) == block for m in mine) / len(mine)


def test_a_late_bus_keeps_its_block_because_the_other_block_has_its_own_bus(
    network: Network,
) -> None:
    pings = late_bus(network) + on_time_bus(network)
    with_fleet = replay(Matcher(network), pings)
    assert share_on(network, with_fleet, "late", "blk1") >= 0.9
    assert share_on(network, with_fleet, "on_time", "blk2") >= 0.95
    late = [m for m in with_fleet if m.vehicle_id == "late" and m.trip_id == "B_N_0600"]
    assert sorted(m.delay_s or 0.0 for m in late)[len(late) // 2] == pytest.approx(LATE_S, abs=60)
    # Each bus on its own filter (no assignment of blocks) takes blk2's trip for the late bus:
    # the test tells the two apart.
    alone = replay(Matcher(network, MatcherConfig(assign_blocks=False)), pings)
    assert share_on(network, alone, "late", "blk1") < 0.5


def test_no_two_buses_that_report_get_one_block_at_once(network: Network) -> None:
    pings = late_bus(network) + on_time_bus(network)
    matcher = Matcher(network)
    by_time: dict[float, dict[str, str | None]] = {}
    for m in replay(matcher, pings):
        by_time.setdefault(m.timestamp // 30, {})[m.vehicle_id] = block_of(network, m.trip_id)
    both = [blocks for blocks in by_time.values() if len(blocks) == 2]
    assert len(both) > 20
    assert all(
        blocks["late"] != blocks["on_time"] for blocks in both if None not in blocks.values()
    )


def test_a_bus_with_a_trip_id_holds_its_block_for_the_buses_without(network: Network) -> None:
    # blk2's bus sends its trip_id (believed); the late bus sends none.
    pings = late_bus(network) + on_time_bus(network)
    with_ids = [dataclasses.replace(p, trip_id=_trip_at(network, p)) if p.vehicle_id == "on_time"
                else p for p in pings]  # fmt: skip
    matches = replay(Matcher(network), with_ids)
    assert all(m.trip_id_given for m in matches if m.vehicle_id == "on_time")
    assert share_on(network, matches, "late", "blk1") >= 0.9


def _trip_at(network: Network, ping: Ping) -> str:
    """The trip `on_time_bus` drives at the ping's time."""
    origin = network.day_origin(WEEKDAY)
    for trip_id in ("B_S_0600", "B_N_0612", "B_S_0624"):
        run = network.runs_of_trip[network.trip_index[trip_id]][0]
        if ping.timestamp <= origin + float(network.runs.end_s[run]):
            return trip_id
    raise AssertionError(ping)


def test_the_answers_of_a_bus_seen_alone_first_are_settled_once_the_other_bus_reports(
    network: Network,
) -> None:
    # The late bus is seen alone for 4 minutes (06:10-06:14): it looks like blk2's 06:12 trip.
    # Then blk2's bus reports: the late bus was on blk1 all along.
    on_time = [p for p in on_time_bus(network) if p.timestamp >= _at(network, "06:14")]
    pings = late_bus(network) + on_time
    config = MatcherConfig(settle_lag_s=900.0)
    matcher = Matcher(network, config)
    live = replay(matcher, pings)
    early = [m for m in live if m.vehicle_id == "late" and m.timestamp < _at(network, "06:14")]
    assert early
    assert all(block_of(network, m.trip_id) == "blk2" for m in early)  # wrong, live
    revised = matcher.settle(float("inf"))
    fixed = {m.timestamp: m for m in revised if m.vehicle_id == "late"}
    assert all(block_of(network, fixed[m.timestamp].trip_id) == "blk1" for m in early)
    # Only changed answers come back, each once.
    assert all(m.trip_id != live_m.trip_id for live_m in live for m in revised
               if (m.vehicle_id, m.timestamp) == (live_m.vehicle_id, live_m.timestamp))  # fmt: skip
    assert matcher.settle(float("inf")) == []


def _at(network: Network, hhmm: str) -> float:
    hours, minutes = hhmm.split(":")
    return network.day_origin(WEEKDAY) + int(hours) * 3600 + int(minutes) * 60


def test_settling_waits_for_the_lag(network: Network) -> None:
    matcher = Matcher(network, MatcherConfig(settle_lag_s=120.0))
    pings = late_bus(network)
    replay(matcher, pings[:10])
    assert matcher.window is not None
    assert len(matcher.window) == 10
    matcher.settle(pings[9].timestamp)  # only the pings more than 120 s older than the 10th
    assert len(matcher.window) == sum(p.timestamp >= pings[9].timestamp - 120 for p in pings[:10])


@pytest.mark.parametrize(("fresh_s", "second_gets_it"), [(600.0, True), (1e9, False)])
def test_a_silent_bus_frees_its_block_for_another(
    network: Network, fresh_s: float, second_gets_it: bool
) -> None:
    # blk2's first bus stops reporting after its first trip; another bus runs blk2 from 06:24
    # on. Once the first has been silent for `fresh_s`, the block is the second bus's; if it
    # never went stale, the first would keep it until the second's evidence outweighs the
    # first's (every ping of the first unexplained), and the second be put on blk1 till then.
    matcher = Matcher(network, MatcherConfig(blocks=BlockConfig(fresh_s=fresh_s)))
    first = drive(network, "B_S_0600", WEEKDAY, vehicle="first")
    second = [p for trip_id in ("B_S_0624", "B_N_0636")
              for p in drive(network, trip_id, WEEKDAY, vehicle="second")]  # fmt: skip
    matches = replay(matcher, first + second)
    later = [m for m in matches if m.vehicle_id == "second" and m.timestamp > first[-1].timestamp
             + 600]  # fmt: skip
    assert later
    on_blk2 = sum(block_of(network, m.trip_id) == "blk2" for m in later) / len(later)
    if second_gets_it:
        assert on_blk2 == 1.0
    else:
        assert on_blk2 < 0.5


def test_a_feed_without_blocks_has_no_assignment(tmp_path: Path) -> None:
    network = network_of(feeds.frequency_feed, tmp_path)
    assert Matcher(network).fleet is None
    assert Matcher(network, MatcherConfig(settle_lag_s=60.0)).window is None


def test_rounds_are_moments_with_one_ping_per_vehicle_in_arrival_order() -> None:
    def ping(vehicle: str, t: float) -> Ping:
        return Ping(vehicle, t, 33.5, -7.6)

    # Bus "a" reports every 10 s, "b" every 60 s, and "a" sent its 5 s ping late.
    pings = [ping("a", 0), ping("b", 0), ping("a", 10), ping("a", 5), ping("a", 20),
             ping("b", 60), ping("a", 70)]  # fmt: skip
    # One ping per vehicle per round, within 30 s; "a" in arrival order (its 5 s ping after
    # the 10 s one, to be rejected as out of order); "b" at 60 s waits for "a" at 70 s.
    assert _rounds(pings, span_s=30.0) == [[0, 1], [2], [3], [4], [5, 6]]


def test_the_settle_window_hands_each_ping_back_once_after_the_lag() -> None:
    with pytest.raises(ValueError, match="lag_s"):
        SettleWindow(0.0)
    window = SettleWindow(60.0)
    h = Hypothesis(0, WEEKDAY, 0.0, 0.0, 0.0)
    for t in (0.0, 30.0, 10.0, 90.0):
        window.add(Recent("bus", t, 0.0, 0.0, h, NO_BLOCK, h, (), None, None))
    assert [r.timestamp for r in window.due(59.0)] == []
    # Arrival order: the 10 s ping arrived after the 30 s one and waits for it.
    assert [r.timestamp for r in window.due(80.0)] == [0.0]
    assert [r.timestamp for r in window.due(95.0)] == [30.0, 10.0]
    assert [r.timestamp for r in window.due(1e9)] == [90.0]
    assert len(window) == 0
