"""Running coroutines from plain (sync) tests: the suite has no asyncio plugin, so each test calls ``run``.

Example::

    def test_something(db_conninfo):
        async def body(conn):
            ...
        run_with_conn(db_conninfo, body)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

import psycopg
import pytest
from psycopg import sql

__all__ = ["run", "run_with_conn", "with_facade", "count_rows", "insert_event", "eventually", "clock"]

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run one coroutine to completion on a fresh event loop."""
    return asyncio.run(_await(coro))


async def _await(coro: Awaitable[T]) -> T:
    return await coro


def with_facade(settings: Any, body: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``body(db)`` with the facade (``LuminarDB``) connected as ``settings``' login, closed after; returns
    its result."""
    from luminar_store.access import LuminarDB

    db = LuminarDB(settings)

    async def go() -> T:
        await db.initialize()
        try:
            return await body(db)
        finally:
            await db.close()

    return run(go())


def run_with_conn(conninfo: str, body: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
    """Open an autocommit async connection to ``conninfo``, run ``body(conn)``, close the connection."""

    async def main() -> T:
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            return await body(conn)

    return run(main())


async def count_rows(conn: psycopg.AsyncConnection, table: str) -> int:
    """Rows in ``table`` (a fixed name from the test itself)."""
    cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
    row = await cur.fetchone()
    return int(row[0])



# Direct INSERT of a crime event for tests of the scoring tables (the events repository is tested on its own).
INSERT_EVENT = """
INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", severity_level, confidence_score,
                          verification_status)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
RETURNING event_id
"""


async def insert_event(conn: psycopg.AsyncConnection, *, miner_uid: int = 1, event_type: str = "theft",
                       lat: float = 40.7, lng: float = -74.0, timestamp: datetime | None = None, severity: int = 3,
                       confidence: float = 0.9, status: str = "pending") -> uuid.UUID:
    """Insert one crime event and return its ``event_id``."""
    cur = await conn.execute(INSERT_EVENT, (miner_uid, event_type, lat, lng,
                                            timestamp or datetime.now(timezone.utc), severity, confidence, status))
    row = await cur.fetchone()
    return row[0]


async def eventually(check: Callable[[], object], *, timeout: float = 5.0, every: float = 0.05) -> None:
    """Poll ``check()`` (a plain or async callable) until it is true; ``AssertionError`` naming it after ``timeout``
    seconds. Replaces fixed sleeps: a fast run does not wait, a slow one does not fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{getattr(check, '__name__', check)} never became true within {timeout:g} s")
        await asyncio.sleep(every)


def clock(namespace: dict[str, Any], name: str = "NOW") -> Callable[[], None]:
    """An autouse fixture that sets ``namespace[name]`` to the current UTC time at the start of every test.

    A module declares ``NOW = None`` and adds ``_clock = clock(globals())``: each test then takes the time when it
    starts, never when the module was imported, and a slow run cannot turn "ten minutes ahead" into the past.
    Helpers read ``NOW`` when they are called.
    """

    @pytest.fixture(autouse=True)
    def _clock() -> None:
        namespace[name] = datetime.now(timezone.utc)

    return _clock
