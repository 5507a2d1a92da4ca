"""How long a synthetic load takes: a scratch database is created on a server, migrated, loaded, and dropped.

Usage (the server must accept the connection as a role that may create databases):

    .venv/bin/python benchmarks/synthetic_load.py --dsn "host=127.0.0.1 port=5432 user=luminar_dev dbname=postgres" \
        --reports 1000000

Prints one JSON line: reports, events, consensus records, seconds, reports per second, workers, batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from luminar_store.migrator import migrate_database  # noqa: E402
from luminar_store.ops.synthetic import load_sample_data  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="maintenance connection (any database of the server)")
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()

    name = f"luminar_synthetic_bench_{os.getpid()}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    target = make_conninfo(args.dsn, dbname=name)
    try:
        migrate_database(target)
        with psycopg.connect(target, autocommit=True) as conn:
            started = time.perf_counter()
            summary = load_sample_data(conn, reports=args.reports, days=args.days, workers=args.workers,
                                       batch_size=args.batch_size)
            seconds = time.perf_counter() - started
        print(json.dumps({"reports": summary.reports, "events": summary.events,
                          "consensus_records": summary.consensus_records, "seconds": round(seconds, 1),
                          "reports_per_second": round(summary.reports / seconds),
                          "workers": args.workers or (2 if args.reports >= 100_000 else 1),
                          "batch_size": args.batch_size, "cpus": os.cpu_count()}))
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
