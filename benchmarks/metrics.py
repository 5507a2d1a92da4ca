"""What one refresh of `luminar-db metrics` costs at a million events (``benchmarks/README.md``, "Metrics").

On a scratch PostgreSQL + PostGIS server (``scratchpg.py``), migrated: the synthetic loader's data (``--reports``,
default 1,000,000 raw reports with their events, consensus records, miners and validators), then verified events
added by one ``INSERT ... SELECT`` (triggers off: filler, not a node's writes) until ``crime_events`` holds
``--events`` rows (default 1,000,000). A login in
``luminar_monitor`` then reads the figures as the endpoint does (``read_snapshot``: ``SET ROLE luminar_monitor``,
the stats functions, sizes, migrations), ``--runs`` times (5); each statement's time comes from the same calls
timed one by one. A scrape between refreshes serves the cache: its cost is the exposition's formatting, measured too.

Example: .venv/bin/python benchmarks/metrics.py --reports 1000000 --events 1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# Verified, located events around a few cities, spread over the last 30 days, to reach the target count.
ADD_EVENTS = """
INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", severity_level, confidence_score,
                          verification_status)
SELECT 1 + (i %% 50), (ARRAY['theft', 'assault', 'burglary', 'vandalism'])[1 + i %% 4],
       (ARRAY[40.71, 48.86, -33.87, 35.68, -23.55])[1 + i %% 5] + ((i::bigint * 7919) %% 1000) / 10000.0,
       (ARRAY[-74.00, 2.35, 151.21, 139.69, -46.63])[1 + i %% 5] + ((i::bigint * 104729) %% 1000) / 10000.0,
       now() - make_interval(mins => (i %% 43200)), 1 + i %% 5, 0.8, 'verified'
  FROM generate_series(1, %(n)s::integer) AS i
"""


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reports", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import psycopg
    from prometheus_client import CollectorRegistry, generate_latest
    from psycopg import sql
    from scratchpg import DBNAME, USER, ScratchServer, stop_on_sigterm

    from luminar_store.config import load_settings
    from luminar_store.limits import AGREEMENT_TOLERANCE
    from luminar_store.migrator import migrate_database
    from luminar_store.ops import stats
    from luminar_store.ops.metrics import TABLE_SIZES, NetworkCollector, read_snapshot
    from luminar_store.ops.synthetic import load_sample_data

    stop_on_sigterm()
    with ScratchServer() as server:
        environ = {"LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port), "LUMINAR_DB_NAME": DBNAME,
                   "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""}
        owner = load_settings("local", environ=environ)
        migrate_database(owner.conninfo())
        started = time.perf_counter()
        with psycopg.connect(owner.conninfo(), autocommit=True) as conn:
            load_sample_data(conn, reports=args.reports, days=30, seed=5)
            have = conn.execute("SELECT count(*) FROM crime_events").fetchone()[0]
            if have < args.events:  # filler rows: without the per-row triggers (counters, audit), as a restore would
                conn.execute("SET session_replication_role = replica")
                conn.execute(ADD_EVENTS, {"n": args.events - have})
                conn.execute("RESET session_replication_role")
            conn.execute("VACUUM ANALYZE")
            conn.execute("CREATE ROLE bench_monitor LOGIN IN ROLE luminar_monitor")
            conn.execute("GRANT pg_monitor TO luminar_monitor")
            counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                      for t in ("raw_incident_reports", "crime_events", "consensus_records")}
        print(f"loaded in {time.perf_counter() - started:.0f} s: {counts}", file=sys.stderr)
        monitor = load_settings("local", environ={**environ, "LUMINAR_DB_USER": "bench_monitor"})
        refresh = [timed(lambda: read_snapshot(monitor)) for _ in range(args.runs)]
        parts: dict[str, list[float]] = {}
        with psycopg.connect(monitor.conninfo(), autocommit=True) as conn:
            conn.execute("SET ROLE luminar_monitor")
            queries = {"reports by status": (stats.REPORTS_BY_STATUS, None),
                       "events by status": (stats.EVENTS_BY_STATUS, None),
                       "throughput (24 h)": (stats.THROUGHPUT, {"hours": 24}),
                       "consensus agreement (7 d)": (stats.AGREEMENT, {"days": 7, "tolerance": AGREEMENT_TOLERANCE}),
                       "validators": (stats.VALIDATORS, None), "coverage by region": (stats.COVERAGE, None),
                       "miners": (stats.MINERS, None), "table sizes": (TABLE_SIZES, {"limit": 10})}
            for _ in range(args.runs):
                for name, (query, params) in queries.items():
                    parts.setdefault(name, []).append(timed(lambda q=query, v=params: conn.execute(q, v).fetchall()))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(NetworkCollector(monitor, refresh_every=3600))
        generate_latest(registry)  # the first scrape reads
        cached = [timed(lambda: generate_latest(registry)) for _ in range(50)]
    document = {
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "load_average": os.getloadavg(),
        "rows": counts, "runs": args.runs,
        "refresh_ms_median": round(statistics.median(refresh), 1), "refresh_ms_max": round(max(refresh), 1),
        "statement_ms_median": {k: round(statistics.median(v), 1) for k, v in parts.items()},
        "cached_scrape_ms_median": round(statistics.median(cached), 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"metrics-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
