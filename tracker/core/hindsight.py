"""Hindsight for recorded pings: each vehicle's best path, and no two vehicles on one trip.

Live, the matcher answers each ping as it arrives, from what came before (a filter). Over a
recorded day what came after is known too, so `match_recorded` answers with hindsight:

1. Each vehicle's pings are matched in order with `keep_paths`, so every hypothesis links to
   the one it came from. Following the links back from the best final hypothesis gives the best
   explanation of the whole path (Viterbi backtracking): the first pings of a trip, answered
   with the wrong run live, are corrected once the rest of the trip shows which run it was.
2. Several devices may report one bus (two GPS units, a driver's phone beside the bus's own
   unit, an agency feed and a phone). Vehicles once near each other on a trip (in one square of
   `MEET_CELL_M` within `MEET_BIN_S`) are compared fix by fix: if, over all the time both
   report, nearly every fix of each lies within `TOGETHER_M` of where the other was then, they
   are one bus. Steps 3 and 4 settle the day for one device of each bus (the one with most
   pings, its *lead*), and every other device takes its lead's runs: it keeps its own path if
   that is on no run the lead was not on and the lead gave up no run, and is otherwise matched
   again kept to the lead's runs. So each device of a bus gets that bus's trips, and a bus
   reported by ten devices costs steps 3 and 4 no more than a bus reported by one.
3. A trip is run by one vehicle. Where two vehicles' paths use the same run at the same time
   (a bus 12 minutes late on its own block looks exactly like another block's bus on time),
   one of them must give the run up. Giving it up may put that vehicle on a third vehicle's
   run, which must then give that up, and so on: for each of the two, the chain of moves is
   worked out (each vehicle matched again without the run it gives up, for that time; at most
   `MAX_CHAIN` more vehicles), and the chain that loses less path score is applied. A few
   rounds settle the day.
4. A bus keeps to its block. Where a path still changes block mid-day (a late bus taking the
   runs of a block whose own bus stopped reporting, which no conflict shows; or two buses that
   swapped blocks where their schedules are minutes apart), the vehicle is matched again on one
   of its blocks alone (and the vehicle whose run that takes, on its other block), the cheapest
   way if it costs at most `BLOCK_CHANGE_COST` per bus.

Steps 3 and 4 re-match at most `REMATCHES_PER_BUS` times per bus in all; a day that needs more
(many vehicles claiming the same trips that step 2 does not see as one bus) keeps the conflicts
left when the budget runs out, so matching a day stays within a few times its first pass.

With hindsight the schedule prior weighs less (`HINDSIGHT_SCHEDULE_WEIGHT`), and a bus waiting at
a terminal long before its next run is reported on the run it arrived on (`HAND_OVER_S`).

Pure, like the matcher: values in, values out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from tracker.core.candidates import PingCache
from tracker.core.filter import Hypothesis
from tracker.core.matcher import Matcher
from tracker.core.model import Match, Ping, State
from tracker.core.network import FloatArray, Network
from tracker.core.tables import MatcherConfig

RunKey = tuple[int, dt.date]  # (run, service day)
Exclusions = dict[RunKey, list[tuple[float, float]]]
Track = tuple[FloatArray, FloatArray, FloatArray]  # a device's fix times (s) and positions (m)

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
# Two devices are on one bus if, over all the time both report, at least `TOGETHER_SHARE` of
# their fixes (at least `TOGETHER_MIN_FIXES`) lie within `TOGETHER_M` of where the other was at
# that time (interpolated between its fixes, where they are at most `TOGETHER_GAP_S` apart).
# Copies of the WMATA day with GPS noise of their own (sigma 20 m, 2 % outliers) are within
# 100 m at 94-96 % of their fixes; of the 222 pairs of distinct WMATA buses compared, the
# closest (bunched on one street for an hour) are within 100 m at 33 %, the next at 19 %.
TOGETHER_M = 100.0
TOGETHER_SHARE = 0.8
TOGETHER_MIN_FIXES = 10
TOGETHER_GAP_S = 90.0  # WMATA reports every 30 s (99 % of the gaps are 60 s or less)
# Which vehicles are compared so: those once in one square of `MEET_CELL_M` in one stretch of
# `MEET_BIN_S` while on a trip (devices 100 m apart share most of them, distinct buses seldom).
MEET_CELL_M = 500.0
MEET_BIN_S = 300.0
# Re-matches the conflict rounds and the one-block step may spend, in all, per bus (lead
# device). The WMATA day needs 0.6 per bus (19 for 31 buses; noisy pings 1.0, 30), so this
# leaves the single day untouched, and what the rounds add to a day of many vehicles claiming
# the same trips stays under 1.5 times its first pass (a re-match, reading its cached
# candidates, costs about 0.45 of a vehicle's first pass).
REMATCHES_PER_BUS = 3


@dataclass(frozen=True, slots=True)
class VehiclePath:
    """One vehicle's answers in hindsight, with what the conflict check needs."""

    matches: list[Match]
    score: float  # log-likelihood of the best path (sum over its separate stretches)
    spans: dict[RunKey, tuple[float, float]]  # first and last ping time on each run, in service
    # First and last ping time on each run, waiting for it and off route included (before the
    # hand-over: a bus waiting for a run is on it here).
    held: dict[RunKey, tuple[float, float]]


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
    pass (the steps after it are short: see `REMATCHES_PER_BUS`).
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

    # Devices on one bus: the steps below settle the day for each bus's lead device alone.
    lead_of = _leads(network, pings, by_vehicle, paths)
    followed = {vehicle_id: paths.pop(vehicle_id) for vehicle_id in lead_of}
    exclusions: dict[str, Exclusions] = defaultdict(dict)
    budget = REMATCHES_PER_BUS * len(paths)

    def rematch_in_budget(vehicle_id: str, excluded: Exclusions) -> VehiclePath | None:
        """`rematch`, or None once the conflict rounds and the one-block step have spent
        their `REMATCHES_PER_BUS` re-matches per bus."""
        nonlocal budget
        if budget <= 0:
            return None
        budget -= 1
        return rematch(vehicle_id, excluded)

    def give_up(
        current: dict[str, VehiclePath], vehicle_id: str, key: RunKey, depth: int
    ) -> tuple[float, dict[str, tuple[VehiclePath, Exclusions]]] | None:
        """`vehicle_id` gives up run `key`; if that puts it on another vehicle's run, that
        vehicle gives its run up in turn (at most `depth` more times). The total loss of path
        score and the new paths, or None if the chain does not end within `depth` (or the
        budget of re-matches runs out)."""
        start_s, end_s = current[vehicle_id].spans[key]
        excluded = {k: list(spans) for k, spans in exclusions[vehicle_id].items()}
        excluded.setdefault(key, []).append(
            (start_s - EXCLUSION_MARGIN_S, end_s + EXCLUSION_MARGIN_S)
        )
        trial = rematch_in_budget(vehicle_id, excluded)
        if trial is None:
            return None
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
        if not settled or budget <= 0:
            break

    # One block per vehicle: a bus seen leaving its block for another mid-day (a late bus
    # taking the runs of a block whose own bus stopped reporting, or two buses swapping blocks
    # where their schedules are a few minutes apart) is kept to one of its blocks.
    run_block = [network.trips[t].block_id for t in network.runs.trip_idx.tolist()]

    def offered(vehicle_id: str) -> set[RunKey]:
        """The runs this vehicle's pings could be on (a small part of a large feed)."""
        return {
            (c[0], c[1])
            for _, candidates in caches[vehicle_id].values()
            if candidates is not None
            for c in candidates
        }

    def keep_to(
        current: dict[str, VehiclePath], vehicle_id: str, block: str
    ) -> tuple[VehiclePath, Exclusions] | None:
        """`vehicle_id` matched again with no run but those of `block`: all day, or if that
        leaves pings unmatched that were matched (a bus first seen far off its block's
        schedule), after the first run it is seen on. None if both leave pings unmatched (or
        the budget of re-matches runs out)."""
        path = current[vehicle_id]
        matched = sum(m.trip_id is not None for m in path.matches)
        first_end_s = min(path.spans.values())[1] if path.spans else -math.inf
        runs = offered(vehicle_id)
        for from_s in (-math.inf, first_end_s + EXCLUSION_MARGIN_S):
            # The block's own runs are offered again: the conflicts that took them are decided
            # anew here.
            excluded = {
                k: list(spans)
                for k, spans in exclusions[vehicle_id].items()
                if run_block[k[0]] != block
            }
            for key in runs:
                if run_block[key[0]] != block:
                    excluded.setdefault(key, []).append((from_s, math.inf))
            trial = rematch_in_budget(vehicle_id, excluded)
            if trial is None:
                return None
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

    for vehicle_id in list(paths):
        if len(_blocks_held(paths[vehicle_id], run_block)) > 1:
            for moved, (trial, excluded) in one_block(vehicle_id)[1].items():
                paths[moved] = trial
                exclusions[moved] = excluded

    # The other devices of each bus take the runs settled for its lead: one re-match each,
    # kept to the lead's runs, where the lead gave runs up or the device took others.
    for vehicle_id, own in followed.items():
        lead = lead_of[vehicle_id]
        if exclusions[lead] or not _agrees(own, paths[lead]):
            excluded = _kept_to_lead(paths[lead], exclusions[lead], offered(vehicle_id))
            paths[vehicle_id] = rematch(vehicle_id, excluded)
        else:
            paths[vehicle_id] = own

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
    held = _spans(path.values())
    _hand_over_late(network, path)
    return VehiclePath(
        matches=matcher.relabel(live, pings, list(path.values())),
        score=sum(h.score for h in tips),
        spans=_spans(h for h in path.values() if not (h.waiting or h.misses)),
        held=held,
    )


