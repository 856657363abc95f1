"""`tracker match`: match a file of recorded pings against a GTFS feed (schedule adherence).

By default each ping is answered with hindsight (`tracker.core.hindsight`): the whole file is
read, each vehicle's path is decided with what came after each ping, and no trip is given to
two vehicles at once. This holds the file in memory (about 1 KB per ping). With `live=True`
pings are matched in file order, in batches of `batch_size`, exactly as the live service
answers them, streaming with little memory; with `lag_s` as well, each ping gets the answer
the live service has settled `lag_s` seconds after it (`replay_live`).

Either way the clock used to reject timestamps from the future is the later of the wall clock
and the newest plausible timestamp so far plus `max_jump_s`, so a recorded day replays with its
own time while a ping dated days ahead of the rest is still rejected.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tracker.core.hindsight import match_recorded
from tracker.core.matcher import Matcher, MatcherConfig
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

    def count(self, result: Match) -> None:
        self.pings += 1
        self.by_state[result.state.value] += 1
        if result.reason is not None:
            self.by_reason[result.reason.value] += 1

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
    live: bool = False,
    lag_s: float = 0.0,
    batch_size: int = 500,
    max_jump_s: float = 6 * 3600.0,
    progress: bool = True,
) -> MatchSummary:
    """Match every ping of `pings` and write one CSV row per input record to `out`.

    `lag_s` (live only): write the answer as known `lag_s` seconds after each ping."""
    network = load_network(gtfs)
    summary = MatchSummary()
    started = time.perf_counter()
    records = read_pings(pings, ignore_trip_ids=ignore_trip_ids)
    with (
        MatchWriter(out) as writer,
        tqdm(unit=" pings", disable=not progress, desc="matching") as bar,
    ):

        def emit(batch: list[Ping | BadRow], matches: list[Match]) -> None:
            matched = iter(matches)
            for record in batch:
                result = bad_row_match(record) if isinstance(record, BadRow) else next(matched)
                writer.write(result)
                summary.count(result)

        if live and lag_s > 0:
            matcher = Matcher(network, MatcherConfig(settle_lag_s=lag_s))
            for _, result in replay_live(matcher, records, max_jump_s=max_jump_s):
                writer.write(result)
                summary.count(result)
                bar.update()
        elif live:
            matcher = Matcher(network)
            clock = _Clock(max_jump_s)
            for batch in _batches(records, batch_size):
                good = [r for r in batch if isinstance(r, Ping)]
                now = clock.now()
                emit(batch, matcher.match_batch(good, now=now))
                clock.saw(p.timestamp for p in good if p.timestamp <= now + _MAX_FUTURE_S)
                bar.update(len(batch))
        else:
            everything = list(records)
            good = [r for r in everything if isinstance(r, Ping)]
            clock = _Clock(max_jump_s)
            nows = []
            for ping in good:
                nows.append(clock.now())
                if ping.timestamp <= nows[-1] + _MAX_FUTURE_S:
                    clock.saw((ping.timestamp,))
            bar.total = len(everything)
            emit(everything, match_recorded(network, good, nows, progress=bar.update))
            bar.update(len(everything) - len(good))
    summary.seconds = time.perf_counter() - started
    return summary


_MAX_FUTURE_S = MatcherConfig().max_future_s


@dataclass
class _Row:
    record: Ping | BadRow
    answer: Match


def replay_live(
    matcher: Matcher,
    records: Iterable[Ping | BadRow],
    *,
    span_s: float = 5.0,
    batch_size: int = 500,
    max_jump_s: float = 6 * 3600.0,
) -> Iterator[tuple[Ping | BadRow, Match]]:
    """Each record with its answer as the live service settles it, in input order.

    The records are matched in arrival (file) order, in batches of at most `batch_size` records
    spanning at most `span_s` seconds (as micro-batches arrive live); before each batch the
    answers more than the matcher's `settle_lag_s` older than the batch's first ping are settled
    (`Matcher.settle`), so each ping gets its answer as known `settle_lag_s` seconds after it.
    A row is handed out once no revision can reach it any more.
    """
    lag_s = matcher.config.settle_lag_s
    clock = _Clock(max_jump_s)
    rows: deque[_Row] = deque()
    open_rows: dict[tuple[str, float], _Row] = {}  # rows a revision may still reach
    for batch in _time_batches(records, span_s, batch_size):
        good = [r for r in batch if isinstance(r, Ping)]
        data_now_s = min((p.timestamp for p in good), default=clock.newest_s)
        for revised in matcher.settle(data_now_s):
            row = open_rows.get((revised.vehicle_id, revised.timestamp))
            if row is not None:
                row.answer = revised
        matches = iter(matcher.match_batch(good, now=clock.now()))
        for record in batch:
            row = _Row(
                record, bad_row_match(record) if isinstance(record, BadRow) else next(matches)
            )
            rows.append(row)
            if row.answer.state is not State.REJECTED:
                open_rows[(row.answer.vehicle_id, row.answer.timestamp)] = row
        clock.saw(p.timestamp for p in good if p.timestamp <= clock.now() + _MAX_FUTURE_S)
        # Final: older than the lag and a margin (pings of one moment arrive out of order).
        final_before_s = data_now_s - lag_s - _ARRIVAL_SPREAD_S
        while rows and not _may_change(rows[0], final_before_s):
            yield _pop(rows, open_rows)
    for revised in matcher.settle(float("inf")):
        row = open_rows.get((revised.vehicle_id, revised.timestamp))
        if row is not None:
            row.answer = revised
    while rows:
        yield _pop(rows, open_rows)


_ARRIVAL_SPREAD_S = 120.0


def _may_change(row: _Row, final_before_s: float) -> bool:
    return row.answer.state is not State.REJECTED and row.answer.timestamp >= final_before_s


def _pop(
    rows: deque[_Row], open_rows: dict[tuple[str, float], _Row]
) -> tuple[Ping | BadRow, Match]:
    row = rows.popleft()
    key = (row.answer.vehicle_id, row.answer.timestamp)
    if open_rows.get(key) is row:
        del open_rows[key]
    return row.record, row.answer


def _time_batches(
    records: Iterable[Ping | BadRow], span_s: float, size: int
) -> Iterator[list[Ping | BadRow]]:
    """Consecutive records, at most `size` per batch and at most `span_s` seconds between the
    first and the last ping of a batch."""
    batch: list[Ping | BadRow] = []
    first_s: float | None = None
    for record in records:
        if isinstance(record, Ping):
            if first_s is None:
                first_s = record.timestamp
            elif abs(record.timestamp - first_s) > span_s:
                yield batch
                batch, first_s = [], record.timestamp
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch, first_s = [], None
    if batch:
        yield batch


class _Clock:
    """The clock a recorded file is replayed with: max(wall clock, newest seen + max_jump_s)."""

    def __init__(self, max_jump_s: float) -> None:
        self.max_jump_s = max_jump_s
        self.newest_s = 0.0

    def now(self) -> float:
        return max(time.time(), self.newest_s + self.max_jump_s)

    def saw(self, timestamps: Iterable[float]) -> None:
        for ts in timestamps:
            if ts == ts:  # not NaN
                self.newest_s = max(self.newest_s, ts)
