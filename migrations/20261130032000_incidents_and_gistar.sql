-- Migration: incidents_and_gistar
-- Created:   2026-11-30 03:20:00 (UTC)
--
-- Incidents, not events, and significant hotspots (Getis-Ord Gi*), each defined once, here.
--
-- Incidents. Several miners analyse the same reports, so one incident becomes several events. An incident is
-- identified by luminar_incident_key(related_reports, event_id): the lowest related report id, or, for an event
-- naming no report, the event's own id (it is an incident alone). Events sharing their lowest report are one
-- incident; events sharing only some other report are not merged (a documented simplification: grouping by any
-- shared report is a connected-components problem, not one indexable key).
-- luminar_incidents(since): one row per incident among the verified, located events whose time is at or after
-- `since`, represented by the event consensus chose: the highest verification_score, then the first stored, then
-- the lowest event_id. Its point, time, type, severity and stored 0.01-degree cell are the representative's;
-- `events` counts the incident's events (of the same filter). Every hotspot figure counts these rows:
-- crime_hotspots_since (so the crime_hotspots view), the repository's hotspot queries, luminar_gistar.
--
-- The equal-area grid. Cells are squares of cell_m metres in EPSG:6933 (WGS 84 / NSIDC EASE-Grid 2.0 Global, a
-- cylindrical equal-area projection): every cell has the same area (cell_m squared) anywhere, and a cell is a pair
-- of integers (cell_row, cell_col) = floor(y / cell_m), floor(x / cell_m) that does not depend on the data or the
-- window. Cells are squares on the map, not on the ground: with its standard parallels at 30 degrees, a 400 m cell
-- at 48 degrees is ~310 m east-west by ~520 m north-south (equal area, unequal sides). luminar_cell(geotag, cell_m)
-- and luminar_cell_centre(row, col, cell_m) (rounded to 6 decimals, ~0.1 m: no float noise) are the one definition.
--
-- Gi*. luminar_gistar_grid(rows, cols, counts) computes Getis-Ord Gi* (Getis & Ord 1992, Ord & Getis 1995) on the
-- cells it is given (the whole grid, empty cells included, each once): binary weights of each cell's queen
-- neighbours (the 3 x 3 block) that are in the grid, itself included, not row-standardised; the mean and the
-- (population) variance over all n cells. It equals PySAL esda's G_Local(star=True, transform="B"):
--   G_i = sum_j w_ij x_j / sum_j x_j, E[G_i] = W_i / n,
--   V[G_i] = W_i (n - W_i) / (n - 1) / n^2 * s^2 / xbar^2, z_i = (G_i - E[G_i]) / sqrt(V[G_i]),
--   p_i = P(Z > |z_i|) (esda's p_norm: one tail of the standard normal, luminar_normal_tail).
-- Significance: the two-sided p (2 p_i) of all cells with a z, adjusted by Benjamini-Hochberg (q, the FDR), sets
-- the confidence: 99 when q <= 0.01, 95 when q <= 0.05, 90 when q <= 0.10, else 0; gi_bin is +-3/2/1 (hot or cold
-- by the sign of z) or 0, as ArcGIS's Gi_Bin; class is 'hot', 'cold' or 'not significant'. z (and so p, q) is NULL
-- when it is undefined: no incident, all cells equal, or a cell neighbouring every cell (W_i = n).
-- luminar_gistar(days, cell_m) runs it over the incidents of the last `days` days (the default cell, 400 m, is
-- luminar_store.limits.DEFAULT_CELL_M, passed by the caller, as the agreement tolerance is): the grid is every
-- cell of the bounding box of the window's incident cells, empty ones included (at most
-- luminar_gistar_max_cells(), one million; larger is refused with SQLSTATE 22023 naming the fix: a larger cell or
-- a shorter window). Rows come in grid order (row, then column); no incident: no row.
--
-- Rights: luminar_incidents and luminar_gistar read crime_events with the caller's rights (SECURITY INVOKER), so
-- they are granted as crime_hotspots is: the miners, validators and the analyst; never the public reader or the
-- monitor (raw cells are not suppressed by k; they read public_hotspots).

-- migrate:up
-- The lowest of several report ids, or p_event_id when none is given.
CREATE FUNCTION luminar_lowest_report(p_related_reports uuid[], p_event_id uuid) RETURNS uuid
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v_report uuid;
    v_lowest uuid;
BEGIN
    FOREACH v_report IN ARRAY p_related_reports LOOP
        IF v_report IS NOT NULL AND (v_lowest IS NULL OR v_report < v_lowest) THEN
            v_lowest := v_report;
        END IF;
    END LOOP;
    RETURN coalesce(v_lowest, p_event_id);
END
$$;

