--- Which transport this Lua state uses: nginx cosockets inside OpenResty (libcurl is never
-- loaded there), else the libcurl hub.
-- @module trigger.transport
local M = {}

--- The transport module for the current host.
function M.current()
  if rawget(_G, "ngx") and ngx.socket then -- luacheck: ignore
    return require "trigger.transport.ngx"
  end
  return require "trigger.transport.curl"
end

return M
