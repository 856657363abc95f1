"""Operations signals: headways, bunching and gapping, ghost buses, detours.

`OperationsMonitor` is fed the matcher's answers (`observe(pings, matches)`, a batch at a time:
each vehicle's answers in time order, vehicles interleaved) and answers, for a given `now_s`,
what an operator needs to act on (`assess(now_s)` → `Assessment`): the gap between every two
consecutive buses of a route and direction against the scheduled one, headway adherence per
route and direction, and the live alerts, each with a stable `alert_id` and what changed since
the previous assessment (opened / updated / closed). docs/operations.md says what each signal
means, how it is computed, its settings and what it cannot see.

In short:

- **Gap** (`Gap`): a follower's gap is how long ago its leader passed the follower's latest
  position, read off the leader's trace (the recent (time, distance along) points of its trip).
  The leader is the bus of the same route and direction that passed there last (one seen
  lately but not there yet by its trace, a bunch whose fixes leapfrog, at its recent pace).
  Buses on different shapes of a route and direction are compared where their shapes share the
  street (within `shared_street_m`, heading the same way). The scheduled gap is the
  timetable's there: the follower's run's scheduled time minus the latest earlier one of another
  run of the route and direction that passes there that day (the two buses' runs' gap when the
  bus ahead runs the trip scheduled ahead; a cancelled or lost trip ahead leaves a gap); for
  headway-only frequency trips, the headway of frequencies.txt.
- **Headway adherence** (`RouteHeadway`): of the current gaps, the share within
  `headway_band` of the scheduled gap, and the coefficient of variation of the headway
  deviations, std(gap − scheduled) / mean(scheduled) (the Transit Capacity and Quality of Service
  Manual's measure). On frequency lines this is the measure, instead of on-time performance.
- **Bunching / gapping** (`PairAlert`): a gap below `bunching_ratio` / above `gapping_ratio`
  times the scheduled one, with hysteresis; the suggested hold evens out the gaps around one bus:
  hold = clamp((gap behind − gap ahead) / 2, 0, `max_hold_s`), for the follower of a bunch and
  for the bus ahead of a gap (holding the bus behind a gap would widen it).
- **Ghost trips** (`GhostTrip`): trips with exact times, active today, `ghost_grace_s` past their
  scheduled departure and not yet due at their end, that no vehicle has been matched to, on the
  routes in scope. Headway-only frequency trips have no departure to miss: a trip with fewer
  buses on the road than its departures of the last trip length (`ShortService`) is flagged.
- **Silent vehicles** (`SilentVehicle`): a bus whose last answer was mid-trip (in service or off
  route, away from its last stop) and that has been silent for more than `silent_after_s`,
  listed until its trip should have ended.
- **Detours** (`Detour`): `detour_min_pings` consecutive fixes off the trip's shape over at least
  `detour_min_travel_m` of travel, from mid-trip; it ends once `rejoin_pings` fixes in a row are
  back on a shape, with where it left and rejoined (lat/lon and distance along the shape).

Memory is bounded: traces keep `trace_window_s` (and at most `max_trace_points`); a vehicle
silent for `forget_after_s` is forgotten; the trips served and the routes seen are kept for two
service days.

Pure: values in, values out. Nothing here reads the clock: `now_s` is passed in.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tracker.core.model import Match, Ping, State
from tracker.core.network import (
    NO_INDEX,
    BoolArray,
    FloatArray,
    IntArray,
    Network,
    schedule_at,
)

# --- settings --------------------------------------------------------------------------------


class GhostScope(enum.StrEnum):
    """Which routes' scheduled trips may be listed as ghosts (or short of buses)."""

    SEEN = "seen"  # routes a vehicle of this tracker ran on (`served_after_answers`) within
    # `route_memory_s`
    ALL = "all"  # every route of the feed (a feed with routes the city does not track floods)


@dataclass(frozen=True, slots=True)
class OperationsConfig:
    """Settings of the operations signals. Times s, distances m, ratios of the scheduled gap."""

    # vehicles and traces
    stale_after_s: float = 120.0  # a vehicle silent longer leaves the pairs of consecutive buses
    trace_window_s: float = 5400.0  # a vehicle's trace keeps this much of its recent past
    max_trace_points: int = 2000
    trace_step_m: float = 10.0  # a point after this much progress (a stand keeps two)
    forget_after_s: float = 7200.0  # a vehicle silent this long is forgotten
    # headways
    shared_street_m: float = 30.0  # two shapes share a street where they are this close
    start_margin_m: float = 100.0  # a bus is a follower (and serves its trip) past this
    headway_band: float = 0.5  # a gap within ±50 % of the scheduled one adheres
    bunching_ratio: float = 0.25  # a gap below this share of the scheduled one is a bunch
    gapping_ratio: float = 1.5  # above this share, a gap
    alert_hysteresis: float = 0.2  # an open alert closes 20 % past its threshold
    pair_grace_s: float = 300.0  # an open alert with no gap for now (a drop-out) stays this long
    max_hold_s: float = 180.0  # the longest hold suggested
    # ghosts
    ghost_grace_s: float = 300.0  # after the scheduled departure
    ghost_scope: GhostScope = GhostScope.SEEN
    ghost_routes: frozenset[str] | None = None  # if given: only these routes (any scope)
    route_memory_s: float = 36 * 3600.0  # GhostScope.SEEN: how long a route stays in scope
    served_after_answers: int = 5  # in service, past `start_margin_m`, in a row: served
    # silent vehicles
    silent_after_s: float = 360.0  # longer than the 5-min drop-outs devices (and simulator) have
    silent_past_end_s: float = 120.0  # listed until its trip should have ended, and this more
    end_margin_m: float = 200.0  # silent this close to the last stop: the trip has ended
    # detours
    off_shape_m: float = 100.0  # an in-service fix farther from its shape is off it
    detour_min_pings: int = 3  # consecutive fixes off the shape,
    detour_min_travel_m: float = 150.0  # over this much travel (between the fixes), make one
    rejoin_pings: int = 3  # fixes in a row back on a shape end it
    lost_within_s: float = 600.0  # unmatched fixes this soon after one mid-trip are checked
    terminal_margin_m: float = 300.0  # "mid-trip": this far from the first and last stop
    max_path_points: int = 200  # a detour's path is thinned to at most this many points
    detour_history: int = 100  # ended detours kept in `OperationsMonitor.finished_detours`

    def __post_init__(self) -> None:
        if not 0 < self.bunching_ratio < 1 < self.gapping_ratio:
            raise ValueError(
                f"bunching_ratio {self.bunching_ratio} and gapping_ratio {self.gapping_ratio}: "
                "expected 0 < bunching_ratio < 1 < gapping_ratio"
            )
        for name in ("detour_min_pings", "rejoin_pings", "served_after_answers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} is {getattr(self, name)}; expected ≥ 1")


# --- signals ---------------------------------------------------------------------------------


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertKind(enum.StrEnum):
    BUNCHING = "bunching"
    GAPPING = "gapping"
    GHOST_TRIP = "ghost_trip"
    SHORT_SERVICE = "short_service"
    SILENT_VEHICLE = "silent_vehicle"
    DETOUR = "detour"


@dataclass(frozen=True, slots=True)
class Gap:
    """Two consecutive buses of a route and direction: the follower and the bus ahead of it."""

    route_id: str
    direction_id: int | None
    leader_vehicle_id: str
    leader_trip_id: str
    follower_vehicle_id: str
    follower_trip_id: str
    service_date: str  # the follower's
    at_s: float  # the follower's latest fix, epoch s
    shape_id: str  # the follower's shape
    shape_dist_m: float  # where the follower is along it
    lat: float  # the follower's snapped position
    lon: float
    gap_s: float  # the leader passed there this long before the follower got there
    scheduled_gap_s: float | None  # the timetable's gap there (headway-only trips: the headway)
    frequency_based: bool  # the scheduled gap is a frequencies.txt headway

    @property
    def ratio(self) -> float | None:
        """gap_s / scheduled_gap_s (None without a scheduled gap)."""
        if self.scheduled_gap_s is None or not self.scheduled_gap_s > 0:
            return None
        return self.gap_s / self.scheduled_gap_s


