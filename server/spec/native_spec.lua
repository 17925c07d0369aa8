-- Specs of the server's native backend (Trigger.dev's native runs feed, see
-- ../shared/protocol/native-backend.md), over real HTTP with a raw client so that every header
-- and byte is visible. Held requests are only ever checked for a lower bound on their duration.
local helper = require "spec.helper"
local cjson = require "cjson"
local socket = require "socket"

local UP_TO_DATE = '{"headers":{"control":"up-to-date"}}'
local BARE = "[" .. UP_TO_DATE .. "]"
local HOLD_MS = 1000

---------------------------------------------------------------------------------------------------
-- A raw HTTP/1.1 client

local function send(port, target, headers)
  local conn = assert(socket.connect("127.0.0.1", port))
  conn:settimeout(20)
  local lines = { "GET " .. target .. " HTTP/1.1", "Host: 127.0.0.1:" .. port }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  assert(conn:send(table.concat(lines, "\r\n") .. "\r\n\r\n"))
  return conn, socket.gettime()
end

-- -> { status, headers (lower-case names), body, json, complete, elapsed }
local function receive(conn, started)
  local line = conn:receive("*l")
  if not line then return { complete = false, body = "" } end
  local res = { status = tonumber(line:match("^HTTP/1%.1 (%d+)")), headers = {}, complete = true }
  while true do
    local h = assert(conn:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s?(.*)$")
    res.headers[name:lower()] = value
  end
  if res.headers["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local size = tonumber(conn:receive("*l") or "", 16)
      if not size then res.complete = false break end
      if size == 0 then conn:receive("*l") break end
      parts[#parts + 1] = conn:receive(size)
      conn:receive("*l")
    end
    res.body = table.concat(parts)
  else
    local data, _, partial = conn:receive(tonumber(res.headers["content-length"] or "0"))
    res.body = data or partial or ""
    res.complete = data ~= nil
  end
  conn:close()
  res.elapsed = started and (socket.gettime() - started) or 0
  local ok, decoded = pcall(cjson.decode, res.body)
  if ok then res.json = decoded end
  return res
end

local function modern(srv, extra)
  local h = {
    Authorization = "Bearer " .. srv.secret_key,
    ["x-trigger-electric-version"] = "1.0.0-beta.1",
    ["x-trigger-api-version"] = "2025-07-16",
  }
  for k, v in pairs(extra or {}) do h[k] = v or nil end
  return h
end

local function encode(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- path plus params (sorted, values URL-encoded)
local function target(path, params)
  local parts = {}
  for k, v in pairs(params or {}) do parts[#parts + 1] = k .. "=" .. encode(v) end
  table.sort(parts)
  if #parts == 0 then return path end
  return path .. (path:find("?", 1, true) and "&" or "?") .. table.concat(parts, "&")
end

local function get(srv, path, params, headers)
  return receive(send(srv.port, target(path, params), headers or modern(srv)))
end

-- Start a request now, read its answer later: -> function() return res end
local function start(srv, path, params, headers)
  local conn, started = send(srv.port, target(path, params), headers or modern(srv))
  return function() return receive(conn, started) end
end

local function handle_of(res) return res.headers["electric-handle"] end
local function offset_of(res) return res.headers["electric-offset"] end

local function live_params(res, extra)
  local p = { handle = handle_of(res), offset = offset_of(res), live = "true", cursor = "" }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function changes_of(res)
  local out = {}
  for _, m in ipairs(res.json or {}) do
    if m.key then out[#out + 1] = m end
  end
  return out
end

local function by_friendly(res)
  local out = {}
  for _, m in ipairs(changes_of(res)) do out[m.value.friendlyId] = m end
  return out
end

local function sorted_friendly(res)
  local list = {}
  for id in pairs(by_friendly(res)) do list[#list + 1] = id end
  table.sort(list)
  return list
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function ms_of(offset) return tonumber(offset:match("^(%d+)_")) end

local function eventually(srv, pred)
  for _ = 1, 250 do
    local st = srv:stats()
    if pred(st) then return st end
    socket.sleep(0.02)
  end
  error("condition never held")
end

-- The server's clock and ours agree to the millisecond (same machine); stay away from a minute
-- boundary so that a floor we compute is the floor the server computes.
local function away_from_minute_boundary()
  local into = (socket.gettime() * 1000) % 60000
  if into > 50000 then socket.sleep((60000 - into) / 1000 + 0.2) end
end

local function now_ms() return math.floor(socket.gettime() * 1000) end
local function bucket(ms) return ms // 60000 * 60000 end

local NATIVE_COLUMNS = {
  "id", "taskIdentifier", "createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt",
  "expiredAt", "completedAt", "friendlyId", "number", "isTest", "status", "usageDurationMs",
  "costInCents", "baseCostInCents", "ttl", "payload", "payloadType", "metadata", "metadataType",
  "output", "outputType", "runTags", "error", "realtimeStreams",
}

local TAGS = "/realtime/v1/runs"

local function assert_bare_after_hold(res, hold_ms)
  assert.are.equal(200, res.status)
  assert.are.equal(BARE, res.body)
  assert.is_true(res.elapsed >= 0.8 * (hold_ms or HOLD_MS) / 1000, "answered after " .. res.elapsed)
end

local function stopping(srv, fn)
  local ok, err = pcall(fn)
  srv:stop()
  assert(ok, err)
end

---------------------------------------------------------------------------------------------------

describe("native backend", function()
  local srv, slow   -- slow: the default hold (17-23 s), for what must be answered at once

  setup(function()
    srv = helper.start_server { backend = "native", hold_ms = HOLD_MS, native_coalesce_ms = 50 }
    slow = helper.start_server { backend = "native" }
  end)

  teardown(function()
    srv:stop()
    slow:stop()
  end)

  before_each(function()
    srv:reset()
    srv:set_backend("native")
    slow:reset()
  end)

  describe("snapshot", function()
    it("is up to date in its body, never in a header; no-store, no etag, CORS, schema, no cursor", function()
      local _, internal = srv:create_run { tags = { "a" } }
      local res = get(srv, TAGS, { tags = "a", offset = "-1" })
      assert.are.equal(200, res.status)
      assert.is_nil(res.headers["electric-up-to-date"])
      assert.is_nil(res.headers["etag"])
      assert.are.equal("no-store", res.headers["cache-control"])
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.equal("*", res.headers["access-control-allow-origin"])
      assert.are.equal("*", res.headers["access-control-expose-headers"])
      assert.is_nil(res.headers["x-trigger-electric-version"])
      assert.is_string(res.headers["electric-schema"])
      assert.is_nil(res.headers["electric-cursor"])
      assert.are.equal(UP_TO_DATE .. "]", res.body:sub(-#UP_TO_DATE - 1))
      assert.are.equal(2, #res.json)
      local m = res.json[1]
      assert.are.equal('"public"."TaskRun"/"' .. internal .. '"', m.key)
      assert.are.same({ operation = "insert" }, m.headers)
      assert.are.same({ headers = { control = "up-to-date" } }, res.json[2])
    end)

    it("uses runs_<floor>_<seq>_<hex8> handles, new per snapshot, and <updatedAtMs>_<seq> offsets", function()
      local id = srv:create_run { tags = { "a" }, updatedAt = "2026-01-10T12:00:00.120Z",
                                  createdAt = now_ms() - 60000 }
      assert.is_string(id)
      local one = get(srv, TAGS, { tags = "a", offset = "-1" })
      local two = get(srv, TAGS, { tags = "a", offset = "-1", handle = handle_of(one) })
      local floor, seq, hex = handle_of(one):match("^runs_(%d+)_(%d+)_(%x+)$")
      assert.is_truthy(floor, handle_of(one))
      assert.are.equal(8, #hex)
      assert.are.equal(0, tonumber(floor) % 60000)
      assert.is_truthy(tonumber(seq))
      assert.are_not.equal(handle_of(one), handle_of(two))   -- offset=-1: a new handle
      local ms, oseq = offset_of(one):match("^(%d+)_(%d+)$")
      assert.are.equal(1768046400120, tonumber(ms))
      assert.is_truthy(tonumber(oseq))
      assert.are_not.equal(offset_of(one), offset_of(two))
    end)

    it("answers an empty feed with a bare up-to-date and a 0_<seq> offset", function()
      local res = get(srv, TAGS, { tags = "nobody", offset = "-1" })
      assert.are.equal(200, res.status)
      assert.are.equal(BARE, res.body)
      assert.is_truthy(offset_of(res):match("^0_%d+$"))
    end)

    it("snapshots when offset is missing, or live=true comes without a handle or with offset=-1", function()
      srv:create_run { tags = { "a" } }
      local plain = get(srv, TAGS, { tags = "a" })
      assert.are.equal(1, #changes_of(plain))
      assert.is_string(plain.headers["electric-schema"])
      local live_initial = get(srv, TAGS, { tags = "a", offset = "-1", live = "true",
                                            handle = handle_of(plain) })
      assert.are.equal(1, #changes_of(live_initial))
      assert.is_string(live_initial.headers["electric-schema"])   -- a snapshot, not a live answer
      assert.is_nil(live_initial.headers["electric-cursor"])
      local live_no_handle = get(srv, TAGS, { tags = "a", offset = offset_of(plain), live = "true" })
      assert.are.equal(1, #changes_of(live_no_handle))
      assert.are.equal("insert", changes_of(live_no_handle)[1].headers.operation)
    end)

    it("states the native schema: just the type, 26 columns, skipped ones left out", function()
      srv:create_run { tags = { "a" } }
      local res = get(srv, TAGS, { tags = "a", offset = "-1" })
      local expected = {}
      for _, name in ipairs(NATIVE_COLUMNS) do expected[name] = { type = "text" } end
      for _, name in ipairs({ "createdAt", "updatedAt", "startedAt", "delayUntil", "queuedAt",
                              "expiredAt", "completedAt" }) do
        expected[name] = { type = "timestamp" }
      end
      expected.number, expected.usageDurationMs = { type = "int4" }, { type = "int4" }
      expected.costInCents, expected.baseCostInCents = { type = "float8" }, { type = "float8" }
      expected.isTest, expected.error = { type = "bool" }, { type = "jsonb" }
      expected.runTags = { type = "text", dims = 1 }
      expected.realtimeStreams = { type = "text", dims = 1 }
      assert.are.same(expected, cjson.decode(res.headers["electric-schema"]))
      -- in column order
      local order = {}
      for name in res.headers["electric-schema"]:gmatch('"(%w+)":{"type"') do order[#order + 1] = name end
      assert.are.same(NATIVE_COLUMNS, order)
      local value = changes_of(res)[1].value
      assert.are.equal(26, count(value))
      assert.is_nil(value.idempotencyKey)

      local skipped = get(srv, TAGS, { tags = "a", offset = "-1", skipColumns = "payload,output,id" })
      local schema = cjson.decode(skipped.headers["electric-schema"])
      assert.is_nil(schema.payload)
      assert.is_nil(schema.output)
      assert.is_table(schema.id)
      local v = changes_of(skipped)[1].value
      assert.is_nil(v.payload)
      assert.is_string(v.id)
      assert.are.equal(24, count(v))
    end)

    it("is environment-wide without tags, and ANDs tags", function()
      srv:create_run { friendlyId = "run_a", tags = { "a" } }
      srv:create_run { friendlyId = "run_ab", tags = { "b", "a" } }
      srv:create_run { friendlyId = "run_none" }
      assert.are.same({ "run_a", "run_ab", "run_none" }, sorted_friendly(get(srv, TAGS, { offset = "-1" })))
      assert.are.same({ "run_ab" }, sorted_friendly(get(srv, TAGS, { tags = "a,b", offset = "-1" })))
    end)
  end)

  describe("values", function()
    it("encodes as Prisma objects through JavaScript", function()
      srv:create_run {
        friendlyId = "run_v", tags = { "a b", 'q"d', "NULL", "back\\slash", "plain" },
        createdAt = "2025-01-10T12:00:00Z", updatedAt = "2025-01-10T12:00:00.120Z",
        startedAt = 1736510400005, completedAt = helper.null, isTest = true, number = 42,
        usageDurationMs = 1500, costInCents = 1e-7, baseCostInCents = 1.5e21,
        error = { message = "boom", name = "E", data = { n = 0.0025, list = { 1, 2 } } },
        realtimeStreams = { "default" }, metadata = '{"a": 1}', ttl = "10m",
      }
      srv:create_run { friendlyId = "run_e", costInCents = 0.0025, baseCostInCents = 0 }
      -- the run route: no createdAt window
      local function value_of(id) return changes_of(get(srv, "/realtime/v1/runs/" .. id, {}))[1].value end
      local v = value_of("run_v")
      assert.are.equal("2025-01-10T12:00:00.000", v.createdAt)
      assert.are.equal("2025-01-10T12:00:00.120", v.updatedAt)
      assert.are.equal("2025-01-10T12:00:00.005", v.startedAt)
      assert.are.equal(cjson.null, v.completedAt)
      assert.are.equal(cjson.null, v.expiredAt)
      assert.are.equal("t", v.isTest)
      assert.are.equal("42", v.number)
      assert.are.equal("1500", v.usageDurationMs)
      assert.are.equal("1e-7", v.costInCents)
      assert.are.equal("1.5e+21", v.baseCostInCents)
      assert.are.equal('{"data":{"list":[1,2],"n":0.0025},"message":"boom","name":"E"}', v.error)
      assert.are.equal('{"a b","q\\"d","NULL","back\\\\slash","plain"}', v.runTags)
      assert.are.equal('{"default"}', v.realtimeStreams)
      assert.are.equal('{"a": 1}', v.metadata)
      assert.are.equal("10m", v.ttl)
      local e = value_of("run_e")
      assert.are.equal("f", e.isTest)
      assert.are.equal("0.0025", e.costInCents)
      assert.are.equal("0", e.baseCostInCents)
      assert.are.equal(cjson.null, e.runTags)          -- empty runTags: null
      assert.are.equal("{}", e.realtimeStreams)         -- empty realtimeStreams: {}
      assert.are.equal(cjson.null, e.error)
    end)

    it("reports DEQUEUED as EXECUTING unless x-trigger-api-version is 2025-07-16", function()
      srv:create_run { tags = { "a" }, status = "DEQUEUED" }
      local function status_with(version)
        local res = get(srv, TAGS, { tags = "a", offset = "-1" },
                        modern(srv, { ["x-trigger-api-version"] = version or false }))
        return changes_of(res)[1].value.status
      end
      assert.are.equal("DEQUEUED", status_with("2025-07-16"))
      assert.are.equal("EXECUTING", status_with(nil))
      assert.are.equal("EXECUTING", status_with("2024-01-01"))
    end)

    it("uses the legacy header names without x-trigger-electric-version, and reads shape_id", function()
      srv:create_run { tags = { "a" } }
      local legacy = modern(srv, { ["x-trigger-electric-version"] = false })
      local res = get(srv, TAGS, { tags = "a", offset = "-1" }, legacy)
      assert.is_nil(res.headers["electric-handle"])
      assert.is_nil(res.headers["electric-offset"])
      local handle, offset = res.headers["electric-shape-id"], res.headers["electric-chunk-last-offset"]
      assert.is_truthy(handle:match("^runs_"))
      assert.is_truthy(offset:match("^%d+_%d+$"))
      assert.is_nil(res.headers["electric-up-to-date"])
      -- a catch-up naming the handle the legacy way keeps it
      local again = get(srv, TAGS, { tags = "a", offset = offset, shape_id = handle }, legacy)
      assert.are.equal(handle, again.headers["electric-shape-id"])
    end)
  end)

  describe("live", function()
    it("answers a change with the full row as update, a cursor and no schema", function()
      local id = srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      local pending = start(srv, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv:update_run(id, { status = "EXECUTING" })
      local res = pending()
      assert.are.equal(200, res.status)
      assert.is_nil(res.headers["electric-up-to-date"])
      assert.is_nil(res.headers["electric-schema"])
      assert.is_truthy(res.headers["electric-cursor"]:match("^%d+$"))
      assert.are.equal("no-store", res.headers["cache-control"])
      assert.are.equal(handle_of(snap), handle_of(res))
      local msgs = changes_of(res)
      assert.are.equal(1, #msgs)
      assert.are.same({ operation = "update" }, msgs[1].headers)
      assert.are.equal(26, count(msgs[1].value))
      assert.are.equal("EXECUTING", msgs[1].value.status)
      assert.are.equal(UP_TO_DATE .. "]", res.body:sub(-#UP_TO_DATE - 1))
      assert.is_true(ms_of(offset_of(res)) > ms_of(offset_of(snap)))
    end)

    it("sends a run that starts to match as insert", function()
      srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      local pending = start(srv, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv:create_run { friendlyId = "run_new", tags = { "a" } }
      local msgs = changes_of(pending())
      assert.are.equal(1, #msgs)
      assert.are.equal("insert", msgs[1].headers.operation)
      assert.are.equal("run_new", msgs[1].value.friendlyId)
    end)

    it("keeps holding through wakes for non-matching or already-seen rows, then answers bare", function()
      local id = srv:create_run { tags = { "a" } }
      local other = srv:create_run { tags = { "b" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      local updated = srv:get_run(id).updatedAt
      local pending = start(srv, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv:update_run(other, { status = "EXECUTING" })
      socket.sleep(0.1)
      -- a change in the same millisecond as what the handle was sent: not an advance
      srv:update_run(id, { metadata = '{"x":1}', updatedAt = updated:gsub(" ", "T") .. "Z" })
      local res = pending()
      assert_bare_after_hold(res)
      assert.is_truthy(res.headers["electric-cursor"])
      assert.are.equal(handle_of(snap), handle_of(res))
      -- a new seq, the same first part
      assert.are.equal(ms_of(offset_of(snap)), ms_of(offset_of(res)))
      assert.are_not.equal(offset_of(snap), offset_of(res))
    end)

    it("catches changes made between two polls at the start of the next", function()
      local id = slow:create_run { tags = { "a" } }
      local snap = get(slow, TAGS, { tags = "a", offset = "-1" })
      slow:update_run(id, { status = "EXECUTING" })
      local res = get(slow, TAGS, live_params(snap, { tags = "a" }))
      assert.is_true(res.elapsed < 10) -- the hold is 17-23 s
      assert.are.equal("EXECUTING", changes_of(res)[1].value.status)
    end)

    it("ignores cursor and unknown parameters", function()
      local id = srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      srv:update_run(id, { status = "EXECUTING" })
      local res = get(srv, TAGS, live_params(snap, { tags = "a", cursor = "garbage", log = "full",
                                                     expired_handle = "x", cache_buster = "1" }))
      assert.are.equal(200, res.status)
      assert.are.equal(1, #changes_of(res))
    end)
  end)

  describe("working sets", function()
    for _, kind in ipairs({ "truncate", "reset_mid_body" }) do
      it("marks rows sent before the answer leaves: a " .. kind .. " live answer loses them for a " ..
         "same-request retry, a non-live retry gets them", function()
        local id = srv:create_run { tags = { "a" } }
        local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
        srv:fault { kind = kind, match = { live = true } }
        local params = live_params(snap, { tags = "a" })
        local pending = start(srv, TAGS, params)
        socket.sleep(0.2)
        srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
        local cut = pending()
        assert.are.equal(200, cut.status)
        assert.is_false(cut.complete)
        assert.is_nil(cut.json)
        -- the same live request again: the server thinks the handle has the row
        assert_bare_after_hold(get(srv, TAGS, params))
        -- a non-live request with the same handle re-snapshots
        local resync = get(srv, TAGS, { tags = "a", handle = handle_of(snap), offset = offset_of(snap) })
        assert.are.equal(handle_of(snap), handle_of(resync))
        local msgs = changes_of(resync)
        assert.are.equal(1, #msgs)
        assert.are.equal("insert", msgs[1].headers.operation)
        assert.are.equal("COMPLETED_SUCCESSFULLY", msgs[1].value.status)
        assert.is_string(resync.headers["electric-schema"])
      end)
    end

    it("is reset by a non-live request with the handle (a dropped speculative request loses rows)", function()
      local id = srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      srv:update_run(id, { status = "EXECUTING" })
      -- without the catch-up this live poll would answer EXECUTING at once (previous test);
      -- after it the handle counts as having EXECUTING
      local catch_up = get(srv, TAGS, { tags = "a", handle = handle_of(snap), offset = offset_of(snap) })
      assert.are.equal("EXECUTING", changes_of(catch_up)[1].value.status)
      assert_bare_after_hold(get(srv, TAGS, live_params(snap, { tags = "a" })))
    end)

    it("answers a handle it never made with every advanced row as update", function()
      slow:create_run { friendlyId = "run_1", tags = { "a" } }
      slow:create_run { friendlyId = "run_2", tags = { "a" } }
      local res = get(slow, TAGS, { tags = "a", handle = "12345678-1700000000000", offset = "7_0",
                                   live = "true", cursor = "" })
      assert.are.equal(200, res.status)
      assert.is_true(res.elapsed < 10) -- the hold is 17-23 s
      assert.are.equal("12345678-1700000000000", handle_of(res))
      local rows = by_friendly(res)
      assert.are.equal(2, count(rows))
      for _, m in pairs(rows) do assert.are.equal("update", m.headers.operation) end
      -- garbage offsets read as 0 too
      local garbage = get(slow, TAGS, { tags = "a", handle = "whatever", offset = "x_y", live = "true" })
      assert.are.equal(2, #changes_of(garbage))
    end)
  end)

  describe("coalescing, cap and window", function()
    local srv2

    setup(function()
      srv2 = helper.start_server { backend = "native", hold_ms = 2500, native_coalesce_ms = 800,
                                   native_max_runs = 3 }
    end)

    teardown(function() srv2:stop() end)

    before_each(function() srv2:reset() end)

    it("coalesces wakes, so intermediate states are skipped", function()
      local id = srv2:create_run { tags = { "a" } }
      local snap = get(srv2, TAGS, { tags = "a", offset = "-1" })
      local pending = start(srv2, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv2:update_run(id, { status = "EXECUTING" })
      srv2:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
      local msgs = changes_of(pending())
      assert.are.equal(1, #msgs)
      assert.are.equal("COMPLETED_SUCCESSFULLY", msgs[1].value.status)
    end)

    it("keeps the newest native_max_runs runs by createdAt", function()
      local now = now_ms()
      local ids = {}
      for i = 1, 5 do
        ids[i] = srv2:create_run { friendlyId = "run_" .. i, tags = { "a" },
                                   createdAt = now - (6 - i) * 60000 }
      end
      local snap = get(srv2, TAGS, { tags = "a", offset = "-1" })
      assert.are.same({ "run_3", "run_4", "run_5" }, sorted_friendly(snap))
      -- an update to a run outside the cap never comes
      local pending = start(srv2, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv2:update_run(ids[1], { status = "EXECUTING" })
      assert_bare_after_hold(pending(), 2500)
      srv2:update_run(ids[5], { status = "EXECUTING" })
      local res = get(srv2, TAGS, live_params(snap, { tags = "a" }))
      assert.are.same({ "run_5" }, sorted_friendly(res))
      -- batches have the same cap
      for i = 1, 4 do srv2:create_run { batchId = "batch_cap", createdAt = now - i * 1000 } end
      assert.are.equal(3, #changes_of(get(srv2, "/realtime/v1/batches/batch_cap", { offset = "-1" })))
    end)

    it("floors createdAt to the minute and compares with >=; unparseable or too long is 24 h", function()
      away_from_minute_boundary()
      local now = now_ms()
      local m = bucket(now - 3600000)
      srv2:create_run { friendlyId = "run_at", tags = { "w" }, createdAt = m }
      srv2:create_run { friendlyId = "run_before", tags = { "w" }, createdAt = m - 1 }
      srv2:create_run { friendlyId = "run_23h", tags = { "w" }, createdAt = now - 23 * 3600000 }
      srv2:create_run { friendlyId = "run_25h", tags = { "w" }, createdAt = now - 25 * 3600000 }
      local hour = get(srv2, TAGS, { tags = "w", createdAt = "1h", offset = "-1" })
      assert.are.same({ "run_at" }, sorted_friendly(hour))
      assert.are.equal(m, tonumber(handle_of(hour):match("^runs_(%d+)_")))
      for _, created in ipairs({ "yesterday", "2w", false }) do
        local res = get(srv2, TAGS, { tags = "w", createdAt = created or nil, offset = "-1" })
        assert.are.same({ "run_23h", "run_at", "run_before" }, sorted_friendly(res))
        assert.are.equal(bucket(now - 86400000), tonumber(handle_of(res):match("^runs_(%d+)_")))
      end
    end)

    it("takes the floor from a runs_ handle, re-clamped to now - 24h on every poll", function()
      away_from_minute_boundary()
      local now = now_ms()
      srv2:create_run { friendlyId = "run_30m", tags = { "w" }, createdAt = now - 1800000 }
      srv2:create_run { friendlyId = "run_2h", tags = { "w" }, createdAt = now - 7200000 }
      srv2:create_run { friendlyId = "run_25h", tags = { "w" }, createdAt = now - 25 * 3600000 }
      local pinned = ("runs_%d_1_0badf00d"):format(bucket(now - 3600000))
      local res = get(srv2, TAGS, { tags = "w", handle = pinned, offset = "0_1" })
      assert.are.same({ "run_30m" }, sorted_friendly(res))   -- the handle's floor, not the default
      assert.are.equal(pinned, handle_of(res))
      local ancient = get(srv2, TAGS, { tags = "w", handle = "runs_0_1_0badf00d", offset = "0_1" })
      assert.are.same({ "run_2h", "run_30m" }, sorted_friendly(ancient))   -- never wider than 24 h
      -- any other handle: the floor comes from the request
      local other = get(srv2, TAGS, { tags = "w", handle = "x", offset = "0_1", createdAt = "1h" })
      assert.are.same({ "run_30m" }, sorted_friendly(other))
    end)
  end)

  describe("routes", function()
    it("follows one run with a run-<id> handle, diffing against the client's offset", function()
      local id, internal = srv:create_run { tags = { "a" } }
      local path = "/realtime/v1/runs/" .. id
      local snap = get(srv, path, { offset = "-1" })
      assert.are.equal("run-" .. internal, handle_of(snap))
      assert.are.equal("run-" .. internal, handle_of(get(srv, path, { offset = "-1" })))
      local row_ms = ms_of(offset_of(snap))
      assert.are.equal("insert", changes_of(snap)[1].headers.operation)
      -- nothing newer than the offset: hold, then echo the client's offset
      local quiet = get(srv, path, live_params(snap))
      assert_bare_after_hold(quiet)
      assert.are.equal(offset_of(snap), offset_of(quiet))
      -- an older offset: the row at once, as update
      local old = get(srv, path, { handle = handle_of(snap), offset = (row_ms - 1) .. "_0", live = "true" })
      assert.are.equal("update", changes_of(old)[1].headers.operation)
      assert.are.equal(row_ms, ms_of(offset_of(old)))
      -- a retried live request with the same offset gets it again (no working set here)
      srv:update_run(id, { status = "EXECUTING" })
      for _ = 1, 2 do
        local res = get(srv, path, live_params(snap))
        assert.are.equal("EXECUTING", changes_of(res)[1].value.status)
      end
    end)

    it("follows a batch with batch_<id>_<seq>_<hex8> handles kept across offset=-1", function()
      local id = srv:create_run { batchId = "batch_b1" }
      srv:create_run { batchId = "batch_other" }
      local path = "/realtime/v1/batches/batch_b1"
      local one = get(srv, path, { offset = "-1" })
      local two = get(srv, path, { offset = "-1" })
      assert.is_truthy(handle_of(one):match("^batch_b1_%d+_%x%x%x%x%x%x%x%x$"), handle_of(one))
      assert.are_not.equal(handle_of(one), handle_of(two))
      assert.are.equal(1, #changes_of(one))
      local kept = get(srv, path, { offset = "-1", handle = handle_of(one) })
      assert.are.equal(handle_of(one), handle_of(kept))
      -- every handle has its own working set: both get the change
      srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
      for _, res in ipairs({ kept, two }) do
        local live = get(srv, path, live_params(res))
        assert.are.equal("COMPLETED_SUCCESSFULLY", changes_of(live)[1].value.status)
      end
    end)

    it("keeps the route checks of both backends: 401, 404, 403 and bad tags", function()
      local id = srv:create_run { tags = { "a" } }
      for _, backend in ipairs({ "native", "electric" }) do
        srv:set_backend(backend)
        local nope = { Authorization = "Bearer nope" }
        assert.are.equal(401, get(srv, TAGS, { tags = "a", offset = "-1" }, nope).status)
        assert.are.equal(404, get(srv, "/realtime/v1/runs/run_missing", { offset = "-1" }).status)
        assert.are.equal(404, get(srv, "/realtime/v1/batches/batch_missing", { offset = "-1" }).status)
        for _, tags in ipairs({ "a,,b", "a,", 'a"b', "a\\b", "a\1b", "a\127" }) do
          local res = get(srv, TAGS, { tags = tags, offset = "-1" })
          assert.are.equal(400, res.status, backend .. " " .. tags)
          assert.are.equal("Query Error", res.json.error)
          assert.is_table(res.json.details)
        end
        assert.are.equal(200, get(srv, TAGS, { tags = "it's", offset = "-1" }).status)
        assert.are.equal(200, get(srv, "/realtime/v1/runs/" .. id, { offset = "-1" }).status)
      end
    end)
  end)

  describe("concurrency", function()
    it("answers 429 at once to live polls over max_connections, never to snapshots", function()
      local limited = helper.start_server { backend = "native", hold_ms = 10000, max_connections = 1 }
      stopping(limited, function()
        limited:create_run { tags = { "a" } }
        local snap = get(limited, TAGS, { tags = "a", offset = "-1" })
        local held = start(limited, TAGS, live_params(snap, { tags = "a" }))
        eventually(limited, function(st) return st.active_native == 1 end)
        local res = get(limited, TAGS, live_params(snap, { tags = "a" }))
        assert.are.equal(429, res.status)
        assert.are.equal('{"error":"Too many concurrent requests"}', res.body)
        assert.are.equal("application/json", res.headers["content-type"])
        assert.are.equal("*", res.headers["access-control-allow-origin"])
        assert.is_nil(res.headers["retry-after"])
        assert.is_true(res.elapsed < 5)
        assert.are.equal(200, get(limited, TAGS, { tags = "a", offset = "-1" }).status)
        assert.are.equal(200, get(limited, TAGS, { tags = "a", handle = handle_of(snap),
                                                   offset = offset_of(snap) }).status)
        limited:create_run { tags = { "a" } }
        assert.are.equal(200, held().status)
        eventually(limited, function(st) return st.active_native == 0 end)
      end)
      local none = helper.start_server { backend = "native", hold_ms = 10000, max_connections = 0 }
      stopping(none, function()
        local snap = get(none, TAGS, { tags = "a", offset = "-1" })
        assert.are.equal(200, snap.status)
        assert.are.equal(429, get(none, TAGS, live_params(snap, { tags = "a" })).status)
      end)
    end)
  end)

  describe("faults", function()
    it("applies injected statuses, drips and stripped headers to native answers", function()
      srv:create_run { tags = { "a" } }
      srv:fault { kind = "status", status = 503, match = { path_prefix = TAGS } }
      assert.are.equal(503, get(srv, TAGS, { tags = "a", offset = "-1" }).status)
      local normal = get(srv, TAGS, { tags = "a", offset = "-1" })
      srv:fault { kind = "drip", chunk_size = 50 }
      local dripped = get(srv, TAGS, { tags = "a", offset = "-1" })
      assert.are.equal("chunked", dripped.headers["transfer-encoding"])
      assert.are.equal(#normal.body, #dripped.body)
      assert.are.equal(UP_TO_DATE .. "]", dripped.body:sub(-#UP_TO_DATE - 1))
      srv:fault { kind = "strip_headers" }
      local stripped = get(srv, TAGS, { tags = "a", offset = "-1" })
      for name in pairs(stripped.headers) do assert.is_nil(name:match("^electric%-")) end
      assert.is_table(stripped.json)
      srv:fault { kind = "invalid_json" }
      assert.is_nil(get(srv, TAGS, { tags = "a", offset = "-1" }).json)
    end)
  end)

  describe("switching backends", function()
    it("flips a running server; the admin route says which one serves", function()
      assert.are.equal("native", srv:get_backend())
      srv:set_backend("electric")
      assert.are.equal("electric", srv:get_backend())
      srv:create_run { tags = { "a" } }
      local res = get(srv, TAGS, { tags = "a", offset = "-1" })
      assert.is_truthy(handle_of(res):match("^%d+%-%d+$"))
      local status = helper.http("127.0.0.1", srv.port, "POST", "/_emulator/backend", '{"backend":"mystery"}')
      assert.are.equal(400, status)
      assert.are.equal("electric", srv:get_backend())
    end)

    it("electric -> native: the Electric handle is accepted and every row comes as update", function()
      srv:set_backend("electric")
      local a = srv:create_run { tags = { "a" } }
      srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      local done = get(srv, TAGS, { tags = "a", offset = offset_of(snap), handle = handle_of(snap) })
      assert.is_string(done.headers["electric-up-to-date"])
      srv:set_backend("native")
      srv:update_run(a, { status = "EXECUTING" })
      local res = get(srv, TAGS, live_params(done, { tags = "a" }))
      assert.are.equal(200, res.status)
      assert.is_nil(res.headers["electric-up-to-date"])
      assert.are.equal(handle_of(done), handle_of(res))
      local msgs = changes_of(res)
      assert.are.equal(2, #msgs)
      for _, m in ipairs(msgs) do
        assert.are.equal("update", m.headers.operation)
        assert.are.equal(26, count(m.value))
      end
    end)

    it("native -> electric: a native handle gets 409 must-refetch, live or not", function()
      local id = srv:create_run { tags = { "a" } }
      local tags = get(srv, TAGS, { tags = "a", offset = "-1" })
      local run = get(srv, "/realtime/v1/runs/" .. id, { offset = "-1" })
      srv:set_backend("electric")
      for _, case in ipairs({ { TAGS, tags }, { "/realtime/v1/runs/" .. id, run } }) do
        for _, live in ipairs({ "true", "false" }) do
          local res = get(srv, case[1], live_params(case[2], { tags = "a", live = live }))
          assert.are.equal(409, res.status)
          assert.are.equal("must-refetch", res.json[1].headers.control)
        end
      end
    end)

    it("lets a request held by one backend finish in it after a flip", function()
      local id = srv:create_run { tags = { "a" } }
      local snap = get(srv, TAGS, { tags = "a", offset = "-1" })
      local pending = start(srv, TAGS, live_params(snap, { tags = "a" }))
      socket.sleep(0.2)
      srv:set_backend("electric")
      srv:update_run(id, { status = "EXECUTING" })
      local res = pending()
      assert.is_nil(res.headers["electric-up-to-date"])
      assert.are.equal(26, count(changes_of(res)[1].value))
    end)
  end)

  describe("stats", function()
    it("counts requests per route, live and non-live, and by backend", function()
      local id = srv:create_run { batchId = "batch_s" }
      srv:reset_stats()
      local snap = get(srv, TAGS, { offset = "-1" })
      get(srv, "/realtime/v1/runs/" .. id, { offset = "-1" })
      get(srv, "/realtime/v1/batches/batch_s", { offset = "-1" })
      srv:update_run(id, { status = "EXECUTING" })
      get(srv, TAGS, live_params(snap))
      srv:set_backend("electric")
      get(srv, TAGS, { offset = "-1" })
      local st = srv:stats()
      assert.are.same({ runs = 3, run = 1, batch = 1, admin = st.routes.admin, other = 0 }, st.routes)
      assert.is_true(st.routes.admin >= 3)
      assert.are.equal(5, st.realtime_requests)
      assert.are.equal(1, st.live_requests)
      assert.are.equal(4, st.non_live_requests)
      assert.are.same({ native = 4, electric = 1 }, st.backends)
      assert.are.equal("electric", st.backend)
      srv:reset_stats()
      local zero = srv:stats()
      assert.are.equal(0, zero.realtime_requests)
      assert.are.same({ native = 0, electric = 0 }, zero.backends)
    end)
  end)
end)

describe("native backend option checks", function()
  it("refuses an unknown backend on the command line", function()
    assert.has_error(function() helper.start_server { backend = "mystery" } end)
  end)
end)
