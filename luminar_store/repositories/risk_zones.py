"""Risk zones: polygons with a risk level, valid over a period of time.

A boundary is given as a list of ``{"lat", "lng"}`` vertices (at least three; the ring is closed automatically) or
as a GeoJSON Polygon mapping (``[lng, lat]`` positions, holes allowed). Every number is checked by
``NewRiskZone`` (``luminar_store.models``); the polygon is then built by the server from a bound GeoJSON text
(``ST_GeomFromGeoJSON``), never from SQL text, and an invalid shape (edges that cross, no area) is refused with the
server's reason. Edges run straight in longitude/latitude.

Example::

    zones = RiskZoneRepository(conn)
    zone = await zones.store({"name": "Harbour district", "risk_level": 4, "risk_score": 0.8,
                              "boundary": [{"lat": 40.70, "lng": -74.02}, {"lat": 40.70, "lng": -74.00},
                                           {"lat": 40.72, "lng": -74.00}, {"lat": 40.72, "lng": -74.02}]})
    here = await zones.containing(40.71, -74.01)     # highest risk first
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.limits import (
    DEFAULT_CELL_M,
    DEFAULT_TREND_WEEKS,
    DEFAULT_ZONE_DAYS,
    MAX_CELL_M,
    MAX_CRIME_TYPES,
    MAX_DAYS,
    MAX_LIMIT,
    MAX_RINGS,
    MAX_TREND_WEEKS,
    MAX_VERTICES,
    MIN_CELL_M,
)
from luminar_store.models import NewRiskZone, RiskZone, ZoneAnalysis, boundary_geojson
from luminar_store.repositories._base import Repository
from luminar_store.repositories._errors import translated

__all__ = ["RiskZoneRepository", "ZONE_COLUMNS", "boundary_geojson", "validate_zone", "MAX_VERTICES", "MAX_RINGS",
           "MAX_CRIME_TYPES", "MADE_BY", "analysis_query", "analyze_risk_zones"]

#: Who made a zone (the ``made_by`` column): a node storing it, or the risk zone analysis.
MADE_BY = ("node", "analysis")

# name: zone_columns
# The columns of a RiskZone record, in its field order; boundary read back as GeoJSON with full precision.
# crime_density, recent_incidents and trend_direction (the network's names) are read; NewRiskZone does not take them
# yet, so a stored zone has them NULL (recent_incidents 0) until something writes them. trend_p_value and made_by
# are written by the analysis only (a stored zone: NULL and 'node').
ZONE_COLUMNS = """zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
       valid_from, valid_until, metadata, created_at, updated_at, crime_density, recent_incidents, trend_direction,
       trend_p_value, made_by"""

# Stores a zone when its polygon is valid; no row comes back when it is not (the caller then asks for the reason),
# so a refused shape never aborts the caller's transaction. boundary is read back as GeoJSON with full precision.
INSERT_ZONE = """
WITH shape AS (SELECT ST_SetSRID(ST_GeomFromGeoJSON(%(boundary)s::text), 4326) AS geom)
INSERT INTO risk_zones (name, boundary, risk_level, risk_score, crime_types, valid_from, valid_until, metadata,
                        crime_density, recent_incidents, trend_direction)
SELECT %(name)s, shape.geom, %(risk_level)s, %(risk_score)s, %(crime_types)s::text[],
       coalesce(%(valid_from)s::timestamptz, now()), %(valid_until)s::timestamptz, %(metadata)s,
       %(crime_density)s::float8, %(recent_incidents)s::integer, %(trend_direction)s::text
  FROM shape
 WHERE ST_IsValid(shape.geom) AND NOT ST_IsEmpty(shape.geom) AND ST_Area(shape.geom) > 0
RETURNING {zone_columns}
""".replace("{zone_columns}", ZONE_COLUMNS)

# Why a polygon was refused (ST_IsValidReason says "Valid Geometry" for a valid one with no area).
POLYGON_PROBLEM = """
SELECT ST_IsValidReason(ST_SetSRID(ST_GeomFromGeoJSON(%(boundary)s::text), 4326))
"""

# One zone by id.
GET_ZONE = """
SELECT {zone_columns}
  FROM risk_zones
 WHERE zone_id = %(zone_id)s
