"""The MQTT ingest adapter: broker client, bounded per-vehicle queue, embedded demo broker.

Import from the modules themselves (`tracker.ingest.mqtt`, `tracker.ingest.queue`,
`tracker.ingest.broker`); this package re-exports the names the rest of the tracker uses.
"""

from tracker.ingest.mqtt import (
    BROKER_URL_ENV,
    Backoff,
    BrokerAddress,
    IngestStats,
    MqttIngest,
    parse_broker_url,
)
from tracker.ingest.queue import AsyncIngestQueue, LatestPerVehicleQueue, QueueStats, Received

__all__ = [
    "BROKER_URL_ENV",
    "AsyncIngestQueue",
    "Backoff",
    "BrokerAddress",
    "IngestStats",
    "LatestPerVehicleQueue",
    "MqttIngest",
    "QueueStats",
    "Received",
    "parse_broker_url",
]
