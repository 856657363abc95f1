"""Benchmark of arrival predictions on a real day of WMATA bus positions.

    python -m bench.predictions [--data ../shared/data/wmata-bus-2026-02-16] [--every-s 60]

Ground truth: the stop events (`tracker.core.stop_events`) of the agency's pings matched with
their trip ids given (as `bench.matching.run` does). Predictions: the day replayed as the live
service would (`tracker.predict_offline.replay`: trip and route ids hidden, matched live, the
model learning online from the stop events it detects, starting from nothing), every
`--every-s` seconds.

A prediction is compared with the truth of the same stop visit: the vehicle's event on that trip,
service day, stop and stop_sequence; if the vehicle never ran that trip (the live matcher had it
wrong), its first visit of that stop and stop_sequence from 2 minutes before the prediction on.
At a trip's first stop the time compared is the departure, elsewhere the arrival. Horizon buckets
are by the true time to arrival; predictions of visits the truth has before the prediction was
made (the live state was behind) are counted apart.

Baseline "schedule + current delay": the scheduled time plus the vehicle's latest live delay held
constant (a bus not yet gone from its first stop counts as on time if early), never before the
prediction time. Its p10–p90 range is calibrated like the model's (the quantiles of its own past
errors per horizon bucket), from the truth events known at each prediction time.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import os
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.matching import DEFAULT_DATA, hide_ids, run
from tracker.core.network import Network
from tracker.core.predict import (
    IN_SERVICE_STATES,
    History,
    ModelConfig,
    Prediction,
    Source,
    _Calibration,
    predict,
)
from tracker.core.stop_events import Progress, StopEvent, stop_events
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, read_pings
from tracker.predict_offline import ReplayStats, replay

BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0-5 min", 0.0, 300.0),
    ("5-10 min", 300.0, 600.0),
    ("10-20 min", 600.0, 1200.0),
    ("20+ min", 1200.0, float("inf")),
)


@dataclass
class Scores:
    """Errors of the model and the baseline on the same predictions, for one group."""

    model_err: list[float] = field(default_factory=list)  # predicted - actual
    base_err: list[float] = field(default_factory=list)  # nan where no baseline
    model_in: list[bool] = field(default_factory=list)
    base_in: list[bool] = field(default_factory=list)  # False where no baseline
    learned: list[bool] = field(default_factory=list)

    def add(
        self, model_err: float, base_err: float, model_in: bool, base_in: bool, learned: bool
    ) -> None:
        self.model_err.append(model_err)
        self.base_err.append(base_err)
        self.model_in.append(model_in)
        self.base_in.append(base_in)
        self.learned.append(learned)

    def line(self, name: str) -> str:
        n = len(self.model_err)
        if not n:
            return f"  {name:10s} n=0"
        m = np.abs(np.array(self.model_err))
        b = np.abs(np.array(self.base_err))
        has_base = ~np.isnan(b)
        paired_m = float(m[has_base].mean()) if has_base.any() else float("nan")
        paired_b = float(b[has_base].mean()) if has_base.any() else float("nan")
        gain = 1 - paired_m / paired_b if has_base.any() and paired_b > 0 else float("nan")
        cover = float(np.mean(self.model_in))
        base_cover = float(np.mean(np.array(self.base_in)[has_base])) if has_base.any() else 0
        return (
            f"  {name:10s} n={n:6d}  model MAE {m.mean():6.1f} s (median {np.median(m):5.0f}), "
            f"p10-p90 coverage {cover:6.1%}  |  baseline MAE {paired_b:6.1f} s, coverage "
            f"{base_cover:6.1%} (n={int(has_base.sum())}; model on these {paired_m:6.1f} s: "
            f"{gain:+.1%} lower)  learned {np.mean(self.learned):5.1%}"
        )


def baseline_s(p: Prediction, progress: Progress | None) -> float | None:
    """Schedule + the vehicle's current delay, held constant (see the module)."""
    if p.scheduled_arrival_s is None or progress is None or progress.delay_s is None:
        return None
    delay = progress.delay_s
    if progress.next_stop == 0 or progress.at_stop == 0:
        delay = max(delay, 0.0)  # waiting to leave its first stop: on time if early
    return max(p.scheduled_arrival_s + delay, p.made_at_s)


