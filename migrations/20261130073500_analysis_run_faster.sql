-- Migration: analysis_run_faster
-- Created:   2026-11-30 07:35:00 (UTC)
--
-- The cluster run without a quadratic step, and the analysis functions with the memory their sorts need.
--
-- luminar_analyze_clusters (20261130045100) found the window's analysis clusters the run did not produce with
-- NOT EXISTS over its members' temporary table, which has no index on cluster_id: planned as a nested loop (the
-- clusters just written have no statistics yet), it compared every cluster with every member, 12 s for 716 clusters
-- of 122,875 members over 1M events. The set difference (EXCEPT, hashed) gives the same clusters at once. Nothing
-- else of the function changes.
--
-- updated_at. Its BEFORE UPDATE trigger (luminar_touch_updated_at, a PL/pgSQL call per row) now fires only when the
-- statement left updated_at as it was (WHEN OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at), on every table that
-- has it. A statement that sets updated_at itself keeps its value: the cluster run sets clock_timestamp(), the value
-- the trigger would give; a copy's sync sets central's, which the trigger kept already. Nodes cannot set updated_at
-- (their UPDATE grants name other columns), so for them nothing changes. The trigger on each row halved the rate at
-- which a statement updates crime_events rows: the cluster run's 92,000 pointer updates took 31.8 s with it and 17.4
-- s with the value set by the statement (measured on one machine, same data).
--
-- work_mem: the cluster and near-repeat runs sorted their 350,000 incidents on disk at the default 4 MB (external
-- merges of 9-12 MB); they run with 64 MB, as luminar_gistar does (a run is one session of the owner, one at a
-- time).

