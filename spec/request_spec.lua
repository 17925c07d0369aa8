-- trigger.transport.request and the transport contract's failures (trigger.transport.failure), on the
-- curl transport against the local server: a request that gets no HTTP answer gives a failure
-- value of its own (kind, a machine-readable code, permanent, message), never in the headers
-- position of an answer; whether it is permanent follows from its code; the error object made
-- of it keeps the code; a read given up for a fresh one is the "interrupted" failure.
local helper = require "spec.helper"
local request = require "trigger.transport.request"
local transport = require "trigger.transport"
local curl = require "trigger.transport.curl"
local errors = require "trigger.errors"

-- The private state of a reading coroutine, as a subscription's is (see trigger.transport.request).
local function owner_for(settings)
  return { transport = curl, inflight = {}, is_closed = function() return false end,
    settings = settings or { read_timeout = 10, connect_timeout = 5 } }
end

-- Run `fn` as a reading coroutine, driving the transport while it yields "wait"; `between`
-- (optional) is called with the count of waits so far after each. Gives fn's results as a list.
local function run_co(fn, between)
  local co = coroutine.create(fn)
  local waits = 0
  while true do
    local results = { coroutine.resume(co) }
    assert(results[1], results[2])
    if coroutine.status(co) == "dead" then return { results[2], results[3] } end
    waits = waits + 1
    if between then between(waits) end
    curl.step(0.05)
  end
end

local function closed_url()
  return "http://127.0.0.1:" .. helper.free_port() .. "/realtime/v1/runs"
end

describe("trigger.transport.failure", function()
  it("decides permanent by the code alone", function()
    for _, code in ipairs { "body_too_large", "bad_url", "bad_request", "cert_verify",
        "CURLE_URL_MALFORMAT", "CURLE_UNSUPPORTED_PROTOCOL", "CURLE_WRITE_ERROR",
        "CURLE_PEER_FAILED_VERIFICATION", "CURLE_SSL_CACERT_BADFILE", "CURLE_SSL_CERTPROBLEM" } do
      local f = transport.failure(code, "whatever the words")
      assert.same({ kind = "network", code = code, permanent = true,
        message = "whatever the words" }, f)
    end
    for _, code in ipairs { "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET", "EOF", "interrupted",
        "CURLE_COULDNT_CONNECT", "CURLE_OPERATION_TIMEDOUT", "CURLE_RECV_ERROR", "bad_response" } do
      -- words that once made a failure permanent do not: only the code counts
      local f = transport.failure(code, "certificate max_body")
      assert.is_false(f.permanent, code)
      assert.equal(code, f.code)
    end
  end)

  it("names CURLcodes once", function()
    assert.equal("CURLE_COULDNT_CONNECT", curl.code_name(7))
    assert.equal("CURLE_OPERATION_TIMEDOUT", curl.code_name(28))
    assert.equal("CURLE_PEER_FAILED_VERIFICATION", curl.code_name(60))
    assert.equal("CURLE_9999", curl.code_name(9999))
  end)

  it("makes the interrupted read's failure, told apart by its code", function()
    local f = transport.interrupted()
    assert.same({ kind = "network", code = "interrupted", permanent = false,
      message = "asked again afresh" }, f)
    assert.is_true(transport.is_interrupted(f))
    assert.is_false(transport.is_interrupted(transport.failure("ECONNRESET", "interrupted")))
    assert.is_false(transport.is_interrupted(nil))
    assert.is_false(transport.is_interrupted({ kind = "interrupted" })) -- no code: not it
  end)
end)

