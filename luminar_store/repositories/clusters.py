"""Crime clusters: geographic and temporal crime patterns found by miners, and the events they group.

A cluster is a centre (``{"lat", "lng"}``), a radius in metres, a time window and a summary of its events. Distances
are in metres on the WGS 84 spheroid (``geography``); searches pre-filter with the bounding boxes of
``luminar_store.geo.search_boxes`` on the GiST-indexed ``centroid`` geometry first (a ``geography`` cast of the column
alone would not use the index). Inputs are checked by ``NewCrimeCluster`` (``luminar_store.models``); arguments by
each method, once, before any SQL.

Example::

    clusters = ClusterRepository(conn)
    cluster = await clusters.store({"centre": {"lat": 40.71, "lng": -74.0}, "radius_m": 500,
                                    "time_start": start, "time_end": end, "event_count": 12,
                                    "dominant_crime_type": "theft", "avg_severity": 2.5})
    await clusters.assign_events(cluster.cluster_id, [event_id_1, event_id_2])
    nearby = await clusters.within_radius(40.7, -74.0, 2_000)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from luminar_store import validation as v
from luminar_store.analysis.clusters import ANALYZE_CLUSTERS, ClusterRun, cluster_parameters
from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.geo import search_boxes
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_CLUSTER_EPS_M,
    DEFAULT_CLUSTER_MIN_POINTS,
    MAX_ASSIGN,
    MAX_DAYS,
    MAX_LIMIT,
    MAX_RADIUS_M,
)
from luminar_store.models import CrimeCluster, NewCrimeCluster
from luminar_store.repositories._base import Repository

__all__ = ["ClusterRepository", "CLUSTER_COLUMNS", "search_boxes", "validate_cluster"]

# name: cluster_columns
# The columns of a CrimeCluster record, in its field order (every query below returns them). cluster_type,
# confidence_score and pattern_description (the network's names) are read; NewCrimeCluster does not take them yet,
# so a stored cluster has them NULL until something writes them.
CLUSTER_COLUMNS = """cluster_id, miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type,
       avg_severity, time_start, time_end, metadata, created_at, updated_at,
       cluster_type, confidence_score, pattern_description, made_by"""

# Stores one cluster; the centroid geometry is generated from latitude/longitude by the table.
INSERT_CLUSTER = """
INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, event_count, dominant_crime_type,
                            avg_severity, time_start, time_end, metadata, cluster_type, confidence_score,
                            pattern_description)
VALUES (%(miner_uid)s, %(latitude)s, %(longitude)s, %(radius_m)s, %(event_count)s, %(dominant_crime_type)s,
        %(avg_severity)s, %(time_start)s, %(time_end)s, %(metadata)s, %(cluster_type)s, %(confidence_score)s,
        %(pattern_description)s)
RETURNING {cluster_columns}
""".replace("{cluster_columns}", CLUSTER_COLUMNS)

# One cluster by id.
GET_CLUSTER = """
SELECT {cluster_columns}
  FROM crime_clusters
 WHERE cluster_id = %(cluster_id)s
""".replace("{cluster_columns}", CLUSTER_COLUMNS)

# name: clusters_within_radius
# Clusters whose centre lies within %(radius_m)s metres of the point, nearest first. The envelopes of search_boxes
# (the second one only when the search crosses the antimeridian; NULL otherwise, which matches nothing) are the
# indexed pre-filter on idx_clusters_centroid; ST_DWithin on geography refines.
CLUSTERS_WITHIN_RADIUS = """
WITH here AS (SELECT ST_SetSRID(ST_MakePoint(%(longitude)s, %(latitude)s), 4326)::geography AS point)
SELECT {cluster_columns},
       ST_Distance(centroid::geography, here.point) AS distance_m
  FROM crime_clusters, here
 WHERE (centroid && ST_MakeEnvelope(%(xmin)s, %(ymin)s, %(xmax)s, %(ymax)s, 4326)
        OR centroid && ST_MakeEnvelope(%(xmin2)s, %(ymin)s, %(xmax2)s, %(ymax)s, 4326))
   AND ST_DWithin(centroid::geography, here.point, %(radius_m)s)
 ORDER BY distance_m, cluster_id
 LIMIT %(limit)s
