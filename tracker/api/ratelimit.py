"""Per-client limits on HTTP requests, so that one scraper cannot starve the riders.

`RateLimitMiddleware` is a pure ASGI middleware in front of every HTTP route: each request
counts against its client's limits (`Settings.rate_limit`, e.g. ``600/minute``, several joined
by ``;`` as in ``20/second;600/minute``; ``off`` or ``0`` for none) and one over a limit is
answered at once, before any route runs::

    429 Too Many Requests
    Retry-After: 7
    {"detail": "too many requests from 203.0.113.9: at most 600 per 1 minute; retry in 7 s"}

The counting is the `limits` library's sliding window counter, in memory (two counters per
client and limit, expired by the library after two windows: memory is bounded by the clients
of the last two windows, not by their requests). A refused request does not count, so a client
that keeps asking is served at its limit's rate, never less. Refusals are counted
(`RequestLimiter.refused`, in ``/metrics`` as ``bus_tracker_http_rate_limited_total``) and
never logged one by one. `install_rate_limit` puts it in front of an app.

Who is a client: the peer address of the connection (``scope["client"]``, FastAPI's
``request.client.host``). Behind a reverse proxy that is the proxy's address, so every rider
would share one limit, unless uvicorn is told to trust the proxy's ``X-Forwarded-For``:
``tracker serve`` runs uvicorn with ``proxy_headers`` on, trusting only 127.0.0.1 by default;
for a proxy elsewhere (another container) set ``FORWARDED_ALLOW_IPS`` to its address (uvicorn
reads that variable; ``*`` trusts any peer, and lets any client choose its own address).

Not limited:

- ``/healthz``, ``/readyz`` and ``/metrics``: probes and scrapers of the operator's own;
- ``/ingest/*``: phones post their positions there, and a whole fleet behind one NAT address
  would share one limit (phones have their own credentials);
- ``/static/*``: the pages' scripts, styles and images, cheap files that a browser fetches
  together when a page loads (the page itself counts);
- the websocket ``/ws/live``, whose limits are its own (`tracker.live.ws`).

Operators are limited like anyone: their pages make a few requests a minute, and a login is
checked only after the limit (a request would otherwise cost a database look-up before it is
refused). The default limit (`Settings.rate_limit`) is generous enough for a few hundred riders
behind one NAT address, each page asking for its predictions every 15 s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT_PATHS: Final = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES: Final = ("/ingest/", "/static/")
OFF: Final = frozenset({"", "0", "off", "none"})
RATE_EXAMPLE: Final = "600/minute, or 20/second;600/minute, or off"


def parse_rates(text: str) -> tuple[RateLimitItem, ...]:
    """The limits written in `text` (``N/second|minute|hour|day``, several joined by ``;``);
    none for ``off``, ``0`` or nothing. Raises `ValueError` saying what to write instead."""
    if text.strip().lower() in OFF:
        return ()
    try:
        rates = tuple(parse_many(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a rate limit: write {RATE_EXAMPLE}") from None
    for rate in rates:
        if rate.amount < 1:
            raise ValueError(f"{text!r} allows no request at all: write {RATE_EXAMPLE}")
    return rates


def describe(rate: RateLimitItem) -> str:
    """``600 per minute``, ``100 per 5 seconds``: a limit as the refusal names it."""
    unit = rate.GRANULARITY.name
    per = unit if rate.multiples == 1 else f"{rate.multiples} {unit}s"
    return f"{rate.amount} per {per}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over one of its client's limits."""

    client: str
    rate: RateLimitItem
    retry_after_s: int  # whole seconds, at least 1, as the Retry-After header takes

    @property
    def detail(self) -> str:
        return (
            f"too many requests from {self.client}: at most {describe(self.rate)}; "
            f"retry in {self.retry_after_s} s"
        )


class RequestLimiter:
    """Counts each client's requests against `rates`; `check` says whether one more may go.

    Synchronous and in memory: no await between the test and the hit, so on one event loop a
    client cannot race past its limit. An empty `rates` limits nothing.
    """

    def __init__(self, rates: Sequence[RateLimitItem]) -> None:
        self.rates = tuple(rates)
        # The storage starts the library's expiry timer thread (it ends itself when idle):
        # made here, by `create_app`, never at import time.
        self._windows = SlidingWindowCounterRateLimiter(MemoryStorage()) if self.rates else None
        self.allowed = 0
        self.refused = 0

    def __bool__(self) -> bool:
        return bool(self.rates)

    def check(self, client: str) -> Refusal | None:
        """Count one request of `client`; a `Refusal` if it is over a limit (then not counted)."""
        windows = self._windows
        if windows is None:
            return None
        for rate in self.rates:
            if not windows.test(rate, client):
                self.refused += 1
                reset_at_s = windows.get_window_stats(rate, client).reset_time
                retry_after_s = max(1, math.ceil(reset_at_s - time.time()))
                return Refusal(client, rate, retry_after_s)
        for rate in self.rates:
            windows.hit(rate, client)
        self.allowed += 1
        return None


def is_exempt(scope: Scope) -> bool:
    """Whether this HTTP request is left out of the limits (see the module)."""
    path: str = scope.get("path", "")
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


def client_of(scope: Scope) -> str:
    """The client's address (see the module on proxies); ``unknown`` without one (a Unix
    socket): all such requests then share one limit."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    """Answers 429 to a request over its client's limits; passes anything else on."""

    def __init__(self, app: ASGIApp, *, limiter: RequestLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_exempt(scope):
            refusal = self.limiter.check(client_of(scope))
            if refusal is not None:
                response = JSONResponse(
                    {"detail": refusal.detail},
                    status_code=429,
                    headers={"Retry-After": str(refusal.retry_after_s)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_rate_limit(app: Starlette, rate_limit: str) -> RequestLimiter:
    """Limit `app`'s HTTP requests to `rate_limit` (`Settings.rate_limit`) per client: the
    middleware goes outside those added before it; the limiter, with its counters, is
    ``app.state.rate_limiter`` (for ``/metrics``). With no limit no middleware is added."""
    limiter = RequestLimiter(parse_rates(rate_limit))
    app.state.rate_limiter = limiter
    if limiter:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return limiter
