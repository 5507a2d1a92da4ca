"""The GeoJSON export and the map (``luminar-db export geojson``, ``luminar-db map``; luminar_store.analysis.export).

One database for the module: noise and a planted hotspot of incidents around New York, a cluster and a risk zone as a
node stores them (plus an old cluster and an expired zone that must not appear). Each output is checked by the
rules of RFC 7946 (``check_rfc7946`` below), offline: the map is a file, nothing is fetched.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from _cli import cli_env, one_line_error

NYC = (40.7128, -74.0060)
PARIS = (48.8566, 2.3522)  # 20 days ago: a window of 30 days spans the Atlantic
NOISE, PLANTED = 150, 40
TILES = "https://tiles.example.test/{z}/{x}/{y}.png"
CREDIT = "Example tiles, for the tests"
# Drawn clockwise on purpose (north, east, south from the south-west corner), with a counter-clockwise hole: the
# export must turn both round.
ZONE = ("POLYGON((-74.03 40.69, -74.03 40.73, -73.98 40.73, -73.98 40.69, -74.03 40.69), "
        "(-74.01 40.70, -74.00 40.70, -74.00 40.71, -74.01 40.71, -74.01 40.70))")


@pytest.fixture(scope="module")
def planted(pg_server):
    """Settings of a database holding the module's data, and the ids a test looks for."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    now = datetime.now(timezone.utc)
    rng = random.Random(3)
    points = [(NYC[0] + rng.uniform(-0.018, 0.018), NYC[1] + rng.uniform(-0.024, 0.024)) for _ in range(NOISE)]
    points += [(NYC[0] + rng.uniform(-0.0012, 0.0012), NYC[1] + rng.uniform(-0.0015, 0.0015)) for _ in range(PLANTED)]
    with pg_server.janitor(name, template=pg_server.template):
        settings = pg_server.settings(name)
        with psycopg.connect(settings.conninfo(), autocommit=True) as conn:
            conn.cursor().executemany(
                "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
                "confidence_score, verification_status) VALUES (1, %s, %s, %s, %s, %s, 0.9, 'verified')",
                [("theft" if i % 2 else "assault", lat, lng, now - timedelta(hours=1 + i % 48), 1 + i % 5)
                 for i, (lat, lng) in enumerate(points)])
            conn.execute("INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", "
                         "severity_level, confidence_score, verification_status) "
                         "VALUES (1, 'theft', %s, %s, %s, 3, 0.9, 'verified'), (1, 'theft', %s, %s, %s, 3, 0.9, "
                         "'verified')", (*NYC, now - timedelta(days=9), *PARIS, now - timedelta(days=20)))
            cluster, old_cluster = (conn.execute(
                "INSERT INTO crime_clusters (miner_uid, latitude, longitude, radius_m, event_count, "
                "dominant_crime_type, cluster_type, confidence_score, time_start, time_end) "
                "VALUES (7, %s, %s, 250, 40, 'theft', 'geographic', 0.85, %s, %s) RETURNING cluster_id",
                (*NYC, start, start + timedelta(hours=12))).fetchone()[0]
                for start in (now - timedelta(days=2), now - timedelta(days=30)))
            zone, expired = (conn.execute(
                "INSERT INTO risk_zones (name, boundary, risk_level, risk_score, crime_types, valid_from, valid_until, "
                "crime_density, trend_direction) VALUES (%s, ST_GeomFromText(%s, 4326), 4, 0.8, '{theft}', %s, %s, "
                "12.5, 'increasing') RETURNING zone_id", (label, ZONE, now - timedelta(days=1), until)).fetchone()[0]
                for label, until in (("Lower Manhattan", None), ("Expired", now - timedelta(hours=1))))
        yield {"settings": settings, "cluster": str(cluster), "old_cluster": str(old_cluster), "zone": str(zone),
               "expired": str(expired)}