class Truth:
    """The true stop events, found by visit (see the module)."""

    def __init__(self, events: Sequence[StopEvent]) -> None:
        self.by_trip: dict[tuple[str, str, str, int], float] = {}
        visits: dict[tuple[str, str, str, int], list[float]] = defaultdict(list)
        self.trips_of_vehicle: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for e in events:
            actual = e.departure_s if e.stop_sequence == 0 else e.arrival_s
            if actual is None:
                continue
            self.by_trip[(e.vehicle_id, e.trip_id, e.service_date, e.stop_sequence)] = actual
            visits[(e.vehicle_id, e.service_date, e.stop_id, e.stop_sequence)].append(actual)
            self.trips_of_vehicle[e.vehicle_id].add((e.trip_id, e.service_date))
        self.visits = {k: sorted(v) for k, v in visits.items()}

    def actual(self, p: Prediction) -> tuple[float | None, bool]:
        """(actual time, found by trip) of a prediction's stop visit; None: not in the truth."""
        found = self.by_trip.get((p.vehicle_id, p.trip_id, p.service_date, p.stop_sequence))
        if found is not None:
            return found, True
        if (p.trip_id, p.service_date) in self.trips_of_vehicle.get(p.vehicle_id, ()):
            return None, True  # the vehicle ran that trip, but this stop was not seen
        times = self.visits.get((p.vehicle_id, p.service_date, p.stop_id, p.stop_sequence))
        if not times:
            return None, False
        i = bisect.bisect_left(times, p.made_at_s - 120.0)
        return (times[i], False) if i < len(times) else (None, False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every-s", type=float, default=60.0)
    parser.add_argument(
        "--repeat", type=int, default=5, help="timed passes of the prediction cost (best kept)"
    )
    args = parser.parse_args(argv)
    feed = args.data / "gtfs.zip"
    if not feed.exists():
        print(f"no feed at {feed}; pass --data FOLDER with gtfs.zip and vehicle_positions.csv")
        return 2
    network = load_network(feed)
    pings = [
        p for p in read_pings(args.data / "vehicle_positions.csv") if not isinstance(p, BadRow)
    ]
    last_ping: dict[str, float] = {}
    for ping in pings:
        last_ping[ping.vehicle_id] = max(last_ping.get(ping.vehicle_id, 0.0), ping.timestamp)
    start = time.process_time()
    truth_events = stop_events(network, run(network, pings, 500).matches)
    truth_cpu = time.process_time() - start
    truth = Truth(truth_events)

    config = ModelConfig()
    model = History(network, config)
    stats = ReplayStats()
    base_calibration = _Calibration(config)
    base_pending: list[tuple[float, int, tuple[int, bool], float]] = []  # (known at, ...)
    groups: dict[str, Scores] = defaultdict(Scores)
    counts: Counter[str] = Counter()
    snapshots: list[tuple[float, list[Progress]]] = []
    for tick in replay(network, hide_ids(pings), model=model, every_s=args.every_s, stats=stats):
        if stats.ticks % 30 == 0:
            snapshots.append((tick.made_at_s, tick.vehicles))
        while base_pending and base_pending[0][0] <= tick.made_at_s:
            _, _, bucket, residual = heapq.heappop(base_pending)
            base_calibration.add(bucket, residual)
        progress_of = {v.vehicle_id: v for v in tick.vehicles}
        for p in tick.predictions:
            counts["made"] += 1
            actual, by_trip = truth.actual(p)
            if actual is None:
                late = p.predicted_arrival_s > last_ping.get(p.vehicle_id, 0.0)
                counts["after the vehicle's last ping" if late else "visit not in the truth"] += 1
                continue
            horizon = actual - p.made_at_s
            if horizon < 0:
                counts["visit already passed when predicted"] += 1
                continue
            counts["evaluated"] += 1
            counts["found by vehicle and visit (the live trip was another)"] += not by_trip
            base = baseline_s(p, progress_of.get(p.vehicle_id))
            base_err, base_in = float("nan"), False
            if base is not None:
                base_err = base - actual
                ahead = p.trips_ahead > 0
                q10, q90 = base_calibration.spread(base - p.made_at_s, ahead)
                base_in = base + q10 <= actual <= base + q90
                bucket = base_calibration.bucket(base - p.made_at_s, ahead)
                heapq.heappush(base_pending, (actual, counts["made"], bucket, actual - base))
            model_in = p.p10_arrival_s <= actual <= p.p90_arrival_s
            name = next(b[0] for b in BUCKETS if b[1] <= horizon < b[2])
            learned = p.source is Source.LEARNED
            scope = "next" if p.trips_ahead else "this"
            for group in (f"all {name}", f"{scope} {name}", f"{scope} {p.source.value} {name}"):
                groups[group].add(p.predicted_arrival_s - actual, base_err, model_in, base_in,
                                  learned)  # fmt: skip

    per_prediction = prediction_cost(model, network, snapshots, args.repeat)
    per_event, per_error = learning_cost(network, truth_events)
    print(f"feed: {feed}  pings: {len(pings)}  truth: {len(truth_events)} stop events "
          f"(ids given, {truth_cpu:.1f} s)")  # fmt: skip
    print(f"live replay, ids hidden, every {args.every_s:.0f} s: " + " ".join(stats.lines()))
    print(
        f"cost: {per_prediction:.2f} µs per prediction (best of {args.repeat} passes over "
        f"{len(snapshots)} moments, {sum(len(v) for _, v in snapshots)} vehicle states), "
        f"learning {per_event:.1f} µs per stop event without recorded predictions; with them, "
        f"{per_error:.2f} µs per recorded prediction settled"
    )
    print("predictions: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"model learned {model.events_learned} events, {model.errors_learned} errors")
    for scope, title in (("all", "all"), ("this", "the trip the bus is on"),
                         ("next", "the block's next trips")):  # fmt: skip
        print(f"{title}:")
        for name, _, _ in BUCKETS:
            print(groups[f"{scope} {name}"].line(name))
    print("by source (learned / schedule), the trip the bus is on:")
    for source in ("learned", "schedule"):
        for name, _, _ in BUCKETS:
            print(groups[f"this {source} {name}"].line(f"{source[:5]} {name}"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mb:.0f} MB")
    return 0


def prediction_cost(
    model: History, network: Network, snapshots: list[tuple[float, list[Progress]]], repeat: int
) -> float:
    """CPU µs per prediction of `predict` on the vehicles in service at some moments of the day,
    with the final model: the best of `repeat` passes (other work only slows a pass down)."""
    best = float("inf")
    for _ in range(max(repeat, 1)):
        made = 0
        start = time.process_time()
        for now, vehicles in snapshots:
            for v in vehicles:
                if v.state in IN_SERVICE_STATES and now - v.last_seen_s <= model.config.max_age_s:
                    made += len(predict(model, v, network, now))
        best = min(best, (time.process_time() - start) / max(made, 1))
    return best * 1e6


def learning_cost(network: Network, events: Sequence[StopEvent]) -> tuple[float, float]:
    """CPU µs per stop event learned by a fresh model (no predictions waiting), and per recorded
    prediction settled when its event comes (the same events learned by a model that has 60
    predictions, a minute apart, waiting for each)."""
    model = History(network)
    start = time.process_time()
    model.learn_all(events)
    per_event = (time.process_time() - start) / max(len(events), 1)
    model = History(network)
    waiting = [
        Prediction(e.vehicle_id, e.at_s - 60.0 * k, e.trip_id, e.service_date, e.stop_id,
                   e.stop_sequence, e.at_s, e.at_s, e.at_s, 60.0 * k, Source.LEARNED, 0, None)
        for e in events
        for k in range(60, 0, -1)
    ]  # fmt: skip
    waiting.sort(key=lambda p: p.made_at_s)
    model.record(waiting)
    start = time.process_time()
    model.learn_all(events)
    settled = time.process_time() - start - per_event * len(events)
    return per_event * 1e6, settled / max(model.errors_learned, 1) * 1e6


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
