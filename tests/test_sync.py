"""``sync``: central -> local copies between two databases of the session's server (each a fresh copy of the
migrated template), central read by a login of the luminar_sync group, the copy written as its owner.

Arrival is asserted by polling (``eventually``: sync, then compare, until a generous deadline), never by timing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from _async import eventually, run
from _cli import cli_env, one_line_error
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.errors import ConfigError, ConflictError, OperationError
from luminar_store.ops import sync as sync_ops
from luminar_store.ops.synthetic import load_sample_data
from luminar_store.syncing import SyncManager


@pytest.fixture
def central(pg_server) -> Iterator[Settings]:
    """A second fresh copy of the migrated template: the central database (as the server's superuser)."""
    name = f"c_{uuid.uuid4().hex[:12]}"
    with pg_server.janitor(name, template=pg_server.template):
        yield pg_server.settings(name)


@pytest.fixture
def reader(pg_server, central: Settings) -> Iterator[Settings]:
    """Central as a read-only login, a member of luminar_sync (as central's operators give the copies)."""
    login, password = f"sync_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE luminar_sync").format(
            sql.Identifier(login), sql.Literal(password)))
    yield replace(central, user=login, password=password)
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def source_url(s: Settings) -> str:
    return f"postgresql://{s.user}:{s.password}@{s.host}:{s.port}/{s.name}?sslmode=disable"


def execute(settings: Settings, query: str, params: object = None) -> list[tuple]:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def checksums(settings: Settings) -> dict[str, tuple[int, str]]:
    """Per copied table: row count and an md5 of every copied column of every row, in key order."""
    out = {}
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        for spec in sync_ops._SPECS:
            cols = [r[0] for r in conn.execute(sync_ops.COLUMNS, {"table": spec.name})]
            out[spec.name] = conn.execute(sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(r::text, '|' ORDER BY r.{k}), '')) "
                "FROM (SELECT {cols} FROM {t}) AS r").format(
                k=sql.Identifier(spec.key), cols=sql.SQL(", ").join(map(sql.Identifier, cols)),
                t=sql.Identifier(spec.name))).fetchone()
    return out


def load(settings: Settings, reports: int, seed: int = 5) -> None:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        load_sample_data(conn, reports=reports, days=2, seed=seed)


def arrives(check, sync_once, timeout: float = 30.0) -> None:
    """Sync and check until ``check()`` holds (or fail after ``timeout`` seconds): arrival by polling."""
    def synced_and_checked() -> bool:
        sync_once()
        return bool(check())

    synced_and_checked.__name__ = getattr(check, "__name__", "arrival")
    run(eventually(synced_and_checked, timeout=timeout, every=0.2))


def add_report(settings: Settings, *, age: timedelta = timedelta(0)) -> str:
    when = datetime.now(UTC) - age
    return str(execute(settings, """
        INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "timestamp",
                                          created_at, updated_at)
        VALUES (%s, 'a report', 40.7, -74.0, %s, %s, %s) RETURNING report_id""",
        (f"ext-{uuid.uuid4().hex}", when, when, when))[0][0])


