"""The data layer's benchmark: every figure beside a baseline measured in the same run on the same data.

Builds a database of realistic crime events (1,000,000 by default) on a scratch PostgreSQL + PostGIS server that it
starts and removes itself (or on the database of ``--dsn`` / the ``LUMINAR_*`` settings with ``--use-settings``;
that database is migrated and its ``crime_events`` emptied, so ``--yes`` is required), then measures:

* bulk store (``db.store_crime_events``, binary COPY) rows/s vs the same COPY by hand on psycopg and vs asyncpg's
  ``copy_records_to_table``;
* one ``db.store_crime_event`` call, p50/p99 µs, vs the repository's INSERT on a bare psycopg pool and on asyncpg;
* 64 concurrent tasks x 500 stores through the pool, stores/s, vs an asyncpg pool (and a bare psycopg pool) of the
  facade's size;
* ``get_recent_events(24, 100)``, a 1 km / 7 days radius query and ``get_crime_hotspots(7)``, p50 ms, vs the
  repository's SQL on a bare connection;
* the resident-set high-water mark of a process that only bulk-stores the stream, vs a hand-written COPY process.

Prints a table (figure | ours | baseline | ratio | goal | met?) and writes ``benchmarks/results/results-<UTC>.json``
and ``benchmarks/results/latest.json``. Exit code 0 when the run completed (goals missed or not), 2 on a usage or
setup error. See ``benchmarks/README.md``.

Example: ``.venv/bin/python benchmarks/run.py --quick``
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
MIB = 1024 * 1024
#: The size every figure is measured at; a larger --events grows the same database to it afterwards.
BASE_EVENTS = 1_000_000
QUICK_EVENTS = 50_000
# After a load, as autovacuum would do: the events and the tables their triggers keep (the hotspot listing reads
# the last three from their indexes alone, which needs the pages marked all-visible).
VACUUM_AFTER_LOAD = "VACUUM ANALYZE crime_events, crime_incidents, incident_cell_days, incident_cell_hours"


# -- what to run ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The sizes of one run (``--quick`` scales them down for a smoke run)."""

    events: int
    batch_size: int
    rounds: int
    single_calls: int
    single_warmup: int
    tasks: int
    per_task: int
    query_calls: int
    hotspot_calls: int
    seed: int
    memory: bool
    grow_to: int | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        quick = args.quick
        base = QUICK_EVENTS if quick else BASE_EVENTS
        events = args.events if args.events is not None else base
        # Above 1M (50k with --quick): every figure at that size, then the same database grown to --events and the
        # reads measured again.
        events, grow_to = (base, events) if events > base else (events, None)
        return cls(events=events, batch_size=min(args.batch_size, events), rounds=args.rounds,
                   single_calls=500 if quick else 2000, single_warmup=100 if quick else 200, tasks=64,
                   per_task=50 if quick else 500, query_calls=100 if quick else 300,
                   hotspot_calls=15 if quick else 40, seed=args.seed, memory=not args.no_memory, grow_to=grow_to)


@dataclass
class Figure:
    """One line of the table. ``ratio`` is ours / baseline; the goal applies to the ratio or to ours."""

    key: str
    figure: str
    unit: str
    ours: float
    baseline: float | None
    baseline_name: str
    goal: str = ""
    goal_on: str = "ratio"  # "ratio", "ours" or "" (no goal)
    goal_op: str = ">="
    goal_value: float | None = None
    ratio: float | None = None
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.baseline:
            self.ratio = self.ours / self.baseline
        if self.goal_on and self.goal_value is not None:
            value = self.ratio if self.goal_on == "ratio" else self.ours
            if value is not None:
                self.met = value >= self.goal_value if self.goal_op == ">=" else value <= self.goal_value


