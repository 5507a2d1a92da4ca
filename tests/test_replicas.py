"""Read replicas on a real streaming replica: a primary cluster made here (``wal_level=replica``, a replication entry
in pg_hba) and a copy of it by ``pg_basebackup -R`` started on another port. Reads are routed to the replica; a dead
replica (refused, or swallowed by ``_proxy.Proxy``) is tried at most once per cool-down and reads go to the primary;
a replica whose replay is paused falls behind the lag limit and is skipped until it catches up; reads of one's own
writes go to the primary; ``status`` lists each replica.

The database's clock (cool-downs, lag measurements) is the test's own: nothing waits for one to pass. Counts and
states only, never durations.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from _async import eventually, run
from _cli import cli_env
from _proxy import Proxy
from psycopg import sql
from psycopg.conninfo import make_conninfo

from luminar_store.config import Settings, load_settings
from luminar_store.database import Database
from luminar_store.errors import ConfigError
from luminar_store.ops import cluster
from luminar_store.ops.status import replica_rows
from luminar_store.replicas import DEFAULT_REPLICA_COOLDOWN, DEFAULT_REPLICA_MAX_LAG, LAG_CHECK_EVERY, Lag

USER, PASSWORD, DBNAME = "luminar_repl", "Repl-secret-pw", "luminar_replicas"
HOST = "127.0.0.1"
MAX_LAG = 64 * 1024  # bytes: the lag test writes well over this while replay is paused
LOST, BACK = "lost the database server", "the database server is back"
BEHIND, CAUGHT_UP = "behind the primary", "caught up"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _as_server(argv: list[str]) -> None:
    """Run ``argv`` as the user the servers run as (the service user under root)."""
    if cluster.is_root():
        argv = ["runuser", "-u", cluster.service_user(), "--", *argv]
    done = subprocess.run(argv, cwd="/", capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Pair:
    """The module's primary and its streaming replica."""

    primary_port: int
    replica_port: int

    def conninfo(self, port: int) -> str:
        return make_conninfo(host=HOST, port=port, user=USER, password=PASSWORD, dbname=DBNAME, sslmode="disable")

    def replica_url(self, port: int | None = None) -> str:
        """A replica URL without the password (it is taken from the primary's settings)."""
        return f"postgresql://{HOST}:{port or self.replica_port}/{DBNAME}?sslmode=disable&gssencmode=disable"

    def environ(self, *replica_urls: str, **extra: str) -> dict[str, str]:
        return {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": HOST, "LUMINAR_DB_PORT": str(self.primary_port),
                "LUMINAR_DB_NAME": DBNAME, "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": PASSWORD,
                "LUMINAR_DB_SSLMODE": "disable", "LUMINAR_DB_CONNECT_TIMEOUT": "1", "POOL_SIZE": "1",
                "MAX_OVERFLOW": "2", "LUMINAR_DB_REPLICA_URLS": ",".join(replica_urls),
                "LUMINAR_DB_REPLICA_MAX_LAG": str(MAX_LAG), **extra}

    def settings(self, *replica_urls: str, **extra: str) -> Settings:
        return load_settings("testing", environ=self.environ(*replica_urls, **extra))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("replicas")
    primary = cluster.Cluster(handle=base / "primary", port=_free_port(), host=HOST, user=USER, password=PASSWORD,
                              dbname="postgres")
    replica = cluster.Cluster(handle=base / "replica", port=_free_port(), host=HOST, user=USER, password=PASSWORD,
                              dbname="postgres")
    started: list[cluster.Cluster] = []
    try:
        cluster.init(primary)
        with (primary.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 4\nfsync = off\nfull_page_writes = off\n"
                       "synchronous_commit = off\n")
        with (primary.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host replication {USER} {HOST}/32 scram-sha-256\n")
        cluster.start(primary)
        started.append(primary)
        with psycopg.connect(primary.conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
        home = cluster.locate(replica.handle)
        source = make_conninfo(host=HOST, port=primary.port, user=USER, password=PASSWORD)
        _as_server([str(cluster.find_bindir() / "pg_basebackup"), "-d", source, "-D", str(home / "data"), "-R",
                    "-X", "stream", "-c", "fast"])
        cluster.start(replica)  # rewrites the copied luminar.conf: its own port and socket directory
        started.append(replica)
        found = Pair(primary.port, replica.port)
        with psycopg.connect(found.conninfo(primary.port), autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)")

        def replayed() -> bool:
            with psycopg.connect(found.conninfo(replica.port), autocommit=True) as conn:
                return conn.execute("SELECT to_regclass('notes') IS NOT NULL").fetchone()[0]

        deadline = time.monotonic() + 30
        while not replayed():
            assert time.monotonic() < deadline, "the replica never replayed the primary's table"
            time.sleep(0.05)
        yield found
    finally:
        for each in reversed(started):
            cluster.stop(each)
        for each in (replica, primary):
            shutil.rmtree(each.home, ignore_errors=True)


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="luminar_store")
    caplog.set_level(logging.INFO, logger="psycopg.pool")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, text: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("luminar_store") and r.levelno == level
            and text in r.getMessage()]


