-- Migration: risk_zone_analysis
-- Created:   2026-11-30 04:52:00 (UTC)
--
-- Risk zones computed in the database from contiguous hot cells, with a Mann-Kendall trend; each figure defined
-- once, here. Every count is of incidents (luminar_incidents), never of events.
--
-- risk_zones gains made_by ('node': stored by a node, the default; 'analysis': made by luminar_analyze_risk_zones)
-- and trend_p_value (the Mann-Kendall p, 0..1, NULL when not tested); trend_direction may also be
-- 'insufficient data' (fewer than luminar_trend_min_weeks() weeks of data: no guess is made).
--
-- Mann-Kendall. luminar_mann_kendall(counts, alpha) is pymannkendall's original_test on a series (oldest first;
-- NULLs skipped, as pymannkendall skips missing values): S = sum over i < j of sign(x_j - x_i);
-- Var(S) = (n(n-1)(2n+5) - sum over groups of tied values t(t-1)(2t+5)) / 18; z = (S - 1) / sqrt(Var S) for S > 0,
-- (S + 1) / sqrt(Var S) for S < 0, else 0 (also when Var S = 0: a constant series); p = 2 P(Z > |z|)
-- (luminar_normal_tail); a trend when p < alpha: 'increasing' or 'decreasing' by the sign of z, else 'stable'
-- (pymannkendall's 'no trend'). tests/test_zone_analysis.py checks it against pymannkendall on a committed fixture.
--
-- Risk level and score of a zone, from the largest Gi* z of its cells (its peak): luminar_risk_level(z) is 1 below
-- 1.96, 2 from 1.96, 3 from 2.576, 4 from 3.291, 5 from 3.891 (the two-sided normal quantiles of p = 0.05, 0.01,
-- 0.001, 0.0001); luminar_risk_score(z) = 1 - 2 P(Z > z) for z > 0 (the two-sided confidence, 0..1), 0 for z <= 0.
--
-- The analysis. luminar_analyze_risk_zones(days, cell_m, weeks), run by the owner (it replaces rows):
-- 1. The incidents of the last max(days, 7 (weeks + 1)) days (crime_incidents), each in its equal-area cell
--    (luminar_cell_index of its grid position; cell_m metres).
-- 2. and 3. Hot cells: the cells luminar_gistar(days, cell_m) classes 'hot' at confidence >= 95 (Benjamini-Hochberg
--    q <= 0.05). luminar_gistar runs Gi* region by region (luminar_gistar_regions: incident cells within 10 km
--    form a region, a study area of its own), so a network on several continents is analysed city by city; a
--    region of more than luminar_gistar_max_cells() cells is refused (SQLSTATE 22023, naming the fix). The zones
--    are made of exactly these cells: one definition of a hot cell.
-- 4. Zones: rook-connected groups of hot cells (cells sharing an edge; ST_ClusterDBSCAN on cell indexes with eps
--    1.2: rook neighbours lie 1 apart, diagonal ones 1.41). Rook, not queen: squares touching only at a corner
--    union to a MultiPolygon; squares sharing edges union to one Polygon (holes allowed), the column's type.
--    Diagonal-only hot cells are separate zones. (A ring of cells pinched at a corner is still one valid Polygon:
--    its hole touches its shell at one point, which the OGC rules allow; checked.)
-- 5. Each zone: boundary, the union of its cells (exact: EPSG:6933 is cylindrical, so its squares are
--    longitude/latitude rectangles); recent_incidents, its incidents of the last `days`; crime_density, those per
--    km2 (its cells' area: cells x cell_m^2, equal-area); crime_types, their types (most frequent first); risk level
--    and score from its peak z; trend over weekly counts of its incidents. Weeks are the 7-day periods ending now
--    (week 0: the last 7 days); they are counted over the last min(weeks, whole weeks since the first incident
--    seen) weeks, the first incident seen being the oldest of all incidents (any zone, any region) of the last
--    weeks + 1 weeks (one more, to see whether data starts before the oldest counted week): so every counted week
--    lies after the data's start, and a zone's zeros are weeks with no incident, not weeks with no data. Fewer than
--    luminar_trend_min_weeks() (8) weeks is 'insufficient data' (p NULL), else luminar_mann_kendall at alpha 0.05
--    (each zone tested alone, not corrected for the number of zones: among many zones with no trend, about one in
--    twenty reads increasing or decreasing by chance; trend_p_value says how strongly). metadata holds the cells,
--    the weekly counts (oldest first), S, Var(S), z, the peak and mean z and the parameters.
-- 6. The previous analysis zones are deleted and the new ones inserted, in one transaction: a re-run replaces
--    them (never duplicates) and never touches zones stored by nodes (made_by = 'node').
-- It returns what it did: zones, hot cells, regions, incidents of the Gi* window, zones replaced, weeks tested.
--
-- luminar_risk_at(latitude, longitude): the valid zone (node or analysis) covering the point with the highest
-- risk (level, then score), or no row.
--
-- Rights: luminar_analyze_risk_zones writes risk_zones: the owner's only (REVOKE from PUBLIC, no grant).
-- luminar_risk_at reads risk_zones with the caller's rights and is granted as luminar_gistar is.

-- migrate:up
ALTER TABLE risk_zones
    ADD COLUMN trend_p_value double precision,
    ADD COLUMN made_by       text NOT NULL DEFAULT 'node',
    DROP CONSTRAINT risk_zones_trend_direction_known,
    ADD CONSTRAINT risk_zones_trend_direction_known
        CHECK (trend_direction IS NULL
               OR trend_direction IN ('increasing', 'decreasing', 'stable', 'insufficient data')),
    ADD CONSTRAINT risk_zones_trend_p_value_range CHECK (trend_p_value IS NULL OR trend_p_value BETWEEN 0 AND 1),
    ADD CONSTRAINT risk_zones_made_by_known CHECK (made_by IN ('node', 'analysis'));
CREATE INDEX idx_risk_zones_analysis ON risk_zones (zone_id) WHERE made_by = 'analysis';

CREATE FUNCTION luminar_trend_min_weeks() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 8 $$;

CREATE FUNCTION luminar_mann_kendall(p_counts double precision[], p_alpha double precision DEFAULT 0.05,
                                     OUT trend text, OUT p double precision, OUT z double precision,
                                     OUT s double precision, OUT var_s double precision, OUT n integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH x AS (
        SELECT u.v, u.i FROM unnest(p_counts) WITH ORDINALITY AS u (v, i) WHERE u.v IS NOT NULL
    ), score AS (
        SELECT coalesce(sum(sign(b.v - a.v)), 0)::double precision AS s FROM x AS a JOIN x AS b ON b.i > a.i
    ), ties AS (
        SELECT coalesce(sum(g.t * (g.t - 1) * (2 * g.t + 5)), 0) AS tied
          FROM (SELECT count(*)::double precision AS t FROM x GROUP BY x.v) AS g
    ), size AS (
        SELECT count(*)::double precision AS n FROM x
    ), variance AS (
        SELECT sc.s, (sz.n * (sz.n - 1) * (2 * sz.n + 5) - ti.tied) / 18.0 AS var_s, sz.n
          FROM score AS sc, ties AS ti, size AS sz
    ), scored AS (
        SELECT va.*, CASE WHEN va.var_s > 0 AND va.s > 0 THEN (va.s - 1) / sqrt(va.var_s)
                          WHEN va.var_s > 0 AND va.s < 0 THEN (va.s + 1) / sqrt(va.var_s)
                          ELSE 0.0 END AS z
          FROM variance AS va
    ), tested AS (
        SELECT sd.*, least(1.0, 2.0 * luminar_normal_tail(abs(sd.z))) AS p FROM scored AS sd
    )
    SELECT CASE WHEN t.p < coalesce(p_alpha, 0.05) AND t.z > 0 THEN 'increasing'
                WHEN t.p < coalesce(p_alpha, 0.05) AND t.z < 0 THEN 'decreasing'
                ELSE 'stable' END,
           t.p, t.z, t.s, t.var_s, t.n::integer
      FROM tested AS t
$$;

CREATE FUNCTION luminar_risk_level(p_z double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (1 + (p_z >= 1.959963984540054)::integer + (p_z >= 2.5758293035489)::integer
              + (p_z >= 3.2905267314919)::integer + (p_z >= 3.8905918864131)::integer)::smallint
$$;

CREATE FUNCTION luminar_risk_score(p_z double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN p_z > 0 THEN greatest(0.0, least(1.0, 1.0 - 2.0 * luminar_normal_tail(p_z))) ELSE 0.0 END
$$;

CREATE FUNCTION luminar_analyze_risk_zones(p_days integer, p_cell_m double precision, p_weeks integer,
                                           OUT zones integer, OUT hot_cells integer, OUT regions integer,
                                           OUT incidents integer, OUT replaced integer, OUT weeks integer)
-- No JIT: the planner cannot see how many rows generate_series and the temporary tables give, guesses millions,
-- and compiled the statements for 3 s where they run in milliseconds (measured on 850 incidents).
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
DECLARE
    v_now      timestamptz := now();
    v_first    timestamptz;
BEGIN
    IF p_days IS NULL OR p_days < 1 OR p_cell_m IS NULL OR NOT p_cell_m > 0 OR p_cell_m = 'Infinity'
       OR p_weeks IS NULL OR p_weeks < 1 THEN
        RAISE EXCEPTION 'luminar_analyze_risk_zones: days and weeks must be >= 1 and cell_m a positive number of '
                        'metres' USING ERRCODE = '22023';
    END IF;

    -- 1. The incidents, each in its cell (read once; crime_incidents holds their grid position).
    DROP TABLE IF EXISTS pg_temp.luminar_zone_incidents;
    CREATE TEMP TABLE luminar_zone_incidents ON COMMIT DROP AS
        SELECT luminar_cell_index(i.grid_y, p_cell_m) AS r, luminar_cell_index(i.grid_x, p_cell_m) AS c,
               i."timestamp" AS ts, i.event_type AS t
          FROM crime_incidents AS i
         WHERE i."timestamp" >= v_now - make_interval(days => greatest(p_days, 7 * (p_weeks + 1)));
    ANALYZE luminar_zone_incidents;
    SELECT count(*) FILTER (WHERE li.ts >= v_now - make_interval(days => p_days)),
           min(li.ts) FILTER (WHERE li.ts >= v_now - make_interval(days => 7 * (p_weeks + 1)))
      INTO incidents, v_first
      FROM luminar_zone_incidents AS li;
    weeks := least(p_weeks, coalesce(floor(extract(epoch FROM v_now - v_first) / 604800.0), 0))::integer;

    -- 2. The regions of the Gi* window (luminar_gistar_regions, the study areas of luminar_gistar).
    SELECT count(DISTINCT g.region) INTO regions
      FROM (SELECT array_agg(o.r) AS rs, array_agg(o.c) AS cs
              FROM (SELECT DISTINCT li.r, li.c FROM luminar_zone_incidents AS li
                     WHERE li.ts >= v_now - make_interval(days => p_days)) AS o) AS occupied
     CROSS JOIN LATERAL luminar_gistar_regions(occupied.rs, occupied.cs, p_cell_m) AS g;

    -- 3. and 4. The hot cells of luminar_gistar (95 % or more), grouped into rook-connected zones (regions lie
    -- 10 km apart: no zone joins two).
    DROP TABLE IF EXISTS pg_temp.luminar_zone_hot;
    CREATE TEMP TABLE luminar_zone_hot ON COMMIT DROP AS
        SELECT 0 AS region, ST_ClusterDBSCAN(ST_MakePoint(s.cell_col, s.cell_row), 1.2, 1) OVER () AS part,
               s.cell_row AS r, s.cell_col AS c, s.incidents::double precision AS x, s.z
          FROM luminar_gistar(p_days, p_cell_m) AS s
         WHERE s.class = 'hot' AND s.confidence >= 95;
    ANALYZE luminar_zone_hot;
    SELECT count(*) INTO hot_cells FROM luminar_zone_hot;

    -- 5. and 6. Replace the analysis zones.
    DELETE FROM risk_zones WHERE made_by = 'analysis';
    GET DIAGNOSTICS replaced = ROW_COUNT;
    WITH zone_cells AS (
        SELECT h.region, h.part, count(*) AS cells, max(h.z) AS peak, avg(h.z) AS mean_z,
               jsonb_agg(jsonb_build_array(h.r, h.c) ORDER BY h.r, h.c) AS cell_list,
               ST_Simplify(ST_Union(ST_MakeEnvelope(h.c * p_cell_m, h.r * p_cell_m, (h.c + 1) * p_cell_m,
                                                    (h.r + 1) * p_cell_m, luminar_grid_srid())), 0) AS shape
          FROM luminar_zone_hot AS h
         GROUP BY h.region, h.part
    ), recent AS (
        SELECT h.region, h.part, count(*)::integer AS n,
               array_agg(li.t ORDER BY li.t) AS types
          FROM luminar_zone_hot AS h
          JOIN luminar_zone_incidents AS li ON li.r = h.r AND li.c = h.c
         WHERE li.ts >= v_now - make_interval(days => p_days)
         GROUP BY h.region, h.part
    ), weekly AS MATERIALIZED (
        SELECT h.region, h.part, greatest(0, floor(extract(epoch FROM v_now - li.ts) / 604800.0))::integer AS week,
               count(*) AS n
          FROM luminar_zone_hot AS h
          JOIN luminar_zone_incidents AS li ON li.r = h.r AND li.c = h.c
         WHERE li.ts >= v_now - make_interval(days => 7 * weeks)
         GROUP BY 1, 2, 3
    ), series AS (
        SELECT zc.region, zc.part, array_agg(coalesce(w.n, 0)::double precision ORDER BY k.week DESC) AS counts
          FROM zone_cells AS zc
         CROSS JOIN generate_series(0, weeks - 1) AS k (week)
          LEFT JOIN weekly AS w ON w.region = zc.region AND w.part = zc.part AND w.week = k.week
         GROUP BY zc.region, zc.part
    ), made AS (
        SELECT zc.*, ST_Transform(zc.shape, 4326) AS boundary, coalesce(rc.n, 0) AS recent_n,
               (SELECT coalesce(array_agg(tc.t ORDER BY tc.k DESC, tc.t), '{}')
                  FROM (SELECT u.t, count(*) AS k FROM unnest(rc.types) AS u (t) GROUP BY u.t) AS tc) AS types,
               coalesce(se.counts, '{}') AS counts, mk.trend, mk.p, mk.z, mk.s, mk.var_s
          FROM zone_cells AS zc
          LEFT JOIN recent AS rc ON rc.region = zc.region AND rc.part = zc.part
          LEFT JOIN series AS se ON se.region = zc.region AND se.part = zc.part
          LEFT JOIN LATERAL (SELECT * FROM luminar_mann_kendall(se.counts, 0.05)
                              WHERE weeks >= luminar_trend_min_weeks()) AS mk ON true
    )
    INSERT INTO risk_zones (name, boundary, risk_level, risk_score, crime_types, valid_from, metadata, crime_density,
                            recent_incidents, trend_direction, trend_p_value, made_by)
    SELECT format('Hot zone near %s, %s (%s cells of %s m)',
                  round(ST_Y(ST_PointOnSurface(m.boundary))::numeric, 4),
                  round(ST_X(ST_PointOnSurface(m.boundary))::numeric, 4), m.cells, p_cell_m),
           m.boundary, luminar_risk_level(m.peak), luminar_risk_score(m.peak), m.types, v_now,
           jsonb_build_object('source', 'luminar_analyze_risk_zones', 'days', p_days, 'cell_m', p_cell_m,
                              'weeks', weeks, 'cells', m.cell_list, 'peak_z', m.peak, 'mean_z', m.mean_z,
                              'weekly_incidents', to_jsonb(m.counts), 'mann_kendall',
                              CASE WHEN m.trend IS NOT NULL
                                   THEN jsonb_build_object('s', m.s, 'var_s', m.var_s, 'z', m.z, 'alpha', 0.05)
                              END),
           m.recent_n / (m.cells * p_cell_m * p_cell_m / 1e6),
           m.recent_n,
           coalesce(m.trend, 'insufficient data'),
           m.p,
           'analysis'
      FROM made AS m
     ORDER BY m.peak DESC, m.region, m.part;
    GET DIAGNOSTICS zones = ROW_COUNT;
END
$$;

CREATE FUNCTION luminar_risk_at(p_latitude double precision, p_longitude double precision)
RETURNS SETOF risk_zones
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_latitude IS NULL OR NOT p_latitude BETWEEN -90 AND 90
       OR p_longitude IS NULL OR NOT p_longitude BETWEEN -180 AND 180 THEN
        RAISE EXCEPTION 'luminar_risk_at: latitude must lie in [-90, 90] and longitude in [-180, 180]'
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
        SELECT z.*
          FROM risk_zones AS z
         WHERE ST_Covers(z.boundary, ST_SetSRID(ST_MakePoint(p_longitude, p_latitude), 4326))
           AND z.valid_from <= now() AND (z.valid_until IS NULL OR z.valid_until > now())
         ORDER BY z.risk_level DESC, z.risk_score DESC, z.zone_id
         LIMIT 1;
END
$$;

REVOKE EXECUTE ON FUNCTION luminar_analyze_risk_zones(integer, double precision, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION luminar_risk_at(double precision, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luminar_risk_at(double precision, double precision)
    TO luminar_miner, luminar_validator, luminar_analyst;

-- migrate:down
DROP FUNCTION IF EXISTS luminar_risk_at(double precision, double precision);
DROP FUNCTION IF EXISTS luminar_analyze_risk_zones(integer, double precision, integer);
DROP FUNCTION IF EXISTS luminar_risk_score(double precision);
DROP FUNCTION IF EXISTS luminar_risk_level(double precision);
DROP FUNCTION IF EXISTS luminar_mann_kendall(double precision[], double precision);
DROP FUNCTION IF EXISTS luminar_trend_min_weeks();
DELETE FROM risk_zones WHERE made_by = 'analysis';
UPDATE risk_zones SET trend_direction = NULL WHERE trend_direction = 'insufficient data';
DROP INDEX IF EXISTS idx_risk_zones_analysis;
ALTER TABLE risk_zones
    DROP CONSTRAINT risk_zones_made_by_known,
    DROP CONSTRAINT risk_zones_trend_p_value_range,
    DROP CONSTRAINT risk_zones_trend_direction_known,
    ADD CONSTRAINT risk_zones_trend_direction_known
        CHECK (trend_direction IS NULL OR trend_direction IN ('increasing', 'decreasing', 'stable')),
    DROP COLUMN made_by,
    DROP COLUMN trend_p_value;
