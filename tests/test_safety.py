"""Destructive commands against a real server: they name their exact target, check every precondition before
anything is dropped, and never follow a setting written for another environment. The two incidents of the
operations layer are reproduced here: the wrong database wiped through a .env, and a database dropped before the
migrations that rebuild it were found."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from _cli import cli_env
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.errors import DatabaseMissingError, DatabaseUnavailableError, OperationError
from luminar_store.ops import provision
from luminar_store.ops.connect import connect

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "setup_database.py"


def rows(settings: Settings) -> int:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM raw_incident_reports").fetchone()[0]


def dotenv_for(settings: Settings, env: str = "local") -> str:
    """A .env as `cp .env.local .env` makes it, pointed at ``settings``' server and database."""
    return (f"LUMINAR_ENV={env}\nLUMINAR_DB_HOST={settings.host}\nLUMINAR_DB_PORT={settings.port}\n"
            f"LUMINAR_DB_NAME={settings.name}\nLUMINAR_DB_USER={settings.user}\n"
            f"LUMINAR_DB_PASSWORD={settings.password}\nLUMINAR_DB_SSLMODE=disable\n")


def clean_environ(**extra: str) -> dict[str, str]:
    """The process environment without any Luminar setting (a new shell), plus ``extra``."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("LUMINAR_DB", "LUMINAR_ENV", "DATABASE_URL", "LUMINAR_MIGRATIONS"))}
    return {**keep, **extra}


def setup_database_py(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=clean_environ(**extra),
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def holding(db_settings: Settings, cli_run) -> Settings:
    """The test database holding 40 sample reports."""
    result = cli_run(["sample-data", "--reports", "40"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    assert rows(db_settings) == 40
    return db_settings


# -- incident 1: the wrong database wiped ---------------------------------------------------------------------------
def test_reset_for_testing_never_follows_a_dotenv_written_for_local(holding: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(dotenv_for(holding))
    done = setup_database_py("reset", "--env=testing", "--yes", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    error = done.stderr.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert "(from " in error and ".env)" in error and "written for LUMINAR_ENV=local" in error
    assert "nothing was done" in error and "LUMINAR_TEST_DB_" in error
    assert rows(holding) == 40


def test_luminar_env_testing_in_the_shell_does_not_take_the_local_dotenv(holding: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(dotenv_for(holding))
    done = setup_database_py("reset", "--yes", cwd=tmp_path, LUMINAR_ENV="testing")
    assert done.returncode == 1 and "written for LUMINAR_ENV=local" in done.stderr
    assert rows(holding) == 40


def test_reset_names_its_exact_target_before_it_acts(holding: Settings, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(dotenv_for(holding, env="testing"))
    done = setup_database_py("reset", "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert first == (f"Target: database {holding.name} on {holding.host}:{holding.port} (environment testing) - "
                     "40 raw_incident_reports, " + first.split("40 raw_incident_reports, ", 1)[1])
    assert f"Reset database {holding.name} on {holding.host}:{holding.port} (environment testing)" in done.stdout
    assert rows(holding) == 0


# -- incident 2: dropped, then the migrations were not there ----------------------------------------------------------
@pytest.mark.parametrize("where", ["missing", "empty"])
def test_reset_without_migrations_drops_nothing(holding: Settings, tmp_path: Path, where: str) -> None:
    directory = tmp_path / "migrations"
    if where == "empty":
        directory.mkdir()
    (tmp_path / ".env").write_text(dotenv_for(holding, env="testing"))
    done = setup_database_py("reset", "--yes", cwd=tmp_path, LUMINAR_MIGRATIONS_DIR=str(directory))
    assert done.returncode != 0, done.stdout
    assert str(directory) in done.stderr and "Traceback" not in done.stderr
    assert rows(holding) == 40


def test_reset_by_a_role_that_could_not_rebuild_the_database_drops_nothing(holding: Settings, pg_server) -> None:
    role = f"owner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD 'owner-pw'").format(sql.Identifier(role)))
        admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(holding.name),
                                                                      sql.Identifier(role)))
    try:
        owner = pg_server.settings(holding.name, LUMINAR_DB_USER=role, LUMINAR_DB_PASSWORD="owner-pw")
        with pytest.raises(OperationError, match="not a superuser.*nothing was dropped"):
            provision.plan_reset(owner)
        assert rows(holding) == 40
    finally:
        with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(holding.name),
                                                                          sql.Identifier(pg_server.user)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.mark.parametrize("env", ["staging", "production"])
def test_reset_is_refused_where_the_environment_forbids_it_naming_the_target(holding: Settings, pg_server,
                                                                             env: str) -> None:
    settings = replace(holding, env=env)  # the same server and database, under a shared environment's name
    with pytest.raises(OperationError) as caught:
        provision.plan_reset(settings)
    assert "LUMINAR_ENV=local, testing, testnet" in str(caught.value) and holding.name in str(caught.value)
    assert rows(holding) == 40


# -- one door, typed failures -----------------------------------------------------------------------------------------
def test_a_missing_database_is_its_own_error(pg_server) -> None:
    missing = pg_server.settings(f"nowhere_{uuid.uuid4().hex[:8]}")
    with pytest.raises(DatabaseMissingError) as caught:
        connect(missing)
    assert missing.name in str(caught.value) and "luminar-db setup --env testing" in str(caught.value)


def test_an_unreachable_server_names_host_port_database_environment_and_the_testing_hint(pg_server) -> None:
    down = pg_server.settings("luminar_test", LUMINAR_DB_PORT="1", LUMINAR_DB_PASSWORD="pw-never-shown")
    with pytest.raises(DatabaseUnavailableError) as caught:
        connect(down)
    message = str(caught.value)
    assert not isinstance(caught.value, DatabaseMissingError)
    assert "cannot reach the database (host" in message and "port 1" in message and "environment testing" in message
    assert "make db-test-setup" in message and "pw-never-shown" not in message


# -- idempotent set-up, one status ------------------------------------------------------------------------------------
def test_setup_with_sample_data_twice_loads_once(db_settings: Settings, cli_run) -> None:
    for _ in range(2):
        result = cli_run(["setup", "--sample-data", "--reports", "30"], cli_env(db_settings))
        assert result.exit_code == 0, result.output
    assert "already holds reports; no sample data loaded" in result.output
    assert rows(db_settings) == 30


def test_status_and_db_status_are_one_report(db_settings: Settings, cli_run) -> None:
    env = cli_env(db_settings, LUMINAR_LOCAL_DIR="/nonexistent/luminar")
    plain, db = cli_run(["status", "-v"], env), cli_run(["db", "status", "-v"], env)
    assert plain.exit_code == db.exit_code == 0, plain.output + db.output
    assert plain.output == db.output
    assert "migrations   current (" in plain.output and "applied migrations:" in plain.output
