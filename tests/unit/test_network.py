"""Tests for tracker.gtfs.load and tracker.core.network on the tiny hand-made feeds of tests.feeds.

Expected values come from the feeds' docstrings. Geometry goes through a UTM projection, so
distances come out a few metres (0.1–0.3 %) off their nominal values: they are compared with
``abs=15`` metres or ``rel=0.01``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import pickle
import zipfile
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from tests import feeds
from tracker.core.network import (
    NO_INDEX,
    FloatArray,
    Network,
    Shape,
    SnapCandidates,
    SortedGroups,
    angle_diff_deg,
    schedule_at,
)
from tracker.errors import FeedError
from tracker.gtfs import load
from tracker.gtfs.load import build_network, feed_hash, load_network

UTC = dt.UTC
NEAR_M = 15.0  # tolerance on distances along a shape (projection scale error)


# --- helpers -----------------------------------------------------------------------------


def _xy(
    network: Network, east_m: float, north_m: float, origin: tuple[float, float] = feeds.CASABLANCA
) -> tuple[FloatArray, FloatArray]:
    """Projected coordinates of the point (east_m, north_m) of a feed's local frame."""
    lat, lon = feeds.offset_latlon(*origin, east_m, north_m)
    return network.project(np.array([lat]), np.array([lon]))


def _snap(
    network: Network, east_m: float, north_m: float, radius_m: float = 30.0
) -> SnapCandidates:
    x, y = _xy(network, east_m, north_m)
    return network.snap(x, y, radius_m=radius_m)


def _run(network: Network, trip_id: str) -> int:
    """The only run of a plain (not frequency-based) trip."""
    runs = network.runs_of_trip[network.trip_index[trip_id]]
    assert len(runs) == 1, f"{trip_id} has {len(runs)} runs"
    return runs[0]


def _trip_id_of_run(network: Network, run: int) -> str:
    return network.trips[int(network.runs.trip_idx[run])].trip_id


def _shape_id(network: Network, shape_idx: int) -> str:
    return network.shapes[shape_idx].shape_id


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# --- networks (read-only, built once per module) ------------------------------------------


# --- loop ----------------------------------------------------------------------------------


def test_loop_stop_served_twice_gets_start_and_end_distance(loop: Network) -> None:
    assert len(loop.patterns) == 1
    pattern = loop.patterns[0]
    assert pattern.stop_ids == ("L1", "L2", "L3", "L4", "L1")  # stop_sequence 2..6
    assert _shape_id(loop, pattern.shape_idx) == "loop"
    assert loop.shapes[pattern.shape_idx].length_m == pytest.approx(3200, rel=0.01)
    dist = pattern.stop_dist_m
    assert dist[0] == pytest.approx(0, abs=NEAR_M)
    assert dist[-1] == pytest.approx(3200, abs=NEAR_M)
    assert dist[-1] == pytest.approx(loop.shapes[pattern.shape_idx].length_m, abs=0.01)
    assert list(dist) == pytest.approx([0, 1300, 2100, 2900, 3200], abs=NEAR_M)
    assert np.all(np.diff(dist) > 0)


def test_loop_trips_and_times(loop: Network) -> None:
    starts = ["0600", "0615", "0630", "0645", "0700", "0715", "0730", "0745", "0800"]
    assert [t.trip_id for t in loop.trips] == [f"L_{hhmm}" for hhmm in starts]
    assert all(t.direction_id == -1 for t in loop.trips)  # the feed gives none
    run = _run(loop, "L_0615")
    assert loop.runs.start_s[run] == 6 * 3600 + 15 * 60
    assert loop.runs.end_s[run] == 6 * 3600 + 15 * 60 + 9 * 60 + 30


def test_loop_start_corner_snaps_to_both_passes(loop: Network) -> None:
    snapped = _snap(loop, 0.0, 0.0)
    assert len(snapped.point) == 2
    assert [_shape_id(loop, int(s)) for s in snapped.shape_idx] == ["loop", "loop"]
    assert sorted(snapped.along_m.tolist()) == pytest.approx([0, 3200], abs=NEAR_M)
    assert snapped.offset_m.tolist() == pytest.approx([0, 0], abs=1.0)


# --- variants ------------------------------------------------------------------------------


