-- trigger.runs.retrieve / cancel / list / wait and trigger.tasks against the local server's
-- management API (management-api.md), on both realtime backends where the realtime feed is
-- read (wait, handles on subscriptions, batches).
local helper = require "spec.helper"
local cjson = require "cjson"
local trigger = require "trigger"
local config = require "trigger.config"
local tasks = require "trigger.tasks"

local TASKS = {
  hello = { queue_ms = 10, steps = { { sleep = 0.05 }, { metadata = { progress = 1 } },
    { output = { message = "hi" } } } },
  fails = { queue_ms = 10, steps = { { sleep = 0.05 }, { fail = "boom" } } },
  echo = { queue_ms = 10, steps = { { echo = true } } },
  story = { queue_ms = 10, steps = { { stream = "default", chunks = { "a", "b", "c" } },
    { output = { words = 3 } } } },
}

local function start(backend)
  local srv = helper.start_server { hold_ms = 1000, backend = backend }
  srv:admin("POST", "/_emulator/tasks", { tasks = TASKS })
  return srv
end

local function api_log(srv, pattern)
  local out = {}
  for _, e in ipairs(srv:stats().log) do
    if e.path:match(pattern) then out[#out + 1] = e end
  end
  return out
end

for _, backend in ipairs { "electric", "native" } do
  describe("run look-ups (" .. backend .. " feed)", function()
    local srv
    local function o(more) return helper.client_opts(srv, more) end
    setup(function() srv = start(backend) end)
    teardown(function() srv:stop() end)
    before_each(function() config.reset() end)

    it("trigger then wait: the final run, followed on the realtime feed", function()
      srv:reset_stats()
      local handle = assert(tasks.trigger("hello", { name = "Ada" }, o { tags = "t:wait" }))
      assert.matches("^run_", handle.id)
      assert.is_false(handle.isCached)
      assert.is_string(handle.publicAccessToken)
      local seen = {}
      local run = assert(trigger.runs.wait(handle, o { timeout = 30,
        on_change = function(r) seen[#seen + 1] = r.status end }))
      assert.are.equal("COMPLETED", run.status)
      assert.are.same({ message = "hi" }, run.output)
      assert.is_true(run.isSuccess)
      assert.are.equal("COMPLETED", seen[#seen])
      -- followed live, not polled: no retrieve was made
      assert.are.equal(0, #api_log(srv, "^/api/v3/runs/"))
      assert.is_true(#api_log(srv, "^/realtime/v1/runs/") >= 1)
    end)

    it("wait ends on FAILED and on EXPIRED (which the SDK's poll never ends on)", function()
      local run = assert(trigger.runs.wait(assert(tasks.trigger("fails", nil, o())), o()))
      assert.are.equal("FAILED", run.status)
      assert.are.equal("boom", run.error.message)
      -- an unknown task waits in the queue until its TTL expires it
      run = assert(trigger.runs.wait(assert(tasks.trigger("no-such-task", nil, o { ttl = 1 })),
        o { timeout = 30 }))
      assert.are.equal("EXPIRED", run.status)
      assert.is_true(run.isFailed)
    end)

    it("wait gives up after its timeout with a timeout error", function()
      local h = assert(tasks.trigger("no-such-task-2", nil, o { ttl = "1h" }))
      local run, err = trigger.runs.wait(h, o { timeout = 0.2 })
      assert.is_nil(run)
      assert.are.equal("timeout", err.kind)
      assert.matches("did not finish within 0.2 s", err.message, 1, true)
    end)

    it("a handle alone is enough: its token reads the run (no key configured)", function()
      local h = assert(tasks.trigger("hello", nil, o()))
      local only_url = { base_url = srv.base_url, retry_base = 0.01, retry_cap = 0.05 }
      local run = assert(trigger.runs.wait(h, only_url))
      assert.are.equal("COMPLETED", run.status)
      local got = assert(trigger.runs.retrieve(h, only_url))
      assert.are.equal(h.id, got.id)
      local first = trigger.runs.subscribe_to_run(h, only_url):next(10)
      assert.are.equal(h.id, first.id)
      -- it reads, it does not write: cancel needs a key (403)
      local ok, err = trigger.runs.cancel(h, only_url)
      assert.is_nil(ok)
      assert.are.equal("forbidden", err.kind)
    end)

    it("batch_trigger: the batch's runs on subscribe_to_batch(handle)", function()
      local b = assert(tasks.batch_trigger("hello", {
        { payload = { n = 1 } }, { payload = { n = 2 }, options = { tags = "b:2" } } }, o()))
      assert.matches("^batch_", b.id)
      assert.are.equal(2, b.runCount)
      local sub = trigger.runs.subscribe_to_batch(b, { base_url = srv.base_url })
      local done = {}
      local n = 0
      while n < 2 do
        local run = assert(sub:next(30))
        if run.status == "COMPLETED" and not done[run.id] then
          done[run.id] = true
          n = n + 1
        end
      end
      sub:close()
      local mixed = assert(tasks.batch_trigger_by_id({ { id = "echo", payload = { e = 1 } },
        { id = "hello" } }, o { idempotency_key = "mixed-" .. backend .. os.time() }))
      local tasks_seen = {}
      sub = trigger.runs.subscribe_to_batch(mixed, o())
      for _ = 1, 2 do tasks_seen[assert(sub:next(30)).taskIdentifier] = true end
      sub:close()
      assert.are.same({ echo = true, hello = true }, tasks_seen)
    end)
  end)
end

describe("run look-ups (management API)", function()
  local srv
  local function o(more) return helper.client_opts(srv, more) end
  setup(function() srv = start("electric") end)
  teardown(function() srv:stop() end)
  before_each(function() config.reset() srv:clear_faults() end)

  it("retrieve: the fields of §4.2, statuses by the 2025-07-16 names", function()
    local h = assert(tasks.trigger("hello", { a = 1 }, o { tags = { "z:1", "a:1" } }))
    assert(trigger.runs.wait(h, o()))
    local run = assert(trigger.runs.retrieve(h.id, o()))
    assert.are.equal(h.id, run.id)
    assert.are.equal("COMPLETED", run.status)
    assert.are.equal("hello", run.taskIdentifier)
    assert.are.same({ a = 1 }, run.payload)
    assert.are.same({ message = "hi" }, run.output)
    assert.are.same({ "a:1", "z:1" }, run.tags)
    assert.is_true(run.isCompleted)
    assert.is_table(run.relatedRuns)
    assert.is_string(run.createdAt)
    local e = api_log(srv, "^/api/v3/runs/")[1]
    assert.are.equal("2025-07-16", e.headers["x-trigger-api-version"])
  end)

  it("retrieve rides out a lagging replica (404 + x-should-retry: true), not a real 404",
    function()
      local h = assert(tasks.trigger("hello", nil, o()))
      srv:fault { kind = "status", status = 404, count = 2, body = '{"error":"Not found"}',
        headers = { ["x-should-retry"] = "true" }, match = { path_prefix = "/api/v3/runs/" } }
      local errs = {}
      local run = assert(trigger.runs.retrieve(h, o { on_error = function(err)
        errs[#errs + 1] = err end }))
      assert.are.equal(h.id, run.id)
      assert.are.equal(2, #errs)
      assert.are.equal("not_found", errs[1].kind)
      local none, err = trigger.runs.retrieve("run_doesnotexist", o { max_retries = 1,
        on_error = function() end })
      assert.is_nil(none)
      assert.are.equal("not_found", err.kind)
      assert.are.equal(404, err.status)
    end)

  it("an offloaded payload round-trips: retrieve fetches the stored packet once", function()
    local big = { blob = string.rep("y", tasks.OFFLOAD_BYTES + 10), n = 7 }
    srv:reset_stats()
    local h = assert(tasks.trigger("echo", big, o()))
    local trig = api_log(srv, "/trigger$")[1]
    assert.are.equal("application/store", cjson.decode(trig.body).options.payloadType)
    local run = assert(trigger.runs.wait(h, o()))
    assert.are.equal("COMPLETED", run.status)
    local got = assert(trigger.runs.retrieve(h, o()))
    assert.are.same(big, got.payload)
  end)

  it("cancel: the run ends CANCELED; an unknown run is not_found", function()
    local h = assert(tasks.trigger("never-defined", nil, o()))
    assert.are.equal(h.id, assert(trigger.runs.cancel(h.id, o())))
    local run = assert(trigger.runs.wait(h, o { timeout = 30 }))
    assert.are.equal("CANCELED", run.status)
    local ok, err = trigger.runs.cancel("run_nope", o())
    assert.is_nil(ok)
    assert.are.equal("not_found", err.kind)
  end)

  it("list: every run of a tag, page after page by cursor", function()
    local tag = helper.fresh_tag("list:")
    local ids = {}
    for i = 1, 3 do ids[assert(tasks.trigger("hello", { i = i }, o { tags = tag })).id] = true end
    srv:reset_stats()
    local got = {}
    for run in trigger.runs.list(o { tag = tag, page_size = 1 }) do got[run.id] = true end
    assert.are.same(ids, got)
    local pages = api_log(srv, "^/api/v1/runs$")
    assert.are.equal(3, #pages)
    assert.matches("page%%5Bsize%%5D=1", pages[1].query)
    assert.matches("page%%5Bafter%%5D=", pages[2].query)
    local page = assert(trigger.runs.list_page(o { tag = tag, page_size = 2 }))
    assert.are.equal(2, #page.data)
    assert.is_string(page.next)
    assert.has_error(function() trigger.runs.list(o { page_size = 101 }) end,
      "bad argument #1 to 'list' (page_size must be a whole number from 1 to 100)")
  end)

  it("a trigger whose answer was lost is retried without making a second run", function()
    local tag = helper.fresh_tag("lost:")
    local function triggers()
      local out = {}
      for _, e in ipairs(api_log(srv, "^/api/v1/tasks/")) do out[#out + 1] = e end
      return out
    end
    local function runs_of(t)
      local ids = {}
      for run in trigger.runs.list(o { tag = t }) do ids[#ids + 1] = run.id end
      return ids
    end
    srv:reset_stats()
    srv:fault { kind = "drop_response", match = { path_prefix = "/api/v1/tasks/" } }
    local h = assert(tasks.trigger("hello", nil, o { tags = tag, on_error = function() end }))
    assert.is_false(h.isCached, "made by this call (its first answer was lost)")
    local sent = triggers()
    assert.are.equal(2, #sent, "sent again (by the library, or by libcurl on a reused connection)")
    assert.are.equal(cjson.decode(sent[1].body).options.idempotencyKey,
      cjson.decode(sent[2].body).options.idempotencyKey)
    assert.are.same({ h.id }, runs_of(tag))
    -- without any key the lost answer is an error, and the request is not sent again, by the
    -- library or by the transport (it could make two runs)
    local tag2 = helper.fresh_tag("lost:")
    assert(tasks.trigger("hello", nil, o { tags = "warm-the-connection" }))
    srv:reset_stats()
    srv:fault { kind = "drop_response", match = { path_prefix = "/api/v1/tasks/" } }
    local none, err = tasks.trigger("hello", nil, o { tags = tag2, idempotency_key = false })
    assert.is_nil(none)
    assert.are.equal("network", err.kind)
    assert.are.equal(1, #triggers())
    assert.are.equal(1, #runs_of(tag2))
  end)

  it("the same key finds the same run (isCached), hashed as the SDK does", function()
    local key = "welcome-" .. os.time()
    local a = assert(tasks.trigger("hello", nil, o { idempotency_key = key }))
    local b = assert(tasks.trigger("hello", nil, o { idempotency_key = key }))
    assert.are.equal(a.id, b.id)
    assert.is_false(a.isCached)
    assert.is_true(b.isCached)
    assert.are.equal(key, assert(trigger.runs.retrieve(a, o())).idempotencyKey)
  end)

  it("a 429 of the API limiter is waited out (x-ratelimit-reset)", function()
    srv:fault { kind = "status", status = 429, reset_ms = 50,
      match = { path_prefix = "/api/v1/tasks/" } }
    local errs = {}
    assert(tasks.trigger("hello", nil, o { idempotency_key = false,
      on_error = function(e) errs[#errs + 1] = e end }))
    assert.are.equal("rate_limited", errs[1].kind)
    assert.is_number(errs[1].retry_after)
  end)

  it("the server's refusals are errors with its words, and a 4xx is not retried", function()
    srv:admin("POST", "/_emulator/api_config", { queue_size_limit = 0 })
    srv:reset_stats()
    local none, err = tasks.trigger("hello", nil, o())
    srv:admin("POST", "/_emulator/api_config", { queue_size_limit = false })
    assert.is_nil(none)
    assert.are.equal("bad_request", err.kind)
    assert.are.equal(422, err.status)
    assert.matches("queue size limit", err.message, 1, true)
    assert.are.equal(1, #api_log(srv, "^/api/v1/tasks/"))
    none, err = tasks.trigger("hello", nil, o { access_token = "tr_dev_wrong_key_entirely" })
    assert.is_nil(none)
    assert.are.equal("auth", err.kind)
    assert.are.equal(401, err.status)
    assert.is_nil(tostring(err):find("tr_dev_wrong", 1, true))
  end)

  it("x-trigger-branch reaches the management API and the realtime feed", function()
    srv:reset_stats()
    local h = assert(tasks.trigger("story", nil, o { preview_branch = "feat-1" }))
    assert(trigger.runs.wait(h, o { preview_branch = "feat-1" }))
    local chunks = {}
    for item in trigger.runs.subscribe_to_run(h, o { preview_branch = "feat-1" }):with_streams() do
      if item.chunk then chunks[#chunks + 1] = item.chunk end
    end
    assert.are.same({ "a", "b", "c" }, chunks)
    local streams = 0
    for _, e in ipairs(srv:stats().log) do
      if e.path:match("^/api/") or e.path:match("^/realtime/") then
        assert.are.equal("feat-1", e.headers["x-trigger-branch"], e.path)
      end
      if e.path:match("^/realtime/v1/streams/") then streams = streams + 1 end
    end
    assert.is_true(streams >= 1, "the stream was read")
  end)

  it("inside a cqueues loop a trigger yields: other coroutines go on meanwhile", function()
    local cqueues = require "cqueues"
    srv:fault { kind = "delay", delay_ms = 300, match = { path_prefix = "/api/v1/tasks/" } }
    local cq = cqueues.new()
    local ticks, handle, during = 0, nil, nil
    cq:wrap(function()
      handle = assert(tasks.trigger("hello", nil, o()))
      during = ticks
    end)
    cq:wrap(function()
      while not handle do
        ticks = ticks + 1
        cqueues.sleep(0.01)
      end
    end)
    assert(cq:loop())
    assert.matches("^run_", handle.id)
    assert.is_true(during > 0, "the other coroutine ran while the trigger waited")
  end)
end)
