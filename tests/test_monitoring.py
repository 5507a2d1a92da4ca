"""Monitoring (migration 20261130045300, luminar_store.ops.metrics, luminar-db metrics / health / status --json /
stats --watch, JSON logs): the metrics read as the monitor role equal `stats` read as the owner, a slow database
never stalls a scrape, and a real HTTP scrape answers Prometheus' text format.

One database with sample data (the synthetic loader, 1,000 reports, plus a planted cell of verified events) and one
monitor login serve the whole module.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from _async import eventually, run
from _monitoring import monitoring_sample  # noqa: F401  (a fixture)
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from luminar_store.cli import common
from luminar_store.database import Database
from luminar_store.errors import OperationError
from luminar_store.limits import AGREEMENT_TOLERANCE
from luminar_store.migrator import DEFAULT_DIR
from luminar_store.ops import stats
from luminar_store.ops.health import check_health
from luminar_store.ops.metrics import DatabaseCollector, NetworkCollector, read_snapshot
from luminar_store.server_state import ServerState


@pytest.fixture
def sample(request):
    """(owner settings, monitor settings, monitor login) of the database with sample data (shared: _monitoring)."""
    found = request.getfixturevalue("monitoring_sample")
    return found.owner, found.monitor, found.monitor.user


def scrape(collector) -> dict[tuple[str, tuple], float]:
    """The collector's exposition, parsed: (sample name, sorted labels) -> value."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def fresh(collector) -> dict[tuple[str, tuple], float]:
    """``scrape`` after a whole read (a scrape itself waits for a read only ``scrape_wait`` seconds)."""
    collector.refresh()
    return scrape(collector)


def nan_eq(a: float, b: float | None) -> bool:
    return (b is None and math.isnan(a)) or (b is not None and a == pytest.approx(b))


# -- the one definition --------------------------------------------------------------------------------------------
def test_metrics_read_as_the_monitor_equal_stats_read_as_the_owner(sample):
    owner, monitor, _ = sample
    got = fresh(NetworkCollector(monitor))
    with psycopg.connect(owner.conninfo(), autocommit=True) as conn:
        want = stats.collect_stats(conn)
    assert got[("luminar_metrics_up", ())] == 1.0
    assert want.events_total > 6 and want.reports_total == 400
    for status, n in want.reports_by_status.items():
        assert got[("luminar_reports", (("status", status),))] == n
    for status, n in want.events_by_status.items():
        assert got[("luminar_events", (("status", status),))] == n
    assert got[("luminar_throughput_reports_per_hour", (("kind", "processed"),))] == want.processed_per_hour
    assert got[("luminar_throughput_reports_per_hour", (("kind", "received"),))] == want.received_per_hour
    assert want.received_per_hour > 0
    assert nan_eq(got[("luminar_consensus_agreement_percent", ())], want.consensus_agreement_pct)
    assert want.consensus_agreement_pct is not None
    assert got[("luminar_consensus_scores_compared", ())] == want.consensus_records_compared
    for c in want.coverage:
        assert got[("luminar_coverage_events", (("region", c["region"]),))] == c["events"]
    assert nan_eq(got[("luminar_miner_success_rate_percent", (("stat", "avg"),))], want.miner_success_rate_avg)
    assert got[("luminar_nodes", (("kind", "miner"), ("state", "active")))] == want.active_miners
    assert got[("luminar_nodes", (("kind", "validator"), ("state", "active")))] == want.active_validators
    assert got[("luminar_database_size_bytes", ())] > 0
    assert got[("luminar_table_size_bytes", (("table", "raw_incident_reports"),))] > 0
    assert got[("luminar_migrations_pending", ())] == 0
    assert got[("luminar_migrations_applied", ())] == len(list(DEFAULT_DIR.glob("2*.sql")))
    assert math.isnan(got[("luminar_last_backup_age_seconds", ())])  # none made
    assert math.isnan(got[("luminar_last_sync_age_seconds", ())])


