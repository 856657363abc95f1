"""`tracker demo` as a user runs it (the README's `scripts/tracker demo`): one command starts the
embedded broker, the embedded PostgreSQL, the simulator and the map; Ctrl-C stops all of it.

The demo runs as a subprocess in a session of its own, and Ctrl-C is what a terminal sends: SIGINT
to the whole foreground process group (the demo and its simulator). Its temporary directory
(`TMPDIR`) is the test's own, so that its PostgreSQL, which runs detached from the demo's process
tree, can be found by its data directory.

Processes are listed with psutil, which the project gets through pgserver and amqtt.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import connect

from tests.integration.servers import free_port
from tests.processes import alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # a cold start builds the feed's network cache
MOVING_TIMEOUT_S = 40.0  # the demo's buses report every 10 s
STOP_TIMEOUT_S = 20.0


@pytest.fixture
def scratch() -> Iterator[Path]:
    """The demo's TMPDIR. Not under pytest's tmp_path: as root, pgserver runs postgres as its
    own user, which pytest's private /tmp/pytest-of-root would lock out."""
    path = Path(tempfile.mkdtemp(prefix="tracker-e2e-demo-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def wait_until_healthy(base: str, demo: subprocess.Popen[bytes], log: Path) -> float:
    """Seconds until /healthz answers 200; fails if the demo exits or takes too long."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=1.0) as http:
        while time.monotonic() - started < START_TIMEOUT_S:
            assert demo.poll() is None, f"the demo exited early:\n{log.read_text()}"
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no /healthz in {START_TIMEOUT_S} s:\n{log.read_text()}")


async def a_moving_bus(url: str) -> tuple[str, int]:
    """Read /ws/live until two messages show one vehicle at two positions: (its id, how many
    vehicles the snapshot held)."""
    seen: dict[str, tuple[float, float]] = {}
    async with connect(url) as ws:
        snapshot: dict[str, Any] = json.loads(await ws.recv())
        assert snapshot["type"] == "snapshot"
        message = snapshot
        async with asyncio.timeout(MOVING_TIMEOUT_S):
            while True:
                for vehicle in message["vehicles"]:
                    position = (vehicle["lat"], vehicle["lon"])
                    before = seen.setdefault(vehicle["vehicle_id"], position)
                    if before != position:
                        return vehicle["vehicle_id"], len(snapshot["vehicles"])
                message = json.loads(await ws.recv())
                assert message["type"] in ("update", "alerts", "revised")
                message.setdefault("vehicles", [])  # the others hold no positions


def demo_processes(demo: psutil.Process, scratch: Path) -> list[psutil.Process]:
    """The demo's descendants (the simulator), and the PostgreSQL processes of its data
    directory: those are detached (pg_ctl daemonises them), so they are found by the path."""
    found = {p.pid: p for p in demo.children(recursive=True)}
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(str(scratch) in part for part in cmdline):
            found[process.pid] = process
            for child in process.children(recursive=True):  # the postmaster's workers
                found[child.pid] = child
    return list(found.values())


def start_demo(
    scratch: Path, log: Path, port: int, *, vehicles: int, own_session: bool
) -> subprocess.Popen[bytes]:
    """`tracker demo` as a user runs it, its temporary files in `scratch`, its output in `log`."""
    command = [sys.executable, "-m", "tracker", "demo", "--port", str(port),
               "--vehicles", str(vehicles)]  # fmt: skip
    with log.open("wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def started_processes(
    demo: subprocess.Popen[bytes], scratch: Path
) -> tuple[list[psutil.Process], list[str]]:
    """The demo's processes and their command lines: the simulator and PostgreSQL among them."""
    tree = demo_processes(psutil.Process(demo.pid), scratch)
    commands = [" ".join(p.cmdline()) for p in tree]
    assert any("simulator" in c for c in commands), commands
    assert any("postgres" in c for c in commands), commands
    return tree, commands


def assert_stopped_with_all_it_started(
    code: int, log: Path, tree: list[psutil.Process], commands: list[str], scratch: Path
) -> None:
    output_text = log.read_text()
    assert code == 0, output_text
    assert "demo stopped" in output_text
    left = [command for p, command in zip(tree, commands, strict=True) if alive(p)]
    assert left == []
    assert list(scratch.glob("bus-tracker-demo-*")) == []  # its database files are gone too


async def wait_until_all_it_started_is_gone(
    tree: list[psutil.Process], commands: list[str], scratch: Path
) -> tuple[list[str], list[Path]]:
    """After the demo died: wait (up to STOP_TIMEOUT_S) until none of its processes runs and
    its temporary directory is gone; what is left then (both empty if all went)."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while True:
        left = [command for p, command in zip(tree, commands, strict=True) if alive(p)]
        folders = list(scratch.glob("bus-tracker-demo-*"))
        if (not left and not folders) or time.monotonic() > deadline:
            return left, folders
        await asyncio.sleep(0.1)


async def test_the_demo_shows_moving_buses_and_ctrl_c_stops_everything(scratch: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = scratch / "demo.log"
    # its own process group, as a shell's foreground job
    demo = start_demo(scratch, log, port, vehicles=200, own_session=True)
    try:
        startup_s = await wait_until_healthy(base, demo, log)
        started = time.monotonic()
        vehicle_id, shown = await a_moving_bus(f"ws://127.0.0.1:{port}/ws/live")
        moving_s = time.monotonic() - started

        async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
            page = await http.get("/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            # Everything the page loads comes from the demo itself: no CDN.
            assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert "/vendor/leaflet/leaflet.js" in assets
            for asset in assets:
                if asset.startswith(("data:", "#")):
                    continue
                assert asset.startswith("/"), f"the map page loads {asset} from elsewhere"
                assert not asset.startswith("//"), f"the map page loads {asset} from elsewhere"
                response = await http.get(asset)
                assert response.status_code == 200, asset
            leaflet = await http.get("/vendor/leaflet/leaflet.js")
            assert "javascript" in leaflet.headers["content-type"]
            assert "Leaflet" in leaflet.text[:2000]

        tree, commands = started_processes(demo, scratch)

        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C in the demo's terminal
        stopping = time.monotonic()
        code = await asyncio.to_thread(demo.wait, STOP_TIMEOUT_S)
        stop_s = time.monotonic() - stopping
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert_stopped_with_all_it_started(code, log, tree, commands, scratch)
    print(
        f"\ndemo: healthy after {startup_s:.1f} s, {shown} buses in the first snapshot, "
        f"{vehicle_id} moved within {moving_s:.1f} s, stopped {stop_s:.1f} s after Ctrl-C"
    )


async def test_sigterm_stops_the_demo_and_all_it_started(scratch: Path) -> None:
    # `kill`, `timeout` and service managers send SIGTERM to the demo's process alone.
    port = free_port()
    log = scratch / "demo.log"
    demo = start_demo(scratch, log, port, vehicles=50, own_session=False)
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}", demo, log)
        tree, commands = started_processes(demo, scratch)
        demo.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(demo.wait, STOP_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert_stopped_with_all_it_started(code, log, tree, commands, scratch)


@pytest.mark.parametrize("whom", ["process group", "demo alone"])
async def test_sigkill_of_the_demo_leaves_no_process_and_no_files(scratch: Path, whom: str) -> None:
    # A service manager's last word (SIGTERM, then SIGKILL a few seconds later, to the process
    # group), or `kill -9` of the demo. Its PostgreSQL is detached from the group and would run
    # on (the simulator too, when the demo alone dies), holding the temporary directory.
    port = free_port()
    log = scratch / "demo.log"
    own_session = whom == "process group"
    demo = start_demo(scratch, log, port, vehicles=50, own_session=own_session)
    try:
        await wait_until_healthy(f"http://127.0.0.1:{port}", demo, log)
        tree, commands = started_processes(demo, scratch)
        assert any("tracker.watchdog" in c for c in commands), commands
        killed = time.monotonic()
        if own_session:
            os.killpg(demo.pid, signal.SIGKILL)
        else:
            demo.kill()
        code = await asyncio.to_thread(demo.wait, STOP_TIMEOUT_S)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert code == -signal.SIGKILL
    left, folders = await wait_until_all_it_started_is_gone(tree, commands, scratch)
    gone_s = time.monotonic() - killed
    output_text = log.read_text()
    assert left == [], output_text
    assert folders == [], output_text
    assert "its owner ended, stopping" in output_text  # the watchdog did it
    print(f"\nSIGKILL of the {whom}: its {len(tree)} processes and files gone in {gone_s:.1f} s")
