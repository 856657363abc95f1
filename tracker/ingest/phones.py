"""Phone apps' location protocols, turned into the tracker's own position payload.

- **OsmAnd / Traccar Client** (HTTP, the "OsmAnd protocol" Traccar's server speaks): a `GET` or a
  form `POST` to `/ingest/osmand` with `id`, `lat`, `lon`, `timestamp` (epoch seconds, epoch
  milliseconds or ISO 8601), and optional `speed` (**knots**, as the apps send it), `bearing`
  (degrees), `accuracy` (metres); or Traccar Client's JSON `POST` (`{"device_id": ..,
  "location": {"timestamp": ISO, "coords": {"latitude", "longitude", "speed" (m/s),
  "heading", "accuracy"}}}`).
- **OwnTracks** (HTTP mode): a JSON `POST` to `/ingest/owntracks` of a `location` message
  (`_type: location`, `lat`, `lon`, `tst` epoch seconds, optional `vel` km/h, `cog` degrees,
  `acc` metres), the user and device in the `X-Limit-U` / `X-Limit-D` headers (or `?u=&d=`, or
  the message's `topic`, `owntracks/{user}/{device}`). Other message types are answered and left
  alone.

- **OwnTracks** (MQTT mode): the same `location` JSON on `owntracks/{user}/{device}`; the
  pipeline's decoder (`tracker.wire.decode_message`) reads it with `from_owntracks`.

Each becomes the JSON payload of `bus-tracker/v1/vehicles/{vehicle_id}/position` (docs/live.md),
so that the pipeline decodes, validates and matches it exactly as an MQTT ping, with the same
rejection reasons. The vehicle is the device (OsmAnd's `id`, OwnTracks' `{user}-{device}`), or,
with a devices file (`tracker.ingest.devices`), the vehicle the file gives that device; a device
the file does not list raises `UnknownDeviceError` before anything else of its message is read.
Pure: no I/O; a message that cannot be a position raises `PhoneMessageError` with what is wrong
and the `Reason` the pipeline counts it under.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tracker.core.model import Reason
from tracker.ingest.devices import MAX_ID_LENGTH, DeviceMap, id_problem

KNOT_MPS = 1852.0 / 3600.0
KMH_MPS = 1000.0 / 3600.0


class PhoneMessageError(ValueError):
    """A message that cannot be a position: what is missing or wrong (`reason`: malformed)."""

    reason: Reason = Reason.MALFORMED


class UnknownDeviceError(PhoneMessageError):
    """A position from a device the devices file does not list (`reason`: unknown_device)."""

    reason = Reason.UNKNOWN_DEVICE

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        # The file's path is not said: the answer goes back to the phone.
        super().__init__(f"device {device_id!r} is not in the tracker's devices file: add a "
                         f"line {device_id},<vehicle_id> to it for this phone")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Position:
    """One position from a phone, as the tracker's payload (`payload`) for `vehicle_id`."""

    vehicle_id: str
    payload: dict[str, float | str]


def vehicle_id_of(raw: object, what: str, devices: DeviceMap | None = None) -> str:
    """The vehicle a message's device id `raw` stands for: the id itself without `devices`,
    else the vehicle they give it (`UnknownDeviceError` if they do not list it)."""
    text = str(raw).strip() if raw is not None else ""
    if not text:
        raise PhoneMessageError(f"{what} is missing: it names the vehicle")
    if id_problem(text) is not None:
        raise PhoneMessageError(f"{what} {text[:40]!r} is not an id (at most {MAX_ID_LENGTH} "
                                "characters, none of / + #)")  # fmt: skip
    if devices is None:
        return text
    vehicle_id = devices.vehicle_of(text)
    if vehicle_id is None:
        raise UnknownDeviceError(text)
    return vehicle_id


def json_object(raw: bytes, what: str = "the body") -> Mapping[str, Any]:
    """`raw` as a JSON object (an HTTP body, an MQTT payload: `what`)."""
    try:
        found = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise PhoneMessageError(f"{what} is not JSON ({e})") from None
    except RecursionError:  # "[[[[...": nested deeper than Python recurses
        raise PhoneMessageError(f"{what} is JSON nested too deep") from None
    if not isinstance(found, dict):
        raise PhoneMessageError(f"{what} is not a JSON object")
    return found


def _required(raw: object, name: str) -> float:
    value = _number(raw, name)
    if value is None:
        raise PhoneMessageError(f"{name} is missing")
    return value


