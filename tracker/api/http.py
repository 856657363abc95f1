"""The HTTP API: thin endpoints over the app's state, the store and the pure core.

Where the answers come from:

- live vehicles: the websocket hub's in-memory state (`Hub.vehicles`), never the database;
- schedules and geometry: the GTFS `Network` through `tracker.core.departures` and
  `tracker.core.geojson`;
- trails and history: `Store` (PostgreSQL);
- counters: the pipeline, the ingest queue, the MQTT client, the store writer and the hub.

Every time is epoch seconds by the service clock (`Settings.now`, which a demo may set apart
from the wall clock), and every answer says what that clock read (``now_s``). Errors are JSON
``{"detail": ...}`` with the status given by `tracker.api.errors` (404 unknown id, 422 bad
parameter, 503 database unavailable). The OpenAPI docs are at ``/docs``.

One module per part, each with its router: `tracker.api.health`, `tracker.api.vehicles`,
`tracker.api.network` (routes and stops), `tracker.api.arrivals` (predictions, their accuracy,
stop events), `tracker.api.operator` (fleet, problems, history, counters),
`tracker.api.operations` (headways, alerts, detours, time–distance), `tracker.api.gtfs_rt`
(GTFS-realtime feeds), `tracker.api.siri` (SIRI-VM and SIRI-SM), `tracker.api.metrics`
(Prometheus), `tracker.api.ingest` (phone apps in), `tracker.api.cancellations` (the operator's
cancelled trips), `tracker.api.auth` (logins, and who may call what); what they share is in
`tracker.api.deps`. `tracker.api.ratelimit` limits each caller's requests (429) in front of them
all but the probes, the metrics and the phones' ingest.

Derived data that only depends on the network (the whole network as GeoJSON, the route list,
the network's bounds) is computed on first use, off the event loop, and kept for the app's life.
"""

from __future__ import annotations

from fastapi import APIRouter

from tracker.api import (
    arrivals,
    auth,
    cancellations,
    gtfs_rt,
    health,
    ingest,
    metrics,
    network,
    operations,
    operator,
    siri,
    vehicles,
)
from tracker.api.errors import problem_responses

router = APIRouter()
limited = (vehicles, network, arrivals, operator, operations, gtfs_rt, siri, cancellations, auth)
for part in limited:  # each caller's requests are limited (tracker.api.ratelimit): 429
    router.include_router(part.router, responses=problem_responses(429))
for part in (health, metrics, ingest):  # probes, scrapers and phones: not limited
    router.include_router(part.router)
