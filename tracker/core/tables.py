"""The matcher's tuning (`MatcherConfig`) and its lookup tables per network and config.

`RunTables.of(network, config)` holds what the engine reads about every scheduled run and pattern
(its shape, first and last stop, block, successor in its block, ...) as plain lists (read one
element at a time, where numpy indexing is slow) and numpy arrays (indexed by arrays, in
`tracker.core.candidates`). They depend on the network and config alone and are only read (or
filled as caches of pure results), so they are built once per network and config and shared:
hindsight starts a matcher per vehicle and conflict round.

Pure: values in, values out.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from weakref import WeakKeyDictionary

import numpy as np

from tracker.core.network import FloatArray, Network, Timetable


@dataclass(frozen=True, slots=True)
class BlockConfig:
    """Tuning of the assignment of vehicles to blocks (`tracker.core.blocks`)."""

    unexplained_cost: float = -6.0  # per ping a block's filter cannot explain
    entry_cost: float = 60.0  # a block first seen after the vehicle's first ping starts this low
    prune_margin: float = 100.0  # trackers this far below the vehicle's best are dropped
    fresh_s: float = 900.0  # a vehicle silent longer than this holds no block


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Tuning of the matcher. Scores are natural-log likelihoods; distances m; times s."""

    snap_radius_m: float = 150.0
    gps_sigma_m: float = 30.0
    gps_floor: float = -6.0  # lowest score of a single fix: an outlier costs no more than this
    bearing_weight: float = 1.5  # score of a bearing opposite to the shape: -2 * weight
    min_speed_for_bearing_mps: float = 1.0
    max_early_s: float = 15 * 60.0  # candidate window around the schedule
    max_late_s: float = 60 * 60.0
    max_wait_s: float = 60 * 60.0  # how long before departure a bus may wait at the first stop
    early_scale_s: float = 300.0  # delay prior: Laplace, steeper when early
    late_scale_s: float = 600.0
    wait_scale_s: float = 3600.0  # prior of waiting at the first stop before departure
    backtrack_tolerance_m: float = 60.0  # GPS noise: moving back less than this is free
    backtrack_scale_m: float = 30.0
    max_speed_mps: float = 30.0
    terminal_zone_m: float = 300.0  # "near the start / end" of a run
    arrival_zone_m: float = 60.0  # this close to its last stop a run has arrived
    layover_radius_m: float = 800.0  # between runs a bus may move this far from the terminal
    layover_roaming_fit: float = 0.0  # the score of a fix anywhere within that radius
    arrived_cost: float = -0.5  # per ping, for staying on a run after arriving at its end
    start_zone_m: float = 300.0  # buses may move this far before departing without being early
    switch_block_next: float = 0.0  # from the end of a run to its block's next run
    switch_end_to_start: float = -3.0  # from the end of a run to the start of another
    switch_mid_route: float = -10.0  # any other change of run
    switch_block: float = -4.0  # extra, when the new run belongs to another block
    schedule_weight: float = 0.15  # weight of the delay prior per 30 s on a run
    miss_cost: float = -6.0  # a hypothesis with no candidate this ping (outlier, detour)
    max_misses: int = 10  # after this many misses in a row a hypothesis is dropped
    # The filter keeps at most this many hypotheses per vehicle, none more than the margin below
    # the best. Pruning harder helps the live answers too (WMATA, noisy: 12 and 25 gave 83.4 %,
    # 8 and 10 give 85.9 %; hindsight the same) and is a fifth faster.
    keep_hypotheses: int = 8
    keep_score_margin: float = 10.0
    forget_after_s: float = 30 * 60.0  # a silent vehicle is matched afresh
    trip_hint_max_offset_m: float = 200.0  # a given trip_id is believed within this distance
    max_future_s: float = 300.0
    keep_paths: bool = False  # hypotheses link to their parents, for smoothing after the fact
    # One bus per block, decided over the fleet (`tracker.core.blocks`), when matching live (not
    # with `keep_paths`: hindsight matches each vehicle on its own and settles conflicts itself).
    assign_blocks: bool = True
    blocks: BlockConfig = BlockConfig()
    # Answers are settled this long after their ping (`tracker.core.settle`); 0: never revised.
    settle_lag_s: float = 0.0


_RunAnswer = tuple[str, str, "int | None", str, "float | None", int, float, float]
"""What an answer reads of a run: (route_id, trip_id, direction_id, shape_id, headway_s,
shape_idx, first stop + `start_zone_m`, last stop - `arrival_zone_m`)."""


_SHARED: WeakKeyDictionary[Network, dict[MatcherConfig, RunTables]] = WeakKeyDictionary()


