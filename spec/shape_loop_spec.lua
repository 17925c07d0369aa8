-- trigger.shape.loop and its one rule for "up to date" (shape_body.up_to_date), against the
-- local server on both of Trigger.dev's realtime backends: the Electric shape log says up to
-- date in the `electric-up-to-date` header and in the body, the native runs feed in the body
-- only. The loop is run here as an upstream runs it (a coroutine over the curl transport),
-- without the subscription around it, so what it publishes is seen batch by batch.
local helper = require "spec.helper"
local core = require "trigger.core"
local curl = require "trigger.transport.curl"
local json = require "trigger.json"
local request = require "trigger.transport.request"
local shape_body = require "trigger.shape.body"
local shape_loop = require "trigger.shape.loop"
local shape_rows = require "trigger.shape.rows"
local socket = require "socket"

local WAIT = 10 -- seconds any one wait may take before the case fails (a guard, not a measure)
local PROTOCOL = { "x-trigger-electric-version: 1.0.0-beta.1", "x-trigger-api-version: 2025-07-16" }

-- messages as shape_rows.parse gives them
local function list(body) return assert(core.shape_messages(body, json.null, true)) end

local UP = '{"headers":{"control":"up-to-date"}}'
local ROW = '{"headers":{"operation":"insert"},"key":"k","value":{"id":"r"}}'

describe("shape_body.up_to_date", function()
  it("says Electric's answer is up to date by its header and its body", function()
    local boundary, body_ends, native = shape_body.up_to_date(200,
      { ["electric-up-to-date"] = "" }, list("[" .. ROW .. "," .. UP .. "]"))
    assert.same({ true, true, false }, { boundary, body_ends, native })
    -- by the header alone (a body not read, or not ending so)
    assert.same({ true, false, false },
      { shape_body.up_to_date(200, { ["electric-up-to-date"] = "" }) })
    assert.same({ true, false, false },
      { shape_body.up_to_date(200, { ["electric-up-to-date"] = "" }, list("[" .. ROW .. "]")) })
    -- a live answer with nothing new
    assert.same({ true, false, false }, { shape_body.up_to_date(204, {}) })
  end)

  it("says the native feed's answer is up to date by its body only, and knows it by that",
    function()
    assert.same({ true, true, true },
      { shape_body.up_to_date(200, {}, list("[" .. ROW .. "," .. UP .. "]")) })
    assert.same({ true, true, true }, { shape_body.up_to_date(200, {}, list("[" .. UP .. "]")) })
  end)

  it("says a page of a sync is not up to date", function()
    assert.same({ false, false, false }, { shape_body.up_to_date(200, {}, list("[" .. ROW .. "]")) })
    assert.same({ false, false, false }, { shape_body.up_to_date(200, {}, list("[]")) })
    assert.same({ false, false, false }, { shape_body.up_to_date(200, {}) })
  end)

  it("ends a batch at an up-to-date message anywhere, while only the last one ends the body",
    function()
    assert.same({ true, false, false },
      { shape_body.up_to_date(200, {}, list("[" .. UP .. "," .. ROW .. "]")) })
  end)

  it("asks the bytes the same as the list", function()
    for _, body in ipairs { "[]", "[" .. UP .. "]", "[" .. ROW .. "," .. UP .. "]",
        "[" .. UP .. "," .. ROW .. "]", "[" .. ROW .. "]", " [ " .. UP .. " ] \n" } do
      local _, body_ends = shape_body.up_to_date(200, {}, list(body))
      assert.equal(body_ends, shape_body.ends_up_to_date(body), body)
    end
  end)
end)

