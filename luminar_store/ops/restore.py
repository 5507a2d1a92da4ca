"""Restores with ``pg_restore`` as the target database's owner role, in one transaction.

What an archive made by ``pg_dump`` holds, and what a restore does with each part:

- **Extensions** (``CREATE EXTENSION postgis`` and its comment) are not restored from the archive: PostGIS is not
  a trusted extension, so an administrator installs it at provisioning, and every extension the archive names must
  be in the target already. A superuser restoring creates the missing ones first (as ``setup`` does; they are
  dropped again when the restore fails); any other role is refused before anything changes, naming the fix.
- **``spatial_ref_sys`` data**: pg_dump keeps only the rows PostGIS did not ship (user-added SRIDs; usually none).
  The table belongs to the extension's owner and the owner role may not write it, so this entry is never restored:
  an archive SRID that the target already has is fine; one it lacks refuses the restore, naming the SRIDs and how
  an administrator adds them first.
- **Ownership**: every restored object belongs to the target database's owner role, whoever restores
  (``--no-owner``, plus ``--role=<owner>`` when the restoring role is another one, e.g. a superuser): never to
  ``postgres``. A role that is neither the owner, a member of it, nor a superuser is refused.
- **Grants** (``ACL``, ``DEFAULT ACL``) are restored. A grantee missing on the target server refuses the restore
  before anything changes, naming the roles and the fix (create them, then restore again).

Entries are chosen by filtering the archive's table of contents (``pg_restore --list``, then ``--use-list``); the
archive itself is never edited. The restore is one transaction: a failure or Ctrl-C leaves the database as it was,
and the message carries the server's own reason (``permission denied for table ...``, ``role "x" does not
exist``) and the entry being restored, on one line, without the password.

Example::

    >>> restore_database(load_settings("staging"), Path("backups/luminar_production_20250817T120000Z.dump"),
    ...                  clean=True).owner
    'luminar_owner'
"""

from __future__ import annotations

import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from luminar_store.config import Settings
from luminar_store.errors import OperationError
from luminar_store.ops import provision
from luminar_store.ops.backup import find_tool, offline_environment, read_archive, tool_environment, tool_reason
from luminar_store.ops.connect import connect, database_exists, maintenance

__all__ = ["RestoreResult", "ArchivePlan", "plan_archive", "restore_database"]

log = logging.getLogger(__name__)

# Table-of-contents lines of `pg_restore --list`: "<id>; <catalog oid> <oid> <kind> <schema> <name> <owner>".
_EXTENSION = re.compile(r"^\d+;\s*\d+\s+\d+\s+(?:EXTENSION\s+-|COMMENT\s+-\s+EXTENSION)\s+(?P<name>\S+)")
_SRS_DATA = re.compile(r"^\d+;\s*\d+\s+\d+\s+TABLE DATA\s+public\s+spatial_ref_sys\s")
_GRANTS = re.compile(r"^\d+;\s*\d+\s+\d+\s+(?:ACL|DEFAULT ACL)\s")
# Role names in the grant statements pg_dump writes (GRANT ... TO r; REVOKE ... FROM r; ALTER DEFAULT PRIVILEGES
# FOR ROLE r ...; SET SESSION AUTHORIZATION r): quoted with "" for a quote, or plain.
_NAME = r'"(?:[^"]|"")+"|[^\s,;"()]+'
_ROLES = re.compile(rf"(?:\sTO|\sFROM|\sFOR ROLE|SESSION AUTHORIZATION)\s+((?:{_NAME})(?:\s*,\s*(?:{_NAME}))*)")
_GRANT_STATEMENT = ("GRANT ", "REVOKE ", "ALTER DEFAULT PRIVILEGES ", "SET SESSION AUTHORIZATION ")

