"""The engine of the live service (tracker.core.engine) and what the pages read of it
(tracker.live.insight, tracker.core.accuracy), on a tiny feed."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from tests import feeds
from tests.unit.test_matcher import WEEKDAY, drive, network_of
from tracker.core.accuracy import BUCKETS_MIN, Accuracy
from tracker.core.engine import Engine, EngineConfig, Step
from tracker.core.model import Ping, State
from tracker.core.network import Network
from tracker.core.operations import AlertChange, Assessment, Change, Detour, Severity
from tracker.core.predict import Prediction, Source
from tracker.live.insight import Insight


@pytest.fixture
def network(tmp_path: Path) -> Network:
    return network_of(feeds.two_directions_feed, tmp_path)


def test_a_step_matches_detects_stops_predicts_and_assesses(network: Network) -> None:
    engine = Engine(network, EngineConfig(predict_every_s=60.0, assess_every_s=30.0))
    pings = drive(network, "B_N_0600", WEEKDAY, every_s=10.0)
    steps = [engine.step([p], p.timestamp + 1.0) for p in pings]
    assert [len(s.matches) for s in steps] == [1] * len(pings)
    assert all(s.matches[0].trip_id == "B_N_0600" for s in steps[1:])
    events = [e for s in steps for e in s.stop_events]
    assert [e.stop_id for e in events] == ["BN1", "BN2", "BN3", "BN4", "BN5"]
    predicted = [s for s in steps if s.predictions]
    # The bus is predicted when it reports and its predictions are 60 s old: every 6th ping.
    times = [s.matches[0].timestamp for s in predicted]
    assert all(b - a >= 60.0 for a, b in itertools.pairwise(times))
    assert len(predicted) >= len(pings) // 6 - 1
    # At its first ping the bus waits at its first stop: its departure there, then each stop
    # of its trip in order (and of its block's next trip), each with an ordered range.
    first = predicted[0].predictions["bus1"]
    on_trip = [p for p in first if p.trips_ahead == 0]
    assert [p.stop_id for p in on_trip] == ["BN1", "BN2", "BN3", "BN4", "BN5"]
    times = [p.predicted_arrival_s for p in on_trip]
    assert times == sorted(times)
    assert all(p.p10_arrival_s <= p.predicted_arrival_s <= p.p90_arrival_s for p in first)
    assert {p.trip_id for p in first if p.trips_ahead == 1} <= {"B_S_0612"}
    assessed = [s for s in steps if s.assessment is not None]
    assert 1 <= len(assessed) <= len(pings) * 10.0 / 30.0 + 1
    assert all(s.accuracy is not None for s in assessed)


def test_a_step_with_no_pings_still_assesses_and_one_with_rejects_predicts_nothing(
    network: Network,
) -> None:
    engine = Engine(network, EngineConfig())
    empty = engine.step([], 1_772_604_000.0)
    assert (empty.matches, empty.revised, empty.stop_events, empty.predictions) == ([], [], [], {})
    assert empty.assessment is not None  # the first step assesses
    bad = engine.step([Ping("bus-x", 1_772_604_010.0, 91.0, 0.0)], 1_772_604_011.0)
    assert bad.matches[0].state is State.REJECTED
    assert bad.predictions == {}


def prediction(vehicle_id: str, stop_id: str, at_s: float, made_at_s: float = 1000.0) -> Prediction:
    return Prediction(vehicle_id, made_at_s, "T", "20260304", stop_id, 0, at_s, at_s - 60,
                      at_s + 120, at_s - made_at_s, Source.LEARNED, 0, None)  # fmt: skip


def test_insight_holds_each_vehicles_latest_predictions_by_stop() -> None:
    insight = Insight(max_age_s=300.0)

    def update(predictions: dict[str, list[Prediction]]) -> None:
        insight.update(Step([], [], [], [], predictions, None, None))

    update({"a": [prediction("a", "S1", 1300.0), prediction("a", "S2", 1400.0)],
            "b": [prediction("b", "S1", 1200.0)]})  # fmt: skip
    assert [(p.vehicle_id, p.stop_id) for p in insight.at_stop("S1", 1100.0)] == [
        ("b", "S1"), ("a", "S1"),  # soonest first
    ]  # fmt: skip
    update({"a": [prediction("a", "S3", 1500.0)]})  # a's new predictions replace its old
    assert [p.vehicle_id for p in insight.at_stop("S1", 1100.0)] == ["b"]
    assert [p.stop_id for p in insight.of_vehicle("a", 1100.0)] == ["S3"]
    update({"b": []})  # b out of service
    assert insight.at_stop("S1", 1100.0) == []
    assert insight.of_vehicle("a", 1000.0 + 301.0) == []  # made too long ago
    assert [p.stop_id for p in insight.all(1100.0)] == ["S3"]


def test_insight_keeps_the_detours_that_ended() -> None:
    detour = Detour("detour:1", Severity.WARNING, "bus-1", "R", 0, "T", "20260304", "S",
                    100.0, 33.5, -7.6, 500.0, 160.0, 250.0, 180.0, 4, ((33.5, -7.6),),
                    ended_s=200.0)  # fmt: skip
    insight = Insight()
    closed = Assessment(210.0, (), (), (), (AlertChange(Change.CLOSED, detour),))
    insight.update(Step([], [], [], [], {}, closed, []))
    assert list(insight.detours) == [detour]
    assert insight.alerts() == ()


def test_accuracy_scores_each_horizon_bucket_over_a_bounded_window() -> None:
    accuracy = Accuracy(window=3)
    for error_s, covered in ((30.0, True), (-90.0, False), (60.0, True), (120.0, True)):
        accuracy.add(7 * 60.0, error_s, covered)  # 7 minutes ahead: the 5-10 bucket
    accuracy.add(25 * 60.0, 300.0, False)
    accuracy.add(float("nan"), 10.0, True)  # ignored
    scores = {s.from_min: s for s in accuracy.scores()}
    assert [s.from_min for s in accuracy.scores()] == list(BUCKETS_MIN)
    five = scores[5]
    assert (five.to_min, five.predictions) == (10, 3)  # the last three only
    assert five.mae_s == pytest.approx((90 + 60 + 120) / 3, abs=0.1)
    assert five.coverage == pytest.approx(2 / 3, abs=1e-4)
    assert (scores[20].to_min, scores[20].predictions, scores[20].coverage) == (None, 1, 0.0)
    assert (scores[0].predictions, scores[0].mae_s, scores[0].coverage) == (0, None, None)
    assert accuracy.settled == 5


def test_a_prediction_is_immutable_and_carries_its_source() -> None:
    p = prediction("a", "S1", 1300.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.stop_id = "S2"  # type: ignore[misc]
    assert p.source is Source.LEARNED
