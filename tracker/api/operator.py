"""What operators read: the fleet and its punctuality, problems, stored history, counters.
Every endpoint needs an operator's login (`tracker.api.auth`)."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Annotated, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from tracker.api import schemas
from tracker.api.arrivals import LAST_EPOCH_S
from tracker.api.auth import OPERATORS_ONLY, auth_stats
from tracker.api.deps import (
    HubDep,
    IdQuery,
    IngestDep,
    InsightDep,
    NetworkDep,
    PipelineDep,
    QueueDep,
    RoutesQuery,
    SettingsDep,
    StoreDep,
    finite,
    route_ids_param,
)
from tracker.api.errors import BadParameterError, problem_responses
from tracker.api.vehicles import shown_position
from tracker.core import departures
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.operations import Gap, RouteHeadway
from tracker.live.hub import Subscription
from tracker.live.vehicle import LiveVehicle
from tracker.store.postgres import VehicleRow

ON_TIME_EARLY_S: Final = -60.0  # on time: ON_TIME_EARLY_S <= delay_s <= ON_TIME_LATE_S
ON_TIME_LATE_S: Final = 300.0

router = APIRouter(dependencies=OPERATORS_ONLY, responses=problem_responses(401, 403, 422, 503))


@router.get("/api/fleet", tags=["operations"])
async def fleet(
    hub: HubDep, insight: InsightDep, network: NetworkDep, settings: SettingsDep
) -> schemas.Fleet:
    """Every vehicle of the live view (with its gap to the bus ahead), per-route punctuality
    and headway adherence (the measure of frequency lines), and fleet totals.

    On time: −60 s ≤ delay ≤ +300 s, counted among the in-service, not stale vehicles with a
    delay (a stale vehicle's delay is old news; layovers are not service).
    """
    now_s = settings.now()
    vehicles = [v for _, v in sorted(hub.vehicles().items())]
    assessed = insight.assessment
    gaps = {} if assessed is None else {g.follower_vehicle_id: g for g in assessed.gaps}
    rows = [_fleet_vehicle(network, v, now_s, settings.stale_after_s, gaps.get(v.vehicle_id))
            for v in vehicles]  # fmt: skip
    headways = [] if assessed is None else list(assessed.routes)
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
                headway=_headway_summary([h for h in headways if h.route_id == route_id]),
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
    network: Network, v: LiveVehicle, now_s: float, stale_after_s: float, gap: Gap | None
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
        delay_s=finite(v.delay_s, 1),
        gap_s=None if gap is None else finite(gap.gap_s, 1),
        scheduled_gap_s=None if gap is None else finite(gap.scheduled_gap_s, 1),
        state=v.state,
        stale=age_s > stale_after_s,
        last_seen_s=round(v.observed_at_s, 3),
        age_s=round(age_s, 1),
    )


def _headway_summary(directions: list[RouteHeadway]) -> schemas.HeadwaySummary | None:
    """A route's headway adherence over its directions (gap-weighted), or None with no gaps."""
    n = sum(d.gaps for d in directions)
    if not n:
        return None

    def weighted(values: list[tuple[float | None, int]]) -> float | None:
        known = [(v, w) for v, w in values if v is not None and math.isfinite(v) and w > 0]
        total = sum(w for _, w in known)
        return round(sum(v * w for v, w in known) / total, 4) if total else None

    return schemas.HeadwaySummary(
        gaps=n,
        within_band_share=weighted([(d.within_band_share, d.gaps) for d in directions]),
        headway_cv=weighted([(d.headway_cv, d.gaps) for d in directions]),
        mean_gap_s=weighted([(d.mean_gap_s, d.gaps) for d in directions]),
        mean_scheduled_gap_s=weighted([(d.mean_scheduled_gap_s, d.gaps) for d in directions]),
        frequency_based=any(d.frequency_based for d in directions),
        bunched=sum(d.bunched for d in directions),
        gapped=sum(d.gapped for d in directions),
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
        offset_m=finite(v.offset_m, 1),
        last_seen_s=round(v.observed_at_s, 3),
        age_s=round(now_s - v.observed_at_s, 1),
    )


# --- history -------------------------------------------------------------------------------


@router.get("/api/history", tags=["history"], response_model=schemas.History)
async def history(
    store: StoreDep,
    start_s: Annotated[
        float, Query(description="window start, epoch s (included)", ge=0.0, le=LAST_EPOCH_S)
    ],
    end_s: Annotated[
        float, Query(description="window end, epoch s (excluded)", ge=0.0, le=LAST_EPOCH_S)
    ],
    vehicle_id: IdQuery = None,
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
    route_ids = route_ids_param(routes)
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
    lat, lon = shown_position(row)
    return {
        "vehicle_id": row.vehicle_id,
        "observed_at_s": round(row.observed_at_s, 3),
        "lat": round(lat, 6),
        "lon": round(lon, 6),
        "bearing_deg": finite(row.bearing_deg, 1),
        "speed_mps": finite(row.speed_mps, 1),
        "state": row.state.value,
        "route_id": row.route_id,
        "trip_id": row.trip_id,
        "delay_s": finite(row.delay_s, 1),
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
    request: Request,
    pipeline: PipelineDep,
    queue: QueueDep,
    ingest: IngestDep,
    hub: HubDep,
    settings: SettingsDep,
) -> schemas.Stats:
    """Counters since start: pipeline, ingest queue, MQTT client, database writer, live hub,
    logins, polled GTFS-realtime feeds."""
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
        auth=auth_stats(request),
        gtfs_rt=[
            schemas.GtfsRtPollStats.model_validate(poller.stats(), from_attributes=True)
            for poller in getattr(request.app.state, "pollers", [])
        ],
    )
