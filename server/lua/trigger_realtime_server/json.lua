-- JSON output for the emulator.
--
-- lua-cjson decodes everything we receive, but we encode ourselves because the bytes matter here:
-- messages keep Electric's key order ("key", "value", "headers"), row values keep column order,
-- forward slashes stay unescaped (cjson writes "\/"), and jsonb columns use Postgres' own text
-- form (`{"a": 1, "b": [1, 2]}`: ", " and ": " separators, keys ordered by length then bytes).
local cjson = require "cjson"

local json = {}

json.null = cjson.null

local ORDER = setmetatable({}, { __mode = "k" })   -- table -> list of keys, in output order
local ARRAYS = setmetatable({}, { __mode = "k" })  -- tables that must encode as arrays, even empty

-- Mark `t` as an object whose keys come out in the order of `keys` (absent keys are skipped).
function json.ordered(t, keys)
  ORDER[t] = keys
  return t
end

-- Mark `t` as an array (so that an empty table encodes as `[]`).
function json.array(t)
  t = t or {}
  ARRAYS[t] = true
  return t
end

local ESCAPES = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end
json.quote = quote

-- Shortest decimal text that reads back as the same double (what Postgres 12+ prints for float8).
function json.number_text(n)
  if math.type(n) == "integer" then return ("%d"):format(n) end
  if n ~= n then return "NaN" end
  if n == math.huge then return "Infinity" end
  if n == -math.huge then return "-Infinity" end
  if n == math.floor(n) and math.abs(n) < 2^53 then return ("%d"):format(math.floor(n)) end
  for precision = 1, 17 do
    local s = ("%." .. precision .. "g"):format(n)
    if tonumber(s) == n then return s end
  end
  return ("%.17g"):format(n)
end

local function is_array(t)
  if ARRAYS[t] then return true end
  local n = #t
  if n == 0 then return false end
  local count = 0
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

-- jsonb orders object keys by length first, then bytewise.
local function jsonb_key_order(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function sorted_keys(t, postgres)
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then error("json: object keys must be strings, got " .. type(k)) end
    keys[#keys + 1] = k
  end
  table.sort(keys, postgres and jsonb_key_order or nil)
  return keys
end

local encode_value

local function encode_table(t, out, postgres, depth)
  if depth > 100 then error("json: nesting too deep") end
  local comma = postgres and ", " or ","
  local colon = postgres and ": " or ":"
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = comma end
      encode_value(t[i], out, postgres, depth + 1)
    end
    out[#out + 1] = "]"
    return
  end
  out[#out + 1] = "{"
  local first = true
  for _, k in ipairs(ORDER[t] or sorted_keys(t, postgres)) do
    local v = t[k]
    if v ~= nil then
      if not first then out[#out + 1] = comma end
      first = false
      out[#out + 1] = quote(k)
      out[#out + 1] = colon
      encode_value(v, out, postgres, depth + 1)
    end
  end
  out[#out + 1] = "}"
end

function encode_value(v, out, postgres, depth)
  local tv = type(v)
  if v == nil or v == cjson.null then
    out[#out + 1] = "null"
  elseif tv == "boolean" then
    out[#out + 1] = tostring(v)
  elseif tv == "number" then
    -- JSON has no NaN/Infinity: null is what JSON.stringify writes for them too.
    if v ~= v or v == math.huge or v == -math.huge then
      out[#out + 1] = "null"
    else
      out[#out + 1] = json.number_text(v)
    end
  elseif tv == "string" then
    out[#out + 1] = quote(v)
  elseif tv == "table" then
    encode_table(v, out, postgres, depth)
  else
    error("json: cannot encode a " .. tv)
  end
end

-- Compact JSON, for HTTP bodies and headers.
function json.encode(v)
  local out = {}
  encode_value(v, out, false, 0)
  return table.concat(out)
end

-- Postgres jsonb text output, for the `error` column.
function json.encode_jsonb(v)
  local out = {}
  encode_value(v, out, true, 0)
  return table.concat(out)
end

-- Decode, returning nil and a message instead of raising.
function json.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

return json
