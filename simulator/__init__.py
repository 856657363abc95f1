"""The simulator: makes test days of bus GPS pings from a GTFS feed, and replays recorded ones.

    # A whole service day to files (pings as JSON lines, ground truth as CSV), no broker:
    simulator run --gtfs FEED --date 20260304 --out pings.jsonl --truth truth.csv
    # Two hours from 07:00, an hour a minute, over MQTT to a local broker:
    simulator run --gtfs FEED --date 20260304 --start 07:00 --duration-min 120 --speedup 60
    # A live demo: today's service from the current local time, in real time:
    simulator run --gtfs FEED --now --broker mqtt://127.0.0.1:1883
    # A day with operations cases in it, and their ground truth as JSON lines:
    simulator run --gtfs FEED --out pings.jsonl --scenarios late-catch-up,stop-reporting,\
        cancelled-trip,detour --scenario-truth scenarios.jsonl
    # Replay recorded pings (CSV, JSON lines, GTFS-realtime CSV or .pb) 60 times faster:
    simulator replay pings.jsonl --speed 60 --broker mqtt://127.0.0.1:1883

Pings go to the tracker's MQTT topics with its JSON payload (`tracker.wire`). The same
`--seed` gives the same pings, byte for byte.

Modules: `day` is the pure core (a day of buses as a stream of `SimPing`s with their ground
truth, `simulate`), `gps` its GPS faults and `scenarios` the operations cases on demand (a late
bus, a silent one, a cancelled trip, a detour: `simulate_day`), pure too; the adapters are
`publish` (MQTT, paho), `files` (JSON lines and truth files), `replay` (pacing onto the clock,
recorded files) and `cli`.
Errors: `errors`.
"""