def say(message: str) -> None:
    """Progress on stderr (stdout holds the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``samples`` by linear interpolation."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary_us(samples_ns: list[int]) -> dict[str, float]:
    """p50, p90, p99, mean and count of latencies given in nanoseconds, in microseconds."""
    us = [s / 1000 for s in samples_ns]
    return {"p50": percentile(us, 0.5), "p90": percentile(us, 0.9), "p99": percentile(us, 0.99),
            "mean": sum(us) / len(us), "count": len(us)}


# -- the asynchronous measurements ------------------------------------------------------------------------------------
async def _timed(call: Callable[[], Awaitable[object]]) -> tuple[int, object]:
    start = time.perf_counter_ns()
    result = await call()
    return time.perf_counter_ns() - start, result


async def _reset_table(admin: Any) -> None:
    await admin.execute("TRUNCATE crime_events CASCADE")
    await admin.execute("CHECKPOINT")  # the previous run's dirty pages are written before the clock starts


async def measure(settings: Any, plan: Plan) -> dict[str, Any]:
    """Every in-process figure (all but memory), as a dict of raw results."""
    import asyncpg
    import paths
    import psycopg
    from eventgen import World

    from luminar_store.access import LuminarDB

    out: dict[str, Any] = {}
    world = World(plan.seed)
    facade = LuminarDB(settings)
    await facade.initialize()
    admin = await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True)
    apg_kwargs = paths.asyncpg_connect_kwargs(settings)
    try:
        # -- bulk ------------------------------------------------------------------------------------------------
        say(f"generating {plan.events:,} events (materialized for the timed bulk runs)")
        start = time.perf_counter()
        batches = [(uid, list(events)) for uid, events in world.batches(plan.events, batch_size=plan.batch_size)]
        out["generate_seconds"] = time.perf_counter() - start
        gc.collect()
        gc.freeze()  # a million live dicts would otherwise be rescanned by every full collection, in every path
        runs: dict[str, list[float]] = {"facade": [], "psycopg": [], "asyncpg": [], "ceiling": []}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        bulk = {"facade": lambda: paths.bulk_facade(facade, batches),
                "psycopg": lambda: paths.bulk_psycopg(settings.conninfo(), batches),
                "asyncpg": lambda: paths.bulk_asyncpg(apg_kwargs, batches),
                "ceiling": lambda: paths.bulk_ceiling(settings.conninfo(), batches)}
        order = list(bulk)
        for r in range(plan.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                if name != "ceiling":  # the ceiling writes its own table: crime_events keeps the last load
                    await _reset_table(admin)
                cpu_start = time.process_time()
                seconds = await bulk[name]()
                cpu[name].append((time.process_time() - cpu_start) / plan.events * 1e6)
                runs[name].append(seconds)
                say(f"bulk round {r + 1}/{plan.rounds} {name}: {plan.events / seconds:,.0f} rows/s ({seconds:.1f} s, "
                    f"client CPU {cpu[name][-1]:.1f} µs/row)")
        out["bulk_seconds"] = runs
        out["bulk_client_cpu_us_per_row"] = cpu
        batches.clear()  # frees the inputs before the reads are measured
        gc.unfreeze()
        gc.collect()
        cur = await admin.execute("SELECT count(*) FROM crime_events")
        out["events_in_table"] = (await cur.fetchone())[0]

        say(f"CHECKPOINT; {VACUUM_AFTER_LOAD}")
        start = time.perf_counter()
        # With synchronous_commit=off the loads' commit records may not be on disk yet, and VACUUM cannot mark a
        # page all-visible (nor set hint bits) before they are; CHECKPOINT flushes the WAL first. Without it the
        # hotspot query's index-only scan visits the heap for the newest batches.
        await admin.execute("CHECKPOINT")
        await admin.execute(VACUUM_AFTER_LOAD)
        out["vacuum_analyze_seconds"] = time.perf_counter() - start
        out["all_visible_after_vacuum"] = await _all_visible(admin)
        say(f"pages all-visible after VACUUM: {out['all_visible_after_vacuum']:.0%}")
        out["table_stats"] = await _table_stats(admin)

        # -- reads -----------------------------------------------------------------------------------------------
        out["queries"] = await _measure_queries(facade, admin, world, plan)

        # -- one row a call ----------------------------------------------------------------------------------------
        raw_pool = paths.raw_psycopg_pool(settings)
        await raw_pool.open(wait=True)
        apg_pool = await asyncpg.create_pool(min_size=settings.pool_size, max_size=settings.pool_max_size,
                                             **apg_kwargs)
        # asyncpg's pool resets every connection it takes back (one more round trip a call, RESET ALL ...); the
        # second pool skips that, the strongest asyncpg baseline.
        apg_fast = await asyncpg.create_pool(min_size=settings.pool_size, max_size=settings.pool_max_size,
                                             reset=paths.no_reset, **apg_kwargs)
        try:
            stores = {"facade": lambda e, u: paths.store_facade(facade, e, u),
                      "psycopg": lambda e, u: paths.store_psycopg(raw_pool, e, u),
                      "asyncpg": lambda e, u: paths.store_asyncpg(apg_pool, e, u),
                      "asyncpg_noreset": lambda e, u: paths.store_asyncpg(apg_fast, e, u)}
            out["single"] = await _measure_single(stores, world, plan)
            out["concurrent"] = await _measure_concurrent(stores, world, plan)
        finally:
            await raw_pool.close()
            await apg_pool.close()
            await apg_fast.close()
        out["pool"] = {"min_size": settings.pool_size, "max_size": settings.pool_max_size}

        # -- the same reads on the database grown ------------------------------------------------------------------
        if plan.grow_to:
            out["grown"] = await _grow_and_measure(facade, admin, settings, world, plan)
    finally:
        await admin.close()
        await facade.close()
    return out


async def _grow_and_measure(facade: Any, admin: Any, settings: Any, world: Any, plan: Plan) -> dict[str, Any]:
    """Grow crime_events to ``plan.grow_to`` by streamed COPY (another stream of the same world: the same 30 days
    and cities, ten times denser at 10M), then VACUUM ANALYZE and measure the reads again."""
    import paths

    cur = await admin.execute("SELECT count(*) FROM crime_events")
    have = (await cur.fetchone())[0]
    more = max(0, plan.grow_to - have)  # type: ignore[operator]
    say(f"growing crime_events from {have:,} to {plan.grow_to:,} events by COPY (streamed)")
    batches = world.batches(more, batch_size=plan.batch_size, seed_offset=3)
    rows, seconds = await paths.grow(settings.conninfo(), batches)
    say(f"grown by {rows:,} events in {seconds:,.0f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)")
    start = time.perf_counter()
    await admin.execute("CHECKPOINT")
    await admin.execute(VACUUM_AFTER_LOAD)
    grown: dict[str, Any] = {"rows_added": rows, "grow_seconds": seconds,
                             "vacuum_analyze_seconds": time.perf_counter() - start,
                             "table_stats": await _table_stats(admin)}
    cur = await admin.execute("SELECT pg_database_size(current_database())")
    grown["database_mib"] = round((await cur.fetchone())[0] / MIB, 1)
    say(f"database at {plan.grow_to:,} events: {grown['database_mib']:,.0f} MiB")
    grown["queries"] = await _measure_queries(facade, admin, world, plan)
    return grown


async def _all_visible(admin: Any) -> float:
    cur = await admin.execute("SELECT relallvisible, relpages FROM pg_class WHERE oid = 'crime_events'::regclass")
    visible, pages = await cur.fetchone()
    return visible / pages if pages else 1.0


async def _table_stats(admin: Any) -> dict[str, Any]:
    cur = await admin.execute(
        "SELECT count(*), count(*) FILTER (WHERE verification_status = 'verified'),"
        " count(*) FILTER (WHERE \"timestamp\" >= now() - interval '24 hours'),"
        " count(*) FILTER (WHERE \"timestamp\" >= now() - interval '7 days'),"
        " count(*) FILTER (WHERE verification_status = 'verified' AND \"timestamp\" >= now() - interval '7 days'),"
        " pg_total_relation_size('crime_events'), pg_relation_size('crime_events') FROM crime_events")
    total, verified, day, week, verified_week, total_bytes, heap_bytes = await cur.fetchone()
    return {"events": total, "verified": verified, "last_24h": day, "last_7d": week, "verified_last_7d": verified_week,
            "total_mib": round(total_bytes / MIB, 1), "heap_mib": round(heap_bytes / MIB, 1)}


async def _measure_queries(facade: Any, admin: Any, world: Any, plan: Plan) -> dict[str, Any]:
    from paths import QUERIES

    points = world.query_points(plan.query_calls)
    cases = {
        "recent": [{"hours": 24, "limit": 100}] * plan.query_calls,
        "radius": [{"lat": lat, "lng": lng, "radius_m": 1000, "days": 7, "limit": 100} for lat, lng in points],
        "hotspots": [{"days": 7, "limit": 100}] * plan.hotspot_calls,
    }
    results: dict[str, Any] = {}
    for name, args_list in cases.items():
        call, query, params = QUERIES[name]
        ours: list[int] = []
        base: list[int] = []
        rows: list[int] = []
        warmup = max(3, len(args_list) // 10)
        for i, args in enumerate(args_list[:warmup] + args_list):
            async def facade_call(a: dict = args, call: Callable = call) -> list:
                return await call(facade, a)

            async def raw_call(a: dict = args, query: str = query, params: Callable = params) -> list:
                cur = await admin.execute(query, params(a))
                return await cur.fetchall()

            pair = [("ours", facade_call), ("base", raw_call)]
            for label, fn in pair if i % 2 == 0 else pair[::-1]:
                took, result = await _timed(fn)
                if i >= warmup:
                    (ours if label == "ours" else base).append(took)
                    if label == "ours":
                        rows.append(len(result))  # type: ignore[arg-type]
        results[name] = {"ours_us": summary_us(ours), "baseline_us": summary_us(base),
                         "rows_p50": percentile([float(r) for r in rows], 0.5), "rows_max": max(rows)}
        say(f"{name}: p50 {results[name]['ours_us']['p50'] / 1000:.2f} ms (raw SQL "
            f"{results[name]['baseline_us']['p50'] / 1000:.2f} ms), rows p50 {results[name]['rows_p50']:.0f}")
    return results


async def _measure_single(stores: dict[str, Callable], world: Any, plan: Plan) -> dict[str, Any]:
    events = list(world.events(plan.single_warmup + plan.single_calls, seed_offset=1))
    warm, timed = events[:plan.single_warmup], events[plan.single_warmup:]
    for store in stores.values():
        for event in warm:
            await store(event, 12)
    samples: dict[str, list[int]] = {name: [] for name in stores}
    cpu: dict[str, float] = {name: 0.0 for name in stores}
    block = 100
    names = list(stores)
    for b, first in enumerate(range(0, len(timed), block)):
        shift = b % len(names)  # rotate which path goes first, so drift and caches hit every path alike
        for name in names[shift:] + names[:shift]:
            store = stores[name]
            cpu_start = time.process_time()
            for event in timed[first:first + block]:
                start = time.perf_counter_ns()
                await store(event, 12)
                samples[name].append(time.perf_counter_ns() - start)
            cpu[name] += time.process_time() - cpu_start
    result: dict[str, Any] = {name: summary_us(s) for name, s in samples.items()}
    for name in names:
        result[name]["client_cpu_us"] = cpu[name] / len(timed) * 1e6
    say("single store p50/p99 µs: " + ", ".join(f"{n} {r['p50']:.0f}/{r['p99']:.0f}" for n, r in result.items()))
    return result


async def _measure_concurrent(stores: dict[str, Callable], world: Any, plan: Plan) -> dict[str, Any]:
    total = plan.tasks * plan.per_task
    events: list[dict] = []

    async def worker(store: Callable, k: int) -> None:
        uid = 12 + k % 64
        for event in events[k * plan.per_task:(k + 1) * plan.per_task]:
            await store(event, uid)

    rates: dict[str, list[float]] = {name: [] for name in stores}
    cpu: dict[str, list[float]] = {name: [] for name in stores}
    names = list(stores)
    for r in range(max(plan.rounds, 2)):
        for i, name in enumerate(names if r % 2 == 0 else names[::-1]):
            # New events for every run: the same ones again would be retries for the facade (their idempotency keys
            # are stored: nothing is written), where the baselines, keying nothing, write them again.
            events[:] = world.events(total, seed_offset=2 + r * len(names) + i)
            start, cpu_start = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker(stores[name], k) for k in range(plan.tasks)))
            rates[name].append(total / (time.perf_counter() - start))
            cpu[name].append((time.process_time() - cpu_start) / total * 1e6)
    say("concurrent stores/s (best): " + ", ".join(f"{n} {max(r):,.0f} ({min(cpu[n]):.0f} µs client CPU/store)"
                                                    for n, r in rates.items()))
    return {"tasks": plan.tasks, "per_task": plan.per_task, "rates": rates, "client_cpu_us_per_store": cpu}


# -- memory, in subprocesses ----------------------------------------------------------------------------------------
def _child_env(settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("LUMINAR_DB_") or k in ("DATABASE_URL", "DB_POOL_SIZE", "POOL_SIZE"))}
    env.update({"LUMINAR_ENV": settings.env, "LUMINAR_DB_HOST": settings.host, "LUMINAR_DB_PORT": str(settings.port),
                "LUMINAR_DB_NAME": settings.name, "LUMINAR_DB_USER": settings.user,
                "LUMINAR_DB_PASSWORD": settings.password or "", "LUMINAR_DB_SSLMODE": settings.sslmode})
    return env


def measure_memory(settings: Any, plan: Plan) -> dict[str, Any]:
    """The high-water mark of a process streaming ``plan.events`` into the table: ours, then the raw COPY."""
    import psycopg

    results: dict[str, Any] = {}
    for path in ("facade", "psycopg"):
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.execute("TRUNCATE crime_events CASCADE")
        say(f"memory probe ({path}): streaming {plan.events:,} events in a subprocess")
        done = subprocess.run([sys.executable, str(HERE / "memprobe.py"), path, str(plan.events), str(plan.seed),
                               str(plan.batch_size)], env=_child_env(settings), capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            lines = [x for x in done.stderr.splitlines() if x.strip()]
            raise RuntimeError(f"memory probe ({path}) failed: {lines[-1] if lines else 'no output'}")
        results[path] = json.loads(done.stdout.strip().splitlines()[-1])
        say(f"memory probe ({path}): peak {results[path]['vmhwm_kib'] / 1024:.0f} MiB, "
            f"{results[path]['rows'] / results[path]['seconds']:,.0f} rows/s")
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute("TRUNCATE crime_events CASCADE")
    return results


# -- figures and report ----------------------------------------------------------------------------------------------
def figures(raw: dict[str, Any], plan: Plan) -> list[Figure]:
    """The table's lines from the raw results."""
    n = plan.events
    bulk = {name: n / min(seconds) for name, seconds in raw["bulk_seconds"].items()}
    single = raw["single"]
    conc = {name: max(rates) for name, rates in raw["concurrent"]["rates"].items()}
    q = raw["queries"]
    scale = "" if n >= 1_000_000 else f" (goal set for 1M events; this run has {n:,})"
    out = [
        Figure("bulk_vs_psycopg", "bulk store_crime_events (COPY)", "rows/s", bulk["facade"], bulk["psycopg"],
               "psycopg COPY by hand", "ratio >= 0.9", goal_value=0.9),
        Figure("bulk_vs_asyncpg", "bulk store_crime_events (COPY)", "rows/s", bulk["facade"], bulk["asyncpg"],
               "asyncpg copy_records_to_table", "ratio >= 1.0", goal_value=1.0),
        Figure("single_p50_vs_psycopg", "store_crime_event p50", "µs", single["facade"]["p50"],
               single["psycopg"]["p50"], "psycopg pool INSERT", "ratio <= 1.2", goal_op="<=", goal_value=1.2),
        Figure("single_p99_vs_psycopg", "store_crime_event p99", "µs", single["facade"]["p99"],
               single["psycopg"]["p99"], "psycopg pool INSERT", "ratio <= 1.2", goal_op="<=", goal_value=1.2),
        Figure("single_p50_vs_asyncpg", "store_crime_event p50", "µs", single["facade"]["p50"],
               single["asyncpg"]["p50"], "asyncpg pool INSERT", "(beside)", goal_on=""),
        Figure("single_p99_vs_asyncpg", "store_crime_event p99", "µs", single["facade"]["p99"],
               single["asyncpg"]["p99"], "asyncpg pool INSERT", "(beside)", goal_on=""),
        Figure("single_p50_vs_asyncpg_noreset", "store_crime_event p50", "µs", single["facade"]["p50"],
               single["asyncpg_noreset"]["p50"], "asyncpg pool, no reset", "(beside)", goal_on=""),
        Figure("concurrent_vs_asyncpg", f"{plan.tasks} tasks x {plan.per_task} stores", "stores/s", conc["facade"],
               conc["asyncpg"], "asyncpg pool, same size", "ratio >= 0.9", goal_value=0.9),
        Figure("concurrent_vs_asyncpg_noreset", f"{plan.tasks} tasks x {plan.per_task} stores", "stores/s",
               conc["facade"], conc["asyncpg_noreset"], "asyncpg pool, no reset", "ratio >= 1.2 (group commit)",
               goal_value=1.2),
        Figure("concurrent_vs_psycopg", f"{plan.tasks} tasks x {plan.per_task} stores", "stores/s", conc["facade"],
               conc["psycopg"], "psycopg pool, same size", "(beside)", goal_on=""),
        Figure("recent_p50", "get_recent_events(24, 100) p50", "ms", q["recent"]["ours_us"]["p50"] / 1000,
               q["recent"]["baseline_us"]["p50"] / 1000, "same SQL, bare conn", "<= 2 ms", goal_on="ours",
               goal_op="<=", goal_value=2.0, note=scale),
        Figure("radius_p50", "radius 1 km / 7 days p50", "ms", q["radius"]["ours_us"]["p50"] / 1000,
               q["radius"]["baseline_us"]["p50"] / 1000, "same SQL, bare conn", "<= 10 ms", goal_on="ours",
               goal_op="<=", goal_value=10.0, note=scale),
        Figure("hotspots_p50", "get_crime_hotspots(7) p50", "ms", q["hotspots"]["ours_us"]["p50"] / 1000,
               q["hotspots"]["baseline_us"]["p50"] / 1000, "same SQL, bare conn", "<= 100 ms", goal_on="ours",
               goal_op="<=", goal_value=100.0, note=scale),
    ]
    if "ceiling" in bulk:
        out.append(Figure("bulk_vs_ceiling", "bulk store_crime_events (COPY)", "rows/s", bulk["facade"],
                          bulk["ceiling"], "COPY into a PK-only copy", "ratio >= 0.5", goal_value=0.5))
    if "grown" in raw:
        g = raw["grown"]["queries"]
        big = f"{plan.grow_to:,}"
        for key, name in (("recent", "get_recent_events(24, 100)"), ("radius", "radius 1 km / 7 days"),
                          ("hotspots", "get_crime_hotspots(7)")):
            out.append(Figure(f"{key}_growth", f"{name} p50 at {big}", "ms", g[key]["ours_us"]["p50"] / 1000,
                              q[key]["ours_us"]["p50"] / 1000, f"ours at {n:,}", "ratio <= 1.5", goal_op="<=",
                              goal_value=1.5))
            out.append(Figure(f"{key}_vs_raw_grown", f"{name} p50 at {big}", "ms", g[key]["ours_us"]["p50"] / 1000,
                              g[key]["baseline_us"]["p50"] / 1000, "same SQL, bare conn", "ratio <= 1.2",
                              goal_op="<=", goal_value=1.2))
    if "memory" in raw:
        mem = raw["memory"]
        out.append(Figure("bulk_peak_memory", f"peak RSS, bulk store of {n:,}", "MiB",
                          mem["facade"]["vmhwm_kib"] / 1024, mem["psycopg"]["vmhwm_kib"] / 1024,
                          "psycopg COPY process", "< 300 MiB", goal_on="ours", goal_op="<=", goal_value=300.0,
                          note=scale))
    return out


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[Figure]) -> str:
    """The figures as a plain-text table."""
    head = ["figure", "ours", "baseline", "ratio", "goal", "met?"]
    body = []
    for f in rows:
        met = "-" if f.met is None else ("yes" if f.met else "NO")
        body.append([f"{f.figure} [{f.unit}]", _fmt(f.ours), f"{_fmt(f.baseline)} ({f.baseline_name})",
                     "-" if f.ratio is None else f"{f.ratio:.2f}", f.goal, met])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _versions(settings: Any) -> dict[str, str | None]:
    import asyncpg
    import psycopg
    import psycopg_pool

    from luminar_store.ops.connect import server_info

    info: dict[str, str | None] = dict(server_info(settings))
    info.update({"python": platform.python_version(), "psycopg": psycopg.__version__,
                 "psycopg_impl": psycopg.pq.__impl__, "psycopg_pool": psycopg_pool.__version__,
                 "asyncpg": asyncpg.__version__})
    return info


