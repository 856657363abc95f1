"""The matching engine: which trip is each vehicle running, where along it, and how late.

Pure: values in, values out. `Matcher.match_batch(pings, now=...)` takes pings in arrival order and
returns one `Match` each; it keeps per-vehicle state between calls and never reads the clock.

How it decides (an online hidden-Markov filter per vehicle):

1. Each ping is projected to metres and snapped to every shape pass within `snap_radius_m`.
2. Every scheduled run on those shapes whose schedule at that spot is within the delay window
   becomes a *candidate* (run, service day, distance along, delay).
3. A candidate's score = the best previous hypothesis' score + the cost of getting here from it
   + how well the ping fits (distance to the shape, bearing against the shape's direction).
   Getting here costs nothing when the vehicle continues its own run forward; going backwards,
   or faster than a bus can, costs in proportion; switching runs is cheap only from the end of
   one run to the start of the next (cheapest to the next run of the same block) and dear
   mid-route. A first sighting is scored by a delay prior (buses run late more than early).
4. The vehicle keeps its few best hypotheses; the best one is the answer. A run that has no
   candidate this ping (a GPS outlier, a detour) is carried forward at a fixed cost, so one bad
   fix does not lose the trip.

Between trips that share a shape this lets history decide: a bus that has been 8 minutes late on
its trip stays on it even when the next trip's schedule fits the current ping better.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import NamedTuple
from weakref import WeakKeyDictionary

import numpy as np

from tracker.core.model import Match, Ping, Reason, State, rejected
from tracker.core.network import FloatArray, Network, ragged_arange
from tracker.core.validate import MAX_SPEED_MPS, clean_hints, validate_ping


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


class Hypothesis(NamedTuple):
    """One guess of what a vehicle is doing: a run on a service day, and where along it.

    A named tuple, not a frozen dataclass: `_step` builds a dozen per ping, ~5x faster so.
    """

    run: int
    day: dt.date
    along_m: float
    delay_s: float  # NaN on runs without exact times
    score: float
    misses: int = 0  # pings in a row with no candidate on this run
    waiting: bool = False  # at the end of the block's previous run, waiting to start this one
    wait_spot: tuple[float, float] = (math.nan, math.nan)  # where it waits (projected x, y)
    at_s: float = math.nan  # timestamp of the ping this hypothesis explains
    parent: Hypothesis | None = None  # with `keep_paths`: the hypothesis it came from

    # A path links thousands of hypotheses: `parent` stays out of ==, hash and repr.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hypothesis) and self[:-1] == other[:-1]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:-1])

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in zip(self._fields[:-1], self[:-1], strict=True))
        return f"Hypothesis({fields})"


@dataclass(frozen=True, slots=True)
class VehicleState:
    last_timestamp: float
    hypotheses: tuple[Hypothesis, ...]  # best first
    given_trip: bool = False


Snapped = tuple[int, float, float, float, float, float]
"""One pass of a shape near a ping: (shape_idx, along_m, offset_m, heading_deg, x_m, y_m)."""


_Candidate = tuple[int, dt.date, float, float, float, float, int, int, bool]
"""A run the ping may be on, as `_step` reads it: (run, service day, along_m, delay_s (NaN on
inexact runs), fit (`_fits` of the shape pass), prior (`_prior`), run key (`_key` without the
day: a batch holds hundreds of thousands of candidates, and a tuple fewer each spares the garbage
collector), block (`_run_block`), near_start (within `terminal_zone_m` of the run's first stop))."""

PingCache = dict[Ping, tuple[tuple[Snapped, ...], tuple[_Candidate, ...] | None]]
"""Snapped passes and candidates per ping: they depend on the ping alone (not on the vehicle's
state), so matching the same pings again (hindsight's conflict rounds) can reuse them."""

_Offer = tuple[
    int, dt.date, float, float, float, int, bool, tuple[float, float], float, "Hypothesis | None"
]
"""What `_step` offers, before the kept few become `Hypothesis`: a plain tuple of its fields in
its order (score at 4), made one by `_new_tuple(Hypothesis, offer)` (no keyword handling)."""

_new_tuple = tuple.__new__

_NO_SPOT = (math.nan, math.nan)

_Draft = tuple[
    str, float, State, "Reason | None", str, str, str, "int | None", str, float, float, float,
    float, "float | None", "float | None", bool, "str | None",
]  # fmt: skip
"""A `Match`'s fields in order, with the snapped point still in projected metres (x where
snapped_lat goes, y where snapped_lon goes): `_complete` converts a batch of them at once."""

_RunAnswer = tuple[str, str, "int | None", str, "float | None", int, float, float]
"""What `_describe` reads of a run: (route_id, trip_id, direction_id, shape_id, headway_s,
shape_idx, first stop + `start_zone_m`, last stop - `arrival_zone_m`)."""


_SHARED_TABLES: WeakKeyDictionary[Network, dict[MatcherConfig, dict[str, object]]] = (
    WeakKeyDictionary()
)
"""`Matcher`'s tables per network and config (see `Matcher.__post_init__`)."""


@dataclass
class Matcher:
    """Per-vehicle state plus the engine. One instance per network and stream of pings."""

    network: Network
    config: MatcherConfig = field(default_factory=MatcherConfig)
    states: dict[str, VehicleState] = field(default_factory=dict)
    # Runs a vehicle may not be matched to during a time span (another vehicle runs them):
    # vehicle_id -> {(run, service day): [(from_s, to_s), ...]}.
    exclusions: dict[str, dict[tuple[int, dt.date], list[tuple[float, float]]]] = field(
        default_factory=dict
    )
    # If given, filled with and read from: see `PingCache`.
    ping_cache: PingCache | None = None

    def __post_init__(self) -> None:
        self.path_ends: dict[str, list[Hypothesis]] = {}
        # The tables (the `_` attributes) depend on the network and config alone, and are only
        # read (or filled as caches of pure results): hindsight starts a matcher per vehicle and
        # conflict round, so they are built once per network and config and shared.
        by_config = _SHARED_TABLES.setdefault(self.network, {})
        tables = by_config.get(self.config)
        if tables is None:
            self._build_tables()
            by_config[self.config] = {k: v for k, v in vars(self).items() if k.startswith("_")}
        else:
            vars(self).update(tables)

    def _build_tables(self) -> None:
        """Per-run lists (read one element at a time) and per-pattern and per-run arrays (for
        `_candidate_table`), see `__post_init__`."""
        net = self.network
        self._run_shape = [net.patterns[p].shape_idx for p in net.runs.pattern_idx.tolist()]
        # Plain lists: read one element at a time per candidate, where numpy indexing is slow.
        self._run_first_stop = [
            float(net.patterns[p].stop_dist_m[0]) for p in net.runs.pattern_idx.tolist()
        ]
        self._run_last_stop = [
            float(net.patterns[p].stop_dist_m[-1]) for p in net.runs.pattern_idx.tolist()
        ]
        cfg = self.config
        # Along a run, from where it has arrived (`arrival_zone_m` from its last stop: it may hand
        # over to its block's next run) and ended (`terminal_zone_m`: another run may start).
        self._run_arrived_from = [last - cfg.arrival_zone_m for last in self._run_last_stop]
        self._run_ended_from = [last - cfg.terminal_zone_m for last in self._run_last_stop]
        self._run_next: list[int] = net.runs.next_in_block.tolist()
        self._run_start_s: list[float] = net.runs.start_s.tolist()
        self._latest_end_s = float(net.runs.end_s.max()) if len(net.runs) else 0.0
        block_ids: dict[str, int] = {}
        trip_block = [block_ids.setdefault(t.block_id, len(block_ids)) if t.block_id else -1
                      for t in net.trips]  # fmt: skip
        self._run_block: list[int] = [trip_block[t] for t in net.runs.trip_idx.tolist()]
        self._run_trip: list[int] = net.runs.trip_idx.tolist()
        self._run_trip_id: list[str] = [net.trips[t].trip_id for t in self._run_trip]
        self._run_exact: list[bool] = net.runs.exact_times.tolist()
        self._run_headway: list[float] = net.runs.headway_s.tolist()
        self._service_dates: dict[dt.date, str] = {}
        # See `_key`: the run itself, or -1 - its trip for inexact frequency runs.
        self._run_key = [
            run if exact else -1 - trip
            for run, (exact, trip) in enumerate(zip(self._run_exact, self._run_trip, strict=True))
        ]
        self._run_start_point: dict[int, tuple[float, float]] = {}  # see `_start_point`
        self._run_answers: dict[int, _RunAnswer] = {}  # see `_run_answer`
        self._init_candidate_arrays()

    def _init_candidate_arrays(self) -> None:
        """Per-pattern and per-run arrays for `_candidate_table` (indexed by numpy arrays)."""
        cfg = self.config
        net = self.network
        self._timetable = net.timetable
        self._pattern_max_duration = np.array(
            [float((p.arrival_s[:, -1] - p.departure_s[:, 0]).max()) if len(p.runs) else 0.0
             for p in net.patterns]
        )  # fmt: skip
        (self._pattern_late_reach_s, self._pattern_early_reach_s, self._pattern_shift_reach_s,
         self._pattern_first_start_s) = self._pattern_reach()  # fmt: skip
        first_stop = np.array([float(p.stop_dist_m[0]) for p in net.patterns])
        self._pattern_start_zone_end = first_stop + cfg.start_zone_m
        # Patterns of each shape (in `patterns_of_shape` order): shape s has
        # `_shape_pattern[_shape_pattern_first[s]:][:_shape_pattern_count[s]]`.
        of_shape = [net.patterns_of_shape.get(s, []) for s in range(len(net.shapes))]
        self._shape_pattern_count = np.array([len(ps) for ps in of_shape], dtype=np.int64)
        self._shape_pattern_first = np.cumsum(self._shape_pattern_count) - self._shape_pattern_count
        self._shape_pattern = np.array([p for ps in of_shape for p in ps], dtype=np.int64)
        run_first_stop = np.array(self._run_first_stop)
        self._run_start_zone_end = run_first_stop + cfg.start_zone_m
        self._run_terminal_zone_end = run_first_stop + cfg.terminal_zone_m
        self._run_key_a = np.array(self._run_key, dtype=np.int64)
        self._run_block_a = np.array(self._run_block, dtype=np.int64)

    def _pattern_reach(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Per pattern, how far before and after a ping's time a run of it may start and still
        pass `_candidate_table`'s delay test, in seconds: (late reach, early reach, shifted
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

    # --- public ------------------------------------------------------------------------------

    def match_batch(self, pings: Sequence[Ping], *, now: float | Sequence[float]) -> list[Match]:
        """Match pings in arrival order.

        `now` (epoch s) bounds how far ahead a timestamp may be: one clock for the batch, or one
        per ping (a recorded file replays with the clock of each ping's arrival).
        """
        net = self.network
        nows = [now] * len(pings) if isinstance(now, float | int) else now
        results: list[Match | None] = [None] * len(pings)
        usable: list[int] = []
        cleaned: list[Ping] = []
        drafts: list[tuple[int, _Draft]] = []  # answers whose snapped point is still in metres
        followed_at: list[tuple[int, Hypothesis]] = []  # answers of the fast path, to describe
        for i, (ping, now_i) in enumerate(zip(pings, nows, strict=True)):
            problem = validate_ping(ping, now=now_i, max_future_s=self.config.max_future_s)
            if problem is not None:
                results[i] = rejected(ping, *problem)
                continue
            usable.append(i)
            cleaned.append(ping if _hints_are_clean(ping) else clean_hints(ping))
        if cleaned:
            lat = np.array([p.lat for p in cleaned])
            lon = np.array([p.lon for p in cleaned])
            x, y = net.project(lat, lon)
            xs, ys = x.tolist(), y.tolist()
            # Pings that continue a believed trip_id are located on that trip's shape alone;
            # the others are snapped to every shape nearby, in one query for the batch.
            followed = [self._follows_given_trip(p) for p in cleaned]
            to_snap = [j for j, f in enumerate(followed) if not f]
            snapped_of, candidates_of = self._prepare(cleaned, to_snap, x, y)
            # A vehicle's pings depend on each other; pings of different vehicles never do. So
            # the batch is taken in rounds, round k holding each vehicle's k-th ping: the pings
            # of a round that follow a believed trip are answered together, in numpy
            # (`_follow_given_trips`), the rest one by one (`_match_one`).
            for round_ in _rounds(cleaned):
                fast = [j for j in round_ if followed[j]]
                answered = self._follow_given_trips(fast, cleaned, x, y) if fast else {}
                for j in round_:
                    believed = answered.get(j)
                    if believed is not None:
                        followed_at.append((j, believed))
                        continue
                    found = self._match_one(
                        cleaned[j], xs[j], ys[j], snapped_of.get(j), candidates_of.get(j)
                    )
                    if isinstance(found, Match):
                        results[usable[j]] = found
                    else:
                        drafts.append((usable[j], found))
            drafts += [
                (usable[j], d) for j, d in self._describe_followed(followed_at, cleaned, xs, ys)
            ]
        for i, match in zip(
            (i for i, _ in drafts), self._complete([d for _, d in drafts]), strict=True
        ):
            results[i] = match
        out = [r for r in results if r is not None]
        assert len(out) == len(pings)
        return out

    def _prepare(
        self, pings: list[Ping], to_snap: list[int], x: FloatArray, y: FloatArray
    ) -> tuple[dict[int, tuple[Snapped, ...]], dict[int, tuple[_Candidate, ...]]]:
        """Snapped passes of `pings[j]` for j in `to_snap`, and the candidates of those without a
        trip_id (the others need them only if their trip_id is not believed), each for the whole
        batch at once. Both depend on the ping alone; `ping_cache` keeps them."""
        cache = self.ping_cache if self.ping_cache is not None else {}
        snapped_of: dict[int, tuple[Snapped, ...]] = {}
        candidates_of: dict[int, tuple[_Candidate, ...]] = {}
        for j in to_snap:
            found = cache.get(pings[j])
            if found is not None:
                snapped_of[j] = found[0]
                if found[1] is not None:
                    candidates_of[j] = found[1]
        to_snap_now = [j for j in to_snap if j not in snapped_of]
        if to_snap_now:
            rows = np.array(to_snap_now, dtype=np.int64)
            snapped_of.update(zip(to_snap_now, self._snap(x[rows], y[rows]), strict=True))
        infer = [j for j in to_snap if pings[j].trip_id is None and j not in candidates_of]
        if infer:
            table = self._candidate_table([pings[j] for j in infer], [snapped_of[j] for j in infer])
            candidates_of.update(zip(infer, table, strict=True))
        if self.ping_cache is not None:
            for j in to_snap:
                self.ping_cache[pings[j]] = (snapped_of[j], candidates_of.get(j))
        return snapped_of, candidates_of

    def _snap(self, x: FloatArray, y: FloatArray) -> list[tuple[Snapped, ...]]:
        """Every shape pass near each point, as plain tuples per point.

        A point repeated in the batch (a parked bus reports one position again and again: a
        fifth of the WMATA day's pings repeat the vehicle's previous one) is snapped once.
        """
        if len(x) < 2:
            return self._snap_all(x, y)
        xy = np.stack([x, y], axis=1)
        unique_xy, inverse = np.unique(xy, axis=0, return_inverse=True)
        if len(unique_xy) < len(xy):
            once = self._snap_all(unique_xy[:, 0], unique_xy[:, 1])
            return [once[k] for k in inverse.ravel().tolist()]
        return self._snap_all(x, y)

    def _snap_all(self, x: FloatArray, y: FloatArray) -> list[tuple[Snapped, ...]]:
        """`_snap`, every point on its own."""
        snaps = self.network.snap(x, y, radius_m=self.config.snap_radius_m)
        bounds = np.searchsorted(snaps.point, np.arange(len(x) + 1)).tolist()
        rows = tuple(zip(snaps.shape_idx.tolist(), snaps.along_m.tolist(), snaps.offset_m.tolist(),
                         snaps.heading_deg.tolist(), snaps.x_m.tolist(), snaps.y_m.tolist(),
                         strict=True))  # fmt: skip
        return [rows[bounds[j] : bounds[j + 1]] for j in range(len(x))]

    def _follows_given_trip(self, ping: Ping) -> bool:
        state = self.states.get(ping.vehicle_id)
        if ping.trip_id is None or state is None or not state.given_trip:
            return False
        return self._run_trip_id[state.hypotheses[0].run] == ping.trip_id

    def _follow_given_trips(
        self, batch_idx: list[int], pings: list[Ping], x: FloatArray, y: FloatArray
    ) -> dict[int, Hypothesis]:
        """The fast path for pings that continue a believed trip_id (most pings, when given).

        Exactly what `_match_one` does for such a ping, for many pings of different vehicles
        at once: locate each on its trip's shape near the vehicle's last position (one numpy
        pass for all), check its schedule, believe it (the vehicle's state moves on; the
        answer is described later, for the whole batch at once: `_describe_followed`). A ping
        that would take any other turn there (a duplicate, a long silence, far from the shape,
        off schedule) is left out of the answer, and `_match_one` takes it from the start.
        """
        cfg = self.config
        net = self.network
        todo: list[tuple[int, Ping, Hypothesis]] = []
        shape_idx: list[int] = []
        from_m: list[float] = []
        to_m: list[float] = []
        for j in batch_idx:
            ping = pings[j]
            state = self.states.get(ping.vehicle_id)
            if state is None or not state.hypotheses:
                continue
            dt_s = ping.timestamp - state.last_timestamp
            if not 0.0 < dt_s <= cfg.forget_after_s:
                continue  # duplicate, out of order, or silent so long it is matched afresh
            prev = state.hypotheses[0]
            trip_idx = net.trip_index.get(ping.trip_id or "")
            if trip_idx is None or self._run_trip[prev.run] != trip_idx:
                continue
            reach = cfg.max_speed_mps * dt_s + cfg.snap_radius_m
            todo.append((j, ping, prev))
            shape_idx.append(self._run_shape[prev.run])
            from_m.append(prev.along_m - reach)
            to_m.append(prev.along_m + reach)
        if not todo:
            return {}
        rows = np.array([j for j, _, _ in todo])
        along, offset = net.locate_on_shapes(shape_idx, x[rows], y[rows], from_m=from_m, to_m=to_m)
        believed: dict[int, Hypothesis] = {}
        for (j, ping, prev), along_m, offset_m in zip(
            todo, along.tolist(), offset.tolist(), strict=True
        ):
            if offset_m > cfg.trip_hint_max_offset_m:
                continue
            parent = prev if cfg.keep_paths else None
            best = self._best_run_of_trip(ping, along_m, ((prev.day, prev.run),), parent=parent)
            if best is not None:
                self._remember(ping, (best,), best, given_trip=True)
                believed[j] = best
        return believed

    def _describe_followed(
        self,
        followed: list[tuple[int, Hypothesis]],
        pings: list[Ping],
        xs: list[float],
        ys: list[float],
    ) -> list[tuple[int, _Draft]]:
        """The answers of `_follow_given_trips` (pings[j] believed as hypothesis h, for each (j,
        h) in `followed`), their snapped points found in one numpy pass."""
        if not followed:
            return []
        spot_x, spot_y = self.network.points_at(
            np.array([self._run_shape[h.run] for _, h in followed]),
            np.array([h.along_m for _, h in followed]),
        )
        return [
            (j, self._describe(pings[j].vehicle_id, pings[j].timestamp, xs[j], ys[j], h,
                               off_route=False, reason=None, detail=None, trip_id_given=True,
                               spot=(sx, sy)))
            for (j, h), sx, sy in zip(followed, spot_x.tolist(), spot_y.tolist(), strict=True)
        ]  # fmt: skip

    # --- one ping -------------------------------------------------------------------------------

    def _match_one(
        self,
        ping: Ping,
        x: float,
        y: float,
        snapped: tuple[Snapped, ...] | None,
        candidates: tuple[_Candidate, ...] | None,
    ) -> Match | _Draft:
        """One ping; `snapped` is None when it was not snapped (it follows a given trip), and
        `candidates` when they were not found yet (it has a trip_id). A matched ping's answer is
        a `_Draft`, an unmatched one's a `Match`."""
        cfg = self.config
        net = self.network
        state = self.states.get(ping.vehicle_id)
        if state is not None:
            if ping.timestamp == state.last_timestamp:
                return rejected(ping, Reason.DUPLICATE, "same vehicle and timestamp seen before")
            if ping.timestamp < state.last_timestamp:
                return rejected(
                    ping,
                    Reason.OUT_OF_ORDER,
                    f"{state.last_timestamp - ping.timestamp:.0f} s older than the vehicle's "
                    "latest ping",
                )
            if ping.timestamp - state.last_timestamp > cfg.forget_after_s:
                state = None
        dt_s = ping.timestamp - state.last_timestamp if state is not None else 0.0
        previous = state.hypotheses if state is not None else ()

        hint_reason: tuple[Reason, str] | None = None
        route_filter: int | None = None
        if ping.route_id is not None:
            route_filter = net.route_index.get(ping.route_id)
            if route_filter is None:
                hint_reason = (
                    Reason.UNKNOWN_ROUTE,
                    f"route_id {ping.route_id!r} is not in the feed",
                )

        if ping.trip_id is not None:
            believed, why = self._believe_trip(ping, x, y, snapped or (), previous, dt_s)
            if believed is not None:
                return self._finish(ping, x, y, (believed,), believed, given_trip=True,
                                    off_route=False, reason=None)  # fmt: skip
            hint_reason = why
        if snapped is None:
            snapped = self._snap(np.array([x]), np.array([y]))[0]

        if candidates is None:
            candidates = self._candidate_table([ping], [snapped])[0]
        hypotheses = self._step(ping, x, y, candidates, previous, dt_s)
        if not hypotheses:
            if cfg.keep_paths:
                self._end_path(ping.vehicle_id)
            self.states[ping.vehicle_id] = VehicleState(ping.timestamp, ())
            if hint_reason is None:
                hint_reason = (
                    (Reason.NO_SHAPE_NEARBY,
                     f"no route shape within {cfg.snap_radius_m:.0f} m")
                    if not snapped
                    else (Reason.NO_TRIP_FITS, "near a route, but no scheduled trip fits the time")
                )  # fmt: skip
            return Match(
                vehicle_id=ping.vehicle_id,
                timestamp=ping.timestamp,
                state=State.NOT_MATCHED,
                reason=hint_reason[0],
                detail=hint_reason[1],
            )
        best = hypotheses[0]
        return self._finish(
            ping, x, y, hypotheses, best, given_trip=False, off_route=best.misses > 0,
            reason=hint_reason,
        )  # fmt: skip

    def _candidate_table(
        self, pings: Sequence[Ping], snapped: Sequence[tuple[Snapped, ...]]
    ) -> list[tuple[_Candidate, ...]]:
        """The candidates of each ping (see `_Candidate`), for a batch of pings in one pass.

        A candidate is a run on a snapped shape, active on the service day (yesterday or today,
        for times past midnight), whose schedule at that spot is within the delay window,
        optionally narrowed to the ping's `route_id`. The layout, one numpy row each:

        1. *combinations* (ping, service day, shape pass, pattern on that shape), in that order,
           which is the order in which `_step` offers the candidates (ties keep the first);
        2. each combination's window of runs, a slice of its pattern's runs by start time
           (bisected for all combinations at once in `Timetable.starts`);
        3. one row per run of the windows, in start order: filtered (active that day, route),
           scheduled at the spot (`Timetable.schedule_at`), and kept if the delay fits.

        The arithmetic is the per-candidate arithmetic done element-wise, so every number is the
        same to the last bit; the fit (float powers and cosines, which numpy rounds differently)
        is computed in Python, once per shape pass.
        """
        cfg = self.config
        net = self.network
        tt = self._timetable
        out: list[tuple[_Candidate, ...]] = [() for _ in pings]
        flat_passes = [p for passes in snapped for p in passes]
        if not flat_passes:
            return out
        # The passes of all pings, one row each (shape index, along, offset, heading, x, y).
        n_pass = len(flat_passes)
        passes_a = np.fromiter(chain.from_iterable(flat_passes), np.float64, 6 * n_pass)
        passes_a = passes_a.reshape(n_pass, 6)
        ping_of_pass = np.repeat(np.arange(len(pings)), [len(passes) for passes in snapped])
        # Per ping and service day (0: yesterday, 1: today): the day's index in `dates`, seconds
        # since the day's origin, and whether a run of that day may still be out.
        date_index: dict[dt.date, int] = {}
        day_date = np.zeros((len(pings), 2), dtype=np.int64)
        route = np.full(len(pings), -1, dtype=np.int64)  # -1: no route filter
        one_day = dt.timedelta(days=1)
        for j in [j for j, passes in enumerate(snapped) if passes]:
            ping = pings[j]
            today = net.local_date(ping.timestamp)
            day_date[j, 0] = date_index.setdefault(today - one_day, len(date_index))
            day_date[j, 1] = date_index.setdefault(today, len(date_index))
            if ping.route_id is not None:
                route[j] = net.route_index.get(ping.route_id, -1)
        dates = list(date_index)
        origin_s = np.array([net.day_origin(day) for day in dates])
        stamp_s = np.array([p.timestamp for p in pings], dtype=np.float64)
        day_s = stamp_s[:, None] - origin_s[day_date]
        day_live = ~(day_s > self._latest_end_s + cfg.max_late_s)
        active = np.stack([net.active_runs(day) for day in dates])  # (date, run)

        # 1. Combinations: (pass, day) sorted by (ping, day, pass), then one per pattern.
        cpass = np.tile(np.arange(n_pass), 2)
        cday = np.repeat(np.arange(2), n_pass)
        order = np.lexsort((cpass, cday, ping_of_pass[cpass]))
        cpass, cday = cpass[order], cday[order]
        live = day_live[ping_of_pass[cpass], cday]
        cpass, cday = cpass[live], cday[live]
        shape = passes_a[cpass, 0].astype(np.int64)
        n_patterns = self._shape_pattern_count[shape]
        pattern = self._shape_pattern[ragged_arange(self._shape_pattern_first[shape], n_patterns)]
        of_combo = np.repeat(np.arange(len(cpass)), n_patterns)
        cpass, cday = cpass[of_combo], cday[of_combo]
        cping = ping_of_pass[cpass]
        along = passes_a[cpass, 1]
        s = day_s[cping, cday]
        # 2. Each combination's window of runs by start time (long at the first stop).
        early_s = np.where(
            along <= self._pattern_start_zone_end[pattern], cfg.max_wait_s, cfg.max_early_s
        )
        earliest_s = np.maximum(
            s - cfg.max_late_s - self._pattern_max_duration[pattern],
            s - self._pattern_late_reach_s[pattern],
        )
        latest_s = np.minimum(s + early_s, s + self._pattern_early_reach_s[pattern])
        shifted = np.flatnonzero(np.isfinite(self._pattern_shift_reach_s[pattern]))
        if len(shifted):
            # A run of such a pattern is scheduled here at its start plus the first run's time
            # from its start (give or take the reach): bisect around that, not the whole trip.
            sp = pattern[shifted]
            first_row = np.zeros(len(shifted), dtype=np.int64)
            aim_s = s[shifted] - (
                tt.schedule_at(sp, first_row, along[shifted]) - self._pattern_first_start_s[sp]
            )
            reach_s = self._pattern_shift_reach_s[sp]
            earliest_s[shifted] = np.maximum(earliest_s[shifted], aim_s - reach_s)
            latest_s[shifted] = np.minimum(latest_s[shifted], aim_s + reach_s)
        lo = tt.starts.bisect(pattern, earliest_s, side="left")
        hi = tt.starts.bisect(pattern, latest_s, side="right")
        n_runs = np.maximum(hi - lo, 0)
        # 3. One row per run of the windows.
        combo = np.repeat(np.arange(len(lo)), n_runs)
        at = ragged_arange(lo, n_runs)  # position in `tt.run`
        run = tt.run[at]
        combo_date = day_date[cping, cday]
        keep = active[combo_date[combo], run]
        if (route >= 0).any():
            route_of = route[cping][combo]
            keep &= (route_of < 0) | (net.run_route[run] == route_of)
        combo, at, run = combo[keep], at[keep], run[keep]
        row = at - tt.starts.start[pattern[combo]]
        delay = s[combo] - tt.schedule_at(pattern, row, along, spot=combo)
        exact = net.runs.exact_times[run]
        half_headway = net.runs.headway_s[run] / 2
        early = early_s[combo]
        ok = np.where(
            exact,
            (delay >= -early) & (delay <= cfg.max_late_s),
            (delay >= -half_headway) & (delay < half_headway),
        )
        combo, run, delay, exact = combo[ok], run[ok], delay[ok], exact[ok]
        along_c = along[combo]
        # `_prior`, element-wise (inexact runs have no delay, hence no prior).
        early_run = delay < 0
        prior = np.where(
            ~exact,
            0.0,
            np.where(
                early_run & (along_c <= self._run_start_zone_end[run]),
                delay / cfg.wait_scale_s,
                np.where(early_run, delay / cfg.early_scale_s, -delay / cfg.late_scale_s),
            ),
        )
        # The tuples, built by zip (in C): rows are in ping order, so each ping's are a slice.
        ping_c = cping[combo]
        day_of = np.empty(len(dates), dtype=object)
        day_of[:] = dates
        days = day_of[combo_date[combo]].tolist()
        used = cpass[combo]
        fit_of_pass = np.zeros(n_pass)
        some = np.unique(used)
        fit_of_pass[some] = self._fits(pings, ping_of_pass[some].tolist(),
                                       [flat_passes[k] for k in some.tolist()])  # fmt: skip
        flat = tuple(
            zip(
                run.tolist(),
                days,
                along_c.tolist(),
                np.where(exact, delay, np.nan).tolist(),
                fit_of_pass[used].tolist(),
                prior.tolist(),
                self._run_key_a[run].tolist(),
                self._run_block_a[run].tolist(),
                (along_c <= self._run_terminal_zone_end[run]).tolist(),
                strict=True,
            )
        )
        bounds = np.searchsorted(ping_c, np.arange(len(pings) + 1)).tolist()
        return [flat[bounds[j] : bounds[j + 1]] for j in range(len(pings))]

    def _max_early_s(self, first_stop_m: float, along_m: float) -> float:
        """How early a run may be: long at its first stop, where buses wait to depart."""
        cfg = self.config
        return cfg.max_wait_s if along_m <= first_stop_m + cfg.start_zone_m else cfg.max_early_s

    def _gps_fit(self, offset_m: float) -> float:
        """Score of a fix `offset_m` from where it should be: Gaussian, with an outlier floor."""
        cfg = self.config
        return max(-0.5 * (offset_m / cfg.gps_sigma_m) ** 2, cfg.gps_floor)

    def _fits(
        self, pings: Sequence[Ping], ping_of: list[int], passes: list[Snapped]
    ) -> list[float]:
        """How well each fix `pings[ping_of[i]]` fits shape pass `passes[i]`: the distance to
        the shape (`_gps_fit`) plus, if the bus moves, its bearing against the shape's."""
        cfg = self.config
        sigma_m, floor, weight = cfg.gps_sigma_m, cfg.gps_floor, cfg.bearing_weight
        bearing_of = [
            p.bearing_deg
            if p.speed_mps is None or p.speed_mps >= cfg.min_speed_for_bearing_mps
            else None
            for p in pings
        ]
        out: list[float] = []
        for j, (_, _, offset_m, heading_deg, _, _) in zip(ping_of, passes, strict=True):
            fit = max(-0.5 * (offset_m / sigma_m) ** 2, floor)
            bearing = bearing_of[j]
            if bearing is not None:
                diff = abs(bearing - heading_deg) % 360.0  # `angle_diff_deg`, inline
                if diff > 180.0:
                    diff = 360.0 - diff
                fit += weight * (math.cos(math.radians(diff)) - 1.0)
            out.append(fit)
        return out

    def _key(self, run: int, day: dt.date) -> tuple[int, dt.date]:
        """Hypotheses continue per run; on inexact frequency runs, per trip (any departure)."""
        return (self._run_key[run], day)

    def _start_point(self, run: int) -> tuple[float, float]:
        """Projected (x, y) of a run's first stop on its shape (cached per run)."""
        found = self._run_start_point.get(run)
        if found is None:
            found = self._run_start_point[run] = self.network.point_at(
                self._run_shape[run], self._run_first_stop[run]
            )
        return found

    def _step(
        self,
        ping: Ping,
        x: float,
        y: float,
        candidates: tuple[_Candidate, ...],
        previous: tuple[Hypothesis, ...],
        dt_s: float,
    ) -> tuple[Hypothesis, ...]:
        """The vehicle's new hypotheses, best first, from its `previous` ones and this ping.

        Every candidate and carried-forward run is *offered*: per key (`_key`) the best score
        wins, the first offered on a tie. Offers are plain tuples of a `Hypothesis`'s fields
        (`_Offer`); only the kept few become `Hypothesis`.
        """
        cfg = self.config
        run_key = self._run_key
        arrived_from = self._run_arrived_from
        ended_from = self._run_ended_from  # near the end of their runs
        best_prev = previous[0].score if previous else 0.0
        # Per-ping weight of the schedule: buses keep roughly to it, early less than late.
        schedule_weight = cfg.schedule_weight * min(dt_s, 120.0) / 30.0
        # Moving on along the same run, per key: the previous hypothesis, its score, where it
        # was, what staying there costs (an arrived run gives way to its block's next one) and
        # how far it may go without cost (waiting: anywhere near the terminal, not exactly at
        # the first stop). Backtracking past the GPS noise, or going farther than that, costs in
        # proportion.
        reach = cfg.max_speed_mps * dt_s + cfg.backtrack_tolerance_m
        waited_reach = reach + cfg.layover_radius_m
        stay_arrived = 0.0 + cfg.arrived_cost
        by_key: dict[tuple[int, dt.date], tuple[Hypothesis, float, float, float, float]] = {}
        prev_keys: list[tuple[int, dt.date]] = []
        ended0: Hypothesis | None = None  # the first that has ended its run, and the best score
        best_ended = -math.inf  # of those (`max`: the first that is greater)
        for h in previous:  # unpacked: faster than reading the fields by name
            run, day, along_m, _, score, _, waiting, _, _, _ = h
            key = (run_key[run], day)
            prev_keys.append(key)
            by_key[key] = (h, score, along_m,
                           stay_arrived if along_m >= arrived_from[run] else 0.0,
                           waited_reach if waiting else reach)  # fmt: skip
            if not waiting and along_m >= ended_from[run]:
                if ended0 is None:
                    ended0 = h
                if score > best_ended:
                    best_ended = score
        tolerance = cfg.backtrack_tolerance_m
        scale = cfg.backtrack_scale_m

        new: dict[tuple[int, dt.date], _Offer] = {}
        now_s = ping.timestamp
        keep = cfg.keep_paths

        excluded = self.exclusions.get(ping.vehicle_id)
        if excluded is not None:  # runs another vehicle holds now are never offered
            candidates = tuple(
                c for c in candidates
                if not any(t0 <= now_s <= t1 for t0, t1 in excluded.get((c[0], c[1]), ()))
            )  # fmt: skip

        if not previous:  # a first sighting: the delay prior and the fit
            for run, day, along, delay, fit, prior, run_key_c, _, _ in candidates:
                key = (run_key_c, day)
                score = prior + fit
                old = new.get(key)
                if old is None or score > old[4]:
                    new[key] = (run, day, along, delay, score, 0, False, _NO_SPOT, now_s, None)
        else:
            prev0 = previous[0]
            prev_block = self._run_block[prev0.run]
            ended_block = self._run_block[ended0.run] if ended0 is not None else -1
            # Switching run: the same sums as `switch_x + (switch_block if other else 0.0)`.
            mid_same = cfg.switch_mid_route + 0.0
            mid_other = cfg.switch_mid_route + cfg.switch_block
            start_same = cfg.switch_end_to_start + 0.0
            start_other = cfg.switch_end_to_start + cfg.switch_block
            for run, day, along, delay, fit, prior, run_key_c, block, near_start in candidates:
                key = (run_key_c, day)
                # The best way here: from the best hypothesis (mid-route switch), from the best
                # ended one (to the start of a run), or along the same run; the first on a tie.
                best = best_prev + (mid_same if block == prev_block else mid_other) + prior
                parent = prev0
                if ended0 is not None and near_start:
                    to_start = start_same if block == ended_block else start_other
                    score = best_ended + to_start + prior
                    if score > best:
                        best, parent = score, ended0
                same = by_key.get(key)
                if same is not None:
                    h, score, was_m, cost, reach_m = same
                    moved = along - was_m
                    if moved < -tolerance:
                        cost -= (-moved - tolerance) / scale
                    if moved > reach_m:
                        cost -= (moved - reach_m) / scale
                    score += cost
                    if score > best:
                        best, parent = score, h
                score = best + fit + schedule_weight * prior
                old = new.get(key)
                if old is None or score > old[4]:
                    new[key] = (run, day, along, delay, score, 0, False, _NO_SPOT, now_s,
                                parent if keep else None)  # fmt: skip

        def offer(o: _Offer) -> None:
            if excluded is not None and any(
                t0 <= now_s <= t1 for t0, t1 in excluded.get((o[0], o[1]), ())
            ):
                return
            key = (run_key[o[0]], o[1])
            old = new.get(key)
            if old is None or o[4] > old[4]:
                new[key] = o

        run_next = self._run_next
        for h, key in zip(previous, prev_keys, strict=True):
            run, day, along_m, delay_s, score, misses, waiting, wait_spot, _, _ = h
            # A vehicle at the end of its run waits there for the next run of its block.
            if waiting:
                waiting_for = run
            elif along_m >= arrived_from[run] and run_next[run] >= 0:
                waiting_for = run_next[run]
            else:
                waiting_for = -1
            if waiting_for >= 0:
                start_m = self._run_first_stop[waiting_for]
                delay = ping.timestamp - self._departure_epoch(waiting_for, day)
                if delay >= -cfg.max_wait_s:
                    cost = 0.0 if waiting else cfg.switch_block_next
                    if waiting:
                        spot = wait_spot
                    else:
                        spot = self.network.point_at(self._run_shape[run], along_m)
                    start = self._start_point(waiting_for)
                    away_m = min(math.dist((x, y), spot), math.dist((x, y), start))
                    fit = self._gps_fit(away_m)
                    if away_m <= cfg.layover_radius_m:
                        fit = max(fit, cfg.layover_roaming_fit)
                    late = schedule_weight * min(0.0, -delay / cfg.late_scale_s)
                    offer((waiting_for, day, start_m, delay, score + cost + fit + late, 0,
                           True, spot, now_s, h if keep else None))  # fmt: skip
            # Runs with no candidate this ping are carried forward (an outlier, a detour).
            if key not in new and misses < cfg.max_misses and not waiting:
                delay = delay_s + dt_s if not math.isnan(delay_s) else delay_s
                offer((run, day, along_m, delay, score + cfg.miss_cost, misses + 1,
                       False, _NO_SPOT, now_s, h if keep else None))  # fmt: skip
        if not new:
            return ()
        # Scores are path log-likelihoods; only their differences matter, so they are not
        # renormalised (float64 keeps ample precision over a day of pings).
        ranked = sorted(new.values(), key=itemgetter(4), reverse=True)
        floor = ranked[0][4] - cfg.keep_score_margin
        return tuple(
            [_new_tuple(Hypothesis, o) for o in ranked[: cfg.keep_hypotheses] if o[4] >= floor]
        )

    def _departure_epoch(self, run: int, day: dt.date) -> float:
        return self.network.day_origin(day) + self._run_start_s[run]

    # --- trip hints -----------------------------------------------------------------------------

    def _believe_trip(
        self,
        ping: Ping,
        x: float,
        y: float,
        snapped: tuple[Snapped, ...],
        previous: tuple[Hypothesis, ...],
        dt_s: float,
    ) -> tuple[Hypothesis | None, tuple[Reason, str] | None]:
        """The ping's own trip_id, checked against the schedule and the shape."""
        cfg = self.config
        net = self.network
        assert ping.trip_id is not None
        trip_idx = net.trip_index.get(ping.trip_id)
        if trip_idx is None:
            return None, (Reason.UNKNOWN_TRIP, f"trip_id {ping.trip_id!r} is not in the feed")
        trip = net.trips[trip_idx]
        shape_idx = trip.shape_idx
        prev = (
            previous[0]
            if previous and int(net.runs.trip_idx[previous[0].run]) == trip_idx
            else None
        )
        passes = [(a, o) for s, a, o, *_ in snapped if s == shape_idx]
        if prev is not None and passes:
            along, offset = min(passes, key=lambda p: abs(p[0] - prev.along_m))
        elif passes:
            along, offset = min(passes, key=lambda p: p[1])
        elif prev is not None:  # near where the vehicle was, then anywhere on the shape
            reach = cfg.max_speed_mps * dt_s + cfg.snap_radius_m
            along, offset = net.locate_on_shape(shape_idx, x, y, from_m=prev.along_m - reach,
                                                to_m=prev.along_m + reach)  # fmt: skip
            if offset > cfg.trip_hint_max_offset_m:
                along, offset = net.locate_on_shape(shape_idx, x, y)
        else:
            along, offset = net.locate_on_shape(shape_idx, x, y)
        if offset > cfg.trip_hint_max_offset_m:
            return None, (
                Reason.TRIP_MISMATCH,
                f"ping is {offset:.0f} m from the shape of trip {ping.trip_id!r}",
            )
        best = None
        if prev is not None:  # the same run as before, usually
            best = self._best_run_of_trip(ping, along, ((prev.day, prev.run),))
        if best is None:
            today = net.local_date(ping.timestamp)
            runs = net.runs_of_trip.get(trip_idx, [])
            choices = [(day, run) for day in (today, today - dt.timedelta(days=1)) for run in runs]
            best = self._best_run_of_trip(ping, along, choices)
        if best is None:
            return None, (
                Reason.TRIP_NOT_RUNNING,
                f"trip {ping.trip_id!r} is not scheduled around this time",
            )
        if cfg.keep_paths and previous:
            best = best._replace(parent=previous[0])
        return best, None

    def _best_run_of_trip(
        self,
        ping: Ping,
        along: float,
        choices: Sequence[tuple[dt.date, int]],
        *,
        parent: Hypothesis | None = None,
    ) -> Hypothesis | None:
        """Of a trip's (service day, run) pairs, the one whose schedule fits the ping best."""
        cfg = self.config
        net = self.network
        best: Hypothesis | None = None
        for day, run in choices:
            if not net.active_runs(day)[run]:
                continue
            delay = ping.timestamp - net.day_origin(day) - net.scheduled_time_s(run, along)
            exact = self._run_exact[run]
            if exact:
                early_s = self._max_early_s(self._run_first_stop[run], along)
                if not -early_s <= delay <= cfg.max_late_s * 2:
                    continue
            elif not -self._run_headway[run] / 2 <= delay < self._run_headway[run] / 2:
                continue
            if best is None or abs(delay) < abs(best.delay_s):
                best = Hypothesis(run, day, along, delay if exact else math.nan, 0.0,
                                  at_s=ping.timestamp, parent=parent)  # fmt: skip
        return best

    # --- output ---------------------------------------------------------------------------------

    def _finish(
        self,
        ping: Ping,
        x: float,
        y: float,
        hypotheses: tuple[Hypothesis, ...],
        best: Hypothesis,
        *,
        given_trip: bool,
        off_route: bool,
        reason: tuple[Reason, str] | None,
    ) -> _Draft:
        self._remember(ping, hypotheses, best, given_trip=given_trip)
        return self._describe(
            ping.vehicle_id, ping.timestamp, x, y, best, off_route=off_route,
            reason=reason[0] if reason else None, detail=reason[1] if reason else None,
            trip_id_given=given_trip,
        )  # fmt: skip

    def _remember(
        self, ping: Ping, hypotheses: tuple[Hypothesis, ...], best: Hypothesis, *, given_trip: bool
    ) -> None:
        """The vehicle's new state after `ping`, answered with `best`."""
        if self.config.keep_paths and best.parent is None:
            self._end_path(ping.vehicle_id)
        self.states[ping.vehicle_id] = VehicleState(ping.timestamp, hypotheses, given_trip)

    def _describe(
        self,
        vehicle_id: str,
        timestamp: float,
        x: float,
        y: float,
        best: Hypothesis,
        *,
        off_route: bool,
        reason: Reason | None,
        detail: str | None,
        trip_id_given: bool,
        spot: tuple[float, float] | None = None,
    ) -> _Draft:
        """The answer from hypothesis `best` for a ping at projected (x, y), as a `_Draft`.

        `spot` is the snapped point (`Network.point_at` of `best`) in metres, if already
        computed.
        """
        route_id, trip_id, direction_id, shape_id, headway, shape_idx, start_zone_end, arrived_m = (
            self._run_answer(best.run)
        )
        sx, sy = self.network.point_at(shape_idx, best.along_m) if spot is None else spot
        offset = math.hypot(x - sx, y - sy)
        along = best.along_m
        if best.waiting:
            state = State.LAYOVER
        elif off_route or offset > self.config.snap_radius_m:
            state = State.OFF_ROUTE
        elif (along <= start_zone_end and not best.delay_s > 0) or along >= arrived_m:
            state = State.LAYOVER
        else:
            state = State.IN_SERVICE
        delay = best.delay_s
        return (vehicle_id, timestamp, state, reason, route_id, trip_id,
                self._service_date(best.day), direction_id, shape_id, along, sx, sy, offset,
                None if math.isnan(delay) else delay, headway, trip_id_given, detail)  # fmt: skip

    def _run_answer(self, run: int) -> _RunAnswer:
        """See `_RunAnswer` (cached per run)."""
        found = self._run_answers.get(run)
        if found is None:
            cfg = self.config
            net = self.network
            trip = net.trips[self._run_trip[run]]
            headway = self._run_headway[run]
            found = self._run_answers[run] = (
                net.routes[trip.route_idx].route_id,
                trip.trip_id,
                trip.direction_id if trip.direction_id >= 0 else None,
                net.shapes[trip.shape_idx].shape_id,
                None if math.isnan(headway) else headway,
                trip.shape_idx,
                self._run_first_stop[run] + cfg.start_zone_m,
                self._run_arrived_from[run],
            )
        return found

    def _complete(self, drafts: list[_Draft]) -> list[Match]:
        """The `Match` of each draft, its snapped point converted to degrees (in one call)."""
        if not drafts:
            return []
        lat, lon = self.network.unproject(
            np.array([d[10] for d in drafts], dtype=np.float64),
            np.array([d[11] for d in drafts], dtype=np.float64),
        )
        return [
            Match(d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], la, lo, d[12],
                  d[13], d[14], d[15], d[16])
            for d, la, lo in zip(drafts, lat.tolist(), lon.tolist(), strict=True)
        ]  # fmt: skip

    def _service_date(self, day: dt.date) -> str:
        """YYYYMMDD of a service day (cached: called once per answer)."""
        found = self._service_dates.get(day)
        if found is None:
            found = self._service_dates[day] = day.strftime("%Y%m%d")
        return found

    # --- hindsight (keep_paths) -------------------------------------------------------------

    def _end_path(self, vehicle_id: str) -> None:
        """The vehicle's current path ends here (it was lost, or restarts afresh): keep its tip."""
        state = self.states.get(vehicle_id)
        if state is not None and state.hypotheses:
            self.path_ends.setdefault(vehicle_id, []).append(state.hypotheses[0])

    def best_paths(self, vehicle_id: str) -> list[Hypothesis]:
        """With `keep_paths`: the tips of the vehicle's paths so far, oldest first.

        Following `parent` from a tip gives, for every ping on that path, the hypothesis that
        best explains the whole path in hindsight (which may differ from what was answered live).
        """
        tips = list(self.path_ends.get(vehicle_id, ()))
        state = self.states.get(vehicle_id)
        if state is not None and state.hypotheses:
            tips.append(state.hypotheses[0])
        return tips

    def relabel(
        self, matches: Sequence[Match], pings: Sequence[Ping], path: Sequence[Hypothesis]
    ) -> list[Match]:
        """`matches` of one vehicle's `pings` re-described by hypotheses of `path` (by time)."""
        by_time = {h.at_s: h for h in path}
        out = list(matches)
        todo = [i for i, m in enumerate(matches)
                if m.state is not State.REJECTED and m.timestamp in by_time]  # fmt: skip
        if not todo:
            return out
        lat = np.array([pings[i].lat for i in todo])
        lon = np.array([pings[i].lon for i in todo])
        x, y = self.network.project(lat, lon)
        described = [
            self._describe(m.vehicle_id, m.timestamp, float(x[k]), float(y[k]), h,
                           off_route=h.misses > 0, reason=m.reason, detail=m.detail,
                           trip_id_given=m.trip_id_given)
            for k, i in enumerate(todo)
            for m, h in [(matches[i], by_time[matches[i].timestamp])]
        ]  # fmt: skip
        for i, m in zip(todo, self._complete(described), strict=True):
            out[i] = m
        return out


def _rounds(pings: Sequence[Ping]) -> list[list[int]]:
    """Indices of `pings` in rounds: round k holds the k-th ping of each vehicle, in order."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for j, ping in enumerate(pings):
        k = seen.get(ping.vehicle_id, 0)
        seen[ping.vehicle_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(j)
    return rounds


def _hints_are_clean(ping: Ping) -> bool:
    """Whether `clean_hints` would return `ping` unchanged (the usual case): skips its copy."""
    speed, bearing, accuracy = ping.speed_mps, ping.bearing_deg, ping.accuracy_m
    return (
        (speed is None or 0 <= speed <= MAX_SPEED_MPS)
        and (bearing is None or 0 <= bearing < 360)
        and (accuracy is None or 0 <= accuracy < math.inf)
        and (ping.route_id is None or bool(ping.route_id.strip()))
        and (ping.trip_id is None or bool(ping.trip_id.strip()))
    )
