-- Migration: score_columns_whole_double_range
-- Created:   2026-11-29 23:03:00 (UTC)
--
-- consensus_records' generated score columns (integrity_score, clustering_score, novelty_score, quality_score) hold
-- the number under their key of `scores` through json_number_or_null(jsonb). It read numbers whose magnitude lies
-- below 1e-300 as NULL, though a double holds them (down to the smallest subnormal, 4.9406564584124654e-324): a
-- score of 2.2e-308 was kept in `scores` while its column said NULL. The bounds become double precision's own: every
-- number a double can hold converts, zero included; beyond them (1e-330, 1.8e308) it stays NULL (the cast would fail).
-- Rows whose column disagrees with their score are rewritten in place (an UPDATE recomputes generated columns).

-- migrate:up
CREATE OR REPLACE FUNCTION json_number_or_null(p_value jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number' THEN
               CASE WHEN p_value::numeric = 0
                      OR abs(p_value::numeric) BETWEEN 4.9406564584124654e-324 AND 1.7976931348623157e308
                    THEN p_value::double precision END
           END
$$;

UPDATE consensus_records
   SET scores = scores
 WHERE integrity_score IS DISTINCT FROM json_number_or_null(scores -> 'integrity')
    OR clustering_score IS DISTINCT FROM json_number_or_null(scores -> 'clustering')
    OR novelty_score IS DISTINCT FROM json_number_or_null(scores -> 'novelty')
    OR quality_score IS DISTINCT FROM json_number_or_null(scores -> 'quality');

-- migrate:down
CREATE OR REPLACE FUNCTION json_number_or_null(p_value jsonb)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(p_value) = 'number' THEN
               CASE WHEN p_value::numeric = 0 OR abs(p_value::numeric) BETWEEN 1e-300 AND 1e300
                    THEN p_value::double precision END
           END
$$;

UPDATE consensus_records
   SET scores = scores
 WHERE integrity_score IS DISTINCT FROM json_number_or_null(scores -> 'integrity')
    OR clustering_score IS DISTINCT FROM json_number_or_null(scores -> 'clustering')
    OR novelty_score IS DISTINCT FROM json_number_or_null(scores -> 'novelty')
    OR quality_score IS DISTINCT FROM json_number_or_null(scores -> 'quality');
