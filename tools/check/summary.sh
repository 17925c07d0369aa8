#!/bin/sh
# Sum up the items recorded by item.sh / fuzz.sh: a table, then "N passed, N failed".
# Exits non-zero when an item failed or none was recorded.
results=$1
passed=0 failed=0
if [ -f "$results" ]; then
  passed=$(grep -c '^ok ' "$results")
  failed=$(grep -c '^not ok ' "$results")
  echo
  echo "check items:"
  sed -e 's/^ok \([^ ]*\) \([0-9]*\).*/  ok      \1 (\2 s)/' \
      -e 's/^not ok \([^ ]*\) \([0-9]*\) *\(.*\)/  FAILED  \1 (\2 s) \3/' "$results"
  # Why each failed item failed, here at the end, where a CI log cut to its last lines still
  # shows it: its failing tests and the verdict lines of tap.sh and valgrind.sh, or its last lines.
  grep '^not ok ' "$results" | while read -r _ _ name _ log; do
    [ -f "$log" ] || continue
    echo "why $name failed ($log):"
    why=$(grep -E '^not ok |^# (tap|valgrind)\.sh: |^#   (Invalid|Conditional|Use of|by|at) ' "$log" | head -n 30)
    [ -n "$why" ] || why=$(tail -n 15 "$log")
    echo "$why" | sed 's/^/  | /'
  done
fi
[ $((passed + failed)) -eq 0 ] && failed=1 && echo "no check item ran"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
