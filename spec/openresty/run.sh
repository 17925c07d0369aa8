#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup and the helpers run from traps and wait_for
# make test-openresty: trigger-realtime inside Debian's nginx with libnginx-mod-http-lua.
#
# Builds the LuaJIT modules, starts the local realtime server and nginx (the example
# examples/openresty/nginx.conf, with test locations and TLS servers included) on loopback
# ports, follows a tag through the SSE location with curl -N while runs progress, and checks
# the events, that the same worker answers other requests meanwhile, TLS verification,
# subscriptions in ngx.timer, connection reuse, recovery from broken responses, token minting,
# the transport contract (spec/transport_contract.lua) on transport.ngx, run streams forwarded
# as SSE by the /stream location, and that libcurl is never loaded. Prints "ok N - ..." / "not ok N - ..." lines and a closing
# "N passed, N failed"; exits non-zero on failure; stops every process it started.
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
MAKE=${MAKE:-make}
SECRET=tr_dev_local_emulator_secret_key

n=0
passed=0
failed=0
ok() { n=$((n + 1)); passed=$((passed + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
  shift
  for line in "$@"; do printf '#   %s\n' "$line"; done
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit $?
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/trigger-openresty.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  if [ "${KEEP_TMP:-0}" = 1 ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
LIMIT=${TEST_TIME_LIMIT:-240}
trap 'not_ok "interrupted, or over the time limit of $LIMIT s"; finish' INT TERM
# A watchdog: whatever hangs, the run ends within LIMIT seconds (and it goes when we go).
(for ((i = 0; i < LIMIT; i++)); do sleep 1; kill -0 $$ 2>/dev/null || exit 0; done
 kill -TERM $$) 2>/dev/null &
pids+=($!)

# --- helpers -------------------------------------------------------------------------------

now_ms() { local t=${EPOCHREALTIME//[.,]/}; echo $((10#$t / 1000)); }

# wait_for SECONDS COMMAND...: retry COMMAND every 0.1 s until it succeeds or SECONDS passed
wait_for() {
  local deadline=$(( $(now_ms) + $1 * 1000 ))
  shift
  while ! "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}

admin() { # admin METHOD PATH [JSON]
  curl -sS --max-time 5 -X "$1" "$EMULATOR/$2" ${3:+-H 'Content-Type: application/json' -d "$3"}
}
create_run() { # create_run JSON -> friendly id
  admin POST _emulator/runs "$1" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p'
}
patch_run() { admin PATCH "_emulator/runs/$1" "{\"status\":\"$2\"}" >/dev/null; }
get() { curl -sS --max-time "${2:-5}" "http://127.0.0.1:$PORT$1"; }

has_data() { [ "$(grep -c '^data: ' "$1" 2>/dev/null)" -ge "$2" ]; }  # has_data FILE N: FILE holds N SSE events or more
n_events() { grep -c '^data: ' "$tmp/sse.out" 2>/dev/null || echo 0; }
has_events() { [ "$(n_events)" -ge "$1" ]; }

# The SSE events as "id status isCompleted" lines, decoded by LuaJIT's cjson.
sse_events() {
  SSE_FILE="$tmp/sse.out" luajit -e '
    local cjson = require "cjson"
    for line in io.lines(os.getenv("SSE_FILE")) do
      local data = line:match("^data: (.*)$")
      if data then
        local ok, run = pcall(cjson.decode, data)
        if ok and type(run) == "table" then
          print(run.id, run.status, tostring(run.isCompleted))
        else
          print("bad-json", data)
        end
      end
    end'
}

json_field() { # json_field JSON LUA-EXPR(with doc) -> printed value
  JSON_DOC=$1 luajit -e 'local doc = require("cjson").decode(os.getenv("JSON_DOC")); print(('"$2"'))' 2>&1
}

free_ports() { # free_ports N -> N free loopback ports (bound at once, then released)
  N_PORTS=$1 luajit -e '
    local socket = require "socket"
    local held, out = {}, {}
    for i = 1, tonumber(os.getenv("N_PORTS")) do
      local s = assert(socket.bind("127.0.0.1", 0))
      held[i] = s
      out[i] = select(2, s:getsockname())
    end
    for _, s in ipairs(held) do s:close() end
    print(table.concat(out, " "))' 2>/dev/null ||
    for ((i = 0; i < $1; i++)); do printf '%d ' $((20000 + RANDOM % 30000)); done
}

# --- build -----------------------------------------------------------------------------------

if build_log=$($MAKE --no-print-directory LUA=luajit all 2>&1); then
  ok "make LUA=luajit builds build/luajit/trigger/{core,curl}.so"
else
  not_ok "make LUA=luajit builds build/luajit/trigger/{core,curl}.so" "$build_log"
  finish
fi

load=$(luajit -e '
  package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
  package.cpath = "build/luajit/?.so;" .. package.cpath
  local core = require "trigger.core"
  local p = core.http1_parser { max_body = 16 }
  local st = p:feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
  require "trigger"
  require "trigger.transport.curl"
  print(st, p:status(), p:body(), _VERSION, jit and jit.version)' 2>&1)
if [ "$(printf '%s' "$load" | cut -f1-3)" = "$(printf 'done\t200\tok')" ]; then
  ok "trigger.core, trigger.curl and the Lua layer load under LuaJIT ($(printf '%s' "$load" | cut -f5))"
else
  not_ok "trigger.core, trigger.curl and the Lua layer load under LuaJIT" "$load"
fi

if [ -x build/test_http1 ]; then
  if h1=$(build/test_http1 2>&1); then
    ok "HTTP/1.1 parser unit tests: $(printf '%s\n' "$h1" | grep -c '^ok ') checks, every split"
  else
    not_ok "HTTP/1.1 parser unit tests" "$(printf '%s\n' "$h1" | grep -A1 '^not ok')"
  fi
fi

# --- the local realtime server -------------------------------------------------------------

server/bin/trigger-realtime-server --port 0 --hold-ms 1000 >"$tmp/server.out" 2>"$tmp/server.err" &
pids+=($!)
if wait_for 10 grep -q '^listening http://' "$tmp/server.out"; then
  EMULATOR=$(sed -n '1s/^listening //p' "$tmp/server.out")
  EMULATOR_PORT=${EMULATOR##*:}
  ok "local realtime server listens at $EMULATOR"
else
  not_ok "local realtime server starts" "$(cat "$tmp/server.out" "$tmp/server.err")"
  finish
fi

# --- TLS material: a test CA, a good certificate, one for another name, a self-signed one ---

have_tls=1
mkdir -p "$tmp/tls"
(
  cd "$tmp/tls" || exit 1
  key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  key ca.key && openssl req -x509 -new -key ca.key -out ca.crt -days 2 \
    -subj "/CN=trigger-realtime test CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || exit 1
  for name in good:127.0.0.1 wrong-name:wrong.example; do
    file=${name%%:*}
    host=${name#*:}
    key "$file.key" && openssl req -new -key "$file.key" -subj "/CN=$host" -out "$file.csr" \
      2>/dev/null || exit 1
    printf 'subjectAltName=DNS:%s,IP:%s\n' "$host" "${host/wrong.example/10.255.255.1}" >"$file.ext"
    openssl x509 -req -in "$file.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile "$file.ext" -out "$file.crt" 2>/dev/null || exit 1
  done
  key untrusted.key && openssl req -x509 -new -key untrusted.key -out untrusted.crt -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=DNS:127.0.0.1,IP:127.0.0.1" 2>/dev/null
) || have_tls=0

# --- nginx -------------------------------------------------------------------------------------

# launch_nginx DIR PORT: nginx -p DIR with DIR/conf/nginx.conf in the background, the library's
# environment set; once it answers /ping on PORT its master is LAUNCHED_PID (and in pids), else
# it is stopped and the status is 1.
launch_nginx() {
  TRIGGER_REALTIME_ROOT=$ROOT TRIGGER_API_URL=$EMULATOR TRIGGER_SECRET_KEY=$SECRET \
    nginx -p "$1" -c "$1/conf/nginx.conf" -e "$1/logs/error.log" >"$1/start.err" 2>&1 &
  LAUNCHED_PID=$!
  if wait_for 5 curl -sf --max-time 1 "http://127.0.0.1:$2/ping"; then
    pids+=("$LAUNCHED_PID")
    return 0
  fi
  kill -TERM "$LAUNCHED_PID" 2>/dev/null
  wait "$LAUNCHED_PID" 2>/dev/null
  return 1
}

start_nginx() {
  read -r PORT TLS_PORT TLS_WRONG_NAME_PORT TLS_UNTRUSTED_PORT <<<"$(free_ports 4)"
  mkdir -p "$tmp/nginx/logs" "$tmp/nginx/conf"
  local fill="s|@TMP@|$tmp|g; s|@EMULATOR_PORT@|$EMULATOR_PORT|g; s|@TLS_PORT@|$TLS_PORT|g;
    s|@TLS_WRONG_NAME_PORT@|$TLS_WRONG_NAME_PORT|g; s|@TLS_UNTRUSTED_PORT@|$TLS_UNTRUSTED_PORT|g"
  sed "$fill" spec/openresty/test-locations.conf >"$tmp/nginx/conf/test-locations.conf"
  if [ "$have_tls" = 1 ]; then
    sed "$fill" spec/openresty/test-servers.conf >"$tmp/nginx/conf/test-servers.conf"
  else
    echo "lua_shared_dict trigger_test 1m;" >"$tmp/nginx/conf/test-servers.conf"
  fi
  # The example itself, on our port, trusting the test CA, with the test additions included.
  sed -e "s|^\( *\)listen 127.0.0.1:8080;|\1listen 127.0.0.1:$PORT;\n\1include $tmp/nginx/conf/test-locations.conf;|" \
      -e "s|^http {|http {\n    include $tmp/nginx/conf/test-servers.conf;|" \
      -e "s|lua_ssl_trusted_certificate [^;]*;|lua_ssl_trusted_certificate $tmp/tls/ca.crt;|" \
      examples/openresty/nginx.conf >"$tmp/nginx/conf/nginx.conf"
  [ "$have_tls" = 1 ] || sed -i '/lua_ssl_trusted_certificate/d' "$tmp/nginx/conf/nginx.conf"
  if [ "$(grep -c "listen 127.0.0.1:$PORT;\|include $tmp" "$tmp/nginx/conf/nginx.conf")" -ne 3 ]; then
    echo "examples/openresty/nginx.conf no longer has the lines run.sh rewrites" >"$tmp/nginx/start.err"
    return 1
  fi
  launch_nginx "$tmp/nginx" "$PORT"
}

started=0
for _ in 1 2 3; do # a port taken between free_ports and bind: try other ports
  if start_nginx; then started=1; break; fi
  grep -q 'Address already in use' "$tmp/nginx/logs/error.log" "$tmp/nginx/start.err" 2>/dev/null || break
done
if [ "$started" = 1 ]; then
  ok "nginx (worker_processes 1, examples/openresty/nginx.conf) serves on 127.0.0.1:$PORT"
else
  not_ok "nginx starts with examples/openresty/nginx.conf" \
    "$(cat "$tmp/nginx/start.err" 2>/dev/null; tail -n 20 "$tmp/nginx/logs/error.log" 2>/dev/null)"
  finish
fi
pong=$(get /ping)
WORKER=${pong#pong }

# --- the SSE location, while runs progress ---------------------------------------------------

tag="user:openresty-$$-$RANDOM"
run_a=$(create_run "{\"runTags\":[\"$tag\"],\"status\":\"PENDING\",\"taskIdentifier\":\"send-email\",\"payload\":\"{\\\"items\\\":[]}\"}")
curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$(printf '%s' "$tag" | sed 's/:/%3A/g')" \
  >"$tmp/sse.out" 2>"$tmp/sse.err" &
sse_pid=$!
pids+=("$sse_pid")

if wait_for 10 has_events 1; then
  ok "the SSE stream delivers the existing run"
else
  not_ok "the SSE stream delivers the existing run" "$(cat "$tmp/sse.out" "$tmp/sse.err")" \
    "$(tail -n 20 "$tmp/nginx/logs/error.log")"
fi
grep -q "^: following $tag (nginx worker $WORKER)" "$tmp/sse.out" &&
  ok "the stream opens with a comment from the same worker ($WORKER) as /ping" ||
  not_ok "the stream opens with a comment from worker $WORKER" "$(head -n 2 "$tmp/sse.out")"

# The subscription now waits in a live long-poll (held 1 s by the server, then renewed). Other
# requests to the one worker must be answered at once meanwhile: a blocking wait would hold
# most of them for up to a second.
sleep 0.3
slow=0
times=""
for _ in 1 2 3 4 5 6 7 8; do
  t=$(curl -s -o "$tmp/ping.out" -w '%{time_total}' --max-time 5 "http://127.0.0.1:$PORT/ping")
  times="$times $t"
  grep -q "^pong $WORKER$" "$tmp/ping.out" || slow=$((slow + 1))
  awk -v t="$t" 'BEGIN { exit !(t < 0.25) }' || slow=$((slow + 1))
  sleep 0.17
done
waiting=$(json_field "$(admin GET _emulator/stats)" 'doc.active_realtime')
if [ "$slow" -eq 0 ] && kill -0 "$sse_pid" 2>/dev/null; then
  ok "the same worker answers /ping while the subscription waits (8 pings, seconds:$times; live requests at the server: $waiting)"
else
  not_ok "the same worker answers /ping at once while the subscription waits" "times:$times"
fi

patch_run "$run_a" EXECUTING
wait_for 10 has_events 2
patch_run "$run_a" COMPLETED_SUCCESSFULLY
wait_for 10 has_events 3
run_b=$(create_run "{\"runTags\":[\"$tag\",\"other\"],\"status\":\"PENDING\"}")
wait_for 10 has_events 4

# A live response sent chunked in 5-byte chunks: the C parser de-chunks it.
admin POST _emulator/faults '{"kind":"drip","chunk_size":5,"match":{"path_prefix":"/realtime/v1/runs","live":true},"count":1}' >/dev/null
sleep 1.3 # the held live request ends; the next one takes the fault
patch_run "$run_b" EXECUTING
wait_for 10 has_events 5
# A live response cut off mid-body: the transport reports it, the subscription retries.
admin POST _emulator/faults '{"kind":"reset_mid_body","match":{"path_prefix":"/realtime/v1/runs","live":true},"count":1}' >/dev/null
sleep 1.3
patch_run "$run_b" CANCELED
wait_for 12 has_events 6

expected="$run_a QUEUED false
$run_a EXECUTING false
$run_a COMPLETED true
$run_b QUEUED false
$run_b EXECUTING false
$run_b CANCELED false"
got=$(sse_events | tr '\t' ' ')
if [ "$got" = "$expected" ]; then
  ok "SSE events arrive in order with the right statuses (6 events, 2 runs)"
else
  not_ok "SSE events arrive in order with the right statuses" "want:" $expected "got:" $got
fi
grep -q '"taskIdentifier":"send-email"' "$tmp/sse.out" && grep -q "\"tags\":\[\"$tag\"\]" "$tmp/sse.out" &&
  ok "events carry the run object as JSON (taskIdentifier, tags)" ||
  not_ok "events carry the run object as JSON" "$(sed -n 3p "$tmp/sse.out")"
# Empty arrays stay arrays on the way to the browser (trigger.json.encode; Debian's lua-cjson
# alone wrote them as {}): the runs have no streams, run_a's payload has an empty list.
grep -q '"realtimeStreams":\[\]' "$tmp/sse.out" && grep -q '"items":\[\]' "$tmp/sse.out" &&
  ! grep -q '"realtimeStreams":{}\|"items":{}' "$tmp/sse.out" &&
  ok "empty arrays reach the browser as [] (\"realtimeStreams\":[], a payload's \"items\":[])" ||
  not_ok "empty arrays reach the browser as []" "$(sed -n 3p "$tmp/sse.out")"
if grep -q 'trigger-realtime: .*truncated' "$tmp/nginx/logs/error.log"; then
  ok "a live body cut short reached on_error (truncated) and the stream went on"
else
  not_ok "a live body cut short reached on_error and the stream went on" \
    "$(grep trigger-realtime "$tmp/nginx/logs/error.log" | tail -n 5)"
fi

stats=$(get /test/stats)
reused=$(json_field "$stats" 'doc.reused')
requests=$(json_field "$stats" 'doc.requests')
if [ "${reused:-0}" -gt 0 ] 2>/dev/null; then
  ok "connections are reused from the cosocket pool ($requests requests: $reused on pooled connections)"
else
  not_ok "connections are reused from the cosocket pool" "$stats"
fi

# The browser goes away: the handler closes the subscription and its long-poll.
kill -TERM "$sse_pid" 2>/dev/null
wait "$sse_pid" 2>/dev/null
active_zero() { [ "$(json_field "$(admin GET _emulator/stats)" 'doc.active_realtime')" = 0 ]; }
stays_zero() { # no live request for 1.5 s: a subscription still running would be back within 1 s
  local i
  for i in 1 2 3 4 5 6; do active_zero || return 1; sleep 0.25; done
}
if wait_for 5 active_zero && stays_zero; then
  ok "closing the SSE client ends the upstream long-poll"
else
  not_ok "closing the SSE client ends the upstream long-poll" "$(admin GET _emulator/stats | head -c 300)"
fi

# --- browsers that leave in the middle of a long-poll (issue 18) -------------------------------
# Each client goes after 1.5 s, while its subscription waits in a live long-poll: the example's
# ngx.on_abort closes the subscription and calls ngx.exit(499), which kills the handler's light
# threads where they stand, the transport's among them. The worker's count of requests in
# flight (transport.ngx.active()) must come back to 0: it used to go up by one per client for good.
tag_leave="user:leave-$$-$RANDOM"
leavers=()
for _ in $(seq 1 20); do
  curl -sN --max-time 1.5 "http://127.0.0.1:$PORT/runs?tag=$(printf '%s' "$tag_leave" | sed 's/:/%3A/g')" \
    >/dev/null 2>&1 &
  leavers+=($!)
done
wait "${leavers[@]}" 2>/dev/null
in_flight() { json_field "$(get /test/stats)" 'doc.active'; }
none_in_flight() { [ "$(in_flight)" = 0 ]; }
if wait_for 5 none_in_flight && wait_for 5 active_zero && stays_zero; then
  ok "20 clients that leave mid-long-poll: active() back to 0, no long-poll left at the server"
else
  not_ok "20 clients that leave mid-long-poll: active() back to 0" "active() = $(in_flight)" \
    "$(admin GET _emulator/stats | head -c 300)"
fi

# --- fan-out inside nginx: N browser clients of a tag, one upstream long-poll (issue 17) ---------
# 20 SSE clients of one tag on the one worker share one upstream, driven by a pump of its own
# (an ngx.timer), not by any client's request. Counted at the local server: one initial read of
# the shape (offset=-1) for the tag, not 20, and never more than one live long-poll at a time;
# every client gets every change; a late client gets the current state first; clients leaving
# (one, then all) leave the others running, and the last one closes the upstream.
FAN=20
tag_fan="user:fan-$$-$RANDOM"
tag_fan_q=$(printf '%s' "$tag_fan" | sed 's/:/%3A/g')
run_f=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
admin POST _emulator/stats/reset >/dev/null
fan_pids=()
for i in $(seq 1 $FAN); do
  curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$tag_fan_q" >"$tmp/fan-$i.out" 2>&1 &
  fan_pids+=($!)
  pids+=($!)
done
fan_has() { # fan_has N FIRST LAST: clients FIRST..LAST each have N events or more
  local i
  for i in $(seq "$2" "$3"); do has_data "$tmp/fan-$i.out" "$1" || return 1; done
}
fan_events() { # fan_events I -> client I's events as "id status" words
  SSE_FILE="$tmp/fan-$1.out" luajit -e '
    local cjson = require "cjson"
    local out = {}
    for line in io.lines(os.getenv("SSE_FILE")) do
      local data = line:match("^data: (.*)$")
      if data then
        local ok, run = pcall(cjson.decode, data)
        out[#out + 1] = ok and type(run) == "table" and (run.id .. "=" .. run.status) or "bad-json"
      end
    end
    print(table.concat(out, " "))'
}
# Realtime requests for the tag at the server since the reset: initial reads (offset=-1) and
# live ones; the most live long-polls at one time over the samples taken.
fan_reads() {
  JSON_DOC=$(admin GET _emulator/stats) TAG=$tag_fan luajit -e '
    local doc = require("cjson").decode(os.getenv("JSON_DOC"))
    local tag = os.getenv("TAG"):gsub(":", "%%3A")
    local initial, live = 0, 0
    for _, e in ipairs(doc.log) do
      local q = tostring(e.query)
      if e.path == "/realtime/v1/runs" and q:find(tag, 1, true) then
        if q:find("offset=-1", 1, true) then initial = initial + 1 end
        if e.live then live = live + 1 end
      end
    end
    print(initial, live)' 2>&1
}
most_live=0
sample_live() {
  local a
  a=$(json_field "$(admin GET _emulator/stats)" 'doc.active_realtime')
  [ "${a:-0}" -gt "$most_live" ] 2>/dev/null && most_live=$a
}
wait_for 15 fan_has 1 1 $FAN
for _ in 1 2 3 4 5 6 7 8 9 10; do sample_live; sleep 0.2; done
read -r initial live <<<"$(fan_reads)"
upstreams=$(json_field "$(get /test/stats)" 'doc.upstreams')
if fan_has 1 1 $FAN && [ "$initial" = 1 ] && [ "$most_live" -le 1 ] && [ "$upstreams" = 1 ]; then
  ok "$FAN SSE clients of one tag: one upstream (initial reads at the server: $initial, live long-polls at once: at most $most_live, $live live so far; shared upstreams in the worker: $upstreams)"
else
  not_ok "$FAN SSE clients of one tag share one upstream" "initial reads: $initial (want 1)" \
    "most live at once: $most_live (want <= 1)" "upstreams in the worker: $upstreams (want 1)" \
    "clients with the run: $(for i in $(seq 1 $FAN); do has_data "$tmp/fan-$i.out" 1 && printf '%s ' "$i"; done)"
fi

patch_run "$run_f" EXECUTING
wait_for 10 fan_has 2 1 $FAN
# The shared live request is cut mid-body: the pump retries it, and the failure reaches every
# client's on_error once, in that client's own request (not in the pump's timer).
admin POST _emulator/faults '{"kind":"reset_mid_body","match":{"path_prefix":"/realtime/v1/runs","live":true},"count":1}' >/dev/null
sleep 1.3
patch_run "$run_f" COMPLETED_SUCCESSFULLY
wait_for 10 fan_has 3 1 $FAN
told() { # how many clients (connections) logged the cut from their own request's on_error
  grep 'trigger-realtime: .*truncated' "$tmp/nginx/logs/error.log" | grep "request: \"GET /runs?tag=$tag_fan_q " |
    sed -n 's/.*#[0-9]*: \*\([0-9]*\) .*/\1/p' | sort -u | wc -l
}
wait_for 5 eval '[ "$(told)" -ge $FAN ]'
want_f="$run_f=QUEUED $run_f=EXECUTING $run_f=COMPLETED"
bad=""
for i in $(seq 1 $FAN); do
  got=$(fan_events "$i")
  [ "$got" = "$want_f" ] || bad="$bad client $i: $got;"
done
[ -z "$bad" ] && ok "all $FAN clients get every change of the shared upstream, once each, in order ($want_f)" ||
  not_ok "all $FAN clients get every change of the shared upstream" "want: $want_f" "$bad"
n_told=$(told)
[ "$n_told" -eq $FAN ] &&
  ok "the shared request cut mid-body reached the on_error of each of the $n_told clients in its own request, and every client went on" ||
  not_ok "the shared request cut mid-body reached each client's on_error in its own request" "clients told: $n_told of $FAN" \
    "$(grep 'truncated' "$tmp/nginx/logs/error.log" | tail -n 2 | cut -c1-300)"

# A late client: the run as it is now first (COMPLETED), exactly what it would get alone.
curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$tag_fan_q" >"$tmp/fan-late.out" 2>&1 &
late_pid=$!
pids+=("$late_pid")
wait_for 10 has_data "$tmp/fan-late.out" 1
cp "$tmp/fan-late.out" "$tmp/fan-$((FAN + 1)).out"
got=$(fan_events $((FAN + 1)))
[ "$got" = "$run_f=COMPLETED" ] && ok "a late client of the shared upstream first gets the current state ($got)" ||
  not_ok "a late client of the shared upstream first gets the current state" "got: $got"

# One client leaves (its handler closes its subscription, ngx.exit(499)): the others go on.
kill -TERM "${fan_pids[0]}" 2>/dev/null
wait "${fan_pids[0]}" 2>/dev/null
sleep 0.5
run_g=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
wait_for 10 fan_has 4 2 $FAN
wait_for 10 has_data "$tmp/fan-late.out" 2
bad=""
for i in $(seq 2 $FAN); do
  got=$(fan_events "$i")
  [ "$got" = "$want_f $run_g=QUEUED" ] || bad="$bad client $i: $got;"
done
cp "$tmp/fan-late.out" "$tmp/fan-$((FAN + 1)).out"
[ "$(fan_events $((FAN + 1)))" = "$run_f=COMPLETED $run_g=QUEUED" ] || bad="$bad late: $(fan_events $((FAN + 1)));"
read -r initial live <<<"$(fan_reads)"
upstreams=$(json_field "$(get /test/stats)" 'doc.upstreams')
if [ -z "$bad" ] && [ "$initial" = 1 ] && [ "$upstreams" = 1 ]; then
  ok "one client leaving does not disturb the others: $((FAN - 1)) + the late one get the next run, still one upstream ($initial initial read, $live live requests in all)"
else
  not_ok "one client leaving does not disturb the others" "$bad" "initial reads: $initial" "upstreams: $upstreams"
fi

# All leave: the last one closes the upstream; its pump's read wakes and closes the long-poll.
for p in "${fan_pids[@]:1}" "$late_pid"; do kill -TERM "$p" 2>/dev/null; done
wait "${fan_pids[@]:1}" "$late_pid" 2>/dev/null
no_upstreams() { [ "$(json_field "$(get /test/stats)" 'doc.upstreams')" = 0 ]; }
if wait_for 5 none_in_flight && wait_for 5 active_zero && stays_zero && no_upstreams; then
  ok "when every client has left, the shared upstream closes: no upstream in the worker, active() 0, no long-poll at the server"
else
  not_ok "when every client has left, the shared upstream closes" "$(get /test/stats)" \
    "$(admin GET _emulator/stats | head -c 300)"
fi

# The same on the native runs feed: a late client makes the pump read the shape again (its live
# read is interrupted), and gets the current state from that read; the others miss nothing.
admin POST _emulator/backend '{"backend":"native"}' >/dev/null
tag_nat="user:fan-native-$$-$RANDOM"
tag_nat_q=$(printf '%s' "$tag_nat" | sed 's/:/%3A/g')
run_n=$(create_run "{\"runTags\":[\"$tag_nat\"],\"status\":\"PENDING\"}")
nat_pids=()
for i in 1 2 3 4 5; do
  curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$tag_nat_q" >"$tmp/fan-$((100 + i)).out" 2>&1 &
  nat_pids+=($!)
  pids+=($!)
done
wait_for 15 fan_has 1 101 105
patch_run "$run_n" EXECUTING
wait_for 10 fan_has 2 101 105
curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$tag_nat_q" >"$tmp/fan-106.out" 2>&1 &
nat_pids+=($!)
pids+=($!)
wait_for 10 fan_has 1 106 106
patch_run "$run_n" COMPLETED_SUCCESSFULLY
wait_for 10 fan_has 3 101 105
wait_for 10 fan_has 2 106 106
bad=""
for i in 101 102 103 104 105; do
  got=$(fan_events "$i")
  [ "$got" = "$run_n=QUEUED $run_n=EXECUTING $run_n=COMPLETED" ] || bad="$bad client $i: $got;"
done
got=$(fan_events 106)
[ "$got" = "$run_n=EXECUTING $run_n=COMPLETED" ] || bad="$bad late: $got;"
upstreams=$(json_field "$(get /test/stats)" 'doc.upstreams')
[ -z "$bad" ] && [ "$upstreams" = 1 ] &&
  ok "native feed: 5 clients + a late one share one upstream; each gets every state once, the late one the current state first" ||
  not_ok "native feed: clients sharing one upstream, and a late one" "$bad" "upstreams: $upstreams"
for p in "${nat_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
wait "${nat_pids[@]}" 2>/dev/null
wait_for 5 no_upstreams
admin POST _emulator/backend '{"backend":"electric"}' >/dev/null

# A client killed without closing its subscription, next to one that stays: the one that stays
# gets what comes next (the pump's wake-up of the killed one's wait harms nothing), the killed
# one is made to leave once its wait is overdue, and when the other leaves the upstream closes.
tag_k="user:killed-$$-$RANDOM"
tag_k_q=$(printf '%s' "$tag_k" | sed 's/:/%3A/g')
create_run "{\"runTags\":[\"$tag_k\"],\"status\":\"PENDING\"}" >/dev/null
curl -sN --max-time 60 "http://127.0.0.1:$PORT/runs?tag=$tag_k_q" >"$tmp/fan-200.out" 2>&1 &
stay_pid=$!
pids+=("$stay_pid")
wait_for 10 has_data "$tmp/fan-200.out" 1
curl -sN --max-time 1.5 "http://127.0.0.1:$PORT/test/killed?tag=$tag_k_q" >"$tmp/killed.out" 2>&1
run_k=$(create_run "{\"runTags\":[\"$tag_k\"],\"status\":\"PENDING\"}")
wait_for 10 has_data "$tmp/fan-200.out" 2
got=$(fan_events 200 | awk '{print $2}')
kill -TERM "$stay_pid" 2>/dev/null
wait "$stay_pid" 2>/dev/null
if grep -q '^data: QUEUED' "$tmp/killed.out" && [ "${got%%=*}" = "$run_k" ] && wait_for 10 no_upstreams; then
  ok "a client killed without close() while it waits: the other client gets the next run, the leftover reader is made to leave, the upstream closes"
else
  not_ok "a client killed without close() is made to leave" "killed client: $(tr '\n' ' ' <"$tmp/killed.out")" \
    "the other's second event: $got (want $run_k=QUEUED)" "$(get /test/stats)"
fi
get /test/pump-defaults >/dev/null

# share = false still gives each subscription its own upstream inside nginx.
tag_un="user:unshared-$$-$RANDOM"
create_run "{\"runTags\":[\"$tag_un\"],\"status\":\"PENDING\"}" >/dev/null
answer=$(get "/test/unshared?tag=$(printf '%s' "$tag_un" | sed 's/:/%3A/g')" 20)
[ "$answer" = "QUEUED QUEUED private=0 shared=1 after=0" ] &&
  ok "share = false inside nginx: each subscription reads alone (no shared upstream); two shared ones make one" ||
  not_ok "share = false inside nginx: each subscription reads alone" "$answer"

# --- fan-out across nginx workers: one upstream per tag for the whole nginx (issue 17) ---------
# A second nginx from the example with 2 workers (reuseport: the kernel spreads the clients over
# them) and the example's lua_shared_dict trigger_realtime: one worker asks the server, the other
# follows it through the dict. Its owner killed (kill -9): the other takes over from the
# position of the last batch, and its clients miss nothing and get nothing twice.
start_nginx_workers() { # start_nginx_workers DIR DICT_SIZE: sets XPORT, NGINX2_PID, NGINX2_DIR
  local d="$tmp/$1"
  NGINX2_DIR=$d
  read -r XPORT <<<"$(free_ports 1)"
  mkdir -p "$d/logs" "$d/conf"
  echo "lua_shared_dict trigger_test 1m;" >"$d/conf/test-servers.conf"
  sed -e "s|^\( *\)listen 127.0.0.1:8080;|\1listen 127.0.0.1:$XPORT reuseport;\n\1include $tmp/nginx/conf/test-locations.conf;|" \
      -e "s|^http {|http {\n    include $d/conf/test-servers.conf;|" \
      -e "s|^worker_processes 1;|worker_processes 2;|" \
      -e "s|lua_shared_dict trigger_realtime [^;]*;|lua_shared_dict trigger_realtime $2;|" \
      -e "s|^pid logs/nginx.pid;|pid $d/logs/nginx.pid;|" \
      -e "s|lua_ssl_trusted_certificate [^;]*;|lua_ssl_trusted_certificate $tmp/tls/ca.crt;|" \
      examples/openresty/nginx.conf >"$d/conf/nginx.conf"
  [ "$have_tls" = 1 ] || sed -i '/lua_ssl_trusted_certificate/d' "$d/conf/nginx.conf"
  launch_nginx "$d" "$XPORT" || return 1
  NGINX2_PID=$LAUNCHED_PID
}
xget() { curl -sS --max-time 5 "http://127.0.0.1:$XPORT$1"; }
x_sample_live() { # most_live: the most live long-polls for $tag_fan in flight at the server so far
  local a
  a=$(JSON_DOC=$(admin GET _emulator/stats) TAG=$tag_fan luajit -e '
    local doc = require("cjson").decode(os.getenv("JSON_DOC"))
    local tag = os.getenv("TAG"):gsub(":", "%%3A")
    local n = 0
    for _, e in ipairs(doc.in_flight or {}) do
      local q = tostring(e.query)
      if q:find(tag, 1, true) and q:find("live=true", 1, true) then n = n + 1 end
    end
    print(n)' 2>&1)
  [ "${a:-0}" -gt "$most_live" ] 2>/dev/null && most_live=$a
}
x_owners() { json_field "$(xget /test/owners)" 'table.concat(doc.pids, " ")'; }
x_owner_not() { [ "$(x_owners)" != "$1" ]; }        # x_owner_not OWNERS: the owners changed
x_no_owner() { [ -z "$(x_owners)" ]; }
x_workers() { # the 2-worker nginx's worker pids (its master's children), on one line
  local f
  for f in /proc/[0-9]*/status; do
    grep -q "^PPid:[[:space:]]*$NGINX2_PID\$" "$f" 2>/dev/null && basename "$(dirname "$f")"
  done | sort -n | tr '\n' ' '
}
x_reloaded() { # x_reloaded " OLD PIDS ": two workers answer that are not among them
  local p n=0
  for p in $(x_workers); do case "$1" in *" $p "*) ;; *) n=$((n + 1)) ;; esac; done
  [ "$n" -ge 2 ]
}
x_owner_in_new() { # x_owner_in_new " OLD PIDS ": one owner, not an old worker
  local o
  o=$(x_owners)
  [ -n "$o" ] && case "$1" in *" $o "*) false ;; *) true ;; esac
}
x_last_is() { local got; got=$(fan_events "$1"); [ "${got##* }" = "$2" ]; }
x_events_are() { [ "$(fan_events "$1")" = "$2" ]; } # x_events_are I WANT
x_worker_of() { sed -n '1s/^: following .* (nginx worker \([0-9]*\)).*/\1/p' "$tmp/fan-$1.out"; }
# x_clients BACKEND FIRST LAST TAG: SSE clients FIRST..LAST of TAG on the 2-worker nginx
x_clients() {
  local tag_q i
  tag_q=$(printf '%s' "$4" | sed 's/:/%3A/g')
  for i in $(seq "$2" "$3"); do
    curl -sN --max-time 90 "http://127.0.0.1:$XPORT/runs?tag=$tag_q" >"$tmp/fan-$i.out" 2>&1 &
    x_pids[i]=$!
    pids+=($!)
  done
}
# cross_workers BACKEND BASE: the whole scenario on one backend, clients BASE+1..BASE+12
cross_workers() {
  local backend=$1 base=$2 first=$(($2 + 1)) last=$(($2 + 12)) late=$(($2 + 13))
  admin POST _emulator/backend "{\"backend\":\"$backend\"}" >/dev/null
  tag_fan="user:workers-$backend-$$-$RANDOM"
  local run_x owner workers i w got want bad="" survivors=() initial live owners_now
  # Initial reads (offset=-1) at the server: one, and on the native feed one more per takeover
  # (the new owner reads the shape afresh: the server keeps what it sent per handle, and the
  # last owner's long-poll may still take a change for the old one). Electric goes on from the
  # position.
  local want_initial=1 per_takeover=0
  [ "$backend" = native ] && per_takeover=1
  run_x=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
  x_pids=()
  most_live=0
  x_clients "$backend" "$first" "$last" "$tag_fan"
  wait_for 20 fan_has 1 "$first" "$last"
  for _ in 1 2 3 4 5; do x_sample_live; sleep 0.2; done
  patch_run "$run_x" EXECUTING
  wait_for 10 fan_has 2 "$first" "$last"
  for _ in 1 2 3 4 5; do x_sample_live; sleep 0.2; done
  workers=$(for i in $(seq "$first" "$last"); do x_worker_of "$i"; done | sort -u | wc -l)
  read -r initial live <<<"$(fan_reads)"
  owner=$(x_owners)
  if fan_has 2 "$first" "$last" && [ "$workers" = 2 ] && [ "$initial" = 1 ] && [ "$most_live" -le 1 ] &&
    [ -n "$owner" ] && [ "${owner// /}" = "$owner" ]; then
    ok "$backend: 12 SSE clients of one tag on 2 nginx workers share one upstream (initial reads at the server: $initial, live long-polls at once: at most $most_live; owner worker $owner)"
  else
    not_ok "$backend: SSE clients of one tag on 2 nginx workers share one upstream" "workers with clients: $workers (want 2)" \
      "initial reads: $initial (want 1)" "most live at once: $most_live (want <= 1)" "owners: '$owner' (want one)" \
      "clients with 2 events: $(for i in $(seq "$first" "$last"); do has_data "$tmp/fan-$i.out" 2 && printf '%s ' "$i"; done)"
  fi
  # The owner dies: its clients' connections go with it; a change made before the lease runs
  # out and one after reach every other client once each, in order.
  kill -9 "$owner" 2>/dev/null
  want_initial=$((want_initial + per_takeover))
  patch_run "$run_x" WAITING_TO_RESUME
  for i in $(seq "$first" "$last"); do
    [ "$(x_worker_of "$i")" = "$owner" ] || survivors+=("$i")
  done
  wait_for 20 fan_has 3 "${survivors[0]}" "${survivors[0]}"
  patch_run "$run_x" COMPLETED_SUCCESSFULLY
  want="$run_x=QUEUED $run_x=EXECUTING $run_x=WAITING $run_x=COMPLETED"
  for i in "${survivors[@]}"; do wait_for 10 has_data "$tmp/fan-$i.out" 4; done
  for i in "${survivors[@]}"; do
    got=$(fan_events "$i")
    [ "$got" = "$want" ] || bad="$bad client $i: $got;"
  done
  read -r initial live <<<"$(fan_reads)"
  owners_now=$(x_owners)
  if [ -z "$bad" ] && [ "${#survivors[@]}" -gt 0 ] && [ "$initial" = "$want_initial" ] && [ -n "$owners_now" ] &&
    [ "$owners_now" != "$owner" ]; then
    ok "$backend: the owner worker killed (kill -9): worker $owners_now takes over, its ${#survivors[@]} clients get every change once, in order, initial reads at the server: $initial ($want)"
  else
    not_ok "$backend: another worker takes over from a killed owner without loss" "$bad" \
      "survivors: ${#survivors[@]}" "initial reads: $initial (want $want_initial)" "owner now: '$owners_now' (was $owner)"
  fi
  # A late client (on either worker, the respawned one among them) gets the current state.
  curl -sN --max-time 30 "http://127.0.0.1:$XPORT/runs?tag=$(printf '%s' "$tag_fan" | sed 's/:/%3A/g')" \
    >"$tmp/fan-$late.out" 2>&1 &
  x_pids[late]=$!
  wait_for 10 has_data "$tmp/fan-$late.out" 1
  got=$(fan_events "$late")
  [ "$got" = "$run_x=COMPLETED" ] &&
    ok "$backend: a late client of the upstream shared across workers first gets the current state ($got)" ||
    not_ok "$backend: a late client of the upstream shared across workers gets the current state" "got: $got"
  # An owner stuck past its lease (SIGSTOP): the other worker takes over; when it runs again it
  # finds the lease gone, drops its own read and follows. Clients on both workers get the new
  # run and its change once each; those on the stuck worker once it runs again.
  local more_first=$((base + 20)) more_last=$((base + 27)) run_y stuck others=() leavers=()
  x_clients "$backend" "$more_first" "$more_last" "$tag_fan"
  wait_for 10 fan_has 1 "$more_first" "$more_last"
  stuck=$(x_owners)
  kill -STOP "$stuck" 2>/dev/null
  want_initial=$((want_initial + per_takeover))
  run_y=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
  for i in $(seq "$more_first" "$more_last") "${survivors[@]}"; do
    if [ "$(x_worker_of "$i")" = "$stuck" ]; then leavers+=("$i"); else others+=("$i"); fi
  done
  wait_for 20 has_data "$tmp/fan-${others[0]:-0}.out" 2
  kill -CONT "$stuck" 2>/dev/null
  patch_run "$run_y" EXECUTING
  bad=""
  for i in $(seq "$more_first" "$more_last") "${survivors[@]}"; do
    want="$run_y=QUEUED $run_y=EXECUTING"
    [ "$i" -gt "$last" ] && want="$run_x=COMPLETED $want"
    [ "$i" -le "$last" ] && want="$run_x=QUEUED $run_x=EXECUTING $run_x=WAITING $run_x=COMPLETED $want"
    wait_for 10 x_events_are "$i" "$want"
    got=$(fan_events "$i")
    [ "$got" = "$want" ] || bad="$bad client $i: $got;"
  done
  read -r initial live <<<"$(fan_reads)"
  owners_now=$(x_owners)
  if [ -z "$bad" ] && [ "${#others[@]}" -gt 0 ] && [ "${#leavers[@]}" -gt 0 ] && [ "$initial" = "$want_initial" ] &&
    [ "$owners_now" != "$stuck" ] && [ -n "$owners_now" ]; then
    ok "$backend: an owner stopped past its lease (SIGSTOP): worker $owners_now takes over; the stopped one follows when it runs again; all $(( ${#others[@]} + ${#leavers[@]} )) clients get each state once ($initial initial reads at the server)"
  else
    not_ok "$backend: an owner stopped past its lease hands over without loss" "$bad" \
      "clients on the stopped worker: ${#leavers[@]}, on the other: ${#others[@]}" \
      "initial reads: $initial (want $want_initial)" "owner now: '$owners_now' (stopped: $stuck)"
  fi
  # The owner's clients all leave while the other worker has some: that one takes over at once.
  owner=$(x_owners)
  others=()
  want_initial=$((want_initial + per_takeover))
  for i in $(seq "$more_first" "$more_last") "${survivors[@]}" "$late"; do
    if [ "$(x_worker_of "$i")" = "$owner" ]; then kill -TERM "${x_pids[i]}" 2>/dev/null
    else others+=("$i"); fi
  done
  wait_for 10 x_owner_not "$owner"
  local had=()
  for i in "${others[@]}"; do had[i]=$(grep -c '^data: ' "$tmp/fan-$i.out"); done
  patch_run "$run_y" COMPLETED_SUCCESSFULLY
  bad=""
  for i in "${others[@]}"; do
    wait_for 10 has_data "$tmp/fan-$i.out" $((had[i] + 1))
    got=$(fan_events "$i")
    [ "${got##* }" = "$run_y=COMPLETED" ] || bad="$bad client $i: $got;"
    [ "$(printf '%s\n' $got | grep -c "^$run_y=COMPLETED$")" = 1 ] || bad="$bad client $i twice: $got;"
  done
  read -r initial live <<<"$(fan_reads)"
  owners_now=$(x_owners)
  if [ -z "$bad" ] && [ "${#others[@]}" -gt 0 ] && [ "$initial" = "$want_initial" ] && [ -n "$owners_now" ] && [ "$owners_now" != "$owner" ]; then
    ok "$backend: the owner's clients all leave: worker $owners_now takes over, its ${#others[@]} clients get the next change once ($initial initial reads at the server)"
  else
    not_ok "$backend: the owner's clients all leave: another worker takes over" "$bad" \
      "clients left: ${#others[@]}" "initial reads: $initial (want $want_initial)" "owner now: '$owners_now' (was $owner)"
  fi
  # A reload (SIGHUP): new workers start and the old ones keep their clients until they leave.
  # The new workers' clients follow the old owner; once the old workers are gone a new one
  # takes over. Every client gets each state once.
  local old_workers new_first=$((base + 40)) new_last=$((base + 43)) run_z reload_bad=""
  old_workers=" $(x_workers) "
  kill -HUP "$NGINX2_PID"
  wait_for 10 x_reloaded "$old_workers"
  x_clients "$backend" "$new_first" "$new_last" "$tag_fan"
  wait_for 10 fan_has 2 "$new_first" "$new_last"
  for i in $(seq "$new_first" "$new_last"); do
    case "$old_workers" in *" $(x_worker_of "$i") "*) reload_bad="$reload_bad client $i on an old worker;" ;; esac
  done
  run_z=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
  for i in $(seq "$new_first" "$new_last"); do wait_for 10 fan_has 3 "$i" "$i"; done
  for i in "${others[@]}"; do wait_for 10 x_last_is "$i" "$run_z=QUEUED"; done
  for i in "${others[@]}"; do
    x_last_is "$i" "$run_z=QUEUED" || reload_bad="$reload_bad old client $i: $(fan_events "$i");"
    kill -TERM "${x_pids[i]}" 2>/dev/null
  done
  wait_for 15 x_owner_in_new "$old_workers"
  want_initial=$((want_initial + per_takeover))
  patch_run "$run_z" EXECUTING
  for i in $(seq "$new_first" "$new_last"); do
    wait_for 10 fan_has 4 "$i" "$i"
    got=$(fan_events "$i")
    case "$got" in
      "$run_x=COMPLETED $run_y=COMPLETED $run_z=QUEUED $run_z=EXECUTING" | \
      "$run_y=COMPLETED $run_x=COMPLETED $run_z=QUEUED $run_z=EXECUTING") ;;
      *) reload_bad="$reload_bad new client $i: $got;" ;;
    esac
  done
  read -r initial live <<<"$(fan_reads)"
  if [ -z "$reload_bad" ] && x_owner_in_new "$old_workers" && [ "$initial" = "$want_initial" ]; then
    ok "$backend: nginx reloaded (SIGHUP): the new workers' clients follow the old owner, a new worker takes over when the old ones leave, each client gets each state once ($initial initial reads at the server)"
  else
    not_ok "$backend: a reload hands the upstream over without loss" "$reload_bad" \
      "owner: $(x_owners) (old workers:$old_workers)" "initial reads: $initial (want $want_initial)"
  fi
  # A fatal answer (403) to the owner's request ends the clients of every worker with the same
  # error; a client that subscribes again afterwards starts afresh (not from the failed log).
  for p in "${x_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait "${x_pids[@]}" 2>/dev/null
  wait_for 10 x_no_owner
  local f_first=$((base + 50)) f_last=$((base + 57)) again=$((base + 60)) run_f errs=() workers_told
  tag_fan="user:workers-fatal-$backend-$$-$RANDOM"
  run_f=$(create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\"}")
  x_clients "$backend" "$f_first" "$f_last" "$tag_fan"
  wait_for 10 fan_has 1 "$f_first" "$f_last"
  admin POST _emulator/faults '{"kind":"status","status":403,"match":{"path_prefix":"/realtime/v1/runs","live":true},"count":1}' >/dev/null
  has_error() { grep -q '^event: error' "$tmp/fan-$1.out"; }
  for i in $(seq "$f_first" "$f_last"); do wait_for 10 has_error "$i" || errs+=("$i"); done
  workers_told=$(for i in $(seq "$f_first" "$f_last"); do has_error "$i" && x_worker_of "$i"; done | sort -u | wc -l)
  x_clients "$backend" "$again" "$again" "$tag_fan"
  wait_for 10 has_data "$tmp/fan-$again.out" 1
  patch_run "$run_f" EXECUTING
  wait_for 10 has_data "$tmp/fan-$again.out" 2
  got=$(fan_events "$again")
  if [ "${#errs[@]}" = 0 ] && [ "$workers_told" = 2 ] && [ "$got" = "$run_f=QUEUED $run_f=EXECUTING" ]; then
    ok "$backend: a 403 to the owner's request ends the 8 clients of both workers with an error; a client subscribing again starts afresh ($got)"
  else
    not_ok "$backend: a fatal answer ends every worker's clients, and a new subscription starts afresh" \
      "clients without the error: ${errs[*]}" "workers whose clients were told: $workers_told (want 2)" \
      "the new client: $got"
  fi
  # Everyone leaves: the upstream closes in every worker and the owner gives its lease up.
  for p in "${x_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait "${x_pids[@]}" 2>/dev/null
  if wait_for 10 x_no_owner; then
    ok "$backend: when every client has left, no worker owns the upstream any more"
  else
    not_ok "$backend: the owner gives its lease up when every client has left" "owners: $(x_owners)"
  fi
}
if start_nginx_workers nginx2 16m; then
  ok "a second nginx (worker_processes 2, reuseport, lua_shared_dict trigger_realtime) serves on 127.0.0.1:$XPORT"
  cross_workers electric 300
  cross_workers native 400
  admin POST _emulator/backend '{"backend":"electric"}' >/dev/null
  alerts=$(grep -c '\[alert\]\|\[crit\]\|\[emerg\]' "$NGINX2_DIR/logs/error.log")
  lua_errors=$(grep -c 'lua entry thread aborted\|runtime error' "$NGINX2_DIR/logs/error.log")
  [ "$alerts" -le 2 ] && [ "$lua_errors" = 0 ] &&
    ok "the 2-worker nginx logged no Lua error ($alerts alert lines: the killed workers)" ||
    not_ok "the 2-worker nginx logged no Lua error" "$(grep '\[alert\]\|\[crit\]\|\[emerg\]\|lua entry thread aborted\|runtime error' "$NGINX2_DIR/logs/error.log" | head -5)"
  kill -QUIT "$NGINX2_PID" 2>/dev/null
else
  not_ok "a second nginx with 2 workers starts" "$(cat "$tmp/nginx2/start.err"; tail -n 20 "$NGINX2_DIR/logs/error.log")"
fi

# A dict too small for the shape (64 KB, 40 runs of 3 KB): the owner's clients get every run;
# the owner logs the failed write once, naming the directive; the other worker's clients are
# told through on_error (the example logs it at WARN) instead of waiting in silence.
if start_nginx_workers nginx3 64k; then
  tag_fan="user:small-dict-$$-$RANDOM"
  big=$(printf 'x%.0s' $(seq 1 3000))
  for _ in $(seq 1 40); do
    create_run "{\"runTags\":[\"$tag_fan\"],\"status\":\"PENDING\",\"payload\":\"\\\"$big\\\"\"}" >/dev/null
  done
  x_pids=()
  x_clients electric 501 510 "$tag_fan"
  wait_for 15 fan_has 1 501 510
  small_owner=$(x_owners)
  owner_clients=0 owner_full=0 follower_clients=0
  for i in $(seq 501 510); do
    if [ "$(x_worker_of "$i")" = "$small_owner" ]; then
      owner_clients=$((owner_clients + 1))
      wait_for 10 has_data "$tmp/fan-$i.out" 40 && owner_full=$((owner_full + 1))
    else
      follower_clients=$((follower_clients + 1))
    fi
  done
  told() { grep -q 'trigger-realtime: .*no snapshot of the shared upstream in lua_shared_dict trigger_realtime' "$NGINX2_DIR/logs/error.log"; }
  wait_for 20 told
  full_logged=$(grep -c 'lua_shared_dict trigger_realtime: no memory (raise its size' "$NGINX2_DIR/logs/error.log")
  if [ "$owner_clients" -gt 0 ] && [ "$owner_full" = "$owner_clients" ] && [ "$follower_clients" -gt 0 ] && told &&
    [ "$full_logged" = 1 ] && ! grep -q 'lua entry thread aborted\|runtime error\|\[alert\]' "$NGINX2_DIR/logs/error.log"; then
    ok "a lua_shared_dict too small for the shape: the owner's $owner_clients clients get all 40 runs, the failed write is logged once, the other worker's $follower_clients clients are told through on_error"
  else
    not_ok "a lua_shared_dict too small for the shape is reported, not silent" \
      "owner's clients: $owner_full of $owner_clients with all 40 runs; others: $follower_clients" \
      "told: $(told && echo yes || echo no); 'no memory' lines: $full_logged" \
      "$(grep 'trigger-realtime\|alert\|runtime error' "$NGINX2_DIR/logs/error.log" | tail -n 5 | cut -c1-300)"
  fi
  for p in "${x_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait "${x_pids[@]}" 2>/dev/null
  kill -QUIT "$NGINX2_PID" 2>/dev/null
else
  not_ok "a third nginx with 2 workers and a small dict starts" "$(cat "$tmp/nginx3/start.err"; tail -n 20 "$tmp/nginx3/logs/error.log")"
fi

# --- a subscription inside ngx.timer ------------------------------------------------------------

tag2="user:timer-$$-$RANDOM"
started=$(get "/test/timer?tag=$tag2")
sleep 0.5
run_c=$(create_run "{\"runTags\":[\"$tag2\"],\"status\":\"PENDING\"}")
sleep 0.3
patch_run "$run_c" EXECUTING
sleep 0.3
patch_run "$run_c" COMPLETED_SUCCESSFULLY
timer_done() { get /test/timer-result 1 2>/dev/null | grep -q 'COMPLETED'; }
wait_for 10 timer_done
result=$(get /test/timer-result)
case "$result" in
  *"COMPLETED |timer"*) ok "a subscription in ngx.timer follows a tag until the run completes ($result)" ;;
  *) not_ok "a subscription in ngx.timer follows a tag until the run completes" "$started" "$result" ;;
esac

# --- public access tokens minted inside nginx --------------------------------------------------

token_json=$(get "/token?tag=$(printf '%s' "$tag" | sed 's/:/%3A/g')")
token=$(json_field "$token_json" 'doc.token')
realtime() { # realtime TAG TOKEN -> HTTP status of the first shape request
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Authorization: Bearer $2" \
    -H 'x-trigger-electric-version: 1.0.0-beta.1' \
    "$EMULATOR/realtime/v1/runs?tags=$(printf '%s' "$1" | sed 's/:/%3A/g')&offset=-1&log=full"
}
if [ "$(printf '%s' "$token" | tr -cd . | wc -c)" -eq 2 ] && [ "$(realtime "$tag" "$token")" = 200 ] &&
  [ "$(realtime "$tag2" "$token")" = 403 ]; then
  ok "/token mints a public token inside nginx (claims fetched over cosockets) that reads only its tag"
else
  not_ok "/token mints a working public token" "$token_json"
fi

# --- a task triggered inside nginx (issue 30) ---------------------------------------------------

admin POST _emulator/tasks '{"tasks":{"echo-nginx":{"queue_ms":10,"steps":[{"echo":true}]}}}' >/dev/null
trig_json=$(get "/test/trigger?task=echo-nginx" 30)
if [ "$(json_field "$trig_json" 'doc.status .. " " .. doc.output.from .. " " .. doc.payload.from')" = "COMPLETED nginx nginx" ]; then
  ok "trigger.tasks.trigger, runs.wait and runs.retrieve inside a request: $(json_field "$trig_json" 'doc.id') COMPLETED"
else
  not_ok "a task triggered and waited for inside nginx" "$trig_json"
fi

# --- TLS ---------------------------------------------------------------------------------------

if [ "$have_tls" = 1 ]; then
  tls=$(get /test/tls)
  good=$(json_field "$tls" 'doc.good.status .. " " .. doc.good.body:gsub("\n", "") .. " " .. doc.again.status')
  wrong=$(json_field "$tls" 'doc.wrong_name.error')
  untrusted=$(json_field "$tls" 'doc.untrusted.error')
  [ "$good" = "200 hello over tls 200" ] &&
    ok "https with verification against lua_ssl_trusted_certificate" ||
    not_ok "https with verification against lua_ssl_trusted_certificate" "$tls"
  case "$wrong" in
    *"TLS handshake"*) ok "a certificate for another host name is refused ($wrong)" ;;
    *) not_ok "a certificate for another host name is refused" "$tls" ;;
  esac
  case "$untrusted" in
    *"TLS handshake"*) ok "a certificate from an untrusted issuer is refused ($untrusted)" ;;
    *) not_ok "a certificate from an untrusted issuer is refused" "$tls" ;;
  esac
  statuses=$(get "/test/run?id=$run_a")
  [ "$statuses" = "COMPLETED" ] &&
    ok "subscribe_to_run over https ends by itself once the run is final" ||
    not_ok "subscribe_to_run over https ends by itself once the run is final" "$statuses"
