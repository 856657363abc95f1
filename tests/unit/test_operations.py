"""Operations signals (`tracker.core.operations`): headways, bunching and gapping, ghost buses,
silent buses, detours.

Two kinds of tests: hand-made answers on tiny feeds (one behaviour each, exact values), and
simulated days with each scenario (`simulator.scenarios`) fed through the real matcher, checked
against the scenario's ground truth. Counts, not timings.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from simulator.day import IN_SERVICE, SimPing
from simulator.scenarios import (
    BUNCHING,
    CANCELLED_TRIP,
    DETOUR,
    GAPPING,
    KINDS,
    LATE_CATCH_UP,
    STOP_REPORTING,
    ScenarioConfig,
    ScenarioTruth,
    simulate_day,
)
from tests import feeds
from tracker.core.matcher import Matcher
from tracker.core.model import Match, Ping, Reason, State
from tracker.core.network import Network, haversine_m
from tracker.core.operations import (
    Alert,
    AlertKind,
    Assessment,
    Change,
    Detour,
    GhostScope,
    GhostTrip,
    OperationsConfig,
    OperationsMonitor,
    PairAlert,
    ShortService,
    SilentVehicle,
)
from tracker.gtfs.load import build_network

WEDNESDAY = dt.date(2026, 3, 4)
DATE = "20260304"
LENGTH_M = 6000
TRIP_S = 1320  # 22 min for 6 km: 4.5 m/s on average


# --- a corridor with several buses on the road at once ---------------------------------------


def corridor_feed(folder: Path, *, frequency: bool = False) -> Path:
    """``corridor.zip`` (or ``corridor_frequency.zip``): two routes, direction_id 0.

    Route "C": shape "C_line", 6 km straight east from CASABLANCA; stops C0..C15 every 400 m
    (C15 at 6000 m); trips every 6 min from 07:00 to 09:00 ("C_0700" ... "C_0900", 21 trips),
    22 min each, times in proportion to distance (arrival = departure at every stop), service
    "WK". With `frequency`: one trip "C_0700" with frequencies.txt 07:00–09:00, headway 360 s,
    exact_times 0 (the same departures, headway-only).
    Route "U": shape "U_line", 3 km east starting 2 km north of the origin; stops U0..U6 every
    500 m; trips every 10 min from 07:00 to 09:00, 11 min each. No test drives a bus on it: it
    stands for the routes of a feed that a city does not track.
    """
    tables = feeds.weekday_tables()
    for route_id, north_m, length_m, stop_every_m, every_min, trip_s in (
        ("C", 0.0, LENGTH_M, 400, 6, TRIP_S),
        ("U", 2000.0, 3000, 500, 10, 660),
    ):
        headway = frequency and route_id == "C"
        feeds.add_straight_route(
            tables, route_id, north_m=north_m, length_m=length_m, stop_every_m=stop_every_m,
            starts=range(7 * 3600, 9 * 3600 + 1, every_min * 60), trip_s=trip_s,
            long_name=f"Route {route_id}", headway_until_s=9 * 3600 if headway else None,
            headway_s=360 if headway else None,
        )  # fmt: skip
    name = "corridor_frequency.zip" if frequency else "corridor.zip"
    return feeds.write_feed(folder / name, tables)


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(corridor_feed(tmp_path_factory.mktemp("feed")))


@pytest.fixture(scope="module")
def corridor_frequency(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(corridor_feed(tmp_path_factory.mktemp("feed"), frequency=True))


# --- hand-made answers -----------------------------------------------------------------------


def clock(network: Network, hhmm: str, plus_s: float = 0.0) -> float:
    """Epoch seconds of a time of WEDNESDAY's service day."""
    hours, minutes = (int(part) for part in hhmm.split(":"))
    return network.day_origin(WEDNESDAY) + hours * 3600 + minutes * 60 + plus_s


def answer(
    network: Network,
    vehicle_id: str,
    trip_id: str,
    at_s: float,
    along_m: float,
    *,
    state: State = State.IN_SERVICE,
    offset_m: float = 0.0,
) -> tuple[Ping, Match]:
    """A ping `offset_m` north (left of a shape heading east) of the spot `along_m` along the
    trip's shape, and the matcher's answer for it, as the matcher would give it."""
    trip_idx = network.trip_index[trip_id]
    trip = network.trips[trip_idx]
    run = network.runs_of_trip[trip_idx][0]
    x, y = network.point_at(trip.shape_idx, along_m)
    lat, lon = network.unproject(np.array([x, x]), np.array([y, y + offset_m]))
    headway = float(network.runs.headway_s[run])
    exact = bool(network.runs.exact_times[run])
    due = network.day_origin(WEDNESDAY) + network.scheduled_time_s(run, along_m)
    ping = Ping(vehicle_id, at_s, float(lat[1]), float(lon[1]))
    match = Match(
        vehicle_id=vehicle_id,
        timestamp=at_s,
        state=state,
        route_id=network.routes[trip.route_idx].route_id,
        trip_id=trip_id,
        service_date=DATE,
        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
        shape_id=network.shapes[trip.shape_idx].shape_id,
        shape_dist_m=along_m,
        snapped_lat=float(lat[0]),
        snapped_lon=float(lon[0]),
        offset_m=offset_m,
        delay_s=at_s - due if exact else None,
        headway_s=None if math.isnan(headway) else headway,
    )
    return ping, match


def unmatched(vehicle_id: str, at_s: float, lat: float, lon: float) -> tuple[Ping, Match]:
    ping = Ping(vehicle_id, at_s, lat, lon)
    return ping, Match(vehicle_id, at_s, State.NOT_MATCHED, Reason.NO_SHAPE_NEARBY)