def test_the_stats_functions_count_what_the_tables_hold(sample):
    """The SQL definitions against plain counts (a test's own oracle), throughput split in hours summing to the
    window."""
    owner, _, _ = sample
    with psycopg.connect(owner.conninfo(), autocommit=True) as conn:
        settled, received = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('processed', 'rejected') AND processed_at >= now() - "
            "interval '24 hours'), count(*) FILTER (WHERE created_at >= now() - interval '24 hours') "
            "FROM raw_incident_reports").fetchone()
        window = conn.execute(stats.THROUGHPUT, {"hours": 24}).fetchone()
        hourly = conn.execute("SELECT sum(settled), sum(received), count(*) FROM luminar_stats_throughput("
                              "now() - interval '24 hours', now(), interval '1 hour')").fetchone()
        agreement = conn.execute("SELECT agreement_rate FROM consensus_agreement(now() - interval '7 days', %s)",
                                 (AGREEMENT_TOLERANCE,)).fetchone()[0]
        ours = conn.execute(stats.AGREEMENT, {"days": 7, "tolerance": AGREEMENT_TOLERANCE}).fetchone()[2]
        located = conn.execute("SELECT count(*) FROM crime_events WHERE latitude IS NOT NULL").fetchone()[0]
        regions = dict((r, n) for r, n, _ in conn.execute(stats.COVERAGE).fetchall())
    assert window == (settled, received)
    assert (hourly[0], hourly[1]) == (settled, received) and 1 <= hourly[2] <= 25
    assert ours == agreement
    assert sum(n for r, n in regions.items() if r != "Unlocated") == located
    assert regions["Europe"] >= 6  # the planted cell is in Paris


def test_the_monitor_reads_aggregates_never_rows(sample):
    _, monitor, _ = sample
    with psycopg.connect(monitor.conninfo(), autocommit=True) as conn:
        conn.execute("SET ROLE luminar_monitor")
        for table in ("crime_events", "raw_incident_reports", "consensus_records"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))
        assert conn.execute("SELECT count(*) FROM luminar_stats_coverage()").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM risk_zones").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM public_hotspots").fetchone()[0] >= 1


def test_a_login_outside_the_monitor_group_is_refused_naming_the_grant(pg_server, sample, node_login):
    owner, _, _ = sample
    reader = node_login("luminar_reader")
    settings = pg_server.settings(owner.name, LUMINAR_DB_USER=reader.user, LUMINAR_DB_PASSWORD=reader.password)
    with pytest.raises(OperationError, match=f"GRANT luminar_monitor TO {reader.user}"):
        read_snapshot(settings)


# -- bounded scrapes ---------------------------------------------------------------------------------------------
def test_a_slow_read_never_stalls_a_scrape_and_a_timed_out_one_keeps_the_last_values(sample):
    owner, monitor, _ = sample
    now = [0.0]
    collector = NetworkCollector(monitor, refresh_every=10.0, statement_timeout=0.3, scrape_wait=0.0,
                                 clock=lambda: now[0])
    first = fresh(collector)
    assert first[("luminar_metrics_up", ())] == 1.0 and first[("luminar_metrics_age_seconds", ())] == 0.0
    now[0] = 5.0  # within refresh_every: the cache, no query
    assert scrape(collector)[("luminar_metrics_age_seconds", ())] == 5.0
    processed = ("luminar_reports", (("status", "processed"),))
    with psycopg.connect(owner.conninfo()) as blocker:  # a transaction holding the table: the count waits on it
        blocker.execute("LOCK TABLE raw_incident_reports IN ACCESS EXCLUSIVE MODE")
        now[0] = 20.0
        during = scrape(collector)  # starts a read, waits for it 0 s: the cache, said to be 20 s old
        assert during[("luminar_metrics_age_seconds", ())] == 20.0 and during[processed] == first[processed]
        run(eventually(lambda: collector.last_error is not None, timeout=30))
        late = scrape(collector)
        blocker.rollback()
    assert late[("luminar_metrics_up", ())] == 0.0
    assert late[("luminar_metrics_refresh_errors_total", ())] >= 1.0
    assert late[("luminar_metrics_age_seconds", ())] == 20.0 and late[processed] == first[processed]
    assert "statement timeout" in collector.last_error  # bounded by the timeout, not by the lock
    now[0] = 40.0
    assert fresh(collector)[("luminar_metrics_up", ())] == 1.0


