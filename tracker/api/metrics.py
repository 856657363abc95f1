"""`GET /metrics`: the service's counters in the Prometheus text format (`prometheus-client`).

Nothing here sits on the path of a ping: the counters are the ones the pipeline, the ingest
queue, the MQTT client, the store writer, the hub and the engine keep anyway (the same as
`/api/stats`), read when Prometheus scrapes, through a collector of this app's own registry.
The two histograms (batch time, and the time from receiving a message to handing it to the
live hub) are the pipeline's fixed-bucket counts (`tracker.service.Histogram`).

Names start with `bus_tracker_`; counters end in `_total`, times are seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tracker.service import Histogram

router = APIRouter(tags=["operations"])

PREFIX = "bus_tracker_"


class ServiceCollector(Collector):
    """Reads the app's state at each scrape (see the module)."""

    def __init__(self, state: Any) -> None:
        self.state = state  # the app's `app.state`, filled by the lifespan

    def collect(self) -> Iterator[Metric]:
        state = self.state
        pipeline = getattr(state, "pipeline", None)
        if pipeline is None:  # not started
            return
        stats = pipeline.stats
        yield _counter("messages_processed", "MQTT messages taken by the pipeline", stats.messages)
        yield _counter("mqtt_messages_received", "messages the MQTT client received",
                       state.ingest.stats.messages_received)  # fmt: skip
        yield _counter(
            "mqtt_reconnects", "reconnections to the broker", state.ingest.stats.reconnects
        )
        yield _gauge(
            "mqtt_connected", "1 while connected to the broker", float(state.ingest.connected)
        )
        yield _counter("mqtt_acknowledged", "QoS 1 messages acknowledged to the broker, once "
                       "stored or rejected", state.ingest.stats.acknowledged)  # fmt: skip
        matched = CounterMetricFamily(PREFIX + "pings_matched", "pings answered, by state",
                                      labels=["state"])  # fmt: skip
        for name, n in sorted(stats.by_state.items()):
            matched.add_metric([name], n)
        yield matched
        rejected = CounterMetricFamily(PREFIX + "pings_rejected", "pings rejected, by reason",
                                       labels=["reason"])  # fmt: skip
        for name, n in sorted(stats.rejected_by_reason.items()):
            rejected.add_metric([name], n)
        yield rejected
        queue = state.queue.stats()
        yield _counter("pings_superseded", "pings overtaken by a newer one of their vehicle while "
                       "the tracker was behind: stored, not matched", queue.superseded)  # fmt: skip
        yield _counter("pings_dropped", "pings dropped by the ingest queue",
                       queue.dropped_full + queue.dropped_superseded)  # fmt: skip
        yield _gauge("queue_waiting", "messages waiting in the ingest queue", queue.waiting)
        yield _counter("answers_revised", "answers that settled differently", stats.revised)
        yield _counter("messages_ignored", "messages that are no position and no mistake (an "
                       "OwnTracks lwt, transition, ...): left alone", stats.ignored)  # fmt: skip
        yield _counter("pings_late", "pings older than their vehicle's newest: stored, not "
                       "shown live, matched with hindsight afterwards", stats.late)  # fmt: skip
        yield _counter("pings_late_matched", "late pings answered with hindsight",
                       stats.late_matched)  # fmt: skip
        yield _counter(
            "stop_events", "arrivals and departures at stops detected", stats.stop_events
        )
        writer = pipeline.writer
        yield _counter("pings_stored", "rows written to the positions history", writer.stored)
        yield _counter("store_duplicates", "rows already stored (same vehicle and time)",
                       writer.duplicates)  # fmt: skip
        yield _counter("store_dropped_pings", "rows dropped while the database was down",
                       writer.dropped_pings)  # fmt: skip
        yield _counter("store_failures", "failed writes (retried)", writer.failures)
        yield _gauge(
            "store_pending_batches", "batches waiting to be written", writer.pending_batches
        )
        yield _histogram("batch_duration_seconds", "time to decode, match and hand over a batch",
                         stats.batch_seconds)  # fmt: skip
        yield _histogram("receive_to_push_seconds", "from receiving a message to handing its "
                         "answer to the live hub (the websocket push follows at the next tick)",
                         stats.latency_seconds)  # fmt: skip
        hub = state.hub.stats()
        yield _gauge("websocket_clients", "websocket clients connected", hub.clients)
        yield _gauge("live_vehicles", "vehicles in the live view", hub.vehicles)
        yield _counter("websocket_messages_sent", "messages handed to websocket clients",
                       hub.messages_sent)  # fmt: skip
        dropped = CounterMetricFamily(PREFIX + "websocket_dropped", "what slow websocket clients "
                                      "missed, by kind", labels=["kind"])  # fmt: skip
        dropped.add_metric(["intermediate_position"], hub.dropped_intermediate)
        dropped.add_metric(["revision"], hub.revisions_dropped)
        dropped.add_metric(["alert_change"], hub.alert_changes_dropped)
        dropped.add_metric(["stuck_client_disconnected"], hub.disconnected_stuck)
        yield dropped
        refused = CounterMetricFamily(PREFIX + "websocket_refused", "websocket requests refused "
                                      "over a limit, by limit", labels=["limit"])  # fmt: skip
        refused.add_metric(["connections_per_address"], hub.clients_refused)
        refused.add_metric(["subscription_changes_per_minute"], hub.subscribes_refused)
        yield refused
        yield from _accuracy(state.insight.accuracy)
        alerts = GaugeMetricFamily(PREFIX + "operations_alerts", "live operations alerts, by kind",
                                   labels=["kind"])  # fmt: skip
        kinds: dict[str, int] = {}
        for alert in state.insight.alerts():
            kinds[alert.kind.value] = kinds.get(alert.kind.value, 0) + 1
        for kind, n in sorted(kinds.items()):
            alerts.add_metric([kind], n)
        yield alerts
        yield from _gtfs_rt(getattr(state, "pollers", []))
        auth = state.auth.stats
        yield _counter("auth_logins", "operator logins", auth.logins)
        yield _counter("auth_failed_logins", "logins refused: wrong name or password",
                       auth.failed_logins)  # fmt: skip
        yield _counter("auth_throttled_logins", "logins refused after too many wrong passwords",
                       auth.throttled_logins)  # fmt: skip
        yield _counter("auth_refused_requests", "operator requests refused (401 and 403)",
                       auth.refused_requests)  # fmt: skip
        limiter = state.rate_limiter
        yield _counter("http_rate_limited", "HTTP requests refused (429) over their client's "
                       "rate limit", limiter.refused)  # fmt: skip


