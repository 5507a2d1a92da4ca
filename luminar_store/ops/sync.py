"""Central -> local copies (``luminar-db sync``): bounded, idempotent, resumable pulls.

What is copied: reports, events, consensus records, miner and validator performance, clusters and risk zones
written (inserted or changed) on central since a point, and central's deletes of them. Everything goes through
``sync()``; the command line only resolves the two ends and prints.

**The two ends.** Central is read in one ``REPEATABLE READ READ ONLY`` transaction (one snapshot for the whole run:
parents and children agree) by a read-only login, a member of ``luminar_sync`` (``LUMINAR_SYNC_SOURCE_URL``; by
default the source environment's own connection, production's unless ``--source-env`` says otherwise). The URL must
meet that environment's TLS minimum (``config.tls.check_tls_minimum``). The copy is written as its owner, in one
transaction a batch, and only into a ``local``, ``testing`` or ``testnet`` database; a copy of itself is refused.

**Watermarks and late commits.** A watermark on ``updated_at`` misses a transaction that began before it and
committed after it: its rows carry an old time but appear only later. So the watermark is a central transaction id
instead: the run records ``pg_snapshot_xmin`` of its snapshot, the oldest central transaction still running when it
read. Every transaction below it had finished, so its rows were seen; the next pass reads the rows whose ``xmin``
(the transaction that wrote the row version, widened to 64 bits with the snapshot's epoch) is at or above it.
A transaction open across a sync is above the watermark, so its rows arrive with the next sync, however late it
commits; rows read twice are harmless (the upserts change nothing). The cost: a pass over a table reads its rows'
``xmin`` (a scan of the table, in pages of ``batch_size`` rows in key order), not an index range.

**Windows.** ``since`` (``--hours N``, ``--since``) adds the rows whose change time (``updated_at``; consensus
records: ``created_at``) is at or after it, whatever the watermark: a first ``--hours 24`` copies the last day; later
ones copy the last day again (no change) plus everything since the watermark, so a copy left alone for a week
catches up without a gap. ``full`` copies every row. With neither, only the watermark counts (``sync_manager``'s
repeated pulls); with neither and no watermark yet, the call is refused.

**Parents.** An event brings the reports it names and its cluster, a consensus record its event, even when they are
older than the window: they are fetched by key from the same snapshot before the batch is written.

**Deletes.** Central's audit trail holds one DELETE row per deleted row; ``luminar_sync`` may not read it, so central
grants it ``luminar_sync_deletes(since, from_xid)`` (migration 20261130031000): table, primary key, time and
transaction of each delete, no data. Deleting by primary key, a uid registered again on central (a new row) stays,
and a local-only row is never deleted.
Retention's deletes are not listed: a copy ages out by its own ``luminar-db clean``.

**Local data.** The copy follows one source: ``sync_state`` records it, and a run from another source is refused
(reset the copy first). Rows written only locally carry keys central does not have and are never touched, deletes
included. A local row holding a natural key of a central row under another id (a report's ``external_id``, a miner's
or validator's uid, a consensus record's event x validator x round) is refused with ``ConflictError``, naming it,
unless ``overwrite=True`` (``--overwrite``), which deletes the local row first. Rows with central's key follow
central.

**Triggers.** The sync marks its transactions (``luminar.sync``); for the owner's session the triggers then keep
central's ``updated_at`` and do not count the miners' counters again (they are copied as central has them). The
audit triggers record the sync's writes like any other.

**Resuming.** A batch is one local transaction; a table's watermark advances only when its pass completed. An
interrupted run leaves whole batches, and the next run reads the unfinished tables from their old watermark again:
the rows already copied are found equal and left alone, the rest arrive; nothing twice, nothing missed.

Example::

    >>> result = sync(source, target, since=datetime.now(UTC) - timedelta(hours=24))
    >>> result.counts["crime_events"].inserted
    42
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from luminar_store.config import Settings, environment, load_settings
from luminar_store.config.tls import check_tls_minimum
from luminar_store.errors import (
    ConfigError,
    ConflictError,
    DatabaseUnavailableError,
    LuminarError,
    OperationError,
)
from luminar_store.ops.connect import connect

__all__ = ["TABLES", "COPY_ENVIRONMENTS", "SOURCE_URL_VARIABLE", "SOURCE_ENV_VARIABLE", "DEFAULT_BATCH_SIZE",
           "TableCount", "SyncResult", "check_target", "resolve_source", "source_identity", "sync"]

log = logging.getLogger("luminar_store.ops.sync")

#: The environments a copy may be written into.
COPY_ENVIRONMENTS = ("local", "testing", "testnet")
SOURCE_URL_VARIABLE = "LUMINAR_SYNC_SOURCE_URL"
SOURCE_ENV_VARIABLE = "LUMINAR_SYNC_SOURCE_ENV"
DEFAULT_BATCH_SIZE = 5_000
#: sync_state's row for central's deletes.
DELETES = "deletes"
_EPOCH = 1 << 32


@dataclass(frozen=True)
class _Table:
    name: str
    key: str                      # primary key (uuid): pages, upserts and deletes
    changed: str                  # the change time a window reads
    natural: tuple[str, ...] = ()  # a unique natural key, when there is one
    # parents: (parent table, SELECT of the parent keys a staged batch names, from {stage})
    parents: tuple[tuple[str, str], ...] = ()


_SPECS = (
    _Table("crime_clusters", "cluster_id", "updated_at"),
    _Table("raw_incident_reports", "report_id", "updated_at", ("external_id",)),
    _Table("crime_events", "event_id", "updated_at", (),
           (("crime_clusters", "SELECT DISTINCT cluster_id FROM {stage} WHERE cluster_id IS NOT NULL"),
            ("raw_incident_reports", "SELECT DISTINCT unnest(related_reports) FROM {stage}"))),
    _Table("consensus_records", "record_id", "created_at",
           ("event_id", "validator_uid", "consensus_round"),
           (("crime_events", "SELECT DISTINCT event_id FROM {stage}"),)),
    _Table("risk_zones", "zone_id", "updated_at"),
    _Table("miner_performance", "miner_id", "updated_at", ("miner_uid",)),
    _Table("validator_performance", "validator_id", "updated_at", ("validator_uid",)),
)
_BY_NAME = {t.name: t for t in _SPECS}
#: The tables copied, in the order they are written (parents first).
TABLES = tuple(t.name for t in _SPECS)
# Deletes go children first, so that no delete waits on a child still there.
_DELETE_ORDER = tuple(reversed(TABLES))

MARK_SYNC = "SELECT set_config('luminar.sync', txid_current()::text, true)"
SNAPSHOT = ("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
            "pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
# The non-generated columns of a table, in order: what is copied.
COLUMNS = """SELECT attname FROM pg_attribute
              WHERE attrelid = %(table)s::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
              ORDER BY attnum"""
CENTRAL_DELETES = "SELECT table_name, row_key FROM luminar_sync_deletes(%(since)s, %(from_xid)s)"
STATE = "SELECT table_name, source, watermark_xid FROM sync_state"
SAVE_STATE = """INSERT INTO sync_state (table_name, source, watermark_xid, run_id)
                VALUES (%(table)s, %(source)s, %(xid)s, %(run)s)
                ON CONFLICT (table_name) DO UPDATE
                   SET source = EXCLUDED.source, watermark_xid = EXCLUDED.watermark_xid, synced_at = now(),
                       run_id = EXCLUDED.run_id"""
START_RUN = """INSERT INTO sync_runs (source, mode, since) VALUES (%(source)s, %(mode)s, %(since)s)
               RETURNING run_id"""
# One sync a copy at a time: a session lock of the copy's database, taken without waiting.
LOCK = "SELECT pg_try_advisory_lock(%(key)s)"
UNLOCK = "SELECT pg_advisory_unlock(%(key)s)"
LOCK_KEY = 0x6C756D73796E63  # 'lumsync'
INTERRUPTED = """UPDATE sync_runs SET status = 'failed', finished_at = now(),
                        error = 'interrupted: the process ended before the run did'
                  WHERE status = 'running'"""
END_RUN = """UPDATE sync_runs SET finished_at = now(), status = %(status)s, counts = %(counts)s, error = %(error)s
              WHERE run_id = %(run)s"""


@dataclass
class TableCount:
    """What one table's pass did: rows ``read`` from central (its window and the parents fetched for others),
    ``inserted`` and ``updated`` locally (a row found equal counts in neither), ``deleted`` by central's deletes."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass
