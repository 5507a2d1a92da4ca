"""Crime intelligence: analyses computed in the database over incidents (DBSCAN clusters and near-repeat flags,
migration 20261130045100; the run of every step, ``analyze``), and read out of it (the GeoJSON export and the map,
``export``, ``maps``). Each module validates its parameters (typed errors naming the field) and calls its SQL function.

Example::

    >>> from luminar_store.analysis import analyze_clusters
    >>> with connect(settings) as conn:
    ...     run = analyze_clusters(conn, days=7)
"""

from __future__ import annotations

from luminar_store.analysis.clusters import ClusterRun, analyze_clusters, cluster_parameters
from luminar_store.analysis.near_repeats import NearRepeatRun, flag_near_repeats, near_repeat_parameters

__all__ = ["ClusterRun", "analyze_clusters", "cluster_parameters", "NearRepeatRun", "flag_near_repeats",
           "near_repeat_parameters"]
