"""The devices file (tracker.ingest.devices): which vehicle a phone reports as, and what a file
that cannot be used says (the file, the line, the fix)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests import feeds
from tracker.ingest.devices import DeviceMap, DevicesFileError, load_devices, parse_devices
from tracker.settings import Settings, SettingsError, env_names, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)


def test_a_listed_device_reports_as_its_vehicle_and_others_are_unknown() -> None:
    devices = parse_devices("device_id,vehicle_id\nalice-phone,bus-7\n358240051111110,bus-12\n")
    assert devices.vehicle_of("alice-phone") == "bus-7"
    assert devices.vehicle_of("358240051111110") == "bus-12"
    assert devices.vehicle_of("bob-phone") is None
    assert devices.vehicle_of("bus-7") is None  # a vehicle id is not a device id
    assert len(devices) == 2


def test_what_spreadsheets_write_is_read() -> None:
    """A byte order mark, CRLF line ends, spaces, blank lines, columns in another order, a
    quoted field and a column of notes."""
    text = (
        "\ufeff vehicle_id , note, device_id\r\n"
        'bus-7, "driver\'s phone, the old one", alice-phone\r\n'
        "\r\n"
        ",,\r\n"
        "bus-7,spare,spare-phone\r\n"
    )
    devices = parse_devices(text)
    assert dict(devices.vehicles) == {"alice-phone": "bus-7", "spare-phone": "bus-7"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "is empty: its first line is the header device_id,vehicle_id"),
        (
            "device,vehicle\na,b\n",
            "line 1: the header 'device,vehicle' has no device_id and no vehicle_id column",
        ),
        ("device_id,bus\na,b\n", "line 1: the header 'device_id,bus' has no vehicle_id column"),
        ("device_id,vehicle_id\na,b\nc\n", "line 3: 1 field(s), expected 2"),
        ("device_id,vehicle_id\na,b\n\nc,\n", "line 4: vehicle_id is empty"),
        ("device_id,vehicle_id\n,b\n", "line 2: device_id is empty"),
        ("device_id,vehicle_id\na,bus/7\n", "line 2: vehicle_id 'bus/7' holds one of / + #"),
        ("device_id,vehicle_id\nphone+1,b\n", "line 2: device_id 'phone+1' holds one of"),
        ("device_id,vehicle_id\n" + "x" * 129 + ",b\n", "is 129 characters long, over 128"),
        (
            "device_id,vehicle_id\na,b\nc,d\na,e\n",
            "line 4: device 'a' is listed twice (first on line 2)",
        ),
        ("device_id,vehicle_id\n\n", "lists no device, so every phone would be refused"),
    ],
)
def test_a_file_that_cannot_be_used_names_the_line_and_what_is_wrong(text: str, error: str) -> None:
    with pytest.raises(DevicesFileError) as caught:
        parse_devices(text, source="devices file phones.csv")
    message = str(caught.value)
    assert message.startswith("devices file phones.csv")
    assert error in message


def test_a_line_number_counts_the_lines_of_a_quoted_line_break() -> None:
    text = 'device_id,vehicle_id,note\na,b,"two\nlines"\nc/d,e,\n'
    with pytest.raises(DevicesFileError, match="line 4: device_id 'c/d'"):
        parse_devices(text)


def test_load_reads_the_file_or_says_why_it_cannot(tmp_path: Path) -> None:
    path = tmp_path / "devices.csv"
    path.write_text("device_id,vehicle_id\nalice-phone,bus-7\n")
    devices = load_devices(path)
    assert devices == DeviceMap({"alice-phone": "bus-7"}, f"devices file {path}")
    with pytest.raises(DevicesFileError, match=f"there is no devices file {tmp_path / 'no.csv'}"):
        load_devices(tmp_path / "no.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("device_id,vehicle_id\nt\xe9l\xe9phone,bus-7\n".encode("latin-1"))
    with pytest.raises(DevicesFileError, match="is not UTF-8 text"):
        load_devices(latin)
    with pytest.raises(DevicesFileError, match="cannot read devices file"):
        load_devices(tmp_path)  # a folder


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(broker_url="mqtt://127.0.0.1:1883", database_url="postgresql://db/x",
                         gtfs=feeds.two_directions_feed(tmp_path), **overrides)  # fmt: skip


def test_the_setting_checks_the_file_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _settings(tmp_path).devices_file is None  # by default: any phone, as itself
    path = tmp_path / "devices.csv"
    path.write_text("device_id,vehicle_id\nalice-phone,bus-7\nbob-phone\n")
    monkeypatch.setenv("TRACKER_DEVICES_FILE", str(path))
    with pytest.raises(SettingsError) as caught:
        _settings(tmp_path)
    assert f"TRACKER_DEVICES_FILE: devices file {path}, line 3: 1 field(s)" in str(caught.value)
    path.write_text("device_id,vehicle_id\nalice-phone,bus-7\n")
    assert _settings(tmp_path).devices_file == path
    monkeypatch.setenv("TRACKER_DEVICES_FILE", "")  # set but empty: no file
    assert _settings(tmp_path).devices_file is None


def test_the_owntracks_prefix_setting_is_a_topic_prefix_or_off(tmp_path: Path) -> None:
    assert _settings(tmp_path).owntracks_topic_prefix == "owntracks"
    assert _settings(tmp_path, owntracks_topic_prefix="").owntracks_topic_prefix == ""
    assert _settings(tmp_path, owntracks_topic_prefix="city/ot").owntracks_topic_prefix == "city/ot"
    for bad in ("owntracks/", "owntracks/#", "/owntracks"):
        with pytest.raises(SettingsError, match="TRACKER_OWNTRACKS_TOPIC_PREFIX: OwnTracks topic"):
            _settings(tmp_path, owntracks_topic_prefix=bad)


def test_a_token_column_holds_each_phones_token_hash() -> None:
    digest = hashlib.sha256(b"the-token").hexdigest()
    devices = parse_devices(
        f"device_id,vehicle_id,token_sha256\nalice,bus-7,{digest}\nbob,bus-8,\n"
    )
    assert devices.token_problem("alice", "the-token") is None
    assert devices.token_problem("alice", "The-token") == "the token of device 'alice' is wrong"
    assert "must send its token" in str(devices.token_problem("alice", None))
    assert devices.token_problem("bob", None) is None  # no token in the file: none needed
    with pytest.raises(DevicesFileError, match="line 2: token_sha256 is not 64 hex digits"):
        parse_devices("device_id,vehicle_id,token_sha256\nalice,bus-7,abc\n")
