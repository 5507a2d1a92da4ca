-- Migration: publication
-- Created:   2026-11-30 03:15:00 (UTC)
--
-- Real-time copies (luminar_store.ops.realtime): the central database publishes every change of the tables a local
-- copy holds, through PostgreSQL's logical replication. A publication is only a list of tables: it costs nothing
-- until a subscription reads it (and a server with wal_level below logical just has no subscriber: PostgreSQL warns,
-- nothing fails). The audit trail, node identities and the schema's own tables stay central.

-- migrate:up
CREATE PUBLICATION luminar_changes FOR TABLE raw_incident_reports, crime_events, consensus_records, miner_performance,
    validator_performance, crime_clusters, risk_zones;

-- migrate:down
DROP PUBLICATION IF EXISTS luminar_changes;
