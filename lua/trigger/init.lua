--- trigger-realtime: follow Trigger.dev runs live from Lua.
--
--     local trigger = require "trigger"
--     trigger.configure { access_token = os.getenv("TRIGGER_SECRET_KEY") }
--     for run in trigger.runs.subscribe_to_tag("user:1234") do
--       print(run.id, run.status)
--       if run.isCompleted then break end
--     end
--
-- @module trigger
local M = {}

--- The library's version.
M._VERSION = "0.1.0"

local config = require "trigger.config"

--- Set defaults for every later call.
-- @tparam table opts `access_token` (default: env `TRIGGER_ACCESS_TOKEN` or `TRIGGER_SECRET_KEY`),
--   `base_url` (default: env `TRIGGER_API_URL` or `https://api.trigger.dev`), `ca_file`,
--   `read_timeout`, `connect_timeout`, `retry_base`, `retry_cap`, `max_retries`, `max_body`,
--   `on_error`, `timeout`
function M.configure(opts)
  config.configure(opts)
end

M.runs = require "trigger.runs"

--- Perform the network I/O of every subscription of this thread, waiting at most `seconds`
-- for some to happen (returns early when it does). A game loop can use it as its sleep, so
-- the network keeps moving between ticks; `sub:poll()` then hands out what arrived.
-- @tparam[opt=0] number seconds
function M.step(seconds)
  if seconds ~= nil and type(seconds) ~= "number" then
    error("bad argument #1 to 'step' (number expected)", 2)
  end
  require("trigger.transport.curl").step(seconds or 0)
end
M.errors = require "trigger.errors"

-- auth is loaded on first use: most scripts only subscribe.
setmetatable(M, {
  __index = function(t, k)
    if k == "auth" then
      local auth = require "trigger.auth"
      rawset(t, k, auth)
      return auth
    end
  end,
})

return M
