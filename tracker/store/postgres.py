"""The PostgreSQL adapter: position history, latest state per vehicle, schema migrations.

All of the tracker's SQL lives here (as constants) and in `migrations/*.sql`. Times cross this
module's API as epoch seconds (float, UTC) and are `timestamptz` inside the database.

How a batch is written (`Store.write_batch`):
1. rejected matches are dropped and duplicates of (vehicle, observation time) within the batch are
   removed, the first one winning;
2. the partitions of `positions` (one per UTC day) for the days the batch touches are created if
   this process has not seen them yet;
3. in one transaction the rows are COPYed into a per-connection temporary staging table and one
   statement moves them into `positions` (ON CONFLICT DO NOTHING: a row already stored is a
   duplicate) and into `vehicle_latest` (only where newer than the stored row, and never from a
   ping stored unmatched as `superseded` or `late`: the vehicle's newer, matched ping is the
   latest);
4. in the same transaction, answers revised since (settled differently a few minutes after
   their ping: `tracker.core.settle`) are COPYed into another staging table and replace the
   matcher's columns of their stored rows, which get `revised_at`; and the stop events
   detected since (`tracker.store.stop_events`) are stored.

Concurrency: migrations run under a session advisory lock, partition creation and retention under
a transaction advisory lock, so several trackers may share one database.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import re
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Final

import asyncpg

from tracker.core.model import Match, Ping, Reason, State
from tracker.core.stop_events import StopEvent
from tracker.errors import StoreError
from tracker.store import stop_events as stop_events_sql

if TYPE_CHECKING:
    from typing import TypeAlias

    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

logger = logging.getLogger(__name__)

DATABASE_URL_SETTING: Final = "TRACKER_DATABASE_URL"

# Advisory lock keys: arbitrary constants, the same in every tracker sharing a database.
MIGRATIONS_LOCK_KEY: Final = 0x7472_6B01  # "trk" 1
PARTITIONS_LOCK_KEY: Final = 0x7472_6B02  # "trk" 2

# --- migrations -------------------------------------------------------------------------------

CREATE_MIGRATIONS_TABLE_SQL: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
APPLIED_MIGRATIONS_SQL: Final = "SELECT name FROM schema_migrations ORDER BY name"
RECORD_MIGRATION_SQL: Final = "INSERT INTO schema_migrations (name) VALUES ($1)"
LOCK_SQL: Final = "SELECT pg_advisory_lock($1)"
UNLOCK_SQL: Final = "SELECT pg_advisory_unlock($1)"
TRANSACTION_LOCK_SQL: Final = "SELECT pg_advisory_xact_lock($1)"

# --- partitions of `positions` ----------------------------------------------------------------

PARTITION_PREFIX: Final = "positions_p"  # + YYYYMMDD, the UTC day it holds
# DDL takes no parameters: the name and bounds are formatted from a `date` (see below).
CREATE_PARTITION_SQL: Final = (
    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF positions "
    "FOR VALUES FROM ('{start} 00:00:00+00') TO ('{end} 00:00:00+00')"
)
DROP_PARTITION_SQL: Final = "DROP TABLE IF EXISTS {name}"
LIST_PARTITIONS_SQL: Final = """
SELECT child.relname
FROM pg_inherits AS i
JOIN pg_class AS child ON child.oid = i.inhrelid
WHERE i.inhparent = 'positions'::regclass
ORDER BY child.relname"""

# --- writing ----------------------------------------------------------------------------------

# The columns of `positions` and `vehicle_latest`, in the order of the COPYed records.
COLUMNS: Final = (
    "vehicle_id",
    "observed_at",
    "received_at",
    "lat",
    "lon",
    "speed_mps",
    "bearing_deg",
    "accuracy_m",
    "route_id_given",
    "trip_id_given",
    "state",
    "reason",
    "route_id",
    "trip_id",
    "service_date",
    "direction_id",
    "shape_id",
    "shape_dist_m",
    "snapped_lat",
    "snapped_lon",
    "offset_m",
    "delay_s",
    "headway_s",
)
_ALL: Final = ", ".join(COLUMNS)
_SET_ALL_FROM_EXCLUDED: Final = ",\n        ".join(
    f"{column} = EXCLUDED.{column}" for column in COLUMNS if column != "vehicle_id"
)

STAGING_TABLE: Final = "positions_incoming"
# Temporary tables belong to a session: each pooled connection gets its own, emptied at commit.
CREATE_STAGING_SQL: Final = (
    f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (LIKE positions) ON COMMIT DELETE ROWS"
)
# One statement: history (existing rows are duplicates) and latest (only where newer; a ping
# stored unmatched because a newer one overtook it in the ingest queue never becomes the latest).
# Returns how many rows went into history.
MOVE_STAGED_SQL: Final = f"""
WITH stored AS (
    INSERT INTO positions ({_ALL})
    SELECT {_ALL} FROM {STAGING_TABLE}
    ON CONFLICT (vehicle_id, observed_at) DO NOTHING
    RETURNING 1
), newest AS (
    INSERT INTO vehicle_latest ({_ALL})
    SELECT DISTINCT ON (vehicle_id) {_ALL} FROM {STAGING_TABLE}
    WHERE reason IS NULL OR reason NOT IN ('{Reason.SUPERSEDED.value}', '{Reason.LATE.value}')
    ORDER BY vehicle_id, observed_at DESC
    ON CONFLICT (vehicle_id) DO UPDATE SET
        {_SET_ALL_FROM_EXCLUDED}
    WHERE vehicle_latest.observed_at < EXCLUDED.observed_at
)
SELECT count(*) FROM stored"""

# Revisions: the matcher's columns of stored rows, replaced.
REVISED_COLUMNS: Final = (
    "vehicle_id",
    "observed_at",
    "state",
    "reason",
    "route_id",
    "trip_id",
    "service_date",
    "direction_id",
    "shape_id",
    "shape_dist_m",
    "snapped_lat",
    "snapped_lon",
    "offset_m",
    "delay_s",
    "headway_s",
)
REVISED_TABLE: Final = "positions_revised"
CREATE_REVISED_SQL: Final = f"""
CREATE TEMP TABLE IF NOT EXISTS {REVISED_TABLE} (
    vehicle_id text, observed_at timestamptz, state text, reason text, route_id text,
    trip_id text, service_date text, direction_id smallint, shape_id text,
    shape_dist_m double precision, snapped_lat double precision, snapped_lon double precision,
    offset_m double precision, delay_s double precision, headway_s double precision
) ON COMMIT DELETE ROWS"""
_SET_REVISED: Final = ", ".join(f"{c} = r.{c}" for c in REVISED_COLUMNS[2:])
# Returns how many stored rows were revised (a revision of a row never stored changes nothing).
REVISE_STAGED_SQL: Final = f"""
WITH history AS (
    UPDATE positions AS p SET {_SET_REVISED}, revised_at = now()
    FROM {REVISED_TABLE} AS r
    WHERE p.vehicle_id = r.vehicle_id AND p.observed_at = r.observed_at
    RETURNING 1
), latest AS (
    UPDATE vehicle_latest AS p SET {_SET_REVISED}, revised_at = now()
    FROM {REVISED_TABLE} AS r
    WHERE p.vehicle_id = r.vehicle_id AND p.observed_at = r.observed_at
)
SELECT count(*) FROM history"""

# --- reading ----------------------------------------------------------------------------------

# The columns of a `VehicleRow`, in its field order.
# (Epoch seconds are computed by the server: cheaper than decoding a datetime for each row.)
_ROW: Final = (
    "vehicle_id, extract(epoch FROM observed_at)::float8 AS observed_at_s, lat, lon, "
    "bearing_deg, speed_mps, state, reason, route_id, trip_id, service_date, direction_id, "
    "shape_id, shape_dist_m, snapped_lat, snapped_lon, offset_m, delay_s, headway_s"
)
_ROW_OUTER: Final = _ROW.replace(
    "extract(epoch FROM observed_at)::float8 AS observed_at_s", "observed_at_s"
)
# A parameter that is NULL means "no filter". A bounding box whose min_lon exceeds its max_lon
# crosses the antimeridian.
LATEST_SQL: Final = f"""
SELECT {_ROW} FROM vehicle_latest
WHERE ($1::text[] IS NULL OR route_id = ANY($1::text[]))
  AND ($2::float8 IS NULL OR (
        lat BETWEEN $3::float8 AND $5::float8
        AND CASE WHEN $2::float8 <= $4::float8 THEN lon BETWEEN $2::float8 AND $4::float8
                 ELSE lon >= $2::float8 OR lon <= $4::float8 END))
  AND ($6::timestamptz IS NULL OR observed_at >= $6::timestamptz)
