"""Every write is safe to retry: events by their key, bulk batches by their events' keys, rounds by their round key;
and the facade retries a write whose connection was lost after it was sent (its answer lost), within the call's
deadline, or says that the write may have committed (``WriteInDoubtError``).

A lost answer is made on the server: a trigger terminates its own backend while the write runs (the transaction
never commits) a given number of times, counted by a sequence (``nextval`` is not rolled back).
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta

import pytest
from _async import clock, run

from luminar_store.access import LuminarDB
from luminar_store.errors import ConflictError, DatabaseUnavailableError, ValidationError, WriteInDoubtError
from luminar_store.models import CrimeEvent
from luminar_store.repositories.crime_events import idempotency_key

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
_SEQ = itertools.count()
SCORES = {"integrity": 0.9, "clustering": 0.8, "novelty": 0.7, "quality": 0.6}


def crime_event(**over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW - timedelta(minutes=5),
            "severity": 3, "confidence_score": 0.8, "summary": f"bike taken {next(_SEQ)}"}
    return data | over


def events_of(conn, miner_uid: int) -> int:
    return conn.execute("SELECT count(*) FROM crime_events WHERE miner_uid = %s", [miner_uid]).fetchone()[0]


# -- events -------------------------------------------------------------------------------------------------------

def test_an_event_stored_again_returns_its_first_id_and_a_different_one_is_new(db_settings, conn):
    db = LuminarDB(db_settings)
    base = crime_event()

    async def go():
        try:
            first = await db.store_crime_event(base, miner_uid=1)
            again = await db.store_crime_event(dict(base), miner_uid=1)
            as_object = await db.store_crime_event(CrimeEvent.coerce(base), miner_uid=1)
            other_summary = await db.store_crime_event(base | {"summary": "a second theft"}, miner_uid=1)
            other_severity = await db.store_crime_event(base | {"severity": 4}, miner_uid=1)
            other_miner = await db.store_crime_event(base, miner_uid=2)
            return first, again, as_object, other_summary, other_severity, other_miner
        finally:
            await db.close()

    first, again, as_object, other_summary, other_severity, other_miner = run(go())
    assert first == again == as_object
    assert len({first, other_summary, other_severity, other_miner}) == 4
    assert events_of(conn, 1) == 3 and events_of(conn, 2) == 1


def test_a_writers_own_key_names_one_event(db_settings, conn):
    db = LuminarDB(db_settings)

    async def go():
        try:
            first = await db.store_crime_event(crime_event(idempotency_key="miner-7/req-1/0"), miner_uid=7)
            # the same key with other content is the same event: the first write stays
            again = await db.store_crime_event(crime_event(idempotency_key="miner-7/req-1/0"), miner_uid=7)
            other = await db.store_crime_event(crime_event(idempotency_key="miner-7/req-1/1"), miner_uid=7)
            with pytest.raises(ValidationError, match="idempotency_key"):
                await db.store_crime_event(crime_event(idempotency_key="x" * 201), miner_uid=7)
            return first, again, other
        finally:
            await db.close()

    first, again, other = run(go())
    assert first == again != other
    assert events_of(conn, 7) == 2


def test_natural_keys_ignore_the_order_of_reports_and_of_metadata_keys():
    a, b = uuid.uuid4(), uuid.uuid4()
    base = {"event_type": "theft", "confidence_score": 0.5, "summary": "s", "related_reports": [a, b],
            "metadata": {"x": 1, "y": [1, 2]}}
    one = CrimeEvent.coerce(base)
    two = CrimeEvent.coerce(base | {"related_reports": [b, a], "metadata": {"y": [1, 2], "x": 1}})
    three = CrimeEvent.coerce(base | {"metadata": {"x": 2, "y": [1, 2]}})
    assert idempotency_key(one, 1) == idempotency_key(two, 1)
    assert idempotency_key(one, 1) != idempotency_key(three, 1)
    assert idempotency_key(one, 1) != idempotency_key(one, 2)


def test_a_retried_batch_adds_nothing_and_repeats_inside_a_batch_count_once(db_settings, conn):
    db = LuminarDB(db_settings)
    batch = [crime_event(verification_status="verified" if i % 2 else "pending") for i in range(40)]
    unlocated = [{"event_type": "other", "location": "Main Street", "summary": f"text flow {i}",
                  "confidence": 0.4} for i in range(3)]

    async def go():
        try:
            await db.update_miner_performance(miner_uid=3, hotkey="hk3", scores=SCORES, round_number=1)
            first = await db.store_crime_events(batch + unlocated, miner_uid=3)
            retried = await db.store_crime_events(batch + unlocated, miner_uid=3)
            overlapping = await db.store_crime_events(batch[:10] + [crime_event(), batch[0]] + unlocated[:1],
                                                      miner_uid=3)
            single_then_bulk = await db.store_crime_event(batch[5], miner_uid=3)
            return first, retried, overlapping, single_then_bulk
        finally:
            await db.close()

    first, retried, overlapping, single_then_bulk = run(go())
    assert (first, retried, overlapping) == (43, 0, 1)
    assert events_of(conn, 3) == 44
    assert conn.execute("SELECT event_id FROM crime_events WHERE miner_uid = 3 AND summary = %s",
                        [batch[5]["summary"]]).fetchone()[0] == single_then_bulk
    # the verified counter follows the rows stored, not the rows sent
    assert conn.execute("SELECT verified_events FROM miner_performance WHERE miner_uid = 3").fetchone()[0] == 20


def test_bulk_batches_larger_than_a_chunk_find_repeats_across_chunks(db_settings, conn, monkeypatch):
    from luminar_store.repositories import crime_events

    monkeypatch.setattr(crime_events, "BULK_CHUNK", 7)
    db = LuminarDB(db_settings)
    batch = [crime_event() for _ in range(20)]

    async def go():
        try:
            return (await db.store_crime_events(batch + batch[3:9] + batch, miner_uid=4),
                    await db.store_crime_events(iter(batch), miner_uid=4))
        finally:
            await db.close()

    assert run(go()) == (20, 0)
    assert events_of(conn, 4) == 20


# -- rounds -------------------------------------------------------------------------------------------------------

def test_a_round_counts_once_per_round_number_or_key(db_settings, conn):
    db = LuminarDB(db_settings)

    async def go():
        try:
            one = await db.update_miner_performance(9, "hk9", SCORES, round_number=100)
            again = await db.update_miner_performance(9, "hk9", SCORES | {"novelty": 0.1}, round_number=100)
            keyed = await db.update_miner_performance(9, "hk9", SCORES, round_key="epoch-3")
            keyed_again = await db.update_miner_performance(9, "hk9", SCORES, round_key="epoch-3")
            unnamed = [await db.update_miner_performance(9, "hk9", SCORES) for _ in range(2)]
            with pytest.raises(ValidationError, match="round_key: give round_number or round_key, not both"):
                await db.update_miner_performance(9, "hk9", SCORES, round_number=1, round_key="a")
            with pytest.raises(ValidationError, match="round_number"):
                await db.update_miner_performance(9, "hk9", SCORES, round_number=-1)
            # a re-registered uid is a new miner: its first round counts even under a name the old one used
            new_miner = await db.update_miner_performance(9, "hk9-new", SCORES, round_number=100)
            return one, again, keyed, keyed_again, unnamed, new_miner
        finally:
            await db.close()

    one, again, keyed, keyed_again, unnamed, new_miner = run(go())
    assert (one.counted, one.total_rounds) == (True, 1)
    assert (again.counted, again.created, again.total_rounds, again.novelty_score) == (False, False, 1, 0.7)
    assert (keyed.counted, keyed.total_rounds, keyed_again.counted, keyed_again.total_rounds) == (True, 2, False, 2)
    assert [r.total_rounds for r in unnamed] == [3, 4]  # without a name every call is a round
    assert (new_miner.counted, new_miner.reregistered, new_miner.total_rounds) == (True, True, 1)
    keys = conn.execute("SELECT recent_round_keys FROM miner_performance WHERE miner_uid = 9").fetchone()[0]
    assert keys == ["round:100"]


def test_a_miner_remembers_its_last_32_round_keys(db_settings, conn):
    db = LuminarDB(db_settings)

    async def go():
        try:
            for n in range(40):
                await db.update_miner_performance(11, "hk11", SCORES, round_number=n)
            recent = await db.update_miner_performance(11, "hk11", SCORES, round_number=39)
            forgotten = await db.update_miner_performance(11, "hk11", SCORES, round_number=0)
            return recent, forgotten
        finally:
            await db.close()

    recent, forgotten = run(go())
    assert (recent.counted, recent.total_rounds) == (False, 40)
    assert (forgotten.counted, forgotten.total_rounds) == (True, 41)  # documented: older than the last 32
    keys = conn.execute("SELECT recent_round_keys FROM miner_performance WHERE miner_uid = 11").fetchone()[0]
    assert len(keys) == 32 and keys[-1] == "round:0" and keys[0] == "round:9"


# -- the in-call retry of a write whose answer was lost -------------------------------------------------------------

LOSE_ANSWERS = """
CREATE SEQUENCE lost_answers;
CREATE FUNCTION lose_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('lost_answers') <= {times} THEN
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination arrives here: the write never commits
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lose_answer BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION lose_answer();
"""


def lose_answers(conn, table: str, times: int) -> None:
    """The next ``times`` writes into ``table`` lose their connection after being sent (a fixed test text)."""
    conn.execute(LOSE_ANSWERS.replace("{times}", str(times)).replace("{table}", table))


def attempts(conn) -> int:
    return conn.execute("SELECT last_value FROM lost_answers").fetchone()[0]


def test_a_write_whose_answer_was_lost_is_sent_again_and_stored_once(db_settings, conn):
    lose_answers(conn, "crime_events", 1)
    db = LuminarDB(db_settings)

    async def go():
        try:
            return await db.store_crime_event(crime_event(), miner_uid=5)
        finally:
            await db.close()

    event_id = run(go())
    assert attempts(conn) == 2
    assert conn.execute("SELECT array_agg(event_id) FROM crime_events").fetchone()[0] == [event_id]


def test_a_write_lost_past_the_deadline_says_it_may_have_committed(pg_server, db_settings, conn):
    lose_answers(conn, "crime_events", 1_000)
    settings = pg_server.settings(db_settings.name, LUMINAR_DB_CONNECT_TIMEOUT="2")
    db = LuminarDB(settings)

    async def go():
        try:
            with pytest.raises(WriteInDoubtError) as lost:
                await db.store_crime_event(crime_event(), miner_uid=5)
            return lost.value
        finally:
            await db.close()

    error = run(go())
    assert isinstance(error, DatabaseUnavailableError) and error.may_have_committed
    message = str(error)
    assert message.startswith("store_crime_event: the connection to PostgreSQL at ")
    assert "may or may not have committed" in message and "LUMINAR_DB_CONNECT_TIMEOUT" in message
    assert settings.password not in message or not settings.password
    assert attempts(conn) >= 2
    assert events_of(conn, 5) == 0


def test_inputs_that_cannot_be_sent_twice_are_not_sent_twice(db_settings, conn):
    lose_answers(conn, "crime_events", 1)
    db = LuminarDB(db_settings)

    async def go():
        try:
            with pytest.raises(WriteInDoubtError, match="one-shot iterator"):
                await db.store_crime_events((crime_event() for _ in range(3)), miner_uid=6)
            sent_once = attempts(conn)
            stored = await db.store_crime_events([crime_event() for _ in range(3)], miner_uid=6)
            return sent_once, stored
        finally:
            await db.close()

    assert run(go()) == (1, 3)
    assert events_of(conn, 6) == 3


def test_a_report_whose_answer_was_lost_twice_is_stored_once(db_settings, conn):
    lose_answers(conn, "raw_incident_reports", 2)
    db = LuminarDB(db_settings)
    report = {"report_id": "LMR_20261129_RETRY001", "text_description": "Shop window broken",
              "geotag": {"lat": 40.7, "lng": -74.0}, "timestamp": NOW - timedelta(minutes=2)}

    async def go():
        try:
            return await db.store_raw_report(report)
        finally:
            await db.close()

    report_id = run(go())
    assert attempts(conn) == 3
    assert conn.execute("SELECT array_agg(report_id) FROM raw_incident_reports").fetchone()[0] == [report_id]


def test_nothing_is_retried_when_nothing_reached_the_server(pg_server, db_settings):
    db = LuminarDB(pg_server.settings(db_settings.name, LUMINAR_DB_PORT="1"))

    async def go():
        try:
            await db.store_crime_event(crime_event(), miner_uid=5)
        finally:
            await db.close()

    with pytest.raises(DatabaseUnavailableError) as refused:
        run(go())
    assert not isinstance(refused.value, WriteInDoubtError) and not refused.value.may_have_committed


def test_a_conflicting_event_id_is_still_a_conflict(db_settings):
    db = LuminarDB(db_settings)
    chosen = uuid.uuid4()

    async def go():
        try:
            await db.store_crime_event(crime_event(event_id=chosen), miner_uid=1)
            await db.store_crime_event(crime_event(event_id=chosen), miner_uid=2)
        finally:
            await db.close()

    with pytest.raises(ConflictError, match="another miner or under another idempotency_key"):
        run(go())
