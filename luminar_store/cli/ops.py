"""Operations commands: setup, sample-data, backup, restore, reset, status, stats, sync, clean.

Each takes ``--env`` (the settings environment; default ``LUMINAR_ENV``, else local). Destructive commands ask
for confirmation, or take ``--yes``; when stdin is not a terminal they refuse instead of waiting. The work itself
lives in ``admin``, ``backup``, ``synthetic``, ``stats`` and ``retention``; this module only parses and prints.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import click

from luminar_store.cli import cli
from luminar_store.config import ENVIRONMENTS, Settings, load_settings
from luminar_store.errors import DatabaseUnavailableError, OperationError

__all__ = [
    "setup_command", "sample_data_command", "backup_command", "restore_command", "reset_command",
    "status_command", "stats_command", "sync_command", "clean_command",
]

_SAMPLE_ENVS = ("local", "testing")

env_option = click.option("--env", type=click.Choice(ENVIRONMENTS), default=None,
                          help="Settings environment [default: LUMINAR_ENV, else local].")
dir_option = click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                          envvar="LUMINAR_MIGRATIONS_DIR", show_envvar=True,
                          help="Migrations directory [default: the package's migrations/].")
yes_option = click.option("--yes", "-y", is_flag=True,
                          help="Do not ask for confirmation (needed when stdin is not a terminal).")


def _settings(env: str | None) -> Settings:
    return load_settings(env)


def _confirm(question: str, *, yes: bool, what: str) -> None:
    """Ask ``question`` on a terminal; without one, refuse unless ``--yes`` was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise OperationError(f"{what}; stdin is not a terminal, so confirm with --yes (with make: FORCE=1)")
    click.confirm(question, abort=True)


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def _load_sample(settings: Settings, *, reports: int, days: int, seed: int, workers: int | None) -> None:
    from luminar_store import admin
    from luminar_store.synthetic import load_sample_data

    if settings.env not in _SAMPLE_ENVS:
        raise OperationError(f"sample data is only written to the local and testing databases, not to "
                             f"LUMINAR_ENV={settings.env}; pass --env=testing or --env=local")
    # The bar goes to a terminal only: logs and pipes get the summary line alone.
    bar = click.progressbar(length=reports, label=f"Loading {reports:,} reports", file=sys.stderr, show_pos=True,
                            show_eta=True) if sys.stderr.isatty() else contextlib.nullcontext()
    with admin.connect(settings) as conn, bar as shown:
        summary = load_sample_data(conn, reports=reports, days=days, seed=seed, workers=workers,
                                   progress=shown.update if shown is not None else None)
    click.echo(f"Loaded run {summary.run} of seed {summary.seed} into {settings.name}: {summary.reports:,} reports, "
               f"{summary.events:,} events, {summary.consensus_records:,} consensus records, {summary.clusters:,} "
               f"clusters, {summary.risk_zones:,} new risk zones, {summary.miners} miners, {summary.validators} "
               f"validators ({summary.seconds:.1f} s, {summary.reports_per_second:,.0f} reports/s).")


# -- setup, reset, sample data ---------------------------------------------------------------------------------
@cli.command("setup")
@env_option
@click.option("--sample-data", "sample", is_flag=True, help="Also load sample data (local and testing only).")
@click.option("--reports", type=click.IntRange(1), default=1000, show_default=True,
              help="Sample reports to load with --sample-data.")
@click.option("--admin-url", envvar="LUMINAR_DB_ADMIN_URL", show_envvar=True, default=None, metavar="URL",
              help="A superuser's connection: creates the configured role when missing, and PostGIS. Never printed.")
