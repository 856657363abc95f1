"""Per-vehicle broker credentials on a real Mosquitto: the files `tracker devices` writes (run as
a real process), a broker started on them, and real MQTT 5 clients.

A vehicle may publish on its own topic only: another vehicle's topic is refused by the broker
(PUBACK reason 0x87, not authorized) and never reaches the tracker; a wrong password or no
account is refused at CONNECT; the tracker's account reads every vehicle and may publish
nothing; a vehicle added later may connect once Mosquitto got SIGHUP.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.integration.servers import Mosquitto, wait_for_port
from tracker.core.model import Ping
from tracker.ingest.broker_auth import hash_password, verify_password
from tracker.ingest.mqtt import MqttIngest
from tracker.ingest.queue import AsyncIngestQueue
from tracker.wire import decode_ping, encode_ping, position_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 10.0
NOT_AUTHORIZED = 0x87
BAD_CREDENTIALS = 0x86  # "bad user name or password"
NO_SUBSCRIBERS = 0x10  # a success: taken, and no one subscribes to it


def devices(directory: Path, *args: str) -> dict[str, str]:
    """Run `tracker devices ARGS` on the files in `directory`; the passwords it printed, by
    account."""
    files = ["--password-file", str(directory / "passwd")]
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "devices", *args, *files], cwd=ROOT, check=True,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    passwords = dict(re.findall(r"broker account '([^']+)' \(password shown this once\): (\S+)",
                                done.stdout))  # fmt: skip
    single = re.search(r"^password \(shown this once\): (\S+)$", done.stdout, re.MULTILINE)
    if single is not None:
        passwords[args[-1]] = single.group(1)
    return passwords


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, dict[str, str]]]:
    """Mosquitto on the files of `tracker devices init` and two vehicles; their passwords."""
    auth = tmp_path / "auth"
    passwords = devices(auth, "init", "--acl-file", str(auth / "acl"))
    passwords |= devices(auth, "add", "bus-1") | devices(auth, "add", "bus-2")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    access = (f"allow_anonymous false\npassword_file {auth / 'passwd'}\n"
              f"acl_file {auth / 'acl'}\n")  # fmt: skip
    mosquitto = Mosquitto(directory, access=access)
    mosquitto.start()
    try:
        yield mosquitto, passwords
    finally:
        mosquitto.stop()


class Client:
    """A paho MQTT 5 client with a user name, in its own network thread, that keeps the
    CONNACK's and the PUBACKs' reason codes."""

    def __init__(self, port: int, user: str | None, password: str | None) -> None:
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self._answered = threading.Event()
        self._acked = threading.Condition()
        self.paho = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{user}",
                                protocol=paho.MQTTv5)  # fmt: skip
        if user is not None:
            self.paho.username_pw_set(user, password)
        self.paho.on_connect = self._on_connect
        self.paho.on_publish = self._on_publish
        self.paho.connect("127.0.0.1", port)
        self.paho.loop_start()
        assert self._answered.wait(TIMEOUT_S), "no CONNACK"

    def _on_connect(self, client: paho.Client, userdata: object, flags: object,
                    reason: ReasonCode, properties: object) -> None:  # fmt: skip
        self.connack = reason
        self._answered.set()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: object) -> None:  # fmt: skip
        with self._acked:
            self.pubacks[mid] = reason
            self._acked.notify_all()

    def publish(self, vehicle_id: str, ping: Ping) -> int:
        """Publish `ping` on `vehicle_id`'s topic (QoS 1); the PUBACK's reason code."""
        info = self.paho.publish(position_topic(vehicle_id), encode_ping(ping), qos=1)
        with self._acked:
            assert self._acked.wait_for(lambda: info.mid in self.pubacks, TIMEOUT_S), "no PUBACK"
            return int(self.pubacks[info.mid].value)

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


def test_the_password_file_is_mosquittos_format() -> None:
    """The hash of `mosquitto_passwd` (2.0: PBKDF2-SHA512, 101 iterations) checks, and ours
    is the same format (Mosquitto takes it: the tests below connect with it)."""
    made_by_mosquitto = ("$7$101$m/SXejwdURkgK/K2$KYPeV2i3O1WxmrsWmyNvV39j20r4THzhpycAjF1QqHpIe1"
                         "eZRTGPShdzgKMT4krZEPVL9T8immGJNEaeTDoM2g==")  # fmt: skip
    assert verify_password("secret", made_by_mosquitto)
    assert not verify_password("Secret", made_by_mosquitto)
    ours = hash_password("secret")
    assert re.fullmatch(r"\$7\$1000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", ours)
    assert verify_password("secret", ours)
    assert not verify_password("secret", "not a hash")


async def test_a_vehicle_publishes_on_its_own_topic_only_and_the_tracker_reads_only(
    broker: tuple[Mosquitto, dict[str, str]],
) -> None:
    mosquitto, passwords = broker
    queue = AsyncIngestQueue(100)
    tracker = MqttIngest(mosquitto.url, client_id="tracker-auth-test", queue=queue,
                         username="bus-tracker", password=passwords["bus-tracker"])  # fmt: skip
    async with tracker:
        await asyncio.wait_for(tracker.wait_subscribed(), TIMEOUT_S)
        bus = await asyncio.to_thread(Client, mosquitto.port, "bus-1", passwords["bus-1"])
        try:
            assert bus.connack is not None
            assert not bus.connack.is_failure
            own = await asyncio.to_thread(bus.publish, "bus-1", Ping("bus-1", 1e9, 33.5, -7.6))
            other = await asyncio.to_thread(bus.publish, "bus-2", Ping("bus-2", 1e9, 33.5, -7.6))
        finally:
            bus.close()
        assert own == 0  # success
        assert other == NOT_AUTHORIZED
        batch = await asyncio.wait_for(queue.next_batch(100, max_wait_s=1.0), TIMEOUT_S)
        await asyncio.sleep(0.5)  # the refused one would have come by now
        assert len(queue) == 0
        got = [decode_ping(m.topic, m.payload) for m in batch.live]
        assert got == [Ping("bus-1", 1e9, 33.5, -7.6)]

    as_tracker = await asyncio.to_thread(Client, mosquitto.port, "bus-tracker",
                                         passwords["bus-tracker"])  # fmt: skip
    try:
        refused = await asyncio.to_thread(as_tracker.publish, "bus-1", Ping("bus-1", 2e9, 0, 0))
    finally:
        as_tracker.close()
    assert refused == NOT_AUTHORIZED


async def test_wrong_or_missing_credentials_are_refused_and_a_new_vehicle_comes_with_sighup(
    broker: tuple[Mosquitto, dict[str, str]], tmp_path: Path
) -> None:
    mosquitto, passwords = broker
    for user, password in (("bus-1", passwords["bus-2"]), ("bus-9", "guess"), (None, None)):
        client = await asyncio.to_thread(Client, mosquitto.port, user, password)
        client.close()
        assert client.connack is not None
        assert client.connack.value in (BAD_CREDENTIALS, NOT_AUTHORIZED), (user, client.connack)

    added = devices(tmp_path / "auth", "add", "bus-3")
    early = await asyncio.to_thread(Client, mosquitto.port, "bus-3", added["bus-3"])
    early.close()
    assert early.connack is not None
    assert early.connack.is_failure  # the broker has not read the file again yet
    assert mosquitto.process is not None
    mosquitto.process.send_signal(signal.SIGHUP)
    await asyncio.sleep(0.5)
    wait_for_port(mosquitto.port)
    late = await asyncio.to_thread(Client, mosquitto.port, "bus-3", added["bus-3"])
    try:
        assert late.connack is not None
        assert not late.connack.is_failure
        answer = await asyncio.to_thread(late.publish, "bus-3", Ping("bus-3", 1e9, 33.5, -7.6))
        assert answer == NO_SUBSCRIBERS  # taken (a success), and nobody listens
        answer = await asyncio.to_thread(late.publish, "bus-1", Ping("bus-1", 1e9, 33.5, -7.6))
        assert answer == NOT_AUTHORIZED
    finally:
        late.close()
