"""The hand-made feeds of `tests.feeds` load with gtfs-kit and pass basic GTFS checks.

gtfs-kit 13 has no `Feed.validate()` (it leaves validation to dedicated validators), so
`feed_errors` below checks what the fixtures rely on: required files and columns, unique ids,
references between files, time syntax and order, coordinate ranges and timezones.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import gtfs_kit as gk
import pandas as pd
import pytest

from tests import feeds

BUILDERS: list[Callable[[Path], Path]] = [
    feeds.loop_feed,
    feeds.variants_feed,
    feeds.two_directions_feed,
    feeds.overnight_feed,
    feeds.dst_feed,
    feeds.casablanca_ramadan_feed,
    feeds.frequency_feed,
    feeds.no_shape_feed,
]
REQUIRED = {
    "agency": ("agency_name", "agency_url", "agency_timezone"),
    "routes": ("route_id", "route_type"),
    "trips": ("route_id", "service_id", "trip_id"),
    "stops": ("stop_id", "stop_lat", "stop_lon"),
    "stop_times": ("trip_id", "arrival_time", "departure_time", "stop_id", "stop_sequence"),
}
KEYS = {
    "routes": ["route_id"],
    "trips": ["trip_id"],
    "stops": ["stop_id"],
    "stop_times": ["trip_id", "stop_sequence"],
    "shapes": ["shape_id", "shape_pt_sequence"],
    "calendar": ["service_id"],
    "calendar_dates": ["service_id", "date"],
}
REFERENCES = [  # (table, column, referenced table)
    ("trips", "route_id", "routes"),
    ("trips", "shape_id", "shapes"),
    ("stop_times", "trip_id", "trips"),
    ("stop_times", "stop_id", "stops"),
    ("frequencies", "trip_id", "trips"),
]
TIME = re.compile(r"\d{1,3}:[0-5]\d:[0-5]\d")


def _ids(feed: Any, table: str, column: str) -> set[str]:
    df = getattr(feed, table)
    if df is None or column not in df.columns:
        return set()
    return set(df[column].dropna().astype(str))


def _seconds(time: str) -> int:
    hours, minutes, seconds = (int(part) for part in time.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def feed_errors(feed: Any) -> list[str]:
    """What makes `feed` invalid GTFS, as far as these checks go (empty if nothing)."""
    errors = [
        f"{table}.txt: missing" if getattr(feed, table) is None else f"{table}.txt: no {column}"
        for table, columns in REQUIRED.items()
        for column in columns
        if getattr(feed, table) is None or column not in getattr(feed, table).columns
    ]
    if feed.calendar is None and feed.calendar_dates is None:
        errors.append("neither calendar.txt nor calendar_dates.txt")
    if errors:
        return sorted(set(errors))
    for table, key in KEYS.items():
        df = getattr(feed, table)
        if df is not None and df.duplicated(key).any():
            errors.append(f"{table}.txt: duplicate {key}")
    for table, column, target in REFERENCES:
        unknown = _ids(feed, table, column) - _ids(feed, target, column)
        if unknown:
            errors.append(f"{table}.txt: unknown {column} {sorted(unknown)}")
    services = _ids(feed, "calendar", "service_id") | _ids(feed, "calendar_dates", "service_id")
    if unknown := _ids(feed, "trips", "service_id") - services:
        errors.append(f"trips.txt: unknown service_id {sorted(unknown)}")
    for tz in set(feed.agency["agency_timezone"]):
        try:
            ZoneInfo(str(tz))
        except (ValueError, KeyError):
            errors.append(f"agency.txt: bad timezone {tz!r}")
    for lat, lon in zip(feed.stops["stop_lat"], feed.stops["stop_lon"], strict=True):
        if not (-90 <= float(lat) <= 90 and -180 <= float(lon) <= 180 and math.isfinite(lat)):
            errors.append(f"stops.txt: bad coordinate ({lat}, {lon})")
    errors += _stop_time_errors(feed.stop_times) + _distance_errors(feed)
    return errors


def _stop_time_errors(stop_times: pd.DataFrame) -> list[str]:
    errors = []
    for trip_id, trip in stop_times.sort_values("stop_sequence").groupby("trip_id"):
        times = [str(t) for t in trip[["arrival_time", "departure_time"]].to_numpy().ravel()]
        if len(trip) < 2:
            errors.append(f"stop_times.txt: trip {trip_id}: fewer than two stops")
        if bad := [t for t in times if not TIME.fullmatch(t)]:
            errors.append(f"stop_times.txt: trip {trip_id}: bad times {bad}")
        elif any(a > b for a, b in itertools.pairwise(map(_seconds, times))):
            errors.append(f"stop_times.txt: trip {trip_id}: times go backwards")
    return errors


def _distance_errors(feed: Any) -> list[str]:
    """shape_dist_traveled never decreases along a shape or a trip."""
    errors = []
    for table, group, order in (
        ("shapes", "shape_id", "shape_pt_sequence"),
        ("stop_times", "trip_id", "stop_sequence"),
    ):
        df = getattr(feed, table)
        if df is None or "shape_dist_traveled" not in df.columns:
            continue
        for key, rows in df.sort_values(order).groupby(group):
            if not rows["shape_dist_traveled"].is_monotonic_increasing:
                errors.append(f"{table}.txt: {group} {key}: shape_dist_traveled decreases")
    return errors


@pytest.mark.parametrize("build", BUILDERS, ids=lambda build: build.__name__)
def test_feed_is_valid(build: Callable[[Path], Path], tmp_path: Path) -> None:
    path = build(tmp_path)
    assert path.parent == tmp_path
    assert path.suffix == ".zip"
    feed = gk.read_feed(path, dist_units="m")
    assert feed_errors(feed) == []
    assert len(feed.get_dates()) > 0
    stats = feed.compute_trip_stats()
    assert len(stats) == len(feed.trips)


@pytest.mark.parametrize("problem", feeds.BROKEN_PROBLEMS)
def test_broken_feed_is_caught(problem: str, tmp_path: Path) -> None:
    path = feeds.broken_feed(tmp_path, problem)
    if problem == "bad_coordinate":  # gtfs-kit reads stop_lat as a float and fails
        with pytest.raises(ValueError, match="abc"):
            gk.read_feed(path, dist_units="m")
        return
    errors = feed_errors(gk.read_feed(path, dist_units="m"))
    expected = {
        "missing_stops": "stops.txt: missing",
        "bad_time": "stop_times.txt: trip S_0700: bad times ['25:61:00']",
        "unknown_stop": "stop_times.txt: unknown stop_id ['NOPE']",
    }
    assert errors == [expected[problem]]


def test_broken_feed_rejects_unknown_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown problem"):
        feeds.broken_feed(tmp_path, "nonsense")


def test_offset_latlon_is_metric() -> None:
    lat0, lon0 = feeds.CASABLANCA
    lat, lon = feeds.offset_latlon(lat0, lon0, 300.0, 400.0)
    # haversine distance back to the origin
    p0, p1 = math.radians(lat0), math.radians(lat)
    dlat, dlon = p1 - p0, math.radians(lon - lon0)
    h = math.sin(dlat / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dlon / 2) ** 2
    assert 2 * feeds.EARTH_RADIUS_M * math.asin(math.sqrt(h)) == pytest.approx(500.0, abs=0.1)
