"""The audit trail of every change, written as the nodes work, and kept append-only.

Nodes log in as themselves (``node_login``) and work through the facade; each of their writes must leave audit rows
naming the login, its node uid, the client address and the application. A bulk store is audited per statement (its
keys in one row), not per row. No node role can touch ``audit_log``; the owner's plain changes are refused too,
and only ``luminar_age_out_audit`` (retention's ``clean``) removes old entries.
"""

from __future__ import annotations

import ipaddress
import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from _async import run_with_conn, with_facade
from _cli import cli_env
from _nodes import allowed_statements, event, report

from luminar_store.migrator import Migrator
from luminar_store.models import AuditEntry
from luminar_store.ops import retention
from luminar_store.ops.roles import GROUP_ROLES
from luminar_store.repositories.audit import AuditRepository

MINER, VALIDATOR = 11, 21
AUDITED = ("raw_incident_reports", "crime_events", "consensus_records", "miner_performance",
           "validator_performance", "crime_clusters", "risk_zones", "node_identities")
NODE_GROUPS = tuple(GROUP_ROLES)
SCORES = {"integrity": 0.9, "clustering": 0.9, "novelty": 0.9, "quality": 0.9}
WHO = "actor, node_uids, client_addr, application_name, transaction_id"


def owner_rows(db_settings, query: str, params=None) -> list[tuple]:
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        return owner.execute(query, params).fetchall()


def assert_names(row: tuple, login: str, uid: int | None) -> None:
    """``row`` is (actor, node_uids, client_addr, application_name, transaction_id) of a node's audit entry."""
    actor, uids, addr, application, xid = row
    assert actor == login
    assert uids == ([uid] if uid is not None else None)
    assert addr is not None and ipaddress.ip_address(addr).is_loopback  # the tests' server listens on loopback
    assert application == "luminar_store"
    assert xid is not None and xid > 0


@pytest.fixture
def nodes(node_login):
    return {"app": node_login("luminar_ingest", "ingest", 1), "miner": node_login("luminar_miner", "miner", MINER),
            "validator": node_login("luminar_validator", "validator", VALIDATOR)}


def test_every_write_of_a_node_is_audited_with_who_did_it(nodes, db_settings):
    app, miner, validator = nodes["app"], nodes["miner"], nodes["validator"]
    report_id = with_facade(app, lambda db: db.store_raw_report(report(1)))
    event_id = with_facade(miner, lambda db: db.store_crime_event(event(related_reports=[report_id]), miner_uid=MINER))

    async def judge(db):
        await db.update_event_verification(event_id, VALIDATOR, "verified", 0.9)
        record = await db.store_consensus_record(event_id, VALIDATOR, {"final": 0.9}, 1)
        await db.update_miner_performance(MINER, "hk-m", SCORES)  # a new miner row: INSERT
        await db.update_miner_performance(MINER, "hk-m", SCORES, round_number=2)  # its update: UPDATE
        return record

    record = with_facade(validator, judge)

    def entries(table: str, operation: str) -> list[tuple]:
        return owner_rows(db_settings, f"SELECT row_id, row_count, row_ids, old_data, new_data, {WHO} "  # noqa: S608
                          "FROM audit_log WHERE table_name = %s AND operation = %s ORDER BY occurred_at, audit_id",
                          (table, operation))

    [filed] = entries("raw_incident_reports", "INSERT")
    assert filed[:5] == (str(report_id), 1, [str(report_id)], None, None)  # an insert is named by key, not copied
    assert_names(filed[5:], app.user, 1)

    [stored] = entries("crime_events", "INSERT")
    assert stored[:3] == (str(event_id), 1, [str(event_id)])
    assert_names(stored[5:], miner.user, MINER)

    [verdict] = entries("crime_events", "UPDATE")
    assert verdict[0] == str(event_id) and verdict[1] is None
    assert (verdict[3]["verification_status"], verdict[4]["verification_status"]) == ("pending", "verified")
    assert verdict[4]["validator_uid"] == VALIDATOR and "geotag" not in verdict[4]
    assert_names(verdict[5:], validator.user, VALIDATOR)

    [consensus] = entries("consensus_records", "INSERT")
    assert consensus[0] == str(record)
    assert_names(consensus[5:], validator.user, VALIDATOR)

    [scored] = entries("miner_performance", "INSERT")
    assert scored[0] == str(MINER)
    assert_names(scored[5:], validator.user, VALIDATOR)
    updates = entries("miner_performance", "UPDATE")
    assert updates and all(u[0] == str(MINER) for u in updates)
    assert updates[-1][3]["total_rounds"] == 1 and updates[-1][4]["total_rounds"] == 2
    for update in updates:
        assert_names(update[5:], validator.user, VALIDATOR)

    # The settlement of a report by a miner is an update of the report, audited with its old and new status.
    with_facade(miner, lambda db: db.claim_reports(MINER, limit=1))
    [claim] = entries("raw_incident_reports", "UPDATE")
    assert (claim[3]["status"], claim[4]["status"], claim[4]["claimed_by"]) == ("pending", "processing", MINER)
    assert_names(claim[5:], miner.user, MINER)


