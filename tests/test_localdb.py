"""The embedded local cluster for real: started from the machine's PostgreSQL binaries in a temporary handle on a
free port (as the service user under root), PostGIS working, idempotent start, stop, status, reset; and the
``luminar-db db`` commands on top of it."""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from luminar_store.cli import cli
from luminar_store.config import load_settings
from luminar_store.errors import ConfigError, DatabaseUnavailableError, OperationError
from luminar_store.ops import cluster as localdb
from luminar_store.ops import provision
from luminar_store.ops.connect import server_info


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def remove(handle: Path) -> None:
    """Stop whatever runs at ``handle`` and delete its home (also when it was moved under /var/tmp)."""
    if not (handle.is_dir() or handle.is_symlink()):
        return
    localdb.stop(localdb.Cluster(handle=handle))
    home = handle.resolve()
    if handle.is_symlink():
        handle.unlink()
    shutil.rmtree(home, ignore_errors=True)


def settings_for(cluster: localdb.Cluster, env: str = "local", **extra: str):
    environ = {"LUMINAR_ENV": env, "LUMINAR_DB_HOST": cluster.host, "LUMINAR_DB_PORT": str(cluster.port),
               "LUMINAR_DB_NAME": cluster.dbname, "LUMINAR_DB_USER": cluster.user,
               "LUMINAR_DB_PASSWORD": cluster.password, **extra}
    return load_settings(env, environ=environ)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's directories are private (0700): under root the service user cannot enter them, so clusters made
    # here exercise the move to /var/tmp.
    return tmp_path_factory.mktemp("localdb")


