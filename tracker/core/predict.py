"""Arrival predictions with a p10–p90 range, learned from the stop events the tracker has seen.

Two parts:

- `History`, the model. It learns incrementally from `StopEvent`s (`History.learn`), in bounded
  memory: per stop-to-stop *link* and hour of the service day, the last `window` running times
  (one stop's departure to the next stop's arrival); per stop and hour, the last dwell times;
  per route, how late buses leave their first stop when they are there in time, and how long
  they turn round at a terminal when they arrive late. It also learns its own errors: the
  predictions handed to `History.record` wait for their stop's event, and the error (actual −
  predicted) goes into a bounded window per horizon bucket, from which the ranges are drawn,
  and into the score operators read (`History.accuracy`, `tracker.core.accuracy`).
- `predict(model, progress, network, now_s)`: the arrivals of one vehicle at the remaining stops
  of its trip and of its block's next trips (`Runs.next_in_block`), up to `max_horizon_s` ahead;
  `predict_all` does every vehicle in service of a `StopEventDetector`.

**The point estimate** walks the stops ahead from where the vehicle was last seen
(`tracker.core.stop_events.Progress`): the rest of the current link (in proportion to the
distance left; at a stop, after the rest of its dwell), then stop by stop the dwell and the next
link's running time. Each running time or dwell is the mean of the observations of its hour (with
the hours either side while there are fewer than `min_bin_obs`), shrunk towards the run's own
scheduled time as if the schedule were `prior_weight` more observations. Means, not medians:
these times are skewed (traffic lights, long dwells) and the prediction adds dozens of them up,
and the sum of the medians falls short of the sum (on the WMATA day, 2 minutes short at 30–45
minutes ahead).

With no history that is the schedule shifted by the vehicle's current delay, and the delay
decays only where the schedule has slack: at a stop where the timetable waits, a bus does not
leave before its time, and a block's next trip leaves its first stop at its scheduled time (late
by the learned lateness) or, when the bus gets there late, after the learned turn-round. An
arrival not yet seen is never predicted before `now_s`. On frequency-based runs without exact
times there is no timetable to keep to: running times are learned or, failing that, those of the
trip's template stop times, and a bus at its first stop is taken to leave when it can (now).

At a trip's first stop the time predicted is the departure (the arrival there is the layover
start); elsewhere the arrival.

**The range** is split-conformal, learned online: p10 and p90 are the point estimate plus the
10th and 90th percentiles of the model's own past errors at that horizon (buckets of
`horizon_edges_s`, apart for the trip the bus is on and the block's next trips). The window is
long (`residual_window`): one bus's errors at its stops move together, so a short window holds
the errors of a handful of buses only, and its percentiles are too noisy to cover 80 %. Until a
bucket has `residual_min` errors, its percentiles are blended with a Gaussian spread of
`prior_sigma_s + prior_sigma_per_s * horizon`.

A prediction is `Source.LEARNED` when at least half of the time it adds up (weighted by how much
each part rests on observations rather than on the schedule) was learned, else `Source.SCHEDULE`.

Pure: values in, values out; `now_s` is an argument and nothing reads the clock.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tracker.core.accuracy import Accuracy
from tracker.core.model import State
from tracker.core.network import NO_INDEX, Network
from tracker.core.stop_events import Progress, StopEvent, StopEventDetector

Z_P90 = 1.2815515655446004  # the 90th percentile of the standard normal


class Source(enum.StrEnum):
    """What a prediction rests on."""

    LEARNED = "learned"  # mostly running and dwell times the tracker has seen
    SCHEDULE = "schedule"  # mostly the timetable (or a frequency trip's template times)


@dataclass(frozen=True, slots=True)
class Prediction:
    """When a vehicle should reach a stop, as predicted at `made_at_s` (epoch seconds)."""

    vehicle_id: str
    made_at_s: float
    trip_id: str
    service_date: str  # YYYYMMDD
    stop_id: str
    stop_sequence: int  # index of the stop in the trip's pattern, from 0 (as `StopEvent`)
    predicted_arrival_s: float  # at a trip's first stop: when it leaves
    p10_arrival_s: float
    p90_arrival_s: float
    horizon_s: float  # predicted_arrival_s - made_at_s
    source: Source
    trips_ahead: int  # 0: the trip the vehicle is on; 1: its block's next trip; ...
    scheduled_arrival_s: float | None  # the timetable's time (first stop: departure); None on
    # frequency runs without exact times


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Tuning of the model. Times in seconds."""

    tod_bin_s: float = 3600.0  # running and dwell times are kept per hour of the service day
    window: int = 24  # observations kept per link (or stop) and hour
    min_bin_obs: int = 4  # fewer in the hour: the hours either side are added
    prior_weight: float = 2.0  # the schedule counts as this many observations
    route_window: int = 48  # first-stop departures and turn-rounds kept per route
    default_departure_lateness_s: float = 0.0  # leaving a first stop when there in time
    default_turnaround_s: float = 180.0  # at a terminal between two trips, when late
    ready_before_s: float = 120.0  # there this long before its departure: "there in time"
    max_horizon_s: float = 90 * 60.0
    max_next_trips: int = 2
    max_age_s: float = 300.0  # a vehicle not seen for this long gets no predictions
    default_speed_mps: float = 7.0  # to a first stop not reached yet
    # The ranges.
    horizon_edges_s: tuple[float, ...] = (
        60, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600
    )  # fmt: skip
    residual_window: int = 10_000  # errors kept per horizon bucket
    residual_min: int = 40  # fewer: blended with the prior spread
    prior_sigma_s: float = 30.0
    prior_sigma_per_s: float = 0.12
    record_every_s: float = 55.0  # errors learned from at most one prediction a minute per visit
    pending_max_age_s: float = 4 * 3600.0  # a prediction whose stop is never seen is dropped


