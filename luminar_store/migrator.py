"""The migration runner: discover, plan, apply, record, verify and roll back ``migrations/*.sql``.

Files
    ``YYYYMMDDHHMMSS_name.sql``: a UTC stamp (the version) and a name of ``[a-z0-9_]+``, applied in version order.
    In the directory, sub-directories (such as ``templates/``), dot-files, ``*.py`` files (``manager.py``,
    ``__init__.py``) and ``README*`` are ignored; any other file is an error that names it, never skipped.
    Two files with one version are an error that names both.

Format
    ``-- migrate:up`` and ``-- migrate:down`` lines split a file into sections; without markers the whole file is
    the up section and there is no down section. The specification's own form, a body wrapped in ``BEGIN;`` ...
    ``COMMIT;``, is accepted: the runner supplies the transaction, so that leading ``BEGIN`` and trailing
    ``COMMIT`` are dropped; any other transaction control in a transactional file is refused with its line.
    A line ``-- migrate:no-transaction`` (by convention the first line) runs the file's statements one by one in
    autocommit, for statements a transaction refuses (``CREATE INDEX CONCURRENTLY``); its record is written after
    them. If such a file fails part-way it is recorded as failed (``dirty``) and every later run stops until the
    database is fixed by hand and the failure resolved (``mark_resolved`` / ``retry``). Any other
    ``-- migrate:...`` line is an error, so a typo never passes silently.

Records
    ``public.schema_migrations`` (created when first needed): version, name, checksum (SHA-256 of the text with
    CRLF turned into LF and a UTF-8 BOM removed), applied_at, execution_ms, applied_by, dirty, error.
    Each transactional file runs in one transaction together with its record: a failing file leaves no trace.

Safety
    A run holds the session advisory lock ``LOCK_KEY`` and reads the applied state only after taking it, so any
    number of nodes may start at once. An applied file whose text changed stops ``migrate`` until accepted; a
    pending file older than the newest applied one is refused unless ``allow_out_of_order``.

Example::

    >>> Migrator("host=localhost dbname=luminar_local user=luminar_dev", out=print).migrate()
    applied 20250101000000_initial_schema (84 ms)
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from luminar_store.errors import ConfigError, DatabaseUnavailableError, MigrationError, ValidationError

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

FILENAME_RE = re.compile(r"(\d{14})_([a-z0-9_]+)\.sql")
NAME_RE = re.compile(r"[a-z0-9_]+")
_DIRECTIVE = re.compile(r"\s*--\s*migrate:(\S*)(.*)")
_BEGIN = re.compile(r"(BEGIN(\s+(WORK|TRANSACTION))?|START\s+TRANSACTION)\s*;?", re.I)
_COMMIT = re.compile(r"(COMMIT|END)(\s+(WORK|TRANSACTION))?\s*;?", re.I)
_TX_CONTROL = re.compile(r"(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO\b)|ABORT)\b", re.I)
_DOLLAR = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
_STATES_NEEDING_ATTENTION = ("changed", "missing", "failed")

TEMPLATE = """\
-- Migration: {name}
-- Created:   {created} (UTC)
--
-- The up section runs in one transaction together with its schema_migrations record (no BEGIN/COMMIT needed).
-- For statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY), add a first line reading
-- "-- migrate:no-transaction". The down section undoes the up section; `luminar-db migrate rollback` runs it.

-- migrate:up


-- migrate:down

