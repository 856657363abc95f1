"""The MQTT ingest against a real Mosquitto broker, and the embedded amqtt broker."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence

import pytest

from simulator.publish import MqttPublisher
from tests.integration.servers import Mosquitto, free_port
from tracker.core.model import Ping
from tracker.ingest.broker import embedded_broker
from tracker.ingest.mqtt import Backoff, MqttIngest, Protocol, parse_broker_url
from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.wire import WireError, decode_ping

TIMEOUT_S = 10.0  # the longest any test waits for the broker, its clients or a condition
FAST = Backoff(first_s=0.05, max_s=0.4)  # reconnect quickly in tests
T0 = 1_764_061_200.0


def ping(vehicle_id: str, n: int) -> Ping:
    return Ping(vehicle_id, T0 + n, 33.57 + n * 1e-5, -7.59)


def interleaved(vehicles: Sequence[str], per_vehicle: int, start: int = 0) -> list[Ping]:
    return [ping(v, n) for n in range(start, start + per_vehicle) for v in vehicles]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def publish(url: str, pings: Sequence[Ping], protocol: Protocol = "5") -> None:
    def run() -> None:
        publisher = MqttPublisher(
            url,
            mqtt_version=protocol,
            client_id=unique("publisher"),
            connect_timeout_s=TIMEOUT_S,
            flush_timeout_s=TIMEOUT_S,
        )
        with publisher:
            for p in pings:
                publisher.publish(p)

    await asyncio.to_thread(run)


async def take(ingest: MqttIngest) -> list[Ping]:
    """The next batch of pings from `ingest`'s queue, decoded (fails on a bad message), and
    acknowledged to the broker, as the tracker's store writer does once they are stored."""
    batch = await ingest.queue.next_batch(100, max_wait_s=0.05)
    out: list[Ping] = []
    for message in batch.live:
        decoded = decode_ping(message.topic, message.payload)
        assert not isinstance(decoded, WireError), decoded
        out.append(decoded)
    ingest.acknowledge(m.ack_id for m in batch.live + batch.superseded if m.ack_id is not None)
    return out


async def receive(ingest: MqttIngest, count: int) -> list[Ping]:
    """Exactly `count` pings from `ingest` (fails on a timeout or a bad message)."""
    out: list[Ping] = []
    async with asyncio.timeout(TIMEOUT_S):
        while len(out) < count:
            out += await take(ingest)
    assert len(out) == count
    return out


async def receive_including(ingest: MqttIngest, expected: Sequence[Ping]) -> list[Ping]:
    """Pings from `ingest` until every one of `expected` came (fails on a timeout)."""
    out: list[Ping] = []
    async with asyncio.timeout(TIMEOUT_S):
        while not set(expected) <= set(out):
            out += await take(ingest)
    return out


async def eventually(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(TIMEOUT_S):
        while not condition():
            await asyncio.sleep(0.02)
    assert condition(), what


def by_vehicle(pings: Sequence[Ping]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for p in pings:
        out[p.vehicle_id].append(p.timestamp)
    return out


async def test_pings_arrive_in_order_per_vehicle(mosquitto: Mosquitto) -> None:
    queue = AsyncIngestQueue(10_000)
    sent = interleaved(["bus-1", "bus-2", "bus-3"], 50)
    async with MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue) as ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        assert ingest.connected
        await publish(mosquitto.url, sent)
        got = await receive(ingest, len(sent))
        assert ingest.stats.messages_received == len(sent)
    assert by_vehicle(got) == by_vehicle(sent)
    assert queue.stats().superseded == queue.stats().dropped_full == 0


async def test_a_tracker_that_falls_behind_keeps_the_newest_ping_per_vehicle(
    mosquitto: Mosquitto,
) -> None:
    queue = AsyncIngestQueue(5)  # nobody drains it while the pings arrive
    vehicles = ["bus-1", "bus-2", "bus-3"]
    sent = interleaved(vehicles, 20)
    async with MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue) as ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await publish(mosquitto.url, sent)
        await eventually(lambda: ingest.stats.messages_received == len(sent), "all arrived")
        got = await receive(ingest, 5)
    newest = {v: max(p.timestamp for p in sent if p.vehicle_id == v) for v in vehicles}
    for vehicle_id, timestamps in by_vehicle(got).items():
        assert timestamps == sorted(timestamps)
        assert timestamps[-1] == newest[vehicle_id]
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_full) == (len(sent) - 5, 0)
    # The superseded ones came out to be stored, as many as the list holds (the queue's 5).
    assert (stats.drained_superseded, stats.dropped_superseded) == (5, len(sent) - 10)


