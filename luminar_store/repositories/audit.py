"""The audit log, read only: rows written by the schema's triggers (and by re-registrations).

``audit_log`` is written by the schema's statement triggers (migration ``20261130021000_audit_every_change``) and
is append-only. An INSERT entry stands for one statement: how many rows (``row_count``) and their keys (``row_ids``;
``row_id`` too when it was one row). UPDATE, DELETE and REREGISTER entries are one a row: its key as text
(``row_id``: a UUID, a miner/validator uid, a node login) and the row before and after. Every entry says who: the
login (``actor``), its node uids, the client address, the application name and the transaction.

Example::

    audit = AuditRepository(conn)
    latest = await audit.recent(limit=20)
    history = await audit.for_row("miner_performance", 123)   # oldest first
"""

from __future__ import annotations

from uuid import UUID

from luminar_store import validation as v
from luminar_store.errors import ValidationError
from luminar_store.limits import MAX_LIMIT
from luminar_store.models import AuditEntry
from luminar_store.repositories._base import Repository

__all__ = ["AuditRepository"]


# The newest entries of every table (idx_audit_log_occurred_at, read backwards).
RECENT = """
SELECT audit_id, table_name, operation, row_id, actor, old_data, new_data, occurred_at, node_uids, client_addr,
       application_name, transaction_id, row_count, row_ids
  FROM audit_log
 ORDER BY occurred_at DESC
 LIMIT %(limit)s
"""

# The newest entries of one table (idx_audit_log_table_time).
RECENT_FOR_TABLE = """
SELECT audit_id, table_name, operation, row_id, actor, old_data, new_data, occurred_at, node_uids, client_addr,
       application_name, transaction_id, row_count, row_ids
  FROM audit_log
 WHERE table_name = %(table_name)s
 ORDER BY occurred_at DESC
 LIMIT %(limit)s
"""

# The history of one row, oldest first (idx_audit_log_table_time narrows to the table): its own entries and the
# statements that inserted (or retention deleted) it among others (row_ids, looked into only for those).
FOR_ROW = """
SELECT audit_id, table_name, operation, row_id, actor, old_data, new_data, occurred_at, node_uids, client_addr,
       application_name, transaction_id, row_count, row_ids
  FROM audit_log
 WHERE table_name = %(table_name)s
   AND (row_id = %(row_id)s OR (row_count > 1 AND row_ids @> ARRAY[%(row_id)s::text]))
 ORDER BY occurred_at, audit_id
 LIMIT %(limit)s
"""


def _row_id(value: object) -> str:
    if isinstance(value, UUID) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    if value is None:
        raise ValidationError("row_id", "is required (the row's key: a UUID or a uid)")
    return v.text("row_id", value, max_length=200)


class AuditRepository(Repository):
    """Reads ``audit_log`` on one async connection. There is no write method: triggers write the log."""

    async def recent(self, limit: int = 100, table_name: str | None = None) -> list[AuditEntry]:
        """The newest audit entries, newest first.

        Args:
            limit: at most this many (1..10,000).
            table_name: only this table's entries (e.g. ``"risk_zones"``, ``"miner_performance"``).

        Raises ``ValidationError`` (``limit``, ``table_name``) before any SQL.

        Example::

            for entry in await audit.recent(10, table_name="crime_events"): print(entry.operation, entry.row_id)
        """
        params = {"limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        query = RECENT
        if table_name is not None:
            params["table_name"] = v.slug("table_name", table_name)
            query = RECENT_FOR_TABLE
        return await self._all(query, params, AuditEntry)

    async def for_row(self, table_name: str, row_id: str | int | UUID, *, limit: int = 1_000) -> list[AuditEntry]:
        """The audit history of one row, oldest first.

        Args:
            table_name: the audited table (e.g. ``"crime_events"``).
            row_id: the row's key as the log writes it: a UUID (events, zones) or a uid (miners, validators);
                given as text, ``uuid.UUID`` or ``int``.
            limit: at most this many (1..10,000).

        Raises ``ValidationError`` (``table_name``, ``row_id``, ``limit``) before any SQL.

        Example::

            history = await audit.for_row("miner_performance", 123)
            [e.operation for e in history]       # ['REREGISTER', ...]
        """
        params = {"table_name": v.slug("table_name", table_name), "row_id": _row_id(row_id),
                  "limit": v.integer("limit", limit, minimum=1, maximum=MAX_LIMIT)}
        return await self._all(FOR_ROW, params, AuditEntry)
