-- trigger.streams.read against the local server over HTTP: both framings (v1 Redis, v2 S2),
-- faults before the first chunk, mid-stream and after the end, resume, from latest, idle
-- reopen, terminal statuses, many streams on one hub.
local helper = require "spec.helper"
local cjson = require "cjson"

local trigger = require "trigger"
local streams = require "trigger.streams"

local PREFIX = "/realtime/v1/streams/"

describe("trigger.streams.read", function()
  local srv

  setup(function()
    srv = helper.start_server { stream_timeout_s = 1, stream_ping_ms = 200 }
  end)

  teardown(function()
    srv:stop()
  end)

  before_each(function()
    srv:admin("POST", "/_emulator/reset")
  end)

  local function open(id, key, opts)
    opts = opts or {}
    opts.access_token = opts.access_token or srv.secret_key
    opts.base_url = opts.base_url or srv.base_url
    return trigger.streams.read(id, key, opts)
  end

  local function take(s, n, timeout)
    local out = {}
    while #out < n do
      local chunk, why, err = s:next(timeout or 10)
      if chunk == nil then
        error(string.format("got %d of %d chunks: %s %s", #out, n, tostring(why), tostring(err)), 2)
      end
      out[#out + 1] = chunk
    end
    return out
  end

  -- The stream requests the server saw, in order.
  local function stream_requests()
    local out = {}
    for _, e in ipairs(srv:stats().log) do
      if e.path:sub(1, #PREFIX) == PREFIX then out[#out + 1] = e end
    end
    return out
  end

  local function run_with(version, key)
    local id = srv:create_run { tags = { "streams" } }
    srv:create_stream(id, key or "default", { version = version })
    return id
  end

  it("is exposed as trigger.streams", function()
    assert.are.equal(streams, trigger.streams)
    assert.are.equal("function", type(trigger.streams.read))
  end)

  it("refuses misuse at once", function()
    assert.has_error(function() trigger.streams.read(nil) end)
    assert.has_error(function() trigger.streams.read("run_1", "") end)
    assert.has_error(function() trigger.streams.read("run_1", "k", { from = "start" }) end)
    assert.has_error(function() trigger.streams.read("run_1", "k", { timeout_seconds = 601 }) end)
    assert.has_error(function() trigger.streams.read("run_1", "k", { resume = { version = "v3" } }) end)
    assert.has_error(function() trigger.streams.read("run_1", "k", { form = "latest" }) end)
  end)

  for _, version in ipairs { "v2", "v1" } do
    describe(version, function()
      it("hands out the chunks as the SDK decodes them (streams.md 7a)", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "Hello", { n = 2 }, "!" })
        local s = open(id) -- key defaults to "default"
        local got = take(s, 3)
        assert.are.same({ "Hello", { n = 2 }, "!" }, got)
        s:close()
        local reqs = stream_requests()
        assert.are.equal(PREFIX .. id .. "/default", reqs[1].path)
        assert.are.equal("text/event-stream", reqs[1].headers.accept)
        assert.is_nil(reqs[1].headers["last-event-id"])
        assert.is_nil(reqs[1].headers["x-trigger-stream-start"])
      end)

      it("keeps order and decodes JSON values (null, numbers, nested), raw text as a string",
        function()
          local id = run_with(version)
          srv:append_stream(id, "default", { 1, cjson.null, { a = { b = true } }, "x" })
          local s = open(id)
          local got = take(s, 4)
          assert.are.equal(1, got[1])
          assert.are.equal(cjson.null, got[2])
          assert.are.same({ a = { b = true } }, got[3])
          assert.are.equal("x", got[4])
          s:close()
        end)

      it("retries statuses before the first chunk and hands each chunk out once", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "a", "b" })
        srv:fault { kind = "status", status = 503, count = 2, match = { path_prefix = PREFIX } }
        srv:fault { kind = "status", status = 429, retry_after = 0, count = 1,
          match = { path_prefix = PREFIX } }
        local seen = {}
        local s = open(id, nil, { on_error = function(e) seen[#seen + 1] = e end })
        assert.are.same({ "a", "b" }, take(s, 2))
        assert.are.equal(3, #seen)
        assert.are.equal("network", seen[1].kind)
        assert.are.equal(503, seen[1].status)
        assert.are.equal("rate_limited", seen[3].kind)
        assert.are.equal(4, s:requests())
        s:close()
      end)

      for _, kind in ipairs { "reset_mid_body", "truncate", "sse_error" } do
        it("resumes after a " .. kind .. " mid-stream: no chunk lost or repeated", function()
          local id = run_with(version)
          local ids = srv:append_stream(id, "default", { "Hello", { n = 2 }, "!" }).ids
          srv:fault { kind = kind, after = 1, count = 1, match = { path_prefix = PREFIX } }
          local errs = 0
          local s = open(id, nil, { on_error = function() errs = errs + 1 end })
          assert.are.same({ "Hello", { n = 2 }, "!" }, take(s, 3))
          assert.are.equal(1, errs)
          local reqs = stream_requests()
          assert.are.equal(2, #reqs)
          local resumed = reqs[2].headers["last-event-id"]
          if version == "v2" then
            assert.are.equal("0", resumed) -- the seq_num, never S2's "0,1,41" triple
          else
            -- the id before the last one handed out: XREAD after it starts at that entry
            local ms = assert(tonumber(ids[1]:match("^(%d+)")))
            assert.truthy(resumed == string.format("%d-18446744073709551615", ms - 1)
              or resumed == ids[1]:gsub("%-(%d+)$", function(n) return "-" .. (n - 1) end))
          end
          s:close()
        end)
      end

      it("drops a record a resumed read sends again (overlap)", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "a", "b", "c" })
        srv:fault { kind = "reset_mid_body", after = 2, count = 1, match = { path_prefix = PREFIX } }
        srv:fault { kind = "overlap", count = 1, match = { path_prefix = PREFIX } }
        local s = open(id)
        assert.are.same({ "a", "b", "c" }, take(s, 3))
        assert.is_nil((s:next(1.5)))
        s:close()
      end)

      it("reopens an idle-closed stream from its position while the caller reads", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "first" })
        local s = open(id)
        assert.are.same({ "first" }, take(s, 1))
        local chunk, why = s:next(2.5) -- the server closes after 1 s idle; the stream reopens
        assert.is_nil(chunk)
        assert.are.equal("timeout", why)
        assert.is_true(s:requests() >= 2)
        srv:append_stream(id, "default", { "later" })
        assert.are.same({ "later" }, take(s, 1))
        local reqs = stream_requests()
        assert.is_not_nil(reqs[#reqs].headers["last-event-id"])
        s:close()
      end)

      it("retries a fault after the end (the reopen fails) and goes on", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "one" })
        local s = open(id)
        assert.are.same({ "one" }, take(s, 1))
        srv:fault { kind = "status", status = 500, count = 2, match = { path_prefix = PREFIX } }
        assert.is_nil((s:next(2)))
        srv:append_stream(id, "default", { "two" })
        assert.are.same({ "two" }, take(s, 1))
        s:close()
      end)

      it("ends at the idle close with reopen = false", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "only" })
        local got = {}
        for chunk in open(id, nil, { reopen = false, timeout_seconds = 1 }) do
          got[#got + 1] = chunk
        end
        assert.are.same({ "only" }, got)
        assert.are.equal("1", stream_requests()[1].headers["timeout-seconds"])
      end)

      it("resumes from position(): only later chunks", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "a", "b", "c" })
        local s = open(id)
        assert.are.same({ "a", "b" }, take(s, 2))
        local pos = cjson.decode(cjson.encode(s:position()))
        s:close()
        assert.are.equal(version, pos.version)
        local again = open(id, nil, { resume = pos })
        assert.are.same({ "c" }, take(again, 1))
        assert.is_nil((again:next(1.5)))
        again:close()
      end)

      it("starts at the tail with from = latest", function()
        local id = run_with(version)
        srv:append_stream(id, "default", { "old1", "old2", "old3" })
        local s = open(id, nil, { from = "latest" })
        local first = s:next(0.5)
        srv:append_stream(id, "default", { "new" })
        local got = first and { first } or {}
        while got[#got] ~= "new" do got[#got + 1] = assert(s:next(5)) end
        for _, c in ipairs(got) do
          assert.is_true(c == "old3" or c == "new", "got " .. tostring(c))
        end
        assert.are.equal("latest", stream_requests()[1].headers["x-trigger-stream-start"])
        s:close()
      end)

      it("drives many streams on one hub with poll()", function()
        local all = {}
        for _ = 1, 6 do
          local id = run_with(version, "a")
          srv:create_stream(id, "b", { version = version })
          for _, key in ipairs { "a", "b" } do
            srv:append_stream(id, key, { id .. key .. 1, id .. key .. 2 })
            local s = open(id, key)
            all[#all + 1] = { s = s, got = {}, want = { id .. key .. 1, id .. key .. 2 } }
          end
        end
        local fd = all[1].s:pollfd()
        for _, e in ipairs(all) do assert.are.equal(fd, e.s:pollfd()) end
        local deadline = os.time() + 15
        local left = #all
        while left > 0 and os.time() < deadline do
          trigger.step(0.05)
          for _, e in ipairs(all) do
            local c = e.s:poll()
            while c do
              e.got[#e.got + 1] = c
              if #e.got == 2 then left = left - 1 end
              c = e.s:poll()
            end
          end
        end
        for _, e in ipairs(all) do
          assert.are.same(e.want, e.got)
          e.s:close()
        end
      end)
    end)
  end

  it("v1: several lines of one Redis entry survive a cut between them", function()
    local id = run_with("v1")
    srv:append_stream_records(id, "default", { { body = '"l1"\n"l2"\n"l3"\n' } })
    srv:append_stream(id, "default", { "next" })
    srv:fault { kind = "reset_mid_body", after = 1, count = 1, match = { path_prefix = PREFIX } }
    local s = open(id)
    assert.are.same({ "l1", "l2", "l3", "next" }, take(s, 4))
    assert.is_nil((s:next(1.5)))
    s:close()
  end)

  it("v1: ids past 64 bits are resumed from exactly (issue 28)", function()
    -- Ids are text: compared and counted down as decimals, never as Lua numbers (which made
    -- 5.4 raise "no integer representation" and LuaJIT send a negative id or lose precision).
    local id = run_with("v1")
    local big = "99999999999999999999" -- past 2^64: no Redis id, handled the same way
    srv:append_stream_records(id, "default", {
      { id = "1736510400000-18446744073709551614", body = '"a"\n' },
      { id = "1736510400000-18446744073709551615", body = '"b1"\n"b2"\n' },
      { id = "1736510400001-0", body = '"c"\n' },
      { id = big .. "-0", body = '"d"\n' },
      { id = big .. "-" .. big, body = '"e"\n' },
    })
    -- cut after a, b1 (request 1); after b1 again, b2, c (2); after c again, d (3)
    for _, after in ipairs { 2, 3, 2 } do
      srv:fault { kind = "reset_mid_body", after = after, count = 1, match = { path_prefix = PREFIX } }
    end
    local s = open(id)
    assert.are.same({ "a", "b1", "b2", "c", "d", "e" }, take(s, 6))
    local reqs = stream_requests()
    assert.are.equal(4, #reqs)
    assert.is_nil(reqs[1].headers["last-event-id"])
    assert.are.equal("1736510400000-18446744073709551614", reqs[2].headers["last-event-id"])
    assert.are.equal("1736510400000-18446744073709551615", reqs[3].headers["last-event-id"])
    assert.are.equal("99999999999999999998-18446744073709551615", reqs[4].headers["last-event-id"])
    local pos = s:position()
    assert.are.same({ version = "v1", id = big .. "-" .. big, count = 1 }, pos)
    s:close()
    -- the position resumes: nothing again, the id before it asked
    srv:append_stream_records(id, "default", { { body = '"f"\n' } }) -- big-(big+1)
    local r = open(id, nil, { resume = pos })
    assert.are.same({ "f" }, take(r, 1))
    assert.are.equal(big .. "-99999999999999999998", stream_requests()[5].headers["last-event-id"])
    assert.are.same({ version = "v1", id = big .. "-100000000000000000000", count = 1 },
      r:position())
    r:close()
  end)

  it("v1: an id that cannot be sent back ends the stream with a protocol error, once", function()
    -- A megabyte (every reconnect failed: libcurl's "Out of memory"), a control byte or DEL
    -- (sent verbatim in Last-Event-ID), a space: what the server sends must be a header token.
    local cases = { [("x"):rep(1024 * 1024)] = "1048576 bytes", ["1-1\1x"] = "control byte",
      ["1-1\127"] = "control byte", ["1 2"] = "space" }
    for bad, said in pairs(cases) do
      srv:admin("POST", "/_emulator/reset")
      local id = run_with("v1")
      srv:append_stream(id, "default", { "a", "b" })
      srv:fault { kind = "v1_id", id = bad, count = 1, match = { path_prefix = PREFIX } }
      local s = open(id)
      local ok, err = pcall(s.next, s, 10)
      assert.is_false(ok)
      assert.is_true(trigger.errors.is(err, "protocol"), tostring(err))
      assert.matches("stream " .. id .. "/default: the server sent", err.message, 1, true)
      assert.matches(said, err.message, 1, true)
      assert.is_nil(err.message:find(bad, 1, true))
      assert.matches(PREFIX .. id .. "/default", err.request, 1, true)
      assert.are.equal(1, #stream_requests())
      assert.is_true(s.closed)
    end
  end)

  it("v1: opts.resume takes any id a position can hold, and refuses one it cannot send", function()
    local id = run_with("v1")
    srv:append_stream_records(id, "default", { { id = "5-0", body = '"x"\n' } })
    for _, ok_id in ipairs { "18446744073709551616-18446744073709551616", "opaque-id" } do
      open(id, nil, { resume = { version = "v1", id = ok_id, count = 1 } }):close()
    end
    for _, bad in ipairs { "1-1\1", ("1"):rep(600) .. "-0", "" } do
      assert.has_error(function()
        open(id, nil, { resume = { version = "v1", id = bad, count = 1 } })
      end)
    end
  end)

  it("v2: skips command records, but moves past them", function()
    local id = run_with("v2")
    srv:append_stream_records(id, "default", {
      { headers = { { "", "trim" } }, body = "x" },
      { body = cjson.encode { data = "kept", id = "p1" } },
      { body = "not json" },
    })
    local s = open(id)
    assert.are.same({ "kept", "not json" }, take(s, 2))
    assert.are.same({ version = "v2", seq_num = 2 }, s:position())
    s:close()
  end)

  it("v2: a duplicate envelope id is handed out once", function()
    local id = run_with("v2")
    srv:append_stream(id, "default", { "a", "a-again", "b" }, { ids = { "x1", "x1", "x2" } })
    local s = open(id)
    assert.are.same({ "a", "b" }, take(s, 2))
    assert.is_nil((s:next(1.2)))
    s:close()
  end)

  it("404 is not retried: a not_found error", function()
    local s = open("run_doesnotexist")
    local ok, err = pcall(s.next, s, 5)
    assert.is_false(ok)
    assert.is_true(trigger.errors.is(err, "not_found"))
    assert.are.equal(404, err.status)
    assert.matches("GET http://127%.0%.0%.1:%d+/realtime/v1/streams/run_doesnotexist/default",
      err.request)
    assert.are.equal(1, #stream_requests())
    assert.is_true(s.closed)
  end)

  it("401 is not retried and never shows the token", function()
    local id = run_with("v2")
    local token = "tr_dev_wrong_key_123456"
    local ok, err = pcall(function()
      for _ in open(id, nil, { access_token = token }) do end
    end)
    assert.is_false(ok)
    assert.is_true(trigger.errors.is(err, "auth"))
    assert.are.equal(401, err.status)
    assert.is_nil(tostring(err):find(token, 1, true))
    assert.are.equal(1, #stream_requests())
  end)

  it("403 for a token without the run's scope", function()
    local id = run_with("v2")
    local token = assert(trigger.auth.create_public_token {
      access_token = srv.secret_key, base_url = srv.base_url,
      scopes = { read = { runs = { "run_other" } } },
    })
    local s = open(id, nil, { access_token = token })
    local ok, err = pcall(s.next, s, 5)
    assert.is_false(ok)
    assert.is_true(trigger.errors.is(err, "forbidden"))
    assert.are.equal(403, err.status)
  end)

  it("a public token with the run's scope reads", function()
    local id = run_with("v2")
    srv:append_stream(id, "default", { "ok" })
    local token = assert(trigger.auth.create_public_token {
      access_token = srv.secret_key, base_url = srv.base_url, scopes = { read = { runs = { id } } },
    })
    local s = open(id, nil, { access_token = token })
    assert.are.same({ "ok" }, take(s, 1))
    s:close()
  end)

  it("close() is idempotent and ends the iteration", function()
    local id = run_with("v2")
    srv:append_stream(id, "default", { "a", "b" })
    local s = open(id)
    for chunk in s do -- luacheck: ignore 512 (break out of the first iteration)
      assert.are.equal("a", chunk)
      break
    end
    s:close()
    s:close()
    assert.is_true(s.closed)
    assert.are.same({ nil, "closed" }, { s:next(0) })
    assert.matches("closed", tostring(s))
  end)

  it("settle(): a caught-up v2 stream ends instead of reopening", function()
    local id = run_with("v2")
    srv:append_stream(id, "default", { "a" })
    local s = open(id)
    assert.are.same({ "a" }, take(s, 1))
    s:settle()
    local chunk, why = s:next(5)
    assert.is_nil(chunk)
    assert.are.equal("finished", why)
    assert.is_true(s.finished)
  end)
end)

-- A stream read alone ends once its run is finished and the stream was read to its end: at an
-- idle close the run is looked at once (issue 27). The server closes quiet streams after 1 s.
describe("trigger.streams.read and its run's end", function()
  local srv
  setup(function() srv = helper.start_server { stream_timeout_s = 1, stream_ping_ms = 300 } end)
  teardown(function() srv:stop() end)
  before_each(function() srv:reset() end)

  local function open(id, key, opts)
    return trigger.streams.read(id, key, helper.client_opts(srv, opts))
  end

  -- Every chunk until the stream ends by itself: the chunks and why it ended.
  local function read_all(s)
    local out = {}
    while true do
      local chunk, why, err = s:next(15)
      if chunk == nil then return out, why, err end
      out[#out + 1] = chunk
    end
  end

  local function looks_at_runs()
    local n = 0
    for _, e in ipairs(srv:stats().log) do
      if e.path:match("^/realtime/v1/runs/") then n = n + 1 end
    end
    return n
  end

  for _, version in ipairs { "v2", "v1" } do
    describe(version, function()
      local function run_with(fields)
        local id = srv:create_run(fields or { status = "EXECUTING" })
        srv:create_stream(id, "default", { version = version })
        return id
      end

      it("ends once the run is finished and every chunk was read, each once", function()
        local id = run_with()
        srv:append_stream(id, "default", { "a", "b" })
        local s = open(id)
        assert.are.same({ "a", "b" }, { s:next(10), s:next(10) })
        srv:append_stream(id, "default", { "c" })
        srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
        local rest, why = read_all(s)
        assert.are.same({ "c" }, rest)
        assert.are.equal("finished", why)
        assert.is_true(s.finished)
        -- the look at the run was made at an idle close, not on every reopen of the stream
        assert.is_true(looks_at_runs() >= 1)
      end)

      it("ends at once on a run finished before the read began", function()
        local id = run_with { status = "COMPLETED_SUCCESSFULLY" }
        srv:append_stream(id, "default", { "a", "b", "c" })
        local chunks, why = read_all(open(id))
        assert.are.same({ "a", "b", "c" }, chunks)
        assert.are.equal("finished", why)
      end)

      it("goes on through quiet spells longer than the idle close while the run runs", function()
        local id = run_with()
        srv:append_stream(id, "default", { "a" })
        local s = open(id)
        assert.are.equal("a", s:next(10))
        -- 2.5 s: at least two idle closes, each followed by a look at the run and a reopen
        assert.are.same({ nil, "timeout" }, { s:next(2.5) })
        assert.is_true(looks_at_runs() >= 2)
        srv:append_stream(id, "default", { "b" })
        assert.are.equal("b", s:next(10))
        srv:update_run(id, { status = "CANCELED" })
        local rest, why = read_all(s)
        assert.are.same({}, rest)
        assert.are.equal("finished", why)
      end)

      it("keeps reading after the run finished with stop_on_completion = false", function()
        local id = run_with { status = "COMPLETED_SUCCESSFULLY" }
        srv:append_stream(id, "default", { "a" })
        local s = open(id, "default", { stop_on_completion = false })
        assert.are.equal("a", s:next(10))
        assert.are.same({ nil, "timeout" }, { s:next(2.5) })
        assert.is_false(s.closed)
        assert.are.equal(0, looks_at_runs())
        s:close()
      end)
    end)
  end

  it("a key the finished run never listed ends the read with a not_found error", function()
    local id = srv:create_run { status = "COMPLETED_SUCCESSFULLY" }
    local s = open(id, "defualt")
    local ok, err = pcall(s.next, s, 15)
    assert.is_false(ok)
    assert.are.equal("not_found", err.kind)
    assert.matches(id, err.message, 1, true)
    assert.matches('"defualt"', err.message, 1, true)
    assert.is_true(s.closed)
  end)

  it("a key an unfinished run has not listed yet is told to on_error once, then read", function()
    local id = srv:create_run { status = "EXECUTING" }
    local told = {}
    local s = open(id, "later", { on_error = function(e) told[#told + 1] = e end })
    assert.are.same({ nil, "timeout" }, { s:next(2.5) }) -- two idle closes at least
    assert.are.equal(1, #told)
    assert.are.equal("not_found", told[1].kind)
    assert.matches('"later"', told[1].message, 1, true)
    assert.is_false(s.closed)
    srv:create_stream(id, "later")
    srv:append_stream(id, "later", { "x" })
    assert.are.equal("x", s:next(10))
    srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
    local rest, why = read_all(s)
    assert.are.same({}, rest)
    assert.are.equal("finished", why)
    assert.are.equal(1, #told)
  end)

  it("a run that does not exist is a not_found error", function()
    local s = open("run_doesnotexist", "default")
    local ok, err = pcall(s.next, s, 15)
    assert.is_false(ok)
    assert.are.equal("not_found", err.kind)
    assert.are.equal(404, err.status)
  end)
end)

-- A stream retries as everything else does (issue 29: one retry policy, trigger.retry).
describe("trigger.streams.read retries by the library's one policy", function()
  local srv
  setup(function() srv = helper.start_server {} end)
  teardown(function() srv:stop() end)
  before_each(function() srv:reset() end)

  local function failing_stream(n)
    local id = srv:create_run { status = "EXECUTING" }
    srv:create_stream(id, "default")
    srv:append_stream(id, "default", { "a" })
    srv:fault { match = { path_prefix = "/realtime/v1/streams" }, kind = "status", status = 500,
      count = n }
    return id
  end

  it("without on_error, tells the first failure of a streak once on stderr", function()
    local id = failing_stream(3)
    local lines, stderr = {}, io.stderr
    -- luacheck: ignore 122 (io.stderr is set for this case only)
    io.stderr = { write = function(_, ...) lines[#lines + 1] = table.concat { ... } end }
    local ok, chunk = pcall(function()
      local s = trigger.streams.read(id, "default", { access_token = srv.secret_key,
        base_url = srv.base_url, retry_base = 0.01, retry_cap = 0.02 })
      local c = s:next(10)
      s:close()
      return c
    end)
    io.stderr = stderr
    assert(ok, chunk)
    assert.are.equal("a", chunk)
    assert.are.equal(1, #lines)
    assert.matches("HTTP 500", lines[1], 1, true)
    assert.matches("/realtime/v1/streams/" .. id, lines[1], 1, true)
  end)

  it("gives up after max_retries with the same words as a subscription", function()
    local id = failing_stream(5)
    local told = 0
    local s = trigger.streams.read(id, "default", { access_token = srv.secret_key,
      base_url = srv.base_url, retry_base = 0.01, retry_cap = 0.02, max_retries = 1,
      on_error = function() told = told + 1 end })
    local ok, err = pcall(s.next, s, 10)
    assert.is_false(ok)
    assert.is_true(err.fatal)
    assert.are.equal(2, err.attempt)
    assert.matches("(gave up after 1 retry)", err.message, 1, true)
    assert.are.equal(1, told)
  end)
end)
