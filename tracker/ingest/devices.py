"""Which vehicle a phone reports as: the devices file and the `DeviceMap` read from it.

Without a devices file the phone's own id is the vehicle id (OsmAnd's and Traccar Client's
`id`, OwnTracks' `{user}-{device}`), and any phone is taken. A city that hands phones to drivers
wants the bus to be the vehicle instead, and wants to take only the phones it handed out: the
devices file (`TRACKER_DEVICES_FILE`) is a CSV with a header and one phone per line::

    device_id,vehicle_id
    alice-phone,bus-7
    358240051111110,bus-12

A listed device reports as its vehicle; a device that is not listed is rejected
(`Reason.UNKNOWN_DEVICE`, answered 403 over HTTP). Two devices may report as the same vehicle
(a spare phone in the same bus): their pings then make one vehicle's track, so only one of them
should be on at a time. Other columns are allowed and left alone (a note, a phone number). The
file is read once, at start.

A device id is no secret. An optional ``token_sha256`` column holds the SHA-256 (hex) of each
phone's own token (`tracker phones add DEVICE VEHICLE` makes one and prints it once); a phone
with a token in the file must send it with every HTTP position (`DeviceMap.token_problem`; the
HTTP endpoints answer 401, `Reason.BAD_TOKEN`, otherwise). A row with the cell empty is taken
without a token, as before the column existed.

`parse_devices` is pure (text in, map or `DevicesFileError` naming the line out);
`load_devices` only reads the file first.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.errors import TrackerError

if TYPE_CHECKING:
    import _csv

COLUMNS = ("device_id", "vehicle_id")
TOKEN_COLUMN = "token_sha256"
MAX_ID_LENGTH = 128
# An id goes into an MQTT topic level (`bus-tracker/v1/vehicles/{vehicle_id}/position`), which
# cannot hold these.
BAD_ID_CHARS = frozenset("/+#\0")


class DevicesFileError(TrackerError, ValueError):
    """The devices file cannot be used; the message names the file, the line and the fix."""


def id_problem(text: str) -> str | None:
    """What makes `text` unusable as a device or vehicle id, or None if it is fine."""
    if not text:
        return "is empty"
    if len(text) > MAX_ID_LENGTH:
        return f"is {len(text)} characters long, over {MAX_ID_LENGTH}"
    if any(c in BAD_ID_CHARS for c in text):
        return "holds one of / + # or a NUL character, which an MQTT topic level cannot"
    return None


@dataclass(frozen=True, slots=True)
class DeviceMap:
    """The phones the tracker takes and the vehicle each reports as (device id → vehicle id)."""

    vehicles: Mapping[str, str]
    source: str = "the devices file"  # where it came from, for messages
    token_digests: Mapping[str, bytes] = field(default_factory=dict)  # device → SHA-256 of token

    def token_problem(self, device_id: str, token: str | None) -> str | None:
        """Why `token` does not let `device_id` report, or None if it does (a device with no
        token in the file needs none)."""
        expected = self.token_digests.get(device_id)
        if expected is None:
            return None
        if not token:
            return f"device {device_id!r} must send its token (see docs/interfaces.md, phones)"
        if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), expected):
            return f"the token of device {device_id!r} is wrong"
        return None

    def vehicle_of(self, device_id: str) -> str | None:
        """The vehicle `device_id` reports as; None if it is not listed."""
        return self.vehicles.get(device_id)

    def __len__(self) -> int:
        return len(self.vehicles)


def parse_devices(text: str, *, source: str = "the devices file") -> DeviceMap:
    """The map in `text`, a CSV with the header ``device_id,vehicle_id`` (see the module).

    Raises `DevicesFileError` naming `source`, the line and what is wrong: a missing column, a
    line without both ids, an id that cannot be one, a device listed twice, no device at all.
    """
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""), skipinitialspace=True)
    try:
        return _parse_rows(reader, source)
    except csv.Error as e:  # a field over csv's size limit (128 KiB), a quote left open
        raise DevicesFileError(f"{source}, line {reader.line_num}: not CSV ({e})") from None


def _parse_rows(reader: _csv.Reader, source: str) -> DeviceMap:
    # `line_num` is the file's line number (the last line of a record with a quoted line break)
    header = next(reader, None)
    if header is None:
        raise DevicesFileError(f"{source} is empty: its first line is the header "
                               f"{','.join(COLUMNS)}, then one device per line")  # fmt: skip
    names = [name.strip() for name in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise DevicesFileError(
            f"{source}, line 1: the header {','.join(names)!r} has no {' and no '.join(missing)} "
            f"column; the first line must be {','.join(COLUMNS)}"
        )
    device_col, vehicle_col = names.index("device_id"), names.index("vehicle_id")
    token_col = names.index(TOKEN_COLUMN) if TOKEN_COLUMN in names else None
    tokens: dict[str, bytes] = {}
    vehicles: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) <= max(device_col, vehicle_col):
            raise DevicesFileError(f"{source}, line {line}: {len(row)} field(s), expected "
                                   f"{len(names)} ({','.join(names)})")  # fmt: skip
        device_id, vehicle_id = row[device_col].strip(), row[vehicle_col].strip()
        for column, value in (("device_id", device_id), ("vehicle_id", vehicle_id)):
            problem = id_problem(value)
            if problem is not None:
                shown = f" {value[:40]!r}" if value else ""
                raise DevicesFileError(f"{source}, line {line}: {column}{shown} {problem}")
        if device_id in vehicles:
            raise DevicesFileError(
                f"{source}, line {line}: device {device_id!r} is listed twice (first on line "
                f"{first_line[device_id]}); a device reports as one vehicle"
            )
        digest = row[token_col].strip() if token_col is not None and token_col < len(row) else ""
        if digest:
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise DevicesFileError(f"{source}, line {line}: {TOKEN_COLUMN} is not 64 hex "
                                       "digits: `tracker phones add` writes it")  # fmt: skip
            tokens[device_id] = bytes.fromhex(digest)
        vehicles[device_id] = vehicle_id
        first_line[device_id] = line
    if not vehicles:
        raise DevicesFileError(f"{source} lists no device, so every phone would be refused: "
                               "list them, or leave TRACKER_DEVICES_FILE unset to take any "
                               "phone")  # fmt: skip
    return DeviceMap(vehicles, source, tokens)


def load_devices(path: Path) -> DeviceMap:
    """The devices file at `path`, read and checked (`parse_devices`)."""
    source = f"devices file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DevicesFileError(f"there is no {source}: give the path of a CSV with the header "
                               f"{','.join(COLUMNS)}") from None  # fmt: skip
    except UnicodeDecodeError as e:
        raise DevicesFileError(f"{source} is not UTF-8 text ({e})") from None
    except OSError as e:
        raise DevicesFileError(f"cannot read {source} ({e.strerror})") from None
    return parse_devices(text, source=source)
