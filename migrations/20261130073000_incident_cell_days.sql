-- Migration: incident_cell_days
-- Created:   2026-11-30 07:30:00 (UTC)
--
-- The hotspot listing from per-cell, per-day counts kept current.
--
-- Why. crime_hotspots_since(7) grouped every incident of the window by cell: 139,000 incidents at 1M events, 344 ms
-- (the goal is 100 ms), and ten times the rows at ten times the events. The counts now live per cell of the default
-- size (luminar_hotspot_cell_m(): 400 m, luminar_store.limits.DEFAULT_CELL_M) and per UTC day in
-- incident_cell_days: at 1M events the 7-day window is 60,700 cell-days instead of 139,000 incidents, and a cell's
-- row count is bounded by the days of the window however busy the cell is.
--
-- incident_cell_days: one row per (day, cell) holding at least one incident (an incident's day is the UTC date of
-- its time, luminar_incident_day; its cell luminar_cell_index of its grid position): incidents, the sum and count
-- of the severities given (avg_severity divides them, as avg() over the incidents does), the highest severity, the
-- first and last incident time, and the distinct crime types (sorted).
--
-- Kept current. luminar_refresh_incidents, the one writer of crime_incidents, now also recomputes the cell-days of
-- the incidents it changed (their old and new cell-day) from crime_incidents (idx_incidents_cell_day), under a
-- transaction advisory lock per cell-day bucket (key 1818585413, luminar_incident_buckets() buckets, in order),
-- taken after the incident buckets: as for incidents, a writer waiting for a bucket recomputes, in a later
-- statement, from what the holder committed. TRUNCATE of crime_events empties it; luminar_rebuild_incidents()
-- recomputes it whole (and returns its changed rows too).
--
-- Reading. crime_hotspots_since(days, 400, ...) sums the cell-days of the whole UTC days after the window's start
-- with the incidents of the window's first, partial day (at most one day of crime_incidents, through its time
-- index), then orders and limits as before; the crime types are gathered for the cells returned only. The result
-- equals the grouping of the window's incidents (tests/test_hotspot_cell_days.py compares both over random data
-- and windows); another cell size groups incidents, as before. Always current: a verified event counts at once.
--
-- Real-time copies apply changes without firing triggers: the table is in the publication, as crime_incidents.
--
-- The analysis run's lock (luminar_store.analysis.analyze.RUN_LOCK) was (1818585412, 2), an incident bucket: a
-- write to an incident of bucket 2 waited for a whole analyze run. It is (1818585414, 1) now (Python side).

-- migrate:up
CREATE FUNCTION luminar_hotspot_cell_m() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 400::double precision $$;

-- An incident's day: the UTC date of its time.
CREATE FUNCTION luminar_incident_day(p_at timestamptz) RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT (p_at AT TIME ZONE 'UTC')::date $$;

