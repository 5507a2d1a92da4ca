"""The migration runner against a real, empty database: parsing, planning, applying, locking, recording, rollback.

Every test writes its own migration files into a temporary directory; only the last test runs the repository's
own ``migrations/``.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from luminar_store.errors import DatabaseUnavailableError, MigrationError, ValidationError
from luminar_store.migrator import (
    DEFAULT_DIR,
    LOCK_KEY,
    Migrator,
    create_migration,
    discover_migrations,
    migrate_database,
    parse_migration,
    split_statements,
)

SPEC_FORM = """\
-- 20250817120000_add_risk_scoring.sql
BEGIN;

ALTER TABLE crime_events
ADD COLUMN risk_score DECIMAL(3,2) CHECK (risk_score >= 0 AND risk_score <= 1);

CREATE INDEX idx_events_risk_score ON crime_events(risk_score);

COMMIT;
"""


# -- helpers -------------------------------------------------------------------------------------------------------
@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory


@pytest.fixture
def dsn(empty_db) -> str:
    return empty_db.conninfo()


def write(directory: Path, filename: str, text: str) -> Path:
    path = directory / filename
    path.write_text(text, encoding="utf-8")
    return path


def rows(dsn: str, query: str, params: tuple | list = ()) -> list[tuple]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def execute(dsn: str, query: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(query)


def exists(dsn: str, relation: str) -> bool:
    return rows(dsn, "SELECT to_regclass(%s) IS NOT NULL", [relation])[0][0]


def records(dsn: str) -> dict[str, tuple]:
    if not exists(dsn, "public.schema_migrations"):
        return {}
    return {r[0]: r for r in rows(dsn, "SELECT version, name, checksum, execution_ms, applied_by, dirty, error "
                                        "FROM schema_migrations ORDER BY version")}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- parsing -------------------------------------------------------------------------------------------------------
def test_split_statements_knows_quotes_dollar_quotes_and_comments():
    text = ("-- a comment; with a semicolon\n"
            "SELECT 'a;''b', E'c\\';d', \"e;f\";\n"
            "/* block ; /* nested ; */ still ; */\n"
            "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\n"
            "DO $$ BEGIN PERFORM 1; END $$;\n"
            "SELECT 2")
    got = split_statements(text)
    assert [s.line for s in got] == [2, 4, 5, 6]
    assert got[0].sql == "SELECT 'a;''b', E'c\\';d', \"e;f\";"
    assert got[1].sql.endswith("LANGUAGE plpgsql;")
    assert got[3].sql == "SELECT 2"


def test_sections_carry_file_line_numbers(mdir):
    path = write(mdir, "20250101000000_sections.sql",
                 "-- header\n-- migrate:up\nCREATE TABLE a (id int);\n\nCREATE TABLE b (id int);\n"
                 "-- migrate:down\nDROP TABLE b;\nDROP TABLE a;\n")
    m = parse_migration(path)
    assert (m.version, m.name, m.transactional) == ("20250101000000", "sections", True)
    assert [(s.sql, s.line) for s in m.up] == [("CREATE TABLE a (id int);", 3), ("CREATE TABLE b (id int);", 5)]
    assert [s.line for s in m.down] == [7, 8]


def test_file_without_markers_is_all_up_and_has_no_down(mdir):
    m = parse_migration(write(mdir, "20250101000000_plain.sql", "CREATE TABLE a (id int);\nSELECT 1;\n"))
    assert len(m.up) == 2
    assert m.down is None


def test_spec_form_begin_commit_is_unwrapped(mdir):
    m = parse_migration(write(mdir, "20250817120000_add_risk_scoring.sql", SPEC_FORM))
    assert [s.line for s in m.up] == [4, 7]
    assert m.up[0].sql.startswith("ALTER TABLE crime_events")
    assert m.up[1].sql == "CREATE INDEX idx_events_risk_score ON crime_events(risk_score);"


@pytest.mark.parametrize("statement", ["COMMIT;", "ROLLBACK;", "BEGIN;", "START TRANSACTION;", "END;"])
def test_transaction_control_inside_a_transactional_file_is_refused_with_its_line(mdir, statement):
    write(mdir, "20250101000000_tx.sql", f"CREATE TABLE a (id int);\n{statement}\nCREATE TABLE b (id int);\n")
    with pytest.raises(MigrationError, match=r"20250101000000_tx\.sql, line 2: .*no-transaction"):
        discover_migrations(mdir)


def test_unknown_directive_is_refused(mdir):
    write(mdir, "20250101000000_typo.sql", "-- migrate:no_transaction\nSELECT 1;\n")
    with pytest.raises(MigrationError, match=r"20250101000000_typo\.sql, line 1: unknown directive"):
        discover_migrations(mdir)


def test_no_transaction_file_keeps_its_statements_as_written(mdir):
    m = parse_migration(write(mdir, "20250101000000_conc.sql",
                              "-- migrate:no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n"
                              "CREATE INDEX CONCURRENTLY i ON t (x);\n"))
    assert m.transactional is False
    assert [s.sql for s in m.up] == ["BEGIN;", "SELECT 1;", "COMMIT;", "CREATE INDEX CONCURRENTLY i ON t (x);"]


def test_checksum_ignores_line_endings_and_bom_but_not_content(mdir):
    text = "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n"
    plain = parse_migration(write(mdir, "20250101000000_a.sql", text))
    (mdir / "20250101000001_a.sql").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    windows = parse_migration(mdir / "20250101000001_a.sql")
    edited = parse_migration(write(mdir, "20250101000002_a.sql", text.replace("int", "bigint")))
    assert plain.checksum == windows.checksum == hashlib.sha256(text.encode()).hexdigest()
    assert edited.checksum != plain.checksum


# -- discovery -----------------------------------------------------------------------------------------------------
def test_discovery_orders_by_version_and_ignores_helpers(mdir):
    write(mdir, "20250102000000_second.sql", "SELECT 2;")
    write(mdir, "20250101000000_first.sql", "SELECT 1;")
    for helper in ("manager.py", "__init__.py", "README.md", ".gitkeep"):
        write(mdir, helper, "not sql")
    (mdir / "templates").mkdir()
    write(mdir / "templates", "anything.sql", "not a migration")
    assert [m.label for m in discover_migrations(mdir)] == ["20250101000000_first", "20250102000000_second"]


@pytest.mark.parametrize("bad", ["2025_add_thing.sql", "20250101000000-add.sql", "20250101000000_Add.sql",
                                 "20250101000000_add.SQL", "notes.txt", "20250101000000_add.sql~"])
def test_a_file_that_is_not_a_migration_is_an_error_naming_it(mdir, bad):
    write(mdir, "20250101000000_ok.sql", "SELECT 1;")
    write(mdir, bad, "SELECT 1;")
    with pytest.raises(MigrationError, match="not migration files") as caught:
        discover_migrations(mdir)
    assert bad in str(caught.value)


def test_two_files_with_one_version_are_an_error_naming_both(mdir):
    write(mdir, "20250101000000_one.sql", "SELECT 1;")
    write(mdir, "20250101000000_two.sql", "SELECT 2;")
    with pytest.raises(MigrationError, match="share version 20250101000000") as caught:
        discover_migrations(mdir)
    assert "20250101000000_one.sql" in str(caught.value) and "20250101000000_two.sql" in str(caught.value)


def test_an_impossible_stamp_and_a_missing_directory_are_errors(mdir, tmp_path):
    write(mdir, "20251399000000_bad_month.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match="20251399000000 is not a valid UTC time"):
        discover_migrations(mdir)
    with pytest.raises(MigrationError, match="does not exist"):
        discover_migrations(tmp_path / "nowhere")


# -- create --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["", "Add_Thing", "add-thing", "add thing", "../escape", "ünïcode"])
def test_create_refuses_a_bad_name(mdir, name):
    with pytest.raises(ValidationError) as caught:
        create_migration(mdir, name)
    assert caught.value.field == "name"
    assert list(mdir.iterdir()) == []


def test_create_writes_a_parseable_template_with_both_sections(mdir):
    now = datetime(2025, 8, 17, 12, 0, 0, tzinfo=UTC)
    path = create_migration(mdir, "add_risk_scoring", now=now)
    assert path.name == "20250817120000_add_risk_scoring.sql"
    text = path.read_text()
    assert "-- migrate:up" in text and "-- migrate:down" in text
    m = parse_migration(path)
    assert (m.up, m.down, m.transactional) == ((), (), True)


def test_create_never_overwrites(mdir):
    now = datetime(2025, 8, 17, 12, 0, 0, tzinfo=UTC)
    first = create_migration(mdir, "same", now=now)
    first.write_text("SELECT 'keep me';")
    second = create_migration(mdir, "same", now=now)
    assert second.name == "20250817120001_same.sql"
    assert first.read_text() == "SELECT 'keep me';"
    # A stamp older than the newest file moves past it, so that the new file sorts last.
    write(mdir, "20300101000000_future.sql", "SELECT 1;")
    assert create_migration(mdir, "later", now=now).name == "20300101000001_later.sql"


# -- applying ------------------------------------------------------------------------------------------------------
def test_migrate_applies_in_version_order_records_each_and_a_rerun_is_a_no_op(mdir, dsn):
    write(mdir, "20250102000000_fill.sql", "INSERT INTO log VALUES ('second');")
    first = write(mdir, "20250101000000_log.sql", "CREATE TABLE log (what text);")
    lines: list[str] = []
    applied = Migrator(dsn, mdir, out=lines.append).migrate()
    assert [m.label for m in applied] == ["20250101000000_log", "20250102000000_fill"]
    assert rows(dsn, "SELECT what FROM log") == [("second",)]
    assert len(lines) == 2 and lines[0].startswith("applied 20250101000000_log (") and lines[0].endswith(" ms)")
    rec = records(dsn)
    version, name, sha, ms, by, dirty, error = rec["20250101000000"]
    assert (name, sha, dirty, error) == ("log", hashlib.sha256(first.read_bytes()).hexdigest(), False, None)
    assert ms >= 0 and "@" in by
    assert Migrator(dsn, mdir).migrate() == []
    assert rows(dsn, "SELECT count(*) FROM log") == [(1,)]


def test_a_failing_file_leaves_no_trace_and_names_file_line_and_message(mdir, dsn):
    write(mdir, "20250101000000_base.sql", "CREATE TABLE base (id int);")
    write(mdir, "20250102000000_broken.sql",
          "-- 1: this file fails on line 7\n"
          "CREATE TABLE half_done (id int);\n"
          "INSERT INTO half_done VALUES (1);\n"
          "\n"
          "SELECT *\n"
          "  FROM half_done\n"
          " WHERE nonexistent_column = 1;\n")
    write(mdir, "20250103000000_after.sql", "CREATE TABLE after_broken (id int);")
    with pytest.raises(MigrationError) as caught:
        Migrator(dsn, mdir).migrate()
    message = str(caught.value)
    assert "20250102000000_broken.sql" in message
    assert "line 7:" in message
    assert 'column "nonexistent_column" does not exist' in message
    assert exists(dsn, "base") and not exists(dsn, "half_done") and not exists(dsn, "after_broken")
    assert list(records(dsn)) == ["20250101000000"]


def test_the_failing_line_is_right_without_a_server_position(mdir, dsn):
    write(mdir, "20250101000000_dupes.sql",
          "-- migrate:up\nCREATE TABLE k (id int PRIMARY KEY);\n\nINSERT INTO k VALUES (1), (1);\n"
          "-- migrate:down\nDROP TABLE k;\n")
    with pytest.raises(MigrationError, match=r"20250101000000_dupes\.sql failed at line 4: duplicate key value"):
        Migrator(dsn, mdir).migrate()
    assert not exists(dsn, "k") and records(dsn) == {}


def test_the_failing_line_inside_a_long_statement_comes_from_the_server_position(mdir, dsn):
    write(mdir, "20250101000000_typo.sql", "CREATE TABLE t (\n    a int,\n    b intt,\n    c int\n);\n")
    with pytest.raises(MigrationError, match=r'failed at line 3: type "intt" does not exist'):
        Migrator(dsn, mdir).migrate()


def test_a_statement_that_refuses_transactions_gets_the_opt_out_hint(mdir, dsn):
    write(mdir, "20250101000000_t.sql", "CREATE TABLE t (x int);")
    write(mdir, "20250102000000_idx.sql", "CREATE INDEX CONCURRENTLY t_x ON t (x);")
    with pytest.raises(MigrationError, match="line 1: .*-- migrate:no-transaction"):
        Migrator(dsn, mdir).migrate()
    assert list(records(dsn)) == ["20250101000000"]


def test_spec_form_file_applies_in_one_transaction_with_its_record(mdir, dsn):
    write(mdir, "20250101000000_events.sql", "CREATE TABLE crime_events (id int);")
    write(mdir, "20250817120000_add_risk_scoring.sql", SPEC_FORM)
    Migrator(dsn, mdir).migrate()
    assert exists(dsn, "idx_events_risk_score")
    assert list(records(dsn)) == ["20250101000000", "20250817120000"]


def test_a_files_session_settings_do_not_leak_into_the_next_file(mdir, dsn):
    # The 1 ms timeout comes last, so that no statement of the file itself runs under it: only the runner's reset
    # does (whose first statement, RESET ALL, lifts it); the record and the next file then run without it.
    write(mdir, "20250101000000_set.sql", "SET search_path = pg_catalog;\nSET statement_timeout = '1ms';")
    write(mdir, "20250102000000_slow.sql", "SELECT pg_sleep(0.05);\nCREATE TABLE in_public (id int);")
    assert len(Migrator(dsn, mdir).migrate()) == 2
    assert exists(dsn, "public.in_public")


# -- a file's session settings stay in the file -------------------------------------------------------------------
# A first migration installs a spy: public.look(what, version) writes the settings in force into public.seen, and a
# trigger calls it for every write to schema_migrations. So the settings under which each record is written are
# read from the record statement itself, not guessed from timing.
SPY = """\
CREATE TABLE public.seen (what text, version text, statement_timeout text, lock_timeout text, search_path text,
                          role text, session_user_name text, current_user_name text);