def test_variants_have_two_shapes_and_two_patterns(variants: Network) -> None:
    assert sorted(s.shape_id for s in variants.shapes) == ["V_branch", "V_main"]
    assert len(variants.patterns) == 2
    by_shape = {_shape_id(variants, p.shape_idx): p for p in variants.patterns}
    assert by_shape["V_main"].stop_ids == ("V1", "V2", "V3", "VM4", "VM5")
    assert by_shape["V_branch"].stop_ids == ("V1", "V2", "V3", "VB4", "VB5")
    for pattern in by_shape.values():
        assert list(pattern.stop_dist_m) == pytest.approx([0, 1000, 2000, 2500, 3000], abs=NEAR_M)
    assert all(t.direction_id == 0 for t in variants.trips)


def test_variants_runs_alternate(variants: Network) -> None:
    order = np.argsort(variants.runs.start_s, kind="stable")
    trip_ids = [_trip_id_of_run(variants, int(run)) for run in order]
    assert len(trip_ids) == 13
    assert trip_ids[:3] == ["V_main_0700", "V_branch_0710", "V_main_0720"]
    assert trip_ids[-1] == "V_main_0900"
    shapes = [
        _shape_id(variants, variants.trips[variants.trip_index[t]].shape_idx) for t in trip_ids
    ]
    assert shapes == ["V_main", "V_branch"] * 6 + ["V_main"]
    assert variants.runs.start_s[order].tolist() == [7 * 3600 + 600 * i for i in range(13)]


def test_variants_shared_street_snaps_to_both_shapes_with_same_along(variants: Network) -> None:
    snapped = _snap(variants, 1500.0, 0.0)
    shapes = sorted(_shape_id(variants, int(s)) for s in snapped.shape_idx)
    assert shapes == ["V_branch", "V_main"]
    along = snapped.along_m.tolist()
    assert along[0] == pytest.approx(along[1], abs=0.01)
    assert along[0] == pytest.approx(1500, abs=NEAR_M)


def test_variants_branch_point_snaps_only_to_branch(variants: Network) -> None:
    snapped = _snap(variants, 2000.0, 600.0)
    assert [_shape_id(variants, int(s)) for s in snapped.shape_idx] == ["V_branch"]
    assert snapped.along_m[0] == pytest.approx(2600, abs=NEAR_M)


# --- two directions and blocks -------------------------------------------------------------


def test_two_directions_direction_ids(two_directions: Network) -> None:
    assert len(two_directions.trips) == 42
    for trip in two_directions.trips:
        expected = 0 if trip.trip_id.startswith("B_N_") else 1
        assert trip.direction_id == expected, trip.trip_id
        assert _shape_id(two_directions, trip.shape_idx) == ("B_north", "B_south")[expected]


def test_two_directions_blocks_chain_in_start_order(two_directions: Network) -> None:
    net = two_directions
    nxt = net.runs.next_in_block
    assert nxt[_run(net, "B_N_0600")] == _run(net, "B_S_0612")
    assert nxt[_run(net, "B_S_0612")] == _run(net, "B_N_0624")
    assert nxt[_run(net, "B_S_0600")] == _run(net, "B_N_0612")
    assert nxt[_run(net, "B_N_0612")] == _run(net, "B_S_0624")
    # The 10:00 slot is the 21st (even): blk1 ends northbound and blk2 southbound.
    assert nxt[_run(net, "B_N_1000")] == NO_INDEX
    assert nxt[_run(net, "B_S_1000")] == NO_INDEX
    assert int(np.sum(nxt == NO_INDEX)) == 2

    slots = [f"{(360 + 12 * i) // 60:02d}{(360 + 12 * i) % 60:02d}" for i in range(21)]
    blk1 = [f"B_{'N' if i % 2 == 0 else 'S'}_{slot}" for i, slot in enumerate(slots)]
    chain, run = [], _run(net, "B_N_0600")
    while run != NO_INDEX:
        chain.append(_trip_id_of_run(net, run))
        assert net.trips[int(net.runs.trip_idx[run])].block_id == "blk1"
        run = int(nxt[run])
    assert chain == blk1


