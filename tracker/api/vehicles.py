"""The live vehicles: the websocket hub's in-memory state, with trips, next stops and trails."""

from __future__ import annotations

import math
from typing import Annotated, Final

from fastapi import APIRouter, Query

from tracker.api import schemas
from tracker.api.arrivals import arrival_range, predicted_arrivals
from tracker.api.deps import (
    BBoxQuery,
    HubDep,
    InsightDep,
    NetworkDep,
    RoutesQuery,
    SettingsDep,
    StoreDep,
    bbox_param,
    finite,
    route_ids_param,
)
from tracker.api.errors import NotFoundError, problem_responses
from tracker.core import departures
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.predict import Prediction
from tracker.live.hub import Subscription
from tracker.live.vehicle import LiveVehicle
from tracker.store.postgres import VehicleRow

TRAIL_MAX_POINTS: Final = 2000
_SNAPPED_STATES: Final = frozenset({State.IN_SERVICE.value, State.LAYOVER.value})

router = APIRouter(responses=problem_responses(404, 422, 503))


@router.get("/api/vehicles", tags=["vehicles"])
async def list_vehicles(
    hub: HubDep, settings: SettingsDep, routes: RoutesQuery = None, bbox: BBoxQuery = None
) -> schemas.Vehicles:
    """The current vehicles (the live map's state), optionally on some routes and in a box.

    The box filters on the drawn position (`lat`/`lon`). A bad `routes` or `bbox` is a 422
    that says what to send.
    """
    wanted = Subscription.of(routes=route_ids_param(routes), bbox=bbox_param(bbox))
    now_s = settings.now()
    chosen = [v for _, v in sorted(hub.vehicles().items()) if wanted.matches(v)]
    out = [_vehicle(v, now_s, settings.stale_after_s) for v in chosen]
    return schemas.Vehicles(now_s=now_s, count=len(out), vehicles=out)


@router.get("/api/vehicles/{vehicle_id}", tags=["vehicles"])
async def get_vehicle(
    vehicle_id: str,
    hub: HubDep,
    insight: InsightDep,
    settings: SettingsDep,
    network: NetworkDep,
    store: StoreDep,
    trail_s: Annotated[float, Query(ge=0, le=86_400, description="trail length")] = 900.0,
    next_stops: Annotated[int, Query(ge=0, le=100, description="how many stops ahead")] = 5,
) -> schemas.VehicleDetail:
    """One vehicle: its latest state, its trip with the next stops, its predicted arrivals at
    the stops ahead (on this trip and its block's next ones), and its recent trail."""
    vehicles = hub.vehicles()
    vehicle = vehicles.get(vehicle_id)
    if vehicle is None:
        raise NotFoundError(
            f"no vehicle {vehicle_id!r} in the live view (vehicles heard from in the last "
            f"{settings.hide_after_s:g} s); /api/vehicles lists them"
        )
    now_s = settings.now()
    rows = await store.trail(vehicle_id, since_s=now_s - trail_s, limit=TRAIL_MAX_POINTS)
    predicted = insight.of_vehicle(vehicle_id, now_s)
    return schemas.VehicleDetail(
        now_s=now_s,
        vehicle=_vehicle(vehicle, now_s, settings.stale_after_s),
        trip=_vehicle_trip(network, vehicle, next_stops, predicted),
        trail_s=trail_s,
        trail=[_trail_point(row) for row in rows],
        predictions=predicted_arrivals(network, predicted, vehicles),
    )


def _vehicle(v: LiveVehicle, now_s: float, stale_after_s: float) -> schemas.Vehicle:
    age_s = now_s - v.observed_at_s
    return schemas.Vehicle(
        vehicle_id=v.vehicle_id,
        observed_at_s=round(v.observed_at_s, 3),
        age_s=round(age_s, 1),
        stale=age_s > stale_after_s,
        lat=round(v.lat, 6),
        lon=round(v.lon, 6),
        bearing_deg=finite(v.bearing_deg, 1),
        speed_mps=finite(v.speed_mps, 1),
        state=v.state,
        reason=v.reason,
        route_id=v.route_id,
        trip_id=v.trip_id,
        direction_id=v.direction_id,
        shape_id=v.shape_id,
        shape_dist_m=finite(v.shape_dist_m, 1),
        offset_m=finite(v.offset_m, 1),
        delay_s=finite(v.delay_s, 1),
        headway_s=finite(v.headway_s, 1),
    )


def _vehicle_trip(
    network: Network, v: LiveVehicle, limit: int, predicted: list[Prediction]
) -> schemas.VehicleTrip | None:
    if v.trip_id is None:
        return None
    along_m = (
        v.shape_dist_m if v.shape_dist_m is not None and math.isfinite(v.shape_dist_m) else None
    )
    located = departures.locate_run(
        network, v.trip_id, v.observed_at_s, along_m=along_m, delay_s=v.delay_s
    )
    if located is None:
        return None
    trip_idx = int(network.runs.trip_idx[located.run])
    trip = network.trips[trip_idx]
    calls = departures.next_stops(network, located, along_m=along_m, delay_s=v.delay_s, limit=limit)
    service_date = located.service_date.strftime(departures.DATE_FORMAT)
    on_trip = (trip.trip_id, service_date)
    ahead = {p.stop_sequence: p for p in predicted
             if p.trips_ahead == 0 and (p.trip_id, p.service_date) == on_trip}  # fmt: skip
    return schemas.VehicleTrip(
        trip_id=trip.trip_id,
        route_id=network.routes[trip.route_idx].route_id,
        route_short_name=network.routes[trip.route_idx].short_name,
        headsign=departures.headsign(network, trip_idx),
        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
        service_date=service_date,
        exact_times=bool(network.runs.exact_times[located.run]),
        next_stops=[_next_stop(network, call, ahead.get(call.stop_index), v) for call in calls],
    )


def _next_stop(
    network: Network,
    call: departures.StopCall,
    prediction: Prediction | None,
    vehicle: LiveVehicle,
) -> schemas.NextStop:
    name, lat, lon = network.stops[call.stop_id]  # the loader drops trips with unknown stops
    return schemas.NextStop(
        stop_id=call.stop_id,
        name=name,
        lat=lat,
        lon=lon,
        stop_index=call.stop_index,
        dist_m=round(call.dist_m, 1),
        scheduled_s=call.scheduled_s,
        delay_s=finite(call.delay_s, 1),
        expected_s=round(call.expected_s, 1),
        prediction=None if prediction is None else arrival_range(prediction, vehicle),
    )


def shown_position(row: VehicleRow) -> tuple[float, float]:
    """Where the map draws a stored position: snapped in service or layover, else raw GPS."""
    snapped = row.state.value in _SNAPPED_STATES
    if snapped and row.snapped_lat is not None and row.snapped_lon is not None:
        return row.snapped_lat, row.snapped_lon
    return row.lat, row.lon


def _trail_point(row: VehicleRow) -> schemas.TrailPoint:
    lat, lon = shown_position(row)
    return schemas.TrailPoint(
        observed_at_s=round(row.observed_at_s, 3),
        lat=round(lat, 6),
        lon=round(lon, 6),
        state=row.state.value,
        delay_s=finite(row.delay_s, 1),
    )
