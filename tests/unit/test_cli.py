"""`tracker match` end to end on a small file with good and bad rows."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from tests import feeds
from tracker.cli import main
from tracker.gtfs.load import load_network


def test_match_writes_a_row_per_input_row_and_counts_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    feed = feeds.two_directions_feed(tmp_path)
    network = load_network(feed, use_cache=False)
    origin = network.day_origin(dt.date(2026, 3, 4))
    trip = network.trips[network.trip_index["B_N_0712"]]
    rows = []
    for k in range(6):  # a bus on B_N_0712, a minute late, one ping every 30 s
        t = 7 * 3600 + 12 * 60 + 60 + 30 * k
        x, y = network.point_at(trip.shape_idx, 200.0 * k)
        lat, lon = network.unproject(np.array([x]), np.array([y]))
        rows.append(["bus1", f"{origin + t:.0f}", f"{lat[0]:.7f}", f"{lon[0]:.7f}"])
    rows.insert(2, ["bus1", "not-a-time", "33.57", "-7.58"])
    rows.insert(4, ["bus1", rows[3][1], "91", "-7.58"])
    pings = tmp_path / "pings.csv"
    with pings.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["vehicle_id", "timestamp", "lat", "lon"])
        writer.writerows(rows)
    out = tmp_path / "out.csv"

    code = main(["match", "--gtfs", str(feed), "--pings", str(pings), "--out", str(out), "-q"])

    assert code == 0
    assert list((tmp_path / "cache" / "bus-tracker").glob("network-*.pickle"))
    with out.open() as handle:
        result = list(csv.DictReader(handle))
    assert len(result) == len(rows)
    assert [r["reason"] for r in result[2:5:2]] == ["bad_timestamp", "bad_coordinates"]
    matched = [r for r in result if r["state"] in ("in_service", "layover")]
    assert len(matched) == 6
    assert {r["trip_id"] for r in matched[2:]} == {"B_N_0712"}
    assert {r["direction_id"] for r in matched[2:]} == {"0"}
    printed = capsys.readouterr().out
    assert "bad_timestamp: 1" in printed
    assert "bad_coordinates: 1" in printed


def test_a_missing_feed_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["match", "--gtfs", str(tmp_path / "nope.zip"), "--pings", "x.csv", "--out", "o"])
    assert code == 2
    assert "nope.zip" in capsys.readouterr().err
