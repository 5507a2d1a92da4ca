"""What the fault scenarios share: a scratch database, the backend killer, the retry loop, the counting queries.

A scenario module (``benchmarks/faults/<name>.py``) exposes ``async def run(*, quick: bool = False) -> dict`` that
returns its figures, and ``python benchmarks/faults/<name>.py [--quick]`` prints them (``main``). ``run.py`` runs
them all. The short forms also run in ``make test`` (``tests/test_faults.py``) on the test session's server.

Faults are made from outside the library: from a side connection of our own (``application_name``
``luminar_faults``), ``pg_terminate_backend`` of the pool's backends found in ``pg_stat_activity`` by database name,
or ``kill -9`` of one of them (scratch servers only); and lost acknowledgements through ``ackdrop.AckDropProxy``.

Example::

    async with scratch_database() as settings:
        facade, counters = LuminarDB(settings), Retried()
        async with Killer(settings, progress=lambda: counters.calls, total=1000, kills=3):
            for n in range(1000):
                await retrying(lambda n=n: facade.store_crime_event(event_input(n), miner_uid=1), counters)
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from luminar_store.access import LuminarDB
from luminar_store.config import Settings, load_settings
from luminar_store.errors import DatabaseUnavailableError

__all__ = [
    "FAULTS_APP",
    "Killer",
    "RETRYABLE",
    "Retried",
    "admin_connect",
    "batch_counts",
    "duplicates",
    "elapsed",
    "event_input",
    "kill_backends",
    "kill_backends_sync",
    "main",
    "make_durable",
    "marker_counts",
    "missing_ids",
    "quiet_pool_logs",
    "retrying",
    "say",
    "scratch_database",
    "stop_on_sigterm",
    "through_proxy",
]

HERE = Path(__file__).resolve().parent
T = TypeVar("T")

#: application_name of every connection the scenarios open for themselves (never killed by them).
FAULTS_APP = "luminar_faults"

#: What a caller retries with the same input: the server could not be reached or the connection broke mid-call.
RETRYABLE: tuple[type[BaseException], ...] = (DatabaseUnavailableError, psycopg.OperationalError)

#: A fixed instant the inputs' timestamps count from (in the past, inside every accepted range).
BASE_TIME = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def say(message: str) -> None:
    """Progress on stderr (stdout holds the figures)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the server -------------------------------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def scratch_database(**environ: str) -> AsyncIterator[Settings]:
    """A throw-away server (``benchmarks/scratchpg.py``), migrated; yields its ``Settings`` (env ``local``; extra
    ``LUMINAR_*``/pool variables from ``environ``). The server is stopped and deleted on exit, also on error."""
    if str(HERE.parent) not in sys.path:
        sys.path.append(str(HERE.parent))  # for scratchpg; after faults/, whose names win
    from scratchpg import DBNAME, USER, ScratchServer

    from luminar_store.migrator import DEFAULT_DIR, migrate_database

    server = ScratchServer()
    await asyncio.to_thread(server.start)
    try:
        settings = load_settings("local", environ={
            "LUMINAR_DB_HOST": server.host, "LUMINAR_DB_PORT": str(server.port), "LUMINAR_DB_NAME": DBNAME,
            "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": "", **environ})
        await asyncio.to_thread(migrate_database, settings.conninfo(), DEFAULT_DIR)
        yield settings
    finally:
        await asyncio.to_thread(server.stop)


def admin_conninfo(settings: Settings, *, dbname: str | None = None) -> str:
    """The settings' conninfo under our own application_name (so the killer never kills itself)."""
    return make_conninfo(settings.conninfo(dbname=dbname), application_name=FAULTS_APP)


async def admin_connect(settings: Settings, *, dbname: str | None = None) -> psycopg.AsyncConnection:
    """An autocommit side connection named ``luminar_faults``."""
    return await psycopg.AsyncConnection.connect(admin_conninfo(settings, dbname=dbname), autocommit=True)


async def make_durable(settings: Settings) -> None:
    """``synchronous_commit = on`` for the database's new sessions (the scratch server's default is off), so that
    an acknowledged commit survives a crash: needed before ``kill -9``, which makes the server recover from its WAL.
    The CHECKPOINT writes out what earlier commits left unflushed (the schema itself, and this setting): without it
    the first crash could undo them."""
    async with await admin_connect(settings) as admin:
        await admin.execute(sql.SQL("ALTER DATABASE {} SET synchronous_commit = on").format(
            sql.Identifier(settings.name)))
        await admin.execute("CHECKPOINT")


