-- Migration: incidents_kept_current
-- Created:   2026-11-30 04:50:00 (UTC)
--
-- Incidents kept current in a table, and one hotspot cell for every hotspot figure.
--
-- Why. luminar_incidents(since) picked each incident's representative from crime_events on every call: a sort of
-- every verified event of the window by incident. Over 1M events the 7-day hotspot listing took 883 ms (it was
-- 178 ms when it counted events). The representatives now live in crime_incidents, kept current by statement
-- triggers on crime_events, and every hotspot figure reads the window's incidents through one covering index.
--
-- crime_incidents: one row per incident (see 20261130032000: the key is luminar_incident_key(related_reports,
-- event_id); the representative is the verified, located event with the highest verification_score, then the first
-- stored, then the lowest event_id). It holds the representative's event_id, point, time, type, severity, stored
-- 0.01-degree cell, and its position on the equal-area grid (grid_x, grid_y: metres in EPSG:6933,
-- luminar_grid_xy), and `events`, how many verified located events the incident has. An incident is in a window
-- when its representative's time is.
--
-- Kept current. AFTER ... FOR EACH STATEMENT triggers read the statement's transition tables, collect the keys of
-- the rows that were or became verified and located (an update counts only when a column the representative
-- depends on changed), and recompute those incidents from crime_events (idx_events_incident: a partial expression
-- index on the key of the verified, located events) in one set-based statement: insert, update, or delete the
-- incident row. Two transactions changing events of one incident at once: each first takes a transaction advisory
-- lock on the incident key's bucket (luminar_incident_buckets() buckets, in bucket order: no deadlock between
-- them), and the recompute, a later statement, reads what the other committed (READ COMMITTED; under REPEATABLE
-- READ the second writer waits, then recomputes from its own snapshot: run writers at READ COMMITTED, as the store
-- does). TRUNCATE of crime_events empties crime_incidents. luminar_rebuild_incidents() recomputes the whole table
-- (the owner's; it returns the rows changed, 0 when the table was current).
--
-- Real-time copies apply changes without firing triggers: crime_incidents is in the publication, so a subscriber
-- receives central's rows. Backups restore the table's rows (pg_restore creates triggers after the data).
--
-- One hotspot cell. crime_hotspots_since(days, cell_m) now groups incidents by the equal-area cells of the Gi*
-- analysis (luminar_cell, cell_m metres, default 400 = luminar_store.limits.DEFAULT_CELL_M; its second argument
-- was degrees before), centres from luminar_cell_centre (6 decimals). The crime_hotspots view lists its cells
-- holding at least luminar_hotspot_min_incidents() (2 = luminar_store.limits.HOTSPOT_MIN_INCIDENTS) incidents, in
-- the hotspot order. luminar_gistar reads the same cells of the same table.
--
-- Gi* over the whole world, region by region. The grid was every cell of the bounding box of the window's
-- incidents: a network spanning cities on several continents made billions of 400 m cells, and luminar_gistar
-- refused it. Now incident cells closer than luminar_gistar_region_gap_m() (10 km) to one another form one region
-- (a city and its suburbs), and each region is a study area of its own: Gi* (its mean, variance and the
-- Benjamini-Hochberg adjustment) over the cells of the region's bounding box, empty ones included (a rectangle, as
-- esda's lattice; one region gives exactly the former result). A quiet city's concentrations are measured against
-- that city, not against the busiest one. A cell inside two regions' boxes is reported once, by the region holding
-- incidents there. A region of more than luminar_gistar_max_cells() cells is refused, naming cell_m. The risk zones
-- are made of these cells (one definition of the study area). luminar_gistar runs with work_mem of 64 MB and no JIT,
-- and luminar_normal_tail is no longer STRICT, so the planner inlines it (a function call per cell cost 5 s of
-- 8.6 s over 115,600 cells; NULL in, NULL out, as before).
--
-- Rights: as luminar_incidents: miners, validators, the analyst, and the sync role (real-time copies read it).

-- migrate:up
-- The key, as before, with its helper named by schema: idx_events_incident evaluates it wherever a row is written,
-- and a logical replication apply worker writes with an empty search_path.
CREATE OR REPLACE FUNCTION luminar_incident_key(p_related_reports uuid[], p_event_id uuid) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(p_related_reports) > 1
                THEN public.luminar_lowest_report(p_related_reports, p_event_id)
                ELSE coalesce(p_related_reports[1], p_event_id) END
$$;

-- A point's position on the equal-area grid: metres east (x) and north (y) in EPSG:6933.
CREATE FUNCTION luminar_grid_xy(p_geotag geometry, OUT grid_x double precision, OUT grid_y double precision)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ST_X(g), ST_Y(g) FROM (SELECT ST_Transform(p_geotag, luminar_grid_srid()) AS g) AS projected
$$;

-- The cell index of a grid position (metres) in cells of cell_m metres: the one rule, for rows (y) and columns (x).
CREATE FUNCTION luminar_cell_index(p_metres double precision, p_cell_m double precision) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT floor(p_metres / p_cell_m)::integer $$;

CREATE OR REPLACE FUNCTION luminar_cell(p_geotag geometry, p_cell_m double precision,
                                        OUT cell_row integer, OUT cell_col integer)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT luminar_cell_index(xy.grid_y, p_cell_m), luminar_cell_index(xy.grid_x, p_cell_m)
      FROM luminar_grid_xy(p_geotag) AS xy
$$;

CREATE OR REPLACE FUNCTION luminar_normal_tail(p_a double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_a > 37 THEN 0.0::double precision
        WHEN p_a < 7.07106781186547 THEN
            exp(-p_a * p_a / 2.0)
            * ((((((0.0352624965998911 * p_a + 0.700383064443688) * p_a + 6.37396220353165) * p_a
                    + 33.912866078383) * p_a + 112.079291497871) * p_a + 221.213596169931) * p_a
               + 220.206867912376)
            / (((((((0.0883883476483184 * p_a + 1.75566716318264) * p_a + 16.064177579207) * p_a
                     + 86.7807322029461) * p_a + 296.564248779674) * p_a + 637.333633378831) * p_a
                + 793.826512519948) * p_a + 440.413735824752)
        ELSE exp(-p_a * p_a / 2.0) / (p_a + 1.0 / (p_a + 2.0 / (p_a + 3.0 / (p_a + 4.0 / (p_a + 0.65)))))
             / 2.506628274631
    END
$$;

-- Gi* as before; z is materialized before the normal tail is taken of it: a function whose argument is used more
-- than once is inlined only when the argument is cheap, and an unmaterialized z is the whole z expression.
CREATE OR REPLACE FUNCTION luminar_gistar_grid(p_cell_rows integer[], p_cell_cols integer[], p_counts double precision[])
RETURNS TABLE (
    cell_row    integer,
    cell_col    integer,
    incidents   double precision,
    neighbours  integer,
    z           double precision,
    p           double precision,
    q           double precision,
    confidence  smallint,
    gi_bin      smallint,
    class       text
)
-- Each cell's block sum by spreading every cell's count to its 3 x 3 block and grouping by the receiving cell: no
-- join (the planner cannot see how many cells the arrays hold, guesses ten, and paired every cell with every other
-- in a nested loop: O(n^2)). A receiving cell belongs to the grid when it received its own count; the number of
-- cells it received from is its W (queen contiguity is symmetric).
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH spread AS (
        SELECT u.r + dr AS cell_row, u.c + dc AS cell_col, u.x, (dr = 0 AND dc = 0) AS own
          FROM unnest(p_cell_rows, p_cell_cols, p_counts) AS u (r, c, x)
         CROSS JOIN generate_series(-1, 1) AS dr
         CROSS JOIN generate_series(-1, 1) AS dc
    ), lagged AS (
        SELECT sp.cell_row, sp.cell_col, sum(sp.x) FILTER (WHERE sp.own) AS x, count(*)::double precision AS w,
               sum(sp.x) AS lag
          FROM spread AS sp
         GROUP BY sp.cell_row, sp.cell_col
        HAVING bool_or(sp.own)
    ), totals AS (
        SELECT l.*, count(*) OVER ()::double precision AS n, sum(l.x) OVER () AS s, avg(l.x) OVER () AS mean,
               avg(l.x * l.x) OVER () - avg(l.x) OVER () * avg(l.x) OVER () AS variance
          FROM lagged AS l
    ), scored AS MATERIALIZED (
        SELECT t.cell_row, t.cell_col, t.x, t.w,
               CASE WHEN t.s > 0 AND t.variance > 0 AND t.w < t.n
                    THEN (t.lag / t.s - t.w / t.n)
                         / sqrt(t.w * (t.n - t.w) / (t.n - 1) / (t.n * t.n) * t.variance / (t.mean * t.mean))
               END AS z
          FROM totals AS t
    ), normal AS (
        SELECT s.*, luminar_normal_tail(abs(s.z)) AS p FROM scored AS s
    ), tested AS (
        SELECT o.*, least(1.0, 2.0 * o.p) AS p2, count(o.z) OVER () AS m,
               row_number() OVER (ORDER BY o.p NULLS LAST) AS rank
          FROM normal AS o
    ), adjusted AS (
        SELECT t.*,
               CASE WHEN t.z IS NOT NULL THEN
                   least(1.0, min(t.p2 * t.m / t.rank) OVER (ORDER BY t.p2 DESC NULLS FIRST, t.rank DESC
                                                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
               END AS q
          FROM tested AS t
    ), classed AS (
        SELECT a.*, (CASE WHEN a.q <= 0.01 THEN 99 WHEN a.q <= 0.05 THEN 95 WHEN a.q <= 0.10 THEN 90
                          ELSE 0 END)::smallint AS confidence
          FROM adjusted AS a
    )
    SELECT c.cell_row, c.cell_col, c.x, c.w::integer, c.z, c.p, c.q, c.confidence,
           (sign(coalesce(c.z, 0)) * CASE c.confidence WHEN 99 THEN 3 WHEN 95 THEN 2 WHEN 90 THEN 1 ELSE 0 END
           )::smallint,
           CASE WHEN c.confidence = 0 THEN 'not significant' WHEN c.z > 0 THEN 'hot' ELSE 'cold' END
      FROM classed AS c
     ORDER BY c.cell_row, c.cell_col
$$;

-- Incident cells closer than this (metres) belong to one region of the Gi* study area.
CREATE FUNCTION luminar_gistar_region_gap_m() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 10000.0::double precision $$;

-- The region of each cell: cells closer than luminar_gistar_region_gap_m() (in cell units of cell_m metres) join
-- one region (DBSCAN with one point a cluster: connected components). The one definition of a Gi* study area.
CREATE FUNCTION luminar_gistar_regions(p_rows integer[], p_cols integer[], p_cell_m double precision)
RETURNS TABLE (cell_row integer, cell_col integer, region integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT u.r, u.c, ST_ClusterDBSCAN(ST_MakePoint(u.c, u.r), luminar_gistar_region_gap_m() / p_cell_m, 1) OVER ()
      FROM unnest(p_rows, p_cols) AS u (r, c)
$$;

CREATE FUNCTION luminar_hotspot_min_incidents() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 2 $$;

CREATE FUNCTION luminar_incident_buckets() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1024 $$;

CREATE TABLE crime_incidents (
    incident_key    uuid             PRIMARY KEY,
    event_id        uuid             NOT NULL,
    events          integer          NOT NULL CHECK (events >= 1),
    latitude        double precision NOT NULL,
    longitude       double precision NOT NULL,
    grid_x          double precision NOT NULL,
    grid_y          double precision NOT NULL,
    "timestamp"     timestamptz      NOT NULL,
    event_type      text             NOT NULL,
    severity_level  smallint,
    cell_row        integer,
    cell_col        integer
);
-- Every hotspot figure reads a window of incidents and these columns only (index-only scans).
CREATE INDEX idx_incidents_time ON crime_incidents ("timestamp")
    INCLUDE (grid_x, grid_y, severity_level, event_type);
-- The events of one incident, for the recompute.
CREATE INDEX idx_events_incident ON crime_events (luminar_incident_key(related_reports, event_id))
    WHERE verification_status = 'verified' AND latitude IS NOT NULL;

-- Recompute the incidents of p_keys from crime_events; returns the rows inserted, updated or deleted.
CREATE FUNCTION luminar_refresh_incidents(p_keys uuid[]) RETURNS bigint
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

CREATE FUNCTION luminar_incidents_on_insert() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM luminar_refresh_incidents(array_agg(DISTINCT luminar_incident_key(n.related_reports, n.event_id)))
       FROM new_rows AS n
      WHERE n.verification_status = 'verified' AND n.latitude IS NOT NULL;
    RETURN NULL;
END
$$;

-- An update matters when the row was or is verified and located, and a column the representative depends on
-- changed (a verdict, a point, the time, the type, the severity, the reports, the score).
CREATE FUNCTION luminar_incidents_on_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM luminar_refresh_incidents(array_agg(DISTINCT k.key))
       FROM old_rows AS o
       JOIN new_rows AS n ON n.event_id = o.event_id
      CROSS JOIN LATERAL (VALUES (luminar_incident_key(o.related_reports, o.event_id)),
                                 (luminar_incident_key(n.related_reports, n.event_id))) AS k (key)
      WHERE ((o.verification_status = 'verified' AND o.latitude IS NOT NULL)
             OR (n.verification_status = 'verified' AND n.latitude IS NOT NULL))
        AND (o.verification_status, o.latitude, o.longitude, o."timestamp", o.event_type, o.severity_level,
             o.related_reports, o.verification_score, o.created_at)
            IS DISTINCT FROM
            (n.verification_status, n.latitude, n.longitude, n."timestamp", n.event_type, n.severity_level,
             n.related_reports, n.verification_score, n.created_at);
    RETURN NULL;
END
$$;

CREATE FUNCTION luminar_incidents_on_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    PERFORM luminar_refresh_incidents(array_agg(DISTINCT luminar_incident_key(o.related_reports, o.event_id)))
       FROM old_rows AS o
      WHERE o.verification_status = 'verified' AND o.latitude IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE FUNCTION luminar_incidents_on_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    TRUNCATE crime_incidents;
    RETURN NULL;
END
$$;

CREATE TRIGGER crime_events_incidents_insert AFTER INSERT ON crime_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION luminar_incidents_on_insert();
CREATE TRIGGER crime_events_incidents_update AFTER UPDATE ON crime_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION luminar_incidents_on_update();
CREATE TRIGGER crime_events_incidents_delete AFTER DELETE ON crime_events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION luminar_incidents_on_delete();
CREATE TRIGGER crime_events_incidents_truncate AFTER TRUNCATE ON crime_events
    FOR EACH STATEMENT EXECUTE FUNCTION luminar_incidents_on_truncate();

-- The whole table recomputed (after a bulk load with triggers off, or to check it): the rows changed.
CREATE FUNCTION luminar_rebuild_incidents() RETURNS bigint
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

INSERT INTO crime_incidents (incident_key, event_id, events, latitude, longitude, grid_x, grid_y, "timestamp",
                             event_type, severity_level, cell_row, cell_col)
SELECT DISTINCT ON (k.key) k.key, e.event_id, (count(*) OVER (PARTITION BY k.key))::integer, e.latitude,
       e.longitude, xy.grid_x, xy.grid_y, e."timestamp", e.event_type, e.severity_level, e.cell_row, e.cell_col
  FROM crime_events AS e
 CROSS JOIN LATERAL (SELECT luminar_incident_key(e.related_reports, e.event_id) AS key) AS k
 CROSS JOIN LATERAL luminar_grid_xy(e.geotag) AS xy
 WHERE e.verification_status = 'verified' AND e.latitude IS NOT NULL
 ORDER BY k.key, e.verification_score DESC NULLS LAST, e.created_at, e.event_id;

-- Same signature and columns as before, read from the table.
CREATE OR REPLACE FUNCTION luminar_incidents(p_since timestamptz)
RETURNS TABLE (
    incident_key    uuid,
    event_id        uuid,
    events          integer,
    latitude        double precision,
    longitude       double precision,
    geotag          geometry(Point, 4326),
    "timestamp"     timestamptz,
    event_type      text,
    severity_level  smallint,
    cell_row        integer,
    cell_col        integer
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT i.incident_key, i.event_id, i.events, i.latitude, i.longitude,
           ST_SetSRID(ST_MakePoint(i.longitude, i.latitude), 4326), i."timestamp", i.event_type, i.severity_level,
           i.cell_row, i.cell_col
      FROM crime_incidents AS i
     WHERE i."timestamp" >= p_since
$$;

DROP VIEW crime_hotspots;
DROP FUNCTION crime_hotspots_since(integer, double precision);
-- Hotspots: the window's incidents by equal-area cell, the cells of at least p_min_incidents, in the hotspot order
-- (most incidents, then the most recent last incident, then position: row and column order as latitude and
-- longitude do), the first p_limit (NULL: all). Centres are computed for the cells returned only (computing them for
-- every cell of the window took 520 of 880 ms at 1M events).
CREATE FUNCTION crime_hotspots_since(p_days integer, p_cell_m double precision DEFAULT 400,
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

-- The 7-day hotspots of at least the threshold, in the hotspot order.
CREATE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7, 400, luminar_hotspot_min_incidents());
GRANT SELECT ON crime_hotspots TO luminar_miner, luminar_validator, luminar_analyst;

CREATE OR REPLACE FUNCTION luminar_gistar(p_days integer, p_cell_m double precision)
RETURNS TABLE (
    cell_row    integer,
    cell_col    integer,
    latitude    double precision,
    longitude   double precision,
    incidents   integer,
    neighbours  integer,
    z           double precision,
    p           double precision,
    q           double precision,
    confidence  smallint,
    gi_bin      smallint,
    class       text
)
-- No JIT: the planner cannot see how many rows the arrays and generate_series give, guesses wildly, and compiled the
-- statement for seconds where it runs in a fraction of that.
LANGUAGE plpgsql STABLE PARALLEL SAFE SET work_mem = '64MB' SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_rows   integer[];
    v_cols   integer[];
    v_counts double precision[];
    v_cells  bigint;
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_cell_m IS NULL OR NOT p_cell_m > 0 OR p_cell_m = 'Infinity' THEN
        RAISE EXCEPTION 'luminar_gistar: days must be >= 1 and cell_m a positive number of metres'
            USING ERRCODE = '22023';
    END IF;
    -- The cells holding incidents (read once).
    SELECT array_agg(k.cell_row), array_agg(k.cell_col), array_agg(k.x)
      INTO v_rows, v_cols, v_counts
      FROM (SELECT luminar_cell_index(i.grid_y, p_cell_m) AS cell_row,
                   luminar_cell_index(i.grid_x, p_cell_m) AS cell_col, count(*)::double precision AS x
              FROM crime_incidents AS i
             WHERE i."timestamp" >= now() - make_interval(days => p_days)
             GROUP BY 1, 2) AS k;
    IF v_rows IS NULL THEN
        RETURN;
    END IF;
    -- The largest region's box: a region of more than a million cells is refused.
    SELECT max(b.cells) INTO v_cells
      FROM (SELECT (max(k.cell_row) - min(k.cell_row) + 1)::bigint * (max(k.cell_col) - min(k.cell_col) + 1)::bigint
                   AS cells
              FROM luminar_gistar_regions(v_rows, v_cols, p_cell_m) AS k
             GROUP BY k.region) AS b;
    IF v_cells > luminar_gistar_max_cells() THEN
        RAISE EXCEPTION 'luminar_gistar: a region of the window''s incidents spans % cells of % m, more than %',
            v_cells, p_cell_m, luminar_gistar_max_cells()
            USING ERRCODE = '22023', HINT = 'Use a larger cell_m or fewer days.';
    END IF;
    -- Each region's box, empty cells with 0 (by grouping, not a join: the planner cannot see how many cells there
    -- are), Gi* on each region's grid; a cell inside two regions' boxes is reported once, by the region holding
    -- incidents there (else the first region).
    RETURN QUERY
        WITH occupied AS (
            SELECT u.r, u.c, u.x, g.region
              FROM unnest(v_rows, v_cols, v_counts) AS u (r, c, x)
              JOIN luminar_gistar_regions(v_rows, v_cols, p_cell_m) AS g ON g.cell_row = u.r AND g.cell_col = u.c
        ), bounds AS (
            SELECT o.region, min(o.r) AS r0, max(o.r) AS r1, min(o.c) AS c0, max(o.c) AS c1
              FROM occupied AS o GROUP BY o.region
        ), extent AS (
            SELECT b.region, gr.r, gc.c, 0.0::double precision AS x
              FROM bounds AS b
             CROSS JOIN LATERAL generate_series(b.r0, b.r1) AS gr (r)
             CROSS JOIN LATERAL generate_series(b.c0, b.c1) AS gc (c)
            UNION ALL
            SELECT o.region, o.r, o.c, o.x FROM occupied AS o
        ), filled AS (
            SELECT e.region, e.r, e.c, sum(e.x) AS x FROM extent AS e GROUP BY e.region, e.r, e.c
        ), grids AS (
            SELECT f.region, array_agg(f.r ORDER BY f.r, f.c) AS rs, array_agg(f.c ORDER BY f.r, f.c) AS cs,
                   array_agg(f.x ORDER BY f.r, f.c) AS xs
              FROM filled AS f GROUP BY f.region
        ), scored AS (
            SELECT DISTINCT ON (s.cell_row, s.cell_col) s.*
              FROM grids AS g
             CROSS JOIN LATERAL luminar_gistar_grid(g.rs, g.cs, g.xs) AS s
             ORDER BY s.cell_row, s.cell_col, s.incidents DESC, g.region
        )
        SELECT s.cell_row, s.cell_col, ctr.latitude, ctr.longitude, s.incidents::integer, s.neighbours, s.z, s.p,
               s.q, s.confidence, s.gi_bin, s.class
          FROM scored AS s
         CROSS JOIN LATERAL luminar_cell_centre(s.cell_row, s.cell_col, p_cell_m) AS ctr
         ORDER BY s.cell_row, s.cell_col;
END
$$;

REVOKE ALL ON crime_incidents FROM PUBLIC;
GRANT SELECT ON crime_incidents TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync;
REVOKE EXECUTE ON FUNCTION luminar_refresh_incidents(uuid[]), luminar_rebuild_incidents(),
    luminar_incidents_on_insert(), luminar_incidents_on_update(), luminar_incidents_on_delete(),
    luminar_incidents_on_truncate() FROM PUBLIC;
ALTER PUBLICATION luminar_changes ADD TABLE crime_incidents;

-- migrate:down
ALTER PUBLICATION luminar_changes DROP TABLE crime_incidents;
DROP VIEW crime_hotspots;
DROP FUNCTION crime_hotspots_since(integer, double precision, integer, integer);
CREATE FUNCTION crime_hotspots_since(p_days integer, p_cell_degrees double precision DEFAULT 0.01)
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
    SELECT round(((floor(i.latitude / p_cell_degrees) + 0.5) * p_cell_degrees)::numeric, 6)::double precision,
           round(((floor(i.longitude / p_cell_degrees) + 0.5) * p_cell_degrees)::numeric, 6)::double precision,
           count(*),
           round(avg(i.severity_level), 2),
           max(i.severity_level),
           array_agg(DISTINCT i.event_type ORDER BY i.event_type),
           min(i."timestamp"),
           max(i."timestamp")
      FROM luminar_incidents(now() - make_interval(days => p_days)) AS i
     GROUP BY floor(i.latitude / p_cell_degrees), floor(i.longitude / p_cell_degrees)
$$;
CREATE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7)
     ORDER BY incident_count DESC, last_seen DESC, latitude, longitude;
GRANT SELECT ON crime_hotspots TO luminar_miner, luminar_validator, luminar_analyst;
CREATE OR REPLACE FUNCTION luminar_incidents(p_since timestamptz)
RETURNS TABLE (
    incident_key    uuid,
    event_id        uuid,
    events          integer,
    latitude        double precision,
    longitude       double precision,
    geotag          geometry(Point, 4326),
    "timestamp"     timestamptz,
    event_type      text,
    severity_level  smallint,
    cell_row        integer,
    cell_col        integer
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT DISTINCT ON (k.key) k.key, e.event_id, (count(*) OVER (PARTITION BY k.key))::integer,
           e.latitude, e.longitude, e.geotag, e."timestamp", e.event_type, e.severity_level, e.cell_row, e.cell_col
      FROM crime_events AS e
     CROSS JOIN LATERAL (SELECT luminar_incident_key(e.related_reports, e.event_id) AS key) AS k
     WHERE e.verification_status = 'verified'
       AND e."timestamp" >= p_since
       AND e.latitude IS NOT NULL
     ORDER BY k.key, e.verification_score DESC NULLS LAST, e.created_at, e.event_id
$$;
CREATE OR REPLACE FUNCTION luminar_gistar(p_days integer, p_cell_m double precision)
RETURNS TABLE (
    cell_row    integer,
    cell_col    integer,
    latitude    double precision,
    longitude   double precision,
    incidents   integer,
    neighbours  integer,
    z           double precision,
    p           double precision,
    q           double precision,
    confidence  smallint,
    gi_bin      smallint,
    class       text
)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
#variable_conflict use_column
DECLARE
    v_rows   integer[];
    v_cols   integer[];
    v_counts double precision[];
    v_cells  bigint;
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_cell_m IS NULL OR NOT p_cell_m > 0 OR p_cell_m = 'Infinity' THEN
        RAISE EXCEPTION 'luminar_gistar: days must be >= 1 and cell_m a positive number of metres'
            USING ERRCODE = '22023';
    END IF;
    -- The cells holding incidents (read once), then the extent they span.
    SELECT array_agg(k.cell_row), array_agg(k.cell_col), array_agg(k.x)
      INTO v_rows, v_cols, v_counts
      FROM (SELECT c.cell_row, c.cell_col, count(*)::double precision AS x
              FROM luminar_incidents(now() - make_interval(days => p_days)) AS i
             CROSS JOIN LATERAL luminar_cell(i.geotag, p_cell_m) AS c
             GROUP BY c.cell_row, c.cell_col) AS k;
    IF v_rows IS NULL THEN
        RETURN;
    END IF;
    SELECT (max(r) - min(r) + 1)::bigint * (max(c) - min(c) + 1)::bigint INTO v_cells
      FROM unnest(v_rows, v_cols) AS u (r, c);
    IF v_cells > luminar_gistar_max_cells() THEN
        RAISE EXCEPTION 'luminar_gistar: the window''s incidents span % cells of % m, more than %', v_cells,
            p_cell_m, luminar_gistar_max_cells()
            USING ERRCODE = '22023', HINT = 'Use a larger cell_m or fewer days.';
    END IF;
    -- Every cell of the extent, the empty ones with 0.
    WITH per_cell AS (
        SELECT u.r, u.c, u.x FROM unnest(v_rows, v_cols, v_counts) AS u (r, c, x)
    ), bounds AS (
        SELECT min(r) AS r0, max(r) AS r1, min(c) AS c0, max(c) AS c1 FROM per_cell
    ), grid AS (
        SELECT gr.r, gc.c, coalesce(pc.x, 0.0) AS x
          FROM bounds AS b
         CROSS JOIN LATERAL generate_series(b.r0, b.r1) AS gr (r)
         CROSS JOIN LATERAL generate_series(b.c0, b.c1) AS gc (c)
          LEFT JOIN per_cell AS pc ON pc.r = gr.r AND pc.c = gc.c
    )
    SELECT array_agg(g.r ORDER BY g.r, g.c), array_agg(g.c ORDER BY g.r, g.c), array_agg(g.x ORDER BY g.r, g.c)
      INTO v_rows, v_cols, v_counts
      FROM grid AS g;
    RETURN QUERY
        SELECT s.cell_row, s.cell_col, ctr.latitude, ctr.longitude, s.incidents::integer, s.neighbours, s.z, s.p,
               s.q, s.confidence, s.gi_bin, s.class
          FROM luminar_gistar_grid(v_rows, v_cols, v_counts) AS s
         CROSS JOIN LATERAL luminar_cell_centre(s.cell_row, s.cell_col, p_cell_m) AS ctr
         ORDER BY s.cell_row, s.cell_col;
END
$$;
DROP TRIGGER IF EXISTS crime_events_incidents_truncate ON crime_events;
DROP TRIGGER IF EXISTS crime_events_incidents_delete ON crime_events;
DROP TRIGGER IF EXISTS crime_events_incidents_update ON crime_events;
DROP TRIGGER IF EXISTS crime_events_incidents_insert ON crime_events;
DROP FUNCTION IF EXISTS luminar_rebuild_incidents();
DROP FUNCTION IF EXISTS luminar_incidents_on_truncate();
DROP FUNCTION IF EXISTS luminar_incidents_on_delete();
DROP FUNCTION IF EXISTS luminar_incidents_on_update();
DROP FUNCTION IF EXISTS luminar_incidents_on_insert();
DROP FUNCTION IF EXISTS luminar_refresh_incidents(uuid[]);
DROP INDEX IF EXISTS idx_events_incident;
DROP TABLE IF EXISTS crime_incidents;
CREATE OR REPLACE FUNCTION luminar_cell(p_geotag geometry, p_cell_m double precision,
                                        OUT cell_row integer, OUT cell_col integer)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT floor(ST_Y(g) / p_cell_m)::integer, floor(ST_X(g) / p_cell_m)::integer
      FROM (SELECT ST_Transform(p_geotag, luminar_grid_srid()) AS g) AS projected
$$;
DROP FUNCTION IF EXISTS luminar_incident_buckets();
DROP FUNCTION IF EXISTS luminar_gistar_regions(integer[], integer[], double precision);
DROP FUNCTION IF EXISTS luminar_hotspot_min_incidents();
DROP FUNCTION IF EXISTS luminar_cell_index(double precision, double precision);
DROP FUNCTION IF EXISTS luminar_grid_xy(geometry);
CREATE OR REPLACE FUNCTION luminar_incident_key(p_related_reports uuid[], p_event_id uuid) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(p_related_reports) > 1 THEN luminar_lowest_report(p_related_reports, p_event_id)
                ELSE coalesce(p_related_reports[1], p_event_id) END
$$;
DROP FUNCTION IF EXISTS luminar_gistar_region_gap_m();
CREATE OR REPLACE FUNCTION luminar_normal_tail(p_a double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN p_a > 37 THEN 0.0::double precision
        WHEN p_a < 7.07106781186547 THEN
            exp(-p_a * p_a / 2.0)
            * ((((((0.0352624965998911 * p_a + 0.700383064443688) * p_a + 6.37396220353165) * p_a
                    + 33.912866078383) * p_a + 112.079291497871) * p_a + 221.213596169931) * p_a
               + 220.206867912376)
            / (((((((0.0883883476483184 * p_a + 1.75566716318264) * p_a + 16.064177579207) * p_a
                     + 86.7807322029461) * p_a + 296.564248779674) * p_a + 637.333633378831) * p_a
                + 793.826512519948) * p_a + 440.413735824752)
        ELSE exp(-p_a * p_a / 2.0) / (p_a + 1.0 / (p_a + 2.0 / (p_a + 3.0 / (p_a + 4.0 / (p_a + 0.65)))))
             / 2.506628274631
    END
$$;
CREATE OR REPLACE FUNCTION luminar_gistar_grid(p_cell_rows integer[], p_cell_cols integer[], p_counts double precision[])
RETURNS TABLE (
    cell_row    integer,
    cell_col    integer,
    incidents   double precision,
    neighbours  integer,
    z           double precision,
    p           double precision,
    q           double precision,
    confidence  smallint,
    gi_bin      smallint,
    class       text
)
-- Each cell's block sum by spreading every cell's count to its 3 x 3 block and grouping by the receiving cell: no
-- join (the planner cannot see how many cells the arrays hold, guesses ten, and paired every cell with every other
-- in a nested loop: O(n^2)). A receiving cell belongs to the grid when it received its own count; the number of
-- cells it received from is its W (queen contiguity is symmetric).
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH spread AS (
        SELECT u.r + dr AS cell_row, u.c + dc AS cell_col, u.x, (dr = 0 AND dc = 0) AS own
          FROM unnest(p_cell_rows, p_cell_cols, p_counts) AS u (r, c, x)
         CROSS JOIN generate_series(-1, 1) AS dr
         CROSS JOIN generate_series(-1, 1) AS dc
    ), lagged AS (
        SELECT sp.cell_row, sp.cell_col, sum(sp.x) FILTER (WHERE sp.own) AS x, count(*)::double precision AS w,
               sum(sp.x) AS lag
          FROM spread AS sp
         GROUP BY sp.cell_row, sp.cell_col
        HAVING bool_or(sp.own)
    ), totals AS (
        SELECT l.*, count(*) OVER ()::double precision AS n, sum(l.x) OVER () AS s, avg(l.x) OVER () AS mean,
               avg(l.x * l.x) OVER () - avg(l.x) OVER () * avg(l.x) OVER () AS variance
          FROM lagged AS l
    ), scored AS (
        SELECT t.cell_row, t.cell_col, t.x, t.w,
               CASE WHEN t.s > 0 AND t.variance > 0 AND t.w < t.n
                    THEN (t.lag / t.s - t.w / t.n)
                         / sqrt(t.w * (t.n - t.w) / (t.n - 1) / (t.n * t.n) * t.variance / (t.mean * t.mean))
               END AS z
          FROM totals AS t
    ), normal AS (
        SELECT s.*, luminar_normal_tail(abs(s.z)) AS p FROM scored AS s
    ), tested AS (
        SELECT o.*, least(1.0, 2.0 * o.p) AS p2, count(o.z) OVER () AS m,
               row_number() OVER (ORDER BY o.p NULLS LAST) AS rank
          FROM normal AS o
    ), adjusted AS (
        SELECT t.*,
               CASE WHEN t.z IS NOT NULL THEN
                   least(1.0, min(t.p2 * t.m / t.rank) OVER (ORDER BY t.p2 DESC NULLS FIRST, t.rank DESC
                                                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
               END AS q
          FROM tested AS t
    ), classed AS (
        SELECT a.*, (CASE WHEN a.q <= 0.01 THEN 99 WHEN a.q <= 0.05 THEN 95 WHEN a.q <= 0.10 THEN 90
                          ELSE 0 END)::smallint AS confidence
          FROM adjusted AS a
    )
    SELECT c.cell_row, c.cell_col, c.x, c.w::integer, c.z, c.p, c.q, c.confidence,
           (sign(coalesce(c.z, 0)) * CASE c.confidence WHEN 99 THEN 3 WHEN 95 THEN 2 WHEN 90 THEN 1 ELSE 0 END
           )::smallint,
           CASE WHEN c.confidence = 0 THEN 'not significant' WHEN c.z > 0 THEN 'hot' ELSE 'cold' END
      FROM classed AS c
     ORDER BY c.cell_row, c.cell_col
$$;
