"""The PostgreSQL store against a real PostgreSQL (a fresh database per test) and the embedded
server that `tracker demo` runs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np
import pytest

from simulator.day import SimConfig, simulate
from tests.integration.servers import free_port
from tracker.core.engine import EngineConfig, Step
from tracker.core.matcher import Matcher, MatcherConfig
from tracker.core.model import Match, Ping, Reason, State, rejected
from tracker.core.network import Network
from tracker.core.stop_events import Observed, StopEvent
from tracker.demo import BUNDLED_FEED
from tracker.errors import StoreError
from tracker.gtfs.load import load_network
from tracker.ingest.queue import AsyncIngestQueue, LatestPerVehicleQueue, Received
from tracker.live.hub import Hub
from tracker.match_worker import InThreadMatcher, MatcherProcess
from tracker.service import Pipeline, StoreWriter
from tracker.store import Store, VehicleRow, mask_password, migrations, open_store, upgrade
from tracker.store.embedded import embedded_postgres
from tracker.store.postgres import HISTORY_SQL, MIGRATIONS_LOCK_KEY
from tracker.wire import encode_ping, position_topic

pytestmark = pytest.mark.integration

MAY_1 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
RECEIVED_S = MAY_1 + 10 * DAY_S


def ping(vehicle_id: str, t: float, lat: float = 33.57, lon: float = -7.59, **hints: str) -> Ping:
    return Ping(
        vehicle_id=vehicle_id,
        timestamp=t,
        lat=lat,
        lon=lon,
        speed_mps=5.0,
        bearing_deg=90.0,
        accuracy_m=8.0,
        route_id=hints.get("route_id"),
        trip_id=hints.get("trip_id"),
    )


def in_service(p: Ping, route_id: str = "R1", state: State = State.IN_SERVICE) -> Match:
    return Match(
        vehicle_id=p.vehicle_id,
        timestamp=p.timestamp,
        state=state,
        route_id=route_id,
        trip_id=f"{route_id}_0615",
        service_date="20240501",
        direction_id=1,
        shape_id=f"{route_id}_shape",
        shape_dist_m=1234.5,
        snapped_lat=p.lat + 1e-5,
        snapped_lon=p.lon - 1e-5,
        offset_m=1.5,
        delay_s=-42.0,
        headway_s=None,
    )


def matched(*pings: Ping, route_id: str = "R1") -> list[tuple[Ping, Match]]:
    return [(p, in_service(p, route_id)) for p in pings]


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[Store]:
    async with open_store(postgres_url) as opened:
        yield opened


async def partitions(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        records = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'positions'::regclass ORDER BY 1"
        )
    finally:
        await conn.close()
    return [record["relname"] for record in records]


def times(rows: Sequence[VehicleRow]) -> list[float]:
    return [row.observed_at_s for row in rows]


# --- migrations -----------------------------------------------------------------------------


async def test_upgrade_applies_each_migration_once(postgres_url: str) -> None:
    names = [migration.name for migration in migrations()]
    assert names[0] == "0001_positions"
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await upgrade(conn) == names
        assert await upgrade(conn) == []
        assert [r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")] == names
    finally:
        await conn.close()


async def test_two_upgrades_at_once_apply_each_migration_once(postgres_url: str) -> None:
    holder, first, second = [await asyncpg.connect(postgres_url) for _ in range(3)]
    try:
        # Hold the migrations lock so that both upgrades are surely waiting at the same time.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK_KEY)
        upgrades = [asyncio.create_task(upgrade(conn)) for conn in (first, second)]
        for _ in range(100):
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            if waiting == 2:
                break
            await asyncio.sleep(0.02)
        assert waiting == 2
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK_KEY)
        results = await asyncio.gather(*upgrades)
        assert sorted(results, key=len) == [[], [m.name for m in migrations()]]
        assert await holder.fetchval("SELECT count(*) FROM schema_migrations") == len(migrations())
    finally:
        for conn in (holder, first, second):
            await conn.close()


async def test_is_ready_once_migrated(postgres_url: str) -> None:
    async with open_store(postgres_url, apply_migrations=False) as store:
        assert not await store.is_ready()
        assert await store.upgrade() == [m.name for m in migrations()]
        assert await store.is_ready()
    async with open_store(postgres_url) as store:  # migrates on open: nothing left to do
        assert await store.upgrade() == []
        assert await store.is_ready()


# --- writing and reading --------------------------------------------------------------------


async def test_a_batch_is_readable_through_latest_trail_and_history(store: Store) -> None:
    pings = [ping("bus1", MAY_1 + 60 * i, lat=33.57 + i * 1e-3, trip_id="given") for i in range(3)]
    pings.append(ping("bus2", MAY_1 + 30, lat=33.6))
    result = await store.write_batch(matched(*pings), received_at_s=RECEIVED_S)
    assert (result.stored, result.duplicates, result.skipped_rejected) == (4, 0, 0)

    expected = VehicleRow(
        vehicle_id="bus1",
        observed_at_s=MAY_1 + 120,
        lat=33.572,
        lon=-7.59,
        bearing_deg=90.0,
        speed_mps=5.0,
        state=State.IN_SERVICE,
        reason=None,
        route_id="R1",
        trip_id="R1_0615",
        service_date="20240501",
        direction_id=1,
        shape_id="R1_shape",
        shape_dist_m=1234.5,
        snapped_lat=33.572 + 1e-5,
        snapped_lon=-7.59 - 1e-5,
        offset_m=1.5,
        delay_s=-42.0,
        headway_s=None,
    )
    latest = await store.latest()
    assert [row.vehicle_id for row in latest] == ["bus1", "bus2"]
    assert latest[0] == expected

    trail = await store.trail("bus1", since_s=MAY_1)
    assert times(trail) == [MAY_1, MAY_1 + 60, MAY_1 + 120]
    assert trail[-1] == expected
    assert times(await store.trail("bus1", since_s=MAY_1, limit=2)) == [MAY_1 + 60, MAY_1 + 120]

    history = await store.history(start_s=MAY_1, end_s=MAY_1 + 120)
    assert [(r.vehicle_id, r.observed_at_s) for r in history] == [
        ("bus1", MAY_1),
        ("bus2", MAY_1 + 30),
        ("bus1", MAY_1 + 60),
    ]
    assert times(await store.history(start_s=MAY_1, end_s=MAY_1 + 1e6, vehicle_id="bus2")) == [
        MAY_1 + 30
    ]
    assert len(await store.history(start_s=MAY_1, end_s=MAY_1 + 1e6, limit=2)) == 2
    assert await store.history_bounds() == (MAY_1, MAY_1 + 120)


async def test_the_raw_fields_and_receive_time_are_stored(store: Store, postgres_url: str) -> None:
    p = ping("bus1", MAY_1 + 0.25, route_id="R9", trip_id="T9")
    # Text PostgreSQL cannot hold, as JSON can carry it: replaced rather than failing the batch.
    odd = ping("bus2", MAY_1, route_id="R\x00", trip_id="T\ud800")
    result = await store.write_batch(matched(p, odd), received_at_s=RECEIVED_S)
    assert result.stored == 2
    conn = await asyncpg.connect(postgres_url)
    try:
        row, odd_row = await conn.fetch(
            "SELECT observed_at, received_at, accuracy_m, route_id_given, trip_id_given "
            "FROM positions ORDER BY vehicle_id"
        )
    finally:
        await conn.close()
    assert row["observed_at"] == datetime(2024, 5, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    assert row["received_at"].timestamp() == RECEIVED_S
    assert (row["accuracy_m"], row["route_id_given"], row["trip_id_given"]) == (8.0, "R9", "T9")
    assert (odd_row["route_id_given"], odd_row["trip_id_given"]) == ("R\ufffd", "T?")


async def test_duplicates_are_stored_once_and_counted(store: Store) -> None:
    first = ping("bus1", MAY_1, lat=33.5)
    again = ping("bus1", MAY_1, lat=34.0)  # same vehicle and time: the first one wins
    nearly = ping("bus1", MAY_1 + 1e-7, lat=35.0)  # the same time once stored (microseconds)
    other = ping("bus2", MAY_1, lat=33.5)
    result = await store.write_batch(matched(first, again, nearly, other), received_at_s=MAY_1)
    assert (result.stored, result.duplicates) == (2, 2)

    later = ping("bus1", MAY_1 + 10)
    result = await store.write_batch(matched(again, later), received_at_s=MAY_1)
    assert (result.stored, result.duplicates) == (1, 1)

    history = await store.history(start_s=MAY_1 - 1, end_s=MAY_1 + 60, vehicle_id="bus1")
    assert [(r.observed_at_s, r.lat) for r in history] == [(MAY_1, 33.5), (MAY_1 + 10, 33.57)]


async def test_latest_only_moves_forward(store: Store) -> None:
    await store.write_batch(matched(ping("bus1", MAY_1 + 100, lat=33.9)), received_at_s=MAY_1)
    # An older batch arrives late: it goes into the history, not into latest.
    late = await store.write_batch(
        matched(ping("bus1", MAY_1 + 50, lat=33.1), ping("bus1", MAY_1 + 60, lat=33.2)),
        received_at_s=MAY_1,
    )
    assert late.stored == 2
    [row] = await store.latest()
    assert (row.observed_at_s, row.lat) == (MAY_1 + 100, 33.9)
    # Within a batch, the newest position is the vehicle's latest whatever the order.
    await store.write_batch(
        matched(ping("bus1", MAY_1 + 300, lat=33.3), ping("bus1", MAY_1 + 200, lat=33.4)),
        received_at_s=MAY_1,
    )
    [row] = await store.latest()
    assert (row.observed_at_s, row.lat) == (MAY_1 + 300, 33.3)
    assert len(await store.trail("bus1", since_s=0)) == 5


async def test_rejected_matches_are_not_stored(store: Store) -> None:
    good = ping("bus1", MAY_1)
    bad = ping("bus1", MAY_1 + 10, lat=95.0)
    off = ping("bus2", MAY_1)
    items = [
        (good, in_service(good)),
        (bad, rejected(bad, Reason.BAD_COORDINATES, "lat 95")),
        (off, replace(in_service(off), state=State.NOT_MATCHED, reason=Reason.NO_SHAPE_NEARBY)),
    ]
    result = await store.write_batch(items, received_at_s=MAY_1)
    assert (result.stored, result.duplicates, result.skipped_rejected) == (2, 0, 1)
    latest = await store.latest()
    assert [(r.vehicle_id, r.observed_at_s, r.state, r.reason) for r in latest] == [
        ("bus1", MAY_1, State.IN_SERVICE, None),
        ("bus2", MAY_1, State.NOT_MATCHED, Reason.NO_SHAPE_NEARBY),
    ]
    only_rejected = await store.write_batch(items[1:2], received_at_s=MAY_1)
    assert (only_rejected.stored, only_rejected.skipped_rejected) == (0, 1)


async def test_latest_filters_by_route_box_and_time(store: Store) -> None:
    await store.write_batch(
        [
            *matched(ping("a", MAY_1, lat=33.5, lon=-7.6), route_id="R1"),
            *matched(ping("b", MAY_1 + 100, lat=33.6, lon=-7.5), route_id="R2"),
            *matched(ping("c", MAY_1 + 200, lat=-17.0, lon=179.5), route_id="R3"),
        ],
        received_at_s=MAY_1,
    )

    async def ids(rows: Awaitable[list[VehicleRow]]) -> list[str]:
        return [row.vehicle_id for row in await rows]

    assert await ids(store.latest()) == ["a", "b", "c"]
    assert await ids(store.latest(route_ids={"R2", "R3"})) == ["b", "c"]
    assert await ids(store.latest(route_ids=[])) == []
    assert await ids(store.latest(bbox=(-7.65, 33.45, -7.55, 33.55))) == ["a"]
    assert await ids(store.latest(bbox=(-8.0, 33.0, -7.0, 34.0), route_ids=["R2"])) == ["b"]
    # A box across the antimeridian: min_lon > max_lon.
    assert await ids(store.latest(bbox=(179.0, -18.0, -179.0, -16.0))) == ["c"]
    assert await ids(store.latest(since_s=MAY_1 + 100)) == ["b", "c"]
    with pytest.raises(ValueError, match="min_lat"):
        await store.latest(bbox=(-8.0, 34.0, -7.0, 33.0))


async def test_history_filters_by_route(store: Store) -> None:
    await store.write_batch(
        [
            *matched(ping("a", MAY_1), ping("a", MAY_1 + 20), route_id="R1"),
            *matched(ping("b", MAY_1 + 10), route_id="R2"),
        ],
        received_at_s=MAY_1,
    )
    rows = await store.history(start_s=MAY_1, end_s=MAY_1 + 60, route_ids=["R1"])
    assert [(r.vehicle_id, r.observed_at_s) for r in rows] == [("a", MAY_1), ("a", MAY_1 + 20)]
    rows = await store.history(start_s=MAY_1, end_s=MAY_1 + 60, vehicle_id="a", route_ids=["R2"])
    assert rows == []


async def test_history_bounds_of_an_empty_history(store: Store) -> None:
    assert await store.history_bounds() is None


# --- partitions and retention ---------------------------------------------------------------


async def test_a_batch_across_midnight_creates_one_partition_per_utc_day(
    store: Store, postgres_url: str
) -> None:
    midnight = MAY_1 + DAY_S
    batch = matched(*(ping("bus1", midnight + dt) for dt in (-90.0, -30.0, 0.0, 30.0)))
    assert (await store.write_batch(batch, received_at_s=midnight)).stored == 4
    assert await partitions(postgres_url) == ["positions_p20240501", "positions_p20240502"]
    rows = await store.history(start_s=midnight - 60, end_s=midnight + 60)
    assert times(rows) == [midnight - 30, midnight, midnight + 30]

    # The planner reads only the partitions of the days asked for.
    conn = await asyncpg.connect(postgres_url)
    try:
        plan = "\n".join(
            record[0]
            for record in await conn.fetch(
                "EXPLAIN " + HISTORY_SQL,
                datetime.fromtimestamp(midnight + 10, UTC),
                datetime.fromtimestamp(midnight + 20, UTC),
                None,
                100,
            )
        )
    finally:
        await conn.close()
    assert "positions_p20240502" in plan
    assert "positions_p20240501" not in plan


async def test_retention_drops_whole_old_days_only(store: Store, postgres_url: str) -> None:
    now_s = MAY_1 + 9 * DAY_S + 3600  # 10 May, 01:00 UTC
    days = [0, 1, 2, 3, 8, 9]  # 1, 2, 3, 4, 9 and 10 May
    batch = matched(*(ping("bus1", MAY_1 + day * DAY_S + 7200) for day in days))
    await store.write_batch(batch, received_at_s=now_s)
    assert len(await partitions(postgres_url)) == 6

    # Seven days back from now is 3 May, 01:00: 1 and 2 May are wholly older, 3 May is not.
    assert await store.apply_retention(7, now_s) == ["positions_p20240501", "positions_p20240502"]
    assert await partitions(postgres_url) == [
        "positions_p20240503",
        "positions_p20240504",
        "positions_p20240509",
        "positions_p20240510",
    ]
    assert await store.apply_retention(7, now_s) == []
    assert await store.history_bounds() == (MAY_1 + 2 * DAY_S + 7200, MAY_1 + 9 * DAY_S + 7200)
    assert await store.drop_partitions_before(date(2024, 5, 4)) == ["positions_p20240503"]
    with pytest.raises(ValueError, match="at least 1"):
        await store.apply_retention(0, now_s)

    # A late ping for a dropped day gets its partition again.
    assert (await store.write_batch(batch[:1], received_at_s=now_s)).stored == 1
    assert "positions_p20240501" in await partitions(postgres_url)


async def test_writes_survive_another_tracker_dropping_a_cached_partition(
    store: Store, postgres_url: str
) -> None:
    await store.write_batch(matched(ping("bus1", MAY_1)), received_at_s=MAY_1)
    async with open_store(postgres_url) as other:
        assert await other.drop_partitions_before(date(2024, 5, 2)) == ["positions_p20240501"]
    # `store` still believes the partition exists.
    result = await store.write_batch(matched(ping("bus1", MAY_1 + 5)), received_at_s=MAY_1)
    assert result.stored == 1
    assert await partitions(postgres_url) == ["positions_p20240501"]


async def test_two_trackers_create_the_same_partitions_at_once(postgres_url: str) -> None:
    async with open_store(postgres_url) as one, open_store(postgres_url) as two:
        batches = [
            matched(
                *(ping(f"{name}{i}", MAY_1 + day * DAY_S) for day in range(5) for i in range(3))
            )
            for name in ("x", "y")
        ]
        results = await asyncio.gather(
            one.write_batch(batches[0], received_at_s=MAY_1),
            two.write_batch(batches[1], received_at_s=MAY_1),
        )
    assert [r.stored for r in results] == [15, 15]
    assert len(await partitions(postgres_url)) == 5


# --- errors ---------------------------------------------------------------------------------


async def test_an_unreachable_database_names_the_url_and_the_setting() -> None:
    url = f"postgresql://tracker:s3cret@127.0.0.1:{free_port()}/tracker"
    with pytest.raises(StoreError) as caught:
        await Store.open(url)
    message = str(caught.value)
    assert f"postgresql://tracker:***@127.0.0.1:{url.split(':')[3]}" in message
    assert "TRACKER_DATABASE_URL" in message
    assert "s3cret" not in message


async def test_a_missing_database_names_it(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    url = urlunsplit(parts._replace(path="/no_such_database"))
    with pytest.raises(StoreError, match=r"no_such_database.*does not exist"):
        await Store.open(url)


async def test_a_malformed_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="mysql://me:\\*\\*\\*@db/x"):
        await Store.open("mysql://me:pw@db/x")


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        (
            "postgresql://postgres:@/tracker?host=/tmp/x",
            "postgresql://postgres:@/tracker?host=/tmp/x",
        ),
        ("host=h password=pw dbname=x", "host=h password=*** dbname=x"),
    ],
)
def test_mask_password(url: str, masked: str) -> None:
    assert mask_password(url) == masked


# --- the embedded server --------------------------------------------------------------------


def process_running(pid: int) -> bool:
    """True while the process exists and is not a zombie (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def socket_path(url: str) -> Path:
    host = urlsplit(url).query.removeprefix("host=")
    return next(Path(host).glob(".s.PGSQL.*"))


async def assert_stopped(data_dir: Path, pid: int, socket: Path, url: str) -> None:
    deadline = time.monotonic() + 10
    while process_running(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not process_running(pid)
    assert not (data_dir / "postmaster.pid").exists()
    assert not socket.exists()
    with pytest.raises(FileNotFoundError):  # the socket is gone
        await asyncpg.connect(url)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory for the embedded server, outside pytest's temporary directories.

    Run as root, pgserver runs postgres as user `pgserver` and opens the parent directories to it;
    but every pytest session starting meanwhile (say, a colleague's) resets pytest's base temporary
    directory to 0700, which would lock postgres out.
    """
    parent = Path(tempfile.mkdtemp(prefix="tracker-test-pg-"))
    try:
        yield parent / "pg"
    finally:
        shutil.rmtree(parent, ignore_errors=True)


async def test_embedded_postgres_serves_and_stops(data_dir: Path) -> None:
    async with embedded_postgres(data_dir) as url:
        assert urlsplit(url).path == "/tracker"
        pid, socket = postmaster_pid(data_dir), socket_path(url)
        assert process_running(pid)
        store = await Store.open(url)
        await store.write_batch(matched(ping("bus1", MAY_1)), received_at_s=MAY_1)
    try:
        await assert_stopped(data_dir, pid, socket, url)
        with pytest.raises(StoreError, match="unavailable"):
            await store.latest()
    finally:
        await store.close()


async def test_embedded_postgres_keeps_data_and_stops_on_cancellation(data_dir: Path) -> None:
    async with embedded_postgres(data_dir) as url, open_store(url) as store:
        await store.write_batch(matched(ping("bus1", MAY_1)), received_at_s=MAY_1)
    # A run that died without cleaning up leaves its pid among pgserver's handles; that must not
    # keep the next run from stopping the server.
    dead = subprocess.Popen(["true"])
    dead.wait()
    handles = data_dir / ".handle_pids.json"
    handles.write_text(f"[{dead.pid}]")

    started: asyncio.Queue[str] = asyncio.Queue()

    async def demo() -> None:
        async with embedded_postgres(data_dir) as url:
            await started.put(url)
            await asyncio.sleep(3600)

    task = asyncio.create_task(demo())
    url = await asyncio.wait_for(started.get(), timeout=60)
    pid, socket = postmaster_pid(data_dir), socket_path(url)
    async with open_store(url) as store:
        assert [row.vehicle_id for row in await store.latest()] == ["bus1"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_stopped(data_dir, pid, socket, url)


# --- overload: superseded pings ---------------------------------------------------------------


async def test_superseded_pings_are_stored_but_never_become_the_latest(store: Store) -> None:
    newest, older = ping("bus-1", MAY_1 + 60), ping("bus-1", MAY_1 + 30)
    superseded = Match("bus-1", older.timestamp, State.NOT_MATCHED, Reason.SUPERSEDED)
    await store.write_batch([*matched(newest), (older, superseded)], received_at_s=RECEIVED_S)
    later = ping("bus-1", MAY_1 + 90)
    await store.write_batch(
        [(later, replace(superseded, timestamp=later.timestamp))], received_at_s=RECEIVED_S
    )
    rows = await store.history(start_s=MAY_1, end_s=MAY_1 + DAY_S)
    assert [(r.observed_at_s, r.reason) for r in rows] == [
        (MAY_1 + 30, Reason.SUPERSEDED),
        (MAY_1 + 60, None),
        (MAY_1 + 90, Reason.SUPERSEDED),
    ]
    [latest] = await store.latest()
    assert (latest.observed_at_s, latest.state) == (MAY_1 + 60, State.IN_SERVICE)


async def test_an_overloaded_pipeline_stores_every_accepted_ping_once(
    store: Store, postgres_url: str
) -> None:
    """The ingest queue supersedes what the tracker cannot match in time: the live view gets each
    vehicle's newest ping only, the database every ping accepted, once. Each message is
    acknowledged once, after its row is in; a dropped one is not."""
    network = load_network(BUNDLED_FEED)
    queue = LatestPerVehicleQueue(4, superseded_capacity=6)
    sent = [ping(f"bus-{n % 2}", MAY_1 + n, lat=-1.28, lon=36.82) for n in range(14)]
    for n, p in enumerate(sent):
        message = Received(position_topic(p.vehicle_id), encode_ping(p), 0.0, ack_id=n)
        assert queue.put(p.vehicle_id, message)
    queued = queue.stats()
    assert (queued.superseded, queued.dropped_superseded, queued.dropped_full) == (10, 4, 0)
    accepted = len(sent) - queued.dropped_superseded

    acked: list[int] = []
    stored_when_acked: list[int] = []

    def on_stored(ack_ids: Sequence[int]) -> None:
        acked.extend(ack_ids)
        stored_when_acked.append(writer.stored)

    writer = StoreWriter(store, write_every_s=0.0, on_stored=on_stored)
    hub = Hub()
    pipeline = Pipeline(
        InThreadMatcher(network, EngineConfig()), writer, hub, clock=lambda: MAY_1 + 60
    )
    writing = asyncio.create_task(writer.run())
    try:
        while len(queue):
            batch = queue.drain(3)
            await pipeline.process(batch.live, batch.superseded)
        assert await writer.flush(10.0)
    finally:
        writing.cancel()
    conn = await asyncpg.connect(postgres_url)
    try:
        stored = await conn.fetch("SELECT vehicle_id, observed_at, reason FROM positions")
    finally:
        await conn.close()
    assert len(stored) == len({(r["vehicle_id"], r["observed_at"]) for r in stored}) == accepted
    assert sum(r["reason"] == "superseded" for r in stored) == 6
    assert pipeline.stats.superseded_stored == 6
    stored_keys = {(r["vehicle_id"], r["observed_at"].timestamp()) for r in stored}
    assert len(acked) == len(set(acked)) == accepted
    assert {(sent[n].vehicle_id, sent[n].timestamp) for n in acked} == stored_keys
    assert all(n > 0 for n in stored_when_acked)  # after the write's rows were counted in
    assert {v: live.observed_at_s for v, live in hub.vehicles().items()} == {
        "bus-0": MAY_1 + 12,
        "bus-1": MAY_1 + 13,
    }


class FailsOnce(InThreadMatcher):
    """The live matcher, with a bug on its first batch (no real input makes it fail)."""

    def __init__(self, network: Network) -> None:
        super().__init__(network, EngineConfig())
        self.failed = False

    async def match_batch(self, pings: Sequence[Ping], now_s: float) -> Step:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the matcher")
        return await super().match_batch(pings, now_s)


async def run_pipeline(pipeline: Pipeline, sent: Sequence[Ping], batch_size: int) -> None:
    """`sent` through an ingest queue and `Pipeline.run`, to the end (`Pipeline.drain`)."""
    queue = AsyncIngestQueue(len(sent))
    running = asyncio.create_task(pipeline.run(queue, max_pings=batch_size, interval_s=0.001))
    writing = asyncio.create_task(pipeline.writer.run())
    try:
        for p in sent:
            queue.put_threadsafe(p.vehicle_id, Received(position_topic(p.vehicle_id),
                                                        encode_ping(p), 0.0))  # fmt: skip
            if len(queue) >= batch_size:
                await asyncio.sleep(0)  # let batches be taken while more arrive
        async with asyncio.timeout(60.0):
            await pipeline.drain(queue)
        assert await pipeline.writer.flush(10.0)
    finally:
        running.cancel()
        writing.cancel()


async def test_the_running_pipeline_answers_as_the_matcher_does_and_stores_all(
    store: Store, postgres_url: str
) -> None:
    """`Pipeline.run` with the matcher in its own process, micro-batches taken as messages
    come: the answers are those of the matcher taking every ping in the order sent, and every
    accepted ping is stored once."""
    network = load_network(BUNDLED_FEED)
    day = datetime(2019, 1, 1, tzinfo=UTC).date()
    sent = [
        s.ping
        for s in simulate(network, np.random.default_rng(5), day, start_s=8 * 3600,
                          end_s=8 * 3600 + 300, config=SimConfig(interval_s=5.0))
    ][:2000]  # fmt: skip
    now_s = max(p.timestamp for p in sent) + 60.0
    expected = Matcher(network, MatcherConfig()).match_batch(sent, now=now_s)
    async with MatcherProcess(network, EngineConfig()) as matcher:
        pipeline = Pipeline(matcher, StoreWriter(store), Hub(), clock=lambda: now_s)
        await run_pipeline(pipeline, sent, batch_size=200)

    assert pipeline.stats.batches >= len(sent) // 200
    assert pipeline.stats.messages == len(sent)
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch("SELECT vehicle_id, observed_at, state, trip_id FROM positions")
    finally:
        await conn.close()
    stored = {(r["vehicle_id"], r["observed_at"].timestamp()): (r["state"], r["trip_id"])
              for r in rows}  # fmt: skip
    answers = {(m.vehicle_id, m.timestamp): (m.state.value, m.trip_id)
               for m in expected if m.state is not State.REJECTED}  # fmt: skip
    assert len(rows) == len(stored) == len(answers)
    assert stored == answers
    assert sum(state == "in_service" for state, _ in stored.values()) > len(stored) / 2


async def test_a_failed_batch_is_counted_and_the_next_ones_go_on(store: Store) -> None:
    network = load_network(BUNDLED_FEED)
    sent = [ping(f"bus-{n % 3}", MAY_1 + n, lat=-1.28, lon=36.82) for n in range(60)]
    pipeline = Pipeline(FailsOnce(network), StoreWriter(store, write_every_s=0.0), Hub(),
                        clock=lambda: MAY_1 + 120)  # fmt: skip
    await run_pipeline(pipeline, sent, batch_size=10)
    lost = pipeline.stats.rejected_by_reason["internal_error"]
    assert 1 <= lost <= 10  # the first batch, and only it
    assert pipeline.writer.stored == len(sent) - lost


# --- revisions (answers settled after the fact) ----------------------------------------------


async def test_revised_answers_replace_the_stored_ones_and_say_when(
    store: Store, postgres_url: str
) -> None:
    first, last = ping("bus-0", MAY_1), ping("bus-0", MAY_1 + 30)
    await store.write_batch(matched(first, last), received_at_s=MAY_1 + 31)
    settled = replace(in_service(first, "R2"), delay_s=415.0)
    never_stored = in_service(ping("bus-9", MAY_1), "R2")
    result = await store.write_batch([], received_at_s=MAY_1 + 200, revised=[settled, never_stored])
    assert (result.stored, result.revised) == (0, 1)
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT observed_at, route_id, trip_id, delay_s, revised_at FROM positions "
            "ORDER BY observed_at"
        )
        latest = await conn.fetchrow("SELECT route_id, revised_at FROM vehicle_latest")
    finally:
        await conn.close()
    assert [(r["route_id"], r["trip_id"], r["delay_s"]) for r in rows] == [
        ("R2", "R2_0615", 415.0),
        ("R1", "R1_0615", -42.0),  # not revised
    ]
    assert rows[0]["revised_at"] is not None
    assert rows[1]["revised_at"] is None
    assert latest is not None
    assert (latest["route_id"], latest["revised_at"]) == ("R1", None)  # the latest was not


async def test_a_revision_of_the_latest_position_revises_the_vehicle_latest_too(
    store: Store, postgres_url: str
) -> None:
    only = ping("bus-0", MAY_1)
    await store.write_batch(matched(only), received_at_s=MAY_1 + 1, revised=[])
    await store.write_batch([], received_at_s=MAY_1 + 200, revised=[in_service(only, "R2")])
    rows = await store.latest()
    assert [(r.vehicle_id, r.route_id) for r in rows] == [("bus-0", "R2")]


async def test_the_writer_stores_a_batch_and_revises_in_one_write(store: Store) -> None:
    writer = StoreWriter(store, write_every_s=0.0)
    early = ping("bus-0", MAY_1)
    writer.submit(matched(early), received_at_s=MAY_1 + 1)
    later = ping("bus-0", MAY_1 + 150)
    writer.submit(matched(later), received_at_s=MAY_1 + 151, revised=[in_service(early, "R2")])
    running = asyncio.create_task(writer.run())
    try:
        assert await writer.flush(10.0)
    finally:
        running.cancel()
    assert (writer.stored, writer.revised) == (2, 1)
    trail = await store.trail("bus-0", since_s=MAY_1 - 1)
    assert [r.route_id for r in trail] == ["R2", "R1"]


async def test_the_pipeline_revises_stored_answers_once_the_other_bus_shows_whose_trip_it_was(
    store: Store, postgres_url: str, tmp_path: Path
) -> None:
    """A late bus seen alone at first is taken for the other block's bus (both buses matched
    by the matcher's own process); once that bus reports, the late bus's first answers are
    revised in the history (`TRACKER_SETTLE_LAG_S`)."""
    from tests import feeds
    from tests.unit.test_blocks import block_of, late_bus, on_time_bus

    network = load_network(feeds.two_directions_feed(tmp_path))
    start_s = network.day_origin(date(2026, 3, 4)) + 6 * 3600 + 14 * 60  # 06:14
    pings = sorted(
        late_bus(network) + [p for p in on_time_bus(network) if p.timestamp >= start_s],
        key=lambda p: p.timestamp,
    )
    clock_s = [pings[0].timestamp]
    config = EngineConfig(matcher=MatcherConfig(settle_lag_s=900.0))
    hub = Hub()
    async with MatcherProcess(network, config) as matcher:
        pipeline = Pipeline(matcher, StoreWriter(store, write_every_s=0.0), hub,
                            clock=lambda: clock_s[0])  # fmt: skip
        writing = asyncio.create_task(pipeline.writer.run())
        try:
            for p in [*pings, replace(pings[-1], timestamp=pings[-1].timestamp + 1200)]:
                clock_s[0] = p.timestamp
                await pipeline.process([Received(position_topic(p.vehicle_id), encode_ping(p), 0)])
            assert await pipeline.writer.flush(10.0)
        finally:
            writing.cancel()
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT observed_at, trip_id, revised_at FROM positions WHERE vehicle_id = 'late' "
            "AND observed_at < $1 ORDER BY observed_at",
            datetime.fromtimestamp(start_s, UTC),
        )
    finally:
        await conn.close()
    assert len(rows) >= 5
    assert all(block_of(network, r["trip_id"]) == "blk1" for r in rows)  # settled: its own
    assert all(r["revised_at"] is not None for r in rows)  # they were blk2's, live
    assert pipeline.stats.revised == pipeline.writer.revised >= len(rows)


# --- stop events -----------------------------------------------------------------------------


def stop_event(stop_sequence: int, arrival_s: float | None, departure_s: float | None,
               vehicle_id: str = "bus-0") -> StopEvent:  # fmt: skip
    return StopEvent(vehicle_id, "R1_0615", "20240501", "R1", 1, f"S{stop_sequence}",
                     stop_sequence, arrival_s, departure_s, MAY_1, MAY_1 + 20, 35.0,
                     Observed.DWELLING)  # fmt: skip


async def test_stop_events_are_stored_once_and_a_second_copy_fills_in_what_was_missing(
    store: Store,
) -> None:
    first = [stop_event(0, None, MAY_1 + 30), stop_event(1, MAY_1 + 100, None)]
    result = await store.write_batch([], received_at_s=MAY_1, stop_events=first)
    assert result.stop_events == 2
    # After a restart: stop 1 seen again with both times, stop 2 new, stop 0 again unchanged.
    again = [stop_event(0, None, MAY_1 + 31), stop_event(1, MAY_1 + 101, MAY_1 + 130),
             stop_event(2, MAY_1 + 200, MAY_1 + 210)]  # fmt: skip
    result = await store.write_batch([], received_at_s=MAY_1 + 300, stop_events=again)
    assert result.stop_events == 1  # only stop 2 is new
    stored = await store.stop_events(start_s=MAY_1 - 10, end_s=MAY_1 + 1000)
    assert [(e.stop_sequence, e.arrival_s, e.departure_s) for e in stored] == [
        (0, None, MAY_1 + 30),  # what was known stays
        (1, MAY_1 + 100, MAY_1 + 130),  # the departure filled in, the arrival kept
        (2, MAY_1 + 200, MAY_1 + 210),
    ]
    only = await store.stop_events(start_s=MAY_1 - 10, end_s=MAY_1 + 1000, stop_id="S1")
    assert [e.stop_id for e in only] == ["S1"]
    assert await store.stop_events(start_s=MAY_1 - 10, end_s=MAY_1 + 1000,
                                   vehicle_id="bus-9") == []  # fmt: skip


async def test_retention_deletes_old_stop_events(store: Store) -> None:
    await store.write_batch([], received_at_s=MAY_1, stop_events=[stop_event(0, MAY_1, MAY_1 + 5)])
    await store.apply_retention(7, now_s=MAY_1 + 6 * DAY_S)
    assert len(await store.stop_events(start_s=0, end_s=MAY_1 + 10 * DAY_S)) == 1
    await store.apply_retention(7, now_s=MAY_1 + 8 * DAY_S)
    assert await store.stop_events(start_s=0, end_s=MAY_1 + 10 * DAY_S) == []
