"""The MQTT wire format: which topic a vehicle publishes on, and what its JSON payload holds.

Topic: ``{prefix}/{vehicle_id}/position`` with the default prefix ``bus-tracker/v1/vehicles``,
for example ``bus-tracker/v1/vehicles/bus-1042/position``. The tracker subscribes to
``{prefix}/+/position`` (or ``$share/{group}/{prefix}/+/position`` to split the load between
several trackers). The vehicle id in the topic is the authority: a payload ``vehicle_id`` that
disagrees is rejected, so a vehicle's broker credentials (an ACL on its own topic) decide who
it is.

Payload: one UTF-8 JSON object, the same keys as a line of a JSONL pings file::

    {"vehicle_id": "bus-1042", "timestamp": 1764061200.5, "lat": 33.5731, "lon": -7.5898,
     "speed": 8.3, "bearing": 270, "accuracy": 6, "route_id": "L7", "trip_id": "L7-0815"}

``vehicle_id`` may be left out (the topic gives it). ``timestamp`` is epoch seconds (or
milliseconds) or ISO 8601; ``speed`` is m/s, ``bearing`` degrees clockwise from north,
``accuracy`` metres; all of ``speed, bearing, accuracy, route_id, trip_id`` are optional.

OwnTracks (MQTT mode) publishes on ``{owntracks_prefix}/{user}/{device}`` (``owntracks/alice/
phone`` by default): a ``_type: location`` message there is a position of the vehicle
``{user}-{device}``, or of the vehicle a devices file gives that device (`tracker.ingest.devices`),
read with the phone apps' own parsing (`tracker.ingest.phones.from_owntracks`). The tracker
subscribes to ``{owntracks_prefix}/+/+`` only: the app's other topics (``.../event``,
``.../cmd``, ``.../waypoint``, ...) carry no positions. `decode_message` reads both kinds of topic;
what is not a position and not a mistake either (an OwnTracks ``lwt``, a ``transition``) comes out
as `Ignored`, apart from the rejections.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tracker.core.model import Ping, Reason
from tracker.ingest.devices import MAX_ID_LENGTH, DeviceMap, id_problem
from tracker.ingest.phones import PhoneMessageError, from_owntracks, json_object
from tracker.pings_io import BadRow, decode_json_record

DEFAULT_TOPIC_PREFIX = "bus-tracker/v1/vehicles"
OWNTRACKS_PREFIX = "owntracks"  # the apps' default base topic is owntracks/{user}/{device}
MAX_PAYLOAD_BYTES = 4096
MILLISECONDS_FROM = 1e11  # a larger timestamp is in milliseconds (as `tracker.pings_io` reads it)


@dataclass(frozen=True, slots=True)
class WireError:
    """A message that could not be decoded into a ping; `vehicle_id` is from the topic if any."""

    vehicle_id: str | None
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that is no position and no mistake either (an OwnTracks `lwt`, a `waypoint`):
    left alone and counted apart, so that the rejections count only what went wrong."""

    vehicle_id: str | None
    detail: str


