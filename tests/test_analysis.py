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


# -- re-runs -----------------------------------------------------------------------------------------------------
def blob(centre: tuple[float, float], n: int, step_m: float = 12.0) -> list[tuple[float, float]]:
    """``n`` points on a short east-west line of ``step_m`` spacing starting at ``centre``."""
    return [north_east(0.0, i * step_m, centre) for i in range(n)]


def test_a_rerun_keeps_ids_writes_no_event_row_and_leaves_node_clusters_alone(conn):
    a_centre, b_centre = NYC, north_east(1000.0, 0.0)
    group_a, group_b = insert(conn, blob(a_centre, 8)), insert(conn, blob(b_centre, 6))
    noise = insert(conn, [north_east(-2000.0, 0.0)])
    node = conn.execute("INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, time_start, time_end) "
                        "VALUES (7, %s, %s, 300, %s, %s) RETURNING cluster_id",
                        (*NYC, NOW - timedelta(days=1), NOW)).fetchone()[0]
    old = conn.execute("INSERT INTO crime_clusters (latitude, longitude, radius_m, time_start, time_end, made_by) "
                       "VALUES (%s, %s, 50, %s, %s, 'analysis') RETURNING cluster_id",
                       (*NYC, NOW - timedelta(days=40), NOW - timedelta(days=39))).fetchone()[0]
    conn.execute("UPDATE crime_events SET cluster_id = %s WHERE event_id = %s", (node, group_a[0]))
    node_row = conn.execute("SELECT * FROM crime_clusters WHERE cluster_id = %s", (node,)).fetchone()

    first = run_clusters(conn)
    assert (first["incidents"], first["clusters"], first["clusters_written"], first["clusters_removed"],
            first["events_updated"]) == (15, 2, 2, 0, 13)
    ours = cluster_of(conn)
    assert ours[group_a[0]] == node  # a node-made cluster_id is kept
    assert len({ours[e] for e in group_a[1:]}) == 1 and len({ours[e] for e in group_b}) == 1
    assert ours[noise[0]] is None
    clusters = dict(conn.execute("SELECT cluster_id, event_count FROM crime_clusters WHERE made_by = 'analysis' "
                                 "AND cluster_id <> %s", (old,)).fetchall())
    assert clusters == {ours[group_a[1]]: 8, ours[group_b[0]]: 6}
    row = conn.execute("SELECT latitude, longitude, radius_m, dominant_crime_type, confidence_score, cluster_type, "
                       "metadata FROM crime_clusters WHERE cluster_id = %s", (ours[group_b[0]],)).fetchone()
    assert row[0] == pytest.approx(b_centre[0], abs=1e-6) and row[2] == pytest.approx(30.0, abs=0.2)
    assert row[3:6] == ("theft", pytest.approx(1 - 2 ** (-6 / 5), abs=1e-4), "geographic")
    assert row[6] == {"algorithm": "dbscan", "eps_m": 200.0, "min_points": 5, "window_days": 7, "events": 6,
                      "crime_types": {"theft": 6}}

    audited, before = event_updates(conn), conn.execute("SELECT cluster_id, updated_at FROM crime_clusters "
                                                        "ORDER BY cluster_id").fetchall()
    second = run_clusters(conn)
    assert (second["clusters"], second["clusters_written"], second["clusters_removed"],
            second["events_updated"]) == (2, 0, 0, 0)
    assert event_updates(conn) == audited  # not one event row written
    assert conn.execute("SELECT cluster_id, updated_at FROM crime_clusters ORDER BY cluster_id").fetchall() == before
    assert cluster_of(conn) == ours
    assert conn.execute("SELECT * FROM crime_clusters WHERE cluster_id = %s", (node,)).fetchone() == node_row

    # group B is no longer verified: its cluster goes, its events point at none; the rest stays
    conn.execute("UPDATE crime_events SET verification_status = 'rejected' WHERE event_id = ANY(%s)", (group_b,))
    third = run_clusters(conn)
    assert (third["clusters"], third["clusters_written"], third["clusters_removed"], third["events_updated"]) == \
        (1, 0, 1, 6)
    after = cluster_of(conn)
    assert all(after[e] is None for e in group_b) and after[group_a[0]] == node
    assert {after[e] for e in group_a[1:]} == {ours[group_a[1]]}
    left = {r[0] for r in conn.execute("SELECT cluster_id FROM crime_clusters").fetchall()}
    assert left == {node, old, ours[group_a[1]]}  # the node's and an older window's analysis cluster stay


def test_three_miners_reporting_one_incident_count_once(conn):
    report = conn.execute("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                          "\"timestamp\") VALUES ('app-1', 'window smashed', %s, %s, %s) RETURNING report_id",
                          (*NYC, NOW - timedelta(hours=2))).fetchone()[0]
    shared = [insert(conn, [north_east(0.0, miner * 2.0)], miner=miner, related=[report])[0] for miner in (11, 12, 13)]
    single = insert(conn, blob(north_east(0.0, 30.0), 4))
    assert run_clusters(conn, min_points=6)["clusters"] == 0  # 5 incidents, 7 events: no cluster of 6
    result = run_clusters(conn, min_points=5)
    assert (result["incidents"], result["clusters"], result["events_updated"]) == (5, 1, 7)
    ours = cluster_of(conn)
    assert len({ours[e] for e in shared + single}) == 1  # every event of the incident shares its cluster
    count, events = conn.execute("SELECT event_count, (metadata ->> 'events')::int FROM crime_clusters").fetchone()
    assert (count, events) == (5, 7)


