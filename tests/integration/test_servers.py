"""The integration fixtures start real servers that answer."""

from __future__ import annotations

import asyncpg

from tests.integration.servers import Mosquitto, wait_for_port


async def test_postgres_answers(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT 1 + 1") == 2
    finally:
        await conn.close()


def test_mosquitto_restarts_on_same_port(mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    mosquitto.start()
    wait_for_port(mosquitto.port)
    assert mosquitto.process is not None
    assert mosquitto.process.poll() is None
