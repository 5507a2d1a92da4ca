"""Claims are leases: an expired claim returns to the queue, a claim commits only with its rows read, and reports
survive killed claimers.

The clock is never waited for: a claim expires because the test moves its ``claimed_at`` back with SQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from _async import clock, eventually, run
from _cli import cli_env, one_line_error

from luminar_store.access import LuminarDB
from luminar_store.config import load_settings
from luminar_store.errors import ConfigError, LuminarError, ValidationError
from luminar_store.limits import DEFAULT_CLAIM_LEASE_MINUTES
from luminar_store.repositories.raw_reports import RawReportRepository

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

LOGGER = "luminar_store.repositories.raw_reports"


def report(n: int) -> dict:
    return {"external_id": f"lease-{n}", "description": f"Report {n}: a window was broken",
            "geotag": {"lat": 40.71 + n * 1e-4, "lng": -74.0}, "timestamp": NOW - timedelta(minutes=5000 - n)}


def age_claims(conn: psycopg.Connection, minutes: int, *, miner_uid: int | None = None) -> int:
    """Move the claims (of one miner, or all) ``minutes`` into the past; returns how many were moved."""
    cur = conn.execute("UPDATE raw_incident_reports SET claimed_at = claimed_at - make_interval(mins => %(m)s) "
                       "WHERE status = 'processing' AND (%(uid)s::int IS NULL OR claimed_by = %(uid)s)",
                       {"m": minutes, "uid": miner_uid})
    return cur.rowcount


def statuses(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM raw_incident_reports GROUP BY status").fetchall())


async def with_repo(settings, work):
    async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as conn:
        return await work(RawReportRepository(conn))


def test_an_expired_claim_returns_on_the_next_claim_to_any_miner_and_a_fresh_one_does_not(db_settings, conn,
                                                                                           caplog):
    async def first(repo):
        await repo.store_many([report(n) for n in range(6)])
        return await repo.claim(miner_uid=1, limit=3), await repo.claim(miner_uid=2, limit=3)

    mine, theirs = run(with_repo(db_settings, first))
    assert all(r.claimed_at is not None for r in mine + theirs)
    assert age_claims(conn, 31, miner_uid=1) == 3  # past the 30-minute lease
    assert age_claims(conn, 29, miner_uid=2) == 3  # within it

    caplog.set_level(logging.WARNING, logger=LOGGER)
    again = run(with_repo(db_settings, lambda repo: repo.claim(miner_uid=3, limit=10, lease_minutes=30)))
    assert [r.report_id for r in again] == [r.report_id for r in mine]  # miner 1's, oldest first; none of 2's
    assert all(r.claimed_by == 3 and r.processing_attempts == 2 for r in again)  # attempts kept, one more
    assert conn.execute("SELECT count(*) FROM raw_incident_reports WHERE claimed_by = 2 AND status = 'processing'"
                        ).fetchone()[0] == 3
    taken_back = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(taken_back) == 1 and taken_back[0].args[0] == 3, [r.getMessage() for r in caplog.records]

    caplog.clear()
    assert run(with_repo(db_settings, lambda repo: repo.claim(miner_uid=4, limit=10))) == []
    assert not [r for r in caplog.records if r.name == LOGGER]  # nothing expired: no record


def test_the_facade_uses_the_lease_setting(db_settings, conn):
    short = dataclasses.replace(db_settings, claim_lease_minutes=5)

    async def go():
        facade = LuminarDB(short)
        try:
            await facade.store_raw_reports([report(n) for n in range(4)])
            first = await facade.claim_reports(miner_uid=1, limit=4)
            age_claims(conn, 4)
            within = await facade.claim_reports(miner_uid=2, limit=4)
            age_claims(conn, 2)  # now 6 minutes old: past the 5-minute lease
            after = await facade.claim_reports(miner_uid=2, limit=4)
            return first, within, after
        finally:
            await facade.close()

    first, within, after = run(go())
    assert len(first) == 4 and within == []
    assert {r.report_id for r in after} == {r.report_id for r in first}
    assert statuses(conn) == {"processing": 4}


def test_release_stale_claims_releases_and_counts(db_settings, conn):
    async def go():
        facade = LuminarDB(db_settings)
        try:
            await facade.store_raw_reports([report(n) for n in range(5)])
            claimed = await facade.claim_reports(miner_uid=7, limit=5)
            fresh = await facade.release_stale_claims()
            conn.execute("UPDATE raw_incident_reports SET claimed_at = now() - interval '45 minutes' "
                         "WHERE report_id = ANY(%s)", ([r.report_id for r in claimed[:2]],))
            conn.execute("UPDATE raw_incident_reports SET claimed_at = now() - interval '20 minutes' "
                         "WHERE report_id = %s", (claimed[2].report_id,))
            by_lease = await facade.release_stale_claims()  # the default lease: 30 minutes
            by_argument = await facade.release_stale_claims(older_than_minutes=10)
            with pytest.raises(ValidationError, match="older_than_minutes"):
                await facade.release_stale_claims(older_than_minutes=0)
            return fresh, by_lease, by_argument
        finally:
            await facade.close()

    assert run(go()) == (0, 2, 1)
    assert statuses(conn) == {"pending": 3, "processing": 2}
    rows = conn.execute("SELECT processing_attempts, claimed_by, claimed_at FROM raw_incident_reports "
                        "WHERE status = 'pending'").fetchall()
    assert rows == [(1, None, None)] * 3  # released, attempts kept


def test_the_command_names_its_target_and_prints_how_many(db_settings, conn, cli_run):
    run(with_repo(db_settings, lambda repo: repo.store_many([report(n) for n in range(3)])))
    run(with_repo(db_settings, lambda repo: repo.claim(miner_uid=5, limit=3)))
    age_claims(conn, 90)

    kept = cli_run(["reports", "release-claims", "--older-than", "120"], cli_env(db_settings))
    assert kept.exit_code == 0, kept.output
    assert f"Target: database {db_settings.name} on {db_settings.host}:{db_settings.port} (environment testing)" \
        in kept.output
    assert "Released 0 claim(s) older than 120 minutes" in kept.output
    released = cli_run(["reports", "release-claims"], cli_env(db_settings, LUMINAR_CLAIM_LEASE_MINUTES="60"))
    assert released.exit_code == 0, released.output
    assert "Released 3 claim(s) older than 60 minutes" in released.output
    assert statuses(conn) == {"pending": 3}
    if db_settings.password:
        assert db_settings.password not in kept.output + released.output

    helped = cli_run(["reports", "release-claims", "--help"])
    assert "lease" in helped.output and "Example: luminar-db reports release-claims" in helped.output


def test_the_command_reports_a_down_server_in_one_line(db_settings, cli_run):
    down = dataclasses.replace(db_settings, port=1)
    result = cli_run(["reports", "release-claims"], cli_env(down))
    assert result.exit_code == 2
    assert "cannot reach the database" in one_line_error(result) and "Traceback" not in result.output


def test_a_claim_by_update_report_status_carries_its_time_and_expires(db_settings, conn):
    async def go():
        facade = LuminarDB(db_settings)
        try:
            rid = await facade.store_raw_report(report(1))
            claimed = await facade.update_report_status("lease-1", "processing", miner_uid=8)
            before = await facade.claim_reports(miner_uid=9)
            age_claims(conn, 31)
            after = await facade.claim_reports(miner_uid=9)
            return rid, claimed, before, after
        finally:
            await facade.close()

    rid, claimed, before, after = run(go())
    assert claimed.status == "processing" and claimed.claimed_by == 8 and claimed.claimed_at is not None
    assert before == []
    assert [r.report_id for r in after] == [rid] and after[0].claimed_by == 9 and after[0].processing_attempts == 2


def test_a_report_set_processing_by_plain_sql_gets_a_claim_time_and_expires(db_settings, conn):
    run(with_repo(db_settings, lambda repo: repo.store(report(1))))
    conn.execute("UPDATE raw_incident_reports SET status = 'processing' WHERE external_id = 'lease-1'")
    assert conn.execute("SELECT claimed_at IS NOT NULL FROM raw_incident_reports").fetchone()[0]
    age_claims(conn, 31)
    again = run(with_repo(db_settings, lambda repo: repo.claim(miner_uid=2)))
    assert [r.external_id for r in again] == ["lease-1"]


def _store_unreadable(conn: psycopg.Connection) -> None:
    """Three readable reports and, oldest of all, one whose "timestamp" (a BC date) no Python datetime can hold:
    written by SQL, past the checks the data layer makes, as a row from before them could be (the table's own
    CHECK, added by the times_in_range migration, is dropped first)."""
    conn.execute("ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_incident_reports_timestamp_in_range")
    conn.execute("""INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "timestamp")
                    VALUES ('unreadable', 'stored before the checks', 40.7, -74.0, '0001-01-01 00:00:00+00 BC')""")


@pytest.mark.parametrize("mode", ["pool", "own connection", "caller's transaction", "not autocommit"])
def test_a_claim_whose_rows_cannot_be_read_leaves_nothing_claimed(db_settings, conn, mode):
    run(with_repo(db_settings, lambda repo: repo.store_many([report(n) for n in range(3)])))
    _store_unreadable(conn)
    with pytest.raises(psycopg.DataError):  # it is refused by Python's datetime, not by the server
        conn.execute("SELECT \"timestamp\" FROM raw_incident_reports WHERE external_id = 'unreadable'").fetchone()

    async def go() -> object:
        if mode == "pool":
            facade = LuminarDB(db_settings)
            try:
                with pytest.raises((LuminarError, psycopg.Error)) as failed:
                    await facade.claim_reports(miner_uid=1, limit=10)
                return failed.value
            finally:
                await facade.close()
        if mode == "not autocommit":  # the caller's implicit transaction: its work commits, the claim does not
            async with await psycopg.AsyncConnection.connect(db_settings.conninfo()) as c:
                await c.execute("UPDATE raw_incident_reports SET error_message = 'seen' WHERE external_id = 'lease-0'")
                with pytest.raises((LuminarError, psycopg.Error)) as failed:
                    await RawReportRepository(c).claim(miner_uid=1, limit=10)
                await c.execute("UPDATE raw_incident_reports SET error_message = 'seen' WHERE external_id = 'lease-1'")
                await c.commit()
            return failed.value
        async with await psycopg.AsyncConnection.connect(db_settings.conninfo(), autocommit=True) as c:
            if mode == "own connection":
                with pytest.raises((LuminarError, psycopg.Error)) as failed:
                    await RawReportRepository(c).claim(miner_uid=1, limit=10)
                return failed.value
            async with c.transaction():  # the caller's: its own work before and after the failed claim commits
                await c.execute("UPDATE raw_incident_reports SET error_message = 'seen' WHERE external_id = 'lease-0'")
                with pytest.raises((LuminarError, psycopg.Error)) as failed:
                    await RawReportRepository(c).claim(miner_uid=1, limit=10)
                await c.execute("UPDATE raw_incident_reports SET error_message = 'seen' WHERE external_id = 'lease-1'")
            return failed.value

    run(go())
    assert statuses(conn) == {"pending": 4}
    assert conn.execute("SELECT count(*) FROM raw_incident_reports WHERE claimed_by IS NOT NULL OR "
                        "claimed_at IS NOT NULL OR processing_attempts <> 0").fetchone()[0] == 0
    if mode in ("caller's transaction", "not autocommit"):
        assert conn.execute("SELECT count(*) FROM raw_incident_reports WHERE error_message = 'seen'"
                            ).fetchone()[0] == 2


def test_killed_claimers_strand_nothing_past_the_lease(db_settings, conn):
    total, claimers, kills_wanted = 400, 6, 5
    settings = dataclasses.replace(db_settings, pool_size=2, max_overflow=6)

    async def go() -> tuple[dict[uuid.UUID, int], int]:
        facade = LuminarDB(settings)
        delivered: dict[uuid.UUID, int] = {}
        finished = False
        kills = 0
        try:
            await facade.store_raw_reports([report(n) for n in range(total)])

            async def claimer(uid: int) -> None:
                empty_in_a_row = failed_in_a_row = 0
                while empty_in_a_row < 2:  # two empty claims: nothing pending that a kill may have put back
                    try:
                        batch = await facade.claim_reports(miner_uid=uid, limit=4)
                    except LuminarError:
                        # A killed connection: the claim rolled back, or committed unseen (its lease brings it back).
                        failed_in_a_row += 1
                        assert failed_in_a_row < 50, "the claims keep failing: the server is not coming back"
                        continue
                    failed_in_a_row = 0
                    empty_in_a_row = 0 if batch else empty_in_a_row + 1
                    for r in batch:
                        delivered[r.report_id] = delivered.get(r.report_id, 0) + 1
                        try:
                            await facade.mark_report_processed(r.report_id)
                        except LuminarError:
                            pass  # stays 'processing': its lease brings it back

            async def killer() -> int:
                done = 0
                async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as side:

                    async def kill_at(share: int) -> bool:
                        """True once the claimers are done, or once ``share`` reports are out and a kill hit."""
                        if finished:
                            return True
                        if len(delivered) < share:
                            return False
                        # The pool's backends: every client of this database but this one and the test's own.
                        cur = await side.execute(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> %s "
                            "AND backend_type = 'client backend'", (conn.info.backend_pid,))
                        return (await cur.fetchone())[0] > 0

                    for k in range(1, kills_wanted + 1):
                        # Kill at fixed shares of the work, while claims are in flight (counts, not durations).
                        share = total * k // (kills_wanted + 2)
                        await eventually(lambda share=share: kill_at(share), timeout=120, every=0.005)
                        if finished:
                            break
                        done += 1
                return done

            kill_task = asyncio.create_task(killer())
            try:
                await asyncio.gather(*(claimer(uid) for uid in range(1, claimers + 1)))
            finally:
                finished = True
                kills = await kill_task

            # Drain: every claim still out is past the lease once moved back; claim until nothing is left.
            age_claims(conn, 31)
            for _ in range(total):  # a bound: each pass hands out reports or ends the loop
                try:
                    batch = await facade.claim_reports(miner_uid=99, limit=50)
                except LuminarError:
                    continue  # a pooled connection the last kill broke
                if not batch:
                    break
                for r in batch:
                    delivered[r.report_id] = delivered.get(r.report_id, 0) + 1
                    await facade.mark_report_processed(r.report_id)
        finally:
            await facade.close()
        return delivered, kills

    delivered, kills = run(go())
    ids = {row[0] for row in conn.execute("SELECT report_id FROM raw_incident_reports").fetchall()}
    assert kills >= 3, f"only {kills} kills hit a claimer"
    assert set(delivered) == ids, f"{len(ids - set(delivered))} of {total} reports never delivered"
    assert statuses(conn) == {"processed": total}


@pytest.mark.parametrize(("value", "rule"), [("0", "between 1 and 43200"), ("43201", "between 1 and 43200"),
                                             ("half an hour", "a whole number")])
def test_a_bad_lease_setting_is_refused_naming_the_variable_and_the_rule(value, rule):
    with pytest.raises(ConfigError, match=f"LUMINAR_CLAIM_LEASE_MINUTES must be {rule}"):
        load_settings("testing", environ={"LUMINAR_CLAIM_LEASE_MINUTES": value})
    assert load_settings("testing", environ={}).claim_lease_minutes == DEFAULT_CLAIM_LEASE_MINUTES == 30
    assert load_settings("testing", environ={"LUMINAR_CLAIM_LEASE_MINUTES": "90"}).claim_lease_minutes == 90
