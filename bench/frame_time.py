"""Frame time of the rider's page (`/`) with thousands of moving buses, in real Chromium.

    python -m bench.frame_time [--buses 2000] [--seconds 10] [--update-s 0.5]

What runs: the real page (`web/static`, served by `tracker.web`) and the real live websocket
(`tracker.live.ws` over a real `Hub`), in one uvicorn app. Only the data is made up: a synthetic
network (40 routes of random-walk lines around Casablanca, answered by small stand-ins for
/api/config, /api/routes, /api/network.geojson and /api/stops) and `--buses` vehicles that all
move along their lines and are published to the hub every `--update-s` seconds, so every bus on
screen is gliding all the time (the worst case: real buses ping every few seconds).

Chromium (Debian's, headless, `--disable-gpu`) opens the page with the whole network in view,
waits until every bus is drawn, then records `requestAnimationFrame` intervals for `--seconds`
and, by wrapping the bus layer's `draw` (instrumentation only; the page code is unchanged), the
time each frame spends drawing buses. Printed: median/p95/p99 frame interval, the share of
frames dropped (intervals longer than 1.5 vsync periods, counted in missed periods), draw time,
and the JS heap.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from playwright.async_api import async_playwright

from tracker import web
from tracker.live import ws
from tracker.live.hub import Hub
from tracker.live.vehicle import LiveVehicle

CHROMIUM = "/usr/bin/chromium"
CENTRE_LAT, CENTRE_LON = 33.5731, -7.5898
ROUTES = 40
POINTS_PER_ROUTE = 120
STEP_M = 100.0  # between shape points
SPEED_MPS = 12.0
METRES_PER_DEG_LAT = 111_320.0
VSYNC_MS = 1000 / 60
COLOURS = ["#1F77B4", "#D62728", "#2CA02C", "#9467BD", "#8C564B", "#E377C2", "#17BECF", "#BCBD22"]


@dataclass
class Line:
    route_id: str
    points: list[tuple[float, float]]  # (lat, lon)


@dataclass
class Bus:
    vehicle_id: str
    line: Line
    dist_m: float
    direction: int  # +1 forwards along the line, -1 backwards


def make_lines(rng: random.Random) -> list[Line]:
    """Random-walk lines of POINTS_PER_ROUTE points STEP_M apart, starting near the centre."""
    lines = []
    metres_per_deg_lon = METRES_PER_DEG_LAT * math.cos(math.radians(CENTRE_LAT))
    for i in range(ROUTES):
        lat = CENTRE_LAT + rng.uniform(-0.05, 0.05)
        lon = CENTRE_LON + rng.uniform(-0.06, 0.06)
        heading = rng.uniform(0, 2 * math.pi)
        points = []
        for _ in range(POINTS_PER_ROUTE):
            points.append((lat, lon))
            heading += rng.gauss(0, 0.25)
            lat += STEP_M * math.cos(heading) / METRES_PER_DEG_LAT
            lon += STEP_M * math.sin(heading) / metres_per_deg_lon
        lines.append(Line(f"R{i + 1}", points))
    return lines


def position(bus: Bus) -> tuple[float, float, float]:
    """(lat, lon, bearing_deg) of a bus at its distance along its line."""
    points = bus.line.points
    length = STEP_M * (len(points) - 1)
    d = min(max(bus.dist_m, 0.0), length - 1e-6)
    i = int(d // STEP_M)
    f = d / STEP_M - i
    (lat0, lon0), (lat1, lon1) = points[i], points[i + 1]
    lat, lon = lat0 + (lat1 - lat0) * f, lon0 + (lon1 - lon0) * f
    dy = (lat1 - lat0) * bus.direction
    dx = (lon1 - lon0) * math.cos(math.radians(lat)) * bus.direction
    return lat, lon, math.degrees(math.atan2(dx, dy)) % 360


def move(bus: Bus, seconds: float) -> None:
    """Advance along the line, turning back at its ends."""
    length = STEP_M * (len(bus.line.points) - 1)
    bus.dist_m += bus.direction * SPEED_MPS * seconds
    if not 0 <= bus.dist_m <= length:
        bus.direction = -bus.direction
        bus.dist_m = min(max(bus.dist_m, 0.0), length)


def live_vehicle(bus: Bus, now_s: float) -> LiveVehicle:
    lat, lon, bearing = position(bus)
    return LiveVehicle(
        vehicle_id=bus.vehicle_id,
        observed_at_s=now_s,
        lat=lat,
        lon=lon,
        bearing_deg=bearing,
        speed_mps=SPEED_MPS,
        state="in_service",
        route_id=bus.line.route_id,
        delay_s=60.0,
    )


def bounds(lines: list[Line]) -> list[float]:
    lats = [lat for line in lines for lat, _ in line.points]
    lons = [lon for line in lines for _, lon in line.points]
    return [min(lons), min(lats), max(lons), max(lats)]


def make_app(lines: list[Line], buses: list[Bus], update_s: float) -> FastAPI:
    """The real page and websocket; stand-ins for the HTTP API the page reads at start."""
    hub = Hub(tick_s=update_s)

    async def publish_forever() -> None:
        while True:
            now_s = time.time()
            for bus in buses:
                move(bus, update_s)
            hub.publish(live_vehicle(bus, now_s) for bus in buses)
            await asyncio.sleep(update_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = hub
        async with asyncio.TaskGroup() as tasks:
            ticking = tasks.create_task(hub.run())
            publishing = tasks.create_task(publish_forever())
            yield
            publishing.cancel()
            ticking.cancel()

    app = FastAPI(lifespan=lifespan)
    app.include_router(web.router)
    app.include_router(ws.router)

    @app.get("/api/config")
    async def config() -> dict[str, Any]:
        return {
            "now_s": time.time(),
            "tiles_url": "http://127.0.0.1:9/{z}/{x}/{y}.png",  # nothing there: no tiles
            "tiles_attribution": "",
            "stale_after_s": 90.0,
            "hide_after_s": 600.0,
            "timezone": "Africa/Casablanca",
            "bounds": bounds(lines),
            "feed_hash": "bench",
        }

    @app.get("/api/routes")
    async def routes() -> dict[str, Any]:
        return {
            "routes": [
                {
                    "route_id": line.route_id,
                    "short_name": line.route_id,
                    "long_name": f"Synthetic line {line.route_id}",
                    "color": COLOURS[i % len(COLOURS)],
                    "text_color": "#FFFFFF",
                    "route_type": 3,
                    "has_shape": True,
                }
                for i, line in enumerate(lines)
            ]
        }

    @app.get("/api/network.geojson")
    async def network() -> dict[str, Any]:
        return {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "geometry": {
                        "type": "LineString",
                        "coordinates": [[lon, lat] for lat, lon in line.points],
                    },
                    "properties": {
                        "kind": "shape",
                        "route_id": line.route_id,
                        "route_ids": [line.route_id],
                        "color": COLOURS[i % len(COLOURS)],
                        "from_stops": False,
                    },
                }
                for i, line in enumerate(lines)
            ],
        }

    @app.get("/api/stops")
    async def stops() -> dict[str, Any]:
        return {"type": "FeatureCollection", "features": [], "truncated": False}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Records rAF intervals and the bus layer's draw times for `ms` milliseconds (in the page).
MEASURE_JS = """
async (ms) => {
  const layer = BT_RIDER.layer;
  const draws = [];
  const draw = layer.draw;
  layer.draw = function (t) {
    const start = performance.now();
    draw.call(this, t);
    draws.push(performance.now() - start);
  };
  const socket = BT_RIDER.socket;
  const handled = [];
  const onMessage = socket.onMessage;
  socket.onMessage = (message) => {
    const start = performance.now();
    onMessage(message);
    handled.push(performance.now() - start);
  };
  let longTasksMs = 0;
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) longTasksMs += entry.duration;
  });
  observer.observe({ type: "longtask" });
  const stamps = [];
  await new Promise((done) => {
    const end = performance.now() + ms;
    function frame(t) {
      stamps.push(t);
      if (t < end) requestAnimationFrame(frame); else done();
    }
    requestAnimationFrame(frame);
  });
  layer.draw = draw;
  socket.onMessage = onMessage;
  observer.disconnect();
  const intervals = stamps.slice(1).map((t, i) => t - stamps[i]);
  const memory = performance.memory || {};
  return {intervals, draws, handled, longTasksMs, heap: memory.usedJSHeapSize || null,
          heapTotal: memory.totalJSHeapSize || null, drawn: layer.drawn};
}
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(values: list[float], decimals: int) -> str:
    """ "median …, p95 …, p99 …, max … ms" of durations in milliseconds."""
    median, p95 = statistics.median(values), quantile(values, 0.95)
    p99, top = quantile(values, 0.99), max(values)
    d = decimals
    return f"median {median:.{d}f} ms, p95 {p95:.{d}f} ms, p99 {p99:.{d}f} ms, max {top:.{d}f} ms"


