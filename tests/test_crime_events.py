"""CrimeEventRepository on a real database: store, COPY, recent, radius (indexed), miners, verification, hotspots."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from _async import clock, run

from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.models import CrimeEvent
from luminar_store.repositories.crime_events import (
    EVENTS_WITHIN_BOX,
    EVENTS_WITHIN_RADIUS,
    MAX_GRID_CELLS,
    CrimeEventRepository,
    grid_cell_count,
    search_boxes,
)
from luminar_store.repositories.raw_reports import RawReportRepository

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
NYC = (40.7128, -74.0060)



def event(lat: float = NYC[0], lng: float = NYC[1], *, ago: timedelta = timedelta(minutes=5), **over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": lat, "lng": lng}, "timestamp": NOW - ago, "severity": 3,
            "confidence_score": 0.8}
    data.update(over)
    return data


async def with_repo(settings, work):
    async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as conn:
        return await work(CrimeEventRepository(conn))


def count(conn) -> int:
    return conn.execute("SELECT count(*) FROM crime_events").fetchone()[0]


def project(conn, lat: float, lng: float, metres: float, azimuth_deg: float) -> tuple[float, float]:
    """The point ``metres`` away along a geodesic (PostGIS on the spheroid): (lat, lng)."""
    return conn.execute(
        "SELECT ST_Y(p::geometry), ST_X(p::geometry) FROM "
        "(SELECT ST_Project(ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, radians(%s)) AS p) AS q",
        (lng, lat, metres, azimuth_deg)).fetchone()


def test_store_returns_event_id_and_get_reads_every_field(db_settings):
    cluster_free = event(title="Bag snatched", summary="Near the station", risk_score=0.456,
                         metadata={"source": "miner", "weights": [1, 2]}, crime_type=None)

    async def go(repo):
        eid = await repo.store(cluster_free, miner_uid=123)
        return eid, await repo.get(eid), await repo.get(uuid.uuid4())

    eid, got, missing = run(with_repo(db_settings, go))
    assert isinstance(eid, uuid.UUID) and missing is None
    assert (got.event_id, got.miner_uid, got.event_type, got.title, got.summary) == \
        (eid, 123, "theft", "Bag snatched", "Near the station")
    assert (got.latitude, got.longitude, got.geotag) == (NYC[0], NYC[1], {"lat": NYC[0], "lng": NYC[1]})
    assert got.timestamp == NOW - timedelta(minutes=5) and got.severity_level == 3 and got.confidence_score == 0.8
    assert got.severity == "medium" and got.validator_uid is None
    # the text-flow columns keep their defaults: a located event given by the miner
    assert (got.location_text, got.time_info, got.entities, got.time_end, got.timestamp_source, got.location_source,
            got.request_id) == (None, None, [], None, "event", "event", None)
    assert got.risk_score == 0.46 and got.metadata == {"source": "miner", "weights": [1, 2]}
    assert got.verification_status == "pending" and got.related_reports == [] and got.distance_m is None


def test_related_reports_link_the_event_and_unknown_ids_store_nothing(db_settings, conn):
    async def go(repo):
        reports = RawReportRepository(repo._conn)
        r1 = await reports.store({"external_id": "a", "description": "x", "geotag": {"lat": 1, "lng": 1},
                                  "timestamp": NOW})
        r2 = await reports.store({"external_id": "b", "description": "y", "geotag": {"lat": 1, "lng": 1},
                                  "timestamp": NOW})
        eid = await repo.store(event(related_reports=[r1, str(r2), r1]), miner_uid=1)
        with pytest.raises(NotFoundError) as info:
            await repo.store(event(related_reports=[r1, uuid.uuid4()]), miner_uid=1)
        with pytest.raises(NotFoundError):
            await repo.store_many([event(), event(related_reports=[uuid.uuid4()])], miner_uid=1)
        return r1, r2, eid, await repo.get(eid), await repo.by_report(r2), str(info.value)

    r1, r2, eid, got, linked, message = run(with_repo(db_settings, go))
    assert got.related_reports == [r1, r2]  # duplicates dropped, order kept
    assert [e.event_id for e in linked] == [eid]
    assert "events_related_reports_exist" in message
    assert count(conn) == 1


def test_writer_chosen_event_id_is_its_key_and_another_miner_cannot_reuse_it(db_settings, conn):
    chosen = uuid.uuid4()

    async def go(repo):
        eid = await repo.store(event(event_id=str(chosen)), miner_uid=1)
        again = await repo.store(event(event_id=chosen, confidence_score=0.1), miner_uid=1)  # a retry
        with pytest.raises(ConflictError, match=f"event_id: {chosen} is already stored"):
            await repo.store(event(event_id=chosen), miner_uid=2)
        return eid, again

    assert run(with_repo(db_settings, go)) == (chosen, chosen)
    assert count(conn) == 1


def test_recent_returns_only_the_window_newest_first(db_settings):
    ages = [timedelta(minutes=50), timedelta(minutes=10), timedelta(minutes=70), timedelta(hours=3),
            timedelta(hours=23)]

    async def go(repo):
        ids = [await repo.store(event(ago=a, title=f"{a}"), miner_uid=1) for a in ages]
        return ids, await repo.recent(hours=1), await repo.recent(hours=2), await repo.recent(24, 2), \
            await repo.recent(hours=24)

    ids, one, two, limited, day = run(with_repo(db_settings, go))
    assert [e.event_id for e in one] == [ids[1], ids[0]]
    assert [e.event_id for e in two] == [ids[1], ids[0], ids[2]]
    assert [e.event_id for e in limited] == [ids[1], ids[0]]
    assert [e.event_id for e in day] == [ids[1], ids[0], ids[2], ids[3], ids[4]]  # 24 hours, not one


@pytest.mark.parametrize("centre", [NYC, (-33.8688, 151.2093), (69.6492, 18.9553), (0.0, 179.9995),
                                    (-16.5, -179.9999), (89.9950, 10.0)],
                         ids=["new-york", "sydney", "tromso", "antimeridian-east", "antimeridian-west", "pole"])
def test_within_radius_keeps_900_m_and_drops_1100_m_in_every_direction(db_settings, conn, centre):
    lat, lng = centre
    inside = [project(conn, lat, lng, 900, az) for az in (0, 45, 90, 135, 180, 270)]
    outside = [project(conn, lat, lng, 1100, az) for az in (0, 45, 90, 135, 180, 270)]

    async def go(repo):
        ids_in = [await repo.store(event(*p), miner_uid=1) for p in inside]
        ids_out = [await repo.store(event(*p), miner_uid=1) for p in outside]
        return ids_in, ids_out, await repo.within_radius(lat, lng, 1000)

    ids_in, ids_out, found = run(with_repo(db_settings, go))
    assert sorted(e.event_id for e in found) == sorted(ids_in)
    assert all(e.distance_m == pytest.approx(900, abs=1) for e in found)


def test_within_radius_window_limit_and_order(db_settings):
    async def go(repo):
        old = await repo.store(event(ago=timedelta(days=10)), miner_uid=1)
        new = await repo.store(event(ago=timedelta(hours=1)), miner_uid=1)
        newer = await repo.store(event(ago=timedelta(minutes=1)), miner_uid=1)
        return (old, new, newer, await repo.within_radius(*NYC, 50, days=7), await repo.within_radius(*NYC, 50),
                await repo.within_radius(*NYC, 50, hours=2, limit=1))

    old, new, newer, week, ever, limited = run(with_repo(db_settings, go))
    assert [e.event_id for e in week] == [newer, new]
    assert [e.event_id for e in ever] == [newer, new, old]
    assert [e.event_id for e in limited] == [newer]


def test_radius_queries_use_the_cell_index_and_the_gist_index_for_wide_boxes(db_settings, conn):
    rng = random.Random(7)
    spread = [event(rng.uniform(-60, 60), rng.uniform(-180, 180), ago=timedelta(hours=rng.uniform(0, 160)))
              for _ in range(20_000)]

    assert run(with_repo(db_settings, lambda repo: repo.store_many(spread, miner_uid=2))) == 20_000
    conn.execute("ANALYZE crime_events")
    params = {"latitude": NYC[0], "longitude": NYC[1], "radius_m": 1000.0, "hours": 168, "limit": 100,
              **search_boxes(NYC[0], NYC[1], 1000.0)}
    with conn.transaction():  # the function's statements are counted by the transaction's statistics
        conn.execute(EVENTS_WITHIN_RADIUS, params).fetchall()
        cell_scans, seq_scans = conn.execute(
            "SELECT pg_stat_get_xact_numscans('idx_events_cell_time'::regclass), "
            "pg_stat_get_xact_numscans('crime_events'::regclass)").fetchone()
    assert cell_scans > 0 and seq_scans == 0, (cell_scans, seq_scans)
    wide = {"latitude": NYC[0], "longitude": NYC[1], "radius_m": 50_000.0, "hours": 168, "limit": 100,
            **search_boxes(NYC[0], NYC[1], 50_000.0)}
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + EVENTS_WITHIN_BOX, wide))
    assert "idx_events_geotag" in plan, plan
    assert grid_cell_count(search_boxes(*NYC, 1000)) <= MAX_GRID_CELLS < grid_cell_count(search_boxes(*NYC, 50_000))
    assert grid_cell_count(search_boxes(89.999, 0.0, 1000)) > MAX_GRID_CELLS  # all longitudes: the GiST path


def test_grid_cell_count_covers_the_box_and_both_sides_of_the_antimeridian():
    assert grid_cell_count({"ymin": 0.005, "ymax": 0.015, "xmin": 0.0, "xmax": 0.0099, "xmin2": None,
                            "xmax2": None}) == 2
    assert grid_cell_count({"ymin": -0.001, "ymax": 0.0, "xmin": 179.995, "xmax": 180.0, "xmin2": -180.0,
                            "xmax2": -179.995}) == 2 * (2 + 1)


def _sample_events(rng: random.Random, centres: list[tuple[float, float]], n: int) -> list[dict]:
    """Events around ``centres`` within ~3 km, a quarter of them exactly on or a hair off a 0.01° cell edge."""
    out = []
    for i in range(n):
        lat, lng = centres[i % len(centres)]
        lat = max(-90.0, min(90.0, lat + rng.uniform(-0.03, 0.03)))
        lng = lng + rng.uniform(-0.03, 0.03)
        if i % 4 == 0:  # on an edge of the grid, or within a micro-degree of it
            lat = max(-90.0, min(90.0, round(lat, 2) + rng.choice([0.0, 1e-9, -1e-9, 1e-6, -1e-6])))
            lng = round(lng, 2) + rng.choice([0.0, 1e-9, -1e-9, 1e-6, -1e-6])
        lng = (lng + 180.0) % 360.0 - 180.0 if not -180.0 <= lng <= 180.0 else lng
        out.append(event(lat, lng, ago=timedelta(seconds=rng.uniform(1, 10 * 86_400)),
                         event_type=rng.choice(["theft", "assault", "burglary", "fraud", "vandalism"]),
                         severity=rng.randint(1, 5),
                         verification_status=rng.choice(["verified", "verified", "pending", "rejected"])))
    return out


BRUTE_FORCE_RADIUS = """
SELECT event_id FROM crime_events
 WHERE ST_DWithin(geotag::geography, ST_SetSRID(ST_MakePoint(%(longitude)s, %(latitude)s), 4326)::geography,
                 %(radius_m)s)
   AND "timestamp" >= now() - make_interval(hours => %(hours)s)
 ORDER BY "timestamp" DESC
 LIMIT %(limit)s
