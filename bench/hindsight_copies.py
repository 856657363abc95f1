"""Benchmark of hindsight when several devices report the same trips.

    python -m bench.hindsight_copies [--copies 10] [--noise] [--data ../shared/data/wmata-bus-...]

Builds `--copies` copies of the WMATA day, each vehicle's pings under the ids `<id>-1` ...
`<id>-N` (as if every bus carried N devices reporting at the same moments), with trip and route
ids hidden (`bench.matching.hide_ids`), and matches them with hindsight (`match_recorded`, what
`tracker match` does by default). With `--noise` each copy gets GPS noise of its own (the
noise of `bench.matching`: sigma 20 m plus 2 % outliers, seed = the copy's number), so the
devices of one bus are nearly, not exactly, in the same place.

Prints the pings, the CPU seconds of the first pass (every vehicle's best path) and of the whole
call, the throughput of the whole call (target: 15,000 pings/s or more), the trip accuracy of
the copies against the agency's trip ids (the in-service pings of `bench.matching`), and the
share of evaluated pings on which all copies of a bus got the same trip.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.matching import DEFAULT_DATA, accuracy, add_noise, evaluation_mask, hide_ids
from tracker.core.hindsight import match_recorded
from tracker.core.model import Ping
from tracker.core.network import Network
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, read_pings

TARGET_PINGS_PER_S = 15_000


def copies_of(network: Network, day: Sequence[Ping], copies: int, *, noise: bool) -> list[Ping]:
    """Each ping of `day` followed by its `copies` copies (vehicle ids suffixed -1 ... -N), ids
    hidden; with `noise`, each copy's positions with noise of their own."""
    versions = []
    for k in range(1, copies + 1):
        pings = hide_ids(day)
        if noise:
            pings = add_noise(network, pings, sigma_m=20.0, outlier_share=0.02, seed=k)
        versions.append([dataclasses.replace(p, vehicle_id=f"{p.vehicle_id}-{k}") for p in pings])
    return [version[i] for i in range(len(day)) for version in versions]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--noise", action="store_true", help="GPS noise of its own per copy")
    args = parser.parse_args(argv)
    feed = args.data / "gtfs.zip"
    if not feed.exists():
        print(f"no feed at {feed}; pass --data FOLDER with gtfs.zip and vehicle_positions.csv")
        return 2
    network = load_network(feed)
    day = [p for p in read_pings(args.data / "vehicle_positions.csv") if not isinstance(p, BadRow)]
    pings = copies_of(network, day, args.copies, noise=args.noise)
    # The copies are interleaved ping by ping and the evaluation depends on each vehicle's own
    # pings only, so the day's mask, each entry repeated per copy, is the copies' mask.
    mask = np.repeat(evaluation_mask(network, day), args.copies)
    truth = [p for p in day for _ in range(args.copies)]
    now = max(p.timestamp for p in pings) + 60

    done = 0
    first_pass_s = 0.0
    start = time.process_time()

    def progress(n: int) -> None:
        nonlocal done, first_pass_s
        done += n
        first_pass_s = time.process_time() - start  # the last call ends the first pass

    matches = match_recorded(network, pings, [now] * len(pings), progress=progress)
    whole_s = time.process_time() - start

    trip_acc, _ = accuracy(truth, matches, mask)
    trips = np.array([m.trip_id or "" for m in matches]).reshape(len(day), args.copies)
    agree = (trips == trips[:, :1]).all(axis=1)[mask[:: args.copies]].mean()
    rate = len(pings) / whole_s
    print(
        f"{args.copies} copies{' with noise' if args.noise else ''} of {len(day)} pings: "
        f"{len(pings)} pings, {len({p.vehicle_id for p in pings})} vehicles, "
        f"{int(mask.sum())} evaluated"
    )
    print(
        f"CPU: first pass {first_pass_s:.1f} s, whole call {whole_s:.1f} s "
        f"(after the first pass {whole_s - first_pass_s:.1f} s)"
    )
    met = "met" if rate >= TARGET_PINGS_PER_S else "NOT met"
    print(f"throughput: {rate:,.0f} pings/s (target {TARGET_PINGS_PER_S:,}: {met})")
    print(f"trip accuracy of the copies: {trip_acc:.2%}; all copies of a bus agree: {agree:.2%}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