describe("trigger.transport.request on the curl transport", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 3000 } end)
  teardown(function() srv:stop() end)

  local function api(path)
    return { url = srv.base_url .. path, headers = { "Authorization: Bearer " .. srv.secret_key,
      "x-trigger-electric-version: 1.0.0-beta.1" }, timeout = 10, connect_timeout = 5 }
  end

  it("answers with status, headers and body; an HTTP error status is an answer, not a failure",
    function()
    local status, headers, body = request.perform(curl, api("/realtime/v1/runs?tags=x&offset=-1"))
    assert.equal(200, status)
    assert.is_table(headers)
    assert.is_string(headers["electric-handle"])
    assert.is_string(body)
    local bad = api("/realtime/v1/runs?tags=x&offset=-1")
    bad.headers[1] = "Authorization: Bearer tr_dev_wrong"
    status, headers = request.perform(curl, bad)
    assert.equal(401, status)
    assert.is_table(headers)
    assert.is_nil(headers.code)
  end)

  it("gives a refused connection as a transient failure named CURLE_COULDNT_CONNECT", function()
    local status, failure, extra = request.perform(curl, { url = closed_url(), timeout = 5,
      connect_timeout = 5 })
    assert.is_nil(status)
    assert.is_nil(extra)
    assert.equal("network", failure.kind)
    assert.equal("CURLE_COULDNT_CONNECT", failure.code)
    assert.is_false(failure.permanent)
    assert.is_string(failure.message)
    -- the error object of it: the same words, the code kept, not fatal
    local err = request.failure_error(failure, "GET " .. closed_url())
    assert.is_true(errors.is(err, "network"))
    assert.equal("CURLE_COULDNT_CONNECT", err.code)
    assert.equal(failure.message, err.message)
    assert.is_nil(err.fatal)
    assert.is_nil(err.status)
  end)

  it("gives a request that outlives its timeout as a transient CURLE_OPERATION_TIMEDOUT", function()
    -- a live request the server holds (hold_ms = 3000) past a timeout of 0.3 s
    local status, headers = request.perform(curl, api("/realtime/v1/runs?tags=held&offset=-1"))
    assert.equal(200, status)
    local live = api(("/realtime/v1/runs?tags=held&handle=%s&offset=%s&live=true"):format(
      headers["electric-handle"], headers["electric-offset"]))
    live.timeout = 0.3
    local st, failure = request.perform(curl, live)
    assert.is_nil(st)
    assert.equal("CURLE_OPERATION_TIMEDOUT", failure.code)
    assert.is_false(failure.permanent)
  end)

  it("gives a body over max_body and a URL it cannot follow as permanent failures", function()
    local big = api("/realtime/v1/runs?tags=x&offset=-1")
    srv:create_run { tags = { "x" }, payload = ('{"pad":"%s"}'):format(("p"):rep(2000)) }
    big.max_body = 100
    local status, failure = request.perform(curl, big)
    assert.is_nil(status)
    assert.equal("CURLE_WRITE_ERROR", failure.code)
    assert.is_true(failure.permanent)
    local err = request.failure_error(failure, "GET …")
    assert.is_true(err.fatal)
    assert.equal("CURLE_WRITE_ERROR", err.code)

    status, failure = request.perform(curl, { url = "ftp://127.0.0.1/x", timeout = 5 })
    assert.is_nil(status)
    assert.equal("CURLE_UNSUPPORTED_PROTOCOL", failure.code)
    assert.is_true(failure.permanent)
  end)

  it("keeps a user transport's failure without a code: its own permanent, kind network", function()
    local err = request.failure_error({ kind = "network", permanent = true, message = "mine" }, "GET x")
    assert.is_true(err.fatal)
    assert.is_nil(err.code)
    err = request.failure_error("a string", "GET x")
    assert.is_nil(err.fatal)
    assert.equal("a string", err.message)
    -- a code the library uses inside (interrupted) never makes an error of an unknown kind
    err = request.failure_error({ kind = "interrupted", code = "interrupted", permanent = false,
      message = "asked again afresh" }, "GET x")
    assert.equal("network", err.kind)
    assert.equal("interrupted", err.code)
  end)

  it("reads a body as it comes with the one body reader: the same bytes as the whole answer",
    function()
    for _ = 1, 4 do
      srv:create_run { tags = { "body" }, payload = ('{"pad":"%s"}'):format(("b"):rep(3000)) }
    end
    local req = api("/realtime/v1/runs?tags=body&offset=-1")
    local status, _, whole = request.perform(curl, req)
    assert.equal(200, status)
    local owner = owner_for()
    local res = run_co(function()
      local reader = assert(request.open_body(owner, request.begin(owner,
        api("/realtime/v1/runs?tags=body&offset=-1")), nil, { take = 1000 }))
      local st, headers = reader.head()
      assert.is_table(headers)
      local pieces = {}
      while true do
        local bytes, failure = reader.read()
        assert.is_nil(failure)
        if not bytes then break end
        pieces[#pieces + 1] = bytes
      end
      assert.same({ nil }, { reader.read() }) -- the end, again
      reader.close() -- idempotent
      return st, table.concat(pieces)
    end)
    assert.equal(200, res[1])
    assert.equal(whole, res[2])
    assert.is_nil(next(owner.inflight))
  end)

  it("gives a refused connection to the body reader's head as the failure value", function()
    local owner = owner_for()
    local res = run_co(function()
      local reader = assert(request.open_body(owner, request.begin(owner,
        { url = closed_url() }), nil))
      return reader.head()
    end)
    assert.is_nil(res[1])
    assert.equal("CURLE_COULDNT_CONNECT", res[2].code)
    assert.is_false(res[2].permanent)
    assert.is_nil(next(owner.inflight))
  end)

  it("gives up a read in flight when a reader asks afresh: the interrupted failure, aborted",
    function()
    local status, headers = request.perform(curl, api("/realtime/v1/runs?tags=afresh&offset=-1"))
    assert.equal(200, status)
    local owner = owner_for()
    local url = ("/realtime/v1/runs?tags=afresh&handle=%s&offset=%s&live=true"):format(
      headers["electric-handle"], headers["electric-offset"])
    local begun
    local res = run_co(function()
      local p = request.begin(owner, api(url))
      begun = p.handle ~= nil and next(owner.inflight) ~= nil
      return request.await(owner, p)
    end, function(waits)
      -- the live request waits on the server's hold; a reader asks again meanwhile
      if waits == 3 then owner.interrupt = true end
    end)
    assert.is_true(begun)
    assert.is_nil(res[1])
    local failure = res[2]
    assert.is_true(transport.is_interrupted(failure))
    assert.equal("network", failure.kind)
    assert.is_false(failure.permanent)
    assert.is_nil(owner.interrupt) -- taken
    assert.is_nil(next(owner.inflight)) -- the request was aborted
    assert.is_nil(owner.awaiting)
  end)
end)
