"""GTFS-realtime VehiclePositions in: poll an agency's feed into the tracker's pipeline.

Many agencies already publish where their buses are as a GTFS-realtime VehiclePositions feed
(protobuf over HTTP, a full snapshot each time). `GtfsRtPoller` fetches one such URL every
`every_s` seconds, turns each VehiclePosition entity into the tracker's own position payload
(`tracker.wire`) and puts it on the same ingest queue as MQTT messages and the phone apps'
HTTP positions, so the pipeline decodes, validates, matches, stores and shows it as any ping,
with the same rejection reasons.

- **Vehicles**: ``vehicle.vehicle.id``, else ``vehicle.vehicle.label``, else the entity's id.
  Timestamp: the vehicle's, else the feed header's (some feeds leave the vehicle's at 0).
  Speed (m/s, as in GTFS-realtime) and bearing when the feed has them; trip_id and route_id as
  hints, which the matcher checks as it checks any ping's.
- **Each position once**: a feed repeats an unchanged position for many polls, so the poller
  remembers the last timestamp it sent for each vehicle and sends an entity only when its
  timestamp is newer (counted: ``sent``, ``unchanged``, and ``skipped_by_reason`` with
  ``older_than_sent``). An entity that cannot be a position is skipped with its reason
  (``no_position``, ``no_timestamp``, ``no_vehicle_id``, ``bad_vehicle_id``, ``deleted``,
  ``not_a_vehicle_position``: a TripUpdate or an Alert); a position that can be sent but is
  not plausible (a latitude of 91, a time in the future) goes on to the pipeline, which
  rejects and counts it as it would an MQTT ping.
- **Cheap for both sides**: the server's ``ETag`` / ``Last-Modified`` are sent back as
  ``If-None-Match`` / ``If-Modified-Since``, so an unchanged feed costs a 304 with no body.
- **Failures never stop the service**: an HTTP error, a timeout, a refused connection, a body
  that is not a GTFS-realtime feed or is too large is counted by reason and logged once per
  change of state (failing for another reason, or back); the next poll is `every_s` later,
  doubling while it goes on failing up to `max_backoff_s` (five minutes), or later when the
  server's ``Retry-After`` asks so.

Decoding (`read_feed`) is pure and runs in a worker thread, so a large feed does not hold up
the event loop; fetching, remembering and queueing run in the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from tracker.ingest.queue import AsyncIngestQueue, Received
from tracker.wire import DEFAULT_TOPIC_PREFIX, position_topic

log = logging.getLogger(__name__)

DEFAULT_EVERY_S = 10.0
MAX_BACKOFF_S = 300.0  # a feed that keeps failing is still tried every five minutes
FETCH_TIMEOUT_S = 20.0  # one whole request, from connecting to the last byte
MAX_FEED_BYTES = 32 * 1024 * 1024  # a VehiclePositions feed of 10,000 buses is about 2 MB
QUEUE_WAIT_S = 2.0  # the longest one poll waits for room in a full ingest queue
QUEUE_WAIT_STEP_S = 0.05
FORGET_AFTER_S = 3600.0  # a vehicle missing from the feed this long is forgotten
USER_AGENT = "bus-tracker (GTFS-realtime VehiclePositions poller)"
ACCEPT = "application/x-protobuf, application/octet-stream;q=0.9, */*;q=0.1"
LATLON_DIGITS = 7  # the feed's coordinates are 32-bit floats: past 7 decimals it is noise


class Skip(enum.StrEnum):
    """Why an entity of a feed was not sent to the pipeline."""

    DELETED = "deleted"  # is_deleted: an incremental feed's removal
    NOT_A_VEHICLE_POSITION = "not_a_vehicle_position"  # a TripUpdate or Alert entity
    NO_POSITION = "no_position"  # a VehiclePosition without latitude and longitude
    NO_TIMESTAMP = "no_timestamp"  # neither the vehicle nor the feed header has a time
    NO_VEHICLE_ID = "no_vehicle_id"  # no vehicle id, vehicle label or entity id
    BAD_VEHICLE_ID = "bad_vehicle_id"  # an id that cannot be an MQTT topic level (/ + #)
    OLDER_THAN_SENT = "older_than_sent"  # older than the position already sent for the vehicle
    QUEUE_FULL = "queue_full"  # the tracker is behind: sent again at the next poll


class PollError(Exception):
    """A poll that brought no feed: `reason` is the counter's name, the message says why."""

    def __init__(self, reason: str, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.retry_after_s = retry_after_s  # the server's Retry-After, if it sent one


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """One entity as the tracker's position message for `vehicle_id` (`topic`, `payload`)."""

    vehicle_id: str
    timestamp_s: int  # as the feed gives it: what "already sent" compares
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Feed:
    """What one VehiclePositions feed holds, decoded."""

    header_timestamp_s: int | None
    entities: int
    positions: list[FeedPosition]
    skipped: dict[str, int]


def read_feed(
    data: bytes, *, topic_prefix: str = DEFAULT_TOPIC_PREFIX, content_type: str | None = None
) -> Feed:
    """Decode a GTFS-realtime FeedMessage into position messages; pure.

    Raises `PollError` (reason ``not_protobuf``) when `data` is not a GTFS-realtime feed: the
    protobuf library accepts many byte strings (an empty body parses as an empty message), so a
    feed must also have its header. `content_type`, when given, goes into the error to help
    whoever reads it (a web page sent instead of the feed says ``text/html``).
    """
    sent_as = f" (sent as {content_type})" if content_type else ""
    if not data:
        raise PollError("not_protobuf", f"the body is empty{sent_as}")
    message = gtfs_realtime_pb2.FeedMessage()
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise PollError(
            "not_protobuf", f"{len(data)} bytes that are not a GTFS-realtime feed{sent_as}: {e}"
        ) from None
    if not message.HasField("header"):
        raise PollError("not_protobuf", f"{len(data)} bytes without a GTFS-realtime header: "
                        f"not a GTFS-realtime feed{sent_as}")  # fmt: skip
    header_ts: int = message.header.timestamp
    positions: list[FeedPosition] = []
    skipped: dict[str, int] = {}
    for entity in message.entity:
        found = _position(entity, header_ts, topic_prefix)
        if isinstance(found, Skip):
            skipped[found.value] = skipped.get(found.value, 0) + 1
        else:
            positions.append(found)
    return Feed(header_ts or None, len(message.entity), positions, skipped)


def _position(
    entity: gtfs_realtime_pb2.FeedEntity, header_ts: int, topic_prefix: str
) -> FeedPosition | Skip:
    if entity.is_deleted:
        return Skip.DELETED
    if not entity.HasField("vehicle"):
        return Skip.NOT_A_VEHICLE_POSITION
    vp = entity.vehicle
    if not vp.HasField("position"):
        return Skip.NO_POSITION
    vehicle_id: str = vp.vehicle.id.strip() or vp.vehicle.label.strip() or entity.id.strip()
    if not vehicle_id:
        return Skip.NO_VEHICLE_ID
    timestamp_s: int = vp.timestamp or header_ts
    if not timestamp_s:
        return Skip.NO_TIMESTAMP
    try:
        topic = position_topic(vehicle_id, topic_prefix)
    except ValueError:
        return Skip.BAD_VEHICLE_ID
    pos = vp.position
    # Coordinates go on as they are, even NaN or 91 (Python's json writes and reads NaN): the
    # pipeline rejects them with its reasons, as for any ping. Optional hints that are not
    # numbers are left out.
    obj: dict[str, object] = {
        "vehicle_id": vehicle_id,
        "timestamp": timestamp_s,
        "lat": _rounded(pos.latitude, LATLON_DIGITS),
        "lon": _rounded(pos.longitude, LATLON_DIGITS),
    }
    if pos.HasField("speed") and math.isfinite(pos.speed):
        obj["speed"] = round(pos.speed, 2)
    if pos.HasField("bearing") and math.isfinite(pos.bearing):
        obj["bearing"] = round(pos.bearing, 1)
    trip_id: str = vp.trip.trip_id.strip()
    route_id: str = vp.trip.route_id.strip()
    if trip_id:
        obj["trip_id"] = trip_id
    if route_id:
        obj["route_id"] = route_id
    payload = json.dumps(obj, separators=(",", ":")).encode()
    return FeedPosition(vehicle_id, timestamp_s, topic, payload)


def _rounded(value: float, digits: int) -> float:
    return round(value, digits) if math.isfinite(value) else value


def shown_url(url: str) -> str:
    """`url` as logs, `/api/stats` and `/metrics` show it: agencies put their API keys in the
    query or the user info, so query values and passwords are masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = urlencode([(k, "***" if v else "") for k, v in parse_qsl(parts.query, True)],
                      safe="*")  # fmt: skip
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def feed_names(urls: Sequence[str]) -> list[str]:
    """A distinct shown name per URL (`shown_url`, numbered when two look the same)."""
    names: list[str] = []
    for url in urls:
        name, n = shown_url(url), 1
        while name in names:
            n += 1
            name = f"{shown_url(url)} ({n})"
        names.append(name)
    return names


@dataclass(slots=True)
class PollerStats:
    """One feed's counters since start (`/api/stats` ``gtfs_rt``, `/metrics`)."""

    feed: str  # the URL as shown (`shown_url`)
    healthy: bool = False  # the last poll brought the feed (or a 304)
    polls: int = 0
    feeds_read: int = 0  # answers with a feed, decoded
    not_modified: int = 0  # 304 answers: the feed had not changed
    failures: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None  # why the current failure, None while healthy
    entities: int = 0  # entities in the feeds read
    sent: int = 0  # positions put on the ingest queue
    unchanged: int = 0  # positions already sent (same vehicle and timestamp)
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    vehicles: int = 0  # vehicles whose last sent timestamp is remembered
    feed_timestamp_s: float | None = None  # the header's timestamp of the last feed read


@dataclass(slots=True)
class _Sent:
    timestamp_s: int
    listed_at_s: float  # monotonic time the feed last listed the vehicle


class GtfsRtPoller:
    """Polls one GTFS-realtime VehiclePositions URL into `queue` (see the module).

    `run` polls until cancelled; `poll_once` is one poll with a given client. Only the event
    loop's thread uses a poller.
    """

    def __init__(
        self,
        url: str,
        queue: AsyncIngestQueue,
        *,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
        every_s: float = DEFAULT_EVERY_S,
        timeout_s: float = FETCH_TIMEOUT_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        queue_wait_s: float = QUEUE_WAIT_S,
        name: str | None = None,
    ) -> None:
        if not every_s > 0:
            raise ValueError(f"every_s must be more than 0, not {every_s}")
        self.url = url
        self.name = name or shown_url(url)
        self.queue = queue
        self.topic_prefix = topic_prefix
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.max_backoff_s = max(max_backoff_s, every_s)
        self.queue_wait_s = queue_wait_s
        self._stats = PollerStats(self.name)
        self._sent: dict[str, _Sent] = {}
        self._etag: str | None = None
        self._last_modified: str | None = None
        self._state = "starting"  # "ok" or the reason of the current failure
        self._failing_for = 0  # failed polls in a row
        self._forgot_at_s = time.monotonic()

    def stats(self) -> PollerStats:
        """A copy of the counters."""
        stats = dataclasses.replace(self._stats)
        stats.failures_by_reason = dict(stats.failures_by_reason)
        stats.skipped_by_reason = dict(stats.skipped_by_reason)
        stats.vehicles = len(self._sent)
        return stats

    async def run(self) -> None:
        """Poll every `every_s` (from the start of one poll to the next) until cancelled."""
        loop = asyncio.get_running_loop()
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
        async with httpx.AsyncClient(
            headers=headers, timeout=self.timeout_s, follow_redirects=True
        ) as client:
            while True:
                started = loop.time()
                delay_s = await self.poll_once(client)
                await asyncio.sleep(max(0.0, started + delay_s - loop.time()))

    async def poll_once(self, client: httpx.AsyncClient) -> float:
        """Fetch, decode and queue the feed once; never raises (but for cancellation).
        Returns the seconds until the next poll should start."""
        self._stats.polls += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                fetched = await self._fetch(client)
            if fetched is None:
                self._stats.not_modified += 1
            else:
                data, content_type, etag, last_modified = fetched
                feed = await asyncio.to_thread(read_feed, data, topic_prefix=self.topic_prefix,
                                               content_type=content_type)  # fmt: skip
                self._etag, self._last_modified = etag, last_modified
                await self.ingest(feed)
        except PollError as e:
            return self._failed(e.reason, str(e), e.retry_after_s)
        except (TimeoutError, httpx.TimeoutException):
            return self._failed("timeout", f"no complete answer within {self.timeout_s:g} s")
        except httpx.TransportError as e:
            return self._failed("connection", f"{type(e).__name__}: {e}" if str(e) else
                                type(e).__name__)  # fmt: skip
        except Exception as e:  # a bug or a feed no one foresaw: counted, the service goes on
            if self._state != "error":
                log.exception("GTFS-realtime feed %s: unexpected error", self.name)
            return self._failed("error", f"{type(e).__name__}: {e}")
        self._succeeded()
        return self.every_s

    async def _fetch(
        self, client: httpx.AsyncClient
    ) -> tuple[bytes, str | None, str | None, str | None] | None:
        """(body, content type, ETag, Last-Modified), or None for a 304. Raises PollError."""
        headers: dict[str, str] = {}
        if self._etag:
            headers["If-None-Match"] = self._etag
        if self._last_modified:
            headers["If-Modified-Since"] = self._last_modified
        async with client.stream("GET", self.url, headers=headers) as response:
            if response.status_code == 304:
                return None
            if response.status_code != 200:
                raise PollError(
                    f"http_{response.status_code}",
                    f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                    retry_after_s=_retry_after_s(response.headers.get("retry-after")),
                )
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_FEED_BYTES:
                raise PollError("too_large", f"{int(declared)} bytes, over {MAX_FEED_BYTES}")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FEED_BYTES:
                    raise PollError("too_large", f"over {MAX_FEED_BYTES} bytes")
                chunks.append(chunk)
            content_type = response.headers.get("content-type")
            etag = response.headers.get("etag")
            last_modified = response.headers.get("last-modified")
        return b"".join(chunks), content_type, etag, last_modified

    async def ingest(self, feed: Feed) -> None:
        """Queue the positions of `feed` not sent yet; count the rest. A position the queue has
        no room for is not remembered as sent, so the next poll sends it if it is still there."""
        stats = self._stats
        stats.feeds_read += 1
        stats.entities += feed.entities
        stats.feed_timestamp_s = (
            float(feed.header_timestamp_s) if feed.header_timestamp_s else stats.feed_timestamp_s
        )
        skipped = stats.skipped_by_reason
        for reason, n in feed.skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
        now_s = time.monotonic()
        for index, position in enumerate(feed.positions):
            sent = self._sent.get(position.vehicle_id)
            if sent is not None:
                sent.listed_at_s = now_s
                if position.timestamp_s <= sent.timestamp_s:
                    if position.timestamp_s == sent.timestamp_s:
                        stats.unchanged += 1
                    else:
                        _count(skipped, Skip.OLDER_THAN_SENT)
                    continue
            message = Received(position.topic, position.payload, time.time())
            if not await self._room() or not self.queue.put_threadsafe(
                position.vehicle_id, message
            ):
                _count(skipped, Skip.QUEUE_FULL, len(feed.positions) - index)
                break
            stats.sent += 1
            if sent is None:
                self._sent[position.vehicle_id] = _Sent(position.timestamp_s, now_s)
            else:
                sent.timestamp_s = position.timestamp_s
        if now_s - self._forgot_at_s > FORGET_AFTER_S / 10:
            # Feeds whose ids change (entity ids made per snapshot) must not grow this forever.
            self._forgot_at_s = now_s
            self._sent = {
                v: s for v, s in self._sent.items() if now_s - s.listed_at_s <= FORGET_AFTER_S
            }

    async def _room(self) -> bool:
        """Wait a little while the ingest queue is full: a feed comes all at once, and the
        pipeline takes a batch every few tens of milliseconds."""
        waited_s = 0.0
        while len(self.queue) >= self.queue.capacity:
            if waited_s >= self.queue_wait_s:
                return False
            await asyncio.sleep(QUEUE_WAIT_STEP_S)
            waited_s += QUEUE_WAIT_STEP_S
        return True

    def _succeeded(self) -> None:
        stats = self._stats
        if self._state != "ok":
            if self._failing_for:
                log.info("GTFS-realtime feed %s is back after %d failed polls", self.name,
                         self._failing_for)  # fmt: skip
            else:
                log.info("GTFS-realtime feed %s: polling every %g s", self.name, self.every_s)
        self._state = "ok"
        self._failing_for = 0
        stats.healthy = True
        stats.last_error = None

    def _failed(self, reason: str, detail: str, retry_after_s: float | None = None) -> float:
        """Count a failed poll, log it if the state changed; the delay before the next poll."""
        stats = self._stats
        stats.failures += 1
        _count(stats.failures_by_reason, reason)
        stats.healthy = False
        stats.last_error = detail
        self._failing_for += 1
        delay_s = min(self.every_s * 2.0 ** (self._failing_for - 1), self.max_backoff_s)
        if retry_after_s is not None:
            delay_s = max(delay_s, min(retry_after_s, self.max_backoff_s))
        if reason != self._state:
            log.warning("GTFS-realtime feed %s failed (%s): %s; polling again in %g s, then "
                        "less often while it fails (at most every %g s)", self.name, reason,
                        detail, delay_s, self.max_backoff_s)  # fmt: skip
        self._state = reason
        return delay_s


def _count(counts: dict[str, int], reason: str, n: int = 1) -> None:
    counts[reason] = counts.get(reason, 0) + n


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (its HTTP-date form is ignored)."""
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        seconds = float(value.strip())
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None
