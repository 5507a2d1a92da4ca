"""Prometheus metrics: the network's figures for ``luminar-db metrics``, and a node's own pool for its registry.

Two collectors, for ``prometheus_client`` (the optional extra ``metrics``: ``pip install 'luminar_store[metrics]'``):

- ``NetworkCollector(settings)``: what ``luminar-db metrics`` serves. The specification's key metrics are
  ``luminar_store.ops.stats.collect_stats``'s, read through the same call (one definition each: throughput,
  consensus accuracy, coverage by region, miner success rates, active nodes), beside replica health and lag
  (measured as ``luminar-db status`` does), the database's size and its largest tables, pending migrations, and the
  time since the last successful backup (the newest complete dump of ``luminar-db backup``) and sync
  (``luminar_stats_last_sync()``). It reads as the monitor role: the login must be (a member of)
  ``luminar_monitor``, and the session runs ``SET ROLE luminar_monitor``, so it sees aggregates only.
  Each scrape is bounded: values are read at most every ``refresh_every`` seconds (cached in between, their age
  exported as ``luminar_metrics_age_seconds``), in a thread of their own, each query under ``statement_timeout``
  (and each connection attempt too); a scrape waits at most ``scrape_wait`` seconds for a read it started, then
  serves the cache. A failed read keeps the last values (``luminar_metrics_up`` 0,
  ``luminar_metrics_refresh_errors_total`` counts); a scrape arriving while a read runs serves the cache.
- ``DatabaseCollector(database)``: a node's own ``Database``: each pool's connections in use, idle and waiting,
  its error counters, whether each server is up, and each replica's lag as last measured. It asks no server; mount
  it on the node's own registry: ``registry.register(DatabaseCollector(db))``.

Example::

    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> registry = CollectorRegistry()
    >>> registry.register(NetworkCollector(load_settings("local")))
    >>> print(generate_latest(registry).decode())
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from luminar_store.config import Settings
from luminar_store.errors import LuminarError, OperationError
from luminar_store.ops import stats
from luminar_store.ops.backup import DEFAULT_BACKUP_DIR, last_backup
from luminar_store.ops.connect import connect

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - the extra is not installed
    GaugeMetricFamily = CounterMetricFamily = None  # type: ignore[assignment,misc]
    Collector = object  # type: ignore[assignment,misc]

__all__ = ["MONITOR_ROLE", "DEFAULT_REFRESH_EVERY", "DEFAULT_STATEMENT_TIMEOUT", "DEFAULT_SCRAPE_WAIT",
           "LARGEST_TABLES", "Snapshot", "NetworkCollector", "DatabaseCollector", "read_snapshot", "require_client"]

log = logging.getLogger(__name__)

#: The group role the metrics read as.
MONITOR_ROLE = "luminar_monitor"
#: Seconds a reading is served before the next scrape reads again.
DEFAULT_REFRESH_EVERY = 30.0
#: Seconds one query of a refresh may run (statement_timeout) before the refresh gives up and keeps the last values.
DEFAULT_STATEMENT_TIMEOUT = 5.0
#: Seconds a scrape waits for the read it started before it serves the cached values (Prometheus' own scrape
#: timeout is 10 s by default).
DEFAULT_SCRAPE_WAIT = 3.0
#: How many of the largest tables get their own size series.
LARGEST_TABLES = 10

IS_MONITOR = "SELECT pg_has_role(current_user, %(role)s, 'MEMBER')"
SET_MONITOR = "SET ROLE luminar_monitor"
DATABASE_SIZE = "SELECT pg_database_size(current_database())"
# The largest tables of the public schema, their indexes and TOAST included (sizes need no right on the table).
TABLE_SIZES = """
SELECT c.relname, pg_total_relation_size(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm')
 ORDER BY 2 DESC, 1
 LIMIT %(limit)s
"""
LAST_SYNC = "SELECT luminar_stats_last_sync()"


def require_client() -> None:
    """Raise ``OperationError`` naming the install command when ``prometheus_client`` is missing."""
    if GaugeMetricFamily is None:
        raise OperationError("the metrics need the prometheus-client library: pip install 'luminar_store[metrics]'")


@dataclass
class Snapshot:
    """One reading of the network's figures, as ``read_snapshot`` found them."""

    network: stats.NetworkStats
    database_bytes: int
    tables: list[tuple[str, int]]
    migrations_applied: int
    migrations_pending: int
    last_sync: datetime | None
    last_backup: datetime | None
    replicas: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0


def as_monitor(conn: psycopg.Connection, login: str) -> None:
    """Make ``conn``'s session the monitor's (``SET ROLE luminar_monitor``); ``OperationError`` naming the fix when
    ``login`` is not a member of it."""
    if not conn.execute(IS_MONITOR, {"role": MONITOR_ROLE}).fetchone()[0]:
        raise OperationError(f"login {login} is not a member of {MONITOR_ROLE}, which the metrics read as; as an "
                             f"administrator: GRANT {MONITOR_ROLE} TO {login}; or give --url with a monitor login")
    conn.execute(SET_MONITOR)


def _migrations(conn: psycopg.Connection, directory: Path | None) -> tuple[int, int]:
    from luminar_store.migrator import Recorder, discover_migrations, migrations_directory
    from luminar_store.migrator.plan import statuses

    found = statuses(discover_migrations(migrations_directory(directory)), Recorder(conn).applied())
    return (sum(1 for s in found if s.state == "applied"), sum(1 for s in found if s.state == "pending"))


def read_snapshot(settings: Settings, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
                  migrations_dir: Path | None = None, backup_dir: Path = DEFAULT_BACKUP_DIR,
                  hours: int = 24, days: int = 7) -> Snapshot:
    """Read every figure once, as the monitor, each query under ``statement_timeout`` seconds. Raises
    ``DatabaseUnavailableError``, ``OperationError`` (not a monitor login) or ``psycopg.Error`` (a query failed or
    timed out)."""
    from luminar_store.ops.status import measure_replicas

    started = time.perf_counter()
    # libpq's connect_timeout is whole seconds (at least 2 s in effect): a server that does not answer costs a read
    # about the statement timeout, not the settings' 10 s.
    settings = replace(settings, connect_timeout=max(1, min(settings.connect_timeout, math.ceil(statement_timeout))))
    with connect(settings) as conn:
        as_monitor(conn, settings.user)
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{int(statement_timeout * 1000)}ms",))
        stats.require_stats_functions(conn, settings.name)
        network = stats.collect_stats(conn, hours=hours, days=days)
        database_bytes = conn.execute(DATABASE_SIZE).fetchone()[0]
        tables = [(name, size) for name, size in conn.execute(TABLE_SIZES, {"limit": LARGEST_TABLES}).fetchall()]
        applied, pending = _migrations(conn, migrations_dir)
        last_sync = conn.execute(LAST_SYNC).fetchone()[0]
    replicas = [{"replica": str(m.index + 1), "up": m.lag is not None,
                 "lag_bytes": None if m.lag is None else m.lag.bytes,
                 "lag_seconds": None if m.lag is None else m.lag.seconds,
                 "in_use": m.lag is not None and m.lag.bytes <= settings.replica_max_lag}
                for m in measure_replicas(settings)]
    return Snapshot(network=network, database_bytes=database_bytes, tables=tables, migrations_applied=applied,
                    migrations_pending=pending, last_sync=last_sync, last_backup=last_backup(settings, backup_dir),
                    replicas=replicas, seconds=time.perf_counter() - started)


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None,
           rows: list[tuple[list[str], float]] | None = None):
    family = GaugeMetricFamily(name, doc, value=value, labels=labels)
    for label_values, v in rows or []:
        family.add_metric(label_values, v)
    return family