""".replace("{cluster_columns}", CLUSTER_COLUMNS)

# Which of the given events do not exist, which have no location yet (unlocated: a cluster is a place), and whether
# the cluster exists (locked against deletion meanwhile).
CHECK_ASSIGNMENT = """
SELECT EXISTS (SELECT 1 FROM crime_clusters WHERE cluster_id = %(cluster_id)s FOR KEY SHARE) AS cluster_found,
       ARRAY(SELECT id FROM unnest(%(event_ids)s::uuid[]) AS id
              WHERE NOT EXISTS (SELECT 1 FROM crime_events e WHERE e.event_id = id)) AS missing,
       ARRAY(SELECT e.event_id FROM crime_events e
              WHERE e.event_id = ANY(%(event_ids)s::uuid[]) AND e.latitude IS NULL
              ORDER BY e.event_id) AS unlocated
"""

# Moves the events into the cluster; rows already in it are left alone (no needless audit rows).
ASSIGN_EVENTS = """
UPDATE crime_events
   SET cluster_id = %(cluster_id)s
 WHERE event_id = ANY(%(event_ids)s::uuid[])
   AND cluster_id IS DISTINCT FROM %(cluster_id)s
"""

# name: recent_clusters
# Clusters whose time window ends within the last %(days)s days, newest first, then the biggest; analysis-made
# ones only when %(analysis_only)s.
RECENT_CLUSTERS = """
SELECT {cluster_columns}
  FROM crime_clusters
 WHERE time_end >= now() - make_interval(days => %(days)s)
   AND (NOT %(analysis_only)s OR made_by = 'analysis')
 ORDER BY time_end DESC, event_count DESC, cluster_id
 LIMIT %(limit)s
