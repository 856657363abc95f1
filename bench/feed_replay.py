"""Pings replayed through the service's engine, the GTFS-realtime feeds' inputs taken at moments
of it, and the independent validator run on the feeds: shared by `bench.gtfs_rt` (build time and
size), `bench.gtfs_rt_validate` (the validator on the WMATA day) and
`tests/realfeed/test_gtfs_rt_real.py` (the feeds pass the validator).

`replay` runs the engine as `tracker serve` does (matcher, settling, stop events, predictions,
operations; `tracker.core.engine`), on micro-batches of `step_s` of pings in time order, and keeps
what the service keeps for the feeds: each vehicle's newest live state (`LiveVehicle`) and the
predictions and alerts (`tracker.live.insight.Insight`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gtfs_rt_validator.api import Mode, PreparedFeed, Request, Result, resolve_roles, validate

from tracker.core.engine import Engine, EngineConfig
from tracker.core.model import Ping, State
from tracker.core.network import Network
from tracker.core.operations import Alert
from tracker.core.predict import Prediction
from tracker.live.insight import Insight
from tracker.live.vehicle import LiveVehicle

# The validator's feed roles, by the names of the service's feeds (`FeedBuilder.build`).
ROLES = {"vehicle-positions": "vp", "trip-updates": "tu", "alerts": "sa"}


@dataclass(frozen=True)
class Moment:
    """What the feeds are built from at `now_s`."""

    now_s: float
    vehicles: list[LiveVehicle]  # every vehicle heard so far, its newest state (stale ones too)
    predictions: dict[str, list[Prediction]]  # by vehicle
    alerts: tuple[Alert, ...]
    pings: int  # replayed so far


def replay(
    network: Network,
    pings: Sequence[Ping],
    *,
    step_s: float = 5.0,
    every_s: float = 600.0,
    final: bool = False,
) -> Iterator[Moment]:
    """The moments every `every_s` from the first ping (and with `final`, one after the last
    ping) of `pings` (in time order) matched live by the engine, `step_s` of pings per step, the
    clock a second after each step's last ping. A late match (a ping older than its vehicle's
    newest) does not move the vehicle's live state back."""
    engine = Engine(network, EngineConfig())
    insight = Insight()
    live: dict[str, LiveVehicle] = {}
    next_s = pings[0].timestamp + every_s if pings else math.inf
    done = 0
    now_s = math.nan
    for _, batch in itertools.groupby(pings, key=lambda p: int(p.timestamp // step_s)):
        group = list(batch)
        now_s = group[-1].timestamp + 1.0
        step = engine.step(group, now_s)
        insight.update(step)
        done += len(group)
        for ping, match in zip(group, step.matches, strict=True):
            known = live.get(ping.vehicle_id)
            fresh = known is None or ping.timestamp >= known.observed_at_s
            if match.state is not State.REJECTED and fresh:
                live[ping.vehicle_id] = LiveVehicle.from_match(ping, match)
        if now_s >= next_s:
            next_s += every_s * math.ceil((now_s - next_s + 1e-9) / every_s)
            yield moment(insight, live, now_s, done)
    if final and done:
        yield moment(insight, live, now_s, done)


def moment(insight: Insight, live: Mapping[str, LiveVehicle], now_s: float, done: int) -> Moment:
    predictions = {v: insight.of_vehicle(v, now_s) for v in live}
    return Moment(now_s, list(live.values()), predictions, insight.alerts(), done)


def validate_feeds(
    bodies: Mapping[str, bytes], gtfs: Path | PreparedFeed, now_s: float, folder: Path
) -> Result:
    """The independent `gtfs-rt-validator` (its "modern" rules) on the feeds' protobuf bytes, by
    the validator's role (`vp`, `tu`, `sa`: `ROLES`), against the static GTFS (a path, or one
    read once with `gtfs_rt_validator.api.prepare_feed(path, mode=Mode.MODERN)`), at `now_s`.
    The bytes are written to `folder` (the validator reads files)."""
    paths = {}
    for role, body in bodies.items():
        path = folder / f"{role}.pb"
        path.write_bytes(body)
        paths[role] = str(path)
    at = dt.datetime.fromtimestamp(now_s, dt.UTC)
    return validate(Request(mode=Mode.MODERN, gtfs=gtfs, inputs=resolve_roles(paths), at=at))
