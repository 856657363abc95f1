"""Stop events and arrival predictions on the real WMATA day in ../shared/data (its first two
hours, as `python -m bench.predictions` does with the whole day): quality floors far below the
benchmark's figures, so that a broken detector or model fails."""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.predictions import Truth, baseline_s
from tests.shared_data import SHARED_DATA, required
from tracker.core.matcher import Matcher
from tracker.core.model import Ping
from tracker.core.predict import History
from tracker.core.stop_events import Observed, stop_events
from tracker.gtfs.load import load_network
from tracker.pings_io import BadRow, read_pings
from tracker.predict_offline import replay

pytestmark = pytest.mark.realfeed

WMATA = required(SHARED_DATA / "wmata-bus-2026-02-16")


def test_wmata_predictions_beat_the_schedule_and_their_ranges_hold(tmp_path: Path) -> None:
    network = load_network(WMATA / "gtfs.zip", cache_dir=tmp_path)
    pings: list[Ping] = [
        p for p in read_pings(WMATA / "vehicle_positions.csv") if not isinstance(p, BadRow)
    ]
    start = min(p.timestamp for p in pings)
    pings = [p for p in pings if p.timestamp < start + 2 * 3600]  # 10:58-12:58, 8,104 pings
    matcher = Matcher(network)
    now = max(p.timestamp for p in pings) + 60
    given = [m for i in range(0, len(pings), 500)
             for m in matcher.match_batch(pings[i : i + 500], now=now)]  # fmt: skip
    events = stop_events(network, given)
    visits = collections.Counter((e.vehicle_id, e.trip_id, e.stop_sequence) for e in events)
    assert visits.most_common(1)[0][1] == 1  # each stop visit once
    assert len(events) >= 1500  # 2,146 when written
    assert sum(e.observed is Observed.DWELLING for e in events) >= 0.5 * len(events)
    times = [e for e in events if e.arrival_s is not None and e.departure_s is not None]
    assert all(e.departure_s >= e.arrival_s for e in times)  # type: ignore[operator]
    truth = Truth(events)

    hidden = [dataclasses.replace(p, trip_id=None, route_id=None) for p in pings]
    rows = []
    for tick in replay(network, hidden, model=History(network)):
        progress = {v.vehicle_id: v for v in tick.vehicles}
        for p in tick.predictions:
            actual, _ = truth.actual(p)
            base = baseline_s(p, progress.get(p.vehicle_id))
            if actual is None or actual < p.made_at_s or base is None:
                continue
            inside = p.p10_arrival_s <= actual <= p.p90_arrival_s
            rows.append((actual - p.made_at_s, abs(p.predicted_arrival_s - actual),
                         abs(base - actual), inside))  # fmt: skip
    table = np.array(rows)
    horizon = table[:, 0]
    for low, high in ((0, 300), (300, 1200), (1200, np.inf)):
        chosen = table[(horizon >= low) & (horizon < high)]
        assert len(chosen) >= 5000
        assert 0.65 <= chosen[:, 3].mean() <= 0.92  # p10-p90: 79-83 % when written
    at_5_to_20 = table[(horizon >= 300) & (horizon < 1200)]
    # 5-20 minutes ahead: 118 s against 150 s for the schedule and the current delay, when written.
    assert at_5_to_20[:, 1].mean() <= 0.9 * at_5_to_20[:, 2].mean()
