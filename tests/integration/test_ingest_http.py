"""Phone apps in over HTTP (tracker.api.ingest), against a real Mosquitto and PostgreSQL: OsmAnd
and Traccar Client positions (query, form and JSON), OwnTracks locations, each matched, shown
and stored as an MQTT ping would be; what cannot be a position is refused with the reason and
counted; what the pipeline rejects later is counted with the same reasons as MQTT's. With a
devices file, a listed phone reports as its bus and another is refused (403, unknown_device);
a phone with a token (`tracker phones add`) must send it (401, bad_token)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.integration.servers import Mosquitto
from tests.integration.test_api import (
    _position,
    eventually,
    get_json,
    running,
    service_settings,
)
from tracker.api.ingest import RedactTokens
from tracker.app import create_app
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.phones import KNOT_MPS

pytestmark = pytest.mark.integration

STEP_S = 10.0


async def test_phone_apps_positions_are_matched_shown_and_stored(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app) as client:
        ingest = app.state.ingest
        assert isinstance(ingest, MqttIngest)
        network = app.state.network
        now_s = settings.now()
        times = [now_s - STEP_S * (5 - k) for k in range(6)]
        sent = 0
        for k, t in enumerate(times):  # a phone on B_N_0800 in each of the ways the apps send
            lat, lon = _position(network, "B_N_0800", t)
            query: dict[str, str | float] = {"id": "phone-1", "lat": lat, "lon": lon}
            query |= {"timestamp": round(t), "speed": 10.0, "bearing": 0, "accuracy": 5}
            if k % 3 == 0:  # OsmAnd: GET with the query
                response = await client.get("/ingest/osmand", params=query)
            elif k % 3 == 1:  # Traccar Client: POST of a form
                response = await client.post(
                    "/ingest/osmand", content=urlencode(query),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )  # fmt: skip
            else:  # Traccar Client: JSON, milliseconds and ISO times, speed in m/s
                iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(round(t)))
                response = await client.post("/ingest/osmand", json={
                    "device_id": "phone-1",
                    "location": {"timestamp": iso, "coords": {
                        "latitude": lat, "longitude": lon, "speed": 10.0 * KNOT_MPS,
                        "heading": 0, "accuracy": 5}},
                })  # fmt: skip
            assert response.status_code == 200, response.text
            sent += 1
            lat, lon = _position(network, "B_S_0800", t)
            response = await client.post(
                "/ingest/owntracks",
                json={"_type": "location", "lat": lat, "lon": lon, "tst": round(t), "vel": 18,
                      "cog": 180, "acc": 8, "tid": "al"},
                headers={"X-Limit-U": "alice", "X-Limit-D": "phone"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.json() == []
            sent += 1
        not_a_position = await client.post(
            "/ingest/owntracks", json={"_type": "lwt", "tst": round(now_s)},
            headers={"X-Limit-U": "alice", "X-Limit-D": "phone"},
        )  # fmt: skip
        assert (not_a_position.status_code, not_a_position.json()) == (200, [])

        refused = [
            await client.get("/ingest/osmand", params={"id": "phone-2", "lon": -7.5,
                                                       "timestamp": round(now_s)}),
            await client.get("/ingest/osmand", params={"id": "phone-2", "lat": "north",
                                                       "lon": -7.5, "timestamp": round(now_s)}),
            await client.post("/ingest/owntracks", json={"_type": "location", "lat": 33.5,
                                                         "lon": -7.5, "tst": round(now_s)}),
            await client.post("/ingest/osmand", content=b"{not json",
                              headers={"content-type": "application/json"}),
        ]  # fmt: skip
        assert [r.status_code for r in refused] == [400] * 4
        assert {r.json()["reason"] for r in refused} == {"malformed"}
        details = [r.json()["detail"] for r in refused]
        assert details[0] == "lat is missing"
        assert details[1] == "lat 'north' is not a number"
        assert "X-Limit-U" in details[2]
        assert details[3].startswith("the body is not JSON")
        # a position, but not a plausible one: the pipeline rejects it as it would over MQTT
        late = await client.get("/ingest/osmand", params={"id": "phone-3", "lat": 91, "lon": 0,
                                                          "timestamp": round(now_s)})  # fmt: skip
        assert late.status_code == 200

        async def all_in() -> bool:
            stats = await get_json(client, "/api/stats")
            rejected = stats["pipeline"]["rejected_by_reason"]
            return bool(stats["writer"]["stored"] == sent and rejected.get("bad_coordinates"))

        await eventually(all_in, "every phone position stored")
        stats = await get_json(client, "/api/stats")
        assert stats["pipeline"]["rejected_by_reason"] == {"malformed": 4, "bad_coordinates": 1}
        assert stats["pipeline"]["ignored"] == 1  # the lwt
        vehicles = {
            v["vehicle_id"]: v for v in (await get_json(client, "/api/vehicles"))["vehicles"]
        }
        assert set(vehicles) == {"phone-1", "alice-phone"}
        phone, alice = vehicles["phone-1"], vehicles["alice-phone"]
        assert (phone["state"], phone["trip_id"]) == ("in_service", "B_N_0800")
        assert phone["speed_mps"] == pytest.approx(10.0 * KNOT_MPS, abs=0.06)  # 10 knots
        assert phone["observed_at_s"] == pytest.approx(round(times[-1]))
        assert (alice["state"], alice["trip_id"]) == ("in_service", "B_S_0800")
        assert alice["speed_mps"] == pytest.approx(5.0, abs=0.06)  # 18 km/h
        window = urlencode({"start_s": times[0] - 1, "end_s": now_s + 1, "vehicle_id": "phone-1"})
        history = await get_json(client, f"/api/history?{window}")
        assert len(history["positions"]) == len(times)
        problems = await get_json(client, "/api/problems")
        reasons = {p["reason"] for p in problems["rejected"]}
        assert {"malformed", "bad_coordinates"} <= reasons


async def test_with_a_devices_file_a_phone_reports_as_its_bus_and_others_get_403(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices_file = tmp_path / "devices.csv"
    devices_file.write_text("device_id,vehicle_id\n358240051111110,bus-12\nalice-phone,bus-7\n")
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings.model_copy(update={"devices_file": devices_file}))
    async with running(app) as client:
        network = app.state.network
        now_s = settings.now()
        times = [now_s - STEP_S * (2 - k) for k in range(3)]
        for t in times:  # a listed phone, OsmAnd's way
            lat, lon = _position(network, "B_N_0800", t)
            query: dict[str, str | float] = {"id": "358240051111110", "lat": lat, "lon": lon,
                                             "timestamp": round(t)}  # fmt: skip
            response = await client.get("/ingest/osmand", params=query)
            assert response.status_code == 200, response.text
        lat, lon = _position(network, "B_S_0800", times[-1])
        location = {"_type": "location", "lat": lat, "lon": lon, "tst": round(times[-1])}
        alice = {"X-Limit-U": "alice", "X-Limit-D": "phone"}
        mapped = await client.post("/ingest/owntracks", json=location, headers=alice)
        assert (mapped.status_code, mapped.json()) == (200, [])
        refused = [
            await client.get("/ingest/osmand", params={"id": "bus-12", "lat": lat, "lon": lon,
                                                       "timestamp": round(now_s)}),
            await client.post("/ingest/owntracks", json=location,
                              headers={"X-Limit-U": "carol", "X-Limit-D": "phone"}),
        ]  # fmt: skip
        assert [r.status_code for r in refused] == [403, 403]
        assert [r.json()["reason"] for r in refused] == ["unknown_device"] * 2
        assert refused[1].json()["detail"] == (
            "device 'carol-phone' is not in the tracker's devices file: add a line "
            "carol-phone,<vehicle_id> to it for this phone"
        )

        async def all_in() -> bool:
            stats = await get_json(client, "/api/stats")
            return bool(stats["writer"]["stored"] == len(times) + 1)

        await eventually(all_in, "the listed phones' positions stored")
        stats = await get_json(client, "/api/stats")
        assert stats["pipeline"]["rejected_by_reason"] == {"unknown_device": 2}
        vehicles = {
            v["vehicle_id"]: v for v in (await get_json(client, "/api/vehicles"))["vehicles"]
        }
        assert set(vehicles) == {"bus-12", "bus-7"}
        assert (vehicles["bus-12"]["state"], vehicles["bus-12"]["trip_id"]) == (
            "in_service", "B_N_0800",
        )  # fmt: skip
        rejected = (await get_json(client, "/api/problems"))["rejected"]
        assert {(r["vehicle_id"], r["reason"]) for r in rejected} == {
            ("bus-12", "unknown_device"), ("carol-phone", "unknown_device"),
        }  # fmt: skip


def _phones(devices_file: Path, *args: str) -> str:
    """`tracker phones ARGS` run as a real process on `devices_file`; the token it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "phones", *args, "--devices-file", str(devices_file)],
        cwd=Path(__file__).resolve().parents[2], check=True, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    found = re.search(r"^token \(shown this once\): (\S+)$", done.stdout, re.MULTILINE)
    assert found is not None, done.stdout
    return found.group(1)


