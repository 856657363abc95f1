"""The prepared transit network: shapes in metres, stops placed along them, scheduled runs.

A `Network` is built once from a GTFS feed (see `tracker.gtfs.load`) and then only read. Everything
the matcher needs per ping is an array lookup here:

- shapes projected to a local metric CRS, cut into segments held in a spatial index (`snap`);
- *patterns*: trips sharing a shape and a stop sequence, with each stop's distance along the shape;
- *runs*: one row per scheduled trip instance (a plain trip, or one departure of a frequency-based
  trip), with its stop times as seconds from the service day's origin (noon minus 12 h);
- the services active on each date, and each run's successor in its block.

Pure: no I/O, no clock. Distances in metres, times in seconds.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import shapely
from pyproj import CRS, Transformer

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

NO_INDEX = -1


@dataclass(frozen=True, slots=True)
class Route:
    route_id: str
    short_name: str
    long_name: str
    color: str  # "RRGGBB", may be empty
    text_color: str
    route_type: int


@dataclass(frozen=True, slots=True)
class Trip:
    trip_id: str
    route_idx: int
    service_idx: int
    direction_id: int  # -1 when the feed does not say
    shape_idx: int
    pattern_idx: int
    block_id: str  # "" when none
    headsign: str
    stop_sequences: tuple[int, ...]  # stop_times.txt's stop_sequence of each stop, in order


@dataclass(frozen=True, slots=True)
class Shape:
    shape_id: str
    xy_m: FloatArray  # (n, 2) projected points
    dist_m: FloatArray  # (n,) cumulative distance along the shape
    from_stops: bool  # made from the stops because the feed had no shape for some trips

    @property
    def length_m(self) -> float:
        return float(self.dist_m[-1])


@dataclass(frozen=True, slots=True)
class Pattern:
    """Trips that follow one shape through one sequence of stops."""

    shape_idx: int
    stop_ids: tuple[str, ...]
    stop_dist_m: FloatArray  # (k,) non-decreasing distance of each stop along the shape
    runs: IntArray  # run indices using this pattern, sorted by start time
    arrival_s: FloatArray  # (len(runs), k) seconds from the service-day origin
    departure_s: FloatArray  # (len(runs), k)


@dataclass(frozen=True, slots=True)
class Runs:
    """Scheduled trip instances, one row each, indexed by run number."""

    trip_idx: IntArray
    pattern_idx: IntArray
    row: IntArray  # row of the run in its pattern's time matrices
    start_s: FloatArray  # first departure, seconds from the service-day origin
    end_s: FloatArray  # last arrival
    headway_s: FloatArray  # scheduled headway of a frequency-based run, else NaN
    exact_times: BoolArray  # False for frequency runs whose departures are not scheduled exactly
    next_in_block: IntArray  # the run the same vehicle runs next, or NO_INDEX

    def __len__(self) -> int:
        return len(self.trip_idx)


@dataclass(frozen=True, slots=True)
class SnapCandidates:
    """Where a batch of points lies near shapes: one row per (point, shape, pass of the shape)."""

    point: IntArray  # index of the point in the batch
    shape_idx: IntArray
    along_m: FloatArray
    offset_m: FloatArray
    heading_deg: FloatArray  # direction of the shape at the snapped point
    x_m: FloatArray  # snapped position
    y_m: FloatArray


@dataclass(eq=False)
class Network:
    """A GTFS feed prepared for matching. Build with `tracker.gtfs.load.load_network`."""

    feed_hash: str
    timezone: str
    crs_wkt: str
    routes: list[Route]
    trips: list[Trip]
    shapes: list[Shape]
    patterns: list[Pattern]
    runs: Runs
    service_ids: list[str]
    services_by_date: dict[str, frozenset[int]]  # "YYYYMMDD" -> active service indices
    stops: dict[str, tuple[str, float, float]]  # stop_id -> (name, lat, lon)
    warnings: list[str] = field(default_factory=list)

    # --- lookups built on first use (not pickled) ---------------------------------------

    @cached_property
    def trip_index(self) -> dict[str, int]:
        return {t.trip_id: i for i, t in enumerate(self.trips)}

    @cached_property
    def route_index(self) -> dict[str, int]:
        return {r.route_id: i for i, r in enumerate(self.routes)}

    @cached_property
    def runs_of_trip(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for run, trip in enumerate(self.runs.trip_idx.tolist()):
            out.setdefault(trip, []).append(run)
        return out

    @cached_property
    def patterns_of_shape(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for p, pattern in enumerate(self.patterns):
            out.setdefault(pattern.shape_idx, []).append(p)
        return out

    @cached_property
    def run_route(self) -> IntArray:
        trip_route = np.array([t.route_idx for t in self.trips], dtype=np.int64)
        return trip_route[self.runs.trip_idx]

    @cached_property
    def run_service(self) -> IntArray:
        trip_service = np.array([t.service_idx for t in self.trips], dtype=np.int64)
        return trip_service[self.runs.trip_idx]

    @cached_property
    def timetable(self) -> Timetable:
        return Timetable.build(self.patterns, self.runs)

    @cached_property
    def _to_metric(self) -> Transformer:
        return Transformer.from_crs(CRS.from_epsg(4326), CRS.from_wkt(self.crs_wkt), always_xy=True)

    @cached_property
    def _to_wgs84(self) -> Transformer:
        return Transformer.from_crs(CRS.from_wkt(self.crs_wkt), CRS.from_epsg(4326), always_xy=True)

    @cached_property
    def _segments(self) -> _SegmentIndex:
        return _SegmentIndex(self.shapes)

    def __getstate__(self) -> dict[str, object]:
        lazy = {"trip_index", "route_index", "runs_of_trip", "patterns_of_shape", "run_route",
                "run_service", "timetable", "_to_metric", "_to_wgs84", "_segments",
                "_day_origin_cache", "_active_cache", "_run_times_cache",
                "_shape_lists_cache"}  # fmt: skip
        return {k: v for k, v in self.__dict__.items() if k not in lazy}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)

    # --- coordinates ---------------------------------------------------------------------

    def project(self, lat: FloatArray, lon: FloatArray) -> tuple[FloatArray, FloatArray]:
        """WGS84 degrees to metres in the network's CRS."""
        x, y = self._to_metric.transform(lon, lat)
        return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)

    def unproject(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Metres in the network's CRS to (lat, lon) degrees."""
        lon, lat = self._to_wgs84.transform(x, y)
        return np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)

    # --- geometry --------------------------------------------------------------------------

    def snap(self, x_m: FloatArray, y_m: FloatArray, *, radius_m: float) -> SnapCandidates:
        """Every pass of every shape within `radius_m` of each point, nearest spot per pass."""
        return self._segments.snap(x_m, y_m, radius_m)

    def locate_on_shape(
        self,
        shape_idx: int,
        x_m: float,
        y_m: float,
        *,
        from_m: float = -math.inf,
        to_m: float = math.inf,
    ) -> tuple[float, float]:
        """(along_m, offset_m) of the nearest spot on one shape (between two distances along it,
        if given), however far."""
        return self._segments.locate_on_shape(shape_idx, x_m, y_m, from_m, to_m)

    def locate_on_shapes(
        self,
        shape_idx: Sequence[int],
        x_m: FloatArray,
        y_m: FloatArray,
        *,
        from_m: Sequence[float],
        to_m: Sequence[float],
    ) -> tuple[FloatArray, FloatArray]:
        """`locate_on_shape` for many points at once, each on its own shape and stretch:
        (along_m, offset_m) arrays, the same numbers as one call per point."""
        return self._segments.locate_on_shapes(shape_idx, x_m, y_m, from_m, to_m)

    def point_at(self, shape_idx: int, along_m: float) -> tuple[float, float]:
        """Projected (x, y) of the spot `along_m` metres along a shape.

        `np.interp`'s arithmetic on plain floats (called once per value, where numpy's per-call
        overhead would dominate), so the numbers are those of `points_at` to the last bit: the
        segment is the last one starting at or before the spot (repeated distances: the last of
        them), a spot on a shape point or outside the shape takes that point, and in between
        `slope * (along - d0) + v0`, retried from the segment's end if that gives NaN. NaN gives
        NaN, except on a one-point shape (numpy's special case: always that point).
        """
        dist, xs, ys = self._shape_lists(shape_idx)
        if len(dist) == 1:
            return xs[0], ys[0]
        if math.isnan(along_m):
            return along_m, along_m
        j = bisect.bisect_right(dist, along_m) - 1
        if j < 0:
            return xs[0], ys[0]
        if j >= len(dist) - 1 or dist[j] == along_m:
            return xs[j], ys[j]
        return _interp_step(dist, xs, j, along_m), _interp_step(dist, ys, j, along_m)

    def _shape_lists(self, shape_idx: int) -> tuple[list[float], list[float], list[float]]:
        """(dist_m, x, y) of a shape's points as lists (cached per shape)."""
        cache: dict[int, tuple[list[float], list[float], list[float]]] = self.__dict__.setdefault(
            "_shape_lists_cache", {}
        )
        found = cache.get(shape_idx)
        if found is None:
            shape = self.shapes[shape_idx]
            found = cache[shape_idx] = (
                shape.dist_m.tolist(),
                shape.xy_m[:, 0].tolist(),
                shape.xy_m[:, 1].tolist(),
            )
        return found

    def points_at(self, shape_idx: IntArray, along_m: FloatArray) -> tuple[FloatArray, FloatArray]:
        """`point_at` for many spots (x and y arrays), one numpy call per shape among them."""
        x = np.empty(len(along_m))
        y = np.empty(len(along_m))
        for s in np.unique(shape_idx).tolist():
            on = shape_idx == s
            shape = self.shapes[s]
            x[on] = np.interp(along_m[on], shape.dist_m, shape.xy_m[:, 0])
            y[on] = np.interp(along_m[on], shape.dist_m, shape.xy_m[:, 1])
        return x, y

    # --- time ----------------------------------------------------------------------------------

    def day_origin(self, service_date: dt.date) -> float:
        """Epoch seconds of the service day's origin: noon minus 12 h, local time (GTFS rule)."""
        cache: dict[dt.date, float] = self.__dict__.setdefault("_day_origin_cache", {})
        origin = cache.get(service_date)
        if origin is None:
            noon = dt.datetime.combine(service_date, dt.time(12), tzinfo=ZoneInfo(self.timezone))
            origin = cache[service_date] = noon.timestamp() - 12 * 3600
        return origin

    def local_date(self, epoch_s: float) -> dt.date:
        return dt.datetime.fromtimestamp(epoch_s, ZoneInfo(self.timezone)).date()

    def active_runs(self, service_date: dt.date) -> BoolArray:
        """Which runs operate on a service date (calendar.txt and calendar_dates.txt)."""
        cache: dict[dt.date, BoolArray] = self.__dict__.setdefault("_active_cache", {})
        active = cache.get(service_date)
        if active is None:
            services = self.services_by_date.get(service_date.strftime("%Y%m%d"), frozenset())
            by_service = np.zeros(len(self.service_ids), dtype=np.bool_)
            by_service[list(services)] = True
            active = cache[service_date] = by_service[self.run_service]
        return active

    def scheduled_time_s(self, run: int, along_m: float) -> float:
        """Scheduled time at a distance along the run's shape (between stops: linear).

        The same arithmetic as `schedule_at`, on plain floats: called once per ping with a
        trip_id, where numpy's per-call overhead would dominate.
        """
        dists, departures, arrivals = self._run_times(run)
        k = bisect.bisect_right(dists, along_m) - 1
        if k < 0:
            return departures[0]
        if k >= len(dists) - 1:
            return arrivals[-1]
        span = dists[k + 1] - dists[k]
        frac = (along_m - dists[k]) / span if span > 0 else 0.0
        return departures[k] + frac * (arrivals[k + 1] - departures[k])

    def _run_times(self, run: int) -> tuple[list[float], list[float], list[float]]:
        """(stop distances, departures, arrivals) of one run as lists (cached per run)."""
        cache: dict[int, tuple[list[float], list[float], list[float]]] = self.__dict__.setdefault(
            "_run_times_cache", {}
        )
        found = cache.get(run)
        if found is None:
            pattern = self.patterns[int(self.runs.pattern_idx[run])]
            row = int(self.runs.row[run])
            found = cache[run] = (
                pattern.stop_dist_m.tolist(),
                pattern.departure_s[row].tolist(),
                pattern.arrival_s[row].tolist(),
            )
        return found


