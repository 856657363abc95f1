"""Every real feed in ../shared/data builds into a sound network (tracker.gtfs.load.build_network).

Each feed is built once per module (the largest, WMATA, takes about 2 s).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from tests.shared_data import SHARED_DATA, required
from tracker.core.network import Network
from tracker.gtfs.load import build_network

pytestmark = pytest.mark.realfeed

DATA = required(SHARED_DATA)

WMATA = "wmata-bus-2026-02-16/gtfs.zip"
CALTRAIN = "caltrain-rt/gtfs.zip"
BULLRUNNER = "bullrunner-frequency/gtfs.zip"
MOROCCO = "static/morocco-oncf-rail.zip"
STATIC = sorted(str(p.relative_to(DATA)) for p in (DATA / "static").glob("*.zip"))
FEEDS = [WMATA, CALTRAIN, BULLRUNNER, *STATIC]


class Networks:
    """Builds each feed at most once."""

    def __init__(self) -> None:
        self._built: dict[str, Network] = {}

    def __getitem__(self, feed: str) -> Network:
        if feed not in self._built:
            path = DATA / feed
            if not path.exists():
                pytest.fail(f"{path} is missing from the shared data folder")
            self._built[feed] = build_network(path)
        return self._built[feed]


@pytest.fixture(scope="module")
def networks() -> Networks:
    return Networks()


def test_the_known_feeds_are_there() -> None:
    assert MOROCCO in FEEDS
    assert len(FEEDS) >= 9
    for feed in FEEDS:
        assert (DATA / feed).is_file(), feed


@pytest.mark.parametrize("feed", FEEDS)
def test_feed_builds(networks: Networks, feed: str) -> None:
    network = networks[feed]  # raises FeedError on a broken feed
    assert network.trips
    assert len(network.runs) >= len(network.trips)
    assert network.services_by_date


@pytest.mark.parametrize("feed", FEEDS)
def test_stop_distances_are_ordered_and_on_the_shape(networks: Networks, feed: str) -> None:
    network = networks[feed]
    for p, pattern in enumerate(network.patterns):
        dist = pattern.stop_dist_m
        length = network.shapes[pattern.shape_idx].length_m
        assert len(dist) == len(pattern.stop_ids), p
        assert np.all(np.diff(dist) >= 0), f"pattern {p} goes backwards: {dist}"
        assert dist[0] >= 0, p
        assert dist[-1] <= length + 1e-6, f"pattern {p}: {dist[-1]} > {length}"


@pytest.mark.parametrize("feed", FEEDS)
def test_runs_agree_with_their_patterns(networks: Networks, feed: str) -> None:
    network = networks[feed]
    runs = network.runs
    for pattern in network.patterns:
        rows = runs.row[pattern.runs]
        assert rows.tolist() == list(range(len(pattern.runs)))
        assert np.array_equal(pattern.departure_s[rows, 0], runs.start_s[pattern.runs])
        assert np.array_equal(pattern.arrival_s[rows, -1], runs.end_s[pattern.runs])
        assert np.all(np.diff(runs.start_s[pattern.runs]) >= 0)  # sorted by start
    assert np.all(runs.end_s >= runs.start_s)


def test_wmata_counts(networks: Networks) -> None:
    wmata = networks[WMATA]
    assert wmata.timezone == "America/New_York"
    assert len(wmata.routes) == 3
    assert len(wmata.trips) == 4167
    assert len(wmata.shapes) == 15
    assert not any(s.from_stops for s in wmata.shapes)
    assert len(wmata.stops) >= 347


def test_wmata_holiday_served_through_calendar_dates(networks: Networks) -> None:
    wmata = networks[WMATA]
    active = wmata.active_runs(dt.date(2026, 2, 16))
    assert active.any()
    services = {wmata.service_ids[s] for s in wmata.run_service[active].tolist()}
    assert services == {"4"}


def test_morocco_rail_time_zone_and_trips_without_shapes(networks: Networks) -> None:
    morocco = networks[MOROCCO]
    assert morocco.timezone == "Africa/Casablanca"
    assert any(s.from_stops for s in morocco.shapes)
    shapeless = [t for t in morocco.trips if morocco.shapes[t.shape_idx].from_stops]
    assert len(shapeless) == 10


def test_bullrunner_has_frequency_runs(networks: Networks) -> None:
    runs = networks[BULLRUNNER].runs
    frequency = ~np.isnan(runs.headway_s)
    assert frequency.any()
    assert np.all(runs.headway_s[frequency] > 0)
