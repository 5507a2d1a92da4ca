"""Migration files: where they live, discovery, naming rules, parsing, statement splitting, checksums and
new-file creation.

Everything here reads or writes files only; the database side lives in the other modules of
``luminar_store.migrator``, which re-exports these public names.

Location
    The SQL files live in the repository's top-level ``migrations/`` and ship inside the wheel as the package
    ``luminar_store.migrations`` (a ``package_dir`` mapping in ``setup.py``); ``DEFAULT_DIR`` finds them with
    ``importlib.resources``, so an editable install, a regular install and a bare checkout all see them.
    ``migrations_directory()`` is what every command uses: ``--dir``, else ``LUMINAR_MIGRATIONS_DIR``, else
    ``DEFAULT_DIR``.

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
    A line ``-- migrate:no-transaction`` (by convention the first line) marks a file whose statements the runner
    runs one by one in autocommit, for statements a transaction refuses (``CREATE INDEX CONCURRENTLY``).
    Any other ``-- migrate:...`` line is an error, so a typo never passes silently.

Checksums
    SHA-256 of the text with CRLF turned into LF and a UTF-8 BOM removed, so editor noise never counts as an edit.

Example::

    >>> [m.label for m in discover_migrations("migrations")]
    ['20250101000000_initial_schema', ...]
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from luminar_store.errors import MigrationError, ValidationError

__all__ = [
    "DEFAULT_DIR",
    "migrations_directory",
    "FILENAME_RE",
    "NAME_RE",
    "TEMPLATE",
    "Statement",
    "Migration",
    "checksum",
    "split_statements",
    "parse_migration_text",
    "parse_migration",
    "discover_migrations",
    "create_migration",
]

#: The package that holds the SQL files once installed (``setup.py`` maps it onto the top-level ``migrations/``).
MIGRATIONS_PACKAGE = "luminar_store.migrations"
#: Environment variable naming another migrations directory (the ``--dir`` option reads it too).
DIR_ENV = "LUMINAR_MIGRATIONS_DIR"


def _packaged_directory() -> Path:
    try:
        root = resources.files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError:
        # A checkout used without installing (migrations/manager.py puts the repository on sys.path): there is no
        # mapping, but the files sit beside the package.
        return Path(__file__).resolve().parents[2] / "migrations"
    if isinstance(root, Path):
        return root
    # A zipped install: the runner lists and reads real files, which such an install does not have. Discovery
    # then says the directory does not exist and to pass --dir.
    return Path(str(root))


#: The migrations shipped with the package (the repository's ``migrations/`` in a checkout or editable install).
DEFAULT_DIR = _packaged_directory()


def migrations_directory(override: Path | str | None = None) -> Path:
    """The migrations directory a command uses: ``override`` (``--dir``), else ``$LUMINAR_MIGRATIONS_DIR``, else
    ``DEFAULT_DIR``. Never raises; a missing directory is reported by ``discover_migrations``.

    Example: ``migrations_directory()`` gives ``.../site-packages/luminar_store/migrations`` once installed.
    """
    if override:
        return Path(override)
    return Path(os.environ.get(DIR_ENV) or DEFAULT_DIR)


FILENAME_RE = re.compile(r"(\d{14})_([a-z0-9_]+)\.sql")
NAME_RE = re.compile(r"[a-z0-9_]+")
_DIRECTIVE = re.compile(r"\s*--\s*migrate:(\S*)(.*)")
_BEGIN = re.compile(r"(BEGIN(\s+(WORK|TRANSACTION))?|START\s+TRANSACTION)\s*;?", re.I)
_COMMIT = re.compile(r"(COMMIT|END)(\s+(WORK|TRANSACTION))?\s*;?", re.I)
_TX_CONTROL = re.compile(r"(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO\b)|ABORT)\b", re.I)
_DOLLAR = re.compile(r"\$([A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")

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