def _interp_step(xp: list[float], fp: list[float], j: int, x: float) -> float:
    """`np.interp(x, xp, fp)` for xp[j] < x < xp[j + 1], its arithmetic step by step."""
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    value = slope * (x - xp[j]) + fp[j]
    if math.isnan(value):  # numpy tries from the other end, then the equal values
        value = slope * (x - xp[j + 1]) + fp[j + 1]
        if math.isnan(value) and fp[j] == fp[j + 1]:
            value = fp[j]
    return value


def schedule_at(pattern: Pattern, rows: IntArray, along_m: float) -> FloatArray:
    """Scheduled times of several runs of one pattern at one distance along the shape.

    Before the first stop: its departure; after the last: its arrival; at a stop: its departure;
    between stops: linear from the departure at one to the arrival at the next.
    """
    dists = pattern.stop_dist_m
    k = int(np.searchsorted(dists, along_m, side="right")) - 1
    if k < 0:
        return np.asarray(pattern.departure_s[rows, 0], dtype=np.float64)
    if k >= len(dists) - 1:
        return np.asarray(pattern.arrival_s[rows, -1], dtype=np.float64)
    span = float(dists[k + 1] - dists[k])
    frac = (along_m - float(dists[k])) / span if span > 0 else 0.0
    dep = pattern.departure_s[rows, k]
    return np.asarray(dep + frac * (pattern.arrival_s[rows, k + 1] - dep), dtype=np.float64)


