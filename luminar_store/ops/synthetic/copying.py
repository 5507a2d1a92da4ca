"""Writing a run's blocks with binary COPY, a batch of blocks per transaction, in one process or several.

With one writer the calling process makes a batch and writes it, batch after batch; each block of a batch is made
while the server takes the reports of the blocks before it (the reports' COPY streams them). With ``workers`` > 1
(where the ``fork`` start method exists) as many processes each make *and* write their batches on their own
session: Python's row making, which holds one core per process, then runs beside the server's indexing instead of
before it. Blocks are seeded independently, so the rows are the same whatever the number of workers.

Interruption: every batch is one transaction, so Ctrl-C (which reaches every process of the terminal's group) or
an error in one writer rolls back only the batches in flight; the others stop between rows; committed batches
are whole.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus

from luminar_store.errors import OperationError
from luminar_store.ops.synthetic.stream import (
    CONSENSUS_COLUMNS,
    EVENT_COLUMNS,
    REPORT_COLUMNS,
    Block,
    RunStream,
    Tally,
)

__all__ = ["BATCH_SETTINGS", "RunWritten", "copy_rows", "write_blocks", "write_run"]

_CHECK_EVERY = 1_000  # rows between looks at the stop flag

# The miners' counters (miner_performance.processed_reports, .verified_events) for a batch's rows: the schema's
# per-row trigger would update a miner's row for every verified event copied. A batch quiets it for its transaction
# (luminar.defer_miner_counts) and adds its counts with the schema's luminar_add_miner_counts, the bulk writers' one
# way (it locks the miners' rows in uid order: parallel writers queue instead of deadlocking). Reports arrive
# already processed (no trigger counts an insert): they are added too, as the claims that settled them would have.
_DEFER_COUNTS = "SET LOCAL luminar.defer_miner_counts = 'on'"
_ADD_COUNTS = "SELECT luminar_add_miner_counts(%(uids)s::integer[], %(processed)s::integer[], %(verified)s::integer[])"
#: What a batch's transaction sets before its COPYs: the trigger that checks related_reports runs one small query
#: per event, and left to choose, the planner replans it on every call (measured: 90 us a call, 25 us with the
#: generic plan); and the miners' counters are deferred (above).
BATCH_SETTINGS = ("SET LOCAL plan_cache_mode = force_generic_plan", _DEFER_COUNTS)
_REPORT_STATUS = [name for name, _ in REPORT_COLUMNS].index("status")
_REPORT_CLAIMED_BY = [name for name, _ in REPORT_COLUMNS].index("claimed_by")
_EVENT_MINER = [name for name, _ in EVENT_COLUMNS].index("miner_uid")
_EVENT_STATUS = [name for name, _ in EVENT_COLUMNS].index("verification_status")


@dataclass
class RunWritten:
    """What was committed: batches, rows per table, and the merged tally of the committed blocks."""

    batches: int = 0
    reports: int = 0
    events: int = 0
    consensus: int = 0
    tally: Tally = field(default_factory=Tally)

    def add(self, reports: int, events: int, consensus: int, tally: Tally) -> None:
        self.batches += 1
        self.reports += reports
        self.events += events
        self.consensus += consensus
        self.tally.merge(tally)


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
              stop: Callable[[], bool] | None = None) -> int:
    """COPY ``rows`` into ``table`` in binary; ``columns`` are (name, type) pairs. Returns the number of rows.
    ``stop()`` is asked every thousand rows; when true the COPY (and its transaction) is abandoned."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(name) for name, _ in columns))
    count = 0
    with cur.copy(statement) as copy:
        copy.set_types([kind for _, kind in columns])
        for row in rows:
            copy.write_row(row)
            count += 1
            if stop is not None and count % _CHECK_EVERY == 0 and stop():
                raise _Stopped
    return count


def _miner_counts(blocks: list) -> dict[str, list[int]]:
    """The processed reports (by claimer) and verified events (by miner) of ``blocks``, as _ADD_COUNTS binds them."""
    processed = Counter(r[_REPORT_CLAIMED_BY] for b in blocks for r in b.reports
                        if r[_REPORT_STATUS] == "processed" and r[_REPORT_CLAIMED_BY] is not None)
    verified = Counter(e[_EVENT_MINER] for b in blocks for e in b.events if e[_EVENT_STATUS] == "verified")
    uids = sorted(processed.keys() | verified.keys())
    return {"uids": uids, "processed": [processed[u] for u in uids], "verified": [verified[u] for u in uids]}


def write_blocks(conn: psycopg.Connection, cur: psycopg.Cursor, blocks: Iterable[Block],
                 stop=None) -> tuple[tuple[int, int, int], list[Block]]:
    """Write ``blocks`` in one transaction: their reports, then the events (the related-reports trigger sees the
    reports), then the consensus records, then the miners' counters (see _DEFER_COUNTS). Returns the rows written
    per table and the blocks.

    ``blocks`` may be a generator: each block is then made while the reports' COPY streams the blocks before it,
    so the server takes rows while this process makes the next ones (measured: generation is a third of a load's
    CPU). The events and consensus records are copied from the blocks made."""
    made: list[Block] = []

    def reports() -> Iterator[tuple]:
        for block in blocks:
            made.append(block)
            yield from block.reports

    with conn.transaction():
        for setting in BATCH_SETTINGS:
            conn.execute(setting)
        written = copy_rows(cur, "raw_incident_reports", REPORT_COLUMNS, reports(), stop)
        events = copy_rows(cur, "crime_events", EVENT_COLUMNS, (e for b in made for e in b.events), stop)
        consensus = copy_rows(cur, "consensus_records", CONSENSUS_COLUMNS,
                              (c for b in made for c in b.consensus), stop)
        counts = _miner_counts(made)
        if counts["uids"]:
            conn.execute(_ADD_COUNTS, counts)
    return (written, events, consensus), made


