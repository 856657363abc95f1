"""Phone apps' location messages (tracker.ingest.phones) turned into the tracker's payload,
mapped to vehicles by a devices file, and OwnTracks' MQTT messages as the pipeline's decoder
reads them (tracker.wire.decode_message)."""

from __future__ import annotations

import json

import pytest

from tracker.core.model import Ping, Reason
from tracker.ingest.devices import MAX_ID_LENGTH, DeviceMap
from tracker.ingest.phones import (
    KMH_MPS,
    KNOT_MPS,
    PhoneMessageError,
    UnknownDeviceError,
    from_osmand,
    from_owntracks,
    from_traccar_json,
    json_object,
)
from tracker.wire import (
    MAX_PAYLOAD_BYTES,
    Ignored,
    WireError,
    decode_message,
    decode_ping,
    encode_ping,
    owntracks_subscription,
    position_topic,
    subscription,
    vehicle_key,
)

DEVICES = DeviceMap({"alice-phone": "bus-7", "358240051111110": "bus-12"})
LOCATION = {"_type": "location", "lat": 33.5, "lon": -7.6, "tst": 1772611200, "vel": 36,
            "cog": 45, "acc": 7, "tid": "al", "batt": 80}  # fmt: skip


def test_osmand_speed_is_in_knots_and_times_come_in_three_forms() -> None:
    base = {"id": "bus-7", "lat": "33.57", "lon": "-7.59", "speed": "10", "bearing": "370"}
    for stamp in ("1772611200", "1772611200000", "2026-03-04T08:00:00Z", "2026-03-04T08:00:00"):
        position = from_osmand(base | {"timestamp": stamp})
        assert position.vehicle_id == "bus-7"
        assert position.payload["timestamp"] == 1772611200.0
    assert position.payload["speed"] == pytest.approx(10 * KNOT_MPS)
    assert position.payload["bearing"] == pytest.approx(10.0)
    assert (position.payload["lat"], position.payload["lon"]) == (33.57, -7.59)
    assert "accuracy" not in position.payload  # not sent: not made up


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"lat": "1", "lon": "2", "timestamp": "3"}, "id is missing"),
        ({"id": "a/b", "lat": "1", "lon": "2", "timestamp": "3"}, "is not an id"),
        ({"id": "x", "lon": "2", "timestamp": "3"}, "lat is missing"),
        ({"id": "x", "lat": "nan", "lon": "2", "timestamp": "3"}, "not a finite number"),
        ({"id": "x", "lat": "1", "lon": "2"}, "timestamp is missing"),
        ({"id": "x", "lat": "1", "lon": "2", "timestamp": "soon"}, "neither epoch seconds"),
    ],
)
def test_osmand_messages_that_cannot_be_positions_say_why(
    params: dict[str, str], error: str
) -> None:
    with pytest.raises(PhoneMessageError, match=error):
        from_osmand(params)


def test_traccar_json_speed_is_in_metres_per_second() -> None:
    position = from_traccar_json({"device_id": "bus-8", "location": {
        "timestamp": "2026-03-04T08:00:00.000Z",
        "coords": {"latitude": 33.5, "longitude": -7.6, "speed": 4.0, "heading": 90,
                   "accuracy": 12}}})  # fmt: skip
    assert position.payload == {"timestamp": 1772611200.0, "lat": 33.5, "lon": -7.6,
                                "speed": 4.0, "bearing": 90.0, "accuracy": 12.0}  # fmt: skip
    with pytest.raises(PhoneMessageError, match=r"location\.coords"):
        from_traccar_json({"device_id": "bus-8", "location": {"timestamp": 1}})


def test_owntracks_vehicle_is_user_and_device_from_headers_or_topic() -> None:
    message = {"_type": "location", "lat": 33.5, "lon": -7.6, "tst": 1772611200, "vel": 36,
               "cog": 45, "acc": 7}  # fmt: skip
    position = from_owntracks(message, "alice", "phone")
    assert position is not None
    assert position.vehicle_id == "alice-phone"
    assert position.payload["speed"] == pytest.approx(36 * KMH_MPS)
    by_topic = from_owntracks(message | {"topic": "owntracks/bob/tablet"}, None, None)
    assert by_topic is not None
    assert by_topic.vehicle_id == "bob-tablet"
    assert from_owntracks({"_type": "transition", "tst": 1}, "alice", "phone") is None
    with pytest.raises(PhoneMessageError, match="X-Limit-U"):
        from_owntracks(message, None, None)


def test_owntracks_messages_without_a_type_or_encrypted_are_refused_not_left_alone() -> None:
    with pytest.raises(PhoneMessageError, match="_type is missing"):
        from_owntracks({"lat": 33.5, "lon": -7.6, "tst": 1}, "alice", "phone")
    with pytest.raises(PhoneMessageError, match="encrypted"):
        from_owntracks({"_type": "encrypted", "data": "c2VjcmV0"}, "alice", "phone")
    for kind in ("lwt", "transition", "waypoint", "card", "status"):
        assert from_owntracks({"_type": kind, "tst": 1}, "alice", "phone") is None