# -- killing backends -------------------------------------------------------------------------------------------------
#: The client backends of one database except ours (the side connections and the caller's own).
THEIR_BACKENDS = """
  FROM pg_stat_activity
 WHERE datname = %(dbname)s
   AND backend_type = 'client backend'
   AND pid <> pg_backend_pid()
   AND coalesce(application_name, '') <> %(ours)s"""

#: Terminates every one of them.
KILL_BACKENDS = "SELECT pid" + THEIR_BACKENDS + "\n   AND pg_terminate_backend(pid)"

#: Which of the given backends still exist.
STILL_THERE = "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%(pids)s)"

#: Their pids, the ones running a statement first.
PIDS_ACTIVE_FIRST = "SELECT pid" + THEIR_BACKENDS + "\n ORDER BY state = 'active' DESC"

#: How many of those backends are running a statement right now.
ACTIVE_BACKENDS = "SELECT count(*)" + THEIR_BACKENDS + "\n   AND state = 'active'"


async def kill_backends(admin: psycopg.AsyncConnection, dbname: str, *, wait: float = 0.0) -> int:
    """Terminate every client backend of ``dbname`` but the side connections; returns how many.

    ``pg_terminate_backend`` only signals: with ``wait`` > 0, poll (at most ``wait`` seconds) until those backends
    have exited, so that their connections are closed from the server's side before the caller goes on."""
    cur = await admin.execute(KILL_BACKENDS, {"dbname": dbname, "ours": FAULTS_APP})
    pids = [int(row[0]) for row in await cur.fetchall()]
    deadline = time.monotonic() + wait
    while pids and time.monotonic() < deadline:
        row = await (await admin.execute(STILL_THERE, {"pids": pids})).fetchone()
        if not row or not row[0]:
            break
        await asyncio.sleep(0.01)
    return len(pids)


def kill_backends_sync(conninfo: str, dbname: str) -> int:
    """``kill_backends`` on a short-lived blocking connection (for a thread that must not need the event loop)."""
    with psycopg.connect(make_conninfo(conninfo, application_name=FAULTS_APP), autocommit=True) as conn:
        return len(conn.execute(KILL_BACKENDS, {"dbname": dbname, "ours": FAULTS_APP}).fetchall())


