"""The migration runner: lock, plan, apply, record, verify and roll back ``migrations/*.sql``.

The files themselves (discovery, naming rules, ``-- migrate:`` sections, statement splitting, checksums,
``create_migration``) live in ``luminar_store.migration_files``; their public names are re-exported here, so
``from luminar_store.migrator import parse_migration`` keeps working.

Running
    Each transactional file runs in one transaction together with its record: a failing file leaves no trace.
    A ``-- migrate:no-transaction`` file runs its statements one by one in autocommit and its record is written
    after them. If such a file fails part-way it is recorded as failed (``dirty``) and every later run stops until
    the database is fixed by hand and the failure resolved (``mark_resolved`` / ``retry``).

Records
    ``public.schema_migrations`` (created when first needed): version, name, checksum (see
    ``migration_files.checksum``), applied_at, execution_ms, applied_by, dirty, error.

Safety
    A run holds the session advisory lock ``LOCK_KEY`` and reads the applied state only after taking it, so any
    number of nodes may start at once. An applied file whose text changed stops ``migrate`` until accepted; a
    pending file older than the newest applied one is refused unless ``allow_out_of_order``.

Example::

    >>> Migrator("host=localhost dbname=luminar_local user=luminar_dev", out=print).migrate()
    applied 20250101000000_initial_schema (84 ms)
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from luminar_store.errors import ConfigError, DatabaseUnavailableError, MigrationError, ValidationError

# The naming patterns were importable from here (not in __all__) before the files part moved out; they still are.
from luminar_store.migration_files import FILENAME_RE as FILENAME_RE
from luminar_store.migration_files import NAME_RE as NAME_RE
from luminar_store.migration_files import (
    TEMPLATE,
    Migration,
    Statement,
    checksum,
    create_migration,
    discover_migrations,
    parse_migration,
    parse_migration_text,
    split_statements,
)

__all__ = [
    "DEFAULT_DIR",
    "LOCK_KEY",
    "TEMPLATE",
    "Statement",
    "Migration",
    "AppliedMigration",
    "MigrationStatus",
    "Migrator",
    "migrate_database",
    "create_migration",
    "discover_migrations",
    "parse_migration",
    "parse_migration_text",
    "split_statements",
    "checksum",
]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: Key of the session advisory lock every run holds ("LUMINAR" in ASCII).
LOCK_KEY = 0x4C554D494E4152

_STATES_NEEDING_ATTENTION = ("changed", "missing", "failed")

# -- SQL of the record table. `public` is named so that a migration that changes search_path cannot move it. -----
CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS public.schema_migrations (
    version      text        PRIMARY KEY CHECK (version ~ '^[0-9]{14}$'),
    name         text        NOT NULL,
    checksum     text        NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    execution_ms integer     NOT NULL DEFAULT 0 CHECK (execution_ms >= 0),
    applied_by   text        NOT NULL DEFAULT current_user,
    dirty        boolean     NOT NULL DEFAULT false,
    error        text
)"""
TABLE_EXISTS = "SELECT to_regclass('public.schema_migrations') IS NOT NULL"
TABLE_COLUMNS = """
SELECT column_name FROM information_schema.columns
 WHERE table_schema = 'public' AND table_name = 'schema_migrations'"""
SELECT_APPLIED = """
SELECT version, name, checksum, applied_at, execution_ms, applied_by, dirty, error
  FROM public.schema_migrations ORDER BY version"""
SELECT_LAST_APPLIED = """
SELECT version, name, checksum, applied_at, execution_ms, applied_by, dirty, error
  FROM public.schema_migrations ORDER BY applied_at DESC, version DESC LIMIT 1"""
