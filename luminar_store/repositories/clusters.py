"""Crime clusters: geographic and temporal crime patterns found by miners, and the events they group.

A cluster is a centre (``{"lat", "lng"}``), a radius in metres, a time window and a summary of its events. Distances
are in metres on the WGS 84 spheroid (``geography``); searches pre-filter with a bounding box on the GiST-indexed
``centroid`` geometry first (a ``geography`` cast of the column alone would not use the index).

Example::

    clusters = ClusterRepository(conn)
    cluster = await clusters.store({"centre": {"lat": 40.71, "lng": -74.0}, "radius_m": 500,
                                    "time_start": start, "time_end": end, "event_count": 12,
                                    "dominant_crime_type": "theft", "avg_severity": 2.5})
    await clusters.assign_events(cluster.cluster_id, [event_id_1, event_id_2])
    nearby = await clusters.near(40.7, -74.0, 2_000)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.models import CrimeCluster, NewCrimeCluster
from luminar_store.repositories._errors import translated

__all__ = ["ClusterRepository", "search_boxes", "validate_cluster"]

#: Largest cluster radius and search distance, in metres (the table's CHECK allows radius_m <= 1,000,000).
MAX_RADIUS_M = 1_000_000.0
#: Most events one ``assign_events`` call may move, and most rows ``near`` returns.
MAX_ASSIGN = 10_000
MAX_LIMIT = 10_000
_INPUT_FIELDS = {f.name for f in dataclasses.fields(NewCrimeCluster)} | {"center"}

# Fewest metres per degree: of latitude anywhere (110,574 at the equator) and of longitude at latitude φ
# (111,319 * cos φ on the sphere; the spheroid's is larger) — both rounded down, so that the boxes are never
# too small for the geography refine.
_M_PER_DEG_LAT = 110_000.0
_M_PER_DEG_LNG_AT_EQUATOR = 111_000.0

# Stores one cluster; the centroid geometry is generated from latitude/longitude by the table.
INSERT_CLUSTER = """
INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type,
                            avg_severity, time_start, time_end, metadata)
VALUES (%(miner_uid)s, %(latitude)s, %(longitude)s, %(radius_m)s, %(event_count)s, %(dominant_crime_type)s,
        %(avg_severity)s, %(time_start)s, %(time_end)s, %(metadata)s)
RETURNING cluster_id, miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type, avg_severity,
          time_start, time_end, metadata, created_at, updated_at
"""

# One cluster by id.
GET_CLUSTER = """
SELECT cluster_id, miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type, avg_severity,
       time_start, time_end, metadata, created_at, updated_at
  FROM crime_clusters
 WHERE cluster_id = %(cluster_id)s
"""

# Clusters whose centre lies within %(metres)s of the point, nearest first. The two boxes (equal unless the search
# crosses the antimeridian) are the indexed pre-filter on idx_clusters_centroid; ST_DWithin on geography refines.
CLUSTERS_NEAR = """
WITH here AS (SELECT ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography AS point)
SELECT c.cluster_id, c.miner_uid, c.latitude, c.longitude, c.radius_m, c.event_count, c.dominant_crime_type,
       c.avg_severity, c.time_start, c.time_end, c.metadata, c.created_at, c.updated_at,
       ST_Distance(c.centroid::geography, here.point) AS distance_m
  FROM crime_clusters c, here
 WHERE (c.centroid && ST_MakeEnvelope(%(xmin1)s, %(ymin)s, %(xmax1)s, %(ymax)s, 4326)
        OR c.centroid && ST_MakeEnvelope(%(xmin2)s, %(ymin)s, %(xmax2)s, %(ymax)s, 4326))
   AND ST_DWithin(c.centroid::geography, here.point, %(metres)s)
 ORDER BY distance_m, c.cluster_id
 LIMIT %(limit)s
"""

# Which of the given events do not exist, and whether the cluster does (locked against deletion meanwhile).
CHECK_ASSIGNMENT = """
SELECT EXISTS (SELECT 1 FROM crime_clusters WHERE cluster_id = %(cluster_id)s FOR KEY SHARE) AS cluster_found,
       ARRAY(SELECT id FROM unnest(%(event_ids)s::uuid[]) AS id
              WHERE NOT EXISTS (SELECT 1 FROM crime_events e WHERE e.event_id = id)) AS missing
"""

# Moves the events into the cluster; rows already in it are left alone (no needless audit rows).
ASSIGN_EVENTS = """
UPDATE crime_events
   SET cluster_id = %(cluster_id)s
 WHERE event_id = ANY(%(event_ids)s::uuid[])
   AND cluster_id IS DISTINCT FROM %(cluster_id)s
