-- sub:with_streams(): runs and the chunks of their realtime streams, against the local server
-- (both stream framings), and what it does better than SDK 4.8.3 (shared/protocol/streams.md §3, §6).
local helper = require "spec.helper"
local cjson = require "cjson"
local trigger = require "trigger"

local function opts_for(srv, extra)
  return helper.client_opts(srv, extra)
end

-- Items until `pred(item)`, or fail after 10 s without one.
local function items_until(obj, pred, out)
  out = out or {}
  while true do
    local item, why = obj:next(10)
    if not item then
      local got = {}
      for _, i in ipairs(out) do
        got[#got + 1] = i.type .. ":" .. tostring(i.run and i.run.id) .. ":" .. tostring(i.chunk)
      end
      error("no item came (" .. tostring(why) .. ") after " .. table.concat(got, ", "), 2)
    end
    out[#out + 1] = item
    if pred(item) then return out end
  end
end

-- A position as a script keeps it (through JSON), and a tag's object resumed from one.
local function saved_position(obj)
  return cjson.decode(cjson.encode(obj:position()))
end

local function resumed(srv, tag, saved)
  return trigger.runs.subscribe_to_tag(tag, opts_for(srv, { resume = saved.subscription }))
    :with_streams { resume = saved.streams }
end

local function chunks_of(items, run_id, key)
  local out = {}
  for _, item in ipairs(items) do
    if item.type ~= "run" and item.stream == key and item.run.id == run_id then
      out[#out + 1] = item.chunk
    end
  end
  return out
end

for _, version in ipairs { "v2", "v1" } do
  describe("with_streams (" .. version .. " streams)", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = 500 }
      srv:stream_config { version = version, timeout_s = 2, ping_ms = 300 }
    end)
    teardown(function() srv:stop() end)

    it("hands out runs and chunks, and ends once the run is finished and its streams drained",
      function()
        local id = srv:create_run { status = "EXECUTING" }
        srv:create_stream(id, "default")
        srv:append_stream(id, "default", { "a", "b" })
        local obj = trigger.runs.subscribe_to_run(id, opts_for(srv)):with_streams()
        local items = items_until(obj, function(i) return i.chunk == "b" end)
        assert.are.equal("run", items[1].type)
        assert.are.equal(id, items[1].run.id)
        srv:update_run(id, { metadata = '{"progress":1}' })
        items_until(obj, function(i) return i.type == "run" and i.run.metadata ~= nil end, items)
        srv:append_stream(id, "default", { { n = 3 } })
        items_until(obj, function(i) return type(i.chunk) == "table" end, items)
        -- the run in a chunk item is the latest state, not the one the stream was opened with
        assert.are.same({ progress = 1 }, items[#items].run.metadata)
        srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
        srv:append_stream(id, "default", { "after the end" })
        while true do
          local item, why = obj:next(10)
          if not item then
            assert.are.equal("finished", why)
            break
          end
          items[#items + 1] = item
        end
        assert.is_true(obj.finished)
        assert.are.same({ "a", "b", { n = 3 }, "after the end" }, chunks_of(items, id, "default"))
        local latest -- each chunk carries the run as last handed out before it
        for _, item in ipairs(items) do
          if item.type == "run" then latest = item.run else assert.are.equal(latest, item.run) end
        end
        assert.are.equal("COMPLETED", latest.status)
      end)

    it("reads at most max_streams streams at once; the others wait their turn, losing nothing",
      function()
        local id = srv:create_run { status = "EXECUTING" }
        local keys = { "k1", "k2", "k3", "k4", "k5" }
        for _, key in ipairs(keys) do
          srv:create_stream(id, key)
          srv:append_stream(id, key, { key .. "-a", key .. "-b" })
        end
        srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
        local obj = trigger.runs.subscribe_to_run(id, opts_for(srv)):with_streams { max_streams = 2 }
        local got, most = {}, 0
        while true do
          local item, why = obj:next(15)
          most = math.max(most, trigger.stats().active)
          if item == nil then
            assert.are.equal("finished", why)
            break
          end
          if item.type ~= "run" then
            got[item.stream] = got[item.stream] or {}
            table.insert(got[item.stream], item.chunk)
          end
        end
        for _, key in ipairs(keys) do
          assert.are.same({ key .. "-a", key .. "-b" }, got[key])
        end
        -- two streams and the run's subscription, never more
        assert.is_true(most <= 3, "requests in flight at once: " .. most)
      end)

    it("reads every run's streams on a tag subscription (per run and key)", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      local b = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      for _, id in ipairs { a, b } do
        srv:create_stream(id, "default")
        srv:append_stream(id, "default", { id .. ":1" })
      end
      srv:create_stream(b, "logs")
      srv:append_stream(b, "logs", { "log" })
      local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv)):with_streams()
      local got = {}
      local items = items_until(obj, function(i)
        if i.type ~= "run" then got[i.run.id .. "/" .. i.stream] = true end
        return got[a .. "/default"] and got[b .. "/default"] and got[b .. "/logs"]
      end)
      obj:close()
      assert.are.same({ a .. ":1" }, chunks_of(items, a, "default"))
      assert.are.same({ b .. ":1" }, chunks_of(items, b, "default"))
      assert.are.same({ "log" }, chunks_of(items, b, "logs"))
    end)

    it("reopens a stream the server closed for idleness and loses nothing after", function()
      local id = srv:create_run { status = "EXECUTING" }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { 1 })
      local obj = trigger.runs.subscribe_to_run(id, opts_for(srv)):with_streams()
      local items = items_until(obj, function(i) return i.chunk == 1 end)
      -- quiet for longer than the server's idle wait (2 s here, 60 s on Trigger.dev)
      local item = obj:next(2.6)
      assert.is_nil(item)
      srv:append_stream(id, "default", { 2 })
      items_until(obj, function(i) return i.chunk == 2 end, items)
      obj:close()
      assert.are.same({ 1, 2 }, chunks_of(items, id, "default"))
    end)

    -- Fan-out (issue 17): consumers of one tag see the run list its stream in the same batch.
    it("shares a stream among the objects that open it together, each at its own place",
      function()
        srv:stream_config { version = version, timeout_s = 60, ping_ms = 300 } -- no idle reopen
        local tag = helper.fresh_tag()
        local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
        srv:create_stream(id, "default")
        srv:append_stream(id, "default", { "a", "b" })
        local path = "/realtime/v1/streams/" .. id .. "/default"
        local function stream_requests()
          local n = 0
          for _, e in ipairs(srv:stats().log) do
            if e.path == path then n = n + 1 end
          end
          return n
        end
        local function open(extra)
          return trigger.runs.subscribe_to_tag(tag, opts_for(srv, extra)):with_streams()
        end
        -- Poll every object until each has `n` chunks (or fail after 10 s).
        local function drive(objs, got, n)
          for _ = 1, 1000 do
            local done = true
            for i, obj in ipairs(objs) do
              if not obj.closed then
                local item = obj:poll()
                while item do
                  if item.type ~= "run" then got[i][#got[i] + 1] = item.chunk end
                  item = obj:poll()
                end
                if #got[i] < n then done = false end
              end
            end
            if done then return end
            trigger.step(0.01)
          end
          error("the chunks did not come")
        end
        srv:reset_stats()
        local objs, got = { open(), open(), open() }, { {}, {}, {} }
        drive(objs, got, 2)
        assert.are.equal(1, stream_requests())
        local p1 = objs[1]:position().streams[id].default
        assert.is_not_nil(next(p1))
        for i = 2, 3 do assert.are.same(p1, objs[i]:position().streams[id].default) end
        srv:append_stream(id, "default", { "c" })
        drive({ objs[1] }, { got[1] }, 3) -- the first one reads ahead; c is kept for the others
        assert.are.same(p1, objs[3]:position().streams[id].default)
        assert.are_not.same(p1, objs[1]:position().streams[id].default)
        drive(objs, got, 3)
        assert.are.same(objs[1]:position().streams[id].default, objs[3]:position().streams[id].default)
        objs[2]:close() -- one leaving does not disturb the others
        srv:append_stream(id, "default", { "d" })
        drive(objs, got, 4)
        for _, i in ipairs { 1, 3 } do assert.are.same({ "a", "b", "c", "d" }, got[i]) end
        assert.are.same({ "a", "b", "c" }, got[2])
        -- A late one reads the stream from the beginning on its own.
        local late, late_got = open(), { {} }
        drive({ late }, late_got, 4)
        assert.are.same({ "a", "b", "c", "d" }, late_got[1])
        assert.are.equal(2, stream_requests())
        -- share = false: a request each.
        srv:reset_stats()
        local alone = { open { share = false }, open { share = false } }
        drive(alone, { {}, {} }, 4)
        assert.are.equal(2, stream_requests())
        for _, obj in ipairs { objs[1], objs[3], late, alone[1], alone[2] } do obj:close() end
        srv:stream_config { version = version, timeout_s = 2, ping_ms = 300 }
      end)

    -- Found writing the soak's with_streams readers: a resumed object reopened a stream only
    -- when its run changed again, so the chunks of a quiet run never came.
    it("resumes from a position: the streams go on at once, each chunk once", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING", metadata = '{"m":1}' }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { "a", "b" })
      local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv)):with_streams()
      local items = items_until(obj, function(i) return i.chunk == "b" end)
      local saved = saved_position(obj)
      obj:close()
      srv:append_stream(id, "default", { "c" }) -- the run itself does not change
      local again = resumed(srv, tag, saved)
      local more = items_until(again, function(i) return i.chunk == "c" end)
      srv:append_stream(id, "default", { "d" })
      items_until(again, function(i) return i.chunk == "d" end, more)
      again:close()
      assert.are.same({ "a", "b" }, chunks_of(items, id, "default"))
      assert.are.same({ "c", "d" }, chunks_of(more, id, "default"))
      for _, item in ipairs(more) do
        assert.are_not.equal("run", item.type) -- nothing changed: the run is not handed out again
        assert.are.same({ m = 1 }, item.run.metadata) -- the run as last handed out
      end
    end)

    -- As the object it resumes: a run's stream stays open after the run leaves the shape.
    it("resumes the stream of a run that left the shape after the position was saved", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { "a" })
      local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv)):with_streams()
      items_until(obj, function(i) return i.chunk == "a" end)
      local saved = saved_position(obj)
      obj:close()
      srv:update_run(id, { runTags = { "elsewhere" } })
      srv:append_stream(id, "default", { "b" })
      local again = resumed(srv, tag, saved)
      local more = items_until(again, function(i) return i.chunk == "b" end)
      assert.are.same({ tag }, more[#more].run.tags) -- the run as last handed out
      srv:update_run(id, { runTags = { tag } })
      items_until(again, function(i) return i.type == "run" end, more)
      srv:append_stream(id, "default", { "c" })
      items_until(again, function(i) return i.chunk == "c" end, more)
      again:close()
      assert.are.same({ "b", "c" }, chunks_of(more, id, "default")) -- from where it stood, once
    end)

    -- Soak seed 14: an object resumed while its run was out of the shape did not reopen the
    -- run's stream (right: no run to hand with its chunks), but its position lost the stream,
    -- so the object resumed from that read it again from the start once the run came back.
    it("keeps the place of a stream whose run is out of the shape across resumes", function()
      local tag = helper.fresh_tag()
      local id = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      srv:create_stream(id, "default")
      srv:append_stream(id, "default", { "a" })
      local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv)):with_streams()
      items_until(obj, function(i) return i.chunk == "a" end)
      srv:update_run(id, { runTags = { "elsewhere" } }) -- Electric: the position drops the run
      srv:append_stream(id, "default", { "b" })
      items_until(obj, function(i) return i.chunk == "b" end) -- its stream is still read
      assert.is_nil(obj:next(0.3))
      local saved = saved_position(obj)
      obj:close()
      local between = resumed(srv, tag, saved)
      assert.is_nil(between:next(0.3)) -- neither the run nor its stream: it is out of the shape
      saved = saved_position(between)
      between:close()
      assert.is_table(saved.streams[id] and saved.streams[id].default)
      srv:update_run(id, { runTags = { tag } })
      local again = resumed(srv, tag, saved)
      local more = items_until(again, function(i) return i.type == "run" end)
      srv:append_stream(id, "default", { "c" })
      items_until(again, function(i) return i.chunk == "c" end, more)
      again:close()
      assert.are.same({ "c" }, chunks_of(more, id, "default")) -- neither a nor b again
    end)

    it("reports a stream that fails for good and keeps reading the others", function()
      local tag = helper.fresh_tag()
      local a = srv:create_run { runTags = { tag }, status = "EXECUTING" }
      srv:create_stream(a, "good")
      srv:create_stream(a, "bad")
      srv:fault { match = { path_prefix = "/realtime/v1/streams/" .. a .. "/bad" }, kind = "status",
        status = 404, count = 1 }
      local errs = {}
      local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv, {
        on_error = function(e) errs[#errs + 1] = e end })):with_streams()
      srv:append_stream(a, "good", { "ok" })
      items_until(obj, function(i) return i.chunk == "ok" end)
      srv:append_stream(a, "good", { "still" })
      items_until(obj, function(i) return i.chunk == "still" end)
      obj:close()
      local found
      for _, e in ipairs(errs) do
        if e.status == 404 then found = e end
      end
      assert.is_table(found, "the 404 was not reported")
      assert.are.equal("not_found", found.kind)
      assert.are.equal("bad", found.stream)
      assert.are.equal(a, found.run_id)
    end)
  end)
end

describe("with_streams", function()
  it("refuses options it does not know", function()
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = "tr_dev_x",
      base_url = "http://127.0.0.1:9", on_error = function() end })
    assert.has_error(function() sub:with_streams { dran_timeout = 1 } end)
    assert.has_error(function() sub:with_streams { drain_timeout = -1 } end)
    sub:close()
  end)