@dataclass
class Bus:
    """A hand-driven bus: where along its trip it is at each time (linear between knots)."""

    vehicle_id: str
    trip_id: str
    knots: Sequence[tuple[float, float]]  # (epoch s, along m), times increasing

    def along(self, t_s: float) -> float:
        times = [t for t, _ in self.knots]
        return float(np.interp(t_s, times, [a for _, a in self.knots]))

    def active(self, t_s: float) -> bool:
        return self.knots[0][0] <= t_s <= self.knots[-1][0]


def drive(
    network: Network,
    monitor: OperationsMonitor,
    buses: Sequence[Bus],
    from_s: float,
    to_s: float,
    *,
    every_s: float = 10.0,
) -> list[Assessment]:
    """Every bus reports every `every_s` while active; an assessment after each round."""
    out: list[Assessment] = []
    t = from_s
    while t <= to_s:
        pairs = [answer(network, b.vehicle_id, b.trip_id, t, b.along(t)) for b in buses
                 if b.active(t)]  # fmt: skip
        if pairs:
            monitor.observe([p for p, _ in pairs], [m for _, m in pairs])
        out.append(monitor.assess(t))
        t += every_s
    return out


def steady(vehicle_id: str, trip_id: str, depart_s: float, speed_mps: float = 5.0) -> Bus:
    """A bus leaving the first stop at `depart_s` and running at `speed_mps` to the end."""
    return Bus(vehicle_id, trip_id, [(depart_s, 0.0), (depart_s + LENGTH_M / speed_mps, LENGTH_M)])


def of_kind(alerts: Sequence[Alert], kind: AlertKind) -> list[Alert]:
    return [a for a in alerts if a.kind is kind]


# --- gaps and headway adherence ----------------------------------------------------------------


def test_the_gap_is_how_long_ago_the_leader_passed_the_followers_position(
    corridor: Network,
) -> None:
    monitor = OperationsMonitor(corridor)
    # The leader leaves at 07:00 at 5 m/s: it passes 1000 m at 07:03:20. The follower (trip
    # C_0706) is there at 07:10:00, so the gap is 400 s; the timetable puts 360 s between the
    # two trips there.
    leader = steady("a", "C_0700", clock(corridor, "07:00"))
    follower = Bus(
        "b", "C_0706", [(clock(corridor, "07:06"), 0.0), (clock(corridor, "07:10"), 1000.0)]
    )
    result = drive(corridor, monitor, [leader, follower], clock(corridor, "07:00"),
                   clock(corridor, "07:10"))[-1]  # fmt: skip
    (gap,) = result.gaps
    assert (gap.leader_vehicle_id, gap.follower_vehicle_id) == ("a", "b")
    assert (gap.leader_trip_id, gap.follower_trip_id) == ("C_0700", "C_0706")
    assert (gap.route_id, gap.direction_id, gap.shape_id) == ("C", 0, "C_line")
    assert gap.shape_dist_m == 1000.0
    assert gap.gap_s == pytest.approx(400.0, abs=1.0)
    assert gap.scheduled_gap_s == pytest.approx(360.0, abs=1.0)
    assert gap.ratio == pytest.approx(400 / 360, abs=0.01)
    assert not gap.frequency_based
    assert result.alerts == ()


def test_headway_adherence_per_route_and_direction(corridor: Network) -> None:
    monitor = OperationsMonitor(corridor)
    start = clock(corridor, "07:00")
    # Three buses at 5 m/s: the second 360 s behind the first (as scheduled), the third 720 s
    # behind the second (twice the 360 s scheduled).
    buses = [steady("a", "C_0700", start), steady("b", "C_0706", start + 360),
             steady("c", "C_0712", start + 1080)]  # fmt: skip
    result = drive(corridor, monitor, buses, start, start + 1300)[-1]
    gaps = {g.follower_vehicle_id: g.gap_s for g in result.gaps}
    assert gaps == pytest.approx({"b": 360.0, "c": 720.0}, abs=1.0)
    (route,) = result.routes
    assert (route.route_id, route.direction_id, route.vehicles, route.gaps) == ("C", 0, 3, 2)
    assert route.mean_gap_s == pytest.approx(540.0, abs=1.0)
    assert route.mean_scheduled_gap_s == pytest.approx(360.0, abs=1.0)
    assert route.within_band_share == 0.5  # 360 s is within ±50 % of 360 s, 720 s is not
    assert route.headway_cv == pytest.approx(0.5, abs=0.01)  # std(0, 360) / 360
    assert (route.bunched, route.gapped, route.frequency_based) == (0, 1, False)


