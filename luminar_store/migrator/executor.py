"""Running a migration file's statements: one code path for transactional and ``-- migrate:no-transaction`` files,
for applying (the up section) and rolling back (the down section). Only the transaction around it differs.

A transactional file's statements and its bookkeeping write (``done``) run in one transaction: a failure leaves
no trace. A no-transaction file's statements run one by one in autocommit and ``done`` is written after them; on a
failure, any transaction block the file had opened is rolled back and ``failed`` writes the failure, so that the
next run knows the file stopped part-way. A no-transaction file that ends inside its own ``BEGIN`` block is such a
failure too (that block is rolled back): its bookkeeping must never ride in the file's transaction.

Example::

    >>> ms = run_file(conn, migration, migration.up, done=lambda ms: recorder.record_applied(migration, ms),
    ...               failed=lambda ms, error: recorder.record_applied(migration, ms, error))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import psycopg
from psycopg.pq import TransactionStatus

from luminar_store.migrator.files import Migration, Statement

__all__ = ["StatementFailed", "run_file", "failure_message"]


class StatementFailed(Exception):
    """A statement of a file failed; ``message`` names the file, its line and the server's message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def failure_message(m: Migration, s: Statement, exc: psycopg.Error) -> str:
    """One line naming the file, the file line of the failing statement (the server's error position within it
    when the server gives one) and the server's message."""
    diag = exc.diag
    position = diag.statement_position
    line = s.line + (s.sql.count("\n", 0, max(int(position) - 1, 0)) if position else 0)
    message = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    extra = f"; hint: {diag.message_hint}" if diag.message_hint else ""
    if exc.sqlstate == "25001":  # active_sql_transaction: e.g. CREATE INDEX CONCURRENTLY
        extra += "; put '-- migrate:no-transaction' at the top of the file to run it outside a transaction"
    state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    return f"migration {m.path.name} failed at line {line}: {message}{state}{extra}"


def _execute(conn: psycopg.Connection, m: Migration, statements: tuple[Statement, ...]) -> None:
    for s in statements:
        try:
            conn.execute(s.sql)
        except psycopg.Error as exc:
            raise StatementFailed(failure_message(m, s, exc)) from exc
    if statements and conn.info.transaction_status != TransactionStatus.IDLE and not m.transactional:
        raise StatementFailed(f"migration {m.path.name} failed at line {statements[-1].line}: the file ends inside "
                              "a transaction block (a BEGIN without its COMMIT), which was rolled back")


def run_file(conn: psycopg.Connection, m: Migration, statements: Iterable[Statement], *,
             done: Callable[[int], None], failed: Callable[[int, str], None]) -> int:
    """Run ``statements`` of ``m`` on ``conn`` (autocommit), then ``done(ms)``; return the milliseconds taken.

    ``m.transactional``: statements and ``done`` in one transaction. Otherwise one by one, and on a failure
    ``failed(ms, message)`` after rolling back any block the file left open. Raises ``StatementFailed`` when a
    statement fails or ``done`` cannot write (a transactional file then leaves no trace).
    """
    statements = tuple(statements)
    started = time.perf_counter()
    with conn.transaction() if m.transactional else nullcontext():  # the file and its record, or neither
        try:
            _execute(conn, m, statements)
        except StatementFailed as exc:
            if not m.transactional:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()  # the file's own BEGIN block: close it before writing
                failed(ms_since(started), exc.message)
            raise
        ms = ms_since(started)
        try:
            done(ms)
        except psycopg.Error as exc:  # e.g. a transactional file made its transaction read-only
            raise StatementFailed(f"migration {m.path.name} ran, but its bookkeeping could not be written: "
                                  f"{exc.diag.message_primary or type(exc).__name__} (SQLSTATE {exc.sqlstate})"
                                  ) from exc
    return ms