ORDER BY vehicle_id"""
# The newest `limit` positions since a time, returned oldest first.
TRAIL_SQL: Final = f"""
SELECT {_ROW_OUTER} FROM (
    SELECT {_ROW} FROM positions
    WHERE vehicle_id = $1 AND observed_at >= $2
    ORDER BY observed_at DESC
    LIMIT $3
) AS newest
ORDER BY observed_at_s"""
# [start, end): the range on `observed_at` lets the planner skip the other days' partitions.
HISTORY_SQL: Final = f"""
SELECT {_ROW} FROM positions
WHERE observed_at >= $1 AND observed_at < $2
  AND ($3::text[] IS NULL OR route_id = ANY($3::text[]))
ORDER BY observed_at, vehicle_id
LIMIT $4"""
HISTORY_OF_VEHICLE_SQL: Final = f"""
SELECT {_ROW} FROM positions
WHERE vehicle_id = $5 AND observed_at >= $1 AND observed_at < $2
  AND ($3::text[] IS NULL OR route_id = ANY($3::text[]))
ORDER BY observed_at
LIMIT $4"""
HISTORY_BOUNDS_SQL: Final = "SELECT min(observed_at), max(observed_at) FROM positions"

# --- databases (used by the embedded server) --------------------------------------------------

DATABASE_EXISTS_SQL: Final = "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)"
CREATE_DATABASE_SQL: Final = "CREATE DATABASE {name}"  # takes no parameters: name is checked

# Errors that mean "the database cannot be reached or is going away", not "this SQL is wrong".
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
)


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What `Store.write_batch` did with a batch."""

    stored: int  # new rows in the history
    duplicates: int  # same vehicle and observation time as a stored row or an earlier batch item
    skipped_rejected: int  # rejected matches, never stored
    revised: int = 0  # stored rows whose answer was revised
    stop_events: int = 0  # new stop events stored


