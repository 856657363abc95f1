"""The HTTP API: thin endpoints over the app's state, the store and the pure core.

Where the answers come from:

- live vehicles: the websocket hub's in-memory state (`Hub.vehicles`), never the database;
- schedules and geometry: the GTFS `Network` through `tracker.core.departures` and
  `tracker.core.geojson`;
- trails and history: `Store` (PostgreSQL);
- counters: the pipeline, the ingest queue, the MQTT client, the store writer and the hub.

Every time is epoch seconds by the service clock (`Settings.now`, which a demo may set apart
from the wall clock), and every answer says what that clock read (``now_s``). Errors are JSON
``{"detail": ...}`` with the status given by `tracker.api.errors` (404 unknown id, 422 bad
parameter, 503 database unavailable). The OpenAPI docs are at ``/docs``.

Derived data that only depends on the network (the whole network as GeoJSON, the route list,
the network's bounds) is computed on first use, off the event loop, and kept for the app's life.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Final, TypeVar, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from tracker.api import schemas
from tracker.api.errors import BadParameterError, NotFoundError, ServiceBrokenError
from tracker.core import departures, geojson
from tracker.core.model import State
from tracker.core.network import Network
from tracker.errors import StoreError
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.queue import AsyncIngestQueue
from tracker.live.hub import Hub, Subscription
from tracker.live.vehicle import LiveVehicle
from tracker.service import Pipeline
from tracker.settings import Settings
from tracker.store.postgres import Store, VehicleRow

T = TypeVar("T")

GEOJSON_MEDIA_TYPE: Final = "application/geo+json"
READY_TIMEOUT_S: Final = 2.0  # a readiness probe that waits longer is not ready
TRAIL_MAX_POINTS: Final = 2000
ON_TIME_EARLY_S: Final = -60.0  # on time: ON_TIME_EARLY_S <= delay_s <= ON_TIME_LATE_S
ON_TIME_LATE_S: Final = 300.0
BBOX_EXAMPLE: Final = "-7.70,33.50,-7.50,33.65"
_SNAPPED_STATES: Final = frozenset({State.IN_SERVICE.value, State.LAYOVER.value})
_ON_A_TRIP: Final = frozenset({State.IN_SERVICE.value, State.LAYOVER.value, State.OFF_ROUTE.value})

router = APIRouter()


# --- dependencies: what the lifespan put in app.state --------------------------------------


def _from_state(request: Request, name: str, kind: type[T]) -> T:
    value = getattr(request.app.state, name, None)
    if not isinstance(value, kind):
        raise RuntimeError(
            f"app.state.{name} is not a {kind.__name__}: the app's lifespan sets it "
            "(tracker.app.create_app); is the app started?"
        )
    return value


def get_settings(request: Request) -> Settings:
    return _from_state(request, "settings", Settings)


def get_network(request: Request) -> Network:
    return _from_state(request, "network", Network)


def get_store(request: Request) -> Store:
    return _from_state(request, "store", Store)


def get_hub(request: Request) -> Hub:
    return _from_state(request, "hub", Hub)


def get_pipeline(request: Request) -> Pipeline:
    return _from_state(request, "pipeline", Pipeline)


def get_ingest(request: Request) -> MqttIngest:
    return _from_state(request, "ingest", MqttIngest)


def get_queue(request: Request) -> AsyncIngestQueue:
    return _from_state(request, "queue", AsyncIngestQueue)


SettingsDep = Annotated[Settings, Depends(get_settings)]
NetworkDep = Annotated[Network, Depends(get_network)]
StoreDep = Annotated[Store, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
IngestDep = Annotated[MqttIngest, Depends(get_ingest)]
QueueDep = Annotated[AsyncIngestQueue, Depends(get_queue)]

RoutesQuery = Annotated[
    str | None, Query(description="comma-separated route ids, e.g. L1,L7; all when left out")
]
BBoxQuery = Annotated[
    str | None,
    Query(description=f"min_lon,min_lat,max_lon,max_lat in degrees, e.g. {BBOX_EXAMPLE}"),
]


async def _per_network(
    request: Request, network: Network, name: str, build: Callable[[Network], T]
) -> T:
    """`build(network)`, computed once per app and network, in a worker thread.

    Two first requests at once may both compute it; the result is the same, so that is only
    wasted work, and cheaper than a lock shared across requests.
    """
    state = request.app.state
    cache = cast(dict[str, tuple[Network, Any]] | None, getattr(state, "api_cache", None))
    if cache is None:
        cache = state.api_cache = {}
    held = cache.get(name)
    if held is not None and held[0] is network:
        return cast(T, held[1])
    value = await asyncio.to_thread(build, network)
    cache[name] = (network, value)
    return value


# --- health --------------------------------------------------------------------------------


@router.get(
    "/healthz",
    tags=["health"],
    responses={503: {"description": "a background task (pipeline, store writer...) crashed"}},
)
async def healthz(request: Request) -> schemas.Health:
    """The process is alive and its background tasks run (says nothing about the network,
    database or broker: see /readyz)."""
    failed = getattr(request.app.state, "failed_tasks", [])
    if failed:
        raise ServiceBrokenError(f"background task(s) {', '.join(failed)} failed: see the log")
    return schemas.Health()


@router.get(
    "/readyz",
    tags=["health"],
    response_model=schemas.Readiness,
    responses={503: {"model": schemas.Readiness, "description": "a part is not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 when the network is loaded, the database answers and MQTT is connected; else 503."""
    state = request.app.state
    readiness = await check_readiness(
        getattr(state, "network", None),
        getattr(state, "store", None),
        getattr(state, "ingest", None),
    )
    for task in getattr(state, "failed_tasks", []):
        readiness.problems.append(f"{task}: the background task failed (see the log)")
        readiness.ready = False
    return JSONResponse(readiness.model_dump(), status_code=200 if readiness.ready else 503)


