"""The tracker killed with SIGKILL mid-stream and started again: nothing accepted is lost.

A real `tracker serve` process (its engine in a process of its own) on a real Mosquitto and
PostgreSQL. `BUSES` buses publish `PINGS` QoS 1 pings in `PUBLISH_S`; `KILL_AFTER_S` after the
first one the tracker's whole process group gets SIGKILL (no shutdown code runs: what it held
in memory is gone), and a new one is started with the same MQTT client id. The broker kept the
session: it hands the new process what was published meanwhile, and again whatever the old one
had received but not acknowledged. The tracker acknowledges a message only once its row is
committed (`tracker.ingest.mqtt`, Delivery), so what the killed process held is sent again and
the store's (vehicle, timestamp) dedupe absorbs what was both stored and sent again.

At the end every ping is in `positions` exactly once; the counts are printed
(``FAULT sigkill: ...``; `pytest -s` shows them; docs/security.md has a run's figures).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest

from simulator.publish import MqttPublisher
from tests import feeds
from tests.integration.servers import Mosquitto, free_port
from tracker.core.model import Ping

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PINGS = 3000
BUSES = 30
PUBLISH_S = 5.0  # 600 pings/s
KILL_AFTER_S = 2.5
TIMEOUT_S = 60.0
PREFIX = "sigkill-bus-"  # the test's vehicles: the shared database holds other tests' rows too


LAT, LON = 33.5731, -7.5898  # anywhere valid: the pings need not match a trip to be stored


def _environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TRACKER_MQTT_CLIENT_ID": f"sigkill-test-{os.getpid()}",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def tracker(
    args: list[str], env: dict[str, str], log: Path, port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """`tracker serve` in a process group of its own, ready (subscribed) when this yields."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tracker", "serve", *args, "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert process.poll() is None, f"tracker serve ended: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"tracker not ready: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1.0).json().get("mqtt"):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(TIMEOUT_S)


class Buses:
    """Publishes `PINGS` pings of `BUSES` buses in `PUBLISH_S`, at a steady pace (QoS 1), in a
    thread; `sent` holds their (vehicle, timestamp) keys."""

    def __init__(self, url: str, first_s: float) -> None:
        self.url = url
        self.first_s = first_s
        self.sent: list[tuple[str, float]] = []
        self.error: BaseException | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sigkill-buses")

    def _run(self) -> None:
        try:
            with MqttPublisher(self.url, client_id="sigkill-test-buses") as publisher:
                ticks = PINGS // BUSES
                started = time.monotonic()
                self.started.set()
                for tick in range(ticks):
                    for n in range(BUSES):
                        ping = Ping(f"{PREFIX}{n}", self.first_s + tick, LAT + n * 1e-4, LON)
                        publisher.publish(ping)
                        self.sent.append((ping.vehicle_id, ping.timestamp))
                    next_at = started + (tick + 1) * PUBLISH_S / ticks
                    publisher.wait(max(0.0, next_at - time.monotonic()))
                publisher.flush(TIMEOUT_S)
        except BaseException as e:  # reported by the test, not lost in the thread
            self.error = e
            self.started.set()


async def _stored(postgres_url: str) -> Counter[tuple[str, float]]:
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT vehicle_id, extract(epoch FROM observed_at)::float8 AS t FROM positions "
            "WHERE vehicle_id LIKE $1",
            PREFIX + "%",
        )
    finally:
        await conn.close()
    return Counter((r["vehicle_id"], round(r["t"], 3)) for r in rows)


async def test_sigkill_mid_stream_then_a_restart_loses_nothing_and_stores_nothing_twice(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path
) -> None:
    feed = feeds.two_directions_feed(tmp_path)
    args = ["--broker-url", mosquitto.url, "--database-url", postgres_url, "--gtfs", str(feed)]
    env = _environment(tmp_path)
    log = tmp_path / "tracker.log"
    port = free_port()
    buses = Buses(mosquitto.url, first_s=time.time() - 3600.0)
    with tracker(args, env, log, port) as first:  # it makes the tables
        assert not await _stored(postgres_url), "rows of an earlier run: the counts would be off"
        buses.thread.start()
        buses.started.wait(TIMEOUT_S)
        time.sleep(KILL_AFTER_S)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(TIMEOUT_S)
        killed_after = len(buses.sent)
    stored_at_kill = sum((await _stored(postgres_url)).values())
    with tracker(args, env, log, port):
        buses.thread.join(TIMEOUT_S + PUBLISH_S)
        assert buses.error is None, buses.error
        deadline = time.monotonic() + TIMEOUT_S
        while len(stored := await _stored(postgres_url)) < len(buses.sent):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything stored twice would be in by now
        stored = await _stored(postgres_url)
    lost = [key for key in buses.sent if (key[0], round(key[1], 3)) not in stored]
    duplicated = sum(n - 1 for n in stored.values())
    print(
        f"\nFAULT sigkill: published {len(buses.sent)} QoS 1 pings, tracker killed after "
        f"{killed_after} were published ({stored_at_kill} stored), restarted: "
        f"stored {sum(stored.values())} ({len(stored)} distinct), lost {len(lost)}, "
        f"duplicated {duplicated}"
    )
    assert len(buses.sent) == PINGS
    assert 0 < killed_after < PINGS, "the kill came before or after the stream"
    assert lost == []
    assert duplicated == 0
