"""The matching engine: which trip is each vehicle running, where along it, and how late.

Pure: values in, values out. `Matcher.match_batch(pings, now=...)` takes pings in arrival order and
returns one `Match` each; it keeps per-vehicle state between calls and never reads the clock.

How it decides (an online hidden-Markov filter per vehicle), each step in a module of its own:

1. Each ping is validated (`tracker.core.validate`), projected to metres and snapped to every
   shape pass within `snap_radius_m` (`tracker.core.candidates.snap`).
2. Every scheduled run on those shapes whose schedule at that spot is within the delay window
   becomes a *candidate* (run, service day, distance along, delay):
   `tracker.core.candidates.candidate_table`, for the whole batch at once.
3. The vehicle's hypotheses move on by one ping (`tracker.core.filter.step`): a candidate's score
   = the best previous hypothesis' score + the cost of getting here from it + how well the ping
   fits. Switching runs is cheap only from the end of one run to the start of the next
   (cheapest to the next run of the same block) and dear mid-route; a run with no candidate
   this ping (a GPS outlier, a detour) is carried forward at a fixed cost, so one bad fix does
   not lose the trip.
4. The best hypothesis is the answer (`tracker.core.answers.describe`).

A trip_id sent with the ping is checked and, if it fits, believed (`tracker.core.hints`). The
tables all of this reads are built once per network and config (`tracker.core.tables`).

Between trips that share a shape this lets history decide: a bus that has been 8 minutes late on
its trip stays on it even when the next trip's schedule fits the current ping better.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tracker.core.answers import Draft, as_reported, complete, describe, describe_followed
from tracker.core.blocks import Fleet
from tracker.core.candidates import Candidate, PingCache, Snapped, candidate_table, snap
from tracker.core.filter import Exclusions, Hypothesis, VehicleState, step
from tracker.core.hints import believe_trip, follow_given_trips
from tracker.core.model import Match, Ping, Reason, State, rejected
from tracker.core.network import FloatArray, Network
from tracker.core.settle import BLOCKS_KEPT, Recent, SettleWindow
from tracker.core.tables import MatcherConfig, RunTables
from tracker.core.validate import MAX_SPEED_MPS, clean_hints, validate_ping

__all__ = ["Hypothesis", "Matcher", "MatcherConfig", "PingCache", "VehicleState"]


@dataclass
class Matcher:
    """Per-vehicle state plus the engine. One instance per network and stream of pings."""

    network: Network
    config: MatcherConfig = field(default_factory=MatcherConfig)
    states: dict[str, VehicleState] = field(default_factory=dict)
    # Runs a vehicle may not be matched to during a time span (another vehicle runs them).
    exclusions: dict[str, Exclusions] = field(default_factory=dict)
    # If given, filled with and read from: see `PingCache`.
    ping_cache: PingCache | None = None

    def __post_init__(self) -> None:
        cfg = self.config
        self.path_ends: dict[str, list[Hypothesis]] = {}
        self.tables = RunTables.of(self.network, cfg)
        fleet = Fleet(self.tables, cfg.blocks)
        # Which block each bus runs, over the fleet (`tracker.core.blocks`), where there are
        # blocks, when matching live (hindsight, `keep_paths`, settles conflicts its own way);
        # and the answers of the last minutes, to settle (`settle`).
        self.fleet = fleet if cfg.assign_blocks and not cfg.keep_paths and fleet.enabled else None
        self.window = (
            SettleWindow(cfg.settle_lag_s) if self.fleet is not None and cfg.settle_lag_s else None
        )

    # --- public ------------------------------------------------------------------------------

    def match_batch(self, pings: Sequence[Ping], *, now: float | Sequence[float]) -> list[Match]:
        """Match pings in arrival order.

        `now` (epoch s) bounds how far ahead a timestamp may be: one clock for the batch, or one
        per ping (a recorded file replays with the clock of each ping's arrival).
        """
        net = self.network
        nows = [now] * len(pings) if isinstance(now, float | int) else now
        results: list[Match | None] = [None] * len(pings)
        usable: list[int] = []
        cleaned: list[Ping] = []
        drafts: list[tuple[int, Draft]] = []  # answers whose snapped point is still in metres
        followed_at: list[tuple[int, Hypothesis]] = []  # answers of the fast path, to describe
        for i, (ping, now_i) in enumerate(zip(pings, nows, strict=True)):
            problem = validate_ping(ping, now=now_i, max_future_s=self.config.max_future_s)
            if problem is not None:
                results[i] = rejected(ping, *problem)
                continue
            usable.append(i)
            cleaned.append(ping if _hints_are_clean(ping) else clean_hints(ping))
        if cleaned:
            lat = np.array([p.lat for p in cleaned])
            lon = np.array([p.lon for p in cleaned])
            x, y = net.project(lat, lon)
            xs, ys = x.tolist(), y.tolist()
            # Pings that continue a believed trip_id are located on that trip's shape alone;
            # the others are snapped to every shape nearby, in one query for the batch.
            followed = [self._follows_given_trip(p) for p in cleaned]
            to_snap = [j for j, f in enumerate(followed) if not f]
            snapped_of, candidates_of = self._prepare(cleaned, to_snap, x, y)
            # A vehicle's pings depend on each other; pings of different vehicles only through
            # the assignment of blocks. So the batch is taken in rounds (`_rounds`), each holding
            # one ping per vehicle at one moment: the pings of a round that follow a believed
            # trip are answered together, in numpy (`tracker.core.hints.follow_given_trips`),
            # the rest one by one (`_match_one`).
            # With blocks, the inferred answers of a round wait for the round's assignment of
            # vehicles to blocks (`_answer_round`).
            for round_ in _rounds(cleaned):
                fast = [j for j in round_ if followed[j]]
                answered = self._follow_given_trips(fast, cleaned, x, y) if fast else {}
                waiting: list[tuple[int, _Pending]] = []
                for j in round_:
                    believed = answered.get(j)
                    if believed is not None:
                        followed_at.append((j, believed))
                        continue
                    found = self._match_one(
                        cleaned[j], xs[j], ys[j], snapped_of.get(j), candidates_of.get(j)
                    )
                    if isinstance(found, Match):
                        results[usable[j]] = found
                    elif isinstance(found, _Pending):
                        waiting.append((usable[j], found))
                    else:
                        drafts.append((usable[j], found))
                if waiting:
                    drafts += self._answer_round(waiting)
            drafts += [
                (usable[j], d)
                for j, d in describe_followed(self.tables, followed_at, cleaned, xs, ys)
            ]
        for i, match in zip(
            (i for i, _ in drafts), complete(self.tables, [d for _, d in drafts]), strict=True
        ):
            results[i] = match
        out = [r for r in results if r is not None]
        assert len(out) == len(pings)
        return out

    def _prepare(
        self, pings: list[Ping], to_snap: list[int], x: FloatArray, y: FloatArray
    ) -> tuple[dict[int, tuple[Snapped, ...]], dict[int, tuple[Candidate, ...]]]:
        """Snapped passes of `pings[j]` for j in `to_snap`, and the candidates of those without a
        trip_id (the others need them only if their trip_id is not believed), each for the whole
        batch at once. Both depend on the ping alone; `ping_cache` keeps them."""
        cache = self.ping_cache if self.ping_cache is not None else {}
        snapped_of: dict[int, tuple[Snapped, ...]] = {}
        candidates_of: dict[int, tuple[Candidate, ...]] = {}
        for j in to_snap:
            found = cache.get(pings[j])
            if found is not None:
                snapped_of[j] = found[0]
                if found[1] is not None:
                    candidates_of[j] = found[1]
        to_snap_now = [j for j in to_snap if j not in snapped_of]
        if to_snap_now:
            rows = np.array(to_snap_now, dtype=np.int64)
            snapped_of.update(zip(to_snap_now, snap(self.tables, x[rows], y[rows]), strict=True))
        infer = [j for j in to_snap if pings[j].trip_id is None and j not in candidates_of]
        if infer:
            table = candidate_table(
                self.tables, [pings[j] for j in infer], [snapped_of[j] for j in infer]
            )
            candidates_of.update(zip(infer, table, strict=True))
        if self.ping_cache is not None:
            for j in to_snap:
                self.ping_cache[pings[j]] = (snapped_of[j], candidates_of.get(j))
        return snapped_of, candidates_of

    def _follows_given_trip(self, ping: Ping) -> bool:
        state = self.states.get(ping.vehicle_id)
        if ping.trip_id is None or state is None or not state.given_trip:
            return False
        return self.tables.run_trip_id[state.hypotheses[0].run] == ping.trip_id

    def _follow_given_trips(
        self, batch_idx: list[int], pings: list[Ping], x: FloatArray, y: FloatArray
    ) -> dict[int, Hypothesis]:
        """`tracker.core.hints.follow_given_trips`, each believed ping remembered as its
        vehicle's new state."""
        believed = follow_given_trips(self.tables, self.states, batch_idx, pings, x, y)
        for j, best in believed.items():
            self._remember(pings[j], (best,), best, given_trip=True)
        return believed

    # --- one ping -------------------------------------------------------------------------------

    def _match_one(
        self,
        ping: Ping,
        x: float,
        y: float,
        snapped: tuple[Snapped, ...] | None,
        candidates: tuple[Candidate, ...] | None,
    ) -> Match | Draft | _Pending:
        """One ping; `snapped` is None when it was not snapped (it follows a given trip), and
        `candidates` when they were not found yet (it has a trip_id). A matched ping's answer is
        a `Draft` (or, inferred where there are blocks, `_Pending` until the round's assignment
        of vehicles to blocks), an unmatched one's a `Match`."""
        cfg = self.config
        net = self.network
        state = self.states.get(ping.vehicle_id)
        if state is not None:
            if ping.timestamp == state.last_timestamp:
                return rejected(ping, Reason.DUPLICATE, "same vehicle and timestamp seen before")
            if ping.timestamp < state.last_timestamp:
                return rejected(
                    ping,
                    Reason.OUT_OF_ORDER,
                    f"{state.last_timestamp - ping.timestamp:.0f} s older than the vehicle's "
                    "latest ping",
                )
            if ping.timestamp - state.last_timestamp > cfg.forget_after_s:
                state = None
                if self.fleet is not None:
                    self.fleet.forget(ping.vehicle_id)
        dt_s = ping.timestamp - state.last_timestamp if state is not None else 0.0
        previous = state.hypotheses if state is not None else ()

        hint_reason: tuple[Reason, str] | None = None
        route_filter: int | None = None
        if ping.route_id is not None:
            route_filter = net.route_index.get(ping.route_id)
            if route_filter is None:
                hint_reason = (
                    Reason.UNKNOWN_ROUTE,
                    f"route_id {ping.route_id!r} is not in the feed",
                )

        if ping.trip_id is not None:
            believed, why = believe_trip(self.tables, ping, x, y, snapped or (), previous, dt_s)
            if believed is not None:
                return self._finish(ping, x, y, believed, (believed,), believed, given_trip=True,
                                    off_route=False, reason=None)  # fmt: skip
            hint_reason = why
        if snapped is None:
            snapped = snap(self.tables, np.array([x]), np.array([y]))[0]

        if candidates is None:
            candidates = candidate_table(self.tables, [ping], [snapped])[0]
        excluded = self.exclusions.get(ping.vehicle_id)
        hypotheses = step(self.tables, ping, x, y, candidates, previous, dt_s, excluded)
        if self.fleet is not None:
            self.fleet.step(ping, x, y, candidates, dt_s, excluded)
        if not hypotheses:
            if cfg.keep_paths:
                self._end_path(ping.vehicle_id)
            self.states[ping.vehicle_id] = VehicleState(ping.timestamp, ())
            if hint_reason is None:
                hint_reason = (
                    (Reason.NO_SHAPE_NEARBY,
                     f"no route shape within {cfg.snap_radius_m:.0f} m")
                    if not snapped
                    else (Reason.NO_TRIP_FITS, "near a route, but no scheduled trip fits the time")
                )  # fmt: skip
            return Match(
                vehicle_id=ping.vehicle_id,
                timestamp=ping.timestamp,
                state=State.NOT_MATCHED,
                reason=hint_reason[0],
                detail=hint_reason[1],
            )
        best = hypotheses[0]
        if self.fleet is not None:
            self._remember(ping, hypotheses, best, given_trip=False)
            return _Pending(ping, x, y, best, hint_reason)
        return self._finish(
            ping, x, y, as_reported(self.tables, best), hypotheses, best, given_trip=False,
            off_route=best.misses > 0, reason=hint_reason,
        )  # fmt: skip

    def _answer_round(self, waiting: list[tuple[int, _Pending]]) -> list[tuple[int, Draft]]:
        """The answers of a round's inferred pings (at their index in the batch): each vehicle's
        assigned block's best hypothesis, or its own best without a block."""
        fleet = self.fleet
        assert fleet is not None
        fleet.assign(
            [p.ping.vehicle_id for _, p in waiting], max(p.ping.timestamp for _, p in waiting)
        )
        out: list[tuple[int, Draft]] = []
        for i, pending in waiting:
            ping = pending.ping
            chosen = fleet.answer(ping.vehicle_id) or pending.own
            if self.window is not None:
                reason, detail = pending.reason or (None, None)
                kept = fleet.best_by_block(ping.vehicle_id, BLOCKS_KEPT)
                block, _ = fleet.block_of(ping.vehicle_id)
                self.window.add(Recent(ping.vehicle_id, ping.timestamp, pending.x, pending.y,
                                       chosen, block, pending.own, kept, reason,
                                       detail))  # fmt: skip
            out.append((i, self._draft(ping.vehicle_id, ping.timestamp, pending.x, pending.y,
                                       chosen, pending.reason, trip_id_given=False)))  # fmt: skip
        return out

    def settle(self, now_s: float) -> list[Match]:
        """The answers that changed once settled (see `tracker.core.settle`), for the pings more
        than `MatcherConfig.settle_lag_s` older than `now_s`: each ping is settled once."""
        if self.window is None or self.fleet is None:
            return []
        drafts: list[Draft] = []
        for recent in self.window.due(now_s):
            settled = recent.settled(self.fleet.block_of(recent.vehicle_id)[0])
            if settled is recent.answered:
                continue
            reason = None if recent.reason is None else (recent.reason, recent.detail or "")
            before, after = (
                self._draft(recent.vehicle_id, recent.timestamp, recent.x, recent.y, h, reason,
                            trip_id_given=False)
                for h in (recent.answered, settled)
            )  # fmt: skip
            if (before[2], before[5], before[6]) != (after[2], after[5], after[6]):
                drafts.append(after)  # another state, trip or service day
        return complete(self.tables, drafts)

    # --- output ---------------------------------------------------------------------------------

    def _finish(
        self,
        ping: Ping,
        x: float,
        y: float,
        answer: Hypothesis,
        hypotheses: tuple[Hypothesis, ...],
        best: Hypothesis,
        *,
        given_trip: bool,
        off_route: bool,
        reason: tuple[Reason, str] | None,
    ) -> Draft:
        """Remember the vehicle's new state (`hypotheses`, best first) and describe `answer`."""
        self._remember(ping, hypotheses, best, given_trip=given_trip)
        return describe(
            self.tables, ping.vehicle_id, ping.timestamp, x, y, answer, off_route=off_route,
            reason=reason[0] if reason else None, detail=reason[1] if reason else None,
            trip_id_given=given_trip,
        )  # fmt: skip

    def _draft(
        self,
        vehicle_id: str,
        timestamp: float,
        x: float,
        y: float,
        chosen: Hypothesis,
        reason: tuple[Reason, str] | None,
        *,
        trip_id_given: bool,
    ) -> Draft:
        """The answer told from an inferred hypothesis (`as_reported`)."""
        return describe(
            self.tables, vehicle_id, timestamp, x, y, as_reported(self.tables, chosen),
            off_route=chosen.misses > 0, reason=reason[0] if reason else None,
            detail=reason[1] if reason else None, trip_id_given=trip_id_given,
        )  # fmt: skip

    def _remember(
        self, ping: Ping, hypotheses: tuple[Hypothesis, ...], best: Hypothesis, *, given_trip: bool
    ) -> None:
        """The vehicle's new state after `ping`, answered with `best`."""
        if self.config.keep_paths and best.parent is None:
            self._end_path(ping.vehicle_id)
        self.states[ping.vehicle_id] = VehicleState(ping.timestamp, hypotheses, given_trip)
        if given_trip and self.fleet is not None:
            self.fleet.pin(ping.vehicle_id, self.tables.run_block[best.run], ping.timestamp)

    # --- hindsight (keep_paths) -------------------------------------------------------------

    def _end_path(self, vehicle_id: str) -> None:
        """The vehicle's current path ends here (it was lost, or restarts afresh): keep its tip."""
        state = self.states.get(vehicle_id)
        if state is not None and state.hypotheses:
            self.path_ends.setdefault(vehicle_id, []).append(state.hypotheses[0])

    def best_paths(self, vehicle_id: str) -> list[Hypothesis]:
        """With `keep_paths`: the tips of the vehicle's paths so far, oldest first.

        Following `parent` from a tip gives, for every ping on that path, the hypothesis that
        best explains the whole path in hindsight (which may differ from what was answered live).
        """
        tips = list(self.path_ends.get(vehicle_id, ()))
        state = self.states.get(vehicle_id)
        if state is not None and state.hypotheses:
            tips.append(state.hypotheses[0])
        return tips

    def relabel(
        self, matches: Sequence[Match], pings: Sequence[Ping], path: Sequence[Hypothesis]
    ) -> list[Match]:
        """`matches` of one vehicle's `pings` re-described by hypotheses of `path` (by time)."""
        by_time = {h.at_s: h for h in path}
        out = list(matches)
        todo = [i for i, m in enumerate(matches)
                if m.state is not State.REJECTED and m.timestamp in by_time]  # fmt: skip
        if not todo:
            return out
        lat = np.array([pings[i].lat for i in todo])
        lon = np.array([pings[i].lon for i in todo])
        x, y = self.network.project(lat, lon)
        described = [
            describe(self.tables, m.vehicle_id, m.timestamp, float(x[k]), float(y[k]), h,
                           off_route=h.misses > 0, reason=m.reason, detail=m.detail,
                           trip_id_given=m.trip_id_given)
            for k, i in enumerate(todo)
            for m, h in [(matches[i], by_time[matches[i].timestamp])]
        ]  # fmt: skip
        for i, m in zip(todo, complete(self.tables, described), strict=True):
            out[i] = m
        return out


@dataclass(frozen=True, slots=True)
class _Pending:
    """An inferred ping whose answer waits for the round's assignment of vehicles to blocks."""

    ping: Ping
    x: float
    y: float
    own: Hypothesis  # the vehicle's own filter's best
    reason: tuple[Reason, str] | None


ROUND_SPAN_S = 30.0
"""The pings of a round lie within this of each other (see `_rounds`)."""


def _rounds(pings: Sequence[Ping], span_s: float = ROUND_SPAN_S) -> list[list[int]]:
    """Indices of `pings` in rounds, in time: each round holds at most one ping per vehicle, the
    next of each vehicle (in arrival order) whose timestamp is within `span_s` of the earliest
    of them; within a round, indices in batch order.

    Vehicles answer each other through the assignment of blocks after each round, so a round
    must be one moment of the fleet, even when a batch holds minutes of pings.
    """
    queues: dict[str, deque[int]] = {}
    for j, ping in enumerate(pings):
        queues.setdefault(ping.vehicle_id, deque()).append(j)
    heap = [(pings[q[0]].timestamp, k, q) for k, q in enumerate(queues.values())]
    heapq.heapify(heap)
    rounds: list[list[int]] = []
    while heap:
        until_s = heap[0][0] + span_s
        round_: list[int] = []
        later: list[tuple[float, int, deque[int]]] = []
        while heap and heap[0][0] <= until_s:
            _, k, queue = heapq.heappop(heap)
            round_.append(queue.popleft())
            if queue:
                later.append((pings[queue[0]].timestamp, k, queue))
        for item in later:
            heapq.heappush(heap, item)
        round_.sort()
        rounds.append(round_)
    return rounds


def _hints_are_clean(ping: Ping) -> bool:
    """Whether `clean_hints` would return `ping` unchanged (the usual case): skips its copy."""
    speed, bearing, accuracy = ping.speed_mps, ping.bearing_deg, ping.accuracy_m
    return (
        (speed is None or 0 <= speed <= MAX_SPEED_MPS)
        and (bearing is None or 0 <= bearing < 360)
        and (accuracy is None or 0 <= accuracy < math.inf)
        and (ping.route_id is None or bool(ping.route_id.strip()))
        and (ping.trip_id is None or bool(ping.trip_id.strip()))
    )