def check_rfc7946(doc: dict) -> dict[str, list[dict]]:
    """Assert the rules of RFC 7946 this project keeps, and return the features by layer: a FeatureCollection of
    Features; no "crs" anywhere; positions [longitude, latitude] in range with at most 6 decimals; Polygon rings
    closed, of at least 4 positions, the exterior counter-clockwise and the holes clockwise; properties plain JSON
    with times ISO 8601 in UTC."""
    def no_crs(value: object) -> None:
        if isinstance(value, dict):
            assert "crs" not in value, "a crs member (RFC 7946 section 4 removed it)"
            for item in value.values():
                no_crs(item)
        elif isinstance(value, list):
            for item in value:
                no_crs(item)

    def position(p: list) -> None:
        assert isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) for c in p), p
        assert -180 <= p[0] <= 180 and -90 <= p[1] <= 90, p
        assert all(round(c, 6) == c for c in p), f"more than 6 decimals: {p}"

    def signed_area(ring: list) -> float:  # shoelace, in degrees: > 0 counter-clockwise
        return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:], strict=False)) / 2

    no_crs(doc)
    json.dumps(doc, allow_nan=False)  # plain JSON: no NaN or Infinity either
    assert doc["type"] == "FeatureCollection" and isinstance(doc["features"], list)
    layers: dict[str, list[dict]] = {}
    for f in doc["features"]:
        assert f["type"] == "Feature" and isinstance(f["properties"], dict) and isinstance(f["id"], (str, int))
        g = f["geometry"]
        assert g["type"] in ("Point", "Polygon"), g["type"]
        if g["type"] == "Point":
            position(g["coordinates"])
        else:
            for index, ring in enumerate(g["coordinates"]):
                assert len(ring) >= 4 and ring[0] == ring[-1], f"ring {index} not closed"
                for p in ring:
                    position(p)
                area = signed_area(ring)
                assert area > 0 if index == 0 else area < 0, f"ring {index} winds the wrong way ({area})"
        for key, value in f["properties"].items():
            if key in ("timestamp", "time_start", "time_end", "valid_from", "valid_until") and value is not None:
                assert value.endswith("Z") and datetime.fromisoformat(value).utcoffset() == timedelta(0), value
        layers.setdefault(f["properties"]["layer"], []).append(f)
    return layers