def test_bunching_opens_with_a_hold_for_the_follower_and_closes_past_its_threshold(
    corridor: Network,
) -> None:
    monitor = OperationsMonitor(corridor)
    start = clock(corridor, "07:06")
    # At 5 m/s: "b" (trip C_0706, scheduled 360 s behind C_0700) runs 60 s behind "a" and "c"
    # 300 s behind b. Then b stands at 3000 m for 100 s (a long dwell): its gap grows.
    a = steady("a", "C_0700", start)
    b = Bus("b", "C_0706", [(start + 60, 0.0), (start + 660, 3000.0), (start + 760, 3000.0),
                            (start + 1360, 6000.0)])  # fmt: skip
    c = steady("c", "C_0712", start + 360)
    opened = drive(corridor, monitor, [a, b, c], start, start + 650)[-1]
    (alert,) = of_kind(opened.alerts, AlertKind.BUNCHING)
    assert isinstance(alert, PairAlert)
    assert (alert.leader_vehicle_id, alert.follower_vehicle_id) == ("a", "b")
    assert alert.gap_s == pytest.approx(60.0, abs=1.0)
    assert alert.scheduled_gap_s == pytest.approx(360.0, abs=1.0)
    assert alert.severity == "warning"  # 60 / 360 is above half the bunching threshold
    # Hold b so that its gap ahead (60 s) moves towards the mean of it and its gap behind.
    (behind,) = [g for g in opened.gaps if g.follower_vehicle_id == "c"]
    assert behind.gap_s == pytest.approx(300.0, abs=1.0)
    assert alert.hold_vehicle_id == "b"
    assert alert.hold_s == pytest.approx((300 - 60) / 2, abs=1.0)
    # b stands at 3000 m from start + 660, 60 s behind a there: the gap grows by a second a
    # second. The alert stays open up to 0.25 × 1.2 × 360 = 108 s, and closes past it.
    states = drive(corridor, monitor, [a, b, c], start + 660, start + 760)
    open_until = max(s.at_s for s in states if of_kind(s.alerts, AlertKind.BUNCHING))
    assert open_until - (start + 660) == pytest.approx(108 - 60, abs=10.0)
    changes = [c for s in states for c in s.changes if c.alert.kind is AlertKind.BUNCHING]
    assert {c.alert.alert_id for c in changes} == {alert.alert_id}  # one alert, one id
    assert changes[-1].change is Change.CLOSED


def test_gapping_suggests_holding_the_bus_ahead_of_the_gap(corridor: Network) -> None:
    monitor = OperationsMonitor(corridor)
    start = clock(corridor, "07:00")
    # a, b 300 s apart; c 660 s behind b (1.83 × the 360 s scheduled).
    buses = [steady("a", "C_0700", start), steady("b", "C_0706", start + 300),
             steady("c", "C_0712", start + 960)]  # fmt: skip
    result = drive(corridor, monitor, buses, start, start + 1300)[-1]
    (alert,) = of_kind(result.alerts, AlertKind.GAPPING)
    assert isinstance(alert, PairAlert)
    assert (alert.leader_vehicle_id, alert.follower_vehicle_id) == ("b", "c")
    assert alert.ratio == pytest.approx(660 / 360, abs=0.01)
    assert alert.severity == "warning"  # 1.83 is below 2.0, the critical mark
    assert alert.hold_vehicle_id == "b"  # the gap closes from the front: b waits
    assert alert.hold_s == pytest.approx(min(180.0, (660 - 300) / 2), abs=1.0)


def test_buses_on_two_shapes_of_a_route_are_compared_where_they_share_the_street(
    variants: Network,
) -> None:
    monitor = OperationsMonitor(variants)
    start = clock(variants, "07:10")
    # V_branch_0710 and V_main_0720 share their first 2 km. The branch bus passes 1500 m at
    # 07:15:00; the main bus is there at 07:25:00 (gap 600 s, as in the timetable), then goes
    # on past the fork, where the branch bus never was.
    branch = Bus(
        "br", "V_branch_0710", [(start, 0.0), (start + 300, 1500.0), (start + 500, 2800.0)]
    )
    main = Bus("mn", "V_main_0720", [(start + 600, 0.0), (start + 600 + 300, 1500.0),
                                     (start + 600 + 500, 2800.0)])  # fmt: skip
    at_1500 = drive(variants, monitor, [branch, main], start, start + 900)[-1]
    (gap,) = at_1500.gaps
    assert (gap.leader_vehicle_id, gap.follower_vehicle_id) == ("br", "mn")
    assert gap.shape_id == "V_main"
    assert gap.gap_s == pytest.approx(600.0, abs=5.0)
    assert gap.scheduled_gap_s == pytest.approx(600.0, abs=5.0)
    past_fork = drive(variants, monitor, [main], start + 910, start + 1100)[-1]
    assert [g for g in past_fork.gaps if g.follower_vehicle_id == "mn"] == []


def test_headway_only_trips_are_compared_with_their_headway(corridor_frequency: Network) -> None:
    monitor = OperationsMonitor(corridor_frequency)
    start = clock(corridor_frequency, "07:30")
    buses = [steady("a", "C_0700", start), steady("b", "C_0700", start + 80)]
    result = drive(corridor_frequency, monitor, buses, start, start + 600)[-1]
    (gap,) = result.gaps
    assert gap.frequency_based
    assert gap.scheduled_gap_s == 360.0  # frequencies.txt's headway
    assert gap.gap_s == pytest.approx(80.0, abs=1.0)
    (route,) = result.routes
    assert route.frequency_based
    (alert,) = of_kind(result.alerts, AlertKind.BUNCHING)
    assert isinstance(alert, PairAlert)
    assert alert.follower_vehicle_id == "b"


# --- ghosts ----------------------------------------------------------------------------------