async def check_readiness(network: object, store: object, ingest: object) -> schemas.Readiness:
    problems: list[str] = []
    network_ok = isinstance(network, Network)
    if not network_ok:
        problems.append("network: the GTFS feed is not loaded (yet)")
    database_ok = False
    if isinstance(store, Store):
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                database_ok = await store.is_ready()
        except (TimeoutError, StoreError):
            database_ok = False
    if not database_ok:
        problems.append(
            "database: PostgreSQL does not answer within "
            f"{READY_TIMEOUT_S:g} s, or its schema is not up to date"
        )
    mqtt_ok = isinstance(ingest, MqttIngest) and ingest.connected
    if not mqtt_ok:
        where = f" {ingest.address}" if isinstance(ingest, MqttIngest) else ""
        problems.append(f"mqtt: not connected to the broker{where}")
    return schemas.Readiness(
        ready=not problems,
        network=network_ok,
        database=database_ok,
        mqtt=mqtt_ok,
        problems=problems,
    )


# --- vehicles ------------------------------------------------------------------------------


@router.get("/api/vehicles", tags=["vehicles"])
async def list_vehicles(
    hub: HubDep, settings: SettingsDep, routes: RoutesQuery = None, bbox: BBoxQuery = None
) -> schemas.Vehicles:
    """The current vehicles (the live map's state), optionally on some routes and in a box.

    The box filters on the drawn position (`lat`/`lon`). A bad `routes` or `bbox` is a 422
    that says what to send.
    """
    wanted = Subscription.of(routes=_route_ids(routes), bbox=_bbox(bbox))
    now_s = settings.now()
    chosen = [v for _, v in sorted(hub.vehicles().items()) if wanted.matches(v)]
    out = [_vehicle(v, now_s, settings.stale_after_s) for v in chosen]
    return schemas.Vehicles(now_s=now_s, count=len(out), vehicles=out)


