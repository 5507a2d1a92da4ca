"""The reference node code's calls, names and habits, answered by the facade on a real database.

The nodes were written against the reference access layer (``database/access.py`` of the network's repository):
its argument orders, its module functions, ``DatabaseTransaction``, ``DatabaseStats``' fields, ``asyncio.run``
called twice on the module's ``db``, ``from database.access import db`` (through ``luminar-db node-shim``) and the
Makefile targets its operators know.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from _async import clock, run

from luminar_store import access
from luminar_store.access import DatabaseTransaction, LuminarDB
from luminar_store.compat import SHIM_FILES, SHIM_NAMES
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.models import DatabaseStats
from luminar_store.repositories import raw_reports

ROOT = Path(__file__).resolve().parents[1]
NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
SCORES = {"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92}


def report(n: int, **over) -> dict:
    """A report as a validator builds it (the protocol's names: ``report_id`` is the source id)."""
    data = {"report_id": f"LMR_20250101_{n:08d}", "text_description": f"Report {n}: a bicycle was stolen",
            "geotag": {"lat": 40.71 + n * 1e-4, "lng": -74.0}, "timestamp": NOW - timedelta(minutes=100 - n),
            "user_id": f"user-{n}"}
    data.update(over)
    return data


def event(**over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": 40.71, "lng": -74.0}, "timestamp": NOW, "severity": 3,
            "confidence_score": 0.8}
    data.update(over)
    return data


def facade_run(settings, body):
    """Run ``body(db)`` on a fresh ``LuminarDB`` of ``settings``, closing it after."""
    db = LuminarDB(settings)

    async def go():
        try:
            return await body(db)
        finally:
            await db.close()

    return run(go())


def node_env(settings, **extra: str) -> dict[str, str]:
    """The environment of a node process pointed at ``settings``' database (nothing of the developer's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUMINAR") and k != "DATABASE_URL"}
    env.update({"LUMINAR_ENV": "testing", "LUMINAR_DB_HOST": settings.host, "LUMINAR_DB_PORT": str(settings.port),
                "LUMINAR_DB_NAME": settings.name, "LUMINAR_DB_USER": settings.user,
                "LUMINAR_DB_PASSWORD": settings.password or "", "PYTHONDEVMODE": "1", **extra})
    return env


# -- update_event_verification: the reference's order and names ---------------------------------------------------
def test_update_event_verification_takes_the_references_order_and_keywords(db_settings):
    async def body(db):
        eid = await db.store_crime_event(event(), miner_uid=1)
        positional = await db.update_event_verification(eid, 9, "verified", 0.93)
        keywords = await db.update_event_verification(event_id=eid, validator_uid=11, verification_status="disputed",
                                                      score=0.4)
        with pytest.raises(TypeError):
            await db.update_event_verification(eid, status="verified", validator_uid=9, score=0.9)
        with pytest.raises(ValidationError) as old_order:  # the former (event_id, status, uid) order is refused
            await db.update_event_verification(eid, "verified", 9, 0.9)
        with pytest.raises(NotFoundError):
            await db.update_event_verification(uuid.uuid4(), 9, "verified", 0.9)
        return positional, keywords, old_order.value

    positional, keywords, old_order = facade_run(db_settings, body)
    assert (positional.verification_status, positional.validator_uid, positional.verification_score) == \
        ("verified", 9, 0.93)
    assert (keywords["verification_status"], keywords["validator_uid"], keywords["verification_score"]) == \
        ("disputed", 11, 0.4)
    assert old_order.field in ("verification_status", "validator_uid")  # nothing stored either way


# -- get_pending_reports / update_report_status ------------------------------------------------------------------
def test_get_pending_reports_reads_the_oldest_pending_without_claiming(db_settings):
    async def body(db):
        ids = [await db.store_raw_report(report(n)) for n in (5, 1, 3, 2, 4)]
        await db.mark_report_processed(ids[2])  # n=3 leaves the queue
        first = await db.get_pending_reports(limit=3)
        again = await db.get_pending_reports()
        return first, again

    first, again = facade_run(db_settings, body)
    assert [r["external_id"] for r in first] == ["LMR_20250101_00000001", "LMR_20250101_00000002",
                                                 "LMR_20250101_00000004"]
    assert [r.external_id for r in again] == [r.external_id for r in first] + ["LMR_20250101_00000005"]
    assert all(r.status == "pending" and r.claimed_at is None and r.processing_attempts == 0 for r in again)
    assert dict(first[0])["report_id"] == first[0].report_id


def test_get_pending_reports_refuses_a_bad_limit_before_any_sql(db_settings):
    async def body(db):
        for bad in (0, -1, 10_001, "50", 2.5):
            with pytest.raises(ValidationError) as refused:
                await db.get_pending_reports(limit=bad)
            assert refused.value.field == "limit"

    facade_run(db_settings, body)


def test_update_report_status_processing_is_a_claim_like_claim_reports(db_settings, conn):
    async def body(db):
        by_uuid = await db.store_raw_report(report(1))
        await db.store_raw_report(report(2))
        await db.store_raw_report(report(3))
        claimed = await db.update_report_status("LMR_20250101_00000002", "processing", miner_uid=7)
        batch = await db.claim_reports(miner_uid=8, limit=10)  # claim_reports passes over it
        with pytest.raises(ConflictError) as twice:
            await db.update_report_status("LMR_20250101_00000002", "processing", miner_uid=9)
        with pytest.raises(ConflictError):
            await db.update_report_status(by_uuid, "processing")  # claim_reports took it
        return claimed, batch, twice.value

    claimed, batch, twice = facade_run(db_settings, body)
    assert [r.external_id for r in batch] == ["LMR_20250101_00000001", "LMR_20250101_00000003"]
    assert (claimed.status, claimed.claimed_by, claimed.processing_attempts) == ("processing", 7, 1)
    assert claimed.claimed_at is not None
    assert "LMR_20250101_00000002" in str(twice) and "processing" in str(twice)
    # the same claim fields as claim_reports set
    rows = conn.execute("SELECT external_id, status, claimed_by, processing_attempts, claimed_at IS NOT NULL "
                        "FROM raw_incident_reports ORDER BY external_id").fetchall()
    assert rows == [("LMR_20250101_00000001", "processing", 8, 1, True),
                    ("LMR_20250101_00000002", "processing", 7, 1, True),
                    ("LMR_20250101_00000003", "processing", 8, 1, True)]


def test_the_single_claim_and_claim_reports_share_one_definition():
    assert raw_reports.CLAIM_SET in raw_reports.CLAIM_REPORTS
    assert raw_reports.CLAIM_SET in raw_reports.CLAIM_REPORT
    assert "'processing'" not in raw_reports.CLAIM_REPORTS.replace(raw_reports.CLAIM_SET, "")
    assert "'processing'" not in raw_reports.CLAIM_REPORT.replace(raw_reports.CLAIM_SET, "")


def test_update_report_status_settles_like_the_mark_calls_by_either_id(db_settings):
    async def body(db):
        ids = [await db.store_raw_report(report(n)) for n in range(1, 6)]
        anonymous = await db.update_report_status(str(ids[0]), "processing")  # our id as text, no miner named
        processed = await db.update_report_status("LMR_20250101_00000001", "processed")
        failed = await db.update_report_status(ids[1], "failed")
        failed_why = await db.update_report_status("LMR_20250101_00000003", "failed", error_message="no location")
        await db.update_report_status(ids[3], "processing", miner_uid=4)
        released = await db.update_report_status(ids[3], "pending")
        rejected = await db.update_report_status("LMR_20250101_00000005", "rejected")
        return anonymous, processed, failed, failed_why, released, rejected

    anonymous, processed, failed, failed_why, released, rejected = facade_run(db_settings, body)
    assert (anonymous.status, anonymous.claimed_by, anonymous.processing_attempts) == ("processing", None, 1)
    assert processed.status == "processed" and processed.processed_at is not None and processed.error_message is None
    assert (failed.status, failed.error_message) == ("failed", raw_reports.DEFAULT_FAILURE_MESSAGE)
    assert (failed_why.status, failed_why.error_message) == ("failed", "no location")
    assert (released.status, released.claimed_by, released.claimed_at, released.processing_attempts) == \
        ("pending", None, None, 1)
    assert rejected.status == "rejected"


def test_update_report_status_unknown_reports_and_bad_arguments(db_settings):
    async def body(db):
        await db.store_raw_report(report(1))
        for missing in (uuid.uuid4(), str(uuid.uuid4()), "LMR_NOPE"):
            for status in ("processing", "processed", "failed", "pending"):
                with pytest.raises(NotFoundError):
                    await db.update_report_status(missing, status)
        refusals = [("LMR_20250101_00000001", "done", "status"), (42, "processed", "report_id"),
                    ("", "processed", "report_id"), ("x" * 201, "processed", "report_id")]
        for report_id, status, field in refusals:
            with pytest.raises(ValidationError) as refused:
                await db.update_report_status(report_id, status)
            assert refused.value.field == field
        with pytest.raises(ValidationError) as bad_uid:
            await db.update_report_status("LMR_20250101_00000001", "processing", miner_uid=-1)
        with pytest.raises(ValidationError) as empty_error:
            await db.update_report_status("LMR_20250101_00000001", "failed", error_message=" ")
        return bad_uid.value.field, empty_error.value.field, await db.get_pending_reports()

    uid_field, error_field, pending = facade_run(db_settings, body)
    assert (uid_field, error_field) == ("miner_uid", "error_message")
    assert [(r.status, r.processing_attempts) for r in pending] == [("pending", 0)]  # nothing changed


def test_a_report_id_that_is_a_uuid_wins_over_an_external_id_spelled_the_same(db_settings):
    async def body(db):
        first = await db.store_raw_report(report(1))
        await db.store_raw_report(report(2, report_id=None, external_id=str(first)))  # a source id like a UUID
        by_text = await db.update_report_status(str(first), "processed")
        other = await db.update_report_status(uuid.UUID(str(first)), "pending")
        return first, by_text, other

    first, by_text, other = facade_run(db_settings, body)
    assert by_text.report_id == other.report_id == first


# -- module functions and DatabaseTransaction -------------------------------------------------------------------
@pytest.fixture
def module_db(db_settings):
    """The module's ``db`` pointed at the test database for one test, then back to its lazy default."""
    access.db.configure(db_settings)
    yield access.db
    run(access.db.close())
    access.db.configure(None)


def test_module_functions_act_on_the_module_db(module_db):
    async def go():
        await access.initialize_database()
        ok = await access.health_check()
        await access.close_database()
        return ok, module_db.database.pool_stats()

    ok, pools_after_close = run(go())
    assert ok is True and pools_after_close == {}


def test_database_transaction_commits_on_success_and_rolls_back_on_error(module_db, conn):
    async def go():
        rid = await module_db.store_raw_report(report(1))
        async with DatabaseTransaction() as tx:
            assert isinstance(tx, psycopg.AsyncConnection)
            cur = await tx.execute("UPDATE raw_incident_reports SET status = %s WHERE external_id = %s",
                                   ("rejected", "LMR_20250101_00000001"))
            assert cur.rowcount == 1
            row = await (await tx.execute("SELECT status FROM raw_incident_reports WHERE report_id = %(id)s",
                                          {"id": rid})).fetchone()
            assert row == ("rejected",)
        with pytest.raises(RuntimeError):
            async with DatabaseTransaction() as tx:
                await tx.execute("UPDATE raw_incident_reports SET status = 'failed'")
                await tx.execute("DELETE FROM raw_incident_reports")
                raise RuntimeError("the node's own error")
        return rid

    rid = run(go())
    assert conn.execute("SELECT report_id, status FROM raw_incident_reports").fetchall() == [(rid, "rejected")]


def test_database_transaction_composes_repositories_and_takes_another_facade(db_settings, conn):
    from luminar_store.repositories.crime_events import CrimeEventRepository
    from luminar_store.repositories.raw_reports import RawReportRepository

    db = LuminarDB(db_settings)

    async def go():
        with pytest.raises(NotFoundError):
            async with DatabaseTransaction(db) as tx:
                await RawReportRepository(tx).store(report(1))
                await CrimeEventRepository(tx).store(event(cluster_id=uuid.uuid4()), miner_uid=1)  # unknown cluster
        async with DatabaseTransaction(db) as tx:
            rid = await RawReportRepository(tx).store(report(2))
            await CrimeEventRepository(tx).store(event(related_reports=[rid]), miner_uid=1)
        await db.close()

    run(go())
    assert conn.execute("SELECT external_id FROM raw_incident_reports").fetchall() == [("LMR_20250101_00000002",)]
    assert conn.execute("SELECT count(*) FROM crime_events").fetchone() == (1,)


# -- DatabaseStats ------------------------------------------------------------------------------------------------
def test_database_stats_answer_the_references_fields(db_settings, conn):
    async def body(db):
        empty = await db.get_database_stats()
        a, b, c = [await db.store_raw_report(report(n)) for n in (1, 2, 3)]
        e1 = await db.store_crime_event(event(related_reports=[a]), miner_uid=1)
        e2 = await db.store_crime_event(event(related_reports=[a, b]), miner_uid=2)
        e3 = await db.store_crime_event(event(related_reports=[b]), miner_uid=2)
        await db.store_crime_event(event(), miner_uid=3)  # an event from no stored report: not measured
        await db.update_event_verification(e1, 5, "verified", 0.9)
        await db.update_miner_performance(1, "hk-1", SCORES)
        return empty, (a, b, c), (e1, e2, e3)

    empty, (a, b, c), (e1, e2, e3) = facade_run(db_settings, body)
    assert empty.avg_processing_time == 0.0 and empty.total_reports == 0 and empty.processed_events == 0
    arrived = datetime(2026, 1, 1, 12, 0, tzinfo=NOW.tzinfo)
    for rid in (a, b, c):  # c has no event: not measured
        conn.execute("UPDATE raw_incident_reports SET created_at = %s WHERE report_id = %s", (arrived, rid))
    for eid, seconds in ((e1, 40), (e2, 10), (e3, 70)):
        conn.execute("UPDATE crime_events SET created_at = %s WHERE event_id = %s",
                     (arrived + timedelta(seconds=seconds), eid))
    # a is in e1 (40 s) and e2 (10 s), b in e2 (10 s) and e3 (70 s): both first appear in e2, after 10 s
    stats = facade_run(db_settings, lambda db: db.get_database_stats())
    assert stats.avg_processing_time == pytest.approx(10.0)
    conn.execute("UPDATE crime_events SET created_at = %s WHERE event_id = %s", (arrived + timedelta(seconds=90), e2))
    stats = facade_run(db_settings, lambda db: db.get_database_stats())
    assert stats.avg_processing_time == pytest.approx((40 + 70) / 2)  # a: e1 at 40 s; b: e3 at 70 s
    assert isinstance(stats, DatabaseStats)
    assert (stats.total_reports, stats.processed_events, stats.active_miners, stats.active_validators) == (3, 4, 1, 0)
    assert stats.verification_rate == 25.0
    assert (stats["total_reports"], stats["processed_events"]) == (stats.raw_reports, stats.crime_events) == (3, 4)
    as_dict = dict(stats)
    for name in ("total_reports", "processed_events", "active_miners", "active_validators", "verification_rate",
                 "avg_processing_time", "raw_reports", "pending_reports", "crime_events", "verified_events"):
        assert name in as_dict and name in stats


# -- update_miner_performance: total / final ----------------------------------------------------------------------
def test_scores_total_or_final_is_the_rounds_overall_score(db_settings):
    async def body(db):
        mean = await db.update_miner_performance(1, "hk-1", SCORES)
        total = await db.update_miner_performance(2, "hk-2", {**SCORES, "total": 0.3})
        final = await db.update_miner_performance(3, "hk-3", {**SCORES, "final": 0.6})
        both = await db.update_miner_performance(4, "hk-4", {**SCORES, "total": 0.7, "final": 0.7})
        refused = []
        for scores, field in [({**SCORES, "total": 0.7, "final": 0.71}, "scores.final"),
                              ({**SCORES, "total": 1.5}, "scores.total"),
                              ({**SCORES, "final": "high"}, "scores.final"),
                              ({"integrity": 0.9, "total": 0.9}, "scores.clustering"),
                              ({**SCORES, "total": 0.5, "weighted": 0.5}, "scores")]:
            with pytest.raises(ValidationError) as error:
                await db.update_miner_performance(5, "hk-5", scores)
            refused.append(error.value.field == field)
        return mean, total, final, both, refused, await db.get_miner_stats(5)

    mean, total, final, both, refused, never = facade_run(db_settings, body)
    assert mean.overall_score == pytest.approx(sum(SCORES.values()) / 4)
    assert (total.overall_score, total.successful_rounds, total.success_rate) == (0.3, 0, 0.0)  # mean would pass
    assert total.integrity_score == 0.95  # the four are still stored
    assert (final.overall_score, final.successful_rounds) == (0.6, 1)
    assert both.overall_score == 0.7
    assert refused == [True] * 5 and never is None


# -- asyncio.run twice, as the reference Makefile's db-stats ------------------------------------------------------
def test_module_db_survives_successive_asyncio_run_calls_quietly(db_settings, tmp_path):
    async def body(db):
        await db.store_raw_report(report(1))

    facade_run(db_settings, body)
    code = ("import asyncio; from luminar_store.access import db; asyncio.run(db.initialize()); "
            "stats = asyncio.run(db.get_database_stats()); "
            "print(f'Reports: {stats.total_reports}, Events: {stats.processed_events}, Miners: {stats.active_miners}')"
            "; print(asyncio.run(db.health_check())); asyncio.run(db.close())")
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=tmp_path, env=node_env(db_settings),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Reports: 1, Events: 0, Miners: 0\nTrue\n"
    assert done.stderr == ""


# -- luminar-db node-shim -------------------------------------------------------------------------------------------
def test_node_shim_makes_from_database_access_import_db_work(cli_run, db_settings, tmp_path):
    node = tmp_path / "LUM-subnet"
    first = cli_run(["node-shim", str(node)])
    assert first.exit_code == 0, first.output
    assert f"wrote {node / 'database' / 'access.py'}" in first.output
    again = cli_run(["node-shim", str(node)])
    assert again.exit_code == 0 and again.output.count("unchanged ") == 2
    for relative, text in SHIM_FILES.items():
        assert (node / relative).read_text(encoding="utf-8") == text
    code = ("import asyncio\n"
            "from database.access import db, DatabaseStats, DatabaseTransaction, initialize_database, "
            "close_database, health_check\n"
            "import database.access as shim, luminar_store.access as real\n"
            "assert all(getattr(shim, n) is getattr(real, n) for n in shim.__all__)\n"
            "async def main():\n"
            "    await initialize_database()\n"
            "    assert await health_check()\n"
            "    async with DatabaseTransaction() as tx:\n"
            "        await tx.execute('SELECT 1')\n"
            "    stats = await db.get_database_stats()\n"
            "    await close_database()\n"
            "    return stats\n"
            "stats = asyncio.run(main())\n"
            "assert isinstance(stats, DatabaseStats)\n"
            "print(stats.total_reports, stats.processed_events, sorted(shim.__all__))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=node, env=node_env(db_settings), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"0 0 {sorted(SHIM_NAMES)}\n" and done.stderr == ""


def test_node_shim_refuses_to_overwrite_other_files_unless_forced(cli_run, tmp_path):
    node = tmp_path / "node"
    (node / "database").mkdir(parents=True)
    theirs = node / "database" / "access.py"
    theirs.write_text("import asyncpg  # the reference's own module\n", encoding="utf-8")
    refused = cli_run(["node-shim", str(node)])
    assert refused.exit_code != 0 and str(theirs) in refused.output and "--force" in refused.output
    assert not (node / "database" / "__init__.py").exists()  # nothing written
    assert theirs.read_text(encoding="utf-8").startswith("import asyncpg")
    forced = cli_run(["node-shim", str(node), "--force"])
    assert forced.exit_code == 0, forced.output
    assert f"replaced {theirs}" in forced.output and f"wrote {node / 'database' / '__init__.py'}" in forced.output
    assert theirs.read_text(encoding="utf-8") == SHIM_FILES["database/access.py"]


# -- Makefile targets the reference's operators know ---------------------------------------------------------------
@pytest.mark.parametrize("target, expected", [
    ("db-setup", ["scripts/setup_database.py setup"]),
    ("quick-start", ["luminar-db db start", "scripts/setup_database.py setup", "luminar-db db status"]),
    ("logs", ["luminar-db db logs --follow"]),
])
def test_make_targets_of_the_reference_dry_run(target, expected):
    done = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=ROOT, capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "LUMINAR"))},
                          timeout=60)
    assert done.returncode == 0, done.stderr
    positions = [done.stdout.find(step) for step in expected]
    assert -1 not in positions and positions == sorted(positions), done.stdout
    assert "PASSWORD=" not in done.stdout and "dev_password" not in done.stdout
    listed = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    assert f"  {target} " in listed
    phony = ROOT.joinpath("Makefile").read_text(encoding="utf-8").split(".PHONY:", 1)[1].split("\n\n", 1)[0]
    assert target in phony.split()


def test_db_logs_shows_the_embedded_clusters_log(cli_run, tmp_path):
    log = tmp_path / "clusters" / "local" / "postgresql.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {n}\n" for n in range(1, 201)), encoding="utf-8")
    env = {"LUMINAR_ENV": "local", "LUMINAR_LOCAL_DIR": str(tmp_path / "clusters")}
    shown = cli_run(["db", "logs", "--backend", "embedded", "--lines", "3"], env)
    assert shown.exit_code == 0 and shown.output == "line 198\nline 199\nline 200\n"
    missing = cli_run(["db", "logs", "--backend", "embedded"], {**env, "LUMINAR_LOCAL_DIR": str(tmp_path / "none")})
    assert missing.exit_code != 0 and "make db-start" in missing.output
