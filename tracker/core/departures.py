"""Departures from a stop, and the stops ahead of a vehicle: the schedule plus the live delay.

Pure: values in, values out. The caller passes `now_s` and the live delays; nothing here reads
the clock.

Times. GTFS stop times count from the service day's origin (noon minus 12 h, local time: see
`Network.day_origin`) and go past 24:00 for trips after midnight, so what leaves a stop around
`now_s` can belong to yesterday's, today's or tomorrow's service day (local dates in the agency's
time zone). All three are looked at; on a daylight-saving day the origin rule gives the times
the GTFS spec means, not wall-clock readings.

Live delays are keyed ``(trip_id, service_date)`` with the date as ``YYYYMMDD``. Expected time =
scheduled time + the vehicle's current delay, with no attempt to make up time at stops.

Frequency-based trips (frequencies.txt) have one run per departure, all under one trip_id:

- with ``exact_times=1`` the departures are scheduled exactly and are listed as such;
- with ``exact_times=0`` only the headway is promised: the departures listed are the nominal
  ones (``exact_times`` False, ``headway_s`` set), and a client should say "every N min";
- a live delay keyed by trip and day cannot tell which run of such a trip a vehicle drives, so
  it is not applied to frequency-based departures.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tracker.core.network import Network

LiveDelays = Mapping[tuple[str, str], float]
"""(trip_id, service_date "YYYYMMDD") → the delay of the vehicle driving it, seconds."""

AT_STOP_M = 10.0
"""A stop this far behind a vehicle's position along the shape still counts as ahead (the
vehicle is at it, and snapping is a few metres off)."""

DATE_FORMAT = "%Y%m%d"


@dataclass(frozen=True, slots=True)
class Departure:
    """One scheduled departure of a trip from a stop, with its live delay when one is known."""

    stop_id: str
    route_id: str
    trip_id: str
    headsign: str
    direction_id: int | None
    service_date: str  # YYYYMMDD, the trip's service day
    scheduled_s: float  # epoch s: the departure time in the schedule
    delay_s: float | None  # the live delay of the vehicle on this trip; None: none known
    expected_s: float  # scheduled_s + delay_s, or scheduled_s without a live delay
    exact_times: bool  # False: a headway-based frequency trip; scheduled_s is nominal
    headway_s: float | None  # scheduled headway of a frequency-based trip

    @property
    def live(self) -> bool:
        return self.delay_s is not None


@dataclass(frozen=True, slots=True)
class StopCall:
    """A stop ahead of a vehicle on its trip, with when it should get there."""

    stop_id: str
    stop_index: int  # position in the trip's stop sequence, from 0
    dist_m: float  # distance of the stop along the trip's shape
    scheduled_s: float  # epoch s: the arrival (departure at the first stop) in the schedule
    delay_s: float | None
    expected_s: float  # scheduled_s + delay_s, or scheduled_s


@dataclass(frozen=True, slots=True)
class RunOnDay:
    """One scheduled run of a trip on one service day."""

    run: int
    service_date: dt.date


# --- lookups built once per network --------------------------------------------------------

_CALLS: weakref.WeakKeyDictionary[Network, dict[str, list[tuple[int, int]]]]
_CALLS = weakref.WeakKeyDictionary()


def _calls_of_stop(network: Network) -> dict[str, list[tuple[int, int]]]:
    """stop_id → (pattern index, position in the pattern) of every call with a departure (a
    pattern's last stop is only arrived at)."""
    calls = _CALLS.get(network)
    if calls is None:
        calls = {}
        for pattern_idx, pattern in enumerate(network.patterns):
            for position, stop_id in enumerate(pattern.stop_ids[:-1]):
                calls.setdefault(stop_id, []).append((pattern_idx, position))
        _CALLS[network] = calls
    return calls


def _trips_of_stop(network: Network, stop_id: str) -> set[int]:
    trip_idxs: set[int] = set()
    for pattern_idx, _ in _calls_of_stop(network).get(stop_id, []):
        trip_idxs.update(network.runs.trip_idx[network.patterns[pattern_idx].runs].tolist())
    return trip_idxs


def trip_ids_of_stop(network: Network, stop_id: str) -> set[str]:
    """The ids of the trips that leave from `stop_id` (on any day)."""
    return {network.trips[t].trip_id for t in _trips_of_stop(network, stop_id)}


def routes_of_stop(network: Network, stop_id: str) -> list[str]:
    """The ids of the routes whose trips leave from `stop_id`, in feed order."""
    route_idxs = {network.trips[t].route_idx for t in _trips_of_stop(network, stop_id)}
    return [network.routes[r].route_id for r in sorted(route_idxs)]


# --- trips ---------------------------------------------------------------------------------


def headsign(network: Network, trip_idx: int) -> str:
    """The trip's headsign, or else the name of its last stop (what a bus front would show)."""
    trip = network.trips[trip_idx]
    if trip.headsign:
        return trip.headsign
    last_stop = network.patterns[trip.pattern_idx].stop_ids[-1]
    return network.stops[last_stop][0] if last_stop in network.stops else last_stop


def service_days_around(network: Network, at_s: float) -> list[dt.date]:
    """Yesterday, today and tomorrow, as local dates of the agency's time zone at `at_s`."""
    today = network.local_date(at_s)
    return [today + dt.timedelta(days=offset) for offset in (-1, 0, 1)]


NEAR_RUNS = 3
"""`locate_run` on a trip with many runs (a frequency-based trip: one per departure, the same
stop times shifted) looks at this many runs either side of the scheduled time only."""


def locate_run(
    network: Network,
    trip_id: str,
    at_s: float,
    *,
    along_m: float | None = None,
    delay_s: float | None = None,
) -> RunOnDay | None:
    """The run of `trip_id` a vehicle seen at `at_s` is most likely driving, or None.

    Among the trip's runs on the service days around `at_s`, the one whose schedule (shifted by
    `delay_s`) is nearest: at the spot `along_m` when given, else over the run's whole span.
    This tells the service day of a plain trip, and which departure of a frequency-based trip.
    The runs of one trip share its service and, being one timetable shifted, keep their order
    at every spot, so only those next to the scheduled time by start are looked at.
    """
    trip_idx = network.trip_index.get(trip_id)
    if trip_idx is None:
        return None
    runs, starts_s, ends_s = runs_by_start(network, trip_idx)
    if not runs:
        return None
    first = runs[0]
    lateness_s = delay_s if delay_s is not None and math.isfinite(delay_s) else 0.0
    # the first run's scheduled time at the spot, less its start: the same for every run
    into_run_s = 0.0 if along_m is None else network.scheduled_time_s(first, along_m) - starts_s[0]
    best: tuple[float, RunOnDay] | None = None
    for day in service_days_around(network, at_s):
        if not network.active_runs(day)[first]:
            continue
        scheduled_at_s = at_s - lateness_s - network.day_origin(day)  # from the day's origin
        k = (bisect.bisect_left(ends_s, scheduled_at_s) if along_m is None  # the first not over
             else bisect.bisect_left(starts_s, scheduled_at_s - into_run_s))  # fmt: skip
        for i in range(max(0, k - NEAR_RUNS), min(len(runs), k + NEAR_RUNS)):
            run = runs[i]
            if along_m is not None:
                miss_s = abs(network.scheduled_time_s(run, along_m) - scheduled_at_s)
            else:
                start_s, end_s = float(network.runs.start_s[run]), float(network.runs.end_s[run])
                miss_s = max(0.0, start_s - scheduled_at_s, scheduled_at_s - end_s)
            if best is None or miss_s < best[0]:
                best = (miss_s, RunOnDay(run, day))
    return None if best is None else best[1]


RunsByStart = tuple[list[int], list[float], list[float]]
_RUNS_BY_START: weakref.WeakKeyDictionary[Network, dict[int, RunsByStart]]
_RUNS_BY_START = weakref.WeakKeyDictionary()


def runs_by_start(network: Network, trip_idx: int) -> RunsByStart:
    """The trip's runs sorted by their start, their starts and ends (cached per network)."""
    cache = _RUNS_BY_START.setdefault(network, {})
    found = cache.get(trip_idx)
    if found is None:
        runs = sorted(network.runs_of_trip.get(trip_idx, []),
                      key=lambda run: (float(network.runs.start_s[run]), run))  # fmt: skip
        found = cache[trip_idx] = (
            runs,
            [float(network.runs.start_s[run]) for run in runs],
            [float(network.runs.end_s[run]) for run in runs],
        )
    return found


def next_stops(
    network: Network,
    located: RunOnDay,
    *,
    along_m: float | None,
    delay_s: float | None,
    limit: int = 5,
) -> list[StopCall]:
    """The next `limit` stops of a run from `along_m` on (all of them when it is None).

    A stop up to `AT_STOP_M` behind the vehicle is still listed (the vehicle is at it).
    """
    run = located.run
    pattern = network.patterns[int(network.runs.pattern_idx[run])]
    row = int(network.runs.row[run])
    origin_s = network.day_origin(located.service_date)
    delay = delay_s if delay_s is not None and math.isfinite(delay_s) else None
    out: list[StopCall] = []
    for index, stop_id in enumerate(pattern.stop_ids):
        dist_m = float(pattern.stop_dist_m[index])
        if along_m is not None and dist_m < along_m - AT_STOP_M:
            continue
        times = pattern.departure_s if index == 0 else pattern.arrival_s
        scheduled_s = origin_s + float(times[row, index])
        expected_s = scheduled_s + delay if delay is not None else scheduled_s
        out.append(StopCall(stop_id, index, dist_m, scheduled_s, delay, expected_s))
        if len(out) >= limit:
            break
    return out


# --- stops ---------------------------------------------------------------------------------


def next_departures(
    network: Network,
    stop_id: str,
    *,
    now_s: float,
    live_delays: LiveDelays,
    limit: int = 10,
    horizon_s: float = 6 * 3600.0,
    max_late_s: float = 3600.0,
) -> list[Departure]:
    """The next `limit` departures from `stop_id` after `now_s`, soonest expected first.

    Departures scheduled up to `horizon_s` ahead are considered, and, when a live delay may
    still make them come, up to `max_late_s` ago. A departure whose expected time has passed is
    left out. Raises `KeyError` for a stop that is not in the feed.
    """
    if stop_id not in network.stops:
        raise KeyError(f"stop {stop_id!r} is not in the feed")
    calls = _calls_of_stop(network).get(stop_id, [])
    runs = network.runs
    found: list[Departure] = []
    for day in service_days_around(network, now_s):
        origin_s = network.day_origin(day)
        service_date = day.strftime(DATE_FORMAT)
        active = network.active_runs(day)
        for pattern_idx, position in calls:
            pattern = network.patterns[pattern_idx]
            departs_s = origin_s + pattern.departure_s[:, position]
            rows = np.flatnonzero(
                active[pattern.runs]
                & (departs_s >= now_s - max_late_s)
                & (departs_s <= now_s + horizon_s)
            )
            for row in rows.tolist():
                run = int(pattern.runs[row])
                trip_idx = int(runs.trip_idx[run])
                trip = network.trips[trip_idx]
                headway_s = float(runs.headway_s[run])
                frequency_based = not math.isnan(headway_s)
                scheduled_s = float(departs_s[row])
                delay_s = None
                if not frequency_based:
                    delay_s = live_delays.get((trip.trip_id, service_date))
                    if delay_s is not None and not math.isfinite(delay_s):
                        delay_s = None
                expected_s = scheduled_s + delay_s if delay_s is not None else scheduled_s
                if expected_s < now_s:
                    continue
                found.append(
                    Departure(
                        stop_id=stop_id,
                        route_id=network.routes[trip.route_idx].route_id,
                        trip_id=trip.trip_id,
                        headsign=headsign(network, trip_idx),
                        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
                        service_date=service_date,
                        scheduled_s=scheduled_s,
                        delay_s=delay_s,
                        expected_s=expected_s,
                        exact_times=bool(runs.exact_times[run]),
                        headway_s=headway_s if frequency_based else None,
                    )
                )
    found.sort(key=lambda d: (d.expected_s, d.trip_id))
    return found[:limit]