class SyncResult:
    """A run: ``source`` and ``target`` (no password), ``mode`` (window, full, watermark), ``counts`` per table,
    ``seconds`` and ``rows_per_second`` (rows read from central per second), ``run_id`` in ``sync_runs``."""

    source: str
    target: str
    mode: str
    run_id: int
    counts: dict[str, TableCount] = field(default_factory=lambda: {t: TableCount() for t in TABLES})
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(c.read for c in self.counts.values())

    @property
    def rows_changed(self) -> int:
        return sum(c.changed for c in self.counts.values())

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


# -- the two ends ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TlsFloor:
    sslmode: str
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None


def resolve_source(source_env: str = "production", *, environ: Mapping[str, str] | None = None) -> Settings:
    """The central end: ``LUMINAR_SYNC_SOURCE_URL`` when set (checked against the TLS minimum of ``source_env``'s
    settings, or of its environment's defaults when those settings do not load here), else ``source_env``'s own
    settings (production by default).

    Raises ``ConfigError`` naming the variable and the fix, never showing the URL or its password.
    """
    environ = dict(os.environ if environ is None else environ)
    url = (environ.get(SOURCE_URL_VARIABLE) or "").strip()
    try:
        primary: object = load_settings(source_env, environ=environ)
    except ConfigError:
        if not url:
            raise
        primary = _TlsFloor(environment(source_env).sslmode)
    if not url:
        return primary  # type: ignore[return-value]
    conninfo = check_tls_minimum(url, primary, SOURCE_URL_VARIABLE)  # type: ignore[arg-type]
    return Settings.from_conninfo(conninfo, env=source_env)


