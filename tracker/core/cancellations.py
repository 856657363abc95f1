"""Trips the operator marked cancelled: a scheduled trip that will not run on one service day.

An operator who learns that a trip will not run (no driver, a broken bus: often after the
operations monitor listed it as a ghost) marks it cancelled (`tracker/api/cancellations.py`).
From then on the GTFS-realtime feeds say so (a CANCELED TripUpdate and a NO_SERVICE Alert,
`tracker/export/gtfs_rt.py`) and the operations monitor's ghost alert of that trip is no longer
listed: the trip is known not to run (`without_cancelled`, applied by `tracker.live.insight`).

A cancellation names a trip of the static GTFS and a service day (YYYYMMDD) on which its
calendar runs it. Only trips with one departure a day can be cancelled: a trip of
frequencies.txt stands for many departures, and cancelling one of them is not supported.
`cancellation` checks all of this against the network and says what is wrong.

Pure: values in, values out; the time of the cancellation is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace

from tracker.core.network import Network
from tracker.core.operations import AlertChange, Assessment, GhostTrip


class Cause(enum.StrEnum):
    """Why a trip does not run: the GTFS-realtime `Alert.Cause` names (its NO_SERVICE alert
    carries it)."""

    UNKNOWN_CAUSE = "UNKNOWN_CAUSE"
    OTHER_CAUSE = "OTHER_CAUSE"
    TECHNICAL_PROBLEM = "TECHNICAL_PROBLEM"
    STRIKE = "STRIKE"
    DEMONSTRATION = "DEMONSTRATION"
    ACCIDENT = "ACCIDENT"
    HOLIDAY = "HOLIDAY"
    WEATHER = "WEATHER"
    MAINTENANCE = "MAINTENANCE"
    CONSTRUCTION = "CONSTRUCTION"
    POLICE_ACTIVITY = "POLICE_ACTIVITY"
    MEDICAL_EMERGENCY = "MEDICAL_EMERGENCY"
    SPECIAL_EVENT = "SPECIAL_EVENT"


MAX_REASON_CHARS = 500


class CancellationError(ValueError):
    """A cancellation that cannot be made; the message says why and what to send instead.
    `reason` is a short name of the problem, for counting."""

    reason = "invalid"


class BadServiceDateError(CancellationError):
    reason = "bad_service_date"


class UnknownTripError(CancellationError):
    reason = "unknown_trip"


class TripNotRunningError(CancellationError):
    reason = "not_running"


class FrequencyTripError(CancellationError):
    reason = "frequency_trip"


class BadReasonError(CancellationError):
    reason = "bad_reason"


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A trip that does not run on one service day, as the operator said at `cancelled_at_s`.

    The route, direction and scheduled times are the static GTFS's, for the feeds."""

    trip_id: str
    service_date: str  # YYYYMMDD
    route_id: str
    direction_id: int | None
    scheduled_departure_s: float  # epoch s, from its first stop
    scheduled_arrival_s: float  # epoch s, at its last stop
    cause: Cause
    reason: str  # the operator's words ("" when none were given)
    cancelled_at_s: float  # epoch s, on the service clock

    @property
    def key(self) -> tuple[str, str]:
        return (self.trip_id, self.service_date)


def service_day(text: str) -> dt.date:
    """The date of a service day written YYYYMMDD (as GTFS writes them)."""
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise BadServiceDateError(
            f"service_date {text!r} is not a date written YYYYMMDD; e.g. 20260304 for 4 March "
            "2026 (the GTFS service day: a trip after midnight belongs to the day before)"
        ) from None


