"""``luminar-db metrics`` (Prometheus' endpoint) and ``luminar-db health`` (one fast yes or no for a health check).

``metrics`` reads as the monitor role (``luminar_store.ops.metrics``): with ``--url`` (``LUMINAR_METRICS_DB_URL``)
a monitor login's connection string, else the environment's settings, whose login must be a member of
``luminar_monitor``.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import click

from luminar_store.cli.common import dir_option, env_option
from luminar_store.config import Settings, load_settings
from luminar_store.config.settings import _from_database_url
from luminar_store.errors import OperationError
from luminar_store.ops import health as health_ops
from luminar_store.ops.backup import DEFAULT_BACKUP_DIR

__all__ = ["metrics_command", "health_command", "DEFAULT_METRICS_PORT", "monitor_settings"]

#: The port ``luminar-db metrics`` listens on (``LUMINAR_METRICS_PORT``).
DEFAULT_METRICS_PORT = 9471


#: The monitoring profile's login (init-scripts/30_luminar_roles.sh makes it, in luminar_monitor).
METRICS_LOGIN = "luminar_metrics"


def monitor_settings(env: str | None, url: str | None) -> Settings:
    """The environment's settings, connected with ``url``'s login when given, else as ``luminar_metrics`` when
    ``LUMINAR_METRICS_DB_PASSWORD`` is set (the compose monitoring profile), else with the environment's login."""
    settings = load_settings(env)
    if not url:
        password = os.environ.get("LUMINAR_METRICS_DB_PASSWORD")
        if password:
            return replace(settings, user=METRICS_LOGIN, password=password, owner=None, owner_password="")
        return settings
    given = _from_database_url(url, what="--url (LUMINAR_METRICS_DB_URL)")
    if "port" in given:
        given["port"] = int(str(given["port"]))
    return replace(settings, owner=None, owner_password="", **given)  # type: ignore[arg-type]


@click.command("metrics")
@env_option
@click.option("--url", envvar="LUMINAR_METRICS_DB_URL", show_envvar=True, default=None, metavar="URL",
              help="Connection string of a login in the luminar_monitor group [default: luminar_metrics when "
                   "LUMINAR_METRICS_DB_PASSWORD is set, else the environment's login].")
@click.option("--host", envvar="LUMINAR_METRICS_HOST", show_envvar=True, default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: reachable from containers, e.g. the compose Prometheus).")
@click.option("--port", envvar="LUMINAR_METRICS_PORT", show_envvar=True, type=click.IntRange(0, 65535),
              default=DEFAULT_METRICS_PORT, show_default=True, help="Port to listen on.")
@click.option("--refresh-every", type=click.FloatRange(0), default=30.0, show_default=True,
              help="Seconds the values are served before a scrape reads them again.")
@click.option("--statement-timeout", type=click.FloatRange(0.1, 300), default=5.0, show_default=True,
              help="Seconds one query may run; past it the last values are served.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_BACKUP_DIR,
              show_default=True, help="Where `luminar-db backup` writes (the age of the newest backup).")
@dir_option
@click.option("--once", is_flag=True, help="Print the metrics once (Prometheus' text format) and exit.")
def metrics_command(env: str | None, url: str | None, host: str, port: int, refresh_every: float,
                    statement_timeout: float, backup_dir: Path, directory: Path | None, once: bool) -> None:
    """Serve the network's metrics for Prometheus on http://HOST:PORT/metrics: throughput, consensus accuracy,
    coverage by region, miners' success rates, nodes, replicas and their lag, database and table sizes, pending
    migrations, and the age of the last backup and sync. Reads as the monitor role, at most every --refresh-every
    seconds. Needs the extra: pip install 'luminar_store[metrics]'.

    \b
    Example: luminar-db metrics --env=local --port 9471
    Example: luminar-db metrics --once | grep luminar_consensus
    """
    from luminar_store.ops.metrics import NetworkCollector, require_client

    require_client()
    from prometheus_client import CollectorRegistry, generate_latest, start_http_server

    settings = monitor_settings(env, url)
    collector = NetworkCollector(settings, refresh_every=refresh_every, statement_timeout=statement_timeout,
                                 migrations_dir=directory, backup_dir=backup_dir)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if once:
        collector.refresh()  # the whole read, however long: nobody is waiting on a scrape
        text = generate_latest(registry).decode()
        if collector.last_error is not None:
            raise OperationError(f"the metrics could not be read: {collector.last_error}")
        click.echo(text, nl=False)
        return
    collector.refresh()  # a failure is logged (a warning line) and served as luminar_metrics_up 0
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise OperationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    click.echo(f"serving metrics on http://{host}:{server.server_port}/metrics (as {settings.user}, "
               f"database {settings.name}); Ctrl-C stops", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


@click.command("health")
@env_option
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=3.0, show_default=True,
              help="Seconds to wait for the server (connect and each query).")
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (healthy, reason, checks).")
def health_command(env: str | None, timeout: float, directory: Path | None, as_json: bool) -> None:
    """Is the database healthy? Exit 0 when the server answers, the schema is there and no migration is pending;
    else exit 1 (unhealthy: the reason on stderr) or 2 (cannot reach the server). Fast: one connection, three
    small queries, each bounded by --timeout. For container and load-balancer health checks.

    \b
    Example: luminar-db health && echo healthy
    Example: luminar-db health --json
    """
    settings = load_settings(env)
    result = health_ops.check_health(settings, timeout=timeout, migrations_dir=directory)
    if as_json:
        import json

        click.echo(json.dumps(result.as_dict()))
    elif result.healthy:
        click.echo("healthy")
    if not result.healthy:
        if not as_json:
            click.echo(f"unhealthy: {result.reason}", err=True)
        raise SystemExit(2 if result.unreachable else 1)

