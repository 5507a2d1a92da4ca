"""Fault scenario "outage": the server dies for D seconds while callers keep calling; what do they see?

A throw-away server (``scratchpg.ScratchServer``, durable: ``synchronous_commit=on``, so that an acknowledged write
that goes missing is the layer's fault, not the server's setting) is migrated; ``tasks`` caller tasks each call
``db.store_raw_report`` and ``db.get_recent_events`` on one ``LuminarDB`` every ~50 ms. For each downtime D the
postmaster is killed (``kill -9``: a crash), left dead for D seconds, restarted (crash recovery), and the calls are
read back. Figures per D:

* ``downtime_s``: kill → the server accepting connections again (D plus its restart: ``server_restart_s``);
* ``outage_seen_s``: the callers' outage, first failed call to the first successful one after the server is back;
* ``first_success_after_back_s``: the server accepting connections again → the first successful call (goal ≤ 2 s);
* ``longest_call_while_down_s`` and ``hung_calls`` (calls that took longer than the connect timeout; goal 0);
* ``unavailable_errors`` (the expected ``DatabaseUnavailableError``), ``false_pool_exhausted``
  (``PoolExhaustedError`` while the server was down; goal 0), ``unexpected_errors`` (anything else; goal 0);
* ``pool_warning_lines``: psycopg_pool's warnings (what a node that configured no logging prints on stderr) and
  ``state_change_log_lines`` (ours: one "lost", one "back");
* ``lost_acknowledged_writes``: reports whose ``store_raw_report`` returned before the crash and that are not in
  the table after it (goal 0).

The module's ``run(quick=...)`` returns the figures (``benchmarks/faults/run.py`` imports it); as a script it prints
them. Example::

    .venv/bin/python benchmarks/faults/outage.py --quick
    .venv/bin/python benchmarks/faults/outage.py --downtimes 5,30,90
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent), str(HERE.parents[1])):  # benchmarks/ (scratchpg), the project (luminar_store)
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg  # noqa: E402
from scratchpg import DBNAME, USER, ScratchServer  # noqa: E402

from luminar_store.access import LuminarDB  # noqa: E402
from luminar_store.config import load_settings  # noqa: E402
from luminar_store.errors import DatabaseUnavailableError, PoolExhaustedError, WriteInDoubtError  # noqa: E402
from luminar_store.migrator import DEFAULT_DIR, migrate_database  # noqa: E402

__all__ = ["run", "DEFAULT_DOWNTIMES", "QUICK_DOWNTIMES"]

DEFAULT_DOWNTIMES = (5.0, 30.0, 90.0)
QUICK_DOWNTIMES = (5.0,)
#: Seconds between one caller's calls.
CALL_EVERY = 0.05
#: Seconds of normal service before the first incident and after each one.
SERVED = 3.0
#: Seconds to wait for the first successful call after the server is back before calling the run broken.
SERVE_DEADLINE = 120.0
TASKS = 8


def say(message: str) -> None:
    print(f"[outage {datetime.now(timezone.utc):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass
class Call:
    kind: str
    start: float
    end: float
    error: str | None  # the exception's class name; None for a call that returned
    external_id: str | None = None  # a write's report id


class _Capture(logging.Handler):
    """Every record that reaches it, with the monotonic time it arrived."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[tuple[float, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((time.monotonic(), record))


async def _caller(db: LuminarDB, calls: list[Call], stop: asyncio.Event, n: int) -> None:
    while not stop.is_set():
        external_id = f"outage-{n}-{uuid.uuid4().hex}"
        report = {"external_id": external_id, "description": "outage scenario", "timestamp": datetime.now(timezone.utc),
                  "geotag": {"lat": 40.7, "lng": -74.0}}
        for kind in ("write", "read"):
            start = time.monotonic()
            error = None
            try:
                if kind == "write":
                    await db.store_raw_report(report)
                else:
                    await db.get_recent_events(hours=1, limit=10)
            except Exception as exc:  # noqa: BLE001 - every failure is a figure
                error = type(exc).__name__
            calls.append(Call(kind, start, time.monotonic(), error, external_id if kind == "write" else None))
        await asyncio.sleep(CALL_EVERY)


def _accepts(conninfo: str) -> bool:
    try:
        psycopg.connect(conninfo, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


async def _accepting_again(conninfo: str) -> float:
    """The monotonic time the server first accepts a connection (polled every 20 ms)."""
    while not await asyncio.to_thread(_accepts, conninfo):
        await asyncio.sleep(0.02)
    return time.monotonic()


def _present(conninfo: str, external_ids: list[str]) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT external_id FROM raw_incident_reports WHERE external_id = ANY(%s)",
                            (external_ids,)).fetchall()
    return {row[0] for row in rows}


