"""SIRI-VM and SIRI-SM out end to end: the real app (`create_app`) on a real Mosquitto and
PostgreSQL, read through httpx on its ASGI interface.

The buses of `tests.integration.test_api` publish their pings over MQTT (the clock is Wednesday
2026-03-04 08:06 in Casablanca, the two-directions feed): bus-1 on B_N_0800 on time, bus-2 on
B_S_0748 twelve minutes late, bus-3 400 m off its route, bus-4 far from any route, bus-5 seen
200 s ago (stale). The answers parse (xml.etree), follow the XSD's element order
(`tests.unit.test_siri.order_problems`) and carry those buses; unknown stops and lines are
404 with a SIRI ErrorCondition, bad parameters 422; an unchanged answer is a 304.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import Mosquitto
from tests.integration.test_api import (
    ALL_BUSES,
    LATE_S,
    SERVICE_NOW,
    _pings,
    _publish,
    eventually,
    get_json,
    running,
    service_settings,
)
from tests.unit.test_siri import NS, find, order_problems, seconds, text
from tracker.api.siri import SiriCache
from tracker.app import create_app
from tracker.export import siri
from tracker.ingest.mqtt import MqttIngest

pytestmark = pytest.mark.integration

TIMEOUT_S = 15.0
VM = "/siri/vehicle-monitoring"
SM = "/siri/stop-monitoring"


async def get_xml(client: httpx.AsyncClient, url: str, status: int = 200) -> ET.Element:
    response = await client.get(url)
    assert response.status_code == status, (url, response.status_code, response.text)
    assert response.headers["content-type"] == "application/xml"
    root = ET.fromstring(response.content)
    assert root.tag == f"{{{siri.SIRI_NS}}}Siri"
    assert order_problems(root) == []
    return root


def activities(root: ET.Element) -> dict[str, ET.Element]:
    return {text(a, "s:MonitoredVehicleJourney/s:VehicleRef"): find(a, "s:MonitoredVehicleJourney")
            for a in root.iterfind(".//s:VehicleActivity", NS)}  # fmt: skip


async def test_siri_answers_carry_the_buses_sent(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app) as client:
        ingest = app.state.ingest
        assert isinstance(ingest, MqttIngest)
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        now_s = settings.now()
        pings = _pings(app.state.network, now_s)
        await asyncio.to_thread(_publish, mosquitto.url, pings)

        async def all_live() -> bool:
            vehicles = await get_json(client, "/api/vehicles")
            return len(vehicles["vehicles"]) == len(ALL_BUSES)

        await eventually(all_live, "every bus live")

        # SIRI-VM: every bus seen in the last 90 s; bus-1 and bus-2 on their trips.
        async def vm_has_everyone() -> bool:
            return set(activities(await get_xml(client, VM))) == set(ALL_BUSES) - {"bus-5"}

        await eventually(vm_has_everyone, "SIRI-VM to carry every bus but the stale one")
        by_id = activities(await get_xml(client, VM))
        bus1 = by_id["bus-1"]
        assert text(bus1, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "B_N_0800"
        assert text(bus1, "s:FramedVehicleJourneyRef/s:DataFrameRef") == "2026-03-04"
        assert (text(bus1, "s:LineRef"), text(bus1, "s:DirectionRef")) == ("B", "0")
        assert text(bus1, "s:MonitoredCall/s:StopPointRef").startswith("BN")
        bus2 = by_id["bus-2"]
        assert text(bus2, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "B_S_0748"
        assert siri.parse_duration_s(text(bus2, "s:Delay")) == pytest.approx(LATE_S, abs=60)
        assert by_id["bus-4"].find("s:LineRef", NS) is None  # on no route: where it is only
        assert float(text(by_id["bus-4"], "s:VehicleLocation/s:Latitude")) == pytest.approx(
            pings[-2].lat, abs=1e-5)  # fmt: skip
        only = activities(await get_xml(client, f"{VM}?VehicleRef=bus-2"))
        assert set(only) == {"bus-2"}
        assert set(activities(await get_xml(client, f"{VM}?LineRef=B"))) == {"bus-1", "bus-2"}
        assert activities(await get_xml(client, f"{VM}?VehicleRef=nobody")) == {}

        # SIRI-SM: bus-1's predicted arrival at the end of its trip.
        async def bus1_predicted() -> bool:
            root = await get_xml(client, f"{SM}?MonitoringRef=BN5")
            return any(text(s, ".//s:VehicleRef") == "bus-1"
                       for s in root.iterfind(".//s:MonitoredStopVisit", NS))  # fmt: skip

        await eventually(bus1_predicted, "bus-1's predicted arrival at BN5 in SIRI-SM")
        root = await get_xml(client, f"{SM}?MonitoringRef=BN5&PreviewInterval=PT30M")
        found = list(root.iterfind(".//s:MonitoredStopVisit", NS))
        expected = [seconds(text(s, ".//s:MonitoredCall/s:ExpectedArrivalTime")) for s in found]
        assert expected == sorted(expected)
        assert all(t <= now_s + 30 * 60 + 60 for t in expected)
        first = find(found[0], "s:MonitoredVehicleJourney")
        assert text(first, "s:VehicleRef") == "bus-1"
        assert text(first, "s:FramedVehicleJourneyRef/s:DatedVehicleJourneyRef") == "B_N_0800"
        aimed = seconds(text(first, "s:MonitoredCall/s:AimedArrivalTime"))
        assert aimed == SERVICE_NOW.timestamp() + 3 * 60  # B_N_0800 reaches BN5 at 08:09
        one = await get_xml(client, f"{SM}?MonitoringRef=BN5&MaximumStopVisits=1&LineRef=B")
        assert len(list(one.iterfind(".//s:MonitoredStopVisit", NS))) == 1

        # Unknown stop and line: 404 with a SIRI ErrorCondition naming them.
        for url, ref in ((f"{SM}?MonitoringRef=NOPE", "NOPE"),
                         (f"{SM}?MonitoringRef=BN5&LineRef=Z9", "Z9"),
                         (f"{VM}?LineRef=Z9", "Z9")):  # fmt: skip
            error = await get_xml(client, url, status=404)
            assert text(error, "s:ServiceDelivery/s:Status") == "false"
            assert text(error, ".//s:ErrorCondition/s:InvalidDataReferencesError/s:InvalidRef") \
                == ref  # fmt: skip
        # Parameters that cannot be read: 422 in JSON, as every endpoint.
        for bad in ("PreviewInterval=30", "PreviewInterval=-PT5M", "MaximumStopVisits=0"):
            body = await get_json(client, f"{SM}?MonitoringRef=BN5&{bad}", status=422)
            assert body["detail"]
        assert "PT30M" in (await get_json(client, f"{SM}?MonitoringRef=BN5&PreviewInterval=30",
                                          status=422))["detail"]  # fmt: skip
        await get_json(client, SM, status=422)  # MonitoringRef is required

        # ETags: an unchanged answer is a 304 without a body, on the next tick too.
        response = await client.get(f"{VM}?VehicleRef=bus-4")  # bus-4 sends nothing more
        assert response.headers["cache-control"] == "public, max-age=1"
        etag = response.headers["etag"]
        assert etag.startswith('W/"')
        again = await client.get(f"{VM}?VehicleRef=bus-4", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        cache = app.state.siri_cache
        assert isinstance(cache, SiriCache)
        moments = cache.moments

        async def next_tick() -> bool:
            await client.get(f"{VM}?VehicleRef=bus-4")
            return cache.moments > moments

        await eventually(next_tick, "a new SIRI moment")
        later = await client.get(f"{VM}?VehicleRef=bus-4", headers={"If-None-Match": etag})
        assert later.status_code == 304
        changed = await client.get(f"{VM}?VehicleRef=bus-1", headers={"If-None-Match": etag})
        assert changed.status_code == 200

        schema = await get_json(client, "/openapi.json")
        assert {VM, SM} <= set(schema["paths"])
