"""Creating, dropping and rebuilding a database: the one module that does it (``setup``, ``reset``, ``db start``,
``db reset`` and ``restore`` all come here).

``setup_database`` makes what is missing (the role, when an administrator connection is given; the database; the
PostGIS extension) and applies the migrations. Resetting is two steps so that a command can ask in between:
``plan_reset`` checks every precondition and changes nothing (the environment allows it, the migrations are found
and parse, the server answers, the role may drop and create the database and PostGIS will be there again), and
returns the plan naming the exact target and what it holds; ``carry_out_reset`` drops and rebuilds. Identifiers reach
SQL only through ``psycopg.sql.Identifier``. A role's password is sent as a SCRAM-SHA-256 verifier computed here, so
the clear text never appears in a statement (nor in a server log).

Example::

    >>> plan = plan_reset(load_settings("testing"))
    >>> plan.target
    'database luminar_test on localhost:5433 (environment testing)'
    >>> carry_out_reset(plan).applied
    ['20250101000000_initial_schema', ...]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from luminar_store.config import ENVIRONMENTS, Settings, environment
from luminar_store.errors import DatabaseMissingError, OperationError
from luminar_store.ops.connect import connect, database_exists, maintenance

__all__ = [
    "SYSTEM_DATABASES",
    "SetupResult",
    "ResetPlan",
    "scram_verifier",
    "ensure_role",
    "check_name",
    "check_resettable",
    "create_database",
    "ensure_database",
    "create_extension",
    "drop_extension",
    "setup_database",
    "provision_local",
    "name_local_nodes",
    "drop_database",
    "drop_created_database",
    "plan_reset",
    "carry_out_reset",
    "table_counts",
]

SYSTEM_DATABASES = ("postgres", "template0", "template1")
_SCRAM_ITERATIONS = 4096
Out = Callable[[str], object] | None

# The role's rights on the server and on the target database (NULL when the database is missing).
ROLE_RIGHTS = """
SELECT r.rolsuper, r.rolcreatedb,
       (SELECT pg_has_role(current_user, d.datdba, 'MEMBER') FROM pg_database d WHERE d.datname = %(name)s),
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'postgis')
  FROM pg_roles r WHERE r.rolname = current_user
"""
# The project's main tables, counted to name what a destructive command is about to destroy.
MAIN_TABLES = ("raw_incident_reports", "crime_events", "consensus_records", "miner_performance",
               "validator_performance")
PRESENT_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY(%(names)s)
"""


@dataclass
class SetupResult:
    """What ``setup_database`` / ``carry_out_reset`` did: created the role / database / PostGIS, applied which
    migrations."""

    created_role: bool = False
    created_groups: list[str] = field(default_factory=list)
    #: The nodes' login is the server's superuser (a local cluster made before the split): not least privilege.
    nodes_superuser: bool = False
    created_database: bool = False
    created_postgis: bool = False
    applied: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ResetPlan:
    """A reset whose preconditions all hold: the exact target, what it holds now, the migrations to apply."""

    settings: Settings
    migrations_dir: Path
    migrations: int
    exists: bool
    rows: dict[str, int]
    #: The server's administrator (a database run on this machine), who creates the database and PostGIS again.
    admin_url: str | None = field(default=None, repr=False)
    #: The nodes' settings of a split database run on this machine (their login is named again).
    nodes: Settings | None = field(default=None, repr=False)

    @property
    def target(self) -> str:
        return self.settings.target()

    def describe_loss(self) -> str:
        """``500 raw_incident_reports, 120 crime_events``, or that the target holds none or does not exist."""
        if not self.exists:
            return "the database does not exist yet"
        held = [f"{n:,} {table}" for table, n in self.rows.items() if n > 0]
        return ", ".join(held) if held else "no rows in the main tables"


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677), as ``CREATE ROLE ...
    PASSWORD`` accepts it: the server learns the verifier, never the password."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def ensure_role(admin: psycopg.Connection, role: str, password: str) -> bool:
    """Create login role ``role`` with ``password`` through an administrator session, when it is missing.

    An existing role is left as it is (its password is not changed). Returns True when the role was created.
    """
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %(role)s", {"role": role}).fetchone():
        return False
    # CREATE ROLE takes no bound parameters: the verifier goes in as a quoted literal, the name as an identifier.
    statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(scram_verifier(password)) if password else sql.SQL("NULL"))
    admin.execute(statement)
    return True


