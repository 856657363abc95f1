"""The network as GeoJSON (RFC 7946): route shapes as LineStrings, stops as Points.

Pure: values in, plain dicts out (ready for `json.dumps`). Positions are ``[lon, lat]`` in WGS84
degrees, rounded to `decimals` (6 decimals ≈ 0.1 m, 5 ≈ 1 m). Every feature has a ``kind``
property, ``"shape"`` or ``"stop"``, so a map can style a mixed collection.

Colours are CSS ``"#RRGGBB"``, or None when the feed gives none (the client picks one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from tracker.core.departures import headsign
from tracker.core.network import FloatArray, Network

GeoJson = dict[str, Any]
BBox = tuple[float, float, float, float]
"""(min_lon, min_lat, max_lon, max_lat), degrees."""

NETWORK_TOLERANCE_M = 5.0  # simplification of the whole-network shapes
NETWORK_DECIMALS = 5  # ≈ 1 m, below the simplification
ROUTE_DECIMALS = 6

_HEX_COLOR = re.compile(r"[0-9A-Fa-f]{6}")


def css_color(gtfs_color: str) -> str | None:
    """GTFS ``RRGGBB`` as CSS ``#RRGGBB`` (upper case); None when blank or not a colour."""
    text = gtfs_color.strip().removeprefix("#")
    return f"#{text.upper()}" if _HEX_COLOR.fullmatch(text) else None


@dataclass(frozen=True, slots=True)
class ShapeUse:
    """What the trips following one shape have in common, for its feature's properties."""

    shape_idx: int
    route_idxs: tuple[int, ...]  # in feed order
    direction_id: int | None  # None when the trips disagree or the feed does not say
    headsigns: tuple[str, ...]  # sorted


def shape_uses(network: Network, *, route_idx: int | None = None) -> list[ShapeUse]:
    """The shapes trips follow (only those of one route if `route_idx` is given), by shape."""
    routes: dict[int, set[int]] = {}
    directions: dict[int, set[int]] = {}
    headsigns: dict[int, set[str]] = {}
    for trip_idx, trip in enumerate(network.trips):
        if route_idx is not None and trip.route_idx != route_idx:
            continue
        routes.setdefault(trip.shape_idx, set()).add(trip.route_idx)
        directions.setdefault(trip.shape_idx, set()).add(trip.direction_id)
        headsigns.setdefault(trip.shape_idx, set()).add(headsign(network, trip_idx))
    out = []
    for shape_idx in sorted(routes):
        (only, *more) = directions[shape_idx]
        direction = only if not more and only >= 0 else None
        out.append(
            ShapeUse(shape_idx, tuple(sorted(routes[shape_idx])), direction,
                     tuple(sorted(headsigns[shape_idx])))
        )  # fmt: skip
    return out


def line_positions(
    network: Network, shape_idx: int, *, tolerance_m: float = 0.0, decimals: int = ROUTE_DECIMALS
) -> list[list[float]]:
    """A shape's points as GeoJSON positions, simplified to `tolerance_m` metres (0: as is)."""
    xy: FloatArray = network.shapes[shape_idx].xy_m
    if tolerance_m > 0 and len(xy) > 2:
        simplified = shapely.simplify(shapely.linestrings(xy), tolerance_m, preserve_topology=False)
        xy = np.asarray(shapely.get_coordinates(simplified), dtype=np.float64)
    lat, lon = network.unproject(xy[:, 0], xy[:, 1])
    positions = np.round(np.column_stack([lon, lat]), decimals).tolist()
    # Rounding may merge neighbours; a LineString needs two distinct positions.
    out: list[list[float]] = [positions[0]]
    for position in positions[1:]:
        if position != out[-1]:
            out.append(position)
    if len(out) == 1:
        out.append(out[0])
    return out


def _feature(geometry: GeoJson, properties: GeoJson) -> GeoJson:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _stop_feature(network: Network, stop_id: str, decimals: int) -> GeoJson:
    name, lat, lon = network.stops[stop_id]
    point = {"type": "Point", "coordinates": [round(lon, decimals), round(lat, decimals)]}
    return _feature(point, {"kind": "stop", "stop_id": stop_id, "name": name})


