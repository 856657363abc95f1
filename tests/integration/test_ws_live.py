"""The `/ws/live` endpoint end to end: a real uvicorn server and real `websockets` clients.

The server runs in-process (a task of the test's event loop), so the test publishes into the
hub directly and the hub's tick runs for real. All times derive from TICK_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.integration.test_api import TEST_PASSWORD_HASH, account_token
from tests.unit.test_hub import detour_on
from tracker import accounts
from tracker.accounts import Role
from tracker.api.auth import SESSION_COOKIE
from tracker.live.hub import CLOSE_TOO_SLOW, Hub, Subscription, SubscriptionError
from tracker.live.vehicle import LiveVehicle
from tracker.live.ws import get_hub, router, subscription_from_query, subscription_from_request
from tracker.store import accounts as stored_accounts
from tracker.store.postgres import Store, open_store

TICK_S = 0.05  # the one time scale of these tests
RECEIVE_TIMEOUT_S = 40 * TICK_S
T0 = 1771257600.0
BOX = [-7.70, 33.50, -7.50, 33.65]  # holds lon -7.6, lat 33.57


def bus(
    vehicle_id: str, *, lon: float = -7.6, lat: float = 33.57, route_id: str = "R1", t: float = T0
) -> LiveVehicle:
    return LiveVehicle(vehicle_id, t, lat, lon, state="in_service", route_id=route_id)


def make_app(hub: Hub, store: Store | None = None) -> FastAPI:
    """The smallest app with the live feed: the hub in app.state, run by the lifespan, and the
    accounts' store if given (without one, every client is a rider's)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.hub = hub
        if store is not None:
            app.state.store = store
        async with asyncio.TaskGroup() as tasks:
            ticking = tasks.create_task(hub.run())
            yield
            ticking.cancel()

    app = FastAPI(lifespan=lifespan)
    app.include_router(router)
    return app


