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

With hindsight the schedule prior weighs less (`HINDSIGHT_SCHEDULE_WEIGHT`), and a bus waiting at
a terminal long before its next run is reported on the run it arrived on (`HAND_OVER_S`).

Pure, like the matcher: values in, values out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracker.core.matcher import Hypothesis, Matcher, MatcherConfig, PingCache
from tracker.core.model import Match, Ping
from tracker.core.network import Network

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
