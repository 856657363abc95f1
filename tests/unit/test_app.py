"""The app's health when a background task crashes: answered, not hidden."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tracker.api.errors import install_error_handlers
from tracker.api.http import router
from tracker.app import _named


async def test_a_crashed_background_task_is_recorded_not_raised() -> None:
    failed: list[str] = []

    async def crash() -> None:
        raise RuntimeError("boom")

    await _named("pipeline", crash(), failed)
    assert failed == ["pipeline"]


async def test_healthz_answers_503_once_a_background_task_failed() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.failed_tasks = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/healthz")).status_code == 200
        app.state.failed_tasks.append("store writer")
        response = await client.get("/healthz")
        assert response.status_code == 503
        assert "store writer" in response.json()["detail"]
