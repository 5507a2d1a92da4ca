"""The crime intelligence layers as GeoJSON (RFC 7946): Gi* hotspots, clusters, risk zones and incidents.

One query a layer, each named here and nowhere else; ``luminar-db export geojson`` and ``luminar-db map`` both read
through them, as the caller's login (the commands run as the owner):

- ``hotspots``: the significant cells (confidence 90, 95 or 99) of the schema's
  ``luminar_significant_hotspots(days, cell_m)`` (the last analyze's while fresh, else ``luminar_gistar``),
  each as its square (``luminar_cell_polygon``, the one definition of a cell's shape) with ``z``, ``p``, ``q``,
  ``confidence``, ``gi_bin``, ``class`` and ``incidents``;
- ``clusters``: the ``crime_clusters`` whose time span reaches into the window (``time_end`` at or after its
  start), as points with ``radius_m``, ``event_count``, the dominant type and ``confidence_score``;
- ``zones``: the ``risk_zones`` valid now (``valid_from`` passed, ``valid_until`` not yet), as polygons with
  ``risk_level``, ``risk_score``, ``crime_density`` and ``trend_direction``;
- ``events``: the window's incidents (``luminar_incidents``: one row per incident, at the event consensus chose) as
  points with ``event_type``, ``severity_level`` and ``timestamp``.

RFC 7946 is kept by construction: one FeatureCollection, positions in WGS 84 longitude, latitude order
(``ST_AsGeoJSON`` of EPSG:4326 geometries), no ``crs`` member (``ST_AsGeoJSON``'s option 0), polygon exteriors
counter-clockwise and holes clockwise (``ST_ForcePolygonCCW``), coordinates rounded to ``GEOJSON_DECIMALS`` (6),
properties plain JSON (times ISO 8601 in UTC, ids as text). Every feature names its ``layer``; the collection carries
one foreign member, ``luminar``: the window (from, to), days, cell_m and the layers asked for. All layers are read in
one read-only REPEATABLE READ transaction, so they describe one moment; the file is written as it is read (the
events of a long window never sit in memory at once).

Example::

    >>> from luminar_store.ops.connect import connect
    >>> with connect(settings) as conn, open("week.geojson", "w") as out:
    ...     write_geojson(conn, ExportRequest(days=7), out)
    {'hotspots': 12, 'clusters': 3, 'zones': 2, 'events': 190}
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO, TypeVar

import psycopg

from luminar_store import validation as v
from luminar_store.errors import OperationError, ValidationError
from luminar_store.limits import DEFAULT_CELL_M, GEOJSON_DECIMALS, MAX_CELL_M, MAX_DAYS, MIN_CELL_M
from luminar_store.repositories._errors import translated

__all__ = ["LAYERS", "QUERIES", "ExportRequest", "Window", "Layers", "snapshot", "layer_features", "collect",
           "write_geojson", "write_atomically", "iso_utc"]

T = TypeVar("T")

#: The layers, in the order they are written (and drawn: zones under hotspots under clusters under events).
LAYERS = ("zones", "hotspots", "clusters", "events")

# name: window
# The transaction's time and the window's start: every layer below reads now() of the same transaction.
WINDOW = "SELECT now() - make_interval(days => %(days)s), now()"

# name: hotspot_features
# The significant Gi* cells (confidence > 0: 90, 95 or 99) of luminar_significant_hotspots(%(days)s, %(cell_m)s)
# (the last analyze's while fresh, else computed now), each as its square; hot ones first, the strongest first.
HOTSPOT_FEATURES = """
SELECT 'cell_' || g.cell_row || '_' || g.cell_col AS id,
       ST_AsGeoJSON(luminar_cell_polygon(g.cell_row, g.cell_col, %(cell_m)s), %(decimals)s, 0)::json AS geometry,
       g.cell_row, g.cell_col, %(cell_m)s::float8 AS cell_m, g.latitude, g.longitude, g.incidents, g.neighbours,
       g.z, g.p, g.q, g.confidence, g.gi_bin, g.class, g.computed_at
  FROM luminar_significant_hotspots(%(days)s, %(cell_m)s) AS g
 WHERE g.confidence > 0
 ORDER BY g.gi_bin DESC, abs(g.z) DESC, g.cell_row, g.cell_col
