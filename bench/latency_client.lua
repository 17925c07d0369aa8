-- Live latency, our client: follows the tag of run_bench_latency; once live it sets the run to
-- EXECUTING, which makes the server (bench/scenario.lua) change the run's metadata every few ms,
-- stamping CLOCK_MONOTONIC into it. Each latency is our clock when the run comes out of the
-- subscription's loop minus that stamp.
-- usage: lua5.4 bench/latency_client.lua BASE_URL PORT TAG
local util = require "util"
local http = require "http_min"
local base_url, port, tag = arg[1], tonumber(arg[2]), arg[3]

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local latencies, started = {}, false
for run in trigger.runs.subscribe_to_tag(tag) do
  local now = util.now()
  local t = type(run.metadata) == "table" and run.metadata.t
  if t then latencies[#latencies + 1] = (now - t) * 1000 end
  if not started then
    started = true
    http.request("127.0.0.1", port, "PATCH", "/_emulator/runs/run_bench_latency",
      '{"status":"EXECUTING"}')
  end
  -- The server sets the run COMPLETED after its last change: wait for it, so that the next
  -- round can start from a clean run.
  if run.isCompleted then break end
end
util.emit { latencies_ms = latencies }
