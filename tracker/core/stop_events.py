"""When each bus really reached and left each stop of its trip, from the matcher's answers.

`StopEventDetector.feed(match)` takes one vehicle's answers in time order (any number of
vehicles, interleaved) and returns the `StopEvent`s that answer completed: a stop is reported
once the bus has left it (the last stop: once it has reached it). `stop_events(network, matches)`
does the same for a whole recorded list. `StopEventDetector.progress(vehicle_id)` says where the
vehicle is on its trip now, which is what arrival predictions start from (`tracker.core.predict`).

How a stop is detected. Along the trip's shape every stop has a *zone*, `stop_zone_m` either side
of its distance (`Pattern.stop_dist_m`); before the last stop, `last_stop_zone_m` (the matcher's
"arrived" zone). The vehicle's progress along the shape never goes back (GPS jitter backwards is
held at the furthest point reached, so no stop is reported twice); between two answers it is taken
as linear in time. Then, per stop, on the stretch between two consecutive answers:

- *passed* (no answer inside its zone): arrival = departure = the time the line crosses the stop
  (`Observed.INTERPOLATED`);
- *seen at the stop* (one answer or more inside its zone: dwelling, or passing slowly): arrival =
  when the bus got there, departure = when it left (`Observed.DWELLING`). Between the last answer
  before the stop and the first one at it, the bus is taken to move at its recent speed and then
  stand, so the arrival is the answer's time less the time to cover the distance at that speed
  (never before the earlier answer); the departure likewise: it stood until it moved on, from
  the last answer that saw it standing at the stop (not the furthest point reached, which
  jitter may have pushed past the stop) to the first that saw it gone.
- the first stop: its departure; its arrival is the *layover start* (the first answer of the trip
  at that stop), None when the trip is first seen elsewhere. Buses manoeuvre and park at
  terminals, even down the route (WMATA's park up to 600 m along it, past the second stop, and
  drive back): while a bus is at its first stop the progress follows its position (it may go
  back), standing anywhere within `first_stop_zone_m` counts as at the stop, and it has left only
  when seen going on from there (see `StopEventDetector._leaving`: moving forward, not more than
  `terminal_early_s` ahead of its schedule, and coming from the terminal within `max_gap_s`).
  Its departure is when it moved on after it was last seen standing;
- the last stop: its arrival only, reported on reaching its zone, or, when the vehicle moves to
  a trip that starts at the same terminal (first seen at its first stop, within
  `first_stop_zone_m`) while less than `hand_over_m` short of the last stop (agencies, and the
  matcher, hand over on the way in: WMATA's do 90–150 m before), as if it ran on at its speed
  into the terminal, at the latest at the new trip's first answer (`Observed.INTERPOLATED`).

What cannot be known is not invented:

- *long gaps*: stops passed during a silence longer than `max_gap_s` are not reported at all (the
  bus may have stood anywhere in that time; an event marked as a guess would either poison the
  learned running times or make every reader filter it), and a stop the bus stood at before or
  after such a gap gets None for the time that fell in it;
- *detours*: off-route answers do not move the progress; when `detour_pings` or more of them come
  in a row, the stops passed meanwhile were skipped (not served) and are not reported. A single
  off-route answer (an outlier) is bridged like a missing ping;
- *trip changes*: when the matcher moves the vehicle to another trip, the old trip is remembered
  (the last `remembered_trips` of them), so a matcher that flips back to it carries on where it
  was, without reporting a stop twice; what was open on a trip never come back to (a dwell
  whose departure was not seen) is dropped. A stop already behind the bus when its trip is first
  seen is not reported, and one it is first seen at has no arrival (their times are unknown);
- `not_matched` and `rejected` answers are ignored (a long run of them is a gap).

`stop_sequence` is the index of the stop in the trip's pattern, from 0: the network does not keep
GTFS `stop_sequence` values (WMATA's start at 2). Scheduled times and delays are those of the run
the vehicle drives (`tracker.core.departures.locate_run`: the service day, and which departure of a
frequency-based trip); on frequency-based runs without exact times there are none (None).

Pure: values in, values out.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from tracker.core.departures import locate_run
from tracker.core.model import Match, State
from tracker.core.network import Network, haversine_m


class Observed(enum.StrEnum):
    """How a stop event was observed."""

    INTERPOLATED = "interpolated"  # passed between two answers: times interpolated along the shape
    DWELLING = "dwelling"  # one answer or more in the stop's zone: seen at the stop


@dataclass(frozen=True, slots=True)
class StopEvent:
    """A vehicle's actual arrival at and departure from one stop of its trip (epoch seconds)."""

    vehicle_id: str
    trip_id: str
    service_date: str  # YYYYMMDD
    route_id: str
    direction_id: int | None
    stop_id: str
    stop_sequence: int  # index of the stop in the trip's pattern, from 0
    arrival_s: float | None  # None: not known (the first stop seen first elsewhere, a gap)
    departure_s: float | None  # None at the last stop, or not known (a gap, a trip change)
    scheduled_arrival_s: float | None  # None on frequency runs without exact times
    scheduled_departure_s: float | None
    delay_s: float | None  # arrival (at the first stop: departure) minus the schedule
    observed: Observed

    @property
    def at_s(self) -> float:
        """When the event happened: the arrival, else the departure."""
        if self.arrival_s is not None:
            return self.arrival_s
        assert self.departure_s is not None
        return self.departure_s


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tuning of stop detection. Distances in metres along the shape, times in seconds."""

    stop_zone_m: float = 25.0  # within this of a stop the bus is at it (GPS and snapping noise)
    last_stop_zone_m: float = 60.0  # before the last stop (`MatcherConfig.arrival_zone_m`)
    first_stop_zone_m: float = 150.0  # after the first stop: still at the terminal (parked)
    hand_over_m: float = 300.0  # a trip left this close to its last stop for the next one there
    terminal_early_s: float = 600.0  # this far ahead of schedule, not gone from the first stop
    stale_early_s: float = 60.0  # away from it long: gone only if no earlier than this
    max_gap_s: float = 180.0  # across a longer silence no stop passed is reported
    detour_pings: int = 2  # this many off-route answers in a row: a detour
    remembered_trips: int = 3  # per vehicle, trips left that it may come back to
    default_speed_mps: float = 7.0  # a bus's moving speed until one is measured
    min_speed_mps: float = 3.0
    max_speed_mps: float = 20.0


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a vehicle is on its trip, as last seen: what an arrival prediction starts from."""

    vehicle_id: str
    trip_id: str
    service_date: str  # YYYYMMDD
    run: int  # the run it drives (`Network.runs`)
    day: dt.date  # the run's service day
    seen_at_s: float  # its latest answer on this trip that moved the progress
    along_m: float  # progress along the shape then (never going back)
    next_stop: int  # index of the first stop of the trip whose arrival has not been seen
    at_stop: int | None  # the stop it stands at (arrival seen, departure not yet), if any
    arrived_at_s: float | None  # when it got to `at_stop` (None: not known)
    departed_at_s: float | None  # when it left the stop before `next_stop`, if seen
    delay_s: float | None  # the matcher's latest delay on this trip
    state: State  # the vehicle's latest answer (any trip)
    last_seen_s: float  # the vehicle's latest answer (any state)
    exact_times: bool  # False on frequency runs without exact times