class SortedGroups:
    """Several sorted float arrays ("groups") bisected all at once, exactly like `bisect`.

    `bisect(group, value, side=...)` gives, for each (group g, value v) pair, the position in the
    concatenated groups (`start[g]` + `bisect_left/right(groups[g], v)`). Each stored value is
    replaced by its rank among all distinct values, and tagged with its group: `g * stride +
    rank`, a sorted int64 array. A query ranks its value the same way (searchsorted on the
    distinct values, the side carrying over) and looks up `g * stride + rank`. Integers
    compare exactly, so this is the plain per-group bisect to the last bit.
    """

    def __init__(self, groups: Sequence[FloatArray]) -> None:
        lengths = np.array([len(g) for g in groups], dtype=np.int64)
        self.start: IntArray = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate(groups) if groups else np.zeros(0)
        if any(bool((np.diff(g) < 0).any()) for g in groups):
            raise ValueError("SortedGroups: every group must be sorted ascending")
        self.values: FloatArray = np.asarray(flat, dtype=np.float64)
        self._distinct = np.unique(self.values)
        self._stride = len(self._distinct) + 1
        group_of = np.repeat(np.arange(len(groups), dtype=np.int64), lengths)
        self._codes = group_of * self._stride + np.searchsorted(self._distinct, self.values)

    def bisect(self, group: IntArray, value: FloatArray, *, side: str) -> IntArray:
        """Position in the concatenation of `bisect_<side>(groups[g], v)` per (g, v)."""
        rank = np.searchsorted(self._distinct, value, side="left" if side == "left" else "right")
        return np.searchsorted(self._codes, group * self._stride + rank, side="left")