def test_the_export_holds_every_layer_valid_by_rfc_7946(planted, cli_run, tmp_path):
    out = tmp_path / "week.geojson"
    result = cli_run(["export", "geojson", "--days", "7", "--out", str(out)], cli_env(planted["settings"]))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    layers = check_rfc7946(doc)
    assert set(layers) == {"hotspots", "clusters", "zones", "events"}
    assert doc["luminar"]["days"] == 7 and doc["luminar"]["window"]["to"].endswith("Z")
    assert f"{len(layers['hotspots'])} hotspots" in result.output and str(out) in result.output

    # hotspots: significant cells only, the planted one hot at 99 %, its square around New York
    hot = layers["hotspots"][0]["properties"]
    assert all(f["properties"]["confidence"] in (90, 95, 99) for f in layers["hotspots"])
    assert (hot["class"], hot["gi_bin"], hot["confidence"]) == ("hot", 3, 99) and hot["z"] > 0 and hot["q"] <= 0.01
    assert {"p", "incidents", "cell_row", "cell_col", "cell_m"} <= set(hot)
    ring = layers["hotspots"][0]["geometry"]["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert min(xs) <= hot["longitude"] <= max(xs) and min(ys) <= hot["latitude"] <= max(ys)
    assert abs(hot["longitude"] - NYC[1]) < 0.01 and abs(hot["latitude"] - NYC[0]) < 0.01  # lon, lat order

    # clusters: the node's cluster of the window, not last month's
    [cluster] = layers["clusters"]
    assert cluster["id"] == planted["cluster"] and cluster["geometry"]["coordinates"] == [NYC[1], NYC[0]]
    assert {k: cluster["properties"][k] for k in ("radius_m", "event_count", "dominant_crime_type",
                                                   "confidence_score")} == {
        "radius_m": 250.0, "event_count": 40, "dominant_crime_type": "theft", "confidence_score": 0.85}

    # zones: the valid one, wound the RFC's way round (checked above), its hole kept
    [zone] = layers["zones"]
    assert zone["id"] == planted["zone"] and len(zone["geometry"]["coordinates"]) == 2
    assert {k: zone["properties"][k] for k in ("risk_level", "crime_density", "trend_direction", "valid_until")} == {
        "risk_level": 4, "crime_density": 12.5, "trend_direction": "increasing", "valid_until": None}

    # events: one per incident of the window (the 9-day-old one is outside)
    assert len(layers["events"]) == NOISE + PLANTED
    assert {"event_type", "severity_level", "timestamp"} <= set(layers["events"][0]["properties"])


def test_layers_choose_a_subset_and_stdout_gets_the_geojson_alone(planted, cli_run):
    result = cli_run(["export", "geojson", "--layers", "zones,clusters"], cli_env(planted["settings"]))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(check_rfc7946(doc)) == {"zones", "clusters"} and doc["luminar"]["layers"] == ["zones", "clusters"]
    assert "1 zones, 1 clusters" in result.stderr


def test_the_map_draws_hotspots_and_zones_over_the_configured_tiles_with_legends(planted, cli_run, tmp_path):
    from luminar_store.analysis.maps import HOTSPOT_COLOURS, HOTSPOT_LEGEND, LAYER_NAMES, RISK_COLOURS, RISK_LEGEND

    out = tmp_path / "hotspots.html"
    env = cli_env(planted["settings"], LUMINAR_MAP_TILES_URL=TILES, LUMINAR_MAP_TILES_ATTRIBUTION=CREDIT)
    result = cli_run(["map", "--days", "7", "--out", str(out)], env)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert TILES in page and CREDIT in page and "tile.openstreetmap.org" not in page
    assert HOTSPOT_LEGEND in page and RISK_LEGEND in page  # the legends (branca colour maps)
    assert f"{LAYER_NAMES['hotspots']} (" in page and f"{LAYER_NAMES['zones']} (1)" in page
    assert HOTSPOT_COLOURS[3] in page and RISK_COLOURS[4] in page  # the planted hot cell, the level-4 zone
    assert planted["zone"] in page and planted["expired"] not in page
    assert str(out) in result.output


def test_an_existing_file_is_refused_by_name_unless_forced(planted, cli_run, tmp_path):
    env = cli_env(planted["settings"])
    for command, name in ((["export", "geojson", "--layers", "zones"], "x.geojson"),
                          (["map", "--layers", "zones"], "x.html")):
        out = tmp_path / name
        out.write_text("keep me")
        result = cli_run([*command, "--out", str(out)], env)
        assert result.exit_code == 1 and str(out) in one_line_error(result) and "--force" in one_line_error(result)
        assert out.read_text() == "keep me"
        assert cli_run([*command, "--out", str(out), "--force"], env).exit_code == 0
        assert out.read_text() != "keep me" and not list(tmp_path.glob(".*.tmp"))


def test_bad_options_are_refused_naming_the_option(planted, cli_run, tmp_path):
    env = cli_env(planted["settings"])
    for args, option in ((["export", "geojson", "--days", "0"], "--days"),
                         (["map", "--days", "-3", "--out", str(tmp_path / "m.html")], "--days"),
                         (["export", "geojson", "--layers", "hotspots,roads"], "--layers"),
                         (["export", "geojson", "--cell-m", "10"], "--cell-m")):
        result = cli_run(args, env)
        assert result.exit_code == 2 and option in one_line_error(result), (args, result.output)
    assert not (tmp_path / "m.html").exists()
    assert not list(tmp_path.iterdir())


def test_without_folium_the_map_says_how_to_install_the_extra(planted, cli_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "folium", None)  # `import folium` now raises ImportError
    result = cli_run(["map", "--out", str(tmp_path / "m.html")], cli_env(planted["settings"]))
    assert result.exit_code == 1
    assert "pip install 'luminar_store[maps]'" in one_line_error(result)
    assert not (tmp_path / "m.html").exists()


def test_a_tile_url_without_its_placeholders_or_credit_is_refused_naming_the_variable(planted, cli_run, tmp_path):
    for extra, variable in (({"LUMINAR_MAP_TILES_URL": "https://tiles.example.test/map.png",
                              "LUMINAR_MAP_TILES_ATTRIBUTION": CREDIT}, "LUMINAR_MAP_TILES_URL"),
                            ({"LUMINAR_MAP_TILES_URL": TILES}, "LUMINAR_MAP_TILES_ATTRIBUTION")):
        result = cli_run(["map", "--out", str(tmp_path / "m.html")], cli_env(planted["settings"], **extra))
        assert result.exit_code == 1 and variable in one_line_error(result)


def test_cells_tile_the_plane_and_hold_their_centres(planted):
    with psycopg.connect(planted["settings"].conninfo(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT ST_Area(ST_Envelope(ST_Union(p))), ST_Area(ST_Union(p)), sum(ST_Area(p)), "
            "bool_and(ST_Covers(p, ST_SetSRID(ST_MakePoint(c.longitude, c.latitude), 4326))), "
            "bool_and(NOT ST_IsPolygonCW(p)), bool_and(ST_NPoints(p) = 5) "
            "FROM generate_series(100, 102) AS r, generate_series(-50, -48) AS k, "
            "LATERAL luminar_cell_polygon(r, k, 400) AS p, LATERAL luminar_cell_centre(r, k, 400) AS c").fetchone()
    box, union, total, centred, ccw, four = row
    assert box == pytest.approx(union, rel=1e-9) and union == pytest.approx(total, rel=1e-9)  # no gap, no overlap
    assert centred and ccw and four