"""


def test_grid_radius_search_equals_a_brute_force_geodesic_query(db_settings):
    rng = random.Random(11)
    centres = [NYC, (-33.8688, 151.2093), (0.0, 0.0), (0.005, 179.995), (-16.5, -179.999), (69.6492, 18.9553)]
    events = _sample_events(rng, centres, 3000)
    queries = []
    for i in range(120):
        lat, lng = centres[i % len(centres)]
        lat, lng = lat + rng.uniform(-0.02, 0.02), lng + rng.uniform(-0.02, 0.02)
        if i % 3 == 0:  # the query point on a cell edge
            lat, lng = round(lat, 2), round(lng, 2)
        lng = (lng + 180.0) % 360.0 - 180.0 if not -180.0 <= lng <= 180.0 else lng
        queries.append((lat, lng, rng.choice([30.0, 400.0, 1000.0, 2500.0]), rng.choice([6, 48, 168, 24 * 3650]),
                        rng.choice([1, 5, 40, 10_000])))

    async def go(repo):
        await repo.store_many(events, miner_uid=3)
        await repo._conn.execute("ANALYZE crime_events")
        compared = 0
        async with repo._conn.transaction():  # one now() for every query
            for lat, lng, radius, hours, limit in queries:
                params = {"latitude": lat, "longitude": lng, "radius_m": radius, "hours": hours, "limit": limit,
                          **search_boxes(lat, lng, radius)}
                assert grid_cell_count(search_boxes(lat, lng, radius)) <= MAX_GRID_CELLS
                expected = [r[0] for r in await (await repo._conn.execute(BRUTE_FORCE_RADIUS, params)).fetchall()]
                grid = [r[0] for r in await (await repo._conn.execute(EVENTS_WITHIN_RADIUS, params)).fetchall()]
                box = [r[0] for r in await (await repo._conn.execute(EVENTS_WITHIN_BOX, params)).fetchall()]
                facade = [e.event_id for e in await repo.within_radius(lat, lng, radius, hours=hours, limit=limit)]
                assert grid == expected == box == facade, (lat, lng, radius, hours, limit)
                compared += bool(expected)
        return compared

    assert run(with_repo(db_settings, go)) >= 60  # most queries found something to compare


def test_search_boxes_split_at_the_antimeridian_and_open_at_the_poles():
    box = search_boxes(0.0, 179.9995, 1000)
    assert box["xmax"] == 180.0 and box["xmin2"] == -180.0 and -179.995 < box["xmax2"] < -179.985
    assert search_boxes(89.999, 0.0, 1000)["xmin"] == -180.0
    plain = search_boxes(*NYC, 1000)
    assert plain["xmin2"] is None and plain["xmin"] < NYC[1] < plain["xmax"]


def test_store_many_by_copy_and_a_bad_item_stores_nothing(db_settings, conn):
    def events():
        for n in range(500):
            yield event(ago=timedelta(minutes=n), severity=1 + n % 5, related_reports=[])

    async def go(repo):
        stored = await repo.store_many(events(), miner_uid=9)
        with pytest.raises(ValidationError) as info:
            await repo.store_many([event(), event(), event(confidence_score=1.5)], miner_uid=9)
        return stored, info.value, await repo.by_miner(9, limit=3)

    stored, error, mine = run(with_repo(db_settings, go))
    assert stored == 500 and count(conn) == 500
    assert error.field == "events[2].confidence_score"
    assert [e.timestamp for e in mine] == [NOW - timedelta(minutes=n) for n in range(3)]
    totals = conn.execute("SELECT count(DISTINCT event_id), sum(severity_level) FROM crime_events").fetchone()
    assert totals == (500, 1500)


def test_by_miner_only_that_miners_events(db_settings):
    async def go(repo):
        mine = [await repo.store(event(ago=timedelta(minutes=m)), miner_uid=5) for m in (3, 1, 2)]
        await repo.store(event(), miner_uid=6)
        return mine, await repo.by_miner(5), await repo.by_miner(77)

    mine, got, none = run(with_repo(db_settings, go))
    assert [e.event_id for e in got] == [mine[1], mine[2], mine[0]] and none == []


def test_update_verification(db_settings, conn):
    async def go(repo):
        eid = await repo.store(event(), miner_uid=1)
        updated = await repo.update_verification(eid, status="verified", validator_uid=9, score=0.93)
        with pytest.raises(NotFoundError):
            await repo.update_verification(uuid.uuid4(), status="verified", validator_uid=9)
        with pytest.raises(ValidationError):
            await repo.update_verification(eid, status="approved", validator_uid=9)
        return updated

    updated = run(with_repo(db_settings, go))
    assert (updated.verification_status, updated.validator_uid, updated.verification_score) == ("verified", 9, 0.93)
    assert updated.verified_at is not None and updated.updated_at >= updated.created_at
    assert conn.execute("SELECT count(*) FROM audit_log WHERE table_name = 'crime_events' AND operation = 'UPDATE'"
                        ).fetchone()[0] == 1


def cell_centre(conn, lat: float, lng: float, cell_m: float = 400.0) -> tuple[float, float]:
    """The centre of the equal-area hotspot cell holding a point (the schema's luminar_cell, luminar_cell_centre)."""
    return conn.execute("SELECT ctr.latitude, ctr.longitude FROM luminar_cell(ST_SetSRID(ST_MakePoint(%s, %s), 4326), "
                        "%s) AS c CROSS JOIN LATERAL luminar_cell_centre(c.cell_row, c.cell_col, %s) AS ctr",
                        (lng, lat, cell_m, cell_m)).fetchone()


def test_hotspot_where_ten_verified_events_are_not_where_pending_or_old_ones_are(db_settings, conn):
    rng = random.Random(3)
    # points within ~50 m of a 400 m cell's centre: one cell each (a cell is >= 300 m a side at these latitudes)
    manhattan_c, paris_c, la_c, london_c = (cell_centre(conn, *p) for p in
                                            [(40.715, -74.005), (48.855, 2.355), (34.055, -118.245), (51.505, -0.125)])

    def around(centre, n, **over):
        return [event(centre[0] + rng.uniform(-0.0004, 0.0004), centre[1] + rng.uniform(-0.0004, 0.0004),
                      severity=1 + i % 5, **over) for i in range(n)]

    manhattan = around(manhattan_c, 10, verification_status="verified")
    small = around(paris_c, 3, verification_status="verified", event_type="assault")
    pending_la = around(la_c, 12)  # pending
    old_london = around(london_c, 15, verification_status="verified", ago=timedelta(days=20))

    async def go(repo):
        await repo.store_many(manhattan + small + pending_la + old_london, miner_uid=1)
        return await repo.hotspots(days=7), await repo.hotspots(days=30), await repo.hotspots(7, min_incidents=5)

    week, month, big = run(with_repo(db_settings, go))
    assert [(h.latitude, h.longitude, h.incident_count) for h in week] == \
        [(*manhattan_c, 10), (*paris_c, 3)]  # centres of 6 decimals, no float noise
    top = week[0]
    assert top.avg_severity == pytest.approx(sum(e["severity"] for e in manhattan) / 10, abs=0.01)
    assert top.max_severity == 5 and top.crime_types == ["theft"] and top.first_seen <= top.last_seen
    assert [h.incident_count for h in month] == [15, 10, 3]
    assert [h.incident_count for h in big] == [10]


def test_hotspots_see_a_just_verified_event_and_every_cell_size_counts_the_same(db_settings, conn):
    rng = random.Random(5)
    events = _sample_events(rng, [NYC, (51.5074, -0.1278), (-0.003, -0.004), (0.004, 179.996)], 1200)
    far = cell_centre(conn, -45.123, 170.456)

    async def go(repo):
        await repo.store_many(events, miner_uid=4)
        # a new cell: nothing verified yet, then one verification makes it a hotspot at once
        eid = await repo.store(event(*far, event_type="arson"), miner_uid=4)
        before = await repo.hotspots(7, limit=10_000)
        await repo.update_verification(eid, status="verified", validator_uid=1)
        after = await repo.hotspots(7, limit=10_000)
        wide = await repo.hotspots(7, cell_m=50_000, limit=10_000)
        return before, after, wide

    before, after, wide = run(with_repo(db_settings, go))
    assert not [h for h in before if h.latitude < -40]
    assert [(h.incident_count, h.crime_types, h.avg_severity) for h in after if h.latitude < -40] == \
        [(1, ["arson"], 3.0)]
    assert [(h.latitude, h.longitude) for h in after if h.latitude < -40] == [far]
    assert sum(h.incident_count for h in wide) == sum(h.incident_count for h in after) == conn.execute(
        "SELECT count(*) FROM crime_events WHERE verification_status = 'verified' "
        "AND \"timestamp\" >= now() - interval '7 days'").fetchone()[0]  # each event its own incident here
    assert conn.execute("SELECT count(*) FROM crime_events WHERE cell_row <> floor(latitude / 0.01) "
                        "OR cell_col <> floor(longitude / 0.01)").fetchone()[0] == 0


@pytest.mark.parametrize("call", [
    lambda repo: repo.recent(hours="24; DROP TABLE crime_events"),
    lambda repo: repo.recent(hours=1.5),
    lambda repo: repo.recent(hours=True),
    lambda repo: repo.recent(hours=-1),
    lambda repo: repo.recent(hours=24, limit=0),
    lambda repo: repo.within_radius(95, 0, 1000),
    lambda repo: repo.within_radius(0, 0, -5),
    lambda repo: repo.within_radius(0, 0, 5, hours=1, days=1),
    lambda repo: repo.hotspots(days=0),
    lambda repo: repo.hotspots(days=7, cell_m=float("nan")),
    lambda repo: repo.hotspots(days=7, cell_m=10),
    lambda repo: repo.by_miner(-3),
    lambda repo: repo.store(event(), miner_uid="7"),
    lambda repo: repo.store(CrimeEvent, miner_uid=1),
])
def test_bad_arguments_are_refused(db_settings, conn, call):
    async def go(repo):
        with pytest.raises(ValidationError):
            await call(repo)

    run(with_repo(db_settings, go))
    assert count(conn) == 0


def test_record_row_builds_by_position_and_falls_back_to_names(db_settings, conn):
    from luminar_store.models import Hotspot
    from luminar_store.repositories.crime_events import record_row

    first = datetime(2025, 1, 1, tzinfo=timezone.utc)

    async def go():
        async with await psycopg.AsyncConnection.connect(db_settings.conninfo()) as c:
            in_order = c.cursor(row_factory=record_row(Hotspot))
            await in_order.execute("SELECT 1.5 AS latitude, 2.5 AS longitude, 3 AS incident_count, "
                                   "2.0 AS avg_severity, 4 AS max_severity, ARRAY['theft'] AS crime_types, "
                                   "%s::timestamptz AS first_seen, %s::timestamptz AS last_seen", (first, first))
            shuffled = c.cursor(row_factory=record_row(Hotspot))
            await shuffled.execute("SELECT %s::timestamptz AS last_seen, %s::timestamptz AS first_seen, "
                                   "ARRAY['theft'] AS crime_types, 4 AS max_severity, 2.0 AS avg_severity, "
                                   "3 AS incident_count, 2.5 AS longitude, 1.5 AS latitude", (first, first))
            return await in_order.fetchone(), await shuffled.fetchone()

    a, b = run(go())
    assert a == b
    assert (a.latitude, a.longitude, a.incident_count, a.max_severity, a.crime_types) == (1.5, 2.5, 3, 4, ["theft"])
