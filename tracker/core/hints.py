"""Trip ids sent by the vehicles: checked against the schedule and the shape, then believed.

A ping may carry its `trip_id` (as a GTFS-realtime feed or a well-configured device does). It is
believed if the trip is in the feed, runs now (today or yesterday, past midnight) and the ping is
within `MatcherConfig.trip_hint_max_offset_m` of its shape; if not, the ping is matched by
inference and the reason is reported (`unknown_trip`, `trip_not_running`, `trip_mismatch`).
`follow_given_trips` is the fast path for the usual case, a ping that continues the trip its
vehicle was believed on, for many vehicles at once.

Pure: values in, values out.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import numpy as np

from tracker.core.candidates import Snapped
from tracker.core.filter import Hypothesis, VehicleState
from tracker.core.model import Ping, Reason
from tracker.core.network import FloatArray
from tracker.core.tables import RunTables


def believe_trip(
    t: RunTables,
    ping: Ping,
    x: float,
    y: float,
    snapped: tuple[Snapped, ...],
    previous: tuple[Hypothesis, ...],
    dt_s: float,
) -> tuple[Hypothesis | None, tuple[Reason, str] | None]:
    """The ping's own trip_id, checked against the schedule and the shape."""
    cfg = t.config
    net = t.network
    assert ping.trip_id is not None
    trip_idx = net.trip_index.get(ping.trip_id)
    if trip_idx is None:
        return None, (Reason.UNKNOWN_TRIP, f"trip_id {ping.trip_id!r} is not in the feed")
    trip = net.trips[trip_idx]
    shape_idx = trip.shape_idx
    prev = previous[0] if previous and int(net.runs.trip_idx[previous[0].run]) == trip_idx else None
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
        best = best_run_of_trip(t, ping, along, ((prev.day, prev.run),))
    if best is None:
        today = net.local_date(ping.timestamp)
        runs = net.runs_of_trip.get(trip_idx, [])
        choices = [(day, run) for day in (today, today - dt.timedelta(days=1)) for run in runs]
        best = best_run_of_trip(t, ping, along, choices)
    if best is None:
        return None, (
            Reason.TRIP_NOT_RUNNING,
            f"trip {ping.trip_id!r} is not scheduled around this time",
        )
    if cfg.keep_paths and previous:
        best = best._replace(parent=previous[0])
    return best, None


def best_run_of_trip(
    t: RunTables,
    ping: Ping,
    along: float,
    choices: Sequence[tuple[dt.date, int]],
    *,
    parent: Hypothesis | None = None,
) -> Hypothesis | None:
    """Of a trip's (service day, run) pairs, the one whose schedule fits the ping best."""
    cfg = t.config
    net = t.network
    best: Hypothesis | None = None
    for day, run in choices:
        if not net.active_runs(day)[run]:
            continue
        delay = ping.timestamp - net.day_origin(day) - net.scheduled_time_s(run, along)
        exact = t.run_exact[run]
        if exact:
            early_s = t.max_early_s(t.run_first_stop[run], along)
            if not -early_s <= delay <= cfg.max_late_s * 2:
                continue
        elif not -t.run_headway[run] / 2 <= delay < t.run_headway[run] / 2:
            continue
        if best is None or abs(delay) < abs(best.delay_s):
            best = Hypothesis(run, day, along, delay if exact else math.nan, 0.0,
                              at_s=ping.timestamp, parent=parent)  # fmt: skip
    return best


def follow_given_trips(
    t: RunTables,
    states: Mapping[str, VehicleState],
    batch_idx: list[int],
    pings: list[Ping],
    x: FloatArray,
    y: FloatArray,
) -> dict[int, Hypothesis]:
    """The fast path for pings that continue a believed trip_id (most pings, when given).

    Exactly what `Matcher` does for such a ping, for many pings of different vehicles (with
    their `states`) at once: locate each on its trip's shape near the vehicle's last position
    (one numpy pass for all), check its schedule, believe it (the caller remembers it as the
    vehicle's new state and describes the answers for the whole batch at once:
    `tracker.core.answers.describe_followed`). A ping that would take any other turn there (a
    duplicate, a long silence, far from the shape, off schedule) is left out of the answer, and
    the general path takes it from the start.
    """
    cfg = t.config
    net = t.network
    todo: list[tuple[int, Ping, Hypothesis]] = []
    shape_idx: list[int] = []
    from_m: list[float] = []
    to_m: list[float] = []
    for j in batch_idx:
        ping = pings[j]
        state = states.get(ping.vehicle_id)
        if state is None or not state.hypotheses:
            continue
        dt_s = ping.timestamp - state.last_timestamp
        if not 0.0 < dt_s <= cfg.forget_after_s:
            continue  # duplicate, out of order, or silent so long it is matched afresh
        prev = state.hypotheses[0]
        trip_idx = net.trip_index.get(ping.trip_id or "")
        if trip_idx is None or t.run_trip[prev.run] != trip_idx:
            continue
        reach = cfg.max_speed_mps * dt_s + cfg.snap_radius_m
        todo.append((j, ping, prev))
        shape_idx.append(t.run_shape[prev.run])
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
        best = best_run_of_trip(t, ping, along_m, ((prev.day, prev.run),), parent=parent)
        if best is not None:
            believed[j] = best
    return believed
