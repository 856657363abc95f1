"""The operator marks a trip cancelled, and undoes it:

    POST   /api/operator/cancellations                              {trip_id, service_date, ...}
    DELETE /api/operator/cancellations/{service_date}/{trip_id}
    GET    /api/operator/cancellations[?service_date=YYYYMMDD]

A cancellation names a trip of the static GTFS and a service day its calendar runs it on
(checked by `tracker.core.cancellations.cancellation`: an unknown trip, a day it does not run, a
trip of frequencies.txt are refused with 422 and a message saying why, and counted). It is
stored in PostgreSQL first (`tracker.store.cancellations`), so that it survives a restart, then
held in memory (`app.state.cancellations`, the same object as `Insight.cancellations`) for the
GTFS-realtime feeds and the operations alerts: the feeds tell the trip CANCELED with a
NO_SERVICE alert at their next build (a second at most), and the trip's ghost alert is taken off
the list, on the pages too (its closing is pushed on the websocket; undoing pushes it again).

Every one needs an operator's login (`tracker.api.auth`); a page's POST and DELETE send the
session's CSRF token.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from tracker.api.auth import OPERATORS_ONLY
from tracker.api.deps import HubDep, InsightDep, NetworkDep, SettingsDep, StoreDep
from tracker.api.errors import BadParameterError, NotFoundError, problem_responses
from tracker.core.cancellations import (
    Cancellation,
    CancellationError,
    Cancellations,
    Cause,
    cancellation,
    service_day,
)
from tracker.core.network import Network
from tracker.core.operations import AlertChange, Change
from tracker.export.gtfs_rt import shown_cancellations
from tracker.store import cancellations as stored
from tracker.store.postgres import Store

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/api/operator/cancellations",
    tags=["operator"],
    dependencies=OPERATORS_ONLY,
    responses=problem_responses(400, 401, 403, 404, 422, 503),  # 400: a body that is not JSON
)


def get_cancellations(request: Request) -> Cancellations:
    found = getattr(request.app.state, "cancellations", None)
    if not isinstance(found, Cancellations):
        raise RuntimeError(
            "app.state.cancellations is not set: the app's lifespan loads it "
            "(tracker.app.create_app, `load_cancellations`); is the app started?"
        )
    return found


CancellationsDep = Annotated[Cancellations, Depends(get_cancellations)]


class CancelTrip(BaseModel):
    """What the operator says: this trip does not run that day."""

    trip_id: str = Field(min_length=1, examples=["C_0712"], description="trips.txt's trip_id")
    service_date: str = Field(
        examples=["20260304"],
        description="the GTFS service day, YYYYMMDD (a trip after midnight: the day before)",
    )
    cause: Cause = Field(Cause.UNKNOWN_CAUSE, description="GTFS-realtime Alert.Cause, for riders")
    reason: str | None = Field(None, description="a few words for riders (shown in the alert)")


class CancelledTrip(BaseModel):
    trip_id: str
    service_date: str
    route_id: str
    direction_id: int | None
    scheduled_departure_s: float = Field(description="epoch s, from its first stop")
    scheduled_arrival_s: float = Field(description="epoch s, at its last stop")
    cause: Cause
    reason: str
    cancelled_at_s: float = Field(description="epoch s, on the service clock")
    in_feeds: bool = Field(
        description="told in the GTFS-realtime feeds now (from 24 h before it leaves until "
        "its scheduled arrival)"
    )


class CancelledTrips(BaseModel):
    now_s: float
    count: int
    cancellations: list[CancelledTrip] = Field(description="by service date, then trip id")
    refused: dict[str, int] = Field(description="requests refused since the start, by reason")


class Undone(BaseModel):
    now_s: float
    trip_id: str
    service_date: str
    ghost_listed: bool = Field(description="its ghost alert (no bus on it) is listed again")


async def load_cancellations(store: Store, network: Network, now_s: float) -> Cancellations:
    """The stored cancellations of yesterday's service day on (older trips are over), checked
    against this feed: one that no longer applies (the feed changed) is left out, with a
    warning. The app's lifespan calls this at start."""
    held = Cancellations()
    for row in await stored.load(store, from_service_date=_yesterday(network, now_s)):
        try:
            cause = Cause(row.cause) if row.cause in Cause.__members__ else Cause.UNKNOWN_CAUSE
            found = cancellation(network, row.trip_id, row.service_date, cause=cause,
                                 reason=row.reason, cancelled_at_s=row.cancelled_at_s)  # fmt: skip
        except CancellationError as e:
            log.warning("the stored cancellation of trip %r on %s does not apply to this feed, "
                        "left out: %s", row.trip_id, row.service_date, e)  # fmt: skip
        else:
            held.put(found)
    log.info("%d trip cancellations held", len(held))
    return held