def report(result: dict[str, Any], buses: int, seconds: float, load: tuple[float, ...]) -> None:
    intervals = cast(list[float], result["intervals"])
    draws = cast(list[float], result["draws"])
    # frames that should have been shown: the time over one vsync period; dropped: the missed ones
    expected = sum(intervals) / VSYNC_MS
    missed = sum(max(0, round(i / VSYNC_MS) - 1) for i in intervals if i > 1.5 * VSYNC_MS)
    print(
        f"machine            {os.cpu_count()} CPUs, load average {load[0]:.1f} at the start "
        f"(the page, Chromium's processes and this server share them)"
    )
    print(f"buses drawn        {result['drawn']} of {buses}, measured over {seconds:g} s")
    print(f"frames             {len(intervals)} ({len(intervals) / seconds:.1f} per second)")
    print(f"frame interval     {spread(intervals, 1)}")
    print(f"dropped frames     {missed / expected:.1%} of {expected:.0f} vsync periods (60 Hz)")
    if draws:
        print(f"bus draw per frame {spread(draws, 2)} ({len(draws)} draws)")
    handled = cast(list[float], result["handled"])
    if handled:
        print(f"live message       {spread(handled, 1)} to handle ({len(handled)} messages)")
    print(f"long tasks         {result['longTasksMs'] / seconds / 10:.1f} % of the time (> 50 ms)")
    if result["heap"]:
        print(
            f"JS heap            {result['heap'] / 2**20:.1f} MiB used "
            f"of {result['heapTotal'] / 2**20:.1f} MiB"
        )


async def run(buses_n: int, seconds: float, update_s: float) -> None:
    rng = random.Random(1)
    lines = make_lines(rng)
    length_m = STEP_M * (POINTS_PER_ROUTE - 1)
    buses = [
        Bus(f"bus-{i:04d}", lines[i % len(lines)], rng.uniform(0, length_m), rng.choice((1, -1)))
        for i in range(buses_n)
    ]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(lines, buses, update_s), port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                raise RuntimeError("uvicorn stopped while starting")
            await asyncio.sleep(0.05)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--enable-precise-memory-info"],
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"http://127.0.0.1:{port}/?lang=en")
            await page.wait_for_function(
                f"BT_RIDER.layer && BT_RIDER.layer.drawn >= {buses_n} * 0.95", timeout=60_000
            )
            await page.wait_for_timeout(2000)  # past the start: lines drawn, first glides on
            load = os.getloadavg()
            result = cast(dict[str, Any], await page.evaluate(MEASURE_JS, seconds * 1000))
            await browser.close()
        report(result, buses_n, seconds, load)
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--buses", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--update-s", type=float, default=0.5, help="every bus moves this often")
    args = parser.parse_args()
    asyncio.run(run(args.buses, args.seconds, args.update_s))


if __name__ == "__main__":
    main()