"""

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


# -- files ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    """One SQL statement of a file and the file line (1-based) where it starts."""

    sql: str
    line: int


@dataclass(frozen=True)
class Migration:
    """A parsed migration file. ``down`` is ``None`` when the file has no ``-- migrate:down`` section."""

    version: str
    name: str
    path: Path
    checksum: str
    up: tuple[Statement, ...]
    down: tuple[Statement, ...] | None
    transactional: bool = True

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


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


def checksum(text: str) -> str:
    """SHA-256 hex of migration text after normalisation (see ``_normalise``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise(raw: bytes, source: str) -> str:
    # Line endings and a BOM are editor noise, not content: they must not count as an edit of an applied file.
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{source} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_statements(text: str, first_line: int = 1) -> list[Statement]:
    """Split SQL into statements at top-level semicolons, aware of quotes, dollar quotes and comments.

    Each statement starts at its first token (leading comments belong to nobody), so a server error position
    within it maps to a file line. ``first_line`` is the file line of ``text``'s first line.
    Example: ``split_statements("SELECT 1;\\nSELECT ';';")`` gives two statements, on lines 1 and 2.
    """
    out: list[Statement] = []
    start: int | None = None
    i, n = 0, len(text)

    def ident(ch: str) -> bool:
        return ch.isalnum() or ch in "_$"

    while i < n:
        c = text[i]
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if text.startswith("/*", i):  # block comments nest in PostgreSQL
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        if c.isspace():
            i += 1
            continue
        if start is None:
            start = i
        if c == ";":
            out.append(Statement(text[start:i + 1], first_line + text.count("\n", 0, start)))
            start, i = None, i + 1
            continue
        if c in "'\"":
            # E'...' strings know backslash escapes; elsewhere a doubled quote is the only escape.
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and (i < 2 or not ident(text[i - 2]))
            i += 1
            while i < n:
                if escapes and text[i] == "\\":
                    i += 2
                elif text[i] != c:
                    i += 1
                elif text.startswith(c, i + 1):  # a doubled quote: the literal goes on
                    i += 2
                else:
                    break
            i += 1
            continue
        if c == "$" and not (i > 0 and ident(text[i - 1])):
            m = _DOLLAR.match(text, i)
            if m:
                j = text.find(m.group(0), m.end())
                i = n if j < 0 else j + len(m.group(0))
                continue
        i += 1
    if start is not None:
        out.append(Statement(text[start:].rstrip(), first_line + text.count("\n", 0, start)))
    return out


def _unwrap(stmts: list[Statement], source: str) -> tuple[Statement, ...]:
    """Drop the spec form's wrapping BEGIN/COMMIT; refuse any other transaction control (it would break atomicity)."""
    if len(stmts) >= 2 and _BEGIN.fullmatch(stmts[0].sql) and _COMMIT.fullmatch(stmts[-1].sql):
        stmts = stmts[1:-1]
    for s in stmts:
        m = _TX_CONTROL.match(s.sql)
        if m:
            raise MigrationError(
                f"{source}, line {s.line}: {m.group(1).upper()} controls the transaction, but the runner wraps each "
                "file in one transaction (a leading BEGIN; with a final COMMIT; is allowed); remove it, or put "
                "'-- migrate:no-transaction' at the top of the file to run its statements one by one"
            )
    return tuple(stmts)


def parse_migration_text(text: str, *, version: str, name: str, path: Path) -> Migration:
    """Parse already normalised text into a ``Migration``; raises ``MigrationError`` naming file and line."""
    source = path.name
    lines = text.split("\n")
    markers: list[tuple[int, str]] = []
    transactional = True
    for index, line in enumerate(lines):
        m = _DIRECTIVE.fullmatch(line)
        if not m:
            continue
        word, rest = m.group(1).lower(), m.group(2).strip()
        if word not in ("up", "down", "no-transaction") or rest:
            raise MigrationError(
                f"{source}, line {index + 1}: unknown directive {line.strip()!r}; "
                "use '-- migrate:up', '-- migrate:down' or '-- migrate:no-transaction' alone on a line"
            )
        if word == "no-transaction":
            transactional = False
        elif any(w == word for _, w in markers):
            raise MigrationError(f"{source}, line {index + 1}: a second '-- migrate:{word}' section")
        else:
            markers.append((index, word))
    where = dict((w, i) for i, w in markers)
    if "up" in where and "down" in where and where["down"] < where["up"]:
        raise MigrationError(f"{source}, line {where['down'] + 1}: '-- migrate:down' must follow '-- migrate:up'")
    if "up" in where:
        before = split_statements("\n".join(lines[:where["up"]]))
        if before:
            raise MigrationError(f"{source}, line {before[0].line}: SQL before '-- migrate:up'; move it into a section")
    up_from = where["up"] + 1 if "up" in where else 0
    up_to = where.get("down", len(lines))

    def section(first: int, last: int) -> tuple[Statement, ...]:
        stmts = split_statements("\n".join(lines[first:last]), first + 1)
        return _unwrap(stmts, source) if transactional else tuple(stmts)

    down = section(where["down"] + 1, len(lines)) if "down" in where else None
    return Migration(version, name, path, checksum(text), section(up_from, up_to), down, transactional)


def _stamp(version: str) -> datetime:
    return datetime.strptime(version, "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def parse_migration(path: Path | str) -> Migration:
    """Read and parse one migration file.

    Raises ``MigrationError`` for a name not ``YYYYMMDDHHMMSS_name.sql``, an impossible stamp, text that is not
    UTF-8, an unknown ``-- migrate:`` directive or transaction control inside a transactional file.
    """
    path = Path(path)
    m = FILENAME_RE.fullmatch(path.name)
    if not m:
        raise MigrationError(f"{path.name}: expected a name like YYYYMMDDHHMMSS_name.sql (UTC stamp, [a-z0-9_] name)")
    version, name = m.groups()
    try:
        _stamp(version)
    except ValueError:
        raise MigrationError(f"{path.name}: {version} is not a valid UTC time YYYYMMDDHHMMSS") from None
    return parse_migration_text(_normalise(path.read_bytes(), path.name), version=version, name=name, path=path)


def _ignored(path: Path) -> bool:
    name = path.name
    return path.is_dir() or name.startswith(".") or name.endswith(".py") or name.upper().startswith("README")


def discover_migrations(directory: Path | str) -> list[Migration]:
    """Parse every migration file of ``directory``, in version order.

    Raises ``MigrationError`` when the directory is missing, a file there is not a migration (all such files are
    named), a file cannot be parsed, or two files share a version (both are named).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist; create it or pass --dir")
    files = sorted(p for p in directory.iterdir() if not _ignored(p))
    strangers = [p.name for p in files if not FILENAME_RE.fullmatch(p.name)]
    if strangers:
        raise MigrationError(
            f"not migration files in {directory}: {', '.join(strangers)}; a migration is named "
            "YYYYMMDDHHMMSS_name.sql (UTC stamp, name of [a-z0-9_]); rename them or move them out"
        )
    found: dict[str, Migration] = {}
    for path in files:
        migration = parse_migration(path)
        if migration.version in found:
            raise MigrationError(
                f"two migration files share version {migration.version}: {found[migration.version].path.name} and "
                f"{path.name}; give one a new stamp (`luminar-db migrate create NAME` makes a fresh one)"
            )
        found[migration.version] = migration
    return [found[v] for v in sorted(found)]


def create_migration(directory: Path | str, name: str, *, now: datetime | None = None) -> Path:
    """Write a new ``YYYYMMDDHHMMSS_name.sql`` from ``TEMPLATE`` and return its path. Never overwrites.

    The stamp is ``now`` (UTC, default the clock), moved one second past the newest existing version when it
    would not sort last, and one more second whenever that version's file appears meanwhile.
    Raises ``ValidationError`` (field ``name``) unless the name matches ``[a-z0-9_]+``.
    Example: ``create_migration("migrations", "add_risk_scoring")``.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValidationError("name", f"{name!r} must be lower-case letters, digits and _ only, e.g. add_risk_scoring")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    versions = [m.group(1) for m in map(FILENAME_RE.fullmatch, (p.name for p in directory.iterdir())) if m]
    if versions and stamp <= _stamp(max(versions)):
        stamp = _stamp(max(versions)) + timedelta(seconds=1)
    while True:
        version = stamp.strftime("%Y%m%d%H%M%S")
        path = directory / f"{version}_{name}.sql"
        if version not in versions:
            try:
                with path.open("x", encoding="utf-8") as f:  # "x": fails instead of overwriting
                    f.write(TEMPLATE.format(name=name, created=stamp.strftime("%Y-%m-%d %H:%M:%S")))
                return path
            except FileExistsError:
                pass
        stamp += timedelta(seconds=1)


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
