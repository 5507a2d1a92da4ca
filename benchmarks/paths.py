"""The write and read paths the benchmark compares: ours (the ``LuminarDB`` facade) and the raw baselines.

Every baseline runs the repository's own SQL text (``luminar_store.repositories.crime_events``: ``COPY_EVENTS``,
``INSERT_EVENT``, ``RECENT_EVENTS`` ...) on the same rows, so a difference is the cost of the facade's work
(validation, mapping, pooling, records) and nothing else. asyncpg runs the same statements with ``$n`` placeholders.

A row for the baselines is what a hand-written writer makes of a protocol mapping (``eventgen.as_row``: no checks).

Example::

    seconds = await bulk_facade(facade, batches)
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import psycopg
from eventgen import as_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from luminar_store.access import LuminarDB
from luminar_store.config import Settings
from luminar_store.limits import HOTSPOT_MIN_INCIDENTS
from luminar_store.repositories import crime_events as repo

__all__ = [
    "COPY_COLUMNS",
    "ASYNCPG_INSERT",
    "Batches",
    "numbered",
    "asyncpg_connect_kwargs",
    "raw_psycopg_pool",
    "bulk_facade",
    "bulk_ceiling",
    "grow",
    "CEILING_TABLE",
    "bulk_psycopg",
    "bulk_asyncpg",
    "store_facade",
    "store_psycopg",
    "store_asyncpg",
    "no_reset",
    "QUERIES",
]

#: A bulk load: (miner_uid, events) per COPY; lists for the timed runs, generators for the memory probe.
Batches = Iterable[tuple[int, Iterable[dict]]]


def numbered(query: str, names: tuple[str, ...] = repo.WRITE_COLUMNS) -> str:
    """``query`` with psycopg's ``%(name)s`` placeholders numbered ``$1``, ``$2`` ... for asyncpg, in the order of
    ``names`` (the positional order of ``eventgen.as_row``)."""
    return re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", query)


def _copy_columns(copy_sql: str) -> list[str]:
    inside = re.search(r"\(([^)]*)\)", copy_sql)
    assert inside is not None, "COPY_EVENTS names its columns"
    return [c.strip().strip('"') for c in inside.group(1).split(",")]


#: The columns of the repository's COPY, in order (``geotag`` is generated and never written).
COPY_COLUMNS = _copy_columns(repo.COPY_EVENTS)
ASYNCPG_INSERT = numbered(repo.INSERT_EVENT)


def asyncpg_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """asyncpg's connection arguments for the same server, role and database as ``settings``."""
    kwargs: dict[str, Any] = {"host": settings.host, "port": settings.port, "user": settings.user,
                              "database": settings.name}
    if settings.password:
        kwargs["password"] = settings.password
    kwargs["ssl"] = False if settings.sslmode == "disable" else settings.sslmode
    return kwargs


def raw_psycopg_pool(settings: Settings) -> AsyncConnectionPool:
    """A bare psycopg pool of the facade's size (autocommit connections, no checks): the per-call baseline."""
    return AsyncConnectionPool(settings.conninfo(), kwargs={"autocommit": True}, min_size=settings.pool_size,
                               max_size=settings.pool_max_size, open=False)


# -- bulk -----------------------------------------------------------------------------------------------------------
async def bulk_facade(facade: LuminarDB, batches: Batches) -> float:
    """Seconds to store every batch with ``facade.store_crime_events`` (binary COPY, one transaction a batch)."""
    start = time.perf_counter()
    for uid, events in batches:
        await facade.store_crime_events(events, miner_uid=uid)
    return time.perf_counter() - start


async def _copy_batches(conn: psycopg.AsyncConnection, batches: Batches, copy_sql: str = repo.COPY_EVENTS) -> int:
    """COPY every batch (one transaction each) as a hand-written writer does; returns the rows written."""
    rows = 0
    for uid, events in batches:
        async with conn.transaction():
            async with conn.cursor().copy(copy_sql) as copy:
                copy.set_types(repo.COPY_TYPES)
                for event in events:
                    await copy.write_row(as_row(event, uid, uuid.uuid4(), jsonb=Jsonb))
                    rows += 1
    return rows


