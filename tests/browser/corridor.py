"""A second tracker for the browser tests: a timetabled corridor and a frequency line, with the
simulator's operations cases, lived in accelerated time then in real time.

Run as ``python -m tests.browser.corridor --folder DIR --port P --broker-url URL
--database-url URL``. It writes the feed (`corridor_feed`), simulates the morning
(`simulate_morning`: a bus that stops reporting, a cancelled trip, a detour), writes the
simulator's ground truth to ``DIR/truth.json``, makes an operator account (`operator`, its
password in ``DIR/operator-password``), and serves the real app
(`tracker.app.create_app`, its engine in its own process) on uvicorn while it publishes every
ping over MQTT when the service clock reaches its send time.

The scenarios are placed so that their alerts are open together, a few minutes of real time:
the morning is simulated in pieces (per route and window, all with the same seed, so a bus's
pings are the same whichever piece makes them), and a scenario's piece is the window in which
the only trips it can pick are the ones wanted (`simulator.scenarios` picks among the trips that
lie in the window, never two next to each other): on route C the 07:12 trip is cancelled, so the
bus behind it runs with a gap twice the headway ahead of it; on route F the bus of the 07:06
departure stops reporting early in its trip and the 07:18 one takes a long detour from near its
start (or the other way round, whichever the draw gives: `simulate_morning` then tries the next
seed, until the alerts line up).

The service clock (`MorningClock`) runs `FAST` times real time from the window's start until
`slow_at_s` (just before the last of those alerts opens), then at real time, so the pages see
an ordinary live service from then on; every alert stays open at least `OPEN_FOR_S` of real
time after `slow_at_s`. ``truth.json`` holds ``slow_at_s``, ``open_until_s`` (the first of
those alerts to close) and the truth rows (`simulator.scenarios.ScenarioTruth`).

Route "C" (timetabled): 6 km straight east of the origin, stops C0..C15 every 400 m, trips every
6 min from 07:00 to 09:30, 22 min each (as `tests.unit.test_operations.corridor_feed`).
Route "F" (frequency-based): the same 2 km to the north, stops F0..F15, one trip "F_0700" with
frequencies.txt 07:00–09:30, headway 360 s, exact_times 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np

from simulator.day import SimPing
from simulator.scenarios import ScenarioConfig, ScenarioError, ScenarioTruth, simulate_day
from tests import feeds
from tracker.core.network import Network

WEDNESDAY = dt.date(2026, 3, 4)
START_S, END_S = 6.67 * 3600, 9.5 * 3600  # the simulated window, from the day's origin
LENGTH_M, STOP_EVERY_M, TRIP_S = 6000, 400, 22 * 60
HEADWAY_S = 360
FAST = 60.0  # simulated seconds per real second, until the clock slows down
SEED = 3  # the first seed tried
SEEDS_TRIED = 20
# Where the scenarios go: (route, the first departure they may pick, how many trips from it,
# the kinds). Two kinds on one route take two trips that are not next to each other.
CANCELLED_S = 7 * 3600 + 12 * 60
PLACES: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("C", CANCELLED_S, 1, ("cancelled-trip",)),
    ("F", CANCELLED_S - HEADWAY_S, 3, ("stop-reporting", "detour")),
)
SCENARIO_CONFIG = ScenarioConfig(lead_in_s=60.0, silent_at_share=0.1, detour_at_share=0.05,
                                 detour_length_m=(3000.0, 3500.0))  # fmt: skip
SLACK_S = 300.0  # a scenario's window ends this long after its last trip's scheduled end
# The tracker's thresholds (tracker.core.operations.OperationsConfig), with a margin for its
# assessments every few seconds and the buses' 10 s reports:
GHOST_AFTER_S = 300.0 + 30.0  # a trip with no bus, after its scheduled departure
SILENT_AFTER_S = 360.0 + 40.0  # a bus not heard from since
SILENT_LISTED_S = 120.0  # a silent bus is listed until its trip should have ended, and this more
DETOUR_AFTER_S = 60.0  # three fixes off the shape
GAP_AFTER_S = 120.0  # after the departure of the trip behind a cancelled one: it is under way
OPEN_FOR_S = 300.0  # every alert is open at least this long after the clock slows down
BEFORE_S = 30.0  # the clock slows down this long before the last alert opens
# Its own topics, so that it shares the tests' broker with the demo tracker and neither hears
# the other's buses.
TOPIC_PREFIX = "browser-corridor/v1/vehicles"


def corridor_feed(folder: Path) -> Path:
    """``browser_corridor.zip``: routes "C" (timetabled) and "F" (frequency), see the module."""
    tables = feeds.weekday_tables()
    first, last = 7 * 3600, int(9.5 * 3600)
    for route_id, north_m, color, name in (
        ("C", 0.0, "1F5FA8", "Corridor (timetabled)"),
        ("F", 2000.0, "2E7D32", "Frequent line"),
    ):
        feeds.add_straight_route(
            tables, route_id, north_m=north_m, length_m=LENGTH_M, stop_every_m=STOP_EVERY_M,
            starts=range(first, last + 1, HEADWAY_S), trip_s=TRIP_S, long_name=name,
            color=color, headsign=f"{route_id} East end",
            headway_until_s=last if route_id == "F" else None,
            headway_s=HEADWAY_S if route_id == "F" else None,
        )  # fmt: skip
    return feeds.write_feed(folder / "browser_corridor.zip", tables)


@dataclasses.dataclass(frozen=True)
class Morning:
    pings: list[SimPing]  # by send time
    truth: list[ScenarioTruth]  # the scenarios' rows, by start
    slow_at_s: float  # the clock slows down then (epoch s)
    open_until_s: float  # the first of the scenarios' alerts closes then


def simulate_morning(network: Network) -> Morning:
    """The morning of `PLACES` (see the module), from the first seed whose alerts line up."""
    problems: list[str] = []
    for seed in range(SEED, SEED + SEEDS_TRIED):
        try:
            morning = _morning(network, seed)
        except ScenarioError as error:
            problems.append(f"seed {seed}: {error}")
            continue
        if morning.open_until_s - morning.slow_at_s >= OPEN_FOR_S + BEFORE_S:
            return morning
        problems.append(f"seed {seed}: the alerts are open together only "
                        f"{morning.open_until_s - morning.slow_at_s - BEFORE_S:.0f} s")  # fmt: skip
    raise ScenarioError("no seed lines the corridor's alerts up: " + "; ".join(problems))


def _morning(network: Network, seed: int) -> Morning:
    origin = network.day_origin(WEDNESDAY)
    pieces: list[tuple[str, float, float, tuple[str, ...]]] = []
    for route_id, first_s, trips, kinds in PLACES:
        start_s = first_s - SCENARIO_CONFIG.lead_in_s
        end_s = first_s + (trips - 1) * HEADWAY_S + TRIP_S + SLACK_S
        pieces += [(route_id, START_S, start_s, ()), (route_id, start_s, end_s, kinds),
                   (route_id, end_s, END_S, ())]  # fmt: skip
    truth: list[ScenarioTruth] = []
    made: list[tuple[tuple[str, ...], list[SimPing]]] = []
    for route_id, start_s, end_s, kinds in pieces:
        day = simulate_day(
            network, np.random.default_rng(seed), WEDNESDAY, scenarios=list(kinds),
            scenario_config=SCENARIO_CONFIG, start_s=start_s, end_s=end_s, route_ids=[route_id],
        )  # fmt: skip
        truth += day.truth
        made.append((kinds, list(day.pings)))
    # The scenarios' buses come from their pieces only (a cancelled trip's bus stays home).
    scenario_buses = {t.vehicle_id for t in truth if t.scenario}
    pings = [p for kinds, found in made for p in found
             if kinds or p.ping.vehicle_id not in scenario_buses]  # fmt: skip
    pings.sort(key=lambda p: p.sent_at)
    truth.sort(key=lambda t: (t.start_s, t.kind, t.vehicle_id))
    opens: list[float] = []
    closes: list[float] = []
    for t in truth:
        scheduled_end_s = origin + _departure_s(t.trip_id, t.vehicle_id) + TRIP_S
        if t.kind == "cancelled-trip":
            opens += [t.start_s + GHOST_AFTER_S, t.start_s + HEADWAY_S + GAP_AFTER_S]
            closes.append(t.end_s)
        elif t.kind == "stop-reporting":
            opens.append(t.start_s + SILENT_AFTER_S)
            closes.append(scheduled_end_s + SILENT_LISTED_S)
        elif t.kind == "detour":
            opens.append(t.start_s + DETOUR_AFTER_S)
            closes.append(t.end_s)
    return Morning(pings, truth, max(opens) - BEFORE_S, min(closes))


def _departure_s(trip_id: str, vehicle_id: str) -> float:
    """A corridor trip's scheduled departure from its bus's name ("bus-C_0706",
    "bus-F_0700-0712": a frequency trip's bus is named for its departure), from the origin."""
    hhmm = vehicle_id.rsplit("-", 1)[1] if trip_id.startswith("F") else trip_id.split("_")[1]
    return int(hhmm[:2]) * 3600 + int(hhmm[2:4]) * 60.0


class MorningClock:
    """`FAST` times real time from `start_s` until `slow_at_s`, then real time; it stands at
    `start_s` until `start` (the app starts up meanwhile, before the first ping is sent)."""

    def __init__(self, start_s: float, slow_at_s: float) -> None:
        self.start_s = start_s
        self.slow_at_s = slow_at_s
        self.start()
        self.started = False

    def start(self) -> None:
        self.started = True
        self.wall_start_s = time.monotonic()
        self.wall_slow_s = self.wall_start_s + (self.slow_at_s - self.start_s) / FAST

    def now(self) -> float:
        if not self.started:
            return self.start_s
        wall = time.monotonic()
        if wall < self.wall_slow_s:
            return self.start_s + (wall - self.wall_start_s) * FAST
        return self.slow_at_s + (wall - self.wall_slow_s)

    def wall_s_until(self, at_s: float) -> float:
        if at_s <= self.slow_at_s:
            return (at_s - self.now()) / FAST if self.now() < self.slow_at_s else at_s - self.now()
        return self.wall_slow_s + (at_s - self.slow_at_s) - time.monotonic()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broker-url", required=True)
    parser.add_argument("--database-url", required=True)
    args = parser.parse_args()

    import uvicorn

    from simulator.publish import MqttPublisher
    from tracker.app import create_app
    from tracker.demo import operator_account
    from tracker.gtfs.load import load_network
    from tracker.settings import Settings

    feed = corridor_feed(args.folder)
    network = load_network(feed)
    morning = simulate_morning(network)
    origin = network.day_origin(WEDNESDAY)
    clock = MorningClock(origin + START_S, morning.slow_at_s)
    (args.folder / "truth.json").write_text(json.dumps({
        "slow_at_s": morning.slow_at_s,
        "open_until_s": morning.open_until_s,
        "truth": [dataclasses.asdict(t) for t in morning.truth],
    }))  # fmt: skip

    class MorningSettings(Settings):
        def now(self) -> float:
            return clock.now()

    settings = MorningSettings(
        broker_url=args.broker_url,
        database_url=args.database_url,
        gtfs=feed,
        http_port=args.port,
        mqtt_client_id="browser-corridor",
        topic_prefix=TOPIC_PREFIX,
    )
    stop = threading.Event()

    def publish() -> None:
        with MqttPublisher(
            args.broker_url, topic_prefix=TOPIC_PREFIX, connect_timeout_s=30, flush_timeout_s=5
        ) as publisher:
            for sent in morning.pings:
                while not stop.is_set():
                    wait_s = clock.wall_s_until(sent.sent_at)
                    if wait_s <= 0:
                        break
                    publisher.wait(min(wait_s, 0.5))
                if stop.is_set():
                    return
                publisher.publish(sent.ping)
            while not stop.is_set():
                publisher.wait(0.5)

    async def serve() -> None:
        password = await operator_account(args.database_url)
        (args.folder / "operator-password").write_text(password)  # the tests log in with it
        app = create_app(settings, network=network)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", args.port))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, lambda: setattr(server, "should_exit", True))
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        await app.state.ingest.wait_subscribed()
        publisher = threading.Thread(target=publish, daemon=True)
        clock.start()
        publisher.start()
        await serving
        stop.set()
        await asyncio.to_thread(publisher.join, 10)
        listener.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
