"""The network: routes and stops from the GTFS feed, a stop's next departures with live delays,
and what the web pages need to start (``/api/config``)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tracker.api import schemas
from tracker.api.arrivals import arrival_range, predicted_arrivals
from tracker.api.deps import (
    GEOJSON_MEDIA_TYPE,
    BBoxQuery,
    HubDep,
    InsightDep,
    NetworkDep,
    SettingsDep,
    bbox_param,
    dumps,
    finite,
    geojson_response,
    per_network,
)
from tracker.api.errors import NotFoundError, problem_responses
from tracker.core import departures, geojson
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.predict import Prediction
from tracker.live.hub import Subscription
from tracker.live.vehicle import LiveVehicle
from tracker.settings import Settings

_ON_A_TRIP: Final = frozenset({State.IN_SERVICE.value, State.LAYOVER.value, State.OFF_ROUTE.value})

router = APIRouter(responses=problem_responses(404, 422))


@router.get("/api/routes", tags=["network"])
async def list_routes(request: Request, network: NetworkDep) -> schemas.Routes:
    """Every route of the feed, in feed order."""
    return await per_network(request, network, "routes", _routes)


def _routes(network: Network) -> schemas.Routes:
    shaped = {
        trip.route_idx for trip in network.trips if not network.shapes[trip.shape_idx].from_stops
    }
    return schemas.Routes(
        routes=[
            schemas.Route(
                route_id=route.route_id,
                short_name=route.short_name,
                long_name=route.long_name,
                color=geojson.css_color(route.color),
                text_color=geojson.css_color(route.text_color),
                route_type=route.route_type,
                has_shape=route_idx in shaped,
            )
            for route_idx, route in enumerate(network.routes)
        ]
    )


@router.get(
    "/api/routes/{route_id:path}",
    tags=["network"],
    response_model=schemas.FeatureCollection,
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}},
)
async def get_route(route_id: str, network: NetworkDep) -> Response:
    """One route as GeoJSON: a LineString per distinct shape, then a Point per stop.

    Also answers at ``/api/routes/{route_id}.geojson``.
    """
    if route_id not in network.route_index and route_id.endswith(".geojson"):
        route_id = route_id.removesuffix(".geojson")
    if route_id not in network.route_index:
        raise NotFoundError(f"no route {route_id!r} in the feed; /api/routes lists them")
    return geojson_response(geojson.route_collection(network, route_id))


@router.get(
    "/api/network.geojson",
    tags=["network"],
    response_model=schemas.FeatureCollection,
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}, 304: {"description": "unchanged"}},
)
async def network_geojson(request: Request, network: NetworkDep) -> Response:
    """Every shape a trip follows, one LineString each, simplified to about 5 m.

    Serialised once per app; the ETag is the feed's hash, so a client can revalidate cheaply.
    """
    etag = f'"{network.feed_hash}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    body = await per_network(request, network, "network.geojson", _network_geojson_bytes)
    return Response(body, media_type=GEOJSON_MEDIA_TYPE, headers={"ETag": etag})


def _network_geojson_bytes(network: Network) -> bytes:
    return dumps(geojson.network_collection(network))


# --- stops ---------------------------------------------------------------------------------


@router.get(
    "/api/stops",
    tags=["network"],
    response_model=schemas.FeatureCollection,
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}},
)
async def list_stops(
    network: NetworkDep,
    bbox: BBoxQuery = None,
    limit: Annotated[int, Query(ge=1, le=20_000)] = 1000,
) -> Response:
    """Stops in a box as GeoJSON Points, nearest the box's middle first, at most `limit`.

    The collection's ``truncated`` member says whether stops were left out (zoom in).
    """
    box = Subscription.of(bbox=bbox_param(bbox)).bbox
    return geojson_response(geojson.stops_collection(network, bbox=box, limit=limit))


@router.get("/api/stops/{stop_id:path}", tags=["network"])
async def get_stop(
    stop_id: str,
    network: NetworkDep,
    hub: HubDep,
    insight: InsightDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="how many departures")] = 10,
) -> schemas.StopDetail:
    """A stop, the buses on their way to it (predicted arrivals, with their p10–p90 range) and
    its next departures from now, with live delays where a vehicle is on the trip.

    Live: a vehicle of the live view, not stale, on that trip on that service day; then
    ``expected_s = scheduled_s + delay_s``, and `prediction` is the bus's predicted arrival.
    Frequency-based trips get no live delay; their buses are in `arrivals`. A departure whose
    trip should be under way with no bus on it says so (`no_bus`).
    """
    if stop_id not in network.stops:
        raise NotFoundError(f"no stop {stop_id!r} in the feed; /api/stops lists them")
    now_s = settings.now()
    vehicles = hub.vehicles()
    serving = departures.trip_ids_of_stop(network, stop_id)
    on_trips = [v for v in vehicles.values() if v.trip_id in serving]
    delays, vehicle_of = _live_delays(network, on_trips, now_s, settings)
    found = departures.next_departures(
        network, stop_id, now_s=now_s, live_delays=delays, limit=limit
    )
    predicted = insight.at_stop(stop_id, now_s)
    by_trip = {(p.trip_id, p.service_date): p for p in reversed(predicted)}  # soonest wins
    name, lat, lon = network.stops[stop_id]
    return schemas.StopDetail(
        now_s=now_s,
        stop_id=stop_id,
        name=name,
        lat=lat,
        lon=lon,
        route_ids=departures.routes_of_stop(network, stop_id),
        departures=[_departure(network, d, vehicle_of, by_trip, vehicles, now_s) for d in found],
        arrivals=predicted_arrivals(network, predicted, vehicles),
    )


def _live_delays(
    network: Network, vehicles: Iterable[LiveVehicle], now_s: float, settings: Settings
) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], str]]:
    """(trip_id, service_date) → delay_s and → vehicle_id, of the fresh vehicles on a trip.

    The hub does not hold service dates: they are told from the schedule (`locate_run`). Where
    two vehicles claim one trip, the one heard from last wins.
    """
    delays: dict[tuple[str, str], float] = {}
    vehicle_of: dict[tuple[str, str], str] = {}
    heard_at: dict[tuple[str, str], float] = {}
    for v in vehicles:
        if (
            v.trip_id is None
            or v.state not in _ON_A_TRIP
            or v.delay_s is None
            or not math.isfinite(v.delay_s)
            or now_s - v.observed_at_s > settings.stale_after_s
        ):
            continue
        located = departures.locate_run(network, v.trip_id, v.observed_at_s, delay_s=v.delay_s)
        if located is None:
            continue
        key = (v.trip_id, located.service_date.strftime(departures.DATE_FORMAT))
        if key not in heard_at or v.observed_at_s > heard_at[key]:
            heard_at[key] = v.observed_at_s
            delays[key] = v.delay_s
            vehicle_of[key] = v.vehicle_id
    return delays, vehicle_of


NO_BUS_AFTER_S: Final = 120.0
"""A trip this long past its first departure with no bus on it has none (`Departure.no_bus`)."""


def _departure(
    network: Network,
    d: departures.Departure,
    vehicle_of: dict[tuple[str, str], str],
    predicted: dict[tuple[str, str], Prediction],
    vehicles: dict[str, LiveVehicle],
    now_s: float,
) -> schemas.Departure:
    route = network.routes[network.route_index[d.route_id]]
    prediction = predicted.get((d.trip_id, d.service_date)) if d.exact_times else None
    no_bus = (
        d.exact_times
        and not d.live
        and prediction is None
        and _first_departure_s(network, d.trip_id, d.service_date) < now_s - NO_BUS_AFTER_S
    )
    return schemas.Departure(
        route_id=d.route_id,
        route_short_name=route.short_name,
        trip_id=d.trip_id,
        headsign=d.headsign,
        direction_id=d.direction_id,
        service_date=d.service_date,
        scheduled_s=d.scheduled_s,
        live=d.live,
        delay_s=finite(d.delay_s, 1),
        expected_s=round(d.expected_s, 1),
        vehicle_id=vehicle_of.get((d.trip_id, d.service_date)) if d.live else None,
        exact_times=d.exact_times,
        headway_s=d.headway_s,
        prediction=None
        if prediction is None
        else arrival_range(prediction, vehicles.get(prediction.vehicle_id)),
        no_bus=no_bus,
    )


def _first_departure_s(network: Network, trip_id: str, service_date: str) -> float:
    """When a plain trip leaves its first stop on a service day, epoch s."""
    run = network.runs_of_trip[network.trip_index[trip_id]][0]
    day = dt.datetime.strptime(service_date, departures.DATE_FORMAT).date()
    return network.day_origin(day) + float(network.runs.start_s[run])


@router.get("/api/config", tags=["web"])
async def config(request: Request, network: NetworkDep, settings: SettingsDep) -> schemas.Config:
    """What the web pages need to start: tiles, thresholds, time zone, where the network is."""
    bounds = await per_network(request, network, "bounds", geojson.network_bounds)
    return schemas.Config(
        now_s=settings.now(),
        tiles_url=settings.tiles_url,
        tiles_attribution=settings.tiles_attribution,
        stale_after_s=settings.stale_after_s,
        hide_after_s=settings.hide_after_s,
        timezone=network.timezone,
        bounds=[round(x, 6) for x in bounds] if bounds is not None else None,
        feed_hash=network.feed_hash,
    )