@dir_option
def setup_command(env: str | None, sample: bool, reports: int, admin_url: str | None, directory: Path | None) -> None:
    """Create the database if missing (with PostGIS), apply the migrations, optionally load sample data.

    Idempotent: on a database that is already set up it only reports that nothing was missing.

    \b
    Example: luminar-db setup --env=local --sample-data
    Example: python scripts/setup_database.py setup --env=local
    """
    from luminar_store import admin

    settings = _settings(env)
    if sample and settings.env not in _SAMPLE_ENVS:
        raise OperationError(f"--sample-data is only for the local and testing databases, not {settings.env}")
    click.echo(f"Setting up {settings.safe_dsn()}")
    result = admin.setup_database(settings, admin_conninfo=admin_url, migrations_dir=directory, out=click.echo)
    made = [what for what, done in (("role " + settings.user, result.created_role),
                                    ("database " + settings.name, result.created_database),
                                    ("PostGIS", result.created_postgis)) if done]
    click.echo(f"Created {', '.join(made)}." if made else "Database and PostGIS were already there.")
    click.echo(f"Migrations: {len(result.applied)} applied now." if result.applied else
               "Migrations: up to date.")
    if sample:
        _load_sample(settings, reports=reports, days=7, seed=42, workers=None)


@cli.command("reset")
@env_option
@dir_option
@yes_option
def reset_command(env: str | None, directory: Path | None, yes: bool) -> None:
    """Drop the database, create it again with PostGIS and apply every migration. DESTROYS ALL ITS DATA.

    Refused for production.

    Example: luminar-db reset --env=local --yes
    """
    from luminar_store import admin

    settings = _settings(env)
    if settings.env == "production":
        raise OperationError("reset destroys every row and is refused for LUMINAR_ENV=production")
    _confirm(f"Drop database {settings.name} on {settings.host}:{settings.port} and rebuild it empty?", yes=yes,
             what=f"reset destroys every row of {settings.name}")
    result = admin.reset_database(settings, migrations_dir=directory, out=click.echo)
    click.echo(f"Reset {settings.name}: recreated with PostGIS, {len(result.applied)} migrations applied.")


@cli.command("sample-data")
@env_option
@click.option("--reports", type=click.IntRange(1, 100_000_000), default=1000, show_default=True,
              help="Raw incident reports to generate.")
@click.option("--days", type=click.IntRange(1, 3650), default=7, show_default=True,
              help="Spread the reports over this many days before now.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=42, show_default=True,
              help="Same seed, same data; a second run of a seed adds new rows (run 1, 2, ...).")
@click.option("--workers", type=click.IntRange(1, 16), default=None,
              help="Writer processes, each with its own session [default: 2 from 100,000 reports, else 1].")
@click.option("--if-empty", is_flag=True, help="Load only when the database holds no report yet (for demos).")
def sample_data_command(env: str | None, reports: int, days: int, seed: int, workers: int | None,
                        if_empty: bool) -> None:
    """Load realistic synthetic data: reports clustered in city hotspots, events, consensus, miners, validators.

    Batches commit one by one (Ctrl-C leaves only whole batches). Refused for staging and production.

    \b
    Example: luminar-db sample-data --env=testing --reports 5000 --seed 7
    Example: python scripts/setup_database.py sample-data --env=testing
    """
    settings = _settings(env)
    if if_empty and settings.env in _SAMPLE_ENVS:
        from luminar_store import admin

        with admin.connect(settings) as conn:
            present = conn.execute("SELECT to_regclass('public.raw_incident_reports') IS NOT NULL").fetchone()[0] \
                and conn.execute("SELECT EXISTS (SELECT 1 FROM raw_incident_reports)").fetchone()[0]
        if present:
            click.echo(f"{settings.name} already holds reports; no sample data loaded (--if-empty).")
            return
    _load_sample(settings, reports=reports, days=days, seed=seed, workers=workers)


# -- backup and restore ----------------------------------------------------------------------------------------
@cli.command("backup")
@env_option
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="File (or directory) to write [default: backups/luminar_<env>_<UTC stamp>.dump].")
def backup_command(env: str | None, output: Path | None) -> None:
    """Back up the database with pg_dump (custom format; pg_restore reads it too).

    \b
    Example: luminar-db backup --env=local
    Example: luminar-db backup --output /var/backups/luminar.dump
    """
    from luminar_store.backup import backup_database

    settings = _settings(env)
    result = backup_database(settings, output)
    click.echo(f"Backup of {settings.name} (PostgreSQL {result.server_version}) written to {result.path} "
               f"({_size(result.size_bytes)}, {result.seconds:.1f} s)")


