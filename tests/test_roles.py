"""Least privilege on a real server: each kind of node, logged in as itself, can do exactly its calls.

The matrix runs every facade operation as a login of each group role (ingest, miner, validator, reader) and checks
it is allowed or refused as the grants and row-level security say; then what a node must never do (forge another
node's work, touch the audit trail, change the schema) is tried and refused.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from _async import run, with_facade
from _cli import cli_env, one_line_error
from _nodes import AT, allowed_statements, event, report
from psycopg import sql

from luminar_store.access import LuminarDB
from luminar_store.config import load_settings
from luminar_store.errors import ConfigError, PermissionDeniedError
from luminar_store.ops.roles import GROUP_ROLES

MINER, OTHER_MINER, VALIDATOR, OTHER_VALIDATOR = 11, 12, 21, 22


@pytest.fixture
def world(db_settings):
    """Seed data written by the owner: two reports (one pending, one claimed by the other miner), an event of each
    miner, and scores of both validators."""
    owner = LuminarDB(db_settings)

    async def seed():
        await owner.initialize()
        try:
            ids = [await owner.store_raw_report(report(n)) for n in (1, 2, 3)]
            await owner.claim_reports(OTHER_MINER, limit=1)
            mine = await owner.store_crime_event(event(title="mine", related_reports=[ids[0]]), miner_uid=MINER)
            theirs = await owner.store_crime_event(event(title="theirs"), miner_uid=OTHER_MINER)
            await owner.update_miner_performance(MINER, "hk-m", {"integrity": 0.5, "clustering": 0.5,
                                                                 "novelty": 0.5, "quality": 0.5})
            await owner.store_consensus_record(theirs, OTHER_VALIDATOR, {"final": 0.7}, 1)
            return {"reports": ids, "mine": mine, "theirs": theirs}
        finally:
            await owner.close()

    return run(seed())


def refused(settings, body) -> str:
    """``body`` run as the node must fail with ``PermissionDeniedError``, nothing written; returns its text."""
    with pytest.raises(PermissionDeniedError) as caught:
        with_facade(settings, body)
    return str(caught.value)


def test_a_miner_does_its_calls_and_nothing_more(node_login, world):
    miner = node_login("luminar_miner", "miner", MINER)

    async def work(db):
        claimed = await db.claim_reports(MINER, limit=5)
        assert [r.claimed_by for r in claimed] == [MINER, MINER]
        await db.mark_report_processed(claimed[0].report_id)
        stored = await db.store_crime_event(event(title="new"), miner_uid=MINER)
        assert await db.store_crime_events([event(title=f"bulk {n}") for n in range(3)], miner_uid=MINER) == 3
        located = await db.locate_event(world["mine"], 48.86, 2.36)
        assert located.latitude == 48.86
        assert (await db.get_event(stored)).miner_uid == MINER
        assert len(await db.get_recent_events(hours=24 * 365, limit=100)) >= 5
        assert (await db.get_miner_stats(MINER)).total_rounds == 1
        return True

    assert with_facade(miner, work)
    # Another miner's work cannot be forged or changed.
    assert "row-level security" in refused(miner, lambda db: db.store_crime_event(event(), miner_uid=OTHER_MINER))
    refused(miner, lambda db: db.store_crime_events([event(title="forged")], miner_uid=OTHER_MINER))
    refused(miner, lambda db: db.locate_event(world["theirs"], 1.0, 1.0))
    # Its own verdicts and scores are not a miner's to give.
    refused(miner, lambda db: db.store_crime_event(event(verification_status="verified"), miner_uid=MINER))
    refused(miner, lambda db: db.update_event_verification(world["mine"], VALIDATOR, "verified", 0.9))
    refused(miner, lambda db: db.update_miner_performance(MINER, "hk-m", {"integrity": 1.0, "clustering": 1.0,
                                                                          "novelty": 1.0, "quality": 1.0}))
    refused(miner, lambda db: db.store_consensus_record(world["mine"], VALIDATOR, {"final": 1.0}, 2))
    refused(miner, lambda db: db.store_raw_report(report(9)))


def test_a_validator_gives_its_own_verdicts_and_keeps_scores(node_login, world):
    validator = node_login("luminar_validator", "validator", VALIDATOR)

    async def work(db):
        verdict = await db.update_event_verification(world["mine"], VALIDATOR, "verified", 0.9)
        assert verdict.verification_status == "verified"
        record = await db.store_consensus_record(world["mine"], VALIDATOR, {"final": 0.9}, 1)
        assert record
        await db.update_miner_performance(MINER, "hk-m", {"integrity": 0.9, "clustering": 0.9, "novelty": 0.9,
                                                          "quality": 0.9}, round_number=2)
        assert (await db.get_miner_stats(MINER)).total_rounds == 2
        return True

    assert with_facade(validator, work)
    refused(validator, lambda db: db.store_consensus_record(world["mine"], OTHER_VALIDATOR, {"final": 0.1}, 3))
    refused(validator, lambda db: db.update_event_verification(world["mine"], OTHER_VALIDATOR, "rejected", 0.1))
    refused(validator, lambda db: db.store_crime_event(event(), miner_uid=MINER))
    refused(validator, lambda db: db.claim_reports(MINER, limit=1))


def test_an_app_files_reports_and_nothing_else(node_login, world):
    app = node_login("luminar_ingest")

    async def work(db):
        first = await db.store_raw_report(report(7))
        assert await db.store_raw_report(report(7)) == first
        assert await db.store_raw_reports([report(n) for n in (20, 21)]) == 2
        assert await db.store_raw_reports([report(n) for n in (22, 23)], skip_existing=False) == 2
        return True

    assert with_facade(app, work)
    refused(app, lambda db: db.store_crime_event(event(), miner_uid=MINER))
    refused(app, lambda db: db.get_recent_events(hours=24, limit=10))


def test_a_login_not_named_in_node_identities_writes_nothing(node_login, world):
    stranger = node_login("luminar_miner")
    refused(stranger, lambda db: db.store_crime_event(event(), miner_uid=MINER))
    refused(stranger, lambda db: db.claim_reports(MINER, limit=5))


TAMPERING = [
    "UPDATE audit_log SET actor = 'someone'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "INSERT INTO audit_log (table_name, operation, row_id) VALUES ('crime_events', 'DELETE', 'x')",
    "ALTER TABLE crime_events DISABLE TRIGGER crime_events_audit_insert",
    "DROP TABLE consensus_records",
    "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "DELETE FROM crime_events",
    "UPDATE node_identities SET uid = 12",
    "INSERT INTO node_identities (login, kind, uid) VALUES (session_user, 'miner', 99)",
    "SELECT luminar_add_miner_counts(ARRAY[11], ARRAY[100], ARRAY[100])",
    "SET ROLE luminar_analyst",
]


@pytest.mark.parametrize("group,kind,uid", [("luminar_miner", "miner", MINER),
                                            ("luminar_validator", "validator", VALIDATOR),
                                            ("luminar_ingest", None, None), ("luminar_reader", None, None)])
def test_no_node_can_rewrite_the_trail_change_the_schema_or_forge_scores(node_login, world, group, kind, uid):
    settings = node_login(group, kind, uid)
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        assert allowed_statements(conn, TAMPERING) == []


@pytest.mark.parametrize("group", ["luminar_miner", "luminar_ingest", "luminar_reader"])
def test_no_miner_app_or_reader_changes_a_miners_scores(node_login, world, group):
    settings = node_login(group, "miner" if group == "luminar_miner" else None, MINER)
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE miner_performance SET overall_score = 1")


def test_the_reader_sees_the_public_views_only(node_login, world):
    reader = node_login("luminar_reader")
    with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT * FROM active_miners").fetchall()
        for table in ("raw_incident_reports", "crime_events", "audit_log", "consensus_records"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))


def test_stale_claims_are_returned_by_the_owners_function(node_login, db_settings, world):
    miner = node_login("luminar_miner", "miner", MINER)
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        owner.execute("UPDATE raw_incident_reports SET claimed_at = %s WHERE status = 'processing'",
                      (AT - timedelta(days=2),))
    assert with_facade(miner, lambda db: db.release_stale_claims(60)) == 1


def test_the_audit_trail_names_the_login_not_the_owner(node_login, db_settings, world):
    miner = node_login("luminar_miner", "miner", MINER)
    with_facade(miner, lambda db: db.locate_event(world["mine"], 48.87, 2.37))
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as owner:
        actors = owner.execute("SELECT actor FROM audit_log WHERE row_id = %s AND operation = 'UPDATE'",
                               (str(world["mine"]),)).fetchall()
    assert actors == [(miner.user,)]


def test_the_down_section_removes_it_and_up_restores_it(db_settings):
    from luminar_store.migrator import DEFAULT_DIR, Migrator

    migrator = Migrator(db_settings.conninfo(), DEFAULT_DIR)
    target = "20261130020000"
    while (undone := migrator.rollback()).version != target:
        pass
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('node_identities')").fetchone()[0] is None
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'crime_events'").fetchone()[0] \
            is False
    migrator.migrate()
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('node_identities')").fetchone()[0] is not None
    assert undone.version == target and uuid


# -- the roles commands -------------------------------------------------------------------------------------------
@pytest.fixture
def admin_cli(cli_run, db_settings, pg_server):
    """``admin_cli(*args)``: ``luminar-db roles ...`` against the test database with the server's superuser as the
    administrator; the logins it names are dropped afterwards."""
    made: set[str] = set()
    env = cli_env(db_settings, LUMINAR_DB_ADMIN_URL=db_settings.conninfo())

    def invoke(*args: str, extra: dict | None = None):
        result = cli_run(["roles", *args], {**env, **(extra or {})})
        if args[:1] == ("add-node",) and result.exit_code == 0:
            made.add(args[1])
        return result

    yield invoke
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        for login in made:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def test_provisioning_is_idempotent_and_names_every_group(admin_cli):
    ran = admin_cli("provision")
    assert ran.exit_code == 0, ran.output
    assert "Every group role was already there." in ran.output  # the migration made them on this server
    assert all(name in ran.output for name in GROUP_ROLES)


def test_a_node_added_by_command_works_as_its_uid_and_revoking_it_ends_that(admin_cli, db_settings, world):
    login = f"miner_{uuid.uuid4().hex[:8]}"
    ran = admin_cli("add-node", login, "--kind", "miner", "--uid", "11", "--password-env", "NODE_PW",
                    extra={"NODE_PW": "s3cret-pw"})
    assert ran.exit_code == 0, ran.output
    assert "s3cret-pw" not in ran.output and f"login {login}: miner (luminar_miner) for uid 11" in ran.output
    node = replace(db_settings, user=login, password="s3cret-pw")
    stored = with_facade(node, lambda db: db.store_crime_event(event(title="by command"), miner_uid=MINER))
    assert stored
    taken = admin_cli("add-node", f"other_{uuid.uuid4().hex[:8]}", "--kind", "miner", "--uid", "11")
    assert taken.exit_code != 0 and f"miner uid 11 is login {login}'s" in one_line_error(taken)
    listed = admin_cli("list")
    assert login in listed.output and "uid 11" in listed.output
    revoked = admin_cli("revoke-node", login, "--yes")
    assert revoked.exit_code == 0, revoked.output
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (login,)).fetchone() == (False,)
        assert conn.execute("SELECT count(*) FROM node_identities WHERE login = %s", (login,)).fetchone() == (0,)


def test_a_miner_without_a_uid_and_a_reserved_name_are_refused(admin_cli):
    assert "needs --uid" in admin_cli("add-node", "miner_x", "--kind", "miner").output
    assert "reserved role name" in one_line_error(admin_cli("add-node", "luminar_miner", "--kind", "ingest"))


# -- the owner's settings -----------------------------------------------------------------------------------------
def test_local_is_split_and_a_login_chosen_by_hand_is_its_own_owner():
    local = load_settings("local", environ={})
    assert (local.user, local.owner) == ("luminar_dev", "luminar_owner")
    assert (local.as_owner().user, local.as_owner().password, local.as_owner().owner) == \
        ("luminar_owner", "dev_password", None)
    assert "dev_password" not in repr(local) and local.public_dict()["owner_password"] == "***"
    mine = load_settings("local", environ={"LUMINAR_DB_USER": "me", "LUMINAR_DB_PASSWORD": "pw"})
    assert mine.owner is None and mine.as_owner() is mine
    told = load_settings("testing", environ={"LUMINAR_DB_OWNER": "boss", "LUMINAR_DB_OWNER_PASSWORD": "b0ss"})
    assert (told.as_owner().user, told.as_owner().password) == ("boss", "b0ss")


def test_production_wants_the_owners_own_password():
    base = {"LUMINAR_DB_PASSWORD": "real-secret", "LUMINAR_DB_SSLMODE": "verify-full", "LUMINAR_DB_OWNER": "boss"}
    with pytest.raises(ConfigError, match="LUMINAR_DB_OWNER_PASSWORD"):
        load_settings("production", environ=base)
    assert load_settings("production", environ={**base, "LUMINAR_DB_OWNER_PASSWORD": "other"}).owner == "boss"


@pytest.mark.parametrize("group", sorted(GROUP_ROLES))
def test_every_relation_a_role_may_read_can_be_read_by_its_logins(node_login, world, group):
    """A grant that fails when used (a view whose function reads a table with the caller's rights) is a bug."""
    login = node_login(group, {"luminar_miner": "miner", "luminar_validator": "validator"}.get(group), None)
    with psycopg.connect(login.conninfo(), autocommit=True) as conn:
        readable = [name for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm') "
            "AND has_table_privilege(c.oid, 'SELECT') ORDER BY 1").fetchall()]
        assert readable, f"{group} may read nothing"
        for name in readable:
            conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(name))).fetchall()


def test_a_node_reaching_staging_as_a_superuser_or_the_owner_is_warned_once(db_settings, node_login, caplog):
    def staging(settings):
        return load_settings("staging", environ={
            "LUMINAR_STAGING_DB_HOST": settings.host, "LUMINAR_STAGING_DB_PORT": str(settings.port),
            "LUMINAR_STAGING_DB_NAME": settings.name, "LUMINAR_STAGING_DB_USER": settings.user,
            "LUMINAR_STAGING_DB_PASSWORD": settings.password, "LUMINAR_STAGING_DB_SSLMODE": "disable"})

    with caplog.at_level("WARNING", logger="luminar_store.database"):
        with_facade(staging(db_settings), lambda db: db.health_check())
        warned = [r.getMessage() for r in caplog.records if r.name == "luminar_store.database"]
        assert len(warned) == 1 and "a superuser" in warned[0] and "roles add-node" in warned[0]
        caplog.clear()
        with_facade(staging(node_login("luminar_miner", "miner", MINER)), lambda db: db.health_check())
        assert [r for r in caplog.records if r.name == "luminar_store.database"] == []
