"""Clearing old data (the specification's ``make clean``): rows older than the retention period, deleted in batches.

What "older" means per table, in the order of deletion (children first):

============================  ==========================================================================
consensus_records             ``created_at`` before the cut-off
crime_events                  ``timestamp`` before the cut-off (their remaining consensus records go too)
raw_incident_reports          ``created_at`` before the cut-off and named by no remaining event
crime_clusters                ``time_end`` before the cut-off (events keep existing, ``cluster_id`` NULL)
risk_zones                    ``valid_until`` before the cut-off (zones without an end are kept)
audit_log                     ``occurred_at`` before the cut-off
============================  ==========================================================================

Each batch is one transaction, so an interruption leaves whole batches deleted and nothing half-done. Miners,
validators and ``schema_migrations`` are never touched, and nothing is ever dropped.

Example::

    >>> with connect(settings) as conn:
    ...     plan = count_old_rows(conn, days=365)
    ...     deleted = delete_old_rows(conn, days=365)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from luminar_store import validation

__all__ = ["TABLES", "cutoff_for", "count_old_rows", "delete_old_rows"]

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
    ("audit_log",
     "SELECT count(*) FROM audit_log WHERE occurred_at < %(cutoff)s",
     """DELETE FROM audit_log WHERE audit_id IN (
            SELECT audit_id FROM audit_log WHERE occurred_at < %(cutoff)s LIMIT %(limit)s)"""),
)
TABLES = tuple(table for table, _, _ in _STEPS)


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
                count = conn.execute(delete, {"cutoff": cutoff, "limit": batch_size}).rowcount
            deleted[table] += count
            if progress is not None and count:
                progress(table, count)
            if count < batch_size:
                break
    return deleted
