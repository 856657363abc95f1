"""The MQTT adapter: `MqttIngest` receives pings into a bounded queue.

`MqttIngest` is a thin paho-mqtt 2.x client, owned by an ``async with``:

- MQTT 5 (or 3.1.1 for brokers without 5, such as the embedded amqtt broker), QoS 1, and a
  persistent session: a fixed `client_id`, ``clean_start=False`` (``clean_session=False`` in
  3.1.1) and a session expiry interval (1 day by default). While the tracker is down the broker
  keeps its subscription and queues the pings, and hands them over when it comes back.
- Reconnecting is the visible loop in `MqttIngest._run`: run one connection in the network
  thread (`MqttIngest._connection`: connect, then paho's network loop until the connection ends),
  wait an exponential backoff with jitter (`Backoff`), try again; the backoff starts over after
  every accepted connection. paho's own reconnect is off. A broker that accepts TCP but does not
  answer CONNECT within `connect_timeout_s` counts as a failed attempt. Connections and
  disconnections are logged at INFO, messages never (they are counted).
- It subscribes on every connection, to `tracker.wire.subscription(prefix, share_group)` and,
  unless `owntracks_prefix` is "", to OwnTracks' location topic
  (`tracker.wire.owntracks_subscription`: ``owntracks/+/+``), so it also works when the broker
  has lost the session.
- Only the network thread touches the paho client. It wraps each message as a `Received` and
  puts it into the `AsyncIngestQueue`, keyed by the vehicle it is from (`tracker.wire.vehicle_key`:
  the vehicle id in the topic, or the vehicle an OwnTracks device reports as); decoding is the
  pipeline's job. Closing sets a flag the thread looks at every 0.1 s; it then sends DISCONNECT
  (the broker keeps the session).

Order: one tracker gets each vehicle's pings in the order the vehicle published them (MQTT keeps
the order of one publisher's messages on a topic); after a reconnect, a message whose PUBACK
was lost comes again, a duplicate the store removes.

Delivery: a QoS 1 message is acknowledged (PUBACK) only once the tracker is done with it: its
row committed to PostgreSQL, or the message rejected or ignored (paho's ``manual_ack``; the
pipeline hands each message's `Received.ack_id` to the store writer, which calls `acknowledge`
after the commit; the network thread sends the PUBACKs). A tracker killed with messages in
memory or in the writer's queue has not acknowledged them, so the broker sends them again to
the next connection of the session, and the store's (vehicle_id, timestamp) dedupe absorbs the
ones that were stored already: exactly-once storage, through a SIGKILL too
(tests/integration/test_fault_sigkill.py). The cost: the broker holds every message not yet
committed as in flight, up to the Receive Maximum the tracker asks for (`RECEIVE_MAXIMUM`,
MQTT 5; a 3.1.1 broker's own limit, Mosquitto's ``max_inflight_messages``), and sends no more
until some are acknowledged, so while the database is down the live view goes on for that many
messages (at 200 pings/s, over 5 minutes) and then waits for the database. What is not
acknowledged: a message the ingest queue or the writer dropped (full, counted), or a batch that
failed with an internal error; the broker sends those again after the next reconnect. The
PUBACKs of a connection that ended are void (counted in `acks_void`): the broker sends those
messages again to the next connection. With ``ack="received"`` (`Settings.mqtt_ack`, the demo's
embedded amqtt broker, which waits for each PUBACK before it sends the next message) paho
acknowledges a message as soon as it is in the queue, and a killed tracker loses what it held.

Shared subscriptions (``share_group``, MQTT 5 only) split the messages between the trackers of
a group. What Mosquitto 2.0 does, as the integration tests check: it hands the messages out
round robin, one message at a time, with no stickiness by topic, so consecutive pings of one
vehicle go to different trackers. Nothing is lost or duplicated, but no tracker sees all pings
of a vehicle, so per-vehicle order and per-vehicle state (trip matching, progress along the
shape) cannot be kept by one instance. Use a share group only where the per-vehicle state lives
outside the process, or with a broker that offers sticky/hashed shared subscriptions (EMQX's
``hash_topic`` strategy, for example); Mosquitto has none (eclipse-mosquitto/mosquitto#3085).
Also, Mosquitto keeps dealing a disconnected member with a persistent session its share of
messages, which then wait in that member's session until it comes back or its session
expires: give members of a share group a short `session_expiry_s`.

Pings are published by the simulator's client, `simulator.publish.MqttPublisher` (the tests use
it too); both drive paho through `pump`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import select
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from tracker.ingest.devices import DeviceMap
from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.wire import (
    DEFAULT_TOPIC_PREFIX,
    owntracks_subscription,
    subscription,
    vehicle_key,
)

log = logging.getLogger(__name__)

BROKER_URL_ENV = "TRACKER_BROKER_URL"
Protocol = Literal["5", "3.1.1"]
_SESSION_TAKEN_OVER = 142  # MQTT 5 reason code: another connection uses the same client id
_POLL_S = 0.1  # the network thread looks at its hang-up flag this often
_READ_BURST = 1000  # packets read per round of `pump`, at most
RECEIVE_MAXIMUM = 65_535  # messages in flight (not acknowledged yet): MQTT 5's largest
_MID_BITS = 16  # an ack id is (connection number << 16) | message id


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where a broker is, from a URL such as ``mqtts://user:secret@broker.example:8883``."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # for logs: never shows the password
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def _without_password(url: str) -> str:
    return re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", url)


def parse_broker_url(url: str, *, setting: str = BROKER_URL_ENV) -> BrokerAddress:
    """Parse ``mqtt://[user[:password]@]host[:port]`` (1883) or ``mqtts://...`` (8883, TLS);
    credentials may be percent-encoded.

    Raises a ValueError naming the URL (without its password) and the `setting` it came from
    (`TRACKER_BROKER_URL` by default) if it is not one of those.
    """

    def bad(why: str) -> ValueError:
        return ValueError(
            f"broker URL {_without_password(url)!r} {why}; set {setting} to "
            "mqtt://host[:port] or mqtts://host[:port], e.g. mqtt://127.0.0.1:1883"
        )

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise bad(f"is not a valid URL ({e})") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise bad(f"has the scheme {parts.scheme!r}, not mqtt or mqtts")
    if not parts.hostname:
        raise bad("names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise bad("has a path, query or fragment, which MQTT does not use")
    if port == 0:
        raise bad("has port 0")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before connecting again: exponential, capped, with jitter."""

    first_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5  # up to this fraction of each wait is taken off at random

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """The wait after `failures` failed attempts in a row (1 after the first)."""
        exponent = min(max(failures, 1) - 1, 64)  # past the cap anyway; avoids float overflow
        base_s = min(self.max_s, self.first_s * self.factor**exponent)
        return base_s * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Counters of one `MqttIngest` since it was opened."""

    messages_received: int
    connects: int  # connections the broker accepted
    reconnects: int  # accepted connections after the first
    connect_failures: int  # attempts that did not end in an accepted connection
    session_errors: int  # unexpected errors that ended a connection (logged with traceback)
    acknowledged: int  # QoS 1 messages acknowledged to the broker (stored, or rejected)
    acks_void: int  # acknowledgements that came after their connection ended: sent again


def pump(client: paho.Client, timeout_s: float) -> MQTTErrorCode:
    """One round of a paho client's network loop, with paho's API for an outside loop: wait
    for the socket (at most `timeout_s`), read every packet that has arrived, write what is
    queued, then the keepalive. For a client that one thread drives, instead of `loop()`.

    `loop()` reads one packet per `select` and, once called, wakes itself through a socket pair
    for every packet queued (every PUBACK, every publish), which is two more system calls per
    message. This costs about 10 µs of CPU less per message received (29 instead of 40 with
    MQTT 5, 16 instead of 25 with 3.1.1; measured with Mosquitto on this project's machine).
    """
    sock = client.socket()
    if sock is None:
        return MQTTErrorCode.MQTT_ERR_NO_CONN
    buffered = _buffered(sock)
    writing = [sock] if client.want_write() else []
    readable, _, _ = select.select([sock], writing, [], 0.0 if buffered else timeout_s)
    rc = MQTTErrorCode.MQTT_ERR_SUCCESS
    if readable or buffered:
        for _ in range(_READ_BURST):  # `loop_read` reads one packet
            rc = client.loop_read()
            sock = client.socket()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or sock is None:
                break
            if not _buffered(sock) and not select.select([sock], [], [], 0.0)[0]:
                break
    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.want_write():
        rc = client.loop_write()
    if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
        rc = client.loop_misc()
    return rc


def _buffered(sock: Any) -> bool:
    """Decrypted TLS bytes waiting in the socket object, which `select` cannot see."""
    return bool(sock.pending()) if hasattr(sock, "pending") else False


def _paho_client(
    address: BrokerAddress,
    *,
    client_id: str,
    protocol: Protocol,
    username: str | None,
    password: str | None,
    manual_ack: bool,
) -> paho.Client:
    if protocol == "5":
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5,
            reconnect_on_failure=False,  # reconnecting is `MqttIngest._run`
            manual_ack=manual_ack,  # acknowledged once stored: `MqttIngest.acknowledge`
        )
    else:
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=False,  # a persistent session, as `clean_start=False` in 5
            reconnect_on_failure=False,  # reconnecting is `MqttIngest._run`
            manual_ack=manual_ack,
        )
    user = username or address.username  # "" (an empty setting) is none
    secret = password or address.password
    if user is not None:
        client.username_pw_set(user, secret)
    if address.tls:
        client.tls_set()  # the system's CA certificates, host name checked
    client.enable_logger(logging.getLogger(f"{__name__}.paho"))  # packet detail at DEBUG
    return client


class MqttIngest:
    """Receives pings from the broker into `queue`; use as ``async with MqttIngest(...)``."""

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str,
        queue: AsyncIngestQueue,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        owntracks_prefix: str = "",
        devices: DeviceMap | None = None,
        share_group: str | None = None,
        username: str | None = None,
        password: str | None = None,
        protocol: Protocol = "5",
        ack: Literal["stored", "received"] = "stored",
        session_expiry_s: int = 86_400,
        keepalive_s: int = 30,
        connect_timeout_s: float = 5.0,
        backoff: Backoff = Backoff(),  # frozen: one shared default is safe
        rng: random.Random | None = None,
    ) -> None:
        """`owntracks_prefix`: also take OwnTracks' locations on ``{owntracks_prefix}/+/+`` (""
        is off); `devices`: the vehicle each OwnTracks device reports as, for the queue's key;
        `ack`: "stored" (messages are acknowledged by `acknowledge`) or "received" (by paho, as
        soon as they are in the queue; their `ack_id` is None)."""
        self.address = parse_broker_url(broker_url)
        if not client_id:
            raise ValueError("MqttIngest needs a fixed client_id: the broker keys sessions by it")
        if protocol not in ("5", "3.1.1"):
            raise ValueError(f"MQTT protocol {protocol!r} is not supported; use '5' or '3.1.1'")
        if share_group is not None:
            if protocol != "5":
                raise ValueError(
                    f"share group {share_group!r} needs MQTT 5 (shared subscriptions); "
                    "the broker is used with protocol '3.1.1': drop the share group or use '5'"
                )
            if not share_group or any(c in share_group for c in "/+#"):
                raise ValueError(f"share group {share_group!r} must be non-empty, without / + #")
        self.client_id = client_id
        self.topic_filter = subscription(topic_prefix, share_group)
        self.topic_filters = (self.topic_filter,) + (
            (owntracks_subscription(owntracks_prefix, share_group),) if owntracks_prefix else ()
        )
        self._topic_prefix = topic_prefix
        self._owntracks_prefix = owntracks_prefix
        self._devices = devices
        self._queue = queue
        self._username = username
        self._password = password
        self._protocol: Protocol = protocol
        self._manual_ack = ack == "stored"
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._backoff = backoff
        self._rng = rng or random.Random()

        # Owned by the `async with`.
        self._client: paho.Client | None = None
        self._executor: ThreadPoolExecutor | None = None  # the network thread
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._hang_up = threading.Event()  # asks the network thread to end the connection

        # Each written by one thread (the network thread, or the loop for the last two), read
        # anywhere: plain values.
        self._connected = False
        self._answered = False  # the broker answered this attempt's CONNECT
        self._accepted = False  # ... and accepted it
        self._refusal: str | None = None
        self._messages_received = 0
        self._connects = 0
        self._connect_failures = 0
        self._session_errors = 0
        self._connection_number = 0  # of the accepted connection now (network thread)
        self._acks: deque[int] = deque()  # ack ids to send: appended anywhere, sent by the thread
        self._acknowledged = 0
        self._acks_void = 0

    # -- the public surface -------------------------------------------------------------

    @property
    def queue(self) -> AsyncIngestQueue:
        """Where the received messages go."""
        return self._queue

    @property
    def connected(self) -> bool:
        """True while a connection is up (the broker accepted it and it has not ended)."""
        return self._connected

    @property
    def stats(self) -> IngestStats:
        return IngestStats(
            messages_received=self._messages_received,
            connects=self._connects,
            reconnects=max(self._connects - 1, 0),
            connect_failures=self._connect_failures,
            session_errors=self._session_errors,
            acknowledged=self._acknowledged,
            acks_void=self._acks_void,
        )

    def acknowledge(self, ack_ids: Iterable[int]) -> None:
        """Acknowledge these messages (`Received.ack_id`) to the broker: they are stored, or
        rejected. From any thread; the network thread sends the PUBACKs within `_POLL_S`."""
        self._acks.extend(ack_ids)

    async def wait_subscribed(self) -> None:
        """Wait until the current connection's subscription is acknowledged by the broker."""
        await self._subscribed.wait()

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._stopping.clear()
        self._hang_up.clear()
        self._client = _paho_client(
            self.address,
            client_id=self.client_id,
            protocol=self._protocol,
            username=self._username,
            password=self._password,
            manual_ack=self._manual_ack,
        )
        self._client.connect_timeout = self._connect_timeout_s  # TCP (and TLS) connect
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"mqtt-ingest-{self.client_id}")
        self._task = asyncio.create_task(self._run(), name=f"mqtt ingest {self.client_id}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()  # ends a backoff wait
        self._hang_up.set()  # ends a connection, within _POLL_S
        if self._task is not None:
            await self._task
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        log.info("MQTT ingest %s closed (%s)", self.client_id, self.stats)

    # -- the reconnect loop -------------------------------------------------------------

    async def _run(self) -> None:
        """Connect, run the connection until it ends, back off, and again, until closed."""
        assert self._loop is not None
        failures = 0
        while not self._stopping.is_set():
            try:
                accepted = await self._loop.run_in_executor(self._executor, self._connection)
            except OSError as e:  # refused, unreachable, timed out, TLS failure
                log.info("cannot connect to MQTT broker %s: %s", self.address, e)
                accepted = False
            except Exception:  # the task's boundary: keep the ingest alive, but say so
                self._session_errors += 1
                log.exception("MQTT connection to %s failed unexpectedly", self.address)
                accepted = False
            if self._stopping.is_set():
                break
            if accepted:
                failures = 1  # the backoff starts over after an accepted connection
            else:
                failures += 1
                self._connect_failures += 1
            delay_s = self._backoff.delay_s(failures, self._rng)
            log.info("connecting to MQTT broker %s again in %.2f s", self.address, delay_s)
            try:
                async with asyncio.timeout(delay_s):
                    await self._stopping.wait()
            except TimeoutError:
                pass

    def _connection(self) -> bool:
        """One connection, from connect to its end; True if the broker accepted it.

        Runs in the network thread, the only thread that touches the paho client (paho would
        otherwise write to the socket from the calling thread).
        """
        assert self._client is not None
        client = self._client
        self._answered = self._accepted = False
        self._refusal = None
        if self._protocol == "5":
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self._session_expiry_s
            properties.ReceiveMaximum = RECEIVE_MAXIMUM
            client.connect(
                self.address.host,
                self.address.port,
                keepalive=self._keepalive_s,
                clean_start=False,
                properties=properties,
            )
        else:
            client.connect(self.address.host, self.address.port, keepalive=self._keepalive_s)
        answer_by = time.monotonic() + self._connect_timeout_s
        hung_up = False
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        try:
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.socket() is not None:
                if not hung_up and not self._answered and time.monotonic() > answer_by:
                    # A broker that accepts TCP but never answers CONNECT must not hold us.
                    self._refusal = f"no answer to CONNECT in {self._connect_timeout_s} s"
                    client.disconnect()
                    hung_up = True
                elif not hung_up and self._hang_up.is_set():
                    self._send_acks(client)  # what is stored already need not come again
                    client.disconnect()  # sends DISCONNECT; the broker keeps the session
                    hung_up = True
                else:
                    self._send_acks(client)
                    rc = pump(client, _POLL_S)
        except Exception:  # a bug in a callback: end this connection cleanly, then report
            if client.socket() is not None:
                client.disconnect()
            raise
        if not self._accepted and not self._hang_up.is_set():
            why = self._refusal or paho.error_string(rc)
            log.warning("MQTT broker %s did not accept the connection: %s", self.address, why)
        return self._accepted

    def _send_acks(self, client: paho.Client) -> None:
        """PUBACK the messages `acknowledge` was given, those of this connection; the others'
        connection ended, and the broker sends them again."""
        current = self._connection_number
        while self._acks:
            ack_id = self._acks.popleft()
            if ack_id >> _MID_BITS == current and self._connected:
                client.ack(ack_id & (1 << _MID_BITS) - 1, 1)
                self._acknowledged += 1
            else:
                self._acks_void += 1

    # -- paho callbacks, in the network thread ------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._answered = True
        if reason_code.is_failure:
            self._refusal = str(reason_code)
            return  # the broker closes the connection, which ends `_connection`
        self._accepted = True
        self._connected = True
        self._connects += 1
        self._connection_number += 1
        log.info(
            "connected to MQTT broker %s as %r (MQTT %s, session present: %s)",
            self.address,
            self.client_id,
            self._protocol,
            flags.session_present,
        )
        if self._protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topic_filters])
        else:
            client.subscribe([(t, 1) for t in self.topic_filters])

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        # one reason code per topic filter, in the order subscribed
        answers = list(zip(self.topic_filters, reason_codes, strict=False))
        refused = [f"{t!r}: {rc}" for t, rc in answers if rc.is_failure]
        if refused:
            log.error("MQTT broker %s refused the subscription to %s", self.address,
                      ", ".join(refused))  # fmt: skip
            return
        for topic_filter, rc in answers:
            if rc.value == 0:
                log.warning("MQTT broker %s granted only QoS 0 for %r", self.address, topic_filter)
        log.info("subscribed to %s", ", ".join(repr(t) for t in self.topic_filters))
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._subscribed.set)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected, self._connected = self._connected, False
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._subscribed.clear)
        if not was_connected:
            return
        if reason_code.value == _SESSION_TAKEN_OVER:
            log.warning(
                "MQTT broker %s gave the session of %r to another connection: two trackers "
                "share one client id; give each its own",
                self.address,
                self.client_id,
            )
        elif flags.is_disconnect_packet_from_server:
            log.info("MQTT broker %s ended the connection: %s", self.address, reason_code)
        elif self._hang_up.is_set():
            log.info("disconnected from MQTT broker %s", self.address)
        else:
            log.info("lost the connection to MQTT broker %s (%s)", self.address, reason_code)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._messages_received += 1
        topic = message.topic
        # Keyed by the vehicle; a stray topic is its own key and fails decoding later.
        vehicle_id = vehicle_key(topic, self._topic_prefix,
                                 owntracks_prefix=self._owntracks_prefix,
                                 devices=self._devices)  # fmt: skip
        ack_id = (
            self._connection_number << _MID_BITS | message.mid
            if message.qos and self._manual_ack
            else None
        )
        self._queue.put_threadsafe(
            vehicle_id, Received(topic, bytes(message.payload), time.time(), ack_id)
        )
