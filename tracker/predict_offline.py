"""`tracker predict`: replay a recorded day as the live service would, predicting arrivals.

The pings are taken in time order and matched live (`Matcher.match_batch`, one batch per second
of their clock, with the replay clock of `tracker match`: `tracker.offline._Clock`; then
`Matcher.settle`, whose revisions are not used); the answers go through the stop-event detector
(`tracker.core.stop_events`) and every event is learned by the model
(`tracker.core.predict.History`) at once. Every `every_s` seconds of the day's clock (on
multiples of `every_s`), before the pings of that second are matched, every vehicle in service
gets its predictions: they rest on the pings before that time only.

Files:

- predictions CSV (`PREDICTION_COLUMNS`), one row per (vehicle, prediction time, stop), times in
  epoch seconds;
- history CSV (`EVENT_COLUMNS`): stop events, one row each, as `--write-history` writes them and
  `--history` reads them back to start the model from earlier days.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from tqdm import tqdm

from tracker.core.matcher import Matcher
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.core.predict import History, ModelConfig, Prediction, predict_all
from tracker.core.stop_events import Observed, Progress, StopEvent, StopEventDetector
from tracker.errors import TrackerError
from tracker.gtfs.load import load_network
from tracker.offline import _MAX_FUTURE_S, _Clock
from tracker.pings_io import _fmt, read_pings

PREDICTION_COLUMNS: tuple[str, ...] = (
    "vehicle_id",
    "made_at",
    "trip_id",
    "stop_id",
    "stop_sequence",
    "predicted_arrival",
    "p10_arrival",
    "p90_arrival",
    "service_date",
    "trips_ahead",
    "source",
)

EVENT_COLUMNS: tuple[str, ...] = (
    "vehicle_id",
    "trip_id",
    "service_date",
    "route_id",
    "direction_id",
    "stop_id",
    "stop_sequence",
    "arrival_s",
    "departure_s",
    "scheduled_arrival_s",
    "scheduled_departure_s",
    "delay_s",
    "observed",
)


@dataclass(frozen=True, slots=True)
class Tick:
    """The predictions made at one time, and the vehicles they were made for."""

    made_at_s: float
    vehicles: list[Progress]  # every vehicle with a trip, in service or not
    predictions: list[Prediction]


@dataclass
class ReplayStats:
    """What a replay did, and the CPU time its parts took."""

    pings: int = 0
    events: int = 0
    predictions: int = 0
    ticks: int = 0
    match_cpu_s: float = 0.0
    detect_cpu_s: float = 0.0
    learn_cpu_s: float = 0.0
    predict_cpu_s: float = 0.0
    record_cpu_s: float = 0.0
    seconds: float = 0.0
    event_log: list[StopEvent] = field(default_factory=list)

    def lines(self) -> list[str]:
        per_prediction = 1e6 * self.predict_cpu_s / max(self.predictions, 1)
        per_event = 1e6 * self.learn_cpu_s / max(self.events, 1)
        per_record = 1e6 * self.record_cpu_s / max(self.predictions, 1)
        return [
            f"{self.pings} pings, {self.events} stop events, {self.predictions} predictions at "
            f"{self.ticks} times in {self.seconds:.1f} s",
            f"CPU: matching {self.match_cpu_s:.1f} s, stop events {self.detect_cpu_s:.2f} s, "
            f"learning {self.learn_cpu_s:.2f} s ({per_event:.1f} µs per event), predicting "
            f"{self.predict_cpu_s:.2f} s ({per_prediction:.2f} µs per prediction), recording them "
            f"for calibration {self.record_cpu_s:.2f} s ({per_record:.2f} µs each)",
        ]


def replay(
    network: Network,
    pings: Iterable[Ping],
    *,
    model: History,
    every_s: float = 60.0,
    stats: ReplayStats | None = None,
    keep_events: bool = False,
    max_jump_s: float = 6 * 3600.0,
    progress: Callable[[int], object] | None = None,
) -> Iterator[Tick]:
    """Replay `pings` (sorted here by timestamp) as the live service: one `Tick` per
    `every_s` seconds of their clock, from the first ping to the last (see the module), leaving
    out the times when no vehicle has been seen for `ModelConfig.max_age_s` (nothing to predict;
    a stray timestamp years off would otherwise make millions of them). Pings whose timestamp is
    not a finite number are left out (the matcher would reject them).

    `model` learns from the stop events as they come (and from its recorded predictions'
    errors); with `keep_events` they are also kept in `stats.event_log`.
    """
    if every_s <= 0 or not math.isfinite(every_s):
        raise ValueError(f"every_s is {every_s!r}; expected a positive number of seconds")
    stats = stats if stats is not None else ReplayStats()
    ordered = sorted((p for p in pings if math.isfinite(p.timestamp)), key=lambda p: p.timestamp)
    max_age = model.config.max_age_s
    seen = -math.inf  # the latest second of pings matched
    matcher = Matcher(network)
    detector = StopEventDetector(network)
    clock = _Clock(max_jump_s)
    started = time.perf_counter()
    next_tick: float | None = None
    i = 0
    while i < len(ordered):
        second = math.floor(ordered[i].timestamp)
        j = i
        while j < len(ordered) and math.floor(ordered[j].timestamp) == second:
            j += 1
        batch = ordered[i:j]
        i = j
        if next_tick is None:
            next_tick = math.floor(second / every_s) * every_s + every_s
        while next_tick <= second:  # the predictions due before this second's pings
            if next_tick > seen + 1.0 + max_age:  # nobody in service until this second's pings
                next_tick = math.floor(second / every_s) * every_s + every_s
                break
            t0 = time.process_time()
            made = predict_all(model, detector, network, next_tick)
            t1 = time.process_time()
            model.record(made)
            stats.predict_cpu_s += t1 - t0
            stats.record_cpu_s += time.process_time() - t1
            stats.predictions += len(made)
            stats.ticks += 1
            yield Tick(next_tick, list(detector.vehicles()), made)
            next_tick += every_s
        seen = second
        t0 = time.process_time()
        now = clock.now()
        matches = matcher.match_batch(batch, now=now)
        clock.saw(p.timestamp for p in batch if p.timestamp <= now + _MAX_FUTURE_S)
        # As the live service does after each batch (which also keeps the matcher's window of
        # recent answers bounded); the revisions of older answers are not used here: the stop
        # events of an answer, once reported, stay.
        matcher.settle(second + 1.0)
        t1 = time.process_time()
        events = detector.feed_all(matches)
        t2 = time.process_time()
        model.learn_all(events)
        t3 = time.process_time()
        stats.match_cpu_s += t1 - t0
        stats.detect_cpu_s += t2 - t1
        stats.learn_cpu_s += t3 - t2
        stats.pings += len(batch)
        stats.events += len(events)
        if keep_events:
            stats.event_log.extend(events)
        if progress is not None:
            progress(len(batch))
    stats.seconds += time.perf_counter() - started


def predict_file(
    gtfs: Path,
    pings: Path,
    out: Path,
    *,
    every_s: float = 60.0,
    history: Path | None = None,
    write_history: Path | None = None,
    ignore_trip_ids: bool = False,
    progress: bool = True,
) -> ReplayStats:
    """`tracker predict`: replay `pings` and write the predictions to `out` (see the module)."""
    network = load_network(gtfs)
    model = History(network, ModelConfig())
    if history is not None:
        model.learn_all(read_events(history))
    stats = ReplayStats()
    good = [p for p in read_pings(pings, ignore_trip_ids=ignore_trip_ids) if isinstance(p, Ping)]
    with (
        PredictionWriter(out) as writer,
        tqdm(total=len(good), unit=" pings", disable=not progress, desc="replaying") as bar,
    ):
        for tick in replay(network, good, model=model, every_s=every_s, stats=stats,
                           keep_events=write_history is not None, progress=bar.update):  # fmt: skip
            writer.write_all(tick.predictions)
    if write_history is not None:
        write_events(write_history, stats.event_log)
    return stats


class PredictionWriter:
    """Write predictions as CSV rows with `PREDICTION_COLUMNS`; a context manager."""

    def __init__(self, path: Path) -> None:
        # The writer owns the file until close() or the end of its `with` block.
        self._file = Path(path).open("w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        self._csv.writerow(PREDICTION_COLUMNS)

    def write_all(self, predictions: Iterable[Prediction]) -> None:
        self._csv.writerows(
            (
                p.vehicle_id,
                _fmt(p.made_at_s, None),
                p.trip_id,
                p.stop_id,
                p.stop_sequence,
                _fmt(p.predicted_arrival_s, 1),
                _fmt(p.p10_arrival_s, 1),
                _fmt(p.p90_arrival_s, 1),
                p.service_date,
                p.trips_ahead,
                p.source.value,
            )
            for p in predictions
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_events(path: Path, events: Sequence[StopEvent]) -> None:
    """Write stop events as a history CSV (`EVENT_COLUMNS`)."""
    with Path(path).open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EVENT_COLUMNS)
        writer.writerows(
            (
                e.vehicle_id,
                e.trip_id,
                e.service_date,
                e.route_id,
                "" if e.direction_id is None else e.direction_id,
                e.stop_id,
                e.stop_sequence,
                _fmt(e.arrival_s, 3),
                _fmt(e.departure_s, 3),
                _fmt(e.scheduled_arrival_s, 3),
                _fmt(e.scheduled_departure_s, 3),
                _fmt(e.delay_s, 3),
                e.observed.value,
            )
            for e in events
        )


def read_events(path: Path) -> list[StopEvent]:
    """Read a history CSV written by `write_events`; a bad row stops with its line number."""
    out: list[StopEvent] = []
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = set(EVENT_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise TrackerError(
                f"{path}: not a stop-event history file (no column {', '.join(sorted(missing))}); "
                "write one with `tracker predict --write-history`"
            )
        for line, row in enumerate(reader, start=2):
            try:
                out.append(
                    StopEvent(
                        vehicle_id=row["vehicle_id"],
                        trip_id=row["trip_id"],
                        service_date=row["service_date"],
                        route_id=row["route_id"],
                        direction_id=_optional_int(row["direction_id"]),
                        stop_id=row["stop_id"],
                        stop_sequence=int(row["stop_sequence"]),
                        arrival_s=_optional_float(row["arrival_s"]),
                        departure_s=_optional_float(row["departure_s"]),
                        scheduled_arrival_s=_optional_float(row["scheduled_arrival_s"]),
                        scheduled_departure_s=_optional_float(row["scheduled_departure_s"]),
                        delay_s=_optional_float(row["delay_s"]),
                        observed=Observed(row["observed"]),
                    )
                )
            except ValueError as exc:
                raise TrackerError(f"{path}, line {line}: {exc}") from None
    return out


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def _optional_int(text: str) -> int | None:
    return int(text) if text.strip() else None
