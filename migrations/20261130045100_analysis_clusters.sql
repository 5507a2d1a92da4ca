-- Migration: analysis_clusters
-- Created:   2026-11-30 04:51:00 (UTC)
--
-- Clusters found by the database (DBSCAN in metres over incidents) and near-repeat flags, each defined once, here.
-- Both work on incidents (luminar_incidents(since): one row per incident, its representative's point, time and type),
-- never on events: the events of one incident share its result.
--
-- Distance. Both analyses measure great-circle distance on a sphere of radius luminar_earth_radius_m() (6,371,008.8
-- m, the mean Earth radius) with the haversine formula, luminar_haversine_m: the metric of scikit-learn's
-- "haversine" (which works in radians on the unit sphere; eps_m / radius is its eps).
--
-- Clusters. luminar_analyze_clusters(days, eps_m, min_points) runs DBSCAN (Ester et al. 1996) with
-- ST_ClusterDBSCAN over the incidents of the last `days` days: a core incident has at least min_points incidents
-- (itself included) within eps_m metres; clusters are the core incidents joined by chains of such neighbours, plus
-- the border incidents within eps_m of a core; the rest is noise. ST_ClusterDBSCAN is planar, so metres need a
-- projection, and no projection keeps every distance. Two passes make it exact up to a stated margin:
--   1. Components. Incidents go into cells of eps/R radians of latitude by dlon_max of longitude, where
--      hav(dlon_max) = hav(eps/R) / cos^2(highest |latitude| of the window): a pair within eps_m on the sphere has
--      |dlat| <= eps/R and |dlon| <= dlon_max, so it lies in the same or neighbouring cells. The occupied cells
--      are linked to their queen neighbours (ST_ClusterDBSCAN(minpoints 1) on the cells: a few per hotspot, not
--      its hundreds of incidents), and a component is the incidents of linked cells. A DBSCAN cluster never spans
--      two components. Components of fewer than min_points incidents are noise and go no further.
--   2. Each component is projected by the spherical stereographic projection centred on its own centre (the mean
--      of its unit vectors), divided by s = (1 + k_max) / 2, where k_max is the largest point scale in the
--      component (k = 1 / (1 - hav(c)), c the angle from the centre), and ST_ClusterDBSCAN(eps_m, min_points) runs
--      per component (PARTITION BY), its rows in incident-key order (the order fixes which cluster a border
--      incident reachable from two clusters joins, so a run is deterministic).
--   The stereographic projection is conformal and its scale grows from 1 at the centre to k_max at the
--   component's edge; a great-circle segment between two members lies in the component's cap, so the planar
--   distance is between 1 and k_max times the true one, and after the division between 2 / (1 + k_max) and
--   2 k_max / (1 + k_max) times it. The neighbour relation therefore equals the haversine one for every pair whose
--   distance differs from eps_m by more than the relative margin (k_max - 1) / (k_max + 1) = h / (2 - h), h the
--   haversine of the component's angular radius: ~ c^2 / 8, 1.2e-6 for a component 20 km in radius (0.25 mm at
--   200 m), 6e-9 at 2 km. The run returns the largest margin of its components (not stored with the clusters: it
--   moves with every incident that enters or leaves a component, and would rewrite them all). tests/test_analysis.py compares with scikit-learn on a fixture holding no pair within 1e-6
--   of eps. A known limit: a cluster straddling the antimeridian (longitude +-180) is split in two by pass 1.
--   What is written, for each cluster (made_by 'analysis', cluster_type 'geographic', miner_uid NULL):
--     cluster_id       md5 of the lowest member incident key and the parameters (days, eps_m, min_points), as a
--                      uuid: the same data and parameters give the same ids, so a re-run updates in place
--     latitude, longitude  the mean of the members' unit vectors, 6 decimals
--     radius_m         the farthest member from the centre, rounded up to 0.1 m, at least 1 m (the table wants
--                      a positive radius; a cluster at one address has 0), at most 1,000 km
--     event_count      incidents in the cluster (every analysis counts incidents); metadata.events the events
--     dominant_crime_type  the most frequent type among its incidents (ties: alphabetical); metadata.crime_types
--                      every type's incident count
--     avg_severity     mean severity of its incidents, 2 decimals; time_start, time_end the first and last incident
--     confidence_score 1 - 2^(-n / min_points), 4 decimals: 0.5 for a cluster at the density threshold, 0.75 at
--                      twice it, 0.875 at three times (how far above the threshold the cluster lies; the exponent
--                      is capped at 64, where the value is 1 to 4 decimals, as 2^-n underflows a double)
--     metadata         {"algorithm": "dbscan", "eps_m", "min_points", "window_days", "events", "crime_types"};
--                      pattern_description a sentence of the same facts
--   Replacing. The run's clusters are upserted (a row changes only when a value differs); the analysis clusters
--   of the window (made_by 'analysis', time_end at or after the window's start) the run did not produce are
--   deleted. Every event of the window (any status, time at or after the start) whose incident is in a cluster
--   points at it; one whose incident is not (noise, or no longer verified) points at none; an event pointing at a
--   node-made cluster (made_by 'node') keeps it. Events are updated only where cluster_id changes, so a re-run on
--   the same data writes no event row (each event update costs audit rows). Runs take a transaction-level advisory
--   lock: two never interleave. Node-made clusters are never touched: miners may not write made_by 'analysis'
--   (the clusters_store and clusters_change policies below).
--
-- Near repeats (Townsley, Homel & Chaseling 2003; Ratcliffe's near-repeat calculator): after a crime, the risk of
-- the same crime is raised for a while within a few hundred metres. luminar_flag_near_repeats(days, distance_m,
-- hours, same_address_m) flags every incident of the window that follows an earlier incident of the window of the
-- same type within distance_m metres and hours hours (0 < time after <= hours), at another address: farther than
-- same_address_m (a repeat at the same address is a repeat victimisation, not a near repeat). The witness is the
-- most recent such earlier incident (then the lowest key). The window's incidents go into grid cells at least
-- distance_m wide (rows of distance_m / R radians of latitude; columns as wide in longitude at the window's highest
-- latitude), indexed by (type, cell, time): for each incident, index scans backwards in time, in its own cell and
-- then in the 8 around it, stop at the first candidate within distance_m (luminar_haversine_m) or at the own
-- cell's witness; the most recent is the witness. (A GiST box per incident enumerated every candidate pair: 125 s for the benchmark's
-- 139,000 incidents, whose hotspots hold hundreds of same-type incidents a week.) As for clusters, a pair across the
-- antimeridian is not seen.
-- Every event of the window sharing a flagged incident's key gets one near_repeats row (incident_event_id: the
-- incident's representative; earlier_event_id: the witness's representative). Re-runs replace the window's flags
-- (rows whose event's time is in the window): a row changes only when a value differs; rows no longer produced
-- are deleted.
--
-- Rights: both runs write, so they are the owner's (the analysis command runs as the owner): EXECUTE is revoked
-- from PUBLIC and granted to no node role. near_repeats is readable by the miners, validators and the analyst,
-- as crime_events is.

-- migrate:up
CREATE FUNCTION luminar_earth_radius_m() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 6371008.8::double precision $$;

-- Great-circle distance in metres between two points given in degrees (haversine; not STRICT, so it inlines).
CREATE FUNCTION luminar_haversine_m(p_lat1 double precision, p_lon1 double precision,
                                    p_lat2 double precision, p_lon2 double precision) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 2.0 * luminar_earth_radius_m()
           * asin(least(1.0, sqrt(sin(radians(p_lat2 - p_lat1) / 2.0) ^ 2
                                  + cos(radians(p_lat1)) * cos(radians(p_lat2))
                                    * sin(radians(p_lon2 - p_lon1) / 2.0) ^ 2)))
$$;

ALTER TABLE crime_clusters
    ADD COLUMN made_by text NOT NULL DEFAULT 'node',
    ADD CONSTRAINT clusters_made_by_known CHECK (made_by IN ('node', 'analysis'));
CREATE INDEX idx_clusters_analysis_time ON crime_clusters (time_end) WHERE made_by = 'analysis';

-- A miner stores and changes node-made clusters only: analysis clusters are the analysis run's.
ALTER POLICY clusters_store ON crime_clusters
    WITH CHECK (made_by = 'node'
                AND ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[])));
