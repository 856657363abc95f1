-- When each bus reached and left each stop of its trip (tracker.core.stop_events): the ground
-- truth of the arrival predictions and of the headways. One row per (vehicle, trip, service day,
-- stop of the trip); `stop_sequence` is the stop's index in the trip's pattern, from 0.
-- `event_at` is the arrival, or the departure where the arrival is not known. Retention deletes
-- rows older than TRACKER_RETENTION_DAYS.

CREATE TABLE stop_events (
    vehicle_id             text             NOT NULL,
    trip_id                text             NOT NULL,
    service_date           text             NOT NULL CHECK (service_date ~ '^[0-9]{8}$'),
    route_id               text             NOT NULL,
    direction_id           smallint,
    stop_id                text             NOT NULL,
    stop_sequence          integer          NOT NULL CHECK (stop_sequence >= 0),
    event_at               timestamptz      NOT NULL,
    arrival_at             timestamptz,
    departure_at           timestamptz,
    scheduled_arrival_at   timestamptz,
    scheduled_departure_at timestamptz,
    delay_s                double precision,
    observed               text             NOT NULL
        CHECK (observed IN ('interpolated', 'dwelling')),
    recorded_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, trip_id, service_date, stop_sequence),
    CHECK (arrival_at IS NOT NULL OR departure_at IS NOT NULL)
);

CREATE INDEX stop_events_at_stop ON stop_events (stop_id, event_at);
CREATE INDEX stop_events_at ON stop_events (event_at);
