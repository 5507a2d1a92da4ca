-- Migration: claim_leases
-- Created:   2026-11-29 23:00:00 (UTC)
--
-- A claim is a lease: a report stays 'processing' for its miner only while its claimed_at is younger than the lease
-- (LUMINAR_CLAIM_LEASE_MINUTES); the next claim returns older claims to 'pending' first. For that:
-- - idx_reports_processing_claimed_at: the claims in lease order, so that the look for expired claims every claim
--   makes reads only the expired entries of the few 'processing' rows, never the whole table;
-- - every 'processing' report carries its claim time: a row that becomes 'processing' without one (written by SQL
--   outside the data layer, e.g. the reference's UPDATE ... SET status = 'processing') is stamped now() by
--   raw_incident_reports_claim_time, and the 'processing' rows already without one are stamped now (they expire
--   one lease after this migration instead of never).

-- migrate:up
CREATE INDEX idx_reports_processing_claimed_at ON raw_incident_reports (claimed_at) WHERE status = 'processing';

CREATE FUNCTION luminar_stamp_claim_time() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.claimed_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER raw_incident_reports_claim_time BEFORE INSERT OR UPDATE ON raw_incident_reports
    FOR EACH ROW WHEN (NEW.status = 'processing' AND NEW.claimed_at IS NULL)
    EXECUTE FUNCTION luminar_stamp_claim_time();

UPDATE raw_incident_reports SET claimed_at = now() WHERE status = 'processing' AND claimed_at IS NULL;

-- migrate:down
-- The claim times the up step stamped stay: none is earlier than the claim it stands for.
DROP TRIGGER IF EXISTS raw_incident_reports_claim_time ON raw_incident_reports;
DROP FUNCTION IF EXISTS luminar_stamp_claim_time();
DROP INDEX IF EXISTS idx_reports_processing_claimed_at;
