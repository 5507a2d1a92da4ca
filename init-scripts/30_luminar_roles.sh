#!/bin/sh
# Runs once, when a luminar database container creates its cluster, after 20_luminar_extensions.sh, as the image's
# superuser (POSTGRES_USER=luminar_admin), which only provisions. It makes what `luminar-db db start` makes for the
# embedded cluster (luminar_store.ops.provision.provision_local), so a bare `docker compose up` is split too:
# - the group roles (luminar_ingest, _miner, _validator, _reader, _analyst, _sync, _monitor; NOLOGIN);
# - the owner (LUMINAR_DB_OWNER, default luminar_owner), which owns POSTGRES_DB and runs the migrations;
# - the nodes' login (LUMINAR_DB_USER), a member of the ingest, miner and validator groups (when it is not the owner);
# - Grafana's login luminar_grafana (reader and monitor groups), when LUMINAR_GRAFANA_DB_PASSWORD is given;
# - the metrics' login luminar_metrics (monitor group: `luminar-db metrics --url` and postgres_exporter of the
#   monitoring profile), when LUMINAR_METRICS_DB_PASSWORD is given;
# - pg_stat_statements in POSTGRES_DB (the server preloads it), for postgres_exporter's slow-query figures.
# Passwords reach the server as psql variables quoted by psql (:'name'), never spliced into the script's text.
set -eu
owner="${LUMINAR_DB_OWNER:-$LUMINAR_DB_USER}"
owner_password="${LUMINAR_DB_OWNER_PASSWORD:-$LUMINAR_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v db="$POSTGRES_DB" -v owner="$owner" -v owner_password="$owner_password" \
     -v node="$LUMINAR_DB_USER" -v node_password="$LUMINAR_DB_PASSWORD" \
     -v grafana_password="${LUMINAR_GRAFANA_DB_PASSWORD:-}" -v metrics_password="${LUMINAR_METRICS_DB_PASSWORD:-}" \
     <<'SQL'
SELECT format('CREATE ROLE %I NOLOGIN', name)
  FROM unnest(ARRAY['luminar_ingest', 'luminar_miner', 'luminar_validator', 'luminar_reader', 'luminar_analyst',
                    'luminar_sync', 'luminar_monitor']) AS name
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name)
\gexec
GRANT pg_monitor TO luminar_monitor;
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'owner', :'owner_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner')
\gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'node', :'node_password')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'node')
\gexec
SELECT format('GRANT luminar_ingest, luminar_miner, luminar_validator TO %I', :'node') WHERE :'node' <> :'owner'
\gexec
ALTER DATABASE :"db" OWNER TO :"owner";
SELECT format('CREATE ROLE luminar_grafana LOGIN PASSWORD %L IN ROLE luminar_reader, luminar_monitor',
              :'grafana_password')
 WHERE :'grafana_password' <> '' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'luminar_grafana')
\gexec
SELECT format('CREATE ROLE luminar_metrics LOGIN PASSWORD %L IN ROLE luminar_monitor', :'metrics_password')
 WHERE :'metrics_password' <> '' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'luminar_metrics')
\gexec
SELECT 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
 WHERE current_setting('shared_preload_libraries') ~ 'pg_stat_statements'
\gexec
SQL
