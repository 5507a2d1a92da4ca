"""The short fault scenarios (``benchmarks/faults/``) on the session's server: counts only, never durations.

Each test runs one scenario's ``measure`` on a fresh database (``db_settings``; ``empty_db`` for the migrators) and
asserts what must hold whatever the machine's speed: nothing acknowledged is lost, no batch is partial, a retried
write is stored once, every migration is applied once, a pool reports exhaustion only when it is exhausted. Kills
are ``pg_terminate_backend`` of the database's own backends (found in ``pg_stat_activity`` by database name); a
lost acknowledgement is made by ``ackdrop.AckDropProxy`` (the commit happens, the answer never arrives).
The long forms and every duration come from ``make faults``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from _async import run

FAULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "faults"
for _path in (str(FAULTS.parent), str(FAULTS)):  # faults/ first: its modules' names win
    if _path not in sys.path:
        sys.path.insert(0, _path)

import bulk  # noqa: E402
import common  # noqa: E402
import fuzz  # noqa: E402
import migrators  # noqa: E402
import pool as pool_scenario  # noqa: E402
import rounds  # noqa: E402
import writes  # noqa: E402

common.quiet_pool_logs()


def test_retried_writes_under_backend_kills_lose_and_duplicate_nothing(db_settings):
    figures = run(writes.measure(db_settings, tasks=4, per_task=50, kills=2))
    assert figures["kills"] >= 1 and figures["backends_killed"] >= 1, figures
    assert figures["acknowledged"] == figures["calls"] == 200, figures
    assert figures["failed_calls"] == 0, figures
    assert figures["attempts"] == figures["calls"] + sum(figures["errors_seen"].values()), figures
    assert figures["lost"] == 0, figures
    assert figures["missing_events"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_a_single_write_whose_acknowledgement_is_lost_is_stored_once_when_retried(db_settings):
    figures = run(writes.measure(db_settings, tasks=2, per_task=20, kills=0, lost_acks=1))
    assert figures["acks_dropped_on_purpose"] == 1, figures
    # the facade sent the write again itself (the server answered again at once): the caller saw no failure
    assert figures["retried"] == 0 and figures["acknowledged"] == 40, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_a_bulk_batch_killed_mid_copy_stores_nothing_then_everything_on_retry(db_settings):
    figures = run(bulk.killed_mid_copy(db_settings, size=300))
    assert figures["backends_killed"] >= 1, figures
    # a generator cannot be sent twice: the call says the write may have committed, and the caller sends a list
    assert figures["error"] == "WriteInDoubtError", figures
    assert figures["rows_after_kill"] == 0 and figures["partial"] == 0, figures
    assert figures["rows_after_retry"] == 300, figures
    assert figures["duplicates"] == 0 and figures["lost"] == 0, figures


def test_bulk_batches_under_backend_kills_are_whole(db_settings):
    figures = run(bulk.measure(db_settings, batches=8, size=100, tasks=2, kills=2))
    assert figures["kills"] >= 1, figures
    assert figures["acknowledged"] == 8 and figures["failed_calls"] == 0, figures
    assert figures["partial_batches"] == 0, figures
    assert figures["lost"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_a_bulk_batch_whose_acknowledgement_is_lost_is_stored_once_when_retried(db_settings):
    figures = run(bulk.measure(db_settings, batches=6, size=50, tasks=1, kills=0, lost_acks=1))
    assert figures["acks_dropped_on_purpose"] == 1, figures
    assert figures["partial_batches"] == 0 and figures["lost"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_scoring_rounds_under_backend_kills_are_each_counted(db_settings):
    figures = run(rounds.measure(db_settings, miners=2, rounds=25, kills=2))
    assert figures["acknowledged"] == 50 and figures["failed_calls"] == 0, figures
    assert figures["rounds_lost"] == 0, figures
    assert figures["rounds_counted_twice"] == 0, figures


def test_a_round_whose_acknowledgement_is_lost_is_counted_once_when_retried(db_settings):
    figures = run(rounds.measure(db_settings, miners=1, rounds=24, kills=0, lost_acks=1))
    assert figures["acks_dropped_on_purpose"] == 1, figures
    assert figures["rounds_lost"] == 0, figures
    assert figures["rounds_counted_twice"] == 0, figures


def test_concurrent_migrators_apply_each_migration_once(empty_db):
    figures = migrators.measure(empty_db.conninfo(), runs=4)
    assert figures["failed_runs"] == 0, figures
    assert figures["applied_total"] == figures["migrations"] > 0, figures
    assert figures["applied_more_than_once"] == 0, figures
    assert figures["missing_migrations"] == 0, figures


def test_the_pool_reports_exhaustion_only_when_every_connection_is_held(pg_server, db_settings):
    settings = pg_server.settings(db_settings.name, **pool_scenario.POOL_ENV)
    figures = run(pool_scenario.measure(settings, calls=10))
    assert figures["unexpected_error_when_full"] == 0, figures
    false_exhausted = {k: v for k, v in figures.items() if k.startswith("false_pool_exhausted")}
    failed = {k: v for k, v in figures.items() if k.startswith("failed_calls")}
    assert set(false_exhausted.values()) == {0}, figures
    assert set(failed.values()) == {0}, figures


def test_hostile_inputs_are_refused_naming_the_field(db_settings):
    figures = run(fuzz.measure(db_settings, inputs=300))
    assert figures["hung"] == 0, figures
    assert figures["unexpected"] == 0, figures["samples"]
    assert figures["server_errors"] == 0, figures["samples"]
    assert figures["unnamed_refusals"] == 0, figures["samples"]
    assert figures["healthy_after"] is True, figures


def test_the_runner_checks_goals_by_figure_name_and_skips_absent_scenarios(capsys):
    spec = importlib.util.spec_from_file_location("faults_run", FAULTS / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    figures = {"lost": 0, "duplicates": 2, "kills": 3, "acks_dropped_on_purpose": 1,
               "kill_9": {"rounds_counted_twice": 1, "partial_batches": 0},
               "per_call": {"store_crime_event.server_errors": 4},
               "outage": [{"first_success_after_back_s": 0.4}, {"first_success_after_back_s": 2.5}]}
    verdicts = {row["figure"]: row["met"] for row in runner.check("writes", figures)}
    assert verdicts == {"lost": True, "duplicates": False, "kill_9.rounds_counted_twice": False,
                        "kill_9.partial_batches": True, "outage[0].first_success_after_back_s": True,
                        "outage[1].first_success_after_back_s": False}
    assert runner.run_scenario("no_such_scenario", quick=True) == {"present": False}
    assert "no_such_scenario: not present" in capsys.readouterr().err