""".replace("{zone_columns}", ZONE_COLUMNS)

# Zones covering a point (on the edge counts as inside) and valid at a time, highest risk first.
# ST_Covers is answered through idx_risk_zones_boundary (GiST).
ZONES_CONTAINING = """
SELECT {zone_columns}
  FROM risk_zones
 WHERE ST_Covers(boundary, ST_SetSRID(ST_MakePoint(%(longitude)s, %(latitude)s), 4326))
   AND valid_from <= coalesce(%(at)s::timestamptz, now())
   AND (valid_until IS NULL OR valid_until > coalesce(%(at)s::timestamptz, now()))
 ORDER BY risk_level DESC, risk_score DESC, zone_id
 LIMIT %(limit)s
""".replace("{zone_columns}", ZONE_COLUMNS)

# Ends a zone's validity now; zones already ended, or not yet begun, are left alone (see expire()).
EXPIRE_ZONE = """
UPDATE risk_zones SET valid_until = now()
 WHERE zone_id = %(zone_id)s
   AND valid_from < now()
   AND (valid_until IS NULL OR valid_until > now())
RETURNING {zone_columns}
""".replace("{zone_columns}", ZONE_COLUMNS)

# Why EXPIRE_ZONE changed nothing: the zone has not begun yet (true), or has already ended (false).
ZONE_NOT_BEGUN = """
SELECT valid_from >= now() AS not_begun, valid_from FROM risk_zones WHERE zone_id = %(zone_id)s
"""

# name: analyze_risk_zones
# One run of the schema's risk zone analysis (hot cells of Gi* over the last %(days)s days in cells of %(cell_m)s
# metres, rook-connected into zones, Mann-Kendall trend over %(weeks)s weekly counts); replaces the analysis zones.
ANALYZE_ZONES = """
SELECT zones, hot_cells, regions, incidents, replaced, weeks
  FROM luminar_analyze_risk_zones(%(days)s, %(cell_m)s, %(weeks)s)
"""

# The valid zone covering a point with the highest risk (the schema's luminar_risk_at), or no row.
RISK_AT = """
SELECT {zone_columns}
  FROM luminar_risk_at(%(latitude)s, %(longitude)s)
""".replace("{zone_columns}", ZONE_COLUMNS)

# Zones valid now, made by %(made_by)s (NULL: anyone), of at least %(min_level)s, highest risk first.
ZONES_NOW = """
SELECT {zone_columns}
  FROM risk_zones
 WHERE valid_from <= now() AND (valid_until IS NULL OR valid_until > now())
   AND (%(made_by)s::text IS NULL OR made_by = %(made_by)s::text)
   AND risk_level >= %(min_level)s
 ORDER BY risk_level DESC, risk_score DESC, zone_id
 LIMIT %(limit)s
