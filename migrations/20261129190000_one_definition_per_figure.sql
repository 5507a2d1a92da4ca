-- Migration: one_definition_per_figure
-- Created:   2026-11-29 19:00:00 (UTC)
--
-- The network's figures, each defined once, here, and used by every caller (the repositories, the statistics
-- command and the synthetic loader):
--
-- - running_mean_score(mean, n, added_sum, added_n): the mean of n scores after adding added_n more whose sum is
--   added_sum, kept in [0, 1] (binary rounding could step a hair outside the columns' CHECK). With no score at all
--   (n + added_n = 0) the mean stays as it was. Used for miner_performance.avg_overall_score (one round at a time
--   by the repository, many rounds at once by the synthetic loader) and validator_performance.avg_score_given.
--
-- - score_agrees(score, mean, tolerance): a validator's final score agrees with the others when it lies within
--   tolerance of their mean; 1e-9 absorbs binary rounding (abs(0.7 - 0.6) is 0.09999999999999998, abs(0.6 - 0.5)
--   a hair above 0.1). The tolerance itself is luminar_store.limits.AGREEMENT_TOLERANCE (0.1), passed by the caller.
--
-- - consensus_agreement(since, tolerance): the network's consensus accuracy ("validator agreement %") over the
--   consensus records created since `since`. The records of one event and round are compared with their mean final
--   score (over the window's records); only rounds judged by at least two validators are compared (a lone score
--   would agree with itself). agreement_rate = 100 * agreeing / compared, 2 decimals, NULL when nothing was
--   compared. records / events / validators count every record of the window.
--
-- - percent_of(part, whole): 100 * part / whole rounded to 2 decimals, 0 when whole is 0: a miner's success_rate
--   (successful_rounds of total_rounds) and a validator's agreement_rate (agreements of total_validations), in the
--   repositories and in the active_miners view (redefined here through it; same columns, same types).
--
-- Hotspots keep their definition in crime_hotspots_since(days, cell_degrees); their order (biggest first, then the
-- most recent, then by position) is written once, in luminar_store.repositories.crime_events (HOTSPOT queries),
-- which the statistics command runs as well.

-- migrate:up
CREATE FUNCTION running_mean_score(p_mean double precision, p_n bigint, p_added_sum double precision,
                                   p_added_n bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_n + p_added_n <= 0 THEN p_mean
                ELSE least(1.0, greatest(0.0, (p_mean * p_n + p_added_sum) / (p_n + p_added_n))) END
$$;

CREATE FUNCTION score_agrees(p_score double precision, p_mean double precision, p_tolerance double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT abs(p_score - p_mean) <= p_tolerance + 1e-9
$$;

CREATE FUNCTION consensus_agreement(p_since timestamptz, p_tolerance double precision)
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

CREATE FUNCTION percent_of(p_part bigint, p_whole bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_whole <= 0 THEN 0 ELSE round(100.0 * p_part / p_whole, 2)::double precision END
$$;

-- success_rate is in percent: the share of scoring rounds whose overall score reached 0.5.
CREATE OR REPLACE VIEW active_miners AS
    SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
           avg_overall_score, total_rounds, successful_rounds,
           percent_of(successful_rounds, total_rounds)::numeric AS success_rate,
           registered_at, last_active_at
      FROM miner_performance
     WHERE is_active;

-- migrate:down
CREATE OR REPLACE VIEW active_miners AS
    SELECT miner_uid, hotkey, integrity_score, clustering_score, novelty_score, quality_score, overall_score,
           avg_overall_score, total_rounds, successful_rounds,
           CASE WHEN total_rounds = 0 THEN 0::numeric
                ELSE round(100.0 * successful_rounds / total_rounds, 2) END AS success_rate,
           registered_at, last_active_at
      FROM miner_performance
     WHERE is_active;
DROP FUNCTION IF EXISTS percent_of(bigint, bigint);
DROP FUNCTION IF EXISTS consensus_agreement(timestamptz, double precision);
DROP FUNCTION IF EXISTS score_agrees(double precision, double precision, double precision);
DROP FUNCTION IF EXISTS running_mean_score(double precision, bigint, double precision, bigint);
