-- Initial schema of the Luminar network's database: the seven core tables of the specification plus audit_log,
-- the triggers that keep updated_at true and write the audit trail, and the three views of the specification.
--
-- Locations are stored as latitude/longitude columns (checked, NaN and out-of-range refused) from which a
-- PostGIS geometry(Point, 4326) column `geotag` is generated and GiST-indexed: writers send two numbers,
-- spatial queries use the index.

-- migrate:up
CREATE EXTENSION IF NOT EXISTS postgis;

-- ---------------------------------------------------------------------------------------------------------------
-- Shared trigger functions
-- ---------------------------------------------------------------------------------------------------------------
CREATE FUNCTION luminar_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- clock_timestamp(): several updates in one transaction still move updated_at forward.
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE TABLE audit_log (
    audit_id     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    table_name   text        NOT NULL,
    operation    text        NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE', 'REREGISTER')),
    row_id       text,
    actor        text        NOT NULL DEFAULT current_user,
    old_data     jsonb,
    new_data     jsonb,
    occurred_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_audit_log_table_time ON audit_log (table_name, occurred_at DESC);
CREATE INDEX idx_audit_log_occurred_at ON audit_log (occurred_at);

-- Writes one audit row per changed row. TG_ARGV[0] names the key column of the audited table.
CREATE FUNCTION luminar_audit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key_column text := TG_ARGV[0];
    old_row jsonb := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END;
    new_row jsonb := CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END;
BEGIN
    -- The generated geometry is derived from latitude/longitude: keeping it would only bloat the log.
    old_row := old_row - 'geotag' - 'centroid';
    new_row := new_row - 'geotag' - 'centroid';
    INSERT INTO audit_log (table_name, operation, row_id, old_data, new_data)
    VALUES (TG_TABLE_NAME, TG_OP, coalesce(new_row, old_row) ->> key_column, old_row, new_row);
    RETURN NULL;
END;
$$;

-- ---------------------------------------------------------------------------------------------------------------
-- raw_incident_reports: unprocessed reports from the citizens' apps
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE raw_incident_reports (
    report_id          uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    external_id        text             NOT NULL,
    reporter_id        text,
    crime_type         text,
    description        text             NOT NULL,
    latitude           double precision NOT NULL,
    longitude          double precision NOT NULL,
    geotag             geometry(Point, 4326)
                       GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)) STORED,
    "timestamp"        timestamptz      NOT NULL,
    media_urls         text[]           NOT NULL DEFAULT '{}',
    media_hashes       text[]           NOT NULL DEFAULT '{}',
    metadata           jsonb            NOT NULL DEFAULT '{}',
    status             text             NOT NULL DEFAULT 'pending',
    processing_attempts integer         NOT NULL DEFAULT 0,
    claimed_by         integer,
    claimed_at         timestamptz,
    processed_at       timestamptz,
    error_message      text,
    created_at         timestamptz      NOT NULL DEFAULT now(),
    updated_at         timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT raw_reports_external_id_key UNIQUE (external_id),
    CONSTRAINT raw_reports_external_id_length CHECK (char_length(external_id) BETWEEN 1 AND 200),
    CONSTRAINT raw_reports_reporter_id_length CHECK (reporter_id IS NULL OR char_length(reporter_id) BETWEEN 1 AND 200),
    CONSTRAINT raw_reports_crime_type_format CHECK (crime_type IS NULL OR crime_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT raw_reports_description_length CHECK (char_length(description) BETWEEN 1 AND 10000),
    CONSTRAINT raw_reports_latitude_range CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT raw_reports_longitude_range CHECK (longitude BETWEEN -180 AND 180),
    CONSTRAINT raw_reports_media_hashes_match CHECK (cardinality(media_hashes) = cardinality(media_urls)),
    CONSTRAINT raw_reports_metadata_object CHECK (jsonb_typeof(metadata) = 'object'),
    CONSTRAINT raw_reports_status_known
        CHECK (status IN ('pending', 'processing', 'processed', 'failed', 'rejected')),
    CONSTRAINT raw_reports_attempts_nonnegative CHECK (processing_attempts >= 0),
    CONSTRAINT raw_reports_claimed_by_uid CHECK (claimed_by IS NULL OR claimed_by >= 0)
);
CREATE INDEX idx_reports_geotag ON raw_incident_reports USING GIST (geotag);
CREATE INDEX idx_reports_timestamp ON raw_incident_reports ("timestamp");
CREATE INDEX idx_reports_metadata ON raw_incident_reports USING GIN (metadata);
CREATE INDEX idx_reports_created_at ON raw_incident_reports (created_at);
-- Claiming work: the oldest pending reports first, without scanning processed ones.
CREATE INDEX idx_reports_pending ON raw_incident_reports ("timestamp") WHERE status = 'pending';

