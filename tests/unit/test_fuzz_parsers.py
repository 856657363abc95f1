"""Property-based tests (hypothesis) of every parser of outside input: arbitrary input never
raises out of a parser but its own documented error, and is either accepted or rejected with a
reason.

- MQTT JSON (`tracker.wire`): `decode_ping`, and `decode_message` with OwnTracks on, give a
  `Ping` that `validate_ping` passes or fails cleanly, a `WireError` with a `Reason` and a
  detail, or `Ignored`.
- The phone protocols (`tracker.ingest.phones`): a `Position` whose payload the pipeline reads,
  or `PhoneMessageError` with a reason.
- GTFS-realtime (`tracker.ingest.gtfs_rt_poll.read_feed`), on arbitrary bytes and on valid
  `FeedMessage`s of random entities: `PollError`, or each entity a position or a counted skip.
- The pings files (`tracker.pings_io.read_pings`): bad records are `BadRow`s with a reason; only
  `PingFileError` for a file that cannot be read at all.
- The websocket's subscriptions (`tracker.live.ws`): a `Subscription` or `SubscriptionError`.
- The devices file (`tracker.ingest.devices.parse_devices`): a `DeviceMap` or `DevicesFileError`.

Each test runs a bounded, derandomized number of examples (reproducible in CI), counts what
came out of them and prints the counts (``pytest -s``): docs/security.md quotes them. Each also
checks that its examples reached both acceptance and rejection, so that a strategy that stopped
producing good input (and so tested only the first check of a parser) fails. The `@example`s
are the bugs hypothesis found, kept as regressions.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.transit import gtfs_realtime_pb2 as rt
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tracker.core.model import Ping, Reason
from tracker.core.validate import clean_hints, validate_ping
from tracker.errors import PingFileError
from tracker.ingest.devices import DeviceMap, DevicesFileError, id_problem, parse_devices
from tracker.ingest.gtfs_rt_poll import PollError, Skip, read_feed
from tracker.ingest.phones import (
    PhoneMessageError,
    Position,
    from_osmand,
    from_owntracks,
    from_traccar_json,
    json_object,
)
from tracker.live.hub import Subscription, SubscriptionError
from tracker.live.ws import subscription_from_query, subscription_from_request
from tracker.pings_io import BadRow, decode_json_record, read_pings
from tracker.wire import (
    DEFAULT_TOPIC_PREFIX,
    OWNTRACKS_PREFIX,
    Ignored,
    WireError,
    decode_message,
    decode_ping,
)

NOW_S = 1_764_061_200.0  # 2025-11-25T09:00:00Z, the clock `validate_ping` is given
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEVICES = DeviceMap({"alice-phone": "bus-7", "358240051111110": "bus-12"})
DEEP_JSON = b"[" * 4000  # nests deeper than Python's json recursion: RecursionError (fixed)
HUGE_INT = "1" + "0" * 400  # a JSON integer no float holds: OverflowError (fixed)
HUGE_CELL = "x" * 200_000  # over csv's field size limit, 128 KiB: csv.Error (fixed)

# --- strategies -------------------------------------------------------------------------------

# JSON strings may hold any code point, lone surrogates too ("\ud800" is valid JSON).
any_text = st.text(st.characters(), max_size=24)
# Topics and protobuf strings come decoded from UTF-8, so they hold no lone surrogate.
utf8_text = st.text(st.characters(codec="utf-8"), max_size=24)
# integers past a float's range (2**1024): st.integers over a wide range mostly draws small ones
huge_ints = st.integers(min_value=2**1024, max_value=10**400).flatmap(
    lambda n: st.sampled_from([n, -n])
)
special_floats = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308])
json_leaves = st.none() | st.booleans() | st.integers() | huge_ints | st.floats() | any_text
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)
ids = st.sampled_from(["bus-1042", "b1", " b1 ", "30095100.0", "a/b", "x+y", "#", "", "\0"]) | (
    utf8_text
)
epoch_s = st.floats(min_value=1.7e9, max_value=NOW_S)
iso_times = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([None, UTC]),
).map(datetime.isoformat)
times = epoch_s | epoch_s.map(lambda s: int(s * 1000)) | iso_times
lats = st.floats(min_value=-90, max_value=90)
lons = st.floats(min_value=-180, max_value=180)
numbers = st.floats(min_value=-1000, max_value=1000)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` 4 times in 5, else `bad`: a message of several fields is then often good enough
    to be accepted, so the examples reach past a parser's first check."""
    return st.integers(0, 4).flatmap(lambda n: bad if n == 0 else good)


