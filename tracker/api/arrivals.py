"""Arrival predictions (with their p10–p90 range), their accuracy so far, and the stop events
they are learned from and scored against.

Predictions come from the engine (tracker.core.engine: each vehicle's, made again every 30 s
or so as it reports) through `Insight`; stop events from PostgreSQL. The stop and vehicle
endpoints (`tracker.api.network`, `tracker.api.vehicles`) show the same predictions in their
answers; this module also serves them raw, for scripts and feeds.
"""

from __future__ import annotations

import math
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tracker.api import schemas
from tracker.api.auth import OPERATOR_RESPONSES, OPERATORS_ONLY
from tracker.api.deps import (
    HubDep,
    IdQuery,
    InsightDep,
    NetworkDep,
    RoutesQuery,
    SettingsDep,
    StoreDep,
    route_ids_param,
)
from tracker.api.errors import BadParameterError, NotFoundError, problem_responses
from tracker.core import departures
from tracker.core.accuracy import BucketScore
from tracker.core.network import Network
from tracker.core.predict import Prediction
from tracker.core.stop_events import StopEvent
from tracker.live.vehicle import LiveVehicle

STOP_EVENTS_LIMIT: Final = 100_000
LAST_EPOCH_S: Final = 253_402_300_799.0
"""9999-12-31 23:59:59 UTC, the last second a Python datetime holds: a time window is declared
within 0..this (schemathesis found that one past it failed in the store: a 500, or asyncpg's
encoder's OSError reported as a 503 "database unavailable" for what is the client's mistake)."""

router = APIRouter(responses=problem_responses(404, 422, 503))


class Predictions(BaseModel):
    now_s: float
    count: int
    predictions: list[schemas.PredictedArrival] = Field(description="soonest first")


class Accuracy(BaseModel):
    """How the predictions made so far did, once their stops' events came: per horizon bucket,
    over the last few thousand settled predictions of each."""

    now_s: float
    buckets: list[BucketScore]


class StopEventRow(BaseModel):
    vehicle_id: str
    trip_id: str
    service_date: str
    route_id: str
    direction_id: int | None
    stop_id: str
    stop_sequence: int = Field(description="index of the stop in the trip's stops, from 0")
    arrival_s: float | None = Field(description="null: not known (first stop seen elsewhere)")
    departure_s: float | None = Field(description="null at the last stop, or not known")
    scheduled_arrival_s: float | None
    scheduled_departure_s: float | None
    delay_s: float | None
    observed: str = Field(description="interpolated (passed between pings) or dwelling (seen)")


class StopEvents(BaseModel):
    start_s: float
    end_s: float
    count: int
    limit: int
    truncated: bool = Field(description="more events in the window: ask from the last one on")
    events: list[StopEventRow]


