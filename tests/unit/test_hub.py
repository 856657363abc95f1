"""Tests for tracker.live.vehicle and tracker.live.hub: views, ticks, bounds, slow clients.

Most tests drive `Hub.tick()` by hand; the ones about timing run `Hub.run()` for real with small
times, all derived from TICK_S.
"""

from __future__ import annotations

import ast
import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from tracker.core.model import Match, Ping, Reason, State
from tracker.core.operations import AlertChange, Change, Detour, Severity
from tracker.live.hub import (
    CLOSE_GOING_AWAY,
    CLOSE_TOO_SLOW,
    Client,
    ClientClosedError,
    Hub,
    Subscription,
    SubscriptionError,
    TooManyClientsError,
)
from tracker.live.vehicle import LiveVehicle

TICK_S = 0.05  # the one time scale of the async tests below
T0 = 1771257600.0  # 2026-02-16T16:00:00Z
EVERYTHING = Subscription()
CENTRE_BOX = Subscription(bbox=(-7.70, 33.50, -7.50, 33.65))  # inside: lon -7.6, lat 33.57


def bus(
    vehicle_id: str,
    *,
    lon: float = -7.6,
    lat: float = 33.57,
    route_id: str | None = "R1",
    t: float = T0,
    state: State = State.IN_SERVICE,
) -> LiveVehicle:
    return LiveVehicle(
        vehicle_id=vehicle_id,
        observed_at_s=t,
        lat=lat,
        lon=lon,
        state=state.value,
        route_id=route_id,
    )


def decode(message: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def read_ready(client: Client) -> list[dict[str, Any]]:
    """Every message the client could read now, without waiting for a tick."""
    messages = []
    while client.queue_length or client.pending_count:
        messages.append(decode(await client.next_message()))
    return messages


def ids(message: dict[str, Any]) -> list[str]:
    return [v["vehicle_id"] for v in message["vehicles"]]


# -- LiveVehicle ------------------------------------------------------------------------------


PING = Ping(
    vehicle_id="bus-7", timestamp=T0, lat=33.5731, lon=-7.5898, speed_mps=8.34, bearing_deg=271.26
)


def test_in_service_vehicle_is_shown_at_its_snapped_point() -> None:
    match = Match(
        vehicle_id="bus-7",
        timestamp=T0,
        state=State.IN_SERVICE,
        route_id="L7",
        trip_id="L7-0815",
        direction_id=1,
        shape_id="S7",
        shape_dist_m=1234.5678,
        snapped_lat=33.57321234,
        snapped_lon=-7.58991234,
        offset_m=12.345,
        delay_s=-61.25,
    )
    vehicle = LiveVehicle.from_match(PING, match)
    assert (vehicle.lat, vehicle.lon) == (33.57321234, -7.58991234)
    assert vehicle.to_json_dict() == {
        "vehicle_id": "bus-7",
        "observed_at_s": T0,
        "lat": 33.573212,
        "lon": -7.589912,
        "bearing_deg": 271.3,
        "speed_mps": 8.3,
        "state": "in_service",
        "route_id": "L7",
        "trip_id": "L7-0815",
        "direction_id": 1,
        "shape_id": "S7",
        "shape_dist_m": 1234.6,
        "snapped_lat": 33.573212,
        "snapped_lon": -7.589912,
        "offset_m": 12.3,
        "delay_s": -61.2,
    }


@pytest.mark.parametrize("state", [State.OFF_ROUTE, State.NOT_MATCHED])
def test_vehicle_not_in_service_is_shown_at_its_raw_position(state: State) -> None:
    match = Match(
        vehicle_id="bus-7",
        timestamp=T0,
        state=state,
        reason=Reason.NO_TRIP_FITS,
        snapped_lat=33.0,
        snapped_lon=-7.0,
    )
    vehicle = LiveVehicle.from_match(PING, match)
    assert (vehicle.lat, vehicle.lon) == (PING.lat, PING.lon)
    assert vehicle.to_json_dict()["reason"] == "no_trip_fits"


def test_layover_without_a_snapped_point_is_shown_raw() -> None:
    vehicle = LiveVehicle.from_match(PING, Match("bus-7", T0, State.LAYOVER, route_id="L7"))
    assert (vehicle.lat, vehicle.lon) == (PING.lat, PING.lon)
    assert vehicle.state == "layover"


def test_json_leaves_out_none_and_non_finite_numbers() -> None:
    vehicle = LiveVehicle("bus-1", T0 + 0.04, 33.5, -7.6, speed_mps=math.nan, delay_s=math.inf)
    assert vehicle.to_json_dict() == {
        "vehicle_id": "bus-1",
        "observed_at_s": T0,
        "lat": 33.5,
        "lon": -7.6,
        "state": "not_matched",
    }


def test_from_match_refuses_a_match_of_another_vehicle() -> None:
    with pytest.raises(ValueError, match="'bus-7' paired with a match of vehicle 'bus-8'"):
        LiveVehicle.from_match(PING, Match("bus-8", T0, State.NOT_MATCHED))


# -- Subscription -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "bbox", "fragment"),
    [
        ([], None, "routes is empty"),
        ([""], None, "a route id is empty"),
        ("R1", None, "routes .R1. is a string; give a list"),
        (None, [1.0, 2.0, 3.0], "bbox has 3 numbers; give 4"),
        (None, [math.nan, 0.0, 1.0, 1.0], "not finite"),
        (None, [-181.0, 0.0, 1.0, 1.0], "min_lon -181.0 is outside -180..180"),
        (None, [0.0, 0.0, 1.0, 91.0], "max_lat 91.0 is outside -90..90"),
        (None, [2.0, 0.0, 1.0, 1.0], "with min <= max"),
    ],
)
def test_invalid_subscriptions_say_what_to_send(
    routes: list[str] | None, bbox: list[float] | None, fragment: str
) -> None:
    with pytest.raises(SubscriptionError, match=fragment):
        Subscription.of(routes=routes, bbox=bbox)


