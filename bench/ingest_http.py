"""Benchmark of the phone apps' HTTP ingest: pings per second into the live service over HTTP.

    python -m bench.ingest_http [--seconds 10] [--concurrency 16,64] [--vehicles 500]
                                [--modes osmand-get,traccar-json,owntracks] [--gtfs FEED]

The service runs as `bench.pipeline` runs it (`bench.live_service.running_tracker`: a real
Mosquitto, an embedded PostgreSQL, the tracker on uvicorn in a process of its own with the
service's defaults), and this process is the phones: an `httpx.AsyncClient` with N keep-alive
connections, each driven by one task that sends its vehicles' pings one request after the other
(as a phone does: each vehicle's pings in order, on one connection), as fast as the answers come,
for `--seconds` per mode and connection count:

- `osmand-get`: OsmAnd / Traccar Client's classic form, `GET /ingest/osmand?id=&lat=&lon=
  &timestamp=&speed=(knots)&bearing=&accuracy=`;
- `traccar-json`: Traccar Client's JSON body, `POST /ingest/osmand`;
- `owntracks`: an OwnTracks `location` message, `POST /ingest/owntracks` with `X-Limit-U` and
  `X-Limit-D`.

The pings are the first `--vehicles` buses of a simulated morning on the feed (the bundled
Nairobi one by default; `bench.pipeline.workload`, the simulator's GPS noise and outliers), each
bus's in time order, whole seconds apart (the simulator's duplicated and reordered messages are
left out, and OwnTracks' `tst` is whole seconds), so that every ping is one the tracker stores.
Each mode and connection count sends them under vehicle ids of its own (`g16-<bus>`,
`j64-<bus>`, ...), so every 200 must be stored exactly once, which the benchmark checks by
counting the rows in PostgreSQL once the tracker has caught up. It prints, per run: requests per
second answered 200, 503s (the ingest queue full), other statuses, the rows stored, the latency
of a request (sent to answered, at this client) p50/p95/p99, what the pipeline rejected or
superseded, how long the tracker took to catch up after the last request, and the CPU each side
used over the run (the tracker's process with its matcher process, PostgreSQL, this client)
against the machine's.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import importlib.util
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import psutil

from bench.live_service import (
    TrackerService,
    cpu_s,
    machine_busy_s,
    percentiles,
    running_tracker,
)
from bench.pipeline import CLOCK_AHEAD_S, Workload, workload
from simulator.day import busiest_date
from tracker.core.model import Ping
from tracker.demo import BUNDLED_FEED
from tracker.gtfs.load import load_network
from tracker.ingest.phones import KMH_MPS, KNOT_MPS

# httpcore (1.0) runs `import sniffio` at every lock it sets up, several times per request, and
# sniffio is not installed here: a failed import is looked for on disk again each time, a fifth
# of the client's CPU. None in sys.modules makes it fail at once; httpcore then takes asyncio.
if importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

MODES = ("osmand-get", "traccar-json", "owntracks")
TAGS = {"osmand-get": "g", "traccar-json": "j", "owntracks": "t"}  # of the vehicle ids
MAX_RATE = 3000.0  # requests/s a run can reach before it runs out of pings (it says so)
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.2
REQUEST_TIMEOUT_S = 30.0


# --- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One request as a phone app sends it, encoded before the run so that the client's CPU
    goes to sending it."""

    method: str
    path: str  # with the query
    content: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


JSON = ("content-type", "application/json")


def osmand_get(vehicle_id: str, p: Ping) -> Message:
    params: dict[str, str | int | float] = {"id": vehicle_id, "lat": p.lat, "lon": p.lon,
                                            "timestamp": int(p.timestamp)}  # fmt: skip
    if p.speed_mps is not None:
        params["speed"] = round(p.speed_mps / KNOT_MPS, 2)
    if p.bearing_deg is not None:
        params["bearing"] = round(p.bearing_deg, 1)
    if p.accuracy_m is not None:
        params["accuracy"] = round(p.accuracy_m, 1)
    return Message("GET", f"/ingest/osmand?{urlencode(params)}")