def source_identity(settings: Settings) -> str:
    """What ``sync_state`` records of a source: ``host:port/database`` (no role, no password)."""
    return f"{settings.host}:{settings.port}/{settings.name}"


def check_target(source: Settings, target: Settings) -> None:
    """Refuse (``OperationError``) a target outside ``COPY_ENVIRONMENTS`` and a target that is the source itself."""
    if target.env not in COPY_ENVIRONMENTS:
        raise OperationError(f"sync writes only into a {', '.join(COPY_ENVIRONMENTS[:-1])} or "
                             f"{COPY_ENVIRONMENTS[-1]} database, not into "
                             f"{target.target()}; pass --env=local (the copy), never the central database")
    if source_identity(source) == source_identity(target):
        raise OperationError(f"the sync source and target are the same database ({target.target()}); set "
                             f"{SOURCE_URL_VARIABLE} to the central database")


# -- one run -----------------------------------------------------------------------------------------------------
def sync(source: Settings, target: Settings, *, since: datetime | None = None, full: bool = False,
         overwrite: bool = False, batch_size: int = DEFAULT_BATCH_SIZE,
         progress: Callable[[str, int], object] | None = None) -> SyncResult:
    """Copy from ``source`` (central, read-only) into ``target`` (the copy, as its owner) what central wrote since
    ``since`` and since each table's watermark (``full``: everything), with central's deletes; see the module text.

    ``progress(table, rows)`` is called after each batch with the rows it read (an exception it raises stops the run
    there, as an interruption would: whole batches stay). Returns a ``SyncResult``. Raises ``OperationError`` for a
    refused target, a second source, central without the sync's migration or a schema that differs, and when neither
    ``since`` nor ``full`` is given before any watermark exists; ``ConflictError`` for local data in the way (see
    ``overwrite``); ``DatabaseUnavailableError`` when either end cannot be reached.
    """
    if not 1 <= batch_size <= 1_000_000:
        raise OperationError(f"batch_size must be between 1 and 1,000,000, got {batch_size}")
    check_target(source, target)
    with connect(target, autocommit=True) as local, connect(source, autocommit=True) as central:
        _session(local)
        _session(central)
        state = _read_state(local, source_identity(source))
        if not local.execute(LOCK, {"key": LOCK_KEY}).fetchone()[0]:
            raise OperationError(f"another sync is writing into {target.target()}; wait for it to end")
        try:
            result = _one_run(local, central, state, source, target, since=since, full=full, overwrite=overwrite,
                              batch_size=batch_size, progress=progress)
        finally:
            # Released here, not by closing: a closed session's backend may hold it a moment longer.
            with contextlib.suppress(psycopg.Error):
                local.execute(UNLOCK, {"key": LOCK_KEY})
    log.info("sync %s -> %s: %d rows read, %d changed in %.1f s", result.source, result.target, result.rows_read,
             result.rows_changed, result.seconds)
    return result


