--- A monotonic clock in seconds, for deadlines and backoff.
-- @module trigger.clock
local M = {}

local ok, ngx_ = pcall(function() return ngx end) -- luacheck: ignore
if ok and type(ngx_) == "table" and ngx_.now then
  M.now = function()
    ngx_.update_time()
    return ngx_.now()
  end
else
  local core = require "trigger.core"
  M.now = core.monotonic
end

return M
