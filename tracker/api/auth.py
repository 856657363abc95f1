"""Logins, and the rule of who may call what.

Public (riders): the rider page, vehicles, routes, stops, predictions, the GTFS-realtime and
SIRI feeds, health checks, metrics. Everything else the operator uses needs an account
(`tracker users add NAME`): the pages ``/operator`` and ``/replay`` (a visitor without a session
is sent to ``/login``), the fleet, problems, history, stats, operations and stop-event APIs,
and every write (cancellations). Accounts with the ``admin`` role may also manage accounts.

How a caller proves who it is (`caller_of`), for HTTP requests and the websocket alike:

- a **session** (browsers): ``POST /api/login`` with the name and password sets the
  ``tracker_session`` cookie — HttpOnly (no script reads it), SameSite=Strict (no other site's
  page sends it), Secure when the request came over HTTPS (directly, or through a proxy that
  says so in X-Forwarded-Proto to a uvicorn that trusts it) or always with
  ``TRACKER_COOKIE_SECURE=always``. It lasts ``TRACKER_SESSION_HOURS`` (12 h: a shift).
- an **API token** (scripts): ``Authorization: Bearer bt_...`` from ``tracker users token``.

Writes with a session must also carry the session's CSRF token in ``X-CSRF-Token`` (the pages
get it from the login answer or ``GET /api/me``): SameSite already keeps other sites' forms
out, and the token keeps out what SameSite misses (a subdomain, an old browser). Token callers
need none: a browser never adds an Authorization header by itself.

Answers: 401 without (valid) credentials, with ``WWW-Authenticate: Bearer``; 403 for a write
without the CSRF token or an operator calling an admin endpoint; 429 after
`LOGIN_FAILURES` wrong passwords for one name (or from one address) within the window, so a
password cannot be guessed online; the counters are `AuthStats`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Path, Request, Response
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection

from tracker import accounts
from tracker.accounts import AccountError, Caller, Role
from tracker.api.deps import SettingsDep, StoreDep, get_store
from tracker.api.errors import (
    BadParameterError,
    ForbiddenError,
    NotAuthenticatedError,
    NotFoundError,
    TooManyError,
    problem_responses,
)
from tracker.settings import Settings
from tracker.store import accounts as stored

log = logging.getLogger(__name__)

SESSION_COOKIE: Final = "tracker_session"
CSRF_HEADER: Final = "X-CSRF-Token"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_FAILURES: Final = RateLimitItemPerMinute(10, 15)  # wrong passwords per 15 min, per name
LOGIN_HINT: Final = (
    "log in at /login, or send Authorization: Bearer <token> (made by `tracker users token NAME`)"
)


@dataclass(slots=True)
class AuthStats:
    """Counters of the logins (in ``/api/stats`` and ``/metrics``)."""

    logins: int = 0
    failed_logins: int = 0
    throttled_logins: int = 0
    refused_requests: int = 0  # 401 and 403 of operator endpoints


class AuthState:
    """What the app keeps for logins (``app.state.auth``, made by `create_app`): the counters,
    and the moving windows of failed logins per name and per address (in memory: a restart
    forgets them, and each tracker process counts its own)."""

    def __init__(self) -> None:
        self.stats = AuthStats()
        self.failures = MovingWindowRateLimiter(MemoryStorage())


def _auth_state(connection: HTTPConnection) -> AuthState:
    found = getattr(connection.app.state, "auth", None)
    if not isinstance(found, AuthState):
        raise RuntimeError("app.state.auth is not an AuthState: create_app makes it")
    return found


def auth_stats(connection: HTTPConnection) -> AuthStats:
    return _auth_state(connection).stats


# --- who is calling ------------------------------------------------------------------------------


async def caller_of(connection: HTTPConnection) -> Caller | None:
    """The account behind a request or a websocket, or None (a rider).

    A request that sends an Authorization header is judged by it alone: a wrong token is
    None even with a good cookie beside it, so a script's mistake is not hidden. Only a caller
    that sends credentials costs a look-up in ``app.state.store``."""
    authorization = connection.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        found_account = await stored.token_account(
            get_store(connection), accounts.token_digest(token.strip())
        )
        return None if found_account is None else Caller(found_account, "token")
    cookie = connection.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = await stored.session(get_store(connection), accounts.token_digest(cookie))
    if found is None:
        return None
    account, csrf_token = found
    return Caller(account, "session", csrf_token)


async def require_operator(request: Request) -> Caller:
    """The caller of an operator endpoint; 401 without an account, 403 for a session's write
    without its CSRF token. The caller is kept in ``request.state.caller`` too."""
    caller = await caller_of(request)
    if caller is None:
        auth_stats(request).refused_requests += 1
        raise NotAuthenticatedError(f"{request.url.path} is for operators: {LOGIN_HINT}")
    if caller.via == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if caller.csrf_token is None or not secrets.compare_digest(sent, caller.csrf_token):
            auth_stats(request).refused_requests += 1
            raise ForbiddenError(
                f"a {request.method} with a session needs the session's CSRF token in the "
                f"{CSRF_HEADER} header (from the login's answer or GET /api/me)"
            )
    request.state.caller = caller
    return caller


async def require_admin(caller: Annotated[Caller, Depends(require_operator)]) -> Caller:
    if not caller.account.is_admin:
        raise ForbiddenError(f"account {caller.account.name!r} is an operator; this is for admins")
    return caller


OperatorDep = Annotated[Caller, Depends(require_operator)]
AdminDep = Annotated[Caller, Depends(require_admin)]
OPERATORS_ONLY: Final = [Depends(require_operator)]
"""``dependencies=`` of an operator endpoint or router."""
OPERATOR_RESPONSES: Final = problem_responses(401, 403)


def safe_next(path: str | None) -> str:
    """Where a login may send the browser on: a path of this site, never another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/operator"
    return path