GRANT INSERT ON public.seen TO PUBLIC;
CREATE FUNCTION public.look(what text, version text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.seen VALUES (what, version, current_setting('statement_timeout'),
        current_setting('lock_timeout'), current_setting('search_path'), current_setting('role'), session_user,
        current_user)
$$;
CREATE FUNCTION public.look_at_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.look('record ' || lower(TG_OP), coalesce(NEW.version, OLD.version));
    RETURN coalesce(NEW, OLD);
END $$;
CREATE TRIGGER look_at_record BEFORE INSERT OR UPDATE OR DELETE ON public.schema_migrations
    FOR EACH ROW EXECUTE FUNCTION public.look_at_record();
"""
SETTINGS = {  # name: (the file's SET, the column of public.seen it changes, or None)
    "statement_timeout": ("SET statement_timeout = '1ms';", None),  # not read in the file: it would time out
    "lock_timeout": ("SET lock_timeout = '1ms';", "lock_timeout"),
    "search_path": ("SET search_path = pg_catalog;", "search_path"),
    "role": ("SET ROLE {role};", "current_user_name"),
    "session_authorization": ("SET SESSION AUTHORIZATION {role};", "session_user_name"),
}
SEEN_COLUMNS = ("statement_timeout", "lock_timeout", "search_path", "role", "session_user_name", "current_user_name")
NO_TRANSACTION = "-- migrate:no-transaction\n"


@pytest.fixture
def role(dsn) -> str:
    """A role with no rights on anything: a record written as this role would fail."""
    name = f"no_rights_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def seen(dsn: str) -> dict[tuple[str, str], dict[str, str]]:
    """(what, version) -> the settings public.look saw then."""
    query = sql.SQL("SELECT what, version, {} FROM public.seen").format(
        sql.SQL(", ").join(map(sql.Identifier, SEEN_COLUMNS)))
    return {(r[0], r[1]): dict(zip(SEEN_COLUMNS, r[2:], strict=True)) for r in rows(dsn, query)}


def setter(names: list[str] | tuple[str, ...], role: str, *, fail: bool = False) -> str:
    """SQL that SETs each setting, looks at them (to show the SETs took), then sets statement_timeout last (see
    above) and, with ``fail``, fails."""
    lines = [SETTINGS[n][0].format(role=role) for n in names if n != "statement_timeout"]
    lines.append("SELECT public.look('file', '20250102000000');")
    if "statement_timeout" in names:
        lines.append(SETTINGS["statement_timeout"][0])
    if fail:
        lines.append("SELECT no_such_column FROM pg_catalog.pg_class;")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("header", ["", NO_TRANSACTION], ids=["transaction", "no-transaction"])
@pytest.mark.parametrize("names", [[n] for n in SETTINGS] + [list(SETTINGS)], ids=[*SETTINGS, "all"])
def test_a_files_settings_reach_neither_its_record_nor_the_next_file(mdir, dsn, role, names, header):
    write(mdir, "20250101000000_spy.sql", SPY)
    write(mdir, "20250102000000_sets.sql", header + setter(names, role))
    write(mdir, "20250103000000_next.sql",
          "SELECT public.look('file', '20250103000000');\nCREATE TABLE next_table (id int);\n")
    assert len(Migrator(dsn, mdir).migrate()) == 3
    got = seen(dsn)
    runner = got[("record insert", "20250101000000")]  # the spy's own record: the runner's settings
    assert got[("record insert", "20250102000000")] == runner
    assert got[("file", "20250103000000")] == runner
    for name in names:
        column = SETTINGS[name][1]
        if column:  # the SET did change something in the file, so the equalities above mean something
            assert got[("file", "20250102000000")][column] != runner[column], name
    me = rows(dsn, "SELECT current_user")[0][0]
    assert rows(dsn, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'next_table'"
                ) == [(me,)]
    assert {v: (r[4].split("@")[0], r[5]) for v, r in records(dsn).items()} == {
        v: (me, False) for v in ("20250101000000", "20250102000000", "20250103000000")}


@pytest.fixture
def plain_runner(dsn, role) -> str:
    """The conninfo of a login role that is no superuser, may create in public and may SET ROLE to ``role``."""
    name = f"plain_runner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))
    yield make_conninfo(dsn, user=name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.mark.parametrize("header", ["", NO_TRANSACTION], ids=["transaction", "no-transaction"])
def test_a_runner_that_is_no_superuser_puts_its_settings_back_too(mdir, plain_runner, role, header):
    # SET SESSION AUTHORIZATION DEFAULT is allowed to anyone: it returns to the login role.
    write(mdir, "20250101000000_spy.sql", SPY)
    write(mdir, "20250102000000_sets.sql", header + setter(["search_path", "lock_timeout", "role",
                                                              "statement_timeout"], role))
    assert len(Migrator(plain_runner, mdir).migrate()) == 2
    got = seen(plain_runner)
    assert got[("record insert", "20250102000000")] == got[("record insert", "20250101000000")]
    assert got[("record insert", "20250101000000")]["current_user_name"].startswith("plain_runner_")


def test_a_failed_no_transaction_file_records_its_failure_under_the_runners_settings(mdir, dsn, role):
    write(mdir, "20250101000000_spy.sql", SPY)
    write(mdir, "20250102000000_sets.sql", NO_TRANSACTION + setter(list(SETTINGS), role, fail=True))
    with pytest.raises(MigrationError, match=r"20250102000000_sets\.sql failed at line \d+: column"):
        Migrator(dsn, mdir).migrate()
    got = seen(dsn)
    assert got[("record insert", "20250102000000")] == got[("record insert", "20250101000000")]
    assert records(dsn)["20250102000000"][5] is True


@pytest.mark.parametrize("header", ["", NO_TRANSACTION], ids=["transaction", "no-transaction"])
def test_a_down_sections_settings_do_not_reach_the_deletion_of_its_record(mdir, dsn, role, header):
    write(mdir, "20250101000000_spy.sql", SPY)
    sets = setter(list(SETTINGS), role)
    write(mdir, "20250102000000_sets.sql", f"{header}-- migrate:up\n{sets}-- migrate:down\n{sets}")
    migrator = Migrator(dsn, mdir)
    migrator.migrate()
    assert migrator.rollback().version == "20250102000000"
    got = seen(dsn)
    assert got[("record delete", "20250102000000")] == got[("record insert", "20250101000000")]
    assert list(records(dsn)) == ["20250101000000"]


def test_a_file_that_makes_its_transaction_read_only_fails_typed_and_leaves_no_trace(mdir, dsn):
    # transaction_read_only is no setting RESET ALL may change mid-transaction: the record cannot be written.
    write(mdir, "20250101000000_ro.sql", "CREATE TABLE ro (id int);\nSET TRANSACTION READ ONLY;\n")
    with pytest.raises(MigrationError, match=r"20250101000000_ro\.sql ran, but its bookkeeping could not be written"):
        Migrator(dsn, mdir).migrate()
    assert not exists(dsn, "ro") and records(dsn) == {}


def test_a_no_transaction_file_ending_inside_its_own_begin_fails_without_its_record_joining_that_block(mdir, dsn):
    write(mdir, "20250101000000_open.sql",
          "-- migrate:no-transaction\nCREATE TABLE kept (id int);\nBEGIN;\nCREATE TABLE lost (id int);\n")
    with pytest.raises(MigrationError, match=r"20250101000000_open\.sql failed at line 4: .*BEGIN without its COMMIT"):
        Migrator(dsn, mdir).migrate()
    assert exists(dsn, "kept") and not exists(dsn, "lost")
    assert records(dsn)["20250101000000"][5] is True


def test_ten_runners_started_at_once_apply_each_file_exactly_once(mdir, dsn):
    write(mdir, "20250101000000_counter.sql", "CREATE TABLE counter (n int);")
    write(mdir, "20250102000000_two.sql", "INSERT INTO counter VALUES (2);")
    write(mdir, "20250103000000_three.sql", "SELECT pg_sleep(0.2);\nINSERT INTO counter VALUES (3);")
    start = threading.Barrier(10)
    results: list[list] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            start.wait()
            results.append(Migrator(dsn, mdir).migrate())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 10
    assert sorted(m.version for batch in results for m in batch) == ["20250101000000", "20250102000000",
                                                                      "20250103000000"]
    assert rows(dsn, "SELECT n FROM counter ORDER BY n") == [(2,), (3,)]
    assert len(records(dsn)) == 3


@pytest.mark.parametrize("timeout", [0.3, 0])
def test_waiting_beyond_the_lock_timeout_names_the_holder(mdir, dsn, timeout):
    write(mdir, "20250101000000_a.sql", "CREATE TABLE a (id int);")
    with psycopg.connect(dsn, autocommit=True, application_name="holder_under_test") as holder:
        holder.execute("SELECT pg_advisory_lock(%s::bigint)", [LOCK_KEY])
        pid = holder.info.backend_pid
        with pytest.raises(MigrationError) as caught:
            Migrator(dsn, mdir, lock_timeout=timeout).migrate()
        message = str(caught.value)
        assert f"pid {pid}" in message and "'holder_under_test'" in message and "--lock-timeout" in message
        assert not exists(dsn, "a")
    assert [m.name for m in Migrator(dsn, mdir, lock_timeout=timeout).migrate()] == ["a"]


# -- checksums, missing files, order ---------------------------------------------------------------------------------
def test_an_edited_applied_file_is_reported_and_stops_migrate_until_accepted(mdir, dsn):
    first = write(mdir, "20250101000000_a.sql", "CREATE TABLE a (id int);\n")
    migrator = Migrator(dsn, mdir)
    migrator.migrate()
    first.write_bytes(b"\xef\xbb\xbfCREATE TABLE a (id int);\r\n")  # a BOM and CRLF are not an edit
    assert [s.state for s in migrator.status()] == ["applied"]
    first.write_text("CREATE TABLE a (id bigint);\n")
    write(mdir, "20250102000000_b.sql", "CREATE TABLE b (id int);")
    assert [(s.version, s.state) for s in migrator.status()] == [("20250101000000", "changed"),
                                                                 ("20250102000000", "pending")]
    assert [s.version for s in migrator.verify()] == ["20250101000000"]
    with pytest.raises(MigrationError, match=r"20250101000000_a\.sql .*--accept-checksum 20250101000000"):
        migrator.migrate()
    assert not exists(dsn, "b")
    assert [m.name for m in migrator.migrate(accept_checksums=["20250101000000"])] == ["b"]
    assert records(dsn)["20250101000000"][2] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert migrator.verify() == []


def test_an_applied_version_whose_file_is_gone_is_reported_missing(mdir, dsn):
    gone = write(mdir, "20250101000000_gone.sql", "CREATE TABLE g (id int);")
    write(mdir, "20250102000000_kept.sql", "CREATE TABLE k (id int);")
    Migrator(dsn, mdir).migrate()
    gone.unlink()
    lines: list[str] = []
    migrator = Migrator(dsn, mdir, out=lines.append)
    assert [(s.version, s.state) for s in migrator.status()] == [("20250101000000", "missing"),
                                                                 ("20250102000000", "applied")]
    assert [(s.label, s.state) for s in migrator.verify()] == [("20250101000000_gone", "missing")]
    assert migrator.migrate() == []
    assert any("20250101000000_gone" in line and "missing" in line for line in lines)


def test_a_pending_file_older_than_the_newest_applied_is_refused_unless_allowed(mdir, dsn):
    write(mdir, "20250102000000_newer.sql", "CREATE TABLE newer (id int);")
    Migrator(dsn, mdir).migrate()
    write(mdir, "20250101000000_older.sql", "CREATE TABLE older (id int);")
    migrator = Migrator(dsn, mdir)
    assert [(s.version, s.out_of_order) for s in migrator.status() if s.state == "pending"] == [
        ("20250101000000", True)]
    with pytest.raises(MigrationError) as caught:
        migrator.migrate()
    assert "20250101000000_older.sql" in str(caught.value) and "20250102000000_newer" in str(caught.value)
    assert "--allow-out-of-order" in str(caught.value)
    assert not exists(dsn, "older")
    assert [m.name for m in migrator.migrate(allow_out_of_order=True)] == ["older"]


# -- target, dry run ------------------------------------------------------------------------------------------------
def test_target_applies_up_to_and_including_a_version(mdir, dsn):
    for i in (1, 2, 3):
        write(mdir, f"2025010{i}000000_t{i}.sql", f"CREATE TABLE t{i} (id int);")
    migrator = Migrator(dsn, mdir)
    assert [m.name for m in migrator.migrate(target="20250102000000")] == ["t1", "t2"]
    assert not exists(dsn, "t3")
    with pytest.raises(MigrationError, match="--target 20990101000000: no migration file"):
        migrator.migrate(target="20990101000000")
    with pytest.raises(ValidationError):
        migrator.migrate(target="latest")
    assert [m.name for m in migrator.migrate(target="20250103000000_t3")] == ["t3"]


def test_dry_run_prints_the_plan_and_changes_nothing(mdir, dsn):
    write(mdir, "20250101000000_a.sql", "CREATE TABLE a (id int);")
    write(mdir, "20250102000000_b.sql", "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);")
    lines: list[str] = []
    migrator = Migrator(dsn, mdir, out=lines.append)
    planned = migrator.migrate(dry_run=True)
    assert [m.name for m in planned] == ["a", "b"]
    assert lines == ["would apply 20250101000000_a", "would apply 20250102000000_b (no transaction)"]
    assert [m.name for m in migrator.plan()] == ["a", "b"]
    assert not exists(dsn, "public.schema_migrations") and not exists(dsn, "a")


# -- no-transaction files ---------------------------------------------------------------------------------------------
def test_no_transaction_file_runs_concurrent_index_builds(mdir, dsn):
    write(mdir, "20250101000000_t.sql", "CREATE TABLE t (x int);")
    write(mdir, "20250102000000_idx.sql", "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n")
    Migrator(dsn, mdir).migrate()
    assert exists(dsn, "t_x")
    assert records(dsn)["20250102000000"][5] is False


def test_a_no_transaction_failure_is_recorded_and_stops_the_next_run_until_resolved(mdir, dsn):
    broken = write(mdir, "20250101000000_part.sql",
                   "-- migrate:no-transaction\nCREATE TABLE part_a (id int);\n"
                   "CREATE INDEX CONCURRENTLY part_idx ON part_missing (id);\n")
    write(mdir, "20250102000000_next.sql", "CREATE TABLE next_one (id int);")
    migrator = Migrator(dsn, mdir)
    with pytest.raises(MigrationError, match=r"20250101000000_part\.sql failed at line 3: .*--mark-resolved"):
        migrator.migrate()
    assert exists(dsn, "part_a")  # part-way: the statement before the failure stays
    assert records(dsn)["20250101000000"][5] is True
    assert [s.state for s in migrator.status()] == ["failed", "pending"]
    assert [s.state for s in migrator.verify()] == ["failed"]
    with pytest.raises(MigrationError, match="failed part-way outside a transaction.*--mark-resolved 20250101000000"):
        migrator.migrate()
    with pytest.raises(MigrationError, match="failed part-way outside a transaction"):
        migrator.rollback()
    assert not exists(dsn, "next_one")
    # Undo by hand, fix the file, run it again.
    execute(dsn, "DROP TABLE part_a")
    broken.write_text("-- migrate:no-transaction\nCREATE TABLE part_a (id int);\n"
                      "CREATE INDEX CONCURRENTLY part_idx ON part_a (id);\n")
    assert [m.name for m in migrator.migrate(retry=["20250101000000"])] == ["part", "next"]
    assert exists(dsn, "part_idx") and records(dsn)["20250101000000"][5] is False


def test_mark_resolved_records_a_failed_file_as_applied(mdir, dsn):
    write(mdir, "20250101000000_part.sql", "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY i ON nope (id);\n")
    migrator = Migrator(dsn, mdir)
    with pytest.raises(MigrationError):
        migrator.migrate()
    with pytest.raises(MigrationError, match="--mark-resolved and --retry both name 20250101000000"):
        migrator.migrate(mark_resolved=["20250101000000"], retry=["20250101000000"])
    with pytest.raises(MigrationError, match="failed part-way; resolve it with --mark-resolved"):
        migrator.migrate(accept_checksums=["20250101000000"])
    assert migrator.migrate(mark_resolved=["20250101000000"]) == []
    assert records(dsn)["20250101000000"][5:] == (False, None)
    with pytest.raises(MigrationError, match="did not fail; nothing to resolve"):
        migrator.migrate(mark_resolved=["20250101000000"])


# -- rollback --------------------------------------------------------------------------------------------------------
def test_rollback_undoes_the_latest_migration_with_its_down_section(mdir, dsn):
    write(mdir, "20250101000000_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n")
    write(mdir, "20250102000000_b.sql", "-- migrate:up\nCREATE TABLE b (id int);\n-- migrate:down\nDROP TABLE b;\n")
    migrator = Migrator(dsn, mdir)
    migrator.migrate()
    assert migrator.rollback().name == "b"
    assert not exists(dsn, "b") and exists(dsn, "a") and list(records(dsn)) == ["20250101000000"]
    assert migrator.rollback().name == "a"
    assert not exists(dsn, "a") and records(dsn) == {}
    with pytest.raises(MigrationError, match="nothing to roll back"):
        migrator.rollback()


def test_rollback_refuses_without_a_down_section_and_keeps_state_when_down_fails(mdir, dsn):
    write(mdir, "20250101000000_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\n"
                                        "DROP TABLE a;\nDROP TABLE not_there;\n")
    write(mdir, "20250102000000_b.sql", "CREATE TABLE b (id int);")
    migrator = Migrator(dsn, mdir)
    migrator.migrate()
    with pytest.raises(MigrationError, match=r"20250102000000_b\.sql: it has no '-- migrate:down' section"):
        migrator.rollback()
    execute(dsn, "DELETE FROM schema_migrations WHERE version = '20250102000000'")
    with pytest.raises(MigrationError, match=r"rollback of migration 20250101000000_a\.sql failed at line 5"):
        migrator.rollback()
    assert exists(dsn, "a") and "20250101000000" in records(dsn)


def test_rollback_is_refused_in_production_unless_allowed(mdir, dsn):
    write(mdir, "20250101000000_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n")
    Migrator(dsn, mdir).migrate()
    with pytest.raises(MigrationError, match="production.*--allow-production"):
        Migrator(dsn, mdir, environment="production").rollback()
    assert exists(dsn, "a")
    assert Migrator(dsn, mdir, environment="production").rollback(allow_production=True).name == "a"
    assert not exists(dsn, "a")


# -- reaching the server -----------------------------------------------------------------------------------------------
def test_an_unreachable_database_names_host_port_database_and_the_hint(mdir):
    port = closed_port()
    migrator = Migrator(f"host=127.0.0.1 port={port} dbname=nowhere user=someone password=topsecret", mdir)
    with pytest.raises(DatabaseUnavailableError) as caught:
        migrator.status()
    message = str(caught.value)
    assert f"host 127.0.0.1, port {port}, database nowhere" in message and "make db-start" in message
    assert "topsecret" not in message and "topsecret" not in repr(migrator) and "\n" not in message
    assert caught.value.exit_code == 2
    with pytest.raises(DatabaseUnavailableError, match="after waiting 0.3 s"):
        migrator.wait_until_ready(0.3)


def test_wait_until_ready_returns_once_the_server_answers(dsn, mdir):
    Migrator(dsn, mdir).wait_until_ready(5)
    assert Migrator(dsn, mdir).migrate() == []


# -- the repository's own migrations -----------------------------------------------------------------------------------
def test_the_repository_migrations_apply_to_an_empty_database_and_rerun_is_a_no_op(dsn):
    expected = ["20250101000000_initial_schema", "20250817120000_add_risk_scoring"]
    assert [p.stem for p in sorted(DEFAULT_DIR.glob("2*.sql"))][:2] == expected
    applied = migrate_database(dsn)
    assert [m.label for m in applied][:2] == expected
    assert set(records(dsn)) >= {"20250101000000", "20250817120000"}
    assert migrate_database(dsn) == []
    assert Migrator(dsn).verify() == []
