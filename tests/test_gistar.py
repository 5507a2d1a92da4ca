"""Incidents and significant hotspots (migration 20261130032000): one row per incident, Getis-Ord Gi* in SQL.

Gi* is checked against PySAL esda on a committed fixture (tests/fixtures/gistar_esda.json, made by
tests/fixtures/make_gistar_fixture.py; ``make gistar-fixture``), and for power on planted hotspots in uniform noise.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from _async import clock, run, with_facade

from luminar_store.errors import ValidationError
from luminar_store.repositories.crime_events import CrimeEventRepository

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

FIXTURE = Path(__file__).with_name("fixtures") / "gistar_esda.json"
NYC = (40.7128, -74.0060)
GRID = "SELECT * FROM luminar_gistar_grid(%s::integer[], %s::integer[], %s::float8[])"


def grid(conn, cells: dict[tuple[int, int], float]) -> dict[tuple[int, int], dict]:
    """luminar_gistar_grid on ``{(row, col): count}``, by cell."""
    keys = sorted(cells)
    cur = conn.execute(GRID, ([r for r, _ in keys], [c for _, c in keys], [float(cells[k]) for k in keys]))
    names = [d.name for d in cur.description]
    return {(row[0], row[1]): dict(zip(names, row, strict=True)) for row in cur.fetchall()}


def insert_incidents(conn, points: list[tuple[float, float]], *, status: str = "verified",
                     related: list[list[uuid.UUID]] | None = None, ago: timedelta = timedelta(hours=1)) -> None:
    """One event per point (of miner 1, an incident alone unless ``related`` names its reports)."""
    related = related or [[] for _ in points]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
            "confidence_score, verification_status, related_reports) VALUES (1, 'theft', %s, %s, %s, 3, 0.9, %s, %s)",
            [(lat, lng, NOW - ago, status, rel) for (lat, lng), rel in zip(points, related, strict=True)])


def bh(pvalues: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in the given order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, pvalues[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


# -- Gi* against esda ------------------------------------------------------------------------------------------------
def test_gistar_equals_esda_g_local_star_binary_within_1e_6(conn):
    fixture = json.loads(FIXTURE.read_text())
    cells = {(c["row"], c["col"]): c["count"] for c in fixture["cells"]}
    assert len(cells) == fixture["rows"] * fixture["cols"]  # the whole grid, empty cells included
    ours = grid(conn, cells)
    for c in fixture["cells"]:
        mine = ours[(c["row"], c["col"])]
        assert mine["z"] == pytest.approx(c["z"], abs=1e-6), (c, mine)
        assert mine["p"] == pytest.approx(c["p_norm"], abs=1e-6), (c, mine)
    assert any(c["count"] == 0 for c in fixture["cells"])


def test_fdr_and_classes_follow_from_the_two_sided_p_values(conn):
    fixture = json.loads(FIXTURE.read_text())
    cells = {(c["row"], c["col"]): c["count"] for c in fixture["cells"]}
    ours = grid(conn, cells)
    keys = sorted(ours)
    expected_q = bh([min(1.0, 2 * ours[k]["p"]) for k in keys])
    seen = set()
    for k, q in zip(keys, expected_q, strict=True):
        row = ours[k]
        assert row["q"] == pytest.approx(q, abs=1e-12)
        level = 99 if q <= 0.01 else 95 if q <= 0.05 else 90 if q <= 0.10 else 0
        assert row["confidence"] == level
        assert row["class"] == ("not significant" if level == 0 else "hot" if row["z"] > 0 else "cold")
        assert row["gi_bin"] == (0 if level == 0 else (1 if row["z"] > 0 else -1) * {90: 1, 95: 2, 99: 3}[level])
        seen.add(row["class"])
    assert {"hot", "not significant"} <= seen


def test_the_normal_tail_is_exact_to_double_precision(conn):
    zs = [i / 7 for i in range(-70, 71)] + [-40.0, 12.5, 36.9, 37.5]
    got = conn.execute("SELECT array_agg(luminar_normal_upper_tail(z) ORDER BY o) "
                       "FROM unnest(%s::float8[]) WITH ORDINALITY AS u (z, o)", (zs,)).fetchone()[0]
    for z, p in zip(zs, got, strict=True):
        assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-9, abs=1e-15), z


def test_undefined_z_is_null_and_never_significant(conn):
    flat = grid(conn, {(r, c): 2.0 for r in range(4) for c in range(4)})  # no variance
    empty = grid(conn, {(r, c): 0.0 for r in range(3) for c in range(3)})  # no incident
    for row in [*flat.values(), *empty.values()]:
        assert (row["z"], row["p"], row["q"], row["confidence"], row["class"]) == (None, None, None, 0,
                                                                                     "not significant")


# -- planted hotspots --------------------------------------------------------------------------------------------------
SIZE, NOISE_PER_CELL, HOTSPOTS, RADIUS, INTENSITY = 30, 2.0, 3, 1.5, 8.0


def planted(seed: int) -> tuple[dict[tuple[int, int], float], set[tuple[int, int]]]:
    """A SIZE x SIZE grid: uniform noise of NOISE_PER_CELL points per cell, plus HOTSPOTS discs of RADIUS cells
    holding INTENSITY more points per cell (uniform in the disc), apart from each other and the border. Returns
    the counts and the planted cells (centre within RADIUS of a disc's centre)."""
    rng = random.Random(seed)
    counts = {(r, c): 0.0 for r in range(SIZE) for c in range(SIZE)}
    for _ in range(int(NOISE_PER_CELL * SIZE * SIZE)):
        counts[(int(rng.random() * SIZE), int(rng.random() * SIZE))] += 1
    centres: list[tuple[float, float]] = []
    while len(centres) < HOTSPOTS:
        cy, cx = rng.randrange(4, SIZE - 4) + 0.5, rng.randrange(4, SIZE - 4) + 0.5
        if all(math.dist((cy, cx), other) > 4 * RADIUS + 2 for other in centres):
            centres.append((cy, cx))
    hot: set[tuple[int, int]] = set()
    for cy, cx in centres:
        for _ in range(round(INTENSITY * math.pi * RADIUS * RADIUS)):
            rho, theta = RADIUS * math.sqrt(rng.random()), 2 * math.pi * rng.random()
            counts[(int(cy + rho * math.sin(theta)), int(cx + rho * math.cos(theta)))] += 1
        hot |= {(r, c) for r, c in counts if math.dist((r + 0.5, c + 0.5), (cy, cx)) <= RADIUS}
    return counts, hot


def test_planted_hotspots_are_found_and_noise_is_not_over_20_seeds(conn):
    found = planted_total = false = null_total = spill = outside = 0
    for seed in range(20):
        counts, hot = planted(seed)
        # Gi* sums each cell's 3 x 3 block: a planted cell's direct neighbours share its excess by construction. The
        # null cells are the others, whose block holds noise only.
        near = {(r + dr, c + dc) for r, c in hot for dr in (-1, 0, 1) for dc in (-1, 0, 1)}
        result = grid(conn, counts)
        found += sum(1 for k in hot if result[k]["class"] == "hot" and result[k]["confidence"] >= 95)
        planted_total += len(hot)
        null = [k for k in counts if k not in near]
        false += sum(1 for k in null if result[k]["confidence"] >= 95)
        null_total += len(null)
        spill += sum(1 for k in counts if k not in hot and result[k]["confidence"] >= 95)
        outside += len(counts) - len(hot)
    recall, false_rate = found / planted_total, false / null_total
    print(f"planted hotspots, 20 seeds: recall {recall:.3f}, false-positive cells {false_rate:.4f} at 95 % "
          f"(any unplanted cell, the planted discs' neighbours included: {spill / outside:.4f})")
    assert recall >= 0.9, f"recall {recall:.3f} at 95 %"
    assert false_rate <= 0.05, f"false-positive cells {false_rate:.3%} at 95 %"


# -- the public function on stored incidents -------------------------------------------------------------------------
def test_luminar_gistar_on_events_is_the_grid_function_on_the_extent_with_empty_cells(conn):
    row0, col0 = conn.execute("SELECT (luminar_cell(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 400)).*",
                              (NYC[1], NYC[0])).fetchone()
    rng = random.Random(7)
    counts = {(row0 + r, col0 + c): float(rng.choice([0, 0, 1, 2, 3])) for r in range(6) for c in range(7)}
    for dr in range(1, 4):
        for dc in range(2, 5):
            counts[(row0 + dr, col0 + dc)] = 8.0  # a hot block
    counts[(row0, col0)] = counts[(row0 + 5, col0 + 6)] = 1.0  # the corners fix the extent
    points = []
    for (r, c), n in counts.items():
        lat, lng = conn.execute("SELECT latitude, longitude FROM luminar_cell_centre(%s, %s, 400)", (r, c)).fetchone()
        points += [(lat, lng)] * int(n)
    insert_incidents(conn, points)
    insert_incidents(conn, [NYC], status="pending")  # not verified: not counted
    insert_incidents(conn, [NYC], ago=timedelta(days=9))  # outside the window
    cur = conn.execute("SELECT * FROM luminar_gistar(7, 400)")
    names = [d.name for d in cur.description]
    public = {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    assert set(public) == set(counts)  # every cell of the extent, the empty ones too
    inner = grid(conn, counts)
    for k, row in public.items():
        assert row["incidents"] == counts[k]
        assert (row["z"], row["p"], row["q"], row["class"]) == (inner[k]["z"], inner[k]["p"], inner[k]["q"],
                                                                inner[k]["class"])
        assert row["latitude"] == round(row["latitude"], 6) and row["longitude"] == round(row["longitude"], 6)
    assert public[(row0 + 2, col0 + 3)]["class"] == "hot"


def test_cells_are_equal_area_squares_of_cell_m_metres(conn):
    for lat in (0.0, 40.7, 60.0):
        area = conn.execute(
            "SELECT ST_Area(ST_Transform(ST_MakeEnvelope(c * 400, r * 400, (c + 1) * 400, (r + 1) * 400, 6933), "
            "4326)::geography) FROM luminar_cell(ST_SetSRID(ST_MakePoint(10, %s), 4326), 400) AS x (r, c)",
            (lat,)).fetchone()[0]
        assert area == pytest.approx(400 * 400, rel=0.01), lat
    # squares on the map, not on the ground: at 48 degrees about 310 m east-west by 520 m north-south
    east_west, north_south = conn.execute(
        "SELECT ST_Distance(ST_Transform(ST_SetSRID(ST_MakePoint(0, y), 6933), 4326)::geography, "
        "                   ST_Transform(ST_SetSRID(ST_MakePoint(400, y), 6933), 4326)::geography), "
        "       ST_Distance(ST_Transform(ST_SetSRID(ST_MakePoint(0, y), 6933), 4326)::geography, "
        "                   ST_Transform(ST_SetSRID(ST_MakePoint(0, y + 400), 6933), 4326)::geography) "
        "FROM (SELECT ST_Y(ST_Transform(ST_SetSRID(ST_MakePoint(0, 48), 4326), 6933)) AS y) AS row48").fetchone()
    assert east_west == pytest.approx(310, rel=0.02) and north_south == pytest.approx(518, rel=0.02)


def test_the_facade_returns_significant_hotspots_and_refuses_bad_arguments(db_settings):
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        rng = random.Random(3)
        # noise over ~4 x 4 km around NYC, and a dense block of incidents within ~150 m
        points = [(NYC[0] + rng.uniform(-0.018, 0.018), NYC[1] + rng.uniform(-0.024, 0.024)) for _ in range(150)]
        points += [(NYC[0] + rng.uniform(-0.0012, 0.0012), NYC[1] + rng.uniform(-0.0015, 0.0015)) for _ in range(40)]
        insert_incidents(conn, points)

    async def body(db):
        spots = await db.get_significant_hotspots(days=7)
        same = await db.get_crime_hotspots(days=7, significant=True)
        every = await db.get_significant_hotspots(days=7, min_confidence=0, limit=10_000)
        refused = []
        for call in (lambda: db.get_significant_hotspots(days=0), lambda: db.get_significant_hotspots(cell_m=10),
                     lambda: db.get_significant_hotspots(cell_m=float("nan")),
                     lambda: db.get_significant_hotspots(min_confidence=80),
                     lambda: db.get_crime_hotspots(significant="yes")):
            with pytest.raises(ValidationError) as err:
                await call()
            refused.append(err.value.field)
        return spots, same, every, refused

    spots, same, every, refused = with_facade(db_settings, body)
    def cells(found):  # computed_at is each call's own (no analyze ran: computed now)
        return [(s.cell_row, s.cell_col, s.z, s.q, s.confidence) for s in found]

    assert spots and cells(spots) == cells(same)
    assert spots[0].classification == "hot" and spots[0].confidence >= 95
    assert abs(spots[0].latitude - NYC[0]) < 0.005 and abs(spots[0].longitude - NYC[1]) < 0.005
    assert all(s.confidence >= 90 for s in spots)
    assert sum(c.incidents for c in every) == 190 and len(every) > len(spots)
    assert refused == ["days", "cell_m", "cell_m", "min_confidence", "significant"]


def test_far_apart_regions_make_small_grids_and_one_huge_region_is_refused_naming_cell_m(db_settings, conn):
    insert_incidents(conn, [NYC, (48.8566, 2.3522)])  # New York and Paris: two regions of one cell each
    assert conn.execute("SELECT count(*) FROM luminar_gistar(7, 50)").fetchone()[0] == 2
    # a chain of incidents 7 km apart (less than the 10 km region gap) over 60 km: one region, ~1.4M cells of 50 m
    insert_incidents(conn, [(40.0 + i * 0.045, -100.0 + i * 0.06) for i in range(14)])

    async def body(aconn):
        with pytest.raises(ValidationError) as err:
            await CrimeEventRepository(aconn).significant_hotspots(7, cell_m=50)
        return err.value

    async def main():
        async with await psycopg.AsyncConnection.connect(db_settings.conninfo(), autocommit=True) as aconn:
            return await body(aconn)

    error = run(main())
    assert error.field == "cell_m" and "larger cell_m" in error.rule


# -- incidents -------------------------------------------------------------------------------------------------------
def test_three_miners_reporting_one_incident_count_once(db_settings):
    report = {"report_id": "app-77", "text_description": "Shop window smashed", "user_id": "u-7",
              "geotag": {"lat": NYC[0], "lng": NYC[1]}, "timestamp": NOW - timedelta(minutes=30)}
    other = dict(report, report_id="app-78", text_description="Another shop, same street")

    async def body(db):
        report_id = await db.store_raw_report(report)
        other_id = await db.store_raw_report(other)
        events = []
        for miner, score in ((11, 0.7), (12, 0.9), (13, 0.8)):  # three miners, slightly different points
            events.append(await db.store_crime_event(
                {"event_type": "vandalism", "geotag": {"lat": NYC[0] + miner * 1e-5, "lng": NYC[1]},
                 "timestamp": NOW - timedelta(minutes=20), "severity": 3, "confidence_score": 0.8,
                 "related_reports": [report_id]}, miner_uid=miner))
            await db.update_event_verification(events[-1], 7, "verified", score)
        second = await db.store_crime_event(
            {"event_type": "theft", "geotag": {"lat": NYC[0], "lng": NYC[1]}, "timestamp": NOW - timedelta(minutes=10),
             "severity": 2, "confidence_score": 0.8, "related_reports": [other_id]}, miner_uid=11)
        await db.update_event_verification(second, 7, "verified", 0.9)
        return events, await db.get_crime_hotspots(days=7, min_incidents=1), await db.get_crime_hotspots(days=7), \
            await db.get_significant_hotspots(days=7, min_confidence=0)

    events, listed, default, gistar = with_facade(db_settings, body)
    assert [(h.incident_count, h.crime_types) for h in listed] == [(2, ["theft", "vandalism"])]
    assert [h.incident_count for h in default] == [2]  # two incidents reach the default threshold; four events
    assert sum(c.incidents for c in gistar) == 2
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        rows = conn.execute("SELECT event_id, events, event_type FROM luminar_incidents(now() - interval '1 day') "
                            "ORDER BY event_type").fetchall()
        assert rows == [(rows[0][0], 1, "theft"), (events[1], 3, "vandalism")]  # consensus's choice: score 0.9
        assert conn.execute("SELECT incident_count FROM crime_hotspots").fetchall() == [(2,)]
        assert conn.execute("SELECT sum(incident_count) FROM crime_hotspots_since(7, 50000)").fetchone()[0] == 2


def test_an_event_without_reports_is_an_incident_of_its_own(conn):
    insert_incidents(conn, [NYC, NYC, NYC])
    assert conn.execute("SELECT count(*), sum(events) FROM luminar_incidents(now() - interval '1 day')"
                        ).fetchone() == (3, 3)


def test_only_the_network_kinds_may_run_the_analysis_not_the_public_reader(conn):
    def may(role: str, function: str) -> bool:
        return conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, function)).fetchone()[0]

    for function in ("luminar_gistar(integer, double precision)", "luminar_incidents(timestamptz)"):
        assert all(may(r, function) for r in ("luminar_miner", "luminar_validator", "luminar_analyst"))
        assert not may("luminar_reader", function) and not may("luminar_monitor", function)


def test_the_down_section_restores_event_counts_and_up_brings_incidents_back(db_settings):
    from luminar_store.migrator import DEFAULT_DIR, Migrator

    migrator = Migrator(db_settings.conninfo(), DEFAULT_DIR)
    target = "20261130032000"
    while migrator.rollback().version != target:
        pass
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        insert_incidents(conn, [NYC, NYC])
        assert conn.execute("SELECT to_regprocedure('luminar_gistar(integer, double precision)')").fetchone()[0] \
            is None
        assert conn.execute("SELECT incident_count FROM crime_hotspots").fetchall() == [(2,)]
    migrator.migrate()
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT to_regprocedure('luminar_gistar(integer, double precision)')").fetchone()[0] \
            is not None
        assert conn.execute("SELECT count(*) FROM luminar_gistar(7, 400)").fetchone()[0] == 1