@router.get("/api/predictions", tags=["predictions"])
async def list_predictions(
    insight: InsightDep,
    hub: HubDep,
    network: NetworkDep,
    settings: SettingsDep,
    stop_id: str | None = None,
    vehicle_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Predictions:
    """The live predictions, of one stop, one vehicle or all, soonest first."""
    now_s = settings.now()
    if stop_id is not None:
        if stop_id not in network.stops:
            raise NotFoundError(f"no stop {stop_id!r} in the feed; /api/stops lists them")
        found = insight.at_stop(stop_id, now_s)
    elif vehicle_id is not None:
        found = insight.of_vehicle(vehicle_id, now_s)
    else:
        found = insight.all(now_s)
    if stop_id is not None and vehicle_id is not None:
        found = [p for p in found if p.vehicle_id == vehicle_id]
    out = predicted_arrivals(network, found[:limit], hub.vehicles())
    return Predictions(now_s=now_s, count=len(out), predictions=out)


@router.get(
    "/api/predictions/accuracy",
    tags=["predictions"],
    dependencies=OPERATORS_ONLY,
    responses=OPERATOR_RESPONSES,
)
async def accuracy(insight: InsightDep, settings: SettingsDep) -> Accuracy:
    """Mean absolute error and p10–p90 coverage of the predictions whose stops have been seen,
    by how far ahead they were made (0–5, 5–10, 10–20, 20+ minutes)."""
    return Accuracy(now_s=settings.now(), buckets=insight.accuracy)


@router.get(
    "/api/stop-events",
    tags=["predictions"],
    dependencies=OPERATORS_ONLY,
    responses=OPERATOR_RESPONSES,
)
async def stop_events(
    store: StoreDep,
    start_s: Annotated[
        float, Query(description="window start, epoch s (included)", ge=0.0, le=LAST_EPOCH_S)
    ],
    end_s: Annotated[
        float, Query(description="window end, epoch s (excluded)", ge=0.0, le=LAST_EPOCH_S)
    ],
    stop_id: IdQuery = None,
    vehicle_id: IdQuery = None,
    trip_id: IdQuery = None,
    routes: RoutesQuery = None,
    limit: Annotated[int, Query(ge=1, le=STOP_EVENTS_LIMIT)] = 10_000,
) -> StopEvents:
    """Stored stop events (a bus's arrival and departure at a stop of its trip) in [start_s,
    end_s) by arrival (else departure), oldest first, at most `limit`."""
    if not (math.isfinite(start_s) and math.isfinite(end_s) and start_s < end_s):
        raise BadParameterError(
            f"the window start_s={start_s} end_s={end_s} is empty or not finite: give epoch "
            "seconds with start_s < end_s"
        )
    found = await store.stop_events(
        start_s=start_s, end_s=end_s, stop_id=stop_id, vehicle_id=vehicle_id, trip_id=trip_id,
        route_ids=route_ids_param(routes), limit=limit + 1,
    )  # fmt: skip
    rows = [_event_row(e) for e in found[:limit]]
    return StopEvents(start_s=start_s, end_s=end_s, count=len(rows), limit=limit,
                      truncated=len(found) > limit, events=rows)  # fmt: skip


def _event_row(event: StopEvent) -> StopEventRow:
    return StopEventRow(
        vehicle_id=event.vehicle_id,
        trip_id=event.trip_id,
        service_date=event.service_date,
        route_id=event.route_id,
        direction_id=event.direction_id,
        stop_id=event.stop_id,
        stop_sequence=event.stop_sequence,
        arrival_s=event.arrival_s,
        departure_s=event.departure_s,
        scheduled_arrival_s=event.scheduled_arrival_s,
        scheduled_departure_s=event.scheduled_departure_s,
        delay_s=None if event.delay_s is None else round(event.delay_s, 1),
        observed=event.observed.value,
    )


# --- shared with the stop and vehicle endpoints ----------------------------------------------


def arrival_range(p: Prediction, vehicle: LiveVehicle | None) -> schemas.ArrivalRange:
    return schemas.ArrivalRange(
        predicted_s=round(p.predicted_arrival_s, 1),
        p10_s=round(p.p10_arrival_s, 1),
        p90_s=round(p.p90_arrival_s, 1),
        source="learned" if p.source.value == "learned" else "schedule",
        made_at_s=round(p.made_at_s, 1),
        observed_at_s=None if vehicle is None else round(vehicle.observed_at_s, 1),
    )


def predicted_arrivals(
    network: Network, predictions: list[Prediction], vehicles: dict[str, LiveVehicle]
) -> list[schemas.PredictedArrival]:
    out: list[schemas.PredictedArrival] = []
    for p in predictions:
        trip_idx = network.trip_index.get(p.trip_id)
        if trip_idx is None:
            continue
        route = network.routes[network.trips[trip_idx].route_idx]
        stop = network.stops.get(p.stop_id)
        out.append(
            schemas.PredictedArrival(
                vehicle_id=p.vehicle_id,
                route_id=route.route_id,
                route_short_name=route.short_name,
                trip_id=p.trip_id,
                headsign=departures.headsign(network, trip_idx),
                service_date=p.service_date,
                stop_id=p.stop_id,
                stop_name=stop[0] if stop is not None else p.stop_id,
                stop_sequence=p.stop_sequence,
                trips_ahead=p.trips_ahead,
                scheduled_s=p.scheduled_arrival_s,
                arrival=arrival_range(p, vehicles.get(p.vehicle_id)),
            )
        )
    return out
