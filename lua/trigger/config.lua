--- Settings: what `trigger.configure` set, per-call options on top, environment defaults below.
-- @module trigger.config
local errors = require "trigger.errors"

local M = {}

local DEFAULT_BASE_URL = "https://api.trigger.dev"

--- Defaults of the tunable settings.
M.defaults = {
  read_timeout = 60,     -- seconds for one request; the server holds live requests ~20 s
  connect_timeout = 10,
  retry_base = 1,        -- first backoff ceiling in seconds, doubled per attempt
  retry_cap = 32,        -- the backoff ceiling never grows past this
  max_body = 256 * 1024 * 1024, -- bytes in one response body
}

local configured = {}

local KNOWN = {
  access_token = "string", base_url = "string", ca_file = "string", read_timeout = "number",
  connect_timeout = "number", retry_base = "number", retry_cap = "number",
  max_retries = "number", max_body = "number", on_error = "function", timeout = "number",
  transport = "table", share = "boolean", preview_branch = "string",
}

-- Numbers have a range too: an option that passes its type check but not this would only
-- fail later, far from the call (a negative read_timeout ended in an "internal error").
-- name → { test, what it must be }
local function positive(v) return v > 0 and v < math.huge end
local function non_negative(v) return v >= 0 and v < math.huge end
local function whole(v) return v >= 0 and v == math.floor(v) end -- math.huge: for ever
local RANGE = {
  read_timeout = { positive, "a positive number of seconds" },
  connect_timeout = { positive, "a positive number of seconds" },
  retry_base = { non_negative, "a non-negative number of seconds" },
  retry_cap = { non_negative, "a non-negative number of seconds" },
  max_retries = { whole, "a non-negative whole number" },
  max_body = { function(v) return v >= 1 and v < math.huge and v == math.floor(v) end,
    "a positive whole number of bytes" },
  timeout = { function(v) return v >= 0 end, "a non-negative number of seconds" },
}

