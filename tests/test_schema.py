"""The schema itself: every CHECK and UNIQUE constraint refuses what it should, triggers keep updated_at and the
audit trail true, and the specification's view queries answer as written."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from _async import clock
from psycopg import errors as pg

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())


def insert_row(conn: psycopg.Connection, table: str, row: dict[str, object], returning: str | None = None) -> object:
    """INSERT one row (identifiers through psycopg.sql, values bound); the ``returning`` column's value, if asked."""
    sql = psycopg.sql
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, row)),
        sql.SQL(", ").join(sql.Placeholder() * len(row)),
    )
    if returning is None:
        conn.execute(query, list(row.values()))
        return None
    query += sql.SQL(" RETURNING {}").format(sql.Identifier(returning))
    return conn.execute(query, list(row.values())).fetchone()[0]


def insert_report(conn: psycopg.Connection, **overrides: object) -> uuid.UUID:
    row = {"external_id": f"ext-{uuid.uuid4()}", "text_description": "Phone snatched near the station",
           "latitude": 40.7128, "longitude": -74.006, "timestamp": NOW}
    return insert_row(conn, "raw_incident_reports", row | overrides, returning="report_id")


def insert_event(conn: psycopg.Connection, **overrides: object) -> uuid.UUID:
    row = {"miner_uid": 7, "event_type": "theft", "latitude": 40.7128, "longitude": -74.006,
           "timestamp": NOW, "severity_level": 3, "confidence_score": 0.8}
    return insert_row(conn, "crime_events", row | overrides, returning="event_id")


def count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))).fetchone()[0]