def test_trips_with_a_blank_block_id_are_in_no_block(tmp_path: Path) -> None:
    source = feeds.two_directions_feed(tmp_path)
    blank = {"B_N_0600", "B_S_0600"}
    feed = tmp_path / "blank_blocks.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(feed, "w") as zout:
        for name in zin.namelist():
            text = zin.read(name).decode()
            if name == "trips.txt":
                lines = text.splitlines()
                header = lines[0].split(",")
                rows = [line.split(",") for line in lines[1:]]
                for cells in rows:
                    if cells[header.index("trip_id")] in blank:
                        cells[header.index("block_id")] = ""
                text = "\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n"
            zout.writestr(name, text)
    net = build_network(feed)
    for trip_id in blank:
        run = _run(net, trip_id)
        assert net.trips[int(net.runs.trip_idx[run])].block_id == ""
        assert net.runs.next_in_block[run] == NO_INDEX
    # The other trips of the blocks still chain.
    assert net.runs.next_in_block[_run(net, "B_S_0612")] == _run(net, "B_N_0624")


def test_two_directions_headings_on_the_same_street(two_directions: Network) -> None:
    snapped = _snap(two_directions, 0.0, 1500.0)
    heading = {
        _shape_id(two_directions, int(s)): float(h)
        for s, h in zip(snapped.shape_idx, snapped.heading_deg, strict=True)
    }
    assert sorted(heading) == ["B_north", "B_south"]
    assert angle_diff_deg(heading["B_north"], 0.0) < 2.0
    assert angle_diff_deg(heading["B_south"], 180.0) < 2.0
    along = {
        _shape_id(two_directions, int(s)): float(a)
        for s, a in zip(snapped.shape_idx, snapped.along_m, strict=True)
    }
    assert along["B_north"] == pytest.approx(1500, abs=NEAR_M)
    assert along["B_south"] == pytest.approx(1500, abs=NEAR_M)


# --- times past midnight, time zones -------------------------------------------------------


def test_overnight_times_past_midnight(overnight: Network) -> None:
    run = _run(overnight, "N_2330")
    assert overnight.runs.start_s[run] == 23.5 * 3600
    assert overnight.runs.end_s[run] == 25 * 3600 + 10 * 60
    after = _run(overnight, "N_2420")
    assert overnight.runs.start_s[after] == 24 * 3600 + 20 * 60
    assert overnight.runs.end_s[after] == 25 * 3600
    pattern = overnight.patterns[0]
    assert list(pattern.stop_dist_m) == pytest.approx(
        [0, 2000, 4000, 6000, 8000, 10000], rel=0.01, abs=1.0
    )


def test_overnight_service_from_calendar_dates_only(overnight: Network) -> None:
    night = overnight.service_ids.index("NIGHT")
    assert overnight.services_by_date == {"20260320": frozenset({night})}
    assert overnight.active_runs(dt.date(2026, 3, 20)).all()
    assert not overnight.active_runs(dt.date(2026, 3, 21)).any()


def test_overnight_day_origin_is_local_midnight(overnight: Network) -> None:
    origin = overnight.day_origin(dt.date(2026, 3, 20))
    midnight = dt.datetime(2026, 3, 20, tzinfo=ZoneInfo("Africa/Casablanca")).timestamp()
    assert origin == midnight
    assert origin == _utc(2026, 3, 20)  # Casablanca is UTC+0 during Ramadan 2026
    assert origin + overnight.runs.end_s[_run(overnight, "N_2330")] == _utc(2026, 3, 21, 1, 10)