else
  not_ok "openssl makes the test certificates (TLS checks skipped)"
fi

# --- the transport contract (spec/transport_contract.lua) against trigger.transport.ngx -------
# The cases busted runs against trigger.transport.curl (spec/transport_contract_spec.lua), here
# inside nginx: one "ok N" line per case.

if [ "$have_tls" = 1 ]; then
  closed_port=$(free_ports 1)
  closed_port=${closed_port%% *}
  get "/test/contract?closed=$closed_port" 60 >"$tmp/contract.out" 2>&1
  n_cases=0
  while IFS=$'\t' read -r verdict name why; do
    case "$verdict" in
      ok) ok "transport contract, ngx: $name"; n_cases=$((n_cases + 1)) ;;
      "not ok") not_ok "transport contract, ngx: $name" "$why"; n_cases=$((n_cases + 1)) ;;
      *) not_ok "transport contract, ngx: unexpected output" "$verdict $name $why" ;;
    esac
  done <"$tmp/contract.out"
  want_cases=$(grep -c '^case("' spec/transport_contract.lua)
  [ "$n_cases" -eq "$want_cases" ] && [ "$n_cases" -gt 0 ] &&
    ok "transport contract, ngx: all $n_cases cases ran" ||
    not_ok "transport contract, ngx: $n_cases of $want_cases cases ran" "$(tail -n 5 "$tmp/nginx/logs/error.log")"
