"""The GTFS-realtime feeds out (tracker.export.gtfs_rt) when the operations go wrong, on WMATA's
real feed: a morning with the simulator's operations scenarios (`simulator.scenarios`: a
cancelled trip, two buses on detours) matched live by the real engine, where the operator
cancels each ghost trip the monitor lists, and the trip of a bus that runs. The three feeds, as
the service builds them together (`FeedBuilder.build`), pass the independent `gtfs-rt-validator`
with no error: CANCELED TripUpdates with no stop_time_update and their NO_SERVICE alerts; the
stops a bus on a detour passed SKIPPED, then NO_DATA; the DETOUR alerts naming them. They also
agree with the static GTFS (`tests.realfeed.test_gtfs_rt_real.check_against_static`).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from google.transit import gtfs_realtime_pb2 as rt
from gtfs_rt_validator.api import Mode, prepare_feed

from bench.feed_replay import validate_feeds
from simulator.scenarios import ScenarioConfig, simulate_day
from tests.realfeed.test_gtfs_rt_real import WMATA, Moment, check_against_static
from tracker.core.cancellations import Cause, cancellation
from tracker.core.engine import Engine, EngineConfig
from tracker.core.network import Network
from tracker.core.operations import Detour, GhostTrip
from tracker.export import gtfs_rt
from tracker.gtfs.load import load_network
from tracker.live.insight import Insight
from tracker.live.vehicle import LiveVehicle

STALE_AFTER_S = 90.0
DAY = dt.date(2026, 2, 16)
ROUTES = ["D40", "C53", "D96"]  # whose trips (about an hour long) start and end in the morning
BY_ROLE = {"vp": "vehicle-positions", "tu": "trip-updates", "sa": "alerts"}


def operations_morning(
    feed: Path,
    date: dt.date,
    start_s: float,
    minutes: float,
    route_ids: list[str],
    every_s: float = 1200.0,
) -> Iterator[Moment]:
    """The feeds of the morning (see the module): at the first minute each detour has skipped
    a stop, and every `every_s` simulated seconds."""
    network = load_network(feed)
    engine = Engine(network, EngineConfig())
    insight = Insight()
    config = ScenarioConfig(lead_in_s=120.0, detour_at_share=0.15,
                            detour_length_m=(1500.0, 2500.0))  # fmt: skip
    day = simulate_day(network, np.random.default_rng(11), date,
                       scenarios=["cancelled-trip", "detour", "detour"], scenario_config=config,
                       start_s=start_s, end_s=start_s + 60 * minutes,
                       route_ids=route_ids)  # fmt: skip
    live: dict[str, LiveVehicle] = {}
    pings = sorted((s.ping for s in day.pings), key=lambda p: p.timestamp)
    next_look = next_moment = pings[0].timestamp + 60
    told_detours: set[str] = set()
    for _, batch in itertools.groupby(pings, key=lambda p: int(p.timestamp // 5)):
        group = list(batch)
        now_s = group[-1].timestamp + 1
        step = engine.step(group, now_s)
        insight.update(step)
        for ping, match in zip(group, step.matches, strict=True):
            if match.state.value != "rejected":
                live[ping.vehicle_id] = LiveVehicle.from_match(ping, match)
        for alert in insight.alerts():  # the operator cancels the ghost trips
            if isinstance(alert, GhostTrip):
                insight.cancellations.put(cancellation(
                    network, alert.trip_id, alert.service_date, cancelled_at_s=now_s,
                    cause=Cause.TECHNICAL_PROBLEM, reason="No bus available"))  # fmt: skip
        assert not any(isinstance(a, GhostTrip) for a in insight.alerts())  # listed no more
        shown = gtfs_rt.shown_cancellations(insight.cancellations, now_s)
        if not any(c.reason == "runs" for c in shown):  # and the trip of a bus on the road
            _cancel_a_running_trip(network, insight, live.values(), now_s)
        if now_s < next_look:
            continue
        next_look += 60
        skipping = {a.alert_id for a in insight.alerts() if isinstance(a, Detour) and a.active
                    and gtfs_rt.skipped_stops(network, a)}  # fmt: skip
        if skipping - told_detours or now_s >= next_moment:
            told_detours |= skipping
            next_moment = now_s + every_s
            predictions = {v: insight.of_vehicle(v, now_s) for v in live}
            built = gtfs_rt.FeedBuilder(network).build(
                live.values(), predictions, insight.alerts(), now_s,
                stale_after_s=STALE_AFTER_S, cancelled=insight.cancellations,
            )  # fmt: skip
            yield Moment(now_s, {role: gtfs_rt.message(*built[name])
                                 for role, name in BY_ROLE.items()})  # fmt: skip


def _cancel_a_running_trip(
    network: Network, insight: Insight, vehicles: Iterable[LiveVehicle], now_s: float
) -> None:
    """Cancel the trip of the first bus (by id) in service on a trip scheduled to run now."""
    for bus in sorted(vehicles, key=lambda v: v.vehicle_id):
        on = gtfs_rt.locate(network, bus) if bus.state == "in_service" else None
        if on is None or bus.trip_id is None or now_s - bus.observed_at_s > STALE_AFTER_S:
            continue
        found = cancellation(network, bus.trip_id, f"{on.located.service_date:%Y%m%d}",
                             cancelled_at_s=now_s, reason="runs")  # fmt: skip
        if found.scheduled_departure_s <= now_s <= found.scheduled_arrival_s:
            insight.cancellations.put(found)
            return


def test_cancelled_trips_and_skipped_stops_pass_the_validator(tmp_path: Path) -> None:
    if not WMATA.exists():
        pytest.fail(f"{WMATA} is missing: ../shared/data holds the project's real feeds")
    moments = list(operations_morning(WMATA, DAY, 7 * 3600, 90, ROUTES))
    prepared = prepare_feed(WMATA, mode=Mode.MODERN)  # read once for every moment
    stu = rt.TripUpdate.StopTimeUpdate
    skipped = 0
    ghosts_cancelled: set[str] = set()
    for moment in moments:
        bodies = {role: message.SerializeToString() for role, message in moment.feeds.items()}
        result = validate_feeds(bodies, prepared, moment.now_s, tmp_path)
        assert not result.has_errors(), result.error_ids()
        check_against_static(moment, WMATA)
        canceled = set()
        for entity in moment.feeds["tu"].entity:
            update = entity.trip_update
            if update.trip.schedule_relationship == rt.TripDescriptor.CANCELED:
                canceled.add(update.trip.trip_id)
                assert len(update.stop_time_update) == 0
            relationships = [s.schedule_relationship for s in update.stop_time_update]
            if stu.SKIPPED in relationships:
                skipped += 1
                # the skipped stops, then the next one: not known
                assert relationships == [stu.SKIPPED] * (len(relationships) - 1) + [stu.NO_DATA]
        alerts = [e.alert for e in moment.feeds["sa"].entity]
        no_service = {a.informed_entity[0].trip.trip_id for a in alerts
                      if a.effect == rt.Alert.NO_SERVICE}  # fmt: skip
        assert canceled == no_service
        assert len(canceled) >= 1  # the running bus's trip at least
        ghosts_cancelled |= {a.informed_entity[0].trip.trip_id for a in alerts
                             if a.cause == rt.Alert.TECHNICAL_PROBLEM}  # fmt: skip
        # the buses on cancelled trips are told without them
        assert not {e.vehicle.trip.trip_id for e in moment.feeds["vp"].entity} & canceled
    assert len(moments) >= 4
    assert skipped >= 2  # two detours
    assert ghosts_cancelled  # the scenario's cancelled trip, a ghost until the operator said so