ALTER POLICY clusters_change ON crime_clusters
    USING (made_by = 'node'
           AND ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[])))
    WITH CHECK (made_by = 'node'
                AND ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[])));

CREATE FUNCTION luminar_analyze_clusters(p_days integer, p_eps_m double precision, p_min_points integer)
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

CREATE TABLE near_repeats (
    event_id           uuid             PRIMARY KEY REFERENCES crime_events (event_id) ON DELETE CASCADE,
    incident_event_id  uuid             NOT NULL REFERENCES crime_events (event_id) ON DELETE CASCADE,
    earlier_event_id   uuid             NOT NULL REFERENCES crime_events (event_id) ON DELETE CASCADE,
    distance_m         double precision NOT NULL,
    hours_after        double precision NOT NULL,
    occurred_at        timestamptz      NOT NULL,
    parameters         jsonb            NOT NULL,
    computed_at        timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT near_repeats_distance_nonnegative CHECK (distance_m >= 0),
    CONSTRAINT near_repeats_after CHECK (hours_after > 0),
    CONSTRAINT near_repeats_parameters_object CHECK (jsonb_typeof(parameters) = 'object')
);
CREATE INDEX idx_near_repeats_incident ON near_repeats (incident_event_id);
-- The newest flagged incidents first (get_near_repeats): occurred_at is the flagged event's time.
CREATE INDEX idx_near_repeats_recent ON near_repeats (occurred_at DESC, event_id) WHERE event_id = incident_event_id;
CREATE INDEX idx_near_repeats_earlier ON near_repeats (earlier_event_id);
GRANT SELECT ON near_repeats TO luminar_miner, luminar_validator, luminar_analyst;

