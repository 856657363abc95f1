"""Benchmark of the GTFS-realtime feeds on a real day: the validator on WMATA's, at full fleet.

    python -m bench.gtfs_rt_validate [--data ../shared/data/wmata-bus-2026-02-16] [--every-min 10]
                                     [--start HH:MM] [--end HH:MM] [--given-ids]

The recorded day (`vehicle_positions.csv`: every bus of the three routes, 31, one position each
about 30 s) is replayed through the service's engine (`bench.feed_replay.replay`: matcher,
settling, stop events, predictions, operations, in micro-batches of 5 s of pings), with the
agency's trip and route ids **hidden** (the tracker infers them, as from a phone or a plain GPS
unit; `--given-ids` keeps them). Every `--every-min` simulated minutes the three feeds are built
as the service builds them (`tracker.export.gtfs_rt.FeedBuilder`, one builder for the day; the
feeds are minutes apart, so nearly every bus has changed) and checked by the independent
`gtfs-rt-validator` (its "modern" rules) against the static GTFS, read once
(`gtfs_rt_validator.api.prepare_feed`). Prints per snapshot: the vehicles in VehiclePositions (on
a trip), the trips in TripUpdates (their stop_time_updates), the alerts, the entities, errors and
warnings by rule id (occurrences), the build time, the validator's time and the feeds' sizes;
then the totals: errors (the target is none), warnings by rule, times.

`--start` and `--end` (the agency's local time) choose the hours: the recording runs 10:58 to
15:59, all of it by default (30 snapshots, about 3 minutes on this project's 2-core machine).
Why each warning remains is in docs/interfaces.md ("Validated").
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from gtfs_rt_validator.api import Mode, Result, prepare_feed

from bench.feed_replay import ROLES, Moment, replay, validate_feeds
from bench.matching import DEFAULT_DATA
from tracker.core.model import Ping
from tracker.export import gtfs_rt
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, read_pings
from tracker.settings import Settings

STALE_AFTER_S = float(Settings.model_fields["stale_after_s"].default)  # the service's


def notices(result: Result) -> tuple[Counter[str], Counter[str]]:
    """(errors, warnings) of a validator run: occurrences by rule id. A file the validator could
    not read (a system error) counts as an error."""
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    failing = set(result.error_ids())
    found = result.run.notices
    for rule_id in found.rule_ids():
        (errors if rule_id in failing else warnings)[rule_id] += found.count_for(rule_id)
    system = result.run.system_errors
    for rule_id in system.rule_ids():
        errors[rule_id] += system.count_for(rule_id)
    return errors, warnings


def by_rule(counts: Counter[str]) -> str:
    return ", ".join(f"{rule} ×{n}" for rule, n in sorted(counts.items())) or "none"


def local_window(
    pings: Sequence[Ping], timezone: str, start: str | None, end: str | None
) -> list[Ping]:
    """The pings whose local time of day is in [start, end) (HH:MM; None: no bound)."""
    zone = ZoneInfo(timezone)

    def minute(text: str | None, default: int) -> int:
        if text is None:
            return default
        hours, minutes = (int(part) for part in text.split(":"))
        return hours * 60 + minutes

    low, high = minute(start, 0), minute(end, 24 * 60)
    out = []
    for p in pings:
        at = dt.datetime.fromtimestamp(p.timestamp, zone)
        if low <= at.hour * 60 + at.minute < high:
            out.append(p)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every-min", type=float, default=10.0, help="between snapshots")
    parser.add_argument("--start", help="local time HH:MM to replay from (default: the first)")
    parser.add_argument("--end", help="local time HH:MM to replay until (default: the last)")
    parser.add_argument("--given-ids", action="store_true", help="keep the agency's trip ids")
    args = parser.parse_args(argv)
    feed, positions = args.data / "gtfs.zip", args.data / "vehicle_positions.csv"
    if not feed.exists() or not positions.exists():
        print(f"no {feed} or {positions}; pass --data FOLDER with gtfs.zip and "
              "vehicle_positions.csv (../shared/data/wmata-bus-2026-02-16)")  # fmt: skip
        return 2
    if args.every_min <= 0:
        parser.error("--every-min must be positive")

    started = time.perf_counter()
    network = load_network(feed)
    rows = [p for p in read_pings(positions, ignore_trip_ids=not args.given_ids)
            if not isinstance(p, BadRow)]  # fmt: skip
    pings = sorted(local_window(rows, network.timezone, args.start, args.end),
                   key=lambda p: p.timestamp)  # fmt: skip
    if not pings:
        parser.error("no pings in that window: the recording runs 10:58 to 15:59 local time")
    zone = ZoneInfo(network.timezone)

    def hhmm(epoch_s: float) -> str:
        return dt.datetime.fromtimestamp(epoch_s, zone).strftime("%H:%M")

    buses = len({p.vehicle_id for p in pings})
    loaded_s = time.perf_counter() - started
    started = time.perf_counter()
    prepared = prepare_feed(feed, mode=Mode.MODERN)
    prepare_s = time.perf_counter() - started
    print(f"{feed}: {len(pings):,} pings of {buses} buses, {hhmm(pings[0].timestamp)} to "
          f"{hhmm(pings[-1].timestamp)} ({network.timezone}), trip and route ids "
          f"{'given' if args.given_ids else 'hidden'}; network and pings loaded in "
          f"{loaded_s:.1f} s, the static GTFS read by the validator in {prepare_s:.1f} s; "
          f"snapshots every {args.every_min:g} min", flush=True)  # fmt: skip

    builder = gtfs_rt.FeedBuilder(network)
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    warned_in: Counter[str] = Counter()  # snapshots with that warning
    build_s: list[float] = []
    validate_s: list[float] = []
    snapshots = 0
    replay_started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gtfs-rt-validate-") as scratch:
        moment: Moment
        for moment in replay(network, pings, step_s=5.0, every_s=60.0 * args.every_min):
            t0 = time.perf_counter()
            built = builder.build(moment.vehicles, moment.predictions, moment.alerts,
                                  moment.now_s, stale_after_s=STALE_AFTER_S)  # fmt: skip
            build_s.append(time.perf_counter() - t0)
            bodies = {ROLES[name]: top + entities for name, (top, entities) in built.items()}
            t0 = time.perf_counter()
            result = validate_feeds(bodies, prepared, moment.now_s, Path(scratch))
            validate_s.append(time.perf_counter() - t0)
            found_errors, found_warnings = notices(result)
            errors += found_errors
            warnings += found_warnings
            warned_in.update(found_warnings.keys())
            snapshots += 1
            vp = gtfs_rt.message(*built["vehicle-positions"])
            tu = gtfs_rt.message(*built["trip-updates"])
            sa = gtfs_rt.message(*built["alerts"])
            on_trip = sum(e.vehicle.HasField("trip") for e in vp.entity)
            stops = sum(len(e.trip_update.stop_time_update) for e in tu.entity)
            entities = len(vp.entity) + len(tu.entity) + len(sa.entity)
            sizes = " ".join(f"{role} {len(body) / 1e3:.1f}"
                             for role, body in bodies.items())  # fmt: skip
            print(f"{hhmm(moment.now_s)}  vehicles {len(vp.entity):2d} ({on_trip:2d} on a trip)"
                  f"  trip updates {len(tu.entity):3d} ({stops:4d} stops)  alerts "
                  f"{len(sa.entity):2d}  entities {entities:3d}  "
                  f"build {build_s[-1] * 1e3:4.0f} ms  validator {validate_s[-1]:4.2f} s  kB: "
                  f"{sizes}  errors {by_rule(found_errors)}  warnings "
                  f"{by_rule(found_warnings)}", flush=True)  # fmt: skip
    replay_s = time.perf_counter() - replay_started
    if not snapshots:
        print("no snapshot: the window is shorter than --every-min")
        return 1
    engine_s = replay_s - sum(build_s) - sum(validate_s)
    print(f"\n{snapshots} snapshots of {buses} buses: errors {sum(errors.values())} "
          f"({by_rule(errors)}; the target is none)")  # fmt: skip
    print(
        "warnings, occurrences (in how many snapshots): "
        + (
            ", ".join(f"{rule} {n} ({warned_in[rule]})" for rule, n in sorted(warnings.items()))
            or "none"
        )
    )
    print(f"validator per snapshot: median {statistics.median(validate_s):.2f} s, max "
          f"{max(validate_s):.2f} s (the static GTFS read once, {prepare_s:.1f} s); build "
          f"median {statistics.median(build_s) * 1e3:.0f} ms, max {max(build_s) * 1e3:.0f} ms; "
          f"the engine replayed {len(pings):,} pings in {engine_s:.1f} s; total "
          f"{time.perf_counter() - replay_started + loaded_s + prepare_s:.0f} s")  # fmt: skip
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