# -- near repeats --------------------------------------------------------------------------------------------------
def run_near(conn, days=3, distance_m=200.0, hours=48.0, same_address_m=10.0) -> dict:
    cur = conn.execute("SELECT * FROM luminar_flag_near_repeats(%s, %s, %s, %s)",
                       (days, distance_m, hours, same_address_m))
    return dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))


def test_near_repeats_mark_later_incidents_of_the_same_type_nearby_at_another_address(conn):
    def site(k: int) -> tuple[float, float]:
        return north_east(0.0, 2000.0 * k)  # scenarios 2 km apart

    hours = timedelta(hours=1)
    report = conn.execute("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                          "\"timestamp\") VALUES ('app-2', 'door forced', %s, %s, %s) RETURNING report_id",
                          (*site(0), NOW - 20 * hours)).fetchone()[0]
    first = insert(conn, [site(0)], event_type="burglary", ago=50 * hours)[0]
    repeat = [insert(conn, [north_east(100.0, 0.0, site(0))], event_type="burglary", ago=20 * hours, miner=m,
                     related=[report])[0] for m in (11, 12, 13)]  # one incident, three miners
    same_address = insert(conn, [site(1), north_east(5.0, 0.0, site(1))], event_type="burglary",
                          ago=[50 * hours, 20 * hours])
    other_type = insert(conn, [site(2)], event_type="theft", ago=50 * hours) + \
        insert(conn, [north_east(100.0, 0.0, site(2))], event_type="burglary", ago=20 * hours)
    too_late = insert(conn, [site(3), north_east(100.0, 0.0, site(3))], event_type="burglary",
                      ago=[60 * hours, 5 * hours])  # 55 h apart: more than 48
    too_far = insert(conn, [site(4), north_east(300.0, 0.0, site(4))], event_type="burglary",
                     ago=[50 * hours, 20 * hours])
    before_window = insert(conn, [site(5), north_east(100.0, 0.0, site(5))], event_type="burglary",
                           ago=[80 * hours, 40 * hours])  # the earlier one is before the 3-day window
    result = run_near(conn)
    assert (result["incidents"], result["flagged_incidents"], result["flags_written"], result["flags_removed"]) == \
        (11, 1, 3, 0)  # site 5's earlier incident is before the window
    rows = conn.execute("SELECT event_id, incident_event_id, earlier_event_id, distance_m, hours_after, parameters "
                        "FROM near_repeats ORDER BY event_id").fetchall()
    assert {r[0] for r in rows} == set(repeat)  # every event of the incident, nothing else
    assert len({r[1] for r in rows}) == 1 and rows[0][1] in repeat
    assert all(r[2] == first and r[3] == pytest.approx(100.0, abs=0.01) and r[4] == pytest.approx(30.0)
               for r in rows)
    assert rows[0][5] == {"window_days": 3, "distance_m": 200.0, "hours": 48.0, "same_address_m": 10.0}
    for e in same_address + other_type + too_late + too_far + before_window:
        assert e not in {r[0] for r in rows}

    again = run_near(conn)
    assert (again["flagged_incidents"], again["flags_written"], again["flags_removed"]) == (1, 0, 0)
    assert conn.execute("SELECT event_id, computed_at FROM near_repeats ORDER BY event_id").fetchall() == \
        [(r[0], conn.execute("SELECT computed_at FROM near_repeats WHERE event_id = %s", (r[0],)).fetchone()[0])
         for r in rows]
    narrower = run_near(conn, distance_m=50.0)  # the window's flags are replaced
    assert (narrower["flagged_incidents"], narrower["flags_written"], narrower["flags_removed"]) == (0, 0, 3)
    assert conn.execute("SELECT count(*) FROM near_repeats").fetchone()[0] == 0
    wider = run_near(conn, days=4)  # the earlier event of site 5 is now in the window
    assert wider["flagged_incidents"] == 2