""".replace("{zone_columns}", ZONE_COLUMNS)


def analysis_query(days: int = DEFAULT_ZONE_DAYS, *, cell_m: float = DEFAULT_CELL_M,
                   weeks: int = DEFAULT_TREND_WEEKS) -> tuple[str, dict[str, Any]]:
    """The risk zone analysis query and its bound parameters (``ANALYZE_ZONES``): the one way to run it, for
    ``RiskZoneRepository.analyze`` and ``analyze_risk_zones`` (the command line's).

    Raises ``ValidationError`` (``days`` 1..3650, ``cell_m`` 50..50,000 metres, ``weeks`` 1..520) before any SQL.
    """
    return ANALYZE_ZONES, {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
                           "cell_m": v.number("cell_m", cell_m, minimum=MIN_CELL_M, maximum=MAX_CELL_M),
                           "weeks": v.integer("weeks", weeks, minimum=1, maximum=MAX_TREND_WEEKS)}


def _region_too_large(exc: ValidationError) -> ValidationError:
    return ValidationError("cell_m", f"{exc.rule}; use a larger cell_m or fewer days")


def analyze_risk_zones(conn: psycopg.Connection, days: int = DEFAULT_ZONE_DAYS, *, cell_m: float = DEFAULT_CELL_M,
                       weeks: int = DEFAULT_TREND_WEEKS) -> ZoneAnalysis:
    """Run the risk zone analysis on a (synchronous) connection of the schema's owner, in one transaction, and
    return what it did. The analysis zones of the previous run are replaced; zones stored by nodes are untouched.

    Raises ``ValidationError`` for a bad argument (before any SQL), and naming ``cell_m`` when a region of the
    window's incidents spans more than a million cells.

    Example: ``summary = analyze_risk_zones(conn, days=28, weeks=12)``
    """
    query, params = analysis_query(days, cell_m=cell_m, weeks=weeks)
    try:
        with translated(), conn.transaction(), conn.cursor(row_factory=class_row(ZoneAnalysis)) as cur:
            cur.execute(query, params)
            row = cur.fetchone()
    except ValidationError as exc:  # a region of more than a million cells (SQLSTATE 22023)
        raise _region_too_large(exc) from exc
    assert row is not None  # the function returns one row
    return row


def validate_zone(zone: NewRiskZone | Mapping[str, Any]) -> dict[str, Any]:
    """The bound parameters of a zone, checked by ``NewRiskZone.coerce``; raises ``ValidationError`` naming the
    field (``zone`` for unknown keys or a value of another kind)."""
    z = NewRiskZone.coerce(zone)
    return {"name": z.name, "boundary": json.dumps(z.boundary), "risk_level": z.risk_level,
            "risk_score": z.risk_score, "crime_types": list(z.crime_types or ()), "valid_from": z.valid_from,
            "valid_until": z.valid_until, "metadata": Jsonb(z.metadata), "crime_density": z.crime_density,
            "recent_incidents": z.recent_incidents, "trend_direction": z.trend_direction}


class RiskZoneRepository(Repository):
    """Reads and writes ``risk_zones`` on one async connection (the caller owns the transaction)."""

    async def store(self, zone: NewRiskZone | Mapping[str, Any]) -> RiskZone:
        """Store a new risk zone.

        Args:
            zone: a ``NewRiskZone`` or a mapping with its field names (checked by ``NewRiskZone.coerce``:
                ``name``, ``boundary``, ``risk_level`` and ``risk_score`` are required; unknown keys are refused).

        Returns:
            The stored ``RiskZone`` (``boundary`` as a closed GeoJSON Polygon).

        Raises:
            ValidationError: naming the field, before any SQL; or ``boundary`` when the server finds the polygon
                invalid (self-intersecting, no area), with its reason. Nothing is stored.

        Example::

            zone = await zones.store(NewRiskZone(name="Docks", risk_level=3, risk_score=0.6,
                                                 boundary=[{"lat": 0, "lng": 0}, {"lat": 0, "lng": 1},
                                                           {"lat": 1, "lng": 1}]))
        """
        params = validate_zone(zone)
        row = await self._one(INSERT_ZONE, params, RiskZone)
        if row is None:
            reason = await self._value(POLYGON_PROBLEM, params)
            if reason == "Valid Geometry":
                reason = "it encloses no area"
            raise ValidationError("boundary", f"is not a valid polygon: {reason}; check the order of the vertices "
                                              "(edges must not cross)")
        return row

    async def get(self, zone_id: UUID | str) -> RiskZone | None:
        """One zone, or ``None`` when no zone has this id.

        Raises ``ValidationError`` (``zone_id``) before any SQL.

        Example::

            zone = await zones.get(zone_id)
        """
        params = {"zone_id": v.uuid_value("zone_id", zone_id)}
        return await self._one(GET_ZONE, params, RiskZone)

    async def containing(self, latitude: float, longitude: float, *, at: datetime | None = None,
                         limit: int = 100) -> list[RiskZone]:
        """Zones whose boundary covers a point (the edge counts as inside) and that are valid at ``at``.

        Valid at ``at`` means ``valid_from <= at`` and (no ``valid_until`` or ``at < valid_until``).

        Args:
            latitude, longitude: the point in degrees ([-90, 90], [-180, 180]).
            at: the moment (timezone-aware; past or future); defaults to now.
            limit: at most this many (1..10,000).

        Returns:
            ``RiskZone`` list, highest ``risk_level`` first (then ``risk_score``).

        Raises ``ValidationError`` (``latitude``, ``longitude``, ``at``, ``limit``) before any SQL.

        Example::

            worst = (await zones.containing(40.71, -74.01))[:1]
        """
        params = {
            "latitude": v.latitude("latitude", latitude),
            "longitude": v.longitude("longitude", longitude),
            "at": None if at is None else v.aware_datetime("at", at, allow_future=True),
            "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT),
        }
        return await self._all(ZONES_CONTAINING, params, RiskZone)

    async def expire(self, zone_id: UUID | str) -> RiskZone:
        """End a zone's validity now (``valid_until = now()``); returns the zone. Idempotent: a zone that has
        already ended keeps its ``valid_until``.

        Raises:
            ValidationError: ``zone_id`` malformed (before any SQL).
            NotFoundError: no zone has this id.
            ConflictError: the zone only becomes valid in the future (it cannot end before it begins).

        Example::

            await zones.expire(zone.zone_id)
        """
        params = {"zone_id": v.uuid_value("zone_id", zone_id)}
        row = await self._one(EXPIRE_ZONE, params, RiskZone)
        if row is not None:
            return row
        async with self._connection() as conn:
            cur = await conn.execute(ZONE_NOT_BEGUN, params)
            state = await cur.fetchone()
        if state is None:
            raise NotFoundError(f"zone_id: no risk zone {params['zone_id']}")
        if state[0]:
            raise ConflictError(f"risk zone {params['zone_id']} only becomes valid at {state[1].isoformat()}; "
                                "it cannot expire before it begins")
        current = await self.get(params["zone_id"])
        assert current is not None  # seen just above
        return current

    async def analyze(self, days: int = DEFAULT_ZONE_DAYS, *, cell_m: float = DEFAULT_CELL_M,
                      weeks: int = DEFAULT_TREND_WEEKS) -> ZoneAnalysis:
        """Run the risk zone analysis (the schema's ``luminar_analyze_risk_zones``; the owner's right): the hot
        cells (Gi*, 95 %) of the incidents of the last ``days`` (1..3650) in equal-area cells of ``cell_m`` metres
        (50..50,000), rook-connected into zones, each with its density, level, recent incidents and Mann-Kendall
        trend over the last ``weeks`` (1..520) weekly counts. Replaces the previous analysis zones.

        Raises ``ValidationError`` for a bad argument (before any SQL), and naming ``cell_m`` when a region spans
        more than a million cells.

        Example: ``summary = await RiskZoneRepository(conn).analyze(days=28)``
        """
        query, params = analysis_query(days, cell_m=cell_m, weeks=weeks)
        try:
            row = await self._one(query, params, ZoneAnalysis)
        except ValidationError as exc:
            raise _region_too_large(exc) from exc
        assert row is not None  # the function returns one row
        return row

    async def risk_at(self, latitude: float, longitude: float) -> RiskZone | None:
        """The zone valid now that covers the point with the highest risk (level, then score), node-made or
        analysis-made, or ``None`` outside every zone (the schema's ``luminar_risk_at``).

        Raises ``ValidationError`` (``latitude`` in [-90, 90], ``longitude`` in [-180, 180]) before any SQL.

        Example: ``zone = await zones.risk_at(40.71, -74.01)``
        """
        params = {"latitude": v.latitude("latitude", latitude), "longitude": v.longitude("longitude", longitude)}
        return await self._one(RISK_AT, params, RiskZone)

    async def current(self, *, made_by: str | None = None, min_level: int = 1, limit: int = 100) -> list[RiskZone]:
        """Zones valid now, highest risk first: of ``made_by`` (``"node"``, ``"analysis"``; ``None`` for both) and
        of at least ``min_level`` (1..5), at most ``limit`` (1..10,000).

        Raises ``ValidationError`` naming the field, before any SQL.

        Example: ``made = await zones.current(made_by="analysis")``
        """
        params = {"made_by": None if made_by is None else v.choice("made_by", made_by, MADE_BY),
                  "min_level": v.integer("min_level", min_level, minimum=1, maximum=5),
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(ZONES_NOW, params, RiskZone)
