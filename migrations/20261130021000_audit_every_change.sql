-- Migration: audit_every_change
-- Created:   2026-11-30 02:10:00 (UTC)
--
-- Every insert, update and delete on the core tables leaves an audit row, and the trail is append-only.
--
-- Who: `actor` is the login (session_user), `node_uids` the uids node_identities names for it, `client_addr` and
-- `application_name` where the session came from, `transaction_id` which transaction did it. When: occurred_at.
-- What, per statement, written by statement-level AFTER triggers from the statement's transition tables with one
-- set-based INSERT ... SELECT (a bulk COPY of 5,000 events costs one trigger call, not 5,000):
--   INSERT      one audit row per statement: `row_count` and the keys in `row_ids` (and `row_id` when the
--               statement inserted one row). The inserted data itself stays in its table: copying it would double
--               the bulk path's writes and put a second copy of the victims' reports where retention must find it.
--   UPDATE      one audit row per changed row, old_data and new_data (a hotkey change of a miner or validator
--               is a REREGISTER row, as before).
--   DELETE      one audit row per deleted row, old_data; retention's deletes (`clean`, which marks its
--               transaction: luminar.retention = its transaction id) one row per statement with the keys only,
--               so that the trail does not keep the data retention removes.
-- The generated geometry columns (geotag, centroid) are left out of old_data/new_data, as before.
--
-- Append-only: no node has a right on audit_log; the owner's plain UPDATE, DELETE and TRUNCATE are refused by
-- guard triggers too. The only way out is the owner's luminar_age_out_audit(cutoff, batch) (retention's `clean`),
-- which marks its own transaction so the guard lets its DELETE through.

-- migrate:up
ALTER TABLE audit_log
    ADD COLUMN node_uids        integer[],
    ADD COLUMN client_addr      inet   DEFAULT inet_client_addr(),
    ADD COLUMN application_name text   DEFAULT nullif(current_setting('application_name', true), ''),
    ADD COLUMN transaction_id   bigint DEFAULT txid_current(),
    ADD COLUMN row_count        integer,
    ADD COLUMN row_ids          text[],
    ADD CONSTRAINT audit_log_row_count_positive CHECK (row_count IS NULL OR row_count > 0);

