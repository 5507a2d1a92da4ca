-- Migration: sync_state
-- Created:   2026-11-30 03:10:00 (UTC)
--
-- Central -> local copies (`luminar-db sync`, luminar_store.ops.sync). Both sides run every migration; each uses
-- its half of this one.
--
-- The copy's side:
--   sync_state  one row per copied table (and 'deletes' for the central deletes): the source it follows
--               (host:port/database, never a password) and its watermark, a central transaction id (xid8 as
--               bigint): every central transaction below it had finished when the last complete pass of that
--               table read central, so the next pass reads only rows written by transactions from it on.
--   sync_runs   the history of runs: source, mode, time floor, start, end, status, per-table counts, error.
--   The sync's own writes mark their transaction (luminar.sync = its transaction id); for a session of the
--   tables' owner the triggers then keep the copy as central has it: updated_at keeps central's value
--   (luminar_touch_updated_at), and the miners' counters are copied, not counted again
--   (luminar_count_verified_events, luminar_count_processed_reports, luminar_miner_counts_start). The audit
--   triggers still record the sync's writes. A node setting the mark gains nothing: it is honoured only for a
--   session of the tables' owner (luminar_sync_writing).
--
-- Central's side:
--   luminar_sync_deletes(since, from_xid)  the DELETE rows of the audit trail (table, primary key, time,
--               transaction), without their data, for the luminar_sync group, which has no right on audit_log.
--               Retention's deletes (keys-only rows, row_count set) are not listed: a copy ages out by its own
--               `luminar-db clean`.

-- migrate:up
CREATE TABLE sync_state (
    table_name     text        PRIMARY KEY,
    source         text        NOT NULL,
    watermark_xid  bigint      NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now(),
    run_id         bigint
);

CREATE TABLE sync_runs (
    run_id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text        NOT NULL,
    mode         text        NOT NULL CHECK (mode IN ('window', 'full', 'watermark')),
    since        timestamptz,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'failed')),
    counts       jsonb       NOT NULL DEFAULT '{}',
    error        text
);

-- True when the current transaction is marked as the sync's and the session's login is (a member of) the owner of
-- table p_table. Called only once the mark is found, so the hot paths pay one current_setting() a row.
CREATE FUNCTION luminar_sync_writing(p_table oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT current_setting('luminar.sync', true) = txid_current()::text
       AND pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_table), 'MEMBER');
$$;

CREATE OR REPLACE FUNCTION luminar_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A copy keeps central's updated_at (written by luminar_store.ops.sync, migration 20261130031000).
    IF current_setting('luminar.sync', true) <> '' AND luminar_sync_writing(TG_RELID) THEN
        RETURN NEW;
    END IF;
    -- clock_timestamp(): several updates in one transaction still move updated_at forward.
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION luminar_count_verified_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF current_setting('luminar.sync', true) <> '' AND luminar_sync_writing(TG_RELID) THEN
        RETURN NULL;  -- a copy takes the miners' counters from central as they are
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.verification_status = 'verified' THEN
        UPDATE miner_performance SET verified_events = verified_events - 1 WHERE miner_uid = OLD.miner_uid;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.verification_status = 'verified' THEN
        UPDATE miner_performance SET verified_events = verified_events + 1 WHERE miner_uid = NEW.miner_uid;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION luminar_count_processed_reports() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF current_setting('luminar.sync', true) <> '' AND luminar_sync_writing(TG_RELID) THEN
        RETURN NULL;  -- a copy takes the miners' counters from central as they are
    END IF;
    IF OLD.status = 'processed' AND OLD.claimed_by IS NOT NULL THEN
        UPDATE miner_performance SET processed_reports = processed_reports - 1 WHERE miner_uid = OLD.claimed_by;
    END IF;
    IF NEW.status = 'processed' AND NEW.claimed_by IS NOT NULL THEN
        UPDATE miner_performance SET processed_reports = processed_reports + 1 WHERE miner_uid = NEW.claimed_by;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION luminar_miner_counts_start() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF current_setting('luminar.sync', true) <> '' AND luminar_sync_writing(TG_RELID) THEN
        RETURN NEW;  -- a copy takes the miners' counters from central as they are
    END IF;
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

-- Central's deletes for the copies: no data, only which row of which table went, when, in which transaction.
-- With neither bound it lists every delete the trail still holds (a full copy).
CREATE FUNCTION luminar_sync_deletes(p_since timestamptz, p_from_xid bigint)
RETURNS TABLE (table_name text, row_key text, occurred_at timestamptz, transaction_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    -- The trail names a miner or validator by uid; a copy deletes by primary key (a uid registered again is
    -- another row), which old_data holds.
    SELECT a.table_name,
           CASE a.table_name WHEN 'miner_performance' THEN a.old_data ->> 'miner_id'
                             WHEN 'validator_performance' THEN a.old_data ->> 'validator_id'
                             ELSE a.row_id END,
           a.occurred_at, a.transaction_id
      FROM public.audit_log AS a
     WHERE a.operation = 'DELETE' AND a.row_count IS NULL AND a.row_id IS NOT NULL
       AND a.table_name IN ('raw_incident_reports', 'crime_events', 'consensus_records', 'miner_performance',
                            'validator_performance', 'crime_clusters', 'risk_zones')
       AND ((p_since IS NULL AND p_from_xid IS NULL) OR a.occurred_at >= p_since OR a.transaction_id >= p_from_xid)
     ORDER BY a.transaction_id, a.occurred_at;
$$;
REVOKE EXECUTE ON FUNCTION luminar_sync_deletes(timestamptz, bigint) FROM PUBLIC;
-- The deletes alone (a small part of the trail), so that each pull reads them without a scan of the whole trail.
CREATE INDEX idx_audit_log_deletes ON audit_log (transaction_id) WHERE operation = 'DELETE' AND row_count IS NULL;
GRANT EXECUTE ON FUNCTION luminar_sync_deletes(timestamptz, bigint) TO luminar_sync;

-- migrate:down
DROP INDEX idx_audit_log_deletes;
DROP FUNCTION luminar_sync_deletes(timestamptz, bigint);

CREATE OR REPLACE FUNCTION luminar_miner_counts_start() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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

CREATE OR REPLACE FUNCTION luminar_count_processed_reports() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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

CREATE OR REPLACE FUNCTION luminar_count_verified_events() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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

CREATE OR REPLACE FUNCTION luminar_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- clock_timestamp(): several updates in one transaction still move updated_at forward.
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END;
$$;

DROP FUNCTION luminar_sync_writing(oid);
DROP TABLE sync_runs;
DROP TABLE sync_state;
