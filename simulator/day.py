"""A simulated service day: buses drive their blocks' trips along the shapes and send GPS pings.

Pure: everything takes the `Network`, a `numpy.random.Generator`, a service date and a window;
no clock, no I/O. Times inside are seconds from the service day's origin (local noon minus
12 h, as GTFS counts them); a `SimPing` carries epoch seconds.

How a day is made:

1. **Plan** (`plan_buses`): one bus per `block_id` among the runs active on the date, running
   them in order of departure; a run without a block gets a bus of its own. Runs of one block
   that overlap in time (broken data) go to extra buses named "<block>-2", "<block>-3", ...
2. **Drive** (`drive_bus`): the bus shows up at its first stop 2–10 min before departure,
   leaves a little late (sometimes a little early), and runs each trip from its first stop to
   its last along the shape. A lateness target drifts from stop to stop as a bounded random
   walk (a per-trip trend, volatility, a pull back towards about a minute late); the bus drives
   each stretch between stops with trapezoidal speed (accelerate, cruise, brake) at the cruising
   speed that reaches the next stop on that target, within the trip's speed cap. It dwells
   10–40 s at the stops it serves (about a third of the stops is skipped; a stop where the
   schedule itself waits is never skipped, nor left early), stops at traffic lights now and
   then, and recovers lateness at terminals through layover slack (it still takes a minimum
   break). When its next trip starts elsewhere, or more than 40 min later, it goes silent
   (driving there, or resting at the depot) and shows up again before that trip.
3. **Observe** (`simulator.gps`): fixes every `interval_s` on a per-bus grid, with noise,
   outliers, drop-outs, duplicates and late delivery.
4. **Merge** (`simulate`): buses are started lazily and merged by send time on a heap, so a
   whole day streams in little memory.

Randomness: `simulate` spawns one child generator per bus of the whole day (all routes, in plan
order) and each bus one per trip, so a bus's pings do not depend on the window, the route
filter or the vehicle cap: the pings of a window are exactly those of the whole day whose
timestamps fall in it. The same seed gives the same stream.

Truth: every message comes with the bus's true trip, position, distance along the shape and
delay, computed like the tracker's (`tracker.core.network.schedule_at`): observed time minus
the scheduled time at that distance, so a bus waiting at its first stop before departure has
a negative delay. While a bus waits at a terminal its state is "layover": after arriving it
belongs to the trip it finished for up to a minute, then to its next trip.

Live demos: a live tracker rejects timestamps far from its clock, so `simulator run --now`
simulates today's service date from the current local time (`start_s` = now − the day's
origin). When the feed has no service today, it simulates `covered_date` (the nearest date with
service on the same weekday) and passes `time_shift_s` so that the timestamps fall on today at
the same local clock times. Caveat: the tracker matches a ping by its own timestamp against the
feed's calendar, so shifted pings only match if the tracker's feed has service today; and only
one service date is simulated, so just after midnight the previous day's late trips (times past
24:00) are missing.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from simulator.gps import FloatArray, GpsConfig, IntArray, Track, grid_times, observe
from tracker.core.model import Ping
from tracker.core.network import Network, Pattern

DAY_S = 24 * 3600.0
IN_SERVICE = "in_service"
LAYOVER = "layover"
_TOPIC_UNSAFE = re.compile(r"[/+#\s\x00]")
_MIN_DEPART_AFTER_APPEAR_S = 30.0
_SWITCH_AFTER_ARRIVAL_S = 60.0
_HEADING_BASE_M = 3.0


@dataclass(frozen=True, slots=True)
class DriveConfig:
    """How buses drive and keep (or not) to the schedule. Ranges are uniform draws."""

    before_first_s: tuple[float, float] = (120.0, 600.0)  # at the first stop before departing
    after_last_s: tuple[float, float] = (60.0, 300.0)  # at the last stop before going silent
    departure_delay_mean_s: float = 60.0  # exponential, less the early allowance below
    departure_early_max_s: float = 15.0
    min_layover_s: tuple[float, float] = (60.0, 180.0)  # break between two trips at a terminal
    dwell_s: tuple[float, float] = (10.0, 40.0)
    skip_stop_rate: float = 0.3  # of stops where the schedule does not wait
    min_serve_rate: float = 0.3  # fewest stops served when the schedule is tight
    schedule_share: float = 0.9  # a trip is planned to need this share of its scheduled time
    hold_ahead_s: float = 15.0  # a bus ahead of its lateness target by more waits at a stop
    signal_stops_per_km: float = 0.3
    signal_wait_s: tuple[float, float] = (5.0, 40.0)
    accel_mps2: tuple[float, float] = (0.8, 1.3)
    decel_mps2: tuple[float, float] = (1.0, 1.5)
    min_cruise_mps: float = 4.0
    min_cruise_share: float = 0.45  # of the trip's speed cap: slack is spent at stops instead
    cruise_spread: float = 0.15  # σ of log cruise speed around the aimed one, per stretch
    cap_factor: tuple[float, float] = (0.9, 1.15)  # of the mode's typical top speed, per trip
    lateness_bounds_s: tuple[float, float] = (-300.0, 1200.0)
    lateness_typical_s: float = 90.0
    lateness_trend_sd: float = 0.04  # s of lateness per s of schedule, per trip
    lateness_volatility: float = 2.5  # s per √s of schedule
    lateness_reversion_s: float = 3600.0
    join_distance_m: float = 300.0  # a next trip starting this close: the bus waits there,
    max_layover_s: float = 2400.0  # unless it starts later than this: off to the depot
    deadhead_mps: float = 8.0  # straight-line speed driving empty to a trip starting elsewhere

    def __post_init__(self) -> None:
        if not 0.0 <= self.skip_stop_rate < 1.0:
            raise ValueError(f"skip_stop_rate is {self.skip_stop_rate!r}; expected 0 ≤ rate < 1")
        low, high = self.lateness_bounds_s
        if not low <= self.lateness_typical_s <= high:
            raise ValueError(f"lateness_typical_s must lie within lateness_bounds_s {low, high}")
        if self.min_cruise_mps <= 0 or self.accel_mps2[0] <= 0 or self.decel_mps2[0] <= 0:
            raise ValueError("speeds and accelerations must be positive")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything `simulate` can vary besides the window."""

    interval_s: float = 10.0
    drive: DriveConfig = field(default_factory=DriveConfig)
    gps: GpsConfig = field(default_factory=GpsConfig)
    trip_ids_in_pings: bool = False  # the device knows and sends its route and trip ids

    def __post_init__(self) -> None:
        if not (self.interval_s > 0 and math.isfinite(self.interval_s)):
            raise ValueError(f"interval_s is {self.interval_s!r}; expected a positive number")


