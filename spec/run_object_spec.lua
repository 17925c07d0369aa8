-- Unit tests: TaskRun rows (Postgres text values) to public run objects.
local run_object = require "trigger.run.object"
local json = require "trigger.json"
local null = json.null

local function row(over)
  local r = {
    id = "cm123", friendlyId = "run_1", taskIdentifier = "my-task", status = "EXECUTING",
    createdAt = "2025-01-10 12:00:00.123", updatedAt = "2025-01-10T12:00:01",
    startedAt = null, delayUntil = null, queuedAt = "2025-01-10 12:00:00", expiredAt = null,
    completedAt = null, number = "42", isTest = "f", usageDurationMs = "1500",
    costInCents = "0.5", baseCostInCents = "0.25", ttl = "10m", payload = '{"a":1}',
    payloadType = "application/json", metadata = null, metadataType = null, output = null,
    outputType = null, runTags = '{user:1234,"b c"}', error = null, realtimeStreams = "{}",
  }
  for k, v in pairs(over or {}) do r[k] = v end
  return r
end

describe("run_object.build", function()
  it("maps every documented field", function()
    local run = run_object.build(row())
    assert.are.equal("run_1", run.id)
    assert.are.equal("my-task", run.taskIdentifier)
    assert.are.equal("EXECUTING", run.status)
    assert.are.equal("2025-01-10T12:00:00.123Z", run.createdAt)
    assert.are.equal("2025-01-10T12:00:01.000Z", run.updatedAt)
    assert.are.equal("2025-01-10T12:00:00.000Z", run.queuedAt)
    assert.is_nil(run.startedAt)
    assert.is_nil(run.finishedAt)
    assert.are.equal(42, run.number)
    assert.are.equal(1500, run.durationMs)
    assert.are.equal(0.5, run.costInCents)
    assert.are.equal(0.25, run.baseCostInCents)
    assert.are.same({ "user:1234", "b c" }, run.tags)
    assert.are.same({}, run.realtimeStreams)
    assert.are.equal("10m", run.ttl)
    assert.is_false(run.isTest)
    assert.are.same({ a = 1 }, run.payload)
    assert.is_nil(run.output)
    assert.is_nil(run.metadata)
    assert.is_nil(run.error)
    assert.is_true(run.isExecuting)
    assert.is_false(run.isCompleted)
  end)

  it("renames completedAt and delayUntil", function()
    local run = run_object.build(row { completedAt = "2025-01-10 12:01:00.5",
      delayUntil = "2025-01-11T00:00:00.000" })
    assert.are.equal("2025-01-10T12:01:00.500Z", run.finishedAt)
    assert.are.equal("2025-01-11T00:00:00.000Z", run.delayedUntil)
  end)

  it("defaults duration, costs, tags and isTest", function()
    local run = run_object.build(row { usageDurationMs = null, costInCents = null,
      baseCostInCents = null, runTags = null, isTest = null, realtimeStreams = null })
    assert.are.equal(0, run.durationMs)
    assert.are.equal(0, run.costInCents)
    assert.are.equal(0, run.baseCostInCents)
    assert.are.same({}, run.tags)
    assert.are.same({}, run.realtimeStreams)
    assert.is_false(run.isTest)
  end)

  it("reads number columns as Lua reads the numerals", function()
    local texts = { "0", "7", "-7", "007", "-0", "42", "3625", "123456789012345678",
      "-123456789012345678", "1234567890123456789", "99999999999999999999", "0.5", "-1.5",
      "0.0362", "1e3", "12.", ".5" }
    for _, text in ipairs(texts) do
      local want = tonumber(text)
      local run = run_object.build(row { number = text, usageDurationMs = text })
      for _, field in ipairs { "number", "durationMs" } do
        local got = run[field]
        assert.are.equal(want, got, field .. " " .. text)
        if math.type then assert.are.equal(math.type(want), math.type(got), field .. " " .. text) end
        assert.are.equal(1 / want, 1 / got, field .. " " .. text) -- -0 stays -0 where it is one
      end
    end
  end)

  it("reads both boolean spellings", function()
    assert.is_true(run_object.build(row { isTest = "t" }).isTest)
    assert.is_true(run_object.build(row { isTest = "true" }).isTest)
    assert.is_false(run_object.build(row { isTest = "false" }).isTest)
  end)

  local statuses = {
    DELAYED = "DELAYED", WAITING_FOR_DEPLOY = "PENDING_VERSION", PENDING_VERSION = "PENDING_VERSION",
    PENDING = "QUEUED", PAUSED = "WAITING", WAITING_TO_RESUME = "WAITING", DEQUEUED = "DEQUEUED",
    RETRYING_AFTER_FAILURE = "EXECUTING", EXECUTING = "EXECUTING", CANCELED = "CANCELED",
    COMPLETED_SUCCESSFULLY = "COMPLETED", SYSTEM_FAILURE = "SYSTEM_FAILURE", CRASHED = "CRASHED",
    INTERRUPTED = "FAILED", COMPLETED_WITH_ERRORS = "FAILED", EXPIRED = "EXPIRED",
    TIMED_OUT = "TIMED_OUT", SOMETHING_NEW = "QUEUED",
  }
  local helpers = {
    QUEUED = { isQueued = true }, DELAYED = { isQueued = true }, PENDING_VERSION = { isQueued = true },
    WAITING = { isWaiting = true }, DEQUEUED = { isExecuting = true },
    EXECUTING = { isExecuting = true }, COMPLETED = { isSuccess = true, isCompleted = true },
    CANCELED = { isCancelled = true }, FAILED = { isFailed = true, isCompleted = true },
    CRASHED = { isFailed = true, isCompleted = true },
    SYSTEM_FAILURE = { isFailed = true, isCompleted = true },
    EXPIRED = { isFailed = true, isCompleted = true },
    TIMED_OUT = { isFailed = true, isCompleted = true },
  }
  for db, public in pairs(statuses) do
    it("maps status " .. db .. " to " .. public .. " with its helpers", function()
      local run = run_object.build(row { status = db })
      assert.are.equal(public, run.status)
      for _, h in ipairs { "isQueued", "isExecuting", "isWaiting", "isCompleted", "isFailed",
        "isSuccess", "isCancelled" } do
        assert.are.equal(helpers[public][h] or false, run[h], h)
      end
    end)
  end

  it("turns each TaskRunError into a SerializedError", function()
    local function err(e) return run_object.build(row { error = json.encode(e) }).error end
    assert.are.same({ name = "TypeError", message = "boom", stackTrace = "at x" },
      err { type = "BUILT_IN_ERROR", name = "TypeError", message = "boom", stackTrace = "at x" })
    assert.are.same({ message = "oops" }, err { type = "STRING_ERROR", raw = "oops" })
    assert.are.same({ message = "custom" }, err { type = "CUSTOM_ERROR", raw = "custom" })
    assert.are.same({ message = "trigger.dev internal error (TASK_RUN_CRASHED)" },
      err { type = "INTERNAL_ERROR", code = "TASK_RUN_CRASHED" })
  end)

  it("decodes each packet type", function()
    local run = run_object.build(row {
      payload = "hello", payloadType = "text/plain",
      output = '{"json":{"n":"NaN","d":"2025-01-10T00:00:00.000Z"},'
        .. '"meta":{"values":{"n":["number"],"d":["Date"]}}}',
      outputType = "application/super+json",
      metadata = '{"progress":0.5}', metadataType = "application/json",
    })
    assert.are.equal("hello", run.payload)
    assert.is_true(run.output.n ~= run.output.n)
    assert.are.equal("2025-01-10T00:00:00.000Z", run.output.d)
    assert.are.same({ progress = 0.5 }, run.metadata)
  end)

  it("keeps JSON null inside packets as json.null", function()
    local run = run_object.build(row { payload = '{"a":null}' })
    assert.are.equal(null, run.payload.a)
  end)

  it("passes unknown packet types through as strings", function()
    assert.are.equal("<x/>", run_object.build(row { payload = "<x/>",
      payloadType = "application/xml" }).payload)
  end)

  it("leaves metadata out when metadataType is not set", function()
    assert.is_nil(run_object.build(row { metadata = '{"a":1}', metadataType = null }).metadata)
  end)

  it("treats empty packet data as absent", function()
    assert.is_nil(run_object.build(row { payload = "" }).payload)
  end)

  it("warns and keeps the text when a JSON packet is broken", function()
    local warned
    local run = run_object.build(row { payload = "{broken" }, nil, function(m) warned = m end)
    assert.are.equal("{broken", run.payload)
    assert.matches("payload: application/json packet does not decode", warned)
  end)

  it("fetches application/store packets through the given function", function()
    local asked
    local run = run_object.build(row { payload = "packets/run_1/payload.json",
      payloadType = "application/store" }, function(field, path)
        asked = field .. " " .. path
        return '{"big":true}', "application/json"
      end)
    assert.are.equal("payload packets/run_1/payload.json", asked)
    assert.are.same({ big = true }, run.payload)
  end)

  it("adds idempotencyKey only when present", function()
    assert.is_nil(run_object.build(row()).idempotencyKey)
    assert.are.equal("k1", run_object.build(row { idempotencyKey = "k1" }).idempotencyKey)
  end)
end)

