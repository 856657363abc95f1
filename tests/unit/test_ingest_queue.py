"""The ingest queue: bounded, in order per vehicle, newest ping per vehicle wins, drops counted."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict

import pytest

from tracker.ingest.queue import (
    AsyncIngestQueue,
    Drained,
    LatestPerVehicleQueue,
    QueueStats,
    Received,
)


def msg(vehicle_id: str, n: int) -> Received:
    return Received(f"v/{vehicle_id}/position", f"{vehicle_id}:{n}".encode(), float(n))


def labels(batch: Drained) -> list[str]:
    """The live messages of a batch."""
    return [m.payload.decode() for m in batch.live]


def stored_only(batch: Drained) -> list[str]:
    """The superseded messages of a batch (to be stored, not matched)."""
    return [m.payload.decode() for m in batch.superseded]


def parse(message: Received) -> tuple[str, int]:
    vehicle_id, number = message.payload.decode().split(":")
    return vehicle_id, int(number)


def test_under_capacity_keeps_arrival_order() -> None:
    queue = LatestPerVehicleQueue(10)
    for n, vehicle in enumerate("abacba"):
        assert queue.put(vehicle, msg(vehicle, n))
    assert labels(queue.drain(100)) == ["a:0", "b:1", "a:2", "c:3", "b:4", "a:5"]
    assert len(queue) == 0
    assert queue.stats() == QueueStats(
        put=6,
        superseded=0,
        dropped_superseded=0,
        dropped_full=0,
        drained=6,
        drained_superseded=0,
        waiting=0,
        superseded_waiting=0,
        vehicles_waiting=0,
        high_water=6,
    )


def test_drain_takes_batches_in_order() -> None:
    queue = LatestPerVehicleQueue(10)
    for n in range(7):
        queue.put("a" if n % 2 else "b", msg("a" if n % 2 else "b", n))
    assert labels(queue.drain(3)) == ["b:0", "a:1", "b:2"]
    assert labels(queue.drain(3)) == ["a:3", "b:4", "a:5"]
    assert labels(queue.drain(3)) == ["b:6"]
    assert queue.drain(3) == Drained([], [])
    assert queue.stats().drained == 7


def test_full_queue_supersedes_the_vehicles_own_oldest_and_keeps_its_places() -> None:
    queue = LatestPerVehicleQueue(3)
    queue.put("a", msg("a", 0))
    queue.put("b", msg("b", 1))
    queue.put("a", msg("a", 2))
    assert queue.put("a", msg("a", 3))  # full: a:0 gives way, a's messages move up one place
    assert (queue.stats().waiting, queue.stats().superseded_waiting, len(queue)) == (3, 1, 4)
    assert [(v, m.payload) for v, m in queue.waiting()] == [
        ("a", b"a:2"),
        ("b", b"b:1"),
        ("a", b"a:3"),
    ]
    batch = queue.drain(10)
    assert labels(batch) == ["a:2", "b:1", "a:3"]
    assert stored_only(batch) == ["a:0"]  # stored, not matched nor broadcast
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_full, stats.drained_superseded) == (1, 0, 1)


def test_a_single_waiting_message_is_replaced_by_the_newer_one() -> None:
    queue = LatestPerVehicleQueue(2)
    queue.put("a", msg("a", 0))
    queue.put("b", msg("b", 1))
    queue.put("a", msg("a", 2))
    queue.put("a", msg("a", 3))
    batch = queue.drain(10)
    assert labels(batch) == ["a:3", "b:1"]
    assert stored_only(batch) == ["a:0", "a:2"]
    assert queue.stats().superseded == 2


def test_new_vehicle_takes_the_place_of_a_backlogged_vehicles_oldest() -> None:
    queue = LatestPerVehicleQueue(4)
    for n, vehicle in enumerate("aaab"):
        queue.put(vehicle, msg(vehicle, n))
    # Full, and c has nothing waiting: a gives up a:0 and its last place, which c takes.
    assert queue.put("c", msg("c", 4))
    batch = queue.drain(10)
    assert labels(batch) == ["a:1", "a:2", "c:4", "b:3"]
    assert stored_only(batch) == ["a:0"]
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_full, stats.waiting) == (1, 0, 0)


def test_new_vehicle_is_dropped_when_every_waiting_message_is_the_only_one() -> None:
    queue = LatestPerVehicleQueue(2)
    queue.put("a", msg("a", 0))
    queue.put("b", msg("b", 1))
    assert not queue.put("c", msg("c", 2))
    assert labels(queue.drain(10)) == ["a:0", "b:1"]
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_full) == (0, 1)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        LatestPerVehicleQueue(0)
    with pytest.raises(ValueError, match="superseded capacity"):
        LatestPerVehicleQueue(1, superseded_capacity=-1)


def test_superseded_messages_wait_in_a_bounded_list_whose_oldest_gives_way() -> None:
    queue = LatestPerVehicleQueue(1, superseded_capacity=2)
    for n in range(5):
        assert queue.put("a", msg("a", n))
    # a:0, a:1, a:2, a:3 were superseded in turn; the list holds 2, so a:0 and a:1 are lost.
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_superseded, stats.superseded_waiting) == (4, 2, 2)
    batch = queue.drain(1)  # at most max_items of each kind
    assert (labels(batch), stored_only(batch)) == (["a:4"], ["a:2"])
    batch = queue.drain(1)
    assert (labels(batch), stored_only(batch)) == ([], ["a:3"])
    stats = queue.stats()
    assert stats.put == stats.drained + stats.drained_superseded + stats.dropped_superseded
    assert len(queue) == 0


def test_superseded_capacity_is_the_queues_by_default() -> None:
    assert LatestPerVehicleQueue(7).superseded_capacity == 7


@pytest.mark.parametrize("seed", range(20))
def test_random_traffic_keeps_every_promise(seed: int) -> None:
    """Bounded; in order per vehicle; each vehicle's newest message survives; all counted."""
    rng = random.Random(seed)
    capacity = rng.choice([1, 2, 3, 5, 8, 20])
    vehicles = [f"v{i}" for i in range(rng.choice([1, 2, 4, 10, 30]))]
    queue = LatestPerVehicleQueue(capacity)
    newest: dict[str, int] = {}  # each vehicle's newest message that the queue accepted
    out: dict[str, list[int]] = defaultdict(list)
    accepted: set[int] = set()
    seen: list[int] = []  # every message that came out, live or superseded
    for n in range(2000):
        if rng.random() < 0.3:
            batch = queue.drain(rng.randint(1, capacity + 2))
            seen.extend(parse(m)[1] for m in batch.superseded)
            for m in batch.live:
                vehicle_id, number = parse(m)
                out[vehicle_id].append(number)
                seen.append(number)
                if newest.get(vehicle_id) == number:
                    del newest[vehicle_id]
            continue
        vehicle = rng.choice(vehicles)
        before = queue.stats()
        if queue.put(vehicle, msg(vehicle, n)):
            newest[vehicle] = n
            accepted.add(n)
        else:  # dropped only when full of messages that are each their vehicle's only one
            assert before.waiting == capacity
            assert before.vehicles_waiting == capacity
        assert queue.stats().waiting <= capacity
        assert queue.stats().superseded_waiting <= capacity
        waiting = set()
        for vehicle_id, m in queue.waiting():
            assert parse(m)[0] == vehicle_id
            waiting.add(parse(m))
        assert set(newest.items()) <= waiting
    while len(queue):
        batch = queue.drain(capacity)
        seen.extend(parse(m)[1] for m in batch.superseded)
        for m in batch.live:
            vehicle_id, number = parse(m)
            out[vehicle_id].append(number)
            seen.append(number)
    for numbers in out.values():
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
    stats = queue.stats()
    assert stats.waiting == stats.superseded_waiting == 0
    # Each accepted message came out once (live or to be stored), or was dropped and counted.
    assert len(seen) == len(set(seen))
    assert set(seen) <= accepted
    assert len(accepted) - len(seen) == stats.dropped_superseded
    assert stats.put == len(accepted) + stats.dropped_full
    assert stats.drained == stats.put - stats.superseded - stats.dropped_full
    assert stats.high_water <= capacity