def test_dst_day_origin_is_noon_minus_12_hours(dst: Network) -> None:
    assert dst.timezone == "America/New_York"
    origin = dst.day_origin(dt.date(2026, 3, 8))
    noon = dt.datetime(2026, 3, 8, 12, tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert origin == noon - 43200
    assert origin == _utc(2026, 3, 8, 4)  # 23:00 EST on 2026-03-07, not local midnight
    assert origin != dt.datetime(2026, 3, 8, tzinfo=ZoneInfo("America/New_York")).timestamp()


def test_dst_scheduled_departures(dst: Network) -> None:
    origin = dst.day_origin(dt.date(2026, 3, 8))
    assert origin + dst.runs.start_s[_run(dst, "D_1200")] == _utc(2026, 3, 8, 16)  # 12:00 EDT
    assert origin + dst.runs.start_s[_run(dst, "D_0030")] == _utc(2026, 3, 8, 4, 30)
    d_0130 = _run(dst, "D_0130")
    assert origin + dst.runs.start_s[d_0130] == _utc(2026, 3, 8, 5, 30)
    assert origin + dst.runs.end_s[d_0130] == _utc(2026, 3, 8, 7, 30)


def test_casablanca_ramadan_departures(ramadan: Network) -> None:
    run = _run(ramadan, "R_0800")
    start = ramadan.runs.start_s[run]
    assert start == 8 * 3600
    ramadan_day, normal_day = dt.date(2026, 3, 4), dt.date(2026, 4, 15)
    assert ramadan.day_origin(ramadan_day) + start == _utc(2026, 3, 4, 8)  # UTC+0
    assert ramadan.day_origin(normal_day) + start == _utc(2026, 4, 15, 7)  # UTC+1
    assert ramadan.active_runs(ramadan_day)[run]
    assert ramadan.active_runs(normal_day)[run]
    assert not ramadan.active_runs(dt.date(2026, 3, 5))[run]


# --- frequencies, missing shapes -------------------------------------------------------------


def test_frequency_exact_times_expands_to_scheduled_runs(frequency: Network) -> None:
    assert [t.trip_id for t in frequency.trips] == ["F_exact", "F_headway"]
    runs = frequency.runs
    exact = [i for i in range(len(runs)) if _trip_id_of_run(frequency, i) == "F_exact"]
    assert len(exact) == 12  # 07:00 .. 08:50, end_time exclusive
    starts = sorted(runs.start_s[exact].tolist())
    assert starts == [7 * 3600 + 600 * k for k in range(12)]
    assert runs.exact_times[exact].all()
    assert runs.headway_s[exact].tolist() == [600.0] * 12
    # Each run keeps the template's running times: 11:30 from first departure to last arrival.
    assert (runs.end_s[exact] - runs.start_s[exact]).tolist() == [690.0] * 12


def test_frequency_headway_based_runs(frequency: Network) -> None:
    runs = frequency.runs
    headway = [i for i in range(len(runs)) if _trip_id_of_run(frequency, i) == "F_headway"]
    assert len(headway) == 12  # 09:00 .. 11:45
    assert sorted(runs.start_s[headway].tolist()) == [9 * 3600 + 900 * k for k in range(12)]
    assert not runs.exact_times[headway].any()
    assert runs.headway_s[headway].tolist() == [900.0] * 12
    assert len(runs) == 24


def test_frequency_runs_rows_match_pattern_times(frequency: Network) -> None:
    runs = frequency.runs
    for run in range(len(runs)):
        pattern = frequency.patterns[int(runs.pattern_idx[run])]
        row = int(runs.row[run])
        assert pattern.departure_s[row, 0] == runs.start_s[run]
        assert pattern.arrival_s[row, -1] == runs.end_s[run]
        assert run in pattern.runs.tolist()


def test_no_shape_trips_get_a_shape_through_their_stops(no_shape: Network) -> None:
    assert [t.trip_id for t in no_shape.trips] == ["S_0700", "S_0730", "S_0800"]
    shape_idx = {t.shape_idx for t in no_shape.trips}
    assert len(shape_idx) == 1
    shape = no_shape.shapes[shape_idx.pop()]
    assert shape.from_stops
    assert shape.length_m == pytest.approx(1800, rel=0.01)
    pattern = no_shape.patterns[0]
    assert list(pattern.stop_dist_m) == pytest.approx([0, 600, 1200, 1800], abs=NEAR_M)


# --- schedule at a distance ------------------------------------------------------------------


def test_schedule_at_interpolates_between_stops(variants: Network) -> None:
    run = _run(variants, "V_main_0700")
    pattern = variants.patterns[int(variants.runs.pattern_idx[run])]
    dist = pattern.stop_dist_m
    t0 = 7 * 3600
    # V1 departs +0:00, V2 arrives +2:30 and departs +3:00, V3 arrives +5:30.
    halfway = float(dist[0] + dist[1]) / 2
    assert variants.scheduled_time_s(run, halfway) == pytest.approx(t0 + 75)
    quarter = float(dist[1] + 0.25 * (dist[2] - dist[1]))
    assert variants.scheduled_time_s(run, quarter) == pytest.approx(t0 + 180 + 0.25 * 150)


def test_schedule_at_a_stop_gives_its_departure(variants: Network) -> None:
    run = _run(variants, "V_main_0700")
    pattern = variants.patterns[int(variants.runs.pattern_idx[run])]
    t0 = 7 * 3600
    assert variants.scheduled_time_s(run, float(pattern.stop_dist_m[1])) == t0 + 180  # not +150
    assert variants.scheduled_time_s(run, float(pattern.stop_dist_m[2])) == t0 + 360  # not +330


def test_schedule_at_before_first_and_after_last_stop(variants: Network) -> None:
    run = _run(variants, "V_main_0700")
    pattern = variants.patterns[int(variants.runs.pattern_idx[run])]
    t0 = 7 * 3600
    assert variants.scheduled_time_s(run, -50.0) == t0
    assert variants.scheduled_time_s(run, 0.0) == t0
    last = float(pattern.stop_dist_m[-1])
    assert variants.scheduled_time_s(run, last) == t0 + 540
    assert variants.scheduled_time_s(run, last + 500.0) == t0 + 540


def test_schedule_at_several_runs_of_one_pattern(variants: Network) -> None:
    first, second = _run(variants, "V_main_0700"), _run(variants, "V_main_0720")
    pattern = variants.patterns[int(variants.runs.pattern_idx[first])]
    assert int(variants.runs.pattern_idx[second]) == int(variants.runs.pattern_idx[first])
    rows = np.array([variants.runs.row[first], variants.runs.row[second]], dtype=np.int64)
    halfway = float(pattern.stop_dist_m[1]) / 2
    times = schedule_at(pattern, rows, halfway).tolist()
    assert times == pytest.approx([7 * 3600 + 75, 7 * 3600 + 1200 + 75])


# --- broken feeds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "file", "row", "fragment"),
    [
        ("missing_stops", "stops.txt", None, "missing"),
        ("bad_time", "stop_times.txt", 3, "'25:61:00'"),
        ("bad_coordinate", "stops.txt", 3, "'abc'"),
    ],
)
def test_broken_feed_raises_feed_error(
    tmp_path: Path, problem: str, file: str, row: int | None, fragment: str
) -> None:
    with pytest.raises(FeedError) as caught:
        build_network(feeds.broken_feed(tmp_path, problem))
    error = caught.value
    assert error.file == file
    if row is not None:
        assert error.row == row
    assert fragment in str(error)
    assert fragment in error.problem


