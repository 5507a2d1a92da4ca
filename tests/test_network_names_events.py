"""The network's column names for raw_incident_reports and crime_events (migration 20261129220100).

- the upgrade keeps every row and moves each value to its new name; down and up again keep them too;
- the reference access layer's read queries run unchanged on our schema;
- an unlocated event (no coordinates yet) is counted, but never found by a spatial query, until ``locate()``;
- records: ``severity`` is the word of ``severity_level``, a derived key of the mapping access.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from _async import clock, run

from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.migrator import DEFAULT_DIR, Migrator, discover_migrations
from luminar_store.models import CrimeEventRecord
from luminar_store.repositories.clusters import ClusterRepository
from luminar_store.repositories.crime_events import (
    MAX_GRID_CELLS,
    CrimeEventRepository,
    grid_cell_count,
    search_boxes,
)
from luminar_store.repositories.raw_reports import RawReportRepository
from luminar_store.severity import word_of

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

VERSION = "20261129220100"
NYC = (40.7128, -74.0060)


def _previous_version() -> str:
    """The last migration before this one (another may be merged before it: never hard-coded)."""
    versions = [m.version for m in discover_migrations(DEFAULT_DIR)]
    assert VERSION in versions
    return max(v for v in versions if v < VERSION)


# ---------------------------------------------------------------------------------------------------------------------
# 1. The upgrade keeps every row
# ---------------------------------------------------------------------------------------------------------------------

# 300 reports (a third processed) and 240 events under the OLD names: every third event names two reports, every
# other one is verified by a validator; severities 1..5.
FILL_OLD = [
    """INSERT INTO raw_incident_reports (report_id, external_id, reporter_id, crime_type, description, latitude,
                                         longitude, "timestamp", status, metadata)
       SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'ext-' || g,
              CASE WHEN g % 4 = 0 THEN NULL ELSE 'user-' || (g % 17) END, 'theft',
              'Report ' || g || ': a bicycle was stolen near the station', 40 + g * 0.001, -74 - g * 0.001,
              now() - g * interval '1 minute', CASE WHEN g % 3 = 0 THEN 'processed' ELSE 'pending' END,
              jsonb_build_object('n', g)
         FROM generate_series(1, 300) AS g""",
    """INSERT INTO crime_events (event_id, miner_uid, event_type, title, summary, latitude, longitude, "timestamp",
                                 severity, confidence_score, related_reports, verification_status, verified_by,
                                 verification_score, verified_at, metadata)
       SELECT ('00000000-0000-4000-9000-' || lpad(g::text, 12, '0'))::uuid, g % 11, 'theft', 'Event ' || g,
              'Summary of event ' || g, 40.7 + g * 0.0001, -74.0 + g * 0.0001, now() - g * interval '5 minutes',
              1 + g % 5, 0.5 + (g % 50) / 100.0,
              CASE WHEN g % 3 = 0
                   THEN ARRAY[('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid,
                              ('00000000-0000-4000-8000-' || lpad((g + 1)::text, 12, '0'))::uuid]
                   ELSE '{}' END,
              CASE WHEN g % 2 = 0 THEN 'verified' ELSE 'pending' END,
              CASE WHEN g % 2 = 0 THEN 100 + g % 7 END,
              CASE WHEN g % 2 = 0 THEN 0.9 END,
              CASE WHEN g % 2 = 0 THEN now() END,
              jsonb_build_object('g', g)
         FROM generate_series(1, 240) AS g""",
]

# One checksum per table over every value the migration must keep, named as {description} etc.; the same text under
# the old and the new names gives the same figure when every value moved with its column.
REPORTS_SUM = """
SELECT count(*), md5(string_agg(concat_ws('|', report_id, external_id, {reporter_id}, crime_type, {description},
                                          latitude, longitude, "timestamp", status, metadata::text, created_at),
                                '#' ORDER BY report_id))
  FROM raw_incident_reports
"""
EVENTS_SUM = """
SELECT count(*), sum({severity}), count({verified_by}), sum({verified_by}),
       md5(string_agg(concat_ws('|', event_id, miner_uid, title, summary, latitude, longitude, "timestamp", {severity},
                                confidence_score, related_reports::text, verification_status, {verified_by},
                                verification_score, verified_at, metadata::text, geotag::text, cell_row, cell_col),
                      '#' ORDER BY event_id))
  FROM crime_events
"""
OLD = {"reporter_id": "reporter_id", "description": "description", "severity": "severity", "verified_by": "verified_by"}
NEW = {"reporter_id": "user_id", "description": "text_description", "severity": "severity_level",
       "verified_by": "validator_uid"}


def _figures(conn: psycopg.Connection, names: dict[str, str]) -> tuple:
    return (conn.execute(REPORTS_SUM.format(**names)).fetchone(), conn.execute(EVENTS_SUM.format(**names)).fetchone())


def _columns(conn: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s "
                                       "ORDER BY ordinal_position", (table,))]


def _applied(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_the_upgrade_keeps_every_row_and_moves_values_to_the_new_names(empty_db):
    migrator = Migrator(empty_db, DEFAULT_DIR)
    previous = _previous_version()
    migrator.migrate(previous)
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        assert _applied(conn)[-1] == previous and VERSION not in _applied(conn)
        for statement in FILL_OLD:
            conn.execute(statement)
        before = _figures(conn, OLD)
        assert before[0][0] == 300 and before[1][0] == 240 and before[1][2] == 120  # 120 verified by a validator
        descriptions = dict(conn.execute("SELECT report_id, description FROM raw_incident_reports"))
        reporters = dict(conn.execute("SELECT report_id, reporter_id FROM raw_incident_reports"))
        severities = dict(conn.execute("SELECT event_id, severity FROM crime_events"))

        migrator.migrate(VERSION)
        assert _applied(conn)[-1] == VERSION
        assert _figures(conn, NEW) == before
        assert dict(conn.execute("SELECT report_id, text_description FROM raw_incident_reports")) == descriptions
        assert dict(conn.execute("SELECT report_id, user_id FROM raw_incident_reports")) == reporters
        assert dict(conn.execute("SELECT event_id, severity_level FROM crime_events")) == severities
        reports, events = _columns(conn, "raw_incident_reports"), _columns(conn, "crime_events")
        assert {"text_description", "user_id", "source"} <= set(reports)
        assert not {"description", "reporter_id"} & set(reports)
        assert {"severity_level", "validator_uid", "location_text", "time_info", "entities", "time_end",
                "timestamp_source", "location_source", "request_id"} <= set(events)
        assert not {"severity", "verified_by"} & set(events)
        # existing rows: the reference's source, located events whose time and place the miner gave
        sources = conn.execute("SELECT source, count(*) FROM raw_incident_reports GROUP BY source").fetchall()
        assert sources == [("mobile_app", 300)]
        assert conn.execute(
            "SELECT count(*) FROM crime_events WHERE timestamp_source = 'event' AND location_source = 'event' "
            "AND entities = '[]' AND location_text IS NULL AND time_info IS NULL AND time_end IS NULL "
            "AND request_id IS NULL").fetchone()[0] == 240
        # the views expose the new names
        view = _columns(conn, "recent_crime_events")
        assert {"severity_level", "validator_uid", "location_source", "entities"} <= set(view)
        assert not {"severity", "verified_by"} & set(view)
        assert conn.execute("SELECT sum(incident_count) FROM crime_hotspots").fetchone()[0] > 0
        # no function of ours names a renamed column any more (a text body would fail only when called)
        stale = conn.execute(
            r"""SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 WHERE n.nspname = 'public'
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
                   AND p.prosrc ~ '\m(severity|verified_by|description|reporter_id)\M'""").fetchall()
        assert stale == []

        assert migrator.rollback().version == VERSION
        assert VERSION not in _applied(conn)
        assert _figures(conn, OLD) == before
        assert "severity" in _columns(conn, "recent_crime_events")
        assert conn.execute("SELECT sum(incident_count) FROM crime_hotspots").fetchone()[0] > 0

        migrator.migrate()  # and on to the newest schema
        assert _figures(conn, NEW) == before


def test_the_rollback_refuses_while_unlocated_events_exist(empty_db):
    migrator = Migrator(empty_db, DEFAULT_DIR)
    migrator.migrate(VERSION)
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        conn.execute("""INSERT INTO crime_events (miner_uid, event_type, "timestamp", severity_level, confidence_score,
                                                  location_source) VALUES (1, 'theft', now(), 3, 0.9, NULL)""")
        with pytest.raises(Exception, match="have no location"):
            migrator.rollback()
        assert _applied(conn)[-1] == VERSION and "severity_level" in _columns(conn, "crime_events")


# ---------------------------------------------------------------------------------------------------------------------
# 2. The reference access layer's read queries, unchanged
# ---------------------------------------------------------------------------------------------------------------------
# Copied literally (as test data) from the reference's database/access.py. It runs on asyncpg, whose parameters are
# $1, $2 ...; psycopg's are %s, so `$1` is replaced by `%s` when run. get_recent_events and get_crime_hotspots format
# their interval with Python's `%` first, as the reference does (`... % hours`, `... % days`).

REF_GET_PENDING_REPORTS = """
                    SELECT report_id, external_id, text_description, 
                           ST_X(geotag) as longitude, ST_Y(geotag) as latitude,
                           timestamp, media_urls, media_hashes, user_id, metadata
                    FROM raw_incident_reports 
                    WHERE status = 'pending'
                    ORDER BY timestamp ASC
                    LIMIT $1
                """  # noqa: W291 - copied literally, trailing spaces included

REF_GET_RECENT_EVENTS = """
                    SELECT event_id, event_type, summary, confidence_score,
                           ST_X(geotag) as longitude, ST_Y(geotag) as latitude,
                           timestamp, severity_level, verification_status,
                           miner_uid, verification_score
                    FROM crime_events 
                    WHERE timestamp > CURRENT_TIMESTAMP - INTERVAL '%s hours'
                    ORDER BY timestamp DESC
                    LIMIT $1
                """  # noqa: W291

REF_GET_CRIME_HOTSPOTS = """
                    SELECT 
                        event_type,
                        ST_X(geotag) as longitude,
                        ST_Y(geotag) as latitude,
                        COUNT(*) as incident_count,
                        AVG(severity_level) as avg_severity,
                        AVG(confidence_score) as avg_confidence
                    FROM crime_events 
                    WHERE timestamp > CURRENT_TIMESTAMP - INTERVAL '%s days'
                        AND verification_status = 'verified'
                    GROUP BY event_type, geotag
                    HAVING COUNT(*) >= 2
                    ORDER BY incident_count DESC
                    LIMIT 50
                """  # noqa: W291

# get_database_stats: its first statement, without the two lines reading miner_performance and
# validator_performance (those tables' names are another change's), and its second statement.
REF_DATABASE_STATS = """
                    SELECT 
                        (SELECT COUNT(*) FROM raw_incident_reports) as total_reports,
                        (SELECT COUNT(*) FROM crime_events) as processed_events,
                        (SELECT AVG(verification_score) FROM crime_events WHERE verification_score IS NOT NULL) as avg_verification_score
                """  # noqa: W291, E501
REF_VERIFIED_COUNT = """
                    SELECT COUNT(*) FROM crime_events WHERE verification_status = 'verified'
                """


def _asyncpg_to_psycopg(query: str) -> str:
    return query.replace("$1", "%s")


def _with_window(query: str, window: str) -> str:
    """The reference formats its window into the text (``INTERVAL '%s hours'`` % hours); here the window is this
    test's own constant, written in the same place, and nothing else reaches the SQL text."""
    return query.replace("'%s hours'", f"'{window}'").replace("'%s days'", f"'{window}'")


def _dicts(cur: psycopg.Cursor) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_the_reference_read_queries_run_unchanged(db_settings, conn):
    hours = [3, 2, 1]

    async def fill(aconn):
        reports, events = RawReportRepository(aconn), CrimeEventRepository(aconn)
        # the nodes' own report shape: text_description, user_id, geotag
        rids = [await reports.store({"report_id": f"app-{n}", "text_description": f"Report number {n}",
                                     "user_id": f"u-{n}", "geotag": {"lat": 48.85 + n, "lng": 2.35 + n},
                                     "timestamp": NOW - timedelta(hours=h), "media_urls": [f"https://m/{n}.jpg"],
                                     "media_hashes": [f"h{n}"], "metadata": {"n": n}})
                for n, h in enumerate(hours)]
        done = await reports.store({"report_id": "app-done", "text_description": "Done", "geotag": NYC_GEOTAG,
                                    "timestamp": NOW - timedelta(hours=5)})
        await reports.mark_processed(done)

        def event(ago: timedelta, geotag: dict, kind: str = "theft", severity: int = 3, confidence: float = 0.8):
            return {"event_type": kind, "geotag": geotag, "timestamp": NOW - ago, "severity": severity,
                    "confidence_score": confidence, "summary": f"{kind} {ago}", "related_reports": [rids[0]]}

        thefts = [await events.store(event(timedelta(hours=1 + i), NYC_GEOTAG, severity=2 + i, confidence=0.7),
                                     miner_uid=5) for i in range(3)]
        assaults = [await events.store(event(timedelta(hours=2), PARIS_GEOTAG, "assault", 5, 0.9)
                                       | {"summary": f"assault {i}"}, miner_uid=6)  # two events: two summaries
                    for i in range(2)]
        lone = await events.store(event(timedelta(hours=4), PARIS_GEOTAG, "fraud", 1), miner_uid=7)
        pending = await events.store(event(timedelta(minutes=10), NYC_GEOTAG, severity=4), miner_uid=8)
        old = await events.store(event(timedelta(days=3), NYC_GEOTAG), miner_uid=9)  # verified, not in 24 hours
        older = await events.store(event(timedelta(days=8), NYC_GEOTAG), miner_uid=9)  # too old for hotspots
        for eid in [*thefts, *assaults, lone, old, older]:
            await events.update_verification(eid, status="verified", validator_uid=4, score=0.9)
        return rids, thefts, assaults, lone, pending

    rids, thefts, assaults, lone, pending = run(_with_conn(db_settings, fill))

    pending_reports = _dicts(conn.execute(_asyncpg_to_psycopg(REF_GET_PENDING_REPORTS), (50,)))
    assert [r["report_id"] for r in pending_reports] == rids  # oldest first
    assert [(r["external_id"], r["text_description"], r["user_id"], r["longitude"], r["latitude"], r["metadata"])
            for r in pending_reports] == [(f"app-{n}", f"Report number {n}", f"u-{n}", pytest.approx(2.35 + n),
                                           pytest.approx(48.85 + n), {"n": n}) for n in range(3)]
    assert pending_reports[0]["media_urls"] == ["https://m/0.jpg"] and pending_reports[0]["media_hashes"] == ["h0"]

    recent = _dicts(conn.execute(_asyncpg_to_psycopg(_with_window(REF_GET_RECENT_EVENTS, "24 hours")), (100,)))
    # the last 24 hours (not the 3- and 8-day-old events), newest first
    assert {r["event_id"] for r in recent} == {pending, *thefts, *assaults, lone} and len(recent) == 7
    assert recent[0]["event_id"] == pending and recent[-1]["event_id"] == lone
    assert [r["timestamp"] for r in recent] == sorted((r["timestamp"] for r in recent), reverse=True)
    by_id = {r["event_id"]: r for r in recent}
    assert (by_id[pending]["severity_level"], by_id[pending]["verification_status"], by_id[pending]["miner_uid"],
            by_id[pending]["verification_score"]) == (4, "pending", 8, None)
    assert (by_id[lone]["severity_level"], by_id[lone]["verification_status"], by_id[lone]["longitude"],
            by_id[lone]["latitude"]) == (1, "verified", PARIS_GEOTAG["lng"], PARIS_GEOTAG["lat"])

    hotspots = _dicts(conn.execute(_with_window(REF_GET_CRIME_HOTSPOTS, "7 days")))
    assert [(h["event_type"], h["longitude"], h["latitude"], h["incident_count"]) for h in hotspots] == [
        ("theft", NYC[1], NYC[0], 4), ("assault", PARIS_GEOTAG["lng"], PARIS_GEOTAG["lat"], 2)]
    assert float(hotspots[0]["avg_severity"]) == pytest.approx((2 + 3 + 4 + 3) / 4)  # the three and the 3-day-old
    assert float(hotspots[1]["avg_severity"]) == 5 and float(hotspots[1]["avg_confidence"]) == pytest.approx(0.9)

    stats = _dicts(conn.execute(REF_DATABASE_STATS))[0]
    assert (stats["total_reports"], stats["processed_events"]) == (4, 9)
    assert stats["avg_verification_score"] == pytest.approx(0.9)
    assert conn.execute(REF_VERIFIED_COUNT).fetchone()[0] == 8


NYC_GEOTAG = {"lat": NYC[0], "lng": NYC[1]}
PARIS_GEOTAG = {"lat": 48.8566, "lng": 2.3522}


async def _with_conn(settings, work):
    async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as aconn:
        return await work(aconn)


# ---------------------------------------------------------------------------------------------------------------------
# 3. Unlocated events
# ---------------------------------------------------------------------------------------------------------------------

INSERT_UNLOCATED = """
INSERT INTO crime_events (miner_uid, event_type, "timestamp", severity_level, confidence_score, verification_status,
                          location_source, location_text, time_info, entities, timestamp_source, request_id,
                          created_at)
VALUES (%(miner)s, 'theft', %(at)s, 4, 0.8, 'verified', NULL, 'Near the old mill, Springfield', 'yesterday evening',
        '[{"type": "place", "text": "old mill"}]', 'source_reports', %(request)s, %(created)s)
RETURNING event_id
"""


def test_an_unlocated_event_is_counted_but_never_found_by_place_until_located(db_settings, conn):
    near = (NYC[0] + 0.0001, NYC[1])  # the point it will be given: the located event's cell

    async def body(aconn):
        events = CrimeEventRepository(aconn)
        located = await events.store({"event_type": "theft", "geotag": NYC_GEOTAG, "severity": 2,
                                      "timestamp": NOW - timedelta(hours=1), "confidence_score": 0.9}, miner_uid=1)
        await events.update_verification(located, status="verified", validator_uid=3, score=0.8)
        first = (await (await aconn.execute(INSERT_UNLOCATED, {
            "miner": 2, "at": NOW - timedelta(hours=2), "request": "req-1",
            "created": NOW - timedelta(minutes=30)})).fetchone())[0]
        second = (await (await aconn.execute(INSERT_UNLOCATED, {
            "miner": 2, "at": NOW - timedelta(hours=3), "request": "req-2",
            "created": NOW - timedelta(minutes=20)})).fetchone())[0]

        # counted by the totals, listed where place does not matter
        assert await events.counts() == (3, 3)
        recent = {e.event_id: e for e in await events.recent(hours=24)}
        assert set(recent) == {located, first, second}
        assert (recent[first].latitude, recent[first].longitude, recent[first].geotag, recent[first].location_source,
                recent[first].location_text, recent[first].entities, recent[first].timestamp_source,
                recent[first].request_id) == (None, None, None, None, "Near the old mill, Springfield",
                                              [{"type": "place", "text": "old mill"}], "source_reports", "req-1")
        assert {e.event_id for e in await events.by_miner(2)} == {first, second}
        # the geocoding queue: oldest stored first
        assert [e.event_id for e in await events.unlocated()] == [first, second]

        # never found by place: both radius paths, both hotspot paths, the view
        assert grid_cell_count(search_boxes(*NYC, 5_000)) <= MAX_GRID_CELLS < grid_cell_count(
            search_boxes(*NYC, 900_000))
        for radius in (5_000, 900_000):  # the grid cells, then the GiST box
            assert [e.event_id for e in await events.within_radius(*NYC, radius, days=1)] == [located]
        assert [(h.incident_count, h.latitude is not None) for h in await events.hotspots(days=1)] == [(1, True)]
        assert [h.incident_count for h in await events.hotspots(days=1, cell_m=50_000)] == [1]
        clusters = ClusterRepository(aconn)
        cluster = await clusters.store({"centre": NYC_GEOTAG, "radius_m": 500, "time_start": NOW - timedelta(days=1),
                                        "time_end": NOW})
        with pytest.raises(ValidationError, match="no location yet") as info:
            await clusters.assign_events(cluster.cluster_id, [located, first])
        assert info.value.field == "event_ids"
        assert await clusters.assign_events(cluster.cluster_id, [located]) == 1  # all or nothing: located alone

        # locate: checked first, unknown ids refused, then it is found by place
        with pytest.raises(ValidationError):
            await events.locate(first, 91.0, 0.0)
        with pytest.raises(ValidationError):
            await events.locate(first, float("nan"), 0.0)
        with pytest.raises(NotFoundError):
            await events.locate(uuid.uuid4(), *near)
        moved = await events.locate(first, *near)
        assert (moved.event_id, moved.latitude, moved.longitude, moved.location_source, moved.geotag) == (
            first, near[0], near[1], "geocoded", {"lat": near[0], "lng": near[1]})
        assert {e.event_id for e in await events.within_radius(*NYC, 5_000, days=1)} == {located, first}
        assert {e.event_id for e in await events.within_radius(*NYC, 900_000, days=1)} == {located, first}
        assert [h.incident_count for h in await events.hotspots(days=1)] == [2]
        assert [h.incident_count for h in await events.hotspots(days=1, cell_m=50_000)] == [2]
        assert [e.event_id for e in await events.unlocated()] == [second]
        assert await clusters.assign_events(cluster.cluster_id, [located, first]) == 1
        return first, second

    first, second = run(_with_conn(db_settings, body))
    # the generated columns are NULL for the unlocated one, set for the located one
    cells = dict((r[0], r[1:]) for r in conn.execute(
        "SELECT event_id, geotag IS NULL, cell_row IS NULL, cell_col IS NULL FROM crime_events "
        "WHERE event_id IN (%s, %s)", (first, second)))
    assert cells == {first: (False, False, False), second: (True, True, True)}
    view = conn.execute("SELECT incident_count FROM crime_hotspots").fetchall()
    assert view == [(2,)]  # the located event and the one just located; never the unlocated one
    assert conn.execute("SELECT count(*) FROM recent_crime_events WHERE latitude IS NULL").fetchone()[0] == 1


def test_the_hotspot_view_leaves_unlocated_events_out(conn):
    for _ in range(3):
        conn.execute(INSERT_UNLOCATED, {"miner": 1, "at": NOW - timedelta(hours=1), "request": None,
                                        "created": NOW})
    assert conn.execute("SELECT count(*) FROM crime_hotspots").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM crime_hotspots_since(7, 50000)").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM crime_events").fetchone()[0] == 3