def _batches(stream: RunStream, per_batch: int) -> list[range]:
    return [range(i, min(i + per_batch, stream.blocks)) for i in range(0, stream.blocks, per_batch)]


def _merged(blocks: list) -> Tally:
    tally = Tally()
    for b in blocks:
        tally.merge(b.tally)
    return tally


def write_run(conn: psycopg.Connection, stream: RunStream, *, per_batch: int, workers: int = 1,
              progress: Callable[[int], object] | None = None) -> RunWritten:
    """Write every block of ``stream``, ``per_batch`` blocks a transaction, with ``workers`` writers (processes
    when more than one). ``progress(n)`` gets each committed batch's report count. Raises the writer's error
    (``psycopg.Error`` in-process; ``OperationError`` naming it from a worker process) or ``KeyboardInterrupt``
    after every writer stopped."""
    batches = _batches(stream, per_batch)
    fork = "fork" in multiprocessing.get_all_start_methods()
    if workers > 1 and fork and len(batches) > 1 and conn.info.transaction_status == TransactionStatus.IDLE:
        return _write_in_processes(conn, stream, batches, min(workers, len(batches)), progress)
    written = RunWritten()
    cur = _cursor(conn)
    for batch in batches:
        counts, blocks = write_blocks(conn, cur, (stream.block(i) for i in batch))
        written.add(*counts, _merged(blocks))
        if progress is not None:
            progress(counts[0])
    return written


# -- worker processes ------------------------------------------------------------------------------------------------
def _worker(stream: RunStream, dsn: str, password: str | None, tasks, results, stop) -> None:
    """A forked writer: take batches (ranges of block numbers) until told to stop; report each commit.

    Ctrl-C reaches the whole process group, but only the parent acts on it: it tells the writers through ``stop``.
    A writer interrupted itself could die while its queue's feeder thread is half-way through a message, and the
    parent would then wait for the rest of that message for ever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        extra = {"password": password} if password else {}
        with psycopg.connect(dsn, autocommit=True, **extra) as conn:
            cur = _cursor(conn)
            while not stop.is_set():
                batch = tasks.get()
                if batch is None:
                    break
                counts, blocks = write_blocks(conn, cur, (stream.block(i) for i in batch), stop.is_set)
                results.put(("done", counts, _merged(blocks)))
        results.put(("exit", None, None))
    except (_Stopped, KeyboardInterrupt):
        results.put(("exit", None, None))
    except BaseException as exc:  # the parent raises it
        message = " ".join(str(exc).split()) or type(exc).__name__
        results.put(("error", f"{type(exc).__name__}: {message}", None))


def _write_in_processes(conn: psycopg.Connection, stream: RunStream, batches: list[range], workers: int,
                        progress: Callable[[int], object] | None) -> RunWritten:
    ctx = multiprocessing.get_context("fork")
    tasks, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    for batch in batches:
        tasks.put(batch)
    for _ in range(workers):
        tasks.put(None)
    password = conn.pgconn.password.decode() if conn.pgconn.password else None
    procs = [ctx.Process(target=_worker, args=(stream, conn.info.dsn, password, tasks, results, stop),
                         name=f"luminar-synthetic-writer-{n}", daemon=True) for n in range(workers)]
    for p in procs:
        p.start()
    written, errors, running = RunWritten(), [], workers
    # Ctrl-C while this process reads a message would leave half of it in the pipe, and the next read would wait for
    # the rest for ever: while the writers run, Ctrl-C only tells them to stop (they finish or roll back their
    # batch and leave), and KeyboardInterrupt is raised once they have.
    interrupted: list[int] = []

    def on_interrupt(signum: int, frame: object) -> None:
        interrupted.append(signum)
        stop.set()

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if main_thread else None
    try:
        while running:
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    errors.append("a writer process ended without reporting")
                    break
                continue
            running -= _handle(message, written, errors, stop, progress)
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        tasks.cancel_join_thread()  # batches nobody will take must not hold this process at exit
        _wind_down(procs, results, written, errors, stop, progress)
        if main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if interrupted:
        raise KeyboardInterrupt
    if errors:
        raise OperationError(f"a writer failed, its batch was rolled back ({written.batches} batches were "
                             f"committed): {errors[0]}")
    return written


def _handle(message: tuple, written: RunWritten, errors: list[str], stop, progress) -> int:
    """Account for one message of a writer; 1 when that writer has finished."""
    kind, payload, tally = message
    if kind == "done":
        written.add(*payload, tally)
        if progress is not None:
            progress(payload[0])
        return 0
    if kind == "error":
        errors.append(payload)
        stop.set()
    return 1


def _wind_down(procs, results, written: RunWritten, errors: list[str], stop, progress) -> None:
    """Wait for the writers to leave, reading their last messages meanwhile: a writer blocked on a full results
    pipe could not exit otherwise. One that has not left after a minute is terminated."""
    deadline = time.monotonic() + 60
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        try:
            _handle(results.get(timeout=0.2), written, errors, stop, None if errors else progress)
        except queue.Empty:
            pass
    for p in procs:
        if p.is_alive():
            p.terminate()  # after this the pipe may hold half a message: it is not read again
        p.join()
