"""Domain values that flow through the tracker: a raw ping in, a match out.

Everything here is a small frozen dataclass or an enum. Times are epoch seconds (UTC) unless a name
says otherwise; distances are metres; angles are degrees clockwise from north.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ping:
    """One GPS report from a vehicle, as decoded from the wire or a file (not yet validated)."""

    vehicle_id: str
    timestamp: float  # epoch seconds, UTC
    lat: float
    lon: float
    speed_mps: float | None = None
    bearing_deg: float | None = None
    accuracy_m: float | None = None
    route_id: str | None = None
    trip_id: str | None = None


class State(enum.StrEnum):
    """What the matcher concluded about a vehicle at one ping."""

    IN_SERVICE = "in_service"
    LAYOVER = "layover"  # waiting at a terminal, before departure or after arrival
    OFF_ROUTE = "off_route"  # the vehicle has a trip but this ping is far from its shape
    NOT_MATCHED = "not_matched"  # a valid ping that fits no trip running now
    REJECTED = "rejected"  # invalid input: see `reason`


class Reason(enum.StrEnum):
    """Why a ping was rejected, or why a hint in it was ignored. Counted by the callers."""

    MALFORMED = "malformed"  # a field is missing or cannot be parsed
    BAD_COORDINATES = "bad_coordinates"  # NaN, out of range, or (0, 0)
    BAD_TIMESTAMP = "bad_timestamp"  # NaN, negative, zero or not a time
    FUTURE_TIMESTAMP = "future_timestamp"  # later than the clock allows
    STALE_TIMESTAMP = "stale_timestamp"  # far older than the clock allows
    DUPLICATE = "duplicate"  # same vehicle and timestamp as an earlier ping
    OUT_OF_ORDER = "out_of_order"  # older than the vehicle's latest accepted ping
    UNKNOWN_TRIP = "unknown_trip"  # hint ignored: the trip_id is not in the feed
    UNKNOWN_ROUTE = "unknown_route"  # hint ignored: the route_id is not in the feed
    TRIP_NOT_RUNNING = "trip_not_running"  # hint ignored: the trip does not run now
    TRIP_MISMATCH = "trip_mismatch"  # hint ignored: the ping does not fit the given trip
    NO_SHAPE_NEARBY = "no_shape_nearby"  # no route shape within reach of the ping
    NO_TRIP_FITS = "no_trip_fits"  # near a shape, but no scheduled trip fits the time
    SUPERSEDED = "superseded"  # stored unmatched: a newer ping of the vehicle overtook it
    LATE = "late"  # older than the vehicle's latest: stored, matched later (`core.late`)
    UNKNOWN_DEVICE = "unknown_device"  # a phone the devices file does not list (`ingest.devices`)
    BAD_TOKEN = "bad_token"  # a phone without its devices file token, or with a wrong one


@dataclass(frozen=True, slots=True)
class Match:
    """The matcher's answer for one ping. Fields that do not apply are None."""

    vehicle_id: str
    timestamp: float
    state: State
    reason: Reason | None = None
    route_id: str | None = None
    trip_id: str | None = None
    service_date: str | None = None  # YYYYMMDD, the GTFS service day of the trip
    direction_id: int | None = None
    shape_id: str | None = None
    shape_dist_m: float | None = None  # distance along the trip's shape
    snapped_lat: float | None = None
    snapped_lon: float | None = None
    offset_m: float | None = None  # distance from the ping to its snapped point
    delay_s: float | None = None  # observed minus scheduled time at shape_dist_m
    headway_s: float | None = None  # scheduled headway, on frequency-based trips
    trip_id_given: bool = False  # the ping's own trip_id was believed
    detail: str | None = None  # human-readable explanation of `reason`


def rejected(ping: Ping, reason: Reason, detail: str) -> Match:
    """The answer for a ping that cannot be used at all."""
    return Match(
        vehicle_id=ping.vehicle_id,
        timestamp=ping.timestamp,
        state=State.REJECTED,
        reason=reason,
        detail=detail,
    )