class FailsOnce(AsyncIngestQueue):
    """A queue whose first put raises, as a bug in the message path would."""

    failed = False

    def put_threadsafe(self, vehicle_id: str, message: Received) -> bool:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in the message path")
        return super().put_threadsafe(vehicle_id, message)


async def test_an_error_in_the_message_path_reconnects_and_loses_nothing(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    queue = FailsOnce(1000)
    ingest = MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue, backoff=FAST)
    sent = interleaved(["bus-1"], 3)
    async with ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await publish(mosquitto.url, sent)
        got = await receive(ingest, len(sent))  # the first was not acknowledged: sent again
        assert ingest.stats.session_errors == 1
        assert ingest.stats.reconnects == 1
    assert by_vehicle(got) == by_vehicle(sent)
    assert "a bug in the message path" in caplog.text  # logged with its traceback


async def test_tls_both_ways_every_message_arrives_in_order(mosquitto_tls: Mosquitto) -> None:
    """mqtts:// end to end: the simulator's publisher and the tracker's ingest, both driving
    paho through `pump` (which also reads what TLS has already decrypted, which `select` does
    not see), over a real broker's TLS listener checked against its CA."""
    vehicles = [f"bus-{n}" for n in range(7)]
    sent = interleaved(vehicles, 400)  # 2,800 messages, many per TLS record
    queue = AsyncIngestQueue(10_000)
    async with MqttIngest(mosquitto_tls.tls_url, client_id=unique("tracker"), queue=queue,
                          protocol="3.1.1") as ingest:  # fmt: skip
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)

        def send() -> None:
            with MqttPublisher(mosquitto_tls.tls_url, qos=1) as publisher:
                for p in sent:
                    publisher.publish(p)

        await asyncio.to_thread(send)
        got = await receive(ingest, len(sent))
    assert by_vehicle(got) == by_vehicle(sent)


async def test_tls_refuses_a_broker_whose_certificate_is_not_trusted(
    mosquitto_tls: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's CAs only: the test CA is unknown
    monkeypatch.setenv("SSL_CERT_DIR", str(mosquitto_tls.directory / "no-such-dir"))
    queue = AsyncIngestQueue(100)
    async with MqttIngest(mosquitto_tls.tls_url, client_id=unique("tracker"), queue=queue,
                          backoff=FAST) as ingest:  # fmt: skip
        await eventually(lambda: ingest.stats.connect_failures >= 2, "TLS attempts failed")
        assert not ingest.connected


async def test_persistent_session_keeps_what_the_broker_held(mosquitto: Mosquitto) -> None:
    client_id = unique("tracker")
    vehicles = ["bus-1", "bus-2"]
    queue = AsyncIngestQueue(10_000)
    async with MqttIngest(mosquitto.url, client_id=client_id, queue=queue) as ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await publish(mosquitto.url, interleaved(vehicles, 5))
        await receive(ingest, 10)
    assert not ingest.connected

    while_away = interleaved(vehicles, 20, start=5)  # the tracker is down (a restart)
    await publish(mosquitto.url, while_away)

    queue = AsyncIngestQueue(10_000)
    async with MqttIngest(mosquitto.url, client_id=client_id, queue=queue) as ingest:
        got = await receive(ingest, len(while_away))
        await asyncio.sleep(0.2)  # nothing more than what was held arrives
        assert len(queue) == 0
    assert by_vehicle(got) == by_vehicle(while_away)


async def test_reconnects_by_itself_after_a_broker_restart(mosquitto: Mosquitto) -> None:
    queue = AsyncIngestQueue(10_000)
    ingest = MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue, backoff=FAST)
    async with ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        before = interleaved(["bus-1"], 5)
        await publish(mosquitto.url, before)
        await receive(ingest, 5)

        await asyncio.to_thread(mosquitto.stop)
        await eventually(lambda: not ingest.connected, "the ingest saw the broker go")
        await asyncio.sleep(0.3)  # a few failed attempts while the broker is down
        await asyncio.to_thread(mosquitto.start)
        await eventually(lambda: ingest.stats.reconnects == 1, "the ingest reconnected")
        # Subscribed again on the new connection, so this works even if the broker lost the
        # session (the fixture's Mosquitto cannot write its persistence file when run as root).
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        after = interleaved(["bus-1", "bus-2"], 5, start=5)
        await publish(mosquitto.url, after)
        got = await receive_including(ingest, after)
        # QoS 1 is at least once: the broker stopped before it had every PUBACK of `before`
        # sends those again on the new connection. Nothing else is repeated or lost.
        again = [p for p in got if p not in after]
        assert set(again) <= set(before)
        assert by_vehicle([p for p in got if p in after]) == by_vehicle(after)
        assert ingest.connected
        stats = ingest.stats
        assert stats.reconnects == 1
        assert stats.connects == 2
        assert stats.connect_failures >= 1
        assert stats.session_errors == 0


