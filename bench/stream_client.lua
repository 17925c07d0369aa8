-- Realtime streams, our client (trigger.streams.read), two modes:
--
--   latency BASE_URL PORT RUN KEY
--     reads RUN's stream KEY from the start; its first chunk ({"ready": true}, appended before)
--     says the stream is open, so it sets run_bench_stream_ctl EXECUTING, which makes the server
--     (bench/scenario.lua) append chunks {"i", "t"} every few ms, t = CLOCK_MONOTONIC just before
--     the append. Each latency is our clock when the chunk comes out of the loop minus t; ends at
--     the chunk {"end": true}.
--   throughput BASE_URL PREFIX NSTREAMS KEY N
--     reads the streams KEY of runs PREFIX1..PREFIXn (N chunks {"i", ...} each, already stored)
--     from the start, all at once in one process, until every one gave its chunk i = N: one
--     stream with the for loop, many with a poll loop (poll each, then trigger.step).
-- Prints RESULT {...}.
local util = require "util"
local http = require "http_min"
local mode = arg[1]

local trigger = require "trigger"
trigger.configure { base_url = arg[2], access_token = "tr_dev_local_emulator_secret_key" }

if mode == "latency" then
  local port, run, key = tonumber(arg[3]), arg[4], arg[5]
  local latencies = {}
  local cpu0 = os.clock()
  for chunk in trigger.streams.read(run, key) do
    local now = util.now()
    if chunk.t then
      latencies[#latencies + 1] = (now - chunk.t) * 1000
    elseif chunk.ready then
      http.request("127.0.0.1", port, "PATCH", "/_emulator/runs/run_bench_stream_ctl",
        '{"status":"EXECUTING"}')
    elseif chunk["end"] then
      break
    end
  end
  util.emit { latencies_ms = latencies, cpu = os.clock() - cpu0 }
  return
end

local prefix, n, key, last = arg[3], tonumber(arg[4]), arg[5], tonumber(arg[6])
collectgarbage()
local cpu0, t0 = os.clock(), util.now()
local chunks = 0
if n == 1 then
  for chunk in trigger.streams.read(prefix .. 1, key) do
    chunks = chunks + 1
    if chunk.i == last then break end
  end
else
  local streams, pending = {}, n
  for i = 1, n do streams[i] = trigger.streams.read(prefix .. i, key) end
  while pending > 0 do
    for i = 1, n do
      local s = streams[i]
      if s then
        local chunk = s:poll()
        while chunk do
          chunks = chunks + 1
          if chunk.i == last then
            s:close()
            streams[i] = nil
            pending = pending - 1
            break
          end
          chunk = s:poll()
        end
      end
    end
    if pending > 0 then trigger.step(0.05) end
  end
end
local t1, cpu1 = util.now(), os.clock()
util.emit { seconds = t1 - t0, cpu = cpu1 - cpu0, chunks = chunks, hwm_kb = util.status_kb("VmHWM") }
