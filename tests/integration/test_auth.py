"""Operator logins end to end: the real app on a real Mosquitto and PostgreSQL, through httpx on
its ASGI interface, and ``tracker users`` run as a real process on the same database.

Who may call what (`tracker.api.auth`): riders' endpoints answer anyone; the operator's answer
401 without credentials, and 200 with a session cookie or an API token; writes with a session
need its CSRF token; admin endpoints refuse operators; wrong passwords are throttled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.servers import Mosquitto
from tests.integration.test_api import TEST_PASSWORD, operator_token, running, service_settings
from tracker import accounts
from tracker.accounts import Role
from tracker.api.auth import CSRF_HEADER, LOGIN_FAILURES, SESSION_COOKIE
from tracker.app import create_app
from tracker.store import accounts as stored_accounts

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ("/api/vehicles", "/api/routes", "/api/stops?bbox=-8,33,-7,34", "/api/predictions",
          "/api/config", "/gtfs-rt/vehicle-positions", "/siri/vehicle-monitoring", "/healthz",
          "/", "/login")  # fmt: skip
OPERATORS = ("/api/fleet", "/api/problems", "/api/history?start_s=0&end_s=60",
             "/api/history/bounds", "/api/stats", "/api/operations/alerts",
             "/api/operations/headways", "/api/operations/detours",
             "/api/predictions/accuracy", "/api/stop-events?start_s=0&end_s=60",
             "/api/operator/cancellations", "/api/me")  # fmt: skip
CANCEL = {"trip_id": "B_N_0812", "service_date": "20260304"}


async def _account(app: FastAPI, name: str, role: Role = Role.OPERATOR) -> None:
    await stored_accounts.create(app.state.store, name, role, accounts.hash_password(TEST_PASSWORD))


async def _login(client: httpx.AsyncClient, name: str, password: str = TEST_PASSWORD) -> str:
    """Log in; the session's CSRF token."""
    response = await client.post("/api/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def test_riders_are_served_and_operator_endpoints_need_a_login(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    async with running(create_app(settings), operator=False) as rider:
        for path in PUBLIC:
            response = await rider.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text)
        for path in OPERATORS:
            response = await rider.get(path)
            assert response.status_code == 401, (path, response.status_code)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "/login" in response.json()["detail"]
        refused = await rider.post("/api/operator/cancellations", json=CANCEL)
        assert refused.status_code == 401
        for page in ("/operator", "/replay"):
            redirect = await rider.get(page)
            assert redirect.status_code == 303
            assert redirect.headers["location"] == f"/login?next={page}"
        bad = await rider.get("/api/fleet", headers={"Authorization": "Bearer bt_not-a-token"})
        assert bad.status_code == 401
        stats = (await rider.get("/metrics")).text
        assert "bus_tracker_auth_refused_requests_total" in stats


async def test_a_session_opens_the_pages_and_writes_need_its_csrf_token(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app, operator=False) as client:
        await _account(app, "amina")
        wrong = await client.post("/api/login", json={"name": "amina", "password": "nope" * 4})
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "wrong name or password"
        unknown = await client.post("/api/login", json={"name": "nobody", "password": "x" * 12})
        assert unknown.json() == wrong.json()  # no telling which names exist
        assert SESSION_COOKIE not in client.cookies

        response = await client.post("/api/login", json={"name": "amina",
                                                           "password": TEST_PASSWORD})  # fmt: skip
        assert response.status_code == 200, response.text
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never come back
        assert TEST_PASSWORD not in response.text
        csrf = response.json()["csrf_token"]
        me = (await client.get("/api/me")).json()
        assert (me["name"], me["role"], me["via"], me["csrf_token"]) == (
            "amina", "operator", "session", csrf,
        )  # fmt: skip
        for path in OPERATORS:
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text)
        page = await client.get("/operator")
        assert page.status_code == 200
        assert "<html" in page.text

        no_csrf = await client.post("/api/operator/cancellations", json=CANCEL)
        assert no_csrf.status_code == 403
        assert CSRF_HEADER in no_csrf.json()["detail"]
        forged = await client.post("/api/operator/cancellations", json=CANCEL,
                                   headers={CSRF_HEADER: "x" + csrf[1:]})  # fmt: skip
        assert forged.status_code == 403
        made = await client.post("/api/operator/cancellations", json=CANCEL,
                                 headers={CSRF_HEADER: csrf})  # fmt: skip
        assert made.status_code == 201, made.text
        admin_only = await client.get("/api/accounts")
        assert admin_only.status_code == 403

        out = await client.post("/api/logout", headers={CSRF_HEADER: csrf})
        assert out.status_code == 204
        assert (await client.get("/api/fleet")).status_code == 401
        assert (await client.get("/operator")).status_code == 303

        # A stolen cookie of an ended session opens nothing either.
        client.cookies.set(SESSION_COOKIE, response.cookies[SESSION_COOKIE])
        assert (await client.get("/api/fleet")).status_code == 401


async def test_the_session_cookie_is_secure_over_https(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app, operator=False) as client:
        await _account(app, "amina")
        client.base_url = httpx.URL("https://tracker")
        response = await client.post("/api/login", json={"name": "amina",
                                                           "password": TEST_PASSWORD})  # fmt: skip
        assert response.status_code == 200
        assert "Secure" in response.headers["set-cookie"]