else
  not_ok "transport contract, ngx: needs the test certificates (openssl)"
fi

# --- a run's realtime stream forwarded to a browser: /stream (issue 15) ------------------------
# trigger.streams.read over transport.ngx's open_stream, against the local server's streams in
# both framings: chunks before and after a cut mid-stream (the server resets the connection
# half-way through an event after 2 records: the library reopens from its position), then a
# browser's reconnect with Last-Event-ID, a stream that does not exist, and clients that leave.

stream_data() { sed -n 's/^data: //p' "$1"; }
stream_ids() { sed -n 's/^id: //p' "$1"; }
new_stream() { # new_stream VERSION -> the id of a new run with a stream "default" of that framing
  local id
  id=$(create_run '{"status":"EXECUTING"}')
  admin POST "_emulator/streams/$id/default" "{\"version\":\"$1\"}" >/dev/null
  echo "$id"
}
append_chunks() { admin POST "_emulator/streams/$1/default/append" "{\"chunks\":$2}" >/dev/null; }

for version in v2 v1; do
  run_s=$(new_stream "$version")
  append_chunks "$run_s" '[{"n":1},"two",3]'
  admin POST _emulator/faults '{"kind":"reset_mid_body","after":2,"count":1,"match":{"path_prefix":"/realtime/v1/streams"}}' >/dev/null
  out="$tmp/stream-$version.out"
  curl -sN --max-time 30 "http://127.0.0.1:$PORT/stream?run=$run_s" >"$out" 2>&1 &
  spid=$!
  pids+=("$spid")
  wait_for 10 has_data "$out" 3
  append_chunks "$run_s" '[{"text":"h\u00e9llo w\u00f6rld"},null,[1,2]]'
  wait_for 10 has_data "$out" 6
  sleep 0.5 # anything repeated would come now
  got=$(stream_data "$out" | tr '\n' ' ')
  want='{"n":1} "two" 3 {"text":"héllo wörld"} null [1,2] '
  ids=$(stream_ids "$out" | tr '\n' ' ')
  if [ "$version" = v2 ]; then want_ids='v2:0 v2:1 v2:2 v2:3 v2:4 v2:5 '; else
    want_ids=$(admin GET "_emulator/streams/$run_s/default" |
      JSON_DOC=$(cat) luajit -e 'for _, r in ipairs(require("cjson").decode(os.getenv("JSON_DOC")).records) do io.write("v1:", r.id, ":1 ") end' 2>&1)
  fi
  cut_seen=$(grep -c "trigger-realtime: stream $run_s/default: " "$tmp/nginx/logs/error.log")
  if [ "$got" = "$want" ] && [ "$ids" = "$want_ids" ] && [ "$cut_seen" -ge 1 ]; then
    ok "/stream forwards a $version stream as SSE: 6 chunks in order, across a cut mid-event (none lost or repeated), ids $ids"
  else
    not_ok "/stream forwards a $version stream as SSE across a cut mid-event" "want: $want" "got:  $got" \
      "ids: $ids (want $want_ids)" "on_error lines: $cut_seen" "$(tail -n 5 "$tmp/nginx/logs/error.log")"
  fi
  # A browser that reconnects sends the last id it saw: the stream resumes after it.
  third=$(stream_ids "$out" | sed -n 3p)
  curl -sN --max-time 2 -H "Last-Event-ID: $third" "http://127.0.0.1:$PORT/stream?run=$run_s" \
    >"$tmp/resume-$version.out" 2>&1
  got=$(stream_data "$tmp/resume-$version.out" | tr '\n' ' ')
  [ "$got" = '{"text":"héllo wörld"} null [1,2] ' ] &&
    ok "/stream with Last-Event-ID: $third resumes the $version stream after it" ||
    not_ok "/stream with Last-Event-ID resumes the $version stream after it" "got: $got"
  kill -TERM "$spid" 2>/dev/null
  wait "$spid" 2>/dev/null
