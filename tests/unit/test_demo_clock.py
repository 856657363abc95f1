"""Where the demo's clock starts (tracker.demo.demo_clock): the current local time when buses
run then and through the catch-up before it, else 08:00."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from tracker.core.network import Network
from tracker.demo import demo_clock

DAY = dt.date(2026, 3, 4)  # a Wednesday the tiny feeds serve: buses every 12 min 06:00-10:09


def wall_s(network: Network, hh: int, mm: int) -> float:
    local = dt.datetime.combine(DAY, dt.time(hh, mm), ZoneInfo(network.timezone))
    return local.timestamp()


@pytest.mark.parametrize(
    ("hh", "mm", "starts_at"),
    [
        (7, 30, "07:30"),  # service all through the 20 minutes before: now
        (6, 5, "08:00"),  # service began 5 min ago: a few buses at their terminals
        (6, 25, "06:25"),  # it ran through the catch-up: now
        (23, 0, "08:00"),  # no service
    ],
)
def test_the_clock_starts_now_only_if_buses_ran_through_the_catch_up(
    two_directions: Network, hh: int, mm: int, starts_at: str
) -> None:
    clock = demo_clock(two_directions, wall_s(two_directions, hh, mm))
    assert clock.service_date == DAY
    assert f"{int(clock.start_s // 3600):02d}:{int(clock.start_s % 3600 // 60):02d}" == starts_at
