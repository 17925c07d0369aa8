#!/bin/sh
# make demo: start the bundled local realtime server with the demo scenario, follow its runs
# with examples/watch_tag.lua, stop when every demo run has finished.
set -e
BUILD=${BUILD:-build/5.4}
out=$(mktemp)
server/bin/trigger-realtime-server --port 0 --hold-ms 20000 --scenario demo > "$out" &
server=$!
trap 'kill $server 2>/dev/null; rm -f "$out"' EXIT INT TERM
for _ in $(seq 1 100); do
  grep -q '^listening ' "$out" && break
  sleep 0.05
done
url=$(sed -n 's/^listening //p' "$out" | head -n 1)
[ -n "$url" ] || { echo "the local server did not start" >&2; exit 1; }
# Two lines say what is shown: this one, and watch_tag.lua's first line.
echo "make demo: the bundled local realtime server ($url) moves 5 runs tagged user:1234 from QUEUED to finished in ~6 s;"
export TRIGGER_API_URL="$url" TRIGGER_SECRET_KEY=tr_dev_local_emulator_secret_key
export LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$BUILD/?.so;;"
timeout 60 lua5.4 examples/watch_tag.lua user:1234 --until-finished
echo
echo "then a run that streams its output (sub:with_streams(): its status, and each chunk as it comes):"
timeout 30 lua5.4 examples/stream_run.lua run_demo_stream
echo
echo "then a task triggered from the shell and followed live (bin/trigger-realtime trigger stream-story --follow --streams):"
timeout 30 lua5.4 bin/trigger-realtime trigger stream-story --follow --streams
