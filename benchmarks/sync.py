"""Throughput of ``luminar-db sync`` (``luminar_store.ops.sync``): central -> copy on one scratch server.

On a scratch PostgreSQL + PostGIS server (``scratchpg.py``, removed at the end) two databases are migrated with
``migrate_database``: central, loaded with ``load_sample_data`` (N reports over the last day, with their events,
consensus records, clusters, zones, miners and validators), and the copy. Central is read by a login of the
``luminar_sync`` group, the copy written by the server's owner. Three runs are timed:

* full: ``sync(full=True)`` into the empty copy (everything inserted);
* again: the same once more (every row read, found equal, nothing written);
* watermark: after 1 % of central's events are updated, ``sync()`` with the watermark alone.

Figures: rows read per second (``SyncResult.rows_per_second``) and the process's peak RSS before and after the runs.
It is a benchmark, not a test; the figures depend on the machine and its load. Prints a table and writes
``benchmarks/results/sync-<UTC start>.json``.

Example: ``.venv/bin/python benchmarks/sync.py --reports 20000``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20_000, help="reports loaded into central (default 20,000)")
    parser.add_argument("--batch-size", type=int, default=5_000, help="sync batch size (default 5,000)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(HERE))
    import psycopg
    from psycopg import sql
    from scratchpg import DBNAME, ScratchServer, stop_on_sigterm

    from luminar_store.config import Settings
    from luminar_store.migrator import migrate_database
    from luminar_store.ops.sync import sync
    from luminar_store.ops.synthetic import load_sample_data

    stop_on_sigterm()
    started = dt.datetime.now(dt.UTC)
    rows: list[dict[str, object]] = []
    with ScratchServer() as server:
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as admin:
            admin.execute("CREATE DATABASE luminar_bench_copy")
        for name in (DBNAME, "luminar_bench_copy"):
            migrate_database(server.conninfo(name))
        with psycopg.connect(server.conninfo(DBNAME), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE sync_reader LOGIN IN ROLE luminar_sync"))
            print(f"loading {args.reports:,} reports into central ...", file=sys.stderr)
            load_sample_data(admin, reports=args.reports, days=1, seed=7)
        central = Settings.from_conninfo(server.conninfo(DBNAME), env="testing")
        reader = Settings.from_conninfo(server.conninfo(DBNAME).replace("user=luminar_bench", "user=sync_reader"),
                                        env="testing")
        copy = Settings.from_conninfo(server.conninfo("luminar_bench_copy"), env="testing")
        before = _peak_mib()

        def timed(label: str, **options: object) -> None:
            result = sync(reader, copy, batch_size=args.batch_size, **options)  # type: ignore[arg-type]
            rows.append({"run": label, "rows_read": result.rows_read, "rows_changed": result.rows_changed,
                         "seconds": round(result.seconds, 3), "rows_per_second": round(result.rows_per_second)})
            print(f"{label:<10} {result.rows_read:>10,} read {result.rows_changed:>10,} changed "
                  f"{result.seconds:>7.2f} s {result.rows_per_second:>10,.0f} rows/s", file=sys.stderr)

        timed("full", full=True)
        timed("again", full=True)
        with psycopg.connect(central.conninfo(), autocommit=True) as admin:
            admin.execute("UPDATE crime_events SET title = 'updated for the benchmark' "
                          "WHERE event_id IN (SELECT event_id FROM crime_events TABLESAMPLE BERNOULLI (1))")
        timed("watermark")
        after = _peak_mib()

    report = {"started": started.isoformat(), "reports": args.reports, "batch_size": args.batch_size,
              "runs": rows, "peak_rss_mib_before_sync": round(before, 1), "peak_rss_mib_after_sync": round(after, 1),
              "load_average": os.getloadavg(), "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"sync-{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print("| run | rows read | rows changed | s | rows/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['rows_read']:,} | {r['rows_changed']:,} | {r['seconds']} "
              f"| {r['rows_per_second']:,} |")
    print(f"peak RSS {before:.0f} MiB before the runs, {after:.0f} MiB after; load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
