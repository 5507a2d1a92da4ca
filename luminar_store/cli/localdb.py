"""``luminar-db db start|stop|status|reset``: the local development database in one command.

The database runs in Docker Compose (service ``luminar-db``; ``luminar-test-db`` for ``LUMINAR_ENV=testing``) when
a Docker engine answers, otherwise as the embedded cluster of ``luminar_store.localdb`` kept under
``.luminar/<env>`` in the project directory (an embedded cluster that already exists keeps being used).
``LUMINAR_DB_BACKEND`` (or ``--backend``) forces either. Both answer the same connection string, from the settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import click

from luminar_store import localdb
from luminar_store.cli import cli
from luminar_store.config import ENVIRONMENTS, Settings, load_settings
from luminar_store.errors import DatabaseUnavailableError, OperationError

__all__ = ["db_group", "project_root"]

_LOCAL_ENVS = ("local", "testing")
_SERVICES = {"local": "luminar-db", "testing": "luminar-test-db"}


def project_root() -> Path:
    """The project directory: the nearest folder, from the working directory up, holding ``docker-compose.yml``
    and ``migrations/``; the working directory when there is none."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "docker-compose.yml").is_file() and (folder / "migrations").is_dir():
            return folder
    return here


def _local_settings(action: str, env: str | None) -> Settings:
    settings = load_settings(env)
    if settings.env not in _LOCAL_ENVS:
        raise OperationError(f"db {action} runs a database on this machine, for LUMINAR_ENV=local or testing; "
                             f"LUMINAR_ENV={settings.env} points at a server run elsewhere")
    return settings


def _cluster(settings: Settings) -> localdb.Cluster:
    base = Path(os.environ.get("LUMINAR_LOCAL_DIR") or project_root() / ".luminar")
    return localdb.Cluster.from_settings(settings, base / settings.env)


def _compose(settings: Settings, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    command = localdb.compose_command()
    if command is None:
        raise OperationError("a Docker engine answers but Docker Compose is missing; install the compose plugin, "
                             "or use the embedded cluster: LUMINAR_DB_BACKEND=embedded")
    env = dict(os.environ)
    prefix = "LUMINAR_TEST_DB_" if settings.env == "testing" else "LUMINAR_DB_"
    env.update({f"{prefix}USER": settings.user, f"{prefix}PASSWORD": settings.password,
                f"{prefix}NAME": settings.name, f"{prefix}PORT": str(settings.port)})
    root = project_root()
    argv = [*command, "-f", str(root / "docker-compose.yml")]
    if settings.env == "testing":
        argv += ["--profile", "testing"]
    return subprocess.run([*argv, *args], cwd=root, env=env, text=True, capture_output=capture, check=False)


def _docker_running(settings: Settings) -> bool:
    done = _compose(settings, "ps", "-q", _SERVICES[settings.env], capture=True)
    ids = done.stdout.split() if done.returncode == 0 else []
    if not ids:
        return False
    inspect = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", ids[0]], capture_output=True,
                             text=True, check=False)
    return inspect.stdout.strip() == "true"


def _wait_reachable(settings: Settings, timeout: float) -> dict[str, str | None]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return localdb.server_info(settings.conninfo())
        except DatabaseUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def _backend(choice: str, settings: Settings) -> str:
    """``docker`` or ``embedded``. Auto keeps an embedded cluster that already exists (its data stays in use),
    else takes Docker when an engine answers and Compose is there."""
    if choice != "auto":
        if choice == "docker" and not localdb.docker_answers():
            raise OperationError("no Docker engine answers (docker info failed); start Docker or set "
                                 "LUMINAR_DB_BACKEND=embedded")
        return choice
    if localdb.status(_cluster(settings)).initialized:
        return "embedded"
    return "docker" if localdb.docker_answers() and localdb.compose_command() else "embedded"


_env_option = click.option("--env", type=click.Choice(ENVIRONMENTS), default=None,
                           help="Settings environment [default: LUMINAR_ENV, else local].")
_backend_option = click.option(
    "--backend", type=click.Choice(["auto", "docker", "embedded"]), default="auto", envvar="LUMINAR_DB_BACKEND",
    show_default=True, help="Docker Compose, the embedded cluster, or auto (an existing embedded cluster, else "
                            "Docker when an engine answers, else a new embedded cluster).")


@cli.group("db")
def db_group() -> None:
    """Run the local development database (Docker Compose, or an embedded cluster under .luminar/).

    Settings: LUMINAR_ENV (local or testing), LUMINAR_DB_HOST/PORT/USER/PASSWORD/NAME, LUMINAR_DB_BACKEND.

    Example: luminar-db db start && luminar-db db status
    """


@db_group.command("start")
@_env_option
@_backend_option
@click.option("--timeout", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="Seconds to wait for the server to accept connections.")
def start_command(env: str | None, backend: str, timeout: int) -> None:
    """Start the local database (creating it on first use) with its role, database and PostGIS.

    Idempotent: a running database is left as it is.

    Example: luminar-db db start
    """
    settings = _local_settings("start", env)
    if _backend(backend, settings) == "docker":
        if _docker_running(settings):
            click.echo(f"already running (docker compose service {_SERVICES[settings.env]}): {settings.safe_dsn()}")
            return
        if _compose(settings, "up", "-d", _SERVICES[settings.env]).returncode != 0:
            raise OperationError(f"docker compose could not start {_SERVICES[settings.env]}; see the lines above")
        info = _wait_reachable(settings, timeout)
        localdb.ensure_database(settings.conninfo(dbname="postgres"), settings.name)
        click.echo(f"started (docker compose, PostgreSQL {info['postgresql']}): {settings.safe_dsn()}")
        return
    cluster = _cluster(settings)
    result = localdb.start(cluster, timeout=timeout)
    if result == "already running":
        click.echo(f"already running (embedded cluster in {cluster.home}): {settings.safe_dsn()}")
        return
    info = localdb.server_info(settings.conninfo())
    click.echo(f"started (embedded PostgreSQL {info['postgresql']}, PostGIS {info['postgis']}, data in "
               f"{cluster.home}): {settings.safe_dsn()}")


