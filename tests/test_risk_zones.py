"""RiskZoneRepository against the real database: polygons from vertices or GeoJSON, containment, validity."""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from _async import clock, count_rows, run_with_conn

from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.models import NewRiskZone, RiskZone
from luminar_store.repositories.risk_zones import ZONES_CONTAINING, RiskZoneRepository, boundary_geojson

# A square of 0.02 degrees around (40.71, -74.01).
SQUARE = [{"lat": 40.70, "lng": -74.02}, {"lat": 40.70, "lng": -74.00},
          {"lat": 40.72, "lng": -74.00}, {"lat": 40.72, "lng": -74.02}]
NOW = datetime.now(timezone.utc)
_clock = clock(globals())  # each test takes NOW when it starts (see _async.clock)


def zone(**changes):
    base = {"name": "Harbour district", "boundary": SQUARE, "risk_level": 4, "risk_score": 0.8,
            "crime_types": ["theft", "Armed Robbery"], "metadata": {"source": "model-7"}}
    base.update(changes)
    return {k: val for k, val in base.items() if val is not ...}


def test_store_builds_a_closed_polygon(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        stored = await zones.store(zone())
        assert isinstance(stored, RiskZone) and isinstance(stored.zone_id, uuid.UUID)
        assert stored.boundary["type"] == "Polygon"
        ring = stored.boundary["coordinates"][0]
        assert ring[0] == ring[-1] == [-74.02, 40.70] and len(ring) == 5
        assert (stored.name, stored.risk_level, stored.risk_score) == ("Harbour district", 4, 0.8)
        assert stored.crime_types == ["theft", "armed_robbery"]
        assert stored.valid_until is None and stored.metadata == {"source": "model-7"}
        assert await zones.get(stored.zone_id) == stored
        assert await zones.get(uuid.uuid4()) is None
        cur = await conn.execute("SELECT ST_GeometryType(boundary), ST_SRID(boundary), ST_NPoints(boundary)"
                                 " FROM risk_zones")
        assert await cur.fetchone() == ("ST_Polygon", 4326, 5)

    run_with_conn(db_conninfo, body)


def test_containing_includes_and_excludes_points(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        stored = await zones.store(zone())
        assert [z.zone_id for z in await zones.containing(40.71, -74.01)] == [stored.zone_id]
        assert [z.zone_id for z in await zones.containing(40.70, -74.01)] == [stored.zone_id]  # on the edge
        assert await zones.containing(40.73, -74.01) == []  # north of it
        assert await zones.containing(40.71, -73.99) == []  # east of it
        assert await zones.containing(-40.71, 74.01) == []

    run_with_conn(db_conninfo, body)


def test_containing_orders_by_risk_and_respects_validity(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        low = await zones.store(zone(name="low", risk_level=2, risk_score=0.3))
        high = await zones.store(zone(name="high", risk_level=5, risk_score=0.9))
        mid = await zones.store(zone(name="mid", risk_level=5, risk_score=0.6))
        later = await zones.store(zone(name="later", valid_from=NOW + timedelta(days=1)))
        ended = await zones.store(zone(name="ended", valid_from=NOW - timedelta(days=10),
                                       valid_until=NOW - timedelta(days=5)))
        now_ids = [z.zone_id for z in await zones.containing(40.71, -74.01)]
        assert now_ids == [high.zone_id, mid.zone_id, low.zone_id]
        tomorrow = [z.zone_id for z in await zones.containing(40.71, -74.01, at=NOW + timedelta(days=2))]
        assert tomorrow == [high.zone_id, mid.zone_id, later.zone_id, low.zone_id]
        last_week = [z.zone_id for z in await zones.containing(40.71, -74.01, at=NOW - timedelta(days=7))]
        assert last_week == [ended.zone_id]
        assert len(await zones.containing(40.71, -74.01, limit=1)) == 1

    run_with_conn(db_conninfo, body)


def test_geojson_polygon_with_a_hole(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        shell = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
        hole = [[4, 4], [6, 4], [6, 6], [4, 6]]  # left open: closed automatically
        stored = await zones.store(zone(boundary={"type": "Polygon", "coordinates": [shell, hole]}))
        assert len(stored.boundary["coordinates"]) == 2
        assert [z.zone_id for z in await zones.containing(2, 2)] == [stored.zone_id]
        assert await zones.containing(5, 5) == []  # inside the hole

    run_with_conn(db_conninfo, body)


def test_the_reference_schemas_zone_columns_are_written(db_conninfo):
    async def body(conn):
        stored = await RiskZoneRepository(conn).store(zone(crime_density=12.5, recent_incidents=4,
                                                           trend_direction="increasing"))
        assert (stored.crime_density, stored.recent_incidents, stored.trend_direction) == (12.5, 4, "increasing")
        plain = await RiskZoneRepository(conn).store(zone(name="plain"))
        assert (plain.crime_density, plain.recent_incidents, plain.trend_direction) == (None, 0, None)

    run_with_conn(db_conninfo, body)


def test_store_accepts_the_dataclass(db_conninfo):
    async def body(conn):
        stored = await RiskZoneRepository(conn).store(
            NewRiskZone(name="Docks", boundary=SQUARE[:3], risk_level=1, risk_score=0.0))
        assert stored.crime_types == [] and stored.metadata == {} and stored.risk_level == 1
        assert len(stored.boundary["coordinates"][0]) == 4

    run_with_conn(db_conninfo, body)


def test_expire(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        stored = await zones.store(zone(valid_from=NOW - timedelta(hours=1)))
        expired = await zones.expire(stored.zone_id)
        assert expired.valid_until is not None and expired.valid_until <= datetime.now(timezone.utc)
        assert await zones.containing(40.71, -74.01) == []
        assert await zones.expire(stored.zone_id) == expired  # idempotent
        # still found at a time when it was valid
        assert len(await zones.containing(40.71, -74.01, at=NOW - timedelta(minutes=30))) == 1
        future = await zones.store(zone(valid_from=NOW + timedelta(days=1)))
        with pytest.raises(ConflictError, match="becomes valid"):
            await zones.expire(future.zone_id)
        assert (await zones.get(future.zone_id)).valid_until is None
        with pytest.raises(NotFoundError, match="zone_id"):
            await zones.expire(uuid.uuid4())

    run_with_conn(db_conninfo, body)


def test_zone_writes_are_audited(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        stored = await zones.store(zone(valid_from=NOW - timedelta(hours=1)))
        await zones.expire(stored.zone_id)
        cur = await conn.execute("SELECT operation FROM audit_log WHERE table_name = 'risk_zones' AND row_id = %s"
                                 " ORDER BY occurred_at, operation", (str(stored.zone_id),))
        assert sorted(r[0] for r in await cur.fetchall()) == ["INSERT", "UPDATE"]

    run_with_conn(db_conninfo, body)


def test_containing_uses_the_boundary_index(db_conninfo):
    async def body(conn):
        await conn.execute(
            """INSERT INTO risk_zones (name, boundary, risk_level, risk_score)
               SELECT 'z' || g, ST_MakeEnvelope(-170 + (g % 300), -60 + (g / 300) * 0.5,
                                                -169.9 + (g % 300), -59.9 + (g / 300) * 0.5, 4326), 3, 0.5
                 FROM generate_series(1, 20000) AS g""")
        await conn.execute("ANALYZE risk_zones")
        params = {"latitude": 1.0, "longitude": 2.0, "at": None, "limit": 100}
        cur = await conn.execute("EXPLAIN " + ZONES_CONTAINING, params)
        plan = "\n".join(r[0] for r in await cur.fetchall())
        assert "idx_risk_zones_boundary" in plan, plan

    run_with_conn(db_conninfo, body)


BOWTIE = [{"lat": 0, "lng": 0}, {"lat": 1, "lng": 1}, {"lat": 0, "lng": 1}, {"lat": 1, "lng": 0}]
LINE = [{"lat": 0, "lng": 0}, {"lat": 1, "lng": 1}, {"lat": 2, "lng": 2}]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"boundary": BOWTIE}, "boundary"),  # self-intersecting: refused by the server's check
        ({"boundary": LINE}, "boundary"),  # collinear: no area
        ({"boundary": SQUARE[:2]}, "boundary"),
        ({"boundary": [SQUARE[0], SQUARE[1], SQUARE[0]]}, "boundary"),
        ({"boundary": []}, "boundary"),
        ({"boundary": "POLYGON((0 0, 1 0, 1 1, 0 0))"}, "boundary"),
        ({"boundary": [*SQUARE[:3], {"lat": 95, "lng": 0}]}, "boundary[3].lat"),
        ({"boundary": [*SQUARE[:3], {"lat": 0, "lng": 181}]}, "boundary[3].lng"),
        ({"boundary": [*SQUARE[:3], {"lat": math.nan, "lng": 0}]}, "boundary[3].lat"),
        ({"boundary": [*SQUARE[:3], {"lng": 0}]}, "boundary[3].lat"),
        ({"boundary": {"type": "MultiPolygon", "coordinates": []}}, "boundary.type"),
        ({"boundary": {"type": "Polygon", "coordinates": []}}, "boundary.coordinates"),
        ({"boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 91], [0, 0]]]}},
         "boundary.coordinates[0][2][1]"),
        ({"boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], ["x", 1], [0, 0]]]}},
         "boundary.coordinates[0][2][0]"),
        ({"boundary": {"type": "Polygon", "coordinates": [[[0, 0], [1], [1, 1], [0, 0]]]}},
         "boundary.coordinates[0][1]"),
        ({"boundary": ...}, "boundary"),
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": ...}, "name"),
        ({"risk_level": 0}, "risk_level"),
        ({"risk_level": 6}, "risk_level"),
        ({"risk_level": 4.0}, "risk_level"),
        ({"risk_score": 1.5}, "risk_score"),
        ({"risk_score": ...}, "risk_score"),
        ({"crime_types": ["theft", "9x"]}, "crime_types[1]"),
        ({"crime_types": "theft"}, "crime_types"),
        ({"valid_from": "2025-13-01T00:00:00"}, "valid_from"),
        ({"valid_until": NOW - timedelta(days=1)}, "valid_until"),
        ({"valid_from": NOW, "valid_until": NOW}, "valid_until"),
        ({"metadata": {"k": math.inf}}, "metadata.k"),
        ({"shape": "square"}, "zone"),
        ({"crime_density": -1}, "crime_density"),
        ({"recent_incidents": -2}, "recent_incidents"),
        ({"trend_direction": "up"}, "trend_direction"),
    ],
)
def test_bad_zone_is_refused_and_nothing_is_stored(db_conninfo, changes, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await RiskZoneRepository(conn).store(zone(**changes))
        assert info.value.field == field
        assert await count_rows(conn, "risk_zones") == 0

    run_with_conn(db_conninfo, body)


def test_invalid_polygon_names_the_reason_and_keeps_the_callers_transaction(db_conninfo):
    async def body(conn):
        zones = RiskZoneRepository(conn)
        async with conn.transaction():
            with pytest.raises(ValidationError, match="Self-intersection"):
                await zones.store(zone(boundary=BOWTIE))
            kept = await zones.store(zone())  # the transaction is still usable
        assert await zones.get(kept.zone_id) is not None
        assert await count_rows(conn, "risk_zones") == 1

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(("args", "kwargs", "field"), [((91, 0), {}, "latitude"),
                                                       ((0, -181), {}, "longitude"),
                                                       (("1", 0), {}, "latitude"),
                                                       ((0, 0), {"at": "2025-13-01"}, "at"),
                                                       ((0, 0), {"limit": 0}, "limit")])
def test_containing_arguments_are_checked(db_conninfo, args, kwargs, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await RiskZoneRepository(conn).containing(*args, **kwargs)
        assert info.value.field == field

    run_with_conn(db_conninfo, body)


def test_boundary_geojson_closes_rings():
    assert boundary_geojson(SQUARE)["coordinates"][0][-1] == [-74.02, 40.70]
    closed = [[0, 0], [1, 0], [1, 1], [0, 0]]
    assert boundary_geojson({"type": "Polygon", "coordinates": [closed]})["coordinates"] == [
        [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]