def check_name(settings: Settings) -> None:
    """Refuse (``OperationError``) a settings' database that is one of the server's own."""
    if settings.name in SYSTEM_DATABASES:
        raise OperationError(f"LUMINAR_DB_NAME={settings.name} is a system database; name the Luminar database, "
                             "e.g. LUMINAR_DB_NAME=luminar_local")


def check_resettable(settings: Settings, what: str) -> None:
    """Refuse (``OperationError``) a command that drops the whole database outside the environments that allow it
    (``luminar_store.config.environments``)."""
    if not settings.rules.resettable:
        allowed = ", ".join(e for e in ENVIRONMENTS if environment(e).resettable)
        raise OperationError(f"{what} drops the whole database and runs only for LUMINAR_ENV={allowed}; "
                             f"{settings.target()} is not touched")
    check_name(settings)


def create_database(server: psycopg.Connection, settings: Settings, owner: str | None = None) -> bool:
    """Create the settings' database through ``server`` (a maintenance session; owned by ``owner`` when given) when
    missing; True when created. Raises ``OperationError`` when the role may not create databases."""
    if database_exists(server, settings.name):
        return False
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
    try:
        server.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError(f"role {settings.user} may not create database {settings.name}; create it as an "
                             "administrator, or pass --admin-url with a superuser's connection") from None
    except psycopg.errors.DuplicateDatabase:
        return False  # made by another run a moment ago
    return True


def _create_postgis(conn: psycopg.Connection) -> bool:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
        return False
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except psycopg.errors.UndefinedFile:
        raise OperationError("PostGIS is not installed on the database server; install postgresql-<major>-postgis-3 "
                             "(make dev-setup) or use the postgis/postgis image") from None
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError("creating the PostGIS extension needs a superuser; pass --admin-url, or ask an "
                             "administrator to run CREATE EXTENSION postgis in the database") from None
    return True


def create_extension(admin: psycopg.Connection, name: str) -> bool:
    """Create extension ``name`` in the database of ``admin`` (a superuser's session) when missing; True when
    created. Raises ``OperationError`` when the server lacks it or the session may not create it."""
    if admin.execute("SELECT 1 FROM pg_extension WHERE extname = %(name)s", {"name": name}).fetchone():
        return False
    try:
        admin.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
    except psycopg.errors.UndefinedFile:
        raise OperationError(f"extension {name} is not installed on the database server; install it (PostGIS: "
                             "postgresql-<major>-postgis-3, make dev-setup)") from None
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError(f"creating extension {name} needs a superuser; ask an administrator to run CREATE "
                             f"EXTENSION {name} in the database") from None
    return True


def drop_extension(admin: psycopg.Connection, name: str) -> None:
    """Drop extension ``name`` that this very command created a moment ago (what used it was rolled back)."""
    admin.execute(sql.SQL("DROP EXTENSION IF EXISTS {}").format(sql.Identifier(name)))


def ensure_database(settings: Settings, *, admin_url: str | None = None) -> tuple[bool, bool]:
    """Create the settings' database and PostGIS in it, when missing: (created database, created PostGIS).

    With ``admin_url`` the administrator creates both, and the new database belongs to the settings' role.
    Raises ``DatabaseUnavailableError`` and ``OperationError`` (no right to create, PostGIS missing).
    """
    check_name(settings)
    with maintenance(settings, admin_url=admin_url) as server:
        created = create_database(server, settings, settings.user if admin_url else None)
    with connect(settings, admin_url=admin_url) as conn:
        return created, _create_postgis(conn)


