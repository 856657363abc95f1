"""``tracker users ...``: operator accounts and API tokens, from the command line.

    tracker users add NAME [--role operator|admin] [--password-file FILE|-]
    tracker users password NAME [--password-file FILE|-]     a new password; ends its sessions
    tracker users list
    tracker users remove NAME                                with its sessions and tokens
    tracker users token NAME [--label LABEL]                 an API token for a script
    tracker users revoke-token NAME LABEL

A password or token made here is printed once, to standard output, and never again: only its
hash is stored. A password of one's own comes from a file (``-``: standard input), never from
the command line, where other users of the machine could read it in the process list. The
database is ``--database-url`` or ``TRACKER_DATABASE_URL``; the schema is brought up to date
first, so this works on a new database.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tracker import accounts
from tracker.accounts import AccountError, Role
from tracker.settings import ENV_PREFIX, SettingsError
from tracker.store import accounts as stored
from tracker.store.postgres import Store, open_store

T = TypeVar("T")


def database_url(explicit: str | None) -> str:
    """``--database-url``, else ``TRACKER_DATABASE_URL``; `SettingsError` when neither is set."""
    url = explicit or os.environ.get(ENV_PREFIX + "DATABASE_URL")
    if not url:
        raise SettingsError(f"{ENV_PREFIX}DATABASE_URL is not set (or pass --database-url)")
    return url


def _with_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_store(database_url(args.database_url)) as store:
            return await work(store)

    return asyncio.run(run())


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """The password to set, and whether it was made here (and must be shown)."""
    source: Path | None = args.password_file
    if source is None:
        return accounts.new_password(), True
    text = sys.stdin.read() if str(source) == "-" else source.read_text("utf-8")
    return accounts.check_password(text.rstrip("\r\n")), False


def _add(args: argparse.Namespace) -> int:
    name = accounts.check_name(args.name)
    password, made = _password(args)
    password_hash = accounts.hash_password(password)
    _with_store(args, lambda store: stored.create(store, name, Role(args.role), password_hash))
    print(f"made {args.role} account {name!r}")
    if made:
        print(f"password (shown this once): {password}")
    return 0


def _set_password(args: argparse.Namespace) -> int:
    password, made = _password(args)
    password_hash = accounts.hash_password(password)
    if not _with_store(args, lambda store: stored.set_password(store, args.name, password_hash)):
        raise AccountError(f"there is no account {args.name!r}: see `tracker users list`")
    print(f"new password for {args.name!r}; its open sessions are ended")
    if made:
        print(f"password (shown this once): {password}")
    return 0


def _list(args: argparse.Namespace) -> int:
    rows = _with_store(args, stored.listing)
    if not rows:
        print("no accounts: make one with `tracker users add NAME`")
    for row in rows:
        tokens = ", ".join(row.tokens) or "none"
        print(f"{row.account.name}\t{row.account.role.value}\tsince {row.created_at:%Y-%m-%d}"
              f"\t{row.sessions} open sessions\ttokens: {tokens}")  # fmt: skip
    return 0


def _remove(args: argparse.Namespace) -> int:
    if not _with_store(args, lambda store: stored.delete(store, args.name)):
        raise AccountError(f"there is no account {args.name!r}: see `tracker users list`")
    print(f"removed account {args.name!r} with its sessions and tokens")
    return 0


def _token(args: argparse.Namespace) -> int:
    label = accounts.check_label(args.label)
    token = accounts.new_token()
    digest = accounts.token_digest(token)
    _with_store(args, lambda store: stored.add_token(store, args.name, label, digest))
    print(f"API token {label!r} of {args.name!r} (shown this once; send it as "
          f"`Authorization: Bearer <token>`):")  # fmt: skip
    print(token)
    return 0


def _revoke_token(args: argparse.Namespace) -> int:
    if not _with_store(args, lambda store: stored.revoke_token(store, args.name, args.label)):
        raise AccountError(f"{args.name!r} has no token labelled {args.label!r}")
    print(f"revoked token {args.label!r} of {args.name!r}")
    return 0


def add_users_commands(sub: Any) -> None:
    """The ``users`` command and its subcommands, on `sub` (the parser's subparsers)."""
    users = sub.add_parser(
        "users",
        help="operator accounts and API tokens",
        description="Make and manage the accounts that may open the operator's pages and API.",
    )
    users_sub = users.add_subparsers(dest="users_command", required=True)

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int],
                *, account: bool = True) -> argparse.ArgumentParser:  # fmt: skip
        parser: argparse.ArgumentParser = users_sub.add_parser(name, help=help_text)
        if account:
            parser.add_argument("name", help="the account's name")
        parser.add_argument("--database-url", help="PostgreSQL (TRACKER_DATABASE_URL)")
        parser.set_defaults(handler=handler)
        return parser

    password_help = "read the password from this file (- : standard input) instead of making one"
    add = command("add", "make an account (prints its password once)", _add)
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.OPERATOR.value)
    add.add_argument("--password-file", type=Path, metavar="FILE", help=password_help)
    password = command("password", "give an account a new password (ends its sessions)",
                       _set_password)  # fmt: skip
    password.add_argument("--password-file", type=Path, metavar="FILE", help=password_help)
    command("list", "list the accounts", _list, account=False)
    command("remove", "remove an account with its sessions and tokens", _remove)
    token = command("token", "make an API token for a script (prints it once)", _token)
    token.add_argument("--label", default="script", help="what the token is for (script)")
    revoke = command("revoke-token", "revoke an account's API token", _revoke_token)
    revoke.add_argument("label", help="the token's label")
