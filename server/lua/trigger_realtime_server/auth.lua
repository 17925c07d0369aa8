-- Who is asking, and may they see this?
--
-- A secret key grants everything. A public access token is a JWT (HS256 with the UTF-8 bytes of
-- the secret key) whose claims must say pub = true, sub = our environment id,
-- iss = https://id.trigger.dev, aud = https://api.trigger.dev, and an exp still in the future.
-- The HMAC comes from luaossl on purpose: the client library signs tokens with its own C code,
-- and an independent implementation here is what catches a bug there.
local hmac = require "openssl.hmac"
local json = require "trigger_realtime_server.json"
local util = require "trigger_realtime_server.util"

local auth = {}

local ISSUER = "https://id.trigger.dev"
local AUDIENCE = "https://api.trigger.dev"

auth.FORBIDDEN = { error = "Unauthorized", code = "unauthorized", param = "access_token",
                   type = "authorization" }

local function hs256(key, data)
  local h = hmac.new(key, "sha256")
  return h:final(data)
end

-- Compare without an early exit, like a real server would.
local function same_bytes(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = diff | (a:byte(i) ~ b:byte(i)) end
  return diff == 0
end

local function decode_part(part)
  local raw = util.b64url_decode(part)
  if not raw then return nil end
  local v = json.decode(raw)
  if type(v) ~= "table" then return nil end
  return v
end

local INVALID = "Invalid Public Access Token"

-- -> claims, or nil, message, why ("invalid": not a token of ours, bad signature, expired;
-- "environment": well signed, but its `sub` is not our environment)
local function verify_jwt(token, cfg, now_s)
  local h64, p64, s64 = token:match("^([%w%-_]+)%.([%w%-_]+)%.([%w%-_]*)$")
  if not h64 then return nil, INVALID, "invalid" end
  local header, claims, sig = decode_part(h64), decode_part(p64), util.b64url_decode(s64)
  if not header or not claims or not sig then return nil, INVALID, "invalid" end
  if header.alg ~= "HS256" then return nil, INVALID .. " (unsupported alg)", "invalid" end
  if not same_bytes(hs256(cfg.secret_key, h64 .. "." .. p64), sig) then
    return nil, INVALID .. " (signature mismatch)", "invalid"
  end
  if claims.pub ~= true then return nil, INVALID .. " (not a public token)", "invalid" end
  if claims.sub ~= cfg.environment_id then
    return nil, INVALID .. " (unknown environment)", "environment"
  end
  if claims.iss ~= ISSUER then return nil, INVALID .. " (wrong issuer)", "invalid" end
  local aud = claims.aud
  if type(aud) == "table" then aud = aud[1] end
  if aud ~= AUDIENCE then return nil, INVALID .. " (wrong audience)", "invalid" end
  if type(claims.exp) ~= "number" then return nil, INVALID .. " (no expiry)", "invalid" end
  if claims.exp <= now_s then return nil, "Public Access Token has expired", "invalid" end
  return claims
end

-- An HS256 JWT of `claims` (a table; json.ordered keeps its key order) signed with `key`, as the
-- real server signs the tokens it hands out (x-trigger-jwt).
function auth.sign_jwt(claims, key)
  local header = util.b64url_encode('{"alg":"HS256","typ":"JWT"}')
  local body = util.b64url_encode(json.encode(claims))
  return header .. "." .. body .. "." .. util.b64url_encode(hs256(key, header .. "." .. body))
end

auth.ISSUER, auth.AUDIENCE = ISSUER, AUDIENCE

local function scope_set(claims)
  local set = {}
  if type(claims.scopes) == "table" then
    for _, s in ipairs(claims.scopes) do
      if type(s) == "string" then set[s] = true end
    end
  end
  return set
end

local function token_skip_columns(claims)
  local list = {}
  local rt = claims.realtime
  if type(rt) == "table" and type(rt.skipColumns) == "table" then
    for _, c in ipairs(rt.skipColumns) do
      if type(c) == "string" then list[#list + 1] = c end
    end
  end
  return list
end

-- headers: lower-cased request headers; cfg: { secret_key, environment_id, now_ms }.
-- -> principal { kind = "secret" } or { kind = "public", scopes = set, skip_columns = list },
--    or nil, message (a 401).
function auth.authenticate(headers, cfg)
  local value = headers["authorization"]
  local token = value and value:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return nil, "Invalid or Missing API key" end
  if token == cfg.secret_key then return { kind = "secret" } end
  if token:match("^tr_") then return nil, "Invalid API Key" end
  local claims, err = verify_jwt(token, cfg, cfg.now_ms() / 1000)
  if not claims then return nil, err end
  return { kind = "public", scopes = scope_set(claims), skip_columns = token_skip_columns(claims) }
end

-- The management API's pipeline (management-api.md §1.3): the same credentials, its own words.
-- -> principal, or nil, the 401 message
function auth.authenticate_api(headers, cfg)
  local value = headers["authorization"]
  local token = value and value:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return nil, "Invalid API key" end
  if token == cfg.secret_key then
    if token:match("^tr_preview_") then
      local branch = headers["x-trigger-branch"]
      if not branch or branch == "" then
        return nil, "x-trigger-branch header required for preview env"
      end
    end
    return { kind = "secret" }
  end
  if token:match("^tr_") then return nil, "Invalid API key" end
  local claims, _, why = verify_jwt(token, cfg, cfg.now_ms() / 1000)
  if not claims then
    return nil, why == "environment" and "Invalid Public Access Token"
      or "Public Access Token is invalid"
  end
  return { kind = "public", scopes = scope_set(claims), realtime = claims.realtime, token = token }
end

-- Does a public principal hold one of `scopes` (a list of "action:type[:id]")? Wildcards as
-- Trigger.dev's rbac grammar has them: `admin`, `<action>:all`, `*:<type>`, and the type alone
-- covering every id. A secret key holds everything.
function auth.has_scope(principal, scopes)
  if principal.kind == "secret" then return true end
  local s = principal.scopes
  if s["admin"] then return true end
  for _, want in ipairs(scopes) do
    if s[want] then return true end
    local action, kind, id = want:match("^([^:]+):([^:]+):?(.*)$")
    if action then
      if s[action .. ":all"] or s["*:" .. kind] or s["*:all"] then return true end
      if id ~= "" and (s[action .. ":" .. kind] or s["*:" .. kind .. ":" .. id]) then return true end
    end
  end
  return false
end

-- Does `principal` reach `resource`? resource is one of
--   { kind = "tags", tags = {...} }
--   { kind = "run", id = friendlyId, task = taskIdentifier, tags = {...}, batch = batchId|nil }
--   { kind = "batch", id = batchId }
function auth.allows(principal, resource)
  if principal.kind == "secret" then return true end
  local s = principal.scopes
  if s["read:all"] or s["admin"] then return true end
  local function any_tag(tags)
    for _, t in ipairs(tags or {}) do
      if s["read:tags:" .. t] then return true end
    end
    return false
  end
  if resource.kind == "tags" then
    return s["read:runs"] or s["read:tags"] or any_tag(resource.tags) or false
  elseif resource.kind == "run" then
    return s["read:runs"] or s["read:runs:" .. resource.id] or s["read:tasks:" .. resource.task]
      or any_tag(resource.tags) or (resource.batch and s["read:batch:" .. resource.batch])
      or false
  elseif resource.kind == "batch" then
    return s["read:batch"] or s["read:batch:" .. resource.id] or s["read:runs"] or false
  end
  return false
end

return auth
