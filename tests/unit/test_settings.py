"""Settings: from TRACKER_* variables and flags; missing or wrong ones fail at start, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import feeds
from tracker.cli import main
from tracker.settings import Settings, SettingsError, env_names, load_settings

REQUIRED = ("TRACKER_BROKER_URL", "TRACKER_DATABASE_URL", "TRACKER_GTFS")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in env_names():
        monkeypatch.delenv(name, raising=False)


def test_missing_settings_are_named_with_what_to_set() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    for name in REQUIRED:
        assert f"{name} is not set" in message
    assert "mqtt://" in message
    assert "postgresql://" in message


def test_wrong_settings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            broker_url="http://broker",
            database_url="mysql://user:secret@db/x",
            gtfs=tmp_path / "missing.zip",
            http_port=70000,
        )
    message = str(caught.value)
    assert "TRACKER_BROKER_URL: 'http://broker' is not an MQTT URL" in message
    assert "TRACKER_DATABASE_URL" in message
    assert "secret" not in message  # the password is never shown
    assert f"TRACKER_GTFS: no GTFS feed at {tmp_path / 'missing.zip'}" in message
    assert "TRACKER_HTTP_PORT" in message


def test_environment_is_read_and_flags_override_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = feeds.loop_feed(tmp_path)
    monkeypatch.setenv("TRACKER_BROKER_URL", "mqtt://broker:1883")
    monkeypatch.setenv("TRACKER_DATABASE_URL", "postgresql://u:p@db/tracker")
    monkeypatch.setenv("TRACKER_GTFS", str(feed))
    monkeypatch.setenv("TRACKER_RETENTION_DAYS", "7")
    settings = load_settings(http_port=9000, retention_days=None)  # None: flag not given
    assert isinstance(settings, Settings)
    assert settings.broker_url == "mqtt://broker:1883"
    assert settings.gtfs == feed
    assert settings.retention_days == 7
    assert settings.http_port == 9000


def test_serve_without_settings_exits_2_with_the_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "TRACKER_DATABASE_URL is not set" in err


def test_the_clock_runs_fast_until_the_catch_up_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's catch-up: 20x until wall time 1000, then wall clock + offset.
    settings = Settings(
        broker_url="mqtt://broker",
        database_url="postgresql://db/x",
        gtfs=feeds.loop_feed(tmp_path),
        clock_offset_s=5000.0,
        clock_fast_until_s=1000.0,
        clock_fast_speed=20.0,
    )
    wall = {"s": 940.0}
    monkeypatch.setattr("tracker.settings.time.time", lambda: wall["s"])
    assert settings.now() == pytest.approx(6000.0 - 60.0 * 20)
    wall["s"] = 1000.0
    assert settings.now() == pytest.approx(6000.0)
    wall["s"] = 1010.0
    assert settings.now() == pytest.approx(6010.0)
