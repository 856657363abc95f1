"""Real servers for integration tests: a Mosquitto broker and a PostgreSQL server.

Mosquitto is Debian's package (``scripts/install`` installs it); PostgreSQL is the real server
bundled in the ``pgserver`` wheel. Each starts on loopback in a temporary directory and is
stopped when the test (or session) ends.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pgserver.postgres_server import PostgresServer, get_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass
class Mosquitto:
    """A Mosquitto broker with persistence, which a test may stop and start again."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # As root Mosquitto would drop to user mosquitto, which cannot write in a test's
            # private temporary directory: no log, and no persistence across a restart.
            f"{'user root' if os.geteuid() == 0 else ''}\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "max_queued_messages 100000\n"
            f"log_dest file {self.directory}/mosquitto.log\n"
        )
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)])
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run scripts/install (it apt-installs it)")
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.directory.mkdir()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Not under pytest's tmp_path: as root, pgserver runs postgres as its own user, and every
    # pytest session resets /tmp/pytest-of-root to mode 0700, which would lock that user out.
    directory = Path(tempfile.mkdtemp(prefix="tracker-test-pg-"))
    server = get_server(directory, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A URL to a fresh, empty database on the session's PostgreSQL server."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f"CREATE DATABASE {name};")
    uri: str = postgres_server.get_uri(name)
    return uri
