-- Migration: network_names_performance
-- Created:   2026-11-29 22:00:00 (UTC)
--
-- The network's node operators know the reference schema's column names; the performance, consensus, cluster and
-- zone tables take them (no row is lost; the down section restores the previous names and drops what is added).
--
-- miner_performance
-- - last_active_at is renamed last_activity.
-- - coldkey (1..128 characters), stake_amount numeric(18,9) (>= 0), both nullable.
-- - total_score: the running SUM of the miner's round overall scores (the reference adds each round's total);
--   backfilled as avg_overall_score * total_rounds; record_round adds each round's overall score.
-- - processed_reports: raw reports this uid's claims brought to status 'processed' (status became 'processed'
--   while claimed_by = the uid); verified_events: this uid's crime events whose verification_status is 'verified'.
--   Both backfilled from the tables, then kept true by triggers:
--     crime_events: AFTER INSERT of a verified event (a WHEN clause: pending inserts, the COPY bulk path, fire
--     nothing), AFTER UPDATE OF verification_status, miner_uid when the verified state or the miner of a verified
--     event changes, AFTER DELETE of a verified event;
--     raw_incident_reports: AFTER UPDATE OF status, claimed_by when a report becomes or stops being 'processed'
--     with a claimed_by (or a processed report changes claimer).
--   A miner_performance row being INSERTed (a uid's first round) starts from the current table counts (BEFORE
--   INSERT). record_round's INSERT ... ON CONFLICT fires it too, so a re-registered uid (the conflict branch with
--   a new hotkey) restarts from EXCLUDED's fresh counts; for a known uid with the same hotkey the (unused) count is
--   skipped. idx_reports_processed_by makes that count an index scan.
--   A bulk loader that adds the counts of its rows itself (the synthetic loader, whose parallel writers would
--   otherwise queue on, and deadlock over, the miners' rows) sets luminar.defer_miner_counts = 'on' for its
--   transaction: the insert trigger of crime_events then does not fire.
-- - The active_miners view is re-created (a renamed column keeps its old name in a view's output): last_activity,
--   then the reference view's columns total_score, processed_reports, verified_events, stake_amount appended;
--   success_rate stays percent_of(successful_rounds, total_rounds).
--
-- validator_performance: last_active_at -> last_activity, stake -> stake_amount, total_validations ->
--   validated_events (their CHECK constraints follow the columns; the names validator_stake_nonnegative and
--   validator_counts_consistent hold no old column name and stay); coldkey (1..128 characters, nullable).
--
-- consensus_records: round_number -> consensus_round (consensus_records_event_validator_round_key and
--   consensus_round_nonnegative follow the column, their names stay); generated stored columns integrity_score,
--   clustering_score, novelty_score, quality_score: the number under that key of `scores` when it is a JSON number
--   (within double precision's range), else NULL, through the IMMUTABLE json_number_or_null(jsonb).
--   consensus_agreement(since, tolerance), whose SQL body names the column (bodies are stored as text), is
--   re-created with the new name.
--
-- crime_clusters: cluster_type ('geographic', 'temporal', 'behavioral'), confidence_score (0..1),
--   pattern_description (1..10000 characters), all nullable.
-- risk_zones: crime_density (crimes per km^2, >= 0, nullable), recent_incidents integer NOT NULL DEFAULT 0 (>= 0),
--   trend_direction ('increasing', 'decreasing', 'stable', nullable).
--
-- Adding the generated columns rewrites consensus_records once (ACCESS EXCLUSIVE while it runs).

-- migrate:up

-- ---------------------------------------------------------------------------------------------------------------
-- miner_performance
-- ---------------------------------------------------------------------------------------------------------------
ALTER TABLE miner_performance RENAME COLUMN last_active_at TO last_activity;

ALTER TABLE miner_performance
    ADD COLUMN coldkey           text,
    ADD COLUMN stake_amount      numeric(18, 9),
    ADD COLUMN total_score       double precision NOT NULL DEFAULT 0,
    ADD COLUMN processed_reports integer          NOT NULL DEFAULT 0,
    ADD COLUMN verified_events   integer          NOT NULL DEFAULT 0,
    ADD CONSTRAINT miner_coldkey_length CHECK (coldkey IS NULL OR char_length(coldkey) BETWEEN 1 AND 128),
    ADD CONSTRAINT miner_stake_amount_nonnegative CHECK (stake_amount IS NULL OR stake_amount >= 0),
    ADD CONSTRAINT miner_total_score_nonnegative CHECK (total_score >= 0);

-- Counting a uid's processed reports (the insert trigger below) without reading the whole table.
CREATE INDEX idx_reports_processed_by ON raw_incident_reports (claimed_by) WHERE status = 'processed';

-- The backfill is not a change of the miners' records: updated_at keeps its value.
ALTER TABLE miner_performance DISABLE TRIGGER miner_performance_updated_at;
UPDATE miner_performance m
   SET total_score = greatest(0, m.avg_overall_score * m.total_rounds),
       processed_reports = coalesce((SELECT count(*) FROM raw_incident_reports r
                                      WHERE r.claimed_by = m.miner_uid AND r.status = 'processed'), 0),
       verified_events = coalesce((SELECT count(*) FROM crime_events e
                                    WHERE e.miner_uid = m.miner_uid AND e.verification_status = 'verified'), 0);
ALTER TABLE miner_performance ENABLE TRIGGER miner_performance_updated_at;

-- A new record starts from the current counts of its uid. record_round's upsert fires this before it knows whether
-- the uid exists: a record of the uid with the same hotkey is kept by the upsert (its counts are already true), so
-- the count is skipped; a new hotkey (re-registration) takes EXCLUDED's counts.
CREATE FUNCTION luminar_miner_counts_start() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM miner_performance WHERE miner_uid = NEW.miner_uid AND hotkey = NEW.hotkey) THEN
        RETURN NEW;
    END IF;
    NEW.processed_reports := (SELECT count(*) FROM raw_incident_reports
                               WHERE claimed_by = NEW.miner_uid AND status = 'processed');
    NEW.verified_events := (SELECT count(*) FROM crime_events
                             WHERE miner_uid = NEW.miner_uid AND verification_status = 'verified');
    RETURN NEW;
END;
$$;
CREATE TRIGGER miner_performance_counts_start BEFORE INSERT ON miner_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_miner_counts_start();

-- verified_events follows the verified events of a uid.
CREATE FUNCTION luminar_count_verified_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.verification_status = 'verified' THEN
        UPDATE miner_performance SET verified_events = verified_events - 1 WHERE miner_uid = OLD.miner_uid;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.verification_status = 'verified' THEN
        UPDATE miner_performance SET verified_events = verified_events + 1 WHERE miner_uid = NEW.miner_uid;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER crime_events_count_verified_insert AFTER INSERT ON crime_events
    FOR EACH ROW
    WHEN (NEW.verification_status = 'verified'
          AND current_setting('luminar.defer_miner_counts', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION luminar_count_verified_events();
CREATE TRIGGER crime_events_count_verified_update AFTER UPDATE OF verification_status, miner_uid ON crime_events
    FOR EACH ROW
    WHEN ((OLD.verification_status = 'verified' OR NEW.verification_status = 'verified')
          AND (OLD.verification_status IS DISTINCT FROM NEW.verification_status
               OR OLD.miner_uid IS DISTINCT FROM NEW.miner_uid))
    EXECUTE FUNCTION luminar_count_verified_events();
CREATE TRIGGER crime_events_count_verified_delete AFTER DELETE ON crime_events
    FOR EACH ROW WHEN (OLD.verification_status = 'verified')
    EXECUTE FUNCTION luminar_count_verified_events();

-- processed_reports follows the reports settled as 'processed' under a uid's claim.
CREATE FUNCTION luminar_count_processed_reports() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'processed' AND OLD.claimed_by IS NOT NULL THEN
        UPDATE miner_performance SET processed_reports = processed_reports - 1 WHERE miner_uid = OLD.claimed_by;
    END IF;
    IF NEW.status = 'processed' AND NEW.claimed_by IS NOT NULL THEN
        UPDATE miner_performance SET processed_reports = processed_reports + 1 WHERE miner_uid = NEW.claimed_by;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER raw_incident_reports_count_processed AFTER UPDATE OF status, claimed_by ON raw_incident_reports
    FOR EACH ROW
    WHEN ((OLD.status = 'processed' AND OLD.claimed_by IS NOT NULL
           OR NEW.status = 'processed' AND NEW.claimed_by IS NOT NULL)
          AND (OLD.status IS DISTINCT FROM NEW.status OR OLD.claimed_by IS DISTINCT FROM NEW.claimed_by))
    EXECUTE FUNCTION luminar_count_processed_reports();

-- success_rate is in percent: the share of scoring rounds whose overall score reached 0.5.
DROP VIEW active_miners;
CREATE VIEW active_miners AS
    SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
           avg_overall_score, total_rounds, successful_rounds,
           percent_of(successful_rounds, total_rounds)::numeric AS success_rate,
           registered_at, last_activity, total_score, processed_reports, verified_events, stake_amount
      FROM miner_performance
     WHERE is_active;

-- ---------------------------------------------------------------------------------------------------------------
-- validator_performance
-- ---------------------------------------------------------------------------------------------------------------
ALTER TABLE validator_performance RENAME COLUMN last_active_at TO last_activity;
ALTER TABLE validator_performance RENAME COLUMN stake TO stake_amount;
ALTER TABLE validator_performance RENAME COLUMN total_validations TO validated_events;
ALTER TABLE validator_performance
    ADD COLUMN coldkey text,
    ADD CONSTRAINT validator_coldkey_length CHECK (coldkey IS NULL OR char_length(coldkey) BETWEEN 1 AND 128);

-- ---------------------------------------------------------------------------------------------------------------
-- consensus_records
-- ---------------------------------------------------------------------------------------------------------------
-- The number a jsonb value holds when it is a JSON number that double precision can hold, else NULL (a string, an
-- object, a missing key; 1e400 or 1e-400 would make the cast fail).
CREATE FUNCTION json_number_or_null(p_value jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number' THEN
               CASE WHEN p_value::numeric = 0 OR abs(p_value::numeric) BETWEEN 1e-300 AND 1e300
                    THEN p_value::double precision END
           END
$$;

ALTER TABLE consensus_records RENAME COLUMN round_number TO consensus_round;
ALTER TABLE consensus_records
    ADD COLUMN integrity_score  double precision GENERATED ALWAYS AS (json_number_or_null(scores -> 'integrity')) STORED,
    ADD COLUMN clustering_score double precision GENERATED ALWAYS AS (json_number_or_null(scores -> 'clustering')) STORED,
    ADD COLUMN novelty_score    double precision GENERATED ALWAYS AS (json_number_or_null(scores -> 'novelty')) STORED,
    ADD COLUMN quality_score    double precision GENERATED ALWAYS AS (json_number_or_null(scores -> 'quality')) STORED;

CREATE OR REPLACE FUNCTION consensus_agreement(p_since timestamptz, p_tolerance double precision)
RETURNS TABLE (
    records         integer,
    events          integer,
    validators      integer,
    compared        integer,
    agreeing        integer,
    agreement_rate  double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH scored AS (
        SELECT event_id, validator_uid, final_score,
               avg(final_score) OVER w AS mean_score,
               count(*) OVER w AS judges
          FROM consensus_records
         WHERE created_at >= p_since
        WINDOW w AS (PARTITION BY event_id, consensus_round)
    ), counted AS (
        SELECT count(*)::integer AS records,
               count(DISTINCT event_id)::integer AS events,
               count(DISTINCT validator_uid)::integer AS validators,
               count(*) FILTER (WHERE judges > 1)::integer AS compared,
               count(*) FILTER (WHERE judges > 1 AND score_agrees(final_score, mean_score, p_tolerance))::integer
                   AS agreeing
          FROM scored
    )
    SELECT records, events, validators, compared, agreeing,
           round((100.0 * agreeing / nullif(compared, 0))::numeric, 2)::double precision
      FROM counted
$$;

-- ---------------------------------------------------------------------------------------------------------------
-- crime_clusters and risk_zones
-- ---------------------------------------------------------------------------------------------------------------
ALTER TABLE crime_clusters
    ADD COLUMN cluster_type        text,
    ADD COLUMN confidence_score    double precision,
    ADD COLUMN pattern_description text,
    ADD CONSTRAINT clusters_cluster_type_known
        CHECK (cluster_type IS NULL OR cluster_type IN ('geographic', 'temporal', 'behavioral')),
    ADD CONSTRAINT clusters_confidence_range CHECK (confidence_score IS NULL OR confidence_score BETWEEN 0 AND 1),
    ADD CONSTRAINT clusters_pattern_description_length
        CHECK (pattern_description IS NULL OR char_length(pattern_description) BETWEEN 1 AND 10000);

ALTER TABLE risk_zones
    ADD COLUMN crime_density    double precision,
    ADD COLUMN recent_incidents integer NOT NULL DEFAULT 0,
    ADD COLUMN trend_direction  text,
    ADD CONSTRAINT risk_zones_crime_density_nonnegative CHECK (crime_density IS NULL OR crime_density >= 0),
    ADD CONSTRAINT risk_zones_recent_incidents_nonnegative CHECK (recent_incidents >= 0),
    ADD CONSTRAINT risk_zones_trend_direction_known
        CHECK (trend_direction IS NULL OR trend_direction IN ('increasing', 'decreasing', 'stable'));

-- migrate:down
ALTER TABLE risk_zones
    DROP COLUMN trend_direction,
    DROP COLUMN recent_incidents,
    DROP COLUMN crime_density;
ALTER TABLE crime_clusters
    DROP COLUMN pattern_description,
    DROP COLUMN confidence_score,
    DROP COLUMN cluster_type;

ALTER TABLE consensus_records
    DROP COLUMN quality_score,
    DROP COLUMN novelty_score,
    DROP COLUMN clustering_score,
    DROP COLUMN integrity_score;
DROP FUNCTION json_number_or_null(jsonb);
ALTER TABLE consensus_records RENAME COLUMN consensus_round TO round_number;
CREATE OR REPLACE FUNCTION consensus_agreement(p_since timestamptz, p_tolerance double precision)
RETURNS TABLE (
    records         integer,
    events          integer,
    validators      integer,
    compared        integer,
    agreeing        integer,
    agreement_rate  double precision
)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH scored AS (
        SELECT event_id, validator_uid, final_score,
               avg(final_score) OVER w AS mean_score,
               count(*) OVER w AS judges
          FROM consensus_records
         WHERE created_at >= p_since
        WINDOW w AS (PARTITION BY event_id, round_number)
    ), counted AS (
        SELECT count(*)::integer AS records,
               count(DISTINCT event_id)::integer AS events,
               count(DISTINCT validator_uid)::integer AS validators,
               count(*) FILTER (WHERE judges > 1)::integer AS compared,
               count(*) FILTER (WHERE judges > 1 AND score_agrees(final_score, mean_score, p_tolerance))::integer
                   AS agreeing
          FROM scored
    )
    SELECT records, events, validators, compared, agreeing,
           round((100.0 * agreeing / nullif(compared, 0))::numeric, 2)::double precision
      FROM counted
$$;

ALTER TABLE validator_performance DROP CONSTRAINT validator_coldkey_length, DROP COLUMN coldkey;
ALTER TABLE validator_performance RENAME COLUMN validated_events TO total_validations;
ALTER TABLE validator_performance RENAME COLUMN stake_amount TO stake;
ALTER TABLE validator_performance RENAME COLUMN last_activity TO last_active_at;

DROP VIEW active_miners;
DROP TRIGGER raw_incident_reports_count_processed ON raw_incident_reports;
DROP TRIGGER crime_events_count_verified_delete ON crime_events;
DROP TRIGGER crime_events_count_verified_update ON crime_events;
DROP TRIGGER crime_events_count_verified_insert ON crime_events;
DROP TRIGGER miner_performance_counts_start ON miner_performance;
DROP FUNCTION luminar_count_processed_reports();
DROP FUNCTION luminar_count_verified_events();
DROP FUNCTION luminar_miner_counts_start();
DROP INDEX idx_reports_processed_by;
ALTER TABLE miner_performance
    DROP COLUMN verified_events,
    DROP COLUMN processed_reports,
    DROP COLUMN total_score,
    DROP COLUMN stake_amount,
    DROP COLUMN coldkey;
ALTER TABLE miner_performance RENAME COLUMN last_activity TO last_active_at;
-- As 20261129190000_one_definition_per_figure defines it.
CREATE VIEW active_miners AS
    SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
           avg_overall_score, total_rounds, successful_rounds,
           percent_of(successful_rounds, total_rounds)::numeric AS success_rate,
           registered_at, last_active_at
      FROM miner_performance
     WHERE is_active;