def _one_run(local: psycopg.Connection, central: psycopg.Connection, state: dict[str, int], source: Settings,
             target: Settings, *, since: datetime | None, full: bool, overwrite: bool, batch_size: int,
             progress: Callable[[str, int], object] | None) -> SyncResult:
    """One run under the copy's lock: the checks, central's snapshot, the deletes, then each table's pass."""
    started = time.monotonic()
    ident = source_identity(source)
    local.execute(INTERRUPTED)  # under the lock no other run is alive: one still 'running' ended with its process
    unfinished = [t for t in (DELETES, *TABLES) if t not in state]
    if not full and since is None and unfinished:
        raise OperationError(f"{target.target()}: {', '.join(unfinished)} never completed a first pass; give a "
                             "window (--hours N or --since TIME) or --full")
    mode = "full" if full else ("window" if since is not None else "watermark")
    central.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        _check_central(central, local, ident)
        snap_xmin, snap_xmax = central.execute(SNAPSHOT).fetchone()
        run = local.execute(START_RUN, {"source": ident, "mode": mode, "since": since}).fetchone()[0]
        result = SyncResult(source=ident, target=target.target(), mode=mode, run_id=run)
        copier = _Copier(central, local, result, batch_size=batch_size, overwrite=overwrite, progress=progress,
                         xmax=snap_xmax)
        try:
            copier.current = DELETES
            copier.deletes(None if full else since, None if full else state.get(DELETES))
            _save(local, DELETES, ident, snap_xmin, run)
            for spec in _SPECS:
                copier.current = spec.name
                copier.table(spec, since=None if full else since, from_xid=None if full else state.get(spec.name),
                             full=full)
                _save(local, spec.name, ident, snap_xmin, run)
        except BaseException as exc:
            result.seconds = time.monotonic() - started
            failure = _translated(exc, copier.current, source, target)
            said = str(failure or exc)
            _end(local, run, "failed", result, said.splitlines()[0] if said else type(exc).__name__)
            if failure is not None:
                raise failure from exc
            raise
    finally:
        with contextlib.suppress(psycopg.Error):
            central.execute("ROLLBACK")
    result.seconds = time.monotonic() - started
    _end(local, run, "done", result, None)
    return result


def _translated(exc: BaseException, table: str, source: Settings, target: Settings) -> LuminarError | None:
    """A server's failure as the project's error, one line naming the table and what to do; None for others."""
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailableError(
            f"sync lost a connection while copying {table} ({source_identity(source)} -> {target.target()}): "
            f"{' '.join(str(exc).split())[:200]}; run it again: it resumes from the last complete table")
    if isinstance(exc, psycopg.Error):
        reason = exc.diag.message_primary or type(exc).__name__
        return OperationError(f"sync stopped while copying {table} into {target.target()}: {reason}; the batches "
                              "before it are kept; fix the cause and run it again")
    return None


