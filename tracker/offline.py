"""`tracker match`: match a file of recorded pings against a GTFS feed (schedule adherence).

Pings are matched in file order, as if they arrived live, in batches of `batch_size`. The clock
used to reject timestamps from the future is the later of the wall clock and the newest
accepted timestamp so far plus `max_jump_s`, so a recorded day replays with its own time while a
ping dated days ahead of the rest is still rejected.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tracker.core.matcher import Matcher
from tracker.core.model import Match, Ping, State
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, MatchWriter, bad_row_match, read_pings


@dataclass
class MatchSummary:
    """What a run of `tracker match` did, for the closing report."""

    pings: int = 0
    by_state: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.pings / self.seconds if self.seconds > 0 else 0.0
        out = [f"{self.pings} pings in {self.seconds:.1f} s ({rate:,.0f} pings/s)"]
        out += [f"  {state}: {n}" for state, n in sorted(self.by_state.items())]
        if self.by_reason:
            out.append("reasons (rejected pings and ignored hints):")
            out += [f"  {reason}: {n}" for reason, n in self.by_reason.most_common()]
        return out


def _batches(records: Iterable[Ping | BadRow], size: int) -> Iterator[list[Ping | BadRow]]:
    batch: list[Ping | BadRow] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def match_file(
    gtfs: Path,
    pings: Path,
    out: Path,
    *,
    ignore_trip_ids: bool = False,
    batch_size: int = 500,
    max_jump_s: float = 6 * 3600.0,
    progress: bool = True,
) -> MatchSummary:
    """Match every ping of `pings` and write one CSV row per input record to `out`."""
    network = load_network(gtfs)
    matcher = Matcher(network)
    summary = MatchSummary()
    newest = 0.0
    started = time.perf_counter()
    records = read_pings(pings, ignore_trip_ids=ignore_trip_ids)
    with (
        MatchWriter(out) as writer,
        tqdm(unit=" pings", disable=not progress, desc="matching") as bar,
    ):
        for batch in _batches(records, batch_size):
            now = max(time.time(), newest + max_jump_s)
            good = [r for r in batch if isinstance(r, Ping)]
            matched = iter(matcher.match_batch(good, now=now))
            for record in batch:
                result: Match = (
                    bad_row_match(record) if isinstance(record, BadRow) else next(matched)
                )
                writer.write(result)
                summary.pings += 1
                summary.by_state[result.state.value] += 1
                if result.reason is not None:
                    summary.by_reason[result.reason.value] += 1
                if result.state is not State.REJECTED:
                    newest = max(newest, result.timestamp)
            bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary
