"""Restoring as production does it: the database's owner role (no superuser) restores into a database an
administrator provisioned with PostGIS; ownership and grants survive, whoever runs the restore."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
import pytest
from _async import run
from _cli import cli_env, one_line_error
from psycopg import sql
from test_backup_restore import fingerprint

from luminar_store.access import LuminarDB
from luminar_store.config import Settings
from luminar_store.errors import OperationError
from luminar_store.migrator import DEFAULT_DIR, migrate_database
from luminar_store.ops.backup import backup_database, tool_reason
from luminar_store.ops.provision import ensure_role
from luminar_store.ops.restore import restore_database

SECRET = "owner-secret-not-for-printing"


@dataclass
class Cluster:
    """Roles and databases made by one test on the session's server, all dropped at teardown."""

    server: object
    owner: str
    group: str
    databases: list[str] = field(default_factory=list)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.server.conninfo(dbname), autocommit=True)

    def as_owner(self, dbname: str) -> Settings:
        return self.server.settings(dbname, LUMINAR_DB_USER=self.owner, LUMINAR_DB_PASSWORD=SECRET)

    def as_superuser(self, dbname: str) -> Settings:
        return self.server.settings(dbname)

    def provision(self, *, prefix: str = "p") -> str:
        """A database owned by the owner role with PostGIS created by the administrator, as at provisioning."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.databases.append(name)
        with self.admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                        sql.Identifier(self.owner)))
        with self.admin(name) as conn:
            conn.execute("CREATE EXTENSION postgis")
        return name


@pytest.fixture
def cluster(pg_server) -> Iterator[Cluster]:
    suffix = uuid.uuid4().hex[:8]
    # The group's name needs quoting in SQL (capitals, a dash): grants to it must survive pg_dump's quoting.
    made = Cluster(server=pg_server, owner=f"owner_{suffix}", group=f"Readers-{suffix}")
    with made.admin() as conn:
        ensure_role(conn, made.owner, SECRET)
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(made.group)))
    try:
        yield made
    finally:
        with made.admin() as conn:
            for name in made.databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (made.group, made.owner):
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %(r)s", {"r": role}).fetchone()
                if exists:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                    conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _store_and_read(settings: Settings, title: str) -> list[str]:
    """Store one event through the facade with ``settings`` and read the recent ones back (their titles)."""
    db = LuminarDB(settings)

    async def go() -> list[str]:
        await db.initialize()
        try:
            await db.store_crime_event({"event_type": "burglary", "geotag": {"lat": 40.7128, "lng": -74.0060},
                                        "timestamp": datetime.now(UTC), "severity": 3, "confidence_score": 0.8,
                                        "title": title}, miner_uid=11)
            return sorted(e.title for e in await db.get_recent_events(hours=24, limit=100))
        finally:
            await db.close()

    return run(go())


@pytest.fixture
def source(cluster) -> Settings:
    """A provisioned database migrated by the owner, with two events, SELECT on crime_events for the group and, by
    default, on the tables the owner creates later."""
    settings = cluster.as_owner(cluster.provision(prefix="src"))
    migrate_database(settings, DEFAULT_DIR)
    assert _store_and_read(settings, "first") == ["first"]
    assert _store_and_read(settings, "second") == ["first", "second"]
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON crime_events TO {}").format(sql.Identifier(cluster.group)))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}").format(
            sql.Identifier(cluster.group)))
    return settings


@pytest.fixture
def dump(source, tmp_path):
    return backup_database(source, tmp_path / "owner.dump").path


OWNERS = """
SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                AND d.deptype = 'e')
UNION ALL
SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                                AND d.deptype = 'e')
"""


def owners(cluster: Cluster, dbname: str) -> dict[str, str]:
    """Every table, view, sequence and function of the project in ``dbname`` (not PostGIS's) and its owner."""
    with cluster.admin(dbname) as conn:
        return dict(conn.execute(OWNERS).fetchall())


def can_select(cluster: Cluster, dbname: str, role: str, table: str) -> bool:
    with cluster.admin(dbname) as conn:
        return conn.execute("SELECT has_table_privilege(%(role)s, %(table)s, 'SELECT')",
                            {"role": role, "table": f"public.{table}"}).fetchone()[0]


def user_tables(cluster: Cluster, dbname: str) -> int:
    with cluster.admin(dbname) as conn:
        return conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public' "
                            "AND tablename <> 'spatial_ref_sys'").fetchone()[0]