@pytest.mark.parametrize("count", [1, 3, 40])
def test_a_bulk_store_is_audited_once_a_statement_with_its_keys(nodes, db_settings, count):
    miner = nodes["miner"]
    stored = with_facade(miner, lambda db: db.store_crime_events([event(title=f"bulk {n}") for n in range(count)],
                                                             miner_uid=MINER))
    assert stored == count
    rows = owner_rows(db_settings, f"SELECT row_id, row_count, row_ids, new_data, {WHO} FROM audit_log "  # noqa: S608
                      "WHERE table_name = 'crime_events'")
    assert len(rows) == 1  # one statement, one entry: not one a row
    row_id, row_count, row_ids, new_data, *who = rows[0]
    ids = [str(i) for (i,) in owner_rows(db_settings, "SELECT event_id FROM crime_events")]
    assert row_count == count and sorted(row_ids) == sorted(ids) and new_data is None
    assert row_id == (ids[0] if count == 1 else None)
    assert_names(tuple(who), miner.user, MINER)
    # A retried batch stores nothing and audits nothing.
    assert with_facade(miner, lambda db: db.store_crime_events([event(title=f"bulk {n}") for n in range(count)],
                                                           miner_uid=MINER)) == 0
    assert owner_rows(db_settings, "SELECT count(*) FROM audit_log WHERE table_name = 'crime_events'") == [(1,)]


def test_the_repository_reads_who_and_finds_a_row_inserted_in_bulk(nodes, db_settings):
    miner = nodes["miner"]
    with_facade(miner, lambda db: db.store_crime_events([event(title=f"bulk {n}") for n in range(5)], miner_uid=MINER))
    [(event_id,)] = owner_rows(db_settings, "SELECT event_id FROM crime_events WHERE title = 'bulk 3'")

    async def read(conn):
        audit = AuditRepository(conn)
        return await audit.recent(table_name="crime_events"), await audit.for_row("crime_events", event_id)

    [latest], [history] = run_with_conn(db_settings.conninfo(), read)
    assert latest == history and isinstance(latest, AuditEntry)
    assert (latest.operation, latest.row_id, latest.row_count, latest.actor) == ("INSERT", None, 5, miner.user)
    assert str(event_id) in latest.row_ids and latest.node_uids == [MINER]
    assert latest.client_addr.is_loopback and latest.application_name == "luminar_store"
    assert latest.transaction_id > 0 and latest["row_count"] == 5


def test_every_core_table_has_its_three_statement_triggers_with_transition_tables(db_settings):
    rows = owner_rows(db_settings, """
        SELECT c.relname, t.tgname, t.tgoldtable, t.tgnewtable, p.prosecdef, p.proconfig
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE t.tgname LIKE '%\\_audit\\_%' AND NOT t.tgisinternal""")
    found = {(table, name): (old, new, definer, config) for table, name, old, new, definer, config in rows}
    for table in AUDITED:
        assert found[(table, f"{table}_audit_insert")][:2] == (None, "new_rows")
        assert found[(table, f"{table}_audit_update")][:2] == ("old_rows", "new_rows")
        assert found[(table, f"{table}_audit_delete")][:2] == ("old_rows", None)
    assert all(definer and config == ["search_path=pg_catalog, public"] for _, _, definer, config in found.values())
    # No row-level audit trigger is left, and no function writing the trail is PUBLIC's to run.
    assert owner_rows(db_settings, """
        SELECT t.tgname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE p.proname LIKE 'luminar\\_audit%' AND (t.tgtype & 1) = 1""") == []
    assert owner_rows(db_settings, """
        SELECT proname FROM pg_proc
         WHERE (proname LIKE 'luminar\\_audit%' OR proname IN ('luminar_age_out_audit', 'luminar_session_uids'))
           AND has_function_privilege('public', oid, 'EXECUTE')""") == []


