"""Publish pings to an MQTT broker with paho-mqtt 2.x: the simulator's one MQTT adapter.

Topic and payload are the tracker's wire format (`tracker.wire`). Everything runs in the
calling thread: paho's network loop is driven (`tracker.ingest.mqtt.pump`) by `publish` and by
`wait` (which the pacer calls instead of sleeping), so there is no background thread, Ctrl-C
lands in one place, and reconnecting is visible code here rather than paho's automatic retry.
Messages are never dropped on purpose: when `max_pending` messages are not yet acknowledged
(QoS 1/2) or written (QoS 0), `publish` blocks until the broker catches up.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import time
from collections import deque
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from simulator.errors import BrokerError
from tracker.core.model import Ping
from tracker.ingest.mqtt import BrokerAddress, pump
from tracker.ingest.mqtt import parse_broker_url as parse_tracker_broker_url
from tracker.wire import DEFAULT_TOPIC_PREFIX, encode_ping, position_topic

log = logging.getLogger(__name__)

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
MQTT_VERSIONS = {"3.1.1": MQTTProtocolVersion.MQTTv311, "5": MQTTProtocolVersion.MQTTv5}


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://[user[:password]@]host[:port]` (or mqtts:// for TLS), as the tracker reads it;
    a bad URL raises `BrokerError` naming it and the `--broker` flag."""
    try:
        return parse_tracker_broker_url(url, setting="--broker")
    except ValueError as e:
        raise BrokerError(str(e)) from None


class MqttPublisher:
    """A connection to one broker that publishes pings; use as a context manager.

    `close` (or leaving the `with` block) waits up to `flush_timeout_s` for the messages still
    in flight and disconnects cleanly; after an interrupt, call `close(flush_timeout_s=...)`
    with a short timeout.
    """

    def __init__(
        self,
        url: str,
        *,
        qos: int = 1,
        mqtt_version: str = "3.1.1",
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        client_id: str | None = None,
        max_pending: int = 1000,
        keepalive_s: int = 30,
        connect_timeout_s: float = 10.0,
        reconnect_for_s: float = 30.0,
        flush_timeout_s: float = 10.0,
    ) -> None:
        if qos not in (0, 1, 2):
            raise BrokerError(f"QoS {qos!r} is not 0, 1 or 2")
        if mqtt_version not in MQTT_VERSIONS:
            raise BrokerError(f"MQTT version {mqtt_version!r} is not one of {list(MQTT_VERSIONS)}")
        self.address = parse_broker_url(url)
        self.qos = qos
        self.topic_prefix = topic_prefix
        self.published = 0
        self.reconnects = 0
        self._max_pending = max_pending
        self._keepalive_s = keepalive_s
        self._connect_timeout_s = connect_timeout_s
        self._reconnect_for_s = reconnect_for_s
        self._flush_timeout_s = flush_timeout_s
        self._pending: deque[mqtt.MQTTMessageInfo] = deque()
        self._connack: ReasonCode | None = None
        self._connected = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"bus-simulator-{os.getpid()}",
            protocol=MQTT_VERSIONS[mqtt_version],
            reconnect_on_failure=False,
        )
        self._client.max_inflight_messages_set(min(max_pending, 100))
        if self.address.username is not None:
            self._client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            self._client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    # --- paho callbacks (run inside our own loop calls) ---------------------------------------

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._connack = reason
        self._connected = not reason.is_failure

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        self._connected = False

    # --- lifecycle --------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect and wait for the broker's answer; BrokerError if it cannot be had."""
        self._connack = None
        try:
            self._client.connect(self.address.host, self.address.port, self._keepalive_s)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot connect to broker {self.address}: {_why(exc)}") from exc
        deadline = time.monotonic() + self._connect_timeout_s
        while self._connack is None:
            rc = pump(self._client, 0.1)
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                raise BrokerError(
                    f"broker {self.address} closed the connection ({mqtt.error_string(rc)}); "
                    "if it speaks only MQTT 3.1.1, use --mqtt-version 3.1.1"
                )
            if time.monotonic() > deadline:
                raise BrokerError(f"broker {self.address} did not answer within "
                                  f"{self._connect_timeout_s:g} s")  # fmt: skip
        if self._connack.is_failure:
            raise BrokerError(f"broker {self.address} refused the connection: {self._connack}")
        log.info("connected to MQTT broker %s", self.address)

    def close(self, *, flush_timeout_s: float | None = None) -> None:
        """Wait for in-flight messages (up to the timeout), then disconnect."""
        timeout = self._flush_timeout_s if flush_timeout_s is None else flush_timeout_s
        if self._connected:
            unsent = self.flush(timeout)
            if unsent:
                log.warning("%d messages not acknowledged by %s at exit", unsent, self.address)
            self._client.disconnect()
            pump(self._client, 0.1)
        self._connected = False
        log.info("disconnected from %s after %d messages", self.address, self.published)

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # After an error or Ctrl-C, do not hang: give the broker a moment, not the full wait.
        self.close(flush_timeout_s=None if exc_type is None else 2.0)

    # --- publishing -------------------------------------------------------------------------

    def publish(self, ping: Ping) -> None:
        """Send one ping on its vehicle's topic (ValueError if the id cannot be a topic level)."""
        topic = position_topic(ping.vehicle_id, self.topic_prefix)
        while True:
            self._ensure_connected()
            info = self._client.publish(topic, encode_ping(ping), qos=self.qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
            if info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
                raise BrokerError(f"cannot publish to {self.address}: {mqtt.error_string(info.rc)}")
            self._connected = False
        self.published += 1
        self._pending.append(info)
        self._settle()
        while len(self._pending) >= self._max_pending:
            self._loop(0.05)
            self._settle()

    def wait(self, seconds: float) -> None:
        """Sleep for `seconds` while keeping the connection serviced."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._loop(min(remaining, 1.0))
            self._settle()

    def flush(self, timeout_s: float) -> int:
        """Service the connection until every message is out or `timeout_s` passes; returns
        how many are still unacknowledged."""
        deadline = time.monotonic() + timeout_s
        self._settle()
        while self._pending and time.monotonic() < deadline:
            self._loop(0.05)
            self._settle()
        return len(self._pending)

    def _settle(self) -> None:
        while self._pending and self._pending[0].is_published():
            self._pending.popleft()

    def _loop(self, timeout_s: float) -> None:
        self._ensure_connected()
        rc = pump(self._client, timeout_s)
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            self._connected = False
            log.warning("lost the connection to %s (%s)", self.address, mqtt.error_string(rc))

    def _ensure_connected(self) -> None:
        """Reconnect with backoff while disconnected; BrokerError after `reconnect_for_s`."""
        if self._connected:
            return
        deadline = time.monotonic() + self._reconnect_for_s
        delay_s = 0.25
        while not self._connected:
            try:
                self._connack = None
                self._client.reconnect()
                answer_by = time.monotonic() + self._connect_timeout_s
                while self._connack is None and time.monotonic() < answer_by:
                    rc = pump(self._client, 0.1)
                    if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                        break
            except (OSError, ssl.SSLError) as exc:
                log.info("reconnecting to %s failed: %s", self.address, _why(exc))
            if self._connected:
                self.reconnects += 1
                log.info("reconnected to %s", self.address)
                return
            if time.monotonic() + delay_s > deadline:
                raise BrokerError(
                    f"lost the broker {self.address} and could not reconnect within "
                    f"{self._reconnect_for_s:g} s"
                )
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
