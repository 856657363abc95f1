"""Phone apps in over HTTP: `/ingest/osmand` (OsmAnd, Traccar Client) and `/ingest/owntracks`
(OwnTracks' HTTP mode), translated by `tracker.ingest.phones` into the tracker's own position
payload and put on the same ingest queue as MQTT messages, so that the pipeline decodes,
validates, matches and stores them exactly as it does MQTT pings.

A message that cannot be a position gets 400 with what is wrong, and is counted and listed
with the pipeline's rejections (`malformed`); one the pipeline rejects later (bad coordinates,
a timestamp in the future, a duplicate) is answered 200 and counted there, as for MQTT. A full
queue answers 503 with Retry-After: the apps keep the position and send it again.

These endpoints are open: authentication comes with the issue on trust (docs/interfaces.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tracker.api.deps import PipelineDep, QueueDep
from tracker.core.model import Reason
from tracker.ingest.phones import (
    PhoneMessageError,
    Position,
    from_osmand,
    from_owntracks,
    from_traccar_json,
)
from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.service import Pipeline
from tracker.wire import position_topic

router = APIRouter(prefix="/ingest", tags=["ingest"])

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = 5


def _enqueue(queue: AsyncIngestQueue, pipeline: Pipeline, position: Position) -> Response | None:
    """Put the position on the ingest queue; a 503 answer if it was full."""
    payload = json.dumps(position.payload).encode()
    topic = position_topic(position.vehicle_id, pipeline.topic_prefix)
    if queue.put_threadsafe(position.vehicle_id, Received(topic, payload, time.time())):
        return None
    return JSONResponse({"detail": "the tracker is busy: send it again"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip


def _refused(pipeline: Pipeline, vehicle_id: str | None, error: str) -> JSONResponse:
    pipeline.reject(vehicle_id, Reason.MALFORMED, error)
    return JSONResponse({"detail": error}, status_code=400)


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PhoneMessageError(f"the body is {len(body)} bytes, over {MAX_BODY_BYTES}")
    return body


async def _json_object(request: Request) -> Mapping[str, Any]:
    try:
        found = json.loads(await _body(request))
    except (ValueError, UnicodeDecodeError) as e:
        raise PhoneMessageError(f"the body is not JSON ({e})") from None
    if not isinstance(found, dict):
        raise PhoneMessageError("the body is not a JSON object")
    return found


@router.get("/osmand", operation_id="osmand_get", summary="OsmAnd / Traccar Client (GET)")
@router.post("/osmand", operation_id="osmand_post", summary="OsmAnd / Traccar Client (POST)")
async def osmand(request: Request, queue: QueueDep, pipeline: PipelineDep) -> Response:
    """A position from OsmAnd or Traccar Client: query (or form) parameters `id`, `lat`, `lon`,
    `timestamp` (epoch s or ms, or ISO 8601), `speed` (knots), `bearing`, `accuracy`; or Traccar
    Client's JSON body. The device's `id` is the vehicle."""
    params: dict[str, Any] = dict(request.query_params)
    try:
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            position = from_traccar_json(await _json_object(request))
        else:
            body = await _body(request) if request.method == "POST" else b""
            params |= dict(parse_qsl(body.decode("utf-8", "replace")))
            position = from_osmand(params)
    except PhoneMessageError as e:
        return _refused(pipeline, params.get("id"), str(e))
    return _enqueue(queue, pipeline, position) or Response(status_code=200)


@router.post("/owntracks")
async def owntracks(request: Request, queue: QueueDep, pipeline: PipelineDep) -> Response:
    """A message from OwnTracks in HTTP mode: a `location` is a position of the vehicle
    `{user}-{device}` (the `X-Limit-U` and `X-Limit-D` headers, or `?u=&d=`); other messages are
    answered and left alone. The answer is a JSON list, as the app expects."""
    user = request.headers.get("x-limit-u") or request.query_params.get("u")
    device = request.headers.get("x-limit-d") or request.query_params.get("d")
    try:
        position = from_owntracks(await _json_object(request), user, device)
    except PhoneMessageError as e:
        vehicle_id = f"{user}-{device}" if user and device else None
        return _refused(pipeline, vehicle_id, str(e))
    if position is not None:
        busy = _enqueue(queue, pipeline, position)
        if busy is not None:
            return busy
    return JSONResponse([])
