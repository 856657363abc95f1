"""Replay a timed stream onto the wall clock: recorded ping files, or a simulated day.

`Pacer` decides when each item is due: an item stamped `t` is due `(t - t0) / speed` seconds of
wall time after the anchor `t0` (the first item's stamp unless given). Stamps that go backwards
(out-of-order pings) are due at once. `recorded_pings` reads any file
`tracker.pings_io.read_pings` reads and can shift its timestamps to start now and loop.
The clock and the waiting are passed in, so tests run them on a fake clock.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tracker.core.model import Ping
from tracker.pings_io import BadRow, read_pings

log = logging.getLogger(__name__)

LOOP_GAP_S = 1.0  # between the last ping of one pass and the first of the next, in stamp time


class Pacer:
    """Waits until items stamped in stream time are due on the wall clock.

    `speed` 60 plays an hour of stream time in a minute; 0 (or infinity) never waits. The item
    stamped `anchor_s` (the first item, if not given) is due at once, or at the wall-clock time
    `anchor_due_at_s` (epoch seconds) when given; an item stamped before the anchor is due at
    once too, or, with `catch_up_speed`, the stream plays at that speed until the anchor, and at
    `speed` from there (a warm-up). Without `anchor_due_at_s`, the catch-up starts at once.
    """

    def __init__(
        self,
        speed: float,
        *,
        anchor_s: float | None = None,
        anchor_due_at_s: float | None = None,
        catch_up_speed: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not speed >= 0:
            raise ValueError(f"speed {speed!r} must be ≥ 0 (0: as fast as possible)")
        if catch_up_speed is not None and not catch_up_speed > 0:
            raise ValueError(f"catch_up_speed {catch_up_speed!r} must be > 0")
        if anchor_due_at_s is not None and anchor_s is None:
            raise ValueError("anchor_due_at_s needs anchor_s: the stamp due at that time")
        self.speed = speed
        self.catch_up_speed = catch_up_speed
        self._anchor_s = anchor_s
        self._clock = clock
        self._wait = wait
        # when the anchor is due, on `clock`; None: decided by the first item
        self._anchor_due: float | None = (
            None if anchor_due_at_s is None else clock() + anchor_due_at_s - wall_clock()
        )
        self._latest_s = -math.inf

    def wait_for(self, stamp_s: float) -> None:
        """Return when the item stamped `stamp_s` is due."""
        if self.speed == 0 or math.isinf(self.speed):
            return
        if self._anchor_s is None:
            self._anchor_s = stamp_s
        anchor_s = self._anchor_s
        if self._anchor_due is None:  # the first item is due now
            ahead_s = anchor_s - stamp_s if self.catch_up_speed is not None else 0.0
            self._anchor_due = self._clock() + max(0.0, ahead_s) / (self.catch_up_speed or 1.0)
        self._latest_s = latest_s = max(self._latest_s, stamp_s)
        if latest_s >= anchor_s:
            due = self._anchor_due + (latest_s - anchor_s) / self.speed
        elif self.catch_up_speed is not None:
            due = self._anchor_due - (anchor_s - latest_s) / self.catch_up_speed
        else:
            return  # before the anchor, without a catch-up: due at once
        remaining = due - self._clock()
        if remaining > 0:
            self._wait(remaining)


@dataclass
class ReplayCounts:
    """What `recorded_pings` read: pings, records it could not decode, passes over the file."""

    pings: int = 0
    bad_records: int = 0
    passes: int = 0


def recorded_pings(
    path: Path,
    *,
    loop: bool = False,
    start_at_s: float | None = None,
    counts: ReplayCounts | None = None,
) -> Iterator[Ping]:
    """The pings of a recorded file in file order, records that cannot be decoded left out.

    `start_at_s` shifts every timestamp so that the first ping is stamped then (e.g. now).
    With `loop`, the file is read again and again, each pass shifted to follow the previous one
    (`LOOP_GAP_S` after its latest timestamp), so timestamps keep increasing for the tracker.
    Raises `PingFileError` at once (not when iterated) for a file that cannot be read.
    """
    first_pass = read_pings(path)
    return _passes(path, first_pass, loop, start_at_s, counts or ReplayCounts())


def _passes(
    path: Path,
    items: Iterator[Ping | BadRow],
    loop: bool,
    start_at_s: float | None,
    counts: ReplayCounts,
) -> Iterator[Ping]:
    shift_s: float | None = None
    first_s: float | None = None
    while True:
        counts.passes += 1
        latest_s = -math.inf
        for item in items:
            if isinstance(item, BadRow):
                counts.bad_records += 1
                log.debug("skipping %s: %s", path, item.detail)
                continue
            if first_s is None:
                first_s = item.timestamp
            if shift_s is None:
                shift_s = 0.0 if start_at_s is None else start_at_s - first_s
            latest_s = max(latest_s, item.timestamp)
            counts.pings += 1
            yield dataclasses.replace(item, timestamp=item.timestamp + shift_s) if shift_s else item
        if not loop or first_s is None or shift_s is None:
            return
        shift_s += latest_s - first_s + LOOP_GAP_S
        items = read_pings(path)
