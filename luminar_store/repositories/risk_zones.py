"""Risk zones: polygons with a risk level, valid over a period of time.

A boundary is given as a list of ``{"lat", "lng"}`` vertices (at least three; the ring is closed automatically) or
as a GeoJSON Polygon mapping (``[lng, lat]`` positions, holes allowed). Every number is checked here; the polygon is
then built by the server from a bound GeoJSON text (``ST_GeomFromGeoJSON``), never from SQL text, and an invalid
shape (edges that cross, no area) is refused with the server's reason. Edges run straight in longitude/latitude.

Example::

    zones = RiskZoneRepository(conn)
    zone = await zones.store({"name": "Harbour district", "risk_level": 4, "risk_score": 0.8,
                              "boundary": [{"lat": 40.70, "lng": -74.02}, {"lat": 40.70, "lng": -74.00},
                                           {"lat": 40.72, "lng": -74.00}, {"lat": 40.72, "lng": -74.02}]})
    here = await zones.containing(40.71, -74.01)     # highest risk first
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.models import NewRiskZone, RiskZone
from luminar_store.repositories._errors import translated

__all__ = ["RiskZoneRepository", "boundary_geojson", "validate_zone"]

#: Most vertices of a boundary (all rings together) and most rings (the shell and its holes).
MAX_VERTICES = 10_000
MAX_RINGS = 100
#: Most crime types one zone may list.
MAX_CRIME_TYPES = 64
_INPUT_FIELDS = {f.name for f in dataclasses.fields(NewRiskZone)}

# Stores a zone when its polygon is valid; no row comes back when it is not (the caller then asks for the reason),
# so a refused shape never aborts the caller's transaction. boundary is read back as GeoJSON with full precision.
INSERT_ZONE = """
WITH shape AS (SELECT ST_SetSRID(ST_GeomFromGeoJSON(%(boundary)s::text), 4326) AS geom)
INSERT INTO risk_zones (name, boundary, risk_level, risk_score, crime_types, valid_from, valid_until, metadata)
SELECT %(name)s, shape.geom, %(risk_level)s, %(risk_score)s, %(crime_types)s::text[],
       coalesce(%(valid_from)s::timestamptz, now()), %(valid_until)s::timestamptz, %(metadata)s
  FROM shape
 WHERE ST_IsValid(shape.geom) AND NOT ST_IsEmpty(shape.geom) AND ST_Area(shape.geom) > 0
RETURNING zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
          valid_from, valid_until, metadata, created_at, updated_at
"""

# Why a polygon was refused (ST_IsValidReason says "Valid Geometry" for a valid one with no area).
POLYGON_PROBLEM = """
SELECT ST_IsValidReason(ST_SetSRID(ST_GeomFromGeoJSON(%(boundary)s::text), 4326))
"""

# One zone by id.
GET_ZONE = """
SELECT zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
       valid_from, valid_until, metadata, created_at, updated_at
  FROM risk_zones
 WHERE zone_id = %(zone_id)s
"""

# Zones covering a point (on the edge counts as inside) and valid at a time, highest risk first.
# ST_Covers is answered through idx_risk_zones_boundary (GiST).
ZONES_CONTAINING = """
SELECT zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
       valid_from, valid_until, metadata, created_at, updated_at
  FROM risk_zones
 WHERE ST_Covers(boundary, ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326))
   AND valid_from <= coalesce(%(at)s::timestamptz, now())
   AND (valid_until IS NULL OR valid_until > coalesce(%(at)s::timestamptz, now()))
 ORDER BY risk_level DESC, risk_score DESC, zone_id
 LIMIT %(limit)s
"""

# Ends a zone's validity now; zones already ended, or not yet begun, are left alone (see expire()).
EXPIRE_ZONE = """
UPDATE risk_zones SET valid_until = now()
 WHERE zone_id = %(zone_id)s
   AND valid_from < now()
   AND (valid_until IS NULL OR valid_until > now())
RETURNING zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
          valid_from, valid_until, metadata, created_at, updated_at