INSERT_RECORD = """
INSERT INTO public.schema_migrations (version, name, checksum, execution_ms, applied_by, dirty, error)
VALUES (%s, %s, %s, %s, coalesce(%s::text, current_user || '@' || %s::text), %s, %s)"""
MARK_FAILED = "UPDATE public.schema_migrations SET dirty = true, error = %s WHERE version = %s"
UPDATE_CHECKSUM = "UPDATE public.schema_migrations SET checksum = %s WHERE version = %s"
MARK_RESOLVED = "UPDATE public.schema_migrations SET dirty = false, error = NULL, checksum = %s WHERE version = %s"
DELETE_RECORD = "DELETE FROM public.schema_migrations WHERE version = %s"
TRY_LOCK = "SELECT pg_try_advisory_lock(%s::bigint)"
LOCK = "SELECT pg_advisory_lock(%s::bigint)"
LOCK_HOLDERS = """
SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local socket'),
       coalesce(a.usename::text, '?'), a.backend_start
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = %s AND l.objid::bigint = %s"""


# -- records -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``schema_migrations``; ``dirty`` marks a no-transaction file that failed part-way."""

    version: str
    name: str
    checksum: str
    applied_at: datetime
    execution_ms: int
    applied_by: str
    dirty: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


@dataclass(frozen=True)
class MigrationStatus:
    """One version as ``status`` sees it: state is applied, pending, changed, missing or failed."""

    version: str
    name: str
    state: str
    migration: Migration | None = None
    record: AppliedMigration | None = None
    out_of_order: bool = False

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


# -- planning (pure: files + records in, decisions out) --------------------------------------------------------------
def _statuses(files: list[Migration], applied: dict[str, AppliedMigration]) -> list[MigrationStatus]:
    by_version = {m.version: m for m in files}
    newest = max(applied, default="")
    out = []
    for version in sorted(set(by_version) | set(applied)):
        m, r = by_version.get(version), applied.get(version)
        if r is None:
            out.append(MigrationStatus(version, m.name, "pending", m, None, version < newest))
        elif r.dirty:
            out.append(MigrationStatus(version, r.name, "failed", m, r))
        elif m is None:
            out.append(MigrationStatus(version, r.name, "missing", None, r))
        else:
            out.append(MigrationStatus(version, m.name, "changed" if m.checksum != r.checksum else "applied", m, r))
    return out


def _failed_message(r: AppliedMigration) -> str:
    return (f"migration {r.label} failed part-way outside a transaction ({r.error}); fix the database by hand, then "
            f"run `luminar-db migrate --mark-resolved {r.version}` to record it as applied, or undo its effects by "
            f"hand and run `luminar-db migrate --retry {r.version}` to run it again")


def _plan(files: list[Migration], applied: dict[str, AppliedMigration], target: str | None,
          allow_out_of_order: bool) -> list[Migration]:
    statuses = _statuses(files, applied)
    failed = [s for s in statuses if s.state == "failed"]
    if failed:
        raise MigrationError(_failed_message(failed[0].record))  # type: ignore[arg-type]
    changed = [s for s in statuses if s.state == "changed"]
    if changed:
        raise MigrationError(
            "applied migrations were edited since they ran: " + ", ".join(
                f"{s.migration.path.name} (recorded {s.record.checksum[:12]}, file now {s.migration.checksum[:12]})"
                for s in changed)  # type: ignore[union-attr]
            + "; restore the applied text, or keep the new text with `luminar-db migrate --accept-checksum "
            + " --accept-checksum ".join(s.version for s in changed) + "`"
        )
    pending = [s for s in statuses if s.state == "pending" and (target is None or s.version <= target)]
    late = [s for s in pending if s.out_of_order]
    if late and not allow_out_of_order:
        newest = applied[max(applied)]
        raise MigrationError(
            f"{late[0].migration.path.name} is pending but older than the newest applied migration "  # type: ignore
            f"{newest.label}; it was probably merged after that one ran. Check it does not conflict, then apply it "
            "with `luminar-db migrate --allow-out-of-order`"
        )
    return [s.migration for s in pending]  # type: ignore[misc]


def _version_of(text: str) -> str:
    m = re.fullmatch(r"(\d{14})(_[a-z0-9_]*)?(\.sql)?", str(text).strip())
    if not m:
        raise ValidationError("version", f"{text!r} is not a migration version like 20250817120000")
    return m.group(1)