def traccar_json(vehicle_id: str, p: Ping) -> Message:
    at = dt.datetime.fromtimestamp(int(p.timestamp), dt.UTC)
    coords: dict[str, float] = {"latitude": p.lat, "longitude": p.lon}
    if p.speed_mps is not None:
        coords["speed"] = round(p.speed_mps, 2)
    if p.bearing_deg is not None:
        coords["heading"] = round(p.bearing_deg, 1)
    if p.accuracy_m is not None:
        coords["accuracy"] = round(p.accuracy_m, 1)
    body = {"device_id": vehicle_id, "location": {
        "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "coords": coords}}  # fmt: skip
    return Message("POST", "/ingest/osmand", json.dumps(body).encode(), (JSON,))


def owntracks(vehicle_id: str, p: Ping) -> Message:
    user, device = vehicle_id.split("-", 1)
    body: dict[str, str | int | float] = {"_type": "location", "tid": device[-2:],
                                          "lat": p.lat, "lon": p.lon,
                                          "tst": int(p.timestamp)}  # fmt: skip
    if p.speed_mps is not None:
        body["vel"] = round(p.speed_mps / KMH_MPS)  # the app sends whole km/h
    if p.bearing_deg is not None:
        body["cog"] = round(p.bearing_deg)
    if p.accuracy_m is not None:
        body["acc"] = round(p.accuracy_m)
    headers = (JSON, ("X-Limit-U", user), ("X-Limit-D", device))
    return Message("POST", "/ingest/owntracks", json.dumps(body).encode(), headers)


ENCODERS: dict[str, Callable[[str, Ping], Message]] = {
    "osmand-get": osmand_get,
    "traccar-json": traccar_json,
    "owntracks": owntracks,
}


# --- pings ---------------------------------------------------------------------------------------


def storable(pings: Sequence[Ping]) -> list[Ping]:
    """Each vehicle's pings in order and whole seconds apart: the simulator's duplicated and
    reordered messages out, so that each one sent is a ping the tracker stores."""
    last_s: dict[str, int] = {}
    out: list[Ping] = []
    for p in pings:
        second = int(p.timestamp)
        if second > last_s.get(p.vehicle_id, -1):
            last_s[p.vehicle_id] = second
            out.append(p)
    return out


def lanes(mode: str, prefix: str, pings: Sequence[Ping], connections: int) -> list[list[Message]]:
    """The messages of each connection: vehicle k's pings go to connection k mod N, in order,
    under the id `{prefix}-{vehicle}`."""
    encode = ENCODERS[mode]
    lane_of: dict[str, int] = {}
    out: list[list[Message]] = [[] for _ in range(connections)]
    for p in pings:
        lane = lane_of.setdefault(p.vehicle_id, len(lane_of) % connections)
        out[lane].append(encode(f"{prefix}-{p.vehicle_id}", p))
    return out


# --- a run ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """What the client saw in one run of a mode at a number of connections."""

    mode: str
    connections: int
    prefix: str  # its vehicles' ids start with this, then "-"
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors, by type
    latency_s: list[float] = field(default_factory=list)
    ran_out: int = 0  # tasks that sent all their pings before the time was up
    wall_s: float = 0.0


async def drive(url: str, run: Run, lanes_: Sequence[Sequence[Message]], seconds: float) -> None:
    """Each connection's task sends its messages one after the other until `seconds` have
    passed. Each connection is an `httpx.AsyncClient` of its own, with one keep-alive
    connection: one client's pool shared by N tasks costs twice the CPU per request here."""
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def one_lane(messages: Sequence[Message]) -> None:
        async with httpx.AsyncClient(base_url=url, limits=limits,
                                     timeout=REQUEST_TIMEOUT_S) as client:  # fmt: skip
            for m in messages:
                started = time.perf_counter()
                if started >= deadline:
                    return
                try:
                    response = await client.request(m.method, m.path, content=m.content,
                                                    headers=m.headers)  # fmt: skip
                except httpx.TransportError as e:
                    run.errors[type(e).__name__] += 1
                    continue
                run.latency_s.append(time.perf_counter() - started)
                run.statuses[response.status_code] += 1
        run.ran_out += 1

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for messages in lanes_:
            group.create_task(one_lane(messages))
    run.wall_s = time.perf_counter() - started


async def caught_up(service: TrackerService, http: httpx.AsyncClient, before: dict[str, Any],
                    sent: int) -> dict[str, Any]:  # fmt: skip
    """The tracker's stats once it has taken the `sent` messages accepted since `before` and
    written every batch."""
    deadline = time.perf_counter() + DRAIN_TIMEOUT_S
    while True:
        after = await service.stats(http)
        failed = after["rejected_by_reason"].get("internal_error", 0)
        taken = after["messages"] + failed + after["queue_dropped"]
        taken_before = (before["messages"] + before["queue_dropped"]
                        + before["rejected_by_reason"].get("internal_error", 0))  # fmt: skip
        idle = after["queue_waiting"] == 0 and after["store_pending_batches"] == 0
        if taken - taken_before >= sent and idle:
            return after
        if time.perf_counter() > deadline:
            raise SystemExit(f"the tracker had not caught up after {DRAIN_TIMEOUT_S:g} s: {after}")
        await asyncio.sleep(POLL_S)


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def delta_s(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in sorted(after.items())}


async def one_run(service: TrackerService, run: Run, pings: Sequence[Ping], seconds: float) -> None:
    client_process = psutil.Process()
    servers = service.servers()
    messages = lanes(run.mode, run.prefix, pings, run.connections)
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        before = await service.stats(http)
        servers_before = {name: cpu_s(ps) for name, ps in servers.items()}
        client_before = cpu_s([client_process])
        machine_before = machine_busy_s()
        await drive(service.url, run, messages, seconds)
        at_end = await service.stats(http)
        tracker_cpu_s = at_end["cpu_s"] - before["cpu_s"]
        threads_cpu_s = delta_s(at_end["thread_cpu_s"], before["thread_cpu_s"])
        client_cpu_s = cpu_s([client_process]) - client_before
        servers_cpu_s = {name: cpu_s(ps) - servers_before[name] for name, ps in servers.items()}
        machine_s = machine_busy_s() - machine_before
        finished = time.perf_counter()
        after = await caught_up(service, http, before, run.statuses[200])
        drain_s = time.perf_counter() - finished
    rows = await service.count_rows(
        "SELECT count(*) FROM positions WHERE left(vehicle_id, $1) = $2",
        len(run.prefix) + 1, f"{run.prefix}-",
    )  # fmt: skip
    report(run, before, after, rows=rows, drain_s=drain_s, tracker_cpu_s=tracker_cpu_s,
           threads_cpu_s=threads_cpu_s, client_cpu_s=client_cpu_s, servers_cpu_s=servers_cpu_s,
           machine_s=machine_s, pings=len(pings))  # fmt: skip


def report(
    run: Run,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    rows: int,
    drain_s: float,
    tracker_cpu_s: float,
    threads_cpu_s: dict[str, float],
    client_cpu_s: float,
    servers_cpu_s: dict[str, float],
    machine_s: float,
    pings: int,
) -> None:
    ok = run.statuses[200]
    busy = run.statuses[503]
    others = {code: n for code, n in sorted(run.statuses.items()) if code not in (200, 503)}
    sent = sum(run.statuses.values()) + sum(run.errors.values())
    wall_s = run.wall_s
    p50, p95, p99 = percentiles(run.latency_s, 50, 95, 99)
    print(f"\n{run.mode}, {run.connections} connections: {sent:,} requests in {wall_s:.1f} s")
    ran_out = (f"; {run.ran_out} of {run.connections} connections ran out of pings "
               f"(of {pings:,})" if run.ran_out else "")  # fmt: skip
    print(
        f"  accepted (200) {ok:,}: {ok / wall_s:,.0f}/s; 503 (queue full) {busy:,}; "
        f"other statuses {others or 'none'}; transport errors {dict(run.errors) or 'none'}"
        f"{ran_out}"
    )
    print(
        f"  latency per request: p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {max(run.latency_s, default=float('nan')) * 1e3:.0f} ms"
    )
    rejected = delta(after["rejected_by_reason"], before["rejected_by_reason"])
    superseded = after["queue_superseded"] - before["queue_superseded"]
    dropped = after["queue_dropped"] - before["queue_dropped"]
    verdict = "every 200 stored exactly once" if rows == ok else f"{ok - rows:+,} NOT STORED"
    print(
        f"  stored in PostgreSQL: {rows:,} rows of {ok:,} accepted: {verdict}; the pipeline "
        f"rejected {rejected or 'none'}, the ingest queue superseded {superseded:,} (stored "
        f"unmatched) and dropped {dropped:,}; the tracker caught up {drain_s:.1f} s after the "
        "last request"
    )
    split = ", ".join(f"{role} {s:.1f} s" for role, s in threads_cpu_s.items() if s >= 0.05)
    shares = [f"tracker {tracker_cpu_s:.1f} s ({tracker_cpu_s / wall_s:.0%} of a core: {split})"]
    shares += [f"{name} {s:.1f} s ({s / wall_s:.0%})" for name, s in servers_cpu_s.items()]
    shares.append(f"this client {client_cpu_s:.1f} s ({client_cpu_s / wall_s:.0%})")
    cores = os.cpu_count() or 1
    ours_s = tracker_cpu_s + client_cpu_s + sum(servers_cpu_s.values())
    print(
        f"  CPU over the {wall_s:.1f} s: " + ", ".join(shares) + f"; the machine's {cores} cores "
        f"{machine_s / (cores * wall_s):.0%} busy ({max(machine_s - ours_s, 0.0):.1f} "
        f"core-seconds of other processes)"
    )
    loop_us = threads_cpu_s.get("event loop", 0.0) / max(ok, 1) * 1e6
    print(
        f"  CPU per request: tracker {tracker_cpu_s / max(ok, 1) * 1e6:.0f} µs (its event loop "
        f"{loop_us:.0f} µs: HTTP, decoding, storing; so at most {1e6 / max(loop_us, 1):,.0f} "
        f"requests/s with a core to itself), client {client_cpu_s / max(sent, 1) * 1e6:.0f} µs",
        flush=True,
    )


async def bench(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    network = load_network(args.gtfs)
    date = busiest_date(network)
    wanted = int(MAX_RATE * args.seconds)
    work: Workload = workload(network, pings=wanted, vehicles=args.vehicles, date=date,
                              start_s=8 * 3600.0, seed=args.seed)  # fmt: skip
    pings = storable(work.pings)
    gc.collect()
    gc.freeze()  # the network and the pings: not scanned again by the client's collections
    connections = [int(n) for n in args.concurrency.split(",")]
    print(
        f"feed {args.gtfs.name}, service day {date}: {len(pings):,} pings of {work.vehicles} "
        f"buses, one every {work.interval_s:.1f} s per bus ({len(work.pings) - len(pings):,} "
        f"duplicated or reordered ones left out), sent again under other ids for each mode and "
        f"connection count (made in {time.perf_counter() - started:.1f} s); "
        f"{os.cpu_count()} CPU cores",
        flush=True,
    )
    async with running_tracker(args.gtfs, service_now_s=work.window_end_s + CLOCK_AHEAD_S,
                               scratch_prefix="bench-ingest-http-") as service:  # fmt: skip
        for mode in args.modes.split(","):
            for n in connections:
                run = Run(mode, n, prefix=f"{TAGS[mode]}{n}")
                await one_run(service, run, pings, args.seconds)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="of each mode and count")
    parser.add_argument("--concurrency", default="16,64", help="keep-alive connections, a list")
    parser.add_argument("--vehicles", type=int, default=500, help="buses (phones) sending")
    parser.add_argument("--modes", default=",".join(MODES), help=f"a list of {', '.join(MODES)}")
    parser.add_argument("--gtfs", type=Path, default=BUNDLED_FEED)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    unknown = set(args.modes.split(",")) - set(MODES)
    if unknown:
        parser.error(f"--modes: {', '.join(sorted(unknown))} unknown; choose from {MODES}")
    if args.seconds <= 0 or args.vehicles < 1:
        parser.error("--seconds must be positive and --vehicles at least 1")
    if any(int(n) < 1 for n in args.concurrency.split(",")):
        parser.error("--concurrency: each count must be at least 1")
    return asyncio.run(bench(args))


if __name__ == "__main__":
    sys.exit(main())
