"""The one mapping from exceptions to HTTP status codes, installed by `install_error_handlers`.

    exception             (bases)                     status  when
    NotAuthenticatedError (TrackerError)               401    an operator's endpoint, no login
    ForbiddenError        (TrackerError)               403    logged in, but may not do this
    NotFoundError         (TrackerError, LookupError)  404    an id in the path is not known
    BadParameterError     (TrackerError, ValueError)   422    a query parameter cannot be used
    SubscriptionError     (tracker.live.hub)           422    a bad routes/bbox filter
    TooManyError          (TrackerError)               429    too many wrong passwords
    StoreError            (tracker.errors)             503    the database is unavailable
    ServiceBrokenError    (TrackerError)               503    a background task has crashed

Every answer is JSON ``{"detail": "<message>"}``; the message names the bad value and what to send
instead. FastAPI's own checks of query parameters (types, ranges) answer 422 with its usual list
of problems. Anything else is a bug: FastAPI answers 500 and logs the traceback.

A plain `ValueError` is deliberately *not* mapped: one raised by a bug deep in a handler must
show as a 500 and be logged, not as the client's fault. Endpoints turn bad input into
`BadParameterError` (a `ValueError` too).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from tracker.errors import StoreError, TrackerError
from tracker.live.hub import SubscriptionError


class NotFoundError(TrackerError, LookupError):
    """Something named in the request path does not exist (vehicle, route, stop)."""


class BadParameterError(TrackerError, ValueError):
    """A request parameter has a value the API cannot use; the message says what to send."""


class NotAuthenticatedError(TrackerError):
    """An operator endpoint called without credentials, or with wrong ones (`tracker.api.auth`)."""


class ForbiddenError(TrackerError):
    """The caller is known but may not do this (a write without its CSRF token, an operator on
    an admin endpoint)."""


class TooManyError(TrackerError):
    """The caller asked too often (logins after wrong passwords); the message says how long to
    wait."""


class ServiceBrokenError(TrackerError):
    """A background task of the service (pipeline, store writer, hub) has crashed."""


class Problem(BaseModel):
    """The body of an error answer, as declared in the OpenAPI document.

    `detail` is the mapping's message, or the list of problems of FastAPI's own checks (both
    answer 422, so one status must declare both shapes); other fields (the ingest's `reason`)
    may follow."""

    detail: str | list[dict[str, Any]]


_MEANING_OF_STATUS: Final = {
    400: "the request cannot be read (the message says what is wrong)",
    401: "no credentials, or wrong ones: log in at /login or send a Bearer token",
    403: "the device is not known, or the caller may not do this",
    404: "an id in the path or the query is not known",
    422: "a parameter cannot be used (the message says what to send instead)",
    429: "too many requests: wait (Retry-After says how long) and try again",
    503: "the database or a background task is unavailable: try again",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a router or route: `statuses` answered with a `Problem`, so that the
    OpenAPI document declares every status an endpoint can answer (schemathesis checks it)."""
    return {s: {"model": Problem, "description": _MEANING_OF_STATUS[s]} for s in statuses}


STATUS_OF_ERROR: Final[tuple[tuple[type[Exception], int], ...]] = (
    (NotFoundError, 404),
    (BadParameterError, 422),
    (SubscriptionError, 422),
    (NotAuthenticatedError, 401),
    (ForbiddenError, 403),
    (TooManyError, 429),
    (StoreError, 503),
    (ServiceBrokenError, 503),
)
"""Exception type → HTTP status. Starlette picks the first class in an exception's MRO that has a
handler, so a subclass of one of these gets its status."""


def status_of(error: Exception) -> int:
    """The status the API answers `error` with (500 for anything not in the mapping)."""
    for error_type, status in STATUS_OF_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


async def _answer(request: Request, error: Exception) -> JSONResponse:
    headers = None
    if isinstance(error, StoreError):
        headers = {"Retry-After": "5"}
    elif isinstance(error, NotAuthenticatedError):
        headers = {"WWW-Authenticate": 'Bearer realm="bus tracker operators"'}
    elif isinstance(error, TooManyError):
        headers = {"Retry-After": "900"}
    return JSONResponse({"detail": str(error)}, status_code=status_of(error), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on `app` (create_app calls this once)."""
    for error_type, _ in STATUS_OF_ERROR:
        app.add_exception_handler(error_type, _answer)
