"""The `simulator` command line: `simulator run` makes a test day, `simulator replay` replays
a recorded file. Thin: each subcommand turns its flags into calls of `simulator.day`,
`simulator.replay`, `simulator.publish` and `simulator.files`, then `_send_all` shows the
whole path of a ping: pace → publish → write → count.

Exit codes: 0 done, 2 bad input (a missing feed or file, a bad broker URL or option, a broker
that cannot be reached), 130 interrupted (Ctrl-C or SIGTERM: in-flight messages get two
seconds, files are closed, no traceback).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Never
from zoneinfo import ZoneInfo

import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from simulator.day import (
    DAY_S,
    DriveConfig,
    SimConfig,
    SimPing,
    busiest_date,
    covered_date,
    runs_on,
    time_shift_s,
    whole_routes,
)
from simulator.errors import SimulatorError, UsageError
from simulator.files import SimWriter, write_scenario_truth
from simulator.gps import GpsConfig
from simulator.publish import DEFAULT_BROKER, MQTT_VERSIONS, MqttPublisher, parse_broker_url
from simulator.replay import Pacer, ReplayCounts, recorded_pings
from simulator.scenarios import KINDS, ScenarioError, parse_kinds, simulate_day
from tracker.cli import service_date_arg, time_of_day_arg
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.errors import TrackerError
from tracker.wire import DEFAULT_TOPIC_PREFIX

log = logging.getLogger("simulator")


@dataclass
class _Counts:
    sent: int = 0
    skipped: int = 0  # a vehicle id that cannot be a topic level
    vehicles: set[str] = field(default_factory=set)
    flags: Counter[str] = field(default_factory=Counter)


# --- the path of a ping ---------------------------------------------------------------------


def _send_all(
    items: Iterable[tuple[float, Ping, SimPing | None]],
    *,
    pacer: Pacer | None,
    publisher: MqttPublisher | None,
    writer: SimWriter | None,
    bar: tqdm[Never],
    counts: _Counts,
    timezone: dt.tzinfo | None,
) -> None:
    """Pace each (due stamp, ping, simulated ping) onto the clock, publish it, write it."""
    for due_s, ping, simulated in items:
        if pacer is not None:
            pacer.wait_for(due_s)
        if publisher is not None:
            try:
                publisher.publish(ping)
            except ValueError as exc:  # the vehicle id cannot be a topic level
                counts.skipped += 1
                log.debug("skipping a ping: %s", exc)
                continue
        if writer is not None and simulated is not None:
            writer.write(simulated)
        counts.sent += 1
        counts.vehicles.add(ping.vehicle_id)
        if simulated is not None:
            truth = simulated.truth
            for flag in ("outlier", "duplicate", "out_of_order"):
                if getattr(truth, flag):
                    counts.flags[flag] += 1
        bar.update(1)
        if counts.sent % 500 == 1:
            local = dt.datetime.fromtimestamp(ping.timestamp, timezone)
            bar.set_postfix_str(f"{local:%Y-%m-%d %H:%M:%S}", refresh=False)


def _outputs(
    stack: ExitStack, args: argparse.Namespace, *, publish: bool
) -> tuple[MqttPublisher | None, tqdm[Never]]:
    publisher = None
    if publish:
        publisher = stack.enter_context(
            MqttPublisher(
                args.broker or DEFAULT_BROKER,
                qos=args.qos,
                mqtt_version=args.mqtt_version,
                topic_prefix=args.topic_prefix,
            )
        )
    stack.enter_context(logging_redirect_tqdm())
    bar = tqdm(unit=" pings", disable=args.quiet, mininterval=0.5, dynamic_ncols=True)
    stack.enter_context(bar)
    return publisher, bar


# --- simulator run --------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from tracker.gtfs.load import load_network

    counts = _Counts()
    publish = args.broker is not None or args.out is None
    if publish:
        parse_broker_url(args.broker or DEFAULT_BROKER)  # a bad URL fails before the slow part
    network = load_network(args.gtfs)
    date, start_s, end_s, shift_s, anchor_s = _window(network, args)
    route_ids = _route_ids(network, args.routes) if args.routes else None
    config = SimConfig(
        interval_s=args.interval_s,
        drive=DriveConfig(),
        gps=GpsConfig(
            noise_m=args.noise_m,
            outlier_rate=args.outliers,
            dropout_rate=args.dropouts,
            duplicate_rate=args.duplicates,
            out_of_order_rate=args.out_of_order,
        ),
        trip_ids_in_pings=args.trip_ids,
    )
    if args.whole_routes:
        if args.vehicles is None or route_ids is not None:
            raise UsageError("--whole-routes needs --vehicles (how many buses), without --routes")
        route_ids = whole_routes(
            network, np.random.default_rng([args.seed, 1]), date, max_vehicles=args.vehicles,
            start_s=start_s, end_s=end_s, config=config,
        )  # fmt: skip
        log.info("whole routes: %d routes (%s)", len(route_ids), ",".join(route_ids))
    try:  # without --scenarios, exactly `simulate`'s day
        day = simulate_day(
            network, np.random.default_rng(args.seed), date, scenarios=args.scenarios or (),
            start_s=start_s, end_s=end_s, config=config, route_ids=route_ids,
            max_vehicles=args.vehicles, time_shift_s=shift_s,
        )  # fmt: skip
    except ScenarioError as exc:
        raise UsageError(f"{args.gtfs}: {exc}") from exc
    stream, truth = day.pings, day.truth
    if args.scenario_truth is not None:
        write_scenario_truth(args.scenario_truth, truth)
    tz = ZoneInfo(network.timezone)
    log.info(
        "simulating service day %s from %s, seed %d%s",
        f"{date:%Y-%m-%d (%A)}",
        _clock_text(start_s),
        args.seed,
        f", timestamps shifted by {shift_s / DAY_S:+.2f} days" if shift_s else "",
    )
    try:
        with ExitStack() as stack:
            publisher, bar = _outputs(stack, args, publish=publish)
            writer = stack.enter_context(SimWriter(args.out, args.truth))
            pacer = None
            if publisher is not None:  # waiting services the connection (keep-alive, acks)
                catch_up = args.catch_up_speed if args.catch_up_min else None
                pacer = Pacer(
                    args.speedup,
                    anchor_s=anchor_s,
                    anchor_due_at_s=args.start_due_at,
                    catch_up_speed=catch_up,
                    wait=publisher.wait,
                )
            _send_all(
                ((s.sent_at, s.ping, s) for s in stream),
                pacer=pacer,
                publisher=publisher,
                writer=writer,
                bar=bar,
                counts=counts,
                timezone=tz,
            )
    except KeyboardInterrupt:
        print(f"simulator: interrupted after {counts.sent} pings", file=sys.stderr)
        return 130
    flags = ", ".join(f"{name} {n}" for name, n in sorted(counts.flags.items())) or "no faults"
    where = [f"MQTT {args.broker or DEFAULT_BROKER}"] if publish else []
    where += [str(p) for p in (args.out, args.truth) if p is not None]
    print(f"{counts.sent} pings from {len(counts.vehicles)} buses ({flags}) to {', '.join(where)}")
    if args.scenarios:
        made = Counter(t.kind for t in truth)
        listed = ", ".join(f"{kind} {n}" for kind, n in sorted(made.items()))
        where_truth = f" (truth: {args.scenario_truth})" if args.scenario_truth else ""
        print(f"scenarios: {listed}{where_truth}")
    return 0


def _window(
    network: Network, args: argparse.Namespace
) -> tuple[dt.date, float, float, float, float | None]:
    """(service date, start_s, end_s, time shift, pacing anchor) from the options."""
    if args.now:
        if args.date is not None or args.start is not None:
            raise UsageError("--now picks the date and start itself; leave out --date and --start")
        now_s = time.time()
        today = network.local_date(now_s)
        try:
            date = covered_date(network, today)
        except ValueError as exc:
            raise UsageError(f"{args.gtfs}: {exc}, so --now has nothing to show") from exc
        shift_s = time_shift_s(network, date, today)
        if date != today:
            print(
                f"simulator: the feed has no service on {today:%Y-%m-%d (%A)}; simulating "
                f"{date:%Y-%m-%d} and shifting timestamps by {shift_s / DAY_S:+.0f} days. "
                "A tracker matches these pings only if its feed has service today.",
                file=sys.stderr,
            )
        if args.speedup != 1:
            print(
                "simulator: with --now and --speedup other than 1, timestamps run ahead of the "
                "clock and a live tracker rejects them once they are minutes in the future",
                file=sys.stderr,
            )
        start_s = now_s - network.day_origin(today)
        anchor_s: float | None = now_s
    else:
        date = args.date if args.date is not None else busiest_date(network)
        if not runs_on(network, date):
            raise UsageError(
                f"{args.gtfs}: no trip runs on {date:%Y-%m-%d (%A)}; "
                f"try one of {_some_dates(network)}, or leave --date out for the busiest day"
            )
        shift_s = 0.0
        start_s = args.start if args.start is not None else 0.0
        anchor_s = network.day_origin(date) + start_s if args.start is not None else None
        if args.start_due_at is not None and args.start is None:
            raise UsageError("--start-due-at needs --start: the time that is due then")
        if args.catch_up_min:
            if args.start is None:
                raise UsageError("--catch-up-min needs --start: the time the catch-up ends")
            start_s -= 60.0 * args.catch_up_min
    end_s = start_s + 60.0 * args.duration_min if args.duration_min is not None else 2 * DAY_S
    return date, start_s, end_s, shift_s, anchor_s


def _some_dates(network: Network) -> str:
    dates = sorted(d for d, services in network.services_by_date.items() if services)
    if not dates:
        return "none (the feed has no calendar)"
    return f"{dates[0]} … {dates[-1]}" if len(dates) > 2 else ", ".join(dates)


def _route_ids(network: Network, text: str) -> list[str]:
    """Route ids from a comma-separated list of route ids or short names."""
    by_name = {r.short_name: r.route_id for r in network.routes if r.short_name}
    out: list[str] = []
    for name in (part.strip() for part in text.split(",") if part.strip()):
        if name in network.route_index:
            out.append(name)
        elif name in by_name:
            out.append(by_name[name])
        else:
            known = ", ".join(sorted(r.short_name or r.route_id for r in network.routes)[:20])
            raise UsageError(
                f"no route {name!r} in the feed (by id or short name); routes: {known}"
            )
    return out


def _clock_text(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# --- simulator replay -----------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> int:
    counts = _Counts()
    read = ReplayCounts()
    parse_broker_url(args.broker or DEFAULT_BROKER)
    start_at_s = time.time() if args.now else None
    pings = recorded_pings(args.file, loop=args.loop, start_at_s=start_at_s, counts=read)
    if args.now and args.speed != 1:
        print(
            "simulator: with --now and --speed other than 1, timestamps run ahead of the clock",
            file=sys.stderr,
        )
    try:
        with ExitStack() as stack:
            publisher, bar = _outputs(stack, args, publish=True)
            _send_all(
                ((p.timestamp, p, None) for p in pings),
                pacer=Pacer(args.speed, anchor_s=start_at_s, wait=_waiter(publisher)),
                publisher=publisher,
                writer=None,
                bar=bar,
                counts=counts,
                timezone=None,  # the machine's local time
            )
    except KeyboardInterrupt:
        print(f"simulator: interrupted after {counts.sent} pings", file=sys.stderr)
        return 130
    extra = f", {read.bad_records} bad records skipped" if read.bad_records else ""
    extra += f", {counts.skipped} with ids unfit for a topic skipped" if counts.skipped else ""
    print(f"replayed {counts.sent} pings from {len(counts.vehicles)} vehicles{extra}")
    return 0


def _waiter(publisher: MqttPublisher | None) -> Callable[[float], None]:
    return publisher.wait if publisher is not None else time.sleep


# --- parsing --------------------------------------------------------------------------------


def _number(text: str) -> float:
    """`text` as a float; NaN (which every check below refuses) if it is not a number."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _share(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 up to (not) 1")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number ≥ 0")
    return value