# -- insert, update, delete; twice changes nothing -----------------------------------------------------------------
def test_an_insert_an_update_and_a_delete_on_central_appear_locally_and_a_second_run_changes_nothing(
        cli_run, central, reader, db_settings):
    load(central, 300)  # over the last two days
    env = cli_env(db_settings, LUMINAR_SYNC_SOURCE_URL=source_url(reader))
    first = cli_run(["sync", "--hours=24", "--source-env", "testing", "--batch-size", "100"], env)
    assert first.exit_code == 0, first.output
    assert f"Sync from postgresql://{reader.user}:***@" in first.output and reader.password not in first.output
    assert "rows/s" in first.output
    floor = datetime.now(UTC) - timedelta(hours=24)  # the command's window began earlier: this part is in it
    for spec in sync_ops._SPECS:
        query = sql.SQL("SELECT {k} FROM {t} WHERE {c} >= %s").format(
            k=sql.Identifier(spec.key), t=sql.Identifier(spec.name), c=sql.Identifier(spec.changed))
        wanted = {r[0] for r in execute(central, query.as_string(), (floor,))}
        copied = {r[0] for r in execute(db_settings, sql.SQL("SELECT {k} FROM {t}").format(
            k=sql.Identifier(spec.key), t=sql.Identifier(spec.name)).as_string())}
        assert wanted <= copied, spec.name
    assert 0 < checksums(db_settings)["raw_incident_reports"][0] < 300  # the day before stayed on central
    sync_ops.sync(reader, db_settings, full=True)
    assert checksums(db_settings) == checksums(central)

    # An insert, an update and a delete on central.
    new_report = add_report(central)
    event, miner = execute(central, "SELECT event_id, miner_uid FROM crime_events ORDER BY event_id LIMIT 1")[0]
    execute(central, "UPDATE crime_events SET title = 'changed on central' WHERE event_id = %s", (event,))
    gone = execute(central, "SELECT record_id FROM consensus_records ORDER BY record_id LIMIT 1")[0][0]
    execute(central, "DELETE FROM consensus_records WHERE record_id = %s", (gone,))
    execute(central, "DELETE FROM miner_performance WHERE miner_uid = %s", (miner,))

    def same_as_central() -> bool:
        return checksums(db_settings) == checksums(central)

    arrives(same_as_central, lambda: sync_ops.sync(reader, db_settings, batch_size=100))
    assert execute(db_settings, "SELECT 1 FROM raw_incident_reports WHERE report_id = %s", (new_report,))
    assert execute(db_settings, "SELECT title FROM crime_events WHERE event_id = %s", (event,)) == [
        ("changed on central",)]
    assert not execute(db_settings, "SELECT 1 FROM consensus_records WHERE record_id = %s", (gone,))
    assert not execute(db_settings, "SELECT 1 FROM miner_performance WHERE miner_uid = %s", (miner,))

    again = sync_ops.sync(reader, db_settings, since=datetime.now(UTC) - timedelta(hours=24))
    assert again.rows_changed == 0 and again.rows_read > 0
    assert checksums(db_settings) == checksums(central)
    assert {r[0] for r in execute(db_settings, "SELECT status FROM sync_runs")} == {"done"}
    assert {r[0] for r in execute(db_settings, "SELECT source FROM sync_state")} == {
        f"{central.host}:{central.port}/{central.name}"}


def test_setup_replica_copies_everything_and_sync_since_then_changes_nothing(cli_run, central, reader, db_settings):
    load(central, 100)
    env = cli_env(db_settings, LUMINAR_SYNC_SOURCE_URL=source_url(reader), LUMINAR_SYNC_SOURCE_ENV="testing")
    replica = cli_run(["setup", "--replica"], env)
    assert replica.exit_code == 0, replica.output
    assert checksums(db_settings) == checksums(central)
    since = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%MZ")
    again = cli_run(["sync", "--since", since], env)
    assert again.exit_code == 0, again.output
    assert "Synced 0 changed rows" in again.output
    both = cli_run(["sync", "--since", since, "--full"], env)
    assert both.exit_code != 0 and "one of --hours, --since and --full" in both.output


# -- interrupted, resumed ------------------------------------------------------------------------------------------
class Interrupted(Exception):
    pass


def test_an_interrupted_sync_resumes_with_no_duplicate_and_no_gap(central, reader, db_settings):
    load(central, 200)
    batches = []

    def stop_after_three(table: str, n: int) -> None:
        batches.append((table, n))
        if len(batches) == 3:
            raise Interrupted

    since = datetime.now(UTC) - timedelta(hours=72)  # the sample spans two days
    with pytest.raises(Interrupted):
        sync_ops.sync(reader, db_settings, since=since, batch_size=40, progress=stop_after_three)
    partial = checksums(db_settings)
    assert 0 < sum(n for n, _ in partial.values()) < sum(n for n, _ in checksums(central).values())
    assert execute(db_settings, "SELECT status, error FROM sync_runs")[0][0] == "failed"
    # Central moves on meanwhile; and a run whose process was killed stays 'running' until the next one.
    add_report(central)
    killed = execute(db_settings, "INSERT INTO sync_runs (source, mode) VALUES ('x:1/y', 'window') RETURNING run_id")

    resumed = sync_ops.sync(reader, db_settings, since=since, batch_size=40)
    assert checksums(db_settings) == checksums(central)
    assert execute(db_settings, "SELECT status, error FROM sync_runs WHERE run_id = %s", killed[0]) == [
        ("failed", "interrupted: the process ended before the run did")]
    total = {t: n for t, (n, _) in checksums(central).items()}
    for table, count in resumed.counts.items():  # what the first run wrote is found equal, not written again
        assert count.inserted == total[table] - partial[table][0], table
        assert count.updated == 0, table


