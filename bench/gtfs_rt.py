"""Benchmark of the GTFS-realtime feeds out: build time and size for 700 and 5,000 vehicles.

    python -m bench.gtfs_rt [--gtfs FEED] [--minutes 20] [--fleet 700,5000]

A simulated morning on the feed (the bundled Nairobi one by default) is matched live by the
service's engine (matcher, stop events, predictions), as `tracker serve` does; then the three
feeds (`tracker.api.gtfs_rt.build_feeds`' parts: VehiclePositions, TripUpdates, Alerts) are
built from its live vehicles and predictions for each fleet size. A fleet larger than the
simulated one repeats its buses under other ids (`id~2`, ...), each with its predictions. Prints,
per fleet: the build time of the three feeds (best of 5, and the median) and each one's size
(protobuf bytes and gzipped, as served to a client that accepts gzip) and entities.
The service builds them at most once a second, whatever the number of pollers, re-encoding only
the vehicles whose state or predictions changed (`FeedBuilder`): the benchmark times a build
from nothing, one a second later with a tenth of the buses changed (they report every 10 s),
and one with nothing changed.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import itertools
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.feed_replay import replay
from simulator.day import busiest_date, simulate
from tracker.core.network import Network
from tracker.core.operations import Alert
from tracker.core.predict import Prediction
from tracker.demo import BUNDLED_FEED
from tracker.export import gtfs_rt
from tracker.gtfs.load import load_network
from tracker.live.vehicle import LiveVehicle

STALE_AFTER_S = 90.0
REPEATS = 5


def live_state(
    feed: Path, minutes: float, vehicles: int
) -> tuple[Network, list[LiveVehicle], dict[str, list[Prediction]], tuple[Alert, ...], float]:
    network = load_network(feed)
    date = busiest_date(network)
    start_s = 8 * 3600.0
    stream = simulate(network, np.random.default_rng(1), date, start_s=start_s,
                      end_s=start_s + 60 * minutes, max_vehicles=vehicles)  # fmt: skip
    pings = sorted((s.ping for s in stream), key=lambda p: p.timestamp)
    *_, last = replay(network, pings, step_s=1.0, every_s=math.inf, final=True)
    now_s = last.now_s
    fresh = [v for v in last.vehicles if now_s - v.observed_at_s <= STALE_AFTER_S]
    predictions = {v.vehicle_id: last.predictions[v.vehicle_id] for v in fresh}
    return network, fresh, predictions, last.alerts, now_s


def fleet_of(
    vehicles: Sequence[LiveVehicle], predictions: dict[str, list[Prediction]], size: int
) -> tuple[list[LiveVehicle], dict[str, list[Prediction]]]:
    out: list[LiveVehicle] = []
    made: dict[str, list[Prediction]] = {}
    for k in itertools.count():
        for v in vehicles:
            if len(out) == size:
                return out, made
            vehicle_id = v.vehicle_id if k == 0 else f"{v.vehicle_id}~{k + 1}"
            out.append(dataclasses.replace(v, vehicle_id=vehicle_id))
            made[vehicle_id] = [dataclasses.replace(p, vehicle_id=vehicle_id)
                                for p in predictions.get(v.vehicle_id, [])]  # fmt: skip
    raise AssertionError("unreachable")


def time_builds(
    network: Network,
    fleet: list[LiveVehicle],
    made: dict[str, list[Prediction]],
    alerts: Sequence[Alert],
    now_s: float,
) -> tuple[dict[str, bytes], list[float], list[float], list[float]]:
    """The feeds' bytes, and the seconds of each build: from nothing, a second later with a tenth
    of the buses changed (new state objects: they report every 10 s), with nothing changed."""
    cold: list[float] = []
    changed: list[float] = []
    warm: list[float] = []
    built: dict[str, tuple[bytes, bytes]] = {}
    moved = [dataclasses.replace(v) if i % 10 == 0 else v for i, v in enumerate(fleet)]
    for _ in range(REPEATS):
        builder = gtfs_rt.FeedBuilder(network)
        for vehicles, times in ((fleet, cold), (moved, changed), (moved, warm)):
            started = time.perf_counter()
            built = builder.build(vehicles, made, alerts, now_s, stale_after_s=STALE_AFTER_S)
            times.append(time.perf_counter() - started)
    return {name: top + entities for name, (top, entities) in built.items()}, cold, changed, warm


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gtfs", type=Path, default=BUNDLED_FEED)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--vehicles", type=int, default=1500, help="buses simulated")
    parser.add_argument("--fleet", default="700,5000", help="fleet sizes to build for")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    network, vehicles, predictions, alerts, now_s = live_state(args.gtfs, args.minutes,
                                                               args.vehicles)  # fmt: skip
    on_trip = sum(v.trip_id is not None for v in vehicles)
    predicted = sum(len(p) for p in predictions.values())
    print(f"{args.gtfs.name}: {len(vehicles)} buses live after {args.minutes:.0f} simulated "
          f"minutes ({on_trip} on a trip, {predicted} stop predictions), matched in "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    for size in (int(n) for n in args.fleet.split(",")):
        fleet, made = fleet_of(vehicles, predictions, size)
        bodies, cold, changed, warm = time_builds(network, fleet, made, alerts, now_s)
        print(f"\n{size} vehicles{' (repeated under other ids)' if size > len(vehicles) else ''}:")
        ms = [(min(t) * 1e3, statistics.median(t) * 1e3) for t in (cold, changed, warm)]
        print(f"  the three feeds built: from nothing {ms[0][0]:.0f} ms (median {ms[0][1]:.0f}); "
              f"a second later with a tenth of the buses changed {ms[1][0]:.0f} ms (median "
              f"{ms[1][1]:.0f}); nothing changed {ms[2][0]:.0f} ms "
              f"(median {ms[2][1]:.0f})")  # fmt: skip
        for name, body in bodies.items():
            entities = len(gtfs_rt.message(body, b"").entity)
            print(f"  {name:18s} {entities:5d} entities, {len(body) / 1e3:7.1f} kB "
                  f"({len(gzip.compress(body)) / 1e3:.1f} kB gzipped)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
