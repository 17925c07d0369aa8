-- Small helpers shared by the emulator's modules: clock, random ids, base64url, URL decoding.
local cqueues = require "cqueues"
local rand = require "openssl.rand"

local util = {}

-- Wall-clock milliseconds. os.time() only has seconds; luasocket's gettime (when installed) has
-- more. Either way we anchor it once and advance with the monotonic clock, so timestamps never
-- go backwards within one server.
local function wall_seconds()
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then return socket.gettime() end
  return os.time()
end
local wall_anchor, mono_anchor = wall_seconds(), cqueues.monotime()

function util.now_ms()
  return math.floor((wall_anchor + (cqueues.monotime() - mono_anchor)) * 1000)
end

local LOWER_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"

-- n characters drawn uniformly from `alphabet` (rejection sampling keeps the draw unbiased).
function util.random_string(n, alphabet)
  alphabet = alphabet or LOWER_ALNUM
  local size, out = #alphabet, {}
  local limit = 256 - 256 % size
  while #out < n do
    local bytes = rand.bytes(n * 2)
    for i = 1, #bytes do
      local b = bytes:byte(i)
      if b < limit and #out < n then
        local k = b % size + 1
        out[#out + 1] = alphabet:sub(k, k)
      end
    end
  end
  return table.concat(out)
end

function util.random_digits(n)
  return util.random_string(n, "0123456789")
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local B64_INDEX = {}
for i = 1, #B64 do B64_INDEX[B64:sub(i, i)] = i - 1 end
B64_INDEX["+"], B64_INDEX["/"] = 62, 63

-- base64url without padding (JWT form).
function util.b64url_encode(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2 + (b and 1 or 0) + (c and 1 or 0)
    for j = 1, chars do
      local k = (n >> (18 - 6 * (j - 1))) & 63
      out[#out + 1] = B64:sub(k + 1, k + 1)
    end
  end
  return table.concat(out)
end

-- base64 or base64url, padding optional; nil on a bad character or length.
function util.b64url_decode(s)
  s = s:gsub("=+$", "")
  if #s % 4 == 1 then return nil end
  local out, bits, nbits = {}, 0, 0
  for i = 1, #s do
    local v = B64_INDEX[s:sub(i, i)]
    if not v then return nil end
    bits = (bits << 6) | v
    nbits = nbits + 6
    if nbits >= 8 then
      nbits = nbits - 8
      out[#out + 1] = string.char((bits >> nbits) & 255)
    end
  end
  return table.concat(out)
end

function util.url_decode(s)
  return (s:gsub("%+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Path segments keep "+" as is (it only means space in query strings).
function util.path_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function util.url_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- Same, but keeps "/" so a storage path stays readable in a URL.
function util.path_encode(s)
  return (s:gsub("[^%w%-%._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- "a=1&b=x%20y" -> { a = "1", b = "x y" } (the last occurrence wins).
function util.parse_query(q)
  local params = {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    params[util.url_decode(k)] = util.url_decode(v)
  end
  return params
end

function util.split_commas(s)
  local out = {}
  for item in (s or ""):gmatch("[^,]+") do out[#out + 1] = item end
  return out
end

function util.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

return util
