"""SIRI out, "SIRI Lite" style: `GET /siri/vehicle-monitoring` (SIRI-VM) and
`GET /siri/stop-monitoring` (SIRI-SM), XML built by `tracker.export.siri`.

The request's parameters are SIRI's names in the query (`LineRef`, `VehicleRef`,
`MonitoringRef`, `MaximumStopVisits`, `PreviewInterval`), as Entur, IDFM and MTA Bus Time take
them; the answer is a `Siri/ServiceDelivery`.

Cost of polling: each tick (`SIRI_TICK_S`) takes one moment's vehicles, predictions, alerts and
cancellations, and places the vehicles on their trips once, in a worker thread
(`SiriCache.moment`); each distinct request (path and parameters) is then built at most once per
tick from that moment, also in a worker thread, and kept (up to `MAX_KEPT_ANSWERS`, the least
recently asked dropped first). The ETag is weak, a digest of what the answer says without its
timestamps (`siri.payload_digest`): a poller whose copy says the same gets a 304 without a body,
even across ticks. `Cache-Control: max-age` is the tick.

Errors: a stop (`MonitoringRef`) or a line (`LineRef`) the feed does not have is answered 404
with a SIRI delivery whose Status is false and whose ErrorCondition is an
InvalidDataReferencesError naming it (a SIRI consumer reads that where it reads the answers); a
parameter that cannot be read (`MaximumStopVisits=0`, `PreviewInterval=30`) is answered 422 in
JSON, as every other endpoint (`tracker.api.errors`). A `VehicleRef` not seen now is no error: an
empty delivery (the bus may come back).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tracker.api.deps import HubDep, InsightDep, NetworkDep, SettingsDep
from tracker.api.errors import BadParameterError, problem_responses
from tracker.core.cancellations import Cancellation
from tracker.core.network import Network
from tracker.core.operations import Alert
from tracker.core.predict import Prediction
from tracker.export import siri
from tracker.live.hub import Hub
from tracker.live.insight import Insight
from tracker.live.vehicle import LiveVehicle
from tracker.settings import Settings

router = APIRouter(prefix="/siri", tags=["siri"], responses=problem_responses(422))

SIRI_TICK_S: Final = 1.0
MAX_KEPT_ANSWERS: Final = 1024
XML_MEDIA_TYPE: Final = "application/xml"
VALID_FOR_S: Final = 60.0  # a delivery's ValidUntil, after its ResponseTimestamp


@dataclass(frozen=True, slots=True)
class _Answer:
    body: bytes
    etag: str
    moment: siri.Moment  # the moment it was built from


class SiriCache:
    """One moment per tick, and the answers built from it (see the module); one per app."""

    def __init__(
        self, network: Network, hub: Hub, insight: Insight, settings: Settings, tick_s: float
    ) -> None:
        self.network = network
        self.hub = hub
        self.insight = insight
        self.settings = settings
        self.tick_s = tick_s
        self.producer = siri.Producer(valid_for_s=VALID_FOR_S, shortest_cycle_s=tick_s)
        self._locator = siri.Locator(network)
        self.vehicle_monitoring = siri.VehicleMonitoring(network)
        self._moment: siri.Moment | None = None
        self._moment_at = -math.inf  # monotonic
        self._lock = asyncio.Lock()
        self._answers: OrderedDict[tuple[object, ...], _Answer] = OrderedDict()
        self.moments = 0
        self.builds = 0
        self.dropped = 0  # answers dropped to keep MAX_KEPT_ANSWERS

    async def moment(self) -> siri.Moment:
        """This tick's moment: taken on the event loop (one moment's state), placed in a
        worker thread."""
        async with self._lock:  # one at a time; the requests that came meanwhile share it
            if self._moment is None or time.monotonic() - self._moment_at >= self.tick_s:
                now_s = self.settings.now()
                vehicles = list(self.hub.vehicles().values())
                predictions = {v.vehicle_id: self.insight.of_vehicle(v.vehicle_id, now_s)
                               for v in vehicles}  # fmt: skip
                alerts = self.insight.alerts()
                cancelled = list(self.insight.cancellations)
                self._moment = await asyncio.to_thread(
                    self._place, vehicles, predictions, alerts, cancelled, now_s
                )
                self._moment_at = time.monotonic()
                self.moments += 1
            return self._moment

    def _place(
        self,
        vehicles: list[LiveVehicle],
        predictions: dict[str, list[Prediction]],
        alerts: tuple[Alert, ...],
        cancelled: list[Cancellation],
        now_s: float,
    ) -> siri.Moment:
        self._locator.keep_only(v.vehicle_id for v in vehicles)
        return siri.moment(self.network, vehicles, predictions, now_s,
                           stale_after_s=self.settings.stale_after_s, live_alerts=alerts,
                           cancelled=cancelled, locate_one=self._locator)  # fmt: skip

    async def answer(
        self, key: tuple[object, ...], build: Callable[[siri.Moment], bytes]
    ) -> _Answer:
        """The answer to the request `key` of this tick's moment, built by `build` if not yet."""
        at = await self.moment()
        found = self._answers.get(key)
        if found is None or found.moment is not at:
            body = await asyncio.to_thread(build, at)
            self.builds += 1
            found = _Answer(body, f'W/"{siri.payload_digest(body).hex()}"', at)
            self._answers[key] = found
        self._answers.move_to_end(key)
        while len(self._answers) > MAX_KEPT_ANSWERS:
            self._answers.popitem(last=False)
            self.dropped += 1
        return found