@dataclass(frozen=True, slots=True)
class VehicleRow:
    """One stored position of a vehicle with what the matcher made of it."""

    vehicle_id: str
    observed_at_s: float  # epoch seconds, UTC
    lat: float
    lon: float
    bearing_deg: float | None
    speed_mps: float | None
    state: State
    reason: Reason | None
    route_id: str | None
    trip_id: str | None
    service_date: str | None  # YYYYMMDD
    direction_id: int | None
    shape_id: str | None
    shape_dist_m: float | None
    snapped_lat: float | None
    snapped_lon: float | None
    offset_m: float | None
    delay_s: float | None
    headway_s: float | None


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change, shipped as `migrations/NNNN_description.sql`."""

    name: str  # the file name without ".sql", e.g. "0001_positions"
    sql: str


_MIGRATION_FILE = re.compile(r"(?P<number>[0-9]{4})_[a-z0-9_]+\.sql")


@cache
def migrations() -> tuple[Migration, ...]:
    """The migrations shipped with the package, in the order they apply."""
    folder = importlib.resources.files("tracker.store") / "migrations"
    found: dict[str, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        matched = _MIGRATION_FILE.fullmatch(entry.name)
        if matched is None:
            raise StoreError(
                f"migration file {entry.name!r} is misnamed: name it NNNN_description.sql "
                "(four digits, then lower-case letters, digits and underscores)"
            )
        number = matched["number"]
        if number in found:
            raise StoreError(
                f"migrations {found[number].name!r} and {entry.name!r} share the number {number}"
            )
        found[number] = Migration(entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
    return tuple(found[number] for number in sorted(found))


async def upgrade(
    conn_or_pool: asyncpg.Connection[asyncpg.Record] | asyncpg.Pool[asyncpg.Record],
) -> list[str]:
    """Apply the migrations the database lacks; return the names of those applied now.

    Safe to run again (it then applies nothing) and from several processes at once: they queue on
    an advisory lock. Each migration and its record in `schema_migrations` commit together.
    """
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await _upgrade(conn)
    return await _upgrade(conn_or_pool)


async def _upgrade(conn: Connection) -> list[str]:
    await conn.execute(LOCK_SQL, MIGRATIONS_LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE_SQL)
        applied = {record["name"] for record in await conn.fetch(APPLIED_MIGRATIONS_SQL)}
        applied_now: list[str] = []
        for migration in migrations():
            if migration.name in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD_MIGRATION_SQL, migration.name)
            logger.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
        return applied_now
    finally:
        if not conn.is_closed():  # a closed connection has released its locks
            await conn.execute(UNLOCK_SQL, MIGRATIONS_LOCK_KEY)


def mask_password(url: str) -> str:
    """The URL with its password (in the authority or a `password=` parameter) replaced by ***."""
    masked = re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)
    scheme, separator, rest = masked.partition("://")
    if not separator:
        return masked
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if at and colon and password:
        authority = f"{user}:***@{host}"
    return f"{scheme}://{authority}{slash}{path}"


def _cannot_connect(url: str, exc: BaseException) -> StoreError:
    return StoreError(
        f"cannot connect to PostgreSQL at {mask_password(url)}: {type(exc).__name__}: {exc}. "
        f"Set {DATABASE_URL_SETTING} to the URL of a reachable database "
        "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE), or run `tracker demo`, which starts "
        "its own PostgreSQL."
    )


async def create_database_if_missing(server_url: str, name: str) -> bool:
    """Create database `name` on the server at `server_url` unless it exists; True if created."""
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) is None:
        raise ValueError(f"database name {name!r}: use lower-case letters, digits and underscores")
    try:
        conn = await asyncpg.connect(server_url)
    except (*_UNAVAILABLE, asyncpg.PostgresError, ValueError) as exc:
        raise _cannot_connect(server_url, exc) from exc
    try:
        if await conn.fetchval(DATABASE_EXISTS_SQL, name):
            return False
        try:
            await conn.execute(CREATE_DATABASE_SQL.format(name=name))
        except asyncpg.DuplicateDatabaseError:
            return False  # created by someone else since we looked
        return True
    finally:
        await conn.close()


def _timestamptz(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _partition_name(day: date) -> str:
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def _partition_day(name: str) -> date | None:
    """The UTC day a partition holds, from its name; None for a table not named by us."""
    matched = re.fullmatch(re.escape(PARTITION_PREFIX) + r"([0-9]{8})", name)
    if matched is None:
        return None
    try:
        return datetime.strptime(matched[1], "%Y%m%d").date()
    except ValueError:
        return None


def _storable(text: str | None) -> str | None:
    """`text` as PostgreSQL can hold it: no NUL character, no lone surrogate (JSON allows both).

    Strings from the wire go through this, so that one odd ping cannot fail its whole batch.
    """
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _history_row(
    ping: Ping, match: Match, observed_at: datetime, received_at: datetime
) -> tuple[object, ...]:
    """A record for the staging table, in the order of `COLUMNS`."""
    return (
        _storable(ping.vehicle_id),
        observed_at,
        received_at,
        ping.lat,
        ping.lon,
        ping.speed_mps,
        ping.bearing_deg,
        ping.accuracy_m,
        _storable(ping.route_id),
        _storable(ping.trip_id),
        match.state.value,
        None if match.reason is None else match.reason.value,
        match.route_id,
        match.trip_id,
        match.service_date,
        match.direction_id,
        match.shape_id,
        match.shape_dist_m,
        match.snapped_lat,
        match.snapped_lon,
        match.offset_m,
        match.delay_s,
        match.headway_s,
    )


def _revised_row(match: Match) -> tuple[object, ...]:
    """A record for the revisions' staging table, in the order of `REVISED_COLUMNS`."""
    return (
        _storable(match.vehicle_id),
        _timestamptz(match.timestamp),
        match.state.value,
        None if match.reason is None else match.reason.value,
        match.route_id,
        match.trip_id,
        match.service_date,
        match.direction_id,
        match.shape_id,
        match.shape_dist_m,
        match.snapped_lat,
        match.snapped_lon,
        match.offset_m,
        match.delay_s,
        match.headway_s,
    )


