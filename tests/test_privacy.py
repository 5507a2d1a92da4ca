"""Victims' privacy: reporters' ids stored as keyed pseudonyms, and the reader seeing only generalised public views.

The pseudonym function and the settings run without a server; the rest on the session's real server, the reader
logged in as itself (``node_login``).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from datetime import datetime, timezone

import psycopg
import pytest
from _async import with_facade
from psycopg import sql

from luminar_store.config import load_settings
from luminar_store.errors import ConfigError
from luminar_store.privacy import MIN_KEY_LENGTH, Pseudonyms, is_pseudonym
from luminar_store.repositories.raw_reports import RawReportRepository

KEY = "k3y-of-the-test-suite-0123456789abcdef"
OTHER_KEY = "another-key-of-the-suite-0123456789abcdef"
AT = datetime(2026, 11, 1, 12, 34, 56, tzinfo=timezone.utc)  # a fixed past time: no dependence on the clock
PSEUDONYM = re.compile(r"p1:[0-9a-f]{8}:[0-9a-f]{64}")
PRODUCTION = {"LUMINAR_DB_PASSWORD": "a-real-secret-password"}


def report(n: int, reporter: str | None = None) -> dict:
    return {"report_id": f"app-{n}", "text_description": f"Bag snatched near the station ({n})",
            "user_id": reporter if reporter is not None else f"u-{n}", "geotag": {"lat": 48.85, "lng": 2.35},
            "timestamp": AT}


# -- the pseudonym function ------------------------------------------------------------------------------------------
def test_a_pseudonym_is_deterministic_under_one_key_and_differs_under_another():
    names, others = Pseudonyms(KEY), Pseudonyms(OTHER_KEY)
    first = names("user-42")
    assert PSEUDONYM.fullmatch(first) and first == Pseudonyms(KEY)("user-42")
    assert first.split(":")[1] == names.key_id and names.key_id != others.key_id
    assert names("user-43") != first and others("user-42") != first
    assert "user-42" not in first and names(None) is None


def test_a_pseudonym_is_never_pseudonymised_twice_under_any_key():
    first = Pseudonyms(KEY)("user-42")
    assert is_pseudonym(first) and not is_pseudonym("user-42") and not is_pseudonym("p1:user")
    assert Pseudonyms(KEY)(first) == first and Pseudonyms(OTHER_KEY)(first) == first


def test_the_key_is_never_shown():
    settings = load_settings("staging", environ={**PRODUCTION, "LUMINAR_PSEUDONYM_KEY": KEY})
    assert settings.pseudonym_key == KEY
    for text in (repr(settings), str(settings), repr(settings.public_dict()), repr(settings.pseudonyms)):
        assert KEY not in text
    assert settings.public_dict()["pseudonym_key"] == "***"
    short = KEY[:MIN_KEY_LENGTH - 1]
    with pytest.raises(ConfigError) as refused:
        load_settings("staging", environ={**PRODUCTION, "LUMINAR_PSEUDONYM_KEY": short})
    assert "LUMINAR_PSEUDONYM_KEY" in str(refused.value) and str(MIN_KEY_LENGTH) in str(refused.value)
    assert short not in str(refused.value) and "\n" not in str(refused.value)


# -- settings ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("env,on", [("local", False), ("testing", False), ("testnet", True), ("staging", True),
                                    ("production", True)])
def test_pseudonymisation_is_on_by_default_outside_local_and_testing(env, on):
    settings = load_settings(env, environ={**PRODUCTION, "LUMINAR_PSEUDONYM_KEY": KEY})
    assert settings.pseudonymize is on
    assert (settings.pseudonyms is not None) is on


def test_the_switch_turns_it_on_or_off_and_refuses_other_words(caplog):
    with caplog.at_level(logging.WARNING, logger="luminar_store.config"):
        local = load_settings("local", environ={"LUMINAR_PSEUDONYMIZE": "on", "LUMINAR_PSEUDONYM_KEY": KEY})
    assert local.pseudonymize and local.pseudonyms is not None
    assert "LUMINAR_PSEUDONYM" not in caplog.text  # both names are known settings
    assert load_settings("testnet", environ={"LUMINAR_PSEUDONYMIZE": "OFF"}).pseudonyms is None
    with pytest.raises(ConfigError, match="LUMINAR_PSEUDONYMIZE must be on or off"):
        load_settings("local", environ={"LUMINAR_PSEUDONYMIZE": "maybe"})
    with pytest.raises(ConfigError, match="production refuses LUMINAR_PSEUDONYMIZE=off"):
        load_settings("production", environ={**PRODUCTION, "LUMINAR_PSEUDONYMIZE": "off"})


def test_on_without_a_key_is_refused_where_reports_are_written_naming_how_to_make_one():
    settings = load_settings("production", environ=PRODUCTION)  # migrate, backup ... need no key
    with pytest.raises(ConfigError) as refused:
        settings.pseudonyms  # noqa: B018 - the property is the check
    message = str(refused.value)
    assert "LUMINAR_PSEUDONYM_KEY is not set" in message and "secrets.token_hex(32)" in message


# -- reports in the database -------------------------------------------------------------------------------------------
def stored_reporters(settings) -> dict[str, str | None]:
    with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
        return dict(conn.execute("SELECT external_id, user_id FROM raw_incident_reports").fetchall())


def test_reports_are_stored_under_their_pseudonym_by_every_write_path(db_settings):
    settings = replace(db_settings, pseudonymize=True, pseudonym_key=KEY)
    names = Pseudonyms(KEY)

    async def store(db):
        first = await db.store_raw_report(report(1))
        again = await db.store_raw_report(report(1))  # the same report again: deduplicated, not stored twice
        bulk = await db.store_raw_reports([report(n) for n in (2, 3)])
        plain = await db.store_raw_reports([report(n) for n in (4, 5)], skip_existing=False)
        async with db.database.transaction() as tx:
            await RawReportRepository(tx, pseudonyms=settings.pseudonyms).store(report(6))
        already = await db.store_raw_report(report(7, reporter=names("u-7")))
        return first, again, bulk, plain, already

    first, again, bulk, plain, _ = with_facade(settings, store)
    assert first == again and (bulk, plain) == (2, 2)
    stored = stored_reporters(db_settings)
    assert stored == {f"app-{n}": names(f"u-{n}") for n in range(1, 8)}
    assert not any(f"u-{n}" in str(stored.values()) for n in range(1, 8))


def test_pseudonymisation_on_without_a_key_stores_nothing(db_settings):
    settings = replace(db_settings, pseudonymize=True)
    with pytest.raises(ConfigError, match="LUMINAR_PSEUDONYM_KEY"):
        with_facade(settings, lambda db: db.store_raw_report(report(1)))
    assert stored_reporters(db_settings) == {}


def test_with_it_off_a_report_holds_the_id_as_sent(db_settings):
    assert db_settings.env == "testing" and not db_settings.pseudonymize

    async def store(db):
        await db.store_raw_report(report(1))
        await db.store_raw_reports([report(2)])

    with_facade(db_settings, store)
    assert stored_reporters(db_settings) == {"app-1": "u-1", "app-2": "u-2"}


# -- the public views ------------------------------------------------------------------------------------------------
FREE_TEXT = {"title", "summary", "description", "text_description", "location_text", "time_info", "entities",
             "metadata", "related_reports", "miner_uid", "validator_uid", "event_id", "cluster_id", "user_id",
             "confidence_score", "verification_score", "request_id"}
BUSY = (48.8566, 2.3522)  # a cell that gets k events
QUIET = (48.8738, 2.2950)  # a cell that gets k - 1


def metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance (haversine, 6,371 km radius)."""
    la1, lo1, la2, lo2 = map(math.radians, (*a, *b))
    h = math.sin((la2 - la1) / 2) ** 2 + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6_371_000 * math.asin(math.sqrt(h))