def test_unknown_stop_skips_the_trip_with_a_warning(tmp_path: Path) -> None:
    network = build_network(feeds.broken_feed(tmp_path, "unknown_stop"))
    assert any("NOPE" in w for w in network.warnings)
    assert [t.trip_id for t in network.trips] == ["S_0730", "S_0800"]
    assert "S_0700" not in network.trip_index
    assert network.patterns[0].stop_ids == ("S1", "S2", "S3", "S4")


def test_missing_feed_path_raises_feed_error(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="no such file"):
        load_network(tmp_path / "nope.zip", cache_dir=tmp_path / "cache")


# --- cache -----------------------------------------------------------------------------------


def _no_build(path: Path, *, feed_hash: str = "") -> Network:
    raise AssertionError(f"build_network({path}) called; the cache should have been used")


def _assert_same_network(a: Network, b: Network) -> None:
    assert a.feed_hash == b.feed_hash
    assert len(a.runs) == len(b.runs)
    assert len(a.patterns) == len(b.patterns)
    for pa, pb in zip(a.patterns, b.patterns, strict=True):
        assert pa.stop_ids == pb.stop_ids
        assert np.array_equal(pa.stop_dist_m, pb.stop_dist_m)
        assert np.array_equal(pa.departure_s, pb.departure_s)
    assert a.trips == b.trips
    assert a.services_by_date == b.services_by_date