def test_a_reregistration_is_still_kept_as_such(nodes, db_settings):
    async def work(db):
        await db.update_miner_performance(MINER, "first", SCORES)
        await db.update_miner_performance(MINER, "second", SCORES)

    with_facade(nodes["validator"], work)
    rows = owner_rows(db_settings, "SELECT operation, old_data->>'hotkey', new_data->>'hotkey', actor FROM audit_log "
                      "WHERE table_name = 'miner_performance' AND row_id = %s ORDER BY occurred_at, audit_id",
                      (str(MINER),))
    assert [r[:3] for r in rows] == [("INSERT", None, None), ("REREGISTER", "first", "second")]
    assert {r[3] for r in rows} == {nodes["validator"].user}


def test_node_identities_changes_are_audited(db_settings, node_login):
    login = node_login("luminar_miner", "miner", 31)
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        owner.execute("UPDATE node_identities SET uid = 32 WHERE login = %s", (login.user,))
        owner.execute("DELETE FROM node_identities WHERE login = %s", (login.user,))
    rows = owner_rows(db_settings, "SELECT operation, row_id, old_data->>'uid', new_data->>'uid' FROM audit_log "
                      "WHERE table_name = 'node_identities' ORDER BY occurred_at, audit_id")
    assert rows == [("INSERT", login.user, None, None), ("UPDATE", login.user, "31", "32"),
                    ("DELETE", login.user, "32", None)]


# -- append-only ----------------------------------------------------------------------------------------------------
TAMPERING = [
    "UPDATE audit_log SET actor = 'someone'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "INSERT INTO audit_log (table_name, operation, row_id) VALUES ('crime_events', 'DELETE', 'x')",
    "SELECT luminar_age_out_audit(now() + interval '1 day', 1000)",
    "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
    "ALTER TABLE crime_events DISABLE TRIGGER crime_events_audit_insert",
    "DROP TRIGGER audit_log_append_only ON audit_log",
]


@pytest.mark.parametrize("group", NODE_GROUPS)
def test_no_node_role_can_change_the_trail(node_login, nodes, db_settings, group):
    with_facade(nodes["app"], lambda db: db.store_raw_report(report(5)))
    before = owner_rows(db_settings, "SELECT * FROM audit_log ORDER BY audit_id")
    settings = node_login(group)
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        # A node cannot pass for the maintenance function by setting its mark either.
        conn.execute("SELECT set_config('luminar.audit_age_out', txid_current()::text, false)")
        assert allowed_statements(conn, TAMPERING) == []
    assert owner_rows(db_settings, "SELECT * FROM audit_log ORDER BY audit_id") == before


