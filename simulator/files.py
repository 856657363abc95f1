"""Write simulated pings to files: the pings as JSON lines, their ground truth as CSV.

The scenarios' ground truth (`simulator.scenarios`) is JSON lines too: one object per
`ScenarioTruth`, with the fields that apply (`write_scenario_truth`).

The pings file has one JSON object per line, the MQTT payload of `tracker.wire` (so
`tracker match --pings` and `simulator replay` read it back). The truth file has one row per
message in the same order (duplicates included), with the columns in `TRUTH_COLUMNS`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from simulator.day import SimPing
from simulator.scenarios import ScenarioTruth
from tracker.wire import encode_ping

TRUTH_COLUMNS: tuple[str, ...] = (
    "vehicle_id",
    "timestamp",
    "sent_at",
    "service_date",
    "block_id",
    "trip_id",
    "route_id",
    "state",
    "lat",
    "lon",
    "shape_dist_m",
    "speed_mps",
    "delay_s",
    "ping_lat",
    "ping_lon",
    "error_m",
    "noisy",
    "outlier",
    "duplicate",
    "out_of_order",
)


class SimWriter:
    """Append each `SimPing` to a pings file and/or a truth file; a context manager."""

    def __init__(self, pings_path: Path | None, truth_path: Path | None) -> None:
        # The writer owns both files until close() or the end of its `with` block.
        self._pings = pings_path.open("wb") if pings_path else None
        self._truth_file = (
            truth_path.open("w", encoding="utf-8", newline="") if truth_path else None
        )
        self._truth = csv.writer(self._truth_file) if self._truth_file else None
        if self._truth is not None:
            self._truth.writerow(TRUTH_COLUMNS)

    def write(self, item: SimPing) -> None:
        if self._pings is not None:
            self._pings.write(encode_ping(item.ping) + b"\n")
        if self._truth is not None:
            t, p = item.truth, item.ping
            self._truth.writerow(
                (
                    t.vehicle_id,
                    f"{t.timestamp:.3f}",
                    f"{item.sent_at:.3f}",
                    t.service_date,
                    t.block_id,
                    t.trip_id,
                    t.route_id,
                    t.state,
                    f"{t.lat:.7f}",
                    f"{t.lon:.7f}",
                    f"{t.shape_dist_m:.2f}",
                    f"{t.speed_mps:.2f}",
                    f"{t.delay_s:.1f}",
                    f"{p.lat:.7f}",
                    f"{p.lon:.7f}",
                    f"{t.error_m:.2f}",
                    int(t.noisy),
                    int(t.outlier),
                    int(t.duplicate),
                    int(t.out_of_order),
                )
            )

    def close(self) -> None:
        for handle in (self._pings, self._truth_file):
            if handle is not None:
                handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_scenario_truth(path: Path, truth: Iterable[ScenarioTruth]) -> None:
    """The scenarios' ground truth as JSON lines, one `ScenarioTruth` a line."""
    with path.open("w", encoding="utf-8") as handle:
        for row in truth:
            handle.write(json.dumps(row.as_json(), sort_keys=False) + "\n")
