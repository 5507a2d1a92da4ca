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

from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.limits import MAX_CRIME_TYPES, MAX_LIMIT, MAX_RINGS, MAX_VERTICES
from luminar_store.models import NewRiskZone, RiskZone, boundary_geojson
from luminar_store.repositories._base import Repository

__all__ = ["RiskZoneRepository", "ZONE_COLUMNS", "boundary_geojson", "validate_zone", "MAX_VERTICES", "MAX_RINGS",
           "MAX_CRIME_TYPES"]

# name: zone_columns
# The columns of a RiskZone record, in its field order; boundary read back as GeoJSON with full precision.
# crime_density, recent_incidents and trend_direction (the network's names) are read; NewRiskZone does not take them
# yet, so a stored zone has them NULL (recent_incidents 0) until something writes them.
ZONE_COLUMNS = """zone_id, name, ST_AsGeoJSON(boundary, 15)::jsonb AS boundary, risk_level, risk_score, crime_types,
       valid_from, valid_until, metadata, created_at, updated_at, crime_density, recent_incidents, trend_direction"""

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