@pytest.fixture(scope="module")
def cluster(base: Path) -> Iterator[localdb.Cluster]:
    made = localdb.Cluster(handle=base / "local", port=free_port())
    yield made
    remove(made.handle)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may pass through (as a repository under /home or /work is)."""
    path = Path(tempfile.mkdtemp(prefix="luminar-open-"))
    path.chmod(0o755)
    yield path
    for link in [p for p in path.rglob("*") if p.is_symlink()]:
        remove(link)  # homes moved under /var/tmp
    shutil.rmtree(path, ignore_errors=True)


# -- the cluster ------------------------------------------------------------------------------------------------------
def test_start_creates_role_database_and_working_postgis(cluster: localdb.Cluster) -> None:
    assert localdb.start(cluster) == "started"
    provision.ensure_database(settings_for(cluster))
    info = server_info(settings_for(cluster))
    assert info["postgresql"].split(".")[0] == localdb.find_bindir().parent.name
    assert info["postgis"] and info["postgis"].startswith("3.")
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        metres = conn.execute(
            "SELECT ST_Distance(ST_SetSRID(ST_MakePoint(2.3522, 48.8566), 4326)::geography,"
            "                   ST_SetSRID(ST_MakePoint(-0.1276, 51.5072), 4326)::geography)").fetchone()[0]
        superuser = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        database = conn.execute("SELECT current_database()").fetchone()[0]
    assert 340_000 < metres < 346_000  # Paris - London
    assert superuser, "the role must be able to CREATE EXTENSION, as POSTGRES_USER can in the Docker image"
    assert database == "luminar_local"


def test_second_start_is_idempotent(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    assert localdb.start(cluster) == "already running"
    found = localdb.status(cluster)
    assert found.initialized and found.running
    assert found.port == cluster.port and isinstance(found.pid, int)
    assert found.log_file == cluster.log_file and cluster.log_file.stat().st_size > 0


def test_home_is_where_the_server_user_can_reach_it(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    if localdb.is_root():
        assert cluster.handle.is_symlink(), "a handle inside a private directory must point elsewhere"
        assert cluster.home.parent == Path("/var/tmp") and cluster.home.name.startswith("luminar-")
        user = localdb.service_user()
        assert cluster.data_dir.stat().st_uid == pwd.getpwnam(user).pw_uid
        reach = subprocess.run(["runuser", "-u", user, "--", "test", "-r", str(cluster.data_dir / "PG_VERSION")],
                               cwd="/", check=False)
        assert reach.returncode == 0
    else:
        assert cluster.home == cluster.handle.resolve() and not cluster.handle.is_symlink()
    assert (cluster.socket_dir / f".s.PGSQL.{cluster.port}").exists()


def test_every_connection_needs_the_password(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=cluster.port, user=cluster.user, password="wrong",
                        dbname=cluster.dbname).close()
    with pytest.raises(psycopg.OperationalError):  # the Unix socket asks for it too
        psycopg.connect(host=str(cluster.socket_dir), port=cluster.port, user=cluster.user, password="wrong",
                        dbname=cluster.dbname).close()
    with psycopg.connect(host=str(cluster.socket_dir), port=cluster.port, user=cluster.user,
                         password=cluster.password, dbname=cluster.dbname) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_reports_down_and_data_survives_a_restart(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS kept; CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
    assert localdb.stop(cluster) is True
    found = localdb.status(cluster)
    assert found.initialized and not found.running and found.pid is None
    assert localdb.stop(cluster) is False
    with pytest.raises(DatabaseUnavailableError, match="make db-start"):
        server_info(settings_for(cluster))
    assert localdb.start(cluster) == "started"
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]


def test_start_refuses_a_port_taken_by_another_server(base: Path) -> None:
    with socket.socket() as other_server:
        other_server.bind(("127.0.0.1", 0))
        other_server.listen()
        port = other_server.getsockname()[1]
        blocked = localdb.Cluster(handle=base / "blocked", port=port)
        with pytest.raises(OperationError) as caught:
            localdb.start(blocked)
    message = str(caught.value)
    assert f"port {port}" in message and "LUMINAR_DB_PORT=" in message and "\n" not in message
    assert not localdb.status(blocked).initialized  # nothing was created for a start that could not happen


def test_start_refuses_when_the_cluster_runs_on_another_port(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    moved = localdb.Cluster(handle=cluster.handle, port=free_port())
    with pytest.raises(OperationError, match=f"already runs on port {cluster.port}"):
        localdb.start(moved)


def test_start_refuses_a_host_that_is_not_this_machine(base: Path) -> None:
    with pytest.raises(ConfigError, match="LUMINAR_DB_HOST"):
        localdb.start(localdb.Cluster(handle=base / "remote", host="central-db.luminar.network"))
    assert not (base / "remote").exists()


def test_init_refuses_an_empty_password(base: Path) -> None:
    nameless = localdb.Cluster(handle=base / "nopassword", port=free_port(), password="")
    with pytest.raises(ConfigError, match="LUMINAR_DB_PASSWORD"):
        localdb.init(nameless)
    remove(nameless.handle)


def test_ensure_database_creates_a_missing_database_with_postgis(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    second = settings_for(cluster).with_database("second_db")
    assert provision.ensure_database(second) == (True, True)
    assert provision.ensure_database(second) == (False, False)
    assert server_info(second)["postgis"]


def test_reset_drops_and_recreates_the_database(cluster: localdb.Cluster) -> None:
    localdb.start(cluster)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS doomed (x int)")
        held = psycopg.connect(cluster.conninfo())  # an open session does not stop the reset
    try:
        provision.carry_out_reset(provision.plan_reset(settings_for(cluster)))
    finally:
        held.close()
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.doomed')").fetchone() == (None,)
        assert conn.execute("SELECT to_regclass('public.crime_events')::text").fetchone() == ("crime_events",)
    assert server_info(settings_for(cluster))["postgis"]


@pytest.mark.parametrize("env", ["staging", "production"])
def test_reset_is_refused_outside_local_and_testing(cluster: localdb.Cluster, env: str) -> None:
    localdb.start(cluster)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS precious (x int)")
    settings = settings_for(cluster, env, LUMINAR_DB_SSLMODE="require", LUMINAR_DB_PASSWORD="a-real-secret")
    with pytest.raises(OperationError, match="LUMINAR_ENV=local, testing, testnet"):
        provision.plan_reset(settings)
    with psycopg.connect(cluster.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.precious')::text").fetchone() == ("precious",)


# -- where a home goes ------------------------------------------------------------------------------------------------
def test_locate_keeps_a_reachable_home_in_place(open_dir: Path) -> None:
    handle = open_dir / "local"
    home = localdb.locate(handle)
    assert home == handle and handle.is_dir() and not handle.is_symlink()
    assert localdb.locate(handle) == home  # stable


def test_locate_moves_a_home_whose_socket_path_would_be_too_long(open_dir: Path) -> None:
    handle = open_dir / ("x" * 80) / "local"
    home = localdb.locate(handle)
    assert handle.is_symlink() and home.parent == Path("/var/tmp") and home.is_dir()
    assert localdb.locate(handle) == home


def test_locate_replaces_a_link_to_a_vanished_home(open_dir: Path) -> None:
    handle = open_dir / "local"
    handle.symlink_to(open_dir / "gone")
    home = localdb.locate(handle)
    assert home.is_dir() and home != open_dir / "gone"


# -- the command line -------------------------------------------------------------------------------------------------
@pytest.fixture
def db_command(base: Path, cli_run) -> Iterator:
    """``db_command("start", LUMINAR_DB_PASSWORD=...)``: ``luminar-db db start`` on a cluster of its own."""
    env = {"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DIR": str(base / "cli"), "LUMINAR_DB_PORT": str(free_port()),
           "LUMINAR_DB_BACKEND": "embedded", "DATABASE_URL": None}

    def invoke(*args: str, **extra: str):
        return cli_run(["db", *args], {**env, **extra})

    yield invoke
    remove(base / "cli" / "local")


def test_db_commands_start_status_reset_stop(db_command) -> None:
    started = db_command("start")
    assert started.exit_code == 0, started.output
    assert started.output.startswith("started") and "***" in started.output
    again = db_command("start")
    assert again.exit_code == 0 and again.output.startswith("already running")

    status = db_command("status")
    assert status.exit_code == 0, status.output
    assert "reachable    yes" in status.output and "PostGIS" in status.output
    assert "pending: make db-migrate" in status.output

    refused = db_command("reset")  # CliRunner's stdin is not a terminal: no question, a refusal with the hint
    assert refused.exit_code == 1
    assert "--yes" in refused.output and "FORCE=1" in refused.output
    target = refused.output.splitlines()[0]  # named before anything else
    assert target.startswith("Target: database luminar_local on localhost:") and "(environment local)" in target
    assert refused.output.count("\n") == 2 and "Traceback" not in refused.output

    reset = db_command("reset", "--yes")
    assert reset.exit_code == 0, reset.output
    verbose = db_command("status", "--verbose")
    assert "current (" in verbose.output and "crime_events" in verbose.output
    assert "spatial_ref_sys" not in verbose.output and "20250101000000_initial_schema" in verbose.output

    assert db_command("stop").output.strip() == "stopped"
    down = db_command("status")
    assert down.exit_code == 2
    assert "stopped (embedded cluster" in down.output and "reachable    no" in down.output
    assert db_command("stop").output.strip() == "not running"


def test_db_commands_refuse_remote_environments(db_command) -> None:
    for args in (["start", "--env", "production"], ["stop", "--env", "staging"],
                 ["reset", "--yes", "--env", "production"]):
        result = db_command(*args, LUMINAR_DB_PASSWORD="a-real-secret", LUMINAR_ENV=args[-1])
        assert result.exit_code == 1, result.output
        assert "LUMINAR_ENV=local, testing, testnet" in result.output and "Traceback" not in result.output


def test_db_status_of_a_database_that_is_not_there(db_command) -> None:
    result = db_command("status")
    assert result.exit_code == 2
    assert "not created yet" in result.output and "cannot reach" in result.output


def test_every_db_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for command in ([], ["start"], ["stop"], ["status"], ["reset"]):
        result = runner.invoke(cli, ["db", *command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, command


def test_password_stays_out_of_every_db_output(db_command) -> None:
    secret = "Cli-Secret-9x"
    outputs = [db_command("start", LUMINAR_DB_PASSWORD=secret), db_command("status", "-v", LUMINAR_DB_PASSWORD=secret),
               db_command("status", LUMINAR_DB_PASSWORD=secret, LUMINAR_DB_OWNER_PASSWORD="wrong-one"),
               db_command("stop", LUMINAR_DB_PASSWORD=secret)]
    assert outputs[0].exit_code == 0, outputs[0].output
    for result in outputs:
        assert secret not in result.output and "wrong-one" not in result.output
    assert outputs[2].exit_code == 2  # the wrong password is refused: the server asks for it (status is the owner's)


def test_the_local_database_is_split_as_production_is(db_command, base: Path, cli_run) -> None:
    """The cluster's superuser only provisions; the owner owns the schema; the nodes' login is neither, and works."""
    started = db_command("start")
    assert started.exit_code == 0, started.output
    port = started.output.split("localhost:")[1].split("/")[0]
    env = {"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DIR": str(base / "cli"), "LUMINAR_DB_PORT": port,
           "LUMINAR_DB_BACKEND": "embedded", "DATABASE_URL": None}
    assert cli_run(["setup"], env).exit_code == 0
    admin_file = (base / "cli" / "local").resolve() / "admin.pw"
    assert admin_file.stat().st_mode & 0o777 == 0o600
    nodes = load_settings("local", environ={k: v for k, v in env.items() if v is not None})
    with psycopg.connect(nodes.as_owner().conninfo()) as owner:
        assert owner.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public' "
                             "AND tablename <> 'spatial_ref_sys'").fetchall() == [("luminar_owner",)]
        roles = dict(owner.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN "
                                   "('luminar_admin', 'luminar_owner', 'luminar_dev')").fetchall())
        assert roles == {"luminar_admin": True, "luminar_owner": False, "luminar_dev": False}
        kinds = owner.execute("SELECT kind FROM node_identities WHERE login = 'luminar_dev' AND uid IS NULL "
                              "ORDER BY kind").fetchall()
        assert kinds == [("ingest",), ("miner",), ("validator",)]
    with psycopg.connect(nodes.conninfo(), autocommit=True) as node:
        node.execute("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                     "\"timestamp\") VALUES ('r-1', 'seen', 1, 2, now())")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            node.execute("DROP TABLE consensus_records")
