"""Tests for tracker.core.validate: rejecting unusable pings and cleaning optional hints."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from tracker.core.model import Ping, Reason
from tracker.core.validate import clean_hints, validate_ping

NOW = 1771257600.0  # 2026-02-16T16:00:00Z


BASE = Ping(vehicle_id="4582", timestamp=NOW - 30, lat=38.9334, lon=-77.0797)


def ping(**changes: Any) -> Ping:
    """A valid ping in Washington DC 30 s before NOW, with `changes` applied."""
    return dataclasses.replace(BASE, **changes)


def test_valid_ping_passes() -> None:
    assert validate_ping(ping(), now=NOW) is None


@pytest.mark.parametrize(
    ("changes", "reason", "fragment"),
    [
        ({"vehicle_id": ""}, Reason.MALFORMED, "vehicle_id '' is empty"),
        ({"vehicle_id": "  "}, Reason.MALFORMED, "is empty"),
        ({"timestamp": 0.0}, Reason.BAD_TIMESTAMP, "1970-01-01T00:00:00Z is not after 2000-01-01"),
        ({"timestamp": -5.0}, Reason.BAD_TIMESTAMP, "not after 2000-01-01"),
        ({"timestamp": math.nan}, Reason.BAD_TIMESTAMP, "timestamp nan is not a finite number"),
        ({"timestamp": math.inf}, Reason.BAD_TIMESTAMP, "timestamp inf is not a finite number"),
        ({"lat": 91.0}, Reason.BAD_COORDINATES, "latitude 91.0 is outside -90..90"),
        ({"lat": -90.5}, Reason.BAD_COORDINATES, "latitude -90.5 is outside -90..90"),
        ({"lon": 180.5}, Reason.BAD_COORDINATES, "longitude 180.5 is outside -180..180"),
        ({"lon": math.nan}, Reason.BAD_COORDINATES, "longitude nan is not a finite number"),
        ({"lat": math.inf}, Reason.BAD_COORDINATES, "latitude inf is not a finite number"),
        ({"lat": 0.0, "lon": 0.0}, Reason.BAD_COORDINATES, "(0, 0)"),
    ],
)
def test_rejections(changes: dict[str, Any], reason: Reason, fragment: str) -> None:
    result = validate_ping(ping(**changes), now=NOW)
    assert result is not None
    assert result[0] is reason
    assert fragment in result[1]


def test_edges_of_the_valid_range_pass() -> None:
    for lat, lon in [(90.0, 180.0), (-90.0, -180.0), (0.0, 12.5), (51.48, 0.0)]:
        assert validate_ping(ping(lat=lat, lon=lon), now=NOW) is None


def test_future_timestamp_names_the_time_and_the_gap() -> None:
    future = 1772359200.0  # 2026-03-01T10:00:00Z
    result = validate_ping(ping(timestamp=future), now=future - 3.2 * 86400)
    assert result == (
        Reason.FUTURE_TIMESTAMP,
        "timestamp 2026-03-01T10:00:00Z is 3.2 days ahead of the clock",
    )


def test_future_tolerance_is_max_future_s() -> None:
    assert validate_ping(ping(timestamp=NOW + 300), now=NOW) is None
    result = validate_ping(ping(timestamp=NOW + 301), now=NOW)
    assert result is not None
    assert result[0] is Reason.FUTURE_TIMESTAMP
    assert validate_ping(ping(timestamp=NOW + 301), now=NOW, max_future_s=600) is None


def test_absurdly_far_future_is_reported_without_crashing() -> None:
    result = validate_ping(ping(timestamp=1e15), now=NOW)
    assert result is not None
    assert result[0] is Reason.FUTURE_TIMESTAMP
    assert "1000000000000000" in result[1]


def test_stale_only_when_max_age_is_given() -> None:
    old = ping(timestamp=NOW - 7200)
    assert validate_ping(old, now=NOW) is None
    assert validate_ping(old, now=NOW, max_age_s=7200) is None
    result = validate_ping(old, now=NOW, max_age_s=3600)
    assert result == (
        Reason.STALE_TIMESTAMP,
        "timestamp 2026-02-16T14:00:00Z is 2.0 hours behind the clock",
    )


def test_vehicle_id_is_checked_before_coordinates() -> None:
    result = validate_ping(ping(vehicle_id="", lat=math.nan), now=NOW)
    assert result is not None
    assert result[0] is Reason.MALFORMED


def test_clean_hints_keeps_good_values() -> None:
    good = ping(speed_mps=12.5, bearing_deg=359.5, accuracy_m=8.0, route_id="D96", trip_id="1")
    assert clean_hints(good) == good


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"speed_mps": math.nan}, {"speed_mps": None}),
        ({"speed_mps": -0.1}, {"speed_mps": None}),
        ({"speed_mps": 70.5}, {"speed_mps": None}),
        ({"speed_mps": 70.0}, {"speed_mps": 70.0}),
        ({"speed_mps": 0.0}, {"speed_mps": 0.0}),
        ({"bearing_deg": math.nan}, {"bearing_deg": None}),
        ({"bearing_deg": -1.0}, {"bearing_deg": None}),
        ({"bearing_deg": 360.5}, {"bearing_deg": None}),
        ({"bearing_deg": 360.0}, {"bearing_deg": 0.0}),
        ({"bearing_deg": 0.0}, {"bearing_deg": 0.0}),
        ({"accuracy_m": math.nan}, {"accuracy_m": None}),
        ({"accuracy_m": -3.0}, {"accuracy_m": None}),
        ({"accuracy_m": math.inf}, {"accuracy_m": None}),
        ({"accuracy_m": 0.0}, {"accuracy_m": 0.0}),
        ({"route_id": ""}, {"route_id": None}),
        ({"trip_id": ""}, {"trip_id": None}),
        ({"trip_id": " "}, {"trip_id": None}),
    ],
)
def test_clean_hints_drops_bad_values(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    cleaned = clean_hints(ping(**changes))
    assert cleaned == ping(**expected)


def test_clean_hints_leaves_required_fields_alone() -> None:
    bad = ping(lat=math.nan, vehicle_id="", speed_mps=-1.0)
    cleaned = clean_hints(bad)
    assert cleaned.vehicle_id == ""
    assert math.isnan(cleaned.lat)
    assert cleaned.speed_mps is None