class RunTables:
    """Per-run and per-pattern tables of one network under one config (see the module)."""

    @classmethod
    def of(cls, network: Network, config: MatcherConfig) -> RunTables:
        """The tables of `network` under `config`, built on first use and then shared."""
        by_config = _SHARED.setdefault(network, {})
        found = by_config.get(config)
        if found is None:
            found = by_config[config] = cls(network, config)
        return found

    def __init__(self, network: Network, config: MatcherConfig) -> None:
        self.network = network
        self.config = config
        net = network
        cfg = config
        pattern_of_run = net.runs.pattern_idx.tolist()
        self.run_shape: list[int] = [net.patterns[p].shape_idx for p in pattern_of_run]
        self.run_first_stop: list[float] = [
            float(net.patterns[p].stop_dist_m[0]) for p in pattern_of_run
        ]
        self.run_last_stop: list[float] = [
            float(net.patterns[p].stop_dist_m[-1]) for p in pattern_of_run
        ]
        # Along a run, from where it has arrived (`arrival_zone_m` from its last stop: it may hand
        # over to its block's next run) and ended (`terminal_zone_m`: another run may start).
        self.run_arrived_from = [last - cfg.arrival_zone_m for last in self.run_last_stop]
        self.run_ended_from = [last - cfg.terminal_zone_m for last in self.run_last_stop]
        self.run_next: list[int] = net.runs.next_in_block.tolist()
        # The previous run of the same block, or -1.
        self.run_previous: list[int] = [-1] * len(self.run_next)
        for run, following in enumerate(self.run_next):
            if following >= 0:
                self.run_previous[following] = run
        self.run_start_s: list[float] = net.runs.start_s.tolist()
        self.latest_end_s = float(net.runs.end_s.max()) if len(net.runs) else 0.0
        block_ids: dict[str, int] = {}
        trip_block = [block_ids.setdefault(t.block_id, len(block_ids)) if t.block_id else -1
                      for t in net.trips]  # fmt: skip
        self.block_ids: list[str] = list(block_ids)  # a block's index -> its block_id
        self.run_block: list[int] = [trip_block[t] for t in net.runs.trip_idx.tolist()]
        self.run_trip: list[int] = net.runs.trip_idx.tolist()
        self.run_trip_id: list[str] = [net.trips[t].trip_id for t in self.run_trip]
        self.run_exact: list[bool] = net.runs.exact_times.tolist()
        self.run_headway: list[float] = net.runs.headway_s.tolist()
        # See `key`: the run itself, or -1 - its trip for inexact frequency runs.
        self.run_key = [
            run if exact else -1 - trip
            for run, (exact, trip) in enumerate(zip(self.run_exact, self.run_trip, strict=True))
        ]
        self._service_dates: dict[dt.date, str] = {}
        self._run_start_point: dict[int, tuple[float, float]] = {}  # see `start_point`
        self._run_answers: dict[int, _RunAnswer] = {}  # see `run_answer`
        self._init_candidate_arrays()

    def _init_candidate_arrays(self) -> None:
        """Per-pattern and per-run arrays for `candidate_table` (indexed by numpy arrays)."""
        cfg = self.config
        net = self.network
        self.timetable: Timetable = net.timetable
        self.pattern_max_duration = np.array(
            [float((p.arrival_s[:, -1] - p.departure_s[:, 0]).max()) if len(p.runs) else 0.0
             for p in net.patterns]
        )  # fmt: skip
        (self.pattern_late_reach_s, self.pattern_early_reach_s, self.pattern_shift_reach_s,
         self.pattern_first_start_s) = self._pattern_reach()  # fmt: skip
        first_stop = np.array([float(p.stop_dist_m[0]) for p in net.patterns])
        self.pattern_start_zone_end = first_stop + cfg.start_zone_m
        # Patterns of each shape (in `patterns_of_shape` order): shape s has
        # `shape_pattern[shape_pattern_first[s]:][:shape_pattern_count[s]]`.
        of_shape = [net.patterns_of_shape.get(s, []) for s in range(len(net.shapes))]
        self.shape_pattern_count = np.array([len(ps) for ps in of_shape], dtype=np.int64)
        self.shape_pattern_first = np.cumsum(self.shape_pattern_count) - self.shape_pattern_count
        self.shape_pattern = np.array([p for ps in of_shape for p in ps], dtype=np.int64)
        run_first_stop = np.array(self.run_first_stop)
        self.run_start_zone_end = run_first_stop + cfg.start_zone_m
        self.run_terminal_zone_end = run_first_stop + cfg.terminal_zone_m
        self.run_key_a = np.array(self.run_key, dtype=np.int64)
        self.run_block_a = np.array(self.run_block, dtype=np.int64)

    def _pattern_reach(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per pattern, how far before and after a ping's time a run of it may start and still
        pass `candidate_table`'s delay test, in seconds: (late reach, early reach, shifted
        reach, first start).

        A run is scheduled anywhere along it between its start plus the least and the most of
        its stop times' offsets from its start (a second wider, for the interpolation's
        rounding); a kept run is at most `max_late_s` late and less early than the window
        allows, or within half its headway (inexact runs). Patterns of inexact runs (every
        frequency run of Nairobi's matatus) so bisect a window of a headway plus the trip's
        length instead of more than an hour plus the trip's length. Infinite: no narrowing
        (a pattern without runs, or with a time that is not a number).

        Patterns of inexact runs only narrow further: their runs usually keep the first run's
        timetable, shifted, so a run may start only within the shifted reach (half the longest
        headway, the most any run's offsets stray from the first run's, and a second) of where
        that timetable puts the spot, counted from the first run's start.
        """
        cfg = self.config
        net = self.network
        late = np.full(len(net.patterns), math.inf)
        early = np.full(len(net.patterns), math.inf)
        shifted = np.full(len(net.patterns), math.inf)
        first_start = np.zeros(len(net.patterns))
        for p, pattern in enumerate(net.patterns):
            if not len(pattern.runs):
                continue
            start = net.runs.start_s[pattern.runs][:, None]
            departs, arrives = pattern.departure_s - start, pattern.arrival_s - start
            offsets = np.concatenate([departs, arrives])
            exact = net.runs.exact_times[pattern.runs]
            half_headway = net.runs.headway_s[pattern.runs][~exact] / 2
            if not (np.isfinite(offsets).all() and np.isfinite(half_headway).all()):
                continue
            late_s = max([cfg.max_late_s] * bool(exact.any()) + half_headway.tolist())
            early_s = math.inf if exact.any() else float(half_headway.max())
            late[p] = late_s + float(offsets.max()) + 1.0
            early[p] = early_s - float(offsets.min()) + 1.0
            if not exact.any():
                stray_s = max(float(np.abs(o - o[0]).max()) for o in (departs, arrives))
                shifted[p] = early_s + stray_s + 1.0
                first_start[p] = float(start[0, 0])
        return late, early, shifted, first_start

    # --- lookups ----------------------------------------------------------------------------

    def key(self, run: int, day: dt.date) -> tuple[int, dt.date]:
        """Hypotheses continue per run; on inexact frequency runs, per trip (any departure)."""
        return (self.run_key[run], day)

    def start_point(self, run: int) -> tuple[float, float]:
        """Projected (x, y) of a run's first stop on its shape (cached per run)."""
        found = self._run_start_point.get(run)
        if found is None:
            found = self._run_start_point[run] = self.network.point_at(
                self.run_shape[run], self.run_first_stop[run]
            )
        return found

    def departure_epoch(self, run: int, day: dt.date) -> float:
        return self.network.day_origin(day) + self.run_start_s[run]

    def max_early_s(self, first_stop_m: float, along_m: float) -> float:
        """How early a run may be: long at its first stop, where buses wait to depart."""
        cfg = self.config
        return cfg.max_wait_s if along_m <= first_stop_m + cfg.start_zone_m else cfg.max_early_s

    def gps_fit(self, offset_m: float) -> float:
        """Score of a fix `offset_m` from where it should be: Gaussian, with an outlier floor."""
        cfg = self.config
        return max(-0.5 * (offset_m / cfg.gps_sigma_m) ** 2, cfg.gps_floor)

    def run_answer(self, run: int) -> _RunAnswer:
        """See `_RunAnswer` (cached per run)."""
        found = self._run_answers.get(run)
        if found is None:
            cfg = self.config
            net = self.network
            trip = net.trips[self.run_trip[run]]
            headway = self.run_headway[run]
            found = self._run_answers[run] = (
                net.routes[trip.route_idx].route_id,
                trip.trip_id,
                trip.direction_id if trip.direction_id >= 0 else None,
                net.shapes[trip.shape_idx].shape_id,
                None if math.isnan(headway) else headway,
                trip.shape_idx,
                self.run_first_stop[run] + cfg.start_zone_m,
                self.run_arrived_from[run],
            )
        return found

    def service_date(self, day: dt.date) -> str:
        """YYYYMMDD of a service day (cached: called once per answer)."""
        found = self._service_dates.get(day)
        if found is None:
            found = self._service_dates[day] = day.strftime("%Y%m%d")
        return found
