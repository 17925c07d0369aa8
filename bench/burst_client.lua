-- Live burst (issue 16), our client: follows a tag of N runs; once they are all in it prints
-- READY, then for each round k the bench changes all N runs at once (one bulk_update, metadata
-- {"round": k, "t": CLOCK_MONOTONIC just before the request}) and this prints
-- "ROUND k <seconds from t to the last of the N changed runs in the loop> <to the first>".
-- usage: lua5.4 bench/burst_client.lua BASE_URL TAG N ROUNDS
local util = require "util"
local base_url, tag, n, rounds = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local count, round, first = 0, 0, nil
local cpu0 = os.clock()
for run in trigger.runs.subscribe_to_tag(tag) do
  local now = util.now()
  local meta = type(run.metadata) == "table" and run.metadata or {}
  if round == 0 then
    count = count + 1
    if count == n then
      io.stdout:write("READY\n")
      io.stdout:flush()
      round, count = 1, 0
    end
  elseif meta.round == round then
    count = count + 1
    first = first or now - meta.t
    if count == n then
      io.stdout:write(("ROUND %d %.6f %.6f\n"):format(round, now - meta.t, first))
      io.stdout:flush()
      if round == rounds then break end
      round, count, first = round + 1, 0, nil
    end
  end
end
util.emit { cpu = os.clock() - cpu0, hwm_kb = util.status_kb("VmHWM") }
