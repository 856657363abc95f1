"""The websocket adapter of the live feed: `/ws/live`, a thin shell around `tracker.live.hub`.

Protocol
--------
Connect to ``/ws/live``, optionally with a subscription in the query string::

    /ws/live?routes=L7,L12&bbox=-7.70,33.50,-7.50,33.65     (min_lon,min_lat,max_lon,max_lat)

No ``routes`` means every route, no ``bbox`` the whole network; both given means both must hold.
An invalid query string gets one ``{"type": "error", "detail": ...}`` message and a close with
code 1008. The server then sends (text frames, JSON, see `tracker.live.hub` for the fields)::

    {"type": "snapshot", "server_time_s": ..., "vehicles": [...], "removed": []}   first
    {"type": "update",   "server_time_s": ..., "vehicles": [...], "removed": [...]} then, at most
                                                                                    one per tick

The client may change its subscription at any time by sending::

    {"subscribe": {"routes": ["L7"] | null, "bbox": [min_lon, min_lat, max_lon, max_lat] | null}}

and gets a fresh snapshot of the new view (replace what is shown); an invalid request, or more
than the hub's `max_subscribes_per_minute` changes (30), gets an error message and the
connection and old subscription stay.

An operator's connection (a session cookie from ``/login`` whose page is of this site, or
``Authorization: Bearer`` with an API token, see `tracker.api.auth`) also gets the operations
alerts (``{"type": "alerts", ...}``); a rider's does not. One address may hold at most the hub's
`max_clients_per_address` connections (50) at once: one more gets an error message and a close
with code 1008. A client that reads nothing for the
hub's `stuck_after_s` while updates pile up is closed with code 1008 ("too slow ..."); when the
server shuts down, clients are closed with 1001.

What the app must provide
-------------------------
``app.state.hub``: the `Hub`, made and run by the app's lifespan, for example::

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = Hub(tick_s=settings.live_tick_s)
        app.state.hub = hub
        async with asyncio.TaskGroup() as tasks:
            ticking = tasks.create_task(hub.run())
            yield
            ticking.cancel()  # run() then closes every client with 1001

and ``app.include_router(tracker.live.ws.router)``. To tell operators' connections from
riders', ``app.state.store`` too (the accounts' `Store`); a connection that sends no
credentials never needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.websockets import WebSocketState

from tracker.api.auth import caller_of
from tracker.errors import StoreError
from tracker.live.hub import (
    Client,
    ClientClosedError,
    Hub,
    Subscription,
    SubscriptionError,
    TooManyClientsError,
)

logger = logging.getLogger(__name__)

CLOSE_INVALID_SUBSCRIPTION = 1008  # policy violation: the query string asked for nonsense
CLOSE_TOO_MANY = 1008  # policy violation: the address holds the most connections one may
CLOSE_TIMEOUT_S = 2.0  # how long a close may wait on a peer that does not read
MAX_REQUEST_CHARS = 65536
SUBSCRIBE_EXAMPLE = (
    '{"subscribe": {"routes": ["L7"], "bbox": [min_lon, min_lat, max_lon, max_lat]}}'
)
QUERY_EXAMPLE = "?routes=L7,L12&bbox=min_lon,min_lat,max_lon,max_lat"


class _SubscribeFields(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    routes: list[str] | None = None
    bbox: list[float] | None = None


class _ClientRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscribe: _SubscribeFields


def subscription_from_query(params: Iterable[tuple[str, str]]) -> Subscription:
    """The subscription in a query string's ``(key, value)`` pairs; raises `SubscriptionError`.

    ``routes`` may be repeated (``routes=A&routes=B`` is ``routes=A,B``).
    """
    routes: list[str] | None = None
    bbox: list[float] | None = None
    for key, value in params:
        if key == "routes":
            routes = (routes or []) + [r.strip() for r in value.split(",")]
        elif key == "bbox":
            if bbox is not None:
                raise SubscriptionError(f"bbox is given twice; give one: {QUERY_EXAMPLE}")
            try:
                bbox = [float(x) for x in value.split(",")]
            except ValueError:
                raise SubscriptionError(
                    f"bbox {value!r} is not 4 numbers; give {QUERY_EXAMPLE}"
                ) from None
        else:
            raise SubscriptionError(
                f"unknown query parameter {key!r}; the live feed takes {QUERY_EXAMPLE}"
            )
    return Subscription.of(routes=routes, bbox=bbox)


def subscription_from_request(text: str) -> Subscription:
    """The subscription in a client's JSON request; raises `SubscriptionError`."""
    if len(text) > MAX_REQUEST_CHARS:
        raise SubscriptionError(f"request of {len(text)} characters; at most {MAX_REQUEST_CHARS}")
    try:
        request = _ClientRequest.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'request'}: {problem['msg']}"
            for problem in error.errors(include_url=False)
        )
        raise SubscriptionError(f"{problems}; send {SUBSCRIBE_EXAMPLE}") from None
    return Subscription.of(routes=request.subscribe.routes, bbox=request.subscribe.bbox)


def error_message(detail: str) -> str:
    return json.dumps({"type": "error", "detail": detail}, separators=(",", ":"))


