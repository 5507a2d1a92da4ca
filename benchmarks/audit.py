"""The audit trail's cost: the bulk and single-store paths with the audit triggers enabled vs disabled, in one run.

On a scratch PostgreSQL + PostGIS server (started and removed as ``run.py`` does, ``scratchpg.py``), migrated with
``migrate_database``, the facade (``LuminarDB``, logged in as the scratch database's owner) stores:

* bulk: ``db.store_crime_events`` of N events (default 50,000) in batches, rounds alternating audit off / on, each
  on an emptied ``crime_events`` after a ``CHECKPOINT``; the best round of each counts;
* bulk as a node: the same through the facade logged in as a miner's login (group ``luminar_miner``, named in
  ``node_identities``), the path under row-level security (staged through a temporary table; events pending, as a
  node may store them);
* single: ``db.store_crime_event`` calls (default 2,000 after 200 warm-up), blocks of 100 alternating off / on.

"Off" is ``ALTER TABLE ... DISABLE TRIGGER`` of every ``<table>_audit_insert|update|delete`` trigger (the owner's
right, on this scratch database only); "on" enables them again. The baseline is the audit off; the ratio is on / off
for rates (goal: bulk >= 0.8) and on / off for times. Prints the table (the same shape as ``run.py``'s) and writes
``benchmarks/results/audit-<UTC start>.json``.

Example: ``.venv/bin/python benchmarks/audit.py --quick``
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import gc
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: The audit triggers of migration 20261130021000_audit_every_change: <table>_audit_insert / _update / _delete.
AUDIT_TRIGGERS = """
SELECT c.relname, t.tgname
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal
   AND t.tgname IN (c.relname || '_audit_insert', c.relname || '_audit_update', c.relname || '_audit_delete')
 ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Plan:
    """The sizes of one run (``--quick`` scales them down)."""

    events: int
    batch_size: int
    rounds: int
    single_calls: int
    single_warmup: int
    seed: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        events = args.events if args.events is not None else (10_000 if args.quick else 50_000)
        return cls(events=events, batch_size=min(args.batch_size, events), rounds=args.rounds,
                   single_calls=300 if args.quick else 2_000, single_warmup=50 if args.quick else 200,
                   seed=args.seed)


async def set_audit(admin: Any, triggers: list[tuple[str, str]], *, enabled: bool) -> None:
    """Enable or disable the audit triggers (identifiers through ``psycopg.sql``)."""
    from psycopg import sql

    verb = sql.SQL("ENABLE" if enabled else "DISABLE")
    for table, trigger in triggers:
        await admin.execute(sql.SQL("ALTER TABLE {} {} TRIGGER {}").format(
            sql.Identifier(table), verb, sql.Identifier(trigger)))


#: The scratch server's node login for the bulk path under row-level security (trust authentication, no password).
NODE_LOGIN = "luminar_bench_miner"


async def make_node_login(admin: Any) -> None:
    """A miner's login acting for every miner uid (``node_identities`` uid NULL), made once on the scratch server."""
    from psycopg import sql

    await admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE luminar_miner").format(sql.Identifier(NODE_LOGIN)))
    await admin.execute("INSERT INTO node_identities (login, kind, uid, note) VALUES (%s, 'miner', NULL, %s)",
                        (NODE_LOGIN, "benchmark"))


async def bulk_rounds(label: str, facade: Any, admin: Any, triggers: list[tuple[str, str]], batches: list,
                      plan: Plan) -> dict[str, list[float]]:
    """``plan.rounds`` bulk runs per mode, alternating audit off / on, each on an emptied table."""
    import paths
    from run import _reset_table, say

    seconds: dict[str, list[float]] = {"off": [], "on": []}
    for r in range(plan.rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            await set_audit(admin, triggers, enabled=mode == "on")
            await _reset_table(admin)
            took = await paths.bulk_facade(facade, batches)
            seconds[mode].append(took)
            say(f"{label} round {r + 1}/{plan.rounds} audit {mode}: {plan.events / took:,.0f} rows/s ({took:.1f} s)")
    return seconds


async def measure(settings: Any, plan: Plan) -> dict[str, Any]:
    """The bulk and single-store samples with the audit off and on."""
    import paths
    import psycopg
    from eventgen import World
    from run import say, summary_us

    from luminar_store.access import LuminarDB

    world = World(plan.seed)
    facade = LuminarDB(settings)
    await facade.initialize()
    admin = await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True)
    out: dict[str, Any] = {}
    try:
        triggers = [tuple(row) for row in await (await admin.execute(AUDIT_TRIGGERS)).fetchall()]
        if not triggers:
            raise RuntimeError("no audit triggers found (is migration 20261130021000_audit_every_change applied?)")
        out["audit_triggers"] = [f"{table}.{name}" for table, name in triggers]

        # -- bulk ------------------------------------------------------------------------------------------------
        say(f"generating {plan.events:,} events")
        batches = [(uid, list(events)) for uid, events in world.batches(plan.events, batch_size=plan.batch_size)]
        gc.collect()
        gc.freeze()
        out["bulk_seconds"] = await bulk_rounds("bulk", facade, admin, triggers, batches, plan)
        cur = await admin.execute("SELECT count(*), coalesce(sum(row_count), 0) FROM audit_log "
                                  "WHERE table_name = 'crime_events' AND operation = 'INSERT'")
        statements, rows = await cur.fetchone()
        out["bulk_audit_rows"] = {"insert_statements": statements, "rows_named": rows}

        await make_node_login(admin)
        node = LuminarDB(dataclasses.replace(settings, user=NODE_LOGIN, password=""))
        await node.initialize()
        try:
            pending = [(uid, [e | {"verification_status": "pending"} for e in events]) for uid, events in batches]
            out["node_bulk_seconds"] = await bulk_rounds("node bulk", node, admin, triggers, pending, plan)
            pending.clear()
        finally:
            await node.close()
        batches.clear()
        gc.unfreeze()
        gc.collect()

        # -- one store a call ---------------------------------------------------------------------------------------
        events = list(world.events(plan.single_warmup + plan.single_calls, seed_offset=1))
        warm, timed = events[:plan.single_warmup], events[plan.single_warmup:]
        await set_audit(admin, triggers, enabled=True)
        for event in warm:
            await paths.store_facade(facade, event, 12)
        samples: dict[str, list[int]] = {"off": [], "on": []}
        block = 100
        for b, first in enumerate(range(0, len(timed), block)):
            for mode in ("off", "on") if b % 2 == 0 else ("on", "off"):
                await set_audit(admin, triggers, enabled=mode == "on")
                # The first call after ALTER TABLE plans its statements afresh: not timed.
                await paths.store_facade(facade, warm[b % len(warm)] | {"title": f"replan {b} {mode}"}, 12)
                # Each mode stores its own copy of the block (a title of its own: a new idempotency key).
                block_events = [event | {"title": f"{event.get('title', '')} {mode}"}
                                for event in timed[first:first + block]]
                for event in block_events:
                    start = time.perf_counter_ns()
                    await paths.store_facade(facade, event, 12)
                    samples[mode].append(time.perf_counter_ns() - start)
        out["single_us"] = {mode: summary_us(s) for mode, s in samples.items()}
        say("single store p50/p99 µs: " + ", ".join(f"audit {m} {r['p50']:.0f}/{r['p99']:.0f}"
                                                     for m, r in out["single_us"].items()))
        await set_audit(admin, triggers, enabled=True)
    finally:
        await admin.close()
        await facade.close()
    return out


