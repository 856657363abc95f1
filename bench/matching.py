"""Benchmark of the matching engine on a real day of WMATA bus positions.

    python -m bench.matching [--data ../shared/data/wmata-bus-2026-02-16] [--chunk 500]

Runs the matcher on the agency's pings with trip and route ids hidden, on the clean positions and
on positions with GPS noise (Gaussian sigma 20 m, plus 2 % outliers displaced 100-300 m), and with
trip ids given; prints trip and route accuracy, delay error, throughput, load times and memory.
Each is measured twice: *live* (each ping answered from the pings before it, as the live service
does) and *hindsight* (the whole day known, as `tracker match` does by default). The live modes
run `--repeat` times (3) with a new matcher each time: the answers must be the same, and the
throughput printed is the best run's (CPU time; other work on a shared machine only slows a run
down), with the slowest beside it. Live answers are also *settled* after 30, 60 and 120 s
(`tracker match --live --lag-s N`: pings replayed in 5-second batches, each answered as known N
seconds after it): their accuracy, and the share of pings whose answer changed after it was
first given.

Accuracy counts *in-service* pings: those whose clean position lies within 50 m of the true trip's
shape, leaving out each vehicle's first 2 pings on a new trip (the agency's trip_id is the truth).
The delay error compares against the delay computed with the true trip on the clean pings.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tracker.core.hindsight import match_recorded
from tracker.core.matcher import Matcher, MatcherConfig
from tracker.core.model import Match, Ping, State
from tracker.core.network import Network
from tracker.gtfs.load import build_network, load_network
from tracker.offline import replay_live
from tracker.pings_io import BadRow, read_pings

LAGS_S = (0.0, 30.0, 60.0, 120.0)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "wmata-bus-2026-02-16"


def add_noise(
    network: Network, pings: Sequence[Ping], *, sigma_m: float, outlier_share: float, seed: int
) -> list[Ping]:
    """Gaussian GPS noise plus a share of outliers displaced 100-300 m in a random direction."""
    rng = np.random.default_rng(seed)
    lat = np.array([p.lat for p in pings])
    lon = np.array([p.lon for p in pings])
    x, y = network.project(lat, lon)
    x = x + rng.normal(0, sigma_m, len(x))
    y = y + rng.normal(0, sigma_m, len(y))
    outlier = rng.random(len(x)) < outlier_share
    dist = rng.uniform(100, 300, len(x))
    angle = rng.uniform(0, 2 * np.pi, len(x))
    x = np.where(outlier, x + dist * np.cos(angle), x)
    y = np.where(outlier, y + dist * np.sin(angle), y)
    nlat, nlon = network.unproject(x, y)
    return [
        dataclasses.replace(p, lat=float(a), lon=float(o))
        for p, a, o in zip(pings, nlat, nlon, strict=True)
    ]


def hide_ids(pings: Sequence[Ping]) -> list[Ping]:
    return [dataclasses.replace(p, trip_id=None, route_id=None) for p in pings]


@dataclasses.dataclass(frozen=True)
class Timed:
    """Answers, and the CPU seconds of each of `repeat` runs that gave them."""

    matches: list[Match]
    cpu_s: list[float]

    def throughput(self) -> str:
        n = len(self.matches)
        best = f"{n / min(self.cpu_s):,.0f} pings/s"
        if len(self.cpu_s) == 1:
            return best
        return f"{best} (best of {len(self.cpu_s)}; slowest {n / max(self.cpu_s):,.0f})"


def run(network: Network, pings: Sequence[Ping], chunk: int, repeat: int = 1) -> Timed:
    """Match all pings in chunks (as the live service does per micro-batch), `repeat` times
    with a new matcher each time (the answers must not change); CPU time of each run."""
    now = max(p.timestamp for p in pings) + 60
    first: list[Match] | None = None
    cpu_s: list[float] = []
    for _ in range(repeat):
        matcher = Matcher(network)
        out: list[Match] = []
        start = time.process_time()
        for i in range(0, len(pings), chunk):
            out.extend(matcher.match_batch(pings[i : i + chunk], now=now))
        cpu_s.append(time.process_time() - start)
        if first is None:
            first = out
        elif out != first:
            raise AssertionError("the matcher gave other answers on a second run")
    assert first is not None
    return Timed(first, cpu_s)


def run_settled(network: Network, pings: Sequence[Ping], lag_s: float) -> list[Match]:
    """The answers as known `lag_s` seconds after each ping (0: the live answers), replayed as
    the live service receives them (`tracker.offline.replay_live`)."""
    matcher = Matcher(network, MatcherConfig(settle_lag_s=lag_s))
    out = [m for _, m in replay_live(matcher, pings)]
    assert all(a.timestamp == p.timestamp for a, p in zip(out, pings, strict=True))
    return out


def changed_share(first: Sequence[Match], settled: Sequence[Match]) -> float:
    """The share of answers whose state, trip or service day changed once settled."""
    changed = sum(
        (a.state, a.trip_id, a.service_date) != (b.state, b.trip_id, b.service_date)
        for a, b in zip(first, settled, strict=True)
    )
    return changed / len(first)


def run_hindsight(network: Network, pings: Sequence[Ping]) -> Timed:
    """Match all pings with hindsight (`tracker match`), once."""
    now = max(p.timestamp for p in pings) + 60
    start = time.process_time()
    out = match_recorded(network, pings, [now] * len(pings))
    return Timed(out, [time.process_time() - start])


def evaluation_mask(network: Network, pings: Sequence[Ping]) -> np.ndarray:
    """In-service pings: clean position within 50 m of the true trip's shape, not among the
    vehicle's first 2 pings on a new trip."""
    lat = np.array([p.lat for p in pings])
    lon = np.array([p.lon for p in pings])
    x, y = network.project(lat, lon)
    mask = np.zeros(len(pings), dtype=bool)
    seen: dict[str, tuple[str | None, int]] = {}
    for i, p in enumerate(pings):
        trip, count = seen.get(p.vehicle_id, (None, 0))
        count = count + 1 if trip == p.trip_id else 1
        seen[p.vehicle_id] = (p.trip_id, count)
        trip_idx = network.trip_index.get(p.trip_id or "")
        if trip_idx is None or count <= 2:
            continue
        _, offset = network.locate_on_shape(network.trips[trip_idx].shape_idx, x[i], y[i])
        mask[i] = offset <= 50.0
    return mask