def test_a_trip_without_a_bus_is_a_ghost_after_the_grace_period(corridor: Network) -> None:
    monitor = OperationsMonitor(corridor)
    start = clock(corridor, "07:00")
    # C_0700 and C_0712 run; C_0706 does not. Route U never has a bus.
    buses = [steady("a", "C_0700", start), steady("c", "C_0712", start + 720)]
    before = drive(corridor, monitor, buses, start, clock(corridor, "07:10", 59))[-1]
    assert of_kind(before.alerts, AlertKind.GHOST_TRIP) == []  # 07:06 + 5 min grace not yet
    after = drive(corridor, monitor, buses, clock(corridor, "07:11"), clock(corridor, "07:13"))[-1]
    (ghost,) = of_kind(after.alerts, AlertKind.GHOST_TRIP)
    assert isinstance(ghost, GhostTrip)
    assert (ghost.trip_id, ghost.route_id, ghost.service_date) == ("C_0706", "C", DATE)
    assert ghost.scheduled_departure_s == clock(corridor, "07:06")
    assert ghost.scheduled_arrival_s == clock(corridor, "07:06", TRIP_S)
    assert ghost.first_stop_id == "C0"
    # It stays listed until it should have arrived (07:28).
    end = drive(corridor, monitor, buses, clock(corridor, "07:13", 10), clock(corridor, "07:28"))
    assert ghost.alert_id in {a.alert_id for a in end[-1].alerts}
    gone = drive(corridor, monitor, buses, clock(corridor, "07:28", 10), clock(corridor, "07:29"))
    assert ghost.alert_id not in {a.alert_id for a in gone[-1].alerts}


def test_ghosts_are_listed_only_for_the_routes_in_scope(corridor: Network) -> None:
    start = clock(corridor, "07:00")
    bus = [steady("a", "C_0700", start)]
    routes_of: dict[str, set[str]] = {}
    for name, config in (
        ("seen", OperationsConfig()),
        ("all", OperationsConfig(ghost_scope=GhostScope.ALL)),
        ("only U", OperationsConfig(ghost_scope=GhostScope.ALL, ghost_routes=frozenset({"U"}))),
    ):
        monitor = OperationsMonitor(corridor, config)
        result = drive(corridor, monitor, bus, start, clock(corridor, "07:20"), every_s=30)[-1]
        routes_of[name] = {a.route_id for a in of_kind(result.alerts, AlertKind.GHOST_TRIP)}
    # Route U's trips never had a bus: listed only when every route, or U, is in scope.
    assert routes_of == {"seen": {"C"}, "all": {"C", "U"}, "only U": {"U"}}


def test_no_ghosts_before_the_buses_had_time_to_report(corridor: Network) -> None:
    monitor = OperationsMonitor(corridor)
    # The tracker starts at 07:20: C_0700 ... C_0712 are long due, but no bus is lost yet.
    start = clock(corridor, "07:20")
    bus = [Bus("d", "C_0718", [(start, 500.0), (start + 600, 3500.0)])]
    early = drive(corridor, monitor, bus, start, start + 290)[-1]
    assert of_kind(early.alerts, AlertKind.GHOST_TRIP) == []
    later = drive(corridor, monitor, bus, start + 300, start + 310)[-1]
    # (C_0700 ended at 07:22; C_0718 is the bus's own.)
    assert {a.trip_id for a in of_kind(later.alerts, AlertKind.GHOST_TRIP)
            if isinstance(a, GhostTrip)} == {"C_0706", "C_0712"}  # fmt: skip


def test_a_bus_late_on_its_blocks_previous_trip_is_not_a_ghost(two_directions: Network) -> None:
    monitor = OperationsMonitor(two_directions)
    # blk1 runs B_N_0600 then B_S_0612. It runs B_N_0600 ten minutes late, so at 06:18 (past
    # B_S_0612's departure and grace) it is still on the previous trip of its block.
    start = clock(two_directions, "06:10")
    late = Bus("blk1", "B_N_0600", [(start, 0.0), (start + 540, 3000.0)])
    other = Bus("blk2", "B_S_0600", [(clock(two_directions, "06:00"), 0.0),
                                     (clock(two_directions, "06:09"), 3000.0)])  # fmt: skip
    result = drive(two_directions, monitor, [late, other], clock(two_directions, "06:00"),
                   clock(two_directions, "06:18"))[-1]  # fmt: skip
    ghosts = {a.trip_id for a in of_kind(result.alerts, AlertKind.GHOST_TRIP)
              if isinstance(a, GhostTrip)}  # fmt: skip
    assert "B_S_0612" not in ghosts
    assert "B_N_0612" in ghosts  # blk2's next trip: blk2 went quiet after B_S_0600


def test_a_headway_only_trip_short_of_buses(corridor_frequency: Network) -> None:
    monitor = OperationsMonitor(corridor_frequency)
    start = clock(corridor_frequency, "07:40")
    # At 08:00 the departures of the last 22 min (07:42, 07:48, 07:54, 08:00) should all be on
    # the road; two buses are.
    buses = [steady("a", "C_0700", start), steady("b", "C_0700", start + 360)]
    first = drive(corridor_frequency, monitor, buses, start, clock(corridor_frequency, "08:00"))
    shorts = [a for s in first for a in of_kind(s.alerts, AlertKind.SHORT_SERVICE)]
    assert shorts
    alert = shorts[-1]
    assert isinstance(alert, ShortService)
    assert (alert.trip_id, alert.headway_s, alert.buses_needed, alert.buses_seen) == (
        "C_0700",
        360.0,
        4,
        2,
    )
    # Listed only once the shortfall has lasted the grace period.
    first_listed = min(s.at_s for s in first if of_kind(s.alerts, AlertKind.SHORT_SERVICE))
    assert first_listed - alert.since_s >= 300
    assert of_kind(first[-1].alerts, AlertKind.GHOST_TRIP) == []  # no departure to miss


# --- silent buses ------------------------------------------------------------------------------


