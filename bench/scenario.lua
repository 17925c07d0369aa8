-- The benchmark's server-side helper, loaded with `--scenario bench/scenario.lua`. It runs
-- inside the local server (server/) and does two things:
--
-- 1. Caches the answers to non-live shape requests. The emulator encodes JSON in Lua (about
--    0.6 s for a 5,000-row page), which would otherwise be most of the time of both the client
--    and the curl baseline and hide the difference between them. The real Electric serves shape
--    logs from its own storage/CDN cache. The cache is keyed on the whole request (path, query,
--    protocol headers, token) and dropped whenever the store or the shape registry changes, so
--    every answer is byte for byte what the server would send. Live requests are never cached.
--
-- 2. Drives the live-latency test: once the run `run_bench_latency` is set to EXECUTING (by
--    the client, when it is live), it changes that run's metadata every `interval` seconds,
--    `updates` times (both read from the run's metadata when it was created, JSON), stamping
--    CLOCK_MONOTONIC (cqueues.monotime) into it just before each change; then it sets the run
--    COMPLETED_SUCCESSFULLY. The client compares the stamp with its own CLOCK_MONOTONIC on
--    receipt (same machine, same clock).
--
-- 3. Drives the stream chunk latency test (control run `run_bench_stream_ctl`: appends chunks
--    {"i", "t"} to the stream its metadata names) and the fan-out latency test (control run
--    `run_bench_fanout_ctl`: changes the runs its metadata lists in turn), the same way.
local cjson = require "cjson"
local cqueues = require "cqueues"
local realtime = require "trigger_realtime_server.realtime"

local LATENCY_ID = "run_bench_latency"
local STREAM_CTL = "run_bench_stream_ctl"
local FANOUT_CTL = "run_bench_fanout_ctl"

return function(s, sleep)
  local cache, cache_gen = {}, nil
  local dispatch = realtime.dispatch
  realtime.dispatch = function(srv, conn, req)
    if req.method ~= "GET" or req.params.live == "true" or req.path:sub(1, 10) ~= "/realtime/" then
      return dispatch(srv, conn, req)
    end
    local gen = tostring(srv.store.head) .. "/" .. tostring(srv.store.log) .. "/"
      .. tostring(srv.shapes.by_key)
    if gen ~= cache_gen then cache, cache_gen = {}, gen end
    local h = req.headers
    local key = table.concat({ req.path, req.query, h["authorization"] or "",
      h["x-trigger-electric-version"] or "", h["x-trigger-api-version"] or "" }, "\0")
    local res = cache[key]
    if res == nil then
      res = dispatch(srv, conn, req)
      if res and res.status == 200 then
        cache[key] = res
        -- Encoding a large page leaves hundreds of MB of garbage; collect it now (the warm-up
        -- request), or its incremental collection slows whichever measured run comes next.
        if #res.body > 1000000 then collectgarbage() end
      end
    end
    return res
  end

  -- The drivers: each one waits for its control run to be set EXECUTING (by the client, once it
  -- is reading), then makes its changes, stamping CLOCK_MONOTONIC into each just before it.
  local function params_of(rec)
    local ok, params = pcall(cjson.decode, rec.row.metadata or "{}")
    if not ok or type(params) ~= "table" then params = {} end
    return params
  end

  -- Live latency: changes the metadata of run_bench_latency itself, then completes it.
  local function latency(rec)
    local params = params_of(rec)
    local interval, updates = tonumber(params.interval) or 0.005, tonumber(params.updates) or 1000
    for i = 1, updates do
      sleep(interval)
      if s.store:find(LATENCY_ID) ~= rec then break end -- deleted or reset under us
      s:update_run(LATENCY_ID, { metadata = ('{"seq":%d,"t":%.6f}'):format(i, cqueues.monotime()) })
      rec = s.store:find(LATENCY_ID)
    end
    if s.store:find(LATENCY_ID) == rec then
      s:update_run(LATENCY_ID, { status = "COMPLETED_SUCCESSFULLY" })
    end
  end

  -- Stream chunk latency: appends `updates` chunks {"i","t"} to params.run's stream params.key,
  -- one every `interval` s, then {"end": true}; then completes the control run.
  local function stream(rec)
    local params = params_of(rec)
    local interval, updates = tonumber(params.interval) or 0.005, tonumber(params.updates) or 1000
    for i = 1, updates do
      sleep(interval)
      s:append_stream(params.run, params.key, { { i = i, t = cqueues.monotime() } },
        { list = false })
    end
    s:append_stream(params.run, params.key, { { ["end"] = true } }, { list = false })
    s:update_run(STREAM_CTL, { status = "COMPLETED_SUCCESSFULLY" })
  end

  -- Fan-out latency: changes the runs params.ids in turn, `updates` changes one every
  -- `interval` s, metadata {"seq","t"}; then sets each one's metadata to {"done": true}.
  local function fanout(rec)
    local params = params_of(rec)
    local interval, updates = tonumber(params.interval) or 0.02, tonumber(params.updates) or 100
    local ids = params.ids
    for i = 1, updates do
      sleep(interval)
      s:update_run(ids[(i - 1) % #ids + 1],
        { metadata = ('{"seq":%d,"t":%.6f}'):format(i, cqueues.monotime()) })
    end
    sleep(interval)
    for _, id in ipairs(ids) do s:update_run(id, { metadata = '{"done":true}' }) end
    s:update_run(FANOUT_CTL, { status = "COMPLETED_SUCCESSFULLY" })
  end

  while true do
    cqueues.poll(s.changed)
    local rec = s.store:find(LATENCY_ID)
    if rec and rec.row.status == "EXECUTING" then latency(rec) end
    rec = s.store:find(STREAM_CTL)
    if rec and rec.row.status == "EXECUTING" then stream(rec) end
    rec = s.store:find(FANOUT_CTL)
    if rec and rec.row.status == "EXECUTING" then fanout(rec) end
  end
end