@router.get("/api/vehicles/{vehicle_id}", tags=["vehicles"])
async def get_vehicle(
    vehicle_id: str,
    hub: HubDep,
    settings: SettingsDep,
    network: NetworkDep,
    store: StoreDep,
    trail_s: Annotated[float, Query(ge=0, le=86_400, description="trail length")] = 900.0,
    next_stops: Annotated[int, Query(ge=0, le=100, description="how many stops ahead")] = 5,
) -> schemas.VehicleDetail:
    """One vehicle: its latest state, its trip with the next stops, and its recent trail."""
    vehicle = hub.vehicles().get(vehicle_id)
    if vehicle is None:
        raise NotFoundError(
            f"no vehicle {vehicle_id!r} in the live view (vehicles heard from in the last "
            f"{settings.hide_after_s:g} s); /api/vehicles lists them"
        )
    now_s = settings.now()
    rows = await store.trail(vehicle_id, since_s=now_s - trail_s, limit=TRAIL_MAX_POINTS)
    return schemas.VehicleDetail(
        now_s=now_s,
        vehicle=_vehicle(vehicle, now_s, settings.stale_after_s),
        trip=_vehicle_trip(network, vehicle, next_stops),
        trail_s=trail_s,
        trail=[_trail_point(row) for row in rows],
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
        bearing_deg=_finite(v.bearing_deg, 1),
        speed_mps=_finite(v.speed_mps, 1),
        state=v.state,
        reason=v.reason,
        route_id=v.route_id,
        trip_id=v.trip_id,
        direction_id=v.direction_id,
        shape_id=v.shape_id,
        shape_dist_m=_finite(v.shape_dist_m, 1),
        offset_m=_finite(v.offset_m, 1),
        delay_s=_finite(v.delay_s, 1),
        headway_s=_finite(v.headway_s, 1),
    )


def _vehicle_trip(network: Network, v: LiveVehicle, limit: int) -> schemas.VehicleTrip | None:
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
    return schemas.VehicleTrip(
        trip_id=trip.trip_id,
        route_id=network.routes[trip.route_idx].route_id,
        route_short_name=network.routes[trip.route_idx].short_name,
        headsign=departures.headsign(network, trip_idx),
        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
        service_date=located.service_date.strftime(departures.DATE_FORMAT),
        exact_times=bool(network.runs.exact_times[located.run]),
        next_stops=[_next_stop(network, call) for call in calls],
    )


def _next_stop(network: Network, call: departures.StopCall) -> schemas.NextStop:
    name, lat, lon = network.stops[call.stop_id]  # the loader drops trips with unknown stops
    return schemas.NextStop(
        stop_id=call.stop_id,
        name=name,
        lat=lat,
        lon=lon,
        stop_index=call.stop_index,
        dist_m=round(call.dist_m, 1),
        scheduled_s=call.scheduled_s,
        delay_s=_finite(call.delay_s, 1),
        expected_s=round(call.expected_s, 1),
    )


def _shown_position(row: VehicleRow) -> tuple[float, float]:
    """Where the map draws a stored position: snapped in service or layover, else raw GPS."""
    snapped = row.state.value in _SNAPPED_STATES
    if snapped and row.snapped_lat is not None and row.snapped_lon is not None:
        return row.snapped_lat, row.snapped_lon
    return row.lat, row.lon


def _trail_point(row: VehicleRow) -> schemas.TrailPoint:
    lat, lon = _shown_position(row)
    return schemas.TrailPoint(
        observed_at_s=round(row.observed_at_s, 3),
        lat=round(lat, 6),
        lon=round(lon, 6),
        state=row.state.value,
        delay_s=_finite(row.delay_s, 1),
    )


# --- routes --------------------------------------------------------------------------------


@router.get("/api/routes", tags=["network"])
async def list_routes(request: Request, network: NetworkDep) -> schemas.Routes:
    """Every route of the feed, in feed order."""
    return await _per_network(request, network, "routes", _routes)


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
    return _geojson_response(geojson.route_collection(network, route_id))


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
    body = await _per_network(request, network, "network.geojson", _network_geojson_bytes)
    return Response(body, media_type=GEOJSON_MEDIA_TYPE, headers={"ETag": etag})


def _network_geojson_bytes(network: Network) -> bytes:
    return _dumps(geojson.network_collection(network))


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
    box = Subscription.of(bbox=_bbox(bbox)).bbox
    return _geojson_response(geojson.stops_collection(network, bbox=box, limit=limit))