def _accuracy(buckets: Any) -> Iterator[Metric]:
    mae = GaugeMetricFamily(PREFIX + "prediction_error_seconds", "mean absolute error of the "
                            "arrival predictions whose stop was seen, by horizon",
                            labels=["horizon"])  # fmt: skip
    coverage = GaugeMetricFamily(PREFIX + "prediction_range_coverage", "share of true "
                                 "arrivals within the predicted p10-p90, by horizon",
                                 labels=["horizon"])  # fmt: skip
    scored = GaugeMetricFamily(PREFIX + "predictions_scored", "predictions in the scoring "
                               "window, by horizon", labels=["horizon"])  # fmt: skip
    for b in buckets:
        horizon = f"{b.from_min}-{b.to_min}min" if b.to_min is not None else f"{b.from_min}+min"
        scored.add_metric([horizon], b.predictions)
        if b.mae_s is not None:
            mae.add_metric([horizon], b.mae_s)
        if b.coverage is not None:
            coverage.add_metric([horizon], b.coverage)
    yield from (mae, coverage, scored)


def _gtfs_rt(pollers: Any) -> Iterator[Metric]:
    """The polled GTFS-realtime feeds (`tracker.ingest.gtfs_rt_poll`), by feed."""
    polls = CounterMetricFamily(PREFIX + "gtfs_rt_polls", "polls of GTFS-realtime feeds, by "
                                "result (read, not_modified, failed)",
                                labels=["feed", "result"])  # fmt: skip
    failures = CounterMetricFamily(PREFIX + "gtfs_rt_failures", "failed polls of GTFS-realtime "
                                   "feeds, by reason", labels=["feed", "reason"])  # fmt: skip
    entities = CounterMetricFamily(PREFIX + "gtfs_rt_entities", "entities of the feeds read, by "
                                   "outcome (sent, unchanged, or why skipped)",
                                   labels=["feed", "outcome"])  # fmt: skip
    up = GaugeMetricFamily(PREFIX + "gtfs_rt_feed_up", "1 while the last poll of the feed "
                           "brought it", labels=["feed"])  # fmt: skip
    feed_time = GaugeMetricFamily(PREFIX + "gtfs_rt_feed_timestamp_seconds", "header timestamp "
                                  "of the last feed read (epoch s)", labels=["feed"])  # fmt: skip
    for poller in pollers:
        stats = poller.stats()
        name = stats.feed
        polls.add_metric([name, "read"], stats.feeds_read)
        polls.add_metric([name, "not_modified"], stats.not_modified)
        polls.add_metric([name, "failed"], stats.failures)
        for reason, n in sorted(stats.failures_by_reason.items()):
            failures.add_metric([name, reason], n)
        entities.add_metric([name, "sent"], stats.sent)
        entities.add_metric([name, "unchanged"], stats.unchanged)
        for reason, n in sorted(stats.skipped_by_reason.items()):
            entities.add_metric([name, reason], n)
        up.add_metric([name], float(stats.healthy))
        if stats.feed_timestamp_s is not None:
            feed_time.add_metric([name], stats.feed_timestamp_s)
    yield from (polls, failures, entities, up, feed_time)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _histogram(name: str, documentation: str, histogram: Histogram) -> HistogramMetricFamily:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for edge, n in zip(histogram.edges, histogram.counts, strict=False):
        cumulative += n
        buckets.append((repr(edge), cumulative))
    buckets.append(("+Inf", histogram.count))
    return HistogramMetricFamily(PREFIX + name, documentation, buckets=buckets,
                                 sum_value=histogram.total)  # fmt: skip


def registry_of(request: Request) -> CollectorRegistry:
    """This app's registry (made on first scrape; none shared between apps)."""
    registry = getattr(request.app.state, "metrics_registry", None)
    if not isinstance(registry, CollectorRegistry):
        registry = CollectorRegistry()
        registry.register(ServiceCollector(request.app.state))
        request.app.state.metrics_registry = registry
    return registry


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})  # fmt: skip
async def metrics(request: Request) -> Response:
    """Counters, gauges and histograms for Prometheus (see the module)."""
    return Response(generate_latest(registry_of(request)), media_type=CONTENT_TYPE_LATEST)
