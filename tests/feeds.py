"""Tiny hand-made GTFS feeds for unit tests.

Every builder takes a folder, writes ``<folder>/<name>.zip`` and returns its path. Conventions
shared by all builders unless a docstring says otherwise:

* Geometry is laid out in a local metric frame of ``(east_m, north_m)`` offsets from an origin
  and converted with :func:`offset_latlon` (equirectangular, R = 6 371 000 m). The origin is
  ``CASABLANCA = (33.5731, -7.5898)``. Coordinates are written unrounded, so
  ``offset_latlon(*CASABLANCA, e, n)`` gives exactly the lat/lon of a point at ``(e, n)``.
  Stops lie on the shape (no lateral offset) and "distance" is along the shape, in metres.
* agency.txt: agency_id "A", agency_name "Test Transit", agency_url https://example.com,
  agency_timezone "Africa/Casablanca". routes.txt: agency_id "A", route_short_name equal to
  route_id, route_type 3. stops.txt: stop_name "Stop <stop_id>".
* Buses run at ``SPEED_MPS`` = 20/3 m/s (24 km/h, 150 s per km) between stops and dwell
  ``DWELL_S`` = 30 s at every middle stop (departure_time = arrival_time + 30 s); the first and
  last stop_time have arrival_time == departure_time. Where a trip's start and end times are
  fixed instead, running time is shared out in proportion to distance (same 30 s dwells).
  Times below are offsets from the trip's first departure, written ``arrival/departure``.
* "every N min from A to B" includes both A and B. A trip id ends with its first departure as
  HHMM (e.g. "L_0615"). Calendar "WK": Monday–Friday, 20260101–20261231.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

Row = dict[str, object]
Tables = dict[str, list[Row]]
Point = tuple[float, float]  # (east_m, north_m) in a local frame

EARTH_RADIUS_M = 6_371_000.0
CASABLANCA: tuple[float, float] = (33.5731, -7.5898)
NEW_YORK: tuple[float, float] = (40.7128, -74.0060)
SPEED_MPS = 20 / 3
DWELL_S = 30
BROKEN_PROBLEMS = ("missing_stops", "bad_time", "unknown_stop", "bad_coordinate")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


# --- writing and small helpers --------------------------------------------------------------


def write_feed(path: Path, tables: dict[str, list[dict[str, object]]]) -> Path:
    """Write `tables` as a GTFS zip at `path` and return `path`.

    Each key ``"stops"`` becomes ``stops.txt``; its header is the union of the rows' keys in
    first-seen order, and a row lacking a key gets an empty value there (so does ``None``).
    Entries carry a fixed timestamp, so the same tables always give the same bytes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, rows in tables.items():
            header = list(dict.fromkeys(key for row in rows for key in row))
            text = io.StringIO()
            writer = csv.DictWriter(text, header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            entry = zipfile.ZipInfo(f"{name}.txt", date_time=(2026, 1, 1, 0, 0, 0))
            archive.writestr(entry, text.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return path


def weekday_tables() -> Tables:
    """An agency in Casablanca's time zone and the weekday service "WK" of 2026, to add to."""
    agency: Row = {"agency_id": "A", "agency_name": "Test Transit"}
    agency |= {"agency_url": "https://example.com", "agency_timezone": "Africa/Casablanca"}
    calendar: Row = {"service_id": "WK", "start_date": "20260101", "end_date": "20261231"}
    for day in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"):
        calendar[day] = int(day not in ("saturday", "sunday"))
    return {"agency": [agency], "calendar": [calendar]}


def add_straight_route(
    tables: Tables,
    route_id: str,
    *,
    north_m: float,
    length_m: int,
    stop_every_m: int,
    starts: Sequence[int],
    trip_s: int,
    long_name: str,
    color: str | None = None,
    headsign: str | None = None,
    headway_until_s: int | None = None,
    headway_s: int | None = None,
) -> None:
    """Route `route_id` (direction_id 0) on shape "{route_id}_line", straight east from
    CASABLANCA, `north_m` north of it; stops "{route_id}0", "{route_id}1", ... every
    `stop_every_m`; a trip "{route_id}_HHMM" per start of `starts`, `trip_s` long, times in
    proportion to distance (arrival = departure). With `headway_until_s` and `headway_s`: one
    headway-only trip from `starts[0]` (frequencies.txt, exact_times 0) instead."""
    route: Row = {"route_id": route_id, "agency_id": "A", "route_type": 3}
    route |= {"route_short_name": route_id, "route_long_name": long_name}
    if color is not None:
        route["route_color"] = color
    tables.setdefault("routes", []).append(route)
    for seq, east_m in enumerate((0.0, float(length_m)), start=1):
        lat, lon = offset_latlon(*CASABLANCA, east_m, north_m)
        point: Row = {"shape_id": f"{route_id}_line", "shape_pt_sequence": seq}
        tables.setdefault("shapes", []).append(point | {"shape_pt_lat": lat, "shape_pt_lon": lon})
    dists = range(0, length_m + 1, stop_every_m)
    for i, dist in enumerate(dists):
        lat, lon = offset_latlon(*CASABLANCA, float(dist), north_m)
        stop: Row = {"stop_id": f"{route_id}{i}", "stop_name": f"Stop {route_id}{i}"}
        tables.setdefault("stops", []).append(stop | {"stop_lat": lat, "stop_lon": lon})
    if headway_until_s is not None and headway_s is not None:
        starts = starts[:1]
        window: Row = {"trip_id": f"{route_id}_{hms(starts[0])[:5].replace(':', '')}"}
        window |= {"start_time": hms(starts[0]), "end_time": hms(headway_until_s)}
        window |= {"headway_secs": headway_s, "exact_times": 0}
        tables.setdefault("frequencies", []).append(window)
    for start in starts:
        trip_id = f"{route_id}_{hms(start)[:5].replace(':', '')}"
        trip: Row = {"route_id": route_id, "service_id": "WK", "trip_id": trip_id}
        trip |= {"direction_id": 0, "shape_id": f"{route_id}_line"}
        if headsign is not None:
            trip["trip_headsign"] = headsign
        tables.setdefault("trips", []).append(trip)
        for i, dist in enumerate(dists):
            at = hms(start + round(trip_s * dist / length_m))
            call: Row = {"trip_id": trip_id, "arrival_time": at, "departure_time": at}
            call |= {"stop_id": f"{route_id}{i}", "stop_sequence": i + 1}
            tables.setdefault("stop_times", []).append(call)


def offset_latlon(lat0: float, lon0: float, east_m: float, north_m: float) -> tuple[float, float]:
    """The (lat, lon) `east_m` east and `north_m` north of (lat0, lon0), equirectangular."""
    lat = lat0 + math.degrees(north_m / EARTH_RADIUS_M)
    lon = lon0 + math.degrees(east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat0))))
    return lat, lon


