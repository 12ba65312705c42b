#!/usr/bin/env bash
# Runs govulncheck over the module. It needs the online Go vulnerability
# database; when that cannot be reached this script fails with one clear line
# instead of a wall of network errors. Set GOVULNDB to use a mirror or a
# local copy (file:///path) of the database.
#
# Exit codes: 0 no known vulnerabilities reached; 3 vulnerabilities found
# (govulncheck's own code); 2 the database or the tool could not be fetched;
# other non-zero: govulncheck failed for another reason (its output is shown).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go 2>/dev/null || echo /usr/local/go/bin/go)}

out=$(mktemp)
trap 'rm -f "$out"' EXIT

db_args=()
if [ -n "${GOVULNDB:-}" ]; then db_args=(-db "$GOVULNDB"); fi

"$GO" run golang.org/x/vuln/cmd/govulncheck@latest "${db_args[@]}" ./... >"$out" 2>&1
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ]; then
  cat "$out"
  exit "$rc"
fi

network='dial tcp|no such host|connection refused|i/o timeout|TLS handshake|network is unreachable|proxyconnect|Client.Timeout|context deadline exceeded|server misbehaving|temporary failure in name resolution'
if grep -Eqi 'fetching vulnerabilities|vulnerability database|vulndb|index/db|/ID/' "$out" && grep -Eqi "$network" "$out"; then
  echo "vulncheck: the Go vulnerability database cannot be reached from this machine, so no vulnerability check was done (set GOVULNDB to a reachable mirror or file:// copy)" >&2
  exit 2
fi
if grep -Eqi 'golang.org/x/vuln' "$out" && grep -Eqi "$network|module lookup disabled|cannot find module|GOPROXY|GOFLAGS=-mod" "$out"; then
  echo "vulncheck: govulncheck itself could not be downloaded (Go module proxy unreachable), so no vulnerability check was done" >&2
  exit 2
fi
cat "$out" >&2
echo "vulncheck: govulncheck failed (exit $rc); see its output above" >&2
exit "$rc"
