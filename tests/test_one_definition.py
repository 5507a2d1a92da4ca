"""Each network figure has one definition, and every caller gets the same answer from it.

If a caller (the statistics command, the facade, a repository, the synthetic loader) grew its own copy of a figure
and diverged, one of these tests fails naming the figure.
"""

from __future__ import annotations

import ast
import random
import statistics
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from _async import insert_event, run_with_conn

from luminar_store import geo, limits
from luminar_store.ops import stats
from luminar_store.ops.synthetic import loader
from luminar_store.repositories import clusters, crime_events
from luminar_store.repositories.consensus import ConsensusRepository
from luminar_store.repositories.crime_events import CrimeEventRepository
from luminar_store.repositories.miners import MinerRepository, overall_score
from luminar_store.repositories.validators import ValidatorRepository

PACKAGE = Path(__file__).resolve().parents[1] / "luminar_store"


def test_limits_are_defined_only_in_the_limits_module():
    """No module of the package assigns a name that luminar_store.limits defines (imports are fine)."""
    names = set(limits.__all__)
    redefined = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "limits.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) else []
            redefined += [f"{path.relative_to(PACKAGE)}: {t.id}" for t in targets
                          if isinstance(t, ast.Name) and t.id in names]
    assert redefined == []


def test_one_search_box_function_for_events_and_clusters():
    assert crime_events.search_boxes is geo.search_boxes
    assert clusters.search_boxes is geo.search_boxes


def test_the_loader_scores_rounds_with_the_repositorys_definitions():
    assert loader.overall_score is overall_score
    assert loader.SUCCESS_THRESHOLD is limits.SUCCESS_THRESHOLD


def test_consensus_agreement_is_the_same_for_the_statistics_and_the_repository(conn, db_conninfo):
    rng = random.Random(4)
    finals = {}

    async def body(aconn):
        consensus = ConsensusRepository(aconn)
        for _ in range(12):
            event_id = await insert_event(aconn)
            judges = rng.randint(1, 4)  # a round with one judge is not compared by either caller
            for uid in range(judges):
                final = round(rng.uniform(0.3, 0.9), 2)
                finals.setdefault(event_id, []).append(final)
                await consensus.store(event_id, uid, {"final": final}, 1)
        return await consensus.accuracy(hours=24 * 7)

    acc = run_with_conn(db_conninfo, body)
    network = stats.collect_stats(conn, days=7)
    # the reference: plain Python over the same scores
    compared = [(f, statistics.fmean(fs)) for fs in finals.values() if len(fs) > 1 for f in fs]
    agreeing = sum(abs(f - mean) <= limits.AGREEMENT_TOLERANCE + 1e-9 for f, mean in compared)
    expected = round(100.0 * agreeing / len(compared), 2)
    assert acc.compared == network.consensus_records_compared == len(compared)
    assert acc.agreement_rate == network.consensus_agreement_pct == pytest.approx(expected, abs=0.005)
    assert acc.agreement_tolerance == limits.AGREEMENT_TOLERANCE


def test_hotspots_are_listed_in_one_order_by_the_statistics_and_the_facade(conn, db_conninfo):
    now = datetime.now(timezone.utc)
    # equal counts in several cells: the order must break ties the same way (most recent first)
    for cell, (count, minutes) in enumerate([(3, 50), (3, 10), (5, 30), (3, 30), (1, 5)]):
        for n in range(count):
            conn.execute(
                """INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", severity_level,
                                             confidence_score, verification_status)
                   VALUES (1, 'theft', %(lat)s, -74.005, %(at)s, %(severity)s, 0.9, 'verified')""",
                {"lat": 40.005 + 0.1 * cell, "at": now - timedelta(minutes=minutes + n), "severity": 5 - cell})

    async def body(aconn):
        return await CrimeEventRepository(aconn).hotspots(7, limit=4)

    facade = run_with_conn(db_conninfo, body)
    command = stats.top_hotspots(conn, limit=4, days=7)
    assert [(h.latitude, h.longitude, h.incident_count, h.last_seen) for h in facade] == \
        [(c[0], c[1], c[2], c[5]) for c in command]
    assert [h.incident_count for h in facade] == [5, 3, 3, 3]
    # ties on the count: the most recent first (not the highest severity, which would put the oldest cell first)
    assert facade[1].last_seen > facade[2].last_seen > facade[3].last_seen


def test_running_means_of_rounds_one_by_one_and_in_bulk_agree(conn, db_conninfo):
    rounds = [{"integrity": 0.9, "clustering": 0.8, "novelty": 0.4, "quality": 0.7},
              {"integrity": 0.2, "clustering": 0.3, "novelty": 0.1, "quality": 0.5},
              {"integrity": 1.0, "clustering": 1.0, "novelty": 0.9, "quality": 0.95}]

    async def body(aconn):
        miners, validators = MinerRepository(aconn), ValidatorRepository(aconn)
        for scores in rounds:  # uid 1: one round at a time through the repository
            one_by_one = await miners.record_round(1, "hk-1", scores)
            await validators.record_validation(1, "hk-v1", agreed=True, score_given=overall_score(scores))
        # uid 2: the first round through the repository, the rest in bulk as the synthetic loader adds them
        await miners.record_round(2, "hk-2", rounds[0])
        await validators.record_validation(2, "hk-v2", agreed=True, score_given=overall_score(rounds[0]))
        return one_by_one

    one_by_one = run_with_conn(db_conninfo, body)
    means = [overall_score(s) for s in rounds[1:]]
    conn.execute(loader.ADD_MINER_ROUNDS, {"uid": 2, "rounds": len(means), "successful": 1, "score_sum": sum(means),
                                           "last_score": means[-1], "last_active": datetime.now(timezone.utc)})
    conn.execute(loader.ADD_VALIDATIONS, {"uid": 2, "total": len(means), "agreements": len(means),
                                          "score_sum": sum(means), "last_active": datetime.now(timezone.utc)})
    reference = statistics.fmean(overall_score(s) for s in rounds)
    miner = dict(conn.execute("SELECT miner_uid, avg_overall_score FROM miner_performance").fetchall())
    validator = dict(conn.execute("SELECT validator_uid, avg_score_given FROM validator_performance").fetchall())
    assert one_by_one.avg_overall_score == pytest.approx(reference, abs=1e-9)
    assert miner[1] == pytest.approx(miner[2], abs=1e-9) == pytest.approx(reference, abs=1e-9)
    assert validator[1] == pytest.approx(validator[2], abs=1e-9) == pytest.approx(reference, abs=1e-9)


def test_the_schema_and_the_limits_module_name_the_same_hotspot_cell_and_threshold(conn):
    from luminar_store.limits import DEFAULT_CELL_M, HOTSPOT_MIN_INCIDENTS

    assert conn.execute("SELECT luminar_hotspot_min_incidents()").fetchone()[0] == HOTSPOT_MIN_INCIDENTS
    default = conn.execute("SELECT pg_get_function_arguments('crime_hotspots_since(integer, double precision, "
                           "integer, integer)'::regprocedure)").fetchone()[0]
    assert f"p_cell_m double precision DEFAULT {DEFAULT_CELL_M:g}" in default, default
    view = conn.execute("SELECT pg_get_viewdef('crime_hotspots')").fetchone()[0]
    assert f"crime_hotspots_since(7, ({DEFAULT_CELL_M:g})::double precision, luminar_hotspot_min_incidents())" in view