def get_siri_cache(
    request: Request, network: NetworkDep, hub: HubDep, insight: InsightDep, settings: SettingsDep
) -> SiriCache:
    cache = getattr(request.app.state, "siri_cache", None)
    if not isinstance(cache, SiriCache):
        cache = request.app.state.siri_cache = SiriCache(
            network, hub, insight, settings, SIRI_TICK_S
        )
    return cache


SiriCacheDep = Annotated[SiriCache, Depends(get_siri_cache)]

_XML_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {XML_MEDIA_TYPE: {}}, "description": "a SIRI 2.0 Siri/ServiceDelivery"},
    304: {"description": "says the same as the copy whose ETag was given in If-None-Match"},
    404: {"content": {XML_MEDIA_TYPE: {}},
          "description": "a stop or line the feed does not have: a SIRI delivery with Status "
                         "false and an InvalidDataReferencesError naming it"},
}  # fmt: skip


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names `etag` (weak comparison, a list of tags, or *)."""
    if if_none_match is None:
        return False
    wanted = etag.removeprefix("W/")
    return any(tag.strip() == "*" or tag.strip().removeprefix("W/") == wanted
               for tag in if_none_match.split(","))  # fmt: skip


def _answer(request: Request, found: _Answer, tick_s: float) -> Response:
    headers = {"ETag": found.etag, "Cache-Control": f"public, max-age={max(1, round(tick_s))}"}
    if _matches(request.headers.get("if-none-match"), found.etag):
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=XML_MEDIA_TYPE, headers=headers)


def _unknown(cache: SiriCache, kind: str, refs: list[str], text: str) -> Response:
    body = siri.unknown_refs(kind, cache.network, cache.settings.now(), refs, text,
                             producer=cache.producer)  # fmt: skip
    return Response(body, status_code=404, media_type=XML_MEDIA_TYPE)


def _unknown_line(cache: SiriCache, kind: str, line_ref: str | None) -> Response | None:
    if line_ref is None or line_ref in cache.network.route_index:
        return None
    text = f"no line (route_id) {line_ref!r} in the feed; /api/routes lists them"
    return _unknown(cache, kind, [line_ref], text)


LineRefQuery = Annotated[
    str | None, Query(alias="LineRef", description="only this line (a GTFS route_id)")
]


@router.get("/vehicle-monitoring", responses=_XML_RESPONSES, response_class=Response)
async def vehicle_monitoring(
    request: Request,
    cache: SiriCacheDep,
    line_ref: LineRefQuery = None,
    vehicle_ref: Annotated[
        str | None, Query(alias="VehicleRef", description="only this vehicle (its id)")
    ] = None,
) -> Response:
    """SIRI-VM: a VehicleActivity per vehicle seen in the last `stale_after_s`: position,
    bearing, its journey (line, direction, dated journey, destination, block, delay) and the
    stop it is at or going to."""
    unknown = _unknown_line(cache, "VehicleMonitoringDelivery", line_ref)
    if unknown is not None:
        return unknown
    builder, producer = cache.vehicle_monitoring, cache.producer

    def build(at: siri.Moment) -> bytes:
        return builder.build(at, line_ref=line_ref, vehicle_ref=vehicle_ref, producer=producer)

    found = await cache.answer(("vm", line_ref, vehicle_ref), build)
    return _answer(request, found, cache.tick_s)


@router.get("/stop-monitoring", responses=_XML_RESPONSES, response_class=Response)
async def stop_monitoring(
    request: Request,
    cache: SiriCacheDep,
    monitoring_ref: Annotated[
        str, Query(alias="MonitoringRef", description="the stop (a GTFS stop_id)")
    ],
    line_ref: LineRefQuery = None,
    maximum_stop_visits: Annotated[
        int | None, Query(alias="MaximumStopVisits", ge=1, description="at most this many")
    ] = None,
    preview_interval: Annotated[
        str | None,
        Query(
            alias="PreviewInterval",
            description="only arrivals within this xsd:duration from now, e.g. PT30M",
            examples=["PT30M"],
        ),
    ] = None,
) -> Response:
    """SIRI-SM: a MonitoredStopVisit per predicted arrival at the stop (of the trip a bus is on
    or of its block's next trips), soonest first: the journey, and at the stop the aimed
    (timetable) and expected (predicted) arrival and departure."""
    preview_s = None
    if preview_interval is not None:
        try:
            preview_s = siri.parse_duration_s(preview_interval)
        except ValueError as error:
            raise BadParameterError(f"PreviewInterval: {error}") from None
        if preview_s < 0:
            raise BadParameterError(f"PreviewInterval {preview_interval!r} is negative; give "
                                    "how far ahead to look, e.g. PT30M")  # fmt: skip
    kind = "StopMonitoringDelivery"
    if monitoring_ref not in cache.network.stops:
        return _unknown(cache, kind, [monitoring_ref],
                        f"no stop (stop_id) {monitoring_ref!r} in the feed; /api/stops lists "
                        "them")  # fmt: skip
    unknown = _unknown_line(cache, kind, line_ref)
    if unknown is not None:
        return unknown
    network, producer = cache.network, cache.producer

    def build(at: siri.Moment) -> bytes:
        return siri.stop_monitoring(monitoring_ref, network, at, line_ref=line_ref,
                                    maximum_stop_visits=maximum_stop_visits,
                                    preview_interval_s=preview_s, producer=producer)  # fmt: skip

    key = ("sm", monitoring_ref, line_ref, maximum_stop_visits, preview_s)
    found = await cache.answer(key, build)
    return _answer(request, found, cache.tick_s)