done

# The server closes a quiet stream after its timeout (1 s here; v2 says [DONE] first): the
# library reopens it from its position, so a chunk appended after two idle closes still comes.
admin POST _emulator/stream_config '{"timeout_s":1}' >/dev/null
for version in v2 v1; do
  run_i=$(new_stream "$version")
  append_chunks "$run_i" '["before"]'
  out="$tmp/idle-$version.out"
  curl -sN --max-time 15 "http://127.0.0.1:$PORT/stream?run=$run_i" >"$out" 2>&1 &
  ipid=$!
  pids+=("$ipid")
  wait_for 5 has_data "$out" 1
  sleep 2.5
  append_chunks "$run_i" '["after"]'
  wait_for 5 has_data "$out" 2
  sleep 0.3
  got=$(stream_data "$out" | tr '\n' ' ')
  reads=$(JSON_DOC=$(admin GET _emulator/stats) RUN_ID=$run_i luajit -e '
    local n = 0
    for _, e in ipairs(require("cjson").decode(os.getenv("JSON_DOC")).log) do
      if tostring(e.path):find("/realtime/v1/streams/" .. os.getenv("RUN_ID"), 1, true) then n = n + 1 end
    end
    print(n)' 2>&1)
  [ "$got" = '"before" "after" ' ] && [ "${reads:-0}" -ge 3 ] 2>/dev/null &&
    ok "/stream goes on across the server's idle closes of a $version stream ($reads requests upstream)" ||
    not_ok "/stream goes on across the server's idle closes of a $version stream" "got: $got" "requests: $reads"
  kill -TERM "$ipid" 2>/dev/null
  wait "$ipid" 2>/dev/null
done
admin POST _emulator/stream_config '{"timeout_s":60}' >/dev/null

missing=$(get "/stream?run=run_doesnotexist" 5)
case "$missing" in
  *"event: error"*'"status":404'*) ok "/stream of a stream that does not exist ends with an error event (404)" ;;
  *) not_ok "/stream of a stream that does not exist ends with an error event (404)" "$missing" ;;
