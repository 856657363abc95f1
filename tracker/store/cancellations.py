"""Trip cancellations in PostgreSQL: the `trip_cancellations` table (migration 0004).

The operator's cancellations (`tracker.core.cancellations`) are written here as they are made
and read back when the service starts, so that they survive a restart. They are few (a handful
a day), so each action is one statement on one of the store's pooled connections; the service
keeps them in memory meanwhile (`tracker.api.cancellations`). Only what the operator said is
stored: the route and scheduled times come from the static GTFS again when they are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from tracker.core.cancellations import Cancellation
from tracker.store.postgres import Store

# A trip cancelled again keeps its first time, and takes the new cause and reason. Returns
# whether the row is new.
SAVE_SQL: Final = """
INSERT INTO trip_cancellations AS c (service_date, trip_id, cause, reason, cancelled_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (service_date, trip_id) DO UPDATE SET cause = EXCLUDED.cause, reason = EXCLUDED.reason
RETURNING xmax = 0 AS inserted"""
DELETE_SQL: Final = """
DELETE FROM trip_cancellations WHERE service_date = $1 AND trip_id = $2 RETURNING trip_id"""
LOAD_SQL: Final = """
SELECT service_date, trip_id, cause, reason, cancelled_at FROM trip_cancellations
WHERE service_date >= $1
ORDER BY service_date, trip_id"""


@dataclass(frozen=True, slots=True)
class StoredCancellation:
    """A row of `trip_cancellations`: what the operator said, and when (epoch s)."""

    trip_id: str
    service_date: str  # YYYYMMDD
    cause: str  # a `tracker.core.cancellations.Cause` name
    reason: str
    cancelled_at_s: float


async def save(store: Store, cancelled: Cancellation) -> bool:
    """Store a cancellation (replacing the cause and reason of the same trip's on the same day);
    True when the trip was not cancelled that day before."""
    at = datetime.fromtimestamp(cancelled.cancelled_at_s, UTC)
    async with store._connection() as conn:  # the store's pool: this module is part of it
        inserted: bool = await conn.fetchval(
            SAVE_SQL, cancelled.service_date, cancelled.trip_id, cancelled.cause.value,
            cancelled.reason, at,
        )  # fmt: skip
    return inserted


async def delete(store: Store, trip_id: str, service_date: str) -> bool:
    """Forget the trip's cancellation on that day; False when there was none."""
    async with store._connection() as conn:
        found = await conn.fetchval(DELETE_SQL, service_date, trip_id)
    return found is not None


async def load(store: Store, *, from_service_date: str) -> list[StoredCancellation]:
    """The cancellations of the service days from `from_service_date` (YYYYMMDD) on, by day
    and trip."""
    async with store._connection() as conn:
        records = await conn.fetch(LOAD_SQL, from_service_date)
    return [
        StoredCancellation(
            trip_id=r["trip_id"],
            service_date=r["service_date"],
            cause=r["cause"],
            reason=r["reason"],
            cancelled_at_s=r["cancelled_at"].timestamp(),
        )
        for r in records
    ]
