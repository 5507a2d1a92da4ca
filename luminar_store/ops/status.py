"""One status report, for ``luminar-db status`` and ``luminar-db db status`` alike.

Rows, in order: environment, database (password hidden), server (for environments that run on this machine: the
embedded cluster or the compose service, and on which port), pool, retention, reachable, PostgreSQL, PostGIS,
migrations, then one row per read replica (health, lag in bytes and seconds, whether reads use it). With
``verbose`` also the tables, views and applied migrations. When the database cannot be reached the report
holds the rows gathered so far and the error, which the command raises after printing them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from luminar_store.config import Settings
from luminar_store.errors import DatabaseUnavailableError
from luminar_store.ops import cluster, compose
from luminar_store.ops.connect import connect, server_info, unreachable
from luminar_store.replicas import PRIMARY_WAL_POSITION, REPLICA_LAG, Lag, replica_target

__all__ = ["StatusReport", "collect_status", "replica_rows", "measure_replicas", "ReplicaMeasure", "server_line",
           "OBJECTS"]

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


@dataclass
class StatusReport:
    """What ``collect_status`` found: labelled rows, and with ``verbose`` the objects and applied migrations."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    error: DatabaseUnavailableError | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None


def server_line(settings: Settings) -> str:
    """Where the local server of ``settings`` runs, or how to start it (environments that run on this machine)."""
    found = cluster.status(cluster.cluster_for(settings))
    if found.running:
        line = f"running (embedded cluster, pid {found.pid}, port {found.port}, data {found.home})"
        if found.port is not None and found.port != settings.port:
            name = f"{settings.rules.prefix}PORT" if settings.rules.prefix else "LUMINAR_DB_PORT"
            line += f"; the settings say port {settings.port}: set {name}={found.port} (in .env) to use it"
        return line
    if compose.running(settings):
        return f"running (docker compose service {compose.SERVICES[settings.env]})"
    start = "make db-test-setup" if settings.env == "testing" else "make db-start"
    if found.initialized:
        return f"stopped (embedded cluster in {found.home}; start it: {start})"
    return f"not created yet ({start} creates it)"


def _migrations(settings: Settings, directory: Path | None) -> tuple[str, list[str]]:
    from luminar_store.migrator import Migrator, migrations_directory

    found = Migrator(settings, migrations_directory(directory)).status()
    applied = [s for s in found if s.state == "applied"]
    pending = [s for s in found if s.state == "pending"]
    attention = [s for s in found if s.state not in ("applied", "pending")]
    lines = [f"{s.label}  applied {s.record.applied_at:%Y-%m-%d %H:%M:%S %Z}" if s.record else s.label
             for s in applied]
    if attention:
        names = ", ".join(f"{s.label} {s.state}" for s in attention)
        return f"need attention: {names}; see make migrate-status", lines
    if pending:
        return (f"{len(applied)} applied, {len(pending)} pending: make db-migrate (or luminar-db migrate); "
                f"{', '.join(s.label for s in pending)}"), lines
    return f"current ({len(applied)} applied, 0 pending)", lines


def collect_status(settings: Settings, *, migrations_dir: Path | None = None, verbose: bool = False) -> StatusReport:
    """Gather the status of the settings' database. Never raises for an unreachable or missing database: the
    report carries the error. Raises ``MigrationError`` when the migration files cannot be read."""
    p = settings.public_dict()
    pool = (f"size {p['pool_size']} + overflow {p['max_overflow']} = max {settings.pool_max_size}, "
            f"timeout {p['pool_timeout']:g} s, recycle {p['pool_recycle']:g} s, replicas {p['replica_urls']}")
    report = StatusReport(rows=[("environment", settings.env), ("database", settings.safe_dsn())])
    if settings.rules.runs_here:
        report.rows.append(("server", server_line(settings)))
    report.rows += [("pool", pool), ("retention", f"{settings.retention_days} days (LUMINAR_RETENTION_DAYS)")]
    try:
        info = server_info(settings)
    except DatabaseUnavailableError as exc:
        report.rows.append(("reachable", "no"))
        report.error = exc
        return report
    postgis = info["postgis"] or "not installed in this database (luminar-db setup installs it)"
    report.rows += [("reachable", "yes"), ("PostgreSQL", info["postgresql"] or "?"), ("PostGIS", postgis)]
    line, report.applied = _migrations(settings, migrations_dir)
    report.rows.append(("migrations", line))
    report.rows += replica_rows(settings)
    report.rows += realtime_rows(settings)
    if verbose:
        with connect(settings) as conn:
            objects = conn.execute(OBJECTS).fetchall()
        report.tables = [name for name, is_table in objects if is_table]
        report.views = [name for name, is_table in objects if not is_table]
    return report


