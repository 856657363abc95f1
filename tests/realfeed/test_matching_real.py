"""The matcher on real agency data from ../shared/data (see its README for each feed's terms)."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from tests.shared_data import SHARED_DATA, required
from tracker.core.matcher import Matcher
from tracker.core.model import Ping, State
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, read_pings

pytestmark = pytest.mark.realfeed

DATA = required(SHARED_DATA)


def read(path: Path) -> list[Ping]:
    return [p for p in read_pings(path) if not isinstance(p, BadRow)]


def test_caltrain_delays_agree_with_the_agencys_trip_updates(tmp_path: Path) -> None:
    network = load_network(DATA / "caltrain-rt" / "gtfs.zip", cache_dir=tmp_path)
    pings = read(DATA / "caltrain-rt" / "vehicle_positions.pb")
    matches = Matcher(network).match_batch(pings, now=max(p.timestamp for p in pings))
    with (DATA / "caltrain-rt" / "trip_delays_from_trip_updates.csv").open() as handle:
        expected = {
            row["trip_id"]: float(row["delay_s_first_update"]) for row in csv.DictReader(handle)
        }
    compared = 0
    for m in matches:
        # Trains under way (not waiting at their origin): our delay is measured where the train
        # is, the agency's at its next stop, so they agree to within a few minutes.
        if m.trip_id in expected and m.state is State.IN_SERVICE and m.delay_s is not None:
            assert m.delay_s == pytest.approx(expected[m.trip_id], abs=180), m.trip_id
            compared += 1
    assert compared >= 8


def test_bullrunner_frequency_buses_get_a_trip_and_a_headway(tmp_path: Path) -> None:
    network = load_network(DATA / "bullrunner-frequency" / "gtfs.zip", cache_dir=tmp_path)
    pings = read(DATA / "bullrunner-frequency" / "vehicle_positions.pb")
    assert all(p.trip_id is None and p.route_id for p in pings)
    matches = Matcher(network).match_batch(pings, now=max(p.timestamp for p in pings))
    matched = [m for m in matches if m.trip_id is not None]
    assert len(matched) >= 8
    for ping, match in zip(pings, matches, strict=True):
        if match.trip_id is not None:
            assert match.route_id == ping.route_id  # the given route narrows the search
            assert match.headway_s is not None
            assert match.headway_s > 0


def test_wmata_trips_inferred_without_ids_for_most_pings(tmp_path: Path) -> None:
    """A quality floor, far below the benchmark's figure, so that a broken matcher fails."""
    network = load_network(DATA / "wmata-bus-2026-02-16" / "gtfs.zip", cache_dir=tmp_path)
    truth = read(DATA / "wmata-bus-2026-02-16" / "vehicle_positions.csv")[:6000]
    hidden = [dataclasses.replace(p, trip_id=None, route_id=None) for p in truth]
    matcher = Matcher(network)
    now = max(p.timestamp for p in truth) + 60
    matches = [
        m
        for i in range(0, len(hidden), 500)
        for m in matcher.match_batch(hidden[i : i + 500], now=now)
    ]
    right_trip = sum(m.trip_id == p.trip_id for m, p in zip(matches, truth, strict=True))
    right_route = sum(m.route_id == p.route_id for m, p in zip(matches, truth, strict=True))
    assert right_route / len(truth) >= 0.98
    assert right_trip / len(truth) >= 0.75
    given = Matcher(network).match_batch(truth, now=now)
    assert sum(m.trip_id_given for m in given) / len(given) >= 0.95