def test_subscriptions_are_equal_when_their_views_are() -> None:
    assert Subscription.of(routes=["B", "A "]) == Subscription.of(routes=["A", "B"])
    assert Subscription.of(bbox=[1, 2, 3, 4]) == Subscription(bbox=(1.0, 2.0, 3.0, 4.0))
    both = Subscription.of(routes=["R1"], bbox=[-7.7, 33.5, -7.5, 33.65])
    assert both.matches(bus("a"))
    assert not both.matches(bus("a", route_id="R2"))
    assert not both.matches(bus("a", lon=-7.4))
    assert not Subscription.of(routes=["R1"]).matches(bus("a", route_id=None))


# -- the hub ----------------------------------------------------------------------------------


async def test_snapshot_first_then_one_update_per_tick_with_only_what_changed() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus("a"), bus("b"), bus("c")])
    hub.tick()
    client = hub.connect(EVERYTHING)

    snapshot = decode(await client.next_message())
    assert snapshot["type"] == "snapshot"
    assert ids(snapshot) == ["a", "b", "c"]
    assert snapshot["removed"] == []

    hub.publish([bus("b", lat=33.571, t=T0 + 1)])
    hub.publish([bus("b", lat=33.572, t=T0 + 2), bus("c", t=T0)])  # c: no change
    assert client.queue_length == 0  # nothing is sent before the tick
    hub.tick()
    assert client.queue_length == 1
    update = decode(await client.next_message())
    assert update["type"] == "update"
    assert update["vehicles"] == [bus("b", lat=33.572, t=T0 + 2).to_json_dict()]
    assert update["removed"] == []
    assert update["server_time_s"] == pytest.approx(time.time(), abs=5)

    hub.tick()  # nothing changed: no message
    assert client.queue_length == 0
    assert hub.stats().messages_sent == 2


async def test_next_message_waits_for_the_tick() -> None:
    hub = Hub(tick_s=TICK_S)
    client = hub.connect(EVERYTHING)
    assert decode(await client.next_message())["vehicles"] == []
    waiting = asyncio.create_task(client.next_message())
    await asyncio.sleep(TICK_S)
    assert not waiting.done()
    hub.publish([bus("a")])
    hub.tick()
    assert ids(decode(await asyncio.wait_for(waiting, 1.0))) == ["a"]


async def test_route_filter() -> None:
    hub = Hub(tick_s=TICK_S)
    r1 = hub.connect(Subscription.of(routes=["R1"]))
    r2_r3 = hub.connect(Subscription.of(routes=["R2", "R3"]))
    await read_ready(r1)
    await read_ready(r2_r3)

    hub.publish([bus("a", route_id="R1"), bus("b", route_id="R2"), bus("c", route_id="R3")])
    hub.publish([bus("d", route_id=None)])
    hub.tick()
    assert [ids(m) for m in await read_ready(r1)] == [["a"]]
    assert [ids(m) for m in await read_ready(r2_r3)] == [["b", "c"]]

    # a takes a trip on R2: it leaves the R1 view and enters the R2 one
    hub.publish([bus("a", route_id="R2", t=T0 + 1)])
    hub.tick()
    [to_r1] = await read_ready(r1)
    assert (to_r1["vehicles"], to_r1["removed"]) == ([], ["a"])
    [to_r2] = await read_ready(r2_r3)
    assert (ids(to_r2), to_r2["removed"]) == (["a"], [])


