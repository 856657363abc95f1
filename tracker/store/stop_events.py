"""Stop events in PostgreSQL: when each bus reached and left each stop (`tracker.core.stop_events`).

The SQL of the `stop_events` table (migration 0003) and the conversions to and from rows; `Store`
calls these with its connections. Written like positions: COPY into a per-connection staging
table, then one `INSERT … ON CONFLICT … DO UPDATE` that stores an event detected twice (after a
restart) once, filling in a time the first copy lacked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import asyncpg

from tracker.core.stop_events import Observed, StopEvent

if TYPE_CHECKING:
    from tracker.store.postgres import Connection

COLUMNS: Final = (
    "vehicle_id",
    "trip_id",
    "service_date",
    "route_id",
    "direction_id",
    "stop_id",
    "stop_sequence",
    "event_at",
    "arrival_at",
    "departure_at",
    "scheduled_arrival_at",
    "scheduled_departure_at",
    "delay_s",
    "observed",
)
_ALL: Final = ", ".join(COLUMNS)
STAGING_TABLE: Final = "stop_events_incoming"
CREATE_STAGING_SQL: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} "
    "(LIKE stop_events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
# An event seen again (after a restart the stop a bus is first seen at comes again, with no
# arrival) fills in what the stored one lacks, and changes nothing it knows. Returns how many
# were new.
MOVE_STAGED_SQL: Final = f"""
WITH stored AS (
    INSERT INTO stop_events AS e ({_ALL})
    SELECT DISTINCT ON (vehicle_id, trip_id, service_date, stop_sequence) {_ALL}
    FROM {STAGING_TABLE}
    ORDER BY vehicle_id, trip_id, service_date, stop_sequence, event_at
    ON CONFLICT (vehicle_id, trip_id, service_date, stop_sequence) DO UPDATE SET
        arrival_at = coalesce(e.arrival_at, EXCLUDED.arrival_at),
        departure_at = coalesce(e.departure_at, EXCLUDED.departure_at),
        delay_s = coalesce(e.delay_s, EXCLUDED.delay_s),
        event_at = coalesce(e.arrival_at, EXCLUDED.arrival_at, e.event_at)
    WHERE e.arrival_at IS NULL OR e.departure_at IS NULL
    RETURNING xmax = 0 AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM stored"""
# [start, end) on `event_at`; a NULL filter is no filter; oldest first.
QUERY_SQL: Final = f"""
SELECT {_ALL} FROM stop_events
WHERE event_at >= $1 AND event_at < $2
  AND ($3::text IS NULL OR stop_id = $3)
  AND ($4::text IS NULL OR vehicle_id = $4)
  AND ($5::text IS NULL OR trip_id = $5)
  AND ($6::text[] IS NULL OR route_id = ANY($6::text[]))
ORDER BY event_at, vehicle_id, stop_sequence
LIMIT $7"""
DELETE_BEFORE_SQL: Final = "DELETE FROM stop_events WHERE event_at < $1"


def _at(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def row(event: StopEvent) -> tuple[object, ...]:
    """A record for the staging table, in the order of `COLUMNS`."""
    return (
        event.vehicle_id,
        event.trip_id,
        event.service_date,
        event.route_id,
        event.direction_id,
        event.stop_id,
        event.stop_sequence,
        _at(event.at_s),
        _at(event.arrival_s),
        _at(event.departure_s),
        _at(event.scheduled_arrival_s),
        _at(event.scheduled_departure_s),
        event.delay_s,
        event.observed.value,
    )


def event_of(record: asyncpg.Record) -> StopEvent:
    return StopEvent(
        vehicle_id=record["vehicle_id"],
        trip_id=record["trip_id"],
        service_date=record["service_date"],
        route_id=record["route_id"],
        direction_id=record["direction_id"],
        stop_id=record["stop_id"],
        stop_sequence=record["stop_sequence"],
        arrival_s=_epoch(record["arrival_at"]),
        departure_s=_epoch(record["departure_at"]),
        scheduled_arrival_s=_epoch(record["scheduled_arrival_at"]),
        scheduled_departure_s=_epoch(record["scheduled_departure_at"]),
        delay_s=record["delay_s"],
        observed=Observed(record["observed"]),
    )


async def write(conn: Connection, events: Sequence[StopEvent]) -> int:
    """Store `events` (inside the caller's transaction); how many were new. An event with
    neither time (which the detector does not make) is left out: it must not fail the batch."""
    rows = [row(e) for e in events if e.arrival_s is not None or e.departure_s is not None]
    if not rows:
        return 0
    await conn.execute(CREATE_STAGING_SQL)
    await conn.copy_records_to_table(STAGING_TABLE, records=rows, columns=COLUMNS)
    stored: int = await conn.fetchval(MOVE_STAGED_SQL)
    return stored
