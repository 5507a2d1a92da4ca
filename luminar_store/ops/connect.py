"""The operator side's one door to the server: every command opens its connections here.

``connect`` owns the only "cannot reach" message of the project's commands: it names host, port, database and
environment, the server's reason (never the password) and the fix for that environment. A server that answers but
has no such database raises ``DatabaseMissingError``, decided by asking the server's catalogue, never by reading an
error text. ``maintenance`` opens the server's ``postgres`` database (``template1`` when that one is gone) for
creating and dropping; with an administrator's connection string (``--admin-url``) it connects as that role.

Example::

    >>> with connect(load_settings("local")) as conn:
    ...     conn.execute("SELECT 1").fetchone()
    (1,)
"""

from __future__ import annotations

import time

import psycopg
from psycopg.conninfo import conninfo_to_dict

from luminar_store.config import Settings
from luminar_store.errors import ConfigError, DatabaseMissingError, DatabaseUnavailableError
from luminar_store.ops.refusals import tls_refusal

__all__ = ["MAINTENANCE_DATABASES", "connect", "maintenance", "database_exists", "server_info", "start_hint",
           "unreachable"]

#: Databases every server has, tried in this order for creating and dropping others.
MAINTENANCE_DATABASES = ("postgres", "template1")


def start_hint(settings: Settings) -> str:
    """What to do when the settings' server does not answer, for their environment."""
    if settings.env == "testing":
        return "is it running? start it with `make db-test-setup`"
    if settings.rules.runs_here:
        return ("is it running? start it with `make db-start` (the role and password are LUMINAR_DB_USER and "
                "LUMINAR_DB_PASSWORD)")
    return "check LUMINAR_DB_HOST / LUMINAR_DB_PORT (or DATABASE_URL), the network and the credentials"


def _reason(exc: Exception, secret: str | None) -> str:
    """The server's (or libpq's) reason in one line (its first: it names the address and what happened), without
    the password."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    reason = " ".join(lines[0].split()).removeprefix("connection failed: ")
    return reason.replace(secret, "***") if secret else reason


def _open(params: dict[str, object], autocommit: bool) -> psycopg.Connection:
    return psycopg.connect(**params, autocommit=autocommit)  # type: ignore[arg-type]


def _admin_params(admin_url: str, dbname: str) -> dict[str, object]:
    try:
        params: dict[str, object] = dict(conninfo_to_dict(admin_url))
    except psycopg.ProgrammingError:
        raise ConfigError("--admin-url is not a valid connection string; use "
                          "postgresql://ADMIN:PASSWORD@HOST:PORT/postgres") from None
    params["dbname"] = dbname
    params.setdefault("application_name", "luminar_store")
    return params


def database_exists(conn: psycopg.Connection, name: str) -> bool:
    """True when database ``name`` exists on the server of ``conn``."""
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}).fetchone() is not None


def unreachable(settings: Settings, exc: Exception, *, dbname: str | None = None, where: str | None = None,
                waited: float = 0, as_admin: bool = False, secret: str | None = None) -> DatabaseUnavailableError:
    """The one "cannot reach" error, for the commands and the nodes' pools alike: where (host, port, database and
    environment, or ``where`` for a replica), how long it waited, the server's reason without the password
    (``secret``, default the settings' password) and the fix for the environment. A refusal over TLS, a client
    certificate or the server's address allow-list names that cause and its fix instead
    (``luminar_store.ops.refusals``)."""
    who = " as administrator" if as_admin else ""
    where = where or (f"host {settings.host}, port {settings.port}, database {dbname or settings.name}, "
                      f"environment {settings.env}")
    cause = None if as_admin else tls_refusal(exc, settings)
    if cause is not None:  # the server answered and refused over TLS, a certificate or its allow-list: say which
        return DatabaseUnavailableError(f"{cause} ({where})")
    after = f" after waiting {waited:g} s" if waited else ""
    hint = "check --admin-url" if as_admin else start_hint(settings)
    reason = _reason(exc, secret if secret is not None else settings.password or None)
    return DatabaseUnavailableError(f"cannot reach the database{who} ({where}){after}: {reason}; {hint}")


def connect(settings: Settings, *, dbname: str | None = None, autocommit: bool = True,
            admin_url: str | None = None, retry_for: float = 0) -> psycopg.Connection:
    """A connection to ``dbname`` (default: the settings' database), as the settings' role, or as the role of
    ``admin_url`` when given; ``retry_for`` seconds of retrying while the server does not answer (one starting).

    Raises ``DatabaseMissingError`` when the server answers but has no such database, and
    ``DatabaseUnavailableError`` (host, port, database, environment, the reason, the fix) when the server cannot be
    reached or refuses the login. The password is never part of a message.
    """
    name = dbname or settings.name
    if admin_url:
        params = _admin_params(admin_url, name)
        secret = str(params.get("password") or "") or None
    else:
        params = settings.connect_kwargs(dbname=name)
        secret = settings.password or None
    deadline = time.monotonic() + max(retry_for, 0)
    while True:
        try:
            return _open(params, autocommit)
        except psycopg.OperationalError as exc:
            failure = exc
        if name not in MAINTENANCE_DATABASES and _missing_on_server(params, name):
            raise DatabaseMissingError(
                f"database {name} does not exist on {settings.host}:{settings.port} (environment {settings.env}); "
                f"create it with `luminar-db setup --env {settings.env}`")
        left = deadline - time.monotonic()
        if left <= 0:
            raise unreachable(settings, failure, dbname=name, secret=secret or "", as_admin=bool(admin_url),
                              waited=retry_for)
        time.sleep(min(0.5, left))  # the server is starting: ask again


def _missing_on_server(params: dict[str, object], name: str) -> bool:
    """True when a maintenance database of the same server answers and lists no database ``name``."""
    for other in MAINTENANCE_DATABASES:
        try:
            with _open({**params, "dbname": other}, True) as conn:
                return not database_exists(conn, name)
        except psycopg.OperationalError:
            continue
    return False


def maintenance(settings: Settings, *, admin_url: str | None = None) -> psycopg.Connection:
    """A session on the server's ``postgres`` database, else ``template1``, for creating and dropping databases.

    Raises ``DatabaseUnavailableError`` when neither answers.
    """
    first: DatabaseUnavailableError | None = None
    for dbname in MAINTENANCE_DATABASES:
        try:
            return connect(settings, dbname=dbname, admin_url=admin_url)
        except DatabaseUnavailableError as exc:
            first = first or exc
    assert first is not None
    raise first


def server_info(settings: Settings) -> dict[str, str | None]:
    """Versions of the settings' server: ``postgresql`` and ``postgis`` (None when not installed in the database).

    Raises ``DatabaseUnavailableError`` / ``DatabaseMissingError`` as ``connect`` does.
    """
    with connect(settings) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
    return {"postgresql": version.split()[0], "postgis": row[0] if row else None}

