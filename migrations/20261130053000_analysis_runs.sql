-- Migration: analysis_runs
-- Created:   2026-11-30 05:30:00 (UTC)
--
-- What `luminar-db analyze` keeps: the significant Gi* cells of its last run, and a record of every run.
--
-- gistar_cells: the cells of luminar_gistar(days, cell_m) whose confidence is 90 or more, as the last analyze for
-- those parameters computed them (computed_at). luminar_store_gistar(days, cell_m) replaces them in one statement
-- (the owner's) and returns how many it stored. Gi* is a statistic of the whole window's grid (the mean and
-- variance of every cell), hundreds of thousands of cells for a network of cities: seconds, not a read's
-- milliseconds. luminar_significant_hotspots(days, cell_m) is what readers call: the stored cells when the last
-- analyze for these parameters finished less than luminar_analysis_fresh_for() (1 hour) ago, else luminar_gistar
-- computed now (its significant cells). Every row says when it was computed.
--
-- analysis_runs: one row per analyze run (started, finished, the parameters and the figures of each step as JSON),
-- written by the command at the end of a run; a run that failed leaves its row with finished_at NULL and the error.
-- The last successful run is what monitoring reports.
--
-- Rights: readers of the analysis (miners, validators, the analyst) read gistar_cells and analysis_runs and call
-- luminar_significant_hotspots; the monitor reads analysis_runs; only the owner writes.

-- migrate:up
CREATE FUNCTION luminar_analysis_fresh_for() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '1 hour' $$;

CREATE TABLE gistar_cells (
    days         integer          NOT NULL,
    cell_m       double precision NOT NULL,
    cell_row     integer          NOT NULL,
    cell_col     integer          NOT NULL,
    latitude     double precision NOT NULL,
    longitude    double precision NOT NULL,
    incidents    integer          NOT NULL,
    neighbours   integer          NOT NULL,
    z            double precision,
    p            double precision,
    q            double precision,
    confidence   smallint         NOT NULL,
    gi_bin       smallint         NOT NULL,
    class        text             NOT NULL,
    computed_at  timestamptz      NOT NULL,
    PRIMARY KEY (days, cell_m, cell_row, cell_col)
);

CREATE TABLE analysis_runs (
    run_id       uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    parameters   jsonb       NOT NULL DEFAULT '{}',
    figures      jsonb       NOT NULL DEFAULT '{}',
    error        text,
    CONSTRAINT analysis_runs_order CHECK (finished_at IS NULL OR finished_at >= started_at),
    CONSTRAINT analysis_runs_parameters_object CHECK (jsonb_typeof(parameters) = 'object'),
    CONSTRAINT analysis_runs_figures_object CHECK (jsonb_typeof(figures) = 'object')
);
CREATE INDEX idx_analysis_runs_started ON analysis_runs (started_at DESC);

CREATE FUNCTION luminar_store_gistar(p_days integer, p_cell_m double precision) RETURNS bigint
LANGUAGE plpgsql SET search_path = public, pg_temp AS $$
DECLARE
    v_stored bigint;
BEGIN
    DELETE FROM gistar_cells WHERE days = p_days AND cell_m = p_cell_m;
    INSERT INTO gistar_cells (days, cell_m, cell_row, cell_col, latitude, longitude, incidents, neighbours, z, p, q,
                              confidence, gi_bin, class, computed_at)
    SELECT p_days, p_cell_m, g.cell_row, g.cell_col, g.latitude, g.longitude, g.incidents, g.neighbours, g.z, g.p,
           g.q, g.confidence, g.gi_bin, g.class, now()
      FROM luminar_gistar(p_days, p_cell_m) AS g
     WHERE g.confidence > 0;
    GET DIAGNOSTICS v_stored = ROW_COUNT;
    RETURN v_stored;
END
$$;

CREATE FUNCTION luminar_significant_hotspots(p_days integer, p_cell_m double precision)
RETURNS TABLE (
    cell_row     integer,
    cell_col     integer,
    latitude     double precision,
    longitude    double precision,
    incidents    integer,
    neighbours   integer,
    z            double precision,
    p            double precision,
    q            double precision,
    confidence   smallint,
    gi_bin       smallint,
    class        text,
    computed_at  timestamptz
)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM analysis_runs AS r
                WHERE r.finished_at >= now() - luminar_analysis_fresh_for() AND r.error IS NULL
                  AND (r.parameters ->> 'days')::integer = p_days
                  AND (r.parameters ->> 'cell_m')::double precision = p_cell_m) THEN
        RETURN QUERY
            SELECT c.cell_row, c.cell_col, c.latitude, c.longitude, c.incidents, c.neighbours, c.z, c.p, c.q,
                   c.confidence, c.gi_bin, c.class, c.computed_at
              FROM gistar_cells AS c
             WHERE c.days = p_days AND c.cell_m = p_cell_m;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT g.cell_row, g.cell_col, g.latitude, g.longitude, g.incidents, g.neighbours, g.z, g.p, g.q,
               g.confidence, g.gi_bin, g.class, now()
          FROM luminar_gistar(p_days, p_cell_m) AS g
         WHERE g.confidence > 0;
END
$$;

REVOKE ALL ON gistar_cells, analysis_runs FROM PUBLIC;
GRANT SELECT ON gistar_cells, analysis_runs TO luminar_miner, luminar_validator, luminar_analyst;
GRANT SELECT ON analysis_runs TO luminar_monitor;
REVOKE EXECUTE ON FUNCTION luminar_store_gistar(integer, double precision),
    luminar_significant_hotspots(integer, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION luminar_significant_hotspots(integer, double precision)
    TO luminar_miner, luminar_validator, luminar_analyst;

-- migrate:down
DROP FUNCTION IF EXISTS luminar_significant_hotspots(integer, double precision);
DROP FUNCTION IF EXISTS luminar_store_gistar(integer, double precision);
DROP TABLE IF EXISTS analysis_runs;
DROP TABLE IF EXISTS gistar_cells;
DROP FUNCTION IF EXISTS luminar_analysis_fresh_for();