@dataclass(frozen=True, slots=True)
class Timetable:
    """Every pattern's runs and stop times in flat arrays, for many look-ups in one numpy pass.

    Pattern p's runs (by start time) are `run[starts.start[p]:starts.start[p + 1]]`, their start
    times bisected by `starts`; its stop distances are group p of `stops`; its time matrices are
    stored row-major from `time_start[p]`: run row r at stop k is at `time_start[p] + r *
    n_stops[p] + k` of `departure_s` / `arrival_s`.
    """

    run: IntArray
    starts: SortedGroups
    stops: SortedGroups
    n_stops: IntArray
    time_start: IntArray
    departure_s: FloatArray
    arrival_s: FloatArray

    @classmethod
    def build(cls, patterns: Sequence[Pattern], runs: Runs) -> Timetable:
        sizes = np.array([p.departure_s.size for p in patterns], dtype=np.int64)
        flat = [np.zeros(0)]
        return cls(
            run=np.concatenate([p.runs for p in patterns] + [np.zeros(0, np.int64)]),
            starts=SortedGroups([runs.start_s[p.runs] for p in patterns]),
            stops=SortedGroups([p.stop_dist_m for p in patterns]),
            n_stops=np.array([len(p.stop_dist_m) for p in patterns], dtype=np.int64),
            time_start=(np.cumsum(sizes) - sizes).astype(np.int64),
            departure_s=np.concatenate([p.departure_s.ravel() for p in patterns] + flat),
            arrival_s=np.concatenate([p.arrival_s.ravel() for p in patterns] + flat),
        )

    def schedule_at(
        self, pattern: IntArray, row: IntArray, along_m: FloatArray, *, spot: IntArray | None = None
    ) -> FloatArray:
        """`schedule_at(patterns[pattern[i]], [row[i]], along_m[i])` for every i: the same
        arithmetic, element by element.

        With `spot`, `pattern` and `along_m` are per spot and element i is run row `row[i]` at
        spot `spot[i]`: the stops around a spot are found once for all the runs timed there.
        """
        first_stop = self.stops.start[pattern]
        k = self.stops.bisect(pattern, along_m, side="right") - first_stop - 1
        n = self.n_stops[pattern]
        between = (k >= 0) & (k < n - 1)
        k0 = np.where(between, k, 0)
        d0 = self.stops.values[first_stop + k0]
        span = self.stops.values[first_stop + np.where(between, k + 1, 0)] - d0
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(span > 0, (along_m - d0) / span, 0.0)
        before = k < 0
        if spot is not None:
            pattern, n, between, k0 = pattern[spot], n[spot], between[spot], k0[spot]
            frac, before = frac[spot], before[spot]
        base = self.time_start[pattern] + row * n
        at = base + k0
        dep = self.departure_s[at]  # k0 is 0 before the first stop: the first departure
        interpolated = dep + frac * (self.arrival_s[at + between] - dep)
        return np.where(before, dep, np.where(between, interpolated, self.arrival_s[base + n - 1]))


