"""Prepare a GTFS feed for matching with gtfs-kit: the slow path behind `tracker.gtfs.load`.

Broken feeds raise `FeedError` naming the file, line and problem; recoverable problems (a trip
with an unknown stop, a shape with one point) are worked around and listed in `Network.warnings`.
Only this module imports gtfs-kit and pandas (about 50 MB): a tracker that starts from the cache
never loads them.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import logging
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gtfs_kit as gk
import numpy as np
import pandas as pd
from pyproj import CRS, Transformer
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info

from tracker.core.network import (
    NO_INDEX,
    FloatArray,
    IntArray,
    Network,
    Pattern,
    Route,
    Runs,
    Shape,
    Trip,
)
from tracker.errors import FeedError

log = logging.getLogger(__name__)

REQUIRED_TABLES = ("agency", "routes", "trips", "stops", "stop_times")


def build_network(path: Path, *, feed_hash: str = "") -> Network:
    """Prepare a feed for matching (slow path; `load_network` caches the result)."""
    try:
        feed = gk.read_feed(path, dist_units="m")
    except ValueError as exc:
        raise _locate_bad_number(path) or FeedError(str(path), f"cannot be read: {exc}") from exc
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise FeedError(str(path), f"cannot be read as GTFS: {exc}") from exc
    warnings: list[str] = []
    _check_tables(feed)
    timezone = str(feed.agency["agency_timezone"].iloc[0])
    stops = _prepare_stops(feed.stops)
    crs = _local_crs(stops)
    to_metric = Transformer.from_crs(CRS.from_epsg(4326), crs, always_xy=True)

    trips_df = _prepare_trips(feed, stops, warnings)
    stop_times = _prepare_stop_times(feed.stop_times, trips_df, stops, warnings)
    trips_df = trips_df[trips_df["trip_id"].isin(stop_times["trip_id"].unique())]

    shapes, shape_index = _prepare_shapes(feed.shapes, to_metric, warnings)
    trips_df = _give_shapes_from_stops(trips_df, stop_times, stops, to_metric, shapes, shape_index)

    routes = [
        Route(
            route_id=str(r.route_id),
            short_name=_text(r, "route_short_name"),
            long_name=_text(r, "route_long_name"),
            color=_text(r, "route_color"),
            text_color=_text(r, "route_text_color"),
            route_type=int(getattr(r, "route_type", 3)),
        )
        for r in feed.routes.itertuples()
    ]
    route_index = {r.route_id: i for i, r in enumerate(routes)}
    service_ids = sorted(
        set(trips_df["service_id"].astype(str))
        | set(_col(feed.calendar, "service_id"))
        | set(_col(feed.calendar_dates, "service_id"))
    )
    service_index = {s: i for i, s in enumerate(service_ids)}

    xy_stops = {sid: to_metric.transform(lon, lat) for sid, (_, lat, lon) in stops.items()}
    builder = _PatternBuilder(shapes, xy_stops)
    trips: list[Trip] = []
    trip_rows: list[tuple[int, FloatArray, FloatArray]] = []  # (pattern, arrival, departure)
    grouped = stop_times.groupby("trip_id", sort=False)
    for t in trips_df.itertuples():
        st = grouped.get_group(t.trip_id)
        stop_ids = tuple(st["stop_id"].tolist())
        pattern_key = (shape_index[str(t.shape_id)], stop_ids)
        pattern_idx = builder.pattern(pattern_key)
        arrival, departure = _fill_times(
            st["arrival_s"].to_numpy(), st["departure_s"].to_numpy(),
            builder.stop_dist[pattern_idx],
        )  # fmt: skip
        direction = getattr(t, "direction_id", None)
        trips.append(
            Trip(
                trip_id=str(t.trip_id),
                route_idx=route_index[str(t.route_id)],
                service_idx=service_index[str(t.service_id)],
                direction_id=int(str(direction)) if _present(direction) else -1,
                shape_idx=pattern_key[0],
                pattern_idx=pattern_idx,
                block_id=_text(t, "block_id"),
                headsign=_text(t, "trip_headsign"),
                stop_sequences=tuple(int(x) for x in st["stop_sequence"].tolist()),
            )
        )
        trip_rows.append((pattern_idx, arrival, departure))

    runs, patterns = _build_runs(feed.frequencies, trips, trip_rows, builder, warnings)
    network = Network(
        feed_hash=feed_hash,
        timezone=timezone,
        crs_wkt=crs.to_wkt(),
        routes=routes,
        trips=trips,
        shapes=shapes,
        patterns=patterns,
        runs=runs,
        service_ids=service_ids,
        services_by_date=_services_by_date(feed, service_index),
        stops=stops,
        warnings=warnings,
    )
    for warning in warnings[:20]:
        log.warning("%s: %s", path.name, warning)
    if len(warnings) > 20:
        log.warning("%s: %d more warnings", path.name, len(warnings) - 20)
    return network


def _locate_bad_number(path: Path) -> FeedError | None:
    """Find the file, line and column of a value gtfs-kit could not read as a number."""
    numeric = {
        table: [c for c, kind in columns.items() if kind != "string"]
        for table, columns in gk.DTYPES.items()
    }

    def tables() -> Iterator[tuple[str, list[str]]]:
        if path.is_dir():
            for file in sorted(path.glob("*.txt")):
                yield file.name, file.read_text(encoding="utf-8-sig").splitlines()
        else:
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith(".txt"):
                        text = archive.read(name).decode("utf-8-sig", errors="replace")
                        yield Path(name).name, text.splitlines()

    for name, lines in tables():
        columns = numeric.get(name.removesuffix(".txt"), [])
        for line, row in enumerate(csv.DictReader(lines), start=2):
            for column in columns:
                value = (row.get(column) or "").strip()
                if not value:
                    continue
                try:
                    float(value)
                except ValueError:
                    return FeedError(name, f"{column} {value!r} is not a number", row=line)
    return None


# --- tables ------------------------------------------------------------------------------


def _check_tables(feed: Any) -> None:
    for table in REQUIRED_TABLES:
        if getattr(feed, table, None) is None:
            raise FeedError(f"{table}.txt", "is missing; every GTFS feed needs it")
    if feed.calendar is None and feed.calendar_dates is None:
        raise FeedError("calendar.txt", "is missing, and so is calendar_dates.txt; one is needed")
    if feed.stop_times.empty:
        raise FeedError("stop_times.txt", "has no rows")


def _line(df: pd.DataFrame, index: Any) -> int:
    """The file line of a row: the header is line 1 and gtfs-kit keeps the file order."""
    position = df.index.get_loc(index)
    assert isinstance(position, int), "row index labels are unique"
    return position + 2


def _prepare_stops(df: pd.DataFrame) -> dict[str, tuple[str, float, float]]:
    lat = pd.to_numeric(df["stop_lat"], errors="coerce")
    lon = pd.to_numeric(df["stop_lon"], errors="coerce")
    located = df.get("location_type", pd.Series(0, index=df.index)).fillna(0).astype(int) <= 0
    bad = located & (lat.isna() | lon.isna() | (lat.abs() > 90) | (lon.abs() > 180))
    if bad.any():
        i = bad.idxmax()
        raise FeedError(
            "stops.txt",
            f"stop {df.at[i, 'stop_id']!r} has coordinates "
            f"({df.at[i, 'stop_lat']!r}, {df.at[i, 'stop_lon']!r}), not a latitude and longitude",
            row=_line(df, i),
        )
    names = df["stop_name"].fillna("").astype(str) if "stop_name" in df else df["stop_id"]
    return {
        str(sid): (str(name), float(la), float(lo))
        for sid, name, la, lo in zip(df["stop_id"], names, lat, lon, strict=True)
        if not (np.isnan(la) or np.isnan(lo))
    }


def _local_crs(stops: dict[str, tuple[str, float, float]]) -> CRS:
    """The UTM zone around the feed's stops: a metric projection chosen from its location."""
    lats = np.array([s[1] for s in stops.values()])
    lons = np.array([s[2] for s in stops.values()])
    lat, lon = float(np.median(lats)), float(np.median(lons))
    infos = query_utm_crs_info(
        datum_name="WGS 84", area_of_interest=AreaOfInterest(lon, lat, lon, lat)
    )
    if not infos:
        raise FeedError("stops.txt", f"no UTM zone covers the stops' centre ({lat}, {lon})")
    return CRS.from_epsg(int(infos[0].code))


