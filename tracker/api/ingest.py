"""Phone apps in over HTTP: `/ingest/osmand` (OsmAnd, Traccar Client) and `/ingest/owntracks`
(OwnTracks' HTTP mode), translated by `tracker.ingest.phones` into the tracker's own position
payload and put on the same ingest queue as MQTT messages, so that the pipeline decodes,
validates, matches and stores them exactly as it does MQTT pings.

A message that cannot be a position gets 400 with what is wrong, and is counted and listed
with the pipeline's rejections (`malformed`); with a devices file (`tracker.ingest.devices`,
kept by the pipeline), a listed phone reports as its vehicle and any other gets 403
(`unknown_device`, counted and listed too). One the pipeline rejects later (bad coordinates, a
timestamp in the future, a duplicate) is answered 200 and counted there, as for MQTT. A full
queue answers 503 with Retry-After: the apps keep the position and send it again. An OwnTracks
message that is no position (`lwt`, `transition`, ...) is answered and counted as ignored.

A phone whose devices-file line has a token (`tracker phones add`) must send it, as
``Authorization: Bearer <token>``, as the password of HTTP Basic authentication (OwnTracks'
own setting), or as a ``token`` parameter (OsmAnd's and Traccar Client's URL); without it, or
with a wrong one, the answer is 401 (`bad_token`, counted and listed). The rate limit on
requests does not apply here (a fleet behind one address would share it).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tracker.api.deps import PipelineDep, QueueDep
from tracker.api.errors import problem_responses
from tracker.core.model import Reason
from tracker.ingest.phones import (
    PhoneMessageError,
    Position,
    from_osmand,
    from_owntracks,
    from_traccar_json,
    json_object,
)
from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.service import Pipeline
from tracker.wire import position_topic

router = APIRouter(prefix="/ingest", tags=["ingest"],
                   responses=problem_responses(400, 401, 403, 503))  # fmt: skip

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


STATUS_OF_REASON = {Reason.MALFORMED: 400, Reason.UNKNOWN_DEVICE: 403, Reason.BAD_TOKEN: 401}


class BadTokenError(PhoneMessageError):
    """A phone without the token its devices-file line asks for, or with a wrong one."""

    reason = Reason.BAD_TOKEN


def presented_token(request: Request, params: Mapping[str, Any]) -> str | None:
    """The token a phone sent: Bearer, the password of Basic, or the ``token`` parameter."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    token = params.get("token")
    return str(token) if token is not None else None


_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Takes phones' ``token=`` parameters out of uvicorn's access log lines (a secret is
    never logged); `install` puts it on the ``uvicorn.access`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            if isinstance(args[2], str) and "token=" in args[2]:
                args[2] = _TOKEN_IN_QUERY.sub(r"\1***", args[2])
                record.args = tuple(args)
        return True

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger("uvicorn.access")
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())


def check_token(pipeline: Pipeline, device_id: object, token: str | None) -> None:
    """`BadTokenError` if the devices file gives `device_id` a token and `token` is not it."""
    devices = pipeline.devices
    if devices is None or not devices.token_digests:
        return
    if device_id is None:
        raise BadTokenError("the device is not named, so its token cannot be checked")
    problem = devices.token_problem(str(device_id).strip(), token)
    if problem is not None:
        raise BadTokenError(problem)


def _refused(pipeline: Pipeline, vehicle_id: str | None, error: PhoneMessageError) -> JSONResponse:
    """Counted and listed with the pipeline's rejections, answered with the reason."""
    pipeline.reject(vehicle_id, error.reason, str(error))
    return JSONResponse({"detail": str(error), "reason": error.reason.value},
                        status_code=STATUS_OF_REASON.get(error.reason, 400))  # fmt: skip


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PhoneMessageError(f"the body is {len(body)} bytes, over {MAX_BODY_BYTES}")
    return body


async def _json_object(request: Request) -> Mapping[str, Any]:
    return json_object(await _body(request))


@router.get("/osmand", operation_id="osmand_get", summary="OsmAnd / Traccar Client (GET)")
@router.post("/osmand", operation_id="osmand_post", summary="OsmAnd / Traccar Client (POST)")
async def osmand(request: Request, queue: QueueDep, pipeline: PipelineDep) -> Response:
    """A position from OsmAnd or Traccar Client: query (or form) parameters `id`, `lat`, `lon`,
    `timestamp` (epoch s or ms, or ISO 8601), `speed` (knots), `bearing`, `accuracy`; or Traccar
    Client's JSON body. The device's `id` is the vehicle, or the one the devices file gives it
    (403 for a device it does not list; 401 without the device's token, if it has one)."""
    params: dict[str, Any] = dict(request.query_params)
    device_id: object = params.get("id")
    try:
        if request.method == "POST" and request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            body = await _json_object(request)
            device_id = body.get("device_id")
            check_token(pipeline, device_id, presented_token(request, params))
            position = from_traccar_json(body, pipeline.devices)
        else:
            form = await _body(request) if request.method == "POST" else b""
            params |= dict(parse_qsl(form.decode("utf-8", "replace")))
            device_id = params.get("id")
            check_token(pipeline, device_id, presented_token(request, params))
            position = from_osmand(params, pipeline.devices)
    except PhoneMessageError as e:
        return _refused(pipeline, None if device_id is None else str(device_id), e)
    return _enqueue(queue, pipeline, position) or Response(status_code=200)


@router.post("/owntracks")
async def owntracks(request: Request, queue: QueueDep, pipeline: PipelineDep) -> Response:
    """A message from OwnTracks in HTTP mode: a `location` is a position of the vehicle
    `{user}-{device}` (the `X-Limit-U` and `X-Limit-D` headers, or `?u=&d=`), or the one the
    devices file gives that device (403 for a device it does not list; 401 without the
    device's token, if it has one, sent as the password of Basic authentication); others are
    answered and left alone (counted as ignored). The answer is a JSON list, as the app
    expects."""
    user = request.headers.get("x-limit-u") or request.query_params.get("u")
    device = request.headers.get("x-limit-d") or request.query_params.get("d")
    device_id = f"{user}-{device}" if user and device else None
    try:
        check_token(pipeline, device_id, presented_token(request, request.query_params))
        body = await _json_object(request)
        position = from_owntracks(body, user, device, pipeline.devices)
    except PhoneMessageError as e:
        return _refused(pipeline, device_id, e)
    if position is None:
        pipeline.ignore(device_id, f"an OwnTracks {str(body['_type'])[:40]!r} message")
        return JSONResponse([])
    return _enqueue(queue, pipeline, position) or JSONResponse([])
