"""A real PostgreSQL for `tracker demo`: the server bundled in the `pgserver` wheel.

The server keeps its files in `data_dir` and listens only on a Unix socket (in `data_dir`, or in a
short runtime directory when that path is too long for a socket), so it needs no installed
database and takes no TCP port. It is stopped when the context exits, also on cancellation and
Ctrl-C (which `asyncio.run` turns into a cancellation). pg_ctl daemonises the server into a
session of its own, so a process killed with SIGKILL would leave it running: given a `Watchdog`
(tracker/watchdog.py), the server is named to it before it starts, and the watchdog stops it
when this process ends without doing so.

pgserver's own behaviour worth knowing: run as root, it runs postgres as a system user `pgserver`
(created if missing) and adds read/traverse permission for others on the parents of `data_dir`. Use
one `embedded_postgres` per `data_dir` at a time in a process: pgserver shares one handle per
directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final, TypeVar

with warnings.catch_warnings():
    # pgserver keeps a lock file in the user's runtime directory, found through platformdirs at
    # import time; without XDG_RUNTIME_DIR that is /tmp/runtime-UID, which works, with a warning.
    warnings.simplefilter("ignore", UserWarning)
    from pgserver.postgres_server import PostgresServer, get_server
    from pgserver.utils import DiskList

from tracker.store.postgres import create_database_if_missing
from tracker.watchdog import Watchdog

logger = logging.getLogger(__name__)

DATABASE: Final = "tracker"

_T = TypeVar("_T")


@contextlib.asynccontextmanager
async def embedded_postgres(
    data_dir: Path, *, watchdog: Watchdog | None = None
) -> AsyncIterator[str]:
    """Start PostgreSQL on `data_dir` (created if missing), yield the URL of database `tracker`.

    The database is created when missing; the data stays in `data_dir` for the next start.
    `watchdog`, if given, stops the server should this process end without stopping it.
    """
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    if watchdog is not None:
        watchdog.stop_postgres(data_dir)  # before it starts: a kill during the start is covered
    server, cancelled = await _run_to_completion(_start, data_dir)
    try:
        if cancelled:
            raise asyncio.CancelledError
        await create_database_if_missing(server.get_uri(), DATABASE)
        logger.info("embedded PostgreSQL is running in %s", data_dir)
        yield server.get_uri(DATABASE)
    finally:
        _, cancelled = await _run_to_completion(server.cleanup)
        logger.info("embedded PostgreSQL in %s stopped", data_dir)
        if cancelled:
            raise asyncio.CancelledError


def _start(data_dir: Path) -> PostgresServer:
    _forget_dead_handles(data_dir)
    return get_server(data_dir, cleanup_mode="stop")


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver (0.1.4) stops the server only when the last process in `.handle_pids.json` lets go;
    a process that died without cleaning up (kill -9, a closed terminal) stays in that list and
    would keep every later run from stopping the server.
    """
    handles = DiskList(data_dir / ".handle_pids.json")
    with PostgresServer._lock:
        pids: list[int] = handles.get()
        alive = [pid for pid in pids if _process_exists(pid)]
        if alive != pids:
            logger.info(
                "forgetting dead users %s of the embedded PostgreSQL",
                sorted(set(pids) - set(alive)),
            )
            handles.put(alive)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


async def _run_to_completion(function: Callable[..., _T], *args: object) -> tuple[_T, bool]:
    """Run a blocking call in a thread and wait for it to finish even if cancelled meanwhile.

    Returns its result and whether a cancellation arrived while waiting (the caller re-raises it
    once it has cleaned up): starting or stopping a server must not be abandoned half-way.
    """
    task = asyncio.ensure_future(asyncio.to_thread(function, *args))
    cancelled = False
    while True:
        try:
            return await asyncio.shield(task), cancelled
        except asyncio.CancelledError:
            if task.cancelled():
                raise
            cancelled = True
