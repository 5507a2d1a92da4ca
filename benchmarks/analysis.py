"""Time of ``luminar-db analyze`` (every step: Gi* hotspots, DBSCAN clusters, near repeats, risk zones) and of the
read calls of the crime intelligence on the benchmark's world.

On a scratch PostgreSQL + PostGIS server (``scratchpg.py``, removed at the end) the schema is migrated and
``--events`` events of ``eventgen.World`` (a dozen cities with tight hotspots; 35 % verified; 30 days) are copied in
by hand (binary COPY, the bulk path's columns; the triggers keep crime_incidents). Then the analysis runs twice with
its defaults (the second run finds the same data: nothing to rewrite), each step timed, and each read call of the
facade is timed ``--calls`` times (p50). Writes ``benchmarks/results/analysis-<UTC start>.json``. It is a benchmark,
not a test; the figures depend on the machine.

Example: ``.venv/bin/python benchmarks/analysis.py --events 1000000``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def load(conninfo: str, events: int, seed: int) -> None:
    from eventgen import World, as_row

    from luminar_store.repositories.crime_events import COPY_EVENTS, COPY_TYPES

    world = World(seed=seed)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for miner_uid, batch in world.batches(events, batch_size=50_000):
            with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_EVENTS) as copy:
                copy.set_types(COPY_TYPES)
                for event in batch:
                    copy.write_row(as_row(event, miner_uid, uuid.uuid4(), jsonb=Jsonb))
        conn.execute("VACUUM ANALYZE crime_events")


def settings_of(conninfo: str):
    from psycopg.conninfo import conninfo_to_dict

    from luminar_store.config import load_settings

    c = conninfo_to_dict(conninfo)
    return load_settings("testing", environ={
        "LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": c["host"], "LUMINAR_DB_PORT": str(c["port"]),
        "LUMINAR_DB_NAME": c["dbname"], "LUMINAR_DB_USER": c["user"], "LUMINAR_DB_PASSWORD": c.get("password", ""),
        "LUMINAR_DB_SSLMODE": "disable"})


async def reads(settings, calls: int) -> dict[str, float]:
    """p50 milliseconds of each read call of the facade, after the analysis ran."""
    from luminar_store.access import LuminarDB

    db = LuminarDB(settings)
    await db.initialize()
    try:
        out = {}
        for name, call in (("get_crime_hotspots(7)", lambda: db.get_crime_hotspots(days=7)),
                           ("get_significant_hotspots(7) (stored)", lambda: db.get_significant_hotspots(days=7)),
                           ("get_crime_clusters(7)", lambda: db.get_crime_clusters(days=7)),
                           ("get_risk_zones()", lambda: db.get_risk_zones()),
                           ("get_risk_at(New York)", lambda: db.get_risk_at(40.7128, -74.0060)),
                           ("get_near_repeats(7)", lambda: db.get_near_repeats(days=7))):
            await call()
            times = []
            for _ in range(calls):
                t = time.perf_counter()
                await call()
                times.append(time.perf_counter() - t)
            out[name] = statistics.median(times) * 1000
        return out
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events loaded (default 1,000,000)")
    parser.add_argument("--calls", type=int, default=20, help="calls of each read (default 20)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from scratchpg import ScratchServer

    from luminar_store.analysis.analyze import AnalysisPlan, analyze
    from luminar_store.migrator import migrate_database

    started = dt.datetime.now(dt.timezone.utc)
    results: dict = {"events": args.events, "seed": args.seed, "runs": []}
    with ScratchServer() as server:
        conninfo = server.conninfo()
        migrate_database(conninfo)
        t = time.perf_counter()
        load(conninfo, args.events, args.seed)
        print(f"loaded {args.events:,} events in {time.perf_counter() - t:.0f} s", flush=True)
        settings = settings_of(conninfo)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            # as autovacuum does after a load
            conn.execute("VACUUM ANALYZE crime_incidents, incident_cell_days, incident_cell_hours")
            results["incidents"] = conn.execute("SELECT count(*) FROM crime_incidents").fetchone()[0]
        for name in ("analyze (first run)", "analyze (again, same data)"):
            t = time.perf_counter()
            done = analyze(settings, AnalysisPlan())
            seconds = time.perf_counter() - t
            results["runs"].append({"run": name, "seconds": round(seconds, 2), "steps": done.seconds,
                                    "figures": done.figures})
            print(f"{name}: {seconds:.1f} s, " + ", ".join(f"{k} {v:.1f} s" for k, v in done.seconds.items())
                  + f"\n  {done.headline()}", flush=True)
        results["reads"] = asyncio.run(reads(settings, args.calls))
        for name, ms in results["reads"].items():
            print(f"{name:>40}: p50 {ms:.1f} ms", flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"analysis-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
