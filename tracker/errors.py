"""The tracker's errors, in one small tree.

    TrackerError                 base of everything the tracker raises on purpose
    ├── FeedError                the GTFS feed cannot be used (names the file, row and problem)
    ├── PingFileError            a ping file cannot be read at all (bad rows are not errors: they
    │                            come out as rejected pings with a reason)
    ├── StoreError               the database cannot be reached or used
    ├── SettingsError            settings missing or wrong (tracker.settings; names the variable)
    └── DevicesFileError         the phones' devices file cannot be used (names the line;
                                 tracker.ingest.devices)

Bad pings never raise: the matcher answers them with `State.REJECTED` and a `Reason`.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of the tracker's own errors."""


class FeedError(TrackerError):
    """A GTFS feed is broken in a way that cannot be worked around."""

    def __init__(self, file: str, problem: str, *, row: int | None = None) -> None:
        self.file = file
        self.row = row
        self.problem = problem
        where = f"{file}, line {row}" if row is not None else file
        super().__init__(f"{where}: {problem}")


class PingFileError(TrackerError, ValueError):
    """A ping file cannot be read (unknown format, missing columns, unreadable)."""


class StoreError(TrackerError):
    """The database cannot be reached or used; the message names the URL (password masked)."""