def _prepare_trips(
    feed: Any, stops: dict[str, tuple[str, float, float]], warnings: list[str]
) -> pd.DataFrame:
    trips = feed.trips.copy()
    known_routes = set(feed.routes["route_id"].astype(str))
    bad = ~trips["route_id"].astype(str).isin(known_routes)
    if bad.any():
        warnings.append(f"trips.txt: {int(bad.sum())} trips name an unknown route_id; skipped")
        trips = trips[~bad]
    if "shape_id" not in trips:
        trips["shape_id"] = np.nan
    known_shapes = set() if feed.shapes is None else set(feed.shapes["shape_id"].astype(str))
    missing = trips["shape_id"].notna() & ~trips["shape_id"].astype(str).isin(known_shapes)
    if missing.any():
        warnings.append(
            f"trips.txt: {int(missing.sum())} trips name a shape_id not in shapes.txt; "
            "their shapes are drawn through their stops"
        )
        trips.loc[missing, "shape_id"] = np.nan
    return pd.DataFrame(trips)


_TIME = r"^\s*(\d{1,3}):([0-5]\d):([0-5]\d)\s*$"


def _seconds(df: pd.DataFrame, column: str, file: str = "stop_times.txt") -> FloatArray:
    """GTFS HH:MM:SS (hours may pass 24) to seconds; blank → NaN; anything else → FeedError."""
    raw = df[column]
    parts = raw.astype("string").str.extract(_TIME)
    seconds = (
        parts[0].astype(float) * 3600 + parts[1].astype(float) * 60 + parts[2].astype(float)
    ).to_numpy(dtype=np.float64)
    blank = raw.isna() | (raw.astype("string").str.strip() == "")
    bad = np.isnan(seconds) & ~blank.to_numpy()
    if bad.any():
        i = df.index[int(np.argmax(bad))]
        raise FeedError(
            file,
            f"{column} {raw[i]!r} of trip {df.at[i, 'trip_id']!r} is not a time HH:MM:SS",
            row=_line(df, i),
        )
    return np.asarray(seconds, dtype=np.float64)


