"""A real tracker fed by the simulator, and a real Chromium driven by Playwright.

The tracker is `tracker demo` on the Cairns feed (schedule-based: delays, stops, next
departures) against the test session's real Mosquitto and PostgreSQL, so the pages see what
users see. A second one, `corridor` (`tests.browser.corridor`: a timetabled corridor and a
frequency line with a cancelled trip, a bus that stops reporting and a detour, whose ground
truth it writes), serves the tests of the live intelligence (predictions, headways, alerts), on
the same broker under its own topics and in its own database. Chromium is Debian's package
(`scripts/install` installs it), launched through Playwright's `executable_path` because
Playwright cannot download browsers here.
Screenshots go to `test-artifacts/screenshots/`.

The browser lives in the session's event loop, so every browser test module says
``pytestmark = pytest.mark.asyncio(loop_scope="session")``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pgserver.postgres_server import PostgresServer
from playwright.async_api import Browser, Page, async_playwright

from tests.integration.servers import Mosquitto, free_port, postgres_server, wait_for_port
from tracker.api.auth import SESSION_COOKIE
from tracker.demo import DEMO_OPERATOR as OPERATOR

__all__ = ["postgres_server"]  # the session's PostgreSQL, shared with tests/integration

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT.parent / "shared" / "data"
FEED = SHARED_DATA / "static" / "cairns.zip"
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The tests poll these trackers far faster than a rider would (tests/unit/test_ratelimit.py and
# tests/integration/test_auth.py test the limit): no limit on requests.
TRACKER_ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TRACKER_RATE_LIMIT": "off"}
STARTUP_S = 60.0
CORRIDOR_MORNING_S = 240.0  # its accelerated morning, until its clock slows down (about 45 s)


@dataclass(frozen=True)
class Tracker:
    """A running tracker and its operator's password. The tests' own API calls go as that
    operator (a session it logs in to on first need), and `log_in` gives a page the session."""

    url: str
    process: subprocess.Popen[bytes]
    password: str
    _session: dict[str, str] = field(default_factory=dict)  # its cookie and CSRF token

    def session(self) -> tuple[str, str]:
        """The operator's session cookie and CSRF token (`POST /api/login` the first time)."""
        if not self._session:
            login = json.dumps({"name": OPERATOR, "password": self.password}).encode()
            request = urllib.request.Request(
                self.url + "/api/login", data=login, method="POST",
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=10) as response:
                cookie = SimpleCookie(response.headers["Set-Cookie"])[SESSION_COOKIE].value
                self._session.update(cookie=cookie, csrf=json.loads(response.read())["csrf_token"])
        return self._session["cookie"], self._session["csrf"]

    def send(self, method: str, path: str) -> object:
        """`method` `path` as the operator (a write carries the CSRF token); its JSON answer."""
        cookie, csrf = self.session()
        headers = {"Cookie": f"{SESSION_COOKIE}={cookie}", "X-CSRF-Token": csrf}
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def get(self, path: str) -> object:
        return self.send("GET", path)

    async def log_in(self, page: Page) -> None:
        """Give `page` the operator's session, as if it had logged in on /login."""
        cookie, _ = self.session()
        await page.context.add_cookies([{"name": SESSION_COOKIE, "value": cookie, "url": self.url}])


def printed_password(log: Path, timeout_s: float) -> str:
    """The operator's password that `tracker demo` prints in its banner, read from its log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = re.search(rb"with the password (\S+) \(made for this run\)", log.read_bytes())
        if found:
            return found.group(1).decode()
        time.sleep(0.2)
    pytest.fail(f"tracker demo printed no operator password: see {log}")


@pytest.fixture(scope="session")
def session_mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path_factory.mktemp("browser-mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tracker(
    session_mosquitto: Mosquitto,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tracker]:
    """`tracker demo` on Cairns with simulated buses, on this session's broker and database."""
    postgres_server.psql("CREATE DATABASE browser_tests;")
    port = free_port()
    log_path = tmp_path_factory.mktemp("tracker") / "tracker.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tracker",
            "demo",
            "--gtfs",
            str(FEED),
            "--port",
            str(port),
            "--vehicles",
            "1000",
            "--date",
            "20141218",
            "--start",
            "08:00",
            "--broker-url",
            session_mosquitto.url,
            "--database-url",
            postgres_server.get_uri("browser_tests"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=TRACKER_ENV,
    )
    try:
        wait_for_port(port, STARTUP_S)
        running = Tracker(f"http://127.0.0.1:{port}", process, printed_password(log_path, 10))
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:  # wait for buses on the map
            vehicles = running.get("/api/vehicles")
            assert isinstance(vehicles, dict)
            if vehicles["count"] >= 5:
                break
            time.sleep(0.5)
        else:
            pytest.fail("no simulated bus reached the tracker")
        yield running
    finally:
        stop(process)
        log.close()


@dataclass(frozen=True)
class Corridor:
    """The corridor tracker, and its truth.json: ``slow_at_s``, ``open_until_s`` and
    ``truth`` (rows of `simulator.scenarios.ScenarioTruth` as dicts)."""

    tracker: Tracker
    truth: dict[str, Any]

    @property
    def url(self) -> str:
        return self.tracker.url

    def scenario(self, kind: str) -> dict[str, Any]:
        """The truth row of a scenario ("cancelled-trip", "stop-reporting", "detour")."""
        rows: list[dict[str, Any]] = self.truth["truth"]
        return next(row for row in rows if row["kind"] == kind)

    def now_s(self) -> float:
        config = self.tracker.get("/api/config")
        assert isinstance(config, dict)
        now: float = config["now_s"]
        return now


@pytest.fixture(scope="session")
def corridor(
    session_mosquitto: Mosquitto,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Corridor]:
    """`python -m tests.browser.corridor` on this session's broker and a database of its own,
    once its clock has slowed down to real time (its alerts are open then)."""
    postgres_server.psql("CREATE DATABASE browser_corridor;")
    folder = tmp_path_factory.mktemp("corridor")
    port = free_port()
    log = (folder / "corridor.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.browser.corridor",
            "--folder",
            str(folder),
            "--port",
            str(port),
            "--broker-url",
            session_mosquitto.url,
            "--database-url",
            postgres_server.get_uri("browser_corridor"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=TRACKER_ENV,
    )
    try:
        wait_for_port(port, STARTUP_S)
        running = Corridor(
            Tracker(
                f"http://127.0.0.1:{port}", process, (folder / "operator-password").read_text()
            ),
            json.loads((folder / "truth.json").read_text()),  # written before it serves
        )
        deadline = time.monotonic() + CORRIDOR_MORNING_S
        while running.now_s() < running.truth["slow_at_s"]:
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"the corridor tracker's morning did not reach its end: see {log.name}")
            time.sleep(0.5)
        yield running
    finally:
        stop(process)
        log.close()


@pytest_asyncio.fixture(loop_scope="session", scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: run scripts/install (it apt-installs chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    opened = await context.new_page()
    try:
        yield opened
    finally:
        await context.close()


def stop(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops the tracker; killed if it has not ended in 30 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"
