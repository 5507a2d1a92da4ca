"""The layer through a real PgBouncer (the distribution's, installed by ``make dev-setup``) in transaction pooling.

One PgBouncer for the module, configured by ``luminar-db bouncer config`` itself (so starting it validates the
written configuration), in front of a copy of the migrated template database, run as the unprivileged service user
under root (PgBouncer refuses root), on a free port, stopped at the end. The nodes' logins (an app, a miner, a
validator) reach it with SCRAM; its server pool is small, so successive transactions meet several server sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from _async import run, with_facade
from _nodes import event, report
from click.testing import CliRunner
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.database import Database
from luminar_store.errors import MigrationError
from luminar_store.migrator import DEFAULT_DIR, Migrator
from luminar_store.ops.cluster import is_root, service_user

MINER, VALIDATOR = 11, 21
KINDS = {"app": ("luminar_ingest", None, None), "miner": ("luminar_miner", "miner", MINER),
         "validator": ("luminar_validator", "validator", VALIDATOR)}
POOL_SIZE = 3  # server connections per login: few, so that transactions move between server sessions


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else "")
    if not found:
        pytest.fail("pgbouncer is not installed; run make dev-setup (it installs the distribution's pgbouncer)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Bouncer:
    port: int
    dbname: str
    directory: Path
    passwords: dict[str, str]  # kind -> password of that kind's login
    logins: dict[str, str]  # kind -> login
    server: object  # conftest.Server

    def settings(self, kind: str, **extra: str) -> Settings:
        """A node's settings through PgBouncer."""
        return self.server.settings(self.dbname, LUMINAR_DB_HOST="127.0.0.1", LUMINAR_DB_PORT=str(self.port),
                                    LUMINAR_DB_USER=self.logins[kind], LUMINAR_DB_PASSWORD=self.passwords[kind],
                                    **extra)

    def conninfo(self, kind: str) -> str:
        return psycopg.conninfo.make_conninfo(host="127.0.0.1", port=self.port, dbname=self.dbname,
                                              user=self.logins[kind], password=self.passwords[kind])


def _give_to(path: Path, user: str) -> None:
    """Let ``user`` (PgBouncer's) read its directory: own it, and pass through the parents (pytest makes them
    0700)."""
    entry = pwd.getpwnam(user)
    for item in [path, *path.iterdir()]:
        os.chown(item, entry.pw_uid, entry.pw_gid)
    for parent in path.parents:
        if parent != Path("/"):
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IXOTH)