def _scenarios(text: str) -> list[str]:
    try:
        return parse_kinds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ≥ 1")
    return int(text)


def _mqtt_options(parser: argparse._ActionsContainer, *, broker_help: str) -> None:
    parser.add_argument("--broker", metavar="URL", help=broker_help)
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="default 1")
    parser.add_argument(
        "--mqtt-version",
        choices=sorted(MQTT_VERSIONS),
        default="3.1.1",
        help="protocol version (default 3.1.1, which every broker speaks)",
    )
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_TOPIC_PREFIX,
        help=f"topics are PREFIX/<vehicle_id>/position (default {DEFAULT_TOPIC_PREFIX})",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simulator",
        description="Make and replay test days of bus GPS pings for the tracker.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="simulate a day of buses from a GTFS feed and publish their pings",
        description=(
            "Simulate buses running the trips of a GTFS feed (one bus per block) with realistic "
            "speeds, dwells, drifting lateness and GPS faults, and publish their pings over "
            "MQTT as the tracker expects them, and/or write them to a file with their ground "
            "truth. The same --seed gives the same pings. Without --broker and with --out, "
            "nothing is published and nothing waits."
        ),
    )
    run.add_argument("--gtfs", type=Path, required=True, help="GTFS feed (.zip or folder)")
    when = run.add_argument_group("which day")
    when.add_argument(
        "--date", type=service_date_arg, help="service date YYYYMMDD (default: the feed's busiest)"
    )
    when.add_argument(
        "--start", type=time_of_day_arg, help="HH:MM of the service day (default: 00:00)"
    )
    when.add_argument("--duration-min", type=_positive, help="minutes to simulate (default: all)")
    when.add_argument(
        "--catch-up-min",
        type=_positive,
        help=(
            "with --start: begin this many minutes earlier and publish those minutes at "
            "--catch-up-speed, so that a tracker has the buses' recent past when --start comes"
        ),
    )
    when.add_argument(
        "--catch-up-speed", type=_positive, default=20.0, help="default 20 (see --catch-up-min)"
    )
    when.add_argument(
        "--start-due-at",
        type=float,
        metavar="EPOCH_S",
        help=(
            "with --start: the wall-clock time (epoch seconds) at which the --start is due, so "
            "that a tracker with the same clock sees each ping on time (the catch-up then ends "
            "then; default: --start is due at once, or when the catch-up has played)"
        ),
    )
    when.add_argument(
        "--now",
        action="store_true",
        help=(
            "simulate today's service from the current local time (feed time zone), stamped "
            "with today's date; if the feed has no service today, the nearest date with the "
            "same weekday is simulated and its timestamps are shifted onto today"
        ),
    )
    what = run.add_argument_group("which buses")
    what.add_argument("--vehicles", type=_count, help="at most this many buses (drawn at random)")
    what.add_argument(
        "--whole-routes",
        action="store_true",
        help=(
            "with --vehicles: every bus of routes drawn at random while they fit, instead of "
            "buses drawn at random over every route (which leaves each route short of buses)"
        ),
    )
    what.add_argument("--routes", help="comma-separated route ids or short names")
    what.add_argument(
        "--trip-ids", action="store_true", help="pings carry their route_id and trip_id"
    )
    how = run.add_argument_group("how the pings come")
    how.add_argument("--interval-s", type=_positive, default=10.0, help="default 10")
    how.add_argument(
        "--speedup",
        type=_non_negative,
        default=1.0,
        help="simulated seconds per real second (60: an hour a minute; 0: no waiting)",
    )
    how.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    how.add_argument("--noise-m", type=_non_negative, default=8.0, help="GPS σ per axis, m")
    how.add_argument("--outliers", type=_share, default=0.01, help="share moved 100–300 m")
    how.add_argument("--dropouts", type=_share, default=0.02, help="share of pings lost")
    how.add_argument("--duplicates", type=_share, default=0.005, help="share sent twice")
    how.add_argument("--out-of-order", type=_share, default=0.005, help="share delivered late")
    cases = run.add_argument_group("operations scenarios (see simulator.scenarios)")
    cases.add_argument(
        "--scenarios",
        type=_scenarios,
        metavar="LIST",
        help=f"comma-separated cases to put in the day, each on a bus of its own: "
        f"{', '.join(KINDS)} (repeats allowed; placed at random, the same with the same --seed)",
    )
    cases.add_argument(
        "--scenario-truth",
        type=Path,
        metavar="FILE",
        help="write the scenarios' ground truth here, as JSON lines (kind, vehicle_id, trip_id, "
        "start_s, end_s, ...; and the bunching and gapping they cause)",
    )
    out = run.add_argument_group("where to")
    out.add_argument("--out", type=Path, help="also write the pings as JSON lines here")
    out.add_argument("--truth", type=Path, help="write the ground truth CSV here")
    _mqtt_options(
        out, broker_help=f"MQTT broker URL (default {DEFAULT_BROKER}; not used with only --out)"
    )
    run.set_defaults(handler=_run)

    replay = sub.add_parser(
        "replay",
        help="replay a recorded pings file over MQTT at its own pace, sped up",
        description=(
            "Publish the pings of a recorded file (CSV, JSON lines, flattened GTFS-realtime "
            "CSV, or GTFS-realtime .pb) in file order, at the pace of their timestamps "
            "divided by --speed."
        ),
    )
    replay.add_argument("file", type=Path, help="the pings file")
    replay.add_argument(
        "--speed", type=_non_negative, default=1.0, help="times real time (0: no waiting)"
    )
    replay.add_argument("--loop", action="store_true", help="start again at the end, for ever")
    replay.add_argument(
        "--now",
        action="store_true",
        help="shift the timestamps so that the first ping is stamped now",
    )
    _mqtt_options(replay, broker_help=f"MQTT broker URL (default {DEFAULT_BROKER})")
    replay.set_defaults(handler=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # SIGTERM (docker stop, kill) ends a run like Ctrl-C: in-flight messages get a moment.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        code: int = args.handler(args)
    except (SimulatorError, TrackerError) as exc:
        print(f"simulator: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simulator: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
