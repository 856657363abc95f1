"""Operations scenarios on demand, each with its ground truth: `simulate_day`.

A simulated day (`simulator.day`) can contain, on demand, the cases the tracker's operations
signals (`tracker.core.operations`) must see. Each kind asked for is placed on a bus of its own,
on a trip drawn at random (from its own generator, so the other buses' pings are those of the
plain day with the same seed) among the trips that depart at least `lead_in_s` into the window;
trips next to one another on a pattern are not given two scenarios.

- ``late-catch-up``: a bus leaves its first stop late (`late_share` of the headway to the bus
  ahead), then *runs hot*: it serves only every `hot_serve_every`-th stop, briefly, and drives at
  its top speed, until it is `follow_s` behind the bus ahead, which it then follows to the end of
  the trip. The gap ahead of it shrinks to a bunch; the gap behind it opens. It needs three
  consecutive trips of one pattern on the road at once (a headway shorter than the trip).
- ``stop-reporting``: the bus's device goes silent `silent_at_share` of the trip's scheduled time
  after it leaves, until the end of that trip (it reports again on its next trip, if it has one).
- ``cancelled-trip``: a trip with exact times is not run: its bus skips it (a bus with no other
  trip stays in the depot).
- ``detour``: from `detour_at_share` of its trip the bus leaves its shape for a stretch of
  `detour_length_m` along a parallel street `detour_offset_m` to the left or right, and rejoins.

The ground truth (`ScenarioTruth`, epoch seconds) has a row per scenario (with the buses before
and after its trip on the pattern) and, for the pattern of each late catch-up, a row per interval
in which a bus on it was bunched (its gap below `bunching_ratio` of the scheduled one) or gapped
(above `gapping_ratio`) behind the bus ahead of it, from the buses' true positions while the
follower is in service: the bus ahead is the one that passed the follower's position last (two
buses that swap places swap roles) and the gap is how long ago it passed there; the scheduled gap
is the timetable's there, from the run before the follower's on the pattern (a cancelled run
still counts, so the bus after a cancelled trip has a gap; frequency runs: the headway). These
are the tracker's definitions (`tracker.core.operations`). They cover every bus on the pattern,
whether a scenario made its gap or not; a bus that stops reporting still drives, so its pairs
look normal in the truth while a tracker sees a gap.

Pure: values in, values out (no clock, no I/O).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from simulator.day import (
    DAY_S,
    BusPlan,
    DayPlan,
    DetourPath,
    RunDrive,
    RunEffects,
    RunLegs,
    SimConfig,
    SimPing,
    mode_speeds,
    plan_day,
    scheduled_times_s,
    tabulated_legs,
)
from simulator.gps import BoolArray, FloatArray
from tracker.core.network import Network

LATE_CATCH_UP = "late-catch-up"
STOP_REPORTING = "stop-reporting"
CANCELLED_TRIP = "cancelled-trip"
DETOUR = "detour"
KINDS: tuple[str, ...] = (LATE_CATCH_UP, STOP_REPORTING, CANCELLED_TRIP, DETOUR)
BUNCHING = "bunching"
GAPPING = "gapping"

_TERMINAL_M = 400.0  # a detour leaves and rejoins at least this far from the trip's ends
_MERGE_S = 60.0  # bunching/gapping intervals closer than this are one


class ScenarioError(ValueError):
    """A scenario asked for cannot be placed in this feed and window (the message says why)."""


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    """How the scenarios play out. Ranges are uniform draws; times s, distances m."""

    lead_in_s: float = 900.0  # a scenario's trip departs at least this long into the window
    late_share: float = 0.25  # late-catch-up: departs this share of the headway ahead late,
    hot_speed_share: float = 1.1  # drives at this share of its mode's typical top speed,
    hot_serve_every: int = 2  # serves every n-th stop,
    hot_dwell_s: float = 10.0  # for this long,
    follow_s: float = 30.0  # and follows the bus ahead this far behind once it reaches it
    silent_at_share: float = 0.4  # stop-reporting: of the trip's scheduled time
    detour_at_share: float = 0.35  # detour: leaves at this share of the trip's length,
    detour_length_m: tuple[float, float] = (800.0, 1200.0)  # for this stretch of its shape,
    detour_offset_m: tuple[float, float] = (150.0, 300.0)  # along a street this far away
    bunching_ratio: float = 0.25  # the truth's bunching: gap below this share of the scheduled
    gapping_ratio: float = 1.5  # and gapping: above this share
    sample_s: float = 5.0  # the truth's gaps are computed this often

    def __post_init__(self) -> None:
        if not 0.0 < self.silent_at_share < 1.0 or not 0.0 < self.detour_at_share < 1.0:
            raise ValueError("silent_at_share and detour_at_share must lie between 0 and 1")
        if self.hot_serve_every < 1:
            raise ValueError(f"hot_serve_every is {self.hot_serve_every}; expected ≥ 1")
        for name, (low, high) in (
            ("detour_length_m", self.detour_length_m),
            ("detour_offset_m", self.detour_offset_m),
        ):
            if not 0.0 < low <= high:
                raise ValueError(f"{name} is {(low, high)!r}; expected 0 < low ≤ high")


@dataclass(frozen=True, slots=True)
class ScenarioTruth:
    """What a scenario did, or a bunching/gapping interval between two buses (see the module).

    Times are epoch seconds (with the day's time shift); positions are true ones (lat/lon, and
    distance along the trip's shape). Fields that do not apply are None.
    """

    kind: str  # one of KINDS, or BUNCHING / GAPPING
    vehicle_id: str  # the bus it happened to (bunching/gapping: the follower)
    trip_id: str
    route_id: str
    service_date: str  # YYYYMMDD
    start_s: float
    end_s: float
    scenario: str = ""  # the scenario that made it; "" for a gap between buses none touched
    leader_vehicle_id: str | None = None  # the bus ahead on the pattern
    leader_trip_id: str | None = None
    follower_vehicle_id: str | None = None  # the bus behind (not on bunching/gapping rows)
    follower_trip_id: str | None = None
    lat: float | None = None  # stop-reporting: where it went silent
    lon: float | None = None
    shape_dist_m: float | None = None
    left_lat: float | None = None  # detour: where it left its shape,
    left_lon: float | None = None
    left_shape_dist_m: float | None = None
    rejoined_lat: float | None = None  # where it rejoined it,
    rejoined_lon: float | None = None
    rejoined_shape_dist_m: float | None = None
    offset_m: float | None = None  # and how far away the parallel street is
    gap_ratio: float | None = None  # bunching: the least gap / scheduled gap; gapping: the most
    late_s: float | None = None  # late-catch-up: how late it left

    def as_json(self) -> dict[str, object]:
        """The fields that apply, for a JSON line."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class SimulatedDay:
    """A simulated day with scenarios: the truth is known before the first ping is made."""

    truth: tuple[ScenarioTruth, ...]
    pings: Iterator[SimPing]


def parse_kinds(text: str) -> list[str]:
    """Scenario kinds from a comma-separated list ("detour,late-catch-up"; repeats allowed)."""
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown scenario {unknown[0]!r}; expected some of {', '.join(KINDS)}")
    return kinds


def simulate_day(
    network: Network,
    rng: np.random.Generator,
    service_date: dt.date,
    *,
    scenarios: Sequence[str] = (),
    scenario_config: ScenarioConfig | None = None,
    start_s: float = 0.0,
    end_s: float = 2 * DAY_S,
    config: SimConfig | None = None,
    route_ids: Collection[str] | None = None,
    max_vehicles: int | None = None,
    time_shift_s: float = 0.0,
) -> SimulatedDay:
    """`simulator.day.simulate` with the `scenarios` asked for (kinds of `KINDS`, repeats
    allowed), and their ground truth. Without scenarios the pings are `simulate`'s, exactly.
    The same seed gives the same day, scenarios and truth.

    Raises `ScenarioError` when a scenario finds no trip to happen on (the message says what it
    needs), ValueError for an unknown kind.
    """
    kinds = list(scenarios)
    for kind in kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown scenario {kind!r}; expected some of {', '.join(KINDS)}")
    day = plan_day(
        network, rng, service_date, start_s=start_s, end_s=end_s, config=config,
        route_ids=route_ids, max_vehicles=max_vehicles, time_shift_s=time_shift_s,
    )  # fmt: skip
    truth: list[ScenarioTruth] = []
    if kinds:
        stage = _Stage(day, rng.spawn(1)[0], scenario_config or ScenarioConfig())
        truth = stage.place(kinds)
    truth.sort(key=lambda t: (t.start_s, t.kind, t.vehicle_id))
    return SimulatedDay(truth=tuple(truth), pings=day.stream())


# --- placing scenarios ---------------------------------------------------------------------


@dataclass
class _Stage:
    """Scenarios being placed on a `DayPlan` (see `simulate_day`)."""

    day: DayPlan
    rng: np.random.Generator
    config: ScenarioConfig
    bus_of_run: dict[int, int] = field(default_factory=dict)
    on_pattern: dict[int, list[int]] = field(default_factory=dict)  # simulated runs by start
    used_buses: set[int] = field(default_factory=set)
    reserved: set[int] = field(default_factory=set)  # runs with a scenario, and their neighbours

    def __post_init__(self) -> None:
        runs = self.day.network.runs
        for bus in self.day.chosen:
            for run in self.day.plans[bus].runs:
                self.bus_of_run[run] = bus
                self.on_pattern.setdefault(int(runs.pattern_idx[run]), []).append(run)
        for members in self.on_pattern.values():
            members.sort(key=lambda r: (float(runs.start_s[r]), r))

    def place(self, kinds: list[str]) -> list[ScenarioTruth]:
        # The most demanding first; each picks its trips before any bus is driven.
        order = {kind: i for i, kind in enumerate(KINDS)}
        picked: list[tuple[str, tuple[int, ...]]] = []
        for kind in sorted(kinds, key=order.__getitem__):
            picked.append((kind, self._pick(kind)))
        # Plans change before anything is driven; late catch-ups drive their neighbours first.
        truth: list[ScenarioTruth] = []
        for kind, runs in picked:
            if kind == CANCELLED_TRIP:
                truth.append(self._cancel(runs[0]))
        patterns: list[tuple[int, int]] = []  # (pattern, the late bus's run)
        for kind, runs in picked:
            if kind == LATE_CATCH_UP:
                truth.append(self._late_catch_up(*runs))
                patterns.append((int(self.day.network.runs.pattern_idx[runs[1]]), runs[1]))
        for kind, runs in picked:
            if kind == STOP_REPORTING:
                truth.append(self._stop_reporting(runs[0]))
            elif kind == DETOUR:
                truth.append(self._detour(runs[0]))
        for pattern, late_run in patterns:
            truth += self._gaps(pattern, late_run)
        return truth

    # --- choosing trips ---------------------------------------------------------------------

    def _pick(self, kind: str) -> tuple[int, ...]:
        candidates = self._candidates(kind)
        if not candidates:
            raise ScenarioError(_NEEDS[kind])
        chosen = candidates[int(self.rng.integers(len(candidates)))]
        for run in chosen:
            self.used_buses.add(self.bus_of_run[run])
            self.reserved.update(self._neighbours(run))
        return chosen

    def _candidates(self, kind: str) -> list[tuple[int, ...]]:
        net = self.day.network
        runs = net.runs
        out: list[tuple[int, ...]] = []
        for pattern_idx, members in sorted(self.on_pattern.items()):
            pattern = net.patterns[pattern_idx]
            length_m = float(pattern.stop_dist_m[-1] - pattern.stop_dist_m[0])
            if kind == LATE_CATCH_UP:
                for a, x, f in zip(members, members[1:], members[2:], strict=False):
                    buses = {self.bus_of_run[r] for r in (a, x, f)}
                    duration = float(runs.end_s[x] - runs.start_s[x])
                    ahead = float(runs.start_s[x] - runs.start_s[a])
                    behind = float(runs.start_s[f] - runs.start_s[x])
                    if (len(buses) == 3 and not buses & self.used_buses
                            and not {a, x, f} & self.reserved and self._in_window(x)
                            and 0 < ahead <= duration and 0 < behind <= duration):  # fmt: skip
                        out.append((a, x, f))
                continue
            for run in members:
                if (run in self.reserved or self.bus_of_run[run] in self.used_buses
                        or not self._in_window(run)):  # fmt: skip
                    continue
                if kind == CANCELLED_TRIP and not bool(runs.exact_times[run]):
                    continue
                if kind == DETOUR and length_m < self.config.detour_length_m[0] + 2 * _TERMINAL_M:
                    continue
                out.append((run,))
        return out

    def _in_window(self, run: int) -> bool:
        runs = self.day.network.runs
        window = self.day.window
        return (
            float(runs.start_s[run]) >= window.start_s + self.config.lead_in_s
            and float(runs.end_s[run]) <= window.end_s
        )

    def _neighbours(self, run: int) -> list[int]:
        members = self.on_pattern[int(self.day.network.runs.pattern_idx[run])]
        k = members.index(run)
        return members[max(k - 1, 0) : k + 2]

    # --- the scenarios ------------------------------------------------------------------------

    def _base(
        self, kind: str, run: int, start_s: float, end_s: float, *, neighbours: bool = True
    ) -> ScenarioTruth:
        """The truth of `run`, with (`neighbours`) the buses before and after it on its
        pattern as leader and follower."""
        net = self.day.network
        trip = net.trips[int(net.runs.trip_idx[run])]
        origin = self.day.window.origin_s
        truth = ScenarioTruth(
            kind=kind,
            vehicle_id=self.day.plans[self.bus_of_run[run]].vehicle_id,
            trip_id=trip.trip_id,
            route_id=net.routes[trip.route_idx].route_id,
            service_date=self.day.window.service_date,
            start_s=round(origin + float(start_s), 3),
            end_s=round(origin + float(end_s), 3),
            scenario=kind,
        )
        members = self.on_pattern[int(net.runs.pattern_idx[run])]
        if not neighbours or run not in members:
            return truth
        k = members.index(run)
        before = members[k - 1] if k > 0 else None
        after = members[k + 1] if k + 1 < len(members) else None
        return replace(
            truth,
            leader_vehicle_id=self._vehicle_of(before),
            leader_trip_id=self._trip_of(before),
            follower_vehicle_id=self._vehicle_of(after),
            follower_trip_id=self._trip_of(after),
        )

    def _vehicle_of(self, run: int | None) -> str | None:
        return None if run is None else self.day.plans[self.bus_of_run[run]].vehicle_id

    def _trip_of(self, run: int | None) -> str | None:
        net = self.day.network
        return None if run is None else net.trips[int(net.runs.trip_idx[run])].trip_id

    def _cancel(self, run: int) -> ScenarioTruth:
        day = self.day
        bus = self.bus_of_run[run]
        plan = day.plans[bus]
        left = tuple(r for r in plan.runs if r != run)
        if left:
            day.plans[bus] = BusPlan(plan.vehicle_id, plan.block_id, left)
        else:
            day.chosen = [i for i in day.chosen if i != bus]
        runs = day.network.runs
        truth = self._base(CANCELLED_TRIP, run, float(runs.start_s[run]), float(runs.end_s[run]))
        self.on_pattern[int(runs.pattern_idx[run])].remove(run)
        return truth

    def _late_catch_up(self, ahead: int, late: int, behind: int) -> ScenarioTruth:
        day = self.day
        net = day.network
        runs = net.runs
        leader = self._drive_of(ahead)
        self._drive_of(behind)
        headway_s = float(runs.start_s[late] - runs.start_s[ahead])
        late_s = self.config.late_share * headway_s
        pattern = net.patterns[int(runs.pattern_idx[late])]
        route_type = net.routes[int(net.run_route[late])].route_type
        cfg = self.config
        top_mps = cfg.hot_speed_share * mode_speeds(route_type)[0]
        scheduled_departure = float(pattern.departure_s[int(runs.row[late]), 0])

        def run_hot(legs: RunLegs) -> RunLegs:
            departure = max(legs.departure_s, scheduled_departure + late_s)
            return _hot_legs(pattern.stop_dist_m, legs, departure, leader, top_mps, cfg)

        bus = day.drive(self.bus_of_run[late], {late: run_hot})
        drive = _drive_in(bus.runs, late)
        truth = self._base(LATE_CATCH_UP, late, drive.departure_s, drive.arrival_s)
        trip_of = net.trips
        return replace(
            truth,
            leader_vehicle_id=day.plans[self.bus_of_run[ahead]].vehicle_id,
            leader_trip_id=trip_of[int(runs.trip_idx[ahead])].trip_id,
            follower_vehicle_id=day.plans[self.bus_of_run[behind]].vehicle_id,
            follower_trip_id=trip_of[int(runs.trip_idx[behind])].trip_id,
            late_s=round(drive.departure_s - scheduled_departure, 1),
        )

    def _stop_reporting(self, run: int) -> ScenarioTruth:
        day = self.day
        runs = day.network.runs
        bus = self.bus_of_run[run]
        drive = _drive_in(day.drive(bus).runs, run)
        scheduled_s = float(runs.end_s[run] - runs.start_s[run])
        silent_from = min(
            drive.departure_s + self.config.silent_at_share * scheduled_s,
            0.5 * (drive.departure_s + drive.arrival_s),
        )
        day.effects.setdefault(bus, {})[run] = RunEffects(silent_from, float(drive.end_s))
        along = float(drive.along_at(np.array([silent_from]))[0][0])
        lat, lon = self._latlon(run, along)
        truth = self._base(STOP_REPORTING, run, silent_from, float(drive.end_s))
        return replace(truth, lat=lat, lon=lon, shape_dist_m=round(along, 1))

    def _detour(self, run: int) -> ScenarioTruth:
        day = self.day
        net = day.network
        cfg = self.config
        pattern = net.patterns[int(net.runs.pattern_idx[run])]
        first, last = float(pattern.stop_dist_m[0]), float(pattern.stop_dist_m[-1])
        from_m = first + cfg.detour_at_share * (last - first)
        from_m = min(max(from_m, first + _TERMINAL_M), last - _TERMINAL_M - 1.0)
        to_m = min(from_m + float(self.rng.uniform(*cfg.detour_length_m)), last - _TERMINAL_M)
        offset_m = float(self.rng.uniform(*cfg.detour_offset_m))
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        path = detour_path(net, pattern.shape_idx, from_m, to_m, side * offset_m)
        bus = self.bus_of_run[run]
        drive = _drive_in(day.drive(bus).runs, run)
        day.effects.setdefault(bus, {})[run] = RunEffects(detour=path)
        left_s, rejoined_s = _passage_s(drive, np.array([from_m, to_m])).tolist()
        left = self._latlon(run, from_m)
        rejoined = self._latlon(run, to_m)
        truth = self._base(DETOUR, run, left_s, rejoined_s)
        return replace(
            truth,
            left_lat=left[0],
            left_lon=left[1],
            left_shape_dist_m=round(from_m, 1),
            rejoined_lat=rejoined[0],
            rejoined_lon=rejoined[1],
            rejoined_shape_dist_m=round(to_m, 1),
            offset_m=round(offset_m, 1),
        )

    def _gaps(self, pattern_idx: int, late_run: int) -> list[ScenarioTruth]:
        """Bunching and gapping of every bus on a pattern behind the bus ahead of it (see the
        module): the bus ahead is the one that passed the follower's position last, so two
        buses that swap places swap roles."""
        net = self.day.network
        runs = net.runs
        pattern = net.patterns[pattern_idx]
        members = self.on_pattern[pattern_idx]
        k = members.index(late_run)
        touched = set(members[max(k - 1, 0) : k + 2])
        cfg = self.config
        window = self.day.window
        date = dt.datetime.strptime(window.service_date, "%Y%m%d").date()
        timetable = [int(r) for r in pattern.runs if net.active_runs(date)[r]]
        drives = {run: self._drive_of(run) for run in members}
        out: list[ScenarioTruth] = []
        for follow in members:
            fol = drives[follow]
            # While the follower is in service (the bus ahead may have arrived meanwhile).
            t = np.arange(max(fol.departure_s, window.start_s), min(fol.arrival_s, window.end_s),
                          cfg.sample_s)  # fmt: skip
            position = timetable.index(follow)
            if len(t) < 2 or (bool(runs.exact_times[follow]) and position == 0):
                continue
            at_m = fol.along_at(t)[0]
            others = [r for r in members if self.bus_of_run[r] != self.bus_of_run[follow]]
            if not others:
                continue
            passed = np.stack([_passage_s(drives[r], at_m) for r in others])
            reached = np.stack([drives[r].along_at(t)[0] > at_m + 1.0 for r in others])
            passed = np.where(reached & (passed <= t), passed, -np.inf)
            ahead = np.argmax(passed, axis=0)  # the latest to pass there
            gap_s = t - passed[ahead, np.arange(len(t))]
            # The timetable's gap there ahead of the follower's run (a cancelled run counts).
            if not bool(runs.exact_times[follow]):
                scheduled_s = np.full(len(t), float(runs.headway_s[follow]))
            else:
                scheduled_s = scheduled_times_s(
                    pattern, int(runs.row[follow]), at_m
                ) - scheduled_times_s(pattern, int(runs.row[timetable[position - 1]]), at_m)
            with np.errstate(invalid="ignore", divide="ignore"):
                ratio = np.where(
                    (scheduled_s > 0) & np.isfinite(gap_s), gap_s / scheduled_s, np.nan
                )
            for kind, beyond, worst in (
                (BUNCHING, ratio < cfg.bunching_ratio, np.min),
                (GAPPING, ratio > cfg.gapping_ratio, np.max),
            ):
                for which in np.unique(ahead[beyond]).tolist():
                    lead = others[which]
                    for i, j in _intervals(t, beyond & (ahead == which)):
                        truth = self._base(kind, follow, float(t[i]), float(t[j]),
                                           neighbours=False)  # fmt: skip
                        out.append(
                            replace(
                                truth,
                                scenario=LATE_CATCH_UP if {lead, follow} <= touched else "",
                                leader_vehicle_id=self._vehicle_of(lead),
                                leader_trip_id=self._trip_of(lead),
                                gap_ratio=round(float(worst(ratio[i : j + 1])), 3),
                            )
                        )
        return out

    # --- helpers ------------------------------------------------------------------------------

    def _drive_of(self, run: int) -> RunDrive:
        return _drive_in(self.day.drive(self.bus_of_run[run]).runs, run)

    def _latlon(self, run: int, along_m: float) -> tuple[float, float]:
        net = self.day.network
        shape_idx = net.patterns[int(net.runs.pattern_idx[run])].shape_idx
        x, y = net.point_at(shape_idx, along_m)
        lat, lon = net.unproject(np.array([x]), np.array([y]))
        return round(float(lat[0]), 7), round(float(lon[0]), 7)


_NEEDS = {
    LATE_CATCH_UP: (
        "late-catch-up needs three consecutive trips of one pattern on the road at once (a "
        "headway shorter than the trip), run by three buses and departing at least "
        "lead_in_s into the window; none does here: widen the window or pick a busier route"
    ),
    STOP_REPORTING: (
        "stop-reporting needs a trip departing at least lead_in_s into the window and ending "
        "in it, on a bus without another scenario; none is left: widen the window"
    ),
    CANCELLED_TRIP: (
        "cancelled-trip needs a trip with exact times (not a headway-only frequency trip) "
        "departing at least lead_in_s into the window and ending in it; none is left"
    ),
    DETOUR: (
        "detour needs a trip long enough for the detour plus 400 m at each end, departing at "
        "least lead_in_s into the window and ending in it; none is left"
    ),
}


def _drive_in(drives: Sequence[RunDrive], run: int) -> RunDrive:
    return next(d for d in drives if d.run == run)


def _passage_s(drive: RunDrive, along_m: FloatArray) -> FloatArray:
    """When the bus of `drive` first reached each distance along its shape (seconds from the
    day's origin; before its departure: the departure)."""
    t = np.arange(drive.departure_s, drive.arrival_s + 1.0, 1.0)
    reached = np.maximum.accumulate(drive.along_at(t)[0])
    i = np.clip(np.searchsorted(reached, along_m, side="left"), 1, len(t) - 1)
    a0, a1 = reached[i - 1], reached[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.clip(np.where(a1 > a0, (along_m - a0) / (a1 - a0), 1.0), 0.0, 1.0)
    out = t[i - 1] + frac * (t[i] - t[i - 1])
    return np.asarray(np.where(along_m <= reached[0], t[0], out), dtype=np.float64)


def _intervals(t: FloatArray, mask: BoolArray) -> list[tuple[int, int]]:
    """(first, last) sample index of each run of True in `mask`, runs less than `_MERGE_S`
    apart merged."""
    out: list[tuple[int, int]] = []
    for value, group in itertools.groupby(enumerate(mask.tolist()), key=lambda iv: iv[1]):
        if not value:
            continue
        indices = [i for i, _ in group]
        if out and t[indices[0]] - t[out[-1][1]] < _MERGE_S:
            out[-1] = (out[-1][0], indices[-1])
        else:
            out.append((indices[0], indices[-1]))
    return out


def _hot_legs(
    stop_dist_m: FloatArray,
    legs: RunLegs,
    departure_s: float,
    leader: RunDrive,
    top_mps: float,
    config: ScenarioConfig,
) -> RunLegs:
    """A run driven hot (see the module): free, at `top_mps` with brief stops at every n-th
    stop, but never closer than `follow_s` behind the bus ahead (`leader`)."""
    a, b = legs.accel_mps2, legs.decel_mps2
    c = 1 / (2 * a) + 1 / (2 * b)
    n = len(stop_dist_m)
    served = [k for k in range(n) if k in (0, n - 1) or k % config.hot_serve_every == 0]
    free = RunLegs(legs.run, legs.start_s, departure_s, accel_mps2=a, decel_mps2=b)
    t = departure_s
    for j, k in itertools.pairwise(served):
        d = float(stop_dist_m[k] - stop_dist_m[j])
        if d > 0:
            top = min(top_mps, math.sqrt(d / c))
            duration = d / top + c * top
            free.move(t, t + duration, float(stop_dist_m[j]), d, top)
            t += duration
        if k != n - 1:
            free.stand(t, t + config.hot_dwell_s, float(stop_dist_m[k]))
            t += config.hot_dwell_s
    if not free.legs:
        return legs
    free.arrival_s = free.end_s = t
    alone = free.freeze()
    first, last = float(stop_dist_m[0]), float(stop_dist_m[-1])
    # Sampled each second until it arrives: behind the leader's path, `follow_s` later.
    horizon = max(t, leader.arrival_s + config.follow_s) + 1.0
    times = np.arange(departure_s, horizon + 1.0, 1.0)
    along = np.minimum(alone.along_at(times)[0], leader.along_at(times - config.follow_s)[0])
    along = np.maximum.accumulate(np.clip(along, first, last))
    arrived = int(np.searchsorted(along, last - 1e-6, side="left"))
    arrived = min(arrived, len(times) - 1)
    along[arrived] = last
    return tabulated_legs(legs.run, legs.start_s, times[: arrived + 1], along[: arrived + 1])


def detour_path(
    network: Network, shape_idx: int, from_m: float, to_m: float, offset_m: float
) -> DetourPath:
    """The path of a detour: from the shape at `from_m` straight across to a street parallel to
    it `offset_m` to its left (negative: right), along it, and back to the shape at `to_m`."""
    along = np.linspace(from_m, to_m, max(int((to_m - from_m) / 10.0), 2) + 1)
    shapes = np.full(len(along), shape_idx, dtype=np.int64)
    sx, sy = network.points_at(shapes, along)
    ax, ay = network.points_at(shapes, along + 5.0)
    bx, by = network.points_at(shapes, along - 5.0)
    tx, ty = ax - bx, ay - by
    norm = np.hypot(tx, ty)
    norm[norm == 0] = 1.0
    tx, ty = tx / norm, ty / norm
    ox, oy = sx - offset_m * ty, sy + offset_m * tx  # the left normal is (-ty, tx)
    x = np.concatenate([[sx[0]], ox, [sx[-1]]])
    y = np.concatenate([[sy[0]], oy, [sy[-1]]])
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
    return DetourPath(from_m=from_m, to_m=to_m, x_m=x, y_m=y, dist_m=dist)