# The restoring role and the target database's owner, and whether the first may act as the second.
TARGET_FACTS = """
SELECT r.rolsuper, pg_get_userbyid(d.datdba), pg_has_role(current_user, d.datdba, 'MEMBER')
  FROM pg_roles r, pg_database d
 WHERE r.rolname = current_user AND d.datname = current_database()
"""
PRESENT_ROLES = "SELECT rolname FROM pg_roles WHERE rolname = ANY(%(names)s)"
PRESENT_EXTENSIONS = "SELECT extname FROM pg_extension WHERE extname = ANY(%(names)s)"
PRESENT_SRIDS = "SELECT srid FROM spatial_ref_sys WHERE srid = ANY(%(srids)s)"
IS_SUPERUSER = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore: the archive, its number of entries, seconds, whether the database was created, the role
    that owns the restored objects and the extensions created for it."""

    path: Path
    entries: int
    seconds: float
    created_database: bool
    owner: str = ""
    created_extensions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArchivePlan:
    """What of an archive is restored (``kept``, in the archive's order) and what it needs from the target: its
    extensions, the roles its grants name, the SRIDs of its ``spatial_ref_sys`` rows."""

    entries: list[str]
    kept: list[str]
    extensions: list[str] = field(default_factory=list)
    grantees: list[str] = field(default_factory=list)
    srids: list[int] = field(default_factory=list)


def _script(tool: Path, path: Path, entries: list[str], scratch: Path) -> str:
    """The SQL that ``entries`` of the archive would run (``pg_restore --file=-``; no server is involved)."""
    if not entries:
        return ""
    listing = scratch / "part.list"
    listing.write_text("\n".join(entries) + "\n")
    ran = subprocess.run([str(tool), f"--use-list={listing}", "--file=-", str(path)], capture_output=True,
                         text=True, check=False, env=offline_environment())
    if ran.returncode != 0:
        raise OperationError(f"{path} is not a readable pg_dump archive ({tool_reason(ran.stderr, None)}); "
                             "nothing was restored")
    return ran.stdout


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def _grantees(script: str) -> list[str]:
    found: list[str] = []
    for line in script.splitlines():
        if not line.startswith(_GRANT_STATEMENT):
            continue
        for names in _ROLES.findall(line):
            for name in re.findall(_NAME, names):
                role = _unquote(name)
                if name != "PUBLIC" and role not in found:
                    found.append(role)
    return found


def _srids(script: str) -> list[int]:
    rows, inside = [], False
    for line in script.splitlines():
        if line.startswith("COPY public.spatial_ref_sys "):
            inside = True
        elif line == "\\.":
            inside = False
        elif inside and line:
            rows.append(int(line.split("\t", 1)[0]))
    return rows


def plan_archive(path: Path, *, tool: Path | None = None) -> ArchivePlan:
    """Read the archive at ``path`` (its table of contents, its grants and its ``spatial_ref_sys`` rows) and choose
    the entries to restore. Raises ``OperationError`` when it is missing or not a readable archive."""
    tool = tool or find_tool("pg_restore")
    entries = read_archive(path, tool=tool)
    extensions: list[str] = []
    kept = []
    for entry in entries:
        found = _EXTENSION.match(entry)
        if found:
            if found.group("name") not in extensions:
                extensions.append(found.group("name"))
        elif not _SRS_DATA.match(entry):
            kept.append(entry)
    with tempfile.TemporaryDirectory(prefix="luminar-archive-") as scratch:
        grants = _script(tool, path, [e for e in entries if _GRANTS.match(e)], Path(scratch))
        reference = _script(tool, path, [e for e in entries if _SRS_DATA.match(e)], Path(scratch))
    return ArchivePlan(entries=entries, kept=kept, extensions=extensions, grantees=_grantees(grants),
                       srids=_srids(reference))


def _names(items: Iterable[object]) -> str:
    return ", ".join(str(i) for i in items)


def _check_roles(settings: Settings, plan: ArchivePlan, server: psycopg.Connection) -> None:
    if not plan.grantees:
        return
    present = {r[0] for r in server.execute(PRESENT_ROLES, {"names": plan.grantees}).fetchall()}
    missing = [r for r in plan.grantees if r not in present]
    if missing:
        raise OperationError(
            f"the backup grants privileges to role(s) {_names(missing)}, missing on {settings.host}:{settings.port}; "
            "provision the roles first (as an administrator: CREATE ROLE <name> NOLOGIN), then restore again; "
            "nothing was changed")


def _owner(settings: Settings) -> tuple[bool, str]:
    """Whether the restoring role is a superuser, and the database owner the restored objects will belong to;
    refuses a role that may not act as that owner."""
    with connect(settings) as conn:
        superuser, owner, member = conn.execute(TARGET_FACTS).fetchone()
    if not (superuser or member):
        raise OperationError(f"role {settings.user} may not restore into database {settings.name}: its objects must "
                             f"belong to the database's owner {owner}; restore as {owner} (LUMINAR_DB_USER) or as "
                             "a superuser; nothing was changed")
    return superuser, owner


def _provide_extensions(settings: Settings, plan: ArchivePlan, superuser: bool) -> list[str]:
    """Create the archive's extensions missing in the target (a superuser only); the ones created."""
    with connect(settings) as conn:
        present = {r[0] for r in conn.execute(PRESENT_EXTENSIONS, {"names": plan.extensions}).fetchall()}
        missing = [e for e in plan.extensions if e not in present]
        if missing and not superuser:
            raise OperationError(
                f"database {settings.name} lacks extension(s) {_names(missing)} that the backup needs, and only an "
                "administrator may create them; ask one to run CREATE EXTENSION in it (or `luminar-db setup "
                "--admin-url URL`), then restore again; nothing was changed")
        return [e for e in missing if provision.create_extension(conn, e)]


def _check_srids(settings: Settings, plan: ArchivePlan) -> None:
    if not plan.srids:
        return
    with connect(settings) as conn:
        present = {r[0] for r in conn.execute(PRESENT_SRIDS, {"srids": plan.srids}).fetchall()}
    missing = [s for s in plan.srids if s not in present]
    if missing:
        raise OperationError(
            f"the backup holds user-added spatial reference systems (SRID {_names(missing)}) that database "
            f"{settings.name} lacks and only an administrator may add; have one restore them first (pg_restore "
            "--data-only --table=spatial_ref_sys as a superuser), then restore again; nothing was changed")


def _user_tables(settings: Settings) -> int:
    with connect(settings) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                            "AND tablename <> 'spatial_ref_sys'").fetchone()[0]


