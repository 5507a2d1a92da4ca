"""Synthetic data against a real migrated database: realism, determinism, runs that never collide, whole batches."""

from __future__ import annotations

import hashlib
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from _async import run
from psycopg import sql

from luminar_store.config import load_settings
from luminar_store.errors import OperationError, ValidationError
from luminar_store.ops.synthetic import load_sample_data, populate_sample_data
from luminar_store.ops.synthetic.catalog import CITIES
from luminar_store.ops.synthetic.loader import LOCK_KEY

NOW = 1_760_000_000.0  # a fixed "now" (2025-10-09 08:53 UTC) makes two loads comparable row for row

TABLE_KEYS = {
    "raw_incident_reports": "report_id",
    "crime_events": "event_id",
    "consensus_records": "record_id",
    "crime_clusters": "cluster_id",
    "miner_performance": "miner_uid",
    "validator_performance": "validator_uid",
    "risk_zones": "name",
}
# Columns the server fills (now(), gen_random_uuid()) rather than the generator, outside the three bulk tables.
SERVER_COLUMNS = {"created_at", "updated_at", "zone_id", "miner_id", "validator_id"}


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            for t in TABLE_KEYS}


def content(conn: psycopg.Connection, table: str) -> str:
    """md5 of the table's rows (ordered by key), leaving out the columns the server's clock fills."""
    columns = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = 'public' "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position", [table])]
    bulk = table in ("raw_incident_reports", "crime_events", "consensus_records")
    kept = columns if bulk else [c for c in columns if c not in SERVER_COLUMNS]
    query = sql.SQL("SELECT md5(string_agg(ROW({})::text, ',' ORDER BY {})) FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, kept)), sql.Identifier(TABLE_KEYS[table]), sql.Identifier(table))
    return conn.execute(query).fetchone()[0]


@pytest.fixture
def other_conn(pg_server):
    """A second fresh migrated database, to compare two loads."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with pg_server.janitor(name, template=pg_server.template):
        with psycopg.connect(pg_server.conninfo(name), autocommit=True) as connection:
            yield connection


def test_a_load_fills_every_table_of_the_specification(conn):
    summary = load_sample_data(conn, reports=400, days=7, seed=1, now=NOW)
    got = counts(conn)
    assert got["raw_incident_reports"] == summary.reports == 400
    assert got["crime_events"] == summary.events and 80 <= summary.events < 400
    assert got["consensus_records"] == summary.consensus_records >= summary.events
    assert got["miner_performance"] == 64 and got["validator_performance"] == 12
    assert got["crime_clusters"] == summary.clusters > 0
    assert got["risk_zones"] == summary.risk_zones == 2 * len(CITIES)
    statuses = dict(conn.execute("SELECT status, count(*) FROM raw_incident_reports GROUP BY 1").fetchall())
    assert statuses["processed"] > 200 and statuses.get("pending", 0) > 0
    # The specification's own queries find something to show.
    assert conn.execute("SELECT count(*) FROM active_miners WHERE success_rate > 80").fetchone()[0] > 0


def test_related_reports_are_real_reports_of_one_incident(conn):
    load_sample_data(conn, reports=500, seed=2, now=NOW)
    dangling = conn.execute("""
        SELECT count(*) FROM crime_events e, unnest(e.related_reports) r
         WHERE NOT EXISTS (SELECT 1 FROM raw_incident_reports WHERE report_id = r)""").fetchone()[0]
    assert dangling == 0
    shared = conn.execute("""
        SELECT count(*) FROM (SELECT r FROM crime_events, unnest(related_reports) r GROUP BY r HAVING count(*) > 1)
        AS twice""").fetchone()[0]
    assert shared == 0, "a report belongs to one event at most"
    # An event sits among its reports (tens of metres), after none of them, and its reports are processed.
    far, late, unprocessed = conn.execute("""
        SELECT count(*) FILTER (WHERE ST_Distance(e.geotag::geography, r.geotag::geography) > 300),
               count(*) FILTER (WHERE e."timestamp" > r."timestamp"),
               count(*) FILTER (WHERE r.status <> 'processed' OR r.claimed_by <> e.miner_uid)
          FROM crime_events e JOIN raw_incident_reports r ON r.report_id = ANY(e.related_reports)""").fetchone()
    assert (far, late, unprocessed) == (0, 0, 0)
    multi = conn.execute("SELECT count(*) FROM crime_events WHERE cardinality(related_reports) >= 2").fetchone()[0]
    assert multi > 20


def test_media_urls_come_with_their_sha256(conn):
    load_sample_data(conn, reports=300, seed=3, now=NOW)
    rows = conn.execute("SELECT media_urls, media_hashes FROM raw_incident_reports "
                        "WHERE cardinality(media_urls) > 0").fetchall()
    assert len(rows) > 100
    for urls, hashes in rows:
        assert len(urls) == len(hashes)
        for url, digest in zip(urls, hashes, strict=True):
            media = url.removeprefix("https://media.luminar.network/reports/")
            assert hashlib.sha256(f"luminar-synthetic-media:{media}".encode()).hexdigest() == digest


def _km(lat1, lng1, lat2, lng2) -> float:
    p1, p2, dp, dl = map(math.radians, (lat1, lat2, lat2 - lat1, lng2 - lng1))
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 6371 * 2 * math.asin(math.sqrt(a))


def test_reports_cluster_in_tight_hotspots_of_cities_on_several_continents(conn):
    load_sample_data(conn, reports=1500, seed=4)  # now: the views below look back from now()
    rows = conn.execute("SELECT latitude, longitude, metadata->>'city' FROM raw_incident_reports").fetchall()
    by_name = {c.name: c for c in CITIES}
    for lat, lng, city in rows:
        c = by_name[city]
        assert _km(lat, lng, c.lat, c.lng) < 8 * c.spread_km, f"{city}: {lat},{lng} is far outside the city"
    continents = {by_name[city].continent for _, _, city in rows}
    assert continents == {"North America", "South America", "Europe", "Africa", "Asia", "Oceania"}
    # Uniform noise over a city would leave a report alone within 150 m; hotspots give it company.
    median = conn.execute("""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY n) FROM (
            SELECT (SELECT count(*) FROM raw_incident_reports o
                     WHERE o.report_id <> r.report_id AND ST_DWithin(o.geotag, r.geotag, 0.003)
                       AND ST_DWithin(o.geotag::geography, r.geotag::geography, 150)) AS n
              FROM raw_incident_reports r) AS neighbours""").fetchone()[0]
    assert median >= 3
    assert conn.execute("SELECT count(*) FROM crime_hotspots WHERE incident_count >= 5").fetchone()[0] > 0


def test_timestamps_lie_in_the_window_with_a_day_and_night_rhythm(conn):
    load_sample_data(conn, reports=3000, days=5, seed=5, now=NOW)
    low, high = conn.execute("SELECT min(extract(epoch FROM \"timestamp\")), max(extract(epoch FROM \"timestamp\")) "
                             "FROM raw_incident_reports").fetchone()
    assert NOW - 5 * 86400 <= float(low) and float(high) <= NOW
    offsets = {c.name: c.utc_offset for c in CITIES}
    hours: dict[str, Counter] = {"assault": Counter(), "fraud": Counter()}
    for crime, city, ts in conn.execute("""
            SELECT e.event_type, e.metadata->>'city', extract(epoch FROM e."timestamp")
              FROM crime_events e WHERE e.event_type IN ('assault', 'fraud')"""):
        hours[crime][int((float(ts) + offsets[city] * 3600) // 3600 % 24)] += 1
    night = lambda c: sum(c[h] for h in (22, 23, 0, 1, 2, 3)) / sum(c.values())  # noqa: E731
    assert night(hours["assault"]) > 0.35
    assert night(hours["fraud"]) < 0.15


def test_reports_read_like_reports_with_metadata(conn):
    load_sample_data(conn, reports=200, seed=6, now=NOW)
    for text, metadata in conn.execute(
            "SELECT text_description, metadata FROM raw_incident_reports"):
        assert 30 < len(text) < 400 and text[0].isupper() and "{" not in text
        assert {"location_name", "weapon_involved", "victims", "reporter_kind", "city"} <= metadata.keys()
        assert metadata["location_name"].split(", ")[-1] in text or metadata["location_name"] in text
    events = conn.execute("SELECT title, summary, severity_level, risk_score FROM crime_events").fetchall()
    assert all(title and summary and 1 <= sev <= 5 and 0 <= risk <= 1 for title, summary, sev, risk in events)


def test_the_same_seed_writes_the_same_rows(conn, other_conn):
    load_sample_data(conn, reports=300, seed=7, now=NOW)
    load_sample_data(other_conn, reports=300, seed=7, now=NOW)
    for table in TABLE_KEYS:
        assert content(conn, table) == content(other_conn, table), table


def test_another_seed_writes_other_rows(conn, other_conn):
    load_sample_data(conn, reports=100, seed=8, now=NOW)
    load_sample_data(other_conn, reports=100, seed=9, now=NOW)
    assert content(conn, "raw_incident_reports") != content(other_conn, "raw_incident_reports")


def test_a_second_run_adds_new_rows_without_colliding(conn):
    first = load_sample_data(conn, reports=300, seed=10, now=NOW)
    rounds = conn.execute("SELECT sum(total_rounds) FROM miner_performance").fetchone()[0]
    second = load_sample_data(conn, reports=300, seed=10, now=NOW)
    assert (first.run, second.run) == (0, 1)
    got = counts(conn)
    assert got["raw_incident_reports"] == 600
    assert got["crime_events"] == first.events + second.events
    assert got["miner_performance"] == 64 and got["validator_performance"] == 12  # upserted by uid
    assert got["risk_zones"] == 2 * len(CITIES)  # zones are made once per seed
    assert conn.execute("SELECT sum(total_rounds) FROM miner_performance").fetchone()[0] > rounds
    prefixes = dict(conn.execute("SELECT split_part(external_id, '-', 3), count(*) FROM raw_incident_reports "
                                 "GROUP BY 1").fetchall())
    assert prefixes == {"r0": 300, "r1": 300}
    # Validators' lifetime figures stay consistent after the run's validations were added.
    bad = conn.execute("SELECT count(*) FROM validator_performance WHERE abs(consensus_accuracy - "
                       "agreements::float / validated_events) > 1e-9").fetchone()[0]
    assert bad == 0


def test_parallel_writers_write_the_same_rows_as_one(conn, other_conn):
    summary = load_sample_data(conn, reports=6500, seed=11, now=NOW, workers=2, batch_size=1000)
    assert summary.batches == 7 and summary.reports == 6500
    load_sample_data(other_conn, reports=6500, seed=11, now=NOW, workers=1, batch_size=3000)
    for table in TABLE_KEYS:
        assert content(conn, table) == content(other_conn, table), table
    dangling = conn.execute("""
        SELECT count(*) FROM crime_events e, unnest(e.related_reports) r
         WHERE NOT EXISTS (SELECT 1 FROM raw_incident_reports WHERE report_id = r)""").fetchone()[0]
    assert dangling == 0


def _orphans(conn) -> int:
    """Processed reports whose event is missing: what a half-loaded batch would leave."""
    # One hashed anti-join: a freshly loaded table has no statistics, and a per-report containment probe then
    # scans every event for every report.
    return conn.execute("""
        SELECT count(*) FROM raw_incident_reports r
          LEFT JOIN (SELECT DISTINCT unnest(related_reports) AS report_id FROM crime_events) e USING (report_id)
         WHERE r.status = 'processed' AND e.report_id IS NULL""").fetchone()[0]


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interruption_leaves_whole_batches_and_releases_the_lock(conn, workers):
    seen = []

    def progress(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load_sample_data(conn, reports=20_000, seed=13, now=NOW, batch_size=1000, workers=workers, progress=progress)
    reports = counts(conn)["raw_incident_reports"]
    assert reports % 1000 == 0 and reports >= 2000  # whole batches of 1,000, nothing of a batch in flight
    assert _orphans(conn) == 0
    free = conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]
    conn.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    assert free
    # The next run starts cleanly after the interrupted one.
    assert load_sample_data(conn, reports=100, seed=13, now=NOW).run == 1


def _interruptible() -> None:
    """In the child, before it runs: Ctrl-C reaches it as in a terminal. The test process may be running with SIGINT
    ignored or blocked (seen under the parallel test runner, where the command then ran to its end), and both are
    inherited across exec."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_on_the_command_line_leaves_whole_batches(db_settings, tmp_path):
    env = {**os.environ, "LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": db_settings.host,
           "LUMINAR_DB_PORT": str(db_settings.port), "LUMINAR_DB_NAME": db_settings.name,
           "LUMINAR_DB_USER": db_settings.user, "LUMINAR_DB_PASSWORD": db_settings.password,
           "PYTHONFAULTHANDLER": "1"}
    script = Path(__file__).resolve().parents[1] / "scripts" / "setup_database.py"
    # A run far longer than the test: however slow the machine, the interrupt lands in the middle of it.
    proc = subprocess.Popen([sys.executable, str(script), "sample-data", "--reports", "2000000", "--workers", "2"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_interruptible)
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as conn:
        deadline = time.monotonic() + 180.0  # poll (up to three minutes) for the first committed batch
        while not counts(conn)["raw_incident_reports"] and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None, f"sample-data ended before it was interrupted: {proc.communicate()}"
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGABRT)  # faulthandler prints where each process was stuck
            out, err = proc.communicate()
            pytest.fail(f"sample-data did not stop within 2 minutes of Ctrl-C:\n{err[-4000:]}")
        assert proc.returncode != 0, out
        assert "Traceback" not in err, err
        reports = counts(conn)["raw_incident_reports"]
        assert 0 < reports < 2_000_000 and reports % 1000 == 0, (reports, err[-2000:])
        assert _orphans(conn) == 0


