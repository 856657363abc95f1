"""The bounded queue between the MQTT network thread and the tracker: newest ping per vehicle wins.

`LatestPerVehicleQueue` is pure (no I/O, no clock, no threads). It holds at most `capacity`
messages, in arrival order, and `put` never blocks. When it is full, because the tracker has
fallen behind, a new message is kept at the cost of an older one *of a vehicle that has another,
newer message waiting*, so the live output always gets each vehicle's newest ping:

1. the vehicle already has messages waiting: its oldest is superseded (counted in `superseded`)
   and its newer ones move up one place in the line; the new one takes its last place. The
   vehicle keeps its places in the line, so falling behind does not push it to the back;
2. otherwise, some other vehicle has two or more messages waiting: that vehicle's oldest is
   superseded (counted in `superseded`) and it gives up its last place in the line to the new
   message;
3. otherwise every waiting message is the only one of its vehicle: the new message is dropped
   (counted in `dropped_full`). This only happens when more vehicles are behind than `capacity`.

Each vehicle's messages always come out in the order they went in; between vehicles the order is
that of arrival, except that in case 2 the newcomer may come out before older messages of other
vehicles.

A superseded message is not lost: the MQTT layer has already acknowledged it, and every accepted
ping is to be stored. It moves to a second, store-only list of at most `superseded_capacity`
messages (by default as many as `capacity`), which `drain` hands out beside the live ones
(`Drained.superseded`): the pipeline stores them unmatched, never broadcasts them. So when the
tracker cannot keep up, live output gives up intermediate positions, never the newest one, and the
history keeps them all. Only when that list is full too is the oldest superseded message dropped
for good (counted in `dropped_superseded`).
Storing a message costs a small fraction of matching it, so the list drains fast.

`AsyncIngestQueue` lets the paho network thread put into the queue and an asyncio task take
micro-batches out of it. The bound is real: the queue itself is shared under a lock, and the
thread wakes the event loop with at most one pending `call_soon_threadsafe` callback, so no
unbounded backlog of callbacks builds up in the loop either.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Received:
    """One MQTT message as it arrived, not decoded yet (decoding belongs to the pipeline)."""

    topic: str
    payload: bytes
    received_at_s: float  # epoch seconds (UTC) when the network thread got it
    # What to hand back to the MQTT adapter once the message is dealt with (its row committed,
    # or it was rejected): `MqttIngest.acknowledge`. None: nothing to acknowledge (QoS 0, HTTP).
    ack_id: int | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counters of a `LatestPerVehicleQueue` since it was made, and what waits in it now."""

    put: int  # messages offered to `put`
    superseded: int  # waiting messages overtaken by a newer one while full: to be stored only
    dropped_superseded: int  # superseded messages dropped: the store-only list was full too
    dropped_full: int  # new messages dropped: full, and no vehicle had a message to give up
    drained: int  # messages taken out by `drain` (live ones)
    drained_superseded: int  # superseded messages taken out by `drain` (to be stored only)
    waiting: int  # messages in the queue now (live ones)
    superseded_waiting: int  # superseded messages waiting to be stored now
    vehicles_waiting: int  # vehicles with at least one message in the queue now
    high_water: int  # the most messages that have waited at once


@dataclass(frozen=True, slots=True)
class Drained:
    """What `drain` takes out: live messages in order, and superseded ones to store only."""

    live: list[Received]
    superseded: list[Received] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.live) + len(self.superseded)


class _Slot:
    """A place in the line; the vehicle that owns it may change when the queue is full."""

    __slots__ = ("vehicle_id",)

    def __init__(self, vehicle_id: str) -> None:
        self.vehicle_id = vehicle_id


class _Waiting:
    """One vehicle's waiting messages and the places in the line they occupy (same length)."""

    __slots__ = ("messages", "slots")

    def __init__(self) -> None:
        self.messages: deque[Received] = deque()
        self.slots: deque[_Slot] = deque()