# --- the endpoints -------------------------------------------------------------------------------

router = APIRouter(prefix="/api", tags=["accounts"])


ACCOUNT_NAME: Final = f"^{accounts.NAME_PATTERN.pattern}$"  # what the table takes, and no more


class Login(BaseModel):
    name: str = Field(pattern=ACCOUNT_NAME)
    password: str = Field(min_length=1, max_length=accounts.MAX_PASSWORD_CHARS)


class Me(BaseModel):
    name: str
    role: Role
    via: str  # "session" or "token"
    csrf_token: str | None  # send it back in X-CSRF-Token on writes (sessions only)


class NewAccount(BaseModel):
    name: str = Field(pattern=ACCOUNT_NAME)
    role: Role = Role.OPERATOR


class AccountInfo(BaseModel):
    name: str
    role: Role
    created_at_s: float
    open_sessions: int
    tokens: list[str]  # their labels


class CreatedAccount(BaseModel):
    name: str
    role: Role
    password: str  # shown this once; only its hash is stored


def _me(caller: Caller) -> Me:
    return Me(name=caller.account.name, role=caller.account.role, via=caller.via,
              csrf_token=caller.csrf_token)  # fmt: skip


def _cookie_secure(request: Request, settings: Settings) -> bool:
    if settings.cookie_secure == "auto":
        return request.url.scheme == "https"
    return settings.cookie_secure == "always"


def _client_key(request: Request) -> str:
    return request.client.host if request.client is not None else "?"


