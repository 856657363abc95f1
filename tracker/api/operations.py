"""What dispatchers act on: headways between consecutive buses and their adherence per route,
live alerts (bunching and gapping with a suggested hold, ghost trips, short service, buses that
stopped reporting, detours), recent detours, and a route's time–distance diagram.

The signals come from the engine's latest assessment (tracker.core.operations, every few
seconds, through `Insight`); the diagram from the stored history. Every alert and gap is the
core's own value (fields with their units in their names; docs/operations.md says what each
means); alert changes are also pushed on the websocket (`alerts` messages).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Annotated, Final

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from tracker.api.auth import OPERATORS_ONLY
from tracker.api.deps import (
    InsightDep,
    NetworkDep,
    RoutesQuery,
    SettingsDep,
    StoreDep,
    route_ids_param,
)
from tracker.api.errors import BadParameterError, NotFoundError, problem_responses
from tracker.core.network import Network
from tracker.core.operations import Alert, Detour, Gap, RouteHeadway

DIAGRAM_MAX_S: Final = 6 * 3600.0
DIAGRAM_POSITIONS: Final = 200_000

router = APIRouter(
    dependencies=OPERATORS_ONLY, responses=problem_responses(401, 403, 404, 422, 503)
)


class Alerts(BaseModel):
    now_s: float
    assessed_at_s: float | None = Field(description="when the signals were worked out")
    count: int
    alerts: list[Alert] = Field(description="live, by kind, route and id")


class Headways(BaseModel):
    now_s: float
    assessed_at_s: float | None
    routes: list[RouteHeadway] = Field(description="adherence per route and direction")
    gaps: list[Gap] = Field(description="each bus in service and the bus ahead of it")


class Detours(BaseModel):
    now_s: float
    active: list[Detour]
    ended: list[Detour] = Field(description="the last ones that ended, newest first")


class DiagramStop(BaseModel):
    stop_id: str
    name: str
    dist_m: float


class DiagramTrace(BaseModel):
    vehicle_id: str
    trip_ids: list[str]
    points: list[tuple[float, float]] = Field(description="[epoch s, metres along], by time")


class ScheduledTrace(BaseModel):
    trip_id: str
    points: list[tuple[float, float]] = Field(description="[epoch s, metres along] per stop")


class TimeDistance(BaseModel):
    """A route and direction's buses as lines of distance along the route against time, on
    the shape most of its buses are on (positions on its other shapes are left out), with the
    timetable's lines of the trips on that shape."""

    route_id: str
    direction_id: int | None
    shape_id: str | None = Field(description="null when no position is stored in the window")
    length_m: float | None
    start_s: float
    end_s: float
    stops: list[DiagramStop]
    vehicles: list[DiagramTrace]
    scheduled: list[ScheduledTrace]


def _on_routes(route_id: str, wanted: list[str] | None) -> bool:
    return wanted is None or route_id in wanted


@router.get("/api/operations/alerts", tags=["operations"])
async def alerts(insight: InsightDep, settings: SettingsDep, routes: RoutesQuery = None) -> Alerts:
    """The live alerts, optionally of some routes only."""
    wanted = route_ids_param(routes)
    found = [a for a in insight.alerts() if _on_routes(a.route_id, wanted)]
    assessed = insight.assessment
    return Alerts(now_s=settings.now(), assessed_at_s=None if assessed is None else assessed.at_s,
                  count=len(found), alerts=found)  # fmt: skip


@router.get("/api/operations/headways", tags=["operations"])
async def headways(
    insight: InsightDep, settings: SettingsDep, routes: RoutesQuery = None
) -> Headways:
    """Every gap between consecutive buses against the scheduled one, and headway adherence
    per route and direction (the measure of frequency lines)."""
    wanted = route_ids_param(routes)
    assessed = insight.assessment
    if assessed is None:
        return Headways(now_s=settings.now(), assessed_at_s=None, routes=[], gaps=[])
    return Headways(
        now_s=settings.now(),
        assessed_at_s=assessed.at_s,
        routes=[r for r in assessed.routes if _on_routes(r.route_id, wanted)],
        gaps=[g for g in assessed.gaps if _on_routes(g.route_id, wanted)],
    )


@router.get("/api/operations/detours", tags=["operations"])
async def detours(insight: InsightDep, settings: SettingsDep) -> Detours:
    """Buses on a detour now, and the last detours that ended (where each left and rejoined)."""
    active = [a for a in insight.alerts() if isinstance(a, Detour)]
    return Detours(now_s=settings.now(), active=active, ended=list(reversed(insight.detours)))


