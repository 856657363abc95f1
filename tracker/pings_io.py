"""Read pings from files and write match results as CSV.

`read_pings` understands four layouts, chosen by the path:

* a directory: every ``*.pb`` file in it, sorted by name, as GTFS-realtime (below);
* ``.pb`` / ``.bin``: a GTFS-realtime ``FeedMessage``, one ping per vehicle entity with a position;
* ``.jsonl`` / ``.ndjson`` / ``.json``: one JSON object per line, keys as in the generic CSV;
* anything else: CSV, either the flattened GTFS-realtime layout (detected by a
  ``vehicle.position.latitude`` column) or the generic layout with columns ``vehicle_id``,
  ``timestamp``, ``lat``, ``lon`` and optional ``speed`` (m/s), ``bearing`` (degrees),
  ``accuracy`` (m), ``route_id``, ``trip_id``. ``latitude``/``longitude`` are accepted for
  ``lat``/``lon``, in CSV and JSON alike. Empty cells mean missing.

Timestamps may be epoch seconds, epoch milliseconds (any number above 1e11) or ISO 8601 with a
time of day; an ISO time without an offset is taken as UTC. Ids written as integral floats by
pandas ("30095100.0") are read as "30095100". Records that cannot be decoded come out as
`BadRow` in file order, alongside the pings; NaN values are passed through for `validate_ping`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TextIO, TypeVar

from google.protobuf.message import DecodeError
from google.transit import gtfs_realtime_pb2

from tracker.core.model import Match, Ping, Reason, State
from tracker.errors import PingFileError

MATCH_COLUMNS: tuple[str, ...] = (
    "vehicle_id",
    "timestamp",
    "route_id",
    "trip_id",
    "service_date",
    "direction_id",
    "shape_id",
    "shape_dist_m",
    "snapped_lat",
    "snapped_lon",
    "offset_m",
    "delay_s",
    "headway_s",
    "state",
    "reason",
    "detail",
)

_PB_SUFFIXES = {".pb", ".bin"}
_JSON_SUFFIXES = {".jsonl", ".ndjson", ".json"}
_MS_THRESHOLD = 1e11  # epoch seconds reach 1e11 in the year 5138; milliseconds passed it in 1973
_INTEGRAL_FLOAT = re.compile(r"(\d+)\.0+")


@dataclass(frozen=True, slots=True)
class BadRow:
    """A record that could not be decoded into a `Ping`; `record` is 1-based within its file."""

    record: int
    vehicle_id: str | None
    timestamp: float | None
    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each Ping field lives in a mapping record; the first non-empty alias wins."""

    vehicle_id: tuple[str, ...]
    timestamp: tuple[str, ...]
    lat: tuple[str, ...]
    lon: tuple[str, ...]
    speed: tuple[str, ...]
    bearing: tuple[str, ...]
    accuracy: tuple[str, ...]
    route_id: tuple[str, ...]
    trip_id: tuple[str, ...]

    def required(self) -> tuple[tuple[str, ...], ...]:
        return self.vehicle_id, self.timestamp, self.lat, self.lon


_GENERIC = _Layout(
    vehicle_id=("vehicle_id",),
    timestamp=("timestamp",),
    lat=("lat", "latitude"),
    lon=("lon", "longitude"),
    speed=("speed",),
    bearing=("bearing",),
    accuracy=("accuracy",),
    route_id=("route_id",),
    trip_id=("trip_id",),
)
_GTFS_RT_CSV = _Layout(
    vehicle_id=("vehicle.vehicle.id", "vehicle.vehicle.label", "id"),
    timestamp=("vehicle.timestamp",),
    lat=("vehicle.position.latitude",),
    lon=("vehicle.position.longitude",),
    speed=("vehicle.position.speed",),
    bearing=("vehicle.position.bearing",),
    accuracy=(),
    route_id=("vehicle.trip.route_id",),
    trip_id=("vehicle.trip.trip_id",),
)


