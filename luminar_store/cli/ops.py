"""Operations commands: setup, reset, sample-data, backup, restore, status, stats, sync, clean.

Each takes ``--env`` (the settings environment; default ``LUMINAR_ENV``, else local). Commands that delete name
their target (database, host, port, environment) before they act, check every precondition first, and ask for
confirmation or take ``--yes``/``-y``. The work itself lives in ``luminar_store.ops``; this module only parses and
prints.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from luminar_store.cli.common import confirm, dir_option, env_option, print_rows, settings_for, yes_option
from luminar_store.config import ENVIRONMENTS, Settings, environment, load_settings
from luminar_store.errors import DatabaseUnavailableError, OperationError
from luminar_store.ops import compose, provision, retention
from luminar_store.ops import stats as metrics
from luminar_store.ops import sync as sync_ops
from luminar_store.ops.backup import backup_database, find_tool, read_archive
from luminar_store.ops.connect import connect
from luminar_store.ops.restore import restore_database
from luminar_store.ops.status import collect_status
from luminar_store.ops.synthetic import DEFAULT_DAYS, DEFAULT_REPORTS, load_sample_data

__all__ = [
    "COMMANDS", "setup_command", "sample_data_command", "backup_command", "restore_command", "reset_command",
    "status_command", "stats_command", "sync_command", "clean_command", "reset_target", "show_status",
]


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _holds_reports(settings: Settings) -> bool:
    with connect(settings) as conn:
        return bool(conn.execute("SELECT to_regclass('public.raw_incident_reports') IS NOT NULL").fetchone()[0]
                    and conn.execute("SELECT EXISTS (SELECT 1 FROM raw_incident_reports)").fetchone()[0])


def _load_sample(settings: Settings, *, reports: int, days: int, seed: int, workers: int | None) -> None:
    if not settings.rules.sample_data:
        allowed = " and ".join(e for e in ENVIRONMENTS if environment(e).sample_data)
        raise OperationError(f"sample data is only written to the {allowed} databases, not to "
                             f"LUMINAR_ENV={settings.env}; pass --env=testing or --env=local")
    # The bar goes to a terminal only: logs and pipes get the summary line alone.
    bar = click.progressbar(length=reports, label=f"Loading {reports:,} reports", file=sys.stderr, show_pos=True,
                            show_eta=True) if sys.stderr.isatty() else contextlib.nullcontext()
    with connect(settings) as conn, bar as shown:
        summary = load_sample_data(conn, reports=reports, days=days, seed=seed, workers=workers,
                                   progress=shown.update if shown is not None else None)
    click.echo(f"Loaded run {summary.run} of seed {summary.seed} into {settings.name}: {summary.reports:,} reports, "
               f"{summary.events:,} events, {summary.consensus_records:,} consensus records, {summary.clusters:,} "
               f"clusters, {summary.risk_zones:,} new risk zones, {summary.miners} miners, {summary.validators} "
               f"validators ({summary.seconds:.1f} s, {summary.reports_per_second:,.0f} reports/s).")


# -- setup, reset, sample data ---------------------------------------------------------------------------------
@click.command("setup")
@env_option
@click.option("--sample-data", "sample", is_flag=True,
              help="Also load sample data when the database holds no report yet (local and testing only).")
@click.option("--reports", type=click.IntRange(1), default=1000, show_default=True,
              help="Sample reports to load with --sample-data.")
@click.option("--admin-url", envvar="LUMINAR_DB_ADMIN_URL", show_envvar=True, default=None, metavar="URL",
              help="A superuser's connection: creates the configured role, the group roles (luminar-db roles) and "
                   "PostGIS when missing. Never printed.")
@dir_option
@click.option("--replica", is_flag=True,
              help="Then copy everything from the central database (sync --full; LUMINAR_SYNC_SOURCE_URL, else "
                   "LUMINAR_SYNC_SOURCE_ENV's connection, production by default): the full replica setup.")
def setup_command(env: str | None, sample: bool, reports: int, admin_url: str | None, directory: Path | None,
                  replica: bool) -> None:
    """Create the database if missing (with PostGIS), apply the migrations, optionally load sample data or copy
    the central database (--replica).

    Idempotent: on a database that is already set up it only reports that nothing was missing, and
    --sample-data loads nothing into a database that already holds reports; --replica a second time copies only
    what changed (see sync).

    \b
    Example: luminar-db setup --env=local --sample-data
    Example: python scripts/setup_database.py setup --env=local --replica
    """
    nodes = load_settings(env)
    settings = nodes.as_owner()
    if sample and not settings.rules.sample_data:
        raise OperationError(f"--sample-data is only for the local and testing databases, not {settings.env}")
    if sample and replica:
        raise click.UsageError("give --sample-data or --replica, not both")
    source = None
    if replica:
        source = sync_ops.resolve_source(os.environ.get(sync_ops.SOURCE_ENV_VARIABLE) or "production")
        sync_ops.check_target(source, settings)
    click.echo(f"Setting up {settings.target()}: {settings.safe_dsn()}")
    result = provision.setup_database(settings, admin_conninfo=admin_url, migrations_dir=directory, out=click.echo,
                                      nodes=nodes)
    made = [what for what, done in (("role " + settings.user, result.created_role),
                                    ("group roles " + ", ".join(result.created_groups), result.created_groups),
                                    ("database " + settings.name, result.created_database),
                                    ("PostGIS", result.created_postgis)) if done]
    click.echo(f"Created {', '.join(made)}." if made else "Database and PostGIS were already there.")
    click.echo(f"Migrations: {len(result.applied)} applied now." if result.applied else
               "Migrations: up to date.")
    if sample:
        if _holds_reports(settings):
            click.echo(f"{settings.name} already holds reports; no sample data loaded.")
        else:
            _load_sample(settings, reports=reports, days=DEFAULT_DAYS, seed=42, workers=None)
    if source is not None:
        _run_sync(source, settings, since=None, full=True, overwrite=False, batch_size=sync_ops.DEFAULT_BATCH_SIZE)


def reset_target(env: str | None, directory: Path | None, yes: bool, *, command: str) -> None:
    """The one reset (``reset`` and ``db reset``): check every precondition, name the target and what it holds,
    confirm, then drop and rebuild."""
    nodes = load_settings(env)
    settings = nodes.as_owner()
    plan = provision.plan_reset(settings, migrations_dir=directory, what=command,
                                admin_url=compose.local_admin_url(nodes), nodes=nodes)
    click.echo(f"Target: {plan.target} - {plan.describe_loss()}")
    confirm(f"Drop {plan.target} and rebuild it empty with {plan.migrations} migrations?", yes=yes,
            what=f"{command} destroys every row of {plan.target}")
    result = provision.carry_out_reset(plan, out=click.echo)
    click.echo(f"Reset {plan.target}: recreated with PostGIS, {len(result.applied)} migrations applied.")


@click.command("reset")
@env_option
@dir_option
@yes_option
def reset_command(env: str | None, directory: Path | None, yes: bool) -> None:
    """Drop the database, create it again with PostGIS and apply every migration. DESTROYS ALL ITS DATA.

    Only for LUMINAR_ENV=local, testing or testnet. The target (database, host, port, environment) is named
    before anything happens, and every precondition (migrations found, server reachable, rights to drop and
    create, PostGIS available) is checked before anything is dropped.

    Example: luminar-db reset --env=local --yes
    """
    reset_target(env, directory, yes, command="reset")


@click.command("sample-data")
@env_option
@click.option("--reports", type=click.IntRange(1, 100_000_000), default=DEFAULT_REPORTS, show_default=True,
              help="Raw incident reports to generate.")
@click.option("--days", type=click.IntRange(1, 3650), default=DEFAULT_DAYS, show_default=True,
              help="Spread the reports over this many days before now (13 weeks: a trend to test).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=42, show_default=True,
              help="Same seed, same data; a second run of a seed adds new rows (run 1, 2, ...).")
@click.option("--workers", type=click.IntRange(1, 16), default=None,
              help="Writer processes, each with its own session [default: 2 from 100,000 reports, else 1].")
@click.option("--if-empty", is_flag=True, help="Load only when the database holds no report yet (for demos).")
def sample_data_command(env: str | None, reports: int, days: int, seed: int, workers: int | None,
                        if_empty: bool) -> None:
    """Load realistic synthetic data: reports clustered in city hotspots, events, consensus, miners, validators.

    Batches commit one by one (Ctrl-C leaves only whole batches). Refused outside local and testing.

    \b
    Example: luminar-db sample-data --env=testing --reports 5000 --seed 7
    Example: python scripts/setup_database.py sample-data --env=testing
    """
    settings = settings_for(env)
    if if_empty and settings.rules.sample_data and _holds_reports(settings):
        click.echo(f"{settings.name} already holds reports; no sample data loaded (--if-empty).")
        return
    _load_sample(settings, reports=reports, days=days, seed=seed, workers=workers)


# -- backup and restore ----------------------------------------------------------------------------------------
@click.command("backup")
@env_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="File (or directory) to write [default: backups/luminar_<env>_<UTC stamp>.dump].")
def backup_command(env: str | None, output: Path | None) -> None:
    """Back up the database with pg_dump (custom format; pg_restore reads it too).

    \b
    Example: luminar-db backup --env=local
    Example: luminar-db backup --output /var/backups/luminar.dump
    """
    settings = settings_for(env)
    result = backup_database(settings, output)
    click.echo(f"Backup of {settings.target()} (PostgreSQL {result.server_version}) written to {result.path} "
               f"({_size(result.size_bytes)}, {result.seconds:.1f} s)")


@click.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@env_option
@click.option("--clean", is_flag=True, help="Drop the backup's objects in the database first (replaces its data).")
@click.option("--force", is_flag=True, help="Allow restoring into production (a confirmation is still asked).")
@yes_option
def restore_command(path: Path, env: str | None, clean: bool, force: bool, yes: bool) -> None:
    """Restore a backup made by `backup` (or any pg_dump custom archive), in one transaction.

    The target is named first; the archive is checked before the database is touched; a failure changes
    nothing and says why. Into a database that holds tables, pass --clean. Run it as the database's owner role
    (no superuser needed): the restored objects belong to that owner, grants are kept (their roles must exist),
    and PostGIS comes from provisioning, not from the backup.

    \b
    Example: luminar-db restore backups/luminar_local_20250817T120000Z.dump --env=local --clean --yes
    """
    nodes = load_settings(env)
    settings = nodes.as_owner()
    if settings.env == "production" and not force:
        raise OperationError(f"restoring into production is refused without --force; {settings.target()} is not "
                             "touched")
    entries = read_archive(path, tool=find_tool("pg_restore"))
    click.echo(f"Target: {settings.target()} - {len(entries)} archive entries from {path}")
    if settings.env == "production" or clean:
        confirm(f"Replace the contents of {settings.target()} with {path}?", yes=yes,
                what=f"restoring {'into production' if settings.env == 'production' else 'with --clean'} "
                     f"replaces the data of {settings.target()}")
    result = restore_database(settings, path, clean=clean, allow_production=force)
    provision.name_local_nodes(settings, nodes)  # a backup of another machine names other nodes
    made = " (database created)" if result.created_database else ""
    click.echo(f"Restored {len(entries)} archive entries from {path} into {settings.target()}{made}, owned by role "
               f"{result.owner}, in {result.seconds:.1f} s")


# -- status and statistics ---------------------------------------------------------------------------------------
def show_status(env: str | None, directory: Path | None, verbose: bool, as_json: bool = False) -> None:
    """The one status (``status`` and ``db status``): print the report (``as_json``: one JSON object, its rows by
    label, ``reachable`` and ``error``), then fail with exit 2 when the database cannot be reached."""
    report = collect_status(settings_for(env), migrations_dir=directory, verbose=verbose)
    if as_json:
        data: dict[str, object] = {"reachable": report.reachable, "error": None if report.error is None
                                   else str(report.error), "status": dict(report.rows)}
        if verbose and report.reachable:
            data.update(tables=report.tables, views=report.views, applied_migrations=report.applied)
        click.echo(json.dumps(data, indent=2))
        if report.error is not None:
            raise report.error
        return
    print_rows(report.rows)
    if report.error is not None:
        raise report.error
    if verbose:
        click.echo(f"tables ({len(report.tables)}): {', '.join(report.tables) or '(none)'}")
        click.echo(f"views ({len(report.views)}): {', '.join(report.views) or '(none)'}")
        click.echo("applied migrations:")
        for line in report.applied or ["(none)"]:
            click.echo(f"  {line}")


@click.command("status")
@env_option
@dir_option
@click.option("-v", "--verbose", is_flag=True, help="Also list the tables, views and applied migrations.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (rows by label, reachable, error).")
def status_command(env: str | None, directory: Path | None, verbose: bool, as_json: bool = False) -> None:
    """Show the target, whether the server answers (and, for a database on this machine, where it runs), its
    PostgreSQL and PostGIS versions, migrations applied and pending, and the pool settings in force (password
    hidden). Exits 2 when the database cannot be reached. Same as `luminar-db db status`.

    Example: luminar-db status --env=local --verbose
    """
    show_status(env, directory, verbose, as_json)


@click.command("stats")
@env_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.option("--hours", type=click.IntRange(1, 24 * 365), default=24, show_default=True,
              help="Window of the throughput figures.")
@click.option("--days", type=click.IntRange(1, 3650), default=7, show_default=True,
              help="Window of the consensus agreement and of the hotspots.")
@click.option("--recent", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also list the newest N events.")
@click.option("--hotspots", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also list the N busiest hotspots.")
@click.option("--watch", "watch", type=click.FloatRange(1), default=None, is_flag=False, flag_value=5.0,
              metavar="[SECONDS]", help="Refresh in place every SECONDS (5 when none given) until Ctrl-C.")
def stats_command(env: str | None, as_json: bool, hours: int, days: int, recent: int, hotspots: int,
                  watch: float | None = None) -> None:
    """Key metrics: reports and events, throughput (reports/hour), consensus accuracy (validator agreement %),
    geographic coverage (events by region), miner success rates, active nodes.

    \b
    Example: luminar-db stats --env=local --recent 5 --hotspots 5
    Example: luminar-db stats --json | jq .consensus_agreement_pct
    Example: luminar-db stats --watch 10
    """
    settings = settings_for(env)
    if watch is not None:
        _watch_stats(settings, watch, as_json=as_json, hours=hours, days=days, recent=recent, hotspots=hotspots)
        return
    _show_stats(settings, as_json=as_json, hours=hours, days=days, recent=recent, hotspots=hotspots)


def _watch_stats(settings: Settings, every: float, **how) -> None:
    """``_show_stats`` every ``every`` seconds, each time over the last (the screen cleared on a terminal; a
    JSON object a line otherwise, for a pipe) until Ctrl-C. A failed reading is shown and retried, not fatal."""
    terminal = sys.stdout.isatty()
    try:
        while True:
            if terminal:
                click.echo("\x1b[H\x1b[2J", nl=False)  # home, clear: the figures refresh in place
            try:
                _show_stats(settings, **how, compact=not terminal)
            except (OperationError, DatabaseUnavailableError) as exc:
                click.echo(f"error: {exc}", err=True)
            if terminal:
                click.echo(f"\nevery {every:g} s, {datetime.now(UTC):%H:%M:%S} UTC; Ctrl-C stops")
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo("")


def _show_stats(settings: Settings, *, as_json: bool, hours: int, days: int, recent: int, hotspots: int,
                compact: bool = False) -> None:
    with connect(settings) as conn:
        if conn.execute("SELECT to_regclass('public.raw_incident_reports') IS NULL").fetchone()[0]:
            raise OperationError(f"database {settings.name} has no Luminar schema; run: luminar-db migrate")
        metrics.require_stats_functions(conn, settings.name)
        result = metrics.collect_stats(conn, hours=hours, days=days)
        events = metrics.recent_events(conn, recent) if recent else []
        spots = metrics.top_hotspots(conn, hotspots, days) if hotspots else []
    if as_json:
        data = result.as_dict()
        if recent:
            data["recent_events"] = [dict(zip(("timestamp", "event_type", "severity_level", "verification_status",
                                                "city", "title"), (e[0].isoformat(), *e[1:]), strict=True))
                                     for e in events]
        if hotspots:
            data["hotspots"] = [dict(zip(("latitude", "longitude", "incident_count", "avg_severity", "crime_types",
                                          "last_seen"), (h[0], h[1], h[2], float(h[3]), h[4], h[5].isoformat()),
                                         strict=True)) for h in spots]
        click.echo(json.dumps(data, indent=None if compact else 2))
        return
    click.echo(metrics.format_stats(result))
    if recent:
        click.echo(metrics.format_recent_events(events))
    if hotspots:
        click.echo(metrics.format_hotspots(spots, days))


# -- sync and clean ------------------------------------------------------------------------------------------------
@click.command("sync")
@env_option
@click.option("--hours", type=click.IntRange(1, 24 * 3650), default=None,
              help="Copy what central wrote in the last N hours, plus everything since the last sync "
                   "[default: 24 when neither --since nor --full is given].")
@click.option("--since", "since", type=click.DateTime(formats=["%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%z",
                                                                "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              default=None, help="Copy what central wrote from this time (e.g. 2026-11-01T00:00Z; no zone: UTC).")
@click.option("--full", is_flag=True, help="Copy every row (a full replica), and every delete the audit trail holds.")
@click.option("--source-env", type=click.Choice(ENVIRONMENTS), default="production", show_default=True,
              envvar=sync_ops.SOURCE_ENV_VARIABLE, show_envvar=True,
              help="The environment of central: its connection is the default source and its TLS minimum binds "
                   f"{sync_ops.SOURCE_URL_VARIABLE}.")
@click.option("--overwrite", is_flag=True,
              help="Replace local rows that hold a key central has under another id (refused by default).")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=sync_ops.DEFAULT_BATCH_SIZE,
              show_default=True, help="Rows a batch (one local transaction); memory stays about one batch.")
def sync_command(env: str | None, hours: int | None, since: datetime | None, full: bool, source_env: str,
                 overwrite: bool, batch_size: int) -> None:
    """Copy from the central database into this one what was written in a window, with central's deletes.

    The source is LUMINAR_SYNC_SOURCE_URL (a read-only login, a member of luminar_sync; it must meet the TLS
    minimum of --source-env), else the --source-env connection itself. The target must be a local, testing or
    testnet database. Idempotent (a second run changes nothing) and resumable (an interrupted run continues from
    each table's watermark). Local rows that hold a key of central's under another id are refused unless
    --overwrite. See luminar_store.ops.sync.

    \b
    Example: luminar-db sync --hours=24
    Example: LUMINAR_SYNC_SOURCE_URL=postgresql://sync_reader@central-db.luminar.network/luminar_production \\
             luminar-db sync --since 2026-11-01T00:00Z
    Example: luminar-db sync --full   (the full replica; or: luminar-db setup --env=local --replica)
    """
    if sum(x is not None and x is not False for x in (hours, since, full or None)) > 1:
        raise click.UsageError("give one of --hours, --since and --full")
    settings = settings_for(env)
    source = sync_ops.resolve_source(source_env)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if not full and since is None:
        since = datetime.now(UTC) - timedelta(hours=hours or 24)
    _run_sync(source, settings, since=since, full=full, overwrite=overwrite, batch_size=batch_size)


def _run_sync(source: Settings, settings: Settings, *, since: datetime | None, full: bool, overwrite: bool,
              batch_size: int) -> None:
    """Name the source and target, run one sync with a progress line on a terminal, print what it did."""
    what = "everything" if full else f"what changed since {since:%Y-%m-%d %H:%M} UTC and since the last sync"
    click.echo(f"Sync from {source.safe_dsn()} into {settings.target()}: {what}")
    started = time.monotonic()
    seen = 0

    def show(table: str, n: int) -> None:
        nonlocal seen
        seen += n
        rate = seen / max(time.monotonic() - started, 1e-6)
        click.echo(f"\r  {table}: {seen:,} rows read ({rate:,.0f} rows/s)   ", err=True, nl=False)

    result = sync_ops.sync(source, settings, since=since, full=full, overwrite=overwrite, batch_size=batch_size,
                           progress=show if sys.stderr.isatty() else None)
    if seen:
        click.echo("", err=True)
    for table, c in result.counts.items():
        if c.read or c.changed:
            click.echo(f"  {table}: {c.read:,} read, {c.inserted:,} inserted, {c.updated:,} updated, "
                       f"{c.deleted:,} deleted")
    click.echo(f"Synced {result.rows_changed:,} changed rows ({result.rows_read:,} read) from {result.source} into "
               f"{settings.target()} in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s); run "
               f"{result.run_id}.")


@click.command("clean")
@env_option
@click.option("--days", type=click.IntRange(1), default=None,
              help="Keep this many days [default: LUMINAR_RETENTION_DAYS, else 365].")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Rows deleted per transaction.")
@yes_option
def clean_command(env: str | None, days: int | None, batch_size: int, yes: bool) -> None:
    """Delete data older than the retention period, in batches, after confirmation. Never drops anything.

    Old consensus records, events, reports no event still names, clusters, expired risk zones and audit entries
    (through the owner's luminar_age_out_audit: the trail is append-only) go; miners, validators and migrations
    stay. It then says what it cannot reach: backups already taken (backups/) and local copies or replicas.

    \b
    Example: luminar-db clean --days 90
    Example: LUMINAR_RETENTION_DAYS=30 luminar-db clean --yes
    """
    settings = settings_for(env)
    days = days or settings.retention_days
    with connect(settings) as conn:
        plan = retention.count_old_rows(conn, days=days)
        total = sum(plan.values())
        cutoff = retention.cutoff_for(days)
        when = f"older than {days} days (before {cutoff:%Y-%m-%d %H:%M} UTC)"
        beyond = retention.unreachable(days=days)
        if not total:
            click.echo(f"Nothing {when} in {settings.target()}.")
            _say_unreachable(beyond)
            return
        click.echo(f"Target: {settings.target()} - rows {when}:")
        for table, count in plan.items():
            if count:
                click.echo(f"  {table}: {count:,} rows")
        confirm(f"Delete these {total:,} rows from {settings.target()}?", yes=yes,
                what=f"clean deletes {total:,} rows of {settings.target()}")
        report = (lambda table, n: click.echo(f"  deleted {n:,} from {table}", err=True)) \
            if sys.stderr.isatty() else None
        deleted = retention.delete_old_rows(conn, days=days, batch_size=batch_size, progress=report)
    click.echo(f"Deleted {sum(deleted.values()):,} rows from {settings.target()}: " +
               ", ".join(f"{table} {n:,}" for table, n in deleted.items() if n) + ".")
    _say_unreachable(beyond)


def _say_unreachable(beyond: retention.Unreachable) -> None:
    click.echo("Not reached by clean:")
    for line in beyond.lines():
        click.echo(f"  {line}")


COMMANDS = (setup_command, reset_command, sample_data_command, backup_command, restore_command, status_command,
            stats_command, sync_command, clean_command)
