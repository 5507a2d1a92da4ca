"""Test harness: a real PostgreSQL + PostGIS started by pytest-postgresql for the whole session.

The schema is migrated once, by our own runner, into a template database; each test that asks for
``db_settings`` gets a fresh copy (``CREATE DATABASE ... TEMPLATE``), so tests are fast and isolated.
Under root the server runs as an unprivileged user through ``tests/support/pg_ctl``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories
from pytest_postgresql.janitor import DatabaseJanitor

from luminar_store.config import Settings, load_settings
from luminar_store.errors import OperationError
from luminar_store.migrator import DEFAULT_DIR
from luminar_store.ops.cluster import find_bindir

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = DEFAULT_DIR
try:
    os.environ.setdefault("LUMINAR_PG_BINDIR", str(find_bindir()))
except OperationError:
    pass  # tests that need no server still run; those that ask for one fail, naming `make dev-setup`
# Tests must never pick up a developer's .env or shell settings by accident.
for _name in [n for n in os.environ if n.startswith("LUMINAR_DB_") or n in ("DATABASE_URL", "DB_POOL_SIZE")]:
    del os.environ[_name]


def _load_schema(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    from luminar_store.migrator import migrate_database

    migrate_database(make_conninfo(host=host, port=port, user=user, dbname=dbname, password=password or None),
                     MIGRATIONS)


postgresql_proc = factories.postgresql_proc(
    executable=str(ROOT / "tests" / "support" / "pg_ctl"),
    dbname="luminar_test",
    load=[_load_schema],
    postgres_options="-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
)


@dataclass(frozen=True)
class Server:
    """The session's PostgreSQL server: where it listens and how to make databases on it."""

    host: str
    port: int
    user: str
    password: str | None
    template: str
    version: object

    def conninfo(self, dbname: str) -> str:
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname,
                             password=self.password or None)

    def settings(self, dbname: str, **extra: str) -> Settings:
        environ = {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": self.host, "LUMINAR_DB_PORT": str(self.port),
                   "LUMINAR_DB_NAME": dbname, "LUMINAR_DB_USER": self.user,
                   "LUMINAR_DB_PASSWORD": self.password or ""}
        environ.update(extra)
        return load_settings("testing", environ=environ)

    def janitor(self, dbname: str, *, template: str | None) -> DatabaseJanitor:
        return DatabaseJanitor(user=self.user, host=self.host, port=self.port, dbname=dbname,
                               template_dbname=template, password=self.password)


@pytest.fixture(scope="session")
def pg_server(postgresql_proc) -> Server:
    return Server(host=postgresql_proc.host, port=postgresql_proc.port, user=postgresql_proc.user,
                  password=postgresql_proc.password, template=postgresql_proc.template_dbname,
                  version=postgresql_proc.version)


@pytest.fixture
def db_settings(pg_server: Server) -> Iterator[Settings]:
    """Settings (env ``testing``) pointing at a fresh copy of the migrated template database."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with pg_server.janitor(name, template=pg_server.template):
        yield pg_server.settings(name)


@pytest.fixture
def node_login(pg_server: Server, db_settings: Settings):
    """``node_login(group, kind=None, uid=None)``: a new login role (password, member of group role ``group``, e.g.
    ``luminar_miner``), named in ``node_identities`` as ``kind`` with ``uid`` when ``kind`` is given (``uid`` None:
    every uid of that kind); returns Settings for ``db_settings``' database as that login. Roles are the
    cluster's: each is dropped at the end of the test."""
    made: list[str] = []

    def make(group: str, kind: str | None = None, uid: int | None = None) -> Settings:
        login, password = f"node_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
        with psycopg.connect(db_settings.conninfo(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(login), sql.Literal(password), sql.Identifier(group)))
            made.append(login)
            if kind is not None:
                admin.execute("INSERT INTO node_identities (login, kind, uid) VALUES (%s, %s, %s)",
                              (login, kind, uid))
        return pg_server.settings(db_settings.name, LUMINAR_DB_USER=login, LUMINAR_DB_PASSWORD=password)

    yield make
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        for login in made:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


@pytest.fixture
def db_conninfo(db_settings: Settings) -> str:
    return db_settings.conninfo()


@pytest.fixture
def conn(db_conninfo: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a fresh migrated database."""
    with psycopg.connect(db_conninfo, autocommit=True) as connection:
        yield connection


@pytest.fixture
def empty_db(pg_server: Server) -> Iterator[Settings]:
    """Settings pointing at a fresh, empty database (no schema, no migrations) on the session's server."""
    name = f"e_{uuid.uuid4().hex[:12]}"
    with pg_server.janitor(name, template=None):
        yield pg_server.settings(name)


@pytest.fixture
def cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``cli_run(args, env)``: invoke ``luminar-db`` in-process from an empty directory (so no developer .env is
    read), with ``env`` added to the environment; stdin is not a terminal, as in CI."""
    from luminar_store.cli import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(args: list[str], env: dict[str, str | None] | None = None, input: str | None = None):
        return runner.invoke(cli, args, env=env, input=input, catch_exceptions=False)

    return invoke


def pytest_unconfigure(config: pytest.Config) -> None:
    # pytest-postgresql's executor cleans up in __del__; run it now, while psutil is still importable, rather than
    # at interpreter shutdown where it prints a spurious traceback after the test summary.
    import gc

    gc.collect()
