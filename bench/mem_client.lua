-- Memory under a long stream of updates: follows a tag of RUNS runs and reports its RSS after
-- every RUNS runs handed out (one round: bench/run.lua changes every run once per round, and
-- waits for this line before the next). Ends when a run's metadata says {"stop": true}.
-- usage: lua5.4 bench/mem_client.lua BASE_URL TAG RUNS
local util = require "util"
local base_url, tag, runs = arg[1], arg[2], tonumber(arg[3])

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local count, round = 0, 0
local cpu0, t0 = os.clock(), util.now()
for run in trigger.runs.subscribe_to_tag(tag) do
  if type(run.metadata) == "table" and run.metadata.stop then break end
  count = count + 1
  if count % runs == 0 then
    io.stdout:write(("ROUND %d %d %d\n"):format(round, util.status_kb("VmRSS"), count))
    io.stdout:flush()
    round = round + 1
  end
end
util.emit { runs = count, rounds = round, seconds = util.now() - t0, cpu = os.clock() - cpu0,
  rss_kb = util.status_kb("VmRSS"), hwm_kb = util.status_kb("VmHWM"),
  lua_kb = collectgarbage("count") }