"""


def _read(source: Any, name: str, default: Any = None) -> Any:
    if isinstance(source, Mapping):
        return source.get(name, default)
    return getattr(source, name, default)


def search_boxes(lat: float, lng: float, metres: float) -> dict[str, float]:
    """Two longitude/latitude boxes that hold every point within ``metres`` of (lat, lng).

    They are equal unless the circle crosses the antimeridian (longitude ±180), where the second box holds the part
    on the other side; near a pole they span every longitude. Used as the indexed pre-filter.

    Example::

        >>> search_boxes(0.0, 179.99, 5_000)["xmin2"]
        -180.0
    """
    dlat = metres / _M_PER_DEG_LAT
    ymin, ymax = max(-90.0, lat - dlat), min(90.0, lat + dlat)
    widest = max(abs(ymin), abs(ymax))
    cos_widest = math.cos(math.radians(widest))
    dlng = 360.0 if cos_widest < 1e-6 else metres / (_M_PER_DEG_LNG_AT_EQUATOR * cos_widest)
    if dlng >= 180.0:
        box = {"xmin1": -180.0, "xmax1": 180.0, "xmin2": -180.0, "xmax2": 180.0}
    else:
        xmin, xmax = lng - dlng, lng + dlng
        box = {"xmin1": max(-180.0, xmin), "xmax1": min(180.0, xmax)}
        if xmin < -180.0:
            box.update(xmin2=xmin + 360.0, xmax2=180.0)
        elif xmax > 180.0:
            box.update(xmin2=-180.0, xmax2=xmax - 360.0)
        else:
            box.update(xmin2=box["xmin1"], xmax2=box["xmax1"])
    return {"ymin": ymin, "ymax": ymax, **box}


def validate_cluster(cluster: NewCrimeCluster | Mapping[str, Any]) -> dict[str, Any]:
    """The bound parameters of a cluster, every field checked; raises ``ValidationError`` naming the field."""
    if isinstance(cluster, Mapping):
        unknown = sorted(str(k) for k in cluster if k not in _INPUT_FIELDS)
        if unknown:
            raise ValidationError("cluster", f"unknown fields {', '.join(unknown)}; expected some of "
                                             f"{', '.join(sorted(_INPUT_FIELDS - {'center'}))}")
    elif not isinstance(cluster, NewCrimeCluster):
        raise ValidationError("cluster", f"must be a NewCrimeCluster or a mapping, got {type(cluster).__name__}")
    centre = _read(cluster, "centre")
    if centre is None:
        centre = _read(cluster, "center")
    if centre is None:
        raise ValidationError("centre", 'is required: {"lat": .., "lng": ..}')
    latitude, longitude = v.geotag("centre", centre)
    radius = _read(cluster, "radius_m")
    if radius is None:
        raise ValidationError("radius_m", "is required (metres, more than 0)")
    radius = v.number("radius_m", radius, minimum=0.0, maximum=MAX_RADIUS_M)
    if radius <= 0:
        raise ValidationError("radius_m", "must be more than 0 metres")
    for name in ("time_start", "time_end"):
        if _read(cluster, name) is None:
            raise ValidationError(name, "is required (a timezone-aware datetime)")
    time_start = v.aware_datetime("time_start", _read(cluster, "time_start"))
    time_end = v.aware_datetime("time_end", _read(cluster, "time_end"))
    if time_end < time_start:
        raise ValidationError("time_end", f"must not be before time_start ({time_start.isoformat()})")
    crime_type = _read(cluster, "dominant_crime_type")
    avg_severity = _read(cluster, "avg_severity")
    miner_uid = _read(cluster, "miner_uid")
    return {
        "latitude": latitude,
        "longitude": longitude,
        "radius_m": radius,
        "time_start": time_start,
        "time_end": time_end,
        "event_count": v.integer("event_count", _read(cluster, "event_count", 0), minimum=0, maximum=2**31 - 1),
        "dominant_crime_type": None if crime_type is None else v.slug("dominant_crime_type", crime_type),
        "avg_severity": None if avg_severity is None
        else v.number("avg_severity", avg_severity, minimum=1.0, maximum=5.0),
        "miner_uid": None if miner_uid is None else v.uid("miner_uid", miner_uid),
        "metadata": Jsonb(v.mapping("metadata", _read(cluster, "metadata"))),
    }


class ClusterRepository:
    """Reads and writes ``crime_clusters`` (and the ``cluster_id`` of ``crime_events``) on one async connection."""

    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self._conn = conn

    async def store(self, cluster: NewCrimeCluster | Mapping[str, Any]) -> CrimeCluster:
        """Store a new cluster.

        Args:
            cluster: a ``NewCrimeCluster`` or a mapping with its field names: ``centre`` (or ``center``)
                ``{"lat", "lng"}``, ``radius_m`` (0 < r <= 1,000,000 m), ``time_start`` and ``time_end``
                (timezone-aware, end not before start, not in the future) are required; ``event_count`` (>= 0),
                ``dominant_crime_type`` (a lower-case word), ``avg_severity`` (1..5), ``miner_uid``, ``metadata``
                (a JSON object) are optional. Unknown keys are refused.

        Returns:
            The stored ``CrimeCluster`` (with its new ``cluster_id``).

        Raises:
            ValidationError: naming the field (``centre.lat``, ``radius_m``, ``time_end`` ...), before any SQL.

        Example::

            c = await clusters.store(NewCrimeCluster(centre={"lat": 40.7, "lng": -74.0}, radius_m=300,
                                                     time_start=start, time_end=end))
        """
        params = validate_cluster(cluster)
        with translated():
            async with self._conn.cursor(row_factory=class_row(CrimeCluster)) as cur:
                await cur.execute(INSERT_CLUSTER, params)
                row = await cur.fetchone()
        assert row is not None  # INSERT ... RETURNING returns its row
        return row

    async def get(self, cluster_id: UUID | str) -> CrimeCluster | None:
        """One cluster, or ``None`` when no cluster has this id.

        Raises ``ValidationError`` (``cluster_id``) before any SQL.

        Example::

            c = await clusters.get(cluster_id)
        """
        params = {"cluster_id": v.uuid_value("cluster_id", cluster_id)}
        with translated():
            async with self._conn.cursor(row_factory=class_row(CrimeCluster)) as cur:
                await cur.execute(GET_CLUSTER, params)
                return await cur.fetchone()

    async def near(self, lat: float, lng: float, metres: float, *, limit: int = 100) -> list[CrimeCluster]:
        """Clusters whose centre lies within ``metres`` of a point, nearest first, each with ``distance_m``.

        Args:
            lat, lng: the point, in degrees ([-90, 90], [-180, 180]).
            metres: the search distance (0 < d <= 1,000,000).
            limit: at most this many (1..10,000).

        Raises ``ValidationError`` (``lat``, ``lng``, ``metres``, ``limit``) before any SQL.

        Example::

            for c in await clusters.near(40.7, -74.0, 2_000): print(c.cluster_id, round(c.distance_m))
        """
        lat = v.latitude("lat", lat)
        lng = v.longitude("lng", lng)
        metres = v.number("metres", metres, minimum=0.0, maximum=MAX_RADIUS_M)
        if metres <= 0:
            raise ValidationError("metres", "must be more than 0")
        params = {"lat": lat, "lng": lng, "metres": metres,
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT),
                  **search_boxes(lat, lng, metres)}
        with translated():
            async with self._conn.cursor(row_factory=class_row(CrimeCluster)) as cur:
                await cur.execute(CLUSTERS_NEAR, params)
                return await cur.fetchall()

    async def assign_events(self, cluster_id: UUID | str, event_ids: Iterable[UUID | str]) -> int:
        """Put crime events into a cluster (sets their ``cluster_id``); all or nothing.

        Args:
            cluster_id: an existing cluster.
            event_ids: 1..10,000 existing crime event ids (UUIDs or their text; duplicates ignored).

        Returns:
            How many events changed cluster (events already in it are left alone).

        Raises:
            ValidationError: malformed ids or an empty list (before any SQL).
            NotFoundError: the cluster or any of the events does not exist (named); nothing is changed.

        Example::

            moved = await clusters.assign_events(cluster.cluster_id, [e1, e2, e3])
        """
        ids = v.uuid_list("event_ids", event_ids, max_items=MAX_ASSIGN)
        if not ids:
            raise ValidationError("event_ids", "must name at least one crime event")
        params = {"cluster_id": v.uuid_value("cluster_id", cluster_id), "event_ids": ids}
        with translated():
            # A transaction (a savepoint inside the caller's), so that a failed check changes nothing.
            async with self._conn.transaction():
                cur = await self._conn.execute(CHECK_ASSIGNMENT, params)
                cluster_found, missing = await cur.fetchone()
                if not cluster_found:
                    raise NotFoundError(f"cluster_id: no crime cluster {params['cluster_id']}")
                if missing:
                    shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
                    raise NotFoundError(f"event_ids: {len(missing)} crime event(s) do not exist: {shown}")
                cur = await self._conn.execute(ASSIGN_EVENTS, params)
                return cur.rowcount
