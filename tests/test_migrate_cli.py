"""``luminar-db migrate ...`` and ``python migrations/manager.py ...`` against a real, empty database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg
import pytest

from luminar_store.config import Settings
from luminar_store.migrator import LOCK_KEY

ROOT = Path(__file__).resolve().parents[1]
MANAGER = ROOT / "migrations" / "manager.py"
UP_DOWN = "-- migrate:up\nCREATE TABLE {t} (id int);\n-- migrate:down\nDROP TABLE {t};\n"


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "20250101000000_first.sql").write_text(UP_DOWN.format(t="first_table"))
    (directory / "20250102000000_second.sql").write_text(UP_DOWN.format(t="second_table"))
    return directory


def db_env(settings: Settings, mdir: Path) -> dict[str, str]:
    return {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": settings.host, "LUMINAR_DB_PORT": str(settings.port),
            "LUMINAR_DB_NAME": settings.name, "LUMINAR_DB_USER": settings.user,
            "LUMINAR_DB_PASSWORD": settings.password, "LUMINAR_MIGRATIONS_DIR": str(mdir)}


@pytest.fixture
def env(empty_db: Settings, mdir: Path) -> dict[str, str]:
    return db_env(empty_db, mdir)


@pytest.fixture
def migrate_cli(env, cli_run):
    """``migrate_cli("migrate", "status", LUMINAR_ENV=...)``: ``luminar-db`` with the test database's settings."""

    def invoke(*args: str, **extra_env: str):
        return cli_run(list(args), {**env, **extra_env})

    return invoke


def tables(settings: Settings) -> set[str]:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args", [["migrate"], ["migrate", "up"], ["migrate", "status"], ["migrate", "create"],
                                  ["migrate", "rollback"], ["migrate", "verify"]])