class LatestPerVehicleQueue:
    """A bounded FIFO of `(vehicle_id, Received)` where the newest message per vehicle wins.

    Not thread-safe: `AsyncIngestQueue` guards it with a lock.
    """

    def __init__(self, capacity: int, superseded_capacity: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, not {capacity}")
        if superseded_capacity is None:
            superseded_capacity = capacity
        if superseded_capacity < 0:
            raise ValueError(f"superseded capacity must be at least 0, not {superseded_capacity}")
        self.capacity = capacity
        self.superseded_capacity = superseded_capacity
        self._superseded_waiting: deque[Received] = deque()  # store only, oldest first
        self._line: deque[_Slot] = deque()  # places in arrival order, one per waiting message
        self._vehicles: dict[str, _Waiting] = {}
        # Vehicles with two or more messages waiting, oldest backlog first (a dict as ordered set).
        self._backlogged: dict[str, None] = {}
        self._put = 0
        self._superseded = 0
        self._dropped_superseded = 0
        self._dropped_full = 0
        self._drained = 0
        self._drained_superseded = 0
        self._high_water = 0

    def __len__(self) -> int:
        """Messages waiting: live ones and superseded ones (the latter to be stored only)."""
        return len(self._line) + len(self._superseded_waiting)

    def put(self, vehicle_id: str, message: Received) -> bool:
        """Add `message`; False if it was dropped because the queue is full. Never blocks."""
        self._put += 1
        own = self._vehicles.get(vehicle_id)
        if len(self._line) < self.capacity:
            if own is None:
                own = self._vehicles[vehicle_id] = _Waiting()
            slot = _Slot(vehicle_id)
            self._line.append(slot)
            own.slots.append(slot)
            own.messages.append(message)
            if len(own.messages) == 2:
                self._backlogged[vehicle_id] = None
            self._high_water = max(self._high_water, len(self._line))
            return True
        if own is not None:
            # Case 1: the vehicle's own oldest message gives way; its places stay the same.
            self._supersede(own.messages.popleft())
            own.messages.append(message)
            return True
        if self._backlogged:
            # Case 2: a vehicle with a backlog gives up its oldest message and its last place.
            donor_id = next(iter(self._backlogged))
            donor = self._vehicles[donor_id]
            self._supersede(donor.messages.popleft())
            slot = donor.slots.pop()
            if len(donor.messages) < 2:
                del self._backlogged[donor_id]
            slot.vehicle_id = vehicle_id
            own = self._vehicles[vehicle_id] = _Waiting()
            own.slots.append(slot)
            own.messages.append(message)
            return True
        # Case 3: every waiting message is its vehicle's only one.
        self._dropped_full += 1
        return False

    def _supersede(self, message: Received) -> None:
        """Move an overtaken message to the store-only list (its oldest gives way when full)."""
        self._superseded += 1
        if len(self._superseded_waiting) >= self.superseded_capacity:
            self._dropped_superseded += 1
            if not self._superseded_waiting:
                return
            self._superseded_waiting.popleft()
        self._superseded_waiting.append(message)

    def drain(self, max_items: int) -> Drained:
        """Take up to `max_items` live messages out, oldest place in the line first, and up to
        `max_items` superseded ones (oldest first)."""
        batch: list[Received] = []
        while self._line and len(batch) < max_items:
            slot = self._line.popleft()
            vehicle_id = slot.vehicle_id
            waiting = self._vehicles[vehicle_id]
            # A vehicle's places are in line order, so the one just taken is its first.
            waiting.slots.popleft()
            batch.append(waiting.messages.popleft())
            left = len(waiting.messages)
            if left == 0:
                del self._vehicles[vehicle_id]
            elif left == 1:
                self._backlogged.pop(vehicle_id, None)
        self._drained += len(batch)
        superseded: list[Received] = []
        side = self._superseded_waiting
        if side:
            if len(side) <= max_items:
                superseded = list(side)
                side.clear()
            else:
                superseded = [side.popleft() for _ in range(max_items)]
            self._drained_superseded += len(superseded)
        return Drained(batch, superseded)

    def waiting(self) -> list[tuple[str, Received]]:
        """What `drain` would return, with vehicle ids, without taking anything out (O(n))."""
        taken: dict[str, int] = {}
        out: list[tuple[str, Received]] = []
        for slot in self._line:
            k = taken.get(slot.vehicle_id, 0)
            taken[slot.vehicle_id] = k + 1
            out.append((slot.vehicle_id, self._vehicles[slot.vehicle_id].messages[k]))
        return out

    def stats(self) -> QueueStats:
        return QueueStats(
            put=self._put,
            superseded=self._superseded,
            dropped_superseded=self._dropped_superseded,
            dropped_full=self._dropped_full,
            drained=self._drained,
            drained_superseded=self._drained_superseded,
            waiting=len(self._line),
            superseded_waiting=len(self._superseded_waiting),
            vehicles_waiting=len(self._vehicles),
            high_water=self._high_water,
        )


class AsyncIngestQueue:
    """A `LatestPerVehicleQueue` filled from any thread and emptied by one asyncio task.

    Make it inside the event loop that will consume it. One consumer only.
    """

    def __init__(self, capacity: int, superseded_capacity: int | None = None) -> None:
        self._queue = LatestPerVehicleQueue(capacity, superseded_capacity)
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._wake_at = 1  # the consumer wants waking once this many messages wait
        self._wake_pending = False  # a wake-up callback is already scheduled on the loop

    @property
    def capacity(self) -> int:
        return self._queue.capacity

    def put_threadsafe(self, vehicle_id: str, message: Received) -> bool:
        """Add a message from any thread (the paho network thread); False if it was dropped."""
        with self._lock:
            kept = self._queue.put(vehicle_id, message)
            if self._wake_pending or len(self._queue) < self._wake_at:
                return kept
            self._wake_pending = True
        self._loop.call_soon_threadsafe(self._wake)
        return kept

    def _wake(self) -> None:
        with self._lock:
            self._wake_pending = False
        self._ready.set()

    async def _wait_for(self, count: int) -> None:
        """Wait until at least `count` messages are in the queue (spurious returns allowed)."""
        with self._lock:
            if len(self._queue) >= count:
                return
            self._wake_at = count
            self._ready.clear()
        await self._ready.wait()

    async def next_batch(self, max_items: int, max_wait_s: float) -> Drained:
        """The next batch of 1 to `max_items` live messages in order (and superseded ones).

        Waits (without limit) for a first message, and for the batch to fill until `max_wait_s`
        after the call (not at all once that has passed), so a busy tracker works in batches and
        a quiet one answers at once.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items}")
        deadline = self._loop.time() + max_wait_s
        while len(self) == 0:
            await self._wait_for(1)
        while len(self) < max_items:
            remaining_s = deadline - self._loop.time()
            if remaining_s <= 0:
                break
            try:
                async with asyncio.timeout(remaining_s):
                    await self._wait_for(max_items)
            except TimeoutError:
                break
        with self._lock:
            self._wake_at = 1
            return self._queue.drain(max_items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    def stats(self) -> QueueStats:
        with self._lock:
            return self._queue.stats()
