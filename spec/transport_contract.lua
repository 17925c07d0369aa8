-- The transport contract (lua/trigger/transport/init.lua) as one suite of cases, plain Lua with
-- no test framework: busted runs it against trigger.transport.curl
-- (spec/transport_contract_spec.lua), nginx against trigger.transport.ngx (the location
-- /test/contract of spec/openresty/test-locations.conf, run by `make test-openresty`).
--
--   local contract = require "spec.transport_contract"   -- or dofile(".../transport_contract.lua")
--   for _, case in ipairs(contract.cases) do local ok, err = pcall(case.run, env) ... end
--   contract.run(env, function(name, ok, err) ... end)  -- the same, reporting each case
--
-- `env`:
--   transport      the module under test
--   base_url       the local realtime server (server/bin/trigger-realtime-server), http://…
--   secret_key     its secret key
--   closed_port    a loopback port nothing listens on
--   untrusted_url  an https:// base URL whose certificate does not verify for this transport
--   trigger        (optional) require "trigger", for the subscription cases
--
-- Every case checks the answer's shape as well: an answer is an integer status, a table of
-- lower-case header names and a string body; a failure is {kind = "network", permanent =
-- boolean, message = string} that never shows the token. Each case fails if its verdict
-- (answer, transient failure, permanent failure) were another.
local json = require "trigger.json"

local M = {}

local function fail(fmt, ...)
  error(string.format(fmt, ...), 2)
end

local function describe(v)
  if type(v) ~= "table" then return tostring(v) end
  local ok, s = pcall(json.encode, v)
  return ok and s or tostring(v)
end

-- One request through the transport, by whichever half of the contract it has.
local function call(env, req)
  local t = env.transport
  if t.background then
    local h, err = t.start(req)
    if not h then return nil, err end
    local ok, status, headers, body = pcall(function()
      while not h:done() do t.step(0.05) end
      return t.result(h)
    end)
    h:close()
    if not ok then error(status, 0) end
    return status, headers, body
  end
  return t.perform(req)
end
M.call = call

local function auth(env)
  return { "Authorization: Bearer " .. env.secret_key }
end

-- The answer must be one (never a failure); its parts as the contract says.
local function answer(env, req, what)
  local status, headers, body = call(env, req)
  if status == nil then fail("%s: a failure instead of an answer: %s", what, describe(headers)) end
  if math.type and math.type(status) ~= "integer" or status ~= math.floor(status) then
    fail("%s: status %s is not an integer", what, tostring(status))
  end
  if type(headers) ~= "table" then fail("%s: headers are a %s", what, type(headers)) end
  for name, value in pairs(headers) do
    if type(name) ~= "string" or name ~= name:lower() then
      fail("%s: header name %s is not in lower case", what, tostring(name))
    end
    if type(value) ~= "string" then fail("%s: header %s is a %s", what, name, type(value)) end
  end
  if type(body) ~= "string" then fail("%s: body is a %s", what, type(body)) end
  return status, headers, body
end