def _code_version() -> dict[str, object]:
    """The commit measured and whether the package or the migrations had uncommitted changes at the start."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return ""

    return {"git_commit": git("rev-parse", "--short", "HEAD") or None,
            "uncommitted_changes": bool(git("status", "--porcelain", "--", "luminar_store", "migrations"))}


def run_all(settings: Any, plan: Plan, *, server: Any, out_dir: Path) -> list[Figure]:
    """Migrate, measure, report. Returns the figures."""
    from luminar_store.migrator import migrate_database

    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    code = _code_version()
    say(f"migrating {settings.safe_dsn()}")
    migrate_database(settings.conninfo())  # the package's migrations (DEFAULT_DIR)
    raw: dict[str, Any] = {}
    if plan.memory:
        raw["memory"] = measure_memory(settings, plan)
    raw.update(asyncio.run(measure(settings, plan)))
    rows = figures(raw, plan)
    from scratchpg import SERVER_SETTINGS

    document = {
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        # Other work on the machine (a shared 2-core box) shows in the load averages (1, 5, 15 min).
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_start": load_start,
                    "load_average_end": os.getloadavg(), **_versions(settings)},
        "code": code,
        "server": ({"kind": "scratch", "settings": dict(SERVER_SETTINGS, synchronous_commit="on" if server.durable
                                                        else "off")}
                   if server is not None else {"kind": "given", "dsn": settings.safe_dsn()}),
        "pool": raw.get("pool"),
        "figures": [asdict(f) for f in rows],
        "raw": raw,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(document, indent=2, default=str) + "\n"
    (out_dir / f"results-{stamp}.json").write_text(text)
    (out_dir / "latest.json").write_text(text)
    say(f"results written to {out_dir / f'results-{stamp}.json'} and latest.json")
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark of the luminar_store data layer: each figure beside a baseline measured in the same "
                    "run on the same data. Example: .venv/bin/python benchmarks/run.py --quick",
        epilog="Example: .venv/bin/python benchmarks/run.py --events 200000")
    p.add_argument("--events", type=int, default=None, help="events in the database (default 1,000,000; "
                                                             "50,000 with --quick); above 1,000,000, every figure "
                                                             "is measured at 1M, then the database is grown to "
                                                             "--events and the reads measured again (10,000,000: "
                                                             "about 20 GB of disk; never in CI)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 50k events and scaled-down call counts")
    p.add_argument("--dsn", help="benchmark this database instead of a scratch server (it is migrated and its "
                                 "crime_events emptied, consensus_records with it: needs --yes)")
    p.add_argument("--use-settings", action="store_true", help="benchmark the database of the LUMINAR_* settings "
                                                              "(.env + environment; needs --yes)")
    p.add_argument("--yes", action="store_true", help="agree that the given database's crime_events is emptied")
    p.add_argument("--durable", action="store_true", help="scratch server with synchronous_commit=on (every "
                                                          "single-row commit then waits for the disk)")
    p.add_argument("--rounds", type=int, default=2, help="bulk runs per path, alternating the order (default 2)")
    p.add_argument("--batch-size", type=int, default=50_000, help="events per COPY, one miner each (default 50,000)")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic world (default 7)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"results directory (default {RESULTS})")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        print("error: asyncpg is missing (the baselines need it); install it: .venv/bin/pip install -e '.[bench]'",
              file=sys.stderr)
        return 2
    if args.events is not None and args.events < 1000:
        print("error: --events must be at least 1000", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.batch_size < 1:
        print("error: --rounds and --batch-size must be at least 1", file=sys.stderr)
        return 2
    from scratchpg import stop_on_sigterm

    stop_on_sigterm()
    plan = Plan.from_args(args)

    from scratchpg import DBNAME, USER, ScratchServer

    from luminar_store.config import load_dotenv_file, load_settings
    from luminar_store.errors import LuminarError

    try:
        if args.dsn or args.use_settings:
            if not args.yes:
                print("error: the benchmark empties crime_events of the given database; pass --yes to agree "
                      "(or run without --dsn/--use-settings for a scratch server)", file=sys.stderr)
                return 2
            if args.dsn:
                settings = load_settings(environ={"DATABASE_URL": args.dsn, "LUMINAR_DB_PASSWORD": ""})
            else:
                load_dotenv_file()
                settings = load_settings()
            if settings.env in ("staging", "production"):
                print(f"error: the benchmark empties crime_events and refuses LUMINAR_ENV={settings.env}; use a "
                      "scratch server (no --dsn) or a local/testing database", file=sys.stderr)
                return 2
            rows = run_all(settings, plan, server=None, out_dir=args.out)
        else:
            say("starting a scratch PostgreSQL server")
            with ScratchServer(durable=args.durable) as server:
                settings = load_settings("local", environ={
                    "LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port), "LUMINAR_DB_NAME": DBNAME,
                    "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""})
                rows = run_all(settings, plan, server=server, out_dir=args.out)
            say("scratch server stopped and removed")
    except (LuminarError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the scratch server was stopped and removed)", file=sys.stderr)
        return 130
    print(table(rows))
    notes = sorted({f.note for f in rows if f.note})
    for note in notes:
        print(f"note:{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
