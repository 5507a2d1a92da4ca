-- Migration: roles_and_node_identity
-- Created:   2026-11-30 02:00:00 (UTC)
--
-- Least privilege. The role that runs the migrations owns every object (the owner); nodes never do. Each kind of
-- user is a group role (NOLOGIN) holding exactly the rights its calls need; a node's login is a member of its
-- group and, in production, named in node_identities with its uid:
--   luminar_ingest     the apps' intake: files raw reports (and reads them back)
--   luminar_miner      claims and settles reports, stores and geocodes its own events and clusters
--   luminar_validator  gives verdicts, stores its own consensus records, keeps miner and its own validator scores
--   luminar_reader     the public views only (dashboards, the public)
--   luminar_analyst    every table read-only, the audit trail included (operators' exports)
--   luminar_sync       every table read-only (local copies and replicas)
--   luminar_monitor    pg_monitor (given by provisioning) and the figures' tables and views
-- Group roles are cluster-wide: provisioning (`luminar-db setup --admin-url`, `luminar-db roles provision`) creates
-- them; this migration creates those missing when the role running it may (a superuser, or CREATEROLE), else it
-- stops, naming the command that does.
--
-- Row-level security keeps a node to its own rows: luminar_node_all(kind) / luminar_node_uids(kind) read
-- node_identities for the session's login (session_user: SET ROLE cannot change it) as the owner. A login mapped
-- with no uid acts for every uid of its kind (a single operator's node, the local demo). A login not mapped writes
-- nothing subject to row security. Policies call them once a statement (a scalar subquery), not once a row.
-- Every trigger function that writes another table (the audit trail, the miners' counters) runs as the owner
-- (SECURITY DEFINER, a fixed search_path), so no node needs a right on those tables; cross-node housekeeping
-- (returning expired claims) is the owner's function luminar_release_stale_claims.
-- Nodes may not COPY into a table under row security (PostgreSQL refuses it): the bulk paths stage their rows in a
-- temporary table when row_security_active() says so.

-- migrate:up
DO $$
DECLARE
    group_role text;
    missing text[] := '{}';
    may_create boolean := (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user);
BEGIN
    FOREACH group_role IN ARRAY ARRAY['luminar_ingest', 'luminar_miner', 'luminar_validator', 'luminar_reader',
                                      'luminar_analyst', 'luminar_sync', 'luminar_monitor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = group_role) THEN
            IF may_create THEN
                BEGIN
                    EXECUTE format('CREATE ROLE %I NOLOGIN', group_role);
                EXCEPTION WHEN duplicate_object OR unique_violation THEN
                    NULL;  -- made by a migration of another database a moment ago
                END;
            ELSE
                missing := missing || group_role;
            END IF;
        END IF;
    END LOOP;
    IF cardinality(missing) > 0 THEN
        RAISE EXCEPTION 'the group roles % are missing and role % may not create them', missing, current_user
            USING HINT = 'run `luminar-db roles provision --admin-url URL` (a superuser or CREATEROLE), then migrate';
    END IF;
END;
$$;

-- Who each node login is.
CREATE TABLE node_identities (
    login       name        NOT NULL,
    kind        text        NOT NULL,
    uid         integer,
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (login, kind),
    CONSTRAINT node_identities_kind_known CHECK (kind IN ('ingest', 'miner', 'validator')),
    CONSTRAINT node_identities_uid_nonnegative CHECK (uid IS NULL OR uid >= 0),
    CONSTRAINT node_identities_note_length CHECK (note IS NULL OR char_length(note) <= 200)
);
-- One uid of a kind belongs to one login.
CREATE UNIQUE INDEX idx_node_identities_uid ON node_identities (kind, uid) WHERE uid IS NOT NULL;

-- True when the session's login may act for every uid of this kind.
CREATE FUNCTION luminar_node_all(p_kind text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT EXISTS (SELECT 1 FROM public.node_identities WHERE login = session_user AND kind = p_kind AND uid IS NULL)
$$;
-- The uids of this kind the session's login acts for.
CREATE FUNCTION luminar_node_uids(p_kind text) RETURNS integer[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT coalesce(array_agg(uid), '{}') FROM public.node_identities
     WHERE login = session_user AND kind = p_kind AND uid IS NOT NULL
$$;

-- Claims whose lease ran out go back to the queue: any miner's, so it runs as the owner. At least one minute.
CREATE FUNCTION luminar_release_stale_claims(p_minutes integer) RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH released AS (
        UPDATE public.raw_incident_reports
           SET status = 'pending', claimed_by = NULL, claimed_at = NULL
         WHERE report_id IN (SELECT report_id
                               FROM public.raw_incident_reports
                              WHERE status = 'processing'
                                AND claimed_at < now() - make_interval(mins => greatest(p_minutes, 1))
                                FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT count(*)::integer FROM released
$$;

-- The audit trail: written by triggers only, as the owner; the actor is the login, whoever the trigger runs as.
ALTER TABLE audit_log ALTER COLUMN actor SET DEFAULT session_user;
-- A validator's re-registration is kept by a trigger too (it was written by the statement itself, which would need
-- a right on audit_log); the function names the row by the column its trigger gives (miner_uid by default).
CREATE OR REPLACE FUNCTION luminar_audit_reregistration() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (table_name, operation, row_id, old_data, new_data)
    VALUES (TG_TABLE_NAME, 'REREGISTER', to_jsonb(NEW) ->> coalesce(TG_ARGV[0], 'miner_uid'), to_jsonb(OLD),
            to_jsonb(NEW));
    RETURN NULL;
END;
$$;
CREATE TRIGGER validator_performance_reregistered AFTER UPDATE OF hotkey ON validator_performance
    FOR EACH ROW WHEN (OLD.hotkey IS DISTINCT FROM NEW.hotkey)
    EXECUTE FUNCTION luminar_audit_reregistration('validator_uid');
ALTER FUNCTION luminar_audit() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION luminar_audit_reregistration() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION luminar_count_verified_events() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION luminar_count_processed_reports() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION luminar_miner_counts_start() SECURITY DEFINER SET search_path = pg_catalog, public;
ALTER FUNCTION luminar_protect_related_reports() SECURITY DEFINER SET search_path = pg_catalog, public;
-- luminar_check_related_reports stays the invoker's: it only reads reports, which every writer of events may read,
-- and it runs for every event stored (a SECURITY DEFINER call with its own search_path costs a tenth of a COPY).

-- Functions run by PUBLIC by default; the owner's ones only by whom they serve.
REVOKE EXECUTE ON FUNCTION luminar_audit(), luminar_audit_reregistration(), luminar_count_verified_events(),
    luminar_count_processed_reports(), luminar_miner_counts_start(), luminar_protect_related_reports(),
    luminar_check_related_reports(), luminar_release_stale_claims(integer),
    luminar_add_miner_counts(integer[], integer[], integer[]), luminar_node_all(text), luminar_node_uids(text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luminar_node_all(text), luminar_node_uids(text)
    TO luminar_ingest, luminar_miner, luminar_validator;
GRANT EXECUTE ON FUNCTION luminar_release_stale_claims(integer) TO luminar_miner;
REVOKE ALL ON audit_log, node_identities, schema_migrations FROM PUBLIC;

-- Table rights: exactly what each kind's calls do. Column lists keep a miner to the claim and settlement of a
-- report and the point of its own events, and a validator to the verdict.
GRANT SELECT, INSERT ON raw_incident_reports TO luminar_ingest;
GRANT SELECT ON raw_incident_reports TO luminar_miner, luminar_validator;
GRANT UPDATE (status, claimed_by, claimed_at, processing_attempts, processed_at, error_message)
    ON raw_incident_reports TO luminar_miner;

GRANT SELECT, INSERT ON crime_events TO luminar_miner;
GRANT UPDATE (latitude, longitude, location_source) ON crime_events TO luminar_miner;
GRANT SELECT ON crime_events TO luminar_validator;
GRANT UPDATE (verification_status, validator_uid, verification_score, verified_at) ON crime_events
    TO luminar_validator;

GRANT SELECT ON consensus_records TO luminar_miner;
GRANT SELECT, INSERT ON consensus_records TO luminar_validator;

GRANT SELECT ON miner_performance, validator_performance TO luminar_miner, luminar_monitor;
GRANT SELECT, INSERT, UPDATE ON miner_performance, validator_performance TO luminar_validator;

GRANT SELECT, INSERT, UPDATE ON crime_clusters TO luminar_miner;
GRANT SELECT ON crime_clusters, risk_zones TO luminar_validator;
GRANT SELECT ON risk_zones TO luminar_miner;

GRANT SELECT ON schema_migrations TO luminar_ingest, luminar_miner, luminar_validator, luminar_monitor;
GRANT SELECT ON recent_crime_events, crime_hotspots, active_miners TO luminar_miner, luminar_validator;
GRANT SELECT ON crime_hotspots, active_miners TO luminar_reader, luminar_monitor;

GRANT SELECT ON raw_incident_reports, crime_events, consensus_records, miner_performance, validator_performance,
    crime_clusters, risk_zones, audit_log, node_identities, schema_migrations, recent_crime_events,
    crime_hotspots, active_miners TO luminar_analyst;
GRANT SELECT ON raw_incident_reports, crime_events, consensus_records, miner_performance, validator_performance,
    crime_clusters, risk_zones, node_identities, schema_migrations TO luminar_sync;

-- Row-level security. Reading is open to the kinds granted SELECT; writing is a node's own rows.
ALTER TABLE raw_incident_reports ENABLE ROW LEVEL SECURITY;
CREATE POLICY reports_read ON raw_incident_reports FOR SELECT
    TO luminar_ingest, luminar_miner, luminar_validator, luminar_analyst, luminar_sync USING (true);
CREATE POLICY reports_file ON raw_incident_reports FOR INSERT TO luminar_ingest WITH CHECK (true);
-- A miner claims a pending report for itself (or for no one), and settles only what it claimed.
CREATE POLICY reports_claim ON raw_incident_reports FOR UPDATE TO luminar_miner
    USING (status = 'pending' OR (SELECT luminar_node_all('miner'))
           OR claimed_by = ANY ((SELECT luminar_node_uids('miner'))::integer[]))
    WITH CHECK (claimed_by IS NULL OR (SELECT luminar_node_all('miner'))
                OR claimed_by = ANY ((SELECT luminar_node_uids('miner'))::integer[]));

ALTER TABLE crime_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_read ON crime_events FOR SELECT
    TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync USING (true);
-- A miner stores its own events, unverified: a verdict is a validator's.
CREATE POLICY events_store ON crime_events FOR INSERT TO luminar_miner
    WITH CHECK (((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]))
                AND verification_status = 'pending' AND validator_uid IS NULL AND verification_score IS NULL
                AND verified_at IS NULL);
CREATE POLICY events_locate ON crime_events FOR UPDATE TO luminar_miner
    USING ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]));
-- A verdict is signed by the validator giving it.
CREATE POLICY events_verdict ON crime_events FOR UPDATE TO luminar_validator
    USING (true)
    WITH CHECK (validator_uid IS NULL OR (SELECT luminar_node_all('validator'))
                OR validator_uid = ANY ((SELECT luminar_node_uids('validator'))::integer[]));

ALTER TABLE consensus_records ENABLE ROW LEVEL SECURITY;
CREATE POLICY consensus_read ON consensus_records FOR SELECT
    TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync USING (true);
CREATE POLICY consensus_store ON consensus_records FOR INSERT TO luminar_validator
    WITH CHECK ((SELECT luminar_node_all('validator'))
                OR validator_uid = ANY ((SELECT luminar_node_uids('validator'))::integer[]));

-- Miners' scores are the validators' to keep (a miner has no write right on them at all).
ALTER TABLE validator_performance ENABLE ROW LEVEL SECURITY;
CREATE POLICY validator_scores_read ON validator_performance FOR SELECT
    TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync, luminar_monitor USING (true);
CREATE POLICY validator_scores_own_insert ON validator_performance FOR INSERT TO luminar_validator
    WITH CHECK ((SELECT luminar_node_all('validator'))
                OR validator_uid = ANY ((SELECT luminar_node_uids('validator'))::integer[]));
CREATE POLICY validator_scores_own_update ON validator_performance FOR UPDATE TO luminar_validator
    USING ((SELECT luminar_node_all('validator')) OR validator_uid = ANY ((SELECT luminar_node_uids('validator'))::integer[]))
    WITH CHECK ((SELECT luminar_node_all('validator'))
                OR validator_uid = ANY ((SELECT luminar_node_uids('validator'))::integer[]));

ALTER TABLE crime_clusters ENABLE ROW LEVEL SECURITY;
CREATE POLICY clusters_read ON crime_clusters FOR SELECT
    TO luminar_miner, luminar_validator, luminar_analyst, luminar_sync USING (true);
CREATE POLICY clusters_store ON crime_clusters FOR INSERT TO luminar_miner
    WITH CHECK ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]));
CREATE POLICY clusters_change ON crime_clusters FOR UPDATE TO luminar_miner
    USING ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]))
    WITH CHECK ((SELECT luminar_node_all('miner')) OR miner_uid = ANY ((SELECT luminar_node_uids('miner'))::integer[]));