"""

# name: cluster_features
# Clusters whose span reaches into the window (time_end at or after its start), as their centre; newest first.
CLUSTER_FEATURES = """
SELECT c.cluster_id::text AS id, ST_AsGeoJSON(c.centroid, %(decimals)s, 0)::json AS geometry,
       c.radius_m, c.event_count, c.dominant_crime_type, c.cluster_type, c.confidence_score, c.avg_severity,
       c.pattern_description, c.miner_uid, c.time_start, c.time_end
  FROM crime_clusters AS c
 WHERE c.time_end >= now() - make_interval(days => %(days)s)
 ORDER BY c.time_end DESC, c.cluster_id
"""

# name: zone_features
# Risk zones valid now (valid_from passed, valid_until not yet; the repository's rule), exteriors counter-clockwise
# and holes clockwise; highest risk first.
ZONE_FEATURES = """
SELECT z.zone_id::text AS id, ST_AsGeoJSON(ST_ForcePolygonCCW(z.boundary), %(decimals)s, 0)::json AS geometry,
       z.name, z.risk_level, z.risk_score, z.crime_types, z.crime_density, z.recent_incidents, z.trend_direction,
       z.valid_from, z.valid_until
  FROM risk_zones AS z
 WHERE z.valid_from <= now() AND (z.valid_until IS NULL OR z.valid_until > now())
 ORDER BY z.risk_level DESC, z.risk_score DESC, z.zone_id
"""

# name: event_features
# The window's incidents (one row per incident, at the event consensus chose); newest first.
EVENT_FEATURES = """
SELECT i.event_id::text AS id, ST_AsGeoJSON(i.geotag, %(decimals)s, 0)::json AS geometry,
       i.event_type, i.severity_level, i."timestamp", i.events, i.incident_key
  FROM luminar_incidents(now() - make_interval(days => %(days)s)) AS i
 ORDER BY i."timestamp" DESC, i.event_id
