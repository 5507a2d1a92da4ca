"""Migration 20261129220000: the network's column names for the performance, consensus, cluster and zone tables.

1. Upgrading an existing database keeps every row (counts and checksums under the old, then the new names), fills
   the new counters, and the down section restores the previous schema with the same rows.
2. The reference access layer's read queries on miner_performance / validator_performance run unchanged.
3. The counters follow the work: processed reports, verified events, the running total of round scores.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from _async import clock, run
from psycopg import errors as pg
from psycopg import sql

from luminar_store.access import LuminarDB
from luminar_store.errors import ValidationError
from luminar_store.migrator import DEFAULT_DIR, Migrator
from luminar_store.ops.synthetic import load_sample_data
from luminar_store.repositories.crime_events import CrimeEventRepository

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

VERSION = "20261129220000"

# Per table: its key, and its columns before the migration (the checksum reads them in this order).
OLD_COLUMNS = {
    "miner_performance": ("miner_uid", [
        "miner_id", "miner_uid", "hotkey", "integrity_score", "clustering_score", "novelty_score", "quality_score",
        "overall_score", "avg_overall_score", "total_rounds", "successful_rounds", "is_active", "registered_at",
        "last_active_at", "created_at", "updated_at"]),
    "validator_performance": ("validator_uid", [
        "validator_id", "validator_uid", "hotkey", "total_validations", "agreements", "consensus_accuracy",
        "avg_score_given", "stake", "is_active", "last_active_at", "created_at", "updated_at"]),
    "crime_events": ("event_id", [
        "event_id", "miner_uid", "event_type", "latitude", "longitude", "timestamp", "severity", "confidence_score",
        "verification_status", "verified_by", "verification_score", "metadata", "created_at", "updated_at"]),
    "consensus_records": ("record_id", [
        "record_id", "event_id", "validator_uid", "round_number", "scores", "final_score", "created_at"]),
    "crime_clusters": ("cluster_id", [
        "cluster_id", "miner_uid", "latitude", "longitude", "radius_m", "event_count", "time_start", "time_end",
        "metadata", "created_at", "updated_at"]),
    "risk_zones": ("zone_id", [
        "zone_id", "name", "boundary", "risk_level", "risk_score", "valid_from", "valid_until", "metadata",
        "created_at", "updated_at"]),
    "raw_incident_reports": ("report_id", [
        "report_id", "external_id", "status", "claimed_by", "created_at", "updated_at"]),
}
RENAMED = {
    "miner_performance": {"last_active_at": "last_activity"},
    "validator_performance": {"last_active_at": "last_activity", "stake": "stake_amount",
                              "total_validations": "validated_events"},
    "consensus_records": {"round_number": "consensus_round"},
}


def previous_version() -> str:
    """The last migration before this one, from the migration files."""
    return max(path.name.split("_", 1)[0] for path in DEFAULT_DIR.glob("*.sql") if path.name < VERSION)


def fingerprint(conn: psycopg.Connection, *, renamed: bool) -> dict[str, tuple[int, str]]:
    """Per table: its row count and the md5 of its rows (the old columns, under the names of the schema)."""
    out = {}
    for table, (key, columns) in OLD_COLUMNS.items():
        names = [RENAMED.get(table, {}).get(c, c) if renamed else c for c in columns]
        row_text = sql.SQL("concat_ws('|', {})").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names))
        query = sql.SQL("SELECT count(*), md5(string_agg({}, E'\\n' ORDER BY {})) FROM {}").format(
            row_text, sql.Identifier(key), sql.Identifier(table))
        out[table] = tuple(conn.execute(query).fetchone())
    return out


def fill_previous_schema(conn: psycopg.Connection) -> dict[str, uuid.UUID]:
    """Rows in every table concerned, with the column names of the previous version."""
    ids = {}
    reports = [("r1", "processed", 1), ("r2", "processed", 1), ("r3", "processing", 1), ("r4", "processed", 2),
               ("r5", "processed", None), ("r6", "pending", None)]
    for external_id, status, claimed_by in reports:
        ids[external_id] = conn.execute(
            "INSERT INTO raw_incident_reports (external_id, description, latitude, longitude, \"timestamp\", status,"
            " claimed_by) VALUES (%s, 'seen', 40.7, -74.0, now(), %s, %s) RETURNING report_id",
            [external_id, status, claimed_by]).fetchone()[0]
    events = [("e1", 1, "verified"), ("e2", 1, "verified"), ("e3", 1, "pending"), ("e4", 2, "verified"),
              ("e5", 2, "rejected"), ("e6", 3, "verified")]
    for name, miner_uid, status in events:
        ids[name] = conn.execute(
            "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity,"
            " confidence_score, verification_status, verified_by, verification_score)"
            " VALUES (%s, 'theft', 40.7, -74.0, now(), 3, 0.8, %s, %s, %s) RETURNING event_id",
            [miner_uid, status, None if status == "pending" else 9, None if status == "pending" else 0.7]
        ).fetchone()[0]
    conn.execute(
        "INSERT INTO miner_performance (miner_uid, hotkey, integrity_score, overall_score, avg_overall_score,"
        " total_rounds, successful_rounds, last_active_at, updated_at) VALUES"
        " (1, 'hk1', 0.9, 0.8, 0.75, 4, 3, now() - interval '1 hour', now() - interval '2 days'),"
        " (2, 'hk2', 0.5, 0.4, 0.5, 10, 5, NULL, now() - interval '3 days'),"
        " (4, 'hk4', 0, 0, 0, 0, 0, NULL, now() - interval '4 days')")
    conn.execute(
        "INSERT INTO validator_performance (validator_uid, hotkey, total_validations, agreements, consensus_accuracy,"
        " avg_score_given, stake, last_active_at) VALUES"
        " (9, 'vk9', 10, 8, 0.8, 0.7, 1500.5, now()), (10, 'vk10', 0, 0, 0, 0, 0, NULL)")
    for validator_uid, round_number, scores in [(9, 1, '{"integrity": 0.9, "clustering": 0.8, "novelty": 0.5}'),
                                                (10, 1, '{"integrity": "high", "quality": 1}'),
                                                (9, 2, '{"accuracy": 0.3}')]:
        conn.execute("INSERT INTO consensus_records (event_id, validator_uid, round_number, scores, final_score)"
                     " VALUES (%s, %s, %s, %s, 0.6)", [ids["e1"], validator_uid, round_number, scores])
    conn.execute("INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, event_count, time_start,"
                 " time_end) VALUES (1, 40.7, -74.0, 500, 2, now() - interval '1 day', now()),"
                 " (NULL, 10, 10, 50, 0, now(), now())")
    conn.execute("INSERT INTO risk_zones (name, boundary, risk_level, risk_score) VALUES"
                 " ('Docks', ST_MakeEnvelope(0, 0, 1, 1, 4326), 3, 0.6)")
    return ids


def test_the_upgrade_keeps_every_row_and_fills_the_counters(empty_db):
    migrator = Migrator(empty_db, DEFAULT_DIR)
    migrator.migrate(target=previous_version())
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        fill_previous_schema(conn)
        before = fingerprint(conn, renamed=False)
        assert before["miner_performance"][0] == 3 and before["consensus_records"][0] == 3

        migrator.migrate(target=VERSION)
        assert fingerprint(conn, renamed=True) == before
        miners = {r[0]: r[1:] for r in conn.execute(
            "SELECT miner_uid, processed_reports, verified_events, total_score, coldkey, stake_amount"
            "  FROM miner_performance")}
        assert miners[1][:2] == (2, 2) and miners[1][2] == pytest.approx(3.0)  # 0.75 * 4 rounds
        assert miners[2][:2] == (1, 1) and miners[2][2] == pytest.approx(5.0)
        assert miners[4] == (0, 0, 0.0, None, None)
        validators = conn.execute("SELECT validated_events, stake_amount, last_activity IS NOT NULL, coldkey"
                                  "  FROM validator_performance WHERE validator_uid = 9").fetchone()
        assert validators == (10, 1500.5, True, None)
        scores = conn.execute("SELECT consensus_round, integrity_score, clustering_score, novelty_score,"
                              "       quality_score FROM consensus_records ORDER BY validator_uid, consensus_round"
                              ).fetchall()
        assert scores == [(1, 0.9, 0.8, 0.5, None), (2, None, None, None, None), (1, None, None, None, 1.0)]
        view = conn.execute("SELECT * FROM active_miners WHERE miner_uid = 1").fetchone()
        names = [c.name for c in conn.execute("SELECT * FROM active_miners LIMIT 0").description]
        assert names[-6:] == ["registered_at", "last_activity", "total_score", "processed_reports",
                              "verified_events", "stake_amount"]
        assert dict(zip(names, view, strict=True))["success_rate"] == 75  # percent_of(successful, total) as before
        assert conn.execute("SELECT cluster_type, confidence_score, pattern_description FROM crime_clusters"
                            ).fetchall() == [(None, None, None)] * 2
        assert conn.execute("SELECT crime_density, recent_incidents, trend_direction FROM risk_zones"
                            ).fetchall() == [(None, 0, None)]
        # The renamed column's function body follows it; no function body or view names an old column.
        assert conn.execute("SELECT records FROM consensus_agreement('-infinity', 0.1)").fetchone() == (3,)
        old_names = r"\m(round_number|last_active_at|total_validations|stake)\M"
        assert conn.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
                            "   AND prosrc ~ %s", [old_names]).fetchall() == []
        assert conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'public' AND definition ~ %s",
                            [old_names]).fetchall() == []
        # Inserting pending events (the COPY bulk path) fires no counting trigger: its WHEN clause is false.
        insert_trigger = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger"
                                      " WHERE tgname = 'crime_events_count_verified_insert'").fetchone()[0]
        assert "AFTER INSERT" in insert_trigger and "WHEN" in insert_trigger and "'verified'" in insert_trigger

        migrator.rollback()
        assert fingerprint(conn, renamed=False) == before
        columns = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                              " WHERE table_name = 'miner_performance'")}
        assert "last_active_at" in columns and not {"last_activity", "total_score", "coldkey"} & columns
        assert conn.execute("SELECT records FROM consensus_agreement('-infinity', 0.1)").fetchone() == (3,)
        view = [c.name for c in conn.execute("SELECT * FROM active_miners LIMIT 0").description]
        assert view[-1] == "last_active_at"

        migrator.migrate(target=VERSION)
        assert fingerprint(conn, renamed=True) == before
        assert conn.execute("SELECT processed_reports, verified_events FROM miner_performance WHERE miner_uid = 1"
                            ).fetchone() == (2, 2)


# --- the reference access layer's read queries (database/access.py), copied literally; its asyncpg placeholder $1
# --- becomes psycopg's %s, nothing else changes.
REFERENCE_GET_MINER_STATS = """
                    SELECT miner_uid, hotkey, total_score, processed_reports,
                           verified_events, last_activity,
                           (verified_events::decimal / NULLIF(processed_reports, 0)) * 100 as success_rate
                    FROM miner_performance 
                    WHERE miner_uid = %s
                """  # noqa: W291 (the reference's trailing space, kept)
REFERENCE_ACTIVE_COUNTS = """
                    SELECT 
                        (SELECT COUNT(*) FROM miner_performance WHERE is_active = true) as active_miners,
                        (SELECT COUNT(*) FROM validator_performance WHERE is_active = true) as active_validators
                """  # noqa: W291


# A validator's verdict, written on the two columns no migration renames (the facade's update_event_verification
# fires the same trigger; its argument order is the reference's on main).
SET_VERDICT = "UPDATE crime_events SET verification_status = %s WHERE event_id = %s"


_EVENT_SEQ = itertools.count()


def crime_event(**over) -> dict:
    """A distinct event each call (its summary numbers it: equal events are one event, stored once)."""
    data = {"event_type": "burglary", "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW,
            "severity": 4, "confidence_score": 0.9, "summary": f"break-in {next(_EVENT_SEQ)}"}
    return data | over


def raw_report(n: int) -> dict:
    return {"report_id": f"names-perf-{n}", "text_description": "Someone broke into the shop",
            "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW - timedelta(minutes=5)}


SCORES = {"integrity": 1.0, "clustering": 0.5, "novelty": 0.75, "quality": 0.75}  # overall 0.75, exactly


def stored_event(settings, miner_uid: int) -> uuid.UUID:
    """A pending crime event of ``miner_uid``, stored through the facade (whatever the event columns are named)."""
    db = LuminarDB(settings)

    async def go():
        await db.initialize()
        try:
            return await db.store_crime_event(crime_event(), miner_uid=miner_uid)
        finally:
            await db.close()

    return run(go())


async def claim_and_process(db: LuminarDB, miner_uid: int, reports: list[int], processed: int) -> list:
    for n in reports:
        await db.store_raw_report(raw_report(n))
    claimed = await db.claim_reports(miner_uid, limit=len(reports))
    assert len(claimed) == len(reports)
    for report in claimed[:processed]:
        await db.mark_report_processed(report.report_id)
    return claimed


def test_the_reference_read_queries_run_unchanged(db_settings, conn):
    db = LuminarDB(db_settings)

    async def go():
        await db.initialize()
        try:
            await db.update_miner_performance(miner_uid=21, hotkey="hk21", scores=SCORES)
            await db.update_miner_performance(miner_uid=21, hotkey="hk21", scores=SCORES)
            await claim_and_process(db, 21, [1, 2, 3, 4], processed=4)
            events = [await db.store_crime_event(crime_event(), miner_uid=21) for _ in range(3)]
            for event_id in events:
                conn.execute(SET_VERDICT, ["verified", event_id])
            await db.update_miner_performance(miner_uid=22, hotkey="hk22", scores=SCORES)
        finally:
            await db.close()

    run(go())
    conn.execute("UPDATE miner_performance SET is_active = false WHERE miner_uid = 22")
    conn.execute("INSERT INTO validator_performance (validator_uid, hotkey, is_active) VALUES (9, 'vk9', true),"
                 " (10, 'vk10', false), (11, 'vk11', true)")

    cur = conn.execute(REFERENCE_GET_MINER_STATS, [21])
    assert [c.name for c in cur.description] == ["miner_uid", "hotkey", "total_score", "processed_reports",
                                                 "verified_events", "last_activity", "success_rate"]
    uid, hotkey, total_score, processed, verified, last_activity, success_rate = cur.fetchone()
    assert (uid, hotkey, processed, verified) == (21, "hk21", 4, 3)
    assert total_score == pytest.approx(1.5)  # two rounds of 0.75
    assert last_activity is not None
    assert success_rate == Decimal(3) / Decimal(4) * 100  # verified_events / processed_reports * 100
    assert conn.execute(REFERENCE_GET_MINER_STATS, [22]).fetchone()[6] is None  # nothing processed: NULLIF
    assert conn.execute(REFERENCE_GET_MINER_STATS, [999]).fetchone() is None
    assert conn.execute(REFERENCE_ACTIVE_COUNTS).fetchone() == (1, 2)


def test_the_counters_follow_claims_verifications_and_rounds(db_settings, conn):
    db = LuminarDB(db_settings)

    def counters(uid: int) -> tuple:
        return conn.execute("SELECT processed_reports, verified_events FROM miner_performance WHERE miner_uid = %s",
                            [uid]).fetchone()

    async def go():
        await db.initialize()
        try:
            first = await db.update_miner_performance(miner_uid=5, hotkey="hk5", scores=SCORES)
            assert (first.total_score, first.processed_reports, first.verified_events) == (0.75, 0, 0)

            # Claims: only reports brought to 'processed' under the claim count; a processed one sent back drops out.
            claimed = await claim_and_process(db, 5, [10, 11, 12], processed=2)
            assert counters(5) == (2, 0)
            await db.mark_report_failed(claimed[0].report_id, "media unreadable", retry=True)
            assert counters(5) == (1, 0)
            await db.mark_report_failed(claimed[2].report_id, "gave up")  # never processed: no change
            assert counters(5) == (1, 0)

            # Events: pending inserts change nothing; verifying, unverifying and deleting move the count.
            one = await db.store_crime_event(crime_event(), miner_uid=5)
            two = await db.store_crime_event(crime_event(), miner_uid=5)
            assert counters(5) == (1, 0)
            conn.execute(SET_VERDICT, ["verified", one])
            conn.execute(SET_VERDICT, ["verified", two])
            assert counters(5) == (1, 2)
            conn.execute(SET_VERDICT, ["disputed", two])
            assert counters(5) == (1, 1)
            conn.execute(SET_VERDICT, ["verified", one])  # still verified
            assert counters(5) == (1, 1)
            conn.execute("DELETE FROM crime_events WHERE event_id = %s", [one])
            assert counters(5) == (1, 0)
            conn.execute(SET_VERDICT, ["verified", two])
            stats = await db.get_miner_stats(5)
            assert (stats.processed_reports, stats.verified_events, stats.events_verified) == (1, 1, 1)

            # total_score sums the rounds' overall scores.
            low = {"integrity": 0.2, "clustering": 0.2, "novelty": 0.2, "quality": 0.2}
            second = await db.update_miner_performance(miner_uid=5, hotkey="hk5", scores=low)
            assert second.total_score == pytest.approx(0.95) and second.total_rounds == 2
            assert (second.processed_reports, second.verified_events) == (1, 1)

            # A re-registered uid restarts: this round's score, the uid's current counts, no coldkey or stake.
            conn.execute("UPDATE miner_performance SET coldkey = 'ck5', stake_amount = 12.5 WHERE miner_uid = 5")
            fresh = await db.update_miner_performance(miner_uid=5, hotkey="new-hk5", scores=low)
            assert fresh.reregistered and fresh.total_score == pytest.approx(0.2) and fresh.total_rounds == 1
            assert (fresh.processed_reports, fresh.verified_events) == (1, 1)
            assert (fresh.coldkey, fresh.stake_amount) == (None, None)

            # A uid's first round starts from the work already stored under it.
            early = await db.store_crime_event(crime_event(), miner_uid=6)
            conn.execute(SET_VERDICT, ["verified", early])
            await claim_and_process(db, 6, [20, 21], processed=1)
            new = await db.update_miner_performance(miner_uid=6, hotkey="hk6", scores=SCORES)
            assert new.created and (new.processed_reports, new.verified_events) == (1, 1)
        finally:
            await db.close()

    run(go())


def test_bulk_stores_count_verified_events_once_a_batch(db_settings, conn):
    db = LuminarDB(db_settings)

    def verified(uid: int) -> int:
        return conn.execute("SELECT verified_events FROM miner_performance WHERE miner_uid = %s", [uid]).fetchone()[0]

    async def go():
        await db.initialize()
        try:
            await db.update_miner_performance(miner_uid=8, hotkey="hk8", scores=SCORES)
            batch = [crime_event(verification_status="verified" if i % 3 == 0 else "pending") for i in range(30)]
            assert await db.store_crime_events(batch, miner_uid=8) == 30
            assert verified(8) == 10
            # in a caller's transaction, the per-row trigger counts again once the bulk store is done
            async with db.database.transaction() as tx:
                events = CrimeEventRepository(tx)
                await events.store_many([crime_event(verification_status="verified") for _ in range(2)], miner_uid=8)
                await events.store(crime_event(verification_status="verified"), miner_uid=8)
            assert verified(8) == 13
            # a refused batch changes nothing
            with pytest.raises(ValidationError):
                await db.store_crime_events([crime_event(verification_status="verified"), {"severity": 9}],
                                            miner_uid=8)
            assert verified(8) == 13
        finally:
            await db.close()

    run(go())
    assert verified(8) == conn.execute(
        "SELECT count(*) FROM crime_events WHERE miner_uid = 8 AND verification_status = 'verified'").fetchone()[0]


def test_active_miners_and_records_expose_the_new_columns(db_settings):
    from luminar_store.database import Database
    from luminar_store.repositories.clusters import ClusterRepository
    from luminar_store.repositories.consensus import ConsensusRepository
    from luminar_store.repositories.miners import MinerRepository
    from luminar_store.repositories.risk_zones import RiskZoneRepository
    from luminar_store.repositories.validators import ValidatorRepository

    event_id = stored_event(db_settings, 3)

    async def go():
        async with Database(db_settings) as database:
            async with database.connection() as conn:
                miners = MinerRepository(conn)
                await miners.record_round(3, "hk3", SCORES)
                (row,) = await miners.active()
                assert (row.miner_uid, row.total_score, row.processed_reports, row.verified_events,
                        row.stake_amount) == (3, 0.75, 0, 0, None)
                assert row.last_activity is not None

                validator = await ValidatorRepository(conn).record_validation(9, "vk9", agreed=True,
                                                                             score_given=0.8, stake=2.5)
                assert (validator.validated_events, validator.stake_amount, validator.coldkey) == (1, 2.5, None)
                assert validator.last_activity is not None

                consensus = ConsensusRepository(conn)
                await consensus.store(event_id, 9, {"integrity": 0.5, "quality": 1, "other": 0.25}, 4)
                (record,) = await consensus.for_event(event_id)
                assert record.consensus_round == 4
                assert (record.integrity_score, record.clustering_score, record.novelty_score,
                        record.quality_score) == (0.5, None, None, 1.0)
                assert (await consensus.for_validator(9))[0].consensus_round == 4

                cluster = await ClusterRepository(conn).store({"centre": {"lat": 1, "lng": 1}, "radius_m": 100,
                                                               "time_start": NOW, "time_end": NOW})
                assert (cluster.cluster_type, cluster.confidence_score, cluster.pattern_description) == (None,) * 3
                zone = await RiskZoneRepository(conn).store({"name": "z", "risk_level": 2, "risk_score": 0.5,
                                                             "boundary": [{"lat": 0, "lng": 0}, {"lat": 0, "lng": 1},
                                                                          {"lat": 1, "lng": 1}]})
                assert (zone.crime_density, zone.recent_incidents, zone.trend_direction) == (None, 0, None)

    run(go())


@pytest.mark.parametrize(("table", "assignment", "constraint"), [
    ("miner_performance", "coldkey = ''", "miner_coldkey_length"),
    ("miner_performance", "stake_amount = -1", "miner_stake_amount_nonnegative"),
    ("miner_performance", "total_score = -1", "miner_total_score_nonnegative"),
    ("validator_performance", "coldkey = repeat('c', 129)", "validator_coldkey_length"),
    ("validator_performance", "stake_amount = -1", "validator_stake_nonnegative"),
    ("crime_clusters", "cluster_type = 'spatial'", "clusters_cluster_type_known"),
    ("crime_clusters", "confidence_score = 1.5", "clusters_confidence_range"),
    ("crime_clusters", "pattern_description = ''", "clusters_pattern_description_length"),
    ("risk_zones", "crime_density = -0.1", "risk_zones_crime_density_nonnegative"),
    ("risk_zones", "recent_incidents = -1", "risk_zones_recent_incidents_nonnegative"),
    ("risk_zones", "trend_direction = 'up'", "risk_zones_trend_direction_known"),
])
def test_the_new_columns_refuse_what_the_network_does_not_mean(conn, table, assignment, constraint):
    conn.execute("INSERT INTO miner_performance (miner_uid, hotkey) VALUES (1, 'hk')")
    conn.execute("INSERT INTO validator_performance (validator_uid, hotkey) VALUES (1, 'hk')")
    conn.execute("INSERT INTO crime_clusters (latitude, longitude, radius_m, time_start, time_end)"
                 " VALUES (1, 1, 100, now(), now())")
    conn.execute("INSERT INTO risk_zones (name, boundary, risk_level, risk_score)"
                 " VALUES ('z', ST_MakeEnvelope(0, 0, 1, 1, 4326), 2, 0.3)")
    with pytest.raises(pg.CheckViolation) as info:
        conn.execute(sql.SQL("UPDATE {} SET " + assignment).format(sql.Identifier(table)))
    assert info.value.diag.constraint_name == constraint


def test_consensus_scores_that_are_no_double_give_null(db_settings, conn):
    event_id = stored_event(db_settings, 1)
    conn.execute("INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores, final_score)"
                 " VALUES (%s, 1, 1, '{\"integrity\": 1e400, \"clustering\": 1e-400, \"novelty\": [0.5],"
                 " \"quality\": 0}', 0.5)", [event_id])
    assert conn.execute("SELECT integrity_score, clustering_score, novelty_score, quality_score"
                        "  FROM consensus_records").fetchone() == (None, None, None, 0.0)


def test_a_synthetic_load_keeps_the_counters_true(conn):
    load_sample_data(conn, reports=4000, seed=21, workers=2, batch_size=1000)
    wrong = conn.execute("""
        SELECT m.miner_uid, m.processed_reports, m.verified_events,
               (SELECT count(*) FROM raw_incident_reports r WHERE r.claimed_by = m.miner_uid
                                                               AND r.status = 'processed'),
               (SELECT count(*) FROM crime_events e WHERE e.miner_uid = m.miner_uid
                                                       AND e.verification_status = 'verified')
          FROM miner_performance m""").fetchall()
    assert sum(row[1] for row in wrong) > 0 and sum(row[2] for row in wrong) > 0
    assert [row for row in wrong if row[1:3] != row[3:5]] == []
    totals = conn.execute("SELECT count(*) FILTER (WHERE abs(total_score - avg_overall_score * total_rounds) > 1e-6)"
                          "  FROM miner_performance").fetchone()[0]
    assert totals == 0