async def test_next_batch_waits_for_a_first_message() -> None:
    queue = AsyncIngestQueue(100)
    task = asyncio.create_task(queue.next_batch(10, max_wait_s=0.05))
    await asyncio.sleep(0.05)
    assert not task.done()
    queue.put_threadsafe("a", msg("a", 0))
    assert labels(await asyncio.wait_for(task, 1.0)) == ["a:0"]


async def test_next_batch_takes_the_first_message_at_once_when_max_wait_has_passed() -> None:
    """`max_wait_s` counts from the call: the pipeline takes a batch every interval, and the
    time spent waiting for a first message (or processing the previous batch) counts."""
    queue = AsyncIngestQueue(100)
    task = asyncio.create_task(queue.next_batch(10, max_wait_s=0.05))
    await asyncio.sleep(0.1)
    assert not task.done()
    queue.put_threadsafe("a", msg("a", 0))
    for _ in range(10):  # a few turns of the event loop, no waiting
        await asyncio.sleep(0)
    assert task.done()
    assert labels(task.result()) == ["a:0"]


async def test_next_batch_returns_as_soon_as_the_batch_is_full() -> None:
    queue = AsyncIngestQueue(100)
    for n in range(3):
        queue.put_threadsafe("a", msg("a", n))
    # A full batch does not wait out max_wait_s (an hour here; the test would time out).
    batch = await asyncio.wait_for(queue.next_batch(3, max_wait_s=3600.0), 60.0)
    assert labels(batch) == ["a:0", "a:1", "a:2"]