def test_pending_migrations_and_the_last_backup(sample, tmp_path):
    _, monitor, _ = sample
    migrations = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, migrations, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (migrations / "29990101000000_later.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 1;\n")
    backups = tmp_path / "backups"
    backups.mkdir()
    old, new = backups / "luminar_testing_20260101T000000Z.dump", backups / "luminar_testing_20260102T000000Z.dump"
    for path, age in ((old, 7200), (new, 3600)):
        path.write_bytes(b"PGDMP")
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))
    (backups / "luminar_testing_20260103T000000Z.dump.partial").write_bytes(b"")  # under way: not a backup
    got = fresh(NetworkCollector(monitor, migrations_dir=migrations, backup_dir=backups))
    assert got[("luminar_migrations_pending", ())] == 1
    assert got[("luminar_last_backup_age_seconds", ())] == pytest.approx(3600, abs=120)


def test_a_real_http_scrape_answers_prometheus_text(sample):
    _, monitor, _ = sample
    registry = CollectorRegistry(auto_describe=False)
    collector = NetworkCollector(monitor)
    collector.refresh()
    registry.register(collector)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=30) as answer:
            assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = answer.read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=10)
    names = {f.name for f in text_string_to_metric_families(body)}
    assert {"luminar_consensus_agreement_percent", "luminar_throughput_reports_per_hour", "luminar_coverage_events",
            "luminar_miner_success_rate_percent", "luminar_replica_up"} <= names


# -- a node's own pool ---------------------------------------------------------------------------------------------
def test_a_node_mounts_its_pool_on_its_own_registry(sample):
    owner, _, _ = sample

    async def go():
        async with Database(owner) as database:
            collector = DatabaseCollector(database)
            async with database.connection() as conn:
                await conn.execute("SELECT 1")
                busy = scrape(collector)
            idle = scrape(collector)
        return busy, idle

    busy, idle = run(go())
    pool = (("pool", "luminar-primary"),)
    assert busy[("luminar_pool_connections_in_use", pool)] == 1.0
    assert idle[("luminar_pool_connections_in_use", pool)] == 0.0
    assert idle[("luminar_pool_connections_idle", pool)] >= 1.0
    assert idle[("luminar_pool_requests_waiting", pool)] == 0.0
    assert idle[("luminar_pool_requests_errors_total", pool)] == 0.0
    assert idle[("luminar_server_up", pool)] == 1.0


# -- the command line ----------------------------------------------------------------------------------------------
def env_of(settings) -> dict[str, str]:
    return {"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": settings.host, "LUMINAR_DB_PORT": str(settings.port),
            "LUMINAR_DB_NAME": settings.name, "LUMINAR_DB_USER": settings.user,
            "LUMINAR_DB_PASSWORD": settings.password}


def test_metrics_once_with_a_monitor_url(cli_run, sample):
    owner, monitor, login = sample
    url = f"postgresql://{login}:{monitor.password}@{monitor.host}:{monitor.port}/{monitor.name}"
    done = cli_run(["metrics", "--once", "--url", url], env=env_of(owner))
    assert done.exit_code == 0, done.output
    samples = {s.name for f in text_string_to_metric_families(done.stdout) for s in f.samples}
    assert "luminar_consensus_agreement_percent" in samples and "luminar_metrics_up" in samples
    assert monitor.password not in done.output


