"""Real servers for integration tests: a Mosquitto broker and a PostgreSQL server.

Mosquitto is Debian's package (``scripts/install`` installs it); PostgreSQL is the real server
bundled in the ``pgserver`` wheel. Each starts on loopback in a temporary directory and is
stopped when the test (or session) ends.
"""

from __future__ import annotations

import contextlib
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
from pgserver._commands import POSTGRES_BIN_PATH
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
    """A Mosquitto broker with persistence, which a test may stop and start again; with `tls`,
    a second listener speaks TLS with a certificate for 127.0.0.1 from a CA of its own
    (`ca_file`, made with openssl)."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    tls: bool = False
    tls_port: int = field(default_factory=free_port)
    access: str = "allow_anonymous true\n"  # who may connect: lines of mosquitto.conf

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def start(self) -> None:
        conf = self.directory / "mosquitto.conf"
        tls_listener = ""
        if self.tls:
            self._make_certificates()
            tls_listener = (
                f"listener {self.tls_port} 127.0.0.1\n"
                f"cafile {self.ca_file}\n"
                f"certfile {self.directory / 'server.crt'}\n"
                f"keyfile {self.directory / 'server.key'}\n"
            )
        conf.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"{tls_listener}"
            f"{self.access}"
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
        if self.tls:
            wait_for_port(self.tls_port)

    def _make_certificates(self) -> None:
        """A CA, and a server certificate it signs for 127.0.0.1 (once per directory)."""
        if (self.directory / "server.crt").exists():
            return
        if shutil.which("openssl") is None:
            pytest.fail("openssl is not installed: run scripts/install (it apt-installs it)")

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=self.directory, check=True,
                           capture_output=True)  # fmt: skip

        (self.directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        new_key = ["-newkey", "rsa:2048", "-nodes"]
        openssl("req", "-x509", *new_key, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt",
                "-subj", "/CN=bus tracker test CA")  # fmt: skip
        openssl("req", *new_key, "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1")  # fmt: skip
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", "server.crt",
                "-extfile", "san.ext")  # fmt: skip

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _broker(directory: Path, *, tls: bool) -> Iterator[Mosquitto]:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: run scripts/install (it apt-installs it)")
    broker = Mosquitto(directory, tls=tls)
    broker.directory.mkdir()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    yield from _broker(tmp_path / "mosquitto", tls=False)


@pytest.fixture
def mosquitto_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mosquitto]:
    """A broker with a TLS listener whose CA the clients of the test trust (as a system CA:
    `SSL_CERT_FILE`, which the default TLS context of paho's `tls_set()` reads)."""
    for broker in _broker(tmp_path / "mosquitto", tls=True):
        monkeypatch.setenv("SSL_CERT_FILE", str(broker.ca_file))
        yield broker


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


@dataclass
class OwnPostgres:
    """A PostgreSQL server of one test's own, which the test may stop and start again on the
    same data folder and socket (so the same URL), as a database host going away and coming
    back: for fault tests, which must not stop the session's shared server."""

    server: PostgresServer
    url: str  # of the test's database on it

    def _pg_ctl(self, *args: str) -> None:
        # pgserver's own `pg_ctl` wrapper is made at import time, which mypy cannot see; this is
        # the same binary, run as the same user (pgserver's own user when run as root).
        pg_ctl = str(POSTGRES_BIN_PATH / "pg_ctl")
        subprocess.run([pg_ctl, "-D", str(self.server.pgdata), "-w", *args], check=True,
                       capture_output=True, timeout=60, user=self.server.system_user)  # fmt: skip

    def stop(self) -> None:
        """Stop the server process (`pg_ctl stop -m fast`: open sessions are ended, as when an
        operator or a failover takes the host down); returns once it is gone."""
        self._pg_ctl("-m", "fast", "stop")

    def start(self) -> None:
        """Start it again, with the same options pgserver started it with (its socket folder
        is derived from the data folder, so the URL is the same); returns once it is ready."""
        self.server.ensure_postgres_running()


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A new PostgreSQL server (in a folder of its own) with one empty database, removed after."""
    directory = Path(tempfile.mkdtemp(prefix="tracker-test-own-pg-"))  # not tmp_path: see above
    server = get_server(directory, cleanup_mode="stop")
    try:
        server.psql("CREATE DATABASE tracker;")
        yield OwnPostgres(server, server.get_uri("tracker"))
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
