"""Real-time copies of the central database: PostgreSQL's own logical replication.

The central database publishes its changes (publication ``luminar_changes``, made by the migrations: the reports,
events, consensus records, scores, clusters and zones); a local database subscribes to it (subscription
``luminar_from_central``), first copying what the tables hold, then applying every insert, update and delete as
central commits it. What it takes, on PostgreSQL 15:

- central: ``wal_level = logical`` (a restart) and a login with ``REPLICATION`` that bypasses row-level security
  (the initial copy reads whole tables) and reads the tables (``luminar_sync``):
  ``luminar-db roles add-replicator LOGIN`` makes it (``add_replicator``);
- local: a superuser creates the subscription (``--admin-url``; the local cluster's own on this machine), into a
  database at the same migration as central whose copied tables are empty.

Applied changes fire no local trigger (the apply worker runs with ``session_replication_role = replica``): the copy
is central's, audit rows included nowhere twice. Schema changes: migrate the local database first, then central
(a subscriber must have a column before the publisher sends it). ``status`` reports the lag in bytes (central's
current WAL position against what the subscription has applied) and seconds since central's last message.

Example::

    >>> subscribe(local_owner_settings, central_url, admin_url=admin)
    >>> realtime_status(local_owner_settings, central_url)
    Replication(state='streaming', tables_ready=8, tables=8, lag_bytes=0, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from luminar_store.config import Settings
from luminar_store.errors import OperationError, ValidationError
from luminar_store.ops.connect import connect
from luminar_store.ops.provision import scram_verifier

__all__ = ["PUBLICATION", "SUBSCRIPTION", "COPIED_TABLES", "Replication", "add_replicator", "subscribe",
           "set_enabled", "unsubscribe", "realtime_status"]

PUBLICATION = "luminar_changes"
SUBSCRIPTION = "luminar_from_central"
#: The tables a copy holds (the publication's, in the order a person reads them). crime_incidents,
#: incident_cell_days and incident_cell_hours are kept by triggers on central, which do not fire for applied changes:
#: the copy receives central's rows.
COPIED_TABLES = ("raw_incident_reports", "crime_events", "crime_incidents", "incident_cell_days", "incident_cell_hours",
                 "consensus_records", "miner_performance", "validator_performance", "crime_clusters", "risk_zones")

LATEST_MIGRATION = "SELECT max(version) FROM schema_migrations WHERE NOT dirty"
HAS_PUBLICATION = "SELECT 1 FROM pg_publication WHERE pubname = %(name)s"
WAL_LEVEL = "SELECT current_setting('wal_level')"
SUBSCRIPTION_STATE = """
SELECT s.subenabled,
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid),
       (SELECT count(*) FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate = 'r'),
       (SELECT st.latest_end_lsn FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.relid IS NULL),
       (SELECT st.last_msg_receipt_time FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.relid IS NULL),
       (SELECT st.pid FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.relid IS NULL)
  FROM pg_subscription s
 WHERE s.subname = %(name)s AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
CURRENT_LSN = "SELECT pg_current_wal_lsn()"
LSN_DIFF = "SELECT pg_wal_lsn_diff(%(central)s::pg_lsn, %(applied)s::pg_lsn)::bigint"


@dataclass(frozen=True)
class Replication:
    """A subscription's state: ``none``, ``disabled``, ``copying`` (the initial copy), ``streaming`` or ``stopped``
    (enabled, no worker running); tables copied (ready) of all; bytes of central's WAL not applied yet (None when
    central was not asked); when central last sent anything."""

    state: str
    tables_ready: int
    tables: int
    lag_bytes: int | None
    last_message: datetime | None


def add_replicator(admin: psycopg.Connection, login: str, password: str) -> bool:
    """On central, through an administrator's session: the login a local copy's subscription connects as, with
    ``REPLICATION`` and ``BYPASSRLS`` (the initial copy reads whole tables under row security), a member of
    ``luminar_sync``; its password sent as a SCRAM verifier. Returns True when it was created (an existing one gets
    the attributes and membership). Raises ``ValidationError`` for a bad login or an empty password,
    ``OperationError`` when the session may not create roles."""
    from luminar_store.ops.roles import check_login  # roles builds on provision, as this module does

    login = check_login(login)
    if not password:
        raise ValidationError("password", "a replicator logs in from another server: give it a password")
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %(login)s", {"login": login}).fetchone()
    try:
        with admin.transaction():
            verifier = sql.Literal(scram_verifier(password))
            if exists:
                admin.execute(sql.SQL("ALTER ROLE {} LOGIN REPLICATION BYPASSRLS PASSWORD {}").format(
                    sql.Identifier(login), verifier))
            else:
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION BYPASSRLS PASSWORD {}").format(
                    sql.Identifier(login), verifier))
            admin.execute(sql.SQL("GRANT luminar_sync TO {}").format(sql.Identifier(login)))
    except psycopg.errors.InsufficientPrivilege:
        raise OperationError("a replicator needs REPLICATION and BYPASSRLS, which only a superuser gives; pass "
                             "--admin-url with a superuser's connection") from None
    return not exists