-- migrate:down
-- The group roles stay: they are the cluster's, and other databases may use them.
DROP POLICY IF EXISTS clusters_change ON crime_clusters;
DROP POLICY IF EXISTS clusters_store ON crime_clusters;
DROP POLICY IF EXISTS clusters_read ON crime_clusters;
ALTER TABLE crime_clusters DISABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS validator_scores_own_update ON validator_performance;
DROP POLICY IF EXISTS validator_scores_own_insert ON validator_performance;
DROP POLICY IF EXISTS validator_scores_read ON validator_performance;
ALTER TABLE validator_performance DISABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS consensus_store ON consensus_records;
DROP POLICY IF EXISTS consensus_read ON consensus_records;
ALTER TABLE consensus_records DISABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS events_verdict ON crime_events;
DROP POLICY IF EXISTS events_locate ON crime_events;
DROP POLICY IF EXISTS events_store ON crime_events;
DROP POLICY IF EXISTS events_read ON crime_events;
ALTER TABLE crime_events DISABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS reports_claim ON raw_incident_reports;
DROP POLICY IF EXISTS reports_file ON raw_incident_reports;
DROP POLICY IF EXISTS reports_read ON raw_incident_reports;
ALTER TABLE raw_incident_reports DISABLE ROW LEVEL SECURITY;

