"""SIRI-VM and SIRI-SM out (tracker.export.siri) on the two-directions feed, matched live by
the service's engine: the element order of every answer against the module's table of the XSD's
sequences, the namespace and versions, and the values: refs that exist in the static GTFS (read
from the zip by the test itself), the delay's sign, the times and their zone, the stop visits'
order and the request's limits; a cancelled trip and stale predictions are not told.

Three buses on route "B" of the Wednesday 2026-03-04 in Casablanca (UTC+0 that day):

    bus1  B_N_0600 (06:00-06:09 northbound, block blk1, next B_S_0612) on time
    bus2  B_S_0600 (06:00-06:09 southbound, block blk2, next B_N_0612) two minutes late
    bus3  B_N_0612 (06:12-06:21 northbound) a minute and a half early
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import feeds
from tests.unit.test_gtfs_rt import replayed
from tests.unit.test_matcher import WEEKDAY, drive
from tracker.core.cancellations import cancellation
from tracker.core.engine import Engine, EngineConfig
from tracker.core.network import Network
from tracker.core.operations import Detour, Severity
from tracker.core.predict import Prediction
from tracker.export import siri
from tracker.gtfs.load import build_network
from tracker.live.vehicle import LiveVehicle

STALE_AFTER_S = 90.0
NS = {"s": siri.SIRI_NS}
DAY = WEEKDAY.strftime("%Y%m%d")
LATE_S = 120.0
EARLY_S = -90.0


@dataclasses.dataclass(frozen=True)
class LiveState:
    now_s: float
    live: dict[str, LiveVehicle]
    predictions: dict[str, list[Prediction]]


@dataclasses.dataclass(frozen=True)
class Day:
    network: Network
    feed: Path
    states: list[LiveState]

    def at(self, hhmm: str) -> LiveState:
        """The last state at or before `hhmm` (local time = UTC on this day)."""
        hours, minutes = map(int, hhmm.split(":"))
        until = dt.datetime.combine(WEEKDAY, dt.time(hours, minutes), dt.UTC).timestamp()
        return [s for s in self.states if s.now_s <= until][-1]


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    feed = feeds.two_directions_feed(tmp_path_factory.mktemp("siri"))
    network = build_network(feed)
    pings = (
        drive(network, "B_N_0600", WEEKDAY, vehicle="bus1", every_s=20.0, with_bearing=True)
        + drive(network, "B_S_0600", WEEKDAY, vehicle="bus2", every_s=20.0, delay_s=LATE_S)
        + drive(network, "B_N_0612", WEEKDAY, vehicle="bus3", every_s=20.0, delay_s=EARLY_S)
    )
    states = [LiveState(*state) for state in replayed(network, pings)]
    return Day(network, feed, states)


def moment_of(day: Day, state: LiveState, **options: object) -> siri.Moment:
    return siri.moment(day.network, state.live.values(), state.predictions, state.now_s,
                       stale_after_s=STALE_AFTER_S, **options)  # type: ignore[arg-type]  # fmt: skip


def parse(body: bytes) -> ET.Element:
    assert body.startswith(b"<?xml")
    return ET.fromstring(body)


def local(element: ET.Element) -> str:
    namespace, _, name = element.tag[1:].partition("}")
    assert namespace == siri.SIRI_NS, f"{element.tag} is not in the SIRI namespace"
    return name


def find(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path, NS)
    assert found is not None, f"no {path} in {local(element)}"
    return found


def text(element: ET.Element, path: str) -> str:
    return find(element, path).text or ""


# --- the element order -------------------------------------------------------------------------


def order_problems(root: ET.Element) -> list[str]:
    """Where the document departs from `siri.ELEMENT_ORDER` and `siri.REQUIRED`: an element
    with children not in the table, a child not listed for its parent, children out of the
    XSD's order, a required child missing; every element in the SIRI namespace."""
    problems = []
    for element in root.iter():
        name = local(element)
        children = [local(c) for c in element]
        if not children:
            continue
        order = siri.ELEMENT_ORDER.get(name)
        if order is None:
            problems.append(f"{name} has children but no order in the table")
            continue
        unknown = [c for c in children if c not in order]
        if unknown:
            problems.append(f"{name}: {unknown} not in the table")
            continue
        positions = [order.index(c) for c in children]
        if positions != sorted(positions):
            problems.append(f"{name}: children {children} out of the order {order}")
        missing = [r for r in siri.REQUIRED.get(name, ()) if r not in children]
        if missing:
            problems.append(f"{name}: required {missing} missing")
    return problems


