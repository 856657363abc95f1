"""Trips the operator cancelled (`tracker.core.cancellations`): what may be cancelled, checked
against the static GTFS with a message for each refusal; and the live view (`Insight`) no
longer lists a cancelled trip as a ghost, in the alerts and in the changes pushed to the pages,
while the engine's own list keeps it (the trip comes back when the cancellation is undone)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from tests.unit import test_operations as ops
from tracker.core.cancellations import (
    MAX_REASON_CHARS,
    BadReasonError,
    BadServiceDateError,
    CancellationError,
    Cancellations,
    Cause,
    FrequencyTripError,
    TripNotRunningError,
    UnknownTripError,
    cancellation,
    without_cancelled,
)
from tracker.core.engine import Engine, EngineConfig
from tracker.core.network import Network
from tracker.core.operations import AlertChange, AlertKind, Change, GhostTrip, OperationsMonitor
from tracker.gtfs.load import build_network
from tracker.live.insight import Insight

SATURDAY = "20260307"


@pytest.fixture(scope="module")
def corridor(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(ops.corridor_feed(tmp_path_factory.mktemp("feed")))


@pytest.fixture(scope="module")
def corridor_frequency(tmp_path_factory: pytest.TempPathFactory) -> Network:
    return build_network(ops.corridor_feed(tmp_path_factory.mktemp("feed"), frequency=True))


def test_a_cancellation_takes_the_trips_route_and_scheduled_span(corridor: Network) -> None:
    found = cancellation(corridor, "C_0712", ops.DATE, cancelled_at_s=123.0,
                         cause=Cause.STRIKE, reason="  Drivers'\n  strike ")  # fmt: skip
    assert (found.trip_id, found.service_date, found.route_id, found.direction_id) == (
        "C_0712", ops.DATE, "C", 0,
    )  # fmt: skip
    assert found.scheduled_departure_s == ops.clock(corridor, "07:12")
    assert found.scheduled_arrival_s == ops.clock(corridor, "07:12", ops.TRIP_S)
    assert (found.cause, found.reason, found.cancelled_at_s) == (Cause.STRIKE, "Drivers' strike",
                                                                 123.0)  # fmt: skip
    assert found.key == ("C_0712", ops.DATE)


@pytest.mark.parametrize(
    ("trip_id", "service_date", "error", "says"),
    [
        ("C_9999", ops.DATE, UnknownTripError, "no trip 'C_9999' in the static GTFS"),
        ("C_0712", SATURDAY, TripNotRunningError, "does not run on 20260307 (service 'WK'"),
        (
            "C_0712",
            "2026-03-04",
            BadServiceDateError,
            "'2026-03-04' is not a date written",
        ),
        ("C_0712", "20260231", BadServiceDateError, "'20260231' is not a date written YYYYMMDD"),
        ("C_0712", "", BadServiceDateError, "not a date"),
    ],
)
def test_what_cannot_be_cancelled_is_refused_with_a_reason(
    corridor: Network, trip_id: str, service_date: str, error: type[CancellationError], says: str
) -> None:
    with pytest.raises(error, match=re.escape(says)) as raised:
        cancellation(corridor, trip_id, service_date, cancelled_at_s=0.0)
    assert raised.value.reason == error.reason != CancellationError.reason


def test_a_frequency_trip_and_a_long_reason_are_refused(
    corridor: Network, corridor_frequency: Network
) -> None:
    with pytest.raises(FrequencyTripError, match=r"defined in frequencies\.txt"):
        cancellation(corridor_frequency, "C_0700", ops.DATE, cancelled_at_s=0.0)
    with pytest.raises(BadReasonError, match=f"keep it to {MAX_REASON_CHARS}"):
        cancellation(corridor, "C_0712", ops.DATE, cancelled_at_s=0.0,
                     reason="x" * (MAX_REASON_CHARS + 1))  # fmt: skip


def test_the_cancellations_held_count_their_changes(corridor: Network) -> None:
    held = Cancellations()
    first = cancellation(corridor, "C_0712", ops.DATE, cancelled_at_s=0.0)
    assert held.put(first) is None
    again = dataclasses.replace(first, reason="no driver")
    assert held.put(again) == first
    assert held.version == 2
    assert list(held) == [again]
    assert ("C_0712", ops.DATE) in held
    assert held.remove("C_0712", ops.DATE) == again
    assert held.remove("C_0712", ops.DATE) is None
    assert held.version == 3
    held.put(first)
    assert held.forget_before("20260305") == 1
    assert len(held) == 0


def ghost_morning(corridor: Network) -> tuple[GhostTrip, Insight]:
    """C_0700 and C_0712 run, C_0706 does not (as in test_operations): at 07:13 its ghost, in
    the live view of an engine step that carries the monitor's assessment."""
    monitor = OperationsMonitor(corridor)
    start = ops.clock(corridor, "07:00")
    buses = [ops.steady("a", "C_0700", start), ops.steady("c", "C_0712", start + 720)]
    now_s = ops.clock(corridor, "07:13")
    assessed = ops.drive(corridor, monitor, buses, start, now_s)[-1]
    (ghost,) = ops.of_kind(assessed.alerts, AlertKind.GHOST_TRIP)
    assert isinstance(ghost, GhostTrip)
    assert ghost.trip_id == "C_0706"
    step = dataclasses.replace(Engine(corridor, EngineConfig()).step([], now_s),
                               assessment=assessed)  # fmt: skip
    insight = Insight()
    insight.update(step)
    return ghost, insight


def test_a_cancelled_trip_is_not_listed_as_a_ghost(corridor: Network) -> None:
    ghost, insight = ghost_morning(corridor)
    others = [a for a in insight.alerts() if a != ghost]
    assert others  # the gap behind the missing trip, at least
    assert ghost in insight.alerts()
    insight.cancellations.put(cancellation(corridor, "C_0706", ops.DATE, cancelled_at_s=0.0))
    assert list(insight.alerts()) == others
    assessed = insight.assessment
    assert assessed is not None
    assert ghost not in assessed.alerts
    assert ghost in insight.raw_alerts()
    assert insight.ghost_of("C_0706", ops.DATE) == ghost
    assert insight.ghost_of("C_0706", "20260305") is None
    opened = AlertChange(Change.OPENED, ghost)
    other = AlertChange(Change.UPDATED, others[0])
    assert insight.shown([opened, other]) == [other]
    # Undone: a ghost again.
    insight.cancellations.remove("C_0706", ops.DATE)
    assert ghost in insight.alerts()
    assert insight.shown([opened]) == [opened]


def test_without_cancelled_leaves_an_assessment_with_nothing_to_take_out_as_it_is(
    corridor: Network,
) -> None:
    ghost, insight = ghost_morning(corridor)
    assessed = insight.assessment
    assert assessed is not None
    assert without_cancelled(assessed, frozenset()) is assessed
    assert without_cancelled(assessed, {("C_0712", ops.DATE)}) is assessed  # it runs: no ghost
    assert ghost not in without_cancelled(assessed, {("C_0706", ops.DATE)}).alerts
