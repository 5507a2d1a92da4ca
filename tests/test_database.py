"""Database: pools, lifecycle, transactions, replicas and the errors of a busy or absent server (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace

import psycopg
import pytest
from _async import eventually, run
from psycopg import sql

from luminar_store.database import Database
from luminar_store.errors import DatabaseUnavailableError, PoolExhaustedError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _scalar(conn: psycopg.AsyncConnection, query: str):
    cur = await conn.execute(query)
    return (await cur.fetchone())[0]


def test_initialize_health_check_and_close(db_settings):
    async def go():
        database = Database(db_settings)
        await database.initialize()
        assert await database.health_check() is True
        stats = database.pool_stats()["luminar-primary"]
        assert stats["pool_min"] == db_settings.pool_size
        assert stats["pool_max"] == db_settings.pool_size + db_settings.max_overflow
        await database.close()
        await database.close()  # twice is harmless
        assert database.pool_stats() == {}

    run(go())


def test_async_with_and_lazy_open_on_first_use(db_settings):
    async def go():
        async with Database(db_settings) as database:
            async with database.connection() as conn:
                assert await _scalar(conn, "SELECT 41 + 1") == 42
        lazy = Database(db_settings)
        async with lazy.connection() as conn:  # opened by the first call
            assert conn.autocommit is True
            assert await _scalar(conn, "SHOW jit") == "off"
            assert await _scalar(conn, "SELECT current_database()") == db_settings.name
        await lazy.close()
        async with lazy.connection() as conn:  # and reopened after close()
            assert await _scalar(conn, "SELECT 1") == 1
        await lazy.close()

    run(go())


def test_transaction_commits_together_and_rolls_back_on_error(db_settings, conn):
    conn.execute("CREATE TABLE t_tx (n int)")

    async def go():
        async with Database(db_settings) as database:
            async with database.transaction() as c:
                await c.execute("INSERT INTO t_tx VALUES (1)")
                await c.execute("INSERT INTO t_tx VALUES (2)")
            with pytest.raises(RuntimeError):
                async with database.transaction() as c:
                    await c.execute("INSERT INTO t_tx VALUES (3)")
                    raise RuntimeError("the block failed")
            # the connection went back to the pool clean: autocommit, no open transaction
            async with database.connection() as c:
                assert c.autocommit is True
                assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    run(go())
    assert [r[0] for r in conn.execute("SELECT n FROM t_tx ORDER BY n")] == [1, 2]


def test_a_borrower_switching_autocommit_off_does_not_leak_to_the_next(db_settings, conn):
    conn.execute("CREATE TABLE t_leak (n int)")

    async def go():
        async with Database(replace(db_settings, pool_size=1, max_overflow=0)) as database:
            async with database.connection() as c:
                await c.set_autocommit(False)
            async with database.connection() as c:
                assert c.autocommit is True
                await c.set_autocommit(False)
                await c.execute("INSERT INTO t_leak VALUES (1)")  # left uncommitted
            async with database.connection() as c:
                assert c.autocommit is True
                assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    run(go())
    assert conn.execute("SELECT count(*) FROM t_leak").fetchone()[0] == 0


def test_pool_exhaustion_raises_within_the_timeout_naming_size_and_advice(pg_server, db_settings):
    settings = pg_server.settings(db_settings.name, POOL_SIZE="1", MAX_OVERFLOW="1", POOL_TIMEOUT="0.3")

    async def go():
        async with Database(settings) as database:
            async with database.connection(), database.connection():
                with pytest.raises(PoolExhaustedError) as info:
                    async with database.connection():
                        pass
            message = str(info.value)
            assert "all 2 connections" in message
            assert "DB_POOL_SIZE" in message and "POOL_TIMEOUT" in message
            assert "0.3 s" in message
            async with database.connection() as c:  # free again once the holders returned theirs
                assert await _scalar(c, "SELECT 1") == 1

    run(go())


def test_unreachable_server_names_host_port_database_and_hint_but_never_the_password(pg_server):
    port = free_port()
    settings = pg_server.settings("luminar_nowhere", LUMINAR_DB_PORT=str(port), LUMINAR_DB_PASSWORD="s3cret-pw")
    database = Database(settings)

    async def go():
        with pytest.raises(DatabaseUnavailableError) as info:
            await database.initialize()
        return str(info.value)

    message = run(go())
    assert f"port {port}" in message and "database luminar_nowhere" in message and settings.host in message
    assert "make db-test-setup" in message  # the hint for the testing database
    assert "s3cret-pw" not in message and "s3cret-pw" not in repr(database)
    assert run(database.health_check()) is False


def test_connections_killed_by_the_server_cost_a_retry_not_an_error(db_settings, conn):
    async def go():
        async with Database(replace(db_settings, pool_size=3, max_overflow=0)) as database:
            async with database.connection() as c:
                before = await _scalar(c, "SELECT pg_backend_pid()")
            # what a server restart does to every pooled connection
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'luminar_store' AND datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            assert killed == 3

            def sessions_gone() -> bool:  # their FATAL messages are on the sockets once the backends exited
                return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'luminar_store'"
                                    " AND datname = current_database() AND pid <> pg_backend_pid()").fetchone()[0] == 0

            await eventually(sessions_gone)
            for _ in range(4):
                async with database.connection() as c:
                    assert await _scalar(c, "SELECT pg_backend_pid()") != before
            assert await database.health_check() is True

    run(go())


def test_read_connection_goes_round_robin_over_replicas(db_settings):
    settings = replace(db_settings, replica_urls=(db_settings.conninfo(), db_settings.conninfo()))

    async def go():
        async with Database(settings) as database:
            names = []
            for _ in range(4):
                async with database.read_connection() as c:
                    names.append(await _scalar(c, "SHOW application_name"))
            async with database.connection() as c:
                primary = await _scalar(c, "SHOW application_name")
            return names, primary

    names, primary = run(go())
    assert names == ["luminar_store_replica0", "luminar_store_replica1"] * 2
    assert primary == "luminar_store"


def test_reads_fall_back_to_the_primary_when_a_replica_is_down(db_settings):
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere?connect_timeout=1"
    settings = replace(db_settings, replica_urls=(dead,), connect_timeout=1)

    async def go():
        async with Database(settings) as database:
            async with database.read_connection() as c:
                first = await _scalar(c, "SHOW application_name")
            async with database.read_connection() as c:  # the replica is now skipped for a while
                second = await _scalar(c, "SHOW application_name")
            return first, second

    assert run(go()) == ("luminar_store", "luminar_store")


def test_without_replicas_reads_use_the_primary(db_settings):
    async def go():
        async with Database(db_settings) as database:
            async with database.read_connection() as c:
                return await _scalar(c, "SHOW application_name")

    assert run(go()) == "luminar_store"


def test_one_database_serves_successive_event_loops(db_settings):
    database = Database(db_settings)

    async def one(n: int) -> int:
        async with database.connection() as c:
            return await _scalar(c, f"SELECT {n}")

    assert run(one(1)) == 1
    assert run(one(2)) == 2  # the first loop is gone: fresh pools in this one
    run(database.close())


def test_pools_left_by_a_finished_loop_close_their_connections(db_settings, conn):
    database = Database(replace(db_settings, pool_size=2, max_overflow=0))

    async def use() -> None:
        async with database.connection() as c:
            await c.execute("SELECT 1")

    def backends() -> int:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                            " AND pid <> pg_backend_pid()").fetchone()[0]

    def only_the_new_pools() -> bool:
        return backends() == 2

    run(use())
    run(use())  # the first loop's pool is abandoned: its two sockets closed, two new ones opened
    run(eventually(only_the_new_pools))
    run(database.close())


def test_concurrent_first_calls_open_one_pool(db_settings):
    async def go():
        database = Database(db_settings)

        async def task(n: int) -> int:
            async with database.connection() as c:
                return await _scalar(c, f"SELECT {n}")

        results = await asyncio.gather(*(task(n) for n in range(20)))
        stats = database.pool_stats()
        await database.close()
        return results, stats

    results, stats = run(go())
    assert results == list(range(20))
    assert list(stats) == ["luminar-primary"]
    assert stats["luminar-primary"]["pool_size"] <= db_settings.pool_size + db_settings.max_overflow


def test_repr_hides_the_password(pg_server):
    settings = pg_server.settings("luminar_x", LUMINAR_DB_PASSWORD="s3cret-pw")
    assert "s3cret-pw" not in repr(Database(settings))
    assert "luminar_x" in repr(Database(settings))


def test_a_server_that_stops_accepting_connections_is_reported_not_blamed_on_the_pool(db_settings, pg_server):
    settings = replace(db_settings, connect_timeout=1, pool_timeout=1.0)
    name = sql.Identifier(db_settings.name)

    async def go(admin: psycopg.Connection):
        async with Database(settings) as database:
            assert await database.health_check() is True
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
            try:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                              (db_settings.name,))

                def sessions_gone() -> bool:
                    return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                         (db_settings.name,)).fetchone()[0] == 0

                await eventually(sessions_gone)
                assert await database.health_check() is False
                with pytest.raises(DatabaseUnavailableError) as info:
                    async with database.connection():
                        pass
                assert f"database {db_settings.name}" in str(info.value) and "make db-test-setup" in str(info.value)
            finally:
                admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(name))
            await eventually(database.health_check, timeout=10.0, every=0.2)  # the pool reconnects in the background
            return True

    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        assert run(go(admin)) is True