async def test_the_broker_keeps_the_session_across_its_own_restart(mosquitto: Mosquitto) -> None:
    # Persistence needs a broker that can write its directory (the fixture sees to it).
    assert (mosquitto.directory / "mosquitto.log").exists()
    queue = AsyncIngestQueue(1000)
    wait_1s = Backoff(first_s=1.0, max_s=1.0, jitter=0.0)  # long enough to publish meanwhile
    ingest = MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue, backoff=wait_1s)
    async with ingest:
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await asyncio.to_thread(mosquitto.stop)
        await asyncio.to_thread(mosquitto.start)
        sent = interleaved(["bus-1", "bus-2"], 5)
        await publish(mosquitto.url, sent)  # most likely before the ingest is back
        assert by_vehicle(await receive(ingest, len(sent))) == by_vehicle(sent)
        assert ingest.stats.reconnects == 1


async def test_first_connection_is_retried_until_the_broker_is_up(mosquitto: Mosquitto) -> None:
    await asyncio.to_thread(mosquitto.stop)
    queue = AsyncIngestQueue(100)
    ingest = MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue, backoff=FAST)
    async with ingest:
        await eventually(lambda: ingest.stats.connect_failures >= 3, "attempts were retried")
        assert not ingest.connected
        await asyncio.to_thread(mosquitto.start)
        await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        assert ingest.stats.connects == 1
        assert ingest.stats.reconnects == 0


async def test_closing_while_the_broker_is_down_is_prompt(mosquitto: Mosquitto) -> None:
    await asyncio.to_thread(mosquitto.stop)
    queue = AsyncIngestQueue(100)
    slow = Backoff(first_s=60.0, max_s=60.0)  # closing must not wait for the backoff
    ingest = MqttIngest(mosquitto.url, client_id=unique("tracker"), queue=queue, backoff=slow)
    async with asyncio.timeout(2.0):
        async with ingest:
            await eventually(lambda: ingest.stats.connect_failures >= 1, "one attempt failed")


async def test_share_group_splits_messages_without_loss_or_duplicates(
    mosquitto: Mosquitto,
) -> None:
    """Mosquitto deals a shared subscription's messages round robin, one at a time: nothing is
    lost or duplicated, each instance gets its part in order, but a vehicle's pings are spread
    over the instances (no stickiness), so no instance sees a vehicle's whole track."""
    vehicles = ["bus-1", "bus-2", "bus-3"]  # an even count would split evenly by chance
    sent = interleaved(vehicles, 25)
    queues = [AsyncIngestQueue(10_000), AsyncIngestQueue(10_000)]
    ingests = [
        MqttIngest(mosquitto.url, client_id=unique(f"tracker-{i}"), queue=q, share_group="trackers")
        for i, q in enumerate(queues)
    ]
    async with ingests[0], ingests[1]:
        for ingest in ingests:
            await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
        await publish(mosquitto.url, sent)
        await eventually(
            lambda: sum(i.stats.messages_received for i in ingests) >= len(sent), "all delivered"
        )
        await asyncio.sleep(0.2)  # would any duplicate come late?
        counts = [ingest.stats.messages_received for ingest in ingests]
        parts = [await receive(i, n) for i, n in zip(ingests, counts, strict=True)]
    assert sum(counts) == len(sent)
    assert all(count > 0 for count in counts)
    together = sorted((p.vehicle_id, p.timestamp) for part in parts for p in part)
    assert together == sorted((p.vehicle_id, p.timestamp) for p in sent)
    for part in parts:
        for timestamps in by_vehicle(part).values():
            assert timestamps == sorted(timestamps)
    split = [v for v in vehicles if all(v in by_vehicle(part) for part in parts)]
    assert split, "Mosquitto kept every vehicle on one instance: update the docs"