"""

#: Each layer's query.
QUERIES = {"hotspots": HOTSPOT_FEATURES, "clusters": CLUSTER_FEATURES, "zones": ZONE_FEATURES,
           "events": EVENT_FEATURES}


@dataclass(frozen=True)
class ExportRequest:
    """What to export: the last ``days`` (1..3650), Gi* cells of ``cell_m`` metres (50..50,000), the ``layers``
    (a subset of ``LAYERS``, written in ``LAYERS``' order). Raises ``ValidationError`` naming the field."""

    days: int = 7
    cell_m: float = DEFAULT_CELL_M
    layers: tuple[str, ...] = LAYERS

    def __post_init__(self) -> None:
        v.integer("days", self.days, minimum=1, maximum=MAX_DAYS)
        object.__setattr__(self, "cell_m", v.number("cell_m", self.cell_m, minimum=MIN_CELL_M, maximum=MAX_CELL_M))
        layers = tuple(self.layers)
        unknown = [name for name in layers if name not in LAYERS]
        if unknown or not layers:
            raise ValidationError("layers", f"must be one or more of {', '.join(LAYERS)}, got "
                                            f"{', '.join(map(repr, unknown)) or 'none'}")
        object.__setattr__(self, "layers", tuple(name for name in LAYERS if name in layers))


@dataclass(frozen=True)
class Window:
    """The moment an export describes: its window's start and end (the transaction's ``now()``)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Layers:
    """A whole export in memory (for the map): the window and each layer's features."""

    request: ExportRequest
    window: Window
    features: dict[str, list[dict[str, Any]]]

    def count(self) -> dict[str, int]:
        return {name: len(self.features[name]) for name in self.request.layers}


def iso_utc(value: datetime) -> str:
    """A time as ISO 8601 in UTC with a ``Z``: ``2026-11-30T04:54:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    return value


@contextmanager
def snapshot(conn: psycopg.Connection, request: ExportRequest) -> Iterator[Window]:
    """One read-only REPEATABLE READ transaction on ``conn`` (an autocommit connection) for every layer of an
    export; yields its window. Raises ``DatabaseUnavailableError`` when the connection is lost."""
    with translated(), conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        start, end = conn.execute(WINDOW, {"days": request.days}).fetchone()  # type: ignore[misc]
        yield Window(start, end)


def layer_features(conn: psycopg.Connection, request: ExportRequest, layer: str) -> Iterator[dict[str, Any]]:
    """The features of one layer, streamed from a server-side cursor (inside ``snapshot``). Raises
    ``ValidationError`` naming ``cell_m`` when the window's incidents span more Gi* cells than
    ``luminar_gistar_max_cells()`` (a larger cell or fewer days fixes it)."""
    params = {"days": request.days, "cell_m": request.cell_m, "decimals": GEOJSON_DECIMALS}
    try:
        with translated(), conn.cursor(name=f"luminar_export_{layer}") as cur:
            cur.itersize = 2_000
            cur.execute(QUERIES[layer], params)
            names = [d.name for d in cur.description or ()]
            for row in cur:
                record = dict(zip(names, row, strict=True))
                properties = {"layer": layer}
                properties.update((k, _plain(x)) for k, x in record.items() if k not in ("id", "geometry"))
                yield {"type": "Feature", "id": record["id"], "geometry": record["geometry"],
                       "properties": properties}
    except ValidationError as exc:  # luminar_gistar refuses a grid of too many cells (SQLSTATE 22023)
        raise ValidationError("cell_m", f"{exc.rule}; use a larger cell_m or fewer days") from exc


def collect(conn: psycopg.Connection, request: ExportRequest) -> Layers:
    """Every layer of ``request`` in memory, read in one snapshot (for the map)."""
    with snapshot(conn, request) as window:
        features = {layer: list(layer_features(conn, request, layer)) for layer in request.layers}
    return Layers(request, window, features)


def _header(request: ExportRequest, window: Window) -> dict[str, Any]:
    return {"days": request.days, "cell_m": request.cell_m, "layers": list(request.layers),
            "window": {"from": iso_utc(window.start), "to": iso_utc(window.end)}}


def write_geojson(conn: psycopg.Connection, request: ExportRequest, out: TextIO) -> dict[str, int]:
    """Write ``request``'s layers to ``out`` as one RFC 7946 FeatureCollection, a feature a line, as they are read;
    returns how many features each layer gave. Raises ``ValidationError`` (``cell_m``, see ``layer_features``)."""
    counts = dict.fromkeys(request.layers, 0)
    with snapshot(conn, request) as window:
        out.write('{"type":"FeatureCollection","luminar":' + json.dumps(_header(request, window), separators=(",", ":"))
                  + ',"features":[')
        first = True
        for layer in request.layers:
            for feature in layer_features(conn, request, layer):
                out.write(("\n" if first else ",\n") + json.dumps(feature, allow_nan=False, separators=(",", ":")))
                counts[layer] += 1
                first = False
        out.write("\n]}\n")
    return counts


def write_atomically(path: Path, write: Callable[[TextIO], T], *, force: bool = False) -> T:
    """Run ``write(file)`` on a new file beside ``path``, then rename it to ``path`` (readers never see half a file;
    a failure leaves ``path`` as it was); returns what ``write`` returned. Raises ``OperationError`` naming the path
    when it exists and ``force`` is false (before ``write`` runs), or when its directory is missing."""
    path = Path(path)
    if path.exists() and not force:
        raise OperationError(f"{path} already exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise OperationError(f"cannot write {path}: directory {path.parent} does not exist")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            result = write(out)
        mask = os.umask(0)  # mkstemp makes the file private; give it the mode a plain open() would
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return result
