"""How fast a real-time copy follows central (``luminar_store.ops.realtime``): two scratch servers, central with
``wal_level = logical``, both migrated, the local one subscribed. Measures the delay from a commit on central to the
row being visible locally (single reports, one at a time) and the rate at which a bulk load on central arrives.
Prints the figures and writes them to ``benchmarks/results/realtime-<stamp>.json``.

    .venv/bin/python benchmarks/realtime.py [--singles 50] [--bulk 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scratchpg import ScratchServer, stop_on_sigterm  # noqa: E402

from luminar_store.config import Settings  # noqa: E402
from luminar_store.migrator import DEFAULT_DIR, migrate_database  # noqa: E402
from luminar_store.ops import realtime  # noqa: E402

REPORT = """INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "timestamp")
VALUES (%s, 'seen from the window', 48.85, 2.35, now())"""
POLL = 0.002  # seconds between looks at the local copy


def _wait_for(local: psycopg.Connection, query: str, params: tuple, done, deadline: float = 120.0) -> float:
    """Seconds until ``done(row)`` holds for ``query``'s first row on the local copy."""
    start = time.perf_counter()
    while not done(local.execute(query, params).fetchone()):
        if time.perf_counter() - start > deadline:
            raise RuntimeError(f"nothing arrived within {deadline:g} s")
        time.sleep(POLL)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--singles", type=int, default=50, help="reports committed one at a time (default 50)")
    p.add_argument("--bulk", type=int, default=20_000, help="reports of the bulk load (default 20,000)")
    p.add_argument("--durable", action="store_true", help="central with synchronous_commit = on (as production): "
                   "without it a commit reaches the WAL sender only at the WAL writer's next flush (200 ms)")
    args = p.parse_args(argv)
    stop_on_sigterm()
    with ScratchServer(durable=args.durable, extra={"wal_level": "logical"}) as central, ScratchServer() as copy:
        for server in (central, copy):
            migrate_database(server.conninfo(), DEFAULT_DIR)
        with psycopg.connect(central.conninfo(), autocommit=True) as admin:
            realtime.add_replicator(admin, "central_copy", "bench-only")
        local = Settings.from_conninfo(copy.conninfo(), env="testing")
        source = central.conninfo().replace("user=luminar_bench", "user=central_copy")
        realtime.subscribe(local, source, admin_url=copy.conninfo())
        with psycopg.connect(central.conninfo(), autocommit=True) as up, \
                psycopg.connect(copy.conninfo(), autocommit=True) as down:
            _wait_for(down, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate <> 'r'", (),
                      lambda row: row[0] == 0)
            delays = []
            for n in range(args.singles):
                up.execute(REPORT, (f"single-{n}",))
                delays.append(_wait_for(down, "SELECT count(*) FROM raw_incident_reports WHERE external_id = %s",
                                        (f"single-{n}",), lambda row: row[0] == 1))
            start = time.perf_counter()
            with up.cursor().copy("COPY raw_incident_reports (external_id, text_description, latitude, longitude, "
                                  "\"timestamp\") FROM STDIN") as load:
                for n in range(args.bulk):
                    load.write_row((f"bulk-{n}", "seen from the window", 48.85, 2.35, datetime.now(UTC)))
            committed = time.perf_counter() - start
            arrived = committed + _wait_for(down, "SELECT count(*) FROM raw_incident_reports", (),
                                            lambda row: row[0] == args.singles + args.bulk)
        realtime.unsubscribe(local, admin_url=copy.conninfo())
    figures = {"central_synchronous_commit": "on" if args.durable else "off",
               "single_delay_ms_median": round(statistics.median(delays) * 1000, 1),
               "single_delay_ms_max": round(max(delays) * 1000, 1),
               "bulk_rows": args.bulk, "bulk_seconds_to_arrive": round(arrived, 2),
               "bulk_rows_per_second": round(args.bulk / arrived)}
    out = HERE / "results" / f"realtime-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
