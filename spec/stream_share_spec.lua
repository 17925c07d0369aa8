-- trigger.streams.share: the with_streams() objects of one Lua state reading the same stream of
-- the same run share one request, each tap with its own place in the chunks. Against the local
-- server, on both stream framings (v1 Redis, v2 S2), counting the stream requests it gets.
local helper = require "spec.helper"
local socket = require "socket"
local trigger = require "trigger"
local stream_share = require "trigger.streams.share"

local PREFIX = "/realtime/v1/streams/"

for _, version in ipairs { "v1", "v2" } do
  describe("stream sharing (" .. version .. ")", function()
    local srv
    setup(function()
      srv = helper.start_server { stream_timeout_s = 5, stream_ping_ms = 200 }
    end)
    teardown(function() srv:stop() end)
    before_each(function() srv:reset() end)

    local function opts()
      return { access_token = srv.secret_key, base_url = srv.base_url,
        stop_on_completion = false }
    end

    local function run_with_stream(key)
      local id = srv:create_run { tags = { "share" } }
      srv:create_stream(id, key, { version = version })
      return id
    end

    -- The stream requests the server saw.
    local function stream_requests()
      local n = 0
      for _, e in ipairs(srv:stats().log) do
        if e.path:sub(1, #PREFIX) == PREFIX then n = n + 1 end
      end
      return n
    end

    -- Poll every tap of `taps` until each has `n` chunks (or 10 s); the chunks by index.
    local function take_all(taps, n)
      local got = {}
      for i = 1, #taps do got[i] = {} end
      local deadline = socket.gettime() + 10
      local function done()
        for i = 1, #taps do
          if #got[i] < n then return false end
        end
        return true
      end
      while not done() and socket.gettime() < deadline do
        for i, tap in ipairs(taps) do
          local chunk = #got[i] < n and tap:poll()
          while chunk ~= nil and chunk ~= false do
            got[i][#got[i] + 1] = chunk
            chunk = #got[i] < n and tap:poll()
          end
        end
        trigger.step(0.02)
      end
      return got
    end

    it("two taps opened together share one request; each gets every chunk", function()
      local id = run_with_stream("out")
      srv:reset_stats()
      local t1 = stream_share.open(id, "out", opts(), true)
      local t2 = stream_share.open(id, "out", opts(), true)
      srv:append_stream(id, "out", { "a", "b", "c" })
      local got = take_all({ t1, t2 }, 3)
      assert.same({ "a", "b", "c" }, got[1])
      assert.same({ "a", "b", "c" }, got[2])
      assert.equal(1, stream_requests())
      assert.same(t1:position(), t2:position())
      t1:close()
      t2:close()
    end)

    it("a late tap, after chunks were read, reads on its own from the beginning", function()
      local id = run_with_stream("out")
      local t1 = stream_share.open(id, "out", opts(), true)
      srv:append_stream(id, "out", { "a", "b" })
      assert.same({ "a", "b" }, take_all({ t1 }, 2)[1])
      srv:reset_stats()
      local late = stream_share.open(id, "out", opts(), true)
      srv:append_stream(id, "out", { "c" })
      assert.same({ "a", "b", "c" }, take_all({ late }, 3)[1])
      assert.same({ "c" }, take_all({ t1 }, 1)[1])
      assert.is_true(stream_requests() >= 1) -- the late tap's own
      t1:close()
      late:close()
    end)

    it("close of one of several taps: the others go on; the last closes the stream", function()
      local id = run_with_stream("out")
      local taps = {}
      for i = 1, 3 do taps[i] = stream_share.open(id, "out", opts(), true) end
      srv:append_stream(id, "out", { "a" })
      take_all(taps, 1)
      taps[2]:close()
      assert.is_true(taps[2].closed)
      assert.is_nil(taps[2]:poll())
      srv:append_stream(id, "out", { "b" })
      local got = take_all({ taps[1], taps[3] }, 1)
      assert.same({ "b" }, got[1])
      assert.same({ "b" }, got[2])
      taps[1]:close()
      taps[3]:close()
      -- the stream's request is aborted with the last tap: the server holds none of it
      local deadline = socket.gettime() + 5
      local left
      repeat
        left = 0
        for _, e in ipairs(srv:stats().in_flight) do
          if e.path:sub(1, #PREFIX) == PREFIX then left = left + 1 end
        end
        if left > 0 then socket.sleep(0.05) end
      until left == 0 or socket.gettime() > deadline
      assert.equal(0, left)
    end)

    it("share = false, or a tap resuming from a position, reads a stream of its own", function()
      local id = run_with_stream("out")
      srv:append_stream(id, "out", { "a" })
      local t1 = stream_share.open(id, "out", opts(), true)
      local pos = take_all({ t1 }, 1)[1] and t1:position()
      srv:reset_stats()
      local own = stream_share.open(id, "out", opts(), false)
      local o = opts()
      o.resume = pos
      local resumed = stream_share.open(id, "out", o, true)
      srv:append_stream(id, "out", { "b" })
      local got = take_all({ own, resumed }, 1)
      assert.same({ "a" }, got[1]) -- its own stream, from the beginning
      assert.same({ "b" }, got[2]) -- from the position on
      assert.equal(2, stream_requests())
      t1:close()
      own:close()
      resumed:close()
    end)
  end)
end
