"""The operations commands run for real (click's runner and a subprocess) against the test server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import click
import psycopg
import pytest
from _cli import cli_env, one_line_error
from click.testing import CliRunner
from psycopg import sql

from luminar_store.cli import cli
from luminar_store.config import Settings
from luminar_store.ops.provision import scram_verifier

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-not-for-printing"
# Every migration file of the project: the counts below follow it as migrations are added.
MIGRATIONS = len(list((ROOT / "migrations").glob("[0-9]*_*.sql")))




PRODUCTION = {"LUMINAR_ENV": "production", "LUMINAR_DB_HOST": "127.0.0.1", "LUMINAR_DB_PORT": "1",
              "LUMINAR_DB_PASSWORD": SECRET}




def count(settings: Settings, table: str) -> int:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands(cli)])
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output, f"`luminar-db {path} --help` shows no Example:"


@pytest.mark.parametrize("name", ["setup", "sample-data", "backup", "restore", "reset", "status", "stats",
                                  "sync", "clean"])
def test_every_operations_command_takes_env(name):
    assert "--env" in CliRunner().invoke(cli, [name, "--help"]).output


# -- sample-data -------------------------------------------------------------------------------------------------
def test_sample_data_loads_and_says_what_it_wrote(cli_run, db_settings):
    result = cli_run(["sample-data", "--env=testing", "--reports", "250", "--seed", "3"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    assert "250 reports" in result.output and "run 0 of seed 3" in result.output
    assert count(db_settings, "raw_incident_reports") == 250
    again = cli_run(["sample-data", "--reports", "250", "--seed", "3"], cli_env(db_settings))
    assert "run 1 of seed 3" in again.output
    assert count(db_settings, "raw_incident_reports") == 500


@pytest.mark.parametrize("env", ["production", "staging"])
def test_sample_data_is_refused_outside_local_and_testing(cli_run, db_settings, env):
    extra = {"LUMINAR_DB_PASSWORD": SECRET} if env == "production" else {}
    result = cli_run(["sample-data", f"--env={env}", "--reports", "10"], cli_env(db_settings, **extra))
    assert result.exit_code != 0
    assert env in one_line_error(result)
    assert SECRET not in result.output
    assert count(db_settings, "raw_incident_reports") == 0


def test_the_spec_command_line_works_as_written(db_settings, tmp_path):
    env = {**os.environ, **cli_env(db_settings)}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "setup_database.py"), "sample-data",
                           "--env=testing", "--reports", "120"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "120 reports" in done.stdout
    assert count(db_settings, "raw_incident_reports") == 120


def test_an_unreachable_database_is_one_line_and_exit_2(cli_run, db_settings):
    for args in (["sample-data", "--reports", "5"], ["stats"], ["clean", "--yes"], ["status"]):
        result = cli_run(args, cli_env(db_settings, LUMINAR_DB_PORT="1", LUMINAR_DB_PASSWORD=SECRET))
        assert result.exit_code == 2, (args, result.output)
        assert "cannot reach" in one_line_error(result)
        assert SECRET not in result.output


# -- setup and reset ---------------------------------------------------------------------------------------------
@pytest.fixture
def fresh_name(pg_server):
    """A database name that does not exist yet; dropped (with any role made for it) after the test."""
    name = f"s_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(f"r_{name}")))


def test_setup_creates_the_database_with_postgis_and_migrates_it(cli_run, pg_server, fresh_name):
    settings = pg_server.settings(fresh_name)
    result = cli_run(["setup", "--env=testing"], cli_env(settings))
    assert result.exit_code == 0, result.output
    assert f"Created database {fresh_name}, PostGIS." in result.output
    assert count(settings, "schema_migrations") == MIGRATIONS
    again = cli_run(["setup", "--env=testing", "--sample-data", "--reports", "50"], cli_env(settings))
    assert again.exit_code == 0, again.output
    assert "already there" in again.output and "up to date" in again.output
    assert count(settings, "raw_incident_reports") == 50


def test_setup_with_an_admin_url_creates_the_role_and_gives_it_the_database(cli_run, pg_server, fresh_name):
    role = f"r_{fresh_name}"
    settings = pg_server.settings(fresh_name, LUMINAR_DB_USER=role, LUMINAR_DB_PASSWORD=SECRET)
    result = cli_run(["setup", "--env=testing", "--admin-url", pg_server.conninfo("postgres")], cli_env(settings))
    assert result.exit_code == 0, result.output
    assert f"Created role {role}, database {fresh_name}, PostGIS." in result.output
    assert SECRET not in result.output
    with psycopg.connect(pg_server.conninfo(fresh_name), autocommit=True) as conn:
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                             [fresh_name]).fetchone()[0]
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()[0]
        tables_owner = conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' "
                                    "AND tablename <> 'spatial_ref_sys'").fetchall()
    assert owner == role and tables_owner == [(role,)]
    assert stored.startswith("SCRAM-SHA-256$4096:")


def test_scram_verifier_matches_what_postgresql_computes(conn):
    role = f"v_{uuid.uuid4().hex[:8]}"
    conn.execute("SET password_encryption = 'scram-sha-256'")
    conn.execute(sql.SQL("CREATE ROLE {} PASSWORD 'correct horse'").format(sql.Identifier(role)))
    try:
        stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role]).fetchone()[0]
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    import base64

    iterations, salt = stored.split("$")[1].split(":")
    assert scram_verifier("correct horse", salt=base64.b64decode(salt), iterations=int(iterations)) == stored


def test_reset_asks_for_yes_without_a_terminal_and_changes_nothing(cli_run, db_settings):
    cli_run(["sample-data", "--reports", "40"], cli_env(db_settings))
    result = cli_run(["reset", "--env=testing"], cli_env(db_settings))
    assert result.exit_code != 0
    assert "--yes" in one_line_error(result)
    assert count(db_settings, "raw_incident_reports") == 40


def test_reset_rebuilds_an_empty_migrated_database(cli_run, db_settings):
    cli_run(["sample-data", "--reports", "40"], cli_env(db_settings))
    result = cli_run(["reset", "--env=testing", "--yes"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    assert count(db_settings, "raw_incident_reports") == 0
    assert count(db_settings, "schema_migrations") == MIGRATIONS


def test_reset_is_refused_in_production(cli_run, db_settings):
    result = cli_run(["reset", "--yes"], cli_env(db_settings, **PRODUCTION))
    assert result.exit_code != 0
    assert "production" in one_line_error(result)


# -- status, stats, sync -----------------------------------------------------------------------------------------
def test_status_shows_versions_migrations_and_pool_without_the_password(cli_run, db_settings):
    result = cli_run(["status", "--env=testing"], cli_env(db_settings, LUMINAR_DB_PASSWORD=SECRET, POOL_SIZE="7"))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "reachable    yes" in out and "PostgreSQL   15" in out and "PostGIS      3." in out
    assert f"{MIGRATIONS} applied, 0 pending" in out
    assert "size 7 + overflow 3 = max 10" in out
    assert SECRET not in out and ":***@" in out


def test_status_names_pending_migrations(cli_run, empty_db):
    result = cli_run(["status"], cli_env(empty_db))
    assert result.exit_code == 0, result.output
    assert f"0 applied, {MIGRATIONS} pending" in result.output and "luminar-db migrate" in result.output


def test_stats_as_table_and_as_json(cli_run, db_settings):
    cli_run(["sample-data", "--reports", "600", "--seed", "5"], cli_env(db_settings))
    table = cli_run(["stats"], cli_env(db_settings))
    assert table.exit_code == 0, table.output
    for label in ("reports", "events", "throughput", "consensus accuracy", "miner success rate", "active nodes",
                  "geographic coverage", "Europe", "top miners"):
        assert label in table.output
    data = json.loads(cli_run(["stats", "--json"], cli_env(db_settings)).output)
    assert data["reports_total"] == 600 and data["events_total"] > 100
    assert 0 < data["processed_per_hour"] and 0 < data["received_per_hour"]
    assert 50 <= data["consensus_agreement_pct"] <= 100 and 50 <= data["validator_accuracy_pct"] <= 100
    assert {c["region"] for c in data["coverage"]} >= {"North America", "South America", "Europe", "Africa",
                                                       "Asia", "Oceania"}
    assert sum(c["events"] for c in data["coverage"]) == data["events_total"]
    assert 0 < data["active_nodes"] <= data["miners_total"] == 64
    assert 0 <= data["miner_success_rate_min"] <= data["miner_success_rate_avg"] <= data["miner_success_rate_max"]


def test_stats_lists_recent_events_and_hotspots_for_the_demo(cli_run, db_settings):
    first = cli_run(["sample-data", "--if-empty", "--reports", "900"], cli_env(db_settings))
    assert "900 reports" in first.output
    second = cli_run(["sample-data", "--if-empty", "--reports", "900"], cli_env(db_settings))
    assert second.exit_code == 0 and "no sample data loaded" in second.output
    assert count(db_settings, "raw_incident_reports") == 900
    table = cli_run(["stats", "--recent", "3", "--hotspots", "2"], cli_env(db_settings))
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    events_at = lines.index("recent events:")
    assert len([line for line in lines[events_at + 1:events_at + 4] if " UTC  " in line]) == 3
    assert any(line.startswith("hotspots (verified incidents by 400 m cell, last 7 days):") for line in lines)
    data = json.loads(cli_run(["stats", "--json", "--recent", "3", "--hotspots", "2"], cli_env(db_settings)).output)
    assert len(data["recent_events"]) == 3 and 1 <= len(data["hotspots"]) <= 2
    assert data["hotspots"][0]["incident_count"] >= data["hotspots"][-1]["incident_count"]


def test_stats_of_an_empty_schema_say_so(cli_run, db_settings, empty_db):
    empty = cli_run(["stats", "--json"], cli_env(db_settings))
    assert json.loads(empty.output)["reports_total"] == 0
    missing = cli_run(["stats"], cli_env(empty_db))
    assert missing.exit_code != 0 and "no Luminar schema" in one_line_error(missing)


def test_sync_refuses_to_copy_a_database_into_itself(cli_run, db_settings):
    result = cli_run(["sync", "--hours=24", "--env", "testing", "--source-env", "testing"],
                     {**cli_env(db_settings), "LUMINAR_SYNC_SOURCE_URL": db_settings.safe_dsn().replace("***", "x")})
    assert result.exit_code == 1
    assert "same database" in one_line_error(result)


# -- clean ---------------------------------------------------------------------------------------------------------
def test_clean_deletes_only_old_rows_after_confirmation(cli_run, db_settings):
    cli_run(["sample-data", "--reports", "800", "--days", "30", "--seed", "8"], cli_env(db_settings))
    before = count(db_settings, "raw_incident_reports")
    refused = cli_run(["clean", "--days", "10"], cli_env(db_settings))
    assert refused.exit_code != 0 and "--yes" in one_line_error(refused)
    assert count(db_settings, "raw_incident_reports") == before
    done = cli_run(["clean", "--days", "10", "--yes", "--batch-size", "50"], cli_env(db_settings))
    assert done.exit_code == 0, done.output
    assert "Deleted" in done.output
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        old_events = conn.execute("SELECT count(*) FROM crime_events WHERE \"timestamp\" < now() - interval '10 days'"
                                  ).fetchone()[0]
        old_reports = conn.execute("""
            SELECT count(*) FROM raw_incident_reports r WHERE created_at < now() - interval '10 days'
               AND NOT EXISTS (SELECT 1 FROM crime_events e WHERE e.related_reports @> ARRAY[r.report_id])
        """).fetchone()[0]
        recent = conn.execute("SELECT count(*) FROM raw_incident_reports WHERE created_at >= now() - "
                              "interval '9 days'").fetchone()[0]
        miners = conn.execute("SELECT count(*) FROM miner_performance").fetchone()[0]
    assert (old_events, old_reports) == (0, 0)
    assert 0 < recent < count(db_settings, "raw_incident_reports") + 1 <= before
    assert miners == 64
    nothing = cli_run(["clean", "--days", "10"], cli_env(db_settings))
    assert nothing.exit_code == 0 and "Nothing older than 10 days" in nothing.output


def test_clean_uses_the_retention_setting(cli_run, db_settings):
    result = cli_run(["clean", "--yes"], cli_env(db_settings, LUMINAR_RETENTION_DAYS="3"))
    assert result.exit_code == 0 and "Nothing older than 3 days" in result.output
