-- Fan-out: subscriptions of one Lua state with the same path, filter and credentials share one
-- upstream shape (one request in flight), and each still sees exactly what it would see alone.
-- Against the local server on both backends, counting the requests it gets.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"
local trigger = require "trigger"
local upstream = require "trigger.fanout.upstream"

local HOLD_MS = 500
local CHUNK_ROWS = 3 -- pages of the Electric sync (the native feed answers in one)

local function open(srv, tag, extra)
  return (trigger.runs.subscribe_to_tag(tag, helper.client_opts(srv, extra)))
end

-- Drive every subscription in `subs` with poll() for `seconds`; what each yielded, by index.
local function drive_all(subs, seconds)
  local got = {}
  for i = 1, #subs do got[i] = {} end
  local deadline = socket.gettime() + seconds
  while socket.gettime() < deadline do
    for i, sub in ipairs(subs) do
      if not sub.closed then
        local run = sub:poll()
        while run do
          got[i][#got[i] + 1] = run
          run = sub:poll()
        end
      end
    end
    trigger.step(0.02)
  end
  return got
end

-- The last state per run id of a list of runs, and a check that no state came twice in a row.
local function last_states(runs)
  local last = {}
  for _, run in ipairs(runs) do
    local prev = last[run.id]
    assert(not (prev and prev.updatedAt == run.updatedAt and prev.status == run.status),
      "run " .. run.id .. " yielded twice in the same state")
    last[run.id] = run
  end
  return last
end

local function status_of(last)
  local out = {}
  for id, run in pairs(last) do out[id] = run.status end
  return out
end

for _, backend in ipairs { "electric", "native" } do
  describe("fan-out on the " .. backend .. " backend", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = HOLD_MS, backend = backend, native_coalesce_ms = 20,
                                  chunk_rows = CHUNK_ROWS }
    end)
    teardown(function() srv:stop() end)
    local base -- upstreams other specs left open
    before_each(function()
      srv:reset()
      base = upstream.count()
    end)
    local function shared_count() return upstream.count() - base end

    it("shares one upstream: one long-poll for many subscriptions, each gets every state", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local b = srv:create_run { runTags = { tag }, status = "PENDING" }
      local subs = {}
      for i = 1, 5 do subs[i] = open(srv, tag) end
      assert.are.equal(1, shared_count())
      local got = drive_all(subs, 1)
      for i = 1, 5 do
        assert.are.same({ [a] = "EXECUTING", [b] = "QUEUED" }, status_of(last_states(got[i])))
      end
      srv:reset_stats()
      local idle = drive_all(subs, 2)
      for i = 1, 5 do assert.are.same({}, idle[i]) end
      local stats = srv:stats()
      -- one subscription alone: about one long-poll per hold (600 ms ± 15 %); five unshared: five
      assert.is_true(stats.realtime_requests <= 2000 / (HOLD_MS * 0.85) + 2,
        "too many upstream requests: " .. stats.realtime_requests)
      srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
      got = drive_all(subs, 1)
      for i = 1, 5 do
        assert.are.same({ [a] = "COMPLETED" }, status_of(last_states(got[i])))
        subs[i]:close()
      end
      assert.are.equal(0, shared_count())
    end)

    it("gives a late subscription every current run first, then changes", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local first = open(srv, tag)
      helper.collect(first, 1)
      srv:update_run(a, { metadata = '{"p":1}' })
      local b = srv:create_run { runTags = { tag }, status = "PENDING" }
      drive_all({ first }, 1)
      local late = open(srv, tag)
      assert.are.equal(1, shared_count())
      local now = drive_all({ first, late }, 0.5)
      local seen = last_states(now[2])
      assert.are.same({ [a] = "EXECUTING", [b] = "QUEUED" }, status_of(seen))
      assert.are.same({ p = 1 }, seen[a].metadata)
      assert.are.same({}, now[1], "the first subscription got something again")
      srv:update_run(b, { status = "EXECUTING" })
      now = drive_all({ first, late }, 1)
      assert.are.same({ [b] = "EXECUTING" }, status_of(last_states(now[1])))
      assert.are.same({ [b] = "EXECUTING" }, status_of(last_states(now[2])))
      first:close()
      late:close()
    end)

    it("gives a late subscription no run that left the shape (the native feed never says)",
      function()
        local tag = helper.fresh_tag()
        local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        local gone = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        local first = open(srv, tag)
        helper.collect(first, 2)
        srv:delete_run(gone)
        srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
        drive_all({ first }, 1)
        local late = open(srv, tag)
        local got = drive_all({ first, late }, 1.5)
        assert.are.same({ [a] = "COMPLETED" }, status_of(last_states(got[2])))
        assert.are.same({}, got[1], "the first subscription got something again")
        first:close()
        late:close()
      end)

    it("closing one subscription leaves the others running; the last one closes the upstream",
      function()
        local tag = helper.fresh_tag()
        local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        local s1, s2 = open(srv, tag), open(srv, tag)
        drive_all({ s1, s2 }, 0.5)
        s1:close()
        srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
        local got = drive_all({ s2 }, 1)
        assert.are.same({ [a] = "COMPLETED" }, status_of(last_states(got[1])))
        assert.are.equal(1, shared_count())
        s2:close()
        assert.are.equal(0, shared_count())
        -- the upstream's long-poll was aborted: the server sees no realtime request left
        local deadline = socket.gettime() + 5
        repeat
          local st = srv:stats()
          local active = st.active_realtime + (st.active_native or 0)
          if active == 0 then break end
          socket.sleep(0.05)
        until socket.gettime() > deadline
        local st = srv:stats()
        assert.are.equal(0, st.active_realtime + (st.active_native or 0))
      end)

    it("shares nothing with share = false, or across credentials and filters", function()
      local tag = helper.fresh_tag()
      srv:create_run { runTags = { tag } }
      local s1 = open(srv, tag)
      local s2 = open(srv, tag, { share = false })
      local s3 = open(srv, tag, { skip_columns = { "payload" } })
      local token = assert(trigger.auth.create_public_token {
        access_token = srv.secret_key, base_url = srv.base_url,
        scopes = { read = { tags = { tag } } } })
      local s4 = open(srv, tag, { access_token = token })
      assert.are.equal(3, shared_count()) -- s2 is private: not in the shared table
      local got = drive_all({ s1, s2, s3, s4 }, 1)
      for i = 1, 4 do assert.are.equal(1, #got[i]) end
      for _, s in ipairs { s1, s2, s3, s4 } do s:close() end
      assert.are.equal(0, shared_count())
    end)

    it("resumes a subscription into a shared upstream: only what changed, runs that left dropped",
      function()
        local tag = helper.fresh_tag()
        local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        local b = srv:create_run { runTags = { tag }, status = "PENDING" }
        local c = srv:create_run { runTags = { tag }, status = "PENDING" }
        local first = open(srv, tag)
        helper.collect(first, 3)
        local saved = first:position()
        local keeper = open(srv, tag) -- keeps the upstream alive
        drive_all({ first, keeper }, 0.3)
        first:close()
        srv:update_run(a, { status = "COMPLETED_SUCCESSFULLY" })
        srv:update_run(c, { runTags = { "elsewhere" } })
        drive_all({ keeper }, 1)
        local resumed = open(srv, tag, { resume = saved })
        local got = drive_all({ resumed, keeper }, 0.5)
        assert.are.same({ [a] = "COMPLETED" }, status_of(last_states(got[1])))
        local rows = resumed:position().rows
        local ids = {}
        for _, row in pairs(rows) do ids[row.friendlyId] = true end
        if backend == "electric" then
          assert.are.same({ [a] = true, [b] = true }, ids) -- c left the shape
        else
          assert.is_true(ids[a] and ids[b]) -- the native feed never says a run left
        end
        resumed:close()
        keeper:close()
      end)

    -- Soak seed 104: each subscription resumed from a position kept its own copy of every run
    -- the position held, the same state as the shared upstream's rows, for as long as the run
    -- did not change (for ever, once finished): the heap grew with every resume.
    it("resumes into a shared upstream without keeping a second copy of runs unchanged since",
      function()
        local tag = helper.fresh_tag()
        local big = ("x"):rep(256 * 1024)
        srv:create_run { runTags = { tag }, status = "COMPLETED_SUCCESSFULLY",
          output = cjson.encode { blob = big }, outputType = "application/json" }
        local first = open(srv, tag)
        helper.collect(first, 1)
        local keeper = open(srv, tag) -- keeps the upstream alive
        drive_all({ first, keeper }, 0.3)
        local text = cjson.encode(first:position()) -- as a script saves it
        first:close()
        local N = 8
        collectgarbage("collect")
        collectgarbage("collect")
        local before = collectgarbage("count")
        local resumed = {}
        for i = 1, N do resumed[i] = open(srv, tag, { resume = cjson.decode(text) }) end
        -- Each took its position's copy; once it has the upstream's batch it keeps that row.
        local grown
        local deadline = socket.gettime() + 10
        repeat
          local got = drive_all(resumed, 0.1)
          for i = 1, N do assert.are.same({}, got[i]) end -- nothing changed since the position
          collectgarbage("collect")
          collectgarbage("collect")
          grown = collectgarbage("count") - before
        until grown < N * 256 / 2 or socket.gettime() > deadline
        assert.is_true(grown < N * 256 / 2, ("heap grew by %d KB for %d resumed subscriptions of "
          .. "one 256 KB run"):format(math.floor(grown), N))
        for i = 1, N do resumed[i]:close() end
        keeper:close()
      end)

    -- Soak seed 21 (issue 18): a subscription resumed while the shared upstream was between
    -- the pages of a resync (after a 409) took the half-read rows as the whole shape, forgot
    -- what its position said it had been given, and handed those runs out again.
    it("resumes into a shared upstream in the middle of a resync: nothing handed out again",
      function()
        local tag = helper.fresh_tag()
        local ids = {}
        for i = 1, 7 do ids[i] = srv:create_run { runTags = { tag }, status = "EXECUTING" } end
        local first = open(srv, tag)
        helper.collect(first, 7)
        local keeper = open(srv, tag) -- keeps the upstream alive
        drive_all({ first, keeper }, 0.3)
        local saved = first:position()
        first:close()
        -- Electric reads the shape again in pages of CHUNK_ROWS: hold every page after the
        -- first, so that the resumed subscription joins between them.
        srv:fault { kind = "delay", delay_ms = 1500, count = 3,
          match = { path_prefix = "/realtime/v1/runs", live = false, initial = false } }
        srv:rotate()
        drive_all({ keeper }, 0.7)
        local resumed = open(srv, tag, { resume = saved })
        local got = drive_all({ resumed, keeper }, 4)
        assert.are.same({}, got[1]) -- no run changed since the position
        srv:update_run(ids[7], { status = "COMPLETED_SUCCESSFULLY" })
        got = drive_all({ resumed, keeper }, 1.5)
        assert.are.same({ [ids[7]] = "COMPLETED" }, status_of(last_states(got[1])))
        resumed:close()
        keeper:close()
      end)
  end)