CREATE TRIGGER raw_incident_reports_updated_at BEFORE UPDATE ON raw_incident_reports
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();

-- ---------------------------------------------------------------------------------------------------------------
-- crime_clusters: geographic and temporal crime patterns (referenced by crime_events)
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE crime_clusters (
    cluster_id           uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    miner_uid            integer,
    latitude             double precision NOT NULL,
    longitude            double precision NOT NULL,
    centroid             geometry(Point, 4326)
                         GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)) STORED,
    radius_m             double precision NOT NULL,
    event_count          integer          NOT NULL DEFAULT 0,
    dominant_crime_type  text,
    avg_severity         double precision,
    time_start           timestamptz      NOT NULL,
    time_end             timestamptz      NOT NULL,
    metadata             jsonb            NOT NULL DEFAULT '{}',
    created_at           timestamptz      NOT NULL DEFAULT now(),
    updated_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT clusters_miner_uid_nonnegative CHECK (miner_uid IS NULL OR miner_uid >= 0),
    CONSTRAINT clusters_latitude_range CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT clusters_longitude_range CHECK (longitude BETWEEN -180 AND 180),
    CONSTRAINT clusters_radius_positive CHECK (radius_m > 0 AND radius_m <= 1000000),
    CONSTRAINT clusters_event_count_nonnegative CHECK (event_count >= 0),
    CONSTRAINT clusters_crime_type_format
        CHECK (dominant_crime_type IS NULL OR dominant_crime_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT clusters_avg_severity_range CHECK (avg_severity IS NULL OR avg_severity BETWEEN 1 AND 5),
    CONSTRAINT clusters_time_order CHECK (time_end >= time_start),
    CONSTRAINT clusters_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX idx_clusters_centroid ON crime_clusters USING GIST (centroid);
CREATE INDEX idx_clusters_time ON crime_clusters (time_end DESC);

CREATE TRIGGER crime_clusters_updated_at BEFORE UPDATE ON crime_clusters
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();

-- ---------------------------------------------------------------------------------------------------------------
-- crime_events: clustered crime intelligence produced by miners
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE crime_events (
    event_id             uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    miner_uid            integer          NOT NULL,
    event_type           text             NOT NULL,
    title                text,
    summary              text,
    latitude             double precision NOT NULL,
    longitude            double precision NOT NULL,
    geotag               geometry(Point, 4326)
                         GENERATED ALWAYS AS (ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)) STORED,
    "timestamp"          timestamptz      NOT NULL,
    severity             smallint         NOT NULL,
    confidence_score     double precision NOT NULL,
    related_reports      uuid[]           NOT NULL DEFAULT '{}',
    cluster_id           uuid             REFERENCES crime_clusters (cluster_id) ON DELETE SET NULL,
    verification_status  text             NOT NULL DEFAULT 'pending',
    verified_by          integer,
    verification_score   double precision,
    verified_at          timestamptz,
    metadata             jsonb            NOT NULL DEFAULT '{}',
    created_at           timestamptz      NOT NULL DEFAULT now(),
    updated_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT events_miner_uid_nonnegative CHECK (miner_uid >= 0),
    CONSTRAINT events_event_type_format CHECK (event_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    CONSTRAINT events_title_length CHECK (title IS NULL OR char_length(title) BETWEEN 1 AND 500),
    CONSTRAINT events_summary_length CHECK (summary IS NULL OR char_length(summary) BETWEEN 1 AND 10000),
    CONSTRAINT events_latitude_range CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT events_longitude_range CHECK (longitude BETWEEN -180 AND 180),
    CONSTRAINT events_severity_range CHECK (severity BETWEEN 1 AND 5),
    CONSTRAINT events_confidence_range CHECK (confidence_score BETWEEN 0 AND 1),
    CONSTRAINT events_verification_status_known
        CHECK (verification_status IN ('pending', 'verified', 'disputed', 'rejected')),
    CONSTRAINT events_verified_by_uid CHECK (verified_by IS NULL OR verified_by >= 0),
    CONSTRAINT events_verification_score_range
        CHECK (verification_score IS NULL OR verification_score BETWEEN 0 AND 1),
    CONSTRAINT events_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
-- The specification's three indexes, by its own names.
CREATE INDEX idx_events_geotag ON crime_events USING GIST (geotag);
CREATE INDEX idx_events_timestamp ON crime_events ("timestamp");
CREATE INDEX idx_events_metadata ON crime_events USING GIN (metadata);
-- Ours: events of one miner, newest first; events that link a report; verified events for hotspots
-- (covering, so the hotspot aggregation reads the index alone).
CREATE INDEX idx_events_miner_time ON crime_events (miner_uid, "timestamp" DESC);
CREATE INDEX idx_events_related_reports ON crime_events USING GIN (related_reports);
CREATE INDEX idx_events_verified_time ON crime_events ("timestamp")
    INCLUDE (latitude, longitude, severity, event_type) WHERE verification_status = 'verified';
CREATE INDEX idx_events_cluster ON crime_events (cluster_id) WHERE cluster_id IS NOT NULL;

-- related_reports is an array, which a FOREIGN KEY cannot check: this trigger refuses unknown report ids with the
-- same SQLSTATE a foreign key uses (23503), only when the array is non-empty and changed.
CREATE FUNCTION luminar_check_related_reports() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    missing uuid;
BEGIN
    SELECT r INTO missing
      FROM unnest(NEW.related_reports) AS r
     WHERE NOT EXISTS (SELECT 1 FROM raw_incident_reports WHERE report_id = r)
     LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'related report % does not exist', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'events_related_reports_exist',
                  TABLE = 'crime_events', COLUMN = 'related_reports';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER crime_events_related_reports_exist
    BEFORE INSERT OR UPDATE OF related_reports ON crime_events
    FOR EACH ROW WHEN (cardinality(NEW.related_reports) > 0)
    EXECUTE FUNCTION luminar_check_related_reports();

CREATE TRIGGER crime_events_updated_at BEFORE UPDATE ON crime_events
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
-- Inserts are the hot path (and bulk COPY): only changes and deletions are audited.
CREATE TRIGGER crime_events_audit AFTER UPDATE OR DELETE ON crime_events
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('event_id');

-- ---------------------------------------------------------------------------------------------------------------
-- miner_performance: one row per miner uid (a re-registered uid starts a fresh record)
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE miner_performance (
    miner_id           uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    miner_uid          integer          NOT NULL,
    hotkey             text             NOT NULL,
    integrity_score    double precision NOT NULL DEFAULT 0,
    clustering_score   double precision NOT NULL DEFAULT 0,
    novelty_score      double precision NOT NULL DEFAULT 0,
    quality_score      double precision NOT NULL DEFAULT 0,
    overall_score      double precision NOT NULL DEFAULT 0,
    avg_overall_score  double precision NOT NULL DEFAULT 0,
    total_rounds       integer          NOT NULL DEFAULT 0,
    successful_rounds  integer          NOT NULL DEFAULT 0,
    is_active          boolean          NOT NULL DEFAULT true,
    registered_at      timestamptz      NOT NULL DEFAULT now(),
    last_active_at     timestamptz,
    created_at         timestamptz      NOT NULL DEFAULT now(),
    updated_at         timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT miner_performance_miner_uid_key UNIQUE (miner_uid),
    CONSTRAINT miner_uid_nonnegative CHECK (miner_uid >= 0),
    CONSTRAINT miner_hotkey_length CHECK (char_length(hotkey) BETWEEN 1 AND 128),
    CONSTRAINT miner_integrity_range CHECK (integrity_score BETWEEN 0 AND 1),
    CONSTRAINT miner_clustering_range CHECK (clustering_score BETWEEN 0 AND 1),
    CONSTRAINT miner_novelty_range CHECK (novelty_score BETWEEN 0 AND 1),
    CONSTRAINT miner_quality_range CHECK (quality_score BETWEEN 0 AND 1),
    CONSTRAINT miner_overall_range CHECK (overall_score BETWEEN 0 AND 1),
    CONSTRAINT miner_avg_overall_range CHECK (avg_overall_score BETWEEN 0 AND 1),
    CONSTRAINT miner_rounds_consistent CHECK (total_rounds >= 0 AND successful_rounds BETWEEN 0 AND total_rounds)
);
CREATE INDEX idx_miner_performance_active ON miner_performance (is_active, avg_overall_score DESC);

CREATE TRIGGER miner_performance_updated_at BEFORE UPDATE ON miner_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
-- A change of hotkey on a uid is a re-registration: the old record's history is kept in the audit log.
CREATE FUNCTION luminar_audit_reregistration() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (table_name, operation, row_id, old_data, new_data)
    VALUES (TG_TABLE_NAME, 'REREGISTER', NEW.miner_uid::text, to_jsonb(OLD), to_jsonb(NEW));
    RETURN NULL;
END;
$$;
CREATE TRIGGER miner_performance_reregistered AFTER UPDATE OF hotkey ON miner_performance
    FOR EACH ROW WHEN (OLD.hotkey IS DISTINCT FROM NEW.hotkey)
    EXECUTE FUNCTION luminar_audit_reregistration();
CREATE TRIGGER miner_performance_audit AFTER DELETE ON miner_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('miner_uid');

-- ---------------------------------------------------------------------------------------------------------------
-- validator_performance: one row per validator uid
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE validator_performance (
    validator_id         uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    validator_uid        integer          NOT NULL,
    hotkey               text             NOT NULL,
    total_validations    integer          NOT NULL DEFAULT 0,
    agreements           integer          NOT NULL DEFAULT 0,
    consensus_accuracy   double precision NOT NULL DEFAULT 0,
    avg_score_given      double precision NOT NULL DEFAULT 0,
    stake                double precision NOT NULL DEFAULT 0,
    is_active            boolean          NOT NULL DEFAULT true,
    last_active_at       timestamptz,
    created_at           timestamptz      NOT NULL DEFAULT now(),
    updated_at           timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT validator_performance_validator_uid_key UNIQUE (validator_uid),
    CONSTRAINT validator_uid_nonnegative CHECK (validator_uid >= 0),
    CONSTRAINT validator_hotkey_length CHECK (char_length(hotkey) BETWEEN 1 AND 128),
    CONSTRAINT validator_counts_consistent CHECK (total_validations >= 0 AND agreements BETWEEN 0 AND total_validations),
    CONSTRAINT validator_accuracy_range CHECK (consensus_accuracy BETWEEN 0 AND 1),
    CONSTRAINT validator_avg_score_range CHECK (avg_score_given BETWEEN 0 AND 1),
    CONSTRAINT validator_stake_nonnegative CHECK (stake >= 0)
);
CREATE INDEX idx_validator_performance_active ON validator_performance (is_active, consensus_accuracy DESC);

CREATE TRIGGER validator_performance_updated_at BEFORE UPDATE ON validator_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
CREATE TRIGGER validator_performance_audit AFTER DELETE ON validator_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('validator_uid');

-- ---------------------------------------------------------------------------------------------------------------
-- consensus_records: each validator's scores of an event in a round, for transparency
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE consensus_records (
    record_id       uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        uuid             NOT NULL REFERENCES crime_events (event_id) ON DELETE CASCADE,
    validator_uid   integer          NOT NULL,
    round_number    integer          NOT NULL,
    scores          jsonb            NOT NULL,
    final_score     double precision NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT consensus_records_event_validator_round_key UNIQUE (event_id, validator_uid, round_number),
    CONSTRAINT consensus_validator_uid_nonnegative CHECK (validator_uid >= 0),
    CONSTRAINT consensus_round_nonnegative CHECK (round_number >= 0),
    CONSTRAINT consensus_scores_object CHECK (jsonb_typeof(scores) = 'object'),
    CONSTRAINT consensus_final_score_range CHECK (final_score BETWEEN 0 AND 1)
);
CREATE INDEX idx_consensus_validator_time ON consensus_records (validator_uid, created_at DESC);
CREATE INDEX idx_consensus_created_at ON consensus_records (created_at);

-- ---------------------------------------------------------------------------------------------------------------
-- risk_zones: dynamic risk assessment areas
-- ---------------------------------------------------------------------------------------------------------------
CREATE TABLE risk_zones (
    zone_id       uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text             NOT NULL,
    boundary      geometry(Polygon, 4326) NOT NULL,
    risk_level    smallint         NOT NULL,
    risk_score    double precision NOT NULL,
    crime_types   text[]           NOT NULL DEFAULT '{}',
    valid_from    timestamptz      NOT NULL DEFAULT now(),
    valid_until   timestamptz,
    metadata      jsonb            NOT NULL DEFAULT '{}',
    created_at    timestamptz      NOT NULL DEFAULT now(),
    updated_at    timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT risk_zones_name_length CHECK (char_length(name) BETWEEN 1 AND 200),
    CONSTRAINT risk_zones_boundary_valid CHECK (ST_IsValid(boundary) AND NOT ST_IsEmpty(boundary)),
    CONSTRAINT risk_zones_boundary_in_range
        CHECK (ST_XMin(boundary) >= -180 AND ST_XMax(boundary) <= 180
               AND ST_YMin(boundary) >= -90 AND ST_YMax(boundary) <= 90),
    CONSTRAINT risk_zones_level_range CHECK (risk_level BETWEEN 1 AND 5),
    CONSTRAINT risk_zones_score_range CHECK (risk_score BETWEEN 0 AND 1),
    CONSTRAINT risk_zones_validity_order CHECK (valid_until IS NULL OR valid_until > valid_from),
    CONSTRAINT risk_zones_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);
CREATE INDEX idx_risk_zones_boundary ON risk_zones USING GIST (boundary);
CREATE INDEX idx_risk_zones_validity ON risk_zones (valid_until);

CREATE TRIGGER risk_zones_updated_at BEFORE UPDATE ON risk_zones
    FOR EACH ROW EXECUTE FUNCTION luminar_touch_updated_at();
CREATE TRIGGER risk_zones_audit AFTER INSERT OR UPDATE OR DELETE ON risk_zones
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('zone_id');

-- ---------------------------------------------------------------------------------------------------------------
-- Views of the specification
-- ---------------------------------------------------------------------------------------------------------------

-- Hotspots: verified events of the last p_days days, grouped by a square cell of p_cell_degrees (0.01 degree is
-- about 1.1 km north-south), so nearby events count together. latitude/longitude are the cell's centre.
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

CREATE VIEW crime_hotspots AS
    SELECT * FROM crime_hotspots_since(7);

CREATE VIEW recent_crime_events AS
    SELECT event_id, miner_uid, event_type, title, summary, latitude, longitude, geotag, "timestamp", severity,
           confidence_score, related_reports, cluster_id, verification_status, verified_by, verification_score,
           metadata, created_at
      FROM crime_events
     WHERE "timestamp" >= now() - interval '24 hours';

-- success_rate is in percent: the share of scoring rounds whose overall score reached 0.5.
CREATE VIEW active_miners AS
    SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
           avg_overall_score, total_rounds, successful_rounds,
           CASE WHEN total_rounds = 0 THEN 0::numeric
                ELSE round(100.0 * successful_rounds / total_rounds, 2) END AS success_rate,
           registered_at, last_active_at
      FROM miner_performance
     WHERE is_active;

-- migrate:down
DROP VIEW IF EXISTS active_miners;
DROP VIEW IF EXISTS recent_crime_events;
DROP VIEW IF EXISTS crime_hotspots;
DROP FUNCTION IF EXISTS crime_hotspots_since(integer, double precision);
DROP TABLE IF EXISTS risk_zones;
DROP TABLE IF EXISTS consensus_records;
DROP TABLE IF EXISTS validator_performance;
DROP TABLE IF EXISTS miner_performance;
DROP TABLE IF EXISTS crime_events;
DROP TABLE IF EXISTS crime_clusters;
DROP TABLE IF EXISTS raw_incident_reports;
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS luminar_audit_reregistration();
DROP FUNCTION IF EXISTS luminar_check_related_reports();
DROP FUNCTION IF EXISTS luminar_audit();
DROP FUNCTION IF EXISTS luminar_touch_updated_at();
