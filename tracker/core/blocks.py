"""Which block each bus runs: a filter per block for each vehicle, and one bus per block.

Agencies run a bus on one *block* (the chain of trips GTFS ties by `block_id`) for the day, and a
block has one bus at a time. A vehicle's own filter (`tracker.core.filter.step`) cannot use this:
a bus running ten minutes late looks exactly like the next block's bus on time, and the delay
prior, added up ping after ping, prefers the on-time explanation. What tells them apart is the
other buses: that block has a bus of its own, on time. So, beside its own filter, each vehicle
keeps a `Tracker` per block it may be running: the same filter step on that block's runs alone,
scored over the day so far. After each round of pings the vehicles are assigned to blocks, one
vehicle per block, so that the sum of their block scores is the greatest (the Hungarian method,
`scipy.optimize.linear_sum_assignment`, per group of vehicles that share blocks). A vehicle's
answer is its assigned block's best hypothesis; without a block (a feed or a trip without
`block_id`, a vehicle left without a block, a block whose filter has lost the vehicle) it is its
own filter's.

Scores are path log-likelihoods, comparable between a vehicle's trackers: they all start at the
vehicle's first ping, and a block first seen later starts at the vehicle's best block score less
`entry_cost` (a bus seldom changes block). A ping a block's filter cannot explain costs
`unexplained_cost`; so does each ping of a vehicle on no block at all. Trackers far below the
vehicle's best are dropped for good (`prune_margin`); a vehicle silent for `fresh_s` holds no
block, so a bus that took over a block from one that stopped reporting gets it.

Pure: values in, values out. Figures (WMATA day, ids hidden) in docs/matching.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from tracker.core.candidates import Candidate
from tracker.core.filter import Exclusions, Hypothesis, step
from tracker.core.model import Ping
from tracker.core.tables import BlockConfig, RunTables

NO_BLOCK = -1
_IMPOSSIBLE = -1e12  # the score of a (vehicle, block) pair the vehicle has no tracker for


@dataclass(slots=True)
class Tracker:
    """A vehicle's filter restricted to one block's runs."""

    offset: float  # the score before `hypotheses` started (they restart after losing the bus)
    hypotheses: tuple[Hypothesis, ...] = ()
    score: float = 0.0  # offset + the best hypothesis' score: the block's path score

    def moved(self, hypotheses: tuple[Hypothesis, ...], unexplained: float) -> None:
        """The block's filter after one more ping: `hypotheses`, or none (the ping is
        unexplained, and the filter starts afresh when the block's runs are near again)."""
        if hypotheses:
            self.hypotheses = hypotheses
            self.score = self.offset + hypotheses[0].score
        else:
            self.offset = self.score = self.score + unexplained
            self.hypotheses = ()


@dataclass(slots=True)
class VehicleBlocks:
    """One vehicle's trackers and the block it was last assigned."""

    trackers: dict[int, Tracker] = field(default_factory=dict)
    pings: int = 0  # pings stepped since the trackers started
    last_s: float = -math.inf  # timestamp of the latest
    block: int = NO_BLOCK  # the block assigned, or NO_BLOCK
    pinned: int = NO_BLOCK  # the block of the vehicle's believed trip_id, or NO_BLOCK
    dropped: set[int] = field(default_factory=set)  # blocks pruned: never tracked again
    best: float = -math.inf  # the best tracker's score
    best_block: int = NO_BLOCK  # and its block
    block_since_s: float = -math.inf  # when `block` was last assigned another block

    def assigned(self, block: int, now_s: float) -> None:
        if block != self.block:
            self.block = block
            self.block_since_s = now_s


