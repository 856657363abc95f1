"""What the live map is told about one vehicle: its latest matched state, ready for JSON.

A `LiveVehicle` is built once per accepted ping from the ping and the matcher's answer, and is
what the hub keeps per vehicle, compares between ticks and serialises. Its `lat`/`lon` are the
position the map should draw: the snapped point on the shape when the vehicle is in service or in
layover (and the matcher snapped it), else the raw GPS position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tracker.core.model import Match, Ping, Reason, State

JsonValue = str | float | int
"""The value types of `LiveVehicle.to_json_dict()`."""

COORDINATE_DECIMALS = 6  # about 0.1 m
METRE_DECIMALS = 1
SECOND_DECIMALS = 1

_SNAPPED_STATES = frozenset({State.IN_SERVICE, State.LAYOVER})
# `member.value` is a slow property lookup: once per ping adds up.
_STATE_VALUES = {state: state.value for state in State}
_REASON_VALUES = {reason: reason.value for reason in Reason}


def shown_position(
    state: State, lat: float, lon: float, snapped_lat: float | None, snapped_lon: float | None
) -> tuple[float, float]:
    """Where the map draws a vehicle: the snapped point when it is in service or in layover
    (and was snapped), else its raw GPS position."""
    if state in _SNAPPED_STATES and snapped_lat is not None and snapped_lon is not None:
        return snapped_lat, snapped_lon
    return lat, lon


@dataclass(frozen=True, slots=True)
class LiveVehicle:
    """The latest state of one vehicle as the live map sees it.

    Times are epoch seconds (UTC), distances metres, angles degrees clockwise from north.
    `state` and `reason` are the string values of `tracker.core.model.State` and `Reason`.
    """

    vehicle_id: str
    observed_at_s: float  # the ping's timestamp
    lat: float  # the position shown: snapped when in service/layover, else raw
    lon: float
    bearing_deg: float | None = None
    speed_mps: float | None = None
    state: str = State.NOT_MATCHED.value
    reason: str | None = None
    route_id: str | None = None
    trip_id: str | None = None
    direction_id: int | None = None
    shape_id: str | None = None
    shape_dist_m: float | None = None
    snapped_lat: float | None = None
    snapped_lon: float | None = None
    offset_m: float | None = None
    delay_s: float | None = None
    headway_s: float | None = None

    @classmethod
    def from_match(cls, ping: Ping, match: Match) -> LiveVehicle:
        """The live state after `ping` was matched as `match` (the two must be for one vehicle)."""
        if ping.vehicle_id != match.vehicle_id:
            raise ValueError(
                f"ping of vehicle {ping.vehicle_id!r} paired with a match of vehicle "
                f"{match.vehicle_id!r}: pass the match the matcher returned for this ping"
            )
        lat, lon = shown_position(
            match.state, ping.lat, ping.lon, match.snapped_lat, match.snapped_lon
        )
        return cls(
            vehicle_id=ping.vehicle_id,
            observed_at_s=ping.timestamp,
            lat=lat,
            lon=lon,
            bearing_deg=ping.bearing_deg,
            speed_mps=ping.speed_mps,
            state=_STATE_VALUES[match.state],
            reason=_REASON_VALUES[match.reason] if match.reason is not None else None,
            route_id=match.route_id,
            trip_id=match.trip_id,
            direction_id=match.direction_id,
            shape_id=match.shape_id,
            shape_dist_m=match.shape_dist_m,
            snapped_lat=match.snapped_lat,
            snapped_lon=match.snapped_lon,
            offset_m=match.offset_m,
            delay_s=match.delay_s,
            headway_s=match.headway_s,
        )

    @property
    def has_finite_position(self) -> bool:
        """Whether `lat`/`lon` can be drawn (the hub ignores a vehicle that cannot)."""
        return math.isfinite(self.lat) and math.isfinite(self.lon)

    def to_json_dict(self) -> dict[str, JsonValue]:
        """A compact JSON object: fields that are None (or not finite) left out, numbers rounded.

        Coordinates keep 6 decimals (about 0.1 m); metres, seconds, speeds and angles keep 1.
        """
        out: dict[str, JsonValue] = {"vehicle_id": self.vehicle_id}
        isfinite = math.isfinite
        for key, value, decimals in (
            ("observed_at_s", self.observed_at_s, SECOND_DECIMALS),
            ("lat", self.lat, COORDINATE_DECIMALS),
            ("lon", self.lon, COORDINATE_DECIMALS),
            ("bearing_deg", self.bearing_deg, 1),
            ("speed_mps", self.speed_mps, METRE_DECIMALS),
        ):
            if value is not None and isfinite(value):
                out[key] = round(value, decimals)
        out["state"] = self.state
        for key, text in (
            ("reason", self.reason),
            ("route_id", self.route_id),
            ("trip_id", self.trip_id),
        ):
            if text is not None:
                out[key] = text
        if self.direction_id is not None:
            out["direction_id"] = self.direction_id
        if self.shape_id is not None:
            out["shape_id"] = self.shape_id
        for key, value, decimals in (
            ("shape_dist_m", self.shape_dist_m, METRE_DECIMALS),
            ("snapped_lat", self.snapped_lat, COORDINATE_DECIMALS),
            ("snapped_lon", self.snapped_lon, COORDINATE_DECIMALS),
            ("offset_m", self.offset_m, METRE_DECIMALS),
            ("delay_s", self.delay_s, SECOND_DECIMALS),
            ("headway_s", self.headway_s, SECOND_DECIMALS),
        ):
            if value is not None and isfinite(value):
                out[key] = round(value, decimals)
        return out
