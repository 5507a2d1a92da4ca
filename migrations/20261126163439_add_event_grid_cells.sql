-- Migration: add_event_grid_cells
-- Created:   2026-11-26 16:34:39 (UTC)
--
-- The up section runs in one transaction together with its schema_migrations record (no BEGIN/COMMIT needed).
-- For statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY), add a first line reading
-- "-- migrate:no-transaction". The down section undoes the up section; `luminar-db migrate rollback` runs it.
--
-- A 0.01-degree grid on crime_events, for the radius search and the hotspots:
--   cell_row = floor(latitude / 0.01), cell_col = floor(longitude / 0.01), generated and stored (writers never send
--   them; COPY and INSERT list their columns, so nothing changes for them). The expressions are exactly those of
--   crime_hotspots_since(days, 0.01), so a cell here is a hotspot cell there.
-- - idx_events_cell_time (cell_row, cell_col, "timestamp" DESC): the newest events of one cell without reading the
--   cell's older ones. A radius search reads the newest matches of each cell covering its circle and merges them;
--   the GiST index on geotag knows nothing of time and returns every event of the box, of all days.
-- - idx_events_verified_time (the hotspot aggregation's covering index) also holds the cells, so verified events
--   of a window group by two integers read from the index alone (latitude/longitude stay for other cell sizes).
-- - idx_events_verified_cell_type (cell_row, cell_col, event_type, "timestamp"), verified only: the distinct crime
--   types of one cell in a window by skipping from type to type, for the few cells a hotspot query returns.
-- Adding the stored columns rewrites the table once (ACCESS EXCLUSIVE while it runs).

-- migrate:up
ALTER TABLE crime_events
    ADD COLUMN cell_row integer GENERATED ALWAYS AS (floor(latitude / 0.01::double precision)::integer) STORED,
    ADD COLUMN cell_col integer GENERATED ALWAYS AS (floor(longitude / 0.01::double precision)::integer) STORED;

CREATE INDEX idx_events_cell_time ON crime_events (cell_row, cell_col, "timestamp" DESC);

DROP INDEX idx_events_verified_time;
CREATE INDEX idx_events_verified_time ON crime_events ("timestamp")
    INCLUDE (cell_row, cell_col, severity, latitude, longitude, event_type) WHERE verification_status = 'verified';

CREATE INDEX idx_events_verified_cell_type ON crime_events (cell_row, cell_col, event_type, "timestamp")
    WHERE verification_status = 'verified';

-- migrate:down
DROP INDEX IF EXISTS idx_events_verified_cell_type;
DROP INDEX IF EXISTS idx_events_cell_time;
DROP INDEX IF EXISTS idx_events_verified_time;
ALTER TABLE crime_events DROP COLUMN IF EXISTS cell_col, DROP COLUMN IF EXISTS cell_row;
CREATE INDEX idx_events_verified_time ON crime_events ("timestamp")
    INCLUDE (latitude, longitude, severity, event_type) WHERE verification_status = 'verified';
