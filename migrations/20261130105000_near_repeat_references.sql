-- Migration: near_repeat_references
-- Created:   2026-11-30 10:50:00 (UTC)
--
-- near_repeats checks the events it cites besides its own once per event, not once per row.
--
-- Why. A near_repeats row cites three events, each through a foreign key (event_id, the flagged event itself;
-- incident_event_id, its incident's representative; earlier_event_id, the witness), and a foreign key checks every
-- inserted row by a query that finds and locks the cited event: the first analysis run over 1M events writes
-- 193,000 rows, and the 579,000 checks were 9.4 s of its 16.6 s of writing (measured with the checks off).
--
-- What. event_id keeps its foreign key (ON DELETE CASCADE: a row goes with its event, and TRUNCATE ... CASCADE
-- follows it). The two others are kept by the schema instead, with the same guarantees:
-- - writing: luminar_flag_near_repeats, the table's one writer, locks the cited events in one statement (FOR KEY
--   SHARE, the lock a foreign key check takes: a concurrent delete of one of them waits for the run to commit) and
--   writes only the rows whose cited events it locked (an event deleted since the run read it is not cited);
-- - deleting: a statement trigger on crime_events (crime_events_near_repeats_delete) deletes the rows citing a
--   deleted event as incident_event_id or earlier_event_id, as ON DELETE CASCADE did, through their indexes.
-- tests/test_analysis.py deletes a witness and a representative and finds their rows gone.

-- migrate:up
ALTER TABLE near_repeats DROP CONSTRAINT near_repeats_incident_event_id_fkey,
                         DROP CONSTRAINT near_repeats_earlier_event_id_fkey;

-- The rows citing deleted events go with them (ON DELETE CASCADE of the two references, kept by the schema).
CREATE FUNCTION luminar_near_repeats_on_event_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    DELETE FROM near_repeats AS n WHERE n.incident_event_id IN (SELECT o.event_id FROM old_rows AS o);
    DELETE FROM near_repeats AS n WHERE n.earlier_event_id IN (SELECT o.event_id FROM old_rows AS o);
    RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION luminar_near_repeats_on_event_delete() FROM PUBLIC;
CREATE TRIGGER crime_events_near_repeats_delete AFTER DELETE ON crime_events
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION luminar_near_repeats_on_event_delete();

CREATE OR REPLACE FUNCTION luminar_flag_near_repeats(p_days integer, p_distance_m double precision,
                                                     p_hours double precision, p_same_address_m double precision)
RETURNS TABLE (
    incidents          integer,
    flagged_incidents  integer,
    flags_written      integer,
    flags_removed      integer
)
LANGUAGE plpgsql VOLATILE SET jit = off SET work_mem = '64MB' AS $$
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
    -- The events the rows cite besides their own (the incident's representative and the witness), locked against
    -- deletion until this transaction ends, as a foreign key's check locks them, once each rather than once a row;
    -- a row citing an event deleted since it was read is not written (see the migration 20261130105000).
    WITH cited AS (
        SELECT e.event_id
          FROM crime_events AS e
         WHERE e.event_id IN (SELECT r.incident_event_id FROM luminar_near_rows AS r
                              UNION
                              SELECT r.earlier_event_id FROM luminar_near_rows AS r)
           FOR KEY SHARE OF e
    )
    INSERT INTO near_repeats AS n (event_id, incident_event_id, earlier_event_id, distance_m, hours_after,
                                   occurred_at, parameters)
    SELECT r.event_id, r.incident_event_id, r.earlier_event_id, r.distance_m, r.hours_after, e."timestamp", v_params
      FROM luminar_near_rows AS r
      JOIN crime_events AS e ON e.event_id = r.event_id
     WHERE r.incident_event_id IN (SELECT c.event_id FROM cited AS c)
       AND r.earlier_event_id IN (SELECT c.event_id FROM cited AS c)
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

-- migrate:down
DROP TRIGGER crime_events_near_repeats_delete ON crime_events;
DROP FUNCTION luminar_near_repeats_on_event_delete();
DELETE FROM near_repeats AS n
 WHERE NOT EXISTS (SELECT 1 FROM crime_events AS e WHERE e.event_id = n.incident_event_id)
    OR NOT EXISTS (SELECT 1 FROM crime_events AS e WHERE e.event_id = n.earlier_event_id);
ALTER TABLE near_repeats
    ADD CONSTRAINT near_repeats_incident_event_id_fkey FOREIGN KEY (incident_event_id)
        REFERENCES crime_events (event_id) ON DELETE CASCADE,
    ADD CONSTRAINT near_repeats_earlier_event_id_fkey FOREIGN KEY (earlier_event_id)
        REFERENCES crime_events (event_id) ON DELETE CASCADE;
CREATE OR REPLACE FUNCTION luminar_flag_near_repeats(p_days integer, p_distance_m double precision,
                                                     p_hours double precision, p_same_address_m double precision)
RETURNS TABLE (
    incidents          integer,
    flagged_incidents  integer,
    flags_written      integer,
    flags_removed      integer
)
LANGUAGE plpgsql VOLATILE SET jit = off SET work_mem = '64MB' AS $$
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
