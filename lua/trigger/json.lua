--- The JSON codec the library uses.
--
-- Decoding is our own C parser (`trigger.core.json_decode`): strict RFC 8259, integers that fit
-- in 64 bits become Lua integers (so a payload's `1` prints as `1`, not `1.0`), JSON null is
-- `cjson.null`, and nesting past `max_depth` is an error rather than a deep C stack. Encoding
-- uses a private lua-cjson instance, so our limits never change the settings of the `cjson`
-- module the host application uses.
--
-- Lua has one table for both JSON arrays and objects, so an empty array would come back out as
-- `{}`. A table whose metatable is `array_mt` is an array: `encode` writes it as one, `[]` when
-- empty (as it does OpenResty cjson's `cjson.array_mt` and `cjson.empty_array_mt` tables).
-- Every array the library hands out carries it: those `decode` makes, a run's `tags` and
-- `realtimeStreams` (Postgres arrays, built in C), and what superjson makes of packets.
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

--- The metatable that marks a table as a JSON array (empty or not). OpenResty's cjson has its
-- own (`cjson.array_mt`): then it is that one, so the host's `cjson.encode` honours it too.
-- `setmetatable({}, json.array_mt)` is an empty array.
M.array_mt = cjson.array_mt or {}

local json_decode, null, max_depth, array_mt = core.json_decode, cjson.null, M.max_depth, M.array_mt

--- Decode JSON text. Each array comes back marked with `array_mt` (so `[]` encodes as `[]`).
-- @tparam string text
-- @treturn[1] any the value
-- @treturn[2] nil
-- @treturn[2] string why it is not JSON, with the byte offset
function M.decode(text)
  return json_decode(text, null, max_depth, array_mt)
end

local encode, empty_array_mt = codec.encode, cjson.empty_array_mt
-- Whether this lua-cjson writes array_mt tables as arrays by itself (OpenResty's does).
local native = cjson.array_mt ~= nil and encode(setmetatable({}, array_mt)) == "[]"

-- Stands for an empty array while lua-cjson encodes: its \255 and \254 bytes are never in
-- UTF-8 text, so no string of a decoded document is this one (nor are pattern characters).
local EMPTY = "\255trigger_json_empty_array\254"

local function is_array(t)
  local mt = getmetatable(t)
  return mt ~= nil and (mt == array_mt or mt == empty_array_mt)
end

-- Whether v holds an empty array anywhere (to depth max_depth: past it cjson refuses anyway).
local function has_empty_array(v, depth)
  if next(v) == nil then return is_array(v) end
  if depth >= max_depth then return false end
  for _, x in pairs(v) do
    if type(x) == "table" and has_empty_array(x, depth + 1) then return true end
  end
  return false
end

-- A copy of v with EMPTY in the place of each empty array.
local function with_placeholders(v, depth)
  if next(v) == nil then return is_array(v) and EMPTY or v end
  if depth >= max_depth then return v end
  local out = {}
  for k, x in pairs(v) do
    out[k] = type(x) == "table" and with_placeholders(x, depth + 1) or x
  end
  return out
end

--- Encode a value as JSON text (lua-cjson), with `array_mt` tables as arrays.
-- @param value
-- @treturn string
function M.encode(value)
  if native or type(value) ~= "table" or not has_empty_array(value, 1) then
    return encode(value)
  end
  local text = encode(with_placeholders(value, 1))
  return (text:gsub('"' .. EMPTY .. '"', "[]"))
end

return M