esac

# A bad request to /runs (a tag with a comma, a created_at that is no duration) is told to the
# browser as an error event, after the opening comment: not a 200 with the comment alone.
for q in "tag=a,b" "tag=a&created_at=soon"; do
  bad=$(get "/runs?$q" 5)
  case "$bad" in
    *"event: error"*"bad argument"*) ok "/runs?$q ends with an error event saying what is wrong" ;;
    *) not_ok "/runs?$q ends with an error event saying what is wrong" "$bad" ;;
  esac
done

# Browsers that leave mid-stream: the worker's requests in flight (open streams among them)
# come back to 0 once they are gone, and are counted while they are there.
run_q=$(new_stream v2)
append_chunks "$run_q" '["first"]'
leavers=()
for i in $(seq 1 10); do
  curl -sN --max-time 2 "http://127.0.0.1:$PORT/stream?run=$run_q" >"$tmp/leaver-$i.out" 2>&1 &
  leavers+=($!)
done
all_have_first() { local i; for i in $(seq 1 10); do has_data "$tmp/leaver-$i.out" 1 || return 1; done; }
wait_for 5 all_have_first
during=$(in_flight)
wait "${leavers[@]}" 2>/dev/null
if [ "${during:-0}" -ge 10 ] 2>/dev/null && wait_for 5 none_in_flight; then
  ok "10 clients that leave mid-stream: active() was $during while they read, back to 0 after"
