"""Outages fail fast and end fast: a server that refuses or swallows connections (a TCP proxy in front of the
session's server, ``_proxy.Proxy``), calls during the outage, the first call after it, the log lines of an incident
and the health check. Counts and types only, never durations: waits poll with a deadline."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timezone

import pytest
from _async import eventually, run
from _proxy import Proxy

import luminar_store
from luminar_store.access import LuminarDB
from luminar_store.database import Database
from luminar_store.errors import DatabaseUnavailableError, PoolExhaustedError
from luminar_store.repositories.crime_events import CrimeEventRepository
from luminar_store.server_state import ServerState

SECRET = "s3cret-outage-pw"
LOST = "lost the database server"
BACK = "the database server is back"


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="luminar_store")
    caplog.set_level(logging.INFO, logger="psycopg.pool")
    return caplog


def records(caplog: pytest.LogCaptureFixture, text: str, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("luminar_store") and r.levelno == level
            and text in r.getMessage()]


#: psycopg_pool's warnings allowed per pool and incident: one per connection attempt in flight when the server went
#: away (a pool opening or growing; the pool runs 3 workers, so at most 3 attempts at once). Each such attempt logs
#: its failure once; the pool is closed when the loss is found, before its back-off (about 1 s) ends.
POOL_WARNINGS_PER_INCIDENT = 3


def pool_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """psycopg_pool's warnings (``POOL_WARNINGS_PER_INCIDENT`` at most): only failed connection attempts."""
    found = [r.getMessage() for r in caplog.records if r.name.startswith("psycopg.pool")
             and r.levelno >= logging.WARNING]
    assert all(m.startswith("error connecting in") for m in found), found
    return found


def via(pg_server, db_settings, proxy: Proxy, **extra: str):
    """The test database's settings, reached through ``proxy``, with a 1 s connect timeout."""
    environ = {"LUMINAR_DB_PORT": str(proxy.port), "LUMINAR_DB_CONNECT_TIMEOUT": "1", "POOL_SIZE": "2",
               "MAX_OVERFLOW": "2", **extra}
    return pg_server.settings(db_settings.name, **environ)


async def select_one(database: Database) -> int:
    async with database.connection() as conn:
        return (await (await conn.execute("SELECT 1")).fetchone())[0]


async def outcomes(calls: list) -> list[type]:
    """The type of what each call raised (``None`` for a call that returned), all calls run concurrently."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    return [type(r) if isinstance(r, BaseException) else None for r in results]


async def served_again(call) -> None:
    """Poll ``call`` until it returns (a call during the outage raises ``DatabaseUnavailableError``)."""

    async def succeeds() -> bool:
        try:
            await call()
        except DatabaseUnavailableError:
            return False
        return True

    await eventually(succeeds, timeout=30.0, every=0.05)


def assert_one_incident(log) -> None:
    """One outage in the log: one WARNING when the server was lost, one INFO when it was back, and at most the
    pool's bounded warnings."""
    assert len(records(log, LOST, logging.WARNING)) == 1
    assert len(records(log, BACK, logging.INFO)) == 1
    assert len(pool_warnings(log)) <= POOL_WARNINGS_PER_INCIDENT


def test_the_package_logs_through_logging_only():
    handlers = logging.getLogger("luminar_store").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers), luminar_store.__name__


