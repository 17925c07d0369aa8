--- The JSON codec the library uses: a private lua-cjson instance, so our limits never
-- change the settings of the `cjson` module the host application uses.
-- @module trigger.json
local cjson = require "cjson"

local M = {}

local codec = cjson.new()
--- Nesting deeper than this is refused with an error instead of exhausting the C stack.
M.max_depth = 128
codec.decode_max_depth(M.max_depth)
codec.encode_max_depth(M.max_depth)

--- JSON null (the same value as `cjson.null`).
M.null = cjson.null

--- Decode JSON text.
-- @treturn[1] any the value
-- @treturn[2] nil
-- @treturn[2] string why it is not JSON
function M.decode(text)
  local ok, value = pcall(codec.decode, text)
  if ok then return value end
  return nil, tostring(value)
end

M.encode = codec.encode

return M