async def test_bbox_filter_reports_a_vehicle_leaving_the_box_as_removed() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus("inside"), bus("outside", lon=-7.0)])
    hub.tick()
    boxed = hub.connect(CENTRE_BOX)
    everything = hub.connect(EVERYTHING)
    assert ids((await read_ready(boxed))[0]) == ["inside"]
    assert ids((await read_ready(everything))[0]) == ["inside", "outside"]

    hub.publish([bus("inside", lon=-7.45, t=T0 + 1)])  # drives out of the box
    hub.tick()
    [left] = await read_ready(boxed)
    assert (left["vehicles"], left["removed"]) == ([], ["inside"])
    assert ids((await read_ready(everything))[0]) == ["inside"]

    hub.publish([bus("inside", lon=-7.46, t=T0 + 2)])  # still out: nothing for the box
    hub.tick()
    assert await read_ready(boxed) == []

    hub.publish([bus("inside", lon=-7.55, t=T0 + 3)])  # back in
    hub.tick()
    [back] = await read_ready(boxed)
    assert (ids(back), back["removed"]) == (["inside"], [])


async def test_remove_reports_only_to_views_that_showed_the_vehicle() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus("inside"), bus("outside", lon=-7.0)])
    hub.tick()
    boxed = hub.connect(CENTRE_BOX)
    everything = hub.connect(EVERYTHING)
    await read_ready(boxed)
    await read_ready(everything)

    hub.remove(["outside", "never-seen"])
    hub.tick()
    assert await read_ready(boxed) == []
    [removal] = await read_ready(everything)
    assert (removal["vehicles"], removal["removed"]) == ([], ["outside"])
    assert hub.stats().vehicles == 1

    hub.publish([bus("brief")])
    hub.remove(["brief"])  # appeared and went within one tick: nobody hears of it
    hub.tick()
    assert await read_ready(everything) == []


async def test_each_message_is_serialised_once_per_subscription() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus(f"v{i}", lon=-7.6 if i % 2 else -7.0) for i in range(10)])
    hub.tick()
    clients = [hub.connect(EVERYTHING if i % 2 else CENTRE_BOX) for i in range(50)]
    assert hub.stats().snapshot_serialisations == 2
    assert hub.stats().subscriptions == 2
    for client in clients:
        await read_ready(client)

    for step in range(1, 6):
        hub.publish([bus(f"v{i}", lon=-7.6 if i % 2 else -7.0, t=T0 + step) for i in range(10)])
        hub.tick()
        assert hub.stats().serialisations_last_tick == 2
        messages = [await client.next_message() for client in clients]
        assert len({id(m) for m in messages}) == 2  # the same two strings, shared
        assert all(client.queue_length == 0 for client in clients)
    stats = hub.stats()
    assert stats.serialisations_total == 10
    assert stats.catch_up_serialisations == 0
    assert stats.clients == 50


async def test_slow_client_gets_the_newest_state_and_costs_a_bounded_amount() -> None:
    bound = 3
    hub = Hub(tick_s=TICK_S, client_queue_size=bound, stuck_after_s=3600)
    fleet = ["a", "b", "c"]
    slow = hub.connect(EVERYTHING)
    fast = hub.connect(EVERYTHING)
    await read_ready(fast)

    ticks = 40
    for step in range(1, ticks + 1):
        hub.publish([bus(v, lat=33.5 + step / 1000, t=T0 + step) for v in fleet])
        hub.tick()
        assert slow.queue_length <= bound
        assert slow.pending_count <= len(fleet)
        assert len(fast_messages := await read_ready(fast)) == 1  # the others are unaffected
        assert ids(fast_messages[0]) == fleet

    assert (slow.queue_length, slow.pending_count) == (bound, len(fleet))
    messages = await read_ready(slow)
    # the snapshot and the first updates that fit its queue, then one catch-up of the rest
    assert [m["type"] for m in messages] == ["snapshot"] + ["update"] * bound
    newest = {v["vehicle_id"]: v["lat"] for v in messages[-1]["vehicles"]}
    assert newest == dict.fromkeys(fleet, round(33.5 + ticks / 1000, 6))
    dropped = (ticks - (bound - 1) - 1) * len(fleet)  # all merged states but the last of each
    assert slow.dropped_intermediate == dropped
    stats = hub.stats()
    assert stats.dropped_intermediate == dropped
    assert stats.catch_up_serialisations == 1
    assert stats.disconnected_stuck == 0


