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

Outages: a broken connection (found at checkout, or broken during a call) or a pool that cannot hand one out within
a connect timeout makes the database *probe* the server with one direct connection, bounded by
``LUMINAR_DB_CONNECT_TIMEOUT`` (one probe at a time; callers arriving meanwhile share its answer). When the probe
fails the server is marked down (``server_state.ServerState``: one WARNING), and its pool is **closed**, so that no
pool retries in the background with growing delays (psycopg_pool's back-off, up to half a minute, and a warning on
every attempt). While it is down every call fails within the connect timeout with ``DatabaseUnavailableError``
(a failure less than ``PRIMARY_RETRY_AFTER`` seconds old is reused without a new probe); the first call that finds
it answering opens a **fresh pool** (one INFO: how long it was down). ``server_status()`` shows the state.

Read replicas (``read_connection``): each has a circuit breaker. A replica that refuses or times out is marked down
(one WARNING), its pool closed, and reads skip it at once for ``LUMINAR_DB_REPLICA_COOLDOWN`` seconds; then one read
probes it (the others keep going elsewhere), and either it is back (one INFO, a fresh pool) or the cool-down starts
again. So a dead replica costs one connect timeout per cool-down, not one per read. A replica more than
``LUMINAR_DB_REPLICA_MAX_LAG`` bytes of WAL behind the primary is skipped until it catches up (``replicas``: measured
by WAL positions, at most every few seconds). ``reading_own_writes()`` sends a task's reads to the primary;
``replica_status()`` shows each replica's health and lag.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from luminar_store.config import Settings, load_settings
from luminar_store.errors import DatabaseUnavailableError, LuminarError, PoolExhaustedError
from luminar_store.ops.connect import unreachable
from luminar_store.replicas import (
    PRIMARY_WAL_POSITION,
    REPLICA_LAG,
    Lag,
    LagTracker,
    ReplicaStatus,
    replica_target,
)
from luminar_store.server_state import ServerState, ServerStatus
from luminar_store.validation import set_naive_timestamps

__all__ = ["Database", "PRIMARY_RETRY_AFTER"]

log = logging.getLogger(__name__)

# Whether the login is a superuser, or owns (or is a member of the owner of) the schema's tables: a node's login must
# be neither (docs/security.md), or every node can rewrite the audit trail and the others' work.
LOGIN_PRIVILEGE = """
SELECT r.rolsuper,
       EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = 'crime_events' AND pg_has_role(c.relowner, 'MEMBER'))
  FROM pg_roles r WHERE r.rolname = current_user
"""

#: Seconds a failed probe of the primary is reused: calls meanwhile fail at once with its message. Short, so that the
#: first call after the server is back is served within a fraction of a second.
PRIMARY_RETRY_AFTER = 0.25

# Every pooled connection: autocommit (one round trip a statement) and no JIT compilation. The queries here are
# short index scans and small aggregations; PostgreSQL's JIT, triggered by cost estimates, spent more time compiling
# than it saved (hotspots over 1M events: 25 ms with JIT, 11 ms without). psycopg's default prepare_threshold (a
# statement is prepared on its 5th execution) is kept: the hot statements are few and constant.
_CONNECTION_KWARGS = {"autocommit": True, "options": "-c jit=off"}
# Through PgBouncer in transaction pooling: nothing prepared (a statement prepared on one of its server connections
# is unknown on the next; the distribution's PgBouncer predates 1.21's max_prepared_statements), and no startup
# options (PgBouncer before 1.20 refuses them unless told to ignore them; `luminar-db bouncer config` sets jit=off
# on its server connections instead).
_POOLED_KWARGS = {"autocommit": True, "prepare_threshold": None}

# The backend's own process id: through a connection pooler it differs from the one the connection was told at
# start-up (the pooler's own cancel key), which is how a pooler in between is found.
BACKEND_PID = "SELECT pg_backend_pid()"

# Set by ``Database.reading_own_writes()``: this task's reads go to the primary.
_OWN_WRITES: ContextVar[bool] = ContextVar("luminar_reading_own_writes", default=False)