def near(point: tuple[float, float], n: int) -> tuple[float, float]:
    """A point a few metres from ``point`` (within 8 m): in the same 100 m cell unless it sits on an edge, which
    the cell centre chosen below avoids."""
    return point[0] + (n % 3 - 1) * 0.00003 + 0.00001, point[1] + (n % 2) * 0.00004 + 0.00001


@pytest.fixture
def events(db_settings):
    """As the owner: verified events, k of them in one cell and k - 1 in another, plus a pending one in the first
    (not public). Places them around their cells' centres, so the few metres between them never cross an edge."""
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        k = conn.execute("SELECT luminar_public_min_count()").fetchone()[0]
        centres = {name: conn.execute("SELECT latitude, longitude FROM luminar_public_cell(%s, %s)", spot).fetchone()
                   for name, spot in (("busy", BUSY), ("quiet", QUIET))}

    async def seed(db):
        placed = []
        for name, count in (("busy", k), ("quiet", k - 1)):
            for n in range(count):
                lat, lng = near(centres[name], n)
                event_id = await db.store_crime_event(
                    {"event_type": "theft", "geotag": {"lat": lat, "lng": lng}, "timestamp": AT, "severity": 3,
                     "confidence_score": 0.8, "title": f"Phone stolen from Ms X at Rue Y no. {n}",
                     "summary": "the victim's words"}, miner_uid=11)
                await db.update_event_verification(event_id, 21, "verified", 0.9)
                placed.append((name, (lat, lng)))
        await db.store_crime_event({"event_type": "assault", "geotag": {"lat": centres["busy"][0],
                                    "lng": centres["busy"][1]}, "timestamp": AT, "severity": 5,
                                    "confidence_score": 0.5}, miner_uid=11)
        return placed

    return {"k": k, "centres": centres, "placed": with_facade(db_settings, seed)}


