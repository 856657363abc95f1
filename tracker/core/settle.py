"""Answers settled after the fact: each answer revised once the next minutes of pings are known.

A ping is answered the moment it arrives (the live answer). A few minutes later more is known:
the pings after it, and what the other buses did meanwhile, may show that the vehicle was on
another block's trip (`tracker.core.blocks`). `SettleWindow` keeps, for each answered ping of the
last `lag_s` seconds, what it needs to answer it again: where the ping was, the vehicle's own best
hypothesis then and the best hypothesis of each of its likeliest blocks then. Once the ping is
`lag_s` old, it is answered again with the block the vehicle is assigned *now*: the settled
answer, which is final. Only answers that changed are handed back (revisions).

This is fixed-lag smoothing over the block assignment; within one block, following the best path
back (Viterbi) changed nothing measurable on the WMATA day, so it is not done.

Pure: values in, values out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tracker.core.filter import Hypothesis
from tracker.core.model import Reason

BLOCKS_KEPT = 4
"""How many of a vehicle's likeliest blocks each ping remembers (the block it is assigned later
is almost always one of them)."""


@dataclass(frozen=True, slots=True)
class Recent:
    """An answered ping, kept until its answer settles."""

    vehicle_id: str
    timestamp: float
    x: float  # projected metres
    y: float
    answered: Hypothesis  # the hypothesis the live answer was described from
    block: int  # the block the vehicle was assigned then (or NO_BLOCK)
    own: Hypothesis  # the vehicle's own filter's best
    by_block: tuple[tuple[int, Hypothesis], ...]  # the likeliest blocks' best hypotheses
    reason: Reason | None
    detail: str | None

    def settled(self, block: int) -> Hypothesis:
        """The hypothesis this ping is answered with once the vehicle is known to run `block`
        (NO_BLOCK or a block not kept: the vehicle's own filter's)."""
        for kept, hypothesis in self.by_block:
            if kept == block:
                return hypothesis
        return self.own


class SettleWindow:
    """The answered pings of the last `lag_s` seconds, oldest first (see the module)."""

    def __init__(self, lag_s: float) -> None:
        if not lag_s > 0:
            raise ValueError(f"lag_s must be positive, not {lag_s!r}")
        self.lag_s = lag_s
        self._recent: deque[Recent] = deque()

    def __len__(self) -> int:
        return len(self._recent)

    def add(self, recent: Recent) -> None:
        self._recent.append(recent)

    def due(self, now_s: float) -> list[Recent]:
        """The pings more than `lag_s` older than `now_s`, taken out of the window (in arrival
        order: a ping that arrived late waits for the ones before it)."""
        out: list[Recent] = []
        recent = self._recent
        until_s = now_s - self.lag_s
        while recent and recent[0].timestamp < until_s:
            out.append(recent.popleft())
        return out
