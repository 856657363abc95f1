"""The simulator's errors, in one small tree.

    SimulatorError        base of everything the simulator raises on purpose
    ├── UsageError        a command-line choice cannot work (no service on the date, unknown route)
    └── BrokerError       the MQTT broker URL is bad, or the broker cannot be reached or refuses us

The command line maps these (and the tracker's `FeedError`/`PingFileError`) to one line on stderr
and exit code 2.
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class of the simulator's own errors."""


class UsageError(SimulatorError):
    """The options name something the feed or the file does not have."""


class BrokerError(SimulatorError):
    """The MQTT broker cannot be used: bad URL, unreachable, refused, or lost for too long."""