CREATE TABLE incident_cell_days (
    day           date        NOT NULL,
    cell_row      integer     NOT NULL,
    cell_col      integer     NOT NULL,
    incidents     integer     NOT NULL CHECK (incidents >= 1),
    severity_sum  integer     NOT NULL,
    severity_n    integer     NOT NULL,
    max_severity  smallint,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    crime_types   text[]      NOT NULL,
    PRIMARY KEY (day, cell_row, cell_col)
);
-- One cell's days (the crime types of a returned cell).
CREATE INDEX idx_cell_days_cell ON incident_cell_days (cell_row, cell_col, day);
-- The incidents of one cell-day (the recompute) and of one cell in a time range (the partial first day's types).
CREATE INDEX idx_incidents_cell_day ON crime_incidents
    (luminar_cell_index(grid_y, luminar_hotspot_cell_m()), luminar_cell_index(grid_x, luminar_hotspot_cell_m()),
     "timestamp");

-- Recompute the given cell-days (parallel arrays) from crime_incidents; returns the rows inserted, updated or
-- deleted.
CREATE FUNCTION luminar_refresh_cell_days(p_days date[], p_rows integer[], p_cols integer[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
BEGIN
    IF p_days IS NULL OR cardinality(p_days) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1818585413, b)
       FROM (SELECT DISTINCT abs(hashtextextended(concat_ws('/', g.d, g.r, g.c), 0)
                                 % luminar_incident_buckets())::integer AS b
               FROM unnest(p_days, p_rows, p_cols) AS g (d, r, c)) AS buckets
      ORDER BY b;
    -- A new statement: it sees what a writer that held a bucket before us committed. Every cell-day given gets a
    -- row in `fresh`, with 0 incidents when none is left (deleted): no join of two unindexed sets here, which the
    -- planner, unable to see how many cell-days the arrays hold, made nested loops (a bulk store of 50,000 events
    -- paid 15,000 x 15,000 comparisons).
    WITH groups AS (
        SELECT DISTINCT g.d AS day, g.r AS cell_row, g.c AS cell_col
          FROM unnest(p_days, p_rows, p_cols) AS g (d, r, c)
    ), fresh AS (
        SELECT g.day, g.cell_row, g.cell_col, count(i."timestamp")::integer AS incidents,
               coalesce(sum(i.severity_level), 0)::integer AS severity_sum,
               count(i.severity_level)::integer AS severity_n, max(i.severity_level) AS max_severity,
               min(i."timestamp") AS first_seen, max(i."timestamp") AS last_seen,
               array_agg(DISTINCT i.event_type ORDER BY i.event_type)
                   FILTER (WHERE i.event_type IS NOT NULL) AS crime_types
          FROM groups AS g
          LEFT JOIN crime_incidents AS i
            ON luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()) = g.cell_row
           AND luminar_cell_index(i.grid_x, luminar_hotspot_cell_m()) = g.cell_col
           AND i."timestamp" >= (g.day::timestamp AT TIME ZONE 'UTC')
           AND i."timestamp" < ((g.day + 1)::timestamp AT TIME ZONE 'UTC')
         GROUP BY g.day, g.cell_row, g.cell_col
    ), gone AS (
        DELETE FROM incident_cell_days AS s
         USING fresh AS f
         WHERE f.incidents = 0 AND s.day = f.day AND s.cell_row = f.cell_row AND s.cell_col = f.cell_col
        RETURNING 1
    ), kept AS (
        INSERT INTO incident_cell_days AS s (day, cell_row, cell_col, incidents, severity_sum, severity_n,
                                             max_severity, first_seen, last_seen, crime_types)
        SELECT * FROM fresh AS f WHERE f.incidents > 0
        ON CONFLICT (day, cell_row, cell_col) DO UPDATE
           SET incidents = excluded.incidents, severity_sum = excluded.severity_sum,
               severity_n = excluded.severity_n, max_severity = excluded.max_severity,
               first_seen = excluded.first_seen, last_seen = excluded.last_seen, crime_types = excluded.crime_types
         WHERE (s.incidents, s.severity_sum, s.severity_n, s.max_severity, s.first_seen, s.last_seen, s.crime_types)
               IS DISTINCT FROM (excluded.incidents, excluded.severity_sum, excluded.severity_n,
                                 excluded.max_severity, excluded.first_seen, excluded.last_seen,
                                 excluded.crime_types)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM kept) INTO v_changed;
    RETURN v_changed;
END
$$;

-- As before (20261130045000), and the cell-days of the incidents changed: those they left and those they are in.
CREATE OR REPLACE FUNCTION luminar_refresh_incidents(p_keys uuid[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
    v_days    date[];
    v_rows    integer[];
    v_cols    integer[];
BEGIN
    IF p_keys IS NULL OR cardinality(p_keys) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1818585412, b)
       FROM (SELECT DISTINCT abs(hashtextextended(k::text, 0) % luminar_incident_buckets())::integer AS b
               FROM unnest(p_keys) AS k) AS buckets
      ORDER BY b;
    -- A new statement: it sees what a writer that held a bucket before us committed. `before` reads the incidents
    -- as they were when the statement began (every part of one statement sees the same snapshot).
    WITH keys AS (
        SELECT DISTINCT k FROM unnest(p_keys) AS k
    ), before AS (
        SELECT ci.grid_x, ci.grid_y, ci."timestamp"
          FROM crime_incidents AS ci JOIN keys ON ci.incident_key = keys.k
    ), fresh AS (
        SELECT DISTINCT ON (m.key) m.key, e.event_id, (count(*) OVER (PARTITION BY m.key))::integer AS events,
               e.latitude, e.longitude, xy.grid_x, xy.grid_y, e."timestamp", e.event_type, e.severity_level,
               e.cell_row, e.cell_col
          FROM keys
          JOIN crime_events AS e
            ON luminar_incident_key(e.related_reports, e.event_id) = keys.k
           AND e.verification_status = 'verified' AND e.latitude IS NOT NULL
         CROSS JOIN LATERAL (SELECT keys.k AS key) AS m
         CROSS JOIN LATERAL luminar_grid_xy(e.geotag) AS xy
         ORDER BY m.key, e.verification_score DESC NULLS LAST, e.created_at, e.event_id
    ), gone AS (
        DELETE FROM crime_incidents AS ci
         USING keys
         WHERE ci.incident_key = keys.k
           AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.key = ci.incident_key)
        RETURNING 1
    ), kept AS (
        INSERT INTO crime_incidents AS ci (incident_key, event_id, events, latitude, longitude, grid_x, grid_y,
                                           "timestamp", event_type, severity_level, cell_row, cell_col)
        SELECT * FROM fresh
        ON CONFLICT (incident_key) DO UPDATE
           SET event_id = excluded.event_id, events = excluded.events, latitude = excluded.latitude,
               longitude = excluded.longitude, grid_x = excluded.grid_x, grid_y = excluded.grid_y,
               "timestamp" = excluded."timestamp", event_type = excluded.event_type,
               severity_level = excluded.severity_level, cell_row = excluded.cell_row, cell_col = excluded.cell_col
         WHERE (ci.event_id, ci.events, ci.latitude, ci.longitude, ci."timestamp", ci.event_type, ci.severity_level)
               IS DISTINCT FROM (excluded.event_id, excluded.events, excluded.latitude, excluded.longitude,
                                 excluded."timestamp", excluded.event_type, excluded.severity_level)
        RETURNING 1
    ), touched AS (
        -- every incident refreshed, where it was and where it is (a cell-day unchanged is recomputed to the same
        -- row and not written)
        SELECT b.grid_x, b.grid_y, b."timestamp" FROM before AS b
        UNION
        SELECT f.grid_x, f.grid_y, f."timestamp" FROM fresh AS f
    ), cell_days AS (
        SELECT DISTINCT luminar_incident_day(t."timestamp") AS day,
               luminar_cell_index(t.grid_y, luminar_hotspot_cell_m()) AS cell_row,
               luminar_cell_index(t.grid_x, luminar_hotspot_cell_m()) AS cell_col
          FROM touched AS t
    )
    SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM kept),
           (SELECT array_agg(c.day) FROM cell_days AS c), (SELECT array_agg(c.cell_row) FROM cell_days AS c),
           (SELECT array_agg(c.cell_col) FROM cell_days AS c)
      INTO v_changed, v_days, v_rows, v_cols;
    PERFORM luminar_refresh_cell_days(v_days, v_rows, v_cols);
    RETURN v_changed;