def cancellation(
    network: Network,
    trip_id: str,
    service_date: str,
    *,
    cancelled_at_s: float,
    cause: Cause = Cause.UNKNOWN_CAUSE,
    reason: str = "",
) -> Cancellation:
    """The cancellation of `trip_id` on `service_date`, checked against the network (see the
    module): raises a `CancellationError` naming the problem."""
    day = service_day(service_date)
    trip_idx = network.trip_index.get(trip_id)
    if trip_idx is None:
        raise UnknownTripError(
            f"no trip {trip_id!r} in the static GTFS (trips.txt); the ghost trip alerts "
            "(/api/operations/alerts) and a stop's departures (/api/stops/{stop_id}) name them"
        )
    runs = network.runs_of_trip.get(trip_idx, [])
    if len(runs) != 1 or math.isfinite(float(network.runs.headway_s[runs[0]])):
        raise FrequencyTripError(
            f"trip {trip_id!r} is defined in frequencies.txt ({len(runs)} departures a day): "
            "cancelling one departure of a frequency-based trip is not supported"
        )
    (run,) = runs
    if not network.active_runs(day)[run]:
        service_id = network.service_ids[int(network.run_service[run])]
        raise TripNotRunningError(
            f"trip {trip_id!r} does not run on {service_date} (service {service_id!r} has no "
            "service that day in calendar.txt / calendar_dates.txt): give a day it runs"
        )
    text = " ".join(reason.split())  # one line: it goes into the feeds' texts
    if len(text) > MAX_REASON_CHARS:
        raise BadReasonError(
            f"reason has {len(text)} characters; keep it to {MAX_REASON_CHARS} (it is shown "
            "to riders in the alert)"
        )
    trip = network.trips[trip_idx]
    origin = network.day_origin(day)
    return Cancellation(
        trip_id=trip_id,
        service_date=service_date,
        route_id=network.routes[trip.route_idx].route_id,
        direction_id=trip.direction_id if trip.direction_id >= 0 else None,
        scheduled_departure_s=origin + float(network.runs.start_s[run]),
        scheduled_arrival_s=origin + float(network.runs.end_s[run]),
        cause=cause,
        reason=text,
        cancelled_at_s=cancelled_at_s,
    )


class Cancellations:
    """The cancellations the service holds, by (trip_id, service_date); `version` counts the
    changes (so that what is derived from them can be kept until the next one); `refused`
    counts the requests refused, by `CancellationError.reason`. Not thread-safe: the event
    loop's thread changes and reads it."""

    def __init__(self, found: Iterable[Cancellation] = ()) -> None:
        self._by_key: dict[tuple[str, str], Cancellation] = {c.key: c for c in found}
        self.version = 0
        self.refused: Counter[str] = Counter()

    def put(self, found: Cancellation) -> Cancellation | None:
        """Hold `found`, replacing the same trip's on the same day; the one it replaced."""
        old = self._by_key.get(found.key)
        self._by_key[found.key] = found
        self.version += 1
        return old

    def remove(self, trip_id: str, service_date: str) -> Cancellation | None:
        """Forget the trip's cancellation on that day; the one forgotten (None: there was none)."""
        old = self._by_key.pop((trip_id, service_date), None)
        if old is not None:
            self.version += 1
        return old

    def get(self, trip_id: str, service_date: str) -> Cancellation | None:
        return self._by_key.get((trip_id, service_date))

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    def __iter__(self) -> Iterator[Cancellation]:
        """By service date, then trip id."""
        return iter(sorted(self._by_key.values(), key=lambda c: (c.service_date, c.trip_id)))

    def __len__(self) -> int:
        return len(self._by_key)

    def keys(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._by_key)

    def forget_before(self, service_date: str) -> int:
        """Forget the cancellations of the service days before `service_date` (YYYYMMDD): their
        trips are long over. How many were forgotten."""
        old = [k for k in self._by_key if k[1] < service_date]
        for key in old:
            del self._by_key[key]
        if old:
            self.version += 1
        return len(old)


def _is_cancelled_ghost(alert: object, cancelled: Collection[tuple[str, str]]) -> bool:
    return isinstance(alert, GhostTrip) and (alert.trip_id, alert.service_date) in cancelled


def without_cancelled(assessment: Assessment, cancelled: Collection[tuple[str, str]]) -> Assessment:
    """The assessment without the ghost alerts of cancelled trips (and their changes): a trip
    known not to run is not missing. The same object when there is nothing to take out."""
    if not cancelled:
        return assessment
    alerts = tuple(a for a in assessment.alerts if not _is_cancelled_ghost(a, cancelled))
    changes = tuple(shown_changes(assessment.changes, cancelled))
    if len(alerts) == len(assessment.alerts) and len(changes) == len(assessment.changes):
        return assessment
    return replace(assessment, alerts=alerts, changes=changes)


def shown_changes(
    changes: Iterable[AlertChange], cancelled: Collection[tuple[str, str]]
) -> list[AlertChange]:
    """`changes` without those of the ghost alerts of cancelled trips."""
    return [c for c in changes if not _is_cancelled_ghost(c.alert, cancelled)]
