"""A hypothesis told as an answer: the `Match` of a ping, with its state and snapped point.

`describe` reads what the answer says of the run (route, trip, direction, shape, headway) and
decides the state (`in_service`, `layover` at a terminal or while waiting for the block's next run,
`off_route` on a carried-forward or distant fix); the snapped point stays in projected metres in a
`Draft` until `complete` converts a batch of them at once.

Pure: values in, values out.
"""

from __future__ import annotations

import math

import numpy as np

from tracker.core.filter import Hypothesis
from tracker.core.model import Match, Ping, Reason, State
from tracker.core.tables import RunTables

HAND_OVER_S = 20 * 60.0
"""Agencies hand a bus over to its next trip some time before it departs, not on arrival (WMATA: a
median of 10 minutes before). Waiting longer than this before departure is reported on the
arrived trip: 97.9 % -> 98.2 % clean, 96.1 % -> 96.4 % noisy on the WMATA day, with hindsight."""

Draft = tuple[
    str, float, State, "Reason | None", str, str, str, "int | None", str, float, float, float,
    float, "float | None", "float | None", bool, "str | None",
]  # fmt: skip
"""A `Match`'s fields in order, with the snapped point still in projected metres (x where
snapped_lat goes, y where snapped_lon goes): `complete` converts a batch of them at once."""


def as_reported(t: RunTables, best: Hypothesis) -> Hypothesis:
    """`best`, or, while it waits more than `HAND_OVER_S` for its run to depart, the run it
    arrived on (at its last stop, as a layover; its delay is not known there)."""
    if best.waiting and best.delay_s < -HAND_OVER_S:
        arrived = t.run_previous[best.run]
        if arrived >= 0:
            return Hypothesis(arrived, best.day, t.run_last_stop[arrived], math.nan, best.score,
                              waiting=True, at_s=best.at_s)  # fmt: skip
    return best


def describe(
    t: RunTables,
    vehicle_id: str,
    timestamp: float,
    x: float,
    y: float,
    best: Hypothesis,
    *,
    off_route: bool,
    reason: Reason | None,
    detail: str | None,
    trip_id_given: bool,
    spot: tuple[float, float] | None = None,
) -> Draft:
    """The answer from hypothesis `best` for a ping at projected (x, y), as a `Draft`.

    `spot` is the snapped point (`Network.point_at` of `best`) in metres, if already
    computed.
    """
    route_id, trip_id, direction_id, shape_id, headway, shape_idx, start_zone_end, arrived_m = (
        t.run_answer(best.run)
    )
    sx, sy = t.network.point_at(shape_idx, best.along_m) if spot is None else spot
    offset = math.hypot(x - sx, y - sy)
    along = best.along_m
    if best.waiting:
        state = State.LAYOVER
    elif off_route or offset > t.config.snap_radius_m:
        state = State.OFF_ROUTE
    elif (along <= start_zone_end and not best.delay_s > 0) or along >= arrived_m:
        state = State.LAYOVER
    else:
        state = State.IN_SERVICE
    delay = best.delay_s
    return (vehicle_id, timestamp, state, reason, route_id, trip_id,
            t.service_date(best.day), direction_id, shape_id, along, sx, sy, offset,
            None if math.isnan(delay) else delay, headway, trip_id_given, detail)  # fmt: skip


def complete(t: RunTables, drafts: list[Draft]) -> list[Match]:
    """The `Match` of each draft, its snapped point converted to degrees (in one call)."""
    if not drafts:
        return []
    lat, lon = t.network.unproject(
        np.array([d[10] for d in drafts], dtype=np.float64),
        np.array([d[11] for d in drafts], dtype=np.float64),
    )
    return [
        Match(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], la, lo, d[12],
              d[13], d[14], d[15], d[16])
        for d, la, lo in zip(drafts, lat.tolist(), lon.tolist(), strict=True)
    ]  # fmt: skip


def describe_followed(
    t: RunTables,
    followed: list[tuple[int, Hypothesis]],
    pings: list[Ping],
    xs: list[float],
    ys: list[float],
) -> list[tuple[int, Draft]]:
    """The answers of `tracker.core.hints.follow_given_trips` (pings[j] believed as hypothesis
    h, for each (j, h) in `followed`), their snapped points found in one numpy pass."""
    if not followed:
        return []
    spot_x, spot_y = t.network.points_at(
        np.array([t.run_shape[h.run] for _, h in followed]),
        np.array([h.along_m for _, h in followed]),
    )
    return [
        (j, describe(t, pings[j].vehicle_id, pings[j].timestamp, xs[j], ys[j], h,
                           off_route=False, reason=None, detail=None, trip_id_given=True,
                           spot=(sx, sy)))
        for (j, h), sx, sy in zip(followed, spot_x.tolist(), spot_y.tolist(), strict=True)
    ]  # fmt: skip
