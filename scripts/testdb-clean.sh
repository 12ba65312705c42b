#!/usr/bin/env bash
# Drops every database the tests and benchmarks created (templates included),
# with their replication slots first: PostgreSQL refuses to drop a database
# that still has a slot, and a slot left behind holds WAL and one of the
# server's max_replication_slots. Run it only when no test suite is running.
set -euo pipefail
PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "$1"; }
match="datname LIKE 'trackops_t%' OR datname LIKE 'trackops_bench%'"
q "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
   WHERE active_pid IS NOT NULL AND database IN (SELECT datname FROM pg_database WHERE $match)" >/dev/null
for _ in $(seq 1 50); do
  left=$(q "SELECT count(*) FROM pg_replication_slots WHERE active AND database IN (SELECT datname FROM pg_database WHERE $match)")
  [ "$left" = 0 ] && break
  sleep 0.2
done
q "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
   WHERE NOT active AND database IN (SELECT datname FROM pg_database WHERE $match)" >/dev/null
q "SELECT datname FROM pg_database WHERE $match" | while read -r db; do
  # A database can go between the listing and here (its test ended).
  q "ALTER DATABASE \"$db\" WITH is_template false" 2>/dev/null || true
  q "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
done
echo "testdb-clean: $(q "SELECT count(*) FROM pg_replication_slots") replication slots left on the server" >&2
