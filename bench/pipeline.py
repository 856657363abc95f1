"""Benchmark of the live pipeline end to end: simulator → MQTT → tracker → database → websocket.

    python -m bench.pipeline [--pings 50000] [--vehicles 500] [--rate R] [--gtfs FEED]

Run it from the checkout: it starts (`bench.live_service.running_tracker`) a real Mosquitto
(`tests.integration.servers.Mosquitto`) and an embedded PostgreSQL (`tracker.store.embedded`) in a
temporary directory, and the tracker in a process of its own (the app on uvicorn, as `tracker
serve` runs it, with the service's defaults, `tracker.settings.Settings`: micro-batches every 50
ms, a live tick of 0.1 s), so that the CPU and memory it reports are the tracker's alone. Then
it publishes N simulated pings of the first V buses of the morning (ids hidden, the simulator's
usual GPS faults) with the simulator's publisher (QoS 1, at most 1000 unacknowledged) as fast as
it goes, or `--rate` pings per second, while a websocket client listens on /ws/live, and prints:

- throughput: pings per second from the first publish until the tracker has taken every ping and
  written every batch (pings rejected as duplicate or late count as done: they are answered);
- latency from publish to websocket update, per ping the websocket showed. The hub sends each
  vehicle's newest state once per tick, so a ping superseded within a tick is never shown; the
  latency is that of the pings shown (the count is printed). Publisher and websocket client share
  this process, so both timestamps come from one clock;
- the pipeline's micro-batches: how many, their sizes, their times (decode + match + hand over);
- when the tracker fell behind: how many pings the ingest queue superseded (stored, unmatched,
  not shown live) and dropped, and that the database holds every ping accepted;
- CPU: seconds used by the tracker (its process, all threads, and the matcher's process; per
  thread: the event loop, the worker threads, the MQTT network thread), by PostgreSQL (all its
  processes), by Mosquitto and by this process over the same wall time, as a share of one core;
  the tracker's CPU per ping; and how busy the machine was (other processes make figures noisy);
- the tracker's peak RSS (its process's and the matcher process's, added up), once started and
  at the end.

The service clock is set just after the simulated window, whose length is kept under the live
view's 10 minutes (`Settings.hide_after_s`) by choosing the ping interval: N / V pings per bus.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from websockets.asyncio.client import connect

from bench.live_service import (
    TrackerService,
    cpu_s,
    machine_busy_s,
    percentiles,
    running_tracker,
)
from simulator.day import SimConfig, SimPing, busiest_date, simulate
from simulator.publish import MqttPublisher
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.demo import BUNDLED_FEED
from tracker.gtfs.load import load_network

LIVE_WINDOW_S = 420.0  # simulated time published; the live view drops buses silent for 600 s
CLOCK_AHEAD_S = 10.0  # the service clock stands this far after the last ping's timestamp
INTERVAL_RANGE_S = (1.0, 30.0)
DONE_TIMEOUT_S = 900.0
POLL_S = 0.2  # the polls cost the tracker CPU too: not too often


# --- pings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    pings: list[Ping]
    vehicles: int
    interval_s: float
    window_start_s: float  # epoch
    window_end_s: float


def workload(
    network: Network,
    *,
    pings: int,
    vehicles: int,
    date: dt.date,
    start_s: float,
    seed: int,
    copies: int = 1,
) -> Workload:
    """The first `pings` messages of the first `vehicles` buses heard from after `start_s`.

    With `copies` > 1 each simulated bus is sent under that many vehicle ids (`id~2`, ...),
    for fleets larger than any bundled-size feed runs at once; the copies drive the same path.
    """
    interval_s = float(np.clip(LIVE_WINDOW_S * vehicles / pings, *INTERVAL_RANGE_S))
    config = SimConfig(interval_s=interval_s)
    end_s = start_s + 1.15 * LIVE_WINDOW_S  # room for drop-outs, still well within 600 s
    stream = simulate(
        network, np.random.default_rng(seed), date, start_s=start_s, end_s=end_s, config=config
    )
    chosen: set[str] = set()
    out: list[SimPing] = []
    for sim in stream:
        vehicle_id = sim.ping.vehicle_id
        if vehicle_id not in chosen:
            if len(chosen) == vehicles:
                continue
            chosen.add(vehicle_id)
        out.append(sim)
        if len(out) * copies >= pings:
            break
    if not out:
        raise SystemExit("the simulator made no pings: try another --start")
    sent = [
        s.ping if k == 0 else dataclasses.replace(s.ping, vehicle_id=f"{s.ping.vehicle_id}~{k + 1}")
        for s in out
        for k in range(copies)
    ][:pings]
    return Workload(
        pings=sent,
        vehicles=len(chosen) * copies,
        interval_s=interval_s,
        window_start_s=network.day_origin(date) + start_s,
        window_end_s=max(s.ping.timestamp for s in out),
    )


def publish_all(
    url: str, pings: Sequence[Ping], sent_at: list[float], *, rate: float | None
) -> None:
    """Publish every ping at QoS 1, as fast as the broker acknowledges or at `rate` per second;
    note when each went."""
    with MqttPublisher(url, mqtt_version="5", client_id="bench-publisher") as publisher:
        start = time.perf_counter()
        for i, ping in enumerate(pings):
            if rate is not None:
                publisher.wait(start + i / rate - time.perf_counter())  # services the connection
            sent_at.append(time.perf_counter())
            publisher.publish(ping)


# --- measuring -----------------------------------------------------------------------------------


class LiveListener:
    """A websocket client of /ws/live noting when each (vehicle, observed_at_s) was shown."""

    def __init__(self) -> None:
        self.shown: list[tuple[float, str, float]] = []  # (perf_counter, vehicle, observed_at_s)
        self.connected = asyncio.Event()

    async def listen(self, url: str) -> None:
        async with connect(url, max_size=None) as ws:
            self.connected.set()
            async for text in ws:
                now = time.perf_counter()
                message = json.loads(text)
                for vehicle in message["vehicles"]:
                    self.shown.append((now, vehicle["vehicle_id"], vehicle["observed_at_s"]))


async def bench(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    network = load_network(args.gtfs)
    date = busiest_date(network) if args.date is None else args.date
    hours, minutes = (int(part) for part in args.start.split(":"))
    work = workload(network, pings=args.pings, vehicles=args.vehicles, date=date,
                    start_s=hours * 3600.0 + minutes * 60, seed=args.seed,
                    copies=args.copies)  # fmt: skip
    print(
        f"feed {args.gtfs.name}, service day {date}: {len(work.pings)} pings of {work.vehicles} "
        f"buses, one every {work.interval_s:.1f} s per bus, "
        f"{work.window_end_s - work.window_start_s:.0f} s of the day "
        f"(made in {time.perf_counter() - started:.1f} s); {os.cpu_count()} CPU cores",
        flush=True,
    )
    async with running_tracker(args.gtfs, service_now_s=work.window_end_s + CLOCK_AHEAD_S,
                               scratch_prefix="bench-pipeline-") as service:  # fmt: skip
        return await measure(args, work, service)


async def measure(args: argparse.Namespace, work: Workload, service: TrackerService) -> int:
    listener = LiveListener()
    listening: asyncio.Task[None] | None = None
    try:
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
            listening = asyncio.create_task(
                listener.listen(f"ws://127.0.0.1:{service.port}/ws/live")
            )
            await asyncio.wait_for(listener.connected.wait(), 10)
            others = {
                **service.servers(),
                "this benchmark (publisher, websocket client)": [psutil.Process()],
            }
            before = await service.stats(http)
            others_before = {name: cpu_s(ps) for name, ps in others.items()}
            machine_before = machine_busy_s()

            sent_at: list[float] = []
            first = time.perf_counter()
            broker_url = service.broker.url
            publishing = asyncio.create_task(
                asyncio.to_thread(publish_all, broker_url, work.pings, sent_at, rate=args.rate)
            )
            after = before
            while True:
                if publishing.done() and publishing.exception() is not None:
                    await publishing  # raises the publisher's error
                after = await service.stats(http)
                # A batch that failed is counted under "internal_error", not in "messages".
                failed = after["rejected_by_reason"].get("internal_error", 0)
                taken = after["messages"] + failed + after["queue_dropped"]
                idle = after["queue_waiting"] == 0 and after["store_pending_batches"] == 0
                if publishing.done() and taken >= len(work.pings) and idle:
                    break
                if time.perf_counter() - first > DONE_TIMEOUT_S:
                    raise SystemExit(f"not done after {DONE_TIMEOUT_S:g} s: {after}")
                await asyncio.sleep(POLL_S)
            done = time.perf_counter()
            await publishing
            full = await service.stats(http, full=True)
            after |= {key: full[key] for key in ("batch_sizes", "batch_s")}
            published_s = sent_at[-1] - first
            others_after = {name: cpu_s(ps) for name, ps in others.items()}
            machine_s = machine_busy_s() - machine_before
            await asyncio.sleep(1.5)  # the last ticks reach the websocket
        rows = await service.count_rows()
    finally:
        if listening is not None:
            listening.cancel()

    report(work, before, after, others_before, others_after, listener, sent_at, first=first,
           done=done, published_s=published_s, rows=rows, machine_s=machine_s)  # fmt: skip
    return 0


def report(
    work: Workload,
    before: dict[str, Any],
    after: dict[str, Any],
    others_before: dict[str, float],
    others_after: dict[str, float],
    listener: LiveListener,
    sent_at: Sequence[float],
    *,
    first: float,
    done: float,
    published_s: float,
    rows: int,
    machine_s: float,
) -> None:
    n = len(work.pings)
    wall_s = done - first
    print(f"\npublished {n} pings in {published_s:.2f} s ({n / published_s:,.0f}/s, QoS 1)")
    print(
        f"end to end: all {n} taken and written {wall_s:.2f} s after the first publish: "
        f"{n / wall_s:,.0f} pings/s; {rows} rows stored ({rows / wall_s:,.0f} rows/s)"
    )
    rejected = after["rejected_by_reason"]
    print(
        f"  rejected {sum(rejected.values())} {rejected}; store duplicates "
        f"{after['store_duplicates']}; ingest queue high water {after['queue_high_water']}, "
        f"superseded {after['queue_superseded']} (stored unmatched: "
        f"{after['superseded_stored']}), dropped {after['queue_dropped']}"
    )
    # A superseded ping skips the matcher's duplicate check: the store drops its second copy.
    accepted = n - sum(rejected.values()) - after["queue_dropped"] - after["store_duplicates"]
    print(
        f"  stored {rows} rows of {accepted} pings accepted (published, less rejected, dropped "
        "and duplicates)" + ("" if rows == accepted else f": {accepted - rows} MISSING")
    )
    print(f"  states {after['by_state']}")

    published: dict[tuple[str, float], float] = {}
    for at, ping in zip(sent_at, work.pings, strict=True):
        published.setdefault((ping.vehicle_id, round(ping.timestamp, 1)), at)
    latencies = [
        at - published[key]
        for at, vehicle_id, observed_at_s in listener.shown
        if (key := (vehicle_id, observed_at_s)) in published
    ]
    p50, p95, p99 = percentiles(latencies, 50, 95, 99)
    print(
        f"latency publish -> websocket: median {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms, max {max(latencies, default=float('nan')) * 1000:.0f} ms "
        f"(over the {len(latencies)} pings shown; the hub gave up "
        f"{after['hub_dropped_intermediate']} intermediate states for slow readers, and shows "
        "only each bus's newest ping per tick)"
    )

    sizes, seconds = after["batch_sizes"], after["batch_s"]
    s50, s95, smax = percentiles(sizes, 50, 95, 100)
    t50, t95 = percentiles(seconds, 50, 95)
    print(
        f"micro-batches: {len(sizes)}, size median {s50:.0f}, p95 {s95:.0f}, max {smax:.0f}; "
        f"time median {t50 * 1000:.0f} ms, p95 {t95 * 1000:.0f} ms, "
        f"max {after['max_batch_s'] * 1000:.0f} ms"
    )
    tracker_cpu_s = after["cpu_s"] - before["cpu_s"]
    shares = [f"tracker {tracker_cpu_s:.1f} s ({tracker_cpu_s / wall_s:.0%} of a core)"]
    ours_s = tracker_cpu_s
    for name, start_s in others_before.items():
        used_s = others_after[name] - start_s
        ours_s += used_s
        shares.append(f"{name} {used_s:.1f} s ({used_s / wall_s:.0%})")
    print(f"CPU over those {wall_s:.1f} s: " + ", ".join(shares))
    threads = after["thread_cpu_s"]
    print(
        "  the tracker's threads and matcher process, µs of CPU per ping: "
        + ", ".join(
            f"{role} {(used_s - before['thread_cpu_s'].get(role, 0.0)) / n * 1e6:.0f}"
            for role, used_s in sorted(threads.items())
        )
    )
    cores = os.cpu_count() or 1
    print(
        f"  the tracker spent {tracker_cpu_s / n * 1e6:.0f} µs of CPU per ping: "
        f"{n / tracker_cpu_s:,.0f} pings/s if it had a core to itself; the machine's "
        f"{cores} cores were {machine_s / (cores * wall_s):.0%} busy, "
        f"{max(machine_s - ours_s, 0.0):.1f} core-seconds of it other processes'"
    )
    print(
        "tracker peak RSS (its process and the matcher's, added up): "
        + ", ".join(
            f"{total:.0f} MB {when} ({own:.0f} + {matcher:.0f})"
            for when, stats in (("once started", before), ("at the end", after))
            for own, matcher in [(stats["peak_rss_mb"], stats["matcher_peak_rss_mb"])]
            for total in [own + matcher]
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pings", type=int, default=50_000)
    parser.add_argument("--vehicles", type=int, default=500)
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="send each simulated bus under this many vehicle ids (a fleet larger than the feed)",
    )
    parser.add_argument("--gtfs", type=Path, default=BUNDLED_FEED)
    parser.add_argument("--date", type=dt.date.fromisoformat, help="default: the busiest")
    parser.add_argument("--start", default="08:00", help="time of day of the window, HH:MM")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, help="pings/s to publish (default: all at once)")
    args = parser.parse_args(argv)
    if args.pings < 1 or args.vehicles < 1 or args.copies < 1:
        parser.error("--pings, --vehicles and --copies must be at least 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