def _latest(conn: psycopg.Connection) -> str | None:
    return conn.execute(LATEST_MIGRATION).fetchone()[0]


def subscribe(local: Settings, source_url: str, *, admin_url: str, copy_data: bool = True) -> None:
    """Subscribe the local database (``local``: the owner's settings) to central's changes: the initial copy, then
    every change as central commits it. Every precondition is checked first, and nothing is changed when one fails:
    the local database is not production, both are at the same migration and central publishes, central's
    ``wal_level`` is logical, the copied tables are empty locally (``copy_data``), no subscription exists yet.

    Raises ``OperationError`` naming what is missing and the fix, ``DatabaseUnavailableError`` (a server does not
    answer).
    """
    if local.rules.production:
        raise OperationError(f"{local.target()} is production: a central database is never a copy")
    central = Settings.from_conninfo(source_url, env="production")
    with connect(central) as source:
        if source.execute(WAL_LEVEL).fetchone()[0] != "logical":
            raise OperationError(f"central ({central.describe()}) has wal_level below logical; set wal_level = "
                                 "logical there and restart it, or use `luminar-db sync --hours` (pulls)")
        if not source.execute(HAS_PUBLICATION, {"name": PUBLICATION}).fetchone():
            raise OperationError(f"central ({central.describe()}) publishes nothing: migrate it (`luminar-db "
                                 "migrate`), which creates the publication")
        theirs = _latest(source)
    with connect(local) as conn:
        ours = _latest(conn)
        if ours != theirs:
            raise OperationError(f"the local database is at migration {ours}, central at {theirs}: migrate both to "
                                 "the same version (the local one first) before subscribing")
        if _subscription(conn) is not None:
            raise OperationError(f"{local.target()} already subscribes ({SUBSCRIPTION}); see `luminar-db sync "
                                 "--status`, or --stop first")
        if copy_data:
            held = [table for table in COPIED_TABLES if conn.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))).fetchone()[0]]
            if held:
                raise OperationError(f"the local tables {', '.join(held)} hold rows, which the initial copy would "
                                     "collide with; reset the local database first (make db-reset)")
    statement = sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (copy_data = {})").format(
        sql.Identifier(SUBSCRIPTION), sql.Literal(source_url), sql.Identifier(PUBLICATION),
        sql.Literal(copy_data))
    with connect(local, admin_url=admin_url) as admin:
        try:
            admin.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            raise OperationError("creating a subscription needs a superuser on the local server; pass --admin-url "
                                 "(this machine's local cluster gives its own)") from None
        except psycopg.OperationalError as exc:
            reason = str(exc).replace(str(central.password), "***") if central.password else str(exc)
            raise OperationError(f"the local server could not reach central: {reason.splitlines()[0]}") from None


def set_enabled(local: Settings, enabled: bool, *, admin_url: str) -> bool:
    """Stop (``enabled=False``) or restart the subscription, keeping what was copied and central's slot, so a
    restart goes on from where it stopped. Returns False when there is no subscription."""
    with connect(local, admin_url=admin_url) as admin:
        if _subscription(admin) is None:
            return False
        action = "ENABLE" if enabled else "DISABLE"
        admin.execute(sql.SQL("ALTER SUBSCRIPTION {} " + action).format(sql.Identifier(SUBSCRIPTION)))
    return True


def unsubscribe(local: Settings, *, admin_url: str) -> bool:
    """Drop the subscription (and central's replication slot with it); the copied rows stay. False when none."""
    with connect(local, admin_url=admin_url) as admin:
        if _subscription(admin) is None:
            return False
        admin.execute(sql.SQL("DROP SUBSCRIPTION {}").format(sql.Identifier(SUBSCRIPTION)))
    return True


def _subscription(conn: psycopg.Connection) -> tuple | None:
    return conn.execute(SUBSCRIPTION_STATE, {"name": SUBSCRIPTION}).fetchone()


def realtime_status(local: Settings, source_url: str | None = None) -> Replication:
    """The subscription's state, and its lag in bytes when ``source_url`` (central) is given and answers."""
    with connect(local) as conn:
        row = _subscription(conn)
        if row is None:
            return Replication("none", 0, 0, None, None)
        enabled, tables, ready, applied, last_message, pid = row
        lag = None
        if source_url and applied is not None:
            with connect(Settings.from_conninfo(source_url, env="production")) as source:
                central_lsn = source.execute(CURRENT_LSN).fetchone()[0]
            lag = max(conn.execute(LSN_DIFF, {"central": central_lsn, "applied": applied}).fetchone()[0], 0)
    if not enabled:
        state = "disabled"
    elif pid is None:
        state = "stopped"
    else:
        state = "copying" if ready < tables else "streaming"
    return Replication(state, ready, tables, lag, last_message)