def test_every_command_has_help_with_an_example(migrate_cli, args):
    result = migrate_cli(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.output


def test_migrate_applies_with_one_line_per_file_and_never_prints_the_password(migrate_cli, empty_db):
    # The test server trusts local connections, so any password connects: it must still never be printed.
    result = migrate_cli("migrate", LUMINAR_DB_PASSWORD="not-for-your-eyes")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Migrating postgresql://") and "***" in lines[0]
    assert lines[1].startswith("applied 20250101000000_first (") and lines[1].endswith(" ms)")
    assert lines[2].startswith("applied 20250102000000_second (")
    assert lines[3] == "Done: 2 migrations applied."
    assert "not-for-your-eyes" not in result.output
    assert {"first_table", "second_table", "schema_migrations"} <= tables(empty_db)
    again = migrate_cli("migrate", "up")
    assert again.exit_code == 0 and "Nothing to apply: the database is up to date." in again.stdout


def test_status_exit_code_is_non_zero_while_something_is_pending(migrate_cli):
    pending = migrate_cli("migrate", "status", "--exit-code")
    assert pending.exit_code == 1
    assert "pending  20250101000000" in pending.stdout and "2 migrations: 2 pending." in pending.stdout
    assert migrate_cli("migrate", "status").exit_code == 0
    assert migrate_cli("migrate", "--target", "20250101000000").exit_code == 0
    half = migrate_cli("migrate", "status", "--exit-code")
    assert half.exit_code == 1 and "applied  20250101000000" in half.stdout
    assert migrate_cli("migrate").exit_code == 0
    assert migrate_cli("migrate", "status", "--exit-code").exit_code == 0


def test_dry_run_prints_the_plan_and_creates_nothing(migrate_cli, empty_db):
    result = migrate_cli("migrate", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would apply 20250101000000_first" in result.stdout
    assert "Dry run: 2 migrations would be applied; nothing was changed." in result.stdout
    assert tables(empty_db) == set()


def test_a_failing_migration_exits_non_zero_with_one_line_naming_file_and_line(migrate_cli, mdir, empty_db):
    (mdir / "20250103000000_broken.sql").write_text("CREATE TABLE broken (id int);\nSELECT nope FROM broken;\n")
    result = migrate_cli("migrate")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("Error: migration 20250103000000_broken.sql failed at line 2: column \"nope\"")
    assert "Traceback" not in result.output
    assert "broken" not in tables(empty_db) and "second_table" in tables(empty_db)


def test_an_unreachable_database_is_one_line_with_exit_code_2(migrate_cli):
    port = closed_port()
    result = migrate_cli("migrate", "status", LUMINAR_DB_HOST="127.0.0.1", LUMINAR_DB_PORT=str(port),
                 LUMINAR_DB_PASSWORD="never-shown")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert f"host 127.0.0.1, port {port}, database" in result.stderr and "make db-test-setup" in result.stderr
    assert "never-shown" not in result.output and "Traceback" not in result.output


def test_options_work_before_and_after_the_sub_command(migrate_cli, mdir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "20250101000000_only.sql").write_text("CREATE TABLE only_here (id int);")
    assert "20250101000000  only" in migrate_cli("migrate", "status", "--dir", str(other)).stdout
    assert "20250101000000  only" in migrate_cli("migrate", "--dir", str(other), "status").stdout
    refused = migrate_cli("migrate", "--dry-run", "status")
    assert refused.exit_code == 2 and "--dry-run only apply to `migrate` itself" in refused.stderr


def test_verify_and_accept_checksum(migrate_cli, mdir):
    assert migrate_cli("migrate").exit_code == 0
    assert migrate_cli("migrate", "verify").exit_code == 0
    (mdir / "20250101000000_first.sql").write_text(UP_DOWN.format(t="first_table") + "-- edited\n")
    verify = migrate_cli("migrate", "verify")
    assert verify.exit_code == 1
    assert "CHANGED  20250101000000" in verify.stdout and "--accept-checksum 20250101000000" in verify.stdout
    assert verify.stderr.startswith("Error: verify found 1 problem: 20250101000000_first changed")
    stopped = migrate_cli("migrate")
    assert stopped.exit_code == 1 and "--accept-checksum 20250101000000" in stopped.stderr
    accepted = migrate_cli("migrate", "--accept-checksum", "20250101000000")
    assert accepted.exit_code == 0 and "accept the edited text of 20250101000000_first.sql" in accepted.stdout
    assert migrate_cli("migrate", "verify").exit_code == 0


def test_rollback_runs_the_down_section(migrate_cli, empty_db):
    assert migrate_cli("migrate").exit_code == 0
    result = migrate_cli("migrate", "rollback")
    assert result.exit_code == 0, result.output
    assert "rolled back 20250102000000_second (" in result.stdout
    assert "second_table" not in tables(empty_db) and "first_table" in tables(empty_db)


def test_rollback_is_refused_in_production_without_touching_the_database(migrate_cli):
    result = migrate_cli("migrate", "rollback", "--wait", "30", LUMINAR_ENV="production", LUMINAR_DB_SSLMODE="require",
                 LUMINAR_DB_HOST="127.0.0.1", LUMINAR_DB_PORT=str(closed_port()), LUMINAR_DB_PASSWORD="prod-secret")
    assert result.exit_code == 1
    assert "production" in result.stderr and "--allow-production" in result.stderr
    assert "prod-secret" not in result.output


def test_lock_timeout_names_the_holder(migrate_cli, empty_db):
    with psycopg.connect(empty_db.conninfo(), autocommit=True, application_name="cli_lock_holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s::bigint)", [LOCK_KEY])
        result = migrate_cli("migrate", "--lock-timeout", "0.2")
        assert result.exit_code == 1
        assert f"pid {holder.info.backend_pid}" in result.stderr and "cli_lock_holder" in result.stderr
    assert "first_table" not in tables(empty_db)


def test_create_writes_a_file_and_refuses_a_bad_name(migrate_cli, mdir):
    result = migrate_cli("migrate", "create", "add_feature")
    assert result.exit_code == 0, result.output
    created = Path(result.stdout.strip().removeprefix("Created "))
    assert created.parent == mdir and created.name.endswith("_add_feature.sql")
    assert "-- migrate:down" in created.read_text()
    bad = migrate_cli("migrate", "create", "Add-Feature")
    assert bad.exit_code == 1 and bad.stderr.startswith("Error: name: 'Add-Feature' must be")
    assert len(list(mdir.glob("*.sql"))) == 3


def _manager(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    # -S skips site-packages' .pth files (the editable install); PYTHONPATH gives the dependencies back, so
    # luminar_store is found only through the repository root that manager.py puts on sys.path.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMINAR_", "PG"))}
    full_env.update(env, PYTHONPATH=sysconfig.get_paths()["purelib"])
    return subprocess.run([sys.executable, "-S", str(MANAGER), *args], env=full_env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_manager_py_is_a_door_into_the_same_commands(env, empty_db, mdir, tmp_path):
    applied = _manager(["migrate"], env, tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "applied 20250101000000_first" in applied.stdout and "applied 20250102000000_second" in applied.stdout
    status = _manager(["status", "--exit-code"], env, tmp_path)
    assert status.returncode == 0 and "2 migrations: 2 applied." in status.stdout
    assert _manager(["verify"], env, tmp_path).returncode == 0
    created = _manager(["create", "add_thing"], env, tmp_path)
    assert created.returncode == 0 and list(mdir.glob("*_add_thing.sql"))
    assert _manager(["status", "--exit-code"], env, tmp_path).returncode == 1
    assert _manager(["migrate"], env, tmp_path).returncode == 0
    rolled = _manager(["rollback"], env, tmp_path)
    assert rolled.returncode == 0 and "rolled back" in rolled.stdout and "_add_thing" in rolled.stdout
    help_text = _manager(["--help"], env, tmp_path)
    assert help_text.returncode == 0 and "Example:" in help_text.stdout


def test_manager_py_reports_an_unreachable_database_in_one_line_with_exit_code_2(env, tmp_path):
    port = closed_port()
    result = _manager(["migrate"], {**env, "LUMINAR_DB_HOST": "127.0.0.1", "LUMINAR_DB_PORT": str(port),
                                    "LUMINAR_DB_PASSWORD": "not-for-your-eyes"}, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"port {port}" in result.stderr and "make db-test-setup" in result.stderr
    assert "not-for-your-eyes" not in result.stderr
