-- Fan-out (issue 17): CONSUMERS subscriptions in one process on NTAGS tags (consumer i follows
-- PREFIX<(i-1) % NTAGS + 1>, one run per tag), shared upstreams (the default) or not
-- (SHARE = 0: option share = false). Driven by a poll loop (trigger.step, then poll every
-- consumer). Once every consumer has its run and the live requests are in, it sets
-- run_bench_fanout_ctl EXECUTING: the server (bench/scenario.lua) changes the tags' runs in
-- turn, stamping CLOCK_MONOTONIC into their metadata; each latency is our clock when a consumer
-- gets the change minus that stamp. Ends when every consumer saw {"done": true}.
-- usage: lua5.4 bench/fanout_client.lua BASE_URL PORT PREFIX NTAGS CONSUMERS SHARE
local util = require "util"
local http = require "http_min"
local base_url, port, prefix = arg[1], tonumber(arg[2]), arg[3]
local ntags, n, share = tonumber(arg[4]), tonumber(arg[5]), arg[6] ~= "0"

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

collectgarbage()
local t0, cpu0 = util.now(), os.clock()
local subs, got, pending = {}, {}, n
for i = 1, n do
  subs[i] = trigger.runs.subscribe_to_tag(prefix .. ((i - 1) % ntags + 1), { share = share })
end
while pending > 0 do
  for i = 1, n do
    if not got[i] and subs[i]:poll() then
      got[i] = true
      pending = pending - 1
    end
  end
  if pending > 0 then trigger.step(0.05) end
end
local sync_s = util.now() - t0
local settle = util.now() + 1
while util.now() < settle do trigger.step(settle - util.now()) end
local upstreams = require("trigger.fanout.upstream").count()
local rss_live = util.status_kb("VmRSS")

http.request("127.0.0.1", port, "PATCH", "/_emulator/runs/run_bench_fanout_ctl",
  '{"status":"EXECUTING"}')
local live_cpu0, live_t0 = os.clock(), util.now()
local latencies, done, left = {}, {}, n
local deadline = util.now() + 120
while left > 0 and util.now() < deadline do
  trigger.step(deadline - util.now())
  for i = 1, n do
    if not done[i] then
      local run = subs[i]:poll()
      while run do
        local now = util.now()
        local meta = type(run.metadata) == "table" and run.metadata or {}
        if meta.t then latencies[#latencies + 1] = (now - meta.t) * 1000 end
        if meta.done then
          done[i] = true
          left = left - 1
          break
        end
        run = subs[i]:poll()
      end
    end
  end
end
assert(left == 0, left .. " consumers did not see the end")
local live_cpu, live_wall = os.clock() - live_cpu0, util.now() - live_t0
for i = 1, n do subs[i]:close() end
util.emit { sync_s = sync_s, cpu = os.clock() - cpu0, live_cpu = live_cpu, live_wall = live_wall,
  latencies_ms = latencies, upstreams = upstreams, rss_kb = rss_live,
  hwm_kb = util.status_kb("VmHWM") }