# -- the Python doors, reads and refusals ----------------------------------------------------------------------------
def test_deleting_a_cited_event_takes_the_rows_citing_it(conn):
    # near_repeats cites the incident's representative and the witness without a foreign key (migration
    # 20261130105000): deleting either event deletes the rows citing it, as ON DELETE CASCADE did.
    hours = timedelta(hours=1)
    report = conn.execute("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                          "\"timestamp\") VALUES ('app-3', 'door forced', %s, %s, %s) RETURNING report_id",
                          (*NYC, NOW - 20 * hours)).fetchone()[0]
    insert(conn, [NYC], event_type="burglary", ago=50 * hours)
    repeat = [insert(conn, [north_east(100.0, 0.0)], event_type="burglary", ago=20 * hours, miner=m,
                     related=[report])[0] for m in (11, 12, 13)]  # one incident, three miners
    witness, later = insert(conn, [north_east(0.0, 2000.0), north_east(100.0, 2000.0)], event_type="theft",
                            ago=[30 * hours, 10 * hours])
    assert run_near(conn)["flags_written"] == 4
    cites = "SELECT event_id, incident_event_id, earlier_event_id FROM near_repeats ORDER BY event_id"
    rows = conn.execute(cites).fetchall()
    representative = rows[0][1] if rows[0][0] in repeat else rows[-1][1]
    assert representative in repeat and {r[0] for r in rows} == {*repeat, later}
    assert [r for r in rows if r[0] == later] == [(later, later, witness)]

    conn.execute("DELETE FROM crime_events WHERE event_id = %s", (witness,))
    assert {r[0] for r in conn.execute(cites).fetchall()} == set(repeat)  # the row citing the witness went
    conn.execute("DELETE FROM crime_events WHERE event_id = %s", (representative,))
    assert conn.execute(cites).fetchall() == []  # its own row (event_id) and the two citing it as the incident's
    assert run_near(conn)["flags_written"] == 2  # the incident's two remaining events, with a new representative


def test_the_python_runs_and_facade_reads_and_bad_parameters_are_refused(db_settings):
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        insert(conn, blob(NYC, 6) + blob(north_east(1000.0, 0.0), 9))
        insert(conn, [north_east(2000.0, 0.0)], event_type="burglary", ago=timedelta(hours=30))
        insert(conn, [north_east(2000.0, 50.0)], event_type="burglary", ago=timedelta(hours=3))
        node = conn.execute("INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, event_count, "
                            "time_start, time_end) VALUES (7, 1, 2, 300, 40, %s, %s) RETURNING cluster_id",
                            (NOW - timedelta(days=1), NOW)).fetchone()[0]
        run = analyze_clusters(conn, days=7)
        assert (run.incidents, run.clusters, run.clusters_written, run.events_updated) == (17, 2, 2, 15)
        near = flag_near_repeats(conn, days=7)
        assert (near.incidents, near.flagged_incidents, near.flags_written) == (17, 1, 1)
        refused = []
        for call in (lambda: analyze_clusters(conn, days=0), lambda: analyze_clusters(conn, eps_m=0.5),
                     lambda: analyze_clusters(conn, eps_m=float("nan")), lambda: analyze_clusters(conn, min_points=1),
                     lambda: analyze_clusters(conn, min_points=True), lambda: flag_near_repeats(conn, hours=0),
                     lambda: flag_near_repeats(conn, distance_m=1e6),
                     lambda: flag_near_repeats(conn, distance_m=100, same_address_m=100)):
            with pytest.raises(ValidationError) as err:
                call()
            refused.append(err.value.field)
        assert refused == ["days", "eps_m", "eps_m", "min_points", "min_points", "hours", "distance_m",
                           "same_address_m"]
        assert "less than distance_m" in str(err.value)
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="eps_m"):
            conn.execute("SELECT * FROM luminar_analyze_clusters(7, -1, 5)")

    async def body(db):
        every = await db.get_crime_clusters(days=7)
        mine = await db.get_crime_clusters(days=7, analysis_only=True, limit=1)
        flags = await db.get_near_repeats(days=7)
        refused = []
        for call in (lambda: db.get_crime_clusters(days=0), lambda: db.get_crime_clusters(limit=0),
                     lambda: db.get_crime_clusters(analysis_only="yes"), lambda: db.get_near_repeats(days=-1)):
            with pytest.raises(ValidationError) as err:
                await call()
            refused.append(err.value.field)
        return every, mine, flags, refused

    every, mine, flags, refused = with_facade(db_settings, body)
    assert [(c.event_count, c.made_by) for c in every] == [(40, "node"), (9, "analysis"), (6, "analysis")]
    assert every[0].cluster_id == node and [(c.event_count, c.made_by) for c in mine] == [(9, "analysis")]
    assert [(f.event_type, round(f.distance_m), f.hours_after) for f in flags] == [("burglary", 50, 27.0)]
    assert refused == ["days", "limit", "analysis_only", "days"]


def test_the_runs_are_the_owners_and_a_miner_cannot_write_an_analysis_cluster(conn, node_login):
    def may(role: str, function: str) -> bool:
        return conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()[0]

    for function in ("luminar_analyze_clusters(integer, double precision, integer)",
                     "luminar_flag_near_repeats(integer, double precision, double precision, double precision)"):
        assert not any(may(r, function) for r in ("luminar_miner", "luminar_validator", "luminar_analyst"))
    miner = node_login("luminar_miner", "miner", 7)
    with psycopg.connect(miner.conninfo(), autocommit=True) as node:
        stored = "INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, time_start, time_end%s) " \
                 "VALUES (7, 1, 2, 10, now(), now()%s) RETURNING cluster_id"
        node.execute(stored % ("", ""))  # a node-made cluster, as before
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            node.execute(stored % (", made_by", ", 'analysis'"))
        assert node.execute("SELECT count(*) FROM near_repeats").fetchone()[0] == 0  # miners read the flags
