"""Per-vehicle broker credentials: Mosquitto's password file and ACL file, as the tracker writes
them (`tracker devices ...`, `tracker.devices_cli`).

Each vehicle is an account of the broker whose user name is its vehicle id. The ACL lets an
account publish only on its own topics, through Mosquitto's ``%u`` (the user name) patterns::

    pattern write bus-tracker/v1/vehicles/%u/position
    pattern write owntracks/%u/+

so a bus that publishes on another bus's topic is refused by the broker (MQTT 5: PUBACK reason
0x87, not authorized; 3.1.1: dropped without a word), before the tracker hears anything. The
tracker's own account may read the positions and publish nothing; a simulator's account (for
test fleets) may publish as any vehicle. Mosquitto denies what no line allows.

The password file holds ``user:$7$iterations$salt$hash`` lines: PBKDF2-HMAC-SHA512 with a 12-byte
salt, the format of Mosquitto 2's own ``mosquitto_passwd`` (Python's `hashlib` computes it).
The passwords are 120-bit random strings made here (`tracker.accounts.new_password`), so the
iteration count guards nothing a guess could reach; it is kept low (`ITERATIONS`) because the
broker computes it at every connection, and a fleet reconnects all at once after an outage.

Mosquitto reads both files at start and again on SIGHUP (``docker compose kill -s SIGHUP
mosquitto``): a vehicle added or removed takes effect then, without dropping the others. The
files are written whole to a temporary file and renamed over the old one; the password file is
readable by its owner only (give it to the broker's user: ``chown 1883`` for the
eclipse-mosquitto image), the ACL by anyone (it holds no secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tracker.errors import TrackerError
from tracker.ingest.devices import id_problem
from tracker.wire import DEFAULT_TOPIC_PREFIX

ITERATIONS: Final = 1000
SALT_BYTES: Final = 12


class BrokerAuthError(TrackerError, ValueError):
    """A broker account or file that cannot be used; the message says why."""


def hash_password(password: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    """`password` as a Mosquitto 2 password file takes it: ``$7$iterations$salt$hash``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether `password` is the one `hashed` (a ``$7$`` line's hash) was made from."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = base64.b64decode(digest, validate=True)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt),
                                  int(iterations))  # fmt: skip
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def check_user(name: str) -> str:
    """`name` if it can be a broker account (a vehicle id, as a topic level); else the error."""
    problem = id_problem(name)
    if problem is None and (":" in name or name != name.strip()):
        problem = "holds a colon or blanks at its ends, which the password file cannot"
    if problem is not None:
        raise BrokerAuthError(f"broker account {name!r} {problem}")
    return name


@dataclass
class PasswordFile:
    """The accounts of a Mosquitto password file, in the file's order."""

    path: Path
    hashes: dict[str, str]

    @classmethod
    def load(cls, path: Path) -> PasswordFile:
        """The file's accounts; none if it does not exist yet."""
        hashes: dict[str, str] = {}
        if path.exists():
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if not line.strip() or line.startswith("#"):
                    continue
                user, colon, hashed = line.partition(":")
                if not colon or not hashed.startswith("$"):
                    raise BrokerAuthError(f"{path}:{number} is not a `user:$7$...` line")
                hashes[user] = hashed
        return cls(path, hashes)

    def set(self, user: str) -> str:
        """Give `user` (made if missing) a new random password; the password, to show once."""
        password = secrets.token_urlsafe(15)
        self.hashes[check_user(user)] = hash_password(password)
        return password

    def remove(self, user: str) -> bool:
        return self.hashes.pop(user, None) is not None

    def save(self) -> None:
        write_private(self.path, "".join(f"{u}:{h}\n" for u, h in self.hashes.items()))


def acl(
    *,
    tracker_user: str,
    simulator_user: str | None = None,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    owntracks_prefix: str = "owntracks",
) -> str:
    """The ACL file: the tracker reads, a simulator writes any vehicle's topic, every other
    account (a vehicle) writes its own topics only."""
    lines = [
        "# Written by `tracker devices init`. Mosquitto denies what no line allows.",
        "# The tracker: reads every position, publishes nothing.",
        f"user {check_user(tracker_user)}",
        f"topic read {topic_prefix}/+/position",
    ]
    if owntracks_prefix:
        lines.append(f"topic read {owntracks_prefix}/+/+")
    if simulator_user is not None:
        lines += [
            "",
            "# A simulator (test fleets only): publishes as any vehicle.",
            f"user {check_user(simulator_user)}",
            f"topic write {topic_prefix}/+/position",
        ]
    lines += [
        "",
        "# Every account (a vehicle: its user name is its vehicle id): its own topics only.",
        f"pattern write {topic_prefix}/%u/position",
    ]
    if owntracks_prefix:
        lines.append(f"pattern write {owntracks_prefix}/%u/+")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `text` to `path` whole (a temporary file renamed over it), with `mode`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