def pool_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("psycopg") and r.levelno >= logging.WARNING]


async def on_standby(database: Database) -> bool:
    """Whether a read was served by a standby (the replica) rather than the primary."""
    async with database.read_connection() as conn:
        return (await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone())[0]


async def reads(database: Database, count: int) -> list[bool]:
    return [await on_standby(database) for _ in range(count)]


def test_reads_go_to_the_replica_and_own_writes_to_the_primary(pair: Pair) -> None:
    async def go():
        async with Database(pair.settings(pair.replica_url())) as database:
            routed = await reads(database, 5)
            async with database.connection() as conn:
                await conn.execute("INSERT INTO notes VALUES (%s, %s)", (1, "written"))
                primary = (await (await conn.execute("SELECT pg_is_in_recovery()")).fetchone())[0]
            async with database.reading_own_writes():
                own = await on_standby(database)
                async with database.read_connection() as conn:
                    body = (await (await conn.execute("SELECT body FROM notes WHERE id = %s", (1,))).fetchone())[0]
            after = await on_standby(database)
            return routed, primary, own, body, after, database.replica_status()

    routed, primary, own, body, after, (status,) = run(go())
    assert routed == [True] * 5 and primary is False
    assert own is False and body == "written"  # reading one's own writes: the primary
    assert after is True  # outside the block reads go to the replica again
    assert status.health == "up" and status.in_use and status.lag_bytes is not None and PASSWORD not in str(status)


def test_a_refused_replica_is_tried_once_per_cool_down_and_reads_go_to_the_primary(pair: Pair, log) -> None:
    clock = Clock()

    async def go():
        # A proxy to a closed port: it counts each attempt, then drops it (as a replica whose server is gone).
        async with Proxy(HOST, _free_port()) as proxy:
            database = Database(pair.settings(pair.replica_url(proxy.port)), clock=clock)
            try:
                started = time.monotonic()
                first = await reads(database, 100)
                seconds = time.monotonic() - started
                attempts = [proxy.accepted]
                status = database.replica_status()[0]
                clock.advance(DEFAULT_REPLICA_COOLDOWN)  # the cool-down is over: one read probes it again
                second = await reads(database, 100)
                attempts.append(proxy.accepted)
            finally:
                await database.close()
            return first + second, attempts, status, seconds

    served, attempts, status, seconds = run(go())
    print(f"100 reads with a refused replica: {seconds:.2f} s")
    assert served == [False] * 200  # every read served, by the primary
    assert attempts == [1, 2]  # one attempt per cool-down
    assert status.health == "cooling down" and not status.in_use and status.retry_in == DEFAULT_REPLICA_COOLDOWN
    (lost,) = lines(log, LOST, logging.WARNING)
    assert "replica 1" in lost and PASSWORD not in lost
    assert pool_warnings(log) == []


def test_a_replica_on_a_closed_port_is_logged_once(pair: Pair, log) -> None:
    clock = Clock()

    async def go():
        async with Database(pair.settings(pair.replica_url(_free_port())), clock=clock) as database:
            started = time.monotonic()
            served = await reads(database, 100)
            return served, time.monotonic() - started

    served, seconds = run(go())
    print(f"100 reads with a replica on a closed port: {seconds:.2f} s")
    assert served == [False] * 100
    assert len(lines(log, LOST, logging.WARNING)) == 1 and pool_warnings(log) == []


def test_a_blackholed_replica_costs_one_connect_timeout_per_cool_down_and_comes_back(pair: Pair, log) -> None:
    clock = Clock()

    async def go():
        async with Proxy(HOST, pair.replica_port) as proxy:
            await proxy.blackhole()
            database = Database(pair.settings(pair.replica_url(proxy.port)), clock=clock)
            try:
                started = time.monotonic()
                during = await reads(database, 100)
                seconds = time.monotonic() - started
                attempts = [proxy.accepted]
                clock.advance(DEFAULT_REPLICA_COOLDOWN)
                # Half-open: one read probes the replica, the others go to the primary without waiting for it.
                together = await asyncio.gather(*(on_standby(database) for _ in range(20)))
                attempts.append(proxy.accepted)
                await proxy.forward()
                clock.advance(DEFAULT_REPLICA_COOLDOWN)
                back = await reads(database, 3)
                status = database.replica_status()[0]
            finally:
                await database.close()
            return during + list(together), attempts, back, status, seconds

    during, attempts, back, status, seconds = run(go())
    print(f"100 reads with a blackholed replica: {seconds:.2f} s")
    assert during == [False] * 120 and attempts == [1, 2]
    assert back == [True] * 3 and status.health == "up" and status.in_use
    assert len(lines(log, LOST, logging.WARNING)) == 1 and len(lines(log, BACK, logging.INFO)) == 1
    assert pool_warnings(log) == []


