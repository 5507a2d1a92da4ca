"""Fault scenario: miners claim raw reports while their database connections are killed; nothing may stay stranded.

On a throw-away server (``benchmarks/scratchpg.py``), migrated with the package's migrations, a few thousand reports
are stored; 8 claimers (the ``LuminarDB`` facade, one pool) claim batches and mark them processed while a side
connection kills the claimers' backends (``pg_terminate_backend``) several times. A kill can fall before a claim
commits (it rolls back), or after it commits and before its rows reach the claimer: those reports stay
``processing`` with nobody working on them until their lease ends. Once the claimers have drained the queue, the
scenario moves every claim back past the lease (rather than waiting for it) and claims until nothing is left.

Figures: ``reports``; ``delivered`` (reports some claimer received at least once); ``delivered_twice`` (received
more than once: a claim that expired after its miner lost it); ``stranded_at_drain`` (still ``processing`` when
the claimers stopped, waiting for their lease); ``released_by_lease`` (handed out again after the lease);
``stranded_after_lease`` (still ``processing`` after the lease and the final claims: the goal is 0);
``never_delivered``; ``kills`` (kills that ended at least one claimer's connection); ``claim_errors`` (claims that
failed on a killed connection).

Example::

    python benchmarks/faults/claims.py --quick
    figures = asyncio.run(claims.run(quick=True))    # from benchmarks/faults/run.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

_BENCHMARKS = Path(__file__).resolve().parents[1]
if str(_BENCHMARKS) not in sys.path:  # scratchpg.py lives beside the benchmark, not in the package
    sys.path.insert(0, str(_BENCHMARKS))

__all__ = ["run", "main"]

CLAIMERS = 8
BATCH = 10

# name: kill_claimers
# Ends every client connection of the scenario's database but the side connection's own (the claimers' pool).
KILL_CLAIMERS = """
SELECT count(pg_terminate_backend(pid))
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""

# name: age_claims
# Moves every claim still out past the lease, as if the lease had run out (the scenario never waits for the clock).
AGE_CLAIMS = """
UPDATE raw_incident_reports
   SET claimed_at = claimed_at - make_interval(mins => %(minutes)s)
 WHERE status = 'processing'
"""

# name: processing_count
# Reports still claimed.
PROCESSING_COUNT = "SELECT count(*) FROM raw_incident_reports WHERE status = 'processing'"


def _reports(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{"external_id": f"fault-claims-{n}", "description": f"Fault scenario report {n}",
             "geotag": {"lat": 40.0 + (n % 1000) * 1e-4, "lng": -74.0 + (n // 1000) * 1e-4},
             "timestamp": now - timedelta(seconds=count - n)} for n in range(count)]


async def _scenario(settings: Any, *, reports: int, kills_wanted: int) -> dict[str, object]:
    import psycopg

    from luminar_store.access import LuminarDB
    from luminar_store.errors import LuminarError

    facade = LuminarDB(settings)
    received: Counter[uuid.UUID] = Counter()
    claim_errors = 0
    finished = False
    try:
        await facade.store_raw_reports(_reports(reports))

        async def claimer(uid: int) -> None:
            nonlocal claim_errors
            empty = failed = 0
            while empty < 2:  # twice nothing: the queue is drained (a kill may have put a claim back meanwhile)
                try:
                    batch = await facade.claim_reports(miner_uid=uid, limit=BATCH)
                except LuminarError:
                    claim_errors += 1
                    failed += 1
                    if failed >= 100:
                        raise
                    continue
                failed = 0
                empty = 0 if batch else empty + 1
                for report in batch:
                    received[report.report_id] += 1
                    try:
                        await facade.mark_report_processed(report.report_id)
                    except LuminarError:
                        pass  # the report stays 'processing': its lease brings it back

        async def killer(side: psycopg.AsyncConnection) -> int:
            kills = 0
            for k in range(1, kills_wanted + 1):
                share = reports * k // (kills_wanted + 2)  # at fixed shares of the work, while claims are in flight
                while not finished and len(received) < share:
                    await asyncio.sleep(0.005)
                if finished:
                    break
                cur = await side.execute(KILL_CLAIMERS)
                kills += (await cur.fetchone())[0] > 0
            return kills

        async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as side:
            kill_task = asyncio.create_task(killer(side))
            try:
                await asyncio.gather(*(claimer(uid) for uid in range(1, CLAIMERS + 1)))
            finally:
                finished = True
                kills = await kill_task
            stranded_at_drain = (await (await side.execute(PROCESSING_COUNT)).fetchone())[0]
            await side.execute(AGE_CLAIMS, {"minutes": settings.claim_lease_minutes + 1})
            released = 0
            while batch := await facade.claim_reports(miner_uid=CLAIMERS + 1, limit=100):
                released += len(batch)
                for report in batch:
                    received[report.report_id] += 1
                    await facade.mark_report_processed(report.report_id)
            stranded_after_lease = (await (await side.execute(PROCESSING_COUNT)).fetchone())[0]
    finally:
        await facade.close()
    return {"reports": reports, "claimers": CLAIMERS, "delivered": len(received),
            "delivered_twice": sum(1 for n in received.values() if n > 1), "stranded_at_drain": stranded_at_drain,
            "released_by_lease": released, "stranded_after_lease": stranded_after_lease,
            "never_delivered": reports - len(received), "kills": kills, "claim_errors": claim_errors}


async def run(*, quick: bool = False) -> dict[str, object]:
    """Run the scenario on a scratch server (started and removed here) and return its figures (see the module
    text); ``quick``: fewer reports and kills. Raises ``RuntimeError`` when the scratch server cannot start.

    Example: ``figures = await run(quick=True); assert figures["stranded_after_lease"] == 0``
    """
    from scratchpg import DBNAME, USER, ScratchServer

    from luminar_store.config import load_settings
    from luminar_store.migrator import DEFAULT_DIR, migrate_database

    started = time.monotonic()
    with ScratchServer() as server:
        await asyncio.to_thread(migrate_database, server.conninfo(), DEFAULT_DIR)
        settings = load_settings("local", environ={
            "LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port), "LUMINAR_DB_NAME": DBNAME,
            "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""})
        figures = await _scenario(settings, reports=800 if quick else 4000, kills_wanted=3 if quick else 6)
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    """``python benchmarks/faults/claims.py [--quick]``: print the figures as JSON; exit 1 when a report stays
    stranded after the lease or was never delivered."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="800 reports and 3 kills instead of 4000 and 6")
    args = parser.parse_args(argv)
    # psycopg warns once per killed connection ("discarding closed connection", "error ignored terminating
    # pipeline"): the kills are the scenario, so only the figures are printed.
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    figures = asyncio.run(run(quick=args.quick))
    print(json.dumps(figures, indent=2))
    return 0 if figures["stranded_after_lease"] == 0 and figures["never_delivered"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
