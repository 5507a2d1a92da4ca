"""Backups with ``pg_dump`` (custom format, so ``pg_restore -d luminar_local FILE`` also reads them), and what
backups and restores (``luminar_store.ops.restore``) share: the tools, their environment, their error reasons.

The connection reaches the tools through the environment of their process (``PGHOST``, ``PGPASSWORD``, ...): the
password is never on a command line, in a message or in a log. A backup is written to ``<file>.partial`` and renamed
when complete, so a failed or interrupted backup leaves no file behind. A tool's failure is reported with the
server's own reason (its ``ERROR:`` line), never with the statement it was running alone.

Tools: ``LUMINAR_PG_BINDIR`` when set (only there), else the newest ``/usr/lib/postgresql/<major>/bin``, else
``PATH``; the tool's major version must be at least the server's.

Example::

    >>> result = backup_database(load_settings("local"))
    >>> result.path
    PosixPath('backups/luminar_local_20250817T120000Z.dump')
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from luminar_store.config import Settings
from luminar_store.errors import OperationError
from luminar_store.ops.connect import connect

__all__ = [
    "DEFAULT_BACKUP_DIR",
    "BackupResult",
    "find_tool",
    "tool_environment",
    "offline_environment",
    "tool_reason",
    "default_backup_path",
    "backup_database",
    "last_backup",
    "read_archive",
]

DEFAULT_BACKUP_DIR = Path("backups")
_PG_LIB = Path("/usr/lib/postgresql")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
# How pg_dump / pg_restore report a failure: "pg_restore: from TOC entry 4149; 0 18117 TABLE DATA spatial_ref_sys
# postgres", then "pg_restore: error: ... ERROR:  permission denied for table spatial_ref_sys", then the statement
# ("Command was: COPY ..." / "pg_dump: detail: Query was: ..."), possibly over several lines.
_TOOL_PREFIX = re.compile(r"^(pg_dump|pg_restore): (error: |detail: )?")
_FROM_ENTRY = re.compile(r"from TOC entry \d+;\s*\d+\s+\d+\s+(?P<what>.+)$")
_SERVER_ERROR = re.compile(r"\b(?:ERROR|FATAL):\s+(?P<reason>.+)$")


@dataclass(frozen=True)
class BackupResult:
    """A finished backup: where, how big (bytes), how long (seconds), of which server version."""

    path: Path
    size_bytes: int
    seconds: float
    server_version: str


def _major_of(tool: Path) -> int | None:
    try:
        done = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    found = _VERSION.search(done.stdout)
    return int(found.group(1)) if found else None


def find_tool(name: str, *, server_major: int | None = None) -> Path:
    """The ``pg_dump`` / ``pg_restore`` to use (see the module text), whose major version is at least
    ``server_major``. Raises ``OperationError`` naming where it looked and how to install one."""
    explicit = os.environ.get("LUMINAR_PG_BINDIR")
    if explicit:
        candidates = [Path(explicit) / name]
        where = f"LUMINAR_PG_BINDIR={explicit}"
        fix = "point LUMINAR_PG_BINDIR at PostgreSQL's bin directory (e.g. /usr/lib/postgresql/15/bin) or unset it"
    else:
        majors = sorted((int(p.name) for p in _PG_LIB.iterdir() if p.name.isdigit()), reverse=True) \
            if _PG_LIB.is_dir() else []
        candidates = [_PG_LIB / str(m) / "bin" / name for m in majors]
        on_path = shutil.which(name)
        if on_path:
            candidates.append(Path(on_path))
        where = f"{_PG_LIB}/*/bin and PATH"
        fix = (f"install the PostgreSQL client: apt-get install postgresql-client-{server_major or 15} "
               "(or set LUMINAR_PG_BINDIR)")
    found = [c for c in candidates if c.is_file() and os.access(c, os.X_OK)]
    if not found:
        raise OperationError(f"{name} not found in {where}; {fix}")
    too_old = []
    for tool in found:
        major = _major_of(tool)
        if major is not None and (server_major is None or major >= server_major):
            return tool
        too_old.append(f"{tool} ({major or 'unknown version'})")
    raise OperationError(f"{name} must be version {server_major} or newer for this server, found only "
                         f"{', '.join(too_old)}; {fix}")


def tool_environment(settings: Settings) -> dict[str, str]:
    """The environment for ``pg_dump`` / ``pg_restore``: the caller's, with the connection as ``PG*`` variables
    (``PGPASSWORD`` included: the process environment is the one place the password goes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update({"PGHOST": settings.host, "PGPORT": str(settings.port), "PGUSER": settings.user,
                "PGDATABASE": settings.name, "PGSSLMODE": settings.sslmode,
                "PGCONNECT_TIMEOUT": str(settings.connect_timeout), "PGAPPNAME": "luminar_store.backup"})
    for key, var in (("sslrootcert", "PGSSLROOTCERT"), ("sslcert", "PGSSLCERT"), ("sslkey", "PGSSLKEY")):
        if getattr(settings, key):
            env[var] = getattr(settings, key)
    if settings.password:
        env["PGPASSWORD"] = settings.password
    return env


def _server(settings: Settings) -> tuple[int, str]:
    with connect(settings) as conn:
        number, text = conn.execute("SELECT current_setting('server_version_num')::int, "
                                    "current_setting('server_version')").fetchone()
    return number // 10000, text.split()[0]


def offline_environment() -> dict[str, str]:
    """The environment for a tool that reads an archive only: the caller's, without any ``PG*`` connection."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def tool_reason(text: str, secret: str | None) -> str:
    """The reason in a tool's error output, on one line and without ``secret``: the server's ``ERROR:`` text (plus
    the archive entry being restored, when the tool names one), else the tool's last own message; never the
    statement it was running on its own."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = entry = None
    for line in lines:
        found = _SERVER_ERROR.search(line)
        if found and reason is None:
            reason = " ".join(found.group("reason").split())
        named = _FROM_ENTRY.search(line)
        if named and entry is None:
            entry = " ".join(named.group("what").split())
    if reason is None:
        own = [line for line in lines if _TOOL_PREFIX.match(line) and "Query was:" not in line]
        reason = _TOOL_PREFIX.sub("", own[-1]) if own else (lines[-1] if lines else "no message")
    if entry:
        reason = f"{reason} (while restoring {entry})"
    return reason.replace(secret, "***") if secret else reason


def default_backup_path(settings: Settings, *, directory: Path = DEFAULT_BACKUP_DIR,
                        now: datetime | None = None) -> Path:
    """``backups/luminar_<env>_<UTC stamp>.dump``, e.g. ``backups/luminar_local_20250817T120000Z.dump``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return directory / f"luminar_{settings.env}_{stamp}.dump"


def last_backup(settings: Settings, directory: Path = DEFAULT_BACKUP_DIR) -> datetime | None:
    """When the newest complete backup of the settings' environment in ``directory`` was written (UTC; the file's
    modification time), ``None`` when there is none. A complete backup is a ``default_backup_path`` name: a
    ``.partial`` file is a backup under way or failed, never counted."""
    found = sorted(Path(directory).glob(f"luminar_{settings.env}_*.dump"), key=lambda p: p.stat().st_mtime)
    return datetime.fromtimestamp(found[-1].stat().st_mtime, UTC) if found else None


def _writable(path: Path) -> None:
    """Create ``path`` empty, readable and writable by its owner only (0600, whatever the umask): a backup holds
    victims' reports and every node's data. A directory made for it is 0700."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # also when the file existed with a wider mode
        finally:
            os.close(fd)
    except OSError as exc:
        raise OperationError(f"cannot write the backup to {path}: {exc.strerror or exc}; choose a writable "
                             "place with --output PATH") from None


