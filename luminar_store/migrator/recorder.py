"""The runner's bookkeeping: the table ``public.schema_migrations`` and the run's advisory lock, with one owner.

Records
    ``public.schema_migrations`` (created when first needed): version, name, checksum (see ``files.checksum``),
    applied_at, execution_ms, applied_by, dirty, error. ``dirty`` marks a ``-- migrate:no-transaction`` file that
    failed part-way. ``public`` is named in every statement, so that a file's ``search_path`` cannot move it.

The runner's own settings
    Every write here first puts the session back to the runner's own settings (``RESET_SESSION``), inside the
    file's transaction when there is one. So a file's ``SET statement_timeout``, ``lock_timeout``, ``search_path``,
    ``ROLE`` or ``SESSION AUTHORIZATION`` reaches neither its own record nor the next file: a record is written
    after every file that ran, successful or not, and a failed transactional file's ``SET``\\ s roll back with it.

Example::

    >>> with psycopg.connect(conninfo, autocommit=True) as conn:
    ...     recorder = Recorder(conn)
    ...     recorder.lock(timeout=60)
    ...     recorder.ensure_table()
    ...     sorted(recorder.applied())
    ['20250101000000', ...]
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime

import psycopg

from luminar_store.errors import MigrationError
from luminar_store.migrator.files import Migration

__all__ = ["LOCK_KEY", "RESET_SESSION", "AppliedMigration", "Recorder"]

#: Key of the session advisory lock every run holds ("LUMINAR" in ASCII).
LOCK_KEY = 0x4C554D494E4152

# RESET ALL first: since PostgreSQL 13 each statement of a multi-statement query gets its own statement_timeout,
# so the other two no longer run under a file's (say) 1 ms. RESET ALL leaves the role and the session user alone
# (both are marked "no reset all" in the server), hence the two others. Not DISCARD ALL: it refuses to run in a
# transaction block and would release the run's advisory lock.
RESET_SESSION = "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE"

_COLUMNS = ("version", "name", "checksum", "applied_at", "execution_ms", "applied_by", "dirty", "error")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version      text        PRIMARY KEY CHECK (version ~ '^[0-9]{14}$'),
    name         text        NOT NULL,
    checksum     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer     NOT NULL DEFAULT 0 CHECK (execution_ms >= 0),
    applied_by   text        NOT NULL DEFAULT current_user,
    dirty        boolean     NOT NULL DEFAULT false,
    error        text
)"""
TABLE_EXISTS = "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
TABLE_COLUMNS = """
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = 'schema_migrations'"""
SELECT_APPLIED = """
SELECT version, name, checksum, applied_at, execution_ms, applied_by, dirty, error
  FROM public.schema_migrations ORDER BY version"""
SELECT_LAST_APPLIED = """
SELECT version, name, checksum, applied_at, execution_ms, applied_by, dirty, error
  FROM public.schema_migrations ORDER BY applied_at DESC, version DESC LIMIT 1"""
INSERT_RECORD = """
INSERT INTO public.schema_migrations (version, name, checksum, execution_ms, applied_by, dirty, error)
VALUES (%s, %s, %s, %s, coalesce(%s::text, current_user || '@' || %s::text), %s, %s)"""
MARK_FAILED = "UPDATE public.schema_migrations SET dirty = true, error = %s WHERE version = %s"
UPDATE_CHECKSUM = "UPDATE public.schema_migrations SET checksum = %s WHERE version = %s"
MARK_RESOLVED = "UPDATE public.schema_migrations SET dirty = false, error = NULL, checksum = %s WHERE version = %s"
DELETE_RECORD = "DELETE FROM public.schema_migrations WHERE version = %s"
# The server process of this session: through a connection pooler it differs from the process id the connection was
# given at start-up (the pooler's own cancel key).
BACKEND_PID = "SELECT pg_backend_pid()"
TRY_LOCK = "SELECT pg_try_advisory_lock(%s::bigint)"
LOCK = "SELECT pg_advisory_lock(%s::bigint)"
SET_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, false)"
RESET_LOCK_TIMEOUT = "RESET lock_timeout"
LOCK_HOLDERS = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'),
       coalesce(a.usename::text, '?'), a.backend_start
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = %s AND l.objid::bigint = %s"""


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``; ``dirty`` marks a no-transaction file that failed part-way."""

    version: str
    name: str
    checksum: str
    applied_at: datetime
    execution_ms: int
    applied_by: str
    dirty: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


