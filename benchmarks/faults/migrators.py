"""Concurrent migrators: do 10 ``migrate_database`` runs started at once on an empty database apply each migration
once?

Ten threads (each its own connections; the runner is blocking code) call ``migrate_database(conninfo, DEFAULT_DIR)``
together on a fresh, empty database; the runner's advisory lock should let one apply and the others find nothing
pending. Then ``schema_migrations`` is compared with the migration files.

Figures: ``runs``, ``failed_runs`` (a run that raised), ``migrations`` (files), ``applied_total`` (the runs'
applied lists summed), ``applied_more_than_once`` (``applied_total`` beyond the files, plus versions recorded
twice), ``missing_migrations`` (files not recorded), ``seconds``. ``--quick``: 4 runs.

Example: ``.venv/bin/python benchmarks/faults/migrators.py --quick``
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import common
import psycopg
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.migrator import DEFAULT_DIR, discover_migrations, migrate_database

__all__ = ["measure", "run"]

#: Versions recorded by the runner, with how many rows each.
RECORDED = "SELECT version::text, count(*) FROM schema_migrations GROUP BY 1"


def measure(conninfo: str, *, runs: int) -> dict[str, object]:
    """``runs`` concurrent migrators on the empty database of ``conninfo`` (blocking; call it in a thread)."""
    files = discover_migrations(DEFAULT_DIR)
    gate = threading.Barrier(runs)
    applied: list[int] = []
    errors: list[str] = []

    def migrator() -> None:
        gate.wait()
        try:
            applied.append(len(migrate_database(conninfo, DEFAULT_DIR)))
        except Exception as exc:  # noqa: BLE001 - a failed run is a figure
            errors.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    threads = [threading.Thread(target=migrator, name=f"migrator-{i}") for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = common.elapsed(start)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        recorded = {version: int(n) for version, n in conn.execute(RECORDED).fetchall()}
    versions = {str(m.version) for m in files}
    twice = sum(n - 1 for n in recorded.values() if n > 1) + max(sum(applied) - len(files), 0)
    return {"runs": runs, "failed_runs": len(errors), "errors": errors[:5], "migrations": len(files),
            "applied_total": sum(applied), "applied_more_than_once": twice,
            "missing_migrations": len(versions - set(recorded)), "seconds": seconds}


async def run(*, quick: bool = False) -> dict[str, object]:
    """The scenario on a new empty database of a scratch server: 10 runs (``quick``: 4)."""
    async with common.scratch_database() as settings:
        return await asyncio.to_thread(_on_new_database, settings, 4 if quick else 10)


def _on_new_database(settings: Settings, runs: int) -> dict[str, object]:
    name = "luminar_migrators"
    with psycopg.connect(settings.conninfo(dbname="postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return measure(settings.conninfo(dbname=name), runs=runs)


if __name__ == "__main__":
    sys.exit(common.main("migrators", run))
