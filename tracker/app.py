"""The live service as a FastAPI app: `create_app(settings)`.

The lifespan owns every resource, opened in order and closed in reverse: the GTFS network, the
database pool, the matcher's process (`tracker.match_worker`), the websocket hub, the MQTT
client, and the background tasks (hub ticks, store writer, pipeline, retention, the
GTFS-realtime pollers). Nothing is created at import time; tests build their own app from their
own `Settings`.

What the routers find in ``app.state``: ``settings`` (`Settings`), ``network`` (`Network`),
``store`` (`Store`), ``hub`` (`Hub`), ``pipeline`` (`Pipeline`: ``stats``, ``problems``,
``writer``), ``insight`` (`Insight`: predictions, headways, alerts), ``ingest`` (`MqttIngest`),
``queue`` (`AsyncIngestQueue`), ``pollers`` (a `GtfsRtPoller` per `poll_gtfs_rt` URL) and
``cancellations`` (`Cancellations`: the trips the operator cancelled, also `insight`'s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.gzip import GZipMiddleware
from fastapi_offline import FastAPIOffline

from tracker.api.auth import AuthState
from tracker.api.cancellations import load_cancellations
from tracker.api.errors import install_error_handlers
from tracker.api.http import router as http_router
from tracker.api.ratelimit import install_rate_limit
from tracker.core.engine import EngineConfig
from tracker.core.matcher import MatcherConfig
from tracker.core.network import Network
from tracker.core.operations import OperationsConfig
from tracker.core.stop_events import StopEvent
from tracker.errors import StoreError
from tracker.gtfs.load import load_network
from tracker.ingest.devices import DeviceMap, load_devices
from tracker.ingest.gtfs_rt_poll import GtfsRtPoller, feed_names
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.queue import AsyncIngestQueue
from tracker.live.hub import Hub
from tracker.live.insight import Insight
from tracker.live.vehicle import LiveVehicle, shown_position
from tracker.live.ws import router as ws_router
from tracker.match_worker import BatchMatcher, InThreadMatcher, MatcherProcess
from tracker.service import Pipeline, StoreWriter
from tracker.settings import Settings
from tracker.store.postgres import Store, VehicleRow, open_store
from tracker.web import router as web_router

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 3600.0
LEARN_FROM_EVENTS = 2_000_000  # at most this many stored stop events are learned from at start
SHUTDOWN_DRAIN_S = 30.0  # what was received is processed, unless the pipeline is stuck
SHUTDOWN_FLUSH_S = 5.0


def create_app(settings: Settings, *, network: Network | None = None) -> FastAPI:
    """The tracker's app. `network` may be given (already loaded) to skip loading the feed."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        net = (
            network if network is not None else await asyncio.to_thread(load_network, settings.gtfs)
        )
        log.info("network: %d routes, %d trips, feed %s", len(net.routes), len(net.trips),
                 net.feed_hash[:12])  # fmt: skip
        async with open_store(settings.database_url) as store:
            # The stop events of the last days: the model of running times starts from them.
            now_s = settings.now()
            history = await store.stop_events(
                start_s=now_s - settings.learn_from_days * 86_400.0, end_s=now_s,
                limit=LEARN_FROM_EVENTS,
            )  # fmt: skip
            log.info("arrival predictions learn from %d stored stop events", len(history))
            async with _matcher(net, settings, history) as matcher:
                hub = Hub(tick_s=settings.live_tick_s, clock=settings.now)
                recent = await _recent_vehicles(store, settings)
                hub.publish(recent)
                hub.tick()  # so the first clients' snapshot already holds them
                queue = AsyncIngestQueue(settings.queue_capacity, settings.superseded_capacity)
                devices = _devices(settings)
                ingest = MqttIngest(
                    settings.broker_url,
                    client_id=settings.mqtt_client_id,
                    queue=queue,
                    topic_prefix=settings.topic_prefix,
                    owntracks_prefix=settings.owntracks_topic_prefix,
                    devices=devices,
                    share_group=settings.share_group,
                    username=settings.mqtt_username,
                    password=settings.mqtt_password,
                    protocol=settings.mqtt_protocol,
                    ack=settings.mqtt_ack,
                )
                # A message is acknowledged to the broker once its row is committed.
                writer = StoreWriter(store, max_batches=settings.store_queue_batches,
                                     clock=settings.now, on_stored=ingest.acknowledge)  # fmt: skip
                # The operator's cancelled trips, as stored: for the feeds and the alerts.
                cancellations = await load_cancellations(store, net, settings.now())
                insight = Insight(cancellations=cancellations)
                pipeline = Pipeline(matcher, writer, hub, clock=settings.now,
                                    topic_prefix=settings.topic_prefix,
                                    owntracks_prefix=settings.owntracks_topic_prefix,
                                    devices=devices,
                                    hide_after_s=settings.hide_after_s,
                                    insight=insight)  # fmt: skip
                pipeline.remember(recent)  # so they expire like the others
                app.state.settings = settings
                app.state.network = net
                app.state.store = store
                app.state.hub = hub
                app.state.pipeline = pipeline
                app.state.insight = insight
                app.state.cancellations = cancellations
                app.state.queue = queue
                app.state.ingest = ingest
                pollers = [
                    GtfsRtPoller(url, queue, topic_prefix=settings.topic_prefix,
                                 every_s=settings.poll_every_s, name=name)
                    for url, name in zip(settings.poll_gtfs_rt, feed_names(settings.poll_gtfs_rt),
                                         strict=True)
                ]  # fmt: skip
                app.state.pollers = pollers
                failed: list[str] = app.state.failed_tasks
                pipeline_run = pipeline.run(
                    queue, max_pings=settings.batch_max_pings,
                    interval_s=settings.batch_interval_s,
                )  # fmt: skip
                async with asyncio.TaskGroup() as tasks:
                    background = [
                        tasks.create_task(_named("hub", hub.run(), failed)),
                        tasks.create_task(_named("store writer", writer.run(), failed)),
                        tasks.create_task(_named("pipeline", pipeline_run, failed)),
                        tasks.create_task(_named("retention", _retention(store, settings), failed)),
                    ]
                    polling = [
                        tasks.create_task(_named(f"GTFS-realtime poller {p.name}", p.run(), failed))
                        for p in pollers
                    ]
                    async with ingest:
                        yield
                    for task in polling:  # nothing more comes in: no feed is polled any more
                        task.cancel()
                    await asyncio.gather(*polling, return_exceptions=True)
                    # The broker connection is closed: finish what was received, then stop.
                    try:
                        await asyncio.wait_for(pipeline.drain(queue), SHUTDOWN_DRAIN_S)
                    except TimeoutError:
                        log.warning("stopping with %d messages not processed", len(queue))
                    await writer.flush(SHUTDOWN_FLUSH_S)
                    for task in background:
                        task.cancel()

    # The API docs' pages (Swagger UI at /docs, ReDoc at /redoc) with their scripts and styles
    # served from the fastapi-offline package, not a CDN: they work without internet.
    app = FastAPIOffline(
        title="Bus tracker",
        summary="Live bus positions matched to GTFS routes, trips and schedules.",
        lifespan=lifespan,
    )
    app.state.failed_tasks = []
    app.state.auth = AuthState()
    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=4096)
    install_rate_limit(app, settings.rate_limit)  # outermost: a refusal costs nothing more
    app.include_router(http_router)
    app.include_router(ws_router)
    app.include_router(web_router)
    return app


