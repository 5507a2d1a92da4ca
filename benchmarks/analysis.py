"""Time of the database's analyses (migration 20261130045100) on the benchmark's world: DBSCAN clusters and
near-repeat flags over the incidents of a window.

On a scratch PostgreSQL + PostGIS server (``scratchpg.py``, removed at the end) the schema is migrated and
``--events`` events of ``eventgen.World`` (a dozen cities with tight hotspots; 35 % verified; 30 days) are copied in
by hand (binary COPY, the bulk path's columns). Then, for each window in ``--days``, as the owner:
``luminar_analyze_clusters(days, 200, 5)`` twice (the second run finds the same data: no event row written) and
``luminar_flag_near_repeats(days, 200, 168, 10)`` twice. Prints each run's wall time and counts, and writes
``benchmarks/results/analysis-<UTC start>.json``. It is a benchmark, not a test; the figures depend on the machine.

Example: ``.venv/bin/python benchmarks/analysis.py --events 1000000 --days 7 14``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
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


def timed(conn: psycopg.Connection, query: str, params: tuple) -> dict:
    start = time.perf_counter()
    cur = conn.execute(query, params)
    row = dict(zip([d.name for d in cur.description], cur.fetchone(), strict=True))
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events loaded (default 1,000,000)")
    parser.add_argument("--days", type=int, nargs="+", default=[7, 14], help="windows in days (default 7 14)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from scratchpg import ScratchServer

    from luminar_store.migrator import migrate_database

    started = dt.datetime.now(dt.timezone.utc)
    results: dict = {"events": args.events, "seed": args.seed, "runs": []}
    with ScratchServer() as server:
        conninfo = server.conninfo()
        migrate_database(conninfo)
        t = time.perf_counter()
        load(conninfo, args.events, args.seed)
        print(f"loaded {args.events:,} events in {time.perf_counter() - t:.0f} s", flush=True)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for days in args.days:
                verified = conn.execute("SELECT count(*) FROM crime_events WHERE verification_status = 'verified' "
                                        "AND \"timestamp\" >= now() - make_interval(days => %s)", (days,)).fetchone()[0]
                for name, query, params in (
                        ("clusters", "SELECT * FROM luminar_analyze_clusters(%s, %s, %s)", (days, 200.0, 5)),
                        ("clusters again", "SELECT * FROM luminar_analyze_clusters(%s, %s, %s)", (days, 200.0, 5)),
                        ("near repeats", "SELECT * FROM luminar_flag_near_repeats(%s, %s, %s, %s)",
                         (days, 200.0, 168.0, 10.0)),
                        ("near repeats again", "SELECT * FROM luminar_flag_near_repeats(%s, %s, %s, %s)",
                         (days, 200.0, 168.0, 10.0))):
                    row = timed(conn, query, params)
                    row.update(run=name, days=days, verified_events=verified)
                    results["runs"].append(row)
                    print(f"{name:>20} {days:>3} d ({verified:,} verified events): {row['seconds']:7.2f} s  "
                          + ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("seconds", "run", "days",
                                                                                      "verified_events")), flush=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"analysis-{started:%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
