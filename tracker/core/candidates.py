"""Where a ping may be: the shape passes near it, and the scheduled runs it may be on.

`snap` finds every pass of every shape within `MatcherConfig.snap_radius_m` of each point (a loop
passes the same corner twice: both passes are candidates); `candidate_table` turns a batch of
pings' passes into their *candidates*: every run on a snapped shape, active on the service day,
whose schedule at that spot is within the delay window, with how well the fix fits there and the
delay prior. Both work on a whole batch at once, in numpy, and depend on the ping alone (not on
the vehicle's state), so they can be cached per ping (`PingCache`).

Pure: values in, values out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from itertools import chain

import numpy as np

from tracker.core.model import Ping
from tracker.core.network import FloatArray, ragged_arange
from tracker.core.tables import RunTables

Snapped = tuple[int, float, float, float, float, float]
"""One pass of a shape near a ping: (shape_idx, along_m, offset_m, heading_deg, x_m, y_m)."""


Candidate = tuple[int, dt.date, float, float, float, float, int, int, bool]
"""A run the ping may be on, as `tracker.core.filter.step` reads it: (run, service day, along_m,
delay_s (NaN on inexact runs), fit (`fits` of the shape pass), prior (the delay prior), run key
(`RunTables.key` without the day: a batch holds hundreds of thousands of candidates, and a tuple
fewer each spares the garbage collector), block (`RunTables.run_block`), near_start (within
`terminal_zone_m` of the run's first stop))."""

PingCache = dict[Ping, tuple[tuple[Snapped, ...], tuple[Candidate, ...] | None]]
"""Snapped passes and candidates per ping: they depend on the ping alone (not on the vehicle's
state), so matching the same pings again (hindsight's conflict rounds) can reuse them."""


def candidate_table(
    t: RunTables, pings: Sequence[Ping], snapped: Sequence[tuple[Snapped, ...]]
) -> list[tuple[Candidate, ...]]:
    """The candidates of each ping (see `Candidate`), for a batch of pings in one pass.

    A candidate is a run on a snapped shape, active on the service day (yesterday or today,
    for times past midnight), whose schedule at that spot is within the delay window,
    optionally narrowed to the ping's `route_id`. The layout, one numpy row each:

    1. *combinations* (ping, service day, shape pass, pattern on that shape), in that order,
       which is the order in which `tracker.core.filter.step` offers the candidates (ties keep
       the first);
    2. each combination's window of runs, a slice of its pattern's runs by start time
       (bisected for all combinations at once in `Timetable.starts`);
    3. one row per run of the windows, in start order: filtered (active that day, route),
       scheduled at the spot (`Timetable.schedule_at`), and kept if the delay fits.

    The arithmetic is the per-candidate arithmetic done element-wise, so every number is the
    same to the last bit; the fit (float powers and cosines, which numpy rounds differently)
    is computed in Python, once per shape pass.
    """
    cfg = t.config
    net = t.network
    tt = t.timetable
    out: list[tuple[Candidate, ...]] = [() for _ in pings]
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
    day_live = ~(day_s > t.latest_end_s + cfg.max_late_s)
    active = np.stack([net.active_runs(day) for day in dates])  # (date, run)

    # 1. Combinations: (pass, day) sorted by (ping, day, pass), then one per pattern.
    cpass = np.tile(np.arange(n_pass), 2)
    cday = np.repeat(np.arange(2), n_pass)
    order = np.lexsort((cpass, cday, ping_of_pass[cpass]))
    cpass, cday = cpass[order], cday[order]
    live = day_live[ping_of_pass[cpass], cday]
    cpass, cday = cpass[live], cday[live]
    shape = passes_a[cpass, 0].astype(np.int64)
    n_patterns = t.shape_pattern_count[shape]
    pattern = t.shape_pattern[ragged_arange(t.shape_pattern_first[shape], n_patterns)]
    of_combo = np.repeat(np.arange(len(cpass)), n_patterns)
    cpass, cday = cpass[of_combo], cday[of_combo]
    cping = ping_of_pass[cpass]
    along = passes_a[cpass, 1]
    s = day_s[cping, cday]
    # 2. Each combination's window of runs by start time (long at the first stop).
    early_s = np.where(along <= t.pattern_start_zone_end[pattern], cfg.max_wait_s, cfg.max_early_s)
    earliest_s = np.maximum(
        s - cfg.max_late_s - t.pattern_max_duration[pattern],
        s - t.pattern_late_reach_s[pattern],
    )
    latest_s = np.minimum(s + early_s, s + t.pattern_early_reach_s[pattern])
    shifted = np.flatnonzero(np.isfinite(t.pattern_shift_reach_s[pattern]))
    if len(shifted):
        # A run of such a pattern is scheduled here at its start plus the first run's time
        # from its start (give or take the reach): bisect around that, not the whole trip.
        sp = pattern[shifted]
        first_row = np.zeros(len(shifted), dtype=np.int64)
        aim_s = s[shifted] - (
            tt.schedule_at(sp, first_row, along[shifted]) - t.pattern_first_start_s[sp]
        )
        reach_s = t.pattern_shift_reach_s[sp]
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
            early_run & (along_c <= t.run_start_zone_end[run]),
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
    fit_of_pass[some] = fits(t, pings, ping_of_pass[some].tolist(),
                                   [flat_passes[k] for k in some.tolist()])  # fmt: skip
    flat = tuple(
        zip(
            run.tolist(),
            days,
            along_c.tolist(),
            np.where(exact, delay, np.nan).tolist(),
            fit_of_pass[used].tolist(),
            prior.tolist(),
            t.run_key_a[run].tolist(),
            t.run_block_a[run].tolist(),
            (along_c <= t.run_terminal_zone_end[run]).tolist(),
            strict=True,
        )
    )
    bounds = np.searchsorted(ping_c, np.arange(len(pings) + 1)).tolist()
    return [flat[bounds[j] : bounds[j + 1]] for j in range(len(pings))]


def fits(
    t: RunTables, pings: Sequence[Ping], ping_of: list[int], passes: list[Snapped]
) -> list[float]:
    """How well each fix `pings[ping_of[i]]` fits shape pass `passes[i]`: the distance to
    the shape (`RunTables.gps_fit`) plus, if the bus moves, its bearing against the shape's."""
    cfg = t.config
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


def snap(t: RunTables, x: FloatArray, y: FloatArray) -> list[tuple[Snapped, ...]]:
    """Every shape pass near each point, as plain tuples per point.

    A point repeated in the batch (a parked bus reports one position again and again: a
    fifth of the WMATA day's pings repeat the vehicle's previous one) is snapped once.
    """
    if len(x) < 2:
        return _snap_all(t, x, y)
    xy = np.stack([x, y], axis=1)
    unique_xy, inverse = np.unique(xy, axis=0, return_inverse=True)
    if len(unique_xy) < len(xy):
        once = _snap_all(t, unique_xy[:, 0], unique_xy[:, 1])
        return [once[k] for k in inverse.ravel().tolist()]
    return _snap_all(t, x, y)


def _snap_all(t: RunTables, x: FloatArray, y: FloatArray) -> list[tuple[Snapped, ...]]:
    """`snap`, every point on its own."""
    snaps = t.network.snap(x, y, radius_m=t.config.snap_radius_m)
    bounds = np.searchsorted(snaps.point, np.arange(len(x) + 1)).tolist()
    rows = tuple(zip(snaps.shape_idx.tolist(), snaps.along_m.tolist(), snaps.offset_m.tolist(),
                     snaps.heading_deg.tolist(), snaps.x_m.tolist(), snaps.y_m.tolist(),
                     strict=True))  # fmt: skip
    return [rows[bounds[j] : bounds[j + 1]] for j in range(len(x))]
