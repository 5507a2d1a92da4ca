"""Clusters and near repeats computed in the database (migration 20261130045100), over incidents.

DBSCAN in metres is checked against scikit-learn's haversine DBSCAN on a committed fixture
(tests/fixtures/dbscan_sklearn.json, made by tests/fixtures/make_dbscan_fixture.py; ``make dbscan-fixture``).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from _async import clock, with_facade

from luminar_store.analysis import analyze_clusters, flag_near_repeats
from luminar_store.errors import ValidationError

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

FIXTURE = Path(__file__).with_name("fixtures") / "dbscan_sklearn.json"
NYC = (40.7128, -74.0060)
METRES_PER_DEGREE = math.pi * 6_371_008.8 / 180.0
INSERT = ("INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
          "confidence_score, verification_status, verification_score, related_reports) "
          "VALUES (%s, %s, %s, %s, %s, %s, 0.9, %s, %s, %s) RETURNING event_id")


def haversine_m(a: tuple[float, float], b: tuple[float, float], radius: float) -> float:
    (lat1, lon1), (lat2, lon2) = a, b
    h = (math.sin(math.radians(lat2 - lat1) / 2) ** 2
         + math.cos(math.radians(lat1)) * math.cos(math.radians(lat2)) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * radius * math.asin(min(1.0, math.sqrt(h)))


def insert(conn, points, *, event_type: str = "theft", ago: timedelta | list[timedelta] = timedelta(hours=1),
           status: str = "verified", miner: int = 1, related: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
    """One event per point; returns their ids in order."""
    agos = ago if isinstance(ago, list) else [ago] * len(points)
    return [conn.execute(INSERT, (miner, event_type, lat, lng, NOW - a, 3, status, 0.8 if status == "verified"
                                  else None, related or [])).fetchone()[0]
            for (lat, lng), a in zip(points, agos, strict=True)]


def north_east(metres_north: float, metres_east: float, origin=NYC) -> tuple[float, float]:
    lat = origin[0] + metres_north / METRES_PER_DEGREE
    return lat, origin[1] + metres_east / (METRES_PER_DEGREE * math.cos(math.radians(origin[0])))


def cluster_of(conn) -> dict[uuid.UUID, uuid.UUID | None]:
    return dict(conn.execute("SELECT event_id, cluster_id FROM crime_events").fetchall())


def run_clusters(conn, days=7, eps_m=200.0, min_points=5) -> dict:
    cur = conn.execute("SELECT * FROM luminar_analyze_clusters(%s, %s, %s)", (days, eps_m, min_points))
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def event_updates(conn) -> int:
    return conn.execute("SELECT count(*) FROM audit_log WHERE table_name = 'crime_events' "
                        "AND operation = 'UPDATE'").fetchone()[0]


# -- DBSCAN against scikit-learn -------------------------------------------------------------------------------------
def test_dbscan_in_metres_equals_sklearn_haversine_dbscan(conn):
    fixture = json.loads(FIXTURE.read_text())
    radius = fixture["earth_radius_m"]
    assert conn.execute("SELECT luminar_earth_radius_m()").fetchone()[0] == radius
    points = [tuple(p) for p in fixture["points"]]
    ids = insert(conn, points)
    for expected in fixture["runs"]:
        eps, labels, core = expected["eps_m"], expected["labels"], set(expected["core"])
        result = run_clusters(conn, eps_m=eps, min_points=expected["min_points"])
        assert result["margin"] < fixture["margin"]  # the fixture holds no pair that close to eps
        assert (result["incidents"], result["clusters"]) == (len(points), expected["clusters"])
        ours = cluster_of(conn)
        got = [ours[i] for i in ids]
        # noise is noise in both
        assert [g is None for g in got] == [label == -1 for label in labels]
        # core points: the same partition (a one-to-one map of labels)
        pairs = {(labels[i], got[i]) for i in core}
        assert len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs}) == expected["clusters"]
        # a border point is in a cluster holding a core point within eps of it
        for i, label in enumerate(labels):
            if label >= 0 and i not in core:
                assert any(got[j] == got[i] and haversine_m(points[i], points[j], radius) <= eps for j in core), i
        stored = conn.execute("SELECT count(*), sum(event_count) FROM crime_clusters WHERE made_by = 'analysis'"
                              ).fetchone()
        assert stored == (expected["clusters"], sum(1 for g in got if g is not None))