def test_a_bus_silent_mid_trip_is_listed_until_its_trip_should_have_ended(
    corridor: Network,
) -> None:
    monitor = OperationsMonitor(corridor)
    start = clock(corridor, "07:00")
    # "a" reports to 2000 m (07:06:40) and goes silent; "b" ends its trip at the last stop.
    a = Bus("a", "C_0700", [(start, 0.0), (start + 400, 2000.0)])
    b = Bus("b", "C_0706", [(start + 360, 0.0), (start + 360 + 1200, 6000.0)])
    last = start + 400
    states = drive(corridor, monitor, [a, b], start, start + 2400, every_s=10)
    listed = [s.at_s for s in states if of_kind(s.alerts, AlertKind.SILENT_VEHICLE)]
    assert min(listed) - last == pytest.approx(OperationsConfig().silent_after_s, abs=10)
    # The schedule had 4000 m left: 880 s; and silent_past_end_s 120 s more.
    assert max(listed) - last == pytest.approx(880 + 120, abs=10)
    alerts = {a.alert_id: a for s in states for a in of_kind(s.alerts, AlertKind.SILENT_VEHICLE)}
    (alert,) = alerts.values()
    assert isinstance(alert, SilentVehicle)
    assert (alert.vehicle_id, alert.trip_id, alert.last_seen_s) == ("a", "C_0700", last)
    assert alert.shape_dist_m == 2000.0


# --- detours -----------------------------------------------------------------------------------


def test_a_detour_needs_fixes_off_the_shape_in_a_row_and_ends_back_on_it(
    corridor: Network,
) -> None:
    monitor = OperationsMonitor(corridor)
    t0 = clock(corridor, "07:05")
    on = [answer(corridor, "a", "C_0700", t0 + 10 * k, 1500.0 + 80 * k) for k in range(5)]
    # One bad fix 250 m off, then back on the shape: not a detour.
    bad = [answer(corridor, "a", "C_0700", t0 + 50, 1900.0, state=State.OFF_ROUTE, offset_m=250)]
    back = [answer(corridor, "a", "C_0700", t0 + 10 * k, 1500.0 + 80 * k) for k in range(6, 8)]
    for ping, match in on + bad + back:
        monitor.observe([ping], [match])
    assert monitor.assess(t0 + 80).alerts == ()
    # Then 2400 m to 3200 m along a street 200 m north: off route, then no shape near at all.
    t1 = t0 + 80
    off = [answer(corridor, "a", "C_0700", t1 + 10 * k, 2400.0 + 80 * k, offset_m=200.0,
                  state=State.OFF_ROUTE) for k in range(1, 5)]  # fmt: skip
    lost = [unmatched("a", t1 + 10 * k, *_north_of(corridor, 2400.0 + 80 * k, 200.0))
            for k in range(5, 10)]  # fmt: skip
    before = [answer(corridor, "a", "C_0700", t1, 2320.0)]
    for ping, match in before + off + lost:
        monitor.observe([ping], [match])
    (detour,) = monitor.assess(t1 + 100).alerts
    assert isinstance(detour, Detour)
    assert detour.active
    assert (detour.vehicle_id, detour.trip_id, detour.shape_id) == ("a", "C_0700", "C_line")
    # It left between its last fix on the shape (2320 m) and the foot of its first off it.
    assert detour.left_shape_dist_m == pytest.approx((2320 + 2480) / 2, abs=5.0)
    assert detour.started_s == t1 + 10
    assert detour.off_fixes == 9
    assert detour.max_offset_m == pytest.approx(200.0, abs=1.0)
    # Back on the shape for three fixes: over, where it rejoined (between the foot of its last
    # fix off it, 3120 m, and its first fix back, 3300 m).
    rejoin = [answer(corridor, "a", "C_0700", t1 + 100 + 10 * k, 3300.0 + 80 * k)
              for k in range(3)]  # fmt: skip
    for ping, match in rejoin:
        monitor.observe([ping], [match])
    result = monitor.assess(t1 + 130)
    assert result.alerts == ()
    (closed,) = [c.alert for c in result.changes if c.change is Change.CLOSED]
    assert isinstance(closed, Detour)
    assert closed.alert_id == detour.alert_id
    assert closed.ended_s == t1 + 100
    assert closed.rejoined_shape_dist_m == pytest.approx((3120 + 3300) / 2, abs=5.0)
    assert monitor.finished_detours == [closed]


def _north_of(network: Network, along_m: float, north_m: float) -> tuple[float, float]:
    x, y = network.point_at(network.trips[network.trip_index["C_0700"]].shape_idx, along_m)
    lat, lon = network.unproject(np.array([x]), np.array([y + north_m]))
    return float(lat[0]), float(lon[0])


# --- memory and settings ---------------------------------------------------------------------


def test_memory_is_bounded(corridor: Network) -> None:
    config = OperationsConfig(trace_window_s=600.0)
    monitor = OperationsMonitor(corridor, config)
    start = clock(corridor, "07:00")
    drive(corridor, monitor, [steady("a", "C_0700", start, speed_mps=2.0)], start, start + 2900)
    # A point every 10 s, for 600 s and the 33 points it trims at a time.
    assert 600 / 10 <= monitor.trace_points <= (600 + 33 * 10) / 10 + 1
    assert monitor.vehicles_tracked == 1
    monitor.assess(start + 2900 + config.forget_after_s + 1)
    assert (monitor.vehicles_tracked, monitor.trace_points) == (0, 0)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="bunching_ratio"):
        OperationsConfig(bunching_ratio=1.2)
    with pytest.raises(ValueError, match="rejoin_pings"):
        OperationsConfig(rejoin_pings=0)


def test_observe_takes_one_ping_per_answer(corridor: Network) -> None:
    ping, match = answer(corridor, "a", "C_0700", clock(corridor, "07:01"), 100.0)
    with pytest.raises(ValueError, match="2 pings but 1 answers"):
        OperationsMonitor(corridor).observe([ping, ping], [match])


# --- simulated days through the real matcher ----------------------------------------------------


