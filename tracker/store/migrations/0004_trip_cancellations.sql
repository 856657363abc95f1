-- Trips the operator marked cancelled (tracker/api/cancellations.py, tracker/core/cancellations.py):
-- one row per (service day, trip). While a row is there, the GTFS-realtime feeds say the trip
-- does not run (a CANCELED TripUpdate and a NO_SERVICE Alert) and the operations monitor's ghost
-- alert of the trip is not listed. Undoing the cancellation deletes the row. `cancelled_at` is
-- on the service clock (a demo's clock may run on another day than the wall clock's);
-- `recorded_at` is the database's.

CREATE TABLE trip_cancellations (
    service_date text        NOT NULL CHECK (service_date ~ '^[0-9]{8}$'),
    trip_id      text        NOT NULL,
    cause        text        NOT NULL DEFAULT 'UNKNOWN_CAUSE',
    reason       text        NOT NULL DEFAULT '',
    cancelled_at timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_date, trip_id)
);