def every_answer(day: Day) -> Iterator[bytes]:
    """VM and SM answers through the morning, one state in five, at every stop with visits."""
    for state in day.states[::5]:
        at = moment_of(day, state)
        yield siri.vehicle_monitoring(day.network, at)
        for stop_id in at.stops_visited():
            yield siri.stop_monitoring(stop_id, day.network, at)
    yield siri.unknown_refs("StopMonitoringDelivery", day.network, 0.0, ["X"], "no stop X")


def test_every_answer_follows_the_xsd_order_in_the_siri_namespace(day: Day) -> None:
    answers = list(every_answer(day))
    assert len(answers) > 50
    seen: set[str] = set()
    for body in answers:
        root = parse(body)
        assert local(root) == "Siri"
        assert root.get("version") == "2.0"
        (service,) = list(root)
        delivery = service[-1]
        assert local(delivery) in ("VehicleMonitoringDelivery", "StopMonitoringDelivery")
        assert delivery.get("version") == "2.0"
        assert order_problems(root) == []
        seen |= {local(e) for e in root.iter()}
    # every element of the table was emitted at least once (the table says what is emitted)
    # (but those of headway-only trips and detours, in the tests below)
    listed = {c for children in siri.ELEMENT_ORDER.values() for c in children} | {"Siri"}
    assert listed - seen == {"HeadwayService", "AimedHeadwayInterval", "PredictionInaccurate"}


def test_the_order_check_finds_what_is_out_of_order(day: Day) -> None:
    root = parse(siri.vehicle_monitoring(day.network, moment_of(day, day.at("06:05"))))
    journey = find(root, ".//s:MonitoredVehicleJourney")
    line = find(journey, "s:LineRef")
    journey.remove(line)
    journey.append(line)  # LineRef last: out of the XSD's order
    activity = find(root, ".//s:VehicleActivity")
    activity.remove(find(activity, "s:ValidUntilTime"))  # required
    problems = order_problems(root)
    assert any("out of the order" in p and "MonitoredVehicleJourney" in p for p in problems)
    assert any("required ['ValidUntilTime'] missing" in p for p in problems)


# --- the values --------------------------------------------------------------------------------


def static_gtfs(feed: Path) -> dict[str, list[dict[str, str]]]:
    with zipfile.ZipFile(feed) as z:
        return {name: list(csv.DictReader(io.TextIOWrapper(z.open(f"{name}.txt"), "utf-8-sig")))
                for name in ("routes", "trips", "stops", "stop_times")}  # fmt: skip