""".replace("{cluster_columns}", CLUSTER_COLUMNS)


def validate_cluster(cluster: NewCrimeCluster | Mapping[str, Any]) -> dict[str, Any]:
    """The bound parameters of a cluster, checked by ``NewCrimeCluster.coerce``; raises ``ValidationError`` naming
    the field (``cluster`` for unknown keys or a value of another kind)."""
    c = NewCrimeCluster.coerce(cluster)
    return {"latitude": c.latitude, "longitude": c.longitude, "radius_m": c.radius_m, "time_start": c.time_start,
            "time_end": c.time_end, "event_count": c.event_count, "dominant_crime_type": c.dominant_crime_type,
            "avg_severity": c.avg_severity, "miner_uid": c.miner_uid, "metadata": Jsonb(c.metadata),
            "cluster_type": c.cluster_type, "confidence_score": c.confidence_score,
            "pattern_description": c.pattern_description}


class ClusterRepository(Repository):
    """Reads and writes ``crime_clusters`` (and the ``cluster_id`` of ``crime_events``) on one async connection."""

    async def store(self, cluster: NewCrimeCluster | Mapping[str, Any]) -> CrimeCluster:
        """Store a new cluster.

        Args:
            cluster: a ``NewCrimeCluster`` or a mapping with its field names (checked by
                ``NewCrimeCluster.coerce``; unknown keys are refused).

        Returns:
            The stored ``CrimeCluster`` (with its new ``cluster_id``).

        Raises:
            ValidationError: naming the field (``centre.lat``, ``radius_m``, ``time_end`` ...), before any SQL.

        Example::

            c = await clusters.store(NewCrimeCluster(centre={"lat": 40.7, "lng": -74.0}, radius_m=300,
                                                     time_start=start, time_end=end))
        """
        params = validate_cluster(cluster)
        row = await self._one(INSERT_CLUSTER, params, CrimeCluster)
        assert row is not None  # INSERT ... RETURNING returns its row
        return row

    async def get(self, cluster_id: UUID | str) -> CrimeCluster | None:
        """One cluster, or ``None`` when no cluster has this id.

        Raises ``ValidationError`` (``cluster_id``) before any SQL.

        Example::

            c = await clusters.get(cluster_id)
        """
        params = {"cluster_id": v.uuid_value("cluster_id", cluster_id)}
        return await self._one(GET_CLUSTER, params, CrimeCluster)

    async def within_radius(self, latitude: float, longitude: float, radius_m: float, *,
                            limit: int = 100) -> list[CrimeCluster]:
        """Clusters whose centre lies within ``radius_m`` metres of a point, nearest first, each with
        ``distance_m``.

        Args:
            latitude, longitude: the point, in degrees ([-90, 90], [-180, 180]).
            radius_m: the search distance (0 < d <= 1,000,000).
            limit: at most this many (1..10,000).

        Raises ``ValidationError`` (``latitude``, ``longitude``, ``radius_m``, ``limit``) before any SQL.

        Example::

            for c in await clusters.within_radius(40.7, -74.0, 2_000): print(c.cluster_id, round(c.distance_m))
        """
        latitude = v.latitude("latitude", latitude)
        longitude = v.longitude("longitude", longitude)
        radius_m = v.number("radius_m", radius_m, minimum=0.0, maximum=MAX_RADIUS_M)
        if radius_m <= 0:
            raise ValidationError("radius_m", "must be more than 0")
        params = {"latitude": latitude, "longitude": longitude, "radius_m": radius_m,
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT),
                  **search_boxes(latitude, longitude, radius_m)}
        return await self._all(CLUSTERS_WITHIN_RADIUS, params, CrimeCluster)

    async def assign_events(self, cluster_id: UUID | str, event_ids: Iterable[UUID | str]) -> int:
        """Put crime events into a cluster (sets their ``cluster_id``); all or nothing.

        Args:
            cluster_id: an existing cluster.
            event_ids: 1..10,000 existing crime event ids (UUIDs or their text; duplicates ignored).

        Returns:
            How many events changed cluster (events already in it are left alone).

        Raises:
            ValidationError: malformed ids or an empty list (before any SQL); an event without a location yet
                (unlocated, named; ``CrimeEventRepository.locate`` first); nothing is changed.
            NotFoundError: the cluster or any of the events does not exist (named); nothing is changed.

        Example::

            moved = await clusters.assign_events(cluster.cluster_id, [e1, e2, e3])
        """
        ids = v.uuid_list("event_ids", event_ids, max_items=MAX_ASSIGN)
        if not ids:
            raise ValidationError("event_ids", "must name at least one crime event")
        params = {"cluster_id": v.uuid_value("cluster_id", cluster_id), "event_ids": ids}
        async with self._connection() as conn:
            # A transaction (a savepoint inside the caller's), so that a failed check changes nothing.
            async with conn.transaction():
                cur = await conn.execute(CHECK_ASSIGNMENT, params)
                cluster_found, missing, unlocated = await cur.fetchone()
                if not cluster_found:
                    raise NotFoundError(f"cluster_id: no crime cluster {params['cluster_id']}")
                if missing:
                    shown = ", ".join(str(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
                    raise NotFoundError(f"event_ids: {len(missing)} crime event(s) do not exist: {shown}")
                if unlocated:
                    shown = ", ".join(str(u) for u in unlocated[:5]) + (" ..." if len(unlocated) > 5 else "")
                    raise ValidationError("event_ids", f"{len(unlocated)} crime event(s) have no location yet "
                                                       f"(locate them first): {shown}")
                cur = await conn.execute(ASSIGN_EVENTS, params)
                return cur.rowcount

    async def recent(self, days: int = DEFAULT_ANALYSIS_DAYS, *, analysis_only: bool = False,
                     limit: int = 100) -> list[CrimeCluster]:
        """Clusters whose time window ends within the last ``days`` days (1..3650), newest first, then the biggest;
        with ``analysis_only``, only those the database's DBSCAN run made (``made_by == "analysis"``).

        Raises ``ValidationError`` (``days``, ``analysis_only``, ``limit``) before any SQL.

        Example::

            for c in await clusters.recent(7, analysis_only=True): print(c.centre, c.event_count)
        """
        if not isinstance(analysis_only, bool):
            raise ValidationError("analysis_only", f"must be True or False, got {type(analysis_only).__name__}")
        params = {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS), "analysis_only": analysis_only,
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(RECENT_CLUSTERS, params, CrimeCluster)

    async def analyze(self, days: int = DEFAULT_ANALYSIS_DAYS, *, eps_m: float = DEFAULT_CLUSTER_EPS_M,
                      min_points: int = DEFAULT_CLUSTER_MIN_POINTS) -> ClusterRun:
        """Run the database's DBSCAN over the incidents of the last ``days`` days (``luminar_analyze_clusters``;
        ``luminar_store.analysis.clusters`` says what it writes). The owner's: a node login is refused.

        Raises ``ValidationError`` (``days``, ``eps_m``, ``min_points``) before any SQL; ``PermissionDeniedError``
        for a login that may not run it.

        Example::

            run = await clusters.analyze(7, eps_m=200, min_points=5)
        """
        params = cluster_parameters(days, eps_m, min_points)
        async with self._connection() as conn:
            cur = await conn.execute(ANALYZE_CLUSTERS, params)
            row = await cur.fetchone()
        assert row is not None  # the function returns one row
        return ClusterRun(*row)
