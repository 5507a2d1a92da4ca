"""AuditRepository against the real database: entries written by the triggers, read back newest first / per row."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from _async import insert_event, run_with_conn

from luminar_store.errors import ValidationError
from luminar_store.models import AuditEntry
from luminar_store.repositories.audit import AuditRepository
from luminar_store.repositories.miners import MinerRepository
from luminar_store.repositories.risk_zones import RiskZoneRepository

SCORES = {"integrity": 0.9, "clustering": 0.9, "novelty": 0.9, "quality": 0.9}
SQUARE = [{"lat": 0, "lng": 0}, {"lat": 0, "lng": 1}, {"lat": 1, "lng": 1}, {"lat": 1, "lng": 0}]


def test_recent_is_empty_on_a_fresh_database(db_conninfo):
    async def body(conn):
        assert await AuditRepository(conn).recent() == []

    run_with_conn(db_conninfo, body)


def test_entries_from_triggers_newest_first(db_conninfo):
    async def body(conn):
        audit = AuditRepository(conn)
        event_id = await insert_event(conn)  # an insert is audited once a statement, by key
        await conn.execute("UPDATE crime_events SET verification_status = 'verified' WHERE event_id = %s",
                           (event_id,))
        zone = await RiskZoneRepository(conn).store({"name": "z", "boundary": SQUARE, "risk_level": 2,
                                                     "risk_score": 0.4})
        await conn.execute("DELETE FROM crime_events WHERE event_id = %s", (event_id,))

        entries = await audit.recent()
        assert all(isinstance(e, AuditEntry) for e in entries)
        assert [(e.table_name, e.operation) for e in entries] == [
            ("crime_events", "DELETE"), ("risk_zones", "INSERT"), ("crime_events", "UPDATE"),
            ("crime_events", "INSERT")]
        assert entries[1].row_id == str(zone.zone_id) and entries[1].old_data is None
        assert (entries[1].row_count, entries[1].row_ids, entries[1].new_data) == (1, [str(zone.zone_id)], None)
        assert (entries[3].row_id, entries[3].row_count) == (str(event_id), 1)
        update = entries[2]
        assert update.row_id == str(event_id)
        assert update.old_data["verification_status"] == "pending"
        assert update.new_data["verification_status"] == "verified"
        assert "geotag" not in update.new_data  # the trigger drops the derived geometry
        assert update.actor and update.occurred_at.tzinfo is not None
        assert entries[0].new_data is None and entries[0].old_data["event_id"] == str(event_id)

        assert [e.operation for e in await audit.recent(table_name="crime_events")] == ["DELETE", "UPDATE", "INSERT"]
        assert [e.table_name for e in await audit.recent(limit=1)] == ["crime_events"]
        assert await audit.recent(table_name="validator_performance") == []

    run_with_conn(db_conninfo, body)


def test_for_row_gives_one_rows_history_oldest_first(db_conninfo):
    async def body(conn):
        audit = AuditRepository(conn)
        miners = MinerRepository(conn)
        await miners.record_round(42, "first", SCORES)
        await miners.record_round(42, "second", SCORES)
        await miners.record_round(42, "third", SCORES)
        await miners.record_round(43, "other", SCORES)
        await miners.record_round(43, "changed", SCORES)
        history = await audit.for_row("miner_performance", 42)
        assert [e.operation for e in history] == ["INSERT", "REREGISTER", "REREGISTER"]
        assert [(e.old_data["hotkey"], e.new_data["hotkey"]) for e in history[1:]] == [
            ("first", "second"), ("second", "third")]
        assert await audit.for_row("miner_performance", "42") == history
        assert len(await audit.for_row("miner_performance", 42, limit=2)) == 2
        assert await audit.for_row("miner_performance", 44) == []
        assert await audit.for_row("validator_performance", 42) == []

    run_with_conn(db_conninfo, body)


def test_for_row_accepts_a_uuid(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn, timestamp=datetime.now(timezone.utc) - timedelta(hours=1))
        await conn.execute("UPDATE crime_events SET severity_level = 5 WHERE event_id = %s", (event_id,))
        inserted, entry = await AuditRepository(conn).for_row("crime_events", event_id)
        assert inserted.operation == "INSERT" and inserted.row_ids == [str(event_id)]
        assert entry.operation == "UPDATE" and entry.new_data["severity_level"] == 5
        assert await AuditRepository(conn).for_row("crime_events", uuid.uuid4()) == []

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(("call", "field"), [
    (lambda a: a.recent(0), "limit"),
    (lambda a: a.recent("10"), "limit"),
    (lambda a: a.recent(10, table_name="audit_log; DROP TABLE audit_log"), "table_name"),
    (lambda a: a.recent(10, table_name=""), "table_name"),
    (lambda a: a.for_row("crime_events", None), "row_id"),
    (lambda a: a.for_row("crime_events", ""), "row_id"),
    (lambda a: a.for_row("crime_events", True), "row_id"),
    (lambda a: a.for_row(None, "1"), "table_name"),
    (lambda a: a.for_row("crime_events", "1", limit=10_001), "limit"),
])
def test_arguments_are_checked(db_conninfo, call, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await call(AuditRepository(conn))
        assert info.value.field == field

    run_with_conn(db_conninfo, body)


def test_an_update_and_a_delete_keep_every_column_but_the_generated_geometry(db_conninfo):
    """The audit rows of updates and deletes hold each row as to_jsonb gives it, without geotag / centroid (which
    the functions blank before turning the row into JSON, so that PostGIS never draws them)."""
    import psycopg
    from psycopg import sql

    def as_json(table: str, key: str) -> sql.Composed:
        return sql.SQL("SELECT to_jsonb(t) - 'geotag' - 'centroid' FROM {} AS t WHERE {} = %s").format(
            sql.Identifier(table), sql.Identifier(key))

    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        report = conn.execute("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                              "\"timestamp\") VALUES ('app-9', 'bike taken', 40.7, -74.0, now()) "
                              "RETURNING report_id").fetchone()[0]
        cluster = conn.execute("INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, time_start, "
                               "time_end) VALUES (7, 40.7, -74.0, 300, now() - interval '1 day', now()) "
                               "RETURNING cluster_id").fetchone()[0]
        event = conn.execute("INSERT INTO crime_events (miner_uid, event_type, title, latitude, longitude, "
                             "\"timestamp\", severity_level, confidence_score, related_reports, cluster_id) "
                             "VALUES (7, 'theft', 't', 40.7, -74.0, now(), 3, 0.9, ARRAY[%s]::uuid[], %s) "
                             "RETURNING event_id", (report, cluster)).fetchone()[0]
        rows = {"raw_incident_reports": ("report_id", report), "crime_clusters": ("cluster_id", cluster),
                "crime_events": ("event_id", event)}
        before = {}
        for table, (key, value) in rows.items():
            row = conn.execute(as_json(table, key), (value,)).fetchone()[0]
            assert row and "geotag" not in row and "centroid" not in row
            before[table] = row
        conn.execute("UPDATE crime_events SET summary = 'seen at noon' WHERE event_id = %s", (event,))
        conn.execute("UPDATE raw_incident_reports SET text_description = 'bike and lock taken' WHERE report_id = %s",
                     (report,))
        conn.execute("UPDATE crime_clusters SET radius_m = 350 WHERE cluster_id = %s", (cluster,))
        after = {}
        for table, (key, value) in rows.items():
            after[table] = conn.execute(as_json(table, key), (value,)).fetchone()[0]
            old, new = conn.execute("SELECT old_data, new_data FROM audit_log WHERE table_name = %s "
                                    "AND operation = 'UPDATE' AND row_id = %s", (table, str(value))).fetchone()
            assert (old, new) == (before[table], after[table]), table
        spare = conn.execute("INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, time_start, "
                             "time_end) VALUES (7, 40.7, -74.0, 100, now() - interval '1 day', now()) "
                             "RETURNING cluster_id").fetchone()[0]
        renumbered = conn.execute("UPDATE crime_clusters SET cluster_id = gen_random_uuid() WHERE cluster_id = %s "
                                  "RETURNING cluster_id", (spare,)).fetchone()[0]
        sides = conn.execute("SELECT row_id, old_data IS NULL, new_data IS NULL FROM audit_log "
                             "WHERE table_name = 'crime_clusters' AND operation = 'UPDATE' AND row_id IN (%s, %s) "
                             "ORDER BY 2", (str(spare), str(renumbered))).fetchall()
        assert sides == [(str(spare), False, True), (str(renumbered), True, False)]  # a key changed: two sides
        conn.execute("DELETE FROM crime_events WHERE event_id = %s", (event,))
        old = conn.execute("SELECT old_data FROM audit_log WHERE table_name = 'crime_events' "
                           "AND operation = 'DELETE' AND row_id = %s", (str(event),)).fetchone()[0]
        assert old == after["crime_events"]