class Fleet:
    """Every vehicle's block trackers and the assignment of vehicles to blocks."""

    def __init__(self, tables: RunTables, config: BlockConfig) -> None:
        self.tables = tables
        self.config = config
        self.vehicles: dict[str, VehicleBlocks] = {}
        self._holders: dict[int, set[str]] = {}  # block -> vehicles tracking or pinned to it
        self.assignments_solved = 0  # groups that needed the Hungarian method (for benchmarks)

    @property
    def enabled(self) -> bool:
        """Whether the network has blocks at all (if not, nothing here does anything)."""
        return bool(self.tables.block_ids)

    def forget(self, vehicle_id: str) -> None:
        """The vehicle starts afresh (silent too long): its trackers and block go."""
        vb = self.vehicles.pop(vehicle_id, None)
        if vb is not None:
            for block in [*vb.trackers, vb.pinned]:
                self._unhold(block, vehicle_id)

    def pin(self, vehicle_id: str, block: int, at_s: float) -> None:
        """The vehicle's own trip_id is believed: it holds that trip's block (if any)."""
        vb = self.vehicles.get(vehicle_id)
        if vb is None:
            if block == NO_BLOCK:
                return
            vb = self.vehicles[vehicle_id] = VehicleBlocks()
        if vb.trackers:
            for tracked in vb.trackers:
                self._unhold(tracked, vehicle_id)
            vb.trackers.clear()
        if vb.pinned != block:
            self._unhold(vb.pinned, vehicle_id)
            if block != NO_BLOCK:
                self._holders.setdefault(block, set()).add(vehicle_id)
        vb.pinned = block
        vb.assigned(block, at_s)
        vb.last_s = at_s

    def step(
        self,
        ping: Ping,
        x: float,
        y: float,
        candidates: tuple[Candidate, ...],
        dt_s: float,
        excluded: Exclusions | None,
    ) -> None:
        """Move every tracker of the ping's vehicle on by this ping (see the module)."""
        cfg = self.config
        vehicle_id = ping.vehicle_id
        by_block: dict[int, list[Candidate]] = {}
        for c in candidates:
            if c[7] != NO_BLOCK:
                by_block.setdefault(c[7], []).append(c)
        vb = self.vehicles.get(vehicle_id)
        if vb is None:
            if not by_block:
                return
            vb = self.vehicles[vehicle_id] = VehicleBlocks()
        if vb.pinned != NO_BLOCK:
            self._unhold(vb.pinned, vehicle_id)
            vb.pinned = NO_BLOCK
        vb.pings += 1
        vb.last_s = ping.timestamp
        t = self.tables
        trackers = vb.trackers
        start = 0.0 if not trackers else vb.best - cfg.entry_cost
        unexplained = cfg.unexplained_cost
        for block, tracker in trackers.items():
            found = by_block.pop(block, None)
            previous = tracker.hypotheses
            if found is None and not previous:  # still not on this block
                tracker.moved((), unexplained)
            else:
                tracker.moved(step(t, ping, x, y, found or (), previous,
                                   dt_s if previous else 0.0, excluded), unexplained)  # fmt: skip
        for block, found in by_block.items():
            if block not in vb.dropped:
                tracker = trackers[block] = Tracker(start, score=start)
                tracker.moved(step(t, ping, x, y, found, (), 0.0, excluded), unexplained)
                self._holders.setdefault(block, set()).add(vehicle_id)
        if not trackers:  # every block here was dropped
            vb.best, vb.best_block = -math.inf, NO_BLOCK
            return
        vb.best_block = max(trackers, key=lambda b: trackers[b].score)
        vb.best = trackers[vb.best_block].score
        # A block pruned is not tracked again (were it, it would start afresh near the best).
        floor = vb.best - cfg.prune_margin
        for block in [b for b, tr in trackers.items() if tr.score < floor]:
            del trackers[block]
            vb.dropped.add(block)
            self._unhold(block, vehicle_id)

    def assign(self, vehicle_ids: Iterable[str], now_s: float) -> None:
        """Assign blocks to `vehicle_ids` and every vehicle that shares a block with them."""
        fresh_from = now_s - self.config.fresh_s
        done: set[str] = set()
        for vehicle_id in vehicle_ids:
            if vehicle_id in done or vehicle_id not in self.vehicles:
                continue
            group = self._group(vehicle_id, fresh_from)
            done.update(group)
            self._solve(group, now_s)

    def answer(self, vehicle_id: str) -> Hypothesis | None:
        """The best hypothesis of the vehicle's assigned block, or None (no block, or its
        filter has lost the vehicle)."""
        vb = self.vehicles.get(vehicle_id)
        if vb is None or vb.block == NO_BLOCK or vb.pinned != NO_BLOCK:
            return None
        tracker = vb.trackers.get(vb.block)
        return tracker.hypotheses[0] if tracker is not None and tracker.hypotheses else None

    def best_by_block(self, vehicle_id: str, limit: int) -> tuple[tuple[int, Hypothesis], ...]:
        """The best hypothesis of the vehicle's `limit` best-scored blocks (those it may be
        assigned later, for answers settled after the fact)."""
        vb = self.vehicles.get(vehicle_id)
        if vb is None:
            return ()
        live = [(tr.score, block, tr.hypotheses[0])
                for block, tr in vb.trackers.items() if tr.hypotheses]  # fmt: skip
        live.sort(key=lambda item: -item[0])
        return tuple((block, h) for _, block, h in live[:limit])

    def block_of(self, vehicle_id: str) -> tuple[int, float]:
        """The vehicle's assigned block (or NO_BLOCK) and since when it has been assigned it."""
        vb = self.vehicles.get(vehicle_id)
        return (NO_BLOCK, -math.inf) if vb is None else (vb.block, vb.block_since_s)

    # --- internals ---------------------------------------------------------------------------

    def _unhold(self, block: int, vehicle_id: str) -> None:
        holders = self._holders.get(block)
        if holders is not None:
            holders.discard(vehicle_id)
            if not holders:
                del self._holders[block]

    def _group(self, vehicle_id: str, fresh_from: float) -> list[str]:
        """The vehicles connected to `vehicle_id` by blocks they track or are pinned to, among
        those heard from since `fresh_from`."""
        group = {vehicle_id}
        todo = [vehicle_id]
        while todo:
            vb = self.vehicles[todo.pop()]
            blocks = [vb.pinned] if vb.pinned != NO_BLOCK else vb.trackers
            for block in blocks:
                for other in self._holders.get(block, ()):
                    if other not in group and self.vehicles[other].last_s >= fresh_from:
                        group.add(other)
                        todo.append(other)
        return sorted(group)

    def _solve(self, group: list[str], now_s: float) -> None:
        """Assign the group's vehicles to blocks, one vehicle per block, greatest total score."""
        rows = [self.vehicles[v] for v in group]
        # Each vehicle's best block; if no two share one, that is the assignment.
        best = [vb.pinned if vb.pinned != NO_BLOCK else vb.best_block for vb in rows]
        chosen = [b for b in best if b != NO_BLOCK]
        if len(set(chosen)) == len(chosen):
            for vb, block in zip(rows, best, strict=True):
                vb.assigned(block, now_s)
            return
        self.assignments_solved += 1
        blocks = sorted({b for vb in rows for b in ([vb.pinned] if vb.pinned != NO_BLOCK
                                                    else vb.trackers)})  # fmt: skip
        column = {b: i for i, b in enumerate(blocks)}
        n = len(rows)
        # Columns: the blocks, then one "no block" column per vehicle (its own).
        scores = np.full((n, len(blocks) + n), _IMPOSSIBLE)
        unexplained = self.config.unexplained_cost
        for r, vb in enumerate(rows):
            if vb.pinned != NO_BLOCK:
                scores[r, column[vb.pinned]] = 0.0
                continue
            top = vb.best
            for block, tracker in vb.trackers.items():
                scores[r, column[block]] = tracker.score - top

            scores[r, len(blocks) + r] = unexplained * vb.pings - top
        row_of, col_of = linear_sum_assignment(scores, maximize=True)
        for r, c in zip(row_of.tolist(), col_of.tolist(), strict=True):
            vb = rows[r]
            if vb.pinned == NO_BLOCK:
                vb.assigned(blocks[c] if c < len(blocks) else NO_BLOCK, now_s)