def backup_database(settings: Settings, output: Path | None = None) -> BackupResult:
    """Dump the settings' database with ``pg_dump -Fc`` to ``output`` (default ``default_backup_path``; a
    directory gets the default file name inside it). An existing file is not overwritten.

    Raises ``DatabaseUnavailableError`` (server unreachable), ``OperationError`` (no suitable pg_dump, the output
    exists or is not writable, pg_dump failed); in each case no file is left behind.
    """
    started = time.perf_counter()
    major, version = _server(settings)
    tool = find_tool("pg_dump", server_major=major)
    path = Path(output) if output is not None else default_backup_path(settings)
    if path.is_dir():
        path = default_backup_path(settings, directory=path)
    if path.exists():
        raise OperationError(f"{path} already exists; choose another --output or remove it first")
    partial = path.with_name(path.name + ".partial")
    _writable(partial)
    done = False
    try:
        ran = subprocess.run([str(tool), "--format=custom", "--no-password", f"--file={partial}"],
                             env=tool_environment(settings), capture_output=True, text=True, check=False)
        if ran.returncode != 0:
            raise OperationError(f"pg_dump failed: {tool_reason(ran.stderr, settings.password)}")
        os.replace(partial, path)
        done = True
    finally:
        if not done:
            partial.unlink(missing_ok=True)
    return BackupResult(path=path, size_bytes=path.stat().st_size, seconds=time.perf_counter() - started,
                        server_version=version)


def read_archive(path: Path, *, tool: Path | None = None) -> list[str]:
    """The table of contents of a ``pg_dump`` custom/directory/tar archive (``pg_restore --list``), one entry a
    line. Raises ``OperationError`` when the file is missing or is not a readable archive."""
    path = Path(path)
    if not path.exists():
        raise OperationError(f"{path}: no such file; give the path of a backup made by `luminar-db backup`")
    tool = tool or find_tool("pg_restore")
    ran = subprocess.run([str(tool), "--list", str(path)], capture_output=True, text=True, check=False,
                         env=offline_environment())
    if ran.returncode != 0:
        raise OperationError(f"{path} is not a readable pg_dump archive ({tool_reason(ran.stderr, None)}); "
                             "nothing was restored")
    return [line for line in ran.stdout.splitlines() if line.strip() and not line.startswith(";")]
