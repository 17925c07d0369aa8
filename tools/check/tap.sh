#!/bin/sh
# Run a command that prints TAP; succeed only if it exited 0, printed a plan ("1..N") and no
# "not ok" line. The TAP output goes through unchanged.
# Usage: tap.sh COMMAND [ARGS...]
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" > "$out" 2>&1
status=$?
cat "$out"
oks=$(grep -c '^ok ' "$out")
fails=$(grep -c '^not ok ' "$out")
echo "# tap.sh: $oks ok, $fails not ok, exit status $status"
if ! grep -q '^1\.\.[0-9]' "$out"; then echo "# tap.sh: no TAP plan: the run ended early"; exit 1; fi
[ "$fails" -eq 0 ] && [ "$oks" -gt 0 ] || exit 1
exit "$status"
