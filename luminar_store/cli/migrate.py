"""``luminar-db migrate``: apply, inspect, create, roll back and verify schema migrations.

``luminar-db migrate`` (or ``migrate up``) applies what is pending; ``migrate status|create|rollback|verify`` do the
rest. ``migrations/manager.py`` offers the same commands as ``migrate|status|create|rollback|verify``.
Connection options (``--env --dsn --dir --wait --lock-timeout``) are accepted both before and after the sub-command.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from luminar_store.config import ENVIRONMENTS, Settings, load_settings
from luminar_store.errors import MigrationError
from luminar_store.migrator import DEFAULT_DIR, MigrationStatus, Migrator, create_migration, migrations_directory

__all__ = ["migrate_group", "up_command", "status_command", "create_command", "rollback_command", "verify_command"]

_CONNECTION_OPTIONS = ("env", "dsn", "directory", "wait", "lock_timeout")
_APPLY_OPTIONS = ("target", "dry_run", "allow_out_of_order", "accept_checksum", "mark_resolved", "retry")


def _dir_option(f):
    return click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
                        envvar="LUMINAR_MIGRATIONS_DIR", show_envvar=True,
                        help=f"Migrations directory [default: {DEFAULT_DIR}].")(f)


def _connection_options(f):
    options = [
        click.option("--env", type=click.Choice(ENVIRONMENTS), default=None,
                     help="Settings environment [default: LUMINAR_ENV, else local]."),
        click.option("--dsn", default=None, metavar="URL",
                     help="Connection URL; overrides LUMINAR_DB_* as DATABASE_URL does. Never printed."),
        _dir_option,
        click.option("--wait", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     envvar="LUMINAR_MIGRATE_WAIT", show_envvar=True,
                     help="Keep retrying to connect for up to SECONDS while the server starts."),
        click.option("--lock-timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
                     envvar="LUMINAR_MIGRATE_LOCK_TIMEOUT", show_envvar=True,
                     help="Give up waiting for another run's migration lock after SECONDS (0: do not wait) "
                          "[default: 60]."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _apply_options(f):
    options = [
        click.option("--target", metavar="VERSION", help="Apply pending migrations up to and including VERSION."),
        click.option("--dry-run", is_flag=True, help="Print the plan; change nothing (not even schema_migrations)."),
        click.option("--allow-out-of-order", is_flag=True,
                     help="Apply pending files older than the newest applied one (refused by default)."),
        click.option("--accept-checksum", metavar="VERSION", multiple=True,
                     help="Record the current text of an applied file that was edited as its applied text."),
        click.option("--mark-resolved", metavar="VERSION", multiple=True,
                     help="Record a no-transaction migration that failed part-way, and was fixed by hand, as applied."),
        click.option("--retry", metavar="VERSION", multiple=True,
                     help="Forget a failed no-transaction migration (undone by hand) so that it runs again."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _option(ctx: click.Context, name: str):
    """An option's value: typed on this command, else typed on the enclosing ``migrate`` group, else from its
    environment variable or default (``migrate --dir X status`` must beat ``LUMINAR_MIGRATIONS_DIR``)."""
    chain = []
    while ctx is not None:
        chain.append(ctx)
        ctx = ctx.parent
    typed = [c for c in chain if c.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    for c in typed + chain:
        if c.params.get(name) is not None:
            return c.params[name]
    return None


def _settings(ctx: click.Context) -> Settings:
    dsn = _option(ctx, "dsn")
    environ = dict(os.environ, DATABASE_URL=dsn) if dsn else None
    return load_settings(_option(ctx, "env"), environ).as_owner()


def _directory(ctx: click.Context) -> Path:
    return migrations_directory(_option(ctx, "directory"))


def _migrator(ctx: click.Context, settings: Settings, *, wait: bool = True) -> Migrator:
    lock_timeout = _option(ctx, "lock_timeout")
    migrator = Migrator(settings, _directory(ctx), out=click.echo,
                        lock_timeout=60.0 if lock_timeout is None else lock_timeout)
    seconds = _option(ctx, "wait")
    if wait and seconds:
        migrator.wait_until_ready(seconds)
    return migrator


def _apply(ctx: click.Context) -> None:
    settings = _settings(ctx)
    p = ctx.params
    dry_run = p["dry_run"]
    click.echo(f"{'Planning' if dry_run else 'Migrating'} {settings.safe_dsn()} with {_directory(ctx)}")
    applied = _migrator(ctx, settings).migrate(
        p["target"], dry_run=dry_run, allow_out_of_order=p["allow_out_of_order"],
        accept_checksums=p["accept_checksum"], mark_resolved=p["mark_resolved"], retry=p["retry"])
    count = f"{len(applied)} migration{'' if len(applied) == 1 else 's'}"
    if dry_run:
        click.echo(f"Dry run: {count} would be applied; nothing was changed.")
    elif applied:
        click.echo(f"Done: {count} applied.")
    else:
        click.echo("Nothing to apply: the database is up to date.")


@click.group("migrate", invoke_without_command=True)
@_connection_options
@_apply_options
@click.pass_context
def migrate_group(ctx: click.Context, **_: object) -> None:
    """Apply pending migrations (no sub-command), or inspect, create, roll back and verify them.

    Files are migrations/YYYYMMDDHHMMSS_name.sql (UTC), applied in version order, each in one transaction with
    its schema_migrations row, under an advisory lock (many nodes may run this at once). A line
    '-- migrate:no-transaction' runs a file outside a transaction (CREATE INDEX CONCURRENTLY). An applied file
    that was edited stops the run until restored or accepted with --accept-checksum VERSION.

    \b
    Example: luminar-db migrate --dry-run
    Example: luminar-db migrate --env testing --wait 30
    """
    if ctx.invoked_subcommand is None:
        _apply(ctx)
        return
    given = [name for name in _APPLY_OPTIONS if ctx.params.get(name) not in (None, False, ())]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise click.UsageError(f"{flags} only apply to `migrate` itself, not to `migrate {ctx.invoked_subcommand}`")


@migrate_group.command("up")
@_connection_options
@_apply_options
@click.pass_context
def up_command(ctx: click.Context, **_: object) -> None:
    """Apply pending migrations in version order and print one line per file with its time.

    Exits 1 with the file, line and server message when a migration fails (that file leaves no trace; earlier
    ones stay applied), and 2 when the database cannot be reached.

    \b
    Example: luminar-db migrate up --target 20250817120000
    """
    _apply(ctx)


_MARK = {"applied": "applied", "pending": "pending", "changed": "CHANGED", "missing": "MISSING", "failed": "FAILED"}
_ADVICE = {
    "changed": "edited since applied: restore it, or `migrate --accept-checksum {v}`",
    "missing": "applied, but its file is gone from the directory",
    "failed": "failed part-way outside a transaction: fix by hand, then `migrate --mark-resolved {v}` or `--retry {v}`",
}


def _line(s: MigrationStatus) -> str:
    when = f"{s.record.applied_at:%Y-%m-%d %H:%M:%S%z}  {s.record.execution_ms:>6} ms" if s.record else ""
    note = _ADVICE.get(s.state, "").format(v=s.version)
    if s.out_of_order:
        note = "older than the newest applied migration (needs --allow-out-of-order)"
    return (f"  {_MARK[s.state]:<8} {s.version}  {s.name:<36} {when}" + (f"  <- {note}" if note else "")).rstrip()


@migrate_group.command("status")
@_connection_options
@click.option("--exit-code", is_flag=True, help="Exit 1 when a migration is pending or needs attention (for CI).")
@click.pass_context
def status_command(ctx: click.Context, exit_code: bool, **_: object) -> None:
    """Show every migration: applied (when, how long), pending, changed, missing or failed. Writes nothing.

    \b
    Example: luminar-db migrate status --exit-code
    """
    settings = _settings(ctx)
    statuses = _migrator(ctx, settings).status()
    click.echo(f"Database:   {settings.safe_dsn()}")
    click.echo(f"Migrations: {_directory(ctx)}")
    for s in statuses:
        click.echo(_line(s))
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no migrations"
    click.echo(f"{len(statuses)} migration{'' if len(statuses) == 1 else 's'}: {summary}.")
    if exit_code and any(s.state != "applied" for s in statuses):
        ctx.exit(1)


@migrate_group.command("create")
@click.argument("name")
@_dir_option
@click.pass_context
def create_command(ctx: click.Context, name: str, **_: object) -> None:
    """Write a new, empty migration NAME (lower-case letters, digits, _) stamped with the UTC time.

    The file has '-- migrate:up' and '-- migrate:down' sections. An existing file is never overwritten: when the
    stamp is taken, or older than the newest file, the next free second is used. Needs no database.

    \b
    Example: luminar-db migrate create add_risk_scoring
    """
    path = create_migration(_directory(ctx), name)
    click.echo(f"Created {path}")


@migrate_group.command("rollback")
@_connection_options
@click.option("--allow-production", is_flag=True, help="Allow a rollback when the environment is production.")
@click.pass_context
def rollback_command(ctx: click.Context, allow_production: bool, **_: object) -> None:
    """Undo the most recently applied migration with its '-- migrate:down' section, in one transaction with
    deleting its record. Refused in production unless --allow-production.

    \b
    Example: luminar-db migrate rollback --env testing
    """
    settings = _settings(ctx)
    refused = settings.env == "production" and not allow_production
    migrator = _migrator(ctx, settings, wait=not refused)  # a refusal needs no database: do not wait for one
    click.echo(f"Rolling back on {settings.safe_dsn()}")
    migrator.rollback(allow_production=allow_production)


@migrate_group.command("verify")
@_connection_options
@click.pass_context
def verify_command(ctx: click.Context, **_: object) -> None:
    """Check that every applied migration still matches its file; exit 1 listing edited, missing or failed ones.

    \b
    Example: luminar-db migrate verify
    """
    settings = _settings(ctx)
    problems = _migrator(ctx, settings).verify()
    if not problems:
        click.echo(f"OK: every applied migration on {settings.safe_dsn()} matches {_directory(ctx)}.")
        return
    for s in problems:
        click.echo(_line(s))
    raise MigrationError(f"verify found {len(problems)} problem{'' if len(problems) == 1 else 's'}: "
                         + ", ".join(f"{s.label} {s.state}" for s in problems))