else
  not_ok "10 clients that leave mid-stream: active() back to 0" "while reading: $during" "after: $(in_flight)"
fi

# A stream closed inside nginx closes its connection then, not when the request ends.
answer=$(get "/test/stream-close?run=$run_q" 15)
[ "$answer" = '"first" 0 "first" nil/closed 0 soon server-closed' ] &&
  ok "a stream closed between chunks, or from another light thread mid-read, closes its connection at once (active() 0)" ||
  not_ok "a stream closed between chunks, or from another light thread mid-read, closes its connection" "$answer"

# A stream read alone ends once its run is finished and the stream was read to its end (issue 27).
run_e=$(new_stream v2)
append_chunks "$run_e" '["one","two"]'
patch_run "$run_e" COMPLETED_SUCCESSFULLY
answer=$(get "/test/stream-ends?run=$run_e" 25)
[ "$answer" = '["one","two"] finished idle=few in-time' ] &&
  ok "a stream of a finished run read inside nginx ends by itself after its last chunk, without busy waits" ||
  not_ok "a stream of a finished run read inside nginx ends by itself" "$answer"

refused_port=$(free_ports 1)
answer=$(get "/test/stream-refused?port=${refused_port%% *}" 10)
[ "$answer" = "nil timeout network in-time" ] &&
  ok "next(1) on a stream whose server refuses connections returns nil, \"timeout\" in time, the failure retried" ||
  not_ok "next(1) on a stream whose server refuses connections returns in time" "$answer"