@dataclass(frozen=True, slots=True)
class BusPlan:
    """A bus and the runs it drives on one service date, in order."""

    vehicle_id: str
    block_id: str  # "" when its run has no block
    runs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RunDrive:
    """How a bus drove one run: legs of constant kind, seconds from the day origin.

    A leg moves `length_m` along the shape from `along0_m` in a trapezoid (accelerate at
    `accel_mps2` to `cruise_mps`, cruise, brake at `decel_mps2` to a stop), or stands
    (`length_m` 0). Legs tile [`start_s`, `end_s`): the bus belongs to this run from
    `start_s` (waiting at the first stop) until `end_s` (the next run, or silence).
    """

    run: int
    start_s: float
    end_s: float
    departure_s: float  # leaves the first stop
    arrival_s: float  # reaches the last stop
    t0_s: FloatArray
    t1_s: FloatArray
    along0_m: FloatArray
    length_m: FloatArray
    cruise_mps: FloatArray
    accel_mps2: FloatArray
    decel_mps2: FloatArray

    def along_at(self, t_s: FloatArray) -> tuple[FloatArray, FloatArray]:
        """True (distance along the shape, speed) at times `t_s` (clamped to the legs)."""
        leg = np.clip(np.searchsorted(self.t0_s, t_s, side="right") - 1, 0, len(self.t0_s) - 1)
        duration = self.t1_s[leg] - self.t0_s[leg]
        tau = np.clip(t_s - self.t0_s[leg], 0.0, duration)
        v, a, b = self.cruise_mps[leg], self.accel_mps2[leg], self.decel_mps2[leg]
        d = self.length_m[leg]
        ta, tb = v / a, v / b
        rest = duration - tau
        accelerating, braking = tau < ta, rest < tb
        s = np.where(
            accelerating,
            0.5 * a * tau**2,
            np.where(braking, d - 0.5 * b * rest**2, 0.5 * a * ta**2 + v * (tau - ta)),
        )
        speed = np.where(accelerating, a * tau, np.where(braking, b * rest, v))
        moving = d > 0
        along = self.along0_m[leg] + np.where(moving, np.clip(s, 0.0, d), 0.0)
        return along, np.where(moving, np.maximum(speed, 0.0), 0.0)


@dataclass(frozen=True, slots=True)
class BusDay:
    plan: BusPlan
    runs: tuple[RunDrive, ...]


@dataclass(frozen=True, slots=True)
class Truth:
    """What really happened when a ping was taken, and what became of the message."""

    vehicle_id: str
    timestamp: float  # epoch seconds, the ping's own
    service_date: str  # YYYYMMDD
    block_id: str
    trip_id: str
    route_id: str
    state: str  # IN_SERVICE or LAYOVER
    lat: float
    lon: float
    shape_dist_m: float
    speed_mps: float
    delay_s: float  # time minus the scheduled time at shape_dist_m
    error_m: float  # distance from the true position to the reported one
    noisy: bool
    outlier: bool
    duplicate: bool
    out_of_order: bool  # older than a ping of the same vehicle sent before it


@dataclass(frozen=True, slots=True)
class SimPing:
    """One message as the device sends it, with its ground truth."""

    ping: Ping
    sent_at: float  # epoch seconds when it leaves the device (≥ ping.timestamp)
    truth: Truth


# --- planning -------------------------------------------------------------------------------


def plan_buses(network: Network, service_date: dt.date) -> list[BusPlan]:
    """The buses of a service date: one per block, else per run; sorted by first departure."""
    active = np.flatnonzero(network.active_runs(service_date))
    runs = network.runs
    by_block: dict[str, list[int]] = {}
    plans: list[BusPlan] = []
    for run in active.tolist():
        pattern = network.patterns[int(runs.pattern_idx[run])]
        if len(pattern.stop_ids) < 2:
            continue
        trip = network.trips[int(runs.trip_idx[run])]
        if _has_block(trip.block_id):
            by_block.setdefault(trip.block_id, []).append(run)
        else:
            plans.append(BusPlan(_solo_vehicle_id(network, run), "", (run,)))
    for block_id, members in by_block.items():
        members.sort(key=lambda r: (runs.start_s[r], r))
        chains: list[list[int]] = []
        for run in members:
            chain = next((c for c in chains if runs.end_s[c[-1]] <= runs.start_s[run]), None)
            if chain is None:
                chains.append([run])
            else:
                chain.append(run)
        for n, chain in enumerate(chains, start=1):
            suffix = "" if n == 1 else f"-{n}"
            plans.append(BusPlan(_safe(f"bus-{block_id}{suffix}"), block_id, tuple(chain)))
    plans.sort(key=lambda p: (float(runs.start_s[p.runs[0]]), p.vehicle_id))
    return plans


def _has_block(block_id: str) -> bool:
    # "<NA>": the loader turns an empty block_id read as a pandas string into this text.
    return block_id not in ("", "<NA>")


