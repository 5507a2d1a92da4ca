"""Risk zones computed in the database (migration 20261130045200): zones from rook-connected Gi* hot cells, with
density, level and a Mann-Kendall trend over weekly incident counts; the point lookup.

The trend test is checked against pymannkendall's ``original_test`` on a committed fixture
(tests/fixtures/mann_kendall.json, made by tests/fixtures/make_mann_kendall_fixture.py; ``make mann-kendall-fixture``).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from _async import clock, run_with_conn, with_facade

from luminar_store.errors import ValidationError
from luminar_store.ops.synthetic import DEFAULT_SEED, load_sample_data
from luminar_store.ops.synthetic.world import build_world
from luminar_store.repositories.risk_zones import RiskZoneRepository, analyze_risk_zones

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

FIXTURE = Path(__file__).with_name("fixtures") / "mann_kendall.json"
NYC = (40.7128, -74.0060)
PARIS = (48.8566, 2.3522)
WEEK = timedelta(days=7)
RISING = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # incidents per week in each cell of the rising block, oldest first
FLAT = [6, 5, 7, 6, 6, 5, 7, 6, 5, 7, 6, 6]


def origin(conn, point: tuple[float, float]) -> tuple[int, int]:
    return conn.execute("SELECT (luminar_cell(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 400)).*",
                        (point[1], point[0])).fetchone()


def centre(conn, cell: tuple[int, int]) -> tuple[float, float]:
    return conn.execute("SELECT latitude, longitude FROM luminar_cell_centre(%s, %s, 400)", cell).fetchone()


def plant(conn, incidents: list[tuple[tuple[int, int], datetime]]) -> None:
    """One verified event (an incident alone) at the centre of each cell, at its time (one statement)."""
    conn.execute(
        "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
        "confidence_score, verification_status) "
        "SELECT 1, 'theft', m.latitude, m.longitude, u.ts, 3, 0.9, 'verified' "
        "  FROM unnest(%s::integer[], %s::integer[], %s::timestamptz[]) AS u (r, c, ts) "
        " CROSS JOIN LATERAL luminar_cell_centre(u.r, u.c, 400) AS m",
        ([r for (r, _), _ in incidents], [c for (_, c), _ in incidents], [ts for _, ts in incidents]))


def weekly(cell: tuple[int, int], counts: list[int], rng: random.Random) -> list[tuple[tuple[int, int], datetime]]:
    """``counts[k]`` incidents in week ``len(counts) - 1 - k`` before now (oldest first), well inside the week."""
    out = []
    for k, n in enumerate(counts):
        weeks_ago = len(counts) - 1 - k
        out += [(cell, NOW - weeks_ago * WEEK - timedelta(days=rng.uniform(1.0, 6.0))) for _ in range(n)]
    return out


def planted_city(conn, weeks: int = 12, seed: int = 5):
    """A 16 x 16 cell area of NYC: one incident per cell at a random time over weeks + 1 weeks (noise), a 2 x 2
    block rising by week (RISING) and a 2 x 2 block flat (FLAT), both cut to the last ``weeks`` weeks."""
    rng = random.Random(seed)
    r0, c0 = origin(conn, NYC)
    incidents = [((r0 + r, c0 + c), NOW - timedelta(days=rng.uniform(0.5, 7 * (weeks + 1) - 0.5)))
                 for r in range(16) for c in range(16)]
    rising = [(r0 + 3 + dr, c0 + 3 + dc) for dr in (0, 1) for dc in (0, 1)]
    flat = [(r0 + 11 + dr, c0 + 11 + dc) for dr in (0, 1) for dc in (0, 1)]
    for cell in rising:
        incidents += weekly(cell, RISING[-weeks:], rng)
    for cell in flat:
        incidents += weekly(cell, FLAT[-weeks:], rng)
    plant(conn, incidents)
    return incidents, rising, flat


def analysis_zones(conn) -> list[dict]:
    cur = conn.execute("SELECT zone_id, name, ST_GeometryType(boundary) AS kind, ST_IsValid(boundary) AS valid, "
                       "ST_Area(ST_Transform(boundary, 6933)) AS area_m2, risk_level, risk_score, crime_types, "
                       "crime_density, recent_incidents, trend_direction, trend_p_value, metadata, updated_at "
                       "FROM risk_zones WHERE made_by = 'analysis' ORDER BY zone_id")
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def holding(zones: list[dict], cell: tuple[int, int]) -> dict:
    [zone] = [z for z in zones if list(cell) in z["metadata"]["cells"]]
    return zone


# -- Mann-Kendall against pymannkendall --------------------------------------------------------------------------------
def test_mann_kendall_equals_pymannkendall_original_test(conn):
    fixture = json.loads(FIXTURE.read_text())
    words = {"increasing": "increasing", "decreasing": "decreasing", "no trend": "stable"}
    for case in fixture["cases"]:
        trend, p, z, s, var_s = conn.execute("SELECT trend, p, z, s, var_s FROM luminar_mann_kendall(%s, 0.05)",
                                             (case["counts"],)).fetchone()
        assert trend == words[case["trend"]], case
        assert (s, var_s) == (pytest.approx(case["s"], abs=1e-9), pytest.approx(case["var_s"], abs=1e-9)), case
        assert z == pytest.approx(case["z"], abs=1e-9) and p == pytest.approx(case["p"], abs=1e-9), case
    assert {c["trend"] for c in fixture["cases"]} == set(words)


def test_risk_level_and_score_are_defined_by_the_peak_z(conn):
    got = conn.execute("SELECT array_agg(luminar_risk_level(z) ORDER BY o), array_agg(luminar_risk_score(z) ORDER BY o)"
                       " FROM unnest(%s::float8[]) WITH ORDINALITY AS u (z, o)",
                       ([-1.0, 1.0, 1.96, 2.6, 3.3, 3.9, 40.0],)).fetchone()
    assert got[0] == [1, 1, 2, 3, 4, 5, 5]
    assert got[1][0] == 0.0 and got[1][-1] == 1.0 and got[1] == sorted(got[1])
    assert got[1][2] == pytest.approx(0.95, abs=1e-5)  # z = 1.96: two-sided p 0.05


# -- the analysis on planted incidents -------------------------------------------------------------------------------
def test_a_rising_zone_is_increasing_a_flat_one_stable_and_zones_are_polygons(conn):
    incidents, rising, flat = planted_city(conn)
    done = conn.execute("SELECT * FROM luminar_analyze_risk_zones(28, 400, 12)").fetchone()
    zones = analysis_zones(conn)
    assert done[0] == len(zones) >= 2 and done[2:] == (1, sum(1 for _, ts in incidents if ts >= NOW - 4 * WEEK),
                                                        0, 12)
    up, level = holding(zones, rising[0]), holding(zones, flat[0])
    assert all(list(c) in up["metadata"]["cells"] for c in rising)
    assert (up["trend_direction"], level["trend_direction"]) == ("increasing", "stable")
    assert up["trend_p_value"] < 0.05 and level["trend_p_value"] >= 0.05
    # the weekly counts tested are the zone's incidents by week, oldest first
    for zone in (up, level):
        cells = {tuple(c) for c in zone["metadata"]["cells"]}
        expected = [0] * 12
        for cell, ts in incidents:
            if cell in cells and ts >= NOW - 12 * WEEK:
                expected[11 - int((NOW - ts) / WEEK)] += 1
        assert zone["metadata"]["weekly_incidents"] == expected
        recent = sum(1 for cell, ts in incidents if cell in cells and ts >= NOW - 4 * WEEK)
        assert zone["recent_incidents"] == recent
        assert zone["crime_density"] == pytest.approx(recent / (len(cells) * 0.16))
        assert zone["kind"] == "ST_Polygon" and zone["valid"]
        assert zone["area_m2"] == pytest.approx(len(cells) * 400 * 400, rel=1e-6)
        assert zone["crime_types"] == ["theft"]
        peak = conn.execute("SELECT luminar_risk_level(%s), luminar_risk_score(%s)",
                            (zone["metadata"]["peak_z"], zone["metadata"]["peak_z"])).fetchone()
        assert (zone["risk_level"], zone["risk_score"]) == peak and zone["risk_level"] >= 3
    # on incidents of one region the hot cells are luminar_gistar's
    hot = {(r, c) for r, c in conn.execute("SELECT cell_row, cell_col FROM luminar_gistar(28, 400) "
                                           "WHERE class = 'hot' AND confidence >= 95")}
    assert {tuple(c) for z in zones for c in z["metadata"]["cells"]} == hot and done[1] == len(hot)


def test_fewer_than_eight_weeks_of_data_is_insufficient_data(conn):
    planted_city(conn, weeks=6)  # incidents over the last 7 weeks at most
    done = conn.execute("SELECT zones, weeks FROM luminar_analyze_risk_zones(28, 400, 12)").fetchone()
    zones = analysis_zones(conn)
    assert done[0] == len(zones) >= 2 and done[1] < 8
    assert {(z["trend_direction"], z["trend_p_value"], z["metadata"]["mann_kendall"]) for z in zones} == \
        {("insufficient data", None, None)}


def test_a_rerun_replaces_the_analysis_zones_and_leaves_node_zones_alone(db_settings):
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        _, rising, _ = planted_city(conn)
        lat, lng = centre(conn, rising[0])
        node = conn.execute(
            "INSERT INTO risk_zones (name, boundary, risk_level, risk_score) VALUES ('Harbour', "
            "ST_Buffer(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 0.001), 1, 0.1) RETURNING zone_id, updated_at",
            (lng, lat)).fetchone()
        first = analyze_risk_zones(conn, days=28, weeks=12)
        before = analysis_zones(conn)
        again = analyze_risk_zones(conn, days=28, weeks=12)
        after = analysis_zones(conn)
        assert again.replaced == first.zones == again.zones == len(after) >= 2
        assert not {z["zone_id"] for z in before} & {z["zone_id"] for z in after}  # replaced, never duplicated
        strip = ("zone_id", "updated_at")
        assert sorted(({k: v for k, v in z.items() if k not in strip} for z in before), key=str) == \
            sorted(({k: v for k, v in z.items() if k not in strip} for z in after), key=str)
        assert conn.execute("SELECT zone_id, updated_at, made_by FROM risk_zones WHERE made_by = 'node'"
                            ).fetchall() == [(*node, "node")]

    async def body(db):
        inside = await db.get_risk_at(lat, lng)
        outside = await db.get_risk_at(PARIS[0], PARIS[1])
        made = await db.get_risk_zones(made_by="analysis")
        every = await db.get_risk_zones()
        refused = []
        for call in (lambda: db.get_risk_at(91, 0), lambda: db.get_risk_at(0, -180.5),
                     lambda: db.get_risk_at("40", 0), lambda: db.get_risk_zones(made_by="model"),
                     lambda: db.get_risk_zones(min_level=6), lambda: db.get_risk_zones(limit=0)):
            with pytest.raises(ValidationError) as err:
                await call()
            refused.append((err.value.field, err.value.rule))
        return inside, outside, made, every, refused

    inside, outside, made, every, refused = with_facade(db_settings, body)
    assert inside is not None and inside.made_by == "analysis" and inside.trend_direction == "increasing"
    assert inside.risk_level > 1 and inside.zone_id in {z.zone_id for z in made}  # above the node's level 1
    assert outside is None
    assert len(every) == len(made) + 1 and [z.risk_level for z in every] == sorted(
        (z.risk_level for z in every), reverse=True)
    assert [f for f, _ in refused] == ["latitude", "longitude", "latitude", "made_by", "min_level", "limit"]
    assert all(rule for _, rule in refused)


def test_regions_far_apart_are_analysed_apart_and_bad_arguments_are_refused(db_settings):
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        rng = random.Random(9)
        incidents = []
        for city in (NYC, PARIS):
            r0, c0 = origin(conn, city)
            incidents += [((r0 + rng.randrange(12), c0 + rng.randrange(12)), NOW - timedelta(days=rng.uniform(1, 27)))
                          for _ in range(150)]
            incidents += [((r0 + 5, c0 + 5), NOW - timedelta(days=rng.uniform(1, 27))) for _ in range(30)]
        plant(conn, incidents)
        # two continents: two study areas of 12 x 12 cells, not one grid over the Atlantic
        assert conn.execute("SELECT count(*) FROM luminar_gistar(28, 400)").fetchone()[0] == 2 * 144
        done = analyze_risk_zones(conn)
        assert (done.regions, done.incidents) == (2, 360)
        zones = analysis_zones(conn)
        assert {round(z["metadata"]["cells"][0][0] / 1000) for z in zones} == \
            {round(origin(conn, city)[0] / 1000) for city in (NYC, PARIS)}
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SELECT * FROM luminar_analyze_risk_zones(0, 400, 12)")
        refused = []
        for kwargs in ({"days": 0}, {"cell_m": 10}, {"cell_m": float("nan")}, {"weeks": 0}, {"weeks": 521}):
            with pytest.raises(ValidationError) as err:
                analyze_risk_zones(conn, **kwargs)
            refused.append(err.value.field)
        assert refused == ["days", "cell_m", "cell_m", "weeks", "weeks"]
        # incidents every ~4 km along a 60 km diagonal: one region, more than a million cells of 50 m
        r0, c0 = origin(conn, NYC)
        plant(conn, [((r0 - 10 * k, c0 + 10 * k), NOW - timedelta(days=1)) for k in range(16)])
        with pytest.raises(ValidationError) as err:
            analyze_risk_zones(conn, cell_m=50, days=28)
        assert err.value.field == "cell_m" and "larger cell_m" in err.value.rule

    async def body(aconn):  # the repository's method, as the facade's callers use it
        return await RiskZoneRepository(aconn).analyze()

    assert run_with_conn(db_settings.conninfo(), body).regions == 2  # at 400 m the diagonal joins NYC's region


def test_only_the_owner_runs_the_analysis_and_the_network_kinds_look_up_risk(conn):
    def may(role: str, function: str) -> bool:
        return conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()[0]

    analyze, risk_at = ("luminar_analyze_risk_zones(integer, double precision, integer)",
                        "luminar_risk_at(double precision, double precision)")
    assert not any(may(r, analyze) for r in ("luminar_miner", "luminar_validator", "luminar_analyst",
                                             "luminar_reader"))
    assert all(may(r, risk_at) for r in ("luminar_miner", "luminar_validator", "luminar_analyst"))
    assert not may("luminar_reader", risk_at)


def test_the_sample_data_plants_a_rising_zone_that_the_analysis_finds_increasing(conn):
    load_sample_data(conn, reports=1000, seed=DEFAULT_SEED, now=NOW.timestamp())  # the demo's data: 13 weeks
    done = analyze_risk_zones(conn)
    rising = build_world(DEFAULT_SEED).rising
    assert rising is not None and done.weeks == 12 and done.regions > 10  # cities on several continents
    trend, p, weekly = conn.execute(
        "SELECT trend_direction, trend_p_value, metadata -> 'weekly_incidents' FROM risk_zones "
        "WHERE made_by = 'analysis' AND ST_Covers(boundary, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
        (rising.lng, rising.lat)).fetchone()
    assert (trend, p < 0.05) == ("increasing", True), weekly


def test_the_down_section_removes_the_analysis_and_up_brings_it_back(db_settings):
    from luminar_store.migrator import DEFAULT_DIR, Migrator

    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        planted_city(conn, weeks=6)
        made = analyze_risk_zones(conn).zones
        conn.execute("INSERT INTO risk_zones (name, boundary, risk_level, risk_score, trend_direction) VALUES "
                     "('Docks', ST_MakeEnvelope(0, 0, 1, 1, 4326), 2, 0.5, 'insufficient data')")
    migrator = Migrator(db_settings.conninfo(), DEFAULT_DIR)
    while migrator.rollback().version != "20261130045200":
        pass
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert made > 0 and conn.execute("SELECT name, trend_direction FROM risk_zones").fetchall() == [("Docks", None)]
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'risk_zones' "
                            "AND column_name IN ('made_by', 'trend_p_value')").fetchone() == (0,)
        assert conn.execute("SELECT to_regprocedure('luminar_mann_kendall(double precision[], double precision)')"
                            ).fetchone() == (None,)
    migrator.migrate()
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT made_by FROM risk_zones").fetchall() == [("node",)]
        assert analyze_risk_zones(conn).zones == made
