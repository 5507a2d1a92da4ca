"""ClusterRepository against the real database: store, get, search by distance, assign events."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from _async import count_rows, insert_event, run_with_conn

from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.models import CrimeCluster, NewCrimeCluster
from luminar_store.repositories.clusters import CLUSTERS_WITHIN_RADIUS, ClusterRepository, search_boxes

END = datetime.now(timezone.utc) - timedelta(hours=1)  # both replaced at the start of every test by _clock
START = END - timedelta(days=2)


@pytest.fixture(autouse=True)
def _clock() -> None:
    """Each test takes the time when it starts, not when the module was imported (a slow run stays correct)."""
    global END, START
    END = datetime.now(timezone.utc) - timedelta(hours=1)
    START = END - timedelta(days=2)


def cluster(**changes):
    base = {"centre": {"lat": 40.7128, "lng": -74.0060}, "radius_m": 500.0, "time_start": START,
            "time_end": END, "event_count": 12, "dominant_crime_type": "theft", "avg_severity": 2.5,
            "miner_uid": 7, "metadata": {"algorithm": "dbscan"}}
    base.update(changes)
    return {k: val for k, val in base.items() if val is not ...}


def test_store_and_get(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        stored = await clusters.store(cluster())
        assert isinstance(stored, CrimeCluster) and isinstance(stored.cluster_id, uuid.UUID)
        assert stored.centre == {"lat": 40.7128, "lng": -74.0060}
        assert (stored.radius_m, stored.event_count, stored.dominant_crime_type, stored.avg_severity,
                stored.miner_uid) == (500.0, 12, "theft", 2.5, 7)
        assert (stored.time_start, stored.time_end) == (START, END)
        assert stored.metadata == {"algorithm": "dbscan"} and stored.distance_m is None
        assert await clusters.get(stored.cluster_id) == stored
        assert await clusters.get(str(stored.cluster_id)) == stored
        assert await clusters.get(uuid.uuid4()) is None
        cur = await conn.execute("SELECT ST_Y(centroid), ST_X(centroid) FROM crime_clusters")
        assert await cur.fetchone() == (40.7128, -74.0060)

    run_with_conn(db_conninfo, body)


def test_store_accepts_the_dataclass_and_minimal_fields(db_conninfo):
    async def body(conn):
        stored = await ClusterRepository(conn).store(
            NewCrimeCluster(centre={"lat": 1.0, "lng": 2.0}, radius_m=10, time_start=START, time_end=START))
        assert (stored.event_count, stored.dominant_crime_type, stored.avg_severity, stored.miner_uid) == (
            0, None, None, None)
        assert stored.metadata == {}
        other = await ClusterRepository(conn).store(cluster(centre=..., center={"lat": 3, "lng": 4},
                                                            dominant_crime_type="Armed Robbery"))
        assert other.centre == {"lat": 3.0, "lng": 4.0} and other.dominant_crime_type == "armed_robbery"

    run_with_conn(db_conninfo, body)


def test_the_reference_schemas_cluster_columns_are_written(db_conninfo):
    async def body(conn):
        stored = await ClusterRepository(conn).store(cluster(cluster_type="temporal", confidence_score=0.75,
                                                             pattern_description="Evening thefts near the station"))
        assert (stored.cluster_type, stored.confidence_score, stored.pattern_description) == \
            ("temporal", 0.75, "Evening thefts near the station")
        plain = await ClusterRepository(conn).store(cluster())
        assert (plain.cluster_type, plain.confidence_score, plain.pattern_description) == (None, None, None)

    run_with_conn(db_conninfo, body)


def test_within_radius_finds_clusters_within_the_distance_nearest_first(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        # 0.01 degree of latitude is about 1,110 m
        at_0 = await clusters.store(cluster(centre={"lat": 40.0, "lng": -74.0}))
        at_1km = await clusters.store(cluster(centre={"lat": 40.009, "lng": -74.0}))
        at_3km = await clusters.store(cluster(centre={"lat": 40.027, "lng": -74.0}))
        await clusters.store(cluster(centre={"lat": -40.0, "lng": 74.0}))  # far away
        found = await clusters.within_radius(40.0, -74.0, 2_000)
        assert [c.cluster_id for c in found] == [at_0.cluster_id, at_1km.cluster_id]
        assert found[0].distance_m == pytest.approx(0.0, abs=0.01)
        assert 990 < found[1].distance_m < 1_010
        wider = await clusters.within_radius(40.0, -74.0, 5_000)
        assert [c.cluster_id for c in wider] == [at_0.cluster_id, at_1km.cluster_id, at_3km.cluster_id]
        assert len(await clusters.within_radius(40.0, -74.0, 5_000, limit=1)) == 1
        assert await clusters.within_radius(0.0, 0.0, 1_000) == []

    run_with_conn(db_conninfo, body)


def test_within_radius_across_the_antimeridian_and_at_a_pole(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        east = await clusters.store(cluster(centre={"lat": 0.0, "lng": 179.995}))
        west = await clusters.store(cluster(centre={"lat": 0.0, "lng": -179.995}))
        found = await clusters.within_radius(0.0, 180.0, 1_000)
        assert {c.cluster_id for c in found} == {east.cluster_id, west.cluster_id}
        polar = await clusters.store(cluster(centre={"lat": 89.99, "lng": 100.0}))
        assert [c.cluster_id for c in await clusters.within_radius(89.99, -80.0, 5_000)] == [polar.cluster_id]

    run_with_conn(db_conninfo, body)


def test_search_boxes():
    # one function (luminar_store.geo) for clusters and events: a single box, unless crossing the antimeridian
    plain = search_boxes(40.0, -74.0, 1_000)
    assert plain["xmin2"] is None and plain["xmax2"] is None
    assert plain["ymin"] < 40.0 - 1_000 / 111_700 and plain["ymax"] > 40.0 + 1_000 / 111_700
    crossing = search_boxes(0.0, -179.99, 5_000)
    assert crossing["xmin"] == -180.0 and crossing["xmax2"] == 180.0 and crossing["xmin2"] > 179.9
    polar = search_boxes(89.999, 0.0, 1_000)
    assert (polar["xmin"], polar["xmax"], polar["ymax"]) == (-180.0, 180.0, 90.0)


def test_within_radius_uses_the_centroid_index(db_conninfo):
    async def body(conn):
        await conn.execute(
            """INSERT INTO crime_clusters (latitude, longitude, radius_m, time_start, time_end)
               SELECT -60 + (g % 1200) * 0.1, -170 + (g / 1200) * 0.34, 100, now() - interval '1 day', now()
                 FROM generate_series(1, 20000) AS g""")
        await conn.execute("ANALYZE crime_clusters")
        params = {"latitude": 40.0, "longitude": -74.0, "radius_m": 1_000.0, "limit": 100,
                  **search_boxes(40.0, -74.0, 1_000)}
        cur = await conn.execute("EXPLAIN " + CLUSTERS_WITHIN_RADIUS, params)
        plan = "\n".join(r[0] for r in await cur.fetchall())
        assert "idx_clusters_centroid" in plan, plan

    run_with_conn(db_conninfo, body)


def test_assign_events(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        target = await clusters.store(cluster())
        events = [await insert_event(conn) for _ in range(3)]
        other = await insert_event(conn)
        assert await clusters.assign_events(target.cluster_id, events + [str(events[0])]) == 3
        cur = await conn.execute("SELECT event_id FROM crime_events WHERE cluster_id = %s", (target.cluster_id,))
        assert {r[0] for r in await cur.fetchall()} == set(events)
        assert await clusters.assign_events(target.cluster_id, events) == 0  # already there
        cur = await conn.execute("SELECT cluster_id FROM crime_events WHERE event_id = %s", (other,))
        assert (await cur.fetchone())[0] is None

    run_with_conn(db_conninfo, body)


def test_assign_events_is_all_or_nothing(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        target = await clusters.store(cluster())
        event = await insert_event(conn)
        missing = uuid.uuid4()
        with pytest.raises(NotFoundError, match=str(missing)):
            await clusters.assign_events(target.cluster_id, [event, missing])
        with pytest.raises(NotFoundError, match="cluster_id"):
            await clusters.assign_events(uuid.uuid4(), [event])
        cur = await conn.execute("SELECT count(*) FROM crime_events WHERE cluster_id IS NOT NULL")
        assert (await cur.fetchone())[0] == 0
        with pytest.raises(ValidationError) as info:
            await clusters.assign_events(target.cluster_id, [])
        assert info.value.field == "event_ids"
        with pytest.raises(ValidationError) as info:
            await clusters.assign_events(target.cluster_id, ["nope"])
        assert info.value.field == "event_ids[0]"

    run_with_conn(db_conninfo, body)


def test_assign_events_inside_a_callers_transaction(db_conninfo):
    async def body(conn):
        clusters = ClusterRepository(conn)
        target = await clusters.store(cluster())
        event = await insert_event(conn)
        async with conn.transaction():
            with pytest.raises(NotFoundError):
                await clusters.assign_events(target.cluster_id, [uuid.uuid4()])
            # the caller's transaction is still usable after the refused call
            assert await clusters.assign_events(target.cluster_id, [event]) == 1
        assert (await clusters.get(target.cluster_id)) is not None

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"centre": ...}, "centre"),
        ({"centre": {"lat": 95, "lng": 0}}, "centre.lat"),
        ({"centre": {"lat": 0, "lng": -181}}, "centre.lng"),
        ({"centre": {"lat": math.nan, "lng": 0}}, "centre.lat"),
        ({"centre": {"lng": 0}}, "centre.lat"),
        ({"centre": (40.7, -74.0)}, "centre"),
        ({"radius_m": 0}, "radius_m"),
        ({"radius_m": -5}, "radius_m"),
        ({"radius_m": 2_000_000}, "radius_m"),
        ({"radius_m": ...}, "radius_m"),
        ({"time_start": datetime(2999, 1, 1)}, "time_start"),
        ({"time_start": ...}, "time_start"),
        ({"time_end": START - timedelta(seconds=1)}, "time_end"),
        ({"time_end": datetime.now(timezone.utc) + timedelta(days=1)}, "time_end"),
        ({"event_count": -1}, "event_count"),
        ({"event_count": 1.5}, "event_count"),
        ({"dominant_crime_type": "9lives"}, "dominant_crime_type"),
        ({"dominant_crime_type": ""}, "dominant_crime_type"),
        ({"avg_severity": 0.5}, "avg_severity"),
        ({"avg_severity": 6}, "avg_severity"),
        ({"miner_uid": -3}, "miner_uid"),
        ({"metadata": ["not", "an", "object"]}, "metadata"),
        ({"metadata": {"note": "nul\x00byte"}}, "metadata.note"),
        ({"colour": "red"}, "cluster"),
        ({"cluster_type": "spatial"}, "cluster_type"),
        ({"confidence_score": 1.2}, "confidence_score"),
        ({"pattern_description": ""}, "pattern_description"),
    ],
)
def test_bad_cluster_is_refused_and_nothing_is_stored(db_conninfo, changes, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await ClusterRepository(conn).store(cluster(**changes))
        assert info.value.field == field
        assert await count_rows(conn, "crime_clusters") == 0

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(("args", "field"), [((91, 0, 100), "latitude"), ((0, 200, 100), "longitude"),
                                              ((0, 0, 0), "radius_m"), ((0, 0, "100"), "radius_m"),
                                              ((0, 0, 2e6), "radius_m")])
def test_within_radius_arguments_are_checked(db_conninfo, args, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await ClusterRepository(conn).within_radius(*args)
        assert info.value.field == field

    run_with_conn(db_conninfo, body)
