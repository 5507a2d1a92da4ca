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
