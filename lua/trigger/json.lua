--- The JSON codec the library uses.
--
-- Decoding is our own C parser (`trigger.core.json_decode`): strict RFC 8259, integers that fit
-- in 64 bits become Lua integers (so a payload's `1` prints as `1`, not `1.0`), JSON null is
-- `cjson.null`, and nesting past `max_depth` is an error rather than a deep C stack. Encoding
-- uses a private lua-cjson instance, so our limits never change the settings of the `cjson`
-- module the host application uses.
-- @module trigger.json
local cjson = require "cjson"
local core = require "trigger.core"

local M = {}

--- Nesting deeper than this is refused with an error.
M.max_depth = 128

local codec = cjson.new()
codec.encode_max_depth(M.max_depth)

--- JSON null (the same value as `cjson.null`).
M.null = cjson.null

local json_decode, null, max_depth = core.json_decode, cjson.null, M.max_depth

--- Decode JSON text.
-- @tparam string text
-- @treturn[1] any the value
-- @treturn[2] nil
-- @treturn[2] string why it is not JSON, with the byte offset
function M.decode(text)
  return json_decode(text, null, max_depth)
end

M.encode = codec.encode

return M