def test_even_the_owner_cannot_rewrite_the_trail_but_ages_it_out_through_the_function(nodes, db_settings):
    with_facade(nodes["app"], lambda db: db.store_raw_reports([report(n) for n in range(10, 13)]))
    with_facade(nodes["app"], lambda db: db.store_raw_report(report(14)))
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        count = owner.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        assert count >= 2
        for statement in ("UPDATE audit_log SET actor = 'someone'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                owner.execute(statement)
            assert "append-only" in str(refused.value)
        with owner.transaction():  # a mark that is not the function's own is no way in
            owner.execute("SET LOCAL luminar.audit_age_out = 'on'")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                owner.execute("DELETE FROM audit_log")
        assert owner.execute("SELECT count(*) FROM audit_log").fetchone()[0] == count
        # Nothing is older than a cut-off in the past; everything is older than one in the future, a batch at a time.
        assert owner.execute("SELECT luminar_age_out_audit(now() - interval '1 day', 100)").fetchone() == (0,)
        with owner.transaction():
            assert owner.execute("SELECT luminar_age_out_audit(now() + interval '1 day', 1)").fetchone() == (1,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege), owner.transaction():
                owner.execute("DELETE FROM audit_log")  # the mark ends with the function
        assert owner.execute("SELECT luminar_age_out_audit(now() + interval '1 day', 100)").fetchone() == (count - 1,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            owner.execute("SELECT luminar_age_out_audit(now(), 0)")


# -- retention ------------------------------------------------------------------------------------------------------
def test_retention_ages_audit_rows_out_and_audits_its_own_deletes_by_key_only(nodes, db_settings):
    now = datetime.now(UTC)
    old_event = with_facade(nodes["miner"], lambda db: db.store_crime_event(
        event(title="old", timestamp=now - timedelta(days=400)), miner_uid=MINER))
    with_facade(nodes["validator"], lambda db: db.update_event_verification(old_event, VALIDATOR, "verified", 0.9))
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        # An entry written 400 days ago (the owner may append; only the maintenance path removes).
        owner.execute("INSERT INTO audit_log (table_name, operation, row_id, occurred_at) "
                      "VALUES ('crime_events', 'UPDATE', 'ancient', %s)", (now - timedelta(days=400),))
        plan = retention.count_old_rows(owner, days=365)
        assert plan["audit_log"] == 1 and plan["crime_events"] == 1
        deleted = retention.delete_old_rows(owner, days=365, batch_size=1)
        assert deleted["audit_log"] == 1 and deleted["crime_events"] == 1
        assert owner.execute("SELECT count(*) FROM audit_log WHERE row_id = 'ancient'").fetchone() == (0,)
        # The delete is audited by key, without a copy of the event retention removed.
        gone = owner.execute("SELECT row_id, row_count, row_ids, old_data FROM audit_log "
                             "WHERE table_name = 'crime_events' AND operation = 'DELETE'").fetchall()
        assert gone == [(str(old_event), 1, [str(old_event)], None)]
        # The recent entries (the store, the verdict) stay until they age out.
        assert owner.execute("SELECT count(*) FROM audit_log WHERE row_id = %s AND operation IN ('INSERT', 'UPDATE')",
                             (str(old_event),)).fetchone() == (2,)


def test_clean_says_what_it_cannot_reach(cli_run, db_settings, tmp_path):
    backups = tmp_path / "backups"  # cli_run works in tmp_path: backups/ is the default directory there
    backups.mkdir()
    for name, age in (("luminar_local_old.dump", 40), ("luminar_local_new.dump", 1)):
        path = backups / name
        path.write_bytes(b"")
        stamp = (datetime.now(UTC) - timedelta(days=age)).timestamp()
        os.utime(path, (stamp, stamp))
    result = cli_run(["clean", "--days", "10", "--yes"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    assert "Not reached by clean:" in result.output
    assert "backups/ holds 2 file(s), 1 older than the cut-off" in result.output
    assert "local copies and replicas" in result.output and "luminar-db clean" in result.output


def test_the_migration_rolls_back_and_applies_again(db_settings):
    migrator = Migrator(db_settings.conninfo())
    rolled = []
    while not rolled or rolled[-1] != "20261130021000":
        rolled.append(migrator.rollback().version)
        assert len(rolled) < 40, rolled
    triggers = owner_rows(db_settings, "SELECT tgname FROM pg_trigger "
                          "WHERE tgname LIKE '%audit%' OR tgname LIKE '%reregistered' ORDER BY 1")
    assert [t for (t,) in triggers] == ["crime_events_audit", "miner_performance_audit",
                                        "miner_performance_reregistered", "risk_zones_audit",
                                        "validator_performance_audit", "validator_performance_reregistered"]
    assert owner_rows(db_settings, "SELECT count(*) FROM information_schema.columns "
                      "WHERE table_name = 'audit_log' AND column_name = 'node_uids'") == [(0,)]
    migrator.migrate()
    assert len(owner_rows(db_settings, "SELECT 1 FROM pg_trigger WHERE tgname LIKE '%\\_audit\\_%'")) == 24
