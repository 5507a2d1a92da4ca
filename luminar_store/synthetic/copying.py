"""Writing batches of synthetic rows with binary COPY, each batch one transaction, on one or more connections.

The generator (the calling thread) makes batch k+1 while writer threads COPY batch k: Python builds rows on one
core while the server indexes them on the other. With two writers the server's work is split over two backends.
An interruption (Ctrl-C in the calling thread, an error in a writer) stops every writer between rows; their batch
in flight rolls back, committed batches stay whole.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from luminar_store.synthetic.stream import CONSENSUS_COLUMNS, EVENT_COLUMNS, REPORT_COLUMNS

__all__ = ["Batch", "write_batches", "copy_rows"]

_CHECK_EVERY = 1_000  # rows between looks at the stop flag


@dataclass
class Batch:
    """The rows of whole incidents: reports, the events grouping them, and the consensus records of the events."""

    reports: list[tuple]
    events: list[tuple]
    consensus: list[tuple]


class _JsonText(str):
    """Marker class: the cursor-local jsonb dumper is registered under it (and found by the jsonb oid)."""


class _JsonTextDumper(Dumper):
    """Binary jsonb from JSON text the stream already composed: version byte 1, then the UTF-8 text."""

    format = Format.BINARY

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


class _Stopped(Exception):
    """Raised inside a writer's COPY to abandon its batch."""


def _cursor(conn: psycopg.Connection) -> psycopg.Cursor:
    cur = conn.cursor()
    dumper = type("JsonTextDumper", (_JsonTextDumper,), {"oid": conn.adapters.types["jsonb"].oid})
    cur.adapters.register_dumper(_JsonText, dumper)  # this cursor only: other code keeps psycopg's json dumping
    return cur


def copy_rows(cur: psycopg.Cursor, table: str, columns: Sequence[tuple[str, str]], rows: Iterable[tuple],
              stop: threading.Event | None = None) -> int:
    """COPY ``rows`` into ``table`` in binary; ``columns`` are (name, type) pairs. Returns the number of rows."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns))
    count = 0
    with cur.copy(statement) as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row(row)
            count += 1
            if stop is not None and count % _CHECK_EVERY == 0 and stop.is_set():
                raise _Stopped
    return count


def _write(conn: psycopg.Connection, cur: psycopg.Cursor, batch: Batch, stop: threading.Event | None) -> None:
    with conn.transaction():
        # The trigger that checks related_reports runs one small query per event: a generic plan spares the
        # planner on each of them (measured: about a third of the events' COPY time).
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        copy_rows(cur, "raw_incident_reports", REPORT_COLUMNS, batch.reports, stop)
        copy_rows(cur, "crime_events", EVENT_COLUMNS, batch.events, stop)
        copy_rows(cur, "consensus_records", CONSENSUS_COLUMNS, batch.consensus, stop)


def _clone(conn: psycopg.Connection) -> psycopg.Connection:
    """A second autocommit session with the parameters (password included) of ``conn``."""
    password = conn.pgconn.password
    extra = {"password": password.decode()} if password else {}
    return psycopg.connect(conn.info.dsn, autocommit=True, **extra)


def write_batches(conn: psycopg.Connection, batches: Iterable[Batch], *, workers: int = 1,
                  progress: Callable[[int], object] | None = None) -> int:
    """Write every batch of ``batches`` (a generator, consumed in the calling thread), each in one transaction,
    through ``conn`` and ``workers - 1`` more sessions like it. ``progress(n)`` is called (serialised) after each
    commit with the batch's report count. Returns the number of batches committed.

    Raises the first writer's error, or the calling thread's ``KeyboardInterrupt``, after every writer stopped.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        workers = 1  # inside the caller's transaction: one session, batches become its savepoints
    stop = threading.Event()
    todo: queue.Queue[Batch | None] = queue.Queue(maxsize=workers)
    errors: list[BaseException] = []
    lock = threading.Lock()
    committed = [0]

    def writer(session: psycopg.Connection, own: bool) -> None:
        try:
            cur = _cursor(session)
            while not stop.is_set():
                batch = todo.get()
                if batch is None or stop.is_set():
                    return
                _write(session, cur, batch, stop)
                with lock:
                    committed[0] += 1
                    if progress is not None:
                        progress(len(batch.reports))
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread, which raises it
            errors.append(exc)
            stop.set()
        finally:
            if own:
                session.close()

    sessions = [(conn, False)] + [(_clone(conn), True) for _ in range(workers - 1)]
    threads = [threading.Thread(target=writer, args=s, name=f"synthetic-writer-{i}", daemon=True)
               for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    try:
        for batch in batches:
            while not stop.is_set():
                try:
                    todo.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                break
    except BaseException:
        stop.set()
        raise
    finally:
        if stop.is_set():
            _drain(todo)
        for _ in threads:
            while any(t.is_alive() for t in threads):
                try:
                    todo.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if stop.is_set():
                        _drain(todo)
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    return committed[0]


def _drain(todo: queue.Queue) -> None:
    while True:
        try:
            todo.get_nowait()
        except queue.Empty:
            return
