"""Translation of psycopg errors into ``luminar_store.errors`` at the repository boundary.

Matched on SQLSTATE classes and constraint names, never on message text. The server's message is kept (it names
the constraint and the offending value, not a secret); the original error stays chained for debugging.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg

from luminar_store.errors import (
    ConflictError,
    DatabaseUnavailableError,
    LuminarError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)

__all__ = ["translate", "translated"]


def translate(exc: psycopg.Error) -> LuminarError | None:
    """The ``LuminarError`` for a psycopg error, or ``None`` when it is not an expected failure."""
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) or ""
    primary = (getattr(diag, "message_primary", None) or str(exc)).strip()
    if isinstance(exc, pg.UniqueViolation):
        return ConflictError(f"{constraint or 'unique key'}: {primary}")
    if isinstance(exc, pg.ForeignKeyViolation):
        return NotFoundError(f"{constraint or 'foreign key'}: {primary}")
    if isinstance(exc, (pg.CheckViolation, pg.NotNullViolation, pg.ExclusionViolation)):
        column = getattr(diag, "column_name", None)
        return ValidationError(column or constraint or None, primary)
    if isinstance(exc, pg.InsufficientPrivilege):
        return PermissionDeniedError(f"{primary}: this login's role may not do it (its grants and row-level "
                                     "security: a node writes only its own rows; see docs/security.md)")
    if isinstance(exc, pg.DataError):
        return ValidationError(None, primary)
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg.QueryCanceled):
        # Raised on a connection already lent, so a statement may have been sent and its answer lost.
        lost = DatabaseUnavailableError(f"database connection failed: {primary.splitlines()[0] if primary else exc}")
        lost.may_have_committed = True
        return lost
    return None


@contextmanager
def translated() -> Iterator[None]:
    """Run a block, re-raising expected psycopg errors as ``LuminarError`` (chained with ``from``)."""
    try:
        yield
    except psycopg.Error as exc:
        mapped = translate(exc)
        if mapped is None:
            raise
        raise mapped from exc