def test_a_replica_behind_the_lag_limit_is_skipped_until_it_catches_up(pair: Pair, log) -> None:
    clock = Clock()
    admin = psycopg.connect(pair.conninfo(pair.replica_port), autocommit=True)

    async def go():
        async with Database(pair.settings(pair.replica_url()), clock=clock) as database:
            assert await on_standby(database) is True  # measured: not behind
            admin.execute("SELECT pg_wal_replay_pause()")
            async with database.connection() as conn:
                await conn.execute("INSERT INTO notes SELECT g, repeat('x', 200) "
                                   "FROM generate_series(%s::int, %s::int) g", (1000, 5000))
            clock.advance(LAG_CHECK_EVERY)  # the last measurement is stale: the next read measures again
            skipped = await reads(database, 10)
            behind = database.replica_status()[0]
            admin.execute("SELECT pg_wal_replay_resume()")

            async def caught_up() -> bool:
                clock.advance(LAG_CHECK_EVERY)
                return await on_standby(database)

            await eventually(caught_up, timeout=30.0)
            return skipped, behind, database.replica_status()[0]

    try:
        skipped, behind, after = run(go())
    finally:
        admin.execute("SELECT pg_wal_replay_resume()")
        admin.close()
    assert skipped == [False] * 10  # measured once, then skipped on the cached measurement
    assert behind.lag_bytes > MAX_LAG and behind.lag_seconds > 0 and not behind.in_use and behind.health == "up"
    assert after.in_use and after.lag_bytes <= MAX_LAG
    (went,) = lines(log, BEHIND, logging.WARNING)
    assert "replica 1" in went and "LUMINAR_DB_REPLICA_MAX_LAG" in went
    assert len(lines(log, CAUGHT_UP, logging.INFO)) == 1


def test_status_lists_each_replica_with_health_and_lag(pair: Pair, cli_run) -> None:
    dead = _free_port()
    settings = pair.settings(pair.replica_url(), pair.replica_url(dead))
    rows = dict(replica_rows(settings))
    assert f"port {pair.replica_port}" in rows["replica 1"] and ": up; lag " in rows["replica 1"]
    assert "bytes" in rows["replica 1"] and rows["replica 1"].endswith("reads use it")
    assert rows["replica 2"].startswith("down: ") and f"port {dead}" in rows["replica 2"]
    result = cli_run(["status", "--env=testing"], cli_env(settings, LUMINAR_DB_REPLICA_URLS=",".join(
        (pair.replica_url(), pair.replica_url(dead))), LUMINAR_DB_SSLMODE="disable"))
    assert "replica 1" in result.output and "replica 2" in result.output and "lag" in result.output
    assert PASSWORD not in result.output and "Traceback" not in result.output


def test_the_replica_settings_are_read_and_checked() -> None:
    plain = load_settings("testing", environ={"LUMINAR_ENV": "testing"})
    assert (plain.replica_cooldown, plain.replica_max_lag) == (DEFAULT_REPLICA_COOLDOWN, DEFAULT_REPLICA_MAX_LAG)
    tuned = load_settings("testing", environ={"LUMINAR_ENV": "testing", "LUMINAR_DB_REPLICA_COOLDOWN": "2.5",
                                              "LUMINAR_DB_REPLICA_MAX_LAG": "0"})
    assert (tuned.replica_cooldown, tuned.replica_max_lag) == (2.5, 0)
    for name, value in (("LUMINAR_DB_REPLICA_COOLDOWN", "-1"), ("LUMINAR_DB_REPLICA_MAX_LAG", "16MB")):
        with pytest.raises(ConfigError, match=name):
            load_settings("testing", environ={"LUMINAR_ENV": "testing", name: value})


def test_an_idle_primary_is_no_lag() -> None:
    assert Lag.from_row((True, 0, 3600.0)) == Lag(0, 0.0, True)  # replayed everything: an hour idle is not lag
    assert Lag.from_row((True, 4096, 1.5)) == Lag(4096, 1.5, True)
    assert Lag.from_row((False, None, None)) == Lag(0, 0.0, False)  # not a standby: nothing to replay