def loose(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: mostly a good one, else the same as text, a number no float holds,
    NaN or an infinity, or any JSON value at all."""
    return mostly(good, good.map(str) | huge_ints | special_floats | json_values)


ping_objects = st.fixed_dictionaries(
    {"timestamp": loose(times), "lat": loose(lats), "lon": loose(lons)},
    optional={
        "vehicle_id": loose(ids),
        "speed": loose(numbers),
        "bearing": loose(numbers),
        "accuracy": loose(numbers),
        "route_id": loose(ids),
        "trip_id": loose(ids),
        "latitude": loose(lats),
        "longitude": loose(lons),
        "extra": json_values,
    },
)
owntracks_objects = st.fixed_dictionaries(
    {"_type": mostly(st.just("location"), st.sampled_from(["lwt", "transition", "encrypted"])
                     | json_values),
     "lat": loose(lats), "lon": loose(lons), "tst": loose(times)},
    optional={
        "vel": loose(numbers),
        "cog": loose(numbers),
        "acc": loose(numbers),
        "topic": st.just("owntracks/alice/phone") | any_text,
        "tid": json_values,
    },
)  # fmt: skip


def dumped(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """`values` as a JSON payload; NaN and Infinity as Python's json writes them."""
    return values.map(lambda v: json.dumps(v).encode())


payloads = mostly(
    dumped(ping_objects) | dumped(owntracks_objects),
    dumped(json_values) | st.binary(max_size=300),
)
own_topics = ids.map(lambda v: f"{DEFAULT_TOPIC_PREFIX}/{v}/position")
owntracks_topics = st.lists(
    st.sampled_from(["alice", "phone", ""]) | utf8_text, min_size=0, max_size=3
).map(lambda levels: "/".join([OWNTRACKS_PREFIX, *levels]))
topics = own_topics | owntracks_topics | utf8_text


def record(outcomes: Counter[str], name: str) -> None:
    """Print one test's counts (docs/security.md quotes them), then check that its examples
    reached both acceptance and rejection."""
    # A file (or a feed) is one example of many records: then "files" counts the examples.
    examples = outcomes["files"] or sum(outcomes.values())
    shown = ", ".join(f"{key} {n}" for key, n in sorted(outcomes.items()) if key != "files")
    print(f"\nfuzz {name}: {examples} examples: {shown}")
    assert any(key.startswith("accepted") for key in outcomes), outcomes
    assert any(key.startswith("rejected") for key in outcomes), outcomes


def rejected(error: Exception, reason: str, *, starts: str = "") -> str:
    """A parser's own error: it says what is wrong (a devices file's, which file first)."""
    assert str(error).strip(), repr(error)
    assert str(error).startswith(starts), error
    return f"rejected: {reason}"


def ping_outcome(ping: Ping) -> str:
    """A decoded ping: typed as a Ping should be, and validated without raising."""
    assert isinstance(ping.vehicle_id, str)
    for value in (ping.timestamp, ping.lat, ping.lon):
        assert type(value) is float, ping
    for hint in (ping.speed_mps, ping.bearing_deg, ping.accuracy_m):
        assert hint is None or type(hint) is float, ping
    for text in (ping.route_id, ping.trip_id):
        assert text is None or isinstance(text, str), ping
    clean_hints(ping)
    problem = validate_ping(ping, now=NOW_S)
    if problem is None:
        return "accepted"
    reason, detail = problem
    assert isinstance(reason, Reason), problem
    assert detail.strip(), problem
    return f"rejected by validate_ping: {reason}"


def wire_outcome(result: Ping | WireError | Ignored) -> str:
    if isinstance(result, Ping):
        return ping_outcome(result)
    if isinstance(result, WireError):
        assert isinstance(result.reason, Reason), result
        assert result.detail.strip(), result
        return f"rejected: {result.reason}"
    assert isinstance(result, Ignored), result
    assert result.detail.strip(), result
    return "ignored"


# --- MQTT JSON --------------------------------------------------------------------------------


def test_decode_ping_never_raises() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(topic=mostly(own_topics, topics), payload=payloads)
    @example(f"{DEFAULT_TOPIC_PREFIX}/b1/position", DEEP_JSON)
    @example(f"{DEFAULT_TOPIC_PREFIX}/b1/position", f'{{"timestamp": {HUGE_INT}}}'.encode())
    @example(f"{DEFAULT_TOPIC_PREFIX}/b1/position",
             f'{{"timestamp": 1764061200, "lat": {HUGE_INT}, "lon": 1}}'.encode())  # fmt: skip
    @example(f"{DEFAULT_TOPIC_PREFIX}/b1/position",
             f'{{"timestamp": 1764061200, "lat": 1, "lon": 2, "speed": {HUGE_INT},'
             f' "route_id": "L7"}}'.encode())  # fmt: skip
    def run(topic: str, payload: bytes) -> None:
        outcomes[wire_outcome(decode_ping(topic, payload))] += 1

    run()
    record(outcomes, "decode_ping")


def test_decode_message_with_owntracks_never_raises() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(topic=mostly(own_topics | st.just("owntracks/alice/phone"), topics), payload=payloads,
           devices=st.none() | st.just(DEVICES))  # fmt: skip
    @example("owntracks/alice/phone", DEEP_JSON, None)
    @example("owntracks/alice/phone",
             f'{{"_type": "location", "lat": {HUGE_INT}, "lon": 1, "tst": 1}}'.encode(),
             None)  # fmt: skip
    @example("owntracks/alice/phone",
             f'{{"_type": "location", "lat": 1, "lon": 1, "tst": {HUGE_INT}}}'.encode(),
             DEVICES)  # fmt: skip
    def run(topic: str, payload: bytes, devices: DeviceMap | None) -> None:
        result = decode_message(topic, payload, owntracks_prefix=OWNTRACKS_PREFIX, devices=devices)
        outcomes[wire_outcome(result)] += 1

    run()
    record(outcomes, "decode_message (tracker and OwnTracks topics)")


# --- the phone protocols ----------------------------------------------------------------------


def phone_outcome(parse: Callable[[], Position | None]) -> str:
    """A phone message: a position the pipeline reads as it reads an MQTT payload, a message
    left alone (None), or `PhoneMessageError` with its reason and what is wrong."""
    try:
        position = parse()
    except PhoneMessageError as e:
        return rejected(e, e.reason)
    if position is None:
        return "ignored"
    for value in position.payload.values():
        assert isinstance(value, str) or math.isfinite(value), position
    json.dumps(position.payload)
    decoded = decode_json_record({"vehicle_id": position.vehicle_id, **position.payload})
    if isinstance(decoded, BadRow):
        assert decoded.detail.strip()
        return f"rejected by the pipeline: {decoded.reason}"
    return ping_outcome(decoded)


osmand_params = st.fixed_dictionaries(
    {},
    optional={
        "id": loose(ids),
        "deviceid": loose(ids),
        "lat": loose(lats),
        "lon": loose(lons),
        "timestamp": loose(times),
        "speed": loose(numbers),
        "bearing": loose(numbers),
        "heading": loose(numbers),
        "accuracy": loose(numbers),
    },
) | st.dictionaries(any_text, json_values, max_size=5)
# a query string's values are text: most of the examples are as the HTTP endpoint gets them
osmand_query = st.fixed_dictionaries(
    {"id": ids, "lat": mostly(lats.map(str), utf8_text), "lon": mostly(lons.map(str), utf8_text),
     "timestamp": mostly(times.map(str), utf8_text)},
    optional={"speed": mostly(numbers.map(str), utf8_text),
              "bearing": mostly(numbers.map(str), utf8_text),
              "accuracy": mostly(numbers.map(str), utf8_text)},
)  # fmt: skip


def test_osmand_raises_only_phone_message_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(params=osmand_query | osmand_params, devices=st.none() | st.just(DEVICES))
    @example({"id": "b1", "lat": 1, "lon": 1, "timestamp": 1, "speed": 10**400}, None)
    @example({"id": "b1", "lat": 1, "lon": 1, "timestamp": 10**400}, None)
    def run(params: dict[str, Any], devices: DeviceMap | None) -> None:
        outcomes[phone_outcome(lambda: from_osmand(params, devices))] += 1

    run()
    record(outcomes, "from_osmand")


traccar_coords = st.fixed_dictionaries(
    {"latitude": loose(lats), "longitude": loose(lons)},
    optional={"speed": loose(numbers), "heading": loose(numbers), "accuracy": loose(numbers)},
)
traccar_bodies = st.fixed_dictionaries(
    {
        "device_id": loose(ids),
        "location": mostly(
            st.fixed_dictionaries(
                {"timestamp": loose(times), "coords": mostly(traccar_coords, json_values)}
            ),
            json_values,
        ),
    },
    optional={"extra": json_values},
)


def test_traccar_json_raises_only_phone_message_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(body=dumped(traccar_bodies) | dumped(json_values) | st.binary(max_size=200),
           devices=st.none() | st.just(DEVICES))  # fmt: skip
    @example(DEEP_JSON, None)
    @example(json.dumps({"device_id": "b1", "location": {"timestamp": 1, "coords": {
        "latitude": 10**400, "longitude": 1}}}).encode(), None)  # fmt: skip
    def run(body: bytes, devices: DeviceMap | None) -> None:
        outcomes[phone_outcome(lambda: from_traccar_json(json_object(body), devices))] += 1

    run()
    record(outcomes, "from_traccar_json (with json_object)")


def test_owntracks_raises_only_phone_message_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(body=owntracks_objects | st.dictionaries(any_text, json_values, max_size=5),
           user=st.none() | st.just("alice") | utf8_text,
           device=st.none() | st.just("phone") | utf8_text,
           devices=st.none() | st.just(DEVICES))  # fmt: skip
    @example({"_type": "location", "lat": 1, "lon": 1, "tst": 10**400}, "a", "b", None)
    @example({"_type": "location", "lat": 1, "lon": 1, "tst": 1, "acc": -(10**400)}, "a", "b",
             None)  # fmt: skip
    def run(
        body: Mapping[str, Any], user: str | None, device: str | None, devices: DeviceMap | None
    ) -> None:
        outcomes[phone_outcome(lambda: from_owntracks(body, user, device, devices))] += 1

    run()
    record(outcomes, "from_owntracks")


# --- GTFS-realtime ----------------------------------------------------------------------------

float32s = st.floats(width=32)  # NaN and infinities included
uint64s = mostly(
    epoch_s.map(int), st.integers(min_value=0, max_value=2**64 - 1) | st.sampled_from([0, 1])
)
feed_text = st.sampled_from(["bus-1", " ", "", "a/b", "x+y", "#", "\0", "1.0"]) | utf8_text


@st.composite
def feed_messages(draw: st.DrawFn) -> rt.FeedMessage:
    """A FeedMessage of random entities: each field present or not, any value its type holds;
    required fields may be left out too (`SerializePartialToString` writes it anyway)."""
    message = rt.FeedMessage()
    if draw(st.integers(0, 9)):  # mostly with a header
        message.header.gtfs_realtime_version = draw(st.sampled_from(["2.0", "1.0", ""]))
        if draw(st.booleans()):
            message.header.timestamp = draw(uint64s)
    for _ in range(draw(st.integers(0, 5))):
        entity = message.entity.add()
        if draw(st.integers(0, 9)):
            entity.id = draw(feed_text)
        if draw(st.integers(0, 3)) == 0:
            entity.is_deleted = draw(st.booleans())
        kind = draw(st.sampled_from(["vehicle", "vehicle", "vehicle", "trip_update", "alert", ""]))
        if kind == "trip_update":
            entity.trip_update.trip.trip_id = draw(feed_text)
        elif kind == "alert":
            entity.alert.SetInParent()
        elif kind == "vehicle":
            vp = entity.vehicle
            vp.SetInParent()
            for field, holder in (("id", vp.vehicle), ("label", vp.vehicle)):
                if draw(st.booleans()):
                    setattr(holder, field, draw(feed_text))
            if draw(st.booleans()):
                vp.timestamp = draw(uint64s)
            for field in ("trip_id", "route_id"):
                if draw(st.booleans()):
                    setattr(vp.trip, field, draw(feed_text))
            if draw(st.integers(0, 4)):
                vp.position.latitude = draw(float32s | lats)
                vp.position.longitude = draw(float32s | lons)
                for field in ("speed", "bearing", "odometer"):
                    if draw(st.booleans()):
                        setattr(vp.position, field, draw(float32s))
    return message


def not_a_feed(error: PollError) -> str:
    """The one `PollError` decoding raises: the bytes are not a GTFS-realtime feed."""
    assert error.reason == "not_protobuf", error
    return rejected(error, error.reason)


def test_read_feed_of_any_bytes_raises_only_poll_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(data=st.binary(max_size=400))
    @example(b"")
    @example(b"\x0a\x00")  # an empty header: a feed of no entity
    def run(data: bytes) -> None:
        try:
            feed = read_feed(data, content_type="text/html")
        except PollError as e:
            outcomes[not_a_feed(e)] += 1
            return
        assert len(feed.positions) + sum(feed.skipped.values()) == feed.entities
        outcomes["accepted (a feed)"] += 1

    run()
    record(outcomes, "read_feed (arbitrary bytes)")


def test_read_feed_of_random_feeds_gives_each_entity_a_position_or_a_skip() -> None:
    outcomes: Counter[str] = Counter()
    skip_values = {skip.value for skip in Skip}

    @FUZZ
    @given(message=feed_messages())
    def run(message: rt.FeedMessage) -> None:
        data = message.SerializePartialToString()
        try:
            feed = read_feed(data)
        except PollError as e:
            outcomes[not_a_feed(e)] += 1
            outcomes["files"] += 1
            return
        assert feed.entities == len(message.entity)
        assert len(feed.positions) + sum(feed.skipped.values()) == feed.entities
        assert set(feed.skipped) <= skip_values, feed.skipped
        for reason, n in feed.skipped.items():
            outcomes[f"rejected (entity skipped): {reason}"] += n
        for position in feed.positions:
            outcomes[f"{wire_outcome(decode_ping(position.topic, position.payload))} (entity)"] += 1
        outcomes["files"] += 1

    run()
    record(outcomes, "read_feed (random FeedMessages; counts are entities)")


# --- the pings files --------------------------------------------------------------------------


def file_outcomes(path: Path, outcomes: Counter[str]) -> None:
    """Read `path` to the end: pings validated, `BadRow`s with a reason, or `PingFileError`."""
    try:
        for item in read_pings(path):
            if isinstance(item, BadRow):
                assert isinstance(item.reason, Reason), item
                assert item.detail.strip(), item
                assert item.record >= 1
                outcomes[f"rejected (row): {item.reason}"] += 1
            else:
                outcomes[f"{ping_outcome(item)} (row)"] += 1
    except PingFileError as e:
        outcomes[rejected(e, "PingFileError (file)")] += 1
    outcomes["files"] += 1


csv_cells = st.one_of(
    times.map(str), lats.map(str), lons.map(str), ids, utf8_text, st.just("nan"), st.just("")
)
CSV_GOOD: dict[str, st.SearchStrategy[str]] = {
    "vehicle_id": st.just("bus-1042"),
    "timestamp": times.map(str),
    "lat": lats.map(str),
    "lon": lons.map(str),
}
csv_columns = mostly(st.just(["vehicle_id", "timestamp", "lat", "lon"]), st.just([])).flatmap(
    lambda required: st.lists(
        st.sampled_from(["vehicle_id", "timestamp", "lat", "latitude", "speed", "bearing",
                         "accuracy", "route_id", "trip_id", "vehicle.position.latitude"]),
        unique=True, max_size=4,
    ).map(lambda optional: list(dict.fromkeys(required + optional)))
).flatmap(st.permutations)  # fmt: skip


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV of pings: a header of known columns, rows of any cells, junk lines between."""
    out = io.StringIO()
    writer = csv.writer(out)
    columns = draw(csv_columns)
    writer.writerow(columns)
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 5)) == 0:
            out.write(draw(utf8_text) + "\n")
        else:
            cells = [draw(mostly(CSV_GOOD.get(column, csv_cells), csv_cells)) for column in columns]
            writer.writerow(cells[: draw(mostly(st.just(len(cells)), st.integers(0, len(cells))))])
    return out.getvalue().encode()


def test_csv_pings_files_give_bad_rows_not_exceptions(tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    path = tmp_path / "pings.csv"

    @FUZZ
    @given(data=mostly(csv_files(), st.binary(max_size=300)))
    @example(f"vehicle_id,timestamp,lat,lon\nb1,1764061200,1,{HUGE_CELL}\nb1,1764061200,1,2\n"
             .encode())  # fmt: skip
    @example(f"vehicle_id,timestamp,lat,{HUGE_CELL}\n".encode())
    def run(data: bytes) -> None:
        path.write_bytes(data)
        file_outcomes(path, outcomes)

    run()
    record(outcomes, "read_pings (CSV files)")


jsonl_lines = (
    dumped(ping_objects).map(bytes.decode)
    | dumped(json_values).map(bytes.decode)
    | (utf8_text.map(lambda text: text.replace("\n", " ").replace("\r", " ")))
)


def test_jsonl_pings_files_give_bad_rows_not_exceptions(tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    path = tmp_path / "pings.jsonl"

    @FUZZ
    @given(data=st.lists(jsonl_lines, max_size=6).map(lambda ls: "\n".join(ls).encode())
           | st.binary(max_size=300))  # fmt: skip
    @example(DEEP_JSON + b'\n{"vehicle_id": "b1", "timestamp": 1764061200, "lat": 1, "lon": 2}')
    @example(f'{{"vehicle_id": "b1", "timestamp": {HUGE_INT}, "lat": 1, "lon": 2}}'.encode())
    def run(data: bytes) -> None:
        path.write_bytes(data)
        file_outcomes(path, outcomes)

    run()
    record(outcomes, "read_pings (JSONL files)")


def test_pb_pings_files_give_bad_rows_not_exceptions(tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    path = tmp_path / "pings.pb"

    @FUZZ
    @given(data=feed_messages().map(rt.FeedMessage.SerializePartialToString)
           | st.binary(max_size=300))  # fmt: skip
    def run(data: bytes) -> None:
        path.write_bytes(data)
        file_outcomes(path, outcomes)

    run()
    record(outcomes, "read_pings (GTFS-realtime .pb files)")


# --- the websocket's subscriptions ------------------------------------------------------------


def subscription_outcome(parse: Callable[[], Subscription]) -> str:
    try:
        subscription = parse()
    except SubscriptionError as e:
        return rejected(e, "SubscriptionError")
    if subscription.bbox is not None:
        assert all(math.isfinite(x) for x in subscription.bbox), subscription
    if subscription.route_ids is not None:
        assert subscription.route_ids, subscription
        assert all(subscription.route_ids), subscription
    return "accepted"


bbox_numbers = lons | lats | st.floats() | huge_ints
subscribe_requests = st.fixed_dictionaries(
    {"subscribe": st.fixed_dictionaries(
        {},
        optional={
            "routes": st.none() | st.lists(st.just("L7") | any_text, max_size=4) | json_values,
            "bbox": st.none() | st.lists(bbox_numbers, min_size=3, max_size=5) | json_values,
        },
    ) | json_values},
    optional={"extra": json_values},
)  # fmt: skip


def test_subscribe_requests_raise_only_subscription_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(text=dumped(subscribe_requests).map(bytes.decode) | dumped(json_values).map(bytes.decode)
           | any_text)  # fmt: skip
    @example(DEEP_JSON.decode())
    @example(f'{{"subscribe": {{"bbox": [{HUGE_INT}, 1, 2, 3]}}}}')
    @example('{"subscribe": {"bbox": [NaN, 1, 2, 3]}}')
    def run(text: str) -> None:
        outcomes[subscription_outcome(lambda: subscription_from_request(text))] += 1

    run()
    record(outcomes, "subscription_from_request (websocket messages)")


def test_subscription_query_strings_raise_only_subscription_error() -> None:
    outcomes: Counter[str] = Counter()
    bbox_text = st.lists(bbox_numbers.map(str) | utf8_text, min_size=3, max_size=5).map(",".join)
    pairs = st.lists(
        st.tuples(st.just("routes"), utf8_text) | st.tuples(st.just("bbox"), bbox_text)
        | st.tuples(utf8_text, utf8_text),
        max_size=3,
    )  # fmt: skip

    @FUZZ
    @given(params=pairs)
    def run(params: list[tuple[str, str]]) -> None:
        outcomes[subscription_outcome(lambda: subscription_from_query(params))] += 1

    run()
    record(outcomes, "subscription_from_query (websocket query strings)")


# --- the devices file -------------------------------------------------------------------------


@st.composite
def devices_files(draw: st.DrawFn) -> str:
    columns = draw(st.permutations(["device_id", "vehicle_id", "note"]).map(lambda c: c[:3]))
    lines = [",".join(columns)]
    for _ in range(draw(st.integers(0, 5))):
        cells = [draw(ids | st.just("alice-phone")) for _ in range(draw(st.integers(0, 4)))]
        lines.append(",".join(cells) if draw(st.integers(0, 4)) else draw(utf8_text))
    return "\n".join(lines)


def test_devices_file_raises_only_devices_file_error() -> None:
    outcomes: Counter[str] = Counter()

    @FUZZ
    @given(text=devices_files() | utf8_text | st.text(st.characters(), max_size=200))
    @example(f"device_id,vehicle_id\n{HUGE_CELL},bus-7\n")
    @example(f"device_id,{HUGE_CELL}\n")
    def run(text: str) -> None:
        try:
            devices = parse_devices(text, source="devices.csv")
        except DevicesFileError as e:
            outcomes[rejected(e, "DevicesFileError", starts="devices.csv")] += 1
            return
        assert len(devices) > 0
        for device_id, vehicle_id in devices.vehicles.items():
            assert id_problem(device_id) is None
            assert id_problem(vehicle_id) is None
            assert devices.vehicle_of(device_id) == vehicle_id
        outcomes["accepted"] += 1

    run()
    record(outcomes, "parse_devices")


@pytest.mark.parametrize("text", [f"device_id,vehicle_id\n{HUGE_CELL},bus-7\n"])
def test_a_devices_field_over_the_csv_limit_names_its_line(text: str) -> None:
    with pytest.raises(DevicesFileError, match=r"devices\.csv, line 2: not CSV"):
        parse_devices(text, source="devices.csv")