class Killer:
    """Kills the writers' backends ``kills`` times, and loses ``lost_acks`` acknowledgements (through ``proxy``, an
    ``ackdrop.AckDropProxy``), spread evenly through a run of ``total`` steps.

    ``progress()`` says how many steps are done; kill ``k`` (1-based) happens once progress reaches
    ``k * total / (kills + 1)``, preferably while a statement is running (it polls up to 10 times for one); lost
    acknowledgement ``k`` is armed at ``(k - 1/2) * total / (lost_acks + 1)``, between the kills. Use as
    ``async with Killer(...) as killer:`` around the run; ``killer.kills``, ``killer.terminated`` and
    ``killer.acks_dropped`` are the figures.

    ``sigkill=True`` kills one running backend with SIGKILL (``kill -9``) instead: the postmaster then ends every
    backend and recovers from its WAL, as after a crash; a commit whose WAL was written but whose answer was not yet
    sent survives unacknowledged. Only for a scratch server of our own (the whole server restarts). ``back_at``
    holds when the server accepted our connection again after each.
    """

    def __init__(self, settings: Settings, *, progress: Callable[[], int], total: int, kills: int,
                 lost_acks: int = 0, proxy: Any = None, every: float = 0.002, sigkill: bool = False) -> None:
        self.settings = settings
        self.sigkill = sigkill
        self.progress = progress
        steps = [((k + 1) * total // (kills + 1), "kill") for k in range(kills)]
        steps += [((2 * k + 1) * total // (2 * (lost_acks + 1)), "ack")
                  for k in range(lost_acks if proxy is not None else 0)]
        self.steps = sorted(steps)
        self.proxy = proxy
        self.every = every
        self.kills = 0
        self.terminated = 0
        self.back_at: list[float] = []  # after a kill -9: when the server accepted our connection again
        self._task: asyncio.Task[None] | None = None

    @property
    def acks_dropped(self) -> int:
        return self.proxy.dropped if self.proxy is not None else 0

    async def __aenter__(self) -> Killer:
        self._admin = await admin_connect(self.settings)
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._admin.close()
        if self.proxy is not None:
            self.proxy.armed = 0  # an acknowledgement armed too late for the run is not lost afterwards

    async def _loop(self) -> None:
        params = {"dbname": self.settings.name, "ours": FAULTS_APP}
        for threshold, what in self.steps:
            while self.progress() < threshold:
                await asyncio.sleep(self.every)
            if what == "ack":
                self.proxy.arm()
                continue
            for _ in range(10):  # a kill that lands mid-statement is the interesting one
                row = await (await self._admin.execute(ACTIVE_BACKENDS, params)).fetchone()
                if row and row[0]:
                    break
                await asyncio.sleep(0)
            if self.sigkill:
                self.terminated += await self._sigkill(params)
            else:
                self.terminated += await kill_backends(self._admin, self.settings.name)
            self.kills += 1

    async def _sigkill(self, params: dict[str, str]) -> int:
        rows = await (await self._admin.execute(PIDS_ACTIVE_FIRST, params)).fetchall()
        if not rows:
            return 0
        os.kill(int(rows[0][0]), signal.SIGKILL)
        # The postmaster ends every backend, our side connection's too, then recovers: wait for our connection to
        # be ended (reconnecting before would reach the old server), then reconnect once it accepts connections.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                await self._admin.execute("SELECT 1")
            except psycopg.Error:
                break
            await asyncio.sleep(0.01)
        await self._admin.close()
        while True:
            try:
                self._admin = await admin_connect(self.settings)
                self.back_at.append(time.monotonic())
                return 1
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def through_proxy(settings: Settings, lost_acks: int) -> AsyncIterator[tuple[Settings, Any]]:
    """``(settings, proxy)``: with ``lost_acks`` > 0, settings that connect through a new ``AckDropProxy`` (and the
    proxy); else the same settings and ``None``."""
    if lost_acks <= 0:
        yield settings, None
        return
    from ackdrop import AckDropProxy, settings_via

    async with AckDropProxy(settings.host, settings.port) as proxy:
        yield settings_via(settings, proxy), proxy


# -- retrying -------------------------------------------------------------------------------------------------------
class Retried:
    """Counters of a retry loop shared by many callers."""

    def __init__(self) -> None:
        self.calls = 0          # logical calls made
        self.attempts = 0       # attempts, first ones included
        self.retried = 0        # logical calls that needed more than one attempt
        self.acknowledged = 0   # logical calls that returned
        self.failed = 0         # logical calls given up (a non-retryable error, or too many attempts)
        self.errors: dict[str, int] = {}
        self.succeeded_at: list[float] = []  # time.monotonic() of every acknowledgement, in order

    def note(self, exc: BaseException) -> None:
        name = type(exc).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def first_success_after(self, moments: list[float]) -> float | None:
        """The longest wait, over ``moments``, from a moment to the next acknowledgement (seconds), or ``None``."""
        waits = []
        for moment in moments:
            i = bisect.bisect_left(self.succeeded_at, moment)
            if i < len(self.succeeded_at):
                waits.append(self.succeeded_at[i] - moment)
        return round(max(waits), 3) if waits else None

    def figures(self) -> dict[str, object]:
        return {"calls": self.calls, "attempts": self.attempts, "retried": self.retried,
                "acknowledged": self.acknowledged, "failed_calls": self.failed, "errors_seen": dict(self.errors)}


async def retrying(call: Callable[[], Awaitable[T]], counters: Retried, *, max_attempts: int = 100) -> T | None:
    """Call ``call()`` until it returns, retrying (same input) on a ``RETRYABLE`` error with a short growing pause.

    Returns the result, or ``None`` when the call failed otherwise or ``max_attempts`` were used (both counted in
    ``counters.failed`` and ``counters.errors``)."""
    counters.calls += 1
    for attempt in range(1, max_attempts + 1):
        counters.attempts += 1
        try:
            result = await call()
        except RETRYABLE as exc:
            counters.note(exc)
            if attempt == 1:
                counters.retried += 1
            await asyncio.sleep(min(0.01 * attempt, 0.5))
            continue
        except Exception as exc:  # noqa: BLE001 - a figure: counted and named, never hidden
            counters.note(exc)
            counters.failed += 1
            return None
        counters.acknowledged += 1
        counters.succeeded_at.append(time.monotonic())
        return result
    counters.failed += 1
    return None


# -- inputs and counting ----------------------------------------------------------------------------------------------
def event_input(seq: int, *, batch: int | None = None) -> dict[str, object]:
    """The protocol mapping of logical event ``seq`` (no ``event_id``: the README's usage). Every field that a
    natural key could use differs between two ``seq`` (time by the microsecond, point by ~1 m), and the metadata
    carries the marker ``fault_seq`` (and ``fault_batch``) that the counting queries group by."""
    metadata: dict[str, object] = {"fault_seq": seq}
    if batch is not None:
        metadata["fault_batch"] = batch
    return {"event_type": "theft", "geotag": {"lat": 40.0 + (seq % 100_000) * 1e-5, "lng": -74.0 - (seq // 100_000)
                                                * 1e-5},
            "timestamp": BASE_TIME + dt.timedelta(microseconds=seq), "severity": 1 + seq % 5,
            "confidence_score": 0.8, "metadata": metadata}


#: Rows per logical event (the marker ``fault_seq`` in the metadata).
COUNT_BY_SEQ = """
SELECT (metadata ->> 'fault_seq')::bigint AS seq, count(*) AS n
FROM crime_events
WHERE metadata ? 'fault_seq'
GROUP BY 1
"""

#: Per batch (the marker ``fault_batch``): rows and distinct logical events.
COUNT_BY_BATCH = """
SELECT (metadata ->> 'fault_batch')::bigint AS batch, count(*) AS n,
       count(DISTINCT metadata ->> 'fault_seq') AS distinct_events
FROM crime_events
WHERE metadata ? 'fault_batch'
GROUP BY 1
"""

#: Which of the given event ids are not in the table.
MISSING_IDS = """
SELECT given.id
FROM unnest(%(ids)s::uuid[]) AS given(id)
WHERE NOT EXISTS (SELECT 1 FROM crime_events e WHERE e.event_id = given.id)
"""


async def marker_counts(conn: psycopg.AsyncConnection) -> dict[int, int]:
    """Rows per logical event ``fault_seq``."""
    rows = await (await conn.execute(COUNT_BY_SEQ)).fetchall()
    return {int(seq): int(n) for seq, n in rows}


async def batch_counts(conn: psycopg.AsyncConnection) -> dict[int, tuple[int, int]]:
    """``{batch: (rows, distinct logical events)}`` per ``fault_batch``."""
    rows = await (await conn.execute(COUNT_BY_BATCH)).fetchall()
    return {int(b): (int(n), int(d)) for b, n, d in rows}


async def missing_ids(conn: psycopg.AsyncConnection, ids: Iterable[uuid.UUID]) -> int:
    """How many of ``ids`` (acknowledged event ids) are not in ``crime_events``."""
    rows = await (await conn.execute(MISSING_IDS, {"ids": list(ids)})).fetchall()
    return len(rows)


def duplicates(counts: dict[int, int]) -> int:
    """Rows beyond one per logical event."""
    return sum(n - 1 for n in counts.values() if n > 1)


# -- the command line of a scenario -----------------------------------------------------------------------------------
def main(name: str, run: Callable[..., Awaitable[dict[str, object]]], argv: list[str] | None = None) -> int:
    """``python benchmarks/faults/<name>.py [--quick]``: run the scenario, print its figures as JSON."""
    parser = argparse.ArgumentParser(prog=f"benchmarks/faults/{name}.py",
                                     description=f"The fault scenario '{name}' on a scratch server.")
    parser.add_argument("--quick", action="store_true", help="the short form (the one make test also runs)")
    args = parser.parse_args(argv)
    quiet_pool_logs()
    stop_on_sigterm()
    figures = asyncio.run(run(quick=args.quick))
    print(json.dumps(figures, indent=2, default=str))
    return 0


def stop_on_sigterm() -> None:
    """SIGTERM ends the run like Ctrl-C does (``scratchpg.stop_on_sigterm``)."""
    if str(HERE.parent) not in sys.path:
        sys.path.append(str(HERE.parent))  # for scratchpg; after faults/, whose names win
    from scratchpg import stop_on_sigterm as through_finally_blocks

    through_finally_blocks()


def quiet_pool_logs() -> None:
    """The pool logs a warning for every connection a kill broke; the figures count them, the log need not."""
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


async def under_faults(settings: Settings, counters: Retried, *, total: int, kills: int, lost_acks: int,
                       sigkill: bool, workers: Callable[[LuminarDB], Iterable[Awaitable[None]]]
                       ) -> tuple[Killer, float]:
    """Run ``workers(facade)`` together on a facade of ``settings`` (through an ``AckDropProxy`` when
    ``lost_acks``), a ``Killer`` breaking their calls ``total`` steps long; returns the killer (its figures) and the
    seconds it took. The one harness of the writes, bulk and rounds scenarios."""
    start = time.monotonic()
    async with through_proxy(settings, lost_acks) as (via, proxy):
        facade = LuminarDB(via)
        try:
            await facade.initialize()
            async with Killer(settings, progress=lambda: counters.calls, total=total, kills=kills,
                              lost_acks=lost_acks, proxy=proxy, sigkill=sigkill) as killer:
                await asyncio.gather(*workers(facade))
        finally:
            await facade.close()
    return killer, elapsed(start)


def elapsed(start: float) -> float:
    """Seconds since ``start`` (``time.monotonic()``), rounded for the figures."""
    return round(time.monotonic() - start, 3)