END
$$;

CREATE OR REPLACE FUNCTION luminar_incidents_on_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    TRUNCATE crime_incidents, incident_cell_days;
    RETURN NULL;
END
$$;

-- Every cell-day recomputed from crime_incidents (after a restore, or to check it): the rows changed.
CREATE FUNCTION luminar_rebuild_cell_days() RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
BEGIN
    LOCK TABLE incident_cell_days IN SHARE ROW EXCLUSIVE MODE;
    SELECT luminar_refresh_cell_days(array_agg(g.day), array_agg(g.cell_row), array_agg(g.cell_col))
      INTO v_changed
      FROM (SELECT s.day, s.cell_row, s.cell_col FROM incident_cell_days AS s
            UNION
            SELECT luminar_incident_day(i."timestamp"), luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()),
                   luminar_cell_index(i.grid_x, luminar_hotspot_cell_m())
              FROM crime_incidents AS i) AS g;
    RETURN coalesce(v_changed, 0);
END
$$;

-- As before, and then the cell-days: the incident rows changed plus the cell-day rows changed.
CREATE OR REPLACE FUNCTION luminar_rebuild_incidents() RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
BEGIN
    LOCK TABLE crime_incidents IN SHARE ROW EXCLUSIVE MODE;
    SELECT luminar_refresh_incidents(array_agg(k)) INTO v_changed
      FROM (SELECT incident_key AS k FROM crime_incidents
            UNION
            SELECT luminar_incident_key(related_reports, event_id) FROM crime_events
             WHERE verification_status = 'verified' AND latitude IS NOT NULL) AS keys;
    RETURN coalesce(v_changed, 0) + luminar_rebuild_cell_days();
