"""Operator accounts, sessions and API tokens in PostgreSQL (migration 0005).

What `tracker.api.auth` and ``tracker users`` need, one statement (or one transaction) each on
the store's pool. Secrets arrive here already hashed (`tracker.accounts`): the tables hold an
argon2id hash per password and a SHA-256 per session or API token. Session expiry is the
database's clock, so every tracker process sharing the database agrees on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

import asyncpg

from tracker.accounts import Account, AccountError, Role
from tracker.store.postgres import Store

CREATE_SQL: Final = "INSERT INTO accounts (name, role, password_hash) VALUES ($1, $2, $3)"
PASSWORD_SQL: Final = """
UPDATE accounts SET password_hash = $2, password_changed_at = now() WHERE name = $1
RETURNING name"""
DELETE_SQL: Final = "DELETE FROM accounts WHERE name = $1 RETURNING name"
LIST_SQL: Final = """
SELECT a.name, a.role, a.created_at, a.password_changed_at,
       (SELECT count(*) FROM account_sessions s WHERE s.account = a.name AND s.expires_at > now())
           AS sessions,
       coalesce((SELECT array_agg(t.label ORDER BY t.label) FROM api_tokens t
                 WHERE t.account = a.name), '{}') AS tokens
FROM accounts a ORDER BY a.name"""
LOGIN_SQL: Final = "SELECT name, role, password_hash FROM accounts WHERE name = $1"
START_SESSION_SQL: Final = """
INSERT INTO account_sessions (token_sha256, account, csrf_token, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))"""
EXPIRED_SESSIONS_SQL: Final = "DELETE FROM account_sessions WHERE expires_at <= now()"
SESSION_SQL: Final = """
SELECT a.name, a.role, s.csrf_token FROM account_sessions s JOIN accounts a ON a.name = s.account
WHERE s.token_sha256 = $1 AND s.expires_at > now()"""
END_SESSION_SQL: Final = "DELETE FROM account_sessions WHERE token_sha256 = $1"
END_SESSIONS_OF_SQL: Final = "DELETE FROM account_sessions WHERE account = $1"
ADD_TOKEN_SQL: Final = "INSERT INTO api_tokens (token_sha256, account, label) VALUES ($1, $2, $3)"
# The account of a token, noting when it was last used (at most once a minute per token).
TOKEN_SQL: Final = """
WITH used AS (
    UPDATE api_tokens SET last_used_at = now()
    WHERE token_sha256 = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
)
SELECT a.name, a.role FROM api_tokens t JOIN accounts a ON a.name = t.account
WHERE t.token_sha256 = $1"""
REVOKE_TOKEN_SQL: Final = """
DELETE FROM api_tokens WHERE account = $1 AND label = $2 RETURNING label"""


@dataclass(frozen=True, slots=True)
class AccountRow:
    account: Account
    created_at: datetime
    password_changed_at: datetime
    sessions: int  # open ones
    tokens: tuple[str, ...]  # their labels


def _account(record: asyncpg.Record) -> Account:
    return Account(name=record["name"], role=Role(record["role"]))


async def create(store: Store, name: str, role: Role, password_hash: str) -> None:
    """A new account; `AccountError` if the name is taken."""
    async with store._connection() as conn:  # the store's pool: this module is part of it
        try:
            await conn.execute(CREATE_SQL, name, role.value, password_hash)
        except asyncpg.UniqueViolationError:
            raise AccountError(
                f"an account {name!r} exists already: pick another name, or give it a new "
                f"password with `tracker users password {name}`"
            ) from None


async def set_password(store: Store, name: str, password_hash: str) -> bool:
    """Replace the account's password and end its sessions; False if there is no such account."""
    async with store._connection() as conn, conn.transaction():
        found = await conn.fetchval(PASSWORD_SQL, name, password_hash)
        await conn.execute(END_SESSIONS_OF_SQL, name)
    return found is not None


async def delete(store: Store, name: str) -> bool:
    """Remove the account with its sessions and tokens; False if there was none."""
    async with store._connection() as conn:
        return await conn.fetchval(DELETE_SQL, name) is not None


async def listing(store: Store) -> list[AccountRow]:
    async with store._connection() as conn:
        records = await conn.fetch(LIST_SQL)
    return [
        AccountRow(
            account=_account(r),
            created_at=r["created_at"],
            password_changed_at=r["password_changed_at"],
            sessions=r["sessions"],
            tokens=tuple(r["tokens"]),
        )
        for r in records
    ]


async def password_hash_of(store: Store, name: str) -> tuple[Account, str] | None:
    """The account of that name and its password hash, for a login to check."""
    async with store._connection() as conn:
        record = await conn.fetchrow(LOGIN_SQL, name)
    return None if record is None else (_account(record), record["password_hash"])


async def start_session(
    store: Store, name: str, token_sha256: bytes, csrf_token: str, lifetime_s: float
) -> None:
    """Open a session (and drop the expired ones of everyone, so the table stays small)."""
    async with store._connection() as conn, conn.transaction():
        await conn.execute(EXPIRED_SESSIONS_SQL)
        await conn.execute(START_SESSION_SQL, token_sha256, name, csrf_token, lifetime_s)


async def session(store: Store, token_sha256: bytes) -> tuple[Account, str] | None:
    """The account of an open session and its CSRF token; None if unknown or expired."""
    async with store._connection() as conn:
        record = await conn.fetchrow(SESSION_SQL, token_sha256)
    return None if record is None else (_account(record), record["csrf_token"])


async def end_session(store: Store, token_sha256: bytes) -> None:
    async with store._connection() as conn:
        await conn.execute(END_SESSION_SQL, token_sha256)


async def add_token(store: Store, name: str, label: str, token_sha256: bytes) -> None:
    """A new API token of the account; `AccountError` if there is no such account or the label
    is taken."""
    async with store._connection() as conn:
        try:
            await conn.execute(ADD_TOKEN_SQL, token_sha256, name, label)
        except asyncpg.ForeignKeyViolationError:
            raise AccountError(f"there is no account {name!r}: see `tracker users list`") from None
        except asyncpg.UniqueViolationError:
            raise AccountError(
                f"{name!r} has a token labelled {label!r} already: pick another label, or "
                f"revoke it first with `tracker users revoke-token {name} {label}`"
            ) from None


async def token_account(store: Store, token_sha256: bytes) -> Account | None:
    async with store._connection() as conn:
        record = await conn.fetchrow(TOKEN_SQL, token_sha256)
    return None if record is None else _account(record)


async def revoke_token(store: Store, name: str, label: str) -> bool:
    async with store._connection() as conn:
        return await conn.fetchval(REVOKE_TOKEN_SQL, name, label) is not None
