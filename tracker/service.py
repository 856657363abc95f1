"""The path of a ping through the live tracker, in one place: `Pipeline.process`.

    MQTT message ─▶ decode ─▶ validate + match ─▶ store ─▶ broadcast
    (tracker.ingest) (wire)   (core.matcher)      (StoreWriter ─▶ tracker.store)
                                                              (tracker.live.hub ─▶ /ws/live)

Messages arrive in micro-batches (`Settings.batch_interval_s`, 50 ms by default) from the MQTT
adapter's bounded queue. Each batch is decoded, matched (in the matcher's own process by
default, or in a worker thread: `tracker.match_worker`; either way the event loop keeps serving
websockets and HTTP while the matcher computes), handed to the store writer and published to
the websocket hub: storing and broadcasting are per batch, never per ping.

When the tracker falls behind, the queue supersedes a vehicle's older waiting pings by its newest
(`tracker.ingest.queue`) and hands the superseded ones over beside the batch: they are decoded,
validated and stored as they came (state `not_matched`, reason `superseded`), never matched nor
broadcast, so the history keeps every accepted ping while the live view keeps up.

A ping older than its vehicle's newest (a phone's buffer, sent once it is back in coverage) is
late: it is stored at once as it came (state `not_matched`, reason `late`), never broadcast (the
live map does not go back in time), and the engine matches it later with hindsight together with
the rest of its vehicle's stretch (`tracker.core.late`); those answers revise its stored row.

The store writer runs in its own task with its own bounded queue of batches, so a slow or
unreachable database never holds up live output; while the database is down it keeps
`max_batches` batches and retries them with backoff, and past that drops the oldest batch and
counts it. Every ping that reaches the database is stored exactly once: the store ignores a
second copy of a (vehicle, timestamp). A batch's MQTT messages are acknowledged to the broker
only once its rows are committed (`StoreWriter(on_stored=...)`, `MqttIngest.acknowledge`): what
a killed tracker held in memory, the broker sends again.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from tracker.core.model import Match, Ping, Reason, State
from tracker.core.stop_events import StopEvent
from tracker.core.validate import validate_ping
from tracker.errors import StoreError
from tracker.ingest.devices import DeviceMap
from tracker.ingest.mqtt import Backoff
from tracker.ingest.queue import AsyncIngestQueue, Drained, Received
from tracker.live.hub import Hub
from tracker.live.insight import Insight
from tracker.live.vehicle import LiveVehicle
from tracker.match_worker import BatchMatcher
from tracker.store.postgres import Store
from tracker.wire import DEFAULT_TOPIC_PREFIX, Ignored, WireError, decode_message

log = logging.getLogger(__name__)

Clock = Callable[[], float]
STORE_BACKOFF = Backoff(first_s=0.5, max_s=15.0)
StoredBatch = list[tuple[Ping, Match]]


@dataclass(frozen=True, slots=True)
class Problem:
    """A rejected message, kept (the last few hundred) for the operator's problem list."""

    received_at_s: float
    vehicle_id: str | None
    reason: str
    detail: str