def provision_local(settings: Settings, admin_url: str) -> SetupResult:
    """Provision a database run on this machine (``db start``) through its superuser's ``admin_url``: the owner
    and the nodes' login (``settings`` as loaded: the nodes' login, with its owner), the group roles, the nodes'
    login in the ingest, miner and validator groups, the database owned by the owner, PostGIS. Idempotent.

    A cluster whose superuser is the nodes' login itself (made before the split) keeps working: the owner becomes
    a member of that login's role, so that it may migrate the tables that login owns. Raises
    ``DatabaseUnavailableError`` and ``OperationError`` as ``setup_database``.
    """
    from luminar_store.ops.roles import NODE_KINDS, provision_roles  # roles builds on this module

    check_name(settings)
    owner = settings.as_owner()
    result = SetupResult()
    with maintenance(settings, admin_url=admin_url) as server:
        result.created_role = ensure_role(server, owner.user, owner.password)
        if owner.user != settings.user:
            ensure_role(server, settings.user, settings.password)
        result.created_groups = provision_roles(server)
        if owner.user != settings.user:
            superuser = server.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %(login)s",
                                       {"login": settings.user}).fetchone()[0]
            result.nodes_superuser = bool(superuser)
            groups = [settings.user] if superuser else list(NODE_KINDS.values())
            for group in groups:
                server.execute(sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(group), sql.Identifier(owner.user if superuser else settings.user)))
    result.created_database, result.created_postgis = ensure_database(owner, admin_url=admin_url)
    return result


def _migrations(directory: Path | None) -> tuple[Path, int]:
    """The migrations directory and how many files it holds; raises ``MigrationError`` when missing or unusable,
    ``OperationError`` when it holds none."""
    from luminar_store.migrator import discover_migrations, migrations_directory

    directory = migrations_directory(directory)
    found = discover_migrations(directory)
    if not found:
        raise OperationError(f"no migration files in {directory}; nothing could rebuild the schema")
    return directory, len(found)


def _migrate(settings: Settings, directory: Path, out: Out) -> list[str]:
    from luminar_store.migrator import migrate_database

    return [m.label for m in migrate_database(settings, directory, out=out)]


def setup_database(settings: Settings, *, admin_conninfo: str | None = None, migrations_dir: Path | None = None,
                   out: Out = None, nodes: Settings | None = None) -> SetupResult:
    """Create what is missing for ``settings`` and apply the migrations; idempotent.

    With ``admin_conninfo`` (a superuser's connection string) the role of the settings is created when missing
    and owns the new database, the group roles of ``luminar_store.ops.roles`` are created when missing, and PostGIS
    is created as the administrator. The migrations are found before
    anything is created. Raises ``DatabaseUnavailableError``, ``OperationError`` (no right to create, PostGIS
    missing) or ``MigrationError``. ``nodes``: the nodes' settings of a split database run on this machine, whose
    login is then named in ``node_identities`` for every uid of its kinds (``roles.name_local_node``).
    """
    check_name(settings)
    directory, _ = _migrations(migrations_dir)
    result = SetupResult()
    if admin_conninfo:
        from luminar_store.ops.roles import provision_roles  # roles builds on this module

        with maintenance(settings, admin_url=admin_conninfo) as server:
            result.created_role = ensure_role(server, settings.user, settings.password)
            result.created_groups = provision_roles(server)
    result.created_database, result.created_postgis = ensure_database(settings, admin_url=admin_conninfo)
    result.applied = _migrate(settings, directory, out)
    name_local_nodes(settings, nodes)
    return result


def name_local_nodes(settings: Settings, nodes: Settings | None) -> None:
    """Name the nodes' login of a split database run on this machine in ``node_identities`` (as its owner)."""
    if nodes is not None and nodes.owner and nodes.rules.runs_here:
        from luminar_store.ops.roles import name_local_node

        with connect(settings) as conn:
            if conn.execute("SELECT to_regclass('node_identities')").fetchone()[0] is not None:
                name_local_node(conn, nodes.user)  # (a database restored from an older backup has none yet)