def _prepare_stop_times(
    df: pd.DataFrame,
    trips: pd.DataFrame,
    stops: dict[str, tuple[str, float, float]],
    warnings: list[str],
) -> pd.DataFrame:
    st = df[["trip_id", "stop_id", "stop_sequence"]].copy()
    st["arrival_s"] = _seconds(df, "arrival_time")
    st["departure_s"] = _seconds(df, "departure_time")
    st["arrival_s"] = st["arrival_s"].fillna(st["departure_s"])
    st["departure_s"] = st["departure_s"].fillna(st["arrival_s"])
    st["trip_id"] = st["trip_id"].astype(str)
    st["stop_id"] = st["stop_id"].astype(str)
    unknown_stop = ~st["stop_id"].isin(stops.keys())
    if unknown_stop.any():
        i = st.index[int(np.argmax(unknown_stop.to_numpy()))]
        bad_trips = set(st.loc[unknown_stop, "trip_id"])
        warnings.append(
            f"stop_times.txt line {_line(df, i)}: stop_id {st.at[i, 'stop_id']!r} is not in "
            f"stops.txt; {len(bad_trips)} trips with unknown stops skipped"
        )
        st = st[~st["trip_id"].isin(bad_trips)]
    st = st[st["trip_id"].isin(trips["trip_id"].astype(str))]
    st = st.sort_values(["trip_id", "stop_sequence"], kind="stable")
    counts = st.groupby("trip_id")["stop_id"].transform("size")
    timed = st.groupby("trip_id")["arrival_s"].transform("count")
    unusable = (counts < 2) | (timed < 2)
    if unusable.any():
        warnings.append(
            f"stop_times.txt: {st.loc[unusable, 'trip_id'].nunique()} trips have fewer than "
            "two timed stops; skipped"
        )
        st = st[~unusable]
    return st


