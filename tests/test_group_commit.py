"""Group commit of ``store_crime_event``: concurrent calls share INSERT statements, each caller keeps its outcome.

64 calls at once through the facade: the first few go alone (nothing waits yet), the rest wait and go together;
a group the server refuses (an unknown report or cluster) is sent again in halves, down to the refused events alone.
Which calls shared a statement is seen on the server: rows written by one statement share their transaction id
(``xmin``).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import datetime, timedelta

from _async import clock, run

from luminar_store.access import LuminarDB
from luminar_store.errors import ConflictError, NotFoundError, ValidationError

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())
_SEQ = itertools.count()
CALLS = 64


def crime_event(**over) -> dict:
    data = {"event_type": "theft", "geotag": {"lat": 40.7128, "lng": -74.0060}, "timestamp": NOW - timedelta(minutes=5),
            "severity": 3, "confidence_score": 0.8, "summary": f"bike taken {next(_SEQ)}"}
    return data | over


async def outcomes(db: LuminarDB, calls: list[tuple[dict, int]]) -> list[object]:
    """Every call at once; each one's event_id or its error."""
    return await asyncio.gather(*(db.store_crime_event(e, miner_uid=uid) for e, uid in calls), return_exceptions=True)


def transactions(conn, ids) -> int:
    """How many server transactions wrote the events ``ids``."""
    return conn.execute("SELECT count(DISTINCT xmin::text) FROM crime_events WHERE event_id = ANY(%s)",
                        [list(ids)]).fetchone()[0]


def test_each_concurrent_caller_gets_its_own_id_or_its_own_error(db_settings, conn):
    db = LuminarDB(db_settings)
    taken = uuid.uuid4()
    stored_before = crime_event(summary="stored before the rush")
    twin = crime_event(idempotency_key="miner-7/req-9/0")
    calls = [(crime_event(), 7) for _ in range(CALLS)]
    bad = {20: (crime_event(related_reports=[uuid.uuid4()]), 7),  # unknown report
           25: (crime_event(cluster_id=uuid.uuid4()), 7),  # unknown cluster
           30: (crime_event(event_id=taken), 7),  # another miner's event_id
           40: (crime_event(severity=9), 7)}  # refused before any SQL
    for i, call in bad.items():
        calls[i] = call
    calls[45], calls[50] = (twin, 7), (dict(twin), 7)  # one key twice in the rush: one event
    calls[55] = (dict(stored_before), 7)  # a retry of an event stored before

    async def go():
        try:
            first = await db.store_crime_event(stored_before, miner_uid=7)
            await db.store_crime_event(crime_event(event_id=taken), miner_uid=8)
            return first, await outcomes(db, calls)
        finally:
            await db.close()

    first, got = run(go())
    assert isinstance(got[20], NotFoundError) and "events_related_reports_exist" in str(got[20])
    assert isinstance(got[25], NotFoundError) and "cluster" in str(got[25])
    assert isinstance(got[30], ConflictError) and "another miner" in str(got[30])
    assert isinstance(got[40], ValidationError) and got[40].field == "severity"
    good = [i for i in range(CALLS) if i not in bad]
    assert all(isinstance(got[i], uuid.UUID) for i in good), [got[i] for i in good]
    assert got[45] == got[50] and got[55] == first
    ids = {got[i] for i in good}
    assert len(ids) == len(good) - 1  # the twins are one event (the retry is the event stored before)
    rows = conn.execute("SELECT event_id FROM crime_events WHERE miner_uid = 7").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert conn.execute("SELECT count(*) FROM crime_events WHERE event_id = %s", [taken]).fetchone()[0] == 1


def test_concurrent_calls_share_statements_and_a_retry_returns_the_same_ids(db_settings, conn):
    db = LuminarDB(db_settings)
    calls = [(crime_event(), 12 + k % 8) for k in range(CALLS)]

    async def go():
        try:
            first = await outcomes(db, calls)
            again = await outcomes(db, [(dict(e), uid) for e, uid in calls])  # every call retried, all at once
            alone = [await db.store_crime_event(dict(e), miner_uid=uid) for e, uid in calls[:3]]  # one by one
            return first, again, alone
        finally:
            await db.close()

    first, again, alone = run(go())
    assert all(isinstance(x, uuid.UUID) for x in first) and len(set(first)) == CALLS
    assert again == first and alone == first[:3]
    assert conn.execute("SELECT count(*) FROM crime_events").fetchone()[0] == CALLS
    assert transactions(conn, first) <= CALLS // 2  # one statement a call would be 64


LOSE_ONE_ANSWER = """
CREATE SEQUENCE rows_sent;
CREATE FUNCTION lose_answer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('rows_sent') = 10 THEN  -- a row of the group that follows the first calls sent alone
        PERFORM pg_terminate_backend(pg_backend_pid());
        PERFORM pg_sleep(5);  -- the termination arrives here: the statement never commits
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER lose_answer BEFORE INSERT ON crime_events FOR EACH ROW EXECUTE FUNCTION lose_answer();
"""


def test_a_group_whose_connection_is_lost_is_sent_again_and_stored_once(db_settings, conn):
    conn.execute(LOSE_ONE_ANSWER)
    db = LuminarDB(db_settings)
    calls = [(crime_event(), 7) for _ in range(CALLS)]

    async def go():
        try:
            return await outcomes(db, calls)
        finally:
            await db.close()

    got = run(go())
    assert all(isinstance(x, uuid.UUID) for x in got), [x for x in got if not isinstance(x, uuid.UUID)]
    assert conn.execute("SELECT last_value FROM rows_sent").fetchone()[0] > CALLS  # the lost rows were sent again
    rows = conn.execute("SELECT event_id FROM crime_events").fetchall()
    assert sorted(r[0] for r in rows) == sorted(got) and len(set(got)) == CALLS


def test_callers_cancelled_while_they_wait_hold_nobody_back(db_settings, conn):
    db = LuminarDB(db_settings)
    calls = [(crime_event(), 7) for _ in range(CALLS)]

    async def go():
        try:
            tasks = [asyncio.create_task(db.store_crime_event(e, miner_uid=uid)) for e, uid in calls]
            await asyncio.sleep(0)  # every task has run up to its first wait: sent alone, or queued
            for task in tasks[10:20]:
                task.cancel()
            return await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await db.close()

    got = run(go())
    assert all(isinstance(x, asyncio.CancelledError) for x in got[10:20])
    kept = got[:10] + got[20:]
    assert all(isinstance(x, uuid.UUID) for x in kept), kept
    stored = {r[0] for r in conn.execute("SELECT event_id FROM crime_events").fetchall()}
    assert set(kept) <= stored and len(stored) <= CALLS
