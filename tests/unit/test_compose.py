"""compose.yaml agrees with the tracker's settings (there is no Docker engine to run it here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tracker.settings import ENV_PREFIX, Settings, env_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_services_are_the_broker_database_tracker_and_simulator(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"mosquitto", "postgres", "tracker", "simulator"}
    assert services["simulator"]["profiles"] == ["simulator"]
    for name in ("mosquitto", "postgres", "tracker"):
        assert "healthcheck" in services[name], name
        assert "profiles" not in services[name], name


def test_tracker_environment_names_are_settings(compose: dict[str, Any]) -> None:
    environment = compose["services"]["tracker"]["environment"]
    known = set(env_names())
    assert set(environment) <= known, set(environment) - known
    required = {ENV_PREFIX + name.upper() for name, f in Settings.model_fields.items()
                if f.is_required()}  # fmt: skip
    assert required == {"TRACKER_BROKER_URL", "TRACKER_DATABASE_URL", "TRACKER_GTFS"}
    assert required <= set(environment)


def test_defaults_in_compose_and_env_example_are_the_settings_defaults(
    compose: dict[str, Any],
) -> None:
    """`${TRACKER_X:-default}` in compose.yaml and `TRACKER_X=value` in .env.example repeat the
    settings' own defaults, or production would quietly run with other values."""
    given = {
        name: match.group(1)
        for name, value in compose["services"]["tracker"]["environment"].items()
        if (match := re.fullmatch(r"\$\{" + name + r":-(.*)\}", str(value)))
    }
    for line in (ROOT / ".env.example").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.startswith(ENV_PREFIX):
            given[name] = value
    assert "TRACKER_BATCH_INTERVAL_S" in given
    for name, value in given.items():
        field = name.removeprefix(ENV_PREFIX).lower()
        if name == "TRACKER_MQTT_CLIENT_ID":  # one per tracker of a deployment, on purpose
            continue
        default = Settings.model_fields[field].default
        if default is None:  # unset: an empty value
            assert value == "", (name, value)
            continue
        assert type(default)(value) == default, (name, value, default)


def test_tracker_urls_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    environment = compose["services"]["tracker"]["environment"]
    assert environment["TRACKER_BROKER_URL"] == "mqtt://mosquitto:1883"
    assert "@postgres:5432/" in environment["TRACKER_DATABASE_URL"]
    assert environment["TRACKER_HTTP_HOST"] == "0.0.0.0"
    port = environment["TRACKER_HTTP_PORT"]
    assert any(mapping.endswith(f":{port}") for mapping in compose["services"]["tracker"]["ports"])
    assert "/readyz" in " ".join(compose["services"]["tracker"]["healthcheck"]["test"])
    depends = compose["services"]["tracker"]["depends_on"]
    assert {k: v["condition"] for k, v in depends.items()} == {
        "mosquitto": "service_healthy",
        "postgres": "service_healthy",
    }


def test_the_simulator_publishes_to_the_compose_broker(compose: dict[str, Any]) -> None:
    command = compose["services"]["simulator"]["command"]
    assert command[:2] == ["simulator", "run"]
    assert command[command.index("--broker") + 1] == "mqtt://mosquitto:1883"


def test_broker_and_database_keep_their_data_in_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    assert "mosquitto-data:/mosquitto/data" in compose["services"]["mosquitto"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    assert {"mosquitto-data", "postgres-data"} <= volumes
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text()
    assert re.search(r"^persistence true$", conf, re.MULTILINE)
    assert re.search(r"^persistence_location /mosquitto/data/$", conf, re.MULTILINE)


def test_env_example_names_every_variable_compose_reads() -> None:
    text = (ROOT / "compose.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)", text))
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    assert used <= named, used - named
    assert named - used == set(), named - used  # nothing in the example that compose ignores
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.MULTILINE)  # no default secret


def test_the_image_runs_the_tracker() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["tracker", "serve"]' in dockerfile
    assert "pip install" in dockerfile
