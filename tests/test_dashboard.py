"""The monitoring profile's files, tested without Docker: the Grafana dashboard (init-scripts/monitoring/dashboards/)
checked against the dashboard schema's rules, every SQL panel run as the Grafana login (reader and monitor groups)
on sample data with Grafana's macros expanded, returning the columns its panel reads; Debian's promtool checks the
Prometheus configuration, and a real Prometheus scrapes `luminar-db metrics`' collector and Debian's
postgres_exporter on the test server, which between them serve every metric the dashboard's PromQL names.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from _monitoring import monitoring_sample  # noqa: F401  (a fixture)
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from luminar_store.database import Database
from luminar_store.ops.metrics import DatabaseCollector, NetworkCollector

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "init-scripts" / "monitoring"
DASHBOARD = json.loads((MONITORING / "dashboards" / "luminar.json").read_text())
DATASOURCES = {"luminar-postgres": "grafana-postgresql-datasource", "luminar-prometheus": "prometheus"}
PANEL_TYPES = {"row", "timeseries", "stat", "table", "geomap", "gauge", "bargauge", "text"}
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]


def sql_targets() -> list[tuple[dict, dict]]:
    return [(p, t) for p in PANELS for t in p["targets"] if t["datasource"]["uid"] == "luminar-postgres"]


def promql_targets() -> list[tuple[dict, dict]]:
    return [(p, t) for p in PANELS for t in p["targets"] if t["datasource"]["uid"] == "luminar-prometheus"]


# -- the dashboard's shape ---------------------------------------------------------------------------------------
def test_the_dashboard_follows_the_schema_rules():
    """The rules of Grafana's dashboard schema (schemaVersion 39) that a provisioned file must keep: identity, a
    24-column grid without overlaps, unique panel ids, known panel types, provisioned data sources, unique refIds."""
    d = DASHBOARD
    assert isinstance(d["uid"], str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"])
    assert d["title"] and d["schemaVersion"] >= 36 and isinstance(d["panels"], list)
    assert set(d["time"]) == {"from", "to"} and "id" not in d  # provisioning assigns the id
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) and i > 0 for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["type"] in PANEL_TYPES, p["title"]
        g = p["gridPos"]
        assert set(g) == {"x", "y", "w", "h"} and all(isinstance(v, int) for v in g.values()), p["title"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0 and g["y"] >= 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["title"] and p["description"], p["id"]
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in [p, *p["targets"]]:
            assert DATASOURCES.get(t["datasource"]["uid"]) == t["datasource"]["type"], p["title"]


def test_the_provisioning_files_name_the_dashboard_and_its_data_sources():
    postgres = yaml.safe_load((ROOT / "init-scripts" / "grafana-datasource.yml").read_text())["datasources"][0]
    prometheus = yaml.safe_load((MONITORING / "grafana-prometheus.yml").read_text())["datasources"][0]
    assert {postgres["uid"]: postgres["type"], prometheus["uid"]: prometheus["type"]} == DATASOURCES
    assert postgres["user"] == "luminar_grafana" and "password" not in postgres  # from the environment only
    provider = yaml.safe_load((MONITORING / "grafana-dashboards.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards/luminar"
    assert provider["allowUiUpdates"] is False


# -- the SQL panels, as Grafana runs them -------------------------------------------------------------------------
def expand(query: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros, expanded as Grafana does (quoted RFC 3339 times)."""
    at = lambda t: f"'{t.strftime('%Y-%m-%dT%H:%M:%SZ')}'"  # noqa: E731
    query = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {at(start)} AND {at(end)}", query)
    query = query.replace("$__timeFrom()", at(start)).replace("$__timeTo()", at(end))
    assert "$__" not in query, f"a macro the test does not expand: {query}"
    return query


def expected_columns(panel: dict, target: dict) -> set[str]:
    """The columns the panel reads from this query: a table's organize transformation, a geomap layer's location,
    size and colour fields, a time series' time column."""
    if panel["type"] == "table":
        return {c for t in panel.get("transformations", []) if t["id"] == "organize"
                for c in t["options"]["indexByName"]}
    if panel["type"] == "geomap":
        found = set()
        for layer in panel["options"]["layers"]:
            if layer["filterData"]["options"] == target["refId"]:
                style = layer["config"]["style"]
                found |= {layer["location"]["latitude"], layer["location"]["longitude"], style["size"]["field"],
                          style["color"]["field"]}
        return found
    return {"time"} if target["format"] == "time_series" else set()


@pytest.fixture
def sample(request):
    """The database with sample data and its logins (shared: _monitoring)."""
    return request.getfixturevalue("monitoring_sample")


