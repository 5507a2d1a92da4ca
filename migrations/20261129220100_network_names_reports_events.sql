-- Migration: network_names_reports_events
-- Created:   2026-11-29 22:01:00 (UTC)
--
-- The network's column names for raw_incident_reports and crime_events: the nodes' operators know the reference
-- schema's names, and its read queries now run unchanged here. No row is lost: columns are renamed in place, new
-- columns get defaults (no table rewrite: constant defaults), and every CHECK is kept under a name that follows its
-- column (luminar_store.repositories._errors turns constraint names into error messages).
--
-- raw_incident_reports
-- - description -> text_description, reporter_id -> user_id (constraints raw_reports_text_description_length,
--   raw_reports_user_id_length).
-- - source text NOT NULL DEFAULT 'mobile_app' (1..100 characters): the data source identifier.
--
-- crime_events
-- - severity -> severity_level (1..5, events_severity_level_range), verified_by -> validator_uid
--   (events_validator_uid_nonnegative). Indexes follow a rename by themselves.
-- - latitude/longitude may be NULL, both or neither (events_location_pair): an *unlocated* event, a miner's
--   text-flow event without coordinates. Its generated geotag, cell_row and cell_col are NULL (the expressions are
--   strict), so the grid and GiST indexes never hold it; idx_events_unlocated lists them by created_at (the
--   geocoding queue).
-- - location_text, time_info (free text, 1..1000), entities (jsonb array, default []), time_end (end of the event's
--   time range, not before "timestamp"), timestamp_source (event | source_reports | stored: given by the miner, the
--   earliest source report, the moment it was stored; default event), location_source (event | source_reports |
--   geocoded, NULL exactly when the event is unlocated; existing rows get 'event', an unlocated insert passes NULL),
--   request_id (the text flow's request id, 1..200).
-- - crime_hotspots_since(days, cell_degrees) is re-created: its body is stored as text and named severity; it now
--   leaves unlocated events out too. The crime_hotspots view reads it and keeps its columns.
-- - recent_crime_events is dropped and re-created: a view keeps its old output names after a rename. It exposes
--   severity_level, validator_uid and the new columns.
--
-- Down: undoes all of it; the new columns' values are dropped with them. It refuses (nothing changed) while
-- unlocated events exist, since latitude/longitude become NOT NULL again: locate or delete them first.

-- migrate:up
ALTER TABLE raw_incident_reports RENAME COLUMN description TO text_description;
ALTER TABLE raw_incident_reports RENAME COLUMN reporter_id TO user_id;
ALTER TABLE raw_incident_reports RENAME CONSTRAINT raw_reports_description_length
    TO raw_reports_text_description_length;
ALTER TABLE raw_incident_reports RENAME CONSTRAINT raw_reports_reporter_id_length TO raw_reports_user_id_length;
ALTER TABLE raw_incident_reports
    ADD COLUMN source text NOT NULL DEFAULT 'mobile_app',
    ADD CONSTRAINT raw_reports_source_length CHECK (char_length(source) BETWEEN 1 AND 100);

DROP VIEW recent_crime_events;

ALTER TABLE crime_events RENAME COLUMN severity TO severity_level;
ALTER TABLE crime_events RENAME COLUMN verified_by TO validator_uid;
ALTER TABLE crime_events RENAME CONSTRAINT events_severity_range TO events_severity_level_range;
ALTER TABLE crime_events RENAME CONSTRAINT events_verified_by_uid TO events_validator_uid_nonnegative;
ALTER TABLE crime_events
    ALTER COLUMN latitude DROP NOT NULL,
    ALTER COLUMN longitude DROP NOT NULL,
    ADD CONSTRAINT events_location_pair CHECK ((latitude IS NULL) = (longitude IS NULL)),
    ADD COLUMN location_text text,
    ADD COLUMN time_info text,
    ADD COLUMN entities jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN time_end timestamptz,
    ADD COLUMN timestamp_source text NOT NULL DEFAULT 'event',
    ADD COLUMN location_source text DEFAULT 'event',
    ADD COLUMN request_id text,
    ADD CONSTRAINT events_location_text_length
        CHECK (location_text IS NULL OR char_length(location_text) BETWEEN 1 AND 1000),
    ADD CONSTRAINT events_time_info_length CHECK (time_info IS NULL OR char_length(time_info) BETWEEN 1 AND 1000),
    ADD CONSTRAINT events_entities_array CHECK (jsonb_typeof(entities) = 'array'),
    ADD CONSTRAINT events_time_end_order CHECK (time_end IS NULL OR time_end >= "timestamp"),
    ADD CONSTRAINT events_timestamp_source_known CHECK (timestamp_source IN ('event', 'source_reports', 'stored')),
    ADD CONSTRAINT events_location_source_known
        CHECK (location_source IN ('event', 'source_reports', 'geocoded')),
    ADD CONSTRAINT events_location_source_located CHECK ((latitude IS NULL) = (location_source IS NULL)),
    ADD CONSTRAINT events_request_id_length CHECK (request_id IS NULL OR char_length(request_id) BETWEEN 1 AND 200);

-- The geocoding queue: unlocated events, oldest first.
CREATE INDEX idx_events_unlocated ON crime_events (created_at) WHERE latitude IS NULL;

-- Same signature and result columns: the crime_hotspots view keeps reading it.
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

CREATE VIEW recent_crime_events AS
    SELECT event_id, miner_uid, event_type, title, summary, latitude, longitude, geotag, "timestamp", severity_level,
           confidence_score, related_reports, cluster_id, verification_status, validator_uid, verification_score,
           metadata, created_at, location_text, time_info, entities, time_end, timestamp_source, location_source,
           request_id
      FROM crime_events
     WHERE "timestamp" >= now() - interval '24 hours';

-- migrate:down
DO $$
DECLARE
    unlocated bigint := (SELECT count(*) FROM crime_events WHERE latitude IS NULL);
BEGIN
    IF unlocated > 0 THEN
        RAISE EXCEPTION 'cannot roll back: % crime event(s) have no location (latitude/longitude NULL), which the '
                        'older schema cannot hold; locate or delete them first', unlocated;
    END IF;
END;
$$;

DROP VIEW recent_crime_events;

DROP INDEX IF EXISTS idx_events_unlocated;
ALTER TABLE crime_events
    DROP CONSTRAINT IF EXISTS events_request_id_length,
    DROP CONSTRAINT IF EXISTS events_location_source_located,
    DROP CONSTRAINT IF EXISTS events_location_source_known,
    DROP CONSTRAINT IF EXISTS events_timestamp_source_known,
    DROP CONSTRAINT IF EXISTS events_time_end_order,
    DROP CONSTRAINT IF EXISTS events_entities_array,
    DROP CONSTRAINT IF EXISTS events_time_info_length,
    DROP CONSTRAINT IF EXISTS events_location_text_length,
    DROP CONSTRAINT IF EXISTS events_location_pair,
    DROP COLUMN IF EXISTS request_id,
    DROP COLUMN IF EXISTS location_source,
    DROP COLUMN IF EXISTS timestamp_source,
    DROP COLUMN IF EXISTS time_end,
    DROP COLUMN IF EXISTS entities,
    DROP COLUMN IF EXISTS time_info,
    DROP COLUMN IF EXISTS location_text,
    ALTER COLUMN latitude SET NOT NULL,
    ALTER COLUMN longitude SET NOT NULL;
ALTER TABLE crime_events RENAME CONSTRAINT events_validator_uid_nonnegative TO events_verified_by_uid;
ALTER TABLE crime_events RENAME CONSTRAINT events_severity_level_range TO events_severity_range;
ALTER TABLE crime_events RENAME COLUMN validator_uid TO verified_by;
ALTER TABLE crime_events RENAME COLUMN severity_level TO severity;

-- After the renames: a LANGUAGE sql body is checked when created.
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
           round(avg(e.severity), 2),
           max(e.severity),
           array_agg(DISTINCT e.event_type ORDER BY e.event_type),
           min(e."timestamp"),
           max(e."timestamp")
      FROM crime_events e
     WHERE e.verification_status = 'verified'
       AND e."timestamp" >= now() - make_interval(days => p_days)
     GROUP BY floor(e.latitude / p_cell_degrees), floor(e.longitude / p_cell_degrees)
$$;

CREATE VIEW recent_crime_events AS
    SELECT event_id, miner_uid, event_type, title, summary, latitude, longitude, geotag, "timestamp", severity,
           confidence_score, related_reports, cluster_id, verification_status, verified_by, verification_score,
           metadata, created_at
      FROM crime_events
     WHERE "timestamp" >= now() - interval '24 hours';

ALTER TABLE raw_incident_reports
    DROP CONSTRAINT IF EXISTS raw_reports_source_length,
    DROP COLUMN IF EXISTS source;
ALTER TABLE raw_incident_reports RENAME CONSTRAINT raw_reports_user_id_length TO raw_reports_reporter_id_length;
ALTER TABLE raw_incident_reports RENAME CONSTRAINT raw_reports_text_description_length
    TO raw_reports_description_length;
ALTER TABLE raw_incident_reports RENAME COLUMN user_id TO reporter_id;
ALTER TABLE raw_incident_reports RENAME COLUMN text_description TO description;
