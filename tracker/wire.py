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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from tracker.core.model import Ping, Reason
from tracker.pings_io import BadRow, decode_json_record

DEFAULT_TOPIC_PREFIX = "bus-tracker/v1/vehicles"
MAX_PAYLOAD_BYTES = 4096
MILLISECONDS_FROM = 1e11  # a larger timestamp is in milliseconds (as `tracker.pings_io` reads it)


@dataclass(frozen=True, slots=True)
class WireError:
    """A message that could not be decoded into a ping; `vehicle_id` is from the topic if any."""

    vehicle_id: str | None
    reason: Reason
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


def decode_ping(topic: str, payload: bytes, prefix: str = DEFAULT_TOPIC_PREFIX) -> Ping | WireError:
    """Decode one MQTT message; never raises."""
    vehicle_id = vehicle_of_topic(topic, prefix)
    if vehicle_id is None:
        return WireError(None, Reason.MALFORMED, f"topic {topic!r} is not {prefix}/<id>/position")
    if len(payload) > MAX_PAYLOAD_BYTES:
        detail = f"payload of {len(payload)} bytes is over {MAX_PAYLOAD_BYTES}"
        return WireError(vehicle_id, Reason.MALFORMED, detail)
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as e:
        return WireError(vehicle_id, Reason.MALFORMED, f"payload is not JSON ({e})")
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
    """A JSON number as a float; None for anything else (null, text, true and false)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _decoded(decoded: Ping | BadRow, vehicle_id: str) -> Ping | WireError:
    if isinstance(decoded, BadRow):
        return WireError(vehicle_id, decoded.reason, decoded.detail)
    return decoded
