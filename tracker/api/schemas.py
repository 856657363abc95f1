"""What the HTTP API answers, as pydantic models (they make the OpenAPI docs at ``/docs``).

Times are epoch seconds (UTC) and named ``*_s``; so are durations. Distances are metres
(``*_m``), speeds m/s, angles degrees clockwise from north, positions WGS84 degrees. Colours are
CSS ``"#RRGGBB"`` or null. Vehicle states are those of `tracker.core.model.State`:
``in_service``, ``layover``, ``off_route``, ``not_matched``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from tracker.api.auth import AuthStats
from tracker.ingest.queue import QueueStats
from tracker.live.hub import HubStats

# --- health ----------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``ready`` only when all three parts are; `problems` names each part that is not."""

    ready: bool
    network: bool  # the GTFS network is loaded
    database: bool  # PostgreSQL answers and its schema is up to date
    mqtt: bool  # the MQTT ingest is connected to the broker
    problems: list[str]


# --- vehicles --------------------------------------------------------------------------------


class Vehicle(BaseModel):
    """A vehicle's latest state. `lat`/`lon` are what the map draws: the point snapped to the
    route when in service or in layover, else the GPS position."""

    vehicle_id: str
    observed_at_s: float
    age_s: float = Field(description="server clock minus observed_at_s")
    stale: bool = Field(description="age_s > stale_after_s (see /api/config)")
    lat: float
    lon: float
    bearing_deg: float | None
    speed_mps: float | None
    state: str
    reason: str | None
    route_id: str | None
    trip_id: str | None
    direction_id: int | None
    shape_id: str | None
    shape_dist_m: float | None
    offset_m: float | None = Field(description="distance from the GPS position to the route")
    delay_s: float | None = Field(description="positive: late")
    headway_s: float | None = Field(description="scheduled headway, frequency-based trips")


class Vehicles(BaseModel):
    now_s: float
    count: int
    vehicles: list[Vehicle]


class TrailPoint(BaseModel):
    observed_at_s: float
    lat: float
    lon: float
    state: str
    delay_s: float | None


class ArrivalRange(BaseModel):
    """A predicted arrival (at a trip's first stop: departure): the median and the p10–p90
    range, learned from the stop events seen (`source` learned) or the schedule plus the
    current delay (`source` schedule). docs/predictions.md says how."""

    predicted_s: float
    p10_s: float = Field(description="1 in 10 arrivals come earlier")
    p90_s: float = Field(description="1 in 10 arrivals come later")
    source: Literal["learned", "schedule"]
    made_at_s: float = Field(description="when the prediction was made")
    observed_at_s: float | None = Field(
        description="the vehicle's latest position it rests on (how old the data is)"
    )


class PredictedArrival(BaseModel):
    """When a vehicle should reach a stop: on the trip it is on (`trips_ahead` 0) or on its
    block's next trips (1, 2, ...)."""

    vehicle_id: str
    route_id: str
    route_short_name: str
    trip_id: str
    headsign: str
    service_date: str = Field(description="YYYYMMDD")
    stop_id: str
    stop_name: str
    stop_sequence: int = Field(description="index of the stop in the trip's stops, from 0")
    trips_ahead: int
    scheduled_s: float | None = Field(description="null on frequency trips without times")
    arrival: ArrivalRange


class NextStop(BaseModel):
    stop_id: str
    name: str
    lat: float
    lon: float
    stop_index: int = Field(description="position in the trip's stop sequence, from 0")
    dist_m: float = Field(description="distance of the stop along the trip's shape")
    scheduled_s: float = Field(description="scheduled arrival (departure at the first stop)")
    delay_s: float | None
    expected_s: float = Field(description="scheduled_s + the vehicle's current delay")
    prediction: ArrivalRange | None = Field(description="null when none was made")


class VehicleTrip(BaseModel):
    """The trip a vehicle is matched to, and what is ahead of it."""

    trip_id: str
    route_id: str
    route_short_name: str
    headsign: str
    direction_id: int | None
    service_date: str = Field(description="YYYYMMDD, the trip's service day")
    exact_times: bool = Field(description="false: a headway-based frequency trip")
    next_stops: list[NextStop]


class VehicleDetail(BaseModel):
    now_s: float
    vehicle: Vehicle
    trip: VehicleTrip | None = Field(description="null when not matched to a trip")
    trail_s: float
    trail: list[TrailPoint] = Field(
        description="stored positions of the last trail_s, oldest first"
    )
    predictions: list[PredictedArrival] = Field(
        description="arrivals at the stops ahead, on this trip and the block's next ones"
    )