def _spans(path: Iterable[Hypothesis]) -> dict[RunKey, tuple[float, float]]:
    """The first and last time of each run in `path`."""
    spans: dict[RunKey, tuple[float, float]] = {}
    for h in path:
        key = (h.run, h.day)
        start_s, end_s = spans.get(key, (h.at_s, h.at_s))
        spans[key] = (min(start_s, h.at_s), max(end_s, h.at_s))
    return spans


def _leads(
    network: Network,
    pings: Sequence[Ping],
    by_vehicle: dict[str, list[int]],
    paths: dict[str, VehiclePath],
) -> dict[str, str]:
    """Devices on one bus: each vehicle that follows another's lead, with that lead (the one of
    its bus with most pings, the first seen of those). Two vehicles are compared (`_one_bus`)
    if, on a trip, they were once in one `MEET_CELL_M` square in one `MEET_BIN_S` of time (two
    buses found apart once are not compared again); devices on one bus with a third are one bus
    with it too."""
    # The fixes the matcher took (a rejected one may be far off or out of order), and whether
    # it put them on a trip.
    taken = np.zeros(len(pings), dtype=bool)
    on_trip = np.zeros(len(pings), dtype=bool)
    for vehicle_id, idx in by_vehicle.items():
        for i, m in zip(idx, paths[vehicle_id].matches, strict=True):
            taken[i] = m.state is not State.REJECTED
            on_trip[i] = m.trip_id is not None
    lat = np.array([p.lat for p in pings])
    lon = np.array([p.lon for p in pings])
    t_all = np.array([p.timestamp for p in pings])
    x_all, y_all = np.full(len(pings), np.nan), np.full(len(pings), np.nan)
    x_all[taken], y_all[taken] = network.project(lat[taken], lon[taken])
    cells = np.stack([t_all // MEET_BIN_S, x_all // MEET_CELL_M, y_all // MEET_CELL_M], axis=1)

    tracks: dict[str, Track] = {}
    met: dict[tuple[int, int, int], list[str]] = defaultdict(list)
    for vehicle_id, idx in by_vehicle.items():
        rows = np.array(idx)
        rows = rows[taken[rows]]
        tracks[vehicle_id] = (t_all[rows], x_all[rows], y_all[rows])
        rows = rows[on_trip[rows]]
        for cell in dict.fromkeys(map(tuple, cells[rows].astype(np.int64).tolist())):
            met[cell].append(vehicle_id)

    bus: dict[str, str] = {}  # union-find: a vehicle's parent, up to its bus's root

    def root(vehicle_id: str) -> str:
        while vehicle_id in bus:
            vehicle_id = bus[vehicle_id]
        return vehicle_id

    apart: set[tuple[str, str]] = set()  # buses (roots) found not to be one
    for vehicles in met.values():
        firsts: list[str] = []  # the first vehicle of each bus in this cell
        for vehicle_id in vehicles:
            mine = root(vehicle_id)
            for other in firsts:
                theirs = root(other)
                if theirs == mine or (theirs, mine) in apart:
                    continue
                if _one_bus(tracks[other], tracks[vehicle_id]):
                    bus[mine] = theirs
                    mine = theirs
                else:
                    apart.update(((theirs, mine), (mine, theirs)))
            if all(root(other) != mine for other in firsts):
                firsts.append(vehicle_id)
    if not bus:
        return {}
    devices: dict[str, list[str]] = defaultdict(list)
    for vehicle_id in by_vehicle:  # first seen first
        devices[root(vehicle_id)].append(vehicle_id)
    lead_of: dict[str, str] = {}
    for members in devices.values():
        lead = max(members, key=lambda v: len(by_vehicle[v]))  # the first of the longest
        lead_of.update((v, lead) for v in members if v != lead)
    return lead_of


def _one_bus(a: Track, b: Track) -> bool:
    """Whether two devices' fixes (time-ordered) say they are on one bus: see `TOGETHER_M`."""
    close_ab, compared_ab = _close_fixes(a, b)
    close_ba, compared_ba = _close_fixes(b, a)
    compared = compared_ab + compared_ba
    return compared >= TOGETHER_MIN_FIXES and close_ab + close_ba >= TOGETHER_SHARE * compared


def _close_fixes(a: Track, b: Track) -> tuple[int, int]:
    """How many of `a`'s fixes lie within `TOGETHER_M` of where `b` was at that time, of how
    many could be compared: those within `b`'s time, between two of its fixes at most
    `TOGETHER_GAP_S` apart (its position there interpolated)."""
    ta, xa, ya = a
    tb, xb, yb = b
    if len(tb) == 0:
        return 0, 0
    after = np.searchsorted(tb, ta, side="right")  # tb[after - 1] <= ta < tb[after]
    before_i = np.clip(after - 1, 0, len(tb) - 1)
    after_i = np.clip(after, 0, len(tb) - 1)
    compared = (ta >= tb[0]) & (ta <= tb[-1]) & (tb[after_i] - tb[before_i] <= TOGETHER_GAP_S)
    t = ta[compared]
    distance_m = np.hypot(np.interp(t, tb, xb) - xa[compared], np.interp(t, tb, yb) - ya[compared])
    return int(np.count_nonzero(distance_m <= TOGETHER_M)), len(t)


def _agrees(device: VehiclePath, lead: VehiclePath) -> bool:
    """Whether `device` is on no run, for more than `MIN_CONFLICT_S`, where its `lead` is not."""
    for key, (start_s, end_s) in device.spans.items():
        held = lead.held.get(key)
        overlap_s = 0.0
        if held is not None:
            overlap_s = max(
                0.0,
                min(end_s, held[1] + EXCLUSION_MARGIN_S)
                - max(start_s, held[0] - EXCLUSION_MARGIN_S),
            )
        if end_s - start_s - overlap_s > MIN_CONFLICT_S:
            return False
    return True


def _kept_to_lead(lead: VehiclePath, excluded: Exclusions, runs: set[RunKey]) -> Exclusions:
    """Exclusions that keep a device to its `lead`'s runs: the lead's own, and each of `runs`
    while the lead reports but is not on it (`EXCLUSION_MARGIN_S` either side). Where the lead
    is silent for more than `TOGETHER_GAP_S`, the device is free."""
    times = [m.timestamp for m in lead.matches if m.state is not State.REJECTED]
    reporting: list[tuple[float, float]] = []
    for t in times:
        if reporting and t - reporting[-1][1] <= TOGETHER_GAP_S:
            reporting[-1] = (reporting[-1][0], t)
        else:
            reporting.append((t, t))
    out = {key: list(spans) for key, spans in excluded.items()}
    for key in runs:
        held = lead.held.get(key)
        if held is None:
            pieces = reporting
        else:
            on_s, off_s = held[0] - EXCLUSION_MARGIN_S, held[1] + EXCLUSION_MARGIN_S
            pieces = [(t0, min(t1, on_s)) for t0, t1 in reporting]
            pieces += [(max(t0, off_s), t1) for t0, t1 in reporting]
        kept = [(t0, t1) for t0, t1 in pieces if t0 <= t1]
        if kept:
            out.setdefault(key, []).extend(kept)
    return out


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