def read_pings(path: Path, *, ignore_trip_ids: bool = False) -> Iterator[Ping | BadRow]:
    """Yield a `Ping` or a `BadRow` for every record of `path`, in file order.

    Raises `PingFileError` if the file cannot be read as pings at all: at call time for a missing
    file, an empty directory or a CSV header without the required columns; during iteration for
    a corrupt protobuf. A bad record never raises. `ignore_trip_ids` drops route and trip ids.
    """
    items = _read(Path(path))
    if not ignore_trip_ids:
        return items
    return (
        dataclasses.replace(it, route_id=None, trip_id=None) if isinstance(it, Ping) else it
        for it in items
    )


def _read(path: Path) -> Iterator[Ping | BadRow]:
    """Pick the reader for `path` and check what can be checked before reading any record."""
    if path.is_dir():
        files = sorted(path.glob("*.pb"))
        if not files:
            raise PingFileError(f"{path}: directory has no *.pb files")
        return _read_pb(files, name_files=True)
    suffix = path.suffix.lower()
    if suffix in _PB_SUFFIXES:
        if not path.is_file():
            raise PingFileError(f"{path}: no such file")
        return _read_pb([path], name_files=False)
    if suffix in _JSON_SUFFIXES:
        with _open_text(path) as f:
            if f.read(4096).lstrip().startswith("["):
                raise PingFileError(f"{path}: is a JSON array; expected one JSON object per line")
        return _read_jsonl(path)
    with _open_text(path) as f:
        try:
            header = next(csv.reader(f), None)
        except csv.Error as e:  # a header cell over csv's field size limit (128 KiB)
            raise PingFileError(f"{path}: the CSV header cannot be read ({e})") from None
    if header is None:
        raise PingFileError(f"{path}: is empty; expected a CSV header")
    header = [name.strip() for name in header]
    layout = _GTFS_RT_CSV if "vehicle.position.latitude" in header else _GENERIC
    missing = [_names(aliases) for aliases in layout.required() if not set(aliases) & set(header)]
    if missing:
        columns = ", ".join(missing)
        raise PingFileError(f"{path}: missing required column(s) {columns}; header {header!r:.300}")
    return _read_csv(path, header, layout)


def _open_text(path: Path) -> TextIO:
    """Open as UTF-8 (BOM tolerated); bad bytes become U+FFFD so one bad row stays one bad row."""
    try:
        return path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as e:
        raise PingFileError(f"{path}: cannot open ({e.strerror})") from e


def _read_csv(path: Path, header: list[str], layout: _Layout) -> Iterator[Ping | BadRow]:
    """Row N is the N-th record after the header (blank lines count but yield nothing)."""
    with _open_text(path) as f:
        rows = csv.reader(f)
        next(rows)  # the header, already checked
        number = 0
        while True:
            number += 1
            try:
                row = next(rows)
            except StopIteration:
                return
            except csv.Error as e:  # a cell over csv's field size limit: the reader goes on
                yield BadRow(number, None, None, Reason.MALFORMED, f"row {number}: {e}")
                continue
            if row:
                yield _decode(dict(zip(header, row, strict=False)), layout, number, "row", "column")