def drop_database(settings: Settings) -> bool:
    """Drop the settings' database, ending its sessions. Refused in the environments that may not be reset.
    True when a database was dropped."""
    check_resettable(settings, "dropping a database")
    return _drop(settings)


def drop_created_database(settings: Settings) -> bool:
    """Drop the database that this very command created a moment ago (a restore into it failed): in any
    environment, since nothing but the failed restore ever held data there."""
    check_name(settings)
    return _drop(settings)


def _drop(settings: Settings) -> bool:
    with maintenance(settings) as server:
        existed = database_exists(server, settings.name)
        try:
            server.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings.name)))
        except psycopg.errors.InsufficientPrivilege:
            raise OperationError(f"role {settings.user} may not drop database {settings.name}; it must own it "
                                 "or be a superuser") from None
    return existed


def table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of the main tables that exist in the database of ``conn``, in ``MAIN_TABLES`` order."""
    present = {row[0] for row in conn.execute(PRESENT_TABLES, {"names": list(MAIN_TABLES)}).fetchall()}
    count = sql.SQL("SELECT count(*) FROM {}")
    return {table: conn.execute(count.format(sql.Identifier(table))).fetchone()[0]
            for table in MAIN_TABLES if table in present}


def plan_reset(settings: Settings, *, migrations_dir: Path | None = None, what: str = "reset",
               admin_url: str | None = None, nodes: Settings | None = None) -> ResetPlan:
    """Check every precondition of a reset and change nothing. ``admin_url``: the server's administrator, who
    then creates the database (owned by the settings' role) and PostGIS again; ``nodes`` as for
    ``setup_database``.

    Raises ``OperationError`` (environment not resettable, a system database, no migration files, the role may
    not drop or create the database or will not get PostGIS back), ``MigrationError`` (migrations missing or
    unreadable), ``DatabaseUnavailableError`` (server unreachable).
    """
    check_resettable(settings, what)
    directory, count = _migrations(migrations_dir)
    with maintenance(settings, admin_url=admin_url) as server:
        superuser, createdb, owner, postgis = server.execute(ROLE_RIGHTS, {"name": settings.name}).fetchone()
        exists = owner is not None
    who = "the administrator (--admin-url)" if admin_url else f"role {settings.user}"
    if exists and not (superuser or owner):
        raise OperationError(f"{who} may not drop database {settings.name} (it must own it or be a superuser); "
                             "nothing was dropped")
    if not (superuser or createdb):
        raise OperationError(f"{who} may not create databases, so {settings.name} could not be made again; "
                             "nothing was dropped")
    if not postgis:
        raise OperationError("PostGIS is not installed on the database server, so the rebuilt database would "
                             "lack it; install postgresql-<major>-postgis-3 (make dev-setup); nothing was dropped")
    if not superuser:
        raise OperationError(f"{who} is not a superuser and could not create PostGIS in the rebuilt database; run "
                             "the reset as the server's administrator; nothing was dropped")
    rows: dict[str, int] = {}
    if exists:
        try:
            with connect(settings) as conn:
                rows = table_counts(conn)
        except DatabaseMissingError:
            exists = False
    return ResetPlan(settings=settings, migrations_dir=directory, migrations=count, exists=exists, rows=rows,
                     admin_url=admin_url, nodes=nodes)


def carry_out_reset(plan: ResetPlan, *, out: Out = None) -> SetupResult:
    """Drop the planned database and build it again: create, PostGIS, every migration.

    Raises ``DatabaseUnavailableError``, ``OperationError`` or ``MigrationError`` when a step fails (the
    preconditions were checked by ``plan_reset``).
    """
    settings = plan.settings
    drop_database(settings)
    result = SetupResult()
    result.created_database, result.created_postgis = ensure_database(settings, admin_url=plan.admin_url)
    result.applied = _migrate(settings, plan.migrations_dir, out)
    name_local_nodes(settings, plan.nodes)
    return result
