-- Migration: write_path_plans
-- Created:   2026-11-30 12:40:00 (UTC)
--
-- What every write of a verified event pays in its triggers, cut to what the work needs.
--
-- 1. luminar_refresh_incidents and luminar_refresh_cell_days (the upkeep of crime_incidents and incident_cell_days,
--    run by the statement triggers of crime_events) keep one plan per statement, made once per connection. Their
--    queries take an array parameter, and PostgreSQL's plan cache, finding the generic plan's estimate (an array of
--    unknown length) dearer than the custom plans', made a custom plan at every call: 1.3 ms of planning for
--    0.4 ms of work on a one-event insert. The generic plan reads by the same indexes (the incident key's, the
--    incidents' primary key, the cell-day index), whatever the array's length. Measured on 100,000 events: one
--    verified insert 4.9 ms -> 2.9 ms (one connection, round trip included); a 50,000-event COPY 7.5 s either way;
--    luminar_rebuild_incidents() 9.2 s instead of 10.1 s.
--
-- 2. luminar_sync_writing(table) answers false at once when the transaction carries no sync mark. Its callers
--    (the updated_at trigger of every table, the miners' counters) test `current_setting('luminar.sync', true) <> ''`
--    first, meaning to call it only under a mark; but on a connection where the setting was never set that test is
--    NULL, not false, and AND goes on to call the function. A SQL function is parsed and planned at every call
--    (about 110 microseconds a row); a plpgsql one keeps its plans.

-- migrate:up
ALTER FUNCTION luminar_refresh_incidents(uuid[]) SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION luminar_refresh_cell_days(date[], integer[], integer[]) SET plan_cache_mode = force_generic_plan;

-- True when the current transaction is marked as the sync's and the session's login is (a member of) the owner of
-- table p_table (as before, 20261130031000).
CREATE OR REPLACE FUNCTION luminar_sync_writing(p_table oid) RETURNS boolean
LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $$
DECLARE
    v_mark text := current_setting('luminar.sync', true);
BEGIN
    IF v_mark IS NULL OR v_mark = '' THEN
        RETURN false;
    END IF;
    RETURN v_mark = txid_current()::text
       AND pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_table), 'MEMBER');
END
$$;

-- migrate:down
ALTER FUNCTION luminar_refresh_incidents(uuid[]) RESET plan_cache_mode;
ALTER FUNCTION luminar_refresh_cell_days(date[], integer[], integer[]) RESET plan_cache_mode;

CREATE OR REPLACE FUNCTION luminar_sync_writing(p_table oid) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT current_setting('luminar.sync', true) = txid_current()::text
       AND pg_has_role(session_user, (SELECT relowner FROM pg_class WHERE oid = p_table), 'MEMBER');
$$;
