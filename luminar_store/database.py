"""Connection pools: one primary, optional read replicas (psycopg 3 ``AsyncConnectionPool``).

The specification's pool settings map as DESIGN.md says: ``POOL_SIZE`` → ``min_size``, ``POOL_SIZE + MAX_OVERFLOW``
→ ``max_size``, ``POOL_TIMEOUT`` → ``timeout``, ``POOL_RECYCLE`` → ``max_lifetime`` (``DB_POOL_SIZE`` overrides the
size). Pooled connections are in **autocommit** mode: a single statement is its own transaction and costs one round
trip (no ``BEGIN``/``COMMIT``); ``transaction()`` opens an explicit transaction for work that must commit together.

Checking connections on checkout: a connection that the server closed (restart, ``pg_terminate_backend``) has
readable bytes on its idle socket (the server's FATAL message, or end of file). Every checkout polls the socket
(a system call, no round trip); only a connection with something to read is checked with a round trip, and a broken
one is discarded and the next one tried at once. So a restarted server costs one retry, not an error, and the hot
path pays no extra round trip (``check=AsyncConnectionPool.check_connection`` would add one to every call).

Example::

    async with Database(load_settings()) as database:
        async with database.transaction() as conn:
            await conn.execute("UPDATE crime_events SET severity_level = 2 WHERE event_id = %(event_id)s",
                               {"event_id": event_id})
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import select
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from luminar_store.config import Settings, load_settings
from luminar_store.errors import DatabaseUnavailableError, LuminarError, PoolExhaustedError
from luminar_store.ops.connect import unreachable
from luminar_store.validation import set_naive_timestamps

__all__ = ["Database"]

log = logging.getLogger(__name__)

#: Seconds a replica that could not be reached is skipped (reads go to the primary meanwhile).
REPLICA_RETRY_AFTER = 30.0

# Every pooled connection: autocommit (one round trip a statement) and no JIT compilation. The queries here are
# short index scans and small aggregations; PostgreSQL's JIT, triggered by cost estimates, spent more time compiling
# than it saved (hotspots over 1M events: 25 ms with JIT, 11 ms without). psycopg's default prepare_threshold (a
# statement is prepared on its 5th execution) is kept: the hot statements are few and constant.
_CONNECTION_KWARGS = {"autocommit": True, "options": "-c jit=off"}


async def _give_back(pool: AsyncConnectionPool, conn: psycopg.AsyncConnection) -> None:
    """Return a borrowed connection. A borrower may have switched autocommit off: the next must not inherit that.

    Done here rather than with the pool's ``reset`` callback, which would route every return through a background
    worker task (measured: a quarter of the throughput of 64 concurrent writers)."""
    if not conn.autocommit and not conn.closed:
        try:
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                await conn.rollback()
            await conn.set_autocommit(True)
        except psycopg.Error:
            pass  # a broken connection: the pool discards it
    await pool.putconn(conn)


def _has_pending_input(conn: psycopg.AsyncConnection) -> bool:
    """True when an idle connection's socket is readable: the server closed it or sent something unasked."""
    if conn.closed or conn.pgconn.status != pq.ConnStatus.OK:
        return True
    try:
        fd = conn.pgconn.socket
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)
    except (OSError, ValueError, psycopg.Error):
        return True


class _Pool:
    """One pool plus what messages need to name it (never the password), and the connections it opened.

    The connections are tracked through the pool's public ``configure`` callback (called once per new connection),
    so that a pool left behind by a finished event loop can have its sockets closed without reaching into the
    pool's internals (see ``Database._abandon``).
    """

    def __init__(self, label: str, where: str, conninfo: str, settings: Settings) -> None:
        self.label = label
        self.where = where
        self.conninfo = conninfo
        self.down_until = 0.0
        self.opened: weakref.WeakSet[psycopg.AsyncConnection] = weakref.WeakSet()
        self.pool = AsyncConnectionPool(
            conninfo,
            # Options given in the connection string (DATABASE_URL ...?options=) win over ours.
            kwargs=_CONNECTION_KWARGS if "options" not in conninfo_to_dict(conninfo) else {"autocommit": True},
            min_size=settings.pool_size,
            max_size=settings.pool_max_size,
            timeout=settings.pool_timeout,
            max_lifetime=settings.pool_recycle,
            name=label,
            open=False,
            configure=self._track,
        )

    async def _track(self, conn: psycopg.AsyncConnection) -> None:
        self.opened.add(conn)

    def close_sockets(self) -> None:
        """Close every connection this pool opened, without its event loop (libpq's ``finish``, no round trip)."""
        for conn in list(self.opened):
            if not conn.closed:
                conn.pgconn.finish()