-- migrate:up
CREATE OR REPLACE FUNCTION luminar_analyze_clusters(p_days integer, p_eps_m double precision, p_min_points integer)
RETURNS TABLE (
    incidents         integer,
    clusters          integer,
    clusters_written  integer,
    clusters_removed  integer,
    events_updated    integer,
    margin            double precision
)
-- No JIT: compiling the run's few large statements cost more than it saved (~1 s a statement, measured).
LANGUAGE plpgsql VOLATILE SET jit = off SET work_mem = '64MB' AS $$
#variable_conflict use_column
DECLARE
    v_since     timestamptz;
    v_e         double precision;  -- eps in radians
    v_lat_max   double precision;
    v_cell_h    double precision;
    v_cell_w    double precision;
    v_incidents integer;
    v_clusters  integer;
    v_margin    double precision;
    v_written   integer;
    v_removed   integer;
    v_events    integer;
    v_n         integer;
    v_t         timestamptz := clock_timestamp();  -- step times: SET client_min_messages = debug shows them
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: days must be a whole number >= 1' USING ERRCODE = '22023';
    END IF;
    -- The events' cluster_id updates below are the analysis's (migration 20261130062500 audits them by their keys).
    PERFORM set_config('luminar.analysis', txid_current()::text, true);
    IF p_eps_m IS NULL OR NOT p_eps_m > 0 OR p_eps_m > 1000000 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: eps_m must be a number of metres > 0 and <= 1000000'
            USING ERRCODE = '22023';
    END IF;
    IF p_min_points IS NULL OR p_min_points < 1 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: min_points must be a whole number >= 1' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('luminar_analyze_clusters'));
    v_since := now() - make_interval(days => p_days);
    v_e := p_eps_m / luminar_earth_radius_m();

    DROP TABLE IF EXISTS pg_temp.luminar_cluster_points;
    CREATE TEMP TABLE luminar_cluster_points ON COMMIT DROP AS
        SELECT i.incident_key, i.events, i.latitude, i.longitude, i."timestamp", i.event_type, i.severity_level
          FROM luminar_incidents(v_since) AS i;
    SELECT count(*), max(abs(p.latitude)) INTO v_incidents, v_lat_max FROM luminar_cluster_points AS p;
    RAISE DEBUG 'luminar_analyze_clusters: % incidents read at %', v_incidents, clock_timestamp() - v_t;

    -- Pass 1's cells (see the header), with a relative slack of 1e-9: a pair within eps_m lies in the same or
    -- neighbouring cells.
    v_cell_h := degrees(v_e) * (1.0 + 1e-9);
    v_cell_w := CASE WHEN coalesce(v_lat_max, 0) >= 89.0 THEN 360.0
                     ELSE degrees(2.0 * asin(least(1.0, sin(v_e / 2.0) / cos(radians(coalesce(v_lat_max, 0))))))
                          * (1.0 + 1e-9)
                END;

    DROP TABLE IF EXISTS pg_temp.luminar_cluster_members;
    CREATE TEMP TABLE luminar_cluster_members ON COMMIT DROP AS
    WITH celled AS (
        SELECT p.*, floor(p.latitude / v_cell_h) AS cy, floor(p.longitude / v_cell_w) AS cx
          FROM luminar_cluster_points AS p
    ), cells AS (
        -- occupied cells touching (queen neighbours: planar distance of at most sqrt(2) in cell units) are linked
        SELECT c.cy, c.cx, ST_ClusterDBSCAN(ST_MakePoint(c.cx, c.cy), 1.5, 1) OVER () AS comp
          FROM (SELECT DISTINCT ce.cy, ce.cx FROM celled AS ce) AS c
    ), linked AS (
        SELECT ce.*, cl.comp FROM celled AS ce JOIN cells AS cl ON cl.cy = ce.cy AND cl.cx = ce.cx
    ), sized AS (
        SELECT l.*, count(*) OVER (PARTITION BY l.comp) AS n FROM linked AS l
    ), unit AS (
        SELECT s.*, radians(s.latitude) AS phi, radians(s.longitude) AS lam,
               cos(radians(s.latitude)) * cos(radians(s.longitude)) AS ux,
               cos(radians(s.latitude)) * sin(radians(s.longitude)) AS uy, sin(radians(s.latitude)) AS uz
          FROM sized AS s
         WHERE s.n >= p_min_points
    ), centred AS (
        SELECT u.*, atan2(sum(u.uz) OVER w, sqrt((sum(u.ux) OVER w) ^ 2 + (sum(u.uy) OVER w) ^ 2)) AS phi0,
               atan2(sum(u.uy) OVER w, sum(u.ux) OVER w) AS lam0
          FROM unit AS u
        WINDOW w AS (PARTITION BY u.comp)
    ), hav AS (
        -- h: the haversine of the angle from the centre (1 + cos c = 2 - 2h); k = 1 / (1 - h)
        SELECT c.*, sin((c.phi - c.phi0) / 2.0) ^ 2 + cos(c.phi0) * cos(c.phi) * sin((c.lam - c.lam0) / 2.0) ^ 2 AS h
          FROM centred AS c
    ), scaled AS (
        SELECT h.*, (1.0 + 1.0 / (1.0 - max(h.h) OVER w)) / 2.0 AS s, max(h.h) OVER w AS h_max
          FROM hav AS h
        WINDOW w AS (PARTITION BY h.comp)
    ), projected AS (
        SELECT sc.*,
               luminar_earth_radius_m() / (1.0 - sc.h) / sc.s * cos(sc.phi) * sin(sc.lam - sc.lam0) AS x,
               luminar_earth_radius_m() / (1.0 - sc.h) / sc.s
                   * (cos(sc.phi0) * sin(sc.phi) - sin(sc.phi0) * cos(sc.phi) * cos(sc.lam - sc.lam0)) AS y
          FROM scaled AS sc
    ), clustered AS (
        SELECT pr.*, ST_ClusterDBSCAN(ST_MakePoint(pr.x, pr.y), p_eps_m, p_min_points)
                         OVER (PARTITION BY pr.comp ORDER BY pr.incident_key) AS cno
          FROM projected AS pr
    )
    SELECT c.incident_key, c.events, c.latitude, c.longitude, c."timestamp", c.event_type, c.severity_level,
           c.ux, c.uy, c.uz, c.h_max / (2.0 - c.h_max) AS margin, c.cno IS NOT NULL AS clustered,
           md5(concat_ws('/', min(c.incident_key::text) OVER (PARTITION BY c.comp, c.cno), p_days, p_eps_m,
                         p_min_points))::uuid AS cluster_id
      FROM clustered AS c;
    SELECT max(m.margin) INTO v_margin FROM luminar_cluster_members AS m;
    DELETE FROM luminar_cluster_members AS m WHERE NOT m.clustered;
    CREATE INDEX ON luminar_cluster_members (incident_key);
    ANALYZE luminar_cluster_members;
    RAISE DEBUG 'luminar_analyze_clusters: clustered at %', clock_timestamp() - v_t;

    -- The clusters, upserted; a row is rewritten only when a value differs.
    WITH centre AS (
        SELECT m.cluster_id, count(*)::integer AS n, sum(m.events)::integer AS events,
               round(degrees(atan2(sum(m.uz), sqrt(sum(m.ux) ^ 2 + sum(m.uy) ^ 2)))::numeric, 6)::double precision
                   AS latitude,
               round(degrees(atan2(sum(m.uy), sum(m.ux)))::numeric, 6)::double precision AS longitude,
               round(avg(m.severity_level), 2)::double precision AS avg_severity,
               min(m."timestamp") AS time_start, max(m."timestamp") AS time_end
          FROM luminar_cluster_members AS m
         GROUP BY m.cluster_id
    ), typed AS (
        SELECT t.cluster_id, jsonb_object_agg(t.event_type, t.n) AS crime_types,
               (array_agg(t.event_type ORDER BY t.n DESC, t.event_type))[1] AS dominant,
               max(t.n) AS dominant_n
          FROM (SELECT m.cluster_id, m.event_type, count(*) AS n FROM luminar_cluster_members AS m
                 GROUP BY m.cluster_id, m.event_type) AS t
         GROUP BY t.cluster_id
    ), sized AS (
        SELECT c.*, ty.crime_types, ty.dominant, ty.dominant_n,
               least(1000000.0, greatest(1.0, ceil(max(luminar_haversine_m(c.latitude, c.longitude, m.latitude,
                                                                           m.longitude)) * 10.0) / 10.0)) AS radius_m
          FROM centre AS c
          JOIN typed AS ty ON ty.cluster_id = c.cluster_id
          JOIN luminar_cluster_members AS m ON m.cluster_id = c.cluster_id
         GROUP BY c.cluster_id, c.n, c.events, c.latitude, c.longitude, c.avg_severity, c.time_start, c.time_end,
                  ty.crime_types, ty.dominant, ty.dominant_n
    )
    INSERT INTO crime_clusters AS cc (cluster_id, miner_uid, latitude, longitude, radius_m, event_count,
                                      dominant_crime_type, avg_severity, time_start, time_end, metadata,
                                      cluster_type, confidence_score, pattern_description, made_by)
    SELECT s.cluster_id, NULL, s.latitude, s.longitude, s.radius_m, s.n, s.dominant, s.avg_severity, s.time_start,
           s.time_end,
           jsonb_build_object('algorithm', 'dbscan', 'eps_m', p_eps_m, 'min_points', p_min_points,
                              'window_days', p_days, 'events', s.events, 'crime_types', s.crime_types),
           'geographic', round((1.0 - 2.0 ^ (-least(s.n::double precision / p_min_points, 64.0)))::numeric, 4)
                             ::double precision,
           format('%s incidents within %s m of (%s, %s), mostly %s (%s), %s to %s', s.n, s.radius_m, s.latitude,
                  s.longitude, replace(s.dominant, '_', ' '), s.dominant_n,
                  to_char(s.time_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                  to_char(s.time_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')),
           'analysis'
      FROM sized AS s
    ON CONFLICT (cluster_id) DO UPDATE
       SET latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, radius_m = EXCLUDED.radius_m,
           event_count = EXCLUDED.event_count, dominant_crime_type = EXCLUDED.dominant_crime_type,
           avg_severity = EXCLUDED.avg_severity, time_start = EXCLUDED.time_start, time_end = EXCLUDED.time_end,
           metadata = EXCLUDED.metadata, cluster_type = EXCLUDED.cluster_type,
           confidence_score = EXCLUDED.confidence_score, pattern_description = EXCLUDED.pattern_description
     WHERE cc.made_by = 'analysis'
       AND (cc.latitude, cc.longitude, cc.radius_m, cc.event_count, cc.dominant_crime_type, cc.avg_severity,
            cc.time_start, cc.time_end, cc.metadata, cc.cluster_type, cc.confidence_score, cc.pattern_description)
           IS DISTINCT FROM
           (EXCLUDED.latitude, EXCLUDED.longitude, EXCLUDED.radius_m, EXCLUDED.event_count,
            EXCLUDED.dominant_crime_type, EXCLUDED.avg_severity, EXCLUDED.time_start, EXCLUDED.time_end,
            EXCLUDED.metadata, EXCLUDED.cluster_type, EXCLUDED.confidence_score, EXCLUDED.pattern_description);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    SELECT count(DISTINCT m.cluster_id) INTO v_clusters FROM luminar_cluster_members AS m;
    RAISE DEBUG 'luminar_analyze_clusters: % clusters written at %', v_written, clock_timestamp() - v_t;

    -- The window's events follow their incident; a pointer at a node-made cluster stays.
    WITH wanted AS (
        SELECT e.event_id, e.cluster_id AS old_id, m.cluster_id AS new_id
          FROM crime_events AS e
          LEFT JOIN luminar_cluster_members AS m
            ON m.incident_key = luminar_incident_key(e.related_reports, e.event_id)
         WHERE e."timestamp" >= v_since
           AND e.cluster_id IS DISTINCT FROM m.cluster_id
    )
    UPDATE crime_events AS t
       SET cluster_id = w.new_id, updated_at = clock_timestamp()  -- the trigger's value, set here (see the header)
      FROM wanted AS w
     WHERE t.event_id = w.event_id
       AND (w.old_id IS NULL
            OR EXISTS (SELECT 1 FROM crime_clusters AS c WHERE c.cluster_id = w.old_id AND c.made_by = 'analysis'));
    GET DIAGNOSTICS v_events = ROW_COUNT;
    RAISE DEBUG 'luminar_analyze_clusters: % events updated at %', v_events, clock_timestamp() - v_t;

    -- The window's analysis clusters this run did not produce: their remaining (older) events let go, then they go.
    DROP TABLE IF EXISTS pg_temp.luminar_cluster_stale;
    CREATE TEMP TABLE luminar_cluster_stale ON COMMIT DROP AS
        SELECT c.cluster_id FROM crime_clusters AS c
         WHERE c.made_by = 'analysis' AND c.time_end >= v_since
        EXCEPT
        SELECT m.cluster_id FROM luminar_cluster_members AS m;
    SELECT count(*) INTO v_removed FROM luminar_cluster_stale;
    IF v_removed > 0 THEN
        -- (statistics first: planned as empty, the UPDATE read every event, 4 s for 300,000)
        ANALYZE luminar_cluster_stale;
        UPDATE crime_events AS e SET cluster_id = NULL, updated_at = clock_timestamp()
         WHERE e.cluster_id IN (SELECT s.cluster_id FROM luminar_cluster_stale AS s);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_events := v_events + v_n;
        DELETE FROM crime_clusters AS c WHERE c.cluster_id IN (SELECT s.cluster_id FROM luminar_cluster_stale AS s);
        GET DIAGNOSTICS v_removed = ROW_COUNT;
    END IF;

    DROP TABLE pg_temp.luminar_cluster_stale;
    DROP TABLE pg_temp.luminar_cluster_members;
    DROP TABLE pg_temp.luminar_cluster_points;
    PERFORM set_config('luminar.analysis', '', true);
    RETURN QUERY SELECT v_incidents, v_clusters, v_written, v_removed, v_events, coalesce(v_margin, 0.0);
END
$$;

ALTER FUNCTION luminar_flag_near_repeats(integer, double precision, double precision, double precision)
    SET work_mem = '64MB';

DROP TRIGGER raw_incident_reports_updated_at ON raw_incident_reports;
CREATE TRIGGER raw_incident_reports_updated_at BEFORE UPDATE ON raw_incident_reports
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER crime_clusters_updated_at ON crime_clusters;
CREATE TRIGGER crime_clusters_updated_at BEFORE UPDATE ON crime_clusters
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER crime_events_updated_at ON crime_events;
CREATE TRIGGER crime_events_updated_at BEFORE UPDATE ON crime_events
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER miner_performance_updated_at ON miner_performance;
CREATE TRIGGER miner_performance_updated_at BEFORE UPDATE ON miner_performance
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER validator_performance_updated_at ON validator_performance;
CREATE TRIGGER validator_performance_updated_at BEFORE UPDATE ON validator_performance
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER risk_zones_updated_at ON risk_zones;
CREATE TRIGGER risk_zones_updated_at BEFORE UPDATE ON risk_zones
    FOR EACH ROW WHEN (OLD.updated_at IS NOT DISTINCT FROM NEW.updated_at) EXECUTE FUNCTION luminar_touch_updated_at();

-- migrate:down
DROP TRIGGER raw_incident_reports_updated_at ON raw_incident_reports;
CREATE TRIGGER raw_incident_reports_updated_at BEFORE UPDATE ON raw_incident_reports
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER crime_clusters_updated_at ON crime_clusters;
CREATE TRIGGER crime_clusters_updated_at BEFORE UPDATE ON crime_clusters
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER crime_events_updated_at ON crime_events;
CREATE TRIGGER crime_events_updated_at BEFORE UPDATE ON crime_events
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER miner_performance_updated_at ON miner_performance;
CREATE TRIGGER miner_performance_updated_at BEFORE UPDATE ON miner_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER validator_performance_updated_at ON validator_performance;
CREATE TRIGGER validator_performance_updated_at BEFORE UPDATE ON validator_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
DROP TRIGGER risk_zones_updated_at ON risk_zones;
CREATE TRIGGER risk_zones_updated_at BEFORE UPDATE ON risk_zones
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
ALTER FUNCTION luminar_flag_near_repeats(integer, double precision, double precision, double precision)
    RESET work_mem;
CREATE OR REPLACE FUNCTION luminar_analyze_clusters(p_days integer, p_eps_m double precision, p_min_points integer)
RETURNS TABLE (
    incidents         integer,
    clusters          integer,
    clusters_written  integer,
    clusters_removed  integer,
    events_updated    integer,
    margin            double precision
)
-- No JIT: compiling the run's few large statements cost more than it saved (~1 s a statement, measured).
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_since     timestamptz;
    v_e         double precision;  -- eps in radians
    v_lat_max   double precision;
    v_cell_h    double precision;
    v_cell_w    double precision;
    v_incidents integer;
    v_clusters  integer;
    v_margin    double precision;
    v_written   integer;
    v_removed   integer;
    v_events    integer;
    v_n         integer;
    v_t         timestamptz := clock_timestamp();  -- step times: SET client_min_messages = debug shows them
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: days must be a whole number >= 1' USING ERRCODE = '22023';
    END IF;
    -- The events' cluster_id updates below are the analysis's (migration 20261130062500 audits them by their keys).
    PERFORM set_config('luminar.analysis', txid_current()::text, true);
    IF p_eps_m IS NULL OR NOT p_eps_m > 0 OR p_eps_m > 1000000 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: eps_m must be a number of metres > 0 and <= 1000000'
            USING ERRCODE = '22023';
    END IF;
    IF p_min_points IS NULL OR p_min_points < 1 THEN
        RAISE EXCEPTION 'luminar_analyze_clusters: min_points must be a whole number >= 1' USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('luminar_analyze_clusters'));
    v_since := now() - make_interval(days => p_days);
    v_e := p_eps_m / luminar_earth_radius_m();

    DROP TABLE IF EXISTS pg_temp.luminar_cluster_points;
    CREATE TEMP TABLE luminar_cluster_points ON COMMIT DROP AS
        SELECT i.incident_key, i.events, i.latitude, i.longitude, i."timestamp", i.event_type, i.severity_level
          FROM luminar_incidents(v_since) AS i;
    SELECT count(*), max(abs(p.latitude)) INTO v_incidents, v_lat_max FROM luminar_cluster_points AS p;
    RAISE DEBUG 'luminar_analyze_clusters: % incidents read at %', v_incidents, clock_timestamp() - v_t;

    -- Pass 1's cells (see the header), with a relative slack of 1e-9: a pair within eps_m lies in the same or
    -- neighbouring cells.
    v_cell_h := degrees(v_e) * (1.0 + 1e-9);
    v_cell_w := CASE WHEN coalesce(v_lat_max, 0) >= 89.0 THEN 360.0
                     ELSE degrees(2.0 * asin(least(1.0, sin(v_e / 2.0) / cos(radians(coalesce(v_lat_max, 0))))))
                          * (1.0 + 1e-9)
                END;

    DROP TABLE IF EXISTS pg_temp.luminar_cluster_members;
    CREATE TEMP TABLE luminar_cluster_members ON COMMIT DROP AS
    WITH celled AS (
        SELECT p.*, floor(p.latitude / v_cell_h) AS cy, floor(p.longitude / v_cell_w) AS cx
          FROM luminar_cluster_points AS p
    ), cells AS (
        -- occupied cells touching (queen neighbours: planar distance of at most sqrt(2) in cell units) are linked
        SELECT c.cy, c.cx, ST_ClusterDBSCAN(ST_MakePoint(c.cx, c.cy), 1.5, 1) OVER () AS comp
          FROM (SELECT DISTINCT ce.cy, ce.cx FROM celled AS ce) AS c
    ), linked AS (
        SELECT ce.*, cl.comp FROM celled AS ce JOIN cells AS cl ON cl.cy = ce.cy AND cl.cx = ce.cx
    ), sized AS (
        SELECT l.*, count(*) OVER (PARTITION BY l.comp) AS n FROM linked AS l
    ), unit AS (
        SELECT s.*, radians(s.latitude) AS phi, radians(s.longitude) AS lam,
               cos(radians(s.latitude)) * cos(radians(s.longitude)) AS ux,
               cos(radians(s.latitude)) * sin(radians(s.longitude)) AS uy, sin(radians(s.latitude)) AS uz
          FROM sized AS s
         WHERE s.n >= p_min_points
    ), centred AS (
        SELECT u.*, atan2(sum(u.uz) OVER w, sqrt((sum(u.ux) OVER w) ^ 2 + (sum(u.uy) OVER w) ^ 2)) AS phi0,
               atan2(sum(u.uy) OVER w, sum(u.ux) OVER w) AS lam0
          FROM unit AS u
        WINDOW w AS (PARTITION BY u.comp)
    ), hav AS (
        -- h: the haversine of the angle from the centre (1 + cos c = 2 - 2h); k = 1 / (1 - h)
        SELECT c.*, sin((c.phi - c.phi0) / 2.0) ^ 2 + cos(c.phi0) * cos(c.phi) * sin((c.lam - c.lam0) / 2.0) ^ 2 AS h
          FROM centred AS c
    ), scaled AS (
        SELECT h.*, (1.0 + 1.0 / (1.0 - max(h.h) OVER w)) / 2.0 AS s, max(h.h) OVER w AS h_max
          FROM hav AS h
        WINDOW w AS (PARTITION BY h.comp)
    ), projected AS (
        SELECT sc.*,
               luminar_earth_radius_m() / (1.0 - sc.h) / sc.s * cos(sc.phi) * sin(sc.lam - sc.lam0) AS x,
               luminar_earth_radius_m() / (1.0 - sc.h) / sc.s
                   * (cos(sc.phi0) * sin(sc.phi) - sin(sc.phi0) * cos(sc.phi) * cos(sc.lam - sc.lam0)) AS y
          FROM scaled AS sc
    ), clustered AS (
        SELECT pr.*, ST_ClusterDBSCAN(ST_MakePoint(pr.x, pr.y), p_eps_m, p_min_points)
                         OVER (PARTITION BY pr.comp ORDER BY pr.incident_key) AS cno
          FROM projected AS pr
    )
    SELECT c.incident_key, c.events, c.latitude, c.longitude, c."timestamp", c.event_type, c.severity_level,
           c.ux, c.uy, c.uz, c.h_max / (2.0 - c.h_max) AS margin, c.cno IS NOT NULL AS clustered,
           md5(concat_ws('/', min(c.incident_key::text) OVER (PARTITION BY c.comp, c.cno), p_days, p_eps_m,
                         p_min_points))::uuid AS cluster_id
      FROM clustered AS c;
    SELECT max(m.margin) INTO v_margin FROM luminar_cluster_members AS m;
    DELETE FROM luminar_cluster_members AS m WHERE NOT m.clustered;
    CREATE INDEX ON luminar_cluster_members (incident_key);
    ANALYZE luminar_cluster_members;
    RAISE DEBUG 'luminar_analyze_clusters: clustered at %', clock_timestamp() - v_t;

    -- The clusters, upserted; a row is rewritten only when a value differs.
    WITH centre AS (
        SELECT m.cluster_id, count(*)::integer AS n, sum(m.events)::integer AS events,
               round(degrees(atan2(sum(m.uz), sqrt(sum(m.ux) ^ 2 + sum(m.uy) ^ 2)))::numeric, 6)::double precision
                   AS latitude,
               round(degrees(atan2(sum(m.uy), sum(m.ux)))::numeric, 6)::double precision AS longitude,
               round(avg(m.severity_level), 2)::double precision AS avg_severity,
               min(m."timestamp") AS time_start, max(m."timestamp") AS time_end
          FROM luminar_cluster_members AS m
         GROUP BY m.cluster_id
    ), typed AS (
        SELECT t.cluster_id, jsonb_object_agg(t.event_type, t.n) AS crime_types,
               (array_agg(t.event_type ORDER BY t.n DESC, t.event_type))[1] AS dominant,
               max(t.n) AS dominant_n
          FROM (SELECT m.cluster_id, m.event_type, count(*) AS n FROM luminar_cluster_members AS m
                 GROUP BY m.cluster_id, m.event_type) AS t
         GROUP BY t.cluster_id
    ), sized AS (
        SELECT c.*, ty.crime_types, ty.dominant, ty.dominant_n,
               least(1000000.0, greatest(1.0, ceil(max(luminar_haversine_m(c.latitude, c.longitude, m.latitude,
                                                                           m.longitude)) * 10.0) / 10.0)) AS radius_m
          FROM centre AS c
          JOIN typed AS ty ON ty.cluster_id = c.cluster_id
          JOIN luminar_cluster_members AS m ON m.cluster_id = c.cluster_id
         GROUP BY c.cluster_id, c.n, c.events, c.latitude, c.longitude, c.avg_severity, c.time_start, c.time_end,
                  ty.crime_types, ty.dominant, ty.dominant_n
    )
    INSERT INTO crime_clusters AS cc (cluster_id, miner_uid, latitude, longitude, radius_m, event_count,
                                      dominant_crime_type, avg_severity, time_start, time_end, metadata,
                                      cluster_type, confidence_score, pattern_description, made_by)
    SELECT s.cluster_id, NULL, s.latitude, s.longitude, s.radius_m, s.n, s.dominant, s.avg_severity, s.time_start,
           s.time_end,
           jsonb_build_object('algorithm', 'dbscan', 'eps_m', p_eps_m, 'min_points', p_min_points,
                              'window_days', p_days, 'events', s.events, 'crime_types', s.crime_types),
           'geographic', round((1.0 - 2.0 ^ (-least(s.n::double precision / p_min_points, 64.0)))::numeric, 4)
                             ::double precision,
           format('%s incidents within %s m of (%s, %s), mostly %s (%s), %s to %s', s.n, s.radius_m, s.latitude,
                  s.longitude, replace(s.dominant, '_', ' '), s.dominant_n,
                  to_char(s.time_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                  to_char(s.time_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')),
           'analysis'
      FROM sized AS s
    ON CONFLICT (cluster_id) DO UPDATE
       SET latitude = EXCLUDED.latitude, longitude = EXCLUDED.longitude, radius_m = EXCLUDED.radius_m,
           event_count = EXCLUDED.event_count, dominant_crime_type = EXCLUDED.dominant_crime_type,
           avg_severity = EXCLUDED.avg_severity, time_start = EXCLUDED.time_start, time_end = EXCLUDED.time_end,
           metadata = EXCLUDED.metadata, cluster_type = EXCLUDED.cluster_type,
           confidence_score = EXCLUDED.confidence_score, pattern_description = EXCLUDED.pattern_description
     WHERE cc.made_by = 'analysis'
       AND (cc.latitude, cc.longitude, cc.radius_m, cc.event_count, cc.dominant_crime_type, cc.avg_severity,
            cc.time_start, cc.time_end, cc.metadata, cc.cluster_type, cc.confidence_score, cc.pattern_description)
           IS DISTINCT FROM
           (EXCLUDED.latitude, EXCLUDED.longitude, EXCLUDED.radius_m, EXCLUDED.event_count,
            EXCLUDED.dominant_crime_type, EXCLUDED.avg_severity, EXCLUDED.time_start, EXCLUDED.time_end,
            EXCLUDED.metadata, EXCLUDED.cluster_type, EXCLUDED.confidence_score, EXCLUDED.pattern_description);
    GET DIAGNOSTICS v_written = ROW_COUNT;
    SELECT count(DISTINCT m.cluster_id) INTO v_clusters FROM luminar_cluster_members AS m;
    RAISE DEBUG 'luminar_analyze_clusters: % clusters written at %', v_written, clock_timestamp() - v_t;

    -- The window's events follow their incident; a pointer at a node-made cluster stays.
    WITH wanted AS (
        SELECT e.event_id, e.cluster_id AS old_id, m.cluster_id AS new_id
          FROM crime_events AS e
          LEFT JOIN luminar_cluster_members AS m
            ON m.incident_key = luminar_incident_key(e.related_reports, e.event_id)
         WHERE e."timestamp" >= v_since
           AND e.cluster_id IS DISTINCT FROM m.cluster_id
    )
    UPDATE crime_events AS t
       SET cluster_id = w.new_id
      FROM wanted AS w
     WHERE t.event_id = w.event_id
       AND (w.old_id IS NULL
            OR EXISTS (SELECT 1 FROM crime_clusters AS c WHERE c.cluster_id = w.old_id AND c.made_by = 'analysis'));
    GET DIAGNOSTICS v_events = ROW_COUNT;
    RAISE DEBUG 'luminar_analyze_clusters: % events updated at %', v_events, clock_timestamp() - v_t;

    -- The window's analysis clusters this run did not produce: their remaining (older) events let go, then they go.
    DROP TABLE IF EXISTS pg_temp.luminar_cluster_stale;
    CREATE TEMP TABLE luminar_cluster_stale ON COMMIT DROP AS
        SELECT c.cluster_id FROM crime_clusters AS c
         WHERE c.made_by = 'analysis' AND c.time_end >= v_since
           AND NOT EXISTS (SELECT 1 FROM luminar_cluster_members AS m WHERE m.cluster_id = c.cluster_id);
    SELECT count(*) INTO v_removed FROM luminar_cluster_stale;
    IF v_removed > 0 THEN
        -- (statistics first: planned as empty, the UPDATE read every event, 4 s for 300,000)
        ANALYZE luminar_cluster_stale;
        UPDATE crime_events AS e SET cluster_id = NULL
         WHERE e.cluster_id IN (SELECT s.cluster_id FROM luminar_cluster_stale AS s);
        GET DIAGNOSTICS v_n = ROW_COUNT;
        v_events := v_events + v_n;
        DELETE FROM crime_clusters AS c WHERE c.cluster_id IN (SELECT s.cluster_id FROM luminar_cluster_stale AS s);
        GET DIAGNOSTICS v_removed = ROW_COUNT;
    END IF;

    DROP TABLE pg_temp.luminar_cluster_stale;
    DROP TABLE pg_temp.luminar_cluster_members;
    DROP TABLE pg_temp.luminar_cluster_points;
    PERFORM set_config('luminar.analysis', '', true);
    RETURN QUERY SELECT v_incidents, v_clusters, v_written, v_removed, v_events, coalesce(v_margin, 0.0);
END
$$;
