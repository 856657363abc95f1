"""GTFS-realtime feeds of the live state: VehiclePositions, TripUpdates and Alerts.

Built with the official `gtfs-realtime-bindings` classes from what the service already holds:
the hub's live vehicles, the engine's arrival predictions and its operations alerts. Pure: values
in, a `FeedMessage` out; `now_s` is passed in. `tracker/api/gtfs_rt.py` serves them (built once
per tick, with ETags).

Each feed is a FULL_DATASET with the header's timestamp at `now_s`:

- **VehiclePositions**: one entity per vehicle seen in the last `stale_after_s`: its shown
  position (snapped when in service), bearing and speed, its timestamp, and when it is on a trip
  the trip descriptor (trip_id, route_id, direction_id, start_date; start_time and UNSCHEDULED for
  headway-only frequency trips), the stop it is at or going to (`current_stop_sequence`,
  `stop_id`, `current_status`). Occupancy is left unset.
- **TripUpdates**: one entity per trip a vehicle is on or will run next in its block: arrival
  times at the stops ahead from the predictions (the median, `uncertainty` half the p10–p90
  range; at a trip's first stop the departure), each with its GTFS stop_sequence and stop_id;
  without predictions, the next stop only: the trip's current delay there (consumers carry it
  on; NO_DATA without one), or on a headway-only trip its template's running time from where the
  bus is. The trip's `delay` is set where it has a timetable. Each trip is paired with one bus
  (`place`), in the same order in both feeds. A trip the operator cancelled
  (`tracker.core.cancellations`) is CANCELED, with no stop_time_update, from `CANCELLED_AHEAD_S`
  before its scheduled departure until its scheduled arrival; a bus still reported on it is told
  without its trip (the operator's word stands until it is undone). A bus on a detour (the
  operations monitor's `Detour`, on a timetabled trip): the stops of its trip it passed while
  off its shape are SKIPPED, then its next stop is NO_DATA (whether it serves the stops ahead
  is not known; by the spec the stops after a NO_DATA one are unknown too).
- **Alerts**: what affects riders: a bus on a detour (DETOUR on its route, naming the stops it
  missed), frequency lines short of buses (REDUCED_SERVICE) and cancelled trips (NO_SERVICE on
  the trip, for its scheduled span).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from google.transit import gtfs_realtime_pb2 as rt

from tracker.core.cancellations import Cancellation
from tracker.core.departures import RunOnDay, headsign, locate_run, runs_by_start
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.operations import Alert, Detour, ShortService
from tracker.core.predict import Prediction
from tracker.live.vehicle import LiveVehicle

GTFS_RT_VERSION = "2.0"
STOPPED_AT_M = 25.0  # a bus this close to a stop, and slow, is stopped at it
STOPPED_BELOW_MPS = 1.5
INCOMING_AT_M = 150.0  # ... this close, on its way: incoming at it
# Farther from its trip's shape, a vehicle is told without its trip; east–west the distance
# shrinks with the cosine of the latitude, as the validators' "far from the trip's shape" (E029:
# 0.0017986 degrees, about 200 m north–south) does.
OFF_SHAPE_M = 200.0
CANCELLED_AHEAD_S = 24 * 3600.0  # a cancelled trip is told from this long before it leaves
_ON_TRIP = frozenset({State.IN_SERVICE.value, State.LAYOVER.value, State.OFF_ROUTE.value})

_VP = rt.VehiclePosition
_TD = rt.TripDescriptor
_STU = rt.TripUpdate.StopTimeUpdate


@dataclass(frozen=True, slots=True)
class OnTrip:
    """Where a live vehicle is in the timetable: its run and stop (see `locate`)."""

    located: RunOnDay
    exact_times: bool
    next_index: int  # the stop it is at or going to, index in the trip's pattern
    status: int  # VehiclePosition.VehicleStopStatus


def header(feed: rt.FeedMessage, now_s: float) -> None:
    feed.header.gtfs_realtime_version = GTFS_RT_VERSION
    feed.header.incrementality = rt.FeedHeader.FULL_DATASET
    feed.header.timestamp = int(now_s)


def place(
    network: Network,
    vehicles: Iterable[LiveVehicle],
    now_s: float,
    stale_after_s: float,
    locate_one: Callable[[LiveVehicle], OnTrip | None] | None = None,
    cancelled: Collection[tuple[str, str]] = frozenset(),
) -> list[tuple[LiveVehicle, OnTrip | None]]:
    """The vehicles seen in the last `stale_after_s`, by id, each with where it is in the
    timetable (None: on no trip of the feed, or on one of the `cancelled` trips, `trip_key`s:
    the operator's word stands, a bus reported on a cancelled trip is told without it).

    A headway-only trip's departures are told apart by the schedule only, so two buses close in
    time can be located on one departure: the buses of one such trip get distinct departures,
    in the order they are along it (the one ahead left first). Two buses on one departure of a
    timetabled trip: the one seen last keeps it, the other is told without a trip."""
    shown = sorted((v for v in vehicles if now_s - v.observed_at_s <= stale_after_s),
                   key=lambda v: v.vehicle_id)  # fmt: skip
    find = locate_one or (lambda v: locate(network, v))
    placed = [(v, find(v)) for v in shown]
    sharing: dict[tuple[str, dt.date], list[int]] = {}
    for i, (v, on) in enumerate(placed):
        if on is not None and math.isfinite(float(network.runs.headway_s[on.located.run])):
            sharing.setdefault((v.trip_id or "", on.located.service_date), []).append(i)
    for (trip_id, _day), members in sharing.items():
        if len(members) < 2:
            continue
        runs, _starts, _ends = runs_by_start(network, network.trip_index[trip_id])
        order = {run: k for k, run in enumerate(runs)}
        members.sort(key=lambda i: -(placed[i][0].shape_dist_m or 0.0))
        previous = -1
        for i in members:
            v, on = placed[i]
            assert on is not None
            k = max(order[on.located.run], previous + 1)
            previous = k
            moved = None
            if k < len(runs):
                moved = replace(on, located=RunOnDay(runs[k], on.located.service_date))
            placed[i] = (v, moved)
    # Two buses on one timetabled trip (one of them mistaken for a while): the trip is told
    # with the one seen last only, so that the feeds pair each trip with one vehicle.
    latest: dict[tuple[int, dt.date], int] = {}
    for i, (v, on) in enumerate(placed):
        if on is None or (cancelled and trip_key(network, on) in cancelled):
            continue
        key = (on.located.run, on.located.service_date)
        other = latest.get(key)
        if other is None or placed[other][0].observed_at_s < v.observed_at_s:
            latest[key] = i
    kept = set(latest.values())
    return [(v, on if i in kept else None) for i, (v, on) in enumerate(placed)]


def locate(network: Network, v: LiveVehicle) -> OnTrip | None:
    """The run and the stop of a vehicle on a trip, or None (no trip, or not in the feed)."""
    if v.trip_id is None or v.state not in _ON_TRIP:
        return None
    if v.offset_m is not None and v.offset_m > OFF_SHAPE_M * math.cos(math.radians(v.lat)):
        return None  # a bus on a detour: its position does not place it on its trip's stops
    located = locate_run(network, v.trip_id, v.observed_at_s, along_m=v.shape_dist_m,
                         delay_s=v.delay_s)  # fmt: skip
    if located is None:
        return None
    run = located.run
    pattern = network.patterns[int(network.runs.pattern_idx[run])]
    dists = pattern.stop_dist_m
    along = v.shape_dist_m if v.shape_dist_m is not None else float(dists[0])
    k = 0
    while k < len(dists) - 1 and float(dists[k]) < along - STOPPED_AT_M:
        k += 1
    to_go_m = float(dists[k]) - along
    slow = v.speed_mps is None or v.speed_mps < STOPPED_BELOW_MPS
    if abs(to_go_m) <= STOPPED_AT_M and slow:
        status = _VP.STOPPED_AT
    elif to_go_m <= INCOMING_AT_M:
        status = _VP.INCOMING_AT
    else:
        status = _VP.IN_TRANSIT_TO
    return OnTrip(located, bool(network.runs.exact_times[run]), k, status)


def _trip_descriptor(
    network: Network, out: rt.TripDescriptor, run: int, service_date: str, exact: bool
) -> None:
    trip = network.trips[int(network.runs.trip_idx[run])]
    out.trip_id = trip.trip_id
    out.route_id = network.routes[trip.route_idx].route_id
    if trip.direction_id >= 0:
        out.direction_id = trip.direction_id
    out.start_date = service_date
    if math.isfinite(float(network.runs.headway_s[run])):  # frequencies.txt: which departure
        out.start_time = _hms(float(network.runs.start_s[run]))
    out.schedule_relationship = _TD.SCHEDULED if exact else _TD.UNSCHEDULED


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass(frozen=True, slots=True)
class _Updates:
    """A vehicle's encoded TripUpdates (`FeedBuilder._trip_updates_of`)."""

    key: str  # the entity id of the trip it is on
    current: bytes
    ahead: list[tuple[str, bytes]]  # (entity id, encoded) of its block's next trips
    keep: bool  # may be kept for the next builds (not made from the clock: predicted)


class FeedBuilder:
    """Builds the three feeds as protobuf bytes, keeping each vehicle's entities while its
    state and predictions stay the same objects (a bus reports every few seconds, the feeds are
    built every second), so that a build encodes only what changed.

    The bytes of a FeedMessage are its header's then its entities' encodings one after the
    other; each vehicle's are kept encoded, as a FeedMessage holding those entities only. A bus
    on a detour is encoded afresh at each build (there are few)."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self._located: dict[str, tuple[LiveVehicle, OnTrip | None]] = {}
        self._positions: dict[str, tuple[LiveVehicle, OnTrip | None, bytes]] = {}
        # vehicle -> (its state, where, its predictions, its trip's entity, its next trips')
        self._updates: dict[str, tuple[LiveVehicle, OnTrip, Sequence[Prediction], _Updates]] = {}

    def build(
        self,
        vehicles: Iterable[LiveVehicle],
        predictions: Mapping[str, Sequence[Prediction]],
        live_alerts: Iterable[Alert],
        now_s: float,
        *,
        stale_after_s: float,
        cancelled: Iterable[Cancellation] = (),
    ) -> dict[str, tuple[bytes, bytes]]:
        """Each feed's (header, entities) bytes: the message is their concatenation.
        `cancelled`: the trips the operator cancelled (those of them within the feed's
        horizon are told, see `shown_cancellations`)."""
        shown = shown_cancellations(cancelled, now_s)
        keys = {c.key for c in shown}
        placed = place(self.network, vehicles, now_s, stale_after_s, self._locate, keys)
        seen = {v.vehicle_id for v, _ in placed}
        for cache in (self._located, self._positions, self._updates):
            for gone in [k for k in cache if k not in seen]:
                del cache[gone]
        live_alerts = tuple(live_alerts)
        detours = {a.vehicle_id: a for a in live_alerts if isinstance(a, Detour) and a.active
                   and (a.trip_id, a.service_date) not in keys}  # fmt: skip
        head = rt.FeedMessage()
        header(head, now_s)
        top = head.SerializeToString(deterministic=True)
        return {
            "vehicle-positions": (top, self._vehicle_positions(placed)),
            "trip-updates": (top, self._trip_updates(placed, predictions, now_s, detours, shown)),
            "alerts": (top, _entities_only(alerts(self.network, live_alerts, now_s, shown))),
        }

    def _locate(self, v: LiveVehicle) -> OnTrip | None:
        found = self._located.get(v.vehicle_id)
        if found is not None and found[0] is v:
            return found[1]
        on = locate(self.network, v)
        self._located[v.vehicle_id] = (v, on)
        return on

    def _vehicle_positions(self, placed: list[tuple[LiveVehicle, OnTrip | None]]) -> bytes:
        chunks: list[bytes] = []
        for v, on in placed:
            found = self._positions.get(v.vehicle_id)
            if found is None or found[0] is not v or found[1] != on:
                one = rt.FeedMessage()
                _vehicle_entity(one, self.network, v, on)
                found = self._positions[v.vehicle_id] = (
                    v, on, one.SerializePartialToString(deterministic=True))  # fmt: skip
            chunks.append(found[2])
        return b"".join(chunks)

    def _trip_updates(
        self,
        placed: list[tuple[LiveVehicle, OnTrip | None]],
        predictions: Mapping[str, Sequence[Prediction]],
        now_s: float,
        detours: Mapping[str, Detour],
        cancelled: Sequence[Cancellation],
    ) -> bytes:
        chunks: list[bytes] = []
        cancelled_chunks: list[bytes] = []
        done: set[str] = set()
        for c in cancelled:
            one = rt.FeedMessage()
            key = _cancelled_trip_update(one, self.network, c, now_s)
            if key is not None and key not in done:
                done.add(key)
                cancelled_chunks.append(one.SerializePartialToString(deterministic=True))
        later: list[tuple[str, bytes]] = []  # the block's next trips, after every current one
        for v, on in placed:
            made = predictions.get(v.vehicle_id, ())
            detour = detours.get(v.vehicle_id)
            located = None if detour is None else self._detour_run(v, on, detour)
            if (
                located is not None
                and detour is not None
                and (on is None or (on.located == located and skipped_stops(self.network, detour)))
            ):  # off its shape, or near it with stops skipped: its detour's TripUpdate
                updates = self._trip_updates_of(v, located, None, made, now_s, detour)
            elif on is None:
                continue
            else:
                found = self._updates.get(v.vehicle_id)
                if found is not None and found[0] is v and found[1] == on and found[2] is made:
                    updates = found[3]
                else:
                    updates = self._trip_updates_of(v, on.located, on, made, now_s)
                    if updates.keep:
                        self._updates[v.vehicle_id] = (v, on, made, updates)
            if updates.key in done:
                continue  # its trip is told already (cancelled, or another bus's)
            done.add(updates.key)
            chunks.append(updates.current)
            later.extend(updates.ahead)
        chunks += cancelled_chunks
        for key, chunk in later:
            if key not in done:
                done.add(key)
                chunks.append(chunk)
        return b"".join(chunks)

    def _detour_run(self, v: LiveVehicle, on: OnTrip | None, detour: Detour) -> RunOnDay | None:
        """The run a bus on a detour is driving: the detour's trip on its service day, which
        the bus may no longer be located on (far from the shape); None on a headway-only trip
        (its stop_time_updates may only be UNSCHEDULED: no SKIPPED) or one not in the feed."""
        network = self.network
        trip_idx = network.trip_index.get(detour.trip_id)
        if trip_idx is None:
            return None
        if on is not None and trip_key(self.network, on) == (detour.trip_id, detour.service_date):
            found: RunOnDay | None = on.located
        else:
            day = dt.datetime.strptime(detour.service_date, "%Y%m%d").date()
            active = network.active_runs(day)
            runs = [r for r in network.runs_of_trip.get(trip_idx, []) if active[r]]
            found = RunOnDay(runs[0], day) if len(runs) == 1 else None
            if found is None and runs:
                along = detour.reached_shape_dist_m or detour.left_shape_dist_m
                near = locate_run(network, detour.trip_id, v.observed_at_s, along_m=along,
                                  delay_s=v.delay_s)  # fmt: skip
                found = near if near is not None and near.service_date == day else None
        if found is None or not bool(network.runs.exact_times[found.run]):
            return None
        return found

    def _trip_updates_of(
        self,
        v: LiveVehicle,
        located: RunOnDay,
        on: OnTrip | None,
        made: Sequence[Prediction],
        now_s: float,
        detour: Detour | None = None,
    ) -> _Updates:
        """The encoded TripUpdates of the trip the vehicle is on and of its block's next trips.
        On a detour (`detour` given) its trip's are the stops it skipped, then no data."""
        network = self.network
        run, day = located.run, located.service_date
        service_date = f"{day:%Y%m%d}"
        exact = bool(network.runs.exact_times[run])
        trip_id = network.trips[int(network.runs.trip_idx[run])].trip_id
        made = made_for_trip(made, (trip_id, service_date))
        by_trip: dict[tuple[str, str], list[Prediction]] = {}
        for p in made:
            by_trip.setdefault((p.trip_id, p.service_date), []).append(p)
        current_predictions = by_trip.pop((trip_id, service_date), [])
        one = rt.FeedMessage()
        key = _entity_id(network, run, service_date)
        update = _trip_update(one, key, network, run, service_date, exact, v,
                              with_delay=detour is None)  # fmt: skip
        if detour is not None:
            _detour_stops(update, network, run, detour)
        elif current_predictions:
            _predicted_stops(update, network, run, current_predictions)
        else:
            assert on is not None
            _next_stop_by_schedule(update, network, v, on, now_s)
        current = one.SerializePartialToString(deterministic=True)
        ahead: list[tuple[str, bytes]] = []
        for (_trip_id, date), next_made in by_trip.items():
            next_run = _run_of_prediction(network, next_made[0])
            if next_run is None:
                continue
            one = rt.FeedMessage()
            next_key = _entity_id(network, next_run, date)
            next_exact = bool(network.runs.exact_times[next_run])
            update = _trip_update(one, next_key, network, next_run, date, next_exact, v)
            _predicted_stops(update, network, next_run, next_made)
            ahead.append((next_key, one.SerializePartialToString(deterministic=True)))
        return _Updates(key, current, ahead, keep=detour is None and bool(current_predictions))


def _vehicle_entity(
    feed: rt.FeedMessage, network: Network, v: LiveVehicle, on: OnTrip | None
) -> None:
    entity = feed.entity.add()
    entity.id = v.vehicle_id
    vp = entity.vehicle
    vp.vehicle.id = v.vehicle_id
    vp.timestamp = int(v.observed_at_s)
    vp.position.latitude = v.lat
    vp.position.longitude = v.lon
    if v.bearing_deg is not None and math.isfinite(v.bearing_deg):
        vp.position.bearing = v.bearing_deg % 360.0
    if v.speed_mps is not None and math.isfinite(v.speed_mps) and v.speed_mps >= 0:
        vp.position.speed = v.speed_mps
    if on is None:
        return
    run, day = on.located.run, on.located.service_date
    _trip_descriptor(network, vp.trip, run, f"{day:%Y%m%d}", on.exact_times)
    trip = network.trips[int(network.runs.trip_idx[run])]
    pattern = network.patterns[trip.pattern_idx]
    vp.current_stop_sequence = trip.stop_sequences[on.next_index]
    vp.stop_id = pattern.stop_ids[on.next_index]
    vp.current_status = on.status  # type: ignore[assignment]


def message(top: bytes, entities: bytes) -> rt.FeedMessage:
    """The FeedMessage of a feed's bytes (`FeedBuilder.build`)."""
    feed = rt.FeedMessage()
    feed.ParseFromString(top + entities)
    return feed


def vehicle_positions(
    network: Network,
    vehicles: Iterable[LiveVehicle],
    now_s: float,
    *,
    stale_after_s: float,
    cancelled: Iterable[Cancellation] = (),
) -> rt.FeedMessage:
    """The VehiclePositions feed (see the module), built afresh."""
    built = FeedBuilder(network).build(vehicles, {}, (), now_s, stale_after_s=stale_after_s,
                                       cancelled=cancelled)  # fmt: skip
    return message(*built["vehicle-positions"])


def trip_updates(
    network: Network,
    vehicles: Iterable[LiveVehicle],
    predictions: Mapping[str, Sequence[Prediction]],
    now_s: float,
    *,
    stale_after_s: float,
    live_alerts: Iterable[Alert] = (),
    cancelled: Iterable[Cancellation] = (),
) -> rt.FeedMessage:
    """The TripUpdates feed (see the module), built afresh. `predictions`: each vehicle's;
    `live_alerts`: the operations alerts (their detours); `cancelled`: the cancelled trips."""
    built = FeedBuilder(network).build(vehicles, predictions, live_alerts, now_s,
                                       stale_after_s=stale_after_s,
                                       cancelled=cancelled)  # fmt: skip
    return message(*built["trip-updates"])


def shown_cancellations(cancelled: Iterable[Cancellation], now_s: float) -> list[Cancellation]:
    """The cancellations the feeds tell at `now_s`: from `CANCELLED_AHEAD_S` before the trip's
    scheduled departure (a consumer planning journeys for later learns of it) until its
    scheduled arrival at its last stop; by trip and day."""
    shown = [
        c
        for c in cancelled
        if c.scheduled_departure_s - CANCELLED_AHEAD_S <= now_s <= c.scheduled_arrival_s
    ]
    return sorted(shown, key=lambda c: (c.service_date, c.trip_id))  # fmt: skip


def _cancelled_trip_update(
    feed: rt.FeedMessage, network: Network, c: Cancellation, now_s: float
) -> str | None:
    """A cancelled trip's TripUpdate: CANCELED, no stop_time_update (the spec's way to say the
    trip does not run); its entity id (None: the trip is no longer in the feed)."""
    trip_idx = network.trip_index.get(c.trip_id)
    runs = network.runs_of_trip.get(trip_idx, []) if trip_idx is not None else []
    if len(runs) != 1:
        return None
    entity = feed.entity.add()
    entity.id = _entity_id(network, runs[0], c.service_date)
    update = entity.trip_update
    _trip_descriptor(network, update.trip, runs[0], c.service_date, True)
    update.trip.schedule_relationship = _TD.CANCELED
    update.timestamp = int(min(c.cancelled_at_s, now_s))  # no later than the header
    return entity.id


def skipped_stops(network: Network, detour: Detour) -> list[int]:
    """The stops (indices in its trip's pattern) a bus on a detour passed while off its shape:
    those after where it left and before the farthest its fixes off the shape came along it
    (`Detour.reached_shape_dist_m`). Empty when the detour's shape is not its trip's."""
    trip_idx = network.trip_index.get(detour.trip_id)
    if trip_idx is None or detour.reached_shape_dist_m is None:
        return []
    trip = network.trips[trip_idx]
    if network.shapes[trip.shape_idx].shape_id != detour.shape_id:
        return []
    dists = network.patterns[trip.pattern_idx].stop_dist_m
    left, reached = detour.left_shape_dist_m, detour.reached_shape_dist_m
    return [k for k, d in enumerate(dists.tolist()) if left < d < reached]


def _detour_stops(update: rt.TripUpdate, network: Network, run: int, detour: Detour) -> None:
    """A bus on a detour: SKIPPED at the stops it passed off its shape (no times: none is
    needed), then NO_DATA at the next one (whether it serves the stops ahead is not known)."""
    trip = network.trips[int(network.runs.trip_idx[run])]
    pattern = network.patterns[trip.pattern_idx]
    skipped = skipped_stops(network, detour)
    for k in skipped:
        stop = update.stop_time_update.add()
        stop.stop_sequence = trip.stop_sequences[k]
        stop.stop_id = pattern.stop_ids[k]
        stop.schedule_relationship = _STU.SKIPPED
    along = detour.reached_shape_dist_m or detour.left_shape_dist_m
    ahead = [k for k, d in enumerate(pattern.stop_dist_m.tolist()) if d > along]
    following = skipped[-1] + 1 if skipped else (ahead[0] if ahead else len(pattern.stop_ids))
    if following < len(pattern.stop_ids):
        stop = update.stop_time_update.add()
        stop.stop_sequence = trip.stop_sequences[following]
        stop.stop_id = pattern.stop_ids[following]
        stop.schedule_relationship = _STU.NO_DATA


def _next_stop_by_schedule(
    update: rt.TripUpdate, network: Network, v: LiveVehicle, on: OnTrip, now_s: float
) -> None:
    """Without predictions: the next stop by the schedule plus the current delay (consumers
    carry the delay on), or on a headway-only trip by its template's running time from where the
    bus is; no data on a timetabled trip without a delay."""
    run = on.located.run
    trip = network.trips[int(network.runs.trip_idx[run])]
    pattern = network.patterns[trip.pattern_idx]
    k = on.next_index
    stop = update.stop_time_update.add()
    stop.stop_sequence = trip.stop_sequences[k]
    stop.stop_id = pattern.stop_ids[k]
    if not on.exact_times:
        row = int(network.runs.row[run])
        along = v.shape_dist_m if v.shape_dist_m is not None else float(pattern.stop_dist_m[0])
        to_go_s = float(pattern.arrival_s[row, k]) - network.scheduled_time_s(run, along)
        arrival_s = max(v.observed_at_s + to_go_s, now_s)  # not yet there
        dwell_s = float(pattern.departure_s[row, k] - pattern.arrival_s[row, k]) if k else 0.0
        stop.arrival.time = round(arrival_s)
        stop.departure.time = round(arrival_s + max(dwell_s, 0.0))
        stop.schedule_relationship = _STU.UNSCHEDULED
    elif v.delay_s is not None and math.isfinite(v.delay_s):
        stop.arrival.delay = round(v.delay_s)
        stop.departure.delay = round(v.delay_s)
        stop.schedule_relationship = _STU.SCHEDULED
    else:
        stop.schedule_relationship = _STU.NO_DATA


def _entity_id(network: Network, run: int, service_date: str) -> str:
    trip = network.trips[int(network.runs.trip_idx[run])]
    if math.isfinite(float(network.runs.headway_s[run])):
        return f"{trip.trip_id}:{service_date}:{_hms(float(network.runs.start_s[run]))}"
    return f"{trip.trip_id}:{service_date}"


def _trip_update(
    feed: rt.FeedMessage,
    entity_id: str,
    network: Network,
    run: int,
    service_date: str,
    exact: bool,
    v: LiveVehicle,
    *,
    with_delay: bool = True,
) -> rt.TripUpdate:
    entity = feed.entity.add()
    entity.id = entity_id
    update = entity.trip_update
    _trip_descriptor(network, update.trip, run, service_date, exact)
    update.vehicle.id = v.vehicle_id
    update.timestamp = int(v.observed_at_s)
    if with_delay and exact and v.delay_s is not None and math.isfinite(v.delay_s):
        update.delay = round(v.delay_s)
    return update


def _run_of_prediction(network: Network, p: Prediction) -> int | None:
    """The run a prediction of a block's next trip is for (the trip's departure that day)."""
    trip_idx = network.trip_index.get(p.trip_id)
    if trip_idx is None:
        return None
    runs = network.runs_of_trip.get(trip_idx, [])
    if len(runs) == 1:
        return runs[0]
    located = locate_run(network, p.trip_id, p.predicted_arrival_s)
    return None if located is None else located.run


def _predicted_stops(
    update: rt.TripUpdate, network: Network, run: int, made: Sequence[Prediction]
) -> None:
    """A stop_time_update per predicted stop, in stop order, times never going backwards."""
    trip = network.trips[int(network.runs.trip_idx[run])]
    pattern = network.patterns[trip.pattern_idx]
    row = int(network.runs.row[run])
    relationship = _STU.SCHEDULED if bool(network.runs.exact_times[run]) else _STU.UNSCHEDULED
    latest = 0  # epoch s: the previous stop's departure
    for p in sorted(made, key=lambda p: p.stop_sequence):
        i = p.stop_sequence  # the index in the trip's pattern
        if not 0 <= i < len(trip.stop_sequences):
            continue
        # At the first stop the prediction is the departure; elsewhere the arrival, and the
        # departure after the timetable's dwell there; each stop a second at least after the
        # one before (stops a few metres apart are predicted at the same second).
        dwell_s = 0.0 if i == 0 else float(pattern.departure_s[row, i] - pattern.arrival_s[row, i])
        arrival_s = max(round(p.predicted_arrival_s), latest + 1)
        departure_s = latest = max(arrival_s, round(arrival_s + dwell_s))
        uncertainty = max(0, round((p.p90_arrival_s - p.p10_arrival_s) / 2))
        stop = update.stop_time_update.add()
        stop.stop_sequence = trip.stop_sequences[i]
        stop.stop_id = p.stop_id
        stop.arrival.time = arrival_s
        stop.arrival.uncertainty = uncertainty
        stop.departure.time = departure_s
        stop.departure.uncertainty = uncertainty
        stop.schedule_relationship = relationship


def alerts(
    network: Network, live: Iterable[Alert], now_s: float, cancelled: Iterable[Cancellation] = ()
) -> rt.FeedMessage:
    """The Alerts feed: detours, frequency lines short of buses and cancelled trips (see the
    module). `cancelled`: those to tell now (`shown_cancellations`)."""
    feed = rt.FeedMessage()
    header(feed, now_s)
    for a in sorted(live, key=lambda a: a.alert_id):
        if isinstance(a, Detour) and a.active:
            _detour_alert(feed, network, a)
        elif isinstance(a, ShortService):
            text = (f"{a.buses_seen} of the {a.buses_needed} buses this line's headway needs are "
                    "running: expect longer waits.")  # fmt: skip
            _alert(feed, network, a.alert_id, a.route_id, None, rt.Alert.REDUCED_SERVICE,
                   "fewer buses than scheduled", text)  # fmt: skip
    for c in sorted(cancelled, key=lambda c: (c.service_date, c.trip_id)):
        _cancelled_alert(feed, network, c)
    return feed


def _detour_alert(feed: rt.FeedMessage, network: Network, a: Detour) -> None:
    """DETOUR on the route and trip, and on each stop the bus passed off its route."""
    trip_idx = network.trip_index.get(a.trip_id)
    skipped = skipped_stops(network, a)
    text = "A bus of this route is off its usual path (a detour): some stops may be missed."
    stop_ids: list[str] = []
    if trip_idx is not None and skipped:
        pattern = network.patterns[network.trips[trip_idx].pattern_idx]
        stop_ids = list(dict.fromkeys(pattern.stop_ids[k] for k in skipped))
        names = ", ".join(_stop_name(network, stop_id) for stop_id in stop_ids)
        text = (f"A bus of this route is off its usual path (a detour) and did not serve "
                f"{names}; the stops after may be missed too.")  # fmt: skip
    alert = _alert(feed, network, a.alert_id, a.route_id, a.trip_id, rt.Alert.DETOUR, "detour",
                   text)  # fmt: skip
    for stop_id in stop_ids:  # this route at this stop (not the stop's other routes)
        informed = alert.informed_entity.add()
        informed.route_id = a.route_id
        informed.stop_id = stop_id


def _cancelled_alert(feed: rt.FeedMessage, network: Network, c: Cancellation) -> None:
    """NO_SERVICE on the trip of that day, with the operator's cause and reason; its impact is
    the trip's scheduled span, told from when it was cancelled (or from its departure)."""
    trip_idx = network.trip_index.get(c.trip_id)
    if trip_idx is None:
        return
    zone = ZoneInfo(network.timezone)
    leaves = dt.datetime.fromtimestamp(c.scheduled_departure_s, zone)
    first_stop = network.patterns[network.trips[trip_idx].pattern_idx].stop_ids[0]
    description = (
        f"The {leaves:%H:%M} trip from {_stop_name(network, first_stop)} to "
        f"{headsign(network, trip_idx)} on {leaves:%A %d %B %Y} does not run (trip "
        f"{c.trip_id})." + (f" Reason: {c.reason}." if c.reason else "")
    )
    alert = _alert(feed, network, f"cancelled:{c.trip_id}:{c.service_date}", c.route_id,
                   c.trip_id, rt.Alert.NO_SERVICE, f"the {leaves:%H:%M} trip is cancelled",
                   description, start_date=c.service_date,
                   relationship=_TD.CANCELED)  # fmt: skip
    alert.cause = rt.Alert.Cause.Value(c.cause.value)  # type: ignore[assignment]
    begin, end = int(c.scheduled_departure_s), math.ceil(c.scheduled_arrival_s)
    told = alert.communication_period.add()
    told.start, told.end = min(int(c.cancelled_at_s), begin), end
    impact = alert.impact_period.add()
    impact.start, impact.end = begin, end


def _stop_name(network: Network, stop_id: str) -> str:
    found = network.stops.get(stop_id)
    return found[0] if found is not None and found[0] else stop_id


def _alert(
    feed: rt.FeedMessage,
    network: Network,
    alert_id: str,
    route_id: str,
    trip_id: str | None,
    effect: int,
    header_text: str,
    description: str,
    *,
    start_date: str | None = None,
    relationship: int | None = None,
) -> rt.Alert:
    entity = feed.entity.add()
    entity.id = alert_id
    alert = entity.alert
    informed = alert.informed_entity.add()
    informed.route_id = route_id
    route = (
        network.routes[network.route_index[route_id]] if route_id in network.route_index else None
    )
    name = (route.short_name or route.long_name or route_id) if route is not None else route_id
    trip_idx = network.trip_index.get(trip_id) if trip_id is not None else None
    if trip_id is not None and trip_idx is not None:
        informed.trip.trip_id = trip_id
        if start_date is not None:
            informed.trip.start_date = start_date
        if relationship is None:  # the trip's, as its TripUpdate would say (validators ask)
            runs = network.runs_of_trip.get(trip_idx, [])
            exact = bool(network.runs.exact_times[runs[0]]) if runs else True
            relationship = _TD.SCHEDULED if exact else _TD.UNSCHEDULED
        informed.trip.schedule_relationship = relationship  # type: ignore[assignment]
    alert.cause = rt.Alert.UNKNOWN_CAUSE
    alert.effect = effect  # type: ignore[assignment]
    alert.header_text.translation.add(text=f"Route {name}: {header_text}", language="en")
    alert.description_text.translation.add(text=description, language="en")
    return alert


def _entities_only(feed: rt.FeedMessage) -> bytes:
    """A feed's entities, encoded without its header (the header goes first, once, and keeps
    out of the digest that tells whether the feed changed)."""
    feed.ClearField("header")
    return feed.SerializePartialToString(deterministic=True)


def trip_key(network: Network, on: OnTrip) -> tuple[str, str]:
    """(trip_id, service date YYYYMMDD) of where a vehicle is, as `Cancellation.key`."""
    trip = network.trips[int(network.runs.trip_idx[on.located.run])]
    return trip.trip_id, f"{on.located.service_date:%Y%m%d}"


def made_for_trip(made: Sequence[Prediction], current: tuple[str, str]) -> Sequence[Prediction]:
    """A vehicle's predictions if they were made for the trip it is on now (`current`, as
    `trip_key`), else none: made while it was taken for another trip's, they are stale."""
    if any(p.trips_ahead == 0 and (p.trip_id, p.service_date) != current for p in made):
        return ()
    return made
