"""Matching a recorded day with hindsight (tracker.core.hindsight) on the tiny feeds."""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests import feeds
from tests.unit.test_matcher import WEEKDAY, drive, match_all, network_of
from tracker.core import hindsight
from tracker.core.candidates import PingCache
from tracker.core.hindsight import match_recorded, match_vehicle
from tracker.core.model import Match, Ping, Reason, State
from tracker.core.network import Network
from tracker.core.tables import MatcherConfig


def in_time_order(*streams: list[Ping]) -> list[Ping]:
    return sorted((p for s in streams for p in s), key=lambda p: p.timestamp)


def test_two_buses_are_not_given_the_same_trip(tmp_path: Path) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    # blk2's bus runs B_N_0612 on time. blk1's bus runs B_N_0600 ten minutes late, which by
    # schedule alone looks like B_N_0612 two minutes early: live, both get B_N_0612.
    on_time = drive(network, "B_N_0612", WEEKDAY, vehicle="on_time")
    late = drive(network, "B_N_0600", WEEKDAY, vehicle="late", delay_s=600)
    pings = in_time_order(on_time, late)
    now = max(p.timestamp for p in pings) + 60

    live = match_all(network, pings)
    late_live = [m.trip_id for p, m in zip(pings, live, strict=True) if p.vehicle_id == "late"]
    assert late_live.count("B_N_0612") > len(late_live) / 2  # the confusion this test is about

    recorded = match_recorded(network, pings, [now] * len(pings))
    by_vehicle: dict[str, list[str | None]] = {"on_time": [], "late": []}
    for p, m in zip(pings, recorded, strict=True):
        assert m.vehicle_id == p.vehicle_id
        assert m.timestamp == p.timestamp
        by_vehicle[p.vehicle_id].append(m.trip_id)
    settled = slice(2, None)  # a bus needs a fix or two to be told from the other
    assert set(by_vehicle["on_time"][settled]) == {"B_N_0612"}
    assert set(by_vehicle["late"][settled]) == {"B_N_0600"}
    delays = [m.delay_s for p, m in zip(pings, recorded, strict=True) if p.vehicle_id == "late"]
    assert all(d is not None and abs(d - 600) < 60 for d in delays[2:])


def test_a_bus_keeps_to_its_block_when_the_other_blocks_bus_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    # blk2's bus stops reporting after two trips. blk1's bus runs four trips on time, then
    # waits and runs the rest of its block 11.5 minutes late, which by schedule is blk2's
    # trips half a minute early; no other bus holds them now.
    blk1 = ["B_N_0600", "B_S_0612", "B_N_0624", "B_S_0636",
            "B_N_0648", "B_S_0700", "B_N_0712", "B_S_0724"]  # fmt: skip
    late: list[Ping] = []
    for k, trip_id in enumerate(blk1):
        late += drive(network, trip_id, WEEKDAY, vehicle="late", delay_s=0 if k < 4 else 690)
    gone = drive(network, "B_S_0600", WEEKDAY, vehicle="gone")
    gone += drive(network, "B_N_0612", WEEKDAY, vehicle="gone")
    pings = in_time_order(late, gone)
    now = [max(p.timestamp for p in pings) + 60] * len(pings)

    def trips_of_late_bus() -> list[str | None]:
        recorded = match_recorded(network, pings, now)
        trips = [m.trip_id for p, m in zip(pings, recorded, strict=True) if p.vehicle_id == "late"]
        return list(dict.fromkeys(trips))

    with monkeypatch.context() as without:
        without.setattr(hindsight, "BLOCK_CHANGE_COST", -math.inf)
        assert "B_N_0700" in trips_of_late_bus()  # the confusion this test is about
    assert trips_of_late_bus() == blk1


