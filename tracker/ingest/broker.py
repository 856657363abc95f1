"""An embedded MQTT broker (amqtt) for ``tracker demo``, where no Mosquitto is installed.

What amqtt 0.12 offers, checked against its code and by the tests:

- MQTT 3.1.1 only. An MQTT 5 CONNECT is refused ("Unsupported protocol version"), so clients of
  this broker use ``protocol="3.1.1"``, and shared subscriptions (an MQTT 5 feature) do not exist.
- Persistent sessions (``clean_session=False``) keep their subscriptions and queue QoS 1
  messages while the client is away, but only for clients it does not count as anonymous: its
  `AnonymousAuthPlugin` marks everyone anonymous and anonymous sessions get nothing queued. So
  this module installs `AcceptEveryone`, which lets every client in without that mark. The
  queue per offline session is unbounded and lives in memory: it does not outlive the process.
  (amqtt re-sends queued messages with the retain flag set; the tracker ignores that flag.)
- Nothing is written to disk: the demo broker starts empty each time.

It listens on loopback by default, with no authentication: it is for a demo on one machine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from amqtt.broker import Broker
from amqtt.plugins.base import BaseAuthPlugin

log = logging.getLogger(__name__)


class AcceptEveryone(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """amqtt authentication that lets every client in, with persistent sessions that work."""

    @dataclass
    class Config:
        """No options."""

    async def authenticate(self, *, session: Any) -> bool:
        return True


@asynccontextmanager
async def embedded_broker(host: str = "127.0.0.1", port: int = 1883) -> AsyncIterator[str]:
    """Run an MQTT 3.1.1 broker in this event loop; yields its URL (``mqtt://host:port``)."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} for the embedded MQTT broker is not in 1..65535")
    config: dict[str, Any] = {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {f"{__name__}.AcceptEveryone": {}},
        "session_expiry_interval": 86_400,
    }
    broker = Broker(config)
    await broker.start()
    url = f"mqtt://{host}:{port}"
    log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s", url)
    try:
        yield url
    finally:
        await broker.shutdown()
        log.info("embedded MQTT broker on %s stopped", url)
