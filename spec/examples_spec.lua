-- The examples must not rot: each one runs as its own process against a local server playing
-- the demo scenario (`--scenario demo`, server/lua/trigger_realtime_server/scenarios/demo.lua:
-- five user:1234 runs from QUEUED to finished in
-- about six seconds, four COMPLETED and one FAILED, plus a user:9999 run that must not show up,
-- and a batch, batch_1234, of three runs),
-- with TRIGGER_API_URL / TRIGGER_SECRET_KEY set as a user would, bounded by `timeout`.
--
-- The examples run at the same time (one server each, started in lazy_setup), so the spec
-- takes about as long as the slowest of them. The OpenResty example is tested by
-- `make test-openresty`, not here.
local helper = require "spec.helper"

local SCENARIO = "demo" -- by name, as the server's rock installs it
local TIME_LIMIT = 45 -- seconds; the demo is over in about six
local DEMO_RUNS = 5 -- user:1234 runs in the demo scenario
local FINAL = { COMPLETED = true, CANCELED = true, FAILED = true, CRASHED = true,
  SYSTEM_FAILURE = true, EXPIRED = true, TIMED_OUT = true }

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines_of(s)
  local t = {}
  for line in s:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

-- The interpreter the examples run under: the one `make test` was asked for (LUA), never with
-- the sanitizer preloads of `make check` (the examples are tested for behaviour here; the
-- library's memory safety is make check's business, in the busted process itself).
local function interpreter()
  return os.getenv("TRIGGER_EXAMPLES_LUA") or ("env -u LD_PRELOAD " .. (os.getenv("LUA") or "lua5.4"))
end

-- The C modules of the build under test first (BUILD, as `make test LUA=luajit` sets it), then
-- whatever this process found.
local function cpath()
  local build = os.getenv("BUILD")
  return (build and build ~= "" and (build .. "/?.so;") or "") .. package.cpath
end

-- Start `examples/<script> <args...>` in the background against its own demo server.
-- Returns a job; job:wait() -> exit code, stdout, stderr.
local function start_example(script, args)
  local srv = helper.start_server { scenario = SCENARIO }
  local out, err = os.tmpname(), os.tmpname()
  local argv = { "examples/" .. script }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = shell_quote(a) end
  local cmd = table.concat({
    "cd", shell_quote(helper.root), "&&",
    "env", "TRIGGER_API_URL=" .. shell_quote(srv.base_url),
    "TRIGGER_SECRET_KEY=" .. shell_quote(srv.secret_key),
    "TRIGGER_ACCESS_TOKEN=", -- an outer token must not win over the secret key
    "LUA_PATH=" .. shell_quote(package.path), "LUA_CPATH=" .. shell_quote(cpath()),
    "timeout", "-k", "5", tostring(TIME_LIMIT), interpreter(), table.concat(argv, " "),
    ">" .. shell_quote(out), "2>" .. shell_quote(err), "</dev/null;", "echo", "$?",
  }, " ")
  local pipe = assert(io.popen(cmd, "r"))
  local job = { script = script, srv = srv }
  function job.wait()
    if not job.done then
      local code = tonumber(pipe:read("*a"):match("(%d+)%s*$"))
      pipe:close()
      job.done = { code, read_file(out), read_file(err) }
      os.remove(out)
      os.remove(err)
      srv:stop()
    end
    return job.done[1], job.done[2], job.done[3]
  end
  return job
end

-- What a failed assertion should show: the example's whole output.
local function transcript(job)
  local code, out, err = job.wait()
  return string.format("examples/%s exited %s\n--- stdout\n%s--- stderr\n%s", job.script,
    tostring(code), out, err)
end

