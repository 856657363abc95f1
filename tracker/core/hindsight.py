"""Hindsight for recorded pings: each vehicle's best path, and no two vehicles on one trip.

Live, the matcher answers each ping as it arrives, from what came before (a filter). Over a
recorded day what came after is known too, so `match_recorded` answers with hindsight:

1. Each vehicle's pings are matched in order with `keep_paths`, so every hypothesis links to
   the one it came from. Following the links back from the best final hypothesis gives the best
   explanation of the whole path (Viterbi backtracking): the first pings of a trip, answered
   with the wrong run live, are corrected once the rest of the trip shows which run it was.
2. A trip is run by one vehicle. Where two vehicles' paths use the same run at the same time
   (a bus 12 minutes late on its own block looks exactly like another block's bus on time),
   one of them must give the run up. Giving it up may put that vehicle on a third vehicle's
   run, which must then give that up, and so on: for each of the two, the chain of moves is
   worked out (each vehicle matched again without the run it gives up, for that time; at most
   `MAX_CHAIN` more vehicles), and the chain that loses less path score is applied. A few
   rounds settle the day.
3. A bus keeps to its block. Where a path still changes block mid-day (a late bus taking the
   runs of a block whose own bus stopped reporting, which no conflict shows; or two buses that
   swapped blocks where their schedules are minutes apart), the vehicle is matched again on one
   of its blocks alone (and the vehicle whose run that takes, on its other block), the cheapest
   way if it costs at most `BLOCK_CHANGE_COST` per bus.

With hindsight the schedule prior weighs less (`HINDSIGHT_SCHEDULE_WEIGHT`), and a bus waiting at
a terminal long before its next run is reported on the run it arrived on (`HAND_OVER_S`).

Pure, like the matcher: values in, values out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracker.core.candidates import PingCache
from tracker.core.filter import Hypothesis
from tracker.core.matcher import Matcher
from tracker.core.model import Match, Ping
from tracker.core.network import Network
from tracker.core.tables import MatcherConfig

RunKey = tuple[int, dt.date]  # (run, service day)
Exclusions = dict[RunKey, list[tuple[float, float]]]

MIN_CONFLICT_S = 120.0  # two vehicles on one run for less than this is a terminal hand-over
EXCLUSION_MARGIN_S = 60.0
# With the whole day known, block continuity and one vehicle per run decide more, and the
# schedule prior, which adds up ping after ping, less: at the live weight (0.15) a bus running
# 10 minutes late all day is pushed onto another block on time. Measured on the WMATA day
# (clean / noisy trip accuracy): 0.15 gave 96.5 % / 96.1 %, 0.08 gives 97.9 % / 96.1 %.
HINDSIGHT_SCHEDULE_WEIGHT = 0.08
# Agencies hand a bus over to its next trip some time before it departs, not on arrival (WMATA:
# a median of 10 minutes before). Waiting longer than this before departure is reported on the
# arrived trip: 97.9 % -> 98.2 % clean, 96.1 % -> 96.4 % noisy on the WMATA day.
HAND_OVER_S = 20 * 60.0
# Buses keep to their block (every bus of the WMATA day does, all day). A path that changes
# block mid-day is kept to one of its blocks if that costs it at most this much path score (per
# bus so kept). On the WMATA day any value from 20 up gives the same answers; 10 is worse.
BLOCK_CHANGE_COST = 30.0
MAX_CHAIN = 3  # how many more vehicles one settled conflict may move, one after the other


@dataclass(frozen=True, slots=True)
class VehiclePath:
    """One vehicle's answers in hindsight, with what the conflict check needs."""

    matches: list[Match]
    score: float  # log-likelihood of the best path (sum over its separate stretches)
    spans: dict[RunKey, tuple[float, float]]  # first and last ping time on each run, in service


