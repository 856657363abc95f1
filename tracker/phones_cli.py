"""``tracker phones ...``: the phones of the devices file, each with its own token.

    tracker phones add DEVICE_ID VEHICLE_ID     list a phone (or give it a new token), printed once
    tracker phones remove DEVICE_ID
    tracker phones list

They edit the devices file (``--devices-file``, else ``TRACKER_DEVICES_FILE``; see
`tracker.ingest.devices`): a CSV ``device_id,vehicle_id,token_sha256`` (other columns are kept).
Only the token's SHA-256 is written; the token is printed once, for the phone's settings. The
tracker reads the file at start: restart it to take the change.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import secrets
from pathlib import Path
from typing import Any

from tracker.ingest.broker_auth import write_private
from tracker.ingest.devices import (
    COLUMNS,
    TOKEN_COLUMN,
    DevicesFileError,
    id_problem,
    parse_devices,
)
from tracker.settings import ENV_PREFIX


def _path(args: argparse.Namespace) -> Path:
    found = args.devices_file or os.environ.get(ENV_PREFIX + "DEVICES_FILE")
    if not found:
        raise DevicesFileError(f"no devices file: pass --devices-file or set {ENV_PREFIX}"
                               "DEVICES_FILE")  # fmt: skip
    return Path(found)


def _rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The file's columns (with the token's) and rows; none for a file not made yet."""
    if not path.exists():
        return [*COLUMNS, TOKEN_COLUMN], []
    text = path.read_text("utf-8").removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    columns = [name.strip() for name in reader.fieldnames or []]
    reader.fieldnames = columns
    if TOKEN_COLUMN not in columns:
        columns.append(TOKEN_COLUMN)
    return columns, [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


def _write(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    parse_devices(out.getvalue(), source=str(path))  # what the tracker will read: checked
    write_private(path, out.getvalue(), mode=0o640)


def _add(args: argparse.Namespace) -> int:
    path = _path(args)
    for what, value in (("device id", args.device_id), ("vehicle id", args.vehicle_id)):
        problem = id_problem(value)
        if problem is not None:
            raise DevicesFileError(f"{what} {value!r} {problem}")
    columns, rows = _rows(path)
    token = secrets.token_urlsafe(24)
    digest = hashlib.sha256(token.encode()).hexdigest()
    row = next((r for r in rows if r.get("device_id") == args.device_id), None)
    if row is None:
        rows.append(row := {"device_id": args.device_id})
    row |= {"vehicle_id": args.vehicle_id, TOKEN_COLUMN: digest}
    _write(path, columns, rows)
    print(f"phone {args.device_id!r} reports as vehicle {args.vehicle_id!r} ({path}); restart "
          "the tracker to take it")  # fmt: skip
    print(f"token (shown this once): {token}")
    print("OsmAnd / Traccar Client: add &token=<token> to the server URL; OwnTracks (HTTP): "
          "the token is the password")  # fmt: skip
    return 0


def _remove(args: argparse.Namespace) -> int:
    path = _path(args)
    columns, rows = _rows(path)
    kept = [r for r in rows if r.get("device_id") != args.device_id]
    if len(kept) == len(rows):
        raise DevicesFileError(f"{path} does not list device {args.device_id!r}")
    _write(path, columns, kept)
    print(f"removed phone {args.device_id!r} from {path}; restart the tracker to take it")
    return 0


def _list(args: argparse.Namespace) -> int:
    _, rows = _rows(_path(args))
    for row in rows:
        token = "token" if row.get(TOKEN_COLUMN) else "no token"
        print(f"{row.get('device_id')}\t{row.get('vehicle_id')}\t{token}")
    return 0


def add_phones_commands(sub: Any) -> None:
    """The ``phones`` command and its subcommands, on `sub` (the parser's subparsers)."""
    phones = sub.add_parser("phones", help="the phones of the devices file, with their tokens")
    phones_sub = phones.add_subparsers(dest="phones_command", required=True)
    for name, help_text, handler, arguments in (
        ("add", "list a phone as a vehicle with a new token (prints it once)", _add,
         ("device_id", "vehicle_id")),
        ("remove", "take a phone off the file", _remove, ("device_id",)),
        ("list", "list the phones", _list, ()),
    ):  # fmt: skip
        parser = phones_sub.add_parser(name, help=help_text)
        for argument in arguments:
            parser.add_argument(argument)
        parser.add_argument("--devices-file", type=Path, metavar="FILE",
                            help=f"the devices file ({ENV_PREFIX}DEVICES_FILE)")  # fmt: skip
        parser.set_defaults(handler=handler)