-- The request must fail, permanently or not; the failure's shape as the contract says.
local function failure(env, req, permanent, what)
  local status, f, body = call(env, req)
  if status ~= nil then
    fail("%s: an answer (%s, %d bytes) instead of a failure", what, tostring(status),
      type(body) == "string" and #body or -1)
  end
  if type(f) ~= "table" then fail("%s: the failure is a %s, not a table: %s", what, type(f), tostring(f)) end
  if f.kind ~= "network" then fail("%s: failure kind %s", what, tostring(f.kind)) end
  if type(f.message) ~= "string" or f.message == "" then fail("%s: no failure message", what) end
  if type(f.permanent) ~= "boolean" then
    fail("%s: permanent is a %s (%s)", what, type(f.permanent), f.message)
  end
  if env.secret_key and f.message:find(env.secret_key, 1, true) then
    fail("%s: the failure message shows the token", what)
  end
  if f.permanent ~= permanent then
    fail("%s: classified %s, should be %s: %s", what, f.permanent and "permanent" or "transient",
      permanent and "permanent" or "transient", f.message)
  end
  return f
end

local function admin(env, method, path, doc)
  local status, _, body = answer(env, { url = env.base_url .. path, method = method,
    headers = { "Content-Type: application/json" }, body = doc and json.encode(doc) or nil,
    timeout = 10 }, method .. " " .. path)
  if status ~= 200 and status ~= 201 then fail("%s %s: status %d: %s", method, path, status, body) end
  return json.decode(body)
end

local function fault(env, doc)
  admin(env, "POST", "/_emulator/faults", doc)
end

local unique = 0
local function tag(env)
  unique = unique + 1
  return string.format("contract:%s-%d-%d", env.name or "t", os.time(), unique)
end

-- A shape request for the runs of a tag (the realtime server's tag feed, first page).
local function shape_url(env, t)
  return env.base_url .. "/realtime/v1/runs?tags=" .. t:gsub(":", "%%3A") .. "&offset=-1&log=full"
end

local cases = {}
M.cases = cases
local function case(name, run)
  cases[#cases + 1] = { name = name, run = run }
end

case("declares background and the functions that go with it", function(env)
  local t = env.transport
  if type(t.background) ~= "boolean" then fail("background is a %s", type(t.background)) end
  local needed = t.background and { "start", "result", "step", "pollfd", "timeout", "steps" }
    or { "perform" }
  for _, fn in ipairs(needed) do
    if type(t[fn]) ~= "function" then fail("background = %s but no %s()", tostring(t.background), fn) end
  end
end)

case("200: status, lower-case headers and the body", function(env)
  local t = tag(env)
  local run = admin(env, "POST", "/_emulator/runs", { runTags = { t }, taskIdentifier = "contract" })
  local status, headers, body = answer(env, { url = shape_url(env, t), headers = auth(env),
    timeout = 10 }, "shape request")
  if status ~= 200 then fail("status %d: %s", status, body) end
  if not (headers["content-type"] or ""):find("application/json", 1, true) then
    fail("content-type %s", tostring(headers["content-type"]))
  end
  if not headers["electric-handle"] and not headers["electric-shape-id"] then
    fail("no electric handle header among %s", describe(headers))
  end
  if headers["content-length"] and tonumber(headers["content-length"]) ~= #body then
    fail("content-length %s, body of %d bytes", headers["content-length"], #body)
  end
  local doc = json.decode(body)
  if type(doc) ~= "table" or not body:find(run.id, 1, true) or not body:find('"contract"', 1, true) then
    fail("the body does not hold run %s: %s", run.id, body:sub(1, 200))
  end
end)

case("4xx is an answer, not a failure (401 without a key)", function(env)
  local status, _, body = answer(env, { url = shape_url(env, tag(env)), timeout = 10 }, "no key")
  if status ~= 401 then fail("status %d, 401 expected", status) end
  if not body:find("API key", 1, true) then fail("body %s", body) end
end)

case("5xx is an answer, not a failure (503 from the server)", function(env)
  fault(env, { kind = "status", status = 503, count = 1, match = { path_prefix = "/realtime/v1/runs" } })
  local status = answer(env, { url = shape_url(env, tag(env)), headers = auth(env), timeout = 10 }, "503")
  if status ~= 503 then fail("status %d, 503 expected", status) end
end)

case("connection refused is a transient network failure", function(env)
  failure(env, { url = "http://127.0.0.1:" .. env.closed_port .. "/", timeout = 5,
    connect_timeout = 2 }, false, "connection refused")
end)

case("a certificate that does not verify is permanent", function(env)
  -- Room for the handshake: under valgrind its crypto takes seconds, and a connect timeout
  -- (transient) hit before the certificate is checked says nothing about its classification.
  local f = failure(env, { url = env.untrusted_url .. "/", timeout = 30, connect_timeout = 25,
    headers = auth(env) }, true, "untrusted certificate")
  if not f.message:lower():find("certificate", 1, true) and not f.message:find("SSL", 1, true)
      and not f.message:find("TLS", 1, true) then
    fail("the message does not say what failed: %s", f.message)
  end
end)

case("a body over max_body is permanent", function(env)
  local t = tag(env)
  admin(env, "POST", "/_emulator/runs", { runTags = { t } })
  failure(env, { url = shape_url(env, t), headers = auth(env), timeout = 10, max_body = 64 },
    true, "body over max_body")
  -- the same request under a large enough max_body is an answer
  local status = answer(env, { url = shape_url(env, t), headers = auth(env), timeout = 10,
    max_body = 1024 * 1024 }, "body under max_body")
  if status ~= 200 then fail("status %d under max_body", status) end
end)

case("a URL that is not one is permanent", function(env)
  for _, url in ipairs { "not a url", "ftp://127.0.0.1/x", "http://", "http://127.0.0.1:99999/" } do
    failure(env, { url = url, timeout = 2, connect_timeout = 1 }, true, "URL " .. url)
  end
end)

case("a timeout is transient", function(env)
  fault(env, { kind = "delay", delay_ms = 3000, count = 1,
    match = { path_prefix = "/realtime/v1/runs" } })
  local f = failure(env, { url = shape_url(env, tag(env)), headers = auth(env), timeout = 0.5 },
    false, "timeout")
  if not f.message:lower():find("time", 1, true) then
    fail("the message does not say timeout: %s", f.message)
  end
end)

case("a body cut short is transient (truncate and reset mid-body)", function(env)
  for _, kind in ipairs { "truncate", "reset_mid_body" } do
    local t = tag(env)
    admin(env, "POST", "/_emulator/runs", { runTags = { t } })
    fault(env, { kind = kind, count = 1, match = { path_prefix = "/realtime/v1/runs" } })
    failure(env, { url = shape_url(env, t), headers = auth(env), timeout = 10 }, false, kind)
  end
end)

-- Through the subscription API: a permanent failure ends the subscription with a final error at
-- once (retry_base = 0: a wrong classification would retry as fast as it can, for ever).
local function ends_at_once(env, what, opts, t)
  local trigger = env.trigger or require "trigger"
  local retries = 0
  opts.transport = env.transport
  opts.retry_base = 0
  opts.on_error = function() retries = retries + 1 end
  local sub = trigger.runs.subscribe_to_tag(t or tag(env), opts)
  local ok, run, why = pcall(sub.next, sub, 3)
  sub:close()
  if ok then
    fail("%s: the subscription went on (next gave %s, %s) after %d retries", what,
      describe(run), tostring(why), retries)
  end
  local err = run
  if type(err) ~= "table" or not err.fatal or err.kind ~= "network" then
    fail("%s: not a final network error: %s", what, describe(err))
  end
  if retries ~= 0 then fail("%s: retried %d times before the final error", what, retries) end
  if tostring(err):find(env.secret_key, 1, true) then fail("%s: the error shows the token", what) end
end

case("subscription: an untrusted certificate ends it with a final error, no retry", function(env)
  ends_at_once(env, "untrusted certificate", { base_url = env.untrusted_url,
    access_token = env.secret_key })
end)

case("subscription: a body over max_body ends it with a final error, no retry", function(env)
  local t = tag(env)
  admin(env, "POST", "/_emulator/runs", { runTags = { t } })
  ends_at_once(env, "max_body", { base_url = env.base_url, access_token = env.secret_key,
    max_body = 64 }, t)
end)

--- Run every case: report(name, ok, err) for each; returns passed, failed.
function M.run(env, report)
  local passed, failed = 0, 0
  for _, c in ipairs(cases) do
    local ok, err = pcall(c.run, env)
    if ok then passed = passed + 1 else failed = failed + 1 end
    report(c.name, ok, not ok and tostring(err) or nil)
  end
  return passed, failed
end

return M