END
$$;

DROP VIEW crime_hotspots;
-- As before (20261130045000); for cells of luminar_hotspot_cell_m() from incident_cell_days (see the header).
CREATE OR REPLACE FUNCTION crime_hotspots_since(p_days integer, p_cell_m double precision DEFAULT 400,
                                                p_min_incidents integer DEFAULT 1, p_limit integer DEFAULT NULL)
RETURNS TABLE (
    latitude        double precision,
    longitude       double precision,
    incident_count  bigint,
    avg_severity    numeric,
    max_severity    smallint,
    crime_types     text[],
    first_seen      timestamptz,
    last_seen       timestamptz
)
-- No JIT: compiling the listing's plan cost more than running it (67 ms with, 40 ms without at 400,000 events).
LANGUAGE plpgsql STABLE PARALLEL SAFE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_since      timestamptz := now() - make_interval(days => p_days);
    v_first_day  date;         -- the first whole UTC day of the window
    v_day_start  timestamptz;  -- its start: the window's partial first day is [v_since, v_day_start)
BEGIN
    IF p_cell_m IS DISTINCT FROM luminar_hotspot_cell_m() THEN
        RETURN QUERY
        SELECT ctr.latitude, ctr.longitude, h.incident_count, h.avg_severity, h.max_severity, h.crime_types,
               h.first_seen, h.last_seen
          FROM (SELECT luminar_cell_index(i.grid_y, p_cell_m) AS cell_row,
                       luminar_cell_index(i.grid_x, p_cell_m) AS cell_col,
                       count(*) AS incident_count, round(avg(i.severity_level), 2) AS avg_severity,
                       max(i.severity_level) AS max_severity,
                       array_agg(DISTINCT i.event_type ORDER BY i.event_type) AS crime_types,
                       min(i."timestamp") AS first_seen, max(i."timestamp") AS last_seen
                  FROM crime_incidents AS i
                 WHERE i."timestamp" >= v_since
                 GROUP BY 1, 2
                HAVING count(*) >= p_min_incidents
                 ORDER BY count(*) DESC, max(i."timestamp") DESC, 1, 2
                 LIMIT p_limit) AS h
         CROSS JOIN LATERAL luminar_cell_centre(h.cell_row, h.cell_col, p_cell_m) AS ctr
         ORDER BY h.incident_count DESC, h.last_seen DESC, h.cell_row, h.cell_col;
        RETURN;
    END IF;
    v_first_day := luminar_incident_day(v_since) + 1;
    v_day_start := v_first_day::timestamp AT TIME ZONE 'UTC';
    RETURN QUERY
    WITH parts AS (
        -- integers: sum(integer) adds in bigint, sum(bigint) would add in numeric (twice the grouping time)
        SELECT s.cell_row, s.cell_col, s.incidents AS n, s.severity_sum, s.severity_n, s.max_severity, s.first_seen,
               s.last_seen
          FROM incident_cell_days AS s
         WHERE s.day >= v_first_day
        UNION ALL
        SELECT luminar_cell_index(i.grid_y, p_cell_m), luminar_cell_index(i.grid_x, p_cell_m), 1,
               coalesce(i.severity_level, 0)::integer, (i.severity_level IS NOT NULL)::integer,
               i.severity_level, i."timestamp", i."timestamp"
          FROM crime_incidents AS i
         WHERE i."timestamp" >= v_since AND i."timestamp" < v_day_start
    ), h AS (
        SELECT p.cell_row, p.cell_col, sum(p.n) AS incident_count,
               round(sum(p.severity_sum)::numeric / nullif(sum(p.severity_n), 0), 2) AS avg_severity,
               max(p.max_severity) AS max_severity, min(p.first_seen) AS first_seen, max(p.last_seen) AS last_seen
          FROM parts AS p
         GROUP BY p.cell_row, p.cell_col
        HAVING sum(p.n) >= p_min_incidents
         ORDER BY sum(p.n) DESC, max(p.last_seen) DESC, p.cell_row, p.cell_col
         LIMIT p_limit
    )
    SELECT ctr.latitude, ctr.longitude, h.incident_count, h.avg_severity, h.max_severity, t.crime_types,
           h.first_seen, h.last_seen
      FROM h
     CROSS JOIN LATERAL luminar_cell_centre(h.cell_row, h.cell_col, p_cell_m) AS ctr
     CROSS JOIN LATERAL (
        SELECT array_agg(DISTINCT x.t ORDER BY x.t) AS crime_types
          FROM (SELECT unnest(s.crime_types) AS t
                  FROM incident_cell_days AS s
                 WHERE s.cell_row = h.cell_row AND s.cell_col = h.cell_col AND s.day >= v_first_day
                UNION ALL
                SELECT i.event_type
                  FROM crime_incidents AS i
                 WHERE luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()) = h.cell_row
                   AND luminar_cell_index(i.grid_x, luminar_hotspot_cell_m()) = h.cell_col
                   AND i."timestamp" >= v_since AND i."timestamp" < v_day_start) AS x) AS t
     ORDER BY h.incident_count DESC, h.last_seen DESC, h.cell_row, h.cell_col;
