-- Migration: times_in_range
-- Created:   2026-11-29 23:02:00 (UTC)
--
-- Reads never fail on a stored time. PostgreSQL keeps times that Python cannot hold: a year-1 time with a +14:00
-- offset became '0001-12-31 10:00:00+00 BC', and 'infinity' or a year past 9999 are valid timestamptz values. Every
-- read meeting such a row raised (psycopg: "timestamp too small"), and a claim that had just updated it could not
-- hand it out. The store refuses such times on input (luminar_store.limits.MIN_TIMESTAMP: nothing before 1970); these
-- CHECK constraints make the tables refuse them too, whoever writes:
--   every time a writer gives lies in [1970-01-01 00:00 UTC, 10000-01-01 00:00 UTC) (which also excludes
--   'infinity' and '-infinity'). The times the database stamps itself (created_at, now()) need no check.
--
-- A database already holding such rows is not changed: the migration stops before adding anything and says how many
-- rows of which column are out of range, with the query that lists them. Correct or delete them (their true time is
-- unknown to the store), then migrate again.

-- migrate:up
CREATE TEMPORARY TABLE luminar_time_columns (tab text, col text) ON COMMIT DROP;
INSERT INTO luminar_time_columns VALUES
    ('raw_incident_reports', 'timestamp'), ('raw_incident_reports', 'claimed_at'),
    ('raw_incident_reports', 'processed_at'),
    ('crime_events', 'timestamp'), ('crime_events', 'time_end'), ('crime_events', 'verified_at'),
    ('crime_clusters', 'time_start'), ('crime_clusters', 'time_end'),
    ('miner_performance', 'registered_at'), ('miner_performance', 'last_activity'),
    ('validator_performance', 'last_activity'),
    ('risk_zones', 'valid_from'), ('risk_zones', 'valid_until');

DO $$
DECLARE
    target record;
    found bigint;
    report text := '';
BEGIN
    FOR target IN SELECT tab, col FROM luminar_time_columns LOOP
        EXECUTE format('SELECT count(*) FROM %I WHERE %I < %L::timestamptz OR %I >= %L::timestamptz',
                       target.tab, target.col, '1970-01-01 00:00:00+00', target.col, '10000-01-01 00:00:00+00')
           INTO found;
        IF found > 0 THEN
            report := report || format(E'\n  %s.%s: %s rows (list them: SELECT * FROM %I WHERE %I < %L OR %I >= %L)',
                                       target.tab, target.col, found, target.tab, target.col, '1970-01-01+00',
                                       target.col, '10000-01-01+00');
        END IF;
    END LOOP;
    IF report <> '' THEN
        RAISE EXCEPTION 'stored times out of range (before 1970, or infinity, or after the year 9999), which no read '
                        'can return:%', report
              USING HINT = 'correct or delete these rows (their true time is unknown to the store), then migrate '
                           'again; nothing was changed';
    END IF;
    FOR target IN SELECT tab, col FROM luminar_time_columns LOOP
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (%I >= %L::timestamptz AND %I < %L::timestamptz)',
                       target.tab, target.tab || '_' || target.col || '_in_range', target.col,
                       '1970-01-01 00:00:00+00', target.col, '10000-01-01 00:00:00+00');
    END LOOP;
END $$;

-- migrate:down
ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_incident_reports_timestamp_in_range,
                                 DROP CONSTRAINT raw_incident_reports_claimed_at_in_range,
                                 DROP CONSTRAINT raw_incident_reports_processed_at_in_range;
ALTER TABLE crime_events DROP CONSTRAINT crime_events_timestamp_in_range,
                         DROP CONSTRAINT crime_events_time_end_in_range,
                         DROP CONSTRAINT crime_events_verified_at_in_range;
ALTER TABLE crime_clusters DROP CONSTRAINT crime_clusters_time_start_in_range,
                           DROP CONSTRAINT crime_clusters_time_end_in_range;
ALTER TABLE miner_performance DROP CONSTRAINT miner_performance_registered_at_in_range,
                              DROP CONSTRAINT miner_performance_last_activity_in_range;
ALTER TABLE validator_performance DROP CONSTRAINT validator_performance_last_activity_in_range;
ALTER TABLE risk_zones DROP CONSTRAINT risk_zones_valid_from_in_range,
                       DROP CONSTRAINT risk_zones_valid_until_in_range;