def test_json_object_says_what_it_read() -> None:
    assert json_object(b'{"a": 1}') == {"a": 1}
    with pytest.raises(PhoneMessageError, match=r"^the payload is not JSON \("):
        json_object(b"{nope", "the payload")
    with pytest.raises(PhoneMessageError, match=r"^the body is not a JSON object$"):
        json_object(b"[1, 2]")


# --- the devices file -------------------------------------------------------------------------


def test_with_a_devices_file_a_listed_phone_reports_as_its_vehicle() -> None:
    query = {"id": "358240051111110", "lat": "33.57", "lon": "-7.59", "timestamp": "1772611200"}
    assert from_osmand(query).vehicle_id == "358240051111110"  # no file: the phone itself
    assert from_osmand(query, DEVICES).vehicle_id == "bus-12"
    body = {"device_id": "358240051111110", "location": {
        "timestamp": 1772611200, "coords": {"latitude": 33.5, "longitude": -7.6}}}  # fmt: skip
    assert from_traccar_json(body, DEVICES).vehicle_id == "bus-12"
    owntracks = from_owntracks(LOCATION, "alice", "phone", DEVICES)
    itself = from_owntracks(LOCATION, "alice", "phone")
    assert owntracks is not None
    assert itself is not None
    assert (owntracks.vehicle_id, itself.vehicle_id) == ("bus-7", "alice-phone")
    assert owntracks.payload == itself.payload


def test_with_a_devices_file_another_phone_is_an_unknown_device_whatever_it_sends() -> None:
    with pytest.raises(UnknownDeviceError) as caught:
        from_osmand({"id": "bus-7", "lat": "north"}, DEVICES)  # a vehicle id is not a device id
    assert caught.value.reason is Reason.UNKNOWN_DEVICE
    assert caught.value.device_id == "bus-7"
    assert str(caught.value) == ("device 'bus-7' is not in the tracker's devices file: add a "
                                 "line bus-7,<vehicle_id> to it for this phone")  # fmt: skip
    with pytest.raises(UnknownDeviceError, match="'carol-phone'"):
        from_owntracks(LOCATION, "carol", "phone", DEVICES)
    with pytest.raises(UnknownDeviceError, match="'phone-9'"):
        from_traccar_json({"device_id": "phone-9"}, DEVICES)
    # a malformed id is malformed, listed or not; a message that is no position is left alone
    with pytest.raises(PhoneMessageError, match="is not an id") as malformed:
        from_osmand({"id": "a/b"}, DEVICES)
    assert malformed.value.reason is Reason.MALFORMED
    assert from_owntracks({"_type": "lwt", "tst": 1}, "carol", "phone", DEVICES) is None


# --- OwnTracks over MQTT: the pipeline's decoder ------------------------------------------------


def _owntracks(
    topic: str, message: object, devices: DeviceMap | None = None
) -> Ping | WireError | Ignored:
    payload = message if isinstance(message, bytes) else json.dumps(message).encode()
    return decode_message(topic, payload, owntracks_prefix="owntracks", devices=devices)


def test_an_owntracks_location_over_mqtt_is_the_ping_the_http_endpoint_makes() -> None:
    decoded = _owntracks("owntracks/alice/phone", LOCATION)
    assert decoded == Ping("alice-phone", 1772611200.0, 33.5, -7.6, speed_mps=36 * KMH_MPS,
                           bearing_deg=45.0, accuracy_m=7.0)  # 36 km/h = 10 m/s  # fmt: skip
    # the same as over HTTP, where the position goes on the tracker's own topic
    position = from_owntracks(LOCATION, "alice", "phone")
    assert position is not None
    over_http = decode_ping(position_topic(position.vehicle_id),
                            json.dumps(position.payload).encode())  # fmt: skip
    assert decoded == over_http
    # the MQTT topic names the device, not a `topic` in the message
    assert _owntracks("owntracks/alice/phone", LOCATION | {"topic": "owntracks/bob/x"}) == decoded
    # a location that is not plausible is a ping all the same: the pipeline rejects it, as it
    # does over HTTP (bad_coordinates)
    far = _owntracks("owntracks/alice/phone", LOCATION | {"lat": 91})
    assert isinstance(far, Ping)
    assert far.lat == 91


def test_an_owntracks_location_of_a_listed_device_is_its_vehicle_others_are_unknown() -> None:
    mapped = _owntracks("owntracks/alice/phone", LOCATION, DEVICES)
    assert isinstance(mapped, Ping)
    assert mapped.vehicle_id == "bus-7"
    unknown = _owntracks("owntracks/carol/phone", LOCATION, DEVICES)
    assert isinstance(unknown, WireError)
    assert (unknown.vehicle_id, unknown.reason) == ("carol-phone", Reason.UNKNOWN_DEVICE)
    assert "'carol-phone' is not in the tracker's devices file" in unknown.detail


