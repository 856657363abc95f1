"""Fixtures of the end-to-end tests: the real servers of `tests.integration.servers`, and the
shared folder of real feeds (`../shared/data`, see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.servers import mosquitto, postgres_server, postgres_url

__all__ = ["mosquitto", "postgres_server", "postgres_url", "shared_data"]

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real feeds; the test is skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA
