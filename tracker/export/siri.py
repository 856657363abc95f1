"""SIRI 2.0 out, "SIRI Lite" style: Vehicle Monitoring (SIRI-VM) and Stop Monitoring (SIRI-SM)
answers as XML, from the same data as the GTFS-realtime feeds (`tracker.export.gtfs_rt`).

European and Israeli consumers read SIRI rather than GTFS-realtime. SIRI Lite is the plain HTTP
GET form of it that Entur, IDFM and MTA Bus Time serve: the request's parameters in the query,
a `Siri/ServiceDelivery` in answer. Pure: values in, bytes out; `now_s` is passed in.
`tracker/api/siri.py` serves them.

What is told, and why it agrees with the GTFS-realtime feeds (`moment` gathers it once):

- the vehicles seen in the last `stale_after_s`, each placed on its trip by
  `gtfs_rt.place` (the same departure of a headway-only trip, the same "two buses on one trip:
  the one seen last keeps it", the same stop it is at or going to); a bus on a trip the operator
  cancelled is told without its trip, as in VehiclePositions;
- a vehicle's predictions are told only while it is on the trip they were made for (made while
  the matcher had it on another trip they are stale, as TripUpdates has it), never for a
  cancelled trip, and, on its current trip, only for the stops not behind it (a rider at a stop
  the bus left must not see it coming);
- a bus on an active detour (the operations monitor's `Detour`) has `PredictionInaccurate`.

**SIRI-VM** (`vehicle_monitoring`): a `VehicleActivity` per vehicle: the fix's time, the position
the map shows, bearing, and on a trip the journey (line, direction, dated journey, published
line name, destination, block, delay) and its `MonitoredCall`: the stop it is at or going to,
with the timetable's times and the predicted arrival when there is one.

**SIRI-SM** (`stop_monitoring`): a `MonitoredStopVisit` per predicted arrival at the stop, of the
trip a bus is on or of its block's next trips, soonest first: the journey as in VM (the trip the
visit is made on), and its `MonitoredCall` at that stop: aimed (timetable) and expected arrival
(the prediction's median) and departure (after the timetable's dwell).

Every element is emitted in the order of the SIRI XSD's sequences: `ELEMENT_ORDER` says that
order for each parent, group by group, and the tests check the answers against it.

Cost: a `Moment` places the vehicles once (a `Locator` keeps them placed while their state is
the same object) and works out the visits at every stop on the first SM answer of that moment;
`VehicleMonitoring` keeps each vehicle's serialised VehicleActivity while it is made of the same
objects, so a VM answer serialises only the buses that reported since.

Refs are the static GTFS's ids: LineRef is the route_id, DatedVehicleJourneyRef the trip_id,
DataFrameRef the service day (YYYY-MM-DD), StopPointRef / MonitoringRef the stop_id, Order the
GTFS stop_sequence (left out where it is 0: the XSD wants a positive integer), VehicleRef the
vehicle's id. Times are ISO 8601 in the feed's time zone, to the second.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo

from google.transit import gtfs_realtime_pb2 as rt

from tracker.core.cancellations import Cancellation
from tracker.core.departures import RunOnDay, headsign
from tracker.core.network import Network
from tracker.core.operations import Alert, Detour
from tracker.core.predict import Prediction
from tracker.export.gtfs_rt import (
    OnTrip,
    locate,
    made_for_trip,
    place,
    shown_cancellations,
    trip_key,
)
from tracker.live.vehicle import LiveVehicle

SIRI_NS: Final = "http://www.siri.org.uk/siri"
SIRI_VERSION: Final = "2.0"
DEFAULT_PRODUCER_REF: Final = "bus-tracker"

# The order of the elements emitted, per parent element, from the sequences of the SIRI 2.0 XSD
# (github.com/SIRI-CEN/SIRI, xsd/); each parent lists the children this module may emit, in
# the XSD's order, the comments naming the group or type they come from. Elements of the XSD
# not emitted are left out. The tests check every answer against this table.
ELEMENT_ORDER: Final[Mapping[str, tuple[str, ...]]] = {
    # siri/siri_base: SiriSchema, a choice; ServiceDelivery is the answer to a ServiceRequest.
    "Siri": ("ServiceDelivery",),
    # siri/siri_base ServiceDeliveryStructure = siri_requests ProducerResponseStructure
    # (ResponseStructure; ProducerResponseEndpointGroup) + ServiceDeliveryBodyGroup
    # (ServiceDeliveryRequestStatusGroup; MoreData; AbstractFunctionalServiceDelivery+).
    "ServiceDelivery": (
        "ResponseTimestamp", "ProducerRef", "Status", "MoreData",
        "VehicleMonitoringDelivery", "StopMonitoringDelivery",
    ),
    # siri_requests AbstractServiceDeliveryStructure (ResponseStructure; DeliveryStatusGroup:
    # Status, ErrorCondition, SuccessInfoGroup) + siri_vehicleMonitoring_service
    # VehicleMonitoringPayloadGroup.
    "VehicleMonitoringDelivery": (
        "ResponseTimestamp", "Status", "ErrorCondition", "ValidUntil", "ShortestPossibleCycle",
        "VehicleActivity",
    ),
    # The same + siri_stopMonitoring_service StopMonitoringPayloadGroup.
    "StopMonitoringDelivery": (
        "ResponseTimestamp", "Status", "ErrorCondition", "ValidUntil", "ShortestPossibleCycle",
        "MonitoringRef", "MonitoringName", "MonitoredStopVisit",
    ),
    # siri_request_errorConditions ServiceDeliveryErrorConditionStructure (a choice of
    # ServiceRequestErrorGroup, then Description), InvalidDataReferencesErrorStructure
    # (ErrorCodeStructure: ErrorText; then InvalidRef*).
    "ErrorCondition": ("InvalidDataReferencesError", "Description"),
    "InvalidDataReferencesError": ("ErrorText", "InvalidRef"),
    # siri_vehicleMonitoring_service VehicleActivityStructure (AbstractIdentifiedItemStructure:
    # RecordedAtTime, ItemIdentifier; then ValidUntilTime ... MonitoredVehicleJourney).
    "VehicleActivity": ("RecordedAtTime", "ValidUntilTime", "MonitoredVehicleJourney"),
    # siri_stopMonitoring_service MonitoredStopVisitStructure (AbstractIdentifiedItemStructure;
    # ValidUntilTime; StopVisitReferenceGroup: MonitoringRef; MonitoredVehicleJourney).
    "MonitoredStopVisit": (
        "RecordedAtTime", "ItemIdentifier", "MonitoringRef", "MonitoredVehicleJourney",
    ),
    # siri_model/siri_monitoredVehicleJourney MonitoredVehicleJourneyStructure: its groups in
    # order.
    "MonitoredVehicleJourney": (
        # MonitoredJourneyIdentityGroup (siri_journey_support)
        "LineRef", "DirectionRef", "FramedVehicleJourneyRef",
        # JourneyPatternInfoGroup (siri_reference)
        "VehicleMode", "PublishedLineName",
        # VehicleJourneyInfoGroup (siri_journey): JourneyEndNamesGroup, JourneyEndTimesGroup
        "OriginRef", "DestinationRef", "DestinationName", "HeadwayService",
        "OriginAimedDepartureTime",
        # JourneyProgressGroup: Monitored, ProgressDataQualityGroup, ProgressDataGroup
        "Monitored", "PredictionInaccurate", "VehicleLocation", "Bearing", "Delay",
        # TrainOperationalInfoGroup > OperationalInfoGroup (siri_journey)
        "BlockRef", "VehicleRef",
        # MonitoredCallingPatternGroup
        "MonitoredCall",
    ),
    # siri_journey_support FramedVehicleJourneyRefStructure.
    "FramedVehicleJourneyRef": ("DataFrameRef", "DatedVehicleJourneyRef"),
    # siri_utility/siri_location LocationStructure > WgsGroup.
    "VehicleLocation": ("Longitude", "Latitude"),
    # siri_monitoredVehicleJourney MonitoredCallStructure: ContextualisedStopPointInSequenceGroup
    # (siri_reference), then MonitoredCallGroup: CallRealtimeGroup, StopArrivalGroup
    # (VehicleArrivalTimesGroup), StopDepartureGroup (VehicleDepartureTimesGroup),
    # HeadwayIntervalGroup, StopProximityGroup.
    "MonitoredCall": (
        "StopPointRef", "Order", "StopPointName", "VehicleAtStop",
        "AimedArrivalTime", "ExpectedArrivalTime", "AimedDepartureTime", "ExpectedDepartureTime",
        "AimedHeadwayInterval", "DistanceFromStop", "NumberOfStopsAway",
    ),
}  # fmt: skip

# The children the XSD requires (minOccurs 1) of the parents above, where any.
REQUIRED: Final[Mapping[str, tuple[str, ...]]] = {
    "ServiceDelivery": ("ResponseTimestamp",),
    "VehicleMonitoringDelivery": ("ResponseTimestamp",),
    "StopMonitoringDelivery": ("ResponseTimestamp",),
    "VehicleActivity": ("RecordedAtTime", "ValidUntilTime", "MonitoredVehicleJourney"),
    "MonitoredStopVisit": ("RecordedAtTime", "MonitoringRef", "MonitoredVehicleJourney"),
    "FramedVehicleJourneyRef": ("DataFrameRef", "DatedVehicleJourneyRef"),
    "VehicleLocation": ("Longitude", "Latitude"),
}

# GTFS route_type (and the extended types' hundreds) to SIRI's VehicleModesEnumeration.
_MODES: Final = {0: "tram", 1: "metro", 2: "rail", 3: "bus", 4: "ferry", 5: "tram", 11: "bus"}
_EXTENDED_MODES: Final = {1: "rail", 2: "coach", 4: "metro", 7: "bus", 8: "bus", 9: "tram",
                          10: "ferry", 11: "air"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Producer:
    """How the answers present their producer: `ref` is the ProducerRef; a delivery is valid
    `valid_for_s` after it is made (ValidUntil); `shortest_cycle_s` is how often the answers can
    change (ShortestPossibleCycle: they are built at most once per tick)."""

    ref: str = DEFAULT_PRODUCER_REF
    valid_for_s: float = 60.0
    shortest_cycle_s: float = 1.0


class Visit(NamedTuple):
    """A predicted arrival of a vehicle at a stop, with where the vehicle is now."""

    arrival_s: float  # the prediction's median: what visits are sorted by
    vehicle_id: str
    prediction: Prediction
    vehicle: LiveVehicle
    on: OnTrip  # the trip the vehicle is on now (the visit may be on its block's next trip)


class Moment:
    """One moment's data that every answer of that moment is built from (see the module; made
    by `moment`). What is derived from it for some answers only (the predictions told of a
    vehicle, the visits at each stop) is worked out on first use and kept."""

    def __init__(
        self,
        network: Network,
        now_s: float,
        stale_after_s: float,
        placed: Sequence[tuple[LiveVehicle, OnTrip | None]],
        predictions: Mapping[str, Sequence[Prediction]],
        cancelled: frozenset[tuple[str, str]],
        detoured: frozenset[str],
    ) -> None:
        self.network = network
        self.now_s = now_s
        self.stale_after_s = stale_after_s
        self.placed = tuple(placed)  # by vehicle id; None: on no trip (or told without it)
        self.predictions = predictions  # vehicle id -> its predictions, as the engine made them
        self.cancelled = cancelled  # (trip_id, YYYYMMDD) of the trips cancelled now
        self.detoured = detoured  # vehicles on an active detour
        self._told: dict[str, tuple[Prediction, ...]] = {}
        self._at_stop: dict[str, list[Visit]] | None = None

    def told(self, vehicle_id: str, on: OnTrip) -> tuple[Prediction, ...]:
        """The predictions of a vehicle on a trip (`on`, where it is placed) to tell: none if
        they were made while it was taken for another trip's, none of a cancelled trip, and
        on its current trip none of the stops behind it."""
        found = self._told.get(vehicle_id)
        if found is None:
            made = self.predictions.get(vehicle_id, ())
            found = tuple(
                p
                for p in made_for_trip(made, trip_key(self.network, on))
                if (p.trip_id, p.service_date) not in self.cancelled
                and not (p.trips_ahead == 0 and p.stop_sequence < on.next_index)
            )
            self._told[vehicle_id] = found
        return found

    def visits(self, stop_id: str) -> Sequence[Visit]:
        """The predicted visits at a stop, soonest first (the index of every stop is made on
        the first call)."""
        if self._at_stop is None:
            at_stop: dict[str, list[Visit]] = {}
            for v, on in self.placed:
                if on is not None:
                    for p in self.told(v.vehicle_id, on):
                        visit = Visit(p.predicted_arrival_s, v.vehicle_id, p, v, on)
                        at_stop.setdefault(p.stop_id, []).append(visit)
            for visits in at_stop.values():
                visits.sort(key=_SOONEST)
            self._at_stop = at_stop
        return self._at_stop.get(stop_id, ())

    def stops_visited(self) -> list[str]:
        """The stops with predicted visits."""
        self.visits("")
        assert self._at_stop is not None
        return list(self._at_stop)


_SOONEST = operator.itemgetter(0, 1)


@dataclass
class Locator:
    """`gtfs_rt.locate` of each vehicle, kept while its state is the same object (a bus reports
    every few seconds, the answers are made every second), so that a moment locates only the
    buses that reported since. Not thread-safe: one `moment` at a time."""

    network: Network
    _found: dict[str, tuple[LiveVehicle, OnTrip | None]] = field(default_factory=dict)

    def __call__(self, v: LiveVehicle) -> OnTrip | None:
        found = self._found.get(v.vehicle_id)
        if found is not None and found[0] is v:
            return found[1]
        on = locate(self.network, v)
        self._found[v.vehicle_id] = (v, on)
        return on

    def keep_only(self, vehicle_ids: Iterable[str]) -> None:
        kept = set(vehicle_ids)
        for gone in [k for k in self._found if k not in kept]:
            del self._found[gone]


def moment(
    network: Network,
    vehicles: Iterable[LiveVehicle],
    predictions: Mapping[str, Sequence[Prediction]],
    now_s: float,
    *,
    stale_after_s: float,
    live_alerts: Iterable[Alert] = (),
    cancelled: Iterable[Cancellation] = (),
    locate_one: Callable[[LiveVehicle], OnTrip | None] | None = None,
) -> Moment:
    """What the answers of `now_s` say (see the module): `predictions` are each vehicle's,
    `live_alerts` the operations alerts (their detours), `cancelled` the operator's
    cancellations; `locate_one` a `Locator` to keep the vehicles located between moments."""
    keys = frozenset(c.key for c in shown_cancellations(cancelled, now_s))
    placed = place(network, vehicles, now_s, stale_after_s, locate_one, keys)
    detoured = frozenset(a.vehicle_id for a in live_alerts if isinstance(a, Detour) and a.active)
    return Moment(network, now_s, stale_after_s, placed, predictions, keys, detoured)


# --- Vehicle Monitoring ------------------------------------------------------------------------


class VehicleMonitoring:
    """Builds SIRI-VM answers (see the module), keeping each vehicle's VehicleActivity
    serialised while what it is made of stays the same (its state and predictions the same
    objects, its place, whether it is on a detour): a bus reports every few seconds and the
    answers are made every second, so an answer serialises only the buses that reported since
    (ElementTree's serialisation is most of the cost). An answer is its envelope's bytes with
    the activities' inserted. Safe to call from several threads at once."""

    def __init__(self, network: Network) -> None:
        self.network = network
        self.zone = ZoneInfo(network.timezone)
        # vehicle id -> (its state, place, predictions, detoured, stale_after_s), its bytes
        self._kept: dict[str, tuple[tuple[object, ...], bytes]] = {}

    def build(
        self,
        at: Moment,
        *,
        line_ref: str | None = None,
        vehicle_ref: str | None = None,
        producer: Producer = Producer(),
    ) -> bytes:
        """The answer of the moment `at`: every vehicle, or those on the line `line_ref` (a
        route_id), or the one vehicle `vehicle_ref` (none if it is not seen)."""
        chunks: list[bytes] = []
        for v, on in at.placed:
            if vehicle_ref is not None and v.vehicle_id != vehicle_ref:
                continue
            if line_ref is not None and (
                on is None or _route_id(self.network, on.located.run) != line_ref
            ):
                continue
            made = at.predictions.get(v.vehicle_id)
            key = (v, on, made, v.vehicle_id in at.detoured, at.stale_after_s)
            found = self._kept.get(v.vehicle_id)
            if found is None or not _same(found[0], key):
                activity = ET.Element("VehicleActivity")
                self._activity(activity, at, v, on)
                found = (key, ET.tostring(activity, encoding="utf-8"))
                self._kept[v.vehicle_id] = found
            chunks.append(found[1])
        if line_ref is None and vehicle_ref is None:  # every vehicle: forget those gone
            seen = {v.vehicle_id for v, _ in at.placed}
            for gone in [k for k in list(self._kept) if k not in seen]:
                self._kept.pop(gone, None)
        root, _ = _delivery(at.now_s, "VehicleMonitoringDelivery", producer, self.zone)
        head, end, tail = _serialise(root).partition(b"</VehicleMonitoringDelivery>")
        return head + b"".join(chunks) + end + tail

    def _activity(
        self, activity: ET.Element, at: Moment, v: LiveVehicle, on: OnTrip | None
    ) -> None:
        network, zone = self.network, self.zone
        _sub(activity, "RecordedAtTime", _time(v.observed_at_s, zone))
        _sub(activity, "ValidUntilTime", _time(v.observed_at_s + at.stale_after_s, zone))
        journey = _sub(activity, "MonitoredVehicleJourney")
        if on is None:  # on no trip of the feed (or told without it): where it is only
            _progress(journey, v, at, delay=False)
            _sub(journey, "VehicleRef", v.vehicle_id)
            return
        located = on.located
        trip_idx = int(network.runs.trip_idx[located.run])
        _journey_head(journey, network, trip_idx, located.service_date, located.run, zone)
        _progress(journey, v, at, delay=on.exact_times)
        _operational(journey, network, trip_idx, v)
        k = on.next_index
        predicted = next((p for p in at.told(v.vehicle_id, on)
                          if p.trips_ahead == 0 and p.stop_sequence == k), None)  # fmt: skip
        _call(journey, network, trip_idx, k, zone, located=located, aimed_s=None,
              expected_s=None if predicted is None else predicted.predicted_arrival_s,
              at_stop=on.status == rt.VehiclePosition.STOPPED_AT, vehicle=(v, on))  # fmt: skip


def _same(kept: tuple[object, ...], key: tuple[object, ...]) -> bool:
    """Whether a kept activity was made of the same: the state and predictions the same
    objects, the place and the rest equal."""
    v, on, made, *rest = key
    kept_v, kept_on, kept_made, *kept_rest = kept
    return kept_v is v and kept_made is made and kept_on == on and kept_rest == rest


def vehicle_monitoring(
    network: Network,
    at: Moment,
    *,
    line_ref: str | None = None,
    vehicle_ref: str | None = None,
    producer: Producer = Producer(),
) -> bytes:
    """The SIRI-VM answer of the moment `at`, built afresh (`VehicleMonitoring.build`)."""
    return VehicleMonitoring(network).build(
        at, line_ref=line_ref, vehicle_ref=vehicle_ref, producer=producer
    )


# --- Stop Monitoring ---------------------------------------------------------------------------


def stop_monitoring(
    stop_id: str,
    network: Network,
    at: Moment,
    *,
    line_ref: str | None = None,
    maximum_stop_visits: int | None = None,
    preview_interval_s: float | None = None,
    producer: Producer = Producer(),
) -> bytes:
    """The SIRI-SM answer of the moment `at` for the stop `stop_id` (see the module): its
    predicted visits, soonest first; only of the line `line_ref` (a route_id) when given;
    arriving within `preview_interval_s` from now when given; at most `maximum_stop_visits`."""
    zone = ZoneInfo(network.timezone)
    root, delivery = _delivery(at.now_s, "StopMonitoringDelivery", producer, zone)
    _sub(delivery, "MonitoringRef", stop_id)
    name = _stop_name(network, stop_id)
    if name:
        _sub(delivery, "MonitoringName", name)
    told = 0
    for visit in at.visits(stop_id):
        p, v, on = visit.prediction, visit.vehicle, visit.on
        if maximum_stop_visits is not None and told >= maximum_stop_visits:
            break
        if preview_interval_s is not None and p.predicted_arrival_s > at.now_s + preview_interval_s:
            break  # soonest first: the rest are later still
        trip_idx = network.trip_index.get(p.trip_id)
        if trip_idx is None:
            continue
        route_id = network.routes[network.trips[trip_idx].route_idx].route_id
        if line_ref is not None and route_id != line_ref:
            continue
        told += 1
        current = p.trips_ahead == 0  # on the trip the bus is on, not its block's next one
        located = _located(network, visit)
        stop_visit = _sub(delivery, "MonitoredStopVisit")
        _sub(stop_visit, "RecordedAtTime", _time(p.made_at_s, zone))
        _sub(stop_visit, "ItemIdentifier",
             f"{v.vehicle_id}:{p.trip_id}:{p.service_date}:{p.stop_sequence}")  # fmt: skip
        _sub(stop_visit, "MonitoringRef", stop_id)
        journey = _sub(stop_visit, "MonitoredVehicleJourney")
        run = None if located is None else located.run
        _journey_head(journey, network, trip_idx, _service_day(p.service_date), run, zone)
        _progress(journey, v, at, delay=current and on.exact_times)
        _operational(journey, network, trip_idx, v)
        at_stop = (current and on.status == rt.VehiclePosition.STOPPED_AT
                   and on.next_index == p.stop_sequence)  # fmt: skip
        _call(journey, network, trip_idx, p.stop_sequence, zone, located=located,
              aimed_s=p.scheduled_arrival_s, expected_s=p.predicted_arrival_s, at_stop=at_stop,
              vehicle=(v, on) if current else None)  # fmt: skip
    return _serialise(root)


def _located(network: Network, visit: Visit) -> RunOnDay | None:
    """The run (departure) a visit is made on: the vehicle's own on its current trip; on its
    block's next trip the trip's only run (None for a frequency trip's: which departure is not
    known here, and the visit's times are the prediction's only)."""
    p = visit.prediction
    if p.trips_ahead == 0:
        return visit.on.located
    trip_idx = network.trip_index.get(p.trip_id)
    runs = network.runs_of_trip.get(trip_idx, []) if trip_idx is not None else []
    return RunOnDay(runs[0], _service_day(p.service_date)) if len(runs) == 1 else None


# --- errors ------------------------------------------------------------------------------------


def unknown_refs(
    kind: str,
    network: Network,
    now_s: float,
    refs: Sequence[str],
    text: str,
    *,
    producer: Producer = Producer(),
) -> bytes:
    """The answer to a request naming ids the feed does not have (a stop, a line): the
    delivery of `kind` ("VehicleMonitoringDelivery" or "StopMonitoringDelivery") with Status
    false and an InvalidDataReferencesError listing them, `text` saying what to send instead."""
    if kind not in ("VehicleMonitoringDelivery", "StopMonitoringDelivery"):
        raise ValueError(f"no SIRI delivery {kind!r}: VehicleMonitoringDelivery or "
                         "StopMonitoringDelivery")  # fmt: skip
    root, _ = _delivery(now_s, kind, producer, ZoneInfo(network.timezone), error=(refs, text))
    return _serialise(root)


# --- xsd:duration ------------------------------------------------------------------------------

_DURATION = re.compile(
    r"(?P<sign>-)?P(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration_s(text: str) -> float:
    """Seconds of an xsd:duration in days, hours, minutes and seconds ("PT30M", "P1DT2H",
    "-PT90S"). Years and months have no fixed length: refused, as anything else that is not
    such a duration, with a ValueError that says what to write."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or not any(found.group(g) for g in ("days", "hours", "minutes", "seconds")):
        raise ValueError(
            f"{text!r} is not an xsd:duration in days, hours, minutes and seconds; write e.g. "
            "PT30M (30 minutes), PT1H30M or P1D (years and months are not accepted)"
        )
    seconds = (
        int(found["days"] or 0) * 86400
        + int(found["hours"] or 0) * 3600
        + int(found["minutes"] or 0) * 60
        + float(found["seconds"] or 0)
    )
    return -seconds if found["sign"] else seconds


def duration(seconds: float) -> str:
    """An xsd:duration to the second: "PT2M5S", "-PT40S" (early), "PT0S"."""
    s = round(seconds)
    sign, s = ("-" if s < 0 else ""), abs(s)
    hours, minutes, secs = s // 3600, s % 3600 // 60, s % 60
    text = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    text += f"{secs}S" if secs or not text else ""
    return f"{sign}PT{text}"


_CLOCK_ELEMENTS = re.compile(rb"<(ResponseTimestamp|ValidUntil)>[^<]*</\1>")


def payload_digest(body: bytes) -> bytes:
    """A digest of what an answer says, whenever it was made: its bytes without the values of
    ResponseTimestamp and ValidUntil (when it was made and until when it holds, from the clock).
    Two answers with the same digest say the same."""
    return hashlib.blake2b(_CLOCK_ELEMENTS.sub(b"", body), digest_size=16).digest()


# --- building blocks ---------------------------------------------------------------------------


def _sub(parent: ET.Element, name: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, name)
    if text is not None:
        element.text = text
    return element


def _serialise(root: ET.Element) -> bytes:
    """The document, its elements in the SIRI namespace: the elements are built with plain
    names under a root that declares it as the default namespace (ElementTree's own
    `default_namespace` refuses the unqualified `version` attributes)."""
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _time(epoch_s: float, zone: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(round(epoch_s), zone).isoformat()


def _service_day(yyyymmdd: str) -> dt.date:
    return dt.datetime.strptime(yyyymmdd, "%Y%m%d").date()


def _delivery(
    now_s: float,
    kind: str,
    producer: Producer,
    zone: ZoneInfo,
    *,
    error: tuple[Sequence[str], str] | None = None,
) -> tuple[ET.Element, ET.Element]:
    """`Siri/ServiceDelivery/<kind>` with their headers; the delivery, for the payload. With
    `error` (the unknown refs, and what to send instead) Status is false and the delivery's
    ErrorCondition an InvalidDataReferencesError."""
    root = ET.Element("Siri", {"xmlns": SIRI_NS, "version": SIRI_VERSION})
    service = _sub(root, "ServiceDelivery")
    _sub(service, "ResponseTimestamp", _time(now_s, zone))
    _sub(service, "ProducerRef", producer.ref)
    if error is not None:
        _sub(service, "Status", "false")
    _sub(service, "MoreData", "false")
    delivery = ET.SubElement(service, kind, {"version": SIRI_VERSION})
    _sub(delivery, "ResponseTimestamp", _time(now_s, zone))
    _sub(delivery, "Status", "true" if error is None else "false")
    if error is not None:
        refs, text = error
        condition = _sub(delivery, "ErrorCondition")
        invalid = _sub(condition, "InvalidDataReferencesError")
        _sub(invalid, "ErrorText", text)
        for ref in refs:
            _sub(invalid, "InvalidRef", ref)
        _sub(condition, "Description", text)
        return root, delivery
    _sub(delivery, "ValidUntil", _time(now_s + producer.valid_for_s, zone))
    _sub(delivery, "ShortestPossibleCycle", duration(max(1.0, producer.shortest_cycle_s)))
    return root, delivery


def _route_id(network: Network, run: int) -> str:
    trip = network.trips[int(network.runs.trip_idx[run])]
    return network.routes[trip.route_idx].route_id


def _stop_name(network: Network, stop_id: str) -> str:
    found = network.stops.get(stop_id)
    return found[0] if found is not None else ""


def _mode(route_type: int) -> str | None:
    if route_type in _MODES:
        return _MODES[route_type]
    return _EXTENDED_MODES.get(route_type // 100) if route_type >= 100 else None


def _journey_head(
    journey: ET.Element,
    network: Network,
    trip_idx: int,
    service_date: dt.date,
    run: int | None,
    zone: ZoneInfo,
) -> None:
    """MonitoredJourneyIdentityGroup, JourneyPatternInfoGroup, VehicleJourneyInfoGroup: the
    journey's refs, line name and ends; whether it runs by headway, else when it leaves by the
    timetable (when its run, `run`, is known)."""
    trip = network.trips[trip_idx]
    route = network.routes[trip.route_idx]
    _sub(journey, "LineRef", route.route_id)
    if trip.direction_id >= 0:
        _sub(journey, "DirectionRef", str(trip.direction_id))
    framed = _sub(journey, "FramedVehicleJourneyRef")
    _sub(framed, "DataFrameRef", service_date.isoformat())
    _sub(framed, "DatedVehicleJourneyRef", trip.trip_id)
    mode = _mode(route.route_type)
    if mode is not None:
        _sub(journey, "VehicleMode", mode)
    name = route.short_name or route.long_name
    if name:
        _sub(journey, "PublishedLineName", name)
    stop_ids = network.patterns[trip.pattern_idx].stop_ids
    _sub(journey, "OriginRef", stop_ids[0])
    _sub(journey, "DestinationRef", stop_ids[-1])
    destination = headsign(network, trip_idx)
    if destination:
        _sub(journey, "DestinationName", destination)
    if run is None:
        return
    if not bool(network.runs.exact_times[run]):
        _sub(journey, "HeadwayService", "true")
    else:
        leaves_s = network.day_origin(service_date) + float(network.runs.start_s[run])
        _sub(journey, "OriginAimedDepartureTime", _time(leaves_s, zone))


def _progress(journey: ET.Element, v: LiveVehicle, at: Moment, *, delay: bool) -> None:
    """JourneyProgressGroup: live, where (the position the map shows), heading, delay
    (negative when early; only on a timetabled journey)."""
    _sub(journey, "Monitored", "true")
    if v.vehicle_id in at.detoured:
        _sub(journey, "PredictionInaccurate", "true")
    location = _sub(journey, "VehicleLocation")
    _sub(location, "Longitude", f"{v.lon:.6f}")
    _sub(location, "Latitude", f"{v.lat:.6f}")
    if v.bearing_deg is not None and math.isfinite(v.bearing_deg):
        _sub(journey, "Bearing", f"{v.bearing_deg % 360.0:.1f}")
    if delay and v.delay_s is not None and math.isfinite(v.delay_s):
        _sub(journey, "Delay", duration(v.delay_s))


def _operational(journey: ET.Element, network: Network, trip_idx: int, v: LiveVehicle) -> None:
    """OperationalInfoGroup: the block the journey is part of, and the vehicle."""
    block_id = network.trips[trip_idx].block_id
    if block_id:
        _sub(journey, "BlockRef", block_id)
    _sub(journey, "VehicleRef", v.vehicle_id)


def _call(
    journey: ET.Element,
    network: Network,
    trip_idx: int,
    k: int,
    zone: ZoneInfo,
    *,
    located: RunOnDay | None,
    aimed_s: float | None,
    expected_s: float | None,
    at_stop: bool,
    vehicle: tuple[LiveVehicle, OnTrip] | None,
) -> None:
    """The MonitoredCall at stop `k` (index in the trip's pattern) of a journey.

    Aimed times: the timetable's, when the run (`located`) is known and timetabled; else the
    arrival `aimed_s` when given. Expected: the predicted arrival `expected_s` (at a trip's
    first stop the prediction is the departure), the departure after the timetable's dwell.
    `vehicle`: the vehicle and where it is, when it is on this journey: how far it is from
    the stop."""
    trip = network.trips[trip_idx]
    pattern = network.patterns[trip.pattern_idx]
    if not 0 <= k < len(pattern.stop_ids):
        return
    call = _sub(journey, "MonitoredCall")
    stop_id = pattern.stop_ids[k]
    _sub(call, "StopPointRef", stop_id)
    if trip.stop_sequences[k] > 0:  # Order is a positive integer in the XSD
        _sub(call, "Order", str(trip.stop_sequences[k]))
    name = _stop_name(network, stop_id)
    if name:
        _sub(call, "StopPointName", name)
    _sub(call, "VehicleAtStop", "true" if at_stop else "false")
    dwell_s = 0.0
    aimed_departure_s = aimed_s
    headway_s = math.nan
    if located is not None:
        row = int(network.runs.row[located.run])
        if k:
            dwell_s = max(0.0, float(pattern.departure_s[row, k] - pattern.arrival_s[row, k]))
        if bool(network.runs.exact_times[located.run]):
            origin_s = network.day_origin(located.service_date)
            aimed_s = origin_s + float(
                (pattern.departure_s if k == 0 else pattern.arrival_s)[row, k]
            )
            aimed_departure_s = origin_s + float(pattern.departure_s[row, k])
        else:  # a headway-only departure: its times are nominal, its headway is what is aimed
            aimed_s = aimed_departure_s = None
            headway_s = float(network.runs.headway_s[located.run])
    if aimed_s is not None:
        _sub(call, "AimedArrivalTime", _time(aimed_s, zone))
    if expected_s is not None:
        _sub(call, "ExpectedArrivalTime", _time(expected_s, zone))
    if aimed_departure_s is not None:
        _sub(call, "AimedDepartureTime", _time(aimed_departure_s, zone))
    if expected_s is not None:
        _sub(call, "ExpectedDepartureTime", _time(expected_s + dwell_s, zone))
    if math.isfinite(headway_s) and headway_s > 0:
        _sub(call, "AimedHeadwayInterval", duration(headway_s))
    along_m = None if vehicle is None else vehicle[0].shape_dist_m
    if vehicle is not None and along_m is not None:
        to_go_m = float(pattern.stop_dist_m[k]) - along_m
        on = vehicle[1]
        _sub(call, "DistanceFromStop", str(max(0, round(to_go_m))))
        _sub(call, "NumberOfStopsAway", str(max(0, k - on.next_index)))