# -- late commits --------------------------------------------------------------------------------------------------
def test_a_transaction_open_on_central_across_a_sync_arrives_with_the_next(central, reader, db_settings):
    load(central, 50)
    sync_ops.sync(reader, db_settings, since=datetime.now(UTC) - timedelta(hours=72))
    late = f"late-{uuid.uuid4().hex}"
    with psycopg.connect(central.conninfo()) as writer:  # a transaction begun now, committed after the sync
        writer.execute("""INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude,
                                                            "timestamp")
                          VALUES (%s, 'late', 1, 2, now())""", (late,))
        during = sync_ops.sync(reader, db_settings)  # the watermark alone: no time window
        assert during.counts["raw_incident_reports"].inserted == 0
        writer.commit()
    # Its updated_at is older than the sync that ran meanwhile: only the transaction-id watermark finds it.

    def late_row_arrived() -> bool:
        return bool(execute(db_settings, "SELECT 1 FROM raw_incident_reports WHERE external_id = %s", (late,)))

    arrives(late_row_arrived, lambda: sync_ops.sync(reader, db_settings))
    assert checksums(db_settings) == checksums(central)


# -- parents -------------------------------------------------------------------------------------------------------
def test_an_event_in_the_window_brings_its_older_reports_and_a_record_its_event(central, reader, db_settings):
    old = [add_report(central, age=timedelta(days=30)) for _ in range(2)]
    event = execute(central, """
        INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", confidence_score,
                                  related_reports, created_at, updated_at)
        VALUES (3, 'theft', 40.7, -74.0, now() - interval '20 days', 0.9, %s::uuid[],
                now() - interval '20 days', now() - interval '20 days')
        RETURNING event_id""", (old,))[0][0]
    execute(central, """INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores, final_score)
                        VALUES (%s, 4, 1, '{}', 0.5)""", (event,))
    result = sync_ops.sync(reader, db_settings, since=datetime.now(UTC) - timedelta(hours=1))
    assert result.counts["consensus_records"].inserted == 1
    assert result.counts["crime_events"].inserted == 1 and result.counts["raw_incident_reports"].inserted == 2
    assert checksums(db_settings) == checksums(central)


# -- local-only data -----------------------------------------------------------------------------------------------
def test_local_only_rows_are_kept_and_a_local_row_holding_a_central_key_is_refused_unless_overwrite(
        central, reader, db_settings):
    execute(central, "INSERT INTO miner_performance (miner_uid, hotkey) VALUES (7, 'central-hotkey')")
    execute(db_settings, "INSERT INTO miner_performance (miner_uid, hotkey) VALUES (7, 'local-hotkey')")
    mine = add_report(db_settings)
    since = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ConflictError, match=r"miner_performance .*miner_uid=7.*--overwrite"):
        sync_ops.sync(reader, db_settings, since=since)
    assert execute(db_settings, "SELECT hotkey FROM miner_performance WHERE miner_uid = 7") == [("local-hotkey",)]

    sync_ops.sync(reader, db_settings, since=since, overwrite=True)
    assert execute(db_settings, "SELECT hotkey FROM miner_performance WHERE miner_uid = 7") == [("central-hotkey",)]
    assert execute(db_settings, "SELECT 1 FROM raw_incident_reports WHERE report_id = %s", (mine,))


def test_a_uid_deleted_and_registered_again_on_central_stays_and_retention_deletes_stay_central(
        central, reader, db_settings):
    execute(central, "INSERT INTO miner_performance (miner_uid, hotkey) VALUES (9, 'first')")
    old = add_report(central, age=timedelta(days=400))
    since = datetime.now(UTC) - timedelta(days=500)
    sync_ops.sync(reader, db_settings, since=since)
    execute(central, "DELETE FROM miner_performance WHERE miner_uid = 9")
    execute(central, "INSERT INTO miner_performance (miner_uid, hotkey) VALUES (9, 'second')")
    with psycopg.connect(central.conninfo(), autocommit=True) as conn:
        from luminar_store.ops.retention import delete_old_rows

        assert delete_old_rows(conn, days=365)["raw_incident_reports"] == 1
    result = sync_ops.sync(reader, db_settings)
    assert execute(db_settings, "SELECT hotkey FROM miner_performance WHERE miner_uid = 9") == [("second",)]
    # Central's retention removed the old report; the copy keeps it until its own clean.
    assert execute(db_settings, "SELECT 1 FROM raw_incident_reports WHERE report_id = %s", (old,))
    assert result.counts["raw_incident_reports"].deleted == 0


