"""What every repository shares: it runs on a connection it is given, or borrows one from a pool after its checks.

A repository built on a connection (``CrimeEventRepository(conn)``) runs every statement on it, so a caller can
compose several repositories in one transaction. A repository built on a *connection source* — a callable returning
an async context manager that yields a connection, such as ``Database.connection`` or ``Database.read_connection``
— validates its arguments first and borrows a connection only for its SQL: bad input is refused before any
connection is taken, let alone any SQL run. That is how the facade uses them, so an argument is checked once, by the
repository method that binds it.

Either way, psycopg errors raised inside ``_connection()`` leave it translated into ``luminar_store.errors``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import class_row

from luminar_store.errors import NotFoundError
from luminar_store.repositories._errors import translated

__all__ = ["ConnectionSource", "Repository", "record_row"]

T = TypeVar("T")

#: Where a repository gets its connection: a connection, or a callable lending one (``Database.connection``).
ConnectionSource = psycopg.AsyncConnection | Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection]]


def record_row(cls: type) -> Callable[[Any], Callable[[Sequence[Any]], Any]]:
    """A psycopg row factory building ``cls`` from each row by position (no keyword dict per row) when the
    columns are ``cls``'s fields in order, as this package's column lists are; by name otherwise."""
    names = tuple(f.name for f in dataclasses.fields(cls))

    def factory(cursor: Any) -> Callable[[Sequence[Any]], Any]:
        columns = tuple(c.name for c in cursor.description or ())
        if columns == names[:len(columns)]:
            return lambda values: cls(*values)
        return class_row(cls)(cursor)

    return factory


class Repository:
    """Base of the table repositories: holds the connection (``_conn``) or the source to borrow one from."""

    def __init__(self, conn: ConnectionSource) -> None:
        """``conn``: an open ``psycopg.AsyncConnection`` (the caller owns it and its transaction) or a connection
        source such as ``database.connection`` (borrowed per call, after the call's checks)."""
        if isinstance(conn, psycopg.AsyncConnection):
            self._conn: psycopg.AsyncConnection | None = conn
            self._lend: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection]] | None = None
        else:
            self._conn, self._lend = None, conn

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """The connection for one call's SQL, with psycopg errors translated (``translated()``). Raises what the
        source raises when it cannot lend one (``DatabaseUnavailableError``, ``PoolExhaustedError``)."""
        if self._conn is not None:
            with translated():
                yield self._conn
            return
        assert self._lend is not None
        async with self._lend() as conn:
            with translated():
                yield conn

    async def _all(self, query: str, params: Any, record: type[T], *, binary: bool = False) -> list[T]:
        """Every row of ``query`` as a ``record``. Raises the translated errors of ``_connection()``."""
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=record_row(record))
            await cur.execute(query, params, binary=binary)
            return await cur.fetchall()

    async def _one(self, query: str, params: Any, record: type[T], *, binary: bool = False) -> T | None:
        """The first row of ``query`` as a ``record``, or ``None``. Raises like ``_all``."""
        async with self._connection() as conn:
            cur = conn.cursor(row_factory=record_row(record))
            await cur.execute(query, params, binary=binary)
            return await cur.fetchone()

    async def _found(self, query: str, params: Any, record: type[T], missing: str) -> T:
        """The first row of ``query`` as a ``record``; ``NotFoundError(missing)`` without one. Raises like
        ``_all``."""
        row = await self._one(query, params, record)
        if row is None:
            raise NotFoundError(missing)
        return row

    async def _value(self, query: str, params: Any = None) -> Any:
        """The first column of the first row of ``query`` (``None`` without a row). Raises like ``_all``."""
        async with self._connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        return None if row is None else row[0]
