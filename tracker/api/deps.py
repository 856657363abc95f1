"""What the HTTP endpoints share: the app's state as typed dependencies, query parameters,
and small helpers for answers (rounding, JSON, GeoJSON, values computed once per network)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar, cast

from fastapi import Depends, Query, Request
from fastapi.responses import Response
from starlette.requests import HTTPConnection

from tracker.api.errors import BadParameterError
from tracker.core.network import Network
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.queue import AsyncIngestQueue
from tracker.live.hub import Hub
from tracker.live.insight import Insight
from tracker.service import Pipeline
from tracker.settings import Settings
from tracker.store.postgres import Store

T = TypeVar("T")

GEOJSON_MEDIA_TYPE: Final = "application/geo+json"
BBOX_EXAMPLE: Final = "-7.70,33.50,-7.50,33.65"

# --- dependencies: what the lifespan put in app.state --------------------------------------


def _from_state(connection: HTTPConnection, name: str, kind: type[T]) -> T:
    value = getattr(connection.app.state, name, None)
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


def get_store(connection: HTTPConnection) -> Store:
    """The store, for a request or a websocket."""
    return _from_state(connection, "store", Store)


def get_hub(request: Request) -> Hub:
    return _from_state(request, "hub", Hub)


def get_pipeline(request: Request) -> Pipeline:
    return _from_state(request, "pipeline", Pipeline)


def get_ingest(request: Request) -> MqttIngest:
    return _from_state(request, "ingest", MqttIngest)


def get_insight(request: Request) -> Insight:
    return _from_state(request, "insight", Insight)


def get_queue(request: Request) -> AsyncIngestQueue:
    return _from_state(request, "queue", AsyncIngestQueue)


SettingsDep = Annotated[Settings, Depends(get_settings)]
NetworkDep = Annotated[Network, Depends(get_network)]
StoreDep = Annotated[Store, Depends(get_store)]
HubDep = Annotated[Hub, Depends(get_hub)]
PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
IngestDep = Annotated[MqttIngest, Depends(get_ingest)]
QueueDep = Annotated[AsyncIngestQueue, Depends(get_queue)]
InsightDep = Annotated[Insight, Depends(get_insight)]

NO_NUL_PATTERN: Final = "^[^\\x00]*$"
"""Text sent to PostgreSQL cannot hold a NUL character: it refuses the whole query, which was a
500 (schemathesis found it). Declared as the parameter's pattern, so such a value answers 422."""
IdQuery = Annotated[str | None, Query(pattern=NO_NUL_PATTERN, description="only this id")]
RoutesQuery = Annotated[
    str | None,
    Query(
        pattern=NO_NUL_PATTERN,
        description="comma-separated route ids, e.g. L1,L7; all when left out",
    ),
]
BBoxQuery = Annotated[
    str | None,
    Query(description=f"min_lon,min_lat,max_lon,max_lat in degrees, e.g. {BBOX_EXAMPLE}"),
]


async def per_network(
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


# --- parameters and small helpers ------------------------------------------------------------


def route_ids_param(text: str | None) -> list[str] | None:
    """``"L1, L7"`` → ["L1", "L7"]; None stays None; ``""`` → [] (which the filter refuses)."""
    if text is None:
        return None
    ids = [part.strip() for part in text.split(",")]
    return [] if ids == [""] else ids


def bbox_param(text: str | None) -> list[float] | None:
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


def finite(value: float | None, decimals: int) -> float | None:
    """`value` rounded, or None when missing or not finite (JSON has no NaN)."""
    return round(value, decimals) if value is not None and math.isfinite(value) else None


def dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


def geojson_response(document: object) -> Response:
    return Response(dumps(document), media_type=GEOJSON_MEDIA_TYPE)