@dataclass(frozen=True, slots=True)
class RouteHeadway:
    """Headway adherence of a route and direction, from its current gaps."""

    route_id: str
    direction_id: int | None
    vehicles: int  # buses in service on it now
    gaps: int  # gaps with a scheduled gap
    frequency_based: bool  # its scheduled gaps are headways (frequencies.txt)
    mean_gap_s: float | None
    mean_scheduled_gap_s: float | None
    within_band_share: float | None  # of the gaps within `headway_band` of the scheduled one
    headway_cv: float | None  # std(gap − scheduled) / mean(scheduled); needs two gaps
    bunched: int  # gaps below `bunching_ratio`
    gapped: int  # gaps above `gapping_ratio`


@dataclass(frozen=True, slots=True)
class PairAlert:
    """Bunching (a gap too short) or gapping (too long) between two consecutive buses.

    A bunching alert belongs to its two buses (in either order), a gapping alert to the bus
    ahead of the gap: the bus behind may change while it lasts (a bunch behind swaps places).
    """

    alert_id: str
    kind: AlertKind  # BUNCHING or GAPPING
    severity: Severity
    route_id: str
    direction_id: int | None
    service_date: str
    leader_vehicle_id: str
    leader_trip_id: str
    follower_vehicle_id: str
    follower_trip_id: str
    since_s: float  # when the alert opened (the follower's fix then), epoch s
    at_s: float  # the follower's latest fix
    lat: float  # the follower's position
    lon: float
    shape_dist_m: float
    gap_s: float
    scheduled_gap_s: float
    ratio: float  # gap_s / scheduled_gap_s
    hold_vehicle_id: str  # the bus to hold: the follower of a bunch, the bus ahead of a gap
    hold_s: float  # how long to hold it at its next stop (0: no hold helps)


@dataclass(frozen=True, slots=True)
class GhostTrip:
    """A scheduled trip with exact times that should be running now and has no bus."""

    alert_id: str
    severity: Severity
    route_id: str
    direction_id: int | None
    trip_id: str
    service_date: str
    block_id: str  # "" when none
    first_stop_id: str
    scheduled_departure_s: float  # epoch s
    scheduled_arrival_s: float
    kind: AlertKind = AlertKind.GHOST_TRIP


@dataclass(frozen=True, slots=True)
class ShortService:
    """A headway-only frequency trip with fewer buses on the road than its headway needs."""

    alert_id: str
    severity: Severity
    route_id: str
    direction_id: int | None
    trip_id: str
    service_date: str
    headway_s: float
    buses_needed: int  # its departures of the last trip length: on the road now, if all ran
    buses_seen: int  # vehicles in service on it now
    since_s: float  # short of buses since (epoch s)
    kind: AlertKind = AlertKind.SHORT_SERVICE


@dataclass(frozen=True, slots=True)
class SilentVehicle:
    """A bus that stopped reporting mid-trip (listed until its trip should have ended)."""

    alert_id: str
    severity: Severity
    vehicle_id: str
    route_id: str
    direction_id: int | None
    trip_id: str
    service_date: str
    last_seen_s: float  # its last answer, epoch s
    state: str  # the state of its last answer
    lat: float | None  # where it was last seen on its shape
    lon: float | None
    shape_dist_m: float | None
    delay_s: float | None
    kind: AlertKind = AlertKind.SILENT_VEHICLE


@dataclass(frozen=True, slots=True)
class Detour:
    """A bus persistently off its trip's shape; open until it is back on a shape."""

    alert_id: str
    severity: Severity
    vehicle_id: str
    route_id: str
    direction_id: int | None
    trip_id: str
    service_date: str
    shape_id: str
    started_s: float  # its first fix off the shape, epoch s
    left_lat: float  # where it left the shape (estimated between the fixes either side)
    left_lon: float
    left_shape_dist_m: float
    last_off_s: float  # its latest fix off the shape
    max_offset_m: float  # the farthest a fix was from the shape
    typical_offset_m: float  # the median distance of its fixes from the shape
    off_fixes: int
    path: tuple[tuple[float, float], ...]  # (lat, lon) of its fixes off the shape (thinned)
    # The farthest along the shape the foot of a fix off it came: the stops of its trip after
    # `left_shape_dist_m` and before this are passed, not served (skipped). None: no fix yet.
    reached_shape_dist_m: float | None = None
    ended_s: float | None = None  # its first fix back on a shape
    rejoined_lat: float | None = None
    rejoined_lon: float | None = None
    rejoined_shape_dist_m: float | None = None
    rejoined_shape_id: str | None = None
    kind: AlertKind = AlertKind.DETOUR

    @property
    def active(self) -> bool:
        return self.ended_s is None


Alert = PairAlert | GhostTrip | ShortService | SilentVehicle | Detour


