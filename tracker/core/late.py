"""Late pings: a vehicle's pings that arrive after newer ones of it (a phone's buffer, sent when it
is back in coverage after its live position went out; a device that resends what it kept).

The live filter answers each vehicle's pings in time order, so it cannot take one older than the
vehicle's newest: that would move its state, and the live map, back in time. Instead a late ping
is answered at once as `not_matched` with reason `late` (so it is stored straight away, never
broadcast), and held here with the others of its vehicle. When no late ping of that vehicle has
come for `LateConfig.quiet_s`, the held stretch is matched with hindsight on its own
(`tracker.core.hindsight.match_recorded`: each ping answered from the best path over the whole
stretch) and the answers come out of `due` as revisions of the stored rows. The live state of
the vehicle is not touched.

Bounded: a vehicle's stretch is matched once it holds `max_stretch_pings` even if more are
coming, each call of `due` matches at most about `pings_per_step` pings (whole stretches: a
stretch is never cut), and past `max_held_pings` held in all a late ping is stored with its
`late` answer only (counted in `not_held`).

Not done for late pings: stop events, predictions and operations signals, which follow the live
state; the history and the settled answers of the day are what they serve.

Pure: values in, values out; the clock comes with every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tracker.core.hindsight import HINDSIGHT_SCHEDULE_WEIGHT, match_recorded
from tracker.core.model import Match, Ping, Reason, State, rejected
from tracker.core.network import Network
from tracker.core.tables import MatcherConfig
from tracker.core.validate import validate_ping


@dataclass(frozen=True, slots=True)
class LateConfig:
    quiet_s: float = 10.0  # a vehicle's stretch is matched once no late ping came for this long
    # ... or once it holds this many (1,000: an hour and more at a phone's 5 s; about 0.1 s of
    # matching at 114 µs a ping, the Nairobi feed on this project's machine)
    max_stretch_pings: int = 1_000
    pings_per_step: int = 500  # at most about this many matched per `due` call
    max_held_pings: int = 50_000  # in all; past that, late pings are stored unmatched only


@dataclass
class _Stretch:
    pings: dict[float, Ping] = field(default_factory=dict)  # by timestamp
    nows: dict[float, float] = field(default_factory=dict)  # each one's arrival clock
    last_added_s: float = 0.0


@dataclass
class LateStats:
    held: int = 0  # late pings taken and held, to be matched
    matched: int = 0  # late pings answered with hindsight (out of `due`)
    not_held: int = 0  # late pings stored unmatched only: `max_held_pings` were held


class LatePings:
    """Late pings held per vehicle and matched with hindsight by stretches (see the module)."""

    def __init__(
        self, network: Network, matcher_config: MatcherConfig, config: LateConfig | None = None
    ) -> None:
        self.network = network
        self.config = config or LateConfig()
        self._max_future_s = matcher_config.max_future_s
        self._matcher_config = dataclasses.replace(
            matcher_config, schedule_weight=HINDSIGHT_SCHEDULE_WEIGHT
        )
        self._stretches: dict[str, _Stretch] = {}
        self._held = 0
        self.stats = LateStats()

    @property
    def held(self) -> int:
        """Late pings held now."""
        return self._held

    def take(
        self, pings: Sequence[Ping], latest_s: Callable[[str], float | None], now_s: float
    ) -> dict[int, Match]:
        """The late pings of a batch (in arrival order), by index, with their first answer.

        A ping is late when it is older than its vehicle's newest, from `latest_s` (the live
        state's, None for a vehicle it does not know) or earlier in this batch. The others, and
        late pings that are not valid, are left to the live matcher (which answers an invalid one
        with its reason). A late ping already held is a duplicate.
        """
        taken: dict[int, Match] = {}
        newest_s: dict[str, float | None] = {}
        for i, ping in enumerate(pings):
            vehicle_id = ping.vehicle_id
            if vehicle_id not in newest_s:
                newest_s[vehicle_id] = latest_s(vehicle_id)
            newest = newest_s[vehicle_id]
            if validate_ping(ping, now=now_s, max_future_s=self._max_future_s) is not None:
                continue
            if newest is None or ping.timestamp >= newest:
                newest_s[vehicle_id] = ping.timestamp
                continue
            taken[i] = self._hold(ping, now_s, newest)
        return taken

    def due(self, now_s: float) -> list[Match]:
        """The answers, with hindsight, of the stretches due: quiet for `quiet_s` or full."""
        cfg = self.config
        ready = sorted(
            (s.last_added_s, v)
            for v, s in self._stretches.items()
            if now_s - s.last_added_s >= cfg.quiet_s or len(s.pings) >= cfg.max_stretch_pings
        )
        out: list[Match] = []
        for _, vehicle_id in ready:
            if out and len(out) + len(self._stretches[vehicle_id].pings) > cfg.pings_per_step:
                break
            out += self._match(self._stretches.pop(vehicle_id))
        self.stats.matched += len(out)
        return out

    def _hold(self, ping: Ping, now_s: float, newest_s: float) -> Match:
        stretch = self._stretches.get(ping.vehicle_id)
        if stretch is not None and ping.timestamp in stretch.pings:
            return rejected(ping, Reason.DUPLICATE, "same vehicle and timestamp seen before")
        behind = f"{newest_s - ping.timestamp:.0f} s older than the vehicle's latest ping"
        if self._held >= self.config.max_held_pings:
            self.stats.not_held += 1
            return _late(ping, f"{behind}; stored unmatched: too many late pings waiting")
        if stretch is None:
            stretch = self._stretches[ping.vehicle_id] = _Stretch()
        stretch.pings[ping.timestamp] = ping
        stretch.nows[ping.timestamp] = now_s
        stretch.last_added_s = now_s
        self._held += 1
        self.stats.held += 1
        return _late(ping, f"{behind}; answered with hindsight once its stretch is complete")

    def _match(self, stretch: _Stretch) -> list[Match]:
        times = sorted(stretch.pings)
        self._held -= len(times)
        answers = match_recorded(
            self.network,
            [stretch.pings[t] for t in times],
            [stretch.nows[t] for t in times],
            config=self._matcher_config,
        )
        return [m for m in answers if m.state is not State.REJECTED]


def _late(ping: Ping, detail: str) -> Match:
    return Match(ping.vehicle_id, ping.timestamp, State.NOT_MATCHED, Reason.LATE, detail=detail)