@dataclass(slots=True)
class _Trip:
    """Detection state of one vehicle on one trip (mutable; private to the detector)."""

    trip_id: str
    service_date: str
    route_id: str
    direction_id: int | None
    run: int
    day: dt.date
    stop_ids: tuple[str, ...]
    dist_m: list[float]
    scheduled_arrival_s: list[float] | None
    scheduled_departure_s: list[float] | None
    next_k: int = 0
    last_t: float | None = None  # the progress point: time and distance
    last_d: float = 0.0
    open_k: int = -1  # the stop it stands at, or -1
    open_arrival: float | None = None
    at_t: float = math.nan  # the latest answer in the open stop's zone (time, raw distance)
    at_d: float = math.nan
    out_t: float = math.nan  # the first answer beyond that zone after it
    out_d: float = math.nan
    roam_d: float = math.nan  # at the first stop: the previous position (raw)
    off_pings: int = 0  # off-route answers since the last progress point
    speed_mps: float = math.nan
    departed_at_s: float | None = None
    arrived_last_s: float | None = None  # arrival at the last stop
    delay_s: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.trip_id, self.service_date)


@dataclass(slots=True)
class _Vehicle:
    current: _Trip | None = None
    recent: dict[tuple[str, str], _Trip] = field(default_factory=dict)  # left trips, oldest first
    state: State = State.NOT_MATCHED
    last_seen_s: float = -math.inf