class Change(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class AlertChange:
    change: Change
    alert: Alert  # closed: its last value (a detour: with where it rejoined, if it did)


@dataclass(frozen=True, slots=True)
class Assessment:
    """What `OperationsMonitor.assess` answers for one `now_s`."""

    at_s: float
    gaps: tuple[Gap, ...]
    routes: tuple[RouteHeadway, ...]
    alerts: tuple[Alert, ...]  # live, sorted by kind, route and id
    changes: tuple[AlertChange, ...]  # since the previous assessment


# --- per-vehicle state -------------------------------------------------------------------------


@dataclass(slots=True)
class _Trip:
    """A vehicle's current trip, as its answers say."""

    trip_id: str
    service_date: str
    day: dt.date
    route_id: str
    direction_id: int | None
    shape_idx: int
    first_stop_m: float
    last_stop_m: float
    run: int  # NO_INDEX: a headway-only frequency trip (no run to keep to)
    headway_s: float | None
    first_m: float  # where along it its first answer was
    reached_m: float  # the farthest along it an answer in service was
    answers: int = 0  # in service, past the start margin


@dataclass(slots=True)
class _Trace:
    """Recent (time, distance along) points of a vehicle on one shape, on trips of one route and
    direction; the distance is the running maximum (progress never goes back), for `passage`."""

    shape_idx: int
    route_id: str
    direction_id: int | None
    trip_id: str  # the latest trip on it
    t: list[float] = field(default_factory=list)
    along: list[float] = field(default_factory=list)

    def add(self, t_s: float, along_m: float, config: OperationsConfig) -> None:
        """A point, unless the vehicle has hardly moved: then a stand keeps two points, when
        it got there and the latest time it was still there (what `passage` needs)."""
        if self.t:
            along_m = max(along_m, self.along[-1])
            if along_m - self.along[-1] < config.trace_step_m:
                standing = (
                    len(self.t) >= 2 and self.along[-1] - self.along[-2] < config.trace_step_m
                )
                if standing and t_s - self.t[-2] < 600.0:
                    self.t[-1] = t_s  # the stand goes on
                    return
        self.t.append(t_s)
        self.along.append(along_m)
        cut = bisect.bisect_left(self.t, t_s - config.trace_window_s)
        cut = max(cut, len(self.t) - config.max_trace_points)
        if cut > 32 or (cut > 0 and len(self.t) > config.max_trace_points):
            del self.t[:cut]
            del self.along[:cut]

    def passage(self, along_m: float) -> float | None:
        """When the vehicle first got to `along_m`, by the trace (None: not there yet, or
        before the trace starts)."""
        if not self.along or self.along[-1] < along_m or self.along[0] > along_m:
            return None
        i = bisect.bisect_left(self.along, along_m)
        if i == 0:
            return self.t[0]
        a0, a1 = self.along[i - 1], self.along[i]
        t0, t1 = self.t[i - 1], self.t[i]
        return t0 + (t1 - t0) * (along_m - a0) / (a1 - a0) if a1 > a0 else t1

    def pass_on(self, along_m: float) -> float | None:
        """When the vehicle would get to `along_m`, beyond its trace, at its pace of the last
        minute (None: it is not moving, or the trace is too short to tell)."""
        j = bisect.bisect_left(self.t, self.t[-1] - 60.0)
        elapsed = self.t[-1] - self.t[j]
        if elapsed < 20.0:
            return None
        speed = (self.along[-1] - self.along[j]) / elapsed
        if speed < 1.0:
            return None
        return self.t[-1] + (along_m - self.along[-1]) / speed

    def along_at(self, t_s: float) -> float | None:
        """How far along the vehicle was at `t_s`, by the trace (None: before it starts)."""
        if not self.t or t_s < self.t[0]:
            return None
        i = bisect.bisect_right(self.t, t_s)
        if i >= len(self.t):
            return self.along[-1]
        t0, t1 = self.t[i - 1], self.t[i]
        a0, a1 = self.along[i - 1], self.along[i]
        return a0 + (a1 - a0) * (t_s - t0) / (t1 - t0) if t1 > t0 else a1


@dataclass(slots=True)
class _OffFix:
    t_s: float
    lat: float
    lon: float
    x_m: float
    y_m: float


@dataclass(slots=True)
class _OpenDetour:
    alert: Detour
    last_fix: _OffFix  # its latest fix off the shape
    back: list[Match] = field(default_factory=list)  # fixes back on a shape, in a row
    offsets_m: list[float] = field(default_factory=list)  # of its fixes off the shape


@dataclass(slots=True)
class _Vehicle:
    vehicle_id: str
    last_s: float = -math.inf  # its latest answer (not rejected)
    last: Match | None = None
    trip: _Trip | None = None
    trace: _Trace | None = None  # on its current shape
    old_trace: _Trace | None = None  # on the shape before (it still tells when it passed)
    on: Match | None = None  # its latest fix on its shape, in service
    off: list[_OffFix] = field(default_factory=list)  # fixes off the shape since `on`
    detour: _OpenDetour | None = None


# --- the monitor -------------------------------------------------------------------------------

_SAMPLE_M = 25.0  # shapes are compared every this many metres (`_shared_streets`)
_BACKTRACK_M = 1000.0  # this far back along the same shape (or half of it): a new trace
_MAX_FOOT_M = 3000.0  # a detour's fixes are located on this stretch of the shape either side
_MAX_OFF_FIXES = 50  # fixes off the shape kept before a detour opens
_TIE_S = 30.0  # buses that passed a spot this close in time are a bunch there


class OperationsMonitor:
    """Operations signals of one network from a stream of the matcher's answers (see the
    module). Not thread-safe; `observe` and `assess` calls should come in time order."""

    def __init__(self, network: Network, config: OperationsConfig | None = None) -> None:
        self.network = network
        self.config = config or OperationsConfig()
        self._vehicles: dict[str, _Vehicle] = {}
        self._shape_index = {s.shape_id: i for i, s in enumerate(network.shapes)}
        self._served: set[tuple[int, str]] = set()  # (run, service date) run by a bus
        self._run_seen_s: dict[tuple[int, str], float] = {}  # (run, date): a bus on it, last
        self._route_seen_s: dict[str, float] = {}
        self._first_s = math.inf  # the first answer observed
        self._live: dict[str, Alert] = {}
        self._finished: list[Detour] = []  # detours ended since the last assessment
        self._short_since: dict[tuple[int, str], float] = {}
        self._shared: dict[int, dict[int, list[float]]] = {}  # see `_shared_streets`
        self._pair_ids: dict[_PairKey, str] = {}  # open bunching/gapping alerts
        self._scheduled_cache: dict[tuple[int, str, int], float | None] = {}
        self._patterns_of: dict[tuple[str, int | None], list[int]] = {}  # route, direction
        for p, pattern in enumerate(network.patterns):
            if len(pattern.runs):
                trip = network.trips[int(network.runs.trip_idx[pattern.runs[0]])]
                key = (network.routes[trip.route_idx].route_id,
                       trip.direction_id if trip.direction_id >= 0 else None)  # fmt: skip
                self._patterns_of.setdefault(key, []).append(p)
        self._dates: dict[str, dt.date] = {}
        self._pruned_on: dt.date | None = None
        self._previous_in_block = [NO_INDEX] * len(network.runs)
        for run, following in enumerate(network.runs.next_in_block.tolist()):
            if following >= 0:
                self._previous_in_block[following] = run
        self.finished_detours: list[Detour] = []  # the latest ones, for history (bounded)

    # --- feeding -----------------------------------------------------------------------------

    def observe(self, pings: Sequence[Ping], matches: Sequence[Match]) -> None:
        """Take a batch of the matcher's answers, with the pings they answer (same order;
        the pings give the raw positions of fixes off a shape). Rejected answers are ignored."""
        if len(pings) != len(matches):
            raise ValueError(f"{len(pings)} pings but {len(matches)} answers")
        cfg = self.config
        off_rows = [
            i for i, m in enumerate(matches)
            if m.state is not State.REJECTED
            and not (m.state is State.IN_SERVICE and (m.offset_m or 0.0) <= cfg.off_shape_m)
        ]  # fmt: skip
        xy: dict[int, tuple[float, float]] = {}
        if off_rows:
            x, y = self.network.project(
                np.array([pings[i].lat for i in off_rows]),
                np.array([pings[i].lon for i in off_rows]),
            )
            xy = dict(zip(off_rows, zip(x.tolist(), y.tolist(), strict=True), strict=True))
        for i, (ping, match) in enumerate(zip(pings, matches, strict=True)):
            if match.state is State.REJECTED:
                continue
            self._observe_one(ping, match, xy.get(i))

    def _observe_one(self, ping: Ping, match: Match, xy: tuple[float, float] | None) -> None:
        cfg = self.config
        v = self._vehicles.get(match.vehicle_id)
        if v is None:
            v = self._vehicles[match.vehicle_id] = _Vehicle(match.vehicle_id)
        if match.timestamp < v.last_s:
            return  # older than what we know (the matcher rejects these; a replay may not)
        self._first_s = min(self._first_s, match.timestamp)
        v.last_s = match.timestamp
        v.last = match
        state = match.state
        offset = match.offset_m if match.offset_m is not None else 0.0
        on_shape = state in (State.IN_SERVICE, State.LAYOVER) and offset <= cfg.off_shape_m
        if match.trip_id is not None and match.shape_dist_m is not None:
            trip = v.trip
            same = (trip is not None and trip.trip_id == match.trip_id
                    and trip.service_date == match.service_date)  # fmt: skip
            if on_shape or trip is None or same:  # an answer off the shape changes no trip
                self._follow_trip(v, match)
        if on_shape:
            if state is State.IN_SERVICE:
                v.on = match
            trip, along = v.trip, match.shape_dist_m
            if (v.trace is not None and trip is not None and along is not None
                    and (state is State.IN_SERVICE
                         or along > trip.first_stop_m + cfg.start_margin_m)):  # fmt: skip
                v.trace.add(match.timestamp, along, cfg)  # (arrived: a layover at the end)
            v.off.clear()
            if v.detour is not None:
                v.detour.back.append(match)
                if len(v.detour.back) >= cfg.rejoin_pings:
                    self._end_detour(v)
            return
        # Off the shape: an in-service fix far from its snapped point, or an off-route or
        # unmatched one far from the trip's shape (the matcher also says off_route when it
        # carries a trip forward for a bus on its shape that no run fits for a while).
        off_shape = state is State.IN_SERVICE
        if state in (State.OFF_ROUTE, State.NOT_MATCHED) and xy is not None:
            found = self._on_trip(v, match, xy)
            off_shape = found is not None and found[1] > cfg.off_shape_m
            if found is not None and not off_shape and v.detour is not None and v.trip:
                # Back on the trip's shape, whatever the matcher makes of it.
                shape_id = self.network.shapes[v.trip.shape_idx].shape_id
                back = replace(match, shape_id=shape_id, shape_dist_m=found[0], offset_m=found[1])
                v.off.clear()
                v.detour.back.append(back)
                if len(v.detour.back) >= cfg.rejoin_pings:
                    self._end_detour(v)
                return
        if not off_shape or xy is None:
            # a layover far from the shape (roaming at a terminal), or lost away from mid-trip
            v.off.clear()
            if v.detour is not None:
                self._end_detour(v, rejoined=False)
            return
        fix = _OffFix(match.timestamp, ping.lat, ping.lon, xy[0], xy[1])
        v.off.append(fix)
        if len(v.off) > _MAX_OFF_FIXES:  # off its shape for long, but no detour (not mid-trip)
            del v.off[0]
        if v.detour is not None:
            v.detour.back.clear()
            self._extend_detour(v, fix)
        elif len(v.off) >= cfg.detour_min_pings and v.on is not None and self._mid_trip(v, v.on):
            travel = sum(
                math.hypot(b.x_m - a.x_m, b.y_m - a.y_m)
                for a, b in zip(v.off, v.off[1:], strict=False)
            )
            if travel >= cfg.detour_min_travel_m:
                self._start_detour(v)

    def _follow_trip(self, v: _Vehicle, match: Match) -> None:
        """The vehicle's trip and trace after an answer with a trip."""
        assert match.trip_id is not None
        assert match.shape_dist_m is not None
        service_date = match.service_date or ""
        trip = v.trip
        if trip is None or trip.trip_id != match.trip_id or trip.service_date != service_date:
            trip = v.trip = self._new_trip(match, service_date)
        if match.headway_s is not None:
            trip.headway_s = match.headway_s
        if trip.run != NO_INDEX:
            self._run_seen_s[(trip.run, service_date)] = match.timestamp
        started = match.shape_dist_m >= trip.first_stop_m + self.config.start_margin_m
        if match.state is State.IN_SERVICE:
            trip.reached_m = max(trip.reached_m, match.shape_dist_m)
        if started and match.state in (State.IN_SERVICE, State.OFF_ROUTE):
            trip.answers += 1
            if trip.answers == self.config.served_after_answers and trip.run != NO_INDEX:
                self._served.add((trip.run, service_date))
        if trip.answers >= self.config.served_after_answers:
            # in scope (GhostScope.SEEN) once a bus has run on it, not for a stray answer (on
            # overlapping routes the matcher gives a bus a neighbour's trip for a few fixes)
            self._route_seen_s[trip.route_id] = match.timestamp
        trace = v.trace
        back_m = trace.along[-1] - match.shape_dist_m if trace is not None and trace.along else 0.0
        restart_m = min(_BACKTRACK_M, 0.5 * self.network.shapes[trip.shape_idx].length_m)
        if (trace is None or trace.shape_idx != trip.shape_idx or back_m > restart_m
                or trace.route_id != trip.route_id):  # fmt: skip
            if trace is not None and trace.t:
                v.old_trace = trace
            trace = v.trace = _Trace(trip.shape_idx, trip.route_id, trip.direction_id, trip.trip_id)
            v.on = None
        trace.trip_id = trip.trip_id

    def _new_trip(self, match: Match, service_date: str) -> _Trip:
        assert match.trip_id is not None
        net = self.network
        trip_idx = net.trip_index[match.trip_id]
        trip = net.trips[trip_idx]
        pattern = net.patterns[trip.pattern_idx]
        day = self._date(service_date)
        runs = net.runs_of_trip.get(trip_idx, [])
        exact = [r for r in runs if bool(net.runs.exact_times[r])]
        run = NO_INDEX
        if len(exact) == 1:
            run = exact[0]
        elif exact and match.shape_dist_m is not None:
            # Several exact departures of one frequency trip: the one this answer's delay fits.
            origin = net.day_origin(day)
            lateness = match.delay_s if match.delay_s is not None else 0.0
            run = min(
                exact,
                key=lambda r: abs(
                    origin + net.scheduled_time_s(r, match.shape_dist_m or 0.0) + lateness
                    - match.timestamp
                ),
            )  # fmt: skip
        headway = match.headway_s
        if headway is None and runs and math.isfinite(float(net.runs.headway_s[runs[0]])):
            headway = float(net.runs.headway_s[runs[0]])
        return _Trip(
            trip_id=trip.trip_id,
            service_date=service_date,
            day=day,
            route_id=net.routes[trip.route_idx].route_id,
            direction_id=trip.direction_id if trip.direction_id >= 0 else None,
            shape_idx=trip.shape_idx,
            first_stop_m=float(pattern.stop_dist_m[0]),
            last_stop_m=float(pattern.stop_dist_m[-1]),
            run=run,
            headway_s=headway,
            first_m=match.shape_dist_m or 0.0,
            reached_m=match.shape_dist_m or 0.0,
        )

    def _date(self, service_date: str) -> dt.date:
        found = self._dates.get(service_date)
        if found is None:
            found = self._dates[service_date] = dt.datetime.strptime(service_date, "%Y%m%d").date()
        return found

    def _on_trip(
        self, v: _Vehicle, match: Match, xy: tuple[float, float]
    ) -> tuple[float, float] | None:
        """(along, offset) of a fix on the trip's shape, near where the vehicle was last seen
        in service, if that was mid-trip and not long ago (else None). A bus the matcher lost,
        or carries forward, while on its shape is near it; one on a detour is not."""
        on, trip = v.on, v.trip
        if (on is None or trip is None or on.shape_dist_m is None
                or match.timestamp - on.timestamp > self.config.lost_within_s
                or not self._mid_trip(v, on)):  # fmt: skip
            return None
        return self.network.locate_on_shape(
            trip.shape_idx, xy[0], xy[1], from_m=on.shape_dist_m - _MAX_FOOT_M,
            to_m=on.shape_dist_m + _MAX_FOOT_M,
        )  # fmt: skip

    def _mid_trip(self, v: _Vehicle, match: Match) -> bool:
        trip = v.trip
        if trip is None or match.shape_dist_m is None:
            return False
        margin = self.config.terminal_margin_m
        return trip.first_stop_m + margin <= match.shape_dist_m <= trip.last_stop_m - margin

    # --- detours -------------------------------------------------------------------------------

    def _start_detour(self, v: _Vehicle) -> None:
        assert v.on is not None
        assert v.trip is not None
        assert v.on.shape_dist_m is not None
        net = self.network
        on = v.on
        on_m = v.on.shape_dist_m
        shape_idx = self._shape_index.get(on.shape_id or "", v.trip.shape_idx)
        first = v.off[0]
        foot, _ = net.locate_on_shape(
            shape_idx, first.x_m, first.y_m, from_m=on_m, to_m=on_m + _MAX_FOOT_M
        )
        # It left between its last fix on the shape and the foot of its first fix off it.
        left_m = 0.5 * (on_m + max(foot, on_m))
        left_lat, left_lon = self._latlon(shape_idx, left_m)
        trip = v.trip
        alert = Detour(
            alert_id=f"detour:{v.vehicle_id}:{trip.trip_id}:{trip.service_date}:{first.t_s:.0f}",
            severity=Severity.WARNING,
            vehicle_id=v.vehicle_id,
            route_id=trip.route_id,
            direction_id=trip.direction_id,
            trip_id=trip.trip_id,
            service_date=trip.service_date,
            shape_id=net.shapes[shape_idx].shape_id,
            started_s=first.t_s,
            left_lat=left_lat,
            left_lon=left_lon,
            left_shape_dist_m=round(left_m, 1),
            last_off_s=first.t_s,
            max_offset_m=0.0,
            typical_offset_m=0.0,
            off_fixes=0,
            path=(),
        )
        v.detour = _OpenDetour(alert, first)
        for fix in v.off:
            self._extend_detour(v, fix)

    def _extend_detour(self, v: _Vehicle, fix: _OffFix) -> None:
        assert v.detour is not None
        alert = v.detour.alert
        shape_idx = self._shape_index[alert.shape_id]
        left = alert.left_shape_dist_m
        _, offset = self.network.locate_on_shape(
            shape_idx, fix.x_m, fix.y_m, from_m=left - _MAX_FOOT_M, to_m=left + _MAX_FOOT_M
        )
        # How far along the shape it has come: the foot of the fix, never going back.
        reached = alert.reached_shape_dist_m if alert.reached_shape_dist_m is not None else left
        foot, _ = self.network.locate_on_shape(
            shape_idx, fix.x_m, fix.y_m, from_m=reached, to_m=reached + _MAX_FOOT_M
        )
        path = (*alert.path, (fix.lat, fix.lon))
        if len(path) > self.config.max_path_points:
            path = path[::2]
        v.detour.last_fix = fix
        offsets = v.detour.offsets_m
        offsets.append(offset)
        if len(offsets) > self.config.max_path_points:
            del offsets[::2]
        v.detour.alert = replace(
            alert,
            last_off_s=fix.t_s,
            max_offset_m=round(max(alert.max_offset_m, offset), 1),
            typical_offset_m=round(float(np.median(offsets)), 1),
            off_fixes=alert.off_fixes + 1,
            path=path,
            reached_shape_dist_m=round(max(reached, foot), 1),
        )

    def _end_detour(self, v: _Vehicle, *, rejoined: bool = True) -> None:
        assert v.detour is not None
        alert = v.detour.alert
        back = v.detour.back
        last = v.detour.last_fix
        v.detour = None
        if rejoined and back and back[0].shape_dist_m is not None:
            first = back[0]
            assert first.shape_dist_m is not None
            shape_idx = self._shape_index.get(first.shape_id or "", -1)
            rejoin_m = first.shape_dist_m
            if shape_idx >= 0:
                foot, _ = self.network.locate_on_shape(
                    shape_idx, last.x_m, last.y_m, from_m=rejoin_m - _MAX_FOOT_M, to_m=rejoin_m
                )
                # It rejoined between the foot of its last fix off and its first fix back.
                rejoin_m = 0.5 * (rejoin_m + min(foot, rejoin_m))
            lat, lon = (
                self._latlon(shape_idx, rejoin_m)
                if shape_idx >= 0
                else (first.snapped_lat or math.nan, first.snapped_lon or math.nan)
            )
            alert = replace(
                alert,
                ended_s=first.timestamp,
                rejoined_lat=lat,
                rejoined_lon=lon,
                rejoined_shape_dist_m=round(rejoin_m, 1),
                rejoined_shape_id=first.shape_id,
            )
        else:
            alert = replace(alert, ended_s=alert.last_off_s)
        self._finished.append(alert)
        self.finished_detours.append(alert)
        del self.finished_detours[: -self.config.detour_history]

    def _latlon(self, shape_idx: int, along_m: float) -> tuple[float, float]:
        x, y = self.network.point_at(shape_idx, along_m)
        lat, lon = self.network.unproject(np.array([x]), np.array([y]))
        return round(float(lat[0]), 7), round(float(lon[0]), 7)

    # --- answering -------------------------------------------------------------------------------

    def assess(self, now_s: float) -> Assessment:
        """The signals at `now_s` (epoch s), and the alerts opened, updated and closed since the
        previous call."""
        self._forget(now_s)
        gaps = self._gaps(now_s)
        found: list[Alert] = [*self._pair_alerts(gaps, now_s), *self._ghosts(now_s)]
        found += self._silent(now_s)
        found += [v.detour.alert for v in self._vehicles.values() if v.detour is not None]
        alerts = {alert.alert_id: alert for alert in found}
        changes = self._changes(alerts)
        self._live = alerts
        ordered = sorted(alerts.values(), key=lambda a: (a.kind.value, a.route_id, a.alert_id))
        return Assessment(
            at_s=now_s,
            gaps=tuple(g.gap for g in gaps),
            routes=tuple(self._routes(gaps)),
            alerts=tuple(ordered),
            changes=tuple(changes),
        )

    @property
    def vehicles_tracked(self) -> int:
        """Vehicles in memory (forgotten after `forget_after_s` of silence)."""
        return len(self._vehicles)

    @property
    def trace_points(self) -> int:
        """(time, distance) points kept in all traces (bounded by `trace_window_s`)."""
        return sum(
            len(trace.t)
            for v in self._vehicles.values()
            for trace in (v.trace, v.old_trace)
            if trace is not None
        )

    def _changes(self, alerts: dict[str, Alert]) -> list[AlertChange]:
        out: list[AlertChange] = []
        finished = {d.alert_id: d for d in self._finished}
        self._finished = []
        for alert_id, alert in alerts.items():
            old = self._live.get(alert_id)
            if old is None:
                out.append(AlertChange(Change.OPENED, alert))
            elif old != alert:
                out.append(AlertChange(Change.UPDATED, alert))
        for alert_id, old in self._live.items():
            if alert_id not in alerts:
                out.append(AlertChange(Change.CLOSED, finished.pop(alert_id, old)))
        for detour in finished.values():  # opened and ended between two assessments
            out += [AlertChange(Change.OPENED, detour), AlertChange(Change.CLOSED, detour)]
        return out

    def _forget(self, now_s: float) -> None:
        cfg = self.config
        for vehicle_id in [
            k for k, v in self._vehicles.items() if now_s - v.last_s > cfg.forget_after_s
        ]:
            v = self._vehicles.pop(vehicle_id)
            if v.detour is not None:
                self._end_detour(v, rejoined=False)
        for route_id in [
            k for k, t in self._route_seen_s.items() if now_s - t > cfg.route_memory_s
        ]:
            del self._route_seen_s[route_id]
        today = self.network.local_date(now_s)
        if today != self._pruned_on:  # a new day: forget the trips of two days ago
            self._pruned_on = today
            oldest = (today - dt.timedelta(days=2)).strftime("%Y%m%d")
            self._served = {(r, d) for r, d in self._served if d >= oldest}
            self._run_seen_s = {k: t for k, t in self._run_seen_s.items() if k[1] >= oldest}

    # --- gaps ---------------------------------------------------------------------------------

    def _gaps(self, now_s: float) -> list[_GapOf]:
        """The gap of every follower to the bus ahead of it (see `Gap`)."""
        cfg = self.config
        followers: list[tuple[_Vehicle, Match, _Trip]] = []
        traces: dict[tuple[str, int | None], list[tuple[_Vehicle, _Trace]]] = {}
        for v in self._vehicles.values():
            for trace in (v.trace, v.old_trace):
                if trace is not None and trace.t and now_s - trace.t[-1] <= cfg.trace_window_s:
                    key = (trace.route_id, trace.direction_id)
                    traces.setdefault(key, []).append((v, trace))
            on, trip = v.on, v.trip
            if (on is None or trip is None or v.detour is not None or v.last is not on
                    or now_s - on.timestamp > cfg.stale_after_s
                    or on.shape_dist_m is None
                    or on.shape_dist_m < trip.first_stop_m + cfg.start_margin_m
                    or on.shape_dist_m > trip.last_stop_m - cfg.end_margin_m):  # fmt: skip
                continue  # not in service on its shape now, or at either end of its trip
            followers.append((v, on, trip))
        for candidates in traces.values():
            candidates.sort(key=lambda vt: -vt[1].t[-1])
        # Buses missing for a while but not yet silent, last seen in service: one may still be
        # the bus ahead of a follower that got past where it was last seen.
        missing: dict[tuple[str, int | None], list[tuple[_Vehicle, _Trace]]] = {}
        for v in self._vehicles.values():
            last, trace = v.last, v.trace
            quiet_s = now_s - v.last_s
            if (trace is not None and trace.t and last is not None
                    and cfg.stale_after_s < quiet_s <= cfg.silent_after_s
                    and last.state in (State.IN_SERVICE, State.OFF_ROUTE)):  # fmt: skip
                missing.setdefault((trace.route_id, trace.direction_id), []).append((v, trace))
        out: list[_GapOf] = []
        for follower, on, trip in followers:
            key = (trip.route_id, trip.direction_id)
            found = self._leader_of(follower, on, trip, traces.get(key, []))
            if found is not None and not self._past_missing(follower, on, missing.get(key, [])):
                out.append(found)
        return out

    def _past_missing(
        self, follower: _Vehicle, on: Match, missing: list[tuple[_Vehicle, _Trace]]
    ) -> bool:
        """Whether the follower got past where a missing bus, ahead of it then, was last seen.

        That bus may still be the one ahead of it, so its gap is not known: without this, a
        drop-out of a few minutes would show as a gap of twice the headway behind the bus
        ahead of the missing one.
        """
        assert follower.trace is not None
        assert on.shape_dist_m is not None
        shape_f, at_m = follower.trace.shape_idx, on.shape_dist_m
        for v, trace in missing:
            if v is follower:
                continue
            along = at_m if trace.shape_idx == shape_f else self._along_on(
                shape_f, at_m, trace.shape_idx
            )  # fmt: skip
            if along is None or trace.along[-1] >= along:
                continue  # not on this street, or it had passed here (a plain leader)
            last_seen_m = at_m - (along - trace.along[-1])  # on the follower's shape
            then = follower.trace.along_at(trace.t[-1])
            if then is None or then < last_seen_m:
                return True
        return False

    def _leader_of(
        self,
        follower: _Vehicle,
        on: Match,
        trip: _Trip,
        traces: list[tuple[_Vehicle, _Trace]],
    ) -> _GapOf | None:
        """The bus that passed the follower's position last (by `traces` of its route and
        direction, the follower's own left out), and the gap."""
        assert on.shape_dist_m is not None
        assert follower.trace is not None
        shape_f, at_m, at_s = trip.shape_idx, on.shape_dist_m, on.timestamp
        recent_s = at_s - self.config.stale_after_s
        best: tuple[float, _Vehicle, _Trace] | None = None
        found: list[tuple[float, _Vehicle]] = []  # (passed, vehicle)
        for v, trace in traces:  # latest first: one that ended before the best cannot beat it
            last_s = trace.t[-1]
            if best is not None and last_s <= best[0] and last_s < recent_s:
                break
            if v is follower:
                continue
            along = at_m
            if trace.shape_idx != shape_f:
                shared = self._along_on(shape_f, at_m, trace.shape_idx)
                if shared is None:
                    continue
                along = shared
            reached = trace.along
            if reached[0] > along:
                continue
            if reached[-1] >= along:
                passed = trace.passage(along)
            elif last_s >= recent_s:
                # Seen lately, not there yet by its trace: if it was ahead of the follower when
                # last seen (a bunch whose fixes leapfrog), when it got there at its pace.
                then = follower.trace.along_at(last_s)
                if then is not None and then >= at_m - (along - reached[-1]):
                    continue
                passed = trace.pass_on(along)
            else:
                continue
            if passed is None or passed > at_s:
                continue
            found.append((passed, v))
            if best is None or passed > best[0]:
                best = (passed, v, trace)
        if best is None:
            return None
        passed, leader, leader_trace = best
        # Buses that passed within `_TIE_S` of it: a bunch ahead, which of them is ahead of the
        # follower is noise (their fixes a few metres apart at a stop).
        tied = frozenset(v.vehicle_id for t, v in found if t >= passed - _TIE_S) - {
            leader.vehicle_id
        }
        scheduled, frequency = self._scheduled_gap(trip, on)
        gap = Gap(
            route_id=trip.route_id,
            direction_id=trip.direction_id,
            leader_vehicle_id=leader.vehicle_id,
            leader_trip_id=leader_trace.trip_id,
            follower_vehicle_id=follower.vehicle_id,
            follower_trip_id=trip.trip_id,
            service_date=trip.service_date,
            at_s=on.timestamp,
            shape_id=self.network.shapes[shape_f].shape_id,
            shape_dist_m=round(on.shape_dist_m, 1),
            lat=on.snapped_lat if on.snapped_lat is not None else math.nan,
            lon=on.snapped_lon if on.snapped_lon is not None else math.nan,
            gap_s=round(on.timestamp - passed, 1),
            scheduled_gap_s=None if scheduled is None else round(scheduled, 1),
            frequency_based=frequency,
        )
        return _GapOf(gap, leader.vehicle_id, follower.vehicle_id, tied)

    def _along_on(self, from_shape: int, along_m: float, to_shape: int) -> float | None:
        """Where `along_m` on one shape is on another, if they share the street there."""
        if from_shape == to_shape:
            return along_m
        shared = self._shared.get(from_shape)
        if shared is None:
            shared = self._shared[from_shape] = _shared_streets(
                self.network, from_shape, self.config.shared_street_m
            )
        values = shared.get(to_shape)
        k = round(along_m / _SAMPLE_M)
        if values is None or not 0 <= k < len(values) or math.isnan(values[k]):
            return None
        return values[k] + (along_m - k * _SAMPLE_M)

    def _scheduled_gap(self, follower: _Trip, on: Match) -> tuple[float | None, bool]:
        """(the scheduled gap at the follower's position, whether it is a headway).

        Exact times: the follower's scheduled time there minus the latest scheduled time there,
        before it, of another run of the route and direction that day whose shape passes there
        (the timetable's headway ahead of the follower's run). Headway-only trips: the headway.
        """
        if follower.run == NO_INDEX:
            return follower.headway_s, True
        assert on.shape_dist_m is not None
        bucket = round(on.shape_dist_m / _SAMPLE_M)
        key = (follower.run, follower.service_date, bucket)
        if key in self._scheduled_cache:
            return self._scheduled_cache[key], False
        net = self.network
        along = bucket * _SAMPLE_M
        due = net.scheduled_time_s(follower.run, along)
        active = net.active_runs(follower.day) & net.runs.exact_times
        latest = -math.inf
        for p in self._patterns_of.get((follower.route_id, follower.direction_id), []):
            pattern = net.patterns[p]
            along_p = self._along_on(follower.shape_idx, along, pattern.shape_idx)
            if along_p is None:
                continue
            rows = np.flatnonzero(active[pattern.runs] & (pattern.runs != follower.run))
            if not len(rows):
                continue
            times = schedule_at(pattern, rows, along_p)
            before = times[times < due]
            if len(before):
                latest = max(latest, float(before.max()))
        found = due - latest if math.isfinite(latest) else None
        if len(self._scheduled_cache) > 100_000:
            self._scheduled_cache.clear()
        self._scheduled_cache[key] = found
        return found, False

    def _pair_alerts(self, gaps: list[_GapOf], now_s: float) -> list[PairAlert]:
        cfg = self.config
        ahead_of: dict[str, float] = {}  # vehicle -> its gap to the bus ahead
        behind_of: dict[str, float] = {}  # vehicle -> the gap of the bus behind it
        for g in gaps:
            ahead_of[g.follower] = g.gap.gap_s
            behind_of[g.leader] = min(behind_of.get(g.leader, math.inf), g.gap.gap_s)
        out: list[PairAlert] = []
        opened: dict[_PairKey, str] = {}
        for g in gaps:
            gap = g.gap
            ratio = gap.ratio
            if ratio is None or gap.scheduled_gap_s is None:
                continue
            scheduled = gap.scheduled_gap_s
            # One alert per bunch (the two vehicles, in either order: a bunch swaps places) and
            # per gap (behind its leader: the bus behind may change as a bunch behind swaps
            # places) while it lasts, whichever trips the matcher gives them meanwhile; its id
            # is made when it opens.
            where = (gap.service_date, gap.route_id, gap.direction_id)
            a, b = sorted((g.leader, g.follower))
            bunch_key = (AlertKind.BUNCHING, *where, a, b)
            gap_key = (AlertKind.GAPPING, *where, g.leader, "")
            bunch_id = self._pair_ids.get(bunch_key)
            gap_id = self._pair_ids.get(gap_key)
            if gap_id is None:  # the bus ahead of a gap may be either bus of a bunch
                gap_key, gap_id = self._gap_behind_bunch(gap_key, g, opened)
            keep = 1.0 + cfg.alert_hysteresis
            if ratio < cfg.bunching_ratio * (keep if bunch_id is not None else 1.0):
                if bunch_id is None:
                    bunch_id = f"bunching:{gap.service_date}:{gap.route_id}:{a}+{b}:{gap.at_s:.0f}"
                opened[bunch_key] = bunch_id
                # Hold the follower: its gap ahead grows towards its gap behind.
                behind = behind_of.get(g.follower, scheduled)
                hold = _hold_s(behind, gap.gap_s, cfg.max_hold_s)
                severity = Severity.CRITICAL if ratio < cfg.bunching_ratio / 2 else Severity.WARNING
                out.append(self._pair(AlertKind.BUNCHING, bunch_id, severity, gap, g.follower,
                                      hold, now_s))  # fmt: skip
            elif ratio > cfg.gapping_ratio / (keep if gap_id is not None else 1.0):
                if gap_id is None:
                    gap_id = f"gapping:{gap.service_date}:{gap.route_id}:{g.leader}:{gap.at_s:.0f}"
                opened[gap_key] = gap_id
                # Hold the bus ahead of the gap: the gap behind it shrinks towards the one ahead.
                ahead = ahead_of.get(g.leader, scheduled)
                hold = _hold_s(gap.gap_s, ahead, cfg.max_hold_s)
                severity = (
                    Severity.CRITICAL if ratio > 4 / 3 * cfg.gapping_ratio else Severity.WARNING
                )
                out.append(self._pair(AlertKind.GAPPING, gap_id, severity, gap, g.leader, hold,
                                      now_s))  # fmt: skip
        # A follower with no gap this time (a drop-out, a fix off its shape) keeps its alert
        # for a while rather than closing and reopening it, unless it has another pair now or
        # has reached the end of its trip.
        followers_now = {g.follower for g in gaps}
        leaders_now = {g.leader for g in gaps}
        for key, alert_id in self._pair_ids.items():
            old = self._live.get(alert_id)
            if not isinstance(old, PairAlert) or key in opened:
                continue
            gone = (
                old.follower_vehicle_id in followers_now
                if old.kind is AlertKind.BUNCHING
                else old.leader_vehicle_id in leaders_now
            )  # it has another pair now
            if (not gone and now_s - old.at_s <= cfg.pair_grace_s
                    and not self._trip_over(old.follower_vehicle_id)):  # fmt: skip
                opened[key] = alert_id
                out.append(old)
        self._pair_ids = opened
        return out

    def _gap_behind_bunch(
        self, key: _PairKey, g: _GapOf, opened: dict[_PairKey, str]
    ) -> tuple[_PairKey, str | None]:
        """The open gapping alert of this follower behind a bus bunched with the one now
        ahead of it (an open bunch, or one that passed there within `_TIE_S`: their fixes
        leapfrog), if there is one: (its key, its id); else (key, None)."""
        _, service_date, route_id, direction_id, leader, _ = key
        for other_key, alert_id in self._pair_ids.items():
            old = self._live.get(alert_id)
            if other_key[0] is not AlertKind.GAPPING or other_key[1:4] != key[1:4]:
                continue
            if not isinstance(old, PairAlert) or old.follower_vehicle_id != g.follower:
                continue
            a, b = sorted((leader, old.leader_vehicle_id))
            bunch = (AlertKind.BUNCHING, service_date, route_id, direction_id, a, b)
            if old.leader_vehicle_id in g.tied or bunch in self._pair_ids or bunch in opened:
                return other_key, alert_id
        return key, None

    def _trip_over(self, vehicle_id: str) -> bool:
        """Whether a vehicle's latest answer says it is at the end of its trip (or off it)."""
        v = self._vehicles.get(vehicle_id)
        if v is None or v.last is None or v.trip is None:
            return True
        along = v.last.shape_dist_m
        return v.last.state is State.LAYOVER or (
            along is not None and along > v.trip.last_stop_m - self.config.end_margin_m
        )

    def _pair(
        self,
        kind: AlertKind,
        alert_id: str,
        severity: Severity,
        gap: Gap,
        hold_vehicle_id: str,
        hold_s: float,
        now_s: float,
    ) -> PairAlert:
        old = self._live.get(alert_id)
        since = old.since_s if isinstance(old, PairAlert) else gap.at_s
        assert gap.scheduled_gap_s is not None
        assert gap.ratio is not None
        return PairAlert(
            alert_id=alert_id,
            kind=kind,
            severity=severity,
            route_id=gap.route_id,
            direction_id=gap.direction_id,
            service_date=gap.service_date,
            leader_vehicle_id=gap.leader_vehicle_id,
            leader_trip_id=gap.leader_trip_id,
            follower_vehicle_id=gap.follower_vehicle_id,
            follower_trip_id=gap.follower_trip_id,
            since_s=since,
            at_s=gap.at_s,
            lat=gap.lat,
            lon=gap.lon,
            shape_dist_m=gap.shape_dist_m,
            gap_s=gap.gap_s,
            scheduled_gap_s=gap.scheduled_gap_s,
            ratio=round(gap.ratio, 3),
            hold_vehicle_id=hold_vehicle_id,
            hold_s=round(hold_s, 1),
        )

    def _routes(self, gaps: list[_GapOf]) -> list[RouteHeadway]:
        cfg = self.config
        by_route: dict[tuple[str, int | None], list[Gap]] = {}
        vehicles: dict[tuple[str, int | None], set[str]] = {}
        for g in gaps:
            key = (g.gap.route_id, g.gap.direction_id)
            by_route.setdefault(key, []).append(g.gap)
            vehicles.setdefault(key, set()).update((g.leader, g.follower))
        out: list[RouteHeadway] = []
        for (route_id, direction_id), route_gaps in sorted(
            by_route.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1])
        ):
            timed = [g for g in route_gaps if g.scheduled_gap_s and g.scheduled_gap_s > 0]
            actual = [g.gap_s for g in timed]
            scheduled = [g.scheduled_gap_s or 0.0 for g in timed]
            ratios = [a / b for a, b in zip(actual, scheduled, strict=True)]
            n = len(timed)
            cv = None
            if n >= 2:
                deviation = [a - b for a, b in zip(actual, scheduled, strict=True)]
                mean_dev = sum(deviation) / n
                std = math.sqrt(sum((d - mean_dev) ** 2 for d in deviation) / n)
                cv = round(std / (sum(scheduled) / n), 3)
            out.append(
                RouteHeadway(
                    route_id=route_id,
                    direction_id=direction_id,
                    vehicles=len(vehicles[(route_id, direction_id)]),
                    gaps=n,
                    frequency_based=any(g.frequency_based for g in route_gaps),
                    mean_gap_s=round(sum(actual) / n, 1) if n else None,
                    mean_scheduled_gap_s=round(sum(scheduled) / n, 1) if n else None,
                    within_band_share=(
                        round(sum(abs(r - 1.0) <= cfg.headway_band for r in ratios) / n, 3)
                        if n
                        else None
                    ),
                    headway_cv=cv,
                    bunched=sum(r < cfg.bunching_ratio for r in ratios),
                    gapped=sum(r > cfg.gapping_ratio for r in ratios),
                )
            )
        return out

    # --- ghosts --------------------------------------------------------------------------------

    def _in_scope(self, route_ids: list[str]) -> BoolArray:
        cfg = self.config
        wanted = np.ones(len(route_ids), dtype=np.bool_)
        if cfg.ghost_routes is not None:
            wanted &= np.array([r in cfg.ghost_routes for r in route_ids], dtype=np.bool_)
        if cfg.ghost_scope is GhostScope.SEEN:
            wanted &= np.array([r in self._route_seen_s for r in route_ids], dtype=np.bool_)
        return wanted

    def _ghosts(self, now_s: float) -> list[GhostTrip | ShortService]:
        """Exact-time trips with no bus (`GhostTrip`), headway-only ones short of buses
        (`ShortService`)."""
        cfg = self.config
        net = self.network
        runs = net.runs
        if now_s < self._first_s + cfg.ghost_grace_s:
            return []  # just started: the buses have not all reported yet
        route_ids = [r.route_id for r in net.routes]
        scoped = self._in_scope(route_ids)[net.run_route] if len(runs) else np.zeros(0, bool)
        seen_on_trip: dict[tuple[str, str], int] = {}  # headway-only: (trip, date) -> vehicles
        for v in self._vehicles.values():
            trip, last = v.trip, v.last
            if trip is None or last is None or now_s - v.last_s > cfg.silent_after_s:
                continue
            if trip.run == NO_INDEX and (
                last.state in (State.IN_SERVICE, State.OFF_ROUTE) or v.detour is not None
            ):
                on_trip = (trip.trip_id, trip.service_date)
                seen_on_trip[on_trip] = seen_on_trip.get(on_trip, 0) + 1
        recent_s = now_s - cfg.stale_after_s
        out: list[GhostTrip | ShortService] = []
        short_now: set[tuple[int, str]] = set()
        today = net.local_date(now_s)
        for day in (today - dt.timedelta(days=1), today):
            origin = net.day_origin(day)
            service_date = day.strftime("%Y%m%d")
            t = now_s - origin
            on_road = net.active_runs(day) & scoped & (runs.start_s <= t) & (t <= runs.end_s)
            exact = runs.exact_times
            late = on_road & exact & (runs.start_s + cfg.ghost_grace_s <= t)
            for run in np.flatnonzero(late).tolist():
                key = (run, service_date)
                if key in self._served or self._run_seen_s.get(key, -math.inf) >= recent_s:
                    continue  # it ran, or a bus was just matched to it (waiting, late)
                previous = (self._previous_in_block[run], service_date)
                if (
                    previous[0] != NO_INDEX
                    and self._run_seen_s.get(previous, -math.inf) >= recent_s
                ):
                    continue  # its bus is still on the block's previous trip: late, not missing
                out.append(self._ghost(run, day, service_date, origin))
            headway_only = np.flatnonzero(on_road & ~exact)
            if len(headway_only):
                trips, needed = np.unique(runs.trip_idx[headway_only], return_counts=True)
                for trip_idx, count in zip(trips.tolist(), needed.tolist(), strict=True):
                    alert = self._short(trip_idx, service_date, count, seen_on_trip, now_s)
                    if alert is not None:
                        out.append(alert)
                        short_now.add((trip_idx, service_date))
        for short in [k for k in self._short_since if k not in short_now]:
            if now_s - self._short_since[short] > cfg.ghost_grace_s:
                del self._short_since[short]
        return out

    def _ghost(self, run: int, day: dt.date, service_date: str, origin: float) -> GhostTrip:
        net = self.network
        trip = net.trips[int(net.runs.trip_idx[run])]
        pattern = net.patterns[trip.pattern_idx]
        return GhostTrip(
            alert_id=f"ghost:{trip.trip_id}:{service_date}:{int(net.runs.start_s[run])}",
            severity=Severity.WARNING,
            route_id=net.routes[trip.route_idx].route_id,
            direction_id=trip.direction_id if trip.direction_id >= 0 else None,
            trip_id=trip.trip_id,
            service_date=service_date,
            block_id=trip.block_id if trip.block_id not in ("", "<NA>") else "",
            first_stop_id=pattern.stop_ids[0],
            scheduled_departure_s=origin + float(net.runs.start_s[run]),
            scheduled_arrival_s=origin + float(net.runs.end_s[run]),
        )

    def _short(
        self,
        trip_idx: int,
        service_date: str,
        needed: int,
        seen_on_trip: dict[tuple[str, str], int],
        now_s: float,
    ) -> ShortService | None:
        net = self.network
        trip = net.trips[trip_idx]
        seen = seen_on_trip.get((trip.trip_id, service_date), 0)
        key = (trip_idx, service_date)
        if seen >= needed:
            self._short_since.pop(key, None)
            return None
        since = self._short_since.setdefault(key, now_s)
        if now_s - since < self.config.ghost_grace_s:
            return None
        runs = net.runs_of_trip.get(trip_idx, [])
        headway = float(np.nanmin(net.runs.headway_s[runs])) if runs else math.nan
        return ShortService(
            alert_id=f"short:{trip.trip_id}:{service_date}",
            severity=Severity.CRITICAL if seen == 0 else Severity.WARNING,
            route_id=net.routes[trip.route_idx].route_id,
            direction_id=trip.direction_id if trip.direction_id >= 0 else None,
            trip_id=trip.trip_id,
            service_date=service_date,
            headway_s=headway,
            buses_needed=needed,
            buses_seen=seen,
            since_s=since,
        )

    # --- silent vehicles ---------------------------------------------------------------------

    def _left_s(self, trip: _Trip, along_m: float) -> float:
        """The scheduled time from `along_m` to the end of the trip (its run's, or its first
        run's for a headway-only trip)."""
        run = trip.run
        if run == NO_INDEX:
            runs = self.network.runs_of_trip.get(self.network.trip_index[trip.trip_id], [])
            if not runs:
                return 0.0
            run = runs[0]
        net = self.network
        return net.scheduled_time_s(run, trip.last_stop_m) - net.scheduled_time_s(run, along_m)

    def _silent(self, now_s: float) -> list[SilentVehicle]:
        cfg = self.config
        out: list[SilentVehicle] = []
        for v in self._vehicles.values():
            last, trip = v.last, v.trip
            if last is None or trip is None or now_s - v.last_s <= cfg.silent_after_s:
                continue
            lost_mid_trip = (
                last.state is State.NOT_MATCHED
                and v.on is not None
                and last.timestamp - v.on.timestamp <= cfg.lost_within_s
                and self._mid_trip(v, v.on)
            )  # the matcher lost it mid-trip, then it went silent
            mid_trip = (
                last.state in (State.IN_SERVICE, State.OFF_ROUTE)
                or v.detour is not None
                or lost_mid_trip
            )
            where = v.on if v.on is not None else last
            along = where.shape_dist_m
            if not mid_trip or (along is not None and along >= trip.last_stop_m - cfg.end_margin_m):
                continue
            # A bus that joined its trip mid-route and hardly moved on it is more likely one that
            # ended another trip where this one passes (then went quiet) than one gone silent.
            joined_at_start = trip.first_m <= trip.first_stop_m + cfg.terminal_margin_m
            if not joined_at_start and trip.reached_m - trip.first_m < cfg.terminal_margin_m:
                continue
            # Listed until its trip should have ended (by the schedule from where it was last,
            # and `silent_past_end_s` more): a device that drops out just before the end of a
            # trip is not listed.
            left_s = self._left_s(trip, along) if along is not None else 0.0
            if now_s > v.last_s + left_s + cfg.silent_past_end_s:
                continue
            silent_s = now_s - v.last_s
            out.append(
                SilentVehicle(
                    alert_id=f"silent:{v.vehicle_id}:{trip.trip_id}:{trip.service_date}",
                    severity=(
                        Severity.CRITICAL if silent_s > 3 * cfg.silent_after_s else Severity.WARNING
                    ),
                    vehicle_id=v.vehicle_id,
                    route_id=trip.route_id,
                    direction_id=trip.direction_id,
                    trip_id=trip.trip_id,
                    service_date=trip.service_date,
                    last_seen_s=v.last_s,
                    state=last.state.value,
                    lat=where.snapped_lat,
                    lon=where.snapped_lon,
                    shape_dist_m=along,
                    delay_s=where.delay_s,
                )
            )
        return out