@router.get("/api/stops/{stop_id:path}", tags=["network"])
async def get_stop(
    stop_id: str,
    network: NetworkDep,
    hub: HubDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=100, description="how many departures")] = 10,
) -> schemas.StopDetail:
    """A stop and its next departures from now, with live delays where a vehicle is on the trip.

    Live: a vehicle of the live view, not stale, on that trip on that service day; then
    ``expected_s = scheduled_s + delay_s``. Frequency-based trips get no live delay.
    """
    if stop_id not in network.stops:
        raise NotFoundError(f"no stop {stop_id!r} in the feed; /api/stops lists them")
    now_s = settings.now()
    serving = departures.trip_ids_of_stop(network, stop_id)
    on_trips = [v for v in hub.vehicles().values() if v.trip_id in serving]
    delays, vehicle_of = _live_delays(network, on_trips, now_s, settings)
    found = departures.next_departures(
        network, stop_id, now_s=now_s, live_delays=delays, limit=limit
    )
    name, lat, lon = network.stops[stop_id]
    return schemas.StopDetail(
        now_s=now_s,
        stop_id=stop_id,
        name=name,
        lat=lat,
        lon=lon,
        route_ids=departures.routes_of_stop(network, stop_id),
        departures=[_departure(network, d, vehicle_of) for d in found],
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


def _departure(
    network: Network, d: departures.Departure, vehicle_of: dict[tuple[str, str], str]
) -> schemas.Departure:
    route = network.routes[network.route_index[d.route_id]]
    return schemas.Departure(
        route_id=d.route_id,
        route_short_name=route.short_name,
        trip_id=d.trip_id,
        headsign=d.headsign,
        direction_id=d.direction_id,
        service_date=d.service_date,
        scheduled_s=d.scheduled_s,
        live=d.live,
        delay_s=_finite(d.delay_s, 1),
        expected_s=round(d.expected_s, 1),
        vehicle_id=vehicle_of.get((d.trip_id, d.service_date)) if d.live else None,
        exact_times=d.exact_times,
        headway_s=d.headway_s,
    )


# --- operators -------------------------------------------------------------------------------


@router.get("/api/fleet", tags=["operations"])
async def fleet(hub: HubDep, network: NetworkDep, settings: SettingsDep) -> schemas.Fleet:
    """Every vehicle of the live view, per-route punctuality, and fleet totals.

    On time: −60 s ≤ delay ≤ +300 s, counted among the in-service, not stale vehicles with a
    delay (a stale vehicle's delay is old news; layovers are not service).
    """
    now_s = settings.now()
    vehicles = [v for _, v in sorted(hub.vehicles().items())]
    rows = [_fleet_vehicle(network, v, now_s, settings.stale_after_s) for v in vehicles]
    counted = [
        (row.route_id, row.delay_s)
        for row in rows
        if row.state == State.IN_SERVICE.value and not row.stale and row.delay_s is not None
    ]
    per_route: list[schemas.FleetRoute] = []
    for route_id in sorted({row.route_id for row in rows if row.route_id is not None}):
        on_route = [row for row in rows if row.route_id == route_id]
        route = (
            network.routes[network.route_index[route_id]]
            if route_id in network.route_index
            else None
        )
        per_route.append(
            schemas.FleetRoute(
                route_id=route_id,
                route_short_name=route.short_name if route is not None else route_id,
                vehicles=len(on_route),
                in_service=sum(row.state == State.IN_SERVICE.value for row in on_route),
                stale=sum(row.stale for row in on_route),
                punctuality=_delay_summary([d for r, d in counted if r == route_id]),
            )
        )
    totals = schemas.FleetTotals(
        vehicles=len(rows),
        by_state=dict(Counter(row.state for row in rows)),
        stale=sum(row.stale for row in rows),
        punctuality=_delay_summary([d for _, d in counted]),
    )
    return schemas.Fleet(
        now_s=now_s,
        stale_after_s=settings.stale_after_s,
        vehicles=rows,
        routes=per_route,
        totals=totals,
    )


def _fleet_vehicle(
    network: Network, v: LiveVehicle, now_s: float, stale_after_s: float
) -> schemas.FleetVehicle:
    route_idx = network.route_index.get(v.route_id) if v.route_id is not None else None
    trip_idx = network.trip_index.get(v.trip_id) if v.trip_id is not None else None
    age_s = now_s - v.observed_at_s
    return schemas.FleetVehicle(
        vehicle_id=v.vehicle_id,
        route_id=v.route_id,
        route_short_name=network.routes[route_idx].short_name if route_idx is not None else None,
        trip_id=v.trip_id,
        headsign=departures.headsign(network, trip_idx) if trip_idx is not None else None,
        delay_s=_finite(v.delay_s, 1),
        state=v.state,
        stale=age_s > stale_after_s,
        last_seen_s=round(v.observed_at_s, 3),
        age_s=round(age_s, 1),
    )


def _delay_summary(delays_s: list[float]) -> schemas.DelaySummary:
    """How many of these delays (seconds) are on time, their median and 90th percentile."""
    on_time = sum(ON_TIME_EARLY_S <= d <= ON_TIME_LATE_S for d in delays_s)
    ordered = sorted(delays_s)
    return schemas.DelaySummary(
        with_delay=len(ordered),
        on_time=on_time,
        on_time_share=round(on_time / len(ordered), 4) if ordered else None,
        median_delay_s=_percentile(ordered, 0.5),
        p90_delay_s=_percentile(ordered, 0.9),
    )


def _percentile(ordered: list[float], q: float) -> float | None:
    """The `q` quantile of sorted values, interpolated linearly between ranks (numpy's default)."""
    if not ordered:
        return None
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 1)