-- A shape loop for `tag` on `srv`, as trigger.fanout.upstream makes one; `batches` gets what it
-- publishes, `errs` what on_error hears.
local function new_loop(srv, tag)
  local batches, errs = {}, {}
  local settings = { base_url = srv.base_url, access_token = srv.secret_key, read_timeout = 10,
    connect_timeout = 5, retry_base = 0.05, retry_cap = 0.2, max_retries = 5,
    max_body = 64 * 1024 * 1024, on_error = function(e) errs[#errs + 1] = e end }
  local r = { settings = settings, path = "/realtime/v1/runs", params = { tags = tag },
    transport = curl, shape = core.shape(), headers = request.api_headers(settings),
    closed = false, ready = true, inflight = {}, rows = shape_rows.new() }
  for _, h in ipairs(PROTOCOL) do r.headers[#r.headers + 1] = h end
  r.is_closed = function() return r.closed end
  r.publish = function(batch) batches[#batches + 1] = batch end
  r.co = coroutine.create(function() return shape_loop.run(r) end)
  return r, batches, errs
end

-- Resume the loop until it publishes one more batch; `between` (optional) is called after
-- each wait with the count of waits so far.
local function next_batch(r, batches, between)
  local n, waits = #batches, 0
  local deadline = socket.gettime() + WAIT
  while #batches == n do
    assert(socket.gettime() < deadline, "no batch in " .. WAIT .. " s")
    local ok, what = coroutine.resume(r.co)
    assert(ok, what)
    assert(coroutine.status(r.co) == "suspended", "the loop ended")
    if what == "wait" then
      waits = waits + 1
      if between then between(waits) end
      curl.step(0.05)
    end
  end
  return batches[#batches]
end

local function close_loop(r)
  r.closed = true
  for h in pairs(r.inflight) do h:close() end
  r.inflight = {}
  r.shape:close()
end

local function sorted(t)
  table.sort(t)
  return t
end

for _, backend in ipairs { "electric", "native" } do
  describe("the shape loop on the " .. backend .. " backend", function()
    local srv
    setup(function()
      srv = helper.start_server { hold_ms = 1000, backend = backend, native_coalesce_ms = 50,
        chunk_rows = 3 }
    end)
    teardown(function() srv:stop() end)

    it("judges the server's answers by the one rule: " .. (backend == "native"
        and "up to date in the body only" or "up to date in the header and the body"), function()
      local tag = helper.fresh_tag("uptodate:")
      for _ = 1, 5 do srv:create_run { tags = { tag } } end
      local query = "/realtime/v1/runs?tags=" .. tag .. "&offset=-1"
      local headers = { "Authorization: Bearer " .. srv.secret_key }
      for _, h in ipairs(PROTOCOL) do headers[#headers + 1] = h end
      local status, hd, body = request.perform(curl, { url = srv.base_url .. query,
        headers = headers, timeout = 10 })
      assert.equal(200, status)
      local boundary, body_ends, native = shape_body.up_to_date(status, hd, list(body))
      assert.equal(body_ends, shape_body.ends_up_to_date(body))
      if backend == "native" then
        assert.is_nil(hd["electric-up-to-date"])
        assert.same({ true, true, true }, { boundary, body_ends, native })
      else
        -- the first page of a sync of 5 rows, 3 a page: not up to date, by header nor body
        assert.same({ false, false, false }, { boundary, body_ends, native })
      end
    end)

    it("publishes a batch at each up-to-date boundary, with every run, and tells the dialect",
      function()
      local tag = helper.fresh_tag("loop:")
      local ids = {}
      for i = 1, 5 do ids[i] = srv:create_run { tags = { tag } } end
      local r, batches, errs = new_loop(srv, tag)
      local batch = next_batch(r, batches)
      assert.equal(1, #batches)
      assert.equal(5, #r.rows:keys())
      assert.equal(5, #batch.keys)
      local got = {}
      for _, key in ipairs(r.rows:keys()) do got[#got + 1] = r.rows:get(key).friendlyId end
      assert.same(sorted(ids), sorted(got))
      assert.equal(backend == "native", r.native_dialect == true)
      -- a change: the next batch holds it alone
      srv:update_run(ids[3], { status = "COMPLETED_SUCCESSFULLY" })
      batch = next_batch(r, batches)
      assert.same({ 1 }, { #batch.keys })
      assert.equal(ids[3], r.rows:get(batch.keys[1]).friendlyId)
      assert.equal("COMPLETED_SUCCESSFULLY", r.rows:get(batch.keys[1]).status)
      assert.same({}, errs)
      close_loop(r)
    end)

    it("reads afresh when a reader asks while a live request waits: the interrupted read is no "
      .. "error", function()
      local tag = helper.fresh_tag("afresh:")
      local id = srv:create_run { tags = { tag } }
      local r, batches, errs = new_loop(srv, tag)
      next_batch(r, batches)
      -- now the loop holds a live request (hold_ms = 1000, nothing changes): ask again afresh,
      -- as Upstream:refresh does
      local batch = next_batch(r, batches, function(waits)
        if waits == 2 then
          r.refresh_ticket = 1
          r.interrupt = true
        end
      end)
      assert.is_nil(r.interrupt)
      assert.same({}, errs) -- given up, not failed
      assert.is_nil(r.last_error)
      if backend == "native" then
        -- the whole shape read again: the batch answers the refresh and holds the run
        assert.equal(1, batch.refreshed)
        assert.same({ id }, { r.rows:get(r.rows:keys()[1]).friendlyId })
      end
      assert.equal(1, #r.rows:keys())
      close_loop(r)
    end)
  end)
end