def _read_jsonl(path: Path) -> Iterator[Ping | BadRow]:
    """Record N is line N of the file; blank lines are skipped."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                yield BadRow(number, None, None, Reason.MALFORMED, f"line {number}: not JSON ({e})")
                continue
            except RecursionError:  # "[[[[...": nested deeper than Python recurses
                detail = f"line {number}: JSON nested too deep"
                yield BadRow(number, None, None, Reason.MALFORMED, detail)
                continue
            yield decode_json_record(obj, number, "line")


def decode_json_record(obj: object, number: int = 1, unit: str = "message") -> Ping | BadRow:
    """Decode one JSON value in the generic layout (the MQTT payload and JSONL line format)."""
    if not isinstance(obj, dict):
        detail = f"{unit} {number}: expected a JSON object, got {type(obj).__name__}"
        return BadRow(number, None, None, Reason.MALFORMED, detail)
    return _decode(obj, _GENERIC, number, unit, "key")


def _read_pb(files: Sequence[Path], *, name_files: bool) -> Iterator[Ping | BadRow]:
    """Record N is the N-th entity of its file; entities without a vehicle position are skipped."""
    for path in files:
        feed = gtfs_realtime_pb2.FeedMessage()
        try:
            feed.ParseFromString(path.read_bytes())
        except OSError as e:
            raise PingFileError(f"{path}: cannot read ({e.strerror})") from e
        except DecodeError as e:
            raise PingFileError(f"{path}: not a GTFS-realtime FeedMessage ({e})") from e
        prefix = f"{path.name} " if name_files else ""
        header_ts: int = feed.header.timestamp
        for number, entity in enumerate(feed.entity, start=1):
            if entity.is_deleted or not entity.HasField("vehicle"):
                continue
            vp = entity.vehicle
            if not vp.HasField("position"):
                continue
            where = f"{prefix}entity {number}"
            vehicle_id: str = vp.vehicle.id.strip() or vp.vehicle.label.strip() or entity.id.strip()
            raw_ts: int = vp.timestamp or header_ts  # real feeds leave the vehicle's at 0
            timestamp = _epoch(float(raw_ts)) if raw_ts else None
            if not vehicle_id:
                detail = f"{where}: no vehicle id, vehicle label or entity id"
                yield BadRow(number, None, timestamp, Reason.MALFORMED, detail)
            elif timestamp is None:
                detail = f"{where}: no timestamp in the vehicle or the feed header"
                yield BadRow(number, vehicle_id, None, Reason.BAD_TIMESTAMP, detail)
            else:
                pos = vp.position
                yield Ping(
                    vehicle_id=vehicle_id,
                    timestamp=timestamp,
                    lat=pos.latitude,
                    lon=pos.longitude,
                    speed_mps=pos.speed if pos.HasField("speed") else None,
                    bearing_deg=pos.bearing if pos.HasField("bearing") else None,
                    route_id=vp.trip.route_id.strip() or None,
                    trip_id=vp.trip.trip_id.strip() or None,
                )


class _FieldError(Exception):
    """One field of a record is missing or unparsable; the message becomes the BadRow detail."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _decode(
    rec: Mapping[str, object], layout: _Layout, number: int, unit: str, word: str
) -> Ping | BadRow:
    """Decode a CSV row or JSON object; `unit` and `word` phrase errors ("row 3: column 'lat'")."""
    vehicle_id: str | None = None
    timestamp: float | None = None
    error: _FieldError | None = None
    try:
        vehicle_id = _required(rec, layout.vehicle_id, word, _id)
    except _FieldError as e:
        error = e
    try:
        timestamp = _required(rec, layout.timestamp, word, _timestamp)
    except _FieldError as e:
        error = error or e
    if vehicle_id is not None and timestamp is not None:
        try:
            return Ping(
                vehicle_id=vehicle_id,
                timestamp=timestamp,
                lat=_required(rec, layout.lat, word, _number),
                lon=_required(rec, layout.lon, word, _number),
                speed_mps=_optional(rec, layout.speed, word, _number),
                bearing_deg=_optional(rec, layout.bearing, word, _number),
                accuracy_m=_optional(rec, layout.accuracy, word, _number),
                route_id=_optional(rec, layout.route_id, word, _id),
                trip_id=_optional(rec, layout.trip_id, word, _id),
            )
        except _FieldError as e:
            error = e
    assert error is not None
    return BadRow(number, vehicle_id, timestamp, error.reason, f"{unit} {number}: {error}")


_T = TypeVar("_T")
_Parser = Callable[[object, str], _T]


def _required(
    rec: Mapping[str, object], aliases: tuple[str, ...], word: str, parse: _Parser[_T]
) -> _T:
    """Parse the first non-empty alias; raise MALFORMED if there is none."""
    for name in aliases:
        if not _is_empty(rec.get(name)):
            return parse(rec[name], f"{word} {name!r}")
    present = [rec[name] for name in aliases if name in rec]
    state = "missing" if not present else "null" if None in present else "empty"
    raise _FieldError(Reason.MALFORMED, f"{word} {_names(aliases)} is {state}")