def test_the_reader_sees_generalised_points_and_no_free_text(node_login, events):
    reader = node_login("luminar_reader")
    with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
        grid = conn.execute("SELECT luminar_public_grid_metres()").fetchone()[0]
        cur = conn.execute("SELECT latitude, longitude, ST_Y(geotag), ST_X(geotag), occurred_hour, event_type, "
                           "severity_level FROM public_crime_events")
        rows = cur.fetchall()
        for view in ("public_crime_events", "public_hotspots"):
            empty = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(view)))
            columns = {c.name for c in empty.description}
            assert not columns & FREE_TEXT, (view, columns & FREE_TEXT)
    busy = events["centres"]["busy"]
    assert len(rows) == events["k"]  # the busy cell's verified events; the pending one is not public
    for lat, lng, y, x, hour, kind, severity in rows:
        assert (lat, lng) == (y, x) == pytest.approx(busy, abs=1e-12)
        assert hour == AT.replace(minute=0, second=0) and (kind, severity) == ("theft", 3)
    lat_step = grid / 111_320
    assert busy[0] == pytest.approx((math.floor(BUSY[0] / lat_step) + 0.5) * lat_step, abs=1e-12)
    for name, point in events["placed"]:
        if name == "busy":
            assert 0 < metres(point, busy) <= grid / math.sqrt(2)  # moved, at most half a cell's diagonal
    # ~100 m apart in both directions: the next cell north and east.
    with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
        north = conn.execute("SELECT latitude, longitude FROM luminar_public_cell(%s, %s)",
                             (busy[0] + lat_step, busy[1])).fetchone()
        east = conn.execute("SELECT latitude, longitude FROM luminar_public_cell(%s, %s)",
                            (busy[0], busy[1] + 1.2 * grid / (111_320 * math.cos(math.radians(busy[0]))))).fetchone()
    assert metres(busy, north) == pytest.approx(grid, rel=0.01)
    assert metres(busy, east) == pytest.approx(grid, rel=0.01)


