"""Tests for tracker.pings_io: reading every ping file format and writing match CSV files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from google.transit import gtfs_realtime_pb2

from tests.shared_data import SHARED_DATA, required
from tracker.core.model import Match, Ping, Reason, State
from tracker.errors import PingFileError
from tracker.pings_io import (
    MATCH_COLUMNS,
    BadRow,
    MatchWriter,
    bad_row_match,
    read_pings,
)

HEADER = "vehicle_id,timestamp,lat,lon,speed,bearing,accuracy,route_id,trip_id\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def read_all(path: Path, *, ignore_trip_ids: bool = False) -> list[Ping | BadRow]:
    return list(read_pings(path, ignore_trip_ids=ignore_trip_ids))


def pings_only(items: list[Ping | BadRow]) -> list[Ping]:
    assert all(isinstance(it, Ping) for it in items), items
    return [it for it in items if isinstance(it, Ping)]


@pytest.fixture
def shared_data() -> Path:
    return required(SHARED_DATA)


# --- generic CSV ---------------------------------------------------------------------------------


def test_generic_csv_all_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        HEADER
        + "bus 7,1771257515,38.93,-77.07,8.5,133,12,D96,T1\n"
        + "8,1771257520.5,38.94,-77.08,,,,,\n",
    )
    assert read_all(path) == [
        Ping("bus 7", 1771257515.0, 38.93, -77.07, 8.5, 133.0, 12.0, "D96", "T1"),
        Ping("8", 1771257520.5, 38.94, -77.08),
    ]


def test_generic_csv_minimal_columns_any_order_and_spaces(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.txt", "lon, lat, timestamp, vehicle_id\n-77.07, 38.93, 1771257515, 7\n"
    )
    assert read_all(path) == [Ping("7", 1771257515.0, 38.93, -77.07)]


def test_unknown_suffix_is_read_as_csv(tmp_path: Path) -> None:
    path = write(
        tmp_path / "pings.log", "vehicle_id,timestamp,latitude,longitude\n7,1771257515,1,2\n"
    )
    assert read_all(path) == [Ping("7", 1771257515.0, 1.0, 2.0)]


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"\xef\xbb\xbfvehicle_id,timestamp,lat,lon\n7,1771257515,1,2\n")
    assert read_all(path) == [Ping("7", 1771257515.0, 1.0, 2.0)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1771257515", 1771257515.0),
        ("1771257515.25", 1771257515.25),
        ("1771257515250", 1771257515.25),  # milliseconds
        ("2026-02-16T15:58:35Z", 1771257515.0),
        ("2026-02-16T15:58:35.250Z", 1771257515.25),
        ("2026-02-16T10:58:35-05:00", 1771257515.0),
        ("2026-02-16T15:58:35", 1771257515.0),  # naive means UTC
        ("2026-02-16 15:58:35", 1771257515.0),
    ],
)
def test_timestamp_forms(tmp_path: Path, raw: str, expected: float) -> None:
    path = write(tmp_path / "p.csv", f"vehicle_id,timestamp,lat,lon\n7,{raw},1,2\n")
    [item] = read_all(path)
    assert isinstance(item, Ping)
    assert item.timestamp == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("raw", ["yesterday", "2026-02-16", "2026-02-30T10:00:00Z", "16/02/2026"])
def test_bad_timestamp_is_a_bad_row(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path / "p.csv", f"vehicle_id,timestamp,lat,lon\n7,{raw},1,2\n")
    assert read_all(path) == [
        BadRow(
            1,
            "7",
            None,
            Reason.BAD_TIMESTAMP,
            f"row 1: column 'timestamp' is {raw!r}, not epoch seconds, epoch milliseconds or an "
            "ISO 8601 time",
        )
    ]


def test_malformed_rows_are_numbered_and_reading_continues(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.csv",
        HEADER
        + "1,1771257515,38.9,-77.0,,,,,\n"  # row 1: good
        + "2,1771257515,abc,-77.0,,,,,\n"  # row 2: lat is not a number
        + ",1771257515,38.9,-77.0,,,,,\n"  # row 3: no vehicle id
        + "4,,38.9,-77.0,,,,,\n"  # row 4: no timestamp
        + "5,1771257515,38.9\n"  # row 5: truncated
        + "6,1771257515,38.9,-77.0,fast,,,,\n"  # row 6: speed is not a number
        + "\n"  # row 7: blank, skipped but counted
        + "8,1771257515,38.9,-77.0,,,,,\n",  # row 8: good
    )
    items = read_all(path)
    assert [it.vehicle_id for it in items if isinstance(it, Ping)] == ["1", "8"]
    bad = [it for it in items if isinstance(it, BadRow)]
    assert [(b.record, b.vehicle_id, b.timestamp, b.reason) for b in bad] == [
        (2, "2", 1771257515.0, Reason.MALFORMED),
        (3, None, 1771257515.0, Reason.MALFORMED),
        (4, "4", None, Reason.MALFORMED),
        (5, "5", 1771257515.0, Reason.MALFORMED),
        (6, "6", 1771257515.0, Reason.MALFORMED),
    ]
    assert [b.detail for b in bad] == [
        "row 2: column 'lat' is 'abc', not a number",
        "row 3: column 'vehicle_id' is empty",
        "row 4: column 'timestamp' is empty",
        "row 5: column 'lon' (or 'longitude') is missing",
        "row 6: column 'speed' is 'fast', not a number",
    ]


def test_nan_values_pass_through_to_validation(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "vehicle_id,timestamp,lat,lon\n7,NaN,nan,inf\n")
    [item] = read_all(path)
    assert isinstance(item, Ping)
    assert math.isnan(item.timestamp)
    assert math.isnan(item.lat)
    assert item.lon == math.inf


def test_missing_required_columns_raise_at_call_time(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "vehicle_id,time,lat\n7,1771257515,1\n")
    with pytest.raises(PingFileError) as info:
        read_pings(path)
    message = str(info.value)
    assert str(path) in message
    assert "'timestamp'" in message
    assert "'lon' (or 'longitude')" in message
    assert "'lat'" not in message.split(";")[0]


@pytest.mark.parametrize("name", ["absent.csv", "absent.pb", "absent.jsonl"])
def test_missing_file_raises(tmp_path: Path, name: str) -> None:
    with pytest.raises(PingFileError, match=name):
        read_pings(tmp_path / name)


def test_empty_csv_raises(tmp_path: Path) -> None:
    with pytest.raises(PingFileError, match="empty"):
        read_pings(write(tmp_path / "p.csv", ""))


def test_invalid_utf8_spoils_only_its_row(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b"vehicle_id,timestamp,lat,lon\nbus\xff,1771257515,1,2\n7,1771257515,1,2\n")
    first, second = read_all(path)
    assert isinstance(first, BadRow)
    assert first.reason is Reason.MALFORMED
    assert "not valid UTF-8" in first.detail
    assert second == Ping("7", 1771257515.0, 1.0, 2.0)


def test_ignore_trip_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", HEADER + "7,1771257515,1,2,3,4,5,R,T\n8,x,1,2,,,,R,T\n")
    ping, bad = read_all(path, ignore_trip_ids=True)
    assert ping == Ping("7", 1771257515.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    assert isinstance(bad, BadRow)


# --- flattened GTFS-realtime CSV -----------------------------------------------------------------

GTFS_RT_HEADER = (
    ",id,vehicle.trip.trip_id,vehicle.trip.route_id,vehicle.position.latitude,"
    "vehicle.position.longitude,vehicle.position.bearing,vehicle.position.speed,"
    "vehicle.timestamp,vehicle.vehicle.id,vehicle.vehicle.label\n"
)


def test_flattened_gtfs_rt_csv_with_pandas_floats(tmp_path: Path) -> None:
    path = write(
        tmp_path / "vp.csv",
        GTFS_RT_HEADER
        + "0,e1,30095100.0,D96,38.9,-77.0,133.0,8.8,1771257515.0,4582.0,L1\n"
        + "1,e2,30095101,C53,38.9,-77.0,,0.0,1771257516,,L2\n"  # label when no id
        + "2,e3,,,38.9,-77.0,,,1771257517,,\n"  # entity id when neither
        + "3,e4,7.5,,38.9,-77.0,,,1771257518000,12.50,\n",  # only integral floats change
    )
    assert read_all(path) == [
        Ping("4582", 1771257515.0, 38.9, -77.0, 8.8, 133.0, None, "D96", "30095100"),
        Ping("L2", 1771257516.0, 38.9, -77.0, 0.0, None, None, "C53", "30095101"),
        Ping("e3", 1771257517.0, 38.9, -77.0),
        Ping("12.50", 1771257518.0, 38.9, -77.0, trip_id="7.5"),
    ]


def test_flattened_gtfs_rt_csv_missing_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "vp.csv", "vehicle.position.latitude,vehicle.timestamp\n1,2\n")
    with pytest.raises(PingFileError) as info:
        read_pings(path)
    assert "'vehicle.vehicle.id' (or 'vehicle.vehicle.label') (or 'id')" in str(info.value)
    assert "'vehicle.position.longitude'" in str(info.value)


# --- JSON lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".json"])
def test_json_lines(tmp_path: Path, suffix: str) -> None:
    lines = [
        {"vehicle_id": "7", "timestamp": 1771257515, "lat": 38.9, "lon": -77.0, "speed": 3},
        {"vehicle_id": 4582.0, "timestamp": "2026-02-16T15:58:35Z", "latitude": 1, "longitude": 2},
        {"vehicle_id": 9, "timestamp": 1771257515000, "lat": "1.5", "lon": "2.5", "trip_id": 30.0},
    ]
    path = write(tmp_path / f"p{suffix}", "".join(json.dumps(obj) + "\n" for obj in lines))
    assert read_all(path) == [
        Ping("7", 1771257515.0, 38.9, -77.0, speed_mps=3.0),
        Ping("4582", 1771257515.0, 1.0, 2.0),
        Ping("9", 1771257515.0, 1.5, 2.5, trip_id="30"),
    ]


def test_json_lines_bad_lines_keep_their_line_numbers(tmp_path: Path) -> None:
    text = (
        '{"vehicle_id": "1", "timestamp": 1771257515, "lat": 1, "lon": 2}\n'
        "\n"  # line 2: blank
        "not json\n"  # line 3
        "[1, 2]\n"  # line 4
        '{"vehicle_id": "5", "timestamp": 1771257515, "lat": true, "lon": 2}\n'
        '{"vehicle_id": "6", "timestamp": 1771257515, "lon": 2}\n'
        '{"vehicle_id": "7", "timestamp": null, "lat": 1, "lon": 2}\n'
        '{"vehicle_id": "8", "timestamp": 1771257515, "lat": 1, "lon": 2}\n'
    )
    items = read_all(write(tmp_path / "p.jsonl", text))
    assert [it.vehicle_id for it in items if isinstance(it, Ping)] == ["1", "8"]
    bad = [it for it in items if isinstance(it, BadRow)]
    assert [(b.record, b.reason) for b in bad] == [(n, Reason.MALFORMED) for n in (3, 4, 5, 6, 7)]
    assert bad[0].detail.startswith("line 3: not JSON")
    assert bad[1].detail == "line 4: expected a JSON object, got list"
    assert bad[2].detail == "line 5: key 'lat' is True, not a string or number"
    assert bad[3].detail == "line 6: key 'lat' (or 'latitude') is missing"
    assert bad[4].detail == "line 7: key 'timestamp' is null"


def test_json_array_file_raises(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", '[\n  {"vehicle_id": "1"}\n]\n')
    with pytest.raises(PingFileError, match="one JSON object per line"):
        read_pings(path)


# --- GTFS-realtime protobuf ----------------------------------------------------------------------


def feed_bytes(header_ts: int, entities: list[dict[str, object]]) -> bytes:
    """A FeedMessage; each entity dict is the VehiclePosition (or {"trip_update": ...})."""
    feed = gtfs_realtime_pb2.FeedMessage()
    feed.header.gtfs_realtime_version = "2.0"
    feed.header.timestamp = header_ts
    for number, fields in enumerate(entities, start=1):
        entity = feed.entity.add()
        entity.id = f"e{number}"
        if "trip_update" in fields:
            entity.trip_update.trip.trip_id = "t"
            continue
        vp = entity.vehicle
        for key, value in fields.items():
            obj = vp
            *parents, leaf = key.split(".")
            for parent in parents:
                obj = getattr(obj, parent)
            setattr(obj, leaf, value)
    data: bytes = feed.SerializeToString()
    return data


def test_protobuf_fields_and_fallbacks(tmp_path: Path) -> None:
    pos = {"position.latitude": 38.5, "position.longitude": -77.25}
    path = tmp_path / "vp.pb"
    path.write_bytes(
        feed_bytes(
            1771257600,
            [
                {"vehicle.id": "A", "timestamp": 1771257515, **pos, "position.speed": 0.0},
                {"vehicle.label": "B", "trip.trip_id": "T", "trip.route_id": "R", **pos},
                {"position.bearing": 90.0, **pos},  # entity id, header timestamp
                {"trip_update": True},  # not a vehicle: skipped
                {"vehicle.id": "no position", "timestamp": 1771257515},  # skipped
                {"vehicle.id": "ms", "timestamp": 1771257515500, **pos},
            ],
        )
    )
    assert read_all(path) == [
        Ping("A", 1771257515.0, 38.5, -77.25, speed_mps=0.0),
        Ping("B", 1771257600.0, 38.5, -77.25, route_id="R", trip_id="T"),
        Ping("e3", 1771257600.0, 38.5, -77.25, bearing_deg=90.0),
        Ping("ms", 1771257515.5, 38.5, -77.25),
    ]


def test_protobuf_without_any_timestamp_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "vp.bin"
    pos = {"position.latitude": 1.0, "position.longitude": 2.0}
    path.write_bytes(feed_bytes(0, [{"vehicle.id": "A", **pos}]))
    assert read_all(path) == [
        BadRow(
            1,
            "A",
            None,
            Reason.BAD_TIMESTAMP,
            "entity 1: no timestamp in the vehicle or the feed header",
        )
    ]


def test_protobuf_directory_reads_sorted_pb_files(tmp_path: Path) -> None:
    pos = {"position.latitude": 1.0, "position.longitude": 2.0}
    (tmp_path / "b.pb").write_bytes(feed_bytes(1771257600, [{"vehicle.id": "second", **pos}]))
    (tmp_path / "a.pb").write_bytes(feed_bytes(1771257500, [{"vehicle.id": "first", **pos}]))
    (tmp_path / "c.bin").write_bytes(feed_bytes(1771257700, [{"vehicle.id": "ignored", **pos}]))
    (tmp_path / "d.pb").write_bytes(feed_bytes(0, [{"vehicle.id": "no time", **pos}]))
    items = read_all(tmp_path)
    assert items[:2] == [
        Ping("first", 1771257500.0, 1.0, 2.0),
        Ping("second", 1771257600.0, 1.0, 2.0),
    ]
    assert isinstance(items[2], BadRow)
    assert items[2].detail.startswith("d.pb entity 1:")
    assert len(items) == 3


def test_empty_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(PingFileError, match=r"no \*\.pb files"):
        read_pings(tmp_path)


def test_corrupt_protobuf_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.pb"
    path.write_bytes(b"\x0a\xff\xff\xff")
    with pytest.raises(PingFileError, match=r"broken\.pb"):
        read_all(path)


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.realfeed
def test_real_wmata_flattened_csv(shared_data: Path) -> None:
    pings = pings_only(read_all(shared_data / "wmata-bus-2026-02-16" / "vehicle_positions.csv"))
    assert len(pings) == 20777
    first = pings[0]
    assert (first.vehicle_id, first.trip_id, first.route_id) == ("4582", "30095100", "D96")
    assert first.timestamp == 1771257515.0
    assert first.lat == pytest.approx(38.93341827)
    assert first.speed_mps == pytest.approx(8.8392)
    assert all(p.vehicle_id.isdigit() and p.trip_id and p.trip_id.isdigit() for p in pings)
    assert len({p.vehicle_id for p in pings}) == 31
    assert len({p.trip_id for p in pings}) == 132
    assert pings[1].bearing_deg is None  # an empty cell


@pytest.mark.realfeed
def test_real_caltrain_protobuf(shared_data: Path) -> None:
    pings = pings_only(read_all(shared_data / "caltrain-rt" / "vehicle_positions.pb"))
    assert len(pings) == 14
    assert pings[0] == Ping(
        "124", 1699405549.0, pings[0].lat, pings[0].lon, None, None, None, "L1", "124"
    )
    assert pings[0].lat == pytest.approx(37.3704605)
    assert all(p.trip_id for p in pings)


@pytest.mark.realfeed
def test_real_bullrunner_protobuf_takes_the_header_timestamp(shared_data: Path) -> None:
    pings = pings_only(read_all(shared_data / "bullrunner-frequency" / "vehicle_positions.pb"))
    assert len(pings) == 10
    assert {p.timestamp for p in pings} == {1505314375.0}  # vehicle timestamps are 0
    assert all(p.route_id and p.trip_id is None for p in pings)
    assert pings[0].vehicle_id == "1536"
    assert pings[0].bearing_deg == 180.0


# --- writing matches -----------------------------------------------------------------------------


def test_match_writer_round_trip(tmp_path: Path) -> None:
    matched = Match(
        vehicle_id="4582",
        timestamp=1771257515.0,
        state=State.IN_SERVICE,
        route_id="D96",
        trip_id="30095100",
        service_date="20260216",
        direction_id=1,
        shape_id="S1",
        shape_dist_m=1234.5678,
        snapped_lat=38.933418273925781,
        snapped_lon=-77.07974243164062,
        offset_m=0.04,
        delay_s=-0.04,
        headway_s=600.0,
    )
    fractional = Match(vehicle_id="9", timestamp=1771257515.25, state=State.LAYOVER)
    bad = BadRow(5, None, None, Reason.MALFORMED, "row 5: column 'vehicle_id' is empty")
    path = tmp_path / "out" / "matches.csv"
    path.parent.mkdir()
    with MatchWriter(path) as writer:
        for match in (matched, fractional, bad_row_match(bad)):
            writer.write(match)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == MATCH_COLUMNS
        rows = list(reader)
    assert rows[0] == {
        "vehicle_id": "4582",
        "timestamp": "1771257515",
        "route_id": "D96",
        "trip_id": "30095100",
        "service_date": "20260216",
        "direction_id": "1",
        "shape_id": "S1",
        "shape_dist_m": "1234.6",
        "snapped_lat": "38.9334183",
        "snapped_lon": "-77.0797424",
        "offset_m": "0",
        "delay_s": "0",
        "headway_s": "600",
        "state": "in_service",
        "reason": "",
        "detail": "",
    }
    assert rows[1]["timestamp"] == "1771257515.25"
    assert rows[1]["state"] == "layover"
    assert rows[1]["shape_dist_m"] == ""
    assert rows[2]["vehicle_id"] == ""
    assert rows[2]["timestamp"] == ""
    assert rows[2]["state"] == "rejected"
    assert rows[2]["reason"] == "malformed"
    assert rows[2]["detail"] == "row 5: column 'vehicle_id' is empty"


def test_bad_row_match_keeps_what_is_known() -> None:
    bad = BadRow(2, "7", 1771257515.0, Reason.BAD_TIMESTAMP, "detail")
    assert bad_row_match(bad) == Match(
        vehicle_id="7",
        timestamp=1771257515.0,
        state=State.REJECTED,
        reason=Reason.BAD_TIMESTAMP,
        detail="detail",
    )
    unknown = bad_row_match(BadRow(3, None, None, Reason.MALFORMED, "x"))
    assert unknown.vehicle_id == ""
    assert math.isnan(unknown.timestamp)