END
$$;

-- The 7-day hotspots of at least the threshold, in the hotspot order.
CREATE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7, 400, luminar_hotspot_min_incidents());
GRANT SELECT ON crime_hotspots TO luminar_miner, luminar_validator, luminar_analyst;

INSERT INTO incident_cell_days (day, cell_row, cell_col, incidents, severity_sum, severity_n, max_severity,
                                first_seen, last_seen, crime_types)
SELECT luminar_incident_day(i."timestamp"), luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()),
       luminar_cell_index(i.grid_x, luminar_hotspot_cell_m()), count(*), coalesce(sum(i.severity_level), 0),
       count(i.severity_level), max(i.severity_level), min(i."timestamp"), max(i."timestamp"),
       array_agg(DISTINCT i.event_type ORDER BY i.event_type)
  FROM crime_incidents AS i
 GROUP BY 1, 2, 3;

REVOKE ALL ON incident_cell_days FROM PUBLIC;
GRANT SELECT ON incident_cell_days TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync;
REVOKE EXECUTE ON FUNCTION luminar_refresh_cell_days(date[], integer[], integer[]), luminar_rebuild_cell_days()
    FROM PUBLIC;
ALTER PUBLICATION luminar_changes ADD TABLE incident_cell_days;

-- migrate:down
ALTER PUBLICATION luminar_changes DROP TABLE incident_cell_days;
DROP VIEW crime_hotspots;
CREATE OR REPLACE FUNCTION crime_hotspots_since(p_days integer, p_cell_m double precision DEFAULT 400,
                                                p_min_incidents integer DEFAULT 1, p_limit integer DEFAULT NULL)
RETURNS TABLE (
    latitude        double precision,
    longitude       double precision,
    incident_count  bigint,
    avg_severity    numeric,
    max_severity    smallint,
    crime_types     text[],
    first_seen      timestamptz,
    last_seen       timestamptz
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ctr.latitude, ctr.longitude, h.incident_count, h.avg_severity, h.max_severity, h.crime_types,
           h.first_seen, h.last_seen
      FROM (SELECT luminar_cell_index(i.grid_y, p_cell_m) AS cell_row,
                   luminar_cell_index(i.grid_x, p_cell_m) AS cell_col,
                   count(*) AS incident_count, round(avg(i.severity_level), 2) AS avg_severity,
                   max(i.severity_level) AS max_severity,
                   array_agg(DISTINCT i.event_type ORDER BY i.event_type) AS crime_types,
                   min(i."timestamp") AS first_seen, max(i."timestamp") AS last_seen
              FROM crime_incidents AS i
             WHERE i."timestamp" >= now() - make_interval(days => p_days)
             GROUP BY 1, 2
            HAVING count(*) >= p_min_incidents
             ORDER BY count(*) DESC, max(i."timestamp") DESC, 1, 2
             LIMIT p_limit) AS h
     CROSS JOIN LATERAL luminar_cell_centre(h.cell_row, h.cell_col, p_cell_m) AS ctr
     ORDER BY h.incident_count DESC, h.last_seen DESC, h.cell_row, h.cell_col
$$;
CREATE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7, 400, luminar_hotspot_min_incidents());
GRANT SELECT ON crime_hotspots TO luminar_miner, luminar_validator, luminar_analyst;
CREATE OR REPLACE FUNCTION luminar_rebuild_incidents() RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
BEGIN
    LOCK TABLE crime_incidents IN SHARE ROW EXCLUSIVE MODE;
    SELECT luminar_refresh_incidents(array_agg(k)) INTO v_changed
      FROM (SELECT incident_key AS k FROM crime_incidents
            UNION
            SELECT luminar_incident_key(related_reports, event_id) FROM crime_events
             WHERE verification_status = 'verified' AND latitude IS NOT NULL) AS keys;
    RETURN coalesce(v_changed, 0);