def test_answers_come_back_in_input_order_with_rejections_kept(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    pings = drive(network, "L_0630", WEEKDAY)
    pings.insert(5, pings[4])  # a duplicate
    pings.insert(9, dataclasses.replace(pings[8], lat=91.0))  # a broken fix
    now = max(p.timestamp for p in pings) + 60
    recorded = match_recorded(network, pings, [now] * len(pings))
    assert [m.timestamp for m in recorded] == [p.timestamp for p in pings]
    assert recorded[5].reason is Reason.DUPLICATE
    assert recorded[9].reason is Reason.BAD_COORDINATES
    kept = [m for i, m in enumerate(recorded) if i not in (5, 9)]
    assert all(m.trip_id == "L_0630" for m in kept)
    assert all(m.state is not State.REJECTED for m in kept)


def test_a_ping_from_the_future_is_rejected_by_its_own_clock(tmp_path: Path) -> None:
    network = network_of(feeds.loop_feed, tmp_path)
    pings = drive(network, "L_0630", WEEKDAY)
    nows = [p.timestamp + 1 for p in pings]
    nows[3] = pings[3].timestamp - 3600  # this ping arrived an hour before its own timestamp
    recorded = match_recorded(network, pings, nows)
    assert recorded[3].reason is Reason.FUTURE_TIMESTAMP
    assert sum(m.state is State.REJECTED for m in recorded) == 1


def test_a_vehicle_matched_again_from_its_cache_gets_the_same_answers(tmp_path: Path) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    pings = drive(network, "B_N_0600", WEEKDAY, vehicle="late", delay_s=600)
    now = [max(p.timestamp for p in pings) + 60] * len(pings)
    config = MatcherConfig(keep_paths=True)
    fresh = match_vehicle(network, config, pings, now, {})
    cache: PingCache = {}
    first = match_vehicle(network, config, pings, now, {}, cache=cache)
    assert len(cache) == len(pings)
    again = match_vehicle(network, config, pings, now, {}, cache=cache)
    assert first == fresh
    assert again == fresh
    # With an exclusion the cached candidates are narrowed just as fresh ones are.
    key = next(iter(fresh.spans))
    excluded = {key: [(pings[0].timestamp, pings[-1].timestamp)]}
    assert match_vehicle(network, config, pings, now, excluded, cache=cache) == match_vehicle(
        network, config, pings, now, excluded
    )


def count_rematches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, `calls[0]` counts hindsight's `match_vehicle` calls (first pass included)."""
    calls = [0]
    real = hindsight.match_vehicle

    def counted(*args: Any, **kwargs: Any) -> hindsight.VehiclePath:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(hindsight, "match_vehicle", counted)
    return calls


def devices_of_two_buses(network: Network, devices: int) -> list[Ping]:
    """`devices` devices on each bus of `test_two_buses_are_not_given_the_same_trip`, device k
    reporting 2k seconds after device 0 (so up to 67 m behind it), named "<bus>-<k>"."""
    return in_time_order(
        *(
            drive(network, trip_id, WEEKDAY, vehicle=f"{bus}-{k}", delay_s=delay_s + 2 * k)
            for bus, trip_id, delay_s in (("on_time", "B_N_0612", 0), ("late", "B_N_0600", 600))
            for k in range(devices)
        )
    )


def settled_trips(pings: list[Ping], recorded: list[Match]) -> dict[str, set[str | None]]:
    """Each device's trips, leaving out its first two fixes (a bus needs them to be told)."""
    trips: dict[str, list[str | None]] = defaultdict(list)
    for p, m in zip(pings, recorded, strict=True):
        assert (m.vehicle_id, m.timestamp) == (p.vehicle_id, p.timestamp)
        trips[p.vehicle_id].append(m.trip_id)
    return {vehicle_id: set(t[2:]) for vehicle_id, t in trips.items()}


def test_many_devices_on_one_bus_are_settled_once_for_all_of_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    calls = count_rematches(monkeypatch)
    # One device per bus: the late bus gives up B_N_0612 to the bus on time.
    one = devices_of_two_buses(network, 1)
    match_recorded(network, one, [max(p.timestamp for p in one) + 60] * len(one))
    calls_one = calls[0]
    assert calls_one > 2  # re-matches beyond the first pass: the conflict this test is about

    calls[0] = 0
    many = devices_of_two_buses(network, 6)
    recorded = match_recorded(network, many, [max(p.timestamp for p in many) + 60] * len(many))
    trips = settled_trips(many, recorded)
    assert trips == {f"on_time-{k}": {"B_N_0612"} for k in range(6)} | {
        f"late-{k}": {"B_N_0600"} for k in range(6)
    }
    # Each bus's devices are one bus: the conflict is settled for the first device of each
    # alone, as with one device per bus; the others cost their first pass and, for the late
    # bus, whose trip changed, one re-match each.
    assert calls[0] == calls_one + 10 + 5


def test_conflict_rounds_stop_at_their_budget_of_rematches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = network_of(feeds.two_directions_feed, tmp_path)
    calls = count_rematches(monkeypatch)
    pings = devices_of_two_buses(network, 6)
    now = [max(p.timestamp for p in pings) + 60] * len(pings)
    # Devices not seen as one bus (as if they were far apart): every device of a bus conflicts
    # with every other, pair by pair.
    monkeypatch.setattr(hindsight, "TOGETHER_MIN_FIXES", 10**9)
    with monkeypatch.context() as unbounded:
        unbounded.setattr(hindsight, "REMATCHES_PER_BUS", 10**9)
        match_recorded(network, pings, now)
    assert calls[0] > 12 + hindsight.REMATCHES_PER_BUS * 12  # the work this test is about

    calls[0] = 0
    recorded = match_recorded(network, pings, now)
    assert calls[0] <= 12 + hindsight.REMATCHES_PER_BUS * 12
    assert [(m.vehicle_id, m.timestamp) for m in recorded] == [
        (p.vehicle_id, p.timestamp) for p in pings
    ]
