"""Checks on a decoded `Ping` before it reaches the matcher.

Pure functions: no I/O and no clock reads (the caller passes `now`, in epoch seconds).
`validate_ping` says whether a ping can be used at all; `clean_hints` drops optional fields that
are present but nonsensical, so the matcher can trust whatever is left.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime

from tracker.core.model import Ping, Reason

MIN_TIMESTAMP = 946684800.0  # 2000-01-01T00:00:00Z: anything earlier is a broken clock or unit
MAX_SPEED_MPS = 70.0  # 252 km/h: faster than any bus, so the speed field is garbage


def validate_ping(
    ping: Ping, *, now: float, max_future_s: float = 300.0, max_age_s: float | None = None
) -> tuple[Reason, str] | None:
    """Return None if `ping` is usable, else the reason and a detail naming the bad value.

    A ping is rejected if its vehicle id is blank, its timestamp is not a finite time after
    2000-01-01, more than `max_future_s` ahead of `now` or (when `max_age_s` is given) more than
    `max_age_s` behind it, or its coordinates are not finite, out of range or exactly (0, 0).
    """
    if not ping.vehicle_id.strip():
        return Reason.MALFORMED, f"vehicle_id {ping.vehicle_id!r} is empty"
    ts = ping.timestamp
    if not math.isfinite(ts):
        return Reason.BAD_TIMESTAMP, f"timestamp {ts!r} is not a finite number"
    if ts <= MIN_TIMESTAMP:
        return Reason.BAD_TIMESTAMP, f"timestamp {_when(ts)} is not after 2000-01-01"
    if ts > now + max_future_s:
        return (
            Reason.FUTURE_TIMESTAMP,
            f"timestamp {_when(ts)} is {_duration(ts - now)} ahead of the clock",
        )
    if max_age_s is not None and ts < now - max_age_s:
        return (
            Reason.STALE_TIMESTAMP,
            f"timestamp {_when(ts)} is {_duration(now - ts)} behind the clock",
        )
    for name, value, limit in (("latitude", ping.lat, 90), ("longitude", ping.lon, 180)):
        if not math.isfinite(value):
            return Reason.BAD_COORDINATES, f"{name} {value!r} is not a finite number"
        if abs(value) > limit:
            return Reason.BAD_COORDINATES, f"{name} {value!r} is outside -{limit}..{limit}"
    if ping.lat == 0 and ping.lon == 0:
        return Reason.BAD_COORDINATES, "position (0, 0) is a null fix, not a real location"
    return None


def clean_hints(ping: Ping) -> Ping:
    """Return a copy of `ping` with invalid optional fields set to None.

    Speed must be finite, non-negative and at most 70 m/s; bearing finite and within [0, 360]
    (360 becomes 0); accuracy finite and non-negative; route and trip ids non-blank.
    """
    speed, bearing, accuracy = ping.speed_mps, ping.bearing_deg, ping.accuracy_m
    if speed is not None and not (0 <= speed <= MAX_SPEED_MPS):  # also rejects NaN
        speed = None
    if bearing is not None:
        bearing = (0.0 if bearing == 360 else bearing) if 0 <= bearing <= 360 else None
    if accuracy is not None and not (0 <= accuracy < math.inf):
        accuracy = None
    return dataclasses.replace(
        ping,
        speed_mps=speed,
        bearing_deg=bearing,
        accuracy_m=accuracy,
        route_id=ping.route_id if ping.route_id and ping.route_id.strip() else None,
        trip_id=ping.trip_id if ping.trip_id and ping.trip_id.strip() else None,
    )


def _when(ts: float) -> str:
    """`ts` as an ISO 8601 UTC time, or as a bare number if it is outside datetime's range."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"


def _duration(seconds: float) -> str:
    """A human-sized duration: '45 s', '12.5 min', '3.2 hours', '3.2 days'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"
