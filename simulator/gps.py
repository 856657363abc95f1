"""GPS as a bus's device reports it: noise, outliers, drop-outs, duplicates and late delivery.

Pure: every function takes a `numpy.random.Generator` and arrays, never the clock or a file.
Positions are metres in a local projected frame (the network's CRS); times are seconds on one
axis (the simulator uses seconds from the service day's origin).

The faults, as a share of the pings a device would send on a regular grid:

* **noise**: Gaussian, σ `noise_m` on each axis (east and north), correlated in time as an AR(1)
  process with time constant `noise_correlation_s` (real fixes wander, they do not jump);
* **outliers**: a ping moved 100–300 m in a random direction (multipath, a cold start);
* **drop-outs**: pings never sent, mostly one at a time, a tenth as multi-minute gaps;
* **duplicates**: a ping sent twice, the copy a fraction of a second after the original;
* **out of order**: a ping delivered late, after the next one to three pings of its vehicle.

Reported speed is the true speed plus noise; the bearing is the true heading plus noise that
grows at low speed, and is often missing while the bus stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

STANDING_MPS = 0.5  # below this a bus counts as standing for its bearing
ACCURACY_PER_SIGMA = 1.51  # the 68 % radius of a 2-D Gaussian, as phones report "accuracy"


@dataclass(frozen=True, slots=True)
class GpsConfig:
    """How a simulated GPS device errs. Rates are shares of the pings on the regular grid."""

    noise_m: float = 8.0
    noise_correlation_s: float = 30.0  # 0: independent errors from one ping to the next
    outlier_rate: float = 0.01
    outlier_m: tuple[float, float] = (100.0, 300.0)
    dropout_rate: float = 0.02
    long_gap_share: float = 0.1  # share of drop-out episodes that are multi-minute gaps
    long_gap_s: tuple[float, float] = (60.0, 300.0)
    duplicate_rate: float = 0.005
    out_of_order_rate: float = 0.005
    late_by_pings: tuple[int, int] = (1, 3)  # a late ping arrives after this many later ones
    jitter_s: float = 0.3  # σ of a fix's time around its slot on the grid
    speed_noise_mps: float = 0.3
    bearing_noise_deg: float = 5.0  # at speed; more when slow
    bearing_missing_rate: float = 0.05  # while moving
    bearing_missing_standing: float = 0.5  # while standing

    def __post_init__(self) -> None:
        rates = {
            "outlier_rate": self.outlier_rate,
            "dropout_rate": self.dropout_rate,
            "long_gap_share": self.long_gap_share,
            "duplicate_rate": self.duplicate_rate,
            "out_of_order_rate": self.out_of_order_rate,
            "bearing_missing_rate": self.bearing_missing_rate,
            "bearing_missing_standing": self.bearing_missing_standing,
        }
        for name, rate in rates.items():
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} is {rate!r}; expected a share from 0 up to (not) 1")
        for name, value in (
            ("noise_m", self.noise_m),
            ("noise_correlation_s", self.noise_correlation_s),
            ("jitter_s", self.jitter_s),
            ("speed_noise_mps", self.speed_noise_mps),
            ("bearing_noise_deg", self.bearing_noise_deg),
        ):
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} is {value!r}; expected a finite number ≥ 0")
        for name, (low, high) in (("outlier_m", self.outlier_m), ("long_gap_s", self.long_gap_s)):
            if not 0.0 <= low <= high:
                raise ValueError(f"{name} is {(low, high)!r}; expected 0 ≤ low ≤ high")
        if not 1 <= self.late_by_pings[0] <= self.late_by_pings[1]:
            raise ValueError(f"late_by_pings is {self.late_by_pings!r}; expected 1 ≤ low ≤ high")

    @property
    def accuracy_m(self) -> float | None:
        """What the device reports as its accuracy (68 % radius), None without noise."""
        return round(self.noise_m * ACCURACY_PER_SIGMA, 1) if self.noise_m > 0 else None


@dataclass(frozen=True, slots=True)
class Track:
    """Where a bus truly is at the slots of its ping grid."""

    t_s: FloatArray
    x_m: FloatArray
    y_m: FloatArray
    speed_mps: FloatArray
    heading_deg: FloatArray  # NaN where unknown


@dataclass(frozen=True, slots=True)
class Observed:
    """The messages a device sends for a `Track`, sorted by `sent_s` (a row per message)."""

    row: IntArray  # index of the fix in the track
    sent_s: FloatArray  # when the message leaves the device (≥ the fix time)
    x_m: FloatArray
    y_m: FloatArray
    speed_mps: FloatArray
    bearing_deg: FloatArray  # NaN: not reported
    outlier: BoolArray
    duplicate: BoolArray  # the second copy of a message
    delayed: BoolArray  # held back to be sent after 1–3 later fixes (if those are sent)

    def __len__(self) -> int:
        return len(self.row)


def grid_times(
    rng: np.random.Generator,
    start_s: float,
    end_s: float,
    *,
    interval_s: float,
    phase_s: float,
    jitter_s: float,
) -> FloatArray:
    """Fix times: the slots `phase_s + k * interval_s` in [start_s, end_s), each jittered by a
    Gaussian of σ `jitter_s` clipped to a quarter interval (so fixes never change order)."""
    first = math.ceil((start_s - phase_s) / interval_s)
    last = math.ceil((end_s - phase_s) / interval_s)  # exclusive
    slots = phase_s + interval_s * np.arange(first, max(first, last), dtype=np.float64)
    limit = interval_s / 4
    jitter = np.clip(rng.normal(0.0, jitter_s, len(slots)), -limit, limit) if jitter_s else 0.0
    return np.asarray(slots + jitter, dtype=np.float64)


def kept_after_dropouts(
    rng: np.random.Generator, n: int, config: GpsConfig, *, interval_s: float
) -> BoolArray:
    """Which of `n` consecutive fixes are sent (True) after drop-out episodes.

    Episodes start at a fix with probability q and last one fix, or (`long_gap_share` of them)
    `long_gap_s`. With m the mean length in fixes, the share of fixes lost is 1 − exp(−q·m);
    q is chosen so that it equals `dropout_rate`.
    """
    kept = np.ones(n, dtype=np.bool_)
    if n == 0 or config.dropout_rate == 0.0:
        return kept
    low, high = config.long_gap_s
    long_fixes = max((low + high) / 2 / interval_s, 1.0)
    mean_fixes = (1 - config.long_gap_share) + config.long_gap_share * long_fixes
    start_probability = -math.log1p(-config.dropout_rate) / mean_fixes
    starts = np.flatnonzero(rng.random(n) < start_probability)
    is_long = rng.random(len(starts)) < config.long_gap_share
    long_len = np.maximum(np.round(rng.uniform(low, high, len(starts)) / interval_s), 1)
    lengths = np.where(is_long, long_len, 1).astype(np.int64)
    for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
        kept[start : start + length] = False
    return kept


def correlated_noise(
    rng: np.random.Generator, n: int, *, sigma_m: float, correlation_s: float, interval_s: float
) -> FloatArray:
    """`n` stationary AR(1) errors of σ `sigma_m`, one per grid slot `interval_s` apart."""
    z = rng.standard_normal(n) * sigma_m
    if n == 0 or sigma_m == 0.0 or correlation_s == 0.0:
        return np.asarray(z, dtype=np.float64)
    rho = math.exp(-interval_s / correlation_s)
    scale = math.sqrt(1.0 - rho * rho)
    out = np.empty(n, dtype=np.float64)
    previous = float(z[0])
    out[0] = previous
    for i, value in enumerate(z[1:].tolist(), start=1):
        previous = rho * previous + scale * value
        out[i] = previous
    return out


def observe(
    rng: np.random.Generator, track: Track, config: GpsConfig, *, interval_s: float
) -> Observed:
    """The messages a device sends for `track` (fixes on a regular grid `interval_s` apart)."""
    n = len(track.t_s)
    noise_x = correlated_noise(
        rng, n, sigma_m=config.noise_m, correlation_s=config.noise_correlation_s,
        interval_s=interval_s,
    )  # fmt: skip
    noise_y = correlated_noise(
        rng, n, sigma_m=config.noise_m, correlation_s=config.noise_correlation_s,
        interval_s=interval_s,
    )  # fmt: skip
    outlier = rng.random(n) < config.outlier_rate
    distance = rng.uniform(*config.outlier_m, n)
    angle = rng.uniform(0.0, 2 * math.pi, n)
    x = track.x_m + noise_x + np.where(outlier, distance * np.sin(angle), 0.0)
    y = track.y_m + noise_y + np.where(outlier, distance * np.cos(angle), 0.0)

    speed = np.maximum(track.speed_mps + rng.normal(0.0, config.speed_noise_mps, n), 0.0)
    standing = track.speed_mps < STANDING_MPS
    bearing_sd = config.bearing_noise_deg * (1.0 + 4.0 / (1.0 + track.speed_mps))
    bearing = (track.heading_deg + rng.standard_normal(n) * bearing_sd) % 360.0
    missing_rate = np.where(standing, config.bearing_missing_standing, config.bearing_missing_rate)
    bearing = np.where(rng.random(n) < missing_rate, np.nan, bearing)

    kept = kept_after_dropouts(rng, n, config, interval_s=interval_s)
    late = rng.random(n) < config.out_of_order_rate
    late_by = rng.integers(config.late_by_pings[0], config.late_by_pings[1] + 1, n)
    sent = track.t_s + np.where(late, (late_by + rng.uniform(0.2, 0.8, n)) * interval_s, 0.0)
    twice = rng.random(n) < config.duplicate_rate
    copy_after = rng.uniform(0.05, 0.5, n) * min(interval_s, 2.0)

    rows = np.flatnonzero(kept)
    copies = rows[twice[rows]]
    row = np.concatenate([rows, copies])
    sent_s = np.concatenate([sent[rows], sent[copies] + copy_after[copies]])
    duplicate = np.concatenate([np.zeros(len(rows), np.bool_), np.ones(len(copies), np.bool_)])
    order = np.lexsort((duplicate, row, sent_s))
    row, sent_s, duplicate = row[order], sent_s[order], duplicate[order]
    return Observed(
        row=row.astype(np.int64),
        sent_s=sent_s,
        x_m=x[row],
        y_m=y[row],
        speed_mps=speed[row],
        bearing_deg=bearing[row],
        outlier=outlier[row],
        duplicate=duplicate,
        delayed=late[row],
    )
