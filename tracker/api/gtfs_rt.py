"""GTFS-realtime feeds out: `/gtfs-rt/vehicle-positions`, `/gtfs-rt/trip-updates`,
`/gtfs-rt/alerts` (built by `tracker.export.gtfs_rt`).

Protobuf by default (`application/x-protobuf`), `?format=json` for people reading it. Each feed
is built at most once per `FEED_TICK_S` whatever the number of pollers (so an operator's
cancellation shows within a tick), and keeps its bytes,
header timestamp and ETag while what it says has not changed, so a poller's
`If-None-Match` gets a 304 without a body. `Cache-Control: max-age` is that tick.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import math
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from google.protobuf import json_format
from google.transit import gtfs_realtime_pb2 as rt

from tracker.api.deps import HubDep, InsightDep, NetworkDep, SettingsDep
from tracker.core.network import Network
from tracker.export import gtfs_rt as build
from tracker.live.hub import Hub
from tracker.live.insight import Insight
from tracker.settings import Settings

router = APIRouter(prefix="/gtfs-rt", tags=["gtfs-realtime"])

FEED_TICK_S = 1.0
PROTOBUF_MEDIA_TYPE = "application/x-protobuf"


class Format(enum.StrEnum):
    PROTOBUF = "protobuf"
    JSON = "json"


@dataclass
class _Built:
    body: bytes
    etag: str
    content: bytes  # digest of the entities (what it says, whenever it was built)
    _feed: rt.FeedMessage | None = None

    @property
    def feed(self) -> rt.FeedMessage:  # for ?format=json, parsed on first use
        if self._feed is None:
            self._feed = rt.FeedMessage()
            self._feed.ParseFromString(self.body)
        return self._feed


class FeedCache:
    """The last build of the feeds (see the module); one per app. The three are built together,
    from one moment's vehicles, predictions and alerts (so that they agree), in a worker thread
    (so that the event loop goes on), by a `FeedBuilder` that re-encodes only the vehicles whose
    state or predictions changed."""

    def __init__(
        self, network: Network, hub: Hub, insight: Insight, settings: Settings, tick_s: float
    ) -> None:
        self.builder = build.FeedBuilder(network)
        self.hub = hub
        self.insight = insight
        self.settings = settings
        self.tick_s = tick_s
        self._built: dict[str, _Built] = {}
        self._built_at = -math.inf  # monotonic
        self._lock = asyncio.Lock()
        self.builds = 0

    async def get(self, name: str) -> _Built:
        async with self._lock:  # one build at a time; the pollers that came meanwhile share it
            if time.monotonic() - self._built_at >= self.tick_s:
                now_s = self.settings.now()
                vehicles = list(self.hub.vehicles().values())  # this moment's, on the loop
                predictions = {v.vehicle_id: self.insight.of_vehicle(v.vehicle_id, now_s)
                               for v in vehicles}  # fmt: skip
                alerts = self.insight.alerts()
                cancelled = list(self.insight.cancellations)  # the operator's, this moment's
                built = await asyncio.to_thread(
                    self.builder.build, vehicles, predictions, alerts, now_s,
                    stale_after_s=self.settings.stale_after_s, cancelled=cancelled,
                )  # fmt: skip
                self._built_at = time.monotonic()
                self.builds += 1
                for feed_name, (top, entities) in built.items():
                    self._keep(feed_name, top, entities)
        return self._built[name]

    def _keep(self, name: str, top: bytes, entities: bytes) -> None:
        content = hashlib.blake2b(entities, digest_size=16).digest()
        found = self._built.get(name)
        if found is not None and found.content == content:  # unchanged: same bytes and ETag
            return
        body = top + entities
        etag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        self._built[name] = _Built(body, etag, content)


def get_feed_cache(
    request: Request, network: NetworkDep, hub: HubDep, insight: InsightDep, settings: SettingsDep
) -> FeedCache:
    cache = getattr(request.app.state, "gtfs_rt_feeds", None)
    if not isinstance(cache, FeedCache):
        cache = request.app.state.gtfs_rt_feeds = FeedCache(
            network, hub, insight, settings, FEED_TICK_S
        )
    return cache


FeedCacheDep = Annotated[FeedCache, Depends(get_feed_cache)]
FormatQuery = Annotated[
    Format, Query(description="protobuf (the GTFS-realtime wire format) or json (to read)")
]

_PROTOBUF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {PROTOBUF_MEDIA_TYPE: {}, "application/json": {}},
          "description": "a GTFS-realtime FeedMessage (FULL_DATASET)"},
    304: {"description": "not changed since the ETag given in If-None-Match"},
}  # fmt: skip


def _answer(request: Request, built: _Built, fmt: Format, tick_s: float) -> Response:
    headers = {"ETag": built.etag, "Cache-Control": f"public, max-age={max(1, round(tick_s))}"}
    if fmt is Format.JSON:
        headers["ETag"] = built.etag[:-1] + '-json"'
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if fmt is Format.JSON:
        body = json_format.MessageToDict(built.feed, preserving_proto_field_name=True)
        return JSONResponse(body, headers=headers)
    return Response(built.body, media_type=PROTOBUF_MEDIA_TYPE, headers=headers)


@router.get("/vehicle-positions", responses=_PROTOBUF_RESPONSE, response_class=Response)
async def vehicle_positions(
    request: Request, cache: FeedCacheDep, format: FormatQuery = Format.PROTOBUF
) -> Response:
    """Every vehicle seen in the last `stale_after_s`: position, trip, stop and status."""
    return _answer(request, await cache.get("vehicle-positions"), format, cache.tick_s)


@router.get("/trip-updates", responses=_PROTOBUF_RESPONSE, response_class=Response)
async def trip_updates(
    request: Request, cache: FeedCacheDep, format: FormatQuery = Format.PROTOBUF
) -> Response:
    """The trips buses are on and will run next: predicted arrivals at the stops ahead, with
    their uncertainty, else the current delay; the stops a bus on a detour skipped; the trips
    the operator cancelled (CANCELED)."""
    return _answer(request, await cache.get("trip-updates"), format, cache.tick_s)


@router.get("/alerts", responses=_PROTOBUF_RESPONSE, response_class=Response)
async def alerts(
    request: Request, cache: FeedCacheDep, format: FormatQuery = Format.PROTOBUF
) -> Response:
    """What affects riders: detours (with the stops missed), frequency lines short of buses,
    and cancelled trips."""
    return _answer(request, await cache.get("alerts"), format, cache.tick_s)
