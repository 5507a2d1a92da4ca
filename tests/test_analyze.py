"""``luminar-db analyze`` (luminar_store.analysis.analyze): every step run, recorded, one run at a time, and the
readers of significant hotspots served from the stored run while it is fresh."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import psycopg
from _async import clock, with_facade
from _cli import cli_env, one_line_error

from luminar_store.analysis.analyze import ORDER, RUN_LOCK, STEPS

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

NYC = (40.7128, -74.0060)


def plant(conn) -> None:
    """Noise over ~4 x 4 km around New York and a dense block of incidents within ~150 m (a hot spot)."""
    rng = random.Random(3)
    points = [(NYC[0] + rng.uniform(-0.018, 0.018), NYC[1] + rng.uniform(-0.024, 0.024)) for _ in range(150)]
    points += [(NYC[0] + rng.uniform(-0.0012, 0.0012), NYC[1] + rng.uniform(-0.0015, 0.0015)) for _ in range(40)]
    conn.cursor().executemany(
        "INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
        "confidence_score, verification_status) VALUES (1, 'theft', %s, %s, %s, 3, 0.9, 'verified')",
        [(lat, lng, NOW - timedelta(hours=1 + i % 48)) for i, (lat, lng) in enumerate(points)])


def test_a_run_records_its_figures_and_readers_get_the_stored_cells_while_fresh(db_settings, conn, cli_run):
    plant(conn)
    result = cli_run(["analyze", "--days", "7"], cli_env(db_settings))
    assert result.exit_code == 0, result.output
    assert "hot cells" in result.output and "Traceback" not in result.output
    run = conn.execute("SELECT finished_at IS NOT NULL, error, parameters, figures FROM analysis_runs").fetchall()
    assert len(run) == 1 and run[0][:2] == (True, None) and run[0][2]["days"] == 7 and run[0][2]["cell_m"] == 400
    assert set(run[0][3]) == {step.name for step in STEPS} and run[0][3]["hotspots"]["hot"] >= 1
    assert sorted(ORDER) == sorted(step.name for step in STEPS)  # the workers take every step, once
    stored = conn.execute("SELECT count(*), min(computed_at), max(computed_at) FROM gistar_cells").fetchone()

    async def read(db):
        return await db.get_significant_hotspots(days=7)

    spots = with_facade(db_settings, read)
    assert len(spots) == stored[0] and {s.computed_at for s in spots} == {stored[1]} == {stored[2]}
    # the same figures Gi* gives now: the stored run is the analysis, not a different one
    live = conn.execute("SELECT count(*) FROM luminar_gistar(7, 400) WHERE confidence > 0").fetchone()[0]
    assert live == stored[0]

    # a run again replaces its cells (never adds), and a stale run is not served: Gi* is computed at the call
    assert cli_run(["analyze"], cli_env(db_settings)).exit_code == 0
    assert conn.execute("SELECT count(*) FROM gistar_cells").fetchone()[0] == stored[0]
    conn.execute("UPDATE analysis_runs SET started_at = started_at - interval '2 hours', "
                 "finished_at = finished_at - interval '2 hours'")
    conn.execute("UPDATE gistar_cells SET computed_at = computed_at - interval '2 hours'")
    later = with_facade(db_settings, read)
    assert len(later) == len(spots) and all(s.computed_at > stored[2] for s in later)


def test_a_second_run_is_refused_while_one_holds_the_lock_and_changes_nothing(db_settings, conn, cli_run):
    plant(conn)
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", RUN_LOCK)
        result = cli_run(["analyze"], cli_env(db_settings))
    assert result.exit_code == 1 and "another analyze is running" in one_line_error(result)
    assert conn.execute("SELECT (SELECT count(*) FROM analysis_runs) + (SELECT count(*) FROM gistar_cells)"
                        ).fetchone()[0] == 0


def test_a_run_holding_its_lock_does_not_stop_a_writer_of_any_incident(db_settings, conn):
    """The run's lock is no incident or cell-day bucket: a write to the incident of bucket RUN_LOCK[1] goes on."""
    key = conn.execute("SELECT k FROM (SELECT gen_random_uuid() AS k FROM generate_series(1, 20000)) AS g "
                       "WHERE abs(hashtextextended(k::text, 0) %% luminar_incident_buckets()) = %s LIMIT 1",
                       (RUN_LOCK[1],)).fetchone()[0]
    with psycopg.connect(db_settings.conninfo(), autocommit=True) as run:
        run.execute("SELECT pg_advisory_lock(%s, %s)", RUN_LOCK)
        conn.execute("SET lock_timeout = '30s'")  # a collision fails the insert instead of hanging the test
        conn.execute("INSERT INTO crime_events (event_id, miner_uid, event_type, latitude, longitude, \"timestamp\", "
                     "confidence_score, verification_status) VALUES (%s, 1, 'theft', 40.7, -74.0, %s, 0.9, "
                     "'verified')", (key, NOW - timedelta(hours=1)))
    assert conn.execute("SELECT count(*) FROM crime_incidents WHERE incident_key = %s", (key,)).fetchone()[0] == 1


def test_bad_options_are_refused_naming_them(db_settings, cli_run):
    for args, name in ((["--days", "0"], "--days"), (["--cell-m", "10"], "--cell-m")):
        result = cli_run(["analyze", *args], cli_env(db_settings))
        assert result.exit_code == 2 and name in result.output and "Traceback" not in result.output


def test_the_analysis_assignments_are_audited_by_their_keys_and_a_node_cannot_claim_to_be_the_analysis(
        db_settings, conn, node_login):
    plant(conn)  # the dense block makes a cluster
    done = conn.execute("SELECT events_updated FROM luminar_analyze_clusters(7, 200, 5)").fetchone()[0]
    assert done >= 40
    rows = conn.execute("SELECT row_count, cardinality(row_ids), old_data IS NULL, new_data ->> 'by' FROM audit_log "
                        "WHERE table_name = 'crime_events' AND operation = 'UPDATE'").fetchall()
    assert rows == [(done, done, True, "luminar_analyze_clusters")]  # one row for the statement, the keys in it
    assert conn.execute("SELECT current_setting('luminar.analysis', true)").fetchone()[0] in ("", None)
    validator = node_login("luminar_validator", kind="validator", uid=None)
    event_id = conn.execute("SELECT event_id FROM crime_events LIMIT 1").fetchone()[0]
    with psycopg.connect(validator.conninfo()) as node:
        node.execute("SELECT set_config('luminar.analysis', txid_current()::text, true)")
        node.execute("UPDATE crime_events SET verification_status = 'disputed', validator_uid = 3 "
                     "WHERE event_id = %s", (event_id,))
        node.commit()
    full = conn.execute("SELECT old_data ->> 'verification_status', new_data ->> 'verification_status' FROM audit_log "
                        "WHERE table_name = 'crime_events' AND operation = 'UPDATE' AND row_id = %s",
                        (str(event_id),)).fetchall()
    assert full == [("verified", "disputed")]  # the node's change audited in full, whatever it set
