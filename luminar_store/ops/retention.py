"""Clearing old data (the specification's ``make clean``): rows older than the retention period, deleted in batches.

What "older" means per table, in the order of deletion (children first):

============================  ==========================================================================
consensus_records             ``created_at`` before the cut-off
crime_events                  ``timestamp`` before the cut-off (their remaining consensus records go too)
raw_incident_reports          ``created_at`` before the cut-off and named by no remaining event
crime_clusters                ``time_end`` before the cut-off (events keep existing, ``cluster_id`` NULL)
risk_zones                    ``valid_until`` before the cut-off (zones without an end are kept)
audit_log                     ``occurred_at`` before the cut-off, through the owner's ``luminar_age_out_audit``
============================  ==========================================================================

Each batch is one transaction, so an interruption leaves whole batches deleted and nothing half-done. Miners,
validators and ``schema_migrations`` are never touched, and nothing is ever dropped.

The audit trail is append-only: its old entries leave only through ``luminar_age_out_audit(cutoff, batch)``, the
owner's maintenance function (a plain DELETE is refused). Each batch of the other tables marks its transaction
(``luminar.retention``), so the audit of retention's own deletes names the keys only, without a copy of the data
it removes.

What ``clean`` cannot reach is said, not hidden (``unreachable``): backups already taken (``backups/``, files
older than the cut-off counted), copies pulled by local nodes and replicas (each runs its own ``clean``), and audit
entries younger than the cut-off, which may hold an old row's data from a change made since.

Example::

    >>> with connect(settings) as conn:
    ...     plan = count_old_rows(conn, days=365)
    ...     deleted = delete_old_rows(conn, days=365)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from luminar_store import validation
from luminar_store.ops.backup import DEFAULT_BACKUP_DIR

__all__ = ["TABLES", "Unreachable", "cutoff_for", "count_old_rows", "delete_old_rows", "unreachable"]

# (table, COUNT of old rows, DELETE of one batch of them). %(cutoff)s and %(limit)s are bound parameters.
_STEPS: tuple[tuple[str, str, str], ...] = (
    ("consensus_records",
     "SELECT count(*) FROM consensus_records WHERE created_at < %(cutoff)s",
     """DELETE FROM consensus_records WHERE record_id IN (
            SELECT record_id FROM consensus_records WHERE created_at < %(cutoff)s LIMIT %(limit)s)"""),
    ("crime_events",
     """SELECT count(*) FROM crime_events WHERE "timestamp" < %(cutoff)s""",
     """DELETE FROM crime_events WHERE event_id IN (
            SELECT event_id FROM crime_events WHERE "timestamp" < %(cutoff)s LIMIT %(limit)s)"""),
    ("raw_incident_reports",
     """SELECT count(*) FROM raw_incident_reports r
         WHERE r.created_at < %(cutoff)s
           AND NOT EXISTS (SELECT 1 FROM crime_events e
                            WHERE e.related_reports @> ARRAY[r.report_id] AND e."timestamp" >= %(cutoff)s)""",
     """DELETE FROM raw_incident_reports WHERE report_id IN (
            SELECT r.report_id FROM raw_incident_reports r
             WHERE r.created_at < %(cutoff)s
               AND NOT EXISTS (SELECT 1 FROM crime_events e WHERE e.related_reports @> ARRAY[r.report_id])
             LIMIT %(limit)s)"""),
    ("crime_clusters",
     "SELECT count(*) FROM crime_clusters WHERE time_end < %(cutoff)s",
     """DELETE FROM crime_clusters WHERE cluster_id IN (
            SELECT cluster_id FROM crime_clusters WHERE time_end < %(cutoff)s LIMIT %(limit)s)"""),
    ("risk_zones",
     "SELECT count(*) FROM risk_zones WHERE valid_until < %(cutoff)s",
     """DELETE FROM risk_zones WHERE zone_id IN (
            SELECT zone_id FROM risk_zones WHERE valid_until < %(cutoff)s LIMIT %(limit)s)"""),
    # Append-only: the owner's maintenance function deletes one batch and returns how many.
    ("audit_log",
     "SELECT count(*) FROM audit_log WHERE occurred_at < %(cutoff)s",
     "SELECT luminar_age_out_audit(%(cutoff)s, %(limit)s)"),
)
TABLES = tuple(table for table, _, _ in _STEPS)

# Marks a batch's transaction as retention's: the audit triggers then record its deletes by key, without the data.
MARK_RETENTION = "SELECT set_config('luminar.retention', txid_current()::text, true)"


def cutoff_for(days: int, *, now: datetime | None = None) -> datetime:
    """The instant ``days`` days before ``now`` (default: the current time, UTC)."""
    validation.integer("days", days, minimum=1, maximum=100_000)
    return (now or datetime.now(UTC)) - timedelta(days=days)


def count_old_rows(conn: psycopg.Connection, *, days: int, now: datetime | None = None) -> dict[str, int]:
    """How many rows per table ``delete_old_rows`` would delete now (reports: once older events are gone)."""
    cutoff = cutoff_for(days, now=now)
    return {table: conn.execute(count, {"cutoff": cutoff}).fetchone()[0] for table, count, _ in _STEPS}


def delete_old_rows(conn: psycopg.Connection, *, days: int, now: datetime | None = None, batch_size: int = 10_000,
                    progress: Callable[[str, int], object] | None = None) -> dict[str, int]:
    """Delete the rows older than ``days`` days, table by table, ``batch_size`` rows a transaction.

    ``progress(table, n)`` is called after each batch. Returns the rows deleted per table. Raises
    ``ValidationError`` for a bad ``days`` or ``batch_size`` and ``psycopg.Error`` for a server failure (the batch
    in flight is rolled back; earlier batches stay deleted).
    """
    cutoff = cutoff_for(days, now=now)
    validation.integer("batch_size", batch_size, minimum=1, maximum=1_000_000)
    deleted = dict.fromkeys(TABLES, 0)
    for table, _, delete in _STEPS:
        while True:
            with conn.transaction():
                conn.execute(MARK_RETENTION)
                cur = conn.execute(delete, {"cutoff": cutoff, "limit": batch_size})
                count = cur.fetchone()[0] if cur.description else cur.rowcount
            deleted[table] += count
            if progress is not None and count:
                progress(table, count)
            if count < batch_size:
                break
    return deleted


@dataclass(frozen=True)
class Unreachable:
    """Where data older than the cut-off may still live after ``clean``: ``backups_dir``, how many backup files there
    are and how many are older than the cut-off (``None`` when the directory does not exist)."""

    backups_dir: Path
    backups: int | None
    old_backups: int | None

    def lines(self) -> list[str]:
        """What ``clean`` says about them, one sentence a place."""
        if self.backups is None:
            backups = f"backups already taken: none in {self.backups_dir}/ (any kept elsewhere still hold old rows)"
        else:
            backups = (f"backups already taken: {self.backups_dir}/ holds {self.backups:,} file(s), "
                       f"{self.old_backups:,} older than the cut-off; they still hold the old rows until deleted "
                       "(and a restore brings them back)")
        return [backups,
                "local copies and replicas: rows they pulled stay there until each runs its own `luminar-db clean`",
                "audit entries younger than the cut-off may hold an old row's data (a change made since); they go "
                "when they age out"]


def unreachable(*, days: int, now: datetime | None = None, backups_dir: Path = DEFAULT_BACKUP_DIR) -> Unreachable:
    """What ``delete_old_rows`` cannot reach: the backups directory (its ``*.dump`` files counted, by modification
    time against the cut-off) and the copies outside this database. Never raises for a missing directory."""
    cutoff = cutoff_for(days, now=now).timestamp()
    try:
        dumps = [p.stat().st_mtime for p in backups_dir.glob("*.dump") if p.is_file()]
    except OSError:
        return Unreachable(backups_dir, None, None)
    if not backups_dir.is_dir():
        return Unreachable(backups_dir, None, None)
    return Unreachable(backups_dir, len(dumps), sum(mtime < cutoff for mtime in dumps))