end)

describe("with_streams over time", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 500 } end)
  teardown(function() srv:stop() end)

  -- Found by the soak (its heap bound): every run a tag ever had was kept, as a run object,
  -- for the chunk items of streams it did not have.
  it("keeps no run that has no stream of its own once it has left the shape", function()
    local tag = helper.fresh_tag()
    local obj = trigger.runs.subscribe_to_tag(tag, opts_for(srv)):with_streams()
    assert.is_nil(obj:next(0.3))
    collectgarbage("collect")
    local before = collectgarbage("count")
    local ids, pad = {}, ('{"pad":"%s"}'):format(("x"):rep(100000))
    for i = 1, 60 do ids[i] = srv:create_run { runTags = { tag }, payload = pad } end
    local runs = 0
    items_until(obj, function(i)
      if i.type == "run" then runs = runs + 1 end
      return runs == 60
    end)
    for _, id in ipairs(ids) do srv:update_run(id, { runTags = { "elsewhere" } }) end
    assert.is_nil(obj:next(1)) -- the Electric feed deletes them from the shape
    collectgarbage("collect")
    local grown_kb = collectgarbage("count") - before
    obj:close()
    -- 60 runs of 100 KB would be 6,000 KB
    assert.is_true(grown_kb < 3000, ("the object still holds %.0f KB"):format(grown_kb))
  end)
end)