async def test_a_phone_with_a_token_must_send_it_every_way_an_app_can(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    devices_file = tmp_path / "devices.csv"
    osmand_token = _phones(devices_file, "add", "358240051111110", "bus-12")
    owntracks_token = _phones(devices_file, "add", "alice-phone", "bus-7")
    assert "358240051111110,bus-12," in devices_file.read_text()
    assert osmand_token not in devices_file.read_text()  # only its hash is kept
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings.model_copy(update={"devices_file": devices_file}))
    async with running(app, operator=False) as client:  # no operator's Authorization
        network = app.state.network
        now_s = settings.now()
        times = [now_s - STEP_S * (2 - k) for k in range(4)]
        points = [_position(network, "B_N_0800", t) for t in times]

        def osmand(k: int, **extra: str) -> dict[str, str | float]:
            lat, lon = points[k]
            return {"id": "358240051111110", "lat": lat, "lon": lon, "timestamp": round(times[k]),
                    **extra}  # fmt: skip

        taken = [
            await client.get("/ingest/osmand", params=osmand(0, token=osmand_token)),
            await client.post("/ingest/osmand", data=osmand(1, token=osmand_token)),
            await client.get("/ingest/osmand", params=osmand(2),
                             headers={"Authorization": f"Bearer {osmand_token}"}),
        ]  # fmt: skip
        lat, lon = _position(network, "B_S_0800", times[-1])
        location = {"_type": "location", "lat": lat, "lon": lon, "tst": round(times[-1])}
        alice = {"X-Limit-U": "alice", "X-Limit-D": "phone"}
        taken.append(await client.post("/ingest/owntracks", json=location, headers=alice,
                                       auth=("alice", owntracks_token)))  # fmt: skip
        assert [r.status_code for r in taken] == [200] * 4, [r.text for r in taken]

        refused = [
            await client.get("/ingest/osmand", params=osmand(3)),  # no token
            await client.get("/ingest/osmand", params=osmand(3, token=owntracks_token)),
            await client.post("/ingest/owntracks", json=location, headers=alice,
                              auth=("alice", "guess")),
            await client.post("/ingest/owntracks", json=location),  # unnamed
        ]  # fmt: skip
        assert [r.status_code for r in refused] == [401] * 4
        assert {r.json()["reason"] for r in refused} == {"bad_token"}
        assert "must send its token" in refused[0].json()["detail"]
        assert "is wrong" in refused[1].json()["detail"]

        pipeline = app.state.pipeline  # the client is a phone's: /api/stats is not for it
        await eventually(lambda: pipeline.writer.stored == 4, "the four positions stored")
        assert pipeline.stats.rejected_by_reason == {"bad_token": 4}
        assert {v["vehicle_id"] for v in (await get_json(client, "/api/vehicles"))["vehicles"]} \
            == {"bus-12", "bus-7"}  # fmt: skip
    assert osmand_token not in caplog.text


def test_the_access_log_shows_no_token() -> None:
    line = ("127.0.0.1:5", "GET", "/ingest/osmand?id=a&token=s3cret&lat=1", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', line, None)  # fmt: skip
    assert RedactTokens().filter(record)
    assert "s3cret" not in record.getMessage()
    assert "/ingest/osmand?id=a&token=***&lat=1" in record.getMessage()