def _connect_wait(settings: Settings) -> float:
    """Seconds one connection attempt may take: the connect timeout as psycopg applies it (at least 2 s, as libpq),
    plus a little for the event loop."""
    return max(float(settings.connect_timeout or 10), 2.0) + 0.5


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


async def _through_pooler(conn: psycopg.AsyncConnection) -> bool:
    """True when ``conn`` reaches PostgreSQL through a pooler: its server process is not the one it was told of."""
    row = await (await conn.execute(BACKEND_PID)).fetchone()
    return row is not None and row[0] != conn.info.backend_pid


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
    """One server's pool in one event loop, plus what messages need to name it (never the password).

    ``pool`` is ``None`` while the server is down (closed when it was lost; a fresh one is opened when it answers).
    ``borrowed`` counts the connections lent from the current pool (``generation``), so that "all connections are
    in use" is said only when they are. The connections ever opened are tracked through the pool's public
    ``configure`` callback, so that a pool left behind by a finished event loop can have its sockets closed without
    reaching into the pool's internals (see ``Database._abandon``).
    """

    def __init__(self, label: str, where: str, conninfo: str, settings: Settings, state: ServerState) -> None:
        self.label = label
        self.where = where
        self.conninfo = conninfo
        self.settings = settings
        self.state = state
        self.pool: AsyncConnectionPool | None = None
        self.generation = 0
        self.borrowed = 0
        self.closed = False
        self.probing = asyncio.Lock()  # one probe (or reopening) of this server at a time
        self.opened: weakref.WeakSet[psycopg.AsyncConnection] = weakref.WeakSet()
        self.lag: LagTracker | None = None  # replicas only
        #: Whether this server is reached through a pooler (PgBouncer): ``LUMINAR_DB_PGBOUNCER``, else found out by
        #: the first probe (None until then).
        self.pooled: bool | None = settings.pgbouncer

    def connection_kwargs(self) -> dict[str, object]:
        """What every pooled connection is opened with (see ``_CONNECTION_KWARGS`` and ``_POOLED_KWARGS``)."""
        if self.pooled:
            return dict(_POOLED_KWARGS)
        # Options given in the connection string (DATABASE_URL ...?options=) win over ours.
        return dict(_CONNECTION_KWARGS) if "options" not in conninfo_to_dict(self.conninfo) else {"autocommit": True}

    def new_pool(self) -> AsyncConnectionPool:
        """A new (not yet opened) pool for this server; it becomes the current one."""
        s, conninfo = self.settings, self.conninfo
        self.pool = AsyncConnectionPool(
            conninfo,
            kwargs=self.connection_kwargs(),
            min_size=s.pool_size,
            max_size=s.pool_max_size,
            timeout=s.pool_timeout,
            max_lifetime=s.pool_recycle,
            name=self.label,
            open=False,
            configure=self._track,
        )
        self.generation += 1
        self.borrowed = 0
        return self.pool

    async def _track(self, conn: psycopg.AsyncConnection) -> None:
        self.opened.add(conn)

    def close_sockets(self) -> None:
        """Close every connection this entry's pools opened, without its event loop (libpq's ``finish``)."""
        for conn in list(self.opened):
            if not conn.closed:
                conn.pgconn.finish()


