"""`simulator run` and `simulator replay` against a real Mosquitto broker, read back by a paho
subscriber and decoded with the tracker's own `tracker.wire.decode_ping`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from simulator.cli import main
from simulator.publish import MqttPublisher
from tests import feeds
from tests.integration.servers import Mosquitto, free_port
from tracker.core.model import Ping
from tracker.pings_io import read_pings
from tracker.wire import decode_ping, subscription

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Subscriber:
    """A paho client (in its own thread) that keeps every position message it receives."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{port}")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the subscription was not acknowledged")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(subscription(), qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def pings(self) -> list[Ping]:
        with self._lock:
            received = list(self.messages)
        out = []
        for topic, payload in received:
            decoded = decode_ping(topic, payload)
            assert isinstance(decoded, Ping), decoded
            out.append(decoded)
        return out

    def wait_for(self, count: int, timeout_s: float = 20.0) -> list[Ping]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    break
            time.sleep(0.02)
        return self.pings()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.port)
    try:
        yield sub
    finally:
        sub.close()


@pytest.fixture
def feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return feeds.two_directions_feed(tmp_path)


def _by_vehicle(pings: list[Ping]) -> dict[str, list[tuple[float, float, float]]]:
    out: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for p in pings:
        out[p.vehicle_id].append((p.timestamp, p.lat, p.lon))
    return out


@pytest.mark.parametrize(("version", "qos"), [("3.1.1", "1"), ("5", "0")])
def test_run_publishes_every_ping_decodable_in_order(
    mosquitto: Mosquitto,
    subscriber: Subscriber,
    feed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    version: str,
    qos: str,
) -> None:
    out = tmp_path / "pings.jsonl"
    argv = ["run", "--gtfs", str(feed), "--date", "20260304", "--start", "07:00"]
    argv += ["--duration-min", "60", "--speedup", "0", "--broker", mosquitto.url]
    argv += ["--mqtt-version", version, "--qos", qos, "--out", str(out), "-q"]

    assert main(argv) == 0

    written = [p for p in read_pings(out) if isinstance(p, Ping)]
    assert len(written) > 500
    assert f"{len(written)} pings from 2 buses" in capsys.readouterr().out
    received = subscriber.wait_for(len(written))
    assert len(received) == len(written)
    # MQTT keeps the order of one publisher's messages on each topic.
    assert _by_vehicle(received) == _by_vehicle(written)


def test_replay_publishes_all_pings_in_file_order_at_speed(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    path = tmp_path / "recorded.jsonl"
    records = [
        {"vehicle_id": f"bus-{i % 3}", "timestamp": 1_770_000_000 + i, "lat": 33.5 + i * 1e-5,
         "lon": -7.6, "speed": 5.0}
        for i in range(300)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    started = time.monotonic()

    code = main(["replay", str(path), "--speed", "1000", "--broker", mosquitto.url, "-q"])

    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed >= 299 / 1000
    received = subscriber.wait_for(len(records))
    assert [(p.vehicle_id, p.timestamp, p.lat) for p in received] == [
        (r["vehicle_id"], r["timestamp"], r["lat"]) for r in records
    ]


def test_replay_now_stamps_the_first_ping_now(
    mosquitto: Mosquitto, subscriber: Subscriber, tmp_path: Path
) -> None:
    path = tmp_path / "recorded.csv"
    path.write_text("vehicle_id,timestamp,lat,lon\nv1,1000,33.5,-7.6\nv1,1010,33.5,-7.6\n")
    before = time.time()
    assert (
        main(["replay", str(path), "--now", "--speed", "0", "--broker", mosquitto.url, "-q"]) == 0
    )
    received = subscriber.wait_for(2)
    assert before <= received[0].timestamp <= time.time()
    assert received[1].timestamp - received[0].timestamp == pytest.approx(10.0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_cleanly_with_exit_code_130(
    mosquitto: Mosquitto, subscriber: Subscriber, feed: Path, tmp_path: Path, signum: int
) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    argv = [sys.executable, "-m", "simulator", "run", "--gtfs", str(feed), "--date", "20260304"]
    argv += ["--start", "07:00", "--speedup", "60", "--broker", mosquitto.url]
    argv += ["--truth", str(tmp_path / "truth.csv")]
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert len(subscriber.wait_for(5, timeout_s=60)) >= 5, "nothing was published"
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted after" in stderr
    rows = (tmp_path / "truth.csv").read_text().splitlines()
    assert len(rows) >= 6  # the header and what was sent, flushed when the file closed


def test_publisher_reconnects_after_the_broker_restarts(mosquitto: Mosquitto) -> None:
    ping = Ping(vehicle_id="bus-1", timestamp=1_770_000_000.0, lat=33.5, lon=-7.6)
    with MqttPublisher(mosquitto.url, qos=1, reconnect_for_s=20.0) as publisher:
        publisher.publish(ping)
        assert publisher.flush(5.0) == 0
        mosquitto.stop()
        mosquitto.start()
        subscriber = Subscriber(mosquitto.port)
        try:
            publisher.wait(0.5)  # notices the lost connection and reconnects
            for k in range(1, 21):
                publisher.publish(Ping("bus-1", ping.timestamp + k, 33.5, -7.6))
            assert publisher.flush(10.0) == 0
            received = subscriber.wait_for(20)
        finally:
            subscriber.close()
    assert publisher.reconnects == 1
    assert [p.timestamp - ping.timestamp for p in received] == list(range(1, 21))


def test_an_unreachable_broker_or_a_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.csv"
    path.write_text("vehicle_id,timestamp,lat,lon\nv1,1000,33.5,-7.6\n")
    url = f"mqtt://127.0.0.1:{free_port()}"
    assert main(["replay", str(path), "--broker", url, "-q"]) == 2
    assert f"simulator: error: cannot connect to broker {url}" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "nope.csv"), "--broker", url, "-q"]) == 2
    assert "nope.csv" in capsys.readouterr().err
