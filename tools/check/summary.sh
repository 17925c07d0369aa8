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
fi
[ $((passed + failed)) -eq 0 ] && failed=1 && echo "no check item ran"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