@dataclass
class Episode:
    """One alert from opened to closed (None: still open at the end of the day)."""

    first: Alert
    last: Alert
    opened_s: float
    closed_s: float | None = None

    def overlaps(self, start_s: float, end_s: float, slack_s: float) -> bool:
        closed = self.closed_s if self.closed_s is not None else math.inf
        return self.opened_s <= end_s + slack_s and closed >= start_s - slack_s


@dataclass
class Day:
    """A simulated day as the operations signals saw it, and what really happened."""

    network: Network
    truth: tuple[ScenarioTruth, ...]
    near_truth: tuple[ScenarioTruth, ...]  # bunching/gapping with thresholds 20 % looser
    episodes: list[Episode]
    gaps_seen: int
    dropped: frozenset[str]  # buses whose pings stopped mid-trip for `silent_after_s` or more
    bus_ahead: dict[str, str]  # each bus's predecessor on the timetable

    def truth_of(self, kind: str) -> list[ScenarioTruth]:
        return [t for t in self.truth if t.kind == kind]

    def alerts_of(self, kind: AlertKind) -> list[Episode]:
        return [e for e in self.episodes if e.first.kind is kind]

    def around_dropped(self, vehicle_id: str) -> bool:
        """A bus whose pings stopped for a while, or the bus ahead of one: while it is not
        seen, the tracker measures the gap behind the bus ahead to the bus after it."""
        return vehicle_id in self.dropped or any(
            self.bus_ahead.get(v) == vehicle_id for v in self.dropped
        )


START_S, END_S = 6.5 * 3600, 10 * 3600  # the simulated window, from the service day's origin


def simulated_day(network: Network, scenarios: Sequence[str], seed: int) -> Day:
    """Route C from 06:30 to 10:00 with `scenarios`, matched live 10 s of pings at a time,
    assessed every 30 s (to the end of the window)."""
    made = simulate_day(network, np.random.default_rng(seed), WEDNESDAY, scenarios=scenarios,
                        start_s=START_S, end_s=END_S, route_ids=["C"])  # fmt: skip
    near = simulate_day(
        network, np.random.default_rng(seed), WEDNESDAY, scenarios=scenarios,
        scenario_config=ScenarioConfig(bunching_ratio=0.3, gapping_ratio=1.5 / 1.2),
        start_s=START_S, end_s=END_S, route_ids=["C"],
    ).truth  # fmt: skip
    sims = list(made.pings)
    pings = [s.ping for s in sims]
    matcher = Matcher(network)
    monitor = OperationsMonitor(network)
    episodes: dict[str, Episode] = {}
    gaps_seen = 0

    def assess(now_s: float) -> None:
        nonlocal gaps_seen
        result = monitor.assess(now_s)
        gaps_seen += len(result.gaps)
        for change in result.changes:
            alert = change.alert
            if change.change is Change.OPENED:
                episodes[alert.alert_id] = Episode(alert, alert, now_s)
            else:
                episodes[alert.alert_id].last = alert
            if change.change is Change.CLOSED:
                episodes[alert.alert_id].closed_s = now_s

    batch: list[Ping] = []
    next_assess = pings[0].timestamp
    for ping in [*pings, None]:
        if batch and (ping is None or ping.timestamp - batch[0].timestamp >= 10.0):
            now = batch[-1].timestamp
            monitor.observe(batch, matcher.match_batch(batch, now=now + 5.0))
            batch = []
            if now >= next_assess:
                assess(now)
                next_assess = now + 30.0
        if ping is not None:
            batch.append(ping)
    while next_assess < network.day_origin(WEDNESDAY) + END_S:  # no more pings: time goes on
        assess(next_assess)
        next_assess += 30.0
    return Day(network, made.truth, near, list(episodes.values()), gaps_seen,
               _dropped(sims), _bus_ahead(sims))  # fmt: skip


def _dropped(sims: Sequence[SimPing]) -> frozenset[str]:
    """Buses with `silent_after_s` (less a ping) or more between two pings mid-trip: the
    simulator's GPS drop-outs (and stop-reporting scenarios)."""
    after = OperationsConfig().silent_after_s - 10.0
    last: dict[str, SimPing] = {}
    out: set[str] = set()
    for sim in sorted(sims, key=lambda s: (s.ping.vehicle_id, s.ping.timestamp)):
        before = last.get(sim.ping.vehicle_id)
        if (before is not None and before.truth.state == IN_SERVICE
                and sim.ping.timestamp - before.ping.timestamp >= after):  # fmt: skip
            out.add(sim.ping.vehicle_id)
        last[sim.ping.vehicle_id] = sim
    # A bus whose pings stop mid-trip for good (its last one in service, away from the end).
    for vehicle_id, sim in last.items():
        if sim.truth.state == IN_SERVICE and sim.truth.shape_dist_m < LENGTH_M - 300:
            out.add(vehicle_id)
    return frozenset(out)


def _bus_ahead(sims: Sequence[SimPing]) -> dict[str, str]:
    """Each bus's predecessor, by when it first left its first stop (one pattern, one trip
    each)."""
    first: dict[str, float] = {}
    for sim in sims:
        if sim.truth.state == IN_SERVICE:
            vehicle_id = sim.ping.vehicle_id
            first[vehicle_id] = min(first.get(vehicle_id, math.inf), sim.ping.timestamp)
    order = sorted(first, key=lambda v: (first[v], v))
    return {b: a for a, b in itertools.pairwise(order)}


@pytest.fixture(scope="module")
def late_day(corridor: Network) -> Day:
    return simulated_day(corridor, [LATE_CATCH_UP], seed=1)


