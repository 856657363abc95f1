"""OwnTracks over MQTT and the devices file, against a real Mosquitto and PostgreSQL and the real
tracker app: paho publishes what the OwnTracks app publishes in MQTT mode on
``owntracks/{user}/{device}``. Locations are matched, shown and stored as vehicle
``{user}-{device}`` (or as the bus a devices file gives the phone); an `lwt` is ignored, not
rejected; a malformed location is rejected with the HTTP endpoint's reason; an unlisted phone is
rejected as `unknown_device`; the ingest queue keys each message by the vehicle it is from."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.servers import Mosquitto
from tests.integration.test_api import (
    TIMEOUT_S,
    _position,
    eventually,
    get_json,
    running,
    service_settings,
)
from tracker.app import create_app
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.ingest.devices import load_devices
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.queue import AsyncIngestQueue
from tracker.wire import encode_ping, position_topic

pytestmark = pytest.mark.integration

STEP_S = 10.0
Message = tuple[str, bytes]


def _publish(port: int, messages: Sequence[Message]) -> None:
    """Publish `messages` in order with QoS 1 from one connection, as a phone does."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="owntracks-phone")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def _locations(network: Network, trip_id: str, times: Sequence[float], topic: str) -> list[Message]:
    """What the app publishes along `trip_id` at `times`: 18 km/h, due south, 8 m accuracy."""
    out: list[Message] = []
    for t in times:
        lat, lon = _position(network, trip_id, t)
        location = {"_type": "location", "lat": lat, "lon": lon, "tst": round(t), "vel": 18,
                    "cog": 180, "acc": 8, "tid": "al", "batt": 80, "t": "u"}  # fmt: skip
        out.append((topic, json.dumps(location).encode()))
    return out


async def test_owntracks_locations_over_mqtt_are_matched_shown_and_stored(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app) as client:
        ingest = app.state.ingest
        assert isinstance(ingest, MqttIngest)
        assert ingest.topic_filters == ("bus-tracker/v1/vehicles/+/position", "owntracks/+/+")
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        now_s = settings.now()
        times = [now_s - STEP_S * (5 - k) for k in range(6)]
        topic = "owntracks/alice/phone"
        event = {"_type": "transition", "event": "enter", "tst": round(now_s), "lat": 1, "lon": 2}
        lwt = {"_type": "lwt", "tst": round(now_s)}
        no_lat = {"_type": "location", "lon": -7.6, "tst": round(now_s)}
        messages = [
            (f"{topic}/event", json.dumps(event).encode()),  # not subscribed to: never comes
            *_locations(app.state.network, "B_S_0800", times, topic),
            (topic, json.dumps(lwt).encode()),
            (topic, json.dumps(no_lat).encode()),
        ]
        await asyncio.to_thread(_publish, mosquitto.port, messages)

        async def all_in() -> bool:
            stats = await get_json(client, "/api/stats")
            pipeline = stats["pipeline"]
            return bool(
                stats["writer"]["stored"] == len(times)
                and pipeline["ignored"] == 1
                and pipeline["rejected_by_reason"].get("malformed") == 1
            )

        await eventually(all_in, "the locations stored, the lwt ignored, the bad one rejected")
        stats = await get_json(client, "/api/stats")
        assert stats["pipeline"]["rejected_by_reason"] == {"malformed": 1}
        assert stats["ingest"]["messages_received"] == len(messages) - 1  # not the event
        assert stats["pipeline"]["messages"] == len(messages) - 1
        (alice,) = (await get_json(client, "/api/vehicles"))["vehicles"]
        assert alice["vehicle_id"] == "alice-phone"
        assert (alice["state"], alice["trip_id"]) == ("in_service", "B_S_0800")
        assert alice["speed_mps"] == pytest.approx(5.0, abs=0.06)  # 18 km/h
        assert alice["observed_at_s"] == pytest.approx(round(times[-1]))
        window = urlencode({"start_s": times[0] - 1, "end_s": now_s + 1,
                            "vehicle_id": "alice-phone"})  # fmt: skip
        history = await get_json(client, f"/api/history?{window}")
        assert [p["observed_at_s"] for p in history["positions"]] == [round(t) for t in times]
        (rejected,) = (await get_json(client, "/api/problems"))["rejected"]
        assert (rejected["vehicle_id"], rejected["reason"]) == ("alice-phone", "malformed")
        assert rejected["detail"] == "lat is missing"


