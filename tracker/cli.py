"""The `tracker` command line. Thin: each subcommand parses its flags and calls one function."""

from __future__ import annotations

import argparse
import logging
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
        live=args.live,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    for line in summary.lines():
        print(line)
    print(f"wrote {args.out}")
    return 0


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
    match.add_argument("--batch-size", type=int, default=500, help=argparse.SUPPRESS)
    match.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    match.set_defaults(handler=_match)
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