"""

# Why EXPIRE_ZONE changed nothing: the zone has not begun yet (true), or has already ended (false).
ZONE_NOT_BEGUN = """
SELECT valid_from >= now() AS not_begun, valid_from FROM risk_zones WHERE zone_id = %(zone_id)s
"""


def _read(source: Any, name: str) -> Any:
    return source.get(name) if isinstance(source, Mapping) else getattr(source, name, None)


def _ring(field: str, positions: Any) -> list[list[float]]:
    """One closed ring of ``[lng, lat]`` positions, checked."""
    if isinstance(positions, (str, bytes, Mapping)) or not isinstance(positions, Sequence):
        raise ValidationError(field, f"must be a list of [lng, lat] positions, got {type(positions).__name__}")
    ring = []
    for i, position in enumerate(positions):
        if isinstance(position, (str, bytes, Mapping)) or not isinstance(position, Sequence) \
                or len(position) not in (2, 3):
            raise ValidationError(f"{field}[{i}]", "must be a [lng, lat] position")
        ring.append([v.longitude(f"{field}[{i}][0]", position[0]), v.latitude(f"{field}[{i}][1]", position[1])])
    return _closed(field, ring)


def _closed(field: str, ring: list[list[float]]) -> list[list[float]]:
    if ring and ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    if len({tuple(p) for p in ring}) < 3:
        raise ValidationError(field, f"needs at least 3 distinct vertices, got {len({tuple(p) for p in ring})}")
    return ring


def boundary_geojson(boundary: Any, field: str = "boundary") -> dict[str, Any]:
    """A checked GeoJSON Polygon (rings closed) from a vertex list or a GeoJSON Polygon mapping.

    Raises ``ValidationError`` naming the field (``boundary[2].lat``, ``boundary.coordinates[0][3][1]`` ...) for
    out-of-range or non-finite coordinates, fewer than 3 distinct vertices, or another geometry type.

    Example::

        >>> boundary_geojson([{"lat": 0, "lng": 0}, {"lat": 0, "lng": 1}, {"lat": 1, "lng": 1}])["coordinates"]
        [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]
    """
    if isinstance(boundary, Mapping):
        if boundary.get("type") != "Polygon":
            raise ValidationError(f"{field}.type", f"must be \"Polygon\", got {boundary.get('type')!r}")
        rings = boundary.get("coordinates")
        if isinstance(rings, (str, bytes, Mapping)) or not isinstance(rings, Sequence) or not rings:
            raise ValidationError(f"{field}.coordinates", "must be a list of rings of [lng, lat] positions")
        if len(rings) > MAX_RINGS:
            raise ValidationError(f"{field}.coordinates", f"must hold at most {MAX_RINGS} rings, got {len(rings)}")
        coordinates = [_ring(f"{field}.coordinates[{r}]", ring) for r, ring in enumerate(rings)]
    elif isinstance(boundary, Sequence) and not isinstance(boundary, (str, bytes)):
        vertices = []
        for i, vertex in enumerate(boundary):
            lat, lng = v.geotag(f"{field}[{i}]", vertex)
            vertices.append([lng, lat])
        coordinates = [_closed(field, vertices)]
    else:
        raise ValidationError(field, 'must be a list of {"lat": .., "lng": ..} vertices or a GeoJSON Polygon, '
                                     f"got {type(boundary).__name__}")
    total = sum(len(ring) for ring in coordinates)
    if total > MAX_VERTICES:
        raise ValidationError(field, f"must have at most {MAX_VERTICES} vertices, got {total}")
    return {"type": "Polygon", "coordinates": coordinates}


def validate_zone(zone: NewRiskZone | Mapping[str, Any]) -> dict[str, Any]:
    """The bound parameters of a zone, every field checked; raises ``ValidationError`` naming the field."""
    if isinstance(zone, Mapping):
        unknown = sorted(str(k) for k in zone if k not in _INPUT_FIELDS)
        if unknown:
            raise ValidationError("zone", f"unknown fields {', '.join(unknown)}; expected some of "
                                          f"{', '.join(sorted(_INPUT_FIELDS))}")
    elif not isinstance(zone, NewRiskZone):
        raise ValidationError("zone", f"must be a NewRiskZone or a mapping, got {type(zone).__name__}")
    for name in ("name", "boundary", "risk_level", "risk_score"):
        if _read(zone, name) is None:
            raise ValidationError(name, "is required")
    valid_from = _read(zone, "valid_from")
    valid_from = None if valid_from is None else v.aware_datetime("valid_from", valid_from, allow_future=True)
    valid_until = _read(zone, "valid_until")
    if valid_until is not None:
        valid_until = v.aware_datetime("valid_until", valid_until, allow_future=True)
        start = valid_from or datetime.now(timezone.utc)
        if valid_until <= start:
            raise ValidationError("valid_until", f"must be after valid_from ({start.isoformat()})")
    crime_types = v.string_list("crime_types", _read(zone, "crime_types"), max_items=MAX_CRIME_TYPES, max_length=64)
    return {
        "name": v.text("name", _read(zone, "name"), max_length=200),
        "boundary": json.dumps(boundary_geojson(_read(zone, "boundary"))),
        "risk_level": v.severity("risk_level", _read(zone, "risk_level")),
        "risk_score": v.unit_interval("risk_score", _read(zone, "risk_score")),
        "crime_types": list(dict.fromkeys(v.slug(f"crime_types[{i}]", t) for i, t in enumerate(crime_types))),
        "valid_from": valid_from,
        "valid_until": valid_until,
        "metadata": Jsonb(v.mapping("metadata", _read(zone, "metadata"))),
    }


class RiskZoneRepository:
    """Reads and writes ``risk_zones`` on one async connection (the caller owns the transaction)."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    async def store(self, zone: NewRiskZone | Mapping[str, Any]) -> RiskZone:
        """Store a new risk zone.

        Args:
            zone: a ``NewRiskZone`` or a mapping with its field names: ``name`` (1..200 characters),
                ``boundary`` (>= 3 ``{"lat", "lng"}`` vertices, or a GeoJSON Polygon), ``risk_level`` (1..5) and
                ``risk_score`` (0..1) are required; ``crime_types`` (lower-case words), ``valid_from`` (default
                now), ``valid_until`` (after ``valid_from``; default never) and ``metadata`` are optional.
                Unknown keys are refused.

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
        with translated():
            async with self._conn.cursor(row_factory=class_row(RiskZone)) as cur:
                await cur.execute(INSERT_ZONE, params)
                row = await cur.fetchone()
            if row is None:
                cur = await self._conn.execute(POLYGON_PROBLEM, params)
                reason = (await cur.fetchone())[0]
        if row is None:
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
        with translated():
            async with self._conn.cursor(row_factory=class_row(RiskZone)) as cur:
                await cur.execute(GET_ZONE, params)
                return await cur.fetchone()

    async def containing(self, lat: float, lng: float, *, at: datetime | None = None,
                         limit: int = 100) -> list[RiskZone]:
        """Zones whose boundary covers a point (the edge counts as inside) and that are valid at ``at``.

        Valid at ``at`` means ``valid_from <= at`` and (no ``valid_until`` or ``at < valid_until``).

        Args:
            lat, lng: the point in degrees ([-90, 90], [-180, 180]).
            at: the moment (timezone-aware; past or future); defaults to now.
            limit: at most this many (1..10,000).

        Returns:
            ``RiskZone`` list, highest ``risk_level`` first (then ``risk_score``).

        Raises ``ValidationError`` (``lat``, ``lng``, ``at``, ``limit``) before any SQL.

        Example::

            worst = (await zones.containing(40.71, -74.01))[:1]
        """
        params = {
            "lat": v.latitude("lat", lat),
            "lng": v.longitude("lng", lng),
            "at": None if at is None else v.aware_datetime("at", at, allow_future=True),
            "limit": v.integer("limit", limit, minimum=1, maximum=10_000),
        }
        with translated():
            async with self._conn.cursor(row_factory=class_row(RiskZone)) as cur:
                await cur.execute(ZONES_CONTAINING, params)
                return await cur.fetchall()

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
        with translated():
            async with self._conn.cursor(row_factory=class_row(RiskZone)) as cur:
                await cur.execute(EXPIRE_ZONE, params)
                row = await cur.fetchone()
        if row is not None:
            return row
        with translated():
            cur = await self._conn.execute(ZONE_NOT_BEGUN, params)
            state = await cur.fetchone()
        if state is None:
            raise NotFoundError(f"zone_id: no risk zone {params['zone_id']}")
        if state[0]:
            raise ConflictError(f"risk zone {params['zone_id']} only becomes valid at {state[1].isoformat()}; "
                                "it cannot expire before it begins")
        current = await self.get(params["zone_id"])
        assert current is not None  # seen just above
        return current