def _session(conn: psycopg.Connection) -> None:
    # Both ends speak the same text forms: COPY's text is moved byte for byte from one to the other.
    for setting, value in (("datestyle", "ISO, YMD"), ("timezone", "UTC"), ("intervalstyle", "postgres"),
                           ("extra_float_digits", "3"), ("bytea_output", "hex")):
        conn.execute("SELECT set_config(%s, %s, false)", (setting, value))


def _read_state(local: psycopg.Connection, ident: str) -> dict[str, int]:
    if local.execute("SELECT to_regclass('public.sync_state') IS NULL").fetchone()[0]:
        raise OperationError("the target has no sync_state table; migrate it first: luminar-db migrate")
    rows = local.execute(STATE).fetchall()
    others = sorted({source for _, source, _ in rows if source != ident})
    if others:
        raise OperationError(f"this copy follows {others[0]}, not {ident}: a copy takes one source (its local "
                             "rows and the source's would mix); reset it first (luminar-db reset) to follow another")
    return {table: xid for table, _, xid in rows}


def _check_central(central: psycopg.Connection, local: psycopg.Connection, ident: str) -> None:
    fn = central.execute("SELECT to_regprocedure('luminar_sync_deletes(timestamptz,bigint)')::oid").fetchone()[0]
    if fn is None or not central.execute("SELECT has_function_privilege(%s::oid, 'EXECUTE')", (fn,)).fetchone()[0]:
        raise OperationError(f"the source {ident} lacks luminar_sync_deletes (migration 20261130031000) or this "
                             "login may not run it: migrate the central database and log in as a member of "
                             "luminar_sync")
    for spec in _SPECS:
        mine = [r[0] for r in local.execute(COLUMNS, {"table": spec.name})]
        theirs = {r[0] for r in central.execute(COLUMNS, {"table": spec.name})}
        missing = [c for c in mine if c not in theirs]
        if missing:
            raise OperationError(f"the source {ident} has no column {spec.name}.{missing[0]}: its schema is older "
                                 "than the copy's; migrate the central database (or sync into a copy at its version)")


def _save(local: psycopg.Connection, table: str, ident: str, xid: int, run: int) -> None:
    local.execute(SAVE_STATE, {"table": table, "source": ident, "xid": xid, "run": run})


def _end(local: psycopg.Connection, run: int, status: str, result: SyncResult, error: str | None) -> None:
    counts = {t: vars(c) for t, c in result.counts.items()}
    try:
        local.execute(END_RUN, {"status": status, "counts": Jsonb(counts), "error": error, "run": run})
    except psycopg.Error:  # the copy's connection itself failed: the run stays 'running' in the history
        log.warning("sync run %s could not be recorded as %s", run, status)