class StopEventDetector:
    """Per-vehicle stop detection (see the module). One per network and stream of answers."""

    def __init__(self, network: Network, config: DetectorConfig | None = None) -> None:
        self.network = network
        self.config = config or DetectorConfig()
        self._vehicles: dict[str, _Vehicle] = {}

    def feed(self, match: Match) -> list[StopEvent]:
        """The stop events that `match` (the vehicle's next answer in time order) completes."""
        if match.state is State.REJECTED:
            return []
        vehicle = self._vehicles.get(match.vehicle_id)
        if vehicle is None:
            vehicle = self._vehicles[match.vehicle_id] = _Vehicle()
        if match.timestamp < vehicle.last_seen_s:
            return []  # out of order: the matcher rejects these, a caller may not
        vehicle.state = match.state
        vehicle.last_seen_s = match.timestamp
        if (
            match.state is State.NOT_MATCHED
            or match.trip_id is None
            or match.service_date is None
            or match.shape_dist_m is None
        ):
            return []
        previous = vehicle.current
        trip = self._trip_of(vehicle, match)
        if trip is None:
            return []
        out: list[StopEvent] = []
        if previous is not None and previous is not trip:
            out += self._handed_over(match.vehicle_id, previous, trip, match)
        if match.delay_s is not None:
            trip.delay_s = match.delay_s
        if match.state is State.OFF_ROUTE:
            trip.off_pings += 1
            return out
        return out + self._advance(
            match.vehicle_id, trip, match.timestamp, match.shape_dist_m, match.delay_s
        )

    def feed_all(self, matches: Iterable[Match]) -> list[StopEvent]:
        """`feed` for each answer in turn."""
        return [event for m in matches for event in self.feed(m)]

    def progress(self, vehicle_id: str) -> Progress | None:
        """Where the vehicle is on its current trip, or None if it has none."""
        vehicle = self._vehicles.get(vehicle_id)
        if vehicle is None or vehicle.current is None or vehicle.current.last_t is None:
            return None
        trip = vehicle.current
        assert trip.last_t is not None
        n = len(trip.dist_m)
        if trip.open_k >= 0:
            at_stop: int | None = trip.open_k
            arrived: float | None = trip.open_arrival
            next_stop = trip.open_k + 1
        elif trip.next_k >= n:
            at_stop, arrived, next_stop = n - 1, trip.arrived_last_s, n
        else:
            at_stop, arrived, next_stop = None, None, trip.next_k
        return Progress(
            vehicle_id=vehicle_id,
            trip_id=trip.trip_id,
            service_date=trip.service_date,
            run=trip.run,
            day=trip.day,
            seen_at_s=trip.last_t,
            along_m=trip.last_d,
            next_stop=next_stop,
            at_stop=at_stop,
            arrived_at_s=arrived,
            departed_at_s=trip.departed_at_s,
            delay_s=trip.delay_s,
            state=vehicle.state,
            last_seen_s=vehicle.last_seen_s,
            exact_times=trip.scheduled_arrival_s is not None,
        )

    def vehicles(self) -> Iterator[Progress]:
        """The `progress` of every vehicle that has a trip."""
        for vehicle_id in self._vehicles:
            found = self.progress(vehicle_id)
            if found is not None:
                yield found

    def forget(self, before_s: float) -> int:
        """Drop the vehicles not seen since `before_s` (bounded memory); how many were."""
        gone = [v for v, state in self._vehicles.items() if state.last_seen_s < before_s]
        for vehicle_id in gone:
            del self._vehicles[vehicle_id]
        return len(gone)

    # --- one vehicle ------------------------------------------------------------------------

    def _trip_of(self, vehicle: _Vehicle, match: Match) -> _Trip | None:
        """The vehicle's state on the trip of `match`: the current one, a remembered one, or new."""
        assert match.trip_id is not None
        assert match.service_date is not None
        key = (match.trip_id, match.service_date)
        current = vehicle.current
        if current is not None and current.key == key:
            return current
        if current is not None and current.next_k < len(current.dist_m):
            # Left unfinished: kept in case the matcher comes back to it (a dwell in progress
            # then goes on, or gets no departure across a gap); else what was open is dropped.
            vehicle.recent[current.key] = current
            while len(vehicle.recent) > self.config.remembered_trips:
                del vehicle.recent[next(iter(vehicle.recent))]
        trip = vehicle.recent.pop(key, None) or _new_trip(self.network, match)
        vehicle.current = trip
        return trip

    def _handed_over(
        self, vehicle_id: str, old: _Trip, new: _Trip, match: Match
    ) -> list[StopEvent]:
        """The last stop of a trip left just short of it for the next trip, at that trip's first
        stop (agencies and the matcher hand over on the way into the terminal): the bus ran on
        into the terminal, so it reached the last stop between the two answers."""
        cfg = self.config
        n = len(old.dist_m)
        if (
            old.next_k != n - 1
            or old.last_t is None
            or new.last_t is not None  # the new trip was seen before: not a hand-over
            or match.shape_dist_m is None
            or match.timestamp - old.last_t > cfg.max_gap_s
            or old.last_d < old.dist_m[-1] - cfg.hand_over_m
            or match.shape_dist_m > new.dist_m[0] + self._zone_after(0, new.dist_m)
        ):
            return []
        stops = self.network.stops
        end, start = stops.get(old.stop_ids[-1]), stops.get(new.stop_ids[0])
        if end is None or start is None:
            return []
        if haversine_m(end[1], end[2], start[1], start[2]) > cfg.first_stop_zone_m:
            return []  # the next trip starts elsewhere
        speed = old.speed_mps if not math.isnan(old.speed_mps) else cfg.default_speed_mps
        arrival = min(old.last_t + (old.dist_m[-1] - old.last_d) / speed, match.timestamp)
        old.next_k = n
        old.arrived_last_s = arrival
        return [self._event(vehicle_id, old, n - 1, arrival, None, False)]

    def _advance(
        self, vehicle_id: str, trip: _Trip, t: float, d: float, delay: float | None
    ) -> list[StopEvent]:
        """Move the trip's progress to (t, d); the stop events completed on the way."""
        cfg = self.config
        dist = trip.dist_m
        n = len(dist)
        out: list[StopEvent] = []
        raw = d
        if trip.open_k == 0 and trip.last_t is not None and t > trip.last_t:
            # At the first stop buses manoeuvre and park, even down the route: there the
            # progress follows the position, and a bus has left only when it is seen going on
            # from the terminal (see `_leaving`).
            if raw <= dist[0] + self._zone_after(0, dist):
                self._track_stop(trip, t, raw)
                trip.last_t, trip.last_d, trip.roam_d = t, raw, raw
                trip.off_pings = 0
                return out
            leaving = self._leaving(trip, t, raw, delay)
            trip.roam_d = raw
            if not leaving:
                return out  # roaming before its departure
        if trip.last_t is None:  # first seen on this trip
            k = trip.next_k
            while k < n and d > dist[k] + self._zone_after(k, dist):
                k += 1  # behind it already, at an unknown time
            trip.next_k = k
            if k < n and d >= dist[k] - self._zone_before(k, n):
                if k == n - 1:
                    trip.next_k = n  # first seen at the last stop: its arrival is unknown
                else:
                    self._open(trip, k, t if k == 0 else None, t, raw)
            trip.last_t, trip.last_d = t, d
            return out
        t0, d0 = trip.last_t, trip.last_d
        if t <= t0:
            return out
        d = max(d, d0)
        if trip.open_k >= 0:
            self._track_stop(trip, t, raw)
        unreliable = t - t0 > cfg.max_gap_s or trip.off_pings >= cfg.detour_pings
        trip.off_pings = 0
        was_open = trip.open_k >= 0
        speed = trip.speed_mps if not math.isnan(trip.speed_mps) else cfg.default_speed_mps
        while trip.next_k < n:
            k = trip.next_k
            s = dist[k]
            last = k == n - 1
            if d < s - self._zone_before(k, n):
                break
            if trip.open_k == k:  # standing at it since an earlier answer
                if d <= s + self._zone_after(k, dist):
                    break  # still there
                if unreliable:
                    departure = None
                elif not math.isnan(trip.at_t):  # it left after it was last seen standing
                    gone_t, gone_d = (t, d) if math.isnan(trip.out_t) else (trip.out_t, trip.out_d)
                    departure = _clamp(gone_t - (gone_d - max(s, trip.at_d)) / speed,
                                       trip.at_t, gone_t)  # fmt: skip
                else:
                    departure = _clamp(t - (d - max(s, d0)) / speed, t0, t)
                if trip.open_arrival is not None or departure is not None:  # else nothing known
                    out.append(self._event(vehicle_id, trip, k, trip.open_arrival, departure, True))
                trip.departed_at_s = departure
                trip.open_k, trip.open_arrival = -1, None
                trip.next_k += 1
                continue
            if unreliable:  # reached in a gap or on a detour: its time is not known
                if d <= s + self._zone_after(k, dist) and not last:
                    self._open(trip, k, None, t, raw)
                    break
                trip.departed_at_s = None
                trip.next_k += 1
                continue
            if d > s + self._zone_after(k, dist):  # passed between the two answers
                crossed = _clamp(t0 + (s - d0) / (d - d0) * (t - t0), t0, t)
                departure = None if last else crossed
                out.append(self._event(vehicle_id, trip, k, crossed, departure, False))
                trip.departed_at_s = departure
                if last:
                    trip.arrived_last_s = crossed
                trip.next_k += 1
                continue
            # In its zone now: it moved at its speed, then stood.
            arrival = min(t, t0 + max(min(s, d) - d0, 0.0) / speed)
            if last:
                out.append(self._event(vehicle_id, trip, k, arrival, None, True))
                trip.arrived_last_s = arrival
                trip.next_k = n
                break
            self._open(trip, k, arrival, t, raw)
            break
        if not unreliable and not was_open and trip.open_k < 0 and d - d0 > cfg.stop_zone_m:
            moved = min(max((d - d0) / (t - t0), cfg.min_speed_mps), cfg.max_speed_mps)
            trip.speed_mps = moved if math.isnan(trip.speed_mps) else 0.5 * (trip.speed_mps + moved)
        trip.last_t, trip.last_d = t, d
        return out

    def _zone_before(self, k: int, n: int) -> float:
        cfg = self.config
        return cfg.last_stop_zone_m if k == n - 1 else cfg.stop_zone_m

    def _zone_after(self, k: int, dist: list[float]) -> float:
        """How far past stop k the bus still is at it: at the first stop, the terminal
        (`first_stop_zone_m`, short of the second stop's zone)."""
        cfg = self.config
        if k > 0 or len(dist) < 2:
            return cfg.stop_zone_m
        return max(cfg.stop_zone_m, min(cfg.first_stop_zone_m, dist[1] - dist[0] - cfg.stop_zone_m))

    def _leaving(self, trip: _Trip, t: float, raw: float, delay: float | None) -> bool:
        """Whether a bus at its first stop, now seen at `raw` beyond the terminal, has left.

        It has if it moved forward since its previous answer, is not more than
        `terminal_early_s` ahead of its schedule, and either came from the terminal within
        `max_gap_s` or, away longer (parked down the route), is no longer ahead of its schedule
        by more than `stale_early_s`. Standing or going back is not leaving."""
        cfg = self.config
        assert trip.last_t is not None
        if not raw > trip.roam_d + cfg.stop_zone_m:
            return False
        if delay is None:
            return True
        if delay < -cfg.terminal_early_s:
            return False
        return t - trip.last_t <= cfg.max_gap_s or delay >= -cfg.stale_early_s

    def _track_stop(self, trip: _Trip, t: float, raw: float) -> None:
        """At the open stop: when it was last seen standing there (at the first stop: standing
        anywhere at the terminal), and where it was first seen moving on after that."""
        zone = self.config.stop_zone_m
        k = trip.open_k
        s = trip.dist_m[k]
        standing = abs(raw - s) <= zone or (
            k == 0
            and abs(raw - trip.roam_d) <= zone / 2
            and raw <= s + self._zone_after(0, trip.dist_m)
        )
        if standing:
            trip.at_t, trip.at_d, trip.out_t = t, raw, math.nan
        elif raw > s and math.isnan(trip.out_t):
            trip.out_t, trip.out_d = t, raw

    def _open(self, trip: _Trip, k: int, arrival: float | None, t: float, raw: float) -> None:
        """The bus is at stop k (since `arrival`), seen at distance `raw` at `t`."""
        trip.open_k, trip.open_arrival = k, arrival
        trip.out_t = trip.out_d = math.nan
        trip.roam_d = raw
        if abs(raw - trip.dist_m[k]) <= self.config.stop_zone_m:
            trip.at_t, trip.at_d = t, raw
        else:
            trip.at_t = trip.at_d = math.nan

    def _event(
        self,
        vehicle_id: str,
        trip: _Trip,
        k: int,
        arrival: float | None,
        departure: float | None,
        dwelling: bool,
    ) -> StopEvent:
        scheduled_arrival = scheduled_departure = delay = None
        if trip.scheduled_arrival_s is not None and trip.scheduled_departure_s is not None:
            scheduled_arrival = trip.scheduled_arrival_s[k]
            scheduled_departure = trip.scheduled_departure_s[k]
            if k > 0 and arrival is not None:
                delay = arrival - scheduled_arrival
            elif departure is not None:
                delay = departure - scheduled_departure
        return StopEvent(
            vehicle_id=vehicle_id,
            trip_id=trip.trip_id,
            service_date=trip.service_date,
            route_id=trip.route_id,
            direction_id=trip.direction_id,
            stop_id=trip.stop_ids[k],
            stop_sequence=k,
            arrival_s=arrival,
            departure_s=departure,
            scheduled_arrival_s=scheduled_arrival,
            scheduled_departure_s=scheduled_departure,
            delay_s=delay,
            observed=Observed.DWELLING if dwelling else Observed.INTERPOLATED,
        )