def match_recorded(
    network: Network,
    pings: Sequence[Ping],
    nows: Sequence[float],
    *,
    config: MatcherConfig | None = None,
    max_rounds: int = 6,
    progress: Callable[[int], object] | None = None,
) -> list[Match]:
    """One `Match` per ping, in input order, with hindsight. `nows[i]` is ping i's clock.

    `progress`, if given, is called with the number of pings done after each vehicle's first
    pass (the conflict rounds after it are short).
    """
    config = dataclasses.replace(
        config or MatcherConfig(schedule_weight=HINDSIGHT_SCHEDULE_WEIGHT), keep_paths=True
    )
    by_vehicle: dict[str, list[int]] = defaultdict(list)
    for i, ping in enumerate(pings):
        by_vehicle[ping.vehicle_id].append(i)

    # A vehicle's snapped passes and candidates, kept between its matches: the conflict rounds
    # match the same pings again, with exclusions, which only narrow what is offered.
    caches: dict[str, PingCache] = defaultdict(dict)

    def rematch(vehicle_id: str, exclusions: Exclusions) -> VehiclePath:
        idx = by_vehicle[vehicle_id]
        return match_vehicle(
            network,
            config,
            [pings[i] for i in idx],
            [nows[i] for i in idx],
            exclusions,
            cache=caches[vehicle_id],
        )

    paths: dict[str, VehiclePath] = {}
    for vehicle_id, idx in by_vehicle.items():
        paths[vehicle_id] = rematch(vehicle_id, {})
        if progress is not None:
            progress(len(idx))
    exclusions: dict[str, Exclusions] = defaultdict(dict)

    def give_up(
        current: dict[str, VehiclePath], vehicle_id: str, key: RunKey, depth: int
    ) -> tuple[float, dict[str, tuple[VehiclePath, Exclusions]]] | None:
        """`vehicle_id` gives up run `key`; if that puts it on another vehicle's run, that
        vehicle gives its run up in turn (at most `depth` more times). The total loss of path
        score and the new paths, or None if the chain does not end within `depth`."""
        start_s, end_s = current[vehicle_id].spans[key]
        excluded = {k: list(spans) for k, spans in exclusions[vehicle_id].items()}
        excluded.setdefault(key, []).append(
            (start_s - EXCLUSION_MARGIN_S, end_s + EXCLUSION_MARGIN_S)
        )
        trial = rematch(vehicle_id, excluded)
        loss = current[vehicle_id].score - trial.score
        moves = {vehicle_id: (trial, excluded)}
        after = {**current, vehicle_id: trial}
        new = _new_conflicts(current, vehicle_id, trial)
        if not new:
            return loss, moves
        if depth == 0:
            return None
        other_key, other = new[0]
        rest = give_up(after, other, other_key, depth - 1)
        if rest is None:
            return None
        return loss + rest[0], {**moves, **rest[1]}

    for _ in range(max_rounds):
        settled: set[str] = set()
        for key, v1, v2 in _conflicts(paths):
            if v1 in settled or v2 in settled:
                continue
            options = [c for c in (give_up(paths, v, key, MAX_CHAIN) for v in (v1, v2)) if c]
            if not options:
                continue
            _, moves = min(options, key=lambda c: c[0])
            for vehicle_id, (trial, excluded) in moves.items():
                paths[vehicle_id] = trial
                exclusions[vehicle_id] = excluded
                settled.add(vehicle_id)
        if not settled:
            break

    # One block per vehicle: a bus seen leaving its block for another mid-day (a late bus
    # taking the runs of a block whose own bus stopped reporting, or two buses swapping blocks
    # where their schedules are a few minutes apart) is kept to one of its blocks.
    run_block = [network.trips[t].block_id for t in network.runs.trip_idx.tolist()]

    def keep_to(
        current: dict[str, VehiclePath], vehicle_id: str, block: str
    ) -> tuple[VehiclePath, Exclusions] | None:
        """`vehicle_id` matched again with no run but those of `block`: all day, or if that
        leaves pings unmatched that were matched (a bus first seen far off its block's
        schedule), after the first run it is seen on. None if both leave pings unmatched."""
        path = current[vehicle_id]
        matched = sum(m.trip_id is not None for m in path.matches)
        first_end_s = min(path.spans.values())[1] if path.spans else -math.inf
        # The runs this vehicle's pings could be on (a small part of a large feed).
        offered = {
            (c[0], c[1])
            for _, candidates in caches[vehicle_id].values()
            if candidates is not None
            for c in candidates
        }
        for from_s in (-math.inf, first_end_s + EXCLUSION_MARGIN_S):
            # The block's own runs are offered again: the conflicts that took them are decided
            # anew here.
            excluded = {
                k: list(spans)
                for k, spans in exclusions[vehicle_id].items()
                if run_block[k[0]] != block
            }
            for key in offered:
                if run_block[key[0]] != block:
                    excluded.setdefault(key, []).append((from_s, math.inf))
            trial = rematch(vehicle_id, excluded)
            if sum(m.trip_id is not None for m in trial.matches) >= matched:
                return trial, excluded
        return None

    def one_block(vehicle_id: str) -> tuple[float, dict[str, tuple[VehiclePath, Exclusions]]]:
        """The cheapest way to keep `vehicle_id` to one of its blocks: the loss of path score
        and the new paths (none if no way costs at most `BLOCK_CHANGE_COST` per bus). If that
        puts it on another vehicle's run, that vehicle is kept to its longest-held other block
        (two buses that swapped blocks)."""
        best: tuple[float, dict[str, tuple[VehiclePath, Exclusions]]] = (math.inf, {})
        for block in _blocks_held(paths[vehicle_id], run_block):
            first = keep_to(paths, vehicle_id, block)
            if first is None:
                continue
            loss = paths[vehicle_id].score - first[0].score
            moves = {vehicle_id: first}
            new = {other for _key, other in _new_conflicts(paths, vehicle_id, first[0])}
            if len(new) > 1:
                continue
            if new:
                other = new.pop()
                after = {**paths, vehicle_id: first[0]}
                others = [b for b in _blocks_held(paths[other], run_block) if b != block]
                second = keep_to(after, other, others[0]) if others else None
                if second is None or _new_conflicts(after, other, second[0]):
                    continue
                loss += paths[other].score - second[0].score
                moves[other] = second
            if loss <= BLOCK_CHANGE_COST * len(moves) and loss < best[0]:
                best = (loss, moves)
        return best

    for vehicle_id in by_vehicle:
        if len(_blocks_held(paths[vehicle_id], run_block)) > 1:
            for moved, (trial, excluded) in one_block(vehicle_id)[1].items():
                paths[moved] = trial
                exclusions[moved] = excluded

    out: list[Match | None] = [None] * len(pings)
    for vehicle_id, idx in by_vehicle.items():
        for i, match in zip(idx, paths[vehicle_id].matches, strict=True):
            out[i] = match
    return [m for m in out if m is not None]