@db_group.command("stop")
@_env_option
@_backend_option
def stop_command(env: str | None, backend: str) -> None:
    """Stop the local database; its data stays.

    Example: luminar-db db stop
    """
    settings = _local_settings("stop", env)
    stopped = localdb.stop(_cluster(settings)) if backend in ("auto", "embedded") else False
    if backend != "embedded" and localdb.docker_answers() and localdb.compose_command() and _docker_running(settings):
        stopped = _compose(settings, "stop", _SERVICES[settings.env]).returncode == 0 or stopped
    click.echo("stopped" if stopped else "not running")


@db_group.command("status")
@_env_option
@click.option("-v", "--verbose", is_flag=True, help="Also list the tables, views and applied migrations.")
def status_command(env: str | None, verbose: bool) -> None:
    """Show whether the database runs and answers, its PostgreSQL and PostGIS versions and the migrations.

    Exits 2 when the database cannot be reached.

    Example: luminar-db db status --verbose
    """
    settings = load_settings(env)
    rows: list[tuple[str, str]] = [("environment", settings.env), ("database", settings.safe_dsn())]
    if settings.env in _LOCAL_ENVS:
        rows.append(("server", _server_line(settings)))
    try:
        info = localdb.server_info(settings.conninfo())
    except DatabaseUnavailableError as exc:
        rows.append(("reachable", "no"))
        _print(rows)
        raise DatabaseUnavailableError(str(exc)) from None
    rows += [("reachable", "yes"), ("PostgreSQL", info["postgresql"] or "?"),
             ("PostGIS", info["postgis"] or "not installed in this database: make db-reset")]
    migrations, applied = _migration_report(settings)
    rows.append(("migrations", migrations))
    _print(rows)
    if verbose:
        _print_objects(settings)
        click.echo("applied migrations:")
        for line in applied or ["(none)"]:
            click.echo(f"  {line}")


@db_group.command("reset")
@_env_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (needed when stdin is not a terminal).")
def reset_command(env: str | None, yes: bool) -> None:
    """Drop the database, create it again with PostGIS, and apply every migration. Destroys all its data.

    Only for LUMINAR_ENV=local or testing.

    Example: luminar-db db reset --yes
    """
    settings = _local_settings("reset", env)
    if not yes:
        if not sys.stdin.isatty():
            raise OperationError(f"db reset destroys every row of {settings.name}; stdin is not a terminal, so "
                                 "confirm with --yes (make db-reset FORCE=1)")
        click.confirm(f"Drop database {settings.name} on {settings.host}:{settings.port} and rebuild it?",
                      abort=True)
    localdb.reset(settings)
    from luminar_store.migrator import migrate_database

    applied = migrate_database(settings.conninfo(), _migrations_dir(), environment=settings.env, out=click.echo)
    click.echo(f"{len(applied)} migrations applied")
    click.echo(f"reset {settings.name} and applied the migrations: {settings.safe_dsn()}")


# -- status helpers ---------------------------------------------------------------------------------------------
def _server_line(settings: Settings) -> str:
    cluster = _cluster(settings)
    found = localdb.status(cluster)
    if found.running:
        return f"running (embedded cluster, pid {found.pid}, port {found.port}, data {found.home})"
    if localdb.docker_answers() and localdb.compose_command() and _docker_running(settings):
        return f"running (docker compose service {_SERVICES[settings.env]})"
    if found.initialized:
        return f"stopped (embedded cluster in {found.home}; start it: make db-start)"
    return "not created yet (make db-start creates it)"


def _migrations_dir() -> Path:
    from luminar_store.migrator import migrations_directory

    return migrations_directory()


def _migration_report(settings: Settings) -> tuple[str, list[str]]:
    from luminar_store.migrator import Migrator

    found = Migrator(settings.conninfo(), _migrations_dir(), environment=settings.env).status()
    applied = [s for s in found if s.state == "applied"]
    pending = [s for s in found if s.state == "pending"]
    attention = [s for s in found if s.state not in ("applied", "pending")]
    lines = [f"{s.label}  applied {s.record.applied_at:%Y-%m-%d %H:%M:%S %Z}" if s.record else s.label
             for s in applied]
    if attention:
        names = ", ".join(f"{s.label} {s.state}" for s in attention)
        return f"need attention: {names}; see make migrate-status", lines
    if pending:
        return f"{len(applied)} applied, {len(pending)} pending: make db-migrate", lines
    return f"current ({len(applied)} applied, none pending)", lines


# Tables, partitioned tables, views and materialized views of the public schema, without those an extension owns
# (PostGIS's spatial_ref_sys, geometry_columns, ...).
OBJECTS = """
SELECT c.relname, c.relkind IN ('r', 'p') AS is_table
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY c.relname
"""


def _print_objects(settings: Settings) -> None:
    import psycopg

    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        objects = conn.execute(OBJECTS).fetchall()
    tables = [name for name, is_table in objects if is_table]
    views = [name for name, is_table in objects if not is_table]
    click.echo(f"tables ({len(tables)}): {', '.join(tables) or '(none)'}")
    click.echo(f"views ({len(views)}): {', '.join(views) or '(none)'}")


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")
