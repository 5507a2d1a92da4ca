-- Migration: media_without_hashes
-- Created:   2026-11-30 10:02:00 (UTC)
--
-- The network's validators send reports whose media URLs come without hashes (an empty media_hashes list beside
-- one or more URLs): such a report is stored as sent. A non-empty hash list still pairs one hash with each URL.

-- migrate:up
ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_reports_media_hashes_match;
ALTER TABLE raw_incident_reports ADD CONSTRAINT raw_reports_media_hashes_match
    CHECK (cardinality(media_hashes) IN (0, cardinality(media_urls)));

-- migrate:down
-- Reports stored without hashes cannot keep their URLs under the old rule: the down step refuses while any exists.
ALTER TABLE raw_incident_reports DROP CONSTRAINT raw_reports_media_hashes_match;
ALTER TABLE raw_incident_reports ADD CONSTRAINT raw_reports_media_hashes_match
    CHECK (cardinality(media_hashes) = cardinality(media_urls));