-- A plain expression, so that the planner inlines it: most events name one report (or none), and a function call
-- per event doubled the hotspot query's time (measured: 0.5 s for 32,000 incidents); several reports go through
-- luminar_lowest_report.
CREATE FUNCTION luminar_incident_key(p_related_reports uuid[], p_event_id uuid) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(p_related_reports) > 1 THEN luminar_lowest_report(p_related_reports, p_event_id)
                ELSE coalesce(p_related_reports[1], p_event_id) END
$$;

CREATE FUNCTION luminar_incidents(p_since timestamptz)
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

-- Same signature and result columns as before; now counts incidents, and its centres carry no float noise.
CREATE OR REPLACE FUNCTION crime_hotspots_since(p_days integer, p_cell_degrees double precision DEFAULT 0.01)
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

-- The view lists in the one hotspot order (luminar_store.repositories.crime_events.HOTSPOT_ORDER).
CREATE OR REPLACE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7)
     ORDER BY incident_count DESC, last_seen DESC, latitude, longitude;

CREATE FUNCTION luminar_grid_srid() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 6933 $$;

CREATE FUNCTION luminar_gistar_max_cells() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1000000::bigint $$;

CREATE FUNCTION luminar_cell(p_geotag geometry, p_cell_m double precision,
                             OUT cell_row integer, OUT cell_col integer)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT floor(ST_Y(g) / p_cell_m)::integer, floor(ST_X(g) / p_cell_m)::integer
      FROM (SELECT ST_Transform(p_geotag, luminar_grid_srid()) AS g) AS projected
$$;

CREATE FUNCTION luminar_cell_centre(p_cell_row integer, p_cell_col integer, p_cell_m double precision,
                                    OUT latitude double precision, OUT longitude double precision)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT round(ST_Y(c)::numeric, 6)::double precision, round(ST_X(c)::numeric, 6)::double precision
      FROM (SELECT ST_Transform(ST_SetSRID(ST_MakePoint((p_cell_col + 0.5) * p_cell_m, (p_cell_row + 0.5) * p_cell_m),
                                           luminar_grid_srid()), 4326) AS c) AS centre
$$;

-- P(Z > a) of the standard normal for a >= 0, to double precision (Hart's 1968 algorithm 5666 as given by G. West,
-- "Better approximations to cumulative normal functions", 2005); PostgreSQL 15 has no erf(). One expression, so
-- that the planner inlines it (a function call per cell costs more than the whole expression).
CREATE FUNCTION luminar_normal_tail(p_a double precision) RETURNS double precision
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

-- P(Z > z) of the standard normal, any z.
CREATE FUNCTION luminar_normal_upper_tail(p_z double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN p_z >= 0 THEN luminar_normal_tail(p_z) ELSE 1.0 - luminar_normal_tail(-p_z) END
$$;

CREATE FUNCTION luminar_gistar_grid(p_cell_rows integer[], p_cell_cols integer[], p_counts double precision[])
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

CREATE FUNCTION luminar_gistar(p_days integer, p_cell_m double precision)
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

REVOKE EXECUTE ON FUNCTION luminar_incidents(timestamptz), luminar_gistar(integer, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luminar_incidents(timestamptz), luminar_gistar(integer, double precision)
    TO luminar_miner, luminar_validator, luminar_analyst;

-- migrate:down
DROP FUNCTION IF EXISTS luminar_gistar(integer, double precision);
DROP FUNCTION IF EXISTS luminar_gistar_grid(integer[], integer[], double precision[]);
DROP FUNCTION IF EXISTS luminar_normal_upper_tail(double precision);
DROP FUNCTION IF EXISTS luminar_normal_tail(double precision);
DROP FUNCTION IF EXISTS luminar_cell_centre(integer, integer, double precision);
DROP FUNCTION IF EXISTS luminar_cell(geometry, double precision);
DROP FUNCTION IF EXISTS luminar_gistar_max_cells();
DROP FUNCTION IF EXISTS luminar_grid_srid();
CREATE OR REPLACE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7);
CREATE OR REPLACE FUNCTION crime_hotspots_since(p_days integer, p_cell_degrees double precision DEFAULT 0.01)
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
    SELECT (floor(e.latitude / p_cell_degrees) + 0.5) * p_cell_degrees,
           (floor(e.longitude / p_cell_degrees) + 0.5) * p_cell_degrees,
           count(*),
           round(avg(e.severity_level), 2),
           max(e.severity_level),
           array_agg(DISTINCT e.event_type ORDER BY e.event_type),
           min(e."timestamp"),
           max(e."timestamp")
      FROM crime_events e
     WHERE e.verification_status = 'verified'
       AND e."timestamp" >= now() - make_interval(days => p_days)
       AND e.latitude IS NOT NULL
     GROUP BY floor(e.latitude / p_cell_degrees), floor(e.longitude / p_cell_degrees)
$$;
DROP FUNCTION IF EXISTS luminar_incidents(timestamptz);
DROP FUNCTION IF EXISTS luminar_incident_key(uuid[], uuid);
DROP FUNCTION IF EXISTS luminar_lowest_report(uuid[], uuid);