async def _incident(server: ScratchServer, db: LuminarDB, calls: list[Call], logs: _Capture, ours: _Capture,
                    downtime: float, connect_wait: float) -> dict[str, object]:
    conninfo = server.conninfo()
    acked_before = [c.external_id for c in calls if c.kind == "write" and c.error is None and c.external_id]
    say(f"kill -9 of the postmaster; down for {downtime:g} s")
    killed = time.monotonic()
    await asyncio.to_thread(server.kill)
    await asyncio.sleep(max(downtime - (time.monotonic() - killed), 0))
    say("restarting")
    restarted = time.monotonic()
    restart = asyncio.create_task(asyncio.to_thread(server.restart))
    back = await _accepting_again(conninfo)
    await restart
    deadline = time.monotonic() + SERVE_DEADLINE
    while not any(c.error is None and c.end > back for c in calls):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no call succeeded within {SERVE_DEADLINE:g} s of the server accepting again")
        await asyncio.sleep(0.02)
    await asyncio.sleep(SERVED)

    failures = [c for c in calls if c.error is not None and c.end >= killed]
    first_failure = min((c.end for c in failures), default=killed)
    # The first call to succeed once the server accepts again (one started before may end then: a write the facade
    # carried over the outage by its in-call retry).
    first_success = min(c.end for c in calls if c.error is None and c.end > back)
    during = [c for c in calls if c.end >= killed and c.start <= first_success and c.error is not None]
    while_down = [c for c in calls if killed <= c.start <= back or (c.start < killed < c.end)]
    longest = max((c.end - c.start for c in while_down), default=0.0)
    warnings = [r for t, r in logs.records if killed <= t and not r.name.startswith("luminar_store")]
    changes = [r for t, r in ours.records if killed <= t and ("lost the database" in r.getMessage()
                                                                  or "is back" in r.getMessage())]
    present = await asyncio.to_thread(_present, conninfo, acked_before) if acked_before else set()
    figures: dict[str, object] = {
        "downtime_s": round(back - killed, 3),
        "server_restart_s": round(back - restarted, 3),
        "outage_seen_s": round(first_success - first_failure, 3),
        "first_success_after_back_s": round(first_success - back, 3),
        "longest_call_while_down_s": round(longest, 3),
        "hung_calls": sum(1 for c in while_down if c.end - c.start > connect_wait),
        "calls_while_down": len(while_down),
        "unavailable_errors": sum(1 for c in during if c.error == DatabaseUnavailableError.__name__),
        # writes in flight when the server went, not confirmed within the connect timeout (may have committed)
        "writes_in_doubt": sum(1 for c in during if c.error == WriteInDoubtError.__name__),
        "false_pool_exhausted": sum(1 for c in during if c.error == PoolExhaustedError.__name__),
        "unexpected_errors": sum(1 for c in during if c.error not in (DatabaseUnavailableError.__name__,
                                                                      WriteInDoubtError.__name__,
                                                                      PoolExhaustedError.__name__)),
        "pool_warning_lines": len(warnings),
        "state_change_log_lines": len(changes),
        "lost_acknowledged_writes": len(set(acked_before) - present),
    }
    say(f"D={downtime:g} s: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    return figures


async def run(*, quick: bool = False, downtimes: tuple[float, ...] | None = None, tasks: int = TASKS,
              connect_timeout: int | None = None) -> dict[str, object]:
    """Run the scenario on a scratch server and return its figures (see the module's docstring).

    Raises ``RuntimeError`` when the scratch server cannot be made or no call succeeds after an incident.

    Example: ``figures = asyncio.run(run(quick=True))``
    """
    downtimes = downtimes or (QUICK_DOWNTIMES if quick else DEFAULT_DOWNTIMES)
    logs, ours = _Capture(logging.WARNING), _Capture(logging.INFO)
    root, package = logging.getLogger(), logging.getLogger("luminar_store")
    package_level = package.level
    root.addHandler(logs)  # what reaches the root at WARNING: the lines a node without logging set-up prints
    package.addHandler(ours)
    package.setLevel(logging.INFO)
    say("starting a scratch PostgreSQL server (durable)")
    try:
        with ScratchServer(durable=True) as server:
            await asyncio.to_thread(migrate_database, server.conninfo(), DEFAULT_DIR)
            environ = {"LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port),
                       "LUMINAR_DB_NAME": DBNAME, "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": ""}
            if connect_timeout is not None:
                environ["LUMINAR_DB_CONNECT_TIMEOUT"] = str(connect_timeout)
            settings = load_settings("local", environ=environ)
            connect_wait = max(float(settings.connect_timeout), 2.0) + 0.5
            db = LuminarDB(settings)
            await db.initialize()
            calls: list[Call] = []
            stop = asyncio.Event()
            workers = [asyncio.create_task(_caller(db, calls, stop, n)) for n in range(tasks)]
            try:
                await asyncio.sleep(SERVED)
                incidents = {}
                for downtime in downtimes:
                    incidents[f"down_{downtime:g}s"] = await _incident(server, db, calls, logs, ours, downtime,
                                                                       connect_wait)
            finally:
                stop.set()
                await asyncio.gather(*workers, return_exceptions=True)
                await db.close()
            acked = [c.external_id for c in calls if c.kind == "write" and c.error is None and c.external_id]
            present = await asyncio.to_thread(_present, server.conninfo(), acked)
    finally:
        root.removeHandler(logs)
        package.removeHandler(ours)
        package.setLevel(package_level)
    return {
        "tasks": tasks,
        "connect_timeout_s": settings.connect_timeout,
        "pool_max_size": settings.pool_max_size,
        "pool_timeout_s": settings.pool_timeout,
        "calls": len(calls),
        "acknowledged_writes": len(acked),
        "lost_acknowledged_writes_total": len(set(acked) - present),
        "incidents": incidents,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"downtimes {','.join(f'{d:g}' for d in QUICK_DOWNTIMES)}")
    p.add_argument("--downtimes", help="comma-separated seconds (default "
                                       f"{','.join(f'{d:g}' for d in DEFAULT_DOWNTIMES)})")
    p.add_argument("--tasks", type=int, default=TASKS, help=f"caller tasks (default {TASKS})")
    p.add_argument("--connect-timeout", type=int, help="LUMINAR_DB_CONNECT_TIMEOUT (default: the settings')")
    args = p.parse_args(argv)
    try:
        downtimes = tuple(float(x) for x in args.downtimes.split(",")) if args.downtimes else None
    except ValueError:
        print("error: --downtimes takes seconds separated by commas, e.g. 5,30,90", file=sys.stderr)
        return 2
    try:
        figures = asyncio.run(run(quick=args.quick, downtimes=downtimes, tasks=args.tasks,
                                  connect_timeout=args.connect_timeout))
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
