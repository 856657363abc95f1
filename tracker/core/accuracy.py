"""How good the live arrival predictions have been: error and range coverage by horizon.

`Accuracy` is fed with each settled prediction (when its stop's event came: `History._settle`)
and keeps, per horizon bucket of `BUCKETS_MIN` (0-5, 5-10, 10-20, 20+ minutes ahead), the last
`window` errors: their mean absolute error, and the share of true arrivals inside the predicted
p10-p90 range (which should be about 80 %). What the operator page and the metrics show.

Pure: values in, values out.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass

BUCKETS_MIN = (0, 5, 10, 20)
"""Lower edges of the horizon buckets, minutes (the last one is open)."""


@dataclass(frozen=True, slots=True)
class BucketScore:
    """One horizon bucket's recent score."""

    from_min: int
    to_min: int | None  # None: open
    predictions: int  # settled predictions in the window
    mae_s: float | None  # mean absolute error, seconds; None with none
    coverage: float | None  # share of true arrivals within [p10, p90]; None with none


class Accuracy:
    """Errors of settled predictions, a bounded window per horizon bucket (see the module)."""

    def __init__(self, window: int = 5000) -> None:
        self.window = window
        self._errors = [deque[tuple[float, bool]](maxlen=window) for _ in BUCKETS_MIN]
        self._abs_sums = [0.0 for _ in BUCKETS_MIN]
        self._covered = [0 for _ in BUCKETS_MIN]
        self.settled = 0

    def add(self, horizon_s: float, error_s: float, covered: bool) -> None:
        """One prediction made `horizon_s` ahead, off by `error_s` (actual - predicted), its
        range holding the truth or not."""
        if not (math.isfinite(horizon_s) and math.isfinite(error_s)):
            return
        k = max(bisect_right(BUCKETS_MIN, horizon_s / 60.0) - 1, 0)
        errors = self._errors[k]
        if len(errors) == errors.maxlen:
            old_error, old_covered = errors[0]
            self._abs_sums[k] -= abs(old_error)
            self._covered[k] -= old_covered
        errors.append((error_s, covered))
        self._abs_sums[k] += abs(error_s)
        self._covered[k] += covered
        self.settled += 1

    def scores(self) -> list[BucketScore]:
        out: list[BucketScore] = []
        for k, from_min in enumerate(BUCKETS_MIN):
            n = len(self._errors[k])
            to_min = BUCKETS_MIN[k + 1] if k + 1 < len(BUCKETS_MIN) else None
            out.append(BucketScore(
                from_min, to_min, n,
                round(self._abs_sums[k] / n, 1) if n else None,
                round(self._covered[k] / n, 4) if n else None,
            ))  # fmt: skip
        return out