end

-- Soak seed 183: a reader joined a shared upstream just after the server flipped from the native
-- feed to Electric, while the shape was being read again page by page (the 409 for the native
-- handle). The loop still took the shape for a native one (it had learnt so from the last body
-- that ended up to date), so the page that answered the joiner's fresh read dropped the rows of
-- the pages before it as runs that had left; Electric's next partial update of one of them then
-- made a run of a few columns, handed out with no id.
describe("fan-out across a flip from the native feed to Electric", function()
  local srv
  setup(function()
    srv = helper.start_server { hold_ms = HOLD_MS, backend = "native", native_coalesce_ms = 20,
                                chunk_rows = 2 }
  end)
  teardown(function() srv:stop() end)

  it("keeps every run when a reader joins between the pages of the resync", function()
    local tag = helper.fresh_tag()
    local ids = {}
    for i = 1, 6 do ids[i] = srv:create_run { runTags = { tag }, status = "EXECUTING" } end
    local first = open(srv, tag)
    helper.collect(first, 6)
    drive_all({ first }, 0.3) -- live on the native feed
    -- Electric does not know the native handle (409): the shape is read again in pages of 2;
    -- every page after the first is held, so that the joiner comes between them.
    srv:fault { kind = "delay", delay_ms = 1200, count = 4,
      match = { path_prefix = "/realtime/v1/runs", live = false, initial = false } }
    srv:set_backend("electric")
    local got = drive_all({ first }, 1)
    local joiner = open(srv, tag)
    local more = drive_all({ first, joiner }, 6)
    for _, run in ipairs(more[1]) do got[1][#got[1] + 1] = run end
    srv:update_run(ids[1], { status = "COMPLETED_SUCCESSFULLY" })
    local after = drive_all({ first, joiner }, 2)
    for i, list in ipairs { got[1], more[2], after[1], after[2] } do
      for _, run in ipairs(list) do
        assert(type(run.id) == "string" and type(run.taskIdentifier) == "string",
          ("list %d: a run handed out without its id or task (%s)"):format(i, cjson.encode(run)))
      end
    end
    local function final(list)
      local last = last_states(list)
      return last[ids[1]] and last[ids[1]].status
    end
    assert.are.equal("COMPLETED", final(after[1]))
    assert.are.equal("COMPLETED", final(after[2]))
    assert.are.equal(6, #joiner:position().rows and (function()
      local n = 0
      for _ in pairs(joiner:position().rows) do n = n + 1 end
      return n
    end)())
    first:close()
    joiner:close()
  end)
end)
