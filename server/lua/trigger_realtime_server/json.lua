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
  if ORDER[t] then return false end
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

-- Is `t` (a table) a JSON array? (Marked by json.array or decode_exact, else 1..n keys.)
json.is_array = function(t) return is_array(t) end

---------------------------------------------------------------------------------------------------
-- decode_exact: a decoder for request bodies whose value is stored and shown again (payloads,
-- metadata, task options). lua-cjson 2.1 cannot tell `[]` from `{}` and forgets key order;
-- JSON.stringify on the real server keeps both. Arrays come back marked (json.array), objects
-- with their key order (json.ordered; a repeated key keeps its first place and its last value).

local byte, find, sub = string.byte, string.find, string.sub
local UNESCAPE = { ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n',
                   r = '\r', t = '\t' }

local function decode_error(pos, what)
  error({ json_error = ("%s at character %d"):format(what, pos) }, 0)
end

local function skip(s, pos)
  return find(s, "[^ \t\r\n]", pos) or #s + 1
end

local function read_string(s, pos) -- pos at the opening quote -> string, next pos
  local out, i = {}, pos + 1
  while true do
    local j = find(s, '["\\%c]', i)
    if not j then decode_error(pos, "unterminated string") end
    local c = byte(s, j)
    if c == 34 then
      out[#out + 1] = sub(s, i, j - 1)
      return table.concat(out), j + 1
    elseif c == 92 then
      out[#out + 1] = sub(s, i, j - 1)
      local e = sub(s, j + 1, j + 1)
      if e == "u" then
        local hex = sub(s, j + 2, j + 5)
        if not hex:match("^%x%x%x%x$") then decode_error(j, "bad unicode escape") end
        local cp = tonumber(hex, 16)
        local nexti = j + 6
        if cp >= 0xD800 and cp <= 0xDBFF and sub(s, nexti, nexti + 1) == "\\u" then
          local lo = tonumber(sub(s, nexti + 2, nexti + 5), 16)
          if lo and lo >= 0xDC00 and lo <= 0xDFFF then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            nexti = nexti + 6
          end
        end
        out[#out + 1] = utf8.char(cp)
        i = nexti
      elseif UNESCAPE[e] then
        out[#out + 1] = UNESCAPE[e]
        i = j + 2
      else
        decode_error(j, "bad escape")
      end
    else
      decode_error(j, "control character in string")
    end
  end
end

local read_value

local function read_number(s, pos)
  local text = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if not text or text == "" or text == "-" then decode_error(pos, "unexpected character") end
  if text:match("^-?0%d") then decode_error(pos, "bad number") end
  local n = tonumber(text)
  if not n then decode_error(pos, "bad number") end
  return n, pos + #text
end

function read_value(s, pos, depth)
  if depth > 200 then decode_error(pos, "nesting too deep") end
  pos = skip(s, pos)
  local c = sub(s, pos, pos)
  if c == "{" then
    local obj, keys = {}, {}
    pos = skip(s, pos + 1)
    if sub(s, pos, pos) == "}" then return json.ordered(obj, keys), pos + 1 end
    while true do
      if sub(s, pos, pos) ~= '"' then decode_error(pos, "expected a key") end
      local key
      key, pos = read_string(s, pos)
      pos = skip(s, pos)
      if sub(s, pos, pos) ~= ":" then decode_error(pos, "expected ':'") end
      local v
      v, pos = read_value(s, pos + 1, depth + 1)
      if obj[key] == nil then keys[#keys + 1] = key end
      obj[key] = v
      pos = skip(s, pos)
      local d = sub(s, pos, pos)
      if d == "}" then return json.ordered(obj, keys), pos + 1 end
      if d ~= "," then decode_error(pos, "expected ',' or '}'") end
      pos = skip(s, pos + 1)
    end
  elseif c == "[" then
    local arr = json.array({})
    pos = skip(s, pos + 1)
    if sub(s, pos, pos) == "]" then return arr, pos + 1 end
    while true do
      local v
      v, pos = read_value(s, pos, depth + 1)
      arr[#arr + 1] = v
      pos = skip(s, pos)
      local d = sub(s, pos, pos)
      if d == "]" then return arr, pos + 1 end
      if d ~= "," then decode_error(pos, "expected ',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return read_string(s, pos)
  elseif sub(s, pos, pos + 3) == "true" then
    return true, pos + 4
  elseif sub(s, pos, pos + 4) == "false" then
    return false, pos + 5
  elseif sub(s, pos, pos + 3) == "null" then
    return cjson.null, pos + 4
  elseif c == "" then
    decode_error(pos, "unexpected end of input")
  end
  return read_number(s, pos)
end

-- -> value, or nil, message
function json.decode_exact(s)
  local ok, v, pos = pcall(read_value, s, 1, 0)
  if not ok then
    if type(v) == "table" and v.json_error then return nil, v.json_error end
    error(v, 0)
  end
  pos = skip(s, pos)
  if pos <= #s then return nil, ("unexpected text at character %d"):format(pos) end
  return v
end

-- Decode, returning nil and a message instead of raising.
function json.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

return json