def stop_events(
    network: Network, matches: Sequence[Match], config: DetectorConfig | None = None
) -> list[StopEvent]:
    """The stop events of a whole recorded list of answers (any order: taken by time, a
    vehicle's answers of one timestamp in list order), in the order they are completed."""
    detector = StopEventDetector(network, config)
    order = sorted(range(len(matches)), key=lambda i: matches[i].timestamp)
    return [e for i in order for e in detector.feed(matches[i])]


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def _new_trip(network: Network, match: Match) -> _Trip | None:
    """Detection state for the trip of `match`, on the run it most likely is (None: unknown)."""
    assert match.trip_id is not None
    assert match.service_date is not None
    trip_idx = network.trip_index.get(match.trip_id)
    if trip_idx is None:
        return None
    found = run_of(network, match.trip_id, match.service_date, match.timestamp,
                   along_m=match.shape_dist_m, delay_s=match.delay_s)  # fmt: skip
    if found is None:
        return None
    run, day = found
    trip = network.trips[trip_idx]
    pattern = network.patterns[trip.pattern_idx]
    row = int(network.runs.row[run])
    scheduled_arrival = scheduled_departure = None
    if bool(network.runs.exact_times[run]):
        origin = network.day_origin(day)
        scheduled_arrival = (origin + pattern.arrival_s[row]).tolist()
        scheduled_departure = (origin + pattern.departure_s[row]).tolist()
    return _Trip(
        trip_id=match.trip_id,
        service_date=match.service_date,
        route_id=network.routes[trip.route_idx].route_id,
        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
        run=run,
        day=day,
        stop_ids=pattern.stop_ids,
        dist_m=pattern.stop_dist_m.tolist(),
        scheduled_arrival_s=scheduled_arrival,
        scheduled_departure_s=scheduled_departure,
    )


