-- Fan-out inside nginx (issue 17): CONSUMERS browser clients of the example's SSE location
-- (examples/openresty/nginx.conf, /runs?tag=…) on NTAGS tags (client i follows
-- fan:<(i-1) % NTAGS + 1>, one run per tag), nginx with WORKERS workers, shared upstreams (the
-- default) against the same example with share = false. The clients are cqueues sockets in this
-- process (HTTP/1.0, one coroutine each). Once every client has its run, it sets
-- run_bench_fanout_ctl EXECUTING and the local server (bench/scenario.lua) changes the tags'
-- runs in turn, stamping CLOCK_MONOTONIC into their metadata; a latency is our clock when a
-- client reads the event minus that stamp. Counted at the server: realtime requests (sync +
-- live) and the most live long-polls at one time; in nginx: the workers' VmRSS with every
-- client live.
--
-- usage (from the repository root, after make LUA=luajit):
--   lua5.4 bench/nginx_fanout.lua [CONSUMERS [WORKERS [UPDATES]]]
-- Prints a RESULT line with ready-made rows for bench/run.lua (BENCH_ONLY=nginx_fanout) and a
-- summary on stderr. Knobs: BENCH_NGINX_CONSUMERS (1000), BENCH_NGINX_WORKERS (2),
-- BENCH_NGINX_UPDATES (100), BENCH_NGINX_REPS (2: medians).
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local cjson = require "cjson"
local cqueues = require "cqueues"
local socket = require "cqueues.socket"
local helper = require "spec.helper"
local rows = require "rows"
local util = require "util"

local env_num = util.env_num

local CONSUMERS = tonumber(arg[1] or "") or env_num("BENCH_NGINX_CONSUMERS", 1000)
local WORKERS = tonumber(arg[2] or "") or env_num("BENCH_NGINX_WORKERS", 2)
local UPDATES = tonumber(arg[3] or "") or env_num("BENCH_NGINX_UPDATES", 100)
local REPS = env_num("BENCH_NGINX_REPS", 2)
local NTAGS = 10
local INTERVAL = 0.05
local DIR = os.getenv("PWD") .. "/bench/tmp/nginx_fanout"
local SECRET = helper.DEFAULT_SECRET_KEY
local monotime = cqueues.monotime

local function log(fmt, ...)
  io.stderr:write("[nginx fan-out] ", fmt:format(...), "\n")
end

local function sh(cmd)
  assert(os.execute(cmd), "failed: " .. cmd)
end

local read_file = util.read_file

local function free_port()
  local l = assert(socket.listen { host = "127.0.0.1", port = 0 })
  local _, _, port = l:localname()
  l:close()
  return port
end

