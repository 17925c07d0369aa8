-- Throughput client: a subscribe_to_tag initial sync of N runs, timed until the last run was
-- yielded.  usage: lua5.4 bench/sync_client.lua BASE_URL TAG N [URLS_FILE]
-- Prints RESULT {seconds, cpu, hwm_kb, runs}; with URLS_FILE, writes the non-live URLs the
-- subscription requested (the curl baseline replays them).
local util = require "util"
local base_url, tag, n, urls_file = arg[1], arg[2], tonumber(arg[3]), arg[4]

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local urls = urls_file and util.record_urls()

collectgarbage()
local cpu0, t0 = os.clock(), util.now()
local count, last = 0, nil
for run in trigger.runs.subscribe_to_tag(tag) do
  count = count + 1
  last = run
  if count == n then break end
end
local t1, cpu1 = util.now(), os.clock()
assert(last and last.id and last.output and last.payload, "runs are not complete")

if urls_file then util.write_urls(urls, urls_file) end
util.emit { seconds = t1 - t0, cpu = cpu1 - cpu0, hwm_kb = util.status_kb("VmHWM"), runs = count }
