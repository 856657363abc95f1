"""The simulator's pure core (`simulator.day`, `simulator.gps`), its pacing and file adapters,
and its command line without a broker. Tiny feeds from tests/feeds.py, plus one small real
feed (TriMet, one route) from ../shared/data when it is there."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import itertools
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator import day, gps, scenarios
from simulator.cli import main
from simulator.day import DriveConfig, SimConfig, SimPing, simulate
from simulator.errors import BrokerError
from simulator.files import TRUTH_COLUMNS
from simulator.gps import GpsConfig
from simulator.publish import parse_broker_url
from simulator.replay import Pacer, ReplayCounts, recorded_pings
from tests import feeds
from tests.shared_data import SHARED_DATA, required
from tests.unit.test_operations import corridor_feed
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.gtfs.load import load_network
from tracker.pings_io import read_pings

SIMULATOR = Path(__file__).resolve().parents[2] / "simulator"
TRIMET = SHARED_DATA / "static" / "trimet-vermont-2018.zip"
WEDNESDAY = dt.date(2026, 3, 4)
CLEAN = GpsConfig(
    noise_m=0.0,
    outlier_rate=0.0,
    dropout_rate=0.0,
    duplicate_rate=0.0,
    out_of_order_rate=0.0,
    jitter_s=0.0,
)


@pytest.fixture(scope="module")
def feed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feeds")


@pytest.fixture(scope="module")
def two_directions(feed_dir: Path) -> Network:
    return load_network(feeds.two_directions_feed(feed_dir), use_cache=False)


@pytest.fixture(scope="module")
def loop(feed_dir: Path) -> Network:
    return load_network(feeds.loop_feed(feed_dir), use_cache=False)


@pytest.fixture(scope="module")
def trimet() -> Network:
    return load_network(required(TRIMET), use_cache=False)


def _day(network: Network, date: dt.date, seed: int = 1, **options: Any) -> list[SimPing]:
    return list(simulate(network, np.random.default_rng(seed), date, **options))


def _trimet_date(network: Network) -> dt.date:
    return day.busiest_date(network)


def _xy(network: Network, lat: float, lon: float) -> tuple[float, float]:
    x, y = network.project(np.array([lat]), np.array([lon]))
    return float(x[0]), float(y[0])


def _shape_of(network: Network, trip_id: str) -> int:
    return network.trips[network.trip_index[trip_id]].shape_idx


# --- planning ---------------------------------------------------------------------------------


def test_one_bus_per_block_running_its_runs_in_order(two_directions: Network) -> None:
    plans = day.plan_buses(two_directions, WEDNESDAY)
    assert [p.vehicle_id for p in plans] == ["bus-blk1", "bus-blk2"]
    for plan in plans:
        assert len(plan.runs) == 21
        starts = two_directions.runs.start_s[list(plan.runs)]
        assert np.all(np.diff(starts) > 0)
        trips = [two_directions.trips[int(two_directions.runs.trip_idx[r])] for r in plan.runs]
        assert {t.block_id for t in trips} == {plan.block_id}
        directions = [t.direction_id for t in trips]
        assert all(a != b for a, b in itertools.pairwise(directions))  # they alternate


def test_one_bus_per_trip_without_blocks(loop: Network) -> None:
    plans = day.plan_buses(loop, WEDNESDAY)
    assert len(plans) == 9
    assert all(len(p.runs) == 1 and p.block_id == "" for p in plans)
    assert plans[0].vehicle_id == "bus-L_0600"
    assert day.plan_buses(loop, dt.date(2026, 3, 7)) == []  # a Saturday: no service


def test_frequency_runs_get_a_bus_each(feed_dir: Path) -> None:
    network = load_network(feeds.frequency_feed(feed_dir), use_cache=False)
    plans = day.plan_buses(network, WEDNESDAY)
    assert len(plans) == len(network.runs)
    assert len({p.vehicle_id for p in plans}) == len(plans)
    assert "bus-F_exact-0710" in {p.vehicle_id for p in plans}


# --- driving ----------------------------------------------------------------------------------


def test_clean_positions_lie_on_the_true_trip_shape(two_directions: Network, loop: Network) -> None:
    config = SimConfig(gps=CLEAN)
    for network in (two_directions, loop):
        pings = _day(network, WEDNESDAY, config=config)
        assert len(pings) > 500
        for sim in pings:
            x, y = _xy(network, sim.ping.lat, sim.ping.lon)
            shape = _shape_of(network, sim.truth.trip_id)
            along = sim.truth.shape_dist_m
            px, py = network.point_at(shape, along)
            assert math.hypot(x - px, y - py) < 0.1
            assert sim.truth.error_m == 0
            assert sim.ping.lat == sim.truth.lat
            assert sim.ping.lon == sim.truth.lon


def test_clean_positions_on_a_real_feed(trimet: Network) -> None:
    pings = _day(trimet, _trimet_date(trimet), config=SimConfig(gps=CLEAN))
    assert len(pings) > 3000
    for sim in pings[::7]:
        x, y = _xy(trimet, sim.ping.lat, sim.ping.lon)
        shape = _shape_of(trimet, sim.truth.trip_id)
        along, offset = trimet.locate_on_shape(
            shape, x, y, from_m=sim.truth.shape_dist_m - 5, to_m=sim.truth.shape_dist_m + 5
        )
        assert offset < 0.2
        assert along == pytest.approx(sim.truth.shape_dist_m, abs=0.5)


def test_progress_along_a_trip_never_goes_back(two_directions: Network) -> None:
    pings = _day(two_directions, WEDNESDAY)
    by_trip: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for sim in pings:
        if not sim.truth.duplicate:
            key = (sim.truth.vehicle_id, sim.truth.trip_id)
            by_trip[key].append((sim.truth.timestamp, sim.truth.shape_dist_m))
    assert len(by_trip) == 42
    for track in by_trip.values():
        along = [a for _, a in sorted(track)]
        assert all(b >= a for a, b in itertools.pairwise(along))


def test_speeds_are_realistic(two_directions: Network) -> None:
    pings = _day(two_directions, WEDNESDAY)
    speeds = np.array([p.truth.speed_mps for p in pings])
    assert speeds.max() <= 25.0
    assert 5.0 < float(np.median(speeds[speeds > 0.5])) < 16.0
    # Speeds change smoothly: accelerating from a stop takes seconds, not a jump.
    by_vehicle: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in pings:
        by_vehicle[p.truth.vehicle_id].append((p.truth.timestamp, p.truth.speed_mps))
    for samples in by_vehicle.values():
        samples.sort()
        for (t0, v0), (t1, v1) in itertools.pairwise(samples):
            if t1 > t0:
                assert abs(v1 - v0) / (t1 - t0) <= 1.6  # m/s², the hardest braking drawn


def test_buses_dwell_at_stops(two_directions: Network) -> None:
    """With traffic lights off, an in-service bus only stands at its stops."""
    config = SimConfig(gps=CLEAN, interval_s=2.0, drive=DriveConfig(signal_stops_per_km=0.0))
    pings = _day(two_directions, WEDNESDAY, config=config)
    served: Counter[str] = Counter()
    for sim in pings:
        if sim.truth.state == day.IN_SERVICE and sim.truth.speed_mps == 0.0:
            trip = two_directions.trips[two_directions.trip_index[sim.truth.trip_id]]
            stop_dist = two_directions.patterns[trip.pattern_idx].stop_dist_m
            assert float(np.min(np.abs(stop_dist - sim.truth.shape_dist_m))) < 0.01
            served[sim.truth.trip_id] += 1
    # Every trip dwells (its middle stops wait 30 s in the schedule, so are always served).
    assert len(served) == 42
    assert min(served.values()) >= 3 * 10 // 2  # three stops, ≥ 10 s each, a fix every 2 s


def test_lateness_drifts_but_stays_bounded(two_directions: Network) -> None:
    drive = DriveConfig()
    pings = _day(two_directions, WEDNESDAY, seed=3)
    delays: dict[str, list[float]] = defaultdict(list)
    for sim in pings:
        if sim.truth.state == day.IN_SERVICE:
            delays[sim.truth.trip_id].append(sim.truth.delay_s)
    low, high = drive.lateness_bounds_s
    spread = [max(d) - min(d) for d in delays.values()]
    assert all(low - 120 <= min(d) and max(d) <= high + 120 for d in delays.values())
    assert np.median(spread) > 20  # it drifts within a trip
    ends = [d[-1] for d in delays.values()]
    assert np.std(ends) > 10  # and differs between trips


def test_lateness_on_a_real_feed_is_plausible(trimet: Network) -> None:
    pings = _day(trimet, _trimet_date(trimet))
    delays = np.array([p.truth.delay_s for p in pings if p.truth.state == day.IN_SERVICE])
    assert -400 < np.percentile(delays, 5) < np.percentile(delays, 95) < 900
    assert -60 < np.median(delays) < 300


def test_layover_recovers_lateness_at_terminals(two_directions: Network) -> None:
    """A bus arriving late leaves on its next trip with less lateness (3 min layovers)."""
    config = SimConfig(gps=CLEAN, drive=DriveConfig(lateness_typical_s=400.0))
    pings = _day(two_directions, WEDNESDAY, seed=5, config=config)
    last: dict[str, float] = {}
    first: dict[str, float] = {}
    for sim in pings:
        if sim.truth.state == day.IN_SERVICE:
            last[sim.truth.trip_id] = sim.truth.delay_s
            first.setdefault(sim.truth.trip_id, sim.truth.delay_s)
    plan = day.plan_buses(two_directions, WEDNESDAY)[0]
    trip_ids = [
        two_directions.trips[int(two_directions.runs.trip_idx[r])].trip_id for r in plan.runs
    ]
    recovered = [last[a] - first[b] for a, b in itertools.pairwise(trip_ids) if last[a] > 300]
    assert recovered
    assert np.median(recovered) > 60


def test_a_bus_waits_at_its_first_stop_before_departing(loop: Network) -> None:
    pings = _day(loop, WEDNESDAY, config=SimConfig(gps=CLEAN))
    first: dict[str, SimPing] = {}
    for sim in pings:
        first.setdefault(sim.truth.vehicle_id, sim)
    for sim in first.values():
        assert sim.truth.state == day.LAYOVER
        assert sim.truth.shape_dist_m == 0.0
        assert -600 - 10 <= sim.truth.delay_s < 0


def test_scheduled_times_agree_with_the_network(two_directions: Network) -> None:
    run = int(two_directions.runs_of_trip[two_directions.trip_index["B_S_0712"]][0])
    pattern = two_directions.patterns[int(two_directions.runs.pattern_idx[run])]
    along = np.array([-5.0, 0.0, 300.0, 600.0, 600.0001, 1999.0, 3000.0, 3100.0])
    got = day.scheduled_times_s(pattern, int(two_directions.runs.row[run]), along)
    expected = [two_directions.scheduled_time_s(run, float(a)) for a in along]
    assert got.tolist() == pytest.approx(expected)


def test_times_past_midnight_and_daylight_saving(feed_dir: Path) -> None:
    overnight = load_network(feeds.overnight_feed(feed_dir), use_cache=False)
    pings = _day(overnight, dt.date(2026, 3, 20), config=SimConfig(gps=CLEAN))
    trips = {p.truth.trip_id for p in pings}
    assert trips == {"N_2330", "N_2420"}
    assert (
        max(p.ping.timestamp for p in pings)
        > dt.datetime(2026, 3, 21, 1, 0, tzinfo=dt.UTC).timestamp()
    )

    dst = load_network(feeds.dst_feed(feed_dir), use_cache=False)
    pings = _day(dst, dt.date(2026, 3, 8), config=SimConfig(gps=CLEAN))
    noon = [p for p in pings if p.truth.trip_id == "D_1200" and p.truth.state == day.IN_SERVICE]
    first = min(p.ping.timestamp for p in noon)
    # 12:00 EDT is 16:00Z; the bus leaves within a few minutes of it.
    assert 0 <= first - dt.datetime(2026, 3, 8, 16, tzinfo=dt.UTC).timestamp() < 600


# --- the stream -------------------------------------------------------------------------------


def test_the_stream_is_ordered_by_send_time_and_timestamps_except_flagged(
    two_directions: Network,
) -> None:
    config = SimConfig(gps=replace(GpsConfig(), out_of_order_rate=0.05, duplicate_rate=0.05))
    pings = _day(two_directions, WEDNESDAY, config=config)
    sent = [p.sent_at for p in pings]
    assert sent == sorted(sent)
    newest: dict[str, float] = {}
    flagged = 0
    for sim in pings:
        ts, vid = sim.ping.timestamp, sim.ping.vehicle_id
        if sim.truth.out_of_order:
            flagged += 1
            assert ts < newest[vid]
        elif sim.truth.duplicate:
            assert ts <= newest[vid]
        else:
            assert ts > newest.get(vid, -math.inf)
        assert sim.sent_at >= ts
        newest[vid] = max(newest.get(vid, -math.inf), ts)
    assert flagged > 50


def test_truth_matches_each_ping(two_directions: Network) -> None:
    for sim in _day(two_directions, WEDNESDAY):
        assert (sim.truth.vehicle_id, sim.truth.timestamp) == (
            sim.ping.vehicle_id,
            sim.ping.timestamp,
        )
        assert sim.truth.service_date == "20260304"
        assert sim.truth.route_id == "B"
        assert sim.ping.trip_id is None
        assert sim.ping.route_id is None


def test_trip_ids_in_pings_when_asked(two_directions: Network) -> None:
    pings = _day(two_directions, WEDNESDAY, config=SimConfig(trip_ids_in_pings=True))
    assert all(p.ping.trip_id == p.truth.trip_id for p in pings)
    assert all(p.ping.route_id == "B" for p in pings)


def test_same_seed_same_stream_other_seed_other_stream(two_directions: Network) -> None:
    a = _day(two_directions, WEDNESDAY, seed=7)
    b = _day(two_directions, WEDNESDAY, seed=7)
    c = _day(two_directions, WEDNESDAY, seed=8)
    assert a == b
    assert [p.ping for p in a] != [p.ping for p in c]


def test_a_window_is_a_slice_of_the_whole_day(two_directions: Network) -> None:
    whole = _day(two_directions, WEDNESDAY, seed=2)
    start, end = 7 * 3600.0, 8.5 * 3600
    part = _day(two_directions, WEDNESDAY, seed=2, start_s=start, end_s=end)
    origin = two_directions.day_origin(WEDNESDAY)
    expected = [p for p in whole if start <= p.ping.timestamp - origin < end]
    assert part == [replace(p, truth=replace(p.truth, out_of_order=q.truth.out_of_order))
                    for p, q in zip(expected, part, strict=True)]  # fmt: skip
    assert len(part) > 500


def test_time_shift_moves_timestamps_only(two_directions: Network) -> None:
    plain = _day(two_directions, WEDNESDAY, start_s=8 * 3600.0, end_s=9 * 3600.0)
    shifted = _day(
        two_directions, WEDNESDAY, start_s=8 * 3600.0, end_s=9 * 3600.0, time_shift_s=7 * 86400.0
    )
    assert len(plain) == len(shifted)
    for a, b in zip(plain, shifted, strict=True):
        assert b.ping.timestamp - a.ping.timestamp == pytest.approx(7 * 86400.0)
        assert b.sent_at - a.sent_at == pytest.approx(7 * 86400.0)
        assert (b.ping.lat, b.truth.delay_s, b.truth.trip_id) == (
            a.ping.lat,
            a.truth.delay_s,
            a.truth.trip_id,
        )


def test_route_filter_and_vehicle_cap(feed_dir: Path, two_directions: Network) -> None:
    network = load_network(feeds.variants_feed(feed_dir), use_cache=False)
    assert {p.truth.route_id for p in _day(network, WEDNESDAY, route_ids=["V"])} == {"V"}
    assert _day(network, WEDNESDAY, route_ids=["nope"]) == []
    capped = _day(two_directions, WEDNESDAY, max_vehicles=1)
    assert len({p.ping.vehicle_id for p in capped}) == 1


def test_whole_routes_draws_routes_whose_buses_all_fit() -> None:
    # The demo's choice: some routes run in full (their headways are the timetable's), the
    # others with no bus, rather than every route short of buses.
    from tracker.demo import BUNDLED_FEED

    network = load_network(BUNDLED_FEED)
    date = day.busiest_date(network)
    start_s, end_s = 8 * 3600.0, 9 * 3600.0

    def draw() -> list[str]:
        rng = np.random.default_rng(1)
        return day.whole_routes(network, rng, date, max_vehicles=300, start_s=start_s, end_s=end_s)

    routes = draw()
    every = day.plan_day(network, np.random.default_rng(1), date, start_s=start_s, end_s=end_s)
    chosen = day.plan_day(network, np.random.default_rng(1), date, start_s=start_s, end_s=end_s,
                          route_ids=routes)  # fmt: skip
    assert 250 <= len(chosen.chosen) <= 300 < len(every.chosen)
    picked = {network.route_index[r] for r in routes}
    served = {int(network.run_route[run]) for i in chosen.chosen for run in chosen.plans[i].runs}
    assert served == picked  # the Nairobi feed has no blocks: one route per bus
    assert 2 <= len(routes) < len(network.routes)
    assert routes == draw()
    # each drawn route has a trip on the road in the window's first hour, not only before it
    runs = network.runs
    active = network.active_runs(date)

    def runs_then(route_id: str) -> bool:
        of_route = active & (network.run_route == network.route_index[route_id])
        return bool(((runs.end_s >= start_s) & (runs.start_s <= start_s + 3600) & of_route).any())

    assert all(runs_then(r) for r in routes)
    # when no route fits whole, the smallest that runs: simulate keeps `max_vehicles` of it
    (small,) = day.whole_routes(network, np.random.default_rng(1), date, max_vehicles=5,
                                start_s=start_s, end_s=end_s)  # fmt: skip
    assert runs_then(small)


TRUTH = day.Truth(
    vehicle_id="v",
    timestamp=0.0,
    service_date="20260304",
    block_id="",
    trip_id="t",
    route_id="r",
    state=day.IN_SERVICE,
    lat=0.0,
    lon=0.0,
    shape_dist_m=0.0,
    speed_mps=0.0,
    delay_s=0.0,
    error_m=0.0,
    noisy=False,
    outlier=False,
    duplicate=False,
    out_of_order=False,
)


def test_buses_start_lazily() -> None:
    started: list[int] = []

    def source(i: int, sends: list[float]) -> Callable[[], Iterator[SimPing]]:
        def start() -> Iterator[SimPing]:
            started.append(i)
            for t in sends:
                ping = Ping(vehicle_id=f"v{i}", timestamp=t, lat=0.0, lon=0.0)
                yield SimPing(ping=ping, sent_at=t, truth=TRUTH)

        return start

    merged = day.merge_lazily(
        [0.0, 100.0, 5.0], [source(0, [1.0, 50.0]), source(1, [100.0]), source(2, [5.0, 6.0])]
    )
    assert next(merged).sent_at == 1.0
    assert started == [0]
    assert [p.sent_at for p in merged] == [5.0, 6.0, 50.0, 100.0]
    assert started == [0, 2, 1]


# --- GPS faults -------------------------------------------------------------------------------


def _straight_track(n: int, interval_s: float = 10.0) -> gps.Track:
    t = np.arange(n, dtype=np.float64) * interval_s
    speed = np.full(n, 8.0)
    return gps.Track(t, t * 8.0, np.zeros(n), speed, np.full(n, 90.0))


def test_noise_has_the_configured_sigma_and_correlation() -> None:
    rng = np.random.default_rng(1)
    noise = gps.correlated_noise(rng, 100_000, sigma_m=8.0, correlation_s=30.0, interval_s=10.0)
    assert np.std(noise) == pytest.approx(8.0, rel=0.05)
    lag1 = np.corrcoef(noise[:-1], noise[1:])[0, 1]
    assert lag1 == pytest.approx(math.exp(-10 / 30), abs=0.02)
    white = gps.correlated_noise(rng, 100_000, sigma_m=5.0, correlation_s=0.0, interval_s=10.0)
    assert np.std(white) == pytest.approx(5.0, rel=0.02)
    assert abs(np.corrcoef(white[:-1], white[1:])[0, 1]) < 0.02


def test_fault_rates_match_the_configuration() -> None:
    config = GpsConfig(
        noise_m=8.0,
        outlier_rate=0.02,
        dropout_rate=0.05,
        duplicate_rate=0.01,
        out_of_order_rate=0.01,
    )
    n = 200_000
    seen = gps.observe(np.random.default_rng(2), _straight_track(n), config, interval_s=10.0)
    originals = ~seen.duplicate
    assert 1 - originals.sum() / n == pytest.approx(0.05, rel=0.1)  # drop-outs
    assert seen.outlier[originals].mean() == pytest.approx(0.02, rel=0.1)
    assert seen.duplicate.sum() / originals.sum() == pytest.approx(0.01, rel=0.15)
    assert seen.delayed[originals].mean() == pytest.approx(0.01, rel=0.15)
    assert np.all(np.diff(seen.sent_s) >= 0)
    track = _straight_track(n)
    dx = seen.x_m - track.x_m[seen.row]
    dy = seen.y_m - track.y_m[seen.row]
    error = np.hypot(dx, dy)
    assert np.all((error[seen.outlier] > 60) & (error[seen.outlier] < 350))
    clean = ~seen.outlier
    assert np.std(dx[clean]) == pytest.approx(8.0, rel=0.05)
    assert np.std(dy[clean]) == pytest.approx(8.0, rel=0.05)


def test_drop_outs_include_multi_minute_gaps() -> None:
    config = GpsConfig(dropout_rate=0.05)
    n = 100_000
    kept = gps.kept_after_dropouts(np.random.default_rng(3), n, config, interval_s=10.0)
    lost_runs = [len(list(g)) for k, g in itertools.groupby(kept.tolist()) if not k]
    assert max(lost_runs) >= 25  # ≥ 4 min at one fix every 10 s
    assert Counter(lost_runs)[1] > len(lost_runs) / 2  # most are single fixes


def test_bearing_follows_travel_and_is_sometimes_missing() -> None:
    seen = gps.observe(
        np.random.default_rng(4), _straight_track(20_000), GpsConfig(), interval_s=10
    )
    bearings = seen.bearing_deg[~np.isnan(seen.bearing_deg)]
    assert np.median(np.abs(bearings - 90.0)) < 10
    assert np.isnan(seen.bearing_deg).mean() == pytest.approx(0.05, abs=0.01)
    standing = replace(_straight_track(20_000), speed_mps=np.zeros(20_000))
    seen = gps.observe(np.random.default_rng(4), standing, GpsConfig(), interval_s=10)
    assert np.isnan(seen.bearing_deg).mean() == pytest.approx(0.5, abs=0.02)


def test_simulated_noise_and_rates_over_a_day(two_directions: Network) -> None:
    config = SimConfig(gps=GpsConfig(noise_m=12.0, noise_correlation_s=0.0, outlier_rate=0.03))
    pings = [p for p in _day(two_directions, WEDNESDAY, config=config) if not p.truth.duplicate]
    outliers = np.array([p.truth.outlier for p in pings])
    assert outliers.mean() == pytest.approx(0.03, abs=0.01)
    errors = np.array([p.truth.error_m for p in pings])[~outliers]
    # The distance from a 2-D Gaussian's centre has mean σ·√(π/2).
    assert errors.mean() == pytest.approx(12.0 * math.sqrt(math.pi / 2), rel=0.07)


def test_bad_gps_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="outlier_rate"):
        GpsConfig(outlier_rate=1.5)
    with pytest.raises(ValueError, match="noise_m"):
        GpsConfig(noise_m=-1)
    with pytest.raises(ValueError, match="interval_s"):
        SimConfig(interval_s=0)


# --- dates ------------------------------------------------------------------------------------


def test_dates_for_now(two_directions: Network) -> None:
    assert day.covered_date(two_directions, WEDNESDAY) == WEDNESDAY
    # 2027 is past the calendar: the nearest Wednesday with service is the last one of 2026.
    assert day.covered_date(two_directions, dt.date(2027, 1, 6)) == dt.date(2026, 12, 30)
    with pytest.raises(ValueError, match="Sunday"):
        day.covered_date(two_directions, dt.date(2026, 3, 8))
    shift = day.time_shift_s(two_directions, dt.date(2026, 12, 30), dt.date(2027, 1, 6))
    assert shift == 7 * 86400
    assert day.busiest_date(two_directions) == dt.date(2026, 1, 1)


# --- pacing and replay ------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def test_pacer_maps_stream_time_onto_the_clock() -> None:
    clock = FakeClock()
    pacer = Pacer(60.0, clock=clock, wait=clock.wait)
    for stamp in (5000.0, 5600.0, 5300.0, 6200.0):  # one late stamp: due at once
        pacer.wait_for(stamp)
    assert clock.waits == pytest.approx([10.0, 10.0])
    unpaced = Pacer(0.0, clock=clock, wait=clock.wait)
    unpaced.wait_for(0.0)
    unpaced.wait_for(1e9)
    assert len(clock.waits) == 2


def test_pacer_with_an_anchor_waits_from_the_start() -> None:
    clock = FakeClock()
    pacer = Pacer(2.0, anchor_s=100.0, clock=clock, wait=clock.wait)
    pacer.wait_for(110.0)
    assert clock.waits == [5.0]


def test_pacer_catches_up_to_its_anchor_then_keeps_time() -> None:
    # 20 minutes before the anchor played at 20x (a minute), then real time.
    clock = FakeClock()
    pacer = Pacer(1.0, anchor_s=2200.0, catch_up_speed=20.0, clock=clock, wait=clock.wait)
    pacer.wait_for(1000.0)  # the first item: due at once
    pacer.wait_for(1600.0)  # 600 s of stream at 20x: 30 s later
    pacer.wait_for(2200.0)  # the anchor: 60 s after the start
    pacer.wait_for(2210.0)  # then in real time
    assert clock.waits == pytest.approx([30.0, 30.0, 10.0])
    with pytest.raises(ValueError, match="catch_up_speed"):
        Pacer(1.0, catch_up_speed=0.0)


def test_pacer_with_a_due_time_plays_the_catch_up_to_end_then() -> None:
    # The anchor is due 70 s from now on the wall clock: the catch-up (20 min at 20x) starts
    # in 10 s, so that a tracker whose clock runs as fast sees each ping on time.
    clock = FakeClock()
    pacer = Pacer(1.0, anchor_s=2200.0, anchor_due_at_s=5070.0, catch_up_speed=20.0,
                  clock=clock, wait=clock.wait, wall_clock=lambda: 5000.0)  # fmt: skip
    pacer.wait_for(1000.0)  # due in 10 s
    pacer.wait_for(2200.0)  # due at the given time
    pacer.wait_for(2205.0)
    assert clock.waits == pytest.approx([10.0, 60.0, 5.0])
    with pytest.raises(ValueError, match="anchor_s"):
        Pacer(1.0, anchor_due_at_s=5070.0)


def test_recorded_pings_shift_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        {"vehicle_id": "a", "timestamp": 100, "lat": 1.0, "lon": 2.0},
        {"vehicle_id": "a", "timestamp": 130, "lat": 1.0, "lon": 2.0},
        "not json",
        {"vehicle_id": "b", "timestamp": 110, "lat": 1.0, "lon": 2.0},
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    counts = ReplayCounts()
    pings = list(
        itertools.islice(recorded_pings(path, loop=True, start_at_s=1000.0, counts=counts), 7)
    )
    assert [p.timestamp for p in pings] == [1000, 1030, 1010, 1031, 1061, 1041, 1062]
    assert counts.bad_records == 2
    assert counts.passes == 3
    assert [p.timestamp for p in recorded_pings(path)] == [100, 130, 110]


# --- broker URLs ------------------------------------------------------------------------------


def test_broker_urls() -> None:
    assert str(parse_broker_url("mqtt://127.0.0.1:1883")) == "mqtt://127.0.0.1:1883"
    tls = parse_broker_url("mqtts://user:p%40ss@broker.example")
    assert (tls.port, tls.tls, tls.username, tls.password) == (8883, True, "user", "p@ss")
    for bad in ("http://x", "127.0.0.1:1883", "mqtt://", "mqtt://h:99999", "mqtt://h/x"):
        with pytest.raises(BrokerError, match="mqtt://host"):
            parse_broker_url(bad)


# --- the command line without a broker --------------------------------------------------------


def test_run_to_files_writes_pings_and_truth_one_to_one(feed_dir: Path, tmp_path: Path) -> None:
    feed = feeds.two_directions_feed(feed_dir)
    out, truth = tmp_path / "p.jsonl", tmp_path / "t.csv"
    args = ["run", "--gtfs", str(feed), "--date", "20260304", "--start", "07:00"]
    args += ["--duration-min", "90", "--out", str(out), "--truth", str(truth), "-q"]
    assert main(args) == 0
    pings = [p for p in read_pings(out) if isinstance(p, Ping)]
    with truth.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == TRUTH_COLUMNS
    assert len(pings) == len(rows) > 500
    for ping, row in zip(pings, rows, strict=True):
        assert ping.vehicle_id == row["vehicle_id"]
        assert ping.timestamp == pytest.approx(float(row["timestamp"]), abs=1e-3)
        assert (ping.lat, ping.lon) == (float(row["ping_lat"]), float(row["ping_lon"]))
    origin = dt.datetime(2026, 3, 4, 7, tzinfo=dt.UTC).timestamp()  # Casablanca is UTC+0 then
    assert origin <= min(p.timestamp for p in pings) < origin + 60
    assert max(p.timestamp for p in pings) < origin + 90 * 60

    again = tmp_path / "again.jsonl"
    args[args.index(str(out))] = str(again)
    assert main(args) == 0
    assert again.read_bytes() == out.read_bytes()


def test_run_errors_are_one_line_and_exit_2(
    feed_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = str(feeds.two_directions_feed(feed_dir))
    cases = {
        "no such file": ["run", "--gtfs", str(tmp_path / "nope.zip"), "--out", "x.jsonl"],
        "mqtt://host": ["run", "--gtfs", feed, "--broker", "localhost:1883"],
        "leave out --date": ["run", "--gtfs", feed, "--now", "--date", "20260304"],
        "no route 'Z'": ["run", "--gtfs", feed, "--routes", "Z", "--out", "x.jsonl"],
        "no trip runs on 2026-03-08": ["run", "--gtfs", feed, "--date", "20260308"],
        "Connection refused": ["run", "--gtfs", feed, "--broker", "mqtt://127.0.0.1:9"],
    }
    for expected, argv in cases.items():
        assert main([*argv, "-q"]) == 2, expected
        err = capsys.readouterr().err
        message = [line for line in err.splitlines() if line.startswith("simulator: error:")]
        assert len(message) == 1, err
        assert expected in message[0], err
    assert not (tmp_path / "x.jsonl").exists()


def test_core_modules_read_no_clock_and_do_no_io() -> None:
    forbidden = {"time", "os", "pathlib", "socket", "paho", "asyncio", "tqdm", "io"}
    for name in ("day.py", "gps.py"):
        tree = ast.parse((SIMULATOR / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                assert not {m.split(".")[0] for m in modules} & forbidden, (name, modules)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "open", name
            if isinstance(node, ast.Attribute):
                assert node.attr not in {"now", "today", "utcnow", "time"}, (name, node.attr)


# --- operations scenarios ----------------------------------------------------------------------

SCENARIO_START_S, SCENARIO_END_S = 6.5 * 3600, 10 * 3600  # route C of the corridor feed


@pytest.fixture(scope="module")
def corridor(feed_dir: Path) -> Network:
    return load_network(corridor_feed(feed_dir), use_cache=False)


def _scenario_day(
    network: Network, kinds: list[str], seed: int = 1, gps: GpsConfig = CLEAN
) -> scenarios.SimulatedDay:
    return scenarios.simulate_day(
        network, np.random.default_rng(seed), WEDNESDAY, scenarios=kinds,
        config=SimConfig(gps=gps), start_s=SCENARIO_START_S, end_s=SCENARIO_END_S,
        route_ids=["C"],
    )  # fmt: skip


def _plain_day(network: Network, gps: GpsConfig) -> list[SimPing]:
    return _day(network, WEDNESDAY, start_s=SCENARIO_START_S, end_s=SCENARIO_END_S,
                route_ids=["C"], config=SimConfig(gps=gps))  # fmt: skip


def _truth_of(day: scenarios.SimulatedDay, kind: str) -> scenarios.ScenarioTruth:
    (truth,) = [t for t in day.truth if t.kind == kind]
    return truth


def test_a_day_without_scenarios_is_the_plain_day(corridor: Network) -> None:
    plain = _plain_day(corridor, GpsConfig())
    none = _scenario_day(corridor, [], gps=GpsConfig())
    assert none.truth == ()
    assert list(none.pings) == plain


def test_scenarios_change_only_their_own_buses(corridor: Network) -> None:
    plain = _plain_day(corridor, CLEAN)
    made = _scenario_day(corridor, list(scenarios.KINDS))
    changed = {t.vehicle_id for t in made.truth if t.kind in scenarios.KINDS}
    assert len(changed) == 4  # each scenario on a bus of its own
    with_scenarios = list(made.pings)

    def by_bus(pings: list[SimPing]) -> dict[str, list[SimPing]]:
        out: dict[str, list[SimPing]] = defaultdict(list)
        for p in pings:
            out[p.ping.vehicle_id].append(p)
        return out

    before, after = by_bus(plain), by_bus(with_scenarios)
    assert set(before) - set(after) == {_truth_of(made, scenarios.CANCELLED_TRIP).vehicle_id}
    same = [v for v in before if v not in changed]
    assert len(same) > 15
    assert all(before[v] == after[v] for v in same)
    assert all(before[v] != after.get(v) for v in changed)


def test_scenarios_are_the_same_with_the_same_seed(corridor: Network) -> None:
    kinds = list(scenarios.KINDS)
    a, b, c = (_scenario_day(corridor, kinds, seed) for seed in (3, 3, 4))
    assert a.truth == b.truth
    assert list(a.pings) == list(b.pings)
    assert {t.trip_id for t in a.truth if t.kind in kinds} != {
        t.trip_id for t in c.truth if t.kind in kinds
    }


def test_the_late_bus_leaves_late_and_then_follows_the_bus_ahead(corridor: Network) -> None:
    made = _scenario_day(corridor, [scenarios.LATE_CATCH_UP])
    case = _truth_of(made, scenarios.LATE_CATCH_UP)
    assert case.leader_vehicle_id is not None
    assert case.follower_vehicle_id is not None
    # A quarter of the 6 min headway late (or more, if it was not there yet).
    assert case.late_s is not None
    assert 90 <= case.late_s < 180
    pings = list(made.pings)
    track: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in pings:
        if p.truth.state == day.IN_SERVICE:
            track[p.ping.vehicle_id].append((p.ping.timestamp, p.truth.shape_dist_m))
    late, ahead = track[case.vehicle_id], track[case.leader_vehicle_id]
    ahead_t, ahead_m = zip(*ahead, strict=True)
    follow_s = scenarios.ScenarioConfig().follow_s
    # Never closer than 30 s behind the bus ahead, and it gets there: a bunch. (The bus ahead's
    # positions are interpolated between its fixes 10 s apart: within 20 m.)
    behind_by = [float(np.interp(t - follow_s, ahead_t, ahead_m)) - m for t, m in late]
    assert min(behind_by) > -20.0
    assert sum(abs(b) < 20.0 for b in behind_by) > 20
    (bunch,) = [t for t in made.truth if t.kind == scenarios.BUNCHING and t.scenario]
    assert (bunch.leader_vehicle_id, bunch.vehicle_id) == (case.leader_vehicle_id, case.vehicle_id)
    assert bunch.gap_ratio == pytest.approx(follow_s / 360, abs=0.01)
    gaps = [t for t in made.truth if t.kind == scenarios.GAPPING and t.scenario]
    assert [(t.leader_vehicle_id, t.vehicle_id) for t in gaps] == [
        (case.vehicle_id, case.follower_vehicle_id)
    ]
    assert gaps[0].gap_ratio is not None
    assert gaps[0].gap_ratio > 1.5


def test_the_silent_bus_sends_nothing_from_mid_trip_to_the_end_of_it(corridor: Network) -> None:
    made = _scenario_day(corridor, [scenarios.STOP_REPORTING])
    case = _truth_of(made, scenarios.STOP_REPORTING)
    mine = [p for p in made.pings if p.ping.vehicle_id == case.vehicle_id]
    assert not [p for p in mine if case.start_s <= p.ping.timestamp < case.end_s]
    before = [
        p for p in mine if p.ping.timestamp < case.start_s and p.truth.trip_id == case.trip_id
    ]
    assert before[-1].truth.state == day.IN_SERVICE
    assert case.shape_dist_m is not None
    assert 1000 < case.shape_dist_m < 5000  # mid-trip
    assert before[-1].truth.shape_dist_m == pytest.approx(case.shape_dist_m, abs=120)
    assert case.leader_vehicle_id is not None  # the buses around it
    assert case.follower_vehicle_id is not None


def test_the_cancelled_trip_is_not_run(corridor: Network) -> None:
    made = _scenario_day(corridor, [scenarios.CANCELLED_TRIP])
    case = _truth_of(made, scenarios.CANCELLED_TRIP)
    pings = list(made.pings)
    assert not [p for p in pings if p.truth.trip_id == case.trip_id]
    assert not [p for p in pings if p.ping.vehicle_id == case.vehicle_id]  # its only trip
    run = corridor.runs_of_trip[corridor.trip_index[case.trip_id]][0]
    origin = corridor.day_origin(WEDNESDAY)
    assert case.start_s == pytest.approx(origin + float(corridor.runs.start_s[run]))
    assert case.end_s == pytest.approx(origin + float(corridor.runs.end_s[run]))


def test_the_detour_runs_along_a_parallel_street_and_rejoins(corridor: Network) -> None:
    made = _scenario_day(corridor, [scenarios.DETOUR])
    case = _truth_of(made, scenarios.DETOUR)
    assert case.left_shape_dist_m is not None
    assert case.rejoined_shape_dist_m is not None
    assert case.offset_m is not None
    assert 150 <= case.offset_m <= 300
    assert 800 <= case.rejoined_shape_dist_m - case.left_shape_dist_m <= 1200
    shape = _shape_of(corridor, case.trip_id)
    offsets: list[tuple[float, float]] = []  # (time, distance from the shape)
    for p in made.pings:
        if p.ping.vehicle_id == case.vehicle_id and p.truth.trip_id == case.trip_id:
            x, y = _xy(corridor, p.ping.lat, p.ping.lon)
            offsets.append((p.ping.timestamp, corridor.locate_on_shape(shape, x, y)[1]))
    during = [o for t, o in offsets if case.start_s + 60 < t < case.end_s - 60]
    outside = [o for t, o in offsets if not case.start_s - 1 <= t <= case.end_s + 1]
    assert during
    assert max(outside) < 0.5  # on the shape (clean GPS)
    assert min(during) > 100
    assert float(np.median(during)) == pytest.approx(case.offset_m, abs=5)
    x0, y0 = corridor.point_at(shape, case.left_shape_dist_m)
    lat, lon = corridor.unproject(np.array([x0]), np.array([y0]))
    assert (case.left_lat, case.left_lon) == pytest.approx((lat[0], lon[0]), abs=1e-6)


def test_a_scenario_that_cannot_happen_says_why(two_directions: Network) -> None:
    # One bus at a time in each direction: no bus has one ahead and one behind on the road.
    with pytest.raises(scenarios.ScenarioError, match="late-catch-up needs three"):
        scenarios.simulate_day(
            two_directions, np.random.default_rng(1), WEDNESDAY,
            scenarios=[scenarios.LATE_CATCH_UP],
        )  # fmt: skip
    with pytest.raises(ValueError, match="unknown scenario 'ghost'"):
        scenarios.parse_kinds("detour,ghost")
    assert scenarios.parse_kinds(" detour, detour ,") == ["detour", "detour"]


def test_run_with_scenarios_writes_their_truth(feed_dir: Path, tmp_path: Path) -> None:
    feed = corridor_feed(feed_dir)
    out, truth = tmp_path / "p.jsonl", tmp_path / "scenarios.jsonl"
    args = ["run", "--gtfs", str(feed), "--date", "20260304", "--start", "06:30", "--routes", "C"]
    args += ["--duration-min", "210", "--out", str(out), "-q", "--scenario-truth", str(truth)]
    args += ["--scenarios", "late-catch-up,stop-reporting,cancelled-trip,detour"]
    assert main(args) == 0
    rows = [json.loads(line) for line in truth.read_text().splitlines()]
    kinds = Counter(row["kind"] for row in rows)
    assert {k: kinds[k] for k in scenarios.KINDS} == dict.fromkeys(scenarios.KINDS, 1)
    assert kinds["bunching"] >= 1
    assert kinds["gapping"] >= 1
    for row in rows:
        assert {"kind", "vehicle_id", "trip_id", "start_s", "end_s"} <= set(row)
        assert row["start_s"] <= row["end_s"]
    (detour,) = [row for row in rows if row["kind"] == "detour"]
    assert {"left_lat", "left_lon", "rejoined_lat", "rejoined_lon"} <= set(detour)
    (silent,) = [row for row in rows if row["kind"] == "stop-reporting"]
    pings = [p for p in read_pings(out) if isinstance(p, Ping)]
    assert not [p for p in pings if p.vehicle_id == silent["vehicle_id"]
                and silent["start_s"] <= p.timestamp < silent["end_s"]]  # fmt: skip
    again = tmp_path / "again.jsonl"
    args[args.index(str(truth))] = str(again)
    assert main(args) == 0
    assert again.read_bytes() == truth.read_bytes()
    bad = ["run", "--gtfs", str(feeds.loop_feed(feed_dir)), "--out", str(out), "-q"]
    assert main([*bad, "--scenarios", "late-catch-up"]) == 2


def test_the_scenarios_module_reads_no_clock_and_does_no_io() -> None:
    tree = ast.parse((SIMULATOR / "scenarios.py").read_text())
    forbidden = {"time", "os", "pathlib", "socket", "paho", "asyncio", "tqdm", "io", "json"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            assert not {m.split(".")[0] for m in names} & forbidden, names
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "open"
