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
}

local function check(t, where, extra_known)
  for k, v in pairs(t) do
    local want = KNOWN[k] or (extra_known and extra_known[k])
    if not want then
      error(string.format("bad argument to '%s' (unknown option '%s')", where, tostring(k)), 3)
    end
    if want ~= "any" and type(v) ~= want then
      error(string.format("bad argument to '%s' (option '%s' must be a %s, got %s)",
        where, k, want, type(v)), 3)
    end
  end
end
M.check = check

--- Set process-wide defaults (see `trigger.configure`).
function M.configure(t)
  if type(t) ~= "table" then error("bad argument #1 to 'configure' (table expected)", 2) end
  check(t, "configure")
  for k, v in pairs(t) do configured[k] = v end
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
-- @treturn[1] table settings
-- @treturn[2] nil
-- @treturn[2] table error (no access token)
function M.resolve(opts)
  local s = {}
  for k, v in pairs(M.defaults) do s[k] = v end
  for k, v in pairs(configured) do s[k] = v end
  for k, v in pairs(opts or {}) do s[k] = v end
  s.access_token = s.access_token or env("TRIGGER_ACCESS_TOKEN") or env("TRIGGER_SECRET_KEY")
  s.base_url = (s.base_url or env("TRIGGER_API_URL") or DEFAULT_BASE_URL):gsub("/+$", "")
  if not s.access_token then
    return nil, errors.new("auth", "no access token: pass access_token, call "
      .. "trigger.configure, or set TRIGGER_SECRET_KEY / TRIGGER_ACCESS_TOKEN")
  end
  if s.access_token:find("[%c%s]") then
    return nil, errors.new("bad_request", "the access token contains spaces or control characters")
  end
  if not s.base_url:match("^https?://[^/%s]+") then
    return nil, errors.new("bad_request", "base_url must be an http:// or https:// URL, got "
      .. s.base_url)
  end
  return s
end

return M