# --- helpers -----------------------------------------------------------------------------------

_PairKey = tuple[AlertKind, str, str, "int | None", str, str]
"""(kind, service date, route, direction, vehicle, vehicle) of a bunching or gapping alert."""


@dataclass(frozen=True, slots=True)
class _GapOf:
    gap: Gap
    leader: str
    follower: str
    tied: frozenset[str]  # other buses that passed there within `_TIE_S` of the leader


def _shared_streets(network: Network, from_shape: int, within_m: float) -> dict[int, list[float]]:
    """Where one shape runs along the others: sampled every `_SAMPLE_M` along it, the distance
    along each other shape that comes within `within_m` heading the same way (NaN where it does
    not), in one spatial query. Loops: the nearest pass of the other shape counts."""
    length = network.shapes[from_shape].length_m
    along = np.arange(0.0, length + _SAMPLE_M, _SAMPLE_M)
    shapes = np.full(len(along), from_shape, dtype=np.int64)
    x, y = network.points_at(shapes, along)
    near = network.snap(x, y, radius_m=within_m)
    heading = _headings(network, shapes, along)[near.point]
    turn = np.abs(heading - near.heading_deg) % 360.0
    keep = (np.minimum(turn, 360.0 - turn) < 60.0) & (near.shape_idx != from_shape)
    point, shape = near.point[keep], near.shape_idx[keep]
    to_along, offset = near.along_m[keep], near.offset_m[keep]
    out: dict[int, list[float]] = {}
    for s in np.unique(shape).tolist():
        on = shape == s
        values = np.full(len(along), np.nan)
        order = np.argsort(-offset[on])  # the nearest pass written last wins
        values[point[on][order]] = to_along[on][order]
        out[s] = values.tolist()
    return out


def _headings(network: Network, shape_idx: IntArray, along: FloatArray) -> FloatArray:
    ax, ay = network.points_at(shape_idx, along + 5.0)
    bx, by = network.points_at(shape_idx, along - 5.0)
    return np.asarray(np.degrees(np.arctan2(ax - bx, ay - by)) % 360.0, dtype=np.float64)


def _hold_s(behind_s: float, ahead_s: float, cap_s: float) -> float:
    """A hold that moves a bus's gap ahead towards the mean of its gaps ahead and behind."""
    if not math.isfinite(behind_s):
        return 0.0
    return min(max(0.0, (behind_s - ahead_s) / 2.0), cap_s)
