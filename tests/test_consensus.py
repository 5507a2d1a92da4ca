"""ConsensusRepository against the real database: the unique triple, idempotency, summaries, network accuracy."""

from __future__ import annotations

import asyncio
import math
import statistics
import uuid

import psycopg
import pytest
from _async import count_rows, insert_event, run_with_conn

from luminar_store.errors import ConflictError, NotFoundError, ValidationError
from luminar_store.repositories.consensus import ConsensusRepository, final_score_of, validate_consensus_scores

SCORES = {"integrity": 0.9, "relevance": 0.7}


def test_store_returns_a_record_id_and_keeps_the_scores(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        record_id = await consensus.store(event_id, 7, SCORES, 3)
        assert isinstance(record_id, uuid.UUID)
        [record] = await consensus.for_event(event_id)
        assert record.record_id == record_id and record.event_id == event_id
        assert (record.validator_uid, record.consensus_round) == (7, 3)
        assert record.scores == SCORES
        assert record.final_score == pytest.approx(0.8)  # mean of the scores

    run_with_conn(db_conninfo, body)


def test_storing_the_same_record_again_is_idempotent(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        first = await consensus.store(event_id, 7, SCORES, 3)
        again = await consensus.store(str(event_id), 7, dict(reversed(list(SCORES.items()))), 3)
        assert again == first
        assert await count_rows(conn, "consensus_records") == 1

    run_with_conn(db_conninfo, body)


def test_other_scores_for_the_same_triple_conflict(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        await consensus.store(event_id, 7, SCORES, 3)
        with pytest.raises(ConflictError) as info:
            await consensus.store(event_id, 7, {"integrity": 0.1, "relevance": 0.7}, 3)
        message = str(info.value)
        assert str(event_id) in message and "validator_uid=7" in message and "round_number=3" in message
        with pytest.raises(ConflictError):
            await consensus.store(event_id, 7, SCORES, 3, final_score=0.2)
        [record] = await consensus.for_event(event_id)
        assert record.scores == SCORES  # not rewritten
        # another round, another validator or another event is a new record
        await consensus.store(event_id, 7, SCORES, 4)
        await consensus.store(event_id, 8, SCORES, 3)
        await consensus.store(await insert_event(conn), 7, SCORES, 3)
        assert await count_rows(conn, "consensus_records") == 4

    run_with_conn(db_conninfo, body)


def test_the_database_enforces_the_unique_triple(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        await ConsensusRepository(conn).store(event_id, 1, SCORES, 0)
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute("INSERT INTO consensus_records (event_id, validator_uid, consensus_round, scores,"
                               " final_score) VALUES (%s, 1, 0, '{}', 0.5)", (event_id,))

    run_with_conn(db_conninfo, body)


def test_final_score_choice(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        await consensus.store(event_id, 1, {"a": 0.2, "final": 0.9}, 0)
        await consensus.store(event_id, 2, {"a": 0.2, "final_score": 0.6}, 0)
        await consensus.store(event_id, 3, {"a": 0.2, "b": 0.4}, 0)
        await consensus.store(event_id, 4, {"a": 0.2}, 0, final_score=0.75)
        finals = {r.validator_uid: r.final_score for r in await consensus.for_event(event_id)}
        assert finals == pytest.approx({1: 0.9, 2: 0.6, 3: 0.3, 4: 0.75})

    run_with_conn(db_conninfo, body)


def test_unknown_event_is_not_found_and_nothing_is_stored(db_conninfo):
    async def body(conn):
        consensus = ConsensusRepository(conn)
        missing = uuid.uuid4()
        with pytest.raises(NotFoundError, match=str(missing)):
            await consensus.store(missing, 7, SCORES, 1)
        assert await count_rows(conn, "consensus_records") == 0
        with pytest.raises(NotFoundError, match="event_id"):
            await consensus.summary(missing)
        assert await consensus.for_event(missing) == []

    run_with_conn(db_conninfo, body)


def test_summary_numbers_for_known_scores(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        finals = {1: 0.65, 2: 0.7, 3: 0.9, 4: 0.35}
        for uid, final in finals.items():
            await consensus.store(event_id, uid, {"final": final}, 5)
        summary = await consensus.summary(event_id)
        values = list(finals.values())
        mean = statistics.fmean(values)  # 0.65
        assert summary.event_id == event_id and summary.round_number is None
        assert summary.validators == 4
        assert summary.mean_score == pytest.approx(mean)
        assert summary.stddev_score == pytest.approx(statistics.pstdev(values))
        assert (summary.min_score, summary.max_score) == (0.35, 0.9)
        # within 0.1 of 0.65: 0.65 and 0.7 (0.9 and 0.35 are not)
        assert summary.agreement == pytest.approx(0.5)
        assert summary.agreement_tolerance == 0.1

    run_with_conn(db_conninfo, body)


def test_summary_counts_each_validator_once_by_its_latest_round(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        await consensus.store(event_id, 1, {"final": 0.1}, 1)
        await consensus.store(event_id, 1, {"final": 0.5}, 2)  # validator 1's latest
        await consensus.store(event_id, 2, {"final": 0.6}, 1)
        latest = await consensus.summary(event_id)
        assert latest.validators == 2 and latest.mean_score == pytest.approx(0.55)
        assert latest.agreement == 1.0 and latest.stddev_score == pytest.approx(0.05)
        round_one = await consensus.summary(event_id, round_number=1)
        assert round_one.round_number == 1 and round_one.validators == 2
        assert round_one.mean_score == pytest.approx(0.35) and round_one.agreement == 0.0
        round_nine = await consensus.summary(event_id, round_number=9)
        assert round_nine.validators == 0 and round_nine.mean_score is None and round_nine.agreement is None

    run_with_conn(db_conninfo, body)


def test_agreement_at_the_tolerance_edge(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        consensus = ConsensusRepository(conn)
        for uid, final in ((1, 0.5), (2, 0.7)):  # mean 0.6, both 0.1 away: they agree
            await consensus.store(event_id, uid, {"final": final}, 0)
        assert (await consensus.summary(event_id)).agreement == 1.0

    run_with_conn(db_conninfo, body)


def test_summary_of_an_event_nobody_scored(db_conninfo):
    async def body(conn):
        event_id = await insert_event(conn)
        summary = await ConsensusRepository(conn).summary(event_id)
        assert summary.validators == 0
        assert (summary.mean_score, summary.stddev_score, summary.min_score, summary.max_score) == (None,) * 4
        assert summary.agreement is None

    run_with_conn(db_conninfo, body)


def test_for_validator_newest_first_with_limit(db_conninfo):
    async def body(conn):
        consensus = ConsensusRepository(conn)
        events = [await insert_event(conn) for _ in range(3)]
        for round_number, event_id in enumerate(events):
            await consensus.store(event_id, 7, SCORES, round_number)
        await consensus.store(events[0], 8, SCORES, 0)
        records = await consensus.for_validator(7)
        assert [r.event_id for r in records] == events[::-1]
        assert len(await consensus.for_validator(7, limit=2)) == 2
        assert await consensus.for_validator(9) == []

    run_with_conn(db_conninfo, body)


def test_network_accuracy(db_conninfo):
    async def body(conn):
        consensus = ConsensusRepository(conn)
        empty = await consensus.accuracy()
        assert (empty.records, empty.events, empty.validators, empty.agreement_rate) == (0, 0, 0, None)
        first, second = await insert_event(conn), await insert_event(conn)
        for uid, final in ((1, 0.65), (2, 0.7), (3, 0.9), (4, 0.35)):  # 2 of 4 agree
            await consensus.store(first, uid, {"final": final}, 1)
        for uid, final in ((1, 0.5), (2, 0.5)):  # 2 of 2 agree
            await consensus.store(second, uid, {"final": final}, 1)
        acc = await consensus.accuracy(hours=24)
        assert (acc.hours, acc.records, acc.events, acc.validators) == (24, 6, 2, 4)
        assert acc.agreement_rate == pytest.approx(66.67)
        # records older than the window do not count
        await conn.execute("UPDATE consensus_records SET created_at = now() - interval '3 hours'"
                           " WHERE event_id = %s", (first,))
        recent = await consensus.accuracy(hours=2)
        assert (recent.records, recent.agreement_rate) == (2, 100.0)

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("not-a-uuid", 7, SCORES, 1), {}, "event_id"),
        ((None, 7, SCORES, 1), {}, "event_id"),
        (("EVENT", -1, SCORES, 1), {}, "validator_uid"),
        (("EVENT", "7", SCORES, 1), {}, "validator_uid"),
        (("EVENT", 7, SCORES, -1), {}, "round_number"),
        (("EVENT", 7, SCORES, 1.5), {}, "round_number"),
        (("EVENT", 7, {}, 1), {}, "scores"),
        (("EVENT", 7, [0.5], 1), {}, "scores"),
        (("EVENT", 7, {"a": 1.2}, 1), {}, "scores.a"),
        (("EVENT", 7, {"a": math.nan}, 1), {}, "scores.a"),
        (("EVENT", 7, {"a": "high"}, 1), {}, "scores.a"),
        (("EVENT", 7, {"final": -0.1}, 1), {}, "scores.final"),
        (("EVENT", 7, SCORES, 1), {"final_score": 2}, "final_score"),
    ],
)
def test_bad_record_is_refused_and_nothing_is_stored(db_conninfo, args, kwargs, field):
    async def body(conn):
        event_id = await insert_event(conn)
        call = tuple(event_id if a == "EVENT" else a for a in args)
        with pytest.raises(ValidationError) as info:
            await ConsensusRepository(conn).store(*call, **kwargs)
        assert info.value.field == field
        assert await count_rows(conn, "consensus_records") == 0

    run_with_conn(db_conninfo, body)


@pytest.mark.parametrize(("kwargs", "field"), [({"hours": 0}, "hours"), ({"hours": "24"}, "hours"),
                                               ({"hours": "24; DROP TABLE crime_events"}, "hours")])
def test_accuracy_window_is_checked(db_conninfo, kwargs, field):
    async def body(conn):
        with pytest.raises(ValidationError) as info:
            await ConsensusRepository(conn).accuracy(**kwargs)
        assert info.value.field == field

    run_with_conn(db_conninfo, body)


def test_score_helpers():
    assert final_score_of(validate_consensus_scores({"a": 0, "b": 1})) == 0.5
    assert final_score_of(validate_consensus_scores({"a": 0, "final_score": 0.25})) == 0.25
    with pytest.raises(ValidationError):
        validate_consensus_scores({"": 0.5})


def test_concurrent_stores_of_one_record_agree_on_its_id(db_conninfo):
    async def store_once(event_id):
        async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as conn:
            return await ConsensusRepository(conn).store(event_id, 7, SCORES, 1)

    async def body(conn):
        event_id = await insert_event(conn)
        ids = await asyncio.gather(*(store_once(event_id) for _ in range(8)))
        assert len(set(ids)) == 1
        assert await count_rows(conn, "consensus_records") == 1

    run_with_conn(db_conninfo, body)