CREATE FUNCTION luminar_flag_near_repeats(p_days integer, p_distance_m double precision, p_hours double precision,
                                          p_same_address_m double precision)
RETURNS TABLE (
    incidents          integer,
    flagged_incidents  integer,
    flags_written      integer,
    flags_removed      integer
)
LANGUAGE plpgsql VOLATILE SET jit = off AS $$
#variable_conflict use_column
DECLARE
    v_since     timestamptz;
    v_dlat      double precision;
    v_dlon      double precision;
    v_lat_max   double precision;
    v_params    jsonb;
    v_incidents integer;
    v_flagged   integer;
    v_written   integer;
    v_removed   integer;
    v_t         timestamptz := clock_timestamp();  -- step times: SET client_min_messages = debug shows them
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'luminar_flag_near_repeats: days must be a whole number >= 1' USING ERRCODE = '22023';
    END IF;
    IF p_distance_m IS NULL OR NOT p_distance_m > 0 OR p_distance_m > 1000000 THEN
        RAISE EXCEPTION 'luminar_flag_near_repeats: distance_m must be a number of metres > 0 and <= 1000000'
            USING ERRCODE = '22023';
    END IF;
    IF p_hours IS NULL OR NOT p_hours > 0 OR p_hours = 'Infinity' THEN
        RAISE EXCEPTION 'luminar_flag_near_repeats: hours must be a number > 0' USING ERRCODE = '22023';
    END IF;
    IF p_same_address_m IS NULL OR NOT p_same_address_m >= 0 OR NOT p_same_address_m < p_distance_m THEN
        RAISE EXCEPTION 'luminar_flag_near_repeats: same_address_m must be >= 0 and less than distance_m'
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('luminar_flag_near_repeats'));
    v_since := now() - make_interval(days => p_days);
    v_params := jsonb_build_object('window_days', p_days, 'distance_m', p_distance_m, 'hours', p_hours,
                                   'same_address_m', p_same_address_m);
    -- Grid cells of at least distance_m on the ground: rows of v_dlat degrees (with a relative slack of 1e-9), columns
    -- of v_dlon degrees, wide enough at the window's highest latitude (hav(dlon) <= hav(d / R) / cos^2(latitude)),
    -- so that a pair within distance_m lies in the same or neighbouring cells.
    v_dlat := degrees(p_distance_m / luminar_earth_radius_m()) * (1.0 + 1e-9);

    DROP TABLE IF EXISTS pg_temp.luminar_near_points;
    CREATE TEMP TABLE luminar_near_points ON COMMIT DROP AS
        SELECT i.incident_key, i.event_id, i.latitude, i.longitude, i."timestamp",
               dense_rank() OVER (ORDER BY i.event_type)::integer AS type_no
          FROM luminar_incidents(v_since) AS i;
    SELECT count(*), max(abs(p.latitude)) INTO v_incidents, v_lat_max FROM luminar_near_points AS p;
    v_dlon := CASE WHEN coalesce(v_lat_max, 0) + v_dlat >= 89.0 THEN 360.0
                   ELSE degrees(2.0 * asin(least(1.0, sin(p_distance_m / luminar_earth_radius_m() / 2.0)
                                                      / cos(radians(coalesce(v_lat_max, 0) + v_dlat))))) * (1.0 + 1e-9)
              END;
    ALTER TABLE luminar_near_points ADD COLUMN cy integer, ADD COLUMN cx integer;
    UPDATE luminar_near_points AS p SET cy = floor(p.latitude / v_dlat)::integer,
                                        cx = floor(p.longitude / v_dlon)::integer;
    CREATE INDEX ON luminar_near_points (type_no, cy, cx, "timestamp" DESC, incident_key);
    ANALYZE luminar_near_points;
    RAISE DEBUG 'luminar_flag_near_repeats: % incidents read and indexed at %', v_incidents, clock_timestamp() - v_t;

    -- For each incident, its own cell first: an index scan backwards in time that stops at the first qualifying
    -- candidate (in a dense place the first or second row). Then the 8 cells around it, each scan stopping at the
    -- first candidate or at the own cell's witness (an older one cannot win): a cell whose rows are mostly out of
    -- reach is not read through the whole time window. The witness is the most recent (then the lowest key).
    -- Enumerating every candidate pair instead (a GiST box per incident) cost 125 s for 139,000 incidents of the
    -- benchmark's world, whose hotspots hold hundreds of same-type incidents a week.
    DROP TABLE IF EXISTS pg_temp.luminar_near_flags;
    CREATE TEMP TABLE luminar_near_flags ON COMMIT DROP AS
    WITH candidates AS (
        SELECT b.incident_key, b.event_id, b."timestamp", w.*
          FROM luminar_near_points AS b
          LEFT JOIN LATERAL (
            SELECT a.event_id AS earlier_event_id, a."timestamp" AS earlier_at, a.incident_key AS earlier_key,
                   d.distance_m
              FROM luminar_near_points AS a
             CROSS JOIN LATERAL (SELECT luminar_haversine_m(a.latitude, a.longitude, b.latitude, b.longitude)
                                        AS distance_m) AS d
             WHERE a.type_no = b.type_no AND a.cy = b.cy AND a.cx = b.cx
               AND a."timestamp" < b."timestamp"
               AND a."timestamp" >= b."timestamp" - make_interval(secs => p_hours * 3600.0)
               AND a.incident_key <> b.incident_key
               AND d.distance_m <= p_distance_m AND d.distance_m > p_same_address_m
             ORDER BY a."timestamp" DESC, a.incident_key
             LIMIT 1) AS own ON true
          LEFT JOIN LATERAL (
            SELECT c.* FROM (VALUES (-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
                            AS o (dy, dx)
             CROSS JOIN LATERAL (
                SELECT a.event_id AS earlier_event_id, a."timestamp" AS earlier_at, a.incident_key AS earlier_key,
                       d.distance_m
                  FROM luminar_near_points AS a
                 CROSS JOIN LATERAL (SELECT luminar_haversine_m(a.latitude, a.longitude, b.latitude, b.longitude)
                                            AS distance_m) AS d
                 WHERE a.type_no = b.type_no AND a.cy = b.cy + o.dy AND a.cx = b.cx + o.dx
                   AND a."timestamp" < b."timestamp"
                   AND a."timestamp" >= greatest(own.earlier_at,
                                                 b."timestamp" - make_interval(secs => p_hours * 3600.0))
                   AND a.incident_key <> b.incident_key
                   AND d.distance_m <= p_distance_m AND d.distance_m > p_same_address_m
                 ORDER BY a."timestamp" DESC, a.incident_key
                 LIMIT 1) AS c
             ORDER BY c.earlier_at DESC, c.earlier_key
             LIMIT 1) AS around ON true
         CROSS JOIN LATERAL (SELECT own.earlier_event_id, own.earlier_at, own.earlier_key, own.distance_m
                              WHERE own.earlier_event_id IS NOT NULL
                             UNION ALL
                             SELECT around.earlier_event_id, around.earlier_at, around.earlier_key, around.distance_m
                              WHERE around.earlier_event_id IS NOT NULL
                             ORDER BY 2 DESC, 3
                             LIMIT 1) AS w
    )
    SELECT c.incident_key, c.event_id, c.earlier_event_id, c.distance_m,
           extract(epoch FROM c."timestamp" - c.earlier_at)::double precision / 3600.0 AS hours_after
      FROM candidates AS c;
    SELECT count(*) INTO v_flagged FROM luminar_near_flags;
    RAISE DEBUG 'luminar_flag_near_repeats: % incidents flagged at %', v_flagged, clock_timestamp() - v_t;
    CREATE INDEX ON luminar_near_flags (incident_key);
    ANALYZE luminar_near_flags;

    -- One row for every event of the window sharing a flagged incident's key.
    DROP TABLE IF EXISTS pg_temp.luminar_near_rows;
    CREATE TEMP TABLE luminar_near_rows ON COMMIT DROP AS
        SELECT e.event_id, f.event_id AS incident_event_id, f.earlier_event_id, f.distance_m,
               round(f.hours_after::numeric, 6)::double precision AS hours_after
          FROM crime_events AS e
          JOIN luminar_near_flags AS f ON f.incident_key = luminar_incident_key(e.related_reports, e.event_id)
         WHERE e."timestamp" >= v_since;
    RAISE DEBUG 'luminar_flag_near_repeats: the flagged incidents'' events found at %', clock_timestamp() - v_t;

    DELETE FROM near_repeats AS n
     USING crime_events AS e
     WHERE e.event_id = n.event_id AND e."timestamp" >= v_since
       AND NOT EXISTS (SELECT 1 FROM luminar_near_rows AS r WHERE r.event_id = n.event_id);
    GET DIAGNOSTICS v_removed = ROW_COUNT;
    INSERT INTO near_repeats AS n (event_id, incident_event_id, earlier_event_id, distance_m, hours_after,
                                   occurred_at, parameters)
    SELECT r.event_id, r.incident_event_id, r.earlier_event_id, r.distance_m, r.hours_after, e."timestamp", v_params
      FROM luminar_near_rows AS r
      JOIN crime_events AS e ON e.event_id = r.event_id
    ON CONFLICT (event_id) DO UPDATE
       SET incident_event_id = EXCLUDED.incident_event_id, earlier_event_id = EXCLUDED.earlier_event_id,
           distance_m = EXCLUDED.distance_m, hours_after = EXCLUDED.hours_after, occurred_at = EXCLUDED.occurred_at,
           parameters = EXCLUDED.parameters, computed_at = EXCLUDED.computed_at
     WHERE (n.incident_event_id, n.earlier_event_id, n.distance_m, n.hours_after, n.occurred_at, n.parameters)
           IS DISTINCT FROM
           (EXCLUDED.incident_event_id, EXCLUDED.earlier_event_id, EXCLUDED.distance_m, EXCLUDED.hours_after,
            EXCLUDED.occurred_at, EXCLUDED.parameters);
    GET DIAGNOSTICS v_written = ROW_COUNT;

    DROP TABLE pg_temp.luminar_near_rows;
    DROP TABLE pg_temp.luminar_near_flags;
    DROP TABLE pg_temp.luminar_near_points;
    RETURN QUERY SELECT v_incidents, v_flagged, v_written, v_removed;
END
$$;

REVOKE EXECUTE ON FUNCTION luminar_analyze_clusters(integer, double precision, integer),
    luminar_flag_near_repeats(integer, double precision, double precision, double precision) FROM PUBLIC;

-- migrate:down
DROP FUNCTION IF EXISTS luminar_flag_near_repeats(integer, double precision, double precision, double precision);
DROP TABLE IF EXISTS near_repeats;
DROP FUNCTION IF EXISTS luminar_analyze_clusters(integer, double precision, integer);
ALTER POLICY clusters_change ON crime_clusters
    USING ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]))
    WITH CHECK ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]));
ALTER POLICY clusters_store ON crime_clusters
    WITH CHECK ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]));
DROP INDEX IF EXISTS idx_clusters_analysis_time;
ALTER TABLE crime_clusters DROP CONSTRAINT clusters_made_by_known, DROP COLUMN made_by;
DROP FUNCTION IF EXISTS luminar_haversine_m(double precision, double precision, double precision, double precision);
DROP FUNCTION IF EXISTS luminar_earth_radius_m();