@pytest.mark.parametrize(
    "url",
    [
        "localhost:1883",
        "http://broker.example:1883",
        "mqtt://",
        "mqtt://broker.example:99999",
        "mqtt://broker.example:0",
        "mqtt://broker.example/topic",
        "mqtts://user:s3cret@broker.example/x",
    ],
)
def test_a_bad_broker_url_fails_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="TRACKER_BROKER_URL") as error:
        parse_broker_url(url)
    assert "s3cret" not in str(error.value)


async def test_ingest_rejects_bad_settings_before_connecting() -> None:
    queue = AsyncIngestQueue(10)
    with pytest.raises(ValueError, match="TRACKER_BROKER_URL"):
        MqttIngest("tcp://127.0.0.1:1883", client_id="tracker", queue=queue)
    with pytest.raises(ValueError, match="MQTT 5"):
        MqttIngest(
            "mqtt://127.0.0.1:1883",
            client_id="tracker",
            queue=queue,
            share_group="g",
            protocol="3.1.1",
        )
    with pytest.raises(ValueError, match="client_id"):
        MqttIngest("mqtt://127.0.0.1:1883", client_id="", queue=queue)


def test_broker_url_defaults_and_credentials() -> None:
    plain = parse_broker_url("mqtt://broker.example")
    assert (plain.host, plain.port, plain.tls) == ("broker.example", 1883, False)
    secure = parse_broker_url("mqtts://tracker:pw@broker.example")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "tracker",
        "pw",
    )
    assert "pw" not in str(secure)


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(first_s=0.5, max_s=8.0, factor=2.0, jitter=0.5)
    rng = random.Random(1)
    for failures, base_s in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (50, 8.0), (10_000, 8.0)]:
        for _ in range(20):
            assert base_s * 0.5 <= backoff.delay_s(failures, rng) <= base_s


async def test_embedded_broker_round_trip_with_a_persistent_session() -> None:
    vehicles = ["bus-1", "bus-2"]
    async with embedded_broker(port=free_port()) as url:
        client_id = unique("tracker")
        queue = AsyncIngestQueue(1000)
        async with MqttIngest(
            url, client_id=client_id, queue=queue, protocol="3.1.1", ack="received"
        ) as ingest:
            await asyncio.wait_for(ingest.wait_subscribed(), TIMEOUT_S)
            sent = interleaved(vehicles, 10)
            await publish(url, sent, protocol="3.1.1")
            assert by_vehicle(await receive(ingest, len(sent))) == by_vehicle(sent)

        while_away = interleaved(vehicles, 5, start=10)
        await publish(url, while_away, protocol="3.1.1")
        queue = AsyncIngestQueue(1000)
        async with MqttIngest(
            url, client_id=client_id, queue=queue, protocol="3.1.1", ack="received"
        ) as ingest:
            assert by_vehicle(await receive(ingest, len(while_away))) == by_vehicle(while_away)


async def test_embedded_broker_does_not_answer_mqtt5(caplog: pytest.LogCaptureFixture) -> None:
    """amqtt reads an MQTT 5 CONNECT with properties as 3.1.1 and waits for bytes that never
    come; the ingest gives up after `connect_timeout_s` and tries again."""
    caplog.set_level(logging.WARNING, logger="tracker.ingest.mqtt")
    async with embedded_broker(port=free_port()) as url:
        queue = AsyncIngestQueue(10)
        ingest = MqttIngest(
            url, client_id=unique("tracker"), queue=queue, backoff=FAST, connect_timeout_s=0.3
        )
        async with ingest:
            await eventually(lambda: ingest.stats.connect_failures >= 2, "MQTT 5 got no answer")
            assert ingest.stats.connects == 0
    assert "no answer to CONNECT in 0.3 s" in caplog.text
