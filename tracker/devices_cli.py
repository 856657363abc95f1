"""``tracker devices ...``: the vehicles' broker accounts, from the command line.

    tracker devices init [--tracker-user NAME] [--simulator-user NAME]   the ACL, the tracker's
                                                                         account (and a simulator's)
    tracker devices add VEHICLE_ID      a vehicle's account (prints its password once)
    tracker devices remove VEHICLE_ID
    tracker devices list

They write Mosquitto's password file (``--password-file``, ``TRACKER_BROKER_PASSWORD_FILE``,
default ``deploy/mosquitto/passwd``) and ACL (``--acl-file``, ``TRACKER_BROKER_ACL_FILE``, default
``deploy/mosquitto/acl``), see `tracker.ingest.broker_auth`. A password is printed once, to
standard output, and never again: only its hash is kept. Mosquitto reads the files again on
SIGHUP (``docker compose kill -s SIGHUP mosquitto``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tracker.ingest.broker_auth import BrokerAuthError, PasswordFile, acl, write_private
from tracker.settings import ENV_PREFIX
from tracker.wire import DEFAULT_TOPIC_PREFIX

DEFAULT_PASSWORD_FILE = Path("deploy/mosquitto/passwd")
DEFAULT_ACL_FILE = Path("deploy/mosquitto/acl")
RELOAD_HINT = "Mosquitto takes it on SIGHUP: docker compose kill -s SIGHUP mosquitto"


def _password_file(args: argparse.Namespace) -> PasswordFile:
    path = args.password_file or os.environ.get(ENV_PREFIX + "BROKER_PASSWORD_FILE")
    return PasswordFile.load(Path(path) if path else DEFAULT_PASSWORD_FILE)


def _init(args: argparse.Namespace) -> int:
    accounts = _password_file(args)
    path = args.acl_file or os.environ.get(ENV_PREFIX + "BROKER_ACL_FILE")
    acl_path = Path(path) if path else DEFAULT_ACL_FILE
    text = acl(tracker_user=args.tracker_user, simulator_user=args.simulator_user,
               topic_prefix=args.topic_prefix, owntracks_prefix=args.owntracks_prefix)  # fmt: skip
    write_private(acl_path, text, mode=0o644)
    print(f"wrote the ACL {acl_path}")
    for user in filter(None, (args.tracker_user, args.simulator_user)):
        password = accounts.set(user)
        print(f"broker account {user!r} (password shown this once): {password}")
    accounts.save()
    print(f"wrote {accounts.path}; give the tracker its account (TRACKER_MQTT_USERNAME="
          f"{args.tracker_user}, TRACKER_MQTT_PASSWORD=its password). {RELOAD_HINT}")  # fmt: skip
    return 0


def _add(args: argparse.Namespace) -> int:
    accounts = _password_file(args)
    again = args.vehicle_id in accounts.hashes
    password = accounts.set(args.vehicle_id)
    accounts.save()
    print(f"{'new password for' if again else 'made'} the broker account of vehicle "
          f"{args.vehicle_id!r} in {accounts.path}. {RELOAD_HINT}")  # fmt: skip
    print(f"password (shown this once): {password}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    accounts = _password_file(args)
    if not accounts.remove(args.vehicle_id):
        raise BrokerAuthError(f"{accounts.path} has no account {args.vehicle_id!r}")
    accounts.save()
    print(f"removed the broker account {args.vehicle_id!r}. {RELOAD_HINT}")
    return 0


def _list(args: argparse.Namespace) -> int:
    accounts = _password_file(args)
    if not accounts.hashes:
        print(f"no accounts in {accounts.path}: make them with `tracker devices init` and "
              "`tracker devices add VEHICLE_ID`")  # fmt: skip
    for user in accounts.hashes:
        print(user)
    return 0


def add_devices_commands(sub: Any) -> None:
    """The ``devices`` command and its subcommands, on `sub` (the parser's subparsers)."""
    devices = sub.add_parser(
        "devices",
        help="the vehicles' broker accounts (Mosquitto password file and ACL)",
        description="Give each vehicle its own broker account, allowed to publish only on its "
        "own topic.",
    )
    devices_sub = devices.add_subparsers(dest="devices_command", required=True)

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = devices_sub.add_parser(name, help=help_text)
        parser.add_argument("--password-file", type=Path, metavar="FILE",
                            help=f"Mosquitto's password file ({ENV_PREFIX}BROKER_PASSWORD_FILE, "
                            f"default {DEFAULT_PASSWORD_FILE})")  # fmt: skip
        parser.set_defaults(handler=handler)
        return parser

    init = command("init", "write the ACL and the tracker's account (prints its password)", _init)
    init.add_argument("--acl-file", type=Path, metavar="FILE",
                      help=f"Mosquitto's ACL file ({ENV_PREFIX}BROKER_ACL_FILE, "
                      f"default {DEFAULT_ACL_FILE})")  # fmt: skip
    init.add_argument("--tracker-user", default="bus-tracker", help="the tracker's account")
    init.add_argument("--simulator-user", help="an account that may publish as any vehicle")
    init.add_argument("--topic-prefix", default=DEFAULT_TOPIC_PREFIX)
    init.add_argument("--owntracks-prefix", default="owntracks", help='"" for none')
    for name, help_text, handler in (
        ("add", "make a vehicle's account, or give it a new password (prints it once)", _add),
        ("remove", "remove a vehicle's account", _remove),
    ):
        command(name, help_text, handler).add_argument("vehicle_id")
    command("list", "list the accounts", _list)
