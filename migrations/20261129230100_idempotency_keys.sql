-- Migration: idempotency_keys
-- Created:   2026-11-29 23:01:00 (UTC)
--
-- Every write is safe to retry: a write whose acknowledgement was lost (the connection dropped after the commit) and
-- that is sent again must not store a second copy.
--
-- crime_events.idempotency_key (uuid, nullable): the key a writer's event is known by, computed by the store from
--   the event (luminar_store.repositories.crime_events.idempotency_key): the writer's own key when it gives one
--   (idempotency_key, or its event_id), else the event's natural key (miner, type, time, place, source reports,
--   title and summary ...). A unique index holds one event per key: storing the same event again returns the first
--   event_id, a retried bulk batch adds nothing. Rows stored before this migration keep NULL (no key: never matched).
--
-- miner_performance.recent_round_keys (text[], the last 32 round keys of the uid, newest last): a scoring round
--   is counted once per round key; record_round leaves the record unchanged for a key already in the list. A
--   re-registered uid (new hotkey) starts the list afresh. Bounded so the row stays small: a round sent again after
--   32 newer rounds of the same uid would count again (no node retries that late).

-- migrate:up
ALTER TABLE crime_events ADD COLUMN idempotency_key uuid;
CREATE UNIQUE INDEX idx_events_idempotency_key ON crime_events (idempotency_key);

ALTER TABLE miner_performance ADD COLUMN recent_round_keys text[] NOT NULL DEFAULT '{}';
ALTER TABLE miner_performance ADD CONSTRAINT miner_recent_round_keys_bounded
    CHECK (cardinality(recent_round_keys) <= 32);

-- migrate:down
ALTER TABLE miner_performance DROP CONSTRAINT miner_recent_round_keys_bounded;
ALTER TABLE miner_performance DROP COLUMN recent_round_keys;
DROP INDEX idx_events_idempotency_key;
ALTER TABLE crime_events DROP COLUMN idempotency_key;
