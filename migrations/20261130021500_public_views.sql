-- Migration: public_views
-- Created:   2026-11-30 02:15:00 (UTC)
--
-- What the public (luminar_reader: dashboards, the public) may see of the crime data: victims' privacy first.
--   public_crime_events  one row per verified, located crime event: its type, severity level, the hour it happened
--                        (UTC) and the centre of its public grid cell; no id, title, summary, description, location
--                        text, time text, entities, metadata, related reports or node internals.
--   public_hotspots      the public grid cells with their event count, mean and highest severity, event types and
--                        first and last hour seen.
-- Both show only cells holding at least luminar_public_min_count() verified events (k = 5): an event alone (or
-- nearly) in its cell is suppressed, and so is its cell. k counts events, not reports: five reports of one incident
-- still point at one victim. Only verified events are public: an unverified event may be false, and publishing it
-- would accuse a place of something that did not happen.
-- The public grid: cells of luminar_public_grid_metres() (100 m) north-south and, at the cell's latitude, about as
-- many metres east-west (the longitude step widens with 1/cos(latitude)), so a cell is ~100 m x 100 m anywhere;
-- luminar_public_cell(latitude, longitude) gives the centre of the cell holding a point. The two figures are
-- defined here once.
-- The views read the tables with their owner's rights (their own table references do; they call no function that
-- reads a table), so the reader needs no right on any table, and row-level security (which the owner bypasses)
-- hides nothing from them. public_event_cells, their common part, is granted to no one. The public views are
-- security barriers: a reader's own conditions (a function of theirs in WHERE) run only on the rows they show, never
-- on a suppressed one.
-- crime_hotspots is no longer the reader's nor the monitor's: it suppresses nothing (a cell of one event is a
-- hotspot there) and its SECURITY INVOKER function reads crime_events with the caller's rights. The reader and the
-- monitor read public_hotspots instead.

-- migrate:up
-- k: the fewest verified events a public cell must hold to be shown.
CREATE FUNCTION luminar_public_min_count() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 5 $$;

-- The public grid's cell size, in metres.
CREATE FUNCTION luminar_public_grid_metres() RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 100.0::double precision $$;

-- The centre of the public grid cell holding a point. A degree of latitude is 111,320 m; a degree of longitude is
-- that times cos(latitude), taken at the cell row's centre (and at least 0.01, near the poles).
CREATE FUNCTION luminar_public_cell(p_latitude double precision, p_longitude double precision,
                                    OUT latitude double precision, OUT longitude double precision)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT least(greatest(row_centre, -90), 90),
           least(greatest((floor(p_longitude / lng_step) + 0.5) * lng_step, -180), 180)
      FROM (SELECT (floor(p_latitude / lat_step) + 0.5) * lat_step AS row_centre, lat_step
              FROM (SELECT luminar_public_grid_metres() / 111320.0 AS lat_step) AS step) AS cell_row,
           LATERAL (SELECT lat_step / greatest(cos(radians(row_centre)), 0.01) AS lng_step) AS width
$$;

-- Each verified, located event with its public cell and the number of such events in that cell.
CREATE VIEW public_event_cells AS
    SELECT cell.latitude AS cell_latitude, cell.longitude AS cell_longitude,
           count(*) OVER (PARTITION BY cell.latitude, cell.longitude) AS cell_events,
           e.event_type, e.severity_level,
           date_trunc('hour', e."timestamp", 'UTC') AS occurred_hour
      FROM crime_events e
     CROSS JOIN LATERAL luminar_public_cell(e.latitude, e.longitude) AS cell
     WHERE e.verification_status = 'verified'
       AND e.latitude IS NOT NULL;
REVOKE ALL ON public_event_cells FROM PUBLIC;

CREATE VIEW public_crime_events WITH (security_barrier) AS
    SELECT cell_latitude AS latitude, cell_longitude AS longitude,
           ST_SetSRID(ST_MakePoint(cell_longitude, cell_latitude), 4326)::geometry(Point, 4326) AS geotag,
           occurred_hour, event_type, severity_level
      FROM public_event_cells
     WHERE cell_events >= luminar_public_min_count();

CREATE VIEW public_hotspots WITH (security_barrier) AS
    SELECT cell_latitude AS latitude, cell_longitude AS longitude,
           ST_SetSRID(ST_MakePoint(cell_longitude, cell_latitude), 4326)::geometry(Point, 4326) AS geotag,
           count(*) AS incident_count,
           round(avg(severity_level), 2) AS avg_severity,
           max(severity_level) AS max_severity,
           array_agg(DISTINCT event_type ORDER BY event_type) AS crime_types,
           min(occurred_hour) AS first_seen,
           max(occurred_hour) AS last_seen
      FROM public_event_cells
     WHERE cell_events >= luminar_public_min_count()
     GROUP BY cell_latitude, cell_longitude;

GRANT SELECT ON public_crime_events, public_hotspots TO luminar_reader, luminar_monitor, luminar_analyst;
REVOKE SELECT ON crime_hotspots FROM luminar_reader, luminar_monitor;

-- migrate:down
GRANT SELECT ON crime_hotspots TO luminar_reader, luminar_monitor;
DROP VIEW IF EXISTS public_hotspots;
DROP VIEW IF EXISTS public_crime_events;
DROP VIEW IF EXISTS public_event_cells;
DROP FUNCTION IF EXISTS luminar_public_cell(double precision, double precision);
DROP FUNCTION IF EXISTS luminar_public_grid_metres();
DROP FUNCTION IF EXISTS luminar_public_min_count();