class Database:
    """The primary pool and the optional read-replica pools of one ``Settings``.

    Open it explicitly (``await database.initialize()`` or ``async with Database(settings)``) or let the first
    ``connection()`` open it. Pools belong to the event loop that opened them (one loop at a time): used from a
    new loop (successive ``asyncio.run`` calls) the database opens fresh pools there. ``close()`` closes them; a
    later call reopens. While a server is down no pool of it stays open (see the module's note on outages).

    Raises (from every method that needs a connection):
        DatabaseUnavailableError: the server cannot be reached (within ``LUMINAR_DB_CONNECT_TIMEOUT`` seconds);
            names host, port and database and the hint ``make db-start``.
        PoolExhaustedError: no connection became free within ``POOL_TIMEOUT`` seconds while the server answers;
            names the pool size, how many are in use and the settings to change (``DB_POOL_SIZE``,
            ``POOL_TIMEOUT``).
    """

    def __init__(self, settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Pools for ``settings`` (default: ``load_settings()``, which raises ``ConfigError``); nothing connects
        before the first call or ``initialize()``. The settings' rule for naive datetimes
        (``LUMINAR_NAIVE_TIMESTAMPS``) becomes the process's (``validation.set_naive_timestamps``). ``clock``
        (monotonic seconds) times the replicas' cool-downs and lag measurements: tests pass one they control."""
        self.settings = settings if settings is not None else load_settings()
        self._clock = clock
        self._lags: dict[str, LagTracker] = {}  # per replica, kept across event loops
        set_naive_timestamps(self.settings.naive_timestamps)
        self._primary: _Pool | None = None
        self._replicas: list[_Pool] = []
        self._next_replica = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._states: dict[str, ServerState] = {}  # per server, kept across event loops
        self._closing: set[asyncio.Task[None]] = set()  # pools of lost servers, being closed

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

        Raises ``DatabaseUnavailableError`` when the primary cannot be reached. A replica's pool is opened by its
        first read, after a probe (a replica that cannot be reached is skipped, and reads go to the primary).

        Example: ``await Database(settings).initialize()``
        """
        loop = asyncio.get_running_loop()
        if self._lock_loop is not loop:  # no await between the test and the assignment: one lock per loop
            self._lock, self._lock_loop = asyncio.Lock(), loop
        assert self._lock is not None
        async with self._lock:
            if self._loop is loop and self._primary is not None:
                await self._pool_for(self._primary)  # raises while the primary is down
                return
            self._abandon()
            await self._open(loop)

    def _state(self, label: str, where: str, retry_after: float,
               clock: Callable[[], float] = time.monotonic) -> ServerState:
        if label not in self._states:
            self._states[label] = ServerState(where, retry_after=retry_after, clock=clock)
        return self._states[label]

    async def _open(self, loop: asyncio.AbstractEventLoop) -> None:
        s = self.settings
        where = f"{s.describe()}, environment {s.env}"
        primary = _Pool("luminar-primary", where, s.conninfo(), s,
                        self._state("luminar-primary", where, PRIMARY_RETRY_AFTER))
        replicas = [self._replica(i, url) for i, url in enumerate(s.replica_urls)]
        # One direct connection first: an unreachable server fails at once with libpq's reason, instead of after
        # POOL_TIMEOUT seconds of the pool's silent retries.
        async with primary.probing:
            failure = primary.state.recent_failure() or await self._probe(primary)
            if failure is not None:
                raise DatabaseUnavailableError(failure)
            pool = primary.new_pool()
            try:
                await pool.open(wait=True, timeout=s.pool_timeout)
            except PoolTimeout:
                await pool.close()
                raise DatabaseUnavailableError(
                    f"could not open {s.pool_size} connections to PostgreSQL at {s.describe()} within "
                    f"{s.pool_timeout:g} s; lower DB_POOL_SIZE or raise the server's max_connections"
                ) from None
        self._primary, self._replicas, self._loop = primary, replicas, loop
        if not s.rules.runs_here:
            await self._warn_if_privileged(pool)

    async def _warn_if_privileged(self, pool: AsyncConnectionPool) -> None:
        """Log one warning when a server run elsewhere (staging, production) is reached as a superuser or as the
        owner of the schema: the nodes' login must be neither."""
        async with pool.connection() as conn:
            superuser, owner = await (await conn.execute(LOGIN_PRIVILEGE)).fetchone()
        if superuser or owner:
            log.warning("connected to %s as %s, %s: every node using this login can change the schema, the audit "
                        "trail and the other nodes' work; give each node its own login (luminar-db roles add-node; "
                        "docs/security.md)", self.settings.describe(), self.settings.user,
                        "a superuser" if superuser else "the owner of the schema")

    def _replica(self, index: int, url: str) -> _Pool:
        s = self.settings
        target = replica_target(s, index, url)
        entry = _Pool(target.label, target.where, target.conninfo, s,
                      self._state(target.label, target.where, s.replica_cooldown, self._clock))
        entry.lag = self._lag(target.label, target.where)
        return entry

    def _lag(self, label: str, where: str) -> LagTracker:
        if label not in self._lags:  # kept across event loops, like the server states
            self._lags[label] = LagTracker(where, self.settings.replica_max_lag, clock=self._clock)
        return self._lags[label]

    def _abandon(self) -> None:
        """Forget pools opened in another (finished) event loop: they cannot be awaited from this one.

        Their sockets are closed directly (the pool's own ``close()`` needs the loop it was opened in); their worker
        tasks died with that loop, so nothing is left to stop, and the pool objects are dropped."""
        entries = [p for p in [self._primary, *self._replicas] if p is not None]
        self._primary, self._replicas, self._loop = None, [], None
        self._closing = set()
        for entry in entries:
            entry.closed = True
            entry.close_sockets()

    async def close(self) -> None:
        """Close every pool (connections in use are closed when returned). Safe to call twice.

        Example: ``await database.close()``
        """
        entries = [p for p in [self._primary, *self._replicas] if p is not None]
        if self._loop is not None and self._loop is not asyncio.get_running_loop():
            self._abandon()
            return
        self._primary, self._replicas, self._loop = None, [], None
        for entry in entries:
            entry.closed = True
            pool, entry.pool = entry.pool, None
            if pool is not None:
                await pool.close()
        closing, self._closing = self._closing, set()
        if closing:
            await asyncio.wait(closing)

    async def health_check(self) -> bool:
        """True when the primary accepts a connection and answers ``SELECT 1`` within ``LUMINAR_DB_CONNECT_TIMEOUT``
        seconds; never raises for a down server. It asks with a connection of its own, not a pooled one: a pool
        busy with other calls is not an unhealthy server. A change of state is logged once (see
        ``server_status()``).

        Example: ``ok = await database.health_check()``
        """
        s = self.settings
        where = f"{s.describe()}, environment {s.env}"
        state = self._state("luminar-primary", where, PRIMARY_RETRY_AFTER)
        try:
            async with asyncio.timeout(_connect_wait(s)):
                conn = await psycopg.AsyncConnection.connect(s.conninfo(), autocommit=True)
                async with conn:
                    answer = await (await conn.execute("SELECT 1")).fetchone()
        except (psycopg.Error, OSError, TimeoutError) as exc:
            state.mark_down(str(unreachable(s, exc, where=where)))
            primary = self._primary
            if primary is not None and primary.pool is not None and self._loop is asyncio.get_running_loop():
                self._retire(primary)  # no pool left retrying in the background while the server is down
            return False
        state.mark_up()
        return answer == (1,)

    def server_status(self) -> dict[str, ServerStatus]:
        """The state of each server seen so far, by pool name (``luminar-primary``, ``luminar-replica0`` ...): up
        or down, since when, and while down the last failure's message. For monitoring; it asks no server.

        Example::

            status = database.server_status()["luminar-primary"]
            if not status.up:
                print(f"primary down for {status.down_for:.0f} s: {status.reason}")
        """
        return {label: state.status() for label, state in self._states.items()}

    def replica_status(self) -> list[ReplicaStatus]:
        """Each configured replica, in order: health (up, cooling down, down), since when, lag (bytes and seconds,
        and how old the measurement is) and whether reads use it now. For monitoring; it asks no server (lag is
        measured by reads, at most every ``replicas.LAG_CHECK_EVERY`` seconds). Never shows a password.

        Example::

            for replica in database.replica_status():
                print(replica.line())
        """
        found = []
        for index, url in enumerate(self.settings.replica_urls):
            target = replica_target(self.settings, index, url)
            label, where = target.label, target.where
            state, tracker = self._states.get(label), self._lags.get(label)
            status = state.status() if state is not None else None
            up = status is None or status.up
            retry_in = state.retry_in() if state is not None else 0.0
            health = "up" if up else "cooling down" if retry_in > 0 else "down"
            lag = tracker.lag if tracker is not None else None
            lagging = tracker is not None and tracker.lagging
            found.append(ReplicaStatus(
                name=label, where=where, health=health, since=None if up else status.since,  # type: ignore[union-attr]
                retry_in=retry_in, reason=None if status is None else status.reason,
                lag_bytes=None if lag is None else lag.bytes, lag_seconds=None if lag is None else lag.seconds,
                lag_age=None if tracker is None else tracker.age(), in_use=up and not lagging))
        return found

    def pool_stats(self) -> dict[str, dict[str, int]]:
        """psycopg_pool's counters per open pool (``pool_size``, ``pool_available``, ``requests_waiting`` ...)."""
        entries = [p for p in [self._primary, *self._replicas] if p is not None and p.pool is not None]
        return {entry.label: entry.pool.get_stats() for entry in entries}  # type: ignore[union-attr]

    # -- connections ----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def connection(self, *, timeout: float | None = None) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled primary connection in autocommit mode, returned to the pool on exit.

        Waits at most ``timeout`` seconds (default ``POOL_TIMEOUT``) for a free connection, then raises
        ``PoolExhaustedError``; raises ``DatabaseUnavailableError`` within the connect timeout when the server
        cannot be reached.

        Example::

            async with database.connection() as conn:
                await conn.execute("SELECT 1")
        """
        if self._loop is not asyncio.get_running_loop() or self._primary is None:
            await self.initialize()
        entry = self._primary
        assert entry is not None
        async with self._lend(entry, self.settings.pool_timeout if timeout is None else timeout) as conn:
            yield conn

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
        """A connection for reads: a healthy replica when configured (in turn), else the primary; the primary
        inside ``reading_own_writes()``. Replicas may lag the primary, by at most ``LUMINAR_DB_REPLICA_MAX_LAG``
        bytes of WAL when last measured.

        A replica is skipped, and the read goes to the next one or to the primary without waiting, while it is
        cooling down (it refused or timed out less than ``LUMINAR_DB_REPLICA_COOLDOWN`` seconds ago), while one
        read probes it after its cool-down, and while it is over the lag limit. Each change is logged once (lost /
        back, behind / caught up), never per read.

        Example::

            async with database.read_connection() as conn:
                rows = await (await conn.execute("SELECT count(*) FROM crime_events")).fetchall()
        """
        if self._loop is not asyncio.get_running_loop() or self._primary is None:
            await self.initialize()
        if not _OWN_WRITES.get():
            for entry in self._replica_candidates():
                try:
                    loan = await self._checkout(entry, min(self.settings.pool_timeout, _connect_wait(self.settings)))
                except LuminarError as exc:
                    # A lost replica was logged once by its ServerState; a busy one is not news.
                    log.debug("reading elsewhere than %s: %s", entry.where, exc)
                    continue
                async with self._loaned(entry, loan) as conn:
                    if await self._close_enough(entry, conn):
                        yield conn
                        return
        async with self.connection() as conn:
            yield conn

    @asynccontextmanager
    async def reading_own_writes(self) -> AsyncIterator[None]:
        """Within the block, this task's reads (``read_connection()``, and so the facade's reads) go to the
        primary, which has every write committed so far; a replica may not have it yet. Tasks started inside the
        block inherit it.

        Example::

            await db.store_crime_event(event, miner_uid=7)
            async with db.reading_own_writes():  # the facade passes it on
                events = await db.get_events_by_miner(7)
        """
        token = _OWN_WRITES.set(True)
        try:
            yield
        finally:
            _OWN_WRITES.reset(token)

    def _replica_candidates(self) -> list[_Pool]:
        """The replicas a read may use now, in round-robin order: not cooling down after a failure, not being
        probed by another read after its cool-down (half-open: one read probes, the others go elsewhere at once),
        not over the lag limit by a fresh measurement."""
        count = len(self._replicas)
        if not count:
            return []
        start = next(self._next_replica)
        found = []
        for step in range(count):
            entry = self._replicas[(start + step) % count]
            if entry.state.recent_failure() is not None:
                continue
            if entry.pool is None and entry.probing.locked():
                continue
            if entry.lag is not None and entry.lag.skips():
                continue
            found.append(entry)
        return found

    async def _close_enough(self, entry: _Pool, conn: psycopg.AsyncConnection) -> bool:
        """Whether ``entry`` may serve this read: its lag, measured now on ``conn`` when the last measurement is
        stale (one measurement at a time per replica; reads meanwhile use the last one)."""
        tracker = entry.lag
        if tracker is None or not tracker.due():
            return tracker is None or not tracker.lagging
        tracker.measuring = True
        try:
            async with self.connection(timeout=min(self.settings.pool_timeout, _connect_wait(self.settings))
                                       ) as primary:
                primary_lsn = (await (await primary.execute(PRIMARY_WAL_POSITION)).fetchone())[0]
            row = await (await conn.execute(REPLICA_LAG, {"primary_lsn": primary_lsn})).fetchone()
        except (psycopg.Error, LuminarError) as exc:
            log.debug("could not measure the lag of %s: %s", entry.where, exc)
            return not tracker.lagging
        finally:
            tracker.measuring = False
        tracker.record(Lag.from_row(row))
        return not tracker.lagging

    @asynccontextmanager
    async def _lend(self, entry: _Pool, timeout: float) -> AsyncIterator[psycopg.AsyncConnection]:
        loan = await self._checkout(entry, timeout)
        async with self._loaned(entry, loan) as conn:
            yield conn

    @asynccontextmanager
    async def _loaned(self, entry: _Pool, loan: tuple[psycopg.AsyncConnection, AsyncConnectionPool, int]
                      ) -> AsyncIterator[psycopg.AsyncConnection]:
        conn, pool, generation = loan
        try:
            yield conn
        except (psycopg.OperationalError, DatabaseUnavailableError) as exc:
            # A connection broken under the call (a repository has already typed it, without saying where).
            if not conn.broken:
                raise
            cause = exc.__cause__ if isinstance(exc, DatabaseUnavailableError) and exc.__cause__ else exc
            reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            lost = DatabaseUnavailableError(
                f"lost the connection to the database ({entry.where}) during the call: {reason}; whether its last "
                "statement took effect is unknown"
            )
            lost.may_have_committed = True  # a statement was sent on it: a write may have committed
            raise lost from exc
        finally:
            if generation == entry.generation:
                entry.borrowed -= 1
            if conn.broken:
                await self._discard(entry, pool, conn)  # lost during the call: is the server still there?
            else:
                await _give_back(pool, conn)

    # -- checkout and outages -------------------------------------------------------------------------------------
    async def _checkout(self, entry: _Pool, timeout: float
                        ) -> tuple[psycopg.AsyncConnection, AsyncConnectionPool, int]:
        """A working connection of ``entry`` within ``timeout`` seconds, with the pool and generation it came from
        (see the module's notes on checks and outages)."""
        deadline = time.monotonic() + timeout
        connect_wait = _connect_wait(self.settings)
        while True:
            pool = await self._pool_for(entry)  # raises DatabaseUnavailableError while the server is down
            generation = entry.generation
            left = max(deadline - time.monotonic(), 0.001)
            # A pool with room to grow that hands out nothing within a connect timeout cannot connect: waiting
            # longer (POOL_TIMEOUT) would only hide an outage. A pool whose connections are all lent waits in full.
            growing = entry.borrowed < (pool.max_size or 1)
            try:
                conn = await pool.getconn(timeout=min(left, connect_wait) if growing else left)
            except PoolTimeout:
                if growing:  # find out whether the server is there at all
                    failure = await self._server_failure(entry, pool)
                    if failure is not None:
                        raise DatabaseUnavailableError(failure) from None
                    if time.monotonic() < deadline:
                        continue
                raise self._timeout_error(entry, pool, timeout) from None
            except PoolClosed:
                if entry.closed:
                    raise DatabaseUnavailableError(
                        f"the connection pool of {entry.where} was closed while waiting for a connection") from None
                continue  # closed because its server was lost (or replaced by a fresh one): ask again
            if not _has_pending_input(conn):
                return self._lent(entry, conn, pool, generation)
            try:
                await AsyncConnectionPool.check_connection(conn)
            except psycopg.Error:
                log.debug("discarding a connection the server closed (%s)", entry.where)
                await self._discard(entry, pool, conn)
                continue
            return self._lent(entry, conn, pool, generation)

    @staticmethod
    def _lent(entry: _Pool, conn: psycopg.AsyncConnection, pool: AsyncConnectionPool, generation: int
              ) -> tuple[psycopg.AsyncConnection, AsyncConnectionPool, int]:
        if generation == entry.generation:
            entry.borrowed += 1
        return conn, pool, generation

    async def _pool_for(self, entry: _Pool) -> AsyncConnectionPool:
        """The server's open pool; while it is down, a probe (or the failure of one just made), then a fresh pool
        when it answers. Raises ``DatabaseUnavailableError`` naming the server while it does not."""
        if entry.closed:
            raise DatabaseUnavailableError(f"the connection pool of {entry.where} is closed")
        if entry.pool is not None:
            return entry.pool
        async with entry.probing:
            if entry.pool is not None:
                return entry.pool
            failure = entry.state.recent_failure() or await self._probe(entry)
            if failure is not None:
                raise DatabaseUnavailableError(failure)
            if entry.closed:
                raise DatabaseUnavailableError(f"the connection pool of {entry.where} is closed")
            pool = entry.new_pool()
            await pool.open(wait=False)  # the first connection goes to the first caller waiting for it
            return pool

    async def _server_failure(self, entry: _Pool, pool: AsyncConnectionPool) -> str | None:
        """``None`` when the server of ``pool`` (``entry``'s current pool) accepts a connection now; else the
        message for callers, and the pool is retired. One probe at a time: callers meanwhile share its answer."""
        async with entry.probing:
            if entry.pool is not pool:  # already retired (or replaced by a fresh pool) by another caller
                return None if entry.pool is not None else entry.state.status().reason or "the server was lost"
            failure = entry.state.recent_failure() or await self._probe(entry)
            if failure is not None:
                self._retire(entry)
            return failure

    async def _probe(self, entry: _Pool) -> str | None:
        """One direct connection to the server, bounded by the connect timeout: ``None`` when it answered, else the
        message for callers (host, port, database, reason, hint; never the password). Updates ``entry.state``.
        Called with ``entry.probing`` held."""
        try:
            async with asyncio.timeout(_connect_wait(self.settings)):
                async with await psycopg.AsyncConnection.connect(entry.conninfo, autocommit=True) as conn:
                    if entry.pooled is None:
                        entry.pooled = await _through_pooler(conn)
                        if entry.pooled:
                            log.info("%s is reached through a connection pooler (PgBouncer): statements are not "
                                     "prepared (set LUMINAR_DB_PGBOUNCER=on to say so)", entry.where)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            message = str(unreachable(self.settings, exc, where=entry.where))
            entry.state.mark_down(message)
            return message
        entry.state.mark_up()
        return None

    def _retire(self, entry: _Pool) -> None:
        """Take the pool of a lost server out of service and close it in the background (its worker tasks stop,
        its idle connections close, borrowed ones close when returned): no pool retries while the server is down."""
        pool, entry.pool = entry.pool, None
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(pool.close(timeout=_connect_wait(self.settings)))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _discard(self, entry: _Pool, pool: AsyncConnectionPool, conn: psycopg.AsyncConnection) -> None:
        """Give back a broken connection. First find out whether its server is still there: if not, its pool is
        closed before the connection goes back (a closed pool closes it quietly, where an open one would log a
        warning and start reconnecting)."""
        if entry.pool is pool:
            await self._server_failure(entry, pool)
        if entry.pool is not pool:
            await asyncio.sleep(0)  # let the closing task mark the pool closed before the connection goes back
        await pool.putconn(conn)

    def _timeout_error(self, entry: _Pool, pool: AsyncConnectionPool, timeout: float) -> LuminarError:
        failure = entry.state.recent_failure()
        if failure is not None:
            return DatabaseUnavailableError(failure)
        size = pool.max_size
        if entry.borrowed >= size:
            return PoolExhaustedError(
                f"no database connection became free within {timeout:g} s: all {size} connections of the pool "
                f"({entry.where}) are in use; raise DB_POOL_SIZE (or MAX_OVERFLOW) or POOL_TIMEOUT, or hold "
                "connections for shorter"
            )
        return PoolExhaustedError(
            f"no database connection became free within {timeout:g} s: {entry.borrowed} of the {size} connections "
            f"of the pool ({entry.where}) are in use and no other was ready in time; raise POOL_TIMEOUT, or check "
            "the server's load and max_connections"
        )