REVOKE ALL ON raw_incident_reports, crime_events, consensus_records, miner_performance, validator_performance,
    crime_clusters, risk_zones, audit_log, schema_migrations, recent_crime_events, crime_hotspots, active_miners
    FROM luminar_ingest, luminar_miner, luminar_validator, luminar_reader, luminar_analyst, luminar_sync,
         luminar_monitor;
GRANT EXECUTE ON FUNCTION luminar_audit(), luminar_audit_reregistration(), luminar_count_verified_events(),
    luminar_count_processed_reports(), luminar_miner_counts_start(), luminar_protect_related_reports(),
    luminar_check_related_reports(), luminar_add_miner_counts(integer[], integer[], integer[]) TO PUBLIC;

ALTER FUNCTION luminar_audit() SECURITY INVOKER RESET search_path;
ALTER FUNCTION luminar_audit_reregistration() SECURITY INVOKER RESET search_path;
ALTER FUNCTION luminar_count_verified_events() SECURITY INVOKER RESET search_path;
ALTER FUNCTION luminar_count_processed_reports() SECURITY INVOKER RESET search_path;
ALTER FUNCTION luminar_miner_counts_start() SECURITY INVOKER RESET search_path;
ALTER FUNCTION luminar_protect_related_reports() SECURITY INVOKER RESET search_path;
ALTER TABLE audit_log ALTER COLUMN actor SET DEFAULT current_user;

DROP TRIGGER IF EXISTS validator_performance_reregistered ON validator_performance;
CREATE OR REPLACE FUNCTION luminar_audit_reregistration() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_log (table_name, operation, row_id, old_data, new_data)
    VALUES (TG_TABLE_NAME, 'REREGISTER', NEW.miner_uid::text, to_jsonb(OLD), to_jsonb(NEW));
    RETURN NULL;
END;
$$;
DROP FUNCTION IF EXISTS luminar_release_stale_claims(integer);
DROP FUNCTION IF EXISTS luminar_node_uids(text);
DROP FUNCTION IF EXISTS luminar_node_all(text);
DROP TABLE IF EXISTS node_identities;
