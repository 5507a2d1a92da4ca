"""RawReportRepository on a real database: idempotent store, COPY, claiming without double hand-outs, settling."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from _async import clock, run

from luminar_store.database import Database
from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.models import RawIncidentReport
from luminar_store.repositories.raw_reports import RawReportRepository

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())



def report(n: int, **over) -> dict:
    data = {"external_id": f"app-{n}", "description": f"Report {n}: a bicycle was stolen",
            "geotag": {"lat": 40.71 + n * 1e-4, "lng": -74.0}, "timestamp": NOW - timedelta(minutes=1000 - n),
            "reporter_id": f"user-{n % 7}", "crime_type": "Bicycle Theft"}
    data.update(over)
    return data


async def with_repo(settings, work):
    async with await psycopg.AsyncConnection.connect(settings.conninfo(), autocommit=True) as conn:
        return await work(RawReportRepository(conn))


COUNT_REPORTS = """SELECT count(*) FROM raw_incident_reports
                    WHERE (%(status)s::text IS NULL OR status = %(status)s)
                      AND (NOT %(unclaimed)s OR claimed_by IS NULL)"""


def count(conn, status: str | None = None, *, unclaimed: bool = False) -> int:
    return conn.execute(COUNT_REPORTS, {"status": status, "unclaimed": unclaimed}).fetchone()[0]


def test_store_returns_report_id_and_get_reads_it_back(db_settings):
    async def go(repo):
        rid = await repo.store(report(1, media_urls=["https://m/1.jpg"], media_hashes=["ab" * 32],
                                      metadata={"app": "ios", "tags": ["night"]}))
        return rid, await repo.get(rid), await repo.get(uuid.uuid4())

    rid, got, missing = run(with_repo(db_settings, go))
    assert isinstance(rid, uuid.UUID) and missing is None
    assert got.report_id == rid and got.external_id == "app-1" and got.user_id == "user-1"
    assert got.source == "mobile_app"  # the column's default: the input has no source
    assert got.crime_type == "bicycle_theft"  # normalized to a lower-case word
    assert got.geotag == {"lat": pytest.approx(40.7101), "lng": -74.0}
    assert got.timestamp == NOW - timedelta(minutes=999)
    assert got.media_urls == ["https://m/1.jpg"] and got.metadata == {"app": "ios", "tags": ["night"]}
    assert got.status == "pending" and got.processing_attempts == 0 and got.claimed_by is None


def test_storing_the_same_external_id_again_returns_the_first_report_id(db_settings, conn):
    async def go(repo):
        first = await repo.store(report(1))
        again = await repo.store(report(1, description="edited later"))
        other = await repo.store(report(2))
        return first, again, other

    first, again, other = run(with_repo(db_settings, go))
    assert first == again != other
    assert count(conn) == 2
    assert conn.execute("SELECT text_description FROM raw_incident_reports WHERE report_id = %s",
                        (first,)).fetchone()[0].startswith("Report 1")


def test_concurrent_stores_of_one_external_id_agree_on_one_row(db_settings, conn):
    async def go():
        async with Database(db_settings) as database:
            async def one():
                async with database.connection() as c:
                    return await RawReportRepository(c).store(report(5))
            return await asyncio.gather(*(one() for _ in range(12)))

    ids = run(go())
    assert len(set(ids)) == 1
    assert count(conn) == 1


def test_protocol_mapping_report_id_alias_and_dataclass_input(db_settings, conn):
    protocol = {"report_id": "mobile-77", "text_description": "Car window smashed", "user_id": "u-9",
                "geotag": {"lat": 51.5, "lng": -0.12}, "timestamp": NOW.isoformat()}

    async def go(repo):
        a = await repo.store(protocol)
        b = await repo.store(RawIncidentReport(external_id="mobile-77", description="same source id",
                                               geotag={"lat": 51.5, "lng": -0.12}, timestamp=NOW))
        return a, b, await repo.get(a)

    a, b, got = run(with_repo(db_settings, go))
    assert a == b
    assert (got.external_id, got.text_description, got.user_id) == ("mobile-77", "Car window smashed", "u-9")


def test_store_many_skips_known_and_repeated_external_ids(db_settings, conn):
    async def go(repo):
        await repo.store(report(1))
        batch = (report(n) for n in [1, 2, 3, 3, 4])  # a generator: streamed
        return await repo.store_many(batch)

    assert run(with_repo(db_settings, go)) == 3
    assert count(conn) == 4
    assert sorted(r[0] for r in conn.execute("SELECT external_id FROM raw_incident_reports")) == \
        ["app-1", "app-2", "app-3", "app-4"]


def test_store_many_twice_in_one_transaction(db_settings, conn):
    async def go(repo):
        async with repo._conn.transaction():
            return await repo.store_many([report(1)]) + await repo.store_many([report(2), report(1)])

    assert run(with_repo(db_settings, go)) == 2
    assert count(conn) == 2


def test_plain_copy_path_stores_all_or_refuses_the_batch_on_a_known_id(db_settings, conn):
    async def go(repo):
        stored = await repo.store_many([report(n) for n in range(10)], skip_existing=False)
        with pytest.raises(ConflictError) as info:
            await repo.store_many([report(100), report(3)], skip_existing=False)
        return stored, str(info.value)

    stored, message = run(with_repo(db_settings, go))
    assert stored == 10 and "raw_reports_external_id_key" in message
    assert count(conn) == 10  # app-100 was not stored either


@pytest.mark.parametrize("skip_existing", [True, False])
def test_a_bad_item_in_a_batch_names_its_index_and_stores_nothing(db_settings, conn, skip_existing):
    async def go(repo):
        with pytest.raises(ValidationError) as info:
            await repo.store_many([report(1), report(2), report(3, geotag={"lat": 95, "lng": 0})],
                                  skip_existing=skip_existing)
        return info.value

    error = run(with_repo(db_settings, go))
    assert error.field == "reports[2].geotag.lat"
    assert count(conn) == 0


def test_claim_hands_out_oldest_pending_reports_and_marks_them(db_settings, conn):
    async def go(repo):
        await repo.store_many([report(n) for n in range(6)])
        first = await repo.claim(miner_uid=7, limit=4)
        second = await repo.claim(miner_uid=8, limit=4)
        third = await repo.claim(miner_uid=9, limit=4)
        return first, second, third

    first, second, third = run(with_repo(db_settings, go))
    assert [r.external_id for r in first] == ["app-0", "app-1", "app-2", "app-3"]
    assert [r.external_id for r in second] == ["app-4", "app-5"]
    assert third == []
    assert all(r.status == "processing" and r.claimed_by == 7 and r.processing_attempts == 1 and r.claimed_at
               for r in first)
    assert count(conn, "processing") == 6


def test_two_concurrent_claimers_never_get_the_same_report(db_settings):
    total = 300

    async def go():
        async with await psycopg.AsyncConnection.connect(db_settings.conninfo(), autocommit=True) as c:
            await RawReportRepository(c).store_many([report(n) for n in range(total)])

        async def claimer(uid: int) -> list[uuid.UUID]:
            got: list[uuid.UUID] = []
            async with await psycopg.AsyncConnection.connect(db_settings.conninfo(), autocommit=True) as c:
                repo = RawReportRepository(c)
                while batch := await repo.claim(miner_uid=uid, limit=7):
                    got.extend(r.report_id for r in batch)
                    await asyncio.sleep(0)
            return got

        return await asyncio.gather(*(claimer(uid) for uid in range(4)))

    results = run(go())
    claimed = [rid for batch in results for rid in batch]
    assert len(claimed) == total and len(set(claimed)) == total
    assert sum(1 for batch in results if batch) >= 2  # they really competed


def test_claims_in_open_transactions_skip_each_others_locked_rows(db_settings):
    async def go():
        async with await psycopg.AsyncConnection.connect(db_settings.conninfo(), autocommit=True) as c:
            await RawReportRepository(c).store_many([report(n) for n in range(5)])
        a = await psycopg.AsyncConnection.connect(db_settings.conninfo())  # not autocommit: locks stay held
        b = await psycopg.AsyncConnection.connect(db_settings.conninfo())
        try:
            first = await RawReportRepository(a).claim(1, limit=3)
            second = await RawReportRepository(b).claim(2, limit=3)  # does not wait for a's locks
            await a.rollback()
            await b.commit()
            return first, second
        finally:
            await a.close()
            await b.close()

    first, second = run(go())
    assert [r.external_id for r in first] == ["app-0", "app-1", "app-2"]
    assert [r.external_id for r in second] == ["app-3", "app-4"]


def test_mark_processed_failed_retry_and_release_stale(db_settings, conn):
    async def go(repo):
        await repo.store_many([report(n) for n in range(3)])
        a, b, c = await repo.claim(miner_uid=3, limit=3)
        done = await repo.mark_processed(a.report_id)
        failed = await repo.mark_failed(b.report_id, "no usable location")
        retried = await repo.mark_failed(str(c.report_id), "timeout", retry=True)
        again = await repo.claim(miner_uid=4, limit=5)
        with pytest.raises(NotFoundError):
            await repo.mark_processed(uuid.uuid4())
        with pytest.raises(ValidationError):
            await repo.mark_failed(a.report_id, "")
        return done, failed, retried, again

    done, failed, retried, again = run(with_repo(db_settings, go))
    assert done.status == "processed" and done.processed_at is not None and done.error_message is None
    assert failed.status == "failed" and failed.error_message == "no usable location" and failed.claimed_by == 3
    assert retried.status == "pending" and retried.claimed_by is None and retried.error_message == "timeout"
    assert [r.report_id for r in again] == [retried.report_id] and again[0].processing_attempts == 2

    conn.execute("UPDATE raw_incident_reports SET claimed_at = now() - interval '2 hours' "
                 "WHERE status = 'processing'")
    assert run(with_repo(db_settings, lambda repo: repo.release_stale(90))) == 1
    assert run(with_repo(db_settings, lambda repo: repo.release_stale(90))) == 0
    assert count(conn, "pending", unclaimed=True) == 1


def test_counts(db_settings):
    async def go(repo):
        await repo.store_many([report(n) for n in range(4)])
        await repo.claim(1, limit=1)
        return await repo.counts()

    assert run(with_repo(db_settings, go)) == (4, 3)


@pytest.mark.parametrize("call", [
    lambda repo: repo.claim(miner_uid=-1),
    lambda repo: repo.claim(miner_uid=1, limit=0),
    lambda repo: repo.claim(miner_uid=1, limit="5"),
    lambda repo: repo.release_stale(1.5),
    lambda repo: repo.get("not-a-uuid"),
    lambda repo: repo.mark_failed(uuid.uuid4(), "x", retry="yes"),
])
def test_bad_arguments_are_refused(db_settings, call):
    async def go(repo):
        with pytest.raises(ValidationError):
            await call(repo)

    run(with_repo(db_settings, go))
