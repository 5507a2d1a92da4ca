"""crime_incidents is kept current by the triggers on crime_events (migration 20261130045000), and
incident_cell_days (migration 20261130073000) and incident_cell_hours (20261130150000) with it.

After any sequence of writes, both tables equal a recomputation from crime_events (``luminar_rebuild_incidents()``
changes nothing), the hotspot listing read from the cell-days equals the grouping of the window's incidents, and two
writers verifying events of one incident at the same moment both count.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timedelta

import psycopg
import pytest
from _async import clock

NOW: datetime = None  # type: ignore[assignment]  # when the running test started: set by _clock, never at import
_clock = clock(globals())

INSERT = ("INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
          "confidence_score, verification_status, verification_score, related_reports) "
          "VALUES (%s, %s, %s, %s, %s, %s, 0.8, %s, %s, %s) RETURNING event_id")
# The table recomputed from scratch, as the first form of luminar_incidents did it: the one check of every state.
FROM_SCRATCH = """
SELECT DISTINCT ON (k.key) k.key, e.event_id, (count(*) OVER (PARTITION BY k.key))::integer, e.latitude,
       e.longitude, e."timestamp", e.event_type, e.severity_level
  FROM crime_events AS e
 CROSS JOIN LATERAL (SELECT luminar_incident_key(e.related_reports, e.event_id) AS key) AS k
 WHERE e.verification_status = 'verified' AND e.latitude IS NOT NULL
 ORDER BY k.key, e.verification_score DESC NULLS LAST, e.created_at, e.event_id