@dataclass(frozen=True, slots=True)
class _Plan:
    """What predictions read of one run, as plain lists (built once per run)."""

    trip_id: str
    route_id: str
    stop_ids: tuple[str, ...]
    dist_m: list[float]
    first_departure_s: float  # seconds from the service day's origin
    scheduled_s: list[float]  # per stop: arrival (first stop: departure), from the origin
    departure_s: list[float]
    link_s: list[float]  # scheduled running time of link i (stop i-1 to i; link_s[0] = 0)
    dwell_s: list[float]  # scheduled dwell at stop i
    link_keys: list[tuple[str, str]]  # (stop i-1, stop i); link_keys[0] unused
    exact: bool
    next_run: int


class _Bins:
    """Observations per hour of the service day, a bounded window each, with their running sums
    (a mean is a few look-ups)."""

    __slots__ = ("bins", "sums", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.bins: dict[int, deque[float]] = {}
        self.sums: dict[int, float] = {}

    def add(self, hour: int, value: float) -> None:
        found = self.bins.get(hour)
        if found is None:
            found = self.bins[hour] = deque(maxlen=self.window)
            self.sums[hour] = 0.0
        if len(found) == self.window:
            self.sums[hour] -= found[0]
        found.append(value)
        self.sums[hour] += value

    def mean(self, hour: int, min_obs: int) -> tuple[float, int]:
        """(mean, count) of the hour's observations, with the hours either side while they are
        fewer than `min_obs`; (nan, 0) with none."""
        bins = self.bins
        found = bins.get(hour)
        n = len(found) if found is not None else 0
        total = self.sums[hour] if n else 0.0
        if n < min_obs:
            for h in (hour - 1, hour + 1):
                other = bins.get(h)
                if other:
                    n += len(other)
                    total += self.sums[h]
        return (total / n, n) if n else (math.nan, 0)


class _Errors:
    """A bounded window of errors (a ring buffer in numpy: its percentiles without a copy)."""

    __slots__ = ("count", "next", "values")

    def __init__(self, window: int) -> None:
        self.values = np.empty(window)
        self.count = 0
        self.next = 0

    def __len__(self) -> int:
        return self.count

    def add(self, value: float) -> None:
        self.values[self.next] = value
        self.next = (self.next + 1) % len(self.values)
        self.count = min(self.count + 1, len(self.values))

    def percentiles(self, q: tuple[float, float]) -> tuple[float, float]:
        low, high = np.quantile(self.values[: self.count], q)
        return float(low), float(high)


class _Calibration:
    """The model's past errors per horizon bucket, and the percentiles drawn from them."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.edges = list(config.horizon_edges_s)
        self.errors: dict[tuple[int, bool], _Errors] = {}
        self._cache: dict[tuple[int, bool], tuple[float, float, int]] = {}
        self._fresh: dict[tuple[int, bool], int] = {}  # errors added since the cache was made

    def bucket(self, horizon_s: float, next_trip: bool) -> tuple[int, bool]:
        return (bisect_right(self.edges, horizon_s), next_trip)

    def add(self, bucket: tuple[int, bool], error_s: float) -> None:
        found = self.errors.get(bucket)
        if found is None:
            found = self.errors[bucket] = _Errors(self.config.residual_window)
        found.add(error_s)
        # The percentiles are drawn again once 2 % of the window is new (each draw sorts it).
        fresh = self._fresh.get(bucket, 0) + 1
        if fresh * 50 >= len(found):
            self._cache.pop(bucket, None)
            fresh = 0
        self._fresh[bucket] = fresh

    def spread(self, horizon_s: float, next_trip: bool) -> tuple[float, float]:
        """(q10, q90) of the error (actual − predicted) at this horizon."""
        cfg = self.config
        bucket = (bisect_right(self.edges, horizon_s), next_trip)
        found = self._cache.get(bucket)
        if found is None:
            errors = self.errors.get(bucket)
            if errors is not None and len(errors):
                found = (*errors.percentiles((0.1, 0.9)), len(errors))
            else:
                found = (0.0, 0.0, 0)
            self._cache[bucket] = found
        q10, q90, n = found
        if n >= cfg.residual_min:
            return q10, q90
        sigma = Z_P90 * (cfg.prior_sigma_s + cfg.prior_sigma_per_s * max(horizon_s, 0.0))
        w = n / cfg.residual_min
        return w * q10 - (1 - w) * sigma, w * q90 + (1 - w) * sigma


_Pending = list[tuple[float, float, tuple[int, bool], float, float]]
"""Per stop visit: (made_at, predicted, bucket, p10, p90) of the predictions recorded."""


class History:
    """The arrival model: what the tracker has seen, learned online (see the module)."""

    def __init__(self, network: Network, config: ModelConfig | None = None) -> None:
        self.network = network
        self.config = config or ModelConfig()
        self.links: dict[tuple[str, str], _Bins] = {}
        self.dwells: dict[str, _Bins] = {}
        self.departure_lateness: dict[str, deque[float]] = {}  # per route
        self.turnarounds: dict[str, deque[float]] = {}  # per route
        self.calibration = _Calibration(self.config)
        self.accuracy = Accuracy()  # the recorded predictions' score, for the operators
        self.events_learned = 0
        self.errors_learned = 0
        self._last_event: dict[str, StopEvent] = {}  # per vehicle
        self._pending: dict[tuple[str, str, str, int], _Pending] = {}
        self._plans: dict[int, _Plan] = {}
        self._route_cache: dict[tuple[str, bool], float] = {}
        self._origins: dict[str, float] = {}

    # --- learning ------------------------------------------------------------------------

    def learn(self, event: StopEvent) -> None:
        """Learn from one stop event (a vehicle's events in the order they happened)."""
        cfg = self.config
        self.events_learned += 1
        self._settle(event)
        previous = self._last_event.get(event.vehicle_id)
        self._last_event[event.vehicle_id] = event
        origin = self._origin(event.service_date)
        hour_s = cfg.tod_bin_s
        if (
            previous is not None
            and previous.trip_id == event.trip_id
            and previous.service_date == event.service_date
            and previous.stop_sequence == event.stop_sequence - 1
            and previous.departure_s is not None
            and event.arrival_s is not None
        ):
            key = (previous.stop_id, event.stop_id)
            bins = self.links.get(key)
            if bins is None:
                bins = self.links[key] = _Bins(cfg.window)
            hour = int((previous.departure_s - origin) // hour_s)
            bins.add(hour, max(event.arrival_s - previous.departure_s, 0.0))
        if (
            event.stop_sequence > 0
            and event.arrival_s is not None
            and event.departure_s is not None
        ):
            bins = self.dwells.get(event.stop_id)
            if bins is None:
                bins = self.dwells[event.stop_id] = _Bins(cfg.window)
            hour = int((event.arrival_s - origin) // hour_s)
            bins.add(hour, max(event.departure_s - event.arrival_s, 0.0))
        if event.stop_sequence == 0 and event.departure_s is not None:
            self._learn_departure(event, previous)

    def learn_all(self, events: Iterable[StopEvent]) -> None:
        for event in events:
            self.learn(event)

    def _learn_departure(self, event: StopEvent, previous: StopEvent | None) -> None:
        """A first stop left: how late, when the bus was there in time; how long it turned
        round, when it came (to this stop, or to the end of its trip before) late."""
        cfg = self.config
        assert event.departure_s is not None
        came_at = event.arrival_s
        if (
            previous is not None
            and previous.service_date == event.service_date
            and previous.trip_id != event.trip_id
            and previous.arrival_s is not None
            and previous.stop_sequence == self._last_stop(previous.trip_id)
        ):
            came_at = previous.arrival_s if came_at is None else min(came_at, previous.arrival_s)
        scheduled = event.scheduled_departure_s
        if scheduled is None or came_at is None:
            return
        if came_at <= scheduled - cfg.ready_before_s:
            _append(self.departure_lateness, event.route_id, event.departure_s - scheduled,
                    cfg.route_window)  # fmt: skip
        elif came_at >= scheduled - 60.0:
            _append(self.turnarounds, event.route_id, event.departure_s - came_at,
                    cfg.route_window)  # fmt: skip
        self._route_cache.clear()

    # --- calibration -------------------------------------------------------------------

    def record(self, predictions: Iterable[Prediction]) -> None:
        """Remember predictions, to learn their errors when their stops' events arrive.

        At most one per `record_every_s` per stop visit; those whose event never comes are
        dropped after `pending_max_age_s`."""
        cfg = self.config
        pending = self._pending
        edges = self.calibration.edges
        newest = -math.inf
        for p in predictions:
            key = (p.vehicle_id, p.trip_id, p.service_date, p.stop_sequence)
            entries = pending.get(key)
            if entries is None:
                entries = pending[key] = []
            elif p.made_at_s - entries[-1][0] < cfg.record_every_s or len(entries) >= 128:
                continue
            bucket = (bisect_right(edges, p.horizon_s), p.trips_ahead > 0)
            entries.append((p.made_at_s, p.predicted_arrival_s, bucket, p.p10_arrival_s,
                            p.p90_arrival_s))  # fmt: skip
            newest = max(newest, p.made_at_s)
        # Keys come in time order, so the first holds the oldest prediction.
        while pending:
            entries = pending[next(iter(pending))]
            if entries and entries[0][0] >= newest - cfg.pending_max_age_s:
                break
            del pending[next(iter(pending))]

    def _settle(self, event: StopEvent) -> None:
        """The errors of the recorded predictions of this stop visit."""
        entries = self._pending.pop(
            (event.vehicle_id, event.trip_id, event.service_date, event.stop_sequence), None
        )
        actual = event.departure_s if event.stop_sequence == 0 else event.arrival_s
        if entries is None or actual is None:
            return
        for made_at, predicted, bucket, p10, p90 in entries:
            self.calibration.add(bucket, actual - predicted)
            self.accuracy.add(predicted - made_at, actual - predicted, p10 <= actual <= p90)
        self.errors_learned += len(entries)

    @property
    def pending_predictions(self) -> int:
        """Predictions recorded whose stop has not been seen yet."""
        return sum(len(v) for v in self._pending.values())

    # --- estimates ------------------------------------------------------------------------

    def running_s(
        self, key: tuple[str, str], tod_s: float, scheduled_s: float
    ) -> tuple[float, float]:
        """(running time, share learned) of a link at a time of day (seconds from the service
        day's origin), given the run's scheduled running time."""
        return self._shrunk(self.links.get(key), tod_s, scheduled_s)

    def dwell_s(self, stop_id: str, tod_s: float, scheduled_s: float) -> tuple[float, float]:
        """(dwell, share learned) at a stop at a time of day, given the run's scheduled dwell."""
        return self._shrunk(self.dwells.get(stop_id), tod_s, scheduled_s)

    def _shrunk(self, bins: _Bins | None, tod_s: float, scheduled_s: float) -> tuple[float, float]:
        if bins is None:
            return scheduled_s, 0.0
        cfg = self.config
        mean, n = bins.mean(int(tod_s // cfg.tod_bin_s), cfg.min_bin_obs)
        if n == 0:
            return scheduled_s, 0.0
        w = n / (n + cfg.prior_weight)
        return w * mean + (1 - w) * scheduled_s, w

    def departure_lateness_s(self, route_id: str) -> float:
        """How late a route's buses leave their first stop when they are there in time."""
        return self._route_value(route_id, ready=True)

    def turnaround_s(self, route_id: str) -> float:
        """How long a route's buses take at a terminal before leaving again, when late."""
        return self._route_value(route_id, ready=False)

    def _route_value(self, route_id: str, *, ready: bool) -> float:
        """The median of the route's observations, shrunk towards the default."""
        found = self._route_cache.get((route_id, ready))
        if found is None:
            cfg = self.config
            table = self.departure_lateness if ready else self.turnarounds
            default = cfg.default_departure_lateness_s if ready else cfg.default_turnaround_s
            values = table.get(route_id, ())
            n = len(values)
            found = default
            if n:  # a median: these have outliers (a bus parked down the route, ...)
                found = (n * _median(values) + cfg.prior_weight * default) / (n + cfg.prior_weight)
            self._route_cache[(route_id, ready)] = found
        return found

    # --- lookups --------------------------------------------------------------------------

    def plan(self, run: int) -> _Plan:
        """What predictions read of a run (built on first use)."""
        found = self._plans.get(run)
        if found is None:
            net = self.network
            runs = net.runs
            trip = net.trips[int(runs.trip_idx[run])]
            pattern = net.patterns[int(runs.pattern_idx[run])]
            row = int(runs.row[run])
            stops = pattern.stop_ids
            arrival = pattern.arrival_s[row].tolist()
            departure = pattern.departure_s[row].tolist()
            found = self._plans[run] = _Plan(
                trip_id=trip.trip_id,
                route_id=net.routes[trip.route_idx].route_id,
                stop_ids=stops,
                dist_m=pattern.stop_dist_m.tolist(),
                first_departure_s=departure[0],
                scheduled_s=[departure[0], *arrival[1:]],
                departure_s=departure,
                link_s=[0.0]
                + [max(a - d, 0.0) for a, d in zip(arrival[1:], departure[:-1], strict=True)],
                dwell_s=[max(d - a, 0.0) for a, d in zip(arrival, departure, strict=True)],
                link_keys=[("", stops[0]), *itertools.pairwise(stops)],
                exact=bool(runs.exact_times[run]),
                next_run=int(runs.next_in_block[run]),
            )
        return found

    def _last_stop(self, trip_id: str) -> int:
        trip_idx = self.network.trip_index.get(trip_id)
        if trip_idx is None:
            return -1
        return len(self.network.patterns[self.network.trips[trip_idx].pattern_idx].stop_ids) - 1

    def _origin(self, service_date: str) -> float:
        found = self._origins.get(service_date)
        if found is None:
            day = dt.datetime.strptime(service_date, "%Y%m%d").date()
            found = self._origins[service_date] = self.network.day_origin(day)
        return found


# --- predicting ---------------------------------------------------------------------------


def predict(model: History, progress: Progress, network: Network, now_s: float) -> list[Prediction]:
    """The arrivals of one vehicle at the stops ahead of it, made at `now_s` (see the module)."""
    cfg = model.config
    plan = model.plan(progress.run)
    walk = _Walk(model, progress, now_s, network.day_origin(progress.day))
    n = len(plan.stop_ids)
    k = progress.next_stop
    j = progress.at_stop
    if k >= n:  # at its last stop: on to the block's next trip
        t = progress.arrived_at_s if progress.arrived_at_s is not None else progress.seen_at_s
        more = True
    elif j == 0 or k == 0:  # at its first stop, or on its way there
        ready = progress.seen_at_s
        if j is None:
            ready += max(plan.dist_m[0] - progress.along_m, 0.0) / cfg.default_speed_mps
        t, more = walk.trip(plan, 0, walk.first_departure(plan, ready), 0)
    else:
        if j is not None:  # at a stop: it leaves after its dwell
            arrived = progress.arrived_at_s if progress.arrived_at_s is not None else now_s
            leave = max(walk.leave(plan, j, min(arrived, progress.seen_at_s)), progress.seen_at_s)
            t = walk.run_link(plan, k, leave, 1.0)
        else:  # between two stops: the rest of the link, by the distance left
            span = plan.dist_m[k] - plan.dist_m[k - 1]
            left = (plan.dist_m[k] - progress.along_m) / span if span > 0 else 0.0
            t = walk.run_link(plan, k, progress.seen_at_s, min(max(left, 0.0), 1.0))
        t = max(t, now_s)
        more = t - now_s <= cfg.max_horizon_s
        if more:
            walk.emit(plan, k, t, 0)
            if k + 1 < n:
                t, more = walk.trip(plan, k + 1, walk.leave(plan, k, t), 0)
    for ahead in range(1, cfg.max_next_trips + 1):
        if not more or plan.next_run == NO_INDEX:
            break
        plan = model.plan(plan.next_run)
        ready = t + model.turnaround_s(plan.route_id)
        t, more = walk.trip(plan, 0, walk.first_departure(plan, ready), ahead)
    return walk.out


class _Walk:
    """Adds up the times along the stops ahead of one vehicle (see `predict`)."""

    __slots__ = ("dwells", "edges", "learned_s", "links", "model", "now_s", "origin", "out",
                 "progress", "total_s")  # fmt: skip

    def __init__(self, model: History, progress: Progress, now_s: float, origin: float) -> None:
        self.model = model
        self.progress = progress
        self.now_s = now_s
        self.origin = origin
        self.links = model.links
        self.dwells = model.dwells
        self.learned_s = 0.0  # the time added up, each part weighted by its share learned
        self.total_s = 0.0
        self.out: list[Prediction] = []

    def trip(self, plan: _Plan, first: int, leave_s: float, ahead: int) -> tuple[float, bool]:
        """Emit a trip's stops from `first` on, leaving the stop before (`first` 0: the first
        stop itself) at `leave_s`: (the last time reached, whether still within the horizon)."""
        max_horizon = self.model.config.max_horizon_s
        now = self.now_s
        t = leave_s
        for i in range(first, len(plan.stop_ids)):
            if i > 0:  # leaving the stop before: at `leave_s` (or the first stop's departure),
                # else after its dwell
                leave = t if i == first or i == 1 else self.leave(plan, i - 1, t)
                t = max(self.run_link(plan, i, leave, 1.0), now)
            if t - now > max_horizon:
                return t, False
            self.emit(plan, i, t, ahead)
        return t, True

    def run_link(self, plan: _Plan, i: int, leave_s: float, share: float) -> float:
        """Arrival at stop i, leaving stop i-1 at `leave_s` with `share` of the link to go."""
        scheduled = plan.link_s[i]
        bins = self.links.get(plan.link_keys[i])
        running, learned = scheduled, 0.0
        if bins is not None:
            cfg = self.model.config
            mean, n = bins.mean(int((leave_s - self.origin) // cfg.tod_bin_s), cfg.min_bin_obs)
            if n:
                learned = n / (n + cfg.prior_weight)
                running = learned * mean + (1 - learned) * scheduled
        seconds = running * share
        self.total_s += seconds
        self.learned_s += seconds * learned
        return leave_s + seconds

    def leave(self, plan: _Plan, i: int, arrival_s: float) -> float:
        """When the bus leaves stop i (0 < i) having arrived at `arrival_s`."""
        scheduled = plan.dwell_s[i]
        bins = self.dwells.get(plan.stop_ids[i])
        dwell, learned = scheduled, 0.0
        if bins is not None:
            cfg = self.model.config
            mean, n = bins.mean(int((arrival_s - self.origin) // cfg.tod_bin_s), cfg.min_bin_obs)
            if n:
                learned = n / (n + cfg.prior_weight)
                dwell = learned * mean + (1 - learned) * scheduled
        self.total_s += dwell
        self.learned_s += dwell * learned
        leave = arrival_s + dwell
        if plan.exact and scheduled > 0:  # the timetable waits here: not before its time
            leave = max(leave, self.origin + plan.departure_s[i])
        return leave

    def first_departure(self, plan: _Plan, ready_s: float) -> float:
        """When the bus leaves a trip's first stop, there (or ready) at `ready_s`."""
        if not plan.exact:  # no timetable: it leaves when it can
            return max(ready_s, self.now_s)
        lateness = self.model.departure_lateness_s(plan.route_id)
        return max(ready_s, self.origin + plan.first_departure_s + lateness, self.now_s)

    def emit(self, plan: _Plan, i: int, t: float, ahead: int) -> None:
        now = self.now_s
        q10, q90 = self.model.calibration.spread(t - now, ahead > 0)
        learned = self.total_s > 0 and self.learned_s >= 0.5 * self.total_s
        self.out.append(
            Prediction(  # positional: a dozen a vehicle, every few seconds
                self.progress.vehicle_id,
                now,
                plan.trip_id,
                self.progress.service_date,
                plan.stop_ids[i],
                i,
                t,
                max(min(t + q10, t), now),
                max(t + q90, t),
                t - now,
                _LEARNED if learned else _SCHEDULE,
                ahead,
                self.origin + plan.scheduled_s[i] if plan.exact else None,
            )
        )


_LEARNED, _SCHEDULE = Source.LEARNED, Source.SCHEDULE

IN_SERVICE_STATES = frozenset({State.IN_SERVICE, State.LAYOVER, State.OFF_ROUTE})


def predict_all(
    model: History, detector: StopEventDetector, network: Network, now_s: float
) -> list[Prediction]:
    """`predict` for every vehicle in service: on a trip, its latest answer matched (in
    service, at a layover or off its route) and no older than `ModelConfig.max_age_s`."""
    max_age = model.config.max_age_s
    return [
        p
        for progress in detector.vehicles()
        if progress.state in IN_SERVICE_STATES and now_s - progress.last_seen_s <= max_age
        for p in predict(model, progress, network, now_s)
    ]


def _append(table: dict[str, deque[float]], key: str, value: float, window: int) -> None:
    found = table.get(key)
    if found is None:
        found = table[key] = deque(maxlen=window)
    found.append(value)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