def test_a_cell_with_fewer_than_k_events_is_suppressed_and_one_with_k_is_shown(node_login, db_settings, events):
    reader = node_login("luminar_reader")
    quiet = events["centres"]["quiet"]

    def cells():
        with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
            hotspots = {(r[0], r[1]): r[2] for r in conn.execute(
                "SELECT latitude, longitude, incident_count FROM public_hotspots").fetchall()}
            shown = {r for r in conn.execute("SELECT DISTINCT latitude, longitude FROM public_crime_events")}
        return hotspots, shown

    hotspots, shown = cells()
    assert hotspots == {events["centres"]["busy"]: events["k"]} and shown == {events["centres"]["busy"]}

    async def one_more(db):
        event_id = await db.store_crime_event({"event_type": "theft", "geotag": {"lat": quiet[0], "lng": quiet[1]},
                                               "timestamp": AT, "severity": 2, "confidence_score": 0.7}, miner_uid=11)
        await db.update_event_verification(event_id, 21, "verified", 0.9)

    with_facade(db_settings, one_more)
    hotspots, shown = cells()
    assert hotspots[quiet] == events["k"] and quiet in shown


@pytest.mark.parametrize("group", ["luminar_reader", "luminar_monitor", "luminar_analyst"])
def test_the_public_views_are_granted_and_read_the_tables_as_their_owner(node_login, events, group):
    login = node_login(group)
    with psycopg.connect(login.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM public_crime_events").fetchone()[0] == events["k"]
        assert conn.execute("SELECT count(*) FROM public_hotspots").fetchone()[0] == 1


def test_the_reader_is_refused_the_raw_tables_and_the_unsuppressed_views(node_login, events):
    reader = node_login("luminar_reader")
    with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
        for table in ("raw_incident_reports", "crime_events", "audit_log", "public_event_cells", "crime_hotspots",
                      "recent_crime_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(table)))


def test_the_down_section_removes_the_public_views_and_up_restores_them(db_settings):
    from luminar_store.migrator import DEFAULT_DIR, Migrator

    migrator = Migrator(db_settings.conninfo(), DEFAULT_DIR)
    target = "20261130021500"
    while (undone := migrator.rollback()).version != target:
        pass
    assert undone.version == target

    def state(conn):
        return (conn.execute("SELECT to_regclass('public_crime_events') IS NOT NULL").fetchone()[0],
                conn.execute("SELECT has_table_privilege('luminar_reader', 'crime_hotspots', 'SELECT')").fetchone()[0])

    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert state(conn) == (False, True)
    migrator.migrate()
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert state(conn) == (True, False)


def test_a_readers_own_function_never_sees_a_suppressed_row(node_login, events):
    """The public views are security barriers: a function of the reader's in WHERE runs on shown rows only."""
    reader = node_login("luminar_reader")
    seen: list[str] = []
    with psycopg.connect(reader.conninfo(), autocommit=True) as conn:
        conn.add_notice_handler(lambda notice: seen.append(notice.message_primary))
        # Declared immutable and cheap, so that without the barrier the planner would run it below the view's filter
        # (measured: it then sees the suppressed cell).
        conn.execute("""CREATE FUNCTION pg_temp.peek(lat double precision, lng double precision) RETURNS boolean
                        LANGUAGE plpgsql IMMUTABLE COST 0.0001 AS $$
                        BEGIN RAISE NOTICE '%,%', lat, lng; RETURN true; END $$""")
        for view in ("public_crime_events", "public_hotspots"):
            conn.execute(sql.SQL("SELECT * FROM {} WHERE pg_temp.peek(latitude, longitude)").format(
                sql.Identifier(view))).fetchall()
    quiet = events["centres"]["quiet"]
    assert seen and not [m for m in seen if m == f"{quiet[0]},{quiet[1]}"]
    assert {tuple(map(float, m.split(","))) for m in seen} == {events["centres"]["busy"]}
