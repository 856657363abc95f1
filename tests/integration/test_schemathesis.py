"""The tracker's OpenAPI document fuzzed by schemathesis against the running app (issue 11).

The real app (`create_app`) on a real Mosquitto and PostgreSQL, the buses of `test_api` published
first so the answers are not all empty; schemathesis then calls every operation of the app's own
``/openapi.json`` in-process over ASGI (no port), with inputs generated from the document, both
inputs it allows (positive mode) and inputs it forbids (negative mode, which must be refused with
a declared 4xx), and checks each answer:

- ``not_a_server_error``: no 5xx, whatever the input;
- ``status_code_conformance``: the status is one the operation declares;
- ``content_type_conformance``: the Content-Type is one declared for that status;
- ``response_schema_conformance``: the JSON body validates against the declared schema (bodies
  that are not JSON, the protobuf of ``/gtfs-rt``, the XML of ``/siri`` and the text of
  ``/metrics``, have no JSON schema to validate, so that check passes them by design).

The number of examples per operation is bounded and derandomized so the file runs in a stable,
short time; the failures of every operation are gathered and reported together, so one run lists
them all rather than the first. It runs twice: as a rider (no credentials: the operators'
operations must answer their declared 401) and as an admin (an API token of an admin account,
sent with every call, so the operators' operations run in full).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.core.result import Err
from schemathesis.python import asgi

from tests.integration.servers import Mosquitto
from tests.integration.test_api import (
    ALL_BUSES,
    TIMEOUT_S,
    _pings,
    _publish,
    account_token,
    service_settings,
)
from tracker.accounts import Role
from tracker.app import create_app
from tracker.store.postgres import open_store

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = int(os.environ.get("TRACKER_SCHEMATHESIS_EXAMPLES", "25"))
"""Per operation and generation mode; raise it for a deeper run (100 takes about a minute)."""
CHECKS = [  # looked up by name: schemathesis registers its checks lazily
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
REPUBLISH_EVERY_S = 2.0


def _get(schema: schemathesis.BaseSchema, path: str, headers: dict[str, str]) -> Any:
    """GET `path` (an operation without parameters) through the app, as schemathesis calls it."""
    response = schema[path]["GET"].Case().call(headers=headers)
    return response.json() if response.status_code == 200 else None


def _admin_headers(database_url: str) -> dict[str, str]:
    """The Authorization header of a new API token of an admin account made in the database."""

    async def token() -> str:
        async with open_store(database_url) as store:
            return await account_token(store, "fuzz-admin", Role.ADMIN)

    return {"Authorization": f"Bearer {asyncio.run(token())}"}


def _publish_until_stored(
    schema: schemathesis.BaseSchema, mosquitto: Mosquitto, now_s: float, app: FastAPI
) -> None:
    """Publish the buses of `test_api` until the tracker shows all of them.

    The app's lifespan runs on schemathesis's own event loop, so the test cannot await the MQTT
    subscription; a QoS 1 message published before the tracker has subscribed is not kept by the
    broker, so the pings are published again until every bus is seen (the store deduplicates on
    vehicle and timestamp, so a repeat changes nothing)."""
    pings = _pings(app.state.network, now_s)
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        _publish(mosquitto.url, pings)
        republish_at = time.monotonic() + REPUBLISH_EVERY_S
        while time.monotonic() < republish_at:
            vehicles = _get(schema, "/api/vehicles", {})
            if vehicles is not None and vehicles["count"] == len(ALL_BUSES):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the buses were not all seen in {TIMEOUT_S} s: {vehicles}")
            time.sleep(0.05)


def _fuzz(
    operation: Any, mode: GenerationMode, calls: Counter[str], headers: dict[str, str]
) -> None:
    """Run the bounded, derandomized examples of one operation in one mode; raise on the first
    failure (schemathesis raises a `FailureGroup` of the distinct failures of that example)."""
    key = f"{operation.label} ({mode.value})"

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        calls[key] += 1
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("caller", ["rider", "admin"])
def test_every_operation_conforms_to_the_openapi_document(
    caller: str,
    mosquitto: Mosquitto,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_ = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    headers = _admin_headers(postgres_url) if caller == "admin" else {}
    app = create_app(settings_)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan
    try:
        _publish_until_stored(schema, mosquitto, settings_.now(), app)
        operations = []
        for result in schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # a part of the document schemathesis cannot read
            operations.append(result.ok())
        calls: Counter[str] = Counter()
        failures: dict[str, str] = {}
        nothing_to_negate: list[str] = []
        for operation, mode in itertools.product(operations, GenerationMode):
            key = f"{operation.label} ({mode.value})"
            try:
                _fuzz(operation, mode, calls, headers)
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    failures[key] = "no valid input could be generated"
                # No parameters, or only free strings (a path segment): no input breaks the schema.
                nothing_to_negate.append(operation.label)
            except (Exception, BaseExceptionGroup) as error:  # gathered, reported together below
                failures[key] = f"{type(error).__name__}: {error}"
        print(
            f"\nschemathesis as {caller}: {len(operations)} operations x "
            f"{len(GenerationMode)} modes, "
            f"{sum(calls.values())} calls ({EXAMPLES_PER_OPERATION} examples at most each), "
            f"{len(CHECKS)} checks per call; {len(nothing_to_negate)} operations have no invalid "
            f"input to send; {len(failures)} failing"
        )
        assert len(operations) >= 30, [o.label for o in operations]  # the whole document
        assert all(calls[f"{o.label} (positive)"] > 0 for o in operations), calls
        assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
        fleet = schema["/api/fleet"]["GET"].Case().call(headers=headers)
        assert fleet.status_code == (200 if caller == "admin" else 401), fleet.text
    finally:
        asgi.shutdown_lifespans()