@pytest.fixture(scope="module")
def busy_day(corridor: Network) -> Day:
    return simulated_day(corridor, list(KINDS), seed=2)


@pytest.fixture(scope="module")
def frequency_day(corridor_frequency: Network) -> Day:
    return simulated_day(corridor_frequency, [LATE_CATCH_UP, STOP_REPORTING, DETOUR], seed=1)


SLACK_S = 120.0  # "within a minute or two" of the truth
LASTING_S = 120.0  # a truth interval, or an alert, at least this long must find its match


def _pair_of(e: Episode | ScenarioTruth) -> tuple[str, str]:
    if isinstance(e, ScenarioTruth):
        assert e.leader_vehicle_id is not None
        return e.leader_vehicle_id, e.vehicle_id
    first = e.first
    assert isinstance(first, PairAlert)
    return first.leader_vehicle_id, first.follower_vehicle_id


def _same_pair(kind: str, alert: Episode, truth: ScenarioTruth) -> bool:
    (al, af), (tl, tf) = _pair_of(alert), _pair_of(truth)
    if kind == BUNCHING:  # a bunch may swap places
        return {al, af} == {tl, tf}
    return al == tl  # a gap belongs to the bus ahead of it


def _check_pairs_against_truth(day: Day) -> None:
    """Every bunching/gapping interval of the truth lasting `LASTING_S` has an alert of that
    kind for that pair, opened within `SLACK_S` of its start; every alert lasting `LASTING_S`
    overlaps such an interval of the truth with thresholds 20 % looser (a gap the truth puts
    at 1.45 headways may show as 1.5). Pairs around a bus the tracker could not see for a
    while (`Day.around_dropped`) aside."""
    for kind, alert_kind in ((BUNCHING, AlertKind.BUNCHING), (GAPPING, AlertKind.GAPPING)):
        seen = [
            a for a in day.alerts_of(alert_kind) if not any(map(day.around_dropped, _pair_of(a)))
        ]
        for truth in day.truth_of(kind):
            lasting = truth.end_s - truth.start_s >= LASTING_S
            if not lasting or any(map(day.around_dropped, _pair_of(truth))):
                continue
            found = [
                a
                for a in seen
                if _same_pair(kind, a, truth) and a.overlaps(truth.start_s, truth.end_s, 0)
            ]
            assert found, f"no {kind} alert for {_pair_of(truth)} at {truth.start_s}"
            assert min(a.opened_s for a in found) - truth.start_s <= SLACK_S
        near = [t for t in day.near_truth if t.kind == kind]
        for alert in seen:
            closed = alert.closed_s if alert.closed_s is not None else math.inf
            if closed - alert.opened_s < LASTING_S:
                continue
            matched = [
                t
                for t in near
                if _same_pair(kind, alert, t) and alert.overlaps(t.start_s, t.end_s, SLACK_S)
            ]
            assert matched, f"{kind} alert {alert.first.alert_id} has no truth"


def test_the_late_bus_bunches_with_the_bus_ahead_and_leaves_a_gap_behind(late_day: Day) -> None:
    (case,) = late_day.truth_of(LATE_CATCH_UP)
    ahead, late, behind = case.leader_vehicle_id, case.vehicle_id, case.follower_vehicle_id
    (bunch_truth,) = [t for t in late_day.truth_of(BUNCHING) if t.scenario == LATE_CATCH_UP]
    assert (bunch_truth.leader_vehicle_id, bunch_truth.vehicle_id) == (ahead, late)
    bunches = [e for e in late_day.alerts_of(AlertKind.BUNCHING)
               if {*_pair_of(e)} == {ahead, late}]  # fmt: skip
    assert len(bunches) == 1
    (bunch,) = bunches
    assert abs(bunch.opened_s - bunch_truth.start_s) <= SLACK_S
    assert bunch.closed_s is not None
    assert abs(bunch.closed_s - bunch_truth.end_s) <= SLACK_S
    last = bunch.last
    assert isinstance(last, PairAlert)
    # Following 30 s behind on a 6 min headway: a ratio below 0.15, and the late bus is held.
    assert 0 < last.gap_s < 60
    assert last.scheduled_gap_s == pytest.approx(360, abs=5)
    assert last.severity == "critical"
    assert last.hold_vehicle_id == late
    assert 0 < last.hold_s <= 180
    gaps = [e for e in late_day.alerts_of(AlertKind.GAPPING) if _pair_of(e)[0] == late]
    assert gaps, "no gap behind the late bus"
    gap_truth = [t for t in late_day.truth_of(GAPPING) if t.leader_vehicle_id == late]
    assert [t.vehicle_id for t in gap_truth] == [behind]
    assert abs(min(e.opened_s for e in gaps) - gap_truth[0].start_s) <= SLACK_S
    widest = max((e.last for e in gaps), key=lambda a: a.ratio if isinstance(a, PairAlert) else 0)
    assert isinstance(widest, PairAlert)
    assert widest.follower_vehicle_id == behind
    assert widest.ratio > 1.5
    assert widest.hold_vehicle_id == late  # hold the bus ahead of the gap
    assert 0 < widest.hold_s <= 180


def test_bunching_and_gapping_alerts_match_the_truth_and_no_other(late_day: Day) -> None:
    assert late_day.gaps_seen > 500
    _check_pairs_against_truth(late_day)