def test_populate_sample_data_is_the_specifications_call(db_settings):
    summary = run(populate_sample_data(reports=150, settings=db_settings))
    assert (summary.reports, summary.seed) == (150, 42)
    with psycopg.connect(db_settings.conninfo()) as conn:
        assert conn.execute("SELECT count(*) FROM raw_incident_reports").fetchone()[0] == 150


def test_populate_sample_data_refuses_production():
    production = load_settings("production", environ={"LUMINAR_ENV": "production", "LUMINAR_DB_HOST": "127.0.0.1",
                                                      "LUMINAR_DB_PORT": "1", "LUMINAR_DB_PASSWORD": "a-real-secret"})
    with pytest.raises(OperationError, match="production"):
        run(populate_sample_data(reports=10, settings=production))


def test_a_database_without_schema_is_refused(empty_db):
    with psycopg.connect(empty_db.conninfo(), autocommit=True) as conn:
        with pytest.raises(OperationError, match="make db-migrate"):
            load_sample_data(conn, reports=10)


@pytest.mark.parametrize("field, kwargs", [("reports", {"reports": 0}), ("days", {"days": 0}),
                                           ("seed", {"seed": -1}), ("workers", {"workers": 0}),
                                           ("batch_size", {"batch_size": 999})])
def test_bad_arguments_are_refused_before_any_sql(conn, field, kwargs):
    with pytest.raises(ValidationError) as caught:
        load_sample_data(conn, **kwargs)
    assert caught.value.field == field
    assert counts(conn)["raw_incident_reports"] == 0


