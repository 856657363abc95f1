"""Arrival predictions (`tracker.core.predict`) and their replay (`tracker predict`) on the tiny
feeds of tests.feeds, with the times worked out by hand.

The Ramadan feed's trip R_0800 (2026-03-04, Casablanca at UTC+0): stops R1..R6, R1 leaves at
08:00:00 (0 s), R2 at 696/726 s (arrival/departure after 08:00), R3 1422/1452, R4 2148/2178,
R5 2874/2904, R6 3600: every link runs 696 s and the middle stops wait 30 s.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from simulator.day import SimConfig, simulate
from tests import feeds
from tracker.cli import main
from tracker.core.model import Match, Ping, State
from tracker.core.network import Network
from tracker.core.predict import History, Prediction, Source, predict, predict_all
from tracker.core.stop_events import Observed, Progress, StopEvent, StopEventDetector
from tracker.gtfs.load import load_network
from tracker.predict_offline import read_events, replay, write_events

RAMADAN_DAY = dt.date(2026, 3, 4)
WEDNESDAY = dt.date(2026, 3, 4)
R_ARRIVALS = [0, 696, 1422, 2148, 2874, 3600]  # R1 departs; the others arrive


def stops_m(network: Network, trip: str) -> list[float]:
    pattern = network.patterns[network.trips[network.trip_index[trip]].pattern_idx]
    return [float(d) for d in pattern.stop_dist_m]


def progress_of(
    network: Network,
    answers: Sequence[tuple[float, float, State]],
    *,
    trip: str,
    origin_s: float,
    day: dt.date = RAMADAN_DAY,
    with_delay: bool = True,
) -> Progress:
    """Where the detector has a bus after these answers: (seconds after `origin_s`, metres
    along, state); each with the delay the matcher would give."""
    run = network.runs_of_trip[network.trip_index[trip]][0]
    detector = StopEventDetector(network)
    for t, along, state in answers:
        scheduled = network.day_origin(day) + network.scheduled_time_s(run, along)
        detector.feed(
            Match(
                vehicle_id="bus1",
                timestamp=origin_s + t,
                state=state,
                trip_id=trip,
                service_date=day.strftime("%Y%m%d"),
                shape_dist_m=along,
                delay_s=origin_s + t - scheduled if with_delay else None,
            )
        )
    found = detector.progress("bus1")
    assert found is not None
    return found


def at_8(network: Network) -> float:
    return network.day_origin(RAMADAN_DAY) + 8 * 3600


def after(predictions: list[Prediction], base: float) -> list[tuple[str, float]]:
    return [(p.stop_id, round(p.predicted_arrival_s - base, 3)) for p in predictions]


# --- with no history: the schedule and the current delay -----------------------------------


def test_with_no_history_a_late_bus_keeps_its_delay(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2  # scheduled there at 348 s; the bus is 60 s late
    progress = progress_of(ramadan, [(408, half, State.IN_SERVICE)], trip="R_0800", origin_s=base)
    found = predict(History(ramadan), progress, ramadan, base + 420)
    assert after(found, base) == [(f"R{k + 1}", t + 60.0) for k, t in enumerate(R_ARRIVALS)][1:]
    assert {p.source for p in found} == {Source.SCHEDULE}
    assert [p.scheduled_arrival_s for p in found] == [base + t for t in R_ARRIVALS[1:]]
    first = found[0]
    assert (first.vehicle_id, first.trip_id, first.service_date) == ("bus1", "R_0800", "20260304")
    assert (first.stop_sequence, first.trips_ahead, first.made_at_s) == (1, 0, base + 420)
    assert first.horizon_s == pytest.approx(756 - 420)


def test_an_early_bus_waits_at_stops_where_the_timetable_waits(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2
    progress = progress_of(ramadan, [(228, half, State.IN_SERVICE)], trip="R_0800", origin_s=base)
    found = predict(History(ramadan), progress, ramadan, base + 240)
    # 2 minutes early at R2, which it leaves at its time (726 s): on time from R3 on.
    assert after(found, base) == [("R2", 576.0), ("R3", 1422.0), ("R4", 2148.0), ("R5", 2874.0),
                                  ("R6", 3600.0)]  # fmt: skip


def test_a_bus_waiting_at_its_first_stop_leaves_at_its_time(ramadan: Network) -> None:
    base = at_8(ramadan)
    waiting = [(t, 0.0, State.LAYOVER) for t in range(-600, -299, 30)]
    progress = progress_of(ramadan, waiting, trip="R_0800", origin_s=base)
    found = predict(History(ramadan), progress, ramadan, base - 290)
    assert after(found, base)[:3] == [("R1", 0.0), ("R2", 696.0), ("R3", 1422.0)]
    assert found[0].stop_sequence == 0  # the first stop: its departure
    # ... and a bus there after its time leaves now
    late = progress_of(ramadan, [(t, 0.0, State.LAYOVER) for t in range(0, 121, 30)],
                       trip="R_0800", origin_s=base)  # fmt: skip
    assert after(predict(History(ramadan), late, ramadan, base + 130), base)[:2] == [
        ("R1", 130.0),
        ("R2", 826.0),
    ]


def test_no_arrival_is_predicted_before_now(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2
    progress = progress_of(ramadan, [(408, half, State.IN_SERVICE)], trip="R_0800", origin_s=base)
    # Seen at 408 s, due at R2 at 756 s, but it is 800 s and it has not been seen there.
    found = predict(History(ramadan), progress, ramadan, base + 800)
    assert after(found, base)[:2] == [("R2", 800.0), ("R3", 1526.0)]
    assert found[0].p10_arrival_s == base + 800


def test_ranges_widen_with_the_horizon(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2
    progress = progress_of(ramadan, [(408, half, State.IN_SERVICE)], trip="R_0800", origin_s=base)
    found = predict(History(ramadan), progress, ramadan, base + 420)
    widths = [p.p90_arrival_s - p.p10_arrival_s for p in found]
    assert all(b > a for a, b in itertools.pairwise(widths))
    assert all(p.p10_arrival_s < p.predicted_arrival_s < p.p90_arrival_s for p in found)
    # No errors seen yet: the prior spread, ±1.28 * (30 s + 0.12 * horizon).
    first = found[0]
    assert first.p90_arrival_s - first.predicted_arrival_s == pytest.approx(
        1.2815515655446004 * (30 + 0.12 * first.horizon_s)
    )


# --- learning ----------------------------------------------------------------------------


def link_events(network: Network, day: str, vehicle: str, running_s: float) -> list[StopEvent]:
    """A bus of `day` at R2 on time (696/726 s after 08:00), then on to R3 in `running_s`."""
    origin = network.day_origin(dt.datetime.strptime(day, "%Y%m%d").date()) + 8 * 3600
    common = {"vehicle_id": vehicle, "trip_id": "R_0800", "service_date": day, "route_id": "R",
              "direction_id": None, "delay_s": None, "observed": Observed.DWELLING}  # fmt: skip
    r2 = StopEvent(stop_id="R2", stop_sequence=1, arrival_s=origin + 696,
                   departure_s=origin + 726, scheduled_arrival_s=origin + 696,
                   scheduled_departure_s=origin + 726, **common)  # type: ignore[arg-type]  # fmt: skip
    r3 = StopEvent(stop_id="R3", stop_sequence=2, arrival_s=origin + 726 + running_s,
                   departure_s=origin + 756 + running_s, scheduled_arrival_s=origin + 1422,
                   scheduled_departure_s=origin + 1452, **common)  # type: ignore[arg-type]  # fmt: skip
    return [r2, r3]


def test_running_times_are_learned_and_shrunk_towards_the_schedule(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2
    progress = progress_of(ramadan, [(408, half, State.IN_SERVICE)], trip="R_0800", origin_s=base)
    model = History(ramadan)
    days = ("20260223", "20260224", "20260225", "20260226", "20260227", "20260228")
    for k, day in enumerate(days):
        model.learn_all(link_events(ramadan, day, f"bus{k}", running_s=900.0))
    assert model.events_learned == 12
    found = predict(model, progress, ramadan, base + 420)
    # R2 as before (756 s); it leaves at 786 s (dwells 30 s, as seen) and runs to R3 in
    # (6 * 900 + 2 * 696) / 8 = 849 s: six observations and the schedule counting as two.
    assert after(found, base)[:3] == [("R2", 756.0), ("R3", 1635.0), ("R4", 2361.0)]
    assert [p.source for p in found[:2]] == [Source.SCHEDULE, Source.LEARNED]
    assert model.running_s(("R2", "R3"), 8.2 * 3600, 696.0) == (849.0, 0.75)
    assert model.running_s(("R2", "R3"), 14 * 3600, 696.0) == (696.0, 0.0)  # another hour


def test_ranges_are_drawn_from_the_models_own_errors(ramadan: Network) -> None:
    model = History(ramadan)
    errors = np.linspace(-100.0, 300.0, 101)
    predictions, events = [], []
    for i, error in enumerate(errors.tolist()):
        made = 1_700_000_000.0 + i
        bus = f"bus{i}"
        predicted = Prediction(bus, made, "R_0800", "20260304", "R3", 2, made + 700, made + 600,
                               made + 800, 700.0, Source.LEARNED, 0, None)  # fmt: skip
        actual = StopEvent(bus, "R_0800", "20260304", "R", None, "R3", 2, made + 700 + error,
                           made + 730 + error, None, None, None, Observed.DWELLING)  # fmt: skip
        predictions.append(predicted)
        events.append(actual)
    model.record(predictions)
    assert model.pending_predictions == 101
    model.learn_all(events)
    assert (model.errors_learned, model.pending_predictions) == (101, 0)
    assert model.calibration.spread(700.0, False) == pytest.approx((-60.0, 260.0))
    # A prediction 10-15 minutes ahead gets that range; the next trips' bucket has none yet.
    base = at_8(ramadan)
    r2 = stops_m(ramadan, "R_0800")[1]
    progress = progress_of(ramadan, [(700, r2 + 100, State.IN_SERVICE)], trip="R_0800",
                           origin_s=base)  # fmt: skip
    r3 = predict(model, progress, ramadan, base + 710)[0]
    assert 600 <= r3.horizon_s < 900
    assert (r3.p10_arrival_s - r3.predicted_arrival_s) == pytest.approx(-60.0)
    assert (r3.p90_arrival_s - r3.predicted_arrival_s) == pytest.approx(260.0)


# --- blocks and frequency lines ------------------------------------------------------------


def test_the_blocks_next_trips_leave_after_a_turn_round(two_directions: Network) -> None:
    # blk1: B_N_0600 (BN5 at 06:09), then B_S_0612 (06:12-06:21), then B_N_0624.
    base = two_directions.day_origin(WEDNESDAY) + 6 * 3600
    bn = stops_m(two_directions, "B_N_0600")
    mid = (bn[3] + bn[4]) / 2  # scheduled there at 06:08:15

    def predicted(late_s: float) -> dict[tuple[str, int], float]:
        progress = progress_of(two_directions, [(495 + late_s, mid, State.IN_SERVICE)],
                               trip="B_N_0600", origin_s=base, day=WEDNESDAY)  # fmt: skip
        found = predict(History(two_directions), progress, two_directions, base + 500 + late_s)
        return {(p.stop_id, p.trips_ahead): round(p.predicted_arrival_s - base, 3) for p in found}

    on_time = predicted(0.0)
    assert on_time[("BN5", 0)] == 540.0  # 06:09
    assert on_time[("BS1", 1)] == 720.0  # leaves at its time, 06:12 (arrived + 180 s = 06:12)
    assert on_time[("BN1", 2)] == 24 * 60.0
    late = predicted(240.0)
    assert late[("BN5", 0)] == 780.0  # 06:13
    assert late[("BS1", 1)] == 960.0  # 06:16: after the default turn-round of 180 s
    assert late[("BS2", 1)] == 1050.0  # 90 s on
    assert late[("BS5", 1)] == 1500.0  # 06:25: made up its dwells where the timetable waits
    assert late[("BN1", 2)] == 1680.0  # 06:28


def test_frequency_lines_follow_the_running_buses_not_a_timetable(frequency: Network) -> None:
    base = frequency.day_origin(WEDNESDAY) + 9 * 3600 + 15 * 60  # a bus of F_headway at 09:15
    f = stops_m(frequency, "F_headway")
    progress = progress_of(frequency, [(100, (f[1] + f[2]) / 2, State.IN_SERVICE)],
                           trip="F_headway", origin_s=base, day=WEDNESDAY,
                           with_delay=False)  # fmt: skip
    assert not progress.exact_times
    found = predict(History(frequency), progress, frequency, base + 110)
    # The template's running times: 150 s a link, 30 s at each stop (none is held to a time).
    assert after(found, base) == [("F3", 175.0), ("F4", 355.0), ("F5", 535.0)]
    assert {p.scheduled_arrival_s for p in found} == {None}
    # Learned from the buses that ran it: F3 to F4 in 300 s (four buses; the template as two).
    model = History(frequency)
    for k in range(4):
        t = base - 3600 + 600 * k
        model.learn_all(
            [
                StopEvent(f"v{k}", "F_headway", "20260304", "F", None, "F3", 2, t, t + 30,
                          None, None, None, Observed.DWELLING),
                StopEvent(f"v{k}", "F_headway", "20260304", "F", None, "F4", 3, t + 330,
                          t + 360, None, None, None, Observed.DWELLING),
            ]
        )  # fmt: skip
    learned = predict(model, progress, frequency, base + 110)
    assert after(learned, base)[:2] == [("F3", 175.0), ("F4", 175.0 + 30 + 250)]


def test_a_frequency_bus_at_its_first_stop_leaves_now(frequency: Network) -> None:
    base = frequency.day_origin(WEDNESDAY) + 9 * 3600 + 15 * 60
    waiting = [(t, 0.0, State.LAYOVER) for t in range(-300, 1, 30)]
    progress = progress_of(frequency, waiting, trip="F_headway", origin_s=base, day=WEDNESDAY,
                           with_delay=False)  # fmt: skip
    found = predict(History(frequency), progress, frequency, base + 10)
    assert after(found, base)[:2] == [("F1", 10.0), ("F2", 160.0)]


def test_predict_all_leaves_out_stale_and_unmatched_vehicles(ramadan: Network) -> None:
    base = at_8(ramadan)
    half = stops_m(ramadan, "R_0800")[1] / 2
    detector = StopEventDetector(ramadan)
    for vehicle, state in (("a", State.IN_SERVICE), ("b", State.NOT_MATCHED)):
        detector.feed(Match(vehicle, base + 408, State.IN_SERVICE, trip_id="R_0800",
                            service_date="20260304", shape_dist_m=half, delay_s=60.0))  # fmt: skip
        detector.feed(Match(vehicle, base + 438, state))
    model = History(ramadan)
    assert {p.vehicle_id for p in predict_all(model, detector, ramadan, base + 440)} == {"a"}
    assert predict_all(model, detector, ramadan, base + 438 + 301) == []  # seen 5 min ago


# --- the replay (`tracker predict`) ---------------------------------------------------------


def simulated_pings(network: Network, seed: int = 3) -> list[Ping]:
    """Two buses on the two-directions feed, 06:00-08:00, a ping every 20 s, GPS noise."""
    sims = simulate(network, np.random.default_rng(seed), WEDNESDAY,
                    config=SimConfig(interval_s=20.0), start_s=6 * 3600.0,
                    end_s=8 * 3600.0)  # fmt: skip
    return [s.ping for s in sims]


def test_predictions_rest_on_the_pings_before_their_time(two_directions: Network) -> None:
    pings = simulated_pings(two_directions)
    cut = two_directions.day_origin(WEDNESDAY) + 7 * 3600 + 7 * 60
    full = list(replay(two_directions, pings, model=History(two_directions)))
    head = list(replay(two_directions, [p for p in pings if p.timestamp < cut],
                       model=History(two_directions)))  # fmt: skip
    assert head
    assert len(full) > len(head)
    last = head[-1].made_at_s
    assert cut - 60 <= last <= cut
    made = [t for t in full if t.made_at_s <= last]
    assert [t.made_at_s for t in made] == [t.made_at_s for t in head]
    assert [t.predictions for t in made] == [t.predictions for t in head]
    assert sum(len(t.predictions) for t in head) > 100
    # ... and a ping from the future in the file changes nothing before it either
    stray = dataclasses.replace(pings[-1], timestamp=cut + 3600.0)
    mixed = list(replay(two_directions, [p for p in pings if p.timestamp < cut] + [stray],
                        model=History(two_directions)))  # fmt: skip
    assert [t.predictions for t in mixed if t.made_at_s <= last] == [t.predictions for t in head]


def test_stray_timestamps_neither_stop_the_replay_nor_change_it(two_directions: Network) -> None:
    pings = simulated_pings(two_directions)[:600]
    plain = list(replay(two_directions, pings, model=History(two_directions)))
    stray = [
        dataclasses.replace(pings[0], timestamp=float("nan")),
        dataclasses.replace(pings[0], timestamp=1_000_000_000.0),  # 2001: matched to nothing
    ]
    mixed = list(replay(two_directions, stray + pings, model=History(two_directions)))
    assert [t.predictions for t in mixed if t.predictions] == [
        t.predictions for t in plain if t.predictions
    ]
    assert len(mixed) <= len(plain) + 10  # not a tick a minute since 2001


def test_the_model_learns_as_the_day_goes(two_directions: Network) -> None:
    model = History(two_directions)
    ticks = list(replay(two_directions, simulated_pings(two_directions), model=model))
    assert model.events_learned > 50
    assert model.errors_learned > 500
    sources = [p.source for t in ticks[-30:] for p in t.predictions]
    assert sources.count(Source.LEARNED) > 0.5 * len(sources)
    assert {p.made_at_s % 60 for t in ticks for p in t.predictions} == {0.0}


def test_tracker_predict_writes_predictions_and_a_history_it_can_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    feed = feeds.two_directions_feed(tmp_path)
    network = load_network(feed, use_cache=False)
    pings_csv = tmp_path / "pings.csv"
    with pings_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["vehicle_id", "timestamp", "lat", "lon"])
        writer.writerows([p.vehicle_id, p.timestamp, p.lat, p.lon]
                         for p in simulated_pings(network))  # fmt: skip
    out, history = tmp_path / "predictions.csv", tmp_path / "history.csv"
    args = ["predict", "--gtfs", str(feed), "--pings", str(pings_csv), "-q"]

    assert main([*args, "--out", str(out), "--write-history", str(history)]) == 0

    assert "wrote" in capsys.readouterr().out
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[:8] == ["vehicle_id", "made_at", "trip_id", "stop_id", "stop_sequence",
                                 "predicted_arrival", "p10_arrival", "p90_arrival"]  # fmt: skip
    assert all(float(r["p10_arrival"]) <= float(r["predicted_arrival"]) <= float(r["p90_arrival"])
               for r in rows)  # fmt: skip
    assert all(float(r["made_at"]) % 60 == 0 for r in rows)
    events = read_events(history)
    assert len(events) > 50
    write_events(tmp_path / "again.csv", events)
    assert read_events(tmp_path / "again.csv") == events
    # Started from that history, the first predictions rest on it.
    again = tmp_path / "again_predictions.csv"
    assert main([*args, "--out", str(again), "--history", str(history), "--every-s", "120"]) == 0
    with again.open() as handle:
        first = [r for r in csv.DictReader(handle)][:20]
    assert {r["source"] for r in first} == {"learned"}
    assert {float(r["made_at"]) % 120 for r in first} == {0.0}


def test_a_file_that_is_not_a_history_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    feed = feeds.two_directions_feed(tmp_path)
    code = main(["predict", "--gtfs", str(feed), "--pings", str(bad), "--out",
                 str(tmp_path / "o.csv"), "--history", str(bad), "-q"])  # fmt: skip
    assert code == 2
    assert "not a stop-event history file" in capsys.readouterr().err
