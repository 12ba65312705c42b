#!/usr/bin/env bash
# Installs what the test suite needs besides PostgreSQL and Redis: Node.js
# and npm (from the distribution's packages, when missing) and the KafkaJS
# client of the interop test (internal/e2e/testdata/kafkajs, pinned by its
# package-lock.json). Idempotent; `make test` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
log() { echo "ensure-test-tools: $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing nodejs and npm"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

interop=internal/e2e/testdata/kafkajs
# npm ci only when the installed tree is missing or older than the lock file.
if [ ! -f "$interop/node_modules/.package-lock.json" ] || [ "$interop/package-lock.json" -nt "$interop/node_modules/.package-lock.json" ]; then
  log "installing the KafkaJS interop client (npm ci)"
  (cd "$interop" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
log "node $(node --version), KafkaJS $(node -p "require('./$interop/node_modules/kafkajs/package.json').version") ready"