async def test_a_client_that_never_reads_does_not_slow_the_tick_loop() -> None:
    hub = Hub(tick_s=TICK_S, client_queue_size=4, stuck_after_s=3600)
    never_reads = hub.connect(EVERYTHING)
    reader = hub.connect(EVERYTHING)
    received: list[float] = []

    async def read() -> None:
        while True:
            await reader.next_message()
            received.append(time.monotonic())

    duration_s = 30 * TICK_S
    async with asyncio.TaskGroup() as tasks:
        ticking = tasks.create_task(hub.run())
        reading = tasks.create_task(read())
        started = time.monotonic()
        step = 0
        while time.monotonic() - started < duration_s:
            step += 1
            hub.publish([bus(f"v{i}", lat=33.5 + step / 1e4, t=T0 + step) for i in range(200)])
            await asyncio.sleep(TICK_S / 3)
        ticking.cancel()
        reading.cancel()

    # Counted, not timed (the machines are shared): the reader got a message for nearly every
    # tick the hub made, while the other client's queue stayed at its bound.
    stats = hub.stats()
    assert stats.ticks >= 10
    assert never_reads.queue_length <= 4
    assert len(received) >= 0.8 * (stats.ticks - stats.ticks_skipped)
    assert stats.dropped_intermediate > 0
    assert never_reads.closed  # run() ended: every client closed
    assert never_reads.close_code == CLOSE_GOING_AWAY


async def test_a_stuck_client_is_closed_and_counted() -> None:
    stuck_after_s = 2 * TICK_S
    hub = Hub(tick_s=TICK_S, client_queue_size=2, stuck_after_s=stuck_after_s)
    stuck = hub.connect(EVERYTHING)
    reader = hub.connect(EVERYTHING)
    waiting_for_close = asyncio.create_task(stuck.wait_closed())

    step = 0
    started = time.monotonic()
    while not stuck.closed:
        step += 1
        hub.publish([bus("a", lat=33.5 + step / 1e4, t=T0 + step)])
        hub.tick()
        await read_ready(reader)
        await asyncio.sleep(TICK_S / 2)
        assert time.monotonic() - started < 20 * stuck_after_s, "never closed"

    # closed once its queue was full and it had read nothing for stuck_after_s
    assert time.monotonic() - started >= stuck_after_s
    await asyncio.wait_for(waiting_for_close, 1.0)
    assert stuck.close_code == CLOSE_TOO_SLOW
    assert (stuck.queue_length, stuck.pending_count) == (0, 0)  # its memory is released
    with pytest.raises(ClientClosedError) as raised:
        await stuck.next_message()
    assert raised.value.code == CLOSE_TOO_SLOW
    assert "too slow" in raised.value.reason
    stats = hub.stats()
    assert (stats.disconnected_stuck, stats.clients) == (1, 1)
    assert not reader.closed

    hub.publish([bus("a", lat=34.0, t=T0 + step + 1)])
    hub.tick()
    assert len(await read_ready(reader)) == 1


async def test_a_client_that_reads_slowly_but_steadily_is_not_stuck() -> None:
    hub = Hub(tick_s=TICK_S, client_queue_size=1, stuck_after_s=3 * TICK_S)
    client = hub.connect(EVERYTHING)
    for step in range(12):
        hub.publish([bus("a", lat=33.5 + step / 1e4, t=T0 + step)])
        hub.tick()
        if step % 2:
            await client.next_message()  # one message every other tick
        await asyncio.sleep(TICK_S)
    assert not client.closed
    assert hub.stats().dropped_intermediate > 0


