--- Public access tokens: short-lived JWTs a backend mints with its secret key so that
-- front ends (or other scripts) can read runs without the secret.
-- @module trigger.auth
local config = require "trigger.config"
local core = require "trigger.core"
local errors = require "trigger.errors"
local json = require "trigger.json"
local request = require "trigger.transport.request"

local M = {}

local ISSUER = "https://id.trigger.dev"
local AUDIENCE = "https://api.trigger.dev"
local DEFAULT_EXPIRY = 15 * 60

local UNIT_SECONDS = {
  s = 1, sec = 1, secs = 1, second = 1, seconds = 1,
  m = 60, min = 60, mins = 60, minute = 60, minutes = 60,
  h = 3600, hr = 3600, hrs = 3600, hour = 3600, hours = 3600,
  d = 86400, day = 86400, days = 86400,
  w = 604800, week = 604800, weeks = 604800,
  y = 31557600, yr = 31557600, yrs = 31557600, year = 31557600, years = 31557600,
}

--- The `exp` claim for an expiration time.
-- @param v nil (15 minutes), a duration string ("15m", "1h", "2d", "1 week"), or a number:
--   seconds since the epoch
-- @tparam number now seconds since the epoch
-- @treturn[1] integer exp
-- @treturn[2] nil
-- @treturn[2] string why not
-- @local
function M.expiry(v, now)
  if v == nil then return now + DEFAULT_EXPIRY end
  if type(v) == "number" then
    if v ~= v or v <= 0 or v == math.huge then return nil, "expiration_time must be positive" end
    return math.floor(v)
  end
  if type(v) ~= "string" then return nil, "expiration_time must be a string or a number" end
  local n, unit = v:match("^%s*(%d+%.?%d*)%s*(%a+)%s*$")
  local scale = unit and UNIT_SECONDS[unit:lower()]
  if not scale then
    return nil, "expiration_time " .. errors.quote(v) .. " is not a duration such as \"15m\", \"1h\", \"2d\""
  end
  return now + math.floor(tonumber(n) * scale + 0.5)
end

local SCOPE_KINDS = { read = true, write = true }
local SCOPE_RESOURCES = { runs = true, tasks = true, tags = true, batch = true }

