-- Packets of every type and every status, through the wire of the local server.
local helper = require "spec.helper"
local trigger = require "trigger"
local json = require "trigger.json"

local function subscribe_run(srv, id)
  return trigger.runs.subscribe_to_run(id, { access_token = srv.secret_key,
    base_url = srv.base_url, stop_on_completion = false })
end

local function first(srv, id)
  local sub = subscribe_run(srv, id)
  local run = sub:next(10)
  sub:close()
  return run
end

describe("packets over the wire", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)

  it("decodes application/json, super+json, text/plain and unknown types", function()
    local id = srv:create_run {
      payload = json.encode { user = "ada", n = 3, nested = { list = { 1, 2 } } },
      payloadType = "application/json",
      output = json.encode { json = { when = "2025-01-10T12:00:00.000Z", big = "9007199254740993",
        s = { "a", "b" }, m = { { "k", 1 } }, missing = json.null, inf = "-Infinity" },
        meta = { values = { when = { "Date" }, big = { "bigint" }, s = { "set" }, m = { "map" },
          missing = { "undefined" }, inf = { "number" } } } },
      outputType = "application/super+json",
      metadata = "just text", metadataType = "text/plain",
    }
    local run = first(srv, id)
    assert.are.same({ user = "ada", n = 3, nested = { list = { 1, 2 } } }, run.payload)
    assert.are.equal("2025-01-10T12:00:00.000Z", run.output.when)
    if math.tointeger then assert.are.equal(9007199254740993, run.output.big) end
    assert.are.same({ "a", "b" }, run.output.s)
    assert.are.same({ k = 1 }, run.output.m)
    assert.is_nil(run.output.missing)
    assert.are.equal(-math.huge, run.output.inf)
    assert.are.equal("just text", run.metadata)
    local other = first(srv, srv:create_run { payload = "a,b\n1,2", payloadType = "text/csv" })
    assert.are.equal("a,b\n1,2", other.payload)
  end)

  it("fetches application/store packets through a presigned URL", function()
    srv:put_blob("packets/big-output.json", "application/json", json.encode { rows = 1000 })
    srv:put_blob("packets/big-payload.txt", "text/plain", "plain stored text")
    local id = srv:create_run { payload = "packets/big-payload.txt", payloadType = "application/store",
      output = "packets/big-output.json", outputType = "application/store" }
    local run = first(srv, id)
    assert.are.equal("plain stored text", run.payload)
    assert.are.same({ rows = 1000 }, run.output)
  end)

  it("falls back to the legacy packet route", function()
    local legacy = helper.start_server { hold_ms = 1000, legacy_packets_only = true }
    legacy:put_blob("packets/p.json", "application/json", '{"legacy":true}')
    local id = legacy:create_run { payload = "packets/p.json", payloadType = "application/store" }
    local run = first(legacy, id)
    assert.are.same({ legacy = true }, run.payload)
    legacy:stop()
  end)

  it("reports a missing stored packet through on_error and keeps the path", function()
    local id = srv:create_run { payload = "packets/nowhere.json", payloadType = "application/store" }
    local warnings = {}
    local sub = trigger.runs.subscribe_to_run(id, { access_token = srv.secret_key,
      base_url = srv.base_url, on_error = function(e) warnings[#warnings + 1] = e end })
    local run = sub:next(10)
    sub:close()
    assert.are.equal("packets/nowhere.json", run.payload)
    assert.are.equal(1, #warnings)
    assert.are.equal("protocol", warnings[1].kind)
    assert.matches("payload", warnings[1].message)
  end)

  it("fetches an unchanged stored packet once", function()
    srv:put_blob("packets/once.json", "application/json", '{"once":true}')
    local id = srv:create_run { payload = "packets/once.json", payloadType = "application/store",
      status = "EXECUTING" }
    local sub = subscribe_run(srv, id)
    assert.are.same({ once = true }, sub:next(10).payload)
    srv:update_run(id, { status = "COMPLETED_SUCCESSFULLY" })
    assert.are.same({ once = true }, sub:next(10).payload)
    sub:close()
    local fetched = 0
    for _, e in ipairs(srv:stats().log) do
      if e.path == "/_blobs/packets/once.json" then fetched = fetched + 1 end
    end
    assert.are.equal(1, fetched)
  end)
end)

describe("statuses over the wire", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)

  local expected = {
    PENDING = "QUEUED", DELAYED = "DELAYED", WAITING_FOR_DEPLOY = "PENDING_VERSION",
    PENDING_VERSION = "PENDING_VERSION", DEQUEUED = "DEQUEUED", EXECUTING = "EXECUTING",
    RETRYING_AFTER_FAILURE = "EXECUTING", PAUSED = "WAITING", WAITING_TO_RESUME = "WAITING",
    CANCELED = "CANCELED", COMPLETED_SUCCESSFULLY = "COMPLETED", SYSTEM_FAILURE = "SYSTEM_FAILURE",
    CRASHED = "CRASHED", INTERRUPTED = "FAILED", COMPLETED_WITH_ERRORS = "FAILED",
    EXPIRED = "EXPIRED", TIMED_OUT = "TIMED_OUT",
  }
  for db, public in pairs(expected) do
    it(db .. " arrives as " .. public, function()
      local id = srv:create_run { status = db, runTags = { "status-test" } }
      assert.are.equal(public, first(srv, id).status)
    end)
  end

  it("keeps every documented field, including number and ttl", function()
    local id = srv:create_run { status = "EXECUTING", number = 7, ttl = "1h",
      idempotencyKey = "idem-1", runTags = { "a", "b c", 'q"d' }, isTest = true,
      usageDurationMs = 1234, costInCents = 1.5, baseCostInCents = 0.5,
      startedAt = "2025-01-10T12:00:00.120Z", delayUntil = "2025-01-11T00:00:00Z",
      realtimeStreams = { "logs" }, metadata = '{"p":1}', metadataType = "application/json",
      error = { type = "STRING_ERROR", raw = "oops" } }
    local run = first(srv, id)
    assert.are.equal(7, run.number)
    assert.are.equal("1h", run.ttl)
    assert.are.equal("idem-1", run.idempotencyKey)
    assert.are.same({ "a", "b c", 'q"d' }, run.tags)
    assert.is_true(run.isTest)
    assert.are.equal(1234, run.durationMs)
    assert.are.equal(1.5, run.costInCents)
    assert.are.equal(0.5, run.baseCostInCents)
    assert.are.equal("2025-01-10T12:00:00.120Z", run.startedAt)
    assert.are.equal("2025-01-11T00:00:00.000Z", run.delayedUntil)
    assert.are.same({ "logs" }, run.realtimeStreams)
    assert.are.same({ p = 1 }, run.metadata)
    assert.are.same({ message = "oops" }, run.error)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", run.createdAt)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", run.updatedAt)
  end)

  it("reads the server's other value styles (true/false, T timestamps)", function()
    local other = helper.start_server { hold_ms = 1000, bool_style = "true", timestamp_style = "T" }
    local id = other:create_run { isTest = true, startedAt = "2025-01-10T12:00:00.5Z" }
    local run = first(other, id)
    assert.is_true(run.isTest)
    assert.are.equal("2025-01-10T12:00:00.500Z", run.startedAt)
    other:stop()
  end)
end)
