"""The live broadcast hub: vehicles in, one bounded stream of JSON messages out per client.

The pipeline calls `Hub.publish` with the latest `LiveVehicle` of every vehicle in a batch, and
`Hub.remove` for vehicles that went stale. Nothing is sent then: `Hub.run` ticks every `tick_s`
and, at each tick, gives every client at most one message holding the latest state of each
vehicle that changed since the last tick and matters to its `Subscription`.

How the work and the memory stay bounded, whatever the clients do:

- Clients are grouped by `Subscription` (equal subscriptions, one group). A tick computes one
  change set per group and serialises it once for every client of the group that keeps up.
- Each client has a queue of serialised messages of at most `client_queue_size`. When it is full
  (the client reads slower than the ticks come), the tick merges the change set into the client's
  *pending* dict, vehicle_id → latest state (or removal), instead: intermediate positions are
  dropped and counted, newest wins, and the dict holds at most one entry per vehicle. Once the
  client has read its queue, the pending dict is serialised for it alone (a catch-up message).
- A client that has not read anything for `stuck_after_s` while it had more waiting than its queue
  holds is closed with `CLOSE_TOO_SLOW` and counted; `Client.wait_closed` tells its handler.
- Nothing here awaits a client: `publish`, `remove` and `tick` are synchronous, so the tick loop's
  timing does not depend on any client.

Messages (JSON text, compact)::

    {"type": "snapshot" | "update", "server_time_s": 1764061200.5,
     "vehicles": [LiveVehicle.to_json_dict(), ...], "removed": ["bus-7", ...]}

A snapshot is the whole view of the subscription (the client replaces what it shows); an update
lists the vehicles that changed and the ids that left the view (removed by the pipeline, or moved
out of the bbox or off the subscribed routes). `server_time_s` is the server's clock (epoch
seconds) at the tick whose state the message shows. Both lists are sorted by vehicle id.

Answers revised since the last tick (`Hub.revise`: positions of the last minutes whose trip,
state or service day settled differently, `tracker.core.settle`) come in a message of their own,
for the clients whose subscribed routes include the revised or the original route::

    {"type": "revised", "server_time_s": 1764061200.5,
     "revisions": [{"vehicle_id": "bus-7", "observed_at_s": 1764061080.0, "state": "in_service",
                    "route_id": "R1", "trip_id": "R1-0815", "service_date": "20251125",
                    "delay_s": 412.0}, ...]}

A client whose queue is full misses them (counted in `revisions_dropped`): they concern the
past, and the history API has them.

Operations alerts (bunching, gapping, ghost trips, silent buses, detours: tracker.core.operations)
that opened, changed or closed since the last tick (`Hub.announce`) come likewise, to the
operators' clients (a subscription with ``operator=True``: the websocket sets it for a logged-in
caller, and a client cannot change it by subscribing again) whose subscribed routes include the
alert's route::

    {"type": "alerts", "server_time_s": 1764061200.5,
     "changes": [{"change": "opened", "alert": {"alert_id": "...", "kind": "bunching", ...}}]}

`GET /api/operations/alerts` has the whole list; a client that missed a message (its queue was
full, counted in `alert_changes_dropped`) reads it there.

Limits, each refused with a reason and counted (`HubStats`): at most `max_clients_per_address`
clients at once from one address (`connect` raises `TooManyClientsError`; a whole office behind
one NAT address shares it, so it is generous), and at most `max_subscribes_per_minute`
subscription changes per client (`Client.resubscribe` raises `SubscriptionError`): each one
costs a snapshot.

Everything runs on one event loop: call `publish`, `remove`, `connect` and the client methods from
the loop's thread (from another thread, go through `loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracker.core.model import Match, State
from tracker.core.operations import AlertChange
from tracker.errors import TrackerError
from tracker.live.insight import alert_json
from tracker.live.vehicle import JsonValue, LiveVehicle

logger = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001  # the hub was closed (server shutting down)
CLOSE_TOO_SLOW = 1008  # policy violation: the client did not read its messages for too long
MAX_ROUTES_PER_SUBSCRIPTION = 1000
MAX_CLIENTS_PER_ADDRESS = 50
MAX_SUBSCRIBES_PER_MINUTE = 30
MAX_REVISIONS_PER_TICK = 10_000

BBox = tuple[float, float, float, float]
"""(min_lon, min_lat, max_lon, max_lat) in degrees, edges included."""

Changes = dict[str, LiveVehicle | None]
"""vehicle_id → its latest state, or None when it left the view."""


class SubscriptionError(TrackerError, ValueError):
    """A subscription asked of the live feed is invalid; the message says what to send instead."""


class TooManyClientsError(TrackerError):
    """One address holds the most live clients the hub takes from one address."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which vehicles a client wants: those on `route_ids` (None: any) inside `bbox` (None: any).

    Both given means both must hold. Equal subscriptions share their serialised messages, so
    prefer building them with `Subscription.of`, which normalises its input. `operator`: the
    client is a logged-in operator's, and gets the operations alerts too.
    """

    route_ids: frozenset[str] | None = None
    bbox: BBox | None = None
    operator: bool = False

    def __post_init__(self) -> None:
        if self.route_ids is not None:
            if not self.route_ids:
                raise SubscriptionError(
                    "routes is empty, which would match no vehicle; leave it out (or send null) "
                    "to get every route"
                )
            if len(self.route_ids) > MAX_ROUTES_PER_SUBSCRIPTION:
                raise SubscriptionError(
                    f"{len(self.route_ids)} routes asked; at most {MAX_ROUTES_PER_SUBSCRIPTION} "
                    "are allowed: leave routes out to get every route"
                )
            if "" in self.route_ids:
                raise SubscriptionError("a route id is empty; give route ids such as 'L7'")
        if self.bbox is not None:
            _check_bbox(self.bbox)

    @classmethod
    def of(
        cls, *, routes: Iterable[str] | None = None, bbox: Sequence[float] | None = None
    ) -> Subscription:
        """A subscription from loose input: any iterable of route ids, any 4 numbers as bbox."""
        if isinstance(routes, str):
            raise SubscriptionError(f"routes {routes!r} is a string; give a list of route ids")
        route_ids = None if routes is None else frozenset(r.strip() for r in routes)
        box: BBox | None = None
        if bbox is not None:
            if len(bbox) != 4:
                raise SubscriptionError(
                    f"bbox has {len(bbox)} numbers; give 4: min_lon, min_lat, max_lon, max_lat"
                )
            box = (float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))
        return cls(route_ids=route_ids, bbox=box)

    def matches(self, vehicle: LiveVehicle) -> bool:
        """Whether `vehicle` belongs to this view."""
        if self.route_ids is not None and vehicle.route_id not in self.route_ids:
            return False
        if self.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.bbox
            return min_lon <= vehicle.lon <= max_lon and min_lat <= vehicle.lat <= max_lat
        return True

    def describe(self) -> str:
        """A short text for logs."""
        routes = "any" if self.route_ids is None else ",".join(sorted(self.route_ids))
        bbox = "any" if self.bbox is None else ",".join(f"{x:g}" for x in self.bbox)
        return f"routes={routes} bbox={bbox}" + (" operator" if self.operator else "")


def _check_bbox(bbox: BBox) -> None:
    min_lon, min_lat, max_lon, max_lat = bbox
    if not all(math.isfinite(x) for x in bbox):
        raise SubscriptionError(f"bbox {list(bbox)} holds a number that is not finite")
    for name, lon in (("min_lon", min_lon), ("max_lon", max_lon)):
        if not -180.0 <= lon <= 180.0:
            raise SubscriptionError(f"bbox {name} {lon} is outside -180..180")
    for name, lat in (("min_lat", min_lat), ("max_lat", max_lat)):
        if not -90.0 <= lat <= 90.0:
            raise SubscriptionError(f"bbox {name} {lat} is outside -90..90")
    if min_lon > max_lon or min_lat > max_lat:
        raise SubscriptionError(
            f"bbox {list(bbox)} is not min_lon, min_lat, max_lon, max_lat with min <= max "
            "(a box across the 180th meridian is not supported: leave bbox out there)"
        )


class ClientClosedError(Exception):
    """Raised by `Client.next_message` once the client is closed.

    `code` is the websocket close code the hub chose (`CLOSE_TOO_SLOW`, `CLOSE_GOING_AWAY`), or
    None when the client was disconnected by its own handler.
    """

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"live client closed ({code}): {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HubStats:
    """Counters of a hub since it was made (`clients`, `subscriptions`, `vehicles`: now)."""

    clients: int
    subscriptions: int  # distinct subscriptions, i.e. groups sharing their messages
    vehicles: int
    ticks: int
    ticks_skipped: int  # ticks not run on time because the loop was late
    tick_errors: int
    tick_duration_last_s: float
    tick_duration_max_s: float
    messages_sent: int  # messages handed to clients by `next_message`
    serialisations_last_tick: int  # shared update messages serialised at the last tick
    serialisations_total: int
    snapshot_serialisations: int
    catch_up_serialisations: int  # per-client messages of merged pending changes
    dropped_intermediate: int  # vehicle states overwritten in a slow client's pending dict
    disconnected_stuck: int
    published_ignored: int  # rejected, undrawable or older than the state already held
    revisions_sent: int  # revised answers handed to clients (one per client each)
    revisions_dropped: int  # revised answers a client missed (its queue was full), or too many
    alert_changes_sent: int  # operations alerts opened, updated or closed, handed to clients
    alert_changes_dropped: int
    clients_refused: int  # connections over `max_clients_per_address`
    subscribes_refused: int  # subscription changes over `max_subscribes_per_minute`


class Client:
    """One subscriber: a bounded queue of serialised messages plus a pending dict of changes.

    Made by `Hub.connect`; read with `next_message` from exactly one task.
    """

    __slots__ = (
        "_address",
        "_blocked_since",
        "_closed",
        "_closed_event",
        "_hub",
        "_pending",
        "_queue",
        "_subscribed_at",
        "_subscription",
        "_wakeup",
        "close_code",
        "close_reason",
        "dropped_intermediate",
        "id",
        "messages_sent",
    )

    def __init__(
        self, hub: Hub, client_id: int, subscription: Subscription, address: str | None
    ) -> None:
        self._hub = hub
        self.id = client_id
        self._subscription = subscription
        self._address = address  # counted against its address's limit until it disconnects
        self._subscribed_at: deque[float] = deque()  # monotonic s of the last minute's changes
        self._queue: deque[str] = deque()
        self._pending: Changes = {}
        self._blocked_since: float | None = None  # monotonic s of the first merge since a read
        self._wakeup = asyncio.Event()
        self._closed = False
        self._closed_event = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.messages_sent = 0
        self.dropped_intermediate = 0

    def __repr__(self) -> str:
        return f"<live Client {self.id} {self._subscription.describe()}>"

    @property
    def subscription(self) -> Subscription:
        return self._subscription

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def queue_length(self) -> int:
        """Serialised messages waiting (at most the hub's `client_queue_size`)."""
        return len(self._queue)

    @property
    def pending_count(self) -> int:
        """Vehicles with a change merged while the queue was full (at most one entry each)."""
        return len(self._pending)

    def resubscribe(self, subscription: Subscription) -> None:
        """Switch to `subscription` (keeping this client's `operator` flag): what was waiting is
        dropped and a snapshot of the new view comes next. `SubscriptionError` for a change
        over the hub's `max_subscribes_per_minute`."""
        now_s = time.monotonic()
        while self._subscribed_at and self._subscribed_at[0] <= now_s - 60.0:
            self._subscribed_at.popleft()
        if len(self._subscribed_at) >= self._hub.max_subscribes_per_minute:
            self._hub._subscribes_refused += 1
            raise SubscriptionError(
                f"{len(self._subscribed_at)} subscription changes in the last minute; at most "
                f"{self._hub.max_subscribes_per_minute}: the current one stays"
            )
        self._subscribed_at.append(now_s)
        operator = self._subscription.operator
        self._hub._resubscribe(self, dataclasses.replace(subscription, operator=operator))

    async def next_message(self) -> str:
        """The next message for this client, waiting for one.

        Raises `ClientClosedError` once the client is closed.
        """
        while True:
            if self._closed:
                raise ClientClosedError(self.close_code, self.close_reason)
            if self._queue:
                message = self._queue.popleft()
            elif self._pending:
                message = self._hub._encode_catch_up(self._pending)
                self._pending = {}
            else:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._blocked_since = None
            self.messages_sent += 1
            self._hub._messages_sent += 1
            return message

    async def wait_closed(self) -> None:
        """Return once the client is closed, by the hub or by `Hub.disconnect`."""
        await self._closed_event.wait()

    def _push(self, message: str) -> None:
        self._queue.append(message)
        self._wakeup.set()

    def _merge(self, changes: Changes, now_monotonic_s: float) -> None:
        if self._blocked_since is None:
            self._blocked_since = now_monotonic_s
        pending = self._pending
        overwritten = 0
        for vehicle_id, state in changes.items():
            if vehicle_id in pending:
                overwritten += 1
            pending[vehicle_id] = state
        self.dropped_intermediate += overwritten
        self._hub._dropped_intermediate += overwritten
        self._wakeup.set()

    def _reset(self) -> None:
        self._queue.clear()
        self._pending = {}
        self._blocked_since = None

    def _close(self, code: int | None, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason
        self._reset()
        self._wakeup.set()
        self._closed_event.set()


class Hub:
    """Latest vehicle states, the clients subscribed to them, and the tick that feeds them."""

    def __init__(
        self,
        *,
        tick_s: float = 0.5,
        client_queue_size: int = 4,
        stuck_after_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_clients_per_address: int = MAX_CLIENTS_PER_ADDRESS,
        max_subscribes_per_minute: int = MAX_SUBSCRIBES_PER_MINUTE,
    ) -> None:
        """`clock` gives `server_time_s` (epoch s): the service's clock, which a demo or a
        replay of a past day may set apart from the wall clock."""
        if not tick_s > 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        if client_queue_size < 1:
            raise ValueError(f"client_queue_size must be >= 1, got {client_queue_size}")
        if not stuck_after_s > 0:
            raise ValueError(f"stuck_after_s must be > 0, got {stuck_after_s}")
        self.tick_s = tick_s
        self.client_queue_size = client_queue_size
        self.stuck_after_s = stuck_after_s
        self.max_clients_per_address = max_clients_per_address
        self.max_subscribes_per_minute = max_subscribes_per_minute
        self._clients_of: dict[str, int] = {}  # address → clients connected from it
        self._clients_refused = 0
        self._subscribes_refused = 0
        self._clock = clock
        self._vehicles: dict[str, LiveVehicle] = {}  # as of the last tick: what clients were told
        self._changes: Changes = {}  # since the last tick
        self._groups: dict[Subscription, set[Client]] = {}
        self._snapshots: dict[Subscription, str] = {}  # valid until the next tick
        self._json: dict[str, tuple[LiveVehicle, dict[str, JsonValue]]] = {}
        self._revisions: list[tuple[set[str | None], dict[str, JsonValue | None]]] = []
        self._alert_changes: list[tuple[str, dict[str, Any]]] = []  # (route_id, change)
        self._state_time_s = self._clock()
        self._next_client_id = 1
        self._running = False
        self._closed = False
        # counters
        self._ticks = 0
        self._ticks_skipped = 0
        self._tick_errors = 0
        self._tick_duration_last_s = 0.0
        self._tick_duration_max_s = 0.0
        self._messages_sent = 0
        self._serialisations_last_tick = 0
        self._serialisations_total = 0
        self._snapshot_serialisations = 0
        self._catch_up_serialisations = 0
        self._dropped_intermediate = 0
        self._disconnected_stuck = 0
        self._published_ignored = 0
        self._revisions_sent = 0
        self._revisions_dropped = 0
        self._alert_changes_sent = 0
        self._alert_changes_dropped = 0

    # -- the pipeline's side ------------------------------------------------------------------

    def publish(self, vehicles: Iterable[LiveVehicle]) -> None:
        """Record the latest states of `vehicles`; clients hear of them at the next tick.

        Ignored (and counted): a rejected state, a position that is not finite, and a state
        older than the one already held for the vehicle (the map never goes back in time).
        """
        changes = self._changes
        held = self._vehicles
        for vehicle in vehicles:
            vehicle_id = vehicle.vehicle_id
            latest = changes[vehicle_id] if vehicle_id in changes else held.get(vehicle_id)
            if (
                vehicle.state == State.REJECTED.value
                or not vehicle.has_finite_position
                or (latest is not None and vehicle.observed_at_s < latest.observed_at_s)
            ):
                self._published_ignored += 1
                continue
            changes[vehicle_id] = vehicle

    def revise(self, revised: Iterable[Match]) -> None:
        """Answers of past positions that settled differently; clients hear of them at the
        next tick (see the module). At most `MAX_REVISIONS_PER_TICK` wait; more are dropped."""
        for match in revised:
            if len(self._revisions) >= MAX_REVISIONS_PER_TICK:
                self._revisions_dropped += 1
                continue
            shown = self._vehicles.get(match.vehicle_id)
            routes = {match.route_id, None if shown is None else shown.route_id}
            self._revisions.append((routes, {
                "vehicle_id": match.vehicle_id,
                "observed_at_s": match.timestamp,
                "state": match.state.value,
                "route_id": match.route_id,
                "trip_id": match.trip_id,
                "service_date": match.service_date,
                "delay_s": None if match.delay_s is None else round(match.delay_s, 1),
            }))  # fmt: skip

    def announce(self, changes: Iterable[AlertChange]) -> None:
        """Alerts opened, updated or closed; clients hear of them at the next tick."""
        for change in changes:
            if len(self._alert_changes) >= MAX_REVISIONS_PER_TICK:
                self._alert_changes_dropped += 1
                continue
            self._alert_changes.append((change.alert.route_id, {
                "change": change.change.value, "alert": alert_json(change.alert),
            }))  # fmt: skip

    def remove(self, vehicle_ids: Iterable[str]) -> None:
        """Forget these vehicles (stale or expired); clients that show them are told to drop
        them at the next tick. Unknown ids are ignored."""
        for vehicle_id in vehicle_ids:
            if vehicle_id in self._vehicles or vehicle_id in self._changes:
                self._changes[vehicle_id] = None

    # -- the clients' side ----------------------------------------------------------------------

    def connect(self, subscription: Subscription, *, address: str | None = None) -> Client:
        """A new client whose first message is a snapshot of `subscription`'s view.

        On a closed hub the client comes back already closed (`CLOSE_GOING_AWAY`). With an
        `address`, `TooManyClientsError` if that address holds `max_clients_per_address`.
        """
        if address is not None:
            held = self._clients_of.get(address, 0)
            if held >= self.max_clients_per_address:
                self._clients_refused += 1
                raise TooManyClientsError(
                    f"{held} live connections from {address} already; at most "
                    f"{self.max_clients_per_address} from one address"
                )
            self._clients_of[address] = held + 1
        client = Client(self, self._next_client_id, subscription, address)
        self._next_client_id += 1
        if self._closed:
            client._close(CLOSE_GOING_AWAY, "server shutting down")
            return client
        self._groups.setdefault(subscription, set()).add(client)
        client._push(self._snapshot(subscription))
        return client

    def disconnect(self, client: Client) -> None:
        """Forget `client` (its connection ended). Safe to call more than once."""
        self._leave_group(client)
        address, client._address = client._address, None
        if address is not None:
            left = self._clients_of.pop(address) - 1
            if left:
                self._clients_of[address] = left
        client._close(None, "disconnected")

    def close(self) -> None:
        """Close every client with `CLOSE_GOING_AWAY`; later clients are closed at once."""
        self._closed = True
        for clients in list(self._groups.values()):
            for client in list(clients):
                self._leave_group(client)
                client._close(CLOSE_GOING_AWAY, "server shutting down")

    def vehicles(self) -> dict[str, LiveVehicle]:
        """A copy of the latest state of every vehicle, by id: as of the last tick with the
        changes published since then applied (for HTTP reads; clients keep getting ticks)."""
        current = dict(self._vehicles)
        for vehicle_id, vehicle in self._changes.items():
            if vehicle is None:
                current.pop(vehicle_id, None)
            else:
                current[vehicle_id] = vehicle
        return current

    def stats(self) -> HubStats:
        return HubStats(
            clients=sum(len(clients) for clients in self._groups.values()),
            subscriptions=len(self._groups),
            vehicles=len(self._vehicles),
            ticks=self._ticks,
            ticks_skipped=self._ticks_skipped,
            tick_errors=self._tick_errors,
            tick_duration_last_s=self._tick_duration_last_s,
            tick_duration_max_s=self._tick_duration_max_s,
            messages_sent=self._messages_sent,
            serialisations_last_tick=self._serialisations_last_tick,
            serialisations_total=self._serialisations_total,
            snapshot_serialisations=self._snapshot_serialisations,
            catch_up_serialisations=self._catch_up_serialisations,
            dropped_intermediate=self._dropped_intermediate,
            disconnected_stuck=self._disconnected_stuck,
            published_ignored=self._published_ignored,
            revisions_sent=self._revisions_sent,
            revisions_dropped=self._revisions_dropped,
            alert_changes_sent=self._alert_changes_sent,
            alert_changes_dropped=self._alert_changes_dropped,
            clients_refused=self._clients_refused,
            subscribes_refused=self._subscribes_refused,
        )

    # -- the tick -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Tick every `tick_s` until cancelled, then close every client (`CLOSE_GOING_AWAY`).

        Start it in the app lifespan's task group. A late loop skips ticks rather than bunching
        them; an error in a tick is logged with its traceback, counted, and the loop goes on.
        """
        if self._running:
            raise RuntimeError("Hub.run() is already running; start it once, in the lifespan")
        self._running = True
        loop = asyncio.get_running_loop()
        next_tick_at = loop.time() + self.tick_s
        try:
            while True:
                await asyncio.sleep(max(0.0, next_tick_at - loop.time()))
                try:
                    self.tick()
                except Exception:  # a task boundary: one bad tick must not stop the live feed
                    self._tick_errors += 1
                    logger.exception("live hub tick failed; the next tick will try again")
                next_tick_at += self.tick_s
                late_s = loop.time() - next_tick_at
                if late_s > 0:
                    skipped = math.ceil(late_s / self.tick_s)
                    self._ticks_skipped += skipped
                    next_tick_at += skipped * self.tick_s
        finally:
            self._running = False
            self.close()

    def tick(self) -> None:
        """Send every client the changes of its view since the last tick (`run` calls this)."""
        started = time.perf_counter()
        self._ticks += 1
        self._close_stuck_clients(time.monotonic())
        changes, self._changes = self._changes, {}
        self._state_time_s = self._clock()
        self._snapshots.clear()
        effective: list[tuple[str, LiveVehicle | None, LiveVehicle | None]] = []
        for vehicle_id, new in changes.items():
            old = self._vehicles.get(vehicle_id)
            if new != old:
                effective.append((vehicle_id, old, new))
        for vehicle_id, _, new in effective:
            if new is None:
                del self._vehicles[vehicle_id]
                self._json.pop(vehicle_id, None)
            else:
                self._vehicles[vehicle_id] = new
        serialisations = 0
        if effective:
            now_monotonic_s = time.monotonic()
            for subscription, clients in self._groups.items():
                view_changes: Changes = {}
                for vehicle_id, old, new in effective:
                    if new is not None and subscription.matches(new):
                        view_changes[vehicle_id] = new
                    elif old is not None and subscription.matches(old):
                        view_changes[vehicle_id] = None  # it left this view
                if not view_changes:
                    continue
                message: str | None = None
                for client in clients:
                    if client._pending or len(client._queue) >= self.client_queue_size:
                        client._merge(view_changes, now_monotonic_s)
                    else:
                        if message is None:
                            message = self._encode("update", view_changes)
                            serialisations += 1
                        client._push(message)
        if self._revisions:
            revisions, self._revisions = self._revisions, []
            serialisations += self._send_by_route(
                "revised", "revisions", revisions, "_revisions_sent", "_revisions_dropped"
            )
        if self._alert_changes:
            announced, self._alert_changes = self._alert_changes, []
            serialisations += self._send_by_route(
                "alerts", "changes", [({route}, c) for route, c in announced],
                "_alert_changes_sent", "_alert_changes_dropped", operators_only=True,
            )  # fmt: skip
        self._serialisations_last_tick = serialisations
        self._serialisations_total += serialisations
        duration_s = time.perf_counter() - started
        self._tick_duration_last_s = duration_s
        self._tick_duration_max_s = max(self._tick_duration_max_s, duration_s)

    # -- internals ------------------------------------------------------------------------------

    def _send_by_route(
        self,
        kind: str,
        member: str,
        items: Sequence[tuple[set[str | None], Mapping[str, Any]]],
        sent: str,
        dropped: str,
        *,
        operators_only: bool = False,
    ) -> int:
        """`items` (each with the routes it concerns) to every group that subscribes to their
        routes (only the operators' groups if `operators_only`), one message of `kind` per
        group (one serialisation); a client whose queue is full misses it, counted in the
        counter named `dropped` (the others in `sent`). How many messages were serialised."""
        serialisations = 0
        for subscription, clients in self._groups.items():
            if operators_only and not subscription.operator:
                continue
            wanted = subscription.route_ids
            mine = [item for routes, item in items
                    if wanted is None or not wanted.isdisjoint(routes)]  # fmt: skip
            if not mine:
                continue
            message = json.dumps(
                {"type": kind, "server_time_s": round(self._state_time_s, 3), member: mine},
                separators=(",", ":"),
                allow_nan=False,
            )
            serialisations += 1
            for client in clients:
                if client._pending or len(client._queue) >= self.client_queue_size:
                    setattr(self, dropped, getattr(self, dropped) + len(mine))
                else:
                    client._push(message)
                    setattr(self, sent, getattr(self, sent) + len(mine))
        return serialisations

    def _close_stuck_clients(self, now_monotonic_s: float) -> None:
        stuck = [
            client
            for clients in self._groups.values()
            for client in clients
            if client._blocked_since is not None
            and now_monotonic_s - client._blocked_since >= self.stuck_after_s
        ]
        for client in stuck:
            self._leave_group(client)
            client._close(CLOSE_TOO_SLOW, f"too slow: read nothing for {self.stuck_after_s:g} s")
            self._disconnected_stuck += 1
            logger.warning(
                "live client %d closed: it read nothing for %g s (%d messages sent, "
                "%d intermediate states dropped)",
                client.id,
                self.stuck_after_s,
                client.messages_sent,
                client.dropped_intermediate,
            )

    def _resubscribe(self, client: Client, subscription: Subscription) -> None:
        if client.closed:
            return
        self._leave_group(client)
        client._subscription = subscription
        client._reset()
        self._groups.setdefault(subscription, set()).add(client)
        client._push(self._snapshot(subscription))

    def _leave_group(self, client: Client) -> None:
        group = self._groups.get(client.subscription)
        if group is None:
            return
        group.discard(client)
        if not group:
            del self._groups[client.subscription]
            self._snapshots.pop(client.subscription, None)

    def _snapshot(self, subscription: Subscription) -> str:
        message = self._snapshots.get(subscription)
        if message is None:
            view: Changes = {
                vehicle_id: vehicle
                for vehicle_id, vehicle in self._vehicles.items()
                if subscription.matches(vehicle)
            }
            message = self._encode("snapshot", view)
            self._snapshot_serialisations += 1
            self._snapshots[subscription] = message
        return message

    def _encode_catch_up(self, pending: Mapping[str, LiveVehicle | None]) -> str:
        self._catch_up_serialisations += 1
        return self._encode("update", pending)

    def _encode(self, kind: str, changes: Mapping[str, LiveVehicle | None]) -> str:
        vehicles: list[dict[str, JsonValue]] = []
        removed: list[str] = []
        for vehicle_id in sorted(changes):
            vehicle = changes[vehicle_id]
            if vehicle is None:
                removed.append(vehicle_id)
            else:
                vehicles.append(self._json_of(vehicle))
        return json.dumps(
            {
                "type": kind,
                "server_time_s": round(self._state_time_s, 3),
                "vehicles": vehicles,
                "removed": removed,
            },
            separators=(",", ":"),
            allow_nan=False,
        )

    def _json_of(self, vehicle: LiveVehicle) -> dict[str, JsonValue]:
        """`vehicle.to_json_dict()`, computed once per held state however many views include it
        (a state no longer held, in a slow client's pending dict, is not cached)."""
        cached = self._json.get(vehicle.vehicle_id)
        if cached is not None and cached[0] is vehicle:
            return cached[1]
        as_json = vehicle.to_json_dict()
        if self._vehicles.get(vehicle.vehicle_id) is vehicle:
            self._json[vehicle.vehicle_id] = (vehicle, as_json)
        return as_json
