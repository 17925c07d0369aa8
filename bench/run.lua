-- make bench: every measurement of issue 8 side by side with a bare baseline measured in the
-- same run, medians over repetitions, written to bench/RESULTS.md. See bench/README.md for
-- what each row measures and why.
--
-- Runs from the repository root (mk/bench.mk does `lua5.4 bench/run.lua`). Knobs (environment):
--   BENCH_REPS (5)           throughput repetitions
--   BENCH_LAT_REPS (3)       latency repetitions of BENCH_LAT_UPDATES (1000) changes each
--   BENCH_MEM_UPDATES (1e6)  updates of the memory test (1,000 runs, 1,000 per round)
--   BENCH_MEM_BUDGET (150)   seconds the memory test may take; it stops early and says so
--   BENCH_SCALE_REPS (3)     scale/idle repetitions; BENCH_IDLE_S (10) idle seconds
--   BENCH_SYNC_RUNS (20000)  runs of the throughput test; BENCH_CHUNK_ROWS (5000)
--   BENCH_STREAM_LAT_UPDATES (500), BENCH_STREAM_CHUNKS (20000), BENCH_STREAM_MANY (100),
--   BENCH_STREAM_MANY_CHUNKS (1000), BENCH_STREAM_REPS (3)       the stream rows (issue 15)
--   BENCH_FAN_CONSUMERS (1000), BENCH_FAN_UPDATES (100), BENCH_FAN_REPS (2)   fan-out (issue 17)
--   BENCH_BURST_ROUNDS (5), BENCH_NATIVE_SCALE_REPS (2), BENCH_SYNC_BIG (100000)   issue 16
--   BENCH_ONLY (all)         a comma list of tests: throughput,latency,roundtrip,memory,scale,streams,
--                            fanout,native,sync100k,nginx_fanout (bench/nginx_fanout.lua's knobs)
--   BENCH_OUT (bench/RESULTS.md)
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
package.cpath = "build/5.4/?.so;" .. package.cpath

local cjson = require "cjson"
local helper = require "spec.helper"
local rows = require "rows"
local util = require "util"

local env_num = util.env_num

local REPS = env_num("BENCH_REPS", 5)
local LAT_REPS = env_num("BENCH_LAT_REPS", 3)
local LAT_UPDATES = env_num("BENCH_LAT_UPDATES", 1000)
local LAT_INTERVAL = 0.005
local MEM_RUNS = 1000
local MEM_UPDATES = env_num("BENCH_MEM_UPDATES", 1000000)
local MEM_BUDGET = env_num("BENCH_MEM_BUDGET", 150)
local SCALE_REPS = env_num("BENCH_SCALE_REPS", 3)
local SCALE_SUBS = 1000
local IDLE_S = env_num("BENCH_IDLE_S", 10)
local TICK_S = 5
local SYNC_RUNS = env_num("BENCH_SYNC_RUNS", 20000)
local CHUNK_ROWS = env_num("BENCH_CHUNK_ROWS", 5000)
local STREAM_LAT_UPDATES = env_num("BENCH_STREAM_LAT_UPDATES", 500)
local STREAM_CHUNKS = env_num("BENCH_STREAM_CHUNKS", 20000)
local STREAM_MANY = env_num("BENCH_STREAM_MANY", 100)
local STREAM_MANY_CHUNKS = env_num("BENCH_STREAM_MANY_CHUNKS", 1000)
local STREAM_REPS = env_num("BENCH_STREAM_REPS", 3)
local FAN_CONSUMERS = env_num("BENCH_FAN_CONSUMERS", 1000)
local FAN_TAGS = 10
local FAN_UPDATES = env_num("BENCH_FAN_UPDATES", 100)
local FAN_INTERVAL = 0.05
local FAN_REPS = env_num("BENCH_FAN_REPS", 2)
local BURST_RUNS = 1000
local BURST_ROUNDS = env_num("BENCH_BURST_ROUNDS", 5)
local SYNC_BIG = env_num("BENCH_SYNC_BIG", 100000)
local NATIVE_SCALE_REPS = env_num("BENCH_NATIVE_SCALE_REPS", 2)
local OUT = os.getenv("BENCH_OUT") or "bench/RESULTS.md"
local TMP = "bench/tmp"
local SECRET = helper.DEFAULT_SECRET_KEY

local ENV = 'LUA_PATH="lua/?.lua;lua/?/init.lua;bench/?.lua;;" LUA_CPATH="build/5.4/?.so;;" '

local started_at = util.now()
local function log(fmt, ...)
  io.stderr:write(("[bench %5.1fs] "):format(util.now() - started_at), fmt:format(...), "\n")
end

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

local read_file = util.read_file

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- Run a bench script; -> the table of its RESULT line.
local function run_lua(script, ...)
  local args = { ENV .. "lua5.4", script }
  for _, a in ipairs({ ... }) do args[#args + 1] = ("'%s'"):format(tostring(a)) end
  local p = assert(io.popen(table.concat(args, " ")))
  local out = p:read("a")
  p:close()
  local json = out:match("RESULT (%b{})")
  if not json then error(script .. " gave no result:\n" .. out) end
  return cjson.decode(json)
end

local function lines_of(path)
  local list = {}
  for line in io.lines(path) do list[#list + 1] = line end
  return list
end

-- A curl config replaying `urls` with the client's headers; bodies to out_dir/pageN.json.
local function curl_config(path, urls, out_dir)
  local parts = {
    "silent", "show-error", "fail",
    ('header = "Authorization: Bearer %s"'):format(SECRET),
    'header = "x-trigger-electric-version: 1.0.0-beta.1"',
    'header = "x-trigger-api-version: 2025-07-16"',
    'write-out = "TIME %{time_total}\\n"',
  }
  local files = {}
  for i, u in ipairs(urls) do
    files[i] = ("%s/page%d.json"):format(out_dir, i)
    parts[#parts + 1] = ('url = "%s"'):format(u)
    parts[#parts + 1] = ('output = "%s"'):format(files[i])
  end
  write_file(path, table.concat(parts, "\n") .. "\n")
  write_file(path .. ".list", table.concat(files, "\n") .. "\n")
  return files
end

-- Run curl on a config under /usr/bin/time. -> wall seconds (sum of the transfers' own
-- time_total when sequential, else the whole process), cpu seconds, peak RSS kB
local function run_curl(cfg, extra)
  local t0 = util.now()
  local p = assert(io.popen(("/usr/bin/time -f 'CURLSTAT %%e %%U %%S %%M' curl %s -K '%s' 2>&1")
    :format(extra or "", cfg)))
  local out = p:read("a")
  p:close()
  local wall = util.now() - t0
  local _, user, sys, maxrss = out:match("CURLSTAT (%S+) (%S+) (%S+) (%d+)")
  assert(maxrss, "curl failed:\n" .. out)
  local transfers = 0
  for t in out:gmatch("TIME (%S+)") do transfers = transfers + tonumber(t) end
  return { wall = wall, transfers = transfers, cpu = tonumber(user) + tonumber(sys),
           maxrss_kb = tonumber(maxrss) }
end

local function mb(kb) return kb / 1024 end

local results = {}   -- rows of the table, in order

local function row(t) results[#results + 1] = t end

---------------------------------------------------------------------------------------------------
-- 1. Throughput and peak memory of the initial sync

-- spec (all optional): backend ("native": helper.start_server's native_max_runs lifted over
-- the run count), runs (SYNC_RUNS), reps (REPS), prefix (of the row names), dir ("sync"),
-- rows (the row kinds: "wall", "cpu", "rss")
local function bench_throughput(spec)
  spec = spec or {}
  local SYNC_RUNS, REPS = spec.runs or SYNC_RUNS, spec.reps or REPS -- luacheck: ignore 431
  local prefix, want = spec.prefix or "", spec.rows or { wall = true, cpu = true, rss = true }
  log("throughput%s: %d runs, chunk_rows %d", spec.backend and (" (" .. spec.backend .. ")") or "",
      SYNC_RUNS, CHUNK_ROWS)
  local dir = TMP .. "/" .. (spec.dir or "sync")
  sh("rm -rf " .. dir .. " && mkdir -p " .. dir .. "/pages")
  local srv = helper.start_server { chunk_rows = CHUNK_ROWS, hold_ms = 20000,
    scenario = "bench/scenario.lua", backend = spec.backend,
    native_max_runs = spec.backend == "native" and math.max(100000, SYNC_RUNS) or nil }
  for from = 1, SYNC_RUNS, 20000 do
    srv:admin("POST", "/_emulator/runs/bulk", { count = math.min(20000, SYNC_RUNS - from + 1),
      template = rows.template("bench:sync") })
  end
  -- Warm-up (fills the server's response cache) and the request sequence to replay.
  local urls_file = dir .. "/urls.txt"
  run_lua("bench/sync_client.lua", srv.base_url, "bench:sync", SYNC_RUNS, urls_file)
  local urls = lines_of(urls_file)
  local cfg = dir .. "/curl.cfg"
  local files = curl_config(cfg, urls, dir .. "/pages")
  run_curl(cfg)
  local bytes = 0
  for _, f in ipairs(files) do bytes = bytes + #read_file(f) end
  local client, base = {}, {}
  for rep = 1, REPS do
    local function measure_client()
      client[#client + 1] = run_lua("bench/sync_client.lua", srv.base_url, "bench:sync", SYNC_RUNS)
    end
    local function measure_base()
      local c = run_curl(cfg)
      local d = run_lua("bench/sync_bare.lua", "@" .. cfg .. ".list")
      assert(d.runs == SYNC_RUNS, "baseline decoded " .. d.runs .. " runs")
      base[#base + 1] = { seconds = c.transfers + d.seconds, cpu = c.cpu + d.cpu,
                          hwm_kb = math.max(c.maxrss_kb, d.hwm_kb), curl = c.transfers,
                          decode = d.seconds }
    end
    if rep % 2 == 1 then measure_client() measure_base() else measure_base() measure_client() end
    log("  rep %d: client %.3f s, baseline %.3f s (curl %.3f + decode %.3f)", rep,
        client[#client].seconds, base[#base].seconds, base[#base].curl, base[#base].decode)
  end
  srv:stop()
  local function med(list, k)
    local v = {}
    for i, r in ipairs(list) do v[i] = r[k] end
    return util.median(v)
  end
  local cs, bs = med(client, "seconds"), med(base, "seconds")
  if want.wall then
    row { name = ("%sThroughput: %s-run initial sync, wall time"):format(prefix,
            util.thousands(SYNC_RUNS)),
          ours = ("%.3f s"):format(cs), base = ("%.3f s"):format(bs), ratio = cs / bs,
          target = "≤ 0.8×", met = cs / bs <= 0.8, -- issue 16 (issue 8 asked ≤ 1.3×)
          detail = ("%d pages, %.1f MB, %.0f runs/s; baseline curl %.3f s + cjson %.3f s"):format(
            #urls, bytes / 1e6, SYNC_RUNS / cs, med(base, "curl"), med(base, "decode")) }
  end
  local cc, bc = med(client, "cpu"), med(base, "cpu")
  if want.cpu then
    row { name = prefix .. "Throughput: same sync, CPU time (user+sys)",
          ours = ("%.3f s"):format(cc),
          base = ("%.3f s"):format(bc), ratio = cc / bc, target = "—",
          detail = "baseline: curl process + decoder process" }
  end
  local ch, bh = med(client, "hwm_kb"), med(base, "hwm_kb")
  if want.rss then
    row { name = ("%sMemory: peak RSS of the %s-run sync"):format(prefix,
            util.thousands(SYNC_RUNS)), ours = ("%.1f MB"):format(mb(ch)),
          base = ("%.1f MB"):format(mb(bh)), ratio = ch / bh,
          target = "≤ 1.0×", met = ch / bh <= 1.0,
          detail = (spec.rss_detail and spec.rss_detail(ch, bh) or "")
            .. "VmHWM; baseline: the larger of curl's and the decoder's peak" }
  end
  return { bytes = bytes, pages = #urls, hwm_kb = ch, base_hwm_kb = bh }
end

---------------------------------------------------------------------------------------------------
-- 2. Live latency

local function bench_latency()
  log("latency: %d x %d changes, one every %.0f ms", LAT_REPS, LAT_UPDATES, LAT_INTERVAL * 1000)
  local srv = helper.start_server { hold_ms = 20000, scenario = "bench/scenario.lua" }
  local function fresh_run()
    pcall(srv.delete_run, srv, "run_bench_latency")
    srv:create_run { friendlyId = "run_bench_latency", tags = { "bench:latency" },
      status = "PENDING", metadataType = "application/json",
      metadata = cjson.encode { updates = LAT_UPDATES, interval = LAT_INTERVAL } }
  end
  local client, base = { p50 = {}, p99 = {}, all = {} }, { p50 = {}, p99 = {}, all = {} }
  -- A change that comes in the same response as the next one (the machine busy) is handed
  -- out once, in its latest state (one yield per changed run per batch): counted, not fatal.
  local function record(into, r)
    local l = r.latencies_ms
    assert(#l >= LAT_UPDATES * 0.98 and #l <= LAT_UPDATES,
      ("%d latencies instead of %d"):format(#l, LAT_UPDATES))
    into.merged = (into.merged or 0) + LAT_UPDATES - #l
    into.p50[#into.p50 + 1] = util.percentile(l, 50)
    into.p99[#into.p99 + 1] = util.percentile(l, 99)
    for _, v in ipairs(l) do into.all[#into.all + 1] = v end
  end
  for rep = 1, LAT_REPS do
    local function measure_client()
      fresh_run()
      record(client, run_lua("bench/latency_client.lua", srv.base_url, srv.port, "bench:latency"))
    end
    local function measure_base()
      fresh_run()
      record(base, run_lua("bench/latency_bare.lua", srv.port, "bench:latency"))
    end
    if rep % 2 == 1 then measure_client() measure_base() else measure_base() measure_client() end
    log("  rep %d: client p50 %.3f p99 %.3f ms, bare p50 %.3f p99 %.3f ms", rep,
        client.p50[#client.p50], client.p99[#client.p99], base.p50[#base.p50], base.p99[#base.p99])
  end
  srv:stop()
  local c50, b50 = util.median(client.p50), util.median(base.p50)
  local c99, b99 = util.median(client.p99), util.median(base.p99)
  row { name = ("Live latency p50 (server change → run in the loop, %d changes)"):format(LAT_UPDATES),
        ours = ("%.3f ms"):format(c50), base = ("%.3f ms"):format(b50), ratio = c50 / b50,
        target = "< 2 ms", met = c50 < 2,
        detail = ("max %.2f ms (all reps)%s; baseline: luasocket long-poll + cjson"):format(
          util.percentile(client.all, 100), (client.merged or 0) > 0 and (", %d change%s "
            .. "merged into the next one's batch"):format(client.merged,
            client.merged == 1 and "" or "s") or "") }
  row { name = "Live latency p99", ours = ("%.3f ms"):format(c99), base = ("%.3f ms"):format(b99),
        ratio = c99 / b99, target = "—", detail = "median of the repetitions' p99" }
end

-- Trigger → run finished (issue 30): trigger.tasks.trigger + trigger.runs.wait (realtime, not
-- polling) against the emulator's worker, for a task that finishes at once and one that takes
-- 200 ms (100 ms queued, 100 ms running), on both feeds. No baseline: the SDK's runs.poll
-- retrieves once a second, so its round trip is ~1 s by construction.
local function bench_roundtrip()
  local n = util.env_num("BENCH_ROUNDTRIP_RUNS", 50)
  log("trigger → finished: %d runs in a row, per feed and task", n)
  local tasks = {
    instant = { queue_ms = 0, steps = { { output = { ok = true } } } },
    ["takes-200ms"] = { queue_ms = 100, steps = { { sleep = 0.1 }, { output = { ok = true } } } },
  }
  for _, backend in ipairs { "electric", "native" } do
    local srv = helper.start_server { hold_ms = 20000, backend = backend }
    srv:admin("POST", "/_emulator/tasks", { tasks = tasks })
    for _, task in ipairs { "instant", "takes-200ms" } do
      local t = run_lua("bench/roundtrip_client.lua", srv.base_url, task, n).times_ms
      table.remove(t, 1) -- the first pays for the connections
      local p50 = util.percentile(t, 50)
      row { name = ("Trigger → run finished (%s task, %s feed)"):format(task, backend),
            ours = ("%.1f ms"):format(p50), base = "—", target = "—",
            detail = ("p50 of %d in a row (p99 %.1f ms): trigger.tasks.trigger then "
              .. "trigger.runs.wait on the realtime feed%s"):format(#t, util.percentile(t, 99),
              backend == "native" and "; the native feed answers a live poll "
              .. "`native_coalesce_ms` (250) after the first change" or "") }
    end
    srv:stop()
  end
end

---------------------------------------------------------------------------------------------------
-- 3. RSS under a million updates

local function bench_memory()
  local rounds = MEM_UPDATES // MEM_RUNS
  log("memory: %d updates to %d runs (%d rounds, budget %d s)", MEM_UPDATES, MEM_RUNS, rounds,
      MEM_BUDGET)
  local srv = helper.start_server { hold_ms = 20000 }
  local ids = srv:admin("POST", "/_emulator/runs/bulk", { count = MEM_RUNS,
    template = rows.template("bench:mem", "EXECUTING") }).ids
  local p = assert(io.popen(ENV .. ("lua5.4 bench/mem_client.lua '%s' bench:mem %d"):format(
    srv.base_url, MEM_RUNS)))
  local t0 = util.now()
  local samples = {} -- round -> rss kB (round 0 = the initial sync)
  local done = 0
  for k = 0, rounds do
    local line = assert(p:read("l"), "mem_client ended early")
    local r, rss = line:match("^ROUND (%d+) (%d+)")
    assert(tonumber(r) == k, "unexpected line: " .. line)
    samples[k] = tonumber(rss)
    if k == rounds or util.now() - t0 > MEM_BUDGET then break end
    srv:admin("POST", "/_emulator/runs/bulk_update", { ids = ids,
      fields = { metadata = '{"progress":' .. k .. ',"step":"round","i":{{i}}}' } })
    done = done + MEM_RUNS
    if k % 10 == 9 then srv:admin("POST", "/_emulator/compact", { keep = MEM_RUNS }) end
    if k % 100 == 99 then log("  %d updates, RSS %.1f MB", done, mb(samples[k])) end
  end
  srv:update_run(ids[1], { metadata = '{"stop":true}' })
  local tail = p:read("a")
  p:close()
  local result = cjson.decode((assert(tail:match("RESULT (%b{})"), tail)))
  local seconds = util.now() - t0
  srv:stop()
  local last = #samples
  local warm = math.min(100, last // 10)
  local peak_after = 0
  for k = warm, last do peak_after = math.max(peak_after, samples[k]) end
  local growth = samples[last] - samples[warm]
  local ratio = samples[last] / samples[warm]
  local short = done < MEM_UPDATES
  row { name = ("Memory: RSS after %s updates to %s runs"):format(util.thousands(done),
          util.thousands(MEM_RUNS)),
        ours = ("%.1f MB"):format(mb(samples[last])),
        base = ("%.1f MB at %s"):format(mb(samples[warm]), util.thousands(warm * MEM_RUNS)),
        ratio = ratio, target = "no growth after warm-up", met = ratio <= 1.05,
        detail = ("growth %+.1f MB; peak after warm-up %.1f MB; %.0f s, %.0f updates/s%s"):format(
          mb(growth), mb(peak_after), seconds, done / seconds,
          short and (" (stopped at the %d s budget)"):format(MEM_BUDGET) or "") }
  return { samples = samples, result = result }
end

---------------------------------------------------------------------------------------------------
-- 4 and 5. Scale and idle cost

local function curl_idle(live_urls, seconds)
  -- curl allows at most 300 transfers in parallel: 4 processes of 250 long-polls each.
  local dir = TMP .. "/idle"
  sh("rm -rf " .. dir .. " && mkdir -p " .. dir)
  local per = math.ceil(#live_urls / 4)
  local pids = {}
  for k = 1, 4 do
    local part = {}
    for i = (k - 1) * per + 1, math.min(k * per, #live_urls) do part[#part + 1] = live_urls[i] end
    if #part > 0 then
      local cfg = ("%s/idle%d.cfg"):format(dir, k)
      sh(("mkdir -p %s/%d"):format(dir, k))
      curl_config(cfg, part, ("%s/%d"):format(dir, k))
      local p = io.popen(("curl --parallel --parallel-max 300 -K '%s' >/dev/null 2>&1 & echo $!")
        :format(cfg))
      pids[#pids + 1] = tonumber(p:read("l"))
      p:close()
    end
  end
  local settle = util.now() + 2
  while util.now() < settle do os.execute("sleep 0.2") end
  local cpu0 = 0
  for _, pid in ipairs(pids) do cpu0 = cpu0 + (util.cpu_seconds(pid) or 0) end
  local t0 = util.now()
  os.execute(("sleep %d"):format(seconds))
  local cpu1 = 0
  for _, pid in ipairs(pids) do cpu1 = cpu1 + (util.cpu_seconds(pid) or 0) end
  local wall = util.now() - t0
  for _, pid in ipairs(pids) do os.execute("kill " .. pid .. " 2>/dev/null") end
  return { cpu = cpu1 - cpu0, wall = wall }
end

local function bench_scale_idle(backend, reps)
  local SCALE_REPS = reps or SCALE_REPS -- luacheck: ignore 431
  local prefix = backend and "Native: " or ""
  log("scale and idle%s: %d subscriptions, %d reps, %d s idle", backend and " (native)" or "",
      SCALE_SUBS, SCALE_REPS, IDLE_S)
  local dir = TMP .. "/scale"
  sh("rm -rf " .. dir .. " && mkdir -p " .. dir .. "/pages")
  local srv = helper.start_server { hold_ms = 60000, scenario = "bench/scenario.lua",
    backend = backend }
  srv:admin("POST", "/_emulator/runs/bulk", { count = SCALE_SUBS,
    template = rows.template("scale:{{i}}", "EXECUTING") })
  local urls_file, live_file = dir .. "/urls.txt", dir .. "/live.txt"
  -- Warm-up: fills the server's response cache.
  run_lua("bench/many_client.lua", srv.base_url, "scale:", SCALE_SUBS, 0, urls_file, live_file, 0)
  local cfg = dir .. "/curl.cfg"
  curl_config(cfg, lines_of(urls_file), dir .. "/pages")
  local scale, scale_base, idle, idle_base, tick = {}, {}, {}, {}, {}
  local wakeups, ticks = {}, {}
  for rep = 1, SCALE_REPS do
    local r = run_lua("bench/many_client.lua", srv.base_url, "scale:", SCALE_SUBS, IDLE_S,
                      urls_file, live_file, TICK_S)
    assert(r.live == SCALE_SUBS, r.live .. " live requests instead of " .. SCALE_SUBS)
    scale[#scale + 1] = r.scale_s
    idle[#idle + 1] = r.idle_cpu / r.idle_wall
    tick[#tick + 1] = r.tick_cpu / r.tick_wall
    wakeups[#wakeups + 1] = ("%d"):format(r.wakeups)
    ticks[#ticks + 1] = r.ticks / r.tick_wall
    local c = run_curl(cfg, "--parallel --parallel-max 300")
    local d = run_lua("bench/sync_bare.lua", "@" .. cfg .. ".list")
    scale_base[#scale_base + 1] = c.wall + d.seconds
    local ci = curl_idle(lines_of(live_file), IDLE_S)
    idle_base[#idle_base + 1] = ci.cpu / ci.wall
    log("  rep %d: scale %.3f s (curl %.3f + %.3f s); idle %.3f%% (%d wakeups), curl %.3f%%; "
        .. "20 Hz loop %.2f%%", rep, r.scale_s, c.wall, d.seconds, idle[rep] * 100, r.wakeups,
        idle_base[rep] * 100, tick[rep] * 100)
  end
  srv:stop()
  local s, sb = util.median(scale), util.median(scale_base)
  row { name = ("%sScale: %s subscriptions (own tag, one run each) up to date"):format(prefix,
          util.thousands(SCALE_SUBS)),
        ours = ("%.3f s"):format(s), base = ("%.3f s"):format(sb), ratio = s / sb, target = "—",
        detail = ("baseline: the same %d requests replayed by one curl --parallel "
          .. "(300 at a time) + cjson decoding"):format(#lines_of(urls_file)) }
  local i, ib = util.median(idle), util.median(idle_base)
  row { name = ("%sIdle: %s subscriptions in live long-polls, %d s"):format(prefix,
          util.thousands(SCALE_SUBS), IDLE_S),
        ours = ("%.3f%% of a core"):format(i * 100), base = ("%.3f%% of a core"):format(ib * 100),
        ratio = ib > 0 and i / ib or nil, target = "< 1% of a core", met = i < 0.01,
        detail = ("event-driven: trigger.step(remaining), then poll() all; %s wakeups; "
          .. "baseline: 4 curl --parallel processes of 250"):format(
          table.concat(wakeups, "/")) }
  local t = util.median(tick)
  if backend then return end
  row { name = "Idle, game-loop style: poll() all 1,000 each tick, trigger.step(0.05)",
        ours = ("%.2f%% of a core"):format(t * 100), base = "—", target = "—",
        detail = ("%.0f ticks/s"):format(util.median(ticks)) }
end

---------------------------------------------------------------------------------------------------
-- 6. Realtime streams (issue 15): chunk latency, chunks/s of one stream and of 100 at once

local function chunk_list(from, to)
  local list = {}
  for i = from, to do
    list[#list + 1] = { i = i, text = "a token of the model's answer, chunk " .. i }
  end
  return list
end

local function fill_stream(srv, run, key, n)
  for from = 1, n, 1000 do
    srv:append_stream(run, key, chunk_list(from, math.min(n, from + 999)))
  end
end

local function bench_streams()
  log("streams: latency %d x %d chunks; %d chunks on 1 stream; %d streams x %d chunks",
      LAT_REPS, STREAM_LAT_UPDATES, STREAM_CHUNKS, STREAM_MANY, STREAM_MANY_CHUNKS)
  local srv = helper.start_server { hold_ms = 20000, scenario = "bench/scenario.lua" }
  local key = "bench"
  srv:create_run { friendlyId = "run_bench_stream_ctl", tags = { "bench:ctl" }, status = "PENDING" }
  -- Latency: a fresh run and stream per measurement, opened with a {"ready": true} chunk.
  local client, base = { p50 = {}, p99 = {}, all = {} }, { p50 = {}, p99 = {}, all = {} }
  local n_runs = 0
  local function fresh_stream()
    n_runs = n_runs + 1
    local run = "run_bstream_lat_" .. n_runs
    srv:create_run { friendlyId = run, tags = { "bench:stream" }, status = "EXECUTING" }
    srv:append_stream(run, key, { { ready = true } })
    srv:update_run("run_bench_stream_ctl", { status = "PENDING", metadata = cjson.encode {
      run = run, key = key, updates = STREAM_LAT_UPDATES, interval = LAT_INTERVAL } })
    return run
  end
  local function record(into, r)
    local l = r.latencies_ms
    assert(#l == STREAM_LAT_UPDATES, ("%d latencies instead of %d"):format(#l, STREAM_LAT_UPDATES))
    into.p50[#into.p50 + 1] = util.percentile(l, 50)
    into.p99[#into.p99 + 1] = util.percentile(l, 99)
    for _, v in ipairs(l) do into.all[#into.all + 1] = v end
  end
  for rep = 1, LAT_REPS do
    local function measure_client()
      record(client, run_lua("bench/stream_client.lua", "latency", srv.base_url, srv.port,
        fresh_stream(), key))
    end
    local function measure_base()
      record(base, run_lua("bench/stream_bare.lua", "latency", srv.port, fresh_stream(), key))
    end
    if rep % 2 == 1 then measure_client() measure_base() else measure_base() measure_client() end
    log("  rep %d: chunk latency client p50 %.3f p99 %.3f ms, bare p50 %.3f p99 %.3f ms", rep,
        client.p50[#client.p50], client.p99[#client.p99], base.p50[#base.p50], base.p99[#base.p99])
  end
  local c50, b50 = util.median(client.p50), util.median(base.p50)
  local c99, b99 = util.median(client.p99), util.median(base.p99)
  row { name = ("Stream chunk latency p50 (append at the server → chunk in the loop, %d chunks)")
          :format(STREAM_LAT_UPDATES),
        ours = ("%.3f ms"):format(c50), base = ("%.3f ms"):format(b50), ratio = c50 / b50,
        target = "—", detail = ("v2 framing; max %.2f ms (all reps); baseline: luasocket SSE "
          .. "reader + cjson"):format(util.percentile(client.all, 100)) }
  row { name = "Stream chunk latency p99", ours = ("%.3f ms"):format(c99),
        base = ("%.3f ms"):format(b99), ratio = c99 / b99, target = "—",
        detail = "median of the repetitions' p99" }
  -- Throughput: stored chunks read from the start.
  srv:create_run { friendlyId = "run_bstream_one_1", tags = { "bench:stream" },
    status = "EXECUTING" }
  fill_stream(srv, "run_bstream_one_1", key, STREAM_CHUNKS)
  for i = 1, STREAM_MANY do
    local run = "run_bstream_many_" .. i
    srv:create_run { friendlyId = run, tags = { "bench:stream" }, status = "EXECUTING" }
    fill_stream(srv, run, key, STREAM_MANY_CHUNKS)
  end
  local function throughput(label, prefix, n, chunks)
    local cs, bs, ccpu, bcpu = {}, {}, {}, {}
    for rep = 1, STREAM_REPS do
      local function measure_client()
        local r = run_lua("bench/stream_client.lua", "throughput", srv.base_url, prefix, n, key,
          chunks)
        assert(r.chunks == n * chunks, r.chunks .. " chunks instead of " .. n * chunks)
        cs[#cs + 1], ccpu[#ccpu + 1] = r.seconds, r.cpu
      end
      local function measure_base()
        local r = run_lua("bench/stream_bare.lua", "throughput", srv.port, prefix, n, key, chunks)
        assert(r.chunks == n * chunks, r.chunks .. " chunks instead of " .. n * chunks)
        bs[#bs + 1], bcpu[#bcpu + 1] = r.seconds, r.cpu
      end
      if rep % 2 == 1 then measure_client() measure_base() else measure_base() measure_client() end
      log("  rep %d: %s: client %.3f s, bare %.3f s", rep, label, cs[#cs], bs[#bs])
    end
    local c, b = util.median(cs), util.median(bs)
    local total = n * chunks
    row { name = ("Stream throughput: %s"):format(label),
          ours = ("%s chunks/s"):format(util.thousands(math.floor(total / c))),
          base = ("%s chunks/s"):format(util.thousands(math.floor(total / b))), ratio = b / c,
          target = "—",
          detail = ("%s chunks of ~70 bytes read from the start (ratio: our chunks/s ÷ "
            .. "the baseline's, below 1 is slower); CPU %.3f s vs %.3f s; the local server's "
            .. "batching (1000 records) bounds both"):format(util.thousands(total),
            util.median(ccpu), util.median(bcpu)) }
  end
  throughput("1 stream", "run_bstream_one_", 1, STREAM_CHUNKS)
  throughput(("%d streams at once"):format(STREAM_MANY), "run_bstream_many_", STREAM_MANY,
    STREAM_MANY_CHUNKS)
  srv:stop()
end

---------------------------------------------------------------------------------------------------
-- 7. Fan-out (issue 17): 1,000 consumers on 10 tags in one process, shared upstreams (the
-- default) against share = false

local function bench_fanout()
  log("fan-out: %d consumers on %d tags, %d changes, %d reps", FAN_CONSUMERS, FAN_TAGS,
      FAN_UPDATES, FAN_REPS)
  local srv = helper.start_server { hold_ms = 60000, scenario = "bench/scenario.lua" }
  local ids = srv:admin("POST", "/_emulator/runs/bulk", { count = FAN_TAGS,
    template = rows.template("fan:{{i}}", "EXECUTING") }).ids
  srv:create_run { friendlyId = "run_bench_fanout_ctl", tags = { "bench:ctl" }, status = "PENDING" }
  local res = { [true] = {}, [false] = {} }
  local function measure(share)
    srv:update_run("run_bench_fanout_ctl", { status = "PENDING", metadata = cjson.encode {
      ids = ids, updates = FAN_UPDATES, interval = FAN_INTERVAL } })
    for _, id in ipairs(ids) do srv:update_run(id, { metadata = '{"seq":0}' }) end
    srv:reset_stats()
    local r = run_lua("bench/fanout_client.lua", srv.base_url, srv.port, "fan:", FAN_TAGS,
      FAN_CONSUMERS, share and 1 or 0)
    local st = srv:stats()
    local want = FAN_CONSUMERS * FAN_UPDATES // FAN_TAGS
    assert(#r.latencies_ms >= want * 0.9, ("%d deliveries, expected %d"):format(
      #r.latencies_ms, want))
    local into = res[share]
    into[#into + 1] = { requests = st.realtime_requests, live = st.live_requests,
      p50 = util.percentile(r.latencies_ms, 50), p99 = util.percentile(r.latencies_ms, 99),
      rss = r.rss_kb, hwm = r.hwm_kb, cpu = r.live_cpu / r.live_wall, sync = r.sync_s,
      deliveries = #r.latencies_ms, upstreams = share and r.upstreams or FAN_CONSUMERS }
    local m = into[#into]
    log("  %s: %d requests (%d live), p50 %.2f p99 %.2f ms, RSS %.1f MB, live CPU %.1f%%",
        share and "shared" or "unshared", m.requests, m.live, m.p50, m.p99, mb(m.rss), m.cpu * 100)
  end
  for rep = 1, FAN_REPS do
    if rep % 2 == 1 then measure(true) measure(false) else measure(false) measure(true) end
  end
  srv:stop()
  local function med(share, k)
    local v = {}
    for i, m in ipairs(res[share]) do v[i] = m[k] end
    return util.median(v)
  end
  -- A count's median over an even number of repetitions can be a half: shown rounded.
  local function count(share, k) return math.floor(med(share, k) + 0.5) end
  local label = ("Fan-out: %s consumers on %d tags"):format(util.thousands(FAN_CONSUMERS), FAN_TAGS)
  local sr, ur = count(true, "requests"), count(false, "requests")
  row { name = label .. ", realtime requests at the server (sync + live)",
        ours = ("%d"):format(sr), base = ("%d unshared"):format(ur), ratio = sr / ur, target = "—",
        detail = ("%d upstream shapes shared vs %d; live requests %d vs %d; %d changes, one "
          .. "every %.0f ms, each delivered to %d consumers; baseline: the same with share = false")
          :format(count(true, "upstreams"), count(false, "upstreams"), count(true, "live"),
          count(false, "live"), FAN_UPDATES, FAN_INTERVAL * 1000, FAN_CONSUMERS // FAN_TAGS) }
  local s50, u50, s99, u99 = med(true, "p50"), med(false, "p50"), med(true, "p99"), med(false, "p99")
  row { name = "Fan-out: latency p50 (server change → run in each consumer's loop)",
        ours = ("%.2f ms"):format(s50), base = ("%.2f ms"):format(u50), ratio = s50 / u50,
        target = "—", detail = ("%d deliveries per repetition; poll loop over all consumers after each "
          .. "trigger.step"):format(count(true, "deliveries")) }
  row { name = "Fan-out: latency p99", ours = ("%.2f ms"):format(s99),
        base = ("%.2f ms"):format(u99), ratio = s99 / u99, target = "—",
        detail = "median of the repetitions' p99" }
  local sm, um = med(true, "rss"), med(false, "rss")
  row { name = "Fan-out: RSS with every consumer live", ours = ("%.1f MB"):format(mb(sm)),
        base = ("%.1f MB"):format(mb(um)), ratio = sm / um, target = "—",
        detail = ("VmRSS after the sync; peak %.1f vs %.1f MB; up to date in %.3f vs %.3f s; CPU "
          .. "while changes flow %.1f%% vs %.1f%% of a core"):format(mb(med(true, "hwm")),
          mb(med(false, "hwm")), med(true, "sync"), med(false, "sync"), med(true, "cpu") * 100,
          med(false, "cpu") * 100) }
end

---------------------------------------------------------------------------------------------------
-- 8. Live burst (issue 16): 1,000 runs changing at once (one bulk update), until the last of
-- them is in the loop; both dialects (native with native_coalesce_ms = 0: no wake delay)

local function bench_burst(backend)
  log("burst (%s): %d runs changing at once, %d rounds", backend, BURST_RUNS, BURST_ROUNDS)
  local srv = helper.start_server { hold_ms = 20000, backend = backend, native_coalesce_ms = 0,
    native_max_runs = math.max(1000, BURST_RUNS) }
  local tag = "burst:" .. backend
  local ids = srv:admin("POST", "/_emulator/runs/bulk", { count = BURST_RUNS,
    template = rows.template(tag, "EXECUTING") }).ids
  local n_round = 0
  local function drive(cmd)
    local p = assert(io.popen(ENV .. cmd))
    assert(p:read("l") == "READY", cmd .. ": no READY")
    local last, first = {}, {}
    for k = 1, BURST_ROUNDS do
      n_round = n_round + 1
      srv:admin("POST", "/_emulator/runs/bulk_update", { ids = ids, fields = {
        metadata = ('{"round":%d,"t":%.6f,"n":%d}'):format(k, util.now(), n_round) } })
      local line = assert(p:read("l"), cmd .. " ended early")
      local r, l, f = line:match("^ROUND (%d+) (%S+) (%S+)")
      assert(tonumber(r) == k, "unexpected line: " .. line)
      last[k], first[k] = tonumber(l), tonumber(f)
    end
    local tail = p:read("a")
    p:close()
    local res = cjson.decode((assert(tail:match("RESULT (%b{})"), tail)))
    return { last = util.median(last), first = util.median(first), cpu = res.cpu }
  end
  local c = drive(("lua5.4 bench/burst_client.lua '%s' '%s' %d %d"):format(srv.base_url, tag,
    BURST_RUNS, BURST_ROUNDS))
  local b = drive(("lua5.4 bench/burst_bare.lua %d '%s' %d %d"):format(srv.port, tag, BURST_RUNS,
    BURST_ROUNDS))
  srv:stop()
  log("  client %.3f s (first %.3f), bare %.3f s (first %.3f)", c.last, c.first, b.last, b.first)
  row { name = ("%sLive burst: %s runs changing at once → the last in the loop"):format(
          backend == "native" and "Native: " or "", util.thousands(BURST_RUNS)),
        ours = ("%.3f s"):format(c.last), base = ("%.3f s"):format(b.last), ratio = c.last / b.last,
        target = "—",
        detail = ("%s dialect%s; %.0f runs/s; first run after %.3f vs %.3f s; median of %d "
          .. "rounds (one bulk update each, timed from just before it); baseline: luasocket "
          .. "long-poll + cjson"):format(backend, backend == "native"
          and " (full rows on every update, native_coalesce_ms = 0)" or "",
          BURST_RUNS / c.last, c.first, b.first, BURST_ROUNDS) }
end

---------------------------------------------------------------------------------------------------
-- The report

local function machine()
  local cpu = (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "?"
  local nproc = io.popen("nproc"):read("l")
  local kernel = io.popen("uname -sr"):read("l")
  local curl_v = (io.popen("curl --version"):read("l") or "?"):match("^(curl %S+ %S+ %S+ %S+)")
    or "curl ?"
  local lua_v = io.popen("lua5.4 -v 2>&1"):read("l")
  local mem = (read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)")
  local commit = io.popen("git rev-parse --short HEAD 2>/dev/null"):read("l") or "?"
  local dirty = io.popen("git status --porcelain -- lua csrc 2>/dev/null"):read("a") ~= ""
  return {
    ("- Machine: %s, %s cores (nproc), %.1f GB RAM, %s"):format(cpu, nproc,
      (tonumber(mem) or 0) / 1048576, kernel),
    ("- Date: %s"):format(os.date("!%Y-%m-%d %H:%M UTC")),
    ("- Versions: trigger-realtime %s (commit %s%s), %s, lua-cjson %s, %s"):format(
      require("trigger")._VERSION, commit, dirty and ", with uncommitted changes in lua/ or csrc/"
      or "", lua_v, cjson._VERSION, curl_v),
    "- Command: `make bench` (bench/run.lua)",
  }
end

local function fmt_ratio(r)
  if not r then return "—" end
  return ("%.2f×"):format(r)
end

local function table_md()
  local out = {
    "| Measurement | Ours | Baseline | Ratio | Target | Met |",
    "|---|---:|---:|---:|---|---|",
  }
  for _, r in ipairs(results) do
    local met = r.met == nil and "" or (r.met and "yes" or "**no**")
    out[#out + 1] = ("| %s | %s | %s | %s | %s | %s |"):format(r.name, r.ours, r.base,
      fmt_ratio(r.ratio), r.target, met)
  end
  out[#out + 1] = ""
  for _, r in ipairs(results) do
    if r.detail then out[#out + 1] = ("- *%s*: %s"):format(r.name, r.detail) end
  end
  return table.concat(out, "\n")
end

local ONLY = os.getenv("BENCH_ONLY")
local function wanted(name)
  return ONLY == nil or ONLY == "" or ("," .. ONLY .. ","):find("," .. name .. ",", 1, true)
end

sh("mkdir -p " .. TMP)
local sync = wanted("throughput") and bench_throughput() or { bytes = 0, pages = 0 }
if wanted("latency") then bench_latency() end
if wanted("roundtrip") then bench_roundtrip() end
if wanted("memory") then bench_memory() end
if wanted("scale") then bench_scale_idle() end
if wanted("streams") then bench_streams() end
if wanted("fanout") then bench_fanout() end
if wanted("nginx_fanout") then -- issue 17 inside nginx: the script measures and makes its rows
  log("fan-out in nginx: bench/nginx_fanout.lua")
  for _, r in ipairs(run_lua("bench/nginx_fanout.lua").rows) do row(r) end
end
if wanted("native") then
  bench_throughput { backend = "native", prefix = "Native: ", dir = "sync_native" }
  bench_burst("electric")
  bench_burst("native")
  bench_scale_idle("native", NATIVE_SCALE_REPS)
end
if wanted("sync100k") then
  bench_throughput { runs = SYNC_BIG, reps = 1, dir = "sync_big", rows = { wall = true, rss = true },
    rss_detail = function(ours, base)
      if not sync.hwm_kb then return "" end
      local more = SYNC_BIG - SYNC_RUNS
      return ("growth from the %s-run sync: %.2f KB per run (baseline %.2f); "):format(
        util.thousands(SYNC_RUNS), (ours - sync.hwm_kb) / more, (base - sync.base_hwm_kb) / more)
    end }
end
local total = util.now() - started_at

local notes_md = read_file("bench/NOTES.md") or ""
local text = table.concat({
  "# trigger-realtime benchmark results",
  "",
  "Written by `make bench` (bench/run.lua); every ratio is ours ÷ a baseline measured in the "
    .. "same run, on the same local server, medians over the repetitions. See the notes below "
    .. "and bench/README.md for how each row is measured.",
  "",
  table.concat(machine(), "\n"),
  ("- Repetitions: throughput %d (native %d, %s-run sync 1), latency %d × %d changes, scale/idle "
    .. "%d (native %d), stream latency %d × %d chunks, stream throughput %d, fan-out %d × %d "
    .. "changes, bursts %d rounds; this run took %.0f s")
    :format(REPS, REPS, util.thousands(SYNC_BIG), LAT_REPS, LAT_UPDATES, SCALE_REPS,
      NATIVE_SCALE_REPS, LAT_REPS, STREAM_LAT_UPDATES, STREAM_REPS, FAN_REPS, FAN_UPDATES,
      BURST_ROUNDS, total),
  ("- Throughput rows: %s runs of ~%.1f KB on the wire, pages of %d rows (%d requests)")
    :format(util.thousands(SYNC_RUNS), sync.bytes / SYNC_RUNS / 1000, CHUNK_ROWS, sync.pages),
  "",
  table_md(),
  "",
  notes_md,
}, "\n")
write_file(OUT, text)
io.stdout:write("\n", table_md(), "\n\n", ("make bench: %.0f s, written to %s\n"):format(total, OUT))