END
$$;
DROP FUNCTION luminar_rebuild_cell_days();
CREATE OR REPLACE FUNCTION luminar_incidents_on_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    TRUNCATE crime_incidents;
    RETURN NULL;
END
$$;
CREATE OR REPLACE FUNCTION luminar_refresh_incidents(p_keys uuid[]) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_changed bigint;
BEGIN
    IF p_keys IS NULL OR cardinality(p_keys) = 0 THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(1818585412, b)
       FROM (SELECT DISTINCT abs(hashtextextended(k::text, 0) % luminar_incident_buckets())::integer AS b
               FROM unnest(p_keys) AS k) AS buckets
      ORDER BY b;
    -- A new statement: it sees what a writer that held a bucket before us committed.
    WITH keys AS (
        SELECT DISTINCT k FROM unnest(p_keys) AS k
    ), fresh AS (
        SELECT DISTINCT ON (m.key) m.key, e.event_id, (count(*) OVER (PARTITION BY m.key))::integer AS events,
               e.latitude, e.longitude, xy.grid_x, xy.grid_y, e."timestamp", e.event_type, e.severity_level,
               e.cell_row, e.cell_col
          FROM keys
          JOIN crime_events AS e
            ON luminar_incident_key(e.related_reports, e.event_id) = keys.k
           AND e.verification_status = 'verified' AND e.latitude IS NOT NULL
         CROSS JOIN LATERAL (SELECT keys.k AS key) AS m
         CROSS JOIN LATERAL luminar_grid_xy(e.geotag) AS xy
         ORDER BY m.key, e.verification_score DESC NULLS LAST, e.created_at, e.event_id
    ), gone AS (
        DELETE FROM crime_incidents AS ci
         USING keys
         WHERE ci.incident_key = keys.k
           AND NOT EXISTS (SELECT 1 FROM fresh WHERE fresh.key = ci.incident_key)
        RETURNING 1
    ), kept AS (
        INSERT INTO crime_incidents AS ci (incident_key, event_id, events, latitude, longitude, grid_x, grid_y,
                                           "timestamp", event_type, severity_level, cell_row, cell_col)
        SELECT * FROM fresh
        ON CONFLICT (incident_key) DO UPDATE
           SET event_id = excluded.event_id, events = excluded.events, latitude = excluded.latitude,
               longitude = excluded.longitude, grid_x = excluded.grid_x, grid_y = excluded.grid_y,
               "timestamp" = excluded."timestamp", event_type = excluded.event_type,
               severity_level = excluded.severity_level, cell_row = excluded.cell_row, cell_col = excluded.cell_col
         WHERE (ci.event_id, ci.events, ci.latitude, ci.longitude, ci."timestamp", ci.event_type, ci.severity_level)
               IS DISTINCT FROM (excluded.event_id, excluded.events, excluded.latitude, excluded.longitude,
                                 excluded."timestamp", excluded.event_type, excluded.severity_level)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM kept) INTO v_changed;
    RETURN v_changed;
END
$$;
DROP FUNCTION luminar_refresh_cell_days(date[], integer[], integer[]);
DROP INDEX idx_incidents_cell_day;
DROP TABLE incident_cell_days;
DROP FUNCTION luminar_incident_day(timestamptz);
DROP FUNCTION luminar_hotspot_cell_m();