# --- routes and stops ----------------------------------------------------------------------


class Route(BaseModel):
    route_id: str
    short_name: str
    long_name: str
    color: str | None
    text_color: str | None
    route_type: int = Field(description="GTFS route_type (3: bus)")
    has_shape: bool = Field(description="false when every line of the route joins its stops")


class Routes(BaseModel):
    routes: list[Route]


class PointGeometry(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(description="[lon, lat]")


class LineStringGeometry(BaseModel):
    type: Literal["LineString"]
    coordinates: list[list[float]] = Field(description="[[lon, lat], ...]")


class Feature(BaseModel):
    """A GeoJSON Feature. Shapes (``kind: "shape"``) have the properties shape_id, route_id,
    route_ids, short_name, direction_id, headsigns, color, text_color, from_stops; stops
    (``kind: "stop"``) have stop_id and name."""

    type: Literal["Feature"]
    geometry: PointGeometry | LineStringGeometry
    properties: dict[str, Any]


class FeatureCollection(BaseModel):
    """A GeoJSON FeatureCollection (RFC 7946), ``application/geo+json``."""

    type: Literal["FeatureCollection"]
    features: list[Feature]


class Departure(BaseModel):
    route_id: str
    route_short_name: str
    trip_id: str
    headsign: str
    direction_id: int | None
    service_date: str = Field(description="YYYYMMDD")
    scheduled_s: float
    live: bool = Field(description="a vehicle is on this trip: delay_s and expected_s are live")
    delay_s: float | None
    expected_s: float = Field(description="scheduled_s + delay_s, or scheduled_s")
    vehicle_id: str | None
    exact_times: bool = Field(
        description="false: a headway-based frequency trip; scheduled_s is nominal and buses "
        "come about every headway_s"
    )
    headway_s: float | None
    prediction: ArrivalRange | None = Field(
        description="the arrival predicted for the vehicle on this trip, if any"
    )
    no_bus: bool = Field(
        description="the trip should be under way (its first departure is past) and no bus "
        "reports on it: its time is the timetable's, not a bus's"
    )


class StopDetail(BaseModel):
    now_s: float
    stop_id: str
    name: str
    lat: float
    lon: float
    route_ids: list[str] = Field(description="routes leaving from this stop")
    departures: list[Departure]
    arrivals: list[PredictedArrival] = Field(
        description="the buses on their way here, soonest first (frequency lines included)"
    )


# --- operators ---------------------------------------------------------------------------


class FleetVehicle(BaseModel):
    vehicle_id: str
    route_id: str | None
    route_short_name: str | None
    trip_id: str | None
    headsign: str | None
    delay_s: float | None
    gap_s: float | None = Field(description="since the bus ahead on its route passed its place")
    scheduled_gap_s: float | None = Field(description="the gap the timetable (or headway) sets")
    state: str
    stale: bool
    last_seen_s: float
    age_s: float


class DelaySummary(BaseModel):
    """Delays of the in-service, not stale vehicles that have one. On time: −60 s ≤ delay ≤
    +300 s. Shares and percentiles are null when no vehicle counts."""

    with_delay: int
    on_time: int
    on_time_share: float | None
    median_delay_s: float | None
    p90_delay_s: float | None


class HeadwaySummary(BaseModel):
    """Headway adherence of a route (its directions together), from the current gaps between
    consecutive buses: the measure of frequency lines, which have no timetable to be late on."""

    gaps: int = Field(description="gaps with a scheduled one")
    within_band_share: float | None = Field(description="share within ±50 % of the scheduled")
    headway_cv: float | None = Field(description="std(gap − scheduled) / mean(scheduled)")
    mean_gap_s: float | None
    mean_scheduled_gap_s: float | None
    frequency_based: bool = Field(description="the scheduled gaps are frequencies.txt headways")
    bunched: int
    gapped: int


class FleetRoute(BaseModel):
    route_id: str
    route_short_name: str
    vehicles: int
    in_service: int
    stale: int
    punctuality: DelaySummary
    headway: HeadwaySummary | None = Field(description="null until its gaps are known")


class FleetTotals(BaseModel):
    vehicles: int
    by_state: dict[str, int]
    stale: int
    punctuality: DelaySummary


class Fleet(BaseModel):
    now_s: float
    stale_after_s: float
    vehicles: list[FleetVehicle]
    routes: list[FleetRoute]
    totals: FleetTotals


class VehicleProblem(BaseModel):
    vehicle_id: str
    state: str
    reason: str | None
    route_id: str | None
    trip_id: str | None
    lat: float
    lon: float
    offset_m: float | None
    last_seen_s: float
    age_s: float


class RejectedMessage(BaseModel):
    received_at_s: float
    vehicle_id: str | None
    reason: str
    detail: str


class Problems(BaseModel):
    now_s: float
    stale: list[VehicleProblem] = Field(description="not heard from for over stale_after_s")
    off_route: list[VehicleProblem]
    not_matched: list[VehicleProblem]
    rejected: list[RejectedMessage] = Field(
        description="the latest rejected messages, newest first"
    )
    rejected_by_reason: dict[str, int] = Field(description="all rejected messages since start")


# --- history -------------------------------------------------------------------------------


class HistoryPosition(TypedDict):
    """A stored position. A TypedDict, not a model: up to 200 000 of them are serialised per
    answer, and plain dicts serialise several times faster."""

    vehicle_id: str
    observed_at_s: float
    lat: float
    lon: float
    bearing_deg: float | None
    speed_mps: float | None
    state: str
    route_id: str | None
    trip_id: str | None
    delay_s: float | None


class History(BaseModel):
    start_s: float
    end_s: float
    count: int
    limit: int
    truncated: bool = Field(description="more positions than limit: the oldest limit are given")
    positions: list[HistoryPosition] = Field(description="oldest first")


class HistoryBounds(BaseModel):
    first_s: float | None = Field(description="null when nothing is stored")
    last_s: float | None


# --- service -------------------------------------------------------------------------------


class PipelineStats(BaseModel):
    batches: int
    messages: int
    pings_matched: int
    superseded_stored: int = Field(description="overtaken by a newer ping: stored unmatched")
    late: int = Field(description="older than their vehicle's newest ping: stored, not shown live")
    late_matched: int = Field(description="late pings answered with hindsight afterwards")
    revised: int = Field(description="answers settled differently after their ping")
    stop_events: int = Field(description="arrivals and departures at stops detected")
    by_state: dict[str, int]
    rejected_by_reason: dict[str, int]
    ignored: int = Field(description="messages that are no position and no mistake, left alone "
                         "(OwnTracks lwt, transition, ...)")  # fmt: skip
    vehicles_expired: int
    last_batch_size: int
    last_batch_s: float
    max_batch_s: float


class IngestStats(BaseModel):
    connected: bool
    broker: str
    messages_received: int
    connects: int
    reconnects: int
    connect_failures: int
    session_errors: int
    acknowledged: int = Field(description="QoS 1 messages acknowledged, once stored or rejected")
    acks_void: int = Field(description="acknowledgements whose connection had ended: resent")


class WriterStats(BaseModel):
    healthy: bool
    stored: int
    duplicates: int
    revised: int = Field(description="stored positions whose answer was revised")
    stop_events: int = Field(description="stop events stored")
    dropped_batches: int
    dropped_pings: int
    failures: int
    pending_batches: int


class GtfsRtPollStats(BaseModel):
    """One polled GTFS-realtime VehiclePositions feed (tracker/ingest/gtfs_rt_poll.py)."""

    feed: str = Field(description="the URL, its query values and password masked")
    healthy: bool = Field(description="the last poll brought the feed (or a 304)")
    polls: int
    feeds_read: int
    not_modified: int = Field(description="304 answers to If-None-Match / If-Modified-Since")
    failures: int
    failures_by_reason: dict[str, int]
    last_error: str | None = Field(description="why the current failure; null while healthy")
    entities: int
    sent: int = Field(description="positions put on the ingest queue")
    unchanged: int = Field(description="positions already sent (same vehicle and timestamp)")
    skipped_by_reason: dict[str, int]
    vehicles: int = Field(description="vehicles whose last position sent is remembered")
    feed_timestamp_s: float | None = Field(description="the last feed's header timestamp")


class Stats(BaseModel):
    now_s: float
    pipeline: PipelineStats
    queue: QueueStats
    queue_capacity: int
    ingest: IngestStats
    writer: WriterStats
    hub: HubStats
    auth: AuthStats
    gtfs_rt: list[GtfsRtPollStats] = Field(
        default_factory=list, description="the polled GTFS-realtime feeds, in the settings' order"
    )


class Config(BaseModel):
    """What the web pages need to start."""

    now_s: float = Field(description="the server's clock (a demo may run it apart from yours)")
    tiles_url: str
    tiles_attribution: str
    stale_after_s: float
    hide_after_s: float
    timezone: str = Field(description="the agency's IANA time zone")
    bounds: list[float] | None = Field(
        description="[min_lon, min_lat, max_lon, max_lat] of all stops and shapes"
    )
    feed_hash: str
