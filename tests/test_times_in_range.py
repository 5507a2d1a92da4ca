"""Reads never fail on a stored time: the tables refuse times no read can return (before 1970, infinity, after the
year 9999), and the migration that adds the rule refuses a database holding such rows, saying how many, changing
nothing."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors as pg

from luminar_store.errors import MigrationError
from luminar_store.migrator import DEFAULT_DIR, migrate_database

BEFORE = "20261129230100"  # the migration before times_in_range
CHECKS = [f"{table}_{column}_in_range" for table, column in [
    ("raw_incident_reports", "timestamp"), ("raw_incident_reports", "claimed_at"),
    ("raw_incident_reports", "processed_at"), ("crime_events", "timestamp"), ("crime_events", "time_end"),
    ("crime_events", "verified_at"), ("crime_clusters", "time_start"), ("crime_clusters", "time_end"),
    ("miner_performance", "registered_at"), ("miner_performance", "last_activity"),
    ("validator_performance", "last_activity"), ("risk_zones", "valid_from"), ("risk_zones", "valid_until")]]
COUNT_CHECKS = "SELECT count(*) FROM pg_constraint WHERE conname = ANY(%s)"

ROW = """
INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "timestamp")
VALUES (%s, 'x', 1, 1, %s::timestamptz)
"""


@pytest.mark.parametrize("stamp", ["0001-12-31 10:00:00+00 BC", "1969-12-31 23:59:59+00", "infinity",
                                   "-infinity", "10000-01-01 00:00:00+00"])
def test_the_tables_refuse_times_no_read_can_return(conn, stamp):
    with pytest.raises(pg.CheckViolation, match="raw_incident_reports_timestamp_in_range"):
        conn.execute(ROW, ["poison", stamp])
    with pytest.raises(pg.CheckViolation, match="crime_events_time_end_in_range"):
        conn.execute("INSERT INTO crime_events (miner_uid, event_type, \"timestamp\", time_end, confidence_score) "
                     "VALUES (1, 'theft', now(), %s::timestamptz, 0.5)", [stamp])


def test_the_edges_of_the_range_are_stored_and_read(conn):
    conn.execute(ROW, ["first", "1970-01-01 00:00:00+00"])
    conn.execute(ROW, ["last", "9999-12-31 23:59:59.999999+00"])
    years = conn.execute("SELECT \"timestamp\" FROM raw_incident_reports ORDER BY 1").fetchall()
    assert [row[0].year for row in years] == [1970, 9999]


def test_a_database_holding_such_rows_is_refused_with_counts_and_left_unchanged(empty_db):
    conninfo = empty_db.conninfo()
    migrate_database(conninfo, DEFAULT_DIR, target=BEFORE)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for n, stamp in enumerate(["0001-12-31 10:00:00+00 BC", "infinity", "2026-01-01+00"]):
            conn.execute(ROW, [f"r{n}", stamp])
        conn.execute("UPDATE raw_incident_reports SET claimed_at = '-infinity' WHERE external_id = 'r2'")

    with pytest.raises(MigrationError) as refused:
        migrate_database(conninfo, DEFAULT_DIR)
    message = str(refused.value)
    assert "raw_incident_reports.timestamp: 2 rows" in message
    assert "raw_incident_reports.claimed_at: 1 rows" in message
    assert "crime_events" not in message  # only the columns holding such rows are named

    with psycopg.connect(conninfo, autocommit=True) as conn:
        checks = conn.execute(COUNT_CHECKS, [CHECKS]).fetchone()[0]
        applied = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
        assert (checks, applied) == (0, BEFORE)
        conn.execute("DELETE FROM raw_incident_reports WHERE external_id IN ('r0', 'r1')")
        conn.execute("UPDATE raw_incident_reports SET claimed_at = NULL")
    migrate_database(conninfo, DEFAULT_DIR)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        assert conn.execute(COUNT_CHECKS, [CHECKS]).fetchone()[0] == len(CHECKS)