def position_topic(vehicle_id: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The topic `vehicle_id` publishes its positions on."""
    if not vehicle_id or any(c in vehicle_id for c in "/+#\0"):
        raise ValueError(f"vehicle id {vehicle_id!r} cannot be an MQTT topic level")
    return f"{prefix}/{vehicle_id}/position"


def subscription(prefix: str = DEFAULT_TOPIC_PREFIX, share_group: str | None = None) -> str:
    """The topic filter a tracker subscribes to, optionally as an MQTT 5 shared subscription."""
    topic = f"{prefix}/+/position"
    return f"$share/{share_group}/{topic}" if share_group else topic


def vehicle_of_topic(topic: str, prefix: str = DEFAULT_TOPIC_PREFIX) -> str | None:
    """The vehicle id in a position topic, or None if `topic` is not one."""
    head = prefix + "/"
    if not topic.startswith(head) or not topic.endswith("/position"):
        return None
    vehicle_id = topic[len(head) : -len("/position")]
    return vehicle_id if vehicle_id and "/" not in vehicle_id else None


def owntracks_subscription(prefix: str = OWNTRACKS_PREFIX, share_group: str | None = None) -> str:
    """The topic filter of OwnTracks' location topic: one level for the user, one for the
    device, none below (the app's events, commands and waypoints)."""
    if (
        not prefix
        or prefix.startswith("/")
        or prefix.endswith("/")
        or any(c in prefix for c in "+#\0")
    ):
        raise ValueError(f"OwnTracks topic prefix {prefix!r} must be topic levels without "
                         "+ # or a leading or trailing /, such as 'owntracks'")  # fmt: skip
    topic = f"{prefix}/+/+"
    return f"$share/{share_group}/{topic}" if share_group else topic


def owntracks_device_of_topic(topic: str, prefix: str = OWNTRACKS_PREFIX) -> str | None:
    """The device id, ``{user}-{device}``, of an OwnTracks location topic; None if `topic` is
    not one."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    levels = topic[len(head) :].split("/")
    if len(levels) != 2 or not levels[0] or not levels[1]:
        return None
    return f"{levels[0]}-{levels[1]}"


def vehicle_key(
    topic: str,
    prefix: str = DEFAULT_TOPIC_PREFIX,
    *,
    owntracks_prefix: str = "",
    devices: DeviceMap | None = None,
) -> str:
    """The vehicle a message is from, as the ingest queue keys it before decoding (the queue
    keeps each vehicle's messages in order and supersedes its older ones): the tracker topic's
    vehicle, an OwnTracks device's vehicle (through `devices`), else the topic itself (a stray
    message, its own key, rejected by the decoder)."""
    vehicle_id = vehicle_of_topic(topic, prefix)
    if vehicle_id is not None:
        return vehicle_id
    if owntracks_prefix:
        device_id = owntracks_device_of_topic(topic, owntracks_prefix)
        if device_id is not None:
            if devices is None:
                return device_id
            return devices.vehicle_of(device_id) or device_id
    return topic


def encode_ping(ping: Ping) -> bytes:
    """The JSON payload for `ping`; optional fields that are None are left out."""
    obj: dict[str, object] = {
        "vehicle_id": ping.vehicle_id,
        "timestamp": ping.timestamp,
        "lat": ping.lat,
        "lon": ping.lon,
    }
    for key, value in (
        ("speed", ping.speed_mps),
        ("bearing", ping.bearing_deg),
        ("accuracy", ping.accuracy_m),
        ("route_id", ping.route_id),
        ("trip_id", ping.trip_id),
    ):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            obj[key] = value
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_message(
    topic: str,
    payload: bytes,
    prefix: str = DEFAULT_TOPIC_PREFIX,
    *,
    owntracks_prefix: str = "",
    devices: DeviceMap | None = None,
) -> Ping | WireError | Ignored:
    """Decode one MQTT message of either kind, the tracker's own (`decode_ping`) or OwnTracks'
    (`decode_owntracks`, when `owntracks_prefix` is given; "" is off); never raises."""
    if (
        owntracks_prefix
        and topic.startswith(owntracks_prefix + "/")
        and vehicle_of_topic(topic, prefix) is None
    ):
        return decode_owntracks(topic, payload, owntracks_prefix, devices)
    return decode_ping(topic, payload, prefix)


def decode_owntracks(
    topic: str,
    payload: bytes,
    prefix: str = OWNTRACKS_PREFIX,
    devices: DeviceMap | None = None,
) -> Ping | WireError | Ignored:
    """Decode one OwnTracks message from ``{prefix}/{user}/{device}``; never raises.

    A `location` is a ping of the vehicle ``{user}-{device}`` (or the one `devices` give it: a
    device they do not list is rejected, `unknown_device`); another `_type` is `Ignored`, and so
    is a message on a deeper topic (``.../event``), which the tracker does not subscribe to. What
    cannot be a position is rejected with the reason and detail the HTTP endpoint gives it.
    """
    head = prefix + "/"
    levels = topic[len(head) :].split("/") if topic.startswith(head) else []
    if len(levels) < 2 or not levels[0] or not levels[1]:
        detail = f"topic {topic!r} is not {prefix}/<user>/<device>"
        return WireError(None, Reason.MALFORMED, detail)
    user, device = levels[0], levels[1]
    device_id = f"{user}-{device}"
    if len(levels) > 2:
        detail = f"topic {topic!r}: only {prefix}/<user>/<device> carries locations"
        return Ignored(device_id, detail)
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}"
        return WireError(device_id, Reason.MALFORMED, detail)
    try:
        body = json_object(payload, "the payload")
        position = from_owntracks(body, user, device, devices)
    except PhoneMessageError as e:
        return WireError(device_id, e.reason, str(e))
    if position is None:
        return Ignored(device_id, f"an OwnTracks {str(body['_type'])[:40]!r} message")
    record = {"vehicle_id": position.vehicle_id, **position.payload}
    return _decoded(decode_json_record(record), position.vehicle_id)


def decode_ping(topic: str, payload: bytes, prefix: str = DEFAULT_TOPIC_PREFIX) -> Ping | WireError:
    """Decode one MQTT message on the tracker's own topic; never raises."""
    vehicle_id = vehicle_of_topic(topic, prefix)
    if vehicle_id is None:
        return WireError(None, Reason.MALFORMED, f"topic {topic!r} is not {prefix}/<id>/position")
    problem = id_problem(vehicle_id)  # the same rule as the phones' ids: at most 128 characters
    if problem is not None:
        shown = vehicle_id if len(vehicle_id) <= MAX_ID_LENGTH else vehicle_id[:MAX_ID_LENGTH] + "…"
        return WireError(shown, Reason.MALFORMED, f"the topic's vehicle id {problem}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}"
        return WireError(vehicle_id, Reason.MALFORMED, detail)
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        return WireError(vehicle_id, Reason.MALFORMED, f"payload is not JSON ({e})")
    except RecursionError:  # "[[[[...": 4 KB of brackets nest deeper than Python recurses
        return WireError(vehicle_id, Reason.MALFORMED, "payload is JSON nested too deep")
    if isinstance(obj, dict):
        given = obj.get("vehicle_id")
        if given is None or given == "":
            obj["vehicle_id"] = vehicle_id
        elif str(given) != vehicle_id:
            detail = f"payload vehicle_id {given!r} differs from the topic's {vehicle_id!r}"
            return WireError(vehicle_id, Reason.MALFORMED, detail)
        elif type(given) is not str:
            return _decoded(decode_json_record(obj), vehicle_id)
        common = _common_case(obj, vehicle_id)
        if common is not None:
            return common
    return _decoded(decode_json_record(obj), vehicle_id)


def _common_case(obj: dict[str, object], vehicle_id: str) -> Ping | None:
    """The payload as `decode_json_record` reads it, faster, for the usual message: numbers as
    JSON numbers, no ids but the topic's plain one. None for anything else (it takes over)."""
    timestamp = _json_number(obj.get("timestamp"))
    lat, lon = _json_number(obj.get("lat")), _json_number(obj.get("lon"))
    speed, bearing, accuracy = obj.get("speed"), obj.get("bearing"), obj.get("accuracy")
    speed_mps, bearing_deg = _json_number(speed), _json_number(bearing)
    accuracy_m = _json_number(accuracy)
    if (
        timestamp is None
        or lat is None
        or lon is None
        or (speed_mps is None and speed is not None)
        or (bearing_deg is None and bearing is not None)
        or (accuracy_m is None and accuracy is not None)
        or obj.get("route_id") is not None
        or obj.get("trip_id") is not None
        # the id as `decode_json_record` keeps it: no spaces to strip, not a float's digits
        or "." in vehicle_id
        or "\ufffd" in vehicle_id
        or vehicle_id.strip() != vehicle_id
    ):
        return None
    return Ping(
        vehicle_id=vehicle_id,
        timestamp=timestamp / 1000 if timestamp > MILLISECONDS_FROM else timestamp,
        lat=lat,
        lon=lon,
        speed_mps=speed_mps,
        bearing_deg=bearing_deg,
        accuracy_m=accuracy_m,
    )


def _json_number(value: object) -> float | None:
    """A JSON number as a float; None for anything else (null, text, true and false), and for
    an integer too large for a float (`decode_json_record` then says what is wrong)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return None
    return None


def _decoded(decoded: Ping | BadRow, vehicle_id: str) -> Ping | WireError:
    if isinstance(decoded, BadRow):
        return WireError(vehicle_id, decoded.reason, decoded.detail)
    return decoded
