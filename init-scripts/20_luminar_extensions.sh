#!/bin/sh
# Runs once, when a luminar database container creates its cluster, after the image's own 10_postgis.sh (the file
# is mounted alone as /docker-entrypoint-initdb.d/20_luminar_extensions.sh, so that script stays visible).
# Makes sure PostGIS exists in POSTGRES_DB (the migrations also ask for it) and keeps the database in UTC, as the
# embedded cluster of `make db-start` does.
set -eu
psql -v ON_ERROR_STOP=1 -v dbname="$POSTGRES_DB" --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE EXTENSION IF NOT EXISTS postgis;
ALTER DATABASE :"dbname" SET timezone TO 'UTC';
SQL
