"""Backup and restore for real: pg_dump/pg_restore against the test server, through the command line."""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from _cli import cli_env, one_line_error
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.ops.backup import find_tool, tool_environment

SECRET = "hunter2-not-for-printing"


def fingerprint(settings: Settings) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of every row of every table (ordered by the row's text): equal means identical."""
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                                             "AND tablename <> 'spatial_ref_sys' ORDER BY 1")]
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) FROM {} AS x")
        return {t: conn.execute(query.format(sql.Identifier(t))).fetchone() for t in tables}


@pytest.fixture
def loaded(cli_run, db_settings) -> Settings:
    result = cli_run(["sample-data", "--reports", "400", "--seed", "21"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    return db_settings


@pytest.fixture
def dump(cli_run, loaded, tmp_path) -> Path:
    path = tmp_path / "luminar.dump"
    result = cli_run(["backup", "--output", str(path)], cli_env(loaded))
    assert result.exit_code == 0, result.output
    return path


def test_backup_reset_restore_gives_back_identical_content(cli_run, loaded, tmp_path):
    before = fingerprint(loaded)
    assert before["raw_incident_reports"][0] == 400 and before["audit_log"][0] > 0
    made = cli_run(["backup", "--env=testing"], cli_env(loaded))
    assert made.exit_code == 0, made.output
    backups = list((tmp_path / "backups").glob("luminar_testing_*Z.dump"))
    assert len(backups) == 1 and str(backups[0].relative_to(tmp_path)) in made.output
    assert "KB" in made.output or "MB" in made.output
    assert cli_run(["reset", "--yes"], cli_env(loaded)).exit_code == 0
    assert fingerprint(loaded)["raw_incident_reports"][0] == 0
    restored = cli_run(["restore", str(backups[0]), "--clean", "--yes"], cli_env(loaded))
    assert restored.exit_code == 0, restored.output
    assert fingerprint(loaded) == before


def test_restore_into_a_new_database_creates_it(cli_run, loaded, dump, pg_server):
    name = f"r_{uuid.uuid4().hex[:10]}"
    target = pg_server.settings(name)
    try:
        result = cli_run(["restore", str(dump)], cli_env(target))
        assert result.exit_code == 0, result.output
        assert "database created" in result.output
        assert fingerprint(target) == fingerprint(loaded)
    finally:
        with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_specs_plain_pg_restore_reads_our_dumps(loaded, dump, pg_server, empty_db):
    # `pg_restore -d luminar_local backup_file` from the specification, into an empty database.
    done = subprocess.run([str(find_tool("pg_restore")), "-d", empty_db.name, str(dump)],
                          env=tool_environment(empty_db), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert fingerprint(empty_db) == fingerprint(loaded)


def test_restore_into_tables_needs_clean(cli_run, loaded, dump):
    before = fingerprint(loaded)
    result = cli_run(["restore", str(dump)], cli_env(loaded))
    assert result.exit_code != 0 and "--clean" in one_line_error(result)
    assert fingerprint(loaded) == before


def test_restore_with_clean_asks_for_yes_without_a_terminal(cli_run, loaded, dump):
    result = cli_run(["restore", str(dump), "--clean"], cli_env(loaded))
    assert result.exit_code != 0 and "--yes" in one_line_error(result)


def test_a_corrupt_dump_is_refused_and_nothing_changes(cli_run, loaded, tmp_path):
    before = fingerprint(loaded)
    bogus = tmp_path / "bogus.dump"
    bogus.write_bytes(b"PGDMP this is not really an archive" + os.urandom(2000))
    result = cli_run(["restore", str(bogus), "--clean", "--yes"], cli_env(loaded))
    assert result.exit_code != 0
    assert "not a readable pg_dump archive" in one_line_error(result)
    assert fingerprint(loaded) == before


def test_a_truncated_dump_fails_and_nothing_changes(cli_run, loaded, dump, tmp_path):
    before = fingerprint(loaded)
    cut = tmp_path / "cut.dump"
    data = dump.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])  # the table of contents is whole, the data is not
    result = cli_run(["restore", str(cut), "--clean", "--yes"], cli_env(loaded))
    assert result.exit_code != 0
    # Found while the archive is read (before the database is touched) or inside the restore's one transaction.
    line = one_line_error(result)
    assert "nothing was restored" in line or "nothing was changed" in line, line
    assert fingerprint(loaded) == before


def test_a_missing_dump_is_named(cli_run, loaded, tmp_path):
    result = cli_run(["restore", str(tmp_path / "nope.dump")], cli_env(loaded))
    assert result.exit_code != 0 and "nope.dump: no such file" in one_line_error(result)


def test_restore_into_production_needs_force_and_confirmation(cli_run, loaded, dump):
    production = cli_env(loaded, LUMINAR_ENV="production", LUMINAR_DB_PASSWORD=SECRET,
                         LUMINAR_DB_SSLMODE="require")
    refused = cli_run(["restore", str(dump)], production)
    assert refused.exit_code != 0 and "--force" in one_line_error(refused)
    unconfirmed = cli_run(["restore", str(dump), "--force"], production)
    assert unconfirmed.exit_code != 0 and "--yes" in one_line_error(unconfirmed)
    assert SECRET not in refused.output + unconfirmed.output


def test_an_unwritable_output_is_one_line_and_leaves_no_file(cli_run, loaded, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = cli_run(["backup", "--output", str(blocker / "x.dump")], cli_env(loaded))
    assert result.exit_code != 0
    assert "cannot write the backup" in one_line_error(result) and "--output" in result.output
    assert blocker.read_text() == "not a directory"


def test_an_existing_output_is_not_overwritten(cli_run, loaded, dump):
    size = dump.stat().st_size
    result = cli_run(["backup", "--output", str(dump)], cli_env(loaded))
    assert result.exit_code != 0 and "already exists" in one_line_error(result)
    assert dump.stat().st_size == size


def test_a_missing_pg_dump_is_named_with_the_fix(cli_run, loaded, tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = cli_run(["backup", "--output", str(tmp_path / "x.dump")],
                     cli_env(loaded, LUMINAR_PG_BINDIR=str(empty_bin)))
    assert result.exit_code != 0
    line = one_line_error(result)
    assert "pg_dump not found" in line and "LUMINAR_PG_BINDIR" in line
    assert not list(tmp_path.glob("x.dump*"))


def test_backup_of_an_unreachable_server_exits_2(cli_run, loaded, tmp_path):
    result = cli_run(["backup", "--output", str(tmp_path / "x.dump")],
                 cli_env(loaded, LUMINAR_DB_PORT="1", LUMINAR_DB_PASSWORD=SECRET))
    assert result.exit_code == 2 and "cannot reach" in one_line_error(result)
    assert SECRET not in result.output and not list(tmp_path.glob("x.dump*"))


def test_the_password_travels_in_the_environment_never_on_the_command_line(cli_run, loaded, tmp_path):
    # A pg_dump that records how it was called, then hands over to the real one.
    real = find_tool("pg_dump")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    wrapper = bindir / "pg_dump"
    wrapper.write_text(f'#!/bin/sh\necho "argv: $*" >> {log}\necho "password set: ${{PGPASSWORD:+yes}}" >> {log}\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    result = cli_run(["backup", "--output", str(tmp_path / "x.dump")],
                 cli_env(loaded, LUMINAR_PG_BINDIR=str(bindir), LUMINAR_DB_PASSWORD=SECRET))
    assert result.exit_code == 0, result.output
    calls = log.read_text()
    assert "password set: yes" in calls and "--format=custom" in calls
    assert SECRET not in calls and SECRET not in result.output


def test_backups_are_readable_by_their_owner_only(cli_run, loaded, tmp_path):
    previous = os.umask(0o022)  # a common umask: files 0644 unless the backup says otherwise
    try:
        made = cli_run(["backup", "--env=testing"], cli_env(loaded))
        given = cli_run(["backup", "--output", str(tmp_path / "given.dump")], cli_env(loaded))
    finally:
        os.umask(previous)
    assert made.exit_code == 0 and given.exit_code == 0, (made.output, given.output)
    [default] = (tmp_path / "backups").glob("luminar_testing_*Z.dump")
    assert stat.S_IMODE(default.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "given.dump").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "backups").stat().st_mode) == 0o700
