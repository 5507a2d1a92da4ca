-- Migration: hotspot_top_cells
-- Created:   2026-11-30 10:15:00 (UTC)
--
-- The hotspot listing finds its top cells without summing every cell of the window.
--
-- Why. crime_hotspots_since(7, 400, 2, 100) summed the window's cell-days of every cell (56,000 rows into 34,000
-- cells at 1M events) to keep 100: 145-150 ms in psql, of which ~90 ms the grouping (the goal is 100 ms), and the
-- rows grow with the events. Most cells of a week hold one or two incidents; the listed ones hold a hundred or more.
--
-- How. A cell none of whose cell-days in the window reaches a floor f holds at most f - 1 incidents a day, so at
-- most days * (f - 1) in the window (days: the window's days with cell-days, its partial first day included).
-- The candidates are the cells with a cell-day of at least f (idx_cell_days_top: the biggest cell-days of a day,
-- read from the index alone); their exact counts come from their own cell-days and the incidents of the partial
-- first day (idx_cell_days_cell and idx_incidents_cell_day, both read from the index alone now). When the limit-th
-- candidate holds more than days * (f - 1), no other cell can enter the list: done. Else the limit-th count found
-- is a lower bound of the true one and gives the floor that lets every cell above it in (the next round ends); with
-- fewer candidates than the limit the floor halves. The first floor is half the limit-th biggest cell-day of the
-- window; a floor of 1 is every cell, the grouping as before (also without a limit). Then the listed cells alone
-- are read in full (severities, times, crime types, centres). Same result as the grouping of the window's
-- incidents (tests/test_incidents.py compares both over skewed random data, limits, thresholds and windows).
--
-- Measured at 1M events (a 20-batch load, vacuumed; psql): 25-38 ms (145-150 ms before); two rounds of 180 and 249
-- candidate cells.
--
-- Cost to writers: cell-day updates change an indexed column now (no HOT update); the cell-day table is small.

-- migrate:up
DROP INDEX idx_cell_days_cell;
-- One cell's days: its counts and last time from the index alone.
CREATE INDEX idx_cell_days_cell ON incident_cell_days (cell_row, cell_col, day) INCLUDE (incidents, last_seen);
-- The biggest cell-days of a day.
CREATE INDEX idx_cell_days_top ON incident_cell_days (day, incidents DESC) INCLUDE (cell_row, cell_col);
-- The incidents of one cell-day (the recompute) and of one cell in a time range (the partial first day), the
-- latter from the index alone (the grid position the cell expressions read is in it).
DROP INDEX idx_incidents_cell_day;
CREATE INDEX idx_incidents_cell_day ON crime_incidents
    (luminar_cell_index(grid_y, luminar_hotspot_cell_m()), luminar_cell_index(grid_x, luminar_hotspot_cell_m()),
     "timestamp") INCLUDE (grid_y, grid_x);

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
-- No JIT: compiling the listing's plans cost more than running them. Plans made for the values at hand: a plan
-- cached for any floor reads every cell-day of the window.
LANGUAGE plpgsql STABLE PARALLEL SAFE SET jit = off SET plan_cache_mode = force_custom_plan AS $$
#variable_conflict use_column
DECLARE
    v_since      timestamptz := now() - make_interval(days => p_days);
    v_first_day  date;         -- the first whole UTC day of the window
    v_day_start  timestamptz;  -- its start: the window's partial first day is [v_since, v_day_start)
    v_days       date[];       -- every day holding cell-days of the window, the partial first day included
    v_floor      integer;      -- cells with a cell-day of at least this many incidents are the candidates
    v_rows       integer[];    -- the cells listed, in order
    v_cols       integer[];
    v_counts     bigint[];
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

    -- The top p_limit cells without summing every cell of the window. A cell none of whose cell-days in the window
    -- reaches v_floor incidents holds at most (v_floor - 1) per day, so at most cardinality(v_days) * (v_floor - 1)
    -- in the window: once the p_limit-th cell among the candidates holds more, no other cell can enter the list.
    -- The first floor is half the p_limit-th biggest cell-day; see the loop for the next ones. A floor of 1 makes
    -- every cell a candidate: the plain grouping below.
    IF p_limit > 0 THEN
        -- The days holding cell-days of the window, and the p_limit-th biggest cell-day among them.
        SELECT array_agg(DISTINCT top.day), (array_agg(top.n ORDER BY top.n DESC))[p_limit]
          INTO v_days, v_floor
          FROM generate_series(v_first_day - 1, (SELECT max(s.day) FROM incident_cell_days AS s), interval '1 day')
               AS d
         CROSS JOIN LATERAL (SELECT s.day, s.incidents AS n
                               FROM incident_cell_days AS s
                              WHERE s.day = d::date
                              ORDER BY s.incidents DESC
                              LIMIT p_limit) AS top;
        v_floor := v_floor / 2;
        WHILE v_floor > 1 LOOP
            SELECT array_agg(t.cell_row ORDER BY t.ord), array_agg(t.cell_col ORDER BY t.ord),
                   array_agg(t.n ORDER BY t.ord)
              INTO v_rows, v_cols, v_counts
              FROM (SELECT c.cell_row, c.cell_col, sum(p.n) AS n,
                           row_number() OVER (ORDER BY sum(p.n) DESC, max(p.last_seen) DESC, c.cell_row, c.cell_col)
                               AS ord
                      FROM (SELECT DISTINCT s.cell_row, s.cell_col
                              FROM incident_cell_days AS s
                             WHERE s.day = ANY (v_days) AND s.incidents >= v_floor) AS c
                     CROSS JOIN LATERAL (
                        SELECT s.incidents AS n, s.last_seen
                          FROM incident_cell_days AS s
                         WHERE s.cell_row = c.cell_row AND s.cell_col = c.cell_col AND s.day >= v_first_day
                        UNION ALL
                        SELECT 1, i."timestamp"
                          FROM crime_incidents AS i
                         WHERE luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()) = c.cell_row
                           AND luminar_cell_index(i.grid_x, luminar_hotspot_cell_m()) = c.cell_col
                           AND i."timestamp" >= v_since AND i."timestamp" < v_day_start) AS p
                     GROUP BY c.cell_row, c.cell_col
                    HAVING sum(p.n) >= p_min_incidents
                     ORDER BY ord
                     LIMIT p_limit) AS t;
            IF coalesce(cardinality(v_counts), 0) < p_limit THEN
                v_floor := v_floor / 2;
            ELSIF v_counts[p_limit] > cardinality(v_days)::bigint * (v_floor - 1) THEN
                EXIT;
            ELSE
                -- The true p_limit-th count is at least the one found: this lower floor lets every cell above it
                -- in, so the next round ends (and the floor drops: v_counts[p_limit] <= days * (v_floor - 1)).
                v_floor := (v_counts[p_limit] - 1) / cardinality(v_days) + 1;
            END IF;
        END LOOP;
    END IF;
    IF v_floor IS NULL OR v_floor <= 1 THEN
        -- every cell of the window: integers, as sum(integer) adds in bigint (sum(bigint) would add in numeric)
        SELECT array_agg(t.cell_row ORDER BY t.ord), array_agg(t.cell_col ORDER BY t.ord)
          INTO v_rows, v_cols
          FROM (SELECT p.cell_row, p.cell_col,
                       row_number() OVER (ORDER BY sum(p.n) DESC, max(p.last_seen) DESC, p.cell_row, p.cell_col)
                           AS ord
                  FROM (SELECT s.cell_row, s.cell_col, s.incidents AS n, s.last_seen
                          FROM incident_cell_days AS s
                         WHERE s.day >= v_first_day
                        UNION ALL
                        SELECT luminar_cell_index(i.grid_y, p_cell_m), luminar_cell_index(i.grid_x, p_cell_m), 1,
                               i."timestamp"
                          FROM crime_incidents AS i
                         WHERE i."timestamp" >= v_since AND i."timestamp" < v_day_start) AS p
                 GROUP BY p.cell_row, p.cell_col
                HAVING sum(p.n) >= p_min_incidents
                 ORDER BY ord
                 LIMIT p_limit) AS t;
    END IF;

    -- The listed cells in full: their cell-days and partial first day, their crime types, their centres.
    RETURN QUERY
    WITH cells AS (
        SELECT * FROM unnest(v_rows, v_cols) WITH ORDINALITY AS c(cell_row, cell_col, ord)
    ), parts AS (
        SELECT c.ord, s.incidents AS n, s.severity_sum, s.severity_n, s.max_severity, s.first_seen, s.last_seen,
               s.crime_types
          FROM cells AS c
          JOIN incident_cell_days AS s ON s.cell_row = c.cell_row AND s.cell_col = c.cell_col
         WHERE s.day >= v_first_day
        UNION ALL
        SELECT c.ord, 1, coalesce(i.severity_level, 0)::integer, (i.severity_level IS NOT NULL)::integer,
               i.severity_level, i."timestamp", i."timestamp", ARRAY[i.event_type]
          FROM cells AS c
          JOIN crime_incidents AS i
            ON luminar_cell_index(i.grid_y, luminar_hotspot_cell_m()) = c.cell_row
           AND luminar_cell_index(i.grid_x, luminar_hotspot_cell_m()) = c.cell_col
         WHERE i."timestamp" >= v_since AND i."timestamp" < v_day_start
    ), h AS (
        SELECT p.ord, sum(p.n) AS incident_count,
               round(sum(p.severity_sum)::numeric / nullif(sum(p.severity_n), 0), 2) AS avg_severity,
               max(p.max_severity) AS max_severity, min(p.first_seen) AS first_seen, max(p.last_seen) AS last_seen
          FROM parts AS p
         GROUP BY p.ord
    ), types AS (
        SELECT p.ord, array_agg(DISTINCT t.t ORDER BY t.t) AS crime_types
          FROM parts AS p
         CROSS JOIN LATERAL unnest(p.crime_types) AS t(t)
         GROUP BY p.ord
    )
    SELECT ctr.latitude, ctr.longitude, h.incident_count, h.avg_severity, h.max_severity, ty.crime_types,
           h.first_seen, h.last_seen
      FROM cells AS c
      JOIN h ON h.ord = c.ord
      JOIN types AS ty ON ty.ord = c.ord
     CROSS JOIN LATERAL luminar_cell_centre(c.cell_row, c.cell_col, p_cell_m) AS ctr
     ORDER BY c.ord;
END
$$;

-- migrate:down
DROP INDEX idx_cell_days_top;
DROP INDEX idx_cell_days_cell;
CREATE INDEX idx_cell_days_cell ON incident_cell_days (cell_row, cell_col, day);
DROP INDEX idx_incidents_cell_day;
CREATE INDEX idx_incidents_cell_day ON crime_incidents
    (luminar_cell_index(grid_y, luminar_hotspot_cell_m()), luminar_cell_index(grid_x, luminar_hotspot_cell_m()),
     "timestamp");
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
