-- Migration: radius_by_time_slices
-- Created:   2026-11-30 13:05:00 (UTC)
--
-- The radius search (get_events_within_radius: the newest events within so many metres of a point) reads about the
-- same number of rows however dense the data grows.
--
-- Why. The search reads the 0.01° grid cells covering the circle's box, each through idx_events_cell_time, newest
-- first, testing the exact distance, and keeps the newest `limit` of every cell before merging. A cell that the
-- circle only grazes has few rows inside: to find its `limit` it reads its whole window. Ten times the events, ten
-- times those rows: at 10M events the search took 2.4 times its time at 1M (29.8 against 12.3 ms,
-- benchmarks/results/results-20261130T105435Z.json), where the goal is 1.5 times.
--
-- How. luminar_events_near reads the window in time slices, newest first: the first slice is the newest 1/64 of
-- the window (the whole of it from its start to the future: an event stamped ahead is found as before), each
-- next slice as long as all the slices before it together, until `limit` events are found or the window is read.
-- Each slice is the former query bounded in time and limited to what is still missing. The denser the data, the
-- sooner the first slices hold `limit` events, so the rows read stay about constant; where events are sparse the
-- slices read what one query read, in a few more index descents. Every slice uses the statement's now(), so the
-- slices are contiguous and never overlap: the result is the former one (the newest `limit` within the radius and
-- the window, ties in time aside). It returns the events' rows; the query (EVENTS_WITHIN_RADIUS in
-- luminar_store/repositories/crime_events.py) orders them and computes their distance. Measured over the
-- benchmark's 90 query points (1 km, 7 days, limit 100), same results: at 100,000 events 4.7 ms either way
-- (p50); at 1,000,000 events 10.5 -> 7.3 ms with a first slice of 1/32, 8.2 -> 5.4 ms with 1/128, 9.2 -> 5.9 ms
-- with 1/64 (the one kept: sparse places pay a few more slices, dense ones read less; the machine was shared).

-- migrate:up
CREATE FUNCTION luminar_events_near(p_latitude double precision, p_longitude double precision,
                                    p_radius_m double precision, p_hours integer, p_limit integer,
                                    p_ymin double precision, p_ymax double precision,
                                    p_xmin double precision, p_xmax double precision,
                                    p_xmin2 double precision, p_xmax2 double precision)
RETURNS SETOF crime_events
LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 100 SET jit = off AS $$
DECLARE
    v_point  geography := ST_SetSRID(ST_MakePoint(p_longitude, p_latitude), 4326)::geography;
    v_since  timestamptz := now() - make_interval(hours => p_hours);
    v_span   interval := make_interval(hours => p_hours) / 64;
    v_low    timestamptz;
    v_high   timestamptz := 'infinity';
    v_found  integer := 0;
    v_rows   integer;
BEGIN
    LOOP
        v_low := greatest(now() - v_span, v_since);
        RETURN QUERY
        SELECT e.*
          FROM (SELECT r AS cell_row, c AS cell_col
                  FROM generate_series(floor(p_ymin / 0.01::float8)::integer,
                                       floor(p_ymax / 0.01::float8)::integer) AS r,
                       generate_series(floor(p_xmin / 0.01::float8)::integer,
                                       floor(p_xmax / 0.01::float8)::integer) AS c
                UNION ALL
                SELECT r, c
                  FROM generate_series(floor(p_ymin / 0.01::float8)::integer,
                                       floor(p_ymax / 0.01::float8)::integer) AS r,
                       generate_series(floor(p_xmin2 / 0.01::float8)::integer,
                                       floor(p_xmax2 / 0.01::float8)::integer) AS c) AS cell
         CROSS JOIN LATERAL (
               SELECT ce.*
                 FROM crime_events AS ce
                WHERE ce.cell_row = cell.cell_row AND ce.cell_col = cell.cell_col
                  AND ce."timestamp" >= v_low AND ce."timestamp" < v_high
                  AND ST_DWithin(ce.geotag::geography, v_point, p_radius_m)
                ORDER BY ce."timestamp" DESC
                LIMIT p_limit - v_found) AS e
         ORDER BY e."timestamp" DESC
         LIMIT p_limit - v_found;
        GET DIAGNOSTICS v_rows = ROW_COUNT;
        v_found := v_found + v_rows;
        EXIT WHEN v_found >= p_limit OR v_low <= v_since;
        v_high := v_low;
        v_span := v_span * 2;
    END LOOP;
END
$$;

-- migrate:down
DROP FUNCTION luminar_events_near(double precision, double precision, double precision, integer, integer,
                                  double precision, double precision, double precision, double precision,
                                  double precision, double precision);