async def test_resubscribe_drops_what_waited_and_sends_a_snapshot_of_the_new_view() -> None:
    hub = Hub(tick_s=TICK_S, client_queue_size=2)
    hub.publish([bus("inside"), bus("outside", lon=-7.0)])
    hub.tick()
    client = hub.connect(EVERYTHING)
    for step in range(1, 5):  # fill its queue and its pending dict
        hub.publish([bus("outside", lon=-7.0, lat=33.5 + step / 1e4, t=T0 + step)])
        hub.tick()
    assert client.pending_count == 1

    client.resubscribe(CENTRE_BOX)
    assert (client.queue_length, client.pending_count) == (1, 0)
    [snapshot] = await read_ready(client)
    assert (snapshot["type"], ids(snapshot)) == ("snapshot", ["inside"])
    assert client.subscription == CENTRE_BOX

    hub.publish([bus("outside", lon=-7.0, t=T0 + 10), bus("inside", lat=33.58, t=T0 + 10)])
    hub.tick()
    assert [ids(m) for m in await read_ready(client)] == [["inside"]]
    assert hub.stats().subscriptions == 1


def detour_on(route_id: str) -> AlertChange:
    """An alert opened on `route_id`."""
    detour = Detour(f"detour:{route_id}", Severity.WARNING, "bus-1", route_id, 0, "T",
                    "20260216", "S", T0, 33.57, -7.6, 500.0, 160.0, 250.0, 180.0, 4,
                    ((33.57, -7.6),))  # fmt: skip
    return AlertChange(Change.OPENED, detour)


async def test_alerts_reach_only_the_operators_clients_of_their_route() -> None:
    hub = Hub(tick_s=TICK_S)
    rider = hub.connect(EVERYTHING)
    operator = hub.connect(Subscription(operator=True))
    other_route = hub.connect(Subscription(route_ids=frozenset({"R2"}), operator=True))
    for client in (rider, operator, other_route):
        await read_ready(client)  # the snapshots
    hub.announce([detour_on("R1")])
    hub.tick()
    assert await read_ready(rider) == []
    assert await read_ready(other_route) == []
    [alerts] = await read_ready(operator)
    assert alerts["type"] == "alerts"
    assert [c["alert"]["alert_id"] for c in alerts["changes"]] == ["detour:R1"]
    assert hub.stats().alert_changes_sent == 1


async def test_resubscribing_keeps_the_operator_flag_and_a_rider_cannot_take_it() -> None:
    hub = Hub(tick_s=TICK_S)
    rider = hub.connect(EVERYTHING)
    operator = hub.connect(Subscription(operator=True))
    rider.resubscribe(Subscription(route_ids=frozenset({"R1"}), operator=True))
    operator.resubscribe(Subscription(route_ids=frozenset({"R1"})))
    assert not rider.subscription.operator
    assert operator.subscription.operator
    assert operator.subscription.route_ids == frozenset({"R1"})
    for client in (rider, operator):
        await read_ready(client)
    hub.announce([detour_on("R1")])
    hub.tick()
    assert await read_ready(rider) == []
    assert [m["type"] for m in await read_ready(operator)] == ["alerts"]


def test_one_address_holds_at_most_its_share_of_clients() -> None:
    hub = Hub(tick_s=TICK_S, max_clients_per_address=2)
    first = hub.connect(EVERYTHING, address="10.0.0.1")
    hub.connect(EVERYTHING, address="10.0.0.1")
    with pytest.raises(TooManyClientsError, match="at most 2 from one address"):
        hub.connect(EVERYTHING, address="10.0.0.1")
    hub.connect(EVERYTHING, address="10.0.0.2")  # another address has its own share
    hub.connect(EVERYTHING)  # no address (a test, an embedded use): not counted
    hub.disconnect(first)
    hub.disconnect(first)  # twice frees one place, not two
    hub.connect(EVERYTHING, address="10.0.0.1")
    with pytest.raises(TooManyClientsError):
        hub.connect(EVERYTHING, address="10.0.0.1")
    stats = hub.stats()
    assert (stats.clients, stats.clients_refused) == (4, 2)


def test_subscription_changes_are_limited_per_minute_and_the_current_one_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_s = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now_s[0])
    hub = Hub(tick_s=TICK_S, max_subscribes_per_minute=3)
    client = hub.connect(EVERYTHING)
    views = [Subscription(route_ids=frozenset({f"R{n}"})) for n in range(5)]
    for view in views[:3]:
        client.resubscribe(view)
        now_s[0] += 1.0
    with pytest.raises(SubscriptionError, match="at most 3"):
        client.resubscribe(views[3])
    assert client.subscription == views[2]
    now_s[0] += 58.0  # the first change is a minute old now
    client.resubscribe(views[4])
    assert client.subscription == views[4]
    assert hub.stats().subscribes_refused == 1