def test_a_delete_local_data_still_needs_stops_the_run_in_one_line_and_a_second_sync_waits_for_none(
        central, reader, db_settings):
    report = add_report(central)
    event = execute(central, """
        INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", confidence_score,
                                  related_reports)
        VALUES (3, 'theft', 40.7, -74.0, now(), 0.9, ARRAY[%s::uuid]) RETURNING event_id""", (report,))[0][0]
    sync_ops.sync(reader, db_settings, since=datetime.now(UTC) - timedelta(hours=1))
    execute(db_settings, """
        INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", confidence_score,
                                  related_reports)
        VALUES (8, 'local_only', 1, 2, now(), 0.5, ARRAY[%s::uuid])""", (report,))
    execute(central, "DELETE FROM crime_events WHERE event_id = %s", (event,))
    execute(central, "DELETE FROM raw_incident_reports WHERE report_id = %s", (report,))
    with pytest.raises(OperationError, match=r"^sync stopped while copying deletes into .*related report") as stop:
        sync_ops.sync(reader, db_settings)
    assert "\n" not in str(stop.value)
    assert execute(db_settings, "SELECT status FROM sync_runs ORDER BY run_id DESC LIMIT 1") == [("failed",)]
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as other:  # a sync in progress elsewhere
        other.execute(sync_ops.LOCK, {"key": sync_ops.LOCK_KEY})
        with pytest.raises(OperationError, match="another sync is writing"):
            sync_ops.sync(reader, db_settings)


def test_a_second_source_is_refused(pg_server, central, reader, db_settings):
    sync_ops.sync(reader, db_settings, full=True)
    other = replace(reader, name=pg_server.template)
    with pytest.raises(OperationError, match="follows .* one source"):
        sync_ops.sync(other, db_settings, full=True)


# -- refusals ------------------------------------------------------------------------------------------------------
def test_production_and_the_source_itself_are_refused_as_targets(central, reader, db_settings):
    with pytest.raises(OperationError, match=r"not into database .*\(environment production\)"):
        sync_ops.sync(reader, replace(db_settings, env="production"), full=True)
    with pytest.raises(OperationError, match="same database"):
        sync_ops.sync(reader, central, full=True)
    with pytest.raises(OperationError, match="--hours N or --since"):
        sync_ops.sync(reader, db_settings)
    assert not execute(db_settings, "SELECT 1 FROM sync_runs")


def test_a_source_weaker_than_the_production_tls_minimum_is_refused_without_its_password():
    environ = {"LUMINAR_ENV": "production",
               "DATABASE_URL": "postgresql://luminar_subnet:n0de-secret@central-db.luminar.network:5432/"
                               "luminar_production?sslmode=require",
               sync_ops.SOURCE_URL_VARIABLE: "postgresql://sync_reader:s3cret-sync@central-db.luminar.network/"
                                             "luminar_production?sslmode=disable"}
    with pytest.raises(ConfigError) as refused:
        sync_ops.resolve_source("production", environ=environ)
    message = str(refused.value)
    assert sync_ops.SOURCE_URL_VARIABLE in message and "sslmode=disable" in message
    assert "s3cret" not in message and "n0de-secret" not in message
    # Naming no sslmode, it inherits production's.
    environ[sync_ops.SOURCE_URL_VARIABLE] = "postgresql://sync_reader:s3cret-sync@central-db.luminar.network/x"
    assert sync_ops.resolve_source("production", environ=environ).sslmode == "require"


def test_the_cli_names_the_source_setting_when_it_is_weaker_than_the_minimum(cli_run, db_settings):
    env = cli_env(db_settings, LUMINAR_DB_SSLMODE="require",
                  LUMINAR_SYNC_SOURCE_URL="postgresql://sync_reader:s3cret-sync@127.0.0.1/c?sslmode=prefer")
    result = cli_run(["sync", "--hours=24", "--source-env", "testing"], env)
    assert result.exit_code == 1
    line = one_line_error(result)
    assert "LUMINAR_SYNC_SOURCE_URL" in line and "s3cret" not in result.output


# -- the sync manager's pulls ---------------------------------------------------------------------------------------
def test_the_sync_manager_pulls_at_an_interval_where_logical_replication_cannot_be_used(central, reader,
                                                                                        db_settings):
    manager = SyncManager(db_settings)

    async def go():
        # The session's server has wal_level = replica: no subscription is possible, pulls take over.
        mode = await manager.start_real_time_sync(source_url=source_url(reader), source_env="testing",
                                                  admin_url=db_settings.conninfo(), interval=0.2)
        assert mode == "pull"
        report = add_report(central)
        # Arrived, and the pull that brought it is counted (the count follows the pull's commit).
        await eventually(lambda: execute(db_settings, "SELECT count(*) FROM raw_incident_reports "
                                                      "WHERE report_id = %s", (report,)) == [(1,)]
                         and manager.pulls >= 1, timeout=30, every=0.2)
        assert manager.last_error is None
        await manager.stop()
        assert manager.mode is None

    run(go())