def _prepare_shapes(
    df: pd.DataFrame | None, to_metric: Transformer, warnings: list[str]
) -> tuple[list[Shape], dict[str, int]]:
    shapes: list[Shape] = []
    index: dict[str, int] = {}
    if df is None:
        return shapes, index
    df = df.sort_values(["shape_id", "shape_pt_sequence"], kind="stable")
    for shape_id, group in df.groupby("shape_id", sort=False):
        shape = _make_shape(
            str(shape_id),
            group["shape_pt_lat"].to_numpy(float),
            group["shape_pt_lon"].to_numpy(float),
            to_metric,
            from_stops=False,
        )
        if shape is None:
            warnings.append(f"shapes.txt: shape {shape_id!r} has fewer than 2 distinct points")
            continue
        index[shape.shape_id] = len(shapes)
        shapes.append(shape)
    return shapes, index


def _make_shape(
    shape_id: str, lat: FloatArray, lon: FloatArray, to_metric: Transformer, *, from_stops: bool
) -> Shape | None:
    ok = ~(np.isnan(lat) | np.isnan(lon))
    x, y = to_metric.transform(lon[ok], lat[ok])
    xy = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if len(xy) > 1:
        step = np.hypot(*np.diff(xy, axis=0).T)
        xy = xy[np.concatenate([[True], step > 0.01])]
    if len(xy) < 2:
        return None
    dist = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    return Shape(shape_id=shape_id, xy_m=xy, dist_m=dist, from_stops=from_stops)


def _give_shapes_from_stops(
    trips: pd.DataFrame,
    stop_times: pd.DataFrame,
    stops: dict[str, tuple[str, float, float]],
    to_metric: Transformer,
    shapes: list[Shape],
    shape_index: dict[str, int],
) -> pd.DataFrame:
    """Trips without a usable shape get one drawn straight through their stops."""
    trips = trips.copy()
    trips["shape_id"] = trips["shape_id"].astype(object)
    shapeless = trips["shape_id"].isna() | ~trips["shape_id"].astype(str).isin(shape_index)
    if not shapeless.any():
        trips["shape_id"] = trips["shape_id"].astype(str)
        return trips
    seqs = stop_times.groupby("trip_id", sort=False)["stop_id"].agg(tuple)
    by_sequence: dict[tuple[str, ...], str] = {}
    new_ids = []
    for trip_id in trips.loc[shapeless, "trip_id"].astype(str):
        seq = seqs[trip_id]
        shape_id = by_sequence.get(seq)
        if shape_id is None:
            shape_id = f"stops:{len(by_sequence) + 1}"
            lat = np.array([stops[s][1] for s in seq])
            lon = np.array([stops[s][2] for s in seq])
            shape = _make_shape(shape_id, lat, lon, to_metric, from_stops=True)
            if shape is None:  # all stops at one spot: a tiny stub keeps the trip matchable
                lat, lon = np.array([lat[0], lat[0] + 1e-5]), np.array([lon[0], lon[0]])
                shape = _make_shape(shape_id, lat, lon, to_metric, from_stops=True)
            assert shape is not None
            shape_index[shape_id] = len(shapes)
            shapes.append(shape)
            by_sequence[seq] = shape_id
        new_ids.append(shape_id)
    trips.loc[shapeless, "shape_id"] = new_ids
    trips["shape_id"] = trips["shape_id"].astype(str)
    return trips


# --- patterns, stop distances and runs ----------------------------------------------------


class _PatternBuilder:
    """Numbers the distinct (shape, stop sequence) pairs and places their stops on the shape."""

    def __init__(self, shapes: list[Shape], xy_stops: dict[str, tuple[float, float]]) -> None:
        self.shapes = shapes
        self.xy_stops = xy_stops
        self.keys: dict[tuple[int, tuple[str, ...]], int] = {}
        self.stop_dist: list[FloatArray] = []

    def pattern(self, key: tuple[int, tuple[str, ...]]) -> int:
        idx = self.keys.get(key)
        if idx is None:
            idx = self.keys[key] = len(self.stop_dist)
            self.stop_dist.append(
                place_stops(self.shapes[key[0]], [self.xy_stops[s] for s in key[1]])
            )
        return idx


