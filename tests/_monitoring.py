"""A database with sample data and monitoring logins, for tests/test_monitoring.py and tests/test_dashboard.py.

``monitoring_sample`` (import it into a test module: it is a fixture) is one such database per module that uses
it; ``sample_database(pg_server)`` is the context manager behind it: a copy of the migrated template with the
synthetic loader's data (400 reports over 3 days) and a planted cell of six verified events in Paris (so
``public_hotspots`` has a row whatever the seed), a login in ``luminar_monitor`` (as ``luminar_metrics``) and one
in ``luminar_reader`` and ``luminar_monitor`` (as ``luminar_grafana``); ``luminar_monitor`` gets ``pg_monitor`` as
provisioning gives it. Logins are the cluster's: dropped on exit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.ops.synthetic import load_sample_data

__all__ = ["HOTSPOT", "Sample", "sample_database", "monitoring_sample"]

HOTSPOT = (48.8566, 2.3522)


@dataclass(frozen=True)
class Sample:
    owner: Settings
    monitor: Settings
    grafana: Settings


@contextmanager
def sample_database(pg_server) -> Iterator[Sample]:
    name = f"m_{uuid.uuid4().hex[:12]}"
    logins = {"monitor": (f"mon_{uuid.uuid4().hex[:10]}", ["luminar_monitor"]),
              "grafana": (f"graf_{uuid.uuid4().hex[:10]}", ["luminar_reader", "luminar_monitor"])}
    password = uuid.uuid4().hex
    with pg_server.janitor(name, template=pg_server.template):
        owner = pg_server.settings(name)
        with psycopg.connect(owner.conninfo(), autocommit=True) as conn:
            load_sample_data(conn, reports=400, days=3, seed=11)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", "
                    "severity_level, confidence_score, verification_status) "
                    "VALUES (1, 'theft', %s, %s, now() - interval '2 hours', 3, 0.9, 'verified')",
                    [HOTSPOT] * 6)
            conn.execute("GRANT pg_monitor TO luminar_monitor")
            for login, groups in logins.values():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(password), sql.SQL(", ").join(map(sql.Identifier, groups))))
        try:
            yield Sample(owner, *(pg_server.settings(name, LUMINAR_DB_USER=login, LUMINAR_DB_PASSWORD=password)
                                  for login, _ in logins.values()))
        finally:
            with psycopg.connect(pg_server.conninfo("postgres"), autocommit=True) as admin:
                for login, _ in logins.values():
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                                  (login,))
                    admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


@pytest.fixture(scope="module")
def monitoring_sample(pg_server) -> Iterator[Sample]:
    with sample_database(pg_server) as found:
        yield found