def figures(raw: dict[str, Any], plan: Plan) -> list[Any]:
    """The table's lines: audit on (ours) against audit off (the baseline)."""
    from run import Figure

    bulk = {mode: plan.events / min(seconds) for mode, seconds in raw["bulk_seconds"].items()}
    node = {mode: plan.events / min(seconds) for mode, seconds in raw["node_bulk_seconds"].items()}
    single = raw["single_us"]
    return [
        Figure("audit_bulk", "bulk store_crime_events, audit on", "rows/s", bulk["on"], bulk["off"], "audit off",
               "ratio >= 0.8", goal_value=0.8),
        Figure("audit_node_bulk", "bulk store_crime_events as a node, audit on", "rows/s", node["on"], node["off"],
               "audit off", "ratio >= 0.8", goal_value=0.8),
        Figure("audit_single_p50", "store_crime_event p50, audit on", "µs", single["on"]["p50"],
               single["off"]["p50"], "audit off", "(beside)", goal_on=""),
        Figure("audit_single_p99", "store_crime_event p99, audit on", "µs", single["on"]["p99"],
               single["off"]["p99"], "audit off", "(beside)", goal_on=""),
    ]


def run_all(settings: Any, plan: Plan, *, out_dir: Path) -> list[Any]:
    """Migrate, measure, write the JSON; returns the figures."""
    from run import _code_version, _versions, say

    from luminar_store.migrator import migrate_database

    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    migrate_database(settings.conninfo())
    raw = asyncio.run(measure(settings, plan))
    rows = figures(raw, plan)
    document = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        "machine": {"cpus": os.cpu_count(), "load_average_start": load_start, "load_average_end": os.getloadavg(),
                    **_versions(settings)},
        "code": _code_version(),
        "figures": [asdict(f) for f in rows],
        "raw": raw,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"audit-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    say(f"results written to {path}")
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/audit.py",
        description="The audit trail's cost: bulk and single stores with the audit triggers on vs off, one run, "
                    "on a scratch server. Example: .venv/bin/python benchmarks/audit.py --quick")
    p.add_argument("--events", type=int, default=None, help="events of the bulk path (default 50,000; 10,000 "
                                                             "with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 10k events, 300 single stores")
    p.add_argument("--durable", action="store_true", help="scratch server with synchronous_commit=on")
    p.add_argument("--rounds", type=int, default=3, help="bulk runs per mode, alternating the order (default 3)")
    p.add_argument("--batch-size", type=int, default=10_000, help="events per store_crime_events call "
                                                                  "(default 10,000)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic world (default 7)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.events is not None and args.events < 1000) or args.rounds < 1 or args.batch_size < 1:
        print("error: --events must be at least 1000, --rounds and --batch-size at least 1", file=sys.stderr)
        return 2
    try:
        import asyncpg  # noqa: F401  (run.py's version report names it)
    except ImportError:
        print("error: asyncpg is missing; install it: .venv/bin/pip install -e '.[bench]'", file=sys.stderr)
        return 2
    from scratchpg import stop_on_sigterm

    stop_on_sigterm()
    plan = Plan.from_args(args)

    from run import say, table
    from scratchpg import DBNAME, USER, ScratchServer

    from luminar_store.config import load_settings
    from luminar_store.errors import LuminarError

    try:
        say("starting a scratch PostgreSQL server")
        with ScratchServer(durable=args.durable) as server:
            settings = load_settings("local", environ={
                "LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port), "LUMINAR_DB_NAME": DBNAME,
                "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""})
            rows = run_all(settings, plan, out_dir=args.out)
        say("scratch server stopped and removed")
    except (LuminarError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the scratch server was stopped and removed)", file=sys.stderr)
        return 130
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
