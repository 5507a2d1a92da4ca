-- Migration: analysis_audit_keys
-- Created:   2026-11-30 06:25:00 (UTC)
--
-- The analysis's own updates of crime_events are audited by their keys, as retention's deletes are.
--
-- luminar_analyze_clusters sets each clustered event's cluster_id, and re-points or clears it as clusters change.
-- The audit wrote one row per changed event with two copies of the event (old_data, new_data): a first run over 1M
-- events assigns ~140,000 events, and the audit rows cost three quarters of its time. The analysis now marks its
-- transaction (luminar.analysis = its transaction id, as retention marks luminar.retention); an UPDATE of
-- crime_events in a marked transaction by the table's owner (the analysis is the owner's; a node's session never
-- qualifies, whatever it sets) leaves one audit row per statement: operation UPDATE, row_count, the keys in
-- row_ids, and new_data {"by": "luminar_analyze_clusters", "columns": ["cluster_id"]}. What was set is the
-- analysis's result, kept in crime_clusters and reproducible from the events.

-- migrate:up
CREATE OR REPLACE FUNCTION luminar_audit_crime_events()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
-- The audit of one statement on crime_events (written by migration 20261130021000_audit_every_change; the
-- analysis branch by 20261130062500_analysis_audit_keys).
DECLARE
    -- luminar_session_uids(), inlined: one function call less a statement.
    uids integer[] := (SELECT array_agg(DISTINCT uid ORDER BY uid) FROM public.node_identities
                        WHERE login = session_user AND uid IS NOT NULL);
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'INSERT', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(n.event_id::text) AS ids FROM new_rows n) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' AND current_setting('luminar.retention', true) = txid_current()::text THEN
        -- Retention's own deletes: the keys only, or the trail would keep the very data retention removes.
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(o.event_id::text) AS ids FROM old_rows o) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', o.event_id::text, to_jsonb(o) - 'geotag' - 'centroid', uids
          FROM old_rows o;
    ELSIF TG_OP = 'UPDATE' AND current_setting('luminar.analysis', true) = txid_current()::text
          AND session_user = (SELECT pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class AS c WHERE c.oid = TG_RELID)
    THEN
        -- The owner's analysis setting events' cluster_id (luminar_analyze_clusters marks its transaction): one row
        -- per statement with the keys, not two copies of every event (a first run over 1M events assigns 140,000).
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, new_data, node_uids)
        SELECT TG_TABLE_NAME, 'UPDATE', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, jsonb_build_object('by', 'luminar_analyze_clusters', 'columns', jsonb_build_array('cluster_id')),
               uids
          FROM (SELECT array_agg(n.event_id::text) AS ids FROM new_rows n) AS k
         WHERE k.ids IS NOT NULL;
    ELSE
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, new_data, node_uids)
        SELECT TG_TABLE_NAME, 'UPDATE', coalesce(n.event_id, o.event_id)::text, to_jsonb(o) - 'geotag' - 'centroid',
               to_jsonb(n) - 'geotag' - 'centroid', uids
          FROM old_rows o FULL JOIN new_rows n ON o.event_id = n.event_id;
    END IF;
    RETURN NULL;
END;
$function$;

-- migrate:down
CREATE OR REPLACE FUNCTION luminar_audit_crime_events()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'public'
AS $function$
-- The audit of one statement on crime_events (written by migration 20261130021000_audit_every_change).
DECLARE
    -- luminar_session_uids(), inlined: one function call less a statement.
    uids integer[] := (SELECT array_agg(DISTINCT uid ORDER BY uid) FROM public.node_identities
                        WHERE login = session_user AND uid IS NOT NULL);
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'INSERT', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(n.event_id::text) AS ids FROM new_rows n) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' AND current_setting('luminar.retention', true) = txid_current()::text THEN
        -- Retention's own deletes: the keys only, or the trail would keep the very data retention removes.
        INSERT INTO public.audit_log (table_name, operation, row_id, row_count, row_ids, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', CASE WHEN cardinality(k.ids) = 1 THEN k.ids[1] END, cardinality(k.ids),
               k.ids, uids
          FROM (SELECT array_agg(o.event_id::text) AS ids FROM old_rows o) AS k
         WHERE k.ids IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, node_uids)
        SELECT TG_TABLE_NAME, 'DELETE', o.event_id::text, to_jsonb(o) - 'geotag' - 'centroid', uids
          FROM old_rows o;
    ELSE
        INSERT INTO public.audit_log (table_name, operation, row_id, old_data, new_data, node_uids)
        SELECT TG_TABLE_NAME, 'UPDATE', coalesce(n.event_id, o.event_id)::text, to_jsonb(o) - 'geotag' - 'centroid',
               to_jsonb(n) - 'geotag' - 'centroid', uids
          FROM old_rows o FULL JOIN new_rows n ON o.event_id = n.event_id;
    END IF;
    RETURN NULL;
END;
$function$;