def place_stops(shape: Shape, stop_xy: list[tuple[float, float]]) -> FloatArray:
    """Distance of each stop along the shape, in order, never going backwards.

    A loop passes near the same stop twice, so each stop takes the first pass of the shape at
    or after the previous stop that comes within 50 m of the stop's nearest approach.
    """
    xy = shape.xy_m
    a, b = xy[:-1], xy[1:]
    d = b - a
    len2 = np.maximum((d**2).sum(axis=1), 1e-12)
    seg_len = np.sqrt(len2)
    out = np.empty(len(stop_xy))
    prev = 0.0
    for i, (sx, sy) in enumerate(stop_xy):
        t = np.clip(((sx - a[:, 0]) * d[:, 0] + (sy - a[:, 1]) * d[:, 1]) / len2, 0.0, 1.0)
        along = shape.dist_m[:-1] + t * seg_len
        offset = np.hypot(sx - (a[:, 0] + t * d[:, 0]), sy - (a[:, 1] + t * d[:, 1]))
        ahead = along >= prev - 1e-6
        if not ahead.any():
            out[i] = prev
            continue
        best = float(offset[ahead].min())
        good = ahead & (offset <= best + 50.0)
        # First good segment in order, then the closest spot within that pass.
        first = int(np.argmax(good))
        end = first
        while end + 1 < len(good) and good[end + 1]:
            end += 1
        local = first + int(np.argmin(offset[first : end + 1]))
        prev = out[i] = max(prev, float(along[local]))
    return out


