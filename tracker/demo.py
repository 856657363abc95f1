"""`tracker demo`: the whole system on one machine with nothing else installed.

It starts, unless URLs are given, an embedded MQTT broker (amqtt, in this process) and an
embedded PostgreSQL (the real server bundled in the pgserver wheel, in a temporary directory
removed at exit); loads the bundled feed (Nairobi's matatu network, Digital Matatus, CC BY 4.0);
runs the simulator as a child process so buses move; and serves the live map.

The bundled feed's calendar ends in 2020, so the demo runs the service clock on the nearest
date of the feed with today's weekday (`Settings.clock_offset_s`), at the current local time of
day if buses run then, else at 08:00. The map and the API show that clock.

The operator's pages need a login: the demo makes the account ``operator`` with a random
password for each run and prints it with the addresses.

Ctrl-C stops the server, the simulator, the broker and the database, and leaves no process.
So does a SIGKILL (of the demo alone or of its process group): a watchdog process
(tracker/watchdog.py) stops the simulator and the database and removes the temporary directory
once the demo is gone; the broker, in the demo's process, ends with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
import uvicorn

from simulator.day import SimConfig, covered_date, whole_routes
from tracker import accounts
from tracker.accounts import Role
from tracker.app import create_app
from tracker.core.network import Network
from tracker.gtfs.load import load_network
from tracker.ingest.broker import embedded_broker
from tracker.settings import Settings
from tracker.store import accounts as stored_accounts
from tracker.store.embedded import embedded_postgres
from tracker.store.postgres import open_store
from tracker.watchdog import watchdog

log = logging.getLogger(__name__)

BUNDLED_FEED = Path(__file__).resolve().parent / "demo_feed" / "nairobi-matatu-2019.zip"
FALLBACK_TIME_OF_DAY_S = 8 * 3600
SIMULATOR_STOP_S = 5.0
DEMO_OPERATOR = "operator"  # the account the demo makes, with a password of its own per run


@dataclass(frozen=True, slots=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    gtfs: Path = BUNDLED_FEED
    vehicles: int = 1500
    interval_s: float = 10.0
    broker_url: str | None = None
    database_url: str | None = None
    simulate: bool = True
    seed: int = 1
    service_date: dt.date | None = None  # run the clock on this date (default: see demo_clock)
    start_s: float | None = None  # ... from this time of day, seconds from the day's origin


@dataclass(frozen=True, slots=True)
class DemoClock:
    """Where the demo's service clock stands: a feed date and a time of day on it."""

    service_date: dt.date
    start_s: float  # seconds from the service day's origin
    offset_s: float  # service clock minus wall clock


def demo_clock(
    network: Network,
    wall_s: float,
    *,
    service_date: dt.date | None = None,
    start_s: float | None = None,
) -> DemoClock:
    """Where the demo clock starts: `service_date` (default: today's weekday on a date the
    feed serves) at `start_s` (default: the current local time if buses run then and through
    the catch-up's 20 minutes before, else 08:00: at 06:05, with service from 06:00, the map
    would show a handful of buses waiting at their terminals)."""
    today = dt.datetime.fromtimestamp(wall_s, ZoneInfo(network.timezone)).date()
    date = service_date or covered_date(network, today)
    if start_s is None:
        start_s = wall_s - network.day_origin(today)
        busy = _running_before(network, date, FALLBACK_TIME_OF_DAY_S)
        running = min(_running_before(network, date, at_s)
                      for at_s in (start_s - CATCH_UP_S + WINDOW_S, start_s))  # fmt: skip
        if running < busy / 4:
            start_s = FALLBACK_TIME_OF_DAY_S
    start_s = float(int(start_s))
    return DemoClock(date, start_s, network.day_origin(date) + start_s - wall_s)


WINDOW_S = 600.0


def _running_before(network: Network, date: dt.date, at_s: float) -> int:
    """How many runs of `date` are on the road at some time in the `WINDOW_S` before `at_s` (a
    window, not a moment: a small network's buses all wait at their terminals now and then)."""
    runs = network.runs
    on = network.active_runs(date) & (runs.start_s <= at_s) & (runs.end_s >= at_s - WINDOW_S)
    return int(np.count_nonzero(on))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# The simulator first plays the 20 minutes before the demo's start at 20 times real time, so the
# tracker has the buses' recent past (headways between buses, stop events for the predictions)
# a minute after the start; the tracker's clock runs as fast meanwhile, so that those pings are
# seen on time (not stale). The catch-up is due to begin a few seconds after the clock is set,
# the time the tracker and the simulator take to start.
CATCH_UP_S = 20 * 60.0
CATCH_UP_SPEED = 20.0
CATCH_UP_STARTS_IN_S = 10.0

NOISY_LOGGERS = ("amqtt", "transitions", "pgserver")  # chatty at INFO: lifecycle lines only