@router.get("/api/operations/time-distance", tags=["operations"])
async def time_distance(
    network: NetworkDep,
    store: StoreDep,
    settings: SettingsDep,
    route_id: str,
    direction_id: int | None = None,
    minutes: Annotated[float, Query(gt=0, le=DIAGRAM_MAX_S / 60)] = 60.0,
) -> TimeDistance:
    """The route's buses of the last `minutes` as a time–distance diagram (see the model)."""
    if route_id not in network.route_index:
        raise NotFoundError(f"no route {route_id!r} in the feed; /api/routes lists them")
    end_s = settings.now()
    start_s = end_s - minutes * 60.0
    rows = await store.history(start_s=start_s, end_s=end_s, route_ids=[route_id],
                               limit=DIAGRAM_POSITIONS)  # fmt: skip
    rows = [r for r in rows if direction_id is None or r.direction_id == direction_id]
    on_shape = Counter(r.shape_id for r in rows if r.shape_id is not None)
    if not on_shape:
        return TimeDistance(route_id=route_id, direction_id=direction_id, shape_id=None,
                            length_m=None, start_s=start_s, end_s=end_s, stops=[], vehicles=[],
                            scheduled=[])  # fmt: skip
    shape_id = on_shape.most_common(1)[0][0]
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    trips: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if r.shape_id != shape_id or r.shape_dist_m is None or not math.isfinite(r.shape_dist_m):
            continue
        points[r.vehicle_id].append((round(r.observed_at_s, 1), round(r.shape_dist_m, 1)))
        if r.trip_id is not None and (
            not trips[r.vehicle_id] or trips[r.vehicle_id][-1] != r.trip_id
        ):
            trips[r.vehicle_id].append(r.trip_id)
    shape_idx = next(i for i, s in enumerate(network.shapes) if s.shape_id == shape_id)
    stops, scheduled = _timetable(network, route_id, shape_idx, start_s, end_s)
    return TimeDistance(
        route_id=route_id,
        direction_id=direction_id,
        shape_id=shape_id,
        length_m=round(network.shapes[shape_idx].length_m, 1),
        start_s=start_s,
        end_s=end_s,
        stops=stops,
        vehicles=[
            DiagramTrace(vehicle_id=v, trip_ids=trips[v], points=p)
            for v, p in sorted(points.items())
        ],
        scheduled=scheduled,
    )


def _timetable(
    network: Network, route_id: str, shape_idx: int, start_s: float, end_s: float
) -> tuple[list[DiagramStop], list[ScheduledTrace]]:
    """The stops of the route's longest pattern on the shape, and the scheduled (time,
    distance) of each of its runs on the shape that overlaps [start_s, end_s]."""
    from tracker.core.departures import service_days_around

    route_idx = network.route_index[route_id]
    patterns = [p for p in network.patterns_of_shape.get(shape_idx, [])
                if any(network.trips[int(t)].route_idx == route_idx
                       for t in network.runs.trip_idx[network.patterns[p].runs])]  # fmt: skip
    if not patterns:
        return [], []
    main = max(patterns, key=lambda p: len(network.patterns[p].stop_ids))
    stops = [
        DiagramStop(stop_id=s, name=network.stops[s][0], dist_m=round(float(d), 1))
        for s, d in zip(network.patterns[main].stop_ids, network.patterns[main].stop_dist_m,
                        strict=True)
    ]  # fmt: skip
    scheduled: list[ScheduledTrace] = []
    for day in service_days_around(network, 0.5 * (start_s + end_s)):
        origin = network.day_origin(day)
        active = network.active_runs(day)
        for p in patterns:
            pattern = network.patterns[p]
            for row, run in enumerate(pattern.runs.tolist()):
                if not active[run] or not network.runs.exact_times[run]:
                    continue
                times = origin + pattern.departure_s[row]
                if times[-1] < start_s or times[0] > end_s:
                    continue
                trip = network.trips[int(network.runs.trip_idx[run])]
                if trip.route_idx != route_idx:
                    continue
                scheduled.append(ScheduledTrace(trip_id=trip.trip_id, points=[
                    (round(float(t), 1), round(float(d), 1))
                    for t, d in zip(times, pattern.stop_dist_m, strict=True)
                ]))  # fmt: skip
    if len(scheduled) > 500:
        raise BadParameterError(f"{len(scheduled)} scheduled trips: ask for fewer minutes")
    return stops, scheduled