-- Edit distance counting a swap of two neighbours as one edit (optimal string alignment), for
-- "did you mean" (option names are short).
local function distance(a, b)
  local d = {}
  for i = 0, #a do d[i] = { [0] = i } end
  for j = 1, #b do d[0][j] = j end
  for i = 1, #a do
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      local v = math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if i > 1 and j > 1 and a:byte(i) == b:byte(j - 1) and a:byte(i - 1) == b:byte(j) then
        v = math.min(v, d[i - 2][j - 2] + 1)
      end
      d[i][j] = v
    end
  end
  return d[#a][#b]
end

local function squash(name) return (name:lower():gsub("[_%-]", "")) end

--- The known option closest to a misspelt one (`createdAt` → `created_at`), or nil.
-- @tparam string name the unknown option
-- @tparam table ... tables whose keys are the known options
function M.suggest(name, ...)
  if type(name) ~= "string" then return nil end
  local best, best_d
  for i = 1, select("#", ...) do
    for known in pairs(select(i, ...) or {}) do
      local d = squash(name) == squash(known) and 0 or distance(name:lower(), known)
      if d <= math.max(1, math.min(3, math.floor(#known / 4))) and (not best_d or d < best_d
          or (d == best_d and known < best)) then
        best, best_d = known, d
      end
    end
  end
  return best
end

-- The TypeScript SDK's names for options (its config, `subscribeTo…`, `streams.read`,
-- `fetchStream`): a script ported from it gets the Lua name, or what to do instead. A name is
-- only suggested where the call knows it.
local SDK = {
  secretKey = "access_token", accessToken = "access_token", publicAccessToken = "access_token",
  baseURL = "base_url", baseUrl = "base_url", skipColumns = "skip_columns",
  createdAt = "created_at", stopOnCompletion = "stop_on_completion",
  timeoutInSeconds = "timeout_seconds", onError = "on_error",
  startIndex = "there is no start index: pass resume = stream:position() saved earlier, or "
    .. "from = \"latest\"",
  lastEventId = "pass resume = stream:position() saved earlier",
  signal = "call close() (or break out of the loop) to stop",
  onComplete = "the loop ends when the run is finished (subscribe_to_run)",
  onPart = "each chunk is an item of the loop",
  previewBranch = "not supported by this library",
  pollIntervalMs = "a subscription is pushed its changes: nothing to poll",
}

--- Raise the misuse error of an unknown option `k` of `where`: with the closest known option
-- ("did you mean"), or the Lua name or use of a TypeScript SDK option.
-- @tparam string where the public function's name
-- @param k the unknown option's name
-- @tparam table ... tables whose keys are the options `where` knows
-- @local
function M.unknown_option(where, k, ...)
  local sdk, hint = SDK[k], nil
  if type(sdk) == "string" then
    for i = 1, select("#", ...) do
      if (select(i, ...) or {})[sdk] then hint = sdk end
    end
    if not hint and not sdk:find("^[%l_]+$") then
      errors.bad_argument(where, nil, string.format("unknown option %s (the TypeScript SDK's): %s",
        errors.quote(k), sdk))
    end
  end
  hint = hint or M.suggest(k, ...)
  errors.bad_argument(where, nil, string.format("unknown option %s%s", errors.quote(k),
    hint and (": did you mean '" .. hint .. "'?") or ""))
end

-- Check options against KNOWN plus `extra_known`; `elsewhere` names options that exist but not
-- for this call (option → where it applies).
local function check(t, where, extra_known, elsewhere)
  for k, v in pairs(t) do
    local want = KNOWN[k] or (extra_known and extra_known[k])
    if not want then
      if elsewhere and elsewhere[k] then
        errors.bad_argument(where, nil, string.format("option '%s' applies to %s", k,
          elsewhere[k]))
      end
      M.unknown_option(where, k, KNOWN, extra_known)
    end
    if want ~= "any" and type(v) ~= want then
      errors.bad_argument(where, nil, string.format("option '%s' must be a %s, got %s", k, want,
        type(v)))
    end
    local range = RANGE[k]
    if range and KNOWN[k] == "number" and (v ~= v or not range[1](v)) then
      errors.bad_argument(where, nil, string.format("option '%s' must be %s, got %s", k,
        range[2], tostring(v)))
    end
  end
end
M.check = check

--- Set process-wide defaults (see `trigger.configure`).
function M.configure(t)
  if type(t) ~= "table" then
    errors.bad_argument("configure", 1, "table expected, got " .. type(t))
  end
  check(t, "configure")
  for k, v in pairs(t) do configured[k] = v end
end

--- The value of option `name` a user gave, per call (`opts`) or with `configure`; nil when it
-- is left to its default (a caller whose own default differs, as streams' backoff, keeps it).
function M.given(opts, name)
  local v = opts and opts[name]
  if v == nil then v = configured[name] end
  return v
end

--- Forget what `configure` set (for tests).
function M.reset()
  configured = {}
end

local function env(name)
  local v = os.getenv(name)
  if v ~= nil and v ~= "" then return v end
  return nil
end

--- The settings for one call.
-- @tparam[opt] table opts per-call options
-- @tparam[opt] string fallback_token the access token to use when none is configured (not in
--   `opts`, not by `configure`, not in the environment): a run handle's public access token
-- @treturn[1] table settings
-- @treturn[2] nil
-- @treturn[2] table error (no access token)
function M.resolve(opts, fallback_token)
  local s = {}
  for k, v in pairs(M.defaults) do s[k] = v end
  for k, v in pairs(configured) do s[k] = v end
  for k, v in pairs(opts or {}) do s[k] = v end
  local empty = s.access_token == "" -- given, but empty: no token (not one from elsewhere)
  s.access_token = s.access_token or env("TRIGGER_ACCESS_TOKEN") or env("TRIGGER_SECRET_KEY")
    or fallback_token
  s.base_url = (s.base_url or env("TRIGGER_API_URL") or DEFAULT_BASE_URL):gsub("/+$", "")
  -- The scheme is case-insensitive (RFC 3986): HTTPS://… is https://…
  local scheme, rest = s.base_url:match("^(%a[%w+.-]*)(://.*)$")
  if scheme then s.base_url = scheme:lower() .. rest end
  s.preview_branch = s.preview_branch or env("TRIGGER_PREVIEW_BRANCH")
  if s.preview_branch and (s.preview_branch:find("[%c]") or s.preview_branch:find("^%s")
      or s.preview_branch:find("%s$")) then
    return nil, errors.new("bad_request", "preview_branch must be a branch name without control "
      .. "characters or surrounding spaces")
  end
  if not s.access_token or empty then
    return nil, errors.new("auth", "no access token" .. (empty and " (access_token is empty)" or "")
      .. ": pass access_token, call "
      .. "trigger.configure, or set TRIGGER_SECRET_KEY / TRIGGER_ACCESS_TOKEN")
  end
  if s.access_token:find("[%c%s]") then
    return nil, errors.new("bad_request", "the access token contains spaces or control characters")
  end
  -- Credentials in the URL (http://user:password@host) are refused, as the nginx transport
  -- does: the password would be printed in every error's `request` and every warning, and it
  -- would not authenticate anyway (the access token's Authorization header is the one sent).
  -- A proxy's credentials go in the proxy's own URL (https_proxy, for libcurl).
  local authority = s.base_url:match("^%a[%w+.-]*://([^/?#]*)") or s.base_url:match("^[^/?#]*")
  if authority:find("@", 1, true) then
    return nil, errors.new("bad_request", "base_url must not hold credentials (user:password@): "
      .. "the access token authenticates; a proxy's credentials go in the proxy's URL")
  end
  if not s.base_url:match("^https?://[^/%s]+") then
    return nil, errors.new("bad_request", "base_url must be an http:// or https:// URL, got "
      .. errors.quote(s.base_url))
  end
  return s
end

return M