def test_cache_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = feeds.loop_feed(tmp_path)
    cache = tmp_path / "cache"
    first = load_network(path, cache_dir=cache)
    assert first.feed_hash == feed_hash(path)
    files = list(cache.glob("*.pickle"))
    assert len(files) == 1
    assert first.feed_hash[:24] in files[0].name

    monkeypatch.setattr(load, "build_network", _no_build)
    second = load_network(path, cache_dir=cache)
    assert second is not first
    _assert_same_network(first, second)
    # The lazily built lookups work on the unpickled network.
    snapped = _snap(second, 0.0, 0.0)
    assert sorted(snapped.along_m.tolist()) == pytest.approx([0, 3200], abs=NEAR_M)
    assert second.day_origin(dt.date(2026, 3, 4)) == _utc(2026, 3, 4)


def _garbage(data: bytes) -> bytes:
    return b"this is not a pickle"


def _empty(data: bytes) -> bytes:
    return b""


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _damaged_text(data: bytes) -> bytes:
    assert data.count(b"Africa/Casablanca") == 1
    return data.replace(b"Africa/Casablanca", b"\xff" * len(b"Africa/Casablanca"))


def _damaged_module_name(data: bytes) -> bytes:
    assert b"tracker.core.network" in data
    return data.replace(b"tracker.core.network", b"tracker.core.netwXrk")


@pytest.mark.parametrize(
    "corrupt",
    [
        _garbage,
        _empty,
        _truncated,
        _damaged_text,
        _damaged_module_name,
    ],
)
def test_corrupted_cache_is_ignored_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corrupt: Callable[[bytes], bytes]
) -> None:
    path = feeds.loop_feed(tmp_path)
    cache = tmp_path / "cache"
    good = load_network(path, cache_dir=cache)
    (cache_file,) = cache.glob("*.pickle")
    cache_file.write_bytes(corrupt(cache_file.read_bytes()))

    rebuilt = load_network(path, cache_dir=cache)
    _assert_same_network(good, rebuilt)
    # The rebuilt network replaced the damaged file.
    monkeypatch.setattr(load, "build_network", _no_build)
    _assert_same_network(good, load_network(path, cache_dir=cache))


def test_changed_feed_gets_a_new_cache_key(tmp_path: Path) -> None:
    path = feeds.loop_feed(tmp_path)
    cache = tmp_path / "cache"
    before = load_network(path, cache_dir=cache)

    # Same file name, one stop renamed: different bytes.
    with zipfile.ZipFile(path) as archive:
        tables = {name: archive.read(name) for name in archive.namelist()}
    tables["stops.txt"] = tables["stops.txt"].replace(b"Stop L2", b"Stop L2 bis")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in tables.items():
            archive.writestr(name, data)
    path.write_bytes(buffer.getvalue())

    assert feed_hash(path) != before.feed_hash
    after = load_network(path, cache_dir=cache)
    assert after.feed_hash == feed_hash(path)
    assert after.stops["L2"][0] == "Stop L2 bis"
    assert before.stops["L2"][0] == "Stop L2"
    assert len(list(cache.glob("*.pickle"))) == 2


def test_cache_pickle_holds_the_network(tmp_path: Path) -> None:
    path = feeds.loop_feed(tmp_path)
    cache = tmp_path / "cache"
    built = load_network(path, cache_dir=cache)
    (cache_file,) = cache.glob("*.pickle")
    with cache_file.open("rb") as handle:
        stored = pickle.load(handle)
    assert isinstance(stored, Network)
    _assert_same_network(built, stored)


# --- snapping agrees with measuring every segment ------------------------------------------


def _snap_by_brute_force(
    network: Network, x: float, y: float, radius_m: float
) -> list[tuple[int, float, float]]:
    """(shape_idx, along_m, offset_m) of the nearest spot of each pass, from every segment."""
    out = []
    for shape_idx, shape in enumerate(network.shapes):
        a, b = shape.xy_m[:-1], shape.xy_m[1:]
        d = b - a
        t = np.clip(((x - a[:, 0]) * d[:, 0] + (y - a[:, 1]) * d[:, 1]) / (d**2).sum(axis=1), 0, 1)
        offset = np.hypot(x - (a[:, 0] + t * d[:, 0]), y - (a[:, 1] + t * d[:, 1]))
        along = shape.dist_m[:-1] + t * np.hypot(d[:, 0], d[:, 1])
        near = np.flatnonzero(offset <= radius_m)
        # A pass ends where the near segments' spots jump by more than the search diameter.
        breaks = np.flatnonzero(np.diff(along[near]) > 2 * radius_m + 1) + 1
        for group in np.split(near, breaks):
            if len(group):
                best = group[np.argmin(offset[group])]
                out.append((shape_idx, float(along[best]), float(offset[best])))
    return sorted(out)


