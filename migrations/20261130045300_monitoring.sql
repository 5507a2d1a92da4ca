-- Migration: monitoring
-- Created:   2026-11-30 04:53:00 (UTC)
--
-- The figures of `luminar-db stats` as SQL functions, one definition each, read alike by `stats` (as the owner),
-- by `luminar-db metrics` (as the monitor) and by the Grafana dashboard (luminar_grafana: reader and monitor).
-- The monitor has no right on raw reports or events and gets none: these functions return aggregates only and
-- read the tables as their owner (SECURITY DEFINER, search_path fixed to pg_catalog, public).
--   luminar_stats_reports()       reports by status (pending, processing, processed, failed, rejected).
--   luminar_stats_events()        events by verification status.
--   luminar_stats_throughput(from, to, bucket)
--                                 processing throughput: per bucket of `bucket` (date_bin from `from`), the
--                                 reports settled (processed or rejected: both took a miner's work; by
--                                 processed_at) and the reports received (by created_at), in [from, to). `stats`
--                                 asks one bucket of its window ([now - hours, now)); the dashboard asks hours.
--   luminar_stats_agreement(since, tolerance)
--                                 consensus accuracy: consensus_agreement's compared, agreeing and rate, the
--                                 schema's one definition (the tolerance is luminar_store.limits'
--                                 AGREEMENT_TOLERANCE, passed by the caller).
--   luminar_stats_coverage()      geographic coverage: events (and verified events) per region, the region read
--                                 from the event's position with rough continent boxes, tried in this order: South
--                                 America (-60..13 N, -92..-30 E), North America (7..84 N, -170..-50 E), Europe
--                                 (35..72 N, -25..45 E), Africa (-36..37.5 N, -20..52 E, without Arabia: north of
--                                 12 N and east of 35 E), Oceania (-50..0 N, 110..180 E), Asia (-11..82 N, 25..180
--                                 E); anything else is 'Other'; an event without a position yet is 'Unlocated'.
--   luminar_stats_last_sync()     when the last successful sync run (sync_runs, status done) finished; NULL when
--                                 none has.
-- Rights: the functions are the owner's; EXECUTE to luminar_monitor and luminar_analyst only (REVOKE from PUBLIC).
-- The monitor also reads risk_zones (zones drawn from many events, no report or event row) for the dashboard's
-- map, and sizes and server statistics come from pg_monitor (given by provisioning).

-- migrate:up
CREATE FUNCTION luminar_stats_reports() RETURNS TABLE (status text, reports bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT status, count(*) FROM raw_incident_reports GROUP BY status ORDER BY status
$$;

CREATE FUNCTION luminar_stats_events() RETURNS TABLE (verification_status text, events bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT verification_status, count(*) FROM crime_events GROUP BY 1 ORDER BY 1
$$;

CREATE FUNCTION luminar_stats_throughput(p_from timestamptz, p_to timestamptz, p_bucket interval)
RETURNS TABLE (bucket timestamptz, settled bigint, received bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH marks AS (
        SELECT processed_at AS at, 1 AS settled, 0 AS received
          FROM raw_incident_reports
         WHERE processed_at >= p_from AND processed_at < p_to AND status IN ('processed', 'rejected')
        UNION ALL
        SELECT created_at, 0, 1
          FROM raw_incident_reports
         WHERE created_at >= p_from AND created_at < p_to
    )
    SELECT date_bin(p_bucket, at, p_from), sum(settled)::bigint, sum(received)::bigint
      FROM marks
     GROUP BY 1
     ORDER BY 1
$$;

CREATE FUNCTION luminar_stats_agreement(p_since timestamptz, p_tolerance double precision)
RETURNS TABLE (compared integer, agreeing integer, agreement_rate double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT compared, agreeing, agreement_rate FROM consensus_agreement(p_since, p_tolerance)
$$;

CREATE FUNCTION luminar_stats_coverage() RETURNS TABLE (region text, events bigint, verified bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT CASE
               WHEN latitude IS NULL THEN 'Unlocated'
               WHEN latitude BETWEEN -60 AND 13 AND longitude BETWEEN -92 AND -30 THEN 'South America'
               WHEN latitude BETWEEN 7 AND 84 AND longitude BETWEEN -170 AND -50 THEN 'North America'
               WHEN latitude BETWEEN 35 AND 72 AND longitude BETWEEN -25 AND 45 THEN 'Europe'
               WHEN latitude BETWEEN -36 AND 37.5 AND longitude BETWEEN -20 AND 52
                    AND NOT (latitude > 12 AND longitude > 35) THEN 'Africa'
               WHEN latitude BETWEEN -50 AND 0 AND longitude BETWEEN 110 AND 180 THEN 'Oceania'
               WHEN latitude BETWEEN -11 AND 82 AND longitude BETWEEN 25 AND 180 THEN 'Asia'
               ELSE 'Other'
           END AS region,
           count(*) AS events,
           count(*) FILTER (WHERE verification_status = 'verified') AS verified
      FROM crime_events
     GROUP BY region
     ORDER BY events DESC, region
$$;

CREATE FUNCTION luminar_stats_last_sync() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT max(finished_at) FROM sync_runs WHERE status = 'done'
$$;

REVOKE EXECUTE ON FUNCTION luminar_stats_reports(), luminar_stats_events(),
    luminar_stats_throughput(timestamptz, timestamptz, interval), luminar_stats_agreement(timestamptz, double precision),
    luminar_stats_coverage(), luminar_stats_last_sync() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luminar_stats_reports(), luminar_stats_events(),
    luminar_stats_throughput(timestamptz, timestamptz, interval), luminar_stats_agreement(timestamptz, double precision),
    luminar_stats_coverage(), luminar_stats_last_sync() TO luminar_monitor, luminar_analyst;
GRANT SELECT ON risk_zones TO luminar_monitor;

-- migrate:down
REVOKE SELECT ON risk_zones FROM luminar_monitor;
DROP FUNCTION IF EXISTS luminar_stats_last_sync();
DROP FUNCTION IF EXISTS luminar_stats_coverage();
DROP FUNCTION IF EXISTS luminar_stats_agreement(timestamptz, double precision);
DROP FUNCTION IF EXISTS luminar_stats_throughput(timestamptz, timestamptz, interval);
DROP FUNCTION IF EXISTS luminar_stats_events();
DROP FUNCTION IF EXISTS luminar_stats_reports();
