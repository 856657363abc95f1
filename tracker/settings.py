"""The live service's settings: one class, read from ``TRACKER_*`` environment variables or flags.

Every setting has an environment variable named ``TRACKER_`` + its name in capitals (for
example ``TRACKER_DATABASE_URL``); `tracker serve` flags override them. The three without a
default (`broker_url`, `database_url`, `gtfs`) must be set, and a wrong value stops the service
at start with a message that names the variable and says what to put in it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tracker.api.ratelimit import parse_rates
from tracker.errors import TrackerError
from tracker.ingest.devices import load_devices
from tracker.wire import DEFAULT_TOPIC_PREFIX, OWNTRACKS_PREFIX, owntracks_subscription

ENV_PREFIX = "TRACKER_"

OSM_TILES_URL = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a>'


class SettingsError(TrackerError):
    """Settings are missing or wrong; the message lists each problem and what to set."""


class Settings(BaseSettings):
    """Everything `tracker serve` needs. Units are in the names."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # --- required ---------------------------------------------------------------------------
    broker_url: Annotated[str, Field(description="MQTT broker, mqtt://host:1883 or mqtts://")]
    database_url: Annotated[str, Field(description="PostgreSQL, postgresql://user:pw@host/db")]
    gtfs: Annotated[Path, Field(description="GTFS feed, a .zip file or a folder")]

    # --- HTTP ---------------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8000

    # --- MQTT ---------------------------------------------------------------------------------
    mqtt_client_id: str = "bus-tracker"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_protocol: Literal["5", "3.1.1"] = "5"
    # When a QoS 1 message is acknowledged to the broker (tracker/ingest/mqtt.py, Delivery):
    # "stored", once its row is committed (a killed tracker loses nothing), or "received", at
    # once (for a broker that cannot hold many unacknowledged messages, as the demo's amqtt).
    mqtt_ack: Literal["stored", "received"] = "stored"
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    share_group: str | None = None  # MQTT 5 shared subscription, to split load between trackers
    # OwnTracks in MQTT mode: locations on `{owntracks_topic_prefix}/{user}/{device}` ("": off)
    owntracks_topic_prefix: str = OWNTRACKS_PREFIX

    # --- phones ---------------------------------------------------------------------------------
    # A CSV `device_id,vehicle_id` (tracker/ingest/devices.py): a listed phone reports as its
    # vehicle, any other is rejected (`unknown_device`). Unset: any phone, as its own vehicle.
    devices_file: Path | None = None

    @field_validator("owntracks_topic_prefix")
    @classmethod
    def _owntracks_prefix(cls, prefix: str) -> str:
        if prefix:
            owntracks_subscription(prefix)  # raises a ValueError that says what is wrong
        return prefix

    @field_validator("devices_file", mode="before")
    @classmethod
    def _devices_file(cls, value: object) -> object:
        if value == "":
            return None  # `TRACKER_DEVICES_FILE=`: no file
        if value is not None:
            load_devices(Path(str(value)))  # a DevicesFileError (a ValueError) names the line
        return value

    # --- the pipeline ---------------------------------------------------------------------------
    batch_interval_s: Annotated[float, Field(gt=0, le=5)] = 0.05
    batch_max_pings: Annotated[int, Field(ge=1)] = 2000
    # Live messages waiting, well under 1 s of work at the matcher's pace: past that a vehicle's
    # older pings are superseded (stored, not matched, never broadcast), which keeps the live
    # latency bounded when the tracker falls behind; up to `superseded_capacity` of those wait
    # to be stored (cheap: no matching), and only past that are any dropped (counted).
    queue_capacity: Annotated[int, Field(ge=1)] = 2_000
    superseded_capacity: Annotated[int, Field(ge=1)] = 50_000
    store_queue_batches: Annotated[int, Field(ge=1)] = 2400  # batches held while the DB is down
    retention_days: Annotated[int, Field(ge=1)] = 30
    max_future_s: Annotated[float, Field(ge=0)] = 300.0
    # The matcher in a process of its own (True), beside the MQTT thread and the event loop
    # rather than sharing the interpreter lock with them; False: a thread of the service.
    matcher_process: bool = True
    # Answers are settled this long after their ping: a position whose trip the next minutes
    # show was another is revised in the history and on the pages (0: never revised).
    settle_lag_s: Annotated[float, Field(ge=0, le=3600)] = 120.0
    # At start, the arrival predictions learn from the stop events stored in the last days.
    learn_from_days: Annotated[float, Field(ge=0, le=365)] = 7.0
    # The routes the city tracks (comma-separated route ids): only their trips can be listed as
    # ghosts or short of buses. Default (or empty): the routes its buses ran on in the last 36 h.
    tracked_routes: str = ""

    def tracked_route_ids(self) -> frozenset[str] | None:
        """`tracked_routes` as a set; None when not given (every route a bus ran on)."""
        found = frozenset(r.strip() for r in self.tracked_routes.split(",") if r.strip())
        return found or None

    # --- live output ----------------------------------------------------------------------------
    live_tick_s: Annotated[float, Field(gt=0, le=10)] = 0.1
    stale_after_s: Annotated[float, Field(gt=0)] = 90.0  # drawn as stale on the map
    hide_after_s: Annotated[float, Field(gt=0)] = 600.0  # dropped from the live view
    tiles_url: str = OSM_TILES_URL
    tiles_attribution: str = OSM_ATTRIBUTION

    # --- operators' logins (tracker/api/auth.py) ------------------------------------------------
    session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0  # a login lasts a shift
    # The session cookie's Secure flag: "auto" when the request came over HTTPS (directly or
    # through a proxy uvicorn trusts), "always" (a TLS proxy that uvicorn does not trust), "never".
    cookie_secure: Literal["auto", "always", "never"] = "auto"

    # --- limits on HTTP requests (tracker/api/ratelimit.py) -------------------------------------
    # Per client address: N/second|minute|hour|day, several joined by ";"; "off" for none.
    rate_limit: str = "30/second;1800/minute"

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, text: str) -> str:
        parse_rates(text)  # raises a ValueError that says what to write
        return text

    # --- GTFS-realtime in -----------------------------------------------------------------------
    # Agencies' VehiclePositions feeds polled into the pipeline (tracker/ingest/gtfs_rt_poll.py);
    # the variable is comma-separated, `--poll-gtfs-rt` may be given several times.
    poll_gtfs_rt: Annotated[list[str], NoDecode] = []
    poll_every_s: Annotated[float, Field(gt=0, le=3600)] = 10.0

    @field_validator("poll_gtfs_rt", mode="before")
    @classmethod
    def _poll_urls(cls, value: object) -> object:
        if isinstance(value, str):
            value = [url.strip() for url in value.split(",") if url.strip()]
        if isinstance(value, list | tuple):
            for url in value:
                if not (isinstance(url, str) and url.startswith(("http://", "https://"))):
                    raise ValueError(f"{url!r} is not a feed URL: use http://... or https://...")
        return value

    # --- clock ----------------------------------------------------------------------------------
    clock_offset_s: float = 0.0  # service clock = wall clock + this (demos, replays of past days)
    # Until the wall-clock time `clock_fast_until_s` (epoch s), the service clock runs
    # `clock_fast_speed` times as fast, reaching wall clock + offset then: the demo's catch-up,
    # which plays the buses' recent past at that speed.
    clock_fast_until_s: float | None = None
    clock_fast_speed: Annotated[float, Field(ge=1)] = 1.0

    @field_validator("gtfs")
    @classmethod
    def _feed_exists(cls, path: Path) -> Path:
        if not path.exists():
            raise ValueError(f"no GTFS feed at {path}: give the path of a .zip file or a folder")
        return path

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, url: str) -> str:
        if not url.startswith(("mqtt://", "mqtts://")):
            raise ValueError(f"{url!r} is not an MQTT URL: use mqtt://host:1883 or mqtts://...")
        return url

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, url: str) -> str:
        if not url.startswith(("postgresql://", "postgres://")):
            shown = url.split("@")[-1]
            raise ValueError(
                f"'...{shown}' is not a PostgreSQL URL: use postgresql://user:password@host/db"
            )
        return url

    def now(self) -> float:
        """The service clock, epoch seconds."""
        wall_s = time.time()
        until_s = self.clock_fast_until_s
        if until_s is not None and wall_s < until_s:
            return until_s + self.clock_offset_s - (until_s - wall_s) * self.clock_fast_speed
        return wall_s + self.clock_offset_s


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with `overrides` (flags) on top; None means not given.

    Raises `SettingsError` naming each missing or wrong variable.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        lines = []
        for problem in e.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "?"
            env = ENV_PREFIX + name.upper()
            if problem["type"] == "missing":
                field = Settings.model_fields[name]
                lines.append(f"{env} is not set: {field.description}")
            else:
                message = str(problem["msg"]).removeprefix("Value error, ")
                lines.append(f"{env}: {message}")
        raise SettingsError("settings are missing or wrong:\n  " + "\n  ".join(lines)) from None


def env_names() -> list[str]:
    """Every environment variable the settings read (for compose.yaml and its test)."""
    return [ENV_PREFIX + name.upper() for name in Settings.model_fields]
