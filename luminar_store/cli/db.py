"""``luminar-db db start|stop|status|reset|logs``: the local development database in one command.

The database runs in Docker Compose (service ``luminar-db``; ``luminar-test-db`` for ``LUMINAR_ENV=testing``) when
a Docker engine answers, otherwise as the embedded cluster of ``luminar_store.ops.cluster`` kept under
``.luminar/<env>`` in the project directory (an embedded cluster that already exists keeps being used).
``LUMINAR_DB_BACKEND`` (or ``--backend``) forces either. Both answer the same connection string, from the settings.
``db status`` and ``db reset`` are the very ``status`` and ``reset`` commands.
"""

from __future__ import annotations

import subprocess
from collections import deque
from pathlib import Path

import click

from luminar_store.cli.common import dir_option, env_option, yes_option
from luminar_store.cli.ops import reset_target, show_status
from luminar_store.config import ENVIRONMENTS, Settings, environment, load_settings
from luminar_store.errors import OperationError
from luminar_store.ops import cluster, compose, provision
from luminar_store.ops.connect import connect, server_info

__all__ = ["db_group"]


def _local_settings(action: str, env: str | None) -> Settings:
    """The nodes' settings (with their owner) of an environment run on this machine."""
    settings = load_settings(env)
    if not settings.rules.runs_here:
        here = ", ".join(e for e in ENVIRONMENTS if environment(e).runs_here)
        raise OperationError(f"db {action} runs a database on this machine, for LUMINAR_ENV={here}; "
                             f"LUMINAR_ENV={settings.env} points at a server run elsewhere")
    return settings


def _wait_reachable(settings: Settings, admin_url: str, timeout: float) -> None:
    """Wait until the server answers its superuser (a container starting)."""
    with connect(settings, dbname="postgres", admin_url=admin_url, retry_for=timeout):
        pass


def _backend(choice: str, settings: Settings) -> str:
    """``docker`` or ``embedded``. Auto keeps an embedded cluster that already exists (its data stays in use),
    else takes Docker when an engine answers, Compose is there and the environment has a service."""
    if choice != "auto":
        if choice == "docker" and not compose.docker_answers():
            raise OperationError("no Docker engine answers (docker info failed); start Docker or set "
                                 "LUMINAR_DB_BACKEND=embedded")
        return choice
    if cluster.status(cluster.cluster_for(settings)).initialized:
        return "embedded"
    docker = settings.env in compose.SERVICES and compose.docker_answers() and compose.compose_command()
    return "docker" if docker else "embedded"


_backend_option = click.option(
    "--backend", type=click.Choice(["auto", "docker", "embedded"]), default="auto", envvar="LUMINAR_DB_BACKEND",
    show_default=True, help="Docker Compose, the embedded cluster, or auto (an existing embedded cluster, else "
                            "Docker when an engine answers, else a new embedded cluster).")


@click.group("db")
def db_group() -> None:
    """Run the local development database (Docker Compose, or an embedded cluster under .luminar/).

    Settings: LUMINAR_ENV (local, testing or testnet), LUMINAR_DB_HOST/PORT/USER/PASSWORD/NAME, LUMINAR_DB_BACKEND.

    Example: luminar-db db start && luminar-db db status
    """


@db_group.command("start")
@env_option
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
        service = compose.service(settings)
        if compose.running(settings):
            click.echo(f"already running (docker compose service {service}): {settings.safe_dsn()}")
            return
        if compose.compose(settings, "up", "-d", service).returncode != 0:
            raise OperationError(f"docker compose could not start {service}; see the lines above")
        admin_url = compose.admin_conninfo(settings)
        _wait_reachable(settings, admin_url, timeout)
        provision.provision_local(settings, admin_url)
        info = server_info(settings.as_owner())
        click.echo(f"started (docker compose, PostgreSQL {info['postgresql']}): {settings.safe_dsn()}")
        return
    local = cluster.cluster_for(settings)
    result = cluster.start(local, timeout=timeout)
    provisioned = provision.provision_local(settings, local.admin_conninfo())
    if provisioned.nodes_superuser:
        click.echo(f"note: this cluster was made before the role split: the nodes' login {settings.user} is its "
                   f"superuser. To split it: make db-backup, stop it, move {local.home} away, make db-start, "
                   "then make db-restore FILE=...", err=True)
    if result == "already running":
        click.echo(f"already running (embedded cluster in {local.home}): {settings.safe_dsn()}")
        return
    info = server_info(settings.as_owner())
    click.echo(f"started (embedded PostgreSQL {info['postgresql']}, PostGIS {info['postgis']}, data in "
               f"{local.home}): {settings.safe_dsn()}")


@db_group.command("stop")
@env_option
@_backend_option
def stop_command(env: str | None, backend: str) -> None:
    """Stop the local database; its data stays.

    Example: luminar-db db stop
    """
    settings = _local_settings("stop", env)
    stopped = cluster.stop(cluster.cluster_for(settings)) if backend in ("auto", "embedded") else False
    if backend != "embedded" and compose.running(settings):
        stopped = compose.compose(settings, "stop", compose.service(settings)).returncode == 0 or stopped
    click.echo("stopped" if stopped else "not running")


@db_group.command("status")
@env_option
@dir_option
@click.option("-v", "--verbose", is_flag=True, help="Also list the tables, views and applied migrations.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rows by label, reachable, error).")
def status_command(env: str | None, directory: Path | None, verbose: bool, as_json: bool = False) -> None:
    """Show whether the database runs and answers, its PostgreSQL and PostGIS versions and the migrations
    (the same report as `luminar-db status`). Exits 2 when the database cannot be reached.

    Example: luminar-db db status --verbose
    Example: luminar-db db status --json | jq .reachable
    """
    show_status(env, directory, verbose, as_json)


@db_group.command("reset")
@env_option
@dir_option
@yes_option
def reset_command(env: str | None, directory: Path | None, yes: bool) -> None:
    """Drop the database, create it again with PostGIS, and apply every migration. Destroys all its data.

    The same command as `luminar-db reset`: only for LUMINAR_ENV=local, testing or testnet; the target is named
    and every precondition checked before anything is dropped.

    Example: luminar-db db reset --yes
    """
    reset_target(env, directory, yes, command="db reset")


@db_group.command("logs")
@env_option
@_backend_option
@click.option("-n", "--lines", type=click.IntRange(1), default=100, show_default=True,
              help="How many of the last lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep showing new lines until Ctrl-C.")
def logs_command(env: str | None, backend: str, lines: int, follow: bool) -> None:
    """Show the local database server's log: the embedded cluster's postgresql.log (under .luminar/<env>), or
    `docker compose logs` of its service when Compose runs it.

    Example: luminar-db db logs --follow
    """
    settings = _local_settings("logs", env)
    if _backend(backend, settings) == "docker":
        args = ["logs", "--tail", str(lines), *(["--follow"] if follow else []), compose.service(settings)]
        if compose.compose(settings, *args).returncode != 0:
            raise OperationError(f"docker compose could not show the logs of {compose.service(settings)}")
        return
    log = cluster.cluster_for(settings).log_file
    if not log.is_file():
        raise OperationError(f"no server log at {log}: the embedded cluster of LUMINAR_ENV={settings.env} has not "
                             "been started here (make db-start)")
    if follow:
        try:
            subprocess.run(["tail", "-n", str(lines), "-F", str(log)], check=False)
        except KeyboardInterrupt:
            pass
        return
    with log.open(encoding="utf-8", errors="replace") as f:
        for line in deque(f, maxlen=lines):
            click.echo(line, nl=False)