def test_a_batchs_blocks_are_made_while_its_reports_are_copied(conn):
    """The generator of a batch's blocks is drawn inside the reports' COPY (the server takes rows meanwhile); the
    rows are those of the blocks made before, and the ids those of uuid.UUID(int=..., version=4)."""
    from luminar_store.ops.synthetic.copying import _cursor, write_blocks
    from luminar_store.ops.synthetic.stream import RunStream, uuid4_of
    from luminar_store.ops.synthetic.world import build_world

    bits = [uuid.UUID(int=0).int, 2**128 - 1, 0x0123456789ABCDEF0123456789ABCDEF]
    assert [uuid4_of(b) for b in bits] == [uuid.UUID(int=b, version=4) for b in bits]
    assert all(str(uuid4_of(b)) == str(uuid.UUID(int=b, version=4)) for b in bits)

    load_sample_data(conn, reports=10, seed=3, now=NOW)  # the miners and validators the events name
    seen = []
    stream = RunStream(build_world(3), run=5, total=2500, days=7, now=NOW)  # hotspots without clusters: none named

    def blocks():
        for i in range(stream.blocks):
            seen.append(conn.info.transaction_status)
            yield stream.block(i)

    (reports, events, consensus), made = write_blocks(conn, _cursor(conn), blocks())
    assert set(seen) == {psycopg.pq.TransactionStatus.ACTIVE}  # every block made inside the reports' COPY
    assert [b.index for b in made] == [0, 1, 2]
    assert reports == 2500 == sum(len(b.reports) for b in made)
    assert events == sum(len(b.events) for b in made) > 0 and consensus == sum(len(b.consensus) for b in made)
    stored = {r[0] for r in conn.execute(
        "SELECT report_id FROM raw_incident_reports WHERE external_id LIKE %s", ["syn-3-r5-%"])}
    assert stored == {r[0] for b in made for r in b.reports}
