-- TLS verification, redirects and token hygiene.
local helper = require "spec.helper"
local trigger = require "trigger"
local curl_transport = require "trigger.transport.curl"

local sh = helper.sh

describe("TLS", function()
  local dir, port, pid

  setup(function()
    dir = helper.self_signed_cert()
    port = helper.free_port()
    local p = io.popen(string.format("openssl s_server -quiet -accept 127.0.0.1:%d -cert %s/cert.pem "
      .. "-key %s/key.pem -www >/dev/null 2>&1 & echo $!", port, dir, dir))
    pid = p:read("l")
    p:close()
    -- wait until it accepts
    for _ = 1, 100 do
      if sh(string.format("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d'", port)) then break end
      sh("sleep 0.05")
    end
  end)

  teardown(function()
    if pid then sh("kill " .. pid) end
    sh("rm -rf " .. dir)
  end)

  it("refuses a self-signed server by default, without retrying", function()
    local calls = 0
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = "tr_dev_x",
      base_url = "https://127.0.0.1:" .. port, on_error = function() calls = calls + 1 end })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("network", err.kind)
    assert.is_true(err.fatal)
    assert.matches("certificate", err.message)
    assert.are.equal(0, calls)
  end)

  it("accepts it with ca_file", function()
    local status = curl_transport.perform { url = "https://127.0.0.1:" .. port .. "/",
      ca_file = dir .. "/cert.pem", timeout = 10 }
    assert.are.equal(200, status)
  end)
end)

describe("credentials", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)

  it("does not follow redirects (the token stays with its host)", function()
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 302 }
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = srv.secret_key,
      base_url = srv.base_url })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("protocol", err.kind)
    assert.matches("redirect", err.message)
  end)

  it("never shows the token in errors, tostring or on_error", function()
    local token = "tr_dev_this_is_very_secret"
    local texts = {}
    srv:fault { match = { path_prefix = "/realtime/v1/runs" }, kind = "status", status = 503,
      count = 1 }
    local sub = trigger.runs.subscribe_to_tag("t", { access_token = token, base_url = srv.base_url,
      retry_base = 0.01, on_error = function(e) texts[#texts + 1] = tostring(e) end })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    texts[#texts + 1] = tostring(err)
    texts[#texts + 1] = tostring(sub)
    for _, t in ipairs(texts) do
      assert.is_nil(t:find("very_secret", 1, true), t)
    end
  end)
end)

describe("base_url with credentials", function()
  local srv
  setup(function() srv = helper.start_server {} end)
  teardown(function() srv:stop() end)

  it("is refused at the call, its password never printed (issue 28)", function()
    -- Printed in every error's `request` and every warning before; refused as the nginx
    -- transport does (the access token authenticates; a proxy's credentials go in its URL).
    local secret = "pa55_very_secret"
    local hostport = srv.base_url:match("^http://(.*)$")
    local urls = { "http://user:" .. secret .. "@" .. hostport, "https://" .. secret .. "@example.com/api",
      "HTTP://u:" .. secret .. "@" .. hostport .. "/", "ftp://u:" .. secret .. "@host" }
    for _, url in ipairs(urls) do
      local warned = {}
      local opts = { access_token = srv.secret_key, base_url = url,
        on_error = function(e) warned[#warned + 1] = tostring(e) end }
      local calls = {
        function() return trigger.runs.subscribe_to_run("run_1", opts) end,
        function() return trigger.streams.read("run_1", "default", opts) end,
        function()
          local token, err = trigger.auth.create_public_token { access_token = srv.secret_key,
            base_url = url, scopes = { read = { runs = true } } }
          if not token then error(err, 0) end
          return token
        end,
      }
      for _, call in ipairs(calls) do
        local ok, err = pcall(call)
        assert.is_false(ok, url)
        assert.is_true(trigger.errors.is(err, "bad_request"), tostring(err))
        assert.matches("base_url must not hold credentials", err.message, 1, true)
        assert.is_nil(tostring(err):find(secret, 1, true))
      end
      assert.are.same({}, warned)
    end
    assert.are.equal(0, #srv:stats().log) -- nothing was asked
    -- configure'd the same way: refused at the call too
    trigger.configure { base_url = urls[1] }
    local ok, err = pcall(trigger.runs.subscribe_to_run, "run_1", { access_token = srv.secret_key })
    require("trigger.config").reset()
    assert.is_false(ok)
    assert.is_nil(tostring(err):find(secret, 1, true))
    assert.matches("credentials", err.message, 1, true)
  end)
end)

describe("limits", function()
  local srv
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)

  it("refuses a body over max_body with a clear, final error", function()
    srv:create_run { runTags = { "big" }, payload = '"' .. string.rep("x", 5000) .. '"' }
    local sub = trigger.runs.subscribe_to_tag("big", { access_token = srv.secret_key,
      base_url = srv.base_url, max_body = 1000 })
    local ok, err = pcall(sub.next, sub, 10)
    assert.is_false(ok)
    assert.are.equal("network", err.kind)
    assert.is_true(err.fatal)
    assert.matches("larger than the 1000%-byte limit", err.message)
  end)

  it("refuses JSON nested deeper than the limit without crashing", function()
    local deep = string.rep("[", 200) .. string.rep("]", 200)
    local id = srv:create_run { payload = deep }
    local warnings = {}
    local sub = trigger.runs.subscribe_to_run(id, { access_token = srv.secret_key,
      base_url = srv.base_url, on_error = function(e) warnings[#warnings + 1] = e end })
    local run = sub:next(10)
    sub:close()
    assert.are.equal(deep, run.payload)
    assert.matches("nested too deep", warnings[1].message)
  end)
end)
