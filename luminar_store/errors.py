"""One error hierarchy for everything luminar_store raises on purpose.

Each error carries the fact a user needs (the field, the value's problem, the fix) and never a secret.
Callers catch ``LuminarError`` for "an expected failure"; anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "LuminarError",
    "ConfigError",
    "ValidationError",
    "NotFoundError",
    "ConflictError",
    "PermissionDeniedError",
    "MigrationError",
    "DatabaseUnavailableError",
    "DatabaseMissingError",
    "WriteInDoubtError",
    "PoolExhaustedError",
    "OperationError",
]


class LuminarError(Exception):
    """Base of every error luminar_store raises on purpose."""

    #: Exit code a command line uses for this kind of failure.
    exit_code: int = 1


class ConfigError(LuminarError):
    """A setting is missing, malformed or unsafe; the message names the variable and the fix."""


class ValidationError(LuminarError, ValueError):
    """Input refused before it reached SQL.

    ``field`` names the offending field (``None`` when the whole value is wrong) and ``rule`` the rule it broke.
    """

    def __init__(self, field: str | None, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}" if field else rule)


class NotFoundError(LuminarError, LookupError):
    """A row that a call refers to does not exist."""


class ConflictError(LuminarError):
    """A write collides with an existing row (a unique key) in a way that is not idempotent."""


class PermissionDeniedError(LuminarError, PermissionError):
    """The login may not do this: its group role has no right to it, or row-level security keeps it to its own rows
    (a miner's events and claims, a validator's verdicts and records). Nothing was written. ``docs/security.md``
    lists each kind's rights."""


class MigrationError(LuminarError):
    """A migration could not be planned or applied; the database keeps its earlier state."""


class DatabaseUnavailableError(LuminarError):
    """The server cannot be reached; the message names host, port and database and the hint.

    ``may_have_committed`` is True when the connection was lost after a statement was sent (its answer never came:
    a write may have committed), False when nothing reached the server.
    """

    exit_code = 2
    may_have_committed: bool = False


class WriteInDoubtError(DatabaseUnavailableError):
    """A write was sent, the connection was lost before its answer, and the server did not answer again within the
    call's deadline (``LUMINAR_DB_CONNECT_TIMEOUT``): the write may or may not have committed. The facade's writes
    are idempotent: calling again with the same arguments stores nothing twice."""

    may_have_committed = True


class DatabaseMissingError(DatabaseUnavailableError):
    """The server answers, but the database named by the settings does not exist on it (create it: ``setup``)."""


class PoolExhaustedError(LuminarError):
    """No pooled connection became free within the configured timeout."""


class OperationError(LuminarError):
    """An operational command (backup, restore, set-up) could not do its work."""
