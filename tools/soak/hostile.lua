-- The soak's hostile mode (issue 28): rounds in which the local server answers every request of
-- one to three subscriptions with one storm answer (spec/storms.lua, picked at random: 409
-- must-refetch loops, 204 or up-to-date at once, [] never up to date, the same run under a new
-- handle...), on both backends (flipped at random), and the request budget checked in each:
--   * on_error hears of the storm, once (waited for, as an event; never more than 100 requests
--     before it);
--   * then, over WINDOW seconds, each subscription makes at most BUDGET requests and the soak's
--     process uses at most CPU of a core;
--   * once the server mends (faults cleared), every subscription hands out the next change.
--
--   lua5.4 tools/soak/soak.lua --hostile --seed N --seconds S [--backend electric|native]
--   lua5.4 tools/soak/soak.lua --hostile --measure --seconds W   (requests/s and CPU for each
--     answer alone, no budget asserted: the before/after table of issue 28)
--
-- Loaded by soak.lua, which hands it its seeded PRNG, log and failure report.
local helper = require "spec.helper"
local storms = require "spec.storms"
local trigger = require "trigger"
local socket = require "socket"

local now = socket.gettime

local M = {}
M.WINDOW = 2   -- seconds of storm measured once on_error has heard of it
M.BUDGET = 20  -- requests one subscription may make in that window (before issue 28: thousands)
M.CPU = 0.25   -- share of a core the whole soak process may use in that window
M.OPTS = { retry_base = 0.1, retry_cap = 1 }

local RUNS = "/realtime/v1/runs"

-- Subscriptions driven together: `poll` ones polled, `next` ones waited on briefly, for `seconds`.
local function drive(subs, seconds)
  local t = now() + seconds
  repeat
    for _, s in ipairs(subs) do
      local run = s.driver == "poll" and s.sub:poll() or s.sub:next(0.02)
      if run and s.on_run then s.on_run(run) end
    end
    trigger.step(0.02)
  until now() >= t
end

local function counts(srv, subs)
  local paths, out = srv:stats().paths, {}
  for i, s in ipairs(subs) do out[i] = math.floor(paths[s.path] or 0) end
  return out
end