class Recorder:
    """``schema_migrations`` and the migration lock, on ``conn`` (an autocommit connection: the executor opens
    the transactions a file needs, and the recorder's writes join them).

    ``applied_by`` overrides the recorded ``role@host``. Methods raise ``psycopg.Error`` from the server, and
    ``MigrationError`` where named.
    """

    def __init__(self, conn: psycopg.Connection, *, applied_by: str | None = None) -> None:
        self.conn = conn
        self.applied_by = applied_by

    # -- the lock --------------------------------------------------------------------------------------------------
    def lock(self, timeout: float) -> None:
        """Take the session advisory lock ``LOCK_KEY``, waiting up to ``timeout`` seconds (0: do not wait).

        A session lock outlives the per-file transactions and goes when the connection closes. Raises
        ``MigrationError`` naming every holder (pid, application, client, user, since when) when it is not had, and
        before taking it when the connection goes through a pooler (PgBouncer in transaction pooling hands each
        transaction to any of its server sessions: the lock would be held by one of them, for nobody, and the
        files' transactions run elsewhere).
        """
        conn = self.conn
        self.refuse_pooler()
        if timeout <= 0:
            got = conn.execute(TRY_LOCK, [LOCK_KEY]).fetchone()[0]
        else:
            conn.execute(SET_LOCK_TIMEOUT, [f"{max(1, round(timeout * 1000))}ms"])
            try:
                conn.execute(LOCK, [LOCK_KEY])
                got = True
            except psycopg.errors.LockNotAvailable:
                got = False
            finally:
                conn.execute(RESET_LOCK_TIMEOUT)
        if got:
            return
        rows = conn.execute(LOCK_HOLDERS, [LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF]).fetchall()
        holders = "; ".join(f"pid {pid}, application {app!r}, client {addr}, user {user}, connected since "
                            f"{start.isoformat(timespec='seconds')}" for pid, app, addr, user, start in rows)
        raise MigrationError(
            f"another migration run holds the migration lock ({holders or 'holder gone'}); gave up after "
            f"{timeout:g} s (--lock-timeout); wait for it to finish, or stop it"
        )

    def refuse_pooler(self) -> None:
        """Raise ``MigrationError`` when ``conn`` reaches PostgreSQL through a connection pooler, naming the fix."""
        conn = self.conn
        if conn.execute(BACKEND_PID).fetchone()[0] == conn.info.backend_pid:
            return
        raise MigrationError(
            f"migrations need their own server session, and port {conn.info.port} on {conn.info.host} is a "
            "connection pooler (PgBouncer?); set LUMINAR_DB_DIRECT_URL=postgresql://HOST:PORT to the primary's own "
            "address (the owner's commands connect there, around the pooler), or give --dsn of the primary"
        )

    # -- reading ---------------------------------------------------------------------------------------------------
    def has_table(self) -> bool:
        return self.conn.execute(TABLE_EXISTS).fetchone()[0]

    def ensure_table(self) -> None:
        """Create ``public.schema_migrations`` when missing; raises ``MigrationError`` when a table of that name
        lacks our columns (made by another tool)."""
        self.conn.execute(CREATE_TABLE)
        have = {r[0] for r in self.conn.execute(TABLE_COLUMNS)}
        lacking = [c for c in _COLUMNS if c not in have]
        if lacking:
            raise MigrationError(f"public.schema_migrations exists without columns {', '.join(lacking)} (made by "
                                 "another tool?); rename that table or add the columns")

    def applied(self) -> dict[str, AppliedMigration]:
        """Every record by version; empty when the table does not exist yet (nothing is created)."""
        if not self.has_table():
            return {}
        return {row[0]: AppliedMigration(*row) for row in self.conn.execute(SELECT_APPLIED)}

    def last_applied(self) -> AppliedMigration | None:
        """The most recently applied record, or None."""
        row = self.conn.execute(SELECT_LAST_APPLIED).fetchone() if self.has_table() else None
        return AppliedMigration(*row) if row else None

    # -- writing (each under the runner's own settings) --------------------------------------------------------------
    def own_settings(self) -> None:
        """Undo whatever ``SET`` a migration file left in the session (see ``RESET_SESSION``)."""
        self.conn.execute(RESET_SESSION)

    def _write(self, query: str, params: list) -> None:
        self.own_settings()
        self.conn.execute(query, params)

    def record_applied(self, m: Migration, ms: int, error: str | None = None) -> None:
        """Record ``m`` as applied in ``ms`` milliseconds; with ``error``, as a no-transaction file that failed
        part-way (dirty), so that later runs stop until it is resolved."""
        self._write(INSERT_RECORD, [m.version, m.name, m.checksum, ms, self.applied_by, socket.gethostname(),
                                    error is not None, error])

    def record_unapplied(self, version: str) -> None:
        self._write(DELETE_RECORD, [version])

    def mark_failed(self, version: str, error: str) -> None:
        """Mark an applied record dirty (a no-transaction down section failed part-way)."""
        self._write(MARK_FAILED, [error, version])

    def accept_checksum(self, version: str, checksum: str) -> None:
        self._write(UPDATE_CHECKSUM, [checksum, version])

    def mark_resolved(self, version: str, checksum: str) -> None:
        self._write(MARK_RESOLVED, [checksum, version])