"""
TABLE = ("SELECT incident_key, event_id, events, latitude, longitude, \"timestamp\", event_type, severity_level "
         "FROM crime_incidents ORDER BY incident_key")
# The cell-days recomputed from the incidents (400 m cells, UTC days).
CELL_DAYS_FROM_SCRATCH = """
SELECT (i."timestamp" AT TIME ZONE 'UTC')::date, floor(i.grid_y / 400)::integer, floor(i.grid_x / 400)::integer,
       count(*)::integer, coalesce(sum(i.severity_level), 0)::integer, count(i.severity_level)::integer,
       max(i.severity_level), min(i."timestamp"), max(i."timestamp"),
       array_agg(DISTINCT i.event_type ORDER BY i.event_type)
  FROM crime_incidents AS i
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
"""
CELL_DAYS = ("SELECT day, cell_row, cell_col, incidents, severity_sum, severity_n, max_severity, first_seen, "
             "last_seen, crime_types FROM incident_cell_days ORDER BY 1, 2, 3")
# The cell-hours recomputed from the incidents (400 m cells, UTC hours).
CELL_HOURS_FROM_SCRATCH = """
SELECT floor(i.grid_y / 400)::integer, floor(i.grid_x / 400)::integer,
       date_trunc('hour', i."timestamp" AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', count(*)::integer,
       coalesce(sum(i.severity_level), 0)::integer, count(i.severity_level)::integer, max(i.severity_level),
       min(i."timestamp"), max(i."timestamp"), array_agg(DISTINCT i.event_type ORDER BY i.event_type)
  FROM crime_incidents AS i
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
"""
CELL_HOURS = ("SELECT cell_row, cell_col, hour, incidents, severity_sum, severity_n, max_severity, first_seen, "
              "last_seen, crime_types FROM incident_cell_hours ORDER BY 1, 2, 3")
# The hotspot listing as the grouping of the window's incidents (every cell, in the hotspot order).
HOTSPOTS_FROM_SCRATCH = """
SELECT round(ST_Y(centre.p)::numeric, 6)::double precision, round(ST_X(centre.p)::numeric, 6)::double precision,
       h.n, h.avg_severity, h.max_severity, h.crime_types, h.first_seen, h.last_seen
  FROM (SELECT floor(i.grid_y / 400)::integer AS r, floor(i.grid_x / 400)::integer AS c, count(*) AS n,
               round(avg(i.severity_level), 2) AS avg_severity, max(i.severity_level) AS max_severity,
               array_agg(DISTINCT i.event_type ORDER BY i.event_type) AS crime_types,
               min(i."timestamp") AS first_seen, max(i."timestamp") AS last_seen
          FROM crime_incidents AS i
         WHERE i."timestamp" >= now() - make_interval(days => %(days)s)
         GROUP BY 1, 2) AS h
 CROSS JOIN LATERAL (SELECT ST_Transform(ST_SetSRID(ST_MakePoint((h.c + 0.5) * 400, (h.r + 0.5) * 400), 6933),
                                         4326) AS p) AS centre
 ORDER BY h.n DESC, h.last_seen DESC, h.r, h.c
"""


def reports(conn, n: int) -> list[uuid.UUID]:
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO raw_incident_reports (external_id, text_description, latitude, longitude, "
                        "\"timestamp\") VALUES (%s, 'seen', 40.7, -74.0, %s)",
                        [(f"r-{uuid.uuid4().hex[:8]}", NOW - timedelta(hours=1)) for _ in range(n)])
    return [r[0] for r in conn.execute("SELECT report_id FROM raw_incident_reports").fetchall()]


def current(conn) -> bool:
    return (conn.execute(TABLE).fetchall() == sorted(conn.execute(FROM_SCRATCH).fetchall())
            and conn.execute(CELL_DAYS).fetchall() == conn.execute(CELL_DAYS_FROM_SCRATCH).fetchall()
            and conn.execute(CELL_HOURS).fetchall() == conn.execute(CELL_HOURS_FROM_SCRATCH).fetchall())


def hotspots_match(conn) -> None:
    for days in (1, 2, 7, 30):
        listed = conn.execute("SELECT * FROM crime_hotspots_since(%s, 400, 1, NULL)", (days,)).fetchall()
        assert listed == conn.execute(HOTSPOTS_FROM_SCRATCH, {"days": days}).fetchall(), f"{days} days"
        assert listed or days == 1


def test_after_every_kind_of_write_the_table_equals_a_recomputation(conn):
    rng = random.Random(12)
    ids = reports(conn, 6)
    events: list[uuid.UUID] = []

    def insert_many(n: int) -> None:
        with conn.transaction(), conn.cursor() as cur:
            for _ in range(n):
                related = rng.sample(ids, rng.choice([0, 1, 1, 2, 3]))
                cur.execute(INSERT, (rng.randint(1, 4), rng.choice(["theft", "assault"]),
                                     40.7 + rng.uniform(-0.02, 0.02), -74.0 + rng.uniform(-0.02, 0.02),
                                     NOW - timedelta(hours=rng.uniform(0, 200)), rng.randint(1, 5),
                                     rng.choice(["verified", "pending", "rejected"]),
                                     rng.choice([None, 0.5, 0.9]), related))
                events.append(cur.fetchone()[0])

    steps = [
        lambda: insert_many(30),
        lambda: conn.execute("UPDATE crime_events SET verification_status = 'verified', verification_score = 0.95 "
                             "WHERE event_id = ANY(%s)", (rng.sample(events, 8),)),
        lambda: conn.execute("UPDATE crime_events SET verification_status = 'disputed' WHERE event_id = ANY(%s)",
                             (rng.sample(events, 5),)),
        lambda: conn.execute("UPDATE crime_events SET latitude = latitude + 0.01 WHERE event_id = ANY(%s)",
                             (rng.sample(events, 5),)),
        lambda: conn.execute("UPDATE crime_events SET related_reports = %s WHERE event_id = ANY(%s)",
                             (rng.sample(ids, 2), rng.sample(events, 4))),
        lambda: conn.execute("UPDATE crime_events SET latitude = NULL, longitude = NULL, location_source = NULL "
                             "WHERE event_id = ANY(%s)", (rng.sample(events, 2),)),
        lambda: conn.execute("UPDATE crime_events SET title = 'seen again' WHERE event_id = ANY(%s)",
                             (rng.sample(events, 10),)),
        lambda: conn.execute("DELETE FROM crime_events WHERE event_id = ANY(%s)", (rng.sample(events, 4),)),
    ]
    for i, step in enumerate(steps * 3):
        step()
        events[:] = [r[0] for r in conn.execute("SELECT event_id FROM crime_events").fetchall()]
        assert current(conn), f"step {i % len(steps)} of round {i // len(steps)}"
    hotspots_match(conn)
    assert conn.execute("SELECT luminar_rebuild_incidents()").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM crime_incidents").fetchone()[0] > 10
    assert conn.execute("SELECT max(events) FROM crime_incidents").fetchone()[0] > 1  # shared reports merged
    assert conn.execute("SELECT count(DISTINCT day) FROM incident_cell_days").fetchone()[0] >= 3  # several days
    conn.execute("TRUNCATE crime_events CASCADE")
    assert conn.execute("SELECT count(*) FROM crime_incidents").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM incident_cell_days").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM incident_cell_hours").fetchone()[0] == 0


def test_a_drifted_table_is_put_right_by_the_rebuild(conn):
    with conn.cursor() as cur:
        for i in range(4):
            cur.execute(INSERT, (1, "theft", 40.7 + i / 100, -74.0, NOW - timedelta(hours=1), 3, "verified", 0.9, []))
    keys = [r[0] for r in conn.execute("SELECT incident_key FROM crime_incidents ORDER BY incident_key")]
    conn.execute("DELETE FROM crime_incidents WHERE incident_key = %s", (keys[0],))
    conn.execute("UPDATE crime_incidents SET events = 7 WHERE incident_key = %s", (keys[-1],))
    assert not current(conn)
    assert conn.execute("SELECT luminar_rebuild_incidents()").fetchone()[0] == 2
    assert current(conn)
    conn.execute("DELETE FROM incident_cell_days WHERE ctid = (SELECT min(ctid) FROM incident_cell_days)")
    conn.execute("UPDATE incident_cell_days SET crime_types = '{arson}' "
                 "WHERE ctid = (SELECT max(ctid) FROM incident_cell_days)")
    assert not current(conn)
    assert conn.execute("SELECT luminar_rebuild_cell_days()").fetchone()[0] == 2
    assert current(conn)
    conn.execute("DELETE FROM incident_cell_hours WHERE ctid = (SELECT min(ctid) FROM incident_cell_hours)")
    conn.execute("UPDATE incident_cell_hours SET incidents = 9 "
                 "WHERE ctid = (SELECT max(ctid) FROM incident_cell_hours)")
    assert not current(conn)
    assert conn.execute("SELECT luminar_rebuild_cell_days()").fetchone()[0] == 2  # the hours; their days were right
    assert current(conn)


def test_two_writers_verifying_one_incident_at_once_both_count(db_conninfo, conn):
    report = reports(conn, 1)[0]
    first, second = (conn.execute(INSERT, (m, "robbery", 40.71, -74.0, NOW - timedelta(hours=1), 4, "pending",
                                           None, [report])).fetchone()[0] for m in (1, 2))
    verify = "UPDATE crime_events SET verification_status = 'verified', verification_score = %s WHERE event_id = %s"
    with psycopg.connect(db_conninfo) as one, psycopg.connect(db_conninfo) as two:
        one.execute(verify, (0.7, first))  # holds the incident's lock until it commits
        failure: list[BaseException] = []

        def second_writer() -> None:
            try:
                two.execute(verify, (0.9, second))
                two.commit()
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                failure.append(exc)

        writer = threading.Thread(target=second_writer)
        writer.start()
        deadline = time.monotonic() + 60
        while not conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                               ).fetchone()[0]:
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            time.sleep(0.05)
        one.commit()
        writer.join(60)
        assert not writer.is_alive() and not failure
    row = conn.execute("SELECT event_id, events FROM crime_incidents WHERE incident_key = %s", (report,)).fetchone()
    assert row == (second, 2)  # both verified events, the higher score represents the incident
    assert current(conn)


@pytest.mark.parametrize("role", ["luminar_miner", "luminar_reader"])
def test_no_node_writes_the_table_and_the_public_reader_does_not_read_it(conn, role):
    may = conn.execute("SELECT has_table_privilege(%s, 'crime_incidents', 'SELECT'), "
                       "has_table_privilege(%s, 'crime_incidents', 'INSERT'), "
                       "has_function_privilege(%s, 'luminar_refresh_incidents(uuid[])', 'EXECUTE')",
                       (role, role, role)).fetchone()
    assert may == ((role == "luminar_miner"), False, False)
    may = conn.execute("SELECT has_table_privilege(%s, 'incident_cell_days', 'SELECT') "
                       "AND has_table_privilege(%s, 'incident_cell_hours', 'SELECT'), "
                       "has_table_privilege(%s, 'incident_cell_days', 'UPDATE') "
                       "OR has_table_privilege(%s, 'incident_cell_hours', 'UPDATE'), "
                       "has_function_privilege(%s, 'luminar_refresh_cell_hours(timestamptz[], integer[], integer[])', "
                       "'EXECUTE')", (role,) * 5).fetchone()
    assert may == ((role == "luminar_miner"), False, False)


SKEWED = ("INSERT INTO crime_events (miner_uid, event_type, latitude, longitude, \"timestamp\", severity_level, "
          "confidence_score, verification_status, verification_score) "
          "SELECT 1, t, lat, lng, at, sev, 0.8, 'verified', 0.9 "
          "FROM unnest(%s::text[], %s::float8[], %s::float8[], %s::timestamptz[], %s::smallint[]) "
          "AS g (t, lat, lng, at, sev)")


# The cell-days read so far in this transaction, by any scan of the table or its indexes.
CELL_DAYS_READ = ("SELECT sum(pg_stat_get_xact_tuples_returned(r)) FROM unnest(ARRAY['incident_cell_days', "
                  "'incident_cell_days_pkey', 'idx_cell_days_cell', 'idx_cell_days_top']::regclass[]) AS r")


def test_the_top_cells_are_found_without_summing_every_cell_and_equal_the_full_grouping(conn):
    # Hot places of very different sizes over ten days (a few busy days each) in uniform noise: the listing with a
    # limit finds its top cells from the biggest cell-days (migration 20261130101500); every limit, threshold and
    # window must give the first rows of the grouping of the window's incidents.
    rng = random.Random(31)
    rows: list[tuple] = []
    for rank in range(1, 26):
        lat, lng = 40.7 + rng.uniform(-0.1, 0.1), -74.0 + rng.uniform(-0.1, 0.1)
        busy = [rng.uniform(0, 240) for _ in range(3)]
        for _ in range(200 // rank):
            hours = rng.choice(busy) + rng.uniform(-6, 6) if rng.random() < 0.7 else rng.uniform(0, 240)
            rows.append((rng.choice(["theft", "assault", "burglary"]), lat + rng.uniform(-0.001, 0.001),
                         lng + rng.uniform(-0.001, 0.001), NOW - timedelta(hours=max(hours, 0)),
                         rng.choice([None, 1, 3, 5])))
    for _ in range(1500):
        rows.append((rng.choice(["theft", "vandalism"]), 40.7 + rng.uniform(-0.1, 0.1),
                     -74.0 + rng.uniform(-0.1, 0.1), NOW - timedelta(hours=rng.uniform(0, 240)), rng.randint(1, 5)))
    conn.execute(SKEWED, [list(column) for column in zip(*rows, strict=True)])
    conn.execute("ANALYZE incident_cell_days")

    for days in (1, 2, 3, 7, 30):
        for min_incidents in (1, 2, 4):
            with conn.transaction():  # one now() for the listing and the grouping
                # Index plans, as the planner makes on a big table (on this small one it scans): the cell-days
                # read are then those the listing asks for.
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute("SET LOCAL enable_hashjoin = off")
                window = conn.execute("SELECT count(*) FROM incident_cell_days "
                                      "WHERE day >= (now() - make_interval(days => %s))::date", (days,)).fetchone()[0]
                every = [r for r in conn.execute(HOTSPOTS_FROM_SCRATCH, {"days": days}).fetchall()
                         if r[2] >= min_incidents]
                for limit in (1, 2, 3, 5, 10, 40):
                    before = conn.execute(CELL_DAYS_READ).fetchone()[0]
                    listed = conn.execute("SELECT * FROM crime_hotspots_since(%s, 400, %s, %s)",
                                          (days, min_incidents, limit)).fetchall()
                    read = conn.execute(CELL_DAYS_READ).fetchone()[0] - before
                    assert listed == every[:limit], f"{days} days, at least {min_incidents}, limit {limit}"
                    if days > 1 and limit <= 5:  # a few big cells: their candidates, not the window
                        assert read < window / 2, f"{days} days, limit {limit}: {read} of {window} cell-days read"
    # The data is what the test needs: the busiest cell holds over a hundred incidents, a thousand cells hold one.
    every = conn.execute(HOTSPOTS_FROM_SCRATCH, {"days": 30}).fetchall()
    assert every[0][2] >= 100 and len(every) > 1000


# The incidents read so far in this transaction, by any scan of crime_incidents or its cell index.
INCIDENTS_READ = ("SELECT sum(pg_stat_get_xact_tuples_returned(r)) "
                  "FROM unnest(ARRAY['crime_incidents', 'idx_incidents_cell_day']::regclass[]) AS r")


def test_the_partial_first_day_is_read_from_cell_hours_but_for_its_first_partial_hour(conn):
    # The window's first, partial day [now() - 7 days, next UTC midnight) is read as the cell-hours of its whole
    # hours and the incidents of its first, partial hour only (migration 20261130150000): one busy cell, an incident
    # every 10 s in the whole hours (360 an hour) and every 5 min in the partial hour (at most 12), each of those
    # read once for every round of candidates and once for the listed cell.
    with conn.transaction():  # one now() for the data and the listing
        now = conn.execute("SELECT now()").fetchone()[0]
        since = now - timedelta(days=7)
        hour_start = since.replace(minute=0, second=0, microsecond=0)
        hour_start += timedelta(hours=1) if hour_start < since else timedelta(0)
        day_start = datetime.combine(since.date() + timedelta(days=1), datetime.min.time(), since.tzinfo)
        times = [since + timedelta(minutes=5 * i) for i in range(12) if since + timedelta(minutes=5 * i) < hour_start]
        whole = int((day_start - hour_start).total_seconds()) // 10
        times += [hour_start + timedelta(seconds=10 * i) for i in range(whole)]
        times += [now - timedelta(hours=h) for h in range(1, 100, 3)]  # whole days
        times.append(since - timedelta(minutes=1))  # outside the window
        n = len(times)
        conn.execute(SKEWED, (["theft"] * n, [40.7101] * n, [-74.0001] * n, times, [3] * n))
        conn.execute("SET LOCAL enable_seqscan = off")
        before = conn.execute(INCIDENTS_READ).fetchone()[0]
        listed = conn.execute("SELECT * FROM crime_hotspots_since(7, 400, 1, 1)").fetchall()
        read = conn.execute(INCIDENTS_READ).fetchone()[0] - before
        assert [r[2] for r in listed] == [n - 1]
        assert (listed[0][6], listed[0][7]) == (min(t for t in times if t >= since), max(times))
        assert read <= 8 * 12, f"{read} incidents read, {whole} in the whole hours of the partial day"