class Database:
    """The primary pool and the optional read-replica pools of one ``Settings``.

    Open it explicitly (``await database.initialize()`` or ``async with Database(settings)``) or let the first
    ``connection()`` open it. Pools belong to the event loop that opened them (one loop at a time): used from a
    new loop (successive ``asyncio.run`` calls) the database opens fresh pools there. ``close()`` closes them; a
    later call reopens.

    Raises (from every method that needs a connection):
        DatabaseUnavailableError: the server cannot be reached; names host, port and database and the hint
            ``make db-start``.
        PoolExhaustedError: no connection became free within ``POOL_TIMEOUT`` seconds; names the pool size and the
            settings to change (``DB_POOL_SIZE``, ``POOL_TIMEOUT``).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        """Pools for ``settings`` (default: ``load_settings()``, which raises ``ConfigError``); nothing connects
        before the first call or ``initialize()``. The settings' rule for naive datetimes
        (``LUMINAR_NAIVE_TIMESTAMPS``) becomes the process's (``validation.set_naive_timestamps``)."""
        self.settings = settings if settings is not None else load_settings()
        set_naive_timestamps(self.settings.naive_timestamps)
        self._primary: _Pool | None = None
        self._replicas: list[_Pool] = []
        self._next_replica = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        state = "open" if self._primary is not None else "closed"
        return f"<Database {self.settings.safe_dsn()} replicas={len(self.settings.replica_urls)} {state}>"

    async def __aenter__(self) -> Database:
        await self.initialize()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle ------------------------------------------------------------------------------------------------
    async def initialize(self) -> None:
        """Open the pools (a no-op when they are open in this event loop) and wait for ``POOL_SIZE`` connections.

        Raises ``DatabaseUnavailableError`` when the primary cannot be reached (replicas are opened in the
        background and only skipped while unreachable).

        Example: ``await Database(settings).initialize()``
        """
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # no await between the test and the assignment: one lock per loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        assert self._lock is not None
        async with self._lock:
            if self._loop is loop and self._primary is not None:
                return
            self._abandon()
            await self._open(loop)

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        s = self.settings
        # One direct connection first: an unreachable server fails at once with libpq's reason, instead of after
        # POOL_TIMEOUT seconds of the pool's silent retries.
        try:
            probe = await psycopg.AsyncConnection.connect(s.conninfo())
        except psycopg.OperationalError as exc:
            raise unreachable(s, exc) from None
        await probe.close()
        primary = _Pool("luminar-primary", f"{s.describe()}, environment {s.env}", s.conninfo(), s)
        try:
            await primary.pool.open(wait=True, timeout=s.pool_timeout)
        except PoolTimeout:
            raise DatabaseUnavailableError(
                f"could not open {s.pool_size} connections to PostgreSQL at {s.describe()} within "
                f"{s.pool_timeout:g} s; lower DB_POOL_SIZE or raise the server's max_connections"
            ) from None
        replicas = [self._replica(i, url) for i, url in enumerate(s.replica_urls)]
        for replica in replicas:
            await replica.pool.open(wait=False)
        self._primary, self._replicas, self._loop = primary, replicas, loop

    def _replica(self, index: int, url: str) -> _Pool:
        s = self.settings
        try:
            given = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise DatabaseUnavailableError(
                f"LUMINAR_DB_REPLICA_URLS entry {index + 1} is not a valid connection string; "
                "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
            ) from None
        # What the replica URL leaves out is taken from the primary's settings (same credentials and TLS).
        extra = {k: v for k, v in s.connect_kwargs().items() if k not in given and k not in ("host", "port", "dbname")}
        extra["application_name"] = f"luminar_store_replica{index}"
        where = f"replica {index + 1} (host {given.get('host', s.host)}, port {given.get('port', s.port)}, " \
                f"database {given.get('dbname', s.name)})"
        return _Pool(f"luminar-replica{index}", where, make_conninfo(url, **extra), s)

    def _abandon(self) -> None:
        """Forget pools opened in another (finished) event loop: they cannot be awaited from this one.

        Their sockets are closed directly (the pool's own ``close()`` needs the loop it was opened in); their worker
        tasks died with that loop, so nothing is left to stop, and the pool objects are dropped."""
        pools = [p for p in [self._primary, *self._replicas] if p is not None]
        self._primary, self._replicas, self._loop = None, [], None
        for entry in pools:
            entry.close_sockets()

    async def close(self) -> None:
        """Close every pool (connections in use are closed when returned). Safe to call twice.

        Example: ``await database.close()``
        """
        pools = [p for p in [self._primary, *self._replicas] if p is not None]
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._abandon()
            return
        self._primary, self._replicas, self._loop = None, [], None
        for entry in pools:
            await entry.pool.close()

    async def health_check(self) -> bool:
        """True when the primary answers ``SELECT 1`` within ``LUMINAR_DB_CONNECT_TIMEOUT`` seconds (or
        ``POOL_TIMEOUT`` if shorter); never raises for a down server.

        Example: ``ok = await database.health_check()``
        """
        timeout = min(self.settings.pool_timeout, float(self.settings.connect_timeout))
        try:
            async with self.connection(timeout=timeout) as conn:
                cur = await conn.execute("SELECT 1")
                return (await cur.fetchone()) == (1,)
        except (LuminarError, psycopg.Error, OSError):
            return False

    def pool_stats(self) -> dict[str, dict[str, int]]:
        """psycopg_pool's counters per open pool (``pool_size``, ``pool_available``, ``requests_waiting`` ...)."""
        pools = [p for p in [self._primary, *self._replicas] if p is not None]
        return {entry.label: entry.pool.get_stats() for entry in pools}

    # -- connections ----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def connection(self, *, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled primary connection in autocommit mode, returned to the pool on exit.

        Waits at most ``timeout`` seconds (default ``POOL_TIMEOUT``) for a free connection, then raises
        ``PoolExhaustedError`` (or ``DatabaseUnavailableError`` when the server cannot be reached).

        Example::

            async with database.connection() as conn:
                await conn.execute("SELECT 1")
        """
        if self._loop is not asyncio.get_running_loop() or self._primary is None:
            await self.initialize()
        entry = self._primary
        assert entry is not None
        conn = await self._checkout(entry, entry.pool.timeout if timeout is None else timeout)
        try:
            yield conn
        finally:
            await _give_back(entry.pool, conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled primary connection inside one transaction: committed when the block ends, rolled back when it
        raises. Repositories built on it commit together.

        Example::

            async with database.transaction() as conn:
                report_id = await RawReportRepository(conn).store(report)
                await CrimeEventRepository(conn).store(event, miner_uid=7)
        """
        async with self.connection() as conn:
            async with conn.transaction():
                yield conn

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection for reads: the replicas in turn when configured (an unreachable replica is skipped for
        ``REPLICA_RETRY_AFTER`` seconds), else the primary. Replicas may lag the primary slightly.

        Example::

            async with database.read_connection() as conn:
                rows = await (await conn.execute("SELECT count(*) FROM crime_events")).fetchall()
        """
        if self._loop is not asyncio.get_running_loop() or self._primary is None:
            await self.initialize()
        entry = self._pick_replica()
        if entry is None:
            async with self.connection() as conn:
                yield conn
            return
        try:
            conn = await self._checkout(entry, min(entry.pool.timeout, float(self.settings.connect_timeout)))
        except LuminarError as exc:
            log.warning("%s unavailable, reading from the primary: %s", entry.where, exc)
            if entry.pool.get_stats().get("pool_size", 0) == 0:
                entry.down_until = time.monotonic() + REPLICA_RETRY_AFTER
            async with self.connection() as conn:
                yield conn
            return
        try:
            yield conn
        finally:
            await _give_back(entry.pool, conn)

    def _pick_replica(self) -> _Pool | None:
        if not self._replicas:
            return None
        now = time.monotonic()
        for _ in range(len(self._replicas)):
            entry = self._replicas[next(self._next_replica) % len(self._replicas)]
            if entry.down_until <= now:
                return entry
        return None

    async def _checkout(self, entry: _Pool, timeout: float) -> psycopg.AsyncConnection:
        """Get a working connection from ``entry`` within ``timeout`` seconds (see the module's note on checks)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await entry.pool.getconn(timeout=max(deadline - time.monotonic(), 0.001))
            except PoolTimeout:
                raise await self._timeout_error(entry, timeout) from None
            except PoolClosed:
                raise DatabaseUnavailableError(
                    f"the connection pool of {entry.where} was closed while waiting for a connection"
                ) from None
            if not _has_pending_input(conn):
                return conn
            try:
                await AsyncConnectionPool.check_connection(conn)
            except psycopg.Error:
                log.info("discarding a connection the server closed (%s)", entry.where)
                await entry.pool.putconn(conn)  # broken: the pool drops it and opens a replacement
                continue
            return conn

    async def _timeout_error(self, entry: _Pool, timeout: float) -> LuminarError:
        stats = entry.pool.get_stats()
        if stats.get("pool_size", 0) < stats.get("pool_max", 0):
            # The pool could have grown but did not: find out whether the server is reachable at all.
            try:
                probe = await psycopg.AsyncConnection.connect(entry.conninfo)
            except psycopg.OperationalError as exc:
                return unreachable(self.settings, exc, where=entry.where)
            await probe.close()
        return PoolExhaustedError(
            f"no database connection became free within {timeout:g} s: all {stats.get('pool_max')} connections of "
            f"the pool ({entry.where}) are in use; raise DB_POOL_SIZE (or MAX_OVERFLOW) or POOL_TIMEOUT, or hold "
            "connections for shorter"
        )
