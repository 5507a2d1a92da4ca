"""How long a synthetic load takes, beside a plain COPY of the same rows into the same schema, in the same run.

Each measurement gets a fresh database on one server, migrated the same way (so with the same triggers and the
same auditing). "Ours" is ``load_sample_data`` (the synthetic loader: rows made in Python, binary COPY in batches
of ``--batch-size`` reports, ``--workers`` writers). After the first load its rows are dumped from that database
(``COPY (SELECT <the loader's columns> ... ORDER BY <key>) TO STDOUT (FORMAT BINARY)``, one file per table and
batch, in a temporary directory); "plain" is one connection that COPYs those files back unchanged (``COPY t (<cols>)
FROM STDIN (FORMAT BINARY)``) into another fresh database: the small tables first (miners, validators, clusters,
zones), then per batch the reports, events and consensus records, one transaction a batch as the loader commits
them. The plain load makes no row and parses nothing: it is what the server takes. Both run with the schema's
triggers as they are.

Fair order: ``--rounds`` (default 2) alternates which goes first (round 1: ours then plain; round 2: plain then
ours, ...); the server is checkpointed before every timed load. The loads use one fixed ``now``, so every "ours"
writes the same rows. The figure is best ours / best plain (goal <= 1.5).

Without ``--dsn`` it starts its own scratch server (``scratchpg.py``, removed at the end). With ``--dsn`` it
creates and drops its scratch databases on that server (the role must be allowed to create databases).

Writes ``benchmarks/results/synthetic-<UTC start>.json`` (every time, rows per table, load average at the start
and the end, cpus, commit). It is a benchmark, not a test; the figures depend on the machine.

Example: ``.venv/bin/python benchmarks/synthetic_load.py --reports 1000000`` (``make bench-synthetic``)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from luminar_store.migrator import migrate_database  # noqa: E402
from luminar_store.ops.synthetic import load_sample_data  # noqa: E402
from luminar_store.ops.synthetic.copying import BATCH_SETTINGS  # noqa: E402
from luminar_store.ops.synthetic.stream import (  # noqa: E402
    BLOCK,
    CONSENSUS_COLUMNS,
    EVENT_COLUMNS,
    REPORT_COLUMNS,
)

GOAL = 1.5  # ours / plain COPY, at most
SEED = 42
#: The tables the loader writes before its batches, with their key: copied whole, every stored (not generated)
#: column, before the batches.
SMALL_TABLES = (("miner_performance", "miner_uid"), ("validator_performance", "validator_uid"),
                ("crime_clusters", "cluster_id"), ("risk_zones", "zone_id"))
BULK_TABLES = (("raw_incident_reports", REPORT_COLUMNS, "report_id"), ("crime_events", EVENT_COLUMNS, "event_id"),
               ("consensus_records", CONSENSUS_COLUMNS, "record_id"))
# Which batch of the load each row came in: a report's number is the tail of its external id; an event's reports
# are of one incident, which never spans two blocks; a consensus record goes with its event.
BATCH_OF = (
    "CREATE TEMPORARY TABLE report_batch (id uuid, batch integer)",
    "INSERT INTO report_batch SELECT report_id, substring(external_id FROM '-([0-9]+)$')::integer / %(per_batch)s "
    "FROM raw_incident_reports",
    "CREATE TEMPORARY TABLE event_batch AS SELECT e.event_id AS id, r.batch FROM crime_events AS e "
    "JOIN report_batch AS r ON r.id = e.related_reports[1]",
    "CREATE TEMPORARY TABLE consensus_batch AS SELECT c.record_id AS id, e.batch FROM consensus_records AS c "
    "JOIN event_batch AS e ON e.id = c.event_id",
    "CREATE INDEX ON report_batch (batch, id)",
    "CREATE INDEX ON event_batch (batch, id)",
    "CREATE INDEX ON consensus_batch (batch, id)",
    "ANALYZE report_batch, event_batch, consensus_batch",
)
BATCH_TABLES = {"raw_incident_reports": "report_batch", "crime_events": "event_batch",
                "consensus_records": "consensus_batch"}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Databases:
    """Fresh migrated databases on one server: ``fresh()`` makes one, ``drop()`` removes it."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.made: list[str] = []

    def fresh(self) -> str:
        name = f"luminar_synthetic_bench_{os.getpid()}_{len(self.made)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.made.append(name)
        target = make_conninfo(self.admin_dsn, dbname=name)
        migrate_database(target)
        return target

    def drop(self, target: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(target)["dbname"]
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def drop_all(self) -> None:
        for name in self.made:
            with contextlib.suppress(psycopg.Error):
                self.drop(make_conninfo(self.admin_dsn, dbname=name))


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, *, children: bool) -> float:
    """CPU seconds of process ``pid`` (user + system), with those of its reaped children when ``children``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / _TICK


class CpuMeter:
    """CPU seconds spent between ``start()`` and ``stop()`` by this process and its children (the loader's writers),
    and by the server (the postmaster, its live backends and those that ended: a scratch server on this machine
    only; None otherwise). It says where a load's time goes: making rows or the server taking them."""

    def __init__(self, postmaster: int | None) -> None:
        self.postmaster = postmaster

    def _server(self) -> float | None:
        if self.postmaster is None:
            return None
        from scratchpg import _children

        return _proc_cpu(self.postmaster, children=True) + sum(
            _proc_cpu(pid, children=True) for pid in _children(self.postmaster))

    @staticmethod
    def _client() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> None:
        self.client0, self.server0 = self._client(), self._server()

    def stop(self) -> dict:
        server = self._server()
        return {"client_cpu_s": round(self._client() - self.client0, 2),
                "server_cpu_s": None if server is None or self.server0 is None else round(server - self.server0, 2)}


def checkpoint(dsn: str) -> None:
    """Flush the previous load's dirty pages, so that no load pays for the one before."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def stored_columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped "
        "AND attgenerated = '' ORDER BY attnum", [table])]


# -- ours -------------------------------------------------------------------------------------------------------------
def load_ours(target: str, args: argparse.Namespace, now: float, meter: CpuMeter) -> dict:
    with psycopg.connect(target, autocommit=True) as conn:
        meter.start()
        started = time.perf_counter()
        summary = load_sample_data(conn, reports=args.reports, days=args.days, seed=SEED, now=now,
                                   workers=args.workers, batch_size=args.batch_size)
        seconds = time.perf_counter() - started
        cpu = meter.stop()
    return {"seconds": round(seconds, 2), **cpu, "reports": summary.reports, "events": summary.events,
            "consensus_records": summary.consensus_records, "batches": summary.batches,
            "reports_per_second": round(summary.reports / seconds)}


# -- the dump and the plain COPY ----------------------------------------------------------------------------------
def dump(source: str, directory: Path, per_batch: int) -> list[tuple[str, list[str], Path]]:
    """The loaded rows as binary COPY files, in the plain load's order: (table, columns, file)."""
    files: list[tuple[str, list[str], Path]] = []
    with psycopg.connect(source, autocommit=True) as conn, conn.cursor() as cur:
        for table, key in SMALL_TABLES:
            columns = stored_columns(conn, table)
            files.append((table, columns, _dump_one(cur, directory / f"{table}.copy", sql.SQL(
                "COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT (FORMAT BINARY)").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), sql.Identifier(key)))))
        for statement in BATCH_OF:
            conn.execute(statement, {"per_batch": per_batch} if "%(per_batch)s" in statement else None)
        batches = conn.execute("SELECT coalesce(max(batch), -1) + 1 FROM report_batch").fetchone()[0]
        for batch in range(batches):
            for table, columns, key in BULK_TABLES:
                names = [name for name, _ in columns]
                query = sql.SQL("COPY (SELECT {} FROM {} AS t JOIN {} AS b ON b.id = t.{} WHERE b.batch = {} "
                                "ORDER BY t.{}) TO STDOUT (FORMAT BINARY)").format(
                    sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(n)) for n in names),
                    sql.Identifier(table), sql.Identifier(BATCH_TABLES[table]), sql.Identifier(key),
                    sql.Literal(batch), sql.Identifier(key))
                files.append((table, names, _dump_one(cur, directory / f"{table}-{batch:05d}.copy", query)))
    return files