def test_every_sql_panel_runs_as_the_grafana_login_and_returns_its_columns(sample):
    end = datetime.now(UTC) + timedelta(minutes=1)
    start = end - timedelta(days=3)
    assert len(sql_targets()) >= 5
    with psycopg.connect(sample.grafana.conninfo(), autocommit=True) as conn:
        for panel, target in sql_targets():
            cur = conn.execute(expand(target["rawSql"], start, end))
            columns, rows = [d.name for d in cur.description], cur.fetchall()
            want = expected_columns(panel, target)
            assert want and want <= set(columns), (panel["title"], want, columns)
            if panel["type"] == "table":
                assert set(columns) == want, (panel["title"], columns)
            assert rows, f"{panel['title']} ({target['refId']}) returned no row on sample data"
            if target["format"] == "time_series":
                assert all(isinstance(r[columns.index("time")], datetime) for r in rows)


def test_the_grafana_login_reads_no_report_or_event_row(sample):
    with psycopg.connect(sample.grafana.conninfo(), autocommit=True) as conn:
        for table in ("crime_events", "raw_incident_reports", "consensus_records", "audit_log"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))


# -- Prometheus, for real -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def query(base: str, promql: str) -> list[dict]:
    return get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")["data"]["result"]


def until(check, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.2)


def test_promtool_accepts_the_compose_scrape_configuration():
    ran = subprocess.run([tool("promtool"), "check", "config", str(MONITORING / "prometheus.yml")],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: make dev-setup installs Debian's prometheus and prometheus-postgres-exporter"
    return found


def test_prometheus_scrapes_our_endpoint_and_postgres_exporter(pg_server, sample, tmp_path):
    m = sample.monitor
    # The database itself as a read replica (not a standby: 0 bytes behind), so the replica series have samples.
    itself = f"postgresql://{m.user}:{m.password}@{m.host}:{m.port}/{m.name}"
    registry = CollectorRegistry(auto_describe=False)
    collector = NetworkCollector(pg_server.settings(m.name, LUMINAR_DB_USER=m.user, LUMINAR_DB_PASSWORD=m.password,
                                                    LUMINAR_DB_REPLICA_URLS=itself),
                                 refresh_every=0, scrape_wait=0.5)  # within the test's 1 s scrape timeout
    registry.register(collector)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    exporter_port, prometheus_port = free_port(), free_port()
    dsn = f"postgresql://{m.user}:{m.password}@{m.host}:{m.port}/{m.name}?sslmode=disable"
    exporter = subprocess.Popen(
        [tool("prometheus-postgres-exporter"), f"--web.listen-address=127.0.0.1:{exporter_port}",
         f"--extend.query-path={MONITORING / 'postgres-exporter-queries.yml'}"],
        env={"DATA_SOURCE_NAME": dsn, "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s")
    targets = {"luminar": f"127.0.0.1:{server.server_port}", "postgres": f"127.0.0.1:{exporter_port}",
               "prometheus": f"127.0.0.1:{prometheus_port}"}
    config["scrape_configs"] = [{"job_name": job, "static_configs": [{"targets": [target]}]}
                                for job, target in targets.items()]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = subprocess.Popen(
        [tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'db'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{prometheus_port}"
    try:
        until(lambda: {r["metric"]["job"]: r["value"][1] for r in query(base, "up")}
              == {"luminar": "1", "postgres": "1", "prometheus": "1"}, "three targets up")
        agreement = until(lambda: query(base, "luminar_consensus_agreement_percent"), "the agreement scraped")
        assert float(agreement[0]["value"][1]) == collector._snapshot.network.consensus_agreement_pct
        assert until(lambda: query(base, "pg_up == 1"), "postgres_exporter reaching the server")
        assert until(lambda: query(base, 'luminar_replica_up{replica="1"} == 1'), "the replica scraped")
        names = set(get(f"{base}/api/v1/label/__name__/values")["data"])
    finally:
        for process in (prometheus, exporter):
            process.kill()  # their data is thrown away: no clean shutdown to wait for
        for process in (prometheus, exporter):
            process.wait(timeout=30)
        server.shutdown()
        thread.join(timeout=10)
    names |= node_metric_names(sample)
    names |= custom_exporter_names()
    used = {name for _, t in promql_targets() for name in re.findall(r"\b(?:luminar|pg)_[a-z_]+\b", t["expr"])}
    assert used and used <= names, f"the dashboard names metrics nobody serves: {sorted(used - names)}"


def node_metric_names(sample) -> set[str]:
    """What a node serves when it mounts DatabaseCollector (the compose job luminar-nodes)."""
    from _async import run

    async def go() -> str:
        async with Database(sample.owner) as database:
            async with database.connection() as conn:
                await conn.execute("SELECT 1")
            registry = CollectorRegistry(auto_describe=False)
            registry.register(DatabaseCollector(database))
            return generate_latest(registry).decode()

    return {s.name for f in text_string_to_metric_families(run(go())) for s in f.samples}


def custom_exporter_names() -> set[str]:
    """The series of postgres_exporter's own queries file (pg_stat_statements needs the server to preload it, which
    the test server does not: their names come from the file that defines them)."""
    queries = yaml.safe_load((MONITORING / "postgres-exporter-queries.yml").read_text())
    return {f"{namespace}_{column}" for namespace, spec in queries.items() for metric in spec["metrics"]
            for column, how in metric.items() if how["usage"] != "LABEL"}