def _shape_feature(
    network: Network, use: ShapeUse, *, tolerance_m: float, decimals: int
) -> GeoJson:
    shape = network.shapes[use.shape_idx]
    route = network.routes[use.route_idxs[0]]
    line = {
        "type": "LineString",
        "coordinates": line_positions(
            network, use.shape_idx, tolerance_m=tolerance_m, decimals=decimals
        ),
    }
    return _feature(
        line,
        {
            "kind": "shape",
            "shape_id": shape.shape_id,
            "route_id": route.route_id,
            "route_ids": [network.routes[r].route_id for r in use.route_idxs],
            "short_name": route.short_name,
            "direction_id": use.direction_id,
            "headsigns": list(use.headsigns),
            "color": css_color(route.color),
            "text_color": css_color(route.text_color),
            "from_stops": shape.from_stops,
        },
    )


def feature_collection(features: Iterable[GeoJson], **members: Any) -> GeoJson:
    """A FeatureCollection; `members` are added at the top level (RFC 7946 foreign members)."""
    return {"type": "FeatureCollection", "features": list(features), **members}


def route_collection(network: Network, route_id: str) -> GeoJson:
    """One route: a LineString per distinct shape its trips follow, then a Point per stop.

    A shape feature's ``from_stops`` is true when the feed had no shape and the line joins the
    stops. Raises `KeyError` for a route that is not in the feed.
    """
    route_idx = network.route_index.get(route_id)
    if route_idx is None:
        raise KeyError(f"route {route_id!r} is not in the feed")
    uses = shape_uses(network, route_idx=route_idx)
    lines = [_shape_feature(network, u, tolerance_m=0.0, decimals=ROUTE_DECIMALS) for u in uses]
    stop_ids: dict[str, None] = {}  # ordered set: stops in the order the route serves them
    for trip in network.trips:
        if trip.route_idx == route_idx:
            stop_ids.update(dict.fromkeys(network.patterns[trip.pattern_idx].stop_ids))
    stops = [_stop_feature(network, s, ROUTE_DECIMALS) for s in stop_ids if s in network.stops]
    return feature_collection([*lines, *stops], route_id=route_id)


def network_collection(
    network: Network,
    *,
    tolerance_m: float = NETWORK_TOLERANCE_M,
    decimals: int = NETWORK_DECIMALS,
) -> GeoJson:
    """Every shape a trip follows, one LineString feature each, simplified to `tolerance_m`."""
    features = [
        _shape_feature(network, use, tolerance_m=tolerance_m, decimals=decimals)
        for use in shape_uses(network)
    ]
    return feature_collection(features, feed_hash=network.feed_hash)


def stops_collection(network: Network, *, bbox: BBox | None = None, limit: int = 1000) -> GeoJson:
    """Stops inside `bbox` (edges included; every stop when None) as Point features.

    At most `limit`, nearest the middle of the box first, so a cut-off list still covers the
    view's centre; the collection's ``truncated`` member says whether stops were left out.
    """
    inside: list[tuple[float, str]] = []
    if bbox is None:
        inside = [(0.0, stop_id) for stop_id in sorted(network.stops)]
    else:
        min_lon, min_lat, max_lon, max_lat = bbox
        mid_lon, mid_lat = (min_lon + max_lon) / 2, (min_lat + max_lat) / 2
        lon_scale = math.cos(math.radians(mid_lat))
        for stop_id, (_, lat, lon) in network.stops.items():
            if min_lon <= lon <= max_lon and min_lat <= lat <= max_lat:
                away = ((lon - mid_lon) * lon_scale) ** 2 + (lat - mid_lat) ** 2
                inside.append((away, stop_id))
        inside.sort()
    features = [_stop_feature(network, s, ROUTE_DECIMALS) for _, s in inside[:limit]]
    return feature_collection(features, truncated=len(inside) > limit)


def network_bounds(network: Network) -> BBox | None:
    """The box around every stop and shape point, or None for an empty network."""
    lats = [lat for _, lat, _ in network.stops.values()]
    lons = [lon for _, _, lon in network.stops.values()]
    if network.shapes:
        xy = np.concatenate([shape.xy_m for shape in network.shapes])
        lat, lon = network.unproject(xy[:, 0], xy[:, 1])
        lats += [float(lat.min()), float(lat.max())]
        lons += [float(lon.min()), float(lon.max())]
    if not lats:
        return None
    return min(lons), min(lats), max(lons), max(lats)