-- The example, on our port, with WORKERS workers and room for the connections; share = false
-- in the subscription's options for the baseline.
local function write_conf(port, share)
  local conf = assert(read_file("examples/openresty/nginx.conf"))
  local n
  conf, n = conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. port .. ";")
  assert(n == 1, "examples/openresty/nginx.conf: no 'listen 127.0.0.1:8080;'")
  conf = conf:gsub("worker_processes 1;", "worker_processes " .. WORKERS .. ";")
  conf = conf:gsub("worker_connections 1024;", "worker_connections 8192;")
  -- the clients speak HTTP/1.0 (no chunked framing to undo): stream to them unbuffered
  conf = conf:gsub("access_log logs/access.log;", "access_log off;\n    lua_http10_buffering off;")
  if not share then
    conf, n = conf:gsub('created_at = created_at or "1h",', 'created_at = created_at or "1h", share = false,')
    assert(n == 1, "examples/openresty/nginx.conf: no 'created_at = created_at or \"1h\",'")
  end
  local f = assert(io.open(DIR .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
end

local function children(pid)
  local out = {}
  local text = read_file(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
  for p in text:gmatch("%d+") do out[#out + 1] = tonumber(p) end
  return out
end

local function start_nginx(base_url)
  sh(("mkdir -p %s/logs && rm -f %s/logs/nginx.pid"):format(DIR, DIR))
  sh(("TRIGGER_REALTIME_ROOT=%s TRIGGER_API_URL=%s TRIGGER_SECRET_KEY=%s nginx -p %s -c %s/nginx.conf "
    .. "-e %s/logs/error.log >%s/logs/start.out 2>&1 &"):format(os.getenv("PWD"), base_url, SECRET,
    DIR, DIR, DIR, DIR))
  local deadline = monotime() + 10
  while monotime() < deadline do
    local pid = tonumber(read_file(DIR .. "/logs/nginx.pid") or "")
    if pid and #children(pid) >= WORKERS then
      cqueues.sleep(0.3)
      return pid
    end
    cqueues.sleep(0.1)
  end
  error("nginx did not start: " .. (read_file(DIR .. "/logs/error.log") or ""))
end

local function stop_nginx(pid)
  os.execute("kill -TERM " .. pid)
  local deadline = monotime() + 10
  while monotime() < deadline and read_file("/proc/" .. pid .. "/status") do cqueues.sleep(0.1) end
end

local function workers_kb(pid)
  local kb = 0
  for _, w in ipairs(children(pid)) do kb = kb + (util.status_kb("VmRSS", w) or 0) end
  return kb
end

-- One measurement: nginx with the example (shared or not), CONSUMERS clients.
local function measure(srv, ids, share)
  srv:update_run("run_bench_fanout_ctl", { status = "PENDING", metadata = cjson.encode {
    ids = ids, updates = UPDATES, interval = INTERVAL } })
  for _, id in ipairs(ids) do srv:update_run(id, { metadata = '{"seq":0}' }) end
  local port = free_port()
  write_conf(port, share)
  local master = start_nginx(srv.base_url)
  local idle_kb = workers_kb(master)
  srv:reset_stats()
  local cq = cqueues.new()
  local synced, ended, latencies, failures = 0, 0, {}, {}
  local live = false
  for i = 1, CONSUMERS do
    cq:wrap(function()
      if i > 1 then cqueues.sleep((i // 100) * 0.05) end -- connect in waves of 100
      local tag = "fan%3A" .. ((i - 1) % NTAGS + 1)
      local s, err = socket.connect { host = "127.0.0.1", port = port }
      if not s then
        failures[#failures + 1] = tostring(err)
        return
      end
      s:settimeout(180)
      s:setmode("t", "bn")
      s:xwrite("GET /runs?tag=" .. tag .. " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", "n")
      local first = true
      for line in s:lines("*l") do
        local data = line:match("^data: (.*)$")
        if data then
          local now = monotime()
          local ok, run = pcall(cjson.decode, data)
          local meta = ok and type(run) == "table" and type(run.metadata) == "table" and run.metadata or {}
          if first then
            first = false
            synced = synced + 1
          elseif meta.t and live then
            latencies[#latencies + 1] = (now - meta.t) * 1000
          end
          if meta.done then break end
        end
      end
      ended = ended + 1
      s:close()
    end)
  end
  local t0 = monotime()
  local most_live, rss_kb, sync_s = 0, nil, nil
  cq:wrap(function()
    while synced + #failures < CONSUMERS and monotime() - t0 < 120 do cqueues.sleep(0.1) end
    sync_s = monotime() - t0
    cqueues.sleep(1)
    rss_kb = workers_kb(master)
    live = true
    srv:update_run("run_bench_fanout_ctl", { status = "EXECUTING" })
    while ended + #failures < CONSUMERS and monotime() - t0 < 300 do
      local a = srv:stats().active_realtime
      if a > most_live then most_live = a end
      cqueues.sleep(0.5)
    end
  end)
  assert(cq:loop())
  local st = srv:stats()
  stop_nginx(master)
  local err_log = read_file(DIR .. "/logs/error.log") or ""
  local bad = 0
  for _ in err_log:gmatch("%[alert%]") do bad = bad + 1 end
  for _ in err_log:gmatch("%[crit%]") do bad = bad + 1 end
  local want = CONSUMERS * UPDATES // NTAGS
  assert(#failures == 0, #failures .. " clients could not connect: " .. tostring(failures[1]))
  assert(ended == CONSUMERS, ("%d of %d clients saw the end"):format(ended, CONSUMERS))
  assert(#latencies >= want * 0.9, ("%d deliveries, expected %d"):format(#latencies, want))
  local m = { requests = st.realtime_requests, live = st.live_requests, most_live = most_live,
    p50 = util.percentile(latencies, 50), p99 = util.percentile(latencies, 99),
    rss_kb = rss_kb, idle_kb = idle_kb, sync_s = sync_s, deliveries = #latencies, alerts = bad }
  log("%s: %d realtime requests (%d live, at most %d at once), p50 %.2f ms, p99 %.2f ms, "
    .. "workers' RSS %.1f MB (idle %.1f), %d deliveries, synced in %.1f s",
    share and "shared" or "share = false", m.requests, m.live, m.most_live, m.p50, m.p99,
    rss_kb / 1024, idle_kb / 1024, m.deliveries, sync_s)
  return m
end

-- Without nginx or the LuaJIT build there is nothing to measure: no rows (make bench goes on).
local missing = not os.execute("command -v nginx >/dev/null 2>&1") and "nginx"
  or not io.open("build/luajit/trigger/core.so") and "build/luajit (make LUA=luajit)"
  or not io.open("/usr/share/nginx/modules/ngx_http_lua_module.so") and "libnginx-mod-http-lua"
if missing then
  log("skipped: no %s", missing)
  util.emit { rows = {}, skipped = missing }
  return
end

sh("mkdir -p " .. DIR)
log("%d clients on %d tags, nginx with %d workers, %d changes", CONSUMERS, NTAGS, WORKERS, UPDATES)
local srv = helper.start_server { hold_ms = 20000, scenario = "bench/scenario.lua" }
local ids = srv:admin("POST", "/_emulator/runs/bulk", { count = NTAGS,
  template = rows.template("fan:{{i}}", "EXECUTING") }).ids
srv:create_run { friendlyId = "run_bench_fanout_ctl", tags = { "bench:ctl" }, status = "PENDING" }
local ok, res = pcall(function()
  local all = { [true] = {}, [false] = {} }
  for rep = 1, REPS do -- alternating which goes first
    local first = rep % 2 == 1
    all[first][#all[first] + 1] = measure(srv, ids, first)
    all[not first][#all[not first] + 1] = measure(srv, ids, not first)
  end
  return all
end)
srv:stop()
if not ok then error(res, 0) end

-- The median of each number over the repetitions.
local function medians(list)
  local out = {}
  for k in pairs(list[1]) do
    local v = {}
    for i, m in ipairs(list) do v[i] = m[k] end
    out[k] = util.median(v)
    if k == "alerts" then out[k] = math.max(table.unpack(v)) end
  end
  return out
end
local s, u = medians(res[true]), medians(res[false])
local label = ("Fan-out in nginx: %s SSE clients on %d tags (%d workers)"):format(
  util.thousands(CONSUMERS), NTAGS, WORKERS)
local mb = function(kb) return kb / 1024 end
util.emit { shared = s, unshared = u, rows = {
  { name = label .. ", realtime requests at the server (sync + live)",
    ours = ("%.0f"):format(s.requests), base = ("%.0f with share = false"):format(u.requests),
    ratio = s.requests / u.requests, target = "—",
    detail = ("medians of %d repetitions; examples/openresty/nginx.conf's /runs; live long-polls "
      .. "at one time at most %.0f vs %.0f (the plan's concurrency limit counts these); live "
      .. "requests %.0f vs %.0f; %d changes, one every %.0f ms, each to %d clients; one "
      .. "upstream per tag for the whole nginx (the example's lua_shared_dict trigger_realtime)")
      :format(REPS, s.most_live, u.most_live, s.live, u.live, UPDATES, INTERVAL * 1000,
      CONSUMERS // NTAGS) },
  { name = "Fan-out in nginx: latency p50 (server change → SSE event at the client)",
    ours = ("%.2f ms"):format(s.p50), base = ("%.2f ms"):format(u.p50), ratio = s.p50 / u.p50,
    target = "—", detail = ("%.0f deliveries; the clients are cqueues sockets in one lua5.4 "
      .. "process on the same machine"):format(s.deliveries) },
  { name = "Fan-out in nginx: latency p99", ours = ("%.2f ms"):format(s.p99),
    base = ("%.2f ms"):format(u.p99), ratio = s.p99 / u.p99, target = "—",
    detail = ("median of %d repetitions' p99; [alert]/[crit] lines in nginx's error.log: %d and %d")
      :format(REPS, s.alerts, u.alerts) },
  { name = "Fan-out in nginx: workers' RSS with every client live",
    ours = ("%.1f MB"):format(mb(s.rss_kb)), base = ("%.1f MB"):format(mb(u.rss_kb)),
    ratio = s.rss_kb / u.rss_kb, target = "—",
    detail = ("VmRSS summed over the workers, 1 s after every client had its run (idle: %.1f vs "
      .. "%.1f MB); every client synced in %.1f vs %.1f s"):format(mb(s.idle_kb), mb(u.idle_kb),
      s.sync_s, u.sync_s) },
} }
