"""PgBouncer in front of the central primary: the configuration ``luminar-db bouncer config`` writes.

Every node's pool (production: 50 + 20 connections) times the number of nodes exceeds any server's
``max_connections``. PgBouncer in **transaction pooling** lends one of a few server connections to each transaction
and takes it back at COMMIT, so thousands of node connections share ``default_pool_size`` server sessions. What that
means for this layer (README, "A connection budget: PgBouncer"):

- no prepared statements: the distribution's PgBouncer (1.18) predates ``max_prepared_statements`` (1.21); the
  nodes' pools find the pooler and disable preparing (``LUMINAR_DB_PGBOUNCER``, ``luminar_store.database``);
- startup options are ignored (``ignore_startup_parameters``), so ``jit = off`` is set on each server connection by
  the database entry's ``connect_query``; ``application_name`` and ``TimeZone`` are PgBouncer's tracked parameters;
- transaction-scoped state works (``ON COMMIT DROP`` temporary tables, ``set_config(..., true)``, ``SET LOCAL``);
  session state does not: the migration runner's session advisory lock refuses a pooler, and the owner's commands
  connect around it (``LUMINAR_DB_DIRECT_URL``);
- ``server_reset_query`` is empty: in transaction pooling nothing of a session is left to reset (and ``DISCARD ALL``
  would cost a round trip a transaction).

Authentication is ``scram-sha-256`` against an ``auth_file`` holding the logins' SCRAM secrets, read from
``pg_authid`` by an administrator: PgBouncer then logs in to the server with the client's own SCRAM proof (it never
holds a password). The file is written 0600 and never printed.

Example::

    >>> layout = BouncerLayout(server_host="10.0.0.5", server_port=5432, dbname="luminar_prod")
    >>> with connect(settings, admin_url=admin_url) as admin:
    ...     secrets = read_secrets(admin, ["miner_7", "validator_3"])
    >>> write_config(Path("/etc/pgbouncer"), layout, secrets)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg

from luminar_store.errors import ConfigError

__all__ = ["BouncerLayout", "BouncerFiles", "read_secrets", "render_ini", "render_userlist", "write_config"]

#: Startup parameters clients (ours before they find the pooler, psql's PGOPTIONS) may send that PgBouncer 1.18
#: cannot track: ignored, not refused.
IGNORED_STARTUP_PARAMETERS = ("options", "extra_float_digits")
#: Run on every new server connection: what the nodes' startup option ``-c jit=off`` does on a direct connection.
CONNECT_QUERY = "SET jit = off"

# name: login_secrets
# The stored secrets of the logins named (pg_authid: an administrator's read).
LOGIN_SECRETS = "SELECT rolname, rolpassword, rolcanlogin FROM pg_authid WHERE rolname = ANY(%(logins)s)"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.$-]*$")
_HOST = re.compile(r"^[A-Za-z0-9_.:%/-]+$")
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class BouncerLayout:
    """What the configuration says: where PgBouncer listens, the primary behind it, the pool figures and TLS.

    ``pool_size`` is ``default_pool_size`` (server connections per database and login), ``max_db_connections`` the
    cap over all logins (0: none), ``max_client_conn`` the node connections it accepts. ``server_tls_*`` are the
    primary's TLS (the project's LUMINAR_DB_SSLMODE / LUMINAR_DB_SSLROOTCERT by default); ``client_tls_cert`` and
    ``client_tls_key`` make PgBouncer require TLS of the nodes.
    """

    server_host: str
    server_port: int
    dbname: str
    listen_addr: str = "*"
    listen_port: int = 6432
    pool_size: int = 40
    max_db_connections: int = 0
    max_client_conn: int = 2000
    server_tls_sslmode: str = "prefer"
    server_tls_ca_file: str | None = None
    client_tls_cert: str | None = None
    client_tls_key: str | None = None

    def check(self) -> None:
        """Raise ``ConfigError`` naming the option and the fix for a value PgBouncer would misread."""
        if not _NAME.match(self.dbname):
            raise ConfigError(f"the database name {self.dbname!r:.40} cannot be written into pgbouncer.ini; use "
                              "letters, digits and _ (LUMINAR_DB_NAME)")
        for option, value in (("--server-host", self.server_host), ("--listen-addr", self.listen_addr)):
            if value != "*" and not _HOST.match(value):
                raise ConfigError(f"{option} {value!r:.40} is not a host name or address")
        for option, port in (("--server-port", self.server_port), ("--listen-port", self.listen_port)):
            if not 1 <= port <= 65535:
                raise ConfigError(f"{option} must be between 1 and 65535, got {port}")
        if self.pool_size < 1 or self.max_client_conn < 1 or self.max_db_connections < 0:
            raise ConfigError("--pool-size and --max-client-conn must be at least 1, --max-db-connections at least 0")
        if self.server_tls_sslmode not in _SSL_MODES:
            raise ConfigError(f"--server-tls-sslmode must be one of {', '.join(_SSL_MODES)}")
        if bool(self.client_tls_cert) != bool(self.client_tls_key):
            raise ConfigError("--client-tls-cert and --client-tls-key go together: give both, or neither")
        for option, path in (("--server-tls-ca-file", self.server_tls_ca_file),
                             ("--client-tls-cert", self.client_tls_cert), ("--client-tls-key", self.client_tls_key)):
            if path and not _HOST.match(path):
                raise ConfigError(f"{option}: the path {path!r:.60} holds characters pgbouncer.ini cannot take")


@dataclass(frozen=True)
class BouncerFiles:
    """The files written: ``ini`` (no secret) and ``auth_file`` (0600: the logins' SCRAM secrets)."""

    ini: Path
    auth_file: Path


def read_secrets(admin: psycopg.Connection, logins: Iterable[str]) -> dict[str, str]:
    """The SCRAM secret of each login, read from ``pg_authid`` through ``admin`` (a superuser's connection).

    Raises ``ConfigError`` naming the login and the fix when it does not exist, cannot log in, or has no SCRAM
    secret (an MD5 hash or no password: PgBouncer cannot pass an MD5 login through to the server). Secrets never
    appear in a message.
    """
    wanted = list(dict.fromkeys(logins))
    if not wanted:
        raise ConfigError("name at least one login with --login (the nodes' logins that connect through PgBouncer)")
    try:
        rows = admin.execute(LOGIN_SECRETS, {"logins": wanted}).fetchall()
    except psycopg.errors.InsufficientPrivilege:
        raise ConfigError("reading the logins' secrets needs a superuser: give --admin-url (LUMINAR_DB_ADMIN_URL) "
                          "of one") from None
    found = {name: (secret, can_login) for name, secret, can_login in rows}
    secrets: dict[str, str] = {}
    for login in wanted:
        if login not in found:
            raise ConfigError(f"--login {login}: no such role on the server; create it (luminar-db roles add-node)")
        secret, can_login = found[login]
        if not can_login:
            raise ConfigError(f"--login {login}: the role cannot log in (NOLOGIN); name the nodes' logins")
        if not secret or not secret.startswith("SCRAM-SHA-256$"):
            raise ConfigError(f"--login {login} has no SCRAM password; set one with password_encryption = "
                              "scram-sha-256 (ALTER ROLE ... PASSWORD), then run this again")
        secrets[login] = secret
    return secrets


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def render_userlist(secrets: Mapping[str, str]) -> str:
    """The ``auth_file``: one ``"login" "SCRAM-SHA-256$..."`` line a login."""
    return "".join(f"{_quoted(login)} {_quoted(secret)}\n" for login, secret in sorted(secrets.items()))


def render_ini(layout: BouncerLayout, auth_file: Path) -> str:
    """``pgbouncer.ini`` for ``layout``, reading its logins from ``auth_file``. Raises ``ConfigError`` like
    ``BouncerLayout.check``."""
    layout.check()
    server = (f"host={layout.server_host} port={layout.server_port} dbname={layout.dbname} "
              f"connect_query='{CONNECT_QUERY}'")
    lines = [
        ";; Written by `luminar-db bouncer config`: PgBouncer in transaction pooling in front of the central",
        ";; primary. The logins' SCRAM secrets are in auth_file (0600); run it again to add a login.",
        "[databases]",
        f"{layout.dbname} = {server}",
        "",
        "[pgbouncer]",
        f"listen_addr = {layout.listen_addr}",
        f"listen_port = {layout.listen_port}",
        ";; TCP only: the nodes connect over the network.",
        "unix_socket_dir =",
        "auth_type = scram-sha-256",
        f"auth_file = {auth_file}",
        "pool_mode = transaction",
        ";; Nothing of a session outlives a transaction in transaction pooling: no reset query.",
        "server_reset_query =",
        f"default_pool_size = {layout.pool_size}",
        f"max_db_connections = {layout.max_db_connections}",
        f"max_client_conn = {layout.max_client_conn}",
        f"ignore_startup_parameters = {','.join(IGNORED_STARTUP_PARAMETERS)}",
        f"server_tls_sslmode = {layout.server_tls_sslmode}",
    ]
    if layout.server_tls_ca_file:
        lines.append(f"server_tls_ca_file = {layout.server_tls_ca_file}")
    if layout.client_tls_cert:
        lines += ["client_tls_sslmode = require", f"client_tls_cert_file = {layout.client_tls_cert}",
                  f"client_tls_key_file = {layout.client_tls_key}"]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` with ``mode``, which holds from the first byte (an existing file is narrowed
    first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_config(directory: Path, layout: BouncerLayout, secrets: Mapping[str, str]) -> BouncerFiles:
    """Write ``pgbouncer.ini`` and ``userlist.txt`` (0600) into ``directory`` (created 0700 when missing) and return
    their paths. Raises ``ConfigError`` like ``render_ini``; nothing is written then."""
    directory = directory.resolve()
    files = BouncerFiles(ini=directory / "pgbouncer.ini", auth_file=directory / "userlist.txt")
    ini = render_ini(layout, files.auth_file)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(files.auth_file, render_userlist(secrets), 0o600)
    _write_private(files.ini, ini, 0o600)
    return files