@cli.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@env_option
@click.option("--clean", is_flag=True, help="Drop the backup's objects in the database first (replaces its data).")
@click.option("--force", is_flag=True, help="Allow restoring into production (a confirmation is still asked).")
@yes_option
def restore_command(path: Path, env: str | None, clean: bool, force: bool, yes: bool) -> None:
    """Restore a backup made by `backup` (or any pg_dump custom archive), in one transaction.

    The archive is checked first; a failure changes nothing. Into a database that holds tables, pass --clean.

    \b
    Example: luminar-db restore backups/luminar_local_20250817T120000Z.dump --env=local --clean --yes
    """
    from luminar_store.backup import find_tool, read_archive, restore_database

    settings = _settings(env)
    if settings.env == "production" and not force:
        raise OperationError("restoring into production is refused without --force (LUMINAR_ENV=production)")
    entries = read_archive(path, tool=find_tool("pg_restore"))
    if settings.env == "production" or clean:
        _confirm(f"Replace the contents of {settings.name} on {settings.host}:{settings.port} with {path}?",
                 yes=yes, what=f"restoring {'into production' if settings.env == 'production' else 'with --clean'} "
                               f"replaces the data of {settings.name}")
    result = restore_database(settings, path, clean=clean, allow_production=force)
    made = " (database created)" if result.created_database else ""
    click.echo(f"Restored {len(entries)} archive entries from {path} into {settings.name}{made} "
               f"in {result.seconds:.1f} s")


# -- status and statistics ---------------------------------------------------------------------------------------
def _rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


@cli.command("status")
@env_option
@dir_option
def status_command(env: str | None, directory: Path | None) -> None:
    """Show whether the server answers, its PostgreSQL and PostGIS versions, migrations applied and pending, and
    the pool settings in force (password hidden). Exits 2 when the database cannot be reached.

    Example: luminar-db status --env=local
    """
    from luminar_store.localdb import server_info
    from luminar_store.migrator import Migrator, migrations_directory

    settings = _settings(env)
    p = settings.public_dict()
    pool = (f"size {p['pool_size']} + overflow {p['max_overflow']} = max {settings.pool_max_size}, "
            f"timeout {p['pool_timeout']:g} s, recycle {p['pool_recycle']:g} s, replicas {p['replica_urls']}")
    rows = [("environment", settings.env), ("database", settings.safe_dsn()), ("pool", pool),
            ("retention", f"{settings.retention_days} days (LUMINAR_RETENTION_DAYS)")]
    try:
        info = server_info(settings.conninfo())
    except DatabaseUnavailableError:
        _rows([*rows, ("reachable", "no")])
        raise
    rows += [("reachable", "yes"), ("PostgreSQL", info["postgresql"] or "?"),
             ("PostGIS", info["postgis"] or "not installed in this database (luminar-db setup installs it)")]
    statuses = Migrator(settings.conninfo(), migrations_directory(directory), environment=settings.env).status()
    applied = [s for s in statuses if s.state == "applied"]
    pending = [s for s in statuses if s.state == "pending"]
    other = [f"{s.label} {s.state}" for s in statuses if s.state not in ("applied", "pending")]
    line = f"{len(applied)} applied, {len(pending)} pending"
    if pending:
        line += f" ({', '.join(s.label for s in pending)}): luminar-db migrate"
    if other:
        line += f"; attention: {', '.join(other)}"
    rows.append(("migrations", line))
    _rows(rows)