async def run_demo(options: DemoOptions) -> None:
    """Run until Ctrl-C (uvicorn handles the signal), then stop everything in reverse."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    async with contextlib.AsyncExitStack() as stack:
        # First in, last out: after a normal exit it finds everything stopped and removed.
        dog = stack.enter_context(watchdog())
        database_url = options.database_url
        if database_url is None:
            data_dir = Path(tempfile.mkdtemp(prefix="bus-tracker-demo-"))
            dog.remove(data_dir)
            stack.callback(shutil.rmtree, data_dir, True)
            print("starting the embedded PostgreSQL ...", flush=True)
            database_url = await stack.enter_async_context(
                embedded_postgres(data_dir / "pg", watchdog=dog)
            )
        broker_url = options.broker_url
        protocol: Literal["5", "3.1.1"] = "5"
        ack: Literal["stored", "received"] = "stored"
        if broker_url is None:
            broker_url = await stack.enter_async_context(embedded_broker(port=free_port()))
            protocol = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
            ack = "received"  # amqtt waits for each PUBACK (5 s at most) before the next message

        print(f"loading the feed {options.gtfs.name} ...", flush=True)
        network = await asyncio.to_thread(load_network, options.gtfs)
        clock = demo_clock(
            network, time.time(), service_date=options.service_date, start_s=options.start_s
        )
        hhmm = f"{int(clock.start_s // 3600):02d}:{int(clock.start_s % 3600 // 60):02d}"
        # With the simulator's catch-up, the demo clock reaches its start when that has played.
        live_in_s = CATCH_UP_STARTS_IN_S + CATCH_UP_S / CATCH_UP_SPEED if options.simulate else 0.0
        live_at_s = time.time() + live_in_s
        # The simulated city runs some routes in full (their headways are the timetable's) and
        # tracks only those: the others have no bus and are not listed as ghosts.
        routes = await asyncio.to_thread(
            whole_routes, network, np.random.default_rng([options.seed, 1]),
            clock.service_date, max_vehicles=options.vehicles,
            start_s=clock.start_s - CATCH_UP_S, config=SimConfig(interval_s=options.interval_s),
        ) if options.simulate else []  # fmt: skip
        settings = Settings(
            broker_url=broker_url,
            database_url=database_url,
            gtfs=options.gtfs,
            http_host=options.host,
            http_port=options.port,
            mqtt_protocol=protocol,
            mqtt_ack=ack,
            mqtt_client_id=f"bus-tracker-demo-{options.port}",
            clock_offset_s=clock.offset_s - live_in_s,
            clock_fast_until_s=live_at_s if options.simulate else None,
            clock_fast_speed=CATCH_UP_SPEED,
            tracked_routes=",".join(routes),
        )
        password = await operator_account(database_url)
        app = create_app(settings, network=network)
        server = uvicorn.Server(
            uvicorn.Config(app, host=options.host, port=options.port, log_level="warning")
        )
        if options.simulate:
            command = [
                sys.executable, "-m", "simulator", "run", "--gtfs", str(options.gtfs),
                "--date", clock.service_date.strftime("%Y%m%d"), "--start", hhmm,
                "--vehicles", str(options.vehicles), "--routes", ",".join(routes),
                "--interval-s", str(options.interval_s),
                "--speedup", "1", "--seed", str(options.seed), "--broker", broker_url,
                "--catch-up-min", str(CATCH_UP_S / 60), "--catch-up-speed", str(CATCH_UP_SPEED),
                "--start-due-at", f"{live_at_s:.3f}",
                "--mqtt-version", "3.1.1" if protocol == "3.1.1" else "5", "-q",
            ]  # fmt: skip
            simulator = await asyncio.create_subprocess_exec(*command)
            stack.push_async_callback(_stop, simulator)
            dog.stop_process(simulator.pid)
        database = "embedded" if options.database_url is None else "given"
        print(
            f"\nBus tracker demo: http://{options.host}:{options.port}  (API docs at /docs)\n"
            f"  feed: {options.gtfs.name}; demo clock: service day {clock.service_date} "
            f"from {hhmm}\n"
            f"  broker: {broker_url}; database: {database}; "
            f"simulated day: up to {options.vehicles if options.simulate else 0} buses on "
            f"{len(routes)} routes run in full"
            + (
                f", running from {hhmm}; the {CATCH_UP_S / 60:.0f} minutes before play first at "
                f"{CATCH_UP_SPEED:.0f}x, so the clock reaches {hhmm} in {live_in_s:.0f} s\n"
                if options.simulate
                else "\n"
            )
            + f"  operator pages: http://{options.host}:{options.port}/operator, log in as "
            f"{DEMO_OPERATOR!r} with the password {password} (made for this run)\n"
            + "  Ctrl-C stops everything.\n",
            flush=True,
        )
        await server.serve()
    print("demo stopped", flush=True)


async def operator_account(database_url: str, name: str = DEMO_OPERATOR) -> str:
    """An operator account `name` with a new random password (returned, to be printed): made
    in the database, or given a new password if it is there (a database given with
    --database-url keeps it between runs)."""
    password = accounts.new_password()
    password_hash = await asyncio.to_thread(accounts.hash_password, password)
    async with open_store(database_url) as store:
        if not await stored_accounts.set_password(store, name, password_hash):
            await stored_accounts.create(store, name, Role.OPERATOR, password_hash)
    return password


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Stop a child process: it got Ctrl-C with us; else terminate, then kill."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), SIMULATOR_STOP_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