def _solo_vehicle_id(network: Network, run: int) -> str:
    trip = network.trips[int(network.runs.trip_idx[run])]
    if math.isnan(float(network.runs.headway_s[run])):
        return _safe(f"bus-{trip.trip_id}")
    start = int(network.runs.start_s[run])
    return _safe(f"bus-{trip.trip_id}-{start // 3600:02d}{start % 3600 // 60:02d}")


def _safe(vehicle_id: str) -> str:
    return _TOPIC_UNSAFE.sub("_", vehicle_id)


# --- driving --------------------------------------------------------------------------------

# Typical top speed (m/s) and hard cap by GTFS route_type (extended types by hundreds).
_BUS = (14.0, 25.0)
_SPEEDS = {0: (12.0, 20.0), 1: (20.0, 25.0), 2: (30.0, 60.0), 4: (10.0, 20.0), 5: (5.0, 8.0)}
_EXTENDED = {1: 2, 2: 2, 4: 1, 9: 0, 10: 4}


def mode_speeds(route_type: int) -> tuple[float, float]:
    """(typical top speed, hard cap) in m/s of a GTFS route_type (extended types too)."""
    if route_type >= 100:
        return _SPEEDS.get(_EXTENDED.get(route_type // 100, 3), _BUS)
    return _SPEEDS.get(route_type, _BUS)


def drive_bus(
    network: Network,
    rng: np.random.Generator,
    plan: BusPlan,
    config: DriveConfig,
    reworks: Mapping[int, RunRework] | None = None,
) -> BusDay:
    """How the bus of `plan` drives its runs (see the module docstring).

    `reworks` (by run index) replace how some runs are driven, after the run's random draws, so
    that the bus's other draws stay the same.
    """
    runs = network.runs
    drives: list[RunLegs] = []
    previous: RunLegs | None = None
    for run in plan.runs:
        pattern = network.patterns[int(runs.pattern_idx[run])]
        row = int(runs.row[run])
        scheduled = float(pattern.departure_s[row, 0])
        show_up = scheduled - rng.uniform(*config.before_first_s)
        if previous is None:
            start = show_up
            earliest = start + _MIN_DEPART_AFTER_APPEAR_S
        else:
            gap_m = _gap_m(network, previous.run, run)
            idle_s = scheduled - previous.arrival_s
            if gap_m <= config.join_distance_m and idle_s <= config.max_layover_s:
                earliest = previous.arrival_s + rng.uniform(*config.min_layover_s)
                start = math.nan  # set below, once the departure is known
            else:
                previous.end_s = previous.arrival_s + rng.uniform(*config.after_last_s)
                start = max(previous.end_s + 1.3 * gap_m / config.deadhead_mps, show_up)
                earliest = start + _MIN_DEPART_AFTER_APPEAR_S
        late = rng.exponential(config.departure_delay_mean_s) - config.departure_early_max_s
        departure = max(scheduled + late, earliest)
        if math.isnan(start) and previous is not None:
            start = previous.arrival_s + min(
                _SWITCH_AFTER_ARRIVAL_S, 0.5 * (departure - previous.arrival_s)
            )
            previous.end_s = start
        route_type = network.routes[int(network.run_route[run])].route_type
        legs = _drive_run(rng, pattern, row, run, start, departure, route_type, config)
        rework = reworks.get(run) if reworks else None
        if rework is not None:
            legs = rework(legs)
        drives.append(legs)
        previous = legs
    if previous is not None:
        previous.end_s = previous.arrival_s + rng.uniform(*config.after_last_s)
    return BusDay(plan, tuple(d.freeze() for d in drives))


def _gap_m(network: Network, run_a: int, run_b: int) -> float:
    """Straight-line distance from the last stop of one run to the first stop of the next."""
    last = network.patterns[int(network.runs.pattern_idx[run_a])]
    first = network.patterns[int(network.runs.pattern_idx[run_b])]
    xa, ya = network.point_at(last.shape_idx, float(last.stop_dist_m[-1]))
    xb, yb = network.point_at(first.shape_idx, float(first.stop_dist_m[0]))
    return math.hypot(xb - xa, yb - ya)


_SHARP_MPS2 = 1e6  # the acceleration of tabulated legs: each is driven at constant speed


@dataclass
class RunLegs:
    """A run's legs while they are being built (see `RunDrive`).

    `tabulated`: the moving legs are short pieces at constant speed (a trajectory sampled
    second by second, see `tabulated_legs`), not trapezoids.
    """

    run: int
    start_s: float
    departure_s: float
    arrival_s: float = math.nan
    end_s: float = math.nan
    legs: list[tuple[float, float, float, float, float]] = field(default_factory=list)
    accel_mps2: float = 1.0
    decel_mps2: float = 1.0
    tabulated: bool = False

    def stand(self, t0: float, t1: float, along: float) -> None:
        if t1 > t0:
            self.legs.append((t0, t1, along, 0.0, 0.0))

    def move(self, t0: float, t1: float, along: float, length: float, cruise: float) -> None:
        self.legs.append((t0, t1, along, length, cruise))

    def freeze(self) -> RunDrive:
        last_along = self.legs[-1][2] + self.legs[-1][3]
        legs = [(self.start_s, self.departure_s, self.legs[0][2], 0.0, 0.0), *self.legs]
        legs.append((self.arrival_s, max(self.end_s, self.arrival_s), last_along, 0.0, 0.0))
        cols = np.array(legs, dtype=np.float64).reshape(-1, 5)
        accel, decel = (
            (_SHARP_MPS2, _SHARP_MPS2) if self.tabulated else (self.accel_mps2, self.decel_mps2)
        )
        return RunDrive(
            run=self.run,
            start_s=self.start_s,
            end_s=self.end_s,
            departure_s=self.departure_s,
            arrival_s=self.arrival_s,
            t0_s=cols[:, 0],
            t1_s=cols[:, 1],
            along0_m=cols[:, 2],
            length_m=cols[:, 3],
            cruise_mps=cols[:, 4],
            accel_mps2=np.full(len(cols), accel),
            decel_mps2=np.full(len(cols), decel),
        )


RunRework = Callable[[RunLegs], RunLegs]
"""Changes how a bus drove one run (`simulator.scenarios`): takes the run's legs as driven,
returns the legs it drives instead (its `start_s` kept; the next run follows from them)."""


def tabulated_legs(run: int, start_s: float, t_s: FloatArray, along_m: FloatArray) -> RunLegs:
    """The legs of a run driven along a sampled trajectory: at `along_m[i]` at time `t_s[i]`
    (both non-decreasing; the first sample is the departure, the last the arrival), standing at
    the first sample from `start_s`."""
    legs = RunLegs(run, start_s, float(t_s[0]), tabulated=True)
    moved = np.diff(along_m)
    for t0, t1, a0, d in zip(
        t_s[:-1].tolist(), t_s[1:].tolist(), along_m[:-1].tolist(), moved.tolist(), strict=True
    ):
        if t1 <= t0:
            continue
        if d > 0:
            legs.move(t0, t1, a0, d, d / (t1 - t0))
        else:
            legs.stand(t0, t1, a0)
    if not legs.legs:
        legs.stand(float(t_s[0]), float(t_s[0]) + 1.0, float(along_m[0]))
    legs.arrival_s = max(float(t_s[-1]), legs.legs[-1][1])
    return legs


def _drive_run(
    rng: np.random.Generator,
    pattern: Pattern,
    row: int,
    run: int,
    start_s: float,
    departure_s: float,
    route_type: int,
    config: DriveConfig,
) -> RunLegs:
    """Drive one run from its first stop (leaving at `departure_s`) to its last."""
    arrival, depart = pattern.arrival_s[row], pattern.departure_s[row]
    dist = pattern.stop_dist_m
    n = len(dist)
    a, b = rng.uniform(*config.accel_mps2), rng.uniform(*config.decel_mps2)
    c = 1 / (2 * a) + 1 / (2 * b)  # a trapezoid at cruise v over d metres takes d/v + c·v
    typical, hard_cap = mode_speeds(route_type)
    trip_cap = typical * rng.uniform(*config.cap_factor)
    target = _lateness_targets(rng, arrival, depart, departure_s - float(depart[0]), config)
    holds = depart > arrival
    holds[0] = holds[-1] = True
    serve_rate = _serve_rate(dist, arrival, depart, holds, c, trip_cap, config)
    trip_cap = min(hard_cap, max(trip_cap, serve_rate[1]))
    served = (rng.random(n) < serve_rate[0]) | holds
    stops = np.flatnonzero(served).tolist()
    dwell = rng.uniform(*config.dwell_s, n)

    legs = RunLegs(run, start_s, departure_s, accel_mps2=a, decel_mps2=b)
    t = departure_s
    for j, k in itertools.pairwise(stops):
        d = float(dist[k] - dist[j])
        # Traffic lights: stops at uniform spots, away from the bus stops.
        lights = rng.poisson(config.signal_stops_per_km * d / 1000) if d > 200 else 0
        spots = np.sort(rng.uniform(60.0, d - 60.0, lights)) if lights else np.zeros(0)
        waits = rng.uniform(*config.signal_wait_s, lights)
        pieces = np.diff(np.concatenate([[0.0], spots, [d]]))
        budget = float(arrival[k]) + target[k] - t - float(waits.sum())
        scheduled = max(float(arrival[k] - depart[j]), 1.0)
        cap = min(hard_cap, max(trip_cap, 1.15 * _cruise_for(d, scheduled, c, hard_cap)))
        floor = max(config.min_cruise_mps, config.min_cruise_share * trip_cap)
        aimed = max(_cruise_for(d, budget, c * len(pieces), cap), floor)
        cruise = min(aimed * math.exp(rng.normal(0.0, config.cruise_spread)), cap)
        along = float(dist[j])
        for i, piece in enumerate(pieces.tolist()):
            if piece > 0 and cruise > 0:
                top = min(cruise, math.sqrt(piece / c))  # too short to reach cruise: brake at once
                duration = piece / top + c * top
                legs.move(t, t + duration, along, piece, top)
                t, along = t + duration, along + piece
            if i < lights:
                legs.stand(t, t + float(waits[i]), along)
                t += float(waits[i])
        if k == n - 1:
            break
        leave = t + float(dwell[k])
        if holds[k]:  # the schedule waits here: never leave early
            leave = max(leave, float(depart[k]))
        else:  # ahead of what the traffic allows: a longer dwell rather than a crawl
            leave = max(leave, float(depart[k]) + target[k] - config.hold_ahead_s)
        legs.stand(t, leave, float(dist[k]))
        t = leave
    if not legs.legs:  # every stop at one spot along the shape
        legs.stand(t, t + float(dwell[0]), float(dist[0]))
        t += float(dwell[0])
    legs.arrival_s = t
    return legs


def _serve_rate(
    dist: FloatArray,
    arrival: FloatArray,
    depart: FloatArray,
    holds: npt.NDArray[np.bool_],
    c: float,
    trip_cap: float,
    config: DriveConfig,
) -> tuple[float, float]:
    """(share of optional stops served, cruise speed needed) for the trip to fit its schedule.

    Schedules come from observed running times, so a bus roughly keeps its schedule: when
    dwelling at most stops would not fit at the trip's speed cap, the bus serves fewer
    (down to `min_serve_rate`), and if even that does not fit it drives faster.
    """
    length = float(dist[-1] - dist[0])
    running = float(arrival[-1] - depart[0]) - float((depart - arrival)[1:-1].sum())
    optional = int((~holds).sum())
    lights = config.signal_stops_per_km * length / 1000
    dwell = sum(config.dwell_s) / 2
    light_wait = sum(config.signal_wait_s) / 2
    fixed = int(holds.sum()) - 2
    serve = 1.0 - config.skip_stop_rate
    needed = 0.0
    while True:
        stops = fixed + serve * optional
        budget = config.schedule_share * running - stops * dwell - lights * light_wait
        needed = _cruise_for(length, budget, c * (stops + 1 + lights), math.inf)
        if needed <= trip_cap or serve <= config.min_serve_rate:
            return serve, needed
        serve = max(serve - 0.15, config.min_serve_rate)


def _cruise_for(d: float, budget_s: float, c: float, cap: float) -> float:
    """Cruise speed covering `d` metres in `budget_s` (time d/v + c·v); `cap` if impossible."""
    if d <= 0:
        return 0.0
    disc = budget_s * budget_s - 4 * c * d
    if budget_s <= 0 or disc < 0:
        return cap
    return (budget_s - math.sqrt(disc)) / (2 * c)


def _lateness_targets(
    rng: np.random.Generator,
    arrival: FloatArray,
    depart: FloatArray,
    initial_s: float,
    config: DriveConfig,
) -> FloatArray:
    """The lateness the bus aims at, stop by stop: a bounded, mean-reverting random walk."""
    low, high = config.lateness_bounds_s
    trend = rng.normal(0.0, config.lateness_trend_sd)
    steps = np.maximum(np.diff(arrival), 1.0) if len(arrival) > 1 else np.zeros(0)
    shocks = rng.standard_normal(len(steps))
    out = np.empty(len(arrival), dtype=np.float64)
    out[0] = lateness = initial_s
    for i, (step, shock) in enumerate(zip(steps.tolist(), shocks.tolist(), strict=True), 1):
        pull = (config.lateness_typical_s - lateness) / config.lateness_reversion_s
        lateness += (trend + pull) * step + config.lateness_volatility * math.sqrt(step) * shock
        lateness = min(max(lateness, low), max(high, initial_s))
        out[i] = lateness
    return out


# --- observing ------------------------------------------------------------------------------


def scheduled_times_s(pattern: Pattern, row: int, along_m: FloatArray) -> FloatArray:
    """`tracker.core.network.schedule_at` for one run at many distances (vectorised)."""
    dists = pattern.stop_dist_m
    arrival, depart = pattern.arrival_s[row], pattern.departure_s[row]
    k = np.searchsorted(dists, along_m, side="right") - 1
    kc = np.clip(k, 0, len(dists) - 2)
    span = dists[kc + 1] - dists[kc]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(span > 0, (along_m - dists[kc]) / span, 0.0)
    between = depart[kc] + frac * (arrival[kc + 1] - depart[kc])
    out = np.where(k < 0, depart[0], np.where(k >= len(dists) - 1, arrival[-1], between))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Window:
    """The simulated window: fixes in [start_s, end_s), seconds from the day's origin."""

    start_s: float
    end_s: float
    origin_s: float  # epoch of the service day's origin, plus the time shift
    service_date: str


@dataclass(frozen=True, slots=True)
class DetourPath:
    """A stretch of a run driven off its shape (`simulator.scenarios`): between `from_m` and
    `to_m` along the shape the bus follows the path (`x_m`, `y_m`, projected; `dist_m` along
    it) instead, in the time it would have taken along the shape (so a little faster)."""

    from_m: float
    to_m: float
    x_m: FloatArray
    y_m: FloatArray
    dist_m: FloatArray

    def place(
        self, along: FloatArray, x: FloatArray, y: FloatArray, heading: FloatArray,
        speed: FloatArray,
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:  # fmt: skip
        """Positions, headings and speeds at `along` with the detour taken."""
        on = (along > self.from_m) & (along < self.to_m)
        if not on.any():
            return x, y, heading, speed
        stretch = self.to_m - self.from_m
        path_m = float(self.dist_m[-1])
        s = (along[on] - self.from_m) / stretch * path_m
        x, y, heading, speed = x.copy(), y.copy(), heading.copy(), speed.copy()
        x[on] = np.interp(s, self.dist_m, self.x_m)
        y[on] = np.interp(s, self.dist_m, self.y_m)
        behind, ahead = (
            np.clip(s - _HEADING_BASE_M, 0, path_m),
            np.clip(s + _HEADING_BASE_M, 0, path_m),
        )
        dx = np.interp(ahead, self.dist_m, self.x_m) - np.interp(behind, self.dist_m, self.x_m)
        dy = np.interp(ahead, self.dist_m, self.y_m) - np.interp(behind, self.dist_m, self.y_m)
        heading[on] = np.where(
            np.hypot(dx, dy) > 0.1, np.degrees(np.arctan2(dx, dy)) % 360.0, np.nan
        )
        speed[on] = speed[on] * (path_m / stretch)
        return x, y, heading, speed


@dataclass(frozen=True, slots=True)
class RunEffects:
    """What happens to one run's fixes besides GPS faults (`simulator.scenarios`): none is sent
    in [silent_from_s, silent_to_s) (seconds from the day's origin), and the detour is taken."""

    silent_from_s: float = math.inf
    silent_to_s: float = math.inf
    detour: DetourPath | None = None


def _run_pings(
    network: Network,
    rng: np.random.Generator,
    bus: BusDay,
    drive: RunDrive,
    phase_s: float,
    window: Window,
    config: SimConfig,
    effects: RunEffects | None = None,
) -> list[tuple[float, Ping, Truth]]:
    """The messages sent while the bus belongs to one run: (sent, ping, truth) in send order."""
    gps = config.gps
    t = grid_times(
        rng, drive.start_s, drive.end_s, interval_s=config.interval_s, phase_s=phase_s,
        jitter_s=gps.jitter_s,
    )  # fmt: skip
    run = drive.run
    pattern = network.patterns[int(network.runs.pattern_idx[run])]
    shape = network.shapes[pattern.shape_idx]
    along, speed = drive.along_at(t)
    x = np.interp(along, shape.dist_m, shape.xy_m[:, 0])
    y = np.interp(along, shape.dist_m, shape.xy_m[:, 1])
    heading = _heading_deg(network, pattern, along)
    if effects is not None and effects.detour is not None:
        x, y, heading, speed = effects.detour.place(along, x, y, heading, speed)
    seen = observe(rng, Track(t, x, y, speed, heading), gps, interval_s=config.interval_s)
    inside = (t[seen.row] >= window.start_s) & (t[seen.row] < window.end_s)
    if effects is not None:
        fix_s = t[seen.row]
        inside &= (fix_s < effects.silent_from_s) | (fix_s >= effects.silent_to_s)
    rows: IntArray = seen.row[inside]
    if len(rows) == 0:
        return []
    ox, oy = seen.x_m[inside], seen.y_m[inside]
    lat, lon = network.unproject(np.concatenate([ox, x[rows]]), np.concatenate([oy, y[rows]]))
    m = len(rows)
    error = np.hypot(ox - x[rows], oy - y[rows])
    delay = t[rows] - scheduled_times_s(pattern, int(network.runs.row[run]), along[rows])
    trip = network.trips[int(network.runs.trip_idx[run])]
    route_id = network.routes[trip.route_idx].route_id
    vehicle_id = bus.plan.vehicle_id
    accuracy = gps.accuracy_m
    hint_route, hint_trip = (route_id, trip.trip_id) if config.trip_ids_in_pings else (None, None)
    shift = window.origin_s
    fix_t = t[rows]
    stood = (fix_t < drive.departure_s) | (fix_t >= drive.arrival_s)
    noisy = gps.noise_m > 0
    out: list[tuple[float, Ping, Truth]] = []
    columns = zip(
        np.round(seen.sent_s[inside] + shift, 3).tolist(),
        np.round(fix_t + shift, 3).tolist(),
        np.round(lat[:m], 7).tolist(),
        np.round(lon[:m], 7).tolist(),
        np.round(lat[m:], 7).tolist(),
        np.round(lon[m:], 7).tolist(),
        np.round(seen.speed_mps[inside], 1).tolist(),
        np.round(seen.bearing_deg[inside]).tolist(),
        np.round(along[rows], 2).tolist(),
        np.round(speed[rows], 2).tolist(),
        np.round(delay, 1).tolist(),
        np.round(error, 2).tolist(),
        seen.outlier[inside].tolist(),
        seen.duplicate[inside].tolist(),
        stood.tolist(),
        strict=True,
    )
    for row in columns:
        (sent, timestamp, p_lat, p_lon, lat_, lon_, v, bearing, dist, true_v, late, err,
         outlier, dup, standing) = row  # fmt: skip
        ping = Ping(
            vehicle_id=vehicle_id,
            timestamp=timestamp,
            lat=p_lat,
            lon=p_lon,
            speed_mps=v,
            bearing_deg=None if math.isnan(bearing) else bearing,
            accuracy_m=accuracy,
            route_id=hint_route,
            trip_id=hint_trip,
        )
        truth = Truth(
            vehicle_id=vehicle_id,
            timestamp=timestamp,
            service_date=window.service_date,
            block_id=bus.plan.block_id,
            trip_id=trip.trip_id,
            route_id=route_id,
            state=LAYOVER if standing else IN_SERVICE,
            lat=lat_,
            lon=lon_,
            shape_dist_m=dist,
            speed_mps=true_v,
            delay_s=late,
            error_m=err,
            noisy=noisy,
            outlier=outlier,
            duplicate=dup,
            out_of_order=False,  # decided per vehicle, in send order, by `_bus_pings`
        )
        out.append((sent, ping, truth))
    return out


def _heading_deg(network: Network, pattern: Pattern, along: FloatArray) -> FloatArray:
    """Direction of travel along the shape at `along` (NaN on a run of no length)."""
    lo, hi = float(pattern.stop_dist_m[0]), float(pattern.stop_dist_m[-1])
    shape = network.shapes[pattern.shape_idx]
    behind = np.clip(along - _HEADING_BASE_M, lo, hi)
    ahead = np.clip(along + _HEADING_BASE_M, lo, hi)
    dx = np.interp(ahead, shape.dist_m, shape.xy_m[:, 0]) - np.interp(
        behind, shape.dist_m, shape.xy_m[:, 0]
    )
    dy = np.interp(ahead, shape.dist_m, shape.xy_m[:, 1]) - np.interp(
        behind, shape.dist_m, shape.xy_m[:, 1]
    )
    heading = np.degrees(np.arctan2(dx, dy)) % 360.0
    return np.where(np.hypot(dx, dy) > 0.1, heading, np.nan)


def _bus_pings(
    network: Network,
    rngs: tuple[np.random.Generator, np.random.Generator],
    plan: BusPlan,
    window: Window,
    config: SimConfig,
    bus: BusDay | None = None,
    effects: Mapping[int, RunEffects] | None = None,
) -> Iterator[SimPing]:
    """One bus's messages in send order; its runs are observed one at a time.

    `rngs`: the bus's (driving, GPS) generators; `bus`: how it drives, if already known (else
    driven here); `effects`: per run index, see `RunEffects`.
    """
    drive_rng, gps_rng = rngs
    if bus is None:
        bus = drive_bus(network, drive_rng, plan, config.drive)
    phase_s = float(gps_rng.uniform(0.0, config.interval_s))
    run_rngs = gps_rng.spawn(len(bus.runs))
    margin = config.interval_s
    pending: list[tuple[float, int, Ping, Truth]] = []
    newest = -math.inf
    count = 0
    for i, (drive, run_rng) in enumerate(zip(bus.runs, run_rngs, strict=True)):
        if drive.end_s + margin > window.start_s and drive.start_s - margin < window.end_s:
            run_effects = effects.get(drive.run) if effects else None
            for sent, ping, truth in _run_pings(
                network, run_rng, bus, drive, phase_s, window, config, run_effects
            ):
                heapq.heappush(pending, (sent, count, ping, truth))
                count += 1
        # Nothing later can be sent before the next run's first fix (jitter ≤ interval / 4).
        upto = math.inf
        if i + 1 < len(bus.runs):
            upto = bus.runs[i + 1].start_s - margin / 2 + window.origin_s
        while pending and pending[0][0] < upto:
            sent, _, ping, truth = heapq.heappop(pending)
            late = ping.timestamp < newest
            newest = max(newest, ping.timestamp)
            if late:
                truth = replace(truth, out_of_order=True)
            yield SimPing(ping=ping, sent_at=sent, truth=truth)


# --- the day --------------------------------------------------------------------------------


def simulate(
    network: Network,
    rng: np.random.Generator,
    service_date: dt.date,
    *,
    start_s: float = 0.0,
    end_s: float = 2 * DAY_S,
    config: SimConfig | None = None,
    route_ids: Collection[str] | None = None,
    max_vehicles: int | None = None,
    time_shift_s: float = 0.0,
) -> Iterator[SimPing]:
    """The messages of the buses of `service_date` whose fixes fall in [start_s, end_s).

    `start_s`/`end_s` are seconds from the service day's origin (so 25:30 is 91800);
    `time_shift_s` is added to every timestamp (to replay a day at another date, see
    `covered_date`). Messages come in the order they are sent (`SimPing.sent_at`); timestamps
    are in that order too except for out-of-order ones. `route_ids` keeps the buses that serve
    any of those routes (the whole bus, its other routes too); `max_vehicles` keeps that many of
    the buses running in the window, drawn at random (`whole_routes` picks routes to run in
    full instead). `rng` should be fresh from
    `numpy.random.default_rng(seed)`: the same seed gives the same messages.

    A day with operations scenarios (a late bus, a cancelled trip, ...) and their ground truth:
    `simulator.scenarios.simulate_day`.
    """
    return plan_day(
        network, rng, service_date, start_s=start_s, end_s=end_s, config=config,
        route_ids=route_ids, max_vehicles=max_vehicles, time_shift_s=time_shift_s,
    ).stream()  # fmt: skip


def plan_day(
    network: Network,
    rng: np.random.Generator,
    service_date: dt.date,
    *,
    start_s: float = 0.0,
    end_s: float = 2 * DAY_S,
    config: SimConfig | None = None,
    route_ids: Collection[str] | None = None,
    max_vehicles: int | None = None,
    time_shift_s: float = 0.0,
) -> DayPlan:
    """The buses of a window, chosen but not yet driven: `simulate` with the same arguments is
    `plan_day(...).stream()`."""
    config = config or SimConfig()
    plans = plan_buses(network, service_date)
    select_rng, *bus_rngs = rng.spawn(len(plans) + 1)
    if route_ids is not None:
        wanted = {network.route_index[r] for r in route_ids if r in network.route_index}
        route_of = network.run_route
        keep = [any(int(route_of[r]) in wanted for r in p.runs) for p in plans]
    else:
        keep = [True] * len(plans)
    earliest = [_earliest_s(network, p, config) for p in plans]
    latest = [_latest_s(network, p, config) for p in plans]
    chosen = [
        i for i in range(len(plans)) if keep[i] and latest[i] > start_s and earliest[i] < end_s
    ]
    if max_vehicles is not None and len(chosen) > max_vehicles:
        picked = select_rng.choice(len(chosen), size=max_vehicles, replace=False)
        chosen = [chosen[i] for i in sorted(picked.tolist())]
    window = Window(
        start_s=start_s,
        end_s=end_s,
        origin_s=network.day_origin(service_date) + time_shift_s,
        service_date=service_date.strftime("%Y%m%d"),
    )
    return DayPlan(network, config, window, plans, chosen, earliest, bus_rngs)


def whole_routes(
    network: Network,
    rng: np.random.Generator,
    service_date: dt.date,
    *,
    max_vehicles: int,
    start_s: float = 0.0,
    end_s: float = 2 * DAY_S,
    config: SimConfig | None = None,
) -> list[str]:
    """Routes drawn in random order while every bus that serves them in the window fits in
    `max_vehicles` (a route whose buses no longer fit is passed over for smaller ones): a city
    that tracks some routes fully, whose headways are then the timetable's, rather than every
    route short of buses. Only routes with a trip on the road in the window's first hour are
    drawn (a route whose service ended just before would run in full with no bus to show);
    when none fits whole, the one with fewest buses (`simulate`'s `max_vehicles` then keeps that
    many of them). Give them to `simulate` as `route_ids`."""
    config = config or SimConfig()
    plans = plan_buses(network, service_date)
    route_of = network.run_route
    runs = network.runs
    buses_of: dict[int, set[int]] = {}
    running_soon: set[int] = set()
    for i, plan in enumerate(plans):
        if (
            _latest_s(network, plan, config) > start_s
            and _earliest_s(network, plan, config) < end_s
        ):
            for route in {int(route_of[run]) for run in plan.runs}:
                buses_of.setdefault(route, set()).add(i)
            for run in plan.runs:
                if runs.end_s[run] >= start_s and runs.start_s[run] <= min(end_s, start_s + 3600):
                    running_soon.add(int(route_of[run]))
    routes = sorted(buses_of.keys() & running_soon)
    kept: set[int] = set()
    picked: list[int] = []
    for k in rng.permutation(len(routes)).tolist():
        buses = buses_of[routes[k]]
        if len(kept | buses) <= max_vehicles:
            kept |= buses
            picked.append(routes[k])
    if not picked and routes:  # no running route fits whole: the smallest, `simulate` cuts it
        picked = [min(routes, key=lambda r: (len(buses_of[r]), r))]
    # a bus of a picked route may serve others too (its block): they are run in part
    return sorted(network.routes[r].route_id for r in picked)


@dataclass
class DayPlan:
    """The buses of a simulated window (`plan_day`), streamed lazily by `stream`.

    Before streaming, `simulator.scenarios` may drive some buses ahead (`drive`: each bus is
    driven once, with its own generators, so the others' pings stay the same), change a bus's
    plan (`plans`), drop buses (`chosen`) and add effects to runs (`effects`).
    """

    network: Network
    config: SimConfig
    window: Window
    plans: list[BusPlan]  # every bus of the day, in plan order
    chosen: list[int]  # the buses simulated, indices into `plans`
    earliest: list[float]  # per bus: no fix before this (seconds from the day's origin)
    bus_rngs: list[np.random.Generator]
    bus_days: dict[int, BusDay] = field(default_factory=dict)  # driven ahead
    effects: dict[int, dict[int, RunEffects]] = field(default_factory=dict)  # bus -> run ->
    _rngs: dict[int, tuple[np.random.Generator, np.random.Generator]] = field(default_factory=dict)

    def rngs(self, bus: int) -> tuple[np.random.Generator, np.random.Generator]:
        """The (driving, GPS) generators of a bus, spawned once."""
        found = self._rngs.get(bus)
        if found is None:
            drive_rng, gps_rng = self.bus_rngs[bus].spawn(2)
            found = self._rngs[bus] = (drive_rng, gps_rng)
        return found

    def drive(self, bus: int, reworks: Mapping[int, RunRework] | None = None) -> BusDay:
        """How a bus drives its plan (driven on first call; `reworks` only then)."""
        found = self.bus_days.get(bus)
        if found is None:
            found = self.bus_days[bus] = drive_bus(
                self.network, self.rngs(bus)[0], self.plans[bus], self.config.drive, reworks
            )
        elif reworks:
            raise ValueError(f"bus {self.plans[bus].vehicle_id} was already driven")
        return found

    def stream(self) -> Iterator[SimPing]:
        """The messages of the chosen buses, merged by send time (see `simulate`)."""
        network, config, window = self.network, self.config, self.window

        def source(i: int) -> Callable[[], Iterator[SimPing]]:
            return lambda: _bus_pings(
                network, self.rngs(i), self.plans[i], window, config, self.bus_days.get(i),
                self.effects.get(i),
            )  # fmt: skip

        bounds = [
            window.origin_s + max(self.earliest[i], window.start_s) - config.interval_s
            for i in self.chosen
        ]
        return merge_lazily(bounds, [source(i) for i in self.chosen])


def _earliest_s(network: Network, plan: BusPlan, config: SimConfig) -> float:
    """No fix of this bus comes before this (its first stop, its longest early show-up)."""
    first = float(network.runs.start_s[plan.runs[0]])
    return first - config.drive.before_first_s[1] - config.interval_s


def _latest_s(network: Network, plan: BusPlan, config: SimConfig) -> float:
    """A generous guess of when the bus goes silent, used only to pick buses for a window."""
    last = float(network.runs.end_s[plan.runs[-1]])
    return last + 2 * config.drive.lateness_bounds_s[1] + config.drive.after_last_s[1] + 3600.0


def merge_lazily(
    first_sent: Sequence[float], sources: Sequence[Callable[[], Iterator[SimPing]]]
) -> Iterator[SimPing]:
    """Merge per-bus streams by send time, starting each only when its time comes.

    `first_sent[i]` must be a lower bound of the send time of source i's first message.
    Ties go to the source listed first.
    """
    heap: list[tuple[float, int, SimPing | None]] = [
        (bound, i, None) for i, bound in enumerate(first_sent)
    ]
    heapq.heapify(heap)
    started: dict[int, Iterator[SimPing]] = {}
    while heap:
        _, i, item = heapq.heappop(heap)
        if item is not None:
            yield item
        else:
            started[i] = sources[i]()
        nxt = next(started[i], None)
        if nxt is None:
            del started[i]
        else:
            heapq.heappush(heap, (nxt.sent_at, i, nxt))


# --- dates ----------------------------------------------------------------------------------


def runs_on(network: Network, service_date: dt.date) -> int:
    """How many runs operate on a date."""
    return int(network.active_runs(service_date).sum())


def busiest_date(network: Network) -> dt.date:
    """The date with the most runs (the earliest of those tied); for a default test day."""
    best: tuple[int, str] | None = None
    for text in sorted(network.services_by_date):
        count = runs_on(network, _parse_date(text))
        if count and (best is None or count > best[0]):
            best = (count, text)
    if best is None:
        raise ValueError("the feed runs no trip on any date (calendar.txt/calendar_dates.txt)")
    return _parse_date(best[1])


def covered_date(network: Network, wanted: dt.date) -> dt.date:
    """`wanted` if the feed runs trips that day, else the nearest date with trips on the same
    weekday (the earlier one when two are as near). Raises ValueError if there is none."""
    if runs_on(network, wanted):
        return wanted
    same_weekday = [
        date
        for date in map(_parse_date, network.services_by_date)
        if date.weekday() == wanted.weekday() and runs_on(network, date)
    ]
    if not same_weekday:
        raise ValueError(f"the feed runs no trip on any {wanted:%A}")
    return min(same_weekday, key=lambda d: (abs((d - wanted).days), d))


def time_shift_s(network: Network, simulated: dt.date, shown: dt.date) -> float:
    """Seconds to add to timestamps so that a day simulated on `simulated` shows on `shown`
    at the same local clock times (whole days, plus or minus an hour across daylight saving)."""
    return network.day_origin(shown) - network.day_origin(simulated)


def _parse_date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%Y%m%d").date()