@pytest.mark.parametrize("radius_m", [30.0, 150.0, 600.0])
def test_snap_finds_every_pass_that_measuring_every_segment_finds(
    loop: Network, variants: Network, two_directions: Network, radius_m: float
) -> None:
    rng = np.random.default_rng(7)
    for network in (loop, variants, two_directions):
        xy = np.concatenate([s.xy_m for s in network.shapes])
        lo, hi = xy.min(axis=0) - 300, xy.max(axis=0) + 300
        x = rng.uniform(lo[0], hi[0], 200)
        y = rng.uniform(lo[1], hi[1], 200)
        snapped = network.snap(x, y, radius_m=radius_m)
        for i in range(len(x)):
            rows = np.flatnonzero(snapped.point == i)
            got = sorted(
                (int(snapped.shape_idx[r]), float(snapped.along_m[r]), float(snapped.offset_m[r]))
                for r in rows
            )
            expected = _snap_by_brute_force(network, float(x[i]), float(y[i]), radius_m)
            assert [g[0] for g in got] == [e[0] for e in expected]
            assert [g[1] for g in got] == pytest.approx([e[1] for e in expected], abs=1e-6)
            assert [g[2] for g in got] == pytest.approx([e[2] for e in expected], abs=1e-6)


def test_locate_on_shapes_gives_the_numbers_of_locate_on_shape(
    loop: Network, variants: Network
) -> None:
    rng = np.random.default_rng(3)
    for network in (loop, variants):
        n = 300
        shape_idx = rng.integers(0, len(network.shapes), n).tolist()
        xy = np.concatenate([s.xy_m for s in network.shapes])
        x = rng.uniform(xy[:, 0].min() - 200, xy[:, 0].max() + 200, n)
        y = rng.uniform(xy[:, 1].min() - 200, xy[:, 1].max() + 200, n)
        from_m = rng.uniform(-500, 4000, n).tolist()
        to_m = [f + w for f, w in zip(from_m, rng.uniform(-100, 3000, n).tolist(), strict=True)]
        along, offset = network.locate_on_shapes(shape_idx, x, y, from_m=from_m, to_m=to_m)
        for i in range(n):
            one = network.locate_on_shape(
                shape_idx[i], float(x[i]), float(y[i]), from_m=from_m[i], to_m=to_m[i]
            )
            assert (float(along[i]), float(offset[i])) == one


def test_points_at_gives_the_numbers_of_point_at(loop: Network, variants: Network) -> None:
    rng = np.random.default_rng(4)
    for network in (loop, variants):
        shape_idx = rng.integers(0, len(network.shapes), 200)
        along = rng.uniform(-100, 5000, 200)
        x, y = network.points_at(shape_idx, along)
        for s, a, px, py in zip(shape_idx.tolist(), along.tolist(), x, y, strict=True):
            assert network.point_at(s, a) == (px, py)