_NARROW_CHUNK = 4  # see `_SegmentIndex.snap`


class _SegmentIndex:
    """All shape segments in an STRtree, with their geometry as flat arrays for fast maths."""

    def __init__(self, shapes: list[Shape]) -> None:
        starts, ends, shape_of, dist0 = [], [], [], []
        for idx, shape in enumerate(shapes):
            xy = shape.xy_m
            starts.append(xy[:-1])
            ends.append(xy[1:])
            shape_of.append(np.full(len(xy) - 1, idx, dtype=np.int64))
            dist0.append(shape.dist_m[:-1])
        a = np.concatenate(starts) if starts else np.zeros((0, 2))
        b = np.concatenate(ends) if ends else np.zeros((0, 2))
        self.ax, self.ay = a[:, 0].copy(), a[:, 1].copy()
        self.dx, self.dy = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        self.len2 = self.dx**2 + self.dy**2
        self.length = np.sqrt(self.len2)
        self.shape = np.concatenate(shape_of) if shape_of else np.zeros(0, dtype=np.int64)
        self.dist0 = np.concatenate(dist0) if dist0 else np.zeros(0)
        self.heading = np.degrees(np.arctan2(self.dx, self.dy)) % 360.0
        self.first_seg = np.searchsorted(self.shape, np.arange(len(shapes) + 1))
        # The same as plain lists, for bisecting one point at a time.
        self.first_seg_list: list[int] = self.first_seg.tolist()
        self.dist0_of_shape: list[list[float]] = [
            self.dist0[self.first_seg_list[i] : self.first_seg_list[i + 1]].tolist()
            for i in range(len(shapes))
        ]
        self.degenerate = bool((self.len2 == 0).any())  # zero-length segments, t = 0/0
        self.bx, self.by = b[:, 0].copy(), b[:, 1].copy()
        self._chunks_by_radius: dict[float, _Chunks] = {}
        # Exact ties in `snap` (a point nearest a vertex that two segments share) go to the
        # segment a plain STRtree of the segments lists first, as when snapping queried that
        # tree directly: the answers stay the same to the last bit.
        tree = shapely.STRtree(shapely.linestrings(np.stack([a, b], axis=1)))
        everywhere = shapely.box(-1e12, -1e12, 1e12, 1e12)
        self.tie_rank = np.empty(len(self.ax), dtype=np.int64)
        self.tie_rank[tree.query(everywhere)] = np.arange(len(self.ax))

    def _project(
        self, seg: IntArray, x: FloatArray, y: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Nearest points of segments `seg` to points (x, y): (t, offset, cx, cy)."""
        ax, ay, dx, dy = self.ax[seg], self.ay[seg], self.dx[seg], self.dy[seg]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.clip(((x - ax) * dx + (y - ay) * dy) / self.len2[seg], 0.0, 1.0)
        if self.degenerate:
            t = np.nan_to_num(t)
        cx, cy = ax + t * dx, ay + t * dy
        return t, np.hypot(x - cx, y - cy), cx, cy

    def snap(self, x: FloatArray, y: FloatArray, radius_m: float) -> SnapCandidates:
        """Every pass of every shape within `radius_m` of each point, nearest spot per pass.

        The tree holds *chunks* (runs of consecutive segments of one shape, at most `radius_m`
        * 2 long), each boxed with a margin of `radius_m`: a plain box query finds the chunks
        that may be near a point, then numpy measures all their segments at once, as a
        (pair, segment-in-chunk) matrix. A chunk is too short for a pass to break inside it,
        so a pass is a series of chunks of one shape with no gap over 2 * radius_m + 1 m
        between their nearby segments. Of each pass, the nearest spot wins (ties: the first
        along the shape).

        The tree of chunks returns about 15 boxes per point where a tree of segments with
        `dwithin` returned 120 segments, each tested by GEOS; this is ~3x faster.
        """
        chunks = self._chunks(radius_m)
        point, chunk = chunks.tree.query(shapely.points(x, y))
        point, chunk = point.astype(np.int64), chunk.astype(np.int64)
        # Along long segments a chunk holds only a few: the pairs of such chunks are measured
        # in a narrower matrix (each pair's numbers do not depend on the matrix's width), unless
        # the pairs are too few to be worth a second pass (one point: tens of pairs).
        parts = []
        if len(chunk) >= 256:
            short = chunks.count[chunk] <= _NARROW_CHUNK
            parts = [
                self._nearest_in_chunks(chunks, point[which], chunk[which], x, y, radius_m, width)
                for which, width in ((short, _NARROW_CHUNK), (~short, chunks.max_count))
                if which.any()
            ]
        if not parts:
            parts = [
                self._nearest_in_chunks(chunks, point, chunk, x, y, radius_m, chunks.max_count)
            ]
        if len(parts) == 1:
            point, chunk, seg, offset, along, cx, cy, first_along, last_along = parts[0]
        else:
            point, chunk, seg, offset, along, cx, cy, first_along, last_along = (
                np.concatenate(arrays) for arrays in zip(*parts, strict=True)
            )
        shape = self.shape[seg]
        # Chunks are numbered along each shape, shape after shape: sorting by (point, chunk)
        # lists each point's nearby stretches in order; a pass breaks at a gap.
        order = np.argsort(point * len(chunks.first) + chunk)  # (point, chunk) pairs are unique
        point, shape, along, offset = point[order], shape[order], along[order], offset[order]
        seg, cx, cy = seg[order], cx[order], cy[order]
        first_along, last_along = first_along[order], last_along[order]
        new_group = np.ones(len(point), dtype=np.bool_)
        if len(point) > 1:
            new_group[1:] = (
                (point[1:] != point[:-1])
                | (shape[1:] != shape[:-1])
                | (first_along[1:] - last_along[:-1] > 2.0 * radius_m + 1.0)
            )
        pick = _best_of_groups(new_group, offset, along, self.tie_rank[seg])
        return SnapCandidates(
            point=point[pick],
            shape_idx=shape[pick],
            along_m=along[pick],
            offset_m=offset[pick],
            heading_deg=self.heading[seg[pick]],
            x_m=cx[pick],
            y_m=cy[pick],
        )

    def _nearest_in_chunks(
        self,
        chunks: _Chunks,
        point: IntArray,
        chunk: IntArray,
        x: FloatArray,
        y: FloatArray,
        radius_m: float,
        width: int,
    ) -> tuple[IntArray, IntArray, IntArray, FloatArray, FloatArray, FloatArray, FloatArray,
               FloatArray, FloatArray]:  # fmt: skip
        """For `snap`: of each (point, chunk) pair whose chunk has at most `width` segments and
        comes within `radius_m`, (point, chunk, nearest segment, offset, along, cx, cy, and the
        first and last along of the near segments)."""
        # (pair, k): the k-th segment of the pair's chunk; past the chunk's end, its last one.
        k = np.arange(width)
        seg = chunks.first[chunk, None] + np.minimum(k, chunks.count[chunk, None] - 1)
        px, py = x[point, None], y[point, None]
        t, offset, cx, cy = self._project(seg, px, py)
        along = self.dist0[seg] + t * self.length[seg]
        near = offset <= radius_m
        near &= k < chunks.count[chunk, None]
        keep = near.any(axis=1)
        point, chunk, seg, near = point[keep], chunk[keep], seg[keep], near[keep]
        offset, along, cx, cy = offset[keep], along[keep], cx[keep], cy[keep]
        # Per pair: the nearest segment (ties: the least along, then `tie_rank`), and the span
        # of the near ones.
        masked = np.where(near, offset, np.inf)
        tied = masked == masked.min(axis=1, keepdims=True)
        tied_along = np.where(tied, along, np.inf)
        tied &= tied_along == tied_along.min(axis=1, keepdims=True)
        best_k = np.argmin(np.where(tied, self.tie_rank[seg], len(self.tie_rank)), axis=1)
        rows = np.arange(len(point))
        first_along = np.where(near, along, np.inf).min(axis=1)
        last_along = np.where(near, along, -np.inf).max(axis=1)
        offset, along = offset[rows, best_k], along[rows, best_k]
        seg, cx, cy = seg[rows, best_k], cx[rows, best_k], cy[rows, best_k]
        return point, chunk, seg, offset, along, cx, cy, first_along, last_along

    def _chunks(self, radius_m: float) -> _Chunks:
        """The chunk index for one snapping radius (built on first use)."""
        found = self._chunks_by_radius.get(radius_m)
        if found is None:
            found = self._chunks_by_radius[radius_m] = _Chunks.build(self, radius_m)
        return found

    def locate_on_shape(
        self, shape_idx: int, x: float, y: float, from_m: float, to_m: float
    ) -> tuple[float, float]:
        first, end = int(self.first_seg[shape_idx]), int(self.first_seg[shape_idx + 1])
        dist0 = self.dist0[first:end]
        lo = max(int(np.searchsorted(dist0, from_m, side="right")) - 1, 0)
        hi = max(int(np.searchsorted(dist0, to_m, side="right")), lo + 1)
        seg = np.arange(first + lo, first + hi)
        t, offset, _, _ = self._project(seg, np.full(len(seg), x), np.full(len(seg), y))
        best = int(np.argmin(offset))
        return float(self.dist0[seg[best]] + t[best] * self.length[seg[best]]), float(offset[best])

    def locate_on_shapes(
        self,
        shape_idx: Sequence[int],
        x: FloatArray,
        y: FloatArray,
        from_m: Sequence[float],
        to_m: Sequence[float],
    ) -> tuple[FloatArray, FloatArray]:
        """`locate_on_shape` per point, in one pass: each point's stretch of segments is cut
        as there, all stretches are measured together, and each keeps its first nearest."""
        lo: list[int] = []
        hi: list[int] = []
        for s, from_s, to_s in zip(shape_idx, from_m, to_m, strict=True):
            dist0 = self.dist0_of_shape[s]
            lo_s = max(bisect.bisect_right(dist0, from_s) - 1, 0)
            hi_s = max(bisect.bisect_right(dist0, to_s), lo_s + 1)
            first = self.first_seg_list[s]
            lo.append(first + lo_s)
            hi.append(first + hi_s)
        lo_a, hi_a = np.array(lo, dtype=np.int64), np.array(hi, dtype=np.int64)
        counts = hi_a - lo_a
        seg = ragged_arange(lo_a, counts)
        t, offset, _, _ = self._project(seg, np.repeat(x, counts), np.repeat(y, counts))
        starts = np.cumsum(counts) - counts
        nearest = np.minimum.reduceat(offset, starts)
        # The first segment of each stretch at its minimum, like np.argmin.
        at_min = np.flatnonzero(offset == np.repeat(nearest, counts))
        best = at_min[np.searchsorted(at_min, starts)]
        return self.dist0[seg[best]] + t[best] * self.length[seg[best]], offset[best]


@dataclass(frozen=True, slots=True)
class _Chunks:
    """Consecutive segments of one shape grouped for snapping, with their boxes in a tree."""

    first: IntArray  # first segment of each chunk
    count: IntArray  # segments in each chunk
    max_count: int
    tree: shapely.STRtree  # boxes around the chunks, `radius_m` wider on every side

    MAX_SEGMENTS = 12

    @classmethod
    def build(cls, segments: _SegmentIndex, radius_m: float) -> _Chunks:
        """Chunks of at most MAX_SEGMENTS segments and 2 * radius_m (or one segment) long."""
        first: list[int] = []
        count: list[int] = []
        shape = segments.shape.tolist()
        length = segments.length.tolist()
        chunk_m = 0.0
        for i, (s, ln) in enumerate(zip(shape, length, strict=True)):
            if (not first or shape[first[-1]] != s or count[-1] >= cls.MAX_SEGMENTS
                    or chunk_m + ln > 2.0 * radius_m):  # fmt: skip
                first.append(i)
                count.append(0)
                chunk_m = 0.0
            count[-1] += 1
            chunk_m += ln
        first_a = np.array(first, dtype=np.int64)
        count_a = np.array(count, dtype=np.int64)
        xs = np.minimum(segments.ax, segments.bx), np.maximum(segments.ax, segments.bx)
        ys = np.minimum(segments.ay, segments.by), np.maximum(segments.ay, segments.by)
        if len(first_a):
            boxes = shapely.box(
                np.minimum.reduceat(xs[0], first_a) - radius_m,
                np.minimum.reduceat(ys[0], first_a) - radius_m,
                np.maximum.reduceat(xs[1], first_a) + radius_m,
                np.maximum.reduceat(ys[1], first_a) + radius_m,
            )
        else:
            boxes = np.zeros(0, dtype=object)
        return cls(first_a, count_a, int(count_a.max(initial=1)), shapely.STRtree(boxes))


def _best_of_groups(
    new_group: BoolArray, offset: FloatArray, along: FloatArray, rank: IntArray
) -> IntArray:
    """The best row of each group of consecutive rows (`new_group`: a group starts there), in
    group order: the smallest offset, then the least along, then the least rank (unique).

    Many rows: each key narrows every group in one reduction. Few (one point's): one lexsort,
    which is fewer numpy calls. Both pick the same rows.
    """
    if len(new_group) < 256:
        group = np.cumsum(new_group) - 1
        order = np.lexsort((rank, along, offset, group))
        first = np.ones(len(order), dtype=np.bool_)
        first[1:] = group[order[1:]] != group[order[:-1]]
        return order[first]
    starts = np.flatnonzero(new_group)
    sizes = np.diff(np.append(starts, len(new_group)))
    best = np.ones(len(new_group), dtype=np.bool_)
    for key in (offset, along, rank):
        masked = np.where(best, key, np.inf)
        best &= masked == np.repeat(np.minimum.reduceat(masked, starts), sizes)
    return np.flatnonzero(best)


def ragged_arange(starts: IntArray, counts: IntArray) -> IntArray:
    """Concatenated ranges [starts[i], starts[i] + counts[i]) (counts >= 0)."""
    ends = np.cumsum(counts)
    total = int(ends[-1]) if len(ends) else 0
    return np.repeat(starts - (ends - counts), counts) + np.arange(total)


def angle_diff_deg(a: float, b: float) -> float:
    """Smallest absolute difference between two bearings, 0..180."""
    d = abs(a - b) % 360.0
    return 360.0 - d if d > 180.0 else d


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))