_STATES: Final = {state.value: state for state in State}
_REASONS: Final = {reason.value: reason for reason in Reason}


def _vehicle_row(record: asyncpg.Record) -> VehicleRow:
    # Unpacked by position, in the order of `_ROW` (100 000 rows of replay add up).
    (
        vehicle_id,
        observed_at_s,
        lat,
        lon,
        bearing_deg,
        speed_mps,
        state,
        reason,
        route_id,
        trip_id,
        service_date,
        direction_id,
        shape_id,
        shape_dist_m,
        snapped_lat,
        snapped_lon,
        offset_m,
        delay_s,
        headway_s,
    ) = record
    return VehicleRow(
        vehicle_id,
        observed_at_s,
        lat,
        lon,
        bearing_deg,
        speed_mps,
        _STATES[state],
        None if reason is None else _REASONS[reason],
        route_id,
        trip_id,
        service_date,
        direction_id,
        shape_id,
        shape_dist_m,
        snapped_lat,
        snapped_lon,
        offset_m,
        delay_s,
        headway_s,
    )


class Store:
    """The tracker's PostgreSQL database, through a pool of connections.

    Open with `Store.open(dsn)` (or `async with open_store(dsn)`), close with `close()`. Errors
    that mean the database is unreachable come out as `StoreError`, naming the URL.
    """

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], *, url: str, timeout_s: float = 10.0
    ) -> None:
        """Use `Store.open`; this only wraps an open pool."""
        self._pool = pool
        self._url = mask_password(url)
        self._timeout_s = timeout_s
        self._partition_days: set[date] = set()  # days whose partition is known to exist

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        apply_migrations: bool = True,
        timeout_s: float = 10.0,
    ) -> Store:
        """Connect (and by default bring the schema up to date).

        `timeout_s` bounds connecting and waiting for a free connection.
        """
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, timeout=timeout_s
            )
        except (*_UNAVAILABLE, asyncpg.PostgresError, ValueError) as exc:
            raise _cannot_connect(dsn, exc) from exc
        store = cls(pool, url=dsn, timeout_s=timeout_s)
        logger.info(
            "connected to PostgreSQL at %s (pool of %d..%d)", store._url, min_size, max_size
        )
        try:
            if apply_migrations:
                await store.upgrade()
        except BaseException:
            pool.terminate()  # synchronous, so that it also happens on cancellation
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()
        logger.info("closed the connections to PostgreSQL at %s", self._url)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise StoreError(
                f"PostgreSQL at {self._url} is unavailable: {type(exc).__name__}: {exc}"
            ) from exc

    async def upgrade(self) -> list[str]:
        """Apply the missing migrations (see `upgrade`); the names of those applied now."""
        async with self._connection() as conn:
            return await _upgrade(conn)

    async def is_ready(self) -> bool:
        """True when the database answers and every shipped migration is applied."""
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as conn:
                records = await conn.fetch(APPLIED_MIGRATIONS_SQL, timeout=self._timeout_s)
        except asyncpg.UndefinedTableError:
            return False
        except _UNAVAILABLE as exc:
            logger.debug("PostgreSQL at %s is not ready: %s", self._url, exc)
            return False
        applied = {record["name"] for record in records}
        return all(migration.name in applied for migration in migrations())

    # --- writing ------------------------------------------------------------------------------

    async def write_batch(
        self,
        items: Sequence[tuple[Ping, Match]],
        *,
        received_at_s: float,
        revised: Sequence[Match] = (),
        stop_events: Sequence[StopEvent] = (),
    ) -> WriteResult:
        """Store the batch's positions in the history and move each vehicle's latest forward;
        replace the answers of stored positions by their `revised` ones; store `stop_events`."""
        received_at = _timestamptz(received_at_s)
        revisions = [_revised_row(m) for m in revised if m.state is not State.REJECTED]
        rows: dict[tuple[str, datetime], tuple[object, ...]] = {}
        skipped_rejected = 0
        for ping, match in items:
            if match.state is State.REJECTED:
                skipped_rejected += 1
                continue
            # Keyed on the time as stored (microseconds), so that near-equal floats collide here
            # rather than in the database.
            key = (ping.vehicle_id, _timestamptz(ping.timestamp))
            if key not in rows:
                rows[key] = _history_row(ping, match, key[1], received_at)
        candidates = len(items) - skipped_rejected
        if not rows and not revisions and not stop_events:
            return WriteResult(stored=0, duplicates=candidates, skipped_rejected=skipped_rejected)
        days = {observed_at.date() for _, observed_at in rows}
        async with self._connection() as conn:
            try:
                stored, revised_n, events_n = await self._write_rows(
                    conn, rows.values(), days, revisions, stop_events
                )
            except asyncpg.CheckViolationError as exc:
                if exc.constraint_name is not None:
                    raise  # a CHECK of the table, not a missing partition
                # "No partition of relation positions found for row": another tracker's retention
                # dropped a partition this one had cached. Look again, once.
                self._partition_days -= days
                stored, revised_n, events_n = await self._write_rows(
                    conn, rows.values(), days, revisions, stop_events
                )
        logger.debug("stored %d of %d positions, revised %d, %d stop events", stored,
                     len(items), revised_n, events_n)  # fmt: skip
        return WriteResult(stored=stored, duplicates=candidates - stored,
                           skipped_rejected=skipped_rejected, revised=revised_n,
                           stop_events=events_n)  # fmt: skip

    async def _write_rows(
        self,
        conn: Connection,
        rows: Collection[tuple[object, ...]],
        days: set[date],
        revisions: Collection[tuple[object, ...]],
        stop_events: Sequence[StopEvent],
    ) -> tuple[int, int, int]:
        await self._ensure_partitions(conn, days)
        stored = revised = events = 0
        async with conn.transaction():
            if rows:
                await conn.execute(CREATE_STAGING_SQL)
                await conn.copy_records_to_table(STAGING_TABLE, records=rows, columns=COLUMNS)
                stored = await conn.fetchval(MOVE_STAGED_SQL)
            if revisions:
                await conn.execute(CREATE_REVISED_SQL)
                await conn.copy_records_to_table(
                    REVISED_TABLE, records=revisions, columns=REVISED_COLUMNS
                )
                revised = await conn.fetchval(REVISE_STAGED_SQL)
            if stop_events:
                events = await stop_events_sql.write(conn, stop_events)
        return stored, revised, events

    async def _ensure_partitions(self, conn: Connection, days: set[date]) -> None:
        missing = sorted(days - self._partition_days)
        if not missing:
            return
        # Creators queue on the lock, so CREATE ... IF NOT EXISTS sees the others' partitions.
        # A table created outside the lock meanwhile raises; then the second pass finds it.
        for attempt in range(2):
            try:
                async with conn.transaction():
                    await conn.execute(TRANSACTION_LOCK_SQL, PARTITIONS_LOCK_KEY)
                    for day in missing:
                        await conn.execute(
                            CREATE_PARTITION_SQL.format(
                                name=_partition_name(day),
                                start=day.isoformat(),
                                end=(day + timedelta(days=1)).isoformat(),
                            )
                        )
                break
            except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                if attempt == 1:
                    raise
        logger.info("history partitions ready for %s", ", ".join(map(str, missing)))
        self._partition_days.update(missing)

    # --- retention ----------------------------------------------------------------------------

    async def drop_partitions_before(self, cutoff_day: date) -> list[str]:
        """Drop the history partitions of UTC days before `cutoff_day`; return their names.

        Only partitions named by the store (`positions_pYYYYMMDD`) are considered.
        """
        async with self._connection() as conn, conn.transaction():
            await conn.execute(TRANSACTION_LOCK_SQL, PARTITIONS_LOCK_KEY)
            names = [record["relname"] for record in await conn.fetch(LIST_PARTITIONS_SQL)]
            old = [
                name
                for name in names
                if (day := _partition_day(name)) is not None and day < cutoff_day
            ]
            for name in old:
                await conn.execute(DROP_PARTITION_SQL.format(name=name))
        self._partition_days = {day for day in self._partition_days if day >= cutoff_day}
        if old:
            logger.info("dropped history partitions %s", ", ".join(old))
        return old

    async def apply_retention(self, retention_days: int, now_s: float) -> list[str]:
        """Drop the history partitions all of whose rows are older than `retention_days` days.

        A day's partition goes once its end is at least `retention_days` days before `now_s`:
        with 7 days, at any time on 10 May the partitions up to 2 May are dropped.
        """
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        cutoff = _timestamptz(now_s - retention_days * 86_400.0)
        async with self._connection() as conn:
            await conn.execute(stop_events_sql.DELETE_BEFORE_SQL, cutoff)
        return await self.drop_partitions_before(cutoff.date())

    # --- reading ------------------------------------------------------------------------------

    async def latest(
        self,
        *,
        route_ids: Collection[str] | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        since_s: float | None = None,
    ) -> list[VehicleRow]:
        """Each vehicle's newest stored position, by vehicle id.

        `bbox` is (min_lon, min_lat, max_lon, max_lat) on the reported position; a min_lon larger
        than max_lon crosses the antimeridian. `since_s` keeps vehicles heard from since then.
        """
        if bbox is not None and bbox[1] > bbox[3]:
            raise ValueError(f"bbox {bbox}: min_lat is larger than max_lat")
        min_lon, min_lat, max_lon, max_lat = bbox if bbox is not None else (None,) * 4
        async with self._connection() as conn:
            records = await conn.fetch(
                LATEST_SQL,
                None if route_ids is None else list(route_ids),
                min_lon,
                min_lat,
                max_lon,
                max_lat,
                None if since_s is None else _timestamptz(since_s),
            )
        return [_vehicle_row(record) for record in records]

    async def trail(self, vehicle_id: str, *, since_s: float, limit: int = 500) -> list[VehicleRow]:
        """The vehicle's newest `limit` positions since `since_s`, oldest first."""
        async with self._connection() as conn:
            records = await conn.fetch(TRAIL_SQL, vehicle_id, _timestamptz(since_s), limit)
        return [_vehicle_row(record) for record in records]

    async def history(
        self,
        *,
        start_s: float,
        end_s: float,
        vehicle_id: str | None = None,
        route_ids: Collection[str] | None = None,
        limit: int = 100_000,
    ) -> list[VehicleRow]:
        """Positions observed in [start_s, end_s), oldest first, at most `limit` of them."""
        arguments: list[object] = [
            _timestamptz(start_s),
            _timestamptz(end_s),
            None if route_ids is None else list(route_ids),
            limit,
        ]
        sql = HISTORY_SQL
        if vehicle_id is not None:
            sql = HISTORY_OF_VEHICLE_SQL
            arguments.append(vehicle_id)
        async with self._connection() as conn:
            records = await conn.fetch(sql, *arguments)
        return [_vehicle_row(record) for record in records]

    async def stop_events(
        self,
        *,
        start_s: float,
        end_s: float,
        stop_id: str | None = None,
        vehicle_id: str | None = None,
        trip_id: str | None = None,
        route_ids: Collection[str] | None = None,
        limit: int = 10_000,
    ) -> list[StopEvent]:
        """Stop events in [start_s, end_s) (by arrival, else departure), oldest first."""
        async with self._connection() as conn:
            records = await conn.fetch(
                stop_events_sql.QUERY_SQL, _timestamptz(start_s), _timestamptz(end_s), stop_id,
                vehicle_id, trip_id, None if route_ids is None else list(route_ids), limit,
            )  # fmt: skip
        return [stop_events_sql.event_of(record) for record in records]

    async def history_bounds(self) -> tuple[float, float] | None:
        """The first and last stored observation times, or None when the history is empty."""
        async with self._connection() as conn:
            record = await conn.fetchrow(HISTORY_BOUNDS_SQL)
        if record is None or record[0] is None:
            return None
        return record[0].timestamp(), record[1].timestamp()


@contextlib.asynccontextmanager
async def open_store(
    dsn: str, *, min_size: int = 1, max_size: int = 4, apply_migrations: bool = True
) -> AsyncIterator[Store]:
    """`Store.open` as a context manager that closes the store on exit."""
    store = await Store.open(
        dsn, min_size=min_size, max_size=max_size, apply_migrations=apply_migrations
    )
    try:
        yield store
    finally:
        await store.close()
