"""The live service as the benchmarks of it run it, and how they measure it.

`running_tracker` starts a real Mosquitto (`tests.integration.servers.Mosquitto`) and an
embedded PostgreSQL (`tracker.store.embedded`) in a temporary directory, then the tracker in a
process of its own (`python -m bench.live_service`: the app on uvicorn, as `tracker serve` runs
it, with the service's defaults, `tracker.settings.Settings`), so that the CPU and memory it
reports are the tracker's alone and the benchmark's own load (a publisher, HTTP clients) is
counted apart. Used by `bench.pipeline` (pings over MQTT) and `bench.ingest_http` (pings over
HTTP from phone apps).

The tracker's process adds two routes for the benchmarks: `/bench/ready` (answers once the MQTT
client is subscribed) and `/bench/stats` (the pipeline's counters, its CPU by thread and its
matcher process's, peak RSS, and with `?full=true` every micro-batch's size and time).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil

from tests.integration.servers import Mosquitto, free_port
from tracker.store.embedded import embedded_postgres

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


# --- the tracker's process ---------------------------------------------------------------------


def serve_tracker() -> int:
    """The tracker as `tracker serve` runs it (settings from TRACKER_* variables), plus two
    routes for the benchmarks: /bench/ready (subscribed) and /bench/stats (counters, CPU, RSS)."""
    import uvicorn
    from fastapi import FastAPI

    from tracker.app import create_app
    from tracker.service import Pipeline
    from tracker.settings import load_settings

    settings = load_settings()
    app: FastAPI = create_app(settings)
    batches: list[tuple[int, float]] = []  # (messages, seconds) of each micro-batch

    def measure(pipeline: Pipeline) -> None:
        """Time every batch, as `PipelineStats.last_batch_s` does, but keep them all."""
        process = pipeline.process
        if getattr(process, "measured", False):
            return

        async def measured(messages: Sequence[Any], superseded: Sequence[Any] = ()) -> None:
            started = time.perf_counter()
            await process(messages, superseded)
            batches.append((len(messages) + len(superseded), time.perf_counter() - started))

        measured.measured = True  # type: ignore[attr-defined]
        pipeline.process = measured  # type: ignore[method-assign]

    @app.get("/bench/ready")
    async def ready() -> dict[str, bool]:
        await asyncio.wait_for(app.state.ingest.wait_subscribed(), READY_TIMEOUT_S)
        measure(app.state.pipeline)
        return {"ready": True}

    @app.get("/bench/stats")
    async def stats(full: bool = False) -> dict[str, Any]:
        pipeline: Pipeline = app.state.pipeline
        queue = app.state.queue.stats()
        cpu = os.times()
        matcher_pid = getattr(pipeline.matcher, "pid", None)  # the matcher's own process
        matcher_cpu_s = cpu_s([psutil.Process(matcher_pid)]) if matcher_pid else 0.0
        threads = thread_cpu_s()
        if matcher_pid:
            threads["matcher process"] = matcher_cpu_s
        return {
            "messages": pipeline.stats.messages,
            "batches": pipeline.stats.batches,
            "max_batch_s": pipeline.stats.max_batch_s,
            "by_state": dict(pipeline.stats.by_state),
            "rejected_by_reason": dict(pipeline.stats.rejected_by_reason),
            "stored": pipeline.writer.stored,
            "store_duplicates": pipeline.writer.duplicates,
            "store_pending_batches": pipeline.writer.pending_batches,
            "store_dropped_pings": pipeline.writer.dropped_pings,
            "queue_waiting": queue.waiting + queue.superseded_waiting,
            "queue_high_water": queue.high_water,
            "queue_superseded": queue.superseded,
            "queue_dropped": queue.dropped_full + queue.dropped_superseded,
            "superseded_stored": pipeline.stats.superseded_stored,
            "hub_dropped_intermediate": app.state.hub.stats().dropped_intermediate,
            "cpu_s": cpu.user + cpu.system + matcher_cpu_s,
            "thread_cpu_s": threads,
            "peak_rss_mb": peak_rss_mb(),
            "matcher_peak_rss_mb": peak_rss_mb(matcher_pid) if matcher_pid else 0.0,
            "batch_sizes": [size for size, _ in batches] if full else [],
            "batch_s": [seconds for _, seconds in batches] if full else [],
        }

    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning")
    return 0


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds of this process's threads, by role: the event loop (decode, hub, store
    writer, websockets, HTTP), asyncio's worker threads (the pipe to the matcher's process, or
    the matcher itself with TRACKER_MATCHER_PROCESS=false), MQTT (paho's network thread), from
    /proc (Linux); empty elsewhere."""
    import threading

    roles = {"MainThread": "event loop", "asyncio": "worker threads", "mqtt-ingest": "MQTT"}
    tick_s = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        role = next((r for prefix, r in roles.items() if thread.name.startswith(prefix)), "other")
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        utime, stime = (int(x) for x in fields[1].split()[11:13])
        out[role] = out.get(role, 0.0) + (utime + stime) / tick_s
    return out