-- The uids node_identities names for the session's login (NULL when none): who a node is, whatever it writes.
-- PL/pgSQL, not SQL: a SQL function that cannot be inlined (SECURITY DEFINER) is planned again at every call, and
-- this one runs once per audited statement (measured: 0.37 ms a call as SQL).
CREATE FUNCTION luminar_session_uids() RETURNS integer[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    RETURN (SELECT array_agg(DISTINCT uid ORDER BY uid) FROM public.node_identities
             WHERE login = session_user AND uid IS NOT NULL);
END;
$$;
ALTER TABLE audit_log ALTER COLUMN node_uids SET DEFAULT luminar_session_uids();

-- The row triggers replaced: every change of these tables is audited by the statement triggers below, a hotkey
-- change of a miner or validator (a re-registration) included.
DROP TRIGGER crime_events_audit ON crime_events;
DROP TRIGGER miner_performance_audit ON miner_performance;
DROP TRIGGER validator_performance_audit ON validator_performance;
DROP TRIGGER risk_zones_audit ON risk_zones;
DROP TRIGGER miner_performance_reregistered ON miner_performance;
DROP TRIGGER validator_performance_reregistered ON validator_performance;
DROP FUNCTION luminar_audit();
DROP FUNCTION luminar_audit_reregistration();

-- One audit function a table, luminar_audit_<table>(), and three statement triggers <table>_audit_insert /
-- _update / _delete (a trigger with transition tables serves one event). The functions are written from one
-- template below with static SQL, so each session plans their INSERT ... SELECT once (a generic function running
-- EXECUTE plans it at every statement: measured 0.2 ms more a single store). Per table: the column naming a row
-- in the trail (row_id), the key columns matching an updated row's old and new versions, and the column whose
-- change makes an update a REREGISTER ('' for none). Transition tables: new_rows (INSERT, UPDATE), old_rows
-- (UPDATE, DELETE). A statement that changed no row writes nothing.
DO $migration$
DECLARE
    audited constant text[][] := ARRAY[
        ['raw_incident_reports',  'report_id',     'report_id',     ''],
        ['crime_events',          'event_id',      'event_id',      ''],
        ['consensus_records',     'record_id',     'record_id',     ''],
        ['miner_performance',     'miner_uid',     'miner_uid',     'hotkey'],
        ['validator_performance', 'validator_uid', 'validator_uid', 'hotkey'],
        ['crime_clusters',        'cluster_id',    'cluster_id',    ''],
        ['risk_zones',            'zone_id',       'zone_id',       ''],
        ['node_identities',       'login',         'login,kind',    '']];
    template constant text := $template$
CREATE FUNCTION %1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $function$
-- The audit of one statement on %2$I (written by migration 20261130021000_audit_every_change).
DECLARE
    -- luminar_session_uids(), inlined: one function call less a statement.
    uids integer[] := (SELECT array_agg(DISTINCT uid ORDER BY uid) FROM public.node_identities
                        WHERE login = session_user AND uid IS NOT NULL);
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'INSERT', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(n.%3$I::text) AS ids FROM new_rows n) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' AND current_setting('luminar.retention', true) = txid_current()::text THEN
        -- Retention's own deletes: the keys only, or the trail would keep the very data retention removes.
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(o.%3$I::text) AS ids FROM old_rows o) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', o.%3$I::text, to_jsonb(o) - 'geotag' - 'centroid', uids
          FROM old_rows o;
    ELSE
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, new_data, node_uids)
        SELECT TG_TABLE_NAME, %4$s, coalesce(n.%3$I, o.%3$I)::text, to_jsonb(o) - 'geotag' - 'centroid',
               to_jsonb(n) - 'geotag' - 'centroid', uids
          FROM old_rows o FULL JOIN new_rows n ON %5$s;
    END IF;
    RETURN NULL;
END;
$function$
$template$;
    i integer;
    tbl text;
    fn text;
    match text;
    operation text;
BEGIN
    FOR i IN 1 .. array_length(audited, 1) LOOP
        tbl := audited[i][1];
        fn := 'luminar_audit_' || tbl;
        SELECT string_agg(format('o.%1$I = n.%1$I', c), ' AND ') INTO match
          FROM unnest(string_to_array(audited[i][3], ',')) AS c;
        operation := CASE WHEN audited[i][4] = '' THEN quote_literal('UPDATE')
                          ELSE format('CASE WHEN o.%1$I IS DISTINCT FROM n.%1$I THEN %2$L ELSE %3$L END',
                                      audited[i][4], 'REREGISTER', 'UPDATE') END;
        EXECUTE format(template, fn, tbl, audited[i][2], operation, match);
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %I() FROM PUBLIC', fn);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', tbl || '_audit_insert', tbl, fn);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', tbl || '_audit_update', tbl, fn);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', tbl || '_audit_delete', tbl, fn);
    END LOOP;
END;
$migration$;

-- Append-only. Privileges keep every node out (none has UPDATE, DELETE or TRUNCATE on audit_log); these guards
-- refuse the owner's own plain changes too, except the DELETE of luminar_age_out_audit, which marks its transaction
-- (luminar.audit_age_out = its transaction id) for the length of that DELETE. A node setting that mark gains
-- nothing (its privileges are checked first); the owner, who could also drop a trigger, is kept from slips and
-- stray tools, not from itself: that takes the trail's copies elsewhere (backups, replicas, logical replication).
CREATE FUNCTION luminar_audit_log_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND current_setting('luminar.audit_age_out', true) = txid_current()::text THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'old entries leave only through retention (`luminar-db clean`, luminar_age_out_audit)';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION luminar_audit_log_guard();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION luminar_audit_log_guard();