def _number(raw: object, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise PhoneMessageError(f"{name} {str(raw)[:40]!r} is not a number") from None
    except OverflowError:  # a JSON integer of hundreds of digits
        raise PhoneMessageError(f"{name} is an integer too large to be a number") from None
    if not math.isfinite(value):
        raise PhoneMessageError(f"{name} {raw!r} is not a finite number")
    return value


def _timestamp(raw: object, name: str) -> float:
    """Epoch seconds from epoch seconds, epoch milliseconds or ISO 8601 (UTC if no offset)."""
    if raw is None or raw == "":
        raise PhoneMessageError(f"{name} is missing")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except OverflowError:  # a JSON integer of hundreds of digits
        raise PhoneMessageError(f"{name} is an integer too large to be a time") from None
    except (TypeError, ValueError):
        try:
            parsed = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            detail = f"{name} {str(raw)[:40]!r} is neither epoch seconds nor ISO 8601"
            raise PhoneMessageError(detail) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.timestamp()
    if not math.isfinite(value):
        raise PhoneMessageError(f"{name} {raw!r} is not a finite number")
    return value / 1000.0 if value > 1e11 else value  # milliseconds since 1973


def _payload(
    timestamp: float, lat: float, lon: float, speed_mps: float | None, bearing: float | None,
    accuracy: float | None,
) -> dict[str, float | str]:  # fmt: skip
    out: dict[str, float | str] = {"timestamp": timestamp, "lat": lat, "lon": lon}
    if speed_mps is not None and speed_mps >= 0:
        out["speed"] = speed_mps
    if bearing is not None and bearing >= 0:
        out["bearing"] = bearing % 360.0
    if accuracy is not None and accuracy >= 0:
        out["accuracy"] = accuracy
    return out


def from_osmand(params: Mapping[str, Any], devices: DeviceMap | None = None) -> Position:
    """An OsmAnd / Traccar Client message: query or form parameters (see the module)."""
    vehicle_id = vehicle_id_of(params.get("id") or params.get("deviceid"), "id", devices)
    lat = _required(params.get("lat"), "lat")
    lon = _required(params.get("lon"), "lon")
    knots = _number(params.get("speed"), "speed")
    return Position(vehicle_id, _payload(
        _timestamp(params.get("timestamp"), "timestamp"), lat, lon,
        None if knots is None else knots * KNOT_MPS,
        _number(params.get("bearing") or params.get("heading"), "bearing"),
        _number(params.get("accuracy"), "accuracy"),
    ))  # fmt: skip


def from_traccar_json(body: Mapping[str, Any], devices: DeviceMap | None = None) -> Position:
    """Traccar Client's JSON message (see the module); its speed is in metres per second."""
    vehicle_id = vehicle_id_of(body.get("device_id"), "device_id", devices)
    location = body.get("location")
    if not isinstance(location, Mapping):
        raise PhoneMessageError('location is missing: expected {"location": {"coords": ...}}')
    coords = location.get("coords")
    if not isinstance(coords, Mapping):
        raise PhoneMessageError("location.coords is missing")
    lat = _required(coords.get("latitude"), "location.coords.latitude")
    lon = _required(coords.get("longitude"), "location.coords.longitude")
    return Position(vehicle_id, _payload(
        _timestamp(location.get("timestamp"), "location.timestamp"), lat, lon,
        _number(coords.get("speed"), "location.coords.speed"),
        _number(coords.get("heading"), "location.coords.heading"),
        _number(coords.get("accuracy"), "location.coords.accuracy"),
    ))  # fmt: skip


def from_owntracks(
    body: Mapping[str, Any], user: str | None, device: str | None,
    devices: DeviceMap | None = None,
) -> Position | None:  # fmt: skip
    """An OwnTracks message (see the module); None for a message that is not a location (`lwt`,
    `transition`, `waypoint`, `card`, ...), which is to be left alone.

    A message without `_type` is refused: it is no OwnTracks message. An `encrypted` one is
    refused rather than left alone: it may well hold a location, which the tracker cannot read
    without the app's key.
    """
    kind = body.get("_type")
    if not isinstance(kind, str) or not kind:
        raise PhoneMessageError('_type is missing: an OwnTracks message is {"_type": '
                                '"location", "lat": ..., "lon": ..., "tst": ...}')  # fmt: skip
    if kind == "encrypted":
        raise PhoneMessageError("the message is encrypted, which the tracker cannot read: "
                                "clear the app's secret encryption key")  # fmt: skip
    if kind != "location":
        return None
    topic = body.get("topic")
    if (not user or not device) and isinstance(topic, str):
        parts = topic.split("/")
        if len(parts) >= 3 and parts[0] == "owntracks":
            user, device = parts[1], parts[2]
    if not user or not device:
        raise PhoneMessageError("the user and device are missing: send the X-Limit-U and "
                                "X-Limit-D headers (OwnTracks does in HTTP mode)")  # fmt: skip
    vehicle_id = vehicle_id_of(f"{user}-{device}", "user-device", devices)
    lat = _required(body.get("lat"), "lat")
    lon = _required(body.get("lon"), "lon")
    kmh = _number(body.get("vel"), "vel")
    return Position(vehicle_id, _payload(
        _timestamp(body.get("tst"), "tst"), lat, lon,
        None if kmh is None else kmh * KMH_MPS,
        _number(body.get("cog"), "cog"),
        _number(body.get("acc"), "acc"),
    ))  # fmt: skip