def test_publish_ignores_what_the_map_must_not_show() -> None:
    hub = Hub(tick_s=TICK_S)
    hub.publish([bus("a", t=T0 + 10)])
    hub.tick()
    hub.publish(
        [
            bus("a", t=T0 + 5, lat=10.0),  # older than the state held
            bus("b", state=State.REJECTED),
            bus("c", lat=math.nan),
        ]
    )
    hub.tick()
    assert hub.stats().published_ignored == 3
    assert hub.stats().vehicles == 1
    hub.publish([bus("a", t=T0 + 11, lat=10.0)])
    hub.publish([bus("a", t=T0 + 10.5, lat=11.0)])  # older than the unsent newer one
    hub.tick()
    snapshot = decode(hub.connect(EVERYTHING)._queue[0])
    assert snapshot["vehicles"][0]["lat"] == 10.0


async def test_stopping_run_closes_every_client_and_later_ones() -> None:
    hub = Hub(tick_s=TICK_S)
    client = hub.connect(EVERYTHING)
    ticking = asyncio.create_task(hub.run())
    await asyncio.sleep(2 * TICK_S)
    ticking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ticking
    assert client.closed
    assert client.close_code == CLOSE_GOING_AWAY
    late = hub.connect(EVERYTHING)
    assert late.closed
    assert hub.stats().clients == 0


async def test_disconnect_forgets_the_client() -> None:
    hub = Hub(tick_s=TICK_S)
    client = hub.connect(CENTRE_BOX)
    hub.disconnect(client)
    hub.disconnect(client)  # twice is fine
    stats = hub.stats()
    assert (stats.clients, stats.subscriptions) == (0, 0)
    with pytest.raises(ClientClosedError) as raised:
        await client.next_message()
    assert raised.value.code is None


def test_hub_and_vehicle_import_no_web_framework() -> None:
    live = Path(__file__).resolve().parents[2] / "tracker" / "live"
    for name in ("__init__.py", "hub.py", "vehicle.py"):
        tree = ast.parse((live / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] not in {"fastapi", "starlette", "uvicorn"}, name
                assert module != "tracker.live.ws", name


# -- revisions --------------------------------------------------------------------------------


def revision(vehicle_id: str, route_id: str, trip_id: str, t: float = T0 - 120) -> Match:
    return Match(vehicle_id, t, State.IN_SERVICE, route_id=route_id, trip_id=trip_id,
                 service_date="20260216", delay_s=412.04)  # fmt: skip


async def test_revised_answers_reach_the_clients_of_their_routes_once_per_tick() -> None:
    hub = Hub(tick_s=TICK_S, clock=lambda: T0)
    hub.publish([bus("bus-1", route_id="R1")])
    hub.tick()
    on_r1 = hub.connect(Subscription.of(routes=["R1"]))
    on_r2 = hub.connect(Subscription.of(routes=["R2"]))
    everything = hub.connect(EVERYTHING)
    for client in (on_r1, on_r2, everything):
        await read_ready(client)  # the snapshots
    # bus-1 is shown on R1; its position of two minutes ago was on R3's trip, now settled.
    hub.revise([revision("bus-1", "R3", "R3-0815"), revision("bus-9", "R2", "R2-0900")])
    hub.tick()
    (to_r1,) = await read_ready(on_r1)
    assert to_r1["type"] == "revised"
    assert to_r1["revisions"] == [{
        "vehicle_id": "bus-1", "observed_at_s": T0 - 120, "state": "in_service",
        "route_id": "R3", "trip_id": "R3-0815", "service_date": "20260216", "delay_s": 412.0,
    }]  # fmt: skip
    (to_r2,) = await read_ready(on_r2)
    assert [r["vehicle_id"] for r in to_r2["revisions"]] == ["bus-9"]
    (to_all,) = await read_ready(everything)
    assert [r["vehicle_id"] for r in to_all["revisions"]] == ["bus-1", "bus-9"]
    hub.tick()  # sent once
    assert await read_ready(on_r1) == []
    assert hub.stats().revisions_sent == 4


async def test_a_client_with_a_full_queue_misses_revisions_and_they_are_counted() -> None:
    hub = Hub(tick_s=TICK_S, client_queue_size=1, clock=lambda: T0)
    client = hub.connect(EVERYTHING)  # its snapshot fills its queue
    hub.revise([revision("bus-1", "R1", "R1-0815")])
    hub.tick()
    assert [m["type"] for m in await read_ready(client)] == ["snapshot"]
    assert (hub.stats().revisions_sent, hub.stats().revisions_dropped) == (0, 1)
