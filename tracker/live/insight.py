"""What the engine last said beyond positions, held for the API and the pages: each vehicle's
arrival predictions, the operations assessment (headways and live alerts), recent detours and
the predictions' accuracy; and the trips the operator cancelled.

The pipeline calls `Insight.update` with each engine `Step` (tracker.core.engine); the HTTP
endpoints read it. Predictions older than `max_age_s` are not served (the vehicle stopped
reporting). Everything runs on the event loop's thread.

The engine (in the matcher's process) does not know the cancellations: the ghost alert of a
cancelled trip is taken out here, from the assessment every reader sees (`assessment`,
`alerts`) and from the changes the websocket pushes (`shown`), so that a trip known not to run
is not listed as missing. `raw_alerts` keeps the engine's own list.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from tracker.core.accuracy import BucketScore
from tracker.core.cancellations import Cancellations, shown_changes, without_cancelled
from tracker.core.engine import Step
from tracker.core.operations import Alert, AlertChange, Assessment, Change, Detour, GhostTrip
from tracker.core.predict import Prediction

DETOURS_KEPT = 100

_ALERT: TypeAdapter[Alert] = TypeAdapter(Alert)


def alert_json(alert: Alert) -> dict[str, Any]:
    """An alert as JSON-ready values (enums as their values, tuples as lists, NaN as null)."""
    found: dict[str, Any] = _ALERT.dump_python(alert, mode="json")
    return found


class Insight:
    """See the module."""

    def __init__(
        self, *, max_age_s: float = 300.0, cancellations: Cancellations | None = None
    ) -> None:
        self.max_age_s = max_age_s
        self.cancellations = cancellations if cancellations is not None else Cancellations()
        self._by_vehicle: dict[str, list[Prediction]] = {}
        self._by_stop: dict[str, set[str]] = {}  # stop_id -> vehicles predicted there
        self._assessed: Assessment | None = None  # the engine's latest, as it is
        self._shown: tuple[Assessment | None, int, Assessment | None] = (None, -1, None)
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
            self._assessed = step.assessment
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

    @property
    def assessment(self) -> Assessment | None:
        """The engine's latest assessment, without the ghost alerts of cancelled trips (kept
        until the next assessment or cancellation)."""
        raw, version, shown = self._shown
        if raw is not self._assessed or version != self.cancellations.version:
            shown = None
            if self._assessed is not None:
                shown = without_cancelled(self._assessed, self.cancellations.keys())
            self._shown = (self._assessed, self.cancellations.version, shown)
        return shown

    def alerts(self) -> tuple[Alert, ...]:
        """The live alerts (without the ghosts of cancelled trips)."""
        assessed = self.assessment
        return () if assessed is None else assessed.alerts

    def raw_alerts(self) -> tuple[Alert, ...]:
        """The live alerts as the engine gave them (ghosts of cancelled trips included)."""
        return () if self._assessed is None else self._assessed.alerts

    def shown(self, changes: Iterable[AlertChange]) -> list[AlertChange]:
        """Alert changes to push to the pages: those of the ghosts of cancelled trips left out."""
        return shown_changes(changes, self.cancellations.keys())

    def ghost_of(self, trip_id: str, service_date: str) -> GhostTrip | None:
        """The engine's live ghost alert of this trip on that day, cancelled or not."""
        for alert in self.raw_alerts():
            if (
                isinstance(alert, GhostTrip)
                and alert.trip_id == trip_id
                and alert.service_date == service_date
            ):
                return alert
        return None