def check_journey(journey: ET.Element, gtfs: dict[str, list[dict[str, str]]]) -> None:
    """The journey's refs are the static GTFS's and agree with each other."""
    trips = {t["trip_id"]: t for t in gtfs["trips"]}
    routes = {r["route_id"]: r for r in gtfs["routes"]}
    stops = {s["stop_id"]: s for s in gtfs["stops"]}
    trip = trips[text(journey, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef")]
    assert text(journey, "s:LineRef") == trip["route_id"]
    assert text(journey, "s:DirectionRef") == trip["direction_id"]
    assert text(journey, "s:BlockRef") == trip["block_id"]
    assert text(journey, "s:PublishedLineName") == routes[trip["route_id"]]["route_short_name"]
    assert dt.date.fromisoformat(text(journey, "s:FramedVehicleJourneyRef/s:DataFrameRef"))
    calls = sorted((int(st["stop_sequence"]), st["stop_id"]) for st in gtfs["stop_times"]
                   if st["trip_id"] == trip["trip_id"])  # fmt: skip
    assert text(journey, "s:OriginRef") == calls[0][1]
    assert text(journey, "s:DestinationRef") == calls[-1][1]
    call = find(journey, "s:MonitoredCall")
    stop_id = text(call, "s:StopPointRef")
    assert (int(text(call, "s:Order")), stop_id) in calls
    assert text(call, "s:StopPointName") == stops[stop_id]["stop_name"]


def test_refs_exist_in_the_static_gtfs(day: Day) -> None:
    gtfs = static_gtfs(day.feed)
    journeys = 0
    for body in every_answer(day):
        for journey in parse(body).iterfind(".//s:MonitoredVehicleJourney", NS):
            if journey.find("s:LineRef", NS) is not None:
                check_journey(journey, gtfs)
                journeys += 1
    assert journeys > 100


def seconds(iso: str) -> float:
    when = dt.datetime.fromisoformat(iso)
    assert when.utcoffset() is not None, f"{iso} has no zone"
    return when.timestamp()


def activities(body: bytes) -> dict[str, ET.Element]:
    root = parse(body)
    return {text(a, "s:MonitoredVehicleJourney/s:VehicleRef"): a
            for a in root.iterfind(".//s:VehicleActivity", NS)}  # fmt: skip


def test_vehicle_monitoring_says_where_each_bus_is_and_how_late(day: Day) -> None:
    state = day.at("06:06")
    body = siri.vehicle_monitoring(day.network, moment_of(day, state))
    root = parse(body)
    now = dt.datetime.fromtimestamp(state.now_s, dt.UTC)
    response = text(root, "s:ServiceDelivery/s:ResponseTimestamp")
    assert response == now.replace(microsecond=0).isoformat()  # Casablanca is UTC+0 that day
    delivery = find(root, "s:ServiceDelivery/s:VehicleMonitoringDelivery")
    assert seconds(text(delivery, "s:ValidUntil")) > state.now_s
    by_id = activities(body)
    assert set(by_id) == {"bus1", "bus2"}  # bus3 not yet out
    for vehicle_id, activity in by_id.items():
        v = state.live[vehicle_id]
        assert seconds(text(activity, "s:RecordedAtTime")) == round(v.observed_at_s)
        assert seconds(text(activity, "s:ValidUntilTime")) == round(v.observed_at_s + STALE_AFTER_S)
        journey = find(activity, "s:MonitoredVehicleJourney")
        assert float(text(journey, "s:VehicleLocation/s:Latitude")) == pytest.approx(v.lat)
        assert float(text(journey, "s:VehicleLocation/s:Longitude")) == pytest.approx(v.lon)
        assert text(journey, "s:Monitored") == "true"
        assert text(journey, "s:FramedVehicleJourneyRef/s:DataFrameRef") == "2026-03-04"
        call = find(journey, "s:MonitoredCall")
        # the next stop: ahead of the bus, expected after it is aimed by the bus's delay
        aimed = seconds(text(call, "s:AimedArrivalTime"))
        expected = seconds(text(call, "s:ExpectedArrivalTime"))
        assert expected >= state.now_s - 1
        assert expected - aimed == pytest.approx(v.delay_s, abs=45)
    bus1 = find(by_id["bus1"], "s:MonitoredVehicleJourney")
    assert text(bus1, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "B_N_0600"
    assert text(bus1, "s:DestinationName") == "Stop BN5"
    assert 0.0 <= float(text(bus1, "s:Bearing")) < 360.0
    bus2 = find(by_id["bus2"], "s:MonitoredVehicleJourney")
    late = text(bus2, "s:Delay")
    assert late.startswith("PT")
    assert siri.parse_duration_s(late) == pytest.approx(LATE_S, abs=30)
    assert siri.parse_duration_s(late) == round(state.live["bus2"].delay_s or 0.0)


def test_an_early_bus_has_a_negative_delay(day: Day) -> None:
    state = day.at("06:16")
    journey = find(activities(siri.vehicle_monitoring(day.network, moment_of(day, state)))["bus3"],
                   "s:MonitoredVehicleJourney")  # fmt: skip
    assert text(journey, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "B_N_0612"
    early = text(journey, "s:Delay")
    assert early.startswith("-PT")
    assert siri.parse_duration_s(early) == pytest.approx(EARLY_S, abs=30)


def test_kept_activities_give_the_bytes_of_a_build_from_nothing(day: Day) -> None:
    builder = siri.VehicleMonitoring(day.network)
    locator = siri.Locator(day.network)
    told: set[bytes] = set()
    for state in day.states:
        at = moment_of(day, state, locate_one=locator)
        kept = builder.build(at)
        assert kept == siri.vehicle_monitoring(day.network, moment_of(day, state))
        assert builder.build(at, vehicle_ref="bus2") == siri.vehicle_monitoring(
            day.network, at, vehicle_ref="bus2")  # fmt: skip
        told.add(siri.payload_digest(kept))
    assert len(told) > 50  # the buses moved, and the answers said so


def test_vehicle_monitoring_filters_by_line_and_vehicle(day: Day) -> None:
    at = moment_of(day, day.at("06:06"))
    assert set(activities(siri.vehicle_monitoring(day.network, at, line_ref="B"))) == {
        "bus1", "bus2"}  # fmt: skip
    assert activities(siri.vehicle_monitoring(day.network, at, line_ref="Z")) == {}
    assert set(activities(siri.vehicle_monitoring(day.network, at, vehicle_ref="bus2"))) == {
        "bus2"}  # fmt: skip
    assert activities(siri.vehicle_monitoring(day.network, at, vehicle_ref="bus9")) == {}
    # gone stale: told no more
    later = siri.moment(day.network, [v for v, _ in at.placed], {},
                        at.now_s + STALE_AFTER_S + 60, stale_after_s=STALE_AFTER_S)  # fmt: skip
    assert activities(siri.vehicle_monitoring(day.network, later)) == {}


def visits(body: bytes) -> list[ET.Element]:
    return list(parse(body).iterfind(".//s:MonitoredStopVisit", NS))


def test_stop_monitoring_lists_the_predicted_arrivals_soonest_first(day: Day) -> None:
    state = day.at("06:06")
    at = moment_of(day, state)
    body = siri.stop_monitoring("BN5", day.network, at)
    delivery = find(parse(body), "s:ServiceDelivery/s:StopMonitoringDelivery")
    assert text(delivery, "s:MonitoringRef") == "BN5"
    assert text(delivery, "s:MonitoringName") == "Stop BN5"
    found = visits(body)
    # bus1 on B_N_0600, bus2 on its block's next trip B_N_0612 (after B_S_0600), bus1 again on
    # the trip after its next (B_N_0624, after B_S_0612)
    journeys = [journey_of(s) for s in found]
    assert journeys == [("bus1", "B_N_0600"), ("bus2", "B_N_0612"), ("bus1", "B_N_0624")]
    expected = [seconds(text(s, "s:MonitoredVehicleJourney/s:MonitoredCall/s:ExpectedArrivalTime"))
                for s in found]  # fmt: skip
    assert expected == sorted(expected)
    made = {(v.vehicle_id, p.trip_id): p for v, on in at.placed if on is not None
            for p in at.told(v.vehicle_id, on) if p.stop_id == "BN5"}  # fmt: skip
    for stop_visit, e in zip(found, expected, strict=True):
        p = made[journey_of(stop_visit)]
        assert e == round(p.predicted_arrival_s)
        assert seconds(text(stop_visit, "s:RecordedAtTime")) == round(p.made_at_s)
        assert text(stop_visit, "s:MonitoringRef") == "BN5"
        call = find(stop_visit, "s:MonitoredVehicleJourney/s:MonitoredCall")
        assert text(call, "s:StopPointRef") == "BN5"
        assert p.scheduled_arrival_s is not None
        assert seconds(text(call, "s:AimedArrivalTime")) == round(p.scheduled_arrival_s)
        assert seconds(text(call, "s:ExpectedDepartureTime")) >= e
    # the delay is the bus's on the trip it is on; on its block's next trip there is none yet
    assert find(found[0], "s:MonitoredVehicleJourney").find("s:Delay", NS) is not None
    assert find(found[1], "s:MonitoredVehicleJourney").find("s:Delay", NS) is None


def journey_of(stop_visit: ET.Element) -> tuple[str, str]:
    """(VehicleRef, DatedVehicleJourneyRef) of a MonitoredStopVisit."""
    journey = find(stop_visit, "s:MonitoredVehicleJourney")
    return (text(journey, "s:VehicleRef"),
            text(journey, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef"))  # fmt: skip


def test_stop_monitoring_honours_the_line_the_count_and_the_preview(day: Day) -> None:
    at = moment_of(day, day.at("06:06"))
    assert len(visits(siri.stop_monitoring("BN5", day.network, at))) == 3
    one = visits(siri.stop_monitoring("BN5", day.network, at, maximum_stop_visits=1))
    assert [text(s, "s:MonitoredVehicleJourney/s:VehicleRef") for s in one] == ["bus1"]
    assert visits(siri.stop_monitoring("BN5", day.network, at, line_ref="Z")) == []
    assert len(visits(siri.stop_monitoring("BN5", day.network, at, line_ref="B"))) == 3
    soon_s = 5 * 60.0  # bus1 is there by 06:09, bus2's next trip not before 06:21
    soon = visits(siri.stop_monitoring("BN5", day.network, at, preview_interval_s=soon_s))
    assert [text(s, "s:MonitoredVehicleJourney/s:VehicleRef") for s in soon] == ["bus1"]
    for s in soon:
        expected = text(s, "s:MonitoredVehicleJourney/s:MonitoredCall/s:ExpectedArrivalTime")
        assert seconds(expected) <= at.now_s + soon_s


def test_a_stop_behind_the_bus_does_not_list_it(day: Day) -> None:
    state = day.at("06:06")
    at = moment_of(day, state)
    bus1 = next(on for v, on in at.placed if v.vehicle_id == "bus1")
    assert bus1 is not None
    assert bus1.next_index >= 2  # past BN1 and BN2
    # Predictions still held for the stops it passed (made before it got there) are not told.
    made = state.predictions["bus1"]
    first = next(p for p in made if p.trips_ahead == 0)
    behind = [dataclasses.replace(first, stop_id=f"BN{k + 1}", stop_sequence=k) for k in (0, 1)]
    at = siri.moment(day.network, state.live.values(), state.predictions | {"bus1": behind + made},
                     state.now_s, stale_after_s=STALE_AFTER_S)  # fmt: skip
    for stop_id in ("BN1", "BN2"):
        listed = [journey_of(s) for s in visits(siri.stop_monitoring(stop_id, day.network, at))]
        assert ("bus1", "B_N_0600") not in listed
        assert ("bus1", "B_N_0624") in listed  # its block comes back this way


def test_a_cancelled_trip_and_stale_predictions_are_not_told(day: Day) -> None:
    state = day.at("06:06")
    gone = cancellation(day.network, "B_N_0600", DAY, cancelled_at_s=state.now_s - 30)
    at = moment_of(day, state, cancelled=[gone])
    bus1 = find(activities(siri.vehicle_monitoring(day.network, at))["bus1"],
                "s:MonitoredVehicleJourney")  # fmt: skip
    assert bus1.find("s:LineRef", NS) is None  # told without its trip
    assert bus1.find("s:MonitoredCall", NS) is None
    assert text(bus1, "s:VehicleRef") == "bus1"
    listed = [journey_of(s) for s in visits(siri.stop_monitoring("BN5", day.network, at))]
    assert listed == [("bus2", "B_N_0612")]  # bus1 on a cancelled trip: no predictions told
    # Predictions made while bus2 was taken for another trip are stale: none is told.
    stale = {k: [dataclasses.replace(p, trip_id="B_S_0624") if p.trips_ahead == 0 else p
                 for p in made] for k, made in state.predictions.items()}  # fmt: skip
    at = siri.moment(day.network, state.live.values(), stale, state.now_s,
                     stale_after_s=STALE_AFTER_S)  # fmt: skip
    bus2 = next(on for v, on in at.placed if v.vehicle_id == "bus2")
    assert bus2 is not None  # still on its trip, its predictions not told
    assert at.told("bus2", bus2) == ()
    assert all(visit.vehicle_id != "bus2" for stop_id in at.stops_visited()
               for visit in at.visits(stop_id))  # fmt: skip


def test_a_bus_on_a_detour_has_its_predictions_marked_inaccurate(day: Day) -> None:
    state = day.at("06:06")
    detour = Detour(
        alert_id="detour:bus2", severity=Severity.WARNING, vehicle_id="bus2", route_id="B",
        direction_id=1, trip_id="B_S_0600", service_date=DAY, shape_id="B_south",
        started_s=state.now_s - 60, left_lat=0.0, left_lon=0.0, left_shape_dist_m=500.0,
        last_off_s=state.now_s, max_offset_m=300.0, typical_offset_m=250.0, off_fixes=3,
        path=(),
    )  # fmt: skip
    at = moment_of(day, state, live_alerts=[detour])
    by_id = activities(siri.vehicle_monitoring(day.network, at))
    assert text(by_id["bus2"], ".//s:PredictionInaccurate") == "true"
    assert by_id["bus1"].find(".//s:PredictionInaccurate", NS) is None


def test_a_headway_trip_is_told_by_its_headway(tmp_path: Path) -> None:
    network = build_network(feeds.frequency_feed(tmp_path))
    engine = Engine(network, EngineConfig(predict_every_s=60.0))
    live: dict[str, LiveVehicle] = {}
    predictions: dict[str, list[Prediction]] = {}
    now_s = 0.0
    for ping in drive(network, "F_headway", WEEKDAY, every_s=20.0)[:20]:
        now_s = ping.timestamp + 1.0
        step = engine.step([ping], now_s)
        (match,) = step.matches
        live[ping.vehicle_id] = LiveVehicle.from_match(ping, match)
        predictions |= step.predictions
    at = siri.moment(network, live.values(), predictions, now_s, stale_after_s=STALE_AFTER_S)
    root = parse(siri.vehicle_monitoring(network, at))
    assert order_problems(root) == []
    journey = find(root, ".//s:MonitoredVehicleJourney")
    assert text(journey, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "F_headway"
    assert text(journey, "s:HeadwayService") == "true"
    assert journey.find("s:Delay", NS) is None  # no timetable to be late against
    call = find(journey, "s:MonitoredCall")
    assert call.find("s:AimedArrivalTime", NS) is None
    assert text(call, "s:AimedHeadwayInterval") == "PT15M"
    stop_id = text(call, "s:StopPointRef")
    sm = parse(siri.stop_monitoring(stop_id, network, at))
    assert order_problems(sm) == []
    assert text(sm, ".//s:MonitoredStopVisit//s:HeadwayService") == "true"


def test_an_unknown_stop_is_an_invalid_data_reference(day: Day) -> None:
    root = parse(siri.unknown_refs("StopMonitoringDelivery", day.network, 0.0, ["NOPE"],
                                   "no stop (stop_id) 'NOPE' in the feed"))  # fmt: skip
    assert order_problems(root) == []
    assert text(root, "s:ServiceDelivery/s:Status") == "false"
    delivery = find(root, "s:ServiceDelivery/s:StopMonitoringDelivery")
    assert text(delivery, "s:Status") == "false"
    error = find(delivery, "s:ErrorCondition/s:InvalidDataReferencesError")
    assert text(error, "s:InvalidRef") == "NOPE"
    assert "NOPE" in text(error, "s:ErrorText")
    with pytest.raises(ValueError, match="no SIRI delivery"):
        siri.unknown_refs("EstimatedTimetableDelivery", day.network, 0.0, [], "")


# --- durations and digests ---------------------------------------------------------------------


@pytest.mark.parametrize(("seconds_", "text_"), [
    (0, "PT0S"), (59.6, "PT1M"), (-90, "-PT1M30S"), (3725, "PT1H2M5S"), (7200, "PT2H"),
])  # fmt: skip
def test_durations_are_written_as_xsd_durations(seconds_: float, text_: str) -> None:
    assert siri.duration(seconds_) == text_
    assert siri.parse_duration_s(text_) == round(seconds_)


def test_reading_a_duration() -> None:
    assert siri.parse_duration_s("PT30M") == 1800
    assert siri.parse_duration_s("P1DT2H") == 26 * 3600
    assert siri.parse_duration_s("PT1.5S") == 1.5
    for bad in ("30", "PT", "P", "P1M", "P1Y", "PT30X", "T30M", "P1DT"):
        with pytest.raises(ValueError, match=r"write e\.g\. PT30M"):
            siri.parse_duration_s(bad)


def test_the_digest_is_what_an_answer_says_whenever_it_was_made(day: Day) -> None:
    state = day.at("06:06")
    at = moment_of(day, state)
    later = siri.moment(day.network, state.live.values(), state.predictions, state.now_s + 5,
                        stale_after_s=STALE_AFTER_S)  # fmt: skip
    body = siri.vehicle_monitoring(day.network, at)
    again = siri.vehicle_monitoring(day.network, later)
    assert body != again  # other timestamps
    assert siri.payload_digest(body) == siri.payload_digest(again)
    other = siri.vehicle_monitoring(day.network, at, vehicle_ref="bus1")
    assert siri.payload_digest(other) != siri.payload_digest(body)
