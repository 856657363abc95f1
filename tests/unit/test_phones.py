"""Phone apps' location messages (tracker.ingest.phones) turned into the tracker's payload."""

from __future__ import annotations

import pytest

from tracker.ingest.phones import (
    KMH_MPS,
    KNOT_MPS,
    PhoneMessageError,
    from_osmand,
    from_owntracks,
    from_traccar_json,
)


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