def hms(seconds: int) -> str:
    """GTFS time of day, hours may exceed 23: ``hms(91800) == "25:30:00"``."""
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"


def secs(time: str) -> int:
    """Seconds of a GTFS time "H:MM:SS"."""
    hours, minutes, seconds = (int(part) for part in time.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _every(first: str, last: str, minutes: int) -> range:
    return range(secs(first), secs(last) + 1, minutes * 60)


def _point_at(line: Sequence[Point], dist: float, right_m: float = 0.0) -> Point:
    """The point `dist` metres along `line`, moved `right_m` to the right of travel."""
    segments = list(itertools.pairwise(line))
    for i, ((x0, y0), (x1, y1)) in enumerate(segments):
        length = math.hypot(x1 - x0, y1 - y0)
        if dist <= length or i == len(segments) - 1:
            ux, uy = (x1 - x0) / length, (y1 - y0) / length
            return x0 + ux * dist + uy * right_m, y0 + uy * dist - ux * right_m
        dist -= length
    raise ValueError("a line needs two points")


def _base(route_id: str, long_name: str, color: str, tz: str = "Africa/Casablanca") -> Tables:
    agency: Row = {"agency_id": "A", "agency_name": "Test Transit"}
    agency |= {"agency_url": "https://example.com", "agency_timezone": tz}
    route: Row = {"route_id": route_id, "agency_id": "A", "route_short_name": route_id}
    route |= {"route_long_name": long_name, "route_type": 3, "route_color": color}
    return {"agency": [agency], "routes": [route]}


def _calendar(service_id: str, days: str, start: str, end: str) -> Row:
    """A calendar.txt row; `days` is seven 0/1 flags, Monday first."""
    flags = {day: int(flag) for day, flag in zip(_DAYS, days, strict=True)}
    return {"service_id": service_id, **flags, "start_date": start, "end_date": end}


def _weekdays_2026() -> list[Row]:
    return [_calendar("WK", "1111100", "20260101", "20261231")]


def _shape(
    t: Tables, shape_id: str, line: Sequence[Point], origin: Point, *, dist: bool = True
) -> None:
    """Add `line` as shape `shape_id` (shape_pt_sequence from 1; shape_dist_traveled if `dist`)."""
    steps = [math.hypot(x1 - x0, y1 - y0) for (x0, y0), (x1, y1) in itertools.pairwise(line)]
    travelled = itertools.accumulate(steps, initial=0.0)
    for seq, ((x, y), along) in enumerate(zip(line, travelled, strict=True), start=1):
        lat, lon = offset_latlon(*origin, x, y)
        row: Row = {"shape_id": shape_id, "shape_pt_lat": lat, "shape_pt_lon": lon}
        row["shape_pt_sequence"] = seq
        if dist:
            row["shape_dist_traveled"] = along
        t.setdefault("shapes", []).append(row)


@dataclass(frozen=True)
class _Pattern:
    """The stops a trip serves, as (stop_id, distance along its `line` in m)."""

    route_id: str
    stops: Sequence[tuple[str, float]]
    line: Sequence[Point]
    shape_id: str | None = None
    direction_id: int | None = None
    duration_s: int | None = None  # first departure to last arrival; None: run at SPEED_MPS
    first_seq: int = 1
    write_dist: bool = True  # shape_dist_traveled in stop_times.txt

    def offsets(self) -> list[tuple[int, int]]:
        """(arrival, departure) of each stop in seconds after the first departure."""
        first, last, n = self.stops[0][1], self.stops[-1][1], len(self.stops)
        if self.duration_s is None:
            running = (last - first) / SPEED_MPS
        else:
            running = self.duration_s - DWELL_S * (n - 2)
        out = []
        for i, (_, dist) in enumerate(self.stops):
            arrival = round(running * (dist - first) / (last - first)) + DWELL_S * max(i - 1, 0)
            out.append((arrival, arrival + (DWELL_S if 0 < i < n - 1 else 0)))
        return out


def _place_stops(t: Tables, p: _Pattern, origin: Point, right_m: float = 0.0) -> None:
    """Add the stops of `p` not yet in stops.txt, on its line (or `right_m` to its right)."""
    known = {row["stop_id"] for row in t.get("stops", [])}
    for stop_id, dist in p.stops:
        if stop_id not in known:
            known.add(stop_id)
            lat, lon = offset_latlon(*origin, *_point_at(p.line, dist, right_m))
            row: Row = {"stop_id": stop_id, "stop_name": f"Stop {stop_id}"}
            t.setdefault("stops", []).append(row | {"stop_lat": lat, "stop_lon": lon})


def _add_trip(
    t: Tables, p: _Pattern, trip_id: str, service_id: str, start_s: int, block_id: str = ""
) -> None:
    """Add one trip of pattern `p` leaving its first stop at `start_s` (seconds after midnight)."""
    trip: Row = {"route_id": p.route_id, "service_id": service_id, "trip_id": trip_id}
    if p.direction_id is not None:
        trip["direction_id"] = p.direction_id
    if p.shape_id is not None:
        trip["shape_id"] = p.shape_id
    if block_id:
        trip["block_id"] = block_id
    t.setdefault("trips", []).append(trip)
    for i, ((stop_id, dist), (arr, dep)) in enumerate(zip(p.stops, p.offsets(), strict=True)):
        row: Row = {"trip_id": trip_id, "arrival_time": hms(start_s + arr)}
        row |= {"departure_time": hms(start_s + dep), "stop_id": stop_id}
        row["stop_sequence"] = p.first_seq + i
        if p.write_dist:
            row["shape_dist_traveled"] = dist
        t.setdefault("stop_times", []).append(row)


def _trip_id(route_id: str, start_s: int) -> str:
    return f"{route_id}_{hms(start_s)[:5].replace(':', '')}"


def _straight(
    t: Tables, route_id: str, km: int, stop_every_m: int, origin: Point, duration_s: int | None
) -> _Pattern:
    """A straight shape "<route_id>_line" running `km` km east from `origin`, with stops
    "<route_id>1", "<route_id>2", ... every `stop_every_m` m from its start, all added to `t`."""
    line = [(0.0, 0.0), (km * 1000.0, 0.0)]
    dists = range(0, km * 1000 + 1, stop_every_m)
    stops = [(f"{route_id}{i}", float(d)) for i, d in enumerate(dists, start=1)]
    p = _Pattern(route_id, stops, line, f"{route_id}_line", duration_s=duration_s)
    _shape(t, f"{route_id}_line", line, origin)
    _place_stops(t, p, origin)
    return p


# --- the feeds ------------------------------------------------------------------------------


def loop_feed(dir: Path) -> Path:
    """``loop.zip``: route "L" on a closed loop; no shape_dist_traveled anywhere.

    Shape "loop": vertices (0, 0), (1000, 0), (1000, 600), (0, 600), (0, 0) — counter-clockwise
    round a 1000 m × 600 m rectangle, 3200 m long, starting and ending at the south-west corner.
    Stops (distance along the loop): L1 (0, 0) at 0 and 3200 m, L2 (1000, 300) at 1300 m,
    L3 (500, 600) at 2100 m, L4 (0, 300) at 2900 m.
    Each trip serves L1, L2, L3, L4, L1 with stop_sequence 2, 3, 4, 5, 6 at +0:00,
    +3:15/+3:45, +5:45/+6:15, +8:15/+8:45, +9:30. Trips "L_0600", "L_0615", ..., "L_0800"
    (9 trips, every 15 min from 06:00 to 08:00), service "WK", shape "loop", no direction_id.
    """
    t = _base("L", "Loop", "1F77B4") | {"calendar": _weekdays_2026()}
    line = [(0.0, 0.0), (1000.0, 0.0), (1000.0, 600.0), (0.0, 600.0), (0.0, 0.0)]
    stops = [("L1", 0.0), ("L2", 1300.0), ("L3", 2100.0), ("L4", 2900.0), ("L1", 3200.0)]
    p = _Pattern("L", stops, line, "loop", first_seq=2, write_dist=False)
    _shape(t, "loop", line, CASABLANCA, dist=False)
    _place_stops(t, p, CASABLANCA)
    for start in _every("06:00:00", "08:00:00", 15):
        _add_trip(t, p, _trip_id("L", start), "WK", start)
    return write_feed(dir / "loop.zip", t)


def variants_feed(dir: Path) -> Path:
    """``variants.zip``: route "V" with two shapes sharing their first 2 km; direction_id 0.

    Shape "V_main": (0, 0), (2000, 0), (3000, 0) — 3 km straight east. Shape "V_branch":
    (0, 0), (2000, 0), (2000, 1000) — 2 km east, then 1 km north. Both 3000 m long, with
    shape_dist_traveled in metres in shapes.txt (0, 2000, 3000) and stop_times.txt.
    Shared stops: V1 (0, 0) at 0 m, V2 (1000, 0) at 1000 m, V3 (2000, 0) at 2000 m; main only:
    VM4 (2500, 0) at 2500 m, VM5 (3000, 0) at 3000 m; branch only: VB4 (2000, 500) at 2500 m,
    VB5 (2000, 1000) at 3000 m. Both variants: +0:00, +2:30/+3:00, +5:30/+6:00, +7:15/+7:45,
    +9:00. Trips every 10 min from 07:00 to 09:00, alternating and starting with main:
    "V_main_0700", "V_branch_0710", "V_main_0720", ..., "V_branch_0850", "V_main_0900"
    (7 main, 6 branch), service "WK".
    """
    t = _base("V", "Variants", "FF7F0E") | {"calendar": _weekdays_2026()}
    shared = [("V1", 0.0), ("V2", 1000.0), ("V3", 2000.0)]
    main_line = [(0.0, 0.0), (2000.0, 0.0), (3000.0, 0.0)]
    branch_line = [(0.0, 0.0), (2000.0, 0.0), (2000.0, 1000.0)]
    main_stops = [*shared, ("VM4", 2500.0), ("VM5", 3000.0)]
    branch_stops = [*shared, ("VB4", 2500.0), ("VB5", 3000.0)]
    variants = [
        _Pattern("V", main_stops, main_line, "V_main", direction_id=0),
        _Pattern("V", branch_stops, branch_line, "V_branch", direction_id=0),
    ]
    for p in variants:
        _shape(t, str(p.shape_id), p.line, CASABLANCA)
        _place_stops(t, p, CASABLANCA)
    for i, start in enumerate(_every("07:00:00", "09:00:00", 10)):
        p = variants[i % 2]
        _add_trip(t, p, _trip_id(str(p.shape_id), start), "WK", start)
    return write_feed(dir / "variants.zip", t)


def two_directions_feed(dir: Path) -> Path:
    """``two_directions.zip``: route "B" both ways along one 3 km north-south street.

    Shape "B_north" (direction_id 0): (0, 0) to (0, 3000). Shape "B_south" (direction_id 1): the
    same two points reversed. shape_dist_traveled in metres in shapes.txt and stop_times.txt.
    Northbound stops BN1..BN5 at north 0, 800, 1600, 2400, 3000 m, 4 m east of the centre line
    (east_m = +4); southbound stops BS1..BS5 at north 3000, 2400, 1600, 800, 0 m, 4 m west
    (east_m = -4), so BSk faces BN(6-k) 8 m away. Distances along the shape: northbound 0, 800,
    1600, 2400, 3000; southbound 0, 600, 1400, 2200, 3000.
    Northbound times +0:00, +2:00/+2:30, +4:30/+5:00, +7:00/+7:30, +9:00; southbound +0:00,
    +1:30/+2:00, +4:00/+4:30, +6:30/+7:00, +9:00. Every 12 min from 06:00 to 10:00 (21 slots)
    one trip leaves each way: "B_N_0600", "B_S_0600", "B_N_0612", ..., "B_S_1000", service "WK".
    Two vehicles: in slots 06:00, 06:24, 06:48, ... block "blk1" runs northbound and "blk2"
    southbound; in slots 06:12, 06:36, ... it is the other way round, so each block alternates
    directions with a 3 min layover at the street's end (blk1 starts northbound, blk2 southbound).
    """
    t = _base("B", "North-South", "2CA02C") | {"calendar": _weekdays_2026()}
    north_line = [(0.0, 0.0), (0.0, 3000.0)]
    positions = (0.0, 800.0, 1600.0, 2400.0, 3000.0)
    north_stops = [(f"BN{i}", d) for i, d in enumerate(positions, start=1)]
    south_stops = [(f"BS{i}", 3000.0 - d) for i, d in enumerate(reversed(positions), start=1)]
    north = _Pattern("B", north_stops, north_line, "B_north", direction_id=0)
    south = _Pattern("B", south_stops, north_line[::-1], "B_south", direction_id=1)
    for p in (north, south):
        _shape(t, str(p.shape_id), p.line, CASABLANCA)
        _place_stops(t, p, CASABLANCA, right_m=4.0)
    for i, start in enumerate(_every("06:00:00", "10:00:00", 12)):
        blocks = ("blk1", "blk2") if i % 2 == 0 else ("blk2", "blk1")
        _add_trip(t, north, _trip_id("B_N", start), "WK", start, blocks[0])
        _add_trip(t, south, _trip_id("B_S", start), "WK", start, blocks[1])
    return write_feed(dir / "two_directions.zip", t)


def overnight_feed(dir: Path) -> Path:
    """``overnight.zip``: route "N" with times past 24:00; service from calendar_dates.txt only.

    No calendar.txt; calendar_dates.txt: service "NIGHT" on 20260320 (a Friday), exception_type 1.
    Shape "N_line": (0, 0) to (10000, 0), 10 km east, with shape_dist_traveled. Stops N1..N6
    every 2000 m (N1 at 0 m, N6 at 10000 m). Africa/Casablanca is UTC+0 on 2026-03-20/21
    (Ramadan), so these local times are also UTC. The fixed times make these slow trips.
    "N_2330": 23:30:00, 23:49:36/23:50:06, 24:09:42/24:10:12, 24:29:48/24:30:18,
    24:49:54/24:50:24, 25:10:00 (crosses midnight between N2 and N3).
    "N_2420": 24:20:00, 24:27:36/24:28:06, 24:35:42/24:36:12, 24:43:48/24:44:18,
    24:51:54/24:52:24, 25:00:00 (wholly after midnight, i.e. on 2026-03-21 00:20–01:00).
    """
    t = _base("N", "Night", "17BECF")
    t["calendar_dates"] = [{"service_id": "NIGHT", "date": "20260320", "exception_type": 1}]
    p = _straight(t, "N", 10, 2000, CASABLANCA, duration_s=secs("1:40:00"))
    _add_trip(t, p, "N_2330", "NIGHT", secs("23:30:00"))
    _add_trip(t, replace(p, duration_s=secs("0:40:00")), "N_2420", "NIGHT", secs("24:20:00"))
    return write_feed(dir / "overnight.zip", t)


def dst_feed(dir: Path) -> Path:
    """``dst.zip``: route "D" in America/New_York on 2026-03-08, when 02:00 EST jumps to 03:00 EDT.

    Located at NEW_YORK = (40.7128, -74.0060) instead of Casablanca. calendar.txt: service "DST",
    sunday only, start_date = end_date = 20260308. Shape "D_line": (0, 0) to (5000, 0), 5 km
    east, with shape_dist_traveled. Stops D1..D6 every 1000 m.
    "D_0030": 00:30:00, 00:41:36/00:42:06, 00:53:42/00:54:12, 01:05:48/01:06:18,
    01:17:54/01:18:24, 01:30:00. "D_1200": the same offsets from 12:00:00 (ends 13:00:00).
    "D_0130" spans the jump: 01:30:00, 01:53:36/01:54:06, 02:17:42/02:18:12, 02:41:48/02:42:18,
    03:05:54/03:06:24, 03:30:00 — its D3 and D4 times do not exist on a local wall clock.
    In UTC, read as local wall-clock times: 00:30 = 05:30Z, 01:30 = 06:30Z, 03:30 = 07:30Z,
    12:00 = 16:00Z; read as the GTFS spec says ("noon minus 12 h" = 2026-03-07 23:00 EST =
    2026-03-08 04:00Z, plus the time): 00:30 = 04:30Z, 01:30 = 05:30Z, 03:30 = 07:30Z,
    12:00 = 16:00Z. D_0130 thus lasts 1 h by the wall clock but 2 h by the spec.
    """
    t = _base("D", "Daylight saving", "9467BD", tz="America/New_York")
    t["calendar"] = [_calendar("DST", "0000001", "20260308", "20260308")]
    hour = _straight(t, "D", 5, 1000, NEW_YORK, duration_s=3600)
    for start, p in (("00:30:00", hour), ("01:30:00", replace(hour, duration_s=7200))):
        _add_trip(t, p, _trip_id("D", secs(start)), "DST", secs(start))
    _add_trip(t, hour, "D_1200", "DST", secs("12:00:00"))
    return write_feed(dir / "dst.zip", t)


def casablanca_ramadan_feed(dir: Path) -> Path:
    """``casablanca_ramadan.zip``: route "R", one trip on a Ramadan date (UTC+0) and a normal one.

    zoneinfo's Africa/Casablanca in 2026: UTC+1, except UTC+0 from 2026-02-15 03:00 local
    (clocks back to 02:00) until 2026-03-22 02:00 local (clocks forward to 03:00). Newer tz data
    (2026 releases, e.g. the tzdata package) also switch to UTC+0 from 2026-09-20, older
    /usr/share/zoneinfo does not, hence a date well before September for UTC+1.
    calendar_dates.txt only: service "RD" on 20260304 (Wednesday, UTC+0) and 20260415
    (Wednesday, UTC+1), exception_type 1. Shape "R_line": (0, 0) to (5000, 0) with
    shape_dist_traveled; stops R1..R6 every 1000 m. Trip "R_0800": 08:00:00, 08:11:36/08:12:06,
    08:23:42/08:24:12, 08:35:48/08:36:18, 08:47:54/08:48:24, 09:00:00 local, i.e.
    08:00Z–09:00Z on 2026-03-04 and 07:00Z–08:00Z on 2026-04-15.
    """
    t = _base("R", "Ramadan", "BCBD22")
    t["calendar_dates"] = [
        {"service_id": "RD", "date": date, "exception_type": 1} for date in ("20260304", "20260415")
    ]
    p = _straight(t, "R", 5, 1000, CASABLANCA, duration_s=3600)
    _add_trip(t, p, "R_0800", "RD", secs("08:00:00"))
    return write_feed(dir / "casablanca_ramadan.zip", t)


def frequency_feed(dir: Path) -> Path:
    """``frequency.zip``: route "F" with two frequency-based trips.

    Shape "F_line": (0, 0) to (4000, 0), 4 km east, with shape_dist_traveled; stops F1..F5 every
    1000 m. Template stop_times +0:00, +2:30/+3:00, +5:30/+6:00, +8:30/+9:00, +11:30, from
    07:00:00 for trip "F_exact" and from 09:00:00 for trip "F_headway"; service "WK".
    frequencies.txt: F_exact 07:00:00–09:00:00, headway_secs 600, exact_times 1 (runs leave at
    07:00, 07:10, ..., 08:50 if end_time is exclusive); F_headway 09:00:00–12:00:00,
    headway_secs 900, exact_times 0.
    """
    t = _base("F", "Frequent", "E377C2") | {"calendar": _weekdays_2026()}
    p = _straight(t, "F", 4, 1000, CASABLANCA, duration_s=None)
    t["frequencies"] = []
    for trip_id, start, end, headway, exact in (
        ("F_exact", "07:00:00", "09:00:00", 600, 1),
        ("F_headway", "09:00:00", "12:00:00", 900, 0),
    ):
        _add_trip(t, p, trip_id, "WK", secs(start))
        row: Row = {"trip_id": trip_id, "start_time": start, "end_time": end}
        t["frequencies"].append(row | {"headway_secs": headway, "exact_times": exact})
    return write_feed(dir / "frequency.zip", t)


def _no_shape_tables() -> Tables:
    t = _base("S", "Shapeless", "8C564B") | {"calendar": _weekdays_2026()}
    line = [(0.0, 0.0), (1200.0, 0.0), (1200.0, 600.0)]
    stops = [("S1", 0.0), ("S2", 600.0), ("S3", 1200.0), ("S4", 1800.0)]
    p = _Pattern("S", stops, line, write_dist=False)
    _place_stops(t, p, CASABLANCA)
    for start in _every("07:00:00", "08:00:00", 30):
        _add_trip(t, p, _trip_id("S", start), "WK", start)
    return t


def no_shape_feed(dir: Path) -> Path:
    """``no_shape.zip``: route "S" without shapes.txt, shape_id or shape_dist_traveled.

    Stops on an L-shaped path: S1 (0, 0), S2 (600, 0), S3 (1200, 0) at the corner, S4 (1200, 600)
    — 600 m apart, 1800 m in all. Trips "S_0700", "S_0730", "S_0800" (service "WK") serve S1..S4
    with stop_sequence 1..4 at +0:00, +1:30/+2:00, +3:30/+4:00, +5:30.
    """
    return write_feed(dir / "no_shape.zip", _no_shape_tables())


def broken_feed(dir: Path, problem: str) -> Path:
    """``broken_<problem>.zip``: :func:`no_shape_feed` with one defect (lines: header = line 1).

    * "missing_stops": no stops.txt at all.
    * "bad_time": stop_times.txt line 3 (trip S_0700, stop_sequence 2, stop S2) has arrival_time
      "25:61:00"; its departure_time stays "07:02:00".
    * "unknown_stop": stop_times.txt line 4 (trip S_0700, stop_sequence 3) has stop_id "NOPE"
      instead of "S3" (S3 is still in stops.txt and served by the other trips).
    * "bad_coordinate": stops.txt line 3 (stop S2) has stop_lat "abc".
    """
    t = _no_shape_tables()
    if problem == "missing_stops":
        del t["stops"]
    elif problem == "bad_time":
        t["stop_times"][1]["arrival_time"] = "25:61:00"
    elif problem == "unknown_stop":
        t["stop_times"][2]["stop_id"] = "NOPE"
    elif problem == "bad_coordinate":
        t["stops"][1]["stop_lat"] = "abc"
    else:
        raise ValueError(f"unknown problem {problem!r}; expected one of {BROKEN_PROBLEMS}")
    return write_feed(dir / f"broken_{problem}.zip", t)
