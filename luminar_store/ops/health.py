"""One fast answer to "is the database healthy?", for ``luminar-db health`` and health checks of containers.

Healthy: the server answers the settings' login within ``timeout`` seconds, the schema is there (``crime_events``)
and no shipped migration is pending (a node on an older schema than its code fails in odd ways). Three small
queries on one connection, each under ``statement_timeout``; nothing reads a table of rows.

Example::

    >>> result = check_health(load_settings("local"), timeout=3)
    >>> result.healthy, result.reason
    (True, None)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psycopg

from luminar_store.config import Settings
from luminar_store.errors import DatabaseUnavailableError, LuminarError
from luminar_store.ops.connect import connect

__all__ = ["HealthResult", "check_health"]

SCHEMA_PRESENT = "SELECT to_regclass('public.crime_events') IS NOT NULL"


@dataclass
class HealthResult:
    """``healthy``; ``reason`` (one line) when not; ``unreachable`` when the server could not be reached; the
    checks done, by name (``True`` passed); ``seconds`` the whole check took."""

    healthy: bool
    reason: str | None
    unreachable: bool = False
    checks: dict[str, bool] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_health(settings: Settings, *, timeout: float = 3.0, migrations_dir: Path | None = None) -> HealthResult:
    """Check the settings' database (see the module text). Never raises for an unhealthy database: the result
    says why."""
    from luminar_store.migrator import Recorder, discover_migrations, migrations_directory
    from luminar_store.migrator.plan import statuses

    started = time.perf_counter()
    checks: dict[str, bool] = {}

    def done(reason: str | None, *, unreachable: bool = False) -> HealthResult:
        return HealthResult(healthy=reason is None, reason=reason, unreachable=unreachable, checks=checks,
                            seconds=round(time.perf_counter() - started, 3))

    quick = replace(settings, connect_timeout=max(1, math.ceil(timeout)))
    try:
        conn = connect(quick)
    except DatabaseUnavailableError as exc:
        checks["reachable"] = False
        return done(str(exc), unreachable=True)
    except LuminarError as exc:  # the database is missing
        checks["reachable"] = False
        return done(str(exc))
    checks["reachable"] = True
    try:
        with conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(timeout * 1000)}ms",))
            checks["schema"] = bool(conn.execute(SCHEMA_PRESENT).fetchone()[0])
            if not checks["schema"]:
                return done(f"database {settings.name} has no Luminar schema; run: luminar-db migrate")
            found = statuses(discover_migrations(migrations_directory(migrations_dir)), Recorder(conn).applied())
    except (psycopg.Error, LuminarError) as exc:
        checks.setdefault("schema", False)
        return done(f"the server answered but a check failed: {' '.join(str(exc).split())}")
    pending = [s.label for s in found if s.state == "pending"]
    wrong = [f"{s.label} {s.state}" for s in found if s.state not in ("applied", "pending")]
    checks["migrations"] = not pending and not wrong
    if wrong:
        return done(f"migrations need attention: {', '.join(wrong)}; see luminar-db migrate status")
    if pending:
        return done(f"{len(pending)} migration(s) pending: {', '.join(pending)}; run: luminar-db migrate")
    return done(None)
