"""Creating, dropping and rebuilding the database of a settings environment.

``setup_database`` makes what is missing (the role, when an administrator connection is given; the database; the
PostGIS extension) and applies the migrations; ``reset_database`` drops the database and does the same from
nothing. Identifiers reach SQL only through ``psycopg.sql.Identifier``. A role's password is sent as a SCRAM-SHA-256
verifier computed here, so the clear text never appears in a statement (nor in a server log).

Example::

    >>> settings = load_settings("local")
    >>> setup_database(settings).created_database
    True
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
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from luminar_store.config import Settings
from luminar_store.errors import ConfigError, DatabaseUnavailableError, OperationError

__all__ = [
    "SYSTEM_DATABASES",
    "SetupResult",
    "connect",
    "scram_verifier",
    "ensure_role",
    "database_exists",
    "create_database",
    "setup_database",
    "drop_database",
    "reset_database",
]

SYSTEM_DATABASES = ("postgres", "template0", "template1")
_SCRAM_ITERATIONS = 4096


@dataclass
class SetupResult:
    """What ``setup_database`` did: created the role / database / PostGIS, and which migrations it applied."""

    created_role: bool = False
    created_database: bool = False
    created_postgis: bool = False
    applied: list[str] = field(default_factory=list)


def _reason(exc: Exception, secret: str | None) -> str:
    reason = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[-1].split())
    reason = reason.removeprefix("connection failed: ")
    return reason.replace(secret, "***") if secret else reason


def connect(settings: Settings, *, dbname: str | None = None, autocommit: bool = True) -> psycopg.Connection:
    """A connection to ``dbname`` (default: the settings' database). Raises ``DatabaseUnavailableError`` naming
    host, port and database (never the password) when the server cannot be reached or refuses the login."""
    try:
        return psycopg.connect(**settings.connect_kwargs(dbname=dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        where = f"host {settings.host}, port {settings.port}, database {dbname or settings.name}"
        raise DatabaseUnavailableError(f"cannot reach the database ({where}): {_reason(exc, settings.password)}; "
                                       "is it running? start it with `make db-start`") from None


def _connect_admin(admin_conninfo: str, dbname: str) -> psycopg.Connection:
    try:
        params = conninfo_to_dict(admin_conninfo)
    except psycopg.ProgrammingError:
        raise ConfigError("--admin-url is not a valid connection string; use "
                          "postgresql://ADMIN:PASSWORD@HOST:PORT/postgres") from None
    try:
        return psycopg.connect(make_conninfo(admin_conninfo, dbname=dbname), autocommit=True)
    except psycopg.OperationalError as exc:
        where = f"host {params.get('host', 'localhost')}, port {params.get('port', '5432')}, database {dbname}"
        raise DatabaseUnavailableError(f"cannot reach the database as administrator ({where}): "
                                       f"{_reason(exc, params.get('password'))}; check --admin-url") from None


def _maintenance(settings: Settings, admin_conninfo: str | None) -> psycopg.Connection:
    """A session on the server's ``postgres`` database (``template1`` when that one is gone)."""
    last: DatabaseUnavailableError | None = None
    for dbname in ("postgres", "template1"):
        try:
            if admin_conninfo:
                return _connect_admin(admin_conninfo, dbname)
            return connect(settings, dbname=dbname)
        except DatabaseUnavailableError as exc:
            last = exc
            if "does not exist" not in str(exc):
                raise
    assert last is not None
    raise last


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
    if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
        return False
    # CREATE ROLE takes no bound parameters: the verifier goes in as a quoted literal, the name as an identifier.
    statement = sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(scram_verifier(password)) if password else sql.SQL("NULL"))
    admin.execute(statement)
    return True


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    """True when database ``name`` exists on the server of ``conn``."""
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _check_name(settings: Settings) -> None:
    if settings.name in SYSTEM_DATABASES:
        raise OperationError(f"LUMINAR_DB_NAME={settings.name} is a system database; name the Luminar database, "
                             "e.g. LUMINAR_DB_NAME=luminar_local")


def create_database(maintenance: psycopg.Connection, settings: Settings, owner: str | None = None) -> bool:
    """Create the settings' database through ``maintenance`` (owned by ``owner`` when given) when missing; True
    when created. Raises ``OperationError`` when the role may not create databases."""
    if database_exists(maintenance, settings.name):
        return False
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.name))
    if owner:
        statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
    try:
        maintenance.execute(statement)
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
        raise OperationError("PostGIS is not installed on the database server; install postgresql-15-postgis-3 "
                             "(make dev-setup) or use the postgis/postgis image") from None
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError("creating the PostGIS extension needs a superuser; pass --admin-url, or ask an "
                             "administrator to run CREATE EXTENSION postgis in the database") from None
    return True


def setup_database(settings: Settings, *, admin_conninfo: str | None = None, migrations_dir: Path | None = None,
                   out: Callable[[str], object] | None = None) -> SetupResult:
    """Create what is missing for ``settings`` and apply the migrations; idempotent.

    With ``admin_conninfo`` (a superuser's connection string) the role of the settings is created when missing
    and owns the new database, and PostGIS is created as the administrator. Raises ``DatabaseUnavailableError``,
    ``OperationError`` (no right to create, PostGIS missing) or ``MigrationError``.
    """
    from luminar_store.migrator import migrate_database, migrations_directory

    _check_name(settings)
    result = SetupResult()
    with _maintenance(settings, admin_conninfo) as maintenance:
        if admin_conninfo:
            result.created_role = ensure_role(maintenance, settings.user, settings.password)
        result.created_database = create_database(maintenance, settings,
                                                   settings.user if admin_conninfo else None)
    if admin_conninfo:
        with _connect_admin(admin_conninfo, settings.name) as conn:
            result.created_postgis = _create_postgis(conn)
    else:
        with connect(settings) as conn:
            result.created_postgis = _create_postgis(conn)
    applied = migrate_database(settings.conninfo(), migrations_directory(migrations_dir), environment=settings.env,
                               out=out)
    result.applied = [m.label for m in applied]
    return result


def drop_database(settings: Settings) -> bool:
    """Drop the settings' database, ending its sessions. Refused for production and the system databases.
    Returns True when a database was dropped."""
    if settings.env == "production":
        raise OperationError("dropping the production database is refused (LUMINAR_ENV=production)")
    _check_name(settings)
    with connect(settings, dbname="postgres") as conn:
        existed = database_exists(conn, settings.name)
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings.name)))
        except psycopg.errors.InsufficientPrivilege:
            raise OperationError(f"role {settings.user} may not drop database {settings.name}; it must own it "
                                 "or be a superuser") from None
    return existed


def reset_database(settings: Settings, *, migrations_dir: Path | None = None,
                   out: Callable[[str], object] | None = None) -> SetupResult:
    """Drop the settings' database and build it again: create, PostGIS, every migration. Refused (``OperationError``)
    in production. The server is checked to be reachable before anything is dropped."""
    if settings.env == "production":
        raise OperationError("reset destroys every row and is refused for LUMINAR_ENV=production")
    _check_name(settings)
    with connect(settings, dbname="postgres"):
        pass  # reachable and the login works: only then drop
    drop_database(settings)
    return setup_database(settings, migrations_dir=migrations_dir, out=out)
