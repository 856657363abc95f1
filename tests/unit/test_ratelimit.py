"""Tests for tracker.api.ratelimit: the limits' text, the counting, and the middleware's answer
in front of a small ASGI app (through httpx, as a client would see it)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tracker.api.ratelimit import RequestLimiter, describe, install_rate_limit, parse_rates


def test_limits_are_written_as_the_settings_take_them() -> None:
    assert parse_rates("off") == parse_rates("0") == parse_rates(" ") == ()
    minute, second = parse_rates("600/minute;20/second")
    assert (minute.amount, describe(minute)) == (600, "600 per minute")
    assert describe(second) == "20 per second"
    [five] = parse_rates("100 per 5 seconds")
    assert describe(five) == "100 per 5 seconds"
    for wrong in ("lots", "10/fortnight", "0/minute"):
        with pytest.raises(ValueError, match="write 600/minute"):
            parse_rates(wrong)


def test_each_client_has_its_own_count_and_a_refusal_is_not_counted() -> None:
    limiter = RequestLimiter(parse_rates("3/minute"))
    assert [limiter.check("a") for _ in range(3)] == [None, None, None]
    refusal = limiter.check("a")
    assert refusal is not None
    assert 1 <= refusal.retry_after_s <= 60
    assert refusal.detail.startswith("too many requests from a: at most 3 per minute; retry in ")
    assert limiter.check("b") is None  # another client
    assert limiter.check("a") is not None
    assert (limiter.allowed, limiter.refused) == (4, 2)


def test_no_limit_limits_nothing() -> None:
    limiter = RequestLimiter(parse_rates("off"))
    assert not limiter
    assert all(limiter.check("a") is None for _ in range(1000))


def _app(rate_limit: str) -> Starlette:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    paths = ("/api/vehicles", "/healthz", "/metrics", "/ingest/osmand", "/static/x.js")
    app = Starlette(routes=[Route(path, hello, methods=["GET", "POST"]) for path in paths])
    install_rate_limit(app, rate_limit)
    return app


async def test_the_middleware_answers_429_with_retry_after_and_spares_probes_and_phones() -> None:
    app = _app("2/minute")
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as client:
        assert [(await client.get("/api/vehicles")).status_code for _ in range(2)] == [200, 200]
        refused = await client.get("/api/vehicles")
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith("too many requests from 203.0.113.9: at most 2")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        for path in ("/healthz", "/metrics", "/static/x.js"):
            assert (await client.get(path)).status_code == 200, path
        assert (await client.post("/ingest/osmand")).status_code == 200
    other = httpx.ASGITransport(app=app, client=("198.51.100.7", 5000))
    async with httpx.AsyncClient(transport=other, base_url="http://tracker") as client:
        assert (await client.get("/api/vehicles")).status_code == 200
    assert app.state.rate_limiter.refused == 1


def test_with_no_limit_no_middleware_is_added() -> None:
    app = _app("off")
    assert app.user_middleware == []
    assert not app.state.rate_limiter