# -- running --------------------------------------------------------------------------------------------------------
class _StatementFailed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _failure(m: Migration, s: Statement, exc: psycopg.Error) -> str:
    """One line naming the file, the file line of the failing statement (the server's error position within it
    when the server gives one) and the server's message."""
    diag = exc.diag
    position = diag.statement_position
    line = s.line + (s.sql.count("\n", 0, max(int(position) - 1, 0)) if position else 0)
    message = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    extra = f"; hint: {diag.message_hint}" if diag.message_hint else ""
    if exc.sqlstate == "25001":  # active_sql_transaction: e.g. CREATE INDEX CONCURRENTLY
        extra += "; put '-- migrate:no-transaction' at the top of the file to run it outside a transaction"
    state = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    return f"migration {m.path.name} failed at line {line}: {message}{state}{extra}"


class Migrator:
    """Runs the migrations of ``directory`` against the database of ``conninfo``.

    ``lock_timeout`` bounds the wait for another run's lock (seconds; 0 = do not wait); ``environment`` is the
    settings' environment (``rollback`` refuses ``production`` unless told); ``applied_by`` overrides the recorded
    ``role@host``; ``out`` receives one human line per event (None: silent). Every method raises
    ``DatabaseUnavailableError`` when the server cannot be reached and ``MigrationError`` when it refuses to go on.
    The conninfo (with its password) is never printed.
    """

    def __init__(self, conninfo: str, directory: Path | str = DEFAULT_DIR, *, lock_timeout: float = 60.0,
                 environment: str = "local", applied_by: str | None = None,
                 out: Callable[[str], object] | None = None) -> None:
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError:  # its message may echo the password
            raise ConfigError("the connection string is not valid; use postgresql://USER:PASSWORD@HOST:PORT/DB"
                              ) from None
        defaults = {"application_name": "luminar_store.migrator", "connect_timeout": "10"}
        self._conninfo = make_conninfo(conninfo, **{k: v for k, v in defaults.items() if k not in params})
        self._params = params
        self.directory = Path(directory)
        self.lock_timeout = float(lock_timeout)
        self.environment = environment
        self.applied_by = applied_by
        self._out = out

    def __repr__(self) -> str:
        return f"Migrator({self.where()}, directory={str(self.directory)!r})"

    # -- connection ----------------------------------------------------------------------------------------------
    def where(self) -> str:
        """``host H, port P, database D`` of the target (no user, no password)."""
        p, env = self._params, os.environ
        host = p.get("host") or p.get("hostaddr") or env.get("PGHOST") or "localhost"
        port = p.get("port") or env.get("PGPORT") or "5432"
        dbname = p.get("dbname") or env.get("PGDATABASE") or p.get("user") or "?"
        return f"host {host}, port {port}, database {dbname}"

    def _unavailable(self, exc: Exception, waited: float = 0) -> DatabaseUnavailableError:
        reason = " ".join((str(exc).strip().splitlines() or [""])[0].split())
        reason = reason.removeprefix("connection failed: ")
        password = self._params.get("password")
        if password:
            reason = reason.replace(password, "***")
        after = f" after waiting {waited:g} s" if waited else ""
        return DatabaseUnavailableError(
            f"cannot reach the database ({self.where()}){after}: {reason}; is it running? "
            "Start it with `make db-start` (or pass --wait SECONDS while it starts)"
        )

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.OperationalError as exc:
            raise self._unavailable(exc) from None

    def wait_until_ready(self, seconds: float) -> None:
        """Retry connecting for up to ``seconds`` (a server still starting); raises ``DatabaseUnavailableError``."""
        deadline = time.monotonic() + max(seconds, 0)
        while True:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._unavailable(exc, waited=seconds) from None
                time.sleep(min(0.5, left))

    def _say(self, line: str) -> None:
        if self._out is not None:
            self._out(line)

    def _lock(self, conn: psycopg.Connection) -> None:
        # A session lock: it outlives the per-file transactions and is released when the connection closes.
        if self.lock_timeout <= 0:
            got = conn.execute(TRY_LOCK, [LOCK_KEY]).fetchone()[0]
        else:
            milliseconds = max(1, round(self.lock_timeout * 1000))
            conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{milliseconds}ms"])
            try:
                conn.execute(LOCK, [LOCK_KEY])
                got = True
            except psycopg.errors.LockNotAvailable:
                got = False
            finally:
                conn.execute("RESET lock_timeout")
        if not got:
            rows = conn.execute(LOCK_HOLDERS, [LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF]).fetchall()
            holders = "; ".join(f"pid {pid}, application {app!r}, client {addr}, user {user}, connected since "
                                f"{start.isoformat(timespec='seconds')}" for pid, app, addr, user, start in rows)
            raise MigrationError(
                f"another migration run holds the migration lock ({holders or 'holder gone'}); gave up after "
                f"{self.lock_timeout:g} s (--lock-timeout); wait for it to finish, or stop it"
            )

    @staticmethod
    def _read_applied(conn: psycopg.Connection) -> dict[str, AppliedMigration]:
        if not conn.execute(TABLE_EXISTS).fetchone()[0]:
            return {}
        return {row[0]: AppliedMigration(*row) for row in conn.execute(SELECT_APPLIED)}

    @staticmethod
    def _ensure_table(conn: psycopg.Connection) -> None:
        conn.execute(CREATE_TABLE)
        have = {r[0] for r in conn.execute(TABLE_COLUMNS)}
        lacking = [c for c in ("version", "name", "checksum", "applied_at", "execution_ms", "applied_by", "dirty",
                               "error") if c not in have]
        if lacking:
            raise MigrationError(f"public.schema_migrations exists without columns {', '.join(lacking)} (made by "
                                 "another tool?); rename that table or add the columns")

    def _record(self, conn: psycopg.Connection, m: Migration, ms: int, error: str | None = None) -> None:
        conn.execute(INSERT_RECORD, [m.version, m.name, m.checksum, ms, self.applied_by, socket.gethostname(),
                                     error is not None, error])

    def _execute(self, conn: psycopg.Connection, m: Migration, statements: Iterable[Statement]) -> None:
        for s in statements:
            try:
                conn.execute(s.sql)
            except psycopg.Error as exc:
                raise _StatementFailed(_failure(m, s, exc)) from exc

    # -- public operations ---------------------------------------------------------------------------------------
    def discover(self) -> list[Migration]:
        """The parsed files of the directory (see ``discover_migrations``)."""
        return discover_migrations(self.directory)

    def create(self, name: str) -> Path:
        """Write a new migration file from the template (see ``create_migration``)."""
        path = create_migration(self.directory, name)
        self._say(f"created {path}")
        return path

    def status(self) -> list[MigrationStatus]:
        """Every version known to the files or the records, with its state; reads without the lock, writes nothing."""
        files = self.discover()
        with self._connect() as conn:
            return _statuses(files, self._read_applied(conn))

    def verify(self) -> list[MigrationStatus]:
        """The applied versions needing attention (changed, missing, failed); an empty list means all is well."""
        return [s for s in self.status() if s.state in _STATES_NEEDING_ATTENTION]

    def plan(self, target: str | None = None, *, allow_out_of_order: bool = False) -> list[Migration]:
        """What ``migrate`` would apply now, in order; raises ``MigrationError`` where ``migrate`` would refuse.

        Reads without the lock and writes nothing.
        """
        files = self.discover()
        target = self._target(target, files)
        with self._connect() as conn:
            return _plan(files, self._read_applied(conn), target, allow_out_of_order)

    def _target(self, target: str | None, files: list[Migration]) -> str | None:
        if target is None:
            return None
        version = _version_of(target)
        if version not in {m.version for m in files}:
            raise MigrationError(f"--target {version}: no migration file in {self.directory} has that version")
        return version

    def migrate(self, target: str | None = None, *, dry_run: bool = False, allow_out_of_order: bool = False,
                accept_checksums: Iterable[str] = (), mark_resolved: Iterable[str] = (),
                retry: Iterable[str] = ()) -> list[Migration]:
        """Apply every pending migration (up to and including ``target``) and return those applied, in order.

        ``dry_run`` only plans and says what it would do (nothing is written, not even ``schema_migrations``).
        Resolutions, written under the lock before applying: ``accept_checksums`` records the current text of
        edited applied files as the applied one; ``mark_resolved`` records failed no-transaction files as applied;
        ``retry`` forgets their failure so that they run again.
        Raises ``MigrationError`` naming the file, line and server message when a file fails (that file leaves no
        trace unless it is a no-transaction file; earlier files stay applied), and before touching anything when
        a file failed earlier, an applied file changed, or a pending file is older than the newest applied one.
        """
        files = self.discover()  # a broken file fails before anything is touched
        target = self._target(target, files)
        with self._connect() as conn:
            if not dry_run:
                self._lock(conn)
                self._ensure_table(conn)  # read after the lock: the state another run left is the one we see
            applied = self._read_applied(conn)
            writes = _resolutions(applied, {m.version: m for m in files}, accept_checksums, mark_resolved, retry)
            for _query, _params, _line, version, record in writes:
                if record is None:
                    del applied[version]
                else:
                    applied[version] = record
            todo = _plan(files, applied, target, allow_out_of_order)  # refuses before anything is written
            if writes and not dry_run:
                with conn.transaction():
                    for query, params, *_ in writes:
                        conn.execute(query, params)
            for *_, line, _version, _record in writes:
                self._say(("would " if dry_run else "") + line)
            for s in _statuses(files, applied):
                if s.state == "missing":
                    self._say(f"warning: {s.label} is applied but its file is missing from {self.directory}")
            if dry_run:
                for m in todo:
                    self._say(f"would apply {m.label}" + ("" if m.transactional else " (no transaction)"))
                return todo
            for m in todo:
                self._apply(conn, m)
        return todo

    def _apply(self, conn: psycopg.Connection, m: Migration) -> None:
        started = time.perf_counter()
        try:
            if m.transactional:
                with conn.transaction():  # the file and its record commit together, or neither does
                    self._execute(conn, m, m.up)
                    ms = _ms_since(started)
                    self._record(conn, m, ms)
            else:
                try:
                    self._execute(conn, m, m.up)
                except _StatementFailed as failed:
                    if conn.info.transaction_status != TransactionStatus.IDLE:
                        conn.rollback()  # the file's own BEGIN block failed: close it before writing
                    self._record(conn, m, _ms_since(started), error=failed.message)
                    raise _StatementFailed(
                        f"{failed.message}; it runs outside a transaction, so statements before that line stay "
                        f"applied: fix the database by hand, then run `luminar-db migrate --mark-resolved "
                        f"{m.version}` (or undo it by hand and run `luminar-db migrate --retry {m.version}`)"
                    ) from failed.__cause__
                ms = _ms_since(started)
                self._record(conn, m, ms)
        except _StatementFailed as failed:
            raise MigrationError(failed.message) from failed.__cause__
        conn.execute("RESET ALL")  # a file's session SETs must not leak into the next file
        self._say(f"applied {m.label} ({ms} ms)")

    def rollback(self, *, allow_production: bool = False) -> Migration:
        """Undo the most recently applied migration with its down section and delete its record, in one transaction.

        Raises ``MigrationError`` in the ``production`` environment unless ``allow_production``, when nothing is
        applied, when that migration failed, changed, has no file or no ``-- migrate:down`` section, or when its
        down section fails (the record then stays).
        """
        if self.environment == "production" and not allow_production:
            raise MigrationError("rollback refused: the environment is production; pass --allow-production if you "
                                 "really mean to undo a migration there")
        by_version = {m.version: m for m in self.discover()}
        with self._connect() as conn:
            self._lock(conn)
            has_table = conn.execute(TABLE_EXISTS).fetchone()[0]
            row = conn.execute(SELECT_LAST_APPLIED).fetchone() if has_table else None
            if row is None:
                raise MigrationError("nothing to roll back: no migration is applied")
            r = AppliedMigration(*row)
            m = by_version.get(r.version)
            if r.dirty:
                raise MigrationError(_failed_message(r))
            if m is None:
                raise MigrationError(f"cannot roll back {r.label}: its file is missing from {self.directory}")
            if m.checksum != r.checksum:
                raise MigrationError(f"cannot roll back {m.path.name}: it was edited since it was applied; restore "
                                     f"it, or accept it with `luminar-db migrate --accept-checksum {m.version}`")
            if m.down is None:
                raise MigrationError(f"cannot roll back {m.path.name}: it has no '-- migrate:down' section; add one "
                                     "that undoes its up section, or undo it by hand")
            started = time.perf_counter()
            try:
                if m.transactional:
                    with conn.transaction():
                        self._execute(conn, m, m.down)
                        conn.execute(DELETE_RECORD, [m.version])
                else:
                    try:
                        self._execute(conn, m, m.down)
                    except _StatementFailed as failed:
                        if conn.info.transaction_status != TransactionStatus.IDLE:
                            conn.rollback()
                        conn.execute(MARK_FAILED, [f"rollback: {failed.message}", m.version])
                        raise
                    conn.execute(DELETE_RECORD, [m.version])
            except _StatementFailed as failed:
                raise MigrationError(f"rollback of {failed.message}") from failed.__cause__
            conn.execute("RESET ALL")
        self._say(f"rolled back {m.label} ({_ms_since(started)} ms)")
        return m