def _run_restore(settings: Settings, tool: Path, path: Path, plan: ArchivePlan, *, owner: str, clean: bool) -> None:
    log.info("restoring %d of %d archive entries from %s into %s as owner %s (extensions %s and spatial_ref_sys "
             "come from provisioning)", len(plan.kept), len(plan.entries), path, settings.target(), owner,
             _names(plan.extensions) or "none")
    with tempfile.TemporaryDirectory(prefix="luminar-restore-") as scratch:
        listing = Path(scratch) / "toc.list"
        listing.write_text("\n".join(plan.kept) + "\n")
        argv = [str(tool), "--single-transaction", "--exit-on-error", "--no-owner", "--no-password",
                f"--use-list={listing}", f"--dbname={make_conninfo(dbname=settings.name)}"]
        if owner != settings.user:
            argv.append(f"--role={owner}")  # every object is created by, and so belongs to, the owner
        if clean:
            argv += ["--clean", "--if-exists"]
        ran = subprocess.run([*argv, str(path)], env=tool_environment(settings), capture_output=True, text=True,
                             check=False)
    if ran.returncode != 0:
        raise OperationError(f"restore failed, nothing was changed: {tool_reason(ran.stderr, settings.password)}")


def restore_database(settings: Settings, path: Path, *, clean: bool = False,
                     allow_production: bool = False) -> RestoreResult:
    """Restore the archive at ``path`` into the settings' database in one transaction, as described in the module
    text: objects owned by the database's owner, grants kept, extensions and ``spatial_ref_sys`` left to
    provisioning.

    The database is created when missing (a superuser only, since it needs PostGIS; dropped again if the restore
    fails). Into a database that already holds tables, ``clean`` is required: it drops the archive's objects
    first, inside the same transaction.

    Raises ``OperationError`` for production unless ``allow_production``, an unreadable archive, a non-empty
    target without ``clean``, a grantee missing on the server, an extension or SRID missing that the role may not
    add, a role that may not act as the database's owner, or a failed restore (the server's reason; nothing
    changed); ``DatabaseUnavailableError`` when the server cannot be reached.
    """
    if settings.env == "production" and not allow_production:
        raise OperationError("restoring into production is refused without --force (LUMINAR_ENV=production)")
    started = time.perf_counter()
    path = Path(path)
    provision.check_name(settings)
    with maintenance(settings) as server:
        major = server.info.server_version // 10000
        exists = database_exists(server, settings.name)
        superuser = server.execute(IS_SUPERUSER).fetchone()[0]
        tool = find_tool("pg_restore", server_major=major)
        plan = plan_archive(path, tool=tool)
        _check_roles(settings, plan, server)
        if not exists and plan.extensions and not superuser:
            raise OperationError(
                f"database {settings.name} does not exist and the backup needs extension(s) "
                f"{_names(plan.extensions)} that only an administrator may create; provision it first "
                "(`luminar-db setup --admin-url URL`), then restore with --clean; nothing was changed")
        created = provision.create_database(server, settings, None) if not exists else False
    ok = False
    made: list[str] = []
    try:
        if exists and not clean and _user_tables(settings):
            raise OperationError(f"database {settings.name} already holds tables; pass --clean to replace them "
                                 "with the backup's, or restore into an empty database")
        superuser, owner = _owner(settings)
        made = _provide_extensions(settings, plan, superuser)
        _check_srids(settings, plan)
        _run_restore(settings, tool, path, plan, owner=owner, clean=clean)
        ok = True
    finally:
        if created and not ok:
            provision.drop_created_database(settings)
        elif made and not ok:
            with connect(settings) as conn:
                for name in reversed(made):
                    provision.drop_extension(conn, name)
    return RestoreResult(path=path, entries=len(plan.entries), seconds=time.perf_counter() - started,
                         created_database=created, owner=owner, created_extensions=tuple(made))
