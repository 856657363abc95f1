"""Fixtures of the end-to-end tests: the real servers of `tests.integration.servers`, and the
shared folder of real feeds (`../shared/data`, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.servers import mosquitto, postgres_server, postgres_url
from tests.shared_data import SHARED_DATA, required

__all__ = ["mosquitto", "postgres_server", "postgres_url", "shared_data"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real feeds; the test fails where it is absent."""
    return required(SHARED_DATA)
