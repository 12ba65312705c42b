#!/usr/bin/env bash
# Makes sure PostgreSQL (with wal_level=logical) and Redis are installed and
# running on this machine, and that the tools the tests start privately
# (redis-server, redis-cli, pgbouncer) are installed. Uses running servers as
# they are; installs from the distribution's packages only what is missing.
# Idempotent.
set -euo pipefail

PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
export PGHOST PGPORT PGUSER

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

log() { echo "ensure-services: $*" >&2; }

apt_install() {
  log "installing $*"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

pg_ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }

pg_cluster_cmd() {
  # pg_ctlcluster is Debian's wrapper; the version is the only directory under /etc/postgresql.
  local action=$1 ver
  ver=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$ver" ] && command -v pg_ctlcluster >/dev/null 2>&1; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main "$action"
  else
    $SUDO service postgresql "$action"
  fi
}

# --- PostgreSQL -------------------------------------------------------------
if ! command -v psql >/dev/null 2>&1 || ! ls /etc/postgresql >/dev/null 2>&1; then
  if ! pg_ready; then apt_install postgresql postgresql-client; fi
fi
if ! pg_ready; then
  log "starting PostgreSQL"
  pg_cluster_cmd start || true
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
pg_ready || { log "PostgreSQL is not reachable on $PGHOST:$PGPORT"; exit 1; }

psql_admin() {
  # Trust auth over TCP is the common local set-up; fall back to the socket as the postgres OS user.
  psql -X -q -v ON_ERROR_STOP=1 -At "$@" 2>/dev/null || $SUDO -u postgres psql -X -q -v ON_ERROR_STOP=1 -At "$@"
}

# Settings the platform and its parallel test suites need; one restart applies them all.
# wal_level=logical for CDC; room for many per-test pools and replication slots;
# commit timestamps for `trackops bench saga`'s split of each hop (its transaction, its delivery).
restart_needed=""
want_setting() { # name minimum-or-value numeric?
  local name=$1 want=$2 numeric=${3:-}
  local have
  have=$(psql_admin -d postgres -c "SHOW $name")
  if [ -n "$numeric" ]; then
    [ "$have" -ge "$want" ] && return 0
  else
    [ "$have" = "$want" ] && return 0
  fi
  log "$name is $have; setting $name=$want (PostgreSQL restarts once)"
  psql_admin -d postgres -c "ALTER SYSTEM SET $name = '$want'"
  restart_needed=1
}
want_setting wal_level logical
want_setting max_connections 500 numeric
want_setting max_replication_slots 64 numeric
want_setting max_wal_senders 64 numeric
want_setting track_commit_timestamp on
if [ -n "$restart_needed" ]; then
  pg_cluster_cmd restart
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
  wal=$(psql_admin -d postgres -c "SHOW wal_level")
  [ "$wal" = "logical" ] || { log "could not set wal_level=logical (still $wal)"; exit 1; }
fi

# --- Redis ------------------------------------------------------------------
redis_ready() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_ready; then
  if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
  log "starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/trackops.log
  for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
fi
redis_ready || { log "Redis is not reachable on 127.0.0.1:6379"; exit 1; }

# --- Tools the tests run privately ---------------------------------------------
# Fault and cluster tests start their own redis-server processes (a six-node
# Redis Cluster joined with redis-cli) and a PgBouncer, on free loopback ports.
have_pgbouncer() { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; }
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
have_pgbouncer || need+=(pgbouncer)
if [ ${#need[@]} -gt 0 ]; then
  # A package's own service may fail to start next to a running server;
  # what matters is the binaries, checked below.
  apt_install "${need[@]}" || log "apt-get reported an error installing ${need[*]}"
  if [[ " ${need[*]} " == *" pgbouncer "* ]] && command -v systemctl >/dev/null 2>&1; then
    # The package starts a system-wide pgbouncer on port 6432; tests start their own.
    $SUDO systemctl disable --now pgbouncer >/dev/null 2>&1 || true
  fi
fi
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { log "$tool is missing and could not be installed"; exit 1; }
done
have_pgbouncer || { log "pgbouncer is missing and could not be installed"; exit 1; }

# --- Chromium (the console's browser tests drive it headless) -----------------
# Debian calls the package chromium; Ubuntu ships chromium-browser.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_install chromium || apt_install chromium-browser
fi
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { log "Chromium is not installed"; exit 1; }
log "PostgreSQL (wal_level=logical), Redis, redis-cli, pgbouncer and Chromium are ready"
