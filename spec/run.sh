#!/bin/sh
# make test: the C unit tests and every busted spec, then one closing line
# "N passed, N failed" that CI reads (busted's own summary is not recognised there).
# Usage: LUA=lua5.4 BUILD=build/5.4 spec/run.sh [spec files...]
# Without arguments: the client specs (spec/) under $LUA, and (unless $LUA is LuaJIT) the local
# server's own specs (server/spec/) under lua5.4, the only Lua the server runs on.
LUA=${LUA:-lua5.4}
BUILD=${BUILD:-build/5.4}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
passed=0
failed=0

count() { # count OUTPUT-FILE STATUS: add a TAP run's ok / not ok lines to the totals
  p=$(grep -c '^ok ' "$1"); f=$(grep -c '^not ok ' "$1")
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi # the runner itself failed
}

for t in build/test_core build/test_http1 build/test_sse build/test_shapelog build/test_json \
  build/test_rowblob build/test_runfields build/test_superjson; do
  [ -x "$t" ] || continue
  "$t" > "$out" 2>&1
  status=$?
  cat "$out"
  count "$out" "$status"
  [ -s "$out" ] && ! grep -q '^1\.\.' "$out" && failed=$((failed + 1)) # crashed before the end
done

busted() { # busted LUA SPECS...
  lua=$1; shift
  # shellcheck disable=SC2086
  "$lua" /usr/bin/busted --lpath="lua/?.lua;lua/?/init.lua;server/lua/?.lua;server/lua/?/init.lua" \
    --cpath="$BUILD/?.so" -o TAP "$@" > "$out" 2>&1
  status=$?
  cat "$out"
  count "$out" "$status"
}

if [ $# -gt 0 ]; then
  busted "$LUA" "$@"
else
  busted "$LUA" spec
  # The server runs on Lua 5.4 whatever the client is tested on: its specs run with the 5.4 suite.
  case "$LUA" in *luajit*) ;; *) busted lua5.4 server/spec ;; esac
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
