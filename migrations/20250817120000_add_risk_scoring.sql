-- migrate:up
-- 20250817120000_add_risk_scoring.sql
BEGIN;

ALTER TABLE crime_events 
ADD COLUMN risk_score DECIMAL(3,2) CHECK (risk_score >= 0 AND risk_score <= 1);

CREATE INDEX idx_events_risk_score ON crime_events(risk_score);

COMMIT;

-- migrate:down
BEGIN;

DROP INDEX IF EXISTS idx_events_risk_score;
ALTER TABLE crime_events DROP COLUMN IF EXISTS risk_score;

COMMIT;