def _yesterday(network: Network, now_s: float) -> str:
    return f"{network.local_date(now_s) - dt.timedelta(days=1):%Y%m%d}"


def _view(c: Cancellation, now_s: float) -> CancelledTrip:
    return CancelledTrip(
        trip_id=c.trip_id,
        service_date=c.service_date,
        route_id=c.route_id,
        direction_id=c.direction_id,
        scheduled_departure_s=c.scheduled_departure_s,
        scheduled_arrival_s=c.scheduled_arrival_s,
        cause=c.cause,
        reason=c.reason,
        cancelled_at_s=c.cancelled_at_s,
        in_feeds=bool(shown_cancellations([c], now_s)),
    )


@router.post(
    "", status_code=201, responses={200: {"description": "it was cancelled already: updated"}}
)
async def cancel_trip(
    body: CancelTrip,
    response: Response,
    network: NetworkDep,
    store: StoreDep,
    settings: SettingsDep,
    held: CancellationsDep,
    insight: InsightDep,
    hub: HubDep,
) -> CancelledTrip:
    """Mark a trip cancelled on a service day (201; 200 when it was already: its cause and
    reason are updated). 422 when the trip is not in the feed, does not run that day, or is a
    frequency-based trip."""
    now_s = settings.now()
    try:
        found = cancellation(network, body.trip_id, body.service_date, cause=body.cause,
                             reason=body.reason or "", cancelled_at_s=now_s)  # fmt: skip
    except CancellationError as e:
        held.refused[e.reason] += 1
        raise BadParameterError(str(e)) from None
    before = held.get(found.trip_id, found.service_date)
    if before is not None:
        found = replace(found, cancelled_at_s=before.cancelled_at_s)
    await stored.save(store, found)  # first the database: what is held survives a restart
    held.put(found)
    held.forget_before(_yesterday(network, now_s))
    ghost = insight.ghost_of(found.trip_id, found.service_date)
    if ghost is not None and before is None:  # off the operators' lists now
        hub.announce([AlertChange(Change.CLOSED, ghost)])
    log.info("trip %s on %s marked cancelled (%s%s)", found.trip_id, found.service_date,
             found.cause.value, f": {found.reason}" if found.reason else "")  # fmt: skip
    if before is not None:
        response.status_code = 200
    return _view(found, now_s)


@router.delete("/{service_date}/{trip_id}")
async def undo_cancellation(
    service_date: str,
    trip_id: str,
    store: StoreDep,
    settings: SettingsDep,
    held: CancellationsDep,
    insight: InsightDep,
    hub: HubDep,
) -> Undone:
    """Undo a trip's cancellation: the trip runs after all. 404 when it is not cancelled."""
    try:
        service_day(service_date)
    except CancellationError as e:
        held.refused[e.reason] += 1
        raise BadParameterError(str(e)) from None
    was_stored = await stored.delete(store, trip_id, service_date)
    was_held = held.remove(trip_id, service_date) is not None
    if not (was_stored or was_held):
        held.refused["not_cancelled"] += 1
        raise NotFoundError(
            f"trip {trip_id!r} is not cancelled on {service_date}; "
            "GET /api/operator/cancellations lists the cancelled trips"
        )
    ghost = insight.ghost_of(trip_id, service_date)
    if ghost is not None:  # missing again, as far as anyone knows
        hub.announce([AlertChange(Change.OPENED, ghost)])
    log.info("trip %s on %s no longer cancelled", trip_id, service_date)
    return Undone(now_s=settings.now(), trip_id=trip_id, service_date=service_date,
                  ghost_listed=ghost is not None)  # fmt: skip


@router.get("")
async def cancelled_trips(
    settings: SettingsDep,
    held: CancellationsDep,
    service_date: Annotated[
        str | None, Query(description="YYYYMMDD: that service day's only", examples=["20260304"])
    ] = None,
) -> CancelledTrips:
    """The trips cancelled from yesterday's service day on (or on `service_date`), and how many
    requests were refused and why."""
    if service_date is not None:
        try:
            service_day(service_date)
        except CancellationError as e:
            held.refused[e.reason] += 1
            raise BadParameterError(str(e)) from None
    now_s = settings.now()
    found = [_view(c, now_s) for c in held if service_date in (None, c.service_date)]
    return CancelledTrips(now_s=now_s, count=len(found), cancellations=found,
                          refused=dict(held.refused))  # fmt: skip
