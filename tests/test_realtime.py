"""Real-time copies between two real servers: central (``wal_level = logical``) publishes, local subscribes.

Both clusters are made here and migrated by the project's runner. An insert, an update and a delete on central
appear locally (polled with a generous deadline, never timed); the lag is reported; stopping keeps what was copied
and a restart goes on from where it stopped; every refused precondition changes nothing.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from _async import eventually, run
from psycopg import sql
from psycopg.conninfo import make_conninfo

from luminar_store.config import Settings, load_settings
from luminar_store.errors import OperationError
from luminar_store.migrator import DEFAULT_DIR, migrate_database
from luminar_store.ops import cluster, realtime
from luminar_store.syncing import SyncManager

USER, PASSWORD, DBNAME = "luminar_rt", "Rt-secret-pw", "luminar_rt"
REPLICATOR, REPLICATOR_PW = "central_copy", "Copy-secret-pw"
HOST = "127.0.0.1"
DEADLINE = 60.0  # seconds a change may take to arrive on a busy 2-core machine (normally well under one)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Pair:
    """Central and local: two clusters, each with the migrated database ``DBNAME``."""

    central_port: int
    local_port: int

    def conninfo(self, port: int, user: str = USER, password: str = PASSWORD) -> str:
        return make_conninfo(host=HOST, port=port, user=user, password=password, dbname=DBNAME, sslmode="disable")

    @property
    def source_url(self) -> str:
        """What the local server connects to central with (the replicator's login)."""
        return self.conninfo(self.central_port, REPLICATOR, REPLICATOR_PW)

    def local(self) -> Settings:
        return load_settings("testing", environ={
            "LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": HOST, "LUMINAR_DB_PORT": str(self.local_port),
            "LUMINAR_DB_NAME": DBNAME, "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": PASSWORD,
            "LUMINAR_DB_SSLMODE": "disable"})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("realtime")
    made = {name: cluster.Cluster(handle=base / name, port=_free_port(), host=HOST, user=USER, password=PASSWORD,
                                  dbname="postgres") for name in ("central", "local")}
    started: list[cluster.Cluster] = []
    try:
        for name, server in made.items():
            cluster.init(server)
            with (server.data_dir / "postgresql.conf").open("a") as conf:
                conf.write("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n")
                if name == "central":
                    conf.write("wal_level = logical\n")
            cluster.start(server)
            started.append(server)
            with psycopg.connect(server.conninfo("postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
            migrate_database(make_conninfo(host=HOST, port=server.port, user=USER, password=PASSWORD,
                                           dbname=DBNAME), DEFAULT_DIR)
        pair = Pair(made["central"].port, made["local"].port)
        with psycopg.connect(pair.conninfo(pair.central_port), autocommit=True) as admin:
            assert realtime.add_replicator(admin, REPLICATOR, REPLICATOR_PW) is True
        yield pair
    finally:
        for server in reversed(started):
            cluster.stop(server)
        for server in made.values():
            if server.handle.exists():  # the homes (under /var/tmp when the service user cannot reach pytest's)
                shutil.rmtree(server.home, ignore_errors=True)


def arrives(check) -> None:
    """Poll ``check`` until it holds, with a generous deadline (never a timing assertion)."""
    run(eventually(check, timeout=DEADLINE, every=0.1))


@pytest.fixture(autouse=True)
def empty_copy(pair: Pair) -> None:
    """Each test starts from an empty local copy (a new subscription's initial copy needs one): the rows an earlier
    test's copy left stay after its subscription is dropped."""
    with psycopg.connect(pair.conninfo(pair.local_port), autocommit=True) as conn:
        conn.execute("DELETE FROM raw_incident_reports")
        conn.execute("DELETE FROM sync_state")


def central_sql(pair: Pair, statement: str, params: tuple = ()) -> None:
    with psycopg.connect(pair.conninfo(pair.central_port), autocommit=True) as conn:
        conn.execute(statement, params)


def local_rows(pair: Pair, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(pair.conninfo(pair.local_port), autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


REPORT = """
INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "timestamp")
VALUES (%s, %s, 48.85, 2.35, '2026-11-01 12:00+00')
"""


def test_changes_on_central_appear_locally_and_the_lag_is_reported(pair: Pair) -> None:
    central_sql(pair, REPORT, ("before-1", "filed before the subscription"))
    realtime.subscribe(pair.local(), pair.source_url, admin_url=pair.conninfo(pair.local_port))
    try:
        arrives(lambda: local_rows(pair, "SELECT external_id FROM raw_incident_reports") == [("before-1",)])
        central_sql(pair, REPORT, ("after-1", "filed after"))
        central_sql(pair, "UPDATE raw_incident_reports SET status = 'rejected' WHERE external_id = 'before-1'")
        central_sql(pair, "DELETE FROM raw_incident_reports WHERE external_id = 'after-1'")
        central_sql(pair, REPORT, ("after-2", "filed last"))
        expected = [("after-2", "pending"), ("before-1", "rejected")]
        arrives(lambda: local_rows(pair, "SELECT external_id, status FROM raw_incident_reports ORDER BY 1")
                == expected)
        # No local trigger fired for the applied changes: the local audit trail holds none of them.
        assert local_rows(pair, "SELECT count(*) FROM audit_log WHERE table_name = 'raw_incident_reports'") == [(0,)]
        arrives(lambda: realtime.realtime_status(pair.local(), pair.source_url).state == "streaming")
        status = realtime.realtime_status(pair.local(), pair.source_url)
        assert status.tables == status.tables_ready == len(realtime.COPIED_TABLES)
        assert status.lag_bytes is not None and status.lag_bytes >= 0

        # Stopped, it keeps what it has; restarted, it goes on from where it stopped.
        assert realtime.set_enabled(pair.local(), False, admin_url=pair.conninfo(pair.local_port))
        assert realtime.realtime_status(pair.local()).state == "disabled"
        central_sql(pair, REPORT, ("while-stopped", "filed while the copy was stopped"))
        assert realtime.set_enabled(pair.local(), True, admin_url=pair.conninfo(pair.local_port))
        arrives(lambda: ("while-stopped",) in local_rows(pair, "SELECT external_id FROM raw_incident_reports"))
    finally:
        realtime.unsubscribe(pair.local(), admin_url=pair.conninfo(pair.local_port))
    assert realtime.realtime_status(pair.local()).state == "none"
    with psycopg.connect(pair.conninfo(pair.central_port), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone() == (0,)


def test_every_precondition_is_checked_before_anything_changes(pair: Pair) -> None:
    admin = pair.conninfo(pair.local_port)
    with psycopg.connect(pair.conninfo(pair.local_port), autocommit=True) as conn:
        conn.execute(REPORT, (f"local-{uuid.uuid4().hex[:6]}", "a local row"))
    with pytest.raises(OperationError, match="hold rows"):
        realtime.subscribe(pair.local(), pair.source_url, admin_url=admin)
    assert realtime.realtime_status(pair.local()).state == "none"
    with pytest.raises(OperationError, match="wal_level below logical"):
        realtime.subscribe(pair.local(), pair.conninfo(pair.local_port), admin_url=admin)  # local as "central"
    production = load_settings("production", environ={"LUMINAR_ENV": "production", "LUMINAR_DB_HOST": HOST,
                                                       "LUMINAR_DB_PASSWORD": "real-pw",
                                                       "LUMINAR_DB_SSLMODE": "verify-full"})
    with pytest.raises(OperationError, match="production"):
        realtime.subscribe(production, pair.source_url, admin_url=admin)


def test_the_commands_start_report_stop_and_drop_without_printing_a_secret(pair: Pair, cli_run) -> None:
    env = {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": HOST, "LUMINAR_DB_PORT": str(pair.local_port),
           "LUMINAR_DB_NAME": DBNAME, "LUMINAR_DB_USER": USER, "LUMINAR_DB_PASSWORD": PASSWORD,
           "LUMINAR_DB_SSLMODE": "disable", "LUMINAR_SYNC_SOURCE_URL": pair.source_url,
           "LUMINAR_DB_ADMIN_URL": pair.conninfo(pair.local_port)}
    outputs = []
    try:
        started = cli_run(["realtime", "start"], env)
        outputs.append(started)
        assert started.exit_code == 0 and "Subscribed" in started.output, started.output
        arrives(lambda: "streaming" in cli_run(["realtime", "status"], env).output)
        outputs.append(cli_run(["realtime", "status"], env))
        n = len(realtime.COPIED_TABLES)
        assert f"{n}/{n} tables copied" in outputs[-1].output and "bytes behind" in outputs[-1].output
        status = cli_run(["status"], env)
        assert f"realtime     streaming: {n}/{n} tables copied" in status.output, status.output
        outputs += [status, cli_run(["realtime", "stop"], env)]
        assert "disabled" in cli_run(["realtime", "status"], env).output
        outputs.append(cli_run(["realtime", "start"], env))
        assert "Restarted" in outputs[-1].output
    finally:
        outputs.append(cli_run(["realtime", "drop"], env))
    assert "Dropped." in outputs[-1].output
    for result in outputs:
        assert REPLICATOR_PW not in result.output and PASSWORD not in result.output


def test_the_sync_manager_follows_by_logical_replication_when_it_can(pair: Pair) -> None:
    manager = SyncManager(pair.local())

    async def go():
        mode = await manager.start_real_time_sync(source_url=pair.source_url, source_env="testing",
                                                  admin_url=pair.conninfo(pair.local_port))
        assert mode == "logical" and await manager.start_real_time_sync() == "logical"  # idempotent
        central_sql(pair, REPORT, ("managed-1", "filed while the manager follows"))
        await eventually(lambda: ("managed-1",) in local_rows(pair, "SELECT external_id FROM raw_incident_reports"),
                         timeout=DEADLINE, every=0.1)
        await manager.stop()

    try:
        run(go())
        assert realtime.realtime_status(pair.local()).state == "disabled"
    finally:
        realtime.unsubscribe(pair.local(), admin_url=pair.conninfo(pair.local_port))


def test_sync_pulls_between_the_two_servers(pair: Pair) -> None:
    """``sync`` (pulls with watermarks) between two real servers: a full copy, then an insert, an update and a
    delete on central arrive with the next pull, and a pull with nothing new changes nothing."""
    from luminar_store.ops import sync as sync_ops

    local = pair.local()
    central_sql(pair, REPORT, ("pulled-base", "there at the full copy"))
    central_sql(pair, REPORT, ("pulled-gone", "deleted on central later"))
    central = Settings.from_conninfo(pair.source_url, env="testing")
    sync_ops.sync(central, local, full=True)
    rows = lambda: dict(local_rows(pair, "SELECT external_id, status FROM raw_incident_reports"))  # noqa: E731
    with psycopg.connect(pair.conninfo(pair.central_port), autocommit=True) as conn:
        assert rows() == dict(conn.execute("SELECT external_id, status FROM raw_incident_reports").fetchall())
    central_sql(pair, REPORT, ("pulled-new", "filed between two pulls"))
    central_sql(pair, "UPDATE raw_incident_reports SET status = 'failed' WHERE external_id = 'pulled-base'")
    central_sql(pair, "DELETE FROM raw_incident_reports WHERE external_id = 'pulled-gone'")
    sync_ops.sync(central, local)
    after = rows()
    assert (after["pulled-new"], after["pulled-base"], "pulled-gone" in after) == ("pending", "failed", False)
    again = sync_ops.sync(central, local)
    assert sum(count.changed for count in again.counts.values()) == 0