@router.post("/login", responses=problem_responses(400, 401, 429))  # 400: a body not JSON
async def login(body: Login, request: Request, response: Response, store: StoreDep,
                settings: SettingsDep) -> Me:  # fmt: skip
    """Log in: sets the session cookie and answers the session's CSRF token."""
    auth = _auth_state(request)
    keys = (("name", body.name), ("address", _client_key(request)))
    if not all(auth.failures.test(LOGIN_FAILURES, *key) for key in keys):
        auth.stats.throttled_logins += 1
        raise TooManyError(
            f"too many wrong passwords for {body.name!r} or from this address: wait 15 minutes"
        )
    found = await stored.password_hash_of(store, body.name)
    password_hash = None if found is None else found[1]
    right = await asyncio.to_thread(accounts.verify_password, password_hash, body.password)
    if found is None or not right:
        auth.stats.failed_logins += 1
        for key in keys:
            auth.failures.hit(LOGIN_FAILURES, *key)
        log.info("failed login for %r from %s", body.name[:64], _client_key(request))
        raise NotAuthenticatedError("wrong name or password")
    account, password_hash = found
    if accounts.needs_rehash(password_hash):
        rehashed = await asyncio.to_thread(accounts.hash_password, body.password)
        await stored.set_password(store, account.name, rehashed)
    token, csrf_token = accounts.new_token(), secrets.token_urlsafe(24)
    lifetime_s = settings.session_hours * 3600.0
    await stored.start_session(store, account.name, accounts.token_digest(token), csrf_token,
                               lifetime_s)  # fmt: skip
    response.set_cookie(SESSION_COOKIE, token, max_age=int(lifetime_s), path="/", httponly=True,
                        samesite="strict", secure=_cookie_secure(request, settings))  # fmt: skip
    auth.stats.logins += 1
    log.info("%s %r logged in from %s", account.role.value, account.name, _client_key(request))
    return _me(Caller(account, "session", csrf_token))


@router.post("/logout", status_code=204, responses=OPERATOR_RESPONSES)
async def logout(request: Request, response: Response, caller: OperatorDep,
                 store: StoreDep) -> None:  # fmt: skip
    """End this session (a token caller: nothing to end)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if caller.via == "session" and cookie:
        await stored.end_session(store, accounts.token_digest(cookie))
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")


@router.get("/me", responses=OPERATOR_RESPONSES)
async def me(caller: OperatorDep) -> Me:
    """Who is logged in, and the CSRF token the page sends back on writes."""
    return _me(caller)


@router.get("/accounts", responses=OPERATOR_RESPONSES)
async def list_accounts(caller: AdminDep, store: StoreDep) -> list[AccountInfo]:
    """Admins: every account, its open sessions and its tokens' labels."""
    return [
        AccountInfo(
            name=row.account.name,
            role=row.account.role,
            created_at_s=row.created_at.timestamp(),
            open_sessions=row.sessions,
            tokens=list(row.tokens),
        )
        for row in await stored.listing(store)
    ]


@router.post("/accounts", status_code=201, responses=problem_responses(400, 401, 403, 422))
async def create_account(body: NewAccount, caller: AdminDep, store: StoreDep) -> CreatedAccount:
    """Admins: a new account with a random password, shown in this answer only."""
    try:
        name = accounts.check_name(body.name)
    except AccountError as error:
        raise BadParameterError(str(error)) from None
    password = accounts.new_password()
    password_hash = await asyncio.to_thread(accounts.hash_password, password)
    try:
        await stored.create(store, name, body.role, password_hash)
    except AccountError as error:
        raise BadParameterError(str(error)) from None
    log.info("admin %r made %s account %r", caller.account.name, body.role.value, name)
    return CreatedAccount(name=name, role=body.role, password=password)


@router.delete("/accounts/{name}", status_code=204, responses=problem_responses(401, 403, 404, 422))
async def delete_account(
    name: Annotated[str, Path(pattern=ACCOUNT_NAME)], caller: AdminDep, store: StoreDep
) -> None:
    """Admins: remove an account, its sessions and its tokens (not one's own)."""
    if name == caller.account.name:
        raise BadParameterError("an admin cannot remove their own account: ask another admin")
    if not await stored.delete(store, name):
        raise NotFoundError(f"there is no account {name!r}")
    log.info("admin %r removed account %r", caller.account.name, name)
