-- Public access tokens: unit checks of the JWT and round trips against the local server.
local helper = require "spec.helper"
local trigger = require "trigger"
local auth = require "trigger.auth"
local core = require "trigger.core"
local json = require "trigger.json"

local srv

local function decode_part(part)
  return json.decode(core.b64url_decode(part))
end

-- An HMAC computed by the openssl command, independent of our C code.
local function openssl_hs256_b64url(key, msg)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(msg)
  f:close()
  local p = assert(io.popen(string.format(
    "openssl dgst -sha256 -mac HMAC -macopt key:%s -binary < %s | base64 -w0", key, tmp)))
  local b64 = p:read("a")
  p:close()
  os.remove(tmp)
  return (b64:gsub("+", "-"):gsub("/", "_"):gsub("=", ""))
end

local function mint(opts)
  opts.access_token = opts.access_token or srv.secret_key
  opts.base_url = opts.base_url or srv.base_url
  return auth.create_public_token(opts)
end

local function first_run(tag, token)
  local sub = trigger.runs.subscribe_to_tag(tag, { access_token = token, base_url = srv.base_url })
  local ok, run, why = pcall(sub.next, sub, 10)
  sub:close()
  if not ok then return nil, run end
  return run, why
end

describe("trigger.auth", function()
  setup(function() srv = helper.start_server { hold_ms = 1000 } end)
  teardown(function() srv:stop() end)
  before_each(function() auth.clear_cache() end)

  it("signs HS256 tokens that an independent HMAC verifies", function()
    local token = assert(mint { scopes = { read = { tags = { "user:1234" } } } })
    local h, c, sig = token:match("^([%w%-_]+)%.([%w%-_]+)%.([%w%-_]+)$")
    assert.is_truthy(h, "three base64url parts without padding")
    assert.are.same({ alg = "HS256" }, decode_part(h))
    assert.are.equal(openssl_hs256_b64url(srv.secret_key, h .. "." .. c), sig)
    local claims = decode_part(c)
    assert.are.equal(srv.environment_id, claims.sub)
    assert.is_true(claims.pub)
    assert.are.equal("https://id.trigger.dev", claims.iss)
    assert.are.equal("https://api.trigger.dev", claims.aud)
    assert.are.same({ "read:tags:user:1234" }, claims.scopes)
    assert.is_true(math.abs(claims.exp - claims.iat - 900) <= 1, "15 minutes by default")
    assert.is_nil(claims.realtime)
  end)

  it("flattens every scope kind", function()
    local token = assert(mint { scopes = { read = { tags = { "a", "b" }, runs = true,
      tasks = { "t1" }, batch = "batch_1" } }, realtime = { skip_columns = { "payload" } },
      expiration_time = "2h" })
    local claims = decode_part(token:match("%.([^.]+)%."))
    assert.are.same({ "read:batch:batch_1", "read:runs", "read:tags:a", "read:tags:b",
      "read:tasks:t1" }, claims.scopes)
    assert.are.same({ skipColumns = { "payload" } }, claims.realtime)
    assert.is_true(math.abs(claims.exp - claims.iat - 7200) <= 1)
    assert.are.same({ "read:runs:run_1", "read:runs:run_2" },
      auth.flatten_scopes { read = { runs = { "run_1", "run_2" } } })
  end)

  it("takes an absolute expiration in seconds since the epoch", function()
    local at = os.time() + 600
    local token = assert(mint { scopes = { read = { runs = true } }, expiration_time = at })
    assert.are.equal(at, decode_part(token:match("%.([^.]+)%.")).exp)
  end)

  it("asks the server for the claims once per key", function()
    local function claims_requests()
      local n = 0
      for _, e in ipairs(srv:stats().log) do
        if e.path == "/api/v1/auth/jwt/claims" then n = n + 1 end
      end
      return n
    end
    local before = claims_requests()
    assert(mint { scopes = { read = { runs = true } } })
    assert(mint { scopes = { read = { runs = true } } })
    assert.are.equal(before + 1, claims_requests())
  end)

  it("reads the claims' HTTP statuses as subscriptions do (one table: the shape core's)", function()
    -- 400 is a bad request and 408 a transient network failure, as for shape requests; the
    -- claims call once had its own table (both were "protocol" there)
    for status, kind in pairs { [400] = "bad_request", [408] = "network", [401] = "auth",
                                [403] = "forbidden", [429] = "rate_limited", [503] = "network" } do
      trigger.auth.clear_cache()
      srv:fault { match = { path_prefix = "/api/v1/auth/jwt/claims" }, kind = "status",
        status = status, count = 1 }
      local token, err = mint { scopes = { read = { runs = true } } }
      assert.is_nil(token)
      assert.are.equal(kind, err.kind, "HTTP " .. status)
      assert.are.equal(status, err.status)
      assert.is_nil(tostring(err):find(srv.secret_key, 1, true))
    end
  end)

  it("refuses what it cannot sign", function()
    local token = assert(mint { scopes = { read = { runs = true } } })
    local none, err = mint { access_token = token, scopes = { read = { runs = true } } }
    assert.is_nil(none)
    assert.are.equal("auth", err.kind)
    assert.matches("secret key", err.message)
    assert.is_nil(tostring(err):find(token, 1, true))
    none, err = mint { scopes = { admin = { runs = true } } }
    assert.is_nil(none)
    assert.are.equal("bad_request", err.kind)
    assert.matches("unknown scope kind 'admin'", err.message)
    none, err = mint { scopes = { read = { files = true } } }
    assert.is_nil(none)
    assert.matches("unknown scope 'read.files'", err.message)
    none, err = mint { scopes = { read = { runs = true } }, expiration_time = "soon" }
    assert.is_nil(none)
    assert.matches("not a duration", err.message)
    none, err = mint { scopes = { read = {} } }
    assert.is_nil(none)
    assert.matches("grant nothing", err.message)
    none, err = mint { access_token = "tr_dev_unknown", scopes = { read = { runs = true } } }
    assert.is_nil(none)
    assert.are.equal("auth", err.kind)
  end)

  it("reads runs with a token scoped to their tag", function()
    local tag = "user:auth-" .. os.time()
    local id = srv:create_run { runTags = { tag } }
    local token = assert(mint { scopes = { read = { tags = { tag } } } })
    local run = assert(first_run(tag, token))
    assert.are.equal(id, run.id)
  end)

  it("gets 403 forbidden for a tag outside the token's scopes", function()
    local token = assert(mint { scopes = { read = { tags = { "user:someone-else" } } } })
    local run, err = first_run("user:not-mine", token)
    assert.is_nil(run)
    assert.are.equal("forbidden", err.kind)
    assert.are.equal(403, err.status)
    assert.is_nil(tostring(err):find(token, 1, true))
  end)

  it("gets 401 once the token has expired", function()
    local token = assert(mint { scopes = { read = { runs = true } }, expiration_time = os.time() - 5 })
    local run, err = first_run("user:any", token)
    assert.is_nil(run)
    assert.are.equal("auth", err.kind)
    assert.are.equal(401, err.status)
  end)

  it("works for one run and for a batch", function()
    local id = srv:create_run { runTags = { "x" }, batchId = "batch_auth1", status = "EXECUTING" }
    local token = assert(mint { scopes = { read = { runs = { id }, batch = { "batch_auth1" } } } })
    local sub = trigger.runs.subscribe_to_run(id, { access_token = token, base_url = srv.base_url })
    assert.are.equal(id, sub:next(10).id)
    sub:close()
    sub = trigger.runs.subscribe_to_batch("batch_auth1", { access_token = token,
      base_url = srv.base_url })
    assert.are.equal(id, sub:next(10).id)
    sub:close()
  end)
end)