@contextlib.asynccontextmanager
async def _matcher(
    network: Network, settings: Settings, history: Sequence[StopEvent]
) -> AsyncIterator[BatchMatcher]:
    """The engine (matcher, stop events, predictions, operations signals), in a process of its
    own unless `settings.matcher_process` is off; its model learns from `history` first."""
    config = EngineConfig(
        matcher=MatcherConfig(max_future_s=settings.max_future_s,
                              settle_lag_s=settings.settle_lag_s),
        operations=OperationsConfig(ghost_routes=settings.tracked_route_ids()),
    )  # fmt: skip
    if not settings.matcher_process:
        yield InThreadMatcher(network, config, history)
        return
    async with MatcherProcess(network, config, history) as process:
        yield process


def _devices(settings: Settings) -> DeviceMap | None:
    """The phones' devices file, if one is set (the settings have checked it already)."""
    if settings.devices_file is None:
        return None
    devices = load_devices(settings.devices_file)
    log.info("devices file %s: %d phones, others refused", settings.devices_file, len(devices))
    return devices


async def _named(name: str, work: Coroutine[Any, Any, None], failed: list[str]) -> None:
    """Run a background task. A crash is logged with its traceback and recorded in `failed`:
    `/healthz` and `/readyz` then answer 503, so a supervisor restarts the service instead of
    leaving a process that answers HTTP with no pipeline behind it."""
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("background task %r failed; the service is unhealthy", name)
        failed.append(name)


async def _retention(store: Store, settings: Settings) -> None:
    """Drop day partitions older than `retention_days`, at start and then every hour.

    A database that is away or refuses (as the store writer, see `StoreWriter.run`) only
    postpones it to the next round: it must not end the service.
    """
    while True:
        try:
            dropped = await store.apply_retention(settings.retention_days, settings.now())
        except Exception as e:
            log.warning("retention failed, will try again in %g s: %s", RETENTION_EVERY_S, e,
                        exc_info=not isinstance(e, StoreError))  # fmt: skip
        else:
            if dropped:
                log.info("retention: dropped %s", ", ".join(dropped))
        await asyncio.sleep(RETENTION_EVERY_S)


async def _recent_vehicles(store: Store, settings: Settings) -> list[LiveVehicle]:
    """What the database last knew of vehicles seen recently, so a restart shows them at once."""
    rows = await store.latest(since_s=settings.now() - settings.hide_after_s)
    return [live_vehicle_of_row(row) for row in rows]


def live_vehicle_of_row(row: VehicleRow) -> LiveVehicle:
    lat, lon = shown_position(row.state, row.lat, row.lon, row.snapped_lat, row.snapped_lon)
    return LiveVehicle(
        vehicle_id=row.vehicle_id,
        observed_at_s=row.observed_at_s,
        lat=lat,
        lon=lon,
        bearing_deg=row.bearing_deg,
        speed_mps=row.speed_mps,
        state=row.state.value,
        reason=row.reason.value if row.reason is not None else None,
        route_id=row.route_id,
        trip_id=row.trip_id,
        direction_id=row.direction_id,
        shape_id=row.shape_id,
        shape_dist_m=row.shape_dist_m,
        snapped_lat=row.snapped_lat,
        snapped_lon=row.snapped_lon,
        offset_m=row.offset_m,
        delay_s=row.delay_s,
        headway_s=row.headway_s,
    )