def _wait_ready(bouncer: Bouncer, process: subprocess.Popen, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"pgbouncer exited with {process.returncode}: {log.read_text()[-1500:]}")
        try:
            with psycopg.connect(bouncer.conninfo("app"), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not answer within {timeout:g} s: {exc}; log: {log.read_text()[-1500:]}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def bouncer(pg_server, tmp_path_factory) -> Iterator[Bouncer]:
    from luminar_store.cli import cli

    executable = _pgbouncer()
    dbname = f"b_{uuid.uuid4().hex[:12]}"
    tag = uuid.uuid4().hex[:8]
    logins = {kind: f"bq_{kind}_{tag}" for kind in KINDS}
    passwords = {kind: uuid.uuid4().hex for kind in KINDS}
    directory = tmp_path_factory.mktemp("bouncer") / "conf"
    with pg_server.janitor(dbname, template=pg_server.template):
        with psycopg.connect(pg_server.conninfo(dbname), autocommit=True) as admin:
            for kind, (group, identity, uid) in KINDS.items():
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(logins[kind]), sql.Literal(passwords[kind]), sql.Identifier(group)))
                if identity is not None:
                    admin.execute("INSERT INTO node_identities (login, kind, uid) VALUES (%s, %s, %s)",
                                  (logins[kind], identity, uid))
        port = _free_port()
        environ = {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": pg_server.host, "LUMINAR_DB_PORT": str(pg_server.port),
                   "LUMINAR_DB_NAME": dbname, "LUMINAR_DB_USER": pg_server.user,
                   "LUMINAR_DB_PASSWORD": pg_server.password or "",
                   "LUMINAR_DB_ADMIN_URL": pg_server.conninfo("postgres")}
        args = ["bouncer", "config", "--dir", str(directory), "--listen-addr", "127.0.0.1", "--listen-port",
                str(port), "--pool-size", str(POOL_SIZE), "--max-client-conn", "200"]
        for login in logins.values():
            args += ["--login", login]
        with contextlib.chdir(directory.parent):  # no developer .env is read
            result = CliRunner().invoke(cli, args, env=environ, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        for secret in passwords.values():
            assert secret not in result.output
        log = directory.parent / "pgbouncer.log"
        as_user: dict[str, object] = {}
        if is_root():
            user = service_user()
            _give_to(directory, user)
            entry = pwd.getpwnam(user)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        here = Bouncer(port=port, dbname=dbname, directory=directory, passwords=passwords, logins=logins,
                       server=pg_server)
        with open(log, "wb") as out:
            process = subprocess.Popen([executable, str(directory / "pgbouncer.ini")], stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/", **as_user)
        try:
            _wait_ready(here, process, log)
            yield here
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
                for login in logins.values():
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                                  (login,))
    with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
        for login in logins.values():
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


# -- the configuration ----------------------------------------------------------------------------------------------
def test_the_written_configuration_pools_transactions_and_keeps_secrets_private(bouncer):
    ini = (bouncer.directory / "pgbouncer.ini").read_text()
    userlist = bouncer.directory / "userlist.txt"
    assert "pool_mode = transaction" in ini
    assert "server_reset_query =\n" in ini
    assert "auth_type = scram-sha-256" in ini
    assert "ignore_startup_parameters = options" in ini
    assert stat.S_IMODE(userlist.stat().st_mode) == 0o600
    assert stat.S_IMODE((bouncer.directory / "pgbouncer.ini").stat().st_mode) == 0o600
    secrets = userlist.read_text()
    assert all(f'"{login}" "SCRAM-SHA-256$' in secrets for login in bouncer.logins.values())
    assert all(password not in secrets + ini for password in bouncer.passwords.values())


def test_a_login_without_a_scram_password_is_refused_by_name(bouncer, pg_server, tmp_path, cli_run):
    result = cli_run(["bouncer", "config", "--dir", str(tmp_path / "b"), "--login", "luminar_miner"],
                     env={"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": pg_server.host,
                          "LUMINAR_DB_PORT": str(pg_server.port), "LUMINAR_DB_USER": pg_server.user,
                          "LUMINAR_DB_NAME": bouncer.dbname,
                          "LUMINAR_DB_ADMIN_URL": pg_server.conninfo("postgres")})
    assert result.exit_code != 0
    assert "--login luminar_miner: the role cannot log in" in result.output
    assert not (tmp_path / "b" / "userlist.txt").exists()


# -- the nodes' calls through it ------------------------------------------------------------------------------------
def test_the_pools_find_the_pooler_and_prepare_nothing(bouncer, pg_server):
    async def prepare_threshold(settings: Settings) -> object:
        async with Database(settings) as database:
            async with database.connection() as conn:
                return conn.prepare_threshold

    assert run(prepare_threshold(bouncer.settings("miner"))) is None
    assert run(prepare_threshold(bouncer.settings("miner", LUMINAR_DB_PGBOUNCER="on"))) is None
    assert run(prepare_threshold(pg_server.settings(bouncer.dbname))) == 5  # direct: psycopg's default


def test_a_statement_prepared_on_one_server_session_is_unknown_on_the_next(bouncer):
    """Why the pools prepare nothing: PgBouncer 1.18 hands the next transaction to another server session."""

    async def body() -> None:
        async with await psycopg.AsyncConnection.connect(bouncer.conninfo("miner"), autocommit=True,
                                                         prepare_threshold=0) as preparing, \
                await psycopg.AsyncConnection.connect(bouncer.conninfo("miner"), autocommit=True) as other:
            await preparing.execute("SELECT %s::int + 1", [1])  # prepared on server session A, which goes back
            async with other.transaction():
                await other.execute("SELECT 1")  # holds session A (the most recently freed)
                with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                    await preparing.execute("SELECT %s::int + 1", [2])  # on session B

    run(body())


def test_the_facades_calls_repeated_past_the_prepare_threshold(bouncer):
    async def app(db) -> None:
        for n in range(8):
            await db.store_raw_report(report(100 + n))
        for _ in range(2):  # the second time every id is known: the staging table is made and dropped again
            assert await db.store_raw_reports([report(n) for n in range(200, 240)]) in (40, 0)
        assert await db.store_raw_reports([report(n) for n in range(200, 240)]) == 0

    async def miner(db) -> None:
        claimed = []
        for _ in range(7):
            claimed += await db.claim_reports(MINER, limit=2)
        assert len(claimed) == 14
        for item in claimed[:6]:
            await db.mark_report_processed(item.report_id)
        stored = [await db.store_crime_event(event(title=f"one {n}"), miner_uid=MINER) for n in range(7)]
        counts = await asyncio.gather(*(db.store_crime_events([event(title=f"bulk {k}.{n}") for n in range(25)],
                                                              miner_uid=MINER) for k in range(4)))
        assert counts == [25, 25, 25, 25]
        for event_id in stored:
            assert (await db.get_event(event_id)).miner_uid == MINER
        for _ in range(6):
            assert len(await db.get_events_by_miner(MINER, limit=500)) == 107
            # Side by side: the pool's connections meet PgBouncer's few server sessions in changing pairs.
            found = await asyncio.gather(*(db.get_recent_events(hours=24 * 3650, limit=500) for _ in range(6)))
            assert [len(rows) for rows in found] == [107] * 6
        return stored

    async def validator(db, events) -> None:
        for n, event_id in enumerate(events):
            await db.update_event_verification(event_id, VALIDATOR, "verified", 0.9)
            await db.store_consensus_record(event_id, VALIDATOR, {"final": 0.9}, n + 1)
        for _ in range(6):
            await db.update_miner_performance(MINER, "hk-m", {"integrity": 0.9, "clustering": 0.8, "novelty": 0.7,
                                                              "quality": 0.6})
        assert (await db.get_miner_stats(MINER)).total_rounds == 6

    with_facade(bouncer.settings("app"), app)
    events = with_facade(bouncer.settings("miner"), miner)
    with_facade(bouncer.settings("validator"), lambda db: validator(db, events))


def test_startup_parameters_are_taken_and_jit_is_off_on_the_server(bouncer):
    async def shown(settings: Settings) -> tuple:
        async with Database(settings) as database:
            async with database.connection() as conn:
                values = []
                for name in ("application_name", "jit"):
                    values.append((await (await conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))))
                                   .fetchone())[0])
                return tuple(values)

    assert run(shown(bouncer.settings("miner"))) == ("luminar_store", "off")
    # A client that sends options (psql with PGOPTIONS, or ours told LUMINAR_DB_PGBOUNCER=off) is not refused.
    with psycopg.connect(bouncer.conninfo("miner"), options="-c jit=off", application_name="a_client") as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("a_client",)