async def _is_operator(websocket: WebSocket) -> bool:
    """Whether the connection is a logged-in operator's. A session cookie counts only when the
    page that opened the socket is of this site (its Origin's host is the Host): a browser sends
    the cookie of this site from any page, so another site's page must not get the alerts
    through it."""
    try:
        caller = await caller_of(websocket)
    except StoreError as error:
        logger.warning("live connection taken as a rider's: the accounts cannot be read: %s", error)
        return False
    if caller is None:
        return False
    if caller.via == "session":
        origin = websocket.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != websocket.headers.get("host"):
            return False
    return True


async def _refuse(
    websocket: WebSocket, peer: str, error: Exception, code: int, reason: str
) -> None:
    logger.info("live connection from %s refused: %s", peer, error)
    try:
        await websocket.send_text(error_message(str(error)))
        await websocket.close(code, reason)
    except WebSocketDisconnect:
        pass  # it left already


async def websocket_live(websocket: WebSocket, hub: Hub) -> None:
    """Serve one live connection until either side ends it."""
    await websocket.accept()
    peer = f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"
    try:
        subscription = subscription_from_query(websocket.query_params.multi_items())
    except SubscriptionError as error:
        await _refuse(websocket, peer, error, CLOSE_INVALID_SUBSCRIPTION,
                      "invalid subscription in the URL")  # fmt: skip
        return
    if await _is_operator(websocket):
        subscription = dataclasses.replace(subscription, operator=True)
    try:
        client = hub.connect(
            subscription, address=websocket.client.host if websocket.client else None
        )
    except TooManyClientsError as error:
        await _refuse(websocket, peer, error, CLOSE_TOO_MANY, "too many connections")
        return
    logger.info("live client %d connected from %s (%s)", client.id, peer, subscription.describe())
    send_lock = asyncio.Lock()  # the sender and the receiver's error replies share the socket
    try:
        async with asyncio.TaskGroup() as tasks:
            sender = tasks.create_task(_send_messages(websocket, hub, client, send_lock))
            receiver = tasks.create_task(_receive_requests(websocket, hub, client, send_lock))
            await client.wait_closed()  # by the hub, or by a task above when the peer left
            sender.cancel()
            receiver.cancel()
        if client.close_code is not None:
            await _close(websocket, client.close_code, client.close_reason)
    finally:
        hub.disconnect(client)
        logger.info(
            "live client %d disconnected (%s): %d messages sent, %d intermediate states dropped",
            client.id,
            "peer left" if client.close_code is None else client.close_reason,
            client.messages_sent,
            client.dropped_intermediate,
        )


async def _send_messages(
    websocket: WebSocket, hub: Hub, client: Client, send_lock: asyncio.Lock
) -> None:
    """The connection's sender: the client's messages, one at a time, in order."""
    try:
        while True:
            message = await client.next_message()
            async with send_lock:
                await websocket.send_text(message)
    except ClientClosedError:
        return
    except WebSocketDisconnect:
        hub.disconnect(client)


async def _receive_requests(
    websocket: WebSocket, hub: Hub, client: Client, send_lock: asyncio.Lock
) -> None:
    """The connection's receiver: subscription changes, until the peer leaves."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text: str | None = message.get("text")
            if text is None:
                detail = f"send requests as JSON text frames, not binary: {SUBSCRIBE_EXAMPLE}"
            else:
                try:
                    subscription = subscription_from_request(text)
                except SubscriptionError as error:
                    detail = str(error)
                else:
                    try:
                        client.resubscribe(subscription)
                    except SubscriptionError as error:
                        detail = str(error)
                    else:
                        logger.debug("live client %d now %s", client.id, subscription.describe())
                        continue
            async with send_lock:
                await websocket.send_text(error_message(detail))
    except WebSocketDisconnect:
        pass
    hub.disconnect(client)


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    """Close with `code`, unless the peer left already; give up after `CLOSE_TIMEOUT_S`."""
    if (
        websocket.client_state is not WebSocketState.CONNECTED
        or websocket.application_state is not WebSocketState.CONNECTED
    ):
        return
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await websocket.close(code, reason)
    except (TimeoutError, WebSocketDisconnect):
        pass  # a peer that reads nothing, or one that left: the server drops the connection
    except RuntimeError:
        pass  # uvicorn's answer when the peer's own close frame arrived while we waited


def get_hub(websocket: WebSocket) -> Hub:
    """The app's hub, from ``app.state.hub`` (set by the app's lifespan)."""
    hub = getattr(websocket.app.state, "hub", None)
    if not isinstance(hub, Hub):
        raise RuntimeError(
            "app.state.hub is not a tracker.live.hub.Hub: the app's lifespan must create one, "
            "store it as app.state.hub and run hub.run() in its task group"
        )
    return hub


HubDep = Annotated[Hub, Depends(get_hub)]

router = APIRouter()


@router.websocket("/ws/live")
async def live(websocket: WebSocket, hub: HubDep) -> None:
    """The live vehicle feed; see this module's docstring for the protocol."""
    await websocket_live(websocket, hub)
