#!/bin/sh
# make test: the C unit tests and every busted spec, then one closing line
# "N passed, N failed" that CI reads (busted's own summary is not recognised there).
# Usage: LUA=lua5.4 BUILD=build/5.4 spec/run.sh [spec files...]
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/5.4}
specs=${*:-spec}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
passed=0
failed=0

if [ -x build/test_core ]; then
  build/test_core > "$out" 2>&1
  cat "$out"
  p=$(grep -c '^ok ' "$out"); f=$(grep -c '^not ok ' "$out")
  passed=$((passed + p)); failed=$((failed + f))
  [ -s "$out" ] && ! grep -q '^1\.\.' "$out" && failed=$((failed + 1)) # crashed before the end
fi

# shellcheck disable=SC2086
"$LUA" /usr/bin/busted --lpath="lua/?.lua;lua/?/init.lua" --cpath="$BUILD/?.so" -o TAP $specs \
  > "$out" 2>&1
status=$?
cat "$out"
p=$(grep -c '^ok ' "$out"); f=$(grep -c '^not ok ' "$out")
passed=$((passed + p)); failed=$((failed + f))
if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi # busted itself failed
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
