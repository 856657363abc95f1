"""One step of a vehicle's filter: its hypotheses after one more ping (see `step`).

A *hypothesis* is one guess of what a vehicle is doing: a scheduled run on a service day, and
where along it. Its score is the log-likelihood of the best path of guesses that ends in it:

- the fit of each fix (distance to the shape, bearing against the shape's direction);
- moving along the same run costs nothing forward at bus speeds; going back more than GPS noise,
  or faster than a bus can, costs in proportion (which keeps progress monotone around loops and
  tells the two directions of one street apart);
- a small per-ping term from a delay prior (buses run late more than early);
- switching runs is cheap only from the end of one run to the start of the next (cheapest to the
  next run of the same block), dear mid-route;
- a vehicle at the end of its run *waits* for its block's next run, and may roam near the
  terminal meanwhile; a run with no candidate this ping (an outlier, a detour) is carried forward
  at a fixed cost for a few pings.

The vehicle keeps its few best hypotheses (`MatcherConfig.keep_hypotheses`).

Pure: values in, values out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple

from tracker.core.candidates import Candidate
from tracker.core.model import Ping
from tracker.core.tables import RunTables

Exclusions = dict[tuple[int, dt.date], list[tuple[float, float]]]
"""Runs a vehicle may not be matched to during time spans: {(run, service day): [(from_s, to_s),
...]} (another vehicle runs them)."""


class Hypothesis(NamedTuple):
    """One guess of what a vehicle is doing: a run on a service day, and where along it.

    A named tuple, not a frozen dataclass: `step` builds a dozen per ping, ~5x faster so.
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


_Offer = tuple[
    int, dt.date, float, float, float, int, bool, tuple[float, float], float, "Hypothesis | None"
]
"""What `step` offers, before the kept few become `Hypothesis`: a plain tuple of its fields in
its order (score at 4), made one by `_new_tuple(Hypothesis, offer)` (no keyword handling)."""

_new_tuple = tuple.__new__

_NO_SPOT = (math.nan, math.nan)


def step(
    t: RunTables,
    ping: Ping,
    x: float,
    y: float,
    candidates: Sequence[Candidate],
    previous: tuple[Hypothesis, ...],
    dt_s: float,
    excluded: Exclusions | None = None,
) -> tuple[Hypothesis, ...]:
    """The vehicle's new hypotheses, best first, from its `previous` ones and this ping.

    `excluded`: runs the vehicle may not be on during the given spans (another vehicle runs
    them), never offered.

    Every candidate and carried-forward run is *offered*: per key (`RunTables.key`) the best score
    wins, the first offered on a tie. Offers are plain tuples of a `Hypothesis`'s fields
    (`_Offer`); only the kept few become `Hypothesis`.
    """
    cfg = t.config
    run_key = t.run_key
    arrived_from = t.run_arrived_from
    ended_from = t.run_ended_from  # near the end of their runs
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
        prev_block = t.run_block[prev0.run]
        ended_block = t.run_block[ended0.run] if ended0 is not None else -1
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

    run_next = t.run_next
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
            start_m = t.run_first_stop[waiting_for]
            delay = ping.timestamp - t.departure_epoch(waiting_for, day)
            if delay >= -cfg.max_wait_s:
                cost = 0.0 if waiting else cfg.switch_block_next
                spot = wait_spot if waiting else t.network.point_at(t.run_shape[run], along_m)
                start = t.start_point(waiting_for)
                away_m = min(math.dist((x, y), spot), math.dist((x, y), start))
                fit = t.gps_fit(away_m)
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