def _fill_times(
    arrival: FloatArray, departure: FloatArray, stop_dist: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Blank times of untimed stops, interpolated by distance between the timed ones."""
    arrival, departure = arrival.astype(float), departure.astype(float)
    known = ~np.isnan(arrival)
    if not known.all():
        arrival = np.interp(stop_dist, stop_dist[known], arrival[known])
        departure = np.where(np.isnan(departure), arrival, departure)
    return arrival, np.maximum(departure, arrival)


def _build_runs(
    frequencies: pd.DataFrame | None,
    trips: list[Trip],
    trip_rows: list[tuple[int, FloatArray, FloatArray]],
    builder: _PatternBuilder,
    warnings: list[str],
) -> tuple[Runs, list[Pattern]]:
    """One run per plain trip, one per departure of a frequency-based trip."""
    windows: dict[str, list[tuple[float, float, float, bool]]] = defaultdict(list)
    if frequencies is not None and not frequencies.empty:
        start = _seconds(frequencies, "start_time", "frequencies.txt")
        end = _seconds(frequencies, "end_time", "frequencies.txt")
        headway = pd.to_numeric(frequencies["headway_secs"], errors="coerce").to_numpy(float)
        exact = (
            pd.to_numeric(frequencies["exact_times"], errors="coerce").fillna(0).to_numpy()
            if "exact_times" in frequencies
            else np.zeros(len(frequencies))
        )
        for trip_id, s, e, h, x in zip(
            frequencies["trip_id"].astype(str), start, end, headway, exact, strict=True
        ):
            if not (h > 0 and e > s):
                warnings.append(f"frequencies.txt: trip {trip_id!r} has an empty window; skipped")
                continue
            windows[trip_id].append((s, e, h, bool(x == 1)))

    rows: list[dict[str, Any]] = []
    for trip_idx, (trip, (pattern_idx, arr, dep)) in enumerate(zip(trips, trip_rows, strict=True)):
        base = dict(trip_idx=trip_idx, pattern_idx=pattern_idx)
        if trip.trip_id not in windows:
            rows.append(base | dict(arr=arr, dep=dep, headway=np.nan, exact=True))
            continue
        template_start = dep[0]
        for s, e, h, exact_times in windows[trip.trip_id]:
            for start in np.arange(s, e, h).tolist():
                shift = start - template_start
                rows.append(
                    base | dict(arr=arr + shift, dep=dep + shift, headway=h, exact=exact_times)
                )

    by_pattern: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_pattern[r["pattern_idx"]].append(i)
    run_row = np.zeros(len(rows), dtype=np.int64)
    # Runs numbered pattern by pattern, sorted by start within each pattern.
    order: list[int] = []
    patterns: list[Pattern] = []
    key_of = {v: k for k, v in builder.keys.items()}
    for pattern_idx in range(len(builder.stop_dist)):
        members = sorted(by_pattern.get(pattern_idx, []), key=lambda i: rows[i]["dep"][0])
        first_run = len(order)
        order.extend(members)
        shape_idx, stop_ids = key_of[pattern_idx]
        arr = np.array([rows[i]["arr"] for i in members]).reshape(len(members), len(stop_ids))
        dep = np.array([rows[i]["dep"] for i in members]).reshape(len(members), len(stop_ids))
        patterns.append(
            Pattern(
                shape_idx=shape_idx,
                stop_ids=stop_ids,
                stop_dist_m=builder.stop_dist[pattern_idx],
                runs=np.arange(first_run, first_run + len(members), dtype=np.int64),
                arrival_s=arr,
                departure_s=dep,
            )
        )
        run_row[first_run : first_run + len(members)] = np.arange(len(members))
    ordered = [rows[i] for i in order]
    run_trip = np.array([r["trip_idx"] for r in ordered], dtype=np.int64)
    start_s = np.array([r["dep"][0] for r in ordered], dtype=float)
    runs = Runs(
        trip_idx=run_trip,
        pattern_idx=np.array([r["pattern_idx"] for r in ordered], dtype=np.int64),
        row=run_row,
        start_s=start_s,
        end_s=np.array([r["arr"][-1] for r in ordered], dtype=float),
        headway_s=np.array([r["headway"] for r in ordered], dtype=float),
        exact_times=np.array([r["exact"] for r in ordered], dtype=np.bool_),
        next_in_block=_chain_blocks(trips, run_trip, start_s),
    )
    return runs, patterns


def _chain_blocks(trips: list[Trip], run_trip: IntArray, start_s: FloatArray) -> IntArray:
    """Each run's successor in its block (same block_id and service), by start time."""
    nxt = np.full(len(run_trip), NO_INDEX, dtype=np.int64)
    blocks: dict[tuple[str, int], list[int]] = defaultdict(list)
    for run, t in enumerate(run_trip.tolist()):
        trip = trips[t]
        if trip.block_id:
            blocks[(trip.block_id, trip.service_idx)].append(run)
    for members in blocks.values():
        members.sort(key=lambda r: start_s[r])
        for a, b in itertools.pairwise(members):
            nxt[a] = b
    return nxt


def _services_by_date(feed: Any, service_index: dict[str, int]) -> dict[str, frozenset[int]]:
    out: dict[str, set[int]] = defaultdict(set)
    if feed.calendar is not None:
        for row in feed.calendar.itertuples():
            sid = service_index.get(str(row.service_id))
            if sid is None:
                continue
            day = dt.datetime.strptime(str(row.start_date), "%Y%m%d").date()
            last = dt.datetime.strptime(str(row.end_date), "%Y%m%d").date()
            flags = [int(getattr(row, name)) for name in gk.WEEKDAYS]
            while day <= last:
                if flags[day.weekday()]:
                    out[day.strftime("%Y%m%d")].add(sid)
                day += dt.timedelta(days=1)
    if feed.calendar_dates is not None:
        for row in feed.calendar_dates.itertuples():
            sid = service_index.get(str(row.service_id))
            if sid is None:
                continue
            if int(row.exception_type) == 1:
                out[str(row.date)].add(sid)
            elif int(row.exception_type) == 2:
                out[str(row.date)].discard(sid)
    return {date: frozenset(s) for date, s in out.items()}


# --- small helpers ------------------------------------------------------------------------


def _present(value: object) -> bool:
    """False for None, NaN, pandas' NA and NaT, and blank text."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return False
    return not (value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)))


def _text(row: Any, name: str) -> str:
    value = getattr(row, name, None)
    return str(value) if _present(value) else ""


def _col(df: pd.DataFrame | None, name: str) -> list[str]:
    return [] if df is None else df[name].astype(str).tolist()