-- Runs seen in an example's output: id -> list of statuses in order; and ids in first-seen order.
local function runs_in(lines, pattern)
  local statuses, order = {}, {}
  for _, line in ipairs(lines) do
    local id, status = line:match(pattern)
    if id then
      if not statuses[id] then
        statuses[id] = {}
        order[#order + 1] = id
      end
      table.insert(statuses[id], status)
    end
  end
  return statuses, order
end

describe("examples", function()
  local jobs = {}

  lazy_setup(function()
    jobs.watch_tag = start_example("watch_tag.lua", { "--until-finished" })
    jobs.game_loop = start_example("game_loop.lua", { "user:1234" })
    jobs.cqueues = start_example("cqueues.lua", { "user:1234", "reports" })
    jobs.luv = start_example("luv.lua", { "user:1234", "reports" })
    jobs.stream_run = start_example("stream_run.lua", { "run_demo_stream" })
  end)

  it("stream_run.lua follows the demo's streaming run and its chunks to the end", function()
    local job = jobs.stream_run
    local code, out = job.wait()
    local info = transcript(job)
    assert.are.equal(0, code, info)
    local lines = lines_of(out)
    assert.matches("run_demo_stream QUEUED$", lines[1], info)
    assert.are.equal("run run_demo_stream is finished and its streams are drained", lines[#lines],
      info)
    assert.matches("run_demo_stream COMPLETED$", lines[#lines - 1], info)
    local text = out:match("stream default  ([^\n]*)")
    assert.are.equal("an old silent pond / a frog jumps into the pond / splash! silence again ",
      text, info)
  end)

  lazy_teardown(function()
    for _, job in pairs(jobs) do job.wait() end
  end)

  it("watch_tag.lua --until-finished follows every demo run to its end", function()
    local job = jobs.watch_tag
    local code, out, err = job.wait()
    local info = transcript(job)
    assert.are.equal(0, code, info)
    local lines = lines_of(out)
    assert.are.equal('following runs tagged "user:1234" on ' .. job.srv.base_url
      .. ": one line each time a run changes", lines[1], info)
    assert.are.equal("every run has finished", lines[#lines], info)
    -- updatedAt  id  task  status  detail
    local statuses, order = runs_in(lines, "^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z%s+(run_%w+)%s+%S+%s+(%u[%u_]*)")
    assert.are.equal(DEMO_RUNS, #order, info)
    local completed, failed = 0, 0
    for _, id in ipairs(order) do
      local seen = statuses[id]
      assert.are.equal("QUEUED", seen[1], info)
      local last = seen[#seen]
      assert.is_true(FINAL[last] ~= nil, id .. " ends " .. last .. "\n" .. info)
      if last == "COMPLETED" then completed = completed + 1 end
      if last == "FAILED" then failed = failed + 1 end
    end
    assert.are.equal(4, completed, info)
    assert.are.equal(1, failed, info)
    -- Every packet type decoded (JSON key order is not fixed, and details are cut at 60 chars):
    -- JSON, super+json, text/plain, application/store, and the error of the failed run.
    local function line_for(task, status)
      for _, line in ipairs(lines) do
        if line:find("%s" .. task:gsub("%p", "%%%0") .. "%s+" .. status .. "%s") then return line end
      end
      error("no " .. task .. " " .. status .. " line\n" .. info)
    end
    assert.matches('output={[^}]*"messageId":"msg_8f3a"', line_for("send-welcome-email", "COMPLETED"))
    local report = line_for("generate-report", "COMPLETED")
    assert.is_truthy(report:find('output={"at":"2025-01-10T12:00:00.000Z"', 1, true)
      or report:find('output={"big":"12345678901234567890"', 1, true), info)
    assert.matches("output=HELLO FROM THE DEMO", line_for("echo-text", "COMPLETED"), 1, true)
    local upload = line_for("process-upload", "QUEUED")
    assert.matches('payload={"', upload, 1, true)
    assert.is_nil(upload:find("demo/process-upload", 1, true), info) -- fetched, not the path
    assert.matches("error=The card was declined", line_for("charge-card", "FAILED"), 1, true)
    assert.is_nil(out:find('"userId":"9999"', 1, true), info) -- the user:9999 run stays out
    assert.are.equal("", err, info) -- no retries, no warnings
  end)

  it("game_loop.lua ticks while it follows the runs and stops once all are finished", function()
    local job = jobs.game_loop
    local code, out, err = job.wait()
    local info = transcript(job)
    assert.are.equal(0, code, info)
    local lines = lines_of(out)
    local ticks = tonumber(lines[#lines]:match("^all runs finished after (%d+) ticks$"))
    assert.is_not_nil(ticks, info)
    -- tick N  id  status
    local statuses, order = runs_in(lines, "^tick%s+%d+%s+(run_%w+)%s+(%u[%u_]*)$")
    assert.are.equal(DEMO_RUNS, #order, info)
    for _, id in ipairs(order) do
      local seen = statuses[id]
      assert.is_true(FINAL[seen[#seen]] ~= nil, id .. " ends " .. seen[#seen] .. "\n" .. info)
    end
    -- Updates arrive on many different ticks and the tick count never goes back: the loop kept
    -- its rate (20 a second) while it waited for the network instead of blocking in it.
    local tick_of, distinct, last = {}, 0, 0
    for _, line in ipairs(lines) do
      local n = tonumber(line:match("^tick%s+(%d+)"))
      if n then
        assert.is_true(n >= last, info)
        if not tick_of[n] then distinct = distinct + 1 end
        tick_of[n], last = true, n
      end
    end
    assert.is_true(distinct >= 5, info)
    assert.is_true(ticks >= last, info)
    assert.is_true(ticks >= 40, "the demo lasts ~6 s, so ~120 ticks, got " .. ticks .. "\n" .. info)
    assert.are.equal("", err, info)
  end)

  -- cqueues.lua and luv.lua print the same lines: two tags followed, a heartbeat beating.
  local function two_tags_and_a_heartbeat(job)
    local code, out, err = job.wait()
    local info = transcript(job)
    assert.are.equal(0, code, info)
    local lines = lines_of(out)
    assert.are.equal("every followed tag saw a finished run", lines[#lines], info)
    local beats, first_beat, last_run = 0, nil, nil
    for i, line in ipairs(lines) do
      local n = tonumber(line:match("^heartbeat (%d+): the loop is alive$"))
      if n then
        beats = beats + 1
        assert.are.equal(beats, n, info)
        first_beat = first_beat or i
      elseif line:match("^%[") then
        last_run = i
      end
    end
    -- The first user:1234 run finishes ~2.3 s in, the reports run ~3.9 s in: by then the
    -- heartbeat (one a second) has beaten while both subscriptions were waiting.
    assert.is_true(beats >= 2, info)
    assert.is_true(first_beat < last_run, "a heartbeat between run updates\n" .. info)
    for _, tag in ipairs { "user:1234", "reports" } do
      local pattern = "^%[" .. tag:gsub("%p", "%%%0") .. "%]%s+(run_%w+)%s+(%u[%u_]*)$"
      local statuses, order = runs_in(lines, pattern)
      assert.is_true(#order >= 1, tag .. "\n" .. info)
      local finished = false
      for _, id in ipairs(order) do
        if FINAL[statuses[id][#statuses[id]]] then finished = true end
      end
      assert.is_true(finished, tag .. " saw a finished run\n" .. info)
    end
    local reports = runs_in(lines, "^%[reports%]%s+(run_%w+)%s+(%u[%u_]*)$")
    local n_reports = 0
    for _ in pairs(reports) do n_reports = n_reports + 1 end
    assert.are.equal(1, n_reports, info) -- only generate-report carries "reports"
    assert.are.equal("", err, info)
  end

  it("cqueues.lua follows two tags in coroutines while a heartbeat keeps beating", function()
    two_tags_and_a_heartbeat(jobs.cqueues)
  end)

  it("luv.lua follows two tags from libuv's loop while a heartbeat keeps beating", function()
    two_tags_and_a_heartbeat(jobs.luv)
  end)

  it("the demo holds a batch, batch_1234: three resize-image runs that finish", function()
    local trigger = require "trigger"
    local srv = helper.start_server { scenario = SCENARIO }
    local sub = trigger.runs.subscribe_to_batch("batch_1234", helper.client_opts(srv))
    local last = {}
    local ok, err = pcall(function()
      while true do
        local run, why, failure = sub:next(TIME_LIMIT)
        assert(run, tostring(why) .. " " .. tostring(failure))
        assert.are.equal("resize-image", run.taskIdentifier)
        assert.are.same({ "images" }, run.tags)
        last[run.id] = run.status
        local n, finished = 0, 0
        for _, status in pairs(last) do
          n = n + 1
          if FINAL[status] then finished = finished + 1 end
        end
        if n == 3 and finished == 3 then break end
      end
    end)
    sub:close()
    srv:stop()
    assert(ok, tostring(err))
    local count = {}
    for _, status in pairs(last) do count[status] = (count[status] or 0) + 1 end
    assert.are.same({ COMPLETED = 2, CANCELED = 1 }, count)
  end)
end)