def _age(at: datetime | None, now: datetime) -> float:
    """Seconds since ``at``; NaN when never (a comparison with NaN is false: an alert on ``> N`` needs its own
    rule for "never", as the README says)."""
    return float("nan") if at is None else max((now - at).total_seconds(), 0.0)


class NetworkCollector(Collector):
    """The network's figures for Prometheus, read as the monitor, at most every ``refresh_every`` seconds."""

    def __init__(self, settings: Settings, *, refresh_every: float = DEFAULT_REFRESH_EVERY,
                 statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT, scrape_wait: float = DEFAULT_SCRAPE_WAIT,
                 migrations_dir: Path | None = None, backup_dir: Path = DEFAULT_BACKUP_DIR,
                 clock: Callable[[], float] = time.monotonic) -> None:
        require_client()
        self.settings = settings
        self.refresh_every = refresh_every
        self.scrape_wait = scrape_wait
        self._clock = clock
        self._read = lambda: read_snapshot(settings, statement_timeout=statement_timeout,
                                           migrations_dir=migrations_dir, backup_dir=backup_dir)
        self._starting = threading.Lock()
        self._reader: threading.Thread | None = None
        self._snapshot: Snapshot | None = None
        self._read_at = float("-inf")
        self._up = False
        self._errors = 0
        self._last_error: str | None = None

    @property
    def last_error(self) -> str | None:
        """The last refresh's failure, ``None`` after a success."""
        return self._last_error

    def refresh(self, wait: float | None = None) -> None:
        """Read in a thread of its own and wait for it up to ``wait`` seconds; a read under way is waited for rather
        than doubled. ``wait`` None: a whole read that starts now (after the one under way, if any). Never raises:
        a failure is logged once, counted, and the last values stay."""
        if wait is None:
            with self._starting:
                in_flight = self._reader
            if in_flight is not None:
                in_flight.join()
        self._start().join(wait)

    def _start(self) -> threading.Thread:
        with self._starting:
            if self._reader is None or not self._reader.is_alive():
                self._reader = threading.Thread(target=self._read_once, name="luminar-metrics-read", daemon=True)
                self._reader.start()
            return self._reader

    def _read_once(self) -> None:
        try:
            snapshot = self._read()
        except (LuminarError, psycopg.Error, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if self._up or self._last_error != reason:
                log.warning("metrics: reading the database failed, serving the last values: %s", reason)
            self._up, self._errors, self._last_error = False, self._errors + 1, reason
        except Exception as exc:  # a bug: the endpoint keeps serving the last values, the log has the traceback
            log.exception("metrics: reading the database failed unexpectedly")
            self._up, self._errors, self._last_error = False, self._errors + 1, repr(exc)
        else:
            if not self._up and self._last_error is not None:
                log.info("metrics: reading the database again")
            self._snapshot, self._read_at, self._up, self._last_error = snapshot, self._clock(), True, None

    def collect(self) -> Iterator[object]:
        if self._clock() - self._read_at >= self.refresh_every:
            self.refresh(self.scrape_wait)
        yield _gauge("luminar_metrics_up", "1 when the last refresh read the database, else 0", float(self._up))
        yield CounterMetricFamily("luminar_metrics_refresh_errors", "Refreshes that failed (the last values stay)",
                                  value=self._errors)
        s = self._snapshot
        if s is None:
            return
        yield _gauge("luminar_metrics_age_seconds", "Seconds since the values served were read",
                     max(self._clock() - self._read_at, 0.0))
        yield _gauge("luminar_metrics_read_seconds", "Seconds the last refresh took", s.seconds)
        yield from self._network(s.network)
        now = datetime.now(UTC)
        yield _gauge("luminar_database_size_bytes", "Size of the database on disk", s.database_bytes)
        yield _gauge("luminar_table_size_bytes", f"Size of the {LARGEST_TABLES} largest tables, indexes included",
                     labels=["table"], rows=[([name], size) for name, size in s.tables])
        yield _gauge("luminar_migrations_applied", "Migrations applied", s.migrations_applied)
        yield _gauge("luminar_migrations_pending", "Migrations shipped but not applied", s.migrations_pending)
        yield _gauge("luminar_last_sync_age_seconds", "Seconds since the last successful sync finished (NaN: never)",
                     _age(s.last_sync, now))
        yield _gauge("luminar_last_backup_age_seconds", "Seconds since the newest complete backup (NaN: none)",
                     _age(s.last_backup, now))
        yield _gauge("luminar_replica_up", "1 when the read replica answered", labels=["replica"],
                     rows=[([r["replica"]], float(r["up"])) for r in s.replicas])
        yield _gauge("luminar_replica_in_use", "1 when reads use the replica (up, lag under the limit)",
                     labels=["replica"], rows=[([r["replica"]], float(r["in_use"])) for r in s.replicas])
        yield _gauge("luminar_replica_lag_bytes", "Bytes of WAL the replica is behind the primary",
                     labels=["replica"], rows=[([r["replica"]], r["lag_bytes"]) for r in s.replicas if r["up"]])
        yield _gauge("luminar_replica_lag_seconds", "Seconds since the replica's last replayed transaction",
                     labels=["replica"], rows=[([r["replica"]], r["lag_seconds"]) for r in s.replicas if r["up"]])

    @staticmethod
    def _network(n: stats.NetworkStats) -> Iterator[object]:
        nan = float("nan")
        pct = lambda v: nan if v is None else float(v)  # noqa: E731
        yield _gauge("luminar_reports", "Raw reports by status", labels=["status"],
                     rows=[([k], v) for k, v in n.reports_by_status.items()])
        yield _gauge("luminar_events", "Crime events by verification status", labels=["status"],
                     rows=[([k], v) for k, v in n.events_by_status.items()])
        yield _gauge("luminar_throughput_reports_per_hour",
                     f"Reports per hour over the last {n.window_hours} h: settled (processed or rejected), received",
                     labels=["kind"], rows=[(["processed"], n.processed_per_hour),
                                            (["received"], n.received_per_hour)])
        yield _gauge("luminar_consensus_agreement_percent",
                     f"Validator agreement over the last {n.consensus_window_days} days: share of validator scores "
                     "within the tolerance of their round's mean", pct(n.consensus_agreement_pct))
        yield _gauge("luminar_consensus_scores_compared", "Validator scores compared for the agreement",
                     n.consensus_records_compared)
        yield _gauge("luminar_validator_accuracy_percent", "Lifetime agreement of the active validators",
                     pct(n.validator_accuracy_pct))
        yield _gauge("luminar_coverage_events", "Events by region", labels=["region"],
                     rows=[([str(c["region"])], c["events"]) for c in n.coverage])
        yield _gauge("luminar_coverage_verified_events", "Verified events by region", labels=["region"],
                     rows=[([str(c["region"])], c["verified"]) for c in n.coverage])
        yield _gauge("luminar_miner_success_rate_percent", "Active miners' success rates (rounds scoring >= 0.5)",
                     labels=["stat"], rows=[([k], pct(v)) for k, v in (("avg", n.miner_success_rate_avg),
                                                                       ("min", n.miner_success_rate_min),
                                                                       ("max", n.miner_success_rate_max))])
        yield _gauge("luminar_miner_average_score", "Active miners' average overall score", pct(n.miner_avg_score))
        yield _gauge("luminar_nodes", "Nodes by kind and activity", labels=["kind", "state"],
                     rows=[(["miner", "active"], n.active_miners),
                           (["miner", "inactive"], n.miners_total - n.active_miners),
                           (["validator", "active"], n.active_validators),
                           (["validator", "inactive"], n.validators_total - n.active_validators)])


#: psycopg_pool's counters exported per pool (missing ones are 0: the pool counts only what happened).
POOL_COUNTERS = {
    "requests_num": "Connections requested",
    "requests_errors": "Requests that failed (timed out or refused)",
    "connections_errors": "Connection attempts that failed",
    "connections_lost": "Connections found broken",
}


class DatabaseCollector(Collector):
    """A node's ``Database``: pools, servers and replicas, as the object last saw them (asks no server)."""

    def __init__(self, database) -> None:
        require_client()
        self.database = database

    def collect(self) -> Iterator[object]:
        pools = self.database.pool_stats()
        rows = lambda key: [([label], float(s.get(key, 0))) for label, s in pools.items()]  # noqa: E731
        yield _gauge("luminar_pool_connections_in_use", "Connections lent out", labels=["pool"],
                     rows=[([label], float(s.get("pool_size", 0) - s.get("pool_available", 0)))
                           for label, s in pools.items()])
        yield _gauge("luminar_pool_connections_idle", "Connections open and free", labels=["pool"],
                     rows=rows("pool_available"))
        yield _gauge("luminar_pool_connections_max", "Most connections the pool opens", labels=["pool"],
                     rows=rows("pool_max"))
        yield _gauge("luminar_pool_requests_waiting", "Requests waiting for a connection", labels=["pool"],
                     rows=rows("requests_waiting"))
        for key, doc in POOL_COUNTERS.items():
            family = CounterMetricFamily(f"luminar_pool_{key}", doc, labels=["pool"])
            for label_values, value in rows(key):
                family.add_metric(label_values, value)
            yield family
        servers = self.database.server_status()
        yield _gauge("luminar_server_up", "1 while the server answers (as this node last saw it)", labels=["pool"],
                     rows=[([label], float(s.up)) for label, s in servers.items()])
        replicas = self.database.replica_status()
        yield _gauge("luminar_node_replica_in_use", "1 when this node's reads use the replica", labels=["pool"],
                     rows=[([r.name], float(r.in_use)) for r in replicas])
        yield _gauge("luminar_node_replica_lag_bytes", "The replica's lag as this node last measured it",
                     labels=["pool"], rows=[([r.name], float(r.lag_bytes)) for r in replicas
                                            if r.lag_bytes is not None])