@router.get("/api/problems", tags=["operations"])
async def problems(
    hub: HubDep,
    pipeline: PipelineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=0, le=500, description="how many rejected messages")] = 100,
) -> schemas.Problems:
    """Vehicles that need a look (stale, off route, not matched) and recently rejected messages."""
    now_s = settings.now()
    vehicles = [v for _, v in sorted(hub.vehicles().items())]
    listed = [_vehicle_problem(v, now_s) for v in vehicles]
    recent = list(pipeline.problems)[::-1][:limit]
    return schemas.Problems(
        now_s=now_s,
        stale=[p for p in listed if p.age_s > settings.stale_after_s],
        off_route=[p for p in listed if p.state == State.OFF_ROUTE.value],
        not_matched=[p for p in listed if p.state == State.NOT_MATCHED.value],
        rejected=[
            schemas.RejectedMessage(
                received_at_s=round(p.received_at_s, 3),
                vehicle_id=p.vehicle_id,
                reason=p.reason,
                detail=p.detail,
            )
            for p in recent
        ],
        rejected_by_reason=dict(pipeline.stats.rejected_by_reason),
    )


def _vehicle_problem(v: LiveVehicle, now_s: float) -> schemas.VehicleProblem:
    return schemas.VehicleProblem(
        vehicle_id=v.vehicle_id,
        state=v.state,
        reason=v.reason,
        route_id=v.route_id,
        trip_id=v.trip_id,
        lat=round(v.lat, 6),
        lon=round(v.lon, 6),
        offset_m=_finite(v.offset_m, 1),
        last_seen_s=round(v.observed_at_s, 3),
        age_s=round(now_s - v.observed_at_s, 1),
    )


# --- history -------------------------------------------------------------------------------


@router.get("/api/history", tags=["history"], response_model=schemas.History)
async def history(
    store: StoreDep,
    start_s: Annotated[float, Query(description="window start, epoch s (included)")],
    end_s: Annotated[float, Query(description="window end, epoch s (excluded)")],
    vehicle_id: str | None = None,
    routes: RoutesQuery = None,
    limit: Annotated[int, Query(ge=1, le=200_000)] = 50_000,
) -> Response:
    """Stored positions observed in [start_s, end_s), oldest first, at most `limit`.

    ``truncated`` says the window held more: ask again from the last ``observed_at_s``.
    """
    if not (math.isfinite(start_s) and math.isfinite(end_s) and start_s < end_s):
        raise BadParameterError(
            f"the window start_s={start_s} end_s={end_s} is empty or not finite: give epoch "
            "seconds with start_s < end_s (/api/history/bounds tells what is stored)"
        )
    route_ids = _route_ids(routes)
    if route_ids is not None:
        Subscription.of(routes=route_ids)  # the same checks as the live filter
    rows = await store.history(
        start_s=start_s, end_s=end_s, vehicle_id=vehicle_id, route_ids=route_ids, limit=limit + 1
    )
    truncated = len(rows) > limit
    positions = [_history_position(row) for row in rows[:limit]]
    answer = schemas.History.model_construct(
        start_s=start_s,
        end_s=end_s,
        count=len(positions),
        limit=limit,
        truncated=truncated,
        positions=positions,
    )
    # Serialised by pydantic-core from plain dicts: no per-row validation (see HistoryPosition).
    return Response(answer.model_dump_json(), media_type="application/json")