def realtime_rows(settings: Settings) -> list[tuple[str, str]]:
    """A row for the real-time copy when this database subscribes to central (``ops.realtime``): its state,
    tables copied, and the lag in bytes when ``LUMINAR_SYNC_SOURCE_URL`` names central."""
    from luminar_store.ops import realtime

    state = realtime.realtime_status(settings, os.environ.get("LUMINAR_SYNC_SOURCE_URL") or None)
    if state.state == "none":
        return []
    lag = "" if state.lag_bytes is None else f", {state.lag_bytes:,} bytes behind central"
    return [("realtime", f"{state.state}: {state.tables_ready}/{state.tables} tables copied{lag}")]


@dataclass(frozen=True)
class ReplicaMeasure:
    """One read replica measured now: its target, its lag (``None`` when down) and why it is down."""

    index: int
    where: str
    lag: Lag | None
    reason: str | None


def measure_replicas(settings: Settings) -> list[ReplicaMeasure]:
    """Each read replica of the settings, measured now against the primary's WAL position (``REPLICA_LAG``); a
    replica that cannot be reached costs at most its connect timeout. Raises ``DatabaseUnavailableError`` when the
    primary cannot be reached."""
    if not settings.replica_urls:
        return []
    with connect(settings) as primary:
        primary_lsn = primary.execute(PRIMARY_WAL_POSITION).fetchone()[0]
    found = []
    for index, url in enumerate(settings.replica_urls):
        target = replica_target(settings, index, url)
        try:
            with psycopg.connect(target.conninfo, autocommit=True) as conn:
                lag = Lag.from_row(conn.execute(REPLICA_LAG, {"primary_lsn": primary_lsn}).fetchone())
        except (psycopg.Error, OSError) as exc:
            found.append(ReplicaMeasure(index, target.where, None, unreachable(settings, exc, where=target.where)))
            continue
        found.append(ReplicaMeasure(index, target.where, lag, None))
    return found


def replica_rows(settings: Settings) -> list[tuple[str, str]]:
    """One row per read replica, measured now (``measure_replicas``): host, port and database (never a password),
    up or down (with the reason), lag in bytes and seconds against the primary, and whether reads use it (down or
    over ``LUMINAR_DB_REPLICA_MAX_LAG``: skipped). Raises ``DatabaseUnavailableError`` when the primary cannot be
    reached."""
    if not settings.replica_urls:
        return []
    measured = measure_replicas(settings)
    rows = [("replicas", f"{len(settings.replica_urls)}; cool-down {settings.replica_cooldown:g} s "
                         f"(LUMINAR_DB_REPLICA_COOLDOWN), max lag {settings.replica_max_lag} bytes "
                         "(LUMINAR_DB_REPLICA_MAX_LAG)")]
    for m in measured:
        if m.lag is None:
            rows.append((f"replica {m.index + 1}", f"down: {m.reason}; reads skip it"))
            continue
        lag = m.lag
        use = ("reads use it" if lag.bytes <= settings.replica_max_lag
               else "reads skip it until it catches up (over LUMINAR_DB_REPLICA_MAX_LAG)")
        kind = "" if lag.standby else " (not a standby: the primary's own data)"
        address = m.where.split(" (", 1)[1].rstrip(")")
        rows.append((f"replica {m.index + 1}", f"{address}: up{kind}; lag {lag.bytes} bytes, {lag.seconds:.1f} s; "
                                               f"{use}"))
    return rows
