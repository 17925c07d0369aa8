-- Scale and idle cost: N subscriptions in one process, each to its own tag (PREFIX1..PREFIXN,
-- one run each), driven by the poll loop of spec/event_loop_spec.lua (poll every pending
-- subscription, then trigger.step). Times how long until every subscription handed out its
-- run (all up to date); then, with all N in live long-polls (the server holds them longer than
-- the measurement), measures the CPU time of IDLE seconds of waiting in trigger.step.
-- Last, TICK seconds of a game-loop style host: poll every subscription each tick, then
-- trigger.step(0.05).
-- usage: lua5.4 bench/many_client.lua BASE_URL PREFIX N IDLE URLS_FILE LIVE_URLS_FILE TICK
local util = require "util"
local base_url, prefix, n, idle_s = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local urls_file, live_file, tick_s = arg[5], arg[6], tonumber(arg[7])

local trigger = require "trigger"
trigger.configure { base_url = base_url, access_token = "tr_dev_local_emulator_secret_key" }

local urls = util.record_urls()
local transport = require "trigger.transport.curl"

collectgarbage()
local t0, cpu0 = util.now(), os.clock()
local subs, done, pending = {}, {}, n
for i = 1, n do subs[i] = trigger.runs.subscribe_to_tag(prefix .. i) end
while pending > 0 do
  for i = 1, n do
    if not done[i] and subs[i]:poll() then
      done[i] = true
      pending = pending - 1
    end
  end
  if pending > 0 then trigger.step(0.05) end
end
local scale_s, scale_cpu = util.now() - t0, os.clock() - cpu0

-- Every subscription started its live request before handing out its run; let them reach the
-- server, then stay out of the way.
local settle = util.now() + 1
while util.now() < settle do trigger.step(settle - util.now()) end
local live = transport.active()

-- Idle: wait for I/O the way an event-driven host does; poll everything when woken.
local wakeups = 0
local idle_cpu0, idle_t0 = os.clock(), util.now()
local idle_end = idle_t0 + idle_s
while true do
  local left = idle_end - util.now()
  if left <= 0 then break end
  trigger.step(left)
  wakeups = wakeups + 1
  for i = 1, n do assert(subs[i]:poll() == nil, "a run arrived while idle") end
end
local idle_cpu, idle_wall = os.clock() - idle_cpu0, math.max(util.now() - idle_t0, 1e-9)

-- The same, ticking like a game loop at 20 Hz: poll every subscription each tick.
local tick_cpu0, tick_t0 = os.clock(), util.now()
local ticks = 0
while util.now() - tick_t0 < tick_s do
  for i = 1, n do subs[i]:poll() end
  ticks = ticks + 1
  trigger.step(0.05)
end
local tick_cpu, tick_wall = os.clock() - tick_cpu0, math.max(util.now() - tick_t0, 1e-9)

util.write_urls(urls, urls_file, live_file)
for i = 1, n do subs[i]:close() end
util.emit { scale_s = scale_s, scale_cpu = scale_cpu, live = live, idle_cpu = idle_cpu,
  idle_wall = idle_wall, wakeups = wakeups, tick_cpu = tick_cpu, tick_wall = tick_wall,
  ticks = ticks, hwm_kb = util.status_kb("VmHWM") }