async def test_with_a_devices_file_a_phone_reports_as_its_bus_and_others_are_refused(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices_file = tmp_path / "devices.csv"
    devices_file.write_text("device_id,vehicle_id\nalice-phone,bus-7\n")
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    settings = settings.model_copy(update={"devices_file": devices_file})
    app = create_app(settings)
    async with running(app) as client:
        await asyncio.wait_for(app.state.ingest.wait_subscribed(), TIMEOUT_S)
        network = app.state.network
        now_s = settings.now()
        times = [now_s - STEP_S * (5 - k) for k in range(6)]
        messages = [
            *_locations(network, "B_S_0800", times, "owntracks/alice/phone"),
            *_locations(network, "B_N_0800", times[-2:], "owntracks/carol/phone"),
            ("owntracks/carol/phone", json.dumps({"_type": "lwt", "tst": 1}).encode()),
        ]
        await asyncio.to_thread(_publish, mosquitto.port, messages)

        async def all_in() -> bool:
            stats = await get_json(client, "/api/stats")
            rejected = stats["pipeline"]["rejected_by_reason"]
            return bool(stats["writer"]["stored"] == len(times)
                        and rejected.get("unknown_device") == 2
                        and stats["pipeline"]["ignored"] == 1)  # fmt: skip

        await eventually(all_in, "alice's phone stored as bus-7, carol's refused")
        stats = await get_json(client, "/api/stats")
        assert stats["pipeline"]["rejected_by_reason"] == {"unknown_device": 2}
        (bus,) = (await get_json(client, "/api/vehicles"))["vehicles"]
        assert (bus["vehicle_id"], bus["state"], bus["trip_id"]) == ("bus-7", "in_service",
                                                                     "B_S_0800")  # fmt: skip
        window = {"start_s": times[0] - 1, "end_s": now_s + 1}
        for vehicle_id, stored in (("bus-7", len(times)), ("alice-phone", 0), ("carol-phone", 0)):
            query = urlencode(window | {"vehicle_id": vehicle_id})
            assert len((await get_json(client, f"/api/history?{query}"))["positions"]) == stored
        rejected = (await get_json(client, "/api/problems"))["rejected"]
        assert {(r["vehicle_id"], r["reason"]) for r in rejected} == {
            ("carol-phone", "unknown_device")
        }
        assert "'carol-phone' is not in the tracker's devices file" in rejected[0]["detail"]


async def test_the_ingest_queue_keys_owntracks_messages_by_their_vehicle(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A phone that reports as bus-7 shares bus-7's place in the queue (its messages stay in
    order with the bus's own and supersede them when the tracker falls behind); an unlisted
    phone is keyed by itself."""
    devices_file = tmp_path / "devices.csv"
    devices_file.write_text("device_id,vehicle_id\nalice-phone,bus-7\n")
    queue = AsyncIngestQueue(100)
    devices = load_devices(devices_file)
    ingest = MqttIngest(mosquitto.url, client_id="tracker-keys", queue=queue,
                        owntracks_prefix="owntracks", devices=devices)  # fmt: skip
    location = json.dumps({"_type": "location", "lat": 33.5, "lon": -7.6, "tst": 1}).encode()
    own = encode_ping(Ping("bus-7", 1.0, 33.5, -7.6))
    messages = [
        (position_topic("bus-7"), own),
        ("owntracks/alice/phone", location),
        ("owntracks/alice/phone", location),
        ("owntracks/bob/phone", location),
        ("owntracks/bob/phone", location),
    ]
    async with ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await asyncio.to_thread(_publish, mosquitto.port, messages)
        await eventually(lambda: len(queue) == len(messages), "every message in the queue")
        stats = queue.stats()
    assert (stats.waiting, stats.vehicles_waiting) == (len(messages), 2)  # bus-7 and bob-phone
    batch = await queue.next_batch(100, max_wait_s=0)
    assert [m.topic for m in batch.live] == [t for t, _ in messages]  # in order