class _Copier:
    """One run's passes: central's snapshot in ``central``, batches written to ``local``."""

    def __init__(self, central: psycopg.Connection, local: psycopg.Connection, result: SyncResult, *,
                 batch_size: int, overwrite: bool, progress: Callable[[str, int], object] | None, xmax: int) -> None:
        self.central, self.local, self.result = central, local, result
        self.batch_size, self.overwrite, self.progress = batch_size, overwrite, progress
        # A row's xmin is a 32-bit transaction id: widened with the snapshot's epoch (a row newer than the
        # watermark is within 2^31 transactions of now; an older one read as newer is only read again).
        self.low, self.base = xmax % _EPOCH, xmax - xmax % _EPOCH
        self.columns: dict[str, list[str]] = {}
        self.current = ""  # the table being copied, for messages
        for spec in _SPECS:
            cols = [r[0] for r in local.execute(COLUMNS, {"table": spec.name})]
            self.columns[spec.name] = cols
            local.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
                                  "SELECT {} FROM {} WITH NO DATA").format(
                _stage(spec.name), sql.SQL(", ").join(map(sql.Identifier, cols)), sql.Identifier(spec.name)))

    # -- deletes ---------------------------------------------------------------------------------------------------
    def deletes(self, since: datetime | None, from_xid: int | None) -> None:
        by_table: dict[str, list[str]] = {}
        with self.central.cursor(name="luminar_sync_deletes") as cur:
            cur.execute(CENTRAL_DELETES, {"since": since, "from_xid": from_xid})
            while rows := cur.fetchmany(self.batch_size):
                for table, key in rows:
                    by_table.setdefault(table, []).append(key)
                if sum(map(len, by_table.values())) >= self.batch_size:
                    self._apply_deletes(by_table)
                    by_table = {}
        self._apply_deletes(by_table)

    def _apply_deletes(self, by_table: dict[str, list[str]]) -> None:
        for name in _DELETE_ORDER:
            keys = sorted(set(by_table.get(name, ())))
            if not keys:
                continue
            spec = _BY_NAME[name]
            column, table = sql.Identifier(spec.key), sql.Identifier(name)
            # A key deleted and present again in the snapshot (a restored row) stays.
            present = {str(r[0]) for r in self.central.execute(
                sql.SQL("SELECT {c} FROM {t} WHERE {c} = ANY(%(keys)s::uuid[])").format(c=column, t=table),
                {"keys": keys})}
            gone = [k for k in keys if k not in present]
            if not gone:
                continue
            with self.local.transaction():
                self.local.execute(MARK_SYNC)
                n = self.local.execute(sql.SQL("DELETE FROM {t} WHERE {c} = ANY(%(keys)s::uuid[])").format(
                    c=column, t=table), {"keys": gone}).rowcount
            self.result.counts[name].deleted += n

    # -- one table's pass ------------------------------------------------------------------------------------------
    def table(self, spec: _Table, *, since: datetime | None, from_xid: int | None, full: bool) -> None:
        cols = self.columns[spec.name]
        conditions = []
        params: dict[str, object] = {"limit": self.batch_size, "low": self.low, "base": self.base}
        if since is not None:
            conditions.append(sql.SQL("{} >= %(since)s").format(sql.Identifier(spec.changed)))
            params["since"] = since
        if from_xid is not None:
            conditions.append(sql.SQL("xmin::text::bigint + CASE WHEN xmin::text::bigint <= %(low)s THEN %(base)s "
                                      "ELSE %(base)s - 4294967296 END >= %(from_xid)s"))
            params["from_xid"] = from_xid
        if full or not conditions:
            window = sql.SQL("true") if full else sql.SQL("false")
        else:
            window = sql.SQL("({})").format(sql.SQL(" OR ").join(conditions))
        after = None
        while True:
            page = sql.SQL("SELECT {cols} FROM {t} WHERE {window} AND ({after}) ORDER BY {key} LIMIT %(limit)s").format(
                cols=sql.SQL(", ").join(map(sql.Identifier, cols)), t=sql.Identifier(spec.name), window=window,
                key=sql.Identifier(spec.key),
                after=sql.SQL("true") if after is None else sql.SQL("{} > %(after)s").format(sql.Identifier(spec.key)))
            with self.local.transaction():
                self.local.execute(MARK_SYNC)
                read = self._stage_from_central(spec, page, {**params, "after": after})
                if read:
                    after = self.local.execute(sql.SQL("SELECT {k} FROM {s} ORDER BY {k} DESC LIMIT 1").format(
                        k=sql.Identifier(spec.key), s=_stage(spec.name))).fetchone()[0]
                    self._write_staged(spec)
            if read and self.progress is not None:
                self.progress(spec.name, read)
            if read < self.batch_size:
                return

    def _stage_from_central(self, spec: _Table, query: sql.Composable, params: dict[str, object]) -> int:
        """COPY a page of central's rows into the table's stage, byte for byte; returns how many."""
        cols = sql.SQL(", ").join(map(sql.Identifier, self.columns[spec.name]))
        out = sql.SQL("COPY ({}) TO STDOUT").format(query)
        into = sql.SQL("COPY {} ({}) FROM STDIN").format(_stage(spec.name), cols)
        with self.central.cursor().copy(out, params) as source, self.local.cursor().copy(into) as target:
            for data in source:
                target.write(data)
        n = self.local.execute(sql.SQL("SELECT count(*) FROM {}").format(_stage(spec.name))).fetchone()[0]
        self.result.counts[spec.name].read += n
        return n

    def _write_staged(self, spec: _Table) -> None:
        """Bring the staged rows' missing parents, clear natural keys in the way, upsert, empty the stage."""
        for parent, select in spec.parents:
            pspec = _BY_NAME[parent]
            keys = [r[0] for r in self.local.execute(sql.SQL(
                "SELECT k FROM ({select}) AS p(k) WHERE k IS NOT NULL "
                "AND NOT EXISTS (SELECT 1 FROM {parent} WHERE {pkey} = p.k)").format(
                    select=sql.SQL(select).format(stage=_stage(spec.name)), parent=sql.Identifier(parent),
                    pkey=sql.Identifier(pspec.key)))]
            for i in range(0, len(keys), self.batch_size):
                chunk = keys[i:i + self.batch_size]
                query = sql.SQL("SELECT {cols} FROM {t} WHERE {key} = ANY(%(keys)s)").format(
                    cols=sql.SQL(", ").join(map(sql.Identifier, self.columns[parent])), t=sql.Identifier(parent),
                    key=sql.Identifier(pspec.key))
                if self._stage_from_central(pspec, query, {"keys": chunk}):
                    self._write_staged(pspec)
        if spec.natural:
            self._clear_natural_keys(spec)
        cols = self.columns[spec.name]
        names = sql.SQL(", ").join(map(sql.Identifier, cols))
        others = [c for c in cols if c != spec.key]
        upsert = sql.SQL(
            "WITH up AS (INSERT INTO {t} ({names}) SELECT {names} FROM {s} "
            "ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new}) "
            "RETURNING (xmax = 0) AS inserted) "
            "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM up").format(
            t=sql.Identifier(spec.name), names=names, s=_stage(spec.name), key=sql.Identifier(spec.key),
            sets=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others),
            old=sql.SQL(", ").join(sql.SQL("{t}.{c}").format(t=sql.Identifier(spec.name), c=sql.Identifier(c))
                                   for c in others),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others))
        inserted, updated = self.local.execute(upsert).fetchone()
        self.result.counts[spec.name].inserted += inserted
        self.result.counts[spec.name].updated += updated
        self.local.execute(sql.SQL("TRUNCATE {}").format(_stage(spec.name)))

    def _clear_natural_keys(self, spec: _Table) -> None:
        """Local rows holding a staged row's natural key under another id: refused, or deleted with overwrite."""
        match = sql.SQL(" AND ").join(sql.SQL("t.{c} = s.{c}").format(c=sql.Identifier(c)) for c in spec.natural)
        clash = sql.SQL("SELECT {shown}, t.{key} FROM {t} AS t JOIN {s} AS s ON {match} "
                        "WHERE t.{key} <> s.{key}").format(
            shown=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in spec.natural),
            key=sql.Identifier(spec.key), t=sql.Identifier(spec.name), s=_stage(spec.name), match=match)
        rows = self.local.execute(clash).fetchall()
        if not rows:
            return
        if not self.overwrite:
            named = ", ".join(f"{c}={v}" for c, v in zip(spec.natural, rows[0][:-1], strict=True))
            raise ConflictError(f"{len(rows)} local row(s) of {spec.name} hold a key central has under another id "
                                f"(first: {named}, local {spec.key} {rows[0][-1]}): local-only data is not "
                                "overwritten; remove it, or pass --overwrite to replace it with central's")
        self.local.execute(sql.SQL("DELETE FROM {t} WHERE {key} = ANY(%(ids)s)").format(
            t=sql.Identifier(spec.name), key=sql.Identifier(spec.key)), {"ids": [r[-1] for r in rows]})


def _stage(table: str) -> sql.Identifier:
    return sql.Identifier(f"sync_stage_{table}")
