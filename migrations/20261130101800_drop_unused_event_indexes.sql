-- Migration: drop_unused_event_indexes
-- Created:   2026-11-30 10:18:00 (UTC)
--
-- Two indexes of crime_events nothing reads any more.
--
-- idx_events_verified_time (verified events by time, covering their cells, position, severity and type) and
-- idx_events_verified_cell_type (verified events by cell, type and time) served the hotspot listing when it grouped
-- verified events on 0.01-degree cells. The listing reads crime_incidents and incident_cell_days now
-- (20261130045000, 20261130073000, 20261130101500), and no other query filters verified events by time or cell:
-- the incidents are found through idx_events_incident, a miner's verified events through idx_events_miner_time.
--
-- Every insert, and every update that is not HOT (an analysis run setting cluster_id: the first run over 1M
-- events sets 220,000-274,000 of them), wrote both: 51 MB of index at 1M events. The specification's three indexes
-- (idx_events_geotag, idx_events_timestamp, idx_events_metadata) stay.

-- migrate:up
DROP INDEX idx_events_verified_cell_type;
DROP INDEX idx_events_verified_time;

-- migrate:down
CREATE INDEX idx_events_verified_time ON crime_events ("timestamp")
    INCLUDE (cell_row, cell_col, severity_level, latitude, longitude, event_type)
    WHERE verification_status = 'verified';
CREATE INDEX idx_events_verified_cell_type ON crime_events (cell_row, cell_col, event_type, "timestamp")
    WHERE verification_status = 'verified';