async def bulk_psycopg(conninfo: str, batches: Batches) -> float:
    """Seconds to store every batch by the repository's binary COPY on a bare psycopg connection."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        start = time.perf_counter()
        await _copy_batches(conn, batches)
        return time.perf_counter() - start


#: The ceiling of bulk writes: a copy of crime_events with its columns, defaults and generated columns and only its
#: primary key (no other index, no constraint, no trigger), written by the same COPY.
CEILING_TABLE = "bench_events_ceiling"
CREATE_CEILING = psycopg.sql.SQL("CREATE TABLE {} (LIKE crime_events INCLUDING DEFAULTS "
                                 "INCLUDING GENERATED, PRIMARY KEY (event_id))").format(
    psycopg.sql.Identifier(CEILING_TABLE))
DROP_CEILING = psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(CEILING_TABLE))


async def bulk_ceiling(conninfo: str, batches: Batches) -> float:
    """Seconds to COPY every batch, as ``bulk_psycopg`` does, into ``CEILING_TABLE`` (made for the run, dropped
    after it)."""
    copy_sql = repo.COPY_EVENTS.replace("COPY crime_events", f"COPY {CEILING_TABLE}", 1)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute(DROP_CEILING)
        await conn.execute(CREATE_CEILING)
        await conn.execute("CHECKPOINT")
        start = time.perf_counter()
        await _copy_batches(conn, batches, copy_sql)
        seconds = time.perf_counter() - start
        await conn.execute(DROP_CEILING)
        return seconds


async def grow(conninfo: str, batches: Batches) -> tuple[int, float]:
    """Rows and seconds to COPY a stream of batches into crime_events (the raw path: generated as it is written,
    nothing materialized; the triggers keep incidents and cell-days current as for any write)."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        start = time.perf_counter()
        rows = await _copy_batches(conn, batches)
        return rows, time.perf_counter() - start


async def bulk_asyncpg(connect_kwargs: dict[str, Any], batches: Batches) -> float:
    """Seconds to store every batch with asyncpg's ``copy_records_to_table`` (binary COPY, same columns)."""
    import asyncpg

    conn = await asyncpg.connect(**connect_kwargs)
    try:
        start = time.perf_counter()
        for uid, events in batches:
            records = (as_row(event, uid, uuid.uuid4()) for event in events)
            await conn.copy_records_to_table("crime_events", records=records, columns=COPY_COLUMNS)
        return time.perf_counter() - start
    finally:
        await conn.close()


# -- one row a call -------------------------------------------------------------------------------------------------
async def no_reset(conn: Any) -> None:
    """An asyncpg pool ``reset`` that sends nothing (the default runs ``RESET ALL`` ... at every release)."""


async def store_facade(facade: LuminarDB, event: dict, uid: int) -> object:
    """One ``db.store_crime_event`` call."""
    return await facade.store_crime_event(event, miner_uid=uid)


async def store_psycopg(pool: AsyncConnectionPool, event: dict, uid: int) -> object:
    """The repository's INSERT on a bare psycopg pool connection."""
    async with pool.connection() as conn:
        cur = await conn.execute(repo.INSERT_EVENT, dict(zip(repo.WRITE_COLUMNS, as_row(event, uid, jsonb=Jsonb),
                                                             strict=True)))
        return (await cur.fetchone())[0]  # type: ignore[index]


async def store_asyncpg(pool: Any, event: dict, uid: int) -> object:
    """The same INSERT on an asyncpg pool (a prepared statement, cached per connection)."""
    return await pool.fetchval(ASYNCPG_INSERT, *as_row(event, uid))


# -- reads ----------------------------------------------------------------------------------------------------------
def _recent_params(args: dict) -> dict:
    return {"hours": args["hours"], "limit": args["limit"]}


def _radius_params(args: dict) -> dict:
    return {"latitude": args["lat"], "longitude": args["lng"], "radius_m": float(args["radius_m"]),
            "hours": 24 * args["days"],
            "limit": args["limit"], **repo.search_boxes(args["lat"], args["lng"], float(args["radius_m"]))}


def _hotspot_params(args: dict) -> dict:
    # the facade's defaults (cell and threshold), bound as the facade binds them
    return repo.hotspot_query(args["days"], min_incidents=HOTSPOT_MIN_INCIDENTS, limit=args["limit"])[1]


#: name → (facade call, repository SQL, SQL parameters): the baseline runs the SQL on a bare connection and
#: fetches plain tuples.
QUERIES = {
    "recent": (lambda f, a: f.get_recent_events(hours=a["hours"], limit=a["limit"]),
               repo.RECENT_EVENTS, _recent_params),
    "radius": (lambda f, a: f.get_events_within_radius(a["lat"], a["lng"], a["radius_m"], days=a["days"],
                                                       limit=a["limit"]),
               repo.EVENTS_WITHIN_RADIUS, _radius_params),
    "hotspots": (lambda f, a: f.get_crime_hotspots(days=a["days"], limit=a["limit"]),
                 repo.HOTSPOTS, _hotspot_params),
}


def jsonable(value: object) -> object:
    """``value`` made JSON-friendly (for the results file)."""
    return json.loads(json.dumps(value, default=str))