-- One subscription per entry of `kinds` ("tag" or "run") on `runs` (ids, all carrying `tag`).
local function open(srv, c, kinds, runs, tag)
  local subs = {}
  for i, kind in ipairs(kinds) do
    local s = { kind = kind, errors = {}, driver = c.pick { "poll", "next" } }
    local o = helper.client_opts(srv, { on_error = function(e) s.errors[#s.errors + 1] = e end })
    for k, v in pairs(M.OPTS) do o[k] = v end
    if kind == "tag" then
      s.sub, s.path, s.ids = trigger.runs.subscribe_to_tag(tag, o), RUNS, runs
    else
      local id = runs[(i - 1) % #runs + 1]
      s.sub, s.path, s.ids = trigger.runs.subscribe_to_run(id, o), RUNS .. "/" .. id, { id }
    end
    subs[i] = s
  end
  return subs
end

-- Wait until every subscription has handed out every one of its runs with `status`.
local function await_status(subs, status, seconds, fail)
  local deadline = now() + seconds
  for _, s in ipairs(subs) do
    local want, left = {}, #s.ids
    for _, id in ipairs(s.ids) do want[id] = true end
    s.on_run = function(run)
      if want[run.id] and run.status == status then
        want[run.id] = nil
        left = left - 1
      end
    end
    s.left = function() return left end
  end
  while true do
    local waiting = 0
    for _, s in ipairs(subs) do
      if s.left() > 0 then waiting = waiting + 1 end
    end
    if waiting == 0 then break end
    if now() > deadline then
      fail("%d subscription(s) never handed out their runs as %s", waiting, status)
    end
    drive(subs, 0.05)
  end
  for _, s in ipairs(subs) do s.on_run = nil end
end

local function fault_ctx(srv, id, internal, backend)
  return { row = srv:get_run(id), internal_id = internal, native = backend == "native" }
end

--- The soak's hostile mode. c: `seed`, `seconds`, `backend`, `measure`, and the soak's `rnd`,
-- `rint`, `pick`, `chance`, `log`, `fail`, `set_server`.
function M.run(c)
  local backend = c.backend or c.pick { "electric", "native" }
  local srv = helper.start_server { hold_ms = 1000, backend = backend }
  c.set_server(srv)
  if c.measure then return M.measure(c, srv) end
  local t_end = now() + c.seconds
  local rounds, worst = 0, {}
  repeat
    rounds = rounds + 1
    if c.chance(0.3) then
      backend = backend == "electric" and "native" or "electric"
      srv:set_backend(backend)
      c.log("F", "flip to %s", backend)
    end
    local answer = c.pick(storms.ANSWERS)
    local tag = ("hostile:%d:%d"):format(c.seed, rounds)
    local runs, internal = {}, {}
    for i = 1, c.rint(1, 3) do
      runs[i], internal[i] = srv:create_run { status = "PENDING", runTags = { tag } }
    end
    local kinds = {}
    for i = 1, c.rint(1, 3) do kinds[i] = (i == 1 and c.chance(0.5)) and "tag" or "run" end
    local subs = open(srv, c, kinds, runs, tag)
    await_status(subs, "QUEUED", 15, c.fail) -- the first snapshot, normal
    srv:fault(storms.fault(answer, RUNS, fault_ctx(srv, runs[1], internal[1], backend)))
    srv:reset_stats()
    -- on_error hears of it (each held long-poll ends first, within hold_ms)
    local deadline = now() + 20
    while true do
      local n, told = counts(srv, subs), 0
      for i, s in ipairs(subs) do
        if n[i] > 100 then
          c.fail("%s on %s: %d requests of sub %s before on_error heard of it", answer.name,
            backend, n[i], s.path)
        end
        if #s.errors > 0 then told = told + 1 end
      end
      if told == #subs then break end
      if now() > deadline then c.fail("%s on %s: on_error never heard of it", answer.name, backend) end
      drive(subs, 0.05)
    end
    local before, cpu = counts(srv, subs), os.clock()
    drive(subs, M.WINDOW)
    cpu = os.clock() - cpu
    local after = counts(srv, subs)
    local used = {}
    for i, s in ipairs(subs) do
      used[i] = after[i] - before[i]
      if used[i] > M.BUDGET then
        c.fail("%s on %s: %d requests of sub %s in %d s (budget %d)", answer.name, backend,
          used[i], s.path, M.WINDOW, M.BUDGET)
      end
      if #s.errors ~= 1 then
        c.fail("%s on %s: on_error told %d times of one streak", answer.name, backend, #s.errors)
      end
    end
    if cpu > M.CPU * M.WINDOW then
      c.fail("%s on %s: %.2f s of CPU in %d s", answer.name, backend, cpu, M.WINDOW)
    end
    local w = worst[answer.name] or { requests = 0, cpu = 0, rounds = 0 }
    worst[answer.name] = w
    w.rounds = w.rounds + 1
    for _, u in ipairs(used) do w.requests = math.max(w.requests, u) end
    w.cpu = math.max(w.cpu, cpu)
    c.log("H", "round %d: %s on %s, %d subs (%s): requests in %d s %s, cpu %.3f s", rounds,
      answer.name, backend, #subs, table.concat(kinds, ","), M.WINDOW, table.concat(used, "/"), cpu)
    -- the server mends: every subscription goes on
    srv:clear_faults()
    for _, id in ipairs(runs) do srv:update_run(id, { status = "EXECUTING" }) end
    await_status(subs, "EXECUTING", 20, function(fmt, ...)
      c.fail("%s on %s: after the storm, " .. fmt, answer.name, backend, ...)
    end)
    for _, s in ipairs(subs) do s.sub:close() end
  until now() >= t_end
  srv:stop()
  local names = {}
  for name, w in pairs(worst) do
    names[#names + 1] = ("%s: %d rounds, at most %d requests/%d s, %.3f s CPU"):format(name,
      w.rounds, w.requests, M.WINDOW, w.cpu)
  end
  table.sort(names)
  print(("hostile ok: seed %d, %d rounds\n  %s"):format(c.seed, rounds, table.concat(names, "\n  ")))
end

--- Requests per second at the server and CPU per second for each answer alone, on both
-- backends (over `c.seconds` each), without asserting the budget: the table of issue 28.
function M.measure(c, srv)
  local window = tonumber(c.seconds) or 2.5
  print(("%-45s %-9s %10s %9s %8s"):format("answer", "backend", "req/s", "cpu s/s", "on_error"))
  for _, backend in ipairs { "electric", "native" } do
    srv:set_backend(backend)
    for _, answer in ipairs(storms.ANSWERS) do
      local ok, err = pcall(M.measure_one, c, srv, backend, answer, window)
      if not ok then
        print(("%-45s %-9s died: %s"):format(answer.name, backend, tostring(err):sub(1, 120)))
      end
      srv:clear_faults()
    end
  end
  srv:stop()
end

--- One answer of `measure` (raises when the subscription dies).
function M.measure_one(c, srv, backend, answer, window)
  local id, internal = srv:create_run { status = "PENDING" }
  local subs = open(srv, c, { "run" }, { id })
  subs[1].driver = "next"
  await_status(subs, "QUEUED", 15, function(fmt, ...) error(fmt:format(...)) end)
  srv:fault(storms.fault(answer, RUNS .. "/" .. id, fault_ctx(srv, id, internal, backend)))
  srv:reset_stats()
  local deadline = now() + 10
  repeat drive(subs, 0.05) until counts(srv, subs)[1] >= 2 or now() > deadline
  local before, cpu, t0 = counts(srv, subs)[1], os.clock(), now()
  local ok, err = pcall(drive, subs, window) -- (before issue 28 some answers were fatal)
  cpu = os.clock() - cpu
  local took = now() - t0
  local n = counts(srv, subs)[1] - before
  print(("%-45s %-9s %10.1f %9.2f %8d%s"):format(answer.name, backend, n / took, cpu / took,
    #subs[1].errors, ok and "" or ("  died after %.2f s: %s"):format(took, tostring(err):sub(1, 90))))
  subs[1].sub:close()
end

return M
