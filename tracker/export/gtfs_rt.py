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
  (`place`), in the same order in both feeds.
- **Alerts**: what affects riders: a bus on a detour (DETOUR on its route) and frequency lines
  short of buses (REDUCED_SERVICE).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from google.transit import gtfs_realtime_pb2 as rt

from tracker.core.departures import RunOnDay, locate_run, runs_by_start
from tracker.core.model import State
from tracker.core.network import Network
from tracker.core.operations import Alert, Detour, ShortService
from tracker.core.predict import Prediction
from tracker.live.vehicle import LiveVehicle

GTFS_RT_VERSION = "2.0"
STOPPED_AT_M = 25.0  # a bus this close to a stop, and slow, is stopped at it
STOPPED_BELOW_MPS = 1.5
INCOMING_AT_M = 150.0  # ... this close, on its way: incoming at it
OFF_SHAPE_M = 200.0  # farther from its trip's shape, a vehicle is told without its trip
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
) -> list[tuple[LiveVehicle, OnTrip | None]]:
    """The vehicles seen in the last `stale_after_s`, by id, each with where it is in the
    timetable (None: on no trip of the feed).

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
        if on is None:
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
    if v.offset_m is not None and v.offset_m > OFF_SHAPE_M:
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
    other; each vehicle's are kept encoded, as a FeedMessage holding those entities only."""

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
    ) -> dict[str, tuple[bytes, bytes]]:
        """Each feed's (header, entities) bytes: the message is their concatenation."""
        placed = place(self.network, vehicles, now_s, stale_after_s, self._locate)
        seen = {v.vehicle_id for v, _ in placed}
        for cache in (self._located, self._positions, self._updates):
            for gone in [k for k in cache if k not in seen]:
                del cache[gone]
        head = rt.FeedMessage()
        header(head, now_s)
        top = head.SerializeToString(deterministic=True)
        return {
            "vehicle-positions": (top, self._vehicle_positions(placed)),
            "trip-updates": (top, self._trip_updates(placed, predictions, now_s)),
            "alerts": (top, alerts(self.network, live_alerts, now_s).SerializePartialToString(
                deterministic=True)),
        }  # fmt: skip

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
    ) -> bytes:
        chunks: list[bytes] = []
        done: set[str] = set()
        later: list[tuple[str, bytes]] = []  # the block's next trips, after every current one
        for v, on in placed:
            if on is None:
                continue
            made = predictions.get(v.vehicle_id, ())
            found = self._updates.get(v.vehicle_id)
            if found is not None and found[0] is v and found[1] == on and found[2] is made:
                updates = found[3]
            else:
                updates = self._trip_updates_of(v, on, made, now_s)
                if updates.keep:
                    self._updates[v.vehicle_id] = (v, on, made, updates)
            done.add(updates.key)
            chunks.append(updates.current)
            later.extend(updates.ahead)
        for key, chunk in later:
            if key not in done:
                done.add(key)
                chunks.append(chunk)
        return b"".join(chunks)

    def _trip_updates_of(
        self, v: LiveVehicle, on: OnTrip, made: Sequence[Prediction], now_s: float
    ) -> _Updates:
        """The encoded TripUpdates of the trip the vehicle is on and of its block's next trips."""
        network = self.network
        run, day = on.located.run, on.located.service_date
        service_date = f"{day:%Y%m%d}"
        trip_id = network.trips[int(network.runs.trip_idx[run])].trip_id
        if any(p.trips_ahead == 0 and (p.trip_id, p.service_date) != (trip_id, service_date)
               for p in made):  # fmt: skip
            made = ()  # made while the bus was taken for another trip's: stale
        by_trip: dict[tuple[str, str], list[Prediction]] = {}
        for p in made:
            by_trip.setdefault((p.trip_id, p.service_date), []).append(p)
        current_predictions = by_trip.pop((trip_id, service_date), [])
        one = rt.FeedMessage()
        key = _entity_id(network, run, service_date)
        update = _trip_update(one, key, network, run, service_date, on.exact_times, v)
        if current_predictions:
            _predicted_stops(update, network, run, current_predictions)
        else:
            _next_stop_by_schedule(update, network, v, on, now_s)
        current = one.SerializePartialToString(deterministic=True)
        ahead: list[tuple[str, bytes]] = []
        for (_trip_id, date), next_made in by_trip.items():
            next_run = _run_of_prediction(network, next_made[0])
            if next_run is None:
                continue
            one = rt.FeedMessage()
            next_key = _entity_id(network, next_run, date)
            exact = bool(network.runs.exact_times[next_run])
            update = _trip_update(one, next_key, network, next_run, date, exact, v)
            _predicted_stops(update, network, next_run, next_made)
            ahead.append((next_key, one.SerializePartialToString(deterministic=True)))
        return _Updates(key, current, ahead, keep=bool(current_predictions))


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
    network: Network, vehicles: Iterable[LiveVehicle], now_s: float, *, stale_after_s: float
) -> rt.FeedMessage:
    """The VehiclePositions feed (see the module), built afresh."""
    built = FeedBuilder(network).build(vehicles, {}, (), now_s, stale_after_s=stale_after_s)
    return message(*built["vehicle-positions"])


