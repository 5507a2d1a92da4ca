"""``luminar-db realtime``: a local copy kept current by PostgreSQL's logical replication (``ops.realtime``).

The central connection comes from ``--source`` / ``LUMINAR_SYNC_SOURCE_URL`` (a replicator's login: ``luminar-db roles
add-replicator`` on central); the local superuser's from ``--admin-url`` / ``LUMINAR_DB_ADMIN_URL``, else this
machine's local cluster. Neither is ever printed.
"""

from __future__ import annotations

import time

import click

from luminar_store.cli.common import env_option
from luminar_store.config import load_settings
from luminar_store.errors import OperationError
from luminar_store.ops import compose, realtime

__all__ = ["realtime_group"]

source_option = click.option("--source", envvar="LUMINAR_SYNC_SOURCE_URL", show_envvar=True, required=True,
                              metavar="URL", help="Central's connection, as its replicator login. Never printed.")
admin_option = click.option("--admin-url", envvar="LUMINAR_DB_ADMIN_URL", show_envvar=True, default=None,
                            metavar="URL", help="The local server's superuser [default: this machine's local "
                                                "cluster's own]. Never printed.")


def _local(env: str | None, admin_url: str | None):
    nodes = load_settings(env)
    admin = admin_url or compose.local_admin_url(nodes)
    if admin is None:
        raise OperationError("a subscription is made by the local server's superuser: pass --admin-url (no local "
                             "cluster of this machine serves this environment)")
    return nodes.as_owner(), admin


def _describe(state: realtime.Replication) -> str:
    lag = "?" if state.lag_bytes is None else f"{state.lag_bytes:,} bytes behind"
    seen = state.last_message.strftime("%Y-%m-%d %H:%M:%S UTC") if state.last_message else "never"
    return (f"{state.state}: {state.tables_ready}/{state.tables} tables copied, {lag}, central last heard "
            f"{seen}")


@click.group("realtime")
def realtime_group() -> None:
    """Keep a local copy current in real time by logical replication from central.

    Central needs wal_level = logical and a replicator login (luminar-db roles add-replicator); the local database
    must be at the same migration (migrate it first, then central, on every schema change) with its copied tables
    empty. Inserts, updates and deletes on central then appear locally as central commits them. Where that cannot
    be set up, `luminar-db sync --hours N` pulls instead.

    \b
    Example: LUMINAR_SYNC_SOURCE_URL=postgresql://central_copy@central-db/luminar_production luminar-db realtime follow
    """


@realtime_group.command("start")
@source_option
@admin_option
@env_option
def start_command(source: str, admin_url: str | None, env: str | None) -> None:
    """Subscribe (the initial copy, then every change), or restart a stopped subscription.

    \b
    Example: luminar-db realtime start --source postgresql://central_copy@central-db/luminar_production
    """
    local, admin = _local(env, admin_url)
    click.echo(f"Target: {local.target()}")
    if realtime.set_enabled(local, True, admin_url=admin):
        click.echo("Restarted: it goes on from where it stopped.")
        return
    realtime.subscribe(local, source, admin_url=admin)
    click.echo("Subscribed: copying central's tables, then following its changes (luminar-db realtime status).")


@realtime_group.command("stop")
@admin_option
@env_option
def stop_command(admin_url: str | None, env: str | None) -> None:
    """Stop following central; what was copied stays, and `start` goes on from there.

    \b
    Example: luminar-db realtime stop
    """
    local, admin = _local(env, admin_url)
    click.echo(f"Target: {local.target()}")
    click.echo("Stopped." if realtime.set_enabled(local, False, admin_url=admin) else "There is no subscription.")


@realtime_group.command("drop")
@admin_option
@env_option
def drop_command(admin_url: str | None, env: str | None) -> None:
    """Drop the subscription and central's replication slot; the copied rows stay.

    \b
    Example: luminar-db realtime drop
    """
    local, admin = _local(env, admin_url)
    click.echo(f"Target: {local.target()}")
    click.echo("Dropped." if realtime.unsubscribe(local, admin_url=admin) else "There is no subscription.")


@realtime_group.command("status")
@click.option("--source", envvar="LUMINAR_SYNC_SOURCE_URL", default=None, metavar="URL",
              help="Central's connection, to measure the lag in bytes. Never printed.")
@env_option
def status_command(source: str | None, env: str | None) -> None:
    """The subscription's state, tables copied, bytes behind central, when central was last heard.

    \b
    Example: luminar-db realtime status
    """
    local = load_settings(env).as_owner()
    click.echo(_describe(realtime.realtime_status(local, source)))


@realtime_group.command("follow")
@source_option
@admin_option
@click.option("--every", type=click.FloatRange(0.5), default=5.0, show_default=True, help="Seconds between lines.")
@env_option
def follow_command(source: str, admin_url: str | None, every: float, env: str | None) -> None:
    """Start following central (subscribing when needed) and print its state until Ctrl-C; the subscription keeps
    running after (luminar-db realtime stop ends it).

    \b
    Example: luminar-db realtime follow --every 10
    """
    local, admin = _local(env, admin_url)
    click.echo(f"Target: {local.target()}")
    if not realtime.set_enabled(local, True, admin_url=admin):
        realtime.subscribe(local, source, admin_url=admin)
    try:
        while True:
            click.echo(_describe(realtime.realtime_status(local, source)))
            time.sleep(every)  # the interval between status lines a person asked for
    except KeyboardInterrupt:
        click.echo("Left following; the subscription keeps running (luminar-db realtime stop).")