@cli.command("stats")
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
def stats_command(env: str | None, as_json: bool, hours: int, days: int, recent: int, hotspots: int) -> None:
    """Key metrics: reports and events, throughput (reports/hour), consensus accuracy (validator agreement %),
    geographic coverage (events by region), miner success rates, active nodes.

    \b
    Example: luminar-db stats --env=local --recent 5 --hotspots 5
    Example: luminar-db stats --json | jq .consensus_agreement_pct
    """
    from luminar_store import admin
    from luminar_store import stats as metrics

    settings = _settings(env)
    with admin.connect(settings) as conn:
        if conn.execute("SELECT to_regclass('public.raw_incident_reports') IS NULL").fetchone()[0]:
            raise OperationError(f"database {settings.name} has no Luminar schema; run: luminar-db migrate")
        result = metrics.collect_stats(conn, hours=hours, days=days)
        events = metrics.recent_events(conn, recent) if recent else []
        spots = metrics.top_hotspots(conn, hotspots, days) if hotspots else []
    if as_json:
        data = result.as_dict()
        if recent:
            data["recent_events"] = [dict(zip(("timestamp", "event_type", "severity", "verification_status",
                                                "city", "title"), (e[0].isoformat(), *e[1:]), strict=True))
                                     for e in events]
        if hotspots:
            data["hotspots"] = [dict(zip(("latitude", "longitude", "incident_count", "avg_severity", "crime_types",
                                          "last_seen"), (h[0], h[1], h[2], float(h[3]), h[4], h[5].isoformat()),
                                         strict=True)) for h in spots]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(metrics.format_stats(result))
    if recent:
        click.echo(metrics.format_recent_events(events))
    if hotspots:
        click.echo(metrics.format_hotspots(spots, days))


# -- sync and clean ------------------------------------------------------------------------------------------------
@cli.command("sync")
@env_option
@click.option("--hours", type=click.IntRange(1), default=24, show_default=True, help="Hours of recent data to copy.")
def sync_command(env: str | None, hours: int) -> None:
    """Copy recent data from the central database into this one. NOT IMPLEMENTED YET: it exits with status 3.

    Until it lands, copy data with `luminar-db backup` on one side and `luminar-db restore` on the other.

    Example: luminar-db sync --hours=24
    """
    error = click.ClickException(
        f"sync --hours={hours} is not implemented yet (central-to-local replication is planned in a later "
        "issue); nothing was copied. Meanwhile use `luminar-db backup` and `luminar-db restore`")
    error.exit_code = 3
    raise error


@cli.command("clean")
@env_option
@click.option("--days", type=click.IntRange(1), default=None,
              help="Keep this many days [default: LUMINAR_RETENTION_DAYS, else 365].")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True,
              help="Rows deleted per transaction.")
@yes_option
def clean_command(env: str | None, days: int | None, batch_size: int, yes: bool) -> None:
    """Delete data older than the retention period, in batches, after confirmation. Never drops anything.

    Old consensus records, events, reports no event still names, clusters, expired risk zones and audit entries
    go; miners, validators and migrations stay.

    \b
    Example: luminar-db clean --days 90
    Example: LUMINAR_RETENTION_DAYS=30 luminar-db clean --yes
    """
    from luminar_store import admin
    from luminar_store.retention import count_old_rows, cutoff_for, delete_old_rows

    settings = _settings(env)
    days = days or settings.retention_days
    with admin.connect(settings) as conn:
        plan = count_old_rows(conn, days=days)
        total = sum(plan.values())
        cutoff = cutoff_for(days)
        if not total:
            click.echo(f"Nothing older than {days} days (before {cutoff:%Y-%m-%d %H:%M} UTC) in {settings.name}.")
            return
        click.echo(f"Older than {days} days (before {cutoff:%Y-%m-%d %H:%M} UTC) in {settings.name}:")
        for table, count in plan.items():
            if count:
                click.echo(f"  {table}: {count:,} rows")
        _confirm(f"Delete these {total:,} rows?", yes=yes, what=f"clean deletes {total:,} rows of {settings.name}")
        report = (lambda table, n: click.echo(f"  deleted {n:,} from {table}", err=True)) \
            if sys.stderr.isatty() else None
        deleted = delete_old_rows(conn, days=days, batch_size=batch_size, progress=report)
    click.echo(f"Deleted {sum(deleted.values()):,} rows: " +
               ", ".join(f"{table} {n:,}" for table, n in deleted.items() if n) + ".")
