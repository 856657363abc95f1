-- The history of matched positions and the latest state of each vehicle.
--
-- `positions` is partitioned by UTC day of `observed_at`. Partitions are created on demand by the
-- store (`positions_pYYYYMMDD`, bounds [day 00:00 UTC, next day 00:00 UTC)) and retention drops
-- whole ones. Rejected pings are never stored. Times are timestamptz; distances metres; angles
-- degrees clockwise from north; `service_date` is the GTFS service day as YYYYMMDD.

CREATE TABLE positions (
    vehicle_id     text             NOT NULL,
    observed_at    timestamptz      NOT NULL,
    received_at    timestamptz      NOT NULL,
    -- as reported by the vehicle
    lat            double precision NOT NULL,
    lon            double precision NOT NULL,
    speed_mps      double precision,
    bearing_deg    double precision,
    accuracy_m     double precision,
    route_id_given text,
    trip_id_given  text,
    -- as concluded by the matcher
    state          text             NOT NULL
        CHECK (state IN ('in_service', 'layover', 'off_route', 'not_matched')),
    reason         text,
    route_id       text,
    trip_id        text,
    service_date   text             CHECK (service_date ~ '^[0-9]{8}$'),
    direction_id   smallint,
    shape_id       text,
    shape_dist_m   double precision,
    snapped_lat    double precision,
    snapped_lon    double precision,
    offset_m       double precision,
    delay_s        double precision,
    headway_s      double precision,
    PRIMARY KEY (vehicle_id, observed_at)
) PARTITION BY RANGE (observed_at);

-- Replay reads every vehicle over a time range; the primary key serves one vehicle's trail.
CREATE INDEX positions_observed_at ON positions (observed_at);

-- One row per vehicle: its newest stored position (same columns as `positions`).
CREATE TABLE vehicle_latest (
    LIKE positions INCLUDING CONSTRAINTS,
    PRIMARY KEY (vehicle_id)
);