async def test_each_address_is_limited_but_probes_are_not(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings.model_copy(update={"rate_limit": "5/minute"}))
    async with running(app, operator=False) as rider:
        schema = (await rider.get("/openapi.json")).json()  # the 1st request
        assert "429" in schema["paths"]["/api/vehicles"]["get"]["responses"]
        assert "429" not in schema["paths"]["/healthz"]["get"]["responses"]
        answers = [(await rider.get("/api/vehicles")).status_code for _ in range(5)]
        assert answers == [200, 200, 200, 200, 429]
        refused = await rider.get("/api/routes")
        assert refused.status_code == 429
        assert "at most 5 per minute" in refused.json()["detail"]
        assert int(refused.headers["retry-after"]) >= 1
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert (await rider.get(probe)).status_code == 200, probe
        metrics = (await rider.get("/metrics")).text
        assert "bus_tracker_http_rate_limited_total 2.0" in metrics


async def test_wrong_passwords_are_throttled_per_name(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app, operator=False) as client:
        await _account(app, "amina")
        for _ in range(LOGIN_FAILURES.amount):
            wrong = await client.post("/api/login", json={"name": "amina", "password": "guess"})
            assert wrong.status_code == 401
        # Now even the right password waits: a guesser cannot tell it found the password.
        throttled = await client.post("/api/login", json={"name": "amina",
                                                            "password": TEST_PASSWORD})  # fmt: skip
        assert throttled.status_code == 429
        assert "Retry-After" in throttled.headers
        assert "wait 15 minutes" in throttled.json()["detail"]
        metrics = (await client.get("/metrics")).text
        assert "bus_tracker_auth_failed_logins_total 10.0" in metrics
        assert "bus_tracker_auth_throttled_logins_total 1.0" in metrics


async def test_api_tokens_and_admins(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    app = create_app(settings)
    async with running(app, operator=False) as client:
        await _account(app, "root", Role.ADMIN)
        token = await operator_token(app, "scripts")
        bearer = {"Authorization": f"Bearer {token}"}
        me = (await client.get("/api/me", headers=bearer)).json()
        assert (me["name"], me["via"], me["csrf_token"]) == ("scripts", "token", None)
        # A token needs no CSRF token: no browser sends an Authorization header by itself.
        made = await client.post("/api/operator/cancellations", json=CANCEL, headers=bearer)
        assert made.status_code == 201, made.text
        assert await stored_accounts.revoke_token(app.state.store, "scripts", token[-12:])
        assert (await client.get("/api/fleet", headers=bearer)).status_code == 401

        csrf = await _login(client, "root")
        headers = {CSRF_HEADER: csrf}
        created = await client.post("/api/accounts", json={"name": "yassine"}, headers=headers)
        assert created.status_code == 201, created.text
        password = created.json()["password"]
        assert len(password) >= accounts.MIN_PASSWORD_CHARS
        taken = await client.post("/api/accounts", json={"name": "yassine"}, headers=headers)
        assert taken.status_code == 422
        assert "exists already" in taken.json()["detail"]
        bad = await client.post("/api/accounts", json={"name": "no spaces"}, headers=headers)
        assert bad.status_code == 422
        listed = {a["name"]: a for a in (await client.get("/api/accounts")).json()}
        assert set(listed) == {"root", "scripts", "yassine"}
        assert listed["root"]["open_sessions"] == 1
        assert "password" not in str(listed)
        self_removal = await client.delete("/api/accounts/root", headers=headers)
        assert self_removal.status_code == 422

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tracker") as other:
            login = {"name": "yassine", "password": password}
            assert (await other.post("/api/login", json=login)).status_code == 200
            assert (await other.get("/api/fleet")).status_code == 200
            removed = await client.delete("/api/accounts/yassine", headers=headers)
            assert removed.status_code == 204
            assert (await other.get("/api/fleet")).status_code == 401  # its session went with it
        gone = await client.delete("/api/accounts/yassine", headers=headers)
        assert gone.status_code == 404


def _users(postgres_url: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "tracker", "users", *args, "--database-url", postgres_url],
        input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_tracker_users_makes_accounts_and_tokens_that_work(
    mosquitto: Mosquitto, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = _users(postgres_url, "add", "fatima", "--role", "admin")
    password = made.split("password (shown this once): ")[1].strip()
    _users(postgres_url, "add", "omar", "--password-file", "-", stdin="omar's own password\n")
    token_out = _users(postgres_url, "token", "omar", "--label", "export")
    token = token_out.strip().splitlines()[-1]
    assert token.startswith(accounts.TOKEN_PREFIX)
    listed = _users(postgres_url, "list")
    assert "fatima\tadmin" in listed
    assert "omar\toperator" in listed
    assert "tokens: export" in listed
    assert password not in listed
    assert token not in listed
    refused = subprocess.run(
        [sys.executable, "-m", "tracker", "users", "add", "omar", "--database-url", postgres_url],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "exists already" in refused.stderr

    settings = service_settings(mosquitto, postgres_url, tmp_path, monkeypatch)
    async with running(create_app(settings), operator=False) as client:
        me = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["name"] == "omar"
        await _login(client, "fatima", password)
        assert (await client.get("/api/accounts")).status_code == 200
        await _login(client, "omar", "omar's own password")

    _users(postgres_url, "revoke-token", "omar", "export")
    new = _users(postgres_url, "password", "fatima")
    new_password = new.split("password (shown this once): ")[1].strip()
    _users(postgres_url, "remove", "omar")
    async with running(create_app(settings), operator=False) as client:
        assert (await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
                ).status_code == 401  # fmt: skip
        old = await client.post("/api/login", json={"name": "fatima", "password": password})
        assert old.status_code == 401
        await _login(client, "fatima", new_password)
