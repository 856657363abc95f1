"""The ingest queue: bounded, in order per vehicle, newest ping per vehicle wins, drops counted."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict

import pytest

from tracker.ingest.queue import AsyncIngestQueue, LatestPerVehicleQueue, QueueStats, Received


def msg(vehicle_id: str, n: int) -> Received:
    return Received(f"v/{vehicle_id}/position", f"{vehicle_id}:{n}".encode(), float(n))


def labels(batch: list[Received]) -> list[str]:
    return [m.payload.decode() for m in batch]


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
        put=6, superseded=0, dropped_full=0, drained=6, waiting=0, vehicles_waiting=0, high_water=6
    )


def test_drain_takes_batches_in_order() -> None:
    queue = LatestPerVehicleQueue(10)
    for n in range(7):
        queue.put("a" if n % 2 else "b", msg("a" if n % 2 else "b", n))
    assert labels(queue.drain(3)) == ["b:0", "a:1", "b:2"]
    assert labels(queue.drain(3)) == ["a:3", "b:4", "a:5"]
    assert labels(queue.drain(3)) == ["b:6"]
    assert queue.drain(3) == []
    assert queue.stats().drained == 7


def test_full_queue_supersedes_the_vehicles_own_oldest_and_keeps_its_places() -> None:
    queue = LatestPerVehicleQueue(3)
    queue.put("a", msg("a", 0))
    queue.put("b", msg("b", 1))
    queue.put("a", msg("a", 2))
    assert queue.put("a", msg("a", 3))  # full: a:0 gives way, a's messages move up one place
    assert len(queue) == 3
    assert [(v, m.payload) for v, m in queue.waiting()] == [
        ("a", b"a:2"),
        ("b", b"b:1"),
        ("a", b"a:3"),
    ]
    assert labels(queue.drain(10)) == ["a:2", "b:1", "a:3"]
    stats = queue.stats()
    assert (stats.superseded, stats.dropped_full) == (1, 0)


def test_a_single_waiting_message_is_replaced_by_the_newer_one() -> None:
    queue = LatestPerVehicleQueue(2)
    queue.put("a", msg("a", 0))
    queue.put("b", msg("b", 1))
    queue.put("a", msg("a", 2))
    queue.put("a", msg("a", 3))
    assert labels(queue.drain(10)) == ["a:3", "b:1"]
    assert queue.stats().superseded == 2


def test_new_vehicle_takes_the_place_of_a_backlogged_vehicles_oldest() -> None:
    queue = LatestPerVehicleQueue(4)
    for n, vehicle in enumerate("aaab"):
        queue.put(vehicle, msg(vehicle, n))
    # Full, and c has nothing waiting: a gives up a:0 and its last place, which c takes.
    assert queue.put("c", msg("c", 4))
    assert labels(queue.drain(10)) == ["a:1", "a:2", "c:4", "b:3"]
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


@pytest.mark.parametrize("seed", range(20))
def test_random_traffic_keeps_every_promise(seed: int) -> None:
    """Bounded; in order per vehicle; each vehicle's newest message survives; all counted."""
    rng = random.Random(seed)
    capacity = rng.choice([1, 2, 3, 5, 8, 20])
    vehicles = [f"v{i}" for i in range(rng.choice([1, 2, 4, 10, 30]))]
    queue = LatestPerVehicleQueue(capacity)
    newest: dict[str, int] = {}  # each vehicle's newest message that the queue accepted
    out: dict[str, list[int]] = defaultdict(list)
    for n in range(2000):
        if rng.random() < 0.3:
            for m in queue.drain(rng.randint(1, capacity + 2)):
                vehicle_id, number = parse(m)
                out[vehicle_id].append(number)
                if newest.get(vehicle_id) == number:
                    del newest[vehicle_id]
            continue
        vehicle = rng.choice(vehicles)
        before = queue.stats()
        if queue.put(vehicle, msg(vehicle, n)):
            newest[vehicle] = n
        else:  # dropped only when full of messages that are each their vehicle's only one
            assert before.waiting == capacity
            assert before.vehicles_waiting == capacity
        assert len(queue) <= capacity
        waiting = set()
        for vehicle_id, m in queue.waiting():
            assert parse(m)[0] == vehicle_id
            waiting.add(parse(m))
        assert set(newest.items()) <= waiting
    for m in queue.drain(capacity):
        vehicle_id, number = parse(m)
        out[vehicle_id].append(number)
    for numbers in out.values():
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
    stats = queue.stats()
    assert stats.waiting == 0
    assert stats.put == stats.drained + stats.superseded + stats.dropped_full
    assert stats.high_water <= capacity


async def test_next_batch_waits_for_a_first_message() -> None:
    queue = AsyncIngestQueue(100)
    task = asyncio.create_task(queue.next_batch(10, max_wait_s=0.05))
    await asyncio.sleep(0.05)
    assert not task.done()
    queue.put_threadsafe("a", msg("a", 0))
    assert labels(await asyncio.wait_for(task, 1.0)) == ["a:0"]


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
        assert len(batch) <= 20
        for m in batch:
            vehicle_id, number = parse(m)
            out[vehicle_id].append(number)
    producer.join()
    stats = queue.stats()
    assert stats.high_water <= 50
    assert stats.put == total == stats.drained + stats.superseded + stats.dropped_full
    assert stats.dropped_full == 0  # 7 vehicles never fill 50 places with single messages
    for vehicle, numbers in out.items():
        assert numbers == sorted(numbers)
        last = max(n for n in range(total) if f"v{n % 7}" == vehicle)
        assert numbers[-1] == last  # the newest of every vehicle came through