def test_the_cancelled_trip_is_listed_as_a_ghost_and_no_trip_that_ran(busy_day: Day) -> None:
    (cancelled,) = busy_day.truth_of(CANCELLED_TRIP)
    ghosts = busy_day.alerts_of(AlertKind.GHOST_TRIP)
    assert [g.first.trip_id for g in ghosts if isinstance(g.first, GhostTrip)] == [
        cancelled.trip_id
    ]
    (ghost,) = ghosts
    grace = OperationsConfig().ghost_grace_s
    # After the grace period; within the next two minutes (a waiting bus may be matched to the
    # trip for a while), and until it should have arrived.
    assert cancelled.start_s + grace <= ghost.opened_s <= cancelled.start_s + grace + SLACK_S
    assert ghost.closed_s is not None
    assert abs(ghost.closed_s - cancelled.end_s) <= 60


def test_the_bus_that_stopped_reporting_is_listed_and_no_other(busy_day: Day) -> None:
    (silent,) = busy_day.truth_of(STOP_REPORTING)
    listed = busy_day.alerts_of(AlertKind.SILENT_VEHICLE)
    vehicles = [e.first.vehicle_id for e in listed if isinstance(e.first, SilentVehicle)]
    assert silent.vehicle_id in vehicles
    # Any other is a bus whose GPS dropped out for that long (the truth of its pings says so).
    assert set(vehicles) <= busy_day.dropped
    (episode,) = [e for e in listed if vehicles[listed.index(e)] == silent.vehicle_id]
    after = OperationsConfig().silent_after_s
    # (Its last ping came up to one interval before the silence began.)
    assert silent.start_s + after - 10 <= episode.opened_s <= silent.start_s + after + 60
    alert = episode.first
    assert isinstance(alert, SilentVehicle)
    assert alert.trip_id == silent.trip_id
    assert alert.lat is not None
    assert silent.lat is not None
    assert alert.lon is not None
    assert silent.lon is not None
    assert haversine_m(alert.lat, alert.lon, silent.lat, silent.lon) < 200


def test_the_detour_is_found_with_where_it_left_and_rejoined(busy_day: Day) -> None:
    (truth,) = busy_day.truth_of(DETOUR)
    # One detour: no single bad fix of the day (1 % are 100–300 m outliers) made another.
    (episode,) = busy_day.alerts_of(AlertKind.DETOUR)
    detour = episode.last
    assert isinstance(detour, Detour)
    assert (detour.vehicle_id, detour.trip_id) == (truth.vehicle_id, truth.trip_id)
    assert not detour.active
    assert truth.left_lat is not None
    assert truth.left_lon is not None
    assert truth.rejoined_lat is not None
    assert truth.rejoined_lon is not None
    assert truth.left_shape_dist_m is not None
    assert truth.rejoined_shape_dist_m is not None
    assert detour.rejoined_lat is not None
    assert detour.rejoined_lon is not None
    assert detour.rejoined_shape_dist_m is not None
    assert haversine_m(detour.left_lat, detour.left_lon, truth.left_lat, truth.left_lon) < 100
    assert abs(detour.left_shape_dist_m - truth.left_shape_dist_m) < 100
    assert haversine_m(detour.rejoined_lat, detour.rejoined_lon, truth.rejoined_lat,
                       truth.rejoined_lon) < 100  # fmt: skip
    assert abs(detour.rejoined_shape_dist_m - truth.rejoined_shape_dist_m) < 100
    assert truth.offset_m is not None
    assert detour.typical_offset_m == pytest.approx(truth.offset_m, abs=30)
    assert detour.max_offset_m >= detour.typical_offset_m
    assert abs(detour.started_s - truth.start_s) <= 60
    assert detour.ended_s is not None
    assert abs(detour.ended_s - truth.end_s) <= 60


def test_a_busy_day_has_its_late_catch_up_bunch_too(busy_day: Day) -> None:
    (case,) = busy_day.truth_of(LATE_CATCH_UP)
    bunches = [e for e in busy_day.alerts_of(AlertKind.BUNCHING)
               if {*_pair_of(e)} == {case.leader_vehicle_id, case.vehicle_id}]  # fmt: skip
    assert len(bunches) == 1
    _check_pairs_against_truth(busy_day)


def test_a_frequency_line_is_measured_by_its_headway(frequency_day: Day) -> None:
    (case,) = frequency_day.truth_of(LATE_CATCH_UP)
    bunches = [e for e in frequency_day.alerts_of(AlertKind.BUNCHING)
               if {*_pair_of(e)} == {case.leader_vehicle_id, case.vehicle_id}]  # fmt: skip
    assert len(bunches) == 1
    last = bunches[0].last
    assert isinstance(last, PairAlert)
    assert last.scheduled_gap_s == 360.0  # frequencies.txt's headway
    (silent,) = frequency_day.truth_of(STOP_REPORTING)
    listed = {e.first.vehicle_id for e in frequency_day.alerts_of(AlertKind.SILENT_VEHICLE)
              if isinstance(e.first, SilentVehicle)}  # fmt: skip
    assert silent.vehicle_id in listed
    assert listed <= frequency_day.dropped
    (detour,) = frequency_day.alerts_of(AlertKind.DETOUR)
    assert isinstance(detour.last, Detour)
    assert detour.last.vehicle_id == frequency_day.truth_of(DETOUR)[0].vehicle_id
    assert frequency_day.alerts_of(AlertKind.GHOST_TRIP) == []  # no departure to miss
    _check_pairs_against_truth(frequency_day)


def test_alert_ids_are_stable_and_unique(busy_day: Day) -> None:
    ids = [e.first.alert_id for e in busy_day.episodes]
    assert len(ids) == len(set(ids))
    assert all(e.first.alert_id == e.last.alert_id for e in busy_day.episodes)
    assert all(e.first.kind is e.last.kind for e in busy_day.episodes)