if [ "$have_tls" = 1 ]; then
  answer=$(get "/test/stream-tls?run=$run_q" 15)
  [ "$answer" = '"first" | network fatal=true retries=0' ] &&
    ok "a stream over https reads through lua_ssl_trusted_certificate; an untrusted certificate ends it at once, no retry" ||
    not_ok "streams over https: verified, and an untrusted certificate final at once" "$answer"
fi

# --- next(timeout) and poll() inside nginx -----------------------------------------------------

backoff_tag="user:backoff-$$"
admin POST _emulator/faults '{"kind":"status","status":500,"count":50,"match":{"path_prefix":"/realtime/v1/runs"}}' >/dev/null
answer=$(get "/test/next-in-backoff?tag=$(printf %s "$backoff_tag" | sed s/:/%3A/g)" 20)
admin DELETE _emulator/faults >/dev/null
[ "$answer" = "timeout timeout in-time" ] &&
  ok "next(1) inside nginx returns in time while its subscription backs off for up to 30 s" ||
  not_ok "next(1) inside nginx returns in time during a long backoff" "$answer"

idle_tag="user:idle-$$"
( sleep 1.5; admin POST _emulator/runs "{\"runTags\":[\"$idle_tag\"],\"status\":\"PENDING\"}" >/dev/null ) &
answer=$(get "/test/next-timeout?tag=$(printf %s "$idle_tag" | sed s/:/%3A/g)" 20)
wait $! 2>/dev/null
[ "$answer" = "nil/timeout nil/timeout bounded poll-refused QUEUED" ] &&
  ok "next(timeout) returns nil, \"timeout\" inside nginx and the run still arrives; poll() refuses clearly" ||
  not_ok "next(timeout) inside nginx" "$answer"