def test_the_owner_restores_rows_ownership_and_grants_without_superuser(cluster, source, dump):
    target = cluster.as_owner(cluster.provision(prefix="dst"))
    result = restore_database(target, dump)
    assert result.owner == cluster.owner and not result.created_extensions
    assert fingerprint(target) == fingerprint(source)
    owned = owners(cluster, target.name)
    assert "crime_events" in owned and set(owned.values()) == {cluster.owner}, owned
    assert can_select(cluster, target.name, cluster.group, "crime_events")
    assert not can_select(cluster, target.name, cluster.group, "raw_incident_reports")
    with cluster.admin(target.name) as conn:
        grants = conn.execute("SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants "
                              "WHERE grantee = %(g)s", {"g": cluster.group}).fetchall()
    assert grants == [(cluster.group, "crime_events", "SELECT")]
    assert _store_and_read(target, "after restore") == ["after restore", "first", "second"]
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:  # the default privileges came back too
        conn.execute("CREATE TABLE later_table (id int)")
    assert can_select(cluster, target.name, cluster.group, "later_table")


def test_the_owner_replaces_a_migrated_database_with_clean(cluster, source, dump):
    target = cluster.as_owner(cluster.provision(prefix="cln"))
    migrate_database(target, DEFAULT_DIR)
    assert _store_and_read(target, "to be replaced") == ["to be replaced"]
    restore_database(target, dump, clean=True)
    assert fingerprint(target) == fingerprint(source)
    assert set(owners(cluster, target.name).values()) == {cluster.owner}
    assert can_select(cluster, target.name, cluster.group, "crime_events")


def test_a_superuser_restore_leaves_every_object_to_the_databases_owner(cluster, source, dump):
    name = cluster.provision(prefix="su")
    result = restore_database(cluster.as_superuser(name), dump)
    assert result.owner == cluster.owner
    owned = owners(cluster, name)
    assert "crime_events" in owned and set(owned.values()) == {cluster.owner}, owned
    assert can_select(cluster, name, cluster.group, "crime_events")
    # The nodes' side, with the owner's settings, works on what the superuser restored.
    assert _store_and_read(cluster.as_owner(name), "by owner") == ["by owner", "first", "second"]


def test_a_grantee_missing_on_the_server_fails_naming_the_role_and_nothing_changes(cluster, source, dump, cli_run):
    with cluster.admin(source.name) as conn:  # the grant stays in the backup; the role leaves the server
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(cluster.group)))
    with cluster.admin() as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(cluster.group)))
    target = cluster.as_owner(cluster.provision(prefix="miss"))
    with pytest.raises(OperationError) as caught:
        restore_database(target, dump)
    message = str(caught.value)
    assert cluster.group in message and "provision the roles first" in message and "nothing was changed" in message
    assert user_tables(cluster, target.name) == 0
    result = cli_run(["restore", str(dump)], cli_env(target))
    line = one_line_error(result)
    assert result.exit_code != 0 and cluster.group in line and SECRET not in result.output


def test_a_failed_restore_shows_the_servers_reason_not_the_statement(cluster, source, dump, cli_run):
    # The state the issue left behind: a database whose tables belong to the superuser, which the owner cannot
    # replace. pg_restore's reason must come through, not its "Command was:" line.
    name = cluster.provision(prefix="bad")
    migrate_database(cluster.as_superuser(name), DEFAULT_DIR)
    target = cluster.as_owner(name)
    before = fingerprint(cluster.as_superuser(name))  # the owner may not even read these tables
    result = cli_run(["restore", str(dump), "--clean", "--yes"], cli_env(target))
    line = one_line_error(result)
    assert result.exit_code != 0 and "nothing was changed" in line and "must be owner of" in line, line
    assert "Command was" not in line and "DROP CONSTRAINT" not in line and SECRET not in result.output
    assert fingerprint(cluster.as_superuser(name)) == before and set(owners(cluster, name).values()) == {"postgres"}