BATCH_EDGES_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_EDGES_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Counts of observed values below each edge, their sum and count (for `/metrics`, which
    turns them into a Prometheus histogram; cheap enough to observe every message)."""

    __slots__ = ("count", "counts", "edges", "total")

    def __init__(self, edges: Sequence[float]) -> None:
        self.edges = tuple(edges)
        self.counts = [0] * (len(self.edges) + 1)  # the last: above every edge
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.count += 1
        self.total += value


@dataclass
class PipelineStats:
    """Counters since start. Volumes are counted here, never logged per message."""

    batches: int = 0
    messages: int = 0  # live and superseded
    pings_matched: int = 0
    superseded_stored: int = 0  # superseded pings handed to the store unmatched
    late: int = 0  # pings older than their vehicle's newest: stored, never broadcast
    late_matched: int = 0  # late pings answered with hindsight afterwards (revising their rows)
    revised: int = 0  # answers that settled differently, revised in the store
    stop_events: int = 0  # arrivals and departures at stops detected
    by_state: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    ignored: int = 0  # messages that are no position and no mistake (an OwnTracks lwt): left alone
    vehicles_expired: int = 0
    last_batch_size: int = 0
    last_batch_s: float = 0.0  # wall time to decode + match + hand over one batch
    max_batch_s: float = 0.0
    batch_seconds: Histogram = field(default_factory=lambda: Histogram(BATCH_EDGES_S))
    # from receiving a message to handing its answer to the hub (`/metrics`)
    latency_seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_EDGES_S))


@dataclass(frozen=True, slots=True)
class _Queued:
    """A batch waiting to be written: its rows, when it was received, and revisions."""

    rows: StoredBatch
    received_at_s: float
    revised: Sequence[Match]
    stop_events: Sequence[StopEvent]
    acks: Sequence[int]  # of the messages it came from: acknowledged once it is committed

    @property
    def size(self) -> int:
        """Rows to write, of every kind."""
        return len(self.rows) + len(self.revised) + len(self.stop_events)


class StoreWriter:
    """Writes matched batches to the database in its own task (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        max_batches: int = 2400,
        write_every_s: float = 0.25,
        max_rows_per_write: int = 10_000,
        clock: Clock = time.time,
        backoff: Backoff = STORE_BACKOFF,
        on_stored: Callable[[Sequence[int]], None] | None = None,
    ) -> None:
        """`on_stored`: called with a batch's `acks` once it is committed (the MQTT adapter's
        `acknowledge`), or at once for a batch with nothing to write."""
        self._store = store
        self._on_stored = on_stored
        self._pending: deque[_Queued] = deque()
        self._max_batches = max_batches
        self._write_every_s = write_every_s
        self._max_rows_per_write = max_rows_per_write
        self._clock = clock
        self._backoff = backoff
        self._wake = asyncio.Event()
        self._rng = random.Random()
        self.stored = 0
        self.duplicates = 0
        self.dropped_batches = 0
        self.dropped_pings = 0
        self.revised = 0  # stored answers revised (settled differently)
        self.stop_events = 0  # stop events stored
        self.failures = 0
        self.healthy = True

    @property
    def pending_batches(self) -> int:
        return len(self._pending)

    def submit(
        self,
        rows: StoredBatch,
        received_at_s: float,
        revised: Sequence[Match] = (),
        stop_events: Sequence[StopEvent] = (),
        acks: Sequence[int] = (),
    ) -> None:
        """Queue one batch for writing, with the revisions of answers stored before, the stop
        events detected and the `acks` of its messages; never blocks. When full the oldest batch
        is dropped, and its messages are not acknowledged (the broker sends them again after
        the next reconnect)."""
        if not rows and not revised and not stop_events:
            self._acknowledge(acks)  # rejected or ignored messages: nothing to wait for
            return
        if len(self._pending) >= self._max_batches:
            dropped = self._pending.popleft()
            self.dropped_batches += 1
            self.dropped_pings += len(dropped.rows)
            log.warning("store queue full: dropped a batch of %d pings", len(dropped.rows))
        self._pending.append(_Queued(rows, received_at_s, revised, stop_events, acks))
        self._wake.set()

    async def run(self) -> None:
        """Write queued batches in order, retrying a failed write with backoff, until cancelled.

        At most one write (one transaction) per `write_every_s`: the batches queued meanwhile
        are written together (up to `max_rows_per_write` rows, each row's `received_at` that of
        the first of them), so the cost per transaction does not grow as batches get smaller.
        """
        failures = 0
        loop = asyncio.get_running_loop()
        next_write_at = loop.time()
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(max(0.0, next_write_at - loop.time()))
            next_write_at = loop.time() + self._write_every_s
            writing = self._next_write()
            rows = writing[0].rows if len(writing) == 1 else [r for b in writing for r in b.rows]
            revised = [m for b in writing for m in b.revised]
            events = [e for b in writing for e in b.stop_events]
            try:
                result = await self._store.write_batch(
                    rows, received_at_s=writing[0].received_at_s, revised=revised,
                    stop_events=events,
                )  # fmt: skip
            except Exception as e:
                # StoreError: the database cannot be reached. Anything else is a write it
                # refused (privileges, read-only after a failover, disk full, ...): retried
                # alike, so that the service lives on; logged with its traceback, once.
                failures += 1
                self.failures += 1
                if self.healthy:
                    log.warning("database write failed, will retry: %s", e,
                                exc_info=not isinstance(e, StoreError))  # fmt: skip
                self.healthy = False
                await asyncio.sleep(self._backoff.delay_s(failures, self._rng))
                continue
            if not self.healthy:
                log.info("database writes work again after %d failures", failures)
            failures = 0
            self.healthy = True
            for batch in writing:  # unless `submit` dropped them meanwhile, being full
                if self._pending and self._pending[0] is batch:
                    self._pending.popleft()
            self.stored += result.stored
            self.duplicates += result.duplicates
            self.revised += result.revised
            self.stop_events += result.stop_events
            for batch in writing:  # committed: the broker may forget them
                self._acknowledge(batch.acks)

    def _acknowledge(self, acks: Sequence[int]) -> None:
        if acks and self._on_stored is not None:
            self._on_stored(acks)

    def _next_write(self) -> list[_Queued]:
        """The oldest queued batches, as many as fit in one write (at least one)."""
        writing = [self._pending[0]]
        rows = writing[0].size
        for batch in itertools.islice(self._pending, 1, None):
            rows += batch.size
            if rows > self._max_rows_per_write:
                break
            writing.append(batch)
        return writing

    async def flush(self, timeout_s: float) -> bool:
        """Wait until every queued batch is written (for shutdown); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self._pending


class Pipeline:
    """decode → validate + match → store → broadcast, for one micro-batch at a time."""

    def __init__(
        self,
        matcher: BatchMatcher,
        writer: StoreWriter,
        hub: Hub,
        *,
        clock: Clock = time.time,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        owntracks_prefix: str = "",
        devices: DeviceMap | None = None,
        hide_after_s: float = 600.0,
        insight: Insight | None = None,
        idle_step_s: float = 1.0,
    ) -> None:
        """`idle_step_s`: with no message for that long, the engine steps with none (so that
        answers settle and alerts about silent buses and trips with none come as time passes)."""
        self.matcher = matcher
        self.writer = writer
        self.hub = hub
        self.insight = insight if insight is not None else Insight()
        self.idle_step_s = idle_step_s
        self.clock = clock
        self.topic_prefix = topic_prefix
        self.owntracks_prefix = owntracks_prefix  # OwnTracks' topics decoded too ("": not)
        self.devices = devices  # phones' vehicles (tracker.ingest.devices); None: as themselves
        self.hide_after_s = hide_after_s
        self.stats = PipelineStats()
        self.problems: deque[Problem] = deque(maxlen=500)
        self._last_seen_s: dict[str, float] = {}
        self._processing = False  # a batch taken from the queue is being processed

    async def process(
        self, messages: Sequence[Received], superseded: Sequence[Received] = ()
    ) -> None:
        """The whole path of one batch of MQTT messages; `superseded` ones are only stored."""
        started = time.perf_counter()
        now_s = self.clock()
        pings = self._decode(messages, now_s)
        # validate + match (and stop events, predictions, operations: `tracker.core.engine`),
        # off the event loop: only this task uses the engine; older answers that settled
        # differently come back as revisions
        step = await self.matcher.match_batch(pings, now_s)
        matches, revised = step.matches, step.revised
        kept: StoredBatch = []
        late: StoredBatch = []  # older than their vehicle's newest: stored, not broadcast
        for ping, match in zip(pings, matches, strict=True):
            if match.state is State.REJECTED:
                assert match.reason is not None
                self._reject(now_s, ping.vehicle_id, match.reason, match.detail or "")
            elif match.reason is Reason.LATE:
                late.append((ping, match))
            else:
                kept.append((ping, match))
                self.stats.by_state[match.state.value] += 1
                self._last_seen_s[ping.vehicle_id] = max(
                    ping.timestamp, self._last_seen_s.get(ping.vehicle_id, 0.0)
                )
        stored_only = self._superseded(superseded, now_s)
        # store: late pings' hindsight answers revise their rows, stored in an earlier batch
        acks = [m.ack_id for m in itertools.chain(messages, superseded) if m.ack_id is not None]
        self.writer.submit(kept + late + stored_only, received_at_s=now_s,
                           revised=[*revised, *step.late_matched],
                           stop_events=step.stop_events, acks=acks)  # fmt: skip
        self.hub.publish(LiveVehicle.from_match(p, m) for p, m in kept)  # broadcast
        handed_s = time.time()
        for message in messages:
            self.stats.latency_seconds.observe(handed_s - message.received_at_s)
        self.hub.revise(revised)
        self.insight.update(step)  # predictions, headways, alerts: for the API
        if step.assessment is not None:
            self.hub.announce(self.insight.shown(step.assessment.changes))  # no cancelled ghost
        self.stats.revised += len(revised)
        self.stats.stop_events += len(step.stop_events)
        self._expire(now_s)
        self.stats.superseded_stored += len(stored_only)
        self.stats.late += len(late)
        self.stats.late_matched += len(step.late_matched)
        self._count(len(messages) + len(superseded), len(pings), time.perf_counter() - started)

    async def run(self, queue: AsyncIngestQueue, *, max_pings: int, interval_s: float) -> None:
        """Take micro-batches from the ingest queue and process them, until cancelled.

        A batch is taken `interval_s` after the previous one was, or at once if processing that
        one took longer: the time spent processing counts towards the next batch's gathering, so
        under load the batches grow only as much as the work does, not by `interval_s` more.
        """
        loop = asyncio.get_running_loop()
        taken_at_s = -math.inf
        while True:
            wait_s = max(0.0, taken_at_s + interval_s - loop.time())
            try:
                async with asyncio.timeout(max(wait_s, self.idle_step_s)):
                    batch = await queue.next_batch(max_pings, wait_s)
            except TimeoutError:  # nothing came: the engine steps all the same
                batch = Drained([], [])
            taken_at_s = loop.time()
            self._processing = True
            try:
                await self.process(batch.live, batch.superseded)
            except Exception:  # a task boundary: log with the traceback, count, go on
                log.exception("a batch of %d messages failed", len(batch))
                self.stats.messages += len(batch)
                self.stats.rejected_by_reason["internal_error"] += len(batch)
            finally:
                self._processing = False

    async def drain(self, queue: AsyncIngestQueue, poll_s: float = 0.02) -> None:
        """Wait until every message received is processed: the queue empty and no batch being
        processed (for shutdown, once the broker connection is closed)."""
        while len(queue) or self._processing:
            await asyncio.sleep(poll_s)

    def remember(self, vehicles: Iterable[LiveVehicle]) -> None:
        """Vehicles known from before (the database, at start): they expire like the others."""
        for vehicle in vehicles:
            self._last_seen_s[vehicle.vehicle_id] = vehicle.observed_at_s

    def _decode(self, messages: Sequence[Received], now_s: float) -> list[Ping]:
        pings: list[Ping] = []
        for message in messages:
            decoded = decode_message(message.topic, message.payload, self.topic_prefix,
                                     owntracks_prefix=self.owntracks_prefix,
                                     devices=self.devices)  # fmt: skip
            if isinstance(decoded, Ignored):
                self.stats.ignored += 1
            elif isinstance(decoded, WireError):
                self._reject(now_s, decoded.vehicle_id, decoded.reason, decoded.detail)
            else:
                pings.append(decoded)
        return pings

    def _superseded(self, messages: Sequence[Received], now_s: float) -> StoredBatch:
        """Superseded pings, decoded and validated, as rows stored unmatched (never broadcast)."""
        rows: StoredBatch = []
        max_future_s = self.matcher.config.matcher.max_future_s
        for ping in self._decode(messages, now_s):
            problem = validate_ping(ping, now=now_s, max_future_s=max_future_s)
            if problem is not None:
                self._reject(now_s, ping.vehicle_id, *problem)
                continue
            match = Match(ping.vehicle_id, ping.timestamp, State.NOT_MATCHED, Reason.SUPERSEDED)
            rows.append((ping, match))
        return rows

    def reject(self, vehicle_id: str | None, reason: Reason, detail: str) -> None:
        """A message refused before it reached the queue (an HTTP ingest's that cannot be a
        position): counted and listed like the pipeline's own rejections."""
        self.stats.messages += 1
        self._reject(self.clock(), vehicle_id, reason, detail)

    def ignore(self, vehicle_id: str | None, detail: str) -> None:
        """A message an HTTP ingest left alone (no position, no mistake): counted as ignored."""
        self.stats.messages += 1
        self.stats.ignored += 1
        log.debug("ignored a message of %s: %s", vehicle_id, detail)

    def _reject(self, now_s: float, vehicle_id: str | None, reason: Reason, detail: str) -> None:
        self.stats.rejected_by_reason[reason.value] += 1
        self.problems.append(Problem(now_s, vehicle_id, reason.value, detail))
        log.debug("rejected a ping of %s: %s (%s)", vehicle_id, reason.value, detail)

    def _expire(self, now_s: float) -> None:
        """Vehicles silent for `hide_after_s` leave the live view."""
        gone = [v for v, seen_s in self._last_seen_s.items() if now_s - seen_s > self.hide_after_s]
        if gone:
            for vehicle_id in gone:
                del self._last_seen_s[vehicle_id]
            self.hub.remove(gone)
            self.stats.vehicles_expired += len(gone)

    def _count(self, messages: int, pings: int, seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.messages += messages
        stats.pings_matched += pings
        stats.last_batch_size = messages
        stats.last_batch_s = seconds
        stats.max_batch_s = max(stats.max_batch_s, seconds)
        if messages:
            stats.batch_seconds.observe(seconds)