# A subscription closed from another light thread while its long-poll is held for 30 s.
admin POST _emulator/faults '{"kind":"delay","delay_ms":30000,"match":{"path_prefix":"/realtime/v1/runs","live":true},"count":1}' >/dev/null
answer=$(get "/test/close-elsewhere?tag=user%3Aclose-$$" 15)
[ "$answer" = "true nil/closed soon" ] &&
  ok "close() from another light thread ends a long-poll in progress (next() gives nil, \"closed\")" ||
  not_ok "close() from another light thread ends a long-poll in progress" "$answer"

# --- the request budget inside nginx (issue 28.1) --------------------------------------------
# A subscription whose every request after its first snapshot gets a storm answer of a hostile
# server (spec/storms.lua) was asked again at once, 6,500-15,000 times a second; now the first
# idle answer is free, the others back off (retry_base 0.1, retry_cap 1 here) and on_error hears
# of the streak once. /test/storm follows it until on_error is told, then 2 s more; the server
# counts the requests of its path: the snapshot, the streak until told, 2 s of backoff.

storm_requests() { json_field "$(admin GET _emulator/stats)" "math.floor(doc.paths['/realtime/v1/runs/$1'] or 0)"; }
for backend in electric native; do
  admin POST _emulator/backend "{\"backend\":\"$backend\"}" >/dev/null
  native=0; [ "$backend" = native ] && native=1
  for answer in "409 must-refetch, a new handle each time" "up-to-date at once, header only" \
      "up-to-date at once, body only"; do
    id=$(create_run '{"status":"PENDING"}')
    got=$(get "/test/storm?id=$id&native=$native&answer=$(printf %s "$answer" | sed 's/ /%20/g; s/,/%2C/g')" 20)
    used=$(storm_requests "$id")
    if [ "$got" = "first=QUEUED told=1 idle=true" ] && [ "$used" -le 25 ]; then
      ok "request budget inside nginx, $backend, $answer: $used requests, on_error told once"
    else
      not_ok "request budget inside nginx, $backend, $answer" "$got" "requests: $used (at most 25)"
    fi
  done
done
admin POST _emulator/backend '{"backend":"electric"}' >/dev/null

# --- libcurl stays out of nginx ----------------------------------------------------------------

stats=$(get /test/stats)
if [ "$(json_field "$stats" 'tostring(doc.curl_loaded or doc.transport_loaded)')" = false ] &&
  ! grep -q 'libcurl' "/proc/$WORKER/maps" 2>/dev/null && [ -r "/proc/$WORKER/maps" ]; then
  ok "libcurl is never loaded in the worker (trigger.curl absent, no libcurl in /proc/$WORKER/maps)"
else
  not_ok "libcurl is never loaded in the worker" "$stats" "$(grep libcurl "/proc/$WORKER/maps" | head -n 2)"
fi

if grep -E '\[(alert|crit|emerg)\]|lua entry thread aborted|runtime error' "$tmp/nginx/logs/error.log" >"$tmp/bad.log"; then
  not_ok "no Lua errors or alerts in nginx's error log" "$(head -n 5 "$tmp/bad.log")"
else
  ok "no Lua errors or alerts in nginx's error log"
fi

# Every [error] line (or worse) must be one a test provokes on purpose: a waiting subscription,
# a next(timeout) that runs out, a close() from another light thread write nothing there (a
# cosocket read that times out is logged at error level unless lua_socket_log_errors off, which
# the example sets: issue 19); with it even the TLS failures the tests provoke log nothing.
provoked='lua ssl certificate verify error|lua ssl certificate does not match host'
grep -E '\[(error|crit|alert|emerg)\]' "$tmp/nginx/logs/error.log" | grep -vE "$provoked" >"$tmp/unexpected.log"
allowed=$(grep -cE "$provoked" "$tmp/nginx/logs/error.log")
if [ -s "$tmp/unexpected.log" ]; then
  not_ok "error.log has no [error] line that no test provoked on purpose" \
    "$(wc -l <"$tmp/unexpected.log") unexpected, first:" "$(head -n 5 "$tmp/unexpected.log" | cut -c1-240)"
else
  ok "error.log has no [error] line that no test provoked on purpose ($allowed provoked)"
fi

finish
