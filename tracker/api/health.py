"""Health and readiness: is the process alive, and are the network, database and broker there."""

from __future__ import annotations

import asyncio
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tracker.api import schemas
from tracker.api.errors import ServiceBrokenError
from tracker.core.network import Network
from tracker.errors import StoreError
from tracker.ingest.mqtt import MqttIngest
from tracker.store.postgres import Store

READY_TIMEOUT_S: Final = 2.0  # a readiness probe that waits longer is not ready

router = APIRouter()


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
