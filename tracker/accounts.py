"""Operator accounts: who may see the operator's pages and API, and how they prove it.

Three kinds of secret, each made here with `secrets` and never stored in clear:

- a **password** (typed by a person at ``/login``): stored as its argon2id hash (argon2-cffi's
  `PasswordHasher`, whose defaults follow RFC 9106's recommendations), checked in a worker
  thread because one check costs tens of milliseconds of CPU on purpose;
- a **session token** (the ``tracker_session`` cookie a login sets) and an **API token** (a
  script's ``Authorization: Bearer ...``): 256 random bits each, stored as their SHA-256. A
  fast hash is enough for a value nobody can guess, and a copy of the table opens no session.

Roles: ``operator`` sees and acts on the fleet (pages, fleet/problems/history/stats APIs,
cancellations); ``admin`` may do all that and also manage accounts. The rules of who may call
what are in `tracker.api.auth`; the tables are in `tracker.store.accounts` (migration 0005).
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tracker.errors import TrackerError

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")  # as the table's CHECK
MIN_PASSWORD_CHARS: Final = 12
MAX_PASSWORD_CHARS: Final = 1024  # argon2 takes any length; a megabyte "password" is an attack
MAX_LABEL_CHARS: Final = 64
TOKEN_PREFIX: Final = "bt_"  # so a leaked API token is recognisable (and greppable) as ours

_hasher: Final = PasswordHasher()


class Role(enum.StrEnum):
    OPERATOR = "operator"
    ADMIN = "admin"


class AccountError(TrackerError, ValueError):
    """An account cannot be made or changed as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the account, and how it proved it. `csrf_token` is the session's
    (a page must send it back on writes); a token's caller has none and needs none."""

    account: Account
    via: Literal["session", "token"]
    csrf_token: str | None = None


def check_name(name: str) -> str:
    """`name` if it can name an account, else `AccountError`."""
    if NAME_PATTERN.fullmatch(name) is None:
        raise AccountError(
            f"account name {name[:80]!r} is not 1 to 64 letters, digits or . _ @ - "
            "(starting with a letter or a digit)"
        )
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"a password needs {MIN_PASSWORD_CHARS} characters or more")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")
    return password


def check_label(label: str) -> str:
    if not 1 <= len(label) <= MAX_LABEL_CHARS or not label.isprintable():
        raise AccountError(f"a token's label is 1 to {MAX_LABEL_CHARS} printable characters")
    return label


def new_password() -> str:
    """A random password to hand out once: 20 URL-safe characters, 120 bits."""
    return secrets.token_urlsafe(15)


def new_token() -> str:
    """A random session or API token: 256 bits, URL-safe, with our prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    """What is stored of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


# Checked when the name is unknown, so that "no such account" takes as long as "wrong password"
# and a stopwatch cannot tell which names exist.
_DUMMY_HASH: Final = _hasher.hash("not a password of anyone's")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` is the one `password_hash` was made from (None: an unknown account,
    checked against a dummy hash all the same). Slow on purpose: call it off the event loop."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's: rehash after a login."""
    return _hasher.check_needs_rehash(password_hash)