def _optional(
    rec: Mapping[str, object], aliases: tuple[str, ...], word: str, parse: _Parser[_T]
) -> _T | None:
    """Parse the first non-empty alias, or return None if there is none."""
    for name in aliases:
        if not _is_empty(rec.get(name)):
            return parse(rec[name], f"{word} {name!r}")
    return None


def _is_empty(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _names(aliases: tuple[str, ...]) -> str:
    """ "'lat' (or 'latitude')" for error messages."""
    first, *others = aliases
    return f"{first!r}" + "".join(f" (or {name!r})" for name in others)


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        if "\ufffd" in value:
            raise _FieldError(Reason.MALFORMED, f"{what} is not valid UTF-8: {value!r}")
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise _FieldError(Reason.MALFORMED, f"{what} is {value!r}, not a string or number")


def _id(value: object, what: str) -> str:
    """An id as text; integral floats written by pandas ("4582.0", 4582.0) lose the ".0"."""
    text = _text(value, what)
    whole = _INTEGRAL_FLOAT.fullmatch(text)
    return whole.group(1) if whole else text


def _number(value: object, what: str) -> float:
    """A float from a JSON number or a decimal string ("nan" and "inf" included)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # a JSON integer of hundreds of digits
            detail = f"{what} is an integer too large for a float"
            raise _FieldError(Reason.MALFORMED, detail) from None
    text = _text(value, what)
    try:
        if "_" not in text:  # float() would accept "1_000"
            return float(text)
    except ValueError:
        pass
    raise _FieldError(Reason.MALFORMED, f"{what} is {value!r}, not a number")


def _timestamp(value: object, what: str) -> float:
    """Epoch seconds from epoch seconds, epoch milliseconds or ISO 8601 (naive means UTC)."""
    try:
        return _epoch(_number(value, what))
    except _FieldError:
        pass
    text = _text(value, what)
    if len(text) > 10:  # a bare date ("2026-02-16") is not a time
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    raise _FieldError(
        Reason.BAD_TIMESTAMP,
        f"{what} is {value!r}, not epoch seconds, epoch milliseconds or an ISO 8601 time",
    )


def _epoch(number: float) -> float:
    """Epoch seconds from a number that may be in milliseconds."""
    return number / 1000 if number > _MS_THRESHOLD else number


class MatchWriter:
    """Write matches as CSV rows with `MATCH_COLUMNS`; use as a context manager or call close()."""

    def __init__(self, path: Path) -> None:
        # The writer owns the file until close() or the end of its `with` block.
        self._file = Path(path).open("w", encoding="utf-8", newline="")  # noqa: SIM115
        self._csv = csv.writer(self._file)
        self._csv.writerow(MATCH_COLUMNS)

    def write(self, match: Match) -> None:
        """Append one row; None and NaN become empty cells."""
        m = match
        self._csv.writerow(
            (
                m.vehicle_id,
                _fmt(m.timestamp, None),
                m.route_id,
                m.trip_id,
                m.service_date,
                m.direction_id,
                m.shape_id,
                _fmt(m.shape_dist_m, 1),
                _fmt(m.snapped_lat, 7),
                _fmt(m.snapped_lon, 7),
                _fmt(m.offset_m, 1),
                _fmt(m.delay_s, 1),
                _fmt(m.headway_s, 1),
                m.state.value,
                m.reason.value if m.reason else None,
                m.detail,
            )
        )

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _fmt(value: float | None, decimals: int | None) -> str:
    """`value` rounded to `decimals` (None: as given), without a trailing '.0' if integral."""
    if value is None or math.isnan(value):
        return ""
    if decimals is not None:
        value = round(value, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    if math.isfinite(value) and value.is_integer():
        return str(int(value))
    return repr(value)


def bad_row_match(bad: BadRow) -> Match:
    """The REJECTED match for a record that could not be decoded."""
    return Match(
        vehicle_id=bad.vehicle_id or "",
        timestamp=math.nan if bad.timestamp is None else bad.timestamp,
        state=State.REJECTED,
        reason=bad.reason,
        detail=bad.detail,
    )