def trip_updates(
    network: Network,
    vehicles: Iterable[LiveVehicle],
    predictions: Mapping[str, Sequence[Prediction]],
    now_s: float,
    *,
    stale_after_s: float,
) -> rt.FeedMessage:
    """The TripUpdates feed (see the module), built afresh. `predictions`: each vehicle's."""
    built = FeedBuilder(network).build(vehicles, predictions, (), now_s,
                                       stale_after_s=stale_after_s)  # fmt: skip
    return message(*built["trip-updates"])


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
) -> rt.TripUpdate:
    entity = feed.entity.add()
    entity.id = entity_id
    update = entity.trip_update
    _trip_descriptor(network, update.trip, run, service_date, exact)
    update.vehicle.id = v.vehicle_id
    update.timestamp = int(v.observed_at_s)
    if exact and v.delay_s is not None and math.isfinite(v.delay_s):
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


def alerts(network: Network, live: Iterable[Alert], now_s: float) -> rt.FeedMessage:
    """The Alerts feed: detours and frequency lines short of buses (see the module)."""
    feed = rt.FeedMessage()
    header(feed, now_s)
    for a in sorted(live, key=lambda a: a.alert_id):
        if isinstance(a, Detour) and a.active:
            text = "A bus of this route is off its usual path (a detour): some stops may be missed."
            _alert(feed, network, a.alert_id, a.route_id, a.trip_id, rt.Alert.DETOUR, "detour",
                   text)  # fmt: skip
        elif isinstance(a, ShortService):
            text = (f"{a.buses_seen} of the {a.buses_needed} buses this line's headway needs are "
                    "running: expect longer waits.")  # fmt: skip
            _alert(feed, network, a.alert_id, a.route_id, None, rt.Alert.REDUCED_SERVICE,
                   "fewer buses than scheduled", text)  # fmt: skip
    return feed


def _alert(
    feed: rt.FeedMessage,
    network: Network,
    alert_id: str,
    route_id: str,
    trip_id: str | None,
    effect: int,
    header_text: str,
    description: str,
) -> None:
    entity = feed.entity.add()
    entity.id = alert_id
    alert = entity.alert
    informed = alert.informed_entity.add()
    informed.route_id = route_id
    route = (
        network.routes[network.route_index[route_id]] if route_id in network.route_index else None
    )
    name = (route.short_name or route.long_name or route_id) if route is not None else route_id
    if trip_id is not None and trip_id in network.trip_index:
        informed.trip.trip_id = trip_id
    alert.cause = rt.Alert.UNKNOWN_CAUSE
    alert.effect = effect  # type: ignore[assignment]
    alert.header_text.translation.add(text=f"Route {name}: {header_text}", language="en")
    alert.description_text.translation.add(text=description, language="en")
