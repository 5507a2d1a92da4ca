"""MinerRepository against the real database: rounds, success rate, re-registration, stats, active miners."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from _async import count_rows, insert_event, run_with_conn

from luminar_store.errors import NotFoundError, ValidationError
from luminar_store.repositories.miners import MinerRepository, overall_score, validate_scores

GOOD = {"integrity": 0.95, "clustering": 0.88, "novelty": 0.75, "quality": 0.92}  # overall 0.875
POOR = {"integrity": 0.2, "clustering": 0.3, "novelty": 0.4, "quality": 0.5}  # overall 0.35
EDGE = {"integrity": 0.5, "clustering": 0.5, "novelty": 0.5, "quality": 0.5}  # overall exactly 0.5: successful


def test_first_round_creates_the_record(db_conninfo):
    async def body(conn):
        result = await MinerRepository(conn).record_round(123, "hotkey_string", GOOD)
        assert result.created is True and result.reregistered is False
        assert result.miner_uid == 123 and result.hotkey == "hotkey_string"
        assert result.overall_score == pytest.approx(0.875)
        assert result.avg_overall_score == pytest.approx(0.875)
        assert (result.total_rounds, result.successful_rounds, result.success_rate) == (1, 1, 100.0)
        assert result.integrity_score == 0.95 and result.quality_score == 0.92
        assert result.is_active and result.last_activity is not None

    run_with_conn(db_conninfo, body)


def test_success_rate_in_percent_after_known_rounds(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        for scores in (GOOD, POOR, EDGE, POOR):
            last = await miners.record_round(7, "hk7", scores)
        assert last.created is False and last.reregistered is False
        assert (last.total_rounds, last.successful_rounds) == (4, 2)
        assert last.success_rate == 50.0
        assert last.avg_overall_score == pytest.approx((0.875 + 0.35 + 0.5 + 0.35) / 4)
        assert last.overall_score == pytest.approx(0.35)  # the last round's

        stats = await miners.stats(7)
        assert stats.success_rate == 50.0
        [view_row] = await miners.active()
        assert view_row.miner_uid == 7 and view_row.success_rate == 50.0
        # the view agrees with the repository's computation
        cur = await conn.execute("SELECT success_rate FROM active_miners WHERE miner_uid = 7")
        assert float((await cur.fetchone())[0]) == 50.0

    run_with_conn(db_conninfo, body)


def test_three_rounds_success_rate_rounded_to_two_decimals(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        for scores in (GOOD, POOR, POOR):
            last = await miners.record_round(8, "hk8", scores)
        assert last.success_rate == 33.33

    run_with_conn(db_conninfo, body)


def test_reregistration_starts_a_fresh_record_and_is_audited(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        first = await miners.record_round(42, "old_key", GOOD)
        await miners.record_round(42, "old_key", POOR)
        await miners.record_round(42, "old_key", GOOD)
        fresh = await miners.record_round(42, "new_key", POOR)
        assert fresh.created is False and fresh.reregistered is True
        assert fresh.hotkey == "new_key"
        assert (fresh.total_rounds, fresh.successful_rounds, fresh.success_rate) == (1, 0, 0.0)
        assert fresh.avg_overall_score == pytest.approx(0.35)
        assert fresh.miner_id != first.miner_id
        assert fresh.registered_at > first.registered_at

        cur = await conn.execute(
            "SELECT row_id, old_data, new_data FROM audit_log"
            " WHERE table_name = 'miner_performance' AND operation = 'REREGISTER'")
        rows = await cur.fetchall()
        assert len(rows) == 1
        row_id, old, new = rows[0]
        assert row_id == "42"
        assert old["hotkey"] == "old_key" and old["total_rounds"] == 3 and old["successful_rounds"] == 2
        assert new["hotkey"] == "new_key" and new["total_rounds"] == 1

        # the new registration then accumulates normally, with no further audit row
        again = await miners.record_round(42, "new_key", GOOD)
        assert again.reregistered is False and (again.total_rounds, again.successful_rounds) == (2, 1)
        cur = await conn.execute("SELECT count(*) FROM audit_log WHERE operation = 'REREGISTER'")
        assert (await cur.fetchone())[0] == 1

    run_with_conn(db_conninfo, body)


def test_round_time_is_recorded(db_conninfo):
    async def body(conn):
        at = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
        result = await MinerRepository(conn).record_round(9, "hk9", GOOD, at=at)
        assert result.last_activity == at and result.registered_at == at

    run_with_conn(db_conninfo, body)


def test_stats_counts_the_miners_events(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        await miners.record_round(5, "hk5", GOOD)
        for status in ("verified", "verified", "pending", "rejected"):
            await insert_event(conn, miner_uid=5, status=status)
        await insert_event(conn, miner_uid=6, status="verified")  # another miner's
        stats = await miners.stats(5)
        assert (stats.events_submitted, stats.events_verified) == (4, 2)
        assert stats.miner_uid == 5 and stats.total_rounds == 1
        assert await miners.stats(6) is None  # events, but never scored
        assert await miners.stats(999) is None

    run_with_conn(db_conninfo, body)


def test_stats_event_counts_use_the_miner_time_index(db_conninfo):
    async def body(conn):
        await MinerRepository(conn).record_round(3, "hk3", GOOD)
        await conn.execute(
            """INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, "timestamp", severity_level,
                                         confidence_score)
               SELECT g % 200, 'theft', 40.7, -74.0, now() - g * interval '1 minute', 3, 0.9
                 FROM generate_series(1, 20000) AS g""")
        await conn.execute("ANALYZE crime_events")
        from luminar_store.repositories.miners import MINER_STATS

        cur = await conn.execute("EXPLAIN " + MINER_STATS, {"miner_uid": 3})
        plan = "\n".join(r[0] for r in await cur.fetchall())
        assert "idx_events_miner_time" in plan, plan
        stats = await MinerRepository(conn).stats(3)
        assert stats.events_submitted == 100

    run_with_conn(db_conninfo, body)


def test_active_orders_filters_and_limits(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        await miners.record_round(1, "a", GOOD)  # 100 %, avg 0.875
        await miners.record_round(2, "b", POOR)  # 0 %, avg 0.35
        await miners.record_round(3, "c", EDGE)  # 100 %, avg 0.5
        await miners.record_round(3, "c", POOR)  # 50 %
        assert [m.miner_uid for m in await miners.active()] == [1, 3, 2]
        assert [m.miner_uid for m in await miners.active(min_success_rate=50)] == [1, 3]
        assert [m.miner_uid for m in await miners.active(min_success_rate=80)] == [1]
        assert [m.miner_uid for m in await miners.active(limit=1)] == [1]
        assert await miners.count_active() == 3

        deactivated = await miners.deactivate(1)
        assert deactivated.is_active is False and deactivated.total_rounds == 1
        assert [m.miner_uid for m in await miners.active()] == [3, 2]
        assert await miners.count_active() == 2
        assert (await miners.deactivate(1)).is_active is False  # idempotent
        # the next round re-activates it and keeps its history
        back = await miners.record_round(1, "a", GOOD)
        assert back.is_active and back.total_rounds == 2

    run_with_conn(db_conninfo, body)


def test_deactivate_unknown_miner_is_not_found(db_conninfo):
    async def body(conn):
        with pytest.raises(NotFoundError, match="miner_uid"):
            await MinerRepository(conn).deactivate(404)

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(
    ("uid", "hotkey", "scores", "field"),
    [
        (-1, "hk", GOOD, "miner_uid"),
        ("123", "hk", GOOD, "miner_uid"),
        (1.0, "hk", GOOD, "miner_uid"),
        (True, "hk", GOOD, "miner_uid"),
        (2**31, "hk", GOOD, "miner_uid"),
        ("24; DROP TABLE miner_performance", "hk", GOOD, "miner_uid"),
        (1, "", GOOD, "hotkey"),
        (1, "x" * 129, GOOD, "hotkey"),
        (1, "bad\x00key", GOOD, "hotkey"),
        (1, None, GOOD, "hotkey"),
        (1, "hk", {**GOOD, "integrity": 1.5}, "scores.integrity"),
        (1, "hk", {**GOOD, "novelty": -0.1}, "scores.novelty"),
        (1, "hk", {**GOOD, "quality": math.nan}, "scores.quality"),
        (1, "hk", {**GOOD, "clustering": math.inf}, "scores.clustering"),
        (1, "hk", {**GOOD, "clustering": "0.5"}, "scores.clustering"),
        (1, "hk", {k: v for k, v in GOOD.items() if k != "novelty"}, "scores.novelty"),
        (1, "hk", {**GOOD, "speed": 0.5}, "scores"),
        (1, "hk", [0.1, 0.2, 0.3, 0.4], "scores"),
    ],
)
def test_bad_round_is_refused_and_nothing_is_stored(db_conninfo, uid, hotkey, scores, field):
    async def body(conn):
        before = await count_rows(conn, "miner_performance")
        with pytest.raises(ValidationError) as info:
            await MinerRepository(conn).record_round(uid, hotkey, scores)
        assert info.value.field == field
        assert await count_rows(conn, "miner_performance") == before == 0

    run_with_conn(db_conninfo, body)


def test_bad_round_does_not_touch_an_existing_record(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        await miners.record_round(11, "hk", GOOD)
        with pytest.raises(ValidationError):
            await miners.record_round(11, "other", {**GOOD, "integrity": 2})
        stats = await miners.stats(11)
        assert stats.hotkey == "hk" and stats.total_rounds == 1

    run_with_conn(db_conninfo, body)


def test_unknown_score_keys_are_named():
    with pytest.raises(ValidationError, match="speed, zeal"):
        validate_scores({**GOOD, "zeal": 1, "speed": 0})


def test_future_round_time_is_refused(db_conninfo):
    async def body(conn):
        miners = MinerRepository(conn)
        with pytest.raises(ValidationError) as info:
            await miners.record_round(1, "hk", GOOD, at=datetime.now() + timedelta(hours=1))  # naive: local time
        assert info.value.field == "at"
        with pytest.raises(ValidationError) as info:
            await miners.record_round(1, "hk", GOOD, at=datetime.now(timezone.utc) + timedelta(hours=1))
        assert info.value.field == "at"
        assert await count_rows(conn, "miner_performance") == 0

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(("kwargs", "field"), [({"limit": 0}, "limit"), ({"limit": "10"}, "limit"),
                                               ({"min_success_rate": 101}, "min_success_rate"),
                                               ({"min_success_rate": "80"}, "min_success_rate")])
def test_active_arguments_are_checked(db_conninfo, kwargs, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await MinerRepository(conn).active(**kwargs)
        assert info.value.field == field

    run_with_conn(db_conninfo, body)


def test_overall_score_is_the_mean():
    assert overall_score(validate_scores(GOOD)) == pytest.approx(0.875)


def test_concurrent_rounds_of_one_miner_all_count(db_conninfo):
    async def one_round(scores):
        async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
            return await MinerRepository(conn).record_round(77, "hk77", scores)

    async def body(conn):
        results = await asyncio.gather(*(one_round(GOOD if i % 2 else POOR) for i in range(10)))
        assert sum(r.created for r in results) == 1 and not any(r.reregistered for r in results)
        stats = await MinerRepository(conn).stats(77)
        assert (stats.total_rounds, stats.successful_rounds, stats.success_rate) == (10, 5, 50.0)
        assert stats.avg_overall_score == pytest.approx((0.875 + 0.35) / 2)

    run_with_conn(db_conninfo, body)