def match_vehicle(
    network: Network,
    config: MatcherConfig,
    pings: Sequence[Ping],
    nows: Sequence[float],
    exclusions: Exclusions,
    *,
    cache: PingCache | None = None,
) -> VehiclePath:
    """Match one vehicle's pings (in time order) and answer each from its best path.

    `cache`, if given, keeps what depends on the pings alone between calls (see `PingCache`).
    """
    matcher = Matcher(network, config, ping_cache=cache)
    if pings and exclusions:
        matcher.exclusions[pings[0].vehicle_id] = exclusions
    live = matcher.match_batch(pings, now=nows)
    tips = matcher.best_paths(pings[0].vehicle_id) if pings else []
    path: dict[float, Hypothesis] = {}
    for tip in reversed(tips):
        node: Hypothesis | None = tip
        while node is not None and node.at_s not in path:
            path[node.at_s] = node
            node = node.parent
    _hand_over_late(network, path)
    spans: dict[RunKey, tuple[float, float]] = {}
    for h in path.values():
        if h.waiting or h.misses:
            continue
        key = (h.run, h.day)
        start_s, end_s = spans.get(key, (h.at_s, h.at_s))
        spans[key] = (min(start_s, h.at_s), max(end_s, h.at_s))
    return VehiclePath(
        matches=matcher.relabel(live, pings, list(path.values())),
        score=sum(h.score for h in tips),
        spans=spans,
    )


def _blocks_held(path: VehiclePath, run_block: list[str]) -> list[str]:
    """The blocks of the runs a path uses in service, the longest held first."""
    held: dict[str, float] = defaultdict(float)
    for (run, _day), (start_s, end_s) in path.spans.items():
        if run_block[run]:
            held[run_block[run]] += end_s - start_s
    return sorted(held, key=lambda b: -held[b])


def _hand_over_late(network: Network, path: dict[float, Hypothesis]) -> None:
    """While a bus waits more than `HAND_OVER_S` before its next run departs, answer with the
    run it arrived on (at its end, as a layover), not yet the next one."""
    arrived: Hypothesis | None = None
    for at_s in sorted(path):
        h = path[at_s]
        if not h.waiting:
            arrived = h
        elif (
            arrived is not None
            and h.delay_s < -HAND_OVER_S
            and int(network.runs.next_in_block[arrived.run]) == h.run
        ):
            path[at_s] = Hypothesis(
                run=arrived.run,
                day=arrived.day,
                along_m=arrived.along_m,
                delay_s=arrived.delay_s,
                score=h.score,
                waiting=True,
                at_s=at_s,
            )


def _conflicts(paths: dict[str, VehiclePath]) -> list[tuple[RunKey, str, str]]:
    """Pairs of vehicles on one run at once, the longest overlap first."""
    on_run: dict[RunKey, list[tuple[str, float, float]]] = defaultdict(list)
    for vehicle_id, path in paths.items():
        for key, (start_s, end_s) in path.spans.items():
            on_run[key].append((vehicle_id, start_s, end_s))
    found: list[tuple[float, RunKey, str, str]] = []
    for key, users in on_run.items():
        for a, (v1, s1, e1) in enumerate(users):
            for v2, s2, e2 in users[a + 1 :]:
                overlap_s = min(e1, e2) - max(s1, s2)
                if overlap_s > MIN_CONFLICT_S:
                    found.append((overlap_s, key, v1, v2))
    found.sort(key=lambda f: -f[0])
    return [(key, v1, v2) for _, key, v1, v2 in found]


def _new_conflicts(
    paths: dict[str, VehiclePath], vehicle_id: str, trial: VehiclePath
) -> list[tuple[RunKey, str]]:
    """Runs `trial` puts `vehicle_id` on that another vehicle holds at the time, and where it
    was not before: (run, the other vehicle), the longest overlap first."""
    before = paths[vehicle_id].spans
    found: list[tuple[float, RunKey, str]] = []
    for key, (s1, e1) in trial.spans.items():
        if key in before:
            continue
        for other, path in paths.items():
            span = path.spans.get(key)
            if other == vehicle_id or span is None:
                continue
            overlap_s = min(e1, span[1]) - max(s1, span[0])
            if overlap_s > MIN_CONFLICT_S:
                found.append((overlap_s, key, other))
    found.sort(key=lambda f: -f[0])
    return [(key, other) for _, key, other in found]