def test_owntracks_messages_that_are_no_position_are_ignored_not_rejected() -> None:
    for kind in ("lwt", "transition", "waypoint", "card"):
        ignored = _owntracks("owntracks/alice/phone", {"_type": kind, "tst": 1772611200})
        assert ignored == Ignored("alice-phone", f"an OwnTracks {kind!r} message")
    # the app's other topics are not subscribed to; should one come all the same, it is left
    event = _owntracks("owntracks/alice/phone/event", {"_type": "transition", "event": "enter"})
    assert isinstance(event, Ignored)
    assert "only owntracks/<user>/<device> carries locations" in event.detail


@pytest.mark.parametrize(
    ("topic", "payload", "detail"),
    [
        ("owntracks/alice/phone", b"{not json", "the payload is not JSON ("),
        ("owntracks/alice/phone", b"[1]", "the payload is not a JSON object"),
        ("owntracks/alice/phone", json.dumps({**LOCATION, "lat": None}).encode(), "lat is missing"),
        (
            "owntracks/alice/phone",
            json.dumps({**LOCATION, "tst": "soon"}).encode(),
            "tst 'soon' is neither epoch seconds nor ISO 8601",
        ),
        ("owntracks/alice/phone", json.dumps({"lat": 1, "lon": 2}).encode(), "_type is missing"),
        ("owntracks/alice/phone", b" " * (MAX_PAYLOAD_BYTES + 1), "bytes is over 4096"),
        ("owntracks/alice", json.dumps(LOCATION).encode(), "is not owntracks/<user>/<device>"),
        ("owntracks//phone", json.dumps(LOCATION).encode(), "is not owntracks/<user>/<device>"),
    ],
)
def test_owntracks_messages_that_cannot_be_positions_are_malformed_as_over_http(
    topic: str, payload: bytes, detail: str
) -> None:
    decoded = _owntracks(topic, payload)
    assert isinstance(decoded, WireError)
    assert decoded.reason is Reason.MALFORMED
    assert detail in decoded.detail


def test_the_trackers_own_topic_decodes_as_before_owntracks_on_or_off() -> None:
    ping = Ping("bus-1", 1772611200.0, 33.5, -7.6, speed_mps=4.0)
    topic, payload = position_topic("bus-1"), encode_ping(ping)
    for owntracks_prefix in ("owntracks", ""):
        assert decode_message(topic, payload, owntracks_prefix=owntracks_prefix) == ping
        wrong = decode_message(topic, b"nope", owntracks_prefix=owntracks_prefix)
        assert wrong == decode_ping(topic, b"nope")
    # with OwnTracks off, its topic is a stray one, as any other
    off = decode_message("owntracks/alice/phone", json.dumps(LOCATION).encode())
    assert isinstance(off, WireError)
    assert (
        off.detail == "topic 'owntracks/alice/phone' is not bus-tracker/v1/vehicles/<id>/position"
    )
    # an OwnTracks prefix that holds the tracker's topics does not take them over
    assert decode_message(topic, payload, owntracks_prefix="bus-tracker/v1/vehicles") == ping


def test_the_ingest_queue_keys_each_message_by_the_vehicle_it_is_from() -> None:
    def key(topic: str, devices: DeviceMap | None = None, owntracks: str = "owntracks") -> str:
        return vehicle_key(topic, owntracks_prefix=owntracks, devices=devices)

    assert key(position_topic("bus-7")) == "bus-7"
    assert key("owntracks/alice/phone") == "alice-phone"
    assert key("owntracks/alice/phone", DEVICES) == "bus-7"  # the same key as bus-7's own pings
    assert key("owntracks/carol/phone", DEVICES) == "carol-phone"  # to be rejected: its own key
    assert key("owntracks/alice/phone/event") == "owntracks/alice/phone/event"
    assert key("owntracks/alice/phone", owntracks="") == "owntracks/alice/phone"
    assert key("elsewhere/x") == "elsewhere/x"


def test_the_subscriptions() -> None:
    assert subscription() == "bus-tracker/v1/vehicles/+/position"
    assert owntracks_subscription() == "owntracks/+/+"
    assert owntracks_subscription("city/ot", "trackers") == "$share/trackers/city/ot/+/+"
    for bad in ("", "owntracks/", "/owntracks", "owntracks/#", "own+tracks"):
        with pytest.raises(ValueError, match="OwnTracks topic prefix"):
            owntracks_subscription(bad)


def test_a_vehicle_id_in_the_trackers_topic_follows_the_phones_id_rule() -> None:
    longest = "b" * MAX_ID_LENGTH
    ping = Ping(longest, 1772611200.0, 33.5, -7.6)
    assert decode_ping(f"bus-tracker/v1/vehicles/{longest}/position", encode_ping(ping)) == ping
    too_long = "b" * (MAX_ID_LENGTH + 1)
    refused = decode_ping(f"bus-tracker/v1/vehicles/{too_long}/position", b"{}")
    assert isinstance(refused, WireError)
    assert refused.reason is Reason.MALFORMED
    assert refused.detail == f"the topic's vehicle id is 129 characters long, over {MAX_ID_LENGTH}"
    assert refused.vehicle_id == longest + "…"  # as listed among the problems: bounded too
