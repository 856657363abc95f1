"""The `tracker` command line. Thin: each subcommand parses its flags and calls one function."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from tracker.errors import TrackerError


def _match(args: argparse.Namespace) -> int:
    from tracker.offline import match_file

    summary = match_file(
        args.gtfs,
        args.pings,
        args.out,
        ignore_trip_ids=args.ignore_trip_ids,
        live=args.live or args.lag_s is not None,
        lag_s=args.lag_s or 0.0,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out}")
    return 0


def _non_negative_s(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _predict(args: argparse.Namespace) -> int:
    from tracker.predict_offline import predict_file

    stats = predict_file(
        args.gtfs,
        args.pings,
        args.out,
        every_s=args.every_s,
        history=args.history,
        write_history=args.write_history,
        ignore_trip_ids=args.ignore_trip_ids,
        progress=not args.quiet,
    )
    for line in stats.lines():
        print(line)
    print(f"wrote {args.out}" + (f" and {args.write_history}" if args.write_history else ""))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from tracker.app import create_app
    from tracker.settings import load_settings

    settings = load_settings(
        broker_url=args.broker_url,
        database_url=args.database_url,
        gtfs=args.gtfs,
        http_host=args.host,
        http_port=args.port,
        batch_interval_s=args.batch_interval_s,
        retention_days=args.retention_days,
        share_group=args.share_group,
        poll_gtfs_rt=args.poll_gtfs_rt,
        poll_every_s=args.poll_every_s,
    )
    from tracker.api.ingest import RedactTokens

    RedactTokens.install()  # phones may send their token in the query string
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level="debug" if args.verbose else "info",
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from tracker.demo import DemoOptions, run_demo

    options = DemoOptions(
        host=args.host,
        port=args.port,
        vehicles=args.vehicles,
        broker_url=args.broker_url,
        database_url=args.database_url,
        simulate=not args.no_simulator,
        service_date=args.date,
        start_s=args.start,
        **({"gtfs": args.gtfs} if args.gtfs is not None else {}),
    )
    # `kill`, `timeout` or a service manager stop the demo with SIGTERM: as Ctrl-C, so that the
    # simulator, the embedded broker and PostgreSQL stop too (uvicorn re-raises the signal it
    # handled once the app has stopped; Python's default for SIGTERM would end the process
    # before the demo's own resources are stopped).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        asyncio.run(run_demo(options))
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, once all is stopped
        print("demo stopped")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    import asyncio

    from tracker.store.postgres import Store, mask_password
    from tracker.users_cli import database_url

    url = database_url(args.database_url)

    async def upgrade() -> list[str]:
        store = await Store.open(url, apply_migrations=False)
        try:
            return await store.upgrade()
        finally:
            await store.close()

    applied = asyncio.run(upgrade())
    print(
        f"{mask_password(url)}: " + (f"applied {', '.join(applied)}" if applied else "up to date")
    )
    return 0


# Argument types for service days and their times, shared with the simulator's command line.
_CLOCK = re.compile(r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?")


def service_date_arg(text: str) -> dt.date:
    """A service date written YYYYMMDD."""
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYYMMDD") from None


def time_of_day_arg(text: str) -> float:
    """HH:MM[:SS] of a service day, in seconds from its origin (hours may pass 24)."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time HH:MM (hours may pass 24)")
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Real-time bus tracker: match GPS pings to GTFS routes, trips and schedules.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    match = sub.add_parser(
        "match",
        help="match a file of recorded pings to the feed's trips (schedule adherence)",
        description=(
            "Match recorded pings (CSV, JSON lines, the flattened GTFS-realtime CSV layout, or "
            "GTFS-realtime .pb files) and write one CSV row per input ping with its route, trip, "
            "distance along the shape, delay and state."
        ),
    )
    match.add_argument("--gtfs", type=Path, required=True, help="GTFS feed (.zip or folder)")
    match.add_argument("--pings", type=Path, required=True, help="file of pings to match")
    match.add_argument("--out", type=Path, required=True, help="CSV file to write")
    match.add_argument(
        "--ignore-trip-ids",
        action="store_true",
        help="drop trip and route ids from the input so that everything is inferred",
    )
    match.add_argument(
        "--live",
        action="store_true",
        help=(
            "answer each ping as the live service does, from the pings before it only "
            "(streams with little memory); by default pings are matched with hindsight"
        ),
    )
    match.add_argument(
        "--lag-s",
        type=_non_negative_s,
        metavar="N",
        help=(
            "with --live: write for each ping the answer as the live service knows it N seconds "
            "after the ping, once the next pings and the other buses have been seen (0: the "
            "answer given at once, as plain --live)"
        ),
    )
    match.add_argument("--batch-size", type=int, default=500, help=argparse.SUPPRESS)
    match.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    match.set_defaults(handler=_match)

    predict = sub.add_parser(
        "predict",
        help="replay recorded pings as the live service would, predicting arrivals at stops",
        description=(
            "Replay recorded pings in time order, matched live (each from the pings before it), "
            "detect when buses reach and leave stops, learn running times from that as it "
            "goes, and every --every-s seconds of the day's clock write, for every bus in "
            "service, its predicted arrival (median and p10-p90 range) at the stops ahead on its "
            "trip and its block's next trips. A prediction rests on the pings before its time."
        ),
    )
    predict.add_argument("--gtfs", type=Path, required=True, help="GTFS feed (.zip or folder)")
    predict.add_argument("--pings", type=Path, required=True, help="file of recorded pings")
    predict.add_argument("--out", type=Path, required=True, help="predictions CSV to write")
    predict.add_argument(
        "--every-s", type=float, default=60.0, help="seconds between predictions (60)"
    )
    predict.add_argument(
        "--history",
        type=Path,
        help="stop events of earlier days (a --write-history file) to start the model from",
    )
    predict.add_argument(
        "--write-history", type=Path, help="write the stop events detected here (CSV)"
    )
    predict.add_argument(
        "--ignore-trip-ids",
        action="store_true",
        help="drop trip and route ids from the input so that everything is inferred",
    )
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(handler=_predict)

    serve = sub.add_parser(
        "serve",
        help="run the live service: MQTT in, PostgreSQL, HTTP API, websocket and map",
        description=(
            "Run the live tracker. Settings come from TRACKER_* environment variables (see "
            ".env.example); these flags override them."
        ),
    )
    serve.add_argument("--broker-url", help="MQTT broker (TRACKER_BROKER_URL)")
    serve.add_argument("--database-url", help="PostgreSQL (TRACKER_DATABASE_URL)")
    serve.add_argument("--gtfs", type=Path, help="GTFS feed (TRACKER_GTFS)")
    serve.add_argument("--host", help="HTTP host (TRACKER_HTTP_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (TRACKER_HTTP_PORT, default 8000)")
    serve.add_argument("--batch-interval-s", type=float, help="micro-batch interval (0.05)")
    serve.add_argument("--retention-days", type=int, help="days of history kept (30)")
    serve.add_argument("--share-group", help="MQTT 5 shared subscription group")
    serve.add_argument(
        "--poll-gtfs-rt",
        action="append",
        metavar="URL",
        help="poll this GTFS-realtime VehiclePositions feed into the pipeline; may be given "
        "several times (TRACKER_POLL_GTFS_RT, comma-separated; these flags replace it)",
    )
    serve.add_argument(
        "--poll-every-s",
        type=float,
        metavar="S",
        help="seconds between two polls of each feed (TRACKER_POLL_EVERY_S, default 10)",
    )
    serve.set_defaults(handler=_serve)

    demo = sub.add_parser(
        "demo",
        help="the whole system on this machine: embedded broker and database, simulated buses",
        description=(
            "Start an embedded MQTT broker and PostgreSQL (unless URLs are given), the bundled "
            "feed, the simulator and the live map at http://127.0.0.1:8000. Ctrl-C stops all."
        ),
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--vehicles", type=int, default=1500, help="simulated buses in the day")
    demo.add_argument("--gtfs", type=Path, help="another feed instead of the bundled one")
    demo.add_argument("--broker-url", help="use this broker instead of the embedded one")
    demo.add_argument("--database-url", help="use this database instead of the embedded one")
    demo.add_argument("--no-simulator", action="store_true", help="serve without moving buses")
    demo.add_argument(
        "--date",
        type=service_date_arg,
        help="run the demo clock on this service date, YYYYMMDD (default: today's weekday "
        "on a date the feed serves)",
    )
    demo.add_argument(
        "--start",
        type=time_of_day_arg,
        help="... from this time of day, HH:MM (default: now if buses run, else 08:00)",
    )
    demo.set_defaults(handler=_demo)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations")
    upgrade.add_argument("--database-url", help="PostgreSQL (TRACKER_DATABASE_URL)")
    upgrade.set_defaults(handler=_db_upgrade)

    from tracker.devices_cli import add_devices_commands
    from tracker.phones_cli import add_phones_commands
    from tracker.users_cli import add_users_commands

    add_users_commands(sub)
    add_devices_commands(sub)
    add_phones_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.handler(args)
    except TrackerError as exc:
        print(f"tracker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tracker: interrupted", file=sys.stderr)
        return 130
    return code