def _dump_one(cur: psycopg.Cursor, path: Path, query: sql.Composable) -> Path:
    with path.open("wb") as out, cur.copy(query) as copy:
        for chunk in copy:
            out.write(chunk)
    return path


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def load_plain(target: str, files: list[tuple[str, list[str], Path]], meter: CpuMeter, *,
               tuned: bool = False) -> dict:
    """COPY the dumped files, unchanged, through one connection: the small tables in one transaction, then one
    transaction per batch (its reports, events and consensus records). ``tuned``: each batch's transaction first
    sets what the loader's does (``copying.BATCH_SETTINGS``: generic plans for the per-event trigger, the miners'
    counters deferred; their one summing statement a batch is left out, in the baseline's favour)."""
    groups: list[list[tuple[str, list[str], Path]]] = [[f for f in files if f[0] in dict(SMALL_TABLES)]]
    bulk = [f for f in files if f[0] not in dict(SMALL_TABLES)]
    groups += [bulk[i:i + len(BULK_TABLES)] for i in range(0, len(bulk), len(BULK_TABLES))]
    with psycopg.connect(target, autocommit=True) as conn, conn.cursor() as cur:
        meter.start()
        started = time.perf_counter()
        for group in groups:
            with conn.transaction():
                if tuned and group[0][0] not in dict(SMALL_TABLES):
                    for setting in BATCH_SETTINGS:
                        conn.execute(setting)
                for table, columns, path in group:
                    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                    with cur.copy(statement) as copy:
                        for chunk in _chunks(path):
                            copy.write(chunk)
        seconds = time.perf_counter() - started
        cpu = meter.stop()
    return {"seconds": round(seconds, 2), **cpu, "transactions": len(groups),
            "bytes": sum(path.stat().st_size for _, _, path in files)}


