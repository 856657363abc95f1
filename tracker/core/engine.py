"""The live service's engine: the matcher, and everything that reads its answers, one step per
micro-batch.

    pings ─┬─▶ Matcher.match_batch ─▶ answers ─┬─▶ Matcher.settle ─▶ revisions
           │                                    ├─▶ StopEventDetector.feed ─▶ stop events
           │                                    │       ─▶ History.learn (running times)
           │                                    ├─▶ OperationsMonitor.observe
           │                                    └─▶ predict (a vehicle every `predict_every_s`)
           └─▶ older than their vehicle's newest: LatePings.take ─▶ `late` answers now;
               LatePings.due ─▶ hindsight answers of whole stretches later, as revisions
    every `assess_every_s`: OperationsMonitor.assess ─▶ headways, alerts

`Engine.step(pings, now_s)` does all of it for one micro-batch and returns a `Step`: the batch's
answers, the revisions of older answers that settled differently, the answers of late pings
matched with hindsight (`tracker.core.late`), the stop events detected, the new predictions of the
vehicles predicted this step, and (every `assess_every_s`) the operations assessment and the
predictions' recent accuracy. Steps with no pings are useful too: revisions settle, ghost trips
and silent buses show, as time passes.

Predictions are spread over the steps: a vehicle is predicted when it has reported and its last
predictions are `predict_every_s` old, so the cost is about even whatever the fleet (a few µs per
stop predicted, docs/predictions.md) and no step stalls to predict every bus at once.

Pure: values in, values out; `now_s` comes with every step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tracker.core.accuracy import BucketScore
from tracker.core.late import LateConfig, LatePings
from tracker.core.matcher import Matcher
from tracker.core.model import Match, Ping, State
from tracker.core.network import Network
from tracker.core.operations import Assessment, OperationsConfig, OperationsMonitor
from tracker.core.predict import IN_SERVICE_STATES, History, ModelConfig, Prediction, predict
from tracker.core.stop_events import StopEvent, StopEventDetector
from tracker.core.tables import MatcherConfig

CHUNK_PINGS = 500
"""The matcher prepares a whole call's candidates at once (tens of kB per ping on a feed of
overlapping routes): a big micro-batch is matched in calls of at most this many pings, which
bounds that memory and gives the same answers (a vehicle's pings stay in order)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How often the engine's slower parts run, on the service clock (seconds)."""

    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    operations: OperationsConfig = field(default_factory=OperationsConfig)
    predictions: ModelConfig = field(default_factory=ModelConfig)
    predict_every_s: float = 30.0  # a vehicle's predictions are made again this often
    assess_every_s: float = 5.0  # headways and alerts
    forget_after_s: float = 3600.0  # stop detection forgets vehicles silent this long
    late: LateConfig = field(default_factory=LateConfig)


@dataclass(frozen=True, slots=True)
class Step:
    """What one engine step answers (see the module)."""

    matches: list[Match]  # one per ping, in order
    revised: list[Match]  # older answers that settled differently
    late_matched: list[Match]  # late pings answered with hindsight (revising their `late` rows)
    stop_events: list[StopEvent]
    predictions: dict[str, list[Prediction]]  # vehicle -> its new predictions (replacing old)
    assessment: Assessment | None  # None: not assessed this step
    accuracy: list[BucketScore] | None  # with the assessment


class Engine:
    """Every vehicle's state, and the learned model of running times (see the module)."""

    def __init__(
        self, network: Network, config: EngineConfig, history: Iterable[StopEvent] = ()
    ) -> None:
        self.network = network
        self.config = config
        self.matcher = Matcher(network, config.matcher)
        self.detector = StopEventDetector(network)
        self.model = History(network, config.predictions)
        self.model.learn_all(history)
        self.monitor = OperationsMonitor(network, config.operations)
        self.late = LatePings(network, config.matcher, config.late)
        self._predicted_at: dict[str, float] = {}
        self._assessed_at = -math.inf

    def step(self, pings: Sequence[Ping], now_s: float) -> Step:
        cfg = self.config
        # Pings older than their vehicle's newest are held for hindsight (`tracker.core.late`);
        # the live answers, and all that follows them, are of the others.
        late = self.late.take(pings, self._latest_s, now_s)
        live = [p for i, p in enumerate(pings) if i not in late] if late else list(pings)
        live_matches = [
            match
            for start in range(0, len(live), CHUNK_PINGS)
            for match in self.matcher.match_batch(live[start : start + CHUNK_PINGS], now=now_s)
        ]
        revised = self.matcher.settle(now_s)
        late_matched = self.late.due(now_s)
        events = self.detector.feed_all(m for m in live_matches if m.state is not State.REJECTED)
        self.model.learn_all(events)
        self.monitor.observe(live, live_matches)
        predictions = self._predict(
            {m.vehicle_id for m in live_matches if m.state is not State.REJECTED}, now_s
        )
        if late:
            answers = iter(live_matches)
            matches = [late[i] if i in late else next(answers) for i in range(len(pings))]
        else:
            matches = live_matches
        assessment: Assessment | None = None
        accuracy: list[BucketScore] | None = None
        if now_s - self._assessed_at >= cfg.assess_every_s:
            self._assessed_at = now_s
            assessment = self.monitor.assess(now_s)
            accuracy = self.model.accuracy.scores()
            self.detector.forget(now_s - cfg.forget_after_s)
            self._predicted_at = {
                v: at for v, at in self._predicted_at.items() if now_s - at < cfg.forget_after_s
            }
        return Step(matches, revised, late_matched, events, predictions, assessment, accuracy)

    def _latest_s(self, vehicle_id: str) -> float | None:
        """The time of the vehicle's newest ping the live matcher holds, if it holds one."""
        state = self.matcher.states.get(vehicle_id)
        return None if state is None else state.last_timestamp

    def _predict(self, vehicle_ids: Iterable[str], now_s: float) -> dict[str, list[Prediction]]:
        """New predictions of the vehicles that reported, if theirs are `predict_every_s` old
        (a vehicle no longer in service gets an empty list: its predictions are void)."""
        every_s = self.config.predict_every_s
        max_age_s = self.model.config.max_age_s
        out: dict[str, list[Prediction]] = {}
        for vehicle_id in vehicle_ids:
            if now_s - self._predicted_at.get(vehicle_id, -math.inf) < every_s:
                continue
            self._predicted_at[vehicle_id] = now_s
            progress = self.detector.progress(vehicle_id)
            if (
                progress is None
                or progress.state not in IN_SERVICE_STATES
                or now_s - progress.last_seen_s > max_age_s
            ):
                out[vehicle_id] = []
                continue
            made = predict(self.model, progress, self.network, now_s)
            self.model.record(made)
            out[vehicle_id] = made
        return out