def test_the_reason_is_the_error_line_of_the_tools_output():
    stderr = ("pg_restore: while PROCESSING TOC:\n"
              "pg_restore: from TOC entry 4149; 0 18117 TABLE DATA spatial_ref_sys postgres\n"
              "pg_restore: error: COPY failed for table \"spatial_ref_sys\": ERROR:  permission denied for table "
              "spatial_ref_sys\n"
              "Command was: COPY public.spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) FROM stdin;\n")
    assert tool_reason(stderr, None) == ("permission denied for table spatial_ref_sys "
                                         "(while restoring TABLE DATA spatial_ref_sys postgres)")
    dump_error = ("pg_dump: error: query failed: ERROR:  permission denied for table secret_table\n"
                  "pg_dump: detail: Query was: LOCK TABLE public.secret_table IN ACCESS SHARE MODE\n")
    assert tool_reason(dump_error, None) == "permission denied for table secret_table"
    assert tool_reason("pg_restore: error: could not read from input file: end of file\n", None) == \
        "could not read from input file: end of file"
    assert tool_reason(f"pg_dump: error: FATAL:  password {SECRET} refused\n", SECRET) == "password *** refused"


def test_user_added_srids_are_named_and_restore_once_an_administrator_added_them(cluster, pg_server, tmp_path):
    name = cluster.provision(prefix="srs")
    settings = cluster.as_owner(name)
    migrate_database(settings, DEFAULT_DIR)
    row = "INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, proj4text) VALUES (990001, 'luminar', 990001, " \
          "'+proj=longlat +datum=WGS84 +no_defs')"
    with cluster.admin(name) as conn:
        conn.execute(row)
    dump = backup_database(settings, tmp_path / "srs.dump").path
    target = cluster.as_owner(cluster.provision(prefix="srt"))
    with pytest.raises(OperationError, match="SRID 990001") as caught:
        restore_database(target, dump)
    assert "administrator" in str(caught.value) and user_tables(cluster, target.name) == 0
    with cluster.admin(target.name) as conn:
        conn.execute(row)
    assert restore_database(target, dump).owner == cluster.owner
    assert user_tables(cluster, target.name) > 0


def test_the_owner_cannot_restore_into_a_missing_database_that_needs_postgis(cluster, dump):
    missing = f"gone_{uuid.uuid4().hex[:10]}"
    cluster.databases.append(missing)
    with cluster.admin() as conn:
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(cluster.owner)))
    with pytest.raises(OperationError, match="postgis") as caught:
        restore_database(cluster.as_owner(missing), dump)
    assert "luminar-db setup --admin-url" in str(caught.value)
    with cluster.admin() as conn:
        assert not conn.execute("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": missing}).fetchone()


def test_a_role_that_is_not_the_owner_is_refused(cluster, source, dump):
    stranger = f"stranger_{uuid.uuid4().hex[:8]}"
    with cluster.admin() as conn:
        ensure_role(conn, stranger, SECRET)
    try:
        target = cluster.provision(prefix="str")
        settings = cluster.server.settings(target, LUMINAR_DB_USER=stranger, LUMINAR_DB_PASSWORD=SECRET)
        with pytest.raises(OperationError, match=f"restore as {cluster.owner}"):
            restore_database(settings, dump)
        assert user_tables(cluster, target) == 0
    finally:
        with cluster.admin() as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(stranger)))


def test_the_owner_is_refused_a_database_without_postgis_and_a_superuser_adds_it(cluster, source, dump):
    name = f"nogis_{uuid.uuid4().hex[:10]}"
    cluster.databases.append(name)
    with cluster.admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(cluster.owner)))
    with pytest.raises(OperationError, match="lacks extension") as caught:
        restore_database(cluster.as_owner(name), dump)
    assert "postgis" in str(caught.value) and "nothing was changed" in str(caught.value)
    assert user_tables(cluster, name) == 0
    result = restore_database(cluster.as_superuser(name), dump)
    assert result.created_extensions == ("postgis",) and result.owner == cluster.owner
    assert set(owners(cluster, name).values()) == {cluster.owner}
