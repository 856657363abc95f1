"""What the engine last said beyond positions, held for the API and the pages: each vehicle's
arrival predictions, the operations assessment (headways and live alerts), recent detours and
the predictions' accuracy.

The pipeline calls `Insight.update` with each engine `Step` (tracker.core.engine); the HTTP
endpoints read it. Predictions older than `max_age_s` are not served (the vehicle stopped
reporting). Everything runs on the event loop's thread.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import TypeAdapter

from tracker.core.accuracy import BucketScore
from tracker.core.engine import Step
from tracker.core.operations import Alert, Assessment, Change, Detour
from tracker.core.predict import Prediction

DETOURS_KEPT = 100

_ALERT: TypeAdapter[Alert] = TypeAdapter(Alert)


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as JSON-ready values (enums as their values, tuples as lists, NaN as null)."""
    found: dict[str, Any] = _ALERT.dump_python(alert, mode="json")
    return found


class Insight:
    """See the module."""

    def __init__(self, *, max_age_s: float = 300.0) -> None:
        self.max_age_s = max_age_s
        self._by_vehicle: dict[str, list[Prediction]] = {}
        self._by_stop: dict[str, set[str]] = {}  # stop_id -> vehicles predicted there
        self.assessment: Assessment | None = None
        self.accuracy: list[BucketScore] = []
        self.detours: deque[Detour] = deque(maxlen=DETOURS_KEPT)  # ended ones, newest last
        self.updates = 0

    def update(self, step: Step) -> None:
        for vehicle_id, made in step.predictions.items():
            for old in self._by_vehicle.pop(vehicle_id, ()):
                vehicles = self._by_stop.get(old.stop_id)
                if vehicles is not None:
                    vehicles.discard(vehicle_id)
                    if not vehicles:
                        del self._by_stop[old.stop_id]
            if made:
                self._by_vehicle[vehicle_id] = made
                for p in made:
                    self._by_stop.setdefault(p.stop_id, set()).add(vehicle_id)
        if step.assessment is not None:
            self.assessment = step.assessment
            for change in step.assessment.changes:
                if change.change is Change.CLOSED and isinstance(change.alert, Detour):
                    self.detours.append(change.alert)
        if step.accuracy is not None:
            self.accuracy = step.accuracy
        self.updates += 1

    def of_vehicle(self, vehicle_id: str, now_s: float) -> list[Prediction]:
        """The vehicle's predictions, soonest first (none if made more than `max_age_s` ago)."""
        made = self._by_vehicle.get(vehicle_id, [])
        if not made or now_s - made[0].made_at_s > self.max_age_s:
            return []
        return made

    def at_stop(self, stop_id: str, now_s: float) -> list[Prediction]:
        """Every fresh prediction at the stop (any vehicle, any visit), soonest first."""
        out = [
            p
            for vehicle_id in self._by_stop.get(stop_id, ())
            for p in self.of_vehicle(vehicle_id, now_s)
            if p.stop_id == stop_id
        ]
        out.sort(key=lambda p: p.predicted_arrival_s)
        return out

    def all(self, now_s: float) -> list[Prediction]:
        """Every fresh prediction, soonest first."""
        out = [p for v in self._by_vehicle for p in self.of_vehicle(v, now_s)]
        out.sort(key=lambda p: p.predicted_arrival_s)
        return out

    def alerts(self) -> tuple[Alert, ...]:
        return () if self.assessment is None else self.assessment.alerts
