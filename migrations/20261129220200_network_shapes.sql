-- Migration: network_shapes
-- Created:   2026-11-29 22:02:00 (UTC)
--
-- What the network's nodes send, stored as sent:
-- - reports whose media URLs come without hashes (an empty media_hashes list beside one or more URLs); a non-empty
--   hash list still pairs one hash with each URL;
-- - events without a severity (the report flow's events carry none): severity_level NULL, which the severity
--   averages (hotspots, clusters) leave out, as SQL's avg() does.

-- migrate:up
ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_reports_media_hashes_match;
ALTER TABLE raw_incident_reports ADD CONSTRAINT raw_reports_media_hashes_match
    CHECK (cardinality(media_hashes) IN (0, cardinality(media_urls)));
ALTER TABLE crime_events ALTER COLUMN severity_level DROP NOT NULL;

-- migrate:down
-- The old rules cannot hold such rows: the down step fails (naming the constraint or column) while any exists.
ALTER TABLE crime_events ALTER COLUMN severity_level SET NOT NULL;
ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_reports_media_hashes_match;
ALTER TABLE raw_incident_reports ADD CONSTRAINT raw_reports_media_hashes_match
    CHECK (cardinality(media_hashes) = cardinality(media_urls));