describe("run_object.build arrays", function()
  local function array_mt_of(t) return getmetatable(t) == json.array_mt end

  it("reads tags and realtimeStreams as core.pg_array does, for every form of array text", function()
    local core = require "trigger.core"
    local pieces = { "a", "user:1", "NULL", "null", '"b c"', "x y", " ", "", ",", "{", "}", '"',
      "\\", "\\,", "[1:1]=", "é", "{a}", "NULLx" }
    local texts, seen = {}, {}
    local function add(t)
      if not seen[t] then
        seen[t] = true
        texts[#texts + 1] = t
      end
    end
    for _, p in ipairs(pieces) do
      for _, q in ipairs(pieces) do
        add("{" .. p .. "}")
        add("{" .. p .. "," .. q .. "}")
        add("{" .. p .. "," .. q .. ",c}")
        add(p .. "{" .. q .. "}")
        add("{" .. p .. "}" .. q)
      end
    end
    local many = {}
    for i = 1, 70 do many[i] = "t" .. i end
    add("{" .. table.concat(many, ",") .. "}")
    for _, t in ipairs(texts) do
      local run, problems = core.run_fields(row { runTags = t, realtimeStreams = t }, null,
        json.array_mt)
      local want, why = core.pg_array(t, null, json.array_mt)
      for _, got in ipairs { run.tags, run.realtimeStreams } do
        assert.is_true(getmetatable(got) == json.array_mt, t)
        assert.are.same(want or {}, got, t)
      end
      if want then
        assert.is_nil(problems, t)
      else
        assert.are.same({ "runTags " .. why, "realtimeStreams " .. why }, problems, t)
      end
    end
    assert.is_true(#texts > 1000)
  end)

  it("marks tags and realtimeStreams as arrays, so a run with none encodes them as []", function()
    local absent = row()
    absent.runTags, absent.realtimeStreams = nil, nil
    for _, r in ipairs {
      row { runTags = "{}", realtimeStreams = "{}" },
      row { runTags = null, realtimeStreams = null },
      absent,
      row { runTags = "{a,", realtimeStreams = 7 }, -- malformed / not text: still an empty array
    } do
      local run = run_object.build(r, nil, function() end)
      assert.is_true(array_mt_of(run.tags))
      assert.is_true(array_mt_of(run.realtimeStreams))
      local text = json.encode(run)
      assert.matches('"tags":%[%]', text)
      assert.matches('"realtimeStreams":%[%]', text)
    end
    local run = run_object.build(row { runTags = '{a,"b c"}', realtimeStreams = "{default}" })
    assert.is_true(array_mt_of(run.tags))
    assert.matches('"tags":%["a","b c"%]', json.encode(run))
    assert.matches('"realtimeStreams":%["default"%]', json.encode(run))
  end)

  it("marks nested Postgres arrays and the arrays of packets", function()
    local core = require "trigger.core"
    local a = core.pg_array("{{},{x,NULL}}", null, json.array_mt)
    assert.is_true(array_mt_of(a) and array_mt_of(a[1]) and array_mt_of(a[2]))
    assert.are.equal('[[],["x",null]]', json.encode(a))
    assert.is_nil(getmetatable(core.pg_array("{}")), "unmarked unless asked")
    local run = run_object.build(row {
      payload = '{"items":[],"nested":{"list":[[]]}}',
      output = '{"json":{"s":[],"when":"2025-01-10T12:00:00.000Z"},"meta":{"values":{"when":["Date"]}}}',
      outputType = "application/super+json",
      metadata = '{"json":{"tags":[],"deep":{"a":[]}},"meta":{"values":{"deep.a":["set"]}}}',
      metadataType = "application/super+json",
    })
    assert.matches('"items":%[%]', json.encode(run.payload))
    assert.are.equal('{"list":[[]]}', json.encode(run.payload.nested))
    assert.matches('"s":%[%]', json.encode(run.output))
    assert.matches('"tags":%[%]', json.encode(run.metadata))
    assert.matches('"a":%[%]', json.encode(run.metadata))
  end)
end)

describe("run_object.build with bad values", function()
  it("reports each bad column and keeps going", function()
    local warnings = {}
    local run = run_object.build({ friendlyId = "run_x", status = "PENDING",
      createdAt = "yesterday", number = "seven", isTest = "maybe", runTags = "{a,",
      error = "not json" }, nil, function(m) warnings[#warnings + 1] = m end)
    table.sort(warnings)
    assert.are.same({
      "createdAt is not a timestamp: yesterday",
      "error is not a TaskRunError object",
      "isTest is not a boolean: maybe",
      "number is not a number: seven",
      "runTags malformed Postgres array at byte 4",
    }, warnings)
    assert.are.equal("yesterday", run.createdAt)
    assert.is_nil(run.number)
    assert.is_false(run.isTest)
    assert.are.same({}, run.tags)
    assert.are.same({ message = "not json" }, run.error)
  end)
end)

describe("run_object.build from a row blob", function()
  local core = require "trigger.core"

  -- The row as the store keeps a whole value of the shape log (trigger.shape.rows).
  local function blob_of(r)
    local body = json.encode { { headers = { operation = "insert" }, key = "k", value = r } }
    local list = assert(core.shape_messages(body, null, true))
    assert.are.equal("string", type(list[3]))
    return list[3]
  end

  local function built(r)
    local warnings = {}
    local run = run_object.build(r, nil, function(m) warnings[#warnings + 1] = m end)
    return run, warnings
  end

  it("gives the run object and the warnings the table gives", function()
    local cases = {
      row(),
      row { status = "COMPLETED_SUCCESSFULLY", completedAt = "2025-01-10 12:00:03.875",
        output = '{"json":{"at":"2025-01-10T12:00:03.750Z"},"meta":{"values":{"at":["Date"]}}}',
        outputType = "application/super+json", metadata = '{"p":1}',
        metadataType = "application/json", idempotencyKey = "once" },
      row { error = '{"type":"BUILT_IN_ERROR","name":"Error","message":"boom"}',
        status = "COMPLETED_WITH_ERRORS", payload = "hello", payloadType = "text/plain" },
      { friendlyId = "run_x", status = "PENDING", createdAt = "yesterday", number = "seven",
        isTest = "maybe", runTags = "{a,", error = "not json", ttl = "a\0b",
        payload = "{bad", payloadType = "application/json" },
      {},
    }
    for i, r in ipairs(cases) do
      local run, warnings = built(r)
      local run2, warnings2 = built(blob_of(r))
      assert.are.same(run, run2, "case " .. i)
      assert.are.same(warnings, warnings2, "case " .. i)
    end
  end)
end)