def test_a_refusing_server_fails_every_call_as_unavailable_logs_once_and_is_served_again(pg_server, db_settings,
                                                                                          log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            settings = via(pg_server, db_settings, proxy)
            db = LuminarDB(settings)
            await db.initialize()
            report = {"external_id": "o-1", "description": "d", "geotag": {"lat": 1.0, "lng": 2.0},
                      "timestamp": datetime.now(timezone.utc)}
            assert await db.store_raw_report(report)
            assert await db.get_recent_events(hours=1, limit=5) == []
            log.clear()

            await proxy.refuse()
            kinds = []
            for _ in range(3):  # sequential and concurrent calls, writes and reads, more than the pool holds
                kinds += await outcomes([db.store_raw_report(dict(report, external_id=f"o-{uuid.uuid4()}"))
                                         for _ in range(8)] + [db.get_recent_events(hours=1) for _ in range(8)])
            assert kinds == [DatabaseUnavailableError] * len(kinds)
            with pytest.raises(DatabaseUnavailableError) as info:
                await db.get_pending_reports()
            assert await db.health_check() is False
            status = db.server_status()["luminar-primary"]
            assert status.up is False and status.reason

            await proxy.forward()
            await served_again(lambda: db.get_recent_events(hours=1))
            assert await db.store_raw_report(dict(report, external_id="o-after"))
            assert await db.health_check() is True
            assert db.server_status()["luminar-primary"].up is True
            await db.close()
            return str(info.value), settings

    message, settings = run(go())
    assert f"host {settings.host}" in message and f"port {settings.port}" in message
    assert f"database {settings.name}" in message and "make db-test-setup" in message
    assert_one_incident(log)


def test_a_password_is_never_in_an_outage_message_or_log(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            database = Database(via(pg_server, db_settings, proxy, LUMINAR_DB_PASSWORD=SECRET))
            await proxy.refuse()
            with pytest.raises(DatabaseUnavailableError) as info:
                await select_one(database)
            await database.close()
            return str(info.value)

    message = run(go())
    assert SECRET not in message
    assert all(SECRET not in r.getMessage() for r in log.records)


def test_a_blackholed_server_fails_calls_as_unavailable_never_as_an_exhausted_pool(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            database = Database(via(pg_server, db_settings, proxy))
            assert await select_one(database) == 1
            log.clear()

            await proxy.blackhole()  # connections are accepted and never answered: the connect timeout ends them
            kinds = await outcomes([select_one(database) for _ in range(6)])
            kinds += await outcomes([select_one(database) for _ in range(6)])
            assert await database.health_check() is False
            assert database.server_status()["luminar-primary"].up is False

            await proxy.forward()
            await served_again(lambda: select_one(database))
            assert await database.health_check() is True
            await database.close()
            return kinds

    kinds = run(go())
    assert kinds == [DatabaseUnavailableError] * 12
    assert PoolExhaustedError not in kinds
    assert_one_incident(log)


def test_a_server_down_at_the_first_call_is_logged_once_and_served_when_it_comes(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            await proxy.refuse()
            database = Database(via(pg_server, db_settings, proxy))
            kinds = await outcomes([select_one(database) for _ in range(10)])
            with pytest.raises(DatabaseUnavailableError):
                await database.initialize()
            await proxy.forward()
            await served_again(lambda: select_one(database))
            await database.close()
            return kinds

    assert run(go()) == [DatabaseUnavailableError] * 10
    assert_one_incident(log)


def test_two_incidents_log_two_pairs(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            database = Database(via(pg_server, db_settings, proxy))
            for _ in range(2):
                assert await select_one(database) == 1
                await proxy.refuse()
                assert await outcomes([select_one(database) for _ in range(4)]) == [DatabaseUnavailableError] * 4
                await proxy.forward()
                await served_again(lambda: select_one(database))
            await database.close()

    run(go())
    assert len(records(log, LOST, logging.WARNING)) == 2
    assert len(records(log, BACK, logging.INFO)) == 2


def test_a_connection_cut_during_a_call_is_unavailable_naming_the_database(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            settings = via(pg_server, db_settings, proxy)
            db = LuminarDB(settings)
            with pytest.raises(DatabaseUnavailableError) as raw:
                async with db.database.connection() as conn:  # borrowed before the cut, used after it
                    await proxy.refuse()
                    await conn.execute("SELECT 1")
            await proxy.forward()
            await served_again(lambda: db.get_recent_events(hours=1))
            with pytest.raises(DatabaseUnavailableError) as facade:
                async with db.database.connection() as conn:
                    await proxy.refuse()
                    await CrimeEventRepository(conn).recent(1, 10)
            await proxy.forward()
            await db.close()
            return settings, str(raw.value), str(facade.value)

    settings, *messages = run(go())
    for message in messages:
        assert f"database {settings.name}" in message and f"port {settings.port}" in message
        assert "during the call" in message


def test_health_check_is_true_while_every_pooled_connection_is_borrowed(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            database = Database(via(pg_server, db_settings, proxy, POOL_SIZE="1", MAX_OVERFLOW="0"))
            async with database.connection():
                assert await database.health_check() is True  # busy is not unhealthy
            await proxy.refuse()
            assert await database.health_check() is False
            await proxy.forward()
            await served_again(lambda: select_one(database))
            async with database.connection():
                assert await database.health_check() is True
            await database.close()

    run(go())
    assert len(records(log, LOST, logging.WARNING)) == 1
    assert len(records(log, BACK, logging.INFO)) == 1


def test_a_busy_pool_is_still_exhausted_not_unavailable(pg_server, db_settings):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            async with Database(via(pg_server, db_settings, proxy, POOL_SIZE="1", MAX_OVERFLOW="0",
                                    POOL_TIMEOUT="0.3")) as database:
                async with database.connection():
                    with pytest.raises(PoolExhaustedError) as info:
                        await select_one(database)
                return str(info.value)

    assert "all 1 connections" in run(go())


def test_a_lost_replica_is_logged_once_and_reads_go_to_the_primary_until_it_is_back(pg_server, db_settings, log):
    async def go():
        async with Proxy(pg_server.host, pg_server.port) as proxy:
            replica = (f"postgresql://{pg_server.user}@{pg_server.host}:{proxy.port}/{db_settings.name}"
                       "?connect_timeout=1")
            settings = pg_server.settings(db_settings.name, LUMINAR_DB_REPLICA_URLS=replica,
                                          LUMINAR_DB_CONNECT_TIMEOUT="1", LUMINAR_DB_REPLICA_COOLDOWN="0.2")
            database = Database(settings)

            async def reader() -> str:
                async with database.read_connection() as conn:
                    return (await (await conn.execute("SHOW application_name")).fetchone())[0]

            assert await reader() == "luminar_store_replica0"
            await proxy.refuse()
            during = [await reader() for _ in range(10)]
            assert database.server_status()["luminar-replica0"].up is False
            assert database.server_status()["luminar-primary"].up is True
            await proxy.forward()

            async def on_the_replica() -> bool:
                return await reader() == "luminar_store_replica0"

            await eventually(on_the_replica, timeout=30.0)
            await database.close()
            return during

    assert run(go()) == ["luminar_store"] * 10
    lost = records(log, LOST, logging.WARNING)
    assert len(lost) == 1 and "replica 1" in lost[0].getMessage()
    back = records(log, BACK, logging.INFO)
    assert len(back) == 1 and "replica 1" in back[0].getMessage()
    assert len(pool_warnings(log)) <= POOL_WARNINGS_PER_INCIDENT


# -- the tracker on its own (no server) ---------------------------------------------------------------------------
def test_server_state_logs_each_change_once_and_reports_since_when(caplog):
    caplog.set_level(logging.INFO, logger="luminar_store")
    state = ServerState("host h, port 1, database d", retry_after=3600)
    assert state.status().up is True and state.status().reason is None
    assert state.mark_down("cannot reach the database (host h): refused") is True
    assert state.mark_down("cannot reach the database (host h): refused again") is False
    status = state.status()
    assert status.up is False and status.reason.endswith("refused again")
    assert status.since <= datetime.now(timezone.utc)
    assert state.recent_failure() == status.reason
    assert state.mark_up() is True and state.mark_up() is False
    assert state.recent_failure() is None and state.status().down_for == 0.0
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "host h, port 1" in caplog.records[1].getMessage()


def test_a_stale_failure_is_not_reused():
    state = ServerState("somewhere", retry_after=0)
    state.mark_down("refused")
    assert state.recent_failure() is None  # time to probe again
    assert state.up is False