def test_an_unlocated_insert_must_say_so_and_a_half_location_is_refused(conn):
    # location_source defaults to 'event': an unlocated insert must pass NULL explicitly
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        conn.execute("""INSERT INTO crime_events (miner_uid, event_type, "timestamp", severity_level,
                                                  confidence_score) VALUES (1, 'theft', now(), 3, 0.9)""")
    assert info.value.diag.constraint_name == "events_location_source_located"
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        conn.execute("""INSERT INTO crime_events (miner_uid, event_type, latitude, "timestamp", severity_level,
                                                  confidence_score, location_source)
                        VALUES (1, 'theft', 40.0, now(), 3, 0.9, NULL)""")
    assert info.value.diag.constraint_name == "events_location_pair"


# ---------------------------------------------------------------------------------------------------------------------
# 4. Records
# ---------------------------------------------------------------------------------------------------------------------

def test_records_give_the_severity_word_beside_the_level(db_settings):
    async def body(aconn):
        events, reports = CrimeEventRepository(aconn), RawReportRepository(aconn)
        rid = await reports.store({"external_id": "app-7", "description": "Window smashed", "reporter_id": "u-7",
                                   "geotag": NYC_GEOTAG, "timestamp": NOW})
        ids = [await events.store({"event_type": "theft", "geotag": NYC_GEOTAG, "timestamp": NOW,
                                   "severity": level, "confidence_score": 0.5}, miner_uid=1) for level in range(1, 6)]
        return await reports.get(rid), [await events.get(eid) for eid in ids]

    report, records = run(_with_conn(db_settings, body))
    assert report["text_description"] == "Window smashed" and report["user_id"] == "u-7"
    assert dict(report)["source"] == "mobile_app" and "description" not in report
    words = []
    for level, record in enumerate(records, start=1):
        assert isinstance(record, CrimeEventRecord)
        assert record.severity_level == level and record["severity_level"] == level
        assert record.severity == dict(record)["severity"] == record["severity"] == record.get("severity")
        assert record.severity == word_of(level)  # the one definition of the mapping
        words.append(record.severity)
        assert record.keys()[-1] == "severity" and "severity" in record
        assert list(dict(record)) == list(record.keys())
        assert dict(record.items())["severity"] == record.severity
        assert record.as_dict()["severity_level"] == level
    assert words == ["low", "low", "medium", "high", "high"]
    record = records[0]
    record.latitude = record.longitude = None
    assert record.geotag is None