def _history_position(row: VehicleRow) -> schemas.HistoryPosition:
    lat, lon = _shown_position(row)
    return {
        "vehicle_id": row.vehicle_id,
        "observed_at_s": round(row.observed_at_s, 3),
        "lat": round(lat, 6),
        "lon": round(lon, 6),
        "bearing_deg": _finite(row.bearing_deg, 1),
        "speed_mps": _finite(row.speed_mps, 1),
        "state": row.state.value,
        "route_id": row.route_id,
        "trip_id": row.trip_id,
        "delay_s": _finite(row.delay_s, 1),
    }


@router.get("/api/history/bounds", tags=["history"])
async def history_bounds(store: StoreDep) -> schemas.HistoryBounds:
    """The first and last stored observation times (nulls when nothing is stored)."""
    bounds = await store.history_bounds()
    if bounds is None:
        return schemas.HistoryBounds(first_s=None, last_s=None)
    return schemas.HistoryBounds(first_s=bounds[0], last_s=bounds[1])


# --- the service ---------------------------------------------------------------------------


@router.get("/api/stats", tags=["operations"])
async def stats(
    pipeline: PipelineDep,
    queue: QueueDep,
    ingest: IngestDep,
    hub: HubDep,
    settings: SettingsDep,
) -> schemas.Stats:
    """Counters since start: pipeline, ingest queue, MQTT client, database writer, live hub."""
    return schemas.Stats(
        now_s=settings.now(),
        pipeline=schemas.PipelineStats.model_validate(pipeline.stats, from_attributes=True),
        queue=queue.stats(),
        queue_capacity=queue.capacity,
        ingest=schemas.IngestStats(
            connected=ingest.connected,
            broker=str(ingest.address),
            **dataclasses.asdict(ingest.stats),
        ),
        writer=schemas.WriterStats.model_validate(pipeline.writer, from_attributes=True),
        hub=hub.stats(),
    )


@router.get("/api/config", tags=["web"])
async def config(request: Request, network: NetworkDep, settings: SettingsDep) -> schemas.Config:
    """What the web pages need to start: tiles, thresholds, time zone, where the network is."""
    bounds = await _per_network(request, network, "bounds", geojson.network_bounds)
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


# --- parameters and small helpers ------------------------------------------------------------


def _route_ids(text: str | None) -> list[str] | None:
    """``"L1, L7"`` → ["L1", "L7"]; None stays None; ``""`` → [] (which the filter refuses)."""
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",")]
    return [] if ids == [""] else ids


def _bbox(text: str | None) -> list[float] | None:
    """``"min_lon,min_lat,max_lon,max_lat"`` → four floats (checked by `Subscription`)."""
    if text is None:
        return None
    numbers = []
    for part in text.split(","):
        try:
            numbers.append(float(part))
        except ValueError:
            raise BadParameterError(
                f"bbox {text!r}: {part.strip()!r} is not a number; give "
                f"min_lon,min_lat,max_lon,max_lat in degrees, e.g. bbox={BBOX_EXAMPLE}"
            ) from None
    return numbers


def _finite(value: float | None, decimals: int) -> float | None:
    """`value` rounded, or None when missing or not finite (JSON has no NaN)."""
    return round(value, decimals) if value is not None and math.isfinite(value) else None


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def _geojson_response(document: object) -> Response:
    return Response(_dumps(document), media_type=GEOJSON_MEDIA_TYPE)