def peak_rss_mb(pid: int | None = None) -> float:
    """A process's peak resident memory (default: this one's). Linux's `ru_maxrss` is no good
    here: it survives exec, so it would count the memory of the benchmark that forked this
    process."""
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the benchmark's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerService:
    """A running tracker and the servers it uses (see `running_tracker`)."""

    url: str  # http://127.0.0.1:port
    port: int
    database_url: str
    broker: Mosquitto
    pg_dir: Path
    process: subprocess.Popen[bytes]

    def servers(self) -> dict[str, list[psutil.Process]]:
        """The processes of PostgreSQL and Mosquitto, by name, for `cpu_s`."""
        assert self.broker.process is not None
        return {
            "PostgreSQL": postgres_processes(self.pg_dir),
            "Mosquitto": [psutil.Process(self.broker.process.pid)],
        }

    async def stats(self, http: httpx.AsyncClient, *, full: bool = False) -> dict[str, Any]:
        """The tracker's `/bench/stats`."""
        found: dict[str, Any] = (
            await http.get(f"{self.url}/bench/stats", params={"full": str(full).lower()})
        ).json()
        return found

    async def count_rows(self, sql: str = "SELECT count(*) FROM positions", *args: Any) -> int:
        """A count from the tracker's database (default: every position stored)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            found: int = await conn.fetchval(sql, *args)
            return found
        finally:
            await conn.close()


@asynccontextmanager
async def running_tracker(
    gtfs: Path,
    *,
    service_now_s: float,
    scratch_prefix: str,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[TrackerService]:
    """Mosquitto, an embedded PostgreSQL and the tracker on `gtfs`, whose service clock reads
    `service_now_s` (epoch) when it starts; ready (subscribed) when this yields, all stopped on
    the way out, Ctrl-C and SIGTERM (as from `timeout`) included. `env`: more TRACKER_*
    settings."""
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM cancels like Ctrl-C, so the servers are stopped on the way out.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix=scratch_prefix) as scratch:
        directory = Path(scratch)
        broker = Mosquitto(directory / "mosquitto")
        broker.directory.mkdir()
        broker.start()
        try:
            async with embedded_postgres(directory / "pg") as database_url:
                port = free_port()
                tracker_env = {
                    **os.environ,
                    "TRACKER_BROKER_URL": broker.url,
                    "TRACKER_DATABASE_URL": database_url,
                    "TRACKER_GTFS": str(gtfs),
                    "TRACKER_HTTP_PORT": str(port),
                    "TRACKER_MQTT_CLIENT_ID": f"bench-tracker-{port}",
                    "TRACKER_CLOCK_OFFSET_S": str(service_now_s - time.time()),
                    **(env or {}),
                }
                command = [sys.executable, "-m", "bench.live_service"]
                tracker = subprocess.Popen(command, env=tracker_env)
                try:
                    service = TrackerService(f"http://127.0.0.1:{port}", port, database_url,
                                             broker, directory / "pg", tracker)  # fmt: skip
                    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
                        await wait_ready(http, tracker)
                    yield service
                finally:
                    tracker.send_signal(signal.SIGINT)
                    try:
                        tracker.wait(STOP_TIMEOUT_S)
                    except subprocess.TimeoutExpired:
                        tracker.kill()
                        tracker.wait()
        finally:
            broker.stop()


async def wait_ready(http: httpx.AsyncClient, tracker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if tracker.poll() is not None:
            raise SystemExit(f"the tracker exited with code {tracker.returncode}")
        try:
            if (await http.get("/bench/ready", timeout=READY_TIMEOUT_S)).status_code == 200:
                return
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"the tracker was not ready in {READY_TIMEOUT_S:g} s")


def cpu_s(processes: Sequence[psutil.Process]) -> float:
    """CPU seconds the processes used (those gone count nothing)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    for process in psutil.process_iter(["cmdline"]):
        if any(str(data_dir) in part for part in process.info["cmdline"] or []):
            return [process, *process.children(recursive=True)]
    return []


def machine_busy_s() -> float:
    """CPU seconds all cores spent on anything but idling, since boot."""
    times = psutil.cpu_times()
    idle = float(times.idle) + float(getattr(times, "iowait", 0.0))
    return float(sum(times)) - idle


def percentiles(values: Sequence[float], *qs: float) -> list[float]:
    return [float(np.percentile(values, q)) for q in qs] if values else [float("nan")] * len(qs)


if __name__ == "__main__":
    sys.exit(serve_tracker())