def test_health_exit_codes(cli_run, sample, tmp_path, pg_server):
    owner, _, _ = sample
    done = cli_run(["health"], env=env_of(owner))
    assert (done.exit_code, done.stdout.strip()) == (0, "healthy")
    migrations = tmp_path / "migrations"
    shutil.copytree(DEFAULT_DIR, migrations, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (migrations / "29990101000000_later.sql").write_text("-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 1;\n")
    done = cli_run(["health", "--dir", str(migrations), "--json"], env=env_of(owner))
    assert done.exit_code == 1
    answer = json.loads(done.stdout)
    assert answer["healthy"] is False and "29990101000000_later" in answer["reason"]
    with socket_closed() as port:
        down = cli_run(["health", "--timeout", "1"], env={**env_of(owner), "LUMINAR_DB_PORT": str(port)})
    assert down.exit_code == 2 and "unhealthy:" in down.stderr


class socket_closed:
    """A port on loopback that nothing listens on (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        return None


def test_health_is_fast(sample):
    owner, _, _ = sample
    result = check_health(owner, timeout=3)
    assert result.healthy and result.checks == {"reachable": True, "schema": True, "migrations": True}


def test_status_json_and_stats_watch(cli_run, sample, monkeypatch):
    owner, _, _ = sample
    done = cli_run(["status", "--json"], env=env_of(owner))
    assert done.exit_code == 0, done.output
    status = json.loads(done.stdout)
    assert status["reachable"] is True and status["status"]["migrations"].startswith("current")
    done = cli_run(["db", "status", "--json"], env={**env_of(owner), "LUMINAR_DB_PORT": "1"})
    assert done.exit_code == 2 and json.loads(done.stdout)["reachable"] is False

    from luminar_store.cli import ops

    def stop(_seconds: float) -> None:  # the first refresh is shown, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(ops.time, "sleep", stop)
    done = cli_run(["stats", "--json", "--watch", "2"], env=env_of(owner))
    assert done.exit_code == 0, done.output
    line = done.stdout.strip().splitlines()[0]  # not a terminal: one JSON object a line
    assert json.loads(line)["reports_total"] == 400


# -- logs ----------------------------------------------------------------------------------------------------------
def test_json_logs_carry_the_state_changes(capsys):
    common.start_cli("json")
    try:
        state = ServerState("server db.example:5432", retry_after=1.0)
        state.mark_down("connection refused")
        state.mark_up()
    finally:
        common.start_cli("text")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["level"], e["event"]) for e in lines] == [("warning", "server_lost"), ("info", "server_back")]
    assert lines[0]["where"] == "server db.example:5432" and "connection refused" in lines[0]["message"]
    assert datetime.fromisoformat(lines[0]["time"]) > datetime.now(UTC) - timedelta(minutes=1)


def test_the_pool_logs_nothing_to_a_bare_stderr():
    import logging

    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("psycopg.pool").handlers)



def test_the_metrics_login_comes_from_the_url_else_the_metrics_password(monkeypatch):
    from luminar_store.cli.monitor import monitor_settings

    monkeypatch.delenv("LUMINAR_METRICS_DB_PASSWORD", raising=False)
    assert monitor_settings("testing", None).user == "luminar_dev"
    monkeypatch.setenv("LUMINAR_METRICS_DB_PASSWORD", "m3tr")
    assert (monitor_settings("testing", None).user, monitor_settings("testing", None).password) == (
        "luminar_metrics", "m3tr")
    given = monitor_settings("testing", "postgresql://someone:pw@db.example:6000/luminar_x")
    assert (given.user, given.password, given.host, given.port, given.name) == (
        "someone", "pw", "db.example", 6000, "luminar_x")


def test_a_database_before_the_monitoring_migration_is_told_to_migrate(cli_run, db_settings):
    from luminar_store.migrator import Migrator

    while True:  # down sections, for real, until the monitoring migration's (later ones first)
        undone = Migrator(db_settings, DEFAULT_DIR).rollback()
        assert undone.version >= "20261130045300"
        if undone.version == "20261130045300":
            break
    env = env_of(db_settings)
    done = cli_run(["stats"], env=env)
    assert done.exit_code != 0 and "luminar-db migrate" in done.stderr and "Traceback" not in done.output
    done = cli_run(["health"], env=env)
    assert done.exit_code == 1 and "20261130045300_monitoring" in done.stderr
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regprocedure('luminar_stats_coverage()')").fetchone() == (None,)