async def test_next_batch_gathers_for_at_most_max_wait() -> None:
    queue = AsyncIngestQueue(100)
    queue.put_threadsafe("a", msg("a", 0))
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, queue.put_threadsafe, "b", msg("b", 1))
    started = time.monotonic()
    batch = await queue.next_batch(10, max_wait_s=0.15)
    elapsed_s = time.monotonic() - started
    assert labels(batch) == ["a:0", "b:1"]
    assert 0.1 <= elapsed_s < 1.0


async def test_messages_put_from_another_thread_arrive_in_order_per_vehicle() -> None:
    queue = AsyncIngestQueue(50)
    total = 5000

    def produce() -> None:
        for n in range(total):
            vehicle = f"v{n % 7}"
            queue.put_threadsafe(vehicle, msg(vehicle, n))

    producer = threading.Thread(target=produce)
    producer.start()
    out: dict[str, list[int]] = defaultdict(list)
    while producer.is_alive() or len(queue):
        try:
            batch = await asyncio.wait_for(queue.next_batch(20, max_wait_s=0.005), 0.5)
        except TimeoutError:
            continue
        assert len(batch.live) <= 20
        assert len(batch.superseded) <= 20
        for m in batch.live:
            vehicle_id, number = parse(m)
            out[vehicle_id].append(number)
    producer.join()
    stats = queue.stats()
    assert stats.high_water <= 50
    assert stats.put == total == stats.drained + stats.superseded + stats.dropped_full
    assert stats.superseded == stats.drained_superseded + stats.dropped_superseded
    assert stats.dropped_full == 0  # 7 vehicles never fill 50 places with single messages
    for vehicle, numbers in out.items():
        assert numbers == sorted(numbers)
        last = max(n for n in range(total) if f"v{n % 7}" == vehicle)
        assert numbers[-1] == last  # the newest of every vehicle came through