@asynccontextmanager
async def serving(
    hub: Hub, *, send_buffer_bytes: int | None = None, store: Store | None = None
) -> AsyncIterator[str]:
    """Serve `make_app(hub)` with uvicorn on a free loopback port; yield its ws://…/ws/live.

    `send_buffer_bytes` fixes the kernel send buffer of the server's connections (they inherit
    the listener's), so that a client that does not read pushes back within a few messages
    instead of after the megabytes of an autotuned buffer.
    """
    listener = socket.socket()
    if send_buffer_bytes is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        make_app(hub, store), log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    serve = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                assert not serve.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/ws/live"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serve, 15)
        listener.close()


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S)
    assert isinstance(message, str), "the live feed sends text frames"
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def read_until_closed(ws: ClientConnection) -> ConnectionClosed:
    """Read and drop messages until the connection closes; how it closed."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), RECEIVE_TIMEOUT_S)
    except ConnectionClosed as closed:
        return closed


def ids(message: dict[str, Any]) -> list[str]:
    return [v["vehicle_id"] for v in message["vehicles"]]


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + RECEIVE_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"waited {RECEIVE_TIMEOUT_S} s for {what}"
        await asyncio.sleep(TICK_S / 5)


# -- the wire edge, without a server ----------------------------------------------------------


def test_query_string_subscriptions() -> None:
    assert subscription_from_query([]) == Subscription()
    assert subscription_from_query(
        [("routes", "R1, R2"), ("routes", "R3"), ("bbox", "-7.7,33.5,-7.5,33.65")]
    ) == Subscription.of(routes=["R1", "R2", "R3"], bbox=BOX)
    for query, fragment in [
        ([("route", "R1")], "unknown query parameter 'route'"),
        ([("bbox", "1,2,x,4")], "bbox '1,2,x,4' is not 4 numbers"),
        ([("bbox", "1,2,3")], "bbox has 3 numbers"),
        ([("routes", "")], "a route id is empty"),
    ]:
        with pytest.raises(SubscriptionError, match=fragment):
            subscription_from_query(query)


def test_json_subscription_requests() -> None:
    request = json.dumps({"subscribe": {"routes": ["R1"], "bbox": BOX}})
    assert subscription_from_request(request) == Subscription.of(routes=["R1"], bbox=BOX)
    assert subscription_from_request('{"subscribe": {}}') == Subscription()
    assert subscription_from_request('{"subscribe": {"routes": null}}') == Subscription()
    for text, fragment in [
        ("not json", "Invalid JSON"),
        ('{"subscribe": {"bbox": [1, 2]}}', "bbox has 2 numbers"),
        ('{"subscribe": {"bbox": ["1", 2, 3, 4]}}', "subscribe.bbox.0"),
        ('{"subscribe": {"route": ["R1"]}}', "subscribe.route: Extra inputs"),
        ('{"unsubscribe": true}', "subscribe: Field required"),
    ]:
        with pytest.raises(SubscriptionError, match=fragment):
            subscription_from_request(text)


def test_a_missing_hub_names_the_fix() -> None:
    app = FastAPI()
    websocket = WebSocket({"type": "websocket", "app": app}, receive=_never, send=_never)
    with pytest.raises(RuntimeError, match=r"app\.state\.hub is not a tracker\.live\.hub\.Hub"):
        get_hub(websocket)
    app.state.hub = hub = Hub()
    assert get_hub(websocket) is hub


async def _never(*args: Any) -> Any:
    raise AssertionError("not called")


# -- a real server ----------------------------------------------------------------------------


@pytest.mark.integration
async def test_snapshot_updates_resubscription_and_errors() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus("a"), bus("b", route_id="R2"), bus("c", lon=-7.0)])
    async with serving(hub) as url:
        await until(lambda: hub.stats().vehicles == 3, "the first tick")
        async with connect(f"{url}?routes=R1") as ws:
            snapshot = await receive(ws)
            assert (snapshot["type"], ids(snapshot), snapshot["removed"]) == (
                "snapshot",
                ["a", "c"],
                [],
            )

            hub.publish([bus("a", lat=33.58, t=T0 + 1), bus("b", route_id="R2", t=T0 + 1)])
            update = await receive(ws)
            assert update["type"] == "update"
            assert update["vehicles"] == [bus("a", lat=33.58, t=T0 + 1).to_json_dict()]

            await ws.send(json.dumps({"subscribe": {"bbox": BOX}}))
            snapshot = await receive(ws)
            assert (snapshot["type"], ids(snapshot)) == ("snapshot", ["a", "b"])

            await ws.send(json.dumps({"subscribe": {"bbox": [1, 2]}}))
            error = await receive(ws)
            assert error["type"] == "error"
            assert "bbox has 2 numbers; give 4" in error["detail"]
            await ws.send(b"\x00binary")
            assert "not binary" in (await receive(ws))["detail"]

            # still connected, still on the bbox subscription
            hub.publish([bus("b", route_id="R2", lon=-7.0, t=T0 + 2), bus("c", t=T0 + 2)])
            update = await receive(ws)
            assert (ids(update), update["removed"]) == (["c"], ["b"])
            assert hub.stats().clients == 1
        await until(lambda: hub.stats().clients == 0, "the hub to forget the client")


@pytest.mark.integration
async def test_an_invalid_query_string_gets_an_error_and_a_close() -> None:
    hub = Hub(tick_s=TICK_S)
    async with serving(hub) as url, connect(f"{url}?bbox=1,2,3") as ws:
        error = await receive(ws)
        assert error == {"type": "error", "detail": error["detail"]}
        assert "bbox has 3 numbers" in error["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert hub.stats().clients == 0


@pytest.mark.integration
async def test_a_client_that_stops_reading_does_not_slow_the_others() -> None:
    stuck_after_s = 10 * TICK_S
    hub = Hub(tick_s=TICK_S, client_queue_size=4, stuck_after_s=stuck_after_s)
    fleet = [f"bus-{i}" for i in range(500)]  # about 100 kB a message: socket buffers fill fast
    async with serving(hub, send_buffer_bytes=65536) as url:
        port = int(url.split(":")[2].split("/")[0])
        # the slow client: small buffers, no compression, and it never reads
        slow_socket = socket.socket()
        slow_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        slow_socket.setblocking(False)
        await asyncio.get_running_loop().sock_connect(slow_socket, ("127.0.0.1", port))
        async with (
            connect(url, sock=slow_socket, max_queue=1, compression=None) as slow,
            connect(url) as fast_1,
            connect(url) as fast_2,
        ):
            arrivals: dict[int, list[float]] = {1: [], 2: []}

            async def read(ws: ClientConnection, key: int) -> None:
                while True:
                    await ws.recv()
                    arrivals[key].append(time.monotonic())

            async def drive() -> None:
                step = 0
                while True:
                    step += 1
                    hub.publish(
                        [bus(v, lat=33.5 + step / 1e4, t=T0 + step) for v in fleet],
                    )
                    await asyncio.sleep(TICK_S)

            async with asyncio.TaskGroup() as tasks:
                readers = [tasks.create_task(read(fast_1, 1)), tasks.create_task(read(fast_2, 2))]
                driver = tasks.create_task(drive())
                started = time.monotonic()
                ticks_before = hub.stats().ticks
                async with asyncio.timeout(20 * stuck_after_s):
                    while hub.stats().disconnected_stuck == 0:
                        await asyncio.sleep(TICK_S)
                stuck_at = time.monotonic()
                await asyncio.sleep(10 * TICK_S)  # and the others go on afterwards
                ticks_in_window = hub.stats().ticks - ticks_before
                driver.cancel()
                for reader in readers:
                    reader.cancel()

            stats = hub.stats()
            assert stuck_at - started >= stuck_after_s
            assert stats.dropped_intermediate > 0  # the slow client's merged states
            assert stats.clients == 2
            # Counted, not timed: the fast clients got a message for most of the hub's ticks.
            for times in arrivals.values():
                assert len(times) >= 0.7 * ticks_in_window

            # the slow client, reading at last, finds the close the hub decided on
            closed = await read_until_closed(slow)
            assert closed.rcvd is not None
            assert closed.rcvd.code == CLOSE_TOO_SLOW
            assert "too slow" in closed.rcvd.reason


# -- who gets what ----------------------------------------------------------------------------


async def session_cookie(store: Store, name: str) -> str:
    """A new session of the account `name` (made if missing), as a Cookie header."""
    if await stored_accounts.password_hash_of(store, name) is None:
        await stored_accounts.create(store, name, Role.OPERATOR, TEST_PASSWORD_HASH)
    token = accounts.new_token()
    await stored_accounts.start_session(store, name, accounts.token_digest(token), "csrf", 600.0)
    return f"{SESSION_COOKIE}={token}"


async def kinds_after_an_alert(
    hub: Hub, connections: dict[str, ClientConnection]
) -> dict[str, list[str]]:
    """Announce a detour on R1 and read every connection for a few ticks: the kinds of message
    each got after its snapshot."""
    for ws in connections.values():
        assert (await receive(ws))["type"] == "snapshot"
    hub.announce([detour_on("R1")])
    await until(lambda: hub.stats().alert_changes_sent >= 2, "the alert to go to the operators")
    hub.publish([bus("a", t=T0 + 1)])  # an update after the alert: everyone gets that one
    got: dict[str, list[str]] = {}
    for who, ws in connections.items():
        kinds: list[str] = []
        while "update" not in kinds:
            kinds.append((await receive(ws))["type"])
        got[who] = sorted(kinds)
    return got


@pytest.mark.integration
async def test_only_operators_get_the_operations_alerts(postgres_url: str) -> None:
    hub = Hub(tick_s=TICK_S)
    async with open_store(postgres_url) as store, serving(hub, store=store) as url:
        token = await account_token(store, "ws-operator", Role.OPERATOR)
        cookie = await session_cookie(store, "ws-operator")
        host = url.removeprefix("ws://").split("/")[0]
        connecting = {
            "rider": {},
            "token": {"Authorization": f"Bearer {token}"},
            "wrong token": {"Authorization": "Bearer bt_wrong"},
            "session": {"Cookie": cookie, "Origin": f"http://{host}"},
            "session from another site": {"Cookie": cookie, "Origin": "https://evil.example"},
        }
        async with contextlib.AsyncExitStack() as stack:
            connections = {
                who: await stack.enter_async_context(connect(url, additional_headers=headers))
                for who, headers in connecting.items()
            }
            got = await kinds_after_an_alert(hub, connections)
    assert got == {
        "rider": ["update"],
        "token": ["alerts", "update"],
        "wrong token": ["update"],
        "session": ["alerts", "update"],
        "session from another site": ["update"],
    }


@pytest.mark.integration
async def test_one_address_gets_at_most_its_share_of_connections() -> None:
    hub = Hub(tick_s=TICK_S, max_clients_per_address=2)
    async with serving(hub) as url, connect(url) as first, connect(url) as second:
        for ws in (first, second):
            assert (await receive(ws))["type"] == "snapshot"
        async with connect(url) as third:
            error = await receive(third)
            assert "at most 2 from one address" in error["detail"]
            closed = await read_until_closed(third)
            assert closed.rcvd is not None
            assert closed.rcvd.code == 1008
        await first.close()
        await until(lambda: hub.stats().clients == 1, "the first client to leave")
        async with connect(url) as fourth:
            assert (await receive(fourth))["type"] == "snapshot"
    assert hub.stats().clients_refused == 1


@pytest.mark.integration
async def test_too_many_subscription_changes_get_an_error_and_the_view_stays() -> None:
    hub = Hub(tick_s=TICK_S, max_subscribes_per_minute=2)
    hub.publish([bus("a"), bus("b", route_id="R2")])
    async with serving(hub) as url:
        await until(lambda: hub.stats().vehicles == 2, "the first tick")
        ws = await connect(url)
        assert ids(await receive(ws)) == ["a", "b"]
        for route in ("R1", "R2"):
            await ws.send(json.dumps({"subscribe": {"routes": [route]}}))
            assert (await receive(ws))["type"] == "snapshot"
        await ws.send(json.dumps({"subscribe": {"routes": ["R1"]}}))
        error = await receive(ws)
        assert error["type"] == "error"
        assert "at most 2" in error["detail"]
        hub.publish([bus("a", t=T0 + 1), bus("b", route_id="R2", t=T0 + 1)])
        assert ids(await receive(ws)) == ["b"]  # still on R2
        await ws.close()
    assert hub.stats().subscribes_refused == 1
