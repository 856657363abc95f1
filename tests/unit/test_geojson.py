"""tracker.core.geojson on the tiny feeds of tests.feeds: valid GeoJSON, the right properties."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import shapely.geometry

from tests import feeds
from tests.unit.conftest import build_feed
from tracker.core import geojson
from tracker.core.network import Network, haversine_m

GeoJson = dict[str, Any]


def _wiggly_feed(folder: Path) -> Path:
    """Route "W": one 1 km shape east from Casablanca drawn with 201 points that wiggle 1 m
    north and south of the straight line (what a noisy GPS-traced shape looks like)."""
    origin = feeds.CASABLANCA
    shapes = []
    for i in range(201):
        lat, lon = feeds.offset_latlon(*origin, i * 5.0, 1.0 if i % 2 else -1.0)
        shapes.append({"shape_id": "W_line", "shape_pt_lat": lat, "shape_pt_lon": lon,
                       "shape_pt_sequence": i + 1})  # fmt: skip
    end_lat, end_lon = feeds.offset_latlon(*origin, 1000.0, -1.0)
    start_lat, start_lon = feeds.offset_latlon(*origin, 0.0, -1.0)
    return feeds.write_feed(
        folder / "wiggly.zip",
        {
            "agency": [{"agency_id": "A", "agency_name": "Test Transit",
                        "agency_url": "https://example.com",
                        "agency_timezone": "Africa/Casablanca"}],
            "routes": [{"route_id": "W", "agency_id": "A", "route_short_name": "W",
                        "route_type": 3}],
            "calendar": [{"service_id": "WK", "monday": 1, "tuesday": 1, "wednesday": 1,
                          "thursday": 1, "friday": 1, "saturday": 0, "sunday": 0,
                          "start_date": "20260101", "end_date": "20261231"}],
            "stops": [
                {"stop_id": "W1", "stop_name": "West", "stop_lat": start_lat,
                 "stop_lon": start_lon},
                {"stop_id": "W2", "stop_name": "East", "stop_lat": end_lat, "stop_lon": end_lon},
            ],
            "trips": [{"route_id": "W", "service_id": "WK", "trip_id": "W_0700",
                       "shape_id": "W_line", "trip_headsign": "East", "direction_id": 1}],
            "stop_times": [
                {"trip_id": "W_0700", "arrival_time": "07:00:00", "departure_time": "07:00:00",
                 "stop_id": "W1", "stop_sequence": 1},
                {"trip_id": "W_0700", "arrival_time": "07:03:00", "departure_time": "07:03:00",
                 "stop_id": "W2", "stop_sequence": 2},
            ],
            "shapes": shapes,
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def wiggly(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_feed(_wiggly_feed, tmp_path_factory)


def _assert_valid(collection: GeoJson) -> None:
    """RFC 7946 as far as the map cares: a FeatureCollection of valid Points and LineStrings
    with [lon, lat] positions in range, that JSON can carry (no NaN)."""
    json.dumps(collection, allow_nan=False)
    assert collection["type"] == "FeatureCollection"
    for feature in collection["features"]:
        assert feature["type"] == "Feature"
        assert isinstance(feature["properties"], dict)
        geometry = feature["geometry"]
        assert geometry["type"] in ("Point", "LineString")
        assert shapely.geometry.shape(geometry).is_valid
        positions = (
            [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
        )
        if geometry["type"] == "LineString":
            assert len(positions) >= 2
        for lon, lat in positions:
            assert -180 <= lon <= 180
            assert -90 <= lat <= 90


def _kind(collection: GeoJson, kind: str) -> list[GeoJson]:
    return [f for f in collection["features"] if f["properties"]["kind"] == kind]


def test_route_collection_has_each_distinct_shape_and_every_stop(variants: Network) -> None:
    collection = geojson.route_collection(variants, "V")
    _assert_valid(collection)
    assert collection["route_id"] == "V"
    shapes = {f["properties"]["shape_id"]: f for f in _kind(collection, "shape")}
    assert set(shapes) == {"V_main", "V_branch"}  # 13 trips, 2 shapes
    main = shapes["V_main"]["properties"]
    assert main["route_id"] == "V"
    assert main["route_ids"] == ["V"]
    assert main["direction_id"] == 0
    assert main["headsigns"] == ["Stop VM5"]  # no trip_headsign: the last stop's name
    assert main["color"] == "#FF7F0E"
    assert main["from_stops"] is False
    lon0, lat0 = shapes["V_main"]["geometry"]["coordinates"][0]
    assert haversine_m(lat0, lon0, *feeds.CASABLANCA) < 1.0
    lon1, lat1 = shapes["V_main"]["geometry"]["coordinates"][-1]
    assert haversine_m(lat0, lon0, lat1, lon1) == pytest.approx(3000, rel=0.01)
    stops = {f["properties"]["stop_id"]: f["properties"]["name"] for f in _kind(collection, "stop")}
    assert stops == {s: f"Stop {s}" for s in ("V1", "V2", "V3", "VM4", "VM5", "VB4", "VB5")}


def test_route_collection_tells_the_directions_apart(two_directions: Network) -> None:
    collection = geojson.route_collection(two_directions, "B")
    _assert_valid(collection)
    directions = {
        f["properties"]["shape_id"]: f["properties"]["direction_id"]
        for f in _kind(collection, "shape")
    }
    assert directions == {"B_north": 0, "B_south": 1}


def test_a_route_without_shapes_gets_lines_through_its_stops(no_shape: Network) -> None:
    collection = geojson.route_collection(no_shape, "S")
    _assert_valid(collection)
    (line,) = _kind(collection, "shape")
    assert line["properties"]["from_stops"] is True
    assert len(line["geometry"]["coordinates"]) >= 3  # S1, the corner S3, S4


def test_route_collection_of_an_unknown_route_raises_key_error(variants: Network) -> None:
    with pytest.raises(KeyError, match="NOPE"):
        geojson.route_collection(variants, "NOPE")


def test_network_collection_simplifies_to_about_five_metres(wiggly: Network) -> None:
    full = geojson.route_collection(wiggly, "W")
    (full_line,) = _kind(full, "shape")
    assert len(full_line["geometry"]["coordinates"]) == 201
    assert full_line["properties"]["headsigns"] == ["East"]
    assert full_line["properties"]["direction_id"] == 1
    assert full_line["properties"]["color"] is None  # no route_color in the feed
    network = geojson.network_collection(wiggly)
    _assert_valid(network)
    assert network["feed_hash"] == wiggly.feed_hash
    (line,) = network["features"]
    coordinates = line["geometry"]["coordinates"]
    assert len(coordinates) == 2  # 1 m wiggles are below the 5 m tolerance
    (lon0, lat0), (lon1, lat1) = coordinates
    assert haversine_m(lat0, lon0, lat1, lon1) == pytest.approx(1000, abs=5)
    assert all(len(str(x).split(".")[1]) <= geojson.NETWORK_DECIMALS for x in coordinates[0])


def test_network_collection_has_one_feature_per_shape(
    variants: Network, two_directions: Network
) -> None:
    for network, shape_ids in ((variants, {"V_main", "V_branch"}),
                               (two_directions, {"B_north", "B_south"})):  # fmt: skip
        collection = geojson.network_collection(network)
        _assert_valid(collection)
        assert {f["properties"]["shape_id"] for f in collection["features"]} == shape_ids
        assert all(f["properties"]["kind"] == "shape" for f in collection["features"])


def test_stops_in_a_box_nearest_its_middle_first(two_directions: Network) -> None:
    every = geojson.stops_collection(two_directions)
    _assert_valid(every)
    assert len(every["features"]) == 10
    assert every["truncated"] is False
    # A box round the southern half of the street (north 0..1700 m) holds BN1..3 and BS3..5.
    lat_s, lon_w = feeds.offset_latlon(*feeds.CASABLANCA, -50.0, -10.0)
    lat_n, lon_e = feeds.offset_latlon(*feeds.CASABLANCA, 50.0, 1700.0)
    box = (lon_w, lat_s, lon_e, lat_n)
    inside = geojson.stops_collection(two_directions, bbox=box)
    ids = [f["properties"]["stop_id"] for f in inside["features"]]
    assert sorted(ids) == ["BN1", "BN2", "BN3", "BS3", "BS4", "BS5"]
    cut = geojson.stops_collection(two_directions, bbox=box, limit=2)
    assert cut["truncated"] is True
    assert sorted(f["properties"]["stop_id"] for f in cut["features"]) == ["BN2", "BS4"]  # 800 m


def test_network_bounds_hold_every_stop_and_shape(two_directions: Network) -> None:
    bounds = geojson.network_bounds(two_directions)
    assert bounds is not None
    min_lon, min_lat, max_lon, max_lat = bounds
    for _, lat, lon in two_directions.stops.values():
        assert min_lon <= lon <= max_lon
        assert min_lat <= lat <= max_lat
    assert haversine_m(min_lat, min_lon, max_lat, min_lon) == pytest.approx(3000, rel=0.01)
    assert math.isclose(min_lat, feeds.CASABLANCA[0], abs_tol=1e-6)


@pytest.mark.parametrize(
    ("gtfs", "css"),
    [("1f77b4", "#1F77B4"), ("#FF7F0E", "#FF7F0E"), ("", None), ("red", None), ("12345", None)],
)
def test_css_color(gtfs: str, css: str | None) -> None:
    assert geojson.css_color(gtfs) == css