def row_counts(target: str) -> dict[str, int]:
    with psycopg.connect(target, autocommit=True) as conn:
        return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                for t in [t for t, _ in SMALL_TABLES] + [t for t, _, _ in BULK_TABLES] + ["audit_log"]}


# -- the run ----------------------------------------------------------------------------------------------------------
VARIANTS = ("ours", "plain", "plain_tuned")


def variants_of(args: argparse.Namespace) -> tuple[str, ...]:
    return VARIANTS if args.bare else tuple(v for v in VARIANTS if v != "plain")


def measure(admin_dsn: str, args: argparse.Namespace, postmaster: int | None, rounds: list[dict],
            counts: dict[str, dict[str, int]]) -> None:
    """Run the rounds, appending each finished one to ``rounds`` (an interruption keeps those) and the row counts
    of each kind of load to ``counts``."""
    now = time.time()
    meter = CpuMeter(postmaster)
    variants = variants_of(args)
    per_batch = max(1, args.batch_size // BLOCK) * BLOCK  # reports a batch, as the loader rounds it
    dbs = Databases(admin_dsn)
    scratch = Path(tempfile.mkdtemp(prefix="luminar-synthetic-bench-"))
    files: list[tuple[str, list[str], Path]] = []
    try:
        for n in range(args.rounds):
            # The first round loads ours first (its rows are the plain loads' input); later rounds reverse the order
            # of the one before.
            order = variants if n % 2 == 0 else tuple(reversed(variants))
            result: dict = {"round": n + 1, "order": list(order)}
            for which in order:
                target = dbs.fresh()
                checkpoint(admin_dsn)
                if which == "ours":
                    result["ours"] = load_ours(target, args, now, meter)
                else:
                    result[which] = load_plain(target, files, meter, tuned=which == "plain_tuned")
                say(f"  round {n + 1}: {which}: {result[which]['seconds']:.1f} s (cpu: client "
                    f"{result[which]['client_cpu_s']} s, server {result[which]['server_cpu_s']} s; load average "
                    f"{os.getloadavg()[0]:.1f})")
                if which not in counts:
                    counts[which] = row_counts(target)
                if not files:
                    t = time.perf_counter()
                    files = dump(target, scratch, per_batch)
                    say(f"  dumped the loaded rows in {time.perf_counter() - t:.1f} s "
                        f"({sum(p.stat().st_size for _, _, p in files) / 2**20:,.0f} MB)")
                dbs.drop(target)
            for which in variants[1:]:
                result[f"ratio_{which}"] = round(result["ours"]["seconds"] / result[which]["seconds"], 3)
            result["load_average_after"] = os.getloadavg()
            rounds.append(result)
    finally:
        dbs.drop_all()
        shutil.rmtree(scratch, ignore_errors=True)


def summary(rounds: list[dict], counts: dict[str, dict[str, int]], variants: tuple[str, ...]) -> dict:
    """Best of the rounds per kind of load, the ratios, the goal."""
    best = {which: min(r[which]["seconds"] for r in rounds) for which in variants}
    baseline = min(best[which] for which in variants[1:])  # the fastest plain load: the stricter figure
    same = all(counts[which][t] == counts["ours"][t] for which in variants for t in counts["ours"] if t != "audit_log")
    return {"rounds": rounds, "rows": counts, "same_rows": same, "best_seconds": best,
            **{f"ratio_{which}": round(best["ours"] / best[which], 3) for which in variants[1:]},
            "ratio": round(best["ours"] / baseline, 3), "goal": GOAL, "met": best["ours"] / baseline <= GOAL}


def write(args: argparse.Namespace, started: dt.datetime, load_start: tuple[float, float, float], server_version: str,
          code: dict, figures: dict, *, interrupted: bool = False) -> Path:
    """The results file ``synthetic-<UTC start>.json`` in ``args.out``."""
    document = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": {"reports": args.reports, "days": args.days, "seed": SEED, "rounds": args.rounds,
                 "batch_size": args.batch_size, "bare_plain": args.bare,
                 "workers": args.workers or (2 if args.reports >= 100_000 else 1),
                 "server": "--dsn" if args.dsn else "scratch"},
        "machine": {"cpus": os.cpu_count(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
                    "server_version": server_version},
        "code": code,
        **({"interrupted": f"stopped after {len(figures['rounds'])} round(s)"} if interrupted else {}),
        **figures,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"synthetic-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=None,
                        help="a server's maintenance connection (any database; the role creates databases); "
                             "default: a scratch server of our own")
    parser.add_argument("--reports", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--workers", type=int, default=None, help="the loader's writers (default: its own)")
    parser.add_argument("--batch-size", type=int, default=20_000, help="reports a transaction (default 20,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, which load goes first alternating")
    parser.add_argument("--no-bare", dest="bare", action="store_false",
                        help="skip the bare plain COPY (the slower baseline: per-event replanning, per-row counters)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    from run import _code_version
    from scratchpg import ScratchServer, stop_on_sigterm

    stop_on_sigterm()
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    code = _code_version()
    say(f"synthetic load of {args.reports:,} reports vs a plain COPY of its rows, {args.rounds} round(s)")
    rounds: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    with contextlib.ExitStack() as stack:
        postmaster = None
        if args.dsn:
            admin_dsn = args.dsn
        else:
            server = stack.enter_context(ScratchServer())
            admin_dsn, postmaster = server.conninfo("postgres"), server.postmaster_pid()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            server_version = conn.execute("SELECT version()").fetchone()[0]
        try:
            measure(admin_dsn, args, postmaster, rounds, counts)
        except BaseException:
            if rounds:  # the rounds that finished are kept
                path = write(args, started, load_start, server_version, code,
                             summary(rounds, counts, variants_of(args)), interrupted=True)
                say(f"interrupted; the finished rounds are in {path}")
            raise
    figures = summary(rounds, counts, variants_of(args))
    path = write(args, started, load_start, server_version, code, figures)
    rows, best = figures["rows"]["ours"], figures["best_seconds"]
    bare = f"plain COPY {best['plain']:.1f} s ({figures['ratio_plain']:.2f}x), " if "plain" in best else ""
    print(f"synthetic load, {rows['raw_incident_reports']:,} reports + {rows['crime_events']:,} events + "
          f"{rows['consensus_records']:,} consensus records (best of {len(rounds)}): ours {best['ours']:.1f} s; "
          f"{bare}plain COPY with the loader's batch settings {best['plain_tuned']:.1f} s "
          f"({figures['ratio_plain_tuned']:.2f}x); goal <= {GOAL}x the fastest: "
          f"{'met' if figures['met'] else 'NOT met'}; same rows: {figures['same_rows']}; load average "
          f"{load_start[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus; written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