# -- the migration runner -------------------------------------------------------------------------------------------
def test_the_migration_runner_refuses_the_pooler_and_goes_around_it_when_told(bouncer, pg_server):
    through = bouncer.settings("miner")
    with pytest.raises(MigrationError) as caught:
        Migrator(through, DEFAULT_DIR, lock_timeout=0).migrate()
    message = str(caught.value)
    assert f"port {bouncer.port}" in message and "LUMINAR_DB_DIRECT_URL" in message
    assert "\n" not in message and bouncer.passwords["miner"] not in message
    # Told where the primary listens, the owner's run goes there with the owner's login (here the superuser).
    owner = pg_server.settings(bouncer.dbname, LUMINAR_DB_HOST="127.0.0.1", LUMINAR_DB_PORT=str(bouncer.port),
                               LUMINAR_DB_DIRECT_URL=f"postgresql://{pg_server.host}:{pg_server.port}")
    migrator = Migrator(owner.as_owner(), DEFAULT_DIR, lock_timeout=0)
    assert migrator.settings.port == pg_server.port
    assert migrator.migrate() == []


def test_migrate_through_the_pooler_fails_in_one_line(bouncer, cli_run):
    result = cli_run(["migrate", "--lock-timeout", "0"],
                     env={"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": "127.0.0.1",
                          "LUMINAR_DB_PORT": str(bouncer.port), "LUMINAR_DB_NAME": bouncer.dbname,
                          "LUMINAR_DB_USER": bouncer.logins["miner"],
                          "LUMINAR_DB_PASSWORD": bouncer.passwords["miner"]})
    assert result.exit_code != 0
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "LUMINAR_DB_DIRECT_URL" in error[0], result.output
    assert "Traceback" not in result.output and bouncer.passwords["miner"] not in result.output


# -- the settings (no server) ---------------------------------------------------------------------------------------
def test_the_direct_url_names_only_where_the_primary_listens():
    from luminar_store.config import load_settings
    from luminar_store.errors import ConfigError

    s = load_settings("local", environ={"LUMINAR_DB_PORT": "6432", "LUMINAR_DB_PGBOUNCER": "on",
                                        "LUMINAR_DB_DIRECT_URL": "postgresql://10.0.0.5:5433"})
    owner = s.as_owner()
    assert (s.port, s.pgbouncer) == (6432, True)
    assert (owner.host, owner.port, owner.user, owner.pgbouncer) == ("10.0.0.5", 5433, "luminar_owner", False)
    for url in ("postgresql://owner:s3cret@10.0.0.5:5432", "postgresql://10.0.0.5/other_db", "not a url at all ="):
        with pytest.raises(ConfigError) as caught:
            load_settings("local", environ={"LUMINAR_DB_DIRECT_URL": url})
        assert "LUMINAR_DB_DIRECT_URL" in str(caught.value) and "s3cret" not in str(caught.value)
    with pytest.raises(ConfigError, match="LUMINAR_DB_PGBOUNCER must be on, off or auto"):
        load_settings("local", environ={"LUMINAR_DB_PGBOUNCER": "yes"})