def run_of(
    network: Network,
    trip_id: str,
    service_date: str,
    at_s: float,
    *,
    along_m: float | None = None,
    delay_s: float | None = None,
) -> tuple[int, dt.date] | None:
    """(run, service day) of `trip_id` on `service_date` that a vehicle seen at `at_s` drives.

    A plain trip has one run; of a frequency-based trip's runs, the one
    `tracker.core.departures.locate_run` finds, kept to the given service day.
    """
    trip_idx = network.trip_index.get(trip_id)
    if trip_idx is None:
        return None
    day = dt.datetime.strptime(service_date, "%Y%m%d").date()
    runs = network.runs_of_trip.get(trip_idx, [])
    if len(runs) == 1:
        return runs[0], day
    located = locate_run(network, trip_id, at_s, along_m=along_m, delay_s=delay_s)
    if located is not None and located.service_date == day:
        return located.run, day
    active = network.active_runs(day)
    origin = network.day_origin(day)
    lateness = delay_s if delay_s is not None and math.isfinite(delay_s) else 0.0
    best: tuple[float, int] | None = None
    for run in runs:
        if not active[run]:
            continue
        if along_m is not None:
            scheduled = network.scheduled_time_s(run, along_m)
        else:
            scheduled = float(network.runs.start_s[run])
        miss = abs(origin + scheduled + lateness - at_s)
        if best is None or miss < best[0]:
            best = (miss, run)
    return None if best is None else (best[1], day)