--- Flatten `{read = {tags = {"a"}, runs = true}}` into `{"read:runs", "read:tags:a"}` (sorted).
-- @tparam table scopes
-- @treturn[1] {string,...} scopes
-- @treturn[2] nil
-- @treturn[2] string what is wrong
-- @local
function M.flatten_scopes(scopes)
  if type(scopes) ~= "table" then return nil, "scopes must be a table" end
  local out = {}
  for kind, resources in pairs(scopes) do
    if not SCOPE_KINDS[kind] then
      return nil, "unknown scope kind " .. errors.quote(kind) .. " (expected read or write)"
    end
    if type(resources) ~= "table" then return nil, "scopes." .. kind .. " must be a table" end
    for resource, which in pairs(resources) do
      if not SCOPE_RESOURCES[resource] then
        return nil, string.format("unknown scope %s (expected runs, tasks, tags or batch)",
          errors.quote(kind .. "." .. tostring(resource)))
      end
      local prefix = kind .. ":" .. resource
      if which == true then
        out[#out + 1] = prefix
      elseif type(which) == "string" and which ~= "" then
        out[#out + 1] = prefix .. ":" .. which
      elseif type(which) == "table" then
        for i, id in ipairs(which) do
          if type(id) ~= "string" or id == "" then
            return nil, string.format("scopes.%s.%s[%d] must be a non-empty string", kind,
              resource, i)
          end
          out[#out + 1] = prefix .. ":" .. id
        end
      elseif which ~= false then
        return nil, string.format("scopes.%s.%s must be true, an id or a list of ids", kind,
          resource)
      end
    end
  end
  if #out == 0 then return nil, "scopes grant nothing" end
  table.sort(out)
  return out
end

local claims_cache = {} -- base_url NUL secret → claims from the server

local function fetch_claims(settings)
  local cache_key = settings.base_url .. "\0" .. settings.access_token .. "\0"
    .. (settings.preview_branch or "")
  local cached = claims_cache[cache_key]
  if cached then return cached end
  local transport = settings.transport or require("trigger.transport").current()
  local url = settings.base_url .. "/api/v1/auth/jwt/claims"
  local where = "POST " .. url
  local json_headers = request.api_headers(settings)
  json_headers[#json_headers + 1] = "Content-Type: application/json"
  -- The library's one request path: yields to cqueues inside a cqueues coroutine.
  local status, headers, body = request.perform(transport, {
    url = url, method = "POST", body = "{}",
    headers = json_headers,
    timeout = settings.read_timeout, connect_timeout = settings.connect_timeout,
    ca_file = settings.ca_file, max_body = 1024 * 1024,
  })
  if not status then return nil, request.failure_error(headers, where) end
  if status ~= 200 then
    local err = request.status_error(status, body, where)
    err.message = "could not get the token claims: " .. err.message
    return nil, err
  end
  local doc = json.decode(body)
  if type(doc) ~= "table" or type(doc.sub) ~= "string" then
    return nil, errors.new("protocol", "the claims answer has no 'sub'",
      { status = status, request = where })
  end
  claims_cache[cache_key] = doc
  return doc
end

--- Sign claims into an HS256 JWT.
-- @tparam string secret the signing key
-- @tparam table claims
-- @treturn string the token
-- @local
function M.sign(secret, claims)
  local signing_input = core.b64url_encode(json.encode { alg = "HS256" }) .. "."
    .. core.b64url_encode(json.encode(claims))
  return signing_input .. "." .. core.b64url_encode(core.hs256(secret, signing_input))
end

local TOKEN_OPTIONS = { scopes = "table", expiration_time = "any", realtime = "table" }

--- Mint a public access token: a JWT (HS256) a front end or another script can subscribe
-- with, limited to the given scopes and expiring soon. It is signed here with the secret key;
-- the claims that name the environment are asked from the API once per key and `base_url`
-- (`POST /api/v1/auth/jwt/claims`) and cached.
-- @tparam table opts the options:
-- @tparam table opts.scopes what the token may do: `read` and/or `write`, each a table of
--   resources (`runs`, `tasks`, `tags`, `batch`) mapped to `true` (all of them), an id or a
--   list of ids (`false` grants nothing); e.g. `{read = {tags = {"user:1234"}, runs = true}}`
-- @param[opt="15m"] opts.expiration_time a duration (`"15m"`, `"1h"`, `"2d"`, `"1 week"`;
--   units s, m/min, h/hr, d, w/week, y/year and their plurals) from now, or a number: the
--   expiry in seconds since the epoch
-- @tparam[opt] table opts.realtime `{skip_columns = {"payload", …}}`: columns every
--   subscription made with this token leaves out
-- @tparam[opt] string opts.access_token the secret key (`tr_dev_…`, `tr_prod_…`) to sign
--   with; default as for `trigger.configure`
-- @param[opt] opts.... `base_url`, `ca_file`, `read_timeout`, `connect_timeout`, as for
--   `trigger.configure`
-- @treturn[1] string the token
-- @treturn[2] nil
-- @treturn[2] table an error object (`bad_request` for bad options, `auth` for a public token
--   used as the key, or the server's refusal)
-- @raise (a string) when `opts` is not a table, has an unknown option or an option of the
--   wrong type
-- @usage
-- local token = assert(trigger.auth.create_public_token {
--   scopes = { read = { tags = { "user:1234" } } },
--   expiration_time = "1h",
-- })
function M.create_public_token(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'create_public_token' (table expected)", 2)
  end
  config.check(opts, "create_public_token", TOKEN_OPTIONS)
  local settings, err = config.resolve(opts)
  if not settings then return nil, err end
  if not settings.access_token:match("^tr_%w+_") then
    return nil, errors.new("auth", "create_public_token needs a secret key (tr_dev_…, "
      .. "tr_prod_…) to sign with; a public access token cannot mint tokens")
  end
  local scopes, why = M.flatten_scopes(opts.scopes)
  if not scopes then return nil, errors.new("bad_request", why) end
  local now = os.time()
  local exp
  exp, why = M.expiry(opts.expiration_time, now)
  if not exp then return nil, errors.new("bad_request", why) end
  local server_claims
  server_claims, err = fetch_claims(settings)
  if not server_claims then return nil, err end
  local claims = {}
  for k, v in pairs(server_claims) do claims[k] = v end
  claims.pub = true
  claims.iss = ISSUER
  claims.aud = AUDIENCE
  claims.iat = now
  claims.exp = exp
  claims.scopes = scopes
  local rt = opts.realtime
  if rt and rt.skip_columns and #rt.skip_columns > 0 then
    claims.realtime = { skipColumns = rt.skip_columns }
  end
  return M.sign(settings.access_token, claims)
end

--- Forget the claims cached by `create_public_token` (for tests, and after a key or its
-- environment changed).
function M.clear_cache()
  claims_cache = {}
end

return M
