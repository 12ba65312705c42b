#!/usr/bin/env bash
# Runs every Go native fuzz target of the module, one after another, each for
# FUZZTIME (default 30s), and prints a Markdown table of executions and
# findings per target. A finding (a panic, a 5xx, a broken property) fails the
# run; its input is kept under the package's testdata/fuzz/ and replays as a
# regular test case from then on.
#   FUZZTIME=10s ./scripts/fuzz.sh            # every target
#   FUZZ=Edge ./scripts/fuzz.sh               # targets whose name matches
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
PARALLEL=${FUZZ_PARALLEL:-}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

targets=()
while read -r pkg; do
  while read -r name; do
    [[ $name == Fuzz* ]] && [[ $name =~ $FUZZ ]] && targets+=("$pkg $name")
  done < <("$GO" test -list '^Fuzz' "$pkg" 2>/dev/null)
done < <("$GO" list ./...)

echo "fuzzing ${#targets[@]} targets for $FUZZTIME each (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
total=0
failed=0
rows=()
for t in "${targets[@]}"; do
  pkg=${t% *}
  name=${t#* }
  out="$log/$name.log"
  start=$(date +%s)
  args=(-run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME")
  [[ -n $PARALLEL ]] && args+=(-parallel "$PARALLEL")
  "$GO" test "${args[@]}" "$pkg" >"$out" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'execs: [0-9]*' "$out" | tail -1 | grep -o '[0-9]*')
  execs=${execs:-0}
  total=$(( total + execs ))
  result="none"
  if [[ $rc -ne 0 ]]; then
    failed=$(( failed + 1 ))
    result="FAILED: $(grep -m1 -E 'panic|--- FAIL|Failing input|\.go:[0-9]+:' "$out" | head -c 160)"
    echo "---- $name ($pkg) failed:"; tail -30 "$out"
  fi
  rows+=("| \`${pkg#github.com/trackops/trackops/}\` | \`$name\` | $execs | ${secs}s | $result |")
  echo "$name: $execs execs in ${secs}s, findings: $result"
done

echo
echo "| package | target | executions | time | findings |"
echo "|---|---|---:|---:|---|"
printf '%s\n' "${rows[@]}"
echo "| | **total** | **$total** | | **$failed failed** |"
[[ $failed -eq 0 ]]