-- The owner's maintenance path: deletes at most p_batch entries older than p_cutoff, returns how many.
CREATE FUNCTION luminar_age_out_audit(p_cutoff timestamptz, p_batch integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    deleted integer;
BEGIN
    IF p_cutoff IS NULL OR p_batch IS NULL OR p_batch < 1 THEN
        RAISE EXCEPTION 'luminar_age_out_audit needs a cutoff and a batch of at least 1 (got %, %)', p_cutoff, p_batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM set_config('luminar.audit_age_out', txid_current()::text, true);
    DELETE FROM public.audit_log
     WHERE audit_id IN (SELECT audit_id FROM public.audit_log WHERE occurred_at < p_cutoff LIMIT p_batch);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    PERFORM set_config('luminar.audit_age_out', '', true);
    RETURN deleted;
END;
$$;

REVOKE EXECUTE ON FUNCTION luminar_session_uids(), luminar_audit_log_guard(),
    luminar_age_out_audit(timestamptz, integer) FROM PUBLIC;

-- migrate:down
DROP FUNCTION luminar_age_out_audit(timestamptz, integer);
DROP TRIGGER audit_log_no_truncate ON audit_log;
DROP TRIGGER audit_log_append_only ON audit_log;
DROP FUNCTION luminar_audit_log_guard();

DO $$
DECLARE
    audited constant text[] := ARRAY['raw_incident_reports', 'crime_events', 'consensus_records',
                                     'miner_performance', 'validator_performance', 'crime_clusters', 'risk_zones',
                                     'node_identities'];
    t text;
    op text;
BEGIN
    FOREACH t IN ARRAY audited LOOP
        FOREACH op IN ARRAY ARRAY['insert', 'update', 'delete'] LOOP
            EXECUTE format('DROP TRIGGER %I ON %I', t || '_audit_' || op, t);
        END LOOP;
        EXECUTE format('DROP FUNCTION %I()', 'luminar_audit_' || t);
    END LOOP;
END;
$$;

-- The row triggers of before, as the previous migrations left them.
CREATE FUNCTION luminar_audit() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
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
CREATE FUNCTION luminar_audit_reregistration() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    INSERT INTO audit_log (table_name, operation, row_id, old_data, new_data)
    VALUES (TG_TABLE_NAME, 'REREGISTER', to_jsonb(NEW) ->> coalesce(TG_ARGV[0], 'miner_uid'), to_jsonb(OLD),
            to_jsonb(NEW));
    RETURN NULL;
END;
$$;
REVOKE EXECUTE ON FUNCTION luminar_audit(), luminar_audit_reregistration() FROM PUBLIC;
CREATE TRIGGER crime_events_audit AFTER UPDATE OR DELETE ON crime_events
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('event_id');
CREATE TRIGGER miner_performance_reregistered AFTER UPDATE OF hotkey ON miner_performance
    FOR EACH ROW WHEN (OLD.hotkey IS DISTINCT FROM NEW.hotkey)
    EXECUTE FUNCTION luminar_audit_reregistration();
CREATE TRIGGER miner_performance_audit AFTER DELETE ON miner_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('miner_uid');
CREATE TRIGGER validator_performance_audit AFTER DELETE ON validator_performance
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('validator_uid');
CREATE TRIGGER validator_performance_reregistered AFTER UPDATE OF hotkey ON validator_performance
    FOR EACH ROW WHEN (OLD.hotkey IS DISTINCT FROM NEW.hotkey)
    EXECUTE FUNCTION luminar_audit_reregistration('validator_uid');
CREATE TRIGGER risk_zones_audit AFTER INSERT OR UPDATE OR DELETE ON risk_zones
    FOR EACH ROW EXECUTE FUNCTION luminar_audit('zone_id');

ALTER TABLE audit_log ALTER COLUMN node_uids DROP DEFAULT;
DROP FUNCTION luminar_session_uids();
ALTER TABLE audit_log
    DROP CONSTRAINT audit_log_row_count_positive,
    DROP COLUMN row_ids,
    DROP COLUMN row_count,
    DROP COLUMN transaction_id,
    DROP COLUMN application_name,
    DROP COLUMN client_addr,
    DROP COLUMN node_uids;