def test_point_at_gives_the_numbers_of_np_interp(loop: Network) -> None:
    """Pure-Python `point_at` is `np.interp` to the last bit: on shape points, just beside them,
    between them, outside the shape, at repeated distances (zero-length segments) and NaN."""
    rng = np.random.default_rng(5)
    shapes: list[Shape] = []
    for n in (1, 2, 3, 4, 5, 9, 40):
        for repeated in (False, True):
            steps = rng.uniform(0.0, 80.0, n - 1)
            if repeated:  # some points repeat the previous distance, some the position too
                steps[rng.random(n - 1) < 0.4] = 0.0
            dist = np.concatenate([[rng.uniform(0.0, 5.0)], steps]).cumsum()
            xy = rng.uniform(-1e4, 1e4, (n, 2)) + 3e5
            if repeated and n > 2:
                xy[2] = xy[1]
            shapes.append(Shape(f"s{len(shapes)}", xy, dist, from_stops=False))
    network = dataclasses.replace(loop, shapes=shapes)
    for s, shape in enumerate(shapes):
        d = shape.dist_m
        spots = np.concatenate([
            d, np.nextafter(d, -np.inf), np.nextafter(d, np.inf), (d[:-1] + d[1:]) / 2,
            rng.uniform(d[0] - 20.0, d[-1] + 20.0, 50), [-1e9, 1e9, np.nan],
        ])  # fmt: skip
        x = np.interp(spots, d, shape.xy_m[:, 0])
        y = np.interp(spots, d, shape.xy_m[:, 1])
        for a, px, py in zip(spots.tolist(), x.tolist(), y.tolist(), strict=True):
            assert repr(network.point_at(s, a)) == repr((px, py))
            one = (
                float(np.interp(a, d, shape.xy_m[:, 0])),
                float(np.interp(a, d, shape.xy_m[:, 1])),
            )
            assert repr(one) == repr((px, py))


def test_scheduled_time_matches_schedule_at(variants: Network) -> None:
    for run in range(len(variants.runs)):
        pattern = variants.patterns[int(variants.runs.pattern_idx[run])]
        row = np.array([int(variants.runs.row[run])])
        for along in np.linspace(-100, float(pattern.stop_dist_m[-1]) + 100, 57).tolist():
            expected = float(schedule_at(pattern, row, along)[0])
            assert variants.scheduled_time_s(run, along) == expected


def test_timetable_schedule_at_matches_schedule_at_to_the_bit(variants: Network) -> None:
    table = variants.timetable
    pattern_l: list[int] = []
    row_l: list[int] = []
    along_l: list[float] = []
    expected: list[float] = []
    for run in range(len(variants.runs)):
        p = int(variants.runs.pattern_idx[run])
        pattern = variants.patterns[p]
        row = int(variants.runs.row[run])
        stops = pattern.stop_dist_m.tolist()
        spots = np.linspace(-100, stops[-1] + 100, 57).tolist() + stops
        for along in spots:
            pattern_l.append(p)
            row_l.append(row)
            along_l.append(along)
            expected.append(float(schedule_at(pattern, np.array([row]), along)[0]))
    got = table.schedule_at(np.array(pattern_l), np.array(row_l), np.array(along_l))
    assert got.tolist() == expected
    # Per spot: each (pattern, distance) once, with the rows of the runs timed there.
    spot_of: dict[tuple[int, float], int] = {}
    spot = [
        spot_of.setdefault((p, along), len(spot_of))
        for p, along in zip(pattern_l, along_l, strict=True)
    ]
    per_spot = table.schedule_at(
        np.array([p for p, _ in spot_of], dtype=np.int64),
        np.array(row_l),
        np.array([along for _, along in spot_of]),
        spot=np.array(spot),
    )
    assert len(spot_of) < len(spot)
    assert per_spot.tolist() == expected
    # The runs of each pattern, in start order, as listed by the pattern.
    for p, pattern in enumerate(variants.patterns):
        start = table.starts.start
        assert table.run[start[p] : start[p + 1]].tolist() == pattern.runs.tolist()


def test_sorted_groups_bisect_like_bisect() -> None:
    rng = np.random.default_rng(3)
    groups = [np.sort(rng.integers(0, 50, n).astype(np.float64)) for n in (0, 1, 7, 30)]
    groups.append(np.array([5.0, 5.0, 5.0, 5.5]))
    table = SortedGroups(groups)
    values = np.concatenate([np.arange(-1.0, 52.0, 0.5), [5.0 - 1e-12, 5.0 + 1e-12]])
    for g, group in enumerate(groups):
        as_list = group.tolist()
        which = np.full(len(values), g)
        left = table.bisect(which, values, side="left") - table.start[g]
        right = table.bisect(which, values, side="right") - table.start[g]
        assert left.tolist() == [bisect_left(as_list, v) for v in values.tolist()]
        assert right.tolist() == [bisect_right(as_list, v) for v in values.tolist()]


def test_sorted_groups_refuse_unsorted_groups() -> None:
    with pytest.raises(ValueError, match="sorted"):
        SortedGroups([np.array([1.0, 0.0])])
