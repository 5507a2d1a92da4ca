"""DBSCAN clusters of incidents, computed in the database: ``luminar_analyze_clusters(days, eps_m, min_points)``.

The SQL function (migration 20261130045100, whose header defines every figure it writes) clusters the incidents of
the last ``days`` days with ST_ClusterDBSCAN in metres (equal to scikit-learn's haversine DBSCAN up to a relative
margin it reports), upserts the clusters as ``made_by = 'analysis'`` rows of ``crime_clusters``, deletes the
window's analysis clusters it no longer finds and points the window's events at their incident's cluster. Clusters
a miner stored, and events pointing at them, are never touched. It writes, so it runs as the owner (the analysis
command's login); on an autocommit connection it is one transaction.

Example::

    >>> with connect(settings) as conn:
    ...     run = analyze_clusters(conn, days=7, eps_m=200, min_points=5)
    >>> run.clusters, run.events_updated
    (42, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from luminar_store import validation as v
from luminar_store.limits import (
    DEFAULT_ANALYSIS_DAYS,
    DEFAULT_CLUSTER_EPS_M,
    DEFAULT_CLUSTER_MIN_POINTS,
    MAX_CLUSTER_EPS_M,
    MAX_CLUSTER_MIN_POINTS,
    MAX_DAYS,
    MIN_CLUSTER_EPS_M,
    MIN_CLUSTER_MIN_POINTS,
)
from luminar_store.repositories._errors import translated

__all__ = ["ANALYZE_CLUSTERS", "ClusterRun", "analyze_clusters", "cluster_parameters"]

# name: analyze_clusters
# One whole run: cluster, upsert, remove the stale, update the events; one row of counts.
ANALYZE_CLUSTERS = """
SELECT incidents, clusters, clusters_written, clusters_removed, events_updated, margin
  FROM luminar_analyze_clusters(%(days)s, %(eps_m)s, %(min_points)s)
"""


@dataclass(frozen=True, slots=True)
class ClusterRun:
    """What one run did. ``incidents`` in the window, ``clusters`` found; ``clusters_written`` inserted or changed
    (0 on a re-run over the same data), ``clusters_removed`` (the window's analysis clusters no longer found);
    ``events_updated`` events whose ``cluster_id`` changed; ``margin`` the relative distance from eps within which
    a pair may be judged otherwise than by the haversine metric (~1e-6 for a city-sized component)."""

    incidents: int
    clusters: int
    clusters_written: int
    clusters_removed: int
    events_updated: int
    margin: float


def cluster_parameters(days: Any = DEFAULT_ANALYSIS_DAYS, eps_m: Any = DEFAULT_CLUSTER_EPS_M,
                       min_points: Any = DEFAULT_CLUSTER_MIN_POINTS) -> dict[str, Any]:
    """The bound parameters of a run, checked: ``days`` 1..3650, ``eps_m`` 1..10,000 metres, ``min_points``
    2..10,000 (``luminar_store.limits``). Raises ``ValidationError`` naming the field and the rule."""
    return {"days": v.integer("days", days, minimum=1, maximum=MAX_DAYS),
            "eps_m": v.number("eps_m", eps_m, minimum=MIN_CLUSTER_EPS_M, maximum=MAX_CLUSTER_EPS_M),
            "min_points": v.integer("min_points", min_points, minimum=MIN_CLUSTER_MIN_POINTS,
                                    maximum=MAX_CLUSTER_MIN_POINTS)}


def analyze_clusters(conn: psycopg.Connection, *, days: int = DEFAULT_ANALYSIS_DAYS,
                     eps_m: float = DEFAULT_CLUSTER_EPS_M, min_points: int = DEFAULT_CLUSTER_MIN_POINTS) -> ClusterRun:
    """Run the cluster analysis over the incidents of the last ``days`` days on ``conn`` (the owner's).

    Raises ``ValidationError`` (``days``, ``eps_m``, ``min_points``) before any SQL; ``PermissionDeniedError`` for
    a login that is not the owner's.

    Example: ``run = analyze_clusters(conn, days=30)``
    """
    params = cluster_parameters(days, eps_m, min_points)
    with translated():
        row = conn.execute(ANALYZE_CLUSTERS, params).fetchone()
    assert row is not None  # the function returns one row
    return ClusterRun(*row)