def test_all_tables_views_and_geometry_types_exist(conn):
    tables = {r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")}
    assert {"raw_incident_reports", "crime_events", "miner_performance", "validator_performance",
            "consensus_records", "crime_clusters", "risk_zones", "audit_log", "schema_migrations"} <= tables
    views = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.views WHERE table_schema='public'")}
    assert {"active_miners", "crime_hotspots", "recent_crime_events"} <= views
    geoms = dict(((r[0], r[1]), (r[2], r[3])) for r in conn.execute(
        "SELECT f_table_name, f_geometry_column, type, srid FROM geometry_columns"))
    assert geoms[("crime_events", "geotag")] == ("POINT", 4326)
    assert geoms[("raw_incident_reports", "geotag")] == ("POINT", 4326)
    assert geoms[("risk_zones", "boundary")] == ("POLYGON", 4326)


def test_spec_indexes_exist(conn):
    indexes = {r[0]: r[1] for r in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'crime_events'")}
    assert "USING gist (geotag)" in indexes["idx_events_geotag"]
    assert "(\"timestamp\")" in indexes["idx_events_timestamp"]
    assert "USING gin (metadata)" in indexes["idx_events_metadata"]
    assert "idx_events_risk_score" in indexes  # the second migration, in the spec's form


def test_geotag_is_derived_from_latitude_and_longitude(conn):
    event_id = insert_event(conn, latitude=51.5074, longitude=-0.1278)
    x, y, srid = conn.execute("SELECT ST_X(geotag), ST_Y(geotag), ST_SRID(geotag) FROM crime_events "
                              "WHERE event_id = %s", [event_id]).fetchone()
    assert (round(x, 4), round(y, 4), srid) == (-0.1278, 51.5074, 4326)


REPORT_REFUSALS = [
    ("raw_reports_latitude_range", {"latitude": 95.0}),
    ("raw_reports_latitude_range", {"latitude": float("nan")}),
    ("raw_reports_longitude_range", {"longitude": -180.5}),
    ("raw_reports_longitude_range", {"longitude": float("inf")}),
    ("raw_reports_text_description_length", {"text_description": ""}),
    ("raw_reports_text_description_length", {"text_description": "x" * 10001}),
    ("raw_reports_user_id_length", {"user_id": ""}),
    ("raw_reports_source_length", {"source": ""}),
    ("raw_reports_source_length", {"source": "x" * 101}),
    ("raw_reports_external_id_length", {"external_id": ""}),
    ("raw_reports_crime_type_format", {"crime_type": "Armed Robbery"}),
    ("raw_reports_status_known", {"status": "done"}),
    ("raw_reports_media_hashes_match", {"media_urls": ["https://m/1.jpg"], "media_hashes": ["ab", "cd"]}),
    ("raw_reports_metadata_object", {"metadata": psycopg.types.json.Jsonb([1, 2])}),
    ("raw_reports_attempts_nonnegative", {"processing_attempts": -1}),
]


@pytest.mark.parametrize(("constraint", "bad"), REPORT_REFUSALS, ids=[f"{c}-{list(b)[0]}" for c, b in REPORT_REFUSALS])
def test_raw_report_checks_refuse(conn, constraint, bad):
    before = count(conn, "raw_incident_reports")
    with pytest.raises(pg.CheckViolation) as info:
        insert_report(conn, **bad)
    assert info.value.diag.constraint_name == constraint
    assert count(conn, "raw_incident_reports") == before


EVENT_REFUSALS = [
    ("events_latitude_range", {"latitude": -90.01}),
    ("events_longitude_range", {"longitude": 200.0}),
    ("events_severity_level_range", {"severity_level": 0}),
    ("events_severity_level_range", {"severity_level": 6}),
    ("events_validator_uid_nonnegative", {"validator_uid": -1}),
    ("events_location_pair", {"latitude": None, "location_source": None}),
    ("events_location_pair", {"longitude": None, "location_source": None}),
    ("events_location_source_located", {"latitude": None, "longitude": None}),
    ("events_location_source_located", {"location_source": None}),
    ("events_location_source_known", {"location_source": "gps"}),
    ("events_timestamp_source_known", {"timestamp_source": "guessed"}),
    ("events_time_end_order", {"time_end": datetime.fromisoformat("2000-01-01T00:00:00+00:00")}),
    ("events_entities_array", {"entities": psycopg.types.json.Jsonb({"who": "x"})}),
    ("events_location_text_length", {"location_text": ""}),
    ("events_location_text_length", {"location_text": "x" * 1001}),
    ("events_time_info_length", {"time_info": ""}),
    ("events_request_id_length", {"request_id": "x" * 201}),
    ("events_confidence_range", {"confidence_score": 1.01}),
    ("events_confidence_range", {"confidence_score": -0.1}),
    ("events_verification_status_known", {"verification_status": "approved"}),
    ("events_verification_score_range", {"verification_score": 2.0}),
    ("events_miner_uid_nonnegative", {"miner_uid": -1}),
    ("events_event_type_format", {"event_type": "THEFT"}),
    ("events_title_length", {"title": ""}),
]


@pytest.mark.parametrize(("constraint", "bad"), EVENT_REFUSALS, ids=[f"{c}-{list(b)[0]}" for c, b in EVENT_REFUSALS])
def test_crime_event_checks_refuse(conn, constraint, bad):
    before = count(conn, "crime_events")
    with pytest.raises(pg.CheckViolation) as info:
        insert_event(conn, **bad)
    assert info.value.diag.constraint_name == constraint
    assert count(conn, "crime_events") == before


def test_risk_score_check_from_second_migration(conn):
    with pytest.raises(pg.CheckViolation):
        insert_event(conn, risk_score=1.5)
    insert_event(conn, risk_score=0.42)


MINER_REFUSALS = [
    ("miner_uid_nonnegative", {"miner_uid": -3}),
    ("miner_hotkey_length", {"hotkey": ""}),
    ("miner_integrity_range", {"integrity_score": 1.5}),
    ("miner_clustering_range", {"clustering_score": -0.5}),
    ("miner_novelty_range", {"novelty_score": 3}),
    ("miner_quality_range", {"quality_score": -1}),
    ("miner_overall_range", {"overall_score": 1.2}),
    ("miner_rounds_consistent", {"total_rounds": 1, "successful_rounds": 2}),
]


@pytest.mark.parametrize(("constraint", "bad"), MINER_REFUSALS, ids=[c for c, _ in MINER_REFUSALS])
def test_miner_performance_checks_refuse(conn, constraint, bad):
    with pytest.raises(pg.CheckViolation) as info:
        insert_row(conn, "miner_performance", {"miner_uid": 1, "hotkey": "hk-1"} | bad)
    assert info.value.diag.constraint_name == constraint


VALIDATOR_REFUSALS = [
    ("validator_uid_nonnegative", {"validator_uid": -1}),
    ("validator_accuracy_range", {"consensus_accuracy": 1.1}),
    ("validator_avg_score_range", {"avg_score_given": -0.1}),
    ("validator_counts_consistent", {"validated_events": 2, "agreements": 3}),
    ("validator_stake_nonnegative", {"stake_amount": -5}),
]


@pytest.mark.parametrize(("constraint", "bad"), VALIDATOR_REFUSALS, ids=[c for c, _ in VALIDATOR_REFUSALS])
def test_validator_performance_checks_refuse(conn, constraint, bad):
    with pytest.raises(pg.CheckViolation) as info:
        insert_row(conn, "validator_performance", {"validator_uid": 1, "hotkey": "hk-v"} | bad)
    assert info.value.diag.constraint_name == constraint


def test_unique_natural_keys(conn):
    insert_report(conn, external_id="app-42")
    with pytest.raises(pg.UniqueViolation) as info:
        insert_report(conn, external_id="app-42")
    assert info.value.diag.constraint_name == "raw_reports_external_id_key"

    conn.execute("INSERT INTO miner_performance (miner_uid, hotkey) VALUES (5, 'a')")
    with pytest.raises(pg.UniqueViolation):
        conn.execute("INSERT INTO miner_performance (miner_uid, hotkey) VALUES (5, 'b')")
    conn.execute("INSERT INTO validator_performance (validator_uid, hotkey) VALUES (5, 'a')")
    with pytest.raises(pg.UniqueViolation):
        conn.execute("INSERT INTO validator_performance (validator_uid, hotkey) VALUES (5, 'b')")

    event_id = insert_event(conn)
    record = "INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores, final_score) " \
             "VALUES (%s, 9, 1, '{}', 0.5)"
    conn.execute(record, [event_id])
    with pytest.raises(pg.UniqueViolation) as info:
        conn.execute(record, [event_id])
    assert info.value.diag.constraint_name == "consensus_records_event_validator_round_key"


def test_foreign_keys(conn):
    with pytest.raises(pg.ForeignKeyViolation):
        conn.execute("INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores, final_score) "
                     "VALUES (%s, 1, 1, '{}', 0.5)", [uuid.uuid4()])
    with pytest.raises(pg.ForeignKeyViolation):
        insert_event(conn, cluster_id=uuid.uuid4())
    with pytest.raises(pg.ForeignKeyViolation) as info:
        insert_event(conn, related_reports=[uuid.uuid4()])
    assert info.value.diag.constraint_name == "events_related_reports_exist"
    report = insert_report(conn)
    event_id = insert_event(conn, related_reports=[report])
    linked = conn.execute("SELECT r.external_id FROM crime_events e JOIN raw_incident_reports r "
                          "ON r.report_id = ANY (e.related_reports) WHERE e.event_id = %s", [event_id]).fetchall()
    assert len(linked) == 1


def test_risk_zone_checks(conn):
    square = "POLYGON((-74.01 40.70, -74.00 40.70, -74.00 40.71, -74.01 40.71, -74.01 40.70))"
    insert = ("INSERT INTO risk_zones (name, boundary, risk_level, risk_score) "
              "VALUES (%s, ST_GeomFromText(%s, 4326), %s, %s)")
    conn.execute(insert, ["Lower Manhattan", square, 3, 0.5])
    with pytest.raises(pg.CheckViolation):
        conn.execute(insert, ["bad level", square, 6, 0.5])
    with pytest.raises(pg.CheckViolation):
        conn.execute(insert, ["bad score", square, 3, 1.5])
    bowtie = "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"
    with pytest.raises(pg.CheckViolation) as info:
        conn.execute(insert, ["self-crossing", bowtie, 3, 0.5])
    assert info.value.diag.constraint_name == "risk_zones_boundary_valid"


def test_updated_at_triggers_move_forward(conn):
    tables = {
        "raw_incident_reports": ("report_id", insert_report(conn), "status = 'processed'"),
        "crime_events": ("event_id", insert_event(conn), "severity_level = 4"),
    }
    conn.execute("INSERT INTO miner_performance (miner_uid, hotkey) VALUES (1, 'hk')")
    conn.execute("INSERT INTO validator_performance (validator_uid, hotkey) VALUES (1, 'hk')")
    tables["miner_performance"] = ("miner_uid", 1, "total_rounds = 1")
    tables["validator_performance"] = ("validator_uid", 1, "validated_events = 1")
    cluster = conn.execute("INSERT INTO crime_clusters (latitude, longitude, radius_m, time_start, time_end) "
                           "VALUES (1, 1, 100, now(), now()) RETURNING cluster_id").fetchone()[0]
    tables["crime_clusters"] = ("cluster_id", cluster, "event_count = 2")
    zone = conn.execute("INSERT INTO risk_zones (name, boundary, risk_level, risk_score) VALUES "
                        "('z', ST_MakeEnvelope(0, 0, 1, 1, 4326), 2, 0.3) RETURNING zone_id").fetchone()[0]
    tables["risk_zones"] = ("zone_id", zone, "risk_level = 3")

    for table, (key, value, assignment) in tables.items():
        ident = psycopg.sql.Identifier
        before = conn.execute(psycopg.sql.SQL("SELECT updated_at FROM {} WHERE {} = %s").format(
            ident(table), ident(key)), [value]).fetchone()[0]
        after = conn.execute(psycopg.sql.SQL("UPDATE {} SET " + assignment + " WHERE {} = %s RETURNING updated_at")
                             .format(ident(table), ident(key)), [value]).fetchone()[0]
        assert after > before, table
        # a statement that sets updated_at itself keeps its value (the cluster run's clock_timestamp(), a copy's
        # central value); the trigger does not run for it
        given = before - timedelta(days=1)
        kept = conn.execute(psycopg.sql.SQL("UPDATE {} SET " + assignment + ", updated_at = %s WHERE {} = %s "
                                            "RETURNING updated_at").format(ident(table), ident(key)),
                            [given, value]).fetchone()[0]
        assert kept == given, table


def test_audit_trail_for_event_changes_and_reregistration(conn):
    event_id = insert_event(conn)
    # An insert is audited once a statement, by key (no copy of the row).
    assert conn.execute("SELECT operation, row_id, row_count, new_data FROM audit_log").fetchall() == [
        ("INSERT", str(event_id), 1, None)]
    conn.execute("UPDATE crime_events SET verification_status = 'verified' WHERE event_id = %s", [event_id])
    row = conn.execute("SELECT operation, row_id, old_data->>'verification_status', new_data->>'verification_status' "
                       "FROM audit_log WHERE table_name = 'crime_events' AND operation = 'UPDATE'").fetchone()
    assert row == ("UPDATE", str(event_id), "pending", "verified")

    conn.execute("INSERT INTO miner_performance (miner_uid, hotkey, total_rounds) VALUES (3, 'old', 0)")
    conn.execute("UPDATE miner_performance SET hotkey = 'new' WHERE miner_uid = 3")
    rereg = conn.execute("SELECT old_data->>'hotkey', new_data->>'hotkey' FROM audit_log "
                         "WHERE operation = 'REREGISTER'").fetchone()
    assert rereg == ("old", "new")


def test_view_active_miners_answers_spec_query(conn):
    conn.execute("INSERT INTO miner_performance (miner_uid, hotkey, total_rounds, successful_rounds, is_active) "
                 "VALUES (1, 'a', 10, 9, true), (2, 'b', 10, 5, true), (3, 'c', 10, 10, false)")
    rows = conn.execute("SELECT miner_uid, success_rate FROM active_miners WHERE success_rate > 80").fetchall()
    assert [(uid, float(rate)) for uid, rate in rows] == [(1, 90.0)]
    active = conn.execute("SELECT COUNT(*) as active_nodes FROM miner_performance WHERE is_active = true").fetchone()
    assert active[0] == 2


def test_view_crime_hotspots_groups_by_cell(conn):
    # Ten verified events within ~30 m of each other, spread over a few distinct points.
    for i in range(10):
        insert_event(conn, latitude=40.71281 + i * 0.00003, longitude=-74.00601 - i * 0.00002,
                     verification_status="verified", severity_level=2 + i % 3, timestamp=NOW - timedelta(hours=i))
    # Not hotspots: pending events in one place, verified but old events in another.
    for _ in range(6):
        insert_event(conn, latitude=48.8566, longitude=2.3522, verification_status="pending")
        insert_event(conn, latitude=35.6762, longitude=139.6503, verification_status="verified",
                     timestamp=NOW - timedelta(days=8))
    rows = conn.execute("SELECT * FROM crime_hotspots WHERE incident_count >= 5").fetchall()
    assert len(rows) == 1
    columns = [c.name for c in conn.execute("SELECT * FROM crime_hotspots LIMIT 0").description]
    hotspot = dict(zip(columns, rows[0], strict=True))
    assert hotspot["incident_count"] == 10
    assert abs(hotspot["latitude"] - 40.715) < 0.006 and abs(hotspot["longitude"] + 74.005) < 0.006
    assert float(hotspot["avg_severity"]) == pytest.approx(sum(2 + i % 3 for i in range(10)) / 10, abs=0.01)


def test_view_recent_crime_events_last_24_hours(conn):
    recent = insert_event(conn, timestamp=NOW - timedelta(hours=2), latitude=1.5, longitude=2.5)
    insert_event(conn, timestamp=NOW - timedelta(hours=30))
    rows = conn.execute("SELECT event_id, latitude, longitude FROM recent_crime_events").fetchall()
    assert rows == [(recent, 1.5, 2.5)]


def test_a_related_report_cannot_be_deleted_or_renumbered(conn):
    linked, spare = insert_report(conn), insert_report(conn)
    event_id = insert_event(conn, related_reports=[linked])
    with pytest.raises(pg.ForeignKeyViolation) as info:
        conn.execute("DELETE FROM raw_incident_reports WHERE report_id = %s", [linked])
    assert info.value.diag.constraint_name == "events_related_reports_exist"
    assert str(event_id) in info.value.diag.message_primary
    with pytest.raises(pg.ForeignKeyViolation):
        conn.execute("UPDATE raw_incident_reports SET report_id = gen_random_uuid() WHERE report_id = %s", [linked])
    assert count(conn, "raw_incident_reports") == 2

    # A report no event names can go, and one whose event is gone too.
    new_id = uuid.uuid4()
    conn.execute("UPDATE raw_incident_reports SET report_id = %s WHERE report_id = %s", [new_id, spare])
    conn.execute("DELETE FROM raw_incident_reports WHERE report_id = %s", [new_id])
    conn.execute("DELETE FROM crime_events WHERE event_id = %s", [event_id])
    conn.execute("DELETE FROM raw_incident_reports WHERE report_id = %s", [linked])
    assert count(conn, "raw_incident_reports") == 0
