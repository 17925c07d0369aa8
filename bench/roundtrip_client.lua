-- Trigger → run finished (issue 30): trigger.tasks.trigger, then trigger.runs.wait on the
-- realtime feed, N times in a row, each time our clock from before the trigger to the final
-- run coming out of wait. The task (defined by bench/run.lua) takes TASK_MS in the emulator's
-- worker, so the time beyond it is what the client and the feed add.
-- usage: lua5.4 bench/roundtrip_client.lua BASE_URL TASK N
local util = require "util"
local base_url, task, n = arg[1], arg[2], tonumber(arg[3])

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local times = {}
for i = 1, n do
  local t0 = util.now()
  local handle = assert(trigger.tasks.trigger(task, { i = i }))
  local run = assert(trigger.runs.wait(handle, { timeout = 60 }))
  assert(run.status == "COMPLETED", run.status)
  times[#times + 1] = (util.now() - t0) * 1000
end
util.emit { times_ms = times }