def _resolutions(applied: dict[str, AppliedMigration], files: dict[str, Migration], accept: Iterable[str],
                 resolved: Iterable[str], retry: Iterable[str]) -> list[tuple]:
    """The writes the resolution options ask for: (query, params, human line, version, new record or None)."""
    writes: list[tuple] = []
    accept, resolved, retry = ([_version_of(v) for v in vs] for vs in (accept, resolved, retry))
    both = sorted(set(resolved) & set(retry))
    if both:
        raise MigrationError(f"--mark-resolved and --retry both name {', '.join(both)}; choose one")

    def record(version: str, option: str, want_dirty: bool) -> AppliedMigration:
        r = applied.get(version)
        if r is None:
            raise MigrationError(f"{option} {version}: that version is not recorded as applied")
        if r.dirty != want_dirty:
            raise MigrationError(f"{option} {version}: {r.label} " + (
                "did not fail; nothing to resolve" if want_dirty else
                f"failed part-way; resolve it with --mark-resolved {version} or --retry {version}"))
        return r

    for version in accept:
        r, m = record(version, "--accept-checksum", False), files.get(version)
        if m is None:
            raise MigrationError(f"--accept-checksum {version}: {r.label} has no file in the directory to accept")
        if m.checksum != r.checksum:
            writes.append((UPDATE_CHECKSUM, [m.checksum, version], f"accept the edited text of {m.path.name}",
                           version, replace(r, checksum=m.checksum)))
    for version in resolved:
        r = record(version, "--mark-resolved", True)
        sha = files[version].checksum if version in files else r.checksum
        writes.append((MARK_RESOLVED, [sha, version], f"mark {r.label} as resolved (applied)", version,
                       replace(r, dirty=False, error=None, checksum=sha)))
    for version in retry:
        r = record(version, "--retry", True)
        writes.append((DELETE_RECORD, [version], f"forget the failed run of {r.label} (it runs again)", version, None))
    return writes


def migrate_database(conninfo: str, directory: Path | str | None = None, **kwargs) -> list[Migration]:
    """Apply every pending migration of ``directory`` (default ``DEFAULT_DIR``) and return those applied.

    ``kwargs`` go to ``Migrator`` (lock_timeout, environment, applied_by, out) or to ``Migrator.migrate``
    (target, dry_run, allow_out_of_order, ...). Raises like ``Migrator.migrate``.
    Example: ``migrate_database("host=localhost dbname=luminar_test", "migrations")``.
    """
    init = {k: kwargs.pop(k) for k in ("lock_timeout", "environment", "applied_by", "out") if k in kwargs}
    return Migrator(conninfo, directory if directory is not None else DEFAULT_DIR, **init).migrate(**kwargs)
