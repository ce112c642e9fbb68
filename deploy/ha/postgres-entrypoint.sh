#!/bin/sh
# The PostgreSQL container's main process: on the first start (an empty data volume) make
# the cluster, the role "registry" (password $REGISTRY_DB_PASSWORD) and its database
# "registry"; then run the server, reachable on port 5432 with a password.
set -eu
bin=/usr/lib/postgresql/15/bin
data=/var/lib/postgresql/data
: "${REGISTRY_DB_PASSWORD:?set REGISTRY_DB_PASSWORD (the registry role's password)}"
if [ ! -s "$data/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-$REGISTRY_DB_PASSWORD}" >"$pwfile"
  "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256
  rm -f "$pwfile"
  printf "listen_addresses = '*'\nunix_socket_directories = '/tmp'\n" >>"$data/postgresql.conf"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
    >>"$data/pg_hba.conf"
  "$bin/pg_ctl" -D "$data" -o "-c listen_addresses=''" -w start
  PGPASSWORD=${POSTGRES_PASSWORD:-$REGISTRY_DB_PASSWORD} "$bin/psql" -h /tmp -U postgres \
    -d postgres -v ON_ERROR_STOP=1 -v pw="$REGISTRY_DB_PASSWORD" <<'SQL'
CREATE ROLE registry LOGIN PASSWORD :'pw';
CREATE DATABASE registry OWNER registry;
SQL
  "$bin/pg_ctl" -D "$data" -m fast -w stop
fi
exec "$bin/postgres" -D "$data"