def accuracy(
    truth: Sequence[Ping], matches: Sequence[Match], mask: np.ndarray
) -> tuple[float, float]:
    idx = np.flatnonzero(mask).tolist()
    trip_ok = sum(matches[i].trip_id == truth[i].trip_id for i in idx)
    route_ok = sum(matches[i].route_id == truth[i].route_id for i in idx)
    return trip_ok / len(idx), route_ok / len(idx)


def delay_errors(
    reference: Sequence[Match], matches: Sequence[Match], mask: np.ndarray
) -> tuple[float, float, int]:
    errors = [
        abs(m.delay_s - r.delay_s)
        for i in np.flatnonzero(mask).tolist()
        for m, r in [(matches[i], reference[i])]
        if m.delay_s is not None and r.delay_s is not None
    ]
    arr = np.array(errors)
    return float(np.median(arr)), float(np.percentile(arr, 95)), len(arr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--chunk", type=int, default=500, help="pings per match_batch call")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each live mode; its throughput is the best of them (this machine is shared)",
    )
    args = parser.parse_args(argv)
    feed = args.data / "gtfs.zip"
    if not feed.exists():
        print(f"no feed at {feed}; pass --data FOLDER with gtfs.zip and vehicle_positions.csv")
        return 2

    start = time.perf_counter()
    network = build_network(feed)
    cold_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        load_network(feed, cache_dir=Path(cache))  # fills the cache
        start = time.perf_counter()
        network = load_network(feed, cache_dir=Path(cache))
        warm_s = time.perf_counter() - start

    truth = [
        p for p in read_pings(args.data / "vehicle_positions.csv") if not isinstance(p, BadRow)
    ]
    mask = evaluation_mask(network, truth)
    noisy = add_noise(network, truth, sigma_m=20.0, outlier_share=0.02, seed=args.seed)

    given = run(network, truth, args.chunk, args.repeat)
    reference = given.matches
    results: dict[str, Timed] = {}
    settled: dict[str, dict[float, list[Match]]] = {}
    for name, pings in (("clean", truth), ("noisy", noisy)):
        hidden = hide_ids(pings)
        results[f"{name} live"] = run(network, hidden, args.chunk, args.repeat)
        results[f"{name} hindsight"] = run_hindsight(network, hidden)
        settled[name] = {lag: run_settled(network, hidden, lag) for lag in LAGS_S}
    given_noisy = run(network, noisy, args.chunk, args.repeat)

    print(f"feed: {feed}  pings: {len(truth)}  evaluated (in service): {int(mask.sum())}")
    print(f"network load: cold {cold_s:.2f} s, warm {warm_s * 1000:.0f} ms")
    for name, timed in results.items():
        matches = timed.matches
        trip_acc, route_acc = accuracy(truth, matches, mask)
        med, p95, n = delay_errors(reference, matches, mask)
        states = {s.value: sum(m.state == s for m in matches) for s in State}
        print(
            f"{name:15s} ids hidden: trip accuracy {trip_acc:.2%}  route accuracy "
            f"{route_acc:.2%}  delay error median {med:.0f} s, p95 {p95:.0f} s (n={n})  "
            f"throughput {timed.throughput()}"
        )
        print(f"      states: {states}")
    for name, by_lag in settled.items():
        figures = "  ".join(
            f"{lag:.0f} s {accuracy(truth, matches, mask)[0]:.2%}"
            for lag, matches in by_lag.items()
        )
        changed = "  ".join(
            f"{lag:.0f} s {changed_share(by_lag[0.0], matches):.2%}"
            for lag, matches in by_lag.items()
            if lag
        )
        print(f"{name} settled ids hidden: trip accuracy at lag {figures}")
        print(f"      answers changed after first given, at lag {changed}")
    print(
        f"trip ids given: throughput {given.throughput()} clean, {given_noisy.throughput()} "
        f"noisy; believed {sum(m.trip_id_given for m in reference) / len(reference):.1%}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory: {peak_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
